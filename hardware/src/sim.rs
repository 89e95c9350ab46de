//! Simulated devices behind a simulated radio: the `sim` protocol.
//!
//! Each configured device sends telemetry on its own interval, announces itself with identity
//! evidence, and answers the commands its kind supports. A line-based control port lets tests and
//! demos make a device send chosen values:
//!
//! ```text
//! <address> <name>=<value> [<name>=<value> …]        → telemetry uplink
//! event <address> <name>=<value> …                   → event uplink
//! firmware <address> <version text>                  → the device announces new firmware
//! ```
//! Values: `true`/`false`, integers, floats, anything else is text. Each line is answered `ok` or
//! `error: …`.
//!
//! Devices configured with `joins = true` stay silent until an operator opens a join window on the
//! adapter (`warden adapter join sim`, the dashboard's adapters page, or MQTT); then they join one
//! a second while the window lasts, announcing themselves and reporting like the others. `close`
//! ends the window early. This is how the demo shows inclusion without a radio.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use warden_core::{
    Adapter, AdapterContext, AdapterError, AdapterEvent, Announcement, Assurance, BoxFuture,
    CommandOutcome, CommandResult, DeviceId, Downlink, Kind, LinkHealth, LinkState, Message,
    Operation, OperationKind, OperationRequest, OperationState, Point, Value,
};

pub const PROTOCOL: &str = "sim";

/// What a simulated device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimKind {
    /// temperature, humidity, setpoint; command `set_setpoint`. Keyed: shared-key, fresh.
    Thermostat,
    /// on; commands `turn_on`, `turn_off`. Channel assurance.
    Switch,
    /// power, energy. No assurance.
    Meter,
    /// Like a thermostat (keyed), but also sends `debug_shell`: a point no profile should allow.
    Rogue,
    /// n (an increasing integer). For tests.
    Counter,
}

impl SimKind {
    fn model(self) -> &'static str {
        match self {
            Self::Thermostat => "Thermostat",
            Self::Switch => "Switch",
            Self::Meter => "Meter",
            Self::Rogue => "Rogue",
            Self::Counter => "Counter",
        }
    }
    fn default_assurance(self) -> (Assurance, bool) {
        match self {
            Self::Thermostat | Self::Rogue => (Assurance::SharedKey, true),
            Self::Switch => (Assurance::Channel, false),
            _ => (Assurance::None, false),
        }
    }
}

/// One `[[sim.devices]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDeviceConfig {
    /// Device address (`sim:<address>`). With `count`, devices `<address>-0` … `<address>-<count-1>`.
    pub address: String,
    pub kind: SimKind,
    #[serde(default)]
    pub count: Option<u32>,
    /// Milliseconds between telemetry messages; 0 sends only on control-port request.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Override the kind's assurance.
    #[serde(default)]
    pub assurance: Option<Assurance>,
    /// Registry fields applied when the gateway provisions the device (`provision = true`).
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    /// Provision and approve this device at start-up (demo and tests). Without it the device lands
    /// pending like any new device.
    #[serde(default)]
    pub provision: bool,
    /// The firmware version the device announces (default `1.0.0`); the control port's
    /// `firmware` line changes it at run time.
    #[serde(default)]
    pub firmware: Option<String>,
    /// Silent until a join window is opened on the sim adapter; then it joins (announces itself
    /// and starts reporting).
    #[serde(default)]
    pub joins: bool,
}

fn default_interval() -> u64 {
    5000
}

/// The most devices one `[[sim.devices]]` entry may expand to.
pub const MAX_COUNT: u32 = 100_000;

impl SimDeviceConfig {
    pub fn validate(&self) -> Result<(), String> {
        // bound first: `ids()` expands `count` into a list
        if self.count.is_some_and(|n| n > MAX_COUNT) {
            return Err(format!(
                "`{}`: count must be at most {MAX_COUNT}",
                self.address
            ));
        }
        // 0 = only on a control-port request
        if self.interval_ms > 86_400_000 {
            return Err(format!(
                "`{}`: interval_ms must be at most 86400000",
                self.address
            ));
        }
        for id in self.ids() {
            id.map_err(|e| format!("`{}`: {e}", self.address))?;
        }
        if self.count == Some(0) {
            return Err(format!("`{}`: count must be at least 1", self.address));
        }
        Ok(())
    }

