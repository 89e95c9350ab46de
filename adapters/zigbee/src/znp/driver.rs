//! The async Z-Stack ZNP coordinator driver.
//!
//! One background task owns the byte stream. It sends one SREQ at a time (Z-Stack's rule), matches its
//! SRSP (or `RPCError.CommandNotRecognized`), retries once after a timeout, hands AREQ callbacks to the
//! request waiting for them (ZDO responses by NWK address, `AF.DataConfirm` by transaction id) and turns
//! the rest into [`CoordinatorEvent`]s on a bounded channel (dropped and counted when full).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::commands::{self as cmd, id, nv};
use super::frame::{CmdType, Decoder, MtFrame, encode, subsystem as sub};
use crate::coordinator::{
    CoordinatorError, CoordinatorEvent, CoordinatorInfo, Ieee, Incoming, NetworkParams,
    NodeDescriptor, SendStatus, SimpleDescriptor, Stack, StartOutcome,
};
use crate::install_code::{InstallCode, InstallCodeError};

/// Capacity of the event channel returned by [`ZnpCoordinator::new`].
pub const EVENT_CAPACITY: usize = 256;
/// SREQs queued behind the one in flight before callers wait (backpressure).
const MAX_QUEUED_SREQS: usize = 64;
/// Requests waiting for a callback at once.
const MAX_WAITERS: usize = 256;
/// Home Automation profile.
const PROFILE_HA: u16 = 0x0104;
/// `Status.APS_DUPLICATE_ENTRY`: AF.Register of an endpoint that is already registered.
const STATUS_DUPLICATE_ENTRY: u8 = 0xB8;
/// `Status.NV_ITEM_UNINIT`: OSALNVItemInit created the item.
const STATUS_NV_ITEM_UNINIT: u8 = 0x09;

/// How long the driver waits for the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// An SREQ's SRSP (the request is sent once more after the first timeout).
    pub sreq: Duration,
    /// A ZDO response callback from a device.
    pub zdo: Duration,
    /// `AF.DataConfirm` after `AF.DataRequest`.
    pub data_confirm: Duration,
    /// `SYS.ResetInd` after `SYS.ResetReq`.
    pub reset: Duration,
    /// `ZDO.StateChangeInd(StartedAsCoordinator)` after `ZDO.StartupFromApp`.
    pub startup: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            sreq: Duration::from_secs(2),
            zdo: Duration::from_secs(5),
            data_confirm: Duration::from_secs(10),
            reset: Duration::from_secs(10),
            startup: Duration::from_secs(30),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, CoordinatorError>>;
type Matcher = Box<dyn Fn(&[u8]) -> bool + Send>;

enum Cmd {
    Sreq {
        frame: MtFrame,
        name: &'static str,
        reply: Reply<MtFrame>,
    },
    Areq {
        frame: MtFrame,
        reply: Reply<()>,
    },
    Wait {
        subsystem: u8,
        cmd1: u8,
        matcher: Matcher,
        reply: Reply<MtFrame>,
    },
}

struct Waiter {
    subsystem: u8,
    cmd1: u8,
    matcher: Matcher,
    reply: Reply<MtFrame>,
}

struct Inflight {
    frame: MtFrame,
    name: &'static str,
    reply: Reply<MtFrame>,
    deadline: Instant,
    retried: bool,
}

/// A Z-Stack coordinator behind any byte stream (serial port, pty, in-memory pipe).
pub struct ZnpCoordinator {
    cmd_tx: mpsc::Sender<Cmd>,
    dropped: Arc<AtomicU64>,
    tsn: AtomicU8,
    timeouts: Timeouts,
}

impl ZnpCoordinator {
    /// Starts the driver task on `io` with default timeouts. Must be called inside a tokio runtime.
    pub fn new<T>(io: T) -> (Self, mpsc::Receiver<CoordinatorEvent>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::with_timeouts(io, Timeouts::default())
    }

