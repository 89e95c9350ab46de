//! ReadProperty round trips per second to a BACnet/SC device through a hub, over Warden's own
//! SC link (TLS 1.3, WebSocket, BVLC-SC) and network layer:
//!
//!     cargo run --release -p warden-bacnet --example sc_rate -- \
//!         wss://127.0.0.1:PORT CA.crt CERT.crt KEY.key 02:00:00:00:00:21 [N]
//!
//! Prints the connect time (TCP + TLS + WebSocket + Connect-Request/Accept), then rate and
//! latency percentiles of N ReadProperty(analog-value,1 present-value), one in flight at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use warden_bacnet::bvlc_sc::Vmac;
use warden_bacnet::config::{HubUri, ScConfig};
use warden_bacnet::sc::{self, ScLink, Status};
use warden_bacnet::services::{self, confirmed, prop};
use warden_bacnet::tag::ObjectId;
use warden_bacnet::transport::{self, Event, Net, Peer, Reply, ScPort};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let cfg = ScConfig {
        hub: a[1].clone(),
        failover_hub: None,
        ca: a[2].clone().into(),
        cert: a[3].clone().into(),
        key: a[4].clone().into(),
        vmac: None,
        uuid: None,
        network: 0,
        heartbeat_s: 60,
        connect_timeout_ms: 10_000,
        reconnect_min_ms: 1_000,
        reconnect_max_ms: 1_000,
        discover_on_connect: false,
    };
    let target = Vmac::parse(&a[5]).expect("target VMAC");
    let n: usize = a.get(6).map_or(2000, |s| s.parse().unwrap());
    let (sock, _) = transport::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(256);
    let port = Arc::new(ScPort::new(out_tx));
    let net = Arc::new(Net::new(sock, 1 << 20).unwrap().with_sc(port.clone()));
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let link = ScLink {
        hubs: vec![HubUri::parse(&cfg.hub).unwrap()],
        tls: sc::tls_config(&cfg).unwrap(),
        vmac: sc::random_vmac(),
        uuid: sc::random_uuid(),
        heartbeat: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(1),
        port: port.clone(),
        net: net.clone(),
        events: ev_tx,
    };
    tokio::spawn(link.run(out_rx, stop_rx));
    loop {
        match ev_rx.recv().await.expect("link task") {
            Event::Sc(Status::Up { took, subject, .. }) => {
                println!(
                    "connect ms   {:.1}  (hub {subject})",
                    took.as_secs_f64() * 1e3
                );
                break;
            }
            Event::Sc(Status::Down { detail, .. }) => panic!("{detail}"),
            _ => {}
        }
    }
    assert!(port.up.load(Ordering::Relaxed));
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let peer = Peer::sc(target);
    let o = ObjectId::new(2, 1);
    let req = services::read_property(o, prop::PRESENT_VALUE, None);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = net
            .request(
                &peer,
                confirmed::READ_PROPERTY,
                &req,
                Duration::from_secs(3),
                0,
            )
            .await
            .expect("answer");
        let Reply::Complex(d) = r else {
            panic!("not a Complex-ACK")
        };
        services::decode_read_property_ack(&d).unwrap();
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!("round trips  {n}");
    println!("per second   {:.0}", n as f64 / secs);
    println!("p50 ms       {:.2}", pct(0.50));
    println!("p99 ms       {:.2}", pct(0.99));
    println!(
        "{{\"bench\":\"bacnet-sc-rp\",\"round_trips\":{n},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        n as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}
