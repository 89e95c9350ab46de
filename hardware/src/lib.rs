//! Hardware: simulated radios and devices today (demo mode and tests); the USB dongle catalogue,
//! serial discovery and reconnect arrive with the radio adapters.

pub mod sim;
