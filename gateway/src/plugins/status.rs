//! What the running gateway knows about each configured plugin, for `GET /api/plugins` and the
//! dashboard's plugins page: the version loaded (module SHA-256 and contract), who signed it, when
//! it was loaded and how often, and whether it is refused or disabled and why. Written only when
//! a plugin loads, reloads, is refused or is disabled by its breaker — never per message — and
//! read by the API. Plugins have no version of their own in the contract: the module's SHA-256 is
//! what identifies the version running.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use warden_plugin_host::Prepared;

use super::PluginSpec;

/// One plugin as the host runs it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginState {
    pub name: String,
    /// The module file of the version running (or that was refused).
    pub module: String,
    /// `active`, `refused` (never loaded: its bindings deny) or `disabled` (by its breaker).
    pub state: &'static str,
    /// Why it is refused or disabled.
    pub reason: Option<String>,
    /// SHA-256 of the module running, hex.
    pub sha256: Option<String>,
    /// The plugin contract it was built against (`0.1.0`, `0.2.0`, …).
    pub contract: Option<&'static str>,
    /// `verified` (then `signer` is the key id) or `unsigned` (signatures not required).
    pub signature: Option<&'static str>,
    pub signer: Option<String>,
    /// When the running version was loaded (ms since the Unix epoch).
    pub loaded_ms: Option<u64>,
    /// Successful loads since start, the first included (so reloads are `loads - 1`).
    pub loads: u64,
    /// The last reload refused (the running version stayed), with when.
    pub last_refused: Option<String>,
    pub last_refused_ms: Option<u64>,
}

/// Shared between the loader, the reloader, the chain (pipeline thread) and the API.
#[derive(Clone, Default)]
pub struct PluginStatus(Arc<Mutex<Vec<PluginState>>>);

impl PluginStatus {
    /// Every configured plugin, in config order.
    pub fn list(&self) -> Vec<PluginState> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn with(&self, spec: &PluginSpec, f: impl FnOnce(&mut PluginState)) {
        let Ok(mut v) = self.0.lock() else { return };
        let i = match v.iter().position(|p| p.name == spec.name) {
            Some(i) => i,
            None => {
                v.push(PluginState {
                    name: spec.name.clone(),
                    module: spec.module.display().to_string(),
                    state: "refused",
                    reason: None,
                    sha256: None,
                    contract: None,
                    signature: None,
                    signer: None,
                    loaded_ms: None,
                    loads: 0,
                    last_refused: None,
                    last_refused_ms: None,
                });
                v.len() - 1
            }
        };
        if let Some(p) = v.get_mut(i) {
            f(p);
        }
    }

    /// A version verified, compiled, tested and running (at start or swapped in on reload).
    pub fn loaded(&self, spec: &PluginSpec, prepared: &Prepared, now_ms: u64) {
        self.with(spec, |p| {
            p.module = spec.module.display().to_string();
            p.state = "active";
            p.reason = None;
            p.sha256 = Some(prepared.sha256_hex());
            p.contract = Some(prepared.contract);
            p.signature = Some(if prepared.signer.is_some() {
                "verified"
            } else {
                "unsigned"
            });
            p.signer.clone_from(&prepared.signer);
            p.loaded_ms = Some(now_ms);
            p.loads = p.loads.saturating_add(1);
        });
    }

    /// Refused at start: it never ran, its bindings deny.
    pub fn refused(&self, spec: &PluginSpec, why: &str) {
        self.with(spec, |p| {
            p.module = spec.module.display().to_string();
            p.state = "refused";
            p.reason = Some(why.to_owned());
        });
    }

    /// A reload refused: the running version (if any) stays.
    pub fn reload_refused(&self, spec: &PluginSpec, why: &str, now_ms: u64) {
        self.with(spec, |p| {
            p.last_refused = Some(why.to_owned());
            p.last_refused_ms = Some(now_ms);
        });
    }

    /// Disabled by its breaker after repeated failures: its bindings deny until a fixed version
    /// is loaded.
    pub fn disabled(&self, name: &str, why: &str) {
        let Ok(mut v) = self.0.lock() else { return };
        if let Some(p) = v.iter_mut().find(|p| p.name == name) {
            p.state = "disabled";
            p.reason = Some(why.to_owned());
        }
    }

    /// As JSON for the API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "plugins": self.list() })
    }
}
