//! The run loop: binds the BACnet/IP port, discovers devices (Who-Is/I-Am, broadcast and
//! directed, on start and in scan operations), and runs one task per device — interview
//! (device properties, object-list walk), COV subscriptions with renewal, polling of objects
//! without COV, and downlinks. A device that stops answering costs only its own task time, so
//! its neighbours keep their schedule.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use warden_core::{
    AdapterContext, AdapterError, AdapterEvent, Announcement, Assurance, CommandOutcome,
    CommandResult, DeviceId, Downlink, LinkHealth, LinkState, Message, Operation, OperationRequest,
    OperationState, Point, Rejection,
};

use crate::config::{Config, CovMode};
use crate::error::DecodeError;
use crate::points::{self, ObjectInfo};
use crate::services::{self, ReadSpec, confirmed, object, prop, unconfirmed};
use crate::tag::{AppValue, Datum, ObjectId};
use crate::transport::{self, Dest, Event, Fail, Incoming, Link, Net, Peer, Reply};

/// Warden's subscriber process identifier in SubscribeCOV ("WA").
pub const PROCESS_ID: u32 = 0x5741;
/// Devices interviewed at the same time; the others wait for a free slot.
const MAX_INTERVIEWS: usize = 8;
/// Audit records per rejection cause per window (the rest are counted into the next record).
const REJECTIONS_PER_WINDOW: u32 = 5;
const REJECTION_WINDOW: Duration = Duration::from_secs(10);
/// Objects per ReadPropertyMultiple request.
const RPM_BATCH: usize = 16;
/// Interview attempts before a device that announced itself is dropped.
const INTERVIEW_ATTEMPTS: u32 = 3;

/// Rejections audited at most [`REJECTIONS_PER_WINDOW`] per cause per window; the rest counted.
#[derive(Default)]
pub struct RateLimit {
    window_start: Option<Instant>,
    counts: HashMap<&'static str, (u32, u64)>,
}

impl RateLimit {
    /// Whether to audit now, and how many of this cause went unaudited since the last record.
    pub fn admit(&mut self, cause: &'static str) -> Option<u64> {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= REJECTION_WINDOW)
        {
            self.window_start = Some(now);
            for (n, _) in self.counts.values_mut() {
                *n = 0;
            }
        }
        let e = self.counts.entry(cause).or_insert((0, 0));
        if e.0 < REJECTIONS_PER_WINDOW {
            e.0 += 1;
            Some(std::mem::take(&mut e.1))
        } else {
            e.1 += 1;
            None
        }
    }
}

/// What every task shares.
#[derive(Clone)]
struct Shared {
    cfg: Arc<Config>,
    net: Arc<Net>,
    events: mpsc::Sender<AdapterEvent>,
    limits: Arc<Mutex<RateLimit>>,
    interviews: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    async fn emit(&self, ev: AdapterEvent) -> Result<(), AdapterError> {
        self.events.send(ev).await.map_err(|_| AdapterError::Closed)
    }

    async fn reject(
        &self,
        device: Option<DeviceId>,
        cause: &'static str,
        detail: String,
    ) -> Result<(), AdapterError> {
        let admitted = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(cause);
        let Some(unaudited) = admitted else {
            return Ok(());
        };
        let detail = if unaudited > 0 {
            format!("{detail} ({unaudited} more `{cause}` since the last record)")
        } else {
            detail
        };
        self.emit(AdapterEvent::Rejected(Rejection {
            protocol: crate::PROTOCOL,
            device,
            cause,
            detail,
        }))
        .await
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.apdu_timeout_ms))
    }

    async fn request(&self, peer: &Peer, service: u8, data: &[u8]) -> Result<Reply, Fail> {
        self.net
            .request(peer, service, data, self.timeout(), self.cfg.retries)
            .await
    }

    async fn read(
        &self,
        peer: &Peer,
        o: ObjectId,
        p: u32,
        idx: Option<u32>,
    ) -> Result<Vec<Datum>, Fail> {
        match self
            .request(
                peer,
                confirmed::READ_PROPERTY,
                &services::read_property(o, p, idx),
            )
            .await?
        {
            Reply::Complex(d) => {
                let ack = services::decode_read_property_ack(&d).map_err(Fail::Decode)?;
                if ack.object != o || ack.property != p {
                    return Err(Fail::Decode(DecodeError::Unexpected {
                        expected: "the property asked for",
                        found: "another property",
                    }));
                }
                Ok(ack.value)
            }
            Reply::Simple => Err(Fail::Decode(DecodeError::Unexpected {
                expected: "a Complex-ACK",
                found: "a Simple-ACK",
            })),
        }
    }

    async fn read_multiple(
        &self,
        peer: &Peer,
        specs: &[ReadSpec],
    ) -> Result<Vec<services::RpmResult>, Fail> {
        match self
            .request(
                peer,
                confirmed::READ_PROPERTY_MULTIPLE,
                &services::read_property_multiple(specs),
            )
            .await?
        {
            Reply::Complex(d) => {
                services::decode_read_property_multiple_ack(&d).map_err(Fail::Decode)
            }
            Reply::Simple => Err(Fail::Decode(DecodeError::Unexpected {
                expected: "a Complex-ACK",
                found: "a Simple-ACK",
            })),
        }
    }
}

pub fn device_id(network: u16, instance: u32) -> Option<DeviceId> {
    DeviceId::new(crate::PROTOCOL, &format!("{network}-{instance}")).ok()
}

enum DevMsg {
    Downlink(Downlink),
    Cov {
        note: services::CovNotification,
        invoke_id: Option<u8>,
        from: Peer,
        raw: Vec<u8>,
    },
    Seen(Peer),
}

enum Internal {
    Ready(u16, u32),
    Gone(u16, u32),
}

