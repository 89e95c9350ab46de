//! Northbound to a real external broker (mosquitto) over mutual TLS with certificates generated here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use warden_e2e::*;

const ACL: &str = "user warden-gw\ntopic write warden/#\ntopic read warden/devices/+/cmd\n\nuser observer\ntopic read warden/#\n";

/// With Home Assistant discovery: the gateway also writes the discovery configs and reads Home
/// Assistant's birth message; Home Assistant reads the configs and writes its birth message (and,
/// here, the empty retained config a test uses to remove one).
const HA_ACL: &str = "user warden-gw\ntopic write warden/#\ntopic read warden/devices/+/cmd\n\
    topic write homeassistant/#\ntopic read homeassistant/status\n\n\
    user homeassistant\ntopic readwrite homeassistant/#\ntopic read warden/#\n";
const HA_GATEWAY_CONFIG: &str = "homeassistant/binary_sensor/warden_warden/connectivity/config";

fn external_config(p: &Ports, pki: &Pki, broker_port: u16, cert: &str) -> String {
    format!(
        "{}\n[mqtt]\nbroker = \"mqtts://127.0.0.1:{broker_port}\"\nclient_id = \"warden-gw\"\n[mqtt.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        base_config(p),
        pki.path("ca.crt"),
        pki.path(&format!("{cert}.crt")),
        pki.path(&format!("{cert}.key")),
    )
}

/// mosquitto client arguments for the broker on `port` as the holder of client certificate `cert`.
fn tls_args(pki: &Pki, port: u16, cert: &str, extra: &[&str]) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cafile",
        &pki.path("ca.crt"),
        "--cert",
        &pki.path(&format!("{cert}.crt")),
        "--key",
        &pki.path(&format!("{cert}.key")),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

fn observer(
    pki: &Pki,
    port: u16,
    topic: &str,
    out: &std::path::Path,
    persistent: bool,
) -> Subscriber {
    // QoS 2 on the consumer's leg too: a QoS 1 subscription may be redelivered after the outage
    let mut args = tls_args(pki, port, "observer", &["-q", "2", "-t", topic]);
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

/// The device a discovery config belongs to (its availability's device status topic), or `gateway`.
fn ha_device(config: &str) -> String {
    json(config)["availability"][1]["topic"]
        .as_str()
        .and_then(|t| t.strip_prefix("warden/devices/")?.strip_suffix("/status"))
        .unwrap_or("gateway")
        .to_owned()
}

/// Home Assistant discovery against mosquitto over mutual TLS: the demo's active devices' configs
/// are retained on mosquitto; one is removed there (an empty retained config); Home Assistant's
/// birth message (`homeassistant/status` = `online`) makes the gateway's birth watcher, connected
/// with the gateway's certificate, publish it again, identical.
#[test]
fn home_assistant_birth_message_republishes_configs_on_an_external_broker() {
    let t = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&t.path().join("pki"), &["warden-gw", "homeassistant"]);
    let bport = free_port();
    let mq = Mosquitto::start(&t.path().join("mq"), &pki, bport, HA_ACL);
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, external_config(&p, &pki, bport, "warden-gw")).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &["--demo"]);
    let ha = |extra: &[&str]| tls_args(&pki, bport, "homeassistant", extra);
    let publish = |extra: &[&str]| {
        let o = std::process::Command::new("mosquitto_pub")
            .args(["-V", "mqttv311", "-q", "1"])
            .args(ha(extra))
            .output()
            .unwrap();
        assert!(o.status.success(), "mosquitto_pub: {}", stderr(&o));
    };
    // The retained configs now on mosquitto: subscribe, wait for the gateway's own config (the
    // subscription is live), then publish a marker on HA's status topic (the gateway ignores
    // anything but `online`): what arrived before the marker is the retained set.
    let retained = |n: usize| -> std::collections::BTreeMap<String, String> {
        let sub = Subscriber::spawn(
            &ha(&["-q", "1", "-t", "homeassistant/#"]),
            &t.path().join(format!("retained-{n}.txt")),
        );
        sub.wait_lines(
            Duration::from_secs(20),
            "the gateway's retained config",
            |l| l.iter().any(|(t, _)| t == HA_GATEWAY_CONFIG),
        );
        let marker = format!("probe-{n}");
        publish(&["-t", "homeassistant/status", "-m", &marker]);
        sub.wait_lines(Duration::from_secs(20), "the marker", |l| {
            l.iter().any(|(_, p)| *p == marker)
        })
        .into_iter()
        .take_while(|(_, p)| *p != marker)
        .filter(|(t, p)| t.ends_with("/config") && !p.is_empty())
        .collect()
    };

    let first = wait_for(
        Duration::from_secs(30),
        "the demo's configs retained on mosquitto",
        || {
            let c = retained(0);
            let devices: Vec<String> = c.values().map(|p| ha_device(p)).collect();
            // each device's configs change once, when its first uplink brings its evidence
            // (model, firmware, serial) into the device block: wait for those, or the gateway's
            // own update would undo the removal below
            let settled = c
                .iter()
                .filter(|(t, _)| *t != HA_GATEWAY_CONFIG)
                .all(|(_, p)| json(p)["device"]["sw_version"].is_string());
            (settled
                && ["sim:thermostat-1", "sim:switch-1", "sim:meter-1", "gateway"]
                    .iter()
                    .all(|d| devices.iter().any(|x| x == d)))
            .then_some(c)
        },
    );
    // the pending newcomer has none
    assert!(
        first.values().all(|p| ha_device(p) != "sim:newcomer-1"),
        "{first:#?}"
    );
    let (power, config) = first
        .iter()
        .find(|(t, p)| t.ends_with("/power/config") && ha_device(p) == "sim:meter-1")
        .map(|(t, p)| (t.clone(), p.clone()))
        .unwrap();
    assert_eq!(
        json(&config)["state_topic"],
        "warden/devices/sim:meter-1/telemetry/power"
    );

    // Home Assistant (or anyone with the rights) removes it from mosquitto
    publish(&["-r", "-n", "-t", &power]);
    let cleared = retained(1);
    assert!(!cleared.contains_key(&power), "still retained: {power}");
    // positive control in the same read: the meter's other config is still there
    assert!(
        cleared
            .iter()
            .any(|(t, p)| t.ends_with("/energy/config") && ha_device(p) == "sim:meter-1"),
        "{cleared:#?}"
    );

    // Home Assistant's birth message: the gateway publishes every config again
    let live = Subscriber::spawn(
        &ha(&["-q", "1", "-t", "homeassistant/#"]),
        &t.path().join("live.txt"),
    );
    live.wait_lines(Duration::from_secs(20), "the live subscription", |l| {
        l.iter().any(|(t, _)| t == HA_GATEWAY_CONFIG)
    });
    publish(&["-t", "homeassistant/status", "-m", "online"]);
    let l = live.wait_lines(
        Duration::from_secs(20),
        "the removed config published again",
        |l| l.iter().any(|(t, p)| *t == power && !p.is_empty()),
    );
    let again = &l.iter().find(|(t, _)| *t == power).unwrap().1;
    assert_eq!(again, &config, "the same config");
    assert!(
        g.log_text().contains("Home Assistant came online"),
        "the birth watcher answered"
    );
    // and it is retained again
    let back = retained(2);
    assert_eq!(back.get(&power), Some(&config));
    assert!(
        !mq.log_text().contains("Denied PUBLISH from warden-gw"),
        "the gateway published something its ACL refuses"
    );
    g.stop();
}
