//! Per-plugin key-value state, held by the host and bounded in bytes.

use std::collections::HashMap;

/// Longest key a plugin may use (bytes).
pub const MAX_KEY_BYTES: usize = 256;

/// Why a `set` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvError {
    KeyTooLarge,
    QuotaExceeded,
}

/// A plugin's key-value state. It survives instance restarts and hot reloads of the same plugin
/// name (hand it from [`crate::Plugin::into_kv`] to the next [`crate::Host::instantiate`]).
///
/// Size accounting: every entry costs `key.len() + value.len()` bytes.
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

    /// Bytes held (keys plus values).
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
        let old = self.map.get(key).map_or(0, |v| key.len() + v.len());
        let new_total = self
            .bytes
            .saturating_sub(old)
            .saturating_add(key.len())
            .saturating_add(value.len());
        if new_total > quota {
            return Err(KvError::QuotaExceeded);
        }
        match self.map.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
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
                self.bytes = self.bytes.saturating_sub(key.len() + v.len());
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
        assert_eq!(kv.set("ab", b"123", 10), Ok(()));
        assert_eq!(kv.bytes(), 5);
        // Replacing counts only the new value.
        assert_eq!(kv.set("ab", b"12345678", 10), Ok(()));
        assert_eq!(kv.bytes(), 10);
        assert_eq!(kv.set("c", b"", 10), Err(KvError::QuotaExceeded));
        assert_eq!(kv.bytes(), 10);
        assert_eq!(kv.get("ab"), Some(&b"12345678"[..]));
        assert!(kv.delete("ab"));
        assert!(!kv.delete("ab"));
        assert_eq!(kv.bytes(), 0);
        assert!(kv.is_empty());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(kv.set(&long, b"", usize::MAX), Err(KvError::KeyTooLarge));
    }
}
