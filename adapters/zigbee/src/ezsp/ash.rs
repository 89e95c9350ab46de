//! ASH v2 (Asynchronous Serial Host), the link layer under EZSP on a UART.
//!
//! Three layers, each usable on its own:
//! - frame codec: [`Frame::to_bytes`] / [`Frame::parse`] (control byte, data-field randomisation,
//!   CRC-CCITT) and [`encode`] (byte stuffing + flag byte);
//! - [`Decoder`]: a bounded streaming decoder that turns raw serial bytes into frames, honouring
//!   CANCEL (0x1A) and SUBSTITUTE (0x18) and counting bad frames;
//! - [`Ash`]: a sans-I/O host state machine — RST/RSTACK handshake, sequence numbers mod 8, ACK of
//!   every received DATA frame, duplicate detection, NAK on bad frames, retransmission with the
//!   adaptive `T_RX_ACK` timer, ERROR frames.
//!
//! The transmit window is one frame. EZSP over UART allows a single command outstanding at a time
//! (the host waits for the response before sending the next command), so a larger window would
//! never fill; with one frame in flight retransmission and acknowledgement stay trivial.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Flag byte: ends a frame.
pub const FLAG: u8 = 0x7E;
/// Escape byte: the next byte is XORed with [`FLIP`].
pub const ESCAPE: u8 = 0x7D;
pub const XON: u8 = 0x11;
pub const XOFF: u8 = 0x13;
/// Substitute byte: a low-level error replaced a byte; the frame is discarded.
pub const SUBSTITUTE: u8 = 0x18;
/// Cancel byte: discard what was received of the current frame.
pub const CANCEL: u8 = 0x1A;
pub const FLIP: u8 = 0x20;

/// ASH protocol version carried in RSTACK and ERROR.
pub const ASH_VERSION: u8 = 0x02;
/// Largest EZSP frame an ASH DATA frame carries.
pub const MAX_PAYLOAD: usize = 128;
/// Largest unstuffed frame: control + payload + CRC.
pub const MAX_FRAME: usize = 1 + MAX_PAYLOAD + 2;

/// ASH timer constants (UG101): initial, minimum and maximum `T_RX_ACK`, RSTACK wait, retries.
pub const T_RX_ACK_INIT: Duration = Duration::from_millis(1600);
pub const T_RX_ACK_MIN: Duration = Duration::from_millis(400);
pub const T_RX_ACK_MAX: Duration = Duration::from_millis(3200);
pub const T_RSTACK_MAX: Duration = Duration::from_millis(3200);
pub const ACK_TIMEOUTS: u8 = 5;

/// One byte of CRC-CCITT (polynomial 0x1021, MSB first, no reflection), bit by bit: the
/// definition the tables below are built from, at compile time.
const fn crc_step(crc: u16, byte: u8) -> u16 {
    let mut crc = crc ^ ((byte as u16) << 8);
    let mut bit = 0;
    while bit < 8 {
        crc = if crc & 0x8000 != 0 {
            (crc << 1) ^ 0x1021
        } else {
            crc << 1
        };
        bit += 1;
    }
    crc
}

/// `table[i]`: the CRC register (from zero) after byte `i` then `zeros` zero bytes.
const fn crc_table(zeros: usize) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut rest: &mut [u16] = &mut table;
    let mut byte: u8 = 0;
    while let Some((slot, tail)) = rest.split_first_mut() {
        let mut crc = crc_step(0, byte);
        let mut z = 0;
        while z < zeros {
            crc = crc_step(crc, 0);
            z += 1;
        }
        *slot = crc;
        rest = tail;
        byte = byte.wrapping_add(1);
    }
    table
}

/// The byte-at-a-time table (256 entries), and the three more "slicing-by-4" needs: the CRC is
/// linear, so four bytes fold in as four independent lookups instead of a chain of four.
const CRC_TABLE: [u16; 256] = crc_table(0);
const CRC_TABLE_1: [u16; 256] = crc_table(1);
const CRC_TABLE_2: [u16; 256] = crc_table(2);
const CRC_TABLE_3: [u16; 256] = crc_table(3);

#[inline(always)]
fn crc_lookup(table: &[u16; 256], index: u8) -> u16 {
    // A `u8` index is always within the 256 entries: the fallback is never taken (and the
    // bounds check compiles away).
    table.get(usize::from(index)).copied().unwrap_or(0)
}

/// CRC-CCITT as ASH uses it: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.
pub fn crc_ccitt(data: &[u8]) -> u16 {
    let (quads, tail) = data.as_chunks::<4>();
    let mut crc: u16 = 0xFFFF;
    for &[b0, b1, b2, b3] in quads {
        // The register XORs into the first two bytes; each byte then contributes its table
        // entry for the number of bytes that follow it.
        let [x0, x1] = (crc ^ u16::from_be_bytes([b0, b1])).to_be_bytes();
        crc = crc_lookup(&CRC_TABLE_3, x0)
            ^ crc_lookup(&CRC_TABLE_2, x1)
            ^ crc_lookup(&CRC_TABLE_1, b2)
            ^ crc_lookup(&CRC_TABLE, b3);
    }
    for &b in tail {
        let [hi, _] = crc.to_be_bytes();
        crc = (crc << 8) ^ crc_lookup(&CRC_TABLE, hi ^ b);
    }
    crc
}

