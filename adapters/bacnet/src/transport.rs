//! The network layer every service runs on, whichever datalink carries it: BACnet/IP (one UDP
//! socket, plus optionally one on the broadcast address) and BACnet/SC (Encapsulated-NPDUs on the
//! hub connection of [`crate::sc`]). Here live the transaction state machine of a requesting
//! BACnet user (invoke ids per peer, APDU timeout and retries, segmented Complex-ACKs
//! reassembled up to a size cap) and the classification of everything else that arrives
//! (unconfirmed and confirmed requests for the runtime). Services name a [`Peer`]; only
//! [`Net::send_npdu`] looks at which datalink reaches it.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::apdu::{self, Apdu};
use crate::bvlc::{self, Bvlc};
use crate::bvlc_sc::{self, Vmac};
use crate::error::DecodeError;
use crate::npdu::{self, Body, NetAddr, Npdu};

/// A datalink address: a BACnet/IP UDP address or a BACnet/SC virtual MAC behind the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    Ip(SocketAddr),
    Sc(Vmac),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "{a}"),
            Self::Sc(v) => write!(f, "sc:{v}"),
        }
    }
}

/// Where a BACnet device is: its datalink address and, behind a router, its network address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: Link,
    pub route: Option<NetAddr>,
}

impl Peer {
    /// A BACnet/IP device on the local network.
    pub fn direct(addr: SocketAddr) -> Self {
        Self {
            addr: Link::Ip(addr),
            route: None,
        }
    }

    /// A BACnet/SC node reached through the hub.
    pub fn sc(vmac: Vmac) -> Self {
        Self {
            addr: Link::Sc(vmac),
            route: None,
        }
    }

    pub fn is_sc(&self) -> bool {
        matches!(self.addr, Link::Sc(_))
    }
}

/// Where an unconfirmed request goes.
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    Peer(&'a Peer),
    /// A BACnet/IP broadcast to this address.
    IpBroadcast(SocketAddr),
    /// A BACnet/SC broadcast (destination VMAC ff:ff:ff:ff:ff:ff), relayed by the hub.
    ScBroadcast,
}

/// A confirmed request's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple,
    Complex(Vec<u8>),
}

/// Why a confirmed request did not get a positive answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fail {
    #[error("no answer after {0} attempts")]
    Timeout(u8),
    #[error("BACnet error {c}/{k} (class {class}, code {code})", c = error_class(*class), k = error_code(*code))]
    Error { class: u32, code: u32 },
    #[error("rejected: {reason} ({0})", reason = reject_reason(*.0))]
    Reject(u8),
    #[error("aborted: {reason} ({0})", reason = abort_reason(*.0))]
    Abort(u8),
    #[error("bad answer: {0}")]
    Decode(DecodeError),
    #[error("all 256 invoke ids to this peer are in use")]
    Busy,
    #[error("socket: {0}")]
    Io(String),
    #[error("the BACnet/SC hub connection is down")]
    ScDown,
}

pub fn error_class(c: u32) -> &'static str {
    match c {
        0 => "device",
        1 => "object",
        2 => "property",
        3 => "resources",
        4 => "security",
        5 => "services",
        6 => "vt",
        7 => "communication",
        _ => "proprietary",
    }
}

pub fn error_code(c: u32) -> &'static str {
    match c {
        0 => "other",
        2 => "configuration-in-progress",
        3 => "device-busy",
        9 => "invalid-data-type",
        25 => "operational-problem",
        27 => "read-access-denied",
        31 => "unknown-object",
        32 => "unknown-property",
        37 => "value-out-of-range",
        40 => "write-access-denied",
        42 => "invalid-array-index",
        44 => "not-cov-property",
        45 => "optional-functionality-not-supported",
        47 => "datatype-not-supported",
        50 => "property-is-not-an-array",
        _ => "code",
    }
}

pub fn reject_reason(r: u8) -> &'static str {
    match r {
        1 => "buffer-overflow",
        2 => "inconsistent-parameters",
        3 => "invalid-parameter-data-type",
        4 => "invalid-tag",
        5 => "missing-required-parameter",
        6 => "parameter-out-of-range",
        7 => "too-many-arguments",
        8 => "undefined-enumeration",
        9 => "unrecognized-service",
        _ => "other",
    }
}

