//! The SDK's native side: the mock host keeps the gateway's rules, the JSONL reader reads the
//! gateway's request format, and the harness checks expectations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use warden_sdk::testing::{self, ExpectedVerdict, RequestBuilder};
use warden_sdk::{
    Assurance, Direction, Header, Kind, KvError, Level, Policy, Request, Status, Symbol, SymbolMap,
    SymbolSet, Value, Verdict, config,
};

#[test]
fn symbols_are_stable_and_unknown_names_read_as_other() {
    let a = warden_sdk::symbol("temperature");
    let b = warden_sdk::symbol("humidity");
    assert_ne!(a, b);
    assert!(a.is_known() && b.is_known());
    assert_eq!(warden_sdk::symbol("temperature"), a);
    assert_eq!(warden_sdk::symbol_text(a).as_deref(), Some("temperature"));
    assert_eq!(warden_sdk::symbol_text(Symbol::OTHER), None);
    assert_eq!(warden_sdk::symbol_text(Symbol(9999)), None);

    let m = RequestBuilder::uplink("lorawan:01")
        .zone("hvac")
        .role("sensor")
        .point("temperature", 1)
        .point("co2", 400)
        .build();
    let r = &m.request;
    // Names the plugin never interned are OTHER, exactly as the gateway answers.
    assert_eq!(r.zone(), Symbol::OTHER);
    assert_eq!(r.role(), Some(Symbol::OTHER));
    assert_eq!(r.point_name(0), a);
    assert_eq!(r.point_name(1), Symbol::OTHER);
    assert_eq!(r.point_name(2), Symbol::OTHER);
    assert_eq!(r.find_point(a), Some(0));
    assert_eq!(r.find_point(b), None);
    assert_eq!(r.find_point(Symbol::OTHER), None);
    assert_eq!(r.point_name_text(1).as_deref(), Some("co2"));
    assert_eq!(r.point_name_text(2), None);
    // Interning later makes the same request's names known.
    let hvac = warden_sdk::symbol("hvac");
    assert_eq!(r.zone(), hvac);
    let names: Vec<Symbol> = r.points(&m.header).map(|(_, s)| s).collect();
    assert_eq!(names, [a, Symbol::OTHER]);
}

#[test]
fn the_symbol_table_is_bounded() {
    for i in 0..4096 {
        assert!(warden_sdk::symbol(&format!("n{i}")).is_known(), "{i}");
    }
    assert_eq!(warden_sdk::symbol("one-too-many"), Symbol::OTHER);
    assert!(
        warden_sdk::symbol("n17").is_known(),
        "known names still resolve"
    );
    testing::reset();
    assert!(warden_sdk::symbol("one-too-many").is_known());
}

#[test]
fn kv_keeps_the_hosts_limits() {
    assert_eq!(warden_sdk::kv_get("a"), None);
    warden_sdk::kv_set("a", b"12345").unwrap();
    assert_eq!(warden_sdk::kv_get("a").as_deref(), Some(&b"12345"[..]));
    assert_eq!(testing::kv_used(), 6);
    assert_eq!(
        warden_sdk::kv_set(&"k".repeat(257), b""),
        Err(KvError::KeyTooLarge)
    );
    warden_sdk::kv_set(&"k".repeat(256), b"").unwrap();
    testing::set_kv_quota(300);
    // Replacing a value counts only the difference.
    warden_sdk::kv_set("a", b"123456789").unwrap();
    assert_eq!(testing::kv_used(), 256 + 10);
    assert_eq!(
        warden_sdk::kv_set("b", &[0; 40]),
        Err(KvError::QuotaExceeded)
    );
    warden_sdk::kv_delete(&"k".repeat(256));
    warden_sdk::kv_set("b", &[0; 40]).unwrap();
    warden_sdk::kv_delete("missing");
    assert_eq!(
        testing::kv_entries(),
        vec![
            ("a".to_owned(), b"123456789".to_vec()),
            ("b".to_owned(), vec![0; 40])
        ]
    );
}

#[test]
fn log_and_clock_are_recorded() {
    testing::set_now_ms(42);
    assert_eq!(warden_sdk::now_ms(), 42);
    warden_sdk::log(Level::Warn, "careful");
    assert_eq!(testing::logs(), vec![(Level::Warn, "careful".to_owned())]);
}

