//! BACnet Virtual Link Control for BACnet/IP (Annex J): the 4-octet header on every UDP
//! datagram, the NPDU-carrying functions (original unicast/broadcast, forwarded, distribute
//! broadcast) and the BBMD management Warden uses as a foreign device (register, result).

use std::net::{Ipv4Addr, SocketAddrV4};

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16};

use crate::error::{DecodeError, PResult, fail, finish};

pub const TYPE_BIP: u8 = 0x81;

pub mod func {
    pub const RESULT: u8 = 0x00;
    pub const WRITE_BDT: u8 = 0x01;
    pub const READ_BDT: u8 = 0x02;
    pub const READ_BDT_ACK: u8 = 0x03;
    pub const FORWARDED_NPDU: u8 = 0x04;
    pub const REGISTER_FOREIGN_DEVICE: u8 = 0x05;
    pub const READ_FDT: u8 = 0x06;
    pub const READ_FDT_ACK: u8 = 0x07;
    pub const DELETE_FDT_ENTRY: u8 = 0x08;
    pub const DISTRIBUTE_BROADCAST: u8 = 0x09;
    pub const ORIGINAL_UNICAST: u8 = 0x0a;
    pub const ORIGINAL_BROADCAST: u8 = 0x0b;
    pub const SECURE_BVLL: u8 = 0x0c;
}

/// One BVLC message. NPDU payloads borrow from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bvlc<'a> {
    /// BVLC-Result with its result code (0 = success; 0x30 = register-foreign-device NAK…).
    Result(u16),
    OriginalUnicast(&'a [u8]),
    OriginalBroadcast(&'a [u8]),
    /// A broadcast a BBMD forwarded, with the address of the device that originated it.
    Forwarded {
        origin: SocketAddrV4,
        npdu: &'a [u8],
    },
    DistributeBroadcast(&'a [u8]),
    /// Register-Foreign-Device with its time-to-live in seconds.
    RegisterForeignDevice(u16),
    /// A BBMD-management function Warden does not act on (tables, secure BVLL).
    Other {
        function: u8,
        body: &'a [u8],
    },
}

impl Bvlc<'_> {
    /// The NPDU it carries, if any.
    pub fn npdu(&self) -> Option<&[u8]> {
        match self {
            Self::OriginalUnicast(n)
            | Self::OriginalBroadcast(n)
            | Self::DistributeBroadcast(n)
            | Self::Forwarded { npdu: n, .. } => Some(n),
            _ => None,
        }
    }
}

fn parse(i: &[u8]) -> PResult<'_, Bvlc<'_>> {
    let total = i.len();
    let (r, t) = be_u8(i)?;
    if t != TYPE_BIP {
        return fail(DecodeError::NotBacnetIp(t));
    }
    let (r, function) = be_u8(r)?;
    let (r, len) = be_u16(r)?;
    if usize::from(len) != total || len < 4 {
        return fail(DecodeError::BvlcLength {
            declared: usize::from(len),
            actual: total,
        });
    }
    let b = match function {
        func::RESULT => {
            let (r2, code) = be_u16(r)?;
            return Ok((r2, Bvlc::Result(code)));
        }
        func::ORIGINAL_UNICAST => Bvlc::OriginalUnicast(r),
        func::ORIGINAL_BROADCAST => Bvlc::OriginalBroadcast(r),
        func::DISTRIBUTE_BROADCAST => Bvlc::DistributeBroadcast(r),
        func::FORWARDED_NPDU => {
            let (r2, ip) = take(4usize)(r)?;
            let (r2, port) = be_u16(r2)?;
            let ip: [u8; 4] = ip
                .try_into()
                .map_err(|_| nom::Err::Failure(DecodeError::Truncated))?;
            return Ok((
                &[],
                Bvlc::Forwarded {
                    origin: SocketAddrV4::new(Ipv4Addr::from(ip), port),
                    npdu: r2,
                },
            ));
        }
        func::REGISTER_FOREIGN_DEVICE => {
            let (r2, ttl) = be_u16(r)?;
            return Ok((r2, Bvlc::RegisterForeignDevice(ttl)));
        }
        func::WRITE_BDT
        | func::READ_BDT
        | func::READ_BDT_ACK
        | func::READ_FDT
        | func::READ_FDT_ACK
        | func::DELETE_FDT_ENTRY
        | func::SECURE_BVLL => Bvlc::Other { function, body: r },
        _ => {
            return fail(DecodeError::Unexpected {
                expected: "a BVLC function",
                found: "an undefined function code",
            });
        }
    };
    Ok((&[], b))
}

/// Decodes a whole datagram. The BVLC length must equal the datagram's; nothing may trail.
pub fn decode(datagram: &[u8]) -> Result<Bvlc<'_>, DecodeError> {
    let (rest, b) = finish(parse(datagram))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(b)
}

