//! The authenticated ahead-of-time compilation cache.
//!
//! An entry is `<dir>/<module-sha256>-<wasmtime version>-<engine fingerprint>.cwasm`: the bytes of
//! `Component::serialize` followed by a 32-byte HMAC-SHA256 trailer (key: `HostOptions::cache_key`)
//! over the entry's file name and the bytes. Deserializing precompiled code is `unsafe` in
//! wasmtime (the bytes become executable code), so an entry is used only after its MAC checks
//! out; a missing/mismatching MAC or a deserialize error means the entry is recompiled and
//! overwritten, never trusted. Entries are written atomically (temporary file + rename).

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// The wasmtime version the cache entries are produced by (part of their names).
pub const WASMTIME_VERSION: &str = "48.0.8";

const MAC_LEN: usize = 32;

/// How a plugin's compiled code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheOutcome {
    /// Loaded from an authenticated cache entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// The entry failed authentication or did not deserialize: compiled and overwritten.
    Corrupt,
    /// No cache directory configured: compiled.
    Disabled,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Corrupt => "corrupt",
            Self::Disabled => "disabled",
        }
    }
}

/// Feeds a `Hash` value into SHA-256, for a fingerprint stable across processes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(b)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A fingerprint of the engine's compilation settings (and the host CPU features wasmtime
/// considers), so entries from a differently configured engine are never even tried.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

pub(crate) struct Cache {
    dir: PathBuf,
    key: [u8; 32],
    fingerprint: String,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, key: [u8; 32], engine: &Engine) -> std::io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            key,
            fingerprint: engine_fingerprint(engine),
        })
    }

    fn file_name(&self, sha256: &[u8; 32]) -> String {
        format!(
            "{}-{}-{}.cwasm",
            hex::encode(sha256),
            WASMTIME_VERSION,
            self.fingerprint
        )
    }

    /// The entry path for a module digest.
    pub(crate) fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(self.file_name(sha256))
    }

    fn mac(&self, name: &str, bytes: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(bytes);
        mac
    }

    /// Loads the entry for `sha256` if it exists and authenticates; `Err(true)` when an entry
    /// exists but is not usable, `Err(false)` when there is none.
    pub(crate) fn load(&self, engine: &Engine, sha256: &[u8; 32]) -> Result<Component, bool> {
        let name = self.file_name(sha256);
        let data = match fs::read(self.dir.join(&name)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(false),
            Err(_) => return Err(true),
        };
        let Some(split) = data.len().checked_sub(MAC_LEN) else {
            return Err(true);
        };
        let (body, tag) = data.split_at(split);
        if self.mac(&name, body).verify_slice(tag).is_err() {
            return Err(true);
        }
        deserialize_authenticated(engine, body).map_err(|_| true)
    }

    /// Stores `component`'s compiled form for `sha256`, atomically.
    pub(crate) fn store(&self, sha256: &[u8; 32], component: &Component) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let name = self.file_name(sha256);
        let tag = self.mac(&name, &bytes).finalize().into_bytes();
        let tmp = self.dir.join(format!(
            ".{name}.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.write_all(&tag)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, self.dir.join(&name))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Deserializes precompiled component bytes.
///
/// Only called by [`Cache::load`] after the bytes' HMAC (keyed with the operator's cache key and
/// bound to the entry name, i.e. to the module digest, wasmtime version and engine fingerprint)
/// has been verified.
#[allow(unsafe_code)]
fn deserialize_authenticated(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by `serialize`/`precompile` of a
    // compatible engine and not tampered with, since they are mapped as executable code. These
    // bytes were written by `Cache::store` from `Component::serialize` of an engine with the same
    // wasmtime version and configuration fingerprint (both part of the MAC'd name), and their
    // HMAC-SHA256 under the operator's secret cache key was verified just before this call, so
    // they are exactly what this host produced. wasmtime additionally checks the header,
    // version and engine compatibility and returns an error (not UB) on mismatch.
    unsafe { Component::deserialize(engine, bytes) }
}
