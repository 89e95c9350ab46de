//! Application-layer PDU headers (clause 20.1): confirmed and unconfirmed requests, simple and
//! complex ACKs (segmented or not), segment ACKs, errors, rejects and aborts. Service parameters
//! are left as bytes for [`crate::services`].

use nom::number::complete::be_u8;

use crate::error::{DecodeError, PResult, fail, finish};
use crate::tag;

pub mod pdu {
    pub const CONFIRMED: u8 = 0;
    pub const UNCONFIRMED: u8 = 1;
    pub const SIMPLE_ACK: u8 = 2;
    pub const COMPLEX_ACK: u8 = 3;
    pub const SEGMENT_ACK: u8 = 4;
    pub const ERROR: u8 = 5;
    pub const REJECT: u8 = 6;
    pub const ABORT: u8 = 7;
}

/// Segmentation fields of a segmented request or complex ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub sequence: u8,
    pub window: u8,
    pub more_follows: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Apdu<'a> {
    Confirmed {
        segmented_response_accepted: bool,
        /// Encoded max segments (0–7) and max APDU length (0–5) the requester accepts.
        max_segments: u8,
        max_apdu: u8,
        invoke_id: u8,
        segment: Option<Segment>,
        service: u8,
        data: &'a [u8],
    },
    Unconfirmed {
        service: u8,
        data: &'a [u8],
    },
    SimpleAck {
        invoke_id: u8,
        service: u8,
    },
    ComplexAck {
        invoke_id: u8,
        segment: Option<Segment>,
        service: u8,
        data: &'a [u8],
    },
    SegmentAck {
        negative: bool,
        server: bool,
        invoke_id: u8,
        sequence: u8,
        window: u8,
    },
    Error {
        invoke_id: u8,
        service: u8,
        class: u32,
        code: u32,
    },
    Reject {
        invoke_id: u8,
        reason: u8,
    },
    Abort {
        server: bool,
        invoke_id: u8,
        reason: u8,
    },
}

/// Max APDU length accepted, by its 4-bit code.
pub fn max_apdu_octets(code: u8) -> usize {
    match code {
        0 => 50,
        1 => 128,
        2 => 206,
        3 => 480,
        4 => 1024,
        _ => 1476,
    }
}

fn segment(i: &[u8], more_follows: bool) -> PResult<'_, Segment> {
    let (i, sequence) = be_u8(i)?;
    let (i, window) = be_u8(i)?;
    if window == 0 || window > 127 {
        return fail(DecodeError::Unexpected {
            expected: "a window size 1-127",
            found: "a window size out of range",
        });
    }
    Ok((
        i,
        Segment {
            sequence,
            window,
            more_follows,
        },
    ))
}

/// The error class and code of an Error PDU. Most services send two application enumerations;
/// a few (WritePropertyMultiple, CreateObject…) wrap them in context tag 0.
fn error_body(i: &[u8]) -> PResult<'_, (u32, u32)> {
    if tag::peek_context(i, 0) == Some(tag::Lvt::Open) {
        let (r, ()) = tag::opening(i, 0)?;
        let (r, class) = tag::app_enumerated(r)?;
        let (r, code) = tag::app_enumerated(r)?;
        let (_, ()) = tag::closing(r, 0)?;
        // what follows (the first failed element…) is service specific and not needed
        return Ok((&[], (class, code)));
    }
    let (r, class) = tag::app_enumerated(i)?;
    let (r, code) = tag::app_enumerated(r)?;
    Ok((r, (class, code)))
}

