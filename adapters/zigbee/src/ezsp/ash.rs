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

/// CRC-CCITT as ASH uses it: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.
pub fn crc_ccitt(data: &[u8]) -> u16 {
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

/// XOR the data field with ASH's pseudo-random sequence (LFSR seed 0x42, polynomial 0xB8).
/// Applying it twice restores the input.
pub fn randomize(data: &mut [u8]) {
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

fn is_reserved(b: u8) -> bool {
    matches!(b, FLAG | ESCAPE | XON | XOFF | SUBSTITUTE | CANCEL)
}

/// Byte stuffing: every reserved byte becomes `ESCAPE, byte ^ 0x20`.
pub fn stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    for &b in data {
        if is_reserved(b) {
            out.push(ESCAPE);
            out.push(b ^ FLIP);
        } else {
            out.push(b);
        }
    }
    out
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
        let mut out = Vec::with_capacity(8);
        match self {
            Self::Data {
                frm_num,
                re_tx,
                ack_num,
                payload,
            } => {
                out.push(((frm_num & 7) << 4) | (u8::from(*re_tx) << 3) | (ack_num & 7));
                let mut data = payload.clone();
                randomize(&mut data);
                out.extend_from_slice(&data);
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
            let mut payload = data.to_vec();
            randomize(&mut payload);
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
    let mut out = stuff(&frame.to_bytes());
    out.push(FLAG);
    out
}

/// Streaming decoder: feed it serial bytes, get frames (or the reason one was rejected) back.
/// Its buffer is bounded by [`MAX_FRAME`]; an overlong frame is discarded up to the next flag.
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
        Self::default()
    }

    /// Feed one byte. Returns `Some` when a flag closed a non-empty frame.
    pub fn push(&mut self, b: u8) -> Option<Result<Frame, AshError>> {
        match b {
            FLAG => {
                let buf = std::mem::take(&mut self.buf);
                let escape = std::mem::replace(&mut self.escape, false);
                if let Some(err) = self.discarding.take() {
                    self.bad_frames += 1;
                    return Some(Err(err));
                }
                if buf.is_empty() && !escape {
                    return None;
                }
                if escape {
                    self.bad_frames += 1;
                    return Some(Err(AshError::Aborted));
                }
                let res = Frame::parse(&buf);
                if res.is_err() {
                    self.bad_frames += 1;
                }
                Some(res)
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
        bytes.iter().filter_map(|&b| self.push(b)).collect()
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
        self.out.extend_from_slice(&encode(&Frame::Rst));
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
        for &b in bytes {
            if let Some(res) = self.decoder.push(b) {
                match res {
                    Ok(frame) => self.on_frame(frame, now),
                    Err(err) => self.on_bad_frame(&err),
                }
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
        self.out.extend_from_slice(&encode(frame));
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

    proptest! {
        #[test]
        fn stuff_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = stuff(&data);
            prop_assert!(!s.iter().any(|&b| b == FLAG || b == CANCEL || b == SUBSTITUTE || b == XON || b == XOFF));
            prop_assert_eq!(unstuff(&s), Some(data));
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
