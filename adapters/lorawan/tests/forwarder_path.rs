//! A forwarder's downlink path (issue 15's regression): a PULL_DATA claiming a live forwarder's
//! gateway EUI from another address must not redirect its downlinks, unless the operator allows
//! roaming; either way it is audited. Raw Semtech UDP datagrams on loopback against the adapter
//! running in-process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use warden_core::testing::{MemoryState as Mem, StaticCredentials as Creds};
use warden_core::{AdapterContext, AdapterEvent, LinkState};
use warden_lorawan::gwmp::{self, PushBody, RxPk};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};

const EUI: u64 = 0xaa55_5a00_0000_0003;
const NWK: Key = Key([1; 16]);
const APP: Key = Key([2; 16]);
const ADDR: u32 = 0x01ab_cdef;

struct Rig {
    port: u16,
    events: mpsc::Receiver<AdapterEvent>,
    _stop: watch::Sender<bool>,
}

async fn start(roaming: bool) -> Rig {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let cfg: toml::Value = toml::from_str(&format!(
        "bind = \"127.0.0.1:{port}\"\nforwarders = [\"{EUI:016x}\"]\ndedup_ms = 10\n\
         forwarder_roaming = {roaming}\n\
         [devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n[default_model]\ndecoder = \"raw\"\n"
    ))
    .unwrap();
    let adapter = warden_lorawan::build(&cfg).unwrap();
    let mut c = Creds::default();
    let id = "lorawan:0004a30b001c0531".to_string();
    c.0.insert((id.clone(), "dev_addr".into()), ADDR.to_be_bytes().to_vec());
    c.0.insert((id.clone(), "nwk_s_key".into()), NWK.0.to_vec());
    c.0.insert((id, "app_s_key".into()), APP.0.to_vec());
    let (ev_tx, events) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(adapter.run(AdapterContext {
        events: ev_tx,
        downlinks: mpsc::channel(1).1,
        credentials: Arc::new(c),
        operations: mpsc::channel(1).1,
        state: Arc::new(Mem::default()),
        shutdown: stop_rx,
    }));
    Rig {
        port,
        events,
        _stop: stop,
    }
}

async fn event(rig: &mut Rig, what: &str, pred: impl Fn(&AdapterEvent) -> bool) -> AdapterEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = rig.events.recv().await.expect("adapter stopped");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn pull_data(token: u16) -> Vec<u8> {
    let mut d = vec![gwmp::VERSION];
    d.extend_from_slice(&token.to_be_bytes());
    d.push(gwmp::PULL_DATA);
    d.extend_from_slice(&EUI.to_be_bytes());
    d
}

/// A confirmed uplink (the network server must answer with an ACK downlink).
fn confirmed_up(fcnt: u32, token: u16) -> Vec<u8> {
    let phy = phy::build_data(
        Dir::Up,
        &NWK,
        &APP,
        ADDR,
        fcnt,
        &DataSpec {
            confirmed: true,
            fport: Some(1),
            payload: vec![1],
            ..Default::default()
        },
    )
    .unwrap();
    use base64::Engine as _;
    let rxpk: RxPk = serde_json::from_value(serde_json::json!({
        "tmst": 1_000_000u32, "freq": 868.1, "datr": "SF7BW125", "rssi": -50, "lsnr": 5.5,
        "stat": 1, "modu": "LORA", "size": phy.len(),
        "data": base64::engine::general_purpose::STANDARD.encode(&phy),
    }))
    .unwrap();
    gwmp::push_data(
        token,
        EUI,
        &PushBody {
            rxpk: vec![rxpk],
            stat: None,
        },
    )
}

/// The next datagram of this kind on the socket, or None within `wait`.
async fn recv_kind(s: &UdpSocket, kind: u8, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(wait, async {
        loop {
            // a datagram sent before the adapter bound its port comes back as ICMP port
            // unreachable, reported on this connected socket's next receive: not a reply
            let n = match s.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => panic!("receive: {e}"),
            };
            if n >= 4 && buf[3] == kind {
                return buf[..n].to_vec();
            }
        }
    })
    .await
    .ok()
}

/// PULL_DATA with `token` until the adapter acknowledges one (it may not have bound its port yet
/// when the test starts sending).
async fn pull_until_acked(s: &UdpSocket, token: u16) {
    for _ in 0..50 {
        s.send(&pull_data(token)).await.unwrap();
        if recv_kind(s, gwmp::PULL_ACK, Duration::from_millis(200))
            .await
            .is_some()
        {
            return;
        }
    }
    panic!("no PULL_ACK for PULL_DATA {token} within 10 s");
}

async fn forwarder(port: u16) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(("127.0.0.1", port)).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_pull_data_cannot_take_a_live_forwarders_downlinks() {
    let mut rig = start(false).await;
    let real = forwarder(rig.port).await;
    let spoof = forwarder(rig.port).await;
    pull_until_acked(&real, 1).await;
    event(
        &mut rig,
        "forwarder up",
        |e| matches!(e, AdapterEvent::Health(h) if h.state == LinkState::Up),
    )
    .await;

    // the spoofer claims the EUI from its own address, again and again: refused, audited once a
    // minute, never acknowledged
    for t in 2..10 {
        spoof.send(&pull_data(t)).await.unwrap();
    }
    let ev = event(
        &mut rig,
        "the move refused",
        |e| matches!(e, AdapterEvent::Rejected(r) if r.cause == "forwarder-moved"),
    )
    .await;
    let AdapterEvent::Rejected(r) = ev else {
        unreachable!()
    };
    assert!(r.device.is_none());
    assert!(r.detail.contains(&format!("{EUI:016x}")), "{}", r.detail);

    // a confirmed uplink: the ACK downlink goes to the real forwarder (positive control), not
    // to the spoofer
    real.send(&confirmed_up(1, 20)).await.unwrap();
    let resp = recv_kind(&real, gwmp::PULL_RESP, Duration::from_secs(10)).await;
    assert!(resp.is_some(), "the real forwarder got no PULL_RESP");
    assert!(
        recv_kind(&spoof, gwmp::PULL_RESP, Duration::from_millis(200))
            .await
            .is_none(),
        "the spoofer got a downlink"
    );
    assert!(
        recv_kind(&spoof, gwmp::PULL_ACK, Duration::from_millis(50))
            .await
            .is_none(),
        "the spoofer's PULL_DATA was acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_roaming_allowed_the_path_moves_and_the_move_is_audited() {
    let mut rig = start(true).await;
    let first = forwarder(rig.port).await;
    let second = forwarder(rig.port).await;
    pull_until_acked(&first, 1).await;
    pull_until_acked(&second, 2).await;
    let ev = event(
        &mut rig,
        "the move audited",
        |e| matches!(e, AdapterEvent::Notice(n) if n.kind == "forwarder-moved"),
    )
    .await;
    let AdapterEvent::Notice(h) = ev else {
        unreachable!()
    };
    assert!(h.detail.contains("downlink path moved"), "{}", h.detail);
    assert!(h.detail.contains("roaming allowed"), "{}", h.detail);
    second.send(&confirmed_up(1, 20)).await.unwrap();
    assert!(
        recv_kind(&second, gwmp::PULL_RESP, Duration::from_secs(10))
            .await
            .is_some()
    );
}
