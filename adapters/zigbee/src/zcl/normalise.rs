//! Normalisation: the table that turns a (cluster, attribute, value) from a device into named
//! points with units (`temperature` in °C, `level` in %, …), and back from a point name to the
//! (cluster, attribute, data type) and raw value for reads and writes.
//!
//! One row per (cluster, attribute) in [`POINTS`]. Per-device state the conversion depends on
//! (IAS zone type, metering and electrical multipliers/divisors, pressure scale) lives in
//! [`DeviceContext`], which the adapter feeds with every attribute it sees ([`DeviceContext::observe`]);
//! per-model corrections come in as [`Override`]s.

use crate::zcl::clusters::{ZoneStatus, id};
use crate::zcl::types::{DataType, ZclValue};

/// A point value, shaped like `warden_core::message::Value` so the adapter maps it one to one.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One normalised reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub name: String,
    pub value: PointValue,
    pub unit: Option<String>,
}

/// A per-model correction for one (cluster, attribute): rename it, replace its conversion by a
/// linear `raw × scale`, and/or change its unit. An override for an attribute not in the table
/// makes it a point (it then needs a `name`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Override {
    pub cluster: u16,
    pub attr: u16,
    pub name: Option<String>,
    pub scale: Option<f64>,
    pub unit: Option<String>,
}

/// A multiplier/divisor pair as reported by the device (either may be unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scale {
    pub multiplier: Option<u32>,
    pub divisor: Option<u32>,
}

impl Scale {
    fn known(&self) -> bool {
        self.multiplier.is_some() || self.divisor.is_some()
    }
    /// raw × multiplier / divisor, with the given defaults for unknown halves (a zero divisor
    /// counts as unknown).
    fn apply(&self, raw: f64, default_mult: u32, default_div: u32) -> f64 {
        let m = self.multiplier.unwrap_or(default_mult);
        let d = match self.divisor {
            Some(0) | None => default_div,
            Some(d) => d,
        };
        raw * f64::from(m) / f64::from(d.max(1))
    }
}

/// Attribute values of one device that other attributes' conversions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceContext {
    /// IAS Zone 0x0500/0x0001.
    pub zone_type: Option<u16>,
    /// Pressure 0x0403/0x0014 (ScaledValue = 10^scale × pressure in Pa, as devices send it).
    pub pressure_scale: Option<i8>,
    /// Electrical Measurement 0x0b04/0x0600-0x0601.
    pub ac_voltage: Scale,
    /// Electrical Measurement 0x0b04/0x0602-0x0603.
    pub ac_current: Scale,
    /// Electrical Measurement 0x0b04/0x0604-0x0605.
    pub ac_power: Scale,
    /// Metering 0x0702/0x0301-0x0302.
    pub metering: Scale,
}

impl DeviceContext {
    /// Remember `value` if it is one the conversions depend on; returns whether it was.
    /// Call it for every record of a report before normalising the records.
    pub fn observe(&mut self, cluster: u16, attr: u16, value: &ZclValue) -> bool {
        let u32v = || value.as_i64().and_then(|v| u32::try_from(v).ok());
        let slot = match (cluster, attr) {
            (id::IAS_ZONE, 0x0001) => {
                self.zone_type = value.as_i64().and_then(|v| u16::try_from(v).ok());
                return true;
            }
            (id::PRESSURE_MEASUREMENT, 0x0014) => {
                self.pressure_scale = value.as_i64().and_then(|v| i8::try_from(v).ok());
                return true;
            }
            (id::ELECTRICAL_MEASUREMENT, 0x0600) => &mut self.ac_voltage.multiplier,
            (id::ELECTRICAL_MEASUREMENT, 0x0601) => &mut self.ac_voltage.divisor,
            (id::ELECTRICAL_MEASUREMENT, 0x0602) => &mut self.ac_current.multiplier,
            (id::ELECTRICAL_MEASUREMENT, 0x0603) => &mut self.ac_current.divisor,
            (id::ELECTRICAL_MEASUREMENT, 0x0604) => &mut self.ac_power.multiplier,
            (id::ELECTRICAL_MEASUREMENT, 0x0605) => &mut self.ac_power.divisor,
            (id::METERING, 0x0301) => &mut self.metering.multiplier,
            (id::METERING, 0x0302) => &mut self.metering.divisor,
            _ => return false,
        };
        *slot = u32v();
        true
    }
}

