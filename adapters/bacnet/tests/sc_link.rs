//! The BACnet/SC hub connection against a hub the test runs itself (tokio-rustls +
//! tokio-tungstenite, certificates made by rcgen): the Connect-Request Warden sends, heartbeats
//! both ways, a Disconnect-Request from the hub followed by a reconnection, a silent hub dropped
//! after an unanswered Heartbeat-Request, a duplicate-VMAC NAK and a hub that does not agree to
//! the subprotocol — each with the exact status or error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use warden_bacnet::bvlc_sc::{self, Body, ConnectInfo, Message, Nak, Vmac};
use warden_bacnet::config::{HubUri, ScConfig};
use warden_bacnet::sc::{self, ScError, ScLink, Status};
use warden_bacnet::transport::{self, Event, Net, ScPort};

const T: Duration = Duration::from_secs(10);
const WARDEN: Vmac = Vmac([2, 0, 0, 0, 0, 0x0a]);
const HUB: Vmac = Vmac([2, 0, 0, 0, 0, 1]);

struct Pki {
    _dir: tempfile::TempDir,
    cfg: ScConfig,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_p.distinguished_name.push(DnType::CommonName, "test CA");
    ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_k = KeyPair::generate().unwrap();
    let ca = ca_p.self_signed(&ca_k).unwrap();
    let issuer = rcgen::Issuer::new(ca_p, &ca_k);
    let leaf = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let k = KeyPair::generate().unwrap();
        (p.signed_by(&k, &issuer).unwrap(), k)
    };
    let (hub, hub_k) = leaf(vec!["127.0.0.1".into()], "test hub");
    let (warden, warden_k) = leaf(vec![], "warden");
    let w = |name: &str, s: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let key = w("warden.key", warden_k.serialize_pem());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = ScConfig {
        hub: "wss://127.0.0.1:1".into(),
        failover_hub: None,
        ca: w("ca.crt", ca.pem()),
        cert: w("warden.crt", warden.pem()),
        key,
        vmac: None,
        uuid: None,
        network: 0,
        heartbeat_s: 60,
        connect_timeout_ms: 5_000,
        reconnect_min_ms: 100,
        reconnect_max_ms: 200,
        discover_on_connect: false,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(hub.der().to_vec())],
            PrivateKeyDer::Pkcs8(hub_k.serialize_der().into()),
        )
        .unwrap();
    Pki {
        _dir: dir,
        cfg,
        server: Arc::new(server),
    }
}

type HubWs = WebSocketStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

/// Accepts one node: TLS with its certificate checked, the WebSocket upgrade (agreeing to the hub
/// subprotocol when `agree`).
async fn accept(l: &TcpListener, server: &Arc<rustls::ServerConfig>, agree: bool) -> HubWs {
    let (tcp, _) = l.accept().await.unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server.clone())
        .accept(tcp)
        .await
        .unwrap();
    tokio_tungstenite::accept_hdr_async(tls, move |req: &Request, mut resp: Response| {
        let asked = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            == Some(sc::HUB_SUBPROTOCOL);
        if agree && asked {
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                sc::HUB_SUBPROTOCOL.parse().unwrap(),
            );
        }
        Ok(resp)
    })
    .await
    .unwrap()
}

async fn recv(ws: &mut HubWs) -> Vec<u8> {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Ws::Binary(b))) => return b.to_vec(),
            Some(Ok(_)) => continue,
            other => panic!("hub: {other:?}"),
        }
    }
}

async fn send(ws: &mut HubWs, m: Message<'_>) {
    ws.send(Ws::Binary(bvlc_sc::encode(&m).into()))
        .await
        .unwrap();
}

