//! Start-up chores: generated secrets, logging, and provisioning the simulated devices the config
//! marks as provisioned.

use std::path::Path;

use anyhow::Context;
use rand::RngCore;

use crate::config::Config;
use crate::registry::{ImportDevice, Registry};
use crate::secrets::write_private_file;

pub(super) fn random_secret() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Reads a private file, creating it with fresh random content if absent.
pub(super) fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = random_secret();
            write_private_file(path, s.as_bytes())
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(s)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Raises the soft open-file limit to the hard one (a gateway holds many sockets); returns the
/// limit in force, or None when unlimited.
pub(super) fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current != cur.maximum {
        let want = Rlimit {
            current: cur.maximum,
            maximum: cur.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, want) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::debug!(soft = ?now.current, hard = ?now.maximum, "open-file limit");
    now.current
}

/// Log filter: `WARDEN_LOG`, else the conventional `RUST_LOG`, else `info` (same syntax:
/// `info,warden_zigbee=debug`). A filter that does not parse falls back to `info` with a warning.
pub(super) fn init_logging(json: bool) {
    let (filter, bad) = ["WARDEN_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| {
            let v = std::env::var(var).ok()?;
            Some(match tracing_subscriber::EnvFilter::try_new(&v) {
                Ok(f) => (f, None),
                Err(e) => (
                    tracing_subscriber::EnvFilter::new("info"),
                    Some(format!("{var}: {e}")),
                ),
            })
        })
        .unwrap_or_else(|| (tracing_subscriber::EnvFilter::new("info"), None));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
    if let Some(why) = bad {
        tracing::warn!(%why, "log filter not understood; logging at info");
    }
}

/// Provisions `[[sim.devices]]` entries marked `provision = true` that the registry does not hold.
pub(super) fn provision_sim_devices(cfg: &Config, registry: &Registry) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for d in cfg.sim.devices.iter().filter(|d| d.provision) {
        for id in d.ids().into_iter().flatten() {
            if registry.get(&id).is_none() {
                todo.push(ImportDevice {
                    id: id.to_string(),
                    profile: d.profile.clone(),
                    zone: d.zone.clone(),
                    manufacturer: Some("Warden Sim".into()),
                    ..ImportDevice::default()
                });
            }
        }
    }
    if !todo.is_empty() {
        registry.import(&todo, "config:sim", &cfg.registry.default_zone, false)?;
    }
    Ok(())
}
