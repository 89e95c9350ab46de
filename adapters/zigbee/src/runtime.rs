//! The adapter's run loop: open the dongle (and reopen it when it goes away), form or resume the
//! network, then serve one session — coordinator events, operator operations, downlinks and a
//! one-second tick — until the link drops or the gateway stops.
//!
//! Nothing slow runs on the loop itself: interviews and command sends are tasks that report back
//! on an internal channel, so one sleepy or dead device never holds up another's frames.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use warden_core::{
    AdapterContext, AdapterError, AdapterEvent, Announcement, CommandOutcome, CommandResult,
    DeviceId, Downlink, LinkHealth, LinkState, Membership, MembershipChange, Operation,
    OperationRequest, OperationState, Rejection,
};

use crate::config::Config;
use crate::convert::{self, Frame};
use crate::coordinator::{CoordinatorEvent, Ieee, Incoming, SendStatus, Stack};
use crate::devices::{Device, Devices, device_id, parse_ieee};
use crate::dongle::{self, Dongle};
use crate::interview;
use crate::join::{self, Admission, Window};
use crate::zcl::DeviceContext;
use crate::{PROTOCOL, network};

/// The coordinator's own application endpoint.
pub const LOCAL_EP: u8 = 1;
/// Zigbee's longest permit-join; longer windows are re-opened before this runs out.
const PERMIT_MAX: u32 = 254;
/// How long a command waits for the device's answer (default response or report).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often refusals of one kind from one source are summarised in the audit log.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Interviews run at once (each is a handful of requests to the dongle).
const INTERVIEW_SLOTS: usize = 4;
/// Further interview attempts when the first learned nothing of the device's identity.
const INTERVIEW_RETRIES: u8 = 2;
/// The most commands awaiting an answer at once.
const MAX_PENDING: usize = 256;

/// ZCL answers that a task is waiting for, by (network address, transaction sequence number).
pub type Waiters = Arc<Mutex<HashMap<(u16, u8), oneshot::Sender<Vec<u8>>>>>;

/// What tasks report back to the loop.
enum Internal {
    Interviewed(Box<Device>, Vec<String>),
    Sent {
        command_id: String,
        device: DeviceId,
        status: Result<SendStatus, String>,
    },
}

/// A command sent and not yet answered.
struct PendingCommand {
    command_id: String,
    device: DeviceId,
    cluster: u16,
    deadline: Instant,
}