    /// As [`ZnpCoordinator::new`], with explicit timeouts.
    pub fn with_timeouts<T>(io: T, timeouts: Timeouts) -> (Self, mpsc::Receiver<CoordinatorEvent>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let (reader, writer) = tokio::io::split(io);
        let task = Task {
            reader,
            writer,
            cmd_rx,
            events: crate::coordinator::EventSender::new(ev_tx, dropped.clone()),
            sreq_timeout: timeouts.sreq,
            queue: VecDeque::new(),
            inflight: None,
            waiters: Vec::new(),
            decoder: Decoder::new(),
        };
        tokio::spawn(task.run());
        (
            Self {
                cmd_tx,
                dropped,
                tsn: AtomicU8::new(1),
                timeouts,
            },
            ev_rx,
        )
    }

    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Firmware version and the coordinator's IEEE address (`SYS.Version`, `UTIL.GetDeviceInfo`).
    pub async fn info(&self) -> Result<CoordinatorInfo, CoordinatorError> {
        let v = self.sreq("SYS.Version", cmd::sys_version()).await?;
        let version = cmd::parse_version(v.payload()).map_err(malformed)?;
        let d = self.device_info().await?;
        Ok(CoordinatorInfo {
            stack: Stack::Znp,
            ieee: d.ieee,
            firmware: version.firmware(),
        })
    }

    /// Brings the network up on `params`: resumes when the dongle already holds them, otherwise
    /// recommissions it (NV writes, soft reset) and forms the network.
    pub async fn start(&self, params: &NetworkParams) -> Result<StartOutcome, CoordinatorError> {
        if !(11..=26).contains(&params.channel) {
            return Err(CoordinatorError::Unsupported("channel must be 11..=26"));
        }
        let mask = 1u32 << params.channel;
        if self.nv_matches(params, mask).await? {
            tracing::info!(
                pan_id = params.pan_id,
                channel = params.channel,
                "ZNP network matches: resuming"
            );
            self.bring_up().await?;
            return Ok(StartOutcome::Resumed);
        }
        tracing::info!(
            pan_id = params.pan_id,
            channel = params.channel,
            "ZNP network differs: forming"
        );
        self.nv_write(nv::STARTUP_OPTION, &[nv::STARTOPT_CLEAR_STATE])
            .await?;
        self.nv_write(nv::LOGICAL_TYPE, &[0]).await?;
        self.nv_write(nv::PANID, &params.pan_id.to_le_bytes())
            .await?;
        self.nv_write(nv::EXTPANID, &ext_pan_wire(params)).await?;
        self.nv_write(nv::CHANLIST, &mask.to_le_bytes()).await?;
        self.nv_write(nv::PRECFGKEY, &params.network_key).await?;
        // As zigpy-znp: the network key is not pre-configured in joining devices; the TC sends it.
        self.nv_write(nv::PRECFGKEYS_ENABLE, &[0]).await?;
        let reset = self
            .register(sub::SYS, id::SYS_RESET_IND, Box::new(|_| true))
            .await?;
        self.areq(cmd::sys_reset_req(true)).await?;
        self.wait(reset, self.timeouts.reset).await?;
        self.bring_up().await?;
        self.mark_configured().await?;
        Ok(StartOutcome::Formed)
    }

    /// Opens (seconds > 0) or closes (0) joining network-wide (`ZDO.MgmtPermitJoinReq` to 0xFFFC).
    pub async fn permit_join(&self, seconds: u8) -> Result<(), CoordinatorError> {
        self.sreq_status("ZDO.MgmtPermitJoinReq", cmd::zdo_mgmt_permit_join(seconds))
            .await
    }

    /// Whether joining devices must use their install-code key (`APP_CNF.BDBSetJoinUsesInstallCodeKey`).
    pub async fn require_install_codes(&self, required: bool) -> Result<(), CoordinatorError> {
        self.sreq_status(
            "APP_CNF.BDBSetJoinUsesInstallCodeKey",
            cmd::app_cnf_set_join_uses_install_code_key(required),
        )
        .await
    }

    /// Provisions a device's install code (code + CRC) in the trust centre.
    pub async fn add_install_code(&self, ieee: Ieee, code: &[u8]) -> Result<(), CoordinatorError> {
        let code = InstallCode::parse(code).map_err(|e| match e {
            InstallCodeError::BadLength(_) => CoordinatorError::Unsupported(
                "install code must be 6, 8, 12 or 16 bytes plus a 2-byte CRC",
            ),
            InstallCodeError::BadCrc => CoordinatorError::Unsupported("install code CRC mismatch"),
        })?;
        let frame =
            cmd::app_cnf_add_install_code(ieee, code.as_bytes_with_crc()).map_err(malformed)?;
        self.sreq_status("APP_CNF.BDBAddInstallCode", frame).await
    }

