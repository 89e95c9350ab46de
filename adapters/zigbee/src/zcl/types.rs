//! ZCL attribute data types: the type-id table, the decoded value (`ZclValue`), and the byte-level
//! reader and writer every other module uses. All multi-byte fields are little-endian (ZCL spec 2.6.2).
//!
//! Bounds: strings are limited by their length prefix and by the input; composite values
//! (array/structure/set/bag) are validated and kept as raw bytes, nested at most [`MAX_DEPTH`] deep
//! and with at most [`MAX_ELEMENTS`] elements in total per value.

use crate::zcl::error::{DecodeError, EncodeError};

/// Deepest nesting of array/structure/set/bag values that is decoded.
pub const MAX_DEPTH: usize = 4;
/// Most elements (over all nesting levels) one composite value may hold.
pub const MAX_ELEMENTS: usize = 1024;
/// Longest char/octet string (one-byte length prefix; 0xff means invalid).
pub const MAX_SHORT_STRING: usize = 254;
/// Longest long char/octet string this codec encodes (the prefix allows 65534).
pub const MAX_LONG_STRING: usize = 4096;

/// Cursor over untrusted bytes: every read is checked.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (first, tail) = self
            .buf
            .split_first()
            .ok_or(DecodeError::Truncated { needed: 1 })?;
        self.buf = tail;
        Ok(*first)
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(self.uint(2)? as u16)
    }
    /// Little-endian unsigned of `n` (≤ 8) bytes.
    pub(crate) fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        let bytes = self.take(n)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

