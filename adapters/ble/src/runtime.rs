//! The run loop: finds the BlueZ adapter through btleplug, listens continuously — passively
//! through BlueZ's advertisement monitor ([`crate::monitor`]) by default, or with BlueZ discovery
//! (active scanning) when asked or when BlueZ has no monitor manager — with every advert reported
//! (duplicates on), feeds each BTHome advert to the [`Engine`], serves scan operations and
//! GATT commands, and watches the adapter: when BlueZ goes away or the adapter is removed the link
//! goes Down, and it is looked for again every `reconnect_s` until it is back (link Up, scanning
//! resumes).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use btleplug::api::bleuuid::uuid_from_u16;
use btleplug::api::{
    AddressType, Central, CentralEvent, CentralState, Manager as _, Peripheral as _, ScanFilter,
    WriteType,
};
use btleplug::platform::{Adapter as BtAdapter, Manager, PeripheralId};
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc, watch};
use warden_core::{
    AdapterContext, AdapterError, AdapterEvent, CommandOutcome, CommandResult, Downlink,
    LinkHealth, LinkState, Operation, OperationRequest, OperationState, Point, Value,
};

use crate::bthome;
use crate::config::{Config, GattCommand, ScanMode};
use crate::engine::{AddressKind, Advert, Engine, Stats, device_id};
use crate::monitor::{Monitor, MonitorEvent};

/// The deadline of one D-Bus call on the advert path or in a health check.
const DBUS_CALL: Duration = Duration::from_secs(3);
/// How often the engine's counters may be logged.
const STATS_EVERY: Duration = Duration::from_secs(60);
/// The most distinct devices one scan operation counts.
const MAX_SCAN_DEVICES: usize = 4_096;

type EventStream = std::pin::Pin<Box<dyn futures::Stream<Item = CentralEvent> + Send>>;

enum End {
    Shutdown,
    Lost(String),
}

struct Scan {
    op: Operation,
    until: Instant,
    seen: HashSet<[u8; 6]>,
}

pub struct Runtime {
    cfg: Config,
    engine: Engine,
    events: mpsc::Sender<AdapterEvent>,
    link: String,
    state: Option<LinkState>,
    scan: Option<Scan>,
    /// One GATT connection at a time per adapter.
    gatt: Arc<Mutex<()>>,
    /// The D-Bus connection to BlueZ, reused across reconnect attempts.
    manager: Option<Manager>,
    /// The advertisement monitor while scanning passively (`None`: BlueZ discovery).
    monitor: Option<Monitor>,
    /// The BlueZ name of the adapter in use (`hci0`).
    adapter_name: String,
    stats_at: Option<Instant>,
    stats_logged: Stats,
}

impl Runtime {
    pub fn new(cfg: Config, ctx: &AdapterContext) -> Self {
        let engine = Engine::new(&cfg, ctx.state.clone(), ctx.credentials.clone());
        let link = format!("ble:{}", cfg.adapter.as_deref().unwrap_or("default"));
        Self {
            cfg,
            engine,
            events: ctx.events.clone(),
            link,
            state: None,
            scan: None,
            gatt: Arc::new(Mutex::new(())),
            manager: None,
            monitor: None,
            adapter_name: String::new(),
            stats_at: None,
            stats_logged: Stats::default(),
        }
    }

    async fn emit(&self, ev: AdapterEvent) -> Result<(), AdapterError> {
        self.events.send(ev).await.map_err(|_| AdapterError::Closed)
    }

    async fn health(&mut self, state: LinkState, detail: String) -> Result<(), AdapterError> {
        self.state = Some(state);
        self.emit(AdapterEvent::Health(LinkHealth {
            link: self.link.clone(),
            state,
            detail,
        }))
        .await
    }

    async fn unavailable(&self, d: Downlink) -> Result<(), AdapterError> {
        self.emit(AdapterEvent::CommandResult(CommandResult {
            command_id: d.command_id,
            device: d.device,
            outcome: CommandOutcome::DeviceError("the BLE adapter is unavailable".into()),
            points: Vec::new(),
        }))
        .await
    }

