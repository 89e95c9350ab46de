//! # least-privilege
//!
//! Each device role may send only the points it is meant to send and receive only the commands it
//! is meant to receive. A temperature sensor that suddenly reports `debug_shell`, or an `set_on`
//! command sent to a sensor, is denied.
//!
//! ## Config
//!
//! ```json
//! {
//!   "roles": {
//!     "sensor":   { "points": ["temperature", "humidity"], "commands": [] },
//!     "actuator": { "points": ["state"], "commands": ["set_on", "set_off"] }
//!   },
//!   "default_role": null
//! }
//! ```
//!
//! - `roles`: per role (the device's role in the registry), the uplink `points` it may send and
//!   the downlink `commands` it may receive. `"*"` in a list allows any name. Both lists default
//!   to empty (nothing allowed).
//! - `default_role`: the role whose rules apply to devices without a role; `null` (the default)
//!   denies every message of a device without a role. It must name one of `roles`.
//!
//! A device whose role is not in `roles` is denied. Uplinks without points (e.g. an announce) are
//! allowed; for an uplink, every point must be allowed.
//!
//! Deny reasons:
//! - ``role `sensor` may not send point `debug_shell` ``
//! - ``role `sensor` may not receive command `set_on` ``
//! - ``role `camera` is not configured``
//! - ``device has no role and no default_role is configured``
//!
//! Cost: one host call for the role plus one per point (uplink) or one for the command name
//! (downlink); symbol compares only, no allocation unless it denies.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    default_role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleConfig {
    #[serde(default)]
    points: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
}

/// An allow list of names, or everything (`"*"`).
struct Allowed {
    any: bool,
    names: SymbolSet,
}

impl Allowed {
    fn new(names: &[String]) -> Self {
        Self {
            any: names.iter().any(|n| n == "*"),
            names: SymbolSet::intern(names),
        }
    }

    #[inline]
    fn permits(&self, name: Symbol) -> bool {
        self.any || self.names.contains(name)
    }
}

struct Rules {
    points: Allowed,
    commands: Allowed,
}

/// What a role's rules refused.
enum Refused {
    /// The point at this index.
    Point(u32),
    Command,
}

impl Rules {
    fn new(r: &RoleConfig) -> Self {
        Self {
            points: Allowed::new(&r.points),
            commands: Allowed::new(&r.commands),
        }
    }

    #[inline]
    fn check(&self, h: &Header, req: &Request) -> Result<(), Refused> {
        match h.direction {
            Direction::Uplink => {
                for (i, point) in req.points(h) {
                    if !self.points.permits(point) {
                        return Err(Refused::Point(i));
                    }
                }
                Ok(())
            }
            Direction::Downlink if self.commands.permits(req.name()) => Ok(()),
            Direction::Downlink => Err(Refused::Command),
        }
    }
}

/// The policy: the rules of every configured role, by role symbol.
pub struct LeastPrivilege {
    roles: SymbolMap<Rules>,
    /// The rules (and name) for devices without a role.
    default: Option<(Rules, String)>,
}

/// Words a denial (fetching the texts behind the symbols only now).
fn refusal(role: &str, refused: Refused, req: &Request) -> Verdict {
    match refused {
        Refused::Point(i) => Verdict::Deny(format!(
            "role `{role}` may not send point `{}`",
            req.point_name_text(i).unwrap_or_default()
        )),
        Refused::Command => Verdict::Deny(format!(
            "role `{role}` may not receive command `{}`",
            req.name_text()
        )),
    }
}

impl Policy for LeastPrivilege {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        let default = match c.default_role {
            Some(name) => match c.roles.get(&name) {
                Some(r) => Some((Rules::new(r), name)),
                None => {
                    return Err(format!(
                        "default_role `{name}` is not one of the configured roles"
                    ));
                }
            },
            None => None,
        };
        let roles = SymbolMap::intern(c.roles.iter().map(|(name, r)| (name, Rules::new(r))));
        if roles.len() != c.roles.len() {
            return Err("too many names: the gateway's symbol table is full".into());
        }
        Ok(Self { roles, default })
    }

    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        match req.role() {
            Some(role) => match self.roles.get(role) {
                Some(rules) => match rules.check(h, req) {
                    Ok(()) => Verdict::Allow,
                    Err(r) => refusal(&req.role_text().unwrap_or_default(), r, req),
                },
                None => Verdict::Deny(format!(
                    "role `{}` is not configured",
                    req.role_text().unwrap_or_default()
                )),
            },
            None => match &self.default {
                Some((rules, name)) => match rules.check(h, req) {
                    Ok(()) => Verdict::Allow,
                    Err(r) => refusal(name, r, req),
                },
                None => Verdict::deny("device has no role and no default_role is configured"),
            },
        }
    }
}

