//! Embedded MQTT 3.1.1 broker with mandatory authentication and per-topic ACLs.
//!
//! Warden ships its own small broker so that a single command runs the whole
//! gateway. Every client must log in with a configured user name and password;
//! each user is limited to the topic filters it may publish to and subscribe to.
//!
//! Wire encoding and decoding is delegated to the MQTT v4 packet codec of
//! `rumqttc`; everything else (sessions, routing, ACLs, retained messages, wills,
//! keepalive, flow control) lives in this module.
//!
//! Design:
//! * one tokio task accepts connections, one task serves each connection;
//! * shared routing state (sessions, subscriptions, retained messages) sits
//!   behind a single mutex that is never held across an `.await`;
//! * the router hands deliveries to connections through bounded per-client
//!   queues with `try_send`, so a slow client can never stall the router or
//!   other clients: when its queue is full the delivery is dropped and counted.
//!
//! Sessions are keyed by (user name, client id): two different users can never
//! take over or inherit each other's sessions, even if they pick the same client
//! id. Sessions with `clean_session = false` are kept in memory (subscriptions
//! plus a bounded queue of QoS 1 messages) while the broker runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Login, Packet, PubAck, PubComp, PubRec, Publish,
    SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tracing::{debug, info, warn};

/// Failed MQTT logins one source address may make per [`LOGIN_WINDOW`] before its CONNECTs are
/// refused unchecked until the window ends.
const MAX_LOGIN_FAILURES_PER_WINDOW: u32 = 20;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Default maximum size of an incoming packet (remaining length), 256 KiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 256 * 1024;
/// Default time a new connection has to send its CONNECT packet.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a single socket write may take before the client is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Unacknowledged QoS 1 deliveries per connection. While this many are
/// outstanding the connection stops taking from its queue (which then fills
/// up and overflows into drops).
const MAX_INFLIGHT: usize = 128;
/// Subscriptions a single session may hold.
const MAX_SUBSCRIPTIONS_PER_SESSION: usize = 256;
/// Retained message store limits.
const MAX_RETAINED_MESSAGES: usize = 10_000;
const MAX_RETAINED_BYTES: usize = 64 * 1024 * 1024;
/// Longest client id accepted.
const MAX_CLIENT_ID_LEN: usize = 256;
/// Largest per-client queue accepted in the configuration.
const MAX_OUTBOUND_QUEUE: usize = 1 << 20;
/// How long a publisher waits for room in an intercept channel.
const INTERCEPT_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Minimum spacing of `Dropped` events for one session.
const DROP_EVENT_INTERVAL: Duration = Duration::from_secs(1);
/// How long `shutdown` waits for connection tasks before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest user name / client id copied into events and logs.
const MAX_LOGGED_LEN: usize = 128;
/// Read buffer growth step.
const READ_CHUNK: usize = 4096;

// ---------------------------------------------------------------------------
// Public configuration and API types
// ---------------------------------------------------------------------------

/// A user allowed to connect to the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUser {
    /// MQTT user name.
    pub name: String,
    /// Password (compared in constant time). Must not be empty.
    pub password: Vec<u8>,
    /// Topic filters (with `+` / `#`) this user may publish to.
    pub publish: Vec<String>,
    /// Topic filters this user may subscribe to. A requested filter is granted
    /// only when every topic it can match is matched by one of these.
    pub subscribe: Vec<String>,
}

impl fmt::Debug for BrokerUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("publish", &self.publish)
            .field("subscribe", &self.subscribe)
            .finish()
    }
}

impl BrokerUser {
    fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| topic_matches(f, topic))
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        self.subscribe.iter().any(|a| filter_covers(a, filter))
    }
}

/// Broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on (default `127.0.0.1:1883`).
    pub listen: SocketAddr,
    /// Users allowed to connect. There is no anonymous access.
    pub users: Vec<BrokerUser>,
    /// Maximum remaining length of an incoming packet (default 256 KiB).
    pub max_packet_size: usize,
    /// Maximum number of simultaneously open sockets, authenticated or not.
    pub max_connections: usize,
    /// Maximum open sockets from one source address, so one host cannot take every slot.
    pub max_connections_per_source: usize,
    /// Capacity of each client's outbound queue; deliveries beyond it are
    /// dropped. Also bounds the stored messages of an offline persistent session.
    pub outbound_queue: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1883)),
            users: Vec::new(),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_connections: 256,
            max_connections_per_source: 64,
            outbound_queue: 1024,
        }
    }
}

/// Timeouts used by the broker; see [`Broker::start_with_timeouts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerTimeouts {
    /// Time a new socket has to deliver a complete CONNECT packet.
    pub connect: Duration,
    /// Time a single socket write may take before the client is disconnected.
    pub write: Duration,
}

impl Default for BrokerTimeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            write: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// A publish to an intercepted topic, handed to the gateway instead of
/// subscribers. `principal` is the authenticated user name of the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPublish {
    pub principal: String,
    pub topic: String,
    pub payload: Bytes,
}

/// Security-relevant broker events for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A CONNECT was refused because of missing or wrong credentials.
    AuthFailed {
        peer: SocketAddr,
        username: Option<String>,
        client_id: String,
    },
    /// A publish (also a last will) or subscribe was refused by the ACL.
    AclDenied {
        username: String,
        action: &'static str,
        topic: String,
    },
    /// A client authenticated successfully.
    ClientConnected {
        peer: SocketAddr,
        username: String,
        client_id: String,
    },
    /// An authenticated client went away. `reason` is one of
    /// `"client disconnect"`, `"peer closed"`, `"keepalive timeout"`,
    /// `"protocol error"`, `"acl violation"`, `"taken over"`, `"io error"`,
    /// `"shutdown"`.
    ClientDisconnected {
        peer: SocketAddr,
        username: String,
        client_id: String,
        reason: &'static str,
    },
    /// Deliveries to a slow subscriber were dropped because its queue was full.
    /// `count` is the number dropped since the previous `Dropped` event for the
    /// same session (events are emitted at most once per second per session).
    Dropped { username: String, count: u64 },
}

/// Counters since the broker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerStats {
    /// Currently connected (authenticated) clients.
    pub connections: u64,
    /// Successful connections since start.
    pub connections_total: u64,
    /// Sockets refused because `max_connections` was reached.
    pub connections_refused: u64,
    /// Accepted publishes (including delivered last wills).
    pub messages_in: u64,
    /// Publish packets written to subscribers.
    pub messages_out: u64,
    /// Deliveries dropped (full client queue, full offline queue, intercept
    /// channel full or closed).
    pub dropped: u64,
    /// Refused CONNECTs because of credentials.
    pub auth_failures: u64,
    /// Publishes/subscriptions refused by the ACL.
    pub acl_denials: u64,
    /// Connections closed because of malformed or out-of-protocol packets.
    pub protocol_errors: u64,
}

/// The embedded broker.
pub struct Broker;

impl Broker {
    /// Binds `cfg.listen` and starts serving in a tokio task.
    ///
    /// `intercept`: publishes whose topic matches one of these filters are not
    /// distributed to subscribers (nor retained); after the publisher's ACL
    /// check they are sent to the paired channel with the authenticated user
    /// name as principal. A publish matching several intercept filters is sent
    /// to each matching channel. For QoS 1/2 the acknowledgement is sent only
    /// after the hand-over (which waits up to 5 s for channel room).
    ///
    /// `events`: security-relevant events; sent with `try_send`, so a full
    /// channel loses events but never blocks the broker.
    ///
    /// Returns `InvalidInput` for an invalid configuration (zero limits, empty
    /// or duplicate user names, empty passwords, invalid topic filters).
    pub async fn start(
        cfg: BrokerConfig,
        intercept: Vec<(String, mpsc::Sender<InboundPublish>)>,
        events: mpsc::Sender<BrokerEvent>,
    ) -> std::io::Result<BrokerHandle> {
        Self::start_with_timeouts(cfg, BrokerTimeouts::default(), intercept, events).await
    }

    /// Like [`Broker::start`] with explicit timeouts.
    pub async fn start_with_timeouts(
        cfg: BrokerConfig,
        timeouts: BrokerTimeouts,
        intercept: Vec<(String, mpsc::Sender<InboundPublish>)>,
        events: mpsc::Sender<BrokerEvent>,
    ) -> std::io::Result<BrokerHandle> {
        let users = validate_config(&cfg, &intercept)?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let auto_id_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            users,
            max_packet_size: cfg.max_packet_size,
            max_connections: cfg.max_connections,
            outbound_queue: cfg.outbound_queue,
            timeouts,
            intercept,
            events,
            stats: Counters::default(),
            open_sockets: AtomicUsize::new(0),
            max_per_source: cfg.max_connections_per_source,
            per_source: Mutex::new(HashMap::new()),
            login_failures: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
            auto_id_seed,
            router: Mutex::new(Router::default()),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        info!(%local_addr, "MQTT broker listening");
        Ok(BrokerHandle {
            local_addr,
            shutdown_tx,
            task,
            shared,
        })
    }
}

/// Handle to a running broker. Dropping it stops the broker as well (without
/// waiting); use [`BrokerHandle::shutdown`] to stop it and wait.
#[must_use = "dropping the handle stops the broker"]
pub struct BrokerHandle {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes all client connections (no wills are sent) and
    /// waits for the connection tasks to end (at most a few seconds).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.task.await {
            warn!(error = %e, "broker accept task ended abnormally");
        }
        info!(local_addr = %self.local_addr, "MQTT broker stopped");
    }

    /// Snapshot of the broker counters.
    #[cfg(test)]
    pub fn stats(&self) -> BrokerStats {
        self.shared.stats.snapshot()
    }

    /// A cloneable view of the counters, for whoever reports status while the broker runs.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader(self.shared.clone())
    }
}

/// Reads the broker's counters; see [`BrokerHandle::stats_reader`].
#[derive(Clone)]
pub struct StatsReader(Arc<Shared>);

impl StatsReader {
    pub fn get(&self) -> BrokerStats {
        self.0.stats.snapshot()
    }
}

