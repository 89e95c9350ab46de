//! Size caps for the files a config or an operator names; the reading itself (regular files only,
//! capped, secrets' permissions checked) is [`warden_core::files`], shared with the plugin host.

pub use warden_core::files::{read, read_secret, read_text};

/// The config file.
pub const CONFIG_MAX: u64 = 4 << 20;
/// Keys, passwords, public keys.
pub const KEY_MAX: u64 = 64 << 10;
/// PEM certificates and private keys.
pub const PEM_MAX: u64 = 1 << 20;
/// Import and payload files.
pub const IMPORT_MAX: u64 = 64 << 20;
