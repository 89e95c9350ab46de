//! A running plugin: its store (request copy, symbols, key-value state, limiter, counters), the
//! host functions it imports, and the decision loop with failure handling.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::warden::policy::host as wit_host;
use crate::bindings::warden::policy::types as wit;
use crate::core_abi::CoreExports;
use crate::error::{Failure, FailureCause, LoadError, Outcome};
use crate::host::{Host, Limits, Pre, Prepared};
use crate::intern::Interner;
use crate::kv::{Kv, KvError};
use crate::request::{DeviceStatus, Request};
use crate::{RequestRef, bindings};
use warden_core::text::sanitize;

/// Host calls allowed during `init` (interning up to 4096 symbols, seeding state, logging).
const INIT_HOST_CALLS: u32 = 100_000;
/// Refused `kv-set` calls tolerated per decision before the plugin is stopped.
const KV_REFUSALS_PER_CALL: u32 = 64;
/// Longest log line forwarded (bytes).
pub(crate) const LOG_MAX_BYTES: usize = 512;
/// Log lines per second per plugin.
const LOG_PER_SECOND: u32 = 20;
/// Longest deny/quarantine reason or failure detail kept (bytes).
pub(crate) const REASON_MAX_BYTES: usize = 1024;
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
pub(crate) enum HostTrap {
    Budget(String),
    Fuel(u64),
    StaleHandle,
    /// A 0.2.0 plugin passed an address outside its memory, or malformed text.
    Malformed(String),
}

impl std::fmt::Display for HostTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Budget(s) => f.write_str(s),
            Self::Fuel(cost) => write!(f, "out of fuel paying {cost} for a host call"),
            Self::StaleHandle => {
                f.write_str("request handle used outside the decide call that received it")
            }
            Self::Malformed(s) => f.write_str(s),
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
    /// Boxed so that a request lent in place is swapped as one pointer.
    pub(crate) req: Box<Request>,
    /// The rep of the request handle valid right now; 0 outside `decide`.
    pub(crate) rep: u32,
    pub(crate) interner: Interner,
    pub(crate) kv: Kv,
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
    /// The module's SHA-256 (seeds the deterministic `wasi:random`).
    module_sha: [u8; 32],
    real_random: bool,
    /// This decision's generator, seeded at its first use (`None`: not yet).
    rng: Option<rand::rngs::StdRng>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// A 0.2.0 core plugin's memory (set right after instantiation).
    pub(crate) memory: Option<wasmtime::Memory>,
    /// The plugin's config, for the 0.2.0 `config` import.
    pub(crate) config: Arc<str>,
    /// The text a 0.2.0 plugin set with `verdict-text` during the current call.
    pub(crate) verdict_text: String,
}

