//! `cargo bench -p warden-zwave --bench s2`: S2-encapsulated frames per second the host decrypts
//! and normalises on one core: 100 nodes, each with an established S2 Unauthenticated session
//! (the first frame of each carries the SPAN extension), each sending multilevel sensor reports;
//! every frame goes through `Sessions::open` (SPAN step, AES-CCM, replay window), `cc::decode`
//! and into a `Message`. Frames are sealed before the clock starts.
//!
//! Prints a table and one JSON line. `WARDEN_BENCH_QUICK=1`: 10k frames (smoke test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use warden_core::{Assurance, Message};
use warden_zwave::cc::{self, Report};
use warden_zwave::nodes;
use warden_zwave::s2::session::{Class, Keys, Sessions};

const HOME: u32 = 0xc0ff_ee01;

fn main() {
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = if quick { 10_000 } else { 500_000 };
    let key = [0x5au8; 16];
    let unauth = Keys::Network(Class::Unauthenticated);
    let mut host = Sessions::new(HOME, 1);
    host.set_network_key(Class::Unauthenticated, &key);
    let mut nodes_s: Vec<(u8, Sessions)> = (2..102u8)
        .map(|id| {
            let mut s = Sessions::new(HOME, id);
            s.set_network_key(Class::Unauthenticated, &key);
            host.grant(id, Class::Unauthenticated);
            let report = host.nonce_report(id);
            s.on_nonce_report(1, &report).unwrap();
            (id, s)
        })
        .collect();
    let report = [0x31, 0x05, 0x01, 0x22, 0x00, 0xd7];
    let frames: Vec<(u8, Vec<u8>)> = (0..n)
        .map(|i| {
            let (id, s) = &mut nodes_s[i % 100];
            (*id, s.seal(1, unauth, &report).unwrap())
        })
        .collect();

    let start = Instant::now();
    let mut messages = 0usize;
    for (id, f) in &frames {
        let o = host.open(*id, f).unwrap();
        if let Ok(Report::Points(points)) = cc::decode(&o.payload) {
            let mut m = Message::telemetry(nodes::device_id(HOME, *id), points);
            m.assurance = Assurance::SharedKey;
            m.raw = o.payload;
            black_box(&m);
            messages += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(messages, n);
    let rate = n as f64 / secs;
    println!("{:<28} {:>12}", "path", "frames/s");
    println!("{:<28} {:>12.0}", "S2 decrypt → message", rate);
    println!(
        "{{\"bench\":\"zwave-s2\",\"path\":\"s2-decrypt-to-message\",\"frames\":{n},\"frames_per_s\":{rate:.0}}}"
    );
}
