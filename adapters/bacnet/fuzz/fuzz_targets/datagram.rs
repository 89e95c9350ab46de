//! A UDP datagram as the receive loop sees it: BVLC, NPDU, APDU, then every service decoder
//! Warden runs on what arrives — and the same bytes as a BACnet/SC WebSocket message (BVLC-SC,
//! then the Encapsulated-NPDU's layers). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_bacnet::{apdu, bvlc, bvlc_sc, npdu, services};

fuzz_target!(|data: &[u8]| {
    warden_bacnet::decode_everything(data);
    warden_bacnet::decode_everything_sc(data);
    let _ = bvlc_sc::decode(data);
    // the service decoders on raw bytes too, so the fuzzer need not find valid headers first
    let _ = services::decode_i_am(data);
    let _ = services::decode_cov_notification(data);
    let _ = services::decode_read_property_multiple_ack(data);
    let _ = services::decode_read_property_ack(data);
    let _ = services::decode_write_property(data);
    let _ = services::decode_who_has(data);
    let _ = bvlc::decode(data);
    let _ = npdu::decode(data);
    let _ = apdu::decode(data);
});
