//! The least-privilege rule as plain native Rust over [`Request`]: the same config format and
//! semantics as `plugins/examples/least-privilege` (and the same deny reasons), so its outcomes
//! can be checked equal to the plugin's message by message.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use warden_core::Direction;
use warden_plugin_host::{Outcome, Request};

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    pub default_role: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    #[serde(default)]
    pub points: Vec<String>,
    #[serde(default)]
    pub commands: Vec<String>,
}

impl Config {
    pub fn parse(json: &str) -> Result<Self, String> {
        let c: Config = serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))?;
        if let Some(d) = &c.default_role
            && !c.roles.contains_key(d)
        {
            return Err(format!(
                "default_role `{d}` is not one of the configured roles"
            ));
        }
        Ok(c)
    }
}

struct Allowed {
    any: bool,
    names: Vec<String>,
}

impl Allowed {
    fn new(names: &[String]) -> Self {
        Self {
            any: names.iter().any(|n| n == "*"),
            names: names.to_vec(),
        }
    }

    #[inline]
    fn permits(&self, name: &str) -> bool {
        self.any || self.names.iter().any(|n| n == name)
    }
}

struct Rules {
    points: Allowed,
    commands: Allowed,
}

impl Rules {
    fn new(r: &RoleConfig) -> Self {
        Self {
            points: Allowed::new(&r.points),
            commands: Allowed::new(&r.commands),
        }
    }
}

pub struct LeastPrivilege {
    roles: HashMap<String, Rules>,
    default: Option<(Rules, String)>,
}

impl LeastPrivilege {
    pub fn new(c: &Config) -> Self {
        Self {
            roles: c
                .roles
                .iter()
                .map(|(n, r)| (n.clone(), Rules::new(r)))
                .collect(),
            default: c
                .default_role
                .as_ref()
                .and_then(|name| c.roles.get(name).map(|r| (Rules::new(r), name.clone()))),
        }
    }

    pub fn decide(&self, req: &Request) -> Outcome {
        let (rules, role) = match req.device.role.as_deref() {
            Some(role) => match self.roles.get(role) {
                Some(rules) => (rules, role),
                None => return Outcome::Deny(format!("role `{role}` is not configured")),
            },
            None => match &self.default {
                Some((rules, name)) => (rules, name.as_str()),
                None => {
                    return Outcome::Deny(
                        "device has no role and no default_role is configured".into(),
                    );
                }
            },
        };
        match req.direction {
            Direction::Uplink => {
                for p in &req.points {
                    if !rules.points.permits(&p.name) {
                        return Outcome::Deny(format!(
                            "role `{role}` may not send point `{}`",
                            p.name
                        ));
                    }
                }
                Outcome::Allow
            }
            Direction::Downlink if rules.commands.permits(&req.name) => Outcome::Allow,
            Direction::Downlink => Outcome::Deny(format!(
                "role `{role}` may not receive command `{}`",
                req.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(json: &str) -> Request {
        Request::from_json(json).unwrap()
    }

    #[test]
    fn rule_semantics() {
        let c = Config::parse(
            r#"{"roles":{"sensor":{"points":["temperature"]},"act":{"commands":["set_on"]},"gw":{"points":["*"]}},"default_role":"sensor"}"#,
        )
        .unwrap();
        let lp = LeastPrivilege::new(&c);
        let up = |role: &str, p: &str| {
            req(&format!(
                r#"{{"device":{{"id":"a:b"{role}}},"direction":"uplink","kind":"telemetry","points":[{{"name":"{p}","value":1}}],"time_ms":1}}"#
            ))
        };
        assert_eq!(
            lp.decide(&up(r#","role":"sensor""#, "temperature")),
            Outcome::Allow
        );
        assert_eq!(
            lp.decide(&up(r#","role":"sensor""#, "x")),
            Outcome::Deny("role `sensor` may not send point `x`".into())
        );
        assert_eq!(lp.decide(&up("", "temperature")), Outcome::Allow);
        assert_eq!(lp.decide(&up(r#","role":"gw""#, "x")), Outcome::Allow);
        assert_eq!(
            lp.decide(&up(r#","role":"cam""#, "x")),
            Outcome::Deny("role `cam` is not configured".into())
        );
        let cmd = |role: &str, n: &str| {
            req(&format!(
                r#"{{"device":{{"id":"a:b","role":"{role}"}},"direction":"downlink","kind":"command","name":"{n}","time_ms":1}}"#
            ))
        };
        assert_eq!(lp.decide(&cmd("act", "set_on")), Outcome::Allow);
        assert_eq!(
            lp.decide(&cmd("sensor", "set_on")),
            Outcome::Deny("role `sensor` may not receive command `set_on`".into())
        );
        let none = LeastPrivilege::new(&Config::parse(r#"{"roles":{}}"#).unwrap());
        assert_eq!(
            none.decide(&up("", "t")),
            Outcome::Deny("device has no role and no default_role is configured".into())
        );
        assert!(Config::parse(r#"{"roles":{},"default_role":"x"}"#).is_err());
    }
}
