//! BACnet Secure Connect virtual link control (ASHRAE 135-2020 Annex AB.2): the header every
//! BVLC-SC message carries inside one WebSocket binary frame — function, control flags, message
//! id, optional originating and destination VMACs, optional header options — and the payload of
//! each function. Decoding is total: a typed [`DecodeError`], never a panic; header options
//! Warden does not understand are skipped unless they are marked "must understand".

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16};

use crate::error::{DecodeError, PResult, fail, finish};

pub mod func {
    pub const RESULT: u8 = 0x00;
    pub const ENCAPSULATED_NPDU: u8 = 0x01;
    pub const ADDRESS_RESOLUTION: u8 = 0x02;
    pub const ADDRESS_RESOLUTION_ACK: u8 = 0x03;
    pub const ADVERTISEMENT: u8 = 0x04;
    pub const ADVERTISEMENT_SOLICITATION: u8 = 0x05;
    pub const CONNECT_REQUEST: u8 = 0x06;
    pub const CONNECT_ACCEPT: u8 = 0x07;
    pub const DISCONNECT_REQUEST: u8 = 0x08;
    pub const DISCONNECT_ACK: u8 = 0x09;
    pub const HEARTBEAT_REQUEST: u8 = 0x0a;
    pub const HEARTBEAT_ACK: u8 = 0x0b;
    pub const PROPRIETARY: u8 = 0x0c;
}

/// Control flag bits (AB.2.2).
mod control {
    pub const ORIGIN: u8 = 0x08;
    pub const DESTINATION: u8 = 0x04;
    pub const DEST_OPTIONS: u8 = 0x02;
    pub const DATA_OPTIONS: u8 = 0x01;
    pub const RESERVED: u8 = 0xf0;
}

/// Header option marker bits (AB.2.3).
mod option {
    pub const MORE: u8 = 0x80;
    pub const MUST_UNDERSTAND: u8 = 0x40;
    pub const HAS_DATA: u8 = 0x20;
}

/// The error codes Warden itself sends or recognises in a BVLC-Result NAK (clause 18).
pub mod error_code {
    /// Error class `communication`.
    pub const CLASS_COMMUNICATION: u16 = 7;
    pub const HEADER_NOT_UNDERSTOOD: u16 = 0x0b;
    pub const BVLC_FUNCTION_UNKNOWN: u16 = 0x0c;
    pub const NODE_DUPLICATE_VMAC: u16 = 0x71;
}

/// A 6-octet BACnet/SC virtual MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vmac(pub [u8; 6]);

impl Vmac {
    /// The local broadcast VMAC.
    pub const BROADCAST: Vmac = Vmac([0xff; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Parses `02:00:00:00:00:0a` (or without colons).
    pub fn parse(s: &str) -> Option<Vmac> {
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        if hex.len() != 12 {
            return None;
        }
        let mut v = [0u8; 6];
        for (i, b) in v.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Vmac(v))
    }
}

impl std::fmt::Display for Vmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The parameters Connect-Request and Connect-Accept carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectInfo {
    pub vmac: Vmac,
    pub uuid: [u8; 16],
    pub max_bvlc: u16,
    pub max_npdu: u16,
}

/// A BVLC-Result NAK's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nak {
    /// The header option marker that caused it, or 0.
    pub header_marker: u8,
    pub class: u16,
    pub code: u16,
    /// Free text from the peer (UTF-8; lossy when it is not).
    pub details: String,
}

/// One BVLC-SC function with its payload. Payloads borrow from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// BVLC-Result for `function`: `None` = ACK, `Some` = NAK.
    Result {
        function: u8,
        nak: Option<Nak>,
    },
    EncapsulatedNpdu(&'a [u8]),
    AddressResolution,
    /// The peer's WebSocket URIs for direct connections (space separated).
    AddressResolutionAck(String),
    Advertisement {
        hub_status: u8,
        accepts_direct: u8,
        max_bvlc: u16,
        max_npdu: u16,
    },
    AdvertisementSolicitation,
    ConnectRequest(ConnectInfo),
    ConnectAccept(ConnectInfo),
    DisconnectRequest,
    DisconnectAck,
    HeartbeatRequest,
    HeartbeatAck,
    Proprietary {
        vendor: u16,
        function: u8,
        data: &'a [u8],
    },
}

