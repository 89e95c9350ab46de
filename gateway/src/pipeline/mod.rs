//! The pipeline: one message's whole path, as plain function calls, one module per stage.
//!
//! ```text
//! uplink:   adapter → identify → authenticate → observe → decide → record → deliver → MQTT
//! downlink: MQTT/API → authenticate (commander) → identify → decide → record → deliver → adapter
//! ```
//!
//! The pipeline runs on its own thread and owns its mutable state (aggregates, deciders, pending
//! command replies); everything it shares (registry, audit sink, northbound) is thread-safe.

pub mod admission;
pub use admission::Admission;
pub mod authenticate;
pub mod decide;
pub mod deliver;
pub mod identify;
pub mod observe;
pub mod record;
mod replies;
mod unknown;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use warden_core::{
    AdapterEvent, Announcement, Assurance, Command, CommandOutcome, CommandResult, Decision,
    DeviceId, Downlink, LinkHealth, LinkState, Membership, Message, Rejection, Verdict, now_ms,
};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::behaviour::guard::GuardCheck;
use crate::behaviour::{Action, Behaviour, Outcome};
use crate::metrics::{CauseLabels, Metrics, MsgLabels, StageLabels};
use crate::northbound::Northbound;
use crate::registry::{DeviceRecord, Registry, Status};
use authenticate::{CommandSource, Controller};
use decide::{Decider, Policy};

/// A command entering the downlink path.
pub struct CommandRequest {
    pub command_id: String,
    pub device: DeviceId,
    pub command: Command,
    pub source: CommandSource,
    /// Where to send the final result (API callers wait on it).
    pub reply: Option<oneshot::Sender<CommandResult>>,
}

