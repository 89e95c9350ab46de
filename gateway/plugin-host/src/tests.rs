//! End-to-end tests of the host with hand-written WAT components: a well-behaved plugin and
//! hostile ones, signing, the AOT cache and the key-value quota.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use warden_core::{Direction, Kind, Point, Value};

use crate::*;

/// A plugin component in WAT. The core module gets: `$ret(disc, ptr, len) -> retptr` (writes a
/// verdict / result at 1024), host imports `$symbol $log $now $kv_get $kv_set $zone $device_id
/// $drop_request` (the exported `decide` drops the request handle after the body returns),
/// globals `$hvac $n $h`, and data `"hvac"`@64, `"not fresh"`@80, `"hvac zone"`@96,
/// `"grow refused"`@112, `"bad config"`@128, `"quota"`@144, `"k"`@160.
struct Wat {
    version: &'static str,
    init: &'static str,
    decide: String,
    extra: &'static str,
    exports_decide: bool,
    /// Export `decide` returning `u32` instead of `verdict`.
    decide_returns_u32: bool,
    /// Also import WASI wall-clock `now` (core `$wall_now(retptr)`), monotonic-clock
    /// `subscribe-duration` (core `$sleep(ns) -> pollable`) and random `get-random-bytes` (core
    /// `$random(len, retptr)`).
    wasi: bool,
    /// Component-level definitions after the main instance (more core modules and instances).
    component_extra: String,
}

impl Default for Wat {
    fn default() -> Self {
        Self {
            version: "0.1.0",
            init: "(call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
            decide: "(call $ret (i32.const 0) (i32.const 0) (i32.const 0))".into(),
            extra: "",
            exports_decide: true,
            decide_returns_u32: false,
            wasi: false,
            component_extra: String::new(),
        }
    }
}

fn decide(body: &str) -> Wat {
    Wat {
        decide: body.into(),
        ..Wat::default()
    }
}

impl Wat {
    fn text(&self) -> String {
        let Wat {
            version,
            init,
            decide,
            extra,
            exports_decide,
            decide_returns_u32,
            wasi,
            component_extra,
        } = self;
        let (wasi_imports, wasi_lowers, wasi_core_imports, wasi_exports) = if *wasi {
            (
                r#"(import "wasi:io/poll@0.2.0" (instance $poll (export "pollable" (type (sub resource)))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $mono
    (alias outer 1 $pollable (type $p))
    (export "pollable" (type $pp (eq $p)))
    (export "subscribe-duration" (func (param "when" u64) (result (own $pp))))))
  (import "wasi:clocks/wall-clock@0.2.0" (instance $wall
    (type $dt0 (record (field "seconds" u64) (field "nanoseconds" u32)))
    (export "datetime" (type $dt (eq $dt0)))
    (export "now" (func (result $dt)))))
  (import "wasi:random/random@0.2.0" (instance $rand
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))"#,
                r#"(core func $wall_now (canon lower (func $wall "now") (memory $mem)))
  (core func $sleep (canon lower (func $mono "subscribe-duration")))
  (core func $random (canon lower (func $rand "get-random-bytes") (memory $mem) (realloc $realloc)))"#,
                r#"(import "host" "wall-now" (func $wall_now (param i32)))
    (import "host" "sleep" (func $sleep (param i64) (result i32)))
    (import "host" "random" (func $random (param i64 i32)))"#,
                r#"(export "wall-now" (func $wall_now))
    (export "sleep" (func $sleep))
    (export "random" (func $random))"#,
            )
        } else {
            ("", "", "", "")
        };
        let decide_result = if *decide_returns_u32 {
            "u32"
        } else {
            "$verdict"
        };
        let decide_export = if *exports_decide {
            r#"(func $decide (param "header" $header) (param "request" (borrow $request)) (result DECIDE_RESULT)
                 (canon lift (core func $main "decide") (memory $mem)))
               (export "decide" (func $decide))"#
                .replace("DECIDE_RESULT", decide_result)
        } else {
            String::new()
        };
        format!(
            r#"(component
  (import "warden:policy/types@{version}" (instance $types
    (type $d0 (enum "uplink" "downlink"))
    (export "direction" (type $d (eq $d0)))
    (type $k0 (enum "telemetry" "event" "command" "command-result" "announce"))
    (export "kind" (type $k (eq $k0)))
    (type $a0 (enum "none" "channel" "shared-key" "certificate"))
    (export "assurance" (type $a (eq $a0)))
    (type $h0 (record (field "direction" $d) (field "kind" $k) (field "assurance" $a)
                      (field "fresh" bool) (field "point-count" u32) (field "time-ms" u64)))
    (export "header" (type $h (eq $h0)))
    (type $v0 (variant (case "allow") (case "deny" string) (case "quarantine" string)))
    (export "verdict" (type $v (eq $v0)))
  ))
  (alias export $types "header" (type $header))
  (alias export $types "verdict" (type $verdict))
  (import "warden:policy/host@{version}" (instance $host
    (export "request" (type $req (sub resource)))
    (type $e0 (enum "key-too-large" "quota-exceeded"))
    (export "kv-error" (type $e (eq $e0)))
    (type $l0 (enum "debug" "info" "warn" "error"))
    (export "level" (type $l (eq $l0)))
    (export "intern" (func (param "name" string) (result u32)))
    (export "log" (func (param "level" $l) (param "message" string)))
    (export "now-ms" (func (result u64)))
    (export "kv-get" (func (param "key" string) (result (option (list u8)))))
    (export "kv-set" (func (param "key" string) (param "value" (list u8)) (result (result (error $e)))))
    (export "[method]request.zone" (func (param "self" (borrow $req)) (result u32)))
    (export "[method]request.device-id" (func (param "self" (borrow $req)) (result string)))
  ))
  (alias export $host "request" (type $request))
  {wasi_imports}

  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (global.set $bump (i32.add (local.get $p) (local.get $size)))
      (block $ok
        (br_if $ok (i32.le_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536))))
        (br_if $ok (i32.ne (memory.grow (i32.add (i32.const 1) (i32.shr_u
            (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16))))
          (i32.const -1)))
        unreachable)
      (local.get $p)))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))

  (core func $symbol (canon lower (func $host "intern") (memory $mem)))
  (core func $log (canon lower (func $host "log") (memory $mem)))
  (core func $now (canon lower (func $host "now-ms")))
  (core func $kv_get (canon lower (func $host "kv-get") (memory $mem) (realloc $realloc)))
  (core func $kv_set (canon lower (func $host "kv-set") (memory $mem)))
  (core func $zone (canon lower (func $host "[method]request.zone")))
  (core func $device_id (canon lower (func $host "[method]request.device-id") (memory $mem) (realloc $realloc)))
  (core func $drop_request (canon resource.drop $request))
  {wasi_lowers}
  (core instance $hostc
    (export "symbol" (func $symbol))
    (export "log" (func $log))
    (export "now-ms" (func $now))
    (export "kv-get" (func $kv_get))
    (export "kv-set" (func $kv_set))
    (export "zone" (func $zone))
    (export "device-id" (func $device_id))
    (export "drop-request" (func $drop_request))
    {wasi_exports})

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "symbol" (func $symbol (param i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "host" "now-ms" (func $now (result i64)))
    (import "host" "kv-get" (func $kv_get (param i32 i32 i32)))
    (import "host" "kv-set" (func $kv_set (param i32 i32 i32 i32 i32)))
    (import "host" "zone" (func $zone (param i32) (result i32)))
    (import "host" "device-id" (func $device_id (param i32 i32)))
    (import "host" "drop-request" (func $drop_request (param i32)))
    {wasi_core_imports}
    (global $hvac (mut i32) (i32.const 0))
    (global $n (mut i32) (i32.const 0))
    (global $h (mut i32) (i32.const 0))
    (data (i32.const 64) "hvac")
    (data (i32.const 80) "not fresh")
    (data (i32.const 96) "hvac zone")
    (data (i32.const 112) "grow refused")
    (data (i32.const 128) "bad config")
    (data (i32.const 144) "quota")
    (data (i32.const 160) "k")
    (func $ret (param i32 i32 i32) (result i32)
      (i32.store8 (i32.const 1024) (local.get 0))
      (i32.store (i32.const 1028) (local.get 1))
      (i32.store (i32.const 1032) (local.get 2))
      (i32.const 1024))
    (func (export "init") (param $p i32) (param $l i32) (result i32)
      {init})
    (func $decide (param $dir i32) (param $kind i32) (param $as i32) (param $fresh i32)
          (param $count i32) (param $time i64) (param $req i32) (result i32)
      {decide})
    ;; Calls the body, then drops the borrowed request handle as the canonical ABI requires.
    (func (export "decide") (param i32 i32 i32 i32 i32 i64 i32) (result i32)
      (local $r i32)
      (local.set $r (call $decide (local.get 0) (local.get 1) (local.get 2) (local.get 3)
                                  (local.get 4) (local.get 5) (local.get 6)))
      (call $drop_request (local.get 6))
      (local.get $r))
    {extra})
  (core instance $main (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $hostc))))
  {component_extra}

  (func $init (param "config" string) (result (result (error string)))
    (canon lift (core func $main "init") (memory $mem) (realloc $realloc)))
  (export "init" (func $init))
  {decide_export}
)"#
        )
    }
}

