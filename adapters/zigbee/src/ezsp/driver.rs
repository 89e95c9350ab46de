//! [`EzspCoordinator`]: an EmberZNet NCP driven over EZSP v13 / ASH.
//!
//! One background task owns the byte stream. It runs the [`Ash`] state machine with real timers,
//! negotiates the EZSP version (legacy `version(13)`, then the extended header), sends one EZSP
//! command at a time (EZSP over UART allows a single outstanding command) and matches responses by
//! sequence number. Callbacks go to whoever waits for them — `messageSentHandler` by message tag,
//! ZDO responses by (NWK, cluster, ZDO sequence), `stackStatusHandler` to `start` — or become
//! [`CoordinatorEvent`]s.
//!
//! Every public method takes `&self` and is cancel-safe: dropping a call's future removes its
//! waiters; a command already handed to the task still completes on the NCP and its response is
//! consumed and discarded.
//!
//! Install codes on EZSP: with `require_install_codes(true)` the trust-centre policy becomes
//! `ALLOW_JOINS | JOINS_USE_INSTALL_CODE_KEY`: the NCP admits a joiner only if its transient key
//! table holds a key for that EUI-64 (added by `add_install_code` via `importTransientKey`), so
//! the well-known global link key lets nobody else in. With `false` it is
//! `ALLOW_JOINS | ALLOW_UNSECURED_REJOINS` (bellows's default while permitting).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::ash::{self, Ash, AshEvent, Decoder, Frame};
use super::frame::{self as f, ApsFrame, NetworkParameters, Received, VersionResponse, id};
use crate::coordinator::{
    CoordinatorError, CoordinatorEvent, CoordinatorInfo, Ieee, Incoming, NetworkParams,
    NodeDescriptor, SendStatus, SimpleDescriptor, Stack, StartOutcome,
};

/// Capacity of the event channel; events beyond it are dropped and counted.
pub const EVENT_CAPACITY: usize = 256;
/// How long the task waits for the response to one EZSP command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(6);
/// ZDO request → response.
pub const ZDO_TIMEOUT: Duration = Duration::from_secs(5);
/// sendUnicast → messageSentHandler.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// networkInit/formNetwork/leaveNetwork → stackStatusHandler.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive failed resets before the driver gives up and closes.
const MAX_RESETS: u32 = 3;

type Reply = oneshot::Sender<Result<Vec<u8>, CoordinatorError>>;

enum Request {
    Command {
        frame_id: u16,
        name: &'static str,
        params: Vec<u8>,
        reply: Reply,
    },
    /// Permit-join opened (or closed) for this many seconds: emit the event, schedule the close.
    Permit(u8),
}

type ZdoKey = (u16, u16, u8);

#[derive(Default)]
struct Waiters {
    sent: HashMap<u8, oneshot::Sender<u8>>,
    zdo: HashMap<ZdoKey, oneshot::Sender<Vec<u8>>>,
    closed: bool,
}

struct Shared {
    waiters: Mutex<Waiters>,
    /// `Some(status)` per stackStatusHandler; `None` when the link closed.
    stack: broadcast::Sender<Option<u8>>,
    version: Mutex<Option<VersionResponse>>,
    dropped_events: Arc<AtomicU64>,
    require_install_codes: AtomicBool,
    next_tag: AtomicU8,
    next_tsn: AtomicU8,
}

impl Shared {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A poisoned lock only means another thread panicked mid-update of plain maps.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes a waiter when the waiting future completes or is dropped.
enum WaiterKey {
    Sent(u8),
    Zdo(ZdoKey),
}

struct WaiterGuard<'a> {
    shared: &'a Shared,
    key: WaiterKey,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut w = self.shared.waiters();
        match self.key {
            WaiterKey::Sent(tag) => {
                w.sent.remove(&tag);
            }
            WaiterKey::Zdo(k) => {
                w.zdo.remove(&k);
            }
        }
    }
}

