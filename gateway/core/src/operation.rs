//! Adapter operations: what an operator does to an *adapter* rather than to a device — open a
//! join/inclusion window, close it, run a discovery scan, remove a device from the radio network.
//!
//! One seam for every radio: an adapter declares the operations it supports
//! ([`crate::Adapter::operations`]), receives [`Operation`]s on its context, and reports progress by
//! updating the operation's [`ProgressSender`] (a latest-value channel: a slow reader sees the newest
//! state, never an unbounded backlog). The gateway starts operations from the CLI, the API and MQTT,
//! audits each with its principal, and republishes progress (API stream, retained MQTT state).
//! Nothing here knows a protocol.

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::id::DeviceId;

/// The longest join window or scan an operator may ask for (Zigbee's permit-join maximum is 254 s;
/// longer windows are re-opened by the adapter).
pub const MAX_OPERATION_SECONDS: u32 = 3600;
/// How many per-device lines one progress report keeps (the newest).
pub const MAX_PROGRESS_DEVICES: usize = 32;
/// The longest `step` or `detail` text kept in a progress report.
pub const MAX_PROGRESS_TEXT: usize = 200;
/// The longest `has` (object name or `type:instance`) a scan takes, in bytes.
pub const MAX_HAS_BYTES: usize = 255;

/// The kinds of operation, for capability lists and audit/metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    /// Let new devices join (Zigbee permit-join, Z-Wave inclusion, BLE pairing).
    Join,
    /// Close an open join window early.
    Close,
    /// Look for devices without letting any in (BACnet Who-Is, BLE scan).
    Scan,
    /// Make a device leave the radio network (Zigbee leave, Z-Wave exclusion).
    Remove,
}

impl OperationKind {
    pub const ALL: [Self; 4] = [Self::Join, Self::Close, Self::Scan, Self::Remove];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Close => "close",
            Self::Scan => "scan",
            Self::Remove => "remove",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OperationRequest {
    /// Open a join window for `seconds`. With `device`, only that (provisioned) device may join;
    /// with `install_code_only`, only devices provisioned with an install code may.
    Join {
        seconds: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<DeviceId>,
        #[serde(default)]
        install_code_only: bool,
        /// A Z-Wave S2 DSK PIN from the joining device's label, for S2 Authenticated and Access
        /// Control. Taken in, never serialised back out (progress, MQTT state, audit) nor shown
        /// by `Debug`.
        #[serde(default, skip_serializing)]
        pin: Option<DskPin>,
    },
    Close {},
    /// Look for devices for `seconds`. With `has`, look for the devices that have one object
    /// instead: an object name, or `type:instance` (`analog-value:1`); adapters that cannot
    /// search by object refuse it.
    Scan {
        seconds: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has: Option<String>,
    },
    Remove {
        device: DeviceId,
    },
}

/// The five-digit PIN printed on a Z-Wave S2 device's label: the first two bytes of its DSK
/// (device-specific key, the node's public key), as a big-endian number 00000..65535.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DskPin(u16);

impl DskPin {
    /// The two DSK bytes the PIN stands for.
    pub fn bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

impl fmt::Debug for DskPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DskPin(…)")
    }
}

impl TryFrom<String> for DskPin {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for DskPin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a DSK PIN is five digits (the first group of the device's DSK)".into());
        }
        s.parse::<u16>()
            .map(Self)
            .map_err(|_| "a DSK PIN is at most 65535".into())
    }
}

/// Why a request is refused before it reaches an adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("`seconds` must be between 1 and {MAX_OPERATION_SECONDS}")]
    Seconds,
    #[error("device `{device}` does not belong to the `{protocol}` adapter")]
    WrongProtocol { device: String, protocol: String },
    #[error("`has` must be 1 to {MAX_HAS_BYTES} bytes without control characters")]
    Has,
}

impl OperationRequest {
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::Join { .. } => OperationKind::Join,
            Self::Close {} => OperationKind::Close,
            Self::Scan { .. } => OperationKind::Scan,
            Self::Remove { .. } => OperationKind::Remove,
        }
    }

    /// The device the request names, if any.
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Self::Join { device, .. } => device.as_ref(),
            Self::Remove { device } => Some(device),
            Self::Close {} | Self::Scan { .. } => None,
        }
    }

    /// Checks bounds and that a named device belongs to `protocol`.
    pub fn validate(&self, protocol: &str) -> Result<(), RequestError> {
        match self {
            Self::Join { seconds, .. } | Self::Scan { seconds, .. }
                if *seconds == 0 || *seconds > MAX_OPERATION_SECONDS =>
            {
                return Err(RequestError::Seconds);
            }
            Self::Scan { has: Some(h), .. }
                if h.is_empty() || h.len() > MAX_HAS_BYTES || h.chars().any(char::is_control) =>
            {
                return Err(RequestError::Has);
            }
            _ => {}
        }
        if let Some(d) = self.device()
            && d.protocol() != protocol
        {
            return Err(RequestError::WrongProtocol {
                device: d.to_string(),
                protocol: protocol.to_owned(),
            });
        }
        Ok(())
    }
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OperationState {
    /// Accepted, not yet started by the adapter.
    #[default]
    Queued,
    Running,
    /// Finished as asked (window expired or closed, scan done, device removed).
    Done,
    /// Stopped early: a newer operation replaced it or the operator closed it.
    Cancelled,
    /// The adapter could not do it (`detail` says why).
    Failed,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// No further updates follow.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Cancelled | Self::Failed)
    }
}