/// Encodes a BVLC message. Fails only when the datagram would exceed 65535 octets.
pub fn encode(b: &Bvlc<'_>) -> Option<Vec<u8>> {
    let (function, body): (u8, Vec<u8>) = match b {
        Bvlc::Result(code) => (func::RESULT, code.to_be_bytes().to_vec()),
        Bvlc::OriginalUnicast(n) => (func::ORIGINAL_UNICAST, n.to_vec()),
        Bvlc::OriginalBroadcast(n) => (func::ORIGINAL_BROADCAST, n.to_vec()),
        Bvlc::DistributeBroadcast(n) => (func::DISTRIBUTE_BROADCAST, n.to_vec()),
        Bvlc::Forwarded { origin, npdu } => {
            let mut v = origin.ip().octets().to_vec();
            v.extend_from_slice(&origin.port().to_be_bytes());
            v.extend_from_slice(npdu);
            (func::FORWARDED_NPDU, v)
        }
        Bvlc::RegisterForeignDevice(ttl) => {
            (func::REGISTER_FOREIGN_DEVICE, ttl.to_be_bytes().to_vec())
        }
        Bvlc::Other { function, body } => (*function, body.to_vec()),
    };
    let len = u16::try_from(body.len() + 4).ok()?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(TYPE_BIP);
    out.push(function);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_checks() {
        // Who-Is broadcast as bacpypes3 sends it
        let who_is = [0x81, 0x0b, 0x00, 0x08, 0x01, 0x00, 0x10, 0x08];
        assert_eq!(
            decode(&who_is).unwrap(),
            Bvlc::OriginalBroadcast(&[0x01, 0x00, 0x10, 0x08])
        );
        assert_eq!(
            decode(&[0x82, 0x0b, 0x00, 0x04]).unwrap_err(),
            DecodeError::NotBacnetIp(0x82)
        );
        assert!(matches!(
            decode(&[0x81, 0x0a, 0x00, 0x09, 1, 2]).unwrap_err(),
            DecodeError::BvlcLength { .. }
        ));
        assert!(matches!(
            decode(&[0x81, 0x0a, 0x00, 0x02]).unwrap_err(),
            DecodeError::BvlcLength { .. }
        ));
        assert_eq!(decode(&[0x81, 0x0a]).unwrap_err(), DecodeError::Truncated);
        // forwarded NPDU shorter than its origin address
        assert_eq!(
            decode(&[0x81, 0x04, 0x00, 0x07, 127, 0, 0]).unwrap_err(),
            DecodeError::Truncated
        );
        // a result with trailing bytes
        assert_eq!(
            decode(&[0x81, 0x00, 0x00, 0x07, 0, 0, 9]).unwrap_err(),
            DecodeError::Trailing(1)
        );
        assert!(decode(&[0x81, 0x7f, 0x00, 0x04]).is_err());
    }

    fn bvlc() -> impl Strategy<Value = (u8, Vec<u8>, SocketAddrV4, u16)> {
        (
            0u8..6,
            proptest::collection::vec(any::<u8>(), 0..200),
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddrV4::new(ip.into(), p)),
            any::<u16>(),
        )
    }

    proptest! {
        #[test]
        fn round_trips((which, npdu, origin, n) in bvlc()) {
            let b = match which {
                0 => Bvlc::OriginalUnicast(&npdu),
                1 => Bvlc::OriginalBroadcast(&npdu),
                2 => Bvlc::DistributeBroadcast(&npdu),
                3 => Bvlc::Forwarded { origin, npdu: &npdu },
                4 => Bvlc::RegisterForeignDevice(n),
                _ => Bvlc::Result(n),
            };
            let wire = encode(&b).unwrap();
            prop_assert_eq!(decode(&wire).unwrap(), b);
        }

        #[test]
        fn arbitrary_datagrams_never_panic(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&d);
        }
    }
}
