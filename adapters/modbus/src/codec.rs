//! Register codec: turns the 16-bit words (and bits) a Modbus device returns into typed values, and
//! typed values back into words for writes. Also reads the Modbus/TCP Security role from the DER
//! content of the certificate extension. Everything here works on untrusted bytes and returns typed
//! errors; nothing panics.

use warden_core::Value;

use crate::config::{DataType, Order, PointConfig};

/// Why registers could not become a value (or a value registers).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("expected {want} registers, got {got}")]
    Length { want: usize, got: usize },
    #[error("expected a bit, got none")]
    NoBit,
    #[error("value {0} does not fit the point's type")]
    Range(String),
    #[error("a {0} point cannot take a {1} value")]
    Type(&'static str, &'static str),
}

/// How many registers (or bits) a point of this type spans.
pub fn width(dtype: DataType, length: u16) -> u16 {
    match dtype {
        DataType::Bool | DataType::U16 | DataType::I16 => 1,
        DataType::U32 | DataType::I32 | DataType::F32 => 2,
        DataType::U64 | DataType::F64 => 4,
        DataType::String => length.max(1),
    }
}

/// Bytes of `regs` in the point's byte and word order, most significant first.
fn ordered_bytes(regs: &[u16], byte_order: Order, word_order: Order) -> Vec<u8> {
    let mut out = Vec::with_capacity(regs.len() * 2);
    let mut push = |w: u16| {
        let b = w.to_be_bytes();
        match byte_order {
            Order::Big => out.extend_from_slice(&b),
            Order::Little => out.extend(b.iter().rev()),
        }
    };
    match word_order {
        Order::Big => regs.iter().copied().for_each(&mut push),
        Order::Little => regs.iter().rev().copied().for_each(&mut push),
    }
    out
}

/// Inverse of [`ordered_bytes`]: big-endian bytes to registers in the point's orders.
fn ordered_regs(bytes: &[u8], byte_order: Order, word_order: Order) -> Vec<u16> {
    let mut regs: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let (a, b) = match c {
                [a, b] => (*a, *b),
                [a] => (*a, 0),
                _ => (0, 0),
            };
            match byte_order {
                Order::Big => u16::from_be_bytes([a, b]),
                Order::Little => u16::from_be_bytes([b, a]),
            }
        })
        .collect();
    if word_order == Order::Little {
        regs.reverse();
    }
    regs
}

fn arr<const N: usize>(b: &[u8]) -> Result<[u8; N], CodecError> {
    b.try_into().map_err(|_| CodecError::Length {
        want: N / 2,
        got: b.len() / 2,
    })
}

/// The raw (unscaled) value of registers of a given type.
pub fn decode_raw(
    dtype: DataType,
    regs: &[u16],
    byte_order: Order,
    word_order: Order,
) -> Result<Value, CodecError> {
    let want = usize::from(width(dtype, regs.len().min(usize::from(u16::MAX)) as u16));
    if dtype != DataType::Bool && regs.len() != want {
        return Err(CodecError::Length {
            want,
            got: regs.len(),
        });
    }
    if dtype == DataType::String {
        // strings are bytes in register order; word order does not apply
        let b = ordered_bytes(regs, byte_order, Order::Big);
        let s: String = b
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| if c.is_ascii() { char::from(*c) } else { '?' })
            .collect();
        return Ok(Value::Text(s.trim_end().to_owned()));
    }
    let b = ordered_bytes(regs, byte_order, word_order);
    Ok(match dtype {
        DataType::Bool => {
            let w = regs.first().ok_or(CodecError::NoBit)?;
            Value::Bool(*w != 0)
        }
        DataType::U16 => Value::Int(i64::from(u16::from_be_bytes(arr(&b)?))),
        DataType::I16 => Value::Int(i64::from(i16::from_be_bytes(arr(&b)?))),
        DataType::U32 => Value::Int(i64::from(u32::from_be_bytes(arr(&b)?))),
        DataType::I32 => Value::Int(i64::from(i32::from_be_bytes(arr(&b)?))),
        DataType::U64 => {
            let v = u64::from_be_bytes(arr(&b)?);
            i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
        }
        DataType::F32 => Value::Float(f64::from(f32::from_be_bytes(arr(&b)?))),
        DataType::F64 => Value::Float(f64::from_be_bytes(arr(&b)?)),
        DataType::String => Value::Text(String::new()),
    })
}

/// A point's value from its registers, with scale and offset applied.
pub fn decode(p: &PointConfig, regs: &[u16]) -> Result<Value, CodecError> {
    let v = decode_raw(p.data_type(), regs, p.byte_order, p.word_order)?;
    if p.scale == 1.0 && p.offset == 0.0 {
        return Ok(v);
    }
    Ok(match v {
        Value::Int(i) => Value::Float(i as f64 * p.scale + p.offset),
        Value::Float(f) => Value::Float(f * p.scale + p.offset),
        other => other,
    })
}

