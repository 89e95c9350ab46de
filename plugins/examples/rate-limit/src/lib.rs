//! # rate-limit
//!
//! A per-device token bucket: each device may send (or be sent) `per_minute` messages a minute on
//! average, in bursts of up to `burst`. A device that keeps exceeding its rate can be quarantined.
//!
//! The buckets live in the host's key-value state (key: the device id), so they survive instance
//! restarts and hot reloads of the plugin. Time is the message's `header.time_ms`: replaying
//! recorded traffic gives the same verdicts.
//!
//! ## Config
//!
//! ```json
//! {"per_minute": 60, "burst": 10, "direction": "uplink", "quarantine_after": null}
//! ```
//!
//! - `per_minute` (required, ≥ 1): the refill rate, tokens per minute.
//! - `burst` (required, ≥ 1): the bucket's size; a new device starts with a full bucket.
//! - `direction` (default `"both"`): which messages count, `"uplink"`, `"downlink"` or `"both"`
//!   (one bucket per device for both). Messages the other way are allowed and not counted.
//! - `quarantine_after` (default `null`): quarantine the device when this many messages in a
//!   row were denied; `null` never quarantines.
//!
//! Deny reasons:
//! - ``rate limit: more than 60 messages a minute (burst 10)``
//! - ``rate limit: 5 messages in a row over 60 a minute (burst 10)`` (quarantine)
//!
//! If the host refuses to store a bucket (its state quota is full) the message is allowed and a
//! warning logged: the limiter fails open rather than stopping telemetry.
//!
//! Cost: three host calls per counted message (device id, `kv_get`, `kv_set`).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Counted {
    Uplink,
    Downlink,
    Both,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    per_minute: u32,
    burst: u32,
    #[serde(default = "both")]
    direction: Counted,
    #[serde(default)]
    quarantine_after: Option<u32>,
}

fn both() -> Counted {
    Counted::Both
}

/// Tokens are counted in 1/60 000ths: a rate of `per_minute` tokens a minute then refills exactly
/// `per_minute` units a millisecond, with no rounding.
const UNIT: u64 = 60_000;

/// One device's bucket, as stored in the key-value state (20 bytes, little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    /// Tokens left, in [`UNIT`]s.
    units: u64,
    /// The time of the last refill (the latest message time seen).
    last_ms: u64,
    /// Messages denied in a row.
    denied_in_a_row: u32,
}

impl Bucket {
    const LEN: usize = 20;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let (tokens, rest) = b.split_at_mut(8);
        let (last, denied) = rest.split_at_mut(8);
        tokens.copy_from_slice(&self.units.to_le_bytes());
        last.copy_from_slice(&self.last_ms.to_le_bytes());
        denied.copy_from_slice(&self.denied_in_a_row.to_le_bytes());
        b
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (tokens, rest) = bytes.split_first_chunk::<8>()?;
        let (last, rest) = rest.split_first_chunk::<8>()?;
        let (denied, rest) = rest.split_first_chunk::<4>()?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            units: u64::from_le_bytes(*tokens),
            last_ms: u64::from_le_bytes(*last),
            denied_in_a_row: u32::from_le_bytes(*denied),
        })
    }
}

/// The policy: the limits from the config.
pub struct RateLimit {
    per_minute: u64,
    capacity: u64,
    burst: u32,
    counted: Counted,
    quarantine_after: Option<u32>,
}

impl RateLimit {
    /// Refills `b` up to `now_ms` and takes one token if there is one. Returns whether it could.
    fn take(&self, b: &mut Bucket, now_ms: u64) -> bool {
        // Saturating: a long silence just fills the bucket.
        let refill = now_ms
            .saturating_sub(b.last_ms)
            .saturating_mul(self.per_minute);
        b.units = b.units.saturating_add(refill).min(self.capacity);
        b.last_ms = b.last_ms.max(now_ms);
        if b.units >= UNIT {
            b.units -= UNIT;
            true
        } else {
            false
        }
    }
}