/// Append `n` (≤ 8) little-endian bytes of `v`.
pub(crate) fn put_uint(out: &mut Vec<u8>, v: u64, n: usize) {
    out.extend(v.to_le_bytes().iter().take(n));
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Whether a type carries a quantity (Configure Reporting then needs a reportable change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeClass {
    Analog,
    Discrete,
}

/// Which `ZclValue` variant a data type decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    NoData,
    Bool,
    Unsigned,
    Signed,
    Float,
    Octets,
    Text,
    Composite,
    SecurityKey,
}

macro_rules! data_types {
    ($( $name:ident = $id:literal, $kind:ident, $class:ident, $len:expr; )*) => {
        /// A ZCL attribute data-type id (ZCL spec table 2-10) this codec understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DataType { $( $name = $id, )* }

        impl DataType {
            /// Every supported type, in id order.
            pub const ALL: &'static [DataType] = &[ $( DataType::$name, )* ];

            /// The type for a wire id, or `None` if unknown.
            pub fn from_id(id: u8) -> Option<Self> {
                match id { $( $id => Some(Self::$name), )* _ => None }
            }
            /// The `ZclValue` variant this type decodes to.
            pub fn kind(self) -> ValueKind {
                match self { $( Self::$name => ValueKind::$kind, )* }
            }
            /// Analog (quantity) or discrete.
            pub fn class(self) -> TypeClass {
                match self { $( Self::$name => TypeClass::$class, )* }
            }
            /// Encoded length for fixed-size types; `None` for strings and composites.
            pub fn fixed_len(self) -> Option<usize> {
                match self { $( Self::$name => $len, )* }
            }
        }
    };
}

data_types! {
    NoData = 0x00, NoData, Discrete, Some(0);
    Data8 = 0x08, Unsigned, Discrete, Some(1);
    Data16 = 0x09, Unsigned, Discrete, Some(2);
    Data24 = 0x0a, Unsigned, Discrete, Some(3);
    Data32 = 0x0b, Unsigned, Discrete, Some(4);
    Data40 = 0x0c, Unsigned, Discrete, Some(5);
    Data48 = 0x0d, Unsigned, Discrete, Some(6);
    Data56 = 0x0e, Unsigned, Discrete, Some(7);
    Data64 = 0x0f, Unsigned, Discrete, Some(8);
    Bool = 0x10, Bool, Discrete, Some(1);
    Bitmap8 = 0x18, Unsigned, Discrete, Some(1);
    Bitmap16 = 0x19, Unsigned, Discrete, Some(2);
    Bitmap24 = 0x1a, Unsigned, Discrete, Some(3);
    Bitmap32 = 0x1b, Unsigned, Discrete, Some(4);
    Bitmap40 = 0x1c, Unsigned, Discrete, Some(5);
    Bitmap48 = 0x1d, Unsigned, Discrete, Some(6);
    Bitmap56 = 0x1e, Unsigned, Discrete, Some(7);
    Bitmap64 = 0x1f, Unsigned, Discrete, Some(8);
    Uint8 = 0x20, Unsigned, Analog, Some(1);
    Uint16 = 0x21, Unsigned, Analog, Some(2);
    Uint24 = 0x22, Unsigned, Analog, Some(3);
    Uint32 = 0x23, Unsigned, Analog, Some(4);
    Uint40 = 0x24, Unsigned, Analog, Some(5);
    Uint48 = 0x25, Unsigned, Analog, Some(6);
    Uint56 = 0x26, Unsigned, Analog, Some(7);
    Uint64 = 0x27, Unsigned, Analog, Some(8);
    Int8 = 0x28, Signed, Analog, Some(1);
    Int16 = 0x29, Signed, Analog, Some(2);
    Int24 = 0x2a, Signed, Analog, Some(3);
    Int32 = 0x2b, Signed, Analog, Some(4);
    Int40 = 0x2c, Signed, Analog, Some(5);
    Int48 = 0x2d, Signed, Analog, Some(6);
    Int56 = 0x2e, Signed, Analog, Some(7);
    Int64 = 0x2f, Signed, Analog, Some(8);
    Enum8 = 0x30, Unsigned, Discrete, Some(1);
    Enum16 = 0x31, Unsigned, Discrete, Some(2);
    SemiFloat = 0x38, Float, Analog, Some(2);
    SingleFloat = 0x39, Float, Analog, Some(4);
    DoubleFloat = 0x3a, Float, Analog, Some(8);
    OctetString = 0x41, Octets, Discrete, None;
    CharString = 0x42, Text, Discrete, None;
    LongOctetString = 0x43, Octets, Discrete, None;
    LongCharString = 0x44, Text, Discrete, None;
    Array = 0x48, Composite, Discrete, None;
    Structure = 0x4c, Composite, Discrete, None;
    Set = 0x50, Composite, Discrete, None;
    Bag = 0x51, Composite, Discrete, None;
    TimeOfDay = 0xe0, Unsigned, Analog, Some(4);
    Date = 0xe1, Unsigned, Analog, Some(4);
    UtcTime = 0xe2, Unsigned, Analog, Some(4);
    ClusterId = 0xe8, Unsigned, Discrete, Some(2);
    AttributeId = 0xe9, Unsigned, Discrete, Some(2);
    BacnetOid = 0xea, Unsigned, Discrete, Some(4);
    Ieee = 0xf0, Unsigned, Discrete, Some(8);
    SecurityKey = 0xf1, SecurityKey, Discrete, Some(16);
}

impl DataType {
    /// The wire id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Whether the type has an "invalid value" encoding (bitmaps, data, time-of-day, date, no-data
    /// and security keys have none).
    pub fn has_invalid(self) -> bool {
        match self.kind() {
            ValueKind::NoData | ValueKind::SecurityKey => false,
            ValueKind::Unsigned => self.unsigned_has_sentinel(),
            _ => true,
        }
    }

    /// Whether the type has a defined "invalid" (no value) sentinel for unsigned forms.
    fn unsigned_has_sentinel(self) -> bool {
        !matches!(
            self,
            Self::Data8
                | Self::Data16
                | Self::Data24
                | Self::Data32
                | Self::Data40
                | Self::Data48
                | Self::Data56
                | Self::Data64
                | Self::Bitmap8
                | Self::Bitmap16
                | Self::Bitmap24
                | Self::Bitmap32
                | Self::Bitmap40
                | Self::Bitmap48
                | Self::Bitmap56
                | Self::Bitmap64
                | Self::TimeOfDay
                | Self::Date
        )
    }
}

/// A decoded attribute value.
///
/// Sentinel "invalid" encodings (ZCL spec table 2-10: 0xffff for uint16, 0x8000 for int16, NaN for
/// floats, 0xff length for strings, …) decode to [`ZclValue::Invalid`] and normalise to no reading.
#[derive(Debug, Clone, PartialEq)]
pub enum ZclValue {
    /// Type 0x00: no value.
    NoData,
    Bool(bool),
    /// Data, bitmap, uint, enum, time-of-day, date, UTC time, cluster/attribute id, BACnet OID
    /// and IEEE address types, as an unsigned number of the type's width.
    Unsigned(DataType, u64),
    /// intN types, sign-extended.
    Signed(DataType, i64),
    /// Semi, single and double precision floats.
    Float(DataType, f64),
    /// Octet strings (0x41, 0x43).
    Octets(DataType, Vec<u8>),
    /// Character strings (0x42, 0x44); bytes that are not UTF-8 become U+FFFD.
    Text(DataType, String),
    /// Array, structure, set or bag: validated and skipped, kept as the raw encoded body.
    Composite(DataType, Vec<u8>),
    SecurityKey([u8; 16]),
    /// The type's "invalid value" sentinel.
    Invalid(DataType),
}

impl ZclValue {
    /// The data type this value is encoded with.
    pub fn data_type(&self) -> DataType {
        match self {
            Self::NoData => DataType::NoData,
            Self::Bool(_) => DataType::Bool,
            Self::SecurityKey(_) => DataType::SecurityKey,
            Self::Unsigned(t, _)
            | Self::Signed(t, _)
            | Self::Float(t, _)
            | Self::Octets(t, _)
            | Self::Text(t, _)
            | Self::Composite(t, _)
            | Self::Invalid(t) => *t,
        }
    }

    /// A numeric view (unsigned, signed, float, bool as 0/1); `None` for other variants.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Unsigned(_, v) => Some(*v as f64),
            Self::Signed(_, v) => Some(*v as f64),
            Self::Float(_, v) => Some(*v),
            Self::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// An integer view of unsigned/signed/bool values.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Unsigned(_, v) => i64::try_from(*v).ok(),
            Self::Signed(_, v) => Some(*v),
            Self::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Decode one value of type `ty` from `r`.
    pub(crate) fn read(ty: DataType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut budget = MAX_ELEMENTS;
        read_value(ty, r, 0, &mut budget)
    }

    /// Decode a value of type `ty` from the start of `bytes`; returns it and the bytes used.
    pub fn decode(ty: DataType, bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read(ty, &mut r)?;
        Ok((v, bytes.len() - r.remaining()))
    }

    /// Decode a type id followed by a value (the attribute-record form).
    pub fn decode_typed(bytes: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read_typed(&mut r)?;
        Ok((v, bytes.len() - r.remaining()))
    }

    pub(crate) fn read_typed(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u8()?;
        let ty = DataType::from_id(id).ok_or(DecodeError::UnknownType(id))?;
        Self::read(ty, r)
    }

    /// Append the encoded value (without its type id).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let ty = self.data_type();
        let mismatch = EncodeError::TypeMismatch(ty.id());
        let range = EncodeError::OutOfRange(ty.id());
        match (self, ty.kind()) {
            (Self::NoData, ValueKind::NoData) => Ok(()),
            (Self::Bool(b), ValueKind::Bool) => {
                out.push(u8::from(*b));
                Ok(())
            }
            (Self::Unsigned(_, v), ValueKind::Unsigned) => {
                let n = ty.fixed_len().ok_or(mismatch)?;
                let max = width_max(n);
                if *v > max || (ty.unsigned_has_sentinel() && *v == max) {
                    return Err(range);
                }
                put_uint(out, *v, n);
                Ok(())
            }
            (Self::Signed(_, v), ValueKind::Signed) => {
                let n = ty.fixed_len().ok_or(mismatch)?;
                let bits = (n * 8) as u32;
                let min = signed_min(bits);
                let max = -(min + 1);
                if *v <= min || *v > max {
                    return Err(range);
                }
                put_uint(out, *v as u64, n);
                Ok(())
            }
            (Self::Float(_, v), ValueKind::Float) => {
                if v.is_nan() {
                    return Err(range);
                }
                match ty {
                    DataType::SemiFloat => put_u16(out, f64_to_half(*v)),
                    DataType::SingleFloat => {
                        let f = *v as f32;
                        if f.is_infinite() && v.is_finite() {
                            return Err(range);
                        }
                        out.extend_from_slice(&f.to_le_bytes());
                    }
                    _ => out.extend_from_slice(&v.to_le_bytes()),
                }
                Ok(())
            }
            (Self::Octets(_, b), ValueKind::Octets) => put_string(ty, b, out),
            (Self::Text(_, s), ValueKind::Text) => put_string(ty, s.as_bytes(), out),
            (Self::Composite(_, raw), ValueKind::Composite) => {
                // Only re-emit bodies that decode: never send what we could not read back.
                let mut budget = MAX_ELEMENTS;
                let mut r = Reader::new(raw);
                skip_composite(ty, &mut r, 0, &mut budget).map_err(|_| mismatch)?;
                if !r.is_empty() {
                    return Err(mismatch);
                }
                out.extend_from_slice(raw);
                Ok(())
            }
            (Self::SecurityKey(k), ValueKind::SecurityKey) => {
                out.extend_from_slice(k);
                Ok(())
            }
            (Self::Invalid(_), kind) if ty.has_invalid() => {
                encode_invalid(ty, kind, out);
                Ok(())
            }
            _ => Err(mismatch),
        }
    }

    /// Append the type id and the encoded value.
    pub fn encode_typed(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.data_type().id());
        self.encode(out)
    }
}

