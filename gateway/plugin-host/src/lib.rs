//! Warden's Wasm policy-plugin host.
//!
//! Hosts plugins of contract 0.2.0 (core modules, `warden-plugin-abi`, `core_abi.rs`) and of
//! 0.1.0 (components of the world `warden:policy/plugin`, `plugins/wit/policy.wit`) with wasmtime:
//! signature check and an authenticated AOT cache at load time ([`Host::prepare`]), a warm
//! instance per plugin with fuel, an epoch deadline, a memory cap and a host-call budget per
//! decision ([`Plugin::decide`]), and a fresh instance after any failure.

/// Generated from the WIT. The generated export wrappers (`call_init`, `call_decide`) use
/// `TypedFunc::new_unchecked` on functions whose types the generated `PluginIndices` checked at
/// load time; that generated code is the only other place `unsafe` is allowed in this crate.
#[allow(unsafe_code, unused_variables)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../plugins/wit",
        world: "plugin",
        imports: { default: trappable },
        with: { "warden:policy/host.request": super::RequestRef },
    });
}

mod cache;
mod core_abi;
mod error;
pub mod files;
mod host;
mod intern;
mod kv;
mod plugin;
pub mod request;
pub mod signing;
pub mod testrun;
pub mod wasi;
/// Sanitising plugin-made text (shared with the gateway's audit output).
pub use warden_core::text;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_core;

pub use cache::{CacheOutcome, WASMTIME_VERSION};
pub use error::{Failure, FailureCause, HostError, LoadError, Outcome};
pub use host::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, CORE_CONTRACT_VERSION, Host, HostOptions, Limits, Prepared,
};
pub use intern::{MAX_SYMBOL_BYTES, MAX_SYMBOLS};
pub use kv::{ENTRY_OVERHEAD_BYTES, Kv, KvError, MAX_KEY_BYTES, entry_cost};
pub use plugin::{
    BYTES_PER_FUEL, HOST_CALL_FUEL, LIFT_MIN_BYTES, MEMORIES_MAX, Plugin, PluginStats,
    RANDOM_MAX_BYTES, TABLE_ELEMENT_BYTES, TABLES_MAX,
};
pub use request::{DeviceInfo, DeviceStatus, Observed, Request};
pub use wasi::WasiGrants;

// The gateway shares hosts and prepared plugins across threads and moves plugins between them.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Host>();
    send_sync::<Prepared>();
    send::<Plugin>();
};

/// The host side of the `request` resource: a handle to the request being decided. Its rep is a
/// per-call sequence number; the host checks it on every accessor.
pub struct RequestRef;