const ALLOW: &str = "(call $ret (i32.const 0) (i32.const 0) (i32.const 0))";

/// The well-behaved plugin: interns "hvac" in init; denies stale messages, quarantines devices in
/// zone hvac, allows the rest.
fn good() -> Wat {
    Wat {
        init: "(global.set $hvac (call $symbol (i32.const 64) (i32.const 4)))
               (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
        decide: "(if (i32.eqz (local.get $fresh))
                   (then (return (call $ret (i32.const 1) (i32.const 80) (i32.const 9)))))
                 (if (i32.eq (call $zone (local.get $req)) (global.get $hvac))
                   (then (return (call $ret (i32.const 2) (i32.const 96) (i32.const 9)))))
                 (call $ret (i32.const 0) (i32.const 0) (i32.const 0))"
            .into(),
        ..Wat::default()
    }
}

/// Traps when the message is not fresh, allows otherwise.
fn trap_unless_fresh() -> Wat {
    decide(
        "(if (i32.eqz (local.get $fresh)) (then unreachable)) (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    )
}

pub(crate) fn req(zone: &str, fresh: bool) -> Request {
    Request {
        device: DeviceInfo {
            id: "modbus:tcp-1-u1".into(),
            protocol: "modbus".into(),
            zone: zone.into(),
            ..DeviceInfo::default()
        },
        direction: Direction::Uplink,
        kind: Kind::Telemetry,
        points: vec![Point::new("temp", Value::Float(21.5))],
        fresh,
        time_ms: 1_700_000_000_000,
        ..Request::default()
    }
}

pub(crate) fn unsigned_host() -> Host {
    Host::new(HostOptions {
        require_signature: false,
        ..HostOptions::default()
    })
    .unwrap()
}

fn write_module(dir: &Path, name: &str, wat: &Wat) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    let bytes = wat::parse_str(wat.text()).unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load_with(host: &Host, wat: &Wat, limits: Limits) -> Result<Plugin, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "p", wat);
    let prepared = host.prepare("p", &path)?;
    host.instantiate(&prepared, "{}", limits, Kv::default())
}

/// Loads under the default limits (WASI granted to the WAT guests that import it).
fn load(wat: &Wat) -> Plugin {
    let limits = Limits {
        wasi: if wat.wasi {
            WasiGrants::all()
        } else {
            WasiGrants::NONE
        },
        ..Limits::default()
    };
    load_with(&unsigned_host(), wat, limits).unwrap()
}

pub(crate) fn failure(o: Outcome) -> Failure {
    match o {
        Outcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn well_behaved_plugin_decides_and_keeps_warm() {
    let mut p = load(&good());
    assert_eq!(p.decide(&req("office", true)), Outcome::Allow);
    assert_eq!(
        p.decide(&req("office", false)),
        Outcome::Deny("not fresh".into())
    );
    assert_eq!(
        p.decide(&req("hvac", true)),
        Outcome::Quarantine("hvac zone".into())
    );
    for _ in 0..100 {
        assert_eq!(p.decide(&req("office", true)), Outcome::Allow);
    }
    let s = p.stats();
    assert_eq!(s.calls, 103);
    assert_eq!(
        (s.allows, s.denies, s.quarantines, s.failures),
        (101, 1, 1, 0)
    );
    assert_eq!(s.restarts, 0);
    assert!(s.last_fuel_used > 0 && s.last_fuel_used < 1000, "{s:?}");
    assert_eq!(p.name(), "p");
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let mut p = load(&decide("(loop $l (br $l)) unreachable"));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::OutOfFuel, "{f}");
    assert_eq!(p.stats().last_fuel_used, Limits::default().fuel);
}

#[test]
fn huge_fuel_loop_hits_the_deadline() {
    let limits = Limits {
        fuel: u64::MAX / 4,
        deadline_ms: 20,
        ..Limits::default()
    };
    let mut p = load_with(
        &unsigned_host(),
        &decide("(loop $l (br $l)) unreachable"),
        limits,
    )
    .unwrap();
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Deadline, "{f}");
}

#[test]
fn slow_but_legal_work_is_allowed() {
    // ~50k iterations of a small loop: well within 2M fuel.
    let mut p = load(&decide(
        "(local.set $count (i32.const 50000))
         (loop $l (local.set $count (i32.sub (local.get $count) (i32.const 1)))
                  (br_if $l (local.get $count)))
         (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    ));
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let used = p.stats().last_fuel_used;
    assert!(used > 50_000 && used < Limits::default().fuel, "{used}");
}

/// Grows memory by 16 pages (1 MiB) per call; denies when the host refuses.
fn grower(trap_on_refusal: bool) -> Wat {
    let on_refusal = if trap_on_refusal {
        "unreachable"
    } else {
        "(return (call $ret (i32.const 1) (i32.const 112) (i32.const 12)))"
    };
    Wat {
        decide: format!(
            "(if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then {on_refusal})) {ALLOW}"
        ),
        ..Wat::default()
    }
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let mut p = load_with(&unsigned_host(), &grower(false), limits.clone()).unwrap();
    // 1 page + 3 × 16 pages fit in 4 MiB (64 pages); the 4th growth would not.
    for _ in 0..3 {
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    }
    for _ in 0..3 {
        assert_eq!(
            p.decide(&req("a", true)),
            Outcome::Deny("grow refused".into())
        );
    }
    assert_eq!(p.stats().failures, 0);

    let mut p = load_with(&unsigned_host(), &grower(true), limits).unwrap();
    for _ in 0..3 {
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    }
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::MemoryCap, "{f}");
    // The instance was recreated with fresh memory: growth works again.
    settle(&mut p);
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
}

#[test]
fn one_huge_allocation_is_refused() {
    // 16384 pages = 1 GiB.
    let mut p = load(&decide(
        "(if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1))
           (then (return (call $ret (i32.const 1) (i32.const 112) (i32.const 12)))))
         (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    ));
    assert_eq!(
        p.decide(&req("a", true)),
        Outcome::Deny("grow refused".into())
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let mut p = load(&Wat {
        decide:
            "(drop (call $rec (i32.const 0))) (call $ret (i32.const 0) (i32.const 0) (i32.const 0))"
                .into(),
        extra: "(func $rec (param i32) (result i32)
                  (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))",
        ..Wat::default()
    });
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::StackOverflow, "{f}");
}

#[test]
fn unreachable_is_a_trap() {
    let mut p = load(&decide("unreachable"));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Trap, "{f}");
    assert!(f.detail.contains("unreachable"), "{f}");
    assert!(!f.disabled_now);
}

