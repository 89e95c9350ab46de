//! Cayenne LPP decoder: `channel type value…` records into named points (`<type>_<channel>`, e.g.
//! `temperature_1`). Unknown types or truncated records are errors; nothing panics.

use warden_core::{Point, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LppError {
    #[error("unknown Cayenne LPP type {0} on channel {1}")]
    UnknownType(u8, u8),
    #[error("truncated Cayenne LPP record (type {0}, channel {1})")]
    Truncated(u8, u8),
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
}

fn sbe(b: &[u8]) -> i64 {
    let bits = 8 * b.len() as u32;
    let v = be(b);
    if bits == 0 || bits >= 64 {
        return v as i64;
    }
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn round(v: f64, decimals: i32) -> f64 {
    let m = 10f64.powi(decimals);
    (v * m).round() / m
}

/// Decodes a Cayenne LPP payload.
pub fn decode(mut b: &[u8]) -> Result<Vec<Point>, LppError> {
    let mut out = Vec::new();
    while let [ch, ty, rest @ ..] = b {
        let (ch, ty) = (*ch, *ty);
        let (name, len, unit): (&str, usize, Option<&str>) = match ty {
            0 => ("digital_input", 1, None),
            1 => ("digital_output", 1, None),
            2 => ("analog_input", 2, None),
            3 => ("analog_output", 2, None),
            100 => ("generic", 4, None),
            101 => ("illuminance", 2, Some("lx")),
            102 => ("presence", 1, None),
            103 => ("temperature", 2, Some("°C")),
            104 => ("humidity", 1, Some("%")),
            113 => ("accelerometer", 6, Some("g")),
            115 => ("barometer", 2, Some("hPa")),
            116 => ("voltage", 2, Some("V")),
            117 => ("current", 2, Some("A")),
            118 => ("frequency", 4, Some("Hz")),
            120 => ("percentage", 1, Some("%")),
            121 => ("altitude", 2, Some("m")),
            125 => ("concentration", 2, Some("ppm")),
            128 => ("power", 2, Some("W")),
            130 => ("distance", 4, Some("m")),
            131 => ("energy", 4, Some("kWh")),
            133 => ("unixtime", 4, Some("s")),
            134 => ("gyrometer", 6, Some("°/s")),
            135 => ("colour", 3, None),
            136 => ("gps", 9, None),
            142 => ("switch", 1, None),
            _ => return Err(LppError::UnknownType(ty, ch)),
        };
        let v = rest.get(..len).ok_or(LppError::Truncated(ty, ch))?;
        b = rest.get(len..).unwrap_or(&[]);
        let base = format!("{name}_{ch}");
        let mut push = |n: String, val: Value, u: Option<&str>| {
            let p = Point::new(n, val);
            out.push(match u {
                Some(u) => p.with_unit(u),
                None => p,
            });
        };
        match ty {
            0 | 1 | 102 | 142 | 120 => push(base, Value::Int(be(v) as i64), unit),
            2 | 3 => push(base, Value::Float(round(sbe(v) as f64 / 100.0, 2)), unit),
            100 | 133 | 118 | 125 | 128 | 101 => push(base, Value::Int(be(v) as i64), unit),
            103 | 115 => {
                let raw = if ty == 103 {
                    sbe(v) as f64
                } else {
                    be(v) as f64
                };
                push(base, Value::Float(round(raw / 10.0, 1)), unit)
            }
            104 => push(base, Value::Float(be(v) as f64 / 2.0), unit),
            116 => push(base, Value::Float(round(be(v) as f64 / 100.0, 2)), unit),
            117 | 130 | 131 => push(base, Value::Float(round(be(v) as f64 / 1000.0, 3)), unit),
            121 => push(base, Value::Int(sbe(v)), unit),
            113 | 134 => {
                let div = if ty == 113 { 1000.0 } else { 100.0 };
                for (axis, c) in ["x", "y", "z"].iter().zip(v.chunks(2)) {
                    push(
                        format!("{base}_{axis}"),
                        Value::Float(round(sbe(c) as f64 / div, 3)),
                        unit,
                    );
                }
            }
            135 => push(base, Value::Bytes(v.to_vec()), unit),
            _ => {
                // 136 GPS: lat, lon (0.0001°, signed 24-bit), altitude (0.01 m, signed 24-bit)
                let part = |r: std::ops::Range<usize>| sbe(v.get(r).unwrap_or(&[])) as f64;
                push(
                    format!("{base}_lat"),
                    Value::Float(round(part(0..3) / 1e4, 4)),
                    Some("°"),
                );
                push(
                    format!("{base}_lon"),
                    Value::Float(round(part(3..6) / 1e4, 4)),
                    Some("°"),
                );
                push(
                    format!("{base}_alt"),
                    Value::Float(round(part(6..9) / 100.0, 2)),
                    Some("m"),
                );
            }
        }
    }
    if let [ch] = b {
        return Err(LppError::Truncated(0, *ch));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn reference_examples() {
        // the LPP spec's examples: two temperatures, then an accelerometer
        let p = decode(&[0x03, 0x67, 0x01, 0x10, 0x05, 0x67, 0x00, 0xff]).unwrap();
        assert_eq!(p[0].name, "temperature_3");
        assert_eq!(p[0].value, Value::Float(27.2));
        assert_eq!(p[1].value, Value::Float(25.5));
        let p = decode(&[0x06, 0x71, 0x04, 0xd2, 0xfb, 0x2e, 0x00, 0x00]).unwrap();
        assert_eq!(p[0].value, Value::Float(1.234));
        assert_eq!(p[1].value, Value::Float(-1.234));
        let p = decode(&[0x01, 0x67, 0xff, 0xd7]).unwrap();
        assert_eq!(p[0].value, Value::Float(-4.1));
        assert!(decode(&[0x01, 0x67, 0x01]).is_err());
        assert!(decode(&[0x01, 0x09, 0x01]).is_err());
    }
}
