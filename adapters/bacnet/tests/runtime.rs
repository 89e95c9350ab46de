//! The adapter's run loop against sockets the test holds: foreign-device registration with a
//! BBMD, a device found through a Forwarded-NPDU (interviewed at its origin address, not the
//! BBMD's), a device behind a router (identity from its SNET, requests addressed through the
//! router with DNET/DADR), a downlink refused before sending, and an object search (Who-Has)
//! answered by I-Haves from a socket the test holds; a stop in the middle of an interview.
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
    ops: mpsc::Sender<warden_core::Operation>,
    shutdown: watch::Sender<bool>,
}

async fn start(extra: &str) -> (Harness, SocketAddr) {
    start_with(500, extra).await
}

async fn start_with(apdu_timeout_ms: u32, extra: &str) -> (Harness, SocketAddr) {
    // a free port on 127.0.0.1 for Warden
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bind = probe.local_addr().unwrap();
    drop(probe);
    let cfg = format!(
        "bind = \"{bind}\"\nbroadcast = \"127.255.255.255:{}\"\nlisten_broadcast = false\n\
         discover_on_start = false\napdu_timeout_ms = {apdu_timeout_ms}\nretries = 1\n\
         cov = \"unconfirmed\"\n{extra}",
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
            ops: op_tx,
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
            security: Vec::new(),
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

/// The next APDU Warden sends to `sock`: (service, parameters) of an unconfirmed request.
async fn next_unconfirmed(sock: &UdpSocket) -> (u8, Vec<u8>) {
    use warden_bacnet::{apdu, npdu};
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("a datagram from Warden")
            .unwrap();
        let b = bvlc::decode(&buf[..n]).unwrap();
        let np = npdu::decode(b.npdu().unwrap()).unwrap();
        let npdu::Body::Apdu(a) = np.body else {
            continue;
        };
        if let apdu::Apdu::Unconfirmed { service, data } = apdu::decode(a).unwrap() {
            return (service, data.to_vec());
        }
    }
}

#[tokio::test]
async fn an_object_search_reports_each_answering_i_have_once() {
    use warden_bacnet::apdu::Apdu;
    use warden_bacnet::services::{self, HasTarget, IHave, unconfirmed};
    use warden_bacnet::tag::ObjectId;
    use warden_bacnet::testing::datagram;
    use warden_core::{OperationRequest, OperationState, ProgressSender};

    let dev = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut h, warden) = start(&format!("devices = [\"{}\"]", dev.local_addr().unwrap())).await;
    let (progress, mut rx) = ProgressSender::channel();
    h.ops
        .send(warden_core::Operation {
            id: "op-1".into(),
            request: OperationRequest::Scan {
                seconds: 2,
                has: Some("Zone Temp".into()),
            },
            principal: "test".into(),
            progress,
        })
        .await
        .unwrap();
    // the directed Who-Has (after the start-up Who-Is), by name, without a device range
    let (service, data) = next_unconfirmed(&dev).await;
    assert_eq!(service, unconfirmed::WHO_IS);
    assert_eq!(services::decode_who_is(&data).unwrap(), None);
    let (service, data) = next_unconfirmed(&dev).await;
    assert_eq!(service, unconfirmed::WHO_HAS);
    assert_eq!(
        services::decode_who_has(&data).unwrap(),
        (None, HasTarget::Name("Zone Temp".into()))
    );
    let i_have = |device: u32, object: ObjectId, name: &str| {
        datagram(
            &Apdu::Unconfirmed {
                service: unconfirmed::I_HAVE,
                data: &services::i_have(&IHave {
                    device: ObjectId::new(8, device),
                    object,
                    name: name.into(),
                }),
            },
            None,
        )
    };
    let av1 = ObjectId::new(2, 1);
    // the answer twice (reported once), an I-Have for another name (not a finding), garbage
    for d in [
        i_have(4711, av1, "Zone Temp"),
        i_have(4711, av1, "Zone Temp"),
        i_have(4712, av1, "Other"),
        vec![0x81, 0x0a, 0x00, 0x08, 0x01, 0x00, 0x10, 0x01],
    ] {
        dev.send_to(&d, warden).await.unwrap();
    }
    // a device Warden does not know: asked for its I-Am by a directed Who-Is for its instance
    let (service, data) = next_unconfirmed(&dev).await;
    assert_eq!(service, unconfirmed::WHO_IS);
    assert_eq!(services::decode_who_is(&data).unwrap(), Some((4711, 4711)));
    let p = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| p.state.is_final()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(p.state, OperationState::Done, "{p:?}");
    assert_eq!(p.devices_seen, 1, "{p:?}");
    assert!(
        p.detail.contains("1 device has `Zone Temp`"),
        "{}",
        p.detail
    );
    assert_eq!(p.devices.len(), 1, "{p:?}");
    assert_eq!(p.devices[0].device.to_string(), "bacnet:0-4711");
    assert!(
        p.devices[0]
            .state
            .starts_with("has analog-value:1 `Zone Temp` (I-Have from 127.0.0.1:"),
        "{}",
        p.devices[0].state
    );
    // the I-Have without parameters was refused with a typed error, not dropped silently
    let mut refused = None;
    while let Ok(ev) = h.events.try_recv() {
        if let AdapterEvent::Rejected(r) = ev
            && r.detail.starts_with("I-Have from")
        {
            refused = Some(r);
        }
    }
    let r = refused.expect("the empty I-Have refused");
    assert_eq!(r.cause, "bad-length", "{r:?}");
    let _ = h.shutdown.send(true);
}

/// A stop while a device that never answers is being interviewed: the adapter lets go of the
/// pipeline's channel at once, not after the interview's timeouts and retries (60 s here).
#[tokio::test]
async fn a_stop_in_the_middle_of_an_interview_releases_the_pipeline_channel() {
    let (mut h, warden) = start_with(30_000, "").await;
    let dev = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r = Responder {
        instance: 4242,
        objects: 1,
        routed: None,
    };
    dev.send_to(&r.i_am(), warden).await.unwrap();
    // the interview's first request reaches the mute device: the interview is under way
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), dev.recv_from(&mut buf))
        .await
        .expect("an interview request")
        .unwrap();
    assert_eq!(from, warden);
    let b = bvlc::decode(&buf[..n]).unwrap();
    let np = warden_bacnet::npdu::decode(b.npdu().unwrap()).unwrap();
    let warden_bacnet::npdu::Body::Apdu(a) = np.body else {
        panic!("not an APDU")
    };
    assert!(matches!(
        warden_bacnet::apdu::decode(a).unwrap(),
        warden_bacnet::apdu::Apdu::Confirmed { .. }
    ));
    let _ = h.shutdown.send(true);
    // every sender gone: the channel ends (with the bug, only after the 30 s timeouts)
    tokio::time::timeout(Duration::from_secs(10), async {
        while h.events.recv().await.is_some() {}
    })
    .await
    .expect("the adapter released its event channel after the stop");
}
