//! Behaviour baselines in the real gateway: a flooding device is quarantined by the built-in rule
//! with a reason on MQTT and in the audit log, its commands are denied, and an operator's release
//! lets its traffic flow again; a spoofed value alerts, then quarantines after the configured count
//! (normal traffic before it raised nothing); the baseline survives a restart in the middle of
//! learning; the mass-quarantine guard trips at 40 % of a zone and says so; a plugin decides on
//! `anomaly-score`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

/// Normal readings: the sim thermostat's own range (19–23 °C), spread deterministically and
/// without a period (a sequence that repeats itself exactly every 41 readings, as this once did,
/// is what the replay detector is for).
fn normal(dev: &str, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|i| {
            let h = (i ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            format!("{dev} temperature={:.1}", 19.0 + (h % 41) as f64 / 10.0)
        })
        .collect()
}

fn config(p: &Ports, extra: &str) -> String {
    format!(
        r#"{base}
[behaviour]
learning_s = 0
learning_messages = 30
window_s = 120

[behaviour.guard]
share = 0.4
window_s = 600
{extra}
"#,
        base = base_config(p)
    )
}

fn device(addr: &str, zone: &str, interval_ms: u64) -> String {
    format!(
        "[[sim.devices]]\naddress = \"{addr}\"\nkind = \"thermostat\"\ninterval_ms = {interval_ms}\nprofile = \"thermostat\"\nzone = \"{zone}\"\nprovision = true\n"
    )
}

fn detail(r: &serde_json::Value) -> serde_json::Value {
    match &r["detail"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
        v => v.clone(),
    }
}

fn behaviour_events(sub: &Subscriber, dev: &str) -> Vec<serde_json::Value> {
    sub.lines()
        .into_iter()
        .filter(|(t, _)| t == &format!("warden/devices/{dev}/behaviour"))
        .map(|(_, p)| json(&p))
        .collect()
}

fn statuses(sub: &Subscriber, dev: &str) -> Vec<serde_json::Value> {
    sub.lines()
        .into_iter()
        .filter(|(t, _)| t == &format!("warden/devices/{dev}/status"))
        .map(|(_, p)| json(&p))
        .collect()
}

