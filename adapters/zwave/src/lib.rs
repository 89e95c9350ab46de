//! Warden's Z-Wave adapter.
pub mod cc;
pub mod frame;
pub mod func;
pub mod link;

pub const PROTOCOL: &str = "zwave";
