//! Warden's BACnet adapter: BACnet/IP (Annex J) over one UDP port, with its own nom codecs.
//!
//! - [`bvlc`], [`npdu`], [`apdu`], [`tag`]: the wire layers, each decoder total (typed
//!   [`error::DecodeError`], never a panic) and each encoder its exact inverse.
//! - [`services`]: Who-Is/I-Am, Who-Has/I-Have, ReadProperty(-Multiple), WriteProperty,
//!   SubscribeCOV and COV notifications.
//! - [`transport`]: the socket, invoke ids, APDU timeouts and retries, segment reassembly.
//! - [`points`]: objects ↔ points; the checks a write passes before it is sent.
//! - [`config`]: the `[adapters.bacnet]` section; [`runtime`]: discovery, per-device tasks.
//!
//! Not yet: BACnet Secure Connect (Annex AB), segmented *requests*, routing for devices behind
//! MS/TP routers beyond addressing them through the router.

pub mod apdu;
pub mod bvlc;
pub mod config;
pub mod error;
pub mod npdu;
pub mod points;
pub mod runtime;
pub mod services;
pub mod tag;
pub mod transport;

use warden_core::{Adapter, AdapterContext, AdapterError, BoxFuture, OperationKind};

pub use config::Config;

pub const PROTOCOL: &str = "bacnet";

/// The adapter built from config; it does no I/O until [`Adapter::run`].
pub struct BacnetAdapter {
    config: Config,
}

impl BacnetAdapter {
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// The gateway's constructor for `[adapters.bacnet]`.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    Ok(Box::new(BacnetAdapter::new(config::parse(section)?)?))
}

impl Adapter for BacnetAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn operations(&self) -> &'static [OperationKind] {
        &[OperationKind::Scan]
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(runtime::run(self.config, ctx))
    }
}