    /// The device ids this entry expands to (at most [`MAX_COUNT`] once validated).
    pub fn ids(&self) -> Vec<Result<DeviceId, warden_core::IdError>> {
        match self.count {
            None => vec![DeviceId::new(PROTOCOL, &self.address)],
            Some(n) => (0..n)
                .map(|i| DeviceId::new(PROTOCOL, &format!("{}-{i}", self.address)))
                .collect(),
        }
    }
}

struct DeviceState {
    id: DeviceId,
    kind: SimKind,
    assurance: Assurance,
    fresh: bool,
    interval: Duration,
    seq: u64,
    rng: u64,
    setpoint: f64,
    on: bool,
    energy: f64,
    firmware: String,
}

impl DeviceState {
    /// Its identity evidence, as announced at start and when its firmware changes.
    fn announcement(&self) -> Announcement {
        Announcement {
            device: Some(self.id.clone()),
            manufacturer: Some("Warden Sim".into()),
            model: Some(self.kind.model().into()),
            firmware: Some(self.firmware.clone()),
            serial: Some(format!("SIM-{}", self.id.address())),
            details: Vec::new(),
        }
    }

    fn rand(&mut self) -> f64 {
        // xorshift64*: deterministic per device, no dependency
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn reading(&mut self) -> Vec<Point> {
        self.seq += 1;
        let r = self.rand();
        match self.kind {
            SimKind::Thermostat | SimKind::Rogue => {
                let mut v = vec![
                    Point::new("temperature", Value::Float(round1(19.0 + 4.0 * r))).with_unit("°C"),
                    Point::new("humidity", Value::Float(round1(40.0 + 15.0 * self.rand())))
                        .with_unit("%"),
                    Point::new("setpoint", Value::Float(self.setpoint)).with_unit("°C"),
                ];
                if self.kind == SimKind::Rogue {
                    v.push(Point::new("debug_shell", Value::Text("enabled".into())));
                }
                v
            }
            SimKind::Switch => vec![Point::new("on", Value::Bool(self.on))],
            SimKind::Meter => {
                let p = round1(200.0 + 800.0 * r);
                self.energy += p * self.interval.as_secs_f64() / 3_600_000.0;
                vec![
                    Point::new("power", Value::Float(p)).with_unit("W"),
                    Point::new(
                        "energy",
                        Value::Float((self.energy * 1000.0).round() / 1000.0),
                    )
                    .with_unit("kWh"),
                ]
            }
            SimKind::Counter => vec![Point::new("n", Value::Int(self.seq as i64))],
        }
    }

    fn message(&self, kind: Kind, points: Vec<Point>) -> Message {
        let mut m = Message::telemetry(self.id.clone(), points);
        m.kind = kind;
        m.assurance = self.assurance;
        m.fresh = self.fresh;
        m.link.rssi = Some(-60.0 - (self.seq % 20) as f32);
        m.raw = format!("sim:{}:{}", self.id.address(), self.seq).into_bytes();
        m
    }

    fn command(&mut self, d: &Downlink) -> CommandResult {
        let arg = |name: &str| {
            d.command
                .args
                .iter()
                .find(|p| p.name == name)
                .map(|p| &p.value)
        };
        let outcome = match (self.kind, d.command.name.as_str()) {
            (SimKind::Thermostat | SimKind::Rogue, "set_setpoint") => match arg("value") {
                Some(Value::Float(v)) if (5.0..=30.0).contains(v) => {
                    self.setpoint = *v;
                    CommandOutcome::Delivered
                }
                Some(Value::Int(v)) if (5..=30).contains(v) => {
                    self.setpoint = *v as f64;
                    CommandOutcome::Delivered
                }
                _ => CommandOutcome::DeviceError("value must be a number from 5 to 30".into()),
            },
            (SimKind::Switch, "turn_on") => {
                self.on = true;
                CommandOutcome::Delivered
            }
            (SimKind::Switch, "turn_off") => {
                self.on = false;
                CommandOutcome::Delivered
            }
            _ => CommandOutcome::DeviceError(format!("unsupported command `{}`", d.command.name)),
        };
        let points = match (&outcome, self.kind) {
            (CommandOutcome::Delivered, SimKind::Switch) => {
                vec![Point::new("on", Value::Bool(self.on))]
            }
            (CommandOutcome::Delivered, _) => {
                vec![Point::new("setpoint", Value::Float(self.setpoint))]
            }
            _ => vec![],
        };
        CommandResult {
            command_id: d.command_id.clone(),
            device: self.id.clone(),
            outcome,
            points,
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Parses `name=value` pairs.
pub fn parse_points(words: &[&str]) -> Result<Vec<Point>, String> {
    if words.is_empty() {
        return Err("no points".into());
    }
    words
        .iter()
        .map(|w| {
            let (n, v) = w
                .split_once('=')
                .ok_or_else(|| format!("`{w}` is not name=value"))?;
            if n.is_empty() {
                return Err(format!("`{w}` has no name"));
            }
            let value = match v {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => v
                    .parse::<i64>()
                    .map(Value::Int)
                    .or_else(|_| v.parse::<f64>().map(Value::Float))
                    .unwrap_or_else(|_| Value::Text(v.to_owned())),
            };
            Ok(Point::new(n, value))
        })
        .collect()
}

/// The simulated radio: all configured sim devices.
pub struct SimAdapter {
    devices: Vec<SimDeviceConfig>,
    control: Option<SocketAddr>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
}

impl SimAdapter {
    pub fn new(devices: Vec<SimDeviceConfig>, control: Option<SocketAddr>) -> Self {
        Self {
            devices,
            control,
            bound: None,
        }
    }

    /// Reports the control port's bound address (useful with port 0).
    pub fn on_bound(mut self, tx: tokio::sync::oneshot::Sender<SocketAddr>) -> Self {
        self.bound = Some(tx);
        self
    }
}

/// The firmware a simulated device announces unless configured otherwise.
pub const DEFAULT_FIRMWARE: &str = "1.0.0";

enum Input {
    Control(
        DeviceId,
        Kind,
        Vec<Point>,
        tokio::sync::oneshot::Sender<String>,
    ),
    /// The device installed new firmware: it announces itself again with it.
    Firmware(DeviceId, String, tokio::sync::oneshot::Sender<String>),
}

/// One parsed control line.
enum Line {
    Uplink(DeviceId, Kind, Vec<Point>),
    Firmware(DeviceId, String),
}

impl Adapter for SimAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn operations(&self) -> &'static [OperationKind] {
        &[OperationKind::Join, OperationKind::Close]
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(run(*self, ctx))
    }
}

/// An open join window.
struct Window {
    op: Operation,
    until: tokio::time::Instant,
    /// Only this device may join, when the request named one.
    only: Option<DeviceId>,
    joined: u32,
}

async fn run(a: SimAdapter, mut ctx: AdapterContext) -> Result<(), AdapterError> {
    let mut states: HashMap<DeviceId, DeviceState> = HashMap::new();
    // devices waiting for a join window, in configuration order
    let mut held: Vec<DeviceId> = Vec::new();
    for d in &a.devices {
        let (assurance, fresh) = d
            .assurance
            .map(|x| (x, x >= Assurance::SharedKey))
            .unwrap_or_else(|| d.kind.default_assurance());
        for (i, id) in d.ids().into_iter().enumerate() {
            let id = id.map_err(|e| AdapterError::Config(e.to_string()))?;
            if d.joins {
                held.push(id.clone());
            }
            let seed = id
                .to_string()
                .bytes()
                .fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
            states.insert(
                id.clone(),
                DeviceState {
                    id,
                    kind: d.kind,
                    assurance,
                    fresh,
                    interval: Duration::from_millis(d.interval_ms),
                    seq: 0,
                    rng: seed | 1,
                    setpoint: 21.0,
                    on: false,
                    energy: 1000.0 + i as f64,
                    firmware: d
                        .firmware
                        .clone()
                        .unwrap_or_else(|| DEFAULT_FIRMWARE.into()),
                },
            );
        }
    }
    // announce every device with its identity evidence
    let mut ids: Vec<DeviceId> = states
        .keys()
        .filter(|id| !held.contains(id))
        .cloned()
        .collect();
    ids.sort();
    for id in &ids {
        if let Some(s) = states.get(id) {
            ctx.emit(AdapterEvent::Announce(s.announcement())).await?;
        }
    }
    ctx.emit(AdapterEvent::Health(LinkHealth {
        link: "sim-radio".into(),
        state: LinkState::Up,
        detail: format!("{} simulated devices", states.len()),
    }))
    .await?;

    let (in_tx, mut in_rx) = mpsc::channel::<Input>(64);
    if let Some(addr) = a.control {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| AdapterError::Transport(format!("sim control port {addr}: {e}")))?;
        if let (Some(tx), Ok(local)) = (a.bound, listener.local_addr()) {
            let _ = tx.send(local);
        }
        tokio::spawn(control_server(listener, in_tx));
    }

    // one timer per device, merged: the next due device is sent first
    let start = tokio::time::Instant::now();
    let mut due: Vec<(tokio::time::Instant, DeviceId)> = ids
        .iter()
        .filter_map(|id| {
            let s = states.get(id)?;
            (!s.interval.is_zero()).then(|| {
                // spread first messages over the interval
                let off = s.interval.mul_f64((s.rng % 1000) as f64 / 1000.0);
                (start + off, id.clone())
            })
        })
        .collect();
    let mut window: Option<Window> = None;
    let mut tick = tokio::time::Instant::now();
    let mut ops_open = true;
    loop {
        due.sort_by_key(|d| std::cmp::Reverse(d.0));
        let next = due.last().map(|d| d.0);
        tokio::select! {
            op = ctx.operations.recv(), if ops_open => {
                let Some(op) = op else {
                    ops_open = false;
                    continue;
                };
                operation(op, &mut window, &held);
                tick = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(tick), if window.is_some() => {
                tick += Duration::from_secs(1);
                let Some(w) = window.as_mut() else { continue };
                let now = tokio::time::Instant::now();
                if now >= w.until {
                    let detail = format!("window closed; {} device(s) joined", w.joined);
                    w.op.progress.finish(OperationState::Done, detail);
                    window = None;
                    continue;
                }
                let left = u32::try_from(w.until.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX);
                w.op.progress.update(|p| p.seconds_left = Some(left.max(1)));
                // one held device joins per second while the window is open
                let pos = held.iter().position(|id| w.only.as_ref().is_none_or(|o| o == id));
                if let Some(id) = pos.map(|i| held.remove(i))
                    && let Some(s) = states.get(&id)
                {
                    w.joined += 1;
                    let waiting = held.len();
                    w.op.progress.update(|p| {
                        p.devices_seen += 1;
                        p.devices_joined += 1;
                        p.device(&id, "joined");
                        p.set_detail(format!("{waiting} simulated device(s) still waiting to join"));
                    });
                    ctx.emit(AdapterEvent::Announce(s.announcement())).await?;
                    if !s.interval.is_zero() {
                        due.push((now, id));
                    }
                }
            }
            _ = ctx.shutdown.changed() => {
                if *ctx.shutdown.borrow() { return Ok(()); }
            }
            _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                if let Some((t, id)) = due.pop()
                    && let Some(s) = states.get_mut(&id)
                {
                    let points = s.reading();
                    let m = s.message(Kind::Telemetry, points);
                    due.push((t + s.interval, id));
                    ctx.emit(AdapterEvent::Uplink(m)).await?;
                }
            }
            d = ctx.downlinks.recv() => {
                let Some(d) = d else { return Ok(()) };
                let res = match states.get_mut(&d.device) {
                    Some(s) => s.command(&d),
                    None => CommandResult {
                        command_id: d.command_id.clone(),
                        device: d.device.clone(),
                        outcome: CommandOutcome::DeviceError("no such simulated device".into()),
                        points: vec![],
                    },
                };
                ctx.emit(AdapterEvent::CommandResult(res)).await?;
            }
            Some(input) = in_rx.recv() => match input {
                Input::Control(id, kind, points, reply) => {
                    // unknown addresses are sent too: that is how a test makes a device appear
                    let s = states.entry(id.clone()).or_insert_with(|| DeviceState {
                        id: id.clone(), kind: SimKind::Counter, assurance: Assurance::None, fresh: false,
                        interval: Duration::ZERO, seq: 0, rng: 1, setpoint: 21.0, on: false, energy: 0.0,
                        firmware: DEFAULT_FIRMWARE.into(),
                    });
                    s.seq += 1;
                    let m = s.message(kind, points);
                    ctx.emit(AdapterEvent::Uplink(m)).await?;
                    let _ = reply.send("ok".into());
                }
                Input::Firmware(id, fw, reply) => {
                    let Some(s) = states.get_mut(&id) else {
                        let _ = reply.send("error: no such simulated device".into());
                        continue;
                    };
                    s.firmware = fw;
                    ctx.emit(AdapterEvent::Announce(s.announcement())).await?;
                    let _ = reply.send("ok".into());
                }
            },
        }
    }
}

/// Starts, replaces or closes the join window.
fn operation(op: Operation, window: &mut Option<Window>, held: &[DeviceId]) {
    match op.request.clone() {
        OperationRequest::Join {
            seconds, device, ..
        } => {
            if let Some(old) = window.take() {
                old.op.progress.finish(
                    OperationState::Cancelled,
                    format!("replaced by {} from {}", op.id, op.principal),
                );
            }
            op.progress.update(|p| {
                p.state = OperationState::Running;
                p.seconds_left = Some(seconds);
                p.set_step(Some("waiting for devices".into()));
                p.set_detail(format!(
                    "{} simulated device(s) waiting to join",
                    held.len()
                ));
            });
            *window = Some(Window {
                until: tokio::time::Instant::now() + Duration::from_secs(u64::from(seconds)),
                only: device,
                joined: 0,
                op,
            });
        }
        OperationRequest::Close {} => match window.take() {
            Some(w) => {
                let detail = format!("closed by {}; {} device(s) joined", op.principal, w.joined);
                w.op.progress.finish(OperationState::Cancelled, detail);
                op.progress
                    .finish(OperationState::Done, "join window closed");
            }
            None => op
                .progress
                .finish(OperationState::Done, "no join window was open"),
        },
        other => op.progress.finish(
            OperationState::Failed,
            format!("the sim adapter has no `{}` operation", other.kind()),
        ),
    }
}

/// Control clients served at once; more are closed at once (the port is loopback, but any local
/// process can reach it).
const CONTROL_CLIENTS: usize = 8;
/// The longest control line; a longer one is answered with an error and the connection closed.
const CONTROL_LINE: usize = 4096;
/// A control client silent this long is closed, freeing its slot.
const CONTROL_IDLE: Duration = Duration::from_secs(60);

async fn control_server(listener: TcpListener, tx: mpsc::Sender<Input>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONTROL_CLIENTS));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            control_client(sock, tx).await;
        });
    }
}

