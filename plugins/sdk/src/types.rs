//! The values a decision works with. They mirror the WIT types of `warden:policy/types` one to
//! one; on wasm the SDK converts between the two (field copies, no allocation).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;

/// An interned name (zone, role, protocol, point or command name).
///
/// Get one with [`crate::symbol`] in `init` and compare symbols on the hot path: a comparison is
/// one `u32` compare. The host hands out [`Symbol::OTHER`] (0) for every name the plugin never
/// interned, so `OTHER` means "some name this plugin does not know".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol(pub u32);

impl Symbol {
    /// A name this plugin never interned (or none at all).
    pub const OTHER: Symbol = Symbol(0);

    /// True for a name this plugin interned.
    #[inline]
    pub fn is_known(self) -> bool {
        self.0 != 0
    }
}

/// Which way a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From a device to the gateway (telemetry, events, announcements).
    Uplink,
    /// From the gateway to a device (commands).
    Downlink,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uplink => "uplink",
            Self::Downlink => "downlink",
        }
    }
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Telemetry,
    Event,
    Command,
    CommandResult,
    Announce,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Event => "event",
            Self::Command => "command",
            Self::CommandResult => "command-result",
            Self::Announce => "announce",
        }
    }
}

/// The device's registry status. The gateway's built-in rules deny every status but `Active`
/// before a plugin runs, so plugins see `Active` in practice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pending,
    #[default]
    Active,
    Quarantined,
    Revoked,
}

/// What the device's identity rests on. Ordered weakest first, so `a >= Assurance::SharedKey`
/// reads as "at least shared-key".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assurance {
    /// Anyone on the medium could have sent it.
    #[default]
    None,
    /// Bound to a physical or TLS channel, without device cryptography.
    Channel,
    /// A MIC/AEAD under a per-device key.
    SharedKey,
    /// Mutual TLS with a device certificate.
    Certificate,
}

impl Assurance {
    /// Every level, weakest first.
    pub const ALL: [Assurance; 4] = [
        Assurance::None,
        Assurance::Channel,
        Assurance::SharedKey,
        Assurance::Certificate,
    ];

    /// The name used in configs and messages: `none`, `channel`, `shared-key`, `certificate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Channel => "channel",
            Self::SharedKey => "shared-key",
            Self::Certificate => "certificate",
        }
    }

    /// The level named `name` (see [`Assurance::as_str`]).
    pub fn parse(name: &str) -> Option<Assurance> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Assurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log message's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A point's (or command argument's) typed value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as a float when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.into())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

/// The scalars of a decision, passed by value: reading them costs no host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub direction: Direction,
    pub kind: Kind,
    /// What the device's identity rests on for this message.
    pub assurance: Assurance,
    /// The adapter checked this message is not a replay.
    pub fresh: bool,
    /// Number of points (uplink) or command arguments (downlink).
    pub point_count: u32,
    /// When the gateway received the message, ms since the Unix epoch (UTC).
    pub time_ms: u64,
}

/// What the gateway has counted for the device so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Observed {
    /// Messages in the last full minute (or the current one if higher).
    pub rate_per_min: u64,
    pub messages: u64,
    pub bytes: u64,
    pub denied: u64,
    /// ms since the Unix epoch; 0 when never seen.
    pub last_seen_ms: u64,
    /// Reserved for the behaviour baseline; `None` until the gateway computes one.
    pub anomaly_score: Option<f32>,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the message through (to the next plugin, if any).
    Allow,
    /// Refuse the message; the reason goes to the audit log and to the command's result.
    Deny(String),
    /// Refuse the message and quarantine the device until an operator re-approves it.
    Quarantine(String),
}

impl Verdict {
    /// `Verdict::Deny` with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(reason.into())
    }

    /// `Verdict::Quarantine` with `reason`.
    pub fn quarantine(reason: impl Into<String>) -> Self {
        Self::Quarantine(reason.into())
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// The reason of a deny or quarantine.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Allow => None,
            Self::Deny(r) | Self::Quarantine(r) => Some(r),
        }
    }

    /// `allow`, `deny` or `quarantine`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny(_) => "deny",
            Self::Quarantine(_) => "quarantine",
        }
    }
}

/// Why `kv_set` refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// Keys are at most 256 bytes.
    KeyTooLarge,
    /// The plugin's state would exceed its quota.
    QuotaExceeded,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyTooLarge => "key longer than 256 bytes",
            Self::QuotaExceeded => "plugin state quota exceeded",
        })
    }
}
