//! Device identity: a protocol name plus the stable address the protocol gives the device.
//!
//! The printed form `protocol:address` is usable as one MQTT topic level: it never contains `/`, `+`,
//! `#`, whitespace or control characters, which [`DeviceId::new`] enforces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("device id must look like `protocol:address`")]
    MissingSeparator,
    #[error("protocol must be 1-16 characters of a-z, 0-9 or '-'")]
    BadProtocol,
    #[error("address must be 1-128 characters of A-Z, a-z, 0-9 or . _ - : ~ @")]
    BadAddress,
}

/// A device's identity: which protocol, and the address that protocol knows it by.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    protocol: Box<str>,
    address: Box<str>,
}

fn protocol_ok(p: &str) -> bool {
    (1..=16).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn address_ok(a: &str) -> bool {
    (1..=128).contains(&a.len())
        && a.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'~' | b'@')
        })
}

impl DeviceId {
    /// Builds an id, checking both parts. Adapters normalise their native addresses (e.g. lower-case
    /// hex EUIs, `host-port-unit` for Modbus) before calling this.
    pub fn new(protocol: &str, address: &str) -> Result<Self, IdError> {
        if !protocol_ok(protocol) {
            return Err(IdError::BadProtocol);
        }
        if !address_ok(address) {
            return Err(IdError::BadAddress);
        }
        Ok(Self {
            protocol: protocol.into(),
            address: address.into(),
        })
    }

    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol, self.address)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let (p, a) = s.split_once(':').ok_or(IdError::MissingSeparator)?;
        Self::new(p, a)
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = DeviceId::new("modbus", "127.0.0.1-502-u1").unwrap();
        assert_eq!(id.to_string(), "modbus:127.0.0.1-502-u1");
        assert_eq!("modbus:127.0.0.1-502-u1".parse::<DeviceId>().unwrap(), id);
        // an IPv6-style address keeps its colons: only the first one separates
        let v6: DeviceId = "bacnet:fe80::1".parse().unwrap();
        assert_eq!(v6.protocol(), "bacnet");
        assert_eq!(v6.address(), "fe80::1");
    }

    #[test]
    fn rejects_what_would_break_an_mqtt_topic() {
        for bad in [
            "sim:a/b",
            "sim:a+b",
            "sim:#",
            "sim:a b",
            "sim:",
            "Sim:x",
            ":x",
            "sim:\u{e9}",
        ] {
            assert!(bad.parse::<DeviceId>().is_err(), "{bad} accepted");
        }
        assert_eq!(
            "nocolon".parse::<DeviceId>(),
            Err(IdError::MissingSeparator)
        );
        let long = format!("sim:{}", "a".repeat(129));
        assert_eq!(long.parse::<DeviceId>(), Err(IdError::BadAddress));
    }

    #[test]
    fn serde_uses_the_printed_form() {
        let id = DeviceId::new("lorawan", "0004a30b001c0530").unwrap();
        let j = serde_json::to_string(&id).unwrap();
        assert_eq!(j, "\"lorawan:0004a30b001c0530\"");
        assert_eq!(serde_json::from_str::<DeviceId>(&j).unwrap(), id);
        assert!(serde_json::from_str::<DeviceId>("\"x:a/b\"").is_err());
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn valid_ids_round_trip(p in "[a-z0-9-]{1,16}", a in "[A-Za-z0-9._:~@-]{1,128}") {
            let id = DeviceId::new(&p, &a).unwrap();
            prop_assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
        }

        #[test]
        fn parsing_any_text_never_panics_and_never_yields_topic_syntax(s in ".{0,200}") {
            if let Ok(id) = s.parse::<DeviceId>() {
                let t = id.to_string();
                prop_assert!(!t.contains(['/', '+', '#']) && !t.chars().any(char::is_whitespace));
            }
        }
    }
}
