//! The native stand-in for the gateway: a per-thread symbol table, clock, log and key-value state
//! with the host's limits. Tests reach it through [`crate::testing`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::types::{KvError, Level, Symbol};

/// The host's limits, as documented in the WIT.
pub(crate) const MAX_SYMBOLS: usize = 4096;
pub(crate) const MAX_KEY_BYTES: usize = 256;
pub(crate) const DEFAULT_KV_QUOTA: usize = 1 << 20;

pub(crate) struct MockHost {
    /// Symbol `n` is `names[n - 1]`.
    names: Vec<String>,
    by_name: HashMap<String, u32>,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) now_ms: u64,
    pub(crate) kv: BTreeMap<String, Vec<u8>>,
    pub(crate) kv_quota: usize,
}

impl Default for MockHost {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            by_name: HashMap::new(),
            logs: Vec::new(),
            now_ms: 0,
            kv: BTreeMap::new(),
            kv_quota: DEFAULT_KV_QUOTA,
        }
    }
}

impl MockHost {
    pub(crate) fn intern(&mut self, name: &str) -> Symbol {
        if let Some(&n) = self.by_name.get(name) {
            return Symbol(n);
        }
        if self.names.len() >= MAX_SYMBOLS {
            return Symbol::OTHER;
        }
        self.names.push(name.to_owned());
        let n = self.names.len() as u32;
        self.by_name.insert(name.to_owned(), n);
        Symbol(n)
    }

    /// The symbol of `name` if the plugin interned it, else [`Symbol::OTHER`] (what the host
    /// answers for names in a request).
    pub(crate) fn lookup(&self, name: &str) -> Symbol {
        self.by_name.get(name).map_or(Symbol::OTHER, |&n| Symbol(n))
    }

    pub(crate) fn symbol_text(&self, s: Symbol) -> Option<String> {
        let i = (s.0 as usize).checked_sub(1)?;
        self.names.get(i).cloned()
    }

    /// Bytes the state uses: keys plus values.
    pub(crate) fn kv_used(&self) -> usize {
        self.kv.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub(crate) fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::KeyTooLarge);
        }
        let old = self.kv.get(key).map_or(0, |v| key.len() + v.len());
        if self.kv_used() - old + key.len() + value.len() > self.kv_quota {
            return Err(KvError::QuotaExceeded);
        }
        self.kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Runs `f` on this thread's mock host.
pub(crate) fn with<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}