pub fn abort_reason(r: u8) -> &'static str {
    match r {
        1 => "buffer-overflow",
        2 => "invalid-apdu-in-this-state",
        3 => "preempted-by-higher-priority-task",
        4 => "segmentation-not-supported",
        5 => "security-error",
        6 => "insufficient-security",
        7 => "window-size-out-of-range",
        8 => "application-exceeded-reply-time",
        9 => "out-of-resources",
        10 => "tsm-timeout",
        11 => "apdu-too-long",
        _ => "other",
    }
}

/// A request from a peer that the runtime handles (I-Am, COV notifications, Who-Is…).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub from: Peer,
    /// `Some(invoke id)` for a confirmed request.
    pub invoke_id: Option<u8>,
    pub service: u8,
    pub data: Vec<u8>,
    /// The whole datagram, for forensics.
    pub raw: Vec<u8>,
}

/// What the receive loop tells the runtime.
#[derive(Debug, Clone)]
pub enum Event {
    Request(Incoming),
    /// A datagram or SC message that did not decode, or an answer no request was waiting for.
    Refused {
        from: String,
        error: DecodeError,
    },
    /// A BVLC-Result from a BBMD (foreign-device registration).
    BvlcResult {
        from: SocketAddr,
        code: u16,
    },
    /// The BACnet/SC hub connection came up or went down.
    Sc(crate::sc::Status),
}

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub refused: AtomicU64,
    pub timeouts: AtomicU64,
    pub events_dropped: AtomicU64,
    pub network_messages: AtomicU64,
    /// Encapsulated-NPDUs not sent because the SC outbound queue was full.
    pub sc_dropped: AtomicU64,
}

/// The BACnet/SC side of [`Net`]: the hub connection's outbound queue (bounded; a full queue
/// drops and counts) and whether the connection is up.
pub struct ScPort {
    pub out: mpsc::Sender<Vec<u8>>,
    pub up: std::sync::atomic::AtomicBool,
    next_message_id: std::sync::atomic::AtomicU16,
    /// The subject of the hub certificate of the current connection (the assurance evidence).
    pub hub_subject: Mutex<Option<String>>,
}

impl ScPort {
    pub fn new(out: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            out,
            up: std::sync::atomic::AtomicBool::new(false),
            next_message_id: std::sync::atomic::AtomicU16::new(1),
            hub_subject: Mutex::new(None),
        }
    }

    pub fn message_id(&self) -> u16 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn hub_subject(&self) -> Option<String> {
        self.hub_subject
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Pending {
    tx: Option<oneshot::Sender<Result<Reply, Fail>>>,
    service: u8,
    segments: Vec<u8>,
    next_sequence: u8,
}

/// Segmented answers remembered after their last segment, so a retransmission of that segment
/// (our Segment-ACK was late or lost) is ACKed again instead of left to time out. Bounded: a
/// peer can make Warden complete transfers, not grow this.
const RECENT_SEGMENTED: usize = 32;

/// The last segment of a completed segmented answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Completed {
    key: (Link, u8),
    service: u8,
    sequence: u8,
    window: u8,
}

/// The network layer, shared by the runtime and every device task.
pub struct Net {
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    sc: Option<Arc<ScPort>>,
    pending: Mutex<HashMap<(Link, u8), Pending>>,
    /// The newest [`RECENT_SEGMENTED`] completed segmented answers, oldest first.
    completed: Mutex<std::collections::VecDeque<Completed>>,
    next_id: Mutex<HashMap<Link, u8>>,
    max_response: usize,
    /// The max-APDU code Warden announces in its requests (0 = 50 … 5 = 1476 octets).
    max_apdu_code: u8,
    pub counters: Counters,
}

/// Removes a request's pending entry however the request ends (answer, timeout, cancellation).
struct Guard<'a> {
    net: &'a Net,
    key: (Link, u8),
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.net.lock().remove(&self.key);
    }
}

/// Wraps an APDU in an NPDU for `peer` (or a broadcast): routed through DNET/DADR when the
/// peer is behind a router.
pub fn npdu_for(peer: Option<&Peer>, apdu: &[u8], expecting_reply: bool) -> Vec<u8> {
    let mut n = Npdu::local(apdu, expecting_reply);
    n.dest = peer.and_then(|p| p.route.clone());
    if n.dest.is_some() {
        n.hop_count = Some(255);
    }
    npdu::encode(&n)
}

