//! The engine, the linker and loading: signature check, authenticated AOT cache, contract check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Config, Engine, OptLevel, Strategy};

use crate::bindings;
use crate::cache::{Cache, CacheOutcome, Refused};
use crate::error::{HostError, LoadError};
use crate::kv::Kv;
use crate::plugin::{Plugin, State};
use crate::{files, signing};

/// The contracts this gateway hosts: 0.1.0, the component world (WIT package version; any
/// language), and 0.2.0, core modules with the request laid out in their memory
/// (`warden-plugin-abi`; Rust, C, Zig).
pub const CONTRACT_PACKAGE: &str = "warden:policy";
pub const CONTRACT_VERSION: &str = "0.1.1";
/// Component contract versions this gateway loads: 0.1.1 only added methods to `request`, so a
/// 0.1.0 component links against it unchanged (wasmtime resolves `@0.1.0` imports to `@0.1.1`).
pub const COMPONENT_VERSIONS: [&str; 2] = ["0.1.0", "0.1.1"];
pub const CORE_CONTRACT_VERSION: &str = warden_plugin_abi::VERSION;

/// Compiled plugin code: a 0.1.0 component or a 0.2.0 core module.
pub(crate) enum Code {
    Component(Component),
    Core(wasmtime::Module),
}

/// Code linked and type-checked, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Pre {
    Component(bindings::PluginPre<State>),
    Core(wasmtime::InstancePre<State>),
}

/// Epoch ticks per second (the ticker increments the epoch every millisecond).
const TICK: Duration = Duration::from_millis(1);

/// Per-plugin resource limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per decision (deterministic budget).
    pub fuel: u64,
    /// Wall-clock backstop per decision, in ms (epoch interruption).
    pub deadline_ms: u64,
    /// One cap for all of the plugin's linear memories and tables together (tables at
    /// [`crate::TABLE_ELEMENT_BYTES`] per element), initial sizes included.
    pub memory_bytes: usize,
    /// Key-value state cap: key + value + [`crate::ENTRY_OVERHEAD_BYTES`] per entry.
    pub kv_quota_bytes: usize,
    /// Host calls per decision: every import (WASI included) and the runtime's own calls.
    pub host_calls: u32,
    /// Failures before the plugin is disabled: this many in a row, or this many within
    /// `failure_window_ms` however many successes come between them.
    pub max_failures: u32,
    /// The window of the failure-rate rule, in ms.
    pub failure_window_ms: u64,
    /// Wall time the plugin may spend deciding (its code and its host calls) per second, in ms;
    /// beyond it the plugin is disabled.
    pub cpu_ms_per_sec: u64,
    /// Fuel for `init` (which runs off the message thread, at load and when a failed instance
    /// is replaced).
    pub init_fuel: u64,
    /// Wall-clock backstop for instantiation plus `init`, in ms.
    pub init_deadline_ms: u64,
    /// The WASI packages the plugin may import (none by default).
    pub wasi: crate::WasiGrants,
    /// `wasi:random` from the OS; otherwise a generator seeded per decision from the module's
    /// hash, the device and the decision's time (replays decide the same).
    pub real_random: bool,
    /// Decisions after which the instance is swapped for a fresh one prepared in the background
    /// while the running one keeps deciding; 0 never.
    pub recycle_after: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 2_000_000,
            deadline_ms: 250,
            memory_bytes: 64 << 20,
            kv_quota_bytes: 1 << 20,
            host_calls: 10_000,
            max_failures: 5,
            failure_window_ms: 60_000,
            cpu_ms_per_sec: 500,
            init_fuel: 200_000_000,
            init_deadline_ms: 2_000,
            wasi: crate::WasiGrants::NONE,
            real_random: false,
            recycle_after: 0,
        }
    }
}

/// How the host loads plugins.
#[derive(Clone)]
pub struct HostOptions {
    /// Where compiled plugins are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// The MAC key authenticating cache entries. Keep it secret and stable across restarts (a
    /// different key just makes every entry `Corrupt` once).
    pub cache_key: [u8; 32],
    /// Keys whose signatures are accepted.
    pub trusted_keys: Vec<VerifyingKey>,
    /// Refuse plugins without a valid signature by a trusted key.
    pub require_signature: bool,
    /// When set, a module and its `.sig` are read only if the file actually opened lies inside
    /// this directory (symlinks within it are fine, ones leading out are refused).
    pub plugin_dir: Option<PathBuf>,
    /// Largest module file accepted (its `.sig` is capped at [`files::SIG_MAX`]).
    pub max_module_bytes: u64,
}

