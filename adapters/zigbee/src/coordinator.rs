//! What the adapter needs from a coordinator dongle, whichever stack it speaks (Z-Stack ZNP or
//! EmberZNet EZSP over ASH). Each stack module implements these operations with its own codec;
//! nothing above this module knows MT or EZSP frames.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

/// A device's IEEE (EUI-64) address, as a number (big-endian display, `00:12:4b:…` order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ieee(pub u64);

impl Ieee {
    /// Little-endian wire order (how both ZNP and EZSP carry it).
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }
    pub fn from_le_bytes(b: [u8; 8]) -> Self {
        Self(u64::from_le_bytes(b))
    }
    /// 16 lower-case hex digits, most significant first: the address part of a device id.
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl fmt::Debug for Ieee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ieee({:016x})", self.0)
    }
}

impl fmt::Display for Ieee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The persistent identity of a Zigbee network. `network_key` is secret: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkParams {
    pub pan_id: u16,
    pub extended_pan_id: [u8; 8],
    /// 11..=26
    pub channel: u8,
    pub network_key: [u8; 16],
}

impl fmt::Debug for NetworkParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkParams")
            .field("pan_id", &format_args!("{:#06x}", self.pan_id))
            .field(
                "extended_pan_id",
                &format_args!("{:02x?}", self.extended_pan_id),
            )
            .field("channel", &self.channel)
            .field("network_key", &"<sealed>")
            .finish()
    }
}

/// Which firmware the dongle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Znp,
    Ezsp,
}

impl Stack {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Znp => "znp",
            Self::Ezsp => "ezsp",
        }
    }
}

/// What the coordinator says about itself at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorInfo {
    pub stack: Stack,
    pub ieee: Ieee,
    /// e.g. `Z-Stack 2.7.1 (20210708)` or `EmberZNet EZSP v13`.
    pub firmware: String,
}

/// Whether start-up found the network it was asked for or had to form it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The dongle already held these parameters and came up on them.
    Resumed,
    /// The dongle was (re)commissioned with these parameters.
    Formed,
}

/// A ZDO node descriptor, reduced to what the interview needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescriptor {
    /// 0 coordinator, 1 router, 2 end device
    pub logical_type: u8,
    pub manufacturer_code: u16,
    /// MAC capability flags (bit 2: mains powered, bit 3: receiver on when idle).
    pub mac_capabilities: u8,
}

impl NodeDescriptor {
    /// A sleepy end device: its receiver is off when idle, so downlinks wait for its poll.
    pub fn sleepy(&self) -> bool {
        self.mac_capabilities & 0x08 == 0
    }
    pub fn mains_powered(&self) -> bool {
        self.mac_capabilities & 0x04 != 0
    }
}

/// A ZDO simple descriptor: one endpoint's profile, device type and clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleDescriptor {
    pub endpoint: u8,
    pub profile: u16,
    pub device_type: u16,
    pub input_clusters: Vec<u16>,
    pub output_clusters: Vec<u16>,
}

/// What the coordinator tells the host without being asked.
#[derive(Debug, Clone, PartialEq)]
pub enum CoordinatorEvent {
    /// The trust centre let a device in (ZNP `ZDO.TCDevInd`, EZSP `trustCenterJoinHandler`).
    /// `install_code` is true when the stack reports the join used the device's install-code key.
    Joined { ieee: Ieee, nwk: u16, parent: u16 },
    /// The stack's trust centre itself refused a join (EZSP `DENY_JOIN`, e.g. no install-code key).
    JoinDenied { ieee: Ieee, nwk: u16 },
    /// A device announced itself (ZDO Device_annce) after joining or rejoining.
    Announced {
        ieee: Ieee,
        nwk: u16,
        capabilities: u8,
    },
    /// A device left (or was made to leave).
    Left { ieee: Ieee, nwk: u16, rejoin: bool },
    /// An application frame from a device.
    Incoming(Incoming),
    /// The coordinator's permit-join state changed (0 = closed).
    PermitJoin { seconds: u8 },
}

/// An application-layer frame from a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub src_nwk: u16,
    pub src_endpoint: u8,
    pub dst_endpoint: u8,
    pub cluster: u16,
    /// 0x0104 Home Automation, 0x0000 ZDO… (ZNP's AF.IncomingMsg does not carry it: 0x0104 then).
    pub profile: u16,
    pub lqi: u8,
    pub rssi: Option<i8>,
    /// The stack reports the frame was APS-secured with the device's own link key.
    pub aps_secured: bool,
    pub was_broadcast: bool,
    pub data: Vec<u8>,
}