/// Frames an APDU as BVLC + NPDU for `peer` (or a broadcast) on BACnet/IP.
pub fn frame(peer: Option<&Peer>, apdu: &[u8], expecting_reply: bool) -> Option<Vec<u8>> {
    let n = npdu_for(peer, apdu, expecting_reply);
    bvlc::encode(&if peer.is_some() {
        Bvlc::OriginalUnicast(&n)
    } else {
        Bvlc::OriginalBroadcast(&n)
    })
}

impl Net {
    pub fn new(sock: Arc<UdpSocket>, max_response: usize) -> Result<Self, String> {
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        Ok(Self {
            sock,
            local,
            sc: None,
            pending: Mutex::new(HashMap::new()),
            completed: Mutex::new(std::collections::VecDeque::new()),
            next_id: Mutex::new(HashMap::new()),
            max_response,
            max_apdu_code: 5,
            counters: Counters::default(),
        })
    }

    /// Announces a smaller max APDU in requests (octets: 50, 128, 206, 480, 1024 or 1476), so
    /// peers segment longer answers.
    pub fn with_max_apdu(mut self, octets: usize) -> Self {
        self.max_apdu_code = (0..=5u8)
            .rev()
            .find(|c| apdu::max_apdu_octets(*c) <= octets)
            .unwrap_or(0);
        self
    }

    /// Adds the BACnet/SC datalink.
    pub fn with_sc(mut self, sc: Arc<ScPort>) -> Self {
        self.sc = Some(sc);
        self
    }

