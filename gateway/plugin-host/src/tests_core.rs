//! Contract 0.2.0: hand-written core modules, well-behaved and hostile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::*;

const IMPORTS: &str = r#"
  (import "warden:policy/host@0.2.0" "intern" (func $intern (param i32 i32) (result i32)))
  (import "warden:policy/host@0.2.0" "verdict-text" (func $verdict_text (param i32 i32)))
  (import "warden:policy/host@0.2.0" "config" (func $config (param i32 i32) (result i32)))
  (import "warden:policy/host@0.2.0" "text" (func $text (param i32 i32 i32 i32) (result i32)))
"#;

/// A core plugin: request area at 4096; data "hvac"@64, "not hvac"@80, config copied to 512.
/// `$hvac` holds the symbol interned in init.
fn module(init: &str, decide: &str, area: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (global $hvac (mut i32) (i32.const 0))
  (data (i32.const 64) "hvac")
  (data (i32.const 80) "not hvac")
  (func (export "warden:policy@0.2.0#request-area") (result i32) {area})
  (func (export "warden:policy@0.2.0#init") (result i32)
    (global.set $hvac (call $intern (i32.const 64) (i32.const 4)))
    {init})
  (func (export "warden:policy@0.2.0#decide") (result i32) {decide}))"#
    ))
    .unwrap()
}

/// Allows zone `hvac`, denies the rest with "not hvac".
fn zone_rule() -> Vec<u8> {
    module(
        "(i32.const 0)",
        "(if (result i32) (i32.eq (i32.load (i32.const 4124)) (global.get $hvac))
           (then (i32.const 0))
           (else (call $verdict_text (i32.const 80) (i32.const 8)) (i32.const 1)))",
        "(i32.const 4096)",
    )
}

fn req(zone: &str) -> Request {
    crate::tests::req(zone, false)
}

fn load(bytes: &[u8]) -> Result<Plugin, LoadError> {
    let host = crate::tests::unsigned_host();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, bytes).unwrap();
    let prepared = host.prepare("p", &path)?;
    assert_eq!(prepared.contract, "0.2.0");
    host.instantiate(&prepared, r#"{"x":1}"#, Limits::default(), Kv::default())
}

use crate::tests::failure;

#[test]
fn a_core_plugin_reads_its_request_area() {
    let mut p = load(&zone_rule()).unwrap();
    for _ in 0..3 {
        assert_eq!(p.decide(&req("hvac")), Outcome::Allow);
        assert_eq!(p.decide(&req("lobby")), Outcome::Deny("not hvac".into()));
    }
    assert!(p.stats().last_fuel_used > 0);
}

