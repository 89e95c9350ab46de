//! Security 2 singlecast sessions between Warden (the controller's host) and each node: the
//! SPAN (a CTR_DRBG both ends step once per encrypted frame, seeded from both sides' entropy
//! inputs), Nonce Get / Nonce Report, Message Encapsulation in both directions, and replay
//! detection by sequence number.
//!
//! Frames are untrusted: every length is checked, a frame that does not decrypt leaves the session
//! unestablished (the caller answers with a Nonce Report so the node resynchronises), and a frame
//! is reported with the key class that decrypted it, so the caller can refuse a downgrade.

use std::collections::{HashMap, VecDeque};

use super::crypto::{self, CtrDrbg, Expanded, Key};

pub const CC: u8 = 0x9f;
pub const NONCE_GET: u8 = 0x01;
pub const NONCE_REPORT: u8 = 0x02;
pub const MESSAGE_ENCAPSULATION: u8 = 0x03;

/// How many frames of a peer's sequence numbers are remembered for replay detection.
const SEEN: usize = 10;
/// A receiver tries this many SPAN steps to catch up with a sender whose frames were lost.
const CATCH_UP: usize = 5;
/// A receiver tries this many MPAN steps to catch up with a group whose multicasts were lost.
const MPAN_CATCH_UP: usize = 5;
/// Multicast groups whose MPAN Warden keeps per node (the oldest is dropped).
pub const MPAN_GROUPS: usize = 4;

/// An S2 key class (S0 is separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Unauthenticated,
    Authenticated,
    AccessControl,
}

impl Class {
    pub const ALL: [Class; 3] = [
        Self::AccessControl,
        Self::Authenticated,
        Self::Unauthenticated,
    ];

    /// The bit of this class in KEX key bitmasks.
    pub fn bit(self) -> u8 {
        match self {
            Self::Unauthenticated => 0x01,
            Self::Authenticated => 0x02,
            Self::AccessControl => 0x04,
        }
    }

    pub fn from_bit(bit: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.bit() == bit)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "s2-unauthenticated",
            Self::Authenticated => "s2-authenticated",
            Self::AccessControl => "s2-access-control",
        }
    }
}

/// Which keys a SPAN runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The temporary keys of a bootstrap in progress.
    Temp,
    Network(Class),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S2Error {
    #[error("S2 frame too short or malformed: {0}")]
    Malformed(&'static str),
    #[error("no S2 session with the node yet (its frame carried no entropy input Warden expected)")]
    NoSpan,
    #[error("the S2 frame did not decrypt (wrong key, corrupted, or out of step)")]
    CannotDecode,
    #[error("a replayed S2 frame (sequence number {0} seen before)")]
    Replay(u8),
    #[error("an S2 extension Warden must understand but does not (type {0})")]
    CriticalExtension(u8),
    #[error("an S2 multicast for group {0}, whose MPAN the node has not sent Warden")]
    NoMpan(u8),
    #[error("a replayed S2 multicast (group {0}, sequence number {1} seen before)")]
    MulticastReplay(u8, u8),
}

/// What Warden knows of one multicast group a node sends to.
#[derive(Clone)]
enum Mpan {
    /// The node's inner MPAN state for the group, as its MPAN extension gave it and moved on by
    /// each multicast and singlecast follow-up since; the group's recent sequence numbers.
    Known(Key, VecDeque<u8>),
    /// A multicast or follow-up came for the group before its MPAN: the next follow-up is
    /// answered with a Nonce Report asking for it (MOS).
    OutOfSync,
}

enum Span {
    None,
    /// Warden sent its entropy input in a Nonce Report; the node's next frame carries its own.
    LocalEi(Key),
    /// The node sent its entropy input; Warden's next frame carries Warden's.
    RemoteEi(Key),
    Established {
        drbg: CtrDrbg,
        keys: Keys,
    },
}

struct Peer {
    span: Span,
    seen: VecDeque<u8>,
    own_seq: u8,
}

/// A decrypted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The encapsulated command class bytes (empty for a frame that carries only extensions,
    /// such as an MPAN).
    pub payload: Vec<u8>,
    pub keys: Keys,
    /// A singlecast follow-up of a multicast to a group whose MPAN Warden lacks: answer with a
    /// Nonce Report with MOS so the node sends it.
    pub mos: bool,
}

