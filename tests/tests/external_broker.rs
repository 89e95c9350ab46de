//! Northbound to a real external broker (mosquitto) over mutual TLS with certificates generated here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use warden_e2e::*;

const ACL: &str = "user warden-gw\ntopic write warden/#\ntopic read warden/devices/+/cmd\n\nuser observer\ntopic read warden/#\n";

fn external_config(p: &Ports, pki: &Pki, broker_port: u16, cert: &str) -> String {
    format!(
        "{}\n[mqtt]\nbroker = \"mqtts://127.0.0.1:{broker_port}\"\nclient_id = \"warden-gw\"\n[mqtt.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        base_config(p),
        pki.path("ca.crt"),
        pki.path(&format!("{cert}.crt")),
        pki.path(&format!("{cert}.key")),
    )
}

fn observer(
    pki: &Pki,
    port: u16,
    topic: &str,
    out: &std::path::Path,
    persistent: bool,
) -> Subscriber {
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cafile",
        &pki.path("ca.crt"),
        "--cert",
        &pki.path("observer.crt"),
        "--key",
        &pki.path("observer.key"),
        // QoS 2 on the consumer's leg too: a QoS 1 subscription may be redelivered after the outage
        "-q",
        "2",
        "-t",
        topic,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if persistent {
        args.extend(["-c", "-i", "observer-1"].iter().map(|s| s.to_string()));
    }
    Subscriber::spawn(&args, out)
}

fn provision_counter(g: &Gateway, dir: &std::path::Path) {
    let f = dir.join("devices.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:cnt\"\nprofile = \"counter\"\n").unwrap();
    let out = g.cli(&["devices", "import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn signed_telemetry_over_mtls_and_verify() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&t.path().join("pki"), &["warden-gw", "observer"]);
    let bport = free_port();
    let _mq = Mosquitto::start(&t.path().join("mq"), &pki, bport, ACL);
    let sub = observer(&pki, bport, "warden/#", &t.path().join("sub.txt"), false);
    std::thread::sleep(Duration::from_millis(500));

    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, external_config(&p, &pki, bport, "warden-gw")).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    provision_counter(&g, t.path());
    g.sim(&(1..=5).map(|i| format!("cnt n={i}")).collect::<Vec<_>>());

    let lines = sub.wait_lines(
        Duration::from_secs(20),
        "5 telemetry messages at mosquitto",
        |l| {
            l.iter()
                .filter(|(t, _)| t == "warden/devices/sim:cnt/telemetry/n")
                .count()
                >= 5
        },
    );
    let tele: Vec<&String> = lines
        .iter()
        .filter(|(t, _)| t == "warden/devices/sim:cnt/telemetry/n")
        .map(|(_, p)| p)
        .collect();
    for (i, p) in tele.iter().enumerate() {
        let v = json(p);
        assert_eq!(v["value"], (i + 1) as i64);
        assert_eq!(v["device"], "sim:cnt");
        assert!(v["sig"].is_string(), "unsigned payload: {p}");
    }
    // warden verify accepts every payload as received, and rejects a modified one
    for p in &tele {
        let f = t.path().join("payload.json");
        std::fs::write(&f, p).unwrap();
        let out = g.cli(&["verify", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "verify refused a genuine payload: {}",
            stderr(&out)
        );
    }
    let forged = tele[0].replacen("\"value\":1", "\"value\":7", 1);
    assert_ne!(&forged, tele[0]);
    let f = t.path().join("forged.json");
    std::fs::write(&f, &forged).unwrap();
    let out = g.cli(&["verify", f.to_str().unwrap()]);
    assert!(!out.status.success(), "verify accepted a modified payload");
    assert!(stderr(&out).contains("INVALID"), "{}", stderr(&out));
    // the gateway announced itself (retained) on the broker
    assert!(
        lines
            .iter()
            .any(|(t, p)| t == "warden/gateway/status" && p == "online")
    );
    g.stop();
}

#[test]
fn client_certificate_from_untrusted_ca_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&t.path().join("pki"), &["warden-gw", "observer"]);
    let bport = free_port();
    let mq = Mosquitto::start(&t.path().join("mq"), &pki, bport, ACL);
    let sub = observer(&pki, bport, "warden/#", &t.path().join("sub.txt"), false);

    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, external_config(&p, &pki, bport, "rogue")).unwrap();
    let g = Gateway::start(&t.path().join("data"), &cfg, &p, &[]);
    provision_counter(&g, t.path());
    g.sim(&["cnt n=1".to_string(), "cnt n=2".to_string()]);
    // the gateway keeps trying, never gets in, and queues instead of losing anything
    wait_for(
        Duration::from_secs(15),
        "refusals in the gateway log",
        || (g.log_text().matches("MQTT broker unreachable").count() >= 2).then_some(()),
    );
    let st = g.status();
    assert_eq!(st["broker_connected"], false);
    assert!(st["queue_depth"].as_u64().unwrap() >= 2, "{st}");
    assert!(
        sub.lines()
            .iter()
            .all(|(t, _)| !t.starts_with("warden/devices")),
        "rogue client got messages through"
    );
    // mosquitto itself refused the handshake
    let log = mq.log_text();
    assert!(
        log.contains("certificate verify failed") || log.contains("OpenSSL Error"),
        "mosquitto log shows no TLS refusal:\n{log}"
    );
    g.stop();
}