    /// Serves until shutdown; finds the adapter again whenever it goes away.
    pub async fn run(
        mut self,
        mut ops: mpsc::Receiver<Operation>,
        mut downlinks: mpsc::Receiver<Downlink>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AdapterError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.open().await {
                Ok((central, name, stream)) => {
                    self.adapter_name.clone_from(&name);
                    let detail = self.listen(&central, &name).await;
                    let detail = match detail {
                        Ok(d) => d,
                        Err(why) => {
                            self.health(LinkState::Down, why).await?;
                            if self.pause(&mut ops, &mut downlinks, &mut shutdown).await? {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    self.health(LinkState::Up, detail).await?;
                    let end = self
                        .serve(&central, stream, &mut ops, &mut downlinks, &mut shutdown)
                        .await?;
                    match end {
                        End::Shutdown => {
                            match self.monitor.take() {
                                Some(m) => m.unregister(DBUS_CALL).await,
                                None => {
                                    let _ =
                                        tokio::time::timeout(DBUS_CALL, central.stop_scan()).await;
                                }
                            }
                            self.end_scan(OperationState::Cancelled, "the gateway stopped");
                            return Ok(());
                        }
                        End::Lost(why) => {
                            self.monitor = None;
                            tracing::warn!(link = %self.link, %why, "BLE adapter lost");
                            self.end_scan(OperationState::Failed, "the BLE adapter went away");
                            self.health(LinkState::Down, why).await?;
                        }
                    }
                }
                Err(why) => {
                    if self.state != Some(LinkState::Down) {
                        tracing::warn!(link = %self.link, %why, "no BLE adapter");
                        self.health(LinkState::Down, why).await?;
                    }
                }
            }
            if self.pause(&mut ops, &mut downlinks, &mut shutdown).await? {
                return Ok(());
            }
        }
    }

    /// Waits `reconnect_s` before the next attempt, refusing operations and commands meanwhile;
    /// `true` when the gateway is stopping.
    async fn pause(
        &mut self,
        ops: &mut mpsc::Receiver<Operation>,
        downlinks: &mut mpsc::Receiver<Downlink>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, AdapterError> {
        let sleep = tokio::time::sleep(Duration::from_secs(u64::from(self.cfg.reconnect_s)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return Ok(false),
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return Ok(true) },
                Some(op) = ops.recv() => {
                    op.progress.finish(OperationState::Failed, "the BLE adapter is unavailable");
                }
                Some(d) = downlinks.recv() => self.unavailable(d).await?,
            }
        }
    }

    /// Starts listening on adapter `name`: the BTHome advertisement monitor when `scan` is
    /// passive and BlueZ offers it, BlueZ discovery otherwise. Returns the link's Up detail (which
    /// says how it listens, and why not passively when it could not), or why it failed.
    async fn listen(&mut self, central: &BtAdapter, name: &str) -> Result<String, String> {
        self.monitor = None;
        let mut note = String::new();
        if self.cfg.scan == ScanMode::Passive {
            match Monitor::register(name, DBUS_CALL).await {
                Ok(m) => {
                    self.monitor = Some(m);
                    return Ok(format!(
                        "BlueZ adapter {name}: passive scanning (advertisement monitor for BTHome service data, every advert reported)"
                    ));
                }
                Err(e) => {
                    tracing::warn!(link = %self.link, error = %e,
                        "passive scanning unavailable: falling back to active discovery");
                    note = format!(
                        "; passive scanning unavailable ({e}): active discovery instead (BlueZ's advertisement monitor API may need bluetoothd --experimental)"
                    );
                }
            }
        }
        match tokio::time::timeout(DBUS_CALL, central.start_scan(ScanFilter::default())).await {
            Ok(Ok(())) => Ok(format!(
                "BlueZ adapter {name}: active discovery (duplicates on){note}"
            )),
            Ok(Err(e)) => Err(self.failed(&format!("BlueZ start discovery on {name}"), e)),
            Err(_) => Err(format!(
                "BlueZ did not answer start discovery on {name} in time"
            )),
        }
    }

    /// Connects to BlueZ, picks the adapter and subscribes to its events. The D-Bus
    /// connection is kept across attempts (each new one is a task btleplug never ends) and only
    /// replaced when it is the connection itself that failed.
    async fn open(&mut self) -> Result<(BtAdapter, String, EventStream), String> {
        let late = |what: &str| format!("BlueZ did not answer {what} in time");
        let manager = match &self.manager {
            Some(m) => m.clone(),
            None => {
                let m = tokio::time::timeout(DBUS_CALL, Manager::new())
                    .await
                    .map_err(|_| late("on D-Bus"))?
                    .map_err(|e| format!("D-Bus: {e}"))?;
                self.manager = Some(m.clone());
                m
            }
        };
        let adapters = match tokio::time::timeout(DBUS_CALL, manager.adapters()).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(self.failed("BlueZ", e)),
            Err(_) => return Err(late("the adapter list")),
        };
        let mut found = None;
        let mut names = Vec::new();
        for a in adapters {
            let info = match tokio::time::timeout(DBUS_CALL, a.adapter_info()).await {
                Ok(Ok(i)) => i,
                Ok(Err(e)) => return Err(self.failed("BlueZ", e)),
                Err(_) => return Err(late("adapter info")),
            };
            let name = info
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            if found.is_none() && self.cfg.adapter.as_ref().is_none_or(|want| *want == name) {
                found = Some((a, name));
            } else {
                names.push(name);
            }
        }
        let (central, name) = found.ok_or_else(|| match &self.cfg.adapter {
            Some(want) => format!(
                "BlueZ has no adapter `{want}` (it has: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            None => "BlueZ has no adapter".to_owned(),
        })?;
        let stream = match tokio::time::timeout(DBUS_CALL, central.events()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.failed("BlueZ events", e)),
            Err(_) => return Err(late("the event subscription")),
        };
        Ok((central, name, stream))
    }

    /// A btleplug error as text; forgets the D-Bus connection when it is what failed.
    fn failed(&mut self, what: &str, e: btleplug::Error) -> String {
        if connection_lost(&e) {
            self.manager = None;
        }
        format!("{what}: {e}")
    }

    async fn serve(
        &mut self,
        central: &BtAdapter,
        mut stream: EventStream,
        ops: &mut mpsc::Receiver<Operation>,
        downlinks: &mut mpsc::Receiver<Downlink>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<End, AdapterError> {
        let mut tick =
            tokio::time::interval(Duration::from_millis(u64::from(self.cfg.health_check_ms)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let monitor = async {
                match self.monitor.as_mut() {
                    Some(m) => m.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return Ok(End::Shutdown) },
                ev = monitor => match ev {
                    Some(MonitorEvent::Released) => {
                        return Ok(End::Lost("BlueZ released the advertisement monitor".into()));
                    }
                    Some(MonitorEvent::ConnectionLost) | None => {
                        return Ok(End::Lost("the advertisement monitor's D-Bus connection closed".into()));
                    }
                    Some(ev) => tracing::debug!(link = %self.link, ?ev, "advertisement monitor"),
                },
                ev = stream.next() => match ev {
                    Some(ev) => self.event(central, ev).await?,
                    None => return Ok(End::Lost("BlueZ closed the event stream".into())),
                },
                _ = tick.tick() => {
                    match tokio::time::timeout(DBUS_CALL, central.adapter_info()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Ok(End::Lost(self.failed("BlueZ adapter gone", e))),
                        Err(_) => return Ok(End::Lost("BlueZ stopped answering".into())),
                    }
                    self.scan_tick();
                    self.log_stats();
                }
                Some(op) = ops.recv() => self.operation(op),
                Some(d) = downlinks.recv() => self.downlink(central, d).await?,
            }
        }
    }

    async fn event(&mut self, central: &BtAdapter, ev: CentralEvent) -> Result<(), AdapterError> {
        let (id, bthome) = match ev {
            CentralEvent::ServiceDataAdvertisement { id, service_data } => {
                let sd = service_data.get(&uuid_from_u16(bthome::UUID16)).cloned();
                (id, sd)
            }
            CentralEvent::DeviceDiscovered(id)
            | CentralEvent::ManufacturerDataAdvertisement { id, .. }
            | CentralEvent::RssiUpdate { id, .. } => (id, None),
            CentralEvent::StateUpdate(state) => return self.powered(central, state).await,
            _ => return Ok(()),
        };
        if bthome.is_none() && self.scan.is_none() && self.cfg.announce != "all" {
            return Ok(());
        }
        let Some(mut adv) = properties(central, &id).await else {
            return Ok(());
        };
        let has_bthome = bthome.is_some();
        adv.bthome = bthome;
        self.scan_saw(&adv);
        if !has_bthome && self.cfg.announce != "all" {
            return Ok(());
        }
        // the engine may write a counter durably (an fsync): tell tokio this worker blocks, so
        // other tasks move off it (a current-thread runtime, as in unit tests, just runs it)
        let engine = &mut self.engine;
        let events = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| engine.advert(&adv, Instant::now()))
            }
            _ => engine.advert(&adv, Instant::now()),
        };
        for ev in events {
            self.emit(ev).await?;
        }
        Ok(())
    }

