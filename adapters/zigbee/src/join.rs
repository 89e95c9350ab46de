//! The join gate: whether a device the trust centre reports as joining may stay in the network.
//!
//! Zigbee coordinators admit any device that joins while permit-join is open. Warden decides
//! itself, on every join indication: a device it does not already hold may join only while an
//! operator's window is open, only if the window is not restricted to another device, and only
//! with a provisioned install code when the window (or the config) requires one. A refused device is
//! told to leave and the refusal is audited; a device that passes lands *pending* in the registry,
//! where the gateway's default deny still applies.

use std::collections::HashSet;
use std::time::Instant;

use warden_core::Operation;

use crate::coordinator::Ieee;

/// An open join window.
#[derive(Debug, Clone)]
pub struct Window {
    pub op: Operation,
    pub until: Instant,
    /// Only this device may join.
    pub device: Option<Ieee>,
    /// Only devices with a provisioned install code may join.
    pub install_code_only: bool,
    /// When the coordinator's own permit-join (at most 254 s) runs out.
    pub permit_until: Instant,
}

/// A coordinator's permit-join lasts at most 254 s; an operator's window may be longer. Returns the
/// seconds to re-open it for when it ends within `margin` and the window goes on past it.
pub fn renew_permit(
    now: Instant,
    until: Instant,
    permit_until: Instant,
    max: u32,
    margin: std::time::Duration,
) -> Option<u32> {
    if permit_until >= until || permit_until > now + margin {
        return None;
    }
    let left = u32::try_from(until.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX);
    (left > 0).then(|| left.min(max))
}

/// Why a join was refused. `as_str` is the audit cause and metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No operator window was open.
    OutsideWindow,
    /// The window was opened for another device.
    NotExpected,
    /// The window requires an install code and none is provisioned for this device.
    NoInstallCode,
    /// The adapter already holds `max_devices`.
    TooManyDevices,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutsideWindow => "join-outside-window",
            Self::NotExpected => "join-not-expected",
            Self::NoInstallCode => "join-without-install-code",
            Self::TooManyDevices => "join-too-many-devices",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::OutsideWindow => "joined while no operator join window was open",
            Self::NotExpected => "the open join window is for another device",
            Self::NoInstallCode => "the join window requires a provisioned install code",
            Self::TooManyDevices => "the adapter holds its configured maximum of devices",
        }
    }
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A device the adapter already holds, rejoining (trust-centre rejoin): nothing to decide.
    Known,
    /// A new device, admitted; `install_code` says whether it joined with its own link key.
    Admit {
        install_code: bool,
    },
    Refuse(Refusal),
}

/// What the gate needs to know about the device and the adapter.
pub struct Facts<'a> {
    pub ieee: Ieee,
    pub known: bool,
    pub now: Instant,
    pub window: Option<&'a Window>,
    /// Devices with a provisioned install code (pending or active in the registry).
    pub provisioned: &'a HashSet<Ieee>,
    /// `require_install_codes` from the config.
    pub require_codes: bool,
    pub device_count: usize,
    pub max_devices: usize,
}

