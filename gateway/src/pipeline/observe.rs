//! Stage 3, observe: per-device counters (messages, bytes, last seen, per-minute rate), and the
//! device's behaviour baseline, which scores the message (see [`crate::behaviour`]) for the deciders.

use std::sync::atomic::Ordering;

use warden_core::Message;

use crate::behaviour::{Behaviour, Outcome};
use crate::registry::{DeviceRecord, Stats, StatsSnapshot};
use std::sync::Arc;

const WINDOW_MS: u64 = 60_000;

pub fn uplink(stats: &Stats, msg: &Message, now_ms: u64) -> StatsSnapshot {
    stats.messages.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(msg.size() as u64, Ordering::Relaxed);
    stats.last_seen.store(now_ms, Ordering::Relaxed);
    let start = stats.window_start.load(Ordering::Relaxed);
    if now_ms.saturating_sub(start) >= WINDOW_MS {
        let finished = stats.window_count.swap(0, Ordering::Relaxed);
        // a window more than one minute old counts as zero
        let prev = if now_ms.saturating_sub(start) < 2 * WINDOW_MS {
            finished
        } else {
            0
        };
        stats.prev_window_count.store(prev, Ordering::Relaxed);
        stats
            .window_start
            .store(now_ms - now_ms % WINDOW_MS, Ordering::Relaxed);
    }
    stats.window_count.fetch_add(1, Ordering::Relaxed);
    stats.snapshot()
}

/// Scores the message against the device's baseline and learns from it.
pub fn baseline(
    b: &mut Behaviour,
    stats: &Stats,
    r: &Arc<DeviceRecord>,
    profile: Option<&str>,
    msg: &Message,
    now_ms: u64,
) -> Option<Outcome> {
    b.uplink_at(Some(&stats.behaviour_slot), r, profile, msg, now_ms)
}

pub fn denied(stats: &Stats) {
    stats.denied.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::{DeviceId, Point, Value};

    #[test]
    fn counts_and_rates() {
        let s = Stats::default();
        let m = Message::telemetry(
            DeviceId::new("sim", "a").unwrap(),
            vec![Point::new("t", Value::Float(1.0))],
        );
        let t0 = 1_000_000_020_000;
        for i in 0..10 {
            uplink(&s, &m, t0 + i);
        }
        let snap = uplink(&s, &m, t0 + 61_000);
        assert_eq!(snap.messages, 11);
        assert_eq!(snap.bytes, 88);
        assert_eq!(snap.last_seen, t0 + 61_000);
        assert_eq!(snap.rate_per_min, 10);
        // three idle minutes later the old window no longer counts
        let snap = uplink(&s, &m, t0 + 300_000);
        assert_eq!(snap.rate_per_min, 1);
    }
}
