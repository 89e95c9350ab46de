//! TI Z-Stack ZNP coordinator support: MT framing ([`frame`]), the typed commands the driver uses
//! ([`commands`]) and the async driver ([`driver`]) implementing the coordinator interface.

pub mod commands;
pub mod driver;
pub mod frame;
#[cfg(test)]
pub(crate) mod vectors;

pub use driver::{Timeouts, ZnpCoordinator, probe};
#[cfg(test)]
mod driver_tests;
#[cfg(test)]
mod sim_tests;
