//! Stage 4, decide: default deny, built-in rules first, then the pluggable deciders.
//!
//! Built-in rules (they always run first, and no decider can override a deny):
//! - a device that is pending, quarantined or revoked gets nothing through, either way;
//! - an active device needs a usage profile (its own, or its model's), may send only the points and
//!   events the profile declares, and may receive only the commands it declares;
//! - a command needs a principal that the device's zone lists as a commander.
//!
//! Then every [`Decider`] bound to the message runs in order; all must allow. The first deny or
//! quarantine wins. A decider's error is a deny. This is the seam the Wasm plugin host plugs into.

use std::collections::{HashMap, HashSet};

use warden_core::{Assurance, Command, Decision, Direction, Kind, Message, Verdict};

use crate::behaviour::{Action, Outcome};
use crate::config::Config;
use crate::registry::{DeviceRecord, StatsSnapshot, Status};

/// A compiled usage profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub points: HashSet<String>,
    pub events: HashSet<String>,
    pub commands: HashSet<String>,
    pub min_assurance: Assurance,
    pub require_fresh: bool,
    /// Accepted security labels; empty for any.
    pub security: Vec<String>,
    /// Firmware rules (posture), if the profile declares any.
    pub posture: Option<crate::posture::Rule>,
}

/// The built-in policy compiled from the config: profiles, model → profile, zones.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    profiles: HashMap<String, Profile>,
    models: HashMap<String, String>,
    zones: HashMap<String, HashSet<String>>,
    /// Baseline rules (the behaviour stage reads them from here after a reload).
    pub behaviour: crate::config::BehaviourConfig,
}

impl Policy {
    pub fn from_config(c: &Config) -> Self {
        Self {
            profiles: c
                .profiles
                .iter()
                .map(|(n, p)| {
                    (
                        n.clone(),
                        Profile {
                            points: p.points.iter().cloned().collect(),
                            events: p.events.iter().cloned().collect(),
                            commands: p.commands.iter().cloned().collect(),
                            min_assurance: p.min_assurance,
                            require_fresh: p.require_fresh,
                            security: p.security.clone(),
                            // checked when the config was loaded
                            posture: crate::posture::Rule::compile(
                                p.min_firmware.as_deref(),
                                &p.vulnerable_firmware,
                                p.firmware_action,
                            )
                            .ok()
                            .flatten(),
                        },
                    )
                })
                .collect(),
            models: c.models.clone().into_iter().collect(),
            zones: c
                .zones
                .iter()
                .map(|(n, z)| (n.clone(), z.commanders.iter().cloned().collect()))
                .collect(),
            behaviour: c.behaviour.clone(),
        }
    }

    /// The device's own profile, else its model's (`Manufacturer/Model`).
    pub fn profile_for<'a>(&'a self, r: &DeviceRecord) -> Option<(&'a str, &'a Profile)> {
        let name: &str = match &r.profile {
            Some(p) => p.as_str(),
            None => {
                let (m, mo) = (r.manufacturer.as_deref()?, r.model.as_deref()?);
                self.models.get(&format!("{m}/{mo}"))?.as_str()
            }
        };
        self.profiles
            .get_key_value(name)
            .map(|(k, p)| (k.as_str(), p))
    }
}

/// What a decider is asked about.
pub struct DecisionRequest<'a> {
    pub record: &'a DeviceRecord,
    pub direction: Direction,
    pub kind: Kind,
    pub message: Option<&'a Message>,
    pub command: Option<&'a Command>,
    pub principal: Option<&'a str>,
    /// The security label the uplink came under, or for a command the one the device was last
    /// heard under (`Message::security`).
    pub security: Option<&'a str>,
    pub stats: StatsSnapshot,
    pub now_ms: u64,
    /// The behaviour stage's score and features (none when baselines are off).
    pub anomaly: Option<&'a crate::behaviour::Assessment>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeciderError(pub String);