fn width_max(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (n * 8)) - 1
    }
}

fn signed_min(bits: u32) -> i64 {
    if bits >= 64 {
        i64::MIN
    } else {
        -(1i64 << (bits - 1))
    }
}

fn put_string(ty: DataType, b: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let long = matches!(ty, DataType::LongOctetString | DataType::LongCharString);
    let max = if long {
        MAX_LONG_STRING
    } else {
        MAX_SHORT_STRING
    };
    if b.len() > max {
        return Err(EncodeError::TooLong { len: b.len(), max });
    }
    if long {
        put_uint(out, b.len() as u64, 2);
    } else {
        put_uint(out, b.len() as u64, 1);
    }
    out.extend_from_slice(b);
    Ok(())
}

fn encode_invalid(ty: DataType, kind: ValueKind, out: &mut Vec<u8>) {
    match kind {
        ValueKind::Bool => out.push(0xff),
        ValueKind::Signed => {
            let n = ty.fixed_len().unwrap_or(0);
            put_uint(out, signed_min((n * 8) as u32) as u64, n);
        }
        ValueKind::Float => match ty {
            DataType::SemiFloat => put_u16(out, 0x7e00),
            DataType::SingleFloat => out.extend_from_slice(&f32::NAN.to_le_bytes()),
            _ => out.extend_from_slice(&f64::NAN.to_le_bytes()),
        },
        ValueKind::Octets | ValueKind::Text => {
            let n = if matches!(ty, DataType::LongOctetString | DataType::LongCharString) {
                2
            } else {
                1
            };
            put_uint(out, u64::MAX, n);
        }
        ValueKind::Composite => match ty {
            DataType::Structure => put_u16(out, 0xffff),
            _ => {
                out.push(DataType::NoData.id());
                put_u16(out, 0xffff);
            }
        },
        ValueKind::Unsigned | ValueKind::SecurityKey | ValueKind::NoData => {
            // Only reached for types with a sentinel (all ones).
            let n = ty.fixed_len().unwrap_or(0);
            out.extend(std::iter::repeat_n(0xff, n));
        }
    }
}