#[test]
fn garbage_returns_are_malformed() {
    // Variant discriminant 7 of a 3-case variant.
    let mut p = load(&decide(
        "(call $ret (i32.const 7) (i32.const 0) (i32.const 0))",
    ));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{f}");

    // A deny reason pointing past the end of memory.
    let mut p = load(&decide(
        "(call $ret (i32.const 1) (i32.const 0xfff00000) (i32.const 100))",
    ));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{f}");

    // A reason that is not UTF-8 (0xff bytes).
    let mut p = load(&Wat {
        decide: "(call $ret (i32.const 1) (i32.const 200) (i32.const 4))".into(),
        extra: r#"(data (i32.const 200) "\ff\fe\ff\fe")"#,
        ..Wat::default()
    });
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{f}");
}

#[test]
fn host_call_storm_exhausts_the_budget() {
    let mut p = load(&decide(
        "(loop $l
           (call $kv_set (i32.const 160) (i32.const 1) (i32.const 64) (i32.const 4) (i32.const 2048))
           (br $l))
         unreachable",
    ));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::HostCallBudget, "{f}");
    // The budget is per decision: a plugin making a few calls per decision is fine.
    let mut p = load(&decide(
        "(call $kv_set (i32.const 160) (i32.const 1) (i32.const 64) (i32.const 4) (i32.const 2048))
         (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    ));
    for _ in 0..(Limits::default().host_calls + 10) {
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    }
}

#[test]
fn refused_kv_writes_in_a_loop_are_stopped() {
    // A 300-byte key is refused (key-too-large) every time; the plugin keeps trying.
    let mut p = load(&decide(
        "(loop $l
           (call $kv_set (i32.const 0) (i32.const 300) (i32.const 64) (i32.const 4) (i32.const 2048))
           (br $l))
         unreachable",
    ));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::HostCallBudget, "{f}");
    assert!(f.detail.contains("kv-set"), "{f}");
}

