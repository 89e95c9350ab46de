//! Security 0 (S0), the legacy Z-Wave security of old locks and sensors: one network key for the
//! whole network, the authentication key Ka = AES(key, 0x55…) and the encryption key
//! Ke = AES(key, 0xAA…); every encapsulated frame uses a fresh 8-byte nonce from its receiver
//! (Nonce Get → Nonce Report), AES-128-OFB over [frame control, command] with IV = sender nonce ‖
//! receiver nonce, and an 8-byte CBC-MAC under Ka over IV ‖ command ‖ source ‖ destination ‖
//! length ‖ ciphertext. A receiver's nonce is used once and expires: that is S0's replay
//! protection. This module is the codec, the nonce table and the reassembly of sequenced
//! (two-frame) encapsulations; no radio I/O.
//!
//! The first encrypted byte of every encapsulation is its sequence byte: bit 4 says the command is
//! split over two encapsulations, bit 5 marks the second of them, bits 0–3 are a counter both
//! parts carry. Each part is a complete encapsulation with its own nonce and MAC, so a part that
//! reaches [`Reassembly`] is authentic; what is checked there is only that the two belong together.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const CC: u8 = 0x98;
pub const COMMANDS_SUPPORTED_GET: u8 = 0x02;
pub const SCHEME_GET: u8 = 0x04;
pub const SCHEME_REPORT: u8 = 0x05;
pub const NETWORK_KEY_SET: u8 = 0x06;
pub const NETWORK_KEY_VERIFY: u8 = 0x07;
pub const NONCE_GET: u8 = 0x40;
pub const NONCE_REPORT: u8 = 0x80;
pub const ENCAPSULATION: u8 = 0x81;
pub const ENCAPSULATION_NONCE_GET: u8 = 0xc1;

/// How long a nonce Warden handed out stays valid (the specification's minimum is 3 s).
pub const NONCE_LIFETIME: Duration = Duration::from_secs(10);
/// Outstanding nonces kept per node (the oldest is dropped).
pub const NONCES_PER_NODE: usize = 4;

pub type Key = [u8; 16];
pub type Nonce = [u8; 8];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S0Error {
    #[error("malformed S0 frame: {0}")]
    Malformed(&'static str),
    #[error("S0 frame for a nonce Warden did not hand out, already used, or expired (id {0:#04x})")]
    UnknownNonce(u8),
    #[error("S0 frame with a bad MAC")]
    BadMac,
    #[error("sequenced S0 frame refused: {0}")]
    Sequence(#[from] SequenceError),
    #[error("a command of {0} bytes does not fit in two S0 frames")]
    TooLong(usize),
}

/// Why a part of a sequenced (two-frame) S0 encapsulation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// A second part with no first part pending from that node.
    #[error("a second part (counter {counter}) without its first")]
    SecondWithoutFirst { counter: u8 },
    /// A second part whose counter is not the pending first part's.
    #[error("a second part with counter {got}, the pending first part has {pending}")]
    CounterMismatch { pending: u8, got: u8 },
    /// A first part of a new sequence while another's first part waits for its second: the
    /// parts came out of order (both are dropped).
    #[error(
        "a first part (counter {got}) while the one with counter {pending} waits for its second"
    )]
    OutOfOrder { pending: u8, got: u8 },
    /// A first part with the counter of the part pending, or of the sequence just completed.
    #[error("a first part with counter {counter} again")]
    Repeated { counter: u8 },
    /// A second part that came after the first part's reassembly time ran out.
    #[error("a second part (counter {counter}) after its first had expired")]
    Expired { counter: u8 },
    /// A part longer than a Z-Wave frame can carry.
    #[error("a part of {len} bytes (at most {MAX_PART})")]
    TooLong { len: usize },
}

impl SequenceError {
    /// The audit cause.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecondWithoutFirst { .. } => "s0-second-without-first",
            Self::CounterMismatch { .. } => "s0-sequence-mismatch",
            Self::OutOfOrder { .. } => "s0-sequence-out-of-order",
            Self::Repeated { .. } => "replay",
            Self::Expired { .. } => "s0-sequence-expired",
            Self::TooLong { .. } => "malformed",
        }
    }
}

