//! `cargo bench -p warden-ble --bench adverts`: BTHome adverts per second the engine parses,
//! verifies and turns into messages on one core — plain (packet-id deduplication, object parsing)
//! and encrypted (bind-key lookup, AES-CCM MIC, counter check against the state store, parsing).
//! 100 devices each; adverts are built before the clock starts. The state store is the in-memory
//! test double, and then a store that fsyncs each counter write (as the gateway's sealed store makes
//! each accepted encrypted advert's counter durable before it is published).
//! Then the memory the engine holds for 1,000 distinct advertisers (RSS before/after, Linux).
//!
//! Prints a table and one JSON line. `WARDEN_BENCH_QUICK=1`: 10k adverts (smoke test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use std::io::Write;
use warden_ble::Config;
use warden_ble::bthome::DeviceInfo;
use warden_ble::crypto;
use warden_ble::engine::{AddressKind, Advert, BINDKEY, Engine, device_id};

use warden_core::testing::{MemoryState, StaticCredentials};
use warden_core::{AdapterEvent, StateError, StateStore};

const OBJECTS: [u8; 11] = [
    0x01, 0x64, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13, 0x0c, 0x02, 0x0c,
];

fn mac(i: usize) -> [u8; 6] {
    [0xc4, 0x7c, 0x8d, 0x00, (i >> 8) as u8, i as u8]
}

fn advert(m: [u8; 6], sd: Vec<u8>) -> Advert {
    Advert {
        mac: m,
        address: AddressKind::RandomStatic,
        name: Some("bench".into()),
        rssi: Some(-70),
        bthome: Some(sd),
        company: None,
    }
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn run(name: &str, engine: &mut Engine, adverts: &[Advert]) -> f64 {
    let t = Instant::now();
    let mut published = 0usize;
    for a in adverts {
        for ev in engine.advert(a, Instant::now()) {
            if matches!(ev, AdapterEvent::Uplink(_)) {
                published += 1;
            }
            black_box(ev);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(published, adverts.len(), "{name}: every advert published");
    adverts.len() as f64 / secs
}

fn main() {
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = if quick { 10_000 } else { 300_000 };
    let key = [0x5au8; 16];
    let mut creds = StaticCredentials::default();
    for d in 0..100 {
        creds = creds.with(&device_id(&mac(1000 + d)).unwrap(), BINDKEY, &key);
    }
    // 100 new advertisers at once: more than the default announcement budget
    let cfg = Config {
        new_devices_per_minute: 100_000,
        ..Config::default()
    };
    let creds = Arc::new(creds);

    // plain: 100 devices, packet ids advancing so none is a repeat
    let plain: Vec<Advert> = (0..n)
        .map(|i| {
            let mut sd = vec![0x40, 0x00, (i / 100) as u8];
            sd.extend_from_slice(&OBJECTS);
            advert(mac(i % 100), sd)
        })
        .collect();
    let mut e = Engine::new(&cfg, Arc::new(MemoryState::default()), creds.clone());
    let plain_rate = run("plain", &mut e, &plain);

    // encrypted: 100 provisioned devices, counters advancing
    let encrypted: Vec<Advert> = (0..n)
        .map(|i| {
            let m = mac(1000 + i % 100);
            let mut sd = vec![0x41];
            sd.extend(crypto::seal(
                &key,
                &m,
                DeviceInfo(0x41),
                (i / 100) as u32 + 1,
                &OBJECTS,
            ));
            advert(m, sd)
        })
        .collect();
    let mut e = Engine::new(&cfg, Arc::new(MemoryState::default()), creds.clone());
    let enc_rate = run("encrypted", &mut e, &encrypted);
    // the same with every counter write made durable (fsync), as the gateway's store does
    let n_sync = n.min(5_000);
    let dir = std::env::temp_dir().join(format!("warden-ble-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut e = Engine::new(&cfg, Arc::new(FsyncState::new(&dir)), creds.clone());
    let sync_rate = run("encrypted+fsync", &mut e, &encrypted[..n_sync]);
    let _ = std::fs::remove_dir_all(&dir);

    // memory for 1,000 distinct advertisers (tracking, dedup state, counters cache)
    let adverts: Vec<Advert> = (0..1000)
        .map(|i| advert(mac(10_000 + i), vec![0x40, 0x00, 1, 0x01, 0x50]))
        .collect();
    let before = rss_kib();
    let mut e = Engine::new(&cfg, Arc::new(MemoryState::default()), creds);
    for a in &adverts {
        black_box(e.advert(a, Instant::now()));
    }
    let after = rss_kib();
    assert_eq!(e.tracked(), 1000);
    let delta = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };

    println!("BTHome adverts on one core ({n} each, 100 devices):");
    println!("  plain      parse + dedup + message            {plain_rate:>12.0} adverts/s");
    println!("  encrypted  key + AES-CCM + counter + message  {enc_rate:>12.0} adverts/s");
    println!("  encrypted, counter fsynced per advert ({n_sync})  {sync_rate:>9.0} adverts/s");
    match delta {
        Some(d) => println!("  1,000 distinct advertisers tracked: +{d} KiB RSS"),
        None => println!("  1,000 distinct advertisers tracked: RSS not readable here"),
    }
    println!(
        "{}",
        serde_json_line(plain_rate, enc_rate, sync_rate, delta.unwrap_or(0))
    );
}

fn serde_json_line(plain: f64, enc: f64, sync: f64, kib: u64) -> String {
    format!(
        "{{\"bench\":\"ble-adverts\",\"plain_per_s\":{plain:.0},\"encrypted_per_s\":{enc:.0},\"encrypted_fsync_per_s\":{sync:.0},\"rss_kib_1000_advertisers\":{kib}}}"
    )
}

/// A state store that appends each write to a log file and fsyncs it before returning (the way
/// a write-ahead log makes a commit durable), reading back from memory.
struct FsyncState {
    log: std::sync::Mutex<std::fs::File>,
    map: MemoryState,
}

impl FsyncState {
    fn new(dir: &std::path::Path) -> Self {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("state.log"))
            .unwrap();
        Self {
            log: std::sync::Mutex::new(f),
            map: MemoryState::default(),
        }
    }
}

impl StateStore for FsyncState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.map.get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        let mut f = self.log.lock().unwrap();
        f.write_all(key.as_bytes())
            .and_then(|_| f.write_all(value))
            .and_then(|_| f.sync_data())
            .map_err(|e| StateError(e.to_string()))?;
        self.map.put(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StateError> {
        self.map.delete(key)
    }
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        self.map.keys(prefix)
    }
}