impl Default for HostOptions {
    /// No cache, a random cache key, no trusted keys, signatures required.
    fn default() -> Self {
        Self {
            cache_dir: None,
            cache_key: rand::random(),
            trusted_keys: Vec::new(),
            require_signature: true,
            plugin_dir: None,
            max_module_bytes: files::MODULE_MAX_DEFAULT,
        }
    }
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("cache_dir", &self.cache_dir)
            .field("cache_key", &"<secret>")
            .field(
                "trusted_keys",
                &self
                    .trusted_keys
                    .iter()
                    .map(signing::key_id)
                    .collect::<Vec<_>>(),
            )
            .field("require_signature", &self.require_signature)
            .field("plugin_dir", &self.plugin_dir)
            .field("max_module_bytes", &self.max_module_bytes)
            .finish()
    }
}

/// Stops the epoch ticker when the last `Host` clone (plugins hold one) drops.
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

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    /// The 0.2.0 imports (core modules).
    core_linker: wasmtime::Linker<State>,
    cache: Option<Cache>,
    opts: HostOptions,
    /// Milliseconds since the host started, as the ticker saw them at its last tick: a coarse
    /// clock (one atomic load to read) for the per-second CPU budget.
    pub(crate) coarse_ms: Arc<std::sync::atomic::AtomicU64>,
    _ticker: Ticker,
}

/// The plugin host: one engine, one linker, one epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

/// A compiled, verified and type-checked plugin, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Prepared {
    pub name: String,
    pub path: PathBuf,
    pub sha256: [u8; 32],
    /// Id of the key that signed it (hex of its first 8 bytes); `None` when unsigned and
    /// signatures are not required.
    pub signer: Option<String>,
    pub cache: CacheOutcome,
    /// Why a cache entry was refused (`cache == Corrupt`): a security event for the gateway.
    pub cache_refused: Option<String>,
    /// Time spent compiling or loading from the cache.
    pub compile_ms: f64,
    /// The component's WASI imports (checked against `Limits::wasi` at instantiation).
    pub wasi_imports: Vec<String>,
    /// The contract version the plugin was built against (`0.1.0` or `0.2.0`).
    pub contract: &'static str,
    pub(crate) pre: Pre,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &hex::encode(self.sha256))
            .field("signer", &self.signer)
            .field("cache", &self.cache)
            .field("compile_ms", &self.compile_ms)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// The engine configuration every plugin runs under.
pub(crate) fn engine_config() -> Config {
    let mut cfg = Config::new();
    cfg.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_component_model(true)
        .consume_fuel(true)
        // one linear memory per core module: a plugin's memories are few and summed (plugin.rs)
        .wasm_multi_memory(false)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .parallel_compilation(true);
    cfg
}