#[test]
fn a_flooding_device_is_quarantined_with_a_reason_and_released_by_an_operator() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, config(&p, &device("flood", "default", 500))).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let mq = |extra: &[&str]| operator_args(&dd, p.mqtt, extra);
    let sub = Subscriber::spawn(&mq(&["-t", "warden/#"]), &t.path().join("sub.txt"));
    // learning: the device's own telemetry every 500 ms, 30 messages
    sub.wait_lines(Duration::from_secs(60), "30 learning messages", |l| {
        l.iter()
            .filter(|(t, _)| t == "warden/devices/sim:flood/telemetry/temperature")
            .count()
            >= 32
    });
    assert!(
        behaviour_events(&sub, "sim:flood").is_empty(),
        "normal traffic raised a behaviour event"
    );

    // a flood: batches of 1000 messages as fast as the control port takes them, until the
    // device is quarantined (about 1,360 in one minute reach the rule against its usual 120; a
    // loaded machine may spread a batch across a minute boundary, so the batch count is not fixed)
    let quarantined = |l: &[(String, String)]| {
        l.iter().any(|(t, p)| {
            t == "warden/devices/sim:flood/status" && json(p)["status"] == "quarantined"
        })
    };
    for _ in 0..10 {
        g.sim(&normal("flood", 1000));
        if quarantined(&sub.lines()) {
            break;
        }
    }
    let lines = sub.wait_lines(
        Duration::from_secs(30),
        "the quarantined status",
        quarantined,
    );
    let st = lines
        .iter()
        .filter(|(t, _)| t == "warden/devices/sim:flood/status")
        .map(|(_, p)| json(p))
        .find(|v| v["status"] == "quarantined")
        .unwrap();
    let reason = st["reason"].as_str().unwrap();
    assert!(reason.starts_with("message rate "), "{reason}");
    assert!(reason.contains("× its usual for "), "{reason}");
    let ev = sub.wait_lines(Duration::from_secs(10), "the behaviour event", |l| {
        l.iter().any(|(t, p)| {
            t == "warden/devices/sim:flood/behaviour" && json(p)["event"] == "quarantine"
        })
    });
    let ev = ev
        .iter()
        .filter(|(t, _)| t == "warden/devices/sim:flood/behaviour")
        .map(|(_, p)| json(p))
        .find(|v| v["event"] == "quarantine")
        .unwrap();
    assert_eq!(ev["feature"], "rate");

    // its commands are denied
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(mq(&[
            "-t",
            "warden/devices/sim:flood/cmd",
            "-m",
            r#"{"id":"c-q","command":"set_setpoint","args":{"value":20}}"#,
        ]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let l = sub.wait_lines(Duration::from_secs(10), "the command's result", |l| {
        l.iter()
            .any(|(t, _)| t == "warden/devices/sim:flood/cmd/result")
    });
    let (_, r) = l
        .iter()
        .find(|(t, _)| t == "warden/devices/sim:flood/cmd/result")
        .unwrap();
    let r = json(r);
    assert_eq!(r["outcome"], "denied", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("quarantined"), "{r}");

    // the audit log names the rule and the features
    let recs = audit_records(&dd);
    let q = recs
        .iter()
        .find(|r| {
            r["device"] == "sim:flood" && r["action"] == "uplink" && r["verdict"] == "quarantine"
        })
        .expect("no quarantine decision in the audit log");
    assert_eq!(q["decider"], "builtin:behaviour");
    let d = detail(q);
    assert_eq!(d["cause"], "anomaly");
    assert_eq!(d["behaviour"]["features"][0]["feature"], "rate");
    assert!(["count", "score"].contains(&d["behaviour"]["rule"].as_str().unwrap()));
    assert!(d["behaviour"]["score"].as_f64().unwrap() >= 0.5);
    let status_change = recs
        .iter()
        .find(|r| r["device"] == "sim:flood" && r["action"] == "quarantine")
        .expect("no status change record");
    assert_eq!(status_change["actor"], "builtin:behaviour");

    // the operator releases it with a reason; its own telemetry flows again
    let before = sub.lines().len();
    let o = g.cli(&[
        "devices",
        "release",
        "sim:flood",
        "--reason",
        "flood was a load test",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    sub.wait_lines(
        Duration::from_secs(20),
        "telemetry after the release",
        |l| {
            l[before.min(l.len())..]
                .iter()
                .filter(|(t, _)| t == "warden/devices/sim:flood/telemetry/temperature")
                .count()
                >= 3
        },
    );
    assert_eq!(
        statuses(&sub, "sim:flood").last().unwrap()["status"],
        "active"
    );
    g.stop();
}

#[test]
fn a_spoofed_value_alerts_then_quarantines_after_the_count_and_normal_traffic_raises_nothing() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    // in zone `lab` one message alone never quarantines: three alerts within the window do
    let extra = format!(
        "[zones.lab]\ncommanders = [\"mqtt:operator\"]\n[behaviour.zones.lab]\nquarantine_at = 1.0\nquarantine_after = 3\n{}",
        device("spoof", "lab", 0)
    );
    std::fs::write(&cfg, config(&p, &extra)).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &t.path().join("sub.txt"),
    );
    sub.wait_lines(Duration::from_secs(10), "the subscriber", |l| {
        l.iter().any(|(t, _)| t == "warden/gateway/status")
    });
    g.sim(&normal("spoof", 60));
    sub.wait_lines(Duration::from_secs(20), "the normal readings", |l| {
        l.iter()
            .filter(|(t, _)| t == "warden/devices/sim:spoof/telemetry/temperature")
            .count()
            >= 60
    });

    // one reading of 150 °C: an alert, not (yet) a quarantine
    g.sim(&["spoof temperature=150".to_string()]);
    let ev = wait_for(Duration::from_secs(10), "the alert", || {
        behaviour_events(&sub, "sim:spoof").into_iter().next()
    });
    assert_eq!(ev["event"], "alert", "{ev}");
    assert_eq!(ev["feature"], "value:temperature");
    let reason = ev["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("temperature 150, outside its history"),
        "{reason}"
    );
    // the 60 normal readings before it raised nothing: the alert is the first behaviour event
    assert_eq!(behaviour_events(&sub, "sim:spoof").len(), 1);
    assert_eq!(
        statuses(&sub, "sim:spoof").last().unwrap()["status"],
        "active"
    );
    let rec = wait_for(Duration::from_secs(10), "the alert's audit record", || {
        audit_records(&dd)
            .into_iter()
            .find(|r| r["device"] == "sim:spoof" && r["action"] == "anomaly-alert")
    });
    assert_eq!(rec["actor"], "builtin:behaviour");
    assert_eq!(detail(&rec)["features"][0]["feature"], "value:temperature");

    // two more within the window: quarantined by the count rule
    g.sim(&[
        "spoof temperature=150".to_string(),
        "spoof temperature=150".to_string(),
    ]);
    let st = wait_for(Duration::from_secs(10), "the quarantine", || {
        statuses(&sub, "sim:spoof")
            .into_iter()
            .find(|s| s["status"] == "quarantined")
    });
    let reason = st["reason"].as_str().unwrap();
    assert!(
        reason.contains("(3 anomalous messages in the window)"),
        "{reason}"
    );
    g.stop();
}

#[test]
fn a_restart_in_the_middle_of_learning_keeps_the_baseline() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, config(&p, &device("learner", "default", 0))).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    g.sim(&normal("learner", 20));
    wait_for(Duration::from_secs(10), "20 messages counted", || {
        let o = g.cli(&["devices", "show", "sim:learner"]);
        (json(&stdout(&o))["stats"]["messages"] == 20).then_some(())
    });
    g.stop();

    // 20 + 20 reach the learning period of 30 only if the first 20 were kept
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &t.path().join("sub.txt"),
    );
    sub.wait_lines(Duration::from_secs(10), "the subscriber", |l| {
        l.iter().any(|(t, _)| t == "warden/gateway/status")
    });
    g.sim(&normal("learner", 20));
    g.sim(&["learner temperature=150".to_string()]);
    let ev = wait_for(Duration::from_secs(10), "a behaviour event", || {
        behaviour_events(&sub, "sim:learner").into_iter().next()
    });
    assert_eq!(ev["event"], "quarantine", "{ev}");
    assert_eq!(ev["learning"], false);
    g.stop();
}