/// A further decider after the built-in rules (the Wasm plugin host implements this).
pub trait Decider: Send {
    fn name(&self) -> &str;
    /// Whether this decider is bound to the request (zone, role, protocol, device, direction).
    fn applies(&self, req: &DecisionRequest<'_>) -> bool;
    /// A decision; one whose `decider` is empty is attributed to `plugin:<name>`.
    fn decide(&mut self, req: &DecisionRequest<'_>) -> Result<Decision, DeciderError>;
    /// Housekeeping, once a second on the pipeline thread.
    fn tick(&mut self) {}
    /// A hot-reloaded plugin; a decider that does not host it hands it back.
    fn offer(
        &mut self,
        update: crate::plugins::chain::PluginUpdate,
    ) -> Option<crate::plugins::chain::PluginUpdate> {
        Some(update)
    }
}

fn status_gate(r: &DeviceRecord) -> Result<(), Decision> {
    match r.status {
        Status::Active => Ok(()),
        s => Err(Decision::deny(
            "builtin:status",
            format!("device is {}", s.as_str()),
        )),
    }
}

/// Runs the deciders bound to the request; an allow names the built-in rules and every decider
/// that allowed and said so (the plugin chain names each plugin it consulted).
fn run_deciders(deciders: &mut [Box<dyn Decider>], req: &DecisionRequest<'_>) -> Decision {
    let mut by = String::from("builtin:profile");
    for d in deciders.iter_mut() {
        if !d.applies(req) {
            continue;
        }
        match d.decide(req) {
            Ok(dec) if dec.verdict == Verdict::Allow => {
                if !dec.decider.is_empty() {
                    by.push('+');
                    by.push_str(&dec.decider);
                }
            }
            Ok(mut dec) => {
                if dec.decider.is_empty() {
                    dec.decider = format!("plugin:{}", d.name());
                }
                return dec;
            }
            Err(e) => {
                return Decision::deny(
                    format!("plugin:{}", d.name()),
                    format!("decider error: {e}"),
                );
            }
        }
    }
    Decision::allow(by)
}

pub fn uplink(
    policy: &Policy,
    deciders: &mut [Box<dyn Decider>],
    r: &DeviceRecord,
    msg: &Message,
    stats: StatsSnapshot,
    behaviour: Option<&Outcome>,
    now_ms: u64,
) -> Decision {
    if let Err(d) = status_gate(r) {
        return d;
    }
    let Some((pname, profile)) = policy.profile_for(r) else {
        return Decision::deny("builtin:profile", "device has no usage profile");
    };
    let allowed = |name: &str| match msg.kind {
        Kind::Event => profile.events.contains(name) || profile.points.contains(name),
        _ => profile.points.contains(name),
    };
    if let Some(p) = msg.points.iter().find(|p| !allowed(&p.name)) {
        return Decision::deny(
            "builtin:profile",
            format!("point `{}` is not in profile `{pname}`", p.name),
        );
    }
    if let Some(o) = behaviour
        && o.action == Action::Quarantine
    {
        return Decision::quarantine("builtin:behaviour", o.reason()).with_cause("anomaly");
    }
    run_deciders(
        deciders,
        &DecisionRequest {
            record: r,
            direction: Direction::Uplink,
            kind: msg.kind,
            message: Some(msg),
            command: None,
            principal: None,
            security: msg.security.as_deref(),
            stats,
            now_ms,
            anomaly: behaviour.map(|o| &o.assessment),
        },
    )
}

#[allow(clippy::too_many_arguments)] // the stage takes the message and its context; no bag struct
pub fn downlink(
    policy: &Policy,
    deciders: &mut [Box<dyn Decider>],
    r: &DeviceRecord,
    cmd: &Command,
    principal: &str,
    roles: &[String],
    security: Option<&str>,
    stats: StatsSnapshot,
    behaviour: Option<&Outcome>,
    now_ms: u64,
) -> Decision {
    if let Err(d) = status_gate(r) {
        return d;
    }
    let Some((pname, profile)) = policy.profile_for(r) else {
        return Decision::deny("builtin:profile", "device has no usage profile");
    };
    let posture = crate::posture::assess(profile.posture.as_ref(), r.firmware.as_deref());
    if posture.restricted() {
        return Decision::deny("builtin:posture", posture.reason(pname)).with_cause("posture");
    }
    if !profile.commands.contains(&cmd.name) {
        return Decision::deny(
            "builtin:profile",
            format!("command `{}` is not in profile `{pname}`", cmd.name),
        );
    }
    let commanders = policy.zones.get(&r.zone);
    // a commander is named (`operator:alice`, `mqtt:operator`), a role form (`role:operator`,
    // satisfied by that role and above), or `*`
    let may = commanders.is_some_and(|c| {
        c.contains(principal) || c.contains("*") || roles.iter().any(|r| c.contains(r))
    });
    if !may {
        return Decision::deny(
            "builtin:zone",
            format!("`{principal}` may not command devices in zone `{}`", r.zone),
        );
    }
    if let Err(d) = super::authenticate::downlink(profile, security) {
        return d;
    }
    if let Some(o) = behaviour
        && o.action == Action::Quarantine
    {
        // an anomalous command is refused; the device itself did nothing wrong
        return Decision::deny("builtin:behaviour", o.reason()).with_cause("anomaly");
    }
    run_deciders(
        deciders,
        &DecisionRequest {
            record: r,
            direction: Direction::Downlink,
            kind: Kind::Command,
            message: None,
            command: Some(cmd),
            principal: Some(principal),
            security,
            stats,
            now_ms,
            anomaly: behaviour.map(|o| &o.assessment),
        },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::{DeviceId, Point, Value};

    fn policy() -> Policy {
        let c = Config::parse(
            r#"
[zones.default]
commanders = ["mqtt:operator"]
[zones.lab]
commanders = ["*"]
[profiles.thermo]
points = ["temperature"]
events = ["tamper"]
commands = ["set_setpoint"]
[models]
"Acme/T1" = "thermo"
"#,
            std::path::Path::new("t"),
        )
        .unwrap();
        Policy::from_config(&c)
    }

    fn rec(status: Status, profile: Option<&str>) -> DeviceRecord {
        DeviceRecord {
            id: DeviceId::new("sim", "a").unwrap(),
            name: None,
            manufacturer: Some("Acme".into()),
            model: Some("T1".into()),
            firmware: None,
            serial: None,
            zone: "default".into(),
            role: None,
            profile: profile.map(str::to_owned),
            status,
            status_by: "x".into(),
            status_at: 0,
            status_reason: String::new(),
            first_seen: None,
            last_seen: None,
            credentials: vec![],
        }
    }

    fn stats() -> StatsSnapshot {
        crate::registry::Stats::default().snapshot()
    }

    fn tele(name: &str) -> Message {
        Message::telemetry(
            DeviceId::new("sim", "a").unwrap(),
            vec![Point::new(name, Value::Float(1.0))],
        )
    }

    struct Fixed(Result<Decision, String>);
    impl Decider for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn applies(&self, _: &DecisionRequest<'_>) -> bool {
            true
        }
        fn decide(&mut self, _: &DecisionRequest<'_>) -> Result<Decision, DeciderError> {
            self.0.clone().map_err(DeciderError)
        }
    }

    #[test]
    fn status_gate_is_absolute() {
        let p = policy();
        for s in [Status::Pending, Status::Quarantined, Status::Revoked] {
            let mut ds: Vec<Box<dyn Decider>> = vec![Box::new(Fixed(Ok(Decision::allow("x"))))];
            let d = uplink(
                &p,
                &mut ds,
                &rec(s, None),
                &tele("temperature"),
                stats(),
                None,
                0,
            );
            assert_eq!(d.verdict, Verdict::Deny);
            assert_eq!(d.decider, "builtin:status");
            let cmd = Command {
                name: "set_setpoint".into(),
                args: vec![],
            };
            let d = downlink(
                &p,
                &mut ds,
                &rec(s, None),
                &cmd,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                0,
            );
            assert_eq!(d.decider, "builtin:status");
        }
    }

    #[test]
    fn profile_from_model_and_point_checks() {
        let p = policy();
        let r = rec(Status::Active, None);
        let mut none: Vec<Box<dyn Decider>> = vec![];
        assert!(uplink(&p, &mut none, &r, &tele("temperature"), stats(), None, 0).is_allow());
        let d = uplink(&p, &mut none, &r, &tele("debug_shell"), stats(), None, 0);
        assert!(d.reason.contains("debug_shell"), "{}", d.reason);
        let mut ev = tele("tamper");
        assert!(!uplink(&p, &mut none, &r, &ev, stats(), None, 0).is_allow());
        ev.kind = Kind::Event;
        assert!(uplink(&p, &mut none, &r, &ev, stats(), None, 0).is_allow());
        let mut unprofiled = rec(Status::Active, None);
        unprofiled.model = Some("Other".into());
        let d = uplink(
            &p,
            &mut none,
            &unprofiled,
            &tele("temperature"),
            stats(),
            None,
            0,
        );
        assert!(d.reason.contains("no usage profile"));
    }

    #[test]
    fn commands_need_profile_and_zone_commander() {
        let p = policy();
        let mut none: Vec<Box<dyn Decider>> = vec![];
        let mut r = rec(Status::Active, Some("thermo"));
        let set = Command {
            name: "set_setpoint".into(),
            args: vec![],
        };
        assert!(
            downlink(
                &p,
                &mut none,
                &r,
                &set,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                0
            )
            .is_allow()
        );
        let d = downlink(
            &p,
            &mut none,
            &r,
            &set,
            "mqtt:intruder",
            &[],
            None,
            stats(),
            None,
            0,
        );
        assert_eq!(d.decider, "builtin:zone");
        let reboot = Command {
            name: "reboot".into(),
            args: vec![],
        };
        assert!(
            !downlink(
                &p,
                &mut none,
                &r,
                &reboot,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                0
            )
            .is_allow()
        );
        r.zone = "lab".into();
        assert!(
            downlink(
                &p,
                &mut none,
                &r,
                &set,
                "anyone",
                &[],
                None,
                stats(),
                None,
                0
            )
            .is_allow()
        );
        r.zone = "undefined".into();
        assert!(
            !downlink(
                &p,
                &mut none,
                &r,
                &set,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                0
            )
            .is_allow()
        );
    }

    /// Records what the seam hands a decider, and binds only to downlinks.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
    impl Decider for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn applies(&self, req: &DecisionRequest<'_>) -> bool {
            req.direction == Direction::Downlink
        }
        fn decide(&mut self, r: &DecisionRequest<'_>) -> Result<Decision, DeciderError> {
            self.0.lock().unwrap().push(format!(
                "{} {:?} {:?} msg={} cmd={:?} by={:?} msgs={} t={}",
                r.record.id,
                r.direction,
                r.kind,
                r.message.is_some(),
                r.command.map(|c| c.name.as_str()),
                r.principal,
                r.stats.messages,
                r.now_ms
            ));
            Ok(Decision::allow("recorder"))
        }
    }

    #[test]
    fn deciders_get_the_request_and_only_when_bound() {
        let p = policy();
        let r = rec(Status::Active, Some("thermo"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut ds: Vec<Box<dyn Decider>> = vec![Box::new(Recorder(log.clone()))];
        // not bound to uplinks
        assert!(uplink(&p, &mut ds, &r, &tele("temperature"), stats(), None, 5).is_allow());
        let set = Command {
            name: "set_setpoint".into(),
            args: vec![],
        };
        assert!(
            downlink(
                &p,
                &mut ds,
                &r,
                &set,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                7
            )
            .is_allow()
        );
        // a built-in deny stops before any decider runs
        let reboot = Command {
            name: "reboot".into(),
            args: vec![],
        };
        assert!(
            !downlink(
                &p,
                &mut ds,
                &r,
                &reboot,
                "mqtt:operator",
                &[],
                None,
                stats(),
                None,
                8
            )
            .is_allow()
        );
        assert_eq!(
            *log.lock().unwrap(),
            [
                "sim:a Downlink Command msg=false cmd=Some(\"set_setpoint\") by=Some(\"mqtt:operator\") msgs=0 t=7"
            ]
        );
    }

    #[test]
    fn deciders_can_only_narrow_and_errors_deny() {
        let p = policy();
        let r = rec(Status::Active, Some("thermo"));
        let mut ds: Vec<Box<dyn Decider>> = vec![Box::new(Fixed(Err("trap".into())))];
        let d = uplink(&p, &mut ds, &r, &tele("temperature"), stats(), None, 0);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.decider, "plugin:fixed");
        assert!(d.reason.contains("trap"));
        let mut ds: Vec<Box<dyn Decider>> = vec![
            Box::new(Fixed(Ok(Decision::allow("a")))),
            Box::new(Fixed(Ok(Decision::quarantine("b", "odd")))),
        ];
        let d = uplink(&p, &mut ds, &r, &tele("temperature"), stats(), None, 0);
        assert_eq!(d.verdict, Verdict::Quarantine);
        // an allowing decider cannot admit a point the profile forbids
        let mut ds: Vec<Box<dyn Decider>> = vec![Box::new(Fixed(Ok(Decision::allow("a"))))];
        assert!(!uplink(&p, &mut ds, &r, &tele("debug_shell"), stats(), None, 0).is_allow());
    }

    #[test]
    fn an_allow_names_the_deciders_that_allowed() {
        let p = policy();
        let r = rec(Status::Active, Some("thermo"));
        let mut none: Vec<Box<dyn Decider>> = vec![];
        let d = uplink(&p, &mut none, &r, &tele("temperature"), stats(), None, 0);
        assert_eq!(d.decider, "builtin:profile");
        let mut ds: Vec<Box<dyn Decider>> = vec![
            Box::new(Fixed(Ok(Decision::allow("plugin:a+plugin:b")))),
            Box::new(Fixed(Ok(Decision::allow("")))),
        ];
        let d = uplink(&p, &mut ds, &r, &tele("temperature"), stats(), None, 0);
        assert!(d.is_allow());
        assert_eq!(d.decider, "builtin:profile+plugin:a+plugin:b");
    }
}
