//! Hardware: the USB radio-stick catalogue, discovery of attached sticks from sysfs and
//! `/dev/serial/by-id`, a probe for sticks whose USB id is ambiguous, and the simulated radios and
//! devices used by demo mode and tests.

pub mod catalogue;
pub mod discover;
pub mod probe;
pub mod sim;