/// Each decision stores one more 100-byte value under a new 4-byte key ("k" + counter bytes) and
/// denies "quota" when the host refuses it.
fn kv_filler() -> Wat {
    decide(
        "(i32.store (i32.const 300) (global.get $n))
         (global.set $n (i32.add (global.get $n) (i32.const 1)))
         (call $kv_set (i32.const 300) (i32.const 4) (i32.const 400) (i32.const 100) (i32.const 2048))
         (if (i32.load8_u (i32.const 2048))
           (then (return (call $ret (i32.const 1) (i32.const 144) (i32.const 5)))))
         (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    )
}

#[test]
fn kv_quota_is_enforced_and_state_carries_over() {
    let limits = Limits {
        kv_quota_bytes: 9 * (104 + ENTRY_OVERHEAD_BYTES) + 100,
        ..Limits::default()
    };
    let host = unsigned_host();
    let dir = tempfile::tempdir().unwrap();
    let path = write_module(dir.path(), "kv", &kv_filler());
    let prepared = host.prepare("kv", &path).unwrap();
    let mut p = host
        .instantiate(&prepared, "{}", limits.clone(), Kv::default())
        .unwrap();
    // 104 bytes + the fixed per-entry cost each: 9 fit.
    for _ in 0..9 {
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    }
    assert_eq!(p.decide(&req("a", true)), Outcome::Deny("quota".into()));
    let kv = p.into_kv();
    assert_eq!(
        (kv.len(), kv.bytes()),
        (9, 9 * (104 + ENTRY_OVERHEAD_BYTES))
    );
    // A reloaded instance gets the state back: its counter restarts at 0, so it overwrites the
    // first entry (same size, allowed) instead of adding a 10th.
    let mut p = host.instantiate(&prepared, "{}", limits, kv).unwrap();
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let kv = p.kv().unwrap();
    assert_eq!(
        (kv.len(), kv.bytes()),
        (9, 9 * (104 + ENTRY_OVERHEAD_BYTES))
    );
}

#[test]
fn init_error_is_a_config_error() {
    let e = load_with(
        &unsigned_host(),
        &Wat {
            init: "(call $ret (i32.const 1) (i32.const 128) (i32.const 10))",
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .unwrap();
    match e {
        LoadError::Config(m) => assert_eq!(m, "bad config"),
        other => panic!("{other}"),
    }
}

#[test]
fn init_trap_is_an_init_failure() {
    let e = load_with(
        &unsigned_host(),
        &Wat {
            init: "(loop $l (br $l)) unreachable",
            ..Wat::default()
        },
        Limits {
            init_fuel: 100_000,
            ..Limits::default()
        },
    )
    .err()
    .unwrap();
    match e {
        LoadError::Init(f) => assert_eq!(f.cause, FailureCause::OutOfFuel),
        other => panic!("{other}"),
    }
}

#[test]
fn wrong_contract_version_is_refused_naming_both() {
    let e = load_with(
        &unsigned_host(),
        &Wat {
            version: "0.2.0",
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .unwrap();
    match &e {
        LoadError::Contract(m) => {
            assert!(m.contains("warden:policy@0.2.0"), "{m}");
            assert!(m.contains("warden:policy@0.1.1"), "{m}");
        }
        other => panic!("{other}"),
    }
    // 0.1.1 only added methods: components of both versions load, and say which they are
    for version in ["0.1.0", "0.1.1"] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_module(
            dir.path(),
            "p",
            &Wat {
                version,
                ..Wat::default()
            },
        );
        let host = unsigned_host();
        let prepared = host.prepare("p", &path).unwrap();
        assert_eq!(prepared.contract, version);
        let mut p = host
            .instantiate(&prepared, "{}", Limits::default(), Kv::default())
            .unwrap();
        assert_eq!(p.decide(&Request::default()), Outcome::Allow);
    }
    let e = load_with(
        &unsigned_host(),
        &Wat {
            exports_decide: false,
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, LoadError::Contract(m) if m.contains("`decide`")),
        "{e}"
    );
    let e = load_with(
        &unsigned_host(),
        &Wat {
            decide_returns_u32: true,
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&e, LoadError::Contract(m) if m.contains("decide")),
        "{e}"
    );
    // A core module is not a plugin.
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str("(module (func (export \"decide\")))").unwrap(),
    )
    .unwrap();
    let e = unsigned_host().prepare("core", &core).err().unwrap();
    assert!(matches!(e, LoadError::Contract(_)), "{e}");
}

#[test]
fn forged_request_handle_traps() {
    // Uses handle+1, which is no handle the plugin was given.
    let mut p = load(&decide(
        "(drop (call $zone (i32.add (local.get $req) (i32.const 1)))) (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    ));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Trap, "{f}");
}

#[test]
fn request_handle_used_during_init_traps() {
    // A plugin remembers its handle in the key-value state, traps, and its next instance tries
    // the handle during init, where no request exists.
    let w = Wat {
        init: "(call $kv_get (i32.const 160) (i32.const 1) (i32.const 2000))
               (if (i32.load8_u (i32.const 2000))
                 (then (drop (call $zone (i32.load (i32.load (i32.const 2004)))))))
               (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
        decide: "(i32.store (i32.const 300) (local.get $req))
                 (call $kv_set (i32.const 160) (i32.const 1) (i32.const 300) (i32.const 4) (i32.const 2048))
                 unreachable"
            .into(),
        ..Wat::default()
    };
    let mut p = load(&w);
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Trap, "{f}");
    // The replacement ran init, which used the stale handle and trapped: no instance now, and
    // the next decision reports that failure.
    assert!(!p.wait_ready(std::time::Duration::from_secs(10)));
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Restart, "{f}");
    assert!(f.detail.contains("init failed"), "{f}");
    assert_eq!(p.stats().restarts, 0);
    assert_eq!(p.stats().failures, 2);
}

#[test]
fn stale_rep_is_refused_by_the_accessors() {
    use crate::bindings::warden::policy::host::HostRequest;
    let mut st = crate::plugin::State::for_tests();
    st.begin_call_for_tests(7, &req("a", true));
    assert!(
        st.zone(wasmtime::component::Resource::new_borrow(7))
            .is_ok()
    );
    let e = st
        .zone(wasmtime::component::Resource::new_borrow(6))
        .unwrap_err();
    assert!(e.to_string().contains("outside the decide call"), "{e}");
    st.end_call_for_tests();
    assert!(
        st.zone(wasmtime::component::Resource::new_borrow(7))
            .is_err()
    );
}

#[test]
fn failure_recreates_the_instance_and_next_call_works() {
    let mut p = load(&trap_unless_fresh());
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let f = failure(p.decide(&req("a", false)));
    assert_eq!(f.cause, FailureCause::Trap);
    settle(&mut p);
    assert_eq!(p.stats().restarts, 1);
    assert_eq!(p.stats().consecutive_failures, 1);
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    assert_eq!(p.stats().consecutive_failures, 0);
    assert_eq!(p.stats().failures, 1);

    // The recreated instance ran init again: the good plugin still knows its "hvac" symbol.
    let mut p = load(&good());
    let _ = p.decide(&req("a", true));
    settle(&mut p);
    let mut bad = req("hvac", true);
    bad.points.clear();
    assert_eq!(p.decide(&bad), Outcome::Quarantine("hvac zone".into()));
}

/// Waits for a replacement instance in progress (tests replay calls one after another).
fn settle(p: &mut Plugin) {
    assert!(
        p.wait_ready(std::time::Duration::from_secs(10)),
        "no live instance: {:?}",
        p.stats()
    );
}

#[test]
fn consecutive_failures_disable_the_plugin() {
    let limits = Limits {
        max_failures: 3,
        // only the in-a-row rule here
        failure_window_ms: 0,
        ..Limits::default()
    };
    let mut p = load_with(&unsigned_host(), &trap_unless_fresh(), limits).unwrap();
    let f1 = failure(p.decide(&req("a", false)));
    settle(&mut p);
    let f2 = failure(p.decide(&req("a", false)));
    settle(&mut p);
    // A success in between resets the count.
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let f3 = failure(p.decide(&req("a", false)));
    settle(&mut p);
    let f4 = failure(p.decide(&req("a", false)));
    settle(&mut p);
    assert!(!f1.disabled_now && !f2.disabled_now && !f3.disabled_now && !f4.disabled_now);
    assert!(!p.is_disabled());
    let f5 = failure(p.decide(&req("a", false)));
    assert_eq!(f5.cause, FailureCause::Trap);
    assert!(f5.disabled_now);
    assert!(p.is_disabled());
    assert!(p.disabled_reason().unwrap().contains("3 failures in a row"));
    let calls = p.stats().calls;
    let f6 = failure(p.decide(&req("a", true)));
    assert_eq!(f6.cause, FailureCause::Disabled);
    assert!(!f6.disabled_now);
    assert_eq!(p.stats().calls, calls, "a disabled plugin does not run");
}

#[test]
fn failures_between_successes_disable_on_the_failure_rate() {
    // The attack: trap on one device, allow the others, so no two failures are consecutive.
    let limits = Limits {
        max_failures: 4,
        ..Limits::default()
    };
    let mut p = load_with(&unsigned_host(), &trap_unless_fresh(), limits).unwrap();
    let mut failures = Vec::new();
    for _ in 0..4 {
        settle(&mut p);
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
        failures.push(failure(p.decide(&req("a", false))));
    }
    assert_eq!(p.stats().consecutive_failures, 1);
    assert!(failures[..3].iter().all(|f| !f.disabled_now));
    assert!(failures[3].disabled_now, "{:?}", failures[3]);
    assert!(p.is_disabled());
    assert!(
        p.disabled_reason()
            .unwrap()
            .contains("4 failures within 60 s"),
        "{:?}",
        p.disabled_reason()
    );
    // positive control: the same pattern spread beyond a (tiny) window is never disabled
    let limits = Limits {
        max_failures: 4,
        failure_window_ms: 1,
        ..Limits::default()
    };
    let mut p = load_with(&unsigned_host(), &trap_unless_fresh(), limits).unwrap();
    for _ in 0..6 {
        settle(&mut p);
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
        // every failure is at least one replacement (>1 ms) after the previous one
        let f = failure(p.decide(&req("a", false)));
        assert!(!f.disabled_now, "{f}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(!p.is_disabled());
}

#[test]
fn a_failed_instance_is_replaced_off_the_calling_thread() {
    // The replacement's init burns ~80 M fuel (tens of milliseconds); meanwhile
    // decisions are answered at once with `restarting`, then the new instance decides.
    let w = Wat {
        init: "(local.set 0 (i32.const 0))
               (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 0) (i32.const 20000000))))
               (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
        ..trap_unless_fresh()
    };
    let mut p = load_with(&unsigned_host(), &w, Limits::default()).unwrap();
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let f = failure(p.decide(&req("a", false)));
    assert_eq!(f.cause, FailureCause::Trap);
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Restarting, "{f}");
    assert!(!f.disabled_now);
    assert!(p.is_replacing());
    settle(&mut p);
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let s = p.stats();
    assert_eq!(
        (s.restarts, s.failures),
        (1, 1),
        "restarting is not a failure: {s:?}"
    );
    assert!(s.denied_restarting >= 1, "{s:?}");
}

#[test]
fn init_has_a_budget_of_its_own() {
    // The same slow init refused by a small init budget: at load, and so in every replacement.
    let w = Wat {
        init: "(local.set 0 (i32.const 0))
               (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                 (br_if $l (i32.lt_u (local.get 0) (i32.const 50000000))))
               (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
        ..Wat::default()
    };
    let e = load_with(
        &unsigned_host(),
        &w,
        Limits {
            init_fuel: 1_000_000,
            ..Limits::default()
        },
    )
    .err()
    .expect("init over its fuel");
    assert!(e.to_string().contains("out-of-fuel"), "{e}");
    let e = load_with(
        &unsigned_host(),
        &w,
        Limits {
            init_fuel: u64::MAX / 4,
            init_deadline_ms: 1,
            ..Limits::default()
        },
    )
    .err()
    .expect("init over its deadline");
    assert!(e.to_string().contains("deadline"), "{e}");
}

#[test]
fn a_plugin_over_its_cpu_budget_is_disabled() {
    // Each decision spins ~20 M instructions (milliseconds), within its fuel and deadline; the
    // plugin may spend 5 ms per second.
    let w = decide(
        "(local.set 0 (i32.const 0))
         (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get 0) (i32.const 20000000))))
         (call $ret (i32.const 0) (i32.const 0) (i32.const 0))",
    );
    let limits = Limits {
        fuel: 1_000_000_000,
        deadline_ms: 10_000,
        cpu_ms_per_sec: 5,
        ..Limits::default()
    };
    let mut p = load_with(&unsigned_host(), &w, limits).unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        let o = p.decide(&req("a", true));
        let done = matches!(&o, Outcome::Failed(f) if f.disabled_now);
        outcomes.push(o);
        if done {
            break;
        }
    }
    let last = failure(outcomes.pop().unwrap());
    assert_eq!(last.cause, FailureCause::CpuBudget, "{last}");
    assert!(last.detail.contains("budget 5 ms per second"), "{last}");
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Allow),
        "{outcomes:?}"
    );
    assert!(p.is_disabled());
    // positive control: the same plugin with the default budget keeps allowing
    let mut p = load_with(
        &unsigned_host(),
        &w,
        Limits {
            fuel: 1_000_000_000,
            deadline_ms: 10_000,
            ..Limits::default()
        },
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

struct Signed {
    _dir: tempfile::TempDir,
    module: PathBuf,
    private: PathBuf,
    public: ed25519_dalek::VerifyingKey,
}

fn signed_setup() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let module = write_module(dir.path(), "good", &good());
    let (private, public) = signing::keygen(&dir.path().join("keys"), "ops").unwrap();
    let public = signing::read_pubkey(public.to_str().unwrap()).unwrap();
    Signed {
        _dir: dir,
        module,
        private,
        public,
    }
}

fn signed_host(keys: Vec<ed25519_dalek::VerifyingKey>, require: bool) -> Host {
    Host::new(HostOptions {
        trusted_keys: keys,
        require_signature: require,
        ..HostOptions::default()
    })
    .unwrap()
}

#[test]
fn signed_plugin_loads_with_its_signer() {
    let s = signed_setup();
    signing::sign(&s.module, &s.private).unwrap();
    let host = signed_host(vec![s.public], true);
    let p = host.prepare("good", &s.module).unwrap();
    assert_eq!(p.signer, Some(signing::key_id(&s.public)));
    assert_eq!(p.cache, CacheOutcome::Disabled);
    let mut plugin = host
        .instantiate(&p, "{}", Limits::default(), Kv::default())
        .unwrap();
    assert_eq!(plugin.decide(&req("a", true)), Outcome::Allow);
}

