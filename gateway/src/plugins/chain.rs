//! The plugin chain the decide stage runs after its built-in rules.
//!
//! Bindings are tried in config order; every binding whose selectors match the message runs its
//! plugin, and all must allow. The first deny or quarantine wins and is recorded with the
//! plugin's name and reason. A plugin that failed to load, was refused on reload before it ever
//! loaded, or was disabled after repeated failures makes its bindings deny ("fail closed").

use std::fmt::Write as _;
use std::sync::Arc;

use warden_core::{Assurance, Decision, Direction, Kind};
use warden_plugin_host::{DeviceStatus, Failure, Kv, Outcome, Plugin, Prepared, Request};

use super::recorder::Recorder;
use super::{LoadedPlugin, PluginSpec};
use crate::audit::{AuditEntry, AuditSink, Category};
use crate::config::PluginBindConfig;
use crate::metrics::{Metrics, PluginLabels, PluginOutcomeLabels};
use crate::pipeline::decide::{Decider, DeciderError, DecisionRequest};
use crate::registry::Status;

/// A plugin's place in the chain.
pub struct Slot {
    pub spec: PluginSpec,
    /// None when it is not usable; `unavailable` says why.
    pub plugin: Option<Plugin>,
    pub unavailable: String,
    /// `warden_plugin_decisions{plugin,outcome="allow"}`, looked up once.
    allowed: prometheus_client::metrics::counter::Counter,
    /// `plugin:<name>`, as decisions name it.
    label: String,
}

/// One `[[plugins.bind]]`, compiled.
#[derive(Debug, Clone)]
pub struct Binding {
    slot: usize,
    zones: Vec<String>,
    roles: Vec<String>,
    protocols: Vec<String>,
    devices: Vec<String>,
    direction: Option<Direction>,
}

impl Binding {
    /// Compiles a binding against the slot list (names were checked by config validation).
    pub fn new(b: &PluginBindConfig, slots: &[Slot]) -> Option<Self> {
        let slot = slots.iter().position(|s| s.spec.name == b.plugin)?;
        Some(Self {
            slot,
            zones: b.zones.clone(),
            roles: b.roles.clone(),
            protocols: b.protocols.clone(),
            devices: b.devices.clone(),
            direction: match b.direction.as_deref() {
                Some("uplink") => Some(Direction::Uplink),
                Some("downlink") => Some(Direction::Downlink),
                _ => None,
            },
        })
    }

    /// `id` is the device id as text (already in the chain's request buffer: no allocation).
    fn matches(&self, req: &DecisionRequest<'_>, id: &str, role: Option<&str>) -> bool {
        let r = req.record;
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.direction.is_none_or(|d| d == req.direction)
            && any(&self.zones, &r.zone)
            && (self.roles.is_empty() || role.is_some_and(|x| any(&self.roles, x)))
            && any(&self.protocols, r.id.protocol())
            && (self.devices.is_empty()
                || self.devices.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => id.starts_with(prefix),
                    None => p == id,
                }))
    }
}

/// A hot-reloaded plugin on its way to the pipeline thread: verified, compiled, tested and
/// instantiated (its `init` run) on the watcher's thread already; the pipeline only swaps it in
/// and hands it the running version's key-value state.
pub struct PluginUpdate {
    pub spec: PluginSpec,
    pub prepared: Prepared,
    pub plugin: Plugin,
    pub why: super::watch::Why,
}

/// The plugins, their bindings and the reusable request they are asked about.
pub struct PluginChain {
    slots: Vec<Slot>,
    bindings: Vec<Binding>,
    /// Boxed: lent to each plugin by swapping the box (`decide_in_place`), not copied.
    req: Box<Request>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    recorder: Option<Recorder>,
    /// Reloads waiting for their running version to finish replacing an instance.
    deferred: Vec<PluginUpdate>,
    /// What the API shows of each plugin; touched on reload and disable only.
    status: super::status::PluginStatus,
}

