//! Security 0 (S0), the legacy Z-Wave security of old locks and sensors: one network key for the
//! whole network, the authentication key Ka = AES(key, 0x55…) and the encryption key
//! Ke = AES(key, 0xAA…); every encapsulated frame uses a fresh 8-byte nonce from its receiver
//! (Nonce Get → Nonce Report), AES-128-OFB over [frame control, command] with IV = sender nonce ‖
//! receiver nonce, and an 8-byte CBC-MAC under Ka over IV ‖ command ‖ source ‖ destination ‖
//! length ‖ ciphertext. A receiver's nonce is used once and expires: that is S0's replay
//! protection. This module is the codec and the nonce table; no radio I/O.

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
    #[error("segmented S0 frames are not supported")]
    Segmented,
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
        let iv = iv(sender, receiver);
        let mut ct = Vec::with_capacity(payload.len() + 1);
        ct.push(0x00);
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

    /// Checks and decrypts an encapsulated frame whose receiver nonce is `receiver`.
    pub fn open(
        &self,
        frame: &Encapsulated<'_>,
        receiver: &Nonce,
        src: u8,
        dst: u8,
    ) -> Result<Vec<u8>, S0Error> {
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
        if control & 0x10 != 0 {
            return Err(S0Error::Segmented);
        }
        Ok(pt.get(1..).unwrap_or_default().to_vec())
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
        assert_eq!(k.open(&e, &r, 3, 1).unwrap(), payload);
    }

    #[test]
    fn wrong_key_direction_or_tampering_fail_the_mac() {
        let k = Keys::new(&[7; 16]);
        let (s, r) = ([1u8; 8], [2u8; 8]);
        let f = k.seal(&s, &r, 5, 1, &[0x25, 0x03, 0xff]);
        let e = parse_encapsulated(&f).unwrap();
        assert_eq!(k.open(&e, &r, 5, 1).unwrap(), vec![0x25, 0x03, 0xff]);
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
}