// ---------------------------------------------------------------------------
// Topic names and filters
// ---------------------------------------------------------------------------

/// Whether `topic` matches the subscription `filter` with MQTT wildcard rules:
/// `+` matches exactly one level (possibly empty), a trailing `#` matches the
/// parent level and any number of levels below it, and topics starting with
/// `$` are not matched by a filter whose first level is a wildcard.
///
/// Invalid filters and invalid topic names (empty, containing wildcards or
/// NUL) never match.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if !valid_filter(filter) || !valid_topic(topic) {
        return false;
    }
    let mut fl = filter.split('/');
    let mut tl = topic.split('/');
    let mut first = true;
    loop {
        match (fl.next(), tl.next()) {
            (Some("#"), t) => return !(first && t.is_some_and(|t| t.starts_with('$'))),
            (Some("+"), Some(t)) => {
                if first && t.starts_with('$') {
                    return false;
                }
            }
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// Whether the filter `allowed` covers the filter `requested`, i.e. every topic
/// that `requested` can match is also matched by `allowed`. Used to decide
/// whether a subscription is permitted. Invalid filters never cover / are
/// never covered.
pub fn filter_covers(allowed: &str, requested: &str) -> bool {
    if !valid_filter(allowed) || !valid_filter(requested) {
        return false;
    }
    let mut al = allowed.split('/');
    let mut rl = requested.split('/');
    let mut first = true;
    loop {
        match (al.next(), rl.next()) {
            // `#` covers the rest, except that a leading wildcard never
            // reaches `$` topics, so it cannot cover a literal `$...` level.
            (Some("#"), Some(r)) => return !(first && r.starts_with('$')),
            // The requested filter ended; a trailing `#` also matches the
            // parent level, anything else requires more levels.
            (Some("#"), None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => return true,
            (Some(a), Some(r)) => {
                let ok = match r {
                    // `#` in the request matches arbitrary depth: only `#`
                    // (handled above) covers it.
                    "#" => false,
                    "+" => a == "+",
                    literal => a == literal || (a == "+" && !(first && literal.starts_with('$'))),
                };
                if !ok {
                    return false;
                }
            }
        }
        first = false;
    }
}

/// Valid topic name for PUBLISH: non-empty, no wildcards, no NUL.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Valid topic filter: non-empty, no NUL, `+` only as a whole level, `#` only
/// as the whole last level.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connections_total: AtomicU64,
    connections_refused: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    dropped: AtomicU64,
    auth_failures: AtomicU64,
    acl_denials: AtomicU64,
    protocol_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> BrokerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BrokerStats {
            connections: get(&self.connections),
            connections_total: get(&self.connections_total),
            connections_refused: get(&self.connections_refused),
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            dropped: get(&self.dropped),
            auth_failures: get(&self.auth_failures),
            acl_denials: get(&self.acl_denials),
            protocol_errors: get(&self.protocol_errors),
        }
    }
}

struct Shared {
    users: HashMap<String, Arc<BrokerUser>>,
    max_packet_size: usize,
    max_connections: usize,
    outbound_queue: usize,
    timeouts: BrokerTimeouts,
    intercept: Vec<(String, mpsc::Sender<InboundPublish>)>,
    events: mpsc::Sender<BrokerEvent>,
    stats: Counters,
    open_sockets: AtomicUsize,
    max_per_source: usize,
    per_source: Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Failed logins per source in the current minute (bounded: oldest windows evicted).
    login_failures: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
    next_conn_id: AtomicU64,
    auto_id_seed: u64,
    router: Mutex<Router>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    username: String,
    client_id: String,
}

/// A message queued for one subscriber.
#[derive(Debug, Clone)]
struct Delivery {
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    dup: bool,
}

struct Link {
    conn_id: u64,
    tx: mpsc::Sender<Delivery>,
    kill: Option<oneshot::Sender<()>>,
}

struct Session {
    /// filter -> granted QoS
    subs: HashMap<String, QoS>,
    persistent: bool,
    link: Option<Link>,
    offline: VecDeque<Delivery>,
    offline_since: Option<Instant>,
    drops_pending: u64,
    last_drop_event: Option<Instant>,
}

impl Session {
    fn linked_to(&self, conn_id: u64) -> bool {
        self.link.as_ref().is_some_and(|l| l.conn_id == conn_id)
    }
}

struct RetainedMsg {
    payload: Bytes,
    qos: QoS,
}

#[derive(Default)]
struct Router {
    sessions: HashMap<SessionKey, Session>,
    retained: HashMap<String, RetainedMsg>,
    retained_bytes: usize,
}

fn qos_rank(q: QoS) -> u8 {
    match q {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

fn qos_min(a: QoS, b: QoS) -> QoS {
    if qos_rank(a) <= qos_rank(b) { a } else { b }
}

fn truncate_for_log(s: &str) -> String {
    if s.len() <= MAX_LOGGED_LEN {
        return s.to_owned();
    }
    let mut end = MAX_LOGGED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s.get(..end).unwrap_or_default().to_owned();
    out.push('…');
    out
}

/// Constant-time comparison (in the contents; the running time depends only
/// on the lengths).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff: u8 = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn invalid_input(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

fn validate_config(
    cfg: &BrokerConfig,
    intercept: &[(String, mpsc::Sender<InboundPublish>)],
) -> std::io::Result<HashMap<String, Arc<BrokerUser>>> {
    if cfg.max_packet_size == 0 {
        return Err(invalid_input("broker max_packet_size must be > 0".into()));
    }
    if cfg.max_connections_per_source == 0 {
        return Err(invalid_input(
            "broker max_connections_per_source must be > 0".into(),
        ));
    }
    if cfg.max_connections == 0 {
        return Err(invalid_input("broker max_connections must be > 0".into()));
    }
    if cfg.outbound_queue == 0 || cfg.outbound_queue > MAX_OUTBOUND_QUEUE {
        return Err(invalid_input(format!(
            "broker outbound_queue must be between 1 and {MAX_OUTBOUND_QUEUE}"
        )));
    }
    let mut users = HashMap::new();
    for u in &cfg.users {
        if u.name.is_empty() {
            return Err(invalid_input("broker user with empty name".into()));
        }
        if u.password.is_empty() {
            return Err(invalid_input(format!(
                "broker user {:?} has an empty password",
                u.name
            )));
        }
        if let Some(f) = u
            .publish
            .iter()
            .chain(&u.subscribe)
            .find(|f| !valid_filter(f))
        {
            return Err(invalid_input(format!(
                "broker user {:?} has an invalid topic filter {f:?}",
                u.name
            )));
        }
        if users.insert(u.name.clone(), Arc::new(u.clone())).is_some() {
            return Err(invalid_input(format!("duplicate broker user {:?}", u.name)));
        }
    }
    if let Some((f, _)) = intercept.iter().find(|(f, _)| !valid_filter(f)) {
        return Err(invalid_input(format!("invalid intercept filter {f:?}")));
    }
    Ok(users)
}

impl Shared {
    fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: BrokerEvent) {
        if let Err(e) = self.events.try_send(event) {
            debug!(error = %e, "broker event not delivered");
        }
    }

    fn try_acquire_slot(&self) -> bool {
        self.open_sockets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    /// Counts one more socket from `ip`, unless it already holds its share.
    fn try_acquire_source(&self, ip: std::net::IpAddr) -> bool {
        let mut m = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_source {
            return false;
        }
        *n += 1;
        true
    }

    /// Whether `ip` has used up its failed logins for this minute: its CONNECTs are then refused
    /// without checking the password (a guessing loop gets nowhere and costs nothing).
    fn login_throttled(&self, ip: std::net::IpAddr) -> bool {
        let m = self
            .login_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.get(&ip).is_some_and(|(start, n)| {
            start.elapsed() < LOGIN_WINDOW && *n >= MAX_LOGIN_FAILURES_PER_WINDOW
        })
    }

    fn login_failed(&self, ip: std::net::IpAddr) {
        let mut m = self
            .login_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if m.len() >= 4096 && !m.contains_key(&ip) {
            // keep the map bounded: forget the oldest window
            if let Some(oldest) = m.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                m.remove(&oldest);
            }
        }
        let e = m.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= LOGIN_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    fn release_source(&self, ip: std::net::IpAddr) {
        let mut m = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    fn acl_denied(&self, username: &str, action: &'static str, topic: &str) {
        bump(&self.stats.acl_denials);
        info!(username, action, topic = %truncate_for_log(topic), "ACL denied");
        self.emit(BrokerEvent::AclDenied {
            username: username.to_owned(),
            action,
            topic: topic.to_owned(),
        });
    }

    fn authenticate(&self, login: Option<&Login>) -> Result<Arc<BrokerUser>, ConnectReturnCode> {
        const DUMMY: &[u8] = b"warden-broker-dummy-password-for-timing";
        let Some(login) = login.filter(|l| !l.username.is_empty()) else {
            return Err(ConnectReturnCode::NotAuthorized);
        };
        match self.users.get(&login.username) {
            Some(user) => {
                let ok = ct_eq(login.password.as_bytes(), &user.password);
                if ok && !login.password.is_empty() {
                    Ok(Arc::clone(user))
                } else {
                    Err(ConnectReturnCode::BadUserNamePassword)
                }
            }
            None => {
                let _ = ct_eq(login.password.as_bytes(), DUMMY);
                Err(ConnectReturnCode::BadUserNamePassword)
            }
        }
    }

    /// Counts a dropped delivery for `s` and emits a rate-limited event.
    fn note_drop(&self, username: &str, s: &mut Session) {
        bump(&self.stats.dropped);
        s.drops_pending += 1;
        let now = Instant::now();
        if s.last_drop_event
            .is_none_or(|t| now.duration_since(t) >= DROP_EVENT_INTERVAL)
        {
            self.flush_drops(username, s);
            s.last_drop_event = Some(now);
        }
    }

    fn flush_drops(&self, username: &str, s: &mut Session) {
        if s.drops_pending > 0 {
            warn!(
                username,
                count = s.drops_pending,
                "dropped deliveries to slow client"
            );
            self.emit(BrokerEvent::Dropped {
                username: username.to_owned(),
                count: s.drops_pending,
            });
            s.drops_pending = 0;
        }
    }

    /// Queues a delivery for a session: to its connection when online, to the
    /// bounded offline queue (QoS 1 only) when it is an offline persistent
    /// session.
    fn enqueue(&self, key: &SessionKey, s: &mut Session, d: Delivery) {
        match &s.link {
            Some(link) => match link.tx.try_send(d) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.note_drop(&key.username, s),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
            None if s.persistent && d.qos != QoS::AtMostOnce => {
                if s.offline.len() < self.outbound_queue {
                    s.offline.push_back(d);
                } else {
                    self.note_drop(&key.username, s);
                }
            }
            None => {}
        }
    }

    /// Routes an accepted publish: to intercept channels if the topic is
    /// intercepted, otherwise to the retained store and subscribers.
    async fn route(&self, principal: &str, topic: String, payload: Bytes, qos: QoS, retain: bool) {
        let mut intercepted = false;
        for (filter, tx) in &self.intercept {
            if !topic_matches(filter, &topic) {
                continue;
            }
            intercepted = true;
            let msg = InboundPublish {
                principal: principal.to_owned(),
                topic: topic.clone(),
                payload: payload.clone(),
            };
            if let Err(e) = tx.send_timeout(msg, INTERCEPT_SEND_TIMEOUT).await {
                bump(&self.stats.dropped);
                warn!(principal, topic = %truncate_for_log(&topic), error = %e,
                    "intercepted publish dropped");
            }
        }
        if !intercepted {
            self.distribute(&topic, &payload, qos, retain);
        }
    }

    fn distribute(&self, topic: &str, payload: &Bytes, qos: QoS, retain: bool) {
        let mut guard = self.router();
        let router = &mut *guard;
        if retain {
            if let Some(old) = router.retained.remove(topic) {
                router.retained_bytes = router.retained_bytes.saturating_sub(old.payload.len());
            }
            if !payload.is_empty() {
                let fits = router.retained.len() < MAX_RETAINED_MESSAGES
                    && router.retained_bytes.saturating_add(payload.len()) <= MAX_RETAINED_BYTES;
                if fits {
                    router.retained_bytes += payload.len();
                    router.retained.insert(
                        topic.to_owned(),
                        RetainedMsg {
                            payload: payload.clone(),
                            qos,
                        },
                    );
                } else {
                    warn!(topic = %truncate_for_log(topic), "retained store full; message not retained");
                }
            }
        }
        for (key, session) in router.sessions.iter_mut() {
            let best = session
                .subs
                .iter()
                .filter(|(f, _)| topic_matches(f, topic))
                .map(|(_, q)| *q)
                .max_by_key(|q| qos_rank(*q));
            let Some(sub_qos) = best else { continue };
            let d = Delivery {
                topic: topic.to_owned(),
                payload: payload.clone(),
                qos: qos_min(qos, sub_qos),
                retain: false,
                dup: false,
            };
            self.enqueue(key, session, d);
        }
    }

    async fn publish_will(&self, user: &BrokerUser, will: LastWill) {
        if !user.may_publish(&will.topic) {
            self.acl_denied(&user.name, "publish", &will.topic);
            return;
        }
        bump(&self.stats.messages_in);
        debug!(username = %user.name, topic = %truncate_for_log(&will.topic), "publishing last will");
        self.route(&user.name, will.topic, will.message, will.qos, will.retain)
            .await;
    }

    /// Evicts the oldest offline persistent sessions beyond the limit.
    fn evict_offline(&self, router: &mut Router) {
        let limit = self.max_connections;
        loop {
            let mut offline = 0usize;
            let mut oldest: Option<(&SessionKey, Instant)> = None;
            for (k, s) in &router.sessions {
                if s.link.is_none() {
                    offline += 1;
                    let since = s.offline_since.unwrap_or_else(Instant::now);
                    if oldest.is_none_or(|(_, t)| since < t) {
                        oldest = Some((k, since));
                    }
                }
            }
            if offline <= limit {
                return;
            }
            let Some(key) = oldest.map(|(k, _)| k.clone()) else {
                return;
            };
            debug!(username = %key.username, client_id = %truncate_for_log(&key.client_id),
                "evicting offline session");
            router.sessions.remove(&key);
        }
    }
}

// ---------------------------------------------------------------------------
// Accepting connections and the CONNECT handshake
// ---------------------------------------------------------------------------

/// Releases a connection slot when the connection task ends.
struct SlotGuard(Arc<Shared>, std::net::IpAddr);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::SeqCst);
        self.0.release_source(self.1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = res {
                    warn!(error = %e, "broker connection task failed");
                }
            }
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    if !shared.try_acquire_source(peer.ip()) {
                        bump(&shared.stats.connections_refused);
                        debug!(%peer, "connection refused: max_connections_per_source reached");
                        drop(stream);
                        continue;
                    }
                    if !shared.try_acquire_slot() {
                        shared.release_source(peer.ip());
                        bump(&shared.stats.connections_refused);
                        warn!(%peer, "connection refused: max_connections reached");
                        drop(stream);
                        continue;
                    }
                    let slot = SlotGuard(Arc::clone(&shared), peer.ip());
                    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(serve_connection(
                        Arc::clone(&shared),
                        stream,
                        peer,
                        conn_id,
                        shutdown.clone(),
                        slot,
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("broker connections did not stop in time; aborting them");
    }
    tasks.shutdown().await;
}

#[derive(Debug, thiserror::Error)]
enum ConnectFail {
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported protocol name or level")]
    UnsupportedProtocol,
    #[error("unknown protocol name")]
    UnknownProtocol,
    #[error("malformed CONNECT: {0}")]
    Malformed(CodecError),
    #[error("connection closed before CONNECT")]
    Closed,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the protocol name and level from a complete CONNECT frame.
fn peek_protocol(frame: &[u8]) -> Option<(&[u8], u8)> {
    let (_, mut rest) = frame.split_first()?;
    // Skip the remaining-length varint (1..=4 bytes).
    for _ in 0..4 {
        let (b, r) = rest.split_first()?;
        rest = r;
        if b & 0x80 == 0 {
            let (len, r) = rest.split_at_checked(2)?;
            let len = u16::from_be_bytes(len.try_into().ok()?) as usize;
            let (name, r) = r.split_at_checked(len)?;
            let (level, _) = r.split_first()?;
            return Some((name, *level));
        }
    }
    None
}

async fn read_connect(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Connect, ConnectFail> {
    loop {
        if let Some(b) = rbuf.first()
            && b >> 4 != 1
        {
            return Err(ConnectFail::NotConnect);
        }
        match rumqttc::mqttbytes::check(rbuf.iter(), max_packet_size) {
            Ok(header) => {
                let frame = rbuf
                    .get(..header.frame_length())
                    .ok_or(ConnectFail::Malformed(CodecError::MalformedPacket))?;
                let (name, level) = peek_protocol(frame)
                    .ok_or(ConnectFail::Malformed(CodecError::MalformedPacket))?;
                match (name, level) {
                    (b"MQTT", 4) => {}
                    (b"MQTT" | b"MQIsdp", _) => return Err(ConnectFail::UnsupportedProtocol),
                    _ => return Err(ConnectFail::UnknownProtocol),
                }
                return match Packet::read(rbuf, max_packet_size) {
                    Ok(Packet::Connect(c)) => Ok(c),
                    Ok(_) => Err(ConnectFail::NotConnect),
                    Err(e) => Err(ConnectFail::Malformed(e)),
                };
            }
            Err(CodecError::InsufficientBytes(_)) => {
                rbuf.reserve(READ_CHUNK);
                if stream.read_buf(rbuf).await? == 0 {
                    return Err(ConnectFail::Closed);
                }
            }
            Err(e) => return Err(ConnectFail::Malformed(e)),
        }
    }
}

async fn write_connack(
    stream: &mut TcpStream,
    code: ConnectReturnCode,
    session_present: bool,
    wt: Duration,
) {
    let mut buf = BytesMut::with_capacity(4);
    if Packet::ConnAck(ConnAck::new(code, session_present))
        .write(&mut buf, usize::MAX)
        .is_ok()
    {
        let _ = timeout(wt, stream.write_all(&buf)).await;
    }
}

async fn close_socket(stream: &mut TcpStream) {
    let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
}

async fn serve_connection(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    shutdown: watch::Receiver<bool>,
    _slot: SlotGuard,
) {
    let _ = stream.set_nodelay(true);
    let wt = shared.timeouts.write;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let read = timeout(
        shared.timeouts.connect,
        read_connect(&mut stream, &mut rbuf, shared.max_packet_size),
    )
    .await;
    let connect = match read {
        Ok(Ok(c)) => c,
        Err(_) => {
            debug!(%peer, "no CONNECT within timeout; closing");
            return;
        }
        Ok(Err(ConnectFail::UnsupportedProtocol)) => {
            debug!(%peer, "unsupported protocol version; refusing");
            write_connack(
                &mut stream,
                ConnectReturnCode::RefusedProtocolVersion,
                false,
                wt,
            )
            .await;
            close_socket(&mut stream).await;
            return;
        }
        Ok(Err(e @ (ConnectFail::Closed | ConnectFail::Io(_)))) => {
            debug!(%peer, error = %e, "connection ended before CONNECT");
            return;
        }
        Ok(Err(e)) => {
            bump(&shared.stats.protocol_errors);
            debug!(%peer, error = %e, "bad first packet; closing");
            return;
        }
    };
    if connect.protocol != Protocol::V4 {
        write_connack(
            &mut stream,
            ConnectReturnCode::RefusedProtocolVersion,
            false,
            wt,
        )
        .await;
        return;
    }

    let throttled = shared.login_throttled(peer.ip());
    let checked = if throttled {
        Err(ConnectReturnCode::NotAuthorized)
    } else {
        shared.authenticate(connect.login.as_ref())
    };
    let user = match checked {
        Ok(user) => user,
        Err(code) => {
            bump(&shared.stats.auth_failures);
            shared.login_failed(peer.ip());
            let username = connect
                .login
                .as_ref()
                .filter(|l| !l.username.is_empty())
                .map(|l| truncate_for_log(&l.username));
            let client_id = truncate_for_log(&connect.client_id);
            info!(%peer, ?username, %client_id, ?code, "MQTT authentication failed");
            shared.emit(BrokerEvent::AuthFailed {
                peer,
                username,
                client_id,
            });
            write_connack(&mut stream, code, false, wt).await;
            close_socket(&mut stream).await;
            return;
        }
    };

    let client_id = if connect.client_id.is_empty() {
        if !connect.clean_session {
            debug!(%peer, "empty client id without clean session; refusing");
            write_connack(&mut stream, ConnectReturnCode::BadClientId, false, wt).await;
            close_socket(&mut stream).await;
            return;
        }
        format!("auto-{:x}-{conn_id}", shared.auto_id_seed)
    } else if connect.client_id.len() > MAX_CLIENT_ID_LEN {
        debug!(%peer, "client id too long; refusing");
        write_connack(&mut stream, ConnectReturnCode::BadClientId, false, wt).await;
        close_socket(&mut stream).await;
        return;
    } else {
        connect.client_id.clone()
    };

    if let Some(will) = &connect.last_will
        && !valid_topic(&will.topic)
    {
        bump(&shared.stats.protocol_errors);
        debug!(%peer, "invalid last will topic; closing");
        return;
    }

    let key = SessionKey {
        username: user.name.clone(),
        client_id,
    };
    let (tx, rx) = mpsc::channel(shared.outbound_queue);
    let (kill_tx, kill_rx) = oneshot::channel();
    let (session_present, carried) = {
        let mut guard = shared.router();
        let router = &mut *guard;
        let mut subs = HashMap::new();
        let mut carried = VecDeque::new();
        let mut present = false;
        let mut drops_pending = 0;
        if let Some(mut old) = router.sessions.remove(&key) {
            if let Some(link) = old.link.take() {
                debug!(username = %key.username, client_id = %truncate_for_log(&key.client_id),
                    "client id taken over by a new connection");
                if let Some(kill) = link.kill {
                    let _ = kill.send(());
                }
            }
            if connect.clean_session || !old.persistent {
                shared.flush_drops(&key.username, &mut old);
            } else {
                present = true;
                subs = old.subs;
                carried = old.offline;
                drops_pending = old.drops_pending;
            }
        }
        router.sessions.insert(
            key.clone(),
            Session {
                subs,
                persistent: !connect.clean_session,
                link: Some(Link {
                    conn_id,
                    tx,
                    kill: Some(kill_tx),
                }),
                offline: VecDeque::new(),
                offline_since: None,
                drops_pending,
                last_drop_event: None,
            },
        );
        (present, carried)
    };

    bump(&shared.stats.connections);
    bump(&shared.stats.connections_total);
    info!(%peer, username = %key.username, client_id = %truncate_for_log(&key.client_id),
        "MQTT client connected");
    shared.emit(BrokerEvent::ClientConnected {
        peer,
        username: key.username.clone(),
        client_id: truncate_for_log(&key.client_id),
    });

    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_secs(u64::from(connect.keep_alive)));
    let mut conn = Connection {
        shared,
        conn_id,
        peer,
        user,
        key,
        keep_alive,
        will: connect.last_will,
        stream,
        rbuf,
        wbuf: BytesMut::with_capacity(READ_CHUNK),
        rx,
        kill: kill_rx,
        shutdown,
        inflight: VecDeque::new(),
        next_pkid: 0,
        backlog: carried,
        qos2_in: HashSet::new(),
        detached: false,
    };
    let reason = match conn
        .write(&Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            session_present,
        )))
        .await
    {
        Ok(()) => conn.serve().await,
        Err(r) => r,
    };
    conn.finish(reason).await;
}

// ---------------------------------------------------------------------------
// Serving an authenticated connection
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    ClientDisconnect,
    PeerClosed,
    KeepAliveTimeout,
    ProtocolError,
    AclViolation,
    TakenOver,
    Io,
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::ClientDisconnect => "client disconnect",
            Self::PeerClosed => "peer closed",
            Self::KeepAliveTimeout => "keepalive timeout",
            Self::ProtocolError => "protocol error",
            Self::AclViolation => "acl violation",
            Self::TakenOver => "taken over",
            Self::Io => "io error",
            Self::Shutdown => "shutdown",
        }
    }

    /// The last will is published when the connection ends without a
    /// DISCONNECT packet, except on takeover and broker shutdown.
    fn publishes_will(self) -> bool {
        !matches!(
            self,
            Self::ClientDisconnect | Self::TakenOver | Self::Shutdown
        )
    }
}

