//! LoRaWAN end to end: a test packet forwarder (Semtech UDP on loopback, written here) carries frames
//! built by the third-party npm `lora-packet` (tests/peers/lorawan/device.cjs) to Warden's LoRaWAN
//! adapter; lora-packet then checks what Warden answers (JoinAccept MIC, downlink MIC, ACK, payload),
//! tshark's LoRaWAN dissector checks a downlink MIC with the session keys, and MQTT + the audit log
//! show what was delivered and what was refused, with which cause.
//!
//! Needs `tests/scripts/install-lorawan.sh` (node + lora-packet 0.9.3, tshark).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use warden_e2e::*;

fn b64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn b64_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

const DEV: &str = "0004a30b001c0530";
const ABP: &str = "0004a30b001c0531";
const ABP_ADDR: &str = "01abcdef";
const ABP_NWK: &str = "000102030405060708090a0b0c0d0e0f";
const ABP_APP: &str = "f0e0d0c0b0a090807060504030201000";
const GW_A: u64 = 0xaa55_5a00_0000_0001;
const GW_B: u64 = 0xaa55_5a00_0000_0002;
const GW_ROGUE: u64 = 0xaa55_5a00_0000_0099;

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/lorawan")
}

/// Runs lora-packet (device.cjs) and returns its JSON answer.
fn device(args: &[&str]) -> serde_json::Value {
    let o = Command::new("node")
        .arg(peers().join("device.cjs"))
        .args(args)
        .output()
        .expect("node (run tests/scripts/install-lorawan.sh)");
    assert!(o.status.success(), "device.cjs {args:?}: {}", stderr(&o));
    json(stdout(&o).trim())
}

fn phy(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v["phy"].as_str().unwrap()).unwrap()
}

/// A minimal Semtech UDP (GWMP v2) packet forwarder for tests.
struct Forwarder {
    sock: UdpSocket,
    eui: u64,
    tmst: u32,
    token: u16,
}

struct TxPk {
    token: u16,
    txpk: serde_json::Value,
    phy: Vec<u8>,
}