/// ASH's pseudo-random LFSR (seed 0x42, polynomial 0xB8): the next state.
const fn lfsr_next(rand: u8) -> u8 {
    if rand & 1 == 0 {
        rand >> 1
    } else {
        (rand >> 1) ^ 0xB8
    }
}

const LFSR_SEED: u8 = 0x42;
/// Period of the LFSR: 0xB8 is a maximal-length polynomial, so every non-zero state recurs after
/// 255 steps (checked at compile time below).
const RAND_PERIOD: usize = 255;

/// One period of the pseudo-random sequence, built at compile time. The sequence restarts from
/// the seed for every frame and repeats with [`RAND_PERIOD`], so it covers any length.
const RAND_SEQ: [u8; RAND_PERIOD] = {
    let mut seq = [0u8; RAND_PERIOD];
    let mut rest: &mut [u8] = &mut seq;
    let mut rand = LFSR_SEED;
    while let Some((slot, tail)) = rest.split_first_mut() {
        *slot = rand;
        rand = lfsr_next(rand);
        rest = tail;
    }
    assert!(rand == LFSR_SEED, "the ASH LFSR period is not RAND_PERIOD");
    seq
};

/// XOR the data field with ASH's pseudo-random sequence (LFSR seed 0x42, polynomial 0xB8).
/// Applying it twice restores the input.
pub fn randomize(data: &mut [u8]) {
    for chunk in data.chunks_mut(RAND_PERIOD) {
        for (b, r) in chunk.iter_mut().zip(RAND_SEQ.iter()) {
            *b ^= r;
        }
    }
}

/// [`randomize`] from `data` onto the end of `out` (no intermediate copy).
fn extend_randomized(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len());
    for chunk in data.chunks(RAND_PERIOD) {
        out.extend(chunk.iter().zip(RAND_SEQ.iter()).map(|(b, r)| b ^ r));
    }
}

fn is_reserved(b: u8) -> bool {
    matches!(b, FLAG | ESCAPE | XON | XOFF | SUBSTITUTE | CANCEL)
}

/// Byte stuffing: every reserved byte becomes `ESCAPE, byte ^ 0x20`.
pub fn stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    stuff_into(&mut out, data);
    out
}

/// [`stuff`] onto the end of `out`.
fn stuff_into(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len() + 4);
    for &b in data {
        if is_reserved(b) {
            out.push(ESCAPE);
            out.push(b ^ FLIP);
        } else {
            out.push(b);
        }
    }
}

/// Reverse of [`stuff`]; `None` when the input ends in a lone escape byte.
pub fn unstuff(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let mut esc = false;
    for &b in data {
        if esc {
            out.push(b ^ FLIP);
            esc = false;
        } else if b == ESCAPE {
            esc = true;
        } else {
            out.push(b);
        }
    }
    (!esc).then_some(out)
}

/// One ASH frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        frm_num: u8,
        re_tx: bool,
        ack_num: u8,
        /// The EZSP frame (de-randomised).
        payload: Vec<u8>,
    },
    Ack {
        ack_num: u8,
        not_ready: bool,
    },
    Nak {
        ack_num: u8,
        not_ready: bool,
    },
    Rst,
    RstAck {
        version: u8,
        reset_code: u8,
    },
    Error {
        version: u8,
        code: u8,
    },
}

/// Why a received frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AshError {
    #[error("frame too short ({0} bytes)")]
    TooShort(usize),
    #[error("bad CRC")]
    BadCrc,
    #[error("unknown control byte {0:#04x}")]
    UnknownControl(u8),
    #[error("bad length {len} for control {control:#04x}")]
    BadLength { control: u8, len: usize },
    #[error("frame longer than {MAX_FRAME} bytes")]
    Overflow,
    #[error("frame discarded after a SUBSTITUTE byte or a dangling escape")]
    Aborted,
}

