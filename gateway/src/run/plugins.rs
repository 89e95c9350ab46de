//! Plugin start-up for `warden run` and `warden check-config`: load every configured plugin the
//! same way, build the chain the decide stage runs, and start the hot-reload watcher.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Control, Pipeline};

/// Loads the configured plugins into the pipeline's chain and starts the hot-reload watcher.
/// A plugin that cannot load does not stop the gateway: its bindings deny (fail closed), and the
/// audit log and `warden_plugin_active` say why.
pub(super) fn start_plugins(
    cfg: &Config,
    data_dir: &Path,
    cache_key: [u8; 32],
    audit: &AuditSink,
    metrics: &Arc<Metrics>,
    control: &mpsc::Sender<Control>,
    pipeline: &mut Pipeline,
) -> anyhow::Result<PluginRuntime> {
    use crate::metrics::PluginOutcomeLabels;
    use crate::plugins::{self, LoadedPlugin};
    let p = &cfg.plugins;
    if p.load.is_empty() && p.record.is_none() {
        return Ok(PluginRuntime::default());
    }
    let started = std::time::Instant::now();
    let cache_dir = p
        .cache_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("plugin-cache"));
    let host = plugins::host(cfg, Some(cache_dir), cache_key)?;
    let specs = plugins::specs(cfg);
    let status = plugins::status::PluginStatus::default();
    let mut loaded = Vec::new();
    for spec in &specs {
        let (result, outcome) = match plugins::load(&host, spec, Some(audit)) {
            Ok((plugin, prepared)) => {
                let sha = hex::encode(prepared.sha256);
                status.loaded(spec, &prepared, warden_core::now_ms());
                tracing::info!(plugin = %spec.name, sha256 = %sha, signer = ?prepared.signer,
                    contract = prepared.contract, cache = ?prepared.cache, "plugin loaded");
                audit.record(
                    AuditEntry::new(
                        Category::System,
                        "plugin-load",
                        "gateway",
                        format!("plugin `{}` loaded", spec.name),
                    )
                    .detail(serde_json::json!({
                        "plugin": spec.name, "sha256": sha, "signer": prepared.signer,
                        "contract": prepared.contract, "result": "ok",
                    })),
                );
                (Ok(plugin), "ok")
            }
            Err((stage, why)) => {
                status.refused(spec, &format!("refused at {}: {why}", stage.as_str()));
                tracing::error!(plugin = %spec.name, stage = stage.as_str(), error = %why,
                    "plugin refused; its bindings deny");
                let category = if stage == plugins::Stage::Prepare {
                    Category::Security
                } else {
                    Category::System
                };
                audit.record(
                    AuditEntry::new(
                        category,
                        "plugin-load",
                        "gateway",
                        format!(
                            "plugin `{}` refused at {}: {why}",
                            spec.name,
                            stage.as_str()
                        ),
                    )
                    .decision("builtin:plugins", "deny")
                    .detail(serde_json::json!({ "plugin": spec.name, "result": stage.as_str() })),
                );
                (Err(why), stage.as_str())
            }
        };
        metrics
            .plugin_loads
            .get_or_create(&PluginOutcomeLabels {
                plugin: spec.name.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        loaded.push(LoadedPlugin {
            spec: spec.clone(),
            result,
        });
    }
    tracing::info!(
        plugins = specs.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "plugins loaded"
    );
    let recorder = match &p.record {
        Some(path) => Some(
            plugins::recorder::Recorder::open(
                &data_dir.join(path),
                p.record_max_mb.saturating_mul(1 << 20),
            )
            .with_context(|| format!("plugins.record: cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let chain =
        plugins::chain::PluginChain::new(loaded, &p.bind, audit.clone(), metrics.clone(), recorder)
            .with_status(status.clone());
    pipeline.deciders.push(Box::new(chain));
    if specs.is_empty() {
        return Ok(PluginRuntime::default());
    }
    let reloader = plugins::watch::Reloader::new(
        host,
        specs,
        control.clone(),
        audit.clone(),
        metrics.clone(),
        status.clone(),
    );
    let watcher = if p.watch {
        Some(plugins::watch::spawn(
            reloader.clone(),
            std::time::Duration::from_millis(p.watch_interval_ms),
        )?)
    } else {
        None
    };
    Ok(PluginRuntime {
        reloader: Some(reloader),
        watcher,
        status,
    })
}

/// What runs the plugins beside the pipeline: the reloader (for `warden reload`) and the file
/// watcher.
#[derive(Default)]
pub(super) struct PluginRuntime {
    pub reloader: Option<crate::plugins::watch::Reloader>,
    pub watcher: Option<crate::plugins::watch::Watcher>,
    /// What each plugin runs (version, signer, state) for the API.
    pub status: crate::plugins::status::PluginStatus,
}

/// `warden check-config`: the file, and every plugin it loads (signature, compile, config,
/// the plugin's own tests).
pub fn check_config(path: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    if !cfg.plugins.load.is_empty() {
        // no cache: a check compiles from the module itself and leaves nothing behind
        let _ = data_dir;
        let host = crate::plugins::host(&cfg, None, [0; 32])?;
        let mut bad = 0;
        for spec in crate::plugins::specs(&cfg) {
            match crate::plugins::load(&host, &spec, None) {
                Ok(_) => println!("plugin `{}`: ok", spec.name),
                Err((stage, why)) => {
                    bad += 1;
                    println!(
                        "plugin `{}`: refused at {}: {why}",
                        spec.name,
                        stage.as_str()
                    );
                }
            }
        }
        if bad > 0 {
            anyhow::bail!("{bad} plugin(s) would not load");
        }
    }
    println!("{}: ok", path.display());
    Ok(())
}
