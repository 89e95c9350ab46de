//! Warden's BLE adapter.
pub mod bthome;
pub mod config;
pub mod crypto;
pub mod engine;

pub use config::Config;

pub const PROTOCOL: &str = "ble";