/// How a unicast to a device ended at the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The stack got a MAC/APS acknowledgement (or accepted it for a sleepy device's parent queue).
    Delivered,
    /// The stack gave up, with its own status code.
    Failed(u8),
}

/// Why talking to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("serial transport: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the coordinator answered status {status:#04x} to {request}")]
    Status { request: &'static str, status: u8 },
    #[error("malformed frame from the coordinator: {0}")]
    Malformed(String),
    #[error("the link to the coordinator is closed")]
    Closed,
    #[error("{0}")]
    Unsupported(&'static str),
}

impl CoordinatorEvent {
    /// Joins, denials, announcements, leaves and permit-join changes: what the zero-trust gate and
    /// the audit log must see, every one of them.
    pub fn is_membership(&self) -> bool {
        !matches!(self, Self::Incoming(_))
    }
}

/// The most membership events waiting for a slow consumer; beyond it they are dropped and counted
/// (a radio cannot produce that many legitimate joins at once: `max_devices` is at most 65,000 and
/// each join is 2–3 events).
pub const MEMBERSHIP_BACKLOG: usize = 262_144;

/// A driver's side of its event channel. Application frames are dropped (and counted) when the
/// consumer lags — the next report carries the same values; membership events wait instead, in
/// order, in a bounded backlog drained by a forwarding task, so a burst of 200 joins is never lost
/// and the driver task never blocks on a slow consumer (which may itself be waiting on the driver).
pub struct EventSender {
    frames: mpsc::Sender<CoordinatorEvent>,
    membership: mpsc::UnboundedSender<CoordinatorEvent>,
    backlog: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl EventSender {
    /// Wraps `tx`; spawns the forwarding task (call inside the tokio runtime).
    pub fn new(tx: mpsc::Sender<CoordinatorEvent>, dropped: Arc<AtomicU64>) -> Self {
        let (membership, mut rx) = mpsc::unbounded_channel::<CoordinatorEvent>();
        let backlog = Arc::new(AtomicUsize::new(0));
        let (fwd_tx, fwd_backlog) = (tx.clone(), backlog.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                fwd_backlog.fetch_sub(1, Ordering::Relaxed);
                if fwd_tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
        Self {
            frames: tx,
            membership,
            backlog,
            dropped,
        }
    }

    /// Sends an event without blocking; returns false if it was dropped.
    pub fn emit(&self, ev: CoordinatorEvent) -> bool {
        if ev.is_membership() {
            // behind earlier membership events, or the channel is full: queue in order
            if self.backlog.load(Ordering::Relaxed) == 0 {
                match self.frames.try_send(ev) {
                    Ok(()) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    Err(mpsc::error::TrySendError::Full(ev)) => return self.queue(ev),
                }
            }
            return self.queue(ev);
        }
        match self.frames.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.count_drop();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn queue(&self, ev: CoordinatorEvent) -> bool {
        if self.backlog.fetch_add(1, Ordering::Relaxed) >= MEMBERSHIP_BACKLOG {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            self.count_drop();
            return false;
        }
        if self.membership.send(ev).is_err() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn count_drop(&self) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                "zigbee: coordinator events dropped (the adapter fell behind)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn joined(i: u64) -> CoordinatorEvent {
        CoordinatorEvent::Joined {
            ieee: Ieee(i),
            nwk: i as u16,
            parent: 0,
        }
    }

    fn frame() -> CoordinatorEvent {
        CoordinatorEvent::Incoming(Incoming {
            src_nwk: 1,
            src_endpoint: 1,
            dst_endpoint: 1,
            cluster: 6,
            profile: 0x0104,
            lqi: 0,
            rssi: None,
            aps_secured: false,
            was_broadcast: false,
            data: vec![],
        })
    }

    #[tokio::test]
    async fn a_burst_of_joins_is_never_dropped_and_stays_in_order_frames_are() {
        let (tx, mut rx) = mpsc::channel(4);
        let dropped = Arc::new(AtomicU64::new(0));
        let s = EventSender::new(tx, dropped.clone());
        // the channel fills with frames; then 500 joins arrive while nobody reads
        for _ in 0..4 {
            assert!(s.emit(frame()));
        }
        assert!(!s.emit(frame()), "a frame beyond capacity is dropped");
        for i in 0..500 {
            assert!(s.emit(joined(i)));
        }
        assert!(!s.emit(frame()));
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        let mut joins = Vec::new();
        let mut frames = 0;
        while joins.len() < 500 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
            {
                Some(CoordinatorEvent::Joined { ieee, .. }) => joins.push(ieee.0),
                Some(_) => frames += 1,
                None => break,
            }
        }
        assert_eq!(frames, 4);
        assert_eq!(joins, (0..500).collect::<Vec<_>>());
    }
}