    /// The adapter switched off (rfkill, `bluetoothctl power off`) or on again: the link follows,
    /// and listening is started again when it is back (a new monitor, or discovery).
    async fn powered(
        &mut self,
        central: &BtAdapter,
        state: CentralState,
    ) -> Result<(), AdapterError> {
        match state {
            CentralState::PoweredOn if self.state != Some(LinkState::Up) => {
                // listen afresh: a new monitor (the old one is let go) or discovery again
                let name = self.adapter_name.clone();
                let (st, detail) = match self.listen(central, &name).await {
                    Ok(d) => (LinkState::Up, format!("adapter powered on: {d}")),
                    Err(e) => (
                        LinkState::Degraded,
                        format!("adapter powered on, but listening failed: {e}"),
                    ),
                };
                self.health(st, detail).await
            }
            CentralState::PoweredOff => {
                self.health(LinkState::Down, "adapter powered off".into())
                    .await
            }
            _ => Ok(()),
        }
    }

    fn operation(&mut self, op: Operation) {
        match op.request {
            OperationRequest::Scan { has: Some(_), .. } => op.progress.finish(
                OperationState::Failed,
                "the BLE adapter cannot search for an object (`has`): scan without it",
            ),
            OperationRequest::Scan { seconds, has: None } => {
                if let Some(old) = self.scan.take() {
                    old.op
                        .progress
                        .finish(OperationState::Cancelled, "a newer scan replaced it");
                }
                op.progress.update(|p| {
                    p.state = OperationState::Running;
                    p.seconds_left = Some(seconds);
                    p.set_step(Some("listening for advertisements".into()));
                });
                self.scan = Some(Scan {
                    op,
                    until: Instant::now() + Duration::from_secs(u64::from(seconds)),
                    seen: HashSet::new(),
                });
            }
            _ => op.progress.finish(
                OperationState::Failed,
                "the BLE adapter only scans: devices are admitted by approving them",
            ),
        }
    }

