//! Northbound: everything that leaves the gateway towards MQTT, and commands that come back.
//!
//! Topics (prefix `warden` by default, configurable):
//! - `warden/devices/<device-id>/telemetry/<point>`: one signed envelope per point of an allowed uplink
//! - `warden/devices/<device-id>/event`: allowed events (all points in one envelope)
//! - `warden/devices/<device-id>/status`: retained; registry status and availability
//! - `warden/devices/<device-id>/cmd`: commands in (JSON `{"id","command","args"}`)
//! - `warden/devices/<device-id>/cmd/result`: command results out (delivered / denied + reason / error)
//! - `warden/gateway/status`: retained; `online` while the gateway runs (last will `offline`)
//! - `warden/devices/<device-id>/behaviour`: anomaly alerts and behaviour quarantines (score,
//!   features, reason)
//! - `warden/gateway/alarm`: retained; the latest gateway alarm (the mass-quarantine guard)
//! - `warden/gateway/audit-head`: retained; the audit chain's signed head (see [`crate::audit::anchor`])

pub mod broker;
pub mod envelope;
pub mod ha_discovery;
pub mod mqtt;
pub mod outbox;

use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use serde::Serialize;
use warden_core::{CommandResult, DeviceId, Message, Point};

use crate::registry::DeviceRecord;
use crate::store::Store;

/// One MQTT publication, ready to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// Where envelopes go: the store-and-forward queue (or, in benchmarks, a counter).
pub trait OutgoingSink: Send + Sync {
    fn send(&self, o: Outgoing);
}

/// Builds, numbers and signs northbound envelopes.
pub struct Northbound {
    pub prefix: String,
    pub gateway_id: String,
    key: Option<SigningKey>,
    ids: Mutex<(u64, u64)>,
    store: Option<Store>,
    sink: Box<dyn OutgoingSink>,
    /// Home Assistant discovery, when on: follows every status publication.
    ha: std::sync::OnceLock<std::sync::Arc<ha_discovery::Discovery>>,
}

const ID_BLOCK: u64 = 100_000;

#[derive(Serialize)]
struct OperationBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    adapter: &'a str,
    operation: &'a serde_json::Value,
}

#[derive(Serialize)]
struct PointBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    device: &'a DeviceId,
    kind: &'static str,
    point: &'a str,
    value: &'a warden_core::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    assurance: warden_core::Assurance,
    fresh: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rssi: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snr: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lqi: Option<u8>,
}

#[derive(Serialize)]
struct EventBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    device: &'a DeviceId,
    kind: &'static str,
    points: &'a [Point],
    assurance: warden_core::Assurance,
    fresh: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    device: &'a DeviceId,
    status: &'static str,
    /// false once the device has been silent for `registry.offline_after_s`
    online: bool,
    zone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<u64>,
    reason: &'a str,
}

#[derive(Serialize)]
struct JsonBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a DeviceId>,
    #[serde(flatten)]
    body: &'a serde_json::Value,
}

#[derive(Serialize)]
struct AuditHeadBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    seq: u64,
    hash: &'a str,
    /// The head as the witness file holds it (its own signature, checkable on its own).
    head: &'a crate::audit::anchor::Head,
}

#[derive(Serialize)]
struct ResultBody<'a> {
    v: u8,
    id: u64,
    gw: &'a str,
    ts: u64,
    #[serde(flatten)]
    result: &'a CommandResult,
}

impl Northbound {
    /// `key: None` publishes unsigned envelopes (only when `mqtt.sign = false`). `store: None` numbers
    /// messages from 1 without persistence (benchmarks).
    pub fn new(
        prefix: &str,
        gateway_id: &str,
        key: Option<SigningKey>,
        store: Option<Store>,
        sink: Box<dyn OutgoingSink>,
    ) -> Self {
        Self {
            prefix: prefix.to_owned(),
            gateway_id: gateway_id.to_owned(),
            key,
            ids: Mutex::new((0, 0)),
            store,
            sink,
            ha: std::sync::OnceLock::new(),
        }
    }