impl State {
    fn new(
        limits: &Limits,
        name: Arc<str>,
        module_sha: [u8; 32],
        kv: Kv,
        config: Arc<str>,
    ) -> Self {
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
            req: Box::default(),
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
            module_sha,
            real_random: limits.real_random,
            rng: None,
            wasi,
            table: ResourceTable::new(),
            memory: None,
            config,
            verdict_text: String::new(),
        }
    }

    /// Prepares for a `decide` call lending the request handle `rep`: the request is copied in,
    /// or swapped in (and must be swapped back with [`State::give_back`]).
    #[inline]
    fn begin_call(&mut self, rep: u32, lend: &mut Lend<'_>) {
        match lend {
            Lend::Copy(req) => self.req.copy_from(req),
            Lend::Swap(req) => std::mem::swap(&mut self.req, *req),
        }
        let time_ms = self.req.time_ms;
        self.rep = rep;
        self.host_calls = 0;
        self.moved = 0;
        self.owed = 0;
        self.depth = 0;
        self.kv_refusals = 0;
        self.limiter.refused = false;
        self.now_ms = time_ms;
        self.clock.store(time_ms, Ordering::Relaxed);
        self.rng = None;
        self.verdict_text.clear();
    }

    /// Returns a swapped-in request to its owner.
    #[inline]
    fn give_back(&mut self, lend: &mut Lend<'_>) {
        if let Lend::Swap(req) = lend {
            std::mem::swap(&mut self.req, *req);
        }
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
    pub(crate) fn moved(&mut self, bytes: usize) {
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
        if self.real_random {
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        } else {
            let seed = self.seed();
            let rng = self
                .rng
                .get_or_insert_with(|| rand::SeedableRng::from_seed(seed));
            rand::RngCore::fill_bytes(rng, &mut bytes);
        }
        self.moved(n);
        Ok(bytes)
    }

    /// The deterministic generator's seed: the module's hash, and the device and time of the
    /// decision (`init` gets one of its own), so a replayed decision sees the same bytes.
    fn seed(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"warden plugin random v1\0");
        h.update(self.module_sha);
        if self.rep == 0 {
            h.update(b"init");
        } else {
            h.update(b"decide\0");
            h.update(self.req.device.id.as_bytes());
            h.update(b"\0");
            h.update(self.req.time_ms.to_le_bytes());
        }
        h.finalize().into()
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
    fn security(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<u32>> {
        self.current(&r)?;
        Ok(self
            .req
            .security
            .as_deref()
            .map(|s| self.interner.lookup(s)))
    }
    fn security_text(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.security.clone())
    }
    fn anomaly_feature(&mut self, r: Resource<RequestRef>) -> wasmtime::Result<Option<String>> {
        Ok(self.current(&r)?.observed.anomaly_feature.clone())
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
        self.log_line(level, &message);
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
        Ok(self.kv_set_counted(&key, &value)?.map_err(|e| match e {
            KvError::KeyTooLarge => wit::KvError::KeyTooLarge,
            KvError::QuotaExceeded => wit::KvError::QuotaExceeded,
        }))
    }
    fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.moved(key.len());
        self.kv.delete(&key);
        Ok(())
    }
}

impl State {
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub(crate) fn kv_quota(&self) -> usize {
        self.kv_quota
    }

    /// A `kv-set` refused before anything was copied, counted like any refusal.
    pub(crate) fn kv_refused(&mut self, e: KvError) -> wasmtime::Result<Result<(), KvError>> {
        self.kv_refusals += 1;
        if self.kv_refusals > KV_REFUSALS_PER_CALL {
            return Err(wasmtime::Error::new(HostTrap::Budget(format!(
                "more than {KV_REFUSALS_PER_CALL} refused kv-set calls in one call"
            ))));
        }
        Ok(Err(e))
    }

    /// A `kv-set`, refused ones counted: past [`KV_REFUSALS_PER_CALL`] the call is stopped.
    pub(crate) fn kv_set_counted(
        &mut self,
        key: &str,
        value: &[u8],
    ) -> wasmtime::Result<Result<(), KvError>> {
        match self.kv.set(key, value, self.kv_quota) {
            Ok(()) => Ok(Ok(())),
            Err(e) => {
                self.kv_refusals += 1;
                if self.kv_refusals > KV_REFUSALS_PER_CALL {
                    return Err(wasmtime::Error::new(HostTrap::Budget(format!(
                        "more than {KV_REFUSALS_PER_CALL} refused kv-set calls in one call"
                    ))));
                }
                Ok(Err(e))
            }
        }
    }

    /// Forwards a plugin's log line: rate-limited, sanitised, truncated.
    pub(crate) fn log_line(&mut self, level: wit::Level, message: &str) {
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
            return;
        }
        l.in_window += 1;
        let message = sanitize(message, LOG_MAX_BYTES);
        let plugin = &*self.name;
        match level {
            wit::Level::Debug => tracing::debug!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Info => tracing::info!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Warn => tracing::warn!(target: "warden::plugin", plugin, "{message}"),
            wit::Level::Error => tracing::error!(target: "warden::plugin", plugin, "{message}"),
        }
    }
}

impl wit::Host for State {}

