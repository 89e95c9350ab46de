//! The adapter's run loop: opens the controller, starts it (version, home id, node list), then
//! serves node reports, operator operations (inclusion windows, exclusion, failed-node removal)
//! and downlinks until shutdown, reopening the controller whenever it goes away.
//!
//! The loop itself never waits on the controller: every Serial API request runs in a task of its
//! own and reports back through [`Internal`], so a node that is slow to confirm a command delays
//! only the requests queued behind it on the serial link, never the reports of other nodes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_serial::SerialPortBuilderExt;
use warden_core::{
    AdapterContext, AdapterError, AdapterEvent, Announcement, Assurance, CommandOutcome,
    CommandResult, DeviceId, Downlink, DskPin, LinkHealth, LinkState, Membership, MembershipChange,
    Message, Operation, OperationRequest, OperationState, Rejection, StateStore,
};

use crate::cc::{self, Report};
use crate::config::Config;
use crate::frame::Frame;
use crate::func::{self, ApplicationUpdate, NodeId, add_mode, add_status};
use crate::link::{self, Counters, Expect, LinkError, LinkHandle, Timing};
use crate::nodes::{self, Node, Nodes};
use crate::s0;
use crate::s2::crypto::{self as s2crypto, KeyPair};
use crate::s2::kex;
use crate::s2::keys::NetworkKeys;
use crate::s2::session::{self as s2s, Class, Keys, S2Error, Sessions};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Commands held for one sleeping node; more are refused until it wakes.
const SLEEP_QUEUE: usize = 8;

/// Rejections of one cause audited per 10 s; the rest are counted into the next one.
const REJECTIONS_PER_WINDOW: u32 = 20;

/// REMOVE_NODE_FROM_NETWORK statuses.
mod remove_status {
    pub const READY: u8 = 0x01;
    pub const NODE_FOUND: u8 = 0x02;
    pub const REMOVING_END_NODE: u8 = 0x03;
    pub const REMOVING_CONTROLLER: u8 = 0x04;
    pub const DONE: u8 = 0x06;
    pub const FAILED: u8 = 0x07;
}
const IS_FAILED_NODE: u8 = 0x62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WaitFor {
    /// A plain (or decrypted) command-class frame `cc cmd …` from a node.
    Report(NodeId, u8, u8),
    /// A Security 2 command that arrived *inside* S2 encapsulation.
    Secure(NodeId, u8),
    /// A Supervision Report for this session id.
    Supervision(NodeId, u8),
    /// A Security 0 command that arrived inside S0 encapsulation (with the keys that opened it).
    S0(NodeId, u8),
}

/// How a frame reached Warden encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secured {
    S0,
    S2(Class),
}

impl Secured {
    /// The message's security label (`Message::security`), what profiles and plugins ask for.
    fn label(self) -> &'static str {
        match self {
            Self::S0 => "zwave-s0",
            Self::S2(Class::Unauthenticated) => "zwave-s2-unauthenticated",
            Self::S2(Class::Authenticated) => "zwave-s2-authenticated",
            Self::S2(Class::AccessControl) => "zwave-s2-access-control",
        }
    }
}

/// Security 0 state: the network's S0 keys, bootstrap keys per node, the nodes granted S0 and
/// the nonces Warden handed out.
#[derive(Default)]
struct S0State {
    /// The network key itself, sent to a node at its S0 bootstrap.
    key: Option<[u8; 16]>,
    keys: Option<s0::Keys>,
    temp: HashMap<NodeId, s0::Keys>,
    granted: HashSet<NodeId>,
    nonces: s0::Nonces,
    /// Sequenced (two-frame) commands from nodes, put back together.
    reassembly: s0::Reassembly,
    /// The counter of Warden's next sequenced command.
    send_counter: u8,
}

const S0_KEY: &str = "s0/network-key";

/// The network's S0 key, created and sealed in the state store on first use.
fn s0_key(state: &dyn StateStore) -> Result<[u8; 16], String> {
    if let Some(v) = state.get(S0_KEY).map_err(|e| e.to_string())? {
        return v
            .as_slice()
            .try_into()
            .map_err(|_| "the stored S0 network key is not 16 bytes".to_owned());
    }
    let k: [u8; 16] = rand::random();
    state.put(S0_KEY, &k).map_err(|e| e.to_string())?;
    Ok(k)
}

/// What a waiter receives: the command-class bytes and, when it was encrypted, the keys.
type Waited = (Vec<u8>, Option<Keys>);

struct Waiter {
    what: WaitFor,
    tx: oneshot::Sender<Waited>,
}

/// Interview and bootstrap steps wait for frames the run loop receives; it hands them over here.
#[derive(Clone, Default)]
struct Waiters(Arc<Mutex<Vec<Waiter>>>);

impl Waiters {
    fn add(&self, what: WaitFor) -> oneshot::Receiver<Waited> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.0.lock() {
            w.retain(|w| !w.tx.is_closed());
            // Bounded: a few waiters per node being interviewed or bootstrapped.
            if w.len() < 512 {
                w.push(Waiter { what, tx });
            }
        }
        rx
    }

    fn fulfil(&self, what: WaitFor, data: &[u8], keys: Option<Keys>) {
        if let Ok(mut w) = self.0.lock() {
            let mut i = 0;
            while i < w.len() {
                if w.get(i).is_some_and(|x| x.what == what) {
                    let x = w.swap_remove(i);
                    let _ = x.tx.send((data.to_vec(), keys));
                } else {
                    i += 1;
                }
            }
        }
    }
}

/// What a task needs to talk to nodes: the link, the S2 sessions, the waiters.
#[derive(Clone)]
struct Out {
    link: LinkHandle,
    sessions: Arc<Mutex<Sessions>>,
    s0: Arc<Mutex<S0State>>,
    own: NodeId,
    waiters: Waiters,
    step: Duration,
}

impl Out {
    fn s0(&self) -> std::sync::MutexGuard<'_, S0State> {
        self.s0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// S0: sends `payload` encapsulated under `keys` (the network's, or a bootstrap's temporary
    /// keys); a command too long for one encapsulation goes as two sequenced parts, each with a
    /// nonce of its own.
    async fn send_s0(
        &self,
        node: NodeId,
        keys: &s0::Keys,
        payload: &[u8],
    ) -> Result<u8, LinkError> {
        let counter = {
            let mut st = self.s0();
            st.send_counter = (st.send_counter + 1) & 0x0f;
            st.send_counter
        };
        let parts = s0::split(payload, counter)
            .ok_or_else(|| LinkError::Encode(s0::S0Error::TooLong(payload.len()).to_string()))?;
        for (part, bytes) in parts {
            let st = self.send_s0_part(node, keys, part, bytes).await?;
            if st != 0 {
                return Ok(st);
            }
        }
        Ok(0)
    }

