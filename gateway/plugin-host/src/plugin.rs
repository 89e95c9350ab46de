//! A running plugin: its store (request copy, symbols, key-value state, limiter, counters), the
//! host functions it imports, and the decision loop with failure handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::warden::policy::host as wit_host;
use crate::bindings::warden::policy::types as wit;
use crate::error::{Failure, FailureCause, LoadError, Outcome};
use crate::host::{Host, Limits, Prepared};
use crate::intern::Interner;
use crate::kv::{Kv, KvError};
use crate::request::{DeviceStatus, Request};
use crate::{RequestRef, bindings};
use warden_core::text::sanitize;

/// Wall-clock backstop for `init` (fuel is the real budget there: `Limits::init_fuel`).
const INIT_DEADLINE: Duration = Duration::from_secs(10);
/// Host calls allowed during `init` (interning up to 4096 symbols, seeding state, logging).
const INIT_HOST_CALLS: u32 = 100_000;
/// Refused `kv-set` calls tolerated per decision before the plugin is stopped.
const KV_REFUSALS_PER_CALL: u32 = 64;
/// Longest log line forwarded (bytes).
const LOG_MAX_BYTES: usize = 512;
/// Log lines per second per plugin.
const LOG_PER_SECOND: u32 = 20;
/// Longest deny/quarantine reason or failure detail kept (bytes).
const REASON_MAX_BYTES: usize = 1024;
/// Fuel every host call costs, whatever it moves (an accessor call takes ~110–170 ns).
pub const HOST_CALL_FUEL: u64 = 100;
/// Plus one unit of fuel per this many bytes a host call moves in either direction.
pub const BYTES_PER_FUEL: u64 = 4;
/// Most bytes of one `wasi:random` call (Python seeds with a few KiB).
pub const RANDOM_MAX_BYTES: u64 = 64 << 10;
/// Smallest per-lift cap on bytes the guest hands the host in one call or return (wasmtime's
/// "hostcall fuel"); the cap is this or the KV quota plus the longest key, whichever is larger.
pub const LIFT_MIN_BYTES: usize = 64 << 10;

/// A host-side reason to stop the guest, distinguished from guest traps when classifying.
#[derive(Debug)]
enum HostTrap {
    Budget(String),
    Fuel(u64),
    StaleHandle,
}

impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Budget(s) => f.write_str(s),
            Self::Fuel(cost) => write!(f, "out of fuel paying {cost} for a host call"),
            Self::StaleHandle => {
                f.write_str("request handle used outside the decide call that received it")
            }
        }
    }
}

impl std::error::Error for HostTrap {}

/// Table elements per table (componentize-py/js runtimes use a few thousand).
const TABLE_ELEMENTS_MAX: usize = 100_000;
/// What one table element is charged against the memory budget (a pointer-sized slot).
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Linear memories one plugin may create, across all its core instances.
pub const MEMORIES_MAX: usize = 16;
/// Tables one plugin may create, across all its core instances (components made by
/// wit-component add a few small shim tables).
pub const TABLES_MAX: usize = 64;

/// One memory budget for the whole plugin: every linear memory and every table of the store
/// (their initial sizes at instantiation included) is summed against `memory_bytes`, so a
/// component cannot multiply the cap by declaring many memories or tables. Remembers refusals to
/// classify the trap that usually follows.
pub(crate) struct Limiter {
    memory_bytes: usize,
    /// Bytes granted so far to all memories and tables of the store.
    pub(crate) used: usize,
    pub(crate) refused: bool,
}

impl Limiter {
    fn grow(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|m| desired > m) {
            // wasmtime refuses it anyway; not a breach of our budget
            return false;
        }
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            self.refused = true;
            return false;
        }
        // A growth approved here that the OS then fails stays counted: conservative.
        self.used = total;
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired, maximum))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_MAX {
            self.refused = true;
            return Ok(false);
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
            maximum.map(|m| m.saturating_mul(TABLE_ELEMENT_BYTES)),
        ))
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }
}

/// A fixed clock for WASI guests: the decision time (the load time during `init`).
#[derive(Clone)]
struct FixedClock(Arc<AtomicU64>);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}