/// Counters of one plugin (across restarts of its instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Decisions the plugin's code ran for.
    pub calls: u64,
    pub allows: u64,
    pub denies: u64,
    pub quarantines: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    /// Instances replaced after a failure.
    pub restarts: u64,
    /// Decisions denied with `restarting` while a replacement instance was being prepared.
    pub denied_restarting: u64,
    /// Healthy instances swapped for fresh ones after `recycle_after` decisions.
    pub recycles: u64,
    /// Fuel used by the last decision that ran.
    pub last_fuel_used: u64,
}

/// A live instance and its store.
struct Live {
    store: Store<State>,
    code: LiveCode,
}

/// The entry points of a live instance, by contract.
enum LiveCode {
    Component(bindings::Plugin),
    Core(CoreExports),
}

/// What a background replacement hands back: the instance and the wall time its creation took,
/// or why it failed and the key-value state it was given.
type Replacement = Result<(Live, Duration), (LoadError, Kv)>;

/// The plugin's instance.
enum Instance {
    Live(Live),
    /// A replacement is being instantiated (and its `init` run) on a thread of its own.
    Replacing(mpsc::Receiver<Replacement>),
    /// No instance and none on the way (a replacement failed, or the plugin is disabled);
    /// the key-value state waits here.
    Parked(Kv),
}

/// Wall time spent in the plugin per one-second window, in ms of the host's coarse clock.
///
/// The coarse clock (`Inner::coarse_ms`, set by the epoch ticker about every millisecond from the
/// real elapsed time) costs one atomic load where `Instant::now` costs a clock read (~20 ns, two
/// per decision). A decision shorter than a tick mostly reads 0 and sometimes 1 (or the ticker's
/// lateness), with the probability of a tick falling inside it, so the per-second sum is the
/// plugin's real time in expectation — and a plugin cannot tell which of its calls a tick hits.
struct CpuMeter {
    window_start_ms: u64,
    used_ms: u64,
}

impl CpuMeter {
    /// Adds `spent_ms` at `now_ms`; returns the window's total.
    fn add(&mut self, now_ms: u64, spent_ms: u64) -> u64 {
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 {
            self.window_start_ms = now_ms;
            self.used_ms = 0;
        }
        self.used_ms = self.used_ms.saturating_add(spent_ms);
        self.used_ms
    }
}

/// A loaded plugin: a warm instance, replaced in the background after any failure.
pub struct Plugin {
    host: Host,
    prepared: Prepared,
    config: Arc<str>,
    limits: Limits,
    name: Arc<str>,
    instance: Instance,
    stats: PluginStats,
    /// Why the plugin was disabled; `None` while it is enabled.
    disabled: Option<String>,
    /// When the most recent failures happened (at most `max_failures`, oldest first).
    recent_failures: VecDeque<Instant>,
    cpu: CpuMeter,
    /// A failed replacement noticed outside `decide` (waiting, taking the state), reported by
    /// the next decision so that the caller sees it (and a disabling audit is not lost).
    unreported: Option<Outcome>,
    seq: u32,
    deadline_ticks: u64,
    /// Decisions the live instance has made (for `recycle_after`).
    since_fresh: u64,
    /// A fresh instance being prepared to take over from the live one (`recycle_after`).
    recycle: Option<mpsc::Receiver<Replacement>>,
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
            HostTrap::Malformed(_) => FailureCause::MalformedReturn,
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

/// Finds a 0.2.0 module's entry points and asks for its request area (checked to lie inside
/// its memory, aligned).
fn core_exports(
    store: &mut Store<State>,
    instance: &wasmtime::Instance,
) -> wasmtime::Result<CoreExports> {
    use warden_plugin_abi as abi;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::Error::msg("the plugin exports no memory"))?;
    store.data_mut().memory = Some(memory);
    let area_fn = instance.get_typed_func::<(), i32>(&mut *store, abi::EXPORT_AREA)?;
    let init = instance.get_typed_func::<(), i32>(&mut *store, abi::EXPORT_INIT)?;
    let decide = instance.get_typed_func::<(), i32>(&mut *store, abi::EXPORT_DECIDE)?;
    let area = area_fn.call(&mut *store, ())? as u32 as usize;
    let size = memory.data_size(&*store);
    if !area.is_multiple_of(8)
        || area
            .checked_add(abi::AREA_BYTES)
            .is_none_or(|end| end > size)
    {
        return Err(wasmtime::Error::new(HostTrap::Malformed(format!(
            "request area at {area:#x} is not {} bytes, 8-aligned, inside the plugin's memory ({size} bytes)",
            abi::AREA_BYTES
        ))));
    }
    Ok(CoreExports {
        memory,
        area,
        init,
        decide,
    })
}

