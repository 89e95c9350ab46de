//! The built-in rules on anomaly scores, resolved per device from `[behaviour]`, its zone's and its
//! profile's overrides; and the per-device memory of recent anomalous messages they count.

use crate::config::{BehaviourAction, BehaviourConfig, BehaviourRulesConfig};

use super::MAX_QUARANTINE_AFTER;

/// The rules one device is under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub learning_ms: u64,
    pub learning_messages: u64,
    pub alert_at: f32,
    pub quarantine_at: f32,
    pub quarantine_after: u32,
    pub window_ms: u64,
    pub action: BehaviourAction,
}

impl Rules {
    fn apply(&mut self, o: &BehaviourRulesConfig) {
        if let Some(v) = o.learning_s {
            self.learning_ms = v.saturating_mul(1000);
        }
        if let Some(v) = o.learning_messages {
            self.learning_messages = v;
        }
        if let Some(v) = o.alert_at {
            self.alert_at = v;
        }
        if let Some(v) = o.quarantine_at {
            self.quarantine_at = v;
        }
        if let Some(v) = o.quarantine_after {
            self.quarantine_after = v;
        }
        if let Some(v) = o.window_s {
            self.window_ms = v.saturating_mul(1000);
        }
        if let Some(v) = o.action {
            self.action = v;
        }
    }

    /// The defaults, then the zone's overrides, then the profile's.
    pub fn resolve(c: &BehaviourConfig, zone: &str, profile: Option<&str>) -> Self {
        let mut r = Self {
            learning_ms: c.learning_s.saturating_mul(1000),
            learning_messages: c.learning_messages,
            alert_at: c.alert_at,
            quarantine_at: c.quarantine_at,
            quarantine_after: c.quarantine_after,
            window_ms: c.window_s.saturating_mul(1000),
            action: c.action,
        };
        if let Some(o) = c.zones.get(zone) {
            r.apply(o);
        }
        if let Some(o) = profile.and_then(|p| c.profiles.get(p)) {
            r.apply(o);
        }
        r.quarantine_after = r.quarantine_after.clamp(1, MAX_QUARANTINE_AFTER);
        r
    }
}

/// The times (ms) of a device's most recent alert-level messages.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    times: [u64; MAX_QUARANTINE_AFTER as usize],
    next: usize,
}

impl Recent {
    pub fn push(&mut self, now: u64) {
        if let Some(slot) = self.times.get_mut(self.next) {
            *slot = now;
        }
        self.next = (self.next + 1) % self.times.len();
    }

    /// How many fall within `window_ms` before `now` (a clock step backwards counts them all).
    pub fn within(&self, now: u64, window_ms: u64) -> u32 {
        self.times
            .iter()
            .filter(|t| **t > 0 && now.saturating_sub(**t) < window_ms)
            .count() as u32
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn profile_overrides_zone_overrides_defaults() {
        let mut c = BehaviourConfig::default();
        c.zones.insert(
            "lab".into(),
            BehaviourRulesConfig {
                alert_at: Some(0.3),
                quarantine_after: Some(2),
                ..Default::default()
            },
        );
        c.profiles.insert(
            "meter".into(),
            BehaviourRulesConfig {
                alert_at: Some(0.7),
                action: Some(BehaviourAction::Alert),
                ..Default::default()
            },
        );
        let d = Rules::resolve(&c, "default", None);
        assert_eq!(d.alert_at, 0.5);
        let z = Rules::resolve(&c, "lab", None);
        assert_eq!((z.alert_at, z.quarantine_after), (0.3, 2));
        let p = Rules::resolve(&c, "lab", Some("meter"));
        assert_eq!(
            (p.alert_at, p.quarantine_after, p.action),
            (0.7, 2, BehaviourAction::Alert)
        );
    }

    #[test]
    fn recent_counts_only_the_window_and_stays_bounded() {
        let mut r = Recent::default();
        for i in 0..1000 {
            r.push(1_000_000 + i * 1000);
        }
        assert_eq!(r.within(1_000_000 + 999_000, 5_500), 6);
        assert_eq!(
            r.within(1_000_000 + 999_000, u64::MAX),
            MAX_QUARANTINE_AFTER
        );
        r.clear();
        assert_eq!(r.within(2_000_000, u64::MAX), 0);
    }
}