    /// A device's node descriptor.
    pub async fn node_descriptor(&self, nwk: u16) -> Result<NodeDescriptor, CoordinatorError> {
        let f = self
            .zdo_request(
                "ZDO.NodeDescReq",
                cmd::zdo_node_desc_req(nwk),
                id::ZDO_NODE_DESC_RSP,
                nwk,
            )
            .await?;
        zdo_result("ZDO.NodeDescRsp", cmd::parse_node_desc_rsp(f.payload()))
    }

    /// Binds a device's cluster on `endpoint` to the coordinator (`coordinator`, endpoint 1), so the
    /// reports it is configured to send reach the coordinator.
    pub async fn bind(
        &self,
        nwk: u16,
        ieee: Ieee,
        endpoint: u8,
        cluster: u16,
        coordinator: Ieee,
    ) -> Result<(), CoordinatorError> {
        let f = self
            .zdo_request(
                "ZDO.BindReq",
                cmd::zdo_bind_req(nwk, ieee, endpoint, cluster, coordinator, 1),
                id::ZDO_BIND_RSP,
                nwk,
            )
            .await?;
        zdo_result("ZDO.BindRsp", cmd::parse_bind_rsp(f.payload()))
    }

    /// A device's active endpoints.
    pub async fn active_endpoints(&self, nwk: u16) -> Result<Vec<u8>, CoordinatorError> {
        let f = self
            .zdo_request(
                "ZDO.ActiveEpReq",
                cmd::zdo_active_ep_req(nwk),
                id::ZDO_ACTIVE_EP_RSP,
                nwk,
            )
            .await?;
        zdo_result("ZDO.ActiveEpRsp", cmd::parse_active_ep_rsp(f.payload()))
    }

    /// One endpoint's simple descriptor.
    pub async fn simple_descriptor(
        &self,
        nwk: u16,
        endpoint: u8,
    ) -> Result<SimpleDescriptor, CoordinatorError> {
        let f = self
            .zdo_request(
                "ZDO.SimpleDescReq",
                cmd::zdo_simple_desc_req(nwk, endpoint),
                id::ZDO_SIMPLE_DESC_RSP,
                nwk,
            )
            .await?;
        zdo_result("ZDO.SimpleDescRsp", cmd::parse_simple_desc_rsp(f.payload()))
    }

    /// Unicasts an application frame (APS ack requested) and waits for its `AF.DataConfirm`.
    pub async fn send(
        &self,
        nwk: u16,
        src_endpoint: u8,
        dst_endpoint: u8,
        cluster: u16,
        data: &[u8],
    ) -> Result<SendStatus, CoordinatorError> {
        if data.len() > cmd::MAX_AF_DATA {
            return Err(CoordinatorError::Unsupported(
                "application payload exceeds 240 bytes",
            ));
        }
        let tsn = self.tsn.fetch_add(1, Ordering::Relaxed);
        let frame = cmd::af_data_request(&cmd::DataRequest {
            dst_nwk: nwk,
            dst_endpoint,
            src_endpoint,
            cluster,
            tsn,
            options: cmd::TX_OPTION_ACK_REQUEST,
            radius: cmd::DEFAULT_RADIUS,
            data,
        })
        .map_err(malformed)?;
        let confirm = self
            .register(
                sub::AF,
                id::AF_DATA_CONFIRM,
                Box::new(move |p| cmd::parse_data_confirm(p).is_ok_and(|(_, _, t)| t == tsn)),
            )
            .await?;
        let rsp = self.sreq("AF.DataRequest", frame).await?;
        let status = cmd::parse_status("AF.DataRequest", rsp.payload()).map_err(malformed)?;
        if status != 0 {
            return Ok(SendStatus::Failed(status));
        }
        let f = self.wait(confirm, self.timeouts.data_confirm).await?;
        let (status, _, _) = cmd::parse_data_confirm(f.payload()).map_err(malformed)?;
        Ok(if status == 0 {
            SendStatus::Delivered
        } else {
            SendStatus::Failed(status)
        })
    }

