//! Default deny: a pending device's uplinks never reach MQTT and commands to it are denied and
//! audited. Commands arrive over the embedded broker from an authenticated client (the real
//! mosquitto_pub) and come back as results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

#[test]
fn pending_device_gets_nothing_through_either_way() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[sim.devices]]\naddress = \"thermo\"\nkind = \"thermostat\"\ninterval_ms = 0\nprofile = \"thermostat\"\nprovision = true\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let mq = |extra: &[&str]| operator_args(&dd, p.mqtt, extra);
    let sub = Subscriber::spawn(&mq(&["-t", "warden/#"]), &t.path().join("sub.txt"));
    std::thread::sleep(Duration::from_millis(500));

    // an unknown device sends; an approved one sends too (positive control)
    g.sim(
        &(0..5)
            .map(|i| format!("intruder temperature={i}"))
            .collect::<Vec<_>>(),
    );
    g.sim(&["thermo temperature=21.5".to_string()]);
    sub.wait_lines(
        Duration::from_secs(10),
        "the approved device's telemetry",
        |l| {
            l.iter()
                .any(|(t, _)| t == "warden/devices/sim:thermo/telemetry/temperature")
        },
    );
    let dev = g.cli(&["devices", "show", "sim:intruder"]);
    assert!(dev.status.success());
    let v = json(&stdout(&dev));
    assert_eq!(v["device"]["status"], "pending");
    assert_eq!(v["stats"]["denied"], 5);

    // a command to it over MQTT, from the authenticated operator
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(mq(&[
            "-t",
            "warden/devices/sim:intruder/cmd",
            "-m",
            r#"{"id":"cmd-1","command":"set_setpoint","args":{"value":20}}"#,
        ]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // and one to the approved device, which is delivered
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(mq(&[
            "-t",
            "warden/devices/sim:thermo/cmd",
            "-m",
            r#"{"id":"cmd-2","command":"set_setpoint","args":{"value":22.5}}"#,
        ]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = sub.wait_lines(Duration::from_secs(10), "both command results", |l| {
        l.iter().filter(|(t, _)| t.ends_with("/cmd/result")).count() >= 2
    });
    let result = |dev: &str| {
        let (_, p) = lines
            .iter()
            .find(|(t, _)| t == &format!("warden/devices/{dev}/cmd/result"))
            .unwrap();
        json(p)
    };
    let r1 = result("sim:intruder");
    assert_eq!(r1["command_id"], "cmd-1");
    assert_eq!(r1["outcome"], "denied");
    assert!(r1["detail"].as_str().unwrap().contains("pending"), "{r1}");
    let r2 = result("sim:thermo");
    assert_eq!(r2["outcome"], "delivered", "{r2}");

    // nothing of the intruder's reached MQTT but its (signed) pending status
    for (topic, payload) in sub.lines() {
        if topic.contains("sim:intruder") {
            assert!(
                topic.ends_with("/status") || topic.ends_with("/cmd/result"),
                "leaked: {topic} {payload}"
            );
        }
    }
    // exactly one (signed) status for five uplinks: at registration, not on every message
    let statuses: Vec<_> = sub
        .lines()
        .into_iter()
        .filter(|(t, _)| t == "warden/devices/sim:intruder/status")
        .collect();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(json(&statuses[0].1)["status"], "pending");

    // the audit log holds the denials, the command with its principal, and the registration
    let o = g.cli(&["audit", "export"]);
    let recs: Vec<serde_json::Value> = stdout(&o).lines().map(json).collect();
    let intr: Vec<&serde_json::Value> = recs
        .iter()
        .filter(|r| r["device"] == "sim:intruder")
        .collect();
    assert_eq!(
        intr.iter()
            .filter(|r| r["action"] == "uplink" && r["verdict"] == "deny")
            .count(),
        5
    );
    assert!(intr.iter().any(|r| r["action"] == "device-registered"));
    let cmd = intr
        .iter()
        .find(|r| r["action"] == "command")
        .expect("command audited");
    assert_eq!(cmd["verdict"], "deny");
    assert_eq!(cmd["actor"], "mqtt:operator");

    // approval lets it through
    let o = g.cli(&[
        "devices",
        "approve",
        "sim:intruder",
        "--profile",
        "thermostat",
        "--reason",
        "checked label",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // its assurance (none) is below the thermostat profile's floor: still denied, by authenticate
    g.sim(&["intruder temperature=1".to_string()]);
    let o = g.cli(&[
        "devices",
        "approve",
        "sim:intruder",
        "--profile",
        "counter",
        "--reason",
        "it is a counter",
    ]);
    assert!(o.status.success());
    g.sim(&["intruder n=1".to_string()]);
    sub.wait_lines(Duration::from_secs(10), "telemetry after approval", |l| {
        l.iter()
            .any(|(t, _)| t == "warden/devices/sim:intruder/telemetry/n")
    });
    assert!(
        !sub.lines()
            .iter()
            .any(|(t, _)| t == "warden/devices/sim:intruder/telemetry/temperature")
    );
    g.stop();
}
