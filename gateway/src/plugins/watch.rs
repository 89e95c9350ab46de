//! Hot reload: polls each plugin's module, signature and test file; when they change and then
//! hold still for one interval, the new version is verified, compiled, its config validated and
//! its own tests run here, off the pipeline thread. Only then is it handed to the pipeline,
//! which swaps it in atomically between two messages. On any failure the running version stays
//! and the audit log says why.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

pub fn spawn(
    host: Host,
    specs: Vec<PluginSpec>,
    interval: Duration,
    control: mpsc::Sender<Control>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
) -> std::io::Result<Watcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            let mut seen: HashMap<String, Fingerprint> = specs
                .iter()
                .map(|s| (s.name.clone(), fingerprint(s)))
                .collect();
            let mut candidate: HashMap<String, Fingerprint> = HashMap::new();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                for spec in &specs {
                    let now = fingerprint(spec);
                    if seen.get(&spec.name) == Some(&now) {
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
                    reload(&host, spec, &control, &audit, &metrics);
                }
            }
        })?;
    Ok(Watcher { stop, handle })
}

fn reload(
    host: &Host,
    spec: &PluginSpec,
    control: &mpsc::Sender<Control>,
    audit: &AuditSink,
    metrics: &Metrics,
) {
    let prepared = match prepare_and_test(host, spec, Some(audit)) {
        Ok(p) => p,
        Err((stage, why)) => return refused(spec, stage, &why, audit, metrics),
    };
    // instantiated here, off the message thread; the pipeline hands it the running version's
    // key-value state when it swaps it in
    let plugin = match host.instantiate(
        &prepared,
        &spec.config_json,
        spec.limits.clone(),
        warden_plugin_host::Kv::default(),
    ) {
        Ok(p) => p,
        Err(e) => return refused(spec, Stage::Init, &super::load_error(&e), audit, metrics),
    };
    tracing::info!(plugin = %spec.name, "plugin changed on disk: verified, compiled, tested and instantiated");
    count(metrics, spec, "ok");
    let u = PluginUpdate {
        spec: spec.clone(),
        prepared,
        plugin,
    };
    if control.blocking_send(Control::Plugin(Box::new(u))).is_err() {
        tracing::warn!("pipeline gone; plugin update dropped");
    }
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
fn refused(spec: &PluginSpec, stage: Stage, why: &str, audit: &AuditSink, metrics: &Metrics) {
    count(metrics, spec, stage.as_str());
    tracing::warn!(plugin = %spec.name, stage = stage.as_str(), error = %why,
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
                "reload of `{}` refused at {}, last-known-good kept: {why}",
                spec.name,
                stage.as_str()
            ),
        )
        .decision("builtin:plugins", "deny")
        .detail(serde_json::json!({ "plugin": spec.name, "result": stage.as_str() })),
    );
}
