//! Command classes: what a node's reports mean as Warden points, and the frames for the commands
//! Warden sends. Reports are untrusted bytes: every field is length-checked, unknown command
//! classes and commands are reported as such, never guessed at.

use warden_core::{Command, Point, Value};

pub const BASIC: u8 = 0x20;
pub const BINARY_SWITCH: u8 = 0x25;
pub const MULTILEVEL_SWITCH: u8 = 0x26;
pub const BINARY_SENSOR: u8 = 0x30;
pub const MULTILEVEL_SENSOR: u8 = 0x31;
pub const METER: u8 = 0x32;
pub const THERMOSTAT_MODE: u8 = 0x40;
pub const THERMOSTAT_SETPOINT: u8 = 0x43;
pub const CENTRAL_SCENE: u8 = 0x5b;
pub const DOOR_LOCK: u8 = 0x62;
pub const CONFIGURATION: u8 = 0x70;
pub const NOTIFICATION: u8 = 0x71;
pub const ASSOCIATION: u8 = 0x85;
pub const MANUFACTURER_SPECIFIC: u8 = 0x72;
pub const BATTERY: u8 = 0x80;
pub const WAKE_UP: u8 = 0x84;
pub const VERSION: u8 = 0x86;
pub const SECURITY_0: u8 = 0x98;
pub const SECURITY_2: u8 = 0x9f;
pub const SUPERVISION: u8 = 0x6c;