/// Per-source counters of frames refused for the same reason, summarised every [`SUMMARY_EVERY`].
#[derive(Default)]
struct Summaries(HashMap<(Option<String>, &'static str), (u64, String)>);

impl Summaries {
    /// Counts one refusal; returns true when it is the first of its kind in this period (the
    /// caller audits that one in full).
    fn count(&mut self, source: Option<String>, cause: &'static str, detail: String) -> bool {
        let e = self.0.entry((source, cause)).or_insert((0, detail));
        e.0 += 1;
        e.0 == 1
    }

    fn drain(&mut self) -> Vec<(Option<String>, &'static str, u64, String)> {
        self.0
            .drain()
            .filter(|(_, (n, _))| *n > 1)
            .map(|((s, c), (n, d))| (s, c, n - 1, d))
            .collect()
    }
}

/// Frames per device per second.
struct Rate {
    window: Instant,
    count: u32,
}

pub struct Runtime {
    cfg: Config,
    events: mpsc::Sender<AdapterEvent>,
    credentials: Arc<dyn warden_core::CredentialLookup>,
    state: Arc<dyn warden_core::StateStore>,
    devices: Devices,
    window: Option<Window>,
    pending: HashMap<(u16, u8), PendingCommand>,
    sleepy: HashMap<u64, VecDeque<(Downlink, Instant)>>,
    rates: HashMap<u64, Rate>,
    summaries: Summaries,
    last_summary: Instant,
    waiters: Waiters,
    tsn: Arc<AtomicU8>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    interviewing: HashSet<u64>,
    /// Devices refused in the last [`SUMMARY_EVERY`] (their announcement is not a second join).
    recently_refused: HashMap<u64, Instant>,
    /// The different coordinator stick last refused (audited once, not at every retry).
    refused_coordinator: Option<u64>,
    /// The coordinator's own IEEE address (the destination of bindings).
    coordinator: Ieee,
    /// The driver's dropped-frame count already reported.
    dropped_seen: u64,
    interview_slots: Arc<tokio::sync::Semaphore>,
    interview_attempts: HashMap<u64, u8>,
    /// What each device's earlier reports said about scaling (multipliers, zone type).
    contexts: HashMap<u64, DeviceContext>,
    link: String,
}

/// Why a session ended.
enum End {
    Shutdown,
    LinkLost(String),
}

impl Runtime {
    pub fn new(cfg: Config, ctx: &AdapterContext) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let (devices, bad) = Devices::load(ctx.state.as_ref());
        for b in bad {
            tracing::warn!(entry = %b, "zigbee: unreadable stored device skipped");
        }
        let link = format!("zigbee:{}", cfg.port.display());
        Self {
            cfg,
            events: ctx.events.clone(),
            credentials: ctx.credentials.clone(),
            state: ctx.state.clone(),
            devices,
            window: None,
            pending: HashMap::new(),
            sleepy: HashMap::new(),
            rates: HashMap::new(),
            summaries: Summaries::default(),
            last_summary: Instant::now(),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            tsn: Arc::new(AtomicU8::new(1)),
            internal_tx,
            internal_rx,
            interviewing: HashSet::new(),
            contexts: HashMap::new(),
            recently_refused: HashMap::new(),
            refused_coordinator: None,
            coordinator: Ieee(0),
            dropped_seen: 0,
            interview_slots: Arc::new(tokio::sync::Semaphore::new(INTERVIEW_SLOTS)),
            interview_attempts: HashMap::new(),
            link,
        }
    }

    async fn emit(&self, ev: AdapterEvent) -> Result<(), AdapterError> {
        self.events.send(ev).await.map_err(|_| AdapterError::Closed)
    }

    async fn health(&self, state: LinkState, detail: String) -> Result<(), AdapterError> {
        self.emit(AdapterEvent::Health(LinkHealth {
            link: self.link.clone(),
            state,
            detail,
        }))
        .await
    }

    /// Opens, starts and serves the dongle until shutdown; reopens it whenever it goes away.
    pub async fn run(
        mut self,
        mut ops: mpsc::Receiver<Operation>,
        mut downlinks: mpsc::Receiver<Downlink>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), AdapterError> {
        // The last Down reason announced: a new reason (a different stick after an unplug) is
        // announced, and so audited, again; the same one retried is not.
        let mut announced_down: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.connect().await {
                Ok((dongle, coord_events, detail)) => {
                    self.health(LinkState::Up, detail).await?;
                    match self
                        .session(
                            &dongle,
                            coord_events,
                            &mut ops,
                            &mut downlinks,
                            &mut shutdown,
                        )
                        .await?
                    {
                        End::Shutdown => {
                            if self.window.is_some() {
                                let _ = dongle.permit_join(0).await;
                                self.end_window(OperationState::Cancelled, "the gateway stopped");
                            }
                            return Ok(());
                        }
                        End::LinkLost(why) => {
                            self.end_window(OperationState::Failed, "the coordinator went away");
                            self.health(LinkState::Down, why.clone()).await?;
                            announced_down = Some(why);
                        }
                    }
                }
                Err(why) => {
                    if announced_down.as_ref() != Some(&why) {
                        self.health(LinkState::Down, why.clone()).await?;
                        announced_down = Some(why);
                    }
                }
            }
            // operations that arrive while the dongle is away fail at once rather than wait
            let wait = tokio::time::sleep(Duration::from_secs(u64::from(self.cfg.reconnect_s)));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = stopped(&mut shutdown) => return Ok(()),
                    Some(op) = ops.recv() => op.progress.finish(
                        OperationState::Failed, "the coordinator is not connected"),
                    Some(d) = downlinks.recv() => self.result(&d.command_id, &d.device,
                        CommandOutcome::DeviceError("the coordinator is not connected".into())).await?,
                }
            }
        }
    }

    /// Opens the port, detects the stack, forms or resumes the network.
    async fn connect(
        &mut self,
    ) -> Result<(Arc<Dongle>, mpsc::Receiver<CoordinatorEvent>, String), String> {
        let (dongle, rx) = dongle::open(&self.cfg.port, self.cfg.baud, self.cfg.stack)
            .await
            .map_err(|e| format!("cannot open {}: {e}", self.cfg.port.display()))?;
        let info = dongle
            .info()
            .await
            .map_err(|e| format!("coordinator info: {e}"))?;
        // A different stick on the port must not be handed this network's key (nor a new network
        // started on it) unless the operator said so: refuse, and retry until the right stick is back
        // or the config accepts this one.
        let replaced = match network::check_coordinator(
            self.state.as_ref(),
            info.ieee.0,
            self.cfg.accept_coordinator.as_deref(),
        )? {
            network::Coordinator::Same => None,
            network::Coordinator::Replaced { previous } => Some(previous),
            network::Coordinator::Different { expected } => {
                let why = format!(
                    "a different coordinator ({}) is on {}: this network lives on coordinator {expected:016x}, so it is not moved to the new stick; put that stick back, or set accept_coordinator = \"{}\" under [adapters.zigbee] to move the network to this one",
                    info.ieee,
                    self.cfg.port.display(),
                    info.ieee
                );
                if self.refused_coordinator != Some(info.ieee.0) {
                    self.refused_coordinator = Some(info.ieee.0);
                    self.emit(AdapterEvent::Rejected(Rejection {
                        protocol: PROTOCOL,
                        device: None,
                        cause: "coordinator-not-accepted",
                        detail: why.clone(),
                    }))
                    .await
                    .map_err(|e| e.to_string())?;
                }
                return Err(why);
            }
        };
        self.refused_coordinator = None;
        let (params, new) = network::load_or_create(self.state.as_ref(), self.cfg.channel)?;
        let outcome = dongle
            .start(&params)
            .await
            .map_err(|e| format!("network start: {e}"))?;
        let what = match outcome {
            crate::coordinator::StartOutcome::Resumed => "resumed",
            crate::coordinator::StartOutcome::Formed if new => "formed",
            crate::coordinator::StartOutcome::Formed => "re-formed from the stored parameters",
        };
        // a coordinator must never be left open by a previous run
        let _ = dongle.permit_join(0).await;
        let stack = match info.stack {
            Stack::Znp => "ZNP",
            Stack::Ezsp => "EZSP",
        };
        let what = match replaced {
            Some(previous) => format!(
                "{what} (moved from coordinator {previous:016x}, as accept_coordinator allows)"
            ),
            None => what.to_owned(),
        };
        let detail = format!(
            "{stack} coordinator {} ({}), network {what}: PAN {:#06x}, channel {}, {} devices",
            info.ieee,
            info.firmware,
            params.pan_id,
            params.channel,
            self.devices.len()
        );
        tracing::info!(%detail, "zigbee coordinator up");
        Ok((dongle, rx, detail))
    }

    async fn session(
        &mut self,
        dongle: &Arc<Dongle>,
        mut coord: mpsc::Receiver<CoordinatorEvent>,
        ops: &mut mpsc::Receiver<Operation>,
        downlinks: &mut mpsc::Receiver<Downlink>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<End, AdapterError> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = coord.recv() => match ev {
                    Some(ev) => self.coordinator_event(dongle, ev).await?,
                    None => return Ok(End::LinkLost("the coordinator's serial link closed".into())),
                },
                Some(op) = ops.recv() => self.operation(dongle, op).await?,
                Some(d) = downlinks.recv() => self.downlink(dongle, d).await?,
                Some(i) = self.internal_rx.recv() => self.internal(dongle, i).await?,
                _ = tick.tick() => self.tick(dongle).await?,
                _ = stopped(shutdown) => return Ok(End::Shutdown),
            }
        }
    }

    // ------------------------------------------------------------------ operations

    async fn operation(&mut self, dongle: &Arc<Dongle>, op: Operation) -> Result<(), AdapterError> {
        match op.request.clone() {
            OperationRequest::Join {
                seconds,
                device,
                install_code_only,
                ..
            } => {
                self.open_window(dongle, op, seconds, device, install_code_only)
                    .await
            }
            OperationRequest::Close {} => {
                if self.window.is_some() {
                    let _ = dongle.permit_join(0).await;
                    self.end_window(
                        OperationState::Cancelled,
                        &format!("closed by {}", op.principal),
                    );
                    op.progress
                        .finish(OperationState::Done, "join window closed");
                } else {
                    op.progress
                        .finish(OperationState::Done, "no join window was open");
                }
                Ok(())
            }
            OperationRequest::Remove { device } => {
                let Some(ieee) = parse_ieee(&device) else {
                    op.progress
                        .finish(OperationState::Failed, "not a zigbee:<ieee> device id");
                    return Ok(());
                };
                let Some(d) = self.devices.get(ieee).cloned() else {
                    op.progress.finish(
                        OperationState::Failed,
                        format!("{device} is not in this Zigbee network"),
                    );
                    return Ok(());
                };
                op.progress.update(|p| {
                    p.state = OperationState::Running;
                    p.set_step(Some(format!("asking {device} to leave")));
                });
                // forget it first: whatever the radio says, it may not come back without a window
                self.devices.remove(self.state.as_ref(), ieee);
                let answer = dongle.leave(ieee, d.nwk).await;
                self.emit(AdapterEvent::Membership(Membership {
                    device: device.clone(),
                    change: MembershipChange::Removed,
                    detail: format!(
                        "removed by {} (nwk {:#06x}); leave request: {}",
                        op.principal,
                        d.nwk,
                        match &answer {
                            Ok(()) => "acknowledged".to_owned(),
                            Err(e) => format!("not acknowledged ({e})"),
                        }
                    ),
                }))
                .await?;
                op.progress.update(|p| p.device(&device, "removed"));
                op.progress.finish(
                    OperationState::Done,
                    match answer {
                        Ok(()) => "device removed".to_owned(),
                        Err(e) => format!(
                            "device forgotten; it did not acknowledge the leave request ({e}) and \
                             will be refused if it tries to rejoin"
                        ),
                    },
                );
                Ok(())
            }
            OperationRequest::Scan { .. } => {
                op.progress
                    .finish(OperationState::Failed, "the zigbee adapter has no scan");
                Ok(())
            }
        }
    }

    async fn open_window(
        &mut self,
        dongle: &Arc<Dongle>,
        op: Operation,
        seconds: u32,
        device: Option<DeviceId>,
        install_code_only: bool,
    ) -> Result<(), AdapterError> {
        if seconds > self.cfg.max_join_seconds {
            op.progress.finish(
                OperationState::Failed,
                format!(
                    "{seconds} s is longer than adapters.zigbee.max_join_seconds ({})",
                    self.cfg.max_join_seconds
                ),
            );
            return Ok(());
        }
        let only = match &device {
            Some(d) => match parse_ieee(d) {
                Some(i) => Some(i),
                None => {
                    op.progress
                        .finish(OperationState::Failed, "not a zigbee:<ieee> device id");
                    return Ok(());
                }
            },
            None => None,
        };
        op.progress.update(|p| {
            p.state = OperationState::Running;
            p.set_step(Some("provisioning install codes".into()));
        });
        let require = install_code_only || self.cfg.require_install_codes;
        let mut loaded = 0;
        let mut bad = Vec::new();
        for (id, code) in self.credentials.enrolment("install_code") {
            let Some(ieee) = parse_ieee(&id) else {
                continue;
            };
            if only.is_some_and(|o| o != ieee) {
                continue;
            }
            match dongle.add_install_code(ieee, code.expose()).await {
                Ok(()) => loaded += 1,
                Err(e) => bad.push(format!("{id}: {e}")),
            }
        }
        if let Err(e) = dongle.require_install_codes(require).await {
            op.progress.finish(
                OperationState::Failed,
                format!("the coordinator refused the install-code policy: {e}"),
            );
            return Ok(());
        }
        if let Err(e) = dongle.permit_join(seconds.min(PERMIT_MAX) as u8).await {
            op.progress.finish(
                OperationState::Failed,
                format!("the coordinator refused to open the window: {e}"),
            );
            return Ok(());
        }
        if let Some(old) = self.window.take() {
            old.op.progress.finish(
                OperationState::Cancelled,
                format!("replaced by {} from {}", op.id, op.principal),
            );
        }
        let mut detail = format!("{loaded} install code(s) provisioned");
        if require {
            detail.push_str("; install codes required");
        }
        if !bad.is_empty() {
            detail.push_str(&format!("; refused: {}", bad.join(", ")));
        }
        op.progress.update(|p| {
            p.seconds_left = Some(seconds);
            p.set_step(Some("waiting for devices".into()));
            p.set_detail(detail);
        });
        let opened = Instant::now();
        self.window = Some(Window {
            permit_until: opened + Duration::from_secs(u64::from(seconds.min(PERMIT_MAX))),
            until: opened + Duration::from_secs(u64::from(seconds)),
            device: only,
            install_code_only: require,
            op,
        });
        Ok(())
    }

    fn end_window(&mut self, state: OperationState, detail: &str) {
        if let Some(w) = self.window.take() {
            w.op.progress.finish(state, detail);
        }
    }

    // ------------------------------------------------------------------ coordinator events

    async fn coordinator_event(
        &mut self,
        dongle: &Arc<Dongle>,
        ev: CoordinatorEvent,
    ) -> Result<(), AdapterError> {
        match ev {
            CoordinatorEvent::Joined { ieee, nwk, .. } => self.joined(dongle, ieee, nwk).await,
            CoordinatorEvent::JoinDenied { ieee, nwk } => self.join_denied(dongle, ieee, nwk).await,
            CoordinatorEvent::Announced { ieee, nwk, .. } => {
                if self.devices.get(ieee).is_some() {
                    self.rejoined(ieee, nwk).await?;
                    self.flush_sleepy(dongle, ieee).await
                } else if self
                    .recently_refused
                    .get(&ieee.0)
                    .is_some_and(|t| t.elapsed() < SUMMARY_EVERY)
                {
                    // the announcement of a join just refused (the leave request is on its way)
                    Ok(())
                } else {
                    // some stacks announce without a trust-centre indication first
                    self.joined(dongle, ieee, nwk).await
                }
            }
            CoordinatorEvent::Left { ieee, nwk, rejoin } => {
                if rejoin {
                    return Ok(());
                }
                if self.devices.remove(self.state.as_ref(), ieee).is_some() {
                    self.emit(AdapterEvent::Membership(Membership {
                        device: device_id(ieee),
                        change: MembershipChange::Left,
                        detail: format!("left the network (nwk {nwk:#06x})"),
                    }))
                    .await?;
                }
                Ok(())
            }
            CoordinatorEvent::PermitJoin { seconds } => {
                if seconds > 0 && self.window.is_none() {
                    tracing::warn!(
                        seconds,
                        "zigbee: the coordinator opened permit-join by itself; closing it"
                    );
                    let _ = dongle.permit_join(0).await;
                }
                Ok(())
            }
            CoordinatorEvent::Incoming(msg) => self.incoming(dongle, msg).await,
        }
    }

    async fn joined(
        &mut self,
        dongle: &Arc<Dongle>,
        ieee: Ieee,
        nwk: u16,
    ) -> Result<(), AdapterError> {
        let provisioned = self.provisioned();
        let decision = join::decide(&self.facts(ieee, &provisioned));
        let id = device_id(ieee);
        match decision {
            Admission::Known => self.rejoined(ieee, nwk).await,
            Admission::Admit { install_code } => {
                if let Some(w) = &self.window {
                    w.op.progress.update(|p| {
                        p.devices_seen += 1;
                        p.devices_joined += 1;
                        p.device(&id, "joined, interviewing");
                        p.set_step(Some(format!("interviewing {id}")));
                    });
                }
                if let Err(e) = self
                    .devices
                    .save(self.state.as_ref(), Device::new(ieee, nwk, install_code))
                {
                    tracing::error!(device = %id, error = %e, "zigbee: cannot store a joined device");
                }
                self.emit(AdapterEvent::Membership(Membership {
                    device: id.clone(),
                    change: MembershipChange::Joined,
                    detail: format!(
                        "joined (nwk {nwk:#06x}) {}",
                        if install_code {
                            "with its install-code link key"
                        } else {
                            "without an install code"
                        }
                    ),
                }))
                .await?;
                self.start_interview(dongle, ieee);
                Ok(())
            }
            Admission::Refuse(why) => {
                self.recently_refused.insert(ieee.0, Instant::now());
                if let Some(w) = &self.window {
                    w.op.progress.update(|p| {
                        p.devices_seen += 1;
                        p.devices_refused += 1;
                        p.device(&id, format!("refused: {}", why.describe()));
                    });
                }
                self.send_leave(dongle, ieee, nwk);
                self.reject(
                    Some(id),
                    why.as_str(),
                    format!(
                        "join refused: {}; told to leave (nwk {nwk:#06x})",
                        why.describe()
                    ),
                )
                .await
            }
        }
    }

    /// The coordinator's trust centre refused a join on its own; audited with the gate's reason
    /// when the gate would have refused too.
    async fn join_denied(
        &mut self,
        dongle: &Arc<Dongle>,
        ieee: Ieee,
        nwk: u16,
    ) -> Result<(), AdapterError> {
        let provisioned = self.provisioned();
        let why = match join::decide(&self.facts(ieee, &provisioned)) {
            Admission::Refuse(r) => r.describe(),
            _ => "the coordinator's trust centre refused it",
        };
        let cause = match join::decide(&self.facts(ieee, &provisioned)) {
            Admission::Refuse(r) => r.as_str(),
            _ => "join-denied-by-trust-centre",
        };
        let id = device_id(ieee);
        if let Some(w) = &self.window {
            w.op.progress.update(|p| {
                p.devices_seen += 1;
                p.devices_refused += 1;
                p.device(&id, format!("refused: {why}"));
            });
        }
        self.recently_refused.insert(ieee.0, Instant::now());
        // belt and braces: should the stack's refusal not have held, the device is told to leave
        self.send_leave(dongle, ieee, nwk);
        self.reject(
            Some(id),
            cause,
            format!("join refused by the trust centre: {why} (nwk {nwk:#06x})"),
        )
        .await
    }

    /// Asks a refused device to leave, off the loop.
    fn send_leave(&self, dongle: &Arc<Dongle>, ieee: Ieee, nwk: u16) {
        let d = dongle.clone();
        tokio::spawn(async move {
            if let Err(e) = d.leave(ieee, nwk).await {
                tracing::warn!(device = %ieee, error = %e, "zigbee: leave request for a refused device failed");
            }
        });
    }

    fn provisioned(&self) -> HashSet<Ieee> {
        self.credentials
            .enrolment("install_code")
            .into_iter()
            .filter_map(|(id, _)| parse_ieee(&id))
            .collect()
    }

    fn facts<'a>(&'a self, ieee: Ieee, provisioned: &'a HashSet<Ieee>) -> join::Facts<'a> {
        join::Facts {
            ieee,
            known: self.devices.get(ieee).is_some(),
            now: Instant::now(),
            window: self.window.as_ref(),
            provisioned,
            require_codes: self.cfg.require_install_codes,
            device_count: self.devices.len(),
            max_devices: self.cfg.max_devices,
        }
    }

    async fn rejoined(&mut self, ieee: Ieee, nwk: u16) -> Result<(), AdapterError> {
        let Some(mut d) = self.devices.get(ieee).cloned() else {
            return Ok(());
        };
        if d.nwk == nwk {
            return Ok(());
        }
        let old = d.nwk;
        d.nwk = nwk;
        let _ = self.devices.save(self.state.as_ref(), d);
        self.emit(AdapterEvent::Membership(Membership {
            device: device_id(ieee),
            change: MembershipChange::Rejoined,
            detail: format!("rejoined with nwk {nwk:#06x} (was {old:#06x})"),
        }))
        .await
    }

    fn start_interview(&mut self, dongle: &Arc<Dongle>, ieee: Ieee) {
        let Some(dev) = self.devices.get(ieee).cloned() else {
            return;
        };
        if !self.interviewing.insert(ieee.0) {
            return;
        }
        let dongle = dongle.clone();
        let tx = self.internal_tx.clone();
        let waiters = self.waiters.clone();
        let tsn = self.tsn.clone();
        let reporting = self.cfg.clone();
        let progress = self.window.as_ref().map(|w| w.op.progress.clone());
        let coordinator = self.coordinator;
        let slots = self.interview_slots.clone();
        let attempt = *self.interview_attempts.entry(ieee.0).or_insert(0);
        tokio::spawn(async move {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(2 * u64::from(attempt))).await;
            }
            // a few interviews at a time: a burst of joins must not flood the dongle's queue
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let (dev, notes) = interview::run(
                &dongle,
                dev,
                &waiters,
                &tsn,
                &reporting,
                progress.as_ref(),
                coordinator,
            )
            .await;
            let _ = tx.send(Internal::Interviewed(Box::new(dev), notes)).await;
        });
    }

    // ------------------------------------------------------------------ uplinks

    async fn incoming(&mut self, dongle: &Arc<Dongle>, msg: Incoming) -> Result<(), AdapterError> {
        let Some(dev) = self.devices.by_nwk(msg.src_nwk).cloned() else {
            return self
                .reject(
                    None,
                    "unknown-source",
                    format!(
                        "frame from network address {:#06x}, which no admitted device holds",
                        msg.src_nwk
                    ),
                )
                .await;
        };
        let id = dev.id();
        if !self.allow_rate(dev.ieee) {
            return self
                .reject(
                    Some(id),
                    "flood",
                    format!(
                        "more than {} frames/s; the excess is dropped",
                        self.cfg.max_frames_per_s
                    ),
                )
                .await;
        }
        if dev.sleepy {
            self.flush_sleepy(dongle, dev.ieee()).await?;
        }
        if msg.profile == 0 {
            return Ok(()); // ZDO traffic is the driver's business
        }
        let ctx = self.contexts.entry(dev.ieee).or_default();
        let decoded = match convert::decode(&dev, &msg, &self.cfg, ctx) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .reject(
                        Some(id),
                        e.cause(),
                        format!("cluster {:#06x}: {e}", msg.cluster),
                    )
                    .await;
            }
        };
        // answers a task waits for go to it and nowhere else
        if let Some(tsn) = decoded.response_tsn()
            && let Some(w) = self
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(msg.src_nwk, tsn))
        {
            let _ = w.send(msg.data.clone());
            return Ok(());
        }
        match decoded.frame {
            Frame::Points(points, kind) => {
                self.settle_by_report(msg.src_nwk, msg.cluster).await?;
                if points.is_empty() {
                    return Ok(());
                }
                let m = convert::message(&dev, &msg, kind, points);
                self.emit(AdapterEvent::Uplink(m)).await
            }
            Frame::DefaultResponse { tsn, status } => {
                if let Some(p) = self.pending.remove(&(msg.src_nwk, tsn)) {
                    let outcome = if status == 0 {
                        CommandOutcome::Delivered
                    } else {
                        CommandOutcome::DeviceError(format!(
                            "ZCL status {status:#04x} ({})",
                            convert::status_text(status)
                        ))
                    };
                    self.result(&p.command_id, &p.device, outcome).await?;
                }
                Ok(())
            }
            Frame::Ignored(why) => {
                tracing::debug!(device = %id, cluster = msg.cluster, why, "zigbee: frame ignored");
                Ok(())
            }
        }
    }

    fn allow_rate(&mut self, ieee: u64) -> bool {
        let now = Instant::now();
        let r = self.rates.entry(ieee).or_insert(Rate {
            window: now,
            count: 0,
        });
        if now.duration_since(r.window) >= Duration::from_secs(1) {
            r.window = now;
            r.count = 0;
        }
        r.count += 1;
        r.count <= self.cfg.max_frames_per_s
    }

    /// A report of the cluster a command targeted settles it as delivered.
    async fn settle_by_report(&mut self, nwk: u16, cluster: u16) -> Result<(), AdapterError> {
        let key = self
            .pending
            .iter()
            .find(|((n, _), p)| *n == nwk && p.cluster == cluster)
            .map(|(k, _)| *k);
        if let Some(k) = key
            && let Some(p) = self.pending.remove(&k)
        {
            self.result(&p.command_id, &p.device, CommandOutcome::Delivered)
                .await?;
        }
        Ok(())
    }

    /// Audits a refused frame: the first of its kind per source and period in full, the rest as one
    /// summary (so a flood costs one audit record per period, not one per frame).
    async fn reject(
        &mut self,
        device: Option<DeviceId>,
        cause: &'static str,
        detail: String,
    ) -> Result<(), AdapterError> {
        let first = self.summaries.count(
            device.as_ref().map(|d| d.to_string()),
            cause,
            detail.clone(),
        );
        if first {
            self.emit(AdapterEvent::Rejected(Rejection {
                protocol: PROTOCOL,
                device,
                cause,
                detail,
            }))
            .await?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ downlinks

    async fn result(
        &self,
        command_id: &str,
        device: &DeviceId,
        outcome: CommandOutcome,
    ) -> Result<(), AdapterError> {
        self.emit(AdapterEvent::CommandResult(CommandResult {
            command_id: command_id.to_owned(),
            device: device.clone(),
            outcome,
            points: Vec::new(),
        }))
        .await
    }

    async fn downlink(&mut self, dongle: &Arc<Dongle>, d: Downlink) -> Result<(), AdapterError> {
        let Some(dev) = parse_ieee(&d.device)
            .and_then(|i| self.devices.get(i))
            .cloned()
        else {
            return self
                .result(
                    &d.command_id,
                    &d.device,
                    CommandOutcome::DeviceError("not in this Zigbee network".into()),
                )
                .await;
        };
        if dev.sleepy {
            let depth = self.cfg.sleepy_queue_depth;
            let q = self.sleepy.entry(dev.ieee).or_default();
            if q.len() < depth {
                q.push_back((d, Instant::now()));
                return Ok(());
            }
            return self
                .result(
                    &d.command_id,
                    &d.device,
                    CommandOutcome::DeviceError(format!(
                        "sleepy device: {depth} commands already wait for its next poll"
                    )),
                )
                .await;
        }
        self.send_command(dongle, &dev, d).await
    }

    async fn send_command(
        &mut self,
        dongle: &Arc<Dongle>,
        dev: &Device,
        d: Downlink,
    ) -> Result<(), AdapterError> {
        let req = match convert::command(dev, &d.command, &self.cfg) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .result(&d.command_id, &d.device, CommandOutcome::DeviceError(e))
                    .await;
            }
        };
        if self.pending.len() >= MAX_PENDING {
            return self
                .result(
                    &d.command_id,
                    &d.device,
                    CommandOutcome::DeviceError("too many commands awaiting an answer".into()),
                )
                .await;
        }
        let tsn = self.tsn.fetch_add(1, Ordering::Relaxed);
        let frame = req.frame(tsn);
        self.pending.insert(
            (dev.nwk, tsn),
            PendingCommand {
                command_id: d.command_id.clone(),
                device: d.device.clone(),
                cluster: req.cluster,
                deadline: Instant::now() + COMMAND_TIMEOUT,
            },
        );
        let dongle = dongle.clone();
        let tx = self.internal_tx.clone();
        let (nwk, ep, cluster) = (dev.nwk, req.endpoint, req.cluster);
        tokio::spawn(async move {
            let status = dongle
                .send(nwk, LOCAL_EP, ep, cluster, &frame)
                .await
                .map_err(|e| e.to_string());
            let _ = tx
                .send(Internal::Sent {
                    command_id: d.command_id,
                    device: d.device,
                    status,
                })
                .await;
        });
        Ok(())
    }

    async fn flush_sleepy(&mut self, dongle: &Arc<Dongle>, ieee: Ieee) -> Result<(), AdapterError> {
        let Some(q) = self.sleepy.remove(&ieee.0) else {
            return Ok(());
        };
        let Some(dev) = self.devices.get(ieee).cloned() else {
            return Ok(());
        };
        for (d, _) in q {
            self.send_command(dongle, &dev, d).await?;
        }
        Ok(())
    }

    async fn internal(&mut self, dongle: &Arc<Dongle>, i: Internal) -> Result<(), AdapterError> {
        match i {
            Internal::Interviewed(dev, notes) => {
                self.interviewing.remove(&dev.ieee);
                // it may have left or been removed meanwhile
                if self.devices.get(dev.ieee()).is_none() {
                    self.interview_attempts.remove(&dev.ieee);
                    return Ok(());
                }
                // nothing learned of who it is: try again, a few times, before settling for less
                let attempts = self.interview_attempts.entry(dev.ieee).or_insert(0);
                if dev.model.is_none() && !notes.is_empty() && *attempts < INTERVIEW_RETRIES {
                    *attempts += 1;
                    tracing::info!(device = %dev.id(), attempt = *attempts, notes = %notes.join("; "),
                        "zigbee: interview incomplete, retrying");
                    self.start_interview(dongle, dev.ieee());
                    return Ok(());
                }
                self.interview_attempts.remove(&dev.ieee);
                let id = dev.id();
                let mut details = vec![("ieee".to_owned(), dev.ieee().hex())];
                if let Some(p) = dev.power_source_text() {
                    details.push(("power_source".into(), p.into()));
                }
                details.push((
                    "sleepy".into(),
                    if dev.sleepy { "yes" } else { "no" }.into(),
                ));
                for e in &dev.endpoints {
                    details.push((
                        format!("endpoint_{}", e.id),
                        format!(
                            "profile {:#06x} type {:#06x} in [{}] out [{}]",
                            e.profile,
                            e.device_type,
                            hexes(&e.input_clusters),
                            hexes(&e.output_clusters)
                        ),
                    ));
                }
                if !notes.is_empty() {
                    details.push(("interview".into(), notes.join("; ")));
                }
                let ann = Announcement {
                    device: Some(id.clone()),
                    manufacturer: dev.manufacturer.clone(),
                    model: dev.model.clone(),
                    firmware: dev.firmware(),
                    serial: None,
                    details,
                };
                if let Some(w) = &self.window {
                    w.op.progress.update(|p| {
                        p.device(
                            &id,
                            format!(
                                "interviewed: {} {}{}",
                                dev.manufacturer.as_deref().unwrap_or("?"),
                                dev.model.as_deref().unwrap_or("?"),
                                if notes.is_empty() { "" } else { " (partial)" }
                            ),
                        );
                        p.set_step(Some("waiting for devices".into()));
                    });
                }
                let _ = self.devices.save(self.state.as_ref(), *dev);
                self.emit(AdapterEvent::Announce(ann)).await?;
                Ok(())
            }
            Internal::Sent {
                command_id,
                device,
                status,
            } => {
                let failure = match status {
                    Ok(SendStatus::Delivered) => return Ok(()),
                    Ok(SendStatus::Failed(s)) => {
                        format!("the network did not deliver it (status {s:#04x})")
                    }
                    Err(e) => format!("the coordinator did not send it: {e}"),
                };
                let key = self
                    .pending
                    .iter()
                    .find(|(_, p)| p.command_id == command_id)
                    .map(|(k, _)| *k);
                if let Some(k) = key {
                    self.pending.remove(&k);
                    self.result(&command_id, &device, CommandOutcome::DeviceError(failure))
                        .await?;
                }
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------------ the tick

    async fn tick(&mut self, dongle: &Arc<Dongle>) -> Result<(), AdapterError> {
        let now = Instant::now();
        // the join window: countdown, re-open past Zigbee's 254 s, close at the end
        if self.window.as_ref().is_some_and(|w| now >= w.until) {
            let _ = dongle.permit_join(0).await;
            self.end_window(OperationState::Done, "join window closed");
        }
        if let Some(w) = self.window.as_mut() {
            let left = w.until.saturating_duration_since(now).as_secs() as u32;
            w.op.progress.update(|p| p.seconds_left = Some(left));
            if let Some(secs) = join::renew_permit(
                now,
                w.until,
                w.permit_until,
                PERMIT_MAX,
                Duration::from_secs(10),
            ) && dongle.permit_join(secs as u8).await.is_ok()
            {
                w.permit_until = now + Duration::from_secs(u64::from(secs));
            }
        }
        // commands nobody answered
        let expired: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(p) = self.pending.remove(&k) {
                self.result(&p.command_id, &p.device, CommandOutcome::Timeout)
                    .await?;
            }
        }
        // sleepy queues past their wait
        let limit = Duration::from_secs(u64::from(self.cfg.sleepy_queue_s));
        let mut stale = Vec::new();
        for q in self.sleepy.values_mut() {
            while q
                .front()
                .is_some_and(|(_, t)| now.duration_since(*t) >= limit)
            {
                if let Some((d, _)) = q.pop_front() {
                    stale.push(d);
                }
            }
        }
        self.sleepy.retain(|_, q| !q.is_empty());
        for d in stale {
            self.result(&d.command_id, &d.device, CommandOutcome::Timeout)
                .await?;
        }
        // summaries of repeated refusals, and frames the driver had to drop
        if now.duration_since(self.last_summary) >= SUMMARY_EVERY {
            self.last_summary = now;
            let dropped = dongle.dropped_events();
            if dropped > self.dropped_seen {
                let n = dropped - self.dropped_seen;
                self.dropped_seen = dropped;
                self.emit(AdapterEvent::Rejected(Rejection {
                    protocol: PROTOCOL,
                    device: None,
                    cause: "adapter-overloaded",
                    detail: format!(
                        "{n} frames from the coordinator dropped in {} s: the adapter fell behind",
                        SUMMARY_EVERY.as_secs()
                    ),
                }))
                .await?;
            }
            self.rates
                .retain(|_, r| now.duration_since(r.window) < Duration::from_secs(5));
            for (source, cause, n, detail) in self.summaries.drain() {
                self.emit(AdapterEvent::Rejected(Rejection {
                    protocol: PROTOCOL,
                    device: source.and_then(|s| s.parse().ok()),
                    cause,
                    detail: format!(
                        "{n} more like this in {} s: {detail}",
                        SUMMARY_EVERY.as_secs()
                    ),
                }))
                .await?;
            }
        }
        Ok(())
    }
}

/// Resolves once the gateway is stopping (the watch guard is dropped here, so callers stay `Send`).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

fn hexes(v: &[u16]) -> String {
    v.iter()
        .map(|c| format!("{c:#06x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