/// How a row turns a raw value into a point value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conv {
    /// Bool, or non-zero.
    Bool,
    /// Bit 0 of a bitmap.
    Bit0,
    /// The integer as it is.
    Int,
    /// raw / divisor as a float.
    Div(f64),
    /// 0-254 → 0-100 %.
    Percent254,
    /// 0-254 → 0-360 degrees.
    Hue254,
    /// 10^((v-1)/10000) lux; 0 → 0.
    Illuminance,
    /// Named enumeration values; unknown values stay integers.
    Enum(&'static [(u64, &'static str)]),
    /// IAS zone status bits → named booleans by zone type.
    ZoneStatus,
    /// Electrical measurement quantities using the device's multiplier/divisor.
    AcVoltage,
    AcCurrent,
    AcPower,
    /// Metering summation (kWh with multiplier/divisor, else raw Wh).
    MeteringEnergy,
    /// Metering demand (kW with multiplier/divisor → W, else raw W).
    MeteringDemand,
    /// Pressure ScaledValue with the device's scale: hPa = ScaledValue / 10^scale / 100.
    PressureScaled,
}

/// One row of the normalisation table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointDef {
    pub cluster: u16,
    pub attr: u16,
    pub name: &'static str,
    pub unit: Option<&'static str>,
    /// The attribute's ZCL data type (used for writes and reporting configuration).
    pub data_type: DataType,
    pub conv: Conv,
    /// Whether operators may write it.
    pub writable: bool,
}

const COLOR_MODES: &[(u64, &str)] = &[(0, "hs"), (1, "xy"), (2, "color_temp")];
const SYSTEM_MODES: &[(u64, &str)] = &[
    (0, "off"),
    (1, "auto"),
    (3, "cool"),
    (4, "heat"),
    (5, "emergency_heating"),
    (6, "precooling"),
    (7, "fan_only"),
    (8, "dry"),
    (9, "sleep"),
];

const fn row(
    cluster: u16,
    attr: u16,
    name: &'static str,
    unit: Option<&'static str>,
    data_type: DataType,
    conv: Conv,
) -> PointDef {
    PointDef {
        cluster,
        attr,
        name,
        unit,
        data_type,
        conv,
        writable: false,
    }
}

const fn writable(p: PointDef) -> PointDef {
    PointDef {
        writable: true,
        ..p
    }
}

use DataType as T;

