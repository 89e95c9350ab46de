//! BACnet Secure Connect end to end against bac-py 1.5.7 (tests/peers/bacnet-sc/peer.py): a
//! bac-py hub, a bac-py device node behind it and an independent bac-py client, all with
//! certificates this test makes (rcgen, checked with `openssl verify -x509_strict` as bac-py's
//! OpenSSL will). Warden reaches the hub through its failover URI (the primary is down),
//! discovers and interviews the node, publishes its values at assurance `certificate` (COV and
//! polling), and writes a priority the client reads back; a BACnet/IP device approved under the
//! same `certificate` profile gets no write. Then the refusals: a hub whose certificate comes from
//! another CA is refused by Warden, a Warden certificate from another CA is refused by the hub,
//! and malformed BVLC-SC from a hand-written hub is refused with typed causes while Warden keeps
//! answering heartbeats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use warden_bacnet::testing::Responder;
use warden_e2e::*;
use zigbee_support::{T, audit_where, latest, values, wait_audit};

/// The bac-py device node behind the hub.
const SC_DEV: &str = "bacnet:0-2101";
const SC_DEV_VMAC: &str = "02:00:00:00:00:21";
/// A BACnet/IP device (the adapter's own responder) approved under the same `certificate` profile.
const IP_DEV: &str = "bacnet:0-3101";
const IP_DEV_ADDR: &str = "127.0.0.81:47808";
const HUB_CN: &str = "warden-sc-test-hub";

fn peers() -> PathBuf {
    peer_dir("bacnet-sc")
}

fn python() -> PathBuf {
    peer_python("bacnet-sc", ".venv", "bacnet-sc")
}

/// The test PKI: a CA with a hub, a device node, a client and Warden; another CA with a hub and
/// a Warden certificate. Shaped for bac-py's strict OpenSSL checks (critical CA basic
/// constraints, key usage, key identifiers, the hub's IP in its SAN).
fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let write = |name: &str, pem: String, key: &KeyPair| {
        std::fs::write(dir.join(format!("{name}.crt")), pem).unwrap();
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&k, key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let ca = |name: &str, cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::OrganizationName, "warden-e2e");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        write(name, c.pem(), &k);
        (p, k)
    };
    let leaf = |name: &str, cn: &str, sans: Vec<String>, issuer: &rcgen::Issuer<'_, &KeyPair>| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name
            .push(DnType::OrganizationName, "warden-e2e");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        let k = KeyPair::generate().unwrap();
        write(name, p.signed_by(&k, issuer).unwrap().pem(), &k);
    };
    let ip = || vec!["127.0.0.1".to_owned()];
    let (ca_p, ca_k) = ca("ca", "Warden SC Test CA");
    let issuer = rcgen::Issuer::new(ca_p, &ca_k);
    leaf("hub", HUB_CN, ip(), &issuer);
    leaf("device", "warden-sc-test-device", vec![], &issuer);
    leaf("client", "warden-sc-test-client", vec![], &issuer);
    leaf("warden", "warden-gateway", vec![], &issuer);
    let (rogue_p, rogue_k) = ca("rogue-ca", "Rogue SC CA");
    let rogue = rcgen::Issuer::new(rogue_p, &rogue_k);
    leaf("rogue-hub", "rogue-hub", ip(), &rogue);
    leaf("rogue-warden", "warden-gateway", vec![], &rogue);
    for (c, ca) in [
        ("hub", "ca"),
        ("device", "ca"),
        ("warden", "ca"),
        ("rogue-hub", "rogue-ca"),
    ] {
        let o = Command::new("openssl")
            .args(["verify", "-x509_strict", "-CAfile"])
            .arg(dir.join(format!("{ca}.crt")))
            .arg(dir.join(format!("{c}.crt")))
            .output()
            .expect("openssl (run tests/scripts/install-bacnet-sc.sh)");
        assert!(o.status.success(), "{c}: {}{}", stdout(&o), stderr(&o));
    }
}

/// One peer.py process, killed when dropped.
struct Peer {
    child: Child,
    log: PathBuf,
}

