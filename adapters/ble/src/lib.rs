//! Warden's BLE adapter: BlueZ over D-Bus through btleplug, BTHome v2 adverts turned into messages,
//! GATT writes as commands.
//!
//! - [`bthome`]: BTHome v2 service data → typed objects (every measurement, binary sensor and
//!   event object id, with factor and unit); [`crypto`]: encrypted BTHome (AES-CCM, 4-byte MIC).
//! - [`engine`]: one advert → events: announce once, bind key, MIC, the per-device counter kept in
//!   the adapter's sealed state store (replayed and restarted-from-0 counters refused),
//!   downgrade and spoof checks, deduplication, bounded tracking under a flood.
//! - [`config`]: the `[adapters.ble]` section; [`runtime`]: the btleplug loop (adapter selection,
//!   continuous scanning, link health, scan operations, serialised GATT commands);
//!   [`monitor`]: passive scanning through BlueZ's advertisement monitor API.
//!
//! Identity is the advertiser's MAC (`ble:5448e68f80a5`). Random resolvable and non-resolvable
//! addresses change over time: a device using one is announced as "not a stable identity", and
//! only an encrypted advert (whose key binds it) should be trusted from such a device.

pub mod bthome;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod fuzzing;
pub mod monitor;
pub mod runtime;

use warden_core::{Adapter, AdapterContext, AdapterError, BoxFuture, OperationKind};

pub use config::Config;

pub const PROTOCOL: &str = "ble";

/// The adapter built from config; it does no I/O until [`Adapter::run`].
pub struct BleAdapter {
    config: Config,
}

impl BleAdapter {
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// The gateway's constructor for `[adapters.ble]`.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    Ok(Box::new(BleAdapter::new(config::parse(section)?)?))
}

impl Adapter for BleAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn operations(&self) -> &'static [OperationKind] {
        &[OperationKind::Scan]
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(async move {
            let rt = runtime::Runtime::new(self.config, &ctx);
            let AdapterContext {
                operations,
                downlinks,
                shutdown,
                ..
            } = ctx;
            rt.run(operations, downlinks, shutdown).await
        })
    }
}