struct Dev {
    tx: mpsc::Sender<DevMsg>,
    /// Its task, aborted when the adapter stops: an interview in progress does not read `tx`
    /// and would hold the pipeline's sender through its retries.
    task: tokio::task::AbortHandle,
    id: DeviceId,
    peer: Peer,
    ready: bool,
}

struct Scan {
    op: Operation,
    until: Instant,
    seen: HashSet<DeviceId>,
    /// An object search (Who-Has) rather than a discovery (Who-Is).
    has: Option<services::HasTarget>,
    /// The I-Have answers reported: (network, device instance, object), at most [`MAX_FOUND`].
    found: HashSet<(u16, u32, ObjectId)>,
}

/// I-Have answers one object search reports; the rest are counted as refused.
const MAX_FOUND: usize = 1024;

/// Runs the adapter until shutdown.
pub async fn run(cfg: Config, ctx: AdapterContext) -> Result<(), AdapterError> {
    let AdapterContext {
        events,
        mut downlinks,
        mut operations,
        mut shutdown,
        ..
    } = ctx;
    let link = format!("bacnet:{}", cfg.bind);
    let broadcast_listen = cfg.listen_broadcast.then_some(cfg.broadcast);
    let (sock, bsock) = match transport::bind(cfg.bind, broadcast_listen) {
        Ok(s) => s,
        Err(e) => {
            let detail = format!("cannot bind {}: {e}", cfg.bind);
            let _ = events
                .send(AdapterEvent::Health(LinkHealth {
                    link,
                    state: LinkState::Down,
                    detail: detail.clone(),
                }))
                .await;
            return Err(AdapterError::Transport(detail));
        }
    };
    let mut net = Net::new(sock.clone(), cfg.max_response_bytes)
        .map_err(AdapterError::Transport)?
        .with_max_apdu(cfg.max_apdu);
    // BACnet/SC: the hub connection is a second datalink under the same network layer
    let mut sc_start = None;
    if let Some(sc) = &cfg.sc {
        let tls = match crate::sc::tls_config(sc) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("BACnet/SC: {e}");
                let _ = events
                    .send(AdapterEvent::Health(LinkHealth {
                        link: SC_LINK.into(),
                        state: LinkState::Down,
                        detail: detail.clone(),
                    }))
                    .await;
                return Err(AdapterError::Config(detail));
            }
        };
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(256);
        let port = Arc::new(transport::ScPort::new(out_tx));
        net = net.with_sc(port.clone());
        sc_start = Some((tls, port, out_rx));
    }
    let net = Arc::new(net);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(1024);
    if let (Some(sc), Some((tls, port, out_rx))) = (&cfg.sc, sc_start) {
        let mut hubs = Vec::new();
        for h in std::iter::once(&sc.hub).chain(sc.failover_hub.iter()) {
            hubs.push(crate::config::HubUri::parse(h).map_err(AdapterError::Config)?);
        }
        let link = crate::sc::ScLink {
            hubs,
            tls,
            vmac: sc
                .vmac
                .as_deref()
                .and_then(crate::bvlc_sc::Vmac::parse)
                .unwrap_or_else(crate::sc::random_vmac),
            uuid: sc
                .uuid
                .as_deref()
                .and_then(crate::config::parse_uuid)
                .unwrap_or_else(crate::sc::random_uuid),
            heartbeat: Duration::from_secs(u64::from(sc.heartbeat_s)),
            connect_timeout: Duration::from_millis(u64::from(sc.connect_timeout_ms)),
            reconnect_min: Duration::from_millis(u64::from(sc.reconnect_min_ms)),
            reconnect_max: Duration::from_millis(u64::from(sc.reconnect_max_ms)),
            port,
            net: net.clone(),
            events: ev_tx.clone(),
        };
        tokio::spawn(link.run(out_rx, shutdown.clone()));
    }
    let mut receivers = vec![tokio::spawn(transport::receive(
        net.clone(),
        sock,
        ev_tx.clone(),
    ))];
    if let Some(b) = bsock {
        receivers.push(tokio::spawn(transport::receive(
            net.clone(),
            b,
            ev_tx.clone(),
        )));
    }
    drop(ev_tx);
    let shared = Shared {
        cfg: Arc::new(cfg),
        net,
        events,
        limits: Arc::new(Mutex::new(RateLimit::default())),
        interviews: Arc::new(tokio::sync::Semaphore::new(MAX_INTERVIEWS)),
    };
    shared
        .emit(AdapterEvent::Health(LinkHealth {
            link: link.clone(),
            state: LinkState::Up,
            detail: format!(
                "BACnet/IP on {} (broadcast {}{})",
                shared.cfg.bind,
                shared.cfg.broadcast,
                if shared.cfg.listen_broadcast {
                    ", listening"
                } else {
                    ""
                }
            ),
        }))
        .await?;
    let (int_tx, mut int_rx) = mpsc::channel::<Internal>(256);
    let mut m = Main {
        s: shared,
        devices: HashMap::new(),
        scan: None,
        int_tx,
        logs: RateLimit::default(),
        sc_state: None,
    };
    if let Some(b) = m.s.cfg.bbmd {
        let _ = m.s.net.register_foreign(b, m.s.cfg.bbmd_ttl_s).await;
    }
    m.who_is(m.s.cfg.discover_on_start).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut bbmd_due = Instant::now() + Duration::from_secs(u64::from(m.s.cfg.bbmd_ttl_s) / 2);
    let result = loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break Ok(()); }
            }
            Some(ev) = ev_rx.recv() => {
                if let Err(e) = m.event(ev).await { break Err(e); }
            }
            Some(op) = operations.recv() => m.operation(op).await,
            Some(d) = downlinks.recv() => {
                if let Err(e) = m.downlink(d).await { break Err(e); }
            }
            Some(i) = int_rx.recv() => m.internal(i),
            _ = tick.tick() => {
                m.tick();
                if let Some(b) = m.s.cfg.bbmd && Instant::now() >= bbmd_due {
                    let _ = m.s.net.register_foreign(b, m.s.cfg.bbmd_ttl_s).await;
                    bbmd_due = Instant::now() + Duration::from_secs(u64::from(m.s.cfg.bbmd_ttl_s) / 2);
                }
            }
        }
    };
    if let Some(s) = m.scan.take() {
        s.op.progress
            .finish(OperationState::Cancelled, "the gateway is stopping");
    }
    for r in receivers {
        r.abort();
    }
    for d in m.devices.values() {
        d.task.abort();
    }
    result
}

