//! `cargo bench -p warden-lorawan`: verified uplinks per second on one core, and the latency from a
//! PUSH_DATA datagram arriving on the adapter's UDP socket to the adapter emitting the Uplink.
//!
//! 1. engine: parse + device lookup + MIC + 32-bit FCnt + session persist + decrypt + Cayenne LPP +
//!    Message, on one thread, with an in-memory state store and with a file store that fsyncs every
//!    put (what the gateway's durable store costs per uplink dominates).
//! 2. udp → emit: the running adapter (current-thread runtime = one core), a loopback forwarder
//!    sending PUSH_DATA one at a time, `dedup_ms = 0`; p50/p99 until the Uplink event is received.
//!    The MQTT publish is measured by the gateway's own pipeline benchmark, not here.
//!
//! Prints a table and one JSON line per figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use warden_core::testing::{MemoryState as Mem, StaticCredentials as Creds};
use warden_core::{AdapterContext, AdapterEvent, StateError, StateStore};
use warden_lorawan::gwmp::{self, PushBody, RxPk};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};
use warden_lorawan::{Config, Engine, RxInfo};

/// Writes each put to a file and fsyncs it, like a durable store's commit.
struct Fsync {
    dir: PathBuf,
    mem: Mem,
}
impl StateStore for Fsync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.mem.get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        let mut f = std::fs::File::create(self.dir.join(key.replace('/', "_"))).unwrap();
        f.write_all(value).unwrap();
        f.sync_all().unwrap();
        self.mem.put(key, value)
    }
    /// A group commit: every item into one file, one fsync.
    fn put_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        let mut f = std::fs::File::create(self.dir.join("batch")).unwrap();
        for (k, v) in items {
            f.write_all(k.as_bytes()).unwrap();
            f.write_all(v).unwrap();
        }
        f.sync_all().unwrap();
        for (k, v) in items {
            self.mem.put(k, v)?;
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StateError> {
        self.mem.delete(key)
    }
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        self.mem.keys(prefix)
    }
}

const NWK: Key = Key([1; 16]);
const APP: Key = Key([2; 16]);
const ADDR: u32 = 0x01ab_cdef;
const EUI: u64 = 0xaa55_5a00_0000_0001;

fn creds() -> Arc<Creds> {
    let mut c = HashMap::new();
    let id = "lorawan:0004a30b001c0531".to_string();
    c.insert((id.clone(), "dev_addr".into()), ADDR.to_be_bytes().to_vec());
    c.insert((id.clone(), "nwk_s_key".into()), NWK.0.to_vec());
    c.insert((id, "app_s_key".into()), APP.0.to_vec());
    Arc::new(Creds(c))
}

fn cfg(extra: &str) -> Config {
    Config::from_toml(
        &toml::from_str(&format!(
            "{extra}\n[devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n"
        ))
        .unwrap(),
    )
    .unwrap()
}

fn frame(fcnt: u32) -> Vec<u8> {
    let t = (200 + (fcnt % 50) as i16).to_be_bytes();
    phy::build_data(
        Dir::Up,
        &NWK,
        &APP,
        ADDR,
        fcnt,
        &DataSpec {
            fport: Some(1),
            payload: vec![0x01, 0x67, t[0], t[1], 0x02, 0x68, 0x50],
            ..Default::default()
        },
    )
    .unwrap()
}

fn rx() -> RxInfo {
    RxInfo {
        eui: EUI,
        rxpk: serde_json::from_str(
            r#"{"tmst":1000,"freq":868.1,"datr":"SF7BW125","rssi":-50,"lsnr":5.5,"data":""}"#,
        )
        .unwrap(),
        copies: 1,
    }
}

fn engine_rate(state: Arc<dyn StateStore>, n: u32) -> f64 {
    let frames: Vec<Vec<u8>> = (0..n).map(frame).collect();
    let mut e = Engine::new(cfg(""), creds(), state).unwrap();
    let r = rx();
    let t = Instant::now();
    let mut ok = 0u32;
    for f in &frames {
        let out = e.handle(f, &r, Duration::ZERO);
        if matches!(out.events.first(), Some(AdapterEvent::Uplink(_))) {
            ok += 1;
        }
    }
    let s = t.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every frame verified");
    f64::from(n) / s
}

