//! Hot reload: polls each plugin's module, signature and test file; when they change and then
//! hold still for one interval, the new version is verified, compiled, its config validated and
//! its own tests run here, off the pipeline thread. Only then is it handed to the pipeline,
//! which swaps it in atomically between two messages. On any failure the running version stays
//! and the audit log says why.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use warden_plugin_host::Host;

use super::chain::PluginUpdate;
use super::{PluginSpec, Stage, prepare_and_test};
use crate::audit::{AuditEntry, AuditSink, Category};
use crate::metrics::{Metrics, PluginOutcomeLabels};
use crate::pipeline::Control;

/// What identifies a version on disk without reading it: size and mtime of the three files.
type Fingerprint = [(u64, Option<SystemTime>); 3];

fn fingerprint(spec: &PluginSpec) -> Fingerprint {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((u64::MAX, None))
    };
    [
        one(&spec.module),
        one(&warden_plugin_host::signing::sig_path(&spec.module)),
        one(&spec.tests_file()),
    ]
}

pub struct Watcher {
    pub stop: Arc<AtomicBool>,
    pub handle: std::thread::JoinHandle<()>,
}

/// Why a plugin is reloaded (audit detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its module, signature or tests changed on disk.
    Files,
    /// Its `config` or limits changed in the gateway's config (`warden reload`).
    Config,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::Config => "config",
        }
    }
}

/// Reloads plugins off the pipeline thread (the watcher's, or a blocking task of `warden
/// reload`): verify → compile (cache) → tests → instantiate, then hand the pipeline the result.
/// Holds the current specs, which a config reload replaces.
#[derive(Clone)]
pub struct Reloader {
    host: Host,
    specs: Arc<Mutex<Vec<PluginSpec>>>,
    control: mpsc::Sender<Control>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    status: super::status::PluginStatus,
}

impl Reloader {
    pub fn new(
        host: Host,
        specs: Vec<PluginSpec>,
        control: mpsc::Sender<Control>,
        audit: AuditSink,
        metrics: Arc<Metrics>,
        status: super::status::PluginStatus,
    ) -> Self {
        Self {
            host,
            specs: Arc::new(Mutex::new(specs)),
            control,
            audit,
            metrics,
            status,
        }
    }

    pub fn specs(&self) -> Vec<PluginSpec> {
        self.specs.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Takes the specs of a reloaded config. Returns the plugins whose config, limits or module
    /// changed (to reload), and the names added or removed (which need a restart: bindings
    /// are compiled at start-up). Unchanged plugins are left alone.
    pub fn update_specs(&self, new: Vec<PluginSpec>) -> (Vec<PluginSpec>, Vec<String>) {
        let Ok(mut cur) = self.specs.lock() else {
            return (Vec::new(), Vec::new());
        };
        let mut changed = Vec::new();
        let mut restart = Vec::new();
        for n in &new {
            match cur.iter_mut().find(|c| c.name == n.name) {
                Some(c) => {
                    if c.config_json != n.config_json
                        || c.limits != n.limits
                        || c.module != n.module
                    {
                        *c = n.clone();
                        changed.push(n.clone());
                    }
                }
                None => restart.push(n.name.clone()),
            }
        }
        restart.extend(
            cur.iter()
                .filter(|c| !new.iter().any(|n| n.name == c.name))
                .map(|c| c.name.clone()),
        );
        (changed, restart)
    }

    /// Reloads one plugin; on success the pipeline swaps it in, on failure the running version
    /// stays and the audit log says why.
    pub fn reload(&self, spec: &PluginSpec, why: Why) {
        let (audit, metrics) = (&self.audit, &*self.metrics);
        let prepared = match prepare_and_test(&self.host, spec, Some(audit)) {
            Ok(p) => p,
            Err((stage, e)) => return self.refused(spec, stage, &e, why),
        };
        // instantiated here, off the message thread; the pipeline hands it the running
        // version's key-value state when it swaps it in
        let plugin = match self.host.instantiate(
            &prepared,
            &spec.config_json,
            spec.limits.clone(),
            warden_plugin_host::Kv::default(),
        ) {
            Ok(p) => p,
            Err(e) => {
                let e = super::load_error(&e);
                return self.refused(spec, Stage::Init, &e, why);
            }
        };
        tracing::info!(plugin = %spec.name, why = why.as_str(), "plugin verified, compiled, tested and instantiated for reload");
        count(metrics, spec, "ok");
        let u = PluginUpdate {
            spec: spec.clone(),
            prepared,
            plugin,
            why,
        };
        if self
            .control
            .blocking_send(Control::Plugin(Box::new(u)))
            .is_err()
        {
            tracing::warn!("pipeline gone; plugin update dropped");
        }
    }

    /// A reload refused: counted, logged, audited and shown on the plugins page.
    fn refused(&self, spec: &PluginSpec, stage: Stage, error: &str, why: Why) {
        self.status.reload_refused(
            spec,
            &format!("refused at {}: {error}", stage.as_str()),
            warden_core::now_ms(),
        );
        refused(spec, stage, error, why, &self.audit, &self.metrics);
    }
}

/// Polls each plugin's files; a change that has held still for one interval is reloaded.
pub fn spawn(reloader: Reloader, interval: Duration) -> std::io::Result<Watcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            let mut seen: HashMap<String, Fingerprint> = reloader
                .specs()
                .iter()
                .map(|s| (s.name.clone(), fingerprint(s)))
                .collect();
            let mut candidate: HashMap<String, Fingerprint> = HashMap::new();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                for spec in &reloader.specs() {
                    let now = fingerprint(spec);
                    let Some(before) = seen.get(&spec.name) else {
                        // a module path changed by a config reload (reloaded there)
                        seen.insert(spec.name.clone(), now);
                        continue;
                    };
                    if *before == now {
                        candidate.remove(&spec.name);
                        continue;
                    }
                    // changed: act once it has held still for one interval
                    if candidate.get(&spec.name) != Some(&now) {
                        candidate.insert(spec.name.clone(), now);
                        continue;
                    }
                    candidate.remove(&spec.name);
                    seen.insert(spec.name.clone(), now);
                    reloader.reload(spec, Why::Files);
                }
            }
        })?;
    Ok(Watcher { stop, handle })
}

fn count(metrics: &Metrics, spec: &PluginSpec, outcome: &str) {
    metrics
        .plugin_loads
        .get_or_create(&PluginOutcomeLabels {
            plugin: spec.name.clone(),
            outcome: outcome.to_owned(),
        })
        .inc();
}

/// A reload refused at `stage`: counted, logged and audited; the running version stays.
fn refused(
    spec: &PluginSpec,
    stage: Stage,
    error: &str,
    why: Why,
    audit: &AuditSink,
    metrics: &Metrics,
) {
    count(metrics, spec, stage.as_str());
    tracing::warn!(plugin = %spec.name, stage = stage.as_str(), error = %error, why = why.as_str(),
        "plugin reload refused; the running version stays");
    let category = if stage == Stage::Prepare {
        Category::Security
    } else {
        Category::System
    };
    audit.record(
        AuditEntry::new(
            category,
            "plugin-reload",
            "gateway",
            format!(
                "reload of `{}` ({} changed) refused at {}, last-known-good kept: {error}",
                spec.name,
                why.as_str(),
                stage.as_str()
            ),
        )
        .decision("builtin:plugins", "deny")
        .detail(serde_json::json!({
            "plugin": spec.name, "result": stage.as_str(), "changed": why.as_str(),
        })),
    );
}