    /// Asks a device to leave the network (no rejoin, children stay).
    pub async fn leave(&self, ieee: Ieee, nwk: u16) -> Result<(), CoordinatorError> {
        self.sreq_status("ZDO.MgmtLeaveReq", cmd::zdo_mgmt_leave_req(nwk, ieee))
            .await
    }

    // ------------------------------------------------------------------ helpers

    async fn device_info(&self) -> Result<cmd::DeviceInfo, CoordinatorError> {
        let d = self
            .sreq("UTIL.GetDeviceInfo", cmd::util_get_device_info())
            .await?;
        let info = cmd::parse_device_info(d.payload()).map_err(malformed)?;
        if info.status != 0 {
            return Err(CoordinatorError::Status {
                request: "UTIL.GetDeviceInfo",
                status: info.status,
            });
        }
        Ok(info)
    }

    async fn nv_read(&self, item: u16) -> Result<Option<Vec<u8>>, CoordinatorError> {
        let f = self
            .sreq("SYS.OSALNVRead", cmd::sys_osal_nv_read(item, 0))
            .await?;
        let (status, value) = cmd::parse_nv_read(f.payload()).map_err(malformed)?;
        Ok((status == 0).then_some(value))
    }

    async fn nv_write(&self, item: u16, value: &[u8]) -> Result<(), CoordinatorError> {
        let frame = cmd::sys_osal_nv_write(item, 0, value).map_err(malformed)?;
        self.sreq_status("SYS.OSALNVWrite", frame).await
    }

