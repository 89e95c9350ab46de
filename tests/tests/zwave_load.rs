//! The Z-Wave adapter with 100 nodes on zwave-js's MockController: a measurement, not a timed
//! assertion. It asserts correctness only (every node interviewed, every timed report published)
//! and prints JSON lines `{"bench":"zwave-e2e", …}`: how long the interviews of 100 nodes took at
//! start-up, the gateway's memory with them, and the latency from a node's report (the mock's
//! control command that makes the node send it) to its MQTT publish, p50/p99.
//!
//! Run against the release binary (the harness itself may stay a debug build):
//! `cargo build --release -p warden --bins && WARDEN_BIN=target/release/warden cargo test -p
//! warden-e2e --test zwave_load -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_e2e::*;
use zigbee_support::audit_where;

/// Extra sensor nodes (ids 10…109) besides the mock's own three.
const N: u16 = 100;
/// Reports timed end to end.
const SAMPLES: usize = 400;

fn node_id(n: u16) -> String {
    format!("zwave:c0ffee01-{n}")
}

struct Mock {
    child: Child,
    control: u16,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/zwave")
}

fn start_mock(dir: &Path, port: u16) -> Mock {
    assert!(
        peers().join("node_modules/zwave-js").exists(),
        "zwave-js missing: run tests/scripts/install-zwave.sh"
    );
    let control = free_port();
    let f = std::fs::File::create(dir.join("zwave-mock.log")).unwrap();
    let child = Command::new("node")
        .arg(peers().join("zwave_mock.cjs"))
        .args(["--port", &port.to_string()])
        .args(["--control-port", &control.to_string()])
        .args(["--sensors", &N.to_string()])
        .current_dir(peers())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .stdin(Stdio::null())
        .spawn()
        .expect("node");
    let m = Mock { child, control };
    wait_for(Duration::from_secs(60), "the mock's control port", || {
        TcpStream::connect(("127.0.0.1", m.control))
            .ok()
            .map(|_| ())
    });
    m
}

/// One persistent connection to the mock's control port.
struct Control {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Control {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        self.r.read_line(&mut out).unwrap();
        out.trim().to_owned()
    }
}

fn emit(mut v: serde_json::Value) {
    v.as_object_mut()
        .unwrap()
        .insert("bench".into(), "zwave-e2e".into());
    println!("{v}");
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture (release binary)"]
fn zwave_100_nodes_report_latency_and_memory() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let port = free_port();
    let t_mock = Instant::now();
    let mock = start_mock(dir, port);
    let mock_ready = t_mock.elapsed();
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{base}\n[profiles.zwsensor]\npoints = [\"temperature\"]\nmin_assurance = \"none\"\n\n[adapters.zwave]\nport = \"tcp://127.0.0.1:{port}\"\nreconnect_s = 1\ninterview_timeout_ms = 3000\n",
            base = base_config(&p)
        ),
    )
    .unwrap();
    let dd = dir.join("data");
    let t0 = Instant::now();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = TimedSubscriber::spawn(&operator_args(
        &dd,
        p.mqtt,
        &["-t", "warden/devices/+/telemetry/temperature"],
    ));

    // every node interviewed at start-up (a registration record each)
    let ids: Vec<String> = (10..10 + N).map(node_id).collect();
    wait_for(Duration::from_secs(600), "100 nodes interviewed", || {
        let n = audit_where(&dd, |r| {
            r["action"] == "device-registered"
                && r["device"]
                    .as_str()
                    .is_some_and(|d| ids.iter().any(|i| i == d))
        })
        .len();
        (n >= ids.len()).then_some(())
    });
    let interviewed = t0.elapsed();
    let (rss, hwm) = memory_kib(g.pid());
    emit(serde_json::json!({
        "metric": "start", "nodes": N + 3, "mock_ready_s": mock_ready.as_secs_f64(),
        "all_interviewed_s": interviewed.as_secs_f64(), "vm_rss_kib": rss, "vm_hwm_kib": hwm,
    }));
    for id in &ids {
        let o = g.cli(&[
            "devices",
            "approve",
            id,
            "--profile",
            "zwsensor",
            "--reason",
            "load",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // reports one at a time, round robin over the nodes, each value unique
    let mut ctl = Control::connect(mock.control);
    let mut lat = Vec::with_capacity(SAMPLES);
    for k in 0..SAMPLES {
        let node = 10 + u16::try_from(k % usize::from(N)).unwrap();
        let value = 10.0 + (k as f64) / 10.0;
        let topic = format!("warden/devices/{}/telemetry/temperature", node_id(node));
        let sent = Instant::now();
        assert_eq!(
            ctl.send(&format!("temp {node} {value}")),
            format!("OK temp {node}")
        );
        let at = wait_for(Duration::from_secs(20), "the report on MQTT", || {
            sub.find(&topic, value)
        });
        lat.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let (rss2, hwm2) = memory_kib(g.pid());
    emit(serde_json::json!({
        "metric": "report-to-mqtt", "samples": SAMPLES, "nodes": N,
        "p50_ms": percentile(&lat, 50), "p99_ms": percentile(&lat, 99),
        "max_ms": lat.last().copied().unwrap_or(0.0),
        "vm_rss_kib": rss2, "vm_hwm_kib": hwm2,
    }));
    assert_eq!(lat.len(), SAMPLES);
    assert!(rss2 > 0);
    g.stop();
}