/// What a node's frame said.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Measurements and states.
    Points(Vec<Point>),
    /// Manufacturer Specific Report: manufacturer, product type, product id.
    Manufacturer {
        manufacturer: u16,
        product_type: u16,
        product_id: u16,
    },
    /// Version Report: the node's firmware.
    Firmware(String),
    /// A sleeping node woke up (Wake Up Notification): queued commands may go now.
    Awake,
    /// A command class Warden does not turn into points (it is counted, not published).
    Unhandled { cc: u8, command: u8 },
    /// Secured (S0/S2) encapsulation: the host decrypts these, and Warden does not yet speak S0/S2.
    Encrypted { cc: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcError {
    #[error("{cc}: frame too short ({len} bytes)")]
    Short { cc: &'static str, len: usize },
    #[error("{cc}: {detail}")]
    Invalid {
        cc: &'static str,
        detail: &'static str,
    },
}

fn short(cc: &'static str, p: &[u8]) -> CcError {
    CcError::Short { cc, len: p.len() }
}

/// Decodes one command-class payload (`cc command params…`).
pub fn decode(payload: &[u8]) -> Result<Report, CcError> {
    let (cc, cmd, params) = match payload {
        [cc, cmd, rest @ ..] => (*cc, *cmd, rest),
        _ => return Err(short("command class", payload)),
    };
    match (cc, cmd) {
        (BASIC, 0x03) => level("basic", "Basic", params),
        (BINARY_SWITCH, 0x03) => {
            let v = *params
                .first()
                .ok_or_else(|| short("Binary Switch", payload))?;
            Ok(Report::Points(match v {
                0xfe => Vec::new(),
                0 => vec![Point::new("switch", Value::Bool(false))],
                _ => vec![Point::new("switch", Value::Bool(true))],
            }))
        }
        (MULTILEVEL_SWITCH, 0x03) => level("level", "Multilevel Switch", params),
        (BINARY_SENSOR, 0x03) => {
            let v = *params
                .first()
                .ok_or_else(|| short("Binary Sensor", payload))?;
            let name = binary_sensor_name(params.get(1).copied().unwrap_or(0));
            Ok(Report::Points(vec![Point::new(name, Value::Bool(v != 0))]))
        }
        (MULTILEVEL_SENSOR, 0x05) => multilevel_sensor(params),
        (METER, 0x02) => meter(params),
        (NOTIFICATION, 0x05) => notification(params),
        (BATTERY, 0x03) => {
            let v = *params.first().ok_or_else(|| short("Battery", payload))?;
            Ok(Report::Points(if v == 0xff {
                vec![Point::new("battery_low", Value::Bool(true))]
            } else if v <= 100 {
                vec![
                    Point::new("battery", Value::Int(i64::from(v))).with_unit("%"),
                    Point::new("battery_low", Value::Bool(false)),
                ]
            } else {
                return Err(CcError::Invalid {
                    cc: "Battery",
                    detail: "level above 100",
                });
            }))
        }
        (MANUFACTURER_SPECIFIC, 0x05) => match params {
            [m1, m2, t1, t2, p1, p2, ..] => Ok(Report::Manufacturer {
                manufacturer: u16::from_be_bytes([*m1, *m2]),
                product_type: u16::from_be_bytes([*t1, *t2]),
                product_id: u16::from_be_bytes([*p1, *p2]),
            }),
            _ => Err(short("Manufacturer Specific", payload)),
        },
        (VERSION, 0x12) => match params {
            [_lib, _proto, _sub, major, minor, ..] => {
                Ok(Report::Firmware(format!("{major}.{minor:02}")))
            }
            _ => Err(short("Version", payload)),
        },
        (WAKE_UP, 0x07) => Ok(Report::Awake),
        (THERMOSTAT_MODE, 0x03) => {
            let m = *params
                .first()
                .ok_or_else(|| short("Thermostat Mode", payload))?;
            Ok(Report::Points(vec![Point::new(
                "thermostat_mode",
                Value::Text(thermostat_mode(m & 0x1f).to_owned()),
            )]))
        }
        (THERMOSTAT_SETPOINT, 0x03) => {
            let cc = "Thermostat Setpoint";
            let (kind, pss, rest) = match params {
                [k, p, rest @ ..] => (*k & 0x0f, *p, rest),
                _ => return Err(short(cc, payload)),
            };
            let (v, scale, _) = scaled(cc, pss, rest)?;
            let name = match kind {
                1 => "heating_setpoint".to_owned(),
                2 => "cooling_setpoint".to_owned(),
                other => format!("setpoint_{other}"),
            };
            let unit = if scale == 1 { "°F" } else { "°C" };
            Ok(Report::Points(vec![
                Point::new(name, Value::Float(round(v))).with_unit(unit),
            ]))
        }
        (DOOR_LOCK, 0x03) => {
            let mode = *params.first().ok_or_else(|| short("Door Lock", payload))?;
            let state = match mode {
                0x00 => "unsecured",
                0x01 | 0x10 | 0x11 | 0x20 | 0x21 => "unsecured_with_timeout",
                0xff => "secured",
                0xfe => "unknown",
                _ => {
                    return Err(CcError::Invalid {
                        cc: "Door Lock",
                        detail: "unknown door lock mode",
                    });
                }
            };
            Ok(Report::Points(vec![
                Point::new("locked", Value::Bool(mode == 0xff)),
                Point::new("lock_mode", Value::Text(state.to_owned())),
            ]))
        }
        (CENTRAL_SCENE, 0x03) => match params {
            [_seq, attr, scene, ..] => Ok(Report::Points(vec![Point::new(
                format!("scene_{scene}"),
                Value::Text(scene_action(attr & 0x07).to_owned()),
            )])),
            _ => Err(short("Central Scene", payload)),
        },
        (CONFIGURATION, 0x06) => match params {
            [param, size, rest @ ..] => {
                let (v, _, _) = scaled("Configuration", *size & 0x07, rest)?;
                Ok(Report::Points(vec![Point::new(
                    format!("config_{param}"),
                    Value::Int(v as i64),
                )]))
            }
            _ => Err(short("Configuration", payload)),
        },
        (SECURITY_0 | SECURITY_2, _) => Ok(Report::Encrypted { cc }),
        _ => Ok(Report::Unhandled { cc, command: cmd }),
    }
}

fn level(name: &str, cc: &'static str, params: &[u8]) -> Result<Report, CcError> {
    let v = *params.first().ok_or(CcError::Short { cc, len: 2 })?;
    Ok(Report::Points(match v {
        0..=99 => vec![Point::new(name, Value::Int(i64::from(v)))],
        0xff => vec![Point::new(name, Value::Int(99))],
        0xfe => Vec::new(),
        _ => {
            return Err(CcError::Invalid {
                cc,
                detail: "level outside 0–99, 0xFE and 0xFF",
            });
        }
    }))
}

fn thermostat_mode(m: u8) -> &'static str {
    match m {
        0 => "off",
        1 => "heat",
        2 => "cool",
        3 => "auto",
        4 => "auxiliary",
        5 => "resume",
        6 => "fan",
        7 => "furnace",
        8 => "dry",
        9 => "moist",
        10 => "auto_changeover",
        11 => "energy_heat",
        12 => "energy_cool",
        13 => "away",
        15 => "full_power",
        31 => "manufacturer_specific",
        _ => "unknown",
    }
}

fn scene_action(attr: u8) -> &'static str {
    match attr {
        0 => "pressed",
        1 => "released",
        2 => "held",
        3 => "pressed_2x",
        4 => "pressed_3x",
        5 => "pressed_4x",
        6 => "pressed_5x",
        _ => "unknown",
    }
}