impl Peer {
    fn start(dir: &Path, name: &str, args: &[String]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(python())
            .arg(peers().join("peer.py"))
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("python");
        let p = Self { child, log };
        p.wait(&format!("{name} ready"), "READY");
        p
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&self, what: &str, needle: &str) {
        wait_for(T, what, || self.text().contains(needle).then_some(()));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_args(dir: &Path, cert: &str, ca: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        dir.join(format!("{cert}.crt")).display().to_string(),
        "--key".into(),
        dir.join(format!("{cert}.key")).display().to_string(),
        "--ca".into(),
        dir.join(format!("{ca}.crt")).display().to_string(),
    ]
}

fn hub(dir: &Path, name: &str, port: u16, cert: &str, ca: &str) -> Peer {
    let mut a = vec!["hub".to_owned(), "--port".into(), port.to_string()];
    a.extend(tls_args(dir, cert, ca));
    a.extend(["--vmac".into(), "02:00:00:00:00:01".into()]);
    Peer::start(dir, name, &a)
}

/// The independent client: one ReadProperty through the hub, with its own VMAC each time.
fn client_read(
    dir: &Path,
    hub_port: u16,
    n: u8,
    object: &str,
    property: &str,
) -> serde_json::Value {
    let mut a = vec![
        "client".to_owned(),
        "--hub".into(),
        format!("wss://127.0.0.1:{hub_port}"),
        "--vmac".into(),
        format!("02:00:00:00:00:{:02x}", 0x50 + n),
        "--uuid".into(),
        format!("00000000-0000-4000-8000-0000000050{n:02x}"),
        "--instance".into(),
        (5000 + u32::from(n)).to_string(),
        "--target".into(),
        SC_DEV_VMAC.into(),
        "--object".into(),
        object.into(),
        "--property".into(),
        property.into(),
    ];
    a.extend(tls_args(dir, "client", "ca"));
    let o = Command::new(python())
        .arg(peers().join("peer.py"))
        .args(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "client: {}", stderr(&o));
    json(stdout(&o).lines().last().unwrap_or_default())["value"].clone()
}

/// A BACnet/IP device on `addr` answered by the adapter's own responder, until dropped.
struct IpDevice {
    stop: Arc<AtomicBool>,
}

impl IpDevice {
    fn start(addr: &str, instance: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let st = stop.clone();
        std::thread::spawn(move || {
            let r = Responder {
                instance,
                objects: 1,
                routed: None,
            };
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(a) = r.answer(&buf[..n], |_| {}) {
                    let _ = s.send_to(&a, from);
                }
            }
        });
        Self { stop }
    }
}

impl Drop for IpDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(p: &Ports, dir: &Path, bind: &str, sc: &str) -> String {
    format!(
        r#"{base}
[profiles.bacsc]
points = ["zonetemp", "setpoint", "t1"]
commands = ["write_setpoint", "relinquish_setpoint", "write_t1"]
min_assurance = "certificate"

[adapters.bacnet]
bind = "{bind}"
broadcast = "127.0.0.255:47808"
listen_broadcast = false
devices = ["{IP_DEV_ADDR}"]
discover_on_start = false
poll_s = 2
apdu_timeout_ms = 1500
retries = 1
cov = "confirmed"

[adapters.bacnet.sc]
ca = "{ca}"
heartbeat_s = 5
reconnect_min_ms = 200
reconnect_max_ms = 1000
{sc}
"#,
        base = base_config(p),
        ca = dir.join("ca.crt").display(),
    )
}

fn sc_certs(dir: &Path, name: &str) -> String {
    format!(
        "cert = \"{}\"\nkey = \"{}\"\n",
        dir.join(format!("{name}.crt")).display(),
        dir.join(format!("{name}.key")).display()
    )
}

fn link(r: &serde_json::Value, state: &str) -> bool {
    r["action"] == "link-health"
        && r["detail"]["link"] == "bacnet:sc"
        && r["detail"]["state"] == state
}