/// Where an encapsulation's command stands in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole command in one frame.
    Single,
    /// The first half of a two-frame command; the counter ties the halves together.
    First(u8),
    Second(u8),
}

impl Part {
    pub fn from_byte(b: u8) -> Self {
        let counter = b & 0x0f;
        match (b & 0x10 != 0, b & 0x20 != 0) {
            (false, _) => Self::Single,
            (true, false) => Self::First(counter),
            (true, true) => Self::Second(counter),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Self::Single => 0x00,
            Self::First(c) => 0x10 | (c & 0x0f),
            Self::Second(c) => 0x30 | (c & 0x0f),
        }
    }
}

/// The most command bytes one encapsulation carries: a SendData payload of 46 bytes (what
/// controllers take for a routed frame) less the encapsulation's 20 bytes of overhead.
pub const MAX_SINGLE: usize = 26;
/// The longest part Warden accepts (more than a 100 kbit/s Z-Wave frame can hold is not a part).
pub const MAX_PART: usize = 160;
/// How long a first part waits for its second.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A command cut for sending: one part, or two with this counter; `None` when it is longer than
/// two frames carry.
pub fn split(payload: &[u8], counter: u8) -> Option<Vec<(Part, &[u8])>> {
    if payload.len() <= MAX_SINGLE {
        return Some(vec![(Part::Single, payload)]);
    }
    if payload.len() > 2 * MAX_SINGLE {
        return None;
    }
    let (a, b) = payload.split_at(payload.len().div_ceil(2));
    Some(vec![(Part::First(counter), a), (Part::Second(counter), b)])
}

/// Sequenced S0 commands being put back together: at most one pending first part per node
/// (node ids are one byte, so at most 256 entries of at most [`MAX_PART`] bytes), each dropped
/// after [`REASSEMBLY_TIMEOUT`], and the counter of each node's last completed sequence.
#[derive(Debug, Default)]
pub struct Reassembly {
    pending: HashMap<u8, (u8, Vec<u8>, Instant)>,
    last: HashMap<u8, u8>,
}

impl Reassembly {
    /// Takes one authentic decrypted part from `node`: the whole command when it is complete,
    /// `None` while its first half waits for the second.
    pub fn accept(
        &mut self,
        node: u8,
        part: Part,
        data: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, SequenceError> {
        if data.len() > MAX_PART {
            return Err(SequenceError::TooLong { len: data.len() });
        }
        match part {
            Part::Single => Ok(Some(data)),
            Part::First(counter) => {
                if let Some((pending, _, at)) = self.pending.get(&node) {
                    let (pending, live) = (
                        *pending,
                        now.saturating_duration_since(*at) < REASSEMBLY_TIMEOUT,
                    );
                    if live && pending == counter {
                        return Err(SequenceError::Repeated { counter });
                    }
                    if live {
                        self.pending.remove(&node);
                        return Err(SequenceError::OutOfOrder {
                            pending,
                            got: counter,
                        });
                    }
                }
                if self.last.get(&node) == Some(&counter) {
                    self.pending.remove(&node);
                    return Err(SequenceError::Repeated { counter });
                }
                self.pending.insert(node, (counter, data, now));
                Ok(None)
            }
            Part::Second(counter) => {
                let Some((pending, first, at)) = self.pending.remove(&node) else {
                    return Err(SequenceError::SecondWithoutFirst { counter });
                };
                if now.saturating_duration_since(at) >= REASSEMBLY_TIMEOUT {
                    return Err(SequenceError::Expired { counter });
                }
                if pending != counter {
                    return Err(SequenceError::CounterMismatch {
                        pending,
                        got: counter,
                    });
                }
                self.last.insert(node, counter);
                let mut whole = first;
                whole.extend_from_slice(&data);
                Ok(Some(whole))
            }
        }
    }

    /// Drops first parts whose time ran out; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pending.len();
        self.pending
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < REASSEMBLY_TIMEOUT);
        before - self.pending.len()
    }

    /// First parts waiting for their second.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets a node (excluded or removed).
    pub fn forget(&mut self, node: u8) {
        self.pending.remove(&node);
        self.last.remove(&node);
    }
}