/// The line from the gateway's own request.rs test, plus every optional field.
const FULL: &str = r#"{"device":{"id":"modbus:tcp-1-u1","zone":"hvac","role":"actuator","status":"pending","manufacturer":"Acme","model":"T-100","firmware":"2.1"},"direction":"downlink","kind":"command","name":"set_setpoint","points":[{"name":"value","value":21.5,"unit":"C"},{"name":"raw","value":{"hex":"00ff"}},{"name":"n","value":3},{"name":"on","value":true},{"name":"label","value":"x"}],"assurance":"shared-key","fresh":true,"principal":"mqtt:operator","time_ms":1700000000000,"observed":{"rate_per_min":5,"messages":10,"bytes":300,"denied":1,"last_seen_ms":1699999999000,"anomaly_score":0.5}}"#;

#[test]
fn jsonl_reads_the_gateway_request_format() {
    let (m, expect) = testing::parse_line(FULL).unwrap();
    assert_eq!(expect, None);
    let h = m.header;
    assert_eq!(h.direction, Direction::Downlink);
    assert_eq!(h.kind, Kind::Command);
    assert_eq!(h.assurance, Assurance::SharedKey);
    assert!(h.fresh);
    assert_eq!(h.point_count, 5);
    assert_eq!(h.time_ms, 1_700_000_000_000);
    let r = &m.request;
    assert_eq!(r.device_id(), "modbus:tcp-1-u1");
    assert_eq!(r.zone_text(), "hvac");
    assert_eq!(r.role_text().as_deref(), Some("actuator"));
    assert_eq!(r.status(), Status::Pending);
    assert_eq!(r.manufacturer().as_deref(), Some("Acme"));
    assert_eq!(r.model().as_deref(), Some("T-100"));
    assert_eq!(r.firmware().as_deref(), Some("2.1"));
    assert_eq!(r.name_text(), "set_setpoint");
    assert_eq!(r.principal().as_deref(), Some("mqtt:operator"));
    assert_eq!(r.point_value(0), Some(Value::Float(21.5)));
    assert_eq!(r.point_unit(0).as_deref(), Some("C"));
    assert_eq!(r.point_value(1), Some(Value::Bytes(vec![0, 255])));
    assert_eq!(r.point_value(2), Some(Value::Int(3)));
    assert_eq!(r.point_value(3), Some(Value::Bool(true)));
    assert_eq!(r.point_value(4), Some(Value::Text("x".into())));
    assert_eq!(r.point_value(5), None);
    let o = r.observed();
    assert_eq!(
        (o.rate_per_min, o.messages, o.bytes, o.denied),
        (5, 10, 300, 1)
    );
    assert_eq!(o.last_seen_ms, 1_699_999_999_000);
    assert_eq!(o.anomaly_score, Some(0.5));
    // The protocol comes from the id; it resolves once interned.
    let modbus = warden_sdk::symbol("modbus");
    assert_eq!(r.protocol(), modbus);
}

#[test]
fn jsonl_defaults_and_errors() {
    let (m, _) = testing::parse_line(
        r#"{"device":{"id":"ble:aa"},"direction":"uplink","kind":"telemetry","time_ms":1}"#,
    )
    .unwrap();
    assert_eq!(m.request.zone_text(), "default");
    assert_eq!(m.request.status(), Status::Active);
    assert_eq!(m.request.role(), None);
    assert_eq!(m.header.assurance, Assurance::None);
    assert!(!m.header.fresh);
    assert_eq!(m.header.point_count, 0);
    assert_eq!(m.request.name(), Symbol::OTHER);

    for (line, want) in [
        (
            r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"oops":1}"#,
            "oops",
        ),
        (
            r#"{"device":{"id":"a:b","colour":"red"},"direction":"uplink","kind":"telemetry","time_ms":1}"#,
            "colour",
        ),
        (
            r#"{"device":{"id":"a:b"},"direction":"up","kind":"telemetry","time_ms":1}"#,
            "up",
        ),
        (
            r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry"}"#,
            "time_ms",
        ),
        (
            r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"points":[{"name":"x","value":{"hex":"abc"}}]}"#,
            "hex",
        ),
        (
            r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"points":[{"name":"x","value":[1]}]}"#,
            "a bool, number, string",
        ),
        (
            r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"expect":{"verdict":"maybe"}}"#,
            "expect",
        ),
    ] {
        let e = testing::parse_line(line).unwrap_err();
        assert!(e.contains(want), "{line}: {e}");
    }
    let e = testing::read_jsonl("\n{\"device\":{\"id\":\"a:b\"}}\n").unwrap_err();
    assert!(e.starts_with("line 2:"), "{e}");
}