    fn scan_saw(&mut self, a: &Advert) {
        let Some(scan) = self.scan.as_mut() else {
            return;
        };
        let Some(id) = device_id(&a.mac) else {
            return;
        };
        let new = scan.seen.len() < MAX_SCAN_DEVICES && scan.seen.insert(a.mac);
        let mut line = match a.rssi {
            Some(r) => format!("rssi {r} dBm"),
            None => "rssi ?".to_owned(),
        };
        if let Some(n) = &a.name {
            line.push_str(&format!(", {}", n.chars().take(32).collect::<String>()));
        }
        if let Some(sd) = &a.bthome {
            line.push_str(match bthome::frame(sd) {
                Ok(f) if f.info.encrypted() => ", BTHome encrypted",
                Ok(_) => ", BTHome",
                Err(_) => ", BTHome (malformed)",
            });
        }
        if let Some(c) = a.company {
            line.push_str(&format!(", company 0x{c:04x}"));
        }
        if !a.address.stable() {
            line.push_str(", address not stable");
        }
        scan.op.progress.update(|p| {
            if new {
                p.devices_seen = p.devices_seen.saturating_add(1);
            }
            p.device(&id, line);
        });
    }

    /// Logs the engine's counters (adverts, duplicates, unknown objects, flood drops…) once a
    /// minute when they changed.
    fn log_stats(&mut self) {
        let now = Instant::now();
        if self
            .stats_at
            .is_some_and(|t| now.saturating_duration_since(t) < STATS_EVERY)
            || self.engine.stats == self.stats_logged
        {
            return;
        }
        self.stats_at = Some(now);
        self.stats_logged = self.engine.stats.clone();
        let s = &self.stats_logged;
        tracing::info!(link = %self.link, adverts = s.adverts, published = s.published,
            duplicates = s.duplicates, rejected = s.rejected, unknown_objects = s.unknown_objects,
            flood_dropped = s.flood_dropped, announced = s.announced, evicted = s.evicted,
            tracked = self.engine.tracked(), "BLE adverts");
    }

    fn scan_tick(&mut self) {
        let Some(scan) = self.scan.as_ref() else {
            return;
        };
        let now = Instant::now();
        if now >= scan.until {
            let n = scan.seen.len();
            self.end_scan(
                OperationState::Done,
                &format!("scan finished: {n} devices seen"),
            );
            return;
        }
        let left = scan.until.saturating_duration_since(now).as_secs() as u32;
        scan.op.progress.update(|p| p.seconds_left = Some(left));
    }

    fn end_scan(&mut self, state: OperationState, detail: &str) {
        if let Some(s) = self.scan.take() {
            s.op.progress.finish(state, detail);
        }
    }