fn aes(key: &Key, block: &Key) -> Key {
    let c = Aes128::new(GenericArray::from_slice(key));
    let mut b = GenericArray::clone_from_slice(block);
    c.encrypt_block(&mut b);
    b.into()
}

/// The keys one S0 network key stands for.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    auth: Key,
    enc: Key,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S0Keys(…)")
    }
}

impl Keys {
    pub fn new(network_key: &Key) -> Self {
        Self {
            auth: aes(network_key, &[0x55; 16]),
            enc: aes(network_key, &[0xaa; 16]),
        }
    }

    fn ofb(&self, iv: &Key, data: &mut [u8]) {
        let mut block = *iv;
        for chunk in data.chunks_mut(16) {
            block = aes(&self.enc, &block);
            for (d, k) in chunk.iter_mut().zip(block.iter()) {
                *d ^= k;
            }
        }
    }

    fn mac(&self, iv: &Key, command: u8, src: u8, dst: u8, ct: &[u8]) -> [u8; 8] {
        let mut data = Vec::with_capacity(20 + ct.len() + 16);
        data.extend_from_slice(iv);
        data.extend_from_slice(&[command, src, dst, u8::try_from(ct.len()).unwrap_or(u8::MAX)]);
        data.extend_from_slice(ct);
        let mut x = [0u8; 16];
        for chunk in data.chunks(16) {
            for (xi, c) in x.iter_mut().zip(chunk.iter()) {
                *xi ^= c;
            }
            x = aes(&self.auth, &x);
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(x.get(..8).unwrap_or(&[0; 8]));
        out
    }

    /// Message Encapsulation of `payload` (one unsegmented frame) from `src` to `dst`.
    pub fn seal(
        &self,
        sender: &Nonce,
        receiver: &Nonce,
        src: u8,
        dst: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        self.seal_part(sender, receiver, src, dst, Part::Single, payload)
    }

    /// Message Encapsulation of one part of a command (see [`split`]).
    pub fn seal_part(
        &self,
        sender: &Nonce,
        receiver: &Nonce,
        src: u8,
        dst: u8,
        part: Part,
        payload: &[u8],
    ) -> Vec<u8> {
        let iv = iv(sender, receiver);
        let mut ct = Vec::with_capacity(payload.len() + 1);
        ct.push(part.to_byte());
        ct.extend_from_slice(payload);
        self.ofb(&iv, &mut ct);
        let mac = self.mac(&iv, ENCAPSULATION, src, dst, &ct);
        let mut out = vec![CC, ENCAPSULATION];
        out.extend_from_slice(sender);
        out.extend_from_slice(&ct);
        out.push(receiver[0]);
        out.extend_from_slice(&mac);
        out
    }

    /// Checks and decrypts an encapsulated frame whose receiver nonce is `receiver`: where it
    /// stands in its sequence, and its command bytes (a part goes on to [`Reassembly`]).
    pub fn open(
        &self,
        frame: &Encapsulated<'_>,
        receiver: &Nonce,
        src: u8,
        dst: u8,
    ) -> Result<(Part, Vec<u8>), S0Error> {
        let iv = iv(&frame.sender, receiver);
        let want = self.mac(&iv, frame.command, src, dst, frame.ciphertext);
        // constant-time comparison
        let diff = want
            .iter()
            .zip(frame.mac.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y));
        if diff != 0 {
            return Err(S0Error::BadMac);
        }
        let mut pt = frame.ciphertext.to_vec();
        self.ofb(&iv, &mut pt);
        let control = *pt.first().ok_or(S0Error::Malformed("empty payload"))?;
        Ok((
            Part::from_byte(control),
            pt.get(1..).unwrap_or_default().to_vec(),
        ))
    }
}