#[test]
fn expectations_are_read_and_compared() {
    let line = r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"expect":{"verdict":"deny","reason_contains":"too hot"}}"#;
    let (_, e) = testing::parse_line(line).unwrap();
    let e = e.unwrap();
    assert_eq!(e.verdict, ExpectedVerdict::Deny);
    assert_eq!(e.mismatch(&Verdict::deny("way too hot")), None);
    assert_eq!(
        e.mismatch(&Verdict::deny("cold")).unwrap(),
        r#"expected deny with a reason containing "too hot", got deny ("cold")"#
    );
    assert!(e.mismatch(&Verdict::quarantine("too hot")).is_some());
    assert!(e.mismatch(&Verdict::Allow).is_some());
}

/// Denies uplinks whose `temperature` point is above the configured limit; counts decisions.
struct Hot {
    limit: f64,
    temperature: Symbol,
    seen: u32,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HotConfig {
    limit: f64,
}

impl Policy for Hot {
    fn init(c: &str) -> Result<Self, String> {
        let c: HotConfig = config::parse(c)?;
        Ok(Self {
            limit: c.limit,
            temperature: warden_sdk::symbol("temperature"),
            seen: 0,
        })
    }
    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        self.seen += 1;
        assert_eq!(
            warden_sdk::now_ms(),
            h.time_ms,
            "the clock reads the message time"
        );
        let t = req
            .find_point(self.temperature)
            .and_then(|i| req.point_value(i));
        match t.and_then(|v| v.as_f64()) {
            Some(t) if t > self.limit => Verdict::Deny(format!("too hot: {t} (#{})", self.seen)),
            _ => Verdict::Allow,
        }
    }
}