    /// One S0 encapsulation: asks the node for a nonce, then sends the part under it.
    async fn send_s0_part(
        &self,
        node: NodeId,
        keys: &s0::Keys,
        part: s0::Part,
        payload: &[u8],
    ) -> Result<u8, LinkError> {
        let rx = self
            .waiters
            .add(WaitFor::Report(node, s0::CC, s0::NONCE_REPORT));
        let st = send_data(&self.link, node, &[s0::CC, s0::NONCE_GET]).await?;
        if st != 0 {
            return Ok(st);
        }
        let Ok(Ok((p, _))) = tokio::time::timeout(self.step, rx).await else {
            return Err(LinkError::CallbackTimeout(self.step));
        };
        let receiver = s0::parse_nonce_report(&p)
            .ok_or_else(|| LinkError::Encode("malformed S0 Nonce Report".into()))?;
        let sender: s0::Nonce = rand::random();
        let frame = keys.seal_part(&sender, &receiver, self.own, node, part, payload);
        send_data(&self.link, node, &frame).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The security a command to `node` travels under: its S2 class, else S0, else none.
    fn security_of(&self, node: NodeId) -> Option<Secured> {
        if let Some(c) = self.lock().granted(node) {
            return Some(Secured::S2(c));
        }
        self.s0().granted.contains(&node).then_some(Secured::S0)
    }

    /// Sends a command to a node: S2-encapsulated under its granted class if it has one.
    async fn send(&self, node: NodeId, payload: &[u8]) -> Result<u8, LinkError> {
        let granted = self.lock().granted(node);
        if let Some(c) = granted {
            return self.send_secure(node, Keys::Network(c), payload).await;
        }
        let s0 = {
            let st = self.s0();
            st.granted
                .contains(&node)
                .then(|| st.keys.clone())
                .flatten()
        };
        match s0 {
            Some(k) => self.send_s0(node, &k, payload).await,
            None => send_data(&self.link, node, payload).await,
        }
    }

    /// Encapsulates under `keys`; without a session, asks the node for a nonce first.
    async fn send_secure(&self, node: NodeId, keys: Keys, payload: &[u8]) -> Result<u8, LinkError> {
        for _ in 0..2 {
            let sealed = self.lock().seal(node, keys, payload);
            match sealed {
                Ok(frame) => return send_data(&self.link, node, &frame).await,
                Err(_) => {
                    let rx = self
                        .waiters
                        .add(WaitFor::Report(node, s2s::CC, s2s::NONCE_REPORT));
                    let get = self.lock().nonce_get(node);
                    let st = send_data(&self.link, node, &get).await?;
                    if st != 0 {
                        return Ok(st);
                    }
                    if tokio::time::timeout(self.step, rx).await.is_err() {
                        return Err(LinkError::CallbackTimeout(self.step));
                    }
                }
            }
        }
        Err(LinkError::Encode(
            "no S2 session with the node after a nonce exchange".into(),
        ))
    }

    /// Sends a Get (`cc cmd`) and waits for its report.
    async fn ask(&self, node: NodeId, get: &[u8], report: u8) -> Result<Vec<u8>, String> {
        let cc = *get.first().ok_or("empty get")?;
        let rx = self.waiters.add(WaitFor::Report(node, cc, report));
        match self.send(node, get).await {
            Ok(0) => {}
            Ok(s) => return Err(func::tx_status_text(s).to_owned()),
            Err(e) => return Err(e.to_string()),
        }
        match tokio::time::timeout(self.step, rx).await {
            Ok(Ok((p, _))) => Ok(p),
            _ => Err(format!("no report within {:?}", self.step)),
        }
    }
}

enum Internal {
    Started(Result<(), LinkError>, &'static str),
    Interviewed(Node, Vec<String>),
    /// A security bootstrap that failed: audited as `s2-bootstrap-failed`.
    BootstrapFailed(NodeId, String),
    Sent {
        command_id: String,
        device: DeviceId,
        result: Result<u8, LinkError>,
    },
    /// A supervised command: its transmit status, then the node's Supervision Report (None: none
    /// came in time).
    Supervised {
        command_id: String,
        device: DeviceId,
        result: Result<u8, LinkError>,
        report: Option<cc::supervision::Report>,
    },
    FailedCheck {
        op: Operation,
        node: NodeId,
        failed: Result<bool, LinkError>,
    },
    FailedRemoved {
        op: Operation,
        node: NodeId,
        result: Result<u8, LinkError>,
    },
}

/// A command for a sleeping node, sent at its next Wake Up Notification.
struct Held {
    command_id: String,
    device: DeviceId,
    /// The command as it goes on the air: already inside Supervision Get when `supervision`
    /// names its session.
    payload: Vec<u8>,
    supervision: Option<u8>,
    /// When a held command is given up as timed out (unused for a command sent at once).
    until: Instant,
}

/// Sends one command to a node and hands its result to the run loop. With a supervision
/// session, `payload` is the Supervision Get around the command and the node's Supervision
/// Report (or its absence within `wait`) is the result, whether the node was awake when the
/// command came or it was held for its wake-up.
async fn deliver(out: &Out, tx: &mpsc::Sender<Internal>, node: NodeId, wait: Duration, h: Held) {
    let Held {
        command_id,
        device,
        payload,
        supervision,
        ..
    } = h;
    let Some(session) = supervision else {
        let result = out.send(node, &payload).await;
        let _ = tx
            .send(Internal::Sent {
                command_id,
                device,
                result,
            })
            .await;
        return;
    };
    let rx = out.waiters.add(WaitFor::Supervision(node, session));
    let result = out.send(node, &payload).await;
    let report = match result {
        Ok(0) => match tokio::time::timeout(wait, rx).await {
            Ok(Ok((p, _))) => cc::supervision::parse_report(&p),
            _ => None,
        },
        _ => None,
    };
    let _ = tx
        .send(Internal::Supervised {
            command_id,
            device,
            result,
            report,
        })
        .await;
}

struct Window {
    op: Operation,
    until: Instant,
    callback_id: u8,
    found: Option<func::NodeInfo>,
    stopping: bool,
    /// Inclusion is restarted after each node while the window lasts.
    restart_pending: bool,
    /// A node just included whose bootstrap and interview run before the next inclusion.
    waiting_for: Option<NodeId>,
}

struct Exclusion {
    op: Operation,
    node: NodeId,
    until: Instant,
    callback_id: u8,
    stopping: bool,
}

#[derive(Default)]
struct RateLimit {
    window_start: Option<Instant>,
    counts: HashMap<&'static str, (u32, u64)>,
}

impl RateLimit {
    /// Whether to audit this rejection now, and how many of its cause were counted unaudited.
    fn admit(&mut self, cause: &'static str) -> Option<u64> {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(10))
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

enum End {
    Shutdown,
    LinkLost(String),
}

pub struct Runtime {
    cfg: Config,
    events: mpsc::Sender<AdapterEvent>,
    state: Arc<dyn StateStore>,
    link_name: String,
    counters: Arc<Counters>,
    home: u32,
    own: NodeId,
    nodes: Nodes,
    controller_nodes: BTreeSet<NodeId>,
    waiters: Waiters,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    window: Option<Window>,
    exclusion: Option<Exclusion>,
    interviewing: HashSet<NodeId>,
    rejections: RateLimit,
    unhandled: u64,
    asleep: HashMap<NodeId, std::collections::VecDeque<Held>>,
    sessions: Arc<Mutex<Sessions>>,
    keys: Option<NetworkKeys>,
    /// The DSK PIN of the newest join window (None when it was opened without one): read by a
    /// bootstrap when the node asks for its keys, so a PIN given during the window counts.
    pin: Arc<Mutex<Option<DskPin>>>,
    /// How many Nonce Reports each node can still make Warden send.
    nonce_budget: crate::flood::NonceBudget,
    s0: Arc<Mutex<S0State>>,
    /// How many Supervision Reports each node can make Warden send (answers to its supervised
    /// reports), bounded like Nonce Reports.
    answer_budget: crate::flood::NonceBudget,
    /// The next Supervision session id (0..63).
    supervision_session: u8,
}

impl Runtime {
    pub fn new(cfg: Config, ctx: &AdapterContext) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(256);
        let link_name = format!("zwave:{}", cfg.port);
        Self {
            cfg,
            events: ctx.events.clone(),
            state: ctx.state.clone(),
            link_name,
            counters: Arc::new(Counters::default()),
            home: 0,
            own: 0,
            nodes: Nodes::default(),
            controller_nodes: BTreeSet::new(),
            waiters: Waiters::default(),
            internal_tx,
            internal_rx,
            window: None,
            exclusion: None,
            interviewing: HashSet::new(),
            rejections: RateLimit::default(),
            unhandled: 0,
            asleep: HashMap::new(),
            sessions: Arc::new(Mutex::new(Sessions::new(0, 0))),
            keys: None,
            pin: Arc::new(Mutex::new(None)),
            nonce_budget: Default::default(),
            answer_budget: Default::default(),
            supervision_session: 0,
            s0: Arc::new(Mutex::new(S0State::default())),
        }
    }

    async fn emit(&self, ev: AdapterEvent) -> Result<(), AdapterError> {
        self.events.send(ev).await.map_err(|_| AdapterError::Closed)
    }

    async fn health(&self, state: LinkState, detail: String) -> Result<(), AdapterError> {
        self.emit(AdapterEvent::Health(LinkHealth {
            link: self.link_name.clone(),
            state,
            detail,
        }))
        .await
    }

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

    async fn reject(
        &mut self,
        device: Option<DeviceId>,
        cause: &'static str,
        detail: String,
    ) -> Result<(), AdapterError> {
        let Some(unaudited) = self.rejections.admit(cause) else {
            return Ok(());
        };
        let detail = if unaudited > 0 {
            format!("{detail} ({unaudited} more `{cause}` frames since the last record)")
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

    /// Opens, starts and serves the controller until shutdown; reopens it whenever it goes away.
    pub async fn run(
        mut self,
        mut ops: mpsc::Receiver<Operation>,
        mut downlinks: mpsc::Receiver<Downlink>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), AdapterError> {
        let mut announced_down = false;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let timing = Timing {
                callback: Duration::from_millis(u64::from(self.cfg.send_timeout_ms)),
                ..Timing::default()
            };
            match open(&self.cfg).await {
                Ok(stream) => {
                    // A fresh link per connection: requests of the old one fail with `Closed`.
                    let (handle, mut calls) = link::new(32);
                    let (etx, erx) = mpsc::channel(256);
                    let counters = self.counters.clone();
                    let link_task = tokio::spawn(async move {
                        link::run(stream, timing, &mut calls, &etx, &counters).await
                    });
                    let end = match self.start(&handle).await {
                        Ok(detail) => {
                            self.health(LinkState::Up, detail).await?;
                            announced_down = false;
                            self.session(&handle, erx, &mut ops, &mut downlinks, &mut shutdown)
                                .await?
                        }
                        Err(why) => End::LinkLost(why),
                    };
                    link_task.abort();
                    match end {
                        End::Shutdown => {
                            self.end_operations(OperationState::Cancelled, "the gateway stopped");
                            return Ok(());
                        }
                        End::LinkLost(why) => {
                            self.end_operations(OperationState::Failed, "the controller went away");
                            if !announced_down {
                                self.health(LinkState::Down, why).await?;
                                announced_down = true;
                            }
                        }
                    }
                }
                Err(why) => {
                    if !announced_down {
                        self.health(LinkState::Down, why).await?;
                        announced_down = true;
                    }
                }
            }
            // Operations and commands that arrive while the controller is away fail at once.
            let wait = tokio::time::sleep(Duration::from_secs(u64::from(self.cfg.reconnect_s)));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = stopped(&mut shutdown) => return Ok(()),
                    Some(op) = ops.recv() => op.progress.finish(
                        OperationState::Failed, "the Z-Wave controller is not connected"),
                    Some(d) = downlinks.recv() => self.result(&d.command_id, &d.device,
                        CommandOutcome::DeviceError("the Z-Wave controller is not connected".into())).await?,
                }
            }
        }
    }

    fn end_operations(&mut self, state: OperationState, detail: &str) {
        if let Some(w) = self.window.take() {
            w.op.progress.finish(state, detail);
        }
        if let Some(x) = self.exclusion.take() {
            x.op.progress.finish(state, detail);
        }
        self.interviewing.clear();
    }

    /// The controller's start-up: version, network, node list; then the node table.
    async fn start(&mut self, link: &LinkHandle) -> Result<String, String> {
        let v = link
            .ask(func::GET_VERSION, vec![])
            .await
            .map_err(|e| format!("GET_VERSION: {e}"))?;
        let version = func::parse_version(&v).map_err(|e| e.to_string())?;
        let id = link
            .ask(func::MEMORY_GET_ID, vec![])
            .await
            .map_err(|e| format!("MEMORY_GET_ID: {e}"))?;
        let (home, own) = func::parse_memory_id(&id).map_err(|e| e.to_string())?;
        let stick = match link.ask(func::GET_CAPABILITIES, vec![]).await {
            Ok(d) => func::parse_capabilities(&d)
                .map(|s| {
                    format!(
                        ", stick {:04x}:{:04x}:{:04x} app {}.{}",
                        s.manufacturer, s.product_type, s.product_id, s.app_version, s.app_revision
                    )
                })
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let init = link
            .ask(func::GET_INIT_DATA, vec![])
            .await
            .map_err(|e| format!("GET_INIT_DATA: {e}"))?;
        let listed = func::parse_init_data(&init).map_err(|e| e.to_string())?;
        if home != self.home || self.nodes.by_id.is_empty() {
            let (nodes, bad) = Nodes::load(self.state.as_ref(), home);
            for k in bad {
                tracing::warn!(key = %k, "zwave: unreadable node record skipped");
            }
            self.nodes = nodes;
        }
        self.home = home;
        self.own = own;
        let keys = NetworkKeys::load_or_create(self.state.as_ref())
            .map_err(|e| format!("S2 network keys: {e}"))?;
        let mut sessions = Sessions::new(home, own);
        for c in Class::ALL {
            sessions.set_network_key(c, keys.get(c));
        }
        for n in self.nodes.by_id.values() {
            if let Some(c) = n.class() {
                sessions.grant(n.id, c);
            }
        }
        self.sessions = Arc::new(Mutex::new(sessions));
        self.keys = Some(keys);
        let k0 = s0_key(self.state.as_ref()).map_err(|e| format!("S0 network key: {e}"))?;
        self.s0 = Arc::new(Mutex::new(S0State {
            key: Some(k0),
            keys: Some(s0::Keys::new(&k0)),
            granted: self
                .nodes
                .by_id
                .values()
                .filter(|n| n.security.as_deref() == Some("s0"))
                .map(|n| n.id)
                .collect(),
            ..Default::default()
        }));
        self.controller_nodes = listed.iter().copied().filter(|n| *n != own).collect();

        // Nodes this adapter knew that the controller no longer holds left the network elsewhere.
        let gone: Vec<NodeId> = self
            .nodes
            .by_id
            .keys()
            .copied()
            .filter(|n| !self.controller_nodes.contains(n))
            .collect();
        for n in gone {
            let _ = self.nodes.forget(self.state.as_ref(), n);
            let _ = self
                .events
                .send(AdapterEvent::Membership(Membership {
                    device: nodes::device_id(home, n),
                    change: MembershipChange::Left,
                    detail: format!("node {n} is no longer in the controller's node list"),
                }))
                .await;
        }
        // Nodes the controller holds that were never interviewed here: interview them now.
        let todo: Vec<NodeId> = self
            .controller_nodes
            .iter()
            .copied()
            .filter(|n| !self.nodes.by_id.get(n).is_some_and(|x| x.interviewed))
            .collect();
        for n in &todo {
            self.spawn_interview(link, *n, None, None);
        }
        let detail = format!(
            "{} (library {}){stick}, home {home:08x}, controller node {own}, {} nodes ({} to interview)",
            version.text,
            version.library_type,
            self.controller_nodes.len(),
            todo.len()
        );
        tracing::info!(%detail, "zwave controller up");
        Ok(detail)
    }

    async fn session(
        &mut self,
        link: &LinkHandle,
        mut frames: mpsc::Receiver<Frame>,
        ops: &mut mpsc::Receiver<Operation>,
        downlinks: &mut mpsc::Receiver<Downlink>,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<End, AdapterError> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                f = frames.recv() => match f {
                    Some(f) => self.frame(link, f).await?,
                    None => return Ok(End::LinkLost("the controller's link closed".into())),
                },
                Some(op) = ops.recv() => self.operation(link, op),
                Some(d) = downlinks.recv() => self.downlink(link, d).await?,
                Some(i) = self.internal_rx.recv() => self.internal(link, i).await?,
                _ = tick.tick() => self.tick(link),
                _ = stopped(shutdown) => {
                    if let Some(w) = &self.window {
                        let _ = tokio::time::timeout(Duration::from_secs(2),
                            link.call(func::ADD_NODE_TO_NETWORK, vec![add_mode::STOP, w.callback_id], Expect::Ack)).await;
                    }
                    return Ok(End::Shutdown);
                }
            }
        }
    }

