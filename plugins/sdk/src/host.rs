//! Calls into the gateway. On wasm these are the WIT imports; natively they go to the
//! thread-local mock host of [`crate::testing`], so the same plugin code runs in unit tests.

use alloc::string::String;
use alloc::vec::Vec;

use crate::types::{KvError, Level, Symbol};

#[cfg(target_arch = "wasm32")]
use crate::wasm::wit;

#[cfg(not(target_arch = "wasm32"))]
use crate::mock;

/// Interns `name` and returns its symbol. Call it in `init` and keep the symbol: the host keeps at
/// most 4096 names per plugin and returns [`Symbol::OTHER`] once the table is full.
pub fn symbol(name: &str) -> Symbol {
    #[cfg(target_arch = "wasm32")]
    {
        Symbol(wit::host::intern(name))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.intern(name))
    }
}

/// The text of a symbol this plugin interned; `None` for [`Symbol::OTHER`] and unknown symbols.
pub fn symbol_text(s: Symbol) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::symbol_text(s.0)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.symbol_text(s))
    }
}

/// Logs through the gateway's log, tagged with the plugin's name. The host rate-limits and
/// truncates plugin logs: do not log on every decision.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        let l = match level {
            Level::Debug => wit::types::Level::Debug,
            Level::Info => wit::types::Level::Info,
            Level::Warn => wit::types::Level::Warn,
            Level::Error => wit::types::Level::Error,
        };
        wit::host::log(l, message)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.logs.push((level, message.into())))
    }
}

/// The current decision's time, ms since the Unix epoch (UTC); the load time during `init`.
/// Inside `decide` it equals `header.time_ms`, which costs no host call.
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.now_ms)
    }
}

/// Reads this plugin's state under `key` (state the host keeps across instance restarts and
/// hot reloads of the same plugin name, not across gateway restarts).
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::kv_get(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.kv.get(key).cloned())
    }
}

/// Stores `value` under `key`. Keys are at most 256 bytes; the whole state is bounded by the
/// plugin's quota (1 MiB unless the operator sets `kv_quota_bytes`).
pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::kv_set(key, value).map_err(|e| match e {
            wit::types::KvError::KeyTooLarge => KvError::KeyTooLarge,
            wit::types::KvError::QuotaExceeded => KvError::QuotaExceeded,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.kv_set(key, value))
    }
}

/// Removes `key` from this plugin's state (nothing happens when it is absent).
pub fn kv_delete(key: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        wit::host::kv_delete(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| {
            h.kv.remove(key);
        })
    }
}
