//! Zigbee install codes: parsing, CRC check and link-key derivation.
//!
//! An install code is 6, 8, 12 or 16 bytes followed by its CRC-16/X-25 (little-endian). The device's
//! pre-configured link key is the AES-MMO hash (Matyas–Meyer–Oseas over AES-128, Zigbee spec B.6) of the
//! code including its CRC.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use std::fmt;

/// Why an install code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallCodeError {
    #[error("install code has {0} bytes; expected 8, 10, 14 or 18 (code plus 2-byte CRC)")]
    BadLength(usize),
    #[error("install code CRC mismatch")]
    BadCrc,
}

/// A validated install code (code bytes followed by their CRC). Its `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallCode(Vec<u8>);

impl fmt::Debug for InstallCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstallCode(<{} bytes>)", self.0.len())
    }
}

/// CRC-16/X-25 (reflected poly 0x1021, init 0xFFFF, final XOR 0xFFFF).
pub fn crc16_x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl InstallCode {
    /// Parses code + CRC (8, 10, 14 or 18 bytes) and checks the CRC.
    pub fn parse(with_crc: &[u8]) -> Result<Self, InstallCodeError> {
        if !matches!(with_crc.len(), 8 | 10 | 14 | 18) {
            return Err(InstallCodeError::BadLength(with_crc.len()));
        }
        let split = with_crc.len() - 2;
        let (code, crc) = with_crc.split_at(split);
        let expected = crc16_x25(code).to_le_bytes();
        if crc != expected {
            return Err(InstallCodeError::BadCrc);
        }
        Ok(Self(with_crc.to_vec()))
    }

    /// Code bytes followed by the CRC, as carried by `APP_CNF.BDBAddInstallCode` format 0x01.
    pub fn as_bytes_with_crc(&self) -> &[u8] {
        &self.0
    }

    /// The link key the trust centre uses for this device.
    pub fn link_key(&self) -> [u8; 16] {
        aes_mmo_hash(&self.0)
    }
}

/// The link key for an install code given with its CRC (checked).
pub fn link_key(with_crc: &[u8]) -> Result<[u8; 16], InstallCodeError> {
    InstallCode::parse(with_crc).map(|c| c.link_key())
}

/// Zigbee's AES-MMO hash (spec B.6) for messages shorter than 2^16 bits: pad with 0x80, zeros and the
/// bit length as a 16-bit big-endian number to a multiple of 16 bytes, then H_j = E(H_{j-1}, M_j) ^ M_j.
pub fn aes_mmo_hash(message: &[u8]) -> [u8; 16] {
    let mut padded = message.to_vec();
    let bits = u16::try_from(message.len().saturating_mul(8)).unwrap_or(u16::MAX);
    padded.push(0x80);
    while padded.len() % 16 != 14 {
        padded.push(0);
    }
    padded.extend_from_slice(&bits.to_be_bytes());
    let mut hash = [0u8; 16];
    for block in padded.chunks_exact(16) {
        let cipher = Aes128::new(GenericArray::from_slice(&hash));
        let mut out = GenericArray::clone_from_slice(block);
        cipher.encrypt_block(&mut out);
        for ((h, o), m) in hash.iter_mut().zip(out.iter()).zip(block.iter()) {
            *h = o ^ m;
        }
    }
    hash
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn zigbee_spec_example() {
        let code = InstallCode::parse(&hex("83FED3407A939723A5C639B26916D505C3B5")).unwrap();
        assert_eq!(
            code.link_key().to_vec(),
            hex("66B6900981E1EE3CA4206B6B861C02BB")
        );
    }

    #[test]
    fn matches_zigpy_convert_install_code() {
        for (code, key) in crate::znp::vectors::INSTALL_CODES {
            let ic = InstallCode::parse(&hex(code)).unwrap();
            assert_eq!(ic.link_key().to_vec(), hex(key), "{code}");
        }
    }

    #[test]
    fn rejects_bad_length_and_crc() {
        assert_eq!(
            InstallCode::parse(&[0; 7]),
            Err(InstallCodeError::BadLength(7))
        );
        assert_eq!(
            InstallCode::parse(&[0; 16]),
            Err(InstallCodeError::BadLength(16))
        );
        assert_eq!(
            InstallCode::parse(&hex("83FED3407A939723A5C639B26916D505C3B6")),
            Err(InstallCodeError::BadCrc)
        );
    }

    #[test]
    fn debug_hides_code() {
        let code = InstallCode::parse(&hex("83FED3407A939723A5C639B26916D505C3B5")).unwrap();
        assert!(!format!("{code:?}").contains("83"));
    }
}