impl PluginChain {
    pub fn new(
        loaded: Vec<LoadedPlugin>,
        binds: &[PluginBindConfig],
        audit: AuditSink,
        metrics: Arc<Metrics>,
        recorder: Option<Recorder>,
    ) -> Self {
        let slots: Vec<Slot> = loaded
            .into_iter()
            .map(|l| {
                let (plugin, unavailable) = match l.result {
                    Ok(p) => (Some(p), String::new()),
                    Err(e) => (None, e),
                };
                let allowed = metrics
                    .plugin_decisions
                    .get_or_create(&PluginOutcomeLabels {
                        plugin: l.spec.name.clone(),
                        outcome: "allow".into(),
                    })
                    .clone();
                Slot {
                    label: format!("plugin:{}", l.spec.name),
                    spec: l.spec,
                    plugin,
                    unavailable,
                    allowed,
                }
            })
            .collect();
        let bindings = binds
            .iter()
            .filter_map(|b| Binding::new(b, &slots))
            .collect();
        let chain = Self {
            slots,
            bindings,
            req: Box::default(),
            audit,
            metrics,
            recorder,
            deferred: Vec::new(),
            status: super::status::PluginStatus::default(),
        };
        for s in &chain.slots {
            chain.set_active(&s.spec.name, s.plugin.is_some());
        }
        chain
    }

    /// Reports reloads and disabling to `status` (the one the loader filled).
    #[must_use]
    pub fn with_status(mut self, status: super::status::PluginStatus) -> Self {
        self.status = status;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.recorder.is_none()
    }

    fn set_active(&self, name: &str, active: bool) {
        self.metrics
            .plugin_active
            .get_or_create(&PluginLabels {
                plugin: name.to_owned(),
            })
            .set(i64::from(active));
    }