/// The normalisation table.
pub const POINTS: &[PointDef] = &[
    row(
        id::POWER_CONFIGURATION,
        0x0020,
        "battery_voltage",
        Some("V"),
        T::Uint8,
        Conv::Div(10.0),
    ),
    row(
        id::POWER_CONFIGURATION,
        0x0021,
        "battery",
        Some("%"),
        T::Uint8,
        Conv::Div(2.0),
    ),
    row(id::ON_OFF, 0x0000, "on", None, T::Bool, Conv::Bool),
    row(
        id::LEVEL_CONTROL,
        0x0000,
        "level",
        Some("%"),
        T::Uint8,
        Conv::Percent254,
    ),
    row(
        id::THERMOSTAT,
        0x0000,
        "local_temperature",
        Some("°C"),
        T::Int16,
        Conv::Div(100.0),
    ),
    writable(row(
        id::THERMOSTAT,
        0x0011,
        "cooling_setpoint",
        Some("°C"),
        T::Int16,
        Conv::Div(100.0),
    )),
    writable(row(
        id::THERMOSTAT,
        0x0012,
        "heating_setpoint",
        Some("°C"),
        T::Int16,
        Conv::Div(100.0),
    )),
    writable(row(
        id::THERMOSTAT,
        0x001c,
        "system_mode",
        None,
        T::Enum8,
        Conv::Enum(SYSTEM_MODES),
    )),
    row(
        id::COLOR_CONTROL,
        0x0000,
        "hue",
        Some("°"),
        T::Uint8,
        Conv::Hue254,
    ),
    row(
        id::COLOR_CONTROL,
        0x0001,
        "saturation",
        Some("%"),
        T::Uint8,
        Conv::Percent254,
    ),
    row(
        id::COLOR_CONTROL,
        0x0003,
        "color_x",
        None,
        T::Uint16,
        Conv::Div(65536.0),
    ),
    row(
        id::COLOR_CONTROL,
        0x0004,
        "color_y",
        None,
        T::Uint16,
        Conv::Div(65536.0),
    ),
    row(
        id::COLOR_CONTROL,
        0x0007,
        "color_temp",
        Some("mired"),
        T::Uint16,
        Conv::Int,
    ),
    row(
        id::COLOR_CONTROL,
        0x0008,
        "color_mode",
        None,
        T::Enum8,
        Conv::Enum(COLOR_MODES),
    ),
    row(
        id::ILLUMINANCE_MEASUREMENT,
        0x0000,
        "illuminance",
        Some("lx"),
        T::Uint16,
        Conv::Illuminance,
    ),
    row(
        id::TEMPERATURE_MEASUREMENT,
        0x0000,
        "temperature",
        Some("°C"),
        T::Int16,
        Conv::Div(100.0),
    ),
    // MeasuredValue = 10 × kPa, which is hPa.
    row(
        id::PRESSURE_MEASUREMENT,
        0x0000,
        "pressure",
        Some("hPa"),
        T::Int16,
        Conv::Div(1.0),
    ),
    row(
        id::PRESSURE_MEASUREMENT,
        0x0010,
        "pressure",
        Some("hPa"),
        T::Int16,
        Conv::PressureScaled,
    ),
    row(
        id::RELATIVE_HUMIDITY,
        0x0000,
        "humidity",
        Some("%"),
        T::Uint16,
        Conv::Div(100.0),
    ),
    row(
        id::OCCUPANCY_SENSING,
        0x0000,
        "occupancy",
        None,
        T::Bitmap8,
        Conv::Bit0,
    ),
    writable(row(
        id::OCCUPANCY_SENSING,
        0x0010,
        "occupancy_timeout",
        Some("s"),
        T::Uint16,
        Conv::Int,
    )),
    row(
        id::IAS_ZONE,
        0x0001,
        "zone_type",
        None,
        T::Enum16,
        Conv::Int,
    ),
    row(
        id::IAS_ZONE,
        0x0002,
        "zone_status",
        None,
        T::Bitmap16,
        Conv::ZoneStatus,
    ),
    row(
        id::METERING,
        0x0000,
        "energy",
        Some("kWh"),
        T::Uint48,
        Conv::MeteringEnergy,
    ),
    row(
        id::METERING,
        0x0400,
        "power",
        Some("W"),
        T::Int24,
        Conv::MeteringDemand,
    ),
    row(
        id::ELECTRICAL_MEASUREMENT,
        0x0505,
        "voltage",
        Some("V"),
        T::Uint16,
        Conv::AcVoltage,
    ),
    row(
        id::ELECTRICAL_MEASUREMENT,
        0x0508,
        "current",
        Some("A"),
        T::Uint16,
        Conv::AcCurrent,
    ),
    row(
        id::ELECTRICAL_MEASUREMENT,
        0x050b,
        "power",
        Some("W"),
        T::Int16,
        Conv::AcPower,
    ),
];

/// Names of the booleans derived from the IAS zone status (all read from 0x0500/0x0002).
pub const ZONE_POINTS: &[&str] = &[
    "motion",
    "contact",
    "water_leak",
    "smoke",
    "alarm",
    "tamper",
    "battery_low",
];

/// The table row for (cluster, attr).
pub fn lookup(cluster: u16, attr: u16) -> Option<&'static PointDef> {
    POINTS
        .iter()
        .find(|p| p.cluster == cluster && p.attr == attr)
}

/// The point for a name (the first row with it; zone-status booleans map to the zone status).
pub fn point(name: &str) -> Option<&'static PointDef> {
    let name = if ZONE_POINTS.contains(&name) {
        "zone_status"
    } else {
        name
    };
    POINTS.iter().find(|p| p.name == name)
}

fn find_override(overrides: &[Override], cluster: u16, attr: u16) -> Option<&Override> {
    overrides
        .iter()
        .find(|o| o.cluster == cluster && o.attr == attr)
}

