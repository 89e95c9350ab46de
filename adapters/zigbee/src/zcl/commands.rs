//! Operator commands by name (`turn_on`, `set_level`, `set_color_temp`, `write_attribute`, …):
//! check the arguments and turn them into a ZCL request (cluster, frame type, command id, payload).
//! The adapter adds the header with its own transaction sequence number.

use thiserror::Error;

use crate::zcl::clusters::ClusterCommand;
use crate::zcl::error::EncodeError;
use crate::zcl::frame::{FrameType, ZclHeader, encode_frame};
use crate::zcl::global::{self, cmd};
use crate::zcl::normalise::{Conv, Override, PointDef, apply_scale, point};
use crate::zcl::types::{ValueKind, ZclValue};

/// Longest name echoed back in an error (operator input is bounded before it is logged).
const MAX_ECHO: usize = 48;

/// An argument value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    Num(f64),
    Bool(bool),
    Text(&'a str),
}

/// A request ready for a ZCL header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZclRequest {
    pub cluster: u16,
    pub frame_type: FrameType,
    pub command: u8,
    /// The payload after the ZCL header.
    pub payload: Vec<u8>,
}

impl ZclRequest {
    /// Header (client to server, no manufacturer code) + payload.
    pub fn frame(&self, tsn: u8, disable_default_response: bool) -> Vec<u8> {
        let header = ZclHeader {
            frame_type: self.frame_type,
            disable_default_response,
            ..ZclHeader::global(tsn, self.command)
        };
        encode_frame(&header, &self.payload)
    }

    fn cluster_command(c: ClusterCommand) -> Self {
        Self {
            cluster: c.cluster(),
            frame_type: FrameType::ClusterSpecific,
            command: c.command_id(),
            payload: c.payload(),
        }
    }
}

/// Why an operator command was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CommandError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("unknown argument {0:?}")]
    UnknownArgument(String),
    #[error("missing argument {0}")]
    MissingArgument(&'static str),
    #[error("argument {0} has the wrong type")]
    WrongType(&'static str),
    #[error("argument {arg} out of range ({range})")]
    OutOfRange {
        arg: &'static str,
        range: &'static str,
    },
    #[error("unknown point {0:?}")]
    UnknownPoint(String),
    #[error("point {0} is not writable")]
    NotWritable(&'static str),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl CommandError {
    /// A short, stable label (for metrics and audit).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::UnknownCommand(_) => "unknown-command",
            Self::UnknownArgument(_) => "unknown-argument",
            Self::MissingArgument(_) => "missing-argument",
            Self::WrongType(_) => "wrong-type",
            Self::OutOfRange { .. } => "out-of-range",
            Self::UnknownPoint(_) => "unknown-point",
            Self::NotWritable(_) => "not-writable",
            Self::Encode(_) => "encode",
        }
    }
}

fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

/// The commands [`command`] knows.
pub const COMMANDS: &[&str] = &[
    "turn_on",
    "turn_off",
    "toggle",
    "set_level",
    "set_color_temp",
    "set_color_xy",
    "set_hue_sat",
    "write_attribute",
];

struct Args<'a, 'b> {
    args: &'b [(&'b str, Arg<'a>)],
}

impl<'a> Args<'a, '_> {
    /// Refuse arguments outside `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), CommandError> {
        match self.args.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(CommandError::UnknownArgument(echo(k))),
            None => Ok(()),
        }
    }
    fn get(&self, name: &str) -> Option<Arg<'a>> {
        self.args.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
    fn num(&self, name: &'static str) -> Result<Option<f64>, CommandError> {
        match self.get(name) {
            None => Ok(None),
            Some(Arg::Num(v)) if v.is_finite() => Ok(Some(v)),
            Some(Arg::Num(_)) => Err(CommandError::OutOfRange {
                arg: name,
                range: "finite",
            }),
            Some(_) => Err(CommandError::WrongType(name)),
        }
    }
    /// A required number in `lo..=hi`.
    fn ranged(
        &self,
        name: &'static str,
        lo: f64,
        hi: f64,
        range: &'static str,
    ) -> Result<f64, CommandError> {
        let v = self.num(name)?.ok_or(CommandError::MissingArgument(name))?;
        check_range(name, v, lo, hi, range)
    }
    /// `transition_s` in tenths of a second (default 0).
    fn transition(&self) -> Result<u16, CommandError> {
        match self.num("transition_s")? {
            None => Ok(0),
            Some(t) => {
                let t = check_range("transition_s", t, 0.0, 6553.4, "0..6553.4")?;
                Ok((t * 10.0).round() as u16)
            }
        }
    }
}

