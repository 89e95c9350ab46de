//! The authenticated ahead-of-time compilation cache.
//!
//! An entry is `<dir>/<module-sha256>-<wasmtime version>-<engine fingerprint>.cwasm`: a header
//! (format tag, the SHA-256 of the module it was compiled from, the engine fingerprint), the bytes
//! of `Component::serialize` (or `Module::serialize` for a 0.2.0 core module), and a 32-byte HMAC-SHA256 trailer (key: `HostOptions::cache_key`)
//! over the entry's file name, the header and the bytes. Deserializing precompiled code is
//! `unsafe` in wasmtime (the bytes become executable code), so an entry is used only when the
//! module digest it records is the digest of the bytes whose signature was just verified (read
//! once, see `Host::prepare`), it was compiled by this engine configuration, and its MAC checks
//! out. Anything else means the entry is recompiled and overwritten, never trusted, and reported
//! as `CacheOutcome::Corrupt` with the reason (the gateway makes that a security audit record).
//! Entries are read capped, regular files only, and written atomically (temporary file + rename).
//!
//! What this does and does not stop: an entry copied or renamed from another module, an entry of
//! an older version of the plugin, a truncated or bit-flipped entry are all refused even by someone
//! who holds the MAC key. Someone who holds the key *and* can write native code into a correctly
//! headed entry is not stopped by anything short of recompiling; that is why the key should not
//! be readable by whoever can write the cache (see plugins/README.md, "Compiled-code cache").

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::host::Code;

type HmacSha256 = Hmac<Sha256>;

/// The wasmtime version the cache entries are produced by (part of their names).
pub const WASMTIME_VERSION: &str = "48.0.8";

const MAC_LEN: usize = 32;
/// Entry format tag (version 2: with the module digest and engine fingerprint recorded).
const MAGIC: &[u8; 8] = b"WRDNAOT2";
/// Magic, the module's SHA-256, the engine fingerprint (16 hex digits).
const HEADER_LEN: usize = 8 + 32 + 16;

/// Why a cache entry was not used.
#[derive(Debug)]
pub(crate) enum Refused {
    /// There is none.
    Missing,
    /// There is one, but it is unreadable, records another module or engine, fails its MAC or
    /// does not deserialize: it is recompiled and overwritten (and the gateway audits it).
    Bad(String),
}

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
    max_entry_bytes: u64,
}

impl Cache {
    pub(crate) fn new(
        dir: PathBuf,
        key: [u8; 32],
        engine: &Engine,
        max_module_bytes: u64,
    ) -> std::io::Result<Self> {
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            key,
            fingerprint: engine_fingerprint(engine),
            // compiled code is several times the module's size; bounded all the same
            max_entry_bytes: max_module_bytes.saturating_mul(16).max(64 << 20),
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

    fn mac(&self, name: &str, header: &[u8], body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(header);
        mac.update(body);
        mac
    }

    fn header(&self, sha256: &[u8; 32]) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(sha256);
        h.extend_from_slice(self.fingerprint.as_bytes());
        h
    }

    /// Loads the entry for `sha256` — the digest of the module bytes whose signature was just
    /// checked — if it exists, records that very digest and this engine's fingerprint, and its
    /// MAC checks out.
    pub(crate) fn load(&self, engine: &Engine, sha256: &[u8; 32]) -> Result<Code, Refused> {
        let name = self.file_name(sha256);
        let path = self.dir.join(&name);
        let data = match crate::files::read(&path, self.max_entry_bytes, "cache entry", None) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Err(Refused::Missing),
            Err(e) => return Err(Refused::Bad(e.to_string())),
        };
        let bad = |why: &str| Err(Refused::Bad(format!("{}: {why}", path.display())));
        let Some(mac_at) = data.len().checked_sub(MAC_LEN) else {
            return bad("truncated");
        };
        let (signed, tag) = data.split_at(mac_at);
        if signed.len() < HEADER_LEN {
            return bad("truncated");
        }
        let (header, body) = signed.split_at(HEADER_LEN);
        let (magic, rest) = header.split_at(MAGIC.len());
        let (recorded, fingerprint) = rest.split_at(32);
        if magic != MAGIC {
            return bad("not a cache entry of this format");
        }
        if recorded != sha256 {
            return bad(&format!(
                "records module {}, not the signed module {}",
                hex::encode(recorded),
                hex::encode(sha256)
            ));
        }
        if fingerprint != self.fingerprint.as_bytes() {
            return bad("compiled by a differently configured engine");
        }
        if self.mac(&name, header, body).verify_slice(tag).is_err() {
            return bad("integrity check (MAC) failed");
        }
        deserialize_authenticated(engine, body)
            .map_err(|e| Refused::Bad(format!("{}: {e:#}", path.display())))
    }

    /// Stores the compiled form of `code` for `sha256`, atomically.
    pub(crate) fn store(&self, sha256: &[u8; 32], code: &Code) -> std::io::Result<()> {
        let bytes = match code {
            Code::Component(c) => c.serialize(),
            Code::Core(m) => m.serialize(),
        }
        .map_err(std::io::Error::other)?;
        let name = self.file_name(sha256);
        let header = self.header(sha256);
        let tag = self.mac(&name, &header, &bytes).finalize().into_bytes();
        let tmp = self.dir.join(format!(
            ".{name}.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&header)?;
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

/// Deserializes precompiled component or module bytes.
///
/// Only called by [`Cache::load`] after the entry's recorded module digest was found equal to the
/// digest of the module bytes whose signature was just checked, its engine fingerprint equal to
/// this engine's, and its HMAC (keyed with the operator's cache key and bound to the entry name,
/// the header and the bytes) verified.
#[allow(unsafe_code)]
fn deserialize_authenticated(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Code> {
    // SAFETY: `Component::deserialize` requires bytes produced by `serialize`/`precompile` of a
    // compatible engine and not tampered with, since they are mapped as executable code. These
    // bytes were written by `Cache::store` from `serialize` of an engine with the same
    // wasmtime version and configuration fingerprint (both part of the MAC'd name and header),
    // for the module digest that was just signature-checked (recorded in the MAC'd header), and
    // their HMAC-SHA256 under the operator's secret cache key was verified just before this call,
    // so they are what a holder of that key produced for this signed module. wasmtime additionally checks the header,
    // version and engine compatibility and returns an error (not UB) on mismatch.
    match Engine::detect_precompiled(bytes) {
        Some(wasmtime::Precompiled::Module) => {
            unsafe { Module::deserialize(engine, bytes) }.map(Code::Core)
        }
        Some(wasmtime::Precompiled::Component) => {
            unsafe { Component::deserialize(engine, bytes) }.map(Code::Component)
        }
        None => Err(wasmtime::Error::msg("not precompiled Wasm")),
    }
}
