//! The protocol adapters this binary knows, by their config section `[adapters.<name>]`. The one
//! place that lists protocols: each adapter crate parses its own section (unknown keys are errors)
//! and returns an [`Adapter`]; nothing else in the gateway knows a protocol.

use warden_core::Adapter;

/// Parses a config section into an adapter without starting any I/O.
pub type Build = fn(&toml::Value) -> Result<Box<dyn Adapter>, String>;

/// `(section name, constructor)`.
const KNOWN: &[(&str, Build)] = &[
    ("bacnet", warden_bacnet::build),
    ("ble", warden_ble::build),
    ("lorawan", warden_lorawan::build),
    ("modbus", warden_modbus::build),
    ("zigbee", warden_zigbee::build),
    ("zwave", warden_zwave::build),
];

pub fn names() -> Vec<&'static str> {
    KNOWN.iter().map(|(n, _)| *n).collect()
}

pub fn build(name: &str, section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    let (_, b) = KNOWN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("unknown adapter `{name}` (known: {})", names().join(", ")))?;
    b(section).map_err(|e| format!("adapters.{name}: {e}"))
}
