//! The adapter interface: what a protocol adapter gets from the gateway and what it gives back.
//!
//! An adapter owns its transport (serial port, socket, D-Bus connection). It sends [`AdapterEvent`]s up
//! a bounded channel and receives [`Downlink`]s that have already passed the gateway's decide stage.
//! It sees device secrets only through the narrow [`CredentialLookup`] it is handed: never the registry,
//! the audit log or the rest of the gateway.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::id::DeviceId;
use crate::message::{Command, CommandResult, Message};
use crate::operation::{Operation, OperationKind};

/// A device secret (key, password). Its `Debug` never prints the bytes; its bytes are wiped when
/// it is dropped (`zeroize`, which the compiler may not elide); it cannot be cloned, so every copy
/// of a key is one somebody wrote on purpose (`Secret::new(s.expose().to_vec())`).
#[derive(PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Read-only access to the credentials of *approved* devices of one protocol. The gateway decrypts
/// them on demand; pending, quarantined and revoked devices have none.
pub trait CredentialLookup: Send + Sync {
    /// The named credential (e.g. `app_key`, `psk`) of a device, if it is active and has one.
    fn credential(&self, device: &DeviceId, name: &str) -> Option<Secret>;

    /// Enrolment secrets named `name` (install codes, DSKs…) of this protocol's devices that an
    /// operator provisioned and has not quarantined or revoked (pending or active). They serve only
    /// to admit a device into a radio network — never to authenticate its traffic. Bounded by the
    /// registry's size.
    fn enrolment(&self, name: &str) -> Vec<(DeviceId, Secret)> {
        let _ = name;
        Vec::new()
    }
}

/// Why the adapter state store failed.
#[derive(Debug, thiserror::Error)]
#[error("adapter state: {0}")]
pub struct StateError(pub String);

/// Durable, encrypted key-value state private to one adapter (LoRaWAN sessions, frame counters and
/// used DevNonces, for example). `put` returns only once the value is on disk, so a counter written
/// before a frame is answered is never reused after a crash. Values are sealed at rest.
pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError>;
    /// Writes all of them durably, in one commit where the store can (group commit: many
    /// counters share one fsync); all or none. The default writes them one by one.
    fn put_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        for (k, v) in items {
            self.put(k, v)?;
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StateError>;
    /// Keys starting with `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError>;
}

/// What an adapter learned about a device it discovered or that joined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Announcement {
    pub device: Option<DeviceId>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    /// What else the adapter learned (power source, endpoints and clusters…), as name/value pairs
    /// for the audit record of the device's registration.
    pub details: Vec<(String, String)>,
}

/// How a device's membership of a radio network changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Admitted through an operator's join window.
    Joined,
    /// A device the adapter already held came back (trust-centre rejoin, new network address).
    Rejoined,
    /// The device left by itself.
    Left,
    /// An operator removed it.
    Removed,
}

impl MembershipChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Rejoined => "rejoined",
            Self::Left => "left",
            Self::Removed => "removed",
        }
    }
}

/// A membership change the adapter saw; the gateway audits it.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub device: DeviceId,
    pub change: MembershipChange,
    /// Human detail for the audit log (network address, how it joined). Never contains secrets.
    pub detail: String,
}

/// A frame the adapter refused before it became a message (bad MIC, replay, malformed frame…). The
/// gateway audits it as a deny and counts it; it is never delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The refusing adapter's protocol (so a frame from no known device is still attributed).
    pub protocol: &'static str,
    /// The device the frame claimed to come from, when it could be read.
    pub device: Option<DeviceId>,
    /// A short, stable cause (`bad-mic`, `replay`, `malformed`), used as a metric label.
    pub cause: &'static str,
    /// Human detail for the audit log. Never contains secrets.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Degraded,
    Down,
}

/// The state of one transport (a serial port, a TCP connection, a packet forwarder).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkHealth {
    pub link: String,
    pub state: LinkState,
    pub detail: String,
}

