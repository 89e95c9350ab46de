//! What a plugin is asked about: an owned, reusable copy of one decision's inputs.
//!
//! The gateway fills one `Request` per plugin chain and reuses its buffers from message to
//! message (`clear` + `clone_from`), so a decision costs a few short copies, not allocations.
//! The same type, as JSON (one object per line), is the format of `warden plugin test
//! --messages` and of the traffic the gateway records for it.

use serde::{Deserialize, Serialize};
use warden_core::{Assurance, Direction, Kind, Point, Value};

/// The device's registry status, as plugins see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStatus {
    Pending,
    #[default]
    Active,
    Quarantined,
    Revoked,
}

/// The registry's view of the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// `protocol:address`.
    pub id: String,
    /// The protocol part of `id` (filled from it when empty).
    #[serde(default)]
    pub protocol: String,
    #[serde(default = "default_zone")]
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub status: DeviceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

fn default_zone() -> String {
    "default".into()
}

/// What `observe` has counted for the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Observed {
    pub rate_per_min: u64,
    pub messages: u64,
    pub bytes: u64,
    pub denied: u64,
    pub last_seen_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly_score: Option<f32>,
    /// The feature that contributed most to `anomaly_score` (`rate`, `value:temperature`,
    /// `new-command`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly_feature: Option<String>,
}

/// One decision's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub device: DeviceInfo,
    pub direction: Direction,
    pub kind: Kind,
    /// The command's name for downlinks; empty for uplinks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Uplink points, or a command's arguments.
    #[serde(default)]
    pub points: Vec<Point>,
    #[serde(default)]
    pub assurance: Assurance,
    #[serde(default)]
    pub fresh: bool,
    /// The protocol's name for the security the assurance rests on (`zwave-s2-access-control`,
    /// …): the uplink's, or for a downlink the one the device was last heard under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<String>,
    /// Who issued a downlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// ms since the Unix epoch (UTC). In a test file also an RFC 3339 time
    /// (`"2026-12-06T08:30:00Z"`, `"…+01:00"`), under this name or `time`.
    #[serde(alias = "time", deserialize_with = "time_ms")]
    pub time_ms: u64,
    #[serde(default)]
    pub observed: Observed,
}

/// `time_ms`: a number of ms since the epoch, or an RFC 3339 time (with its offset).
fn time_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        Ms(u64),
        Text(String),
    }
    match T::deserialize(d)? {
        T::Ms(ms) => Ok(ms),
        T::Text(s) => {
            let t = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "time `{s}` is neither ms since the epoch nor an RFC 3339 time like 2026-12-06T08:30:00Z ({e})"
                    ))
                })?;
            u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| serde::de::Error::custom(format!("time `{s}` is before 1970")))
        }
    }
}

impl Default for Request {
    fn default() -> Self {
        Self {
            device: DeviceInfo::default(),
            direction: Direction::Uplink,
            kind: Kind::Telemetry,
            name: String::new(),
            points: Vec::new(),
            assurance: Assurance::None,
            fresh: false,
            security: None,
            principal: None,
            time_ms: 0,
            observed: Observed::default(),
        }
    }
}

impl Request {
    /// Parses one JSONL line, filling `device.protocol` from the id when it is empty.
    pub fn from_json(line: &str) -> Result<Self, serde_json::Error> {
        let mut r: Self = serde_json::from_str(line)?;
        r.normalize();
        Ok(r)
    }