    fn spawn_call(&self, link: &LinkHandle, func: u8, data: Vec<u8>, what: &'static str) {
        let link = link.clone();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let r = link.call(func, data, Expect::Ack).await.map(|_| ());
            let _ = tx.send(Internal::Started(r, what)).await;
        });
    }

    fn out(&self, link: &LinkHandle) -> Out {
        Out {
            link: link.clone(),
            sessions: self.sessions.clone(),
            s0: self.s0.clone(),
            own: self.own,
            waiters: self.waiters.clone(),
            step: Duration::from_millis(u64::from(self.cfg.interview_timeout_ms)),
        }
    }

    /// Interviews a node; with `bootstrap`, first runs the S2 key exchange (a node just included
    /// whose node information lists Security 2).
    fn spawn_interview(
        &mut self,
        link: &LinkHandle,
        node: NodeId,
        nif: Option<func::NodeInfo>,
        bootstrap: Option<warden_core::ProgressSender>,
    ) {
        if !self.interviewing.insert(node) {
            return;
        }
        let out = self.out(link);
        let tx = self.internal_tx.clone();
        let known = self.nodes.by_id.get(&node).cloned();
        let own = self.own;
        let keys = self.keys.clone();
        let pin = self.pin.clone();
        tokio::spawn(async move {
            let mut notes = Vec::new();
            let mut security = known.as_ref().and_then(|k| k.security.clone());
            let s2 = nif
                .as_ref()
                .is_some_and(|f| f.command_classes.contains(&cc::SECURITY_2));
            let s0_only = !s2
                && nif
                    .as_ref()
                    .is_some_and(|f| f.command_classes.contains(&cc::SECURITY_0));
            if let (true, Some(progress)) = (s0_only, bootstrap.as_ref()) {
                progress.update(|p| {
                    p.set_step(Some(format!(
                        "security bootstrap: node {node} (S0 network key)"
                    )))
                });
                match s0_bootstrap(&out, node).await {
                    Ok(()) => {
                        security = Some("s0".to_owned());
                        progress.update(|p| {
                            p.set_step(Some(format!("security bootstrap: node {node} granted s0")))
                        });
                    }
                    Err(e) => {
                        out.s0().temp.remove(&node);
                        let _ = tx.send(Internal::BootstrapFailed(node, e.clone())).await;
                        notes.push(format!(
                            "S0 bootstrap failed ({e}): included without security"
                        ));
                    }
                }
            }
            if let (true, Some(progress), Some(keys)) = (s2, bootstrap, keys) {
                progress.update(|p| {
                    p.set_step(Some(format!(
                        "security bootstrap: node {node} (S2 key exchange)"
                    )))
                });
                match s2_bootstrap(&out, node, &keys, &pin).await {
                    Ok(class) => {
                        security = Some(class.as_str().to_owned());
                        progress.update(|p| {
                            p.set_step(Some(format!(
                                "security bootstrap: node {node} granted {}",
                                class.as_str()
                            )))
                        });
                    }
                    Err(e) => {
                        out.lock().revoke(node);
                        let _ = tx.send(Internal::BootstrapFailed(node, e.clone())).await;
                        notes.push(format!(
                            "security bootstrap failed ({e}): included without security"
                        ));
                        progress.update(|p| {
                            p.set_step(Some(format!(
                                "security bootstrap failed for node {node}: {e}"
                            )))
                        });
                    }
                }
            }
            let (mut n, more) = interview(&out, node, nif, known, own).await;
            n.security = security;
            notes.extend(more);
            let _ = tx.send(Internal::Interviewed(n, notes)).await;
        });
    }

    async fn frame(&mut self, link: &LinkHandle, f: Frame) -> Result<(), AdapterError> {
        match f.func {
            func::APPLICATION_COMMAND_HANDLER | func::APPLICATION_COMMAND_HANDLER_BRIDGE => {
                let inc = match func::parse_command_handler(f.func, &f.data) {
                    Ok(i) => i,
                    Err(e) => return self.reject(None, "malformed", e.to_string()).await,
                };
                self.incoming(link, inc).await
            }
            func::APPLICATION_UPDATE => {
                match func::parse_application_update(&f.data) {
                    // Node information the node sent on its own (its button): nothing to do; the
                    // answers to REQUEST_NODE_INFO are taken by the link.
                    Ok(_) => {}
                    Err(e) => {
                        self.reject(None, "malformed", e.to_string()).await?;
                    }
                }
                Ok(())
            }
            func::ADD_NODE_TO_NETWORK => self.inclusion(link, &f.data).await,
            func::REMOVE_NODE_FROM_NETWORK => self.exclusion_callback(link, &f.data).await,
            _ => {
                self.unhandled += 1;
                Ok(())
            }
        }
    }

    async fn incoming(
        &mut self,
        link: &LinkHandle,
        inc: func::Incoming,
    ) -> Result<(), AdapterError> {
        let id = nodes::device_id(self.home, inc.source);
        if inc.source == self.own {
            return Ok(());
        }
        if !self.controller_nodes.contains(&inc.source) {
            return self
                .reject(
                    Some(id),
                    "unknown-node",
                    format!(
                        "a frame from node {}, which is not in the controller's node list (spoofed or excluded)",
                        inc.source
                    ),
                )
                .await;
        }
        if inc.payload.first() == Some(&s2s::CC) {
            return self.security2(link, inc).await;
        }
        if inc.payload.first() == Some(&s0::CC) {
            return self.security0(link, inc).await;
        }
        if self
            .s0
            .lock()
            .is_ok_and(|s| s.granted.contains(&inc.source))
        {
            return self
                .reject(
                    Some(id),
                    "downgrade",
                    format!(
                        "an unencrypted frame (command class {:#04x}) from a node included with s0",
                        inc.payload.first().copied().unwrap_or(0)
                    ),
                )
                .await;
        }
        let granted = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.granted(inc.source));
        if let Some(class) = granted {
            return self
                .reject(
                    Some(id),
                    "downgrade",
                    format!(
                        "an unencrypted frame (command class {:#04x}) from a node included with {}",
                        inc.payload.first().copied().unwrap_or(0),
                        class.as_str()
                    ),
                )
                .await;
        }
        self.command_class(link, inc.source, inc.payload, inc.rssi, None)
            .await
    }

    /// A Security 2 frame: nonce exchange, key exchange steps, or an encapsulated command.
    async fn security2(
        &mut self,
        link: &LinkHandle,
        inc: func::Incoming,
    ) -> Result<(), AdapterError> {
        let node = inc.source;
        let id = nodes::device_id(self.home, node);
        let cmd = inc.payload.get(1).copied().unwrap_or(0);
        // Only a node that holds S2 keys (granted, or mid-bootstrap) gets nonces from Warden: a
        // node included without S2 has no session to resynchronise, and answering it would let
        // any node make the controller transmit on request.
        let speaks_s2 = self
            .sessions
            .lock()
            .map(|s| s.granted(node).is_some() || s.bootstrapping(node))
            .unwrap_or(false);
        match cmd {
            s2s::NONCE_GET if !speaks_s2 => {
                self.reject(
                    Some(id),
                    "s2-not-granted",
                    format!("an S2 Nonce Get from node {node}, which holds no S2 keys"),
                )
                .await
            }
            s2s::NONCE_GET => self.nonce_report(link, node, "a Nonce Get").await,
            s2s::NONCE_REPORT => {
                let r = match self.sessions.lock() {
                    Ok(mut s) => s.on_nonce_report(node, &inc.payload),
                    Err(_) => Ok(()),
                };
                if let Err(e) = r {
                    return self.reject(Some(id), "malformed", e.to_string()).await;
                }
                self.waiters.fulfil(
                    WaitFor::Report(node, s2s::CC, s2s::NONCE_REPORT),
                    &inc.payload,
                    None,
                );
                Ok(())
            }
            s2s::MESSAGE_ENCAPSULATION => {
                // A multicast (or broadcast) frame: its nonce comes from the group's MPAN.
                let multicast = inc.rx_status & func::RX_TYPE_MASK != 0;
                let opened = match self.sessions.lock() {
                    Ok(mut s) if multicast => s.open_multicast(node, &inc.payload),
                    Ok(mut s) => s.open(node, &inc.payload),
                    Err(_) => Err(S2Error::NoSpan),
                };
                if multicast {
                    return self.multicast(link, node, opened, inc.rssi).await;
                }
                match opened {
                    Ok(o) => {
                        if o.mos {
                            self.mos_report(link, node).await?;
                        }
                        // A frame that carried only extensions (an MPAN for a group)
                        if o.payload.is_empty() {
                            return Ok(());
                        }
                        if o.payload.first() == Some(&s2s::CC) {
                            let inner = o.payload.get(1).copied().unwrap_or(0);
                            self.waiters.fulfil(
                                WaitFor::Secure(node, inner),
                                &o.payload,
                                Some(o.keys),
                            );
                            return Ok(());
                        }
                        let granted = self.sessions.lock().ok().and_then(|s| s.granted(node));
                        // A node speaks under the highest class it was granted, and only that:
                        // a lower one is a downgrade; a higher one is a key it was never given
                        // (read out of another device of that class).
                        match (o.keys, granted) {
                            (Keys::Network(c), Some(g)) if c > g => {
                                self.reject(
                                    Some(id),
                                    "s2-class-not-granted",
                                    format!(
                                        "a frame encrypted under {} from a node granted only {}",
                                        c.as_str(),
                                        g.as_str()
                                    ),
                                )
                                .await
                            }
                            (Keys::Network(c), Some(g)) if c == g => {
                                self.command_class(
                                    link,
                                    node,
                                    o.payload,
                                    inc.rssi,
                                    Some(Secured::S2(c)),
                                )
                                .await
                            }
                            (keys, g) => {
                                self.reject(
                                    Some(id),
                                    "downgrade",
                                    format!(
                                        "a frame encrypted under {} from a node granted {}",
                                        match keys {
                                            Keys::Temp => "bootstrap keys",
                                            Keys::Network(c) => c.as_str(),
                                        },
                                        g.map_or("no S2 class", Class::as_str)
                                    ),
                                )
                                .await
                            }
                        }
                    }
                    Err(S2Error::Replay(seq)) => {
                        self.reject(
                            Some(id),
                            "replay",
                            format!("a replayed S2 frame (sequence number {seq} seen before)"),
                        )
                        .await
                    }
                    Err(e @ (S2Error::NoSpan | S2Error::CannotDecode)) => {
                        // Mid-bootstrap, the only frame the node encrypts before our echo is its
                        // KEX Set echo: one that does not decrypt under the temporary keys means
                        // the ECDH secrets differ (a wrong DSK PIN, or someone else's key).
                        if self.sessions.lock().is_ok_and(|s| s.bootstrapping(node)) {
                            self.waiters
                                .fulfil(WaitFor::Secure(node, kex::KEX_SET), &[], None);
                        }
                        // Tell the node to start a new session; its next frame carries fresh entropy.
                        self.reject(Some(id), "s2-decrypt-failed", e.to_string())
                            .await?;
                        if speaks_s2 {
                            self.nonce_report(link, node, "an undecryptable frame")
                                .await?;
                        }
                        Ok(())
                    }
                    Err(e) => self.reject(Some(id), "malformed", e.to_string()).await,
                }
            }
            other => {
                // Key exchange steps a node sends in the clear (KEX Report, Public Key Report, KEX
                // Fail): only a bootstrap waiting for them takes them.
                self.waiters
                    .fulfil(WaitFor::Report(node, s2s::CC, other), &inc.payload, None);
                Ok(())
            }
        }
    }

    /// A Security 0 frame: a nonce exchange, or an encapsulated command (decrypted with the nonce
    /// Warden handed the node, used once).
    async fn security0(
        &mut self,
        link: &LinkHandle,
        inc: func::Incoming,
    ) -> Result<(), AdapterError> {
        let node = inc.source;
        let id = nodes::device_id(self.home, node);
        let (speaks, granted) = self
            .s0
            .lock()
            .map(|s| {
                (
                    s.granted.contains(&node) || s.temp.contains_key(&node),
                    s.granted.contains(&node),
                )
            })
            .unwrap_or((false, false));
        let cmd = inc.payload.get(1).copied().unwrap_or(0);
        match cmd {
            s0::NONCE_GET | s0::ENCAPSULATION | s0::ENCAPSULATION_NONCE_GET if !speaks => {
                self.reject(
                    Some(id),
                    "s0-not-granted",
                    format!("an S0 frame ({cmd:#04x}) from node {node}, which holds no S0 key"),
                )
                .await
            }
            s0::NONCE_GET => self.s0_nonce(link, node).await,
            s0::NONCE_REPORT => {
                self.waiters.fulfil(
                    WaitFor::Report(node, s0::CC, s0::NONCE_REPORT),
                    &inc.payload,
                    None,
                );
                Ok(())
            }
            s0::ENCAPSULATION | s0::ENCAPSULATION_NONCE_GET => {
                let opened = {
                    let Ok(mut st) = self.s0.lock() else {
                        return Ok(());
                    };
                    match s0::parse_encapsulated(&inc.payload) {
                        Err(e) => Err(e),
                        Ok(e) => {
                            match st
                                .nonces
                                .take(node, e.receiver_id, std::time::Instant::now())
                            {
                                None => Err(s0::S0Error::UnknownNonce(e.receiver_id)),
                                Some(n) => {
                                    let net = st
                                        .keys
                                        .as_ref()
                                        .map(|k| (k.open(&e, &n, node, self.own), false));
                                    let temp = st
                                        .temp
                                        .get(&node)
                                        .map(|k| (k.open(&e, &n, node, self.own), true));
                                    match (net, temp) {
                                        (Some((Ok(p), _)), _) => Ok((p, false)),
                                        (_, Some((Ok(p), _))) => Ok((p, true)),
                                        (Some((Err(e), _)), _) | (None, Some((Err(e), _))) => {
                                            Err(e)
                                        }
                                        (None, None) => Err(s0::S0Error::BadMac),
                                    }
                                }
                            }
                        }
                    }
                    .and_then(|((part, p), temp)| match (part, temp) {
                        (s0::Part::Single, _) => Ok(Some((p, temp))),
                        // The bootstrap key is all zeroes: anyone can make such a part, so it
                        // must never be joined to one under the network key.
                        (_, true) => Err(s0::S0Error::Malformed(
                            "a sequenced part under the bootstrap key",
                        )),
                        (_, false) => st
                            .reassembly
                            .accept(node, part, p, std::time::Instant::now())
                            .map(|whole| whole.map(|p| (p, false)))
                            .map_err(s0::S0Error::from),
                    })
                };
                if cmd == s0::ENCAPSULATION_NONCE_GET {
                    self.s0_nonce(link, node).await?;
                }
                match opened {
                    // the first half of a sequenced command: kept until its second arrives
                    Ok(None) => Ok(()),
                    Ok(Some((p, temp))) if p.first() == Some(&s0::CC) => {
                        let inner = p.get(1).copied().unwrap_or(0);
                        // whether the bootstrap's temporary keys opened it travels in the waiter
                        let keys = temp.then_some(Keys::Temp);
                        self.waiters.fulfil(WaitFor::S0(node, inner), &p, keys);
                        Ok(())
                    }
                    Ok(Some((p, false))) if granted => {
                        self.command_class(link, node, p, inc.rssi, Some(Secured::S0))
                            .await
                    }
                    Ok(_) => {
                        self.reject(
                            Some(id),
                            "downgrade",
                            format!("an S0 frame under bootstrap keys from node {node}"),
                        )
                        .await
                    }
                    Err(s0::S0Error::UnknownNonce(n)) => {
                        self.reject(
                            Some(id),
                            "replay",
                            format!("an S0 frame for nonce {n:#04x}, which Warden did not hand out, already used or expired"),
                        )
                        .await
                    }
                    Err(s0::S0Error::BadMac) => {
                        self.reject(Some(id), "s0-decrypt-failed", "an S0 frame with a bad MAC".into())
                            .await
                    }
                    Err(s0::S0Error::Sequence(e)) => {
                        self.reject(
                            Some(id),
                            e.as_str(),
                            format!("a sequenced S0 command from node {node}: {e}"),
                        )
                        .await
                    }
                    Err(e) => self.reject(Some(id), "malformed", e.to_string()).await,
                }
            }
            _ => {
                self.waiters
                    .fulfil(WaitFor::Report(node, s0::CC, cmd), &inc.payload, None);
                Ok(())
            }
        }
    }

    /// Hands a node a fresh S0 nonce, within its Nonce Report budget.
    async fn s0_nonce(&mut self, link: &LinkHandle, node: NodeId) -> Result<(), AdapterError> {
        if !self.nonce_budget.take(node, std::time::Instant::now()) {
            let id = nodes::device_id(self.home, node);
            return self
                .reject(
                    Some(id),
                    "s0-nonce-flood",
                    format!("an S0 Nonce Get from node {node} not answered: over its budget"),
                )
                .await;
        }
        let Ok(n) = self
            .s0
            .lock()
            .map(|mut s| s.nonces.issue(node, std::time::Instant::now()))
        else {
            return Ok(());
        };
        let link = link.clone();
        tokio::spawn(async move {
            let _ = send_data(&link, node, &s0::nonce_report(&n)).await;
        });
        Ok(())
    }

    /// A Supervision frame from a node: the Report to one of Warden's supervised commands, or a
    /// report the node supervises itself (Supervision Get around it): the inner command is handled
    /// like any frame and, within the node's budget, answered with Success under the same security.
    async fn supervision(
        &mut self,
        link: &LinkHandle,
        source: NodeId,
        payload: Vec<u8>,
        rssi: Option<i8>,
        secure: Option<Secured>,
    ) -> Result<(), AdapterError> {
        let id = nodes::device_id(self.home, source);
        if let Some(r) = cc::supervision::parse_report(&payload) {
            self.waiters
                .fulfil(WaitFor::Supervision(source, r.session), &payload, None);
            return Ok(());
        }
        let Some((session, inner)) = cc::supervision::parse_get(&payload) else {
            return self
                .reject(
                    Some(id),
                    "malformed",
                    format!("a malformed Supervision frame from node {source}"),
                )
                .await;
        };
        if inner.first() == Some(&cc::SUPERVISION) {
            return self
                .reject(
                    Some(id),
                    "malformed",
                    format!("a Supervision Get nested in another from node {source}"),
                )
                .await;
        }
        let inner = inner.to_vec();
        Box::pin(self.command_class(link, source, inner, rssi, secure)).await?;
        if self.answer_budget.take(source, std::time::Instant::now()) {
            let out = self.out(link);
            let answer = cc::supervision::report(session, 0xff);
            tokio::spawn(async move {
                let _ = out.send(source, &answer).await;
            });
            Ok(())
        } else {
            self.reject(
                Some(id),
                "supervision-flood",
                format!("a Supervision Get from node {source} not answered: over its budget"),
            )
            .await
        }
    }

    /// Answers a node's Nonce Get (or a frame of it that did not decrypt) with a Nonce Report,
    /// within the node's budget; beyond it the request is dropped and audited as
    /// `s2-nonce-flood`.
    async fn nonce_report(
        &mut self,
        link: &LinkHandle,
        node: NodeId,
        what: &str,
    ) -> Result<(), AdapterError> {
        if self.nonce_budget.take(node, std::time::Instant::now()) {
            self.spawn_nonce_report(link, node);
            return Ok(());
        }
        let id = nodes::device_id(self.home, node);
        self.reject(
            Some(id),
            "s2-nonce-flood",
            format!(
                "{what} from node {node} not answered: more than {} Nonce Reports, then one per {} s",
                crate::flood::BURST,
                crate::flood::REFILL.as_secs()
            ),
        )
        .await
    }

    /// An S2 multicast from a node, opened (or not) with the group's MPAN. Only the node's
    /// granted class opens one, so what decrypts is taken like its singlecast frames; what does
    /// not is refused without touching its singlecast session.
    async fn multicast(
        &mut self,
        link: &LinkHandle,
        node: NodeId,
        opened: Result<s2s::Opened, S2Error>,
        rssi: Option<i8>,
    ) -> Result<(), AdapterError> {
        let id = nodes::device_id(self.home, node);
        match opened {
            Ok(o) if o.payload.first() == Some(&s2s::CC) || o.payload.is_empty() => {
                self.reject(
                    Some(id),
                    "malformed",
                    format!("an S2 multicast from node {node} carrying no command or a Security 2 command"),
                )
                .await
            }
            Ok(o) => match o.keys {
                Keys::Network(c) => {
                    self.command_class(link, node, o.payload, rssi, Some(Secured::S2(c)))
                        .await
                }
                Keys::Temp => Ok(()),
            },
            Err(S2Error::NoMpan(g)) => {
                self.reject(
                    Some(id),
                    "s2-no-mpan",
                    format!(
                        "an S2 multicast from node {node} for group {g}, whose MPAN Warden does not hold yet (asked for at the follow-up)"
                    ),
                )
                .await
            }
            Err(S2Error::MulticastReplay(g, seq)) => {
                self.reject(
                    Some(id),
                    "replay",
                    format!("a replayed S2 multicast from node {node} (group {g}, sequence number {seq})"),
                )
                .await
            }
            Err(S2Error::NoSpan) => {
                self.reject(
                    Some(id),
                    "s2-not-granted",
                    format!("an S2 multicast from node {node}, which holds no S2 class"),
                )
                .await
            }
            Err(S2Error::CannotDecode) => {
                self.reject(
                    Some(id),
                    "s2-decrypt-failed",
                    format!("an S2 multicast from node {node} that does not decrypt under its group's MPAN"),
                )
                .await
            }
            Err(e) => self.reject(Some(id), "malformed", e.to_string()).await,
        }
    }

    /// A Nonce Report with MOS: the node's singlecast follow-up named a group whose MPAN Warden
    /// lacks; within the node's Nonce Report budget.
    async fn mos_report(&mut self, link: &LinkHandle, node: NodeId) -> Result<(), AdapterError> {
        if !self.nonce_budget.take(node, std::time::Instant::now()) {
            let id = nodes::device_id(self.home, node);
            return self
                .reject(
                    Some(id),
                    "s2-nonce-flood",
                    format!("a Nonce Report (MOS) for node {node} not sent: over its budget"),
                )
                .await;
        }
        let report = self
            .sessions
            .lock()
            .map(|mut s| s.nonce_report_mos(node))
            .unwrap_or_default();
        let link = link.clone();
        tokio::spawn(async move {
            let _ = send_data(&link, node, &report).await;
        });
        Ok(())
    }

    /// Sends a node a Nonce Report with a fresh entropy input (Warden's side of a new session).
    fn spawn_nonce_report(&self, link: &LinkHandle, node: NodeId) {
        let report = self
            .sessions
            .lock()
            .map(|mut s| s.nonce_report(node))
            .unwrap_or_default();
        if report.is_empty() {
            return;
        }
        let link = link.clone();
        tokio::spawn(async move {
            let _ = send_data(&link, node, &report).await;
        });
    }

    /// A node's command-class frame (decrypted when `secure` names its class).
    async fn command_class(
        &mut self,
        link: &LinkHandle,
        source: NodeId,
        payload: Vec<u8>,
        rssi: Option<i8>,
        secure: Option<Secured>,
    ) -> Result<(), AdapterError> {
        let id = nodes::device_id(self.home, source);
        if payload.first() == Some(&cc::SUPERVISION) {
            return self.supervision(link, source, payload, rssi, secure).await;
        }
        // Interview steps wait for reports; a node granted S2 answers only encrypted (plain frames
        // from it never get here).
        if let [c, cmd, ..] = payload[..] {
            self.waiters
                .fulfil(WaitFor::Report(source, c, cmd), &payload, None);
        }
        let inc = func::Incoming {
            source,
            rx_status: 0,
            payload,
            rssi,
        };
        match cc::decode(&inc.payload) {
            Ok(Report::Points(points)) if !points.is_empty() => {
                let mut m = Message::telemetry(id, points);
                match secure {
                    // S2: a MIC under the node's network key, and the SPAN makes it fresh; S0: a
                    // MAC under the network key over a single-use receiver nonce.
                    Some(class) => {
                        m.assurance = Assurance::SharedKey;
                        m.fresh = true;
                        m.security = Some(std::borrow::Cow::Borrowed(class.label()));
                    }
                    // Plain Z-Wave: anyone in radio range who knows the home id can send it.
                    None => {
                        m.assurance = Assurance::None;
                        m.fresh = false;
                    }
                }
                m.link.rssi = inc.rssi.map(f32::from);
                m.raw = inc.payload;
                self.emit(AdapterEvent::Uplink(m)).await
            }
            Ok(Report::Points(_)) => Ok(()),
            Ok(Report::Awake) => {
                self.woke(link, inc.source);
                Ok(())
            }
            Ok(Report::Manufacturer {
                manufacturer,
                product_type,
                product_id,
            }) => {
                if let Some(n) = self.nodes.by_id.get(&inc.source).cloned() {
                    let n = Node {
                        manufacturer: Some(manufacturer),
                        product_type: Some(product_type),
                        product_id: Some(product_id),
                        ..n
                    };
                    let _ = self.nodes.save(self.state.as_ref(), n);
                }
                Ok(())
            }
            Ok(Report::Firmware(fw)) => {
                if let Some(n) = self.nodes.by_id.get(&inc.source).cloned() {
                    let _ = self.nodes.save(
                        self.state.as_ref(),
                        Node {
                            firmware: Some(fw),
                            ..n
                        },
                    );
                }
                Ok(())
            }
            Ok(Report::Unhandled { .. }) => {
                self.unhandled += 1;
                Ok(())
            }
            Ok(Report::Encrypted { cc }) => {
                self.reject(
                    Some(id),
                    "undecryptable",
                    format!(
                        "a {} encapsulated frame nested inside another encapsulation: refused",
                        if cc == cc::SECURITY_2 {
                            "Security 2"
                        } else {
                            "Security 0"
                        }
                    ),
                )
                .await
            }
            Err(e) => self.reject(Some(id), "malformed", e.to_string()).await,
        }
    }

    fn operation(&mut self, link: &LinkHandle, op: Operation) {
        match op.request.clone() {
            OperationRequest::Join {
                seconds,
                device,
                pin,
                ..
            } => {
                if device.is_some() {
                    op.progress.finish(
                        OperationState::Failed,
                        "Z-Wave inclusion admits whichever node's button is pressed; a named device needs S2 SmartStart, which this Warden does not support yet",
                    );
                    return;
                }
                if self.exclusion.is_some() {
                    op.progress
                        .finish(OperationState::Failed, "an exclusion is running");
                    return;
                }
                if let Ok(mut p) = self.pin.lock() {
                    *p = pin;
                }
                if let Some(old) = self.window.take() {
                    // The controller is still in add mode: the new window carries on with it.
                    old.op
                        .progress
                        .finish(OperationState::Cancelled, "replaced by a newer join window");
                    let until = Instant::now() + Duration::from_secs(u64::from(seconds));
                    op.progress.update(|p| {
                        p.state = OperationState::Running;
                        p.seconds_left = Some(seconds);
                        p.set_step(Some(
                            "waiting for a node: press its inclusion button".into(),
                        ));
                    });
                    self.window = Some(Window { op, until, ..old });
                    return;
                }
                let cb = link.callback_id();
                op.progress.update(|p| {
                    p.state = OperationState::Running;
                    p.seconds_left = Some(seconds);
                    p.set_step(Some("starting inclusion".into()));
                });
                self.window = Some(Window {
                    op,
                    until: Instant::now() + Duration::from_secs(u64::from(seconds)),
                    callback_id: cb,
                    found: None,
                    stopping: false,
                    restart_pending: false,
                    waiting_for: None,
                });
                self.spawn_call(
                    link,
                    func::ADD_NODE_TO_NETWORK,
                    vec![
                        add_mode::ANY | add_mode::HIGH_POWER | add_mode::NETWORK_WIDE,
                        cb,
                    ],
                    "inclusion",
                );
            }
            OperationRequest::Close {} => {
                if let Some(w) = self.window.as_mut() {
                    w.until = Instant::now();
                    op.progress
                        .finish(OperationState::Done, "closing the inclusion window");
                } else {
                    op.progress
                        .finish(OperationState::Done, "no inclusion window was open");
                }
            }
            OperationRequest::Scan { .. } => op
                .progress
                .finish(OperationState::Failed, "the zwave adapter has no scan"),
            OperationRequest::Remove { device } => {
                let Some(node) = nodes::node_of(self.home, &device) else {
                    op.progress.finish(
                        OperationState::Failed,
                        format!(
                            "not a node of this network (zwave:{:08x}-<node>)",
                            self.home
                        ),
                    );
                    return;
                };
                if self.window.is_some() || self.exclusion.is_some() {
                    op.progress.finish(
                        OperationState::Failed,
                        "an inclusion or exclusion is running; close it first",
                    );
                    return;
                }
                op.progress.update(|p| {
                    p.state = OperationState::Running;
                    p.set_step(Some(format!(
                        "asking the controller whether node {node} has failed"
                    )));
                });
                let link = link.clone();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let failed = tokio::time::timeout(
                        Duration::from_secs(3),
                        link.ask(IS_FAILED_NODE, vec![node]),
                    )
                    .await
                    .unwrap_or(Err(LinkError::ResponseTimeout(Duration::from_secs(3))))
                    .map(|d| d.first().copied().unwrap_or(0) != 0);
                    let _ = tx.send(Internal::FailedCheck { op, node, failed }).await;
                });
            }
        }
    }

    async fn inclusion(&mut self, link: &LinkHandle, data: &[u8]) -> Result<(), AdapterError> {
        let st = match func::parse_inclusion_callback(data) {
            Ok(s) => s,
            Err(e) => return self.reject(None, "malformed", e.to_string()).await,
        };
        let home = self.home;
        let Some(w) = self.window.as_mut() else {
            return Ok(());
        };
        if st.callback_id != w.callback_id {
            return Ok(());
        }
        match st.status {
            add_status::READY => w.op.progress.update(|p| {
                p.set_step(Some(
                    "waiting for a node: press its inclusion button".into(),
                ))
            }),
            add_status::NODE_FOUND => w.op.progress.update(|p| {
                p.devices_seen += 1;
                p.set_step(Some("node found".into()));
            }),
            add_status::ADDING_END_NODE | add_status::ADDING_CONTROLLER => {
                if let Some(info) = &st.info {
                    let id = nodes::device_id(home, info.node);
                    w.op.progress.update(|p| {
                        p.device(&id, "protocol info");
                        p.set_step(Some(format!(
                            "protocol info: node {} (generic class {:#04x}, {} command classes)",
                            info.node,
                            info.generic,
                            info.command_classes.len()
                        )));
                    });
                }
                w.found = st.info;
            }
            add_status::PROTOCOL_DONE => {
                w.op.progress.update(|p| {
                    p.set_step(Some(
                        "protocol done: stopping the inclusion window before the security bootstrap".into(),
                    ))
                });
                let cb = w.callback_id;
                self.spawn_call(
                    link,
                    func::ADD_NODE_TO_NETWORK,
                    vec![add_mode::STOP, cb],
                    "inclusion stop",
                );
            }
            add_status::DONE => {
                let found = w.found.take();
                let node = found.as_ref().map(|f| f.node).or(st.info.map(|i| i.node));
                if let Some(node) = node.filter(|n| (1..=232).contains(n)) {
                    let id = nodes::device_id(home, node);
                    w.op.progress.update(|p| {
                        p.devices_joined += 1;
                        p.device(&id, "included; interviewing");
                        p.set_step(Some(format!("interview: node {node}")));
                    });
                    // The next inclusion starts once this node's bootstrap and interview are done.
                    w.restart_pending = false;
                    w.waiting_for = Some(node);
                    let secure = found.as_ref().is_some_and(|f| {
                        f.command_classes.contains(&cc::SECURITY_2)
                            || f.command_classes.contains(&cc::SECURITY_0)
                    });
                    let progress = w.op.progress.clone();
                    self.controller_nodes.insert(node);
                    self.emit(AdapterEvent::Membership(Membership {
                        device: id,
                        change: MembershipChange::Joined,
                        detail: format!(
                            "node {node} included{}",
                            if secure {
                                "; S2 bootstrap follows"
                            } else {
                                " without security (it does not support S2)"
                            }
                        ),
                    }))
                    .await?;
                    self.spawn_interview(link, node, found, secure.then_some(progress));
                } else {
                    w.restart_pending = !w.stopping;
                }
                self.after_attempt(link);
            }
            add_status::FAILED => {
                w.op.progress.update(|p| {
                    if !w.stopping {
                        p.devices_refused += 1;
                        p.set_step(Some("inclusion failed; waiting for another node".into()));
                    }
                });
                w.restart_pending = !w.stopping;
                w.found = None;
                self.after_attempt(link);
            }
            add_status::NOT_PRIMARY => {
                if let Some(w) = self.window.take() {
                    w.op.progress.finish(
                        OperationState::Failed,
                        "the controller is not the network's primary controller",
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// After a node was added or an attempt failed: restart inclusion while the window lasts.
    fn after_attempt(&mut self, link: &LinkHandle) {
        let Some(w) = self.window.as_mut() else {
            return;
        };
        if w.stopping || Instant::now() >= w.until {
            let joined = w.op.progress.current().devices_joined;
            if let Some(w) = self.window.take() {
                w.op.progress.finish(
                    OperationState::Done,
                    format!("inclusion window closed: {joined} node(s) included"),
                );
            }
            return;
        }
        if std::mem::take(&mut w.restart_pending) {
            let cb = link.callback_id();
            w.callback_id = cb;
            self.spawn_call(
                link,
                func::ADD_NODE_TO_NETWORK,
                vec![
                    add_mode::ANY | add_mode::HIGH_POWER | add_mode::NETWORK_WIDE,
                    cb,
                ],
                "inclusion",
            );
        }
    }

    async fn exclusion_callback(
        &mut self,
        link: &LinkHandle,
        data: &[u8],
    ) -> Result<(), AdapterError> {
        let st = match func::parse_inclusion_callback(data) {
            Ok(s) => s,
            Err(e) => return self.reject(None, "malformed", e.to_string()).await,
        };
        let home = self.home;
        let Some(x) = self.exclusion.as_mut() else {
            return Ok(());
        };
        if st.callback_id != x.callback_id {
            return Ok(());
        }
        match st.status {
            remove_status::READY => x.op.progress.update(|p| {
                p.set_step(Some(format!(
                    "waiting for node {}: press its exclusion button",
                    x.node
                )))
            }),
            remove_status::NODE_FOUND => x.op.progress.update(|p| {
                p.devices_seen += 1;
                p.set_step(Some("node found".into()));
            }),
            remove_status::REMOVING_END_NODE | remove_status::REMOVING_CONTROLLER => {
                if let Some(info) = &st.info {
                    x.op.progress
                        .update(|p| p.device(&nodes::device_id(home, info.node), "excluding"));
                    // Remember which node is leaving for the DONE callback.
                    x.node = if info.node == x.node {
                        x.node
                    } else {
                        info.node
                    };
                }
            }
            remove_status::DONE => {
                let node = x.node;
                let cb = x.callback_id;
                let id = nodes::device_id(home, node);
                if let Some(x) = self.exclusion.take() {
                    x.op.progress.update(|p| p.device(&id, "excluded"));
                    x.op.progress
                        .finish(OperationState::Done, format!("node {node} excluded"));
                }
                self.spawn_call(
                    link,
                    func::REMOVE_NODE_FROM_NETWORK,
                    vec![add_mode::STOP, cb],
                    "exclusion stop",
                );
                self.removed(node, MembershipChange::Removed, "excluded by an operator")
                    .await?;
            }
            remove_status::FAILED => {
                if let Some(x) = self.exclusion.take() {
                    x.op.progress.finish(
                        OperationState::Failed,
                        if x.stopping {
                            format!(
                                "no node was excluded: node {} did not respond in time",
                                x.node
                            )
                        } else {
                            "the controller reported the exclusion failed".into()
                        },
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A sleeping node woke: send what it was held, in order, then let it sleep again.
    fn woke(&mut self, link: &LinkHandle, node: NodeId) {
        let out = self.out(link);
        let held: Vec<Held> = self.asleep.remove(&node).map(Vec::from).unwrap_or_default();
        let tx = self.internal_tx.clone();
        let wait = Duration::from_millis(u64::from(self.cfg.send_timeout_ms));
        tokio::spawn(async move {
            // One at a time: a supervised command's report is awaited before the next goes, so
            // the node is told it may sleep only once it has answered them all.
            for h in held {
                deliver(&out, &tx, node, wait, h).await;
            }
            // Wake Up No More Information: the node may sleep again.
            let _ = out.send(node, &[cc::WAKE_UP, 0x08]).await;
        });
    }

    async fn removed(
        &mut self,
        node: NodeId,
        change: MembershipChange,
        how: &str,
    ) -> Result<(), AdapterError> {
        self.controller_nodes.remove(&node);
        let _ = self.nodes.forget(self.state.as_ref(), node);
        if let Ok(mut st) = self.s0.lock() {
            st.reassembly.forget(node);
        }
        self.emit(AdapterEvent::Membership(Membership {
            device: nodes::device_id(self.home, node),
            change,
            detail: format!("node {node} {how}"),
        }))
        .await
    }

    async fn downlink(&mut self, link: &LinkHandle, d: Downlink) -> Result<(), AdapterError> {
        let Some(node) = nodes::node_of(self.home, &d.device) else {
            return self
                .result(
                    &d.command_id,
                    &d.device,
                    CommandOutcome::DeviceError("not a node of this Z-Wave network".into()),
                )
                .await;
        };
        let Some(n) = self.nodes.by_id.get(&node) else {
            return self
                .result(
                    &d.command_id,
                    &d.device,
                    CommandOutcome::DeviceError(format!(
                        "node {node} has not been interviewed: its command classes are unknown"
                    )),
                )
                .await;
        };
        // The profile may reserve the command for some security classes (`Downlink::security`):
        // refuse before anything is queued or sent under another.
        if !d.security.is_empty() {
            let label = self.out(link).security_of(node).map(Secured::label);
            if !label.is_some_and(|l| d.security.iter().any(|a| a == l)) {
                return self
                    .result(
                        &d.command_id,
                        &d.device,
                        CommandOutcome::DeviceError(format!(
                            "node {node} is included with security {}, and the profile accepts only {}",
                            label.unwrap_or("none"),
                            d.security.join(", ")
                        )),
                    )
                    .await;
            }
        }
        let payload = match cc::command(&d.command, &n.command_classes) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .result(
                        &d.command_id,
                        &d.device,
                        CommandOutcome::DeviceError(e.to_string()),
                    )
                    .await;
            }
        };
        // A node that supports Supervision is asked to report what it did with a Set; Gets
        // (refresh) are answered by their report instead. Decided and wrapped now, so a command
        // too long to supervise is refused at once rather than at the node's wake-up.
        let supervised =
            n.command_classes.contains(&cc::SUPERVISION) && d.command.name != "refresh";
        let listening = n.listening;
        let (payload, supervision) = if supervised {
            let session = self.supervision_session;
            let Some(wrapped) = cc::supervision::get(session, &payload) else {
                return self
                    .result(
                        &d.command_id,
                        &d.device,
                        CommandOutcome::DeviceError("the command is too long to supervise".into()),
                    )
                    .await;
            };
            self.supervision_session = (session + 1) & 0x3f;
            (wrapped, Some(session))
        } else {
            (payload, None)
        };
        if !listening {
            let q = self.asleep.entry(node).or_default();
            if q.len() >= SLEEP_QUEUE {
                return self
                    .result(
                        &d.command_id,
                        &d.device,
                        CommandOutcome::DeviceError(format!(
                            "node {node} is asleep and already holds {SLEEP_QUEUE} commands"
                        )),
                    )
                    .await;
            }
            tracing::debug!(node, command = %d.command.name, supervised, "zwave: held until the node wakes");
            let hold = Duration::from_secs(u64::from(self.cfg.sleeping_command_s));
            q.push_back(Held {
                command_id: d.command_id.clone(),
                device: d.device.clone(),
                payload,
                supervision,
                until: Instant::now() + hold,
            });
            // the gateway waits as long as the node may sleep, plus a send (and its Supervision
            // Report) after the wake-up, and tells the caller the command is queued
            let send = Duration::from_millis(u64::from(self.cfg.send_timeout_ms));
            return self
                .emit(AdapterEvent::CommandHeld(warden_core::CommandHeld {
                    command_id: d.command_id,
                    device: d.device,
                    wait: hold + send * 2,
                    reason: format!(
                        "node {node} is asleep: sent at its next Wake Up Notification (held up to {} s)",
                        hold.as_secs()
                    ),
                }))
                .await;
        }
        let out = self.out(link);
        let tx = self.internal_tx.clone();
        let wait = Duration::from_millis(u64::from(self.cfg.send_timeout_ms));
        let h = Held {
            command_id: d.command_id,
            device: d.device,
            payload,
            supervision,
            until: Instant::now(),
        };
        tokio::spawn(async move { deliver(&out, &tx, node, wait, h).await });
        Ok(())
    }

    async fn internal(&mut self, link: &LinkHandle, i: Internal) -> Result<(), AdapterError> {
        match i {
            Internal::Started(Ok(()), _) => Ok(()),
            Internal::Started(Err(e), what) => {
                if what.starts_with("inclusion")
                    && let Some(w) = self.window.take()
                {
                    w.op.progress
                        .finish(OperationState::Failed, format!("{what}: {e}"));
                }
                if what.starts_with("exclusion")
                    && let Some(x) = self.exclusion.take()
                {
                    x.op.progress
                        .finish(OperationState::Failed, format!("{what}: {e}"));
                }
                Ok(())
            }
            Internal::BootstrapFailed(node, why) => {
                let id = nodes::device_id(self.home, node);
                self.reject(
                    Some(id),
                    "s2-bootstrap-failed",
                    format!("node {node}: S2 key exchange failed, no S2 class granted: {why}"),
                )
                .await
            }
            Internal::Interviewed(node, notes) => {
                self.interviewing.remove(&node.id);
                if let Some(class) = node.class()
                    && let Ok(mut s) = self.sessions.lock()
                {
                    s.grant(node.id, class);
                }
                if let Some(w) = self.window.as_mut()
                    && w.waiting_for == Some(node.id)
                {
                    w.waiting_for = None;
                    w.restart_pending = !w.stopping;
                    self.after_attempt(link);
                }
                if !self.controller_nodes.contains(&node.id) {
                    return Ok(());
                }
                let id = nodes::device_id(self.home, node.id);
                let mut details = vec![
                    ("node".to_owned(), node.id.to_string()),
                    ("home_id".to_owned(), format!("{:08x}", self.home)),
                    (
                        "device_class".to_owned(),
                        format!(
                            "basic {:#04x} generic {:#04x} specific {:#04x}",
                            node.basic, node.generic, node.specific
                        ),
                    ),
                    ("listening".to_owned(), node.listening.to_string()),
                    (
                        "command_classes".to_owned(),
                        node.command_classes
                            .iter()
                            .map(|c| format!("{c:#04x}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    (
                        "security".to_owned(),
                        node.security.clone().unwrap_or_else(|| "none".to_owned()),
                    ),
                ];
                if !notes.is_empty() {
                    details.push(("interview".to_owned(), notes.join("; ")));
                }
                let manufacturer = node.manufacturer.map(|m| format!("{m:#06x}"));
                let model = match (node.product_type, node.product_id) {
                    (Some(t), Some(p)) => Some(format!("{t:04x}:{p:04x}")),
                    _ => None,
                };
                let ann = Announcement {
                    device: Some(id.clone()),
                    manufacturer: manufacturer.clone(),
                    model: model.clone(),
                    firmware: node.firmware.clone(),
                    serial: None,
                    details,
                };
                if let Some(w) = &self.window {
                    w.op.progress.update(|p| {
                        p.device(
                            &id,
                            format!(
                                "interviewed{}: pending approval",
                                if notes.is_empty() { "" } else { " (partly)" }
                            ),
                        );
                        p.set_step(Some(
                            "waiting for a node: press its inclusion button".into(),
                        ));
                    });
                }
                if let Err(e) = self.nodes.save(self.state.as_ref(), node) {
                    tracing::warn!(error = %e, "zwave: cannot persist a node");
                }
                self.emit(AdapterEvent::Announce(ann)).await
            }
            Internal::Sent {
                command_id,
                device,
                result,
            } => {
                let outcome = match result {
                    Ok(0) => CommandOutcome::Delivered,
                    Ok(s) => CommandOutcome::DeviceError(format!(
                        "transmit status {s:#04x}: {}",
                        func::tx_status_text(s)
                    )),
                    Err(LinkError::CallbackTimeout(_)) => CommandOutcome::Timeout,
                    Err(e) => CommandOutcome::DeviceError(e.to_string()),
                };
                self.result(&command_id, &device, outcome).await
            }
            Internal::Supervised {
                command_id,
                device,
                result,
                report,
            } => {
                use cc::supervision::Status;
                let (outcome, points) = match (result, report) {
                    (Ok(0), Some(r)) => match r.status {
                        Status::Success | Status::Working => {
                            let mut points = vec![warden_core::Point::new(
                                "supervision",
                                warden_core::Value::Text(r.status.as_str().into()),
                            )];
                            if let (Status::Working, Some(d)) = (r.status, r.duration_s) {
                                let mut p = warden_core::Point::new(
                                    "supervision_duration",
                                    warden_core::Value::Int(i64::from(d)),
                                );
                                p.unit = Some("s".into());
                                points.push(p);
                            }
                            (CommandOutcome::Delivered, points)
                        }
                        other => (
                            CommandOutcome::DeviceError(format!(
                                "the node's supervision status: {}",
                                match other {
                                    Status::Other(b) => format!("unknown ({b:#04x})"),
                                    s => s.as_str().to_owned(),
                                }
                            )),
                            Vec::new(),
                        ),
                    },
                    (Ok(0), None) => (CommandOutcome::Timeout, Vec::new()),
                    (Ok(s), _) => (
                        CommandOutcome::DeviceError(format!(
                            "transmit status {s:#04x}: {}",
                            func::tx_status_text(s)
                        )),
                        Vec::new(),
                    ),
                    (Err(LinkError::CallbackTimeout(_)), _) => {
                        (CommandOutcome::Timeout, Vec::new())
                    }
                    (Err(e), _) => (CommandOutcome::DeviceError(e.to_string()), Vec::new()),
                };
                self.emit(AdapterEvent::CommandResult(CommandResult {
                    command_id,
                    device,
                    outcome,
                    points,
                }))
                .await
            }
            Internal::FailedCheck { op, node, failed } => {
                if matches!(failed, Ok(true)) {
                    op.progress
                        .update(|p| p.set_step(Some(format!("removing failed node {node}"))));
                    let link = link.clone();
                    let tx = self.internal_tx.clone();
                    tokio::spawn(async move {
                        let cb = link.callback_id();
                        let result = link
                            .call(
                                func::REMOVE_FAILED_NODE,
                                vec![node, cb],
                                Expect::ResponseAndCallback { callback_id: cb },
                            )
                            .await
                            .map(|r| {
                                r.callback
                                    .and_then(|f| f.data.get(1).copied())
                                    .unwrap_or(0xff)
                            });
                        let _ = tx.send(Internal::FailedRemoved { op, node, result }).await;
                    });
                    return Ok(());
                }
                // Not failed (or the controller cannot tell): exclusion needs the node's button.
                if self.window.is_some() || self.exclusion.is_some() {
                    op.progress.finish(
                        OperationState::Failed,
                        "an inclusion or exclusion started meanwhile",
                    );
                    return Ok(());
                }
                let cb = link.callback_id();
                let secs = self.cfg.exclusion_s;
                op.progress.update(|p| {
                    p.seconds_left = Some(secs);
                    p.set_step(Some(format!(
                        "starting exclusion: press node {node}'s exclusion button"
                    )));
                });
                self.exclusion = Some(Exclusion {
                    op,
                    node,
                    until: Instant::now() + Duration::from_secs(u64::from(secs)),
                    callback_id: cb,
                    stopping: false,
                });
                self.spawn_call(
                    link,
                    func::REMOVE_NODE_FROM_NETWORK,
                    vec![
                        add_mode::ANY | add_mode::HIGH_POWER | add_mode::NETWORK_WIDE,
                        cb,
                    ],
                    "exclusion",
                );
                Ok(())
            }
            Internal::FailedRemoved { op, node, result } => match result {
                // REMOVE_FAILED_NODE callback: 0x01 node removed.
                Ok(0x01) => {
                    let id = nodes::device_id(self.home, node);
                    op.progress.update(|p| p.device(&id, "removed"));
                    op.progress.finish(
                        OperationState::Done,
                        format!("failed node {node} removed from the controller"),
                    );
                    self.removed(
                        node,
                        MembershipChange::Removed,
                        "removed as failed by an operator",
                    )
                    .await
                }
                Ok(s) => {
                    op.progress.finish(
                        OperationState::Failed,
                        format!("the controller did not remove node {node} (status {s:#04x})"),
                    );
                    Ok(())
                }
                Err(e) => {
                    op.progress.finish(
                        OperationState::Failed,
                        format!("removing failed node {node}: {e}"),
                    );
                    Ok(())
                }
            },
        }
    }

    fn tick(&mut self, link: &LinkHandle) {
        let now = Instant::now();
        if let Some(w) = self.window.as_mut() {
            let left = w.until.saturating_duration_since(now).as_secs();
            w.op.progress
                .update(|p| p.seconds_left = Some(u32::try_from(left).unwrap_or(u32::MAX)));
            if now >= w.until && !w.stopping {
                w.stopping = true;
                w.op.progress
                    .update(|p| p.set_step(Some("closing the inclusion window".into())));
                let cb = w.callback_id;
                self.spawn_call(
                    link,
                    func::ADD_NODE_TO_NETWORK,
                    vec![add_mode::STOP, cb],
                    "inclusion stop",
                );
            }
        }
        if let Some(x) = self.exclusion.as_mut() {
            let left = x.until.saturating_duration_since(now).as_secs();
            x.op.progress
                .update(|p| p.seconds_left = Some(u32::try_from(left).unwrap_or(u32::MAX)));
            if now >= x.until && !x.stopping {
                x.stopping = true;
                let cb = x.callback_id;
                self.spawn_call(
                    link,
                    func::REMOVE_NODE_FROM_NETWORK,
                    vec![add_mode::STOP, cb],
                    "exclusion stop",
                );
            }
        }
        for q in self.asleep.values_mut() {
            while q.front().is_some_and(|h| h.until <= now) {
                if let Some(h) = q.pop_front() {
                    let _ = self.internal_tx.try_send(Internal::Sent {
                        command_id: h.command_id,
                        device: h.device,
                        result: Err(LinkError::CallbackTimeout(Duration::from_secs(u64::from(
                            self.cfg.sleeping_command_s,
                        )))),
                    });
                }
            }
        }
        self.asleep.retain(|_, q| !q.is_empty());
        if let Ok(mut st) = self.s0.lock() {
            let dropped = st.reassembly.expire(std::time::Instant::now());
            if dropped > 0 {
                tracing::debug!(dropped, "zwave: S0 first parts whose second never came");
            }
        }
        let dropped = self.counters.dropped_events.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::debug!(dropped, "zwave: reports dropped while the adapter was busy");
        }
    }
}

/// Waits for a waiter with the bootstrap's deadline (the S2 specification allows 10 s per step).
async fn wait_step(rx: oneshot::Receiver<Waited>, what: &str) -> Result<Waited, String> {
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(format!("no {what} within 10 s")),
    }
}

/// The classes Warden grants a node that requested `requested` (KEX key bitmask): S2
/// Unauthenticated whenever asked for; Authenticated and Access Control only with the DSK PIN the
/// operator typed from the device's label. S0 (0x80) is never granted.
fn grantable(requested: u8, pin: bool) -> u8 {
    let allowed = Class::Unauthenticated.bit()
        | if pin {
            Class::Authenticated.bit() | Class::AccessControl.bit()
        } else {
            0
        };
    requested & allowed
}

/// The highest class in a KEX key bitmask.
fn highest(bits: u8) -> Option<Class> {
    Class::ALL.into_iter().find(|c| bits & c.bit() != 0)
}

/// The S2 key exchange as the including node (S2 specification, KEX scheme 1, Curve25519):
/// KEX Get → Report → Set → public keys both ways → ECDH → temporary keys → the node's encrypted
/// KEX Set echo → our encrypted KEX Report echo → for each granted class: Network Key Get →
/// Report → the node's Verify under the new key → Transfer End → the node's final Transfer End.
///
/// For S2 Authenticated and Access Control the node hides the first two bytes of its public key
/// (its DSK); Warden puts in the PIN the operator gave. A wrong PIN gives Warden other temporary
/// keys than the node's, so the node's KEX Set echo does not decrypt: KEX Fail (decrypt), no class
/// granted. Returns the highest class granted.
async fn s2_bootstrap(
    out: &Out,
    node: NodeId,
    keys: &NetworkKeys,
    pin: &Mutex<Option<DskPin>>,
) -> Result<Class, String> {
    let fail = |kind: u8| async move {
        let _ = send_data(&out.link, node, &kex::kex_fail(kind)).await;
    };
    let rx = out
        .waiters
        .add(WaitFor::Report(node, s2s::CC, kex::KEX_REPORT));
    send_plain(out, node, &[s2s::CC, kex::KEX_GET]).await?;
    let (p, _) = wait_step(rx, "KEX Report").await?;
    let report = kex::parse_kex_report(&p).ok_or("malformed KEX Report")?;
    if report.echo {
        return Err("the node sent an echo KEX Report first".into());
    }
    if report.schemes & kex::SCHEME_1 == 0 {
        fail(kex::fail::KEX_SCHEME).await;
        return Err("the node does not support KEX scheme 1".into());
    }
    if report.profiles & kex::CURVE25519 == 0 {
        fail(kex::fail::KEX_CURVES).await;
        return Err("the node does not support Curve25519".into());
    }
    let pin = pin.lock().ok().and_then(|p| *p);
    let granted = grantable(report.requested, pin.is_some());
    let Some(top) = highest(granted) else {
        fail(kex::fail::KEX_KEY).await;
        return Err(if report.requested & 0x06 != 0 && pin.is_none() {
            format!(
                "the node requested keys {:#04x}: S2 Authenticated and Access Control need the DSK PIN from its label (join --pin)",
                report.requested
            )
        } else {
            format!(
                "the node requested keys {:#04x}, none of which Warden grants",
                report.requested
            )
        });
    };
    let authenticated = granted & (Class::Authenticated.bit() | Class::AccessControl.bit()) != 0;

    let rx = out
        .waiters
        .add(WaitFor::Report(node, s2s::CC, kex::PUBLIC_KEY_REPORT));
    send_plain(out, node, &kex::kex_set(granted)).await?;
    let (p, _) = wait_step(rx, "Public Key Report").await?;
    let mut node_public = kex::parse_public_key(&p).ok_or("malformed Public Key Report")?;
    if let (true, Some(pin)) = (authenticated, pin) {
        let [a, b] = pin.bytes();
        node_public[0] = a;
        node_public[1] = b;
    }

    let pair = KeyPair::generate();
    let shared = pair.agree(&node_public);
    let prk = s2crypto::temp_prk(&shared, &pair.public, &node_public);
    out.lock().set_temp_keys(node, s2crypto::temp_keys(&prk));
    let rx = out.waiters.add(WaitFor::Secure(node, kex::KEX_SET));
    send_plain(out, node, &kex::public_key_report(&pair.public)).await?;
    let (p, k) = wait_step(rx, "encrypted KEX Set echo").await?;
    match (kex::parse_kex_set(&p), k) {
        (Some((true, kex::SCHEME_1, kex::CURVE25519, g)), Some(Keys::Temp)) if g == granted => {}
        (None, None) => {
            fail(kex::fail::DECRYPT).await;
            return Err(if authenticated {
                "the node's KEX Set echo did not decrypt: the DSK PIN does not match the node's key"
                    .into()
            } else {
                "the node's KEX Set echo did not decrypt".into()
            });
        }
        _ => {
            fail(kex::fail::AUTH).await;
            return Err("the node's KEX Set echo does not match what Warden sent".into());
        }
    }
    let mut rx = out.waiters.add(WaitFor::Secure(node, kex::NETWORK_KEY_GET));
    secure_step(out, node, &kex::kex_report_echo(&report)).await?;
    let mut left = granted;
    loop {
        let (p, k) = wait_step(rx, "Network Key Get").await?;
        let class = match (kex::parse_network_key_get(&p), k) {
            (Some(c), Some(Keys::Temp)) if left & c.bit() != 0 => c,
            _ => {
                fail(kex::fail::KEY_GET).await;
                return Err("the node asked for a key it was not granted".into());
            }
        };
        left &= !class.bit();
        let verify = out
            .waiters
            .add(WaitFor::Secure(node, kex::NETWORK_KEY_VERIFY));
        secure_step(out, node, &kex::network_key_report(class, keys.get(class))).await?;
        let (_, k) = wait_step(verify, "Network Key Verify").await?;
        if k != Some(Keys::Network(class)) {
            fail(kex::fail::KEY_VERIFY).await;
            return Err(
                "the node's Network Key Verify was not encrypted with the key it was sent".into(),
            );
        }
        if left == 0 {
            break;
        }
        rx = out.waiters.add(WaitFor::Secure(node, kex::NETWORK_KEY_GET));
        secure_step(out, node, &kex::transfer_end_verified()).await?;
    }
    let rx = out.waiters.add(WaitFor::Secure(node, kex::TRANSFER_END));
    secure_step(out, node, &kex::transfer_end_verified()).await?;
    let (p, _) = wait_step(rx, "final Transfer End").await?;
    if kex::parse_transfer_end(&p).map(|(_, done)| done) != Some(true) {
        return Err("the node did not complete the key transfer".into());
    }
    let mut s = out.lock();
    s.clear_temp_keys(node);
    s.forget(node);
    s.grant(node, top);
    Ok(top)
}

/// The S0 bootstrap as the including controller: Scheme Get/Report in the clear, the network key
/// sent in a Network Key Set encapsulated under the temporary all-zero key, and the node's Network
/// Key Verify, which must come under the network key.
async fn s0_bootstrap(out: &Out, node: NodeId) -> Result<(), String> {
    let rx = out
        .waiters
        .add(WaitFor::Report(node, s0::CC, s0::SCHEME_REPORT));
    send_plain(out, node, &[s0::CC, s0::SCHEME_GET, 0x00]).await?;
    wait_step(rx, "S0 Scheme Report").await?;
    let key = out.s0().key.ok_or("no S0 network key")?;
    let temp = s0::Keys::new(&[0; 16]);
    out.s0().temp.insert(node, temp.clone());
    let rx = out.waiters.add(WaitFor::S0(node, s0::NETWORK_KEY_VERIFY));
    let mut set = vec![s0::CC, s0::NETWORK_KEY_SET];
    set.extend_from_slice(&key);
    match out.send_s0(node, &temp, &set).await {
        Ok(0) => {}
        Ok(s) => {
            return Err(format!(
                "sending the network key: {}",
                func::tx_status_text(s)
            ));
        }
        Err(e) => return Err(format!("sending the network key: {e}")),
    }
    let (_, k) = wait_step(rx, "S0 Network Key Verify").await?;
    let mut st = out.s0();
    st.temp.remove(&node);
    if k.is_some() {
        return Err(
            "the node's Network Key Verify was under the temporary key, not the network key".into(),
        );
    }
    st.granted.insert(node);
    Ok(())
}

async fn send_plain(out: &Out, node: NodeId, payload: &[u8]) -> Result<(), String> {
    match send_data(&out.link, node, payload).await {
        Ok(0) => Ok(()),
        Ok(s) => Err(format!(
            "sending to node {node}: {}",
            func::tx_status_text(s)
        )),
        Err(e) => Err(format!("sending to node {node}: {e}")),
    }
}

async fn secure_step(out: &Out, node: NodeId, payload: &[u8]) -> Result<(), String> {
    match out.send_secure(node, Keys::Temp, payload).await {
        Ok(0) => Ok(()),
        Ok(s) => Err(format!(
            "sending to node {node}: {}",
            func::tx_status_text(s)
        )),
        Err(e) => Err(format!("sending to node {node}: {e}")),
    }
}

/// SEND_DATA with a callback; the transmit status (0 = delivered).
async fn send_data(link: &LinkHandle, node: NodeId, payload: &[u8]) -> Result<u8, LinkError> {
    let cb = link.callback_id();
    let len =
        u8::try_from(payload.len()).map_err(|_| LinkError::Encode("payload too long".into()))?;
    let mut d = Vec::with_capacity(payload.len() + 4);
    d.push(node);
    d.push(len);
    d.extend_from_slice(payload);
    d.push(func::TX_OPTIONS);
    d.push(cb);
    let r = link
        .call(
            func::SEND_DATA,
            d,
            Expect::ResponseAndCallback { callback_id: cb },
        )
        .await?;
    Ok(r.callback
        .and_then(|f| f.data.get(1).copied())
        .unwrap_or(0xff))
}

/// Learns what a node is: protocol info, its node information frame, manufacturer and firmware.
/// Every step has its own deadline; a step that fails is noted and the interview goes on.
async fn interview(
    out: &Out,
    node: NodeId,
    nif: Option<func::NodeInfo>,
    known: Option<Node>,
    own: NodeId,
) -> (Node, Vec<String>) {
    let link = &out.link;
    let step = out.step;
    let mut n = known.unwrap_or(Node {
        id: node,
        ..Node::default()
    });
    let mut notes = Vec::new();
    match link.ask(func::GET_NODE_PROTOCOL_INFO, vec![node]).await {
        Ok(d) => match func::parse_protocol_info(&d) {
            Ok(p) => {
                n.listening = p.listening || p.flirs;
                n.basic = p.basic;
                n.generic = p.generic;
                n.specific = p.specific;
            }
            Err(e) => notes.push(format!("protocol info: {e}")),
        },
        Err(e) => notes.push(format!("protocol info: {e}")),
    }
    match nif.filter(|i| !i.command_classes.is_empty()) {
        Some(info) => n.command_classes = info.command_classes,
        None => {
            let call = link.call(
                func::REQUEST_NODE_INFO,
                vec![node],
                Expect::ResponseAndNodeInfo { node },
            );
            match tokio::time::timeout(step, call).await {
                Ok(Ok(r)) => match r.callback.map(|f| func::parse_application_update(&f.data)) {
                    Some(Ok(ApplicationUpdate::NodeInfo(info))) => {
                        n.command_classes = info.command_classes
                    }
                    Some(Ok(_)) => notes.push("node information: the node did not answer".into()),
                    Some(Err(e)) => notes.push(format!("node information: {e}")),
                    None => notes.push("node information: no answer".into()),
                },
                Ok(Err(e)) => notes.push(format!("node information: {e}")),
                Err(_) => notes.push(format!("node information: no answer within {step:?}")),
            }
        }
    }
    if n.supports(cc::MANUFACTURER_SPECIFIC) {
        match out
            .ask(node, &[cc::MANUFACTURER_SPECIFIC, 0x04], 0x05)
            .await
        {
            Ok(p) => {
                if let Ok(Report::Manufacturer {
                    manufacturer,
                    product_type,
                    product_id,
                }) = cc::decode(&p)
                {
                    n.manufacturer = Some(manufacturer);
                    n.product_type = Some(product_type);
                    n.product_id = Some(product_id);
                }
            }
            Err(e) => notes.push(format!("manufacturer: {e}")),
        }
    }
    if n.supports(cc::ASSOCIATION) && own != 0 {
        // Lifeline: group 1 reports go to the controller.
        match out.send(node, &[cc::ASSOCIATION, 0x01, 0x01, own]).await {
            Ok(0) => {}
            Ok(s) => notes.push(format!("lifeline: {}", func::tx_status_text(s))),
            Err(e) => notes.push(format!("lifeline: {e}")),
        }
    }
    if n.supports(cc::VERSION) {
        match out.ask(node, &[cc::VERSION, 0x11], 0x12).await {
            Ok(p) => {
                if let Ok(Report::Firmware(fw)) = cc::decode(&p) {
                    n.firmware = Some(fw);
                }
            }
            Err(e) => notes.push(format!("version: {e}")),
        }
    }
    n.interviewed = true;
    (n, notes)
}

async fn open(cfg: &Config) -> Result<Box<dyn Stream>, String> {
    if let Some(addr) = cfg.port.strip_prefix("tcp://") {
        let s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("cannot reach {}: timed out", cfg.port))?
            .map_err(|e| format!("cannot reach {}: {e}", cfg.port))?;
        let _ = s.set_nodelay(true);
        return Ok(Box::new(s));
    }
    let s = tokio_serial::new(cfg.port.as_str(), cfg.baud)
        .timeout(Duration::from_millis(100))
        .open_native_async()
        .map_err(|e| format!("cannot open {}: {e}", cfg.port))?;
    Ok(Box::new(s))
}

async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticated_classes_are_granted_only_with_a_pin() {
        // (requested, pin given) → granted
        let rows = [
            (0x01, false, 0x01), // Unauthenticated asked: granted without a PIN
            (0x02, false, 0x00), // Authenticated alone without a PIN: nothing
            (0x06, false, 0x00), // Access Control + Authenticated without a PIN: nothing
            (0x07, false, 0x01), // all three without a PIN: only Unauthenticated
            (0x02, true, 0x02),  // Authenticated with the PIN
            (0x06, true, 0x06),  // Access Control + Authenticated with the PIN
            (0x87, true, 0x07),  // S0 (0x80) is never granted
            (0x80, true, 0x00),
            (0x78, true, 0x00), // reserved bits are not classes
        ];
        for (requested, pin, want) in rows {
            assert_eq!(
                grantable(requested, pin),
                want,
                "{requested:#04x} pin={pin}"
            );
        }
        assert_eq!(highest(0x07), Some(Class::AccessControl));
        assert_eq!(highest(0x03), Some(Class::Authenticated));
        assert_eq!(highest(0x01), Some(Class::Unauthenticated));
        assert_eq!(highest(0x00), None);
    }
}