    /// Turns Home Assistant discovery on: from now on every device status publication also
    /// announces or removes the device's HA configs.
    pub fn set_ha_discovery(&self, d: std::sync::Arc<ha_discovery::Discovery>) {
        let _ = self.ha.set(d);
    }

    /// Home Assistant discovery, when it was turned on at start.
    pub fn ha_discovery(&self) -> Option<&std::sync::Arc<ha_discovery::Discovery>> {
        self.ha.get()
    }

    /// Every HA config again (start-up, Home Assistant's birth message). Configs are not signed
    /// envelopes: Home Assistant reads them as they are.
    /// `current` reads the registry (called while no other HA publication runs). Returns how
    /// many publications were queued.
    pub fn ha_republish<R: std::ops::Deref<Target = DeviceRecord>>(
        &self,
        current: impl FnOnce() -> Vec<R>,
    ) -> usize {
        match self.ha.get() {
            Some(ha) => ha.publish_all(current, self.sink.as_ref()),
            None => 0,
        }
    }

    pub fn device_topic(&self, d: &DeviceId, rest: &str) -> String {
        format!("{}/devices/{d}/{rest}", self.prefix)
    }

    /// The next message id: unique and increasing across restarts (blocks are reserved in the store).
    fn next_id(&self) -> u64 {
        let mut g = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 >= g.1 {
            let start = match &self.store {
                Some(s) => s.reserve_ids(ID_BLOCK).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot reserve message ids; using the clock");
                    warden_core::now_ms() * 1000
                }),
                None => g.1.max(1),
            };
            *g = (start, start + ID_BLOCK);
        }
        let id = g.0;
        g.0 += 1;
        id
    }

    fn seal(&self, body: Vec<u8>) -> Vec<u8> {
        match &self.key {
            Some(k) => envelope::sign(&body, k),
            None => body,
        }
    }

    fn emit(&self, topic: String, body: &impl Serialize, retain: bool) {
        match serde_json::to_vec(body) {
            Ok(b) => self.sink.send(Outgoing {
                topic,
                payload: self.seal(b),
                retain,
            }),
            Err(e) => tracing::error!(error = %e, "cannot serialize envelope"),
        }
    }

    /// An allowed uplink: telemetry point by point, or one event envelope.
    pub fn uplink(&self, msg: &Message) {
        let ts = msg.received_ms;
        if msg.kind == warden_core::Kind::Event {
            let body = EventBody {
                v: 1,
                id: self.next_id(),
                gw: &self.gateway_id,
                ts,
                device: &msg.device,
                kind: "event",
                points: &msg.points,
                assurance: msg.assurance,
                fresh: msg.fresh,
                security: msg.security.as_deref(),
                role: msg.role.as_deref(),
            };
            self.emit(self.device_topic(&msg.device, "event"), &body, false);
            return;
        }
        for p in &msg.points {
            let body = PointBody {
                v: 1,
                id: self.next_id(),
                gw: &self.gateway_id,
                ts,
                device: &msg.device,
                kind: msg.kind.as_str(),
                point: &p.name,
                value: &p.value,
                unit: p.unit.as_deref(),
                assurance: msg.assurance,
                fresh: msg.fresh,
                security: msg.security.as_deref(),
                role: msg.role.as_deref(),
                rssi: msg.link.rssi,
                snr: msg.link.snr,
                lqi: msg.link.lqi,
            };
            self.emit(
                format!(
                    "{}/devices/{}/telemetry/{}",
                    self.prefix, msg.device, p.name
                ),
                &body,
                false,
            );
        }
    }

    /// The retained status of a device: after registration, any status change, and when it goes
    /// silent or comes back.
    pub fn status(&self, r: &DeviceRecord, online: bool) {
        let body = StatusBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            device: &r.id,
            status: r.status.as_str(),
            online,
            zone: &r.zone,
            last_seen: r.last_seen,
            reason: &r.status_reason,
        };
        self.emit(self.device_topic(&r.id, "status"), &body, true);
        if let Some(ha) = self.ha.get() {
            ha.publish_status(r, self.sink.as_ref());
        }
    }

    /// The retained state of an adapter's latest operation (join window, scan, removal):
    /// `<prefix>/adapters/<adapter>/operation`.
    pub fn adapter_operation(&self, adapter: &str, state: &serde_json::Value) {
        let body = OperationBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            adapter,
            operation: state,
        };
        self.emit(
            format!("{}/adapters/{adapter}/operation", self.prefix),
            &body,
            true,
        );
    }

    /// The audit chain's signed head, retained at `<prefix>/gateway/audit-head`: a copy of the
    /// anchor outside the machine (compare it with `warden audit verify --head SEQ:HASH`).
    pub fn audit_head(&self, head: &crate::audit::anchor::Head) {
        let body = AuditHeadBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            seq: head.seq,
            hash: &head.hash,
            head,
        };
        self.emit(format!("{}/gateway/audit-head", self.prefix), &body, true);
    }

    /// A behaviour alert or quarantine of a device: `<prefix>/devices/<id>/behaviour`.
    pub fn behaviour(&self, device: &DeviceId, event: &serde_json::Value) {
        let body = JsonBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            device: Some(device),
            body: event,
        };
        self.emit(self.device_topic(device, "behaviour"), &body, false);
    }

    /// A gateway alarm, retained at `<prefix>/gateway/alarm`.
    pub fn alarm(&self, alarm: &serde_json::Value) {
        let body = JsonBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            device: None,
            body: alarm,
        };
        self.emit(format!("{}/gateway/alarm", self.prefix), &body, true);
    }

    pub fn command_result(&self, res: &CommandResult) {
        let body = ResultBody {
            v: 1,
            id: self.next_id(),
            gw: &self.gateway_id,
            ts: warden_core::now_ms(),
            result: res,
        };
        self.emit(self.device_topic(&res.device, "cmd/result"), &body, false);
    }
}