    fn count(&self, plugin: &str, outcome: &str) {
        self.metrics
            .plugin_decisions
            .get_or_create(&PluginOutcomeLabels {
                plugin: plugin.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Swaps in a reloaded plugin, handing it the running one's key-value state. While the
    /// running one is replacing a failed instance (the replacement holds the state), the update
    /// waits for the next tick: nothing here blocks the message thread.
    pub fn apply(&mut self, mut u: PluginUpdate) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.spec.name == u.spec.name) else {
            return;
        };
        let kv = match slot.plugin.as_mut() {
            Some(old) => match old.take_kv() {
                Some(kv) => kv,
                None => {
                    self.deferred.push(u);
                    return;
                }
            },
            None => Kv::default(),
        };
        u.plugin.adopt_kv(kv);
        self.status
            .loaded(&u.spec, &u.prepared, warden_core::now_ms());
        let name = u.spec.name.clone();
        let sha = hex::encode(u.prepared.sha256);
        slot.plugin = Some(u.plugin);
        slot.unavailable.clear();
        slot.spec = u.spec;
        self.audit.record(
            AuditEntry::new(
                Category::System,
                "plugin-reload",
                "gateway",
                format!("plugin `{name}` reloaded ({} changed)", u.why.as_str()),
            )
            .detail(serde_json::json!({
                "plugin": name, "sha256": sha, "result": "ok", "changed": u.why.as_str(),
            })),
        );
        self.set_active(&name, true);
        tracing::info!(plugin = %name, sha256 = %sha, "plugin reloaded");
    }

    fn fill(&mut self, dr: &DecisionRequest<'_>, role: Option<&str>) {
        let r = dr.record;
        let q = &mut self.req;
        let d = &mut q.device;
        d.id.clear();
        let _ = write!(d.id, "{}", r.id);
        d.protocol.clear();
        d.protocol.push_str(r.id.protocol());
        d.zone.clone_from(&r.zone);
        set_opt(&mut d.role, role);
        d.status = match r.status {
            Status::Pending => DeviceStatus::Pending,
            Status::Active => DeviceStatus::Active,
            Status::Quarantined => DeviceStatus::Quarantined,
            Status::Revoked => DeviceStatus::Revoked,
        };
        set_opt(&mut d.manufacturer, r.manufacturer.as_deref());
        set_opt(&mut d.model, r.model.as_deref());
        set_opt(&mut d.firmware, r.firmware.as_deref());
        q.direction = dr.direction;
        q.kind = dr.kind;
        q.name.clear();
        set_opt(&mut q.principal, dr.principal);
        match (dr.message, dr.command) {
            (Some(m), _) => {
                q.points.clone_from(&m.points);
                q.assurance = m.assurance;
                q.fresh = m.fresh;
            }
            (None, Some(c)) => {
                q.name.push_str(&c.name);
                q.points.clone_from(&c.args);
                q.assurance = assurance_of_rank(dr.stats.best_assurance);
                q.fresh = false;
            }
            (None, None) => {
                q.points.clear();
                q.assurance = Assurance::None;
                q.fresh = false;
            }
        }
        set_opt(&mut q.security, dr.security);
        q.time_ms = dr.now_ms;
        let s = &dr.stats;
        q.observed.rate_per_min = s.rate_per_min;
        q.observed.messages = s.messages;
        q.observed.bytes = s.bytes;
        q.observed.denied = s.denied;
        q.observed.last_seen_ms = s.last_seen;
        q.observed.anomaly_score = dr.anomaly.map(|a| a.score);
        match dr.anomaly.and_then(|a| a.top()) {
            // the label is built only for an anomalous message; a normal one clears it
            Some(f) => q.observed.anomaly_feature = Some(f.label()),
            None => q.observed.anomaly_feature = None,
        }
    }

    fn failed(&mut self, slot: usize, f: &Failure) -> Decision {
        let (name, rule) = self
            .slots
            .get(slot)
            .map(|s| {
                let rule = s
                    .plugin
                    .as_ref()
                    .and_then(|p| p.disabled_reason())
                    .unwrap_or("repeated failures")
                    .to_owned();
                (s.spec.name.clone(), rule)
            })
            .unwrap_or_default();
        let cause = f.cause.as_str();
        self.count(&name, cause);
        if f.disabled_now {
            self.set_active(&name, false);
            self.status.disabled(
                &name,
                &format!("disabled after {rule} (last: {cause}: {})", f.detail),
            );
            tracing::error!(plugin = %name, cause, rule = %rule, detail = %f.detail,
                "plugin disabled by its breaker; its bindings deny until it is fixed");
            self.audit.record(
                AuditEntry::new(
                    Category::Security,
                    "plugin-disabled",
                    "gateway",
                    format!(
                        "plugin `{name}` disabled after {rule} (last: {cause}: {}); its bindings deny until a fixed version is loaded",
                        f.detail
                    ),
                )
                .decision("builtin:plugins", "deny")
                .detail(serde_json::json!({ "plugin": name, "cause": cause, "rule": rule })),
            );
        }
        Decision::deny(
            format!("plugin:{name}"),
            format!("plugin failed ({cause}): {}", f.detail),
        )
        .with_cause(cause)
    }

    pub fn flush(&mut self) {
        if let Some(r) = &mut self.recorder {
            r.flush();
        }
    }
}

fn set_opt(dst: &mut Option<String>, src: Option<&str>) {
    match (dst.as_mut(), src) {
        (Some(d), Some(s)) => {
            d.clear();
            d.push_str(s);
        }
        (None, Some(s)) => *dst = Some(s.to_owned()),
        (_, None) => *dst = None,
    }
}

/// `Stats::best_assurance` ranks: 0 nothing seen, 1 none … 4 certificate.
fn assurance_of_rank(rank: u64) -> Assurance {
    match rank {
        2 => Assurance::Channel,
        3 => Assurance::SharedKey,
        4 => Assurance::Certificate,
        _ => Assurance::None,
    }
}

impl Decider for PluginChain {
    fn name(&self) -> &str {
        "plugins"
    }