fn read_value(
    ty: DataType,
    r: &mut Reader<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<ZclValue, DecodeError> {
    Ok(match ty.kind() {
        ValueKind::NoData => ZclValue::NoData,
        ValueKind::Bool => match r.u8()? {
            0xff => ZclValue::Invalid(ty),
            b => ZclValue::Bool(b != 0),
        },
        ValueKind::Unsigned => {
            let n = ty.fixed_len().unwrap_or(0);
            let v = r.uint(n)?;
            if ty.unsigned_has_sentinel() && v == width_max(n) {
                ZclValue::Invalid(ty)
            } else {
                ZclValue::Unsigned(ty, v)
            }
        }
        ValueKind::Signed => {
            let n = ty.fixed_len().unwrap_or(0);
            let raw = r.uint(n)?;
            let shift = 64 - (n as u32 * 8);
            let v = ((raw << shift) as i64) >> shift;
            if v == signed_min(n as u32 * 8) {
                ZclValue::Invalid(ty)
            } else {
                ZclValue::Signed(ty, v)
            }
        }
        ValueKind::Float => {
            let v = match ty {
                DataType::SemiFloat => half_to_f64(r.u16()?),
                DataType::SingleFloat => f64::from(f32::from_bits(r.uint(4)? as u32)),
                _ => f64::from_bits(r.uint(8)?),
            };
            if v.is_nan() {
                ZclValue::Invalid(ty)
            } else {
                ZclValue::Float(ty, v)
            }
        }
        ValueKind::Octets | ValueKind::Text => {
            let long = matches!(ty, DataType::LongOctetString | DataType::LongCharString);
            let (len, invalid) = if long {
                let l = r.u16()?;
                (usize::from(l), l == 0xffff)
            } else {
                let l = r.u8()?;
                (usize::from(l), l == 0xff)
            };
            if invalid {
                ZclValue::Invalid(ty)
            } else {
                let bytes = r.take(len)?;
                if ty.kind() == ValueKind::Text {
                    ZclValue::Text(ty, String::from_utf8_lossy(bytes).into_owned())
                } else {
                    ZclValue::Octets(ty, bytes.to_vec())
                }
            }
        }
        ValueKind::Composite => {
            let start = r.rest();
            let before = r.remaining();
            let invalid = skip_composite(ty, r, depth, budget)?;
            let used = before - r.remaining();
            if invalid {
                ZclValue::Invalid(ty)
            } else {
                ZclValue::Composite(ty, start.get(..used).unwrap_or_default().to_vec())
            }
        }
        ValueKind::SecurityKey => {
            let mut k = [0u8; 16];
            k.copy_from_slice(r.take(16)?);
            ZclValue::SecurityKey(k)
        }
    })
}

/// Walk over a composite body; returns whether it was the invalid (count 0xffff) form.
fn skip_composite(
    ty: DataType,
    r: &mut Reader<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<bool, DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::TooDeep(MAX_DEPTH));
    }
    let elem_ty = if ty == DataType::Structure {
        None
    } else {
        let id = r.u8()?;
        Some(DataType::from_id(id).ok_or(DecodeError::UnknownType(id))?)
    };
    let count = r.u16()?;
    if count == 0xffff {
        return Ok(true);
    }
    for _ in 0..count {
        *budget = budget
            .checked_sub(1)
            .ok_or(DecodeError::TooMany(MAX_ELEMENTS))?;
        let et = match elem_ty {
            Some(t) => t,
            None => {
                let id = r.u8()?;
                DataType::from_id(id).ok_or(DecodeError::UnknownType(id))?
            }
        };
        read_value(et, r, depth + 1, budget)?;
    }
    Ok(false)
}

