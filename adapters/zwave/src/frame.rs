//! The Z-Wave Serial API's framing layer (Silicon Labs INS12350 / the Serial API host application
//! guide): single-byte ACK `0x06`, NAK `0x15`, CAN `0x18`, and data frames
//! `SOF(0x01) LEN TYPE FUNC DATA… CHECKSUM`, where LEN counts TYPE through CHECKSUM and the checksum
//! is `0xFF` XOR every byte from LEN to the last data byte.
//!
//! [`Decoder`] turns an untrusted byte stream into [`Unit`]s: it never panics, never allocates
//! more than one frame (LEN is a byte, so at most 256 bytes), resynchronises on garbage and reports
//! a bad checksum so the link can answer NAK.

use std::fmt;

pub const SOF: u8 = 0x01;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;
pub const CAN: u8 = 0x18;

/// The smallest LEN a data frame can carry: TYPE, FUNC, CHECKSUM.
pub const MIN_LEN: u8 = 3;

/// Request (`0x00`) or response (`0x01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Request,
    Response,
}

impl FrameType {
    pub fn byte(self) -> u8 {
        match self {
            Self::Request => 0x00,
            Self::Response => 0x01,
        }
    }
}

/// One data frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub func: u8,
    pub data: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} func {:#04x} [", self.kind, self.func)?;
        for (i, b) in self.data.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str("]")
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Serial API frame carries at most {max} data bytes, not {len}")]
pub struct TooLong {
    pub len: usize,
    pub max: usize,
}

/// The most data bytes one frame can carry (LEN is one byte and counts three more).
pub const MAX_DATA: usize = 255 - 3;

impl Frame {
    pub fn request(func: u8, data: Vec<u8>) -> Self {
        Self {
            kind: FrameType::Request,
            func,
            data,
        }
    }

    pub fn response(func: u8, data: Vec<u8>) -> Self {
        Self {
            kind: FrameType::Response,
            func,
            data,
        }
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, TooLong> {
        if self.data.len() > MAX_DATA {
            return Err(TooLong {
                len: self.data.len(),
                max: MAX_DATA,
            });
        }
        // Bounded above: data.len() + 3 <= 255.
        let len = u8::try_from(self.data.len() + 3).map_err(|_| TooLong {
            len: self.data.len(),
            max: MAX_DATA,
        })?;
        let mut out = Vec::with_capacity(self.data.len() + 5);
        out.push(SOF);
        out.push(len);
        out.push(self.kind.byte());
        out.push(self.func);
        out.extend_from_slice(&self.data);
        out.push(checksum(out.get(1..).unwrap_or_default()));
        Ok(out)
    }
}

/// `0xFF` XOR the bytes.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0xFF, |acc, b| acc ^ b)
}

/// What the decoder found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    Ack,
    Nak,
    Can,
    Frame(Frame),
    /// A complete frame whose checksum is wrong: answer NAK.
    BadChecksum,
    /// A complete frame with a TYPE that is neither request nor response, or a LEN below the
    /// minimum: answer NAK, like a bad checksum.
    Malformed(&'static str),
    /// Bytes that start nothing, skipped to resynchronise.
    Garbage(usize),
}

/// Incremental decoder over a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of an unfinished frame held; the link drops them when the frame's byte timeout
    /// passes ([`Decoder::reset`]).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Forgets an unfinished frame (the Serial API's RX timeout).
    pub fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        n
    }

    /// Feeds bytes; returns every unit completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Unit> {
        let mut out = Vec::new();
        let mut garbage = 0usize;
        for &b in bytes {
            if self.buf.is_empty() {
                match b {
                    ACK | NAK | CAN | SOF => {
                        if garbage > 0 {
                            out.push(Unit::Garbage(garbage));
                            garbage = 0;
                        }
                        match b {
                            ACK => out.push(Unit::Ack),
                            NAK => out.push(Unit::Nak),
                            CAN => out.push(Unit::Can),
                            _ => self.buf.push(b),
                        }
                    }
                    _ => garbage += 1,
                }
                continue;
            }
            self.buf.push(b);
            if let Some(u) = self.complete() {
                out.push(u);
            }
        }
        if garbage > 0 {
            out.push(Unit::Garbage(garbage));
        }
        out
    }

    /// A unit when `buf` (starting with SOF) holds a whole frame.
    fn complete(&mut self) -> Option<Unit> {
        let len = *self.buf.get(1)?;
        if len < MIN_LEN {
            self.buf.clear();
            return Some(Unit::Malformed("LEN below 3"));
        }
        let total = usize::from(len) + 2;
        if self.buf.len() < total {
            return None;
        }
        let frame = std::mem::take(&mut self.buf);
        let (body, sum) = frame.split_at(total - 1);
        let Some(&sum) = sum.first() else {
            return Some(Unit::Malformed("no checksum"));
        };
        let Some(payload) = body.get(1..) else {
            return Some(Unit::Malformed("short frame"));
        };
        if checksum(payload) != sum {
            return Some(Unit::BadChecksum);
        }
        let (kind, func, data) = match body {
            [_, _, kind, func, data @ ..] => (*kind, *func, data),
            _ => return Some(Unit::Malformed("short frame")),
        };
        let kind = match kind {
            0x00 => FrameType::Request,
            0x01 => FrameType::Response,
            _ => return Some(Unit::Malformed("TYPE is neither request nor response")),
        };
        Some(Unit::Frame(Frame {
            kind,
            func,
            data: data.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn get_version_encodes_as_the_serial_api_guide_shows() {
        assert_eq!(
            Frame::request(0x15, vec![]).encode().unwrap(),
            hex("01 03 00 15 e9")
        );
        // SEND_DATA to node 2: Binary Switch Set 0xff, TX options 0x25, callback 1.
        assert_eq!(
            Frame::request(0x13, hex("02 03 25 01 ff 25 01"))
                .encode()
                .unwrap(),
            hex("01 0a 00 13 02 03 25 01 ff 25 01 18")
        );
    }

    #[test]
    fn a_stream_of_ack_response_and_callback_splits_into_units() {
        let mut d = Decoder::new();
        let units = d.push(&hex("06 01 04 01 13 01 e8 01 05 00 13 01 00 e8"));
        assert_eq!(
            units,
            vec![
                Unit::Ack,
                Unit::Frame(Frame::response(0x13, vec![0x01])),
                Unit::Frame(Frame::request(0x13, vec![0x01, 0x00])),
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_frame_split_across_reads_is_reassembled() {
        let bytes = hex("01 0c 00 04 00 03 06 31 05 01 22 00 d7 32");
        let mut d = Decoder::new();
        for (i, b) in bytes.iter().enumerate() {
            let u = d.push(&[*b]);
            if i + 1 < bytes.len() {
                assert!(u.is_empty(), "unit before the last byte: {u:?}");
            } else {
                assert_eq!(
                    u,
                    vec![Unit::Frame(Frame::request(
                        0x04,
                        hex("00 03 06 31 05 01 22 00 d7")
                    ))]
                );
            }
        }
    }

    #[test]
    fn bad_checksum_short_len_bad_type_and_garbage_are_reported_and_skipped() {
        let mut d = Decoder::new();
        assert_eq!(d.push(&hex("01 03 00 15 e8")), vec![Unit::BadChecksum]);
        assert_eq!(
            d.push(&hex("01 02 00")),
            vec![Unit::Malformed("LEN below 3"), Unit::Garbage(1)]
        );
        let mut bad_type = hex("01 03 07 15");
        bad_type.push(checksum(&bad_type[1..]));
        assert!(matches!(d.push(&bad_type)[0], Unit::Malformed(_)));
        // Garbage, then a good frame: the frame survives.
        assert_eq!(
            d.push(&hex("ff fe 00 01 03 00 15 e9")),
            vec![Unit::Garbage(3), Unit::Frame(Frame::request(0x15, vec![]))]
        );
    }

    #[test]
    fn an_unfinished_frame_is_dropped_by_reset() {
        let mut d = Decoder::new();
        assert!(d.push(&hex("01 0c 00 04")).is_empty());
        assert_eq!(d.reset(), 4);
        assert_eq!(
            d.push(&hex("01 03 00 15 e9")),
            vec![Unit::Frame(Frame::request(0x15, vec![]))]
        );
    }

    #[test]
    fn oversized_data_is_refused_at_encode() {
        assert!(Frame::request(0x13, vec![0; MAX_DATA]).encode().is_ok());
        assert_eq!(
            Frame::request(0x13, vec![0; MAX_DATA + 1]).encode(),
            Err(TooLong {
                len: MAX_DATA + 1,
                max: MAX_DATA
            })
        );
    }
}
