//! The BACnet/SC datalink (Annex AB) as a node: one WebSocket over TLS 1.3 to the primary hub,
//! or to the failover hub when the primary cannot be reached, with mutual certificate
//! authentication against the configured CA. Connect-Request/Accept, Heartbeat-Request/ACK when
//! the connection is idle, Disconnect both ways, reconnection with a doubling backoff, and back to
//! the primary hub once it accepts again.
//! Encapsulated-NPDUs go to [`Net::handle_sc`] — the same network layer BACnet/IP feeds — so
//! every service runs unchanged over either datalink.
//!
//! Libraries: rustls (ring provider, TLS 1.3 only) + tokio-rustls for TLS, tokio-tungstenite
//! (handshake feature only: no TLS or connect of its own) for the WebSocket framing; the BVLC-SC
//! codec is [`crate::bvlc_sc`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::bvlc_sc::{self, Body, ConnectInfo, Message, Nak, Vmac, error_code};
use crate::config::{HubUri, ScConfig};
use crate::error::DecodeError;
use crate::transport::{Event, Net, ScPort};

/// The WebSocket subprotocol of a hub connection (AB.7.1).
pub const HUB_SUBPROTOCOL: &str = "hub.bsc.bacnet.org";
/// Warden's largest BVLC-SC message and NPDU, announced in Connect-Request.
pub const MAX_BVLC: u16 = 1600;
pub const MAX_NPDU: u16 = 1497;
/// Incoming WebSocket messages larger than this are refused by the WebSocket layer.
const MAX_INCOMING: usize = 64 * 1024;
/// Error code `optional-functionality-not-supported`.
const OPTIONAL_FUNCTIONALITY_NOT_SUPPORTED: u16 = 45;

type Ws = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
/// A connected hub: the WebSocket, the hub certificate's subject, its Connect-Accept.
type Connected = (Ws, String, ConnectInfo);

/// How serving one hub connection ended.
enum End {
    Closed(String),
    /// On the failover hub, the primary accepted again: switch to it.
    Failback(Box<Connected>, Duration),
}

/// A connection attempt to the primary hub running beside the failover connection.
type Probe<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Connected, ScError>> + Send + 'a>>;

/// Why a hub connection could not be made or ended.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScError {
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("the hub's certificate was refused: {0}")]
    HubCertificate(String),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("the hub refused Warden's certificate (TLS alert {0})")]
    ClientCertificateRefused(String),
    #[error(
        "the hub closed the connection during the WebSocket upgrade, right after TLS: it did not accept Warden's certificate ({0})"
    )]
    ClosedAfterTls(String),
    #[error("WebSocket upgrade: {0}")]
    Upgrade(String),
    #[error("the hub did not agree to the subprotocol {HUB_SUBPROTOCOL}")]
    Subprotocol,
    #[error("the hub refused Connect-Request: error class {}, code {} {}", .0.class, .0.code, .0.details)]
    Refused(Nak),
    #[error("bad BVLC-SC from the hub: {0}")]
    Decode(DecodeError),
    #[error("the hub answered Connect-Request with function {0:#04x}")]
    UnexpectedAnswer(u8),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl ScError {
    /// The audit cause when this is a refusal worth a record (certificates, bad messages).
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            Self::HubCertificate(_) => Some("bad-certificate"),
            Self::ClientCertificateRefused(_) | Self::ClosedAfterTls(_) => {
                Some("certificate-refused-by-hub")
            }
            Self::Refused(_) => Some("connect-refused"),
            Self::Decode(e) => Some(e.cause()),
            _ => None,
        }
    }
}