    async fn downlink(&mut self, central: &BtAdapter, d: Downlink) -> Result<(), AdapterError> {
        let Some(cmd) = self.cfg.commands.get(&d.command.name).cloned() else {
            let detail = format!(
                "no GATT command `{}` in [adapters.ble.commands]",
                d.command.name
            );
            return self
                .emit(AdapterEvent::CommandResult(CommandResult {
                    command_id: d.command_id,
                    device: d.device,
                    outcome: CommandOutcome::DeviceError(detail),
                    points: Vec::new(),
                }))
                .await;
        };
        // serialised per adapter, off the advert path: adverts keep flowing during a command
        let central = central.clone();
        let lock = self.gatt.clone();
        let events = self.events.clone();
        let deadline = Duration::from_millis(u64::from(self.cfg.gatt_timeout_ms));
        tokio::spawn(async move {
            let _one = lock.lock().await;
            let (outcome, points) = gatt(&central, &cmd, &d, deadline).await;
            let _ = events
                .send(AdapterEvent::CommandResult(CommandResult {
                    command_id: d.command_id,
                    device: d.device,
                    outcome,
                    points,
                }))
                .await;
        });
        Ok(())
    }
}

/// Whether a btleplug error means the D-Bus connection itself is gone (rather than BlueZ, the
/// adapter or a device), so a new connection is needed.
fn connection_lost(e: &btleplug::Error) -> bool {
    let btleplug::Error::Other(inner) = e else {
        return false;
    };
    match inner.downcast_ref::<bluez_async::BluetoothError>() {
        Some(bluez_async::BluetoothError::DbusError(d)) => matches!(
            d.name(),
            None | Some(
                "org.freedesktop.DBus.Error.Disconnected"
                    | "org.freedesktop.DBus.Error.NoServer"
                    | "org.freedesktop.DBus.Error.IOError"
                    | "org.freedesktop.DBus.Error.NoNetwork"
            )
        ),
        _ => false,
    }
}

/// What BlueZ knows of a peripheral, as an [`Advert`] without service data.
async fn properties(central: &BtAdapter, id: &PeripheralId) -> Option<Advert> {
    let p = tokio::time::timeout(DBUS_CALL, central.peripheral(id))
        .await
        .ok()?
        .ok()?;
    let props = tokio::time::timeout(DBUS_CALL, p.properties())
        .await
        .ok()?
        .ok()??;
    let mac = props.address.into_inner();
    let address = match props.address_type {
        Some(AddressType::Public) => AddressKind::Public,
        Some(AddressType::Random) => AddressKind::random(&mac),
        None => AddressKind::Unknown,
    };
    Some(Advert {
        mac,
        address,
        name: props.local_name.or(props.advertisement_name),
        rssi: props.rssi,
        bthome: None,
        company: props.manufacturer_data.keys().min().copied(),
    })
}

/// The bytes a command writes: the configured value, else its `value` argument.
fn payload(cmd: &GattCommand, d: &Downlink) -> Result<Vec<u8>, String> {
    if let Some(v) = &cmd.value {
        return crate::config::hex(v).ok_or_else(|| "bad configured value".to_owned());
    }
    let arg = d
        .command
        .args
        .iter()
        .find(|p| p.name == "value")
        .ok_or_else(|| "the command needs a `value` argument".to_owned())?;
    match &arg.value {
        Value::Bytes(b) if !b.is_empty() && b.len() <= 512 => Ok(b.clone()),
        Value::Text(t) => crate::config::hex(t)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| "`value` must be hex bytes".to_owned()),
        Value::Int(i) => u8::try_from(*i)
            .map(|b| vec![b])
            .map_err(|_| "an integer `value` must be 0-255".to_owned()),
        _ => Err("`value` must be hex bytes or an integer 0-255".into()),
    }
}