/// A sink that only counts (benchmarks of the pipeline without broker I/O).
#[derive(Default)]
pub struct CountingSink(pub std::sync::atomic::AtomicU64);

impl OutgoingSink for CountingSink {
    fn send(&self, _o: Outgoing) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl OutgoingSink for std::sync::Arc<CountingSink> {
    fn send(&self, o: Outgoing) {
        self.as_ref().send(o)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::{Arc, Mutex};
    use warden_core::{Assurance, Kind, Value};

    #[derive(Default)]
    struct Capture(Mutex<Vec<Outgoing>>);
    impl OutgoingSink for Arc<Capture> {
        fn send(&self, o: Outgoing) {
            self.0.lock().unwrap().push(o);
        }
    }

    #[test]
    fn envelopes_carry_role_and_verify() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let cap = Arc::new(Capture::default());
        let nb = Northbound::new(
            "warden",
            "gw",
            Some(key.clone()),
            None,
            Box::new(cap.clone()),
        );
        let mut m = Message::telemetry(
            "modbus:tls-127.0.0.1-802-u1".parse().unwrap(),
            vec![Point::new("flow", Value::Float(1.5))],
        );
        m.assurance = Assurance::Certificate;
        m.role = Some("Engineer".into());
        nb.uplink(&m);
        m.kind = Kind::Event;
        m.points = vec![Point::new(
            "exception",
            Value::Text("illegal-data-address".into()),
        )];
        nb.uplink(&m);
        let out = cap.0.lock().unwrap();
        assert_eq!(
            out[0].topic,
            "warden/devices/modbus:tls-127.0.0.1-802-u1/telemetry/flow"
        );
        assert_eq!(
            out[1].topic,
            "warden/devices/modbus:tls-127.0.0.1-802-u1/event"
        );
        for o in out.iter() {
            let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
            assert_eq!(v["role"], "Engineer", "{v}");
            assert_eq!(v["assurance"], "certificate");
            envelope::verify(&o.payload, &key.verifying_key()).unwrap();
        }
        // ids increase across envelopes
        let ids: Vec<u64> = out
            .iter()
            .map(|o| {
                serde_json::from_slice::<serde_json::Value>(&o.payload).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(ids[0] < ids[1]);
    }
}