impl Policy for RateLimit {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        if c.per_minute == 0 {
            return Err("per_minute must be at least 1".into());
        }
        if c.burst == 0 {
            return Err("burst must be at least 1".into());
        }
        if c.quarantine_after == Some(0) {
            return Err("quarantine_after must be at least 1 (or null)".into());
        }
        Ok(Self {
            per_minute: c.per_minute.into(),
            capacity: u64::from(c.burst) * UNIT,
            burst: c.burst,
            counted: c.direction,
            quarantine_after: c.quarantine_after,
        })
    }

    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        let counted = match (self.counted, h.direction) {
            (Counted::Both, _) => true,
            (Counted::Uplink, d) => d == Direction::Uplink,
            (Counted::Downlink, d) => d == Direction::Downlink,
        };
        if !counted {
            return Verdict::Allow;
        }
        let key = req.device_id();
        let mut bucket = kv_get(&key)
            .and_then(|v| Bucket::decode(&v))
            .unwrap_or(Bucket {
                units: self.capacity,
                last_ms: h.time_ms,
                denied_in_a_row: 0,
            });
        let verdict = if self.take(&mut bucket, h.time_ms) {
            bucket.denied_in_a_row = 0;
            Verdict::Allow
        } else {
            bucket.denied_in_a_row = bucket.denied_in_a_row.saturating_add(1);
            match self.quarantine_after {
                Some(n) if bucket.denied_in_a_row >= n => {
                    bucket.denied_in_a_row = 0;
                    Verdict::Quarantine(format!(
                        "rate limit: {n} messages in a row over {} a minute (burst {})",
                        self.per_minute, self.burst
                    ))
                }
                _ => Verdict::Deny(format!(
                    "rate limit: more than {} messages a minute (burst {})",
                    self.per_minute, self.burst
                )),
            }
        };
        if let Err(e) = kv_set(&key, &bucket.encode()) {
            log(
                Level::Warn,
                &format!("cannot store the bucket of {key}: {e}; not limiting it"),
            );
            return Verdict::Allow;
        }
        verdict
    }
}