enum Wake {
    Kill,
    Shutdown,
    KeepAlive,
    Read(std::io::Result<usize>),
    Deliver(Option<Delivery>),
}

struct Connection {
    shared: Arc<Shared>,
    conn_id: u64,
    peer: SocketAddr,
    user: Arc<BrokerUser>,
    key: SessionKey,
    keep_alive: Option<Duration>,
    will: Option<LastWill>,
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    rx: mpsc::Receiver<Delivery>,
    kill: oneshot::Receiver<()>,
    shutdown: watch::Receiver<bool>,
    /// Sent, unacknowledged QoS 1 deliveries in send order.
    inflight: VecDeque<(u16, Delivery)>,
    next_pkid: u16,
    /// Deliveries owed before anything from `rx`: retained messages for new
    /// subscriptions and messages carried over from a persistent session.
    backlog: VecDeque<Delivery>,
    /// Packet ids of inbound QoS 2 publishes awaiting PUBREL.
    qos2_in: HashSet<u16>,
    /// Set once the session has been detached from the router.
    detached: bool,
}

impl Drop for Connection {
    /// Keeps the router consistent even if the task is aborted (shutdown) or
    /// unwinds: the session is detached and the connection count released.
    fn drop(&mut self) {
        self.detach();
        self.shared
            .stats
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    async fn serve(&mut self) -> CloseReason {
        // The client may have pipelined packets right after CONNECT.
        if let Err(r) = self.process_input().await {
            return r;
        }
        let grace = self.keep_alive.map(|k| k + k / 2);
        let idle = tokio::time::sleep(grace.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(idle);
        loop {
            if let Err(r) = self.flush_backlog().await {
                return r;
            }
            if *self.shutdown.borrow() {
                return CloseReason::Shutdown;
            }
            let room = self.inflight.len() < MAX_INFLIGHT;
            self.rbuf.reserve(READ_CHUNK);
            let wake = tokio::select! {
                biased;
                _ = &mut self.kill => Wake::Kill,
                _ = self.shutdown.changed() => Wake::Shutdown,
                _ = &mut idle, if grace.is_some() => Wake::KeepAlive,
                r = self.stream.read_buf(&mut self.rbuf) => Wake::Read(r),
                d = self.rx.recv(), if room => Wake::Deliver(d),
            };
            match wake {
                Wake::Kill => return CloseReason::TakenOver,
                Wake::Shutdown => return CloseReason::Shutdown,
                Wake::KeepAlive => return CloseReason::KeepAliveTimeout,
                Wake::Read(Ok(0)) => return CloseReason::PeerClosed,
                Wake::Read(Ok(_)) => match self.process_input().await {
                    Ok(0) => {}
                    Ok(_) => {
                        if let Some(g) = grace {
                            idle.as_mut().reset(Instant::now() + g);
                        }
                    }
                    Err(r) => return r,
                },
                Wake::Read(Err(e)) => {
                    debug!(peer = %self.peer, error = %e, "read failed");
                    return CloseReason::Io;
                }
                Wake::Deliver(Some(d)) => {
                    if let Err(r) = self.deliver(d).await {
                        return r;
                    }
                }
                // Every sender is gone: the session no longer points at us.
                Wake::Deliver(None) => return CloseReason::TakenOver,
            }
        }
    }

    /// Decodes and handles every complete packet in the read buffer; returns
    /// how many were handled.
    async fn process_input(&mut self) -> Result<usize, CloseReason> {
        let mut handled = 0;
        loop {
            match Packet::read(&mut self.rbuf, self.shared.max_packet_size) {
                Ok(packet) => {
                    handled += 1;
                    self.handle(packet).await?;
                }
                Err(CodecError::InsufficientBytes(_)) => return Ok(handled),
                Err(e) => {
                    bump(&self.shared.stats.protocol_errors);
                    debug!(peer = %self.peer, username = %self.key.username, error = %e,
                        "malformed packet; closing connection");
                    return Err(CloseReason::ProtocolError);
                }
            }
        }
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::PubAck(ack) => {
                if let Some(pos) = self.inflight.iter().position(|(id, _)| *id == ack.pkid) {
                    self.inflight.remove(pos);
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                self.qos2_in.remove(&rel.pkid);
                self.write(&Packet::PubComp(PubComp::new(rel.pkid))).await
            }
            // The broker never sends QoS 2, so these are stray; ignore them.
            Packet::PubRec(_) | Packet::PubComp(_) => Ok(()),
            Packet::Subscribe(s) => self.on_subscribe(s).await,
            Packet::Unsubscribe(u) => self.on_unsubscribe(u).await,
            Packet::PingReq => self.write(&Packet::PingResp).await,
            Packet::Disconnect => Err(CloseReason::ClientDisconnect),
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                bump(&self.shared.stats.protocol_errors);
                debug!(peer = %self.peer, packet = ?other, "unexpected packet from client; closing");
                Err(CloseReason::ProtocolError)
            }
        }
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), CloseReason> {
        if !valid_topic(&p.topic) {
            bump(&self.shared.stats.protocol_errors);
            debug!(peer = %self.peer, "publish with invalid topic name; closing");
            return Err(CloseReason::ProtocolError);
        }
        if p.qos == QoS::ExactlyOnce && self.qos2_in.contains(&p.pkid) {
            // Retransmission of a QoS 2 message already accepted.
            return self.write(&Packet::PubRec(PubRec::new(p.pkid))).await;
        }
        if !self.user.may_publish(&p.topic) {
            self.shared.acl_denied(&self.user.name, "publish", &p.topic);
            return Err(CloseReason::AclViolation);
        }
        bump(&self.shared.stats.messages_in);
        let (qos, pkid) = (p.qos, p.pkid);
        self.shared
            .route(&self.user.name, p.topic, p.payload, p.qos, p.retain)
            .await;
        match qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => self.write(&Packet::PubAck(PubAck::new(pkid))).await,
            QoS::ExactlyOnce => {
                self.qos2_in.insert(pkid);
                self.write(&Packet::PubRec(PubRec::new(pkid))).await
            }
        }
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), CloseReason> {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted: Vec<(usize, String, QoS)> = Vec::new();
        for (idx, f) in s.filters.into_iter().enumerate() {
            if !valid_filter(&f.path) {
                debug!(peer = %self.peer, filter = %truncate_for_log(&f.path), "invalid topic filter");
                codes.push(SubscribeReasonCode::Failure);
            } else if !self.user.may_subscribe(&f.path) {
                self.shared
                    .acl_denied(&self.user.name, "subscribe", &f.path);
                codes.push(SubscribeReasonCode::Failure);
            } else {
                let q = qos_min(f.qos, QoS::AtLeastOnce);
                codes.push(SubscribeReasonCode::Success(q));
                granted.push((idx, f.path, q));
            }
        }

        // Register and snapshot matching retained messages atomically, so a
        // retained message is never delivered after a newer live one.
        let mut retained_out: HashMap<String, Delivery> = HashMap::new();
        {
            let mut guard = self.shared.router();
            let router = &mut *guard;
            let Some(session) = router
                .sessions
                .get_mut(&self.key)
                .filter(|s| s.linked_to(self.conn_id))
            else {
                return Err(CloseReason::TakenOver);
            };
            for (idx, filter, q) in granted {
                if !session.subs.contains_key(&filter)
                    && session.subs.len() >= MAX_SUBSCRIPTIONS_PER_SESSION
                {
                    warn!(username = %self.key.username, "subscription limit reached");
                    if let Some(code) = codes.get_mut(idx) {
                        *code = SubscribeReasonCode::Failure;
                    }
                    continue;
                }
                for (topic, msg) in &router.retained {
                    if !topic_matches(&filter, topic) {
                        continue;
                    }
                    let qos = qos_min(msg.qos, q);
                    let entry = retained_out
                        .entry(topic.clone())
                        .or_insert_with(|| Delivery {
                            topic: topic.clone(),
                            payload: msg.payload.clone(),
                            qos,
                            retain: true,
                            dup: false,
                        });
                    if qos_rank(qos) > qos_rank(entry.qos) {
                        entry.qos = qos;
                    }
                }
                session.subs.insert(filter, q);
            }
        }

        self.write(&Packet::SubAck(SubAck::new(s.pkid, codes)))
            .await?;
        for d in retained_out.into_values() {
            if self.backlog.len() >= MAX_RETAINED_MESSAGES {
                bump(&self.shared.stats.dropped);
                continue;
            }
            self.backlog.push_back(d);
        }
        Ok(())
    }