/// IEEE 754 half precision to f64.
pub(crate) fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        0x1f if frac == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// f64 to IEEE 754 half precision, rounding to nearest (ties to even); overflow becomes infinity.
pub(crate) fn f64_to_half(v: f64) -> u16 {
    let sign: u16 = if v.is_sign_negative() { 0x8000 } else { 0 };
    let a = v.abs();
    if a.is_nan() {
        return 0x7e00;
    }
    if a.is_infinite() || a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < 2f64.powi(-14) {
        // Subnormal: units of 2^-24.
        let m = round_even(a * 2f64.powi(24));
        return sign | (m as u16);
    }
    let mut e = a.log2().floor() as i32;
    // Guard against log2 rounding at exact powers of two.
    if 2f64.powi(e) > a {
        e -= 1;
    } else if 2f64.powi(e + 1) <= a {
        e += 1;
    }
    let m = round_even((a / 2f64.powi(e) - 1.0) * 1024.0) as u32;
    let (e, m) = if m >= 1024 { (e + 1, 0) } else { (e, m) };
    if e > 15 {
        return sign | 0x7c00;
    }
    sign | ((((e + 15) as u32) << 10) | m) as u16
}

fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn dec(ty: DataType, b: &[u8]) -> ZclValue {
        let (v, used) = ZclValue::decode(ty, b).unwrap();
        assert_eq!(used, b.len());
        v
    }

    #[test]
    fn int16_temperature_and_sentinel() {
        assert_eq!(
            dec(DataType::Int16, &[0x66, 0x08]),
            ZclValue::Signed(DataType::Int16, 2150)
        );
        assert_eq!(
            dec(DataType::Int16, &[0x00, 0x80]),
            ZclValue::Invalid(DataType::Int16)
        );
        assert_eq!(
            dec(DataType::Int16, &[0xff, 0xff]),
            ZclValue::Signed(DataType::Int16, -1)
        );
    }

    #[test]
    fn unsigned_sentinels() {
        assert_eq!(
            dec(DataType::Uint16, &[0xff, 0xff]),
            ZclValue::Invalid(DataType::Uint16)
        );
        assert_eq!(
            dec(DataType::Uint48, &[0xff; 6]),
            ZclValue::Invalid(DataType::Uint48)
        );
        assert_eq!(
            dec(DataType::Bitmap16, &[0xff, 0xff]),
            ZclValue::Unsigned(DataType::Bitmap16, 0xffff)
        );
        assert_eq!(
            dec(DataType::Bool, &[0xff]),
            ZclValue::Invalid(DataType::Bool)
        );
        assert_eq!(
            dec(DataType::Enum8, &[0xff]),
            ZclValue::Invalid(DataType::Enum8)
        );
        assert_eq!(
            dec(DataType::Uint24, &[1, 2, 3]),
            ZclValue::Unsigned(DataType::Uint24, 0x030201)
        );
        assert_eq!(
            dec(DataType::Int24, &[0xfe, 0xff, 0xff]),
            ZclValue::Signed(DataType::Int24, -2)
        );
    }

    #[test]
    fn strings() {
        assert_eq!(
            dec(DataType::CharString, &[3, b'a', b'b', b'c']),
            ZclValue::Text(DataType::CharString, "abc".into())
        );
        assert_eq!(
            dec(DataType::CharString, &[0xff]),
            ZclValue::Invalid(DataType::CharString)
        );
        assert_eq!(
            dec(DataType::LongOctetString, &[2, 0, 9, 8]),
            ZclValue::Octets(DataType::LongOctetString, vec![9, 8])
        );
        assert_eq!(
            ZclValue::decode(DataType::CharString, &[5, b'a']),
            Err(DecodeError::Truncated { needed: 4 })
        );
        let long = ZclValue::Text(DataType::CharString, "x".repeat(255));
        assert_eq!(
            long.encode(&mut Vec::new()),
            Err(EncodeError::TooLong { len: 255, max: 254 })
        );
    }

    #[test]
    fn floats() {
        assert_eq!(
            dec(DataType::SemiFloat, &[0x00, 0x3c]),
            ZclValue::Float(DataType::SemiFloat, 1.0)
        );
        assert_eq!(
            dec(DataType::SingleFloat, &1.5f32.to_le_bytes()),
            ZclValue::Float(DataType::SingleFloat, 1.5)
        );
        assert_eq!(
            dec(DataType::SingleFloat, &f32::NAN.to_le_bytes()),
            ZclValue::Invalid(DataType::SingleFloat)
        );
        assert_eq!(f64_to_half(1.0), 0x3c00);
        assert_eq!(f64_to_half(-2.0), 0xc000);
        assert_eq!(f64_to_half(65504.0), 0x7bff);
        assert_eq!(f64_to_half(1e6), 0x7c00);
    }

    #[test]
    fn fixed_others() {
        assert_eq!(
            dec(DataType::UtcTime, &[1, 0, 0, 0]),
            ZclValue::Unsigned(DataType::UtcTime, 1)
        );
        assert_eq!(
            dec(DataType::Ieee, &[1, 2, 3, 4, 5, 6, 7, 8]),
            ZclValue::Unsigned(DataType::Ieee, 0x0807060504030201)
        );
        let key: Vec<u8> = (0..16).collect();
        let mut k = [0u8; 16];
        k.copy_from_slice(&key);
        assert_eq!(dec(DataType::SecurityKey, &key), ZclValue::SecurityKey(k));
    }

    #[test]
    fn array_and_struct_skipped() {
        // array of 2 uint8
        let a = [0x20, 2, 0, 7, 9];
        assert_eq!(
            dec(DataType::Array, &a),
            ZclValue::Composite(DataType::Array, a.to_vec())
        );
        // struct { uint16 5, char string "hi" }
        let s = [2, 0, 0x21, 5, 0, 0x42, 2, b'h', b'i'];
        assert_eq!(
            dec(DataType::Structure, &s),
            ZclValue::Composite(DataType::Structure, s.to_vec())
        );
        assert_eq!(
            dec(DataType::Array, &[0x20, 0xff, 0xff]),
            ZclValue::Invalid(DataType::Array)
        );
        // unknown element type
        assert_eq!(
            ZclValue::decode(DataType::Array, &[0x77, 1, 0, 0]),
            Err(DecodeError::UnknownType(0x77))
        );
    }

    #[test]
    fn nested_arrays_are_bounded() {
        // array of array of array ... each with one element
        let mut b = Vec::new();
        for _ in 0..10 {
            b.extend_from_slice(&[0x48, 1, 0]);
        }
        b.extend_from_slice(&[0x20, 1, 0, 5]);
        assert_eq!(
            ZclValue::decode(DataType::Array, &b),
            Err(DecodeError::TooDeep(MAX_DEPTH))
        );
        // many nodata elements hit the element budget
        assert_eq!(
            ZclValue::decode(DataType::Array, &[0x00, 0xfe, 0xff]),
            Err(DecodeError::TooMany(MAX_ELEMENTS))
        );
    }

    #[test]
    fn encode_checks_width_and_kind() {
        let mut out = Vec::new();
        assert_eq!(
            ZclValue::Unsigned(DataType::Uint8, 256).encode(&mut out),
            Err(EncodeError::OutOfRange(0x20))
        );
        assert_eq!(
            ZclValue::Unsigned(DataType::Int8, 1).encode(&mut out),
            Err(EncodeError::TypeMismatch(0x28))
        );
        assert_eq!(
            ZclValue::Signed(DataType::Int16, -32768).encode(&mut out),
            Err(EncodeError::OutOfRange(0x29))
        );
        ZclValue::Signed(DataType::Int16, -2)
            .encode_typed(&mut out)
            .unwrap();
        assert_eq!(out, [0x29, 0xfe, 0xff]);
    }
}