/// Serves one control client: a line in, one answer line out.
async fn control_client(sock: tokio::net::TcpStream, tx: mpsc::Sender<Input>) {
    use tokio::io::AsyncReadExt;
    let (rd, mut wr) = sock.into_split();
    let mut reader = BufReader::new(rd);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limited = (&mut reader).take(CONTROL_LINE as u64 + 1);
        let read = tokio::time::timeout(CONTROL_IDLE, read_line_into(limited, &mut buf)).await;
        let Ok(Ok(n)) = read else { return };
        if n == 0 {
            return;
        }
        if buf.last() != Some(&b'\n') && n > CONTROL_LINE {
            let _ = wr
                .write_all(format!("error: line longer than {CONTROL_LINE} bytes\n").as_bytes())
                .await;
            return;
        }
        let line = String::from_utf8_lossy(&buf);
        let answer = match parse_control(line.trim_end_matches(['\r', '\n'])) {
            Ok(l) => {
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                let input = match l {
                    Line::Uplink(id, kind, points) => Input::Control(id, kind, points, rtx),
                    Line::Firmware(id, fw) => Input::Firmware(id, fw, rtx),
                };
                if tx.send(input).await.is_err() {
                    return;
                }
                rrx.await
                    .unwrap_or_else(|_| "error: adapter stopped".into())
            }
            Err(e) => format!("error: {e}"),
        };
        if wr
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn read_line_into<R: tokio::io::AsyncBufRead + Unpin>(
    mut r: R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    r.read_until(b'\n', buf).await
}

/// `firmware <address> <text>` (the text is the rest of the line, as the device would send it),
/// else an uplink line.
fn parse_control(line: &str) -> Result<Line, String> {
    if let Some(rest) = line.strip_prefix("firmware ") {
        let rest = rest.trim_start();
        let (addr, fw) = rest.split_once(' ').ok_or("firmware: no version")?;
        let id = DeviceId::new(PROTOCOL, addr).map_err(|e| e.to_string())?;
        return Ok(Line::Firmware(id, fw.to_owned()));
    }
    let (id, kind, points) = parse_line(line)?;
    Ok(Line::Uplink(id, kind, points))
}

fn parse_line(line: &str) -> Result<(DeviceId, Kind, Vec<Point>), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (kind, rest) = match words.split_first() {
        Some((&"event", rest)) => (Kind::Event, rest),
        Some(_) => (Kind::Telemetry, words.as_slice()),
        None => return Err("empty line".into()),
    };
    let (addr, pts) = rest.split_first().ok_or("no address")?;
    let id = DeviceId::new(PROTOCOL, addr).map_err(|e| e.to_string())?;
    Ok((id, kind, parse_points(pts)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::Arc;
    use tokio::io::AsyncBufReadExt;

    #[test]
    fn control_lines_parse() {
        let (id, k, p) = parse_line("event door-1 open=true count=3 temp=21.5 note=hi").unwrap();
        assert_eq!(id.to_string(), "sim:door-1");
        assert_eq!(k, Kind::Event);
        assert_eq!(p[0].value, Value::Bool(true));
        assert_eq!(p[1].value, Value::Int(3));
        assert_eq!(p[2].value, Value::Float(21.5));
        assert_eq!(p[3].value, Value::Text("hi".into()));
        assert!(parse_line("").is_err());
        assert!(parse_line("a/b x=1").is_err());
        assert!(parse_line("dev novalue").is_err());
        assert!(parse_line("dev").is_err());
        let Ok(Line::Firmware(id, fw)) = parse_control("firmware t-1 2.0.1 beta") else {
            panic!("not a firmware line")
        };
        assert_eq!(
            (id.to_string().as_str(), fw.as_str()),
            ("sim:t-1", "2.0.1 beta")
        );
        assert!(parse_control("firmware t-1").is_err());
        assert!(matches!(parse_control("t-1 n=1"), Ok(Line::Uplink(..))));
    }

    fn held(address: &str) -> SimDeviceConfig {
        SimDeviceConfig {
            address: address.into(),
            kind: SimKind::Meter,
            count: None,
            interval_ms: 50,
            assurance: None,
            profile: None,
            zone: None,
            provision: false,
            firmware: None,
            joins: true,
        }
    }

    fn join_op(
        request: OperationRequest,
    ) -> (
        Operation,
        tokio::sync::watch::Receiver<warden_core::OperationProgress>,
    ) {
        let (progress, rx) = warden_core::ProgressSender::channel();
        (
            Operation {
                id: "op-1".into(),
                request,
                principal: "operator:test".into(),
                progress,
            },
            rx,
        )
    }

    #[tokio::test]
    async fn held_devices_join_only_while_a_window_is_open() {
        let (ev_tx, mut ev_rx) = mpsc::channel(64);
        let (_dl_tx, dl_rx) = mpsc::channel(8);
        let (_sd_tx, sd_rx) = tokio::sync::watch::channel(false);
        let (op_tx, op_rx) = mpsc::channel(4);
        let a = Box::new(SimAdapter::new(vec![held("late-1"), held("late-2")], None));
        let ctx = AdapterContext {
            events: ev_tx,
            downlinks: dl_rx,
            credentials: Arc::new(warden_core::testing::StaticCredentials::default()),
            operations: op_rx,
            state: Arc::new(warden_core::testing::MemoryState::default()),
            shutdown: sd_rx,
        };
        assert_eq!(a.operations(), [OperationKind::Join, OperationKind::Close]);
        tokio::spawn(a.run(ctx));
        // before any window: only the link's health, no announcement and no uplink
        match tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            AdapterEvent::Health(h) => assert_eq!(h.state, LinkState::Up),
            other => panic!("before a join window: {other:?}"),
        }
        // a window that names one device lets only that one in
        let (op, mut progress) = join_op(OperationRequest::Join {
            seconds: 30,
            device: Some("sim:late-2".parse().unwrap()),
            install_code_only: false,
            pin: None,
        });
        op_tx.send(op).await.unwrap();
        let mut announced = vec![];
        let mut first_uplink = None;
        while first_uplink.is_none() {
            match tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
                .await
                .unwrap()
                .unwrap()
            {
                AdapterEvent::Announce(a) => announced.push(a.device.unwrap().to_string()),
                AdapterEvent::Uplink(m) => first_uplink = Some(m.device.to_string()),
                _ => {}
            }
        }
        assert_eq!(announced, ["sim:late-2"]);
        assert_eq!(first_uplink.as_deref(), Some("sim:late-2"));
        let p = progress
            .wait_for(|p| p.devices_joined == 1)
            .await
            .unwrap()
            .clone();
        assert_eq!(p.state, OperationState::Running);
        assert_eq!(p.devices[0].device.to_string(), "sim:late-2");
        assert!(p.seconds_left.is_some_and(|s| s <= 30));
        // close ends it early: the window is cancelled, the close itself done
        let (close, close_progress) = join_op(OperationRequest::Close {});
        op_tx.send(close).await.unwrap();
        let end = progress
            .wait_for(|p| p.state.is_final())
            .await
            .unwrap()
            .clone();
        assert_eq!(end.state, OperationState::Cancelled);
        assert!(end.detail.contains("closed by operator:test"), "{end:?}");
        assert_eq!(close_progress.borrow().state, OperationState::Done);
        // late-1 never joined: the next uplinks (late-2 keeps reporting) are all late-2's
        let mut uplinks = 0;
        while uplinks < 3 {
            match tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
                .await
                .unwrap()
                .unwrap()
            {
                AdapterEvent::Uplink(m) => {
                    assert_eq!(m.device.to_string(), "sim:late-2");
                    uplinks += 1;
                }
                AdapterEvent::Announce(a) => panic!("announced after the window: {a:?}"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn devices_announce_report_and_obey() {
        let (ev_tx, mut ev_rx) = mpsc::channel(64);
        let (dl_tx, dl_rx) = mpsc::channel(8);
        let (_sd_tx, sd_rx) = tokio::sync::watch::channel(false);
        let (btx, brx) = tokio::sync::oneshot::channel();
        let cfg: Vec<SimDeviceConfig> = vec![
            SimDeviceConfig {
                address: "t".into(),
                kind: SimKind::Thermostat,
                count: None,
                interval_ms: 20,
                assurance: None,
                profile: None,
                zone: None,
                provision: false,
                firmware: None,
                joins: false,
            },
            SimDeviceConfig {
                address: "c".into(),
                kind: SimKind::Counter,
                count: Some(2),
                interval_ms: 0,
                assurance: None,
                profile: None,
                zone: None,
                provision: false,
                firmware: None,
                joins: false,
            },
        ];
        let a = Box::new(SimAdapter::new(cfg, Some("127.0.0.1:0".parse().unwrap())).on_bound(btx));
        let ctx = AdapterContext {
            events: ev_tx,
            downlinks: dl_rx,
            credentials: Arc::new(warden_core::testing::StaticCredentials::default()),
            operations: tokio::sync::mpsc::channel(1).1,
            state: Arc::new(warden_core::testing::MemoryState::default()),
            shutdown: sd_rx,
        };
        tokio::spawn(a.run(ctx));
        let mut announced = vec![];
        let mut tele = None;
        while tele.is_none() {
            match tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
                .await
                .unwrap()
                .unwrap()
            {
                AdapterEvent::Announce(a) => announced.push(a.device.unwrap().to_string()),
                AdapterEvent::Uplink(m) => tele = Some(m),
                _ => {}
            }
        }
        assert_eq!(announced, ["sim:c-0", "sim:c-1", "sim:t"]);
        let m = tele.unwrap();
        assert_eq!(m.device.to_string(), "sim:t");
        assert_eq!(m.assurance, Assurance::SharedKey);
        assert!(m.points.iter().any(|p| p.name == "temperature"));

        dl_tx
            .send(Downlink {
                command_id: "x1".into(),
                device: "sim:t".parse().unwrap(),
                command: warden_core::Command {
                    name: "set_setpoint".into(),
                    args: vec![Point::new("value", Value::Float(23.5))],
                },
                principal: "p".into(),
                min_assurance: warden_core::Assurance::None,
                security: Vec::new(),
            })
            .await
            .unwrap();
        dl_tx
            .send(Downlink {
                command_id: "x2".into(),
                device: "sim:t".parse().unwrap(),
                command: warden_core::Command {
                    name: "self_destruct".into(),
                    args: vec![],
                },
                principal: "p".into(),
                min_assurance: warden_core::Assurance::None,
                security: Vec::new(),
            })
            .await
            .unwrap();
        let mut results = vec![];
        while results.len() < 2 {
            if let AdapterEvent::CommandResult(r) =
                tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
                    .await
                    .unwrap()
                    .unwrap()
            {
                results.push(r);
            }
        }
        assert_eq!(results[0].outcome, CommandOutcome::Delivered);
        assert_eq!(results[0].points[0].value, Value::Float(23.5));
        assert!(matches!(results[1].outcome, CommandOutcome::DeviceError(_)));

        let addr = brx.await.unwrap();
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (rd, mut wr) = sock.into_split();
        let mut lines = tokio::io::BufReader::new(rd).lines();
        wr.write_all(b"c-1 n=42\nbad/addr x=1\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "ok");
        assert!(
            lines
                .next_line()
                .await
                .unwrap()
                .unwrap()
                .starts_with("error:")
        );
        loop {
            if let AdapterEvent::Uplink(m) =
                tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
                    .await
                    .unwrap()
                    .unwrap()
                && m.device.to_string() == "sim:c-1"
            {
                assert_eq!(m.points[0].value, Value::Int(42));
                break;
            }
        }
    }

    /// Writes one line and returns what came back in the next read.
    async fn ask(s: &mut tokio::net::TcpStream, line: &[u8]) -> String {
        use tokio::io::AsyncReadExt;
        s.write_all(line).await.unwrap();
        let mut b = [0u8; 128];
        let n = s.read(&mut b).await.unwrap();
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[tokio::test]
    async fn the_control_port_bounds_its_clients_and_their_lines() {
        use tokio::io::AsyncReadExt;
        let (in_tx, mut in_rx) = mpsc::channel::<Input>(8);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(control_server(listener, in_tx));
        // the adapter's side: answer every control line
        tokio::spawn(async move {
            while let Some(Input::Control(_, _, _, r)) = in_rx.recv().await {
                let _ = r.send("ok".into());
            }
        });
        // the sum: eight clients served, the ninth closed at once
        let mut held = Vec::new();
        for _ in 0..CONTROL_CLIENTS {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            assert_eq!(ask(&mut c, b"c-1 n=1\n").await, "ok\n");
            held.push(c);
        }
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"c-1 n=1\n").await;
        let mut b = [0u8; 16];
        assert_eq!(
            extra.read(&mut b).await.unwrap_or(0),
            0,
            "a ninth client served"
        );
        // the reset: one leaves, a new one is served
        drop(held.pop());
        let mut again = None;
        for _ in 0..100 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"c-1 n=2\n").await.unwrap();
            let n = c.read(&mut b).await.unwrap_or(0);
            if n > 0 {
                assert_eq!(&b[..n], b"ok\n");
                again = Some(c);
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(again.is_some(), "no slot came back");
        // a line without end: refused with an error and closed, never buffered whole
        let c = &mut held[0];
        c.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer).await;
        assert_eq!(
            answer,
            format!("error: line longer than {CONTROL_LINE} bytes\n")
        );
    }

    proptest::proptest! {
        /// The control port reads lines from any local client: never a panic.
        #[test]
        fn arbitrary_control_lines_never_panic(l in ".{0,120}") {
            let _ = parse_line(&l);
        }
    }
}
