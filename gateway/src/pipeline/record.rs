//! Stage 5, record: every decision goes to the audit log.
//!
//! Commands (allowed or not), denials and quarantines are recorded one by one. Allowed routine
//! telemetry is aggregated per device per window (`audit.aggregate_window_s`) when `audit.aggregate_telemetry` is on (the default).

use warden_core::{Decision, DeviceId, Kind, Message};

use crate::audit::{AuditEntry, AuditSink, Category};

#[derive(Default)]
struct Agg {
    count: u64,
    bytes: u64,
    first: u64,
    last: u64,
}

/// Per-window counts of allowed telemetry (a minute unless `audit.aggregate_window_s` says
/// otherwise), flushed as `aggregate` audit records.
pub struct Aggregator {
    minute: u64,
    window_ms: u64,
    map: crate::registry::DeviceMap<Agg>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_window_s(60)
    }
}

impl Aggregator {
    /// Aggregates over windows of `s` seconds (at least one).
    pub fn with_window_s(s: u64) -> Self {
        Self {
            minute: 0,
            window_ms: s.max(1).saturating_mul(1000),
            map: crate::registry::DeviceMap::default(),
        }
    }

    fn add(&mut self, sink: &AuditSink, device: &DeviceId, bytes: u64, now_ms: u64) {
        let minute = now_ms / self.window_ms;
        if minute != self.minute {
            self.flush(sink);
            self.minute = minute;
        }
        let a = match self.map.get_mut(device) {
            Some(a) => a,
            None => self.map.entry(device.clone()).or_insert(Agg {
                first: now_ms,
                ..Agg::default()
            }),
        };
        a.count += 1;
        a.bytes += bytes;
        a.last = now_ms;
    }

    /// Writes one record per device seen since the last flush.
    pub fn flush(&mut self, sink: &AuditSink) {
        let mut v: Vec<_> = self.map.drain().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for (d, a) in v {
            let mut e = AuditEntry::new(
                Category::Aggregate,
                "uplink",
                "gateway",
                "allowed telemetry, aggregated",
            )
            .device(&d)
            .detail(serde_json::json!({
                "messages": a.count, "bytes": a.bytes, "first": a.first, "last": a.last,
                "window_s": self.window_ms / 1000,
            }));
            e.verdict = Some("allow".into());
            sink.record(e);
        }
    }

    /// Flushes when the window has turned (called on the pipeline's tick).
    pub fn tick(&mut self, sink: &AuditSink, now_ms: u64) {
        if now_ms / self.window_ms != self.minute && !self.map.is_empty() {
            self.flush(sink);
            self.minute = now_ms / self.window_ms;
        }
    }
}

pub fn uplink(
    agg: &mut Aggregator,
    sink: &AuditSink,
    aggregate: bool,
    msg: &Message,
    d: &Decision,
    behaviour: Option<&crate::behaviour::Outcome>,
    now_ms: u64,
) {
    if aggregate && d.is_allow() && msg.kind == Kind::Telemetry {
        agg.add(sink, &msg.device, msg.size() as u64, now_ms);
        return;
    }
    let points: Vec<&str> = msg.points.iter().map(|p| p.name.as_str()).collect();
    let mut detail = serde_json::json!({
        "kind": msg.kind, "points": points, "assurance": msg.assurance,
        "fresh": msg.fresh, "bytes": msg.size(),
    });
    if let (Some(c), Some(o)) = (&d.cause, detail.as_object_mut()) {
        o.insert("cause".into(), serde_json::json!(c));
    }
    if let (Some(b), Some(o)) = (behaviour, detail.as_object_mut())
        && !d.is_allow()
    {
        o.insert("behaviour".into(), b.detail());
    }
    sink.record(
        AuditEntry::new(Category::Decision, "uplink", "gateway", d.reason.clone())
            .device(&msg.device)
            .decision(&d.decider, d.verdict.as_str())
            .detail(detail),
    );
}

pub fn downlink(
    sink: &AuditSink,
    device: &DeviceId,
    command_id: &str,
    command: &str,
    principal: &str,
    d: &Decision,
    behaviour: Option<&crate::behaviour::Outcome>,
) {
    let mut detail = serde_json::json!({ "command_id": command_id, "command": command });
    if let Some(o) = detail.as_object_mut() {
        if let Some(c) = &d.cause {
            o.insert("cause".into(), serde_json::json!(c));
        }
        if let Some(b) = behaviour
            && b.assessment.score > 0.0
        {
            o.insert("behaviour".into(), b.detail());
        }
    }
    sink.record(
        AuditEntry::new(Category::Decision, "command", principal, d.reason.clone())
            .device(device)
            .decision(&d.decider, d.verdict.as_str())
            .detail(detail),
    );
}