    /// True when the dongle was commissioned as a coordinator with exactly these parameters.
    async fn nv_matches(
        &self,
        params: &NetworkParams,
        mask: u32,
    ) -> Result<bool, CoordinatorError> {
        let expected: [(u16, Vec<u8>); 6] = [
            (nv::HAS_CONFIGURED_ZSTACK3, vec![nv::CONFIGURED_MARKER]),
            (nv::LOGICAL_TYPE, vec![0]),
            (nv::PANID, params.pan_id.to_le_bytes().to_vec()),
            (nv::EXTPANID, ext_pan_wire(params).to_vec()),
            (nv::CHANLIST, mask.to_le_bytes().to_vec()),
            (nv::PRECFGKEY, params.network_key.to_vec()),
        ];
        for (item, want) in expected {
            // A missing or unreadable item means "not commissioned like this".
            if self.nv_read(item).await?.as_deref() != Some(want.as_slice()) {
                tracing::debug!(item, "NV item differs from the requested network");
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn mark_configured(&self) -> Result<(), CoordinatorError> {
        let init = cmd::sys_osal_nv_item_init(nv::HAS_CONFIGURED_ZSTACK3, &[nv::CONFIGURED_MARKER])
            .map_err(malformed)?;
        let f = self.sreq("SYS.OSALNVItemInit", init).await?;
        let status = cmd::parse_status("SYS.OSALNVItemInit", f.payload()).map_err(malformed)?;
        if status != 0 && status != STATUS_NV_ITEM_UNINIT {
            return Err(CoordinatorError::Status {
                request: "SYS.OSALNVItemInit",
                status,
            });
        }
        self.nv_write(nv::HAS_CONFIGURED_ZSTACK3, &[nv::CONFIGURED_MARKER])
            .await
    }

    /// Registers endpoint 1 (HA) and starts the stack unless it already runs as coordinator.
    async fn bring_up(&self) -> Result<(), CoordinatorError> {
        let reg = cmd::af_register(1, PROFILE_HA, 0x0005, &[], &[]).map_err(malformed)?;
        let f = self.sreq("AF.Register", reg).await?;
        let status = cmd::parse_status("AF.Register", f.payload()).map_err(malformed)?;
        if status != 0 && status != STATUS_DUPLICATE_ENTRY {
            return Err(CoordinatorError::Status {
                request: "AF.Register",
                status,
            });
        }
        if self.device_info().await?.device_state == cmd::STATE_STARTED_AS_COORDINATOR {
            return Ok(());
        }
        let started = self
            .register(
                sub::ZDO,
                id::ZDO_STATE_CHANGE_IND,
                Box::new(|p| p.first() == Some(&cmd::STATE_STARTED_AS_COORDINATOR)),
            )
            .await?;
        let f = self
            .sreq("ZDO.StartupFromApp", cmd::zdo_startup_from_app(100))
            .await?;
        let state = cmd::parse_status("ZDO.StartupFromApp", f.payload()).map_err(malformed)?;
        if state > 1 {
            // 2 = NotStarted
            return Err(CoordinatorError::Status {
                request: "ZDO.StartupFromApp",
                status: state,
            });
        }
        self.wait(started, self.timeouts.startup).await?;
        Ok(())
    }

    async fn zdo_request(
        &self,
        name: &'static str,
        req: MtFrame,
        rsp_cmd1: u8,
        nwk: u16,
    ) -> Result<MtFrame, CoordinatorError> {
        let rx = self
            .register(
                sub::ZDO,
                rsp_cmd1,
                Box::new(move |p| cmd::zdo_rsp_src(p) == Some(nwk)),
            )
            .await?;
        self.sreq_status(name, req).await?;
        self.wait(rx, self.timeouts.zdo).await
    }

    async fn submit(&self, c: Cmd) -> Result<(), CoordinatorError> {
        self.cmd_tx
            .send(c)
            .await
            .map_err(|_| CoordinatorError::Closed)
    }

    async fn sreq(&self, name: &'static str, frame: MtFrame) -> Result<MtFrame, CoordinatorError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Sreq { frame, name, reply }).await?;
        rx.await.map_err(|_| CoordinatorError::Closed)?
    }

    async fn sreq_status(
        &self,
        name: &'static str,
        frame: MtFrame,
    ) -> Result<(), CoordinatorError> {
        let f = self.sreq(name, frame).await?;
        match cmd::parse_status(name, f.payload()).map_err(malformed)? {
            0 => Ok(()),
            status => Err(CoordinatorError::Status {
                request: name,
                status,
            }),
        }
    }

    async fn areq(&self, frame: MtFrame) -> Result<(), CoordinatorError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Areq { frame, reply }).await?;
        rx.await.map_err(|_| CoordinatorError::Closed)?
    }

    async fn register(
        &self,
        subsystem: u8,
        cmd1: u8,
        matcher: Matcher,
    ) -> Result<oneshot::Receiver<Result<MtFrame, CoordinatorError>>, CoordinatorError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Cmd::Wait {
            subsystem,
            cmd1,
            matcher,
            reply,
        })
        .await?;
        Ok(rx)
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Result<MtFrame, CoordinatorError>>,
        timeout: Duration,
    ) -> Result<MtFrame, CoordinatorError> {
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(CoordinatorError::Timeout(timeout)),
            Ok(Err(_)) => Err(CoordinatorError::Closed),
            Ok(Ok(r)) => r,
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Malformed(e.to_string())
}

fn zdo_result<T>(
    request: &'static str,
    parsed: Result<Result<T, u8>, cmd::ParseError>,
) -> Result<T, CoordinatorError> {
    parsed
        .map_err(malformed)?
        .map_err(|status| CoordinatorError::Status { request, status })
}

/// Stack detection: sends `SYS.Ping` and reports whether a valid ping SRSP arrives within `timeout`.
/// Reads whatever else arrives and leaves nothing but the 5-byte ping on the wire.
pub async fn probe<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    if io.write_all(&encode(&cmd::sys_ping())).await.is_err() || io.flush().await.is_err() {
        return false;
    }
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 256];
    loop {
        let n = match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        decoder.push(buf.get(..n).unwrap_or_default());
        while let Some(r) = decoder.next() {
            if let Ok(f) = r
                && f.is(CmdType::Srsp, sub::SYS, id::SYS_PING)
                && f.payload().len() == 2
            {
                return true;
            }
        }
    }
}

// ------------------------------------------------------------------ the task

