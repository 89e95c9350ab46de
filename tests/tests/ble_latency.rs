//! BLE figures end to end: the latency from an advert put on the (mock) BlueZ bus to its MQTT
//! publish arriving at a `mosquitto_sub` of the embedded broker — D-Bus signal, btleplug, the
//! adapter (AES-CCM, counter persisted in the sealed state store), the pipeline, signing and the
//! broker — and the gateway's RSS before and after 1,000 distinct advertisers land pending.
//! Adverts are encrypted by bthome-ble with the test's key and sent one at a time by one
//! long-running bluez_peer.py; the gateway scans passively (its BTHome advertisement monitor, the
//! default), so each advert is matched against the monitor's pattern by the mock BlueZ. It asserts that every advert is published and every advertiser
//! registered, and prints p50/p99, the RSS and a JSON line; the figures are a measurement (run it
//! with a release build for the README), never a pass/fail bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod ble_support;
#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ble_support::{Bluez, KEY, Want, ble_link, oracle, peers};
use warden_e2e::*;
use zigbee_support::{T, audit_where, wait_audit};

const MAC: &str = "54:48:E6:8F:80:A5";
const DEV: &str = "ble:5448e68f80a5";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn ble_advert_to_mqtt_latency_and_rss_with_1000_advertisers() {
    const N: usize = 200;
    const MANY: usize = 1000;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();

    // N encrypted adverts, one temperature each, counters 1..=N (values differ so each is new)
    let objects: Vec<&'static str> = (0..N)
        .map(|i| &*Box::leak(format!("02{:04x}", 2000 + i as u16).into_boxed_str()))
        .collect();
    let wants: Vec<Want> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| Want {
            objects: o,
            counter: Some(i as u32 + 1),
            key: None,
        })
        .collect();
    let adverts = oracle(MAC, &wants);
    assert!(adverts.iter().all(|a| a.verified));

    let bluez = Bluez::start(dir);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[registry]\nmax_pending = 2000\n\n[profiles.bleenc]\npoints = [\"temperature\"]\n\
             min_assurance = \"shared-key\"\nrequire_fresh = true\n\n[adapters.ble]\nadapter = \"hci0\"\n\
             new_devices_per_minute = 100000\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = dir.join("data");
    let bus = bluez.address.clone();
    let g = Gateway::start_with_env(&dd, &cfg, &p, &[], &[("DBUS_SYSTEM_BUS_ADDRESS", &bus)]);
    let up = wait_audit(&dd, "the BLE link up", |r| ble_link(r, "Up"));
    assert!(
        up["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("passive scanning"),
        "{up}"
    );
    let devs = dir.join("d.toml");
    std::fs::write(
        &devs,
        format!(
            "[[devices]]\nid = \"{DEV}\"\nprofile = \"bleenc\"\ncredentials = {{ bindkey = \"hex:{KEY}\" }}\n"
        ),
    )
    .unwrap();
    assert!(
        g.cli(&["devices", "import", devs.to_str().unwrap()])
            .status
            .success()
    );

    // mosquitto_sub's stdout read line by line as it arrives, timestamped on arrival
    let mut sub = Command::new("mosquitto_sub")
        .args(["-V", "mqttv311"])
        .args(operator_args(
            &dd,
            p.mqtt,
            &["-t", &format!("warden/devices/{DEV}/telemetry/#")],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Instant>();
    let out = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if l.is_err() || tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });

    let mut peer = Command::new("/usr/bin/python3")
        .arg(peers().join("bluez_peer.py"))
        .arg("serve")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_peer = peer.stdin.take().unwrap();
    let mut from_peer = BufReader::new(peer.stdout.take().unwrap());
    let mut send = |mac: &str, sd: &str| {
        writeln!(to_peer, "adv {mac} {sd}").unwrap();
        to_peer.flush().unwrap();
        let mut l = String::new();
        from_peer.read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "ok");
    };

    // the subscription is live once the first advert arrives (not timed)
    send(MAC, &adverts[0].service_data);
    rx.recv_timeout(T).expect("the first advert published");
    let mut lat = Vec::with_capacity(N);
    for a in &adverts[1..] {
        let t0 = Instant::now();
        send(MAC, &a.service_data);
        let at = rx.recv_timeout(T).expect("advert published");
        lat.push(at.saturating_duration_since(t0));
    }
    assert_eq!(lat.len(), N - 1);
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // RSS with 1,000 distinct advertisers (plain adverts from random static addresses)
    let pid = g.pid();
    let idle = memory_kib(pid).0;
    for i in 0..MANY {
        let mac = format!(
            "C4:7C:8D:{:02X}:{:02X}:{:02X}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        send(&mac, "400164");
    }
    wait_for(T, "1,000 advertisers registered", || {
        (audit_where(&dd, |r| {
            r["action"] == "device-registered"
                && r["device"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("ble:c47c8d"))
        })
        .len()
            >= MANY)
            .then_some(())
    });
    let many = memory_kib(pid).0;

    drop(to_peer);
    let _ = peer.wait();
    let _ = sub.kill();
    let _ = sub.wait();
    g.stop();
    println!(
        "BLE advert (mock BlueZ) -> MQTT, {} encrypted adverts: p50 {:.2} ms, p99 {:.2} ms; gateway RSS {} KiB with 1 device, {} KiB with {MANY} more advertisers pending",
        N - 1,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        idle,
        many
    );
    println!(
        "{{\"bench\":\"ble-e2e\",\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"rss_kib_idle\":{idle},\"rss_kib_1000\":{many}}}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
