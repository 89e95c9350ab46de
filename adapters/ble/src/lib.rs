//! Warden's BLE adapter.
pub mod bthome;
pub mod crypto;
