//! Reading a plugin's JSON config and turning its names into symbol sets and maps.
//!
//! ```
//! use serde::Deserialize;
//! use warden_sdk::config::{self, SymbolSet};
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     commands: Vec<String>,
//! }
//!
//! let c: Config = config::parse(r#"{"commands":["reboot"]}"#).unwrap();
//! let blocked = SymbolSet::intern(&c.commands);
//! assert!(blocked.contains(warden_sdk::symbol("reboot")));
//! assert!(config::parse::<Config>(r#"{"comands":[]}"#).unwrap_err().contains("comands"));
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::de::DeserializeOwned;

use crate::host::symbol;
use crate::types::Symbol;

/// Parses the plugin's config. An empty or blank text counts as `{}`. The error names the problem
/// and its position, ready to return from `init` (the operator sees it).
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let text = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

/// A set of interned names, for "is this name one of these" on the hot path: a binary search
/// over a sorted `u32` slice, no allocation. [`Symbol::OTHER`] is never a member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolSet(Vec<Symbol>);

impl SymbolSet {
    /// Interns every name. Call it in `init`.
    pub fn intern<S: AsRef<str>>(names: &[S]) -> Self {
        names.iter().map(|n| symbol(n.as_ref())).collect()
    }

    #[inline]
    pub fn contains(&self, s: Symbol) -> bool {
        s.is_known() && self.0.binary_search(&s).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Symbol> for SymbolSet {
    fn from_iter<I: IntoIterator<Item = Symbol>>(iter: I) -> Self {
        let mut v: Vec<Symbol> = iter.into_iter().filter(|s| s.is_known()).collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }
}

/// A map from interned names to values, for per-name settings on the hot path (binary search
/// over a sorted slice). A name given twice keeps its first value.
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolMap<V>(Vec<(Symbol, V)>);

impl<V> Default for SymbolMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> SymbolMap<V> {
    /// Interns every key. Call it in `init`.
    pub fn intern<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        entries
            .into_iter()
            .map(|(k, v)| (symbol(k.as_ref()), v))
            .collect()
    }

    #[inline]
    pub fn get(&self, s: Symbol) -> Option<&V> {
        if !s.is_known() {
            return None;
        }
        self.0
            .binary_search_by_key(&s, |(k, _)| *k)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Symbol, &V)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }
}

impl<V> FromIterator<(Symbol, V)> for SymbolMap<V> {
    fn from_iter<I: IntoIterator<Item = (Symbol, V)>>(iter: I) -> Self {
        let mut v: Vec<(Symbol, V)> = iter.into_iter().filter(|(k, _)| k.is_known()).collect();
        // Stable sort + dedup keeps the first value given for a key.
        v.sort_by_key(|(k, _)| *k);
        v.dedup_by_key(|(k, _)| *k);
        Self(v)
    }
}
