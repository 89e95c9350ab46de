//! # Warden policy contract 0.2.0, core-module ABI
//!
//! A 0.2.0 plugin is a **core** Wasm module (Rust, C, Zig, …; no component model, no WASI). A
//! decision is one call with no arguments: before it, the host writes the message's scalars and
//! symbols into a fixed area of the plugin's own memory (the *request area*), so the common
//! rules read plain memory and make no host calls at all. Strings (device id, texts behind
//! symbols, text point values) stay on the host and are copied only when the plugin asks.
//!
//! The plugin exports:
//! - `memory` (exactly one linear memory);
//! - [`EXPORT_AREA`] `() -> i32`: the address of its request area, [`AREA_BYTES`] bytes,
//!   8-aligned, asked once after instantiation;
//! - [`EXPORT_INIT`] `() -> i32`: 0 when the config (read with the `config` import) is accepted;
//!   otherwise the text set with `verdict-text` is the error shown to the operator;
//! - [`EXPORT_DECIDE`] `() -> i32`: a [`verdict`] code; for deny and quarantine, the reason is the
//!   text set with `verdict-text` during the call.
//!
//! It may import only functions of module [`IMPORT_MODULE`] (see [`import`]). All integers are
//! little-endian; pointers and lengths are `i32` (unsigned), so guest addresses are checked by
//! the host against the memory's size before anything is read or written.
#![no_std]

/// The contract version.
pub const VERSION: &str = "0.2.0";
/// The module name of every import.
pub const IMPORT_MODULE: &str = "warden:policy/host@0.2.0";
/// The export prefix every export of the contract starts with (`…#init`, `…#decide`, …).
pub const EXPORT_PREFIX: &str = "warden:policy@";
pub const EXPORT_AREA: &str = "warden:policy@0.2.0#request-area";
pub const EXPORT_INIT: &str = "warden:policy@0.2.0#init";
pub const EXPORT_DECIDE: &str = "warden:policy@0.2.0#decide";

/// Size of the request area: the header, then [`AREA_POINTS`] point records.
pub const AREA_BYTES: usize = HEADER_BYTES + AREA_POINTS * POINT_BYTES;
pub const HEADER_BYTES: usize = 128;
/// Points (or command arguments) laid out in the area; the rest are read with `point`.
pub const AREA_POINTS: usize = 16;
pub const POINT_BYTES: usize = 16;

/// Byte offsets of the header's fields.
pub mod off {
    /// u32, [`super::AREA_VERSION`].
    pub const VERSION: usize = 0;
    /// u8: 0 uplink, 1 downlink.
    pub const DIRECTION: usize = 4;
    /// u8: 0 telemetry, 1 event, 2 command, 3 command-result, 4 announce.
    pub const KIND: usize = 5;
    /// u8: 0 none, 1 channel, 2 shared-key, 3 certificate.
    pub const ASSURANCE: usize = 6;
    /// u8: 1 when the adapter checked the message is not a replay.
    pub const FRESH: usize = 7;
    /// u8: 0 pending, 1 active, 2 quarantined, 3 revoked.
    pub const STATUS: usize = 8;
    /// u8: 1 when the device has a role.
    pub const HAS_ROLE: usize = 9;
    /// u8: 1 when the message has a principal (downlinks).
    pub const HAS_PRINCIPAL: usize = 10;
    /// u8: 1 when `ANOMALY_SCORE` is set.
    pub const HAS_ANOMALY: usize = 11;
    /// u32: points (uplink) or arguments (downlink), all of them (not only those in the area).
    pub const POINT_COUNT: usize = 12;
    /// u64: when the gateway received the message, ms since the Unix epoch (UTC).
    pub const TIME_MS: usize = 16;
    /// u32 symbols (0: a name the plugin never interned).
    pub const PROTOCOL: usize = 24;
    pub const ZONE: usize = 28;
    pub const ROLE: usize = 32;
    /// The command's name (downlink); 0 for uplinks.
    pub const NAME: usize = 36;
    /// Who issued a downlink (e.g. `mqtt:operator`), as a symbol.
    pub const PRINCIPAL: usize = 40;
    /// f32 in [0, 1].
    pub const ANOMALY_SCORE: usize = 44;
    /// u64 counters of the `observe` stage.
    pub const RATE_PER_MIN: usize = 48;
    pub const MESSAGES: usize = 56;
    pub const BYTES: usize = 64;
    pub const DENIED: usize = 72;
    pub const LAST_SEEN_MS: usize = 80;
    /// u32 symbol of the security label the assurance rests on (`zwave-s2-access-control`,
    /// `zwave-s0`, …): the uplink's, or for a command the one the device was last heard under.
    /// Read `HAS_SECURITY` first; the text is `text(field::SECURITY, 0)`.
    pub const SECURITY: usize = 88;
    /// u32 symbol of the feature that contributed most to `ANOMALY_SCORE` (`rate`,
    /// `value:temperature`, …); the text is `text(field::ANOMALY_FEATURE, 0)`.
    pub const ANOMALY_FEATURE: usize = 92;
    /// u8: 1 when the message has a security label.
    pub const HAS_SECURITY: usize = 96;
    /// u8: 1 when an anomaly feature is named.
    pub const HAS_ANOMALY_FEATURE: usize = 97;
    // 98..128 reserved, written as zero. (88..98 were reserved in the first 0.2.0 hosts, which
    // wrote zero there: a plugin on such a host sees no security label and no feature.)
}

