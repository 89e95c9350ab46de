//! New pending registrations, rate-limited per source, so that one source of forged identities (a
//! packet forwarder replaying spoofed JoinRequests, a radio full of invented BLE addresses) cannot
//! fill `registry.max_pending` and lock genuine new devices out.
//!
//! A source is where a device that nobody knows came from: the adapter's `via` detail (LoRaWAN:
//! `forwarder:<eui>`) or, without one, its protocol (one radio). Each source has a token bucket:
//! `pending_per_source_per_min` new registrations a minute, as a burst too. Past it, an unknown
//! device is denied without being registered, and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sources tracked at once; past it the buckets start again (sources are few: adapters, forwarders).
const MAX_SOURCES: usize = 4096;

pub struct Admission {
    per_min: u32,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Admission {
    pub fn new(per_min: u32) -> Self {
        Self {
            per_min: per_min.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Whether `source` may register one more unknown device now (and takes it).
    pub fn admit(&mut self, source: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(source) {
            self.buckets.clear();
        }
        let cap = f64::from(self.per_min);
        let b = self.buckets.entry(source.to_owned()).or_insert((cap, now));
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * cap / 60.0;
        b.0 = (b.0 + refill).min(cap);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until `source` may register again (for the refusal's text).
    pub fn retry_after(&self, source: &str) -> Duration {
        let tokens = self.buckets.get(source).map_or(1.0, |b| b.0);
        let per_s = f64::from(self.per_min) / 60.0;
        Duration::from_secs_f64(((1.0 - tokens).max(0.0) / per_s).min(60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_source_leaves_the_others_alone() {
        let mut a = Admission::new(10);
        let t0 = Instant::now();
        // the burst: ten, then refused, again and again
        let taken = (0..1000).filter(|_| a.admit("forwarder:aa", t0)).count();
        assert_eq!(taken, 10);
        // another forwarder (the genuine device's) is not affected
        assert!(a.admit("forwarder:bb", t0));
        // the reset: after a minute the flooded one gets its rate again, not more
        let t1 = t0 + Duration::from_secs(60);
        let taken = (0..1000).filter(|_| a.admit("forwarder:aa", t1)).count();
        assert_eq!(taken, 10);
        // six seconds refill one at 10/min
        let t2 = t1 + Duration::from_secs(6);
        assert!(a.admit("forwarder:aa", t2));
        assert!(!a.admit("forwarder:aa", t2));
        assert!(a.retry_after("forwarder:aa") > Duration::ZERO);
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut a = Admission::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES * 3) {
            assert!(a.admit(&format!("s{i}"), t0));
        }
        assert!(a.buckets.len() <= MAX_SOURCES);
    }
}