fn parse(i: &[u8]) -> PResult<'_, Apdu<'_>> {
    let (r, b0) = be_u8(i)?;
    let kind = b0 >> 4;
    let a = match kind {
        pdu::CONFIRMED => {
            let (r, b1) = be_u8(r)?;
            let (r, invoke_id) = be_u8(r)?;
            let (r, segment) = if b0 & 0x08 != 0 {
                let (r, s) = segment(r, b0 & 0x04 != 0)?;
                (r, Some(s))
            } else {
                (r, None)
            };
            let (r, service) = be_u8(r)?;
            return Ok((
                &[],
                Apdu::Confirmed {
                    segmented_response_accepted: b0 & 0x02 != 0,
                    max_segments: (b1 >> 4) & 0x07,
                    max_apdu: b1 & 0x0f,
                    invoke_id,
                    segment,
                    service,
                    data: r,
                },
            ));
        }
        pdu::UNCONFIRMED => {
            let (r, service) = be_u8(r)?;
            return Ok((&[], Apdu::Unconfirmed { service, data: r }));
        }
        pdu::SIMPLE_ACK => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, service) = be_u8(r)?;
            return Ok((r, Apdu::SimpleAck { invoke_id, service }));
        }
        pdu::COMPLEX_ACK => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, segment) = if b0 & 0x08 != 0 {
                let (r, s) = segment(r, b0 & 0x04 != 0)?;
                (r, Some(s))
            } else {
                (r, None)
            };
            let (r, service) = be_u8(r)?;
            return Ok((
                &[],
                Apdu::ComplexAck {
                    invoke_id,
                    segment,
                    service,
                    data: r,
                },
            ));
        }
        pdu::SEGMENT_ACK => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, sequence) = be_u8(r)?;
            let (r, window) = be_u8(r)?;
            return Ok((
                r,
                Apdu::SegmentAck {
                    negative: b0 & 0x02 != 0,
                    server: b0 & 0x01 != 0,
                    invoke_id,
                    sequence,
                    window,
                },
            ));
        }
        pdu::ERROR => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, service) = be_u8(r)?;
            let (r, (class, code)) = error_body(r)?;
            return Ok((
                r,
                Apdu::Error {
                    invoke_id,
                    service,
                    class,
                    code,
                },
            ));
        }
        pdu::REJECT => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, reason) = be_u8(r)?;
            (r, Apdu::Reject { invoke_id, reason })
        }
        pdu::ABORT => {
            let (r, invoke_id) = be_u8(r)?;
            let (r, reason) = be_u8(r)?;
            (
                r,
                Apdu::Abort {
                    server: b0 & 0x01 != 0,
                    invoke_id,
                    reason,
                },
            )
        }
        t => return fail(DecodeError::ApduType(t)),
    };
    Ok(a)
}

pub fn decode(b: &[u8]) -> Result<Apdu<'_>, DecodeError> {
    let (rest, a) = finish(parse(b))?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    Ok(a)
}