/// The value of `off::VERSION` for this layout.
pub const AREA_VERSION: u32 = 0x0002_0000;

/// Offsets inside a point record (at `HEADER_BYTES + i * POINT_BYTES` in the area, or where the
/// `point` import writes it).
pub mod point {
    /// u32 symbol of the point's name.
    pub const NAME: usize = 0;
    /// u8, a [`super::tag`].
    pub const TAG: usize = 4;
    /// u8: 1 when the point has a unit (read it with `text(field::POINT_UNIT, i)`).
    pub const HAS_UNIT: usize = 5;
    /// 8 bytes: bool as 0/1, i64, f64 bits, or for text and bytes their length (read the
    /// contents with `text(field::POINT_VALUE, i)`).
    pub const VALUE: usize = 8;
}

/// Point value types.
pub mod tag {
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const FLOAT: u8 = 3;
    pub const TEXT: u8 = 4;
    pub const BYTES: u8 = 5;
}

/// What `decide` returns.
pub mod verdict {
    pub const ALLOW: i32 = 0;
    pub const DENY: i32 = 1;
    pub const QUARANTINE: i32 = 2;
}

/// The `field` argument of the `text` import.
pub mod field {
    pub const DEVICE_ID: i32 = 0;
    pub const PROTOCOL: i32 = 1;
    pub const ZONE: i32 = 2;
    pub const ROLE: i32 = 3;
    pub const MANUFACTURER: i32 = 4;
    pub const MODEL: i32 = 5;
    pub const FIRMWARE: i32 = 6;
    pub const NAME: i32 = 7;
    pub const PRINCIPAL: i32 = 8;
    /// With an index: the point's name, unit, or text/bytes value.
    pub const POINT_NAME: i32 = 9;
    pub const POINT_UNIT: i32 = 10;
    pub const POINT_VALUE: i32 = 11;
    /// The security label (`off::SECURITY`).
    pub const SECURITY: i32 = 12;
    /// The top anomaly feature (`off::ANOMALY_FEATURE`).
    pub const ANOMALY_FEATURE: i32 = 13;
}

/// The imports, all in module [`super::IMPORT_MODULE`]. Functions that copy into guest memory
/// take `(ptr, cap)`, copy at most `cap` bytes and return the full length (so a plugin can retry
/// with a larger buffer), or -1 for none.
pub mod import {
    /// `(ptr, len) -> i32`: interns a name, returns its symbol (0 when the table is full).
    pub const INTERN: &str = "intern";
    /// `(sym, ptr, cap) -> i32`: the text of a symbol the plugin interned, or -1.
    pub const SYMBOL_TEXT: &str = "symbol-text";
    /// `(field, index, ptr, cap) -> i32`: a string of the request (see [`super::field`]), or -1.
    pub const TEXT: &str = "text";
    /// `(index, ptr) -> i32`: writes the index-th point record (`POINT_BYTES`) at ptr; 0, or -1
    /// past the end.
    pub const POINT: &str = "point";
    /// `(sym) -> i32`: the index of the first point with this name, or -1.
    pub const FIND_POINT: &str = "find-point";
    /// `(level, ptr, len)`: level 0 debug, 1 info, 2 warn, 3 error; rate-limited, truncated.
    pub const LOG: &str = "log";
    /// `() -> i64`: the decision's time (the load time during init), ms since the Unix epoch.
    pub const NOW_MS: &str = "now-ms";
    /// `(key_ptr, key_len, ptr, cap) -> i64`: the value's length, or -1 when absent.
    pub const KV_GET: &str = "kv-get";
    /// `(key_ptr, key_len, val_ptr, val_len) -> i32`: 0, 1 key too large, 2 quota exceeded.
    pub const KV_SET: &str = "kv-set";
    /// `(key_ptr, key_len)`.
    pub const KV_DELETE: &str = "kv-delete";
    /// `(ptr, cap) -> i32`: the plugin's config, JSON text.
    pub const CONFIG: &str = "config";
    /// `(ptr, len)`: the reason of this decision's deny/quarantine, or `init`'s error.
    pub const VERDICT_TEXT: &str = "verdict-text";
}

/// Codes of `kv-set`.
pub mod kv {
    pub const OK: i32 = 0;
    pub const KEY_TOO_LARGE: i32 = 1;
    pub const QUOTA_EXCEEDED: i32 = 2;
}
