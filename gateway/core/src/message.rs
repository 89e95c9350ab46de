//! The normalized message: what every adapter turns radio and bus traffic into, and what every stage
//! after the adapter works on.

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::DeviceId;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How strongly the gateway knows who sent a message. Ordered: `None < Channel < SharedKey < Certificate`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Assurance {
    /// Anyone on the medium could have sent it (plain BACnet/IP, Modbus RTU, plain BLE adverts).
    #[default]
    None,
    /// Bound to a physical or TLS channel, without device cryptography.
    Channel,
    /// A MIC/AEAD under a per-device key (LoRaWAN, encrypted BTHome, Zigbee/Z-Wave link security).
    SharedKey,
    /// Mutual TLS with a device certificate (Modbus/TCP Security).
    Certificate,
}

impl Assurance {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Channel => "channel",
            Self::SharedKey => "shared-key",
            Self::Certificate => "certificate",
        }
    }
}

impl fmt::Display for Assurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Uplink,
    Downlink,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uplink => "uplink",
            Self::Downlink => "downlink",
        }
    }
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Telemetry,
    Event,
    Command,
    CommandResult,
    Announce,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Event => "event",
            Self::Command => "command",
            Self::CommandResult => "command-result",
            Self::Announce => "announce",
        }
    }
}

/// A typed value. In JSON: booleans, numbers and strings as themselves; bytes as `{"hex": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Text(_) => "text",
            Self::Bytes(_) => "bytes",
        }
    }

    /// The size this value adds to a message, for byte counters.
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Bool(_) => 1,
            Self::Int(_) | Self::Float(_) => 8,
            Self::Text(s) => s.len(),
            Self::Bytes(b) => b.len(),
        }
    }
}

fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        for nib in [x >> 4, x & 15] {
            s.push(char::from_digit(nib as u32, 16).unwrap_or('0'));
        }
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| match p {
            [a, b] => Some(nib(*a)? << 4 | nib(*b)?),
            _ => None,
        })
        .collect()
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            Self::Float(f) => s.serialize_f64(*f),
            Self::Text(t) => s.serialize_str(t),
            Self::Bytes(b) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &to_hex(b))?;
                m.end()
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bool, number, string or {\"hex\": \"...\"}")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let key: Option<String> = map.next_key()?;
        match key.as_deref() {
            Some("hex") => {
                let h: String = map.next_value()?;
                let b = from_hex(&h).ok_or_else(|| de::Error::custom("bad hex"))?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("bytes value has one key, `hex`"));
                }
                Ok(Value::Bytes(b))
            }
            _ => Err(de::Error::custom(
                "object values must be {\"hex\": \"...\"}",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// One named reading or argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub name: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Point {
    pub fn new(name: impl Into<String>, value: Value) -> Self {
        Self {
            name: name.into(),
            value,
            unit: None,
        }
    }
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }
}

/// Radio link quality, where the medium reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lqi: Option<u8>,
}

/// The authenticated message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub device: DeviceId,
    pub direction: Direction,
    pub kind: Kind,
    #[serde(default)]
    pub points: Vec<Point>,
    /// How the adapter knows the sender is `device`.
    #[serde(default)]
    pub assurance: Assurance,
    /// True when the adapter checked this message is not a replay (counter, nonce, session).
    #[serde(default)]
    pub fresh: bool,
    /// The protocol's own name for the security the assurance rests on, where a protocol has
    /// several at one assurance level (Z-Wave: `zwave-s0`, `zwave-s2-unauthenticated`,
    /// `zwave-s2-authenticated`, `zwave-s2-access-control`), so a profile or a plugin can ask
    /// for one. `None` when the adapter has nothing finer to say than `assurance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Cow<'static, str>>,
    /// A role the device's credential asserts (e.g. the Modbus/TCP Security role extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub link: LinkMeta,
    /// Milliseconds since the Unix epoch when the gateway received it.
    pub received_ms: u64,
    /// Who issued a downlink (an authenticated broker client, an API token, a controller key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The bytes as they came off the medium, for forensics and plugin tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_bytes")]
    pub raw: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        super::from_hex(&s).ok_or_else(|| serde::de::Error::custom("bad hex"))
    }
}

