//! The embedded broker refuses unauthenticated clients and clients publishing outside their topics,
//! checked with the real mosquitto clients; refusals are audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

#[test]
fn unauthenticated_and_out_of_acl_clients_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (p, g) = Gateway::start_base(t.path());
    let dd = g.data_dir.clone();
    let port = p.mqtt.to_string();
    let pw = operator_password(&dd);
    let pw = pw.as_str();

    let run = |args: &[&str]| {
        Command::new(args[0])
            .args(["-V", "mqttv311", "-h", "127.0.0.1", "-p", &port])
            .args(&args[1..])
            .output()
            .unwrap()
    };
    // no credentials
    let o = run(&["mosquitto_sub", "-t", "warden/#", "-C", "1", "-W", "3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not authorised"), "{}", stderr(&o));
    // wrong password
    let o = run(&[
        "mosquitto_sub",
        "-u",
        "operator",
        "-P",
        "guess",
        "-t",
        "warden/#",
        "-C",
        "1",
        "-W",
        "3",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o)
            .to_lowercase()
            .contains("bad user name or password"),
        "{}",
        stderr(&o)
    );

    // the operator may publish commands only; telemetry forged by it must never be seen
    let sub = Subscriber::spawn(
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "operator",
            "-P",
            pw,
            "-t",
            "warden/#",
        ]
        .map(String::from),
        &t.path().join("sub.txt"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let o = run(&[
        "mosquitto_pub",
        "-u",
        "operator",
        "-P",
        pw,
        "-q",
        "1",
        "-t",
        "warden/devices/sim:x/telemetry/temperature",
        "-m",
        "{\"value\":99}",
    ]);
    assert!(!o.status.success(), "publish outside the ACL was accepted");
    // a subscription outside the ACL gets nothing
    let o = run(&[
        "mosquitto_sub",
        "-u",
        "operator",
        "-P",
        pw,
        "-t",
        "$SYS/#",
        "-t",
        "other/#",
        "-C",
        "1",
        "-W",
        "2",
    ]);
    // mosquitto_sub reports SUBACK 0x80 for every filter this way (and exits 0)
    assert!(
        stderr(&o).contains("All subscription requests were denied"),
        "{}",
        stderr(&o)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sub.lines().iter().all(|(t, _)| !t.contains("telemetry")),
        "forged telemetry reached a subscriber: {:?}",
        sub.lines()
    );
    g.stop();

    let recs: Vec<serde_json::Value> = stdout(&warden(&dd, &["audit", "export"]))
        .lines()
        .map(json)
        .collect();
    let auth = recs.iter().filter(|r| r["action"] == "broker-auth").count();
    assert!(auth >= 2, "auth failures not audited");
    let acl: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["action"] == "broker-acl")
        .collect();
    assert!(
        acl.iter().any(|r| r["actor"] == "operator"
            && r["detail"]
                .as_str()
                .unwrap()
                .contains("telemetry/temperature")),
        "{acl:?}"
    );
}