impl Body<'_> {
    pub fn function(&self) -> u8 {
        match self {
            Self::Result { .. } => func::RESULT,
            Self::EncapsulatedNpdu(_) => func::ENCAPSULATED_NPDU,
            Self::AddressResolution => func::ADDRESS_RESOLUTION,
            Self::AddressResolutionAck(_) => func::ADDRESS_RESOLUTION_ACK,
            Self::Advertisement { .. } => func::ADVERTISEMENT,
            Self::AdvertisementSolicitation => func::ADVERTISEMENT_SOLICITATION,
            Self::ConnectRequest(_) => func::CONNECT_REQUEST,
            Self::ConnectAccept(_) => func::CONNECT_ACCEPT,
            Self::DisconnectRequest => func::DISCONNECT_REQUEST,
            Self::DisconnectAck => func::DISCONNECT_ACK,
            Self::HeartbeatRequest => func::HEARTBEAT_REQUEST,
            Self::HeartbeatAck => func::HEARTBEAT_ACK,
            Self::Proprietary { .. } => func::PROPRIETARY,
        }
    }
}

/// One BVLC-SC message. Header options are skipped when decoded and never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub message_id: u16,
    pub origin: Option<Vmac>,
    pub destination: Option<Vmac>,
    pub body: Body<'a>,
}

fn vmac(i: &[u8]) -> PResult<'_, Vmac> {
    let (r, b) = take(6usize)(i)?;
    let mut v = [0u8; 6];
    v.copy_from_slice(b);
    Ok((r, Vmac(v)))
}

/// Skips one list of header options; an option marked "must understand" is refused, since
/// Warden understands none.
fn skip_options(mut i: &[u8]) -> PResult<'_, ()> {
    for _ in 0..256 {
        let (r, marker) = be_u8(i)?;
        if marker & option::MUST_UNDERSTAND != 0 {
            return fail(DecodeError::ScOptionNotUnderstood(marker));
        }
        let r = if marker & option::HAS_DATA != 0 {
            let (r, len) = be_u16(r)?;
            let (r, _) = take(usize::from(len))(r)?;
            r
        } else {
            r
        };
        i = r;
        if marker & option::MORE == 0 {
            return Ok((i, ()));
        }
    }
    fail(DecodeError::TooMany(256))
}

fn connect_info(i: &[u8]) -> PResult<'_, ConnectInfo> {
    let (r, vmac) = vmac(i)?;
    let (r, u) = take(16usize)(r)?;
    let (r, max_bvlc) = be_u16(r)?;
    let (r, max_npdu) = be_u16(r)?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(u);
    Ok((
        r,
        ConnectInfo {
            vmac,
            uuid,
            max_bvlc,
            max_npdu,
        },
    ))
}