pub fn encode(a: &Apdu<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match a {
        Apdu::Confirmed {
            segmented_response_accepted,
            max_segments,
            max_apdu,
            invoke_id,
            segment,
            service,
            data,
        } => {
            let mut b0 = pdu::CONFIRMED << 4;
            if let Some(s) = segment {
                b0 |= 0x08;
                if s.more_follows {
                    b0 |= 0x04;
                }
            }
            if *segmented_response_accepted {
                b0 |= 0x02;
            }
            out.extend_from_slice(&[
                b0,
                ((max_segments & 7) << 4) | (max_apdu & 0x0f),
                *invoke_id,
            ]);
            if let Some(s) = segment {
                out.extend_from_slice(&[s.sequence, s.window]);
            }
            out.push(*service);
            out.extend_from_slice(data);
        }
        Apdu::Unconfirmed { service, data } => {
            out.extend_from_slice(&[pdu::UNCONFIRMED << 4, *service]);
            out.extend_from_slice(data);
        }
        Apdu::SimpleAck { invoke_id, service } => {
            out.extend_from_slice(&[pdu::SIMPLE_ACK << 4, *invoke_id, *service]);
        }
        Apdu::ComplexAck {
            invoke_id,
            segment,
            service,
            data,
        } => {
            let mut b0 = pdu::COMPLEX_ACK << 4;
            if let Some(s) = segment {
                b0 |= 0x08;
                if s.more_follows {
                    b0 |= 0x04;
                }
            }
            out.extend_from_slice(&[b0, *invoke_id]);
            if let Some(s) = segment {
                out.extend_from_slice(&[s.sequence, s.window]);
            }
            out.push(*service);
            out.extend_from_slice(data);
        }
        Apdu::SegmentAck {
            negative,
            server,
            invoke_id,
            sequence,
            window,
        } => {
            let b0 = (pdu::SEGMENT_ACK << 4) | (u8::from(*negative) << 1) | u8::from(*server);
            out.extend_from_slice(&[b0, *invoke_id, *sequence, *window]);
        }
        Apdu::Error {
            invoke_id,
            service,
            class,
            code,
        } => {
            out.extend_from_slice(&[pdu::ERROR << 4, *invoke_id, *service]);
            tag::put_app(&mut out, &tag::AppValue::Enumerated(*class));
            tag::put_app(&mut out, &tag::AppValue::Enumerated(*code));
        }
        Apdu::Reject { invoke_id, reason } => {
            out.extend_from_slice(&[pdu::REJECT << 4, *invoke_id, *reason]);
        }
        Apdu::Abort {
            server,
            invoke_id,
            reason,
        } => {
            out.extend_from_slice(&[(pdu::ABORT << 4) | u8::from(*server), *invoke_id, *reason]);
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
    fn headers_from_the_wire() {
        // ReadProperty request, invoke 1, max 1476, segmented response accepted
        let a = decode(&[
            0x02, 0x75, 0x01, 0x0c, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x55,
        ])
        .unwrap();
        assert!(matches!(
            a,
            Apdu::Confirmed {
                segmented_response_accepted: true,
                max_segments: 7,
                max_apdu: 5,
                invoke_id: 1,
                service: 12,
                ..
            }
        ));
        // Error: class object (1), code unknown-object (31)
        assert_eq!(
            decode(&[0x50, 0x02, 0x0c, 0x91, 0x01, 0x91, 0x1f]).unwrap(),
            Apdu::Error {
                invoke_id: 2,
                service: 12,
                class: 1,
                code: 31
            }
        );
        // Error wrapped in [0] (WritePropertyMultiple style) with a trailing element
        assert!(matches!(
            decode(&[
                0x50, 0x03, 0x10, 0x0e, 0x91, 0x02, 0x91, 0x20, 0x0f, 0x1c, 0, 0, 0, 1
            ])
            .unwrap(),
            Apdu::Error {
                class: 2,
                code: 32,
                ..
            }
        ));
        assert_eq!(decode(&[0x80]).unwrap_err(), DecodeError::ApduType(8));
        assert_eq!(decode(&[0x30, 0x01]).unwrap_err(), DecodeError::Truncated);
        // segmented complex ACK with window 0
        assert!(decode(&[0x3c, 0x01, 0x00, 0x00, 0x0e]).is_err());
        assert_eq!(
            decode(&[0x20, 1, 12, 9]).unwrap_err(),
            DecodeError::Trailing(1)
        );
    }

    fn seg() -> impl Strategy<Value = Option<Segment>> {
        proptest::option::of((any::<u8>(), 1u8..128, any::<bool>()).prop_map(
            |(sequence, window, more_follows)| Segment {
                sequence,
                window,
                more_follows,
            },
        ))
    }

    proptest! {
        #[test]
        fn round_trips(
            which in 0u8..8,
            b in any::<bool>(),
            ms in 0u8..8, ma in 0u8..16,
            id in any::<u8>(), svc in any::<u8>(), x in any::<u8>(),
            s in seg(),
            class in any::<u32>(), code in any::<u32>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let a = match which {
                0 => Apdu::Confirmed { segmented_response_accepted: b, max_segments: ms, max_apdu: ma, invoke_id: id, segment: s, service: svc, data: &data },
                1 => Apdu::Unconfirmed { service: svc, data: &data },
                2 => Apdu::SimpleAck { invoke_id: id, service: svc },
                3 => Apdu::ComplexAck { invoke_id: id, segment: s, service: svc, data: &data },
                4 => Apdu::SegmentAck { negative: b, server: !b, invoke_id: id, sequence: x, window: svc },
                5 => Apdu::Error { invoke_id: id, service: svc, class, code },
                6 => Apdu::Reject { invoke_id: id, reason: x },
                _ => Apdu::Abort { server: b, invoke_id: id, reason: x },
            };
            let w = encode(&a);
            prop_assert_eq!(decode(&w).unwrap(), a);
        }

        #[test]
        fn arbitrary_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&d);
        }
    }
}
