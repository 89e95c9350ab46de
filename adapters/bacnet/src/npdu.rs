//! The network layer PDU (clause 6.2): version, control, optional destination/source network
//! addresses and hop count, then either an APDU or a network-layer message. Warden is not a
//! router: network-layer messages are decoded far enough to be recognised and then ignored.

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16};

use crate::error::{DecodeError, PResult, fail, finish};

pub const VERSION: u8 = 0x01;
/// The longest MAC address accepted in an NPDU (BACnet/IP uses 6, BACnet/IPv6 and SC 3 and 6).
pub const MAX_MAC: usize = 8;

/// A network number and MAC address (`mac` empty = broadcast on that network).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetAddr {
    pub net: u16,
    pub mac: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Apdu(&'a [u8]),
    /// A network-layer message (Who-Is-Router-To-Network, I-Am-Router…): never acted on.
    Network {
        message_type: u8,
        vendor: Option<u16>,
        data: &'a [u8],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Npdu<'a> {
    pub expecting_reply: bool,
    pub priority: u8,
    pub dest: Option<NetAddr>,
    pub source: Option<NetAddr>,
    pub hop_count: Option<u8>,
    pub body: Body<'a>,
}

impl<'a> Npdu<'a> {
    /// A local APDU with no routing information.
    pub fn local(apdu: &'a [u8], expecting_reply: bool) -> Self {
        Self {
            expecting_reply,
            priority: 0,
            dest: None,
            source: None,
            hop_count: None,
            body: Body::Apdu(apdu),
        }
    }
}

fn addr(i: &[u8], source: bool) -> PResult<'_, NetAddr> {
    let (i, net) = be_u16(i)?;
    let (i, len) = be_u8(i)?;
    if net == 0xffff && source {
        return fail(DecodeError::NpduAddress("source network 65535"));
    }
    if net == 0 {
        return fail(DecodeError::NpduAddress("network number 0"));
    }
    if source && len == 0 {
        return fail(DecodeError::NpduAddress("source MAC of length 0"));
    }
    if usize::from(len) > MAX_MAC {
        return fail(DecodeError::NpduAddress("MAC address too long"));
    }
    let (i, mac) = take(usize::from(len))(i)?;
    Ok((
        i,
        NetAddr {
            net,
            mac: mac.to_vec(),
        },
    ))
}

fn parse(i: &[u8]) -> PResult<'_, Npdu<'_>> {
    let (i, version) = be_u8(i)?;
    if version != VERSION {
        return fail(DecodeError::NpduVersion(version));
    }
    let (mut i, control) = be_u8(i)?;
    if control & 0x50 != 0 {
        return fail(DecodeError::NpduAddress("reserved control bits set"));
    }
    let mut dest = None;
    let mut source = None;
    if control & 0x20 != 0 {
        let (r, d) = addr(i, false)?;
        dest = Some(d);
        i = r;
    }
    if control & 0x08 != 0 {
        let (r, s) = addr(i, true)?;
        source = Some(s);
        i = r;
    }
    let mut hop_count = None;
    if dest.is_some() {
        let (r, h) = be_u8(i)?;
        hop_count = Some(h);
        i = r;
    }
    let body = if control & 0x80 != 0 {
        let (r, message_type) = be_u8(i)?;
        let (r, vendor) = if message_type >= 0x80 {
            let (r, v) = be_u16(r)?;
            (r, Some(v))
        } else {
            (r, None)
        };
        i = &[];
        Body::Network {
            message_type,
            vendor,
            data: r,
        }
    } else {
        let b = Body::Apdu(i);
        i = &[];
        b
    };
    Ok((
        i,
        Npdu {
            expecting_reply: control & 0x04 != 0,
            priority: control & 0x03,
            dest,
            source,
            hop_count,
            body,
        },
    ))
}

pub fn decode(b: &[u8]) -> Result<Npdu<'_>, DecodeError> {
    finish(parse(b)).map(|(_, n)| n)
}

pub fn encode(n: &Npdu<'_>) -> Vec<u8> {
    let mut control = n.priority & 0x03;
    if n.expecting_reply {
        control |= 0x04;
    }
    if n.dest.is_some() {
        control |= 0x20;
    }
    if n.source.is_some() {
        control |= 0x08;
    }
    if matches!(n.body, Body::Network { .. }) {
        control |= 0x80;
    }
    let mut out = vec![VERSION, control];
    for a in [&n.dest, &n.source].into_iter().flatten() {
        out.extend_from_slice(&a.net.to_be_bytes());
        out.push(a.mac.len() as u8);
        out.extend_from_slice(&a.mac);
    }
    if n.dest.is_some() {
        out.push(n.hop_count.unwrap_or(255));
    }
    match &n.body {
        Body::Apdu(a) => out.extend_from_slice(a),
        Body::Network {
            message_type,
            vendor,
            data,
        } => {
            out.push(*message_type);
            if let Some(v) = vendor {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(data);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn routed_and_network_messages() {
        // from network 5, MAC 0x0a: SNET present
        let n = decode(&[0x01, 0x08, 0x00, 0x05, 0x01, 0x0a, 0x10, 0x08]).unwrap();
        assert_eq!(
            n.source,
            Some(NetAddr {
                net: 5,
                mac: vec![0x0a]
            })
        );
        assert_eq!(n.body, Body::Apdu(&[0x10, 0x08]));
        // Who-Is-Router-To-Network (network message 0x00)
        let n = decode(&[0x01, 0x80, 0x00]).unwrap();
        assert!(matches!(
            n.body,
            Body::Network {
                message_type: 0,
                ..
            }
        ));
        // errors: version, reserved bits, source length 0, MAC too long, truncated DNET
        assert_eq!(
            decode(&[0x02, 0x00]).unwrap_err(),
            DecodeError::NpduVersion(2)
        );
        assert!(decode(&[0x01, 0x40]).is_err());
        assert!(decode(&[0x01, 0x08, 0x00, 0x05, 0x00]).is_err());
        assert!(
            decode(&[
                0x01, 0x20, 0x00, 0x05, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xff
            ])
            .is_err()
        );
        assert_eq!(
            decode(&[0x01, 0x20, 0x00]).unwrap_err(),
            DecodeError::Truncated
        );
        // vendor-proprietary network message missing its vendor id
        assert_eq!(
            decode(&[0x01, 0x80, 0x80, 0x01]).unwrap_err(),
            DecodeError::Truncated
        );
    }

    fn net_addr(source: bool) -> impl Strategy<Value = NetAddr> {
        let min = usize::from(source);
        (
            1u16..0xffff,
            proptest::collection::vec(any::<u8>(), min..=MAX_MAC),
        )
            .prop_map(|(net, mac)| NetAddr { net, mac })
    }

    proptest! {
        #[test]
        fn round_trips(
            reply in any::<bool>(),
            priority in 0u8..4,
            dest in proptest::option::of(net_addr(false)),
            source in proptest::option::of(net_addr(true)),
            hop in any::<u8>(),
            network in proptest::option::of((0u8..=255, any::<u16>())),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let n = Npdu {
                expecting_reply: reply,
                priority,
                hop_count: dest.as_ref().map(|_| hop),
                dest,
                source,
                body: match network {
                    None => Body::Apdu(&body),
                    Some((t, v)) => Body::Network {
                        message_type: t,
                        vendor: (t >= 0x80).then_some(v),
                        data: &body,
                    },
                },
            };
            let w = encode(&n);
            prop_assert_eq!(decode(&w).unwrap(), n);
        }

        #[test]
        fn arbitrary_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&d);
        }
    }
}
