//! Helpers for the Modbus end-to-end tests: pymodbus peers, socat pty pairs, mbpoll read-backs and a
//! test PKI whose server certificate carries a Modbus/TCP Security role.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use warden_e2e::*;

pub fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/modbus/peer.py")
}

/// A child process killed (by its own pid) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Self {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn (run tests/scripts/install-modbus.sh)");
        Self {
            child,
            log: log.to_owned(),
        }
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// A pymodbus TCP (or TLS) server on a loopback port.
pub fn tcp_peer(dir: &Path, port: u16, extra: &[&str]) -> Proc {
    let mode = if extra.contains(&"--cert") {
        "tls"
    } else {
        "tcp"
    };
    let p = Proc::spawn(
        Command::new("python3")
            .arg(peer_script())
            .arg(mode)
            .args(["--port", &port.to_string()])
            .args(extra),
        &dir.join(format!("peer-{port}.log")),
    );
    wait_for(Duration::from_secs(20), "the pymodbus peer", || {
        port_open(port).then_some(())
    });
    p
}

/// A socat pty pair: `<dir>/<name>-srv` and `<dir>/<name>-cli`.
pub fn pty_pair(dir: &Path, name: &str) -> (Proc, PathBuf, PathBuf) {
    let (a, b) = (
        dir.join(format!("{name}-srv")),
        dir.join(format!("{name}-cli")),
    );
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    let p = Proc::spawn(
        Command::new("socat").args([
            "-d",
            &format!("pty,raw,echo=0,link={}", a.display()),
            &format!("pty,raw,echo=0,link={}", b.display()),
        ]),
        &dir.join(format!("socat-{name}.log")),
    );
    wait_for(Duration::from_secs(10), "the socat pty pair", || {
        (a.exists() && b.exists()).then_some(())
    });
    (p, a, b)
}

pub fn rtu_peer(dir: &Path, serial: &Path) -> Proc {
    let p = Proc::spawn(
        Command::new("python3")
            .arg(peer_script())
            .arg("rtu")
            .arg("--serial")
            .arg(serial),
        &dir.join("peer-rtu.log"),
    );
    let log = p.log.clone();
    wait_for(Duration::from_secs(20), "the RTU peer", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("peer ready")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    p
}

/// Holding registers via mbpoll (an independent client; `addr` is 0-based).
pub fn mbpoll_holding(port: u16, addr: u16, count: u16) -> Vec<i64> {
    mbpoll(port, "4", addr, count)
}

pub fn mbpoll_coils(port: u16, addr: u16, count: u16) -> Vec<i64> {
    mbpoll(port, "0", addr, count)
}

fn mbpoll(port: u16, table: &str, addr: u16, count: u16) -> Vec<i64> {
    let o = Command::new("timeout")
        .args([
            "10",
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            &port.to_string(),
            "-a",
            "1",
            "-t",
            table,
        ])
        .args([
            "-r",
            &(addr + 1).to_string(),
            "-c",
            &count.to_string(),
            "-1",
            "127.0.0.1",
        ])
        .output()
        .expect("mbpoll (run tests/scripts/install-modbus.sh)");
    let out = String::from_utf8_lossy(&o.stdout);
    let v: Vec<i64> = out
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
        .collect();
    assert_eq!(v.len(), usize::from(count), "mbpoll output: {out}");
    v
}

pub const ROLE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 50316, 802, 1];

/// CA, a server certificate for 127.0.0.1 carrying `role`, a trusted client and a rogue client.
pub fn modbus_pki(dir: &Path, role: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, c: &rcgen::Certificate, k: &KeyPair| {
        std::fs::write(dir.join(format!("{name}.crt")), c.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), k.serialize_pem()).unwrap();
    };
    let ca = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        (p, c, k)
    };
    let (cap, cac, cak) = ca("Modbus Test CA");
    write("ca", &cac, &cak);
    let issuer = Issuer::new(cap, &cak);
    let mut sp =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "plc-1");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut der = vec![0x0c, role.len() as u8];
    der.extend_from_slice(role.as_bytes());
    sp.custom_extensions = vec![CustomExtension::from_oid_content(ROLE_OID, der)];
    let sk = KeyPair::generate().unwrap();
    write("server", &sp.signed_by(&sk, &issuer).unwrap(), &sk);
    let client = |cn: &str, iss: &Issuer<'_, &KeyPair>| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let k = KeyPair::generate().unwrap();
        (p.signed_by(&k, iss).unwrap(), k)
    };
    let (c, k) = client("warden-gw", &issuer);
    write("client", &c, &k);
    let (rp, _rc, rk) = ca("Rogue CA");
    let rogue_issuer = Issuer::new(rp, &rk);
    let (c, k) = client("warden-gw", &rogue_issuer);
    write("rogue", &c, &k);
}

/// MQTT subscriber args for the embedded broker's operator.
pub fn mq_args(data_dir: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    warden_e2e::operator_args(data_dir, port, extra)
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

pub fn device_show(g: &Gateway, id: &str) -> serde_json::Value {
    let o = g.cli(&["devices", "show", id]);
    if !o.status.success() {
        return serde_json::Value::Null;
    }
    json(&stdout(&o))
}

/// Runs `warden command` and returns the printed result JSON (whatever the outcome).
pub fn command(g: &Gateway, id: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["command", id, name];
    a.extend_from_slice(args);
    let o = g.cli(&a);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}
