//! BACnet objects ↔ Warden points and commands: which objects become points, their names,
//! values and units, and the checks a `write_<point>` / `relinquish_<point>` passes before
//! anything is sent (type, range, priority).

use warden_core::{Point, Value};

use crate::services::object;
use crate::tag::{AppValue, Datum, ObjectId};

/// What Warden knows about one object of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub name: String,
    /// The point name: the object name made MQTT- and profile-friendly, unique in the device.
    pub point: String,
    pub units: Option<u32>,
    pub states: Option<u32>,
}

/// The object families Warden maps to points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Analog,
    Binary,
    MultiState,
}

pub fn family(kind: u16) -> Option<Family> {
    match kind {
        object::ANALOG_INPUT | object::ANALOG_OUTPUT | object::ANALOG_VALUE => Some(Family::Analog),
        object::BINARY_INPUT | object::BINARY_OUTPUT | object::BINARY_VALUE => Some(Family::Binary),
        object::MULTI_STATE_INPUT | object::MULTI_STATE_OUTPUT | object::MULTI_STATE_VALUE => {
            Some(Family::MultiState)
        }
        _ => None,
    }
}

/// Inputs are read-only (their present value is writable only out of service, which Warden
/// does not do).
pub fn is_input(kind: u16) -> bool {
    matches!(
        kind,
        object::ANALOG_INPUT | object::BINARY_INPUT | object::MULTI_STATE_INPUT
    )
}

/// `Zone Temp #1` → `zone_temp_1`; empty or clashing names fall back to `analog_input_1`.
pub fn point_name(id: ObjectId, name: &str, taken: &[String]) -> String {
    let mut p = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            p.push(c.to_ascii_lowercase());
        } else if !p.ends_with('_') && !p.is_empty() {
            p.push('_');
        }
        if p.len() >= 48 {
            break;
        }
    }
    let p = p.trim_end_matches('_').to_owned();
    if p.is_empty() || taken.contains(&p) {
        format!(
            "{}_{}",
            object::name(id.kind).replace('-', "_"),
            id.instance
        )
    } else {
        p
    }
}

/// The engineering-units symbol of the common BACnet units (clause 21 BACnetEngineeringUnits).
pub fn unit_symbol(u: u32) -> Option<String> {
    let s = match u {
        62 => "°C",
        64 => "°F",
        63 => "K",
        98 => "%",
        29 => "%RH",
        47 => "W",
        48 => "kW",
        19 => "kWh",
        5 => "V",
        3 => "A",
        53 => "Pa",
        54 => "kPa",
        84 => "m³/h",
        95 => return None, // no-units
        other => return Some(format!("bacnet-unit-{other}")),
    };
    Some(s.to_owned())
}

fn real(f: f32) -> f64 {
    // the shortest decimal that round-trips the f32, so 21.1 stays 21.1 rather than 21.100000381
    f.to_string().parse::<f64>().unwrap_or(f64::from(f))
}

/// A present value as a point value.
pub fn value(v: &[Datum]) -> Option<Value> {
    let a = crate::services::first_app(v)?;
    Some(match a {
        AppValue::Real(f) => Value::Float(real(*f)),
        AppValue::Double(d) => Value::Float(*d),
        AppValue::Unsigned(u) => Value::Int(i64::try_from(*u).ok()?),
        AppValue::Signed(s) => Value::Int(*s),
        AppValue::Enumerated(e) => Value::Int(i64::from(*e)),
        AppValue::Bool(b) => Value::Bool(*b),
        AppValue::Text(t) => Value::Text(t.clone()),
        AppValue::Null => return None,
        _ => return None,
    })
}

/// A present value of `o` as its point.
pub fn point(o: &ObjectInfo, v: &[Datum]) -> Option<Point> {
    let mut val = value(v)?;
    if family(o.id.kind) == Some(Family::Binary)
        && let Value::Int(i) = val
    {
        val = Value::Bool(i == 1);
    }
    let p = Point::new(o.point.clone(), val);
    Some(match o.units.and_then(unit_symbol) {
        Some(u) => p.with_unit(u),
        None => p,
    })
}

