//! Wasm policy plugins in the gateway: loading (signature → compile → init → the plugin's own
//! tests), the chain the decide stage runs, hot reload, and traffic recording for plugin tests.
//! The Wasm runtime itself lives in the `warden-plugin-host` crate; nothing here touches wasmtime.

pub mod chain;
pub mod cli;
pub mod recorder;
pub mod scaffold;
pub mod status;
pub mod watch;

use std::path::{Path, PathBuf};

use warden_plugin_host::{Host, HostOptions, Kv, Limits, Plugin, Prepared, testrun};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::config::{Config, PluginLimitsConfig, PluginLoadConfig};

/// Everything needed to (re)load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    pub module: PathBuf,
    pub config_json: String,
    pub limits: Limits,
}

impl PluginSpec {
    pub fn from_config(dir: &Path, l: &PluginLoadConfig, defaults: &PluginLimitsConfig) -> Self {
        let module = dir.join(
            l.module
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.wasm", l.name.replace('-', "_")))),
        );
        let config_json = l
            .config
            .as_ref()
            .and_then(|t| serde_json::to_string(t).ok())
            .unwrap_or_else(|| "{}".into());
        let mut limits = limits(&l.limits, defaults);
        // validated with the config
        limits.wasi = warden_plugin_host::WasiGrants::parse(&l.wasi).unwrap_or_default();
        limits.real_random = l.real_random;
        Self {
            name: l.name.clone(),
            module,
            config_json,
            limits,
        }
    }

    /// `NAME.tests.jsonl` beside the module: the plugin's own tests, run before it activates.
    pub fn tests_file(&self) -> PathBuf {
        tests_file_for(&self.module)
    }
}

/// `x.wasm` → `x.tests.jsonl`.
pub fn tests_file_for(module: &Path) -> PathBuf {
    module.with_extension("tests.jsonl")
}

/// Per-plugin limits: the plugin's own, else `[plugins.limits]`, else the host's defaults.
pub fn limits(own: &PluginLimitsConfig, defaults: &PluginLimitsConfig) -> Limits {
    let d = Limits::default();
    let pick = |a: Option<u64>, b: Option<u64>| a.or(b);
    Limits {
        fuel: pick(own.fuel, defaults.fuel).unwrap_or(d.fuel),
        deadline_ms: pick(own.deadline_ms, defaults.deadline_ms).unwrap_or(d.deadline_ms),
        memory_bytes: pick(own.memory_mib, defaults.memory_mib)
            .map_or(d.memory_bytes, |m| (m as usize).saturating_mul(1 << 20)),
        kv_quota_bytes: pick(own.kv_quota_kib, defaults.kv_quota_kib)
            .map_or(d.kv_quota_bytes, |k| (k as usize).saturating_mul(1 << 10)),
        host_calls: own
            .host_calls
            .or(defaults.host_calls)
            .unwrap_or(d.host_calls),
        max_failures: own
            .max_failures
            .or(defaults.max_failures)
            .unwrap_or(d.max_failures),
        failure_window_ms: pick(own.failure_window_s, defaults.failure_window_s)
            .map_or(d.failure_window_ms, |s| s.saturating_mul(1000)),
        cpu_ms_per_sec: pick(own.cpu_ms_per_sec, defaults.cpu_ms_per_sec)
            .unwrap_or(d.cpu_ms_per_sec),
        init_fuel: pick(own.init_fuel, defaults.init_fuel).unwrap_or(d.init_fuel),
        init_deadline_ms: pick(own.init_deadline_ms, defaults.init_deadline_ms)
            .unwrap_or(d.init_deadline_ms),
        recycle_after: pick(own.recycle_after, defaults.recycle_after).unwrap_or(d.recycle_after),
        ..d
    }
}

/// The host for this config: trusted keys, signature policy, the compiled-code cache.
pub fn host(cfg: &Config, cache_dir: Option<PathBuf>, cache_key: [u8; 32]) -> anyhow::Result<Host> {
    let mut keys = Vec::new();
    for k in &cfg.plugins.trusted_keys {
        let key = warden_plugin_host::signing::read_pubkey(&resolve_key(&cfg.base_dir, k))
            .map_err(|e| anyhow::anyhow!("plugins.trusted_keys `{k}`: {e}"))?;
        keys.push(key);
    }
    Ok(Host::new(HostOptions {
        cache_dir,
        cache_key,
        trusted_keys: keys,
        require_signature: cfg.plugins.require_signature,
        plugin_dir: Some(cfg.plugin_dir()),
        max_module_bytes: cfg.plugins.max_module_mib.saturating_mul(1 << 20),
    })?)
}

