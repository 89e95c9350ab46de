//! One link (a TCP/TLS connection or a serial line) and the devices behind it. A single task owns
//! the transport, so there is exactly one outstanding request at a time; on RTU the inter-frame
//! silence is kept between transactions. Each request has a timeout and bounded retries with
//! back-off; a device that stops answering is polled less often (up to `max_backoff_ms`) so it costs
//! the others at most its timeout per attempt. Transport failures close the connection; it is
//! re-opened after `reconnect_ms` while the other devices keep their schedule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Client, Context, Reader, Writer};
use tokio_modbus::slave::{Slave, SlaveContext};
use tracing::{debug, info, warn};
use warden_core::{
    AdapterEvent, Announcement, Assurance, CommandOutcome, CommandResult, DeviceId, Downlink, Kind,
    LinkHealth, LinkState, Message, Point, Value,
};

use crate::codec;
use crate::config::{DeviceConfig, LinkConfig, PointConfig, Publish, Table, Transport};
use crate::plan::{ReadRequest, plan};
use crate::transport::{self, Peer};

/// `<transport>-<endpoint>-u<unit>` (or the configured address), as a device id.
pub fn device_id(l: &LinkConfig, d: &DeviceConfig) -> Result<DeviceId, String> {
    let addr = d
        .address
        .clone()
        .unwrap_or_else(|| format!("{}-u{}", l.endpoint(), d.unit));
    let clean: String = addr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:~@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    DeviceId::new(crate::PROTOCOL, &clean).map_err(|e| format!("device address `{addr}`: {e}"))
}

const WAITING: &str = "link down, waiting to reconnect";

/// The outcome of one request after retries.
#[derive(Debug)]
enum Failure {
    Exception(u8),
    Timeout,
    Transport(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Self::Exception(c) => codec::exception_name(*c),
            Self::Timeout => "timeout".into(),
            Self::Transport(e) => e.clone(),
        }
    }
}

enum Data {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

struct Group {
    interval: Duration,
    next_due: Instant,
    points: Vec<PointConfig>,
    requests: Vec<ReadRequest>,
    /// When every point of the group was last published.
    last_full: Option<Instant>,
}

struct Device {
    id: DeviceId,
    unit: u8,
    cfg: DeviceConfig,
    groups: Vec<Group>,
    last: HashMap<String, Value>,
    /// Consecutive polls without an answer.
    failures: u32,
    /// Requests currently answered with an exception, by `(table, start)`.
    exceptions: HashMap<(u8, u16), u8>,
    announced: Option<Option<String>>,
}

/// A link and its devices.
pub struct Link {
    cfg: LinkConfig,
    name: String,
    events: mpsc::Sender<AdapterEvent>,
    devices: Vec<Device>,
    conn: Option<Context>,
    peer: Option<Peer>,
    tls: Option<Arc<rustls::ClientConfig>>,
    tls_error: Option<String>,
    next_open: Instant,
    health: Option<(LinkState, String)>,
    inter_frame: Duration,
    last_frame: Instant,
    /// Set while a new connection has not answered yet; its up-report waits for the first answer
    /// (a TLS server that refuses our client certificate does so only after the handshake).
    unconfirmed: Option<String>,
}

fn fc_of(t: Table) -> u8 {
    match t {
        Table::Coil => 1,
        Table::DiscreteInput => 2,
        Table::Holding => 3,
        Table::Input => 4,
    }
}

impl Link {
    pub fn new(cfg: LinkConfig, events: mpsc::Sender<AdapterEvent>) -> Result<Self, String> {
        let now = Instant::now();
        let mut devices = Vec::new();
        for d in &cfg.devices {
            let groups = d
                .groups
                .iter()
                .map(|g| Group {
                    interval: Duration::from_millis(g.interval_ms),
                    next_due: now,
                    requests: plan(&g.points, cfg.max_gap),
                    points: g.points.clone(),
                    last_full: None,
                })
                .collect();
            devices.push(Device {
                id: device_id(&cfg, d)?,
                unit: d.unit,
                cfg: d.clone(),
                groups,
                last: HashMap::new(),
                failures: 0,
                exceptions: HashMap::new(),
                announced: None,
            });
        }
        let char_us = 11_000_000 / u64::from(cfg.baud.max(1));
        let inter_frame = match cfg.transport {
            Transport::Rtu => Duration::from_micros(
                cfg.inter_frame_us
                    .unwrap_or_else(|| (char_us * 7 / 2).max(1750)),
            ),
            _ => Duration::ZERO,
        };
        Ok(Self {
            name: cfg.link_name(),
            cfg,
            events,
            devices,
            conn: None,
            peer: None,
            tls: None,
            tls_error: None,
            next_open: now,
            health: None,
            inter_frame,
            last_frame: now,
            unconfirmed: None,
        })
    }