#[test]
fn check_jsonl_runs_lines_in_order_and_reports_every_mismatch() {
    let good = concat!(
        r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":5,"points":[{"name":"temperature","value":30}],"expect":{"verdict":"deny","reason_contains":"(#1)"}}"#,
        "\n\n",
        r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":6,"points":[{"name":"temperature","value":20}],"expect":{"verdict":"allow"}}"#,
        "\n",
        r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":7,"points":[{"name":"temperature","value":40}]}"#,
        "\n",
        r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":8,"points":[{"name":"temperature","value":50}],"expect":{"verdict":"deny","reason_contains":"(#4)"}}"#,
    );
    assert_eq!(testing::check_jsonl::<Hot>(r#"{"limit":25}"#, good), Ok(3));

    let bad = good
        .replace(r#""verdict":"allow""#, r#""verdict":"quarantine""#)
        .replace("(#4)", "(#9)");
    let e = testing::check_jsonl::<Hot>(r#"{"limit":25}"#, &bad).unwrap_err();
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.contains("line 3: expected quarantine, got allow"), "{e}");
    assert!(
        e.contains("line 5: expected deny with a reason containing \"(#9)\""),
        "{e}"
    );

    let e = testing::check_jsonl::<Hot>(r#"{"limit":"hot"}"#, good).unwrap_err();
    assert!(e.starts_with("init failed: invalid config:"), "{e}");
}

#[test]
fn config_helpers() {
    #[derive(serde::Deserialize, Debug, Default)]
    struct C {
        #[serde(default)]
        n: u32,
    }
    assert_eq!(config::parse::<C>("").unwrap().n, 0);
    assert_eq!(config::parse::<C>("  ").unwrap().n, 0);
    let e = config::parse::<C>("{\"n\": -1}").unwrap_err();
    assert!(
        e.starts_with("invalid config: ") && e.contains("line 1"),
        "{e}"
    );

    let set = SymbolSet::intern(&["b", "a", "b"]);
    assert_eq!(set.len(), 2);
    assert!(set.contains(warden_sdk::symbol("a")));
    assert!(!set.contains(warden_sdk::symbol("c")));
    assert!(!set.contains(Symbol::OTHER));

    let map = SymbolMap::intern([("x", 1), ("y", 2), ("x", 3)]);
    assert_eq!(map.len(), 2);
    assert_eq!(
        map.get(warden_sdk::symbol("x")),
        Some(&1),
        "the first value wins"
    );
    assert_eq!(map.get(warden_sdk::symbol("y")), Some(&2));
    assert_eq!(map.get(warden_sdk::symbol("z")), None);
    assert_eq!(map.get(Symbol::OTHER), None);
}

#[test]
fn assurance_is_ordered_and_named() {
    assert!(Assurance::None < Assurance::Channel);
    assert!(Assurance::Channel < Assurance::SharedKey);
    assert!(Assurance::SharedKey < Assurance::Certificate);
    for a in Assurance::ALL {
        assert_eq!(Assurance::parse(a.as_str()), Some(a));
        assert_eq!(a.to_string(), a.as_str());
    }
    assert_eq!(Assurance::parse("strong"), None);
}

#[test]
fn the_short_expect_form_and_comment_lines() {
    let line = |e: &str| {
        format!(
            r#"{{"device":{{"id":"a:b"}},"direction":"uplink","kind":"telemetry","time_ms":1,"expect":{e}}}"#
        )
    };
    let (_, e) = testing::parse_line(&line(r#""deny: too hot""#)).unwrap();
    let e = e.unwrap();
    assert_eq!(e.verdict, ExpectedVerdict::Deny);
    assert_eq!(e.reason_contains.as_deref(), Some("too hot"));
    let (_, e) = testing::parse_line(&line(r#""allow""#)).unwrap();
    assert_eq!(e.unwrap().verdict, ExpectedVerdict::Allow);
    let (_, e) = testing::parse_line(&line(r#"{"verdict":"failed"}"#)).unwrap();
    assert_eq!(e.unwrap().verdict, ExpectedVerdict::Failed);
    let err = testing::parse_line(&line(r#""maybe""#)).unwrap_err();
    assert!(err.contains("unknown verdict `maybe`"), "{err}");

    let text = format!(
        "# a comment\n\n  # indented comment\n{}\n",
        line(r#""allow""#)
    );
    let cases = testing::read_jsonl(&text).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].line, 4);
}

/// Panics on a `boom` command, counts its decisions (to see restarts), keeps a kv counter.
struct Fragile {
    boom: Symbol,
    decisions: u32,
}

impl Policy for Fragile {
    fn init(_: &str) -> Result<Self, String> {
        Ok(Self {
            boom: warden_sdk::symbol("boom"),
            decisions: 0,
        })
    }
    fn decide(&mut self, _: &Header, req: &Request) -> Verdict {
        self.decisions += 1;
        let n = warden_sdk::kv_get("n").map_or(0, |v| v[0]) + 1;
        warden_sdk::kv_set("n", &[n]).unwrap();
        if req.name() == self.boom {
            panic!("boom on purpose");
        }
        Verdict::Deny(format!("instance decision {}, total {n}", self.decisions))
    }
}

#[test]
fn a_panic_is_a_failed_outcome_and_restarts_the_instance() {
    let cmd = |name: &str, expect: &str| {
        format!(
            r#"{{"device":{{"id":"a:b"}},"direction":"downlink","kind":"command","name":"{name}","time_ms":1,"expect":{expect}}}"#
        )
    };
    let text = [
        cmd("x", r#""deny: instance decision 1, total 1""#),
        cmd(
            "boom",
            r#"{"verdict":"failed","reason_contains":"boom on purpose"}"#,
        ),
        // A new instance (its own count restarts), the same key-value state.
        cmd("x", r#""deny: instance decision 1, total 3""#),
    ]
    .join("\n");
    assert_eq!(testing::check_jsonl::<Fragile>("{}", &text), Ok(3));

    let mut p: Fragile = testing::init("{}").unwrap();
    let m = RequestBuilder::command("a:b", "boom").build();
    assert_eq!(
        testing::try_decide(&mut p, &m),
        testing::Outcome::Failed("boom on purpose".into())
    );
}