impl Frame {
    /// Control byte + (randomised) data field + CRC, before byte stuffing.
    pub fn to_bytes(&self) -> Vec<u8> {
        let data_len = match self {
            Self::Data { payload, .. } => payload.len(),
            _ => 2,
        };
        let mut out = Vec::with_capacity(1 + data_len + 2);
        match self {
            Self::Data {
                frm_num,
                re_tx,
                ack_num,
                payload,
            } => {
                out.push(((frm_num & 7) << 4) | (u8::from(*re_tx) << 3) | (ack_num & 7));
                extend_randomized(&mut out, payload);
            }
            Self::Ack { ack_num, not_ready } => {
                out.push(0x80 | (u8::from(*not_ready) << 3) | (ack_num & 7));
            }
            Self::Nak { ack_num, not_ready } => {
                out.push(0xA0 | (u8::from(*not_ready) << 3) | (ack_num & 7));
            }
            Self::Rst => out.push(0xC0),
            Self::RstAck {
                version,
                reset_code,
            } => out.extend_from_slice(&[0xC1, *version, *reset_code]),
            Self::Error { version, code } => out.extend_from_slice(&[0xC2, *version, *code]),
        }
        let crc = crc_ccitt(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parse an unstuffed frame (control, data, CRC).
    pub fn parse(raw: &[u8]) -> Result<Self, AshError> {
        if raw.len() < 3 {
            return Err(AshError::TooShort(raw.len()));
        }
        if raw.len() > MAX_FRAME {
            return Err(AshError::Overflow);
        }
        let body_len = raw.len() - 2;
        let (body, crc) = raw.split_at(body_len);
        let want = u16::from_be_bytes([
            crc.first().copied().unwrap_or(0),
            crc.get(1).copied().unwrap_or(0),
        ]);
        if crc_ccitt(body) != want {
            return Err(AshError::BadCrc);
        }
        let (&control, data) = body.split_first().ok_or(AshError::TooShort(raw.len()))?;
        let fixed = |len: usize| {
            if data.len() == len {
                Ok(())
            } else {
                Err(AshError::BadLength {
                    control,
                    len: data.len(),
                })
            }
        };
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        if control & 0x80 == 0 {
            if data.is_empty() {
                return Err(AshError::BadLength { control, len: 0 });
            }
            let mut payload = Vec::with_capacity(data.len());
            extend_randomized(&mut payload, data);
            return Ok(Self::Data {
                frm_num: (control >> 4) & 7,
                re_tx: control & 0x08 != 0,
                ack_num: control & 7,
                payload,
            });
        }
        match control & 0xE0 {
            0x80 => {
                fixed(0)?;
                return Ok(Self::Ack {
                    ack_num: control & 7,
                    not_ready: control & 0x08 != 0,
                });
            }
            0xA0 => {
                fixed(0)?;
                return Ok(Self::Nak {
                    ack_num: control & 7,
                    not_ready: control & 0x08 != 0,
                });
            }
            _ => {}
        }
        match control {
            0xC0 => fixed(0).map(|()| Self::Rst),
            0xC1 => fixed(2).map(|()| Self::RstAck {
                version: byte(0),
                reset_code: byte(1),
            }),
            0xC2 => fixed(2).map(|()| Self::Error {
                version: byte(0),
                code: byte(1),
            }),
            other => Err(AshError::UnknownControl(other)),
        }
    }
}

/// A frame ready for the wire: stuffed, followed by the flag byte.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, frame);
    out
}

/// [`encode`] onto the end of `out`.
fn encode_into(out: &mut Vec<u8>, frame: &Frame) {
    stuff_into(out, &frame.to_bytes());
    out.push(FLAG);
}

/// Streaming decoder: feed it serial bytes, get frames (or the reason one was rejected) back.
/// Its buffer is bounded by [`MAX_FRAME`]; an overlong frame is discarded up to the next flag.
/// The buffer is reused from frame to frame: after the first frame the decoder allocates only the
/// payload a DATA frame hands out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    escape: bool,
    /// Discard everything up to the next flag (after an overflow or a SUBSTITUTE byte).
    discarding: Option<AshError>,
    /// Frames rejected (bad CRC, bad layout, overflow, aborted).
    pub bad_frames: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_FRAME),
            ..Self::default()
        }
    }

    /// Feed one byte. Returns `Some` when a flag closed a non-empty frame.
    pub fn push(&mut self, b: u8) -> Option<Result<Frame, AshError>> {
        match b {
            FLAG => {
                let escape = std::mem::replace(&mut self.escape, false);
                let res = if let Some(err) = self.discarding.take() {
                    Some(Err(err))
                } else if escape {
                    Some(Err(AshError::Aborted))
                } else if self.buf.is_empty() {
                    None
                } else {
                    Some(Frame::parse(&self.buf))
                };
                self.buf.clear();
                if matches!(res, Some(Err(_))) {
                    self.bad_frames += 1;
                }
                res
            }
            CANCEL => {
                self.buf.clear();
                self.escape = false;
                self.discarding = None;
                None
            }
            SUBSTITUTE => {
                self.buf.clear();
                self.escape = false;
                self.discarding = Some(AshError::Aborted);
                None
            }
            XON | XOFF => None,
            ESCAPE => {
                self.escape = true;
                None
            }
            _ => {
                if self.discarding.is_some() {
                    return None;
                }
                let v = if std::mem::replace(&mut self.escape, false) {
                    b ^ FLIP
                } else {
                    b
                };
                if self.buf.len() >= MAX_FRAME {
                    self.buf.clear();
                    self.discarding = Some(AshError::Overflow);
                } else {
                    self.buf.push(v);
                }
                None
            }
        }
    }

    /// Feed many bytes; collects every completed frame.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Frame, AshError>> {
        let mut frames = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (tail, res) = self.decode(rest);
            frames.extend(res);
            rest = tail;
        }
        frames
    }

    /// Feed bytes up to the first that completes (or rejects) a frame: the result, if any, and
    /// the bytes not consumed yet. The same as [`Decoder::push`] byte by byte, but a run of
    /// ordinary bytes inside a frame is copied into the buffer in one go.
    fn decode<'a>(&mut self, bytes: &'a [u8]) -> (&'a [u8], Option<Result<Frame, AshError>>) {
        let mut rest = bytes;
        loop {
            if !self.escape && self.discarding.is_none() {
                let run = rest.iter().position(|&b| is_reserved(b));
                let (plain, tail) = rest.split_at(run.unwrap_or(rest.len()));
                self.extend_plain(plain);
                rest = tail;
            }
            let Some((&b, tail)) = rest.split_first() else {
                return (rest, None);
            };
            rest = tail;
            if let Some(res) = self.push(b) {
                return (rest, Some(res));
            }
        }
    }

    /// Ordinary bytes, outside an escape and not discarding: what [`Decoder::push`] does with
    /// each, up to and including the overflow of the buffer.
    fn extend_plain(&mut self, plain: &[u8]) {
        let room = MAX_FRAME.saturating_sub(self.buf.len());
        match plain.split_at_checked(room) {
            Some((fits, over)) if !over.is_empty() => {
                self.buf.extend_from_slice(fits);
                // The first byte past the bound overflows the frame; the rest are discarded.
                self.buf.clear();
                self.discarding = Some(AshError::Overflow);
            }
            _ => self.buf.extend_from_slice(plain),
        }
    }
}