/// Messages to the pipeline thread other than adapter events.
pub enum Control {
    Command(CommandRequest),
    /// New built-in policy and controller keys after a config reload.
    Reload(Policy, Vec<Controller>),
    /// Publish a device's status (after an operator changed it through the API).
    Status(DeviceId),
    /// A hot-reloaded plugin, verified, compiled and tested, to swap in between two messages.
    Plugin(Box<crate::plugins::chain::PluginUpdate>),
    /// An operator marked a device's anomaly alert as expected: its baseline absorbs what it sees
    /// for a while. Answered false when the device has no baseline.
    Expect {
        device: DeviceId,
        actor: String,
        reason: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Everything the stages need.
pub struct Pipeline {
    pub registry: Arc<Registry>,
    pub policy: Policy,
    pub controllers: Vec<Controller>,
    pub deciders: Vec<Box<dyn Decider>>,
    pub audit: AuditSink,
    /// Where delivered uplinks go for the recent-values view (see [`crate::recent`]).
    pub recent: Option<crate::recent::Feed>,
    pub aggregator: record::Aggregator,
    pub aggregate_telemetry: bool,
    pub default_zone: String,
    pub metrics: Arc<Metrics>,
    pub northbound: Arc<Northbound>,
    pub routes: HashMap<String, mpsc::Sender<Downlink>>,
    replies: replies::Replies,
    counter: u64,
    link_states: HashMap<String, LinkState>,
    /// Per (link, kind): when a notice was last audited and what was counted since.
    notices: HashMap<(String, &'static str), (Option<std::time::Instant>, u64)>,
    /// New pending registrations per source.
    pub admission: admission::Admission,
    /// Rejections of frames from no known device, counted per source and cause.
    unknown: unknown::UnknownSources,
    /// Devices published as offline (silent for `offline_after_ms`).
    offline: HashSet<DeviceId>,
    pub offline_after_ms: u64,
    ticks: u64,
    /// Baselines, anomaly scores, the rules on them and the mass-quarantine guard.
    pub behaviour: Behaviour,
    /// systemd's watchdog, pinged from [`Pipeline::tick`]: a message path that stops turning stops
    /// the pings, and systemd restarts the gateway.
    pub watchdog: Option<crate::sdnotify::Watchdog>,
    /// `warden_messages_total` counters already looked up, by (protocol, direction, verdict): the
    /// metric family's lookup builds and hashes three label strings.
    msg_counters: Vec<(
        Box<str>,
        &'static str,
        Verdict,
        prometheus_client::metrics::counter::Counter,
    )>,
}

/// Counters [`Pipeline::count`] keeps at hand (protocols × directions × verdicts fit well within).
const MSG_COUNTERS: usize = 64;

/// How often a link notice of one kind is audited (the metric counts every one).
const NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Arc<Registry>,
        policy: Policy,
        controllers: Vec<Controller>,
        audit: AuditSink,
        aggregate_telemetry: bool,
        default_zone: String,
        metrics: Arc<Metrics>,
        northbound: Arc<Northbound>,
    ) -> Self {
        let behaviour = Behaviour::new(policy.behaviour.clone());
        Self {
            behaviour,
            registry,
            policy,
            controllers,
            deciders: Vec::new(),
            audit,
            recent: None,
            aggregator: record::Aggregator::default(),
            aggregate_telemetry,
            default_zone,
            metrics,
            northbound,
            routes: HashMap::new(),
            replies: replies::Replies::default(),
            counter: 0,
            link_states: HashMap::new(),
            notices: HashMap::new(),
            admission: admission::Admission::new(30),
            unknown: unknown::UnknownSources::default(),
            offline: HashSet::new(),
            offline_after_ms: 900_000,
            ticks: 0,
            watchdog: None,
            msg_counters: Vec::new(),
        }
    }

    fn count(&mut self, protocol: &str, direction: &'static str, verdict: Verdict) {
        if let Some((.., c)) = self
            .msg_counters
            .iter()
            .find(|(p, d, v, _)| *v == verdict && *d == direction && **p == *protocol)
        {
            c.inc();
            return;
        }
        let c = self
            .metrics
            .messages
            .get_or_create(&MsgLabels {
                protocol: protocol.to_owned(),
                direction: direction.to_owned(),
                verdict: verdict.as_str().to_owned(),
            })
            .clone();
        c.inc();
        if self.msg_counters.len() < MSG_COUNTERS {
            self.msg_counters
                .push((protocol.into(), direction, verdict, c));
        }
    }

    fn timed(&self, sample: bool, stage: &str, since: &mut Instant) {
        if sample {
            let now = Instant::now();
            self.metrics
                .stage_seconds
                .get_or_create(&StageLabels {
                    stage: stage.to_owned(),
                })
                .observe((now - *since).as_secs_f64());
            *since = now;
        }
    }

    pub fn handle(&mut self, ev: AdapterEvent) {
        match ev {
            AdapterEvent::Uplink(m) => {
                self.uplink(m);
            }
            AdapterEvent::Announce(a) => self.announce(a),
            AdapterEvent::CommandResult(r) => self.command_result(r),
            AdapterEvent::CommandHeld(h) => self.command_held(h),
            AdapterEvent::Notice(n) => self.notice(n),
            AdapterEvent::Health(h) => self.health(h),
            AdapterEvent::Rejected(r) => self.rejected(r),
            AdapterEvent::Membership(m) => self.membership(m),
        }
    }

    /// The uplink path up to and including record; deliver only if allowed. Returns the decision.
    pub fn uplink(&mut self, msg: Message) -> Decision {
        let (decision, msg) = self.uplink_decide(msg);
        if decision.is_allow() {
            deliver::uplink(&self.northbound, &msg);
            if let Some(r) = &self.recent {
                r.offer(msg);
            }
        }
        decision
    }

    /// identify → authenticate → observe → decide → record. Benchmarks call this directly.
    pub fn uplink_decide(&mut self, msg: Message) -> (Decision, Message) {
        // one span per message (formatted only when debug logging is on for this module)
        let span = tracing::debug_span!("uplink", device = %msg.device, kind = msg.kind.as_str());
        let _enter = span.enter();
        self.counter = self.counter.wrapping_add(1);
        let sample = self.counter.is_multiple_of(64);
        let mut t = Instant::now();
        let now = now_ms();
        let protocol = msg.device.protocol();

        // one registry lookup per message; an unknown device registers as pending only within its
        // source's rate
        let known = self.registry.get(&msg.device);
        if known.is_none()
            && let Err(d) = self.admit(protocol, &msg.device)
        {
            self.count(protocol, "uplink", d.verdict);
            return (d, msg);
        }
        let id = match identify::uplink(&self.registry, known, &msg.device, &self.default_zone) {
            Ok(id) => id,
            Err(d) => {
                // a device that could not even be registered is a source with no known device:
                // the first few a minute in full, the rest counted
                let cause = match d.cause.as_deref() {
                    Some("pending-limit") => "pending-limit",
                    Some("disk-low") => "disk-low",
                    _ => "not-registered",
                };
                let degraded = self.audit.disk().degraded();
                if self.unknown.add(
                    &self.audit,
                    protocol,
                    cause,
                    &msg.device.to_string(),
                    now,
                    degraded,
                ) {
                    record::uplink(
                        &mut self.aggregator,
                        &self.audit,
                        false,
                        &msg,
                        &d,
                        None,
                        now,
                    );
                }
                self.count(protocol, "uplink", d.verdict);
                return (d, msg);
            }
        };
        let never_heard = id.record.last_seen.is_none()
            && id
                .entry
                .stats
                .last_seen
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0;
        if id.new || (!self.offline.is_empty() && self.offline.remove(&msg.device)) || never_heard {
            // just registered (waiting for approval), heard for the first time (imported), or
            // back after being silent
            self.northbound.status(&id.record, true);
        }
        self.timed(sample, "identify", &mut t);

        let profile = self.policy.profile_for(&id.record);
        let auth = authenticate::uplink(&msg, profile.map(|p| p.1), &id.entry.stats);
        self.timed(sample, "authenticate", &mut t);

        let stats = observe::uplink(&id.entry.stats, &msg, now);
        // only authenticated traffic of an active device teaches or is scored
        let outcome = if auth.is_ok() && id.record.status == Status::Active {
            observe::baseline(
                &mut self.behaviour,
                &id.entry.stats,
                &id.record,
                profile.map(|p| p.0),
                &msg,
                now,
            )
        } else {
            None
        };
        self.timed(sample, "observe", &mut t);

        let decision = match auth {
            Err(d) => d,
            Ok(()) => decide::uplink(
                &self.policy,
                &mut self.deciders,
                &id.record,
                &msg,
                stats,
                outcome.as_ref(),
                now,
            ),
        };
        self.timed(sample, "decide", &mut t);

        let decision = self.guard(&id.record, decision, now);
        if !decision.is_allow() {
            observe::denied(&id.entry.stats);
            self.behaviour.denied(&msg.device, now);
        }
        record::uplink(
            &mut self.aggregator,
            &self.audit,
            self.aggregate_telemetry,
            &msg,
            &decision,
            outcome.as_ref(),
            now,
        );
        if decision.verdict == Verdict::Quarantine {
            self.quarantine(&msg.device, &decision);
        }
        if let Some(o) = &outcome {
            self.behaviour_event(&id.record, o, &decision);
        }
        self.timed(sample, "record", &mut t);
        self.count(protocol, "uplink", decision.verdict);
        tracing::debug!(verdict = decision.verdict.as_str(), decider = %decision.decider,
            reason = %decision.reason, "decided");
        (decision, msg)
    }

    /// The mass-quarantine guard, in front of every automatic quarantine (rules and plugins): a
    /// quarantine it refuses becomes a deny that says why.
    fn guard(&mut self, r: &DeviceRecord, d: Decision, now: u64) -> Decision {
        if d.verdict != Verdict::Quarantine {
            return d;
        }
        let registry = &self.registry;
        let size = || {
            registry
                .all()
                .iter()
                .filter(|(x, _)| x.zone == r.zone && x.status != Status::Revoked)
                .count()
        };
        let check = self.behaviour.guard.check(&r.zone, size(), now);
        match check {
            GuardCheck::Allow => d,
            GuardCheck::Trip { count, size } => {
                let reason = format!(
                    "mass-quarantine guard: {count} of {size} devices in zone `{}` would be quarantined within {} s; automatic quarantine is stopped in this zone (a gateway fault or an attack on the detector is likelier than all of them misbehaving)",
                    r.zone, self.policy.behaviour.guard.window_s
                );
                tracing::error!(zone = %r.zone, count, size, "mass-quarantine guard tripped");
                self.metrics
                    .quarantine_guard_trips
                    .get_or_create(&crate::metrics::ZoneLabels {
                        zone: r.zone.clone(),
                    })
                    .inc();
                let detail = serde_json::json!({
                    "zone": r.zone, "quarantines": count, "devices": size,
                    "share": self.policy.behaviour.guard.share,
                    "window_s": self.policy.behaviour.guard.window_s,
                    "last_decider": d.decider,
                });
                self.audit.record(
                    AuditEntry::new(
                        Category::Security,
                        "mass-quarantine-guard",
                        "gateway",
                        reason.clone(),
                    )
                    .device(&r.id)
                    .detail(detail.clone()),
                );
                let mut alarm = detail;
                if let Some(o) = alarm.as_object_mut() {
                    o.insert("alarm".into(), "mass-quarantine-guard".into());
                    o.insert("reason".into(), reason.into());
                }
                self.northbound.alarm(&alarm);
                Self::refused(d)
            }
            GuardCheck::Held => {
                self.metrics.quarantine_guard_held.inc();
                Self::refused(d)
            }
        }
    }

    fn refused(d: Decision) -> Decision {
        let mut out = Decision::deny(
            d.decider,
            format!(
                "{} (quarantine withheld: the mass-quarantine guard holds in this zone)",
                d.reason
            ),
        );
        out.cause = d.cause;
        out
    }

    /// Alerts go to the audit log (at most one a minute per device), MQTT and the metrics;
    /// behaviour quarantines to MQTT and the metrics (the status change is audited by the registry).
    fn behaviour_event(&mut self, r: &DeviceRecord, o: &Outcome, d: &Decision) {
        let event = match o.action {
            Action::None => return,
            Action::Quarantine if d.verdict == Verdict::Quarantine => "quarantine",
            // a quarantine the guard withheld, or a refused command
            Action::Quarantine => "deny",
            Action::Alert { .. } => "alert",
        };
        let feature = o
            .assessment
            .top()
            .map_or("none", |f| f.kind.as_str())
            .to_owned();
        let labels = crate::metrics::AnomalyLabels {
            zone: r.zone.clone(),
            feature,
        };
        if event == "quarantine" {
            self.metrics
                .anomaly_quarantines
                .get_or_create(&labels)
                .inc();
        } else {
            self.metrics.anomaly_alerts.get_or_create(&labels).inc();
        }
        self.metrics
            .anomaly_score
            .get_or_create(&crate::metrics::DeviceLabels {
                device: r.id.to_string(),
            })
            .set(f64::from(o.assessment.score));
        let reason = o.reason();
        let mut detail = o.detail();
        if let Some(m) = detail.as_object_mut() {
            m.insert("event".into(), event.into());
            m.insert("reason".into(), reason.clone().into());
            m.insert(
                "feature".into(),
                o.assessment.top().map(|f| f.label()).into(),
            );
        }
        self.northbound.behaviour(&r.id, &detail);
        if let Action::Alert { audit: true } = o.action {
            self.audit.record(
                AuditEntry::new(
                    Category::Security,
                    "anomaly-alert",
                    "builtin:behaviour",
                    reason,
                )
                .device(&r.id)
                .decision("builtin:behaviour", d.verdict.as_str())
                .detail(detail),
            );
        }
    }

    fn quarantine(&mut self, device: &DeviceId, d: &Decision) {
        match self.registry.set_status(
            device,
            Status::Quarantined,
            &d.decider,
            &d.reason,
            Category::Decision,
        ) {
            Ok(r) => self.northbound.status(&r, true),
            Err(e) => tracing::error!(device = %device, error = %e, "quarantine failed"),
        }
    }

    /// The downlink path. Denials are answered at once; allowed commands are answered when the adapter
    /// reports the result.
    pub fn command(&mut self, req: CommandRequest) {
        let now = now_ms();
        let CommandRequest {
            command_id,
            device,
            command,
            source,
            reply,
        } = req;
        let span = tracing::debug_span!("command", device = %device, command = %command.name, id = %command_id);
        let _enter = span.enter();
        let roles = authenticate::commander_roles(&source);
        let principal = match authenticate::commander(&source, &self.controllers) {
            Ok(p) => p,
            Err(d) => {
                record::downlink(
                    &self.audit,
                    &device,
                    &command_id,
                    &command.name,
                    "unauthenticated",
                    &d,
                    None,
                );
                self.finish(
                    &device,
                    command_id,
                    CommandOutcome::Denied(d.reason),
                    reply,
                    "deny",
                );
                return;
            }
        };
        // the profile's assurance floor travels with the command: the adapter knows the channel
        let mut min_assurance = Assurance::None;
        let mut scored = None;
        let mut security = Vec::new();
        let decision = match identify::downlink(&self.registry, &device) {
            Err(d) => d,
            Ok(id) => {
                let profile = self.policy.profile_for(&id.record);
                if let Some((_, p)) = profile {
                    min_assurance = p.min_assurance;
                    security.clone_from(&p.security);
                }
                let outcome = if id.record.status == Status::Active {
                    self.behaviour.command(
                        &id.record,
                        profile.map(|p| p.0),
                        &command.name,
                        &principal,
                        now,
                    )
                } else {
                    None
                };
                let d = decide::downlink(
                    &self.policy,
                    &mut self.deciders,
                    &id.record,
                    &command,
                    &principal,
                    &roles,
                    id.entry.stats.security().as_deref(),
                    id.entry.stats.snapshot(),
                    outcome.as_ref(),
                    now,
                );
                let d = self.guard(&id.record, d, now);
                scored = outcome.map(|o| (id.record, o));
                d
            }
        };
        if let Some((r, o)) = &scored {
            self.behaviour_event(r, o, &decision);
        }
        if decision.decider == "builtin:posture" {
            self.metrics.posture_denials.inc();
        }
        record::downlink(
            &self.audit,
            &device,
            &command_id,
            &command.name,
            &principal,
            &decision,
            scored.as_ref().map(|s| &s.1),
        );
        if decision.verdict == Verdict::Quarantine {
            self.quarantine(&device, &decision);
        }
        if !decision.is_allow() {
            let reason = format!("{} ({})", decision.reason, decision.decider);
            self.finish(
                &device,
                command_id,
                CommandOutcome::Denied(reason),
                reply,
                decision.verdict.as_str(),
            );
            return;
        }
        let dl = Downlink {
            command_id: command_id.clone(),
            device: device.clone(),
            command,
            principal,
            min_assurance,
            security,
        };
        match deliver::downlink(&self.routes, dl) {
            Ok(()) => {
                self.count(device.protocol(), "downlink", Verdict::Allow);
                // every delivered command waits for its result (or `timeout`), so the result is
                // audited and published even when nobody waits for the reply
                if let Some(evicted) =
                    self.replies
                        .insert(command_id, device, reply, std::time::Instant::now())
                {
                    self.timed_out(evicted, "more commands waiting than the gateway holds");
                }
            }
            Err(outcome) => {
                if matches!(&outcome, CommandOutcome::DeviceError(e) if e.contains("queue is full"))
                {
                    self.metrics.queue_drop("downlink", "queue-full", 1);
                }
                let res = CommandResult {
                    command_id,
                    device,
                    outcome,
                    points: vec![],
                };
                self.command_result_inner(res, reply);
            }
        }
    }

    fn finish(
        &mut self,
        device: &DeviceId,
        command_id: String,
        outcome: CommandOutcome,
        reply: Option<oneshot::Sender<CommandResult>>,
        verdict: &str,
    ) {
        let v = if verdict == "quarantine" {
            Verdict::Quarantine
        } else {
            Verdict::Deny
        };
        self.count(device.protocol(), "downlink", v);
        let res = CommandResult {
            command_id,
            device: device.clone(),
            outcome,
            points: vec![],
        };
        self.northbound.command_result(&res);
        if let Some(r) = reply {
            let _ = r.send(res);
        }
    }

    fn command_result(&mut self, res: CommandResult) {
        let reply = self.replies.take(&res.command_id).and_then(|w| w.reply);
        self.command_result_inner(res, reply);
    }

    /// The adapter holds a command for a device that is not listening: wait as long as it says,
    /// and tell the caller now that the command is queued (the final result follows).
    fn command_held(&mut self, h: warden_core::CommandHeld) {
        let now = std::time::Instant::now();
        if !self.replies.extend(&h.command_id, &h.device, h.wait, now) {
            return;
        }
        let res = CommandResult {
            command_id: h.command_id,
            device: h.device,
            outcome: CommandOutcome::Queued(h.reason),
            points: vec![],
        };
        self.audit.record(
            AuditEntry::new(Category::Decision, "command-result", "gateway", "")
                .device(&res.device)
                .detail(serde_json::json!({
                    "command_id": res.command_id,
                    "result": serde_json::to_value(&res.outcome).unwrap_or_default(),
                    "wait_s": h.wait.as_secs(),
                })),
        );
        self.northbound.command_result(&res);
        if let Some(tx) = self.replies.take_reply(&res.command_id) {
            let _ = tx.send(res);
        }
    }

    fn command_result_inner(
        &mut self,
        res: CommandResult,
        reply: Option<oneshot::Sender<CommandResult>>,
    ) {
        let outcome = serde_json::to_value(&res.outcome).unwrap_or_default();
        self.audit.record(
            AuditEntry::new(Category::Decision, "command-result", "gateway", "")
                .device(&res.device)
                .detail(serde_json::json!({ "command_id": res.command_id, "result": outcome })),
        );
        self.northbound.command_result(&res);
        if let Some(r) = reply {
            let _ = r.send(res);
        }
    }

    /// Answers every command past its deadline with `timeout`.
    fn expire_replies(&mut self) {
        for w in self.replies.expired(std::time::Instant::now()) {
            self.timed_out(w, "no result from the adapter in time");
        }
    }

    fn timed_out(&mut self, (command_id, w): (String, replies::Waiting), why: &str) {
        let res = CommandResult {
            command_id,
            device: w.device,
            outcome: CommandOutcome::Timeout,
            points: vec![],
        };
        self.audit.record(
            AuditEntry::new(Category::Decision, "command-result", "gateway", why)
                .device(&res.device)
                .detail(serde_json::json!({ "command_id": res.command_id, "result": "timeout" })),
        );
        self.northbound.command_result(&res);
        if let Some(tx) = w.reply {
            let _ = tx.send(res);
        }
    }

    fn announce(&mut self, a: Announcement) {
        let Some(id) = a.device.clone() else { return };
        let before = self.registry.get(&id).map(|e| e.record());
        self.announce_evidence(&id, a);
        self.posture(&id, before.as_deref());
    }

    /// Re-evaluates a device's firmware posture after its adapter reported identity evidence: a
    /// change is audited, shown in the metrics, and under `firmware_action = "quarantine"` the
    /// device is quarantined (or released again when posture made the quarantine).
    fn posture(&mut self, id: &DeviceId, before: Option<&DeviceRecord>) {
        let Some(r) = self.registry.get(id).map(|e| e.record()) else {
            return;
        };
        let Some((pname, profile)) = self.policy.profile_for(&r) else {
            return;
        };
        let Some(rule) = profile.posture.as_ref() else {
            return;
        };
        let now = rule.assess(r.firmware.as_deref());
        let pname = pname.to_owned();
        let action = rule.action;
        let was = before.map(|b| rule.assess(b.firmware.as_deref()));
        if let Some(e) = self.registry.get(id) {
            e.stats
                .posture
                .store(now.code(), std::sync::atomic::Ordering::Relaxed);
        }
        let device = r.id.to_string();
        if let Some(w) = &was
            && w.as_str() != now.as_str()
        {
            self.metrics
                .device_posture
                .remove(&crate::metrics::PostureLabels {
                    device: device.clone(),
                    posture: w.as_str().into(),
                });
        }
        self.metrics
            .device_posture
            .get_or_create(&crate::metrics::PostureLabels {
                device,
                posture: now.as_str().into(),
            })
            .set(1);
        // audited when it changes, and when a new device arrives restricted
        let changed = match &was {
            Some(w) => w != &now,
            None => now.restricted(),
        };
        let reason = if now.restricted() {
            now.reason(&pname)
        } else if was.as_ref().is_some_and(|w| w.restricted()) {
            format!(
                "posture restored: firmware `{}` meets profile `{pname}`",
                r.firmware.as_deref().unwrap_or("").escape_debug()
            )
        } else {
            now.reason(&pname)
        };
        if changed {
            self.audit.record(
                AuditEntry::new(
                    Category::Security,
                    "posture-changed",
                    "builtin:posture",
                    &reason,
                )
                .device(&r.id)
                .detail(serde_json::json!({
                    "from": was.as_ref().map(|w| w.as_str()),
                    "to": now.as_str(),
                    "firmware": r.firmware,
                    "profile": pname,
                    "restricted": now.restricted(),
                    "action": match action {
                        crate::posture::PostureAction::Restrict => "restrict",
                        crate::posture::PostureAction::Quarantine => "quarantine",
                    },
                })),
            );
        }
        if action != crate::posture::PostureAction::Quarantine {
            return;
        }
        let target = if now.restricted() && r.status == Status::Active {
            Some((Status::Quarantined, reason))
        } else if !now.restricted()
            && r.status == Status::Quarantined
            && r.status_by == "builtin:posture"
        {
            Some((Status::Active, reason))
        } else {
            None
        };
        if let Some((status, why)) = target {
            match self
                .registry
                .set_status(id, status, "builtin:posture", &why, Category::Security)
            {
                Ok(r) => self.northbound.status(&r, true),
                Err(e) => tracing::error!(device = %id, error = %e, "posture status change failed"),
            }
        }
    }

    fn announce_evidence(&mut self, id: &DeviceId, a: Announcement) {
        let id = id.clone();
        let r = if self.registry.get(&id).is_some() {
            if !a.details.is_empty() {
                // a provisioned device that joined: what its adapter learned goes on record
                let details: serde_json::Map<String, serde_json::Value> = a
                    .details
                    .iter()
                    .take(16)
                    .map(|(k, v)| (clean(k), serde_json::Value::String(clean(v))))
                    .collect();
                self.audit.record(
                    AuditEntry::new(
                        Category::System,
                        "device-interviewed",
                        &format!("adapter:{}", id.protocol()),
                        announced_reason(&a),
                    )
                    .device(&id)
                    .detail(serde_json::Value::Object(details)),
                );
            }
            self.registry.update_evidence(&id, &a).map(|_| ())
        } else {
            // An adapter that announces identities nobody vouched for names their source (`via`:
            // a LoRaWAN forwarder relaying JoinRequests); those are rate-limited per source. A
            // node a controller admitted through a join window or holds in its own table has no
            // `via` and is not limited (a controller with 100 nodes registers them at once).
            let via = a
                .details
                .iter()
                .find(|(k, _)| k == "via")
                .map(|(_, v)| clean(v));
            if let Some(source) = via
                && self.admit(&source, &id).is_err()
            {
                return;
            }
            self.registry
                .register_pending(&id, Some(&a), &self.default_zone, &announced_reason(&a))
                .map(|e| self.northbound.status(&e.record(), true))
        };
        if let Err(e) = r {
            tracing::warn!(device = %id, error = %e, "announcement not recorded");
            self.audit.record(
                AuditEntry::new(Category::Security, "announce", "gateway", e.to_string())
                    .device(&id)
                    .decision("builtin:identify", "deny"),
            );
        }
    }

    /// Whether `source` may register `device` as a new pending device now. A refusal is counted
    /// (`warden_link_notices_total{kind="pending-rate"}`) and audited once a minute per source
    /// with the sum and the first device refused: a flood of forged identities becomes a few
    /// records, not one each.
    fn admit(&mut self, source: &str, device: &DeviceId) -> Result<(), warden_core::Decision> {
        if self.admission.admit(source, std::time::Instant::now()) {
            return Ok(());
        }
        let reason = format!(
            "unknown device {device} not registered: {source} registered its share of new devices this minute (registry.pending_per_source_per_min); retry in {} s",
            self.admission.retry_after(source).as_secs().max(1)
        );
        self.notice(warden_core::Notice {
            link: source.to_owned(),
            kind: "pending-rate",
            count: 1,
            detail: reason.clone(),
        });
        Err(warden_core::Decision::deny("builtin:identify", reason))
    }

    fn membership(&mut self, m: Membership) {
        self.audit.record(
            AuditEntry::new(
                Category::Security,
                "membership",
                &format!("adapter:{}", m.device.protocol()),
                format!("{} {}", m.device, m.change.as_str()),
            )
            .device(&m.device)
            .detail(serde_json::json!({ "change": m.change.as_str(), "detail": m.detail })),
        );
    }

    fn rejected(&mut self, r: Rejection) {
        let protocol = r.protocol.to_owned();
        self.metrics
            .rejected
            .get_or_create(&CauseLabels {
                protocol: protocol.clone(),
                cause: r.cause.to_owned(),
            })
            .inc();
        self.count(&protocol, "uplink", Verdict::Deny);
        // a frame from no known device: the first few a minute in full, the rest counted
        let known = r
            .device
            .as_ref()
            .is_some_and(|d| self.registry.get(d).is_some());
        let mut detail = serde_json::json!({ "cause": r.cause });
        if !known {
            let source = r
                .device
                .as_ref()
                .map_or_else(|| unknown::NO_SOURCE.to_owned(), ToString::to_string);
            let degraded = self.audit.disk().degraded();
            if !self.unknown.add(
                &self.audit,
                r.protocol,
                r.cause,
                &source,
                now_ms(),
                degraded,
            ) {
                return;
            }
            if let Some(o) = detail.as_object_mut() {
                o.insert(
                    "aggregated".into(),
                    "from no known device: the first few a minute in full, more counted per minute"
                        .into(),
                );
            }
        }
        let mut e = AuditEntry::new(Category::Decision, "uplink", "gateway", r.detail)
            .decision(&format!("adapter:{protocol}"), "deny")
            .detail(detail);
        e.device = r.device.map(|d| d.to_string());
        self.audit.record(e);
    }

    /// Counted at once; audited at most once a minute per link and kind, with the sum since.
    fn notice(&mut self, n: warden_core::Notice) {
        self.metrics
            .link_notices
            .get_or_create(&crate::metrics::NoticeLabels {
                link: n.link.clone(),
                kind: n.kind.to_owned(),
            })
            .inc_by(n.count);
        let now = std::time::Instant::now();
        if self.notices.len() >= 1024 && !self.notices.contains_key(&(n.link.clone(), n.kind)) {
            // links are few; a flood of names must not grow this without bound
            self.notices.clear();
        }
        let e = self
            .notices
            .entry((n.link.clone(), n.kind))
            .or_insert((None, 0));
        e.1 = e.1.saturating_add(n.count);
        if e.0.is_some_and(|t| now.duration_since(t) < NOTICE_EVERY) {
            return;
        }
        let count = std::mem::take(&mut e.1);
        e.0 = Some(now);
        tracing::warn!(link = %n.link, kind = n.kind, count, detail = %n.detail, "link notice");
        self.audit.record(
            AuditEntry::new(Category::System, "link-notice", "gateway", n.detail)
                .detail(serde_json::json!({ "link": n.link, "kind": n.kind, "count": count })),
        );
    }

    /// Audits the notices counted since their last record once their minute is over (or all of
    /// them, at shutdown), so a last burst is not left only in the metric.
    fn flush_notices(&mut self, all: bool) {
        let now = std::time::Instant::now();
        for ((link, kind), (last, count)) in &mut self.notices {
            let due = all || last.is_none_or(|t| now.duration_since(t) >= NOTICE_EVERY);
            if *count == 0 || !due {
                continue;
            }
            let n = std::mem::take(count);
            *last = Some(now);
            self.audit.record(
                AuditEntry::new(
                    Category::System,
                    "link-notice",
                    "gateway",
                    format!("{n} more since the last record"),
                )
                .detail(serde_json::json!({ "link": link, "kind": kind, "count": n })),
            );
        }
    }

    fn health(&mut self, h: LinkHealth) {
        let v = match h.state {
            LinkState::Up => 1,
            LinkState::Degraded | LinkState::Down => 0,
        };
        self.metrics
            .link_up
            .get_or_create(&crate::metrics::LinkLabels {
                link: h.link.clone(),
            })
            .set(v);
        if self.link_states.insert(h.link.clone(), h.state) != Some(h.state) {
            tracing::info!(link = %h.link, state = ?h.state, detail = %h.detail, "link health");
            self.audit.record(
                AuditEntry::new(Category::System, "link-health", "gateway", h.detail).detail(
                    serde_json::json!({ "link": h.link, "state": format!("{:?}", h.state) }),
                ),
            );
        }
    }

    /// Publishes devices that fell silent as offline (checked every 5 s).
    fn check_availability(&mut self, now: u64) {
        for r in self
            .registry
            .silent(now, self.offline_after_ms, &self.offline)
        {
            self.offline.insert(r.id.clone());
            self.northbound.status(&r, false);
        }
    }

    /// Periodic housekeeping: aggregate flush, reply timeouts, availability, gauges.
    pub fn tick(&mut self) {
        let now = now_ms();
        self.ticks += 1;
        if let Some(w) = &mut self.watchdog {
            w.tick(std::time::Instant::now());
        }
        if self.ticks.is_multiple_of(5) {
            self.check_availability(now);
        }
        self.aggregator.tick(&self.audit, now);
        self.unknown.tick(&self.audit, now);
        self.expire_replies();
        self.flush_notices(false);
        for d in &mut self.deciders {
            d.tick();
        }
        self.metrics.devices.set(self.registry.len() as i64);
        self.metrics
            .pending_devices
            .set(self.registry.pending_count() as i64);
        self.metrics
            .baseline_devices
            .set(self.behaviour.devices() as i64);
        if self.ticks.is_multiple_of(60) {
            self.metrics
                .baseline_bytes
                .set(self.behaviour.bytes() as i64);
        }
    }

    pub fn control(&mut self, c: Control) {
        match c {
            Control::Command(req) => self.command(req),
            Control::Reload(p, ctl) => {
                self.behaviour.reconfigure(p.behaviour.clone());
                self.policy = p;
                self.controllers = ctl;
            }
            Control::Plugin(u) => {
                let mut u = Some(*u);
                for d in &mut self.deciders {
                    if let Some(x) = u.take() {
                        u = d.offer(x);
                    }
                }
                if let Some(x) = u {
                    tracing::warn!(plugin = %x.spec.name, "no plugin chain hosts this plugin");
                }
            }
            Control::Expect {
                device,
                actor,
                reason,
                reply,
            } => {
                let ok = self.behaviour.expect(&device, now_ms());
                if ok {
                    self.audit.record(
                        AuditEntry::new(Category::Operator, "anomaly-expected", &actor, reason)
                            .device(&device)
                            .detail(serde_json::json!({
                                "absorb_s": crate::behaviour::ABSORB_MS / 1000,
                            })),
                    );
                }
                let _ = reply.send(ok);
            }
            Control::Status(id) => {
                if let Some(e) = self.registry.get(&id) {
                    let r = e.record();
                    // online only once heard: an imported or approved device that never sent
                    // anything is not online, and one gone silent stays offline
                    let heard = r.last_seen.is_some()
                        || e.stats.last_seen.load(std::sync::atomic::Ordering::Relaxed) > 0;
                    if r.status == Status::Active {
                        // released or approved by an operator: its anomaly count starts afresh
                        self.behaviour.released(&id);
                    }
                    self.northbound
                        .status(&r, heard && !self.offline.contains(&id));
                }
            }
        }
    }

    /// The pipeline loop: runs until both channels close.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<AdapterEvent>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut flush_seen = tokio::time::interval(std::time::Duration::from_secs(30));
        let (mut ev_open, mut ctl_open) = (true, true);
        while ev_open || ctl_open {
            tokio::select! {
                e = events.recv(), if ev_open => match e {
                    Some(e) => self.handle(e),
                    None => ev_open = false,
                },
                c = control.recv(), if ctl_open => match c {
                    Some(c) => self.control(c),
                    None => ctl_open = false,
                },
                _ = tick.tick() => self.tick(),
                // last-seen times and raised assurance are written by the housekeeping thread
                _ = flush_seen.tick() => {
                    self.behaviour.flush();
                }
            }
        }
        self.shutdown();
    }

    /// Flushes what is held in memory (aggregates, last-seen times).
    pub fn shutdown(&mut self) {
        self.aggregator.flush(&self.audit);
        self.unknown.flush(&self.audit);
        for d in &mut self.deciders {
            d.tick();
        }
        self.flush_notices(true);
        for w in self.replies.drain() {
            self.timed_out(w, "the gateway stopped before the adapter answered");
        }
        if let Err(e) = self.registry.flush_last_seen() {
            tracing::error!(error = %e, "last-seen flush failed");
        }
        if let Err(e) = self.registry.flush_raised_assurance() {
            tracing::error!(error = %e, "best-assurance flush failed");
        }
        self.behaviour.shutdown();
    }
}

/// The reason a newly announced device is registered pending, with what its adapter learned.
fn announced_reason(a: &Announcement) -> String {
    let mut s = String::from("announced by its adapter");
    for (k, v) in a.details.iter().take(16) {
        s.push_str(&format!("; {}: {}", clean(k), clean(v)));
    }
    s
}

/// Adapter-reported text, as it may go on record: no control characters, at most 120 characters.
fn clean(v: &str) -> String {
    let mut v: String = v.chars().filter(|c| !c.is_control()).take(120).collect();
    v.shrink_to_fit();
    v
}