fn body(function: u8, i: &[u8]) -> PResult<'_, Body<'_>> {
    let empty = |b: Body<'static>| -> PResult<'_, Body<'_>> { Ok((i, b)) };
    match function {
        func::RESULT => {
            let (r, for_function) = be_u8(i)?;
            let (r, code) = be_u8(r)?;
            match code {
                0 => Ok((
                    r,
                    Body::Result {
                        function: for_function,
                        nak: None,
                    },
                )),
                1 => {
                    let (r, header_marker) = be_u8(r)?;
                    let (r, class) = be_u16(r)?;
                    let (r, code) = be_u16(r)?;
                    Ok((
                        &[],
                        Body::Result {
                            function: for_function,
                            nak: Some(Nak {
                                header_marker,
                                class,
                                code,
                                details: String::from_utf8_lossy(r).chars().take(256).collect(),
                            }),
                        },
                    ))
                }
                _ => fail(DecodeError::Unexpected {
                    expected: "a BVLC-Result code (0 ACK, 1 NAK)",
                    found: "another result code",
                }),
            }
        }
        func::ENCAPSULATED_NPDU => {
            if i.is_empty() {
                return fail(DecodeError::Truncated);
            }
            Ok((&[], Body::EncapsulatedNpdu(i)))
        }
        func::ADDRESS_RESOLUTION => empty(Body::AddressResolution),
        func::ADDRESS_RESOLUTION_ACK => {
            let s = std::str::from_utf8(i).map_err(|_| {
                nom::Err::Failure(DecodeError::Unexpected {
                    expected: "UTF-8 WebSocket URIs",
                    found: "invalid UTF-8",
                })
            })?;
            Ok((&[], Body::AddressResolutionAck(s.to_owned())))
        }
        func::ADVERTISEMENT => {
            let (r, hub_status) = be_u8(i)?;
            let (r, accepts_direct) = be_u8(r)?;
            let (r, max_bvlc) = be_u16(r)?;
            let (r, max_npdu) = be_u16(r)?;
            Ok((
                r,
                Body::Advertisement {
                    hub_status,
                    accepts_direct,
                    max_bvlc,
                    max_npdu,
                },
            ))
        }
        func::ADVERTISEMENT_SOLICITATION => empty(Body::AdvertisementSolicitation),
        func::CONNECT_REQUEST => {
            let (r, c) = connect_info(i)?;
            Ok((r, Body::ConnectRequest(c)))
        }
        func::CONNECT_ACCEPT => {
            let (r, c) = connect_info(i)?;
            Ok((r, Body::ConnectAccept(c)))
        }
        func::DISCONNECT_REQUEST => empty(Body::DisconnectRequest),
        func::DISCONNECT_ACK => empty(Body::DisconnectAck),
        func::HEARTBEAT_REQUEST => empty(Body::HeartbeatRequest),
        func::HEARTBEAT_ACK => empty(Body::HeartbeatAck),
        func::PROPRIETARY => {
            let (r, vendor) = be_u16(i)?;
            let (r, function) = be_u8(r)?;
            Ok((
                &[],
                Body::Proprietary {
                    vendor,
                    function,
                    data: r,
                },
            ))
        }
        f => fail(DecodeError::ScFunction(f)),
    }
}

fn parse(i: &[u8]) -> PResult<'_, Message<'_>> {
    let (r, function) = be_u8(i)?;
    let (r, flags) = be_u8(r)?;
    if flags & control::RESERVED != 0 {
        return fail(DecodeError::ScControl(flags));
    }
    let (r, message_id) = be_u16(r)?;
    let (r, origin) = if flags & control::ORIGIN != 0 {
        let (r, v) = vmac(r)?;
        (r, Some(v))
    } else {
        (r, None)
    };
    let (r, destination) = if flags & control::DESTINATION != 0 {
        let (r, v) = vmac(r)?;
        (r, Some(v))
    } else {
        (r, None)
    };
    let (r, _) = if flags & control::DEST_OPTIONS != 0 {
        skip_options(r)?
    } else {
        (r, ())
    };
    let (r, _) = if flags & control::DATA_OPTIONS != 0 {
        if function != func::ENCAPSULATED_NPDU {
            // data options belong to Encapsulated-NPDU only (AB.2.3)
            return fail(DecodeError::Unexpected {
                expected: "data options on an Encapsulated-NPDU only",
                found: "data options on another function",
            });
        }
        skip_options(r)?
    } else {
        (r, ())
    };
    let (r, body) = body(function, r)?;
    if !r.is_empty() {
        return fail(DecodeError::Trailing(r.len()));
    }
    Ok((
        r,
        Message {
            message_id,
            origin,
            destination,
            body,
        },
    ))
}

/// Decodes one BVLC-SC message (one WebSocket binary frame's payload).
pub fn decode(msg: &[u8]) -> Result<Message<'_>, DecodeError> {
    finish(parse(msg)).map(|(_, m)| m)
}

