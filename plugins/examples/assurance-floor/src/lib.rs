//! # assurance-floor
//!
//! Sensitive commands and readings need a device identity that is hard to fake. Each downlink
//! command and each uplink point can name the weakest assurance it accepts (what the device's
//! identity rests on for this message, `header.assurance`): a `set_setpoint` sent to a Modbus RTU
//! device nobody can authenticate is denied, while the same command to a LoRaWAN device with a
//! per-device key goes through.
//!
//! Levels, weakest first: `none` < `channel` < `shared-key` < `certificate`.
//!
//! ## Config
//!
//! ```json
//! {"commands": {"set_setpoint": "shared-key"}, "points": {"temperature": "channel"}, "default": "none"}
//! ```
//!
//! - `commands`: command name → the weakest assurance a downlink with that command needs.
//! - `points`: point name → the weakest assurance an uplink carrying that point needs (every point
//!   of a message is checked, in order).
//! - `default` (default `none`): the floor for every command and point not named, and for uplinks
//!   without points.
//! - `security` (Rust version only): command name → the security labels it accepts, for protocols
//!   with several kinds of security at one assurance level, e.g.
//!   `{"security": {"unlock": ["zwave-s2-access-control"]}}`: a door lock included with S0 or S2
//!   Authenticated (both `shared-key`) cannot be unlocked. The label is the one the device was
//!   last heard under (`req.security()`).
//!
//! Deny reason for a label: ``command `unlock` needs security zwave-s2-access-control; device has zwave-s0``.
//!
//! Deny reasons (the Python and JavaScript versions of this example use the same words):
//! - ``command `set_setpoint` needs assurance shared-key or better; device has none``
//! - ``point `temperature` needs assurance channel or better; device has none``
//! - ``announce needs assurance channel or better; device has none`` (an uplink without points)
//!
//! Cost: a message whose assurance meets the strongest floor in the config is allowed without
//! any host call; otherwise one host call for the command name or one per point.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    commands: BTreeMap<String, Assurance>,
    #[serde(default)]
    points: BTreeMap<String, Assurance>,
    #[serde(default)]
    default: Assurance,
    #[serde(default)]
    security: BTreeMap<String, Vec<String>>,
}

/// The policy: per-name floors, the default floor, and the strongest floor of all (anything at
/// or above it passes without looking further).
pub struct AssuranceFloor {
    commands: SymbolMap<Assurance>,
    points: SymbolMap<Assurance>,
    default: Assurance,
    strongest: Assurance,
    /// Command → the security labels it accepts (symbols), with the texts for the reason.
    security: SymbolMap<(SymbolSet, String)>,
}

fn reason(what: &str, need: Assurance, has: Assurance) -> Verdict {
    Verdict::Deny(format!(
        "{what} needs assurance {need} or better; device has {has}"
    ))
}

impl Policy for AssuranceFloor {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        let commands = SymbolMap::intern(c.commands.iter().map(|(k, v)| (k, *v)));
        let points = SymbolMap::intern(c.points.iter().map(|(k, v)| (k, *v)));
        let security = SymbolMap::intern(
            c.security
                .iter()
                .map(|(k, labels)| (k, (SymbolSet::intern(labels), labels.join(" or ")))),
        );
        if commands.len() != c.commands.len()
            || points.len() != c.points.len()
            || security.len() != c.security.len()
        {
            return Err("too many names: the gateway's symbol table is full".into());
        }
        let strongest = c
            .commands
            .values()
            .chain(c.points.values())
            .copied()
            .fold(c.default, Assurance::max);
        Ok(Self {
            commands,
            points,
            default: c.default,
            strongest,
            security,
        })
    }

    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        let has = h.assurance;
        if h.direction == Direction::Downlink
            && !self.security.is_empty()
            && let Some((labels, text)) = self.security.get(req.name())
            && !req.security().is_some_and(|l| labels.contains(l))
        {
            return Verdict::Deny(format!(
                "command `{}` needs security {text}; device has {}",
                req.name_text(),
                req.security_text().as_deref().unwrap_or("none")
            ));
        }
        if has >= self.strongest {
            return Verdict::Allow;
        }
        match h.direction {
            Direction::Downlink => {
                let need = *self.commands.get(req.name()).unwrap_or(&self.default);
                if has < need {
                    return reason(&format!("command `{}`", req.name_text()), need, has);
                }
            }
            Direction::Uplink if h.point_count == 0 => {
                if has < self.default {
                    return reason(h.kind.as_str(), self.default, has);
                }
            }
            Direction::Uplink => {
                for (i, point) in req.points(h) {
                    let need = *self.points.get(point).unwrap_or(&self.default);
                    if has < need {
                        let name = req.point_name_text(i).unwrap_or_default();
                        return reason(&format!("point `{name}`"), need, has);
                    }
                }
            }
        }
        Verdict::Allow
    }
}

