//! The BLE adapter end to end against real peers: a private dbus-daemon with python-dbusmock's
//! BlueZ template playing bluetoothd, extended with BlueZ's advertisement monitor manager
//! (tests/peers/ble/bluez_template.py; tests/peers/ble/bluez_peer.py puts the adverts on the air),
//! the warden binary scanning it passively (its BTHome monitor) through btleplug, and bthome-ble (Home Assistant's BTHome parser) encoding
//! the adverts with the test's own key and decoding the same bytes as the oracle the published
//! values are checked against. Forgeries (wrong key, replayed counter, counter restart from 0,
//! plain spoof of an encrypted device) are refused and audited with their cause; the BlueZ mock
//! stopped and restarted, and its adapter removed and returned, take the link Down and Up again;
//! GATT commands go to a connectable mock device. Without the monitor manager (or with
//! `scan = "active"`) the adapter uses BlueZ discovery with duplicates on, and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod ble_support;
#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::collections::BTreeMap;
use std::path::Path;

use ble_support::{Bluez, KEY, Oracle, Want, ble_link, enc, oracle, plain};
use warden_e2e::*;
use zigbee_support::{Cli, T, audit_where, device_show, latest, values, wait_audit};

/// The encrypted sensor (random resolvable address, as in BTHome's own examples).
const ENC_MAC: &str = "54:48:E6:8F:80:A5";
const ENC: &str = "ble:5448e68f80a5";
/// A plain sensor (random static address).
const PLAIN_MAC: &str = "C4:7C:8D:6A:11:22";
const PLAIN: &str = "ble:c47c8d6a1122";
/// A device whose profile requires `shared-key` but which has no key: its plain adverts are
/// refused by the profile.
const STRICT_MAC: &str = "C4:7C:8D:6A:33:44";
const STRICT: &str = "ble:c47c8d6a3344";
/// An encrypted advertiser nobody provisioned.
const UNKNOWN_ENC_MAC: &str = "C4:7C:8D:6A:77:88";
const UNKNOWN_ENC: &str = "ble:c47c8d6a7788";
/// An advertiser whose first advert is not BTHome (another service data UUID).
const OTHER_MAC: &str = "C4:7C:8D:6A:99:AA";
const OTHER: &str = "ble:c47c8d6a99aa";
/// A connectable actuator with GATT characteristics.
const ACT_MAC: &str = "C4:7C:8D:6A:55:66";
const ACT: &str = "ble:c47c8d6a5566";
const SERVICE: &str = "0000ff00-0000-1000-8000-00805f9b34fb";
const LEVEL: &str = "0000ff01-0000-1000-8000-00805f9b34fb";
const LOCKED: &str = "0000ff02-0000-1000-8000-00805f9b34fb";

fn config(p: &Ports) -> String {
    format!(
        r#"{base}
[profiles.blesensor]
points = ["battery", "temperature", "humidity", "opening", "window", "motion", "button", "dimmer", "dimmer_steps", "illuminance"]
min_assurance = "none"
commands = ["set_level"]

[profiles.bleenc]
points = ["battery", "temperature", "humidity", "temperature_1", "temperature_2", "button", "power"]
min_assurance = "shared-key"
require_fresh = true

[profiles.bleact]
points = []
commands = ["set_level", "locked"]
min_assurance = "none"

[adapters.ble]
adapter = "hci0"
reconnect_s = 1
health_check_ms = 200
gatt_timeout_ms = 3000

[adapters.ble.commands.set_level]
characteristic = "{LEVEL}"
read_back = true

[adapters.ble.commands.locked]
characteristic = "{LOCKED}"
value = "01"
"#,
        base = base_config(p)
    )
}

fn is(r: &serde_json::Value, action: &str, device: &str) -> bool {
    r["action"] == action && r["device"] == device
}

fn cause(r: &serde_json::Value) -> &str {
    r["detail"]["cause"].as_str().unwrap_or_default()
}

/// Every point value `device` published, per point name, in order: telemetry topics and the
/// points of event envelopes.
fn published(sub: &Subscriber, device: &str) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let tele = format!("warden/devices/{device}/telemetry/");
    let event = format!("warden/devices/{device}/event");
    for (topic, payload) in sub.lines() {
        if let Some(point) = topic.strip_prefix(&tele) {
            out.entry(point.to_owned())
                .or_default()
                .push(json(&payload)["value"].clone());
        } else if topic == event {
            for p in json(&payload)["points"].as_array().into_iter().flatten() {
                out.entry(p["name"].as_str().unwrap().to_owned())
                    .or_default()
                    .push(p["value"].clone());
            }
        }
    }
    out
}

