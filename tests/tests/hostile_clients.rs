//! The management surface under hostile clients, against the real binary: 1,100 sockets that send
//! one header line and stall are cut (or refused at accept) while `/healthz` and the MQTT listener
//! keep answering; a flood of failed logins (API and MQTT) becomes a few audit records plus one
//! summary per source and window and a brute-force alarm, not one record per failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod api_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use api_support::*;
use warden_e2e::*;

const STALLED: usize = 1100;

/// Makes sure this process may hold the sockets it opens (the gateway raises its own limit).
fn enough_descriptors() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let want = (STALLED as u64) * 2 + 256;
    if l.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: l.maximum.map(|m| m.min(want)).or(Some(want)),
                maximum: l.maximum,
            },
        );
    }
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|c| c >= want),
        "open-file limit {now:?} < {want}"
    );
}

/// A socket from `source` (any 127/8 address) to the API that sends one header line and stalls.
fn stalled(source: [u8; 4], api: u16) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((source, 0)).into()).ok()?;
    s.connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], api)).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    let mut t: TcpStream = s.into();
    let _ = t.write_all(b"GET /api/status HTTP/1.1\r\n");
    Some(t)
}

/// How long until the gateway closes `s` (None if it did not within `within`).
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).ok()?;
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) if start.elapsed() < within => return Some(start.elapsed()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn healthz_ok(api: u16) -> Option<Duration> {
    let t = Instant::now();
    (http_get(api, "/healthz").as_deref() == Some("ok")).then(|| t.elapsed())
}

fn metric(port: u16, token: &str, name: &str) -> f64 {
    let (_, b) = http(port, "GET", "/metrics", Some(&bearer(token)), "");
    b.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn stalled_sockets_are_cut_while_healthz_and_mqtt_answer() {
    enough_descriptors();
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    let base = base_config(&p).replacen(
        "[api]\n",
        "[api]\nheader_timeout_s = 2\nmax_connections = 256\nmax_connections_per_source = 64\n",
        1,
    );
    std::fs::write(&cfg, base).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let token = std::fs::read_to_string(dd.join("api.token"))
        .unwrap()
        .trim()
        .to_owned();
    let mqtt_pw = operator_password(&dd);

    // 1) one source opens 1,100 stalled sockets: 64 are held, the rest closed at accept
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut socks = Vec::new();
    while socks.len() < STALLED && Instant::now() < deadline {
        if let Some(s) = stalled([127, 0, 0, 2], p.api) {
            socks.push(s);
        }
    }
    assert_eq!(socks.len(), STALLED, "could not open the sockets in time");
    let opened = deadline - Duration::from_secs(60);
    let h = healthz_ok(p.api).expect("/healthz must answer during the flood");
    assert_eq!(
        mqtt_connect(p.mqtt, "operator", &mqtt_pw),
        Some(0),
        "MQTT must answer during the flood"
    );
    for s in socks.iter_mut() {
        closed_within(s, Duration::from_secs(6)).expect("a stalled socket was never closed");
    }
    let all_closed = opened.elapsed();
    drop(socks);
    let refused = metric(p.api, &token, "warden_api_connections_refused_total");
    let timed_out = metric(p.api, &token, "warden_api_connections_timed_out_total");
    eprintln!(
        "one source, {STALLED} stalled sockets: {refused} refused at accept (per-source cap 64), \
         {timed_out} cut by the header timeout, all closed {all_closed:?} after the first opened; \
         /healthz answered in {h:?} during the flood"
    );
    assert!(refused >= 1.0, "the per-source cap never refused");
    assert!(
        refused + timed_out >= STALLED as f64,
        "{refused} + {timed_out}"
    );
    // how fast one stalled socket is cut: a few fresh ones, timed from connect
    let mut cuts = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut s = stalled([127, 0, 0, 3], p.api).unwrap();
        closed_within(&mut s, Duration::from_secs(6)).expect("never cut");
        cuts.push(start.elapsed());
    }
    eprintln!("a stalled socket is cut after {cuts:?} (header_timeout_s = 2)");
    for c in &cuts {
        assert!(
            *c >= Duration::from_millis(1500) && *c < Duration::from_secs(4),
            "{c:?}"
        );
    }

    // 2) 50 sources, 22 sockets each: the listener cap (256) holds, /healthz recovers within the
    // header timeout, MQTT never stops answering
    let mut socks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    'outer: for a in 1..=50u8 {
        for _ in 0..22 {
            if Instant::now() > deadline {
                break 'outer;
            }
            if let Some(s) = stalled([127, 0, 1, a], p.api) {
                socks.push(s);
            }
        }
    }
    assert_eq!(socks.len(), STALLED);
    assert_eq!(
        mqtt_connect(p.mqtt, "operator", &mqtt_pw),
        Some(0),
        "MQTT must answer during the flood"
    );
    let start = Instant::now();
    wait_for(
        Duration::from_secs(6),
        "/healthz after the listener cap",
        || healthz_ok(p.api),
    );
    let recovered = start.elapsed();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", gateway_pid(&g)))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!(
        "50 sources: /healthz answered again after {recovered:?}; gateway holds {fds} descriptors"
    );
    assert!(fds < 1024, "the gateway holds {fds} descriptors");
    drop(socks);

    assert!(metric(p.api, &token, "warden_api_connections_refused_total") > refused);
    assert!(healthz_ok(p.api).is_some());
    g.stop();
}