/// How a decision gets its request: copied into the store, or swapped in and back (no copy).
enum Lend<'a> {
    Copy(&'a Request),
    Swap(&'a mut Box<Request>),
}

/// A 0.2.0 decision: the request (in the store) laid out in the plugin's area, one call, the
/// verdict code.
#[inline]
fn decide_core(store: &mut Store<State>, c: &CoreExports) -> wasmtime::Result<wit::Verdict> {
    use warden_plugin_abi as abi;
    {
        let (data, st) = c.memory.data_and_store_mut(&mut *store);
        let area = data
            .get_mut(c.area..c.area + abi::AREA_BYTES)
            .ok_or_else(|| {
                wasmtime::Error::new(HostTrap::Malformed("request area outside memory".into()))
            })?;
        crate::core_abi::write_area(area, &st.req, &st.interner);
    }
    let code = c.decide.call(&mut *store, ())?;
    let mut text = || {
        let t = std::mem::take(&mut store.data_mut().verdict_text);
        if t.is_empty() {
            "(the plugin gave no reason)".to_owned()
        } else {
            t
        }
    };
    match code {
        abi::verdict::ALLOW => Ok(wit::Verdict::Allow),
        abi::verdict::DENY => Ok(wit::Verdict::Deny(text())),
        abi::verdict::QUARANTINE => Ok(wit::Verdict::Quarantine(text())),
        other => Err(wasmtime::Error::new(HostTrap::Malformed(format!(
            "decide returned {other}, not a verdict (0 allow, 1 deny, 2 quarantine)"
        )))),
    }
}

impl Plugin {
    /// Creates the instance and runs `init` under `Limits::init_fuel` and
    /// `Limits::init_deadline_ms`. On failure, hands back the key-value state.
    fn create(
        host: &Host,
        prepared: &Prepared,
        config: &str,
        limits: &Limits,
        name: &Arc<str>,
        kv: Kv,
    ) -> Result<Live, (LoadError, Kv)> {
        let state = State::new(limits, name.clone(), prepared.sha256, kv, config.into());
        let mut store = Store::new(host.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Strings and lists the guest hands the host (arguments, the verdict, `init`'s error) are
        // length-checked in guest memory against this before anything is copied out.
        store.set_hostcall_fuel(lift_cap(limits));
        store.call_hook(meter);
        let give_back = |store: Store<State>, e: LoadError| (e, store.into_data().kv);
        if let Err(e) = store.set_fuel(limits.init_fuel) {
            return Err(give_back(store, LoadError::Compile(format!("{e:#}"))));
        }
        store.set_epoch_deadline(limits.init_deadline_ms.max(1).saturating_add(1));
        let instantiated = match &prepared.pre {
            Pre::Component(pre) => pre.instantiate(&mut store).map(LiveCode::Component),
            Pre::Core(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| core_exports(&mut store, &i).map(LiveCode::Core)),
        };
        let code = match instantiated {
            Ok(c) => c,
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
        let started = Instant::now();
        let init = match &code {
            LiveCode::Component(b) => b.call_init(&mut store, config),
            LiveCode::Core(c) => c.init.call(&mut store, ()).map(|r| {
                if r == 0 {
                    Ok(())
                } else {
                    let msg = std::mem::take(&mut store.data_mut().verdict_text);
                    Err(if msg.is_empty() {
                        format!("init returned {r} without a message")
                    } else {
                        msg
                    })
                }
            }),
        };
        tracing::debug!(
            plugin = %name,
            fuel = limits.init_fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "plugin init ran"
        );
        match init {
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
        Ok(Live { store, code })
    }

    /// Instantiates and runs `init` on the calling thread (loading is never on the message
    /// thread: the gateway loads at start-up and the reload watcher loads on its own thread).
    pub(crate) fn start(
        host: Host,
        prepared: Prepared,
        config: Arc<str>,
        limits: Limits,
        kv: Kv,
    ) -> Result<Plugin, LoadError> {
        let name: Arc<str> = prepared.name.as_str().into();
        crate::wasi::check(&prepared.wasi_imports, limits.wasi).map_err(LoadError::Contract)?;
        let live =
            Self::create(&host, &prepared, &config, &limits, &name, kv).map_err(|(e, _)| e)?;
        let deadline_ticks = limits.deadline_ms.max(1) + 1;
        let now_ms = host.inner.coarse_ms.load(Ordering::Relaxed);
        Ok(Plugin {
            host,
            prepared,
            config,
            limits,
            name,
            instance: Instance::Live(live),
            stats: PluginStats::default(),
            disabled: None,
            recent_failures: VecDeque::new(),
            cpu: CpuMeter {
                window_start_ms: now_ms,
                used_ms: 0,
            },
            unreported: None,
            seq: 0,
            deadline_ticks,
            since_fresh: 0,
            recycle: None,
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
        self.disabled.is_some()
    }

    /// Why the plugin was disabled.
    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    pub fn stats(&self) -> PluginStats {
        self.stats
    }

    /// Whether a replacement instance is being prepared (decisions deny with `restarting`).
    pub fn is_replacing(&mut self) -> bool {
        if let Some(failed) = self.poll_replacement() {
            self.unreported = Some(failed);
        }
        matches!(self.instance, Instance::Replacing(_))
    }

    /// Waits up to `timeout` for a replacement in progress to finish (tests and `plugin test`,
    /// which replay cases one after another; never the message path). Returns whether the
    /// plugin has a live instance now.
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        if let Instance::Replacing(rx) = &self.instance {
            let failed = match rx.recv_timeout(timeout) {
                Ok(r) => self.replaced(r),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.replacement_lost(),
            };
            if failed.is_some() {
                self.unreported = failed;
            }
        }
        matches!(self.instance, Instance::Live(_))
    }

    /// The plugin's key-value state. A replacement still on its way (it holds the state) is
    /// waited for up to the init deadline.
    pub fn into_kv(mut self) -> Kv {
        let wait = Duration::from_millis(self.limits.init_deadline_ms.saturating_add(1000));
        self.wait_ready(wait);
        self.take_kv().unwrap_or_else(|| {
            tracing::error!(plugin = %self.name, "replacement instance did not finish; its key-value state is lost");
            Kv::default()
        })
    }

    /// Takes the key-value state out (for a reloaded version to adopt), leaving this plugin
    /// without an instance. `None`, and nothing changed, while a replacement holds the state.
    pub fn take_kv(&mut self) -> Option<Kv> {
        if let Some(failed) = self.poll_replacement() {
            self.unreported = Some(failed);
        }
        if matches!(self.instance, Instance::Replacing(_)) {
            return None;
        }
        match std::mem::replace(&mut self.instance, Instance::Parked(Kv::default())) {
            Instance::Live(live) => Some(live.store.into_data().kv),
            Instance::Parked(kv) => Some(kv),
            Instance::Replacing(_) => None,
        }
    }

    /// Gives this (freshly loaded) plugin the key-value state of the version it replaces.
    pub fn adopt_kv(&mut self, kv: Kv) {
        match &mut self.instance {
            Instance::Live(live) => live.store.data_mut().kv = kv,
            Instance::Parked(k) => *k = kv,
            Instance::Replacing(_) => {
                tracing::warn!(plugin = %self.name, "cannot adopt state while replacing");
            }
        }
    }

    /// Number of symbols the plugin interned.
    pub fn symbols(&self) -> usize {
        match &self.instance {
            Instance::Live(l) => l.store.data().interner.len(),
            _ => 0,
        }
    }

    /// A read-only view of the plugin's key-value state (`None` while a replacement holds it).
    pub fn kv(&self) -> Option<&Kv> {
        match &self.instance {
            Instance::Live(live) => Some(&live.store.data().kv),
            Instance::Parked(kv) => Some(kv),
            Instance::Replacing(_) => None,
        }
    }

    /// One decision. Never waits for anything but the plugin's own call (bounded by its fuel
    /// and deadline): while a failed instance is being replaced, the answer is `restarting`.
    /// The request is copied into the plugin's store; see [`Plugin::decide_in_place`].
    pub fn decide(&mut self, req: &Request) -> Outcome {
        self.decide_lent(Lend::Copy(req))
    }

    /// [`Plugin::decide`] without copying the request: the box is swapped into the plugin's store
    /// for the call and swapped back (the caller gets it back unchanged).
    pub fn decide_in_place(&mut self, req: &mut Box<Request>) -> Outcome {
        self.decide_lent(Lend::Swap(req))
    }

    fn decide_lent(&mut self, mut lend: Lend<'_>) -> Outcome {
        if let Some(failed) = self.unreported.take() {
            return failed;
        }
        if let Some(why) = &self.disabled {
            return Outcome::Failed(Failure {
                cause: FailureCause::Disabled,
                detail: format!("plugin `{}` is disabled: {why}", self.name),
                disabled_now: false,
            });
        }
        if let Some(failed) = self.poll_replacement() {
            return failed;
        }
        if matches!(self.instance, Instance::Parked(_)) {
            // the previous replacement failed (and was counted): try again, in the background
            self.replace();
        }
        self.poll_recycle();
        let Instance::Live(live) = &mut self.instance else {
            self.stats.denied_restarting += 1;
            return Outcome::Failed(Failure {
                cause: FailureCause::Restarting,
                detail: format!(
                    "plugin `{}` is replacing its instance after a failure",
                    self.name
                ),
                disabled_now: false,
            });
        };
        self.stats.calls += 1;
        self.seq = self.seq.wrapping_add(1).max(1);
        let rep = self.seq;
        live.store.data_mut().begin_call(rep, &mut lend);
        let fuel = self.limits.fuel;
        // a 0.2.0 request area is paid like bytes a host call moves, up front
        let upfront = match &live.code {
            LiveCode::Core(_) => (crate::core_abi::area_bytes_written(&live.store.data().req)
                as u64)
                .div_ceil(BYTES_PER_FUEL),
            LiveCode::Component(_) => 0,
        };
        if let Err(e) = live.store.set_fuel(fuel.saturating_sub(upfront)) {
            live.store.data_mut().give_back(&mut lend);
            return self.failed(FailureCause::Trap, format!("{e:#}"));
        }
        live.store.set_epoch_deadline(self.deadline_ticks);
        let clock = &self.host.inner.coarse_ms;
        let started = clock.load(Ordering::Relaxed);
        let result = match &live.code {
            LiveCode::Component(b) => {
                let h = header(&live.store.data().req);
                b.call_decide(&mut live.store, h, Resource::new_borrow(rep))
            }
            LiveCode::Core(c) => decide_core(&mut live.store, c),
        };
        let ended = clock.load(Ordering::Relaxed);
        live.store.data_mut().give_back(&mut lend);
        let refused = live.store.data_mut().end_call();
        self.stats.last_fuel_used = fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        if let Some(over) = self.over_cpu_budget(ended, ended.saturating_sub(started)) {
            return self.failed(FailureCause::CpuBudget, over);
        }
        match result {
            Ok(verdict) => {
                self.stats.consecutive_failures = 0;
                self.since_fresh += 1;
                if self.limits.recycle_after > 0
                    && self.since_fresh >= self.limits.recycle_after
                    && self.recycle.is_none()
                {
                    self.start_recycle();
                }
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
                self.failed(cause, detail)
            }
        }
    }

    /// Adds wall time spent in the plugin to this second's total; past the budget, says so.
    fn over_cpu_budget(&mut self, now_ms: u64, spent_ms: u64) -> Option<String> {
        let used = self.cpu.add(now_ms, spent_ms);
        let budget = self.limits.cpu_ms_per_sec;
        (used > budget)
            .then(|| format!("spent {used} ms in one second (budget {budget} ms per second)"))
    }

    /// Starts preparing a fresh instance to take over from the live one, on a thread of its
    /// own, from a copy of the key-value state (the live state replaces it at the swap).
    fn start_recycle(&mut self) {
        let Instance::Live(live) = &self.instance else {
            return;
        };
        let kv = live.store.data().kv.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        let (host, prepared, config, limits, name) = (
            self.host.clone(),
            self.prepared.clone(),
            self.config.clone(),
            self.limits.clone(),
            self.name.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!(
                "recycle-{}",
                self.name.chars().take(8).collect::<String>()
            ))
            .spawn(move || {
                let started = Instant::now();
                let r = Self::create(&host, &prepared, &config, &limits, &name, kv)
                    .map(|live| (live, started.elapsed()));
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => self.recycle = Some(rx),
            Err(e) => {
                tracing::warn!(plugin = %self.name, "cannot start a recycling thread: {e}");
                self.since_fresh = 0;
            }
        }
    }

    /// Swaps in a recycled instance once it is ready, handing it the live key-value state. A
    /// fresh instance that failed to start is logged and tried again `recycle_after` decisions
    /// later; the live one keeps deciding either way.
    fn poll_recycle(&mut self) {
        let Some(rx) = &self.recycle else {
            return;
        };
        let ready = match rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.recycle = None;
                self.since_fresh = 0;
                return;
            }
        };
        self.recycled(ready);
    }

    fn recycled(&mut self, ready: Replacement) {
        self.recycle = None;
        self.since_fresh = 0;
        match ready {
            Ok((mut fresh, took)) => {
                let Instance::Live(live) = &mut self.instance else {
                    return;
                };
                std::mem::swap(
                    &mut fresh.store.data_mut().kv,
                    &mut live.store.data_mut().kv,
                );
                *live = fresh;
                self.stats.recycles += 1;
                tracing::debug!(plugin = %self.name, ms = took.as_secs_f64() * 1e3, "plugin instance recycled");
            }
            Err((e, _)) => {
                tracing::warn!(plugin = %self.name, "a fresh instance for recycling failed to start: {e}");
            }
        }
    }

    /// Picks up a finished replacement. A failed one is a failure of the plugin (returned, so the
    /// caller reports it with this decision).
    fn poll_replacement(&mut self) -> Option<Outcome> {
        let Instance::Replacing(rx) = &self.instance else {
            return None;
        };
        match rx.try_recv() {
            Ok(r) => self.replaced(r),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => self.replacement_lost(),
        }
    }

    fn replaced(&mut self, r: Replacement) -> Option<Outcome> {
        match r {
            Ok((live, took)) => {
                self.instance = Instance::Live(live);
                self.stats.restarts += 1;
                // `init` has a budget of its own (`init_fuel`, `init_deadline_ms`) and runs at
                // most once per failure, which the breaker bounds: not charged to the per-second
                // CPU budget of decisions
                tracing::debug!(plugin = %self.name, ms = took.as_secs_f64() * 1e3, "plugin instance replaced");
                None
            }
            Err((e, kv)) => {
                self.instance = Instance::Parked(kv);
                Some(self.failed(FailureCause::Restart, e.to_string()))
            }
        }
    }

    fn replacement_lost(&mut self) -> Option<Outcome> {
        self.instance = Instance::Parked(Kv::default());
        Some(self.failed(
            FailureCause::Restart,
            "the replacement thread ended without an instance (key-value state lost)".into(),
        ))
    }

    /// Records a failure, drops the instance and (unless the plugin is now disabled) starts
    /// preparing a replacement in the background.
    fn failed(&mut self, cause: FailureCause, detail: String) -> Outcome {
        // the detail may quote guest-chosen names (its name section) or guest-made errors
        let detail = sanitize(&detail, REASON_MAX_BYTES);
        self.stats.failures += 1;
        self.stats.consecutive_failures = self.stats.consecutive_failures.saturating_add(1);
        // a fresh instance on its way for recycling is not wanted now: the failure replaces
        self.recycle = None;
        self.since_fresh = 0;
        if let Instance::Live(_) = self.instance
            && let Instance::Live(live) =
                std::mem::replace(&mut self.instance, Instance::Parked(Kv::default()))
        {
            self.instance = Instance::Parked(live.store.into_data().kv);
        }
        let why = self.breaker(cause);
        let disabled_now = why.is_some();
        tracing::warn!(
            plugin = %self.name,
            cause = cause.as_str(),
            consecutive = self.stats.consecutive_failures,
            disabled = disabled_now,
            "plugin call failed: {detail}"
        );
        match why {
            Some(why) => self.disabled = Some(why),
            None if cause != FailureCause::Restart => self.replace(),
            // a failed replacement is retried at the next decision, not in a loop
            None => {}
        }
        Outcome::Failed(Failure {
            cause,
            detail,
            disabled_now,
        })
    }

    /// The breaker: disables on `max_failures` in a row, on `max_failures` within
    /// `failure_window_ms` (successes in between do not reset it), or at once on the CPU budget.
    fn breaker(&mut self, cause: FailureCause) -> Option<String> {
        let now = Instant::now();
        let max = self.limits.max_failures.max(1);
        let window = Duration::from_millis(self.limits.failure_window_ms);
        self.recent_failures.push_back(now);
        while self.recent_failures.len() > max as usize
            || self
                .recent_failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent_failures.pop_front();
        }
        if cause == FailureCause::CpuBudget {
            return Some(format!(
                "over its CPU budget of {} ms per second",
                self.limits.cpu_ms_per_sec
            ));
        }
        if self.stats.consecutive_failures >= max {
            return Some(format!("{max} failures in a row"));
        }
        if self.recent_failures.len() >= max as usize {
            return Some(format!(
                "{max} failures within {} s",
                self.limits.failure_window_ms.div_ceil(1000)
            ));
        }
        None
    }

    /// Starts preparing a fresh instance on a thread of its own, handing it the key-value state.
    fn replace(&mut self) {
        let Instance::Parked(kv) =
            std::mem::replace(&mut self.instance, Instance::Parked(Kv::default()))
        else {
            return;
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let host = self.host.clone();
        let prepared = self.prepared.clone();
        let config = self.config.clone();
        let limits = self.limits.clone();
        let name = self.name.clone();
        // the state travels through a slot so that a thread that cannot be spawned loses nothing
        let slot = Arc::new(std::sync::Mutex::new(Some(kv)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "plugin-{}",
                self.name.chars().take(8).collect::<String>()
            ))
            .spawn(move || {
                let kv = theirs
                    .lock()
                    .ok()
                    .and_then(|mut k| k.take())
                    .unwrap_or_default();
                let started = Instant::now();
                let r = Self::create(&host, &prepared, &config, &limits, &name, kv)
                    .map(|live| (live, started.elapsed()));
                // the plugin may be gone (reloaded, shut down): nobody is waiting then
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => self.instance = Instance::Replacing(rx),
            Err(e) => {
                tracing::error!(plugin = %self.name, "cannot start a replacement thread: {e}");
                let kv = slot
                    .lock()
                    .ok()
                    .and_then(|mut k| k.take())
                    .unwrap_or_default();
                self.instance = Instance::Parked(kv);
            }
        }
    }
}

#[cfg(test)]
impl Plugin {
    /// Waits for a recycling instance (if one is on its way) and swaps it in.
    pub(crate) fn wait_recycle(&mut self, timeout: Duration) {
        if let Some(rx) = &self.recycle
            && let Ok(r) = rx.recv_timeout(timeout)
        {
            self.recycled(r);
        }
    }
}

#[cfg(test)]
impl State {
    pub(crate) fn for_tests() -> Self {
        Self::new(
            &Limits::default(),
            "test".into(),
            [0; 32],
            Kv::default(),
            "{}".into(),
        )
    }
    pub(crate) fn begin_call_for_tests(&mut self, rep: u32, req: &Request) {
        self.begin_call(rep, &mut Lend::Copy(req));
    }
    pub(crate) fn end_call_for_tests(&mut self) {
        self.end_call();
    }
}
