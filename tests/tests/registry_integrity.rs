//! The registry cannot be edited behind the gateway's back, and operator actions follow fixed rules:
//! an edited row is refused at start (the device is pending, its telemetry never reaches MQTT, the
//! audit log says why); reasons are required; revoke is terminal until an explicit re-enroll;
//! re-importing a revoked device changes nothing; approve refuses names the config does not define
//! and writes one record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use warden_e2e::*;

fn tamper(dd: &Path, sql: &str) {
    let c = rusqlite::Connection::open(dd.join("warden.db")).unwrap();
    c.execute_batch(sql).unwrap();
}

/// A raw API POST with the data dir's token: (status code, body).
fn api_post(g: &Gateway, path: &str, body: &str) -> (u16, String) {
    let token = std::fs::read_to_string(g.data_dir.join("api.token")).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.ports_api)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (code, body)
}

fn status_of(g: &Gateway, id: &str) -> String {
    let o = g.cli(&["devices", "show", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    json(&stdout(&o))["device"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_registry_row_edited_on_a_stopped_gateway_is_refused_and_the_device_stays_pending() {
    let t = tempfile::tempdir().unwrap();
    let (p, g) = Gateway::start_base(t.path());
    let cfg = g.config.clone();
    let dd = g.data_dir.clone();
    let f = t.path().join("d.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:cnt\"\nprofile = \"counter\"\n").unwrap();
    assert!(
        g.cli(&["devices", "import", f.to_str().unwrap()])
            .status
            .success()
    );
    g.sim(&["sneaky n=1".to_string()]);
    wait_for(Duration::from_secs(10), "sneaky registered", || {
        (g.cli(&["devices", "show", "sim:sneaky"]).status.success()).then_some(())
    });
    assert_eq!(status_of(&g, "sim:sneaky"), "pending");
    g.stop();

    tamper(
        &dd,
        "UPDATE devices SET status='active', profile='counter', status_by='api:operator'
         WHERE id='sim:sneaky'",
    );
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/devices/#"]),
        &t.path().join("sub.txt"),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status_of(&g, "sim:sneaky"), "pending");
    g.sim(&["sneaky n=2".to_string(), "cnt n=7".to_string()]);
    // positive control: the untouched device's telemetry arrives
    sub.wait_lines(
        Duration::from_secs(10),
        "the approved device's telemetry",
        |l| {
            l.iter()
                .any(|(t, _)| t == "warden/devices/sim:cnt/telemetry/n")
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !sub.lines()
            .iter()
            .any(|(t, _)| t.starts_with("warden/devices/sim:sneaky/telemetry")),
        "the edited device's telemetry was published"
    );
    g.stop();

    let recs = audit_records(&dd);
    let refusal = recs
        .iter()
        .find(|r| r["action"] == "registry-tampered" && r["device"] == "sim:sneaky")
        .expect("the refusal is on record");
    assert_eq!(refusal["category"], "security");
    let detail = json(refusal["detail"].as_str().unwrap());
    assert_eq!(detail["claimed"]["status"], "active");
    assert_eq!(detail["claimed"]["profile"], "counter");
    assert!(
        recs.iter().any(|r| r["action"] == "uplink"
            && r["device"] == "sim:sneaky"
            && r["verdict"] == "deny"
            && r["seq"].as_u64() > refusal["seq"].as_u64()),
        "its uplink after the restart was denied"
    );
    assert!(!recs.iter().any(|r| r["action"] == "approve"));
    let o = warden(&dd, &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn operator_actions_need_reasons_revoke_is_terminal_and_names_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let (_, g) = Gateway::start_base(t.path());
    let dd = g.data_dir.clone();
    let f = t.path().join("d.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:r\"\nprofile = \"counter\"\n").unwrap();
    let imp = |update: bool| {
        let mut a = vec!["devices", "import", f.to_str().unwrap()];
        if update {
            a.push("--update");
        }
        g.cli(&a)
    };
    assert!(imp(false).status.success());

    // reasons: the CLI needs one, the API refuses a missing or empty one
    let o = g.cli(&["devices", "revoke", "sim:r"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--reason"), "{}", stderr(&o));
    let o = g.cli(&["devices", "quarantine", "sim:r", "--reason", ""]);
    assert!(!o.status.success());
    for body in ["{}", r#"{"reason":""}"#, r#"{"reason":"   "}"#] {
        for act in ["approve", "quarantine", "revoke", "release"] {
            let (code, b) = api_post(&g, &format!("/api/devices/sim:r/{act}"), body);
            assert_eq!(code, 400, "{act} {body}: {b}");
            assert!(b.contains("reason is required"), "{b}");
        }
    }
    assert_eq!(status_of(&g, "sim:r"), "active");

    // revoke is terminal: no approve, quarantine or release; re-import changes nothing
    let o = g.cli(&["devices", "revoke", "sim:r", "--reason", "stolen"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for act in ["approve", "quarantine", "release"] {
        let (code, b) = api_post(
            &g,
            &format!("/api/devices/sim:r/{act}"),
            r#"{"reason":"try"}"#,
        );
        assert_eq!(code, 409, "{act}: {b}");
    }
    assert!(imp(false).status.success());
    assert_eq!(status_of(&g, "sim:r"), "revoked");
    std::fs::write(
        &f,
        "[[devices]]\nid = \"sim:r\"\nprofile = \"counter\"\nstatus = \"active\"\n",
    )
    .unwrap();
    let o = imp(true);
    assert!(
        !o.status.success(),
        "--update re-activated a revoked device"
    );
    assert_eq!(status_of(&g, "sim:r"), "revoked");
    g.sim(&["r n=1".to_string()]);

    // an explicit re-enroll brings it back as pending, on record with both states
    let o = g.cli(&["devices", "re-enroll", "sim:r", "--reason", "recovered"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status_of(&g, "sim:r"), "pending");

    // approve checks the names against the config and writes one record
    let o = g.cli(&[
        "devices",
        "approve",
        "sim:r",
        "--profile",
        "no-such-profile",
        "--zone",
        "no-such-zone",
        "--reason",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown profile `no-such-profile` (configured: counter, thermostat)"),
        "{}",
        stderr(&o)
    );
    let (code, b) = api_post(
        &g,
        "/api/devices/sim:r/approve",
        r#"{"reason":"x","zone":"no-such-zone"}"#,
    );
    assert_eq!(code, 400, "{b}");
    assert!(b.contains("configured: default"), "{b}");
    assert_eq!(status_of(&g, "sim:r"), "pending");
    let before = audit_records(&dd).len();
    let o = g.cli(&[
        "devices",
        "approve",
        "sim:r",
        "--profile",
        "thermostat",
        "--reason",
        "label checked",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    g.stop();

    let recs = audit_records(&dd);
    let r: Vec<&serde_json::Value> = recs.iter().filter(|r| r["device"] == "sim:r").collect();
    let imports: Vec<_> = r.iter().filter(|r| r["action"] == "import").collect();
    assert_eq!(
        imports.len(),
        2,
        "the refused --update import wrote nothing"
    );
    let kept = json(imports[1]["detail"].as_str().unwrap());
    assert_eq!(kept["status"], "revoked", "{kept}");
    let re = r.iter().find(|r| r["action"] == "re-enroll").unwrap();
    assert_eq!(re["reason"], "recovered");
    let d = json(re["detail"].as_str().unwrap());
    assert_eq!(
        (d["from"].as_str(), d["to"].as_str()),
        (Some("revoked"), Some("pending"))
    );
    // after the approve: exactly one record for it (the gateway-stop records follow)
    let after: Vec<_> = recs
        .iter()
        .skip(before)
        .filter(|r| r["device"] == "sim:r")
        .collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["action"], "approve");
    assert_eq!(after[0]["reason"], "label checked");
    let d = json(after[0]["detail"].as_str().unwrap());
    assert_eq!(d["changes"]["profile"]["from"], "counter", "{d}");
    assert_eq!(d["changes"]["profile"]["to"], "thermostat", "{d}");
    assert_eq!(d["from"], "pending");
}