#[test]
fn the_mass_quarantine_guard_trips_at_forty_percent_of_a_zone_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    let mut extra = String::from("[zones.ward]\ncommanders = [\"mqtt:operator\"]\n");
    for i in 0..5 {
        extra.push_str(&device(&format!("w{i}"), "ward", 0));
    }
    std::fs::write(&cfg, config(&p, &extra)).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &t.path().join("sub.txt"),
    );
    sub.wait_lines(Duration::from_secs(10), "the subscriber", |l| {
        l.iter().any(|(t, _)| t == "warden/gateway/status")
    });
    for i in 0..5 {
        g.sim(&normal(&format!("w{i}"), 40));
    }
    // one device of five (20 %) is quarantined as usual: the positive control
    g.sim(&["w0 temperature=150".to_string()]);
    wait_for(Duration::from_secs(10), "w0 quarantined", || {
        statuses(&sub, "sim:w0")
            .into_iter()
            .find(|s| s["status"] == "quarantined")
    });
    // a second one would make 40 %: the guard trips, says so, and w1 stays active
    g.sim(&["w1 temperature=150".to_string()]);
    let lines = sub.wait_lines(Duration::from_secs(10), "the gateway alarm", |l| {
        l.iter().any(|(t, _)| t == "warden/gateway/alarm")
    });
    let (_, alarm) = lines
        .iter()
        .find(|(t, _)| t == "warden/gateway/alarm")
        .unwrap();
    let alarm = json(alarm);
    assert_eq!(alarm["alarm"], "mass-quarantine-guard");
    assert_eq!(alarm["zone"], "ward");
    assert_eq!(
        (alarm["quarantines"].as_u64(), alarm["devices"].as_u64()),
        (Some(2), Some(5))
    );
    assert!(
        alarm["reason"]
            .as_str()
            .unwrap()
            .starts_with("mass-quarantine guard: 2 of 5 devices in zone `ward`"),
        "{alarm}"
    );
    // and while it holds, a third is not quarantined either
    g.sim(&["w2 temperature=150".to_string()]);
    let recs = wait_for(Duration::from_secs(10), "w2's denied uplink", || {
        let r = audit_records(&dd);
        r.iter()
            .any(|r| r["device"] == "sim:w2" && r["verdict"] == "deny")
            .then_some(r)
    });
    let guard: Vec<_> = recs
        .iter()
        .filter(|r| r["action"] == "mass-quarantine-guard")
        .collect();
    assert_eq!(guard.len(), 1, "one alarm record, not one per attempt");
    assert_eq!(guard[0]["category"], "security");
    let w2 = recs
        .iter()
        .find(|r| r["device"] == "sim:w2" && r["verdict"] == "deny")
        .unwrap();
    assert!(
        w2["reason"]
            .as_str()
            .unwrap()
            .ends_with("(quarantine withheld: the mass-quarantine guard holds in this zone)"),
        "{w2}"
    );
    for d in ["sim:w1", "sim:w2", "sim:w3", "sim:w4"] {
        let o = g.cli(&["devices", "show", d]);
        assert_eq!(json(&stdout(&o))["device"]["status"], "active", "{d}");
    }
    g.stop();
}