    fn applies(&self, req: &DecisionRequest<'_>) -> bool {
        // only uplink telemetry/events and downlink commands reach plugins
        matches!(req.kind, Kind::Telemetry | Kind::Event | Kind::Command) && !self.is_empty()
    }

    fn decide(&mut self, dr: &DecisionRequest<'_>) -> Result<Decision, DeciderError> {
        let role = dr
            .record
            .role
            .as_deref()
            .or_else(|| dr.message.and_then(|m| m.role.as_deref()));
        self.fill(dr, role);
        if let Some(rec) = &mut self.recorder {
            rec.write(&self.req);
        }
        // the plugins that allowed, named in the allow (`plugin:a+plugin:b`)
        let mut consulted = String::new();
        for i in 0..self.bindings.len() {
            let Some(b) = self.bindings.get(i) else { break };
            if !b.matches(dr, &self.req.device.id, role) {
                continue;
            }
            let slot_ix = b.slot;
            let Some(slot) = self.slots.get_mut(slot_ix) else {
                continue;
            };
            let Some(p) = slot.plugin.as_mut() else {
                let why = format!("plugin is not loaded: {}", slot.unavailable);
                let name = slot.spec.name.clone();
                self.count(&name, "unavailable");
                return Ok(Decision::deny(format!("plugin:{name}"), why).with_cause("unavailable"));
            };
            let outcome = p.decide_in_place(&mut self.req);
            if matches!(outcome, Outcome::Allow) {
                // the per-message path: a cached counter, no label strings
                slot.allowed.inc();
                // a plugin bound twice is named once
                if !consulted.split('+').any(|c| c == slot.label) {
                    if !consulted.is_empty() {
                        consulted.push('+');
                    }
                    consulted.push_str(&slot.label);
                }
                continue;
            }
            let name = slot.spec.name.clone();
            let label = format!("plugin:{name}");
            match outcome {
                Outcome::Allow => {}
                Outcome::Deny(reason) => {
                    self.count(&name, "deny");
                    return Ok(Decision::deny(label, reason));
                }
                Outcome::Quarantine(reason) => {
                    self.count(&name, "quarantine");
                    return Ok(Decision::quarantine(label, reason));
                }
                Outcome::Failed(f) => return Ok(self.failed(slot_ix, &f)),
            }
        }
        Ok(Decision::allow(consulted))
    }

    fn tick(&mut self) {
        self.flush();
        for u in std::mem::take(&mut self.deferred) {
            self.apply(u);
        }
    }

    fn offer(&mut self, update: PluginUpdate) -> Option<PluginUpdate> {
        if self.slots.iter().any(|s| s.spec.name == update.spec.name) {
            self.apply(update);
            None
        } else {
            Some(update)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::registry::{DeviceRecord, Stats};
    use crate::secrets::MasterKey;
    use crate::store::Store;
    use warden_core::{DeviceId, Message, Point, Value};

    fn rec(id: &str, zone: &str, role: Option<&str>) -> DeviceRecord {
        let (p, a) = id.split_once(':').unwrap();
        DeviceRecord {
            id: DeviceId::new(p, a).unwrap(),
            name: None,
            manufacturer: Some("Acme".into()),
            model: None,
            firmware: None,
            serial: None,
            zone: zone.into(),
            role: role.map(str::to_owned),
            profile: None,
            status: Status::Active,
            status_by: "t".into(),
            status_at: 0,
            status_reason: String::new(),
            first_seen: None,
            last_seen: None,
            credentials: vec![],
        }
    }

    fn req<'a>(r: &'a DeviceRecord, m: &'a Message) -> DecisionRequest<'a> {
        DecisionRequest {
            record: r,
            direction: Direction::Uplink,
            kind: Kind::Telemetry,
            message: Some(m),
            command: None,
            principal: None,
            security: None,
            stats: Stats::default().snapshot(),
            now_ms: 42,
            anomaly: None,
        }
    }

    fn bind(plugin: &str) -> PluginBindConfig {
        PluginBindConfig {
            plugin: plugin.into(),
            ..Default::default()
        }
    }

    fn spec(name: &str) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            module: format!("{name}.wasm").into(),
            config_json: "{}".into(),
            limits: Default::default(),
        }
    }