export_policy!(LeastPrivilege);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    const CONFIG: &str = include_str!("../config.json");

    fn policy(config: &str) -> LeastPrivilege {
        testing::init(config).unwrap()
    }

    #[test]
    fn sensor_may_send_its_points_only() {
        let mut p = policy(CONFIG);
        let ok = RequestBuilder::uplink("lorawan:0004a30b001c0530")
            .role("sensor")
            .point("temperature", 21.5)
            .point("humidity", 40)
            .build();
        assert_eq!(testing::decide(&mut p, &ok), Verdict::Allow);

        let bad = RequestBuilder::uplink("lorawan:0004a30b001c0530")
            .role("sensor")
            .point("temperature", 21.5)
            .point("debug_shell", "on")
            .build();
        assert_eq!(
            testing::decide(&mut p, &bad),
            Verdict::deny("role `sensor` may not send point `debug_shell`")
        );
    }

    #[test]
    fn commands_are_checked_per_role() {
        let mut p = policy(CONFIG);
        let on = RequestBuilder::command("modbus:tcp-1-u3", "set_on")
            .role("actuator")
            .build();
        assert!(testing::decide(&mut p, &on).is_allow());
        let to_sensor = RequestBuilder::command("lorawan:01", "set_on")
            .role("sensor")
            .build();
        assert_eq!(
            testing::decide(&mut p, &to_sensor),
            Verdict::deny("role `sensor` may not receive command `set_on`")
        );
        let reboot = RequestBuilder::command("modbus:tcp-1-u3", "reboot")
            .role("actuator")
            .build();
        assert_eq!(
            testing::decide(&mut p, &reboot).reason(),
            Some("role `actuator` may not receive command `reboot`")
        );
    }

    #[test]
    fn unknown_roles_and_roleless_devices_are_denied() {
        let mut p = policy(CONFIG);
        let camera = RequestBuilder::uplink("zigbee:cam")
            .role("camera")
            .point("state", true)
            .build();
        assert_eq!(
            testing::decide(&mut p, &camera),
            Verdict::deny("role `camera` is not configured")
        );
        let none = RequestBuilder::uplink("zigbee:x")
            .point("state", true)
            .build();
        assert_eq!(
            testing::decide(&mut p, &none).reason(),
            Some("device has no role and no default_role is configured")
        );
    }

    #[test]
    fn default_role_covers_roleless_devices() {
        let mut p =
            policy(r#"{"roles":{"sensor":{"points":["temperature"]}},"default_role":"sensor"}"#);
        let ok = RequestBuilder::uplink("ble:aa")
            .point("temperature", 3)
            .build();
        assert!(testing::decide(&mut p, &ok).is_allow());
        let bad = RequestBuilder::uplink("ble:aa").point("rssi", -70).build();
        assert_eq!(
            testing::decide(&mut p, &bad).reason(),
            Some("role `sensor` may not send point `rssi`")
        );
    }

    #[test]
    fn wildcard_allows_any_name() {
        let mut p = policy(r#"{"roles":{"gw":{"points":["*"],"commands":["*"]}}}"#);
        let up = RequestBuilder::uplink("mqtt:gw")
            .role("gw")
            .point("anything", 1)
            .build();
        let down = RequestBuilder::command("mqtt:gw", "whatever")
            .role("gw")
            .build();
        assert!(testing::decide(&mut p, &up).is_allow());
        assert!(testing::decide(&mut p, &down).is_allow());
    }

    #[test]
    fn an_uplink_without_points_is_allowed() {
        let mut p = policy(CONFIG);
        let m = RequestBuilder::uplink("lorawan:01")
            .kind(Kind::Announce)
            .role("sensor")
            .build();
        assert!(testing::decide(&mut p, &m).is_allow());
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let e = testing::init::<LeastPrivilege>(r#"{"roles":{},"default_role":"ghost"}"#)
            .err()
            .unwrap();
        assert!(e.contains("default_role `ghost`"), "{e}");
        let e = testing::init::<LeastPrivilege>(r#"{"roles":{"a":{"point":[]}}}"#)
            .err()
            .unwrap();
        assert!(e.contains("unknown field `point`"), "{e}");
        assert!(
            testing::init::<LeastPrivilege>("{}").is_err(),
            "roles is required"
        );
    }

    #[test]
    fn tests_jsonl_expectations_hold() {
        let n = testing::check_jsonl::<LeastPrivilege>(CONFIG, include_str!("../tests.jsonl"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 6, "only {n} expectations checked");
    }
}
