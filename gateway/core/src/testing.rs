//! Test doubles for adapter authors: an in-memory [`StateStore`] and a fixed [`CredentialLookup`], so
//! an adapter's tests and benchmarks can run without a gateway.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::adapter::{CredentialLookup, Secret, StateError, StateStore};
use crate::id::DeviceId;

/// State kept in memory (nothing survives the process; `put` never fails).
#[derive(Debug, Default)]
pub struct MemoryState(Mutex<BTreeMap<String, Vec<u8>>>);

impl MemoryState {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for MemoryState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map().get(key).cloned())
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.map().insert(key.to_owned(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StateError> {
        self.map().remove(key);
        Ok(())
    }
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        Ok(self
            .map()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// Credentials by `(device id as printed, credential name)`; empty by default (no device has any).
#[derive(Debug, Default, Clone)]
pub struct StaticCredentials(pub HashMap<(String, String), Vec<u8>>);

impl StaticCredentials {
    pub fn with(mut self, device: &DeviceId, name: &str, value: &[u8]) -> Self {
        self.0
            .insert((device.to_string(), name.to_owned()), value.to_vec());
        self
    }
}

impl CredentialLookup for StaticCredentials {
    fn credential(&self, device: &DeviceId, name: &str) -> Option<Secret> {
        self.0
            .get(&(device.to_string(), name.to_owned()))
            .map(|v| Secret::new(v.clone()))
    }

    fn enrolment(&self, name: &str) -> Vec<(DeviceId, Secret)> {
        self.0
            .iter()
            .filter(|((_, n), _)| n == name)
            .filter_map(|((d, _), v)| Some((d.parse().ok()?, Secret::new(v.clone()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn doubles_behave_like_the_real_things() {
        let s = MemoryState::default();
        s.put("a/1", b"x").unwrap();
        s.put("b/1", b"y").unwrap();
        assert_eq!(s.keys("a/").unwrap(), ["a/1"]);
        s.delete("a/1").unwrap();
        assert_eq!(s.get("a/1").unwrap(), None);
        let id = DeviceId::new("sim", "d").unwrap();
        let c = StaticCredentials::default().with(&id, "k", b"secret");
        assert_eq!(c.credential(&id, "k").unwrap().expose(), b"secret");
        assert!(c.credential(&id, "other").is_none());
    }
}
