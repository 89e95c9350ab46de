//! The per-plugin symbol table behind the host's interning function (`host.intern` in `wit/`).
//!
//! Only the plugin inserts (through the interning host call, normally in `init`); traffic
//! strings are only looked up, and a name the plugin never interned is 0. So an attacker who
//! controls message contents cannot grow the table.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// At most this many symbols per plugin.
pub const MAX_SYMBOLS: usize = 4096;
/// Names longer than this are not interned (`symbol` returns 0).
pub const MAX_SYMBOL_BYTES: usize = 1024;

#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: HashMap<Box<str>, u32, BuildHasherDefault<FxHasher>>,
    texts: Vec<Box<str>>,
}

impl Interner {
    /// Interns `name`, returning its symbol (≥ 1), or 0 when the table is full or the name too long.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        if self.texts.len() >= MAX_SYMBOLS || name.len() > MAX_SYMBOL_BYTES {
            return 0;
        }
        self.texts.push(name.into());
        let id = u32::try_from(self.texts.len()).unwrap_or(0);
        self.ids.insert(name.into(), id);
        id
    }

    /// The symbol of `name`, 0 when the plugin never interned it. Never inserts.
    #[inline]
    pub fn lookup(&self, name: &str) -> u32 {
        if self.texts.is_empty() {
            return 0;
        }
        self.ids.get(name).copied().unwrap_or(0)
    }

    /// The text of a symbol.
    pub fn text(&self, sym: u32) -> Option<&str> {
        let i = usize::try_from(sym).ok()?.checked_sub(1)?;
        self.texts.get(i).map(|s| &**s)
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_lookup_text_and_bounds() {
        let mut i = Interner::default();
        assert_eq!(i.lookup("hvac"), 0);
        let hvac = i.intern("hvac");
        assert_eq!(hvac, 1);
        assert_eq!(i.intern("hvac"), hvac);
        assert_eq!(i.lookup("hvac"), hvac);
        assert_eq!(i.lookup("other"), 0);
        assert_eq!(i.len(), 1, "lookups never insert");
        assert_eq!(i.text(hvac), Some("hvac"));
        assert_eq!(i.text(0), None);
        assert_eq!(i.text(2), None);
        assert_eq!(i.intern(&"x".repeat(MAX_SYMBOL_BYTES + 1)), 0);
        for n in 1..MAX_SYMBOLS {
            assert_ne!(i.intern(&format!("s{n}")), 0);
        }
        assert_eq!(i.len(), MAX_SYMBOLS);
        assert_eq!(i.intern("one-too-many"), 0);
        assert_eq!(
            i.intern("hvac"),
            hvac,
            "existing names still resolve when full"
        );
    }
}
