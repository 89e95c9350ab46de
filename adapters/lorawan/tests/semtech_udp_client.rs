//! The `semtech-udp` crate's client runtime (a third-party packet-forwarder implementation) talks
//! to the adapter on loopback: PULL_DATA keep-alives, a JoinRequest in PUSH_DATA, Warden's
//! JoinAccept in PULL_RESP (TX_ACKed by the client), then an uplink with the derived keys that comes
//! out as an authenticated, decoded message. The adapter runs in-process with in-memory credentials
//! and state, so this test needs no gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use semtech_udp::client_runtime::{Event, UdpRuntime};
use semtech_udp::push_data::{self, CRC, RxPk, RxPkV1};
use semtech_udp::{Bandwidth, CodingRate, DataRate, MacAddress, Modulation, SpreadingFactor};
use tokio::sync::{mpsc, watch};
use warden_core::testing::{MemoryState as Mem, StaticCredentials as Creds};
use warden_core::{AdapterContext, AdapterEvent, Assurance, LinkState, Value};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};

const APP_KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];
/// lora-packet's JoinRequest for the test keys, DevNonce 0x1234.
const JOIN_REQUEST: &str = "00010000d07ed5b37030051c000ba3040034124f5ca349";

fn rxpk(data: Vec<u8>, tmst: u32) -> RxPk {
    RxPk::V1(RxPkV1 {
        chan: 0,
        codr: Some(CodingRate::_4_5),
        size: data.len() as u64,
        data,
        datr: DataRate::new(SpreadingFactor::_7, Bandwidth::_125KHz),
        freq: 868.1,
        lsnr: 9.5,
        modu: Modulation::LORA,
        rfch: 0,
        rssi: -60,
        rssis: None,
        stat: CRC::OK,
        tmst,
        time: None,
    })
}

async fn next_event(
    rx: &mut mpsc::Receiver<AdapterEvent>,
    what: &str,
    pred: impl Fn(&AdapterEvent) -> bool,
) -> AdapterEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = rx.recv().await.expect("adapter stopped");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semtech_udp_client_joins_and_sends_an_uplink() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let gw = [0xaa, 0x55, 0x5a, 0, 0, 0, 0, 2];
    let cfg: toml::Value = toml::from_str(&format!(
        "bind = \"127.0.0.1:{port}\"\nforwarders = [\"aa555a0000000002\"]\ndedup_ms = 20\n"
    ))
    .unwrap();
    let adapter = warden_lorawan::build(&cfg).unwrap();
    let mut creds = Creds::default();
    creds.0.insert(
        ("lorawan:0004a30b001c0530".into(), "app_key".into()),
        APP_KEY.to_vec(),
    );
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let (_dl_tx, dl_rx) = mpsc::channel(8);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(adapter.run(AdapterContext {
        events: ev_tx,
        downlinks: dl_rx,
        credentials: Arc::new(creds),
        operations: tokio::sync::mpsc::channel(1).1,
        state: Arc::new(Mem::default()),
        shutdown: stop_rx,
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mac = MacAddress::from(gw);
    let (shut_trigger, shut_signal) = triggered::trigger();
    let (uplinks, mut client_events, runtime) =
        UdpRuntime::new(mac, format!("127.0.0.1:{port}").as_str())
            .await
            .unwrap();
    let client = tokio::spawn(runtime.run(shut_signal));
    next_event(
        &mut ev_rx,
        "forwarder up",
        |e| matches!(e, AdapterEvent::Health(h) if h.state == LinkState::Up),
    )
    .await;

    // join
    let jr = hex::decode(JOIN_REQUEST).unwrap();
    uplinks
        .send(push_data::Packet::from_rxpk(mac, rxpk(jr, 5_000_000)))
        .await
        .unwrap();
    let ja = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client_events.recv().await {
                Some(Event::DownlinkRequest(req)) => {
                    let data = req.txpk().data.as_ref().to_vec();
                    req.ack().await.unwrap();
                    return data;
                }
                Some(_) => continue,
                None => panic!("client stopped"),
            }
        }
    })
    .await
    .expect("JoinAccept through the semtech-udp client");
    let key = Key(APP_KEY);
    let acc = phy::open_join_accept(&key, &ja).expect("JoinAccept MIC");
    let (nwk, app) = phy::derive_session_keys(&key, acc.app_nonce, acc.net_id, 0x1234).unwrap();

    // uplink with the derived keys: Cayenne LPP temperature 21.5 on FPort 1
    let up = phy::build_data(
        Dir::Up,
        &nwk,
        &app,
        acc.dev_addr,
        0,
        &DataSpec {
            fport: Some(1),
            payload: vec![0x01, 0x67, 0x00, 0xd7],
            ..Default::default()
        },
    )
    .unwrap();
    uplinks
        .send(push_data::Packet::from_rxpk(mac, rxpk(up, 9_000_000)))
        .await
        .unwrap();
    let ev = next_event(&mut ev_rx, "uplink", |e| {
        matches!(e, AdapterEvent::Uplink(_))
    })
    .await;
    let AdapterEvent::Uplink(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.device.to_string(), "lorawan:0004a30b001c0530");
    assert_eq!(m.assurance, Assurance::SharedKey);
    assert!(m.fresh);
    assert_eq!(m.points[0].name, "temperature_1");
    assert_eq!(m.points[0].value, Value::Float(21.5));
    assert_eq!(m.link.rssi, Some(-60.0));

    shut_trigger.trigger();
    let _ = client.await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