/// One device an operation saw, joined, interviewed, refused or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDevice {
    pub device: DeviceId,
    /// e.g. `joined`, `interviewing`, `pending`, `refused: not provisioned`, `removed`.
    pub state: String,
}

/// The live state of an operation: what the CLI's progress line, the API stream and the retained
/// MQTT state show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OperationProgress {
    pub state: OperationState,
    /// For windows and scans: seconds until it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<u32>,
    pub devices_seen: u32,
    pub devices_joined: u32,
    pub devices_refused: u32,
    /// What the adapter is doing now (`interview 0x1a2b: simple descriptor ep 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Free text: why it failed, what it found.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The newest [`MAX_PROGRESS_DEVICES`] devices, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<ProgressDevice>,
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_PROGRESS_TEXT {
        let mut end = MAX_PROGRESS_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s.retain(|c| !c.is_control());
    s
}

impl OperationProgress {
    /// Sets or updates one device's line, keeping the newest [`MAX_PROGRESS_DEVICES`].
    pub fn device(&mut self, device: &DeviceId, state: impl Into<String>) {
        let state = bounded(state.into());
        if let Some(d) = self.devices.iter_mut().find(|d| &d.device == device) {
            d.state = state;
            return;
        }
        if self.devices.len() >= MAX_PROGRESS_DEVICES {
            self.devices.remove(0);
        }
        self.devices.push(ProgressDevice {
            device: device.clone(),
            state,
        });
    }

    pub fn set_step(&mut self, step: Option<String>) {
        self.step = step.map(bounded);
    }

    pub fn set_detail(&mut self, detail: impl Into<String>) {
        self.detail = bounded(detail.into());
    }
}

/// The adapter's end of an operation's progress: cheap to update, never blocks, latest value wins.
#[derive(Debug, Clone)]
pub struct ProgressSender(std::sync::Arc<watch::Sender<OperationProgress>>);

impl ProgressSender {
    /// A progress channel and its first reader.
    pub fn channel() -> (Self, watch::Receiver<OperationProgress>) {
        let (tx, rx) = watch::channel(OperationProgress::default());
        (Self(std::sync::Arc::new(tx)), rx)
    }

    /// Changes the progress in place and wakes readers. Updates after a final state are ignored, so
    /// a finished operation cannot be revived by a late event.
    pub fn update(&self, f: impl FnOnce(&mut OperationProgress)) {
        self.0.send_if_modified(|p| {
            if p.state.is_final() {
                return false;
            }
            let before = p.clone();
            f(p);
            *p != before
        });
    }

    /// Ends the operation with `state` and a detail line.
    pub fn finish(&self, state: OperationState, detail: impl Into<String>) {
        let detail = detail.into();
        self.update(|p| {
            p.state = state;
            p.seconds_left = None;
            p.step = None;
            if !detail.is_empty() {
                p.set_detail(detail);
            }
        });
    }

