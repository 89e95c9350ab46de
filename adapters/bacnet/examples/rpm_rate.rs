//! ReadPropertyMultiple round trips per second against a real device, through Warden's own
//! transport (invoke ids, timeouts, decode of the ACK):
//!
//!     cargo run --release -p warden-bacnet --example rpm_rate -- 127.0.0.2:47808 1002 [N] [BIND]
//!
//! One request in flight at a time (what one device task does); prints rate and latency
//! percentiles and one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_bacnet::services::{self, ReadSpec, confirmed, prop};
use warden_bacnet::tag::ObjectId;
use warden_bacnet::transport::{self, Net, Peer, Reply};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target: std::net::SocketAddr = args.get(1).expect("target host:port").parse().unwrap();
    let n: usize = args.get(3).map_or(2000, |s| s.parse().unwrap());
    let bind = args.get(4).map_or("127.0.0.21:47808", String::as_str);
    let (sock, _) = transport::bind(bind.parse().unwrap(), None).unwrap();
    // MAX_APDU=128 makes the device segment its answers (reassembly measured too)
    let max_apdu = std::env::var("MAX_APDU").map_or(1476, |v| v.parse().unwrap());
    let net = Arc::new(
        Net::new(sock.clone(), 1 << 20)
            .unwrap()
            .with_max_apdu(max_apdu),
    );
    let (tx, _rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(transport::receive(net.clone(), sock, tx));
    let peer = Peer::direct(target);
    let specs: Vec<ReadSpec> = [(0u16, 1u32), (2, 1), (3, 1), (4, 1), (19, 1)]
        .iter()
        .map(|(k, i)| ReadSpec {
            object: ObjectId::new(*k, *i),
            properties: vec![(prop::PRESENT_VALUE, None), (prop::STATUS_FLAGS, None)],
        })
        .collect();
    let req = services::read_property_multiple(&specs);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = net
            .request(
                &peer,
                confirmed::READ_PROPERTY_MULTIPLE,
                &req,
                Duration::from_secs(2),
                0,
            )
            .await
            .expect("answer");
        let Reply::Complex(d) = r else {
            panic!("not a Complex-ACK")
        };
        let results = services::decode_read_property_multiple_ack(&d).unwrap();
        assert_eq!(results.len(), 10);
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
        "{{\"bench\":\"bacnet-rpm\",\"round_trips\":{n},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        n as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}