/// The link name of the BACnet/SC hub connection in health events.
pub const SC_LINK: &str = "bacnet:sc";

struct Main {
    s: Shared,
    devices: HashMap<(u16, u32), Dev>,
    scan: Option<Scan>,
    int_tx: mpsc::Sender<Internal>,
    /// Rate limit for logging unsolicited traffic (I-Have outside an object search).
    logs: RateLimit,
    /// The last BACnet/SC link state and detail reported (repeats are not re-reported).
    sc_state: Option<(LinkState, String)>,
}

impl Main {
    async fn who_is(&self, broadcast: bool) {
        self.discover(broadcast, unconfirmed::WHO_IS, &services::who_is(None))
            .await;
    }

    /// A Who-Has broadcast and sent to the configured device addresses.
    async fn who_has(&self, target: &services::HasTarget) {
        self.discover(true, unconfirmed::WHO_HAS, &services::who_has(None, target))
            .await;
    }

    /// The discovery scan, if one runs: not an object search.
    fn discovery(&mut self) -> Option<&mut Scan> {
        self.scan.as_mut().filter(|s| s.has.is_none())
    }

    async fn discover(&self, broadcast: bool, service: u8, data: &[u8]) {
        if broadcast {
            let _ = self
                .s
                .net
                .unconfirmed(Dest::IpBroadcast(self.s.cfg.broadcast), service, data)
                .await;
            if self.s.cfg.sc.is_some() {
                // Fail::ScDown while the hub connection is down: the connection sends its own
                // Who-Is when it comes up
                let _ = self
                    .s
                    .net
                    .unconfirmed(Dest::ScBroadcast, service, data)
                    .await;
            }
        }
        for a in &self.s.cfg.devices {
            let _ = self
                .s
                .net
                .unconfirmed(Dest::Peer(&Peer::direct(*a)), service, data)
                .await;
        }
    }

    fn network_of(&self, peer: &Peer) -> u16 {
        match (&peer.route, &peer.addr, &self.s.cfg.sc) {
            (Some(r), _, _) => r.net,
            (None, Link::Sc(_), Some(sc)) => sc.network,
            _ => self.s.cfg.network,
        }
    }

    /// The hub connection came up or went down: health, audit, discovery.
    async fn sc_status(&mut self, st: crate::sc::Status) -> Result<(), AdapterError> {
        let (state, detail) = match st {
            crate::sc::Status::Up {
                hub,
                failover,
                subject,
                vmac,
                took,
            } => (
                LinkState::Up,
                format!(
                    "BACnet/SC node {vmac} connected to the {} hub {hub} in {} ms (hub certificate {subject}, TLS 1.3, chains to the configured CA)",
                    if failover { "failover" } else { "primary" },
                    took.as_millis()
                ),
            ),
            crate::sc::Status::Down { detail, error } => {
                if let Some(cause) = error.as_ref().and_then(|e| e.cause()) {
                    self.s.reject(None, cause, detail.clone()).await?;
                }
                (LinkState::Down, detail)
            }
        };
        let up = state == LinkState::Up;
        if self.sc_state.as_ref() != Some(&(state, detail.clone())) {
            self.sc_state = Some((state, detail.clone()));
            tracing::info!(up, %detail, "bacnet/sc: link");
            self.s
                .emit(AdapterEvent::Health(LinkHealth {
                    link: SC_LINK.into(),
                    state,
                    detail,
                }))
                .await?;
        }
        if up
            && self
                .s
                .cfg
                .sc
                .as_ref()
                .is_some_and(|s| s.discover_on_connect)
        {
            let _ = self
                .s
                .net
                .unconfirmed(
                    Dest::ScBroadcast,
                    unconfirmed::WHO_IS,
                    &services::who_is(None),
                )
                .await;
        }
        Ok(())
    }

    async fn event(&mut self, ev: Event) -> Result<(), AdapterError> {
        match ev {
            Event::Refused { from, error } => {
                self.s
                    .reject(None, error.cause(), format!("from {from}: {error}"))
                    .await
            }
            Event::BvlcResult { from, code } => {
                if code != 0 {
                    tracing::warn!(%from, code, "bacnet: BBMD refused (BVLC-Result)");
                }
                Ok(())
            }
            Event::Request(r) => self.request(r).await,
            Event::Sc(st) => self.sc_status(st).await,
        }
    }

