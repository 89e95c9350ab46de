//! Per-decision cost of a warm plugin instance (fuel and epoch on), for two trivial WAT plugins:
//! one that returns `allow` without host calls, and one that reads the device's zone symbol
//! (one host call) and compares it with a symbol interned in `init`.
//!
//! `cargo bench -p warden-plugin-host --bench decide` (no harness: prints medians of batches).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use warden_core::{Direction, Kind, Point, Value};
use warden_plugin_host::{DeviceInfo, Host, HostOptions, Kv, Limits, Outcome, Request};

fn component(decide_body: &str) -> String {
    format!(
        r#"(component
  (import "warden:policy/types@0.1.0" (instance $types
    (type $d0 (enum "uplink" "downlink")) (export "direction" (type $d (eq $d0)))
    (type $k0 (enum "telemetry" "event" "command" "command-result" "announce")) (export "kind" (type $k (eq $k0)))
    (type $a0 (enum "none" "channel" "shared-key" "certificate")) (export "assurance" (type $a (eq $a0)))
    (type $h0 (record (field "direction" $d) (field "kind" $k) (field "assurance" $a)
                      (field "fresh" bool) (field "point-count" u32) (field "time-ms" u64)))
    (export "header" (type $h (eq $h0)))
    (type $v0 (variant (case "allow") (case "deny" string) (case "quarantine" string)))
    (export "verdict" (type $v (eq $v0)))))
  (alias export $types "header" (type $header))
  (alias export $types "verdict" (type $verdict))
  (import "warden:policy/host@0.1.0" (instance $host
    (export "request" (type $req (sub resource)))
    (export "intern" (func (param "name" string) (result u32)))
    (export "[method]request.zone" (func (param "self" (borrow $req)) (result u32)))))
  (alias export $host "request" (type $request))
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32) (param $size i32) (result i32)
      (global.get $bump)
      (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $size)) (i32.const 7)) (i32.const -8)))))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
  (core func $intern (canon lower (func $host "intern") (memory $mem)))
  (core func $zone (canon lower (func $host "[method]request.zone")))
  (core func $drop (canon resource.drop $request))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "host" "intern" (func $intern (param i32 i32) (result i32)))
    (import "host" "zone" (func $zone (param i32) (result i32)))
    (import "host" "drop" (func $drop (param i32)))
    (global $hvac (mut i32) (i32.const 0))
    (data (i32.const 64) "hvac")
    (data (i32.const 96) "hvac zone")
    (func (export "init") (param i32 i32) (result i32)
      (global.set $hvac (call $intern (i32.const 64) (i32.const 4)))
      (i32.store8 (i32.const 1024) (i32.const 0))
      (i32.const 1024))
    (func (export "decide") (param i32 i32 i32 i32 i32 i64) (param $req i32) (result i32)
      (local $v i32)
      {decide_body}
      (call $drop (local.get $req))
      (i32.store8 (i32.const 1024) (local.get $v))
      (i32.store (i32.const 1028) (i32.const 96))
      (i32.store (i32.const 1032) (i32.const 9))
      (i32.const 1024)))
  (core instance $main (instantiate $m (with "libc" (instance $libc))
    (with "host" (instance (export "intern" (func $intern)) (export "zone" (func $zone)) (export "drop" (func $drop))))))
  (func $init (param "config" string) (result (result (error string)))
    (canon lift (core func $main "init") (memory $mem) (realloc $realloc)))
  (func $decide (param "header" $header) (param "request" (borrow $request)) (result $verdict)
    (canon lift (core func $main "decide") (memory $mem)))
  (export "init" (func $init))
  (export "decide" (func $decide)))"#
    )
}

fn request() -> Request {
    Request {
        device: DeviceInfo {
            id: "modbus:tcp-1-u1".into(),
            protocol: "modbus".into(),
            zone: "office".into(),
            role: Some("sensor".into()),
            ..DeviceInfo::default()
        },
        direction: Direction::Uplink,
        kind: Kind::Telemetry,
        points: vec![
            Point::new("temp", Value::Float(21.5)).with_unit("C"),
            Point::new("hum", Value::Float(40.0)),
        ],
        fresh: true,
        time_ms: 1_700_000_000_000,
        ..Request::default()
    }
}

fn bench(host: &Host, label: &str, decide_body: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, wat::parse_str(component(decide_body)).unwrap()).unwrap();
    let prepared = host.prepare("bench", &path).unwrap();
    let mut plugin = host
        .instantiate(&prepared, "{}", Limits::default(), Kv::default())
        .unwrap();
    let req = request();
    assert_eq!(plugin.decide(&req), Outcome::Allow);
    const BATCH: u32 = 10_000;
    let mut per_call = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(plugin.decide(std::hint::black_box(&req)));
        }
        per_call.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    per_call.sort_by(f64::total_cmp);
    println!(
        "{label:<40} median {:>7.1} ns/decision  (min {:.1}, p90 {:.1}; 50 batches of {BATCH}; fuel used {})",
        per_call[per_call.len() / 2],
        per_call[0],
        per_call[per_call.len() * 9 / 10],
        plugin.stats().last_fuel_used
    );
}

fn main() {
    let host = Host::new(HostOptions {
        require_signature: false,
        ..HostOptions::default()
    })
    .unwrap();
    bench(&host, "allow, no host call", "(local.set $v (i32.const 0))");
    bench(
        &host,
        "zone symbol compare (1 host call)",
        "(local.set $v (i32.shl (i32.eq (call $zone (local.get $req)) (global.get $hvac)) (i32.const 1)))",
    );
}