fn iv(sender: &Nonce, receiver: &Nonce) -> Key {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(sender);
    iv[8..].copy_from_slice(receiver);
    iv
}

/// An encapsulated frame's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encapsulated<'a> {
    pub command: u8,
    pub sender: Nonce,
    pub ciphertext: &'a [u8],
    pub receiver_id: u8,
    pub mac: [u8; 8],
}

pub fn parse_encapsulated(p: &[u8]) -> Result<Encapsulated<'_>, S0Error> {
    match p {
        [
            CC,
            cmd @ (ENCAPSULATION | ENCAPSULATION_NONCE_GET),
            rest @ ..,
        ] if rest.len() >= 8 + 2 + 1 + 8 => {
            let (sender, rest) = rest.split_at(8);
            let (ct, tail) = rest.split_at(rest.len() - 9);
            let (id, mac) = tail.split_at(1);
            Ok(Encapsulated {
                command: *cmd,
                sender: sender.try_into().map_err(|_| S0Error::Malformed("nonce"))?,
                ciphertext: ct,
                receiver_id: *id.first().ok_or(S0Error::Malformed("nonce id"))?,
                mac: mac.try_into().map_err(|_| S0Error::Malformed("mac"))?,
            })
        }
        [CC, ENCAPSULATION | ENCAPSULATION_NONCE_GET, ..] => Err(S0Error::Malformed("too short")),
        _ => Err(S0Error::Malformed("not an S0 encapsulation")),
    }
}

/// A node's Nonce Report: its nonce for Warden's next frame.
pub fn parse_nonce_report(p: &[u8]) -> Option<Nonce> {
    match p {
        [CC, NONCE_REPORT, rest @ ..] => rest.get(..8).and_then(|n| n.try_into().ok()),
        _ => None,
    }
}

pub fn nonce_report(n: &Nonce) -> Vec<u8> {
    let mut v = vec![CC, NONCE_REPORT];
    v.extend_from_slice(n);
    v
}

/// The nonces Warden handed out, per node: single use, expiring, bounded.
#[derive(Debug, Default)]
pub struct Nonces {
    issued: HashMap<u8, Vec<(Nonce, Instant)>>,
}

impl Nonces {
    /// A fresh nonce for `node` (its first byte, the id, unique among the node's outstanding ones).
    pub fn issue(&mut self, node: u8, now: Instant) -> Nonce {
        let list = self.issued.entry(node).or_default();
        list.retain(|(_, t)| now.saturating_duration_since(*t) < NONCE_LIFETIME);
        let mut n: Nonce = rand::random();
        while list.iter().any(|(x, _)| x[0] == n[0]) {
            n = rand::random();
        }
        if list.len() >= NONCES_PER_NODE {
            list.remove(0);
        }
        list.push((n, now));
        n
    }

    /// Takes (uses up) the node's nonce with this id, if it is outstanding and fresh.
    pub fn take(&mut self, node: u8, id: u8, now: Instant) -> Option<Nonce> {
        let list = self.issued.get_mut(&node)?;
        let i = list.iter().position(|(n, _)| n[0] == id)?;
        let (n, t) = list.remove(i);
        (now.saturating_duration_since(t) < NONCE_LIFETIME).then_some(n)
    }
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

    /// Computed with zwave-js 15.29.0's own S0 primitives (generateAuthKey/EncryptionKey,
    /// encryptAES128OFB, computeMAC): network key 01…10, sender nonce a1…a8, receiver b1…b8,
    /// node 3 → node 1, a Multilevel Sensor Report.
    const NK: &str = "0102030405060708090a0b0c0d0e0f10";
    const FRAME: &str = "9881a1a2a3a4a5a6a7a83e2781593219bfb13f0bcd906876bf15";