    async fn request(&mut self, r: Incoming) -> Result<(), AdapterError> {
        match (r.invoke_id, r.service) {
            (None, unconfirmed::I_AM) => match services::decode_i_am(&r.data) {
                Ok(i) => self.i_am(i, r.from).await,
                Err(e) => {
                    self.s
                        .reject(None, e.cause(), format!("I-Am from {}: {e}", r.from.addr))
                        .await
                }
            },
            (None, unconfirmed::COV_NOTIFICATION) | (Some(_), confirmed::COV_NOTIFICATION) => {
                match services::decode_cov_notification(&r.data) {
                    Ok(note) => {
                        let key = (self.network_of(&r.from), note.device.instance);
                        match self
                            .devices
                            .get(&key)
                            .filter(|_| note.device.kind == object::DEVICE)
                        {
                            Some(d) => {
                                let msg = DevMsg::Cov {
                                    note,
                                    invoke_id: r.invoke_id,
                                    from: r.from,
                                    raw: r.raw,
                                };
                                if d.tx.try_send(msg).is_err() {
                                    self.s
                                        .net
                                        .counters
                                        .events_dropped
                                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                Ok(())
                            }
                            None => {
                                if let Some(id) = r.invoke_id {
                                    let _ = self
                                        .s
                                        .net
                                        .error(&r.from, id, confirmed::COV_NOTIFICATION, 5, 0)
                                        .await;
                                }
                                self.s
                                    .reject(
                                        device_id(key.0, key.1),
                                        "unknown-subscription",
                                        format!(
                                            "COV notification from {} for a device Warden did not subscribe to",
                                            r.from.addr
                                        ),
                                    )
                                    .await
                            }
                        }
                    }
                    Err(e) => {
                        if let Some(id) = r.invoke_id {
                            let _ = self
                                .s
                                .net
                                .error(&r.from, id, confirmed::COV_NOTIFICATION, 5, 0)
                                .await;
                        }
                        self.s
                            .reject(
                                None,
                                e.cause(),
                                format!("COV notification from {}: {e}", r.from.addr),
                            )
                            .await
                    }
                }
            }
            (None, unconfirmed::I_HAVE) => match services::decode_i_have(&r.data) {
                Ok(h) => self.i_have(h, r.from).await,
                Err(e) => {
                    self.s
                        .reject(None, e.cause(), format!("I-Have from {}: {e}", r.from.addr))
                        .await
                }
            },
            // Who-Is, Who-Has and other devices' traffic: Warden is a client, not a device
            (None, _) => Ok(()),
            (Some(id), service) => {
                // confirmed services Warden does not serve: reject, as a device would
                let apdu = crate::apdu::encode(&crate::apdu::Apdu::Reject {
                    invoke_id: id,
                    reason: 9, // unrecognized-service
                });
                let _ = self.s.net.send_apdu(&r.from, &apdu).await;
                tracing::debug!(service, "bacnet: confirmed request rejected");
                Ok(())
            }
        }
    }

    async fn i_am(&mut self, i: services::IAm, from: Peer) -> Result<(), AdapterError> {
        let net = self.network_of(&from);
        let key = (net, i.device.instance);
        let Some(id) = device_id(net, i.device.instance) else {
            return Ok(());
        };
        if let Some(d) = self.devices.get_mut(&key) {
            if d.peer != from {
                // the device task decides: a device that still answers at its address keeps it
                let _ = d.tx.try_send(DevMsg::Seen(from));
            }
            let ready = d.ready;
            if let Some(s) = self.discovery()
                && s.seen.insert(id.clone())
            {
                s.op.progress.update(|p| {
                    p.devices_seen += 1;
                    p.device(&id, if ready { "known" } else { "interviewing" });
                });
            }
            return Ok(());
        }
        if self.devices.len() >= self.s.cfg.max_devices {
            if let Some(s) = self.discovery() {
                s.op.progress.update(|p| p.devices_refused += 1);
            }
            return self
                .s
                .reject(
                    Some(id),
                    "i-am-flood",
                    format!(
                        "I-Am from {} ignored: {} devices tracked or being interviewed (max {})",
                        from.addr,
                        self.devices.len(),
                        self.s.cfg.max_devices,
                    ),
                )
                .await;
        }
        let (tx, rx) = mpsc::channel(64);
        let task = DeviceTask {
            s: self.s.clone(),
            id: id.clone(),
            network: net,
            instance: i.device.instance,
            vendor_id: i.vendor,
            peer: from.clone(),
            objects: Vec::new(),
            subs: HashMap::new(),
            up: true,
            int_tx: self.int_tx.clone(),
        };
        let task = tokio::spawn(task.run(rx)).abort_handle();
        self.devices.insert(
            key,
            Dev {
                tx,
                task,
                id: id.clone(),
                peer: from,
                ready: false,
            },
        );
        if let Some(s) = self.discovery()
            && s.seen.insert(id.clone())
        {
            s.op.progress.update(|p| {
                p.devices_seen += 1;
                p.device(&id, "interviewing");
            });
        }
        Ok(())
    }

    /// An I-Have: a finding of the running object search if it answers it; otherwise logged
    /// (rate-limited) and dropped. A device found that Warden does not know yet is asked for its
    /// I-Am, so it is discovered and interviewed as a Who-Is finding would be.
    async fn i_have(&mut self, h: services::IHave, from: Peer) -> Result<(), AdapterError> {
        let net = self.network_of(&from);
        let answers = self
            .scan
            .as_ref()
            .and_then(|s| s.has.as_ref())
            .is_some_and(|t| t.matches(&h));
        if !answers {
            if self.logs.admit("i-have").is_some() {
                tracing::info!(device = h.device.instance, object = ?h.object, name = %h.name, from = %from.addr, "bacnet: I-Have outside an object search");
            }
            return Ok(());
        }
        if h.device.kind != object::DEVICE {
            return self
                .s
                .reject(
                    None,
                    "malformed",
                    format!(
                        "I-Have from {}: the device identifier is not a device",
                        from.addr
                    ),
                )
                .await;
        }
        let Some(id) = device_id(net, h.device.instance) else {
            return Ok(());
        };
        let known = self.devices.get(&(net, h.device.instance)).map(|d| d.ready);
        let Some(s) = self.scan.as_mut() else {
            return Ok(());
        };
        if s.found.len() >= MAX_FOUND {
            s.op.progress.update(|p| p.devices_refused += 1);
            return Ok(());
        }
        if !s.found.insert((net, h.device.instance, h.object)) {
            return Ok(());
        }
        let new_device = s.seen.insert(id.clone());
        let state = format!(
            "has {} `{}` (I-Have from {}){}",
            services::HasTarget::Id(h.object),
            h.name,
            from.addr,
            match known {
                Some(true) => "",
                Some(false) => ", interviewing",
                None => ", not discovered yet: Who-Is sent",
            }
        );
        s.op.progress.update(|p| {
            if new_device {
                p.devices_seen += 1;
            }
            p.device(&id, state);
        });
        if known.is_none() {
            let inst = h.device.instance;
            let _ = self
                .s
                .net
                .unconfirmed(
                    Dest::Peer(&from),
                    unconfirmed::WHO_IS,
                    &services::who_is(Some((inst, inst))),
                )
                .await;
        }
        Ok(())
    }

    fn internal(&mut self, i: Internal) {
        match i {
            Internal::Ready(net, inst) => {
                if let Some(d) = self.devices.get_mut(&(net, inst)) {
                    d.ready = true;
                    if let Some(s) = self.scan.as_mut().filter(|s| s.has.is_none()) {
                        let id = d.id.clone();
                        s.op.progress.update(|p| {
                            p.devices_joined += 1;
                            p.device(&id, "interviewed: pending approval unless already approved");
                        });
                    }
                }
            }
            Internal::Gone(net, inst) => {
                if let Some(d) = self.devices.remove(&(net, inst))
                    && let Some(s) = self.scan.as_mut().filter(|s| s.has.is_none())
                {
                    s.op.progress.update(|p| {
                        p.devices_refused += 1;
                        p.device(&d.id, "interview failed");
                    });
                }
            }
        }
    }

    async fn operation(&mut self, op: Operation) {
        match op.request.clone() {
            OperationRequest::Scan { seconds, has } => {
                let target = match has.as_deref().map(services::HasTarget::parse).transpose() {
                    Ok(t) => t,
                    Err(e) => {
                        op.progress
                            .finish(OperationState::Failed, format!("`has`: {e}"));
                        return;
                    }
                };
                if let Some(old) = self.scan.take() {
                    old.op
                        .progress
                        .finish(OperationState::Cancelled, "replaced by a newer scan");
                }
                let n = self.s.cfg.devices.len();
                let what = match &target {
                    None => "Who-Is".to_owned(),
                    Some(t) => format!("Who-Has {t}"),
                };
                op.progress.update(|p| {
                    p.state = OperationState::Running;
                    p.seconds_left = Some(seconds);
                    p.set_step(Some(format!(
                        "{what} sent to {} and {n} directed address{}",
                        self.s.cfg.broadcast,
                        if n == 1 { "" } else { "es" }
                    )));
                });
                self.scan = Some(Scan {
                    op,
                    until: Instant::now() + Duration::from_secs(u64::from(seconds)),
                    seen: HashSet::new(),
                    has: target.clone(),
                    found: HashSet::new(),
                });
                match target {
                    None => self.who_is(true).await,
                    Some(t) => self.who_has(&t).await,
                }
            }
            _ => op.progress.finish(
                OperationState::Failed,
                "the bacnet adapter supports scan only",
            ),
        }
    }

    fn tick(&mut self) {
        let Some(s) = self.scan.as_ref() else { return };
        let now = Instant::now();
        if now >= s.until {
            if let Some(s) = self.scan.take() {
                let n = s.seen.len();
                let detail = match &s.has {
                    None => format!(
                        "scan finished: {n} device{} answered",
                        if n == 1 { "" } else { "s" }
                    ),
                    Some(t) => format!(
                        "object search finished: {n} device{} {} {t}",
                        if n == 1 { "" } else { "s" },
                        if n == 1 { "has" } else { "have" }
                    ),
                };
                s.op.progress.finish(OperationState::Done, detail);
            }
        } else {
            let left = s.until.saturating_duration_since(now).as_secs() as u32;
            s.op.progress.update(|p| p.seconds_left = Some(left));
        }
    }

    async fn downlink(&mut self, d: Downlink) -> Result<(), AdapterError> {
        let dev = self.devices.values().find(|x| x.id == d.device);
        match dev {
            Some(x) if x.ready => {
                if let Err(mpsc::error::TrySendError::Full(DevMsg::Downlink(d))) =
                    x.tx.try_send(DevMsg::Downlink(d))
                {
                    return result(
                        &self.s,
                        &d,
                        CommandOutcome::DeviceError("device queue full".into()),
                        vec![],
                    )
                    .await;
                }
                Ok(())
            }
            _ => {
                result(
                    &self.s,
                    &d,
                    CommandOutcome::DeviceError(
                        "device not discovered (or still being interviewed)".into(),
                    ),
                    vec![],
                )
                .await
            }
        }
    }
}

async fn result(
    s: &Shared,
    d: &Downlink,
    outcome: CommandOutcome,
    points: Vec<Point>,
) -> Result<(), AdapterError> {
    s.emit(AdapterEvent::CommandResult(CommandResult {
        command_id: d.command_id.clone(),
        device: d.device.clone(),
        outcome,
        points,
    }))
    .await
}

struct Sub {
    renew_at: Instant,
}

struct DeviceTask {
    s: Shared,
    id: DeviceId,
    network: u16,
    instance: u32,
    vendor_id: u16,
    peer: Peer,
    objects: Vec<ObjectInfo>,
    subs: HashMap<ObjectId, Sub>,
    up: bool,
    int_tx: mpsc::Sender<Internal>,
}

/// The datalink a device is reached on, and what it proves about who sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// BACnet/IP: anyone on the LAN can send anything.
    Ip,
    /// BACnet/SC: TLS 1.3 with mutual certificates to a hub that chains to the configured CA.
    Sc,
}