/// Group commit: `devices` ABP devices each sending `rounds` uplinks, handled in batches of one
/// uplink per device (what one flush of the dedup window holds under load): one fsync per batch.
fn batch_rate(state: Arc<dyn StateStore>, devices: u32, rounds: u32) -> f64 {
    let mut c = HashMap::new();
    let mut toml = String::new();
    for d in 0..devices {
        let eui = 0x0004_a30b_0010_0000u64 + u64::from(d);
        let id = format!("lorawan:{eui:016x}");
        c.insert(
            (id.clone(), "dev_addr".into()),
            (0x0200_0000 + d).to_be_bytes().to_vec(),
        );
        c.insert((id.clone(), "nwk_s_key".into()), NWK.0.to_vec());
        c.insert((id, "app_s_key".into()), APP.0.to_vec());
        toml.push_str(&format!("[devices.\"{eui:016x}\"]\nactivation = \"abp\"\n"));
    }
    let cfg = Config::from_toml(&toml::from_str(&toml).unwrap()).unwrap();
    let mut e = Engine::new(cfg, Arc::new(Creds(c)), state).unwrap();
    let r = rx();
    let batches: Vec<Vec<(Vec<u8>, RxInfo, Duration)>> = (0..rounds)
        .map(|f| {
            (0..devices)
                .map(|d| {
                    let phy = phy::build_data(
                        Dir::Up,
                        &NWK,
                        &APP,
                        0x0200_0000 + d,
                        f,
                        &DataSpec {
                            fport: Some(1),
                            payload: vec![0x01, 0x67, 0, 200],
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    (phy, r.clone(), Duration::ZERO)
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    let mut ok = 0u32;
    for b in &batches {
        for out in e.handle_batch(b) {
            if matches!(out.events.first(), Some(AdapterEvent::Uplink(_))) {
                ok += 1;
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    assert_eq!(ok, devices * rounds, "every frame verified");
    f64::from(ok) / s
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn udp_latency(n: u32) -> (f64, f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = cfg(&format!(
            "bind = \"127.0.0.1:{port}\"\nforwarders = [\"{EUI:016x}\"]\ndedup_ms = 0"
        ));
        let adapter = Box::new(warden_lorawan::LorawanAdapter::new(c).unwrap());
        let (ev_tx, mut ev_rx) = mpsc::channel(1024);
        let (_dl_tx, dl_rx) = mpsc::channel(8);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(warden_core::Adapter::run(
            adapter,
            AdapterContext {
                events: ev_tx,
                downlinks: dl_rx,
                credentials: creds(),
                operations: tokio::sync::mpsc::channel(1).1,
                state: Arc::new(Mem::default()),
                shutdown: stop_rx,
            },
        ));
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(("127.0.0.1", port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut lat = Vec::with_capacity(n as usize);
        let t_all = Instant::now();
        for f in 0..n {
            let body = PushBody {
                rxpk: vec![
                    serde_json::from_value::<RxPk>(serde_json::json!({
                        "tmst": f, "freq": 868.1, "stat": 1, "modu": "LORA", "datr": "SF7BW125",
                        "rssi": -50, "lsnr": 5.5, "size": 20, "data": gwmp::b64(&frame(f))
                    }))
                    .unwrap(),
                ],
                stat: None,
            };
            let d = gwmp::push_data(f as u16, EUI, &body);
            let t = Instant::now();
            sock.send(&d).await.unwrap();
            loop {
                match ev_rx.recv().await.unwrap() {
                    AdapterEvent::Uplink(_) => break,
                    AdapterEvent::Rejected(r) => panic!("{r:?}"),
                    _ => {}
                }
            }
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let rate = f64::from(n) / t_all.elapsed().as_secs_f64();
        stop_tx.send(true).unwrap();
        let _ = task.await;
        let p50 = pct(&mut lat, 0.5);
        let p99 = pct(&mut lat, 0.99);
        (rate, p50, p99)
    })
}

fn main() {
    let n = 50_000;
    let mem = engine_rate(Arc::new(Mem::default()), n);
    let dir = std::env::temp_dir().join(format!("warden-lorawan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nf = 2_000;
    let fsync = engine_rate(
        Arc::new(Fsync {
            dir: dir.clone(),
            mem: Mem::default(),
        }),
        nf,
    );
    let group = batch_rate(
        Arc::new(Fsync {
            dir: dir.clone(),
            mem: Mem::default(),
        }),
        100,
        200,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (rate, p50, p99) = udp_latency(5_000);
    println!("{:<58} {:>14}", "figure", "value");
    println!(
        "{:<58} {:>14.0}",
        "engine uplinks/s, 1 core, in-memory state", mem
    );
    println!(
        "{:<58} {:>14.0}",
        "engine uplinks/s, 1 core, fsync per uplink", fsync
    );
    println!(
        "{:<58} {:>14.0}",
        "engine uplinks/s, 1 core, group commit (100 per fsync)", group
    );
    println!(
        "{:<58} {:>14.0}",
        "udp PUSH_DATA -> Uplink emit, sequential uplinks/s", rate
    );
    println!(
        "{:<58} {:>14.1}",
        "udp PUSH_DATA -> Uplink emit p50 (µs)", p50
    );
    println!(
        "{:<58} {:>14.1}",
        "udp PUSH_DATA -> Uplink emit p99 (µs)", p99
    );
    for (k, v, unit, iters) in [
        ("engine_uplinks_per_s_mem", mem, "1/s", n),
        ("engine_uplinks_per_s_fsync", fsync, "1/s", nf),
        (
            "engine_uplinks_per_s_group_commit_100",
            group,
            "1/s",
            20_000,
        ),
        ("udp_to_emit_uplinks_per_s", rate, "1/s", 5_000),
        ("udp_to_emit_p50", p50, "us", 5_000),
        ("udp_to_emit_p99", p99, "us", 5_000),
    ] {
        println!(
            "{}",
            serde_json::json!({"bench": "lorawan", "name": k, "value": (v * 10.0).round() / 10.0, "unit": unit, "n": iters})
        );
    }
}
