//! One fuzz input through every parser of untrusted input: the Serial API stream decoder (the
//! input split in two at a point the input chooses), every Serial API function parser on each frame
//! it yields, and on each command payload: the command-class decoder, Supervision, S0
//! decapsulation and the reassembly of sequenced S0 parts, the S2 key exchange parsers and S2
//! decapsulation (singlecast, and multicast with a known MPAN) against a session that expects a
//! SPAN (so frames reach the AES-CCM step) and one that holds none. Used by the cargo-fuzz target
//! in `fuzz/` and, on stable, by `tests/fuzz_parsers.rs`. Nothing here may panic.

use crate::cc;
use crate::frame::{Decoder, Unit};
use crate::func;
use crate::s0;
use crate::s2::kex;
use crate::s2::session::{Class, Sessions};

/// A fixed network key for the fuzz sessions.
pub const FUZZ_KEY: [u8; 16] = [0x42; 16];

/// Runs every parser on `data`.
pub fn one(data: &[u8]) {
    let cut = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut d = Decoder::new();
    let mut units = d.push(a);
    units.extend(d.push(b));
    for u in units {
        if let Unit::Frame(f) = u {
            frame_data(f.func, &f.data);
        }
    }
    // The input also as a frame's data and as a command payload directly, so the deeper parsers
    // see every input, not only those that form a valid frame.
    frame_data(func::APPLICATION_COMMAND_HANDLER, data);
    payload(data);
}

fn frame_data(function: u8, data: &[u8]) {
    let _ = func::parse_version(data);
    let _ = func::parse_memory_id(data);
    let _ = func::parse_capabilities(data);
    let _ = func::parse_init_data(data);
    let _ = func::parse_protocol_info(data);
    let _ = func::parse_application_update(data);
    let _ = func::parse_inclusion_callback(data);
    if let Ok(inc) = func::parse_command_handler(function, data) {
        payload(&inc.payload);
    }
}

fn payload(p: &[u8]) {
    let _ = cc::decode(p);
    let _ = cc::supervision::parse_report(p);
    if let Some((_, inner)) = cc::supervision::parse_get(p) {
        let _ = cc::decode(inner);
    }
    let _ = kex::parse_kex_report(p);
    let _ = kex::parse_kex_set(p);
    let _ = kex::parse_public_key(p);
    let _ = kex::parse_network_key_get(p);
    let _ = kex::parse_transfer_end(p);
    let _ = s0::parse_nonce_report(p);
    if let Ok(e) = s0::parse_encapsulated(p) {
        let k = s0::Keys::new(&FUZZ_KEY);
        if let Ok((part, inner)) = k.open(&e, &[0x11; 8], 6, 1) {
            let _ = cc::decode(&inner);
            let mut r = s0::Reassembly::default();
            let now = std::time::Instant::now();
            let _ = r.accept(6, part, inner.clone(), now);
            if let Ok(Some(whole)) = r.accept(6, part, inner, now) {
                let _ = cc::decode(&whole);
            }
        }
    }
    // the input's bytes as a sequence of S0 parts from a few nodes (first byte: node and part)
    let mut r = s0::Reassembly::default();
    let now = std::time::Instant::now();
    for chunk in p.chunks(7) {
        if let [head, rest @ ..] = chunk {
            let part = s0::Part::from_byte(*head);
            if let Ok(Some(whole)) = r.accept(head >> 6, part, rest.to_vec(), now) {
                let _ = cc::decode(&whole);
            }
        }
    }

    const NODE: u8 = 6;
    // a node Warden has just sent a Nonce Report: a frame carrying a SPAN extension is decrypted
    let mut s = Sessions::new(0xc0ff_ee01, 1);
    for c in Class::ALL {
        s.set_network_key(c, &FUZZ_KEY);
    }
    s.grant(NODE, Class::Unauthenticated);
    let _ = s.nonce_report(NODE);
    if let Ok(o) = s.open(NODE, p) {
        let _ = cc::decode(&o.payload);
    }
    let _ = s.on_nonce_report(NODE, p);
    let _ = s.open(NODE, p);
    // a multicast from a node whose MPAN for groups 0..3 Warden holds
    for g in 0..4 {
        s.store_mpan(NODE, g, [0x24; 16]);
    }
    if let Ok(o) = s.open_multicast(NODE, p) {
        let _ = cc::decode(&o.payload);
    }
    // a node with no session at all
    let mut fresh = Sessions::new(0, 1);
    let _ = fresh.open(NODE, p);
}