#[test]
fn unsigned_plugin_is_refused_when_signatures_are_required() {
    let s = signed_setup();
    let e = signed_host(vec![s.public], true)
        .prepare("good", &s.module)
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::Signature(m) if m.contains("unsigned")),
        "{e}"
    );
}

#[test]
fn bad_signature_is_refused() {
    let s = signed_setup();
    signing::sign(&s.module, &s.private).unwrap();
    // Tamper with the module after signing.
    let mut bytes = std::fs::read(&s.module).unwrap();
    bytes.push(0);
    std::fs::write(&s.module, bytes).unwrap();
    let e = signed_host(vec![s.public], true)
        .prepare("good", &s.module)
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::Signature(m) if m.contains("not a valid signature")),
        "{e}"
    );
    // An unreadable signature file.
    std::fs::write(signing::sig_path(&s.module), "????").unwrap();
    let e = signed_host(vec![s.public], true)
        .prepare("good", &s.module)
        .unwrap_err();
    assert!(matches!(e, LoadError::Signature(_)), "{e}");
}

#[test]
fn signature_by_an_unknown_key_is_refused() {
    let s = signed_setup();
    signing::sign(&s.module, &s.private).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (_, other) = signing::keygen(other_dir.path(), "other").unwrap();
    let other = signing::read_pubkey(other.to_str().unwrap()).unwrap();
    let e = signed_host(vec![other], true)
        .prepare("good", &s.module)
        .unwrap_err();
    assert!(matches!(e, LoadError::Signature(_)), "{e}");
    let e = signed_host(vec![], true)
        .prepare("good", &s.module)
        .unwrap_err();
    assert!(
        matches!(&e, LoadError::Signature(m) if m.contains("no trusted")),
        "{e}"
    );
}

#[test]
fn signatures_not_required_loads_unsigned() {
    let s = signed_setup();
    let p = signed_host(vec![], false)
        .prepare("good", &s.module)
        .unwrap();
    assert_eq!(p.signer, None);
    // A valid signature is still reported when present.
    signing::sign(&s.module, &s.private).unwrap();
    let p = signed_host(vec![s.public], false)
        .prepare("good", &s.module)
        .unwrap();
    assert_eq!(p.signer, Some(signing::key_id(&s.public)));
}

// ---------------------------------------------------------------------------------------------
// AOT cache

fn cached_host(dir: &Path, key: [u8; 32]) -> Host {
    Host::new(HostOptions {
        cache_dir: Some(dir.to_owned()),
        cache_key: key,
        require_signature: false,
        ..HostOptions::default()
    })
    .unwrap()
}

#[test]
fn cache_hit_after_miss_and_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let module = write_module(dir.path(), "good", &good());
    let cache_dir = dir.path().join("cache");
    let key = [7u8; 32];
    let host = cached_host(&cache_dir, key);
    let p1 = host.prepare("good", &module).unwrap();
    assert_eq!(p1.cache, CacheOutcome::Miss);
    let entry = host.cache_path(&p1.sha256).unwrap();
    let name = entry.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with(&hex::encode(p1.sha256)), "{name}");
    assert!(name.contains(WASMTIME_VERSION), "{name}");
    assert!(name.ends_with(".cwasm"), "{name}");
    let p2 = host.prepare("good", &module).unwrap();
    assert_eq!(p2.cache, CacheOutcome::Hit);
    let mut plugin = host
        .instantiate(&p2, "{}", Limits::default(), Kv::default())
        .unwrap();
    assert_eq!(
        plugin.decide(&req("hvac", true)),
        Outcome::Quarantine("hvac zone".into())
    );

    // A new host (a gateway restart) with the same key hits too.
    let host = cached_host(&cache_dir, key);
    assert_eq!(
        host.prepare("good", &module).unwrap().cache,
        CacheOutcome::Hit
    );

    // Flip one byte in the middle of the entry.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&entry, &bytes).unwrap();
    let p3 = host.prepare("good", &module).unwrap();
    assert_eq!(p3.cache, CacheOutcome::Corrupt);
    let mut plugin = host
        .instantiate(&p3, "{}", Limits::default(), Kv::default())
        .unwrap();
    assert_eq!(
        plugin.decide(&req("hvac", true)),
        Outcome::Quarantine("hvac zone".into())
    );
    // The entry was rewritten.
    assert_eq!(
        host.prepare("good", &module).unwrap().cache,
        CacheOutcome::Hit
    );

    // Truncated entry, and an entry under a different key: never trusted.
    std::fs::write(&entry, &bytes[..10]).unwrap();
    assert_eq!(
        host.prepare("good", &module).unwrap().cache,
        CacheOutcome::Corrupt
    );
    let other = cached_host(&cache_dir, [8u8; 32]);
    assert_eq!(
        other.prepare("good", &module).unwrap().cache,
        CacheOutcome::Corrupt
    );
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn cache_entry_of_another_module_is_not_accepted_under_this_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_module(dir.path(), "a", &good());
    let b = write_module(dir.path(), "b", &decide("unreachable"));
    let cache_dir = dir.path().join("cache");
    let host = cached_host(&cache_dir, [1u8; 32]);
    let pa = host.prepare("a", &a).unwrap();
    let pb = host.prepare("b", &b).unwrap();
    // Copy a's (validly MAC'd) entry over b's.
    std::fs::copy(
        host.cache_path(&pa.sha256).unwrap(),
        host.cache_path(&pb.sha256).unwrap(),
    )
    .unwrap();
    let pb = host.prepare("b", &b).unwrap();
    assert_eq!(pb.cache, CacheOutcome::Corrupt);
    let mut plugin = host
        .instantiate(&pb, "{}", Limits::default(), Kv::default())
        .unwrap();
    assert_eq!(
        failure(plugin.decide(&req("a", true))).cause,
        FailureCause::Trap
    );
}

#[test]
fn plugin_test_run_reports_pass_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = dir.path().join("m.jsonl");
    let line = |zone: &str, fresh: bool, expect: &str| {
        let mut v = serde_json::to_value(req(zone, fresh)).unwrap();
        v["expect"] = serde_json::Value::String(expect.into());
        v.to_string()
    };
    std::fs::write(
        &msgs,
        [
            line("office", true, "allow"),
            line("office", false, "deny: fresh"),
            line("hvac", true, "allow"),
        ]
        .join("\n"),
    )
    .unwrap();
    let cases = testrun::read_cases(&msgs, None).unwrap();
    let mut p = load(&good());
    let report = testrun::run(&mut p, &cases);
    assert_eq!(
        (report.allows, report.denies, report.quarantines),
        (1, 1, 1)
    );
    assert_eq!((report.passed, report.mismatched), (2, 1));
    assert!(!report.all_passed());
    assert_eq!(report.cases[2].passed, Some(false));
    assert!(report.to_string().contains("FAIL"), "{report}");
}

#[test]
fn wasi_guest_sees_the_decision_time_and_cannot_sleep() {
    // Allows when WASI's wall clock reads the decision time (seconds), denies otherwise.
    let mut p = load(&Wat {
        wasi: true,
        decide: "(call $wall_now (i32.const 2000))
                 (if (i64.eq (i64.load (i32.const 2000)) (i64.div_u (local.get $time) (i64.const 1000)))
                   (then (return (call $ret (i32.const 0) (i32.const 0) (i32.const 0)))))
                 (call $ret (i32.const 1) (i32.const 80) (i32.const 9))"
            .into(),
        ..Wat::default()
    });
    let mut r = req("a", true);
    assert_eq!(p.decide(&r), Outcome::Allow);
    r.time_ms = 42_000;
    assert_eq!(p.decide(&r), Outcome::Allow);

    let mut p = load(&Wat {
        wasi: true,
        decide: format!("(drop (call $sleep (i64.const 1000000000))) {ALLOW}"),
        ..Wat::default()
    });
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::Trap, "{f}");
    assert!(f.detail.contains("may not sleep"), "{f}");
}

