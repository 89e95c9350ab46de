//! systemd notifications (the packaged unit is `Type=notify` with `WatchdogSec=`): a gateway started
//! with `NOTIFY_SOCKET` and `WATCHDOG_USEC` sends `READY=1` once it is up, then `WATCHDOG=1` from
//! the pipeline's tick, and `STOPPING=1` when told to stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use warden_e2e::*;

/// Receives notifications until `done` holds for what arrived so far, or panics after `timeout`.
fn receive_until(
    sock: &UnixDatagram,
    got: &mut Vec<String>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) {
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !done(got) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {timeout:?} waiting for {what}; got {got:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("warden.toml");
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let dd = t.path().join("data");
    // 2 s watchdog period: a ping at least every second (half of it)
    let g = Gateway::start_with_env(
        &dd,
        &cfg,
        &p,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut got = Vec::new();
    let ready = |g: &[String]| g.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    receive_until(&sock, &mut got, Duration::from_secs(30), "READY=1", |g| {
        ready(g).is_some()
    });
    let r = ready(&got).unwrap();
    assert!(
        got[r].contains("STATUS=running"),
        "READY=1 comes with a status: {got:?}"
    );
    // two pings after readiness: the pipeline keeps turning
    receive_until(
        &sock,
        &mut got,
        Duration::from_secs(30),
        "two WATCHDOG=1 after READY=1",
        |g| {
            g.iter()
                .skip(r + 1)
                .filter(|m| m.as_str() == "WATCHDOG=1")
                .count()
                >= 2
        },
    );
    g.stop();
    receive_until(
        &sock,
        &mut got,
        Duration::from_secs(10),
        "STOPPING=1",
        |g| g.iter().any(|m| m == "STOPPING=1"),
    );
}

#[test]
fn no_watchdog_pings_for_another_process() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("warden.toml");
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let dd = t.path().join("data");
    // WATCHDOG_PID names another process (pid 1): the watchdog is not ours to ping
    let g = Gateway::start_with_env(
        &dd,
        &cfg,
        &p,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let mut got = Vec::new();
    g.stop();
    receive_until(
        &sock,
        &mut got,
        Duration::from_secs(30),
        "STOPPING=1",
        |g| g.iter().any(|m| m == "STOPPING=1"),
    );
    assert!(
        got.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "{got:?}"
    );
    assert!(!got.iter().any(|m| m.contains("WATCHDOG")), "{got:?}");
}
