//! Secrets at rest: the master key (kept apart from the database), AES-256-GCM sealing of device
//! credentials, and the gateway's Ed25519 signing key (stored sealed in the database).
//!
//! The master key comes from `WARDEN_MASTER_KEY` (64 hex characters) or from a key file that must be
//! mode 0600. It is never logged; errors name the file, not its content.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const MASTER_KEY_ENV: &str = "WARDEN_MASTER_KEY";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read master key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "master key file {path} is accessible by group or others (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("master key {origin} is not 64 hex characters")]
    Format { origin: String },
    #[error("cannot create master key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "master key file {path} does not exist and this data dir already holds sealed secrets; refusing to create a new key"
    )]
    Missing { path: PathBuf },
    #[error("sealed secret could not be opened (wrong master key or tampered data)")]
    Open,
}

/// The 256-bit master key. Sub-keys are derived from it with HKDF-SHA256.
pub struct MasterKey([u8; 32]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        // do not leave the key in freed memory (a write the compiler may not elide)
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn parse_hex_key(text: &str, origin: &str) -> Result<[u8; 32], SecretError> {
    let t = text.trim();
    let mut key = [0u8; 32];
    hex::decode_to_slice(t, &mut key).map_err(|_| SecretError::Format {
        origin: origin.to_owned(),
    })?;
    Ok(key)
}

impl MasterKey {
    /// Loads the key from the environment or `path`. When neither exists and `may_create` is true, a
    /// new random key is written to `path` (created exclusively, mode 0600).
    pub fn load(path: &Path, may_create: bool) -> Result<Self, SecretError> {
        if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
            return parse_hex_key(&v, MASTER_KEY_ENV).map(Self);
        }
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::Permissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
                // a regular file, read once and capped: a FIFO or a device is refused, not waited on
                let bytes = crate::files::read(path, crate::files::KEY_MAX, "master key file")
                    .map_err(|e| SecretError::Read {
                        path: path.to_owned(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                let text = String::from_utf8(bytes).map_err(|_| SecretError::Read {
                    path: path.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"),
                })?;
                parse_hex_key(&text, &path.display().to_string()).map(Self)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !may_create {
                    return Err(SecretError::Missing {
                        path: path.to_owned(),
                    });
                }
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private_file(path, hex::encode(key).as_bytes()).map_err(|source| {
                    SecretError::Create {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                Ok(Self(key))
            }
            Err(source) => Err(SecretError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    #[cfg(test)]
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// A random key held only in memory (benchmarks, throwaway data dirs).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"warden-master-v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hk.expand(info, &mut out).is_err() {
            unreachable_zero(&mut out);
        }
        out
    }

    /// The MAC key that authenticates the compiled-plugin cache (so a tampered entry is
    /// recompiled, never loaded).
    pub fn plugin_cache_key(&self) -> [u8; 32] {
        self.derive(b"plugin-cache")
    }

    /// The AEAD that seals credentials and other secrets stored in the database, and the MAC key
    /// that authenticates registry rows (its own HKDF label, so neither key says anything about the
    /// other).
    pub fn sealer(&self) -> Sealer {
        let k = self.derive(b"sealing");
        Sealer {
            cipher: Aes256Gcm::new((&k).into()),
            row_mac_key: self.derive(b"registry-row-mac"),
        }
    }
}

fn unreachable_zero(out: &mut [u8; 32]) {
    out.fill(0);
}

/// Writes a file that only its owner can read, refusing to replace an existing one.
pub fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// AES-256-GCM with a random 96-bit nonce per seal; the associated data binds a sealed value to its
/// owner (e.g. `device-id/credential-name`) so blobs cannot be swapped between rows. Also holds the
/// HMAC-SHA256 key that authenticates registry rows ([`Sealer::row_mac`]).
pub struct Sealer {
    cipher: Aes256Gcm,
    row_mac_key: [u8; 32],
}

impl Drop for Sealer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.row_mac_key);
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Sealer {
    fn row_hmac(&self, parts: &[Option<&[u8]>]) -> HmacSha256 {
        // A key shorter than SHA-256's 64-byte block is zero-padded by HMAC itself; padding it here
        // gives the same MAC through the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.row_mac_key);
        let mut m = <HmacSha256 as hmac::digest::KeyInit>::new((&block).into());
        block.fill(0);
        m.update(b"warden-registry-row-v1");
        for p in parts {
            match p {
                Some(b) => {
                    m.update(&[1]);
                    m.update(&(b.len() as u64).to_be_bytes());
                    m.update(b);
                }
                None => m.update(&[0]),
            }
        }
        m
    }

    /// HMAC-SHA256 over length-prefixed `parts` (`None` encodes differently from empty).
    pub fn row_mac(&self, parts: &[Option<&[u8]>]) -> Vec<u8> {
        self.row_hmac(parts).finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the MAC of `parts` (constant-time comparison).
    pub fn row_mac_ok(&self, parts: &[Option<&[u8]>], tag: &[u8]) -> bool {
        self.row_hmac(parts).verify_slice(tag).is_ok()
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Encryption only fails for inputs larger than GCM allows (64 GiB): not reachable here.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, SecretError> {
        if blob.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        let (nonce, ct) = blob.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = MasterKey::from_bytes([7; 32]);
        let s = k.sealer();
        let blob = s.seal(b"sim:a/app_key", b"secret");
        assert_eq!(s.open(b"sim:a/app_key", &blob).unwrap(), b"secret");
        assert!(s.open(b"sim:b/app_key", &blob).is_err(), "aad must bind");
        let mut bad = blob.clone();
        bad[20] ^= 1;
        assert!(s.open(b"sim:a/app_key", &bad).is_err());
        let other = MasterKey::from_bytes([8; 32]).sealer();
        assert!(other.open(b"sim:a/app_key", &blob).is_err());
        assert!(s.open(b"x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.key");
        let a = MasterKey::load(&p, true).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKey::load(&p, false).unwrap();
        assert_eq!(a.0, b.0);
    }

    #[test]
    fn loose_permissions_and_garbage_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        fs::write(&p, "00".repeat(32)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, "not hex").unwrap();
        let e = MasterKey::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("64 hex"), "{e}");
        // the error never echoes the file's content
        assert!(!e.contains("not hex"));
        let missing = d.path().join("none");
        assert!(matches!(
            MasterKey::load(&missing, false),
            Err(SecretError::Missing { .. })
        ));
    }
}
