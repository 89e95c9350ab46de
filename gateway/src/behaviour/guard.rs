//! The mass-quarantine guard: when automatic quarantines (built-in rules and plugins alike) would
//! take a configured share of a zone's devices within a window, the likelier cause is a fault in the
//! gateway or an attack on the detector. The guard then refuses further automatic quarantines in
//! that zone (the messages stay denied) and raises an alarm once, until the zone is quiet for a window.

use std::collections::{HashMap, VecDeque};

/// Quarantine times remembered per zone (more than any sane window holds).
const MAX_TIMES: usize = 4096;
/// Zones the guard tracks at once.
const MAX_ZONES: usize = 1024;

#[derive(Default)]
struct ZoneState {
    times: VecDeque<u64>,
    /// While tripped: the last refused attempt (the guard holds until a window after it).
    tripped_at: Option<u64>,
}

/// What the guard says about one more quarantine in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardCheck {
    /// Go ahead.
    Allow,
    /// Refused, and this attempt tripped the guard: raise the alarm (`count` quarantines of
    /// `size` devices within the window, this one included).
    Trip { count: usize, size: usize },
    /// Refused; the guard was already tripped.
    Held,
}

pub struct Guard {
    share: f32,
    window_ms: u64,
    zones: HashMap<String, ZoneState>,
}

impl Guard {
    pub fn new(share: f32, window_s: u64) -> Self {
        Self {
            share,
            window_ms: window_s.saturating_mul(1000),
            zones: HashMap::new(),
        }
    }

    pub fn reconfigure(&mut self, share: f32, window_s: u64) {
        self.share = share;
        self.window_ms = window_s.saturating_mul(1000);
    }

    /// One more automatic quarantine in `zone` of `size` devices at `now`.
    pub fn check(&mut self, zone: &str, size: usize, now: u64) -> GuardCheck {
        if !self.zones.contains_key(zone) && self.zones.len() >= MAX_ZONES {
            self.zones.retain(|_, z| z.tripped_at.is_some());
        }
        let window = self.window_ms;
        let z = self.zones.entry(zone.to_owned()).or_default();
        while z
            .times
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= window)
        {
            z.times.pop_front();
        }
        if let Some(t) = z.tripped_at {
            if now.saturating_sub(t) < window {
                z.tripped_at = Some(now);
                return GuardCheck::Held;
            }
            z.tripped_at = None;
        }
        let count = z.times.len() + 1;
        // one device alone is never "mass"; a zone of one can always lose it
        if count >= 2 && count as f32 >= self.share * size.max(1) as f32 {
            z.tripped_at = Some(now);
            return GuardCheck::Trip { count, size };
        }
        if z.times.len() >= MAX_TIMES {
            z.times.pop_front();
        }
        z.times.push_back(now);
        GuardCheck::Allow
    }

    /// Zones where the guard currently holds.
    #[cfg(test)]
    pub fn tripped(&self, now: u64) -> Vec<String> {
        self.zones
            .iter()
            .filter(|(_, z)| {
                z.tripped_at
                    .is_some_and(|t| now.saturating_sub(t) < self.window_ms)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn trips_at_the_share_holds_then_recovers() {
        let mut g = Guard::new(0.4, 60);
        let t = 1_000_000;
        assert_eq!(g.check("a", 10, t), GuardCheck::Allow);
        assert_eq!(g.check("a", 10, t + 1), GuardCheck::Allow);
        assert_eq!(g.check("a", 10, t + 2), GuardCheck::Allow);
        // the fourth of ten would be 40 %
        assert_eq!(
            g.check("a", 10, t + 3),
            GuardCheck::Trip { count: 4, size: 10 }
        );
        assert_eq!(g.check("a", 10, t + 4), GuardCheck::Held);
        // another zone is not affected
        assert_eq!(g.check("b", 10, t + 5), GuardCheck::Allow);
        assert_eq!(g.tripped(t + 5), vec!["a".to_owned()]);
        // a quiet window later the zone is guarded afresh
        assert_eq!(g.check("a", 10, t + 4 + 60_000), GuardCheck::Allow);
    }

    #[test]
    fn a_single_device_zone_can_lose_its_device() {
        let mut g = Guard::new(0.3, 60);
        assert_eq!(g.check("solo", 1, 5), GuardCheck::Allow);
    }

    #[test]
    fn the_quarantines_of_seven_of_seven_trip_it() {
        let mut g = Guard::new(0.3, 600);
        let r: Vec<_> = (0..7).map(|i| g.check("demo", 7, 1000 + i)).collect();
        assert_eq!(r[0], GuardCheck::Allow);
        assert_eq!(r[1], GuardCheck::Allow);
        assert_eq!(r[2], GuardCheck::Trip { count: 3, size: 7 });
        assert!(r[3..].iter().all(|c| *c == GuardCheck::Held));
    }
}