#[test]
fn init_reads_its_config_and_its_error_reaches_the_operator() {
    // copies the config to 512 and fails with it as the message
    let m = module(
        "(drop (call $config (i32.const 512) (i32.const 64)))
         (call $verdict_text (i32.const 512) (i32.const 7)) (i32.const 1)",
        "(i32.const 0)",
        "(i32.const 4096)",
    );
    let e = load(&m).err().unwrap();
    assert!(
        matches!(&e, LoadError::Config(m) if m == r#"{"x":1}"#),
        "{e}"
    );
}

#[test]
fn addresses_outside_memory_are_malformed_not_a_crash() {
    // a reason "at" the last byte of memory, 8 bytes long
    let m = module(
        "(i32.const 0)",
        "(call $verdict_text (i32.const 65535) (i32.const 8)) (i32.const 1)",
        "(i32.const 4096)",
    );
    let mut p = load(&m).unwrap();
    let f = failure(p.decide(&req("hvac")));
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{}", f.detail);
    assert!(
        f.detail.contains("outside the plugin's memory"),
        "{}",
        f.detail
    );
    // a text copied to an address past the end
    let m = module(
        "(i32.const 0)",
        "(drop (call $text (i32.const 0) (i32.const 0) (i32.const -16) (i32.const 64))) (i32.const 0)",
        "(i32.const 4096)",
    );
    let f = failure(load(&m).unwrap().decide(&req("hvac")));
    assert_eq!(f.cause, FailureCause::MalformedReturn, "{}", f.detail);
}

#[test]
fn a_huge_reason_is_cut_before_it_is_copied() {
    // claims a 2 GiB reason from address 0 of a 64 KiB memory: only the first KiB is read
    let m = module(
        "(i32.const 0)",
        "(call $verdict_text (i32.const 64) (i32.const 0x7fffffff)) (i32.const 2)",
        "(i32.const 4096)",
    );
    let mut p = load(&m).unwrap();
    match p.decide(&req("hvac")) {
        Outcome::Quarantine(r) => {
            assert!(r.starts_with("hvac"), "{r:?}");
            assert!(r.len() <= 1024, "{}", r.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unknown_verdict_code_is_malformed() {
    let m = module("(i32.const 0)", "(i32.const 7)", "(i32.const 4096)");
    let f = failure(load(&m).unwrap().decide(&req("hvac")));
    assert_eq!(f.cause, FailureCause::MalformedReturn);
    assert!(f.detail.contains("not a verdict"), "{}", f.detail);
}

#[test]
fn a_request_area_outside_memory_is_refused_at_load() {
    for area in ["(i32.const 65500)", "(i32.const -8)", "(i32.const 4097)"] {
        let e = load(&module("(i32.const 0)", "(i32.const 0)", area))
            .err()
            .unwrap();
        assert!(
            matches!(&e, LoadError::Init(f) if f.detail.contains("request area")),
            "{area}: {e}"
        );
    }
}

#[test]
fn request_text_outside_decide_is_refused() {
    let m = module(
        "(drop (call $text (i32.const 0) (i32.const 0) (i32.const 512) (i32.const 64))) (i32.const 0)",
        "(i32.const 0)",
        "(i32.const 4096)",
    );
    let e = load(&m).err().unwrap();
    assert!(
        matches!(&e, LoadError::Init(f) if f.detail.contains("outside decide")),
        "{e}"
    );
}

#[test]
fn other_versions_and_imports_are_refused_with_a_clear_message() {
    let other = wat::parse_str(
        r#"(module
  (import "warden:policy/host@0.3.0" "intern" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1))"#,
    )
    .unwrap();
    let e = load(&other).err().unwrap();
    assert!(
        matches!(&e, LoadError::Contract(m) if m.contains("0.3.0") && m.contains("0.2.0")),
        "{e}"
    );
    let wasi = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1))"#,
    )
    .unwrap();
    let e = load(&wasi).err().unwrap();
    assert!(
        matches!(&e, LoadError::Contract(m) if m.contains("wasi_snapshot_preview1")),
        "{e}"
    );
    let future = wat::parse_str(
        r#"(module (memory (export "memory") 1)
  (func (export "warden:policy@0.9.0#decide") (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let e = load(&future).err().unwrap();
    assert!(
        matches!(&e, LoadError::Contract(m) if m.contains("0.9.0")),
        "{e}"
    );
}

#[test]
fn a_core_plugin_that_loops_runs_out_of_fuel_and_is_replaced() {
    let m = module(
        "(i32.const 0)",
        "(loop $l (br $l)) (i32.const 0)",
        "(i32.const 4096)",
    );
    let mut p = load(&m).unwrap();
    let f = failure(p.decide(&req("hvac")));
    assert_eq!(f.cause, FailureCause::OutOfFuel, "{}", f.detail);
    assert!(p.wait_ready(std::time::Duration::from_secs(10)));
    assert_eq!(p.stats().restarts, 1);
}

#[test]
fn deciding_in_place_gives_the_request_back_unchanged() {
    let mut p = load(&zone_rule()).unwrap();
    for zone in ["lobby", "hvac", "lobby"] {
        let mut r = Box::new(req(zone));
        let before = r.clone();
        let want = p.decide(&before);
        assert_eq!(p.decide_in_place(&mut r), want, "{zone}");
        assert_eq!(r, before, "{zone}");
    }
    // a failure gives it back too
    let m = module("(i32.const 0)", "(i32.const 7)", "(i32.const 4096)");
    let mut p = load(&m).unwrap();
    let mut r = Box::new(req("hvac"));
    let before = r.clone();
    assert!(matches!(p.decide_in_place(&mut r), Outcome::Failed(_)));
    assert_eq!(r, before);
}

#[test]
fn recycling_swaps_in_a_fresh_instance_and_keeps_the_state() {
    // an instance that "ages": it allows its first 5 decisions and denies the rest; it also
    // counts its decisions in the key-value state under "n"
    let aging = wat::parse_str(
        r#"(module
  (import "warden:policy/host@0.2.0" "verdict-text" (func $say (param i32 i32)))
  (import "warden:policy/host@0.2.0" "kv-get" (func $get (param i32 i32 i32 i32) (result i64)))
  (import "warden:policy/host@0.2.0" "kv-set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 64) "aged")
  (data (i32.const 80) "n")
  (func (export "warden:policy@0.2.0#request-area") (result i32) (i32.const 4096))
  (func (export "warden:policy@0.2.0#init") (result i32) (i32.const 0))
  (func (export "warden:policy@0.2.0#decide") (result i32)
    ;; n += 1 in the key-value state (a 4-byte value at 96)
    (drop (call $get (i32.const 80) (i32.const 1) (i32.const 96) (i32.const 4)))
    (i32.store (i32.const 96) (i32.add (i32.load (i32.const 96)) (i32.const 1)))
    (drop (call $set (i32.const 80) (i32.const 1) (i32.const 96) (i32.const 4)))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (if (result i32) (i32.gt_u (global.get $calls) (i32.const 5))
      (then (call $say (i32.const 64) (i32.const 4)) (i32.const 1))
      (else (i32.const 0)))))"#,
    )
    .unwrap();
    let host = crate::tests::unsigned_host();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aging.wasm");
    std::fs::write(&path, aging).unwrap();
    let prepared = host.prepare("aging", &path).unwrap();
    let n = |p: &Plugin| u32::from_le_bytes(p.kv().unwrap().get("n").unwrap().try_into().unwrap());
    // positive control: without recycling the sixth decision is refused
    let mut p = host
        .instantiate(&prepared, "{}", Limits::default(), Kv::default())
        .unwrap();
    for _ in 0..5 {
        assert_eq!(p.decide(&req("hvac")), Outcome::Allow);
    }
    assert_eq!(p.decide(&req("hvac")), Outcome::Deny("aged".into()));
    // recycled every 3 decisions it never ages, and the state counts every decision
    let limits = Limits {
        recycle_after: 3,
        ..Limits::default()
    };
    let mut p = host
        .instantiate(&prepared, "{}", limits, Kv::default())
        .unwrap();
    for i in 0..12 {
        assert_eq!(p.decide(&req("hvac")), Outcome::Allow, "decision {i}");
        p.wait_recycle(std::time::Duration::from_secs(10));
    }
    assert_eq!(p.stats().recycles, 4);
    assert_eq!(p.stats().failures, 0);
    assert_eq!(n(&p), 12, "the live state is handed to each fresh instance");
}

/// Allows only messages under security `zwave-s2-access-control` (symbol at 88 with its flag at
/// 96) whose top anomaly feature, read with `text(ANOMALY_FEATURE)`, is 4 bytes long (`rate`).
#[test]
fn security_label_and_anomaly_feature_are_in_the_area() {
    let label = "zwave-s2-access-control";
    let bytes = wat::parse_str(format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (global $s2ac (mut i32) (i32.const 0))
  (data (i32.const 64) "{label}")
  (data (i32.const 128) "no")
  (func (export "warden:policy@0.2.0#request-area") (result i32) (i32.const 4096))
  (func (export "warden:policy@0.2.0#init") (result i32)
    (global.set $s2ac (call $intern (i32.const 64) (i32.const {len})))
    (i32.const 0))
  (func (export "warden:policy@0.2.0#decide") (result i32)
    (if (result i32)
      (i32.and
        (i32.and (i32.eq (i32.load8_u (i32.const 4192)) (i32.const 1))
                 (i32.eq (i32.load (i32.const 4184)) (global.get $s2ac)))
        (i32.eq (call $text (i32.const 13) (i32.const 0) (i32.const 256) (i32.const 16))
                (i32.const 4)))
      (then (i32.const 0))
      (else (call $verdict_text (i32.const 128) (i32.const 2)) (i32.const 1)))))"#,
        len = label.len()
    ))
    .unwrap();
    assert_eq!(warden_plugin_abi::off::SECURITY, 88);
    assert_eq!(warden_plugin_abi::off::HAS_SECURITY, 96);
    let mut p = load(&bytes).unwrap();
    let mut r = req("hvac");
    r.observed.anomaly_feature = Some("rate".into());
    assert_eq!(p.decide(&r), Outcome::Deny("no".into()), "no label");
    r.security = Some("zwave-s0".into());
    assert_eq!(p.decide(&r), Outcome::Deny("no".into()), "another label");
    r.security = Some(label.into());
    assert_eq!(p.decide(&r), Outcome::Allow);
    r.observed.anomaly_feature = None;
    assert_eq!(p.decide(&r), Outcome::Deny("no".into()), "no feature");
    // the area is rewritten whole: the label does not leak into the next message
    r.observed.anomaly_feature = Some("rate".into());
    r.security = None;
    assert_eq!(p.decide(&r), Outcome::Deny("no".into()), "label cleared");
}