    fn msg(id: &DeviceId) -> Message {
        Message::telemetry(
            id.clone(),
            vec![Point::new("temperature", Value::Float(20.5))],
        )
    }

    #[test]
    fn selectors_match_zone_role_protocol_device_prefix_and_direction() {
        let slots = vec![Slot {
            label: "plugin:p".into(),
            spec: spec("p"),
            plugin: None,
            unavailable: "x".into(),
            allowed: Default::default(),
        }];
        let r = rec("modbus:tcp-1-u1", "hvac", Some("sensor"));
        let m = msg(&r.id);
        let q = req(&r, &m);
        let b = |f: &dyn Fn(&mut PluginBindConfig)| {
            let mut c = bind("p");
            f(&mut c);
            Binding::new(&c, &slots).unwrap()
        };
        assert!(b(&|_| {}).matches(&q, "modbus:tcp-1-u1", Some("sensor")));
        assert!(b(&|c| c.zones = vec!["hvac".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            Some("sensor")
        ));
        assert!(!b(&|c| c.zones = vec!["lab".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            Some("sensor")
        ));
        assert!(b(&|c| c.roles = vec!["sensor".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            Some("sensor")
        ));
        assert!(!b(&|c| c.roles = vec!["sensor".into()]).matches(&q, "modbus:tcp-1-u1", None));
        assert!(b(&|c| c.protocols = vec!["modbus".into()]).matches(&q, "modbus:tcp-1-u1", None));
        assert!(!b(&|c| c.protocols = vec!["sim".into()]).matches(&q, "modbus:tcp-1-u1", None));
        assert!(b(&|c| c.devices = vec!["modbus:tcp-*".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            None
        ));
        assert!(b(&|c| c.devices = vec!["modbus:tcp-1-u1".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            None
        ));
        assert!(!b(&|c| c.devices = vec!["modbus:tcp-1".into()]).matches(
            &q,
            "modbus:tcp-1-u1",
            None
        ));
        assert!(b(&|c| c.direction = Some("uplink".into())).matches(&q, "modbus:tcp-1-u1", None));
        assert!(!b(&|c| c.direction = Some("downlink".into())).matches(
            &q,
            "modbus:tcp-1-u1",
            None
        ));
        // a binding to a plugin that is not listed compiles to nothing
        assert!(Binding::new(&bind("nope"), &slots).is_none());
    }

    #[test]
    fn a_plugin_that_did_not_load_denies_its_bindings_and_only_those() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        let (audit, _h) = AuditSink::start(s, 16).unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut chain = PluginChain::new(
            vec![LoadedPlugin {
                spec: spec("guard"),
                result: Err("signature: no MODULE.sig".into()),
            }],
            &[PluginBindConfig {
                zones: vec!["lab".into()],
                ..bind("guard")
            }],
            audit,
            metrics.clone(),
            None,
        );
        let lab = rec("sim:a", "lab", None);
        let m = msg(&lab.id);
        let q = req(&lab, &m);
        assert!(chain.applies(&q));
        let d = chain.decide(&q).unwrap();
        assert_eq!(d.verdict, warden_core::Verdict::Deny);
        assert_eq!(d.decider, "plugin:guard");
        assert_eq!(d.cause.as_deref(), Some("unavailable"));
        assert!(d.reason.contains("no MODULE.sig"), "{}", d.reason);
        let other = rec("sim:b", "default", None);
        let m = msg(&other.id);
        let d = chain.decide(&req(&other, &m)).unwrap();
        assert!(d.is_allow(), "{d:?}");
        let text = metrics.encode();
        assert!(
            text.contains("warden_plugin_active{plugin=\"guard\"} 0"),
            "{text}"
        );
    }

    /// A contract-0.2.0 core module whose `decide` runs `decide` (0 = allow).
    fn core_module(decide: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
  (import "warden:policy/host@0.2.0" "intern" (func $intern (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "warden:policy@0.2.0#request-area") (result i32) (i32.const 4096))
  (func (export "warden:policy@0.2.0#init") (result i32) (i32.const 0))
  (func (export "warden:policy@0.2.0#decide") (result i32) {decide}))"#
        ))
        .unwrap()
    }

    /// What `GET /api/plugins` shows, from the host as it runs: a signed plugin's version and
    /// signer, one refused (unsigned while signatures are required) and one disabled by its
    /// breaker on the pipeline thread, then a reload counted and re-enabling it.
    #[test]
    fn the_status_shows_versions_signers_refusals_and_disabling() {
        use warden_plugin_host::{Host, HostOptions, signing};
        let d = tempfile::tempdir().unwrap();
        let (key, public) = signing::keygen(&d.path().join("keys"), "ci").unwrap();
        let pubkey = signing::read_pubkey(public.to_str().unwrap()).unwrap();
        let write = |name: &str, bytes: &[u8], sign: bool| {
            let path = d.path().join(format!("{name}.wasm"));
            std::fs::write(&path, bytes).unwrap();
            if sign {
                signing::sign(&path, &key).unwrap();
            }
            path
        };
        let good = write("good", &core_module("(i32.const 0)"), true);
        let trap = write("trap", &core_module("(unreachable)"), true);
        let unsigned = write("unsigned", &core_module("(i32.const 0)"), false);
        let host = Host::new(HostOptions {
            trusted_keys: vec![pubkey],
            require_signature: true,
            ..HostOptions::default()
        })
        .unwrap();
        let mk = |name: &str, module: &std::path::Path| {
            let mut s = spec(name);
            s.module = module.to_owned();
            s.limits.max_failures = 1;
            s
        };
        let specs = [
            mk("good", &good),
            mk("trap", &trap),
            mk("unsigned", &unsigned),
        ];
        let status = super::super::status::PluginStatus::default();
        let mut loaded = Vec::new();
        for s in &specs {
            let result = match super::super::load(&host, s, None) {
                Ok((plugin, prepared)) => {
                    status.loaded(s, &prepared, 1_000);
                    Ok(plugin)
                }
                Err((stage, why)) => {
                    status.refused(s, &format!("refused at {}: {why}", stage.as_str()));
                    Err(why)
                }
            };
            loaded.push(LoadedPlugin {
                spec: s.clone(),
                result,
            });
        }
        let db = tempfile::tempdir().unwrap();
        let store = Store::open(db.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        let (audit, _h) = AuditSink::start(store, 16).unwrap();
        let mut chain = PluginChain::new(
            loaded,
            &[PluginBindConfig {
                devices: vec!["sim:t".into()],
                ..bind("trap")
            }],
            audit,
            Arc::new(Metrics::new()),
            None,
        )
        .with_status(status.clone());

        let v = status.to_json();
        let by = |v: &serde_json::Value, n: &str| {
            v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .cloned()
                .unwrap()
        };
        let g = by(&v, "good");
        assert_eq!(g["state"], "active", "{g}");
        assert_eq!(g["signature"], "verified");
        assert_eq!(g["signer"], signing::key_id(&pubkey));
        assert_eq!(
            g["sha256"],
            hex::encode(signing::file_sha256(&good).unwrap())
        );
        assert_eq!(g["contract"], "0.2.0");
        assert_eq!(g["loaded_ms"], 1_000);
        assert_eq!(g["loads"], 1);
        assert_eq!(g["module"], good.display().to_string());
        let u = by(&v, "unsigned");
        assert_eq!(u["state"], "refused", "{u}");
        assert!(u["reason"].as_str().unwrap().contains("unsigned"), "{u}");
        assert_eq!(u["sha256"], serde_json::Value::Null);
        assert_eq!(u["loads"], 0);

        // the trapping plugin fails once (max_failures = 1): disabled, and the status says why
        let r = rec("sim:t", "default", None);
        let m = msg(&r.id);
        let dec = chain.decide(&req(&r, &m)).unwrap();
        assert_eq!(dec.verdict, warden_core::Verdict::Deny);
        let t = by(&status.to_json(), "trap");
        assert_eq!(t["state"], "disabled", "{t}");
        assert!(
            t["reason"].as_str().unwrap().contains("failures in a row"),
            "{t}"
        );
        assert_eq!(t["signature"], "verified");
        assert_eq!(t["loads"], 1);

        // a fixed version swapped in: active again, a second load, a new SHA-256 and time
        let fixed = write(
            "trap",
            &core_module("(i32.const 0) (drop) (i32.const 0)"),
            true,
        );
        let (plugin, prepared) = super::super::load(&host, &mk("trap", &fixed), None).unwrap();
        let sha = prepared.sha256_hex();
        chain.apply(PluginUpdate {
            spec: mk("trap", &fixed),
            prepared,
            plugin,
            why: super::super::watch::Why::Files,
        });
        let t = by(&status.to_json(), "trap");
        assert_eq!(t["state"], "active", "{t}");
        assert_eq!(t["reason"], serde_json::Value::Null);
        assert_eq!(t["loads"], 2);
        assert_eq!(t["sha256"], sha);
        assert_ne!(t["loaded_ms"], 1_000);

        // a refused reload keeps the running version and says why
        status.reload_refused(&mk("good", &good), "refused at tests: line 1", 2_000);
        let g = by(&status.to_json(), "good");
        assert_eq!(g["state"], "active");
        assert_eq!(g["last_refused"], "refused at tests: line 1");
        assert_eq!(g["last_refused_ms"], 2_000);
    }

    #[test]
    fn the_request_is_filled_from_the_record_message_and_counters() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        let (audit, _h) = AuditSink::start(s, 16).unwrap();
        let mut chain = PluginChain::new(vec![], &[], audit, Arc::new(Metrics::new()), None);
        let r = rec("sim:a", "hvac", Some("sensor"));
        let mut m = msg(&r.id);
        m.assurance = Assurance::SharedKey;
        m.fresh = true;
        chain.fill(&req(&r, &m), Some("sensor"));
        let q = &chain.req;
        assert_eq!(q.device.id, "sim:a");
        assert_eq!(q.device.protocol, "sim");
        assert_eq!(q.device.zone, "hvac");
        assert_eq!(q.device.role.as_deref(), Some("sensor"));
        assert_eq!(q.device.manufacturer.as_deref(), Some("Acme"));
        assert_eq!(q.points, m.points);
        assert_eq!(q.assurance, Assurance::SharedKey);
        assert!(q.fresh);
        assert_eq!(q.time_ms, 42);
        // a downlink: the command's name and args, the device's best assurance seen
        let cmd = warden_core::Command {
            name: "set_setpoint".into(),
            args: vec![Point::new("value", Value::Float(21.0))],
        };
        let stats = Stats::default();
        stats
            .best_assurance
            .store(4, std::sync::atomic::Ordering::Relaxed);
        chain.fill(
            &DecisionRequest {
                record: &r,
                direction: Direction::Downlink,
                kind: Kind::Command,
                message: None,
                command: Some(&cmd),
                principal: Some("mqtt:operator"),
                security: Some("zwave-s2-access-control"),
                stats: stats.snapshot(),
                now_ms: 7,
                anomaly: None,
            },
            None,
        );
        let q = &chain.req;
        assert_eq!(q.name, "set_setpoint");
        assert_eq!(q.points, cmd.args);
        assert_eq!(q.principal.as_deref(), Some("mqtt:operator"));
        assert_eq!(q.assurance, Assurance::Certificate);
        assert_eq!(q.security.as_deref(), Some("zwave-s2-access-control"));
        assert_eq!(q.device.role, None);
    }
}