impl Forwarder {
    fn new(eui: u64, ns: u16) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(("127.0.0.1", ns)).unwrap();
        Self {
            sock,
            eui,
            tmst: 1_000_000,
            token: 0,
        }
    }

    fn header(&mut self, id: u8) -> Vec<u8> {
        self.token = self.token.wrapping_add(1);
        let mut v = vec![2, (self.token >> 8) as u8, self.token as u8, id];
        v.extend_from_slice(&self.eui.to_be_bytes());
        v
    }

    /// Receives datagrams until `pred` matches one or `timeout` passes.
    fn recv_until(&self, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok(n) = self.sock.recv(&mut buf)
                && pred(&buf[..n])
            {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    fn pull(&mut self) {
        let h = self.header(0x02);
        let tok = self.token;
        self.sock.send(&h).unwrap();
        self.recv_until(Duration::from_secs(5), |d| {
            d.len() == 4 && d[3] == 0x04 && u16::from_be_bytes([d[1], d[2]]) == tok
        })
        .expect("PULL_ACK");
    }

    /// PUSH_DATA with one rxpk; returns whether a PUSH_ACK came back, and the rxpk tmst.
    fn push_rx(&mut self, phy: &[u8], rssi: i32, snr: f64) -> (bool, u32) {
        self.tmst = self.tmst.wrapping_add(1_000_000);
        let body = serde_json::json!({"rxpk": [{
            "tmst": self.tmst, "chan": 0, "rfch": 0, "freq": 868.1, "stat": 1, "modu": "LORA",
            "datr": "SF7BW125", "codr": "4/5", "rssi": rssi, "lsnr": snr, "size": phy.len(),
            "data": b64_encode(phy)
        }]});
        (self.push_raw_body(body.to_string().as_bytes()), self.tmst)
    }

    fn push(&mut self, phy: &[u8]) -> u32 {
        let (acked, t) = self.push_rx(phy, -60, 7.0);
        assert!(acked, "PUSH_ACK");
        t
    }

    fn push_raw_body(&mut self, body: &[u8]) -> bool {
        let mut d = self.header(0x00);
        d.extend_from_slice(body);
        let tok = self.token;
        self.sock.send(&d).unwrap();
        self.recv_until(Duration::from_secs(2), |d| {
            d.len() == 4 && d[3] == 0x01 && u16::from_be_bytes([d[1], d[2]]) == tok
        })
        .is_some()
    }

    fn pull_resp(&self, timeout: Duration) -> Option<TxPk> {
        let d = self.recv_until(timeout, |d| d.len() > 4 && d[3] == 0x03)?;
        let v: serde_json::Value = serde_json::from_slice(&d[4..]).unwrap();
        let txpk = v["txpk"].clone();
        let phy = b64_decode(txpk["data"].as_str().unwrap());
        Some(TxPk {
            token: u16::from_be_bytes([d[1], d[2]]),
            txpk,
            phy,
        })
    }

    fn tx_ack(&self, token: u16, error: &str) {
        let mut d = vec![2, (token >> 8) as u8, token as u8, 0x05];
        d.extend_from_slice(&self.eui.to_be_bytes());
        d.extend_from_slice(format!(r#"{{"txpk_ack":{{"error":"{error}"}}}}"#).as_bytes());
        self.sock.send(&d).unwrap();
    }
}

struct Keys {
    addr: String,
    nwk: String,
    app: String,
}

impl Keys {
    fn up(&self, fcnt: u32, confirmed: bool, fport: &str, payload: &str, fopts: &str) -> Vec<u8> {
        let c = if confirmed { "1" } else { "0" };
        let f = fcnt.to_string();
        let mut a = vec![
            "up", &self.addr, &self.nwk, &self.app, &f, c, fport, payload,
        ];
        if !fopts.is_empty() {
            a.push(fopts);
        }
        phy(&device(&a))
    }
    fn down(&self, phy: &[u8], fcnt: u32) -> serde_json::Value {
        device(&[
            "down",
            &hex::encode(phy),
            &self.nwk,
            &self.app,
            &fcnt.to_string(),
        ])
    }
}

fn lpp_temp(t: f64) -> String {
    let v = (t * 10.0).round() as i16;
    format!("0167{}", hex::encode(v.to_be_bytes()))
}

fn audit(g: &Gateway) -> Vec<serde_json::Value> {
    stdout(&g.cli(&["audit", "export"]))
        .lines()
        .map(json)
        .collect()
}

/// The `cause` in an audit record's detail (exported as a JSON string).
fn cause_of(r: &serde_json::Value) -> String {
    let d = match &r["detail"] {
        serde_json::Value::String(t) => serde_json::from_str(t).unwrap_or_default(),
        v => v.clone(),
    };
    d["cause"].as_str().unwrap_or_default().to_owned()
}

fn rejections(g: &Gateway, cause: &str) -> Vec<serde_json::Value> {
    audit(g)
        .into_iter()
        .filter(|r| r["verdict"] == "deny" && cause_of(r) == cause)
        .collect()
}

/// The command result with this id and outcome, once it is on MQTT.
fn wait_result(sub: &Subscriber, id: &str, outcome: &str) -> serde_json::Value {
    let find = |l: &[(String, String)]| {
        l.iter()
            .filter(|(x, _)| x.ends_with("/cmd/result"))
            .map(|(_, p)| json(p))
            .find(|r| r["command_id"] == id && r["outcome"] == outcome)
    };
    let l = sub.wait_lines(Duration::from_secs(10), &format!("{id} {outcome}"), |l| {
        find(l).is_some()
    });
    find(&l).unwrap()
}

fn wait_rejection(g: &Gateway, cause: &str, n: usize) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rejections(g, cause);
        if r.len() >= n {
            return r;
        }
        if Instant::now() > end {
            let denies: Vec<String> = audit(g)
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {} {} {}",
                        r["seq"],
                        r["action"],
                        r["verdict"],
                        r["device"],
                        cause_of(r),
                        r["reason"]
                    )
                })
                .collect();
            panic!(
                "no {n} `{cause}` rejection(s); denials so far:\n{}",
                denies.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// tshark's LoRaWAN dissector with the session keys: the MIC status of one frame (1 = good).
fn tshark_mic(frame: &[u8], keys: &Keys, dir: &Path) -> Option<String> {
    if Command::new("tshark").arg("--version").output().is_err() {
        return None;
    }
    let txt = dir.join("frame.txt");
    let spaced: Vec<String> = frame.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&txt, format!("000000 {}\n", spaced.join(" "))).unwrap();
    let pcap = dir.join("frame.pcap");
    let o = Command::new("text2pcap")
        .args(["-q", "-l", "147"])
        .arg(&txt)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(o.status.success(), "text2pcap: {}", stderr(&o));
    let a = hex::decode(&keys.addr).unwrap();
    let addr_le: String = a.iter().rev().map(|b| format!("{b:02X}")).collect();
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-o",
            r#"uat:user_dlts:"User 0 (DLT=147)","lorawan","0","","0","""#,
            "-o",
            &format!(
                r#"uat:encryption_keys_lorawan:"{addr_le}","{}","{}","70B3D57ED0000001""#,
                keys.nwk.to_uppercase(),
                keys.app.to_uppercase()
            ),
            "-T",
            "fields",
            "-e",
            "lorawan.mic.status",
            "-e",
            "lorawan.frmpayload_decrypted",
        ])
        .output()
        .unwrap();
    Some(stdout(&o).trim().to_owned())
}