    pub fn current(&self) -> OperationProgress {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<OperationProgress> {
        self.0.subscribe()
    }
}

/// An operation handed to an adapter.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Unique per gateway run (`op-…`), used in the API, the audit log and MQTT.
    pub id: String,
    pub request: OperationRequest,
    /// Who asked (`operator:<name>`, `mqtt:operator`, …).
    pub principal: String,
    pub progress: ProgressSender,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn requests_parse_from_json_and_refuse_unknown_fields() {
        let r: OperationRequest =
            serde_json::from_str(r#"{"op":"join","seconds":120,"install_code_only":true}"#)
                .unwrap();
        assert_eq!(
            r,
            OperationRequest::Join {
                seconds: 120,
                device: None,
                install_code_only: true,
                pin: None,
            }
        );
        assert_eq!(r.kind(), OperationKind::Join);
        let r: OperationRequest =
            serde_json::from_str(r#"{"op":"remove","device":"zigbee:00124b001caabb01"}"#).unwrap();
        assert_eq!(r.device().unwrap().to_string(), "zigbee:00124b001caabb01");
        assert!(serde_json::from_str::<OperationRequest>(r#"{"op":"join","secs":1}"#).is_err());
        assert!(
            serde_json::from_str::<OperationRequest>(r#"{"op":"close","extra":true}"#).is_err()
        );
        assert!(serde_json::from_str::<OperationRequest>(r#"{"op":"format-disk"}"#).is_err());
    }

    #[test]
    fn a_dsk_pin_is_five_digits_and_never_shown_again() {
        let r: OperationRequest =
            serde_json::from_str(r#"{"op":"join","seconds":60,"pin":"04660"}"#).unwrap();
        let OperationRequest::Join { pin: Some(pin), .. } = &r else {
            panic!("no pin in {r:?}");
        };
        assert_eq!(pin.bytes(), [0x12, 0x34]);
        assert!(!format!("{r:?}").contains("04660"));
        assert!(!format!("{r:?}").contains("4660"));
        let out = serde_json::to_string(&r).unwrap();
        assert_eq!(
            out,
            r#"{"op":"join","seconds":60,"install_code_only":false}"#
        );
        for bad in [
            "1234", "123456", "65536", "99999", "12a45", " 1234", "-1234",
        ] {
            let j = format!(r#"{{"op":"join","seconds":60,"pin":"{bad}"}}"#);
            assert!(
                serde_json::from_str::<OperationRequest>(&j).is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_str::<OperationRequest>(r#"{"op":"join","seconds":60,"pin":4660}"#)
                .is_err()
        );
    }

    #[test]
    fn a_scan_without_has_keeps_its_wire_format() {
        let r: OperationRequest = serde_json::from_str(r#"{"op":"scan","seconds":5}"#).unwrap();
        assert_eq!(
            r,
            OperationRequest::Scan {
                seconds: 5,
                has: None
            }
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"scan","seconds":5}"#
        );
        let r: OperationRequest =
            serde_json::from_str(r#"{"op":"scan","seconds":5,"has":"analog-value:1"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"scan","seconds":5,"has":"analog-value:1"}"#
        );
        assert_eq!(r.validate("bacnet"), Ok(()));
        let has = |h: String| OperationRequest::Scan {
            seconds: 5,
            has: Some(h),
        };
        assert_eq!(
            has(String::new()).validate("bacnet"),
            Err(RequestError::Has)
        );
        assert_eq!(
            has("x".repeat(MAX_HAS_BYTES + 1)).validate("bacnet"),
            Err(RequestError::Has)
        );
        assert_eq!(
            has("a\nb".into()).validate("bacnet"),
            Err(RequestError::Has)
        );
        assert_eq!(has("x".repeat(MAX_HAS_BYTES)).validate("bacnet"), Ok(()));
    }

    #[test]
    fn validation_bounds_seconds_and_checks_the_protocol() {
        let join = |s| OperationRequest::Join {
            seconds: s,
            device: None,
            install_code_only: false,
            pin: None,
        };
        assert_eq!(join(0).validate("zigbee"), Err(RequestError::Seconds));
        assert_eq!(
            join(MAX_OPERATION_SECONDS + 1).validate("zigbee"),
            Err(RequestError::Seconds)
        );
        assert_eq!(join(MAX_OPERATION_SECONDS).validate("zigbee"), Ok(()));
        let remove = OperationRequest::Remove {
            device: "modbus:a".parse().unwrap(),
        };
        assert!(matches!(
            remove.validate("zigbee"),
            Err(RequestError::WrongProtocol { .. })
        ));
        assert_eq!(remove.validate("modbus"), Ok(()));
    }

    #[test]
    fn progress_keeps_the_newest_devices_and_bounds_text() {
        let (tx, rx) = ProgressSender::channel();
        for i in 0..(MAX_PROGRESS_DEVICES + 5) {
            let d: DeviceId = format!("zigbee:{i:016x}").parse().unwrap();
            tx.update(|p| p.device(&d, "joined"));
        }
        tx.update(|p| p.set_detail("x\u{1b}[2J".repeat(100)));
        let p = rx.borrow().clone();
        assert_eq!(p.devices.len(), MAX_PROGRESS_DEVICES);
        assert_eq!(p.devices[0].device.to_string(), "zigbee:0000000000000005");
        assert!(p.detail.len() <= MAX_PROGRESS_TEXT);
        assert!(!p.detail.contains('\u{1b}'));
    }

    #[test]
    fn a_final_state_is_final() {
        let (tx, rx) = ProgressSender::channel();
        tx.update(|p| p.state = OperationState::Running);
        tx.finish(OperationState::Done, "window closed");
        tx.update(|p| {
            p.state = OperationState::Running;
            p.devices_joined = 9;
        });
        let p = rx.borrow().clone();
        assert_eq!(p.state, OperationState::Done);
        assert_eq!(p.devices_joined, 0);
        assert_eq!(p.detail, "window closed");
    }
}
