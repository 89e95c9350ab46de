//! `POST /api/config/reload`: re-read the config and hand the pipeline its new built-in policy,
//! and Home Assistant discovery its new profiles; a bad config is refused and the previous one
//! kept.

use crate::audit::{AuditEntry, Category};
use crate::pipeline::Control;
use crate::pipeline::decide::Policy;

use super::{Shared, controllers, load_config};

/// Rebuilds the built-in policy from the config file and hands it to the pipeline.
pub async fn reload(shared: &Shared, actor: &str) -> anyhow::Result<()> {
    let cfg = load_config(
        shared.config_path.as_deref(),
        shared.demo,
        shared.broker_override.as_deref(),
    );
    match cfg {
        Ok(cfg) => {
            shared
                .registry
                .set_catalogue(crate::registry::Catalogue::from_config(&cfg));
            shared
                .control
                .send(Control::Reload(
                    Policy::from_config(&cfg),
                    controllers(&cfg),
                ))
                .await
                .map_err(|_| anyhow::anyhow!("pipeline is not running"))?;
            let plugins = match &shared.plugin_reloader {
                Some(r) => reload_plugins(r.clone(), &cfg).await,
                None if cfg.plugins.load.is_empty() => String::new(),
                None => "; plugins listed but none loaded at start-up: restart to load them".into(),
            };
            let ha = super::ha::reload(&cfg, &shared.northbound, &shared.registry).await;
            shared.audit.record(AuditEntry::new(
                Category::Operator,
                "config-reload",
                actor,
                format!("profiles, zones, models and controllers reloaded{plugins}{ha}"),
            ));
            Ok(())
        }
        Err(e) => {
            shared.audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "config-reload",
                    actor,
                    format!("reload refused, previous config kept: {e}"),
                )
                .decision("builtin:config", "deny"),
            );
            Err(e)
        }
    }
}

/// Reloads every plugin whose `config`, limits or module changed, off the async runtime (each
/// is verified, tested and instantiated like a file change, and audited as `plugin-reload`).
/// Returns what to add to the config-reload record.
async fn reload_plugins(r: crate::plugins::watch::Reloader, cfg: &crate::config::Config) -> String {
    let (changed, restart) = r.update_specs(crate::plugins::specs(cfg));
    let names: Vec<String> = changed.iter().map(|s| s.name.clone()).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for spec in &changed {
            r.reload(spec, crate::plugins::watch::Why::Config);
        }
    })
    .await;
    let mut s = String::new();
    if !names.is_empty() {
        s.push_str(&format!(
            "; plugins with a changed config: {}",
            names.join(", ")
        ));
    }
    if !restart.is_empty() {
        s.push_str(&format!(
            "; plugins added or removed (applied at the next restart): {}",
            restart.join(", ")
        ));
    }
    s
}