fn binary_sensor_name(kind: u8) -> &'static str {
    match kind {
        2 => "smoke",
        3 => "co_alarm",
        4 => "co2_alarm",
        5 => "heat_alarm",
        6 => "water_leak",
        7 => "freeze",
        8 => "tamper",
        10 => "door_open",
        11 => "tilt",
        12 => "motion",
        13 => "glass_break",
        _ => "sensor",
    }
}

/// `precision(3) scale(2) size(3)` then a big-endian signed value of `size` bytes (1, 2 or 4).
fn scaled(cc: &'static str, pss: u8, bytes: &[u8]) -> Result<(f64, u8, usize), CcError> {
    let precision = i32::from(pss >> 5);
    let scale = (pss >> 3) & 0x03;
    let size = usize::from(pss & 0x07);
    let raw = bytes.get(..size).ok_or(CcError::Short {
        cc,
        len: bytes.len(),
    })?;
    let v: i64 = match raw {
        [a] => i64::from(i8::from_be_bytes([*a])),
        [a, b] => i64::from(i16::from_be_bytes([*a, *b])),
        [a, b, c, d] => i64::from(i32::from_be_bytes([*a, *b, *c, *d])),
        _ => {
            return Err(CcError::Invalid {
                cc,
                detail: "value size is not 1, 2 or 4",
            });
        }
    };
    Ok((v as f64 / 10f64.powi(precision), scale, size))
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Multilevel sensor types Warden names, with their units by scale.
fn sensor(kind: u8, scale: u8) -> Option<(&'static str, &'static str)> {
    let units: &[&str] = match kind {
        1 | 11 | 23 | 24 => &["°C", "°F"],
        2 => &["%", ""],
        3 => &["%", "lx"],
        4 => &["W", "Btu/h"],
        5 => &["%", "g/m³"],
        8 | 9 => &["kPa", "inHg"],
        15 => &["V", "mV"],
        16 => &["A", "mA"],
        17 => &["ppm"],
        27 => &[""],
        _ => return None,
    };
    let name = match kind {
        1 => "temperature",
        2 => "general",
        3 => "illuminance",
        4 => "power",
        5 => "humidity",
        8 => "atmospheric_pressure",
        9 => "pressure",
        11 => "dew_point",
        15 => "voltage",
        16 => "current",
        17 => "co2",
        23 => "water_temperature",
        24 => "soil_temperature",
        27 => "uv_index",
        _ => return None,
    };
    units
        .get(usize::from(scale))
        .map(|u| (name, *u))
        .or(Some((name, "")))
}

fn multilevel_sensor(params: &[u8]) -> Result<Report, CcError> {
    let cc = "Multilevel Sensor";
    let (kind, pss, rest) = match params {
        [k, p, rest @ ..] => (*k, *p, rest),
        _ => {
            return Err(CcError::Short {
                cc,
                len: params.len() + 2,
            });
        }
    };
    let (v, scale, _) = scaled(cc, pss, rest)?;
    let point = match sensor(kind, scale) {
        Some((name, unit)) => {
            let p = Point::new(name, Value::Float(round(v)));
            if unit.is_empty() {
                p
            } else {
                p.with_unit(unit)
            }
        }
        None => Point::new(format!("sensor_{kind}_{scale}"), Value::Float(round(v))),
    };
    Ok(Report::Points(vec![point]))
}

fn meter(params: &[u8]) -> Result<Report, CcError> {
    let cc = "Meter";
    let (t, pss, rest) = match params {
        [t, p, rest @ ..] => (*t, *p, rest),
        _ => {
            return Err(CcError::Short {
                cc,
                len: params.len() + 2,
            });
        }
    };
    let (v, scale_low, _) = scaled(cc, pss, rest)?;
    let scale = scale_low | ((t & 0x80) >> 5);
    let kind = t & 0x1f;
    let (name, unit) = match (kind, scale) {
        (1, 0) => ("energy", "kWh"),
        (1, 1) => ("apparent_energy", "kVAh"),
        (1, 2) => ("power", "W"),
        (1, 3) => ("pulses", ""),
        (1, 4) => ("voltage", "V"),
        (1, 5) => ("current", "A"),
        (1, 6) => ("power_factor", ""),
        (2, 0) => ("gas", "m³"),
        (3, 0) => ("water", "m³"),
        _ => {
            return Ok(Report::Points(vec![Point::new(
                format!("meter_{kind}_{scale}"),
                Value::Float(round(v)),
            )]));
        }
    };
    let p = Point::new(name, Value::Float(round(v)));
    Ok(Report::Points(vec![if unit.is_empty() {
        p
    } else {
        p.with_unit(unit)
    }]))
}

fn notification(params: &[u8]) -> Result<Report, CcError> {
    let cc = "Notification";
    // v1 alarm type, v1 alarm level, reserved, status, type, event, …
    let (kind, event) = match params {
        [_, _, _, _, kind, event, ..] => (*kind, *event),
        [alarm_type, level] | [alarm_type, level, ..] => {
            return Ok(Report::Points(vec![Point::new(
                format!("alarm_{alarm_type}"),
                Value::Int(i64::from(*level)),
            )]));
        }
        _ => {
            return Err(CcError::Short {
                cc,
                len: params.len() + 2,
            });
        }
    };
    let points = match (kind, event) {
        (6, 22) => vec![Point::new("door_open", Value::Bool(true))],
        (6, 23) => vec![Point::new("door_open", Value::Bool(false))],
        (7, 7 | 8) => vec![Point::new("motion", Value::Bool(true))],
        (7, 3) => vec![Point::new("tamper", Value::Bool(true))],
        (7, 0) => vec![Point::new("motion", Value::Bool(false))],
        (5, 1 | 2) => vec![Point::new("water_leak", Value::Bool(true))],
        (5, 0) => vec![Point::new("water_leak", Value::Bool(false))],
        (1, 1 | 2) => vec![Point::new("smoke", Value::Bool(true))],
        (1, 0) => vec![Point::new("smoke", Value::Bool(false))],
        _ => vec![Point::new(
            format!("notification_{kind}"),
            Value::Int(i64::from(event)),
        )],
    };
    Ok(Report::Points(points))
}

/// Why a command cannot be sent to a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(
        "unknown command `{0}` (known: turn_on, turn_off, set_level level=0..99, lock, unlock, set_setpoint value=…, set_mode mode=…, set_config parameter=… value=…, refresh)"
    )]
    Unknown(String),
    #[error("`{0}` needs the argument `{1}`")]
    Missing(&'static str, &'static str),
    #[error("`{name}`: {detail}")]
    Invalid { name: &'static str, detail: String },
    #[error("the node supports none of the command classes `{0}` needs")]
    Unsupported(&'static str),
}

fn no_args(c: &Command, name: &'static str) -> Result<(), CommandError> {
    match c.args.first() {
        Some(a) => Err(CommandError::Invalid {
            name,
            detail: format!("takes no arguments (got `{}`)", a.name),
        }),
        None => Ok(()),
    }
}

/// A finite number argument `arg` of command `name`.
fn number(c: &Command, name: &'static str, arg: &'static str) -> Result<f64, CommandError> {
    let a = c
        .args
        .iter()
        .find(|a| a.name == arg)
        .ok_or(CommandError::Missing(name, arg))?;
    let v = match &a.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Text(t) => t.trim().parse::<f64>().map_err(|_| CommandError::Invalid {
            name,
            detail: format!("`{arg}` must be a number"),
        })?,
        other => {
            return Err(CommandError::Invalid {
                name,
                detail: format!("`{arg}` must be a number, not {}", other.type_name()),
            });
        }
    };
    if !v.is_finite() {
        return Err(CommandError::Invalid {
            name,
            detail: format!("`{arg}` must be finite"),
        });
    }
    Ok(v)
}