    /// Makes `self` equal to `src`, reusing `self`'s string and vector buffers (the derived
    /// `clone_from` would reallocate every string).
    pub fn copy_from(&mut self, src: &Request) {
        let (d, s) = (&mut self.device, &src.device);
        d.id.clone_from(&s.id);
        d.protocol.clone_from(&s.protocol);
        d.zone.clone_from(&s.zone);
        d.role.clone_from(&s.role);
        d.status = s.status;
        d.manufacturer.clone_from(&s.manufacturer);
        d.model.clone_from(&s.model);
        d.firmware.clone_from(&s.firmware);
        self.direction = src.direction;
        self.kind = src.kind;
        self.name.clone_from(&src.name);
        self.points.truncate(src.points.len());
        let reused = self.points.len();
        for (d, s) in self.points.iter_mut().zip(&src.points) {
            d.name.clone_from(&s.name);
            d.unit.clone_from(&s.unit);
            match (&mut d.value, &s.value) {
                (Value::Text(a), Value::Text(b)) => a.clone_from(b),
                (Value::Bytes(a), Value::Bytes(b)) => a.clone_from(b),
                (a, b) => *a = b.clone(),
            }
        }
        self.points.extend(src.points.iter().skip(reused).cloned());
        self.assurance = src.assurance;
        self.fresh = src.fresh;
        self.security.clone_from(&src.security);
        self.principal.clone_from(&src.principal);
        self.time_ms = src.time_ms;
        self.observed.clone_from(&src.observed);
    }

    /// Fills derived fields (`device.protocol` from `device.id`).
    pub fn normalize(&mut self) {
        if self.device.protocol.is_empty()
            && let Some((p, _)) = self.device.id.split_once(':')
        {
            self.device.protocol = p.to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn jsonl_round_trip_and_protocol_from_id() {
        let line = r#"{"device":{"id":"modbus:tcp-1-u1","zone":"hvac","role":"actuator"},"direction":"downlink","kind":"command","name":"set_setpoint","points":[{"name":"value","value":21.5,"unit":"C"}],"assurance":"shared-key","fresh":true,"principal":"mqtt:operator","time_ms":1700000000000}"#;
        let r = Request::from_json(line).unwrap();
        assert_eq!(r.device.protocol, "modbus");
        assert_eq!(r.points[0].value, Value::Float(21.5));
        assert_eq!(r.assurance, Assurance::SharedKey);
        let back = Request::from_json(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn copy_from_reproduces_the_source() {
        let a = Request::from_json(r#"{"device":{"id":"modbus:tcp-1-u1","zone":"hvac","role":"actuator","model":"m"},"direction":"downlink","kind":"command","name":"set","points":[{"name":"value","value":"hot","unit":"C"},{"name":"b","value":1}],"principal":"api:op","time_ms":5,"observed":{"rate_per_min":3}}"#).unwrap();
        let b = Request::from_json(r#"{"device":{"id":"lorawan:x"},"direction":"uplink","kind":"telemetry","points":[{"name":"t","value":"cold"},{"name":"u","value":2.5},{"name":"v","value":true}],"time_ms":9}"#).unwrap();
        let mut r = Request::default();
        for src in [&a, &b, &a, &b, &Request::default()] {
            r.copy_from(src);
            assert_eq!(&r, src);
        }
    }

    #[test]
    fn times_are_ms_or_rfc3339() {
        let at = |t: &str| {
            Request::from_json(&format!(
                r#"{{"device":{{"id":"a:b"}},"direction":"uplink","kind":"telemetry",{t}}}"#
            ))
        };
        assert_eq!(
            at(r#""time_ms":1700000000000"#).unwrap().time_ms,
            1_700_000_000_000
        );
        assert_eq!(
            at(r#""time":"2023-11-14T22:13:20Z""#).unwrap().time_ms,
            1_700_000_000_000
        );
        assert_eq!(
            at(r#""time_ms":"2023-11-14T23:13:20.250+01:00""#)
                .unwrap()
                .time_ms,
            1_700_000_000_250
        );
        let e = at(r#""time":"yesterday""#).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
        let e = at(r#""time":"1969-12-31T23:59:59Z""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("before 1970"), "{e}");
        let e = at(r#""fresh":true"#).unwrap_err().to_string();
        assert!(e.contains("missing field `time_ms`"), "{e}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = Request::from_json(r#"{"device":{"id":"a:b"},"direction":"uplink","kind":"telemetry","time_ms":1,"oops":1}"#)
            .unwrap_err();
        assert!(e.to_string().contains("oops"), "{e}");
    }
}