struct Task<T> {
    reader: ReadHalf<T>,
    writer: WriteHalf<T>,
    cmd_rx: mpsc::Receiver<Cmd>,
    events: crate::coordinator::EventSender,
    sreq_timeout: Duration,
    queue: VecDeque<(MtFrame, &'static str, Reply<MtFrame>)>,
    inflight: Option<Inflight>,
    waiters: Vec<Waiter>,
    decoder: Decoder,
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Task<T> {
    async fn run(mut self) {
        let reason = self.run_inner().await;
        tracing::debug!(?reason, "ZNP driver task ends");
        if let Some(i) = self.inflight.take() {
            let _ = i.reply.send(Err(CoordinatorError::Closed));
        }
        for (_, _, reply) in self.queue.drain(..) {
            let _ = reply.send(Err(CoordinatorError::Closed));
        }
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Err(CoordinatorError::Closed));
        }
        // Commands still in the channel: dropping their reply senders reports Closed.
        self.cmd_rx.close();
        while let Ok(c) = self.cmd_rx.try_recv() {
            drop(c);
        }
    }

    async fn run_inner(&mut self) -> Result<(), std::io::Error> {
        let mut buf = vec![0u8; 1024];
        loop {
            self.start_next().await?;
            let deadline = self.inflight.as_ref().map(|i| i.deadline);
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                r = self.reader.read(&mut buf) => {
                    let n = r?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    self.decoder.push(buf.get(..n).unwrap_or_default());
                    while let Some(r) = self.decoder.next() {
                        match r {
                            Ok(f) => self.on_frame(f),
                            Err(e) => tracing::debug!(%e, "ZNP framing"),
                        }
                    }
                }
                c = self.cmd_rx.recv(), if self.queue.len() < MAX_QUEUED_SREQS => {
                    match c {
                        None => return Ok(()),
                        Some(c) => self.on_cmd(c).await?,
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    self.on_timeout().await?;
                }
            }
        }
    }

    async fn write(&mut self, frame: &MtFrame) -> Result<(), std::io::Error> {
        tracing::trace!(?frame, "ZNP ->");
        self.writer.write_all(&encode(frame)).await?;
        self.writer.flush().await
    }

    async fn start_next(&mut self) -> Result<(), std::io::Error> {
        while self.inflight.is_none() {
            let Some((frame, name, reply)) = self.queue.pop_front() else {
                return Ok(());
            };
            if reply.is_closed() {
                continue; // the caller gave up before it was sent
            }
            self.write(&frame).await?;
            self.inflight = Some(Inflight {
                frame,
                name,
                reply,
                deadline: Instant::now() + self.sreq_timeout,
                retried: false,
            });
        }
        Ok(())
    }

    async fn on_cmd(&mut self, c: Cmd) -> Result<(), std::io::Error> {
        match c {
            Cmd::Sreq { frame, name, reply } => self.queue.push_back((frame, name, reply)),
            Cmd::Areq { frame, reply } => {
                self.write(&frame).await?;
                let _ = reply.send(Ok(()));
            }
            Cmd::Wait {
                subsystem,
                cmd1,
                matcher,
                reply,
            } => {
                self.waiters.retain(|w| !w.reply.is_closed());
                if self.waiters.len() >= MAX_WAITERS {
                    let _ = reply.send(Err(CoordinatorError::Unsupported(
                        "too many requests awaiting the coordinator",
                    )));
                } else {
                    self.waiters.push(Waiter {
                        subsystem,
                        cmd1,
                        matcher,
                        reply,
                    });
                }
            }
        }
        Ok(())
    }

    async fn on_timeout(&mut self) -> Result<(), std::io::Error> {
        let Some(mut i) = self.inflight.take() else {
            return Ok(());
        };
        if i.retried {
            tracing::warn!(request = i.name, "ZNP request timed out twice");
            let _ = i
                .reply
                .send(Err(CoordinatorError::Timeout(self.sreq_timeout)));
            return Ok(());
        }
        tracing::debug!(request = i.name, "ZNP request timed out, retrying once");
        i.retried = true;
        i.deadline = Instant::now() + self.sreq_timeout;
        let frame = i.frame.clone();
        self.inflight = Some(i);
        self.write(&frame).await
    }

    fn on_frame(&mut self, f: MtFrame) {
        tracing::trace!(frame = ?f, "ZNP <-");
        match f.cmd_type() {
            CmdType::Srsp => self.on_srsp(f),
            CmdType::Areq => self.on_areq(f),
            CmdType::Poll | CmdType::Sreq => {
                tracing::debug!(frame = ?f, "ignoring host-direction frame")
            }
        }
    }