/// Builds the TLS 1.3 client configuration: the CA as the only trust anchor, Warden's
/// certificate chain and key (the key file must be readable by its owner only).
pub fn tls_config(sc: &ScConfig) -> Result<Arc<rustls::ClientConfig>, ScError> {
    let setup = |m: String| ScError::Setup(m);
    let read = |p: &std::path::Path, what: &'static str| {
        warden_core::files::read(p, 1 << 20, what).map_err(|e| setup(e.to_string()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(&read(&sc.ca, "BACnet/SC CA")?) {
        let der = der.map_err(|e| setup(format!("{}: {e}", sc.ca.display())))?;
        roots
            .add(der)
            .map_err(|e| setup(format!("{}: {e}", sc.ca.display())))?;
    }
    if roots.is_empty() {
        return Err(setup(format!("{}: no certificate", sc.ca.display())));
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&sc.cert, "BACnet/SC certificate")?)
            .collect::<Result<_, _>>()
            .map_err(|e| setup(format!("{}: {e}", sc.cert.display())))?;
    if chain.is_empty() {
        return Err(setup(format!("{}: no certificate", sc.cert.display())));
    }
    let key_pem = warden_core::files::read_secret(&sc.key, 1 << 16, "BACnet/SC private key")
        .map_err(|e| setup(e.to_string()))?;
    // the key's bytes never appear in an error: only its path
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| setup(format!("{}: no usable private key", sc.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| setup(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Random octets from the TLS provider's generator.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b);
    b
}

/// A random VMAC with the locally administered bit set (AB.1.5.2).
pub fn random_vmac() -> Vmac {
    let mut v: [u8; 6] = random();
    v[0] = (v[0] & 0xf0) | 0x02;
    Vmac(v)
}

/// A random version-4 UUID.
pub fn random_uuid() -> [u8; 16] {
    let mut u: [u8; 16] = random();
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// What the runtime learns from the hub connection (sent as [`Event`]s).
#[derive(Debug, Clone)]
pub enum Status {
    Up {
        hub: String,
        failover: bool,
        subject: String,
        vmac: Vmac,
        took: Duration,
    },
    Down {
        detail: String,
        error: Option<ScError>,
    },
}

/// Everything one hub connection task needs.
pub struct ScLink {
    pub hubs: Vec<HubUri>,
    pub tls: Arc<rustls::ClientConfig>,
    pub vmac: Vmac,
    pub uuid: [u8; 16],
    pub heartbeat: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub port: Arc<ScPort>,
    pub net: Arc<Net>,
    pub events: mpsc::Sender<Event>,
}

fn subject_of(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => c.subject().to_string(),
        Err(_) => "(unparsable certificate)".into(),
    }
}

fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// Sorts a failed TLS handshake into the hub's certificate being refused or anything else.
fn tls_failure(e: std::io::Error) -> ScError {
    match rustls_error(&e) {
        Some(rustls::Error::InvalidCertificate(c)) => ScError::HubCertificate(format!("{c:?}")),
        Some(rustls::Error::AlertReceived(a)) => {
            ScError::ClientCertificateRefused(format!("{a:?}"))
        }
        _ => ScError::Tls(e.to_string()),
    }
}

/// Sorts a failed WebSocket upgrade: in TLS 1.3 the server checks the client's certificate after
/// the client's handshake finished, so a refusal shows here, as an alert or a closed stream.
fn upgrade_failure(e: tungstenite::Error) -> ScError {
    match e {
        tungstenite::Error::Io(io) => match rustls_error(&io) {
            Some(rustls::Error::AlertReceived(a)) => {
                ScError::ClientCertificateRefused(format!("{a:?}"))
            }
            _ if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) =>
            {
                ScError::ClosedAfterTls(io.kind().to_string())
            }
            _ => ScError::Upgrade(io.to_string()),
        },
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => ScError::ClosedAfterTls("connection closed".into()),
        // tungstenite checks the subprotocol answer itself
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(_),
        ) => ScError::Subprotocol,
        e => ScError::Upgrade(e.to_string()),
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_INCOMING))
        .max_frame_size(Some(MAX_INCOMING))
}

/// TCP, TLS 1.3, the WebSocket upgrade with the hub subprotocol, then Connect-Request →
/// Connect-Accept. Returns the connection, the hub certificate's subject and the hub's limits.
pub async fn connect(
    hub: &HubUri,
    tls: Arc<rustls::ClientConfig>,
    vmac: Vmac,
    uuid: [u8; 16],
    message_id: u16,
) -> Result<Connected, ScError> {
    let tcp = TcpStream::connect((hub.host.as_str(), hub.port))
        .await
        .map_err(|e| ScError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(hub.host.clone())
        .map_err(|e| ScError::Setup(format!("hub host `{}`: {e}", hub.host)))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(tls_failure)?;
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| subject_of(c.as_ref()))
        .unwrap_or_default();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(hub.text.as_str())
        .map_err(|e| ScError::Upgrade(e.to_string()))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static(HUB_SUBPROTOCOL),
    );
    let (mut ws, resp) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
            .await
            .map_err(upgrade_failure)?;
    if resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        != Some(HUB_SUBPROTOCOL)
    {
        return Err(ScError::Subprotocol);
    }
    let req = bvlc_sc::encode(&Message {
        message_id,
        origin: None,
        destination: None,
        body: Body::ConnectRequest(ConnectInfo {
            vmac,
            uuid,
            max_bvlc: MAX_BVLC,
            max_npdu: MAX_NPDU,
        }),
    });
    ws.send(WsMessage::Binary(req.into()))
        .await
        .map_err(upgrade_failure)?;
    loop {
        let m = match ws.next().await {
            None => {
                return Err(ScError::ClosedAfterTls(
                    "closed before Connect-Accept".into(),
                ));
            }
            Some(Err(e)) => return Err(upgrade_failure(e)),
            Some(Ok(WsMessage::Binary(b))) => b,
            Some(Ok(WsMessage::Close(_))) => {
                return Err(ScError::ClosedAfterTls(
                    "closed before Connect-Accept".into(),
                ));
            }
            Some(Ok(_)) => continue,
        };
        let m = bvlc_sc::decode(&m).map_err(ScError::Decode)?;
        return match m.body {
            Body::ConnectAccept(info) => Ok((ws, subject, info)),
            Body::Result { nak: Some(n), .. } => Err(ScError::Refused(n)),
            b => Err(ScError::UnexpectedAnswer(b.function())),
        };
    }
}

