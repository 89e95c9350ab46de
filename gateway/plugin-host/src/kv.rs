//! Per-plugin key-value state, held by the host and bounded in bytes.

use std::collections::HashMap;

/// Longest key a plugin may use (bytes).
pub const MAX_KEY_BYTES: usize = 256;

/// Fixed bytes every entry is charged besides its key and value (see [`Kv`]).
pub const ENTRY_OVERHEAD_BYTES: usize = 128;

/// What an entry is charged against the quota.
pub fn entry_cost(key: &str, value: &[u8]) -> usize {
    key.len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// Why a `set` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    KeyTooLarge,
    QuotaExceeded,
}

/// A plugin's key-value state. It survives instance restarts and hot reloads of the same plugin
/// name (hand it from [`crate::Plugin::into_kv`] to the next [`crate::Host::instantiate`]).
///
/// Size accounting: every entry costs `key.len() + value.len() + ENTRY_OVERHEAD_BYTES`, so the
/// quota bounds the real memory held and a storm of tiny entries cannot multiply it: the fixed
/// cost covers the hash-table slot (a 24-byte `String` and a 24-byte `Vec` header, at up to
/// ~2 slots per entry after a resize) and the two heap blocks' allocator headers. Stored keys and
/// values are allocated at exactly their length (a value replaced by a shorter one does not keep
/// the longer one's capacity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: HashMap<String, Vec<u8>>,
    bytes: usize,
}

impl Kv {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes charged against the quota (keys plus values plus the per-entry overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Inserts or replaces `key`, refusing when the state would exceed `quota` bytes.
    pub fn set(&mut self, key: &str, value: &[u8], quota: usize) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLarge);
        }
        let old = self.map.get(key).map_or(0, |v| entry_cost(key, v));
        let new_total = self
            .bytes
            .saturating_sub(old)
            .saturating_add(entry_cost(key, value));
        if new_total > quota {
            return Err(KvError::QuotaExceeded);
        }
        match self.map.get_mut(key) {
            // a fresh allocation of exactly the new length, not the old capacity reused
            Some(v) => *v = value.to_vec(),
            None => {
                self.map.insert(key.to_owned(), value.to_vec());
            }
        }
        self.bytes = new_total;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &str) -> bool {
        match self.map.remove(key) {
            Some(v) => {
                self.bytes = self.bytes.saturating_sub(entry_cost(key, &v));
                true
            }
            None => false,
        }
    }

    /// Iterates over the entries (unordered).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_and_quota() {
        let mut kv = Kv::new();
        let q = 10 + ENTRY_OVERHEAD_BYTES;
        assert_eq!(kv.set("ab", b"123", q), Ok(()));
        assert_eq!(kv.bytes(), 5 + ENTRY_OVERHEAD_BYTES);
        // Replacing counts only the new value.
        assert_eq!(kv.set("ab", b"12345678", q), Ok(()));
        assert_eq!(kv.bytes(), q);
        assert_eq!(kv.set("c", b"", q), Err(KvError::QuotaExceeded));
        assert_eq!(kv.bytes(), q);
        assert_eq!(kv.get("ab"), Some(&b"12345678"[..]));
        assert!(kv.delete("ab"));
        assert!(!kv.delete("ab"));
        assert_eq!(kv.bytes(), 0);
        assert!(kv.is_empty());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(kv.set(&long, b"", usize::MAX), Err(KvError::KeyTooLarge));
    }

    #[test]
    fn tiny_entries_pay_the_fixed_cost() {
        let mut kv = Kv::new();
        let quota = 1 << 20;
        let mut n = 0usize;
        while kv.set(&format!("{n}"), b"", quota).is_ok() {
            n += 1;
        }
        // ~130 bytes each: a 1 MiB quota holds ~8000 empty entries, not a million
        assert!(n < quota / ENTRY_OVERHEAD_BYTES, "{n}");
        assert!(kv.bytes() <= quota);
    }
}