// ---------------------------------------------------------------------------------------------
// Bounded, trusted loading

fn dir_host(plugin_dir: &Path, max_module_bytes: u64, require: bool) -> Host {
    Host::new(HostOptions {
        require_signature: require,
        plugin_dir: Some(plugin_dir.to_owned()),
        max_module_bytes,
        ..HostOptions::default()
    })
    .unwrap()
}

#[test]
fn sig_linked_to_dev_zero_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let module = write_module(dir.path(), "p", &good());
    std::os::unix::fs::symlink("/dev/zero", signing::sig_path(&module)).unwrap();
    // whether or not signatures are required, and with or without a plugin directory
    for host in [unsigned_host(), dir_host(dir.path(), 1 << 20, true)] {
        let started = std::time::Instant::now();
        let e = host.prepare("p", &module).unwrap_err().to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(e.contains("not a regular file"), "{e}");
    }
    assert!(signing::read_signature(&signing::sig_path(&module)).is_err());
}

#[test]
fn oversized_sig_and_module_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let module = write_module(dir.path(), "p", &good());
    std::fs::write(signing::sig_path(&module), vec![b'A'; 10_000]).unwrap();
    let e = unsigned_host()
        .prepare("p", &module)
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than 512 bytes"), "{e}");
    std::fs::remove_file(signing::sig_path(&module)).unwrap();
    let size = std::fs::metadata(&module).unwrap().len();
    let e = dir_host(dir.path(), size - 1, false)
        .prepare("p", &module)
        .unwrap_err();
    assert!(matches!(e, LoadError::Read(_)), "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");
    assert!(
        dir_host(dir.path(), size, false)
            .prepare("p", &module)
            .is_ok()
    );
}

#[test]
fn symlinks_out_of_the_plugin_dir_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let outside = write_module(dir.path(), "evil", &good());
    let inside = plugins.join("p.wasm");
    std::os::unix::fs::symlink(&outside, &inside).unwrap();
    let host = dir_host(&plugins, 1 << 20, false);
    let e = host.prepare("p", &inside).unwrap_err().to_string();
    assert!(e.contains("outside the directory"), "{e}");
    // a `..` path is resolved the same way
    let dotdot = plugins.join("../evil.wasm");
    let e = host.prepare("p", &dotdot).unwrap_err().to_string();
    assert!(e.contains("outside the directory"), "{e}");
    // a module inside, with its signature symlinked to one outside: refused
    let real = write_module(&plugins, "q", &good());
    std::fs::write(dir.path().join("q.sig"), "AAAA\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("q.sig"), signing::sig_path(&real)).unwrap();
    let e = host.prepare("q", &real).unwrap_err().to_string();
    assert!(e.contains("outside the directory"), "{e}");
    // a symlink within the directory is fine
    std::fs::remove_file(signing::sig_path(&real)).unwrap();
    std::os::unix::fs::symlink(&real, plugins.join("current.wasm")).unwrap();
    assert!(host.prepare("q", &plugins.join("current.wasm")).is_ok());
}

/// What an attacker holding the cache key (derivable from a master key that sits in the data dir)
/// can produce: a well-formed entry, correctly MAC'd under the target's file name, whose compiled
/// code is another module's.
fn forge_entry(key: [u8; 32], from: &Path, to: &Path) {
    use hmac::Mac;
    let data = std::fs::read(from).unwrap();
    let (signed, _) = data.split_at(data.len() - 32);
    let name = to.file_name().unwrap().to_str().unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(signed);
    let mut out = signed.to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    std::fs::write(to, out).unwrap();
}

#[test]
fn forged_cache_entry_with_a_valid_mac_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_module(dir.path(), "a", &good());
    let b = write_module(dir.path(), "b", &decide("unreachable"));
    let cache_dir = dir.path().join("cache");
    let key = [1u8; 32];
    let host = cached_host(&cache_dir, key);
    let pa = host.prepare("a", &a).unwrap();
    let pb = host.prepare("b", &b).unwrap();
    let entry_b = host.cache_path(&pb.sha256).unwrap();
    forge_entry(key, &host.cache_path(&pa.sha256).unwrap(), &entry_b);
    let pb = host.prepare("b", &b).unwrap();
    assert_eq!(pb.cache, CacheOutcome::Corrupt);
    let why = pb.cache_refused.clone().unwrap();
    assert!(why.contains("not the signed module"), "{why}");
    // b's own code runs, not a's
    let mut plugin = host
        .instantiate(&pb, "{}", Limits::default(), Kv::default())
        .unwrap();
    assert_eq!(
        failure(plugin.decide(&req("a", true))).cause,
        FailureCause::Trap
    );
    // and the entry was rewritten with b's code
    assert_eq!(host.prepare("b", &b).unwrap().cache, CacheOutcome::Hit);
    assert!(host.prepare("b", &b).unwrap().cache_refused.is_none());
}

// ---------------------------------------------------------------------------------------------
// Sanitised text

#[test]
fn hostile_reasons_reach_the_host_without_control_characters() {
    let hostile = r#"hot\0a#999 2026-01-01T00:00:00Z decision allow by builtin:profile\0d\1b[2K\1b]0;pwned\07\e2\80\ae"#;
    let len = hostile.len() - 3 * 8; // each `\xx` is one byte
    let wat = Wat {
        decide: format!("(call $ret (i32.const 1) (i32.const 300) (i32.const {len}))"),
        init: "(call $ret (i32.const 1) (i32.const 300) (i32.const 20))",
        extra: Box::leak(format!(r#"(data (i32.const 300) "{hostile}")"#).into_boxed_str()),
        ..Wat::default()
    };
    // `init` returning the same text as its config error
    let e = load_with(&unsigned_host(), &wat, Limits::default())
        .err()
        .unwrap()
        .to_string();
    assert!(text::is_clean(&e), "{e:?}");
    let wat = Wat {
        init: Wat::default().init,
        ..wat
    };
    let mut p = load(&wat);
    let Outcome::Deny(reason) = p.decide(&req("a", true)) else {
        panic!("expected a deny");
    };
    assert!(text::is_clean(&reason), "{reason:?}");
    assert!(!reason.contains(['\n', '\r', '\x1b', '\x07', '\u{202e}']));
    assert!(reason.starts_with("hot #999"), "{reason:?}");
}

/// Start-up cost of the cache check. Not a pass/fail test: run with
/// `WARDEN_BENCH_MODULE=target/plugins/least_privilege.wasm cargo test -p warden-plugin-host
/// --release cache_start_up_cost -- --ignored --nocapture` (without the variable it uses a WAT
/// component).
#[test]
#[ignore]
fn cache_start_up_cost() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let module = match std::env::var_os("WARDEN_BENCH_MODULE") {
        Some(p) => PathBuf::from(p),
        None => write_module(dir.path(), "good", &good()),
    };
    let bytes = std::fs::read(&module).unwrap();
    let cache_dir = dir.path().join("cache");
    let key = [3u8; 32];
    let host = cached_host(&cache_dir, key);
    let t = Instant::now();
    let p = host.prepare("m", &module).unwrap();
    let miss_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(p.cache, CacheOutcome::Miss);
    let entry = std::fs::read(host.cache_path(&p.sha256).unwrap()).unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let runs = 21;
    let mut hit = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let p = host.prepare("m", &module).unwrap();
        hit.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(p.cache, CacheOutcome::Hit);
    }
    // the parts: the MAC over the whole entry (both the old and the new scheme), and the added
    // re-verification (the recorded module digest and engine fingerprint against the verified ones)
    let cache = crate::cache::Cache::new(cache_dir.clone(), key, host.engine(), 1 << 30).unwrap();
    let mut mac = Vec::new();
    let mut reverify = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let ok = cache.load(host.engine(), &p.sha256).is_ok();
        mac.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(ok);
        let digest = signing::sha256(&bytes);
        let t = Instant::now();
        let mut same = true;
        for _ in 0..1000 {
            same &= std::hint::black_box(&entry[8..40]) == std::hint::black_box(digest.as_slice());
        }
        reverify.push(t.elapsed().as_secs_f64() * 1e3 / 1000.0);
        assert!(same);
    }
    let mut digest_ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(signing::sha256(&bytes));
        digest_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut compile = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let _ = wasmtime::component::Component::from_binary(host.engine(), &bytes).unwrap();
        compile.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "module {} B, entry {} B: miss (compile+store) {miss_ms:.2} ms; hit prepare median {:.3} ms; \
         cache load (read+header+MAC+deserialize) {:.3} ms; module SHA-256 (done for the signature \
         in both schemes) {:.3} ms; added digest compare {:.1} ns; recompile instead {:.2} ms",
        bytes.len(),
        entry.len(),
        median(hit),
        median(mac),
        median(digest_ms),
        median(reverify) * 1e6,
        median(compile)
    );
}

