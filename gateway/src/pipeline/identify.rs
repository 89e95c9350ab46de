//! Stage 1, identify: which registry entry is this message about?
//!
//! Uplink: a device never seen before is registered as *pending* (audited) and nothing of it passes
//! until an operator approves it. Downlink: an unknown device is not registered, the command is denied.

use std::sync::Arc;

use warden_core::{Decision, DeviceId};

use crate::registry::{DeviceEntry, DeviceRecord, Registry, RegistryError};

pub struct Identified {
    pub entry: Arc<DeviceEntry>,
    pub record: Arc<DeviceRecord>,
    /// Registered (as pending) by this very message.
    pub new: bool,
}

/// `known` is the registry's entry for `device` if the caller already looked it up.
pub fn uplink(
    registry: &Registry,
    known: Option<Arc<DeviceEntry>>,
    device: &DeviceId,
    default_zone: &str,
) -> Result<Identified, Decision> {
    let (entry, new) = match known.or_else(|| registry.get(device)) {
        Some(e) => (e, false),
        None => registry
            .register_pending(device, None, default_zone, "first seen on uplink")
            .map_err(|e| match e {
                RegistryError::TooManyPending(n) => Decision::deny(
                    "builtin:identify",
                    format!("unknown device and the pending limit ({n}) is reached"),
                )
                .with_cause("pending-limit"),
                RegistryError::DiskLow => Decision::deny(
                    "builtin:identify",
                    format!("unknown device not registered: {}", RegistryError::DiskLow),
                )
                .with_cause("disk-low"),
                other => Decision::deny(
                    "builtin:identify",
                    format!("cannot register unknown device: {other}"),
                )
                .with_cause("not-registered"),
            })
            .map(|e| (e, true))?,
    };
    let record = entry.record();
    Ok(Identified { entry, record, new })
}

pub fn downlink(registry: &Registry, device: &DeviceId) -> Result<Identified, Decision> {
    let entry = registry
        .get(device)
        .ok_or_else(|| Decision::deny("builtin:identify", "unknown device"))?;
    let record = entry.record();
    Ok(Identified {
        entry,
        record,
        new: false,
    })
}