fn put_connect(out: &mut Vec<u8>, c: &ConnectInfo) {
    out.extend_from_slice(&c.vmac.0);
    out.extend_from_slice(&c.uuid);
    out.extend_from_slice(&c.max_bvlc.to_be_bytes());
    out.extend_from_slice(&c.max_npdu.to_be_bytes());
}

/// Encodes one BVLC-SC message (no header options).
pub fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut flags = 0u8;
    if m.origin.is_some() {
        flags |= control::ORIGIN;
    }
    if m.destination.is_some() {
        flags |= control::DESTINATION;
    }
    let mut out = Vec::with_capacity(32);
    out.push(m.body.function());
    out.push(flags);
    out.extend_from_slice(&m.message_id.to_be_bytes());
    if let Some(v) = m.origin {
        out.extend_from_slice(&v.0);
    }
    if let Some(v) = m.destination {
        out.extend_from_slice(&v.0);
    }
    match &m.body {
        Body::Result { function, nak } => {
            out.push(*function);
            match nak {
                None => out.push(0),
                Some(n) => {
                    out.push(1);
                    out.push(n.header_marker);
                    out.extend_from_slice(&n.class.to_be_bytes());
                    out.extend_from_slice(&n.code.to_be_bytes());
                    out.extend_from_slice(n.details.as_bytes());
                }
            }
        }
        Body::EncapsulatedNpdu(n) => out.extend_from_slice(n),
        Body::AddressResolutionAck(s) => out.extend_from_slice(s.as_bytes()),
        Body::Advertisement {
            hub_status,
            accepts_direct,
            max_bvlc,
            max_npdu,
        } => {
            out.push(*hub_status);
            out.push(*accepts_direct);
            out.extend_from_slice(&max_bvlc.to_be_bytes());
            out.extend_from_slice(&max_npdu.to_be_bytes());
        }
        Body::ConnectRequest(c) | Body::ConnectAccept(c) => put_connect(&mut out, c),
        Body::Proprietary {
            vendor,
            function,
            data,
        } => {
            out.extend_from_slice(&vendor.to_be_bytes());
            out.push(*function);
            out.extend_from_slice(data);
        }
        Body::AddressResolution
        | Body::AdvertisementSolicitation
        | Body::DisconnectRequest
        | Body::DisconnectAck
        | Body::HeartbeatRequest
        | Body::HeartbeatAck => {}
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const NODE: Vmac = Vmac([2, 0, 0, 0, 0, 2]);
    const HUB: Vmac = Vmac([2, 0, 0, 0, 0, 1]);

    /// Vectors captured from a bac-py 1.5.7 hub and node exchanging Annex AB messages.
    #[test]
    fn annex_ab_vectors_decode_and_encode_byte_for_byte() {
        let uuid = |last: [u8; 2]| {
            let mut u = [0u8; 16];
            u[6] = 0x40;
            u[8] = 0x80;
            u[14] = last[0];
            u[15] = last[1];
            u
        };
        let cases: Vec<(&str, Message<'static>)> = vec![
            (
                "0600000102000000000200000000000040008000000000002001064005d9",
                Message {
                    message_id: 1,
                    origin: None,
                    destination: None,
                    body: Body::ConnectRequest(ConnectInfo {
                        vmac: NODE,
                        uuid: uuid([0x20, 0x01]),
                        max_bvlc: 1600,
                        max_npdu: 1497,
                    }),
                },
            ),
            (
                "0700000102000000000100000000000040008000000000001001177005d9",
                Message {
                    message_id: 1,
                    origin: None,
                    destination: None,
                    body: Body::ConnectAccept(ConnectInfo {
                        vmac: HUB,
                        uuid: uuid([0x10, 0x01]),
                        max_bvlc: 6000,
                        max_npdu: 1497,
                    }),
                },
            ),
            (
                "0a000002",
                Message {
                    message_id: 2,
                    origin: None,
                    destination: None,
                    body: Body::HeartbeatRequest,
                },
            ),
            (
                "0b000002",
                Message {
                    message_id: 2,
                    origin: None,
                    destination: None,
                    body: Body::HeartbeatAck,
                },
            ),
            (
                "0000123406010000070071",
                Message {
                    message_id: 0x1234,
                    origin: None,
                    destination: None,
                    body: Body::Result {
                        function: func::CONNECT_REQUEST,
                        nak: Some(Nak {
                            header_marker: 0,
                            class: error_code::CLASS_COMMUNICATION,
                            code: error_code::NODE_DUPLICATE_VMAC,
                            details: String::new(),
                        }),
                    },
                },
            ),
        ];
        for (h, want) in cases {
            let bytes = hex(h);
            assert_eq!(decode(&bytes).unwrap(), want, "{h}");
            assert_eq!(encode(&want), bytes, "{h}");
        }
    }

    #[test]
    fn encapsulated_npdu_vectors_carry_vmacs_and_the_npdu() {
        // ReadProperty from node to hub device (origin + destination)
        let rp = hex("010c000002000000000202000000000101040205000c0c008000011955");
        let m = decode(&rp).unwrap();
        assert_eq!(m.origin, Some(NODE));
        assert_eq!(m.destination, Some(HUB));
        assert_eq!(
            m.body,
            Body::EncapsulatedNpdu(&hex("01040205000c0c008000011955"))
        );
        assert_eq!(encode(&m), rp);
        // the hub forwards a unicast with the origin only
        let ack = hex("01080000020000000001010030000c0c0080000119553e4441a800003f");
        let m = decode(&ack).unwrap();
        assert_eq!((m.origin, m.destination), (Some(HUB), None));
        let Body::EncapsulatedNpdu(n) = m.body else {
            panic!()
        };
        // the NPDU inside is an ordinary ReadProperty-ACK of 21.0
        let np = crate::npdu::decode(n).unwrap();
        let crate::npdu::Body::Apdu(a) = np.body else {
            panic!()
        };
        let crate::apdu::Apdu::ComplexAck { data, .. } = crate::apdu::decode(a).unwrap() else {
            panic!()
        };
        let v = crate::services::decode_read_property_ack(data).unwrap();
        assert_eq!(
            crate::services::first_app(&v.value),
            Some(&crate::tag::AppValue::Real(21.0))
        );
        // a broadcast Who-Is keeps the broadcast destination
        let who = hex("010c0000020000000002ffffffffffff0120ffff00ff1008");
        let who = decode(&who).unwrap();
        assert!(who.destination.unwrap().is_broadcast());
    }

    #[test]
    fn header_options_are_skipped_unless_they_must_be_understood() {
        // Encapsulated-NPDU with a data option: Secure Path (type 1, no data), then one with
        // 3 bytes of data (proprietary, type 31)
        let mut m = vec![0x01, 0x01, 0x00, 0x07];
        m.extend_from_slice(&[0x80 | 0x01, 0x20 | 0x1f, 0x00, 0x03, 9, 9, 9]);
        m.extend_from_slice(&[0x01, 0x20]);
        let d = decode(&m).unwrap();
        assert_eq!(d.body, Body::EncapsulatedNpdu(&[0x01, 0x20]));
        // destination option marked must-understand
        let m = [0x0a, 0x02, 0x00, 0x01, 0x40 | 0x05];
        assert_eq!(
            decode(&m).unwrap_err(),
            DecodeError::ScOptionNotUnderstood(0x45)
        );
        // an option whose data runs past the end
        let m = [0x0a, 0x02, 0x00, 0x01, 0x20 | 0x1f, 0x00, 0x09, 1];
        assert_eq!(decode(&m).unwrap_err(), DecodeError::Truncated);
        // data options on a heartbeat
        let m = [0x0a, 0x01, 0x00, 0x01, 0x01];
        assert!(matches!(
            decode(&m).unwrap_err(),
            DecodeError::Unexpected { .. }
        ));
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Truncated);
        assert_eq!(
            decode(&[0x0a, 0x00, 0x00]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            decode(&[0x0a, 0x10, 0x00, 0x01]).unwrap_err(),
            DecodeError::ScControl(0x10)
        );
        assert_eq!(
            decode(&[0x0d, 0x00, 0x00, 0x01]).unwrap_err(),
            DecodeError::ScFunction(0x0d)
        );
        assert_eq!(
            decode(&[0x0a, 0x00, 0x00, 0x01, 0xff]).unwrap_err(),
            DecodeError::Trailing(1)
        );
        // a Connect-Accept one byte short, an origin VMAC cut off, an empty NPDU
        let short = hex("0700000102000000000100000000000040008000000000001001177005");
        assert_eq!(decode(&short).unwrap_err(), DecodeError::Truncated);
        assert_eq!(
            decode(&[0x01, 0x08, 0, 0, 2, 0]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            decode(&[0x01, 0x00, 0, 0]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            decode(&[0x00, 0x00, 0, 0, 6, 7]).unwrap_err().cause(),
            "malformed"
        );
    }

    #[test]
    fn vmac_text() {
        assert_eq!(
            Vmac::parse("02:00:00:00:00:0a"),
            Some(Vmac([2, 0, 0, 0, 0, 10]))
        );
        assert_eq!(
            Vmac::parse("0200000000ff"),
            Some(Vmac([2, 0, 0, 0, 0, 255]))
        );
        assert_eq!(Vmac::parse("02:00"), None);
        assert_eq!(Vmac::parse("zz:00:00:00:00:00"), None);
        assert_eq!(Vmac([2, 0, 0, 0, 0, 10]).to_string(), "02:00:00:00:00:0a");
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]
    use super::*;
    use proptest::prelude::*;

    fn vmac() -> impl Strategy<Value = Option<Vmac>> {
        proptest::option::of(any::<[u8; 6]>().prop_map(Vmac))
    }

    fn info() -> impl Strategy<Value = ConnectInfo> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(v, uuid, max_bvlc, max_npdu)| ConnectInfo {
                vmac: Vmac(v),
                uuid,
                max_bvlc,
                max_npdu,
            })
    }

    fn body() -> impl Strategy<Value = (u8, Vec<u8>, String, Option<(u8, u16, u16)>, ConnectInfo)> {
        (
            0u8..13,
            proptest::collection::vec(any::<u8>(), 1..64),
            "[ -~]{0,40}",
            proptest::option::of((any::<u8>(), any::<u16>(), any::<u16>())),
            info(),
        )
    }

    proptest! {
        /// encode → decode gives back every message, for every function.
        #[test]
        fn round_trip(
            message_id in any::<u16>(),
            origin in vmac(),
            destination in vmac(),
            (f, data, text, nak, c) in body(),
            small in any::<(u8, u8, u16, u16)>(),
        ) {
            let b = match f {
                0 => Body::Result {
                    function: small.0,
                    nak: nak.map(|(m, class, code)| Nak { header_marker: m, class, code, details: text.clone() }),
                },
                1 => Body::EncapsulatedNpdu(&data),
                2 => Body::AddressResolution,
                3 => Body::AddressResolutionAck(text.clone()),
                4 => Body::Advertisement { hub_status: small.0, accepts_direct: small.1, max_bvlc: small.2, max_npdu: small.3 },
                5 => Body::AdvertisementSolicitation,
                6 => Body::ConnectRequest(c),
                7 => Body::ConnectAccept(c),
                8 => Body::DisconnectRequest,
                9 => Body::DisconnectAck,
                10 => Body::HeartbeatRequest,
                11 => Body::HeartbeatAck,
                _ => Body::Proprietary { vendor: small.2, function: small.0, data: &data },
            };
            let m = Message { message_id, origin, destination, body: b };
            let bytes = encode(&m);
            prop_assert_eq!(decode(&bytes).unwrap(), m);
        }

        /// Random bytes never panic the decoder.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
        }
    }
}
