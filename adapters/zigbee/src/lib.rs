//! Warden's Zigbee adapter: a Z-Stack (ZNP) or EmberZNet (EZSP over ASH) coordinator on a USB
//! serial port forms the network; Warden lets in only devices an operator expects, interviews
//! them, turns their ZCL reports into points and sends them the commands the gateway allowed.
//!
//! - [`config`]: the `[adapters.zigbee]` section.
//! - [`coordinator`]: what the adapter needs from a dongle, whichever stack it runs.
//! - [`znp`], [`ezsp`]: the two stacks' codecs and drivers; [`install_code`]: install-code keys.
//! - [`dongle`]: opening the port, telling the stacks apart.
//! - [`network`]: the persisted network (PAN, channel, sealed key).
//! - [`join`]: the zero-trust join gate; [`interview`]: learning what joined.
//! - [`zcl`]: the Zigbee Cluster Library codec; [`convert`]: ZCL ↔ Warden's messages.
//! - [`devices`]: the adapter's durable device table; [`runtime`]: the run loop.

pub mod config;
pub mod convert;
pub mod coordinator;
pub mod devices;
pub mod dongle;
pub mod ezsp;
pub mod install_code;
pub mod interview;
pub mod join;
pub mod network;
pub mod runtime;
pub mod zcl;
pub mod znp;

use warden_core::{Adapter, AdapterContext, AdapterError, BoxFuture, OperationKind};

pub use config::Config;

pub const PROTOCOL: &str = "zigbee";

/// The adapter built from config; it does no I/O until [`Adapter::run`].
pub struct ZigbeeAdapter {
    config: Config,
}

impl ZigbeeAdapter {
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// The gateway's constructor for `[adapters.zigbee]`.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    Ok(Box::new(ZigbeeAdapter::new(config::parse(section)?)?))
}

impl Adapter for ZigbeeAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn operations(&self) -> &'static [OperationKind] {
        &[
            OperationKind::Join,
            OperationKind::Close,
            OperationKind::Remove,
        ]
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