/// A trusted key is a path (relative to the config file) when such a file exists, else base64.
fn resolve_key(base: &Path, k: &str) -> String {
    let p = base.join(k);
    if p.is_file() {
        p.to_string_lossy().into_owned()
    } else {
        k.to_owned()
    }
}

/// A plugin after loading: usable, or the reason its bindings deny.
pub struct LoadedPlugin {
    pub spec: PluginSpec,
    pub result: Result<Plugin, String>,
}

/// Which step refused a plugin (audit detail and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prepare,
    Tests,
    Init,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepare => "signature-or-compile",
            Self::Tests => "tests",
            Self::Init => "init",
        }
    }
}

/// A load error for the audit log, a status reason or a terminal. The host already strips what a
/// plugin says; this also covers compiler and contract messages that may quote the module.
fn load_error(e: &warden_plugin_host::LoadError) -> String {
    warden_core::text::sanitize(&e.to_string(), 2048)
}

/// Verify → compile (via the cache) → validate config → run the plugin's own tests, on a
/// throwaway instance so the tests leave no state behind. A refused cache entry (tampered,
/// forged, of another module or engine) is a security record in `audit` whatever happens next.
pub fn prepare_and_test(
    host: &Host,
    spec: &PluginSpec,
    audit: Option<&AuditSink>,
) -> Result<Prepared, (Stage, String)> {
    let prepared = host
        .prepare(&spec.name, &spec.module)
        .map_err(|e| (Stage::Prepare, load_error(&e)))?;
    if let (Some(audit), Some(why)) = (audit, &prepared.cache_refused) {
        audit.record(
            AuditEntry::new(
                Category::Security,
                "plugin-cache-refused",
                "gateway",
                format!(
                    "compiled-code cache entry for plugin `{}` refused and recompiled: {why}",
                    spec.name
                ),
            )
            .detail(serde_json::json!({
                "plugin": spec.name, "sha256": prepared.sha256_hex(), "result": "recompiled",
            })),
        );
    }
    let tests = spec.tests_file();
    if tests.is_file() {
        let mut probe = host
            .instantiate(
                &prepared,
                &spec.config_json,
                spec.limits.clone(),
                Kv::default(),
            )
            .map_err(|e| (Stage::Init, load_error(&e)))?;
        let cases = testrun::read_cases(&tests, None).map_err(|e| (Stage::Tests, e))?;
        let report = testrun::run(&mut probe, &cases);
        if !report.all_passed() {
            let first = report.cases.iter().find(|c| c.passed == Some(false));
            let missed = first.map_or_else(String::new, |c| {
                let expected =
                    c.expect
                        .as_ref()
                        .map_or_else(String::new, |e| match &e.reason_contains {
                            Some(r) => format!("{} with a reason containing `{r}`", e.verdict),
                            None => e.verdict.clone(),
                        });
                format!(
                    "line {}: expected {expected}, got {} ({})",
                    c.line,
                    c.verdict(),
                    c.reason()
                )
            });
            return Err((
                Stage::Tests,
                format!(
                    "{} of {} cases in {} (the tests of module {}) did not hold; first: {missed}",
                    report.mismatched,
                    cases.len(),
                    tests.display(),
                    spec.module.display(),
                ),
            ));
        }
    }
    Ok(prepared)
}

/// Loads one plugin for activation.
pub fn load(
    host: &Host,
    spec: &PluginSpec,
    audit: Option<&AuditSink>,
) -> Result<(Plugin, Prepared), (Stage, String)> {
    let prepared = prepare_and_test(host, spec, audit)?;
    let plugin = host
        .instantiate(
            &prepared,
            &spec.config_json,
            spec.limits.clone(),
            Kv::default(),
        )
        .map_err(|e| (Stage::Init, load_error(&e)))?;
    Ok((plugin, prepared))
}

/// The specs of every `[[plugins.load]]`.
pub fn specs(cfg: &Config) -> Vec<PluginSpec> {
    let dir = cfg.plugin_dir();
    cfg.plugins
        .load
        .iter()
        .map(|l| PluginSpec::from_config(&dir, l, &cfg.plugins.limits))
        .collect()
}
