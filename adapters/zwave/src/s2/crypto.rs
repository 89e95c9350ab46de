//! Security 2's primitives (Z-Wave's S2 specification): AES-128-CMAC key derivation (CKDF) for the
//! temporary and network keys and for the per-peer nonce generator, NIST CTR_DRBG over AES-128
//! without a derivation function (the SPAN), AES-CCM with an 8-byte tag and a 13-byte nonce, and
//! X25519 key agreement.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use ccm::aead::AeadInPlace;
use ccm::consts::{U8, U13};
use cmac::{Cmac, Mac};

pub type Key = [u8; 16];

const CONSTANT_PRK: [u8; 16] = [0x33; 16];
const CONSTANT_TE: [u8; 15] = [0x88; 15];
const CONSTANT_NK: [u8; 15] = [0x55; 15];
const CONSTANT_NONCE: [u8; 16] = [0x26; 16];
const CONSTANT_EI: [u8; 15] = [0x88; 15];

/// AES-128-CMAC of the concatenated parts.
pub fn cmac(key: &Key, parts: &[&[u8]]) -> Key {
    // A 16-byte key is always valid for AES-128.
    let mut m = <Cmac<Aes128> as Mac>::new(GenericArray::from_slice(key));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The keys one network key (or the temporary key of a bootstrap) expands to.
#[derive(Clone, PartialEq, Eq)]
pub struct Expanded {
    pub key_ccm: Key,
    pub personalization: [u8; 32],
    pub key_mpan: Key,
}

impl std::fmt::Debug for Expanded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expanded(…)")
    }
}

fn expand(prk: &Key, constant: &[u8; 15]) -> [Key; 4] {
    let t1 = cmac(prk, &[constant, &[1]]);
    let t2 = cmac(prk, &[&t1, constant, &[2]]);
    let t3 = cmac(prk, &[&t2, constant, &[3]]);
    let t4 = cmac(prk, &[&t3, constant, &[4]]);
    [t1, t2, t3, t4]
}

fn join(a: &Key, b: &Key) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(a);
    out[16..].copy_from_slice(b);
    out
}

/// CKDF-NetworkKeyExpand.
pub fn network_keys(pnk: &Key) -> Expanded {
    let [t1, t2, t3, t4] = expand(pnk, &CONSTANT_NK);
    Expanded {
        key_ccm: t1,
        personalization: join(&t2, &t3),
        key_mpan: t4,
    }
}

/// CKDF-TempExtract: the pseudo-random key from the ECDH secret and both public keys (the
/// including node's first).
pub fn temp_prk(shared: &[u8; 32], including: &[u8; 32], joining: &[u8; 32]) -> Key {
    cmac(&CONSTANT_PRK, &[shared, including, joining])
}

/// CKDF-TempExpand: the temporary CCM key and personalization string of a bootstrap.
pub fn temp_keys(prk: &Key) -> Expanded {
    let t1 = cmac(prk, &[&CONSTANT_TE, &[1]]);
    let t2 = cmac(prk, &[&t1, &CONSTANT_TE, &[2]]);
    let t3 = cmac(prk, &[&t2, &CONSTANT_TE, &[3]]);
    Expanded {
        key_ccm: t1,
        personalization: join(&t2, &t3),
        key_mpan: [0; 16],
    }
}

/// CKDF-MEI: the mixed entropy input of a SPAN from the sender's and receiver's entropy inputs.
pub fn mei(sender_ei: &Key, receiver_ei: &Key) -> [u8; 32] {
    let prk = cmac(&CONSTANT_NONCE, &[sender_ei, receiver_ei]);
    let t1 = cmac(&prk, &[&CONSTANT_EI, &[0], &CONSTANT_EI, &[1]]);
    let t2 = cmac(&prk, &[&t1, &CONSTANT_EI, &[2]]);
    join(&t1, &t2)
}

/// NIST SP 800-90A CTR_DRBG, AES-128, no derivation function, no reseeding (as S2 uses it).
#[derive(Clone)]
pub struct CtrDrbg {
    key: Key,
    v: Key,
}

impl std::fmt::Debug for CtrDrbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CtrDrbg(…)")
    }
}

fn increment(v: &mut Key) {
    for b in v.iter_mut().rev() {
        *b = b.wrapping_add(1);
        if *b != 0 {
            break;
        }
    }
}

/// The nonce of a multicast frame: the first 13 bytes of AES(keyMPAN, the group's inner MPAN
/// state); the state then moves one step on.
pub fn mpan_nonce(key_mpan: &Key, state: &mut Key) -> [u8; 13] {
    let b = aes_block(key_mpan, state);
    increment(state);
    let mut n = [0u8; 13];
    n.copy_from_slice(b.get(..13).unwrap_or(&[0; 13]));
    n
}

