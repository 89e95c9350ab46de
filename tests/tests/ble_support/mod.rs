//! Helpers for the BLE end-to-end tests: a private dbus-daemon with python-dbusmock's BlueZ
//! template on it, extended by tests/peers/ble/bluez_template.py with BlueZ's advertisement
//! monitor manager (driven by tests/peers/ble/bluez_peer.py), and bthome-ble as the encoding and
//! decoding oracle (tests/peers/ble/bthome_oracle.py, in the venv install-ble.sh makes).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use warden_e2e::*;

use crate::zigbee_support::T;

/// The test's own bind key (not the published example key).
pub const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ble")
}

pub fn venv_python() -> PathBuf {
    let p = peers().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run tests/scripts/install-ble.sh",
        p.display()
    );
    p
}

/// A private D-Bus bus and python-dbusmock's BlueZ on it; both killed when dropped.
pub struct Bluez {
    dir: PathBuf,
    pub address: String,
    daemon: Child,
    mock: Option<Child>,
    /// Whether the adapters offer org.bluez.AdvertisementMonitorManager1 (passive scanning).
    monitor_manager: bool,
}

impl Bluez {
    /// BlueZ with the advertisement monitor manager (passive scanning possible).
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, true)
    }

    /// BlueZ with or without the advertisement monitor manager.
    pub fn start_with(dir: &Path, monitor_manager: bool) -> Self {
        let sock = dir.join("bus");
        let address = format!("unix:path={}", sock.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (run tests/scripts/install-ble.sh)");
        wait_for(T, "the private D-Bus socket", || {
            sock.exists().then_some(())
        });
        let mut b = Self {
            dir: dir.to_owned(),
            address,
            daemon,
            mock: None,
            monitor_manager,
        };
        b.start_mock();
        b
    }

    /// Starts the BlueZ template (dbusmock's bluez5 plus the monitor manager) and adds hci0.
    pub fn start_mock(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("bluez-mock.log"))
            .unwrap();
        let params = format!("{{\"monitor_manager\": {}}}", self.monitor_manager);
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--system", "--template"])
            .arg(peers().join("bluez_template.py"))
            .args(["--parameters", &params])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3-dbusmock");
        self.mock = Some(child);
        wait_for(T, "the BlueZ mock's adapter", || {
            self.try_peer(&["setup"]).map(|_| ())
        });
    }

    pub fn stop_mock(&mut self) {
        if let Some(mut c) = self.mock.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn try_peer(&self, args: &[&str]) -> Option<String> {
        let o = Command::new("/usr/bin/python3")
            .arg(peers().join("bluez_peer.py"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    pub fn peer(&self, args: &[&str]) -> String {
        self.try_peer(args)
            .unwrap_or_else(|| panic!("bluez_peer.py {args:?} failed"))
    }

    /// One BTHome advert on the air, which BlueZ must report (to a monitor or to discovery).
    pub fn adv(&self, mac: &str, service_data: &str) {
        let r = self.peer(&["adv", mac, service_data]);
        assert_eq!(r, "reported", "BlueZ did not report {mac}'s advert");
    }

    /// One advert with service data under another 16-bit UUID (hex, `fe95`); whether BlueZ
    /// reported it (`reported`) or not (`dropped`).
    pub fn adv_other(&self, mac: &str, uuid16: &str, service_data: &str) -> String {
        self.peer(&["adv", mac, service_data, "Other sensor", "-70", "-", uuid16])
    }

    /// How many times the mock's hci0 had `method` called (StartDiscovery, RegisterMonitor…).
    pub fn calls(&self, method: &str) -> usize {
        self.peer(&["calls", method]).parse().unwrap()
    }
}

impl Drop for Bluez {
    fn drop(&mut self) {
        self.stop_mock();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// One advert for the oracle to build: object bytes, encrypted with a counter (and optionally
/// another key), or plain.
pub struct Want {
    pub objects: &'static str,
    pub counter: Option<u32>,
    pub key: Option<&'static str>,
}

pub fn plain(objects: &'static str) -> Want {
    Want {
        objects,
        counter: None,
        key: None,
    }
}

pub fn enc(objects: &'static str, counter: u32) -> Want {
    Want {
        objects,
        counter: Some(counter),
        key: None,
    }
}

/// What bthome-ble made and decoded.
pub struct Oracle {
    pub service_data: String,
    pub values: serde_json::Map<String, serde_json::Value>,
    pub verified: bool,
}

/// Asks bthome-ble to encode `adverts` for `mac` and decode each with the test's key.
pub fn oracle(mac: &str, adverts: &[Want]) -> Vec<Oracle> {
    let req = serde_json::json!({
        "mac": mac,
        "key": KEY,
        "adverts": adverts.iter().map(|a| {
            let mut j = serde_json::json!({"objects": a.objects});
            if let Some(c) = a.counter {
                j["encrypt"] = true.into();
                j["counter"] = c.into();
            }
            if let Some(k) = a.key {
                j["key"] = k.into();
            }
            j
        }).collect::<Vec<_>>(),
    });
    let mut child = Command::new(venv_python())
        .arg(peers().join("bthome_oracle.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "bthome_oracle.py failed");
    let v = json(&String::from_utf8_lossy(&o.stdout));
    v["adverts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Oracle {
            service_data: a["service_data"].as_str().unwrap().to_owned(),
            values: a["values"].as_object().unwrap().clone(),
            verified: a["verified"].as_bool().unwrap(),
        })
        .collect()
}

pub fn ble_link(r: &serde_json::Value, state: &str) -> bool {
    r["action"] == "link-health"
        && r["detail"]["state"] == state
        && r["detail"]["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("ble:"))
}