/// The host's S2 state for one network.
pub struct Sessions {
    home: u32,
    own: u8,
    network: HashMap<Class, Expanded>,
    temp: HashMap<u8, Expanded>,
    peers: HashMap<u8, Peer>,
    granted: HashMap<u8, Class>,
    /// Per node, the multicast groups it sends to (at most [`MPAN_GROUPS`], oldest first).
    mpans: HashMap<u8, Vec<(u8, Mpan)>>,
}

fn random_key() -> Key {
    rand::random()
}

impl Sessions {
    pub fn new(home: u32, own: u8) -> Self {
        Self {
            home,
            own,
            network: HashMap::new(),
            temp: HashMap::new(),
            peers: HashMap::new(),
            granted: HashMap::new(),
            mpans: HashMap::new(),
        }
    }

    /// Records the highest class a node was granted; its frames must come under it from now on.
    pub fn grant(&mut self, node: u8, class: Class) {
        self.granted.insert(node, class);
    }

    pub fn revoke(&mut self, node: u8) {
        self.granted.remove(&node);
        self.temp.remove(&node);
        self.peers.remove(&node);
        self.mpans.remove(&node);
    }

    fn mpan(&self, node: u8, group: u8) -> Option<&Mpan> {
        self.mpans
            .get(&node)?
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, m)| m)
    }

    fn set_mpan(&mut self, node: u8, group: u8, m: Mpan) {
        let list = self.mpans.entry(node).or_default();
        list.retain(|(g, _)| *g != group);
        if list.len() >= MPAN_GROUPS {
            list.remove(0);
        }
        list.push((group, m));
    }

    /// Records a node's inner MPAN state for a group (what its MPAN extension carries).
    pub fn store_mpan(&mut self, node: u8, group: u8, state: Key) {
        self.set_mpan(node, group, Mpan::Known(state, VecDeque::new()));
    }

    /// Multicast groups of a node Warden keeps state for.
    pub fn mpan_groups(&self, node: u8) -> usize {
        self.mpans.get(&node).map_or(0, Vec::len)
    }

    /// A Nonce Report with MOS: tells the node Warden lacks the MPAN of a group it multicasts to
    /// (its SPAN is left as it is).
    pub fn nonce_report_mos(&mut self, node: u8) -> Vec<u8> {
        let seq = self.next_seq(node);
        vec![CC, NONCE_REPORT, seq, 0x02]
    }

    /// Decrypts an S2 multicast (`9f 03 …` received as a multicast or broadcast frame) from a
    /// node: its MGRP extension names the group; the nonce comes from the group's MPAN, under the
    /// key of the node's granted class. A frame that does not decrypt leaves the MPAN as it was,
    /// so forged multicasts cannot knock a group out of step.
    pub fn open_multicast(&mut self, node: u8, frame: &[u8]) -> Result<Opened, S2Error> {
        let (seq, flags) = match frame {
            [CC, MESSAGE_ENCAPSULATION, seq, flags, ..] => (*seq, *flags),
            _ => return Err(S2Error::Malformed("message encapsulation header")),
        };
        let h = header_extensions(frame, flags)?;
        let group = h
            .group
            .ok_or(S2Error::Malformed("a multicast without MGRP"))?;
        if h.sender_ei.is_some() {
            return Err(S2Error::Malformed("a multicast with a SPAN extension"));
        }
        if frame.len() < h.end + 8 {
            return Err(S2Error::Malformed("no room for the tag"));
        }
        let class = self.granted(node).ok_or(S2Error::NoSpan)?;
        let (mut state, mut seen) = match self.mpan(node, group) {
            Some(Mpan::Known(s, seen)) => (*s, seen.clone()),
            _ => {
                self.set_mpan(node, group, Mpan::OutOfSync);
                return Err(S2Error::NoMpan(group));
            }
        };
        if seen.contains(&seq) {
            return Err(S2Error::MulticastReplay(group, seq));
        }
        let x = self
            .expanded(node, Keys::Network(class))
            .ok_or(S2Error::NoSpan)?
            .clone();
        let unencrypted = frame.get(2..h.end).unwrap_or_default();
        let sealed = frame.get(h.end..).unwrap_or_default();
        let aad = self.aad(node, group, frame.len(), unencrypted);
        let mut plaintext = None;
        for _ in 0..MPAN_CATCH_UP {
            let nonce = crypto::mpan_nonce(&x.key_mpan, &mut state);
            if let Some(pt) = crypto::ccm_open(&x.key_ccm, &nonce, &aad, sealed) {
                plaintext = Some(pt);
                break;
            }
        }
        let plaintext = plaintext.ok_or(S2Error::CannotDecode)?;
        seen.push_back(seq);
        if seen.len() > SEEN {
            seen.pop_front();
        }
        self.set_mpan(node, group, Mpan::Known(state, seen));
        let (at, mpan) = encrypted_extensions(&plaintext, flags)?;
        if mpan.is_some() {
            return Err(S2Error::Malformed("an MPAN extension in a multicast"));
        }
        Ok(Opened {
            payload: plaintext.get(at..).unwrap_or_default().to_vec(),
            keys: Keys::Network(class),
            mos: false,
        })
    }

    pub fn granted(&self, node: u8) -> Option<Class> {
        self.granted.get(&node).copied()
    }

    pub fn bootstrapping(&self, node: u8) -> bool {
        self.temp.contains_key(&node)
    }

    /// Installs a network key of a class.
    pub fn set_network_key(&mut self, class: Class, key: &Key) {
        self.network.insert(class, crypto::network_keys(key));
    }

    /// Installs a bootstrap's temporary keys for a node (and forgets its session).
    pub fn set_temp_keys(&mut self, node: u8, keys: Expanded) {
        self.temp.insert(node, keys);
        self.forget(node);
    }

    pub fn clear_temp_keys(&mut self, node: u8) {
        self.temp.remove(&node);
    }

    /// Forgets a node's session (both ends start again with a Nonce Get/Report).
    pub fn forget(&mut self, node: u8) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.span = Span::None;
        }
    }

    fn peer(&mut self, node: u8) -> &mut Peer {
        self.peers.entry(node).or_insert_with(|| Peer {
            span: Span::None,
            seen: VecDeque::new(),
            own_seq: rand::random(),
        })
    }

    fn next_seq(&mut self, node: u8) -> u8 {
        let p = self.peer(node);
        p.own_seq = p.own_seq.wrapping_add(1);
        p.own_seq
    }

    fn expanded(&self, node: u8, keys: Keys) -> Option<&Expanded> {
        match keys {
            Keys::Temp => self.temp.get(&node),
            Keys::Network(c) => self.network.get(&c),
        }
    }

    /// Nonce Get for a node (Warden wants to send and has no session).
    pub fn nonce_get(&mut self, node: u8) -> Vec<u8> {
        let seq = self.next_seq(node);
        vec![CC, NONCE_GET, seq]
    }

    /// A Nonce Report with a fresh entropy input, as the answer to a node's Nonce Get or to a
    /// frame that did not decrypt.
    pub fn nonce_report(&mut self, node: u8) -> Vec<u8> {
        let ei = random_key();
        let seq = self.next_seq(node);
        self.peer(node).span = Span::LocalEi(ei);
        let mut out = vec![CC, NONCE_REPORT, seq, 0x01];
        out.extend_from_slice(&ei);
        out
    }

    /// A node's Nonce Report: with SOS, its entropy input for Warden's next frame.
    pub fn on_nonce_report(&mut self, node: u8, payload: &[u8]) -> Result<(), S2Error> {
        let flags = *payload.get(3).ok_or(S2Error::Malformed("nonce report"))?;
        if flags & 0x01 != 0 {
            let ei: Key = payload
                .get(4..20)
                .and_then(|s| s.try_into().ok())
                .ok_or(S2Error::Malformed("nonce report entropy input"))?;
            self.peer(node).span = Span::RemoteEi(ei);
        }
        Ok(())
    }

    fn aad(&self, src: u8, dst: u8, len: usize, unencrypted: &[u8]) -> Vec<u8> {
        let mut a = Vec::with_capacity(8 + unencrypted.len());
        a.push(src);
        a.push(dst);
        a.extend_from_slice(&self.home.to_be_bytes());
        a.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        a.extend_from_slice(unencrypted);
        a
    }

    /// The key sets to try for a node's frame: its bootstrap's temporary keys while one runs,
    /// then every installed network key, strongest first.
    fn candidates(&self, node: u8) -> Vec<Keys> {
        let mut c = Vec::new();
        if self.temp.contains_key(&node) {
            c.push(Keys::Temp);
        }
        for class in Class::ALL {
            if self.network.contains_key(&class) {
                c.push(Keys::Network(class));
            }
        }
        c
    }

    /// Decrypts a Message Encapsulation (`9f 03 …`) from `node`.
    pub fn open(&mut self, node: u8, frame: &[u8]) -> Result<Opened, S2Error> {
        let (seq, flags) = match frame {
            [CC, MESSAGE_ENCAPSULATION, seq, flags, ..] => (*seq, *flags),
            _ => return Err(S2Error::Malformed("message encapsulation header")),
        };
        let h = header_extensions(frame, flags)?;
        let (off, sender_ei, group) = (h.end, h.sender_ei, h.group);
        if frame.len() < off + 8 {
            return Err(S2Error::Malformed("no room for the tag"));
        }
        if self.peer(node).seen.contains(&seq) {
            return Err(S2Error::Replay(seq));
        }
        let unencrypted = frame.get(2..off).unwrap_or_default();
        let sealed = frame.get(off..).unwrap_or_default();
        let aad = self.aad(node, self.own, frame.len(), unencrypted);
        let candidates = self.candidates(node);

        let opened = if let Some(sender_ei) = sender_ei {
            let Span::LocalEi(receiver_ei) = self.peer(node).span else {
                return Err(S2Error::NoSpan);
            };
            let mei = crypto::mei(&sender_ei, &receiver_ei);
            let mut found = None;
            for keys in candidates {
                let Some(x) = self.expanded(node, keys) else {
                    continue;
                };
                let mut drbg = CtrDrbg::new(&mei, &x.personalization);
                let nonce = nonce13(&mut drbg);
                if let Some(pt) = crypto::ccm_open(&x.key_ccm, &nonce, &aad, sealed) {
                    found = Some((pt, keys, drbg));
                    break;
                }
            }
            found
        } else {
            let Span::Established { drbg, keys } = &self.peer(node).span else {
                return Err(S2Error::NoSpan);
            };
            let (mut drbg, keys) = (drbg.clone(), *keys);
            let x = self.expanded(node, keys).ok_or(S2Error::NoSpan)?;
            let mut found = None;
            for _ in 0..CATCH_UP {
                let nonce = nonce13(&mut drbg);
                if let Some(pt) = crypto::ccm_open(&x.key_ccm, &nonce, &aad, sealed) {
                    found = Some((pt, keys, drbg));
                    break;
                }
            }
            found
        };
        let Some((plaintext, keys, drbg)) = opened else {
            self.peer(node).span = Span::None;
            return Err(S2Error::CannotDecode);
        };
        let p = self.peer(node);
        p.span = Span::Established { drbg, keys };
        p.seen.push_back(seq);
        if p.seen.len() > SEEN {
            p.seen.pop_front();
        }
        // Encrypted extensions (MPAN) come first in the plaintext.
        let (at, mpan) = encrypted_extensions(&plaintext, flags)?;
        let mut mos = false;
        match (group, mpan) {
            (Some(_), Some(_)) => {
                return Err(S2Error::Malformed(
                    "an MPAN extension in a multicast follow-up",
                ));
            }
            // The node hands Warden its MPAN for a group (after a Nonce Report with MOS).
            (None, Some((g, state))) if matches!(keys, Keys::Network(_)) => {
                self.store_mpan(node, g, state);
            }
            (None, Some(_)) => {
                return Err(S2Error::Malformed("an MPAN extension under bootstrap keys"));
            }
            // A singlecast follow-up of a multicast: it moves the group's MPAN on, or, when
            // Warden lacks it, asks the node for it.
            (Some(g), None) => match self.mpan(node, g).cloned() {
                Some(Mpan::Known(mut state, seen)) => {
                    crypto::mpan_step(&mut state);
                    self.set_mpan(node, g, Mpan::Known(state, seen));
                }
                _ => {
                    self.set_mpan(node, g, Mpan::OutOfSync);
                    mos = true;
                }
            },
            (None, None) => {}
        }
        Ok(Opened {
            payload: plaintext.get(at..).unwrap_or_default().to_vec(),
            keys,
            mos,
        })
    }

    /// Encrypts `payload` for `node` under `keys`; `Err(NoSpan)` when Warden must send a Nonce
    /// Get first (and try again once the node's Nonce Report arrived).
    pub fn seal(&mut self, node: u8, keys: Keys, payload: &[u8]) -> Result<Vec<u8>, S2Error> {
        let x = self.expanded(node, keys).ok_or(S2Error::NoSpan)?.clone();
        let seq = self.next_seq(node);
        let own = self.own;
        let (nonce, ext) = match &mut self.peer(node).span {
            Span::Established { drbg, keys: k } if *k == keys => (nonce13(drbg), None),
            Span::RemoteEi(receiver_ei) => {
                let sender_ei = random_key();
                let mei = crypto::mei(&sender_ei, receiver_ei);
                let mut drbg = CtrDrbg::new(&mei, &x.personalization);
                let nonce = nonce13(&mut drbg);
                self.peer(node).span = Span::Established { drbg, keys };
                (nonce, Some(sender_ei))
            }
            _ => return Err(S2Error::NoSpan),
        };
        let mut unencrypted = vec![seq, if ext.is_some() { 0x01 } else { 0x00 }];
        if let Some(ei) = ext {
            // SPAN extension: length 18, critical, type 1.
            unencrypted.push(18);
            unencrypted.push(0x41);
            unencrypted.extend_from_slice(&ei);
        }
        let len = 2 + unencrypted.len() + payload.len() + 8;
        let aad = self.aad(own, node, len, &unencrypted);
        let sealed = crypto::ccm_seal(&x.key_ccm, &nonce, &aad, payload);
        let mut out = vec![CC, MESSAGE_ENCAPSULATION];
        out.extend_from_slice(&unencrypted);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

/// Where a Message Encapsulation's unencrypted extensions end, and what they carry.
struct Header {
    end: usize,
    /// SPAN: the sender's entropy input.
    sender_ei: Option<Key>,
    /// MGRP: the multicast group of a multicast or of its singlecast follow-up.
    group: Option<u8>,
}

fn header_extensions(frame: &[u8], flags: u8) -> Result<Header, S2Error> {
    let mut off = 4;
    let mut sender_ei: Option<Key> = None;
    let mut group = None;
    if flags & 0x01 != 0 {
        loop {
            let len = usize::from(*frame.get(off).ok_or(S2Error::Malformed("extension"))?);
            let kind = *frame.get(off + 1).ok_or(S2Error::Malformed("extension"))?;
            if len < 2 {
                return Err(S2Error::Malformed("extension length"));
            }
            let data = frame
                .get(off + 2..off + len)
                .ok_or(S2Error::Malformed("extension data"))?;
            match kind & 0x3f {
                0x01 => {
                    sender_ei = Some(
                        data.try_into()
                            .map_err(|_| S2Error::Malformed("SPAN extension"))?,
                    )
                }
                0x03 => {
                    group = Some(match data {
                        [g] => *g,
                        _ => return Err(S2Error::Malformed("MGRP extension")),
                    })
                }
                // MOS: the sender lacks our MPAN; Warden sends no multicast.
                0x04 => {}
                other if kind & 0x40 != 0 => return Err(S2Error::CriticalExtension(other)),
                _ => {}
            }
            off += len;
            if kind & 0x80 == 0 {
                break;
            }
        }
    }
    Ok(Header {
        end: off,
        sender_ei,
        group,
    })
}

/// The encrypted extensions at the start of a decrypted payload: where the command begins, and
/// an MPAN extension's group and inner state.
fn encrypted_extensions(pt: &[u8], flags: u8) -> Result<(usize, Option<(u8, Key)>), S2Error> {
    let mut at = 0;
    let mut mpan = None;
    if flags & 0x02 != 0 {
        loop {
            let len = usize::from(
                *pt.get(at)
                    .ok_or(S2Error::Malformed("encrypted extension"))?,
            );
            let kind = *pt
                .get(at + 1)
                .ok_or(S2Error::Malformed("encrypted extension"))?;
            if len < 2 {
                return Err(S2Error::Malformed("encrypted extension length"));
            }
            let data = pt
                .get(at + 2..at + len)
                .ok_or(S2Error::Malformed("encrypted extension length"))?;
            match (kind & 0x3f, data) {
                (0x02, [g, state @ ..]) => {
                    let state: Key = state
                        .try_into()
                        .map_err(|_| S2Error::Malformed("MPAN extension"))?;
                    mpan = Some((*g, state));
                }
                (0x02, _) => return Err(S2Error::Malformed("MPAN extension")),
                (other, _) if kind & 0x40 != 0 => return Err(S2Error::CriticalExtension(other)),
                _ => {}
            }
            at += len;
            if kind & 0x80 == 0 {
                break;
            }
        }
    }
    Ok((at, mpan))
}

fn nonce13(drbg: &mut CtrDrbg) -> [u8; 13] {
    let b = drbg.generate();
    let mut n = [0u8; 13];
    n.copy_from_slice(b.get(..13).unwrap_or(&[0; 13]));
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const HOME: u32 = 0xc0ff_ee01;
    const HOST: u8 = 1;
    const NODE: u8 = 6;

    /// Warden's sessions and a node's, both holding `key` for S2 Unauthenticated.
    fn pair(host_key: &Key, node_key: &Key) -> (Sessions, Sessions) {
        let mut host = Sessions::new(HOME, HOST);
        host.set_network_key(Class::Unauthenticated, host_key);
        host.grant(NODE, Class::Unauthenticated);
        let mut node = Sessions::new(HOME, NODE);
        node.set_network_key(Class::Unauthenticated, node_key);
        (host, node)
    }

    /// The node asks for a nonce (Warden answers with its entropy) and sends its first frame.
    fn first_frame(host: &mut Sessions, node: &mut Sessions, payload: &[u8]) -> Vec<u8> {
        let report = host.nonce_report(NODE);
        node.on_nonce_report(HOST, &report).unwrap();
        node.seal(HOST, Keys::Network(Class::Unauthenticated), payload)
            .unwrap()
    }

    const UNAUTH: Keys = Keys::Network(Class::Unauthenticated);

    #[test]
    fn a_session_carries_frames_both_ways_under_the_granted_class() {
        let k = [7u8; 16];
        let (mut host, mut node) = pair(&k, &k);
        let f = first_frame(&mut host, &mut node, &[0x31, 0x05, 1, 0x22, 0, 0xd7]);
        let o = host.open(NODE, &f).unwrap();
        assert_eq!(o.payload, [0x31, 0x05, 1, 0x22, 0, 0xd7]);
        assert_eq!(o.keys, UNAUTH);
        // later frames use the established SPAN (no extension), both directions
        for i in 0..50u8 {
            let f = node.seal(HOST, UNAUTH, &[0x80, 0x03, i]).unwrap();
            assert_eq!(f[3] & 0x01, 0, "no SPAN extension once established");
            assert_eq!(host.open(NODE, &f).unwrap().payload, [0x80, 0x03, i]);
            let g = host.seal(NODE, UNAUTH, &[0x25, 0x01, i]).unwrap();
            assert_eq!(node.open(HOST, &g).unwrap().payload, [0x25, 0x01, i]);
        }
    }

    #[test]
    fn a_replayed_frame_is_refused_and_the_session_goes_on() {
        let k = [7u8; 16];
        let (mut host, mut node) = pair(&k, &k);
        let f = first_frame(&mut host, &mut node, &[0x80, 0x03, 1]);
        host.open(NODE, &f).unwrap();
        assert!(matches!(host.open(NODE, &f), Err(S2Error::Replay(_))));
        let g = node.seal(HOST, UNAUTH, &[0x80, 0x03, 2]).unwrap();
        assert_eq!(host.open(NODE, &g).unwrap().payload, [0x80, 0x03, 2]);
        assert!(matches!(host.open(NODE, &g), Err(S2Error::Replay(_))));
    }

    #[test]
    fn a_bad_tag_does_not_decrypt_and_a_new_nonce_exchange_recovers() {
        let k = [7u8; 16];
        let (mut host, mut node) = pair(&k, &k);
        let f = first_frame(&mut host, &mut node, &[0x80, 0x03, 1]);
        host.open(NODE, &f).unwrap();
        let mut g = node.seal(HOST, UNAUTH, &[0x80, 0x03, 2]).unwrap();
        *g.last_mut().unwrap() ^= 0x01;
        assert_eq!(host.open(NODE, &g), Err(S2Error::CannotDecode));
        // the session is gone: the node's next frame on the old SPAN is not taken
        let h = node.seal(HOST, UNAUTH, &[0x80, 0x03, 3]).unwrap();
        assert_eq!(host.open(NODE, &h), Err(S2Error::NoSpan));
        // Warden's Nonce Report (with SOS) starts a new one
        let f = first_frame(&mut host, &mut node, &[0x80, 0x03, 4]);
        assert_eq!(host.open(NODE, &f).unwrap().payload, [0x80, 0x03, 4]);
    }

    #[test]
    fn a_frame_under_another_key_does_not_decrypt() {
        let (mut host, mut node) = pair(&[7u8; 16], &[8u8; 16]);
        let f = first_frame(&mut host, &mut node, &[0x80, 0x03, 1]);
        assert_eq!(host.open(NODE, &f), Err(S2Error::CannotDecode));
    }

    #[test]
    fn lost_frames_are_caught_up_within_the_window_and_not_beyond() {
        let k = [7u8; 16];
        let (mut host, mut node) = pair(&k, &k);
        let f = first_frame(&mut host, &mut node, &[0x80, 0x03, 0]);
        host.open(NODE, &f).unwrap();
        for _ in 0..CATCH_UP - 1 {
            node.seal(HOST, UNAUTH, &[0x80, 0x03, 9]).unwrap();
        }
        let g = node.seal(HOST, UNAUTH, &[0x80, 0x03, 1]).unwrap();
        assert_eq!(host.open(NODE, &g).unwrap().payload, [0x80, 0x03, 1]);
        for _ in 0..CATCH_UP {
            node.seal(HOST, UNAUTH, &[0x80, 0x03, 9]).unwrap();
        }
        let g = node.seal(HOST, UNAUTH, &[0x80, 0x03, 2]).unwrap();
        assert_eq!(host.open(NODE, &g), Err(S2Error::CannotDecode));
    }

    #[test]
    fn bootstrap_frames_are_reported_under_the_temporary_keys() {
        let temp = crypto::temp_keys(&[3u8; 16]);
        let mut host = Sessions::new(HOME, HOST);
        host.set_network_key(Class::Unauthenticated, &[7u8; 16]);
        host.set_temp_keys(NODE, temp.clone());
        assert!(host.bootstrapping(NODE));
        let mut node = Sessions::new(HOME, NODE);
        node.set_temp_keys(HOST, temp);
        let report = host.nonce_report(NODE);
        node.on_nonce_report(HOST, &report).unwrap();
        let f = node.seal(HOST, Keys::Temp, &[0x9f, 0x06, 0x01]).unwrap();
        assert_eq!(host.open(NODE, &f).unwrap().keys, Keys::Temp);
        host.clear_temp_keys(NODE);
        assert!(!host.bootstrapping(NODE));
    }

    #[test]
    fn short_and_malformed_frames_are_typed_errors() {
        let mut host = Sessions::new(HOME, HOST);
        host.set_network_key(Class::Unauthenticated, &[7u8; 16]);
        for f in [
            &[][..],
            &[CC],
            &[CC, MESSAGE_ENCAPSULATION, 1],
            &[CC, MESSAGE_ENCAPSULATION, 1, 0x01],
            &[CC, MESSAGE_ENCAPSULATION, 1, 0x01, 0x01, 0x41],
            &[CC, MESSAGE_ENCAPSULATION, 1, 0x01, 18, 0x41, 0, 0],
            &[CC, MESSAGE_ENCAPSULATION, 1, 0x00, 1, 2, 3],
        ] {
            assert!(
                matches!(host.open(NODE, f), Err(S2Error::Malformed(_))),
                "{f:?}"
            );
        }
        assert!(host.on_nonce_report(NODE, &[CC, NONCE_REPORT, 1]).is_err());
        assert!(
            host.on_nonce_report(NODE, &[CC, NONCE_REPORT, 1, 0x01, 0])
                .is_err()
        );
        // a well-formed frame with no session: NoSpan, never a panic
        let mut f = vec![CC, MESSAGE_ENCAPSULATION, 1, 0x00];
        f.extend_from_slice(&[0; 12]);
        assert_eq!(host.open(NODE, &f), Err(S2Error::NoSpan));
    }

    #[test]
    fn header_extensions_name_the_group_and_refuse_what_must_be_understood() {
        // SPAN (critical, more follows) then MGRP (critical)
        let mut f = vec![CC, MESSAGE_ENCAPSULATION, 1, 0x01, 18, 0xc1];
        f.extend_from_slice(&[7; 16]);
        f.extend_from_slice(&[3, 0x43, 9]);
        let h = header_extensions(&f, 0x01).unwrap();
        assert_eq!(
            (h.end, h.sender_ei, h.group),
            (f.len(), Some([7; 16]), Some(9))
        );
        // MOS and an unknown non-critical extension are skipped
        let f = [CC, MESSAGE_ENCAPSULATION, 1, 0x01, 2, 0x84, 3, 0x3e, 0];
        let h = header_extensions(&f, 0x01).unwrap();
        assert_eq!((h.end, h.group), (f.len(), None));
        // an MGRP without its group byte, or with two; an unknown critical one; a truncated one
        for (f, want) in [
            (
                vec![CC, MESSAGE_ENCAPSULATION, 1, 1, 2, 0x43],
                S2Error::Malformed("MGRP extension"),
            ),
            (
                vec![CC, MESSAGE_ENCAPSULATION, 1, 1, 4, 0x43, 1, 2],
                S2Error::Malformed("MGRP extension"),
            ),
            (
                vec![CC, MESSAGE_ENCAPSULATION, 1, 1, 2, 0x7e],
                S2Error::CriticalExtension(0x3e),
            ),
            (
                vec![CC, MESSAGE_ENCAPSULATION, 1, 1, 5, 0x43, 1],
                S2Error::Malformed("extension data"),
            ),
            (
                vec![CC, MESSAGE_ENCAPSULATION, 1, 1, 1, 0x43],
                S2Error::Malformed("extension length"),
            ),
        ] {
            assert_eq!(header_extensions(&f, 0x01).err(), Some(want), "{f:02x?}");
        }
    }

    #[test]
    fn encrypted_extensions_carry_the_mpan() {
        let mut pt = vec![19, 0x42, 5];
        pt.extend_from_slice(&[0xab; 16]);
        pt.extend_from_slice(&[0x31, 0x05]);
        assert_eq!(
            encrypted_extensions(&pt, 0x02).unwrap(),
            (19, Some((5, [0xab; 16])))
        );
        // without the flag, the bytes are the command
        assert_eq!(encrypted_extensions(&pt, 0x00).unwrap(), (0, None));
        // an MPAN one byte short; an unknown critical one; one running past the end
        let mut short = vec![18, 0x42, 5];
        short.extend_from_slice(&[0xab; 15]);
        assert_eq!(
            encrypted_extensions(&short, 0x02),
            Err(S2Error::Malformed("MPAN extension"))
        );
        assert_eq!(
            encrypted_extensions(&[2, 0x55], 0x02),
            Err(S2Error::CriticalExtension(0x15))
        );
        assert_eq!(
            encrypted_extensions(&[9, 0x02, 1], 0x02),
            Err(S2Error::Malformed("encrypted extension length"))
        );
    }

    #[test]
    fn mpan_state_is_bounded_per_node_and_cleared_with_the_node() {
        let mut host = Sessions::new(HOME, HOST);
        host.set_network_key(Class::Unauthenticated, &[1; 16]);
        host.grant(NODE, Class::Unauthenticated);
        // a multicast for a group with no MPAN marks it out of sync (one entry, not more)
        let f = [
            CC,
            MESSAGE_ENCAPSULATION,
            1,
            0x01,
            3,
            0x43,
            7,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(host.open_multicast(NODE, &f), Err(S2Error::NoMpan(7)));
        assert_eq!(host.open_multicast(NODE, &f), Err(S2Error::NoMpan(7)));
        assert_eq!(host.mpan_groups(NODE), 1);
        // the sum: every group id stored, at most MPAN_GROUPS kept, the newest
        for g in 0..=255u8 {
            host.store_mpan(NODE, g, [g; 16]);
        }
        assert_eq!(host.mpan_groups(NODE), MPAN_GROUPS);
        assert!(host.mpan(NODE, 255).is_some() && host.mpan(NODE, 0).is_none());
        // the reset: a revoked node's groups are gone
        host.revoke(NODE);
        assert_eq!(host.mpan_groups(NODE), 0);
        // a multicast without MGRP, or with a SPAN extension, is malformed
        let no_group = [
            CC,
            MESSAGE_ENCAPSULATION,
            1,
            0x00,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            host.open_multicast(NODE, &no_group),
            Err(S2Error::Malformed("a multicast without MGRP"))
        );
        // a MOS Nonce Report: flags 0x02, no entropy input, the session untouched
        let r = host.nonce_report_mos(NODE);
        assert_eq!((r.len(), r[0], r[1], r[3]), (4, CC, NONCE_REPORT, 0x02));
    }
}