// ---------------------------------------------------------------------------------------------
// Limits per plugin, not per object (issue 19 part 1) and metered host work (part 3)

/// Counts the bytes allocated by each thread, so a test can show what a decision copied into
/// the host. (Wasm linear memory is mapped by wasmtime, not allocated through this.)
struct CountingAlloc;

thread_local! {
    static ALLOCATED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes. Test-only:
// the one way to show, without timing or RSS noise from parallel tests, what a call copied.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size() as u64));
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new as u64));
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocated_by_this_thread() -> u64 {
    ALLOCATED.with(std::cell::Cell::get)
}

/// `n` more core modules, each defining one memory of `pages` pages (or a table of `elements`),
/// each instantiated once.
fn more_objects(n: usize, what: &str) -> String {
    (0..n)
        .map(|i| format!("(core module $x{i} {what}) (core instance $xi{i} (instantiate $x{i}))\n"))
        .collect()
}

#[test]
fn a_second_memory_in_one_module_is_refused_at_load() {
    let e = load_with(
        &unsigned_host(),
        &Wat {
            extra: "(memory 1)",
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .expect("a module with two memories must not load");
    assert!(matches!(e, LoadError::Compile(_)), "{e}");
    assert!(e.to_string().contains("multiple memories"), "{e}");
}

#[test]
fn many_memories_share_one_budget() {
    // 11 memories of 6.25 MiB: each far under the 64 MiB cap, 68.75 MiB together.
    let e = load_with(
        &unsigned_host(),
        &Wat {
            component_extra: more_objects(11, "(memory 100)"),
            ..Wat::default()
        },
        Limits::default(),
    )
    .err()
    .expect("memories summing past the cap must not instantiate");
    match e {
        LoadError::Init(f) => assert_eq!(f.cause, FailureCause::MemoryCap, "{f}"),
        other => panic!("expected an init failure, got {other}"),
    }
    // 9 of them (56.25 MiB + 1 page) load; then the main memory may grow by 1 MiB but not 10.
    let mut p = load(&Wat {
        component_extra: more_objects(9, "(memory 100)"),
        decide: "(if (i32.lt_s (memory.grow (local.get $count)) (i32.const 0)) (then unreachable))
                 (call $ret (i32.const 0) (i32.const 0) (i32.const 0))"
            .into(),
        ..Wat::default()
    });
    let mut r = req("a", true);
    r.points = vec![Point::new("p", Value::Int(0)); 16]; // 16 pages = 1 MiB
    assert_eq!(p.decide(&r), Outcome::Allow);
    r.points = vec![Point::new("p", Value::Int(0)); 160]; // 10 MiB
    let f = failure(p.decide(&r));
    assert_eq!(f.cause, FailureCause::MemoryCap, "{f}");
}

#[test]
fn too_many_memories_or_tables_are_refused() {
    for (what, n) in [
        ("(memory 0)", MEMORIES_MAX + 1),
        ("(table 1 funcref)", TABLES_MAX + 1),
    ] {
        let e = load_with(
            &unsigned_host(),
            &Wat {
                component_extra: more_objects(n, what),
                ..Wat::default()
            },
            Limits::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("{n} × {what} must not instantiate"));
        assert!(matches!(e, LoadError::Init(_)), "{what}: {e}");
        assert!(e.to_string().contains("count"), "{what}: {e}");
    }
}

#[test]
fn tables_count_against_the_memory_budget() {
    // 6 tables of 100,000 elements: 4.8 MB charged against a 4 MiB budget.
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let e = load_with(
        &unsigned_host(),
        &Wat {
            component_extra: more_objects(6, "(table 100000 funcref)"),
            ..Wat::default()
        },
        limits.clone(),
    )
    .err()
    .expect("tables summing past the budget must not instantiate");
    match e {
        LoadError::Init(f) => assert_eq!(f.cause, FailureCause::MemoryCap, "{f}"),
        other => panic!("expected an init failure, got {other}"),
    }
    // 4 of them (3.2 MB) fit.
    load_with(
        &unsigned_host(),
        &Wat {
            component_extra: more_objects(4, "(table 100000 funcref)"),
            ..Wat::default()
        },
        limits,
    )
    .unwrap();
}

#[test]
fn kv_storm_of_tiny_entries_hits_the_quota_at_the_real_cost() {
    // Writes empty values under 4-byte keys until the host refuses; denies "quota" then.
    let mut p = load(&decide(
        "(block $full
           (loop $l
             ;; the key: the counter in four ASCII digits of base 64 ('0'..'o')
             (i32.store8 (i32.const 300) (i32.add (i32.const 48) (i32.and (global.get $n) (i32.const 63))))
             (i32.store8 (i32.const 301) (i32.add (i32.const 48) (i32.and (i32.shr_u (global.get $n) (i32.const 6)) (i32.const 63))))
             (i32.store8 (i32.const 302) (i32.add (i32.const 48) (i32.and (i32.shr_u (global.get $n) (i32.const 12)) (i32.const 63))))
             (i32.store8 (i32.const 303) (i32.add (i32.const 48) (i32.and (i32.shr_u (global.get $n) (i32.const 18)) (i32.const 63))))
             (global.set $n (i32.add (global.get $n) (i32.const 1)))
             (call $kv_set (i32.const 300) (i32.const 4) (i32.const 400) (i32.const 0) (i32.const 2048))
             (br_if $full (i32.load8_u (i32.const 2048)))
             (br $l)))
         (call $ret (i32.const 1) (i32.const 144) (i32.const 5))",
    ));
    assert_eq!(p.decide(&req("a", true)), Outcome::Deny("quota".into()));
    let quota = Limits::default().kv_quota_bytes;
    let kv = p.kv().unwrap();
    let per_entry = 4 + ENTRY_OVERHEAD_BYTES;
    assert_eq!(
        kv.len(),
        quota / per_entry,
        "entries of {per_entry} bytes each"
    );
    assert_eq!(kv.bytes(), kv.len() * per_entry);
    println!(
        "kv storm: {} empty entries fit a {quota}-byte quota ({per_entry} bytes each)",
        kv.len()
    );
}

#[test]
fn a_64_mib_reason_is_refused_before_it_is_copied() {
    // Grows memory by 64 MiB and returns all of it as the deny reason.
    let limits = Limits {
        memory_bytes: 80 << 20,
        ..Limits::default()
    };
    let mut p = load_with(
        &unsigned_host(),
        &decide(
            "(drop (memory.grow (i32.const 1024)))
             (call $ret (i32.const 1) (i32.const 4096) (i32.const 67108864))",
        ),
        limits,
    )
    .unwrap();
    let before = allocated_by_this_thread();
    let f = failure(p.decide(&req("a", true)));
    let copied = allocated_by_this_thread() - before;
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{f}");
    assert!(f.detail.contains("too much data"), "{f}");
    println!("64 MiB reason: refused, {copied} bytes allocated on the host thread");
    assert!(
        copied < 4 << 20,
        "{copied} bytes allocated for a refused reason"
    );
}

#[test]
fn a_64_mib_log_line_is_refused_before_it_is_copied() {
    let limits = Limits {
        memory_bytes: 80 << 20,
        ..Limits::default()
    };
    let mut p = load_with(
        &unsigned_host(),
        &decide(&format!(
            "(drop (memory.grow (i32.const 1024)))
             (call $log (i32.const 1) (i32.const 4096) (i32.const 67108864))
             {ALLOW}"
        )),
        limits,
    )
    .unwrap();
    let before = allocated_by_this_thread();
    let f = failure(p.decide(&req("a", true)));
    let copied = allocated_by_this_thread() - before;
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{f}");
    assert!(
        copied < 4 << 20,
        "{copied} bytes allocated for a refused log line"
    );
}

/// Decision 1 stores a value of (quota − key − entry overhead) bytes under "k"; later ones call
/// `kv-get("k")` `$count` times (the request's point count).
fn big_kv_reader() -> Wat {
    let value = Limits::default().kv_quota_bytes - 1 - ENTRY_OVERHEAD_BYTES;
    decide(&format!(
        "(if (i32.eqz (global.get $n))
           (then
             (global.set $n (i32.const 1))
             (drop (memory.grow (i32.const 17)))
             (call $kv_set (i32.const 160) (i32.const 1) (i32.const 4096) (i32.const {value}) (i32.const 2048))
             (if (i32.load8_u (i32.const 2048)) (then unreachable))
             (return {ALLOW})))
         (block $done
           (loop $l
             (br_if $done (i32.eqz (local.get $count)))
             (local.set $count (i32.sub (local.get $count) (i32.const 1)))
             (call $kv_get (i32.const 160) (i32.const 1) (i32.const 2048))
             (br $l)))
         {ALLOW}"
    ))
}