export_policy!(RateLimit);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    const T0: u64 = 1_700_000_000_000;

    fn up(dev: &str, t: u64) -> testing::Message {
        RequestBuilder::uplink(dev)
            .point("temperature", 21.0)
            .time_ms(t)
            .build()
    }

    fn policy(config: &str) -> RateLimit {
        testing::init(config).unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let mut p = policy(r#"{"per_minute":60,"burst":3}"#);
        for i in 0..3 {
            assert!(
                testing::decide(&mut p, &up("lorawan:01", T0 + i)).is_allow(),
                "message {i}"
            );
        }
        assert_eq!(
            testing::decide(&mut p, &up("lorawan:01", T0 + 3)),
            Verdict::deny("rate limit: more than 60 messages a minute (burst 3)")
        );
        // 60 a minute is one a second: 999 ms later there is still no whole token, at 1003 ms one.
        assert!(!testing::decide(&mut p, &up("lorawan:01", T0 + 999)).is_allow());
        assert!(testing::decide(&mut p, &up("lorawan:01", T0 + 1003)).is_allow());
        assert!(!testing::decide(&mut p, &up("lorawan:01", T0 + 1004)).is_allow());
        // A long silence refills the bucket to `burst`, not beyond.
        let later = T0 + 3_600_000;
        for i in 0..3 {
            assert!(testing::decide(&mut p, &up("lorawan:01", later + i)).is_allow());
        }
        assert!(!testing::decide(&mut p, &up("lorawan:01", later + 3)).is_allow());
    }

    #[test]
    fn devices_have_their_own_buckets_in_the_kv_state() {
        let mut p = policy(r#"{"per_minute":1,"burst":1}"#);
        assert!(testing::decide(&mut p, &up("ble:aa", T0)).is_allow());
        assert!(!testing::decide(&mut p, &up("ble:aa", T0 + 1)).is_allow());
        assert!(testing::decide(&mut p, &up("ble:bb", T0 + 1)).is_allow());
        let keys: Vec<String> = testing::kv_entries().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["ble:aa", "ble:bb"]);
    }

    #[test]
    fn state_survives_a_new_instance() {
        let mut p = policy(r#"{"per_minute":1,"burst":1}"#);
        assert!(testing::decide(&mut p, &up("ble:aa", T0)).is_allow());
        // The gateway restarts the instance (or reloads the plugin): the bucket is still empty.
        let mut q = policy(r#"{"per_minute":1,"burst":1}"#);
        assert!(!testing::decide(&mut q, &up("ble:aa", T0 + 10)).is_allow());
        assert!(testing::decide(&mut q, &up("ble:aa", T0 + 60_000)).is_allow());
    }

    #[test]
    fn only_the_configured_direction_counts() {
        let mut p = policy(r#"{"per_minute":1,"burst":1,"direction":"downlink"}"#);
        for i in 0..5 {
            assert!(testing::decide(&mut p, &up("modbus:u1", T0 + i)).is_allow());
        }
        assert!(testing::kv_entries().is_empty());
        let cmd = |t| {
            RequestBuilder::command("modbus:u1", "set_on")
                .time_ms(t)
                .build()
        };
        assert!(testing::decide(&mut p, &cmd(T0)).is_allow());
        assert!(!testing::decide(&mut p, &cmd(T0 + 1)).is_allow());
    }

    #[test]
    fn repeated_denials_quarantine_and_an_allowed_message_resets_the_count() {
        let mut p = policy(r#"{"per_minute":60,"burst":1,"quarantine_after":3}"#);
        assert!(testing::decide(&mut p, &up("zigbee:1", T0)).is_allow());
        assert!(matches!(
            testing::decide(&mut p, &up("zigbee:1", T0 + 1)),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            testing::decide(&mut p, &up("zigbee:1", T0 + 2)),
            Verdict::Deny(_)
        ));
        // A token arrives: allowed, and the run of denials starts over.
        assert!(testing::decide(&mut p, &up("zigbee:1", T0 + 1000)).is_allow());
        assert!(matches!(
            testing::decide(&mut p, &up("zigbee:1", T0 + 1001)),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            testing::decide(&mut p, &up("zigbee:1", T0 + 1002)),
            Verdict::Deny(_)
        ));
        assert_eq!(
            testing::decide(&mut p, &up("zigbee:1", T0 + 1003)),
            Verdict::quarantine("rate limit: 3 messages in a row over 60 a minute (burst 1)")
        );
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut p = policy(r#"{"per_minute":60,"burst":1}"#);
        assert!(testing::decide(&mut p, &up("ble:aa", T0 + 5000)).is_allow());
        assert!(!testing::decide(&mut p, &up("ble:aa", T0)).is_allow());
        assert!(!testing::decide(&mut p, &up("ble:aa", T0 + 5500)).is_allow());
        assert!(testing::decide(&mut p, &up("ble:aa", T0 + 6000)).is_allow());
    }

    #[test]
    fn a_full_state_fails_open_and_warns() {
        let mut p = policy(r#"{"per_minute":1,"burst":1}"#);
        testing::set_kv_quota(30);
        assert!(testing::decide(&mut p, &up("ble:aa", T0)).is_allow());
        for i in 0..3 {
            assert!(testing::decide(&mut p, &up("ble:second-device", T0 + i)).is_allow());
        }
        let logs = testing::logs();
        assert_eq!(logs.len(), 3);
        assert!(
            logs[0]
                .1
                .contains("cannot store the bucket of ble:second-device"),
            "{logs:?}"
        );
        assert_eq!(logs[0].0, Level::Warn);
    }

    #[test]
    fn bucket_encoding_round_trips_and_rejects_junk() {
        let b = Bucket {
            units: 450_000,
            last_ms: T0,
            denied_in_a_row: 4,
        };
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(Bucket::decode(&[1, 2, 3]), None);
        assert_eq!(Bucket::decode(&[0; 21]), None);
    }

    #[test]
    fn bad_configs_are_rejected() {
        for (c, want) in [
            (r#"{"per_minute":0,"burst":1}"#, "per_minute"),
            (r#"{"per_minute":1,"burst":0}"#, "burst"),
            (
                r#"{"per_minute":1,"burst":1,"quarantine_after":0}"#,
                "quarantine_after",
            ),
            (
                r#"{"per_minute":1,"burst":1,"direction":"sideways"}"#,
                "sideways",
            ),
            (r#"{"burst":1}"#, "per_minute"),
            (r#"{"per_minute":-1,"burst":1}"#, "invalid value"),
        ] {
            let e = testing::init::<RateLimit>(c)
                .err()
                .unwrap_or_else(|| panic!("{c} accepted"));
            assert!(e.contains(want), "{c}: {e}");
        }
    }

    #[test]
    fn tests_jsonl_expectations_hold() {
        let n = testing::check_jsonl::<RateLimit>(
            include_str!("../config.json"),
            include_str!("../tests.jsonl"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 8, "only {n} expectations checked");
    }
}