impl Channel {
    pub fn of(peer: &Peer) -> Self {
        if peer.is_sc() { Self::Sc } else { Self::Ip }
    }

    pub fn assurance(self) -> Assurance {
        match self {
            Self::Ip => Assurance::None,
            Self::Sc => Assurance::Certificate,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "BACnet/IP",
            Self::Sc => "BACnet/SC",
        }
    }
}

impl DeviceTask {
    fn dev_oid(&self) -> ObjectId {
        ObjectId::new(object::DEVICE, self.instance)
    }

    fn channel(&self) -> Channel {
        Channel::of(&self.peer)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DevMsg>) {
        let mut attempt = 0;
        let ann = loop {
            let Ok(_slot) = self.s.interviews.clone().acquire_owned().await else {
                return;
            };
            match self.interview().await {
                Ok(a) => break a,
                Err(e) => {
                    attempt += 1;
                    tracing::info!(device = %self.id, error = %e, attempt, "bacnet: interview failed");
                    if attempt >= INTERVIEW_ATTEMPTS {
                        let _ = self
                            .int_tx
                            .send(Internal::Gone(self.network, self.instance))
                            .await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        if self.s.emit(AdapterEvent::Announce(ann)).await.is_err() {
            return;
        }
        let _ = self
            .int_tx
            .send(Internal::Ready(self.network, self.instance))
            .await;
        self.subscribe_all(false).await;
        if self.poll(true).await.is_err() {
            return;
        }
        let poll_every = Duration::from_secs(u64::from(self.s.cfg.poll_s));
        let mut next_poll = Instant::now() + poll_every;
        loop {
            let next_renew = self.subs.values().map(|s| s.renew_at).min();
            let wake = next_renew.map_or(next_poll, |r| r.min(next_poll));
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    let r = match msg {
                        DevMsg::Downlink(d) => self.downlink(d).await,
                        DevMsg::Cov { note, invoke_id, from, raw } => self.cov(note, invoke_id, from, raw).await,
                        DevMsg::Seen(p) => self.seen_at(p).await,
                    };
                    if r.is_err() { return; }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_poll {
                        next_poll = Instant::now() + poll_every;
                        if self.poll(false).await.is_err() { return; }
                    }
                    if self.up {
                        self.subscribe_all(true).await;
                    }
                }
            }
        }
    }

    /// An I-Am for this device from another address: a device that moved, or someone claiming
    /// its instance. While the device answers at its known address it keeps it (the claim is
    /// refused and audited); once it has stopped answering, the new address is taken.
    async fn seen_at(&mut self, p: Peer) -> Result<(), AdapterError> {
        if p == self.peer {
            return Ok(());
        }
        if self.up {
            return self
                .s
                .reject(
                    Some(self.id.clone()),
                    "address-conflict",
                    format!(
                        "I-Am for {} from {} while the device answers at {}",
                        self.id, p.addr, self.peer.addr
                    ),
                )
                .await;
        }
        tracing::info!(device = %self.id, from = %self.peer.addr, to = %p.addr, "bacnet: device moved");
        self.peer = p;
        Ok(())
    }

    async fn interview(&mut self) -> Result<Announcement, Fail> {
        let dev = self.dev_oid();
        let wanted = [
            prop::OBJECT_NAME,
            prop::VENDOR_NAME,
            prop::MODEL_NAME,
            prop::FIRMWARE_REVISION,
            prop::APPLICATION_SOFTWARE_VERSION,
        ];
        let mut info: HashMap<u32, String> = HashMap::new();
        let spec = [ReadSpec {
            object: dev,
            properties: wanted.iter().map(|p| (*p, None)).collect(),
        }];
        match self.s.read_multiple(&self.peer, &spec).await {
            Ok(rs) => {
                for r in rs {
                    if let Ok(v) = r.value
                        && let Some(AppValue::Text(t)) = services::first_app(&v)
                    {
                        info.insert(r.property, t.clone());
                    }
                }
            }
            Err(Fail::Timeout(n)) => return Err(Fail::Timeout(n)),
            Err(_) => {
                // no ReadPropertyMultiple: one property at a time
                for p in wanted {
                    if let Ok(v) = self.s.read(&self.peer, dev, p, None).await
                        && let Some(AppValue::Text(t)) = services::first_app(&v)
                    {
                        info.insert(p, t.clone());
                    }
                }
            }
        }
        let list = self.object_list().await?;
        self.objects = self.describe(&list).await?;
        let assurance = match self.channel() {
            Channel::Sc => format!(
                "certificate (BACnet/SC through a hub whose certificate {} chains to the configured CA)",
                self.s
                    .net
                    .sc()
                    .and_then(|s| s.hub_subject())
                    .unwrap_or_default()
            ),
            Channel::Ip => "none (BACnet/IP is unauthenticated)".to_owned(),
        };
        let mut details = vec![
            ("address".to_owned(), self.peer.addr.to_string()),
            ("datalink".to_owned(), self.channel().name().to_owned()),
            ("vendor_id".to_owned(), self.vendor_id.to_string()),
            ("assurance".to_owned(), assurance),
            (
                "object_list".to_owned(),
                format!(
                    "{} objects, {} mapped to points",
                    list.len(),
                    self.objects.len()
                ),
            ),
        ];
        // one line per point (the audit keeps the first 16 details)
        for o in &self.objects {
            let unit = o.units.and_then(points::unit_symbol).unwrap_or_default();
            details.push((
                o.point.clone(),
                format!(
                    "{},{} {:?} {unit}",
                    object::name(o.id.kind),
                    o.id.instance,
                    o.name
                )
                .trim_end()
                .to_owned(),
            ));
        }
        if let Some(n) = info.get(&prop::OBJECT_NAME) {
            details.insert(0, ("object_name".to_owned(), n.clone()));
        }
        if let Some(r) = &self.peer.route {
            details.push(("network".to_owned(), r.net.to_string()));
        }
        Ok(Announcement {
            device: Some(self.id.clone()),
            manufacturer: info
                .get(&prop::VENDOR_NAME)
                .cloned()
                .or_else(|| Some(format!("vendor {}", self.vendor_id))),
            model: info.get(&prop::MODEL_NAME).cloned(),
            firmware: info
                .get(&prop::FIRMWARE_REVISION)
                .or_else(|| info.get(&prop::APPLICATION_SOFTWARE_VERSION))
                .cloned(),
            serial: None,
            details,
        })
    }

    /// The device's object list: whole, or element by element when it is too long to read at once.
    async fn object_list(&self) -> Result<Vec<ObjectId>, Fail> {
        let dev = self.dev_oid();
        let ids = |v: &[Datum]| -> Vec<ObjectId> {
            v.iter()
                .filter_map(|d| match d {
                    Datum::App(AppValue::ObjectId(o)) => Some(*o),
                    _ => None,
                })
                .collect()
        };
        match self.s.read(&self.peer, dev, prop::OBJECT_LIST, None).await {
            Ok(v) => Ok(ids(&v).into_iter().take(self.s.cfg.max_objects).collect()),
            Err(Fail::Timeout(n)) => Err(Fail::Timeout(n)),
            Err(_) => {
                let n = match services::first_app(
                    &self
                        .s
                        .read(&self.peer, dev, prop::OBJECT_LIST, Some(0))
                        .await?,
                ) {
                    Some(AppValue::Unsigned(n)) => *n as usize,
                    _ => 0,
                };
                let mut out = Vec::new();
                for i in 1..=n.min(self.s.cfg.max_objects) {
                    let v = self
                        .s
                        .read(&self.peer, dev, prop::OBJECT_LIST, Some(i as u32))
                        .await?;
                    out.extend(ids(&v));
                }
                Ok(out)
            }
        }
    }

    /// Names, units and state counts of the objects that become points.
    async fn describe(&self, list: &[ObjectId]) -> Result<Vec<ObjectInfo>, Fail> {
        let mapped: Vec<ObjectId> = list
            .iter()
            .copied()
            .filter(|o| points::family(o.kind).is_some())
            .collect();
        let mut out: Vec<ObjectInfo> = Vec::new();
        for chunk in mapped.chunks(RPM_BATCH) {
            let specs: Vec<ReadSpec> = chunk
                .iter()
                .map(|o| {
                    let mut props = vec![(prop::OBJECT_NAME, None)];
                    match points::family(o.kind) {
                        Some(points::Family::Analog) => props.push((prop::UNITS, None)),
                        Some(points::Family::MultiState) => {
                            props.push((prop::NUMBER_OF_STATES, None))
                        }
                        _ => {}
                    }
                    ReadSpec {
                        object: *o,
                        properties: props,
                    }
                })
                .collect();
            let results = self.s.read_multiple(&self.peer, &specs).await?;
            for o in chunk {
                let get = |p: u32| {
                    results
                        .iter()
                        .find(|r| r.object == *o && r.property == p)
                        .and_then(|r| r.value.as_ref().ok())
                        .and_then(|v| services::first_app(v).cloned())
                };
                let name = match get(prop::OBJECT_NAME) {
                    Some(AppValue::Text(t)) => t,
                    _ => String::new(),
                };
                let taken: Vec<String> = out.iter().map(|x| x.point.clone()).collect();
                let point = points::point_name(*o, &name, &taken);
                let as_u32 = |v: Option<AppValue>| match v {
                    Some(AppValue::Enumerated(e)) => Some(e),
                    Some(AppValue::Unsigned(u)) => u32::try_from(u).ok(),
                    _ => None,
                };
                out.push(ObjectInfo {
                    id: *o,
                    name,
                    point,
                    units: as_u32(get(prop::UNITS)),
                    states: as_u32(get(prop::NUMBER_OF_STATES)),
                });
            }
        }
        Ok(out)
    }

    fn cov_mode(&self) -> &CovMode {
        self.s.cfg.cov_for(self.instance)
    }

    /// Subscribes (or, with `due_only`, renews the subscriptions whose renewal time came).
    async fn subscribe_all(&mut self, due_only: bool) {
        let confirmed = match self.cov_mode() {
            CovMode::Off => return,
            CovMode::Confirmed => true,
            CovMode::Unconfirmed => false,
        };
        let lifetime = self.s.cfg.cov_lifetime_s;
        let renew_after = Duration::from_millis(u64::from(lifetime) * 1000 * 2 / 3);
        let now = Instant::now();
        let targets: Vec<ObjectId> = self
            .objects
            .iter()
            .map(|o| o.id)
            .filter(|o| match self.subs.get(o) {
                Some(s) => s.renew_at <= now,
                None => !due_only,
            })
            .collect();
        for o in targets {
            let req = services::subscribe_cov(PROCESS_ID, o, Some((confirmed, lifetime)));
            match self
                .s
                .request(&self.peer, confirmed::SUBSCRIBE_COV, &req)
                .await
            {
                Ok(_) => {
                    self.subs.insert(
                        o,
                        Sub {
                            renew_at: Instant::now() + renew_after,
                        },
                    );
                }
                Err(Fail::Timeout(_)) => {
                    // the device went quiet: polling notices and resubscribes when it is back
                    self.subs.clear();
                    return;
                }
                Err(e) => {
                    tracing::info!(device = %self.id, object = ?o, error = %e, "bacnet: no COV, polling instead");
                    self.subs.remove(&o);
                }
            }
        }
    }

    fn message(&self, points: Vec<Point>, raw: Vec<u8>) -> Message {
        let mut m = Message::telemetry(self.id.clone(), points);
        m.assurance = self.channel().assurance();
        m.fresh = false;
        m.raw = raw;
        m
    }

    async fn health(&self, state: LinkState, detail: String) -> Result<(), AdapterError> {
        self.s
            .emit(AdapterEvent::Health(LinkHealth {
                link: format!("bacnet:{}", self.id.address()),
                state,
                detail,
            }))
            .await
    }

    /// Reads the present values of the objects without a subscription (all of them with `all`);
    /// with nothing to read, checks the device is alive. Marks the device down/up.
    async fn poll(&mut self, all: bool) -> Result<(), AdapterError> {
        let targets: Vec<ObjectInfo> = self
            .objects
            .iter()
            .filter(|o| all || !self.subs.contains_key(&o.id))
            .cloned()
            .collect();
        let outcome = if targets.is_empty() {
            self.s
                .read(&self.peer, self.dev_oid(), prop::SYSTEM_STATUS, None)
                .await
                .map(|_| Vec::new())
        } else {
            let mut pts = Vec::new();
            let mut failed = None;
            for chunk in targets.chunks(RPM_BATCH) {
                let specs: Vec<ReadSpec> = chunk
                    .iter()
                    .map(|o| ReadSpec {
                        object: o.id,
                        properties: vec![(prop::PRESENT_VALUE, None)],
                    })
                    .collect();
                match self.s.read_multiple(&self.peer, &specs).await {
                    Ok(rs) => {
                        for o in chunk {
                            if let Some(Ok(v)) = rs
                                .iter()
                                .find(|r| r.object == o.id && r.property == prop::PRESENT_VALUE)
                                .map(|r| &r.value)
                                && let Some(p) = points::point(o, v)
                            {
                                pts.push(p);
                            }
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(pts),
            }
        };
        match outcome {
            Ok(pts) => {
                if !self.up {
                    self.up = true;
                    self.health(
                        LinkState::Up,
                        format!("answering again at {}", self.peer.addr),
                    )
                    .await?;
                    self.subs.clear();
                    self.subscribe_all(false).await;
                    return Box::pin(self.poll(true)).await;
                }
                if !pts.is_empty() {
                    self.s
                        .emit(AdapterEvent::Uplink(self.message(pts, Vec::new())))
                        .await?;
                }
                Ok(())
            }
            Err(Fail::Timeout(n)) => {
                if self.up {
                    self.up = false;
                    self.subs.clear();
                    self.health(
                        LinkState::Down,
                        format!("no answer from {} after {n} attempts", self.peer.addr),
                    )
                    .await?;
                }
                Ok(())
            }
            Err(e) => {
                tracing::info!(device = %self.id, error = %e, "bacnet: poll failed");
                Ok(())
            }
        }
    }

    async fn cov(
        &mut self,
        note: services::CovNotification,
        invoke_id: Option<u8>,
        from: Peer,
        raw: Vec<u8>,
    ) -> Result<(), AdapterError> {
        let known = note.process == PROCESS_ID && self.subs.contains_key(&note.object);
        if from.addr != self.peer.addr {
            if let Some(id) = invoke_id {
                let _ = self
                    .s
                    .net
                    .error(&from, id, confirmed::COV_NOTIFICATION, 5, 0)
                    .await;
            }
            return self
                .s
                .reject(
                    Some(self.id.clone()),
                    "spoofed-source",
                    format!(
                        "COV notification for {} from {} (the device is at {})",
                        self.id, from.addr, self.peer.addr
                    ),
                )
                .await;
        }
        if !known {
            if let Some(id) = invoke_id {
                let _ = self
                    .s
                    .net
                    .error(&from, id, confirmed::COV_NOTIFICATION, 5, 0)
                    .await;
            }
            return self
                .s
                .reject(
                    Some(self.id.clone()),
                    "unknown-subscription",
                    format!(
                        "COV notification for {},{} (process {}) that Warden did not subscribe to",
                        object::name(note.object.kind),
                        note.object.instance,
                        note.process
                    ),
                )
                .await;
        }
        if let Some(id) = invoke_id {
            let _ = self
                .s
                .net
                .simple_ack(&from, id, confirmed::COV_NOTIFICATION)
                .await;
        }
        let Some(o) = self.objects.iter().find(|o| o.id == note.object) else {
            return Ok(());
        };
        let pts: Vec<Point> = note
            .values
            .iter()
            .filter(|v| v.0 == prop::PRESENT_VALUE)
            .filter_map(|v| points::point(o, &v.2))
            .collect();
        if pts.is_empty() {
            return Ok(());
        }
        self.s
            .emit(AdapterEvent::Uplink(self.message(pts, raw)))
            .await
    }

    async fn downlink(&mut self, d: Downlink) -> Result<(), AdapterError> {
        // the command travels on this device's datalink: not below what its profile requires
        let channel = self.channel();
        if channel.assurance() < d.min_assurance {
            return result(
                &self.s,
                &d,
                CommandOutcome::Denied(format!(
                    "bacnet: {} is reached over {} (assurance {}), below the {} its profile requires (nothing sent)",
                    self.id,
                    channel.name(),
                    channel.assurance().as_str(),
                    d.min_assurance.as_str()
                )),
                vec![],
            )
            .await;
        }
        let w = match points::command(&self.objects, &d.command.name, &d.command.args) {
            Ok(w) => w,
            Err(r) => {
                return result(
                    &self.s,
                    &d,
                    CommandOutcome::Denied(format!("bacnet: {r} (nothing sent)")),
                    vec![],
                )
                .await;
            }
        };
        let req =
            services::write_property(w.object, prop::PRESENT_VALUE, None, &w.value, w.priority);
        match self
            .s
            .request(&self.peer, confirmed::WRITE_PROPERTY, &req)
            .await
        {
            Ok(_) => {
                let mut pts = Vec::new();
                if let Ok(v) = self
                    .s
                    .read(&self.peer, w.object, prop::PRESENT_VALUE, None)
                    .await
                    && let Some(o) = self.objects.iter().find(|o| o.id == w.object)
                    && let Some(p) = points::point(o, &v)
                {
                    pts.push(p);
                }
                result(&self.s, &d, CommandOutcome::Delivered, pts).await
            }
            Err(Fail::Timeout(n)) => {
                tracing::info!(device = %self.id, attempts = n, "bacnet: write timed out");
                result(&self.s, &d, CommandOutcome::Timeout, vec![]).await
            }
            Err(e) => {
                result(
                    &self.s,
                    &d,
                    CommandOutcome::DeviceError(e.to_string()),
                    vec![],
                )
                .await
            }
        }
    }
}
