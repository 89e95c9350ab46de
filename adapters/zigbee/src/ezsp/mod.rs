//! EmberZNet coordinators: EZSP (EmberZNet Serial Protocol) over ASH (Asynchronous Serial Host).
//!
//! - [`ash`]: the ASH v2 link layer — framing, CRC, randomisation, and a sans-I/O state machine
//!   (sequence numbers, ACK/NAK, retransmission timers, RST/RSTACK).
//! - [`frame`]: EZSP frame headers (legacy and extended) and the parameter layouts of the commands
//!   and callbacks this driver uses (EZSP protocol v13 layouts), plus the ZDO payloads it sends.
//! - [`driver`]: [`EzspCoordinator`], a background task owning the serial stream.

pub mod ash;
pub mod driver;
pub mod frame;

pub use driver::EzspCoordinator;

#[cfg(test)]
mod tests;