/// A command the adapter holds for a device that is not listening now: its final result comes
/// within `wait` (the gateway waits that long instead of its default, answers the caller with
/// `CommandOutcome::Queued` at once, and reports `timeout` only after `wait`).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandHeld {
    pub command_id: String,
    pub device: DeviceId,
    pub wait: std::time::Duration,
    /// What it waits for, for the operator (`node 5 is asleep: sent at its next wake-up`).
    pub reason: String,
}

/// Something about a link the operator must be able to see that is neither a device's message
/// nor a change of link state: traffic lost before Warden could read it (`kind` e.g.
/// `udp-receive-buffer`: datagrams the kernel dropped at Warden's socket), a bounded queue that
/// dropped work, a forwarder's downlink path that moved. The gateway counts it per link and kind
/// (metric `warden_link_notices_total`) and audits it, at most once a minute per link and kind
/// with the sum since the last record.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub link: String,
    pub kind: &'static str,
    /// How many of it (datagrams dropped, …); 1 for a single happening.
    pub count: u64,
    pub detail: String,
}

/// Everything an adapter tells the gateway.
#[derive(Debug, Clone)]
pub enum AdapterEvent {
    Uplink(Message),
    Announce(Announcement),
    CommandResult(CommandResult),
    CommandHeld(CommandHeld),
    Notice(Notice),
    Health(LinkHealth),
    Rejected(Rejection),
    Membership(Membership),
}

/// A command the gateway has decided to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Downlink {
    pub command_id: String,
    pub device: DeviceId,
    pub command: Command,
    pub principal: String,
    /// The least assurance the device's profile requires. The decide stage cannot know which
    /// channel a command will travel on; an adapter that reaches one device over channels of
    /// different assurance (BACnet/IP `none`, BACnet/SC `certificate`) refuses to deliver on a
    /// channel below this. Adapters with one channel per device may ignore it.
    pub min_assurance: crate::message::Assurance,
    /// The security labels (`Message::security`) the device's profile accepts; empty for any.
    /// An adapter that labels its uplinks refuses to send under a label not in this list (a
    /// Z-Wave node granted only S0 gets no command a profile reserves for S2 Access Control).
    pub security: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("the gateway closed the adapter's channel")]
    Closed,
}

/// What the gateway hands an adapter when it starts it.
pub struct AdapterContext {
    /// Uplinks, announcements, command results, health. Bounded: a full channel applies backpressure.
    pub events: mpsc::Sender<AdapterEvent>,
    /// Commands that passed the decide stage, for this adapter's devices only.
    pub downlinks: mpsc::Receiver<Downlink>,
    pub credentials: Arc<dyn CredentialLookup>,
    /// Operator actions on the adapter (join windows, scans, removals), only of the kinds it
    /// declared in [`Adapter::operations`].
    pub operations: mpsc::Receiver<Operation>,
    /// This adapter's own durable state.
    pub state: Arc<dyn StateStore>,
    /// Becomes `true` when the gateway shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl AdapterContext {
    /// Sends an event, failing only when the gateway has gone away.
    pub async fn emit(&self, event: AdapterEvent) -> Result<(), AdapterError> {
        self.events
            .send(event)
            .await
            .map_err(|_| AdapterError::Closed)
    }
}

/// A boxed future, so adapters can be held as trait objects.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A protocol adapter.
pub trait Adapter: Send + 'static {
    /// The protocol name used in device ids (`modbus`, `lorawan`, `sim`…).
    fn protocol(&self) -> &'static str;
    /// The operator actions this adapter supports; the gateway refuses the others with a clear
    /// message before they reach it.
    fn operations(&self) -> &'static [OperationKind] {
        &[]
    }
    /// Runs until the transport fails for good or `ctx.shutdown` turns true.
    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new(b"hunter2-very-secret".to_vec());
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"));
        assert_eq!(d, "Secret(19 bytes)");
        assert_eq!(s.expose(), b"hunter2-very-secret");
    }
}
