//! The adapter's run loop against sockets the test holds: foreign-device registration with a
//! BBMD, a device found through a Forwarded-NPDU (interviewed at its origin address, not the
//! BBMD's), a device behind a router (identity from its SNET, requests addressed through the
//! router with DNET/DADR), and a downlink refused before sending.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use warden_bacnet::bvlc::{self, Bvlc};
use warden_bacnet::npdu::NetAddr;
use warden_bacnet::testing::Responder;
use warden_core::testing::{MemoryState, StaticCredentials};
use warden_core::{
    AdapterContext, AdapterEvent, Command, CommandOutcome, DeviceId, Downlink, Point, Value,
};

struct Harness {
    events: mpsc::Receiver<AdapterEvent>,
    downlinks: mpsc::Sender<Downlink>,
    _ops: mpsc::Sender<warden_core::Operation>,
    shutdown: watch::Sender<bool>,
}

async fn start(extra: &str) -> (Harness, SocketAddr) {
    // a free port on 127.0.0.1 for Warden
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bind = probe.local_addr().unwrap();
    drop(probe);
    let cfg = format!(
        "bind = \"{bind}\"\nbroadcast = \"127.255.255.255:{}\"\nlisten_broadcast = false\n\
         discover_on_start = false\napdu_timeout_ms = 500\nretries = 1\ncov = \"unconfirmed\"\n{extra}",
        bind.port()
    );
    let adapter = warden_bacnet::build(&toml::from_str::<toml::Value>(&cfg).unwrap()).unwrap();
    let (ev_tx, events) = mpsc::channel(256);
    let (dl_tx, dl_rx) = mpsc::channel(16);
    let (op_tx, op_rx) = mpsc::channel(4);
    let (sd_tx, sd_rx) = watch::channel(false);
    let ctx = AdapterContext {
        events: ev_tx,
        downlinks: dl_rx,
        credentials: Arc::new(StaticCredentials::default()),
        operations: op_rx,
        state: Arc::new(MemoryState::default()),
        shutdown: sd_rx,
    };
    tokio::spawn(adapter.run(ctx));
    (
        Harness {
            events,
            downlinks: dl_tx,
            _ops: op_tx,
            shutdown: sd_tx,
        },
        bind,
    )
}

/// Serves `r` on `sock` until the test ends.
fn serve(sock: Arc<UdpSocket>, r: Responder) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if let Some(a) = r.answer(&buf[..n], |_| {}) {
                let _ = sock.send_to(&a, from).await;
            }
        }
    });
}

async fn next_announce(h: &mut Harness) -> warden_core::Announcement {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match h.events.recv().await {
                Some(AdapterEvent::Announce(a)) => return a,
                Some(_) => {}
                None => panic!("adapter stopped"),
            }
        }
    })
    .await
    .expect("an announcement")
}

fn detail<'a>(a: &'a warden_core::Announcement, k: &str) -> &'a str {
    a.details
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn registers_with_a_bbmd_and_follows_a_forwarded_i_am_to_its_origin() {
    let bbmd = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut h, warden) = start(&format!(
        "bbmd = \"{}\"\nbbmd_ttl_s = 60",
        bbmd.local_addr().unwrap()
    ))
    .await;
    // Register-Foreign-Device with the configured TTL
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), bbmd.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, warden);
    assert_eq!(
        bvlc::decode(&buf[..n]).unwrap(),
        Bvlc::RegisterForeignDevice(60)
    );
    bbmd.send_to(&bvlc::encode(&Bvlc::Result(0)).unwrap(), warden)
        .await
        .unwrap();

    // a device elsewhere: its I-Am reaches Warden forwarded by the BBMD
    let dev = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let r = Responder {
        instance: 777,
        objects: 3,
        routed: None,
    };
    serve(dev.clone(), r.clone());
    let i_am = r.i_am();
    let SocketAddr::V4(origin) = dev.local_addr().unwrap() else {
        panic!()
    };
    let inner = bvlc::decode(&i_am).unwrap();
    let fwd = bvlc::encode(&Bvlc::Forwarded {
        origin,
        npdu: inner.npdu().unwrap(),
    })
    .unwrap();
    bbmd.send_to(&fwd, warden).await.unwrap();
    let a = next_announce(&mut h).await;
    assert_eq!(a.device, Some(DeviceId::new("bacnet", "0-777").unwrap()));
    assert_eq!(detail(&a, "address"), origin.to_string());
    assert_eq!(a.manufacturer.as_deref(), Some("Warden test responder"));
    assert_eq!(detail(&a, "object_list"), "4 objects, 3 mapped to points");
    assert_eq!(detail(&a, "t2"), "analog-input,2 \"T2\" °C");
    let _ = h.shutdown.send(true);
}

#[tokio::test]
async fn a_routed_device_is_named_by_its_network_and_reached_through_the_router() {
    let (mut h, warden) = start("").await;
    let router = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let r = Responder {
        instance: 4242,
        objects: 2,
        routed: Some(NetAddr {
            net: 5,
            mac: vec![0x0a],
        }),
    };
    // the responder only answers requests addressed to DNET 5 / DADR 0a
    serve(router.clone(), r.clone());
    router.send_to(&r.i_am(), warden).await.unwrap();
    let a = next_announce(&mut h).await;
    let id = DeviceId::new("bacnet", "5-4242").unwrap();
    assert_eq!(a.device, Some(id.clone()));
    assert_eq!(detail(&a, "network"), "5");
    assert_eq!(detail(&a, "object_list"), "3 objects, 2 mapped to points");

    // an input is read-only: refused without a request on the wire
    h.downlinks
        .send(Downlink {
            command_id: "c1".into(),
            device: id.clone(),
            command: Command {
                name: "write_t1".into(),
                args: vec![Point::new("value", Value::Float(1.0))],
            },
            principal: "test".into(),
            min_assurance: warden_core::Assurance::None,
        })
        .await
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(AdapterEvent::CommandResult(r)) = h.events.recv().await {
                return r;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(&res.outcome, CommandOutcome::Denied(d) if d.contains("read-only")),
        "{res:?}"
    );
    let _ = h.shutdown.send(true);
}