fn link(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::<State>::new(engine);
    // WASI p2 for Python/JavaScript components; the context grants nothing (see plugin.rs).
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // A guest must not block the host thread in a host call, where neither fuel nor the epoch
    // deadline can stop it: the only WASI call that can (no files, sockets or stdin are granted)
    // is waiting on a monotonic-clock deadline, so subscribing to one traps.
    linker.allow_shadowing(true);
    {
        let mut clocks = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
        clocks.func_wrap(
            "subscribe-duration",
            |_, (_,): (u64,)| -> wasmtime::Result<(Resource<wasmtime_wasi::p2::DynPollable>,)> {
                wasmtime::bail!("plugins may not sleep (wasi:clocks subscribe-duration)")
            },
        )?;
        clocks.func_wrap(
            "subscribe-instant",
            |_, (_,): (u64,)| -> wasmtime::Result<(Resource<wasmtime_wasi::p2::DynPollable>,)> {
                wasmtime::bail!("plugins may not sleep (wasi:clocks subscribe-instant)")
            },
        )?;
    }
    // Random bytes are made on the host: cap one call and charge what it moves (plugin.rs).
    {
        let mut random = linker.instance("wasi:random/random@0.2.12")?;
        random.func_wrap("get-random-bytes", |mut cx, (len,): (u64,)| {
            random_bytes(&mut cx, len).map(|b| (b,))
        })?;
        let mut insecure = linker.instance("wasi:random/insecure@0.2.12")?;
        insecure.func_wrap("get-insecure-random-bytes", |mut cx, (len,): (u64,)| {
            random_bytes(&mut cx, len).map(|b| (b,))
        })?;
    }
    linker.allow_shadowing(false);
    bindings::Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// `len` random bytes, refused beyond [`crate::plugin::RANDOM_MAX_BYTES`].
fn random_bytes(
    cx: &mut wasmtime::StoreContextMut<'_, State>,
    len: u64,
) -> wasmtime::Result<Vec<u8>> {
    cx.data_mut().random_bytes(len)
}

impl Host {
    pub fn new(opts: HostOptions) -> Result<Host, HostError> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let linker = link(&engine).map_err(|e| HostError::Link(format!("{e:#}")))?;
        let mut core_linker = wasmtime::Linker::<State>::new(&engine);
        crate::core_abi::link(&mut core_linker).map_err(|e| HostError::Link(format!("{e:#}")))?;
        let cache = match &opts.cache_dir {
            Some(dir) => Some(
                Cache::new(dir.clone(), opts.cache_key, &engine, opts.max_module_bytes)
                    .map_err(|e| HostError::Cache(format!("{}: {e}", dir.display())))?,
            ),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let coarse_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let handle = {
            let stop = stop.clone();
            let engine = engine.clone();
            let coarse = coarse_ms.clone();
            let started = Instant::now();
            std::thread::Builder::new()
                .name("warden-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(TICK);
                        engine.increment_epoch();
                        // the real elapsed time, so a late tick does not slow this clock down
                        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        coarse.store(ms, Ordering::Relaxed);
                    }
                })
                .map_err(|e| HostError::Ticker(e.to_string()))?
        };
        Ok(Host {
            inner: Arc::new(Inner {
                engine,
                linker,
                core_linker,
                cache,
                opts,
                coarse_ms,
                _ticker: Ticker {
                    stop,
                    handle: Some(handle),
                },
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn options(&self) -> &HostOptions {
        &self.inner.opts
    }

    /// The cache entry a module with this digest would use (for diagnostics and tests).
    pub fn cache_path(&self, sha256: &[u8; 32]) -> Option<PathBuf> {
        self.inner.cache.as_ref().map(|c| c.path(sha256))
    }

    /// Signature check (per the options) → compile, via the AOT cache → type-check against
    /// the `warden:policy/plugin` world.
    ///
    /// The module is read once (a regular file, capped, inside the plugin directory when one is
    /// configured); the digest the signature is checked against and the bytes compiled are of
    /// that one read, so swapping the file mid-load cannot get unsigned code compiled.
    pub fn prepare(&self, name: &str, module_path: &Path) -> Result<Prepared, LoadError> {
        let opts = &self.inner.opts;
        let bytes = files::read(
            module_path,
            opts.max_module_bytes,
            "module",
            opts.plugin_dir.as_deref(),
        )
        .map_err(|e| LoadError::Read(e.to_string()))?;
        let sha256 = signing::sha256(&bytes);
        let signer = self.check_signature(module_path, &sha256)?;
        let started = Instant::now();
        let (code, cache, cache_refused) = self.compile(&sha256, &bytes)?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let (pre, wasi_imports, contract) = match code {
            Code::Component(component) => {
                let (wasi_imports, version) = check_contract(&self.inner.engine, &component)?;
                let pre = self
                    .inner
                    .linker
                    .instantiate_pre(&component)
                    .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
                let pre = bindings::PluginPre::new(pre)
                    .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
                (Pre::Component(pre), wasi_imports, version)
            }
            Code::Core(module) => {
                check_core_contract(&module)?;
                let pre = self
                    .inner
                    .core_linker
                    .instantiate_pre(&module)
                    .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
                (Pre::Core(pre), Vec::new(), CORE_CONTRACT_VERSION)
            }
        };
        Ok(Prepared {
            name: name.to_owned(),
            path: module_path.to_owned(),
            sha256,
            signer,
            cache,
            cache_refused,
            compile_ms,
            wasi_imports,
            contract,
            pre,
        })
    }

    /// Instantiates a prepared plugin and runs its `init(config_json)`. `kv` is the state of a
    /// previous instance of the same plugin name (`Kv::default()` for a new one).
    pub fn instantiate(
        &self,
        prepared: &Prepared,
        config_json: &str,
        limits: Limits,
        kv: Kv,
    ) -> Result<Plugin, LoadError> {
        Plugin::start(
            self.clone(),
            prepared.clone(),
            config_json.into(),
            limits,
            kv,
        )
    }

    fn check_signature(
        &self,
        module_path: &Path,
        sha256: &[u8; 32],
    ) -> Result<Option<String>, LoadError> {
        let opts = &self.inner.opts;
        let sig_path = signing::sig_path(module_path);
        let required = opts.require_signature;
        let sig_bytes = match files::read(
            &sig_path,
            files::SIG_MAX,
            "signature",
            opts.plugin_dir.as_deref(),
        ) {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            // a `.sig` that exists but is a device, a FIFO, oversized or outside the plugin
            // directory is refused whatever `require_signature` says: someone is up to something
            Err(e) => return Err(LoadError::Signature(e.to_string())),
        };
        let Some(sig_bytes) = sig_bytes else {
            if required {
                return Err(LoadError::Signature(format!(
                    "{} is unsigned ({} not found) and plugin signatures are required",
                    module_path.display(),
                    sig_path.display()
                )));
            }
            return Ok(None);
        };
        let checked = signing::parse_signature(&sig_bytes, &sig_path)
            .map_err(|e| e.to_string())
            .and_then(|sig| {
                if opts.trusted_keys.is_empty() {
                    return Err("no trusted plugin keys are configured".to_owned());
                }
                opts.trusted_keys
                    .iter()
                    .find(|k| signing::verify_digest(sha256, &sig, k).is_ok())
                    .map(signing::key_id)
                    .ok_or_else(|| {
                        format!(
                            "{} is not a valid signature of {} by any trusted key ({})",
                            sig_path.display(),
                            module_path.display(),
                            opts.trusted_keys
                                .iter()
                                .map(signing::key_id)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            });
        match checked {
            Ok(id) => Ok(Some(id)),
            Err(e) if required => Err(LoadError::Signature(e)),
            Err(e) => {
                tracing::warn!(
                    module = %module_path.display(),
                    "plugin signature does not verify ({e}); loading anyway because signatures are not required"
                );
                Ok(None)
            }
        }
    }

    fn compile(
        &self,
        sha256: &[u8; 32],
        bytes: &[u8],
    ) -> Result<(Code, CacheOutcome, Option<String>), LoadError> {
        let engine = &self.inner.engine;
        let (outcome, refused) = match &self.inner.cache {
            None => (CacheOutcome::Disabled, None),
            Some(cache) => match cache.load(engine, sha256) {
                Ok(c) => return Ok((c, CacheOutcome::Hit, None)),
                Err(Refused::Missing) => (CacheOutcome::Miss, None),
                Err(Refused::Bad(why)) => {
                    tracing::warn!("plugin cache entry refused, recompiling: {why}");
                    (CacheOutcome::Corrupt, Some(why))
                }
            },
        };
        let code = if is_core_module(bytes) {
            wasmtime::Module::from_binary(engine, bytes).map(Code::Core)
        } else {
            Component::from_binary(engine, bytes).map(Code::Component)
        }
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.inner.cache
            && let Err(e) = cache.store(sha256, &code)
        {
            tracing::warn!(dir = %cache.dir().display(), "cannot write the plugin cache: {e}");
        }
        Ok((code, outcome, refused))
    }
}

/// A core module starts with the magic and version 1; a component has layer 1 in the header.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.get(..8) == Some(b"\0asm\x01\0\0\0")
}

/// Checks a core module speaks contract 0.2.0: imports only from its host module, exports one
/// memory and the three entry points with their types. Another version gets an error naming
/// both.
fn check_core_contract(module: &wasmtime::Module) -> Result<(), LoadError> {
    use warden_plugin_abi as abi;
    let expected = format!("{CONTRACT_PACKAGE}@{CORE_CONTRACT_VERSION}");
    for import in module.imports() {
        let m = import.module();
        if m == abi::IMPORT_MODULE {
            continue;
        }
        if let Some(rest) = m.strip_prefix(CONTRACT_PACKAGE) {
            let version = rest.rsplit_once('@').map_or("<unversioned>", |(_, v)| v);
            return Err(LoadError::Contract(format!(
                "plugin was built against {CONTRACT_PACKAGE}@{version} (imports from `{m}`); this gateway hosts {expected} for core modules and {CONTRACT_PACKAGE}@{CONTRACT_VERSION} for components"
            )));
        }
        return Err(LoadError::Contract(format!(
            "plugin imports `{m}::{}`, which this gateway does not provide (a {expected} core module may import only from `{}`; WASI is for components)",
            import.name(),
            abi::IMPORT_MODULE
        )));
    }
    let exports: Vec<String> = module.exports().map(|e| e.name().to_owned()).collect();
    if let Some(other) = exports
        .iter()
        .find(|n| n.starts_with(abi::EXPORT_PREFIX) && !n.starts_with(&format!("{expected}#")))
    {
        let version = other
            .strip_prefix(abi::EXPORT_PREFIX)
            .and_then(|r| r.split_once('#'))
            .map_or("<unversioned>", |(v, _)| v);
        return Err(LoadError::Contract(format!(
            "plugin was built against {CONTRACT_PACKAGE}@{version} (export `{other}`); this gateway hosts {expected} for core modules and {CONTRACT_PACKAGE}@{CONTRACT_VERSION} for components"
        )));
    }
    let func = |name: &str, results: usize| -> Result<(), LoadError> {
        let ty = module.get_export(name).and_then(|e| e.func().cloned());
        match ty {
            Some(f)
                if f.params().len() == 0
                    && f.results().len() == results
                    && f.results().all(|r| matches!(r, wasmtime::ValType::I32)) =>
            {
                Ok(())
            }
            Some(f) => Err(LoadError::Contract(format!(
                "export `{name}` has type {f}, not the {expected} `() -> i32`"
            ))),
            None => Err(LoadError::Contract(format!(
                "this core module is not a {expected} plugin: it does not export `{name}` (exports: [{}]); a component of the {CONTRACT_PACKAGE}@{CONTRACT_VERSION} world is a different file format",
                exports.join(", ")
            ))),
        }
    };
    func(abi::EXPORT_AREA, 1)?;
    func(abi::EXPORT_INIT, 1)?;
    func(abi::EXPORT_DECIDE, 1)?;
    if !matches!(
        module.get_export("memory"),
        Some(wasmtime::ExternType::Memory(_))
    ) {
        return Err(LoadError::Contract(format!(
            "a {expected} plugin must export its memory as `memory`"
        )));
    }
    Ok(())
}

/// Checks the component's imports and exports name this gateway's contract, so a plugin built
/// against another version of the WIT gets an error naming both versions.
/// Returns the component's WASI imports and the contract version it was built against.
fn check_contract(
    engine: &Engine,
    component: &Component,
) -> Result<(Vec<String>, &'static str), LoadError> {
    let ty = component.component_type();
    let expected = format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}");
    let mut wasi = Vec::new();
    let mut built_against = CONTRACT_VERSION;
    for (name, item) in ty.imports(engine) {
        // A world-level `use host.{request}` shows up as a type import aliasing the host's
        // resource: a type, not a capability (instantiation checks it matches).
        if matches!(
            item.ty,
            wasmtime::component::types::ComponentItem::Type(_)
                | wasmtime::component::types::ComponentItem::Resource(_)
        ) {
            continue;
        }
        if let Some(rest) = name.strip_prefix(CONTRACT_PACKAGE) {
            let version = rest.rsplit_once('@').map(|(_, v)| v);
            match COMPONENT_VERSIONS.iter().find(|v| Some(**v) == version) {
                Some(v) => built_against = v,
                None => {
                    return Err(LoadError::Contract(format!(
                        "plugin was built against {CONTRACT_PACKAGE}@{} (import `{name}`); this gateway hosts {expected} (and loads 0.1.0 components)",
                        version.unwrap_or("<unversioned>")
                    )));
                }
            }
        } else if name.starts_with("wasi:") {
            wasi.push(name.to_owned());
        } else {
            return Err(LoadError::Contract(format!(
                "plugin imports `{name}`, which this gateway does not provide (plugins may import only {CONTRACT_PACKAGE}/host@{CONTRACT_VERSION} and WASI 0.2)"
            )));
        }
    }
    for export in ["init", "decide"] {
        if !ty.exports(engine).any(|(n, _)| n == export) {
            let found: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
            return Err(LoadError::Contract(format!(
                "plugin does not export `{export}` of the {expected} world `plugin` (exports: [{}])",
                found.join(", ")
            )));
        }
    }
    Ok((wasi, built_against))
}