/// Waits until `device` has published every value the oracle decoded from one advert, as its
/// latest value of each point, and checks they are equal. (bthome-ble also reports the packet id
/// as a sensor; Warden uses it to drop radio repeats and does not publish it.)
fn wait_equal_to_oracle(sub: &Subscriber, device: &str, o: &Oracle, what: &str) {
    let want: Vec<(&String, &serde_json::Value)> =
        o.values.iter().filter(|(k, _)| *k != "packet_id").collect();
    assert!(!want.is_empty(), "the oracle decoded nothing for {what}");
    let start = std::time::Instant::now();
    loop {
        let p = published(sub, device);
        if want
            .iter()
            .all(|(k, v)| p.get(*k).and_then(|vs| vs.last()) == Some(*v))
        {
            return;
        }
        assert!(
            start.elapsed() < T,
            "timed out waiting for {what}: bthome-ble decoded {want:?}, Warden published {p:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn approve(g: &Gateway, id: &str, profile: &str) {
    let o = g.cli(&[
        "devices",
        "approve",
        id,
        "--profile",
        profile,
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn command(g: &Gateway, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["command"];
    a.extend_from_slice(args);
    let o = g.cli(&a);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}

#[test]
fn ble_bthome_adverts_forgeries_link_recovery_and_gatt() {
    // WARDEN_KEEP_TEST_DIR=1 keeps the logs, audit and MQTT capture for a look after a failure
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_owned();
    let _guard = if std::env::var_os("WARDEN_KEEP_TEST_DIR").is_some() {
        eprintln!("test dir kept: {}", dir.display());
        std::mem::forget(t);
        None
    } else {
        Some(t)
    };
    ble_run(&dir);
}

fn ble_run(dir: &Path) {
    // bthome-ble encodes every advert of the test, and decodes each as the oracle
    let plains = oracle(
        PLAIN_MAC,
        &[
            // packet id 1: battery, temperature, humidity, opening, window
            plain("0001 0164 02ca09 03bf13 1101 2d00"),
            // packet id 2: other values, motion, illuminance
            plain("0002 0150 026aff 034a01 0513 8a01 2101"),
            // packet id 3: a button event and a dimmer turned left 3 steps
            plain("0003 3a04 3c0103"),
        ],
    );
    let encs = oracle(
        ENC_MAC,
        &[
            enc("0164 020e0a 033817", 100),
            // two temperatures and a button: numbered temperature_1/_2 by both parsers
            enc("02c409 02d007 3a01", 101),
            // a wrong key (the oracle cannot verify it either)
            Want {
                objects: "0164 020000",
                counter: Some(102),
                key: Some("00000000000000000000000000000000"),
            },
            // a counter restart from 0 (valid MIC: a reset device, or its first advert replayed)
            enc("0132 020000", 0),
            // the positive control after the forgeries
            enc("0163 02a00f", 102),
            // after the BlueZ restart
            enc("0162 02a40f", 103),
            // after the adapter came back
            enc("0161 02a80f", 104),
            // after it was powered on again
            enc("0160 02ac0f", 105),
            // after BlueZ released the monitor
            enc("015f 02b00f", 106),
        ],
    );
    assert!(encs[0].verified && encs[1].verified && !encs[2].verified);
    let spoof = oracle(ENC_MAC, &[plain("0164 020000")]);
    let strict = oracle(STRICT_MAC, &[plain("0164 020000")]);

    let mut bluez = Bluez::start(dir);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p)).unwrap();
    let dd = dir.join("data");
    let bus = bluez.address.clone();
    let env = [("DBUS_SYSTEM_BUS_ADDRESS", bus.as_str())];
    let g = Gateway::start_with_env(&dd, &cfg, &p, &[], &env);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    let up = wait_audit(&dd, "the BLE link up", |r| ble_link(r, "Up"));
    let why = up["reason"].as_str().unwrap_or_default();
    assert!(why.contains("hci0"), "{up}");
    assert!(why.contains("passive scanning"), "{up}");
    assert_eq!(bluez.calls("RegisterMonitor"), 1, "one monitor registered");

    // passive: BlueZ reports only what Warden's BTHome monitor matches. Service data under
    // another UUID (Xiaomi's 0xFE95) is dropped and makes no device object; the same address
    // sending BTHome (the positive control) is reported, becomes a device and lands pending
    let other = oracle(OTHER_MAC, &[plain("0001 0164")]);
    assert_eq!(bluez.adv_other(OTHER_MAC, "fe95", "3020aa01"), "dropped");
    assert_eq!(bluez.peer(&["device-exists", OTHER_MAC]), "no");
    bluez.adv(OTHER_MAC, &other[0].service_data);
    assert_eq!(bluez.peer(&["device-exists", OTHER_MAC]), "yes");
    wait_audit(
        &dd,
        "the BTHome advertiser found by the monitor registered",
        |r| is(r, "device-registered", OTHER),
    );

    // the encrypted sensor is provisioned with its bind key; the strict one with a profile only
    let devs = dir.join("devices.toml");
    std::fs::write(
        &devs,
        format!(
            r#"[[devices]]
id = "{ENC}"
profile = "bleenc"
credentials = {{ bindkey = "hex:{KEY}" }}

[[devices]]
id = "{STRICT}"
profile = "bleenc"
"#
        ),
    )
    .unwrap();
    let o = g.cli(&["devices", "import", devs.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // an unknown plain advertiser lands pending once, with what its advert tells, and nothing of
    // it is published while pending
    bluez.adv(PLAIN_MAC, &plains[0].service_data);
    bluez.adv(PLAIN_MAC, &plains[0].service_data);
    let reg = wait_audit(&dd, "the plain sensor registered", |r| {
        is(r, "device-registered", PLAIN)
    });
    let reason = reg["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("name: BTHome sensor"), "{reg}");
    assert!(reason.contains("bthome: v2, plain"), "{reg}");
    assert!(reason.contains("address: random static"), "{reg}");
    assert_eq!(device_show(&g, PLAIN)["device"]["status"], "pending");
    approve(&g, PLAIN, "blesensor");
    assert_eq!(
        audit_where(&dd, |r| is(r, "device-registered", PLAIN)).len(),
        1,
        "registered once, not once per advert"
    );
    assert!(published(&sub, PLAIN).is_empty(), "published while pending");

    // plain adverts after approval: the values equal bthome-ble's, at assurance `none`
    bluez.adv(PLAIN_MAC, &plains[1].service_data);
    wait_equal_to_oracle(&sub, PLAIN, &plains[1], "the plain sensor's values");
    let temp = latest(&sub, PLAIN, "temperature").unwrap();
    assert_eq!(temp["assurance"], "none", "{temp}");
    assert_eq!(temp["unit"], "°C", "{temp}");
    assert_eq!(temp["rssi"], -60.0, "{temp}");
    bluez.adv(PLAIN_MAC, &plains[2].service_data);
    wait_equal_to_oracle(&sub, PLAIN, &plains[2], "the button and dimmer events");
    // the same packet id again is a radio repeat: not published twice
    bluez.adv(PLAIN_MAC, &plains[2].service_data);
    bluez.adv(PLAIN_MAC, &plains[1].service_data);
    let pr = published(&sub, PLAIN);
    assert_eq!(pr["button"].len(), 1, "{pr:?}");

    // encrypted adverts: decrypted and published at `shared-key` + fresh, equal to bthome-ble's
    bluez.adv(ENC_MAC, &encs[0].service_data);
    wait_equal_to_oracle(&sub, ENC, &encs[0], "the encrypted sensor's values");
    let t0 = latest(&sub, ENC, "temperature").unwrap();
    assert_eq!(t0["assurance"], "shared-key", "{t0}");
    assert_eq!(t0["fresh"], true, "{t0}");
    bluez.adv(ENC_MAC, &encs[1].service_data);
    wait_equal_to_oracle(&sub, ENC, &encs[1], "two temperatures and a button");
    let before = published(&sub, ENC);

    // forgeries: each refused and audited with its cause, nothing published
    bluez.adv(ENC_MAC, &encs[2].service_data);
    wait_audit(&dd, "the wrong key refused", |r| {
        is(r, "uplink", ENC) && cause(r) == "bad-mic"
    });
    bluez.adv(ENC_MAC, &encs[0].service_data);
    let replay = wait_audit(&dd, "the replayed counter refused", |r| {
        is(r, "uplink", ENC) && cause(r) == "replay"
    });
    assert!(
        replay["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("counter 100 after 101"),
        "{replay}"
    );
    bluez.adv(ENC_MAC, &encs[3].service_data);
    wait_audit(&dd, "the counter restart refused", |r| {
        is(r, "uplink", ENC) && cause(r) == "counter-restart"
    });
    bluez.adv(ENC_MAC, &spoof[0].service_data);
    wait_audit(&dd, "the plain spoof of the encrypted MAC refused", |r| {
        is(r, "uplink", ENC) && cause(r) == "downgrade"
    });
    // an unknown encrypted advertiser: registered pending once (as encrypted), its advert refused
    // for want of a key
    bluez.adv(UNKNOWN_ENC_MAC, &encs[0].service_data);
    let reg = wait_audit(&dd, "the unknown encrypted sensor registered", |r| {
        is(r, "device-registered", UNKNOWN_ENC)
    });
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("bthome: v2, encrypted"),
        "{reg}"
    );
    wait_audit(&dd, "the unknown encrypted advert refused", |r| {
        is(r, "uplink", UNKNOWN_ENC) && cause(r) == "no-key"
    });
    // a device whose profile requires shared-key: its plain advert is denied by the profile
    bluez.adv(STRICT_MAC, &strict[0].service_data);
    let denied = wait_audit(&dd, "the strict device's plain advert denied", |r| {
        is(r, "uplink", STRICT) && r["verdict"] == "deny"
    });
    assert!(
        denied["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("below the profile's minimum `shared-key`"),
        "{denied}"
    );
    // positive control: the next genuine advert goes through, and only it was added
    bluez.adv(ENC_MAC, &encs[4].service_data);
    wait_equal_to_oracle(
        &sub,
        ENC,
        &encs[4],
        "the genuine advert after the forgeries",
    );
    let after = published(&sub, ENC);
    for (point, vals) in &after {
        let old = before.get(point).map_or(0, Vec::len);
        let added = vals.len() - old;
        let expected = usize::from(encs[4].values.contains_key(point.as_str()));
        assert_eq!(added, expected, "{point}: {vals:?} (before {before:?})");
    }
    assert!(published(&sub, STRICT).is_empty());
    assert!(published(&sub, UNKNOWN_ENC).is_empty());

    // hostile service data from the approved plain sensor: truncated, oversized, an unknown
    // object id first, a BTHome version that is not 2: each refused with its cause, none published
    let before = published(&sub, PLAIN);
    for (sd, c) in [
        ("4002ca".to_owned(), "truncated"),
        (format!("40{}", "01".repeat(300)), "oversized"),
        ("403001".to_owned(), "unknown-object"),
        ("200164".to_owned(), "bad-version"),
    ] {
        bluez.adv(PLAIN_MAC, &sd);
        wait_audit(&dd, &format!("the {c} advert refused"), |r| {
            is(r, "uplink", PLAIN) && cause(r) == c
        });
    }
    assert_eq!(published(&sub, PLAIN), before, "nothing of them published");

    // a scan through the operations seam lists what is around, with RSSI and progress
    let mut scan = Cli::spawn(
        &g,
        &["adapter", "ble", "scan", "--seconds", "3"],
        &dir.join("scan.txt"),
    );
    wait_for(T, "the scan running", || {
        let t = scan.text();
        (!t.is_empty()).then_some(())
    });
    bluez.adv(PLAIN_MAC, &plains[0].service_data);
    assert!(scan.wait_exit(), "{}", scan.text());
    let text = scan.text();
    assert!(text.contains(PLAIN), "{text}");
    assert!(text.contains("rssi -60 dBm"), "{text}");
    assert!(text.contains("done"), "{text}");

    // GATT: a connectable device; a write read back and confirmed by the mock's own state, a
    // write the device refuses, and a device that never resolves its services (timeout)
    bluez.peer(&["gatt-device", ACT_MAC, SERVICE, LEVEL, LOCKED]);
    let devs2 = dir.join("devices2.toml");
    std::fs::write(
        &devs2,
        format!("[[devices]]\nid = \"{ACT}\"\nprofile = \"bleact\"\n"),
    )
    .unwrap();
    let o = g.cli(&["devices", "import", devs2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(bluez.peer(&["gatt-value", ACT_MAC]), "-");
    let res = command(&g, &[ACT, "set_level", "value=0a0b"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(bluez.peer(&["gatt-value", ACT_MAC]), "0a0b");
    let res = command(&g, &[ACT, "locked"]);
    assert_eq!(res["outcome"], "device-error", "{res}");
    assert!(
        res["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Write not permitted"),
        "{res}"
    );
    let res = command(&g, &[PLAIN, "set_level", "value=01ff"]);
    assert_eq!(res["outcome"], "timeout", "{res}");
    // the actuator still works after the timeout (the connection lock was released)
    let res = command(&g, &[ACT, "set_level", "value=0c0d"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(bluez.peer(&["gatt-value", ACT_MAC]), "0c0d");

    // passive all along: discovery (active scanning) was never started, and the adverts above,
    // the same device's repeated ones included, all came through the monitor
    assert_eq!(bluez.calls("StartDiscovery"), 0, "passive: no discovery");
    assert_eq!(
        bluez.calls("SetDiscoveryFilter"),
        0,
        "passive: no discovery"
    );

    // BlueZ stopped mid-scan: link Down; back: link Up and scanning resumes
    bluez.stop_mock();
    wait_audit(&dd, "the BLE link down", |r| ble_link(r, "Down"));
    bluez.start_mock();
    wait_for(T, "the BLE link up again", || {
        (audit_where(&dd, |r| ble_link(r, "Up")).len() >= 2).then_some(())
    });
    bluez.adv(ENC_MAC, &encs[5].service_data);
    wait_equal_to_oracle(&sub, ENC, &encs[5], "an advert after the BlueZ restart");

    // the adapter removed (dongle unplugged) and returned
    bluez.peer(&["remove-adapter"]);
    wait_for(T, "the BLE link down again", || {
        (audit_where(&dd, |r| ble_link(r, "Down")).len() >= 2).then_some(())
    });
    bluez.peer(&["setup"]);
    wait_for(T, "the BLE link up a third time", || {
        (audit_where(&dd, |r| ble_link(r, "Up")).len() >= 3).then_some(())
    });
    bluez.adv(ENC_MAC, &encs[6].service_data);
    wait_equal_to_oracle(&sub, ENC, &encs[6], "an advert after the adapter returned");

    // the adapter powered off and on: Down, then Up with scanning restarted
    bluez.peer(&["power", "off"]);
    wait_for(T, "the BLE link down when powered off", || {
        (audit_where(&dd, |r| ble_link(r, "Down")).len() >= 3).then_some(())
    });
    bluez.peer(&["power", "on"]);
    wait_for(T, "the BLE link up when powered on", || {
        (audit_where(&dd, |r| ble_link(r, "Up")).len() >= 4).then_some(())
    });
    bluez.adv(ENC_MAC, &encs[7].service_data);
    wait_equal_to_oracle(
        &sub,
        ENC,
        &encs[7],
        "an advert after the adapter powered on",
    );

    // BlueZ releases the monitor (deactivated): link Down, then a new monitor and Up again
    assert_eq!(bluez.peer(&["release-monitors"]), "1");
    wait_for(T, "the BLE link down when the monitor is released", || {
        (audit_where(&dd, |r| ble_link(r, "Down")).len() >= 4).then_some(())
    });
    wait_for(T, "the BLE link up with a new monitor", || {
        (audit_where(&dd, |r| ble_link(r, "Up")).len() >= 5).then_some(())
    });
    let down = audit_where(&dd, |r| ble_link(r, "Down"));
    assert!(
        down.last().unwrap()["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("released the advertisement monitor"),
        "{down:?}"
    );
    bluez.adv(ENC_MAC, &encs[8].service_data);
    wait_equal_to_oracle(
        &sub,
        ENC,
        &encs[8],
        "an advert after the monitor was released",
    );

    // a monitor was registered again on the returned adapter, when it was powered on and after
    // the release, all without discovery
    assert_eq!(bluez.calls("RegisterMonitor"), 3);
    assert_eq!(bluez.calls("StartDiscovery"), 0, "passive: no discovery");

    // the counter is kept across a gateway restart: the last advert replayed is refused
    g.stop();
    let replays = audit_where(&dd, |r| is(r, "uplink", ENC) && cause(r) == "replay").len();
    let g = Gateway::start_with_env(&dd, &cfg, &p, &[], &env);
    wait_for(T, "the BLE link up after the gateway restart", || {
        (audit_where(&dd, |r| ble_link(r, "Up")).len() >= 6).then_some(())
    });
    bluez.adv(ENC_MAC, &encs[5].service_data);
    wait_for(T, "the old advert refused after the restart", || {
        (audit_where(&dd, |r| is(r, "uplink", ENC) && cause(r) == "replay").len() > replays)
            .then_some(())
    });
    assert_eq!(
        values(&sub, ENC, "battery").last(),
        encs[8].values.get("battery"),
        "nothing published after the restart's replay"
    );
    g.stop();
}

fn fallback_config(p: &Ports, scan: &str) -> String {
    format!(
        r#"{base}
[profiles.blesensor]
points = ["battery", "temperature", "humidity"]
min_assurance = "none"

[adapters.ble]
adapter = "hci0"
reconnect_s = 1
health_check_ms = 200
{scan}
"#,
        base = base_config(p)
    )
}

/// Without BlueZ's advertisement monitor manager the adapter falls back to discovery (active
/// scanning) with duplicates on, says so on the link (audited), and adverts still flow; with
/// `scan = "active"` it uses discovery even where the manager exists, and registers no monitor.
#[test]
fn ble_falls_back_to_active_discovery_without_a_monitor_manager() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let plains = oracle(
        PLAIN_MAC,
        &[plain("0001 0164 02ca09"), plain("0002 0150 026aff")],
    );

    // default `scan` (passive), BlueZ without the manager
    let bluez = Bluez::start_with(dir, false);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, fallback_config(&p, "")).unwrap();
    let dd = dir.join("data");
    let bus = bluez.address.clone();
    let env = [("DBUS_SYSTEM_BUS_ADDRESS", bus.as_str())];
    let g = Gateway::start_with_env(&dd, &cfg, &p, &[], &env);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    let up = wait_audit(&dd, "the BLE link up", |r| ble_link(r, "Up"));
    let why = up["reason"].as_str().unwrap_or_default();
    assert!(why.contains("active discovery (duplicates on)"), "{up}");
    assert!(why.contains("passive scanning unavailable"), "{up}");
    assert!(why.contains("no advertisement monitor manager"), "{up}");
    assert!(bluez.calls("StartDiscovery") >= 1);
    let filter = bluez.peer(&["filter"]);
    assert!(filter.contains("DuplicateData=true"), "{filter}");
    // adverts flow: registered pending, approved, values equal bthome-ble's
    bluez.adv(PLAIN_MAC, &plains[0].service_data);
    wait_audit(&dd, "the plain sensor registered", |r| {
        is(r, "device-registered", PLAIN)
    });
    approve(&g, PLAIN, "blesensor");
    bluez.adv(PLAIN_MAC, &plains[1].service_data);
    wait_equal_to_oracle(&sub, PLAIN, &plains[1], "values under active discovery");
    // discovery reports what the passive monitor would not (the control for the passive test)
    assert_eq!(bluez.adv_other(OTHER_MAC, "fe95", "3020aa01"), "reported");
    g.stop();
    drop(bluez);

    // `scan = "active"` where BlueZ has the manager: discovery, no monitor
    let dir2 = dir.join("forced");
    std::fs::create_dir_all(&dir2).unwrap();
    let bluez = Bluez::start_with(&dir2, true);
    let p = Ports::new();
    let cfg = dir2.join("w.toml");
    std::fs::write(&cfg, fallback_config(&p, "scan = \"active\"")).unwrap();
    let dd = dir2.join("data");
    let bus = bluez.address.clone();
    let env = [("DBUS_SYSTEM_BUS_ADDRESS", bus.as_str())];
    let g = Gateway::start_with_env(&dd, &cfg, &p, &[], &env);
    let up = wait_audit(&dd, "the BLE link up (forced active)", |r| {
        ble_link(r, "Up")
    });
    let why = up["reason"].as_str().unwrap_or_default();
    assert!(why.contains("active discovery (duplicates on)"), "{up}");
    assert!(!why.contains("unavailable"), "{up}");
    assert!(bluez.calls("StartDiscovery") >= 1);
    assert_eq!(
        bluez.calls("RegisterMonitor"),
        0,
        "no monitor when active is asked"
    );
    bluez.adv(PLAIN_MAC, &plains[0].service_data);
    wait_audit(&dd, "the plain sensor registered (forced active)", |r| {
        is(r, "device-registered", PLAIN)
    });
    g.stop();
}