fn text(r: &serde_json::Value) -> String {
    r.to_string()
}

fn cause(r: &serde_json::Value) -> &str {
    r["detail"]["cause"].as_str().unwrap_or_default()
}

fn command(g: &Gateway, id: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["command", id, name];
    a.extend_from_slice(args);
    let o = g.cli(&a);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}

fn approve(g: &Gateway, id: &str) {
    let o = g.cli(&[
        "devices",
        "approve",
        id,
        "--profile",
        "bacsc",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bacnet_sc_through_a_bac_py_hub_with_certificates() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    pki(dir);
    let hub_port = free_port();
    let first_hub = hub(dir, "hub", hub_port, "hub", "ca");
    let mut dev_args = vec![
        "device".to_owned(),
        "--hub".into(),
        format!("wss://127.0.0.1:{hub_port}"),
        "--instance".into(),
        "2101".into(),
        "--vmac".into(),
        SC_DEV_VMAC.into(),
        "--uuid".into(),
        "00000000-0000-4000-8000-000000002101".into(),
        "--tick".into(),
        "1".into(),
    ];
    dev_args.extend(tls_args(dir, "device", "ca"));
    let dev = Peer::start(dir, "device", &dev_args);
    let _ip = IpDevice::start(IP_DEV_ADDR, 3101);

    // Warden: the primary hub is a closed port, the failover is the bac-py hub
    let dead = free_port();
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    let sc = format!(
        "hub = \"wss://127.0.0.1:{dead}\"\nfailover_hub = \"wss://127.0.0.1:{hub_port}\"\nvmac = \"02:00:00:00:00:0a\"\n{}",
        sc_certs(dir, "warden")
    );
    std::fs::write(&cfg, config(&p, dir, "127.0.0.80:47808", &sc)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    let down = wait_audit(&dd, "the primary hub reported down", |r| link(r, "Down"));
    assert!(
        text(&down).contains(&format!("primary hub wss://127.0.0.1:{dead}: connect")),
        "{down}"
    );
    let up = wait_audit(&dd, "the SC link up through the failover hub", |r| {
        link(r, "Up")
    });
    let up_text = text(&up);
    assert!(up_text.contains("failover hub"), "{up}");
    assert!(up_text.contains(&format!("CN={HUB_CN}")), "{up}");
    assert!(up_text.contains("02:00:00:00:00:0a"), "{up}");
    eprintln!("SC connect: {up}");

    // the node answered the Who-Is sent through the hub; interviewed, it lands pending with
    // the hub certificate as its assurance evidence
    let reg = wait_audit(&dd, "the SC device registered", |r| {
        r["action"] == "device-registered" && r["device"] == SC_DEV
    });
    let reason = reg["reason"].as_str().unwrap_or_default().to_owned();
    for s in [
        "address: sc:02:00:00:00:00:21",
        "datalink: BACnet/SC",
        "assurance: certificate (BACnet/SC",
        HUB_CN,
        "zonetemp: analog-input,1 \"ZoneTemp\" °C",
        "setpoint: analog-value,1 \"Setpoint\" °C",
    ] {
        assert!(reason.contains(s), "{s} missing from {reg}");
    }
    let reg = wait_audit(&dd, "the BACnet/IP device registered", |r| {
        r["action"] == "device-registered" && r["device"] == IP_DEV
    });
    assert!(text(&reg).contains("assurance: none"), "{reg}");
    approve(&g, SC_DEV);
    approve(&g, IP_DEV);

    // values on MQTT at assurance `certificate`; ZoneTemp changes every second (COV)
    sub.wait_lines(T, "ZoneTemp notifications over SC", |_| {
        let mut v: Vec<String> = values(&sub, SC_DEV, "zonetemp")
            .iter()
            .map(|x| x.to_string())
            .collect();
        v.dedup();
        v.len() >= 3
    });
    assert_eq!(
        latest(&sub, SC_DEV, "zonetemp").unwrap()["assurance"],
        "certificate"
    );
    // the BACnet/IP device under the same profile: its `none` values are denied
    wait_audit(&dd, "the BACnet/IP device's values denied", |r| {
        r["action"] == "uplink" && r["device"] == IP_DEV && r["verdict"] == "deny"
    });
    assert!(latest(&sub, IP_DEV, "t1").is_none());

    // a write with a priority over SC, read back by the independent bac-py client
    let res = command(&g, SC_DEV, "write_setpoint", &["value=24.5", "priority=9"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    // the value read back after the write travels as telemetry too
    sub.wait_lines(T, "the written setpoint on MQTT", |_| {
        latest(&sub, SC_DEV, "setpoint").is_some_and(|e| e["value"] == 24.5)
    });
    let sp = latest(&sub, SC_DEV, "setpoint").unwrap();
    assert_eq!(sp["assurance"], "certificate", "{sp}");
    let pa = client_read(dir, hub_port, 1, "analog-value,1", "priority-array");
    let slots = pa.as_array().unwrap();
    assert_eq!(slots.len(), 16, "{pa}");
    for (i, s) in slots.iter().enumerate() {
        if i == 8 {
            assert_eq!(s, 24.5, "slot 9: {pa}");
        } else {
            assert!(s.is_null(), "slot {}: {pa}", i + 1);
        }
    }
    assert_eq!(
        client_read(dir, hub_port, 2, "analog-value,1", "present-value"),
        24.5
    );
    let res = command(&g, SC_DEV, "relinquish_setpoint", &["priority=9"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    let pa = client_read(dir, hub_port, 3, "analog-value,1", "priority-array");
    assert!(
        pa.as_array()
            .unwrap()
            .iter()
            .all(serde_json::Value::is_null),
        "{pa}"
    );
    assert_eq!(
        client_read(dir, hub_port, 4, "analog-value,1", "present-value"),
        21.0
    );

    // the same profile's command to the BACnet/IP device: refused by the adapter, nothing sent
    let res = command(&g, IP_DEV, "write_t1", &["value=1"]);
    assert_eq!(res["outcome"], "denied", "{res}");
    let why = res["detail"].as_str().unwrap_or_default();
    assert!(
        why.contains("reached over BACnet/IP (assurance none)") && why.contains("certificate"),
        "{res}"
    );

    // the hub goes away: the SC link and the device go Down; back on the same port, Warden
    // reconnects on its own, the device is Up again and its values flow
    drop(first_hub);
    wait_for(T, "the SC link down after the hub stopped", || {
        (audit_where(&dd, |r| link(r, "Down")).len() >= 2).then_some(())
    });
    wait_audit(&dd, "the SC device down", |r| {
        r["action"] == "link-health"
            && r["detail"]["link"] == SC_DEV
            && r["detail"]["state"] == "Down"
    });
    let _hub = hub(dir, "hub-again", hub_port, "hub", "ca");
    wait_for(T, "the SC link up again", || {
        (audit_where(&dd, |r| link(r, "Up")).len() >= 2).then_some(())
    });
    wait_audit(&dd, "the SC device up again", |r| {
        r["action"] == "link-health"
            && r["detail"]["link"] == SC_DEV
            && r["detail"]["state"] == "Up"
    });
    let seen = values(&sub, SC_DEV, "zonetemp").len();
    sub.wait_lines(T, "ZoneTemp flowing after the reconnection", |_| {
        values(&sub, SC_DEV, "zonetemp").len() >= seen + 2
    });
    drop(dev);
    g.stop();

    // --- a hub certificate from another CA, refused by Warden; then malformed BVLC-SC from a
    // hand-written hub (certificate from the right CA), refused with typed causes
    let rogue_port = free_port();
    let rogue = hub(dir, "rogue-hub", rogue_port, "rogue-hub", "rogue-ca");
    let raw_port = free_port();
    let mut raw_args = vec!["raw-hub".to_owned(), "--port".into(), raw_port.to_string()];
    raw_args.extend(tls_args(dir, "hub", "ca"));
    let raw = Peer::start(dir, "raw-hub", &raw_args);
    let p2 = Ports::new();
    let cfg2 = dir.join("w2.toml");
    let sc = format!(
        "hub = \"wss://127.0.0.1:{rogue_port}\"\nfailover_hub = \"wss://127.0.0.1:{raw_port}\"\n{}",
        sc_certs(dir, "warden")
    );
    std::fs::write(&cfg2, config(&p2, dir, "127.0.0.82:47808", &sc)).unwrap();
    let dd2 = dir.join("data2");
    let g2 = Gateway::start(&dd2, &cfg2, &p2, &[]);
    let r = wait_audit(&dd2, "the rogue hub's certificate refused", |r| {
        cause(r) == "bad-certificate"
    });
    eprintln!("refused by Warden: {}", r["reason"]);
    let rt = text(&r);
    assert!(
        rt.contains(&format!("primary hub wss://127.0.0.1:{rogue_port}"))
            && rt.contains("the hub's certificate was refused")
            && rt.contains("UnknownIssuer"),
        "{r}"
    );
    let up = wait_audit(&dd2, "connected to the raw hub", |r| link(r, "Up"));
    assert!(
        text(&up).contains(&format!("failover hub wss://127.0.0.1:{raw_port}")),
        "{up}"
    );
    // the positive control: after the hostile messages a Heartbeat-Request is still answered
    raw.wait("Warden's Heartbeat-ACK", "GOT 0b000030");
    // an undefined function got a BVLC-Result NAK (bvlc-function-unknown), as did the option
    // that must be understood (header-not-understood)
    let rt = raw.text();
    assert!(rt.contains("GOT 000000210d01000007000c"), "{rt}");
    assert!(rt.contains("GOT 000000240a01450007000b"), "{rt}");
    for (c, needle) in [
        ("malformed", "BVLC-SC function 0x0d is not defined"),
        ("malformed", "BVLC-SC control flags 0x80 set reserved bits"),
        ("bad-length", "truncated"),
        (
            "header-not-understood",
            "header option 0x45 must be understood",
        ),
        ("malformed", "an originating VMAC on an NPDU from the hub"),
        ("malformed", "NPDU version 0x07"),
        ("malformed", "a text message"),
    ] {
        wait_for(T, &format!("{c}: {needle}"), || {
            audit_where(&dd2, |r| cause(r) == c && text(r).contains(needle))
                .into_iter()
                .next()
        });
    }
    assert!(!g2.log_text().contains("panicked"), "{}", g2.log_text());
    assert!(http_get(p2.api, "/healthz").is_some_and(|b| b == "ok"));
    g2.stop();
    drop(rogue);

    // --- a Warden certificate from another CA, refused by the bac-py hub
    let hub2_port = free_port();
    let hub2 = hub(dir, "hub2", hub2_port, "hub", "ca");
    let p3 = Ports::new();
    let cfg3 = dir.join("w3.toml");
    let sc = format!(
        "hub = \"wss://127.0.0.1:{hub2_port}\"\n{}",
        sc_certs(dir, "rogue-warden")
    );
    std::fs::write(&cfg3, config(&p3, dir, "127.0.0.83:47808", &sc)).unwrap();
    let dd3 = dir.join("data3");
    let g3 = Gateway::start(&dd3, &cfg3, &p3, &[]);
    let r = wait_audit(&dd3, "Warden's certificate refused by the hub", |r| {
        cause(r) == "certificate-refused-by-hub"
    });
    assert!(
        text(&r).contains(&format!("primary hub wss://127.0.0.1:{hub2_port}")),
        "{r}"
    );
    eprintln!("refused by the hub: {}", r["reason"]);
    let down = wait_audit(&dd3, "the SC link reported down", |r| link(r, "Down"));
    assert!(text(&down).contains("Warden's certificate"), "{down}");
    hub2.wait(
        "the hub's log of the refused TLS connection",
        "refused TLS connection",
    );
    assert!(
        audit_where(&dd3, |r| link(r, "Up")).is_empty(),
        "never up with a certificate the hub refuses"
    );
    g3.stop();
}
