//! Polling throughput of the Modbus adapter against an in-process tokio-modbus TCP server.
//!
//! A 100-point device (50 u16 + 50 f32 points over 150 holding registers, merged into two
//! requests) is polled as fast as the link allows (`interval_ms = 0`), for two publishing modes:
//! `always` (every poll is a 100-point message) and `changed` (the server bumps one register per
//! request, so each poll publishes the changed points only). The server runs on its own thread; the
//! adapter and the event consumer share the measured thread, whose CPU time gives CPU per message.
//!
//! Run: `cargo bench -p warden-modbus` (prints a table and one JSON line per scenario).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use warden_core::{AdapterContext, AdapterEvent};

#[derive(Clone)]
struct Regs(Arc<AtomicU16>);

impl tokio_modbus::server::Service for Regs {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;
    fn call(&self, req: Request<'static>) -> Self::Future {
        future::ready(match req {
            Request::ReadHoldingRegisters(a, n) => {
                let bump = self.0.fetch_add(1, Ordering::Relaxed);
                let v = (a..a.saturating_add(n))
                    .map(|i| if i == 0 { bump } else { i })
                    .collect();
                Ok(Response::ReadHoldingRegisters(v))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

fn start_server(bump: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let counter = Arc::new(AtomicU16::new(0));
            let svc = Regs(counter);
            let on_connected = move |stream, addr| {
                let s = svc.clone();
                async move {
                    if !bump {
                        s.0.store(0, Ordering::Relaxed);
                    }
                    accept_tcp_connection(stream, addr, move |_| {
                        Ok(Some(if bump {
                            s.clone()
                        } else {
                            Regs(Arc::new(AtomicU16::new(0)))
                        }))
                    })
                }
            };
            let _ = Server::new(l).serve(&on_connected, |_| {}).await;
        });
    });
    rx.recv().unwrap()
}

fn config(addr: SocketAddr, publish: &str) -> toml::Value {
    let mut pts = String::new();
    for i in 0..50 {
        pts.push_str(&format!(
            "{{ name = \"u{i}\", table = \"holding\", address = {i} }},\n"
        ));
    }
    for i in 0..50 {
        pts.push_str(&format!(
            "{{ name = \"f{i}\", table = \"holding\", address = {}, type = \"f32\" }},\n",
            50 + 2 * i
        ));
    }
    let s = format!(
        r#"
[[links]]
transport = "tcp"
host = "{}"
port = {}
[[links.devices]]
unit = 1
publish = "{publish}"
[[links.devices.groups]]
interval_ms = 0
points = [
{pts}]
"#,
        addr.ip(),
        addr.port()
    );
    toml::from_str(&s).unwrap()
}

/// User + system CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // fields 14 and 15 of stat; `after` starts at field 3
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Row {
    scenario: &'static str,
    secs: f64,
    polls: u64,
    messages: u64,
    points: u64,
    cpu: Duration,
}

fn run(scenario: &'static str, publish: &str, bump: bool, secs: u64) -> Row {
    let addr = start_server(bump);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let adapter = warden_modbus::build(&config(addr, publish)).unwrap();
        let (ev_tx, mut ev_rx) = mpsc::channel(1024);
        let (_dl_tx, dl_rx) = mpsc::channel(8);
        let (sd_tx, sd_rx) = watch::channel(false);
        let ctx = AdapterContext {
            events: ev_tx,
            downlinks: dl_rx,
            credentials: Arc::new(warden_core::testing::StaticCredentials::default()),
            operations: tokio::sync::mpsc::channel(1).1,
            state: Arc::new(warden_core::testing::MemoryState::default()),
            shutdown: sd_rx,
        };
        let task = tokio::spawn(adapter.run(ctx));
        // warm up: connection and first full publish
        let warm = Instant::now() + Duration::from_millis(300);
        while Instant::now() < warm {
            let _ = tokio::time::timeout(Duration::from_millis(50), ev_rx.recv()).await;
        }
        let (mut polls, mut messages, mut points) = (0u64, 0u64, 0u64);
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(AdapterEvent::Uplink(m))) =
                tokio::time::timeout(Duration::from_millis(100), ev_rx.recv()).await
            {
                polls += 1;
                if !m.points.is_empty() {
                    messages += 1;
                    points += m.points.len() as u64;
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu().saturating_sub(cpu0);
        let _ = sd_tx.send(true);
        drop(ev_rx);
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        Row {
            scenario,
            secs,
            polls,
            messages,
            points,
            cpu,
        }
    })
}

fn main() {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rows = [
        run("always-100-points", "always", false, secs),
        run("changed-1-of-100", "changed", true, secs),
    ];
    println!(
        "{:<20} {:>10} {:>12} {:>12} {:>14} {:>16}",
        "scenario", "polls/s", "messages/s", "points/s", "cpu %", "cpu µs/message"
    );
    for r in &rows {
        let per_msg = r.cpu.as_secs_f64() * 1e6 / (r.messages.max(1) as f64);
        println!(
            "{:<20} {:>10.0} {:>12.0} {:>12.0} {:>14.1} {:>16.1}",
            r.scenario,
            r.polls as f64 / r.secs,
            r.messages as f64 / r.secs,
            r.points as f64 / r.secs,
            100.0 * r.cpu.as_secs_f64() / r.secs,
            per_msg
        );
    }
    for r in &rows {
        println!(
            "{{\"bench\":\"modbus-poll\",\"scenario\":\"{}\",\"secs\":{:.2},\"polls\":{},\"messages\":{},\"points\":{},\"polls_per_s\":{:.1},\"messages_per_s\":{:.1},\"cpu_ms\":{},\"cpu_us_per_message\":{:.2}}}",
            r.scenario,
            r.secs,
            r.polls,
            r.messages,
            r.points,
            r.polls as f64 / r.secs,
            r.messages as f64 / r.secs,
            r.cpu.as_millis(),
            r.cpu.as_secs_f64() * 1e6 / (r.messages.max(1) as f64)
        );
    }
}
