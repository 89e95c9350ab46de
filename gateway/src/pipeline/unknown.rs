//! Rejections of frames from no known device (garbage, spoofed joins, unknown senders), audited
//! per source and cause per minute instead of one record each.
//!
//! The first rejections of each (protocol, cause, source) in a minute are recorded in full
//! ([`FULL_PER_SOURCE`]), so an operator sees what the frames looked like, at most
//! [`FULL_PER_CAUSE`] per protocol and cause a minute (a flood of spoofed sources does not become
//! one full record per source); the rest are counted and flushed once a minute as one `aggregate`
//! record per key (`rejected-unknown`: count, first and last time). Rejections of known devices'
//! frames stay one record each. Memory is bounded: at most [`MAX_KEYS`] keys are counted per minute
//! (past that, one bucket per protocol and cause counts the other sources and how many there
//! were). While the disk is degraded nothing is recorded in full: everything is counted.

use std::collections::{HashMap, HashSet};

use crate::audit::{AuditEntry, AuditSink, Category};

/// Keys counted per minute before new sources share one bucket.
pub const MAX_KEYS: usize = 1024;
/// Full records per (protocol, cause, source) a minute.
pub const FULL_PER_SOURCE: u32 = 8;
/// Full records per (protocol, cause) a minute, over all sources.
pub const FULL_PER_CAUSE: u32 = 32;
/// The source of a rejection that names no device.
pub const NO_SOURCE: &str = "(unattributed)";
const OTHER_SOURCES: &str = "(other sources)";

type Key = (String, &'static str, String);

#[derive(Debug, Default)]
struct Count {
    count: u64,
    first: u64,
    last: u64,
    /// Distinct sources folded into an overflow bucket.
    sources: HashSet<String>,
}

#[derive(Default)]
pub struct UnknownSources {
    minute: u64,
    counts: HashMap<Key, Count>,
    /// Full records this minute per key (only keys that got one: at most `FULL_PER_CAUSE` per
    /// protocol and cause) and per protocol and cause.
    full: HashMap<Key, u32>,
    full_per_cause: HashMap<(String, &'static str), u32>,
}

impl UnknownSources {
    /// Counts one rejection; true when it is to be recorded in full.
    pub fn add(
        &mut self,
        sink: &AuditSink,
        protocol: &str,
        cause: &'static str,
        source: &str,
        now_ms: u64,
        degraded: bool,
    ) -> bool {
        self.tick(sink, now_ms);
        let key = (protocol.to_owned(), cause, source.to_owned());
        if !degraded {
            let per_cause = self
                .full_per_cause
                .entry((protocol.to_owned(), cause))
                .or_default();
            if *per_cause < FULL_PER_CAUSE {
                let n = self.full.entry(key.clone()).or_default();
                if *n < FULL_PER_SOURCE {
                    *n += 1;
                    *per_cause += 1;
                    return true;
                }
            }
        }
        let (key, folded) = if self.counts.contains_key(&key) || self.counts.len() < MAX_KEYS {
            (key, None)
        } else {
            (
                (protocol.to_owned(), cause, OTHER_SOURCES.to_owned()),
                Some(source),
            )
        };
        let c = self.counts.entry(key).or_insert_with(|| Count {
            first: now_ms,
            ..Count::default()
        });
        c.count += 1;
        c.last = now_ms;
        if let Some(s) = folded
            && c.sources.len() < MAX_KEYS
        {
            c.sources.insert(s.to_owned());
        }
        false
    }

    /// Flushes when the minute has turned.
    pub fn tick(&mut self, sink: &AuditSink, now_ms: u64) {
        let minute = now_ms / 60_000;
        if minute != self.minute {
            self.flush(sink);
            self.full.clear();
            self.full_per_cause.clear();
            self.minute = minute;
        }
    }

    /// One `aggregate` record per key counted since the last flush.
    pub fn flush(&mut self, sink: &AuditSink) {
        let mut v: Vec<_> = self.counts.drain().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for ((protocol, cause, source), c) in v {
            let mut detail = serde_json::json!({
                "protocol": protocol, "cause": cause, "source": source,
                "count": c.count, "first": c.first, "last": c.last,
            });
            if !c.sources.is_empty()
                && let Some(o) = detail.as_object_mut()
            {
                o.insert("distinct_sources".into(), c.sources.len().into());
            }
            let mut e = AuditEntry::new(
                Category::Aggregate,
                "rejected-unknown",
                &format!("adapter:{protocol}"),
                format!(
                    "{} more {cause} rejections from {source}, aggregated per minute",
                    c.count
                ),
            )
            .detail(detail);
            e.verdict = Some("deny".into());
            sink.record(e);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::audit::tail;
    use crate::secrets::MasterKey;
    use crate::store::Store;

    #[test]
    fn a_flood_becomes_a_few_full_records_and_one_aggregate_per_key_per_minute() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        let (sink, _h) = AuditSink::start(s.clone(), 64).unwrap();
        let mut u = UnknownSources::default();
        let t0 = 60_000 * 100;
        let mut full = 0;
        for i in 0..100_000u64 {
            // two keys, then 5,000 spoofed sources (more than MAX_KEYS) in the same minute
            let src = if i < 50_000 {
                NO_SOURCE.to_owned()
            } else if i < 90_000 {
                "lorawan:0000000000000001".to_owned()
            } else {
                format!("lorawan:{:016x}", i % 5_000 + 2)
            };
            let cause = if i < 50_000 {
                "malformed"
            } else {
                "not-provisioned"
            };
            if u.add(&sink, "lorawan", cause, &src, t0 + i / 10, false) {
                full += 1;
            }
        }
        // in full: the first few of each key, at most FULL_PER_CAUSE per protocol and cause
        assert_eq!(full, u64::from(FULL_PER_SOURCE + FULL_PER_CAUSE), "{full}");
        u.tick(&sink, t0 + 60_000);
        sink.flush();
        let recs = s.read(|c, _| tail(c, 100_000)).unwrap();
        assert!(recs.len() <= MAX_KEYS + 2, "{}", recs.len());
        let total: u64 = recs
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.detail).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(
            total + full,
            100_000,
            "every rejection is counted or recorded"
        );
        let mal = recs
            .iter()
            .find(|r| r.detail.contains("\"malformed\""))
            .unwrap();
        assert_eq!(mal.category, "aggregate");
        assert_eq!(mal.action, "rejected-unknown");
        assert!(
            mal.reason.contains("49992 more malformed"),
            "{}",
            mal.reason
        );
        let other = recs
            .iter()
            .find(|r| r.detail.contains(OTHER_SOURCES))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&other.detail).unwrap();
        assert!(v["distinct_sources"].as_u64().unwrap() > 0);

        // degraded: nothing in full; otherwise the first FULL_PER_SOURCE, again the next minute
        let mut u = UnknownSources::default();
        assert!(!u.add(&sink, "ble", "garbage", "x", t0, true));
        for _ in 0..FULL_PER_SOURCE {
            assert!(u.add(&sink, "ble", "garbage", "x", t0, false));
        }
        assert!(!u.add(&sink, "ble", "garbage", "x", t0, false));
        assert!(u.add(&sink, "ble", "garbage", "x", t0 + 60_000, false));
    }
}