/// Token bucket for `log`.
struct LogLimiter {
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

/// A store's data.
pub struct State {
    req: Request,
    /// The rep of the request handle valid right now; 0 outside `decide`.
    rep: u32,
    interner: Interner,
    kv: Kv,
    kv_quota: usize,
    kv_refusals: u32,
    host_calls: u32,
    host_call_budget: u32,
    /// Bytes the host call in progress moved (charged as fuel when it returns).
    moved: u64,
    /// Fuel owed by host calls that returned inside the host call in progress.
    owed: u64,
    /// Host calls in progress (a host call can call back into Wasm, e.g. the guest's allocator,
    /// which can call the host again, e.g. `memory.grow`).
    depth: u32,
    now_ms: u64,
    clock: Arc<AtomicU64>,
    limiter: Limiter,
    log: LogLimiter,
    name: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl State {
    fn new(limits: &Limits, name: Arc<str>, kv: Kv) -> Self {
        let now = wall_ms();
        let clock = Arc::new(AtomicU64::new(now));
        // WASI for Python/JavaScript guests, granting nothing: no preopened directories, no
        // environment or arguments, stdin closed and stdout/stderr discarded (the builder's
        // defaults), no network, no name lookups, and clocks fixed at the load time and then
        // at each decision's time.
        let wasi = WasiCtxBuilder::new()
            .wall_clock(FixedClock(clock.clone()))
            .monotonic_clock(FixedClock(clock.clone()))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        State {
            req: Request::default(),
            rep: 0,
            interner: Interner::default(),
            kv,
            kv_quota: limits.kv_quota_bytes,
            kv_refusals: 0,
            host_calls: 0,
            host_call_budget: INIT_HOST_CALLS.max(limits.host_calls),
            now_ms: now,
            clock,
            moved: 0,
            owed: 0,
            depth: 0,
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                used: 0,
                refused: false,
            },
            log: LogLimiter {
                window_start: Instant::now(),
                in_window: 0,
                dropped: 0,
            },
            name,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Prepares for a `decide` call lending the request handle `rep`.
    #[inline]
    fn begin_call(&mut self, rep: u32, req: &Request) {
        self.req.copy_from(req);
        self.rep = rep;
        self.host_calls = 0;
        self.moved = 0;
        self.owed = 0;
        self.depth = 0;
        self.kv_refusals = 0;
        self.limiter.refused = false;
        self.now_ms = req.time_ms;
        self.clock.store(req.time_ms, Ordering::Relaxed);
    }

    /// Ends a `decide` call: the handle is no longer valid. Returns whether the memory limiter
    /// refused a growth during the call.
    #[inline]
    fn end_call(&mut self) -> bool {
        self.rep = 0;
        std::mem::take(&mut self.limiter.refused)
    }

    /// Counts a host call against the budget: called by the store's call hook on every entry
    /// into the host — imports of the `host` interface, WASI, and the runtime's own calls out of
    /// Wasm code (`memory.grow`, `table.grow`, …) alike.
    #[inline]
    fn charge(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.host_call_budget {
            // refused before the call: no return from it will be reported
            return Err(wasmtime::Error::new(HostTrap::Budget(format!(
                "more than {} host calls in one call",
                self.host_call_budget
            ))));
        }
        self.depth += 1;
        Ok(())
    }

    /// Records bytes the current host call moves between host and guest. They are paid at the
    /// next return from the host (the call's own, or a nested one such as the `memory.grow`
    /// that the guest's allocator makes while the result is copied in).
    #[inline]
    fn moved(&mut self, bytes: usize) {
        self.moved = self
            .moved
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A host call returns. Its cost is [`HOST_CALL_FUEL`] plus one per [`BYTES_PER_FUEL`]
    /// bytes moved; it is settled (returned as `Some`) only when the outermost host call returns
    /// to Wasm code that reloads its fuel after the call — compiled Wasm keeps its fuel in a
    /// register across the runtime's own calls, so fuel taken there would be lost.
    #[inline]
    fn host_call_returns(&mut self) -> Option<u64> {
        self.depth = self.depth.saturating_sub(1);
        self.owed = self.owed.saturating_add(HOST_CALL_FUEL);
        if self.depth > 0 {
            return None;
        }
        let bytes = std::mem::take(&mut self.moved);
        Some(std::mem::take(&mut self.owed).saturating_add(bytes.div_ceil(BYTES_PER_FUEL)))
    }

    /// `wasi:random`: up to [`RANDOM_MAX_BYTES`] per call, charged like any bytes moved.
    pub(crate) fn random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > RANDOM_MAX_BYTES {
            return Err(wasmtime::Error::new(HostTrap::Budget(format!(
                "{len} random bytes asked for in one call (at most {RANDOM_MAX_BYTES})"
            ))));
        }
        let n = usize::try_from(len).unwrap_or(0);
        let mut bytes = vec![0u8; n];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        self.moved(n);
        Ok(bytes)
    }

    /// Checks a request handle is the current one and charges the call.
    #[inline]
    fn current(&mut self, r: &Resource<RequestRef>) -> wasmtime::Result<&Request> {
        if self.rep == 0 || r.rep() != self.rep {
            return Err(wasmtime::Error::new(HostTrap::StaleHandle));
        }
        Ok(&self.req)
    }

    fn point(
        &mut self,
        r: &Resource<RequestRef>,
        index: u32,
    ) -> wasmtime::Result<Option<&warden_core::Point>> {
        let req = self.current(r)?;
        Ok(usize::try_from(index).ok().and_then(|i| req.points.get(i)))
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn status(s: DeviceStatus) -> wit::Status {
    match s {
        DeviceStatus::Pending => wit::Status::Pending,
        DeviceStatus::Active => wit::Status::Active,
        DeviceStatus::Quarantined => wit::Status::Quarantined,
        DeviceStatus::Revoked => wit::Status::Revoked,
    }
}

fn value(v: &warden_core::Value) -> wit::Value {
    use warden_core::Value as V;
    match v {
        V::Bool(b) => wit::Value::Boolean(*b),
        V::Int(i) => wit::Value::Integer(*i),
        V::Float(f) => wit::Value::Float(*f),
        V::Text(t) => wit::Value::Text(t.clone()),
        V::Bytes(b) => wit::Value::Bytes(b.clone()),
    }
}

impl wit_host::HostRequest for State {
    fn device_id(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<String> {
        Ok(self.current(&r)?.device.id.clone())
    }
    fn protocol(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<u32> {
        self.current(&r)?;
        Ok(self.interner.lookup(&self.req.device.protocol))
    }
    fn zone(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<u32> {
        self.current(&r)?;
        Ok(self.interner.lookup(&self.req.device.zone))
    }
    fn role(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<u32>> {
        self.current(&r)?;
        Ok(self
            .req
            .device
            .role
            .as_deref()
            .map(|role| self.interner.lookup(role)))
    }
    fn status(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<wit::Status> {
        Ok(status(self.current(&r)?.device.status))
    }
    fn manufacturer(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.device.manufacturer.clone())
    }
    fn model(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.device.model.clone())
    }
    fn firmware(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.device.firmware.clone())
    }
    fn name(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<u32> {
        self.current(&r)?;
        Ok(self.interner.lookup(&self.req.name))
    }
    fn principal(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.principal.clone())
    }
    fn observed(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<wit::Observed> {
        let o = &self.current(&r)?.observed;
        Ok(wit::Observed {
            rate_per_min: o.rate_per_min,
            messages: o.messages,
            bytes: o.bytes,
            denied: o.denied,
            last_seen_ms: o.last_seen_ms,
            anomaly_score: o.anomaly_score,
        })
    }
    fn point_name(&mut self, r: Resource<RequestRef>, index: u32) -> wasmtime::Result<u32> {
        self.current(&r)?;
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.req.points.get(i))
            .map_or(0, |p| self.interner.lookup(&p.name)))
    }
    fn point_value(
        &mut self,
        r: Resource<RequestRef>,
        index: u32,
    ) -> wasmtime::Result<Option<wit::Value>> {
        let v = self.point(&r, index)?.map(|p| value(&p.value));
        self.moved(match &v {
            Some(wit::Value::Text(t)) => t.len(),
            Some(wit::Value::Bytes(b)) => b.len(),
            _ => 0,
        });
        Ok(v)
    }
    fn point_unit(
        &mut self,
        r: Resource<RequestRef>,
        index: u32,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.point(&r, index)?.and_then(|p| p.unit.clone()))
    }
    fn find_point(&mut self, r: Resource<RequestRef>, name: u32) -> wasmtime::Result<Option<u32>> {
        self.current(&r)?;
        let Some(text) = self.interner.text(name) else {
            return Ok(None);
        };
        Ok(self
            .req
            .points
            .iter()
            .position(|p| p.name == text)
            .and_then(|i| u32::try_from(i).ok()))
    }
    fn zone_text(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<String> {
        Ok(self.current(&r)?.device.zone.clone())
    }
    fn role_text(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.device.role.clone())
    }
    fn name_text(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<String> {
        Ok(self.current(&r)?.name.clone())
    }
    fn point_name_text(
        &mut self,
        r: Resource<RequestRef>,
        index: u32,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.point(&r, index)?.map(|p| p.name.clone()))
    }
    fn drop(&mut self, _r: Resource<RequestRef>) -> wasmtime::Result<()> {
        // The host only ever lends the request (borrow); there is nothing owned to drop.
        Ok(())
    }
}

impl wit_host::Host for State {
    fn intern(&mut self, name: String) -> wasmtime::Result<u32> {
        self.moved(name.len());
        Ok(self.interner.intern(&name))
    }
    fn symbol_text(&mut self, s: u32) -> wasmtime::Result<Option<String>> {
        let text = self.interner.text(s).map(str::to_owned);
        self.moved(text.as_ref().map_or(0, String::len));
        Ok(text)
    }
    fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
        self.moved(message.len());
        let now = Instant::now();
        let l = &mut self.log;
        if now.duration_since(l.window_start) >= Duration::from_secs(1) {
            if l.dropped > 0 {
                tracing::warn!(plugin = %self.name, dropped = l.dropped, "plugin log lines dropped (rate limit)");
            }
            l.window_start = now;
            l.in_window = 0;
            l.dropped = 0;
        }
        if l.in_window >= LOG_PER_SECOND {
            l.dropped += 1;
            return Ok(());
        }
        l.in_window += 1;
        let message = sanitize(&message, LOG_MAX_BYTES);
        let plugin = &*self.name;
        match level {
            wit::Level::Debug => tracing::debug!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Info => tracing::info!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Error => tracing::error!(target: "warden::plugin", plugin, "{message}"),
        }
        Ok(())
    }
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.now_ms)
    }
    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let value = self.kv.get(&key).map(<[u8]>::to_vec);
        self.moved(key.len().saturating_add(value.as_ref().map_or(0, Vec::len)));
        Ok(value)
    }
    fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::KvError>> {
        self.moved(key.len().saturating_add(value.len()));
        match self.kv.set(&key, &value, self.kv_quota) {
            Ok(()) => Ok(Ok(())),
            Err(e) => {
                self.kv_refusals += 1;
                if self.kv_refusals > KV_REFUSALS_PER_CALL {
                    return Err(wasmtime::Error::new(HostTrap::Budget(format!(
                        "more than {KV_REFUSALS_PER_CALL} refused kv-set calls in one call"
                    ))));
                }
                Ok(Err(match e {
                    KvError::KeyTooLarge => wit::KvError::KeyTooLarge,
                    KvError::QuotaExceeded => wit::KvError::QuotaExceeded,
                }))
            }
        }
    }
    fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.moved(key.len());
        self.kv.delete(&key);
        Ok(())
    }
}