/// raw × scale, dividing by the inverse when it is a whole number (so 2150 × 0.01 is exactly 21.5).
pub(crate) fn apply_scale(raw: f64, scale: f64) -> f64 {
    let inv = 1.0 / scale;
    if scale.abs() < 1.0 && inv.is_finite() && (inv - inv.round()).abs() < 1e-9 {
        raw / inv.round()
    } else {
        raw * scale
    }
}

/// v × 10^e, dividing for negative e so decimal results are exact where they can be.
fn scale_pow10(v: f64, e: i32) -> f64 {
    if e < 0 {
        v / 10f64.powi(-e)
    } else {
        v * 10f64.powi(e)
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn reading(name: &str, value: PointValue, unit: Option<&str>) -> Reading {
    Reading {
        name: name.to_string(),
        value,
        unit: unit.map(str::to_string),
    }
}

/// Turn an attribute value into readings (usually one; the IAS zone status gives several).
/// Unknown (cluster, attr) without an override, invalid sentinels and values of an unexpected
/// shape give none: the adapter logs those.
pub fn normalise(
    cluster: u16,
    attr: u16,
    value: &ZclValue,
    ctx: &DeviceContext,
    overrides: &[Override],
) -> Vec<Reading> {
    if matches!(value, ZclValue::Invalid(_) | ZclValue::NoData) {
        return Vec::new();
    }
    let ov = find_override(overrides, cluster, attr);
    let row = lookup(cluster, attr);
    let mut out = match (ov.and_then(|o| o.scale), row) {
        (Some(scale), _) => {
            let name = ov.and_then(|o| o.name.as_deref()).or(row.map(|r| r.name));
            match (name, value.as_f64()) {
                (Some(n), Some(raw)) => vec![reading(
                    n,
                    PointValue::Float(apply_scale(raw, scale)),
                    row.and_then(|r| r.unit),
                )],
                _ => Vec::new(),
            }
        }
        (None, Some(r)) => convert(r, value, ctx),
        (None, None) => match (ov.and_then(|o| o.name.as_deref()), raw_point(value)) {
            (Some(n), Some(v)) => vec![reading(n, v, None)],
            _ => Vec::new(),
        },
    };
    if let (Some(o), Some(first)) = (ov, out.first_mut()) {
        if let Some(n) = &o.name {
            first.name.clone_from(n);
        }
        if let Some(u) = &o.unit {
            first.unit = Some(u.clone());
        }
    }
    out
}

/// A value as it is, for overridden attributes with no table row.
fn raw_point(value: &ZclValue) -> Option<PointValue> {
    Some(match value {
        ZclValue::Bool(b) => PointValue::Bool(*b),
        ZclValue::Unsigned(..) | ZclValue::Signed(..) => PointValue::Int(value.as_i64()?),
        ZclValue::Float(_, f) => PointValue::Float(*f),
        ZclValue::Text(_, s) => PointValue::Text(s.clone()),
        ZclValue::Octets(_, b) => PointValue::Bytes(b.clone()),
        _ => return None,
    })
}

fn convert(r: &PointDef, value: &ZclValue, ctx: &DeviceContext) -> Vec<Reading> {
    let one = |v: Option<PointValue>, unit: Option<&str>| -> Vec<Reading> {
        v.map(|v| vec![reading(r.name, v, unit)])
            .unwrap_or_default()
    };
    let f = value.as_f64();
    let i = value.as_i64();
    match r.conv {
        Conv::Bool => one(i.map(|v| PointValue::Bool(v != 0)), r.unit),
        Conv::Bit0 => one(i.map(|v| PointValue::Bool(v & 1 != 0)), r.unit),
        Conv::Int => one(i.map(PointValue::Int), r.unit),
        Conv::Div(d) => one(f.map(|v| PointValue::Float(v / d)), r.unit),
        Conv::Percent254 => one(
            f.map(|v| PointValue::Float(round_to(v * 100.0 / 254.0, 1))),
            r.unit,
        ),
        Conv::Hue254 => one(
            f.map(|v| PointValue::Float(round_to(v * 360.0 / 254.0, 1))),
            r.unit,
        ),
        Conv::Illuminance => one(
            f.map(|v| {
                let lux = if v <= 0.0 {
                    0.0
                } else {
                    10f64.powf((v - 1.0) / 10000.0)
                };
                PointValue::Float(round_to(lux, 2))
            }),
            r.unit,
        ),
        Conv::Enum(names) => one(
            i.map(|v| {
                names
                    .iter()
                    .find(|(k, _)| i64::try_from(*k).ok() == Some(v))
                    .map(|(_, n)| PointValue::Text((*n).to_string()))
                    .unwrap_or(PointValue::Int(v))
            }),
            r.unit,
        ),
        Conv::ZoneStatus => match i.and_then(|v| u16::try_from(v).ok()) {
            Some(bits) => zone_readings(ZoneStatus(bits), ctx.zone_type),
            None => Vec::new(),
        },
        Conv::AcVoltage => one(
            f.map(|v| PointValue::Float(ctx.ac_voltage.apply(v, 1, 1))),
            r.unit,
        ),
        Conv::AcCurrent => one(
            f.map(|v| PointValue::Float(ctx.ac_current.apply(v, 1, 1000))),
            r.unit,
        ),
        Conv::AcPower => one(
            f.map(|v| PointValue::Float(ctx.ac_power.apply(v, 1, 1))),
            r.unit,
        ),
        Conv::MeteringEnergy => {
            if ctx.metering.known() {
                one(
                    f.map(|v| PointValue::Float(ctx.metering.apply(v, 1, 1))),
                    Some("kWh"),
                )
            } else {
                one(f.map(PointValue::Float), Some("Wh"))
            }
        }
        Conv::MeteringDemand => {
            if ctx.metering.known() {
                one(
                    f.map(|v| PointValue::Float(ctx.metering.apply(v, 1, 1) * 1000.0)),
                    r.unit,
                )
            } else {
                one(f.map(PointValue::Float), r.unit)
            }
        }
        Conv::PressureScaled => match (ctx.pressure_scale, f) {
            (Some(scale), Some(v)) => one(
                Some(PointValue::Float(scale_pow10(v, -i32::from(scale) - 2))),
                r.unit,
            ),
            _ => Vec::new(),
        },
    }
}

/// The zone-status booleans: the alarm named by zone type, then tamper and battery_low.
fn zone_readings(status: ZoneStatus, zone_type: Option<u16>) -> Vec<Reading> {
    let alarm = match zone_type {
        Some(0x000d) => "motion",
        Some(0x0015) => "contact",
        Some(0x002a) => "water_leak",
        Some(0x0028) => "smoke",
        _ => "alarm",
    };
    vec![
        reading(alarm, PointValue::Bool(status.alarm1()), None),
        reading("tamper", PointValue::Bool(status.tamper()), None),
        reading("battery_low", PointValue::Bool(status.battery_low()), None),
    ]
}

/// The Basic-cluster identity fields (not points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityField {
    Manufacturer,
    Model,
    DateCode,
    PowerSource,
    SwBuildId,
}

/// Longest identity string kept (characters).
pub const MAX_IDENTITY_LEN: usize = 64;

/// Basic cluster attributes as identity strings, trimmed of NULs and spaces and bounded to
/// [`MAX_IDENTITY_LEN`] characters.
pub fn identity(cluster: u16, attr: u16, value: &ZclValue) -> Option<(IdentityField, String)> {
    if cluster != id::BASIC {
        return None;
    }
    let field = match attr {
        0x0004 => IdentityField::Manufacturer,
        0x0005 => IdentityField::Model,
        0x0006 => IdentityField::DateCode,
        0x0007 => IdentityField::PowerSource,
        0x4000 => IdentityField::SwBuildId,
        _ => return None,
    };
    let text = match (field, value) {
        (IdentityField::PowerSource, ZclValue::Unsigned(_, v)) => {
            let base = match v & 0x7f {
                0x01 => "mains_single_phase",
                0x02 => "mains_three_phase",
                0x03 => "battery",
                0x04 => "dc",
                0x05 => "emergency_constant",
                0x06 => "emergency_transfer",
                _ => "unknown",
            };
            if v & 0x80 != 0 {
                format!("{base}+battery_backup")
            } else {
                base.to_string()
            }
        }
        (IdentityField::PowerSource, _) => return None,
        (_, ZclValue::Text(_, s)) => s
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_IDENTITY_LEN)
            .collect(),
        _ => return None,
    };
    Some((field, text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn u(t: DataType, v: u64) -> ZclValue {
        ZclValue::Unsigned(t, v)
    }
    fn s(t: DataType, v: i64) -> ZclValue {
        ZclValue::Signed(t, v)
    }
    fn norm(cluster: u16, attr: u16, v: ZclValue) -> Vec<Reading> {
        normalise(cluster, attr, &v, &DeviceContext::default(), &[])
    }
    fn one(cluster: u16, attr: u16, v: ZclValue) -> (String, PointValue, Option<String>) {
        let r = norm(cluster, attr, v);
        assert_eq!(r.len(), 1, "{r:?}");
        let r = r.into_iter().next().unwrap();
        (r.name, r.value, r.unit)
    }
    fn float(cluster: u16, attr: u16, v: ZclValue) -> f64 {
        match one(cluster, attr, v).1 {
            PointValue::Float(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn on_off() {
        assert_eq!(
            one(6, 0, ZclValue::Bool(true)),
            ("on".into(), PointValue::Bool(true), None)
        );
        assert!(norm(6, 0, ZclValue::Invalid(DataType::Bool)).is_empty());
    }

    #[test]
    fn level() {
        assert_eq!(
            one(8, 0, u(T::Uint8, 254)),
            ("level".into(), PointValue::Float(100.0), Some("%".into()))
        );
        assert_eq!(float(8, 0, u(T::Uint8, 127)), 50.0);
        assert_eq!(float(8, 0, u(T::Uint8, 0)), 0.0);
    }

    #[test]
    fn color() {
        assert_eq!(float(0x0300, 0, u(T::Uint8, 254)), 360.0);
        assert_eq!(float(0x0300, 1, u(T::Uint8, 127)), 50.0);
        assert_eq!(float(0x0300, 3, u(T::Uint16, 32768)), 0.5);
        assert_eq!(float(0x0300, 4, u(T::Uint16, 16384)), 0.25);
        assert_eq!(
            one(0x0300, 7, u(T::Uint16, 370)),
            (
                "color_temp".into(),
                PointValue::Int(370),
                Some("mired".into())
            )
        );
        assert_eq!(
            one(0x0300, 8, u(T::Enum8, 2)).1,
            PointValue::Text("color_temp".into())
        );
        assert_eq!(one(0x0300, 8, u(T::Enum8, 9)).1, PointValue::Int(9));
    }

    #[test]
    fn temperature_humidity_pressure() {
        assert_eq!(
            one(0x0402, 0, s(T::Int16, 2150)),
            (
                "temperature".into(),
                PointValue::Float(21.5),
                Some("°C".into())
            )
        );
        assert_eq!(float(0x0402, 0, s(T::Int16, -505)), -5.05);
        assert!(norm(0x0402, 0, ZclValue::Invalid(T::Int16)).is_empty());
        assert_eq!(
            one(0x0405, 0, u(T::Uint16, 4567)),
            (
                "humidity".into(),
                PointValue::Float(45.67),
                Some("%".into())
            )
        );
        assert_eq!(
            one(0x0403, 0, s(T::Int16, 1013)),
            (
                "pressure".into(),
                PointValue::Float(1013.0),
                Some("hPa".into())
            )
        );
        // scaled value needs the scale
        assert!(norm(0x0403, 0x0010, s(T::Int16, 10132)).is_empty());
        let mut ctx = DeviceContext::default();
        assert!(ctx.observe(0x0403, 0x0014, &s(T::Int8, -1)));
        let r = normalise(0x0403, 0x0010, &s(T::Int16, 10132), &ctx, &[]);
        assert_eq!(r[0].name, "pressure");
        match r[0].value {
            PointValue::Float(f) => assert_eq!(f, 1013.2),
            ref o => panic!("{o:?}"),
        }
    }

    #[test]
    fn illuminance() {
        assert_eq!(float(0x0400, 0, u(T::Uint16, 0)), 0.0);
        assert_eq!(float(0x0400, 0, u(T::Uint16, 1)), 1.0);
        assert_eq!(float(0x0400, 0, u(T::Uint16, 30001)), 1000.0);
        assert!(norm(0x0400, 0, ZclValue::Invalid(T::Uint16)).is_empty());
    }

    #[test]
    fn occupancy() {
        assert_eq!(one(0x0406, 0, u(T::Bitmap8, 1)).1, PointValue::Bool(true));
        assert_eq!(one(0x0406, 0, u(T::Bitmap8, 2)).1, PointValue::Bool(false));
    }

    #[test]
    fn ias_zone_by_type() {
        let cases = [
            (Some(0x000d), "motion"),
            (Some(0x0015), "contact"),
            (Some(0x002a), "water_leak"),
            (Some(0x0028), "smoke"),
            (Some(0x8000), "alarm"),
            (None, "alarm"),
        ];
        for (zt, name) in cases {
            let ctx = DeviceContext {
                zone_type: zt,
                ..Default::default()
            };
            let r = normalise(0x0500, 2, &u(T::Bitmap16, 0x0005), &ctx, &[]);
            assert_eq!(
                r,
                vec![
                    reading(name, PointValue::Bool(true), None),
                    reading("tamper", PointValue::Bool(true), None),
                    reading("battery_low", PointValue::Bool(false), None),
                ]
            );
        }
        let mut ctx = DeviceContext::default();
        assert!(ctx.observe(0x0500, 1, &u(T::Enum16, 0x0015)));
        assert_eq!(ctx.zone_type, Some(0x0015));
        let r = normalise(0x0500, 2, &u(T::Bitmap16, 0x0008), &ctx, &[]);
        assert_eq!(r[0], reading("contact", PointValue::Bool(false), None));
        assert_eq!(r[2], reading("battery_low", PointValue::Bool(true), None));
        assert_eq!(
            one(0x0500, 1, u(T::Enum16, 0x0015)),
            ("zone_type".into(), PointValue::Int(0x15), None)
        );
    }

    #[test]
    fn power_configuration() {
        assert_eq!(
            one(1, 0x20, u(T::Uint8, 30)),
            (
                "battery_voltage".into(),
                PointValue::Float(3.0),
                Some("V".into())
            )
        );
        assert_eq!(
            one(1, 0x21, u(T::Uint8, 171)),
            ("battery".into(), PointValue::Float(85.5), Some("%".into()))
        );
        assert!(norm(1, 0x21, ZclValue::Invalid(T::Uint8)).is_empty());
    }

    #[test]
    fn electrical_measurement() {
        assert_eq!(
            one(0x0b04, 0x0505, u(T::Uint16, 230)),
            ("voltage".into(), PointValue::Float(230.0), Some("V".into()))
        );
        assert_eq!(float(0x0b04, 0x0508, u(T::Uint16, 1500)), 1.5);
        assert_eq!(float(0x0b04, 0x050b, s(T::Int16, 100)), 100.0);
        let mut ctx = DeviceContext::default();
        for (a, v) in [
            (0x0600, 1),
            (0x0601, 10),
            (0x0602, 1),
            (0x0603, 100),
            (0x0604, 1),
            (0x0605, 10),
        ] {
            assert!(ctx.observe(0x0b04, a, &u(T::Uint16, v)));
        }
        let f = |attr, v| match &normalise(0x0b04, attr, &v, &ctx, &[])[0].value {
            PointValue::Float(f) => *f,
            o => panic!("{o:?}"),
        };
        assert_eq!(f(0x0505, u(T::Uint16, 2301)), 230.1);
        assert_eq!(f(0x0508, u(T::Uint16, 150)), 1.5);
        assert_eq!(f(0x050b, s(T::Int16, 1005)), 100.5);
    }

    #[test]
    fn metering() {
        assert_eq!(
            one(0x0702, 0, u(T::Uint48, 12345)),
            (
                "energy".into(),
                PointValue::Float(12345.0),
                Some("Wh".into())
            )
        );
        assert_eq!(
            one(0x0702, 0x0400, s(T::Int24, 250)),
            ("power".into(), PointValue::Float(250.0), Some("W".into()))
        );
        let mut ctx = DeviceContext::default();
        ctx.observe(0x0702, 0x0301, &u(T::Uint24, 1));
        ctx.observe(0x0702, 0x0302, &u(T::Uint24, 1000));
        let r = normalise(0x0702, 0, &u(T::Uint48, 12345), &ctx, &[]);
        assert_eq!(r[0].value, PointValue::Float(12.345));
        assert_eq!(r[0].unit.as_deref(), Some("kWh"));
        let r = normalise(0x0702, 0x0400, &s(T::Int24, 250), &ctx, &[]);
        assert_eq!(r[0].value, PointValue::Float(250.0));
    }

    #[test]
    fn thermostat() {
        assert_eq!(
            one(0x0201, 0x0012, s(T::Int16, 2050)).1,
            PointValue::Float(20.5)
        );
        assert_eq!(
            one(0x0201, 0x001c, u(T::Enum8, 4)).1,
            PointValue::Text("heat".into())
        );
        assert_eq!(float(0x0201, 0, s(T::Int16, 1999)), 19.99);
    }

    #[test]
    fn basic_is_identity_not_points() {
        for a in [4u16, 5, 6, 7, 0x4000] {
            assert!(norm(0, a, ZclValue::Text(T::CharString, "x".into())).is_empty());
        }
        assert_eq!(
            identity(
                0,
                5,
                &ZclValue::Text(T::CharString, "lumi.sensor\0\0 ".into())
            ),
            Some((IdentityField::Model, "lumi.sensor".into()))
        );
        assert_eq!(
            identity(0, 7, &u(T::Enum8, 0x83)),
            Some((IdentityField::PowerSource, "battery+battery_backup".into()))
        );
        assert_eq!(
            identity(0, 4, &ZclValue::Text(T::CharString, "y".repeat(200)))
                .unwrap()
                .1
                .len(),
            MAX_IDENTITY_LEN
        );
        assert_eq!(identity(6, 4, &ZclValue::Bool(true)), None);
    }

    #[test]
    fn unknown_is_none() {
        assert!(norm(0x0402, 0x0001, s(T::Int16, 1)).is_empty());
        assert!(norm(0xfc00, 0x0000, u(T::Uint8, 1)).is_empty());
        // wrong shape for the row
        assert!(norm(0x0402, 0, ZclValue::Text(T::CharString, "x".into())).is_empty());
    }

    #[test]
    fn overrides() {
        let ov = [Override {
            cluster: 0x0402,
            attr: 0,
            scale: Some(0.1),
            ..Default::default()
        }];
        let r = normalise(0x0402, 0, &s(T::Int16, 215), &DeviceContext::default(), &ov);
        assert_eq!(
            r,
            vec![reading("temperature", PointValue::Float(21.5), Some("°C"))]
        );
        let ov = [Override {
            cluster: 0xfc00,
            attr: 0x0001,
            name: Some("vendor_mode".into()),
            unit: Some("x".into()),
            ..Default::default()
        }];
        let r = normalise(0xfc00, 1, &u(T::Uint8, 3), &DeviceContext::default(), &ov);
        assert_eq!(
            r,
            vec![reading("vendor_mode", PointValue::Int(3), Some("x"))]
        );
        let ov = [Override {
            cluster: 0x0405,
            attr: 0,
            name: Some("soil_moisture".into()),
            ..Default::default()
        }];
        let r = normalise(
            0x0405,
            0,
            &u(T::Uint16, 5000),
            &DeviceContext::default(),
            &ov,
        );
        assert_eq!(
            r,
            vec![reading("soil_moisture", PointValue::Float(50.0), Some("%"))]
        );
    }

    #[test]
    fn reverse_map() {
        let p = point("temperature").unwrap();
        assert_eq!((p.cluster, p.attr, p.data_type), (0x0402, 0, T::Int16));
        let p = point("motion").unwrap();
        assert_eq!((p.cluster, p.attr), (0x0500, 2));
        assert_eq!(point("pressure").unwrap().attr, 0);
        assert!(point("nope").is_none());
        // every row's name resolves to a row with the same name
        for r in POINTS {
            assert_eq!(point(r.name).unwrap().name, r.name);
        }
    }
}
