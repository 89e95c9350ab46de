//! Security 2 key exchange messages (the including node's side): KEX Get/Report/Set/Fail, Public
//! Key Report, Network Key Get/Report/Verify and Transfer End.

use super::session::{CC, Class};

pub const KEX_GET: u8 = 0x04;
pub const KEX_REPORT: u8 = 0x05;
pub const KEX_SET: u8 = 0x06;
pub const KEX_FAIL: u8 = 0x07;
pub const PUBLIC_KEY_REPORT: u8 = 0x08;
pub const NETWORK_KEY_GET: u8 = 0x09;
pub const NETWORK_KEY_REPORT: u8 = 0x0a;
pub const NETWORK_KEY_VERIFY: u8 = 0x0b;
pub const TRANSFER_END: u8 = 0x0c;

/// KEX scheme 1 (bit 1 of the scheme bitmask) and the Curve25519 ECDH profile (bit 0).
pub const SCHEME_1: u8 = 0x02;
pub const CURVE25519: u8 = 0x01;

/// KEX Fail types.
pub mod fail {
    pub const KEX_KEY: u8 = 0x01;
    pub const KEX_SCHEME: u8 = 0x02;
    pub const KEX_CURVES: u8 = 0x03;
    pub const DECRYPT: u8 = 0x05;
    pub const CANCEL: u8 = 0x06;
    pub const AUTH: u8 = 0x07;
    pub const KEY_GET: u8 = 0x08;
    pub const KEY_VERIFY: u8 = 0x09;
    pub const KEY_REPORT: u8 = 0x0a;
}

/// A KEX Report (or the echo of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KexReport {
    pub echo: bool,
    pub request_csa: bool,
    pub schemes: u8,
    pub profiles: u8,
    /// Bitmask: S2 Unauthenticated 0x01, Authenticated 0x02, Access Control 0x04, S0 0x80.
    pub requested: u8,
}

pub fn parse_kex_report(p: &[u8]) -> Option<KexReport> {
    match p {
        [CC, KEX_REPORT, flags, schemes, profiles, requested, ..] => Some(KexReport {
            echo: flags & 0x01 != 0,
            request_csa: flags & 0x02 != 0,
            schemes: *schemes,
            profiles: *profiles,
            requested: *requested,
        }),
        _ => None,
    }
}

pub fn kex_report_echo(r: &KexReport) -> Vec<u8> {
    vec![
        CC,
        KEX_REPORT,
        0x01 | if r.request_csa { 0x02 } else { 0 },
        r.schemes,
        r.profiles,
        r.requested,
    ]
}

/// KEX Set: scheme 1, Curve25519, the granted keys; `echo` for the node's echo.
pub fn kex_set(granted: u8) -> Vec<u8> {
    vec![CC, KEX_SET, 0x00, SCHEME_1, CURVE25519, granted]
}

/// The node's echo of our KEX Set: (echo flag, scheme, profile, granted).
pub fn parse_kex_set(p: &[u8]) -> Option<(bool, u8, u8, u8)> {
    match p {
        [CC, KEX_SET, flags, scheme, profile, granted, ..] => {
            Some((flags & 0x01 != 0, *scheme, *profile, *granted))
        }
        _ => None,
    }
}

pub fn kex_fail(kind: u8) -> Vec<u8> {
    vec![CC, KEX_FAIL, kind]
}

pub fn public_key_report(key: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![CC, PUBLIC_KEY_REPORT, 0x01];
    v.extend_from_slice(key);
    v
}

/// A joining node's public key (the including-node flag clear).
pub fn parse_public_key(p: &[u8]) -> Option<[u8; 32]> {
    match p {
        [CC, PUBLIC_KEY_REPORT, flags, rest @ ..] if flags & 0x01 == 0 => {
            rest.get(..32).and_then(|k| k.try_into().ok())
        }
        _ => None,
    }
}

/// The class a Network Key Get asks for.
pub fn parse_network_key_get(p: &[u8]) -> Option<Class> {
    match p {
        [CC, NETWORK_KEY_GET, bits, ..] => Class::from_bit(*bits),
        _ => None,
    }
}

pub fn network_key_report(class: Class, key: &[u8; 16]) -> Vec<u8> {
    let mut v = vec![CC, NETWORK_KEY_REPORT, class.bit()];
    v.extend_from_slice(key);
    v
}

/// Transfer End from Warden: the key just verified.
pub fn transfer_end_verified() -> Vec<u8> {
    vec![CC, TRANSFER_END, 0x02]
}

/// A node's Transfer End: (key verified, key request complete).
pub fn parse_transfer_end(p: &[u8]) -> Option<(bool, bool)> {
    match p {
        [CC, TRANSFER_END, flags, ..] => Some((flags & 0x02 != 0, flags & 0x01 != 0)),
        _ => None,
    }
}
