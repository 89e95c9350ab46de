//! `GET /api/catalogue`: what an operator may choose from — the configured profiles (with the
//! points, events and commands each allows and its assurance floor), zones and roles — for the
//! dashboard's approval form and command picker; and the configured plugins and bindings. Read from the config file as `warden reload`
//! reads it, so it shows what the next approval is checked against.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::{S, err};
use crate::registry::Catalogue;
use crate::run::Shared;

/// The catalogue as JSON, from a loaded config.
pub fn to_json(cfg: &crate::config::Config) -> serde_json::Value {
    let names = Catalogue::from_config(cfg);
    let profiles: serde_json::Map<String, serde_json::Value> = cfg
        .profiles
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                serde_json::json!({
                    "points": p.points,
                    "events": p.events,
                    "commands": p.commands,
                    "min_assurance": p.min_assurance.as_str(),
                }),
            )
        })
        .collect();
    // plugins as configured: module file, whether a signature is required, the WASI grants and
    // the bindings in chain order (never the plugin's own config, which may hold secrets)
    let plugins: Vec<serde_json::Value> = cfg
        .plugins
        .load
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.name,
                "module": l.module.as_ref().map(|m| m.display().to_string()),
                "wasi": l.wasi,
            })
        })
        .collect();
    let bindings: Vec<serde_json::Value> = cfg
        .plugins
        .bind
        .iter()
        .map(|b| {
            serde_json::json!({
                "plugin": b.plugin,
                "zones": b.zones,
                "roles": b.roles,
                "protocols": b.protocols,
                "devices": b.devices,
                "direction": b.direction,
            })
        })
        .collect();
    serde_json::json!({
        "profiles": profiles,
        "zones": names.zones,
        "roles": names.roles,
        // a device silent this long is published offline (the devices page shows the same rule)
        "offline_after_s": cfg.registry.offline_after_s,
        "plugins": {
            "require_signature": cfg.plugins.require_signature,
            "load": plugins,
            "bind": bindings,
        },
    })
}

fn load(s: &Shared) -> anyhow::Result<crate::config::Config> {
    crate::run::load_config(
        s.config_path.as_deref(),
        s.demo,
        s.broker_override.as_deref(),
    )
}

pub async fn get(State(s): S) -> Response {
    let s2 = s.clone();
    match tokio::task::spawn_blocking(move || load(&s2)).await {
        Ok(Ok(cfg)) => axum::Json(to_json(&cfg)).into_response(),
        Ok(Err(e)) => err(
            StatusCode::CONFLICT,
            format!("the config file does not load now: {e:#}"),
        ),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn profiles_carry_their_commands_and_floor() {
        let cfg: crate::config::Config = toml::from_str(
            "[zones.hall]\n[profiles.sw]\npoints = [\"on\"]\ncommands = [\"turn_on\", \"turn_off\"]\nmin_assurance = \"channel\"\n",
        )
        .unwrap();
        let v = to_json(&cfg);
        assert_eq!(
            v["profiles"]["sw"]["commands"],
            serde_json::json!(["turn_on", "turn_off"])
        );
        assert_eq!(v["profiles"]["sw"]["min_assurance"], "channel");
        assert!(v["zones"].as_array().unwrap().iter().any(|z| z == "hall"));
    }
}
