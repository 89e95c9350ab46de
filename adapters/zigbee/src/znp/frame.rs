//! MT (Monitor and Test) framing used by TI Z-Stack's ZNP over UART: `SOF len cmd0 cmd1 payload FCS`.
//!
//! `cmd0` carries the command type in bits 7-5 (POLL, SREQ, AREQ, SRSP) and the subsystem in bits 4-0;
//! the FCS is the XOR of every byte from `len` through the payload. [`Decoder`] is a streaming parser that
//! resynchronises after garbage, bad checksums and impossible lengths, with a bounded buffer.

use std::fmt;

/// Start-of-frame marker.
pub const SOF: u8 = 0xFE;
/// Largest payload an MT frame may carry.
pub const MAX_PAYLOAD: usize = 250;
/// SOF + len + cmd0 + cmd1 + FCS.
const OVERHEAD: usize = 5;
/// Bytes the decoder keeps at most; older bytes are discarded as garbage when a peer floods it.
pub const DECODER_CAPACITY: usize = 4096;

/// The command type (bits 7-5 of `cmd0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdType {
    Poll = 0,
    Sreq = 1,
    Areq = 2,
    Srsp = 3,
}

impl CmdType {
    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::Poll),
            1 => Some(Self::Sreq),
            2 => Some(Self::Areq),
            3 => Some(Self::Srsp),
            _ => None,
        }
    }
}

/// MT subsystems this driver talks to (bits 4-0 of `cmd0`).
pub mod subsystem {
    pub const RPC_ERROR: u8 = 0x00;
    pub const SYS: u8 = 0x01;
    pub const AF: u8 = 0x04;
    pub const ZDO: u8 = 0x05;
    pub const UTIL: u8 = 0x07;
    pub const APP_CNF: u8 = 0x0F;
}

/// What went wrong building or decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("payload of {0} bytes exceeds the MT maximum of 250")]
    PayloadTooLong(usize),
    #[error("skipped {0} bytes that were not a frame")]
    Garbage(usize),
    #[error("frame check sequence mismatch (expected {expected:#04x}, got {got:#04x})")]
    BadFcs { expected: u8, got: u8 },
    #[error("length byte {0} exceeds the MT maximum of 250")]
    Oversized(u8),
    #[error("reserved command type {0} in cmd0")]
    BadType(u8),
}

/// One MT frame (without SOF/len/FCS, which [`encode`] and [`Decoder`] handle).
#[derive(Clone, PartialEq, Eq)]
pub struct MtFrame {
    cmd_type: CmdType,
    subsystem: u8,
    cmd1: u8,
    payload: Vec<u8>,
}

impl MtFrame {
    /// Builds a frame; `subsystem` is masked to 5 bits; the payload must fit in 250 bytes.
    pub fn new(
        cmd_type: CmdType,
        subsystem: u8,
        cmd1: u8,
        payload: Vec<u8>,
    ) -> Result<Self, FrameError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLong(payload.len()));
        }
        Ok(Self {
            cmd_type,
            subsystem: subsystem & 0x1F,
            cmd1,
            payload,
        })
    }

    /// For payloads short by construction (fixed-layout requests): anything beyond 250 bytes is cut.
    pub(crate) fn bounded(
        cmd_type: CmdType,
        subsystem: u8,
        cmd1: u8,
        mut payload: Vec<u8>,
    ) -> Self {
        payload.truncate(MAX_PAYLOAD);
        Self {
            cmd_type,
            subsystem: subsystem & 0x1F,
            cmd1,
            payload,
        }
    }

    /// Builds a frame from raw `cmd0`/`cmd1` bytes.
    pub fn from_cmd0(cmd0: u8, cmd1: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        let ty = CmdType::from_bits(cmd0 >> 5).ok_or(FrameError::BadType(cmd0 >> 5))?;
        Self::new(ty, cmd0 & 0x1F, cmd1, payload)
    }

    pub fn cmd_type(&self) -> CmdType {
        self.cmd_type
    }
    pub fn subsystem(&self) -> u8 {
        self.subsystem
    }
    pub fn cmd0(&self) -> u8 {
        ((self.cmd_type as u8) << 5) | self.subsystem
    }
    pub fn cmd1(&self) -> u8 {
        self.cmd1
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// True when this frame has this type, subsystem and command id.
    pub fn is(&self, cmd_type: CmdType, subsystem: u8, cmd1: u8) -> bool {
        self.cmd_type == cmd_type && self.subsystem == subsystem && self.cmd1 == cmd1
    }
}