/// A bit point's value.
pub fn decode_bit(bits: &[bool]) -> Result<Value, CodecError> {
    bits.first()
        .map(|b| Value::Bool(*b))
        .ok_or(CodecError::NoBit)
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn int_in(v: f64, lo: f64, hi: f64) -> Result<i128, CodecError> {
    let r = v.round();
    if !r.is_finite() || r < lo || r > hi {
        return Err(CodecError::Range(v.to_string()));
    }
    Ok(r as i128)
}

/// Registers that write `v` to a register point (scale and offset undone).
pub fn encode(p: &PointConfig, v: &Value) -> Result<Vec<u16>, CodecError> {
    let dtype = p.data_type();
    let (bo, wo) = (p.byte_order, p.word_order);
    if dtype == DataType::String {
        let Value::Text(s) = v else {
            return Err(CodecError::Type("string", v.type_name()));
        };
        let n = usize::from(width(dtype, p.length)) * 2;
        if s.len() > n || !s.is_ascii() {
            return Err(CodecError::Range(format!("{} characters", s.len())));
        }
        let mut b = s.as_bytes().to_vec();
        b.resize(n, 0);
        return Ok(ordered_regs(&b, bo, Order::Big));
    }
    if dtype == DataType::Bool {
        return match v {
            Value::Bool(b) => Ok(vec![u16::from(*b)]),
            Value::Int(i @ (0 | 1)) => Ok(vec![*i as u16]),
            _ => Err(CodecError::Type("bool", v.type_name())),
        };
    }
    let x = as_f64(v).ok_or(CodecError::Type("number", v.type_name()))?;
    let raw = (x - p.offset) / p.scale;
    let bytes: Vec<u8> = match dtype {
        DataType::U16 => (int_in(raw, 0.0, 65535.0)? as u16).to_be_bytes().to_vec(),
        DataType::I16 => (int_in(raw, -32768.0, 32767.0)? as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::U32 => (int_in(raw, 0.0, 4_294_967_295.0)? as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::I32 => (int_in(raw, -2_147_483_648.0, 2_147_483_647.0)? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => match v {
            Value::Int(i) if p.scale == 1.0 && p.offset == 0.0 => u64::try_from(*i)
                .map_err(|_| CodecError::Range(i.to_string()))?
                .to_be_bytes()
                .to_vec(),
            _ => (int_in(raw, 0.0, 1.8e19)? as u64).to_be_bytes().to_vec(),
        },
        DataType::F32 => {
            if !raw.is_finite() || raw.abs() > f64::from(f32::MAX) {
                return Err(CodecError::Range(x.to_string()));
            }
            (raw as f32).to_be_bytes().to_vec()
        }
        DataType::F64 => raw.to_be_bytes().to_vec(),
        DataType::Bool | DataType::String => Vec::new(),
    };
    Ok(ordered_regs(&bytes, bo, wo))
}

/// Why the role extension could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error("role extension is empty")]
    Empty,
    #[error("role extension is not a UTF8String (tag {0:#04x})")]
    Tag(u8),
    #[error("role extension has a bad length")]
    Length,
    #[error("role extension has trailing bytes")]
    Trailing,
    #[error("role is not valid UTF-8")]
    Utf8,
}

/// OID of the Modbus/TCP Security role extension.
pub const ROLE_OID: &str = "1.3.6.1.4.1.50316.802.1";

/// Parses the extension value (the DER inside the extension's OCTET STRING): one UTF8String.
pub fn parse_role(der: &[u8]) -> Result<String, RoleError> {
    let (&tag, rest) = der.split_first().ok_or(RoleError::Empty)?;
    if tag != 0x0c {
        return Err(RoleError::Tag(tag));
    }
    let (&l0, rest) = rest.split_first().ok_or(RoleError::Length)?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return Err(RoleError::Length);
        }
        let (lb, rest) = rest.split_at_checked(n).ok_or(RoleError::Length)?;
        let len = lb.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        // DER: long form only when needed, minimal bytes
        if len < 0x80 || lb.first() == Some(&0) {
            return Err(RoleError::Length);
        }
        (len, rest)
    };
    let (body, trailing) = rest.split_at_checked(len).ok_or(RoleError::Length)?;
    if !trailing.is_empty() {
        return Err(RoleError::Trailing);
    }
    String::from_utf8(body.to_vec()).map_err(|_| RoleError::Utf8)
}

/// A short, stable name for a Modbus exception code.
pub fn exception_name(code: u8) -> String {
    match code {
        1 => "illegal-function".into(),
        2 => "illegal-data-address".into(),
        3 => "illegal-data-value".into(),
        4 => "server-device-failure".into(),
        5 => "acknowledge".into(),
        6 => "server-device-busy".into(),
        8 => "memory-parity-error".into(),
        0x0a => "gateway-path-unavailable".into(),
        0x0b => "gateway-target-failed-to-respond".into(),
        c => format!("exception-{c:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn float_and_u32_in_both_word_orders() {
        // 12.5f32 = 0x41480000
        let be = decode_raw(DataType::F32, &[0x4148, 0x0000], Order::Big, Order::Big).unwrap();
        let le = decode_raw(DataType::F32, &[0x0000, 0x4148], Order::Big, Order::Little).unwrap();
        assert_eq!(be, Value::Float(12.5));
        assert_eq!(le, Value::Float(12.5));
        let u = decode_raw(DataType::U32, &[0x0001, 0x0002], Order::Big, Order::Big).unwrap();
        assert_eq!(u, Value::Int(0x0001_0002));
        let u = decode_raw(DataType::U32, &[0x0001, 0x0002], Order::Big, Order::Little).unwrap();
        assert_eq!(u, Value::Int(0x0002_0001));
        let b = decode_raw(DataType::U16, &[0x1234], Order::Little, Order::Big).unwrap();
        assert_eq!(b, Value::Int(0x3412));
        let i = decode_raw(DataType::I16, &[0xffff], Order::Big, Order::Big).unwrap();
        assert_eq!(i, Value::Int(-1));
    }

    #[test]
    fn strings_and_wrong_lengths() {
        let s = decode_raw(DataType::String, &[0x4142, 0x4300], Order::Big, Order::Big).unwrap();
        assert_eq!(s, Value::Text("ABC".into()));
        assert!(decode_raw(DataType::U32, &[1], Order::Big, Order::Big).is_err());
        assert!(decode_raw(DataType::Bool, &[], Order::Big, Order::Big).is_err());
    }

    #[test]
    fn role_parser() {
        assert_eq!(parse_role(b"\x0c\x08Operator").unwrap(), "Operator");
        assert_eq!(parse_role(b"\x0c\x00").unwrap(), "");
        assert_eq!(parse_role(b"\x13\x01A"), Err(RoleError::Tag(0x13)));
        assert_eq!(parse_role(b"\x0c\x05ab"), Err(RoleError::Length));
        assert_eq!(parse_role(b"\x0c\x01ab"), Err(RoleError::Trailing));
        assert_eq!(parse_role(b"\x0c\x81\x05abcde"), Err(RoleError::Length));
        let long = vec![b'x'; 200];
        let mut der = vec![0x0c, 0x81, 200];
        der.extend_from_slice(&long);
        assert_eq!(parse_role(&der).unwrap().len(), 200);
        assert_eq!(parse_role(&[]), Err(RoleError::Empty));
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    fn order() -> impl Strategy<Value = Order> {
        prop_oneof![Just(Order::Big), Just(Order::Little)]
    }
    fn dtype() -> impl Strategy<Value = DataType> {
        prop_oneof![
            Just(DataType::Bool),
            Just(DataType::U16),
            Just(DataType::I16),
            Just(DataType::U32),
            Just(DataType::I32),
            Just(DataType::U64),
            Just(DataType::F32),
            Just(DataType::F64),
            Just(DataType::String),
        ]
    }
    fn point(t: DataType, bo: Order, wo: Order, len: u16) -> PointConfig {
        let mut p = PointConfig::for_tests("p", t);
        p.byte_order = bo;
        p.word_order = wo;
        p.length = len;
        p
    }

    proptest! {
        #[test]
        fn decoding_any_registers_never_panics(
            t in dtype(), bo in order(), wo in order(),
            regs in proptest::collection::vec(any::<u16>(), 0..10),
        ) {
            let _ = decode_raw(t, &regs, bo, wo);
        }

        #[test]
        fn registers_round_trip(
            t in dtype(), bo in order(), wo in order(),
            regs in proptest::collection::vec(any::<u16>(), 4),
        ) {
            let n = usize::from(width(t, 4));
            let regs = &regs[..n.min(4)];
            let p = point(t, bo, wo, 4);
            let v = decode(&p, regs).unwrap();
            // NaNs and strings with NULs / non-ASCII lose information by design
            let lossless = match &v {
                Value::Float(f) => f.is_finite() && (t != DataType::U64),
                Value::Text(s) => s.len() == n * 2 && s.trim_end() == s && !s.contains('?'),
                Value::Bool(_) => regs[0] <= 1,
                _ => true,
            };
            if lossless {
                let back = encode(&p, &v).unwrap();
                prop_assert_eq!(&back[..], regs);
            }
        }

        #[test]
        fn role_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_role(&b);
        }

        #[test]
        fn role_round_trips(s in "\\PC{0,300}") {
            let body = s.as_bytes();
            let mut der = vec![0x0c];
            match body.len() {
                n if n < 0x80 => der.push(n as u8),
                n if n < 0x100 => der.extend_from_slice(&[0x81, n as u8]),
                n => der.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
            }
            der.extend_from_slice(body);
            prop_assert_eq!(parse_role(&der).unwrap(), s);
        }
    }
}