/// One step of an inner MPAN state (what a singlecast follow-up does to it).
pub fn mpan_step(state: &mut Key) {
    increment(state);
}

fn aes_block(key: &Key, block: &Key) -> Key {
    let c = Aes128::new(GenericArray::from_slice(key));
    let mut b = GenericArray::clone_from_slice(block);
    c.encrypt_block(&mut b);
    b.into()
}

impl CtrDrbg {
    /// Instantiates from 32 bytes of entropy XOR the personalization string.
    pub fn new(entropy: &[u8; 32], personalization: &[u8; 32]) -> Self {
        let mut seed = *entropy;
        for (s, p) in seed.iter_mut().zip(personalization) {
            *s ^= p;
        }
        let mut d = Self {
            key: [0; 16],
            v: [0; 16],
        };
        d.update(Some(&seed));
        d
    }

    fn update(&mut self, provided: Option<&[u8; 32]>) {
        let mut temp = [0u8; 32];
        for half in temp.chunks_exact_mut(16) {
            increment(&mut self.v);
            half.copy_from_slice(&aes_block(&self.key, &self.v));
        }
        if let Some(p) = provided {
            for (t, p) in temp.iter_mut().zip(p) {
                *t ^= p;
            }
        }
        self.key.copy_from_slice(&temp[..16]);
        self.v.copy_from_slice(&temp[16..]);
    }

    /// 16 bytes of output.
    pub fn generate(&mut self) -> Key {
        increment(&mut self.v);
        let out = aes_block(&self.key, &self.v);
        self.update(None);
        out
    }
}

type S2Ccm = ccm::Ccm<Aes128, U8, U13>;

/// AES-CCM encryption with an 8-byte tag appended.
pub fn ccm_seal(key: &Key, nonce: &[u8; 13], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let c = <S2Ccm as ccm::aead::KeyInit>::new(GenericArray::from_slice(key));
    let mut buf = plaintext.to_vec();
    match c.encrypt_in_place_detached(GenericArray::from_slice(nonce), aad, &mut buf) {
        Ok(tag) => {
            buf.extend_from_slice(&tag);
            buf
        }
        // Only a plaintext longer than 2^16 fails, which a Z-Wave frame never is.
        Err(_) => Vec::new(),
    }
}

/// AES-CCM decryption of `ciphertext ‖ tag(8)`; `None` when the tag does not verify.
pub fn ccm_open(key: &Key, nonce: &[u8; 13], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let split = sealed.len().checked_sub(8)?;
    let (ct, tag) = sealed.split_at(split);
    let c = <S2Ccm as ccm::aead::KeyInit>::new(GenericArray::from_slice(key));
    let mut buf = ct.to_vec();
    c.decrypt_in_place_detached(
        GenericArray::from_slice(nonce),
        aad,
        &mut buf,
        GenericArray::from_slice(tag),
    )
    .ok()?;
    Some(buf)
}

/// An X25519 key pair for one bootstrap.
pub struct KeyPair {
    secret: x25519_dalek::StaticSecret,
    pub public: [u8; 32],
}

impl KeyPair {
    pub fn generate() -> Self {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The shared secret with a peer's public key.
    pub fn agree(&self, peer: &[u8; 32]) -> [u8; 32] {
        self.secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*peer))
            .to_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn cmac_matches_rfc_4493() {
        let key: Key = h("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap();
        assert_eq!(
            cmac(&key, &[]).to_vec(),
            h("bb1d6929e95937287fa37d129b756746")
        );
        assert_eq!(
            cmac(&key, &[&h("6bc1bee22e409f96e93d7e117393172a")]).to_vec(),
            h("070a16b46b4d4144f79bdd9dd04a287c")
        );
    }

    #[test]
    fn ccm_round_trips_and_refuses_a_changed_byte() {
        let key = [7u8; 16];
        let nonce = [9u8; 13];
        let sealed = ccm_seal(&key, &nonce, b"aad", b"hello");
        assert_eq!(sealed.len(), 5 + 8);
        assert_eq!(ccm_open(&key, &nonce, b"aad", &sealed).unwrap(), b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(ccm_open(&key, &nonce, b"aad", &bad).is_none(), "byte {i}");
        }
        assert!(ccm_open(&key, &nonce, b"aaD", &sealed).is_none());
        assert!(ccm_open(&key, &nonce, b"aad", &sealed[..7]).is_none());
    }

    #[test]
    fn both_sides_of_a_key_agreement_agree() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        assert_eq!(a.agree(&b.public), b.agree(&a.public));
    }
}
