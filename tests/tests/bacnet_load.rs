//! BACnet at scale (a measurement, `#[ignore]`d): 100 devices × 50 analog inputs, each device a
//! UDP socket of its own on 127.0.1.1–100:47808 answered by `warden_bacnet::testing::Responder`
//! (the adapter's own codecs answering Who-Is, ReadProperty, ReadPropertyMultiple and
//! SubscribeCOV). The end-to-end test against bacpypes3 proves the protocol; this measures Warden: RSS once every
//! device is interviewed and every object subscribed, and the latency from an Unconfirmed COV
//! notification leaving a device's socket to its MQTT publish at a subscriber.
//!
//! `cargo build --release -p warden --bins && cargo test --release -p warden-e2e --test bacnet_load -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use warden_bacnet::apdu::Apdu;
use warden_bacnet::services::{self, prop, unconfirmed};
use warden_bacnet::tag::{AppValue, Datum, ObjectId};
use warden_bacnet::testing::{Responder, datagram};
use warden_e2e::*;

const DEVICES: u32 = 100;
const OBJECTS: u32 = 50;
const SAMPLES: usize = 300;
const WARDEN: &str = "127.0.0.29:47808";

fn instance(i: u32) -> u32 {
    20_000 + i
}

/// 100 responders, one thread each.
struct Farm {
    stop: Arc<AtomicBool>,
    sockets: Vec<Arc<UdpSocket>>,
    subscribed: Arc<AtomicUsize>,
}

impl Farm {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicUsize::new(0));
        let mut sockets = Vec::new();
        for i in 1..=DEVICES {
            let s = Arc::new(UdpSocket::bind(format!("127.0.1.{i}:47808")).unwrap());
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            sockets.push(s.clone());
            let (stop, subscribed) = (stop.clone(), subscribed.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = s.recv_from(&mut buf) else {
                        continue;
                    };
                    let r = Responder {
                        instance: instance(i),
                        objects: OBJECTS,
                        routed: None,
                    };
                    let count = |_| {
                        subscribed.fetch_add(1, Ordering::Relaxed);
                    };
                    if let Some(a) = r.answer(&buf[..n], count) {
                        let _ = s.send_to(&a, from);
                    }
                }
            });
        }
        Self {
            stop,
            sockets,
            subscribed,
        }
    }

    /// An Unconfirmed COV notification of `value` for AI-`object` of device `i`.
    fn notify(&self, i: u32, object: u32, value: f32, to: SocketAddr) {
        let data = services::cov_notification(&services::CovNotification {
            process: warden_bacnet::runtime::PROCESS_ID,
            device: ObjectId::new(8, instance(i)),
            object: ObjectId::new(0, object),
            time_remaining: 300,
            values: vec![(
                prop::PRESENT_VALUE,
                None,
                vec![Datum::App(AppValue::Real(value))],
                None,
            )],
        });
        let d = datagram(
            &Apdu::Unconfirmed {
                service: unconfirmed::COV_NOTIFICATION,
                data: &data,
            },
            None,
        );
        self.sockets[(i - 1) as usize].send_to(&d, to).unwrap();
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn bacnet_100_devices_50_objects_rss_and_cov_latency() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let farm = Farm::start();
    let p = Ports::new();
    let devices: Vec<String> = (1..=DEVICES)
        .map(|i| format!("\"127.0.1.{i}:47808\""))
        .collect();
    let points: Vec<String> = (1..=OBJECTS).map(|i| format!("\"t{i}\"")).collect();
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[profiles.farm]
points = [{points}]
min_assurance = "none"

[adapters.bacnet]
bind = "{WARDEN}"
listen_broadcast = false
discover_on_start = false
devices = [{devices}]
cov = "unconfirmed"
cov_lifetime_s = 3600
poll_s = 600
apdu_timeout_ms = 2000
max_devices = 200
"#,
            base = base_config(&p),
            points = points.join(", "),
            devices = devices.join(", ")
        ),
    )
    .unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let (idle, _) = memory_kib(g.pid());
    let t0 = Instant::now();
    let mut last = String::new();
    let done = (0..1200).any(|_| {
        last = stdout(&g.cli(&["devices", "list"]));
        let n = last.lines().filter(|l| l.contains("bacnet:0-2")).count();
        n == DEVICES as usize || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(done, "devices list:\n{last}\nlog:\n{}", g.log_text());
    let registered = t0.elapsed();
    for i in 1..=DEVICES {
        let id = format!("bacnet:0-{}", instance(i));
        let o = g.cli(&[
            "devices",
            "approve",
            &id,
            "--profile",
            "farm",
            "--reason",
            "load",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    wait_for(Duration::from_secs(120), "every object subscribed", || {
        (farm.subscribed.load(Ordering::Relaxed) >= (DEVICES * OBJECTS) as usize).then_some(())
    });
    let subscribed = t0.elapsed();
    let (rss_all, _) = memory_kib(g.pid());

    let sub = TimedSubscriber::spawn(&operator_args(
        &dd,
        p.mqtt,
        &["-t", "warden/devices/+/telemetry/+"],
    ));
    let to: SocketAddr = WARDEN.parse().unwrap();
    // warm-up until the subscription is live (the first publish seen)
    wait_for(Duration::from_secs(30), "the subscriber live", || {
        let mark = sub.len();
        farm.notify(1, 1, 999.0, to);
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if sub.since(mark).iter().any(|(_, t, _)| t.ends_with("/t1")) {
                return Some(());
            }
            std::thread::yield_now();
        }
        None
    });
    let mut lat = Vec::new();
    let mut seen_devices = HashSet::new();
    for k in 0..SAMPLES {
        let i = (k as u32 % DEVICES) + 1;
        let obj = (k as u32 * 7 % OBJECTS) + 1;
        let value = 1000.0 + k as f32;
        let topic = format!("warden/devices/bacnet:0-{}/telemetry/t{obj}", instance(i));
        let mark = sub.len();
        let sent = Instant::now();
        farm.notify(i, obj, value, to);
        let at = wait_for(
            Duration::from_secs(30),
            "the notification published",
            || {
                sub.since(mark).into_iter().find_map(|(at, t, pl)| {
                    (t == topic && json(&pl)["value"].as_f64() == Some(f64::from(value)))
                        .then_some(at)
                })
            },
        );
        seen_devices.insert(i);
        lat.push(at.duration_since(sent).as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let (rss_after, hwm) = memory_kib(g.pid());
    println!(
        "{}",
        serde_json::json!({
            "bench": "bacnet-e2e",
            "devices": DEVICES, "objects_per_device": OBJECTS,
            "registered_s": registered.as_secs_f64(), "all_subscribed_s": subscribed.as_secs_f64(),
            "rss_idle_kib": idle, "rss_all_subscribed_kib": rss_all,
            "rss_after_samples_kib": rss_after, "hwm_kib": hwm,
            "cov_to_mqtt_samples": SAMPLES,
            "p50_ms": percentile(&lat, 50), "p99_ms": percentile(&lat, 99), "max_ms": lat.last(),
        })
    );
    assert_eq!(seen_devices.len(), DEVICES as usize);
    g.stop();
}
