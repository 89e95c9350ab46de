//! The contract alternative, hosted: `decide(request: request) -> verdict` with the whole request
//! as one WIT record (`wit-record/policy-record.wit`), on an engine configured like the plugin
//! host's (Cranelift at speed, fuel and epoch interruption on, 512 KiB wasm stack), with the same
//! per-call work around the guest call: refill the request from the message (reusing buffers),
//! set the fuel and the epoch deadline, call, read the verdict.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use warden_plugin_host::{DeviceStatus, Limits, Outcome, Request};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel, ResourceLimiter, Store, Strategy};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit-record",
        world: "plugin-record",
    });
}

use bindings::warden::policy_record::types as rt;

/// The same memory cap as the real host (so the store carries a limiter, as there).
struct Cap(usize);

impl ResourceLimiter for Cap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.0)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// A warm instance of a record-contract plugin.
pub struct RecordPlugin {
    store: Store<Cap>,
    plugin: bindings::PluginRecord,
    buf: rt::Request,
    fuel: u64,
    deadline_ticks: u64,
    pub last_fuel_used: u64,
    _ticker: Ticker,
}

fn engine() -> wasmtime::Result<Engine> {
    let mut cfg = Config::new();
    cfg.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .parallel_compilation(true);
    Engine::new(&cfg)
}

fn empty_request() -> rt::Request {
    rt::Request {
        device: rt::Device {
            id: String::new(),
            protocol: String::new(),
            zone: String::new(),
            role: None,
            status: rt::Status::Active,
            manufacturer: None,
            model: None,
            firmware: None,
        },
        direction: rt::Direction::Uplink,
        kind: rt::Kind::Telemetry,
        name: String::new(),
        points: Vec::new(),
        assurance: rt::Assurance::None,
        fresh: false,
        principal: None,
        time_ms: 0,
        observed: rt::Observed {
            rate_per_min: 0,
            messages: 0,
            bytes: 0,
            denied: 0,
            last_seen_ms: 0,
            anomaly_score: None,
        },
    }
}

fn value(v: &warden_core::Value) -> rt::Value {
    use warden_core::Value as V;
    match v {
        V::Bool(b) => rt::Value::Boolean(*b),
        V::Int(i) => rt::Value::Integer(*i),
        V::Float(f) => rt::Value::Float(*f),
        V::Text(t) => rt::Value::Text(t.clone()),
        V::Bytes(b) => rt::Value::Bytes(b.clone()),
    }
}

/// Makes `dst` the record form of `src`, reusing `dst`'s strings and vectors.
pub fn fill(dst: &mut rt::Request, src: &Request) {
    let (d, s) = (&mut dst.device, &src.device);
    d.id.clone_from(&s.id);
    d.protocol.clone_from(&s.protocol);
    d.zone.clone_from(&s.zone);
    d.role.clone_from(&s.role);
    d.status = match s.status {
        DeviceStatus::Pending => rt::Status::Pending,
        DeviceStatus::Active => rt::Status::Active,
        DeviceStatus::Quarantined => rt::Status::Quarantined,
        DeviceStatus::Revoked => rt::Status::Revoked,
    };
    d.manufacturer.clone_from(&s.manufacturer);
    d.model.clone_from(&s.model);
    d.firmware.clone_from(&s.firmware);
    dst.direction = match src.direction {
        warden_core::Direction::Uplink => rt::Direction::Uplink,
        warden_core::Direction::Downlink => rt::Direction::Downlink,
    };
    dst.kind = match src.kind {
        warden_core::Kind::Telemetry => rt::Kind::Telemetry,
        warden_core::Kind::Event => rt::Kind::Event,
        warden_core::Kind::Command => rt::Kind::Command,
        warden_core::Kind::CommandResult => rt::Kind::CommandResult,
        warden_core::Kind::Announce => rt::Kind::Announce,
    };
    dst.name.clone_from(&src.name);
    dst.points.truncate(src.points.len());
    let reused = dst.points.len();
    for (d, s) in dst.points.iter_mut().zip(&src.points) {
        d.name.clone_from(&s.name);
        d.unit.clone_from(&s.unit);
        match (&mut d.value, &s.value) {
            (rt::Value::Text(a), warden_core::Value::Text(b)) => a.clone_from(b),
            (a, b) => *a = value(b),
        }
    }
    dst.points
        .extend(src.points.iter().skip(reused).map(|p| rt::Point {
            name: p.name.clone(),
            value: value(&p.value),
            unit: p.unit.clone(),
        }));
    dst.assurance = match src.assurance {
        warden_core::Assurance::None => rt::Assurance::None,
        warden_core::Assurance::Channel => rt::Assurance::Channel,
        warden_core::Assurance::SharedKey => rt::Assurance::SharedKey,
        warden_core::Assurance::Certificate => rt::Assurance::Certificate,
    };
    dst.fresh = src.fresh;
    dst.principal.clone_from(&src.principal);
    dst.time_ms = src.time_ms;
    let (o, so) = (&mut dst.observed, &src.observed);
    o.rate_per_min = so.rate_per_min;
    o.messages = so.messages;
    o.bytes = so.bytes;
    o.denied = so.denied;
    o.last_seen_ms = so.last_seen_ms;
    o.anomaly_score = so.anomaly_score;
}