impl Message {
    /// An uplink telemetry message received now, with no assurance until the adapter says otherwise.
    pub fn telemetry(device: DeviceId, points: Vec<Point>) -> Self {
        Self {
            device,
            direction: Direction::Uplink,
            kind: Kind::Telemetry,
            points,
            assurance: Assurance::None,
            fresh: false,
            security: None,
            role: None,
            link: LinkMeta::default(),
            received_ms: now_ms(),
            principal: None,
            raw: Vec::new(),
        }
    }

    /// Payload size used by the byte counters: raw bytes when known, else the points' values.
    pub fn size(&self) -> usize {
        if self.raw.is_empty() {
            self.points.iter().map(|p| p.value.wire_len()).sum()
        } else {
            self.raw.len()
        }
    }
}

/// A command for a device: a name its profile declares, with typed arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub name: String,
    #[serde(default)]
    pub args: Vec<Point>,
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "kebab-case")]
pub enum CommandOutcome {
    /// The device (or its controller) acknowledged it.
    Delivered,
    /// The gateway refused it; the reason names the rule or decider.
    Denied(String),
    /// The device or bus reported an error (exception code, NAK, TX_ACK error…).
    DeviceError(String),
    /// No answer within the adapter's deadline.
    Timeout,
    /// Not final: the adapter holds the command for a device that is not listening now (a
    /// sleeping Z-Wave node, a LoRaWAN class A device until its next uplink); the final result
    /// follows when it is sent. The text says what it waits for.
    Queued(String),
}

/// The result of one command, reported by the adapter (or by the gateway when it denied it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub device: DeviceId,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<Point>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn assurance_is_ordered_weakest_first() {
        assert!(Assurance::None < Assurance::Channel);
        assert!(Assurance::Channel < Assurance::SharedKey);
        assert!(Assurance::SharedKey < Assurance::Certificate);
        assert_eq!(
            serde_json::to_string(&Assurance::SharedKey).unwrap(),
            "\"shared-key\""
        );
    }

    #[test]
    fn values_round_trip_through_json() {
        for v in [
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(21.5),
            Value::Text("on".into()),
            Value::Bytes(vec![0, 1, 0xfe, 0xff]),
        ] {
            let j = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), v, "{j}");
        }
        assert_eq!(
            serde_json::to_string(&Value::Bytes(vec![0xab])).unwrap(),
            r#"{"hex":"ab"}"#
        );
        assert!(serde_json::from_str::<Value>(r#"{"hex":"abc"}"#).is_err());
        assert!(serde_json::from_str::<Value>(r#"{"other":1}"#).is_err());
        assert!(serde_json::from_str::<Value>("[1]").is_err());
    }

    #[test]
    fn message_round_trips_and_keeps_raw_bytes() {
        let mut m = Message::telemetry(
            DeviceId::new("sim", "t1").unwrap(),
            vec![Point::new("temperature", Value::Float(21.5)).with_unit("°C")],
        );
        m.raw = vec![0xde, 0xad];
        m.assurance = Assurance::SharedKey;
        m.fresh = true;
        let j = serde_json::to_string(&m).unwrap();
        assert!(j.contains("\"raw\":\"dead\""));
        assert_eq!(serde_json::from_str::<Message>(&j).unwrap(), m);
        assert_eq!(m.size(), 2);
    }

    #[test]
    fn command_result_json_shape() {
        let r = CommandResult {
            command_id: "c1".into(),
            device: DeviceId::new("sim", "s1").unwrap(),
            outcome: CommandOutcome::Denied("device is pending".into()),
            points: vec![],
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"command_id":"c1","device":"sim:s1","outcome":"denied","detail":"device is pending"}"#
        );
        assert_eq!(serde_json::from_str::<CommandResult>(&j).unwrap(), r);
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            // JSON has no NaN/inf; finite floats round-trip exactly through serde_json
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip(v in value()) {
            let j = serde_json::to_string(&v).unwrap();
            let back: Value = serde_json::from_str(&j).unwrap();
            match (&v, &back) {
                // an integral float prints as e.g. `3.0` and comes back as a float: same value
                (Value::Float(a), Value::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                _ => prop_assert_eq!(&back, &v),
            }
        }

        #[test]
        fn decoding_arbitrary_json_never_panics(s in ".{0,120}") {
            let _ = serde_json::from_str::<Value>(&s);
            let _ = serde_json::from_str::<Message>(&s);
        }
    }
}