/// The command-class payload for `c`, given the node's supported command classes.
pub fn command(c: &Command, supported: &[u8]) -> Result<Vec<u8>, CommandError> {
    let has = |cc| supported.contains(&cc);
    match c.name.as_str() {
        "turn_on" | "turn_off" => {
            let v = if c.name == "turn_on" { 0xff } else { 0x00 };
            if let Some(a) = c.args.first() {
                return Err(CommandError::Invalid {
                    name: "turn_on/turn_off",
                    detail: format!("takes no arguments (got `{}`)", a.name),
                });
            }
            if has(BINARY_SWITCH) {
                Ok(vec![BINARY_SWITCH, 0x01, v])
            } else if has(MULTILEVEL_SWITCH) {
                Ok(vec![MULTILEVEL_SWITCH, 0x01, v])
            } else if has(BASIC) {
                Ok(vec![BASIC, 0x01, v])
            } else {
                Err(CommandError::Unsupported("turn_on/turn_off"))
            }
        }
        "set_level" => {
            let arg = c
                .args
                .iter()
                .find(|a| a.name == "level")
                .ok_or(CommandError::Missing("set_level", "level"))?;
            if let Some(other) = c.args.iter().find(|a| a.name != "level") {
                return Err(CommandError::Invalid {
                    name: "set_level",
                    detail: format!("unknown argument `{}`", other.name),
                });
            }
            let level = match &arg.value {
                Value::Int(i) => *i,
                Value::Float(f) if f.fract() == 0.0 && f.is_finite() => *f as i64,
                other => {
                    return Err(CommandError::Invalid {
                        name: "set_level",
                        detail: format!("`level` must be an integer, not {}", other.type_name()),
                    });
                }
            };
            let level = u8::try_from(level)
                .ok()
                .filter(|l| *l <= 99)
                .ok_or_else(|| CommandError::Invalid {
                    name: "set_level",
                    detail: format!("`level` {level} is outside 0..=99"),
                })?;
            if has(MULTILEVEL_SWITCH) {
                Ok(vec![MULTILEVEL_SWITCH, 0x01, level])
            } else if has(BASIC) {
                Ok(vec![BASIC, 0x01, level])
            } else {
                Err(CommandError::Unsupported("set_level"))
            }
        }
        "refresh" => {
            if has(MULTILEVEL_SENSOR) {
                Ok(vec![MULTILEVEL_SENSOR, 0x04])
            } else if has(BINARY_SWITCH) {
                Ok(vec![BINARY_SWITCH, 0x02])
            } else if has(MULTILEVEL_SWITCH) {
                Ok(vec![MULTILEVEL_SWITCH, 0x02])
            } else if has(BASIC) {
                Ok(vec![BASIC, 0x02])
            } else {
                Err(CommandError::Unsupported("refresh"))
            }
        }
        "lock" | "unlock" => {
            no_args(c, "lock/unlock")?;
            if !has(DOOR_LOCK) {
                return Err(CommandError::Unsupported("lock/unlock"));
            }
            Ok(vec![
                DOOR_LOCK,
                0x01,
                if c.name == "lock" { 0xff } else { 0x00 },
            ])
        }
        "set_setpoint" => {
            if !has(THERMOSTAT_SETPOINT) {
                return Err(CommandError::Unsupported("set_setpoint"));
            }
            let v = number(c, "set_setpoint", "value")?;
            if !(-50.0..=100.0).contains(&v) {
                return Err(CommandError::Invalid {
                    name: "set_setpoint",
                    detail: format!("`value` {v} °C is outside -50..=100"),
                });
            }
            // Heating setpoint, °C, one decimal, two bytes.
            let raw = (v * 10.0).round() as i16;
            let [a, b] = raw.to_be_bytes();
            Ok(vec![THERMOSTAT_SETPOINT, 0x01, 0x01, 0x22, a, b])
        }
        "set_mode" => {
            if !has(THERMOSTAT_MODE) {
                return Err(CommandError::Unsupported("set_mode"));
            }
            let arg = c
                .args
                .iter()
                .find(|a| a.name == "mode")
                .ok_or(CommandError::Missing("set_mode", "mode"))?;
            let Value::Text(t) = &arg.value else {
                return Err(CommandError::Invalid {
                    name: "set_mode",
                    detail: "`mode` must be text (off, heat, cool, auto, …)".into(),
                });
            };
            let m = (0u8..=31)
                .find(|m| thermostat_mode(*m) == t && t != "unknown")
                .ok_or_else(|| CommandError::Invalid {
                    name: "set_mode",
                    detail: format!("unknown mode `{}`", t.chars().take(32).collect::<String>()),
                })?;
            Ok(vec![THERMOSTAT_MODE, 0x01, m])
        }
        "set_config" => {
            if !has(CONFIGURATION) {
                return Err(CommandError::Unsupported("set_config"));
            }
            let p = number(c, "set_config", "parameter")?;
            let v = number(c, "set_config", "value")?;
            let param = u8::try_from(p as i64)
                .ok()
                .filter(|_| p.fract() == 0.0 && p >= 1.0)
                .ok_or_else(|| CommandError::Invalid {
                    name: "set_config",
                    detail: format!("`parameter` {p} is outside 1..=255"),
                })?;
            if v.fract() != 0.0 || !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&v) {
                return Err(CommandError::Invalid {
                    name: "set_config",
                    detail: format!("`value` {v} is not a 32-bit integer"),
                });
            }
            let [a, b, cc_, d] = (v as i32).to_be_bytes();
            Ok(vec![CONFIGURATION, 0x04, param, 0x04, a, b, cc_, d])
        }
        other => Err(CommandError::Unknown(other.chars().take(64).collect())),
    }
}