impl ScLink {
    async fn status(&self, s: Status) {
        let _ = self.events.send(Event::Sc(s)).await;
    }

    /// Connects, serves, reconnects — until `shutdown`. The primary hub is tried first each
    /// round, then the failover hub; a round that reached neither waits the backoff.
    pub async fn run(self, mut out: mpsc::Receiver<Vec<u8>>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.reconnect_min;
        loop {
            let mut served = false;
            for (i, hub) in self.hubs.iter().enumerate() {
                if *shutdown.borrow() {
                    return;
                }
                let which = if i == 0 { "primary" } else { "failover" };
                let started = std::time::Instant::now();
                let attempt = tokio::time::timeout(
                    self.connect_timeout,
                    connect(
                        hub,
                        self.tls.clone(),
                        self.vmac,
                        self.uuid,
                        self.port.message_id(),
                    ),
                )
                .await
                .unwrap_or(Err(ScError::Timeout(self.connect_timeout)));
                match attempt {
                    Ok(mut conn) => {
                        // whatever was queued while down is stale: requests retry on their own
                        while out.try_recv().is_ok() {}
                        let (mut hub, mut i, mut took) = (hub, i, started.elapsed());
                        let why = loop {
                            let (ws, subject, accept) = conn;
                            *self
                                .port
                                .hub_subject
                                .lock()
                                .unwrap_or_else(|p| p.into_inner()) = Some(subject.clone());
                            self.port.up.store(true, Ordering::Relaxed);
                            self.status(Status::Up {
                                hub: hub.text.clone(),
                                failover: i > 0,
                                subject,
                                vmac: self.vmac,
                                took,
                            })
                            .await;
                            // on the failover hub, the primary is tried again now and then
                            let primary = self.hubs.first().filter(|_| i > 0);
                            match self
                                .serve(ws, &mut out, &mut shutdown, accept, hub, primary)
                                .await
                            {
                                End::Closed(why) => break why,
                                End::Failback(c, t) => {
                                    tracing::info!(hub = %hub.text, "bacnet/sc: back to the primary hub");
                                    (conn, took) = (*c, t);
                                    i = 0;
                                    hub = self.hubs.first().unwrap_or(hub);
                                }
                            }
                        };
                        let which = if i == 0 { "primary" } else { "failover" };
                        self.port.up.store(false, Ordering::Relaxed);
                        if *shutdown.borrow() {
                            return;
                        }
                        self.status(Status::Down {
                            detail: format!("{which} hub {}: {why}", hub.text),
                            error: None,
                        })
                        .await;
                        served = true;
                        backoff = self.reconnect_min;
                        break;
                    }
                    Err(e) => {
                        tracing::info!(hub = %hub.text, error = %e, "bacnet/sc: connect failed");
                        self.status(Status::Down {
                            detail: format!("{which} hub {}: {e}", hub.text),
                            error: Some(e),
                        })
                        .await;
                    }
                }
            }
            let wait = if served { self.reconnect_min } else { backoff };
            if !served {
                backoff = (backoff * 2).min(self.reconnect_max);
            }
            let until = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.changed() => if *shutdown.borrow() { return },
                    m = out.recv() => match m {
                        None => return,
                        // the link is down: nothing can be sent (senders were told ScDown)
                        Some(_) => { self.net.counters.sc_dropped.fetch_add(1, Ordering::Relaxed); }
                    },
                }
            }
        }
    }

    /// Serves one connected hub until it ends. With `primary` (while on the failover hub), the
    /// primary is tried every `reconnect_max`; once it accepts, the failover connection is
    /// closed with a Disconnect-Request and the primary's returned.
    async fn serve(
        &self,
        mut ws: Ws,
        out: &mut mpsc::Receiver<Vec<u8>>,
        shutdown: &mut watch::Receiver<bool>,
        accept: ConnectInfo,
        hub: &HubUri,
        primary: Option<&HubUri>,
    ) -> End {
        let max_out = usize::from(accept.max_bvlc.max(600));
        let mut last_rx = Instant::now();
        let mut heartbeat_sent = false;
        let mut next_probe = Instant::now() + self.reconnect_max;
        let mut probe: Option<Probe<'_>> = None;
        let mut probe_started = std::time::Instant::now();
        loop {
            let deadline = last_rx
                + if heartbeat_sent {
                    self.heartbeat * 2
                } else {
                    self.heartbeat
                };
            tokio::select! {
                m = ws.next() => {
                    let data = match m {
                        None => return End::Closed("the hub closed the connection".into()),
                        Some(Err(e)) => return End::Closed(format!("connection lost: {e}")),
                        Some(Ok(WsMessage::Binary(b))) => b,
                        Some(Ok(WsMessage::Close(_))) => return End::Closed("the hub closed the connection".into()),
                        Some(Ok(WsMessage::Text(_))) => {
                            last_rx = Instant::now();
                            self.refused(hub, DecodeError::Unexpected {
                                expected: "a binary WebSocket message",
                                found: "a text message",
                            }).await;
                            continue;
                        }
                        Some(Ok(_)) => { last_rx = Instant::now(); continue; }
                    };
                    last_rx = Instant::now();
                    heartbeat_sent = false;
                    match self.incoming(&mut ws, &data, hub).await {
                        Ok(true) => {}
                        Ok(false) => return End::Closed("the hub asked to disconnect (Disconnect-Request)".into()),
                        Err(e) => return End::Closed(format!("send failed: {e}")),
                    }
                }
                o = out.recv() => {
                    let Some(o) = o else { return End::Closed("the adapter stopped".into()) };
                    if o.len() > max_out {
                        self.net.counters.sc_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if let Err(e) = ws.send(WsMessage::Binary(o.into())).await {
                        return End::Closed(format!("send failed: {e}"));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if heartbeat_sent {
                        return End::Closed(format!("no answer to a Heartbeat-Request within {:?}", self.heartbeat));
                    }
                    heartbeat_sent = true;
                    let hb = self.control(Body::HeartbeatRequest, self.port.message_id(), None);
                    if let Err(e) = ws.send(WsMessage::Binary(hb.into())).await {
                        return End::Closed(format!("send failed: {e}"));
                    }
                }
                _ = tokio::time::sleep_until(next_probe), if primary.is_some() && probe.is_none() => {
                    if let Some(p) = primary {
                        probe_started = std::time::Instant::now();
                        probe = Some(Box::pin(async move {
                            tokio::time::timeout(
                                self.connect_timeout,
                                connect(p, self.tls.clone(), self.vmac, self.uuid, self.port.message_id()),
                            )
                            .await
                            .unwrap_or(Err(ScError::Timeout(self.connect_timeout)))
                        }));
                    }
                }
                r = async { match probe.as_mut() { Some(f) => f.await, None => std::future::pending().await } }, if probe.is_some() => {
                    probe = None;
                    next_probe = Instant::now() + self.reconnect_max;
                    match r {
                        Ok(c) => {
                            let d = self.control(Body::DisconnectRequest, self.port.message_id(), None);
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                let _ = ws.send(WsMessage::Binary(d.into())).await;
                                let _ = ws.close(None).await;
                            }).await;
                            return End::Failback(Box::new(c), probe_started.elapsed());
                        }
                        Err(e) => tracing::debug!(error = %e, "bacnet/sc: the primary hub is still unreachable"),
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        let d = self.control(Body::DisconnectRequest, self.port.message_id(), None);
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            let _ = ws.send(WsMessage::Binary(d.into())).await;
                            let _ = ws.close(None).await;
                        }).await;
                        return End::Closed("the gateway is stopping".into());
                    }
                }
            }
        }
    }

    fn control(&self, body: Body<'_>, message_id: u16, to: Option<Vmac>) -> Vec<u8> {
        bvlc_sc::encode(&Message {
            message_id,
            origin: None,
            destination: to,
            body,
        })
    }

    async fn refused(&self, hub: &HubUri, error: DecodeError) {
        self.net.counters.refused.fetch_add(1, Ordering::Relaxed);
        if self
            .events
            .try_send(Event::Refused {
                from: format!("BACnet/SC hub {}", hub.text),
                error,
            })
            .is_err()
        {
            self.net
                .counters
                .events_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One message from the hub. `Ok(false)` when the hub asked to disconnect.
    async fn incoming(
        &self,
        ws: &mut Ws,
        data: &[u8],
        hub: &HubUri,
    ) -> Result<bool, tungstenite::Error> {
        let m = match bvlc_sc::decode(data) {
            Ok(m) => m,
            Err(e) => {
                // answer what the clause asks a NAK for, when the message id is readable
                let code = match e {
                    DecodeError::ScOptionNotUnderstood(marker) => {
                        Some((marker, error_code::HEADER_NOT_UNDERSTOOD))
                    }
                    DecodeError::ScFunction(_) => Some((0, error_code::BVLC_FUNCTION_UNKNOWN)),
                    _ => None,
                };
                if let (Some((marker, code)), Some(&f), Some(id)) = (
                    code,
                    data.first(),
                    data.get(2..4)
                        .and_then(|b| <[u8; 2]>::try_from(b).ok())
                        .map(u16::from_be_bytes),
                ) {
                    let nak = self.nak(f, id, marker, code);
                    ws.send(WsMessage::Binary(nak.into())).await?;
                }
                self.refused(hub, e).await;
                return Ok(true);
            }
        };
        match m.body {
            Body::EncapsulatedNpdu(n) => match m.origin {
                Some(from) => {
                    if let Some(ev) = self.net.handle_sc(from, n, data).await
                        && self.events.try_send(ev).is_err()
                    {
                        self.net
                            .counters
                            .events_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    self.refused(
                        hub,
                        DecodeError::Unexpected {
                            expected: "an originating VMAC on an NPDU from the hub",
                            found: "none",
                        },
                    )
                    .await
                }
            },
            Body::HeartbeatRequest => {
                let ack = self.control(Body::HeartbeatAck, m.message_id, None);
                ws.send(WsMessage::Binary(ack.into())).await?;
            }
            Body::DisconnectRequest => {
                let ack = self.control(Body::DisconnectAck, m.message_id, None);
                let _ = ws.send(WsMessage::Binary(ack.into())).await;
                return Ok(false);
            }
            Body::AddressResolution => {
                // Warden accepts no direct connections
                let nak = bvlc_sc::encode(&Message {
                    message_id: m.message_id,
                    origin: None,
                    destination: m.origin,
                    body: Body::Result {
                        function: bvlc_sc::func::ADDRESS_RESOLUTION,
                        nak: Some(Nak {
                            header_marker: 0,
                            class: error_code::CLASS_COMMUNICATION,
                            code: OPTIONAL_FUNCTIONALITY_NOT_SUPPORTED,
                            details: String::new(),
                        }),
                    },
                });
                ws.send(WsMessage::Binary(nak.into())).await?;
            }
            Body::Result {
                function,
                nak: Some(n),
            } => {
                tracing::info!(hub = %hub.text, function, class = n.class, code = n.code, details = %n.details, "bacnet/sc: BVLC-Result NAK");
            }
            Body::HeartbeatAck
            | Body::DisconnectAck
            | Body::Result { nak: None, .. }
            | Body::Advertisement { .. }
            | Body::AdvertisementSolicitation
            | Body::AddressResolutionAck(_)
            | Body::Proprietary { .. }
            | Body::ConnectRequest(_)
            | Body::ConnectAccept(_) => {}
        }
        Ok(true)
    }

    fn nak(&self, function: u8, message_id: u16, header_marker: u8, code: u16) -> Vec<u8> {
        bvlc_sc::encode(&Message {
            message_id,
            origin: None,
            destination: None,
            body: Body::Result {
                function,
                nak: Some(Nak {
                    header_marker,
                    class: error_code::CLASS_COMMUNICATION,
                    code,
                    details: String::new(),
                }),
            },
        })
    }
}
