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

/// A gateway whose notification socket the test holds, with a 2 s watchdog period (a ping at least
/// every second, half of it) and `env` on top.
fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, UnixDatagram, Gateway) {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("warden.toml");
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let sock_path = t.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut vars = vec![
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ];
    vars.extend_from_slice(env);
    let g = Gateway::start_with_env(&t.path().join("data"), &cfg, &p, &[], &vars);
    (t, sock, g)
}

fn ready(got: &[String]) -> Option<usize> {
    got.iter().position(|m| m.lines().any(|l| l == "READY=1"))
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let (_t, sock, g) = start(&[]);
    let mut got = Vec::new();
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
    // WATCHDOG_PID names another process (pid 1): the watchdog is not ours to ping
    let (_t, sock, g) = start(&[("WATCHDOG_PID", "1")]);
    let mut got = Vec::new();
    receive_until(&sock, &mut got, Duration::from_secs(30), "READY=1", |g| {
        ready(g).is_some()
    });
    // up for 4 s: had the watchdog been ours there would be pings by now (the test above shows
    // one a second under the same period)
    wait_for(Duration::from_secs(30), "4 s of uptime", || {
        (g.status()["uptime_s"].as_u64()? >= 4).then_some(())
    });
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
