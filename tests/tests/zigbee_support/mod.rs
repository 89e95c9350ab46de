//! Helpers for the Zigbee end-to-end tests: the project's simulated coordinators
//! (`tests/peers/zigbee/znp_sim.py` on zigpy-znp's classes, `ezsp_sim.py` on bellows's) on a pty,
//! their control port, and the gateway config that drives them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use warden_e2e::*;

pub const T: Duration = Duration::from_secs(30);

/// IEEE addresses of the simulated devices (sim_devices.py).
pub const TH1: &str = "zigbee:00124b0000001001";
pub const MOTION1: &str = "zigbee:00124b0000001002";
pub const PLUG1: &str = "zigbee:00124b0000001003";
/// The Zigbee specification's example install code with its CRC (link key 66B6…02BB).
pub const INSTALL_CODE: &str = "83fed3407a939723a5c639b26916d505c3b5";

pub fn peers() -> PathBuf {
    peer_dir("zigbee")
}

pub fn python() -> PathBuf {
    peer_python("zigbee", "venv", "zigbee")
}

/// A simulated coordinator (ZNP or EZSP) on a pty, killed when dropped.
pub struct Sim {
    child: Child,
    pub link: PathBuf,
    pub control: u16,
    pub log: PathBuf,
}

impl Sim {
    pub fn start(stack: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::start_on(
            stack,
            &dir.join(format!("tty{stack}")),
            &dir.join(format!("{stack}-sim.log")),
            extra,
        )
    }

    /// A simulator whose pty is linked at `link` (another stick plugged into the same port).
    pub fn start_on(stack: &str, link: &Path, log: &Path, extra: &[&str]) -> Self {
        let (link, log) = (link.to_owned(), log.to_owned());
        let control = free_port();
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(python())
            .arg(peers().join(format!("{stack}_sim.py")))
            .arg("--link")
            .arg(&link)
            .arg("--control-port")
            .arg(control.to_string())
            .args(extra)
            .current_dir(peers())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("the simulator (run tests/scripts/install-zigbee.sh)");
        let s = Self {
            child,
            link,
            control,
            log,
        };
        wait_for(
            Duration::from_secs(30),
            "the simulator's pty and control port",
            || {
                (s.link.exists() && TcpStream::connect(("127.0.0.1", s.control)).is_ok())
                    .then_some(())
            },
        );
        s
    }

    /// One control line; returns the reply line.
    pub fn ctl(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.control)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out).unwrap();
        out.trim().to_owned()
    }

    pub fn state(&self) -> serde_json::Value {
        let r = self.ctl("state");
        json(r.strip_prefix("OK ").unwrap_or(&r))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway config: profiles for the simulated sensors and plug, the Zigbee adapter on `link`.
pub fn config(p: &Ports, link: &Path) -> String {
    format!(
        r#"{base}
[profiles.zsensor]
points = ["temperature", "humidity", "battery", "battery_voltage", "occupancy", "motion",
          "tamper", "battery_low"]
events = ["motion", "tamper", "battery_low"]
commands = ["write_attribute"]
min_assurance = "channel"

[profiles.zplug]
points = ["on", "power", "energy", "voltage", "current"]
commands = ["turn_on", "turn_off", "toggle"]
min_assurance = "channel"

[adapters.zigbee]
port = "{link}"
reconnect_s = 1
"#,
        base = base_config(p),
        link = link.display()
    )
}

/// Audit records (JSON) matching `pred`.
pub fn audit_where(
    data_dir: &Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    audit_records(data_dir)
        .into_iter()
        .map(|mut r| {
            // `detail` is stored as JSON text: parse it so tests can look inside
            if let Some(d) = r["detail"]
                .as_str()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            {
                r["detail"] = d;
            }
            r
        })
        .filter(|r| pred(r))
        .collect()
}

/// Waits for an audit record matching `pred` and returns it.
pub fn wait_audit(
    data_dir: &Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(T, what, || audit_where(data_dir, &pred).into_iter().next())
}

/// The latest telemetry envelope of `device`'s `point`.
pub fn latest(sub: &Subscriber, device: &str, point: &str) -> Option<serde_json::Value> {
    let t = format!("warden/devices/{device}/telemetry/{point}");
    sub.lines()
        .into_iter()
        .rev()
        .find(|(topic, _)| *topic == t)
        .map(|(_, p)| json(&p))
}

/// Every telemetry value of `device`'s `point` seen so far.
pub fn values(sub: &Subscriber, device: &str, point: &str) -> Vec<serde_json::Value> {
    let t = format!("warden/devices/{device}/telemetry/{point}");
    sub.lines()
        .into_iter()
        .filter(|(topic, _)| *topic == t)
        .map(|(_, p)| json(&p)["value"].clone())
        .collect()
}

pub fn device_show(g: &Gateway, id: &str) -> serde_json::Value {
    let o = g.cli(&["devices", "show", id]);
    if !o.status.success() {
        return serde_json::Value::Null;
    }
    json(&stdout(&o))
}

/// Runs `warden command` and returns the printed result JSON (whatever the outcome).
pub fn command(g: &Gateway, id: &str, name: &str) -> serde_json::Value {
    let o = g.cli(&["command", id, name]);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}

/// `warden adapter zigbee …` started in the background, its output in a file.
pub struct Cli {
    child: Child,
    pub out: PathBuf,
}

impl Cli {
    pub fn spawn(g: &Gateway, args: &[&str], out: &Path) -> Self {
        let f = std::fs::File::create(out).unwrap();
        let child = Command::new(warden_bin())
            .arg("--data-dir")
            .arg(&g.data_dir)
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            out: out.to_owned(),
        }
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn wait_text(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(T, what, || {
            let t = self.text();
            pred(&t).then_some(t)
        })
    }

    /// Waits for the process to end; returns whether it succeeded.
    pub fn wait_exit(&mut self) -> bool {
        wait_for(T, "the CLI to finish", || {
            self.child.try_wait().unwrap().map(|s| s.success())
        })
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
