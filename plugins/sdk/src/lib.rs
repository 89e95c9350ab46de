//! # Warden plugin SDK
//!
//! Write a Warden policy plugin in Rust: implement [`Policy`], export it with
//! [`export_policy!`], build it (see `plugins/build.sh` or `warden plugin build`), and load the
//! `.wasm` with a `[[plugins.load]]` entry in the gateway's config.
//!
//! The target picks the contract underneath, from the same source: `wasm32-unknown-unknown`
//! gives a **0.2.0** core module (the request laid out in the plugin's memory before each call;
//! `warden-plugin-abi`), `wasm32-wasip2` a **0.1.0** component of the WIT world
//! `warden:policy/plugin` (`plugins/wit/policy.wit`). This crate hides both.
//!
//! ```
//! #![cfg_attr(target_arch = "wasm32", no_std)]
//! extern crate alloc;
//!
//! use warden_sdk::prelude::*;
//!
//! /// Denies every command named in the config's `blocked` list.
//! struct Blocklist {
//!     blocked: SymbolSet,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     blocked: Vec<String>,
//! }
//!
//! impl Policy for Blocklist {
//!     fn init(config: &str) -> Result<Self, String> {
//!         let c: Config = config::parse(config)?;
//!         Ok(Self { blocked: SymbolSet::intern(&c.blocked) })
//!     }
//!
//!     fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
//!         if h.direction == Direction::Downlink && self.blocked.contains(req.name()) {
//!             return Verdict::Deny(format!("command `{}` is blocked", req.name_text()));
//!         }
//!         Verdict::Allow
//!     }
//! }
//!
//! export_policy!(Blocklist);
//! # fn main() {
//! # use warden_sdk::testing::{self, RequestBuilder};
//! # let mut p: Blocklist = testing::init(r#"{"blocked":["reboot"]}"#).unwrap();
//! # let v = testing::decide(&mut p, &RequestBuilder::command("modbus:plc-1", "reboot").build());
//! # assert_eq!(v, Verdict::deny("command `reboot` is blocked"));
//! # }
//! ```
//!
//! ## How a decision runs
//!
//! The gateway keeps one warm instance per plugin and calls `decide` once per message and
//! direction. The [`Header`] (direction, kind, assurance, freshness, point count, time) is passed
//! by value; everything else is read through [`Request`]'s accessors. Under 0.2.0 the symbols
//! (protocol, zone, role, command name), status, counters and the first 16 points' names and
//! values are plain reads of the request area; texts (`*_text`, device id, text values, units)
//! are host calls. Under 0.1.0 every accessor is a host call. Either way a decision pays only
//! for what it reads. Names are [`Symbol`]s: intern the names you care
//! about in `init` (with [`symbol`], [`config::SymbolSet`] or [`config::SymbolMap`]) and compare
//! integers in `decide`. A name the plugin never interned reads as [`Symbol::OTHER`]; turn a
//! symbol back into text with the `*_text` accessors or [`symbol_text`] when you build a
//! message. Allocate in `decide` only when you must (a deny reason is a `String`).
//!
//! Time comes from `header.time_ms` (or [`now_ms`]), never from a clock of your own. State that
//! must outlive an instance (counters, buckets) goes in the host's key-value store ([`kv_get`],
//! [`kv_set`], [`kv_delete`]); fields of your `Policy` value live as long as the instance, which
//! the gateway may restart at any time (after a trap, a reload, or a fuel or memory overrun).
//!
//! A panic aborts the instance: the host counts it as a failure and applies the plugin's failure
//! policy. Return `Err` from `init` for a bad config; the operator sees the message.
//!
//! ## no_std
//!
//! On wasm the plugin is `no_std` with `alloc`: this crate brings the allocator, the panic handler
//! and the canonical ABI's `cabi_realloc` (feature `runtime`, on by default). Start your crate
//! with `#![cfg_attr(target_arch = "wasm32", no_std)]` and `extern crate alloc;`, and use
//! [`prelude`] for `String`, `Vec`, `format!` and the SDK's types. Natively the crate has `std`,
//! and [`testing`] runs your policy against a mock host in ordinary `#[test]`s.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;