/// What the ASH layer reports to the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AshEvent {
    /// RSTACK received: the link is up (NCP reset code given).
    Connected { reset_code: u8 },
    /// An EZSP frame from the NCP, in order, exactly once.
    Data(Vec<u8>),
    /// The link failed (ERROR frame, unexpected RSTACK, too many retransmissions, no RSTACK):
    /// a new reset is needed.
    Failed(LinkFailure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFailure {
    /// ERROR frame with the NCP's error code.
    NcpError(u8),
    /// RSTACK while connected: the NCP reset itself (reset code).
    NcpReset(u8),
    /// No ACK after [`ACK_TIMEOUTS`] retransmissions.
    AckTimeout,
    /// No RSTACK within [`T_RSTACK_MAX`].
    NoRstAck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Resetting { since: Instant },
    Connected,
    Failed,
}

#[derive(Debug)]
struct InFlight {
    frm_num: u8,
    payload: Vec<u8>,
    sent_at: Instant,
    first_sent: Instant,
    retries: u8,
}

/// Link statistics, for logs and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AshStats {
    pub bad_frames: u64,
    pub naks_sent: u64,
    pub retransmissions: u64,
    pub duplicates: u64,
}

/// The host side of an ASH link, without I/O: feed it bytes and time, take bytes and events out.
#[derive(Debug)]
pub struct Ash {
    state: State,
    decoder: Decoder,
    /// Our next DATA frame number.
    tx_seq: u8,
    /// The NCP frame number we expect next (= the ackNum we send).
    rx_seq: u8,
    in_flight: Option<InFlight>,
    queue: VecDeque<Vec<u8>>,
    t_rx_ack: Duration,
    /// A NAK was sent and no good DATA frame arrived since (ASH "reject condition").
    rejecting: bool,
    out: Vec<u8>,
    events: VecDeque<AshEvent>,
    pub stats: AshStats,
}

impl Default for Ash {
    fn default() -> Self {
        Self::new()
    }
}