    async fn emit(&mut self, e: AdapterEvent) -> bool {
        self.events.send(e).await.is_ok()
    }

    async fn set_health(&mut self, state: LinkState, detail: String) {
        if self.health.as_ref().map(|(s, d)| (s, d.as_str())) == Some((&state, detail.as_str())) {
            return;
        }
        match state {
            LinkState::Up => info!(link = %self.name, "modbus link up: {detail}"),
            _ => warn!(link = %self.name, state = ?state, "modbus link: {detail}"),
        }
        self.health = Some((state, detail.clone()));
        let h = LinkHealth {
            link: format!("modbus:{}", self.name),
            state,
            detail,
        };
        self.emit(AdapterEvent::Health(h)).await;
    }

    /// Runs until shutdown.
    pub async fn run(
        mut self,
        mut downlinks: mpsc::Receiver<Downlink>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.cfg.transport == Transport::Tls {
            match transport::tls_config(&self.cfg) {
                Ok(c) => self.tls = Some(c),
                Err(e) => self.tls_error = Some(e.to_string()),
            }
        }
        let mut downlinks_open = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let next = self.next_due();
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() { break; }
                }
                d = downlinks.recv(), if downlinks_open => match d {
                    Some(d) => {
                        let r = self.command(&d).await;
                        if !self.emit(AdapterEvent::CommandResult(r)).await { break; }
                    }
                    None => downlinks_open = false,
                },
                _ = tokio::time::sleep_until(next.0) => {
                    if !self.poll(next.1, next.2).await { break; }
                }
            }
        }
        if let Some(mut c) = self.conn.take() {
            let _ = c.disconnect().await;
        }
    }

    /// The earliest due group: `(when, device, group)`.
    fn next_due(&self) -> (Instant, usize, usize) {
        let mut best = (Instant::now() + Duration::from_secs(3600), usize::MAX, 0);
        for (di, d) in self.devices.iter().enumerate() {
            for (gi, g) in d.groups.iter().enumerate() {
                if g.next_due < best.0 {
                    best = (g.next_due, di, gi);
                }
            }
        }
        best
    }

    /// Makes sure the transport is open. `Err` with the reason when it is not (yet).
    async fn ensure_open(&mut self) -> Result<(), String> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some(e) = self.tls_error.clone() {
            self.set_health(LinkState::Down, e.clone()).await;
            return Err(e);
        }
        let now = Instant::now();
        if now < self.next_open {
            return Err(WAITING.into());
        }
        match transport::open(&self.cfg, self.tls.as_ref()).await {
            Ok((c, peer)) => {
                self.conn = Some(c);
                self.peer = peer;
                let detail = match &self.peer {
                    Some(p) => format!(
                        "connected; server certificate sha256:{} role {}",
                        p.fingerprint,
                        p.role.as_deref().unwrap_or("(none)")
                    ),
                    None => "connected".into(),
                };
                if self.cfg.transport == Transport::Tls {
                    self.unconfirmed = Some(detail);
                } else {
                    self.set_health(LinkState::Up, detail).await;
                }
                Ok(())
            }
            Err(e) => {
                self.next_open = Instant::now() + Duration::from_millis(self.cfg.reconnect_ms);
                let e = e.to_string();
                self.set_health(LinkState::Down, e.clone()).await;
                Err(e)
            }
        }
    }

    fn close(&mut self, why: &str) {
        self.unconfirmed = None;
        if self.conn.take().is_some() {
            debug!(link = %self.name, "closing modbus transport: {why}");
            // an immediate reconnect attempt is fine after a broken connection
            self.next_open = Instant::now();
        }
    }

    /// Explains TLS failures that only show on the first read (TLS 1.3 client-auth refusals).
    fn explain(&self, e: &std::io::Error) -> String {
        let s = e.to_string();
        if self.cfg.transport == Transport::Tls
            && (self.unconfirmed.is_some()
                || s.contains("alert")
                || s.contains("Certificate")
                || s.contains("certificate"))
        {
            format!(
                "tls: the server refused the session ({s}); is our client certificate trusted by it?"
            )
        } else {
            s
        }
    }

    /// One transaction with timeout, on the open transport.
    async fn transact(&mut self, unit: u8, req: &Req) -> Result<Data, Failure> {
        if !self.inter_frame.is_zero() {
            tokio::time::sleep_until(self.last_frame + self.inter_frame).await;
        }
        let Some(ctx) = self.conn.as_mut() else {
            return Err(Failure::Transport("not connected".into()));
        };
        ctx.set_slave(Slave(unit));
        let t = Duration::from_millis(self.cfg.timeout_ms);
        let fut = async {
            match req {
                Req::Read(t, a, n) => match t {
                    Table::Coil => ctx.read_coils(*a, *n).await.map(|r| r.map(Data::Bits)),
                    Table::DiscreteInput => ctx
                        .read_discrete_inputs(*a, *n)
                        .await
                        .map(|r| r.map(Data::Bits)),
                    Table::Holding => ctx
                        .read_holding_registers(*a, *n)
                        .await
                        .map(|r| r.map(Data::Words)),
                    Table::Input => ctx
                        .read_input_registers(*a, *n)
                        .await
                        .map(|r| r.map(Data::Words)),
                },
                Req::Coil(a, v) => ctx
                    .write_single_coil(*a, *v)
                    .await
                    .map(|r| r.map(|()| Data::Bits(vec![]))),
                Req::Coils(a, v) => ctx
                    .write_multiple_coils(*a, v)
                    .await
                    .map(|r| r.map(|()| Data::Bits(vec![]))),
                Req::Register(a, v) => ctx
                    .write_single_register(*a, *v)
                    .await
                    .map(|r| r.map(|()| Data::Words(vec![]))),
                Req::Registers(a, v) => ctx
                    .write_multiple_registers(*a, v)
                    .await
                    .map(|r| r.map(|()| Data::Words(vec![]))),
            }
        };
        let r = tokio::time::timeout(t, fut).await;
        self.last_frame = Instant::now();
        match r {
            Err(_) => {
                // a late answer would be taken for the next request's: start afresh on TCP/TLS;
                // on a serial line the port stays open (other units share it)
                if self.cfg.transport != Transport::Rtu {
                    self.close("timeout");
                }
                Err(Failure::Timeout)
            }
            Ok(Ok(Ok(d))) => {
                if let Some(detail) = self.unconfirmed.take() {
                    self.set_health(LinkState::Up, detail).await;
                }
                Ok(d)
            }
            Ok(Ok(Err(code))) => {
                if let Some(detail) = self.unconfirmed.take() {
                    self.set_health(LinkState::Up, detail).await;
                }
                Err(Failure::Exception(u8::from(code)))
            }
            Ok(Err(e)) => {
                let msg = match &e {
                    tokio_modbus::Error::Transport(io) => self.explain(io),
                    other => other.to_string(),
                };
                self.close(&msg);
                if msg.starts_with("tls: the server refused") {
                    // retrying at once would be refused again
                    self.next_open = Instant::now() + Duration::from_millis(self.cfg.reconnect_ms);
                }
                Err(Failure::Transport(msg))
            }
        }
    }

    /// A transaction with reconnects, retries and back-off. Exceptions are answers: not retried.
    async fn request(&mut self, unit: u8, req: &Req) -> Result<Data, Failure> {
        let mut last = Failure::Timeout;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                let b = self
                    .cfg
                    .backoff_ms
                    .saturating_mul(1 << (attempt - 1).min(10));
                tokio::time::sleep(Duration::from_millis(b)).await;
            }
            if let Err(e) = self.ensure_open().await {
                // keep the first attempt's reason: it is more telling than "waiting to reconnect"
                return Err(if attempt > 0 {
                    last
                } else {
                    Failure::Transport(e)
                });
            }
            match self.transact(unit, req).await {
                Ok(d) => return Ok(d),
                Err(Failure::Exception(c)) => return Err(Failure::Exception(c)),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    fn message(&self, id: &DeviceId, kind: Kind, points: Vec<Point>) -> Message {
        let mut m = Message::telemetry(id.clone(), points);
        m.kind = kind;
        if let Some(p) = &self.peer {
            m.assurance = Assurance::Certificate;
            m.fresh = true;
            m.role = p.role.clone();
        }
        m
    }

    /// Polls one group; `false` when the gateway has gone.
    async fn poll(&mut self, di: usize, gi: usize) -> bool {
        let Some((unit, requests)) = self
            .devices
            .get(di)
            .and_then(|d| d.groups.get(gi).map(|g| (d.unit, g.requests.clone())))
        else {
            return true;
        };
        let started = Instant::now();
        let full = self.devices.get(di).is_some_and(|d| {
            let refresh = Duration::from_millis(d.cfg.refresh_ms);
            d.cfg.publish == Publish::Always
                || d.groups.get(gi).is_some_and(|g| {
                    g.last_full.is_none_or(|t| {
                        !refresh.is_zero() && started.saturating_duration_since(t) >= refresh
                    })
                })
        });
        let mut values: Vec<(usize, Value)> = Vec::new();
        let mut raw = Vec::new();
        let mut failed: Option<Failure> = None;
        let mut events: Vec<Message> = Vec::new();
        for r in &requests {
            let res = self
                .request(unit, &Req::Read(r.table, r.start, r.count))
                .await;
            let key = (fc_of(r.table), r.start);
            let Some(dev) = self.devices.get_mut(di) else {
                return true;
            };
            match res {
                Ok(data) => {
                    dev.exceptions.remove(&key);
                    let Some(g) = dev.groups.get(gi) else {
                        return true;
                    };
                    for (pi, off) in &r.items {
                        let Some(p) = g.points.get(*pi) else { continue };
                        let v = match &data {
                            Data::Bits(b) => {
                                codec::decode_bit(b.get(usize::from(*off)..).unwrap_or(&[]))
                            }
                            Data::Words(w) => {
                                let s = usize::from(*off);
                                match w.get(s..s + usize::from(p.width())) {
                                    Some(regs) => codec::decode(p, regs),
                                    None => Err(codec::CodecError::Length {
                                        want: usize::from(p.width()),
                                        got: w.len().saturating_sub(s),
                                    }),
                                }
                            }
                        };
                        match v {
                            Ok(v) => values.push((*pi, v)),
                            Err(e) => {
                                warn!(device = %dev.id, point = %p.name, "undecodable answer: {e}")
                            }
                        }
                    }
                    match &data {
                        Data::Words(w) => w
                            .iter()
                            .for_each(|x| raw.extend_from_slice(&x.to_be_bytes())),
                        Data::Bits(b) => raw.extend(b.iter().map(|x| u8::from(*x))),
                    }
                }
                Err(Failure::Exception(code)) => {
                    if dev.exceptions.insert(key, code) != Some(code) || full {
                        let name = codec::exception_name(code);
                        warn!(device = %dev.id, fc = key.0, address = r.start, count = r.count, "modbus exception: {name}");
                        let mut m = Message::telemetry(
                            dev.id.clone(),
                            vec![Point::new("exception", Value::Text(name))],
                        );
                        m.kind = Kind::Event;
                        m.raw = vec![key.0 | 0x80, code];
                        events.push(m);
                    }
                }
                Err(f) => {
                    failed = Some(f);
                    break;
                }
            }
        }
        let peer_serial = self
            .peer
            .as_ref()
            .map(|p| format!("sha256:{}", p.fingerprint));
        let interval_ok;
        let mut out: Vec<AdapterEvent> = Vec::new();
        {
            let Some(dev) = self.devices.get(di) else {
                return true;
            };
            interval_ok = failed.is_none();
            if interval_ok && dev.announced.as_ref() != Some(&peer_serial) {
                out.push(AdapterEvent::Announce(Announcement {
                    device: Some(dev.id.clone()),
                    manufacturer: None,
                    model: Some(format!("modbus unit {}", dev.unit)),
                    firmware: None,
                    serial: peer_serial.clone(),
                    details: Vec::new(),
                }));
            }
            for mut e in events {
                let base = self.message(&dev.id, Kind::Event, vec![]);
                e.assurance = base.assurance;
                e.fresh = base.fresh;
                e.role = base.role;
                out.push(AdapterEvent::Uplink(e));
            }
        }
        let Some(dev) = self.devices.get_mut(di) else {
            return true;
        };
        let Some(g) = dev.groups.get_mut(gi) else {
            return true;
        };
        match &failed {
            None => {
                dev.failures = 0;
                dev.announced = Some(peer_serial);
                if full {
                    g.last_full = Some(started);
                }
                let mut points = Vec::new();
                for (pi, v) in values {
                    let Some(p) = g.points.get(pi) else { continue };
                    let deadband = p.deadband.unwrap_or(dev.cfg.deadband);
                    let changed = match (dev.last.get(&p.name), &v) {
                        (Some(Value::Float(a)), Value::Float(b)) => {
                            (a - b).abs() > deadband || a.is_nan() != b.is_nan()
                        }
                        (Some(old), new) => old != new,
                        (None, _) => true,
                    };
                    if changed || full {
                        dev.last.insert(p.name.clone(), v.clone());
                        let mut pt = Point::new(p.name.clone(), v);
                        pt.unit = p.unit.clone();
                        points.push(pt);
                    }
                }
                g.next_due = started + g.interval;
                if g.next_due < Instant::now() {
                    g.next_due = Instant::now();
                }
                if !points.is_empty() || dev.cfg.heartbeat {
                    let id = dev.id.clone();
                    let mut m = self.message(&id, Kind::Telemetry, points);
                    m.raw = raw;
                    out.push(AdapterEvent::Uplink(m));
                }
                if matches!(self.health, Some((LinkState::Degraded, _)))
                    && self.devices.iter().all(|d| d.failures == 0)
                {
                    self.set_health(LinkState::Up, "all devices answering".into())
                        .await;
                }
            }
            Some(f) => {
                dev.failures = dev.failures.saturating_add(1);
                let back = g
                    .interval
                    .max(Duration::from_millis(100))
                    .saturating_mul(1 << dev.failures.min(8))
                    .min(Duration::from_millis(self.cfg.max_backoff_ms).max(g.interval));
                g.next_due = Instant::now() + back;
                let detail = format!("unit {} not answering: {}", dev.unit, f.describe());
                debug!(link = %self.name, "{detail}; next poll in {back:?}");
                match f {
                    // the link is down and already reported so
                    Failure::Transport(e) if e == WAITING => {}
                    // the connection or port broke: the link is down
                    Failure::Transport(e) => {
                        let e = e.clone();
                        self.set_health(LinkState::Down, e).await;
                    }
                    // the transport works (or was re-opened) but this unit is silent
                    _ => self.set_health(LinkState::Degraded, detail).await,
                }
            }
        }
        for e in out {
            if !self.emit(e).await {
                return false;
            }
        }
        true
    }

    /// Executes a command the gateway allowed.
    async fn command(&mut self, d: &Downlink) -> CommandResult {
        let result = |outcome, points| CommandResult {
            command_id: d.command_id.clone(),
            device: d.device.clone(),
            outcome,
            points,
        };
        let Some(dev) = self.devices.iter().find(|x| x.id == d.device) else {
            return result(CommandOutcome::DeviceError("unknown device".into()), vec![]);
        };
        let unit = dev.unit;
        let name = d
            .command
            .name
            .strip_prefix("set_")
            .unwrap_or(&d.command.name);
        let Some(p) = dev
            .groups
            .iter()
            .flat_map(|g| g.points.iter())
            .find(|p| p.name == name && p.writable)
            .cloned()
        else {
            return result(
                CommandOutcome::DeviceError(format!(
                    "`{}` is not a writable point",
                    d.command.name
                )),
                vec![],
            );
        };
        let Some(arg) = d
            .command
            .args
            .iter()
            .find(|a| a.name == "value")
            .or_else(|| d.command.args.first())
        else {
            return result(
                CommandOutcome::DeviceError("missing `value`".into()),
                vec![],
            );
        };
        let req = if p.table == Table::Coil {
            let on = match &arg.value {
                Value::Bool(b) => *b,
                Value::Int(i @ (0 | 1)) => *i == 1,
                Value::Text(t) if t == "true" || t == "on" => true,
                Value::Text(t) if t == "false" || t == "off" => false,
                v => {
                    return result(
                        CommandOutcome::DeviceError(format!(
                            "a coil takes a bool, not {}",
                            v.type_name()
                        )),
                        vec![],
                    );
                }
            };
            if p.write_multiple {
                Req::Coils(p.address, vec![on])
            } else {
                Req::Coil(p.address, on)
            }
        } else {
            match codec::encode(&p, &arg.value) {
                Ok(w) if w.len() == 1 && !p.write_multiple => {
                    Req::Register(p.address, w.first().copied().unwrap_or(0))
                }
                Ok(w) => Req::Registers(p.address, w),
                Err(e) => return result(CommandOutcome::DeviceError(e.to_string()), vec![]),
            }
        };
        info!(device = %d.device, command = %d.command.name, principal = %d.principal, "modbus write fc {}", req.fc());
        match self.request(unit, &req).await {
            Ok(_) => {}
            Err(Failure::Timeout) => return result(CommandOutcome::Timeout, vec![]),
            Err(f) => return result(CommandOutcome::DeviceError(f.describe()), vec![]),
        }
        if !p.readback {
            return result(CommandOutcome::Delivered, vec![]);
        }
        match self
            .request(unit, &Req::Read(p.table, p.address, p.width()))
            .await
        {
            Ok(Data::Bits(b)) => match codec::decode_bit(&b) {
                Ok(v) => result(
                    CommandOutcome::Delivered,
                    vec![Point::new(p.name.clone(), v)],
                ),
                Err(e) => result(
                    CommandOutcome::DeviceError(format!("read-back: {e}")),
                    vec![],
                ),
            },
            Ok(Data::Words(w)) => match codec::decode(&p, &w) {
                Ok(v) => {
                    let mut pt = Point::new(p.name.clone(), v);
                    pt.unit = p.unit.clone();
                    result(CommandOutcome::Delivered, vec![pt])
                }
                Err(e) => result(
                    CommandOutcome::DeviceError(format!("read-back: {e}")),
                    vec![],
                ),
            },
            Err(f) => result(
                CommandOutcome::DeviceError(format!("written, read-back failed: {}", f.describe())),
                vec![],
            ),
        }
    }
}

/// A Modbus request.
enum Req {
    Read(Table, u16, u16),
    Coil(u16, bool),
    Coils(u16, Vec<bool>),
    Register(u16, u16),
    Registers(u16, Vec<u16>),
}

impl Req {
    fn fc(&self) -> u8 {
        match self {
            Self::Read(t, ..) => fc_of(*t),
            Self::Coil(..) => 5,
            Self::Register(..) => 6,
            Self::Coils(..) => 15,
            Self::Registers(..) => 16,
        }
    }
}
