//! Commands waiting for their adapter's result: each with its own deadline on the monotonic clock.
//!
//! A command is answered when its adapter reports the result, or with `timeout` at its deadline.
//! The deadline starts at [`DEFAULT_WAIT`]; an adapter that holds a command for a device that is
//! not listening (a sleeping Z-Wave node, a LoRaWAN class A device until its next uplink) moves it
//! with `AdapterEvent::CommandHeld`, so such a command is not reported `timeout` and later
//! `delivered`. The map is bounded: when full, the command closest to its deadline is answered
//! `timeout` to make room — one, not every waiting one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use warden_core::{CommandResult, DeviceId};

/// How long a command waits for its result unless its adapter says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest an adapter may hold a command (a day: Z-Wave's `sleeping_command_s` maximum).
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// Commands waiting at once.
pub const CAPACITY: usize = 1024;

pub struct Waiting {
    pub device: DeviceId,
    pub deadline: Instant,
    pub reply: Option<oneshot::Sender<CommandResult>>,
}

pub struct Replies {
    waiting: HashMap<String, Waiting>,
    capacity: usize,
}

impl Default for Replies {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl Replies {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Starts waiting for `command_id`'s result. When the map is full, returns the one entry
    /// evicted to make room (the closest to its deadline), to be answered `timeout` now.
    pub fn insert(
        &mut self,
        command_id: String,
        device: DeviceId,
        reply: Option<oneshot::Sender<CommandResult>>,
        now: Instant,
    ) -> Option<(String, Waiting)> {
        let evicted =
            if self.waiting.len() >= self.capacity && !self.waiting.contains_key(&command_id) {
                let first = self
                    .waiting
                    .iter()
                    .min_by_key(|(_, w)| w.deadline)
                    .map(|(k, _)| k.clone());
                first.and_then(|k| self.waiting.remove_entry(&k))
            } else {
                None
            };
        self.waiting.insert(
            command_id,
            Waiting {
                device,
                deadline: now + DEFAULT_WAIT,
                reply,
            },
        );
        evicted
    }

    /// The adapter holds the command for its device: wait `wait` from now (at most
    /// [`MAX_WAIT`]). False when the command is not waiting (answered, expired, unknown).
    pub fn extend(
        &mut self,
        command_id: &str,
        device: &DeviceId,
        wait: Duration,
        now: Instant,
    ) -> bool {
        match self.waiting.get_mut(command_id) {
            // only the adapter of the command's own device may move it
            Some(w) if &w.device == device => {
                w.deadline = now + wait.min(MAX_WAIT);
                true
            }
            _ => false,
        }
    }

    /// The result arrived: stop waiting, hand back who waits for it.
    pub fn take(&mut self, command_id: &str) -> Option<Waiting> {
        self.waiting.remove(command_id)
    }

    /// Takes who waits for the reply (an API or CLI caller) and keeps waiting for the result:
    /// the caller is answered with an interim outcome, the result is still audited and published.
    pub fn take_reply(&mut self, command_id: &str) -> Option<oneshot::Sender<CommandResult>> {
        self.waiting
            .get_mut(command_id)
            .and_then(|w| w.reply.take())
    }

    /// Every command past its deadline, removed.
    pub fn expired(&mut self, now: Instant) -> Vec<(String, Waiting)> {
        let due: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.waiting.remove_entry(&k))
            .collect()
    }

    /// Every waiting command (shutdown).
    pub fn drain(&mut self) -> Vec<(String, Waiting)> {
        self.waiting.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn dev(n: u32) -> DeviceId {
        DeviceId::new("sim", &format!("d{n}")).unwrap()
    }

    #[test]
    fn each_command_expires_at_its_own_deadline() {
        let mut r = Replies::default();
        let t0 = Instant::now();
        assert!(r.insert("a".into(), dev(1), None, t0).is_none());
        assert!(
            r.insert("b".into(), dev(1), None, t0 + Duration::from_secs(10))
                .is_none()
        );
        assert!(r.expired(t0 + Duration::from_secs(29)).is_empty());
        let gone = r.expired(t0 + Duration::from_secs(30));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, "a");
        assert_eq!(r.len(), 1);
        assert!(r.take("b").is_some());
        assert!(r.take("b").is_none());
    }

    #[test]
    fn a_full_map_evicts_one_command_not_all() {
        let mut r = Replies::with_capacity(3);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            assert!(r.insert(k.into(), dev(1), None, at).is_none());
        }
        // held for a sleeping device: "a" now waits longest, "b" is the closest to its deadline
        assert!(r.extend("a", &dev(1), Duration::from_secs(600), t0));
        let (k, _) = r
            .insert("d".into(), dev(1), None, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(k, "b");
        assert_eq!(r.len(), 3);
        for k in ["a", "c", "d"] {
            assert!(r.take(k).is_some(), "{k}");
        }
        // repeated: every insert past capacity evicts exactly one
        let mut r = Replies::with_capacity(2);
        let mut evicted = 0;
        for i in 0..100u64 {
            evicted += usize::from(
                r.insert(format!("c{i}"), dev(1), None, t0 + Duration::from_millis(i))
                    .is_some(),
            );
        }
        assert_eq!(evicted, 98);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn only_the_commands_device_moves_its_deadline_and_not_past_a_day() {
        let mut r = Replies::default();
        let t0 = Instant::now();
        r.insert("a".into(), dev(1), None, t0);
        assert!(!r.extend("a", &dev(2), Duration::from_secs(600), t0));
        assert!(!r.extend("nope", &dev(1), Duration::from_secs(600), t0));
        assert_eq!(r.expired(t0 + DEFAULT_WAIT).len(), 1);
        r.insert("a".into(), dev(1), None, t0);
        assert!(r.extend("a", &dev(1), Duration::from_secs(10 * 86_400), t0));
        assert!(r.expired(t0 + MAX_WAIT - Duration::from_secs(1)).is_empty());
        assert_eq!(r.expired(t0 + MAX_WAIT).len(), 1);
    }
}