fn with_points(n: usize) -> Request {
    let mut r = req("a", true);
    r.points = vec![Point::new("p", Value::Int(0)); n];
    r
}

#[test]
fn host_calls_pay_fuel_for_the_bytes_they_move() {
    let mut p = load(&big_kv_reader());
    assert_eq!(p.decide(&with_points(0)), Outcome::Allow);
    let value = (Limits::default().kv_quota_bytes - 1 - ENTRY_OVERHEAD_BYTES) as u64;
    // the kv-set that stored it paid for it
    assert!(
        p.stats().last_fuel_used >= value / BYTES_PER_FUEL,
        "{:?}",
        p.stats()
    );
    assert_eq!(p.decide(&with_points(1)), Outcome::Allow);
    let one_get = p.stats().last_fuel_used;
    assert!(
        one_get >= HOST_CALL_FUEL + value / BYTES_PER_FUEL,
        "{one_get}"
    );
    // ~262k fuel each: the 2M budget runs out after 7 of them, long before 10,000 host calls
    let f = failure(p.decide(&with_points(100)));
    assert_eq!(f.cause, FailureCause::OutOfFuel, "{f}");
    assert!(f.detail.contains("host call"), "{f}");
}

#[test]
fn wasi_calls_count_in_the_host_call_budget_and_random_is_capped() {
    // Reading the WASI clock forever used to be stopped only by fuel; now by the call budget.
    let mut p = load(&Wat {
        wasi: true,
        decide: "(loop $l (call $wall_now (i32.const 2000)) (br $l)) unreachable".into(),
        ..Wat::default()
    });
    let f = failure(p.decide(&req("a", true)));
    assert_eq!(f.cause, FailureCause::HostCallBudget, "{f}");

    // 32 random bytes are fine (and paid for); 60 MiB are refused before they are made.
    let random = |len: u64| Wat {
        wasi: true,
        decide: format!("(call $random (i64.const {len}) (i32.const 2000)) {ALLOW}"),
        ..Wat::default()
    };
    let mut p = load(&random(32));
    assert_eq!(p.decide(&req("a", true)), Outcome::Allow);
    let mut p = load(&random(60 << 20));
    let before = allocated_by_this_thread();
    let f = failure(p.decide(&req("a", true)));
    let allocated = allocated_by_this_thread() - before;
    assert_eq!(f.cause, FailureCause::HostCallBudget, "{f}");
    assert!(f.detail.contains("random bytes"), "{f}");
    assert!(allocated < 1 << 20, "{allocated}");
}

#[test]
fn wasi_imports_need_a_grant_in_the_load_config() {
    let w = Wat {
        wasi: true,
        ..Wat::default()
    };
    let e = load_with(&unsigned_host(), &w, Limits::default())
        .err()
        .expect("refused without a grant");
    assert!(matches!(e, LoadError::Contract(_)), "{e}");
    let e = e.to_string();
    assert!(e.contains(r#"wasi = ["clocks", "io", "random"]"#), "{e}");
    // one package short is still refused; exactly what it imports loads
    let grants = |names: &[&str]| Limits {
        wasi: WasiGrants::parse(names).unwrap(),
        ..Limits::default()
    };
    let e = load_with(&unsigned_host(), &w, grants(&["clocks", "io"]))
        .err()
        .expect("random not granted");
    assert!(e.to_string().contains("`wasi:random`"), "{e}");
    assert!(load_with(&unsigned_host(), &w, grants(&["clocks", "io", "random"])).is_ok());
    // a guest importing no WASI needs no grant (the positive control of the default)
    assert!(load_with(&unsigned_host(), &good(), Limits::default()).is_ok());
}

/// Denies with 8 letters made from 8 `wasi:random` bytes.
fn random_reason() -> Wat {
    Wat {
        wasi: true,
        decide: "(call $random (i64.const 8) (i32.const 2000))
                 (local.set 0 (i32.load (i32.const 2000)))
                 (local.set 1 (i32.const 0))
                 (loop $l
                   (i32.store8 (i32.add (local.get 0) (local.get 1))
                     (i32.add (i32.const 97)
                       (i32.and (i32.load8_u (i32.add (local.get 0) (local.get 1))) (i32.const 15))))
                   (local.set 1 (i32.add (local.get 1) (i32.const 1)))
                   (br_if $l (i32.lt_u (local.get 1) (i32.const 8))))
                 (call $ret (i32.const 1) (local.get 0) (i32.const 8))"
            .into(),
        ..Wat::default()
    }
}

#[test]
fn wasi_random_is_deterministic_per_decision_unless_real_randomness_is_granted() {
    let reason = |p: &mut Plugin, r: &Request| match p.decide(r) {
        Outcome::Deny(s) => s,
        other => panic!("{other:?}"),
    };
    let a = req("a", true);
    let mut later = req("a", true);
    later.time_ms += 1;
    let mut p = load(&random_reason());
    let first = reason(&mut p, &a);
    assert_eq!(first.len(), 8);
    // the same decision replayed, in this instance or a new one: the same bytes
    assert_eq!(reason(&mut p, &a), first);
    assert_eq!(reason(&mut load(&random_reason()), &a), first);
    // another time (or device): other bytes
    assert_ne!(reason(&mut p, &later), first);
    // real randomness, when granted: two runs of the same decision differ
    let mut real = load_with(
        &unsigned_host(),
        &random_reason(),
        Limits {
            wasi: WasiGrants::all(),
            real_random: true,
            ..Limits::default()
        },
    )
    .unwrap();
    assert_ne!(reason(&mut real, &a), reason(&mut real, &a));
}

#[test]
fn worst_single_host_call_overshoot_is_measured() {
    // The most expensive single host call under the default limits: kv-get of a value filling
    // the whole 1 MiB quota (copied out of the state, then into guest memory). The epoch
    // deadline cannot interrupt a host call, so this is the overshoot past the deadline.
    let mut p = load(&big_kv_reader());
    assert_eq!(p.decide(&with_points(0)), Outcome::Allow);
    let time = |p: &mut Plugin, n: usize| {
        let r = with_points(n);
        let mut best = std::time::Duration::MAX;
        for _ in 0..15 {
            let t = std::time::Instant::now();
            assert_eq!(p.decide(&r), Outcome::Allow);
            best = best.min(t.elapsed());
        }
        best
    };
    let none = time(&mut p, 0);
    let one = time(&mut p, 1);
    println!(
        "worst single host call (kv-get of a 1 MiB value): {:?} ({:?} with, {:?} without); fuel {}",
        one.saturating_sub(none),
        one,
        none,
        p.stats().last_fuel_used
    );
    // the cause, not the time, is asserted: the call was paid for in fuel
    assert!(p.stats().last_fuel_used > (1 << 20) / BYTES_PER_FUEL / 2);
}
