//! Calls into the gateway. On wasm these are the WIT imports; natively they go to the
//! thread-local mock host of [`crate::testing`], so the same plugin code runs in unit tests.

use alloc::string::String;
use alloc::vec::Vec;

use crate::types::{KvError, Level, Symbol};

#[cfg(warden_component)]
use crate::wasm::wit;

#[cfg(not(target_arch = "wasm32"))]
use crate::mock;

/// Interns `name` and returns its symbol. Call it in `init` and keep the symbol: the host keeps at
/// most 4096 names per plugin and returns [`Symbol::OTHER`] once the table is full.
pub fn symbol(name: &str) -> Symbol {
    #[cfg(warden_component)]
    {
        Symbol(wit::host::intern(name))
    }
    #[cfg(warden_core_abi)]
    {
        // SAFETY: the host reads `len` bytes at `ptr`.
        Symbol(unsafe { crate::core_abi::intern(name.as_ptr(), name.len()) })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.intern(name))
    }
}

/// The text of a symbol this plugin interned; `None` for [`Symbol::OTHER`] and unknown symbols.
pub fn symbol_text(s: Symbol) -> Option<String> {
    #[cfg(warden_component)]
    {
        wit::host::symbol_text(s.0)
    }
    #[cfg(warden_core_abi)]
    {
        crate::core_abi::fetch(|p, cap| {
            // SAFETY: the host copies at most `cap` bytes to `p`.
            i64::from(unsafe { crate::core_abi::symbol_text(s.0, p, cap) })
        })
        .and_then(|b| String::from_utf8(b).ok())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.symbol_text(s))
    }
}

/// Logs through the gateway's log, tagged with the plugin's name. The host rate-limits and
/// truncates plugin logs: do not log on every decision.
pub fn log(level: Level, message: &str) {
    #[cfg(warden_component)]
    {
        let l = match level {
            Level::Debug => wit::types::Level::Debug,
            Level::Info => wit::types::Level::Info,
            Level::Warn => wit::types::Level::Warn,
            Level::Error => wit::types::Level::Error,
        };
        wit::host::log(l, message)
    }
    #[cfg(warden_core_abi)]
    {
        let l = match level {
            Level::Debug => 0,
            Level::Info => 1,
            Level::Warn => 2,
            Level::Error => 3,
        };
        // SAFETY: the host reads at most `len` bytes at `ptr`.
        unsafe { crate::core_abi::log(l, message.as_ptr(), message.len()) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.logs.push((level, message.into())))
    }
}

/// The current decision's time, ms since the Unix epoch (UTC); the load time during `init`.
/// Inside `decide` it equals `header.time_ms`, which costs no host call.
pub fn now_ms() -> u64 {
    #[cfg(warden_component)]
    {
        wit::host::now_ms()
    }
    #[cfg(warden_core_abi)]
    {
        // SAFETY: a plain call.
        u64::try_from(unsafe { crate::core_abi::now_ms() }).unwrap_or(0)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.now_ms)
    }
}

/// Reads this plugin's state under `key` (state the host keeps across instance restarts and
/// hot reloads of the same plugin name, not across gateway restarts).
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    #[cfg(warden_component)]
    {
        wit::host::kv_get(key)
    }
    #[cfg(warden_core_abi)]
    {
        crate::core_abi::fetch(|p, cap| {
            // SAFETY: the host reads the key and copies at most `cap` bytes to `p`.
            unsafe { crate::core_abi::kv_get(key.as_ptr(), key.len(), p, cap) }
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.kv.get(key).cloned())
    }
}

/// Stores `value` under `key`. Keys are at most 256 bytes; the whole state is bounded by the
/// plugin's quota (1 MiB unless the operator sets `kv_quota_bytes`).
pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
    #[cfg(warden_component)]
    {
        wit::host::kv_set(key, value).map_err(|e| match e {
            wit::types::KvError::KeyTooLarge => KvError::KeyTooLarge,
            wit::types::KvError::QuotaExceeded => KvError::QuotaExceeded,
        })
    }
    #[cfg(warden_core_abi)]
    {
        // SAFETY: the host reads the key and value.
        match unsafe {
            crate::core_abi::kv_set(key.as_ptr(), key.len(), value.as_ptr(), value.len())
        } {
            warden_plugin_abi::kv::OK => Ok(()),
            warden_plugin_abi::kv::KEY_TOO_LARGE => Err(KvError::KeyTooLarge),
            _ => Err(KvError::QuotaExceeded),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| h.kv_set(key, value))
    }
}

/// Removes `key` from this plugin's state (nothing happens when it is absent).
pub fn kv_delete(key: &str) {
    #[cfg(warden_component)]
    {
        wit::host::kv_delete(key)
    }
    #[cfg(warden_core_abi)]
    {
        // SAFETY: the host reads the key.
        unsafe { crate::core_abi::kv_delete(key.as_ptr(), key.len()) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        mock::with(|h| {
            h.kv.remove(key);
        })
    }
}