impl RecordPlugin {
    /// Compiles `path` (no cache: this is a benchmark subject only), instantiates it and runs
    /// `init(config)` under the limits' init fuel.
    pub fn load(path: &Path, config: &str, limits: &Limits) -> Result<Self, String> {
        let engine = engine().map_err(|e| format!("engine: {e:#}"))?;
        let component = Component::from_file(&engine, path)
            .map_err(|e| format!("{}: {e:#}", path.display()))?;
        let linker = Linker::<Cap>::new(&engine);
        let mut store = Store::new(&engine, Cap(limits.memory_bytes));
        store.limiter(|c| c);
        store
            .set_fuel(limits.init_fuel)
            .map_err(|e| format!("{e:#}"))?;
        store.set_epoch_deadline(10_000);
        let plugin = bindings::PluginRecord::instantiate(&mut store, &component, &linker)
            .map_err(|e| format!("instantiate: {e:#}"))?;
        plugin
            .call_init(&mut store, config)
            .map_err(|e| format!("init trapped: {e:#}"))?
            .map_err(|e| format!("init refused the config: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("bench-record-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(Duration::from_millis(1));
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| e.to_string())?
        };
        Ok(Self {
            store,
            plugin,
            buf: empty_request(),
            fuel: limits.fuel,
            deadline_ticks: limits.deadline_ms.max(1) + 1,
            last_fuel_used: 0,
            _ticker: Ticker {
                stop,
                handle: Some(handle),
            },
        })
    }

    /// One decision. A trap is reported as `Outcome::Failed`-like text in `Err`.
    pub fn decide(&mut self, req: &Request) -> Result<Outcome, String> {
        fill(&mut self.buf, req);
        self.store
            .set_fuel(self.fuel)
            .map_err(|e| format!("{e:#}"))?;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let verdict = self
            .plugin
            .call_decide(&mut self.store, &self.buf)
            .map_err(|e| format!("{e:#}"))?;
        self.last_fuel_used = self.fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        Ok(match verdict {
            rt::Verdict::Allow => Outcome::Allow,
            rt::Verdict::Deny(r) => Outcome::Deny(r),
            rt::Verdict::Quarantine(r) => Outcome::Quarantine(r),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn fill_reuses_and_reproduces() {
        let a = Request::from_json(r#"{"device":{"id":"modbus:u1","zone":"hvac","role":"actuator"},"direction":"downlink","kind":"command","name":"set","points":[{"name":"value","value":"hot","unit":"C"},{"name":"b","value":1}],"principal":"api:op","time_ms":5}"#).unwrap();
        let b = Request::from_json(r#"{"device":{"id":"lorawan:x"},"direction":"uplink","kind":"telemetry","points":[{"name":"t","value":2.5}],"time_ms":9}"#).unwrap();
        let mut r = empty_request();
        for src in [&a, &b, &a] {
            fill(&mut r, src);
            assert_eq!(r.device.id, src.device.id);
            assert_eq!(r.device.protocol, src.device.protocol);
            assert_eq!(r.device.role, src.device.role);
            assert_eq!(r.name, src.name);
            assert_eq!(r.points.len(), src.points.len());
            for (p, q) in r.points.iter().zip(&src.points) {
                assert_eq!(p.name, q.name);
                assert_eq!(p.unit, q.unit);
            }
            assert_eq!(r.principal, src.principal);
            assert_eq!(r.time_ms, src.time_ms);
        }
        assert!(matches!(r.points[0].value, rt::Value::Text(ref t) if t == "hot"));
        assert!(matches!(r.points[1].value, rt::Value::Integer(1)));
    }
}