    #[test]
    fn matches_zwave_js() {
        let nk: Key = hex(NK).try_into().unwrap();
        let k = Keys::new(&nk);
        assert_eq!(k.auth.to_vec(), hex("c5fe1ca17d36c992731a0c0c468c1ef9"));
        assert_eq!(k.enc.to_vec(), hex("0a75a51776b28912f3ebe5da139f21ee"));
        let s: Nonce = hex("a1a2a3a4a5a6a7a8").try_into().unwrap();
        let r: Nonce = hex("b1b2b3b4b5b6b7b8").try_into().unwrap();
        let payload = hex("3105012200d7");
        assert_eq!(k.seal(&s, &r, 3, 1, &payload), hex(FRAME));
        let f = hex(FRAME);
        let e = parse_encapsulated(&f).unwrap();
        assert_eq!(e.receiver_id, 0xb1);
        assert_eq!(k.open(&e, &r, 3, 1).unwrap(), (Part::Single, payload));
    }

    #[test]
    fn wrong_key_direction_or_tampering_fail_the_mac() {
        let k = Keys::new(&[7; 16]);
        let (s, r) = ([1u8; 8], [2u8; 8]);
        let f = k.seal(&s, &r, 5, 1, &[0x25, 0x03, 0xff]);
        let e = parse_encapsulated(&f).unwrap();
        assert_eq!(
            k.open(&e, &r, 5, 1).unwrap(),
            (Part::Single, vec![0x25, 0x03, 0xff])
        );
        assert_eq!(Keys::new(&[8; 16]).open(&e, &r, 5, 1), Err(S0Error::BadMac));
        assert_eq!(k.open(&e, &r, 6, 1), Err(S0Error::BadMac), "another source");
        assert_eq!(
            k.open(&e, &[3; 8], 5, 1),
            Err(S0Error::BadMac),
            "another nonce"
        );
        // every byte but the receiver nonce's id (which only selects the nonce: a wrong id finds
        // another nonce or none)
        for i in (2..f.len()).filter(|i| *i != f.len() - 9) {
            let mut t = f.clone();
            t[i] ^= 0x01;
            if let Ok(e) = parse_encapsulated(&t) {
                assert!(k.open(&e, &r, 5, 1).is_err(), "byte {i} flipped");
            }
        }
        for n in 0..f.len() {
            let _ = parse_encapsulated(&f[..n]);
        }
        assert!(parse_encapsulated(&f[..18]).is_err());
    }

    #[test]
    fn nonces_are_single_use_expire_and_are_bounded() {
        let t0 = Instant::now();
        let mut n = Nonces::default();
        let a = n.issue(4, t0);
        assert_eq!(n.take(4, a[0], t0), Some(a));
        assert_eq!(n.take(4, a[0], t0), None, "used once");
        let b = n.issue(4, t0);
        assert_eq!(n.take(5, b[0], t0), None, "another node's nonce");
        assert_eq!(n.take(4, b[0], t0 + NONCE_LIFETIME), None, "expired");
        let first = n.issue(4, t0);
        for _ in 0..NONCES_PER_NODE {
            n.issue(4, t0);
        }
        assert_eq!(n.take(4, first[0], t0), None, "the oldest dropped");
        assert!(n.issued[&4].len() <= NONCES_PER_NODE);
    }

