//! Warden's BACnet adapter (work in progress: codecs first).
pub mod apdu;
pub mod bvlc;
pub mod error;
pub mod npdu;
pub mod services;
pub mod tag;
