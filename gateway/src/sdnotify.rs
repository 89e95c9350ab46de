//! systemd's service notification protocol (sd_notify(3)), in a few lines over std's
//! `UnixDatagram`: `READY=1` once the broker, the pipeline and the API are up (the unit is
//! `Type=notify`), `WATCHDOG=1` from the pipeline's tick at half of `WATCHDOG_USEC` (so a stalled
//! message path stops the pings and systemd restarts the gateway), `STOPPING=1` at shutdown.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or `Type=simple`) everything here is a no-op.
//! The variables are read, not removed: removing them would need `unsafe` (edition 2024), and the
//! gateway starts no long-lived children that could send in its name (`NotifyAccess=main` makes
//! systemd ignore any other process anyway).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection to the service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`: a path, or `@name` for an abstract socket. `None` when unset or
    /// unusable (logged).
    pub fn from_env() -> Option<Arc<Notifier>> {
        let raw = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::connect(&raw) {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                tracing::warn!(socket = ?raw, error = %e, "NOTIFY_SOCKET is set but unusable: no readiness or watchdog notifications");
                None
            }
        }
    }

    fn connect(raw: &std::ffi::OsStr) -> io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let b = raw.as_bytes();
        let addr = match b.split_first() {
            Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
            Some((b'/', _)) => SocketAddr::from_pathname(raw)?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an @abstract name",
                ));
            }
        };
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends one notification (`KEY=value` lines).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.sock
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Sends, logging a failure instead of returning it (the gateway runs on without systemd).
    pub fn notify(&self, msg: &str) {
        if let Err(e) = self.send(msg) {
            tracing::warn!(error = %e, msg, "sd_notify failed");
        }
    }
}

/// Watchdog pings: `WATCHDOG=1` every half of `WATCHDOG_USEC`, driven by the caller's tick.
pub struct Watchdog {
    notifier: Arc<Notifier>,
    every: Duration,
    last: Option<Instant>,
    failed: bool,
}

impl Watchdog {
    /// When systemd asked for pings (`WATCHDOG_USEC` > 0, and `WATCHDOG_PID` unset or ours).
    pub fn from_env(notifier: &Arc<Notifier>) -> Option<Watchdog> {
        let usec = std::env::var("WATCHDOG_USEC").ok()?;
        let pid = std::env::var("WATCHDOG_PID").ok();
        let every = ping_interval(&usec, pid.as_deref(), std::process::id())?;
        Some(Watchdog {
            notifier: notifier.clone(),
            every,
            last: None,
            failed: false,
        })
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    /// Pings when at least half the watchdog period passed since the last ping.
    pub fn tick(&mut self, now: Instant) {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return;
        }
        self.last = Some(now);
        match self.notifier.send("WATCHDOG=1") {
            Ok(()) => self.failed = false,
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::warn!(error = %e, "watchdog ping failed");
            }
            Err(_) => {}
        }
    }
}

/// Half of `WATCHDOG_USEC`, or `None` when it is not a positive number or `WATCHDOG_PID` names
/// another process.
fn ping_interval(usec: &str, watchdog_pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(p) = watchdog_pid
        && p.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn interval_is_half_the_period_for_this_process_only() {
        assert_eq!(
            ping_interval("30000000", None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            ping_interval("4000000", Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(ping_interval("4000000", Some("8"), 7), None);
        assert_eq!(ping_interval("0", None, 7), None);
        assert_eq!(ping_interval("soon", None, 7), None);
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.as_os_str()).unwrap();
        n.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        let name = format!("warden-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let n = Notifier::connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        let mut w = Watchdog {
            notifier: Arc::new(n),
            every: Duration::from_secs(5),
            last: None,
            failed: false,
        };
        let t0 = Instant::now();
        w.tick(t0);
        w.tick(t0 + Duration::from_secs(1)); // too early: no second ping
        w.tick(t0 + Duration::from_secs(5));
        rx.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        while let Ok(len) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(got, ["WATCHDOG=1", "WATCHDOG=1"]);

        assert!(Notifier::connect(std::ffi::OsStr::new("relative")).is_err());
    }
}