impl wit::Host for State {}

/// Counters of one plugin (across restarts of its instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    pub calls: u64,
    pub allows: u64,
    pub denies: u64,
    pub quarantines: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    /// Instances recreated after a failure.
    pub restarts: u64,
    /// Fuel used by the last decision that ran.
    pub last_fuel_used: u64,
}

/// A live instance and its store.
struct Live {
    store: Store<State>,
    bindings: bindings::Plugin,
}

/// A loaded plugin: a warm instance, recreated after any failure.
pub struct Plugin {
    host: Host,
    prepared: Prepared,
    config: Arc<str>,
    limits: Limits,
    name: Arc<str>,
    live: Option<Live>,
    /// The key-value state while there is no live instance.
    parked_kv: Option<Kv>,
    stats: PluginStats,
    disabled: bool,
    seq: u32,
    deadline_ticks: u64,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One line describing a guest error: its root cause and the innermost named wasm frame.
fn describe(err: &wasmtime::Error) -> String {
    let mut s = err.root_cause().to_string();
    if let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>()
        && let Some(f) = bt.frames().first()
    {
        let module = f.module().name().unwrap_or("wasm");
        match f.func_name() {
            Some(name) => s.push_str(&format!(" (in {module}!{name})")),
            None => s.push_str(&format!(" (in {module}!function {})", f.func_index())),
        }
    }
    s
}

/// Classifies an error from a guest call.
fn classify(err: &wasmtime::Error, memory_refused: bool) -> (FailureCause, String) {
    if let Some(h) = err.downcast_ref::<HostTrap>() {
        let cause = match h {
            HostTrap::Budget(_) => FailureCause::HostCallBudget,
            HostTrap::Fuel(_) => FailureCause::OutOfFuel,
            HostTrap::StaleHandle => FailureCause::Trap,
        };
        return (cause, h.to_string());
    }
    let detail = describe(err);
    if let Some(trap) = err.downcast_ref::<Trap>() {
        let cause = match trap {
            Trap::OutOfFuel => FailureCause::OutOfFuel,
            Trap::Interrupt => FailureCause::Deadline,
            Trap::StackOverflow => FailureCause::StackOverflow,
            Trap::InvalidDiscriminant
            | Trap::StringOutOfBounds
            | Trap::ListOutOfBounds
            | Trap::UnalignedPointer
            | Trap::InvalidChar => FailureCause::MalformedReturn,
            _ if memory_refused => FailureCause::MemoryCap,
            _ => FailureCause::Trap,
        };
        return (cause, detail);
    }
    // Errors that are not traps come from lifting values the guest produced (bad option/result
    // discriminants, invalid UTF-8, pointers outside memory) or from handle misuse.
    if err.downcast_ref::<std::str::Utf8Error>().is_some()
        || detail.contains("discriminant")
        || detail.contains("too much data is being copied")
        || detail.contains("out of bounds")
        || detail.contains("utf-8")
    {
        return (FailureCause::MalformedReturn, detail);
    }
    if memory_refused {
        return (FailureCause::MemoryCap, detail);
    }
    (FailureCause::Trap, detail)
}

fn header(req: &Request) -> wit::Header {
    wit::Header {
        direction: match req.direction {
            warden_core::Direction::Uplink => wit::Direction::Uplink,
            warden_core::Direction::Downlink => wit::Direction::Downlink,
        },
        kind: match req.kind {
            warden_core::Kind::Telemetry => wit::Kind::Telemetry,
            warden_core::Kind::Event => wit::Kind::Event,
            warden_core::Kind::Command => wit::Kind::Command,
            warden_core::Kind::CommandResult => wit::Kind::CommandResult,
            warden_core::Kind::Announce => wit::Kind::Announce,
        },
        assurance: match req.assurance {
            warden_core::Assurance::None => wit::Assurance::None,
            warden_core::Assurance::Channel => wit::Assurance::Channel,
            warden_core::Assurance::SharedKey => wit::Assurance::SharedKey,
            warden_core::Assurance::Certificate => wit::Assurance::Certificate,
        },
        fresh: req.fresh,
        point_count: u32::try_from(req.points.len()).unwrap_or(u32::MAX),
        time_ms: req.time_ms,
    }
}

/// Per-lift cap on the bytes a guest hands the host in one call or return.
fn lift_cap(limits: &Limits) -> usize {
    limits
        .kv_quota_bytes
        .saturating_add(crate::kv::MAX_KEY_BYTES)
        .saturating_add(64)
        .max(LIFT_MIN_BYTES)
}

/// Meters host work: every entry into the host (the `host` interface and WASI alike) counts
/// against the host-call budget, and every return pays [`HOST_CALL_FUEL`] plus the bytes moved
/// / [`BYTES_PER_FUEL`] out of the same fuel as the guest's instructions.
fn meter(
    mut cx: wasmtime::StoreContextMut<'_, State>,
    hook: wasmtime::CallHook,
) -> wasmtime::Result<()> {
    match hook {
        wasmtime::CallHook::CallingHost => cx.data_mut().charge(),
        wasmtime::CallHook::ReturningFromHost => {
            let Some(cost) = cx.data_mut().host_call_returns() else {
                return Ok(());
            };
            let fuel = cx.get_fuel()?;
            match fuel.checked_sub(cost) {
                Some(left) => cx.set_fuel(left),
                None => {
                    cx.set_fuel(0)?;
                    Err(wasmtime::Error::new(HostTrap::Fuel(cost)))
                }
            }
        }
        _ => Ok(()),
    }
}

impl Plugin {
    /// Creates the instance and runs `init`. On failure, hands back the key-value state.
    fn create(
        host: &Host,
        prepared: &Prepared,
        config: &str,
        limits: &Limits,
        name: &Arc<str>,
        kv: Kv,
    ) -> Result<Live, (LoadError, Kv)> {
        let state = State::new(limits, name.clone(), kv);
        let mut store = Store::new(host.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Strings and lists the guest hands the host (arguments, the verdict, `init`'s error) are
        // length-checked in guest memory against this before anything is copied out.
        store.set_hostcall_fuel(lift_cap(limits));
        store.call_hook(meter);
        let give_back = |store: Store<State>, e: LoadError| (e, store.into_data().kv);
        let init_ticks = u64::try_from(INIT_DEADLINE.as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = store.set_fuel(limits.init_fuel) {
            return Err(give_back(store, LoadError::Compile(format!("{e:#}"))));
        }
        store.set_epoch_deadline(init_ticks);
        let bindings = match prepared.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                let refused = store.data().limiter.refused;
                let (cause, detail) = classify(&e, refused);
                return Err(give_back(
                    store,
                    LoadError::Init(Failure {
                        cause,
                        detail: sanitize(
                            &format!("instantiation failed: {detail}"),
                            REASON_MAX_BYTES,
                        ),
                        disabled_now: false,
                    }),
                ));
            }
        };
        match bindings.call_init(&mut store, config) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                let msg = sanitize(&msg, REASON_MAX_BYTES);
                return Err(give_back(store, LoadError::Config(msg)));
            }
            Err(e) => {
                let refused = store.data().limiter.refused;
                let (cause, detail) = classify(&e, refused);
                return Err(give_back(
                    store,
                    LoadError::Init(Failure {
                        cause,
                        detail: sanitize(&detail, REASON_MAX_BYTES),
                        disabled_now: false,
                    }),
                ));
            }
        }
        let st = store.data_mut();
        st.host_call_budget = limits.host_calls;
        st.limiter.refused = false;
        Ok(Live { store, bindings })
    }

