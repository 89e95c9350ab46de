//! `warden hardware list` against a fixture sysfs tree and a by-id directory whose links lead to ptys
//! of real simulators: a Z-Stack coordinator (znp_sim.py on zigpy-znp), an EmberZNet NCP (ezsp_sim.py
//! on bellows) and a Z-Wave controller (zwave-js's mock controller, bridged to a pty with socat). All
//! three enumerate as the same CP2102N bridge, so only the probe can tell them apart. Also: a dangling
//! by-id link, a device the user may not open (the message names the group), a port in use (not probed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod zigbee_support;

use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use warden_e2e::*;
use warden_hardware::discover::fixture::{FakePort, add};
use zigbee_support::{Sim, T};

const CP2102N: &str = "CP2102N USB to UART Bridge Controller";

/// zwave-js's mock controller, its Serial API bridged onto a pty at `link` by socat.
struct ZwaveOnPty {
    mock: Child,
    socat: Child,
}

impl ZwaveOnPty {
    fn start(dir: &Path, link: &Path) -> Self {
        let peers = peer_dir("zwave");
        assert!(
            peers.join("node_modules/zwave-js").exists(),
            "zwave-js missing: run tests/scripts/install-zwave.sh"
        );
        let (port, control) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("zwave-mock.log")).unwrap();
        let mock = Command::new("node")
            .arg(peers.join("zwave_mock.cjs"))
            .args([
                "--port",
                &port.to_string(),
                "--control-port",
                &control.to_string(),
            ])
            .current_dir(&peers)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("node");
        wait_for(T, "the mock controller's control port", || {
            TcpStream::connect(("127.0.0.1", control)).ok().map(|_| ())
        });
        let socat = Command::new("socat")
            .arg(format!("pty,link={},raw,echo=0", link.display()))
            .arg(format!("tcp:127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("socat (tests/scripts/install-zigbee.sh installs it)");
        wait_for(T, "socat's pty", || link.exists().then_some(()));
        Self { mock, socat }
    }
}

impl Drop for ZwaveOnPty {
    fn drop(&mut self) {
        for c in [&mut self.socat, &mut self.mock] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(root: &Path) -> Self {
        for d in ["sys", "by-id", "dev"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Self {
            root: root.to_owned(),
        }
    }

    /// A CP2102N stick on `tty` whose device node leads to `target` (a simulator's pty).
    fn stick(&self, tty: &str, bus: &str, serial: &str, product: &str, target: &Path) -> PathBuf {
        add(
            &self.root.join("sys"),
            &FakePort {
                tty,
                bus_path: bus,
                vid: "10c4",
                pid: "ea60",
                manufacturer: Some("Silicon Labs"),
                product: Some(product),
                serial: Some(serial),
                interface_number: 0,
                interface: None,
            },
        )
        .unwrap();
        symlink(target, self.root.join("dev").join(tty)).unwrap();
        let link = self.root.join("by-id").join(format!(
            "usb-Silicon_Labs_{}_{serial}-if00-port0",
            product.replace(' ', "_")
        ));
        symlink(format!("../dev/{tty}"), &link).unwrap();
        link
    }

    fn args(&self) -> Vec<String> {
        [
            "hardware",
            "list",
            "--json",
            "--probe-timeout-ms",
            "2000",
            "--sysfs",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.root.join("sys").display().to_string()])
        .chain([
            "--by-id".into(),
            self.root.join("by-id").display().to_string(),
        ])
        .chain(["--dev".into(), self.root.join("dev").display().to_string()])
        .collect()
    }

    fn list(&self) -> serde_json::Value {
        let o = Command::new(warden_bin())
            .args(self.args())
            .output()
            .unwrap();
        report(&o)
    }
}

fn report(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    json(&stdout(o))
}

fn port<'a>(r: &'a serde_json::Value, by_id: &Path) -> &'a serde_json::Value {
    r["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["by_id"] == by_id.display().to_string())
        .unwrap_or_else(|| panic!("{} not listed in {r:#}", by_id.display()))
}

#[test]
fn ambiguous_sticks_are_told_apart_by_probing_real_simulators() {
    let dir = tempfile::tempdir().unwrap();
    let znp = Sim::start("znp", dir.path(), &[]);
    let ezsp = Sim::start("ezsp", dir.path(), &[]);
    let zw_link = dir.path().join("ttyZW");
    let _zw = ZwaveOnPty::start(dir.path(), &zw_link);

    let fx = Fixture::new(&dir.path().join("fx"));
    let znp_id = fx.stick("ttyUSB0", "1-1", "0001", CP2102N, &znp.link);
    let ezsp_id = fx.stick("ttyUSB1", "1-2", "0002", CP2102N, &ezsp.link);
    let zw_id = fx.stick("ttyUSB2", "1-3", "0003", CP2102N, &zw_link);
    symlink(
        "../../ttyUSB9",
        fx.root.join("by-id/usb-Gone_Stick_0009-if00-port0"),
    )
    .unwrap();

    let r = fx.list();
    let p = port(&r, &znp_id);
    assert_eq!(p["identification"]["kind"], "ambiguous", "{p:#}");
    assert_eq!(p["probe"]["stack"], "znp", "{p:#}");
    assert_eq!(
        p["config"],
        format!(
            "[adapters.zigbee]\nport = \"{}\"\nstack = \"znp\"\nbaud = 115200\n",
            znp_id.display()
        )
    );
    let p = port(&r, &ezsp_id);
    assert_eq!(p["probe"]["stack"], "ezsp", "{p:#}");
    assert_eq!(p["probe"]["ash_version"], 2, "{p:#}");
    assert!(
        p["config"].as_str().unwrap().contains(&format!(
            "port = \"{}\"\nstack = \"ezsp\"",
            ezsp_id.display()
        )),
        "{p:#}"
    );
    let p = port(&r, &zw_id);
    assert_eq!(p["probe"]["stack"], "zwave-serial-api", "{p:#}");
    assert!(
        p["probe"]["version"]
            .as_str()
            .unwrap()
            .starts_with("Z-Wave "),
        "{p:#}"
    );
    assert!(
        p["config"]
            .as_str()
            .unwrap()
            .starts_with(&format!("[adapters.zwave]\nport = \"{}\"", zw_id.display())),
        "{p:#}"
    );
    assert_eq!(
        r["problems"],
        serde_json::json!([{
            "kind": "dangling-link",
            "link": fx.root.join("by-id/usb-Gone_Stick_0009-if00-port0").display().to_string(),
            "target": "../../ttyUSB9"
        }])
    );
    // The ZNP simulator was asked for a ping and nothing else: the probe changed nothing on it.
    let log = znp.log_text();
    let asked: Vec<&str> = log.lines().filter(|l| l.contains("<-  ")).collect();
    assert!(!asked.is_empty(), "{log}");
    assert!(asked.iter().all(|l| l.contains("SYS.Ping.Req")), "{log}");

    // The text form names the stick, how it was told, and the section to paste.
    let text = Command::new(warden_bin())
        .args(fx.args().into_iter().filter(|a| a != "--json"))
        .output()
        .unwrap();
    let text = stdout(&text);
    assert!(
        text.contains(&format!("{}  10c4:ea60", znp_id.display())),
        "{text}"
    );
    assert!(text.contains("(znp), by probe"), "{text}");
    assert!(
        text.contains("problem: ") && text.contains("does not exist"),
        "{text}"
    );

    // A port another process holds open is not probed; once released it is (positive control).
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&znp.link)
        .unwrap();
    let r = fx.list();
    let p = port(&r, &znp_id);
    assert_eq!(p["probe"], serde_json::Value::Null, "{p:#}");
    let e = p["probe_error"].as_str().unwrap();
    assert!(
        e.contains(&format!("in use by process [{}]", std::process::id())),
        "{e}"
    );
    drop(held);
    assert_eq!(port(&fx.list(), &znp_id)["probe"]["stack"], "znp");
}