fn check_range(
    arg: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    range: &'static str,
) -> Result<f64, CommandError> {
    if v < lo || v > hi {
        Err(CommandError::OutOfRange { arg, range })
    } else {
        Ok(v)
    }
}

/// Build the request for an operator command. Arguments:
/// - `turn_on`, `turn_off`, `toggle`: none.
/// - `set_level`: `level` (0-100 %), optional `transition_s`. Sent as Move to Level (with On/Off).
/// - `set_color_temp`: `mireds` (1-65279) or `kelvin` (16-1000000), optional `transition_s`.
/// - `set_color_xy`: `x`, `y` (0-1), optional `transition_s`.
/// - `set_hue_sat`: `hue` (0-360 degrees), `saturation` (0-100 %), optional `transition_s`.
/// - `write_attribute`: `point` (a writable point name), `value`.
pub fn command(name: &str, args: &[(&str, Arg<'_>)]) -> Result<ZclRequest, CommandError> {
    command_with(name, args, &[])
}

/// [`command`] with per-model overrides (used by `write_attribute`).
pub fn command_with(
    name: &str,
    args: &[(&str, Arg<'_>)],
    overrides: &[Override],
) -> Result<ZclRequest, CommandError> {
    let a = Args { args };
    let c = match name {
        "turn_on" | "turn_off" | "toggle" => {
            a.only(&[])?;
            match name {
                "turn_on" => ClusterCommand::On,
                "turn_off" => ClusterCommand::Off,
                _ => ClusterCommand::Toggle,
            }
        }
        "set_level" => {
            a.only(&["level", "transition_s"])?;
            let pct = a.ranged("level", 0.0, 100.0, "0..100")?;
            ClusterCommand::MoveToLevel {
                level: (pct * 254.0 / 100.0).round() as u8,
                transition: a.transition()?,
                with_on_off: true,
            }
        }
        "set_color_temp" => {
            a.only(&["mireds", "kelvin", "transition_s"])?;
            let mireds = match (a.num("mireds")?, a.num("kelvin")?) {
                (Some(m), None) => check_range("mireds", m, 1.0, 65279.0, "1..65279")?,
                (None, Some(k)) => {
                    let k = check_range("kelvin", k, 16.0, 1_000_000.0, "16..1000000")?;
                    1_000_000.0 / k
                }
                (Some(_), Some(_)) => return Err(CommandError::UnknownArgument("kelvin".into())),
                (None, None) => return Err(CommandError::MissingArgument("mireds")),
            };
            ClusterCommand::MoveToColorTemp {
                mireds: mireds.round().clamp(1.0, 65279.0) as u16,
                transition: a.transition()?,
            }
        }
        "set_color_xy" => {
            a.only(&["x", "y", "transition_s"])?;
            let x = a.ranged("x", 0.0, 1.0, "0..1")?;
            let y = a.ranged("y", 0.0, 1.0, "0..1")?;
            let scale = |v: f64| (v * 65536.0).round().min(65279.0) as u16;
            ClusterCommand::MoveToColorXy {
                x: scale(x),
                y: scale(y),
                transition: a.transition()?,
            }
        }
        "set_hue_sat" => {
            a.only(&["hue", "saturation", "transition_s"])?;
            let hue = a.ranged("hue", 0.0, 360.0, "0..360")?;
            let sat = a.ranged("saturation", 0.0, 100.0, "0..100")?;
            ClusterCommand::MoveToHueSaturation {
                hue: (hue * 254.0 / 360.0).round() as u8,
                saturation: (sat * 254.0 / 100.0).round() as u8,
                transition: a.transition()?,
            }
        }
        "write_attribute" => {
            a.only(&["point", "value"])?;
            let p = match a.get("point") {
                Some(Arg::Text(p)) => p,
                Some(_) => return Err(CommandError::WrongType("point")),
                None => return Err(CommandError::MissingArgument("point")),
            };
            let v = a
                .get("value")
                .ok_or(CommandError::MissingArgument("value"))?;
            return write_point(p, v, overrides);
        }
        other => return Err(CommandError::UnknownCommand(echo(other))),
    };
    Ok(ZclRequest::cluster_command(c))
}

/// Resolve a point name, honouring overrides that rename a table row.
fn resolve<'o>(
    name: &str,
    overrides: &'o [Override],
) -> Result<(&'static PointDef, Option<&'o Override>), CommandError> {
    let renamed = overrides.iter().find_map(|o| {
        (o.name.as_deref() == Some(name))
            .then(|| crate::zcl::normalise::lookup(o.cluster, o.attr).map(|p| (p, o)))
            .flatten()
    });
    if let Some((p, o)) = renamed {
        return Ok((p, Some(o)));
    }
    let p = point(name).ok_or_else(|| CommandError::UnknownPoint(echo(name)))?;
    let o = overrides
        .iter()
        .find(|o| o.cluster == p.cluster && o.attr == p.attr);
    Ok((p, o))
}

/// The raw ZCL value for writing `value` to a point (inverse of its normalisation).
pub fn point_value(
    p: &'static PointDef,
    value: Arg<'_>,
    ov: Option<&Override>,
) -> Result<ZclValue, CommandError> {
    let ty = p.data_type;
    let raw = match (p.conv, value, ov.and_then(|o| o.scale)) {
        (Conv::Bool | Conv::Bit0, Arg::Bool(b), None) => return Ok(ZclValue::Bool(b)),
        (Conv::Enum(names), Arg::Text(t), None) => names
            .iter()
            .find(|(_, n)| *n == t)
            .map(|(k, _)| *k as f64)
            .ok_or(CommandError::OutOfRange {
                arg: "value",
                range: "a known mode",
            })?,
        (_, Arg::Num(v), _) if !v.is_finite() => {
            return Err(CommandError::OutOfRange {
                arg: "value",
                range: "finite",
            });
        }
        (_, Arg::Num(v), Some(scale)) => (v / apply_scale(1.0, scale)).round(),
        (Conv::Div(d), Arg::Num(v), None) => (v * d).round(),
        (Conv::Percent254, Arg::Num(v), None) => {
            (check_range("value", v, 0.0, 100.0, "0..100")? * 254.0 / 100.0).round()
        }
        (Conv::Int | Conv::Enum(_), Arg::Num(v), None) => v.round(),
        _ => return Err(CommandError::WrongType("value")),
    };
    let out_of_range = CommandError::OutOfRange {
        arg: "value",
        range: "the attribute's data type",
    };
    let v = match ty.kind() {
        ValueKind::Signed => ZclValue::Signed(ty, raw as i64),
        ValueKind::Unsigned if raw >= 0.0 => ZclValue::Unsigned(ty, raw as u64),
        _ => return Err(out_of_range),
    };
    // Range-check against the type's width now, not when the frame is built.
    v.encode(&mut Vec::new()).map_err(|_| out_of_range)?;
    Ok(v)
}

/// Write Attributes request for one writable point.
pub fn write_point(
    name: &str,
    value: Arg<'_>,
    overrides: &[Override],
) -> Result<ZclRequest, CommandError> {
    let (p, ov) = resolve(name, overrides)?;
    if !p.writable {
        return Err(CommandError::NotWritable(p.name));
    }
    let v = point_value(p, value, ov)?;
    Ok(ZclRequest {
        cluster: p.cluster,
        frame_type: FrameType::Global,
        command: cmd::WRITE_ATTRIBUTES,
        payload: global::encode_write_attributes(&[(p.attr, v)])?,
    })
}

/// Read Attributes requests for named points, one per cluster, in first-seen order.
pub fn read_points(
    names: &[&str],
    overrides: &[Override],
) -> Result<Vec<ZclRequest>, CommandError> {
    let mut groups: Vec<(u16, Vec<u16>)> = Vec::new();
    for n in names {
        let (p, _) = resolve(n, overrides)?;
        match groups.iter_mut().find(|(c, _)| *c == p.cluster) {
            Some((_, attrs)) => {
                if !attrs.contains(&p.attr) {
                    attrs.push(p.attr);
                }
            }
            None => groups.push((p.cluster, vec![p.attr])),
        }
    }
    groups
        .into_iter()
        .map(|(cluster, attrs)| {
            Ok(ZclRequest {
                cluster,
                frame_type: FrameType::Global,
                command: cmd::READ_ATTRIBUTES,
                payload: global::encode_read_attributes(&attrs)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn ok(name: &str, args: &[(&str, Arg<'_>)]) -> ZclRequest {
        command(name, args).unwrap()
    }

    #[test]
    fn on_off() {
        let r = ok("turn_on", &[]);
        assert_eq!(
            (r.cluster, r.frame_type, r.command, r.payload.as_slice()),
            (0x0006, FrameType::ClusterSpecific, 1, &[][..])
        );
        assert_eq!(ok("turn_off", &[]).command, 0);
        assert_eq!(ok("toggle", &[]).command, 2);
        assert_eq!(ok("toggle", &[]).frame(7, false), [0x01, 7, 0x02]);
        assert_eq!(
            command("turn_on", &[("level", Arg::Num(1.0))]),
            Err(CommandError::UnknownArgument("level".into()))
        );
    }

    #[test]
    fn set_level() {
        let r = ok(
            "set_level",
            &[("level", Arg::Num(50.0)), ("transition_s", Arg::Num(1.5))],
        );
        assert_eq!((r.cluster, r.command), (0x0008, 0x04));
        assert_eq!(r.payload, [127, 15, 0]);
        assert_eq!(
            ok("set_level", &[("level", Arg::Num(100.0))]).payload,
            [254, 0, 0]
        );
        assert_eq!(
            command("set_level", &[]),
            Err(CommandError::MissingArgument("level"))
        );
        assert!(matches!(
            command("set_level", &[("level", Arg::Num(101.0))]),
            Err(CommandError::OutOfRange { arg: "level", .. })
        ));
        assert!(matches!(
            command("set_level", &[("level", Arg::Num(f64::NAN))]),
            Err(CommandError::OutOfRange { arg: "level", .. })
        ));
        assert_eq!(
            command("set_level", &[("level", Arg::Bool(true))]),
            Err(CommandError::WrongType("level"))
        );
        assert!(matches!(
            command(
                "set_level",
                &[("level", Arg::Num(1.0)), ("transition_s", Arg::Num(-1.0))]
            ),
            Err(CommandError::OutOfRange {
                arg: "transition_s",
                ..
            })
        ));
    }

    #[test]
    fn set_color_temp() {
        let r = ok("set_color_temp", &[("mireds", Arg::Num(370.0))]);
        assert_eq!((r.cluster, r.command), (0x0300, 0x0a));
        assert_eq!(r.payload, [0x72, 0x01, 0, 0]);
        let r = ok("set_color_temp", &[("kelvin", Arg::Num(2700.0))]);
        assert_eq!(r.payload, [0x72, 0x01, 0, 0]);
        assert_eq!(
            command("set_color_temp", &[]),
            Err(CommandError::MissingArgument("mireds"))
        );
        assert!(command("set_color_temp", &[("kelvin", Arg::Num(2.0))]).is_err());
    }

    #[test]
    fn set_color_xy() {
        let r = ok(
            "set_color_xy",
            &[
                ("x", Arg::Num(0.5)),
                ("y", Arg::Num(0.25)),
                ("transition_s", Arg::Num(0.1)),
            ],
        );
        assert_eq!((r.cluster, r.command), (0x0300, 0x07));
        assert_eq!(r.payload, [0x00, 0x80, 0x00, 0x40, 1, 0]);
        let r = ok(
            "set_color_xy",
            &[("x", Arg::Num(1.0)), ("y", Arg::Num(0.0))],
        );
        assert_eq!(r.payload, [0xff, 0xfe, 0, 0, 0, 0]);
        assert_eq!(
            command("set_color_xy", &[("x", Arg::Num(0.5))]),
            Err(CommandError::MissingArgument("y"))
        );
    }

    #[test]
    fn set_hue_sat() {
        let r = ok(
            "set_hue_sat",
            &[("hue", Arg::Num(180.0)), ("saturation", Arg::Num(100.0))],
        );
        assert_eq!((r.cluster, r.command), (0x0300, 0x06));
        assert_eq!(r.payload, [127, 254, 0, 0]);
        assert!(matches!(
            command(
                "set_hue_sat",
                &[("hue", Arg::Num(361.0)), ("saturation", Arg::Num(1.0))]
            ),
            Err(CommandError::OutOfRange { arg: "hue", .. })
        ));
    }

    #[test]
    fn unknown_command() {
        assert_eq!(
            command("explode", &[]),
            Err(CommandError::UnknownCommand("explode".into()))
        );
        let long = "x".repeat(1000);
        match command(&long, &[]) {
            Err(CommandError::UnknownCommand(s)) => assert_eq!(s.len(), MAX_ECHO),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn write_attribute() {
        let r = ok(
            "write_attribute",
            &[
                ("point", Arg::Text("heating_setpoint")),
                ("value", Arg::Num(21.5)),
            ],
        );
        assert_eq!(
            (r.cluster, r.frame_type, r.command),
            (0x0201, FrameType::Global, 0x02)
        );
        assert_eq!(r.payload, [0x12, 0x00, 0x29, 0x66, 0x08]);
        let r = ok(
            "write_attribute",
            &[
                ("point", Arg::Text("system_mode")),
                ("value", Arg::Text("heat")),
            ],
        );
        assert_eq!(r.payload, [0x1c, 0x00, 0x30, 0x04]);
        assert_eq!(
            command(
                "write_attribute",
                &[
                    ("point", Arg::Text("temperature")),
                    ("value", Arg::Num(1.0))
                ]
            ),
            Err(CommandError::NotWritable("temperature"))
        );
        assert_eq!(
            command(
                "write_attribute",
                &[("point", Arg::Text("nope")), ("value", Arg::Num(1.0))]
            ),
            Err(CommandError::UnknownPoint("nope".into()))
        );
        assert_eq!(
            command(
                "write_attribute",
                &[("point", Arg::Text("heating_setpoint"))]
            ),
            Err(CommandError::MissingArgument("value"))
        );
        assert!(matches!(
            command(
                "write_attribute",
                &[
                    ("point", Arg::Text("heating_setpoint")),
                    ("value", Arg::Num(400.0))
                ]
            ),
            Err(CommandError::OutOfRange { arg: "value", .. })
        ));
        assert!(matches!(
            command(
                "write_attribute",
                &[
                    ("point", Arg::Text("occupancy_timeout")),
                    ("value", Arg::Num(-1.0))
                ]
            ),
            Err(CommandError::OutOfRange { arg: "value", .. })
        ));
    }

    #[test]
    fn write_with_override_scale() {
        let ov = [Override {
            cluster: 0x0201,
            attr: 0x0012,
            scale: Some(0.1),
            name: Some("setpoint".into()),
            unit: None,
        }];
        let r = command_with(
            "write_attribute",
            &[("point", Arg::Text("setpoint")), ("value", Arg::Num(21.5))],
            &ov,
        )
        .unwrap();
        assert_eq!(r.payload, [0x12, 0x00, 0x29, 215, 0]);
    }

    #[test]
    fn read_points_grouped() {
        let r = read_points(&["temperature", "humidity", "motion", "tamper"], &[]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].cluster, 0x0402);
        assert_eq!(r[2].cluster, 0x0500);
        assert_eq!(r[2].payload, [0x02, 0x00]);
        assert_eq!(r[0].frame(1, false), [0x00, 1, 0x00, 0x00, 0x00]);
    }
}