    async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), CloseReason> {
        if u.topics.is_empty() {
            bump(&self.shared.stats.protocol_errors);
            return Err(CloseReason::ProtocolError);
        }
        {
            let mut router = self.shared.router();
            if let Some(session) = router
                .sessions
                .get_mut(&self.key)
                .filter(|s| s.linked_to(self.conn_id))
            {
                for t in &u.topics {
                    session.subs.remove(t);
                }
            }
        }
        self.write(&Packet::UnsubAck(UnsubAck::new(u.pkid))).await
    }

    async fn flush_backlog(&mut self) -> Result<(), CloseReason> {
        while self.inflight.len() < MAX_INFLIGHT {
            let Some(d) = self.backlog.pop_front() else {
                break;
            };
            self.deliver(d).await?;
        }
        Ok(())
    }

    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            let id = self.next_pkid;
            if id != 0 && !self.inflight.iter().any(|(p, _)| *p == id) {
                return id;
            }
        }
    }

    async fn deliver(&mut self, d: Delivery) -> Result<(), CloseReason> {
        let qos = qos_min(d.qos, QoS::AtLeastOnce);
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.alloc_pkid()
        };
        let publish = Publish {
            dup: d.dup && qos != QoS::AtMostOnce,
            qos,
            retain: d.retain,
            topic: d.topic.clone(),
            pkid,
            payload: d.payload.clone(),
        };
        if qos != QoS::AtMostOnce {
            self.inflight.push_back((
                pkid,
                Delivery {
                    qos,
                    dup: true,
                    ..d
                },
            ));
        }
        self.write(&Packet::Publish(publish)).await?;
        bump(&self.shared.stats.messages_out);
        Ok(())
    }

    async fn write(&mut self, packet: &Packet) -> Result<(), CloseReason> {
        self.wbuf.clear();
        if let Err(e) = packet.write(&mut self.wbuf, usize::MAX) {
            warn!(peer = %self.peer, error = %e, "failed to encode packet");
            return Err(CloseReason::Io);
        }
        match timeout(
            self.shared.timeouts.write,
            self.stream.write_all(&self.wbuf),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(peer = %self.peer, error = %e, "write failed");
                Err(CloseReason::Io)
            }
            Err(_) => {
                debug!(peer = %self.peer, "write timed out");
                Err(CloseReason::Io)
            }
        }
    }

    /// Detaches from the session: clean sessions are removed; persistent ones
    /// go offline and keep unacknowledged and queued QoS 1 messages.
    fn detach(&mut self) {
        if std::mem::replace(&mut self.detached, true) {
            return;
        }
        self.rx.close();
        let mut leftovers: Vec<Delivery> = self.inflight.drain(..).map(|(_, d)| d).collect();
        leftovers.extend(self.backlog.drain(..));
        while let Ok(d) = self.rx.try_recv() {
            leftovers.push(d);
        }
        let shared = Arc::clone(&self.shared);
        let mut guard = shared.router();
        let router = &mut *guard;
        let Some(session) = router.sessions.get_mut(&self.key) else {
            return;
        };
        let ours = session.linked_to(self.conn_id);
        if ours && !session.persistent {
            if let Some(mut s) = router.sessions.remove(&self.key) {
                shared.flush_drops(&self.key.username, &mut s);
            }
            return;
        }
        if !session.persistent {
            // Taken over by a clean session: nothing to carry over.
            return;
        }
        if ours {
            session.link = None;
            session.offline_since = Some(Instant::now());
        }
        for d in leftovers.into_iter().filter(|d| d.qos != QoS::AtMostOnce) {
            shared.enqueue(&self.key, session, d);
        }
        if ours {
            shared.flush_drops(&self.key.username, session);
            shared.evict_offline(router);
        }
    }

    async fn finish(mut self, reason: CloseReason) {
        self.detach();
        if reason.publishes_will()
            && let Some(will) = self.will.take()
        {
            self.shared.publish_will(&self.user, will).await;
        }
        close_socket(&mut self.stream).await;
        info!(peer = %self.peer, username = %self.key.username,
            client_id = %truncate_for_log(&self.key.client_id), reason = reason.as_str(),
            "MQTT client disconnected");
        self.shared.emit(BrokerEvent::ClientDisconnected {
            peer: self.peer,
            username: self.key.username.clone(),
            client_id: truncate_for_log(&self.key.client_id),
            reason: reason.as_str(),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions};
    use tokio::task::JoinHandle;

    /// Upper bound for anything a test waits for.
    const WAIT: Duration = Duration::from_secs(5);
    /// How long a test watches for something that must not happen.
    const QUIET: Duration = Duration::from_millis(500);

    fn user(name: &str, pw: &str, publish: &[&str], subscribe: &[&str]) -> BrokerUser {
        BrokerUser {
            name: name.into(),
            password: pw.as_bytes().to_vec(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn users() -> Vec<BrokerUser> {
        vec![
            user("sensor", "sensor-pw", &["warden/devices/+/telemetry"], &[]),
            user("app", "app-pw", &["warden/app/#"], &["warden/#"]),
            user(
                "operator",
                "op-pw",
                &["warden/cmd/#", "warden/app/#"],
                &["warden/devices/+/status", "warden/app/#"],
            ),
        ]
    }

    fn config() -> BrokerConfig {
        BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            users: users(),
            ..BrokerConfig::default()
        }
    }

    async fn start_cfg(
        cfg: BrokerConfig,
        timeouts: BrokerTimeouts,
        intercept: Vec<(String, mpsc::Sender<InboundPublish>)>,
    ) -> (BrokerHandle, mpsc::Receiver<BrokerEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let handle = Broker::start_with_timeouts(cfg, timeouts, intercept, tx)
            .await
            .unwrap();
        (handle, rx)
    }

    async fn start() -> (BrokerHandle, mpsc::Receiver<BrokerEvent>) {
        start_cfg(config(), BrokerTimeouts::default(), Vec::new()).await
    }

    fn opts(addr: SocketAddr, id: &str, creds: Option<(&str, &str)>) -> MqttOptions {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        if let Some((u, p)) = creds {
            o.set_credentials(u, p);
        }
        o
    }

    /// A rumqttc client whose event loop runs in a task; incoming packets and
    /// the first connection error are forwarded to `rx`.
    struct Client {
        client: AsyncClient,
        rx: mpsc::UnboundedReceiver<Result<Packet, ConnectionError>>,
        task: JoinHandle<()>,
    }

    impl Client {
        fn spawn(o: MqttOptions) -> Self {
            let (client, mut eventloop) = AsyncClient::new(o, 64);
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(p)) => {
                            if tx.send(Ok(p)).is_err() {
                                return;
                            }
                        }
                        Ok(Event::Outgoing(_)) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
            Self { client, rx, task }
        }

        /// Spawns and waits for a successful CONNACK.
        async fn connect(o: MqttOptions) -> (Self, bool) {
            let mut c = Self::spawn(o);
            match c.next().await {
                Some(Ok(Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, ConnectReturnCode::Success);
                    (c, ack.session_present)
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }

        async fn next(&mut self) -> Option<Result<Packet, ConnectionError>> {
            timeout(WAIT, self.rx.recv()).await.ok().flatten()
        }

        /// Waits for the first incoming packet accepted by `pick`, skipping others.
        async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
            loop {
                match self.next().await {
                    Some(Ok(p)) => {
                        if let Some(t) = pick(p) {
                            return t;
                        }
                    }
                    other => panic!("waiting for {what}: got {other:?}"),
                }
            }
        }

        async fn expect_publish(&mut self) -> Publish {
            self.expect("PUBLISH", |p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .await
        }

        async fn expect_suback(&mut self) -> SubAck {
            self.expect("SUBACK", |p| match p {
                Packet::SubAck(s) => Some(s),
                _ => None,
            })
            .await
        }

        async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
            self.client.subscribe(filter, qos).await.unwrap();
            self.expect_suback().await
        }

        /// Asserts that no PUBLISH arrives within `QUIET`.
        async fn expect_no_publish(&mut self) {
            let deadline = Instant::now() + QUIET;
            loop {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Err(_) => return,
                    Ok(Some(Ok(Packet::Publish(p)))) => panic!("unexpected publish {p:?}"),
                    Ok(Some(Ok(_))) => {}
                    Ok(other) => panic!("unexpected end of client: {other:?}"),
                }
            }
        }

        /// Waits until the connection fails and returns the error.
        async fn expect_error(&mut self) -> ConnectionError {
            loop {
                match self.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e,
                    None => panic!("client neither failed nor ended in time"),
                }
            }
        }
    }

    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Waits for the first event accepted by `pick`.
    async fn expect_event<T>(
        events: &mut mpsc::Receiver<BrokerEvent>,
        mut pick: impl FnMut(BrokerEvent) -> Option<T>,
    ) -> T {
        let fut = async {
            loop {
                let ev = events.recv().await.expect("event channel closed");
                if let Some(t) = pick(ev) {
                    return t;
                }
            }
        };
        timeout(WAIT, fut).await.expect("expected broker event")
    }

    fn connect_bytes(id: &str, login: Option<(&str, &str)>, keep_alive: u16) -> BytesMut {
        let mut c = Connect::new(id);
        c.keep_alive = keep_alive;
        if let Some((u, p)) = login {
            c.set_login(u, p);
        }
        let mut buf = BytesMut::new();
        Packet::Connect(c).write(&mut buf, usize::MAX).unwrap();
        buf
    }

    /// Reads until EOF/error; true if the peer closed within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        timeout(within, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    async fn read_exact_timeout(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("read timed out")
            .expect("read failed");
        buf
    }

    /// Raw connection that has completed CONNECT as `app`.
    async fn raw_app(addr: SocketAddr, id: &str, keep_alive: u16) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&connect_bytes(id, Some(("app", "app-pw")), keep_alive))
            .await
            .unwrap();
        assert_eq!(
            read_exact_timeout(&mut s, 4).await,
            [0x20, 0x02, 0x00, 0x00]
        );
        s
    }

    #[tokio::test]
    async fn authenticated_pub_sub_round_trip() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, present) =
            Client::connect(opts(addr, "app-1", Some(("app", "app-pw")))).await;
        assert!(!present);
        expect_event(&mut events, |e| match e {
            BrokerEvent::ClientConnected {
                username,
                client_id,
                ..
            } => Some((username, client_id)),
            _ => None,
        })
        .await;
        let ack = sub
            .subscribe("warden/devices/+/telemetry", QoS::AtLeastOnce)
            .await;
        assert_eq!(
            ack.return_codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        );

        let (mut publ, _) =
            Client::connect(opts(addr, "sensor-1", Some(("sensor", "sensor-pw")))).await;
        publ.client
            .publish(
                "warden/devices/d1/telemetry",
                QoS::AtLeastOnce,
                false,
                "21.5",
            )
            .await
            .unwrap();
        publ.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await;
        let got = sub.expect_publish().await;
        assert_eq!(got.topic, "warden/devices/d1/telemetry");
        assert_eq!(&got.payload[..], b"21.5");
        assert_eq!(got.qos, QoS::AtLeastOnce);
        assert!(!got.retain);

        publ.client
            .publish("warden/devices/d2/telemetry", QoS::AtMostOnce, false, "q0")
            .await
            .unwrap();
        let got = sub.expect_publish().await;
        assert_eq!(got.topic, "warden/devices/d2/telemetry");
        assert_eq!(got.qos, QoS::AtMostOnce);

        let stats = broker.stats();
        assert_eq!(stats.connections, 2);
        assert!(
            stats.messages_in >= 2 && stats.messages_out >= 2,
            "{stats:?}"
        );
        broker.shutdown().await;
        // The broker closed the clients' connections.
        sub.expect_error().await;
    }

    #[tokio::test]
    async fn wrong_password_is_refused() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        for (u, p) in [
            ("app", "wrong"),
            ("nobody", "app-pw"),
            ("app", "app-pw-longer"),
        ] {
            let mut c = Client::spawn(opts(addr, "bad-1", Some((u, p))));
            match c.expect_error().await {
                ConnectionError::ConnectionRefused(code) => {
                    assert_eq!(code, ConnectReturnCode::BadUserNamePassword)
                }
                other => panic!("expected refusal, got {other:?}"),
            }
            let (name, client_id) = expect_event(&mut events, |e| match e {
                BrokerEvent::AuthFailed {
                    username,
                    client_id,
                    ..
                } => Some((username, client_id)),
                _ => None,
            })
            .await;
            assert_eq!(name.as_deref(), Some(u));
            assert_eq!(client_id, "bad-1");
        }
        let stats = broker.stats();
        assert_eq!(stats.auth_failures, 3);
        assert_eq!(stats.connections_total, 0);
    }

    #[tokio::test]
    async fn a_guessing_source_is_refused_unchecked_after_its_failures() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        for i in 0..MAX_LOGIN_FAILURES_PER_WINDOW {
            let mut c = Client::spawn(opts(addr, &format!("g{i}"), Some(("app", "wrong"))));
            assert!(matches!(
                c.expect_error().await,
                ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword)
            ));
        }
        // the right password from the same source is now refused too, without being checked
        let mut c = Client::spawn(opts(addr, "late", Some(("app", "app-pw"))));
        assert!(matches!(
            c.expect_error().await,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ));
        assert_eq!(
            broker.stats().auth_failures,
            u64::from(MAX_LOGIN_FAILURES_PER_WINDOW) + 1
        );
    }

    #[tokio::test]
    async fn missing_credentials_are_refused() {
        let (broker, mut events) = start().await;
        let mut c = Client::spawn(opts(broker.local_addr(), "anon", None));
        match c.expect_error().await {
            ConnectionError::ConnectionRefused(code) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized)
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        let name = expect_event(&mut events, |e| match e {
            BrokerEvent::AuthFailed { username, .. } => Some(username),
            _ => None,
        })
        .await;
        assert_eq!(name, None);
        assert_eq!(broker.stats().auth_failures, 1);
    }

    #[tokio::test]
    async fn publish_outside_acl_disconnects_and_is_not_delivered() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "app-1", Some(("app", "app-pw")))).await;
        sub.subscribe("warden/#", QoS::AtLeastOnce).await;

        let (mut sensor, _) =
            Client::connect(opts(addr, "sensor-1", Some(("sensor", "sensor-pw")))).await;
        sensor
            .client
            .publish("warden/app/config", QoS::AtLeastOnce, false, "evil")
            .await
            .unwrap();
        let err = sensor.expect_error().await;
        assert!(
            !matches!(err, ConnectionError::ConnectionRefused(_)),
            "{err:?}"
        );
        let (username, action, topic) = expect_event(&mut events, |e| match e {
            BrokerEvent::AclDenied {
                username,
                action,
                topic,
            } => Some((username, action, topic)),
            _ => None,
        })
        .await;
        assert_eq!(
            (username.as_str(), action, topic.as_str()),
            ("sensor", "publish", "warden/app/config")
        );
        let reason = expect_event(&mut events, |e| match e {
            BrokerEvent::ClientDisconnected {
                username, reason, ..
            } if username == "sensor" => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, "acl violation");
        sub.expect_no_publish().await;
        assert_eq!(broker.stats().acl_denials, 1);
    }

    #[tokio::test]
    async fn subscribe_outside_acl_gets_failure_and_nothing() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        let (mut op, _) = Client::connect(opts(addr, "op-1", Some(("operator", "op-pw")))).await;
        op.client
            .subscribe_many([
                rumqttc::SubscribeFilter::new("warden/#".into(), QoS::AtLeastOnce),
                rumqttc::SubscribeFilter::new("warden/devices/+/status".into(), QoS::ExactlyOnce),
                rumqttc::SubscribeFilter::new(
                    "warden/devices/d1/telemetry".into(),
                    QoS::AtMostOnce,
                ),
            ])
            .await
            .unwrap();
        let ack = op.expect_suback().await;
        assert_eq!(
            ack.return_codes,
            vec![
                SubscribeReasonCode::Failure,
                // QoS 2 requests are granted QoS 1.
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
            ]
        );
        let denied = expect_event(&mut events, |e| match e {
            BrokerEvent::AclDenied {
                action: "subscribe",
                topic,
                ..
            } => Some(topic),
            _ => None,
        })
        .await;
        assert_eq!(denied, "warden/#");

        let (sensor, _) =
            Client::connect(opts(addr, "sensor-1", Some(("sensor", "sensor-pw")))).await;
        sensor
            .client
            .publish("warden/devices/d1/telemetry", QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
        op.expect_no_publish().await;
        assert_eq!(broker.stats().acl_denials, 2);
    }

    #[tokio::test]
    async fn intercept_hands_over_with_principal_and_skips_subscribers() {
        let (itx, mut irx) = mpsc::channel(8);
        let (broker, _events) = start_cfg(
            config(),
            BrokerTimeouts::default(),
            vec![("warden/cmd/#".into(), itx)],
        )
        .await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "app-1", Some(("app", "app-pw")))).await;
        sub.subscribe("warden/#", QoS::AtLeastOnce).await;

        let (mut op, _) = Client::connect(opts(addr, "op-1", Some(("operator", "op-pw")))).await;
        op.client
            .publish("warden/cmd/reboot", QoS::AtLeastOnce, true, "now")
            .await
            .unwrap();
        op.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await;
        let got = timeout(WAIT, irx.recv()).await.unwrap().unwrap();
        assert_eq!(
            got,
            InboundPublish {
                principal: "operator".into(),
                topic: "warden/cmd/reboot".into(),
                payload: Bytes::from_static(b"now"),
            }
        );
        sub.expect_no_publish().await;
        // Intercepted publishes are not retained either.
        let (mut late, _) = Client::connect(opts(addr, "app-2", Some(("app", "app-pw")))).await;
        late.subscribe("warden/cmd/#", QoS::AtLeastOnce).await;
        late.expect_no_publish().await;
    }

    #[tokio::test]
    async fn retained_message_reaches_later_subscriber_and_can_be_cleared() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        let (mut publ, _) = Client::connect(opts(addr, "app-pub", Some(("app", "app-pw")))).await;
        publ.client
            .publish("warden/app/state", QoS::AtLeastOnce, true, "on")
            .await
            .unwrap();
        publ.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await;

        let (mut sub, _) = Client::connect(opts(addr, "op-sub", Some(("operator", "op-pw")))).await;
        sub.subscribe("warden/app/#", QoS::AtLeastOnce).await;
        let got = sub.expect_publish().await;
        assert_eq!(got.topic, "warden/app/state");
        assert_eq!(&got.payload[..], b"on");
        assert!(got.retain);
        assert_eq!(got.qos, QoS::AtLeastOnce);

        // Live delivery of a retained publish to an existing subscriber has retain=0.
        publ.client
            .publish("warden/app/state", QoS::AtLeastOnce, true, "")
            .await
            .unwrap();
        let live = sub.expect_publish().await;
        assert!(!live.retain);
        assert!(live.payload.is_empty());

        let (mut late, _) = Client::connect(opts(addr, "app-late", Some(("app", "app-pw")))).await;
        late.subscribe("warden/#", QoS::AtLeastOnce).await;
        late.expect_no_publish().await;
    }

    #[tokio::test]
    async fn last_will_on_abrupt_disconnect_only() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "op-sub", Some(("operator", "op-pw")))).await;
        sub.subscribe("warden/app/+/status", QoS::AtLeastOnce).await;

        // Clean DISCONNECT: will discarded.
        let mut o = opts(addr, "app-clean", Some(("app", "app-pw")));
        o.set_last_will(LastWill::new(
            "warden/app/clean/status",
            "offline",
            QoS::AtLeastOnce,
            false,
        ));
        let (mut clean, _) = Client::connect(o).await;
        clean.client.disconnect().await.unwrap();
        clean.expect_error().await;
        sub.expect_no_publish().await;

        // Abrupt close: will published.
        let mut o = opts(addr, "app-abrupt", Some(("app", "app-pw")));
        o.set_last_will(LastWill::new(
            "warden/app/abrupt/status",
            "offline",
            QoS::AtLeastOnce,
            false,
        ));
        let (abrupt, _) = Client::connect(o).await;
        drop(abrupt); // aborts the event loop task, dropping the socket
        let got = sub.expect_publish().await;
        assert_eq!(got.topic, "warden/app/abrupt/status");
        assert_eq!(&got.payload[..], b"offline");
    }

    #[tokio::test]
    async fn last_will_outside_acl_is_not_published() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "app-sub", Some(("app", "app-pw")))).await;
        sub.subscribe("warden/#", QoS::AtLeastOnce).await;
        let mut o = opts(addr, "sensor-1", Some(("sensor", "sensor-pw")));
        o.set_last_will(LastWill::new(
            "warden/app/x",
            "boom",
            QoS::AtMostOnce,
            false,
        ));
        let (sensor, _) = Client::connect(o).await;
        drop(sensor);
        let (action, topic) = expect_event(&mut events, |e| match e {
            BrokerEvent::AclDenied { action, topic, .. } => Some((action, topic)),
            _ => None,
        })
        .await;
        assert_eq!((action, topic.as_str()), ("publish", "warden/app/x"));
        sub.expect_no_publish().await;
    }

    #[tokio::test]
    async fn malformed_bytes_close_only_that_connection() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "app-sub", Some(("app", "app-pw")))).await;
        sub.subscribe("warden/app/#", QoS::AtLeastOnce).await;

        // Garbage instead of CONNECT.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xF0, 0x00, 0xde, 0xad]).await.unwrap();
        assert!(closed_within(&mut s, WAIT).await);

        // Valid CONNECT, then an over-long remaining length.
        let mut s = raw_app(addr, "raw-1", 30).await;
        s.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
            .await
            .unwrap();
        assert!(closed_within(&mut s, WAIT).await);

        // Valid CONNECT, then a PUBLISH whose topic length exceeds the packet.
        let mut s = raw_app(addr, "raw-2", 30).await;
        s.write_all(&[0x30, 0x03, 0x00, 0x09, b'a']).await.unwrap();
        assert!(closed_within(&mut s, WAIT).await);

        // Valid CONNECT, then a packet larger than max_packet_size.
        let mut s = raw_app(addr, "raw-3", 30).await;
        s.write_all(&[0x30, 0x80, 0x80, 0x80, 0x01]).await.unwrap();
        assert!(closed_within(&mut s, WAIT).await);

        // The well-behaved client is unaffected.
        let (publ, _) = Client::connect(opts(addr, "app-pub", Some(("app", "app-pw")))).await;
        publ.client
            .publish("warden/app/ok", QoS::AtLeastOnce, false, "still here")
            .await
            .unwrap();
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], b"still here");
        assert!(broker.stats().protocol_errors >= 4);
    }

    #[tokio::test]
    async fn unsupported_protocol_levels_get_connack_1() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        // MQTT 3.1 ("MQIsdp", level 3) and MQTT 5 (level 5) CONNECT headers.
        let v31: &[u8] = &[
            0x10, 0x14, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c,
            0x00, 0x06, b'c', b'l', b'i', b'e', b'n', b't',
        ];
        let v5: &[u8] = &[
            0x10, 0x12, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00,
            0x06, b'c', b'l', b'i', b'e', b'n',
        ];
        for raw in [v31, v5] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(raw).await.unwrap();
            assert_eq!(
                read_exact_timeout(&mut s, 4).await,
                [0x20, 0x02, 0x00, 0x01]
            );
            assert!(closed_within(&mut s, WAIT).await);
        }
    }

    #[tokio::test]
    async fn silent_sockets_are_closed() {
        let timeouts = BrokerTimeouts {
            connect: Duration::from_millis(300),
            ..BrokerTimeouts::default()
        };
        let (broker, _events) = start_cfg(config(), timeouts, Vec::new()).await;
        let addr = broker.local_addr();

        // No CONNECT at all.
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut s, WAIT).await);
        assert!(started.elapsed() >= Duration::from_millis(250));

        // Keepalive 1 s, then silence: closed after ~1.5 s.
        let mut s = raw_app(addr, "ka", 1).await;
        let started = Instant::now();
        assert!(closed_within(&mut s, WAIT).await);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1300), "{waited:?}");

        // PINGREQ keeps it alive and is answered.
        let mut s = raw_app(addr, "ka2", 1).await;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            s.write_all(&[0xC0, 0x00]).await.unwrap();
            assert_eq!(read_exact_timeout(&mut s, 2).await, [0xD0, 0x00]);
        }
    }

    #[tokio::test]
    async fn same_client_id_takes_over() {
        let (broker, mut events) = start().await;
        let addr = broker.local_addr();
        let (mut first, _) = Client::connect(opts(addr, "dup", Some(("app", "app-pw")))).await;
        let (mut second, _) = Client::connect(opts(addr, "dup", Some(("app", "app-pw")))).await;
        first.expect_error().await;
        let reason = expect_event(&mut events, |e| match e {
            BrokerEvent::ClientDisconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .await;
        assert_eq!(reason, "taken over");
        second.subscribe("warden/app/#", QoS::AtLeastOnce).await;
        second
            .client
            .publish("warden/app/x", QoS::AtLeastOnce, false, "hi")
            .await
            .unwrap();
        assert_eq!(&second.expect_publish().await.payload[..], b"hi");
        assert_eq!(broker.stats().connections, 1);
    }

    #[tokio::test]
    async fn qos2_publish_is_delivered_once() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        let (mut sub, _) = Client::connect(opts(addr, "op-sub", Some(("operator", "op-pw")))).await;
        sub.subscribe("warden/app/#", QoS::ExactlyOnce).await;

        // rumqttc client: full PUBREC/PUBREL/PUBCOMP flow.
        let (mut publ, _) = Client::connect(opts(addr, "app-pub", Some(("app", "app-pw")))).await;
        publ.client
            .publish("warden/app/q2", QoS::ExactlyOnce, false, "once")
            .await
            .unwrap();
        publ.expect("PUBCOMP", |p| matches!(p, Packet::PubComp(_)).then_some(()))
            .await;
        let got = sub.expect_publish().await;
        assert_eq!(&got.payload[..], b"once");
        assert_eq!(got.qos, QoS::AtLeastOnce);

        // Raw client retransmits the same QoS 2 packet before PUBREL.
        let mut s = raw_app(addr, "raw-q2", 30).await;
        let mut p = Publish::new("warden/app/q2", QoS::ExactlyOnce, "dup");
        p.pkid = 7;
        let mut buf = BytesMut::new();
        Packet::Publish(p.clone())
            .write(&mut buf, usize::MAX)
            .unwrap();
        s.write_all(&buf).await.unwrap();
        assert_eq!(
            read_exact_timeout(&mut s, 4).await,
            [0x50, 0x02, 0x00, 0x07]
        );
        p.dup = true;
        buf.clear();
        Packet::Publish(p).write(&mut buf, usize::MAX).unwrap();
        s.write_all(&buf).await.unwrap();
        assert_eq!(
            read_exact_timeout(&mut s, 4).await,
            [0x50, 0x02, 0x00, 0x07]
        );
        s.write_all(&[0x62, 0x02, 0x00, 0x07]).await.unwrap();
        assert_eq!(
            read_exact_timeout(&mut s, 4).await,
            [0x70, 0x02, 0x00, 0x07]
        );
        assert_eq!(&sub.expect_publish().await.payload[..], b"dup");
        sub.expect_no_publish().await;
    }

    #[tokio::test]
    async fn max_connections_is_enforced() {
        let cfg = BrokerConfig {
            max_connections: 1,
            ..config()
        };
        let (broker, _events) = start_cfg(cfg, BrokerTimeouts::default(), Vec::new()).await;
        let addr = broker.local_addr();
        let (_first, _) = Client::connect(opts(addr, "one", Some(("app", "app-pw")))).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s
            .write_all(&connect_bytes("two", Some(("app", "app-pw")), 30))
            .await;
        assert!(closed_within(&mut s, WAIT).await);
        assert_eq!(broker.stats().connections_refused, 1);
    }

    #[tokio::test]
    async fn one_source_cannot_take_every_slot() {
        let cfg = BrokerConfig {
            max_connections: 10,
            max_connections_per_source: 2,
            ..config()
        };
        let (broker, _events) = start_cfg(cfg, BrokerTimeouts::default(), Vec::new()).await;
        let addr = broker.local_addr();
        // two stalled sockets from 127.0.0.1 hold its share…
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c
            .write_all(&connect_bytes("three", Some(("app", "app-pw")), 30))
            .await;
        assert!(closed_within(&mut c, WAIT).await);
        assert_eq!(broker.stats().connections_refused, 1);
        // …while another source address still gets in
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut d = sock.connect(addr).await.unwrap();
        d.write_all(&connect_bytes("four", Some(("app", "app-pw")), 30))
            .await
            .unwrap();
        let mut ack = [0u8; 4];
        timeout(WAIT, d.read_exact(&mut ack))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ack[0], 0x20, "CONNACK");
        assert_eq!(broker.stats().connections_refused, 1);
    }

    #[tokio::test]
    async fn slow_subscriber_drops_without_blocking_others() {
        let cfg = BrokerConfig {
            outbound_queue: 4,
            ..config()
        };
        let (broker, mut events) = start_cfg(cfg, BrokerTimeouts::default(), Vec::new()).await;
        let addr = broker.local_addr();

        // A subscriber that never reads, with a tiny receive buffer.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut slow = sock.connect(addr).await.unwrap();
        slow.write_all(&connect_bytes("slow", Some(("operator", "op-pw")), 0))
            .await
            .unwrap();
        assert_eq!(
            read_exact_timeout(&mut slow, 4).await,
            [0x20, 0x02, 0x00, 0x00]
        );
        let mut sub = BytesMut::new();
        let mut req = Subscribe::new("warden/app/#", QoS::AtMostOnce);
        req.pkid = 1;
        Packet::Subscribe(req).write(&mut sub, usize::MAX).unwrap();
        slow.write_all(&sub).await.unwrap();
        assert_eq!(
            read_exact_timeout(&mut slow, 5).await,
            [0x90, 0x03, 0x00, 0x01, 0x00]
        );

        let mut o = opts(addr, "fast", Some(("app", "app-pw")));
        o.set_max_packet_size(128 * 1024, 128 * 1024);
        let (mut fast, _) = Client::connect(o).await;
        fast.subscribe("warden/app/#", QoS::AtMostOnce).await;

        let mut o = opts(addr, "pub", Some(("app", "app-pw")));
        o.set_max_packet_size(128 * 1024, 128 * 1024);
        let (publ, _) = Client::connect(o).await;
        let payload = vec![0x55u8; 64 * 1024];
        let count = timeout(Duration::from_secs(20), async {
            for _ in 0..400 {
                publ.client
                    .publish("warden/app/bulk", QoS::AtMostOnce, false, payload.clone())
                    .await
                    .unwrap();
            }
            expect_event(&mut events, |e| match e {
                BrokerEvent::Dropped { username, count } if username == "operator" => Some(count),
                _ => None,
            })
            .await
        })
        .await
        .expect("no Dropped event");
        assert!(count >= 1);
        assert!(broker.stats().dropped >= 1);
        // The other subscriber still gets traffic.
        let got = fast.expect_publish().await;
        assert_eq!(got.topic, "warden/app/bulk");
    }

    #[tokio::test]
    async fn persistent_session_keeps_subscriptions_and_queues_qos1() {
        let (broker, _events) = start().await;
        let addr = broker.local_addr();
        let mut o = opts(addr, "persist", Some(("operator", "op-pw")));
        o.set_clean_session(false);
        let (mut c, present) = Client::connect(o.clone()).await;
        assert!(!present);
        c.subscribe("warden/app/#", QoS::AtLeastOnce).await;
        c.client.disconnect().await.unwrap();
        c.expect_error().await;
        drop(c);

        let (publ, _) = Client::connect(opts(addr, "app-pub", Some(("app", "app-pw")))).await;
        publ.client
            .publish("warden/app/while-away", QoS::AtLeastOnce, false, "queued")
            .await
            .unwrap();
        publ.client
            .publish(
                "warden/app/while-away",
                QoS::AtMostOnce,
                false,
                "qos0 not kept",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (mut c, present) = Client::connect(o).await;
        assert!(present);
        let got = c.expect_publish().await;
        assert_eq!(&got.payload[..], b"queued");
        c.expect_no_publish().await;
        // A different user with the same client id does not get that session.
        let mut other = opts(addr, "persist", Some(("app", "app-pw")));
        other.set_clean_session(false);
        let (_other, present) = Client::connect(other).await;
        assert!(!present);
    }

    #[tokio::test]
    async fn invalid_config_is_rejected() {
        let (tx, _rx) = mpsc::channel(1);
        let bad = [
            BrokerConfig {
                outbound_queue: 0,
                ..config()
            },
            BrokerConfig {
                max_connections: 0,
                ..config()
            },
            BrokerConfig {
                users: vec![user("a", "", &[], &[])],
                ..config()
            },
            BrokerConfig {
                users: vec![user("a", "p", &["a/#/b"], &[])],
                ..config()
            },
            BrokerConfig {
                users: vec![user("a", "p", &[], &[]), user("a", "q", &[], &[])],
                ..config()
            },
        ];
        for cfg in bad {
            let err = Broker::start(cfg, Vec::new(), tx.clone())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn topic_matching() {
        let yes = [
            ("a/b/c", "a/b/c"),
            ("a/+/c", "a/b/c"),
            ("a/+/c", "a//c"),
            ("+", "a"),
            ("+/+", "/a"),
            ("/+", "/a"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("a/#", "a/"),
            ("#", "a/b"),
            ("#", "/"),
            ("+/#", "a"),
            ("$SYS/#", "$SYS/broker/load"),
            ("$SYS/+/load", "$SYS/broker/load"),
            ("a/$x", "a/$x"),
            ("a/+", "a/$x"),
        ];
        for (f, t) in yes {
            assert!(topic_matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b/c", "a/b"),
            ("a/b", "a/b/c"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("+", "/a"),
            ("+", ""),
            ("a/b", "A/b"),
            ("#", "$SYS/broker"),
            ("#", "$SYS"),
            ("+/broker", "$SYS/broker"),
            ("+/#", "$SYS/x"),
            ("$SYS/#", "SYS/x"),
            // invalid filters / topics never match
            ("a/#/b", "a/x/b"),
            ("a+", "a+"),
            ("a/b#", "a/b#"),
            ("", ""),
            ("#", "a/+"),
            ("a/#", "a/#"),
        ];
        for (f, t) in no {
            assert!(!topic_matches(f, t), "{f} should not match {t}");
        }
    }

    #[test]
    fn acl_filter_coverage() {
        let covered = [
            ("warden/#", "warden/devices/+/status"),
            ("warden/#", "warden/#"),
            ("warden/#", "warden"),
            ("warden/#", "warden/a/b/c"),
            ("warden/devices/+/status", "warden/devices/+/status"),
            ("warden/devices/+/status", "warden/devices/d1/status"),
            ("#", "#"),
            ("#", "+/x"),
            ("#", "a/b"),
            ("+/#", "+/+/#"),
            ("+", "+"),
            ("+", "abc"),
            ("a/+/#", "a/b/#"),
            ("$SYS/#", "$SYS/+/load"),
        ];
        for (a, r) in covered {
            assert!(filter_covers(a, r), "{a} should cover {r}");
        }
        let not_covered = [
            ("warden/devices/+/status", "warden/#"),
            ("warden/devices/+/status", "warden/devices/#"),
            ("warden/devices/+/status", "warden/devices/+/+"),
            ("warden/devices/+/status", "warden/+/d1/status"),
            ("warden/devices/d1/status", "warden/devices/+/status"),
            ("warden/+", "warden/#"),
            ("warden/+", "warden"),
            ("a/+/#", "a/#"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("#", "$SYS/#"),
            ("#", "$SYS"),
            ("+/#", "$SYS/x"),
            ("warden", "warden/#"),
            // invalid filters
            ("a/#/b", "a/x/b"),
            ("#", "a/#/b"),
            ("#", ""),
        ];
        for (a, r) in not_covered {
            assert!(!filter_covers(a, r), "{a} should not cover {r}");
        }
        // Coverage agrees with matching on concrete topics.
        let u = user("u", "p", &[], &["warden/#", "fleet/+/status"]);
        assert!(u.may_subscribe("warden/devices/+/status"));
        assert!(u.may_subscribe("fleet/d1/status"));
        assert!(!u.may_subscribe("fleet/#"));
        assert!(!u.may_subscribe("#"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }
}