/// Why a command is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{0}` is neither write_<point> nor relinquish_<point>")]
    UnknownCommand(String),
    #[error("no point `{0}` on this device")]
    UnknownPoint(String),
    #[error("`{0}` is an input: its present value is read-only")]
    ReadOnly(String),
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("`priority` must be an integer 1-16")]
    Priority,
    #[error("`value` for `{point}` must be {expected}")]
    Type {
        point: String,
        expected: &'static str,
    },
    #[error("`value` {value} is outside {point}'s range {range}")]
    Range {
        point: String,
        value: String,
        range: String,
    },
}

/// A checked write: the object, the encoded value (NULL for relinquish) and the priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub object: ObjectId,
    pub value: AppValue,
    pub priority: Option<u8>,
}

fn arg<'a>(args: &'a [Point], name: &str) -> Option<&'a Value> {
    args.iter().find(|a| a.name == name).map(|a| &a.value)
}

fn priority(args: &[Point]) -> Result<Option<u8>, Refusal> {
    match arg(args, "priority") {
        None => Ok(None),
        Some(Value::Int(p @ 1..=16)) => Ok(Some(*p as u8)),
        Some(_) => Err(Refusal::Priority),
    }
}

/// Checks a command against the device's objects and builds the write.
pub fn command(objects: &[ObjectInfo], name: &str, args: &[Point]) -> Result<Write, Refusal> {
    let (relinquish, point) = if let Some(p) = name.strip_prefix("write_") {
        (false, p)
    } else if let Some(p) = name.strip_prefix("relinquish_") {
        (true, p)
    } else {
        return Err(Refusal::UnknownCommand(name.to_owned()));
    };
    let o = objects
        .iter()
        .find(|o| o.point == point)
        .ok_or_else(|| Refusal::UnknownPoint(point.to_owned()))?;
    if is_input(o.id.kind) {
        return Err(Refusal::ReadOnly(point.to_owned()));
    }
    let prio = priority(args)?;
    if relinquish {
        let p = prio.ok_or(Refusal::Missing("priority"))?;
        return Ok(Write {
            object: o.id,
            value: AppValue::Null,
            priority: Some(p),
        });
    }
    let v = arg(args, "value").ok_or(Refusal::Missing("value"))?;
    let bad = |expected| Refusal::Type {
        point: point.to_owned(),
        expected,
    };
    let value = match family(o.id.kind) {
        Some(Family::Analog) => {
            let f = match v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                _ => return Err(bad("a number")),
            };
            if !f.is_finite() || f.abs() > f64::from(f32::MAX) {
                return Err(Refusal::Range {
                    point: point.to_owned(),
                    value: f.to_string(),
                    range: "of a 32-bit REAL".into(),
                });
            }
            AppValue::Real(f as f32)
        }
        Some(Family::Binary) => match v {
            Value::Bool(b) => AppValue::Enumerated(u32::from(*b)),
            Value::Int(i @ (0 | 1)) => AppValue::Enumerated(*i as u32),
            Value::Text(t) if t == "active" || t == "on" => AppValue::Enumerated(1),
            Value::Text(t) if t == "inactive" || t == "off" => AppValue::Enumerated(0),
            Value::Int(i) => {
                return Err(Refusal::Range {
                    point: point.to_owned(),
                    value: i.to_string(),
                    range: "0-1".into(),
                });
            }
            _ => return Err(bad("true/false, 0/1, active/inactive")),
        },
        Some(Family::MultiState) => {
            let Value::Int(i) = v else {
                return Err(bad("a state number"));
            };
            let max = o.states.unwrap_or(u32::MAX);
            if *i < 1 || *i > i64::from(max) {
                return Err(Refusal::Range {
                    point: point.to_owned(),
                    value: i.to_string(),
                    range: format!("1-{max}"),
                });
            }
            AppValue::Unsigned(*i as u64)
        }
        None => return Err(Refusal::UnknownPoint(point.to_owned())),
    };
    Ok(Write {
        object: o.id,
        value,
        priority: prio,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn objs() -> Vec<ObjectInfo> {
        let o = |k, n: &str, states| ObjectInfo {
            id: ObjectId::new(k, 1),
            name: n.into(),
            point: point_name(ObjectId::new(k, 1), n, &[]),
            units: None,
            states,
        };
        vec![
            o(object::ANALOG_INPUT, "ZoneTemp", None),
            o(object::ANALOG_VALUE, "Setpoint", None),
            o(object::BINARY_OUTPUT, "Fan", None),
            o(object::MULTI_STATE_VALUE, "Mode", Some(3)),
        ]
    }

    fn args(v: &[(&str, Value)]) -> Vec<Point> {
        v.iter().map(|(n, v)| Point::new(*n, v.clone())).collect()
    }

    #[test]
    fn names() {
        let id = ObjectId::new(0, 7);
        assert_eq!(point_name(id, "Zone Temp #1", &[]), "zone_temp_1");
        assert_eq!(point_name(id, "  ", &[]), "analog_input_7");
        assert_eq!(point_name(id, "x", &["x".into()]), "analog_input_7");
        assert_eq!(point_name(id, "a/b+c#", &[]), "a_b_c");
    }

    #[test]
    fn commands_are_checked_before_sending() {
        let o = objs();
        let w = command(
            &o,
            "write_setpoint",
            &args(&[("value", Value::Float(22.5)), ("priority", Value::Int(8))]),
        )
        .unwrap();
        assert_eq!(w.value, AppValue::Real(22.5));
        assert_eq!(w.priority, Some(8));
        let w = command(
            &o,
            "write_fan",
            &args(&[("value", Value::Text("active".into()))]),
        )
        .unwrap();
        assert_eq!(w.value, AppValue::Enumerated(1));
        let w = command(&o, "relinquish_fan", &args(&[("priority", Value::Int(8))])).unwrap();
        assert_eq!(w.value, AppValue::Null);
        assert_eq!(
            command(&o, "relinquish_fan", &[]).unwrap_err(),
            Refusal::Missing("priority")
        );
        assert_eq!(
            command(
                &o,
                "write_fan",
                &args(&[("value", Value::Int(1)), ("priority", Value::Int(17))])
            )
            .unwrap_err(),
            Refusal::Priority
        );
        assert!(matches!(
            command(&o, "write_fan", &args(&[("value", Value::Int(2))])).unwrap_err(),
            Refusal::Range { .. }
        ));
        assert!(matches!(
            command(
                &o,
                "write_setpoint",
                &args(&[("value", Value::Text("hot".into()))])
            )
            .unwrap_err(),
            Refusal::Type { .. }
        ));
        assert!(matches!(
            command(
                &o,
                "write_setpoint",
                &args(&[("value", Value::Float(1e39))])
            )
            .unwrap_err(),
            Refusal::Range { .. }
        ));
        assert!(matches!(
            command(&o, "write_mode", &args(&[("value", Value::Int(4))])).unwrap_err(),
            Refusal::Range { .. }
        ));
        assert!(command(&o, "write_mode", &args(&[("value", Value::Int(3))])).is_ok());
        assert_eq!(
            command(&o, "write_zonetemp", &args(&[("value", Value::Float(1.0))])).unwrap_err(),
            Refusal::ReadOnly("zonetemp".into())
        );
        assert_eq!(
            command(&o, "write_nothing", &[]).unwrap_err(),
            Refusal::UnknownPoint("nothing".into())
        );
        assert_eq!(
            command(&o, "reboot", &[]).unwrap_err(),
            Refusal::UnknownCommand("reboot".into())
        );
    }

    #[test]
    fn values() {
        let o = &objs()[2];
        let p = point(o, &[Datum::App(AppValue::Enumerated(1))]).unwrap();
        assert_eq!(p.value, Value::Bool(true));
        let mut a = objs()[0].clone();
        a.units = Some(62);
        let p = point(&a, &[Datum::App(AppValue::Real(21.1))]).unwrap();
        assert_eq!(p.value, Value::Float(21.1));
        assert_eq!(p.unit.as_deref(), Some("°C"));
    }
}