impl fmt::Debug for MtFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads may hold key material (NV writes of PRECFGKEY): only their length is shown.
        write!(
            f,
            "MtFrame({:?} sub={:#04x} cmd1={:#04x} len={})",
            self.cmd_type,
            self.subsystem,
            self.cmd1,
            self.payload.len()
        )
    }
}

fn fcs(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// Serialises a frame with SOF, length and FCS.
pub fn encode(frame: &MtFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.payload.len() + OVERHEAD);
    out.push(SOF);
    // MtFrame::new guarantees payload.len() <= 250.
    out.push(u8::try_from(frame.payload.len()).unwrap_or(u8::MAX));
    out.push(frame.cmd0());
    out.push(frame.cmd1);
    out.extend_from_slice(&frame.payload);
    let check = fcs(out.get(1..).unwrap_or_default());
    out.push(check);
    out
}

/// Streaming MT decoder: feed bytes with [`Decoder::push`], take frames with [`Decoder::next`].
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes dropped because the buffer was full, reported as garbage by the next `next()`.
    overflowed: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. The buffer never exceeds [`DECODER_CAPACITY`]: the oldest bytes go first.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > DECODER_CAPACITY {
            let excess = self.buf.len() - DECODER_CAPACITY;
            self.buf.drain(..excess);
            self.overflowed = self.overflowed.saturating_add(excess);
        }
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, a decoding error (after which decoding continues), or `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<MtFrame, FrameError>> {
        if self.overflowed > 0 {
            let n = std::mem::take(&mut self.overflowed);
            return Some(Err(FrameError::Garbage(n)));
        }
        // Skip to the first SOF.
        match self.buf.iter().position(|&b| b == SOF) {
            None => {
                if self.buf.is_empty() {
                    return None;
                }
                let n = self.buf.len();
                self.buf.clear();
                return Some(Err(FrameError::Garbage(n)));
            }
            Some(0) => {}
            Some(n) => {
                self.buf.drain(..n);
                return Some(Err(FrameError::Garbage(n)));
            }
        }
        let len = *self.buf.get(1)?;
        if usize::from(len) > MAX_PAYLOAD {
            // Not a real frame start: drop this SOF and look for the next one.
            self.buf.drain(..1);
            return Some(Err(FrameError::Oversized(len)));
        }
        let total = usize::from(len) + OVERHEAD;
        let raw = self.buf.get(..total)?;
        let (body, check) = raw.split_at(total - 1);
        let got = check.first().copied().unwrap_or_default();
        let expected = fcs(body.get(1..).unwrap_or_default());
        if expected != got {
            self.buf.drain(..1);
            return Some(Err(FrameError::BadFcs { expected, got }));
        }
        let cmd0 = body.get(2).copied().unwrap_or_default();
        let cmd1 = body.get(3).copied().unwrap_or_default();
        let payload = body.get(4..).unwrap_or_default().to_vec();
        let result = MtFrame::from_cmd0(cmd0, cmd1, payload);
        if result.is_ok() {
            self.buf.drain(..total);
        } else {
            self.buf.drain(..1);
        }
        Some(result)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode_all(bytes: &[u8]) -> (Vec<MtFrame>, usize) {
        let mut d = Decoder::new();
        d.push(bytes);
        let mut frames = vec![];
        let mut errors = 0;
        while let Some(r) = d.next() {
            match r {
                Ok(f) => frames.push(f),
                Err(_) => errors += 1,
            }
        }
        (frames, errors)
    }

    #[test]
    fn sys_version_request_matches_zigpy_znp() {
        let f = MtFrame::new(CmdType::Sreq, subsystem::SYS, 0x02, vec![]).unwrap();
        assert_eq!(encode(&f), hex("fe00210223"));
        let (frames, errors) = decode_all(&hex("fe00210223"));
        assert_eq!((frames, errors), (vec![f], 0));
    }

    #[test]
    fn decodes_zigpy_znp_vectors() {
        use crate::znp::vectors::*;
        for v in [
            SYS_PING_RSP,
            SYS_VERSION_RSP,
            AF_INCOMING_MSG,
            ZDO_SIMPLE_DESC_RSP,
            RPC_ERROR_NOT_RECOGNIZED,
        ] {
            let bytes = hex(v);
            let (frames, errors) = decode_all(&bytes);
            assert_eq!(errors, 0, "{v}");
            assert_eq!(frames.len(), 1);
            assert_eq!(encode(&frames[0]), bytes);
        }
    }

    #[test]
    fn bad_fcs_then_good_frame() {
        let mut bytes = hex("fe00210221"); // wrong FCS
        bytes.extend(hex("fe00210120"));
        let (frames, errors) = decode_all(&bytes);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].cmd1(), 0x01);
        assert!(errors >= 1);
    }

    #[test]
    fn oversized_length_resyncs() {
        let mut bytes = vec![0xFE, 0xFF, 0x00];
        bytes.extend(hex("fe00210120"));
        let (frames, _) = decode_all(&bytes);
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let bytes = hex("fe0261017f0d10");
        let mut d = Decoder::new();
        for b in &bytes[..bytes.len() - 1] {
            d.push(&[*b]);
            assert!(d.next().is_none());
        }
        d.push(&bytes[bytes.len() - 1..]);
        assert!(d.next().unwrap().is_ok());
        assert!(d.next().is_none());
    }

    #[test]
    fn buffer_is_bounded() {
        let mut d = Decoder::new();
        // A frame start that never completes, followed by a flood.
        d.push(&[0xFE, 0x10]);
        for _ in 0..100 {
            d.push(&[0xAA; 1000]);
            assert!(d.buffered() <= DECODER_CAPACITY);
        }
        while d.next().is_some() {}
        d.push(&hex("fe00210120"));
        let mut found = false;
        while let Some(r) = d.next() {
            found |= r.is_ok();
        }
        assert!(found);
    }

    #[test]
    fn payload_limit() {
        assert!(MtFrame::new(CmdType::Sreq, 1, 1, vec![0; 250]).is_ok());
        assert_eq!(
            MtFrame::new(CmdType::Sreq, 1, 1, vec![0; 251]),
            Err(FrameError::PayloadTooLong(251))
        );
    }

    fn arb_frame() -> impl Strategy<Value = MtFrame> {
        (
            0u8..4,
            0u8..32,
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..=250),
        )
            .prop_map(|(t, s, c, p)| MtFrame::new(CmdType::from_bits(t).unwrap(), s, c, p).unwrap())
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_frame(), 1..5)) {
            let mut bytes = vec![];
            for f in &frames { bytes.extend(encode(f)); }
            let (got, errors) = decode_all(&bytes);
            prop_assert_eq!(errors, 0);
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..10)) {
            let mut d = Decoder::new();
            for c in &chunks {
                d.push(c);
                while d.next().is_some() {}
                prop_assert!(d.buffered() <= DECODER_CAPACITY);
            }
        }

        #[test]
        fn good_frame_after_garbage_is_found(garbage in proptest::collection::vec(any::<u8>(), 0..300), f in arb_frame()) {
            // Garbage without SOF bytes (with SOFs, a false frame start could by chance checksum
            // correctly over part of ours; the bad-FCS resync tests cover SOF-bearing noise).
            let mut bytes: Vec<u8> = garbage.iter().map(|&b| if b == SOF { 0x00 } else { b }).collect();
            bytes.extend(encode(&f));
            let (got, _) = decode_all(&bytes);
            prop_assert_eq!(got, vec![f]);
        }
    }
}