fn gateway_pid(g: &Gateway) -> u32 {
    // the API address file is written by the process; find the process by its data dir instead
    let dd = g.data_dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c).contains(&dd)
                        && String::from_utf8_lossy(&c).contains("run")
                })
                .unwrap_or(false)
        })
        .expect("gateway process")
}

#[test]
fn login_floods_are_aggregated_and_raise_an_alarm() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    let base = base_config(&p).replacen(
        "[api]\n",
        "[api]\nfailure_window_s = 3\nmax_login_failures = 30\nbrute_force_alarm = 20\n",
        1,
    );
    std::fs::write(&cfg, base).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let token = std::fs::read_to_string(dd.join("api.token"))
        .unwrap()
        .trim()
        .to_owned();

    // API: 100 wrong passwords and 100 wrong tokens, as fast as they are answered
    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..100 {
        let body = format!(r#"{{"name":"admin","password":"guess-{i}"}}"#);
        *codes
            .entry(http(p.api, "POST", "/api/login", None, &body).0)
            .or_default() += 1;
        *codes
            .entry(http(p.api, "GET", "/api/status", Some("Bearer nope"), "").0)
            .or_default() += 1;
    }
    eprintln!("API answers to 200 failed attempts: {codes:?}");
    assert_eq!(
        codes.get(&401),
        Some(&30),
        "30 failures checked, then refused unchecked"
    );
    assert_eq!(codes.get(&429), Some(&170));
    // MQTT: 100 wrong passwords
    let mut refused = 0;
    for _ in 0..100 {
        if mqtt_connect(p.mqtt, "operator", "wrong").is_some_and(|c| c == 4 || c == 5) {
            refused += 1;
        }
    }
    assert_eq!(refused, 100);
    assert!(
        metric(p.api, &token, "warden_brute_force_alarms_total") >= 1.0 || {
            // the API source is blocked until its window ends: read the metric after it
            std::thread::sleep(Duration::from_secs(4));
            metric(p.api, &token, "warden_brute_force_alarms_total") >= 2.0
        }
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        metric(p.api, &token, "warden_brute_force_alarms_total"),
        2.0
    );
    g.stop();

    let recs = audit_records(&dd);
    let count = |a: &str| recs.iter().filter(|r| r["action"] == a).count();
    let detail = |r: &serde_json::Value| json(r["detail"].as_str().unwrap_or("{}"));
    eprintln!(
        "audit: {} records in all; api-auth {}, broker-auth {}, login-failures {}, brute-force-suspected {}",
        recs.len(),
        count("api-auth"),
        count("broker-auth"),
        count("login-failures"),
        count("brute-force-suspected")
    );
    assert_eq!(count("api-auth"), 3, "the first 3 API failures in full");
    assert_eq!(count("broker-auth"), 3, "the first 3 MQTT failures in full");
    assert_eq!(
        count("brute-force-suspected"),
        2,
        "one alarm per listener and source"
    );
    let summed = |l: &str| -> u64 {
        recs.iter()
            .filter(|r| r["action"] == "login-failures" && detail(r)["listener"] == l)
            .map(|r| detail(r)["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(summed("api"), 30, "every checked API failure counted once");
    assert_eq!(summed("mqtt"), 100, "every MQTT failure counted once");
    assert!(recs.len() < 40, "{} records for 300 failures", recs.len());
}