/// A coordinator running EmberZNet (EZSP v13 over ASH).
pub struct EzspCoordinator {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl EzspCoordinator {
    /// Start the driver task on `io` (it resets the NCP and negotiates EZSP right away).
    /// Must be called inside a tokio runtime.
    pub fn new<T>(io: T) -> (Self, mpsc::Receiver<CoordinatorEvent>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (req_tx, req_rx) = mpsc::channel(32);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
        let (stack, _) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            waiters: Mutex::new(Waiters::default()),
            stack,
            version: Mutex::new(None),
            dropped_events: Arc::new(AtomicU64::new(0)),
            require_install_codes: AtomicBool::new(false),
            next_tag: AtomicU8::new(1),
            next_tsn: AtomicU8::new(1),
        });
        let task = Task {
            ash: Ash::new(),
            phase: Phase::Resetting,
            seq: 0,
            in_flight: None,
            events: crate::coordinator::EventSender::new(ev_tx, shared.dropped_events.clone()),
            shared: shared.clone(),
            permit_close: None,
            failed_resets: 0,
            fatal: None,
        };
        tokio::spawn(task.run(io, req_rx));
        (
            Self {
                requests: req_tx,
                shared,
            },
            ev_rx,
        )
    }

    /// Stack detection: send CANCEL + RST and report whether a valid RSTACK comes back in time.
    pub async fn probe<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T, timeout: Duration) -> bool {
        let mut out = vec![ash::CANCEL];
        out.extend(ash::encode(&Frame::Rst));
        let attempt = async {
            io.write_all(&out).await?;
            io.flush().await?;
            let mut dec = Decoder::new();
            let mut buf = [0u8; 256];
            loop {
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<bool, std::io::Error>(false);
                }
                for res in dec.feed(buf.get(..n).unwrap_or_default()) {
                    if let Ok(Frame::RstAck { version, .. }) = res
                        && version == ash::ASH_VERSION
                    {
                        return Ok(true);
                    }
                }
            }
        };
        matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
    }

    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped_events.load(Ordering::Relaxed)
    }

    async fn call(
        &self,
        frame_id: u16,
        name: &'static str,
        params: Vec<u8>,
    ) -> Result<Vec<u8>, CoordinatorError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request::Command {
                frame_id,
                name,
                params,
                reply,
            })
            .await
            .map_err(|_| CoordinatorError::Closed)?;
        // The task bounds each command by COMMAND_TIMEOUT once sent; this bounds the wait for
        // the link to come up (resets, version negotiation) as well.
        let limit = COMMAND_TIMEOUT * 4;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(CoordinatorError::Closed),
            Err(_) => Err(CoordinatorError::Timeout(limit)),
        }
    }

    async fn call_status(
        &self,
        frame_id: u16,
        name: &'static str,
        params: Vec<u8>,
    ) -> Result<(), CoordinatorError> {
        let p = self.call(frame_id, name, params).await?;
        match f::parse_status(&p, name).map_err(malformed)? {
            f::status::SUCCESS => Ok(()),
            status => Err(CoordinatorError::Status {
                request: name,
                status,
            }),
        }
    }

    /// Version and EUI-64 of the NCP.
    pub async fn info(&self) -> Result<CoordinatorInfo, CoordinatorError> {
        let p = self.call(id::GET_EUI64, "getEui64", Vec::new()).await?;
        let ieee = f::parse_eui64(&p).map_err(malformed)?;
        let v = (*self
            .shared
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
        .ok_or(CoordinatorError::Closed)?;
        Ok(CoordinatorInfo {
            stack: Stack::Ezsp,
            ieee,
            firmware: format!(
                "EmberZNet EZSP v{} (stack {})",
                v.protocol,
                v.stack_string()
            ),
        })
    }

    async fn wait_stack(
        &self,
        rx: &mut broadcast::Receiver<Option<u8>>,
        want: &[u8],
    ) -> Result<u8, CoordinatorError> {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(Some(s)) if want.contains(&s) => return Ok(s),
                    Ok(Some(s)) => tracing::debug!(status = s, "EZSP stack status"),
                    Ok(None) | Err(broadcast::error::RecvError::Closed) => {
                        return Err(CoordinatorError::Closed);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                }
            }
        };
        tokio::time::timeout(NETWORK_TIMEOUT, wait)
            .await
            .map_err(|_| CoordinatorError::Timeout(NETWORK_TIMEOUT))?
    }

    /// Bring the network up: resume it if the NCP holds `params`, otherwise (re)form it.
    pub async fn start(&self, params: &NetworkParams) -> Result<StartOutcome, CoordinatorError> {
        for (cfg, value) in [
            (f::config::STACK_PROFILE, 2u16),
            (f::config::SECURITY_LEVEL, 5),
        ] {
            let mut p = vec![cfg];
            p.extend_from_slice(&value.to_le_bytes());
            let r = self
                .call(id::SET_CONFIGURATION_VALUE, "setConfigurationValue", p)
                .await?;
            // A running NCP refuses configuration changes after boot; that is not an error here.
            tracing::debug!(config = cfg, status = ?r.first(), "setConfigurationValue");
        }
        // Endpoint 1 (Home Automation) so the NCP delivers HA frames to the host.
        let ep = vec![1, 0x04, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00];
        let r = self.call(id::ADD_ENDPOINT, "addEndpoint", ep).await?;
        tracing::debug!(status = ?r.first(), "addEndpoint");

        let mut rx = self.shared.stack.subscribe();
        let p = self
            .call(id::NETWORK_INIT, "networkInit", vec![0, 0])
            .await?;
        let init = f::parse_status(&p, "networkInit").map_err(malformed)?;
        if init == f::status::SUCCESS {
            let up = self
                .wait_stack(&mut rx, &[f::status::NETWORK_UP, f::status::NETWORK_DOWN])
                .await?;
            if up == f::status::NETWORK_UP {
                let p = self
                    .call(
                        id::GET_NETWORK_PARAMETERS,
                        "getNetworkParameters",
                        Vec::new(),
                    )
                    .await?;
                let (status, node_type, cur) =
                    f::parse_get_network_parameters(&p).map_err(malformed)?;
                if status == 0
                    && node_type == 0x01
                    && cur.pan_id == params.pan_id
                    && cur.extended_pan_id == params.extended_pan_id
                    && cur.channel == params.channel
                {
                    return Ok(StartOutcome::Resumed);
                }
                tracing::info!("EZSP: the NCP holds another network; leaving it to re-form");
                let mut rx = self.shared.stack.subscribe();
                self.call_status(id::LEAVE_NETWORK, "leaveNetwork", Vec::new())
                    .await?;
                self.wait_stack(&mut rx, &[f::status::NETWORK_DOWN]).await?;
            }
        }
        let bitmask = f::security::HAVE_PRECONFIGURED_KEY
            | f::security::REQUIRE_ENCRYPTED_KEY
            | f::security::TRUST_CENTER_GLOBAL_LINK_KEY
            | f::security::HAVE_NETWORK_KEY;
        self.call_status(
            id::SET_INITIAL_SECURITY_STATE,
            "setInitialSecurityState",
            f::initial_security_state(bitmask, &f::GLOBAL_LINK_KEY, &params.network_key),
        )
        .await?;
        let np = NetworkParameters {
            extended_pan_id: params.extended_pan_id,
            pan_id: params.pan_id,
            tx_power: 8,
            channel: params.channel,
            join_method: 0,
            nwk_manager_id: 0,
            nwk_update_id: 0,
            channels: 1u32.checked_shl(u32::from(params.channel)).unwrap_or(0),
        };
        let mut out = Vec::with_capacity(20);
        np.encode(&mut out);
        let mut rx = self.shared.stack.subscribe();
        self.call_status(id::FORM_NETWORK, "formNetwork", out)
            .await?;
        self.wait_stack(&mut rx, &[f::status::NETWORK_UP]).await?;
        Ok(StartOutcome::Formed)
    }

    fn tc_decision(&self) -> u8 {
        if self.shared.require_install_codes.load(Ordering::Relaxed) {
            f::policy::ALLOW_JOINS | f::policy::JOINS_USE_INSTALL_CODE_KEY
        } else {
            f::policy::ALLOW_JOINS | f::policy::ALLOW_UNSECURED_REJOINS
        }
    }

    async fn set_tc_policy(&self) -> Result<(), CoordinatorError> {
        let p = vec![f::policy::TRUST_CENTER_POLICY, self.tc_decision()];
        self.call_status(id::SET_POLICY, "setPolicy", p).await
    }

    /// Open (seconds > 0) or close (0) the network for joining.
    pub async fn permit_join(&self, seconds: u8) -> Result<(), CoordinatorError> {
        if seconds > 0 {
            self.set_tc_policy().await?;
        }
        self.call_status(id::PERMIT_JOINING, "permitJoining", vec![seconds])
            .await?;
        self.requests
            .send(Request::Permit(seconds))
            .await
            .map_err(|_| CoordinatorError::Closed)
    }

    /// When true, only devices whose install code was added may join (see the module docs).
    pub async fn require_install_codes(&self, on: bool) -> Result<(), CoordinatorError> {
        self.shared
            .require_install_codes
            .store(on, Ordering::Relaxed);
        self.set_tc_policy().await
    }

    /// Let `ieee` join with the link key derived from its install code.
    pub async fn add_install_code(&self, ieee: Ieee, code: &[u8]) -> Result<(), CoordinatorError> {
        let key = crate::install_code::link_key(code)
            .map_err(|e| CoordinatorError::Malformed(format!("install code: {e}")))?;
        let p = self
            .call(
                id::IMPORT_TRANSIENT_KEY,
                "importTransientKey",
                f::import_transient_key(ieee, &key),
            )
            .await?;
        match f::parse_sl_status(&p, "importTransientKey").map_err(malformed)? {
            0 => Ok(()),
            s => Err(CoordinatorError::Status {
                request: "importTransientKey",
                status: u8::try_from(s).unwrap_or(0xFF),
            }),
        }
    }

    fn tag(&self) -> u8 {
        let w = self.shared.waiters();
        let mut tag = self.shared.next_tag.fetch_add(1, Ordering::Relaxed);
        while w.sent.contains_key(&tag) {
            tag = self.shared.next_tag.fetch_add(1, Ordering::Relaxed);
        }
        tag
    }

    async fn send_unicast(
        &self,
        nwk: u16,
        aps: &ApsFrame,
        tag: u8,
        data: &[u8],
    ) -> Result<u8, CoordinatorError> {
        let params = f::send_unicast(nwk, aps, tag, data).map_err(malformed)?;
        let p = self.call(id::SEND_UNICAST, "sendUnicast", params).await?;
        Ok(f::parse_send_unicast(&p).map_err(malformed)?.0)
    }

    /// sendUnicast, then wait for its messageSentHandler.
    async fn unicast_and_wait(
        &self,
        nwk: u16,
        aps: ApsFrame,
        data: &[u8],
    ) -> Result<SendStatus, CoordinatorError> {
        let tag = self.tag();
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.shared.waiters();
            if w.closed {
                return Err(CoordinatorError::Closed);
            }
            w.sent.insert(tag, tx);
        }
        let _guard = WaiterGuard {
            shared: &self.shared,
            key: WaiterKey::Sent(tag),
        };
        let status = self.send_unicast(nwk, &aps, tag, data).await?;
        if status != f::status::SUCCESS {
            return Ok(SendStatus::Failed(status));
        }
        match tokio::time::timeout(SEND_TIMEOUT, rx).await {
            Ok(Ok(0)) => Ok(SendStatus::Delivered),
            Ok(Ok(s)) => Ok(SendStatus::Failed(s)),
            Ok(Err(_)) => Err(CoordinatorError::Closed),
            Err(_) => Err(CoordinatorError::Timeout(SEND_TIMEOUT)),
        }
    }

    /// An application frame to a device (Home Automation profile), acknowledged at APS level.
    pub async fn send(
        &self,
        nwk: u16,
        src_ep: u8,
        dst_ep: u8,
        cluster: u16,
        data: &[u8],
    ) -> Result<SendStatus, CoordinatorError> {
        let aps = ApsFrame {
            profile: 0x0104,
            cluster,
            src_ep,
            dst_ep,
            options: f::aps_option::RETRY | f::aps_option::ENABLE_ROUTE_DISCOVERY,
            group: 0,
            sequence: 0,
        };
        self.unicast_and_wait(nwk, aps, data).await
    }

    fn zdo_aps(cluster: u16) -> ApsFrame {
        ApsFrame {
            profile: 0,
            cluster,
            src_ep: 0,
            dst_ep: 0,
            options: f::aps_option::RETRY | f::aps_option::ENABLE_ROUTE_DISCOVERY,
            group: 0,
            sequence: 0,
        }
    }

    /// A ZDO request to `nwk`; returns the response payload (from its TSN on).
    async fn zdo(&self, nwk: u16, cluster: u16, body: &[u8]) -> Result<Vec<u8>, CoordinatorError> {
        let tsn = self.shared.next_tsn.fetch_add(1, Ordering::Relaxed);
        let key = (nwk, cluster | f::zdo::RESPONSE, tsn);
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.shared.waiters();
            if w.closed {
                return Err(CoordinatorError::Closed);
            }
            w.zdo.insert(key, tx);
        }
        let _guard = WaiterGuard {
            shared: &self.shared,
            key: WaiterKey::Zdo(key),
        };
        let mut payload = vec![tsn];
        payload.extend_from_slice(body);
        let tag = self.tag();
        let status = self
            .send_unicast(nwk, &Self::zdo_aps(cluster), tag, &payload)
            .await?;
        if status != f::status::SUCCESS {
            return Err(CoordinatorError::Status {
                request: "sendUnicast (ZDO)",
                status,
            });
        }
        match tokio::time::timeout(ZDO_TIMEOUT, rx).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(CoordinatorError::Closed),
            Err(_) => Err(CoordinatorError::Timeout(ZDO_TIMEOUT)),
        }
    }

    pub async fn node_descriptor(&self, nwk: u16) -> Result<NodeDescriptor, CoordinatorError> {
        let p = self
            .zdo(nwk, f::zdo::NODE_DESC_REQ, &nwk.to_le_bytes())
            .await?;
        match f::parse_node_desc_rsp(&p).map_err(malformed)? {
            (0, Some(d)) => Ok(d),
            (status, _) => Err(CoordinatorError::Status {
                request: "Node_Desc_req",
                status,
            }),
        }
    }

    /// Binds a device's cluster on `endpoint` to the coordinator's endpoint 1 (ZDO Bind_req).
    pub async fn bind(
        &self,
        nwk: u16,
        ieee: Ieee,
        endpoint: u8,
        cluster: u16,
        coordinator: Ieee,
    ) -> Result<(), CoordinatorError> {
        let body = f::bind_req(ieee, endpoint, cluster, coordinator, 1);
        let p = self.zdo(nwk, f::zdo::BIND_REQ, &body).await?;
        match f::parse_bind_rsp(&p).map_err(malformed)? {
            0 => Ok(()),
            status => Err(CoordinatorError::Status {
                request: "Bind_req",
                status,
            }),
        }
    }

    pub async fn active_endpoints(&self, nwk: u16) -> Result<Vec<u8>, CoordinatorError> {
        let p = self
            .zdo(nwk, f::zdo::ACTIVE_EP_REQ, &nwk.to_le_bytes())
            .await?;
        match f::parse_active_ep_rsp(&p).map_err(malformed)? {
            (0, eps) => Ok(eps),
            (status, _) => Err(CoordinatorError::Status {
                request: "Active_EP_req",
                status,
            }),
        }
    }

    pub async fn simple_descriptor(
        &self,
        nwk: u16,
        endpoint: u8,
    ) -> Result<SimpleDescriptor, CoordinatorError> {
        let mut body = nwk.to_le_bytes().to_vec();
        body.push(endpoint);
        let p = self.zdo(nwk, f::zdo::SIMPLE_DESC_REQ, &body).await?;
        match f::parse_simple_desc_rsp(&p).map_err(malformed)? {
            (0, Some(d)) => Ok(d),
            (status, _) => Err(CoordinatorError::Status {
                request: "Simple_Desc_req",
                status,
            }),
        }
    }

    /// Ask a device to leave (ZDO Mgmt_Leave_req, no rejoin); Ok once the APS frame was acked.
    pub async fn leave(&self, ieee: Ieee, nwk: u16) -> Result<(), CoordinatorError> {
        let tsn = self.shared.next_tsn.fetch_add(1, Ordering::Relaxed);
        let payload = f::mgmt_leave_req(tsn, ieee, false);
        match self
            .unicast_and_wait(nwk, Self::zdo_aps(f::zdo::MGMT_LEAVE_REQ), &payload)
            .await?
        {
            SendStatus::Delivered => Ok(()),
            SendStatus::Failed(status) => Err(CoordinatorError::Status {
                request: "Mgmt_Leave_req",
                status,
            }),
        }
    }
}

