//! Warden's BACnet adapter: BACnet/IP (Annex J) over one UDP port and BACnet Secure Connect
//! (Annex AB) as a node of a hub, with its own nom codecs.
//!
//! - [`bvlc`], [`bvlc_sc`], [`npdu`], [`apdu`], [`tag`]: the wire layers, each decoder total
//!   (typed [`error::DecodeError`], never a panic) and each encoder its exact inverse.
//! - [`services`]: Who-Is/I-Am, Who-Has/I-Have, ReadProperty(-Multiple), WriteProperty,
//!   SubscribeCOV and COV notifications.
//! - [`transport`]: the network layer over both datalinks: the UDP socket, invoke ids, APDU
//!   timeouts and retries, segment reassembly; [`sc`]: the BACnet/SC hub connection.
//! - [`points`]: objects ↔ points; the checks a write passes before it is sent.
//! - [`config`]: the `[adapters.bacnet]` section; [`runtime`]: discovery, per-device tasks.
//!
//! Not yet: Warden as a BACnet/SC hub or with direct connections, segmented *requests*, routing
//! for devices behind MS/TP routers beyond addressing them through the router.

pub mod apdu;
pub mod bvlc;
pub mod bvlc_sc;
pub mod config;
pub mod error;
pub mod npdu;
pub mod points;
pub mod runtime;
pub mod sc;
pub mod services;
pub mod tag;
pub mod testing;
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

/// Runs every decoder the receive path would run on one datagram and throws the results away:
/// the fuzz targets' and the never-panic property tests' entry point.
pub fn decode_everything(datagram: &[u8]) {
    let Ok(b) = bvlc::decode(datagram) else {
        return;
    };
    if let Some(n) = b.npdu() {
        decode_npdu_everything(n);
    }
}

/// As [`decode_everything`] for one BACnet/SC WebSocket message: BVLC-SC, then for an
/// Encapsulated-NPDU everything below it.
pub fn decode_everything_sc(message: &[u8]) {
    if let Ok(bvlc_sc::Message {
        body: bvlc_sc::Body::EncapsulatedNpdu(n),
        ..
    }) = bvlc_sc::decode(message)
    {
        decode_npdu_everything(n);
    }
}

fn decode_npdu_everything(n: &[u8]) {
    let Ok(n) = npdu::decode(n) else {
        return;
    };
    let npdu::Body::Apdu(a) = n.body else {
        return;
    };
    let data = match apdu::decode(a) {
        Ok(apdu::Apdu::Confirmed { data, .. })
        | Ok(apdu::Apdu::Unconfirmed { data, .. })
        | Ok(apdu::Apdu::ComplexAck { data, .. }) => data,
        _ => return,
    };
    let _ = services::decode_i_am(data);
    let _ = services::decode_i_have(data);
    let _ = services::decode_who_is(data);
    let _ = services::decode_who_has(data);
    let _ = services::decode_cov_notification(data);
    let _ = services::decode_read_property_ack(data);
    let _ = services::decode_read_property_multiple_ack(data);
    let _ = services::decode_write_property(data);
    let _ = services::decode_read_property_multiple(data);
    let _ = services::decode_read_property(data);
    let _ = services::decode_subscribe_cov(data);
    let _ = tag::data(data, None);
}

#[cfg(test)]
mod props {
    #![allow(clippy::indexing_slicing)]
    use proptest::prelude::*;

    proptest! {
        /// Random bodies behind valid BVLC/NPDU/APDU headers reach every service decoder.
        #[test]
        fn whole_datagrams_never_panic(
            function in prop_oneof![Just(0x0au8), Just(0x0b), Just(0x04)],
            pdu in 0u8..8,
            service in prop_oneof![Just(0u8), Just(1), Just(2), Just(12), Just(14), Just(15)],
            body in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut apdu = match pdu {
                0 => vec![0x00, 0x05, 0x01, service],
                1 => vec![0x10, service],
                3 => vec![0x30, 0x01, service],
                p => vec![p << 4, 0x01, service],
            };
            apdu.extend_from_slice(&body);
            let mut n = vec![0x01, 0x00];
            n.extend_from_slice(&apdu);
            let mut d = vec![0x81, function, 0, 0];
            if function == 0x04 {
                d.extend_from_slice(&[127, 0, 0, 2, 0xba, 0xc0]);
            }
            d.extend_from_slice(&n);
            let len = d.len() as u16;
            d[2..4].copy_from_slice(&len.to_be_bytes());
            super::decode_everything(&d);
            // the same NPDU inside a BVLC-SC Encapsulated-NPDU with both VMACs
            let mut sc = vec![0x01, 0x0c, 0, 0, 2, 0, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            sc.extend_from_slice(&n);
            super::decode_everything_sc(&sc);
        }
    }
}