    pub fn sc(&self) -> Option<&Arc<ScPort>> {
        self.sc.as_ref()
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Link, u8), Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Completed>> {
        self.completed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn send_to(&self, to: SocketAddr, datagram: &[u8]) -> Result<(), Fail> {
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.sock
            .send_to(datagram, to)
            .await
            .map(|_| ())
            .map_err(|e| Fail::Io(e.to_string()))
    }

    /// Sends an NPDU on the datalink that reaches `to`: a BVLC Original-Unicast/Broadcast on
    /// BACnet/IP, an Encapsulated-NPDU to the peer's VMAC (or the broadcast VMAC) on BACnet/SC.
    pub async fn send_npdu(&self, to: Dest<'_>, npdu: &[u8]) -> Result<(), Fail> {
        let too_large = || Fail::Io("frame too large".into());
        let vmac = match to {
            Dest::Peer(Peer {
                addr: Link::Ip(a), ..
            }) => {
                let f = bvlc::encode(&Bvlc::OriginalUnicast(npdu)).ok_or_else(too_large)?;
                return self.send_to(*a, &f).await;
            }
            Dest::IpBroadcast(a) => {
                let f = bvlc::encode(&Bvlc::OriginalBroadcast(npdu)).ok_or_else(too_large)?;
                return self.send_to(a, &f).await;
            }
            Dest::Peer(Peer {
                addr: Link::Sc(v), ..
            }) => *v,
            Dest::ScBroadcast => Vmac::BROADCAST,
        };
        let sc = self.sc.as_ref().ok_or(Fail::ScDown)?;
        if !sc.up.load(Ordering::Relaxed) {
            return Err(Fail::ScDown);
        }
        let m = bvlc_sc::encode(&bvlc_sc::Message {
            message_id: sc.message_id(),
            origin: None,
            destination: Some(vmac),
            body: bvlc_sc::Body::EncapsulatedNpdu(npdu),
        });
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        sc.out.try_send(m).map_err(|_| {
            self.counters.sc_dropped.fetch_add(1, Ordering::Relaxed);
            Fail::Io("the BACnet/SC send queue is full".into())
        })
    }

    /// An APDU to one peer, on whichever datalink reaches it.
    pub async fn send_apdu(&self, peer: &Peer, apdu: &[u8]) -> Result<(), Fail> {
        self.send_npdu(Dest::Peer(peer), &npdu_for(Some(peer), apdu, false))
            .await
    }

    /// An unconfirmed request to a peer or a broadcast.
    pub async fn unconfirmed(&self, to: Dest<'_>, service: u8, data: &[u8]) -> Result<(), Fail> {
        let apdu = apdu::encode(&Apdu::Unconfirmed { service, data });
        let peer = match to {
            Dest::Peer(p) => Some(p),
            _ => None,
        };
        self.send_npdu(to, &npdu_for(peer, &apdu, false)).await
    }

    pub async fn simple_ack(&self, peer: &Peer, invoke_id: u8, service: u8) -> Result<(), Fail> {
        let apdu = apdu::encode(&Apdu::SimpleAck { invoke_id, service });
        self.send_apdu(peer, &apdu).await
    }

    pub async fn error(
        &self,
        peer: &Peer,
        invoke_id: u8,
        service: u8,
        class: u32,
        code: u32,
    ) -> Result<(), Fail> {
        let apdu = apdu::encode(&Apdu::Error {
            invoke_id,
            service,
            class,
            code,
        });
        self.send_apdu(peer, &apdu).await
    }

    /// Registers as a foreign device with a BBMD.
    pub async fn register_foreign(&self, bbmd: SocketAddr, ttl: u16) -> Result<(), Fail> {
        let f = bvlc::encode(&Bvlc::RegisterForeignDevice(ttl)).ok_or(Fail::Busy)?;
        self.send_to(bbmd, &f).await
    }

    fn allocate(
        &self,
        peer: Link,
        service: u8,
    ) -> Result<(u8, oneshot::Receiver<Result<Reply, Fail>>), Fail> {
        let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.entry(peer).or_insert(0);
        let mut pending = self.lock();
        for k in 0..=255u8 {
            let id = start.wrapping_add(k);
            if let std::collections::hash_map::Entry::Vacant(v) = pending.entry((peer, id)) {
                // the invoke id is reused: an older transfer's last segment is no longer ours
                self.recent().retain(|c| c.key != (peer, id));
                let (tx, rx) = oneshot::channel();
                v.insert(Pending {
                    tx: Some(tx),
                    service,
                    segments: Vec::new(),
                    next_sequence: 0,
                });
                *start = id.wrapping_add(1);
                return Ok((id, rx));
            }
        }
        Err(Fail::Busy)
    }

    /// A confirmed request: sent, retried after each `timeout` up to `retries` times, answered
    /// by a Simple/Complex-ACK (segments reassembled) or failed with the peer's error.
    pub async fn request(
        &self,
        peer: &Peer,
        service: u8,
        data: &[u8],
        timeout: Duration,
        retries: u8,
    ) -> Result<Reply, Fail> {
        let (invoke_id, mut rx) = self.allocate(peer.addr, service)?;
        let _guard = Guard {
            net: self,
            key: (peer.addr, invoke_id),
        };
        let apdu = apdu::encode(&Apdu::Confirmed {
            segmented_response_accepted: true,
            max_segments: 7,
            max_apdu: self.max_apdu_code,
            invoke_id,
            segment: None,
            service,
            data,
        });
        let n = npdu_for(Some(peer), &apdu, true);
        for _ in 0..=retries {
            match self.send_npdu(Dest::Peer(peer), &n).await {
                // while the hub connection is down an SC device is as silent as a device that
                // does not answer: the attempt times out, so device tasks mark it Down and
                // resubscribe when it answers again, exactly as on BACnet/IP
                Ok(()) | Err(Fail::ScDown) => {}
                Err(e) => return Err(e),
            }
            match tokio::time::timeout(timeout, &mut rx).await {
                Ok(Ok(r)) => return r,
                Ok(Err(_)) => return Err(Fail::Io("the receive loop stopped".into())),
                Err(_) => {}
            }
        }
        self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        Err(Fail::Timeout(retries.saturating_add(1)))
    }

    fn complete(&self, key: (Link, u8), service: Option<u8>, r: Result<Reply, Fail>) -> bool {
        let mut p = self.lock();
        match p.get_mut(&key) {
            Some(e) if service.is_none_or(|s| s == e.service) => {
                if let Some(tx) = e.tx.take() {
                    let _ = tx.send(r);
                }
                true
            }
            _ => false,
        }
    }

    /// One segment of a segmented Complex-ACK. Returns the Segment-ACK (or Abort) to send, and
    /// whether a request was waiting for it.
    fn segment(
        &self,
        key: (Link, u8),
        service: u8,
        s: apdu::Segment,
        data: &[u8],
    ) -> (Option<Vec<u8>>, bool) {
        let mut p = self.lock();
        let Some(e) = p
            .get_mut(&key)
            .filter(|e| e.service == service && e.tx.is_some())
        else {
            // a retransmission of the last segment of an answer already complete: our
            // Segment-ACK was late or lost, so the peer would retry until its timeout
            if !s.more_follows
                && self
                    .recent()
                    .iter()
                    .any(|c| c.key == key && c.service == service && c.sequence == s.sequence)
            {
                let ack = Apdu::SegmentAck {
                    negative: false,
                    server: false,
                    invoke_id: key.1,
                    sequence: s.sequence,
                    window: s.window,
                };
                return (Some(apdu::encode(&ack)), true);
            }
            return (None, false);
        };
        if s.sequence != e.next_sequence {
            // out of order: ask again from the last segment received in order
            let ack = Apdu::SegmentAck {
                negative: true,
                server: false,
                invoke_id: key.1,
                sequence: e.next_sequence.wrapping_sub(1),
                window: s.window,
            };
            return (Some(apdu::encode(&ack)), true);
        }
        if e.segments.len() + data.len() > self.max_response {
            if let Some(tx) = e.tx.take() {
                let _ = tx.send(Err(Fail::Decode(DecodeError::SegmentsTooLarge(
                    self.max_response,
                ))));
            }
            let abort = Apdu::Abort {
                server: false,
                invoke_id: key.1,
                reason: 1, // buffer-overflow
            };
            return (Some(apdu::encode(&abort)), true);
        }
        e.segments.extend_from_slice(data);
        e.next_sequence = e.next_sequence.wrapping_add(1);
        let ack = Apdu::SegmentAck {
            negative: false,
            server: false,
            invoke_id: key.1,
            sequence: s.sequence,
            window: s.window,
        };
        if !s.more_follows
            && let Some(tx) = e.tx.take()
        {
            let _ = tx.send(Ok(Reply::Complex(std::mem::take(&mut e.segments))));
            let mut r = self.recent();
            r.retain(|c| c.key != key);
            if r.len() >= RECENT_SEGMENTED {
                r.pop_front();
            }
            r.push_back(Completed {
                key,
                service,
                sequence: s.sequence,
                window: s.window,
            });
        }
        (Some(apdu::encode(&ack)), true)
    }

    /// Classifies one datagram: answers complete their request here; requests go up as events.
    pub async fn handle(&self, from: SocketAddr, datagram: &[u8]) -> Option<Event> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        match self.classify(from, datagram).await {
            Ok(e) => e,
            Err(error) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Some(Event::Refused {
                    from: from.to_string(),
                    error,
                })
            }
        }
    }

    /// Classifies one NPDU that arrived from a BACnet/SC node (an Encapsulated-NPDU's payload).
    pub async fn handle_sc(&self, from: Vmac, npdu: &[u8], raw: &[u8]) -> Option<Event> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        match self.classify_npdu(Link::Sc(from), npdu, raw).await {
            Ok(e) => e,
            Err(error) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Some(Event::Refused {
                    from: Link::Sc(from).to_string(),
                    error,
                })
            }
        }
    }

    async fn classify(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Option<Event>, DecodeError> {
        let b = bvlc::decode(datagram)?;
        let (origin, n) = match b {
            Bvlc::Result(code) => return Ok(Some(Event::BvlcResult { from, code })),
            Bvlc::Forwarded { origin, npdu } => (SocketAddr::V4(origin), npdu),
            Bvlc::OriginalUnicast(n)
            | Bvlc::OriginalBroadcast(n)
            | Bvlc::DistributeBroadcast(n) => (from, n),
            // table management and registrations are for BBMDs: not Warden's job
            Bvlc::RegisterForeignDevice(_) | Bvlc::Other { .. } => return Ok(None),
        };
        self.classify_npdu(Link::Ip(origin), n, datagram).await
    }

    async fn classify_npdu(
        &self,
        origin: Link,
        n: &[u8],
        datagram: &[u8],
    ) -> Result<Option<Event>, DecodeError> {
        let n = npdu::decode(n)?;
        let a = match n.body {
            Body::Network { .. } => {
                self.counters
                    .network_messages
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            Body::Apdu(a) => a,
        };
        let peer = Peer {
            addr: origin,
            route: n.source.clone(),
        };
        let a = apdu::decode(a)?;
        let unexpected = || DecodeError::Unexpected {
            expected: "an answer to a request Warden sent",
            found: "an answer nobody waits for",
        };
        match a {
            Apdu::Unconfirmed { service, data } => Ok(Some(Event::Request(Incoming {
                from: peer,
                invoke_id: None,
                service,
                data: data.to_vec(),
                raw: datagram.to_vec(),
            }))),
            Apdu::Confirmed {
                invoke_id,
                segment,
                service,
                data,
                ..
            } => {
                if segment.is_some() {
                    // Warden's services never need segmented requests: refuse them
                    let abort = apdu::encode(&Apdu::Abort {
                        server: true,
                        invoke_id,
                        reason: 4, // segmentation-not-supported
                    });
                    let _ = self.send_apdu(&peer, &abort).await;
                    return Ok(None);
                }
                Ok(Some(Event::Request(Incoming {
                    from: peer,
                    invoke_id: Some(invoke_id),
                    service,
                    data: data.to_vec(),
                    raw: datagram.to_vec(),
                })))
            }
            Apdu::SimpleAck { invoke_id, service } => self
                .complete((origin, invoke_id), Some(service), Ok(Reply::Simple))
                .then_some(None)
                .ok_or_else(unexpected),
            Apdu::ComplexAck {
                invoke_id,
                segment: None,
                service,
                data,
            } => self
                .complete(
                    (origin, invoke_id),
                    Some(service),
                    Ok(Reply::Complex(data.to_vec())),
                )
                .then_some(None)
                .ok_or_else(unexpected),
            Apdu::ComplexAck {
                invoke_id,
                segment: Some(s),
                service,
                data,
            } => {
                let (answer, known) = self.segment((origin, invoke_id), service, s, data);
                if let Some(a) = answer {
                    let _ = self.send_apdu(&peer, &a).await;
                }
                known.then_some(None).ok_or_else(unexpected)
            }
            Apdu::Error {
                invoke_id,
                service,
                class,
                code,
            } => self
                .complete(
                    (origin, invoke_id),
                    Some(service),
                    Err(Fail::Error { class, code }),
                )
                .then_some(None)
                .ok_or_else(unexpected),
            Apdu::Reject { invoke_id, reason } => self
                .complete((origin, invoke_id), None, Err(Fail::Reject(reason)))
                .then_some(None)
                .ok_or_else(unexpected),
            Apdu::Abort {
                invoke_id, reason, ..
            } => self
                .complete((origin, invoke_id), None, Err(Fail::Abort(reason)))
                .then_some(None)
                .ok_or_else(unexpected),
            // Warden never sends segmented requests, so a Segment-ACK is never expected
            Apdu::SegmentAck { .. } => Err(unexpected()),
        }
    }
}

/// The receive loop of one socket: datagrams in, events out (bounded: when the runtime is
/// behind, events are dropped and counted — answers to requests are never dropped).
pub async fn receive(net: Arc<Net>, sock: Arc<UdpSocket>, events: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 65_536];
    let own = net.local();
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "bacnet: receive");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if from == own {
            continue; // our own broadcast, looped back
        }
        let Some(d) = buf.get(..n) else { continue };
        if let Some(ev) = net.handle(from, d).await
            && events.try_send(ev).is_err()
        {
            net.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if events.is_closed() {
            return;
        }
    }
}