pub fn decide(f: &Facts<'_>) -> Admission {
    if f.known {
        return Admission::Known;
    }
    let Some(w) = f.window.filter(|w| f.now < w.until) else {
        return Admission::Refuse(Refusal::OutsideWindow);
    };
    if w.device.is_some_and(|d| d != f.ieee) {
        return Admission::Refuse(Refusal::NotExpected);
    }
    let has_code = f.provisioned.contains(&f.ieee);
    if (w.install_code_only || f.require_codes) && !has_code {
        return Admission::Refuse(Refusal::NoInstallCode);
    }
    if f.device_count >= f.max_devices {
        return Admission::Refuse(Refusal::TooManyDevices);
    }
    Admission::Admit {
        install_code: has_code,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::time::Duration;

    use super::*;
    use warden_core::{OperationRequest, ProgressSender};

    fn window(device: Option<Ieee>, install_code_only: bool, now: Instant) -> Window {
        Window {
            op: Operation {
                id: "op-1".into(),
                request: OperationRequest::Close {},
                principal: "operator:admin".into(),
                progress: ProgressSender::channel().0,
            },
            until: now + Duration::from_secs(60),
            device,
            install_code_only,
            permit_until: now + Duration::from_secs(60),
        }
    }

    #[test]
    fn a_long_window_keeps_the_coordinator_open_to_its_end() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let until = t0 + s(600);
        let margin = s(10);
        // opened for 254 s: nothing to do until shortly before that runs out
        assert_eq!(renew_permit(t0, until, t0 + s(254), 254, margin), None);
        assert_eq!(
            renew_permit(t0 + s(243), until, t0 + s(254), 254, margin),
            None
        );
        assert_eq!(
            renew_permit(t0 + s(245), until, t0 + s(254), 254, margin),
            Some(254)
        );
        // the last stretch: only as long as the window has left
        assert_eq!(
            renew_permit(t0 + s(490), until, t0 + s(499), 254, margin),
            Some(110)
        );
        // the coordinator already outlasts the window, or the window is over
        assert_eq!(
            renew_permit(t0 + s(595), until, t0 + s(600), 254, margin),
            None
        );
        assert_eq!(
            renew_permit(t0 + s(600), until, t0 + s(599), 254, margin),
            None
        );
    }

    /// One row per rule: (name, known, window, provisioned, require_codes, count, expected).
    #[test]
    fn the_join_gate_rule_by_rule() {
        let now = Instant::now();
        let dev = Ieee(0x00124b001caabb01);
        let other = Ieee(0x00124b001caabb02);
        let with_code: HashSet<Ieee> = [dev].into();
        let none: HashSet<Ieee> = HashSet::new();
        let open = window(None, false, now);
        let open_ic = window(None, true, now);
        let for_other = window(Some(other), false, now);
        let for_dev = window(Some(dev), false, now);
        let mut expired = window(None, false, now);
        expired.until = now;
        type Row<'a> = (
            &'a str,
            bool,
            Option<&'a Window>,
            &'a HashSet<Ieee>,
            bool,
            usize,
            Admission,
        );
        let rows: Vec<Row<'_>> = vec![
            (
                "known device rejoining, no window",
                true,
                None,
                &none,
                true,
                0,
                Admission::Known,
            ),
            (
                "new device, no window",
                false,
                None,
                &with_code,
                false,
                0,
                Admission::Refuse(Refusal::OutsideWindow),
            ),
            (
                "new device, window expired",
                false,
                Some(&expired),
                &none,
                false,
                0,
                Admission::Refuse(Refusal::OutsideWindow),
            ),
            (
                "new device, open window",
                false,
                Some(&open),
                &none,
                false,
                0,
                Admission::Admit {
                    install_code: false,
                },
            ),
            (
                "new device with code, open window",
                false,
                Some(&open),
                &with_code,
                false,
                0,
                Admission::Admit { install_code: true },
            ),
            (
                "install-code window, no code",
                false,
                Some(&open_ic),
                &none,
                false,
                0,
                Admission::Refuse(Refusal::NoInstallCode),
            ),
            (
                "install-code window, code",
                false,
                Some(&open_ic),
                &with_code,
                false,
                0,
                Admission::Admit { install_code: true },
            ),
            (
                "config requires codes, none",
                false,
                Some(&open),
                &none,
                true,
                0,
                Admission::Refuse(Refusal::NoInstallCode),
            ),
            (
                "window for another device",
                false,
                Some(&for_other),
                &with_code,
                false,
                0,
                Admission::Refuse(Refusal::NotExpected),
            ),
            (
                "window for this device",
                false,
                Some(&for_dev),
                &none,
                false,
                0,
                Admission::Admit {
                    install_code: false,
                },
            ),
            (
                "adapter full",
                false,
                Some(&open),
                &none,
                false,
                5,
                Admission::Refuse(Refusal::TooManyDevices),
            ),
        ];
        for (name, known, w, provisioned, require_codes, count, want) in rows {
            let got = decide(&Facts {
                ieee: dev,
                known,
                now,
                window: w,
                provisioned,
                require_codes,
                device_count: count,
                max_devices: 5,
            });
            assert_eq!(got, want, "{name}");
        }
    }
}