pub mod config;
mod host;
mod request;
mod types;

#[cfg(warden_core_abi)]
#[doc(hidden)]
pub mod core_abi;
#[cfg(not(target_arch = "wasm32"))]
mod mock;
#[cfg(all(target_arch = "wasm32", feature = "runtime"))]
mod runtime;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(warden_component)]
#[doc(hidden)]
pub mod wasm;

pub use config::{SymbolMap, SymbolSet};
pub use host::{kv_delete, kv_get, kv_set, log, now_ms, symbol, symbol_text};
pub use request::{Points, Request};
pub use types::{
    Assurance, Direction, Header, Kind, KvError, Level, Observed, Status, Symbol, Value, Verdict,
};

/// A policy plugin.
///
/// One value lives in each plugin instance: `init` builds it from the plugin's config when the
/// gateway loads the plugin (or restarts its instance), `decide` is called for every message.
pub trait Policy: Sized + 'static {
    /// Builds the policy from its config, JSON text (`{}` when the operator gave none; see
    /// [`config::parse`]). An error keeps the plugin from activating and is shown to the operator.
    fn init(config: &str) -> Result<Self, String>;

    /// Decides one message.
    fn decide(&mut self, header: &Header, request: &Request) -> Verdict;
}

/// What a plugin usually needs: the SDK's types and host calls, and `alloc`'s `String`, `Vec`,
/// `Box`, `ToString`, `format!` and `vec!` (which a `no_std` crate does not get by default).
pub mod prelude {
    pub use crate::config::{self, SymbolMap, SymbolSet};
    pub use crate::{
        Assurance, Direction, Header, Kind, Level, Observed, Policy, Request, Status, Symbol,
        Value, Verdict, export_policy, kv_delete, kv_get, kv_set, log, now_ms, symbol, symbol_text,
    };
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// Exports a [`Policy`] type as the plugin's `init` and `decide`. Use it once, at the crate's top
/// level. Natively (unit tests) it expands to nothing.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        $crate::__export_policy_for_target!($policy);
    };
}

/// `export_policy!` for a 0.2.0 core module: the three exports of the contract.
#[cfg(warden_core_abi)]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_policy_for_target {
    ($policy:ty) => {
        const _: () = {
            static __WARDEN_SLOT: $crate::core_abi::Slot<$policy> = $crate::core_abi::Slot::new();

            #[unsafe(export_name = "warden:policy@0.2.0#request-area")]
            extern "C" fn __warden_request_area() -> *mut u8 {
                $crate::core_abi::area_ptr()
            }

            #[unsafe(export_name = "warden:policy@0.2.0#init")]
            extern "C" fn __warden_init() -> i32 {
                __WARDEN_SLOT.init()
            }

            #[unsafe(export_name = "warden:policy@0.2.0#decide")]
            extern "C" fn __warden_decide() -> i32 {
                __WARDEN_SLOT.decide()
            }
        };
    };
}

/// Natively (unit tests) `export_policy!` expands to nothing.
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_policy_for_target {
    ($policy:ty) => {};
}

/// `export_policy!` for a 0.1.0 component (wasm32-wasip2).
#[cfg(warden_component)]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_policy_for_target {
    ($policy:ty) => {
        const _: () = {
            static __WARDEN_SLOT: $crate::wasm::Slot<$policy> = $crate::wasm::Slot::new();

            struct __WardenPlugin;

            impl $crate::wasm::Guest for __WardenPlugin {
                fn init(
                    config: $crate::wasm::String,
                ) -> ::core::result::Result<(), $crate::wasm::String> {
                    __WARDEN_SLOT.init(config)
                }

                #[inline]
                fn decide(
                    header: $crate::wasm::WitHeader,
                    request: &$crate::wasm::WitRequest,
                ) -> $crate::wasm::WitVerdict {
                    __WARDEN_SLOT.decide(header, request)
                }
            }

    $crate::wasm::bindings::__export!(__WardenPlugin with_types_in $crate::wasm::bindings);
        };
    };
}
