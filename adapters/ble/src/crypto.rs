//! Encrypted BTHome v2: AES-128-CCM with a 4-byte MIC under the device's 16-byte bind key.
//!
//! The nonce is 13 bytes: the advertiser's MAC (display order), the UUID 0xFCD2 little-endian, the
//! device information byte and the 4-byte counter as sent. No associated data. The encrypted body
//! is `ciphertext ‖ counter (4, little-endian) ‖ MIC (4)`.

use aes::Aes128;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U13};

use crate::bthome::{DeviceInfo, UUID16};

type Cipher = ccm::Ccm<Aes128, U4, U13>;

/// Why an encrypted body did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the bind key is {0} bytes, not 16")]
    KeyLength(usize),
    #[error("encrypted body of {0} bytes is too short")]
    TooShort(usize),
    #[error("the MIC does not verify (wrong key or tampered advert)")]
    BadMic,
}

/// A decrypted advert: the counter it carried and the plain object bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub counter: u32,
    pub objects: Vec<u8>,
}

fn nonce(mac: &[u8; 6], info: DeviceInfo, counter: [u8; 4]) -> [u8; 13] {
    let mut n = [0u8; 13];
    let uuid = UUID16.to_le_bytes();
    for (dst, src) in n.iter_mut().zip(
        mac.iter()
            .chain(uuid.iter())
            .chain(std::iter::once(&info.0))
            .chain(counter.iter()),
    ) {
        *dst = *src;
    }
    n
}

/// The counter an encrypted body claims, read without any check (for audit details).
pub fn claimed_counter(body: &[u8]) -> Option<u32> {
    let n = body.len();
    let c = body.get(n.checked_sub(8)?..n.checked_sub(4)?)?;
    Some(u32::from_le_bytes(c.try_into().ok()?))
}

/// Verifies and decrypts an encrypted body.
pub fn open(
    key: &[u8],
    mac: &[u8; 6],
    info: DeviceInfo,
    body: &[u8],
) -> Result<Opened, CryptoError> {
    if key.len() != 16 {
        return Err(CryptoError::KeyLength(key.len()));
    }
    let split = body
        .len()
        .checked_sub(8)
        .filter(|&n| n > 0)
        .ok_or(CryptoError::TooShort(body.len()))?;
    let (ct, tail) = body.split_at(split);
    let (ctr, mic) = tail.split_at(4);
    let ctr: [u8; 4] = ctr
        .try_into()
        .map_err(|_| CryptoError::TooShort(body.len()))?;
    let cipher = Cipher::new(GenericArray::from_slice(key));
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&nonce(mac, info, ctr)),
            &[],
            &mut buf,
            GenericArray::from_slice(mic),
        )
        .map_err(|_| CryptoError::BadMic)?;
    Ok(Opened {
        counter: u32::from_le_bytes(ctr),
        objects: buf,
    })
}

/// A key check value: the first 8 bytes of AES-128 of a zero block under `key` (identifies a key
/// without revealing it), `None` unless the key is 16 bytes.
pub fn key_check(key: &[u8]) -> Option<[u8; 8]> {
    use aes::cipher::{BlockEncrypt, KeyInit as _};
    if key.len() != 16 {
        return None;
    }
    let aes = Aes128::new(GenericArray::from_slice(key));
    let mut block = GenericArray::from([0u8; 16]);
    aes.encrypt_block(&mut block);
    let mut out = [0u8; 8];
    out.copy_from_slice(block.get(..8)?);
    Some(out)
}

/// Encrypts objects the way a BTHome device does (tests, benchmarks and the fuzz target's seeds).
pub fn seal(
    key: &[u8; 16],
    mac: &[u8; 6],
    info: DeviceInfo,
    counter: u32,
    objects: &[u8],
) -> Vec<u8> {
    let cipher = Cipher::new(GenericArray::from_slice(key));
    let ctr = counter.to_le_bytes();
    let mut buf = objects.to_vec();
    match cipher.encrypt_in_place_detached(
        GenericArray::from_slice(&nonce(mac, info, ctr)),
        &[],
        &mut buf,
    ) {
        Ok(tag) => {
            buf.extend_from_slice(&ctr);
            buf.extend_from_slice(&tag);
            buf
        }
        // only a message longer than CCM's length field allows fails: not reachable from 255 bytes
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const KEY: [u8; 16] = [
        0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9,
        0x32,
    ];
    const MAC: [u8; 6] = [0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5];

    #[test]
    fn bthome_bles_encoder_output_opens() {
        // service data (after the UUID) that bthome-ble 3.25's encrypt_payload produced for the
        // objects 01 64 02 ca 09 03 bf 13 with this key, MAC and counter 0x00112233
        let sd = [
            0x41u8, 0xe7, 0xeb, 0xf8, 0x00, 0x20, 0x3b, 0x15, 0x07, 0x33, 0x22, 0x11, 0x00, 0x1d,
            0xb3, 0xf6, 0xcc,
        ];
        let objects = [0x01, 0x64, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13];
        let o = open(&KEY, &MAC, DeviceInfo(sd[0]), &sd[1..]).unwrap();
        assert_eq!(o.counter, 0x0011_2233);
        assert_eq!(o.objects, objects);
        assert_eq!(claimed_counter(&sd[1..]), Some(0x0011_2233));
        // and our sealing produces the very same bytes
        assert_eq!(
            seal(&KEY, &MAC, DeviceInfo(0x41), 0x0011_2233, &objects),
            sd[1..]
        );
    }

    #[test]
    fn wrong_key_tamper_and_wrong_mac_fail() {
        let sealed = seal(&KEY, &MAC, DeviceInfo(0x41), 7, &[0x01, 0x50]);
        let mut other = KEY;
        other[0] ^= 1;
        assert_eq!(
            open(&other, &MAC, DeviceInfo(0x41), &sealed),
            Err(CryptoError::BadMic)
        );
        let mut t = sealed.clone();
        t[0] ^= 1;
        assert_eq!(
            open(&KEY, &MAC, DeviceInfo(0x41), &t),
            Err(CryptoError::BadMic)
        );
        let mut m = MAC;
        m[5] ^= 1;
        assert_eq!(
            open(&KEY, &m, DeviceInfo(0x41), &sealed),
            Err(CryptoError::BadMic)
        );
        // the counter is bound into the nonce: changing it breaks the MIC
        let mut c = sealed.clone();
        let n = c.len();
        c[n - 8] ^= 1;
        assert_eq!(
            open(&KEY, &MAC, DeviceInfo(0x41), &c),
            Err(CryptoError::BadMic)
        );
        assert_eq!(
            open(&KEY[..15], &MAC, DeviceInfo(0x41), &sealed),
            Err(CryptoError::KeyLength(15))
        );
        assert_eq!(
            open(&KEY, &MAC, DeviceInfo(0x41), &sealed[..8]),
            Err(CryptoError::TooShort(8))
        );
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seal_open_round_trips(key in any::<[u8; 16]>(), mac in any::<[u8; 6]>(), ctr in any::<u32>(),
                                 body in proptest::collection::vec(any::<u8>(), 1..200)) {
            let s = seal(&key, &mac, DeviceInfo(0x41), ctr, &body);
            let o = open(&key, &mac, DeviceInfo(0x41), &s).unwrap();
            prop_assert_eq!(o.counter, ctr);
            prop_assert_eq!(o.objects, body);
        }

        #[test]
        fn garbage_never_opens_or_panics(key in any::<[u8; 16]>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(open(&key, &[0; 6], DeviceInfo(0x41), &body).is_err());
        }
    }
}