fn malformed(e: f::FrameError) -> CoordinatorError {
    CoordinatorError::Malformed(e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resetting,
    LegacyVersion(u8),
    ExtendedVersion(u8),
    Ready,
}

struct InFlight {
    seq: u8,
    frame_id: u16,
    name: &'static str,
    reply: Reply,
    deadline: Instant,
}

struct Task {
    ash: Ash,
    phase: Phase,
    seq: u8,
    in_flight: Option<InFlight>,
    events: crate::coordinator::EventSender,
    shared: Arc<Shared>,
    permit_close: Option<Instant>,
    failed_resets: u32,
    /// Set when the NCP cannot be used (wrong protocol version): every request fails with it.
    fatal: Option<&'static str>,
}

enum Exit {
    Eof,
    Io(std::io::Error),
    Dropped,
    GaveUp,
}

impl Task {
    async fn run<T>(mut self, mut io: T, mut requests: mpsc::Receiver<Request>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.ash.reset(Instant::now());
        let exit = self.run_loop(&mut io, &mut requests).await;
        match &exit {
            Exit::Eof => tracing::warn!("EZSP: serial stream closed"),
            Exit::Io(e) => tracing::warn!(error = %e, "EZSP: serial I/O error"),
            Exit::Dropped => tracing::debug!("EZSP: driver dropped"),
            Exit::GaveUp => tracing::warn!("EZSP: NCP does not answer resets; closing"),
        }
        if let Some(f) = self.in_flight.take() {
            let _ = f.reply.send(Err(CoordinatorError::Closed));
        }
        requests.close();
        while let Ok(r) = requests.try_recv() {
            if let Request::Command { reply, .. } = r {
                let _ = reply.send(Err(CoordinatorError::Closed));
            }
        }
        {
            let mut w = self.shared.waiters();
            w.closed = true;
            w.sent.clear();
            w.zdo.clear();
        }
        let _ = self.shared.stack.send(None);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.ash.deadline(),
            self.in_flight.as_ref().map(|f| f.deadline),
            self.permit_close,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn run_loop<T>(&mut self, io: &mut T, requests: &mut mpsc::Receiver<Request>) -> Exit
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = [0u8; 512];
        loop {
            if let Err(e) = self.flush(io).await {
                return Exit::Io(e);
            }
            let can_send = self.phase == Phase::Ready && self.in_flight.is_none();
            let deadline = self.next_deadline();
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) => return Exit::Eof,
                    Ok(n) => {
                        self.ash.receive(buf.get(..n).unwrap_or_default(), Instant::now());
                    }
                    Err(e) => return Exit::Io(e),
                },
                req = requests.recv(), if can_send || self.fatal.is_some() => match req {
                    None => return Exit::Dropped,
                    Some(r) => self.on_request(r),
                },
                () = sleep_until(deadline) => {
                    let now = Instant::now();
                    self.ash.on_timer(now);
                    if self.in_flight.as_ref().is_some_and(|f| now >= f.deadline)
                        && let Some(f) = self.in_flight.take() {
                            tracing::warn!(command = f.name, "EZSP: no response");
                            let _ = f.reply.send(Err(CoordinatorError::Timeout(COMMAND_TIMEOUT)));
                        }
                    if self.permit_close.is_some_and(|t| now >= t) {
                        self.permit_close = None;
                        self.emit(CoordinatorEvent::PermitJoin { seconds: 0 });
                    }
                }
            }
            while let Some(ev) = self.ash.poll_event() {
                if let Some(exit) = self.on_ash_event(ev) {
                    return exit;
                }
            }
        }
    }

    async fn flush<T: AsyncWrite + Unpin>(&mut self, io: &mut T) -> std::io::Result<()> {
        let out = self.ash.take_output();
        if !out.is_empty() {
            io.write_all(&out).await?;
            io.flush().await?;
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u8 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    fn on_request(&mut self, r: Request) {
        match r {
            Request::Permit(seconds) => {
                self.permit_close =
                    (seconds > 0).then(|| Instant::now() + Duration::from_secs(u64::from(seconds)));
                self.emit(CoordinatorEvent::PermitJoin { seconds });
            }
            Request::Command {
                frame_id,
                name,
                params,
                reply,
            } => {
                if let Some(why) = self.fatal {
                    let _ = reply.send(Err(CoordinatorError::Unsupported(why)));
                    return;
                }
                let seq = self.next_seq();
                tracing::trace!(command = name, seq, "EZSP ->");
                self.ash
                    .send(f::command(seq, frame_id, &params), Instant::now());
                self.in_flight = Some(InFlight {
                    seq,
                    frame_id,
                    name,
                    reply,
                    deadline: Instant::now() + COMMAND_TIMEOUT,
                });
            }
        }
    }

    fn on_ash_event(&mut self, ev: AshEvent) -> Option<Exit> {
        match ev {
            AshEvent::Connected { reset_code } => {
                tracing::debug!(reset_code, "ASH connected; negotiating EZSP version");
                self.failed_resets = 0;
                let seq = self.next_seq();
                self.ash.send(
                    f::legacy_version_command(seq, f::DESIRED_VERSION),
                    Instant::now(),
                );
                self.phase = Phase::LegacyVersion(seq);
            }
            AshEvent::Data(payload) => self.on_ezsp(&payload),
            AshEvent::Failed(why) => {
                tracing::warn!(?why, "ASH link failed; resetting the NCP");
                if let Some(f) = self.in_flight.take() {
                    let _ =
                        f.reply
                            .send(Err(CoordinatorError::Io(std::io::Error::other(format!(
                                "ASH link failed: {why:?}"
                            )))));
                }
                self.failed_resets += 1;
                if self.failed_resets > MAX_RESETS {
                    return Some(Exit::GaveUp);
                }
                self.phase = Phase::Resetting;
                self.ash.reset(Instant::now());
            }
        }
        None
    }

    fn on_ezsp(&mut self, payload: &[u8]) {
        let extended = !matches!(self.phase, Phase::LegacyVersion(_));
        let frame = match Received::parse(payload, extended) {
            Ok(fr) => fr,
            Err(e) => {
                tracing::warn!(error = %e, "EZSP: undecodable frame");
                return;
            }
        };
        if frame.overflow() || frame.truncated() {
            tracing::warn!(
                overflow = frame.overflow(),
                truncated = frame.truncated(),
                "EZSP: NCP reports lost or truncated frames"
            );
        }
        match self.phase {
            Phase::LegacyVersion(seq) | Phase::ExtendedVersion(seq)
                if frame.seq == seq && frame.frame_id == id::VERSION && !frame.is_callback() =>
            {
                self.on_version(&frame);
                return;
            }
            _ => {}
        }
        if frame.is_callback() || is_handler(frame.frame_id) {
            self.on_callback(frame.frame_id, &frame.params);
            return;
        }
        let matches = self.in_flight.as_ref().is_some_and(|f| f.seq == frame.seq);
        if !matches {
            tracing::debug!(seq = frame.seq, id = frame.frame_id, "EZSP: stray response");
            return;
        }
        let Some(f) = self.in_flight.take() else {
            return;
        };
        let res = if frame.frame_id == f.frame_id {
            Ok(frame.params)
        } else if frame.frame_id == id::INVALID_COMMAND {
            Err(CoordinatorError::Status {
                request: f.name,
                status: frame.params.first().copied().unwrap_or(0xFF),
            })
        } else {
            Err(CoordinatorError::Malformed(format!(
                "{} answered with frame id {:#06x}",
                f.name, frame.frame_id
            )))
        };
        let _ = f.reply.send(res);
    }

    fn on_version(&mut self, frame: &Received) {
        let v = match VersionResponse::parse(&frame.params) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "EZSP: bad version response");
                self.fatal = Some("the NCP sent an undecodable version response");
                self.phase = Phase::Ready;
                return;
            }
        };
        match self.phase {
            Phase::LegacyVersion(_) if v.protocol >= f::MIN_EXTENDED_VERSION => {
                let seq = self.next_seq();
                let cmd = f::command(seq, id::VERSION, &[f::DESIRED_VERSION]);
                self.ash.send(cmd, Instant::now());
                self.phase = Phase::ExtendedVersion(seq);
            }
            _ => {
                if v.protocol != f::DESIRED_VERSION {
                    tracing::warn!(protocol = v.protocol, "EZSP: unsupported protocol version");
                    self.fatal = Some("the NCP speaks an EZSP protocol version other than 13");
                } else {
                    tracing::info!(stack = %v.stack_string(), "EZSP v13 ready");
                    self.fatal = None;
                }
                *self
                    .shared
                    .version
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(v);
                self.phase = Phase::Ready;
            }
        }
    }

    fn emit(&self, ev: CoordinatorEvent) {
        self.events.emit(ev);
    }

    fn on_callback(&mut self, frame_id: u16, p: &[u8]) {
        let res = match frame_id {
            id::STACK_STATUS_HANDLER => f::parse_status(p, "stackStatusHandler").map(|s| {
                tracing::info!(status = format_args!("{s:#04x}"), "EZSP stack status");
                let _ = self.shared.stack.send(Some(s));
            }),
            id::TRUST_CENTER_JOIN_HANDLER => f::parse_trust_center_join(p).map(|j| {
                if j.status == f::DEVICE_LEFT {
                    self.emit(CoordinatorEvent::Left {
                        ieee: j.ieee,
                        nwk: j.nwk,
                        rejoin: false,
                    });
                } else if j.decision == f::DENY_JOIN {
                    tracing::info!(ieee = %j.ieee, "EZSP: trust centre denied a join");
                    self.emit(CoordinatorEvent::JoinDenied {
                        ieee: j.ieee,
                        nwk: j.nwk,
                    });
                } else {
                    self.emit(CoordinatorEvent::Joined {
                        ieee: j.ieee,
                        nwk: j.nwk,
                        parent: j.parent,
                    });
                }
            }),
            id::CHILD_JOIN_HANDLER => f::parse_child_join(p).map(|(_, joining, nwk, ieee, _)| {
                tracing::debug!(joining, nwk, %ieee, "EZSP child join");
            }),
            id::MESSAGE_SENT_HANDLER => f::parse_message_sent(p).map(|m| {
                if let Some(tx) = self.shared.waiters().sent.remove(&m.tag) {
                    let _ = tx.send(m.status);
                }
            }),
            id::INCOMING_MESSAGE_HANDLER => {
                f::parse_incoming_message(p).map(|m| self.on_incoming(m))
            }
            other => {
                tracing::debug!(id = other, "EZSP: unhandled callback");
                Ok(())
            }
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "EZSP: malformed callback");
        }
    }

    fn on_incoming(&mut self, m: f::IncomingMessage) {
        if m.aps.profile == 0 {
            if m.aps.cluster == f::zdo::DEVICE_ANNCE {
                match f::parse_device_annce(&m.data) {
                    Ok((nwk, ieee, capabilities)) => self.emit(CoordinatorEvent::Announced {
                        ieee,
                        nwk,
                        capabilities,
                    }),
                    Err(e) => tracing::warn!(error = %e, "EZSP: bad Device_annce"),
                }
                return;
            }
            if m.aps.cluster & f::zdo::RESPONSE != 0 {
                let tsn = m.data.first().copied().unwrap_or(0);
                let key = (m.sender, m.aps.cluster, tsn);
                if let Some(tx) = self.shared.waiters().zdo.remove(&key) {
                    let _ = tx.send(m.data);
                } else {
                    tracing::debug!(cluster = m.aps.cluster, "EZSP: unrequested ZDO response");
                }
                return;
            }
        }
        self.emit(CoordinatorEvent::Incoming(Incoming {
            src_nwk: m.sender,
            src_endpoint: m.aps.src_ep,
            dst_endpoint: m.aps.dst_ep,
            cluster: m.aps.cluster,
            profile: m.aps.profile,
            lqi: m.lqi,
            rssi: Some(m.rssi),
            aps_secured: m.aps.options & f::aps_option::ENCRYPTION != 0,
            was_broadcast: m.was_broadcast(),
            data: m.data,
        }));
    }
}

fn is_handler(frame_id: u16) -> bool {
    matches!(
        frame_id,
        id::STACK_STATUS_HANDLER
            | id::TRUST_CENTER_JOIN_HANDLER
            | id::CHILD_JOIN_HANDLER
            | id::MESSAGE_SENT_HANDLER
            | id::INCOMING_MESSAGE_HANDLER
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