#[test]
fn a_plugin_decides_on_the_anomaly_score() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        plugin_module("anomaly_gate"),
        plugins.join("anomaly_gate.wasm"),
    )
    .unwrap();
    let p = Ports::new();
    let cfg = root.join("w.toml");
    // the built-in rules only alert in zone `gate`; the plugin denies from a score of 0.4
    let extra = format!(
        r#"[zones.gate]
commanders = ["mqtt:operator"]
[behaviour.zones.gate]
action = "alert"

[plugins]
dir = "plugins"
require_signature = false

[[plugins.load]]
name = "anomaly-gate"
module = "anomaly_gate.wasm"
config = {{ deny_at = 0.4 }}

[[plugins.bind]]
plugin = "anomaly-gate"
zones = ["gate"]

{}"#,
        device("gated", "gate", 0)
    );
    std::fs::write(&cfg, config(&p, &extra)).unwrap();
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &root.join("sub.txt"),
    );
    sub.wait_lines(Duration::from_secs(10), "the subscriber", |l| {
        l.iter().any(|(t, _)| t == "warden/gateway/status")
    });
    // normal readings pass the plugin (the positive control)
    g.sim(&normal("gated", 40));
    sub.wait_lines(Duration::from_secs(20), "the normal readings", |l| {
        l.iter()
            .filter(|(t, _)| t == "warden/devices/sim:gated/telemetry/temperature")
            .count()
            >= 40
    });
    g.sim(&["gated temperature=150".to_string()]);
    let rec = wait_for(Duration::from_secs(10), "the plugin's denial", || {
        audit_records(&dd).into_iter().find(|r| {
            r["device"] == "sim:gated" && r["action"] == "uplink" && r["verdict"] == "deny"
        })
    });
    assert_eq!(rec["decider"], "plugin:anomaly-gate");
    assert_eq!(rec["reason"], "anomaly score 1.00 is at or above 0.40");
    assert_eq!(
        detail(&rec)["behaviour"]["features"][0]["feature"],
        "value:temperature"
    );
    // the built-in rule only alerted: the device is still active
    let o = g.cli(&["devices", "show", "sim:gated"]);
    assert_eq!(json(&stdout(&o))["device"]["status"], "active");
    g.stop();
}
