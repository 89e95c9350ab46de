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

pub(super) fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
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
