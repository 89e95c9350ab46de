//! Warden's Z-Wave adapter: a Serial API controller (a USB stick, or a Serial API bridged over
//! TCP) carries the radio; Warden runs the host side — link layer, inclusion, interviews and
//! command classes — and turns node reports into messages.
//!
//! - [`frame`]: the Serial API's SOF/ACK/NAK/CAN framing; [`link`]: requests, responses,
//!   callbacks, retransmission and deadlines over one byte stream.
//! - [`func`]: the Serial API functions Warden uses; [`cc`]: command classes ↔ points/commands.
//! - [`config`]: the `[adapters.zwave]` section; [`nodes`]: the durable node table;
//!   [`runtime`]: the run loop (start-up, inclusion/exclusion, interviews, downlinks).
//!
//! - [`s2`]: Security 2 (key exchange, sessions, keys); [`s0`]: legacy Security 0; [`flood`]: the
//!   per-node budget of answers a node can draw; [`fuzzing`]: the fuzz target's body.
//!
//! Not yet: SmartStart, multi-channel endpoints, MPAN (S2 multicast).

pub mod cc;
pub mod config;
pub mod flood;
pub mod frame;
pub mod func;
pub mod fuzzing;
pub mod link;
pub mod nodes;
pub mod runtime;
pub mod s0;
pub mod s2;

use warden_core::{Adapter, AdapterContext, AdapterError, BoxFuture, OperationKind};

pub use config::Config;

pub const PROTOCOL: &str = "zwave";

/// The adapter built from config; it does no I/O until [`Adapter::run`].
pub struct ZwaveAdapter {
    config: Config,
}

impl ZwaveAdapter {
    pub fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(Self { config })
    }
}

/// The gateway's constructor for `[adapters.zwave]`.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    Ok(Box::new(ZwaveAdapter::new(config::parse(section)?)?))
}

impl Adapter for ZwaveAdapter {
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