/// Supervision (0x6C): a Set wrapped in a Supervision Get makes the node report whether it did it.
pub mod supervision {
    use super::SUPERVISION;

    pub const GET: u8 = 0x01;
    pub const REPORT: u8 = 0x02;

    /// What a node says it did with a supervised command.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Status {
        /// The node does not support the command it was sent.
        NoSupport,
        /// Started; more reports may follow (`duration` seconds left, if known).
        Working,
        Fail,
        Success,
        /// A status byte the specification does not define.
        Other(u8),
    }

    impl Status {
        pub fn from_byte(b: u8) -> Self {
            match b {
                0x00 => Self::NoSupport,
                0x01 => Self::Working,
                0x02 => Self::Fail,
                0xff => Self::Success,
                other => Self::Other(other),
            }
        }

        pub fn as_str(self) -> &'static str {
            match self {
                Self::NoSupport => "no-support",
                Self::Working => "working",
                Self::Fail => "fail",
                Self::Success => "success",
                Self::Other(_) => "unknown",
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Report {
        pub session: u8,
        pub more_follow: bool,
        pub status: Status,
        /// The Z-Wave duration byte as seconds (None: unknown or not given).
        pub duration_s: Option<u32>,
    }

    /// Supervision Get around `inner` (session id 0..63, no status updates asked).
    pub fn get(session: u8, inner: &[u8]) -> Option<Vec<u8>> {
        let len = u8::try_from(inner.len()).ok()?;
        let mut v = Vec::with_capacity(inner.len() + 4);
        v.extend_from_slice(&[SUPERVISION, GET, session & 0x3f, len]);
        v.extend_from_slice(inner);
        Some(v)
    }

    /// A Supervision Get from a node: (session, the command inside), checked against its length.
    pub fn parse_get(p: &[u8]) -> Option<(u8, &[u8])> {
        match p {
            [SUPERVISION, GET, flags, len, rest @ ..] => rest
                .get(..usize::from(*len))
                .map(|inner| (flags & 0x3f, inner)),
            _ => None,
        }
    }

    /// Supervision Report: `status` for `session`.
    pub fn report(session: u8, status: u8) -> Vec<u8> {
        vec![SUPERVISION, REPORT, session & 0x3f, status, 0x00]
    }

    pub fn parse_report(p: &[u8]) -> Option<Report> {
        match p {
            [SUPERVISION, REPORT, flags, status, rest @ ..] => Some(Report {
                session: flags & 0x3f,
                more_follow: flags & 0x80 != 0,
                status: Status::from_byte(*status),
                duration_s: rest.first().and_then(|d| duration(*d)),
            }),
            _ => None,
        }
    }

    /// The Z-Wave duration encoding: 0x00..0x7f seconds, 0x80..0xfd minutes (1..126), 0xfe unknown.
    fn duration(b: u8) -> Option<u32> {
        match b {
            0x00..=0x7f => Some(u32::from(b)),
            0x80..=0xfd => Some((u32::from(b) - 0x7f) * 60),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn get_and_report_round_trip_and_truncations_are_refused() {
            let g = get(0x45, &[0x25, 0x01, 0xff]).unwrap_or_default();
            assert_eq!(g, vec![0x6c, 0x01, 0x05, 0x03, 0x25, 0x01, 0xff]);
            assert_eq!(parse_get(&g), Some((0x05, &[0x25u8, 0x01, 0xff][..])));
            assert_eq!(
                parse_get(g.get(..6).unwrap_or_default()),
                None,
                "inner shorter than its length byte"
            );
            assert_eq!(get(1, &[0u8; 256]), None);
            let r = parse_report(&[0x6c, 0x02, 0x85, 0x01, 0x81]).unwrap_or(Report {
                session: 0,
                more_follow: false,
                status: Status::Other(9),
                duration_s: None,
            });
            assert_eq!(r.session, 5);
            assert!(r.more_follow);
            assert_eq!(r.status, Status::Working);
            assert_eq!(r.duration_s, Some(120));
            let r = parse_report(&report(7, 0xff));
            assert_eq!(r.map(|r| (r.session, r.status)), Some((7, Status::Success)));
            assert_eq!(parse_report(&[0x6c, 0x02, 0x01]), None);
            assert_eq!(Status::from_byte(0x02), Status::Fail);
            assert_eq!(Status::from_byte(0x00).as_str(), "no-support");
            assert_eq!(Status::from_byte(0x33), Status::Other(0x33));
            assert_eq!(duration(0xfe), None);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn points(r: Report) -> Vec<Point> {
        match r {
            Report::Points(p) => p,
            other => panic!("not points: {other:?}"),
        }
    }

    #[test]
    fn the_guides_sensor_report_is_21_5_degrees() {
        let p = points(decode(&[0x31, 0x05, 0x01, 0x22, 0x00, 0xd7]).unwrap());
        assert_eq!(
            p,
            vec![Point::new("temperature", Value::Float(21.5)).with_unit("°C")]
        );
        // Negative, 4 bytes, precision 2, °F.
        let p = points(decode(&[0x31, 0x05, 0x01, 0x4c, 0xff, 0xff, 0xfc, 0x18]).unwrap());
        assert_eq!(
            p,
            vec![Point::new("temperature", Value::Float(-10.0)).with_unit("°F")]
        );
    }

    #[test]
    fn switch_meter_battery_and_notification_reports() {
        assert_eq!(
            points(decode(&[0x25, 0x03, 0xff]).unwrap()),
            vec![Point::new("switch", Value::Bool(true))]
        );
        assert!(points(decode(&[0x25, 0x03, 0xfe]).unwrap()).is_empty());
        // Electric meter, scale 2 (W), precision 1, size 2: 123.4 W.
        assert_eq!(
            points(decode(&[0x32, 0x02, 0x21, 0x32, 0x04, 0xd2]).unwrap()),
            vec![Point::new("power", Value::Float(123.4)).with_unit("W")]
        );
        // Scale bit 2 in the type byte: scale 4 (V).
        assert_eq!(
            points(decode(&[0x32, 0x02, 0xa1, 0x21, 0x0e, 0x6]).unwrap())[0].name,
            "voltage"
        );
        assert_eq!(points(decode(&[0x80, 0x03, 0x55]).unwrap()).len(), 2);
        assert!(decode(&[0x80, 0x03, 0x65]).is_err());
        assert_eq!(
            points(decode(&[0x71, 0x05, 0, 0, 0, 0xff, 0x06, 0x16]).unwrap()),
            vec![Point::new("door_open", Value::Bool(true))]
        );
    }

    #[test]
    fn truncated_and_odd_sizes_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0x31],
            &[0x31, 0x05],
            &[0x31, 0x05, 0x01],
            &[0x31, 0x05, 0x01, 0x22, 0x00],
            &[0x31, 0x05, 0x01, 0x23, 0, 0, 0],
            &[0x32, 0x02, 0x21],
            &[0x72, 0x05, 0, 1],
            &[0x26, 0x03, 0x70],
        ] {
            assert!(decode(bad).is_err(), "{bad:x?}");
        }
        assert_eq!(
            decode(&[0x5e, 0x02]).unwrap(),
            Report::Unhandled {
                cc: 0x5e,
                command: 2
            }
        );
        assert_eq!(
            decode(&[0x9f, 0x03, 1, 2, 3]).unwrap(),
            Report::Encrypted { cc: 0x9f }
        );
    }

    #[test]
    fn commands_pick_the_command_class_the_node_supports_and_check_ranges() {
        let on = Command {
            name: "turn_on".into(),
            args: vec![],
        };
        assert_eq!(command(&on, &[0x25, 0x72]).unwrap(), vec![0x25, 0x01, 0xff]);
        assert_eq!(command(&on, &[0x26]).unwrap(), vec![0x26, 0x01, 0xff]);
        assert!(matches!(
            command(&on, &[0x31]),
            Err(CommandError::Unsupported(_))
        ));
        let lvl = |v: Value| Command {
            name: "set_level".into(),
            args: vec![Point::new("level", v)],
        };
        assert_eq!(
            command(&lvl(Value::Int(42)), &[0x26]).unwrap(),
            vec![0x26, 0x01, 42]
        );
        assert!(command(&lvl(Value::Int(100)), &[0x26]).is_err());
        assert!(command(&lvl(Value::Int(-1)), &[0x26]).is_err());
        assert!(command(&lvl(Value::Text("x".into())), &[0x26]).is_err());
        assert!(matches!(
            command(
                &Command {
                    name: "explode".into(),
                    args: vec![]
                },
                &[0x25]
            ),
            Err(CommandError::Unknown(_))
        ));
    }
}