/// Binds the unicast port (broadcasts allowed) and, optionally, a listener on the broadcast
/// address shared with other BACnet/IP stacks on the host (SO_REUSEADDR/SO_REUSEPORT).
pub fn bind(
    bind: SocketAddr,
    broadcast: Option<SocketAddr>,
) -> std::io::Result<(Arc<UdpSocket>, Option<Arc<UdpSocket>>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |addr: SocketAddr, shared: bool| -> std::io::Result<Arc<UdpSocket>> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_broadcast(true)?;
        if shared {
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        Ok(Arc::new(UdpSocket::from_std(s.into())?))
    };
    let main = open(bind, false)?;
    let b = match broadcast {
        Some(a) => Some(open(a, true)?),
        None => None,
    };
    Ok((main, b))
}

/// `127.0.0.2:47808` as a Forwarded-NPDU origin would carry it.
pub fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(v) => Some(v),
        SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::services;

    async fn pair() -> (Arc<Net>, Arc<UdpSocket>, UdpSocket) {
        let (s, _) = bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let net = Arc::new(Net::new(s.clone(), 4000).unwrap());
        let dev = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (net, s, dev)
    }

    fn ack(invoke_id: u8, segment: Option<apdu::Segment>, data: &[u8]) -> Vec<u8> {
        let a = apdu::encode(&Apdu::ComplexAck {
            invoke_id,
            segment,
            service: services::confirmed::READ_PROPERTY,
            data,
        });
        frame(None, &a, false)
            .map(|mut f| {
                f[1] = bvlc::func::ORIGINAL_UNICAST;
                f
            })
            .unwrap()
    }

    async fn recv_apdu(dev: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut b = vec![0; 2000];
        let (n, from) = dev.recv_from(&mut b).await.unwrap();
        let bv = bvlc::decode(&b[..n]).unwrap();
        let np = npdu::decode(bv.npdu().unwrap()).unwrap();
        let Body::Apdu(a) = np.body else { panic!() };
        (a.to_vec(), from)
    }

    #[tokio::test]
    async fn a_retransmitted_last_segment_of_a_completed_answer_is_acked_again() {
        let (net, _sock, dev) = pair().await;
        let peer = Link::Ip(dev.local_addr().unwrap());
        let rp = services::confirmed::READ_PROPERTY;
        let seg = |sequence, more_follows| apdu::Segment {
            sequence,
            window: 2,
            more_follows,
        };
        let is_ack = |a: Option<Vec<u8>>, id: u8, seq: u8| {
            matches!(
                apdu::decode(&a.unwrap()).unwrap(),
                Apdu::SegmentAck { negative: false, invoke_id, sequence, window: 2, .. }
                    if invoke_id == id && sequence == seq
            )
        };
        // one transfer per invoke id, done and its request gone (the pending entry dropped)
        let transfer = |net: &Net| {
            let (id, rx) = net.allocate(peer, rp).unwrap();
            assert!(is_ack(
                net.segment((peer, id), rp, seg(0, true), b"ab").0,
                id,
                0
            ));
            assert!(is_ack(
                net.segment((peer, id), rp, seg(1, false), b"cd").0,
                id,
                1
            ));
            net.lock().remove(&(peer, id));
            (id, rx)
        };
        let (id, mut rx) = transfer(&net);
        assert_eq!(
            rx.try_recv().unwrap().unwrap(),
            Reply::Complex(b"abcd".to_vec())
        );
        // the peer did not see our ACK of the last segment and sends it again: ACKed again,
        // counted as expected
        let (a, known) = net.segment((peer, id), rp, seg(1, false), b"cd");
        assert!(known && is_ack(a, id, 1));
        // not the last segment, another service or another invoke id: nothing to ACK
        assert_eq!(
            net.segment((peer, id), rp, seg(0, true), b"ab"),
            (None, false)
        );
        assert_eq!(
            net.segment(
                (peer, id),
                services::confirmed::READ_PROPERTY_MULTIPLE,
                seg(1, false),
                b"cd"
            ),
            (None, false)
        );
        assert_eq!(
            net.segment((peer, id.wrapping_add(1)), rp, seg(1, false), b"cd"),
            (None, false)
        );
        // the record is bounded: after more transfers than it keeps, the first is forgotten
        for _ in 0..RECENT_SEGMENTED {
            transfer(&net);
        }
        assert!(net.recent().len() <= RECENT_SEGMENTED);
        let first = net.recent().front().map(|c| c.key.1);
        assert_ne!(first, Some(id));
        // invoke ids wrap at 256: a reused id forgets the older transfer's last segment
        let (id2, _) = net.allocate(peer, rp).unwrap();
        assert!(net.recent().iter().all(|c| c.key != (peer, id2)));
    }

    #[tokio::test]
    async fn segmented_answers_are_reassembled_acked_and_capped() {
        let (net, sock, dev) = pair().await;
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(receive(net.clone(), sock, tx));
        let peer = Peer::direct(dev.local_addr().unwrap());
        let n2 = net.clone();
        let p2 = peer.clone();
        let req = tokio::spawn(async move {
            n2.request(
                &p2,
                services::confirmed::READ_PROPERTY,
                &[1, 2],
                Duration::from_secs(2),
                0,
            )
            .await
        });
        let (a, from) = recv_apdu(&dev).await;
        let Apdu::Confirmed { invoke_id, .. } = apdu::decode(&a).unwrap() else {
            panic!()
        };
        // three segments, the second sent twice out of order first (a NAK comes back)
        let seg = |sequence, more_follows| {
            Some(apdu::Segment {
                sequence,
                window: 1,
                more_follows,
            })
        };
        dev.send_to(&ack(invoke_id, seg(0, true), b"abc"), from)
            .await
            .unwrap();
        let (a, _) = recv_apdu(&dev).await;
        assert!(matches!(
            apdu::decode(&a).unwrap(),
            Apdu::SegmentAck {
                negative: false,
                sequence: 0,
                ..
            }
        ));
        dev.send_to(&ack(invoke_id, seg(2, false), b"zzz"), from)
            .await
            .unwrap();
        let (a, _) = recv_apdu(&dev).await;
        assert!(matches!(
            apdu::decode(&a).unwrap(),
            Apdu::SegmentAck {
                negative: true,
                sequence: 0,
                ..
            }
        ));
        dev.send_to(&ack(invoke_id, seg(1, true), b"def"), from)
            .await
            .unwrap();
        let _ = recv_apdu(&dev).await;
        dev.send_to(&ack(invoke_id, seg(2, false), b"ghi"), from)
            .await
            .unwrap();
        let _ = recv_apdu(&dev).await;
        assert_eq!(
            req.await.unwrap().unwrap(),
            Reply::Complex(b"abcdefghi".to_vec())
        );

        // a response growing past the cap is aborted and the request fails with a typed error
        let n2 = net.clone();
        let p2 = peer.clone();
        let req = tokio::spawn(async move {
            n2.request(
                &p2,
                services::confirmed::READ_PROPERTY,
                &[1, 2],
                Duration::from_secs(2),
                0,
            )
            .await
        });
        let (a, _) = recv_apdu(&dev).await;
        let Apdu::Confirmed { invoke_id, .. } = apdu::decode(&a).unwrap() else {
            panic!()
        };
        let big = vec![0x55; 1400];
        for s in 0..3u8 {
            dev.send_to(&ack(invoke_id, seg(s, true), &big), from)
                .await
                .unwrap();
            let (a, _) = recv_apdu(&dev).await;
            if s == 2 {
                assert!(matches!(
                    apdu::decode(&a).unwrap(),
                    Apdu::Abort { reason: 1, .. }
                ));
            }
        }
        assert_eq!(
            req.await.unwrap().unwrap_err(),
            Fail::Decode(DecodeError::SegmentsTooLarge(4000))
        );
        // an ACK nobody waits for is refused, not a panic
        dev.send_to(&ack(99, None, b"x"), from).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(ev, Event::Refused { .. }), "{ev:?}");
    }

    #[tokio::test]
    async fn timeouts_retry_with_the_same_invoke_id_then_fail() {
        let (net, sock, dev) = pair().await;
        let (tx, _rx) = mpsc::channel(16);
        tokio::spawn(receive(net.clone(), sock, tx));
        let peer = Peer::direct(dev.local_addr().unwrap());
        let n2 = net.clone();
        let req = tokio::spawn(async move {
            n2.request(&peer, 12, &[], Duration::from_millis(150), 2)
                .await
        });
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (a, _) = recv_apdu(&dev).await;
            let Apdu::Confirmed { invoke_id, .. } = apdu::decode(&a).unwrap() else {
                panic!()
            };
            ids.push(invoke_id);
        }
        assert_eq!(req.await.unwrap().unwrap_err(), Fail::Timeout(3));
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        assert!(net.lock().is_empty(), "the pending entry is removed");
    }
}
