//! What the adapter needs from a coordinator dongle, whichever stack it speaks (Z-Stack ZNP or
//! EmberZNet EZSP over ASH). Each stack module implements these operations with its own codec;
//! nothing above this module knows MT or EZSP frames.

use std::fmt;
use std::time::Duration;

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