export_policy!(AssuranceFloor);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    const CONFIG: &str = include_str!("../config.json");

    fn policy(config: &str) -> AssuranceFloor {
        testing::init(config).unwrap()
    }

    fn setpoint(a: Assurance) -> testing::Message {
        RequestBuilder::command("modbus:tcp-1-u1", "set_setpoint")
            .arg("value", 21.5)
            .assurance(a)
            .build()
    }

    #[test]
    fn command_needs_its_floor() {
        let mut p = policy(CONFIG);
        assert_eq!(
            testing::decide(&mut p, &setpoint(Assurance::None)),
            Verdict::deny(
                "command `set_setpoint` needs assurance shared-key or better; device has none"
            )
        );
        assert_eq!(
            testing::decide(&mut p, &setpoint(Assurance::Channel)).reason(),
            Some("command `set_setpoint` needs assurance shared-key or better; device has channel")
        );
        assert!(testing::decide(&mut p, &setpoint(Assurance::SharedKey)).is_allow());
        assert!(testing::decide(&mut p, &setpoint(Assurance::Certificate)).is_allow());
    }

    #[test]
    fn every_point_is_checked_in_order() {
        let mut p = policy(CONFIG);
        let m = RequestBuilder::uplink("modbus:tcp-1-u1")
            .point("humidity", 40)
            .point("temperature", 21.5)
            .build();
        assert_eq!(
            testing::decide(&mut p, &m),
            Verdict::deny("point `temperature` needs assurance channel or better; device has none")
        );
        let m = RequestBuilder::uplink("modbus:tls-1-u1")
            .point("temperature", 21.5)
            .assurance(Assurance::Channel)
            .build();
        assert!(testing::decide(&mut p, &m).is_allow());
    }

    #[test]
    fn the_default_covers_unnamed_commands_points_and_empty_uplinks() {
        let mut p = policy(r#"{"points":{"firmware":"certificate"},"default":"channel"}"#);
        let reboot = RequestBuilder::command("ble:aa", "reboot").build();
        assert_eq!(
            testing::decide(&mut p, &reboot).reason(),
            Some("command `reboot` needs assurance channel or better; device has none")
        );
        let announce = RequestBuilder::uplink("ble:aa")
            .kind(Kind::Announce)
            .build();
        assert_eq!(
            testing::decide(&mut p, &announce).reason(),
            Some("announce needs assurance channel or better; device has none")
        );
        let fw = RequestBuilder::uplink("ble:aa")
            .point("battery", 90)
            .point("firmware", "1.2")
            .assurance(Assurance::SharedKey)
            .build();
        assert_eq!(
            testing::decide(&mut p, &fw).reason(),
            Some("point `firmware` needs assurance certificate or better; device has shared-key")
        );
        let ok = RequestBuilder::uplink("ble:aa")
            .point("battery", 90)
            .assurance(Assurance::Channel)
            .build();
        assert!(testing::decide(&mut p, &ok).is_allow());
    }

    #[test]
    fn a_command_can_require_a_security_label() {
        let mut p = policy(r#"{"security":{"unlock":["zwave-s2-access-control"]}}"#);
        let unlock = |label: Option<&str>| {
            let mut b = RequestBuilder::command("zwave:e1f2a3b4-5", "unlock")
                .assurance(Assurance::SharedKey);
            if let Some(l) = label {
                b = b.security(l);
            }
            b.build()
        };
        assert_eq!(
            testing::decide(&mut p, &unlock(Some("zwave-s0"))).reason(),
            Some("command `unlock` needs security zwave-s2-access-control; device has zwave-s0")
        );
        assert_eq!(
            testing::decide(&mut p, &unlock(None)).reason(),
            Some("command `unlock` needs security zwave-s2-access-control; device has none")
        );
        assert!(testing::decide(&mut p, &unlock(Some("zwave-s2-access-control"))).is_allow());
        // other commands are not affected
        let lock = RequestBuilder::command("zwave:e1f2a3b4-5", "lock").build();
        assert!(testing::decide(&mut p, &lock).is_allow());
    }

    #[test]
    fn an_empty_config_allows_everything() {
        let mut p = policy("{}");
        assert!(testing::decide(&mut p, &setpoint(Assurance::None)).is_allow());
    }

    #[test]
    fn bad_levels_and_keys_are_rejected() {
        let e = testing::init::<AssuranceFloor>(r#"{"commands":{"x":"strong"}}"#)
            .err()
            .unwrap();
        assert!(e.contains("unknown variant `strong`"), "{e}");
        let e = testing::init::<AssuranceFloor>(r#"{"defaults":"none"}"#)
            .err()
            .unwrap();
        assert!(e.contains("unknown field `defaults`"), "{e}");
    }

    #[test]
    fn tests_jsonl_expectations_hold() {
        let n = testing::check_jsonl::<AssuranceFloor>(CONFIG, include_str!("../tests.jsonl"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 10, "only {n} expectations checked");
    }
}