    pub(crate) fn start(
        host: Host,
        prepared: Prepared,
        config: Arc<str>,
        limits: Limits,
        kv: Kv,
    ) -> Result<Plugin, LoadError> {
        let name: Arc<str> = prepared.name.as_str().into();
        let live =
            Self::create(&host, &prepared, &config, &limits, &name, kv).map_err(|(e, _)| e)?;
        let deadline_ticks = limits.deadline_ms.max(1) + 1;
        Ok(Plugin {
            host,
            prepared,
            config,
            limits,
            name,
            live: Some(live),
            parked_kv: None,
            stats: PluginStats::default(),
            disabled: false,
            seq: 0,
            deadline_ticks,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.prepared.sha256
    }

    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub fn stats(&self) -> PluginStats {
        self.stats
    }

    /// The plugin's key-value state (for hot-reload carry-over).
    pub fn into_kv(mut self) -> Kv {
        match self.live.take() {
            Some(live) => live.store.into_data().kv,
            None => self.parked_kv.take().unwrap_or_default(),
        }
    }

    /// Number of symbols the plugin interned.
    pub fn symbols(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.store.data().interner.len())
    }

    /// A read-only view of the plugin's key-value state.
    pub fn kv(&self) -> Option<&Kv> {
        match &self.live {
            Some(live) => Some(&live.store.data().kv),
            None => self.parked_kv.as_ref(),
        }
    }

    /// One decision.
    pub fn decide(&mut self, req: &Request) -> Outcome {
        if self.disabled {
            return Outcome::Failed(Failure {
                cause: FailureCause::Disabled,
                detail: format!(
                    "plugin `{}` is disabled after {} consecutive failures",
                    self.name, self.stats.consecutive_failures
                ),
                disabled_now: false,
            });
        }
        self.stats.calls += 1;
        if self.live.is_none()
            && let Err(e) = self.restart()
        {
            return self.failed(FailureCause::Restart, e.to_string(), false);
        }
        let Some(live) = self.live.as_mut() else {
            return self.failed(FailureCause::Restart, "no instance".into(), false);
        };
        self.seq = self.seq.wrapping_add(1).max(1);
        let rep = self.seq;
        live.store.data_mut().begin_call(rep, req);
        let fuel = self.limits.fuel;
        if let Err(e) = live.store.set_fuel(fuel) {
            return self.failed(FailureCause::Trap, format!("{e:#}"), true);
        }
        live.store.set_epoch_deadline(self.deadline_ticks);
        let result =
            live.bindings
                .call_decide(&mut live.store, header(req), Resource::new_borrow(rep));
        let refused = live.store.data_mut().end_call();
        self.stats.last_fuel_used = fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        match result {
            Ok(verdict) => {
                self.stats.consecutive_failures = 0;
                match verdict {
                    wit::Verdict::Allow => {
                        self.stats.allows += 1;
                        Outcome::Allow
                    }
                    wit::Verdict::Deny(r) => {
                        self.stats.denies += 1;
                        Outcome::Deny(sanitize(&r, REASON_MAX_BYTES))
                    }
                    wit::Verdict::Quarantine(r) => {
                        self.stats.quarantines += 1;
                        Outcome::Quarantine(sanitize(&r, REASON_MAX_BYTES))
                    }
                }
            }
            Err(e) => {
                let (cause, detail) = classify(&e, refused);
                self.failed(cause, detail, true)
            }
        }
    }

    /// Records a failure, discards the instance, and (unless now disabled) recreates it.
    fn failed(&mut self, cause: FailureCause, detail: String, restart: bool) -> Outcome {
        // the detail may quote guest-chosen names (its name section) or guest-made errors
        let detail = sanitize(&detail, REASON_MAX_BYTES);
        self.stats.failures += 1;
        self.stats.consecutive_failures += 1;
        if let Some(live) = self.live.take() {
            self.parked_kv = Some(live.store.into_data().kv);
        }
        let disabled_now = self.stats.consecutive_failures >= self.limits.max_failures.max(1);
        tracing::warn!(
            plugin = %self.name,
            cause = cause.as_str(),
            consecutive = self.stats.consecutive_failures,
            disabled = disabled_now,
            "plugin call failed: {detail}"
        );
        if disabled_now {
            self.disabled = true;
        } else if restart && let Err(e) = self.restart() {
            tracing::warn!(plugin = %self.name, "cannot recreate the plugin instance: {e}");
        }
        Outcome::Failed(Failure {
            cause,
            detail,
            disabled_now,
        })
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        let kv = self.parked_kv.take().unwrap_or_default();
        match Self::create(
            &self.host,
            &self.prepared,
            &self.config,
            &self.limits,
            &self.name,
            kv,
        ) {
            Ok(live) => {
                self.live = Some(live);
                self.stats.restarts += 1;
                Ok(())
            }
            Err((e, kv)) => {
                self.parked_kv = Some(kv);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
impl State {
    pub(crate) fn for_tests() -> Self {
        Self::new(&Limits::default(), "test".into(), Kv::default())
    }
    pub(crate) fn begin_call_for_tests(&mut self, rep: u32, req: &Request) {
        self.begin_call(rep, req);
    }
    pub(crate) fn end_call_for_tests(&mut self) {
        self.end_call();
    }
}
