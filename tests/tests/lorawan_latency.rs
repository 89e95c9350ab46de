//! Latency from a PUSH_DATA leaving a (loopback) packet forwarder to the uplink's MQTT publish arriving
//! at a `mosquitto_sub` of the embedded broker: adapter (dedup window 0) + pipeline + signing + broker.
//! Frames are lora-packet's (an ABP device); uplinks are sent one at a time. It asserts that every
//! uplink is published and prints p50/p99 and a JSON line; the figures are a measurement (run it with
//! a release build for the README), never a pass/fail bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use warden_e2e::*;

fn b64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn lorawan_push_data_to_mqtt_latency() {
    const N: usize = 200;
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let udp = free_port();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[profiles.lora-hum]\npoints = [\"humidity_2\"]\nmin_assurance = \"shared-key\"\nrequire_fresh = true\n\
             [adapters.lorawan]\nbind = \"127.0.0.1:{udp}\"\nforwarders = [\"aa555a0000000001\"]\ndedup_ms = 0\n\
             [adapters.lorawan.devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let devs = t.path().join("d.toml");
    std::fs::write(
        &devs,
        "[[devices]]\nid = \"lorawan:0004a30b001c0531\"\nprofile = \"lora-hum\"\n\
         credentials = { dev_addr = \"hex:01abcdef\", nwk_s_key = \"hex:000102030405060708090a0b0c0d0e0f\", \
         app_s_key = \"hex:f0e0d0c0b0a090807060504030201000\" }\n",
    )
    .unwrap();
    assert!(
        g.cli(&["devices", "import", devs.to_str().unwrap()])
            .status
            .success()
    );
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/lorawan/device.cjs"))
        .args([
            "ups",
            "01abcdef",
            "000102030405060708090a0b0c0d0e0f",
            "f0e0d0c0b0a090807060504030201000",
            "0",
            &N.to_string(),
            "2",
            "026850",
        ])
        .output()
        .expect("node (tests/scripts/install-lorawan.sh)");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(stdout(&o).trim());
    let phys: Vec<Vec<u8>> = v["phys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();

    // mosquitto_sub's stdout read line by line as it arrives, timestamped on arrival
    let mut sub = Command::new("mosquitto_sub")
        .args(["-V", "mqttv311"])
        .args(operator_args(
            &dd,
            p.mqtt,
            &["-t", "warden/devices/+/telemetry/#"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Instant>();
    let out = sub.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if l.is_err() || tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", udp)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let eui = 0xaa55_5a00_0000_0001u64.to_be_bytes();
    let mut lat = Vec::with_capacity(N);
    for (i, phy) in phys.iter().enumerate() {
        let body = format!(
            r#"{{"rxpk":[{{"tmst":{},"freq":868.1,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/5","rssi":-50,"lsnr":6.0,"size":{},"data":"{}"}}]}}"#,
            i * 1000,
            phy.len(),
            b64_encode(phy)
        );
        let mut d = vec![2, (i >> 8) as u8, i as u8, 0];
        d.extend_from_slice(&eui);
        d.extend_from_slice(body.as_bytes());
        let t0 = Instant::now();
        sock.send(&d).unwrap();
        let at = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("uplink published");
        lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        let mut ack = [0u8; 16];
        let _ = sock.recv(&mut ack); // the PUSH_ACK
    }
    let _ = sub.kill();
    let _ = sub.wait();
    lat.sort_by(f64::total_cmp);
    let p50 = lat[N / 2];
    let p99 = lat[(N * 99) / 100 - 1];
    eprintln!("PUSH_DATA → MQTT publish over {N} uplinks: p50 {p50:.2} ms, p99 {p99:.2} ms");
    println!(
        "{}",
        serde_json::json!({"bench": "lorawan_e2e", "n": N, "p50_ms": p50, "p99_ms": p99})
    );
    g.stop();
}
