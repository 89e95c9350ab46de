//! # anomaly-gate
//!
//! Decides on the gateway's behaviour baseline: a message whose `anomaly-score` (0 normal … 1
//! certainly anomalous, from the `observe` stage) is at or above `deny_at` is denied, and at or
//! above `quarantine_at` the device is quarantined. A message with no score (baselines off) is
//! allowed: this plugin narrows what the built-in rules allow, it does not replace them.
//!
//! Use it to act on lower scores than the built-in rules do in a sensitive zone, or on one
//! direction only (`"downlink"`: refuse commands to a device that is behaving oddly).
//!
//! ## Config
//!
//! ```json
//! {"deny_at": 0.4, "quarantine_at": null, "direction": "both"}
//! ```
//!
//! - `deny_at` (required, 0 … 1).
//! - `quarantine_at` (default `null`: never), at least `deny_at`.
//! - `direction` (default `"both"`): `"uplink"`, `"downlink"` or `"both"`.
//!
//! Reasons: ``anomaly score 0.45 is at or above 0.40`` (deny or quarantine).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Which {
    Uplink,
    Downlink,
    Both,
}

fn both() -> Which {
    Which::Both
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    deny_at: f32,
    #[serde(default)]
    quarantine_at: Option<f32>,
    #[serde(default = "both")]
    direction: Which,
}

pub struct AnomalyGate {
    deny_at: f32,
    quarantine_at: f32,
    direction: Which,
}

fn in_unit(name: &str, v: f32) -> Result<f32, String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} must be between 0 and 1"))
    }
}

impl Policy for AnomalyGate {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        let deny_at = in_unit("deny_at", c.deny_at)?;
        let quarantine_at = match c.quarantine_at {
            Some(q) => in_unit("quarantine_at", q)?,
            None => f32::INFINITY,
        };
        if quarantine_at < deny_at {
            return Err("quarantine_at must be at least deny_at".into());
        }
        Ok(Self {
            deny_at,
            quarantine_at,
            direction: c.direction,
        })
    }

    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        let counted = match h.direction {
            Direction::Uplink => self.direction != Which::Downlink,
            Direction::Downlink => self.direction != Which::Uplink,
        };
        if !counted {
            return Verdict::Allow;
        }
        let Some(score) = req.observed().anomaly_score else {
            return Verdict::Allow;
        };
        if score >= self.quarantine_at {
            Verdict::quarantine(format!(
                "anomaly score {score:.2} is at or above {:.2}",
                self.quarantine_at
            ))
        } else if score >= self.deny_at {
            Verdict::deny(format!(
                "anomaly score {score:.2} is at or above {:.2}",
                self.deny_at
            ))
        } else {
            Verdict::Allow
        }
    }
}

export_policy!(AnomalyGate);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    fn scored(s: Option<f32>) -> testing::Message {
        RequestBuilder::uplink("sim:thermo")
            .point("temperature", 21.5)
            .observed(Observed {
                anomaly_score: s,
                ..Observed::default()
            })
            .build()
    }

    #[test]
    fn thresholds_deny_then_quarantine() {
        let mut p: AnomalyGate = testing::init(r#"{"deny_at":0.5,"quarantine_at":0.9}"#).unwrap();
        assert!(testing::decide(&mut p, &scored(Some(0.49))).is_allow());
        assert_eq!(
            testing::decide(&mut p, &scored(Some(0.5))),
            Verdict::deny("anomaly score 0.50 is at or above 0.50")
        );
        assert_eq!(
            testing::decide(&mut p, &scored(Some(0.95))),
            Verdict::quarantine("anomaly score 0.95 is at or above 0.90")
        );
        // no score (baselines off): allowed
        assert!(testing::decide(&mut p, &scored(None)).is_allow());
    }

    #[test]
    fn direction_selects_what_is_judged() {
        let mut p: AnomalyGate =
            testing::init(r#"{"deny_at":0.1,"direction":"downlink"}"#).unwrap();
        assert!(testing::decide(&mut p, &scored(Some(1.0))).is_allow());
        let cmd = RequestBuilder::command("sim:thermo", "set_setpoint")
            .observed(Observed {
                anomaly_score: Some(0.2),
                ..Observed::default()
            })
            .build();
        assert!(!testing::decide(&mut p, &cmd).is_allow());
    }

    #[test]
    fn bad_configs_are_refused() {
        for c in [
            r#"{"deny_at":1.5}"#,
            r#"{"deny_at":0.5,"quarantine_at":0.2}"#,
            r#"{"deny_at":0.5,"extra":1}"#,
            r#"{}"#,
        ] {
            assert!(testing::init::<AnomalyGate>(c).is_err(), "{c}");
        }
    }

    #[test]
    fn the_example_test_file_passes() {
        let n = testing::check_jsonl::<AnomalyGate>(
            include_str!("../config.json"),
            include_str!("../tests.jsonl"),
        )
        .unwrap();
        assert_eq!(n, 4);
    }
}