#[test]
fn broker_outage_and_gateway_restart_deliver_exactly_once_in_order() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&t.path().join("pki"), &["warden-gw", "observer"]);
    let bport = free_port();
    let mut mq = Mosquitto::start(&t.path().join("mq"), &pki, bport, ACL);
    let topic = "warden/devices/sim:cnt/telemetry/n";
    let sub = observer(&pki, bport, topic, &t.path().join("sub.txt"), true);
    std::thread::sleep(Duration::from_millis(500));

    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, external_config(&p, &pki, bport, "warden-gw")).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    provision_counter(&g, t.path());
    let send = |g: &Gateway, r: std::ops::RangeInclusive<i64>| {
        g.sim(&r.map(|i| format!("cnt n={i}")).collect::<Vec<_>>())
    };
    send(&g, 1..=40);
    sub.wait_lines(Duration::from_secs(20), "the first 40", |l| l.len() >= 40);

    // broker down: the gateway queues
    mq.stop();
    send(&g, 41..=80);
    wait_for(Duration::from_secs(10), "40 messages queued", || {
        (g.status()["queue_depth"].as_u64().unwrap_or(0) >= 40).then_some(())
    });
    // gateway restarts while the broker is still down: the queue is on disk
    g.stop();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    assert!(g.status()["queue_depth"].as_u64().unwrap() >= 40);
    send(&g, 81..=120);
    mq.restart();

    sub.wait_lines(Duration::from_secs(60), "all 120 after the outage", |l| {
        l.len() >= 120
    });
    std::thread::sleep(Duration::from_secs(2)); // any duplicate would show up now
    let lines = sub.lines();
    let values: Vec<i64> = lines
        .iter()
        .map(|(_, p)| json(p)["value"].as_i64().unwrap())
        .collect();
    if values != (1..=120).collect::<Vec<_>>() {
        let mq = std::fs::read_to_string(t.path().join("mq/mosquitto.log")).unwrap_or_default();
        let dups: Vec<&str> = mq
            .lines()
            .filter(|l| {
                l.contains("to observer-1 (d1")
                    || l.contains("from warden-gw (d1")
                    || l.contains("PUBREL from warden-gw")
            })
            .collect();
        panic!(
            "not exactly once in order: {values:?}\nmosquitto log (DUP and PUBREL):\n{}",
            dups.join("\n")
        );
    }
    let ids: Vec<u64> = lines
        .iter()
        .map(|(_, p)| json(p)["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "message ids not increasing: {ids:?}"
    );
    assert_eq!(g.status()["queue_depth"], 0);
    g.stop();
}