/// GET /metrics with the API token.
fn metrics(port: u16, data_dir: &Path) -> String {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(data_dir.join("api.token")).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    b
}

fn config(p: &Ports, udp: u16) -> String {
    format!(
        r#"{base}
[profiles.lora-env]
points = ["temperature_1", "humidity_2"]
commands = ["set_interval", "send"]
min_assurance = "shared-key"
require_fresh = true

[adapters.lorawan]
bind = "127.0.0.1:{udp}"
forwarders = ["{GW_A:016x}", "{GW_B:016x}"]
region = "EU868"
dedup_ms = 80
tx_ack_timeout_ms = 2000

[adapters.lorawan.models.env]
decoder = "cayenne-lpp"
commands = {{ set_interval = {{ fport = 10, encoding = "u16be" }} }}

[adapters.lorawan.devices."{DEV}"]
model = "env"

[adapters.lorawan.devices."{ABP}"]
activation = "abp"
"#,
        base = base_config(p)
    )
}

#[test]
fn lorawan_join_uplinks_downlinks_and_forgeries() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let udp = free_port();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, config(&p, udp)).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let devs = t.path().join("devices.toml");
    std::fs::write(
        &devs,
        format!(
            r#"[[devices]]
id = "lorawan:{DEV}"
profile = "lora-env"
credentials = {{ app_key = "hex:2b7e151628aed2a6abf7158809cf4f3c" }}

[[devices]]
id = "lorawan:{ABP}"
profile = "lora-env"
credentials = {{ dev_addr = "hex:{ABP_ADDR}", nwk_s_key = "hex:{ABP_NWK}", app_s_key = "hex:{ABP_APP}" }}
"#
        ),
    )
    .unwrap();
    let o = g.cli(&["devices", "import", devs.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let mq = |extra: &[&str]| operator_args(&dd, p.mqtt, extra);
    let sub = Subscriber::spawn(&mq(&["-t", "warden/#"]), &t.path().join("sub.txt"));
    std::thread::sleep(Duration::from_millis(400));
    let topic = |dev: &str, point: &str| format!("warden/devices/lorawan:{dev}/telemetry/{point}");
    let count = |tp: &str| sub.lines().iter().filter(|(x, _)| x == tp).count();

    let mut a = Forwarder::new(GW_A, udp);
    a.pull();
    let mut b = Forwarder::new(GW_B, udp);
    b.pull();

    // ---- OTAA join: lora-packet's JoinRequest, Warden's JoinAccept checked by lora-packet
    let jr = phy(&device(&["join", "1234"]));
    let rx_tmst = a.push(&jr);
    let ja = a.pull_resp(Duration::from_secs(5)).expect("JoinAccept");
    a.tx_ack(ja.token, "NONE");
    assert_eq!(
        ja.txpk["tmst"].as_u64().unwrap(),
        u64::from(rx_tmst) + 5_000_000,
        "JoinAccept in RX1 (JOIN_ACCEPT_DELAY1 = 5 s): {}",
        ja.txpk
    );
    assert_eq!(ja.txpk["freq"], 868.1);
    assert_eq!(ja.txpk["datr"], "SF7BW125");
    assert_eq!(ja.txpk["ipol"], true);
    let acc = device(&["accept", &hex::encode(&ja.phy), "1234"]);
    assert_eq!(
        acc["mic_ok"], true,
        "lora-packet rejects the JoinAccept MIC: {acc}"
    );
    assert_eq!(acc["mtype"], "Join Accept");
    let k = Keys {
        addr: acc["dev_addr"].as_str().unwrap().to_owned(),
        nwk: acc["nwk_s_key"].as_str().unwrap().to_owned(),
        app: acc["app_s_key"].as_str().unwrap().to_owned(),
    };

    // ---- unconfirmed uplink with lora-packet's keys: decrypts, decodes, reaches MQTT
    a.push(&k.up(0, false, "1", &lpp_temp(22.5), ""));
    let l = sub.wait_lines(Duration::from_secs(10), "temperature 22.5", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("22.5"))
    });
    let (_, env) = l
        .iter()
        .find(|(x, _)| x == &topic(DEV, "temperature_1"))
        .unwrap();
    assert!(
        env.contains("shared-key"),
        "assurance in the envelope: {env}"
    );

    // ---- confirmed uplink heard by two forwarders (B stronger) + LinkCheckReq in FOpts:
    // handled once, ACKed with LinkCheckAns through the best forwarder
    let up1 = k.up(1, true, "1", &lpp_temp(23.1), "02");
    let (ok_b, tmst_b) = b.push_rx(&up1, -40, 9.5);
    let (ok_a, _) = a.push_rx(&up1, -90, 1.0);
    assert!(ok_a && ok_b);
    let dn = b
        .pull_resp(Duration::from_secs(5))
        .expect("ACK downlink via B");
    b.tx_ack(dn.token, "NONE");
    assert_eq!(
        dn.txpk["tmst"].as_u64().unwrap(),
        u64::from(tmst_b) + 1_000_000,
        "RX1 = 1 s after the uplink"
    );
    let d = k.down(&dn.phy, 0);
    assert_eq!(d["mic_ok"], true, "{d}");
    assert_eq!(d["ack"], true, "{d}");
    assert_eq!(d["mtype"], "Unconfirmed Data Down");
    assert!(
        d["fopts"].as_str().unwrap().starts_with("02"),
        "LinkCheckAns: {d}"
    );
    assert_eq!(
        &d["fopts"].as_str().unwrap()[4..6],
        "02",
        "two gateways heard it: {d}"
    );
    assert!(
        a.pull_resp(Duration::from_millis(300)).is_none(),
        "one downlink only"
    );
    sub.wait_lines(Duration::from_secs(10), "temperature 23.1", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("23.1"))
    });

    // ---- a decided command goes out after the next uplink; TX_ACK → delivered
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(mq(&[
            "-t",
            &format!("warden/devices/lorawan:{DEV}/cmd"),
            "-m",
            r#"{"id":"lw-1","command":"set_interval","args":{"value":300}}"#,
        ]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // class A: the adapter holds it for the next uplink and says so at once (not `timeout` after
    // the gateway's default wait, then `delivered`)
    let queued = wait_result(&sub, "lw-1", "queued");
    assert!(
        queued["detail"].as_str().unwrap().contains("next uplink"),
        "{queued}"
    );
    let up2 = k.up(2, false, "1", &lpp_temp(23.2), "");
    a.push(&up2);
    let dn = a
        .pull_resp(Duration::from_secs(5))
        .expect("command downlink");
    a.tx_ack(dn.token, "NONE");
    let d = k.down(&dn.phy, 1);
    assert_eq!(d["mic_ok"], true, "{d}");
    assert_eq!(d["fport"], 10);
    assert_eq!(d["payload"], "012c", "300 as u16be: {d}");
    assert_eq!(d["fcnt"], 1);
    // tshark, with the session keys, agrees the downlink MIC is good and decrypts the payload
    if let Some(ts) = tshark_mic(&dn.phy, &k, t.path()) {
        assert!(ts.starts_with('1'), "tshark MIC status (1 = good): {ts:?}");
        assert!(ts.contains("012c"), "tshark decrypted payload: {ts:?}");
    } else {
        panic!("tshark is not installed (run tests/scripts/install-lorawan.sh)");
    }
    let r = wait_result(&sub, "lw-1", "delivered");
    assert_eq!(r["command_id"], "lw-1");

    // a TX_ACK error becomes a device-error result
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(mq(&[
            "-t",
            &format!("warden/devices/lorawan:{DEV}/cmd"),
            "-m",
            r#"{"id":"lw-2","command":"set_interval","args":{"value":60}}"#,
        ]))
        .output()
        .unwrap();
    assert!(o.status.success());
    wait_result(&sub, "lw-2", "queued");
    let up3 = k.up(3, false, "1", &lpp_temp(23.3), "");
    a.push(&up3);
    let dn = a
        .pull_resp(Duration::from_secs(5))
        .expect("second command downlink");
    a.tx_ack(dn.token, "TOO_LATE");
    let r = wait_result(&sub, "lw-2", "device-error");
    assert_eq!(r["command_id"], "lw-2");
    assert_eq!(r["outcome"], "device-error", "{r}");
    assert!(r["detail"].as_str().unwrap().contains("TOO_LATE"), "{r}");
    sub.wait_lines(Duration::from_secs(10), "temperature 23.3", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("23.3"))
    });
    let delivered = count(&topic(DEV, "temperature_1"));
    assert_eq!(delivered, 4);

    // ---- forgeries: all refused, audited with their cause, nothing published
    let mut bad = k.up(4, false, "1", &lpp_temp(99.0), "");
    let last = bad.len() - 1;
    bad[last] ^= 0x5a;
    a.push(&bad);
    wait_rejection(&g, "bad-mic", 1);
    a.push(&up3); // the same frame again
    wait_rejection(&g, "replay", 1);
    a.push(&up1); // an older counter
    wait_rejection(&g, "stale-fcnt", 1);
    a.push(&jr); // the same DevNonce
    let r = wait_rejection(&g, "devnonce-reuse", 1);
    assert_eq!(r[0]["device"], format!("lorawan:{DEV}"));
    assert_eq!(r[0]["decider"], "adapter:lorawan");
    assert!(
        a.pull_resp(Duration::from_millis(500)).is_none(),
        "no JoinAccept for a reused DevNonce"
    );
    let stranger = Keys {
        addr: "07777777".into(),
        nwk: k.nwk.clone(),
        app: k.app.clone(),
    };
    a.push(&stranger.up(0, false, "1", &lpp_temp(99.0), ""));
    wait_rejection(&g, "unknown-devaddr", 1);
    // a valid next frame through an unconfigured forwarder: refused, not acknowledged
    let up4 = k.up(4, false, "1", &lpp_temp(23.4), "");
    let mut rogue = Forwarder::new(GW_ROGUE, udp);
    let (acked, _) = rogue.push_rx(&up4, -50, 8.0);
    assert!(!acked, "an unknown forwarder gets no PUSH_ACK");
    let r = wait_rejection(&g, "unknown-forwarder", 1);
    // no device to go by: still attributed to the adapter that refused it
    assert_eq!(r[0]["decider"], "adapter:lorawan");
    // truncated and garbage datagrams, a garbage PHYPayload inside a valid PUSH_DATA
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for g in [
        &b"hello"[..],
        &[2, 0][..],
        &[2, 0, 1, 0, 0xaa, 0x55][..],
        &[0xff; 40][..],
    ] {
        s.send_to(g, ("127.0.0.1", udp)).unwrap();
    }
    // from no device: the first in full, the rest counted (and aggregated per minute in the log)
    let r = wait_rejection(&g, "malformed-datagram", 1);
    assert_eq!(r[0]["decider"], "adapter:lorawan");
    let malformed = |n: f64| {
        wait_for(
            Duration::from_secs(10),
            "malformed datagrams counted",
            || {
                let m = metrics(p.api, &dd);
                (metric_sum(
                    &m,
                    "warden_adapter_rejections_total",
                    &["cause=\"malformed-datagram\""],
                ) >= n)
                    .then_some(())
            },
        )
    };
    malformed(4.0);
    assert!(
        !a.push_raw_body(b"{not json"),
        "no PUSH_ACK for a body that is not JSON"
    );
    malformed(5.0);
    a.push(&[0x40, 1, 2, 3]);
    wait_rejection(&g, "malformed", 1);
    // the frame the rogue forwarder carried did not consume the counter: through A it is accepted
    a.push(&up4);
    sub.wait_lines(Duration::from_secs(10), "temperature 23.4", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("23.4"))
    });
    assert_eq!(
        count(&topic(DEV, "temperature_1")),
        5,
        "no forged frame was published"
    );
    for (tp, _) in sub.lines() {
        assert!(
            !tp.contains("/telemetry/") || tp.contains(DEV),
            "unexpected telemetry: {tp}"
        );
    }

    // ---- an unknown DevEUI asking to join: registered pending, audited, not answered
    let o = Command::new("node")
        .arg(peers().join("device.cjs"))
        .args(["join", "0001"])
        .env("DEV_EUI", "0004A30B001C9999")
        .output()
        .unwrap();
    let jr_unknown = phy(&json(stdout(&o).trim()));
    a.push(&jr_unknown);
    assert!(a.pull_resp(Duration::from_millis(800)).is_none());
    let dev = wait_for(Duration::from_secs(10), "pending registration", || {
        let o = g.cli(&["devices", "show", "lorawan:0004a30b001c9999"]);
        o.status.success().then(|| json(&stdout(&o)))
    });
    assert_eq!(dev["device"]["status"], "pending");

    // ---- ABP device from provisioning: 16-bit FCnt rollover 65535 → 65536
    let abp = Keys {
        addr: ABP_ADDR.into(),
        nwk: ABP_NWK.into(),
        app: ABP_APP.into(),
    };
    for (i, f) in [65_534u32, 65_535, 65_536, 65_537].iter().enumerate() {
        a.push(&abp.up(*f, false, "2", &format!("0268{:02x}", 80 + i), ""));
    }
    sub.wait_lines(Duration::from_secs(10), "ABP humidity x4", |l| {
        l.iter()
            .filter(|(x, _)| x == &topic(ABP, "humidity_2"))
            .count()
            >= 4
    });
    a.push(&abp.up(65_535, false, "2", "026864", ""));
    wait_rejection(&g, "stale-fcnt", 2);

    // ---- restart: sessions and counters survive; a replay is still refused, the next frame is not
    g.stop();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    // the embedded broker restarted with the gateway: subscribe again
    drop(sub);
    let sub = Subscriber::spawn(&mq(&["-t", "warden/#"]), &t.path().join("sub2.txt"));
    std::thread::sleep(Duration::from_millis(400));
    let mut a = Forwarder::new(GW_A, udp);
    a.pull();
    a.push(&up4);
    wait_rejection(&g, "replay", 2);
    let up5 = k.up(5, true, "1", &lpp_temp(23.5), "");
    a.push(&up5);
    let dn = a
        .pull_resp(Duration::from_secs(5))
        .expect("ACK after restart");
    a.tx_ack(dn.token, "NONE");
    let d = k.down(&dn.phy, 3);
    assert_eq!(d["mic_ok"], true, "{d}");
    assert_eq!(d["fcnt"], 3, "FCntDown continues after restart: {d}");
    sub.wait_lines(Duration::from_secs(15), "temperature 23.5", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("23.5"))
    });
    // metrics count the rejections by cause
    let m = metrics(p.api, &dd);
    assert!(
        m.contains("warden_adapter_rejections") && m.contains("replay"),
        "metrics: {}",
        m.lines()
            .filter(|l| l.contains("reject"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // ---- kill -9 in a burst (counters are group-committed): after the restart, the last frame
    // that reached MQTT is refused as a replay — no counter was reused
    let burst: Vec<(u32, Vec<u8>)> = (6..46u32)
        .map(|f| {
            (
                f,
                k.up(f, false, "1", &lpp_temp(30.0 + f64::from(f) / 10.0), ""),
            )
        })
        .collect();
    for (_, frame) in &burst {
        a.push(frame);
    }
    let published = |sub: &Subscriber| -> Vec<u32> {
        sub.lines()
            .iter()
            .filter(|(x, _)| x == &topic(DEV, "temperature_1"))
            .filter_map(|(_, pl)| json(pl)["value"].as_f64())
            .filter(|v| *v >= 30.55)
            .map(|v| ((v - 30.0) * 10.0).round() as u32)
            .collect()
    };
    sub.wait_lines(
        Duration::from_secs(15),
        "part of the burst published",
        |_| published(&sub).len() >= 5,
    );
    g.kill9();
    let last = *published(&sub).iter().max().unwrap();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let before = rejections(&g, "replay").len() + rejections(&g, "stale-fcnt").len();
    let mut a = Forwarder::new(GW_A, udp);
    a.pull();
    let (_, frame) = burst.iter().find(|(f, _)| *f == last).unwrap();
    a.push(frame);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while rejections(&g, "replay").len() + rejections(&g, "stale-fcnt").len() <= before {
        assert!(
            std::time::Instant::now() < end,
            "FCnt {last}, published before the kill, was not refused after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // the positive control: the next new counter is taken
    let next = k.up(100, false, "1", &lpp_temp(42.5), "");
    drop(sub);
    let sub = Subscriber::spawn(&mq(&["-t", "warden/#"]), &t.path().join("sub3.txt"));
    // subscribed once the retained gateway topics arrive
    sub.wait_lines(Duration::from_secs(10), "the subscription up", |l| {
        !l.is_empty()
    });
    a.push(&next);
    sub.wait_lines(Duration::from_secs(15), "temperature 42.5", |l| {
        l.iter()
            .any(|(x, pl)| x == &topic(DEV, "temperature_1") && pl.contains("42.5"))
    });
    g.stop();
}