impl Ash {
    pub fn new() -> Self {
        Self {
            state: State::Idle,
            decoder: Decoder::new(),
            tx_seq: 0,
            rx_seq: 0,
            in_flight: None,
            queue: VecDeque::new(),
            t_rx_ack: T_RX_ACK_INIT,
            rejecting: false,
            out: Vec::new(),
            events: VecDeque::new(),
            stats: AshStats::default(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The current adaptive acknowledgement timeout.
    pub fn t_rx_ack(&self) -> Duration {
        self.t_rx_ack
    }

    /// Start (or restart) the link: CANCEL + RST; everything queued or in flight is dropped.
    pub fn reset(&mut self, now: Instant) {
        self.state = State::Resetting { since: now };
        self.tx_seq = 0;
        self.rx_seq = 0;
        self.in_flight = None;
        self.queue.clear();
        self.rejecting = false;
        self.t_rx_ack = T_RX_ACK_INIT;
        self.out.push(CANCEL);
        encode_into(&mut self.out, &Frame::Rst);
    }

    /// Queue an EZSP frame for transmission (sent when the window is free and the link is up).
    pub fn send(&mut self, payload: Vec<u8>, now: Instant) {
        self.queue.push_back(payload);
        self.pump(now);
    }

    /// Frames queued or unacknowledged.
    pub fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }

    /// Bytes to write to the serial port (drains the buffer).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn poll_event(&mut self) -> Option<AshEvent> {
        self.events.pop_front()
    }

    /// When [`Ash::on_timer`] must next be called.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Resetting { since } => Some(since + T_RSTACK_MAX),
            State::Connected => self.in_flight.as_ref().map(|f| f.sent_at + self.t_rx_ack),
            State::Idle | State::Failed => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant) {
        match self.state {
            State::Resetting { since } if now >= since + T_RSTACK_MAX => {
                self.fail(LinkFailure::NoRstAck);
            }
            State::Connected => {
                let due = self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| now >= f.sent_at + self.t_rx_ack);
                if due {
                    self.t_rx_ack = (self.t_rx_ack * 2).min(T_RX_ACK_MAX);
                    self.retransmit(now);
                }
            }
            _ => {}
        }
    }

    /// Feed bytes read from the serial port.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (tail, res) = self.decoder.decode(rest);
            rest = tail;
            match res {
                Some(Ok(frame)) => self.on_frame(frame, now),
                Some(Err(err)) => self.on_bad_frame(&err),
                None => {}
            }
        }
        self.stats.bad_frames = self.decoder.bad_frames;
    }

    fn on_bad_frame(&mut self, err: &AshError) {
        tracing::debug!(%err, "ASH: bad frame");
        if self.state == State::Connected && !self.rejecting {
            self.rejecting = true;
            self.write(&Frame::Nak {
                ack_num: self.rx_seq,
                not_ready: false,
            });
            self.stats.naks_sent += 1;
        }
    }

    fn write(&mut self, frame: &Frame) {
        encode_into(&mut self.out, frame);
    }

    fn fail(&mut self, why: LinkFailure) {
        self.state = State::Failed;
        self.in_flight = None;
        self.queue.clear();
        self.events.push_back(AshEvent::Failed(why));
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        match (self.state, frame) {
            (State::Resetting { .. }, Frame::RstAck { reset_code, .. }) => {
                self.state = State::Connected;
                self.events.push_back(AshEvent::Connected { reset_code });
            }
            (State::Connected, Frame::RstAck { reset_code, .. }) => {
                self.fail(LinkFailure::NcpReset(reset_code));
            }
            (State::Connected | State::Resetting { .. }, Frame::Error { code, .. }) => {
                self.fail(LinkFailure::NcpError(code));
            }
            (State::Connected, Frame::Ack { ack_num, .. }) => self.on_ack_num(ack_num, now),
            (State::Connected, Frame::Nak { ack_num, .. }) => {
                self.on_ack_num(ack_num, now);
                if self.in_flight.is_some() {
                    self.retransmit(now);
                }
            }
            (
                State::Connected,
                Frame::Data {
                    frm_num,
                    re_tx,
                    ack_num,
                    payload,
                },
            ) => {
                self.on_ack_num(ack_num, now);
                if frm_num == self.rx_seq {
                    self.rejecting = false;
                    self.rx_seq = (self.rx_seq + 1) & 7;
                    self.write(&Frame::Ack {
                        ack_num: self.rx_seq,
                        not_ready: false,
                    });
                    self.events.push_back(AshEvent::Data(payload));
                } else if re_tx && frm_num == (self.rx_seq + 7) & 7 {
                    // A retransmission of what we already have: our ACK was lost. Re-ACK.
                    self.stats.duplicates += 1;
                    self.write(&Frame::Ack {
                        ack_num: self.rx_seq,
                        not_ready: false,
                    });
                } else if !self.rejecting {
                    // Out of sequence: a frame was lost; ask for it again.
                    self.rejecting = true;
                    self.stats.naks_sent += 1;
                    self.write(&Frame::Nak {
                        ack_num: self.rx_seq,
                        not_ready: false,
                    });
                }
            }
            // Frames the host does not expect in this state (DATA before RSTACK, an RST from
            // the NCP) are ignored, as ASH specifies.
            _ => {}
        }
        self.pump(now);
    }

    fn on_ack_num(&mut self, ack_num: u8, now: Instant) {
        let acked = self
            .in_flight
            .as_ref()
            .is_some_and(|f| ack_num == (f.frm_num + 1) & 7);
        if acked
            && let Some(f) = self.in_flight.take()
            && f.retries == 0
        {
            // UG101: T_RX_ACK = 7/8 T_RX_ACK + 1/2 measured, clamped.
            let measured = now.saturating_duration_since(f.first_sent);
            let next = self.t_rx_ack * 7 / 8 + measured / 2;
            self.t_rx_ack = next.clamp(T_RX_ACK_MIN, T_RX_ACK_MAX);
        }
    }

    fn retransmit(&mut self, now: Instant) {
        let Some(f) = self.in_flight.as_mut() else {
            return;
        };
        if f.retries >= ACK_TIMEOUTS {
            self.fail(LinkFailure::AckTimeout);
            return;
        }
        f.retries += 1;
        f.sent_at = now;
        let frame = Frame::Data {
            frm_num: f.frm_num,
            re_tx: true,
            ack_num: self.rx_seq,
            payload: f.payload.clone(),
        };
        self.stats.retransmissions += 1;
        self.write(&frame);
    }

    fn pump(&mut self, now: Instant) {
        if self.state != State::Connected || self.in_flight.is_some() {
            return;
        }
        let Some(payload) = self.queue.pop_front() else {
            return;
        };
        let frame = Frame::Data {
            frm_num: self.tx_seq,
            re_tx: false,
            ack_num: self.rx_seq,
            payload,
        };
        self.write(&frame);
        if let Frame::Data { payload, .. } = frame {
            self.in_flight = Some(InFlight {
                frm_num: self.tx_seq,
                payload,
                sent_at: now,
                first_sent: now,
                retries: 0,
            });
        }
        self.tx_seq = (self.tx_seq + 1) & 7;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn data(frm: u8, re_tx: bool, ack: u8, p: &[u8]) -> Frame {
        Frame::Data {
            frm_num: frm,
            re_tx,
            ack_num: ack,
            payload: p.to_vec(),
        }
    }

    // Vectors: RST/RSTACK from the ASH spec; the rest made with bellows 1.2.1 `bellows.ash`.
    #[test]
    fn spec_and_bellows_vectors() {
        let mut rst = vec![CANCEL];
        rst.extend(encode(&Frame::Rst));
        assert_eq!(rst, hex("1ac038bc7e"));
        let rstack = Frame::RstAck {
            version: 2,
            reset_code: 2,
        };
        assert_eq!(encode(&rstack), hex("c102029b7b7e"));
        let cases = [
            (
                Frame::RstAck {
                    version: 2,
                    reset_code: 0x0b,
                },
                "c1020b0a527e",
            ),
            (data(0, false, 0, &[0, 0, 0, 13]), "004221a8597c057e"),
            (
                data(0, false, 1, &[0, 0x80, 0, 13, 2, 0x50, 0x74]),
                "0142a1a8592845c6a5bb7e",
            ),
            (data(5, true, 3, &[1, 0, 1, 0x26, 0]), "5b4321a9722acb787e"),
            (
                data(
                    2,
                    false,
                    6,
                    &[0x7e, 0x7d, 0x11, 0x13, 0x18, 0x1a, 0x42, 0x00, 0xff],
                ),
                "263c5cb947320ff0596b5d987e",
            ),
            (
                Frame::Ack {
                    ack_num: 3,
                    not_ready: false,
                },
                "83401b7e",
            ),
            (
                Frame::Nak {
                    ack_num: 5,
                    not_ready: false,
                },
                "a504bf7e",
            ),
            (
                Frame::Error {
                    version: 2,
                    code: 0x51,
                },
                "c20251a8bd7e",
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(encode(&frame), hex(wire), "{frame:?}");
            let mut d = Decoder::new();
            assert_eq!(d.feed(&hex(wire)), vec![Ok(frame)]);
        }
    }

    #[test]
    fn decoder_cancel_substitute_crc() {
        let mut d = Decoder::new();
        let good = encode(&Frame::Rst);
        // CANCEL drops a partial frame; the next frame is intact.
        let mut bytes = vec![0x01, 0x02, CANCEL];
        bytes.extend(&good);
        assert_eq!(d.feed(&bytes), vec![Ok(Frame::Rst)]);
        // SUBSTITUTE poisons the frame up to the flag.
        let mut bytes = vec![0xC0, SUBSTITUTE, 0x38, 0xBC, FLAG];
        bytes.extend(&good);
        assert_eq!(d.feed(&bytes), vec![Err(AshError::Aborted), Ok(Frame::Rst)]);
        // bad CRC counted
        assert_eq!(d.feed(&hex("c038bd7e")), vec![Err(AshError::BadCrc)]);
        assert_eq!(d.bad_frames, 2);
        // overflow bounded
        let mut bytes = vec![0x55; 1000];
        bytes.push(FLAG);
        bytes.extend(&good);
        assert_eq!(
            d.feed(&bytes),
            vec![Err(AshError::Overflow), Ok(Frame::Rst)]
        );
    }

    fn connected() -> (Ash, Instant) {
        let now = Instant::now();
        let mut a = Ash::new();
        a.reset(now);
        assert_eq!(a.take_output(), hex("1ac038bc7e"));
        a.receive(&hex("c102029b7b7e"), now);
        assert_eq!(a.poll_event(), Some(AshEvent::Connected { reset_code: 2 }));
        (a, now)
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        Decoder::new()
            .feed(bytes)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn sequence_ack_and_duplicates() {
        let (mut a, now) = connected();
        a.send(vec![1, 2, 3], now);
        assert_eq!(
            frames(&a.take_output()),
            vec![data(0, false, 0, &[1, 2, 3])]
        );
        // window 1: the second frame waits
        a.send(vec![4], now);
        assert!(a.take_output().is_empty());
        // NCP answers with DATA piggy-backing the ack
        a.receive(&encode(&data(0, false, 1, &[9])), now);
        assert_eq!(a.poll_event(), Some(AshEvent::Data(vec![9])));
        assert_eq!(
            frames(&a.take_output()),
            vec![
                Frame::Ack {
                    ack_num: 1,
                    not_ready: false
                },
                data(1, false, 1, &[4])
            ]
        );
        // duplicate (retransmitted) DATA is re-ACKed, not delivered twice
        a.receive(&encode(&data(0, true, 1, &[9])), now);
        assert_eq!(a.poll_event(), None);
        assert_eq!(
            frames(&a.take_output()),
            vec![Frame::Ack {
                ack_num: 1,
                not_ready: false
            }]
        );
        assert_eq!(a.stats.duplicates, 1);
        // out of sequence -> NAK once
        a.receive(&encode(&data(3, false, 1, &[9])), now);
        a.receive(&encode(&data(4, false, 1, &[9])), now);
        assert_eq!(
            frames(&a.take_output()),
            vec![Frame::Nak {
                ack_num: 1,
                not_ready: false
            }]
        );
    }

    #[test]
    fn retransmit_then_fail() {
        let (mut a, mut now) = connected();
        a.send(vec![7], now);
        a.take_output();
        let mut expected_timeout = T_RX_ACK_INIT;
        for i in 1..=ACK_TIMEOUTS {
            let deadline = a.deadline().unwrap();
            assert_eq!(deadline - now, expected_timeout);
            now = deadline;
            a.on_timer(now);
            expected_timeout = (expected_timeout * 2).min(T_RX_ACK_MAX);
            assert_eq!(
                frames(&a.take_output()),
                vec![data(0, true, 0, &[7])],
                "{i}"
            );
        }
        now = a.deadline().unwrap();
        a.on_timer(now);
        assert_eq!(
            a.poll_event(),
            Some(AshEvent::Failed(LinkFailure::AckTimeout))
        );
    }

    #[test]
    fn nak_bad_crc_and_error_frame() {
        let (mut a, now) = connected();
        a.receive(&hex("0042deadbeef7e"), now);
        assert_eq!(
            frames(&a.take_output()),
            vec![Frame::Nak {
                ack_num: 0,
                not_ready: false
            }]
        );
        a.send(vec![1], now);
        a.take_output();
        a.receive(
            &encode(&Frame::Nak {
                ack_num: 0,
                not_ready: false,
            }),
            now,
        );
        assert_eq!(frames(&a.take_output()), vec![data(0, true, 0, &[1])]);
        a.receive(&hex("c20251a8bd7e"), now);
        assert_eq!(
            a.poll_event(),
            Some(AshEvent::Failed(LinkFailure::NcpError(0x51)))
        );
        assert!(!a.is_connected());
    }

    #[test]
    fn adaptive_timer_and_rstack_timeout() {
        let (mut a, now) = connected();
        a.send(vec![1], now);
        a.receive(
            &encode(&Frame::Ack {
                ack_num: 1,
                not_ready: false,
            }),
            now + Duration::from_millis(10),
        );
        assert_eq!(
            a.t_rx_ack(),
            T_RX_ACK_INIT * 7 / 8 + Duration::from_millis(5)
        );
        let mut b = Ash::new();
        b.reset(now);
        b.on_timer(now + T_RSTACK_MAX);
        assert_eq!(
            b.poll_event(),
            Some(AshEvent::Failed(LinkFailure::NoRstAck))
        );
    }

    /// Bit-serial CRC-CCITT (0x1021, init 0xFFFF), as the table-driven [`crc_ccitt`] must compute.
    fn crc_ccitt_bitwise(data: &[u8]) -> u16 {
        let mut crc: u16 = 0xFFFF;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// The LFSR run byte by byte, as the table-driven [`randomize`] must compute.
    fn randomize_lfsr(data: &mut [u8]) {
        let mut rand: u8 = 0x42;
        for b in data.iter_mut() {
            *b ^= rand;
            rand = if rand & 1 == 0 {
                rand >> 1
            } else {
                (rand >> 1) ^ 0xB8
            };
        }
    }

    #[test]
    fn crc_and_randomize_known_values() {
        // CRC-16/CCITT-FALSE check value.
        assert_eq!(crc_ccitt(b"123456789"), 0x29B1);
        assert_eq!(crc_ccitt(&[]), 0xFFFF);
        // The sequence the ASH spec lists: 42 21 A8 54 2A ...
        let mut zeros = [0u8; 5];
        randomize(&mut zeros);
        assert_eq!(zeros, [0x42, 0x21, 0xA8, 0x54, 0x2A]);
        // Well past one LFSR period, byte for byte.
        let mut table = vec![0u8; 3 * RAND_PERIOD + 7];
        let mut lfsr = table.clone();
        randomize(&mut table);
        randomize_lfsr(&mut lfsr);
        assert_eq!(table, lfsr);
    }

    #[test]
    fn decoder_reuses_its_buffer() {
        let mut d = Decoder::new();
        let wire = encode(&data(1, false, 2, &[0x55; MAX_PAYLOAD]));
        assert_eq!(d.feed(&wire).len(), 1);
        let (ptr, cap) = (d.buf.as_ptr(), d.buf.capacity());
        assert!(cap >= MAX_FRAME);
        for _ in 0..10 {
            assert_eq!(d.feed(&wire).len(), 1);
            assert_eq!(d.feed(&hex("c038bd7e")), vec![Err(AshError::BadCrc)]);
        }
        assert!(d.buf.is_empty());
        assert_eq!((d.buf.as_ptr(), d.buf.capacity()), (ptr, cap));
    }

    proptest! {
        #[test]
        fn stuff_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = stuff(&data);
            prop_assert!(!s.iter().any(|&b| b == FLAG || b == CANCEL || b == SUBSTITUTE || b == XON || b == XOFF));
            prop_assert_eq!(unstuff(&s), Some(data));
        }

        #[test]
        fn crc_table_matches_bitwise(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc_ccitt(&data), crc_ccitt_bitwise(&data));
        }

        #[test]
        fn randomize_matches_lfsr(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let mut table = data.clone();
            let mut lfsr = data;
            randomize(&mut table);
            randomize_lfsr(&mut lfsr);
            prop_assert_eq!(table, lfsr);
        }

        #[test]
        fn bulk_decode_matches_push(
            // Runs of ordinary bytes (up to past the frame bound) between mixed stretches
            // rich in control bytes.
            segments in proptest::collection::vec(
                (
                    proptest::collection::vec(0x80u8..=0xFF, 0..300),
                    proptest::collection::vec(
                        prop_oneof![
                            2 => any::<u8>(),
                            1 => proptest::sample::select(
                                vec![FLAG, ESCAPE, XON, XOFF, SUBSTITUTE, CANCEL],
                            ),
                        ],
                        0..12,
                    ),
                ),
                0..6,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD),
        ) {
            // The same bytes and then a good frame: byte by byte, and in bulk split at random.
            let mut stream: Vec<u8> =
                segments.into_iter().flat_map(|(a, b)| a.into_iter().chain(b)).collect();
            stream.extend(encode(&data(3, false, 4, &payload)));
            let mut one = Decoder::new();
            let want: Vec<_> = stream.iter().filter_map(|&b| one.push(b)).collect();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            at.push(0);
            at.push(stream.len());
            at.sort_unstable();
            let mut bulk = Decoder::new();
            let mut got = Vec::new();
            for w in at.windows(2) {
                got.extend(bulk.feed(&stream[w[0]..w[1]]));
            }
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(bulk.bad_frames, one.bad_frames);
            prop_assert_eq!(&bulk.buf, &one.buf);
            prop_assert_eq!(bulk.escape, one.escape);
            prop_assert_eq!(&bulk.discarding, &one.discarding);
        }

        #[test]
        fn randomize_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = data.clone();
            randomize(&mut d);
            randomize(&mut d);
            prop_assert_eq!(d, data);
        }

        #[test]
        fn frame_roundtrip(frm in 0u8..8, ack in 0u8..8, re_tx: bool,
                           payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD)) {
            let f = data(frm, re_tx, ack, &payload);
            prop_assert_eq!(Decoder::new().feed(&encode(&f)), vec![Ok(f)]);
        }

        #[test]
        fn garbage_never_panics_and_frame_found_after(garbage in proptest::collection::vec(any::<u8>(), 0..600),
                                                     payload in proptest::collection::vec(any::<u8>(), 1..=MAX_PAYLOAD)) {
            let mut d = Decoder::new();
            let _ = d.feed(&garbage);
            let f = data(1, false, 2, &payload);
            // A flag first (as a sender does after an error) then the frame.
            let mut bytes = vec![FLAG];
            bytes.extend(encode(&f));
            let got = d.feed(&bytes);
            prop_assert_eq!(got.last().cloned(), Some(Ok(f)));
            let mut a = Ash::new();
            a.reset(Instant::now());
            a.receive(&garbage, Instant::now());
        }
    }
}