fn plain(message_id: u16, body: Body<'_>) -> Message<'_> {
    Message {
        message_id,
        origin: None,
        destination: None,
        body,
    }
}

/// Reads the Connect-Request and answers Connect-Accept; returns the request's parameters.
async fn handshake(ws: &mut HubWs) -> (u16, ConnectInfo) {
    let b = recv(ws).await;
    let m = bvlc_sc::decode(&b).unwrap();
    let Body::ConnectRequest(info) = m.body else {
        panic!("{m:?}")
    };
    let accept = ConnectInfo {
        vmac: HUB,
        uuid: [7; 16],
        max_bvlc: 6000,
        max_npdu: 1497,
    };
    send(ws, plain(m.message_id, Body::ConnectAccept(accept))).await;
    (m.message_id, info)
}

struct Node {
    events: mpsc::Receiver<Event>,
    _stop: watch::Sender<bool>,
}

impl Node {
    async fn status(&mut self) -> Status {
        loop {
            match tokio::time::timeout(T, self.events.recv()).await.unwrap() {
                Some(Event::Sc(s)) => return s,
                Some(_) => continue,
                None => panic!("the link task ended"),
            }
        }
    }
}

fn start(pki: &Pki, hubs: Vec<String>, heartbeat: Duration) -> Node {
    let (sock, _) = transport::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let (out_tx, out_rx) = mpsc::channel(16);
    let port = Arc::new(ScPort::new(out_tx));
    let net = Arc::new(Net::new(sock, 1 << 16).unwrap().with_sc(port.clone()));
    let (ev_tx, events) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    let link = ScLink {
        hubs: hubs.iter().map(|h| HubUri::parse(h).unwrap()).collect(),
        tls: sc::tls_config(&pki.cfg).unwrap(),
        vmac: WARDEN,
        uuid: [9; 16],
        heartbeat,
        connect_timeout: Duration::from_secs(5),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(200),
        port,
        net,
        events: ev_tx,
    };
    tokio::spawn(link.run(out_rx, stop_rx));
    Node {
        events,
        _stop: stop,
    }
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("wss://127.0.0.1:{}", l.local_addr().unwrap().port());
    (l, uri)
}

#[tokio::test]
async fn connect_heartbeats_and_a_hub_disconnect_then_reconnect() {
    let pki = pki();
    let (l, uri) = listener().await;
    let mut node = start(&pki, vec![uri.clone()], Duration::from_secs(30));
    let mut ws = accept(&l, &pki.server, true).await;
    let (_, info) = handshake(&mut ws).await;
    assert_eq!(
        (info.vmac, info.uuid, info.max_bvlc, info.max_npdu),
        (WARDEN, [9; 16], sc::MAX_BVLC, sc::MAX_NPDU)
    );
    let Status::Up {
        hub,
        failover,
        subject,
        ..
    } = node.status().await
    else {
        panic!()
    };
    assert_eq!((hub.as_str(), failover), (uri.as_str(), false));
    assert_eq!(subject, "CN=test hub");
    // the hub's Heartbeat-Request is answered with the same message id
    send(&mut ws, plain(0x1234, Body::HeartbeatRequest)).await;
    assert_eq!(
        bvlc_sc::decode(&recv(&mut ws).await).unwrap(),
        plain(0x1234, Body::HeartbeatAck)
    );
    // an Address-Resolution is NAKed: Warden accepts no direct connections
    send(
        &mut ws,
        Message {
            message_id: 5,
            origin: Some(Vmac([2, 0, 0, 0, 0, 0x33])),
            destination: None,
            body: Body::AddressResolution,
        },
    )
    .await;
    let b = recv(&mut ws).await;
    let m = bvlc_sc::decode(&b).unwrap();
    assert!(
        matches!(
            m.body,
            Body::Result {
                function: bvlc_sc::func::ADDRESS_RESOLUTION,
                nak: Some(Nak {
                    class: 7,
                    code: 45,
                    ..
                })
            }
        ),
        "{m:?}"
    );
    // Disconnect-Request: acknowledged, reported down, and Warden comes back
    send(&mut ws, plain(77, Body::DisconnectRequest)).await;
    assert_eq!(
        bvlc_sc::decode(&recv(&mut ws).await).unwrap(),
        plain(77, Body::DisconnectAck)
    );
    let Status::Down { detail, error } = node.status().await else {
        panic!()
    };
    assert!(detail.contains("Disconnect-Request"), "{detail}");
    assert_eq!(error, None);
    let mut ws = accept(&l, &pki.server, true).await;
    handshake(&mut ws).await;
    assert!(matches!(node.status().await, Status::Up { .. }));
}

#[tokio::test]
async fn an_idle_link_sends_a_heartbeat_and_drops_a_silent_hub() {
    let pki = pki();
    let (l, uri) = listener().await;
    let mut node = start(&pki, vec![uri], Duration::from_millis(300));
    let mut ws = accept(&l, &pki.server, true).await;
    handshake(&mut ws).await;
    assert!(matches!(node.status().await, Status::Up { .. }));
    let b = recv(&mut ws).await;
    let m = bvlc_sc::decode(&b).unwrap();
    assert_eq!(m.body, Body::HeartbeatRequest);
    // no answer: after twice the heartbeat time the connection is dropped
    let Status::Down { detail, .. } = node.status().await else {
        panic!()
    };
    assert!(
        detail.contains("no answer to a Heartbeat-Request"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_duplicate_vmac_nak_and_a_missing_subprotocol_are_typed_refusals() {
    let pki = pki();
    let (l, uri) = listener().await;
    let (l2, uri2) = listener().await;
    // primary NAKs the Connect-Request; the failover does not agree to the subprotocol
    let mut node = start(&pki, vec![uri, uri2], Duration::from_secs(30));
    let mut ws = accept(&l, &pki.server, true).await;
    let b = recv(&mut ws).await;
    let id = bvlc_sc::decode(&b).unwrap().message_id;
    let nak = Nak {
        header_marker: 0,
        class: 7,
        code: bvlc_sc::error_code::NODE_DUPLICATE_VMAC,
        details: "in use".into(),
    };
    send(
        &mut ws,
        plain(
            id,
            Body::Result {
                function: bvlc_sc::func::CONNECT_REQUEST,
                nak: Some(nak.clone()),
            },
        ),
    )
    .await;
    let Status::Down { error, detail } = node.status().await else {
        panic!()
    };
    assert_eq!(error, Some(ScError::Refused(nak)), "{detail}");
    assert_eq!(error.and_then(|e| e.cause()), Some("connect-refused"));
    let _ws2 = accept(&l2, &pki.server, false).await;
    let Status::Down { error, .. } = node.status().await else {
        panic!()
    };
    assert_eq!(error, Some(ScError::Subprotocol));
}

#[test]
fn a_key_others_can_read_is_refused() {
    let pki = pki();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pki.cfg.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = sc::tls_config(&pki.cfg).unwrap_err();
    assert!(matches!(e, ScError::Setup(_)), "{e}");
    assert!(e.to_string().contains("BACnet/SC private key"), "{e}");
}

#[tokio::test]
async fn on_the_failover_hub_the_primary_is_tried_again_and_taken_back() {
    let pki = pki();
    // the primary's port, closed for now
    let primary_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let primary = format!("wss://127.0.0.1:{primary_port}");
    let (l2, failover) = listener().await;
    let mut node = start(
        &pki,
        vec![primary.clone(), failover.clone()],
        Duration::from_secs(30),
    );
    let Status::Down { detail, .. } = node.status().await else {
        panic!()
    };
    assert!(detail.starts_with("primary hub"), "{detail}");
    let mut fws = accept(&l2, &pki.server, true).await;
    handshake(&mut fws).await;
    let Status::Up {
        hub, failover: f, ..
    } = node.status().await
    else {
        panic!()
    };
    assert_eq!((hub.as_str(), f), (failover.as_str(), true));
    // the primary comes back: Warden connects to it and leaves the failover hub
    let l = TcpListener::bind(("127.0.0.1", primary_port))
        .await
        .unwrap();
    let mut pws = accept(&l, &pki.server, true).await;
    handshake(&mut pws).await;
    let Status::Up {
        hub, failover: f, ..
    } = node.status().await
    else {
        panic!()
    };
    assert_eq!((hub.as_str(), f), (primary.as_str(), false));
    let b = recv(&mut fws).await;
    assert_eq!(bvlc_sc::decode(&b).unwrap().body, Body::DisconnectRequest);
    // and it is served: a heartbeat on the primary is answered
    send(&mut pws, plain(9, Body::HeartbeatRequest)).await;
    let b = recv(&mut pws).await;
    assert_eq!(bvlc_sc::decode(&b).unwrap(), plain(9, Body::HeartbeatAck));
}