/// Connect, write, optionally read back, disconnect — within `deadline`.
async fn gatt(
    central: &BtAdapter,
    cmd: &GattCommand,
    d: &Downlink,
    deadline: Duration,
) -> (CommandOutcome, Vec<Point>) {
    let value = match payload(cmd, d) {
        Ok(v) => v,
        Err(e) => return (CommandOutcome::DeviceError(e), Vec::new()),
    };
    let Some(mac) = mac_of(d.device.address()) else {
        return (
            CommandOutcome::DeviceError("not a BLE address".into()),
            Vec::new(),
        );
    };
    let Ok(uuid) = uuid::Uuid::parse_str(&cmd.characteristic) else {
        return (
            CommandOutcome::DeviceError("bad characteristic".into()),
            Vec::new(),
        );
    };
    let mut connected = None;
    let r = tokio::time::timeout(deadline, async {
        let peripherals = central
            .peripherals()
            .await
            .map_err(|e| format!("BlueZ: {e}"))?;
        let p = peripherals
            .into_iter()
            .find(|p| p.address().into_inner() == mac)
            .ok_or_else(|| "BlueZ has not seen this device".to_owned())?;
        connected = Some(p.clone());
        p.connect().await.map_err(|e| format!("connect: {e}"))?;
        p.discover_services()
            .await
            .map_err(|e| format!("service discovery: {e}"))?;
        let ch = p
            .characteristics()
            .into_iter()
            .find(|c| c.uuid == uuid)
            .ok_or_else(|| format!("the device has no characteristic {uuid}"))?;
        p.write(&ch, &value, WriteType::WithResponse)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut points = Vec::new();
        if cmd.read_back {
            let back = p.read(&ch).await.map_err(|e| format!("read back: {e}"))?;
            if back != value {
                return Err(format!(
                    "read back {} bytes that differ from the {} written",
                    back.len(),
                    value.len()
                ));
            }
            points.push(Point::new("value", Value::Bytes(back)));
        }
        Ok::<_, String>(points)
    })
    .await;
    if let Some(p) = connected {
        // always let go of the connection, whatever happened
        let _ = tokio::time::timeout(DBUS_CALL, p.disconnect()).await;
    }
    match r {
        Ok(Ok(points)) => (CommandOutcome::Delivered, points),
        Ok(Err(e)) => (CommandOutcome::DeviceError(e), Vec::new()),
        Err(_) => (CommandOutcome::Timeout, Vec::new()),
    }
}

/// The MAC of a device id's address (12 hex digits).
fn mac_of(address: &str) -> Option<[u8; 6]> {
    let b = crate::config::hex(address)?;
    <[u8; 6]>::try_from(b.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warden_core::{Command, DeviceId};

    fn downlink(args: Vec<Point>) -> Downlink {
        Downlink {
            command_id: "c1".into(),
            device: DeviceId::new("ble", "c47c8d6a5566").unwrap(),
            command: Command {
                name: "set_level".into(),
                args,
            },
            principal: "operator:test".into(),
            min_assurance: warden_core::Assurance::None,
            security: Vec::new(),
        }
    }

    fn cmd(value: Option<&str>) -> GattCommand {
        GattCommand {
            characteristic: "0000ff01-0000-1000-8000-00805f9b34fb".into(),
            value: value.map(str::to_owned),
            read_back: false,
        }
    }

    #[test]
    fn the_written_bytes_come_from_config_or_the_value_argument() {
        assert_eq!(
            payload(&cmd(Some("0102")), &downlink(vec![])),
            Ok(vec![1, 2])
        );
        let arg = |v| downlink(vec![Point::new("value", v)]);
        assert_eq!(
            payload(&cmd(None), &arg(Value::Text("0a0B".into()))),
            Ok(vec![10, 11])
        );
        assert_eq!(payload(&cmd(None), &arg(Value::Int(255))), Ok(vec![255]));
        assert_eq!(
            payload(&cmd(None), &arg(Value::Bytes(vec![7]))),
            Ok(vec![7])
        );
        for bad in [
            Value::Int(256),
            Value::Int(-1),
            Value::Text("abc".into()),
            Value::Text(String::new()),
            Value::Bool(true),
            Value::Bytes(vec![0; 513]),
        ] {
            assert!(payload(&cmd(None), &arg(bad.clone())).is_err(), "{bad:?}");
        }
        assert!(payload(&cmd(None), &downlink(vec![])).is_err());
    }

    #[test]
    fn device_addresses_map_back_to_macs() {
        assert_eq!(
            mac_of("c47c8d6a5566"),
            Some([0xc4, 0x7c, 0x8d, 0x6a, 0x55, 0x66])
        );
        assert_eq!(mac_of("c47c8d6a55"), None);
        assert_eq!(mac_of("zz7c8d6a5566"), None);
    }

    #[test]
    fn the_adapter_offers_scans_and_refuses_bad_sections() {
        let a = crate::build(&toml::from_str("adapter = \"hci0\"").unwrap()).unwrap();
        assert_eq!(a.protocol(), "ble");
        assert_eq!(a.operations(), &[warden_core::OperationKind::Scan]);
        assert!(crate::build(&toml::from_str("adapter = \"hci 0\"").unwrap()).is_err());
    }
}
