//! `cargo bench -p warden-zwave --bench parse`: Serial API frames per second the adapter parses
//! and normalises on one core (one thread, no runtime): a byte stream of
//! APPLICATION_COMMAND_HANDLER frames (a rotating mix of multilevel sensor, meter, binary switch,
//! notification and battery reports from 100 nodes) fed in 1 KiB reads through
//! `frame::Decoder`, `func::parse_command_handler`, `cc::decode`, and into a `Message`.
//!
//! Prints a table and one JSON line. `WARDEN_BENCH_QUICK=1`: 10k frames (smoke test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use warden_core::{Assurance, Message};
use warden_zwave::cc::{self, Report};
use warden_zwave::frame::{Decoder, Frame, Unit};
use warden_zwave::func;
use warden_zwave::nodes;

fn main() {
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = if quick { 10_000 } else { 2_000_000 };
    let payloads: [&[u8]; 5] = [
        &[0x31, 0x05, 0x01, 0x22, 0x00, 0xd7],
        &[0x32, 0x02, 0x21, 0x32, 0x04, 0xd2],
        &[0x25, 0x03, 0xff],
        &[0x71, 0x05, 0, 0, 0, 0xff, 0x06, 0x16],
        &[0x80, 0x03, 0x55],
    ];
    let mut stream = Vec::new();
    for i in 0..n {
        let node = u8::try_from(2 + i % 100).unwrap();
        let p = payloads[i % payloads.len()];
        let mut d = vec![0x00, node, u8::try_from(p.len()).unwrap()];
        d.extend_from_slice(p);
        stream.extend(
            Frame::request(func::APPLICATION_COMMAND_HANDLER, d)
                .encode()
                .unwrap(),
        );
    }
    let start = Instant::now();
    let mut dec = Decoder::new();
    let mut messages = 0usize;
    for chunk in stream.chunks(1024) {
        for u in dec.push(chunk) {
            let Unit::Frame(f) = u else { continue };
            let inc = func::parse_command_handler(f.func, &f.data).unwrap();
            if let Ok(Report::Points(points)) = cc::decode(&inc.payload) {
                let mut m = Message::telemetry(nodes::device_id(0xc0ffee01, inc.source), points);
                m.assurance = Assurance::None;
                m.raw = inc.payload;
                black_box(&m);
                messages += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(messages, n);
    let rate = n as f64 / secs;
    println!("{:<28} {:>12}", "path", "frames/s");
    println!("{:<28} {:>12.0}", "serial → message", rate);
    println!(
        "{{\"bench\":\"zwave-parse\",\"path\":\"serial-to-message\",\"frames\":{n},\"frames_per_s\":{rate:.0},\"bytes\":{}}}",
        stream.len()
    );
}