    /// One rule per row: the parts a node sends, in order, and what each one yields.
    #[test]
    fn reassembly_rules() {
        use Part::{First, Second, Single};
        type Row = (
            &'static str,
            &'static [(Part, &'static [u8])],
            &'static [Result<Option<&'static [u8]>, SequenceError>],
        );
        let rows: &[Row] = &[
            (
                "two parts with one counter make the command",
                &[(First(3), &[0x31, 0x05]), (Second(3), &[0x01, 0x22])],
                &[Ok(None), Ok(Some(&[0x31, 0x05, 0x01, 0x22]))],
            ),
            (
                "a single frame passes as it is",
                &[(Single, &[0x25, 0x03, 0xff])],
                &[Ok(Some(&[0x25, 0x03, 0xff]))],
            ),
            (
                "a second part without a first",
                &[(Second(4), &[0x01])],
                &[Err(SequenceError::SecondWithoutFirst { counter: 4 })],
            ),
            (
                "a second part with another counter (and the first is dropped)",
                &[
                    (First(5), &[0x31]),
                    (Second(6), &[0x05]),
                    (Second(5), &[0x05]),
                ],
                &[
                    Ok(None),
                    Err(SequenceError::CounterMismatch { pending: 5, got: 6 }),
                    Err(SequenceError::SecondWithoutFirst { counter: 5 }),
                ],
            ),
            (
                "out of order: a new first part while one is pending drops both",
                &[
                    (First(1), &[0x31]),
                    (First(2), &[0x31]),
                    (Second(2), &[0x05]),
                ],
                &[
                    Ok(None),
                    Err(SequenceError::OutOfOrder { pending: 1, got: 2 }),
                    Err(SequenceError::SecondWithoutFirst { counter: 2 }),
                ],
            ),
            (
                "the first part again while pending is a repeat; the pending one still completes",
                &[
                    (First(7), &[0x31]),
                    (First(7), &[0x31]),
                    (Second(7), &[0x05]),
                ],
                &[
                    Ok(None),
                    Err(SequenceError::Repeated { counter: 7 }),
                    Ok(Some(&[0x31, 0x05])),
                ],
            ),
            (
                "a replayed sequence (the counter just completed) is refused, the next counter is not",
                &[
                    (First(8), &[0x31]),
                    (Second(8), &[0x05]),
                    (First(8), &[0x31]),
                    (Second(8), &[0x05]),
                    (First(9), &[0x31]),
                    (Second(9), &[0x06]),
                ],
                &[
                    Ok(None),
                    Ok(Some(&[0x31, 0x05])),
                    Err(SequenceError::Repeated { counter: 8 }),
                    Err(SequenceError::SecondWithoutFirst { counter: 8 }),
                    Ok(None),
                    Ok(Some(&[0x31, 0x06])),
                ],
            ),
            (
                "a single frame between the parts does not disturb them",
                &[
                    (First(2), &[0x31]),
                    (Single, &[0x80, 0x03]),
                    (Second(2), &[0x05]),
                ],
                &[Ok(None), Ok(Some(&[0x80, 0x03])), Ok(Some(&[0x31, 0x05]))],
            ),
        ];
        let now = Instant::now();
        for (name, parts, want) in rows {
            let mut r = Reassembly::default();
            assert_eq!(parts.len(), want.len(), "{name}");
            for (i, ((part, data), want)) in parts.iter().zip(want.iter()).enumerate() {
                let got = r.accept(9, *part, data.to_vec(), now);
                let want = want.map(|o| o.map(<[u8]>::to_vec));
                assert_eq!(got, want, "{name}: part {i}");
            }
        }
    }

    #[test]
    fn reassembly_is_per_node_expires_and_is_bounded() {
        let t0 = Instant::now();
        let mut r = Reassembly::default();
        // another node's second part does not complete this node's first
        assert_eq!(r.accept(2, Part::First(1), vec![0x31], t0), Ok(None));
        assert_eq!(
            r.accept(3, Part::Second(1), vec![0x05], t0),
            Err(SequenceError::SecondWithoutFirst { counter: 1 })
        );
        // too late
        assert_eq!(
            r.accept(2, Part::Second(1), vec![0x05], t0 + REASSEMBLY_TIMEOUT),
            Err(SequenceError::Expired { counter: 1 })
        );
        assert_eq!(r.pending(), 0);
        // an expired first part does not block a new one with another counter or the same
        assert_eq!(r.accept(2, Part::First(4), vec![0x31], t0), Ok(None));
        assert_eq!(
            r.accept(2, Part::First(4), vec![0x31], t0 + REASSEMBLY_TIMEOUT),
            Ok(None)
        );
        assert_eq!(r.expire(t0 + REASSEMBLY_TIMEOUT), 0, "the new one is live");
        assert_eq!(r.expire(t0 + 2 * REASSEMBLY_TIMEOUT), 1);
        // a part over the cap
        assert_eq!(
            r.accept(2, Part::First(5), vec![0; MAX_PART + 1], t0),
            Err(SequenceError::TooLong { len: MAX_PART + 1 })
        );
        assert_eq!(r.accept(2, Part::First(5), vec![0; MAX_PART], t0), Ok(None));
        // the sum: one pending first part per node, whatever every node sends
        for round in 0..3u8 {
            for node in 0..=255u8 {
                let _ = r.accept(node, Part::First(round), vec![0; MAX_PART], t0);
            }
        }
        assert!(r.pending() <= 256, "{}", r.pending());
        // the reset: forgetting a node clears its first part and its last counter
        assert_eq!(
            r.accept(7, Part::First(1), vec![0x31], t0),
            Err(SequenceError::OutOfOrder { pending: 2, got: 1 })
        );
        assert_eq!(r.accept(7, Part::First(1), vec![0x31], t0), Ok(None));
        assert_eq!(
            r.accept(7, Part::Second(1), vec![0x05], t0),
            Ok(Some(vec![0x31, 0x05]))
        );
        assert_eq!(
            r.accept(7, Part::First(1), vec![0x31], t0),
            Err(SequenceError::Repeated { counter: 1 })
        );
        r.forget(7);
        assert_eq!(r.accept(7, Part::First(1), vec![0x31], t0), Ok(None));
    }

    #[test]
    fn the_sequence_byte() {
        for b in 0..=255u8 {
            let p = Part::from_byte(b);
            // the reserved bits 6 and 7 are ignored; a single frame has no counter
            let want = match p {
                Part::Single => 0,
                _ => b & 0x3f,
            };
            assert_eq!(p.to_byte(), want, "{b:#04x}");
        }
        assert_eq!(Part::from_byte(0x13), Part::First(3));
        assert_eq!(Part::from_byte(0x3f), Part::Second(15));
        assert_eq!(Part::from_byte(0x20), Part::Single);
    }

    proptest::proptest! {
        /// Any command up to two frames long, split, sealed part by part under fresh nonces,
        /// opened and reassembled, is the command again; a longer one is refused.
        #[test]
        fn split_seal_open_reassemble_round_trips(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..=2 * MAX_SINGLE + 8),
            counter in 0u8..16,
            key in proptest::prelude::any::<[u8; 16]>(),
        ) {
            let k = Keys::new(&key);
            let Some(parts) = split(&payload, counter) else {
                proptest::prop_assert!(payload.len() > 2 * MAX_SINGLE);
                return Ok(());
            };
            proptest::prop_assert_eq!(parts.len(), if payload.len() > MAX_SINGLE { 2 } else { 1 });
            let mut r = Reassembly::default();
            let mut out = None;
            for (part, bytes) in parts {
                proptest::prop_assert!(bytes.len() <= MAX_SINGLE);
                let (s, n): (Nonce, Nonce) = (rand::random(), rand::random());
                let f = k.seal_part(&s, &n, 1, 9, part, bytes);
                let e = parse_encapsulated(&f).unwrap();
                let (got, inner) = k.open(&e, &n, 1, 9).unwrap();
                proptest::prop_assert_eq!(got, part);
                out = r.accept(1, got, inner, Instant::now()).unwrap();
            }
            proptest::prop_assert_eq!(out, Some(payload));
            proptest::prop_assert_eq!(r.pending(), 0);
        }

        /// Arbitrary parts from arbitrary nodes: never a panic, never more than one pending first
        /// part per node, and whatever comes out is one whole part or two joined.
        #[test]
        fn arbitrary_parts_stay_bounded(
            parts in proptest::collection::vec((0u8..4, proptest::prelude::any::<u8>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)), 0..64),
        ) {
            let mut r = Reassembly::default();
            let now = Instant::now();
            for (node, b, data) in parts {
                if let Ok(Some(whole)) = r.accept(node, Part::from_byte(b), data, now) {
                    proptest::prop_assert!(whole.len() <= 2 * MAX_PART);
                }
                proptest::prop_assert!(r.pending() <= 4);
            }
        }
    }
}