#[test]
fn a_device_the_user_may_not_open_names_the_group_to_join() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let znp = Sim::start("znp", dir.path(), &[]);
    let fx = Fixture::new(&dir.path().join("fx"));
    let id = fx.stick("ttyUSB0", "1-1", "0001", CP2102N, &znp.link);
    // The pty as a real serial stick is on Debian: root:dialout, 0660.
    let pts = std::fs::canonicalize(&znp.link).unwrap();
    let st = Command::new("chgrp")
        .arg("dialout")
        .arg(&pts)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&pts, std::fs::Permissions::from_mode(0o660)).unwrap();

    let as_nobody = |groups: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup"]);
        if groups.is_empty() {
            c.arg("--clear-groups");
        } else {
            c.arg(format!("--groups={}", groups.join(",")));
        }
        c.arg(warden_bin()).args(fx.args());
        report(&c.output().unwrap())
    };
    let runs = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(warden_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        runs.status.success(),
        "nobody cannot run {} (this test needs the checkout readable and executable by others): {}",
        warden_bin().display(),
        stderr(&runs)
    );
    let r = as_nobody(&[]);
    let e = port(&r, &id)["probe_error"].as_str().unwrap().to_owned();
    assert!(e.contains("permission denied"), "{e}");
    assert!(e.contains("`dialout` group"), "{e}");
    assert!(e.contains("usermod -aG dialout"), "{e}");
    // Joining the group named is what it takes.
    let r = as_nobody(&["dialout"]);
    assert_eq!(port(&r, &id)["probe"]["stack"], "znp", "{r:#}");
}

#[test]
fn a_stick_answering_garbage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyNOISE");
    // A pty whose other end answers every question with the same noise.
    let script = dir.path().join("noise.sh");
    std::fs::write(
        &script,
        "while IFS= read -r -n 1 -d '' _; do printf '\\x55\\xaa\\x7e\\xfe\\x01'; done\n",
    )
    .unwrap();
    let mut noise = Command::new("socat")
        .arg(format!("pty,link={},raw,echo=0", link.display()))
        .arg(format!("exec:bash {}", script.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("socat");
    wait_for(T, "the noise pty", || link.exists().then_some(()));
    let fx = Fixture::new(&dir.path().join("fx"));
    let id = fx.stick("ttyUSB0", "1-1", "0001", CP2102N, &link);
    let r = fx.list();
    let e = port(&r, &id)["probe_error"].as_str().unwrap().to_owned();
    let _ = noise.kill();
    let _ = noise.wait();
    assert!(
        e.starts_with("the stick answered, but nothing it sent is a ZNP SYS_PING, Z-Wave GET_VERSION, ASH RST answer"),
        "{e}"
    );
    assert!(e.contains("55 aa 7e fe 01"), "{e}");
}
