//! The least-privilege rule as a Cedar policy set, for a side-by-side reference.
//!
//! Principal `Device::"<id>"` with a `role` attribute (absent for role-less devices); action
//! `Action::"send"` (uplink point) or `Action::"receive"` (downlink command); resource
//! `Point::"<name>"` or `Command::"<name>"`. One `permit` per role and allowed name (one per role
//! and action for `"*"`), and, when `default_role` is set, the same for devices without a role.
//! A message is allowed when every point (uplink) or its command (downlink) is: one
//! `is_authorized` per point. The device entities are built once, as a registry would hold them;
//! per decision the bench builds the request's uids and calls the authorizer.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request as CedarRequest, RestrictedExpression,
};
use warden_core::Direction;
use warden_plugin_host::Request;

use crate::native::Config;

pub struct CedarRule {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    device: EntityTypeName,
    point: EntityTypeName,
    command: EntityTypeName,
    send: EntityUid,
    receive: EntityUid,
}

/// A Cedar string literal.
fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The policy set text for a least-privilege config.
pub fn policy_text(c: &Config) -> String {
    let mut text = String::new();
    let mut emit = |cond: &str, action: &str, rtype: &str, names: &[String]| {
        if names.iter().any(|n| n == "*") {
            let _ = writeln!(
                text,
                "permit(principal is Device, action == Action::\"{action}\", resource is {rtype}) when {{ {cond} }};"
            );
            return;
        }
        for n in names {
            let _ = writeln!(
                text,
                "permit(principal is Device, action == Action::\"{action}\", resource == {rtype}::{}) when {{ {cond} }};",
                lit(n)
            );
        }
    };
    for (role, r) in &c.roles {
        let cond = format!("principal has role && principal.role == {}", lit(role));
        emit(&cond, "send", "Point", &r.points);
        emit(&cond, "receive", "Command", &r.commands);
    }
    if let Some(r) = c.default_role.as_ref().and_then(|d| c.roles.get(d)) {
        let cond = "!(principal has role)";
        emit(cond, "send", "Point", &r.points);
        emit(cond, "receive", "Command", &r.commands);
    }
    text
}

fn type_name(s: &str) -> Result<EntityTypeName, String> {
    EntityTypeName::from_str(s).map_err(|e| e.to_string())
}

impl CedarRule {
    /// Builds the policy set from `config` and the device entities from `devices`.
    pub fn new<'a>(
        config: &Config,
        devices: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, String> {
        let text = policy_text(config);
        let policies = PolicySet::from_str(&text).map_err(|e| format!("{e}\n{text}"))?;
        let device = type_name("Device")?;
        let action = type_name("Action")?;
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for (id, role) in devices {
            if !seen.insert(id.to_owned()) {
                continue;
            }
            let uid = EntityUid::from_type_name_and_id(device.clone(), EntityId::new(id));
            let mut attrs = HashMap::new();
            if let Some(role) = role {
                attrs.insert(
                    "role".to_owned(),
                    RestrictedExpression::new_string(role.to_owned()),
                );
            }
            list.push(Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())?);
        }
        let entities = Entities::from_entities(list, None).map_err(|e| e.to_string())?;
        Ok(Self {
            policies,
            entities,
            authorizer: Authorizer::new(),
            send: EntityUid::from_type_name_and_id(action.clone(), EntityId::new("send")),
            receive: EntityUid::from_type_name_and_id(action, EntityId::new("receive")),
            device,
            point: type_name("Point")?,
            command: type_name("Command")?,
        })
    }

    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    fn allowed(&self, principal: &EntityUid, action: &EntityUid, resource: EntityUid) -> bool {
        match CedarRequest::new(
            principal.clone(),
            action.clone(),
            resource,
            Context::empty(),
            None,
        ) {
            Ok(q) => {
                self.authorizer
                    .is_authorized(&q, &self.policies, &self.entities)
                    .decision()
                    == Decision::Allow
            }
            Err(_) => false,
        }
    }

    /// `true` to allow.
    pub fn decide(&self, req: &Request) -> bool {
        let principal =
            EntityUid::from_type_name_and_id(self.device.clone(), EntityId::new(&req.device.id));
        match req.direction {
            Direction::Uplink => req.points.iter().all(|p| {
                let resource =
                    EntityUid::from_type_name_and_id(self.point.clone(), EntityId::new(&p.name));
                self.allowed(&principal, &self.send, resource)
            }),
            Direction::Downlink => {
                let resource = EntityUid::from_type_name_and_id(
                    self.command.clone(),
                    EntityId::new(&req.name),
                );
                self.allowed(&principal, &self.receive, resource)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policies_follow_the_config() {
        let c = Config::parse(
            r#"{"roles":{"sensor":{"points":["temperature","hum\"id"]},"act":{"commands":["set_on"]},"gw":{"points":["*"]}},"default_role":"sensor"}"#,
        )
        .unwrap();
        let rule = CedarRule::new(
            &c,
            [
                ("a:s", Some("sensor")),
                ("a:act", Some("act")),
                ("a:gw", Some("gw")),
                ("a:none", None),
                ("a:cam", Some("camera")),
            ],
        )
        .unwrap();
        // sensor: 2 points; act: 1 command; gw: wildcard; default: 2 points again.
        assert_eq!(rule.policy_count(), 6);
        let up = |id: &str, p: &str| {
            Request::from_json(&format!(r#"{{"device":{{"id":"{id}"}},"direction":"uplink","kind":"telemetry","points":[{{"name":"{p}","value":1}}],"time_ms":1}}"#)).unwrap()
        };
        assert!(rule.decide(&up("a:s", "temperature")));
        assert!(rule.decide(&up("a:s", "hum\\\"id")));
        assert!(!rule.decide(&up("a:s", "x")));
        assert!(rule.decide(&up("a:gw", "x")));
        assert!(rule.decide(&up("a:none", "temperature")));
        assert!(!rule.decide(&up("a:cam", "temperature")));
        // A device missing from the entities has no role: the default role's rules apply.
        assert!(rule.decide(&up("a:unknown-device", "temperature")));
        assert!(!rule.decide(&up("a:unknown-device", "x")));
        let cmd = |id: &str, n: &str| {
            Request::from_json(&format!(r#"{{"device":{{"id":"{id}"}},"direction":"downlink","kind":"command","name":"{n}","time_ms":1}}"#)).unwrap()
        };
        assert!(rule.decide(&cmd("a:act", "set_on")));
        assert!(!rule.decide(&cmd("a:act", "set_off")));
        assert!(!rule.decide(&cmd("a:s", "set_on")));
    }
}