    fn on_srsp(&mut self, f: MtFrame) {
        let Some(i) = self.inflight.as_ref() else {
            tracing::debug!(frame = ?f, "SRSP with no request in flight");
            return;
        };
        if f.subsystem() == i.frame.subsystem() && f.cmd1() == i.frame.cmd1() {
            if let Some(i) = self.inflight.take() {
                let _ = i.reply.send(Ok(f));
            }
            return;
        }
        if f.subsystem() == sub::RPC_ERROR && f.cmd1() == id::RPC_COMMAND_NOT_RECOGNIZED {
            match cmd::parse_rpc_error(f.payload()) {
                Ok((code, cmd0, cmd1)) if cmd0 == i.frame.cmd0() && cmd1 == i.frame.cmd1() => {
                    if let Some(i) = self.inflight.take() {
                        let err = match code {
                            // InvalidSubsystem, InvalidCommandId
                            1 | 2 => CoordinatorError::Unsupported(i.name),
                            status => CoordinatorError::Status {
                                request: i.name,
                                status,
                            },
                        };
                        let _ = i.reply.send(Err(err));
                    }
                }
                _ => tracing::debug!("RPCError for a request not in flight"),
            }
            return;
        }
        tracing::debug!(frame = ?f, "unexpected SRSP");
    }

    fn on_areq(&mut self, f: MtFrame) {
        self.waiters.retain(|w| !w.reply.is_closed());
        if let Some(pos) = self.waiters.iter().position(|w| {
            w.subsystem == f.subsystem() && w.cmd1 == f.cmd1() && (w.matcher)(f.payload())
        }) {
            let w = self.waiters.swap_remove(pos);
            let _ = w.reply.send(Ok(f));
            return;
        }
        match event_of(&f) {
            Ok(Some(ev)) => {
                self.events.emit(ev);
            }
            Ok(None) => tracing::trace!(frame = ?f, "unrouted callback"),
            Err(e) => tracing::warn!(%e, "malformed ZNP callback"),
        }
    }
}

/// The event an unsolicited AREQ stands for, if any.
fn event_of(f: &MtFrame) -> Result<Option<CoordinatorEvent>, cmd::ParseError> {
    let p = f.payload();
    Ok(Some(match (f.subsystem(), f.cmd1()) {
        (sub::ZDO, id::ZDO_TC_DEV_IND) => {
            let (nwk, ieee, parent) = cmd::parse_tc_dev_ind(p)?;
            CoordinatorEvent::Joined { ieee, nwk, parent }
        }
        (sub::ZDO, id::ZDO_END_DEVICE_ANNCE_IND) => {
            let (_, nwk, ieee, capabilities) = cmd::parse_end_device_annce(p)?;
            CoordinatorEvent::Announced {
                ieee,
                nwk,
                capabilities,
            }
        }
        (sub::ZDO, id::ZDO_LEAVE_IND) => {
            let (nwk, ieee, _, _, rejoin) = cmd::parse_leave_ind(p)?;
            CoordinatorEvent::Left { ieee, nwk, rejoin }
        }
        (sub::ZDO, id::ZDO_PERMIT_JOIN_IND) => {
            let seconds = cmd::parse_status("ZDO.PermitJoinInd", p)?;
            CoordinatorEvent::PermitJoin { seconds }
        }
        (sub::AF, id::AF_INCOMING_MSG) => {
            let m = cmd::parse_incoming_msg(p)?;
            CoordinatorEvent::Incoming(Incoming {
                src_nwk: m.src_nwk,
                src_endpoint: m.src_endpoint,
                dst_endpoint: m.dst_endpoint,
                cluster: m.cluster,
                profile: PROFILE_HA,
                lqi: m.lqi,
                rssi: None,
                aps_secured: m.security_use,
                was_broadcast: m.was_broadcast,
                data: m.data,
            })
        }
        _ => return Ok(None),
    }))
}

/// `NetworkParams.extended_pan_id` is most-significant byte first (as it is displayed, like
/// [`Ieee`]); Z-Stack's NV item holds it little-endian.
fn ext_pan_wire(params: &NetworkParams) -> [u8; 8] {
    let mut b = params.extended_pan_id;
    b.reverse();
    b
}
