//! `POST /api/reload`: re-read the config and hand the pipeline its new built-in policy; a bad
//! config is refused and the previous one kept.

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
            shared.audit.record(AuditEntry::new(
                Category::Operator,
                "config-reload",
                actor,
                "profiles, zones, models and controllers reloaded",
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
