//! BACnet's tagged encoding (ASHRAE 135 clause 20.2): the tag header, the application-tagged
//! primitives, context-tagged fields and constructed (opening/closing) data.
//!
//! Every length is checked against the bytes actually present before anything is taken, nesting
//! is bounded by [`MAX_DEPTH`] and the number of elements in one value by [`MAX_ELEMENTS`].

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16, be_u32};

use crate::error::{DecodeError, PResult, fail};

/// How deep constructed data may nest before the value is refused.
pub const MAX_DEPTH: usize = 8;
/// How many elements (primitives and constructed groups) one value may hold.
pub const MAX_ELEMENTS: usize = 4096;

/// A tag's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Application,
    Context,
}

/// What follows a tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lvt {
    /// `n` content octets follow (for an application boolean, the value itself).
    Len(u32),
    Open,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub number: u8,
    pub class: Class,
    pub lvt: Lvt,
}

/// Application tag numbers.
pub mod app {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const UNSIGNED: u8 = 2;
    pub const SIGNED: u8 = 3;
    pub const REAL: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const OCTETS: u8 = 6;
    pub const CHARSTRING: u8 = 7;
    pub const BITSTRING: u8 = 8;
    pub const ENUMERATED: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const OBJECT_ID: u8 = 12;
}

/// An object identifier: 10-bit type, 22-bit instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: u16,
    pub instance: u32,
}

impl ObjectId {
    pub const MAX_INSTANCE: u32 = 0x3f_ffff;

    pub fn new(kind: u16, instance: u32) -> Self {
        Self {
            kind: kind & 0x3ff,
            instance: instance & Self::MAX_INSTANCE,
        }
    }
    pub fn from_u32(v: u32) -> Self {
        Self::new((v >> 22) as u16, v)
    }
    pub fn to_u32(self) -> u32 {
        (u32::from(self.kind) << 22) | self.instance
    }
}

/// An application-tagged primitive value.
#[derive(Debug, Clone, PartialEq)]
pub enum AppValue {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Real(f32),
    Double(f64),
    Octets(Vec<u8>),
    Text(String),
    Bits { unused: u8, bytes: Vec<u8> },
    Enumerated(u32),
    Date([u8; 4]),
    Time([u8; 4]),
    ObjectId(ObjectId),
}

/// One element of a property value: a primitive, an opaque context-tagged primitive, or a
/// constructed group between an opening and a closing tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    App(AppValue),
    Context(u8, Vec<u8>),
    Constructed(u8, Vec<Datum>),
}

// ---------------------------------------------------------------------------------------------
// decoding

/// One tag header, its extended number and length checked.
pub fn tag(i: &[u8]) -> PResult<'_, Tag> {
    let (i, b) = be_u8(i)?;
    let class = if b & 0x08 != 0 {
        Class::Context
    } else {
        Class::Application
    };
    let (i, number) = if b >> 4 == 0x0f {
        let (i, n) = be_u8(i)?;
        if n == 0xff {
            return fail(DecodeError::Tag("extended tag number 255 is reserved"));
        }
        (i, n)
    } else {
        (i, b >> 4)
    };
    let lvt = b & 0x07;
    let (i, lvt) = match lvt {
        0..=4 => (i, Lvt::Len(u32::from(lvt))),
        5 => {
            let (i, l) = be_u8(i)?;
            match l {
                254 => {
                    let (i, l) = be_u16(i)?;
                    (i, Lvt::Len(u32::from(l)))
                }
                255 => {
                    let (i, l) = be_u32(i)?;
                    (i, Lvt::Len(l))
                }
                l => (i, Lvt::Len(u32::from(l))),
            }
        }
        6 | 7 if class == Class::Application && number != app::BOOLEAN => {
            return fail(DecodeError::Tag(
                "opening/closing tag with application class",
            ));
        }
        6 => (i, Lvt::Open),
        _ => (i, Lvt::Close),
    };
    // An application boolean carries its value in the length field; 6/7 are 'true' lengths only
    // for context tags, so an application boolean may only be 0 or 1.
    if class == Class::Application && number == app::BOOLEAN {
        match lvt {
            Lvt::Len(0 | 1) => {}
            _ => return fail(DecodeError::Tag("application boolean must be 0 or 1")),
        }
    }
    Ok((i, Tag { number, class, lvt }))
}

/// Takes `n` content bytes after checking they are present.
fn content(i: &[u8], n: u32) -> PResult<'_, &[u8]> {
    if u64::from(n) > i.len() as u64 {
        return fail(DecodeError::Length(u64::from(n)));
    }
    take(n as usize)(i)
}

fn be_uint(b: &[u8]) -> Result<u64, DecodeError> {
    if b.is_empty() || b.len() > 8 {
        return Err(DecodeError::Tag("unsigned must be 1 to 8 octets"));
    }
    Ok(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
}

fn be_int(b: &[u8]) -> Result<i64, DecodeError> {
    let u = be_uint(b)?;
    let bits = b.len() * 8;
    if bits == 64 {
        return Ok(u as i64);
    }
    let shift = 64 - bits;
    Ok(((u << shift) as i64) >> shift)
}

fn four(b: &[u8]) -> Result<[u8; 4], DecodeError> {
    <[u8; 4]>::try_from(b).map_err(|_| DecodeError::Tag("date/time/object id must be 4 octets"))
}

fn char_string(b: &[u8]) -> Result<String, DecodeError> {
    let Some((&set, rest)) = b.split_first() else {
        return Err(DecodeError::Tag("character string without a character set"));
    };
    match set {
        // ANSI X3.4 / UTF-8
        0 => String::from_utf8(rest.to_vec()).map_err(|_| DecodeError::Tag("invalid UTF-8")),
        // UCS-2, big-endian
        4 => {
            if rest.len() % 2 != 0 {
                return Err(DecodeError::Tag("UCS-2 string with an odd length"));
            }
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| c.iter().fold(0u16, |a, x| (a << 8) | u16::from(*x)))
                .collect();
            String::from_utf16(&units).map_err(|_| DecodeError::Tag("invalid UCS-2"))
        }
        // ISO 8859-1
        5 => Ok(rest.iter().map(|&c| char::from(c)).collect()),
        other => Err(DecodeError::Charset(other)),
    }
}

/// The primitive behind application tag `number` with `len` content bytes.
fn app_primitive(number: u8, len: u32, i: &[u8]) -> PResult<'_, AppValue> {
    if number == app::BOOLEAN {
        return Ok((i, AppValue::Bool(len == 1)));
    }
    let (i, b) = content(i, len)?;
    let v = match number {
        app::NULL if b.is_empty() => AppValue::Null,
        app::NULL => return fail(DecodeError::Tag("null with content")),
        app::UNSIGNED => AppValue::Unsigned(be_uint(b).or_else(fail)?),
        app::SIGNED => AppValue::Signed(be_int(b).or_else(fail)?),
        app::REAL => AppValue::Real(f32::from_be_bytes(four(b).or_else(fail)?)),
        app::DOUBLE => {
            let a = <[u8; 8]>::try_from(b)
                .map_err(|_| nom::Err::Failure(DecodeError::Tag("double must be 8 octets")))?;
            AppValue::Double(f64::from_be_bytes(a))
        }
        app::OCTETS => AppValue::Octets(b.to_vec()),
        app::CHARSTRING => AppValue::Text(char_string(b).or_else(fail)?),
        app::BITSTRING => {
            let Some((&unused, bytes)) = b.split_first() else {
                return fail(DecodeError::Tag("bit string without its unused-bits octet"));
            };
            if unused > 7 || (bytes.is_empty() && unused != 0) {
                return fail(DecodeError::Tag("bit string unused-bits out of range"));
            }
            AppValue::Bits {
                unused,
                bytes: bytes.to_vec(),
            }
        }
        app::ENUMERATED => {
            let v = be_uint(b).or_else(fail)?;
            AppValue::Enumerated(
                u32::try_from(v)
                    .map_err(|_| nom::Err::Failure(DecodeError::Tag("enum > 32 bits")))?,
            )
        }
        app::DATE => AppValue::Date(four(b).or_else(fail)?),
        app::TIME => AppValue::Time(four(b).or_else(fail)?),
        app::OBJECT_ID => AppValue::ObjectId(ObjectId::from_u32(u32::from_be_bytes(
            four(b).or_else(fail)?,
        ))),
        _ => return fail(DecodeError::Tag("reserved application tag")),
    };
    Ok((i, v))
}

/// One application-tagged primitive.
pub fn app_value(i: &[u8]) -> PResult<'_, AppValue> {
    let (rest, t) = tag(i)?;
    match (t.class, t.lvt) {
        (Class::Application, Lvt::Len(n)) => app_primitive(t.number, n, rest),
        _ => fail(DecodeError::Unexpected {
            expected: "an application tag",
            found: "a context tag",
        }),
    }
}

/// Property data up to (not including) the closing tag `close`, or to the end of input when
/// `close` is `None`. Depth and element count are bounded.
pub fn data(i: &[u8], close: Option<u8>) -> PResult<'_, Vec<Datum>> {
    let mut count = 0usize;
    data_at(i, close, 0, &mut count)
}

fn data_at<'a>(
    mut i: &'a [u8],
    close: Option<u8>,
    depth: usize,
    count: &mut usize,
) -> PResult<'a, Vec<Datum>> {
    if depth > MAX_DEPTH {
        return fail(DecodeError::TooDeep(MAX_DEPTH));
    }
    let mut out = Vec::new();
    loop {
        if i.is_empty() {
            return match close {
                None => Ok((i, out)),
                Some(_) => fail(DecodeError::Truncated),
            };
        }
        let (rest, t) = tag(i)?;
        if let Lvt::Close = t.lvt {
            return match close {
                Some(n) if n == t.number => Ok((i, out)),
                _ => fail(DecodeError::Tag("closing tag without its opening tag")),
            };
        }
        *count += 1;
        if *count > MAX_ELEMENTS {
            return fail(DecodeError::TooMany(MAX_ELEMENTS));
        }
        match (t.class, t.lvt) {
            (_, Lvt::Open) => {
                let (r, inner) = data_at(rest, Some(t.number), depth + 1, count)?;
                let (r, _) = closing(r, t.number)?;
                out.push(Datum::Constructed(t.number, inner));
                i = r;
            }
            (Class::Application, Lvt::Len(n)) => {
                let (r, v) = app_primitive(t.number, n, rest)?;
                out.push(Datum::App(v));
                i = r;
            }
            (Class::Context, Lvt::Len(n)) => {
                let (r, b) = content(rest, n)?;
                out.push(Datum::Context(t.number, b.to_vec()));
                i = r;
            }
            (_, Lvt::Close) => unreachable_close()?,
        }
    }
}

// `Lvt::Close` is handled before the match; this keeps the match exhaustive without a panic.
fn unreachable_close() -> Result<(), nom::Err<DecodeError>> {
    fail(DecodeError::Tag("closing tag"))
}

/// An opening tag with context number `n`.
pub fn opening(i: &[u8], n: u8) -> PResult<'_, ()> {
    let (r, t) = tag(i)?;
    if t.class == Class::Context && t.lvt == Lvt::Open && t.number == n {
        Ok((r, ()))
    } else {
        fail(DecodeError::Unexpected {
            expected: "an opening tag",
            found: describe(&t),
        })
    }
}

/// A closing tag with context number `n`.
pub fn closing(i: &[u8], n: u8) -> PResult<'_, ()> {
    let (r, t) = tag(i)?;
    if t.class == Class::Context && t.lvt == Lvt::Close && t.number == n {
        Ok((r, ()))
    } else {
        fail(DecodeError::Unexpected {
            expected: "a closing tag",
            found: describe(&t),
        })
    }
}

fn describe(t: &Tag) -> &'static str {
    match (t.class, t.lvt) {
        (_, Lvt::Open) => "an opening tag",
        (_, Lvt::Close) => "a closing tag",
        (Class::Application, _) => "an application tag",
        (Class::Context, _) => "another context tag",
    }
}

/// Whether the next tag is context tag `n` (primitive, opening or closing).
pub fn peek_context(i: &[u8], n: u8) -> Option<Lvt> {
    match tag(i) {
        Ok((_, t)) if t.class == Class::Context && t.number == n => Some(t.lvt),
        _ => None,
    }
}

/// The content bytes of context primitive `n`.
pub fn context_bytes(i: &[u8], n: u8) -> PResult<'_, &[u8]> {
    let (r, t) = tag(i)?;
    match (t.class, t.lvt) {
        (Class::Context, Lvt::Len(len)) if t.number == n => content(r, len),
        _ => fail(DecodeError::Unexpected {
            expected: "a context tag",
            found: describe(&t),
        }),
    }
}

pub fn context_unsigned(i: &[u8], n: u8) -> PResult<'_, u64> {
    let (r, b) = context_bytes(i, n)?;
    Ok((r, be_uint(b).or_else(fail)?))
}

pub fn context_u32(i: &[u8], n: u8) -> PResult<'_, u32> {
    let (r, v) = context_unsigned(i, n)?;
    let v = u32::try_from(v).map_err(|_| nom::Err::Failure(DecodeError::Tag("value > 32 bits")))?;
    Ok((r, v))
}

pub fn context_object_id(i: &[u8], n: u8) -> PResult<'_, ObjectId> {
    let (r, b) = context_bytes(i, n)?;
    Ok((
        r,
        ObjectId::from_u32(u32::from_be_bytes(four(b).or_else(fail)?)),
    ))
}

pub fn context_bool(i: &[u8], n: u8) -> PResult<'_, bool> {
    let (r, b) = context_bytes(i, n)?;
    match b {
        [0] => Ok((r, false)),
        [1] => Ok((r, true)),
        _ => fail(DecodeError::Tag("context boolean must be one octet 0 or 1")),
    }
}

/// An optional context unsigned `n`.
pub fn opt_context_u32(i: &[u8], n: u8) -> PResult<'_, Option<u32>> {
    match peek_context(i, n) {
        Some(Lvt::Len(_)) => {
            let (r, v) = context_u32(i, n)?;
            Ok((r, Some(v)))
        }
        _ => Ok((i, None)),
    }
}

/// Application-tagged value of a specific type, for fixed service layouts.
pub fn app_unsigned(i: &[u8]) -> PResult<'_, u64> {
    match app_value(i)? {
        (r, AppValue::Unsigned(v)) => Ok((r, v)),
        _ => fail(DecodeError::Unexpected {
            expected: "an unsigned",
            found: "another type",
        }),
    }
}
pub fn app_enumerated(i: &[u8]) -> PResult<'_, u32> {
    match app_value(i)? {
        (r, AppValue::Enumerated(v)) => Ok((r, v)),
        _ => fail(DecodeError::Unexpected {
            expected: "an enumerated",
            found: "another type",
        }),
    }
}
pub fn app_object_id(i: &[u8]) -> PResult<'_, ObjectId> {
    match app_value(i)? {
        (r, AppValue::ObjectId(v)) => Ok((r, v)),
        _ => fail(DecodeError::Unexpected {
            expected: "an object identifier",
            found: "another type",
        }),
    }
}
pub fn app_text(i: &[u8]) -> PResult<'_, String> {
    match app_value(i)? {
        (r, AppValue::Text(v)) => Ok((r, v)),
        _ => fail(DecodeError::Unexpected {
            expected: "a character string",
            found: "another type",
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// encoding

/// A tag header.
pub fn put_tag(out: &mut Vec<u8>, number: u8, class: Class, len: u32) {
    let cls = if class == Class::Context { 0x08 } else { 0 };
    let (first, ext) = if number >= 15 {
        (0xf0, Some(number))
    } else {
        (number << 4, None)
    };
    if len <= 4 {
        out.push(first | cls | len as u8);
        out.extend(ext);
    } else {
        out.push(first | cls | 5);
        out.extend(ext);
        if len < 254 {
            out.push(len as u8);
        } else if len <= 0xffff {
            out.push(254);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(255);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

pub fn put_open(out: &mut Vec<u8>, n: u8) {
    put_marker(out, n, 6);
}
pub fn put_close(out: &mut Vec<u8>, n: u8) {
    put_marker(out, n, 7);
}
fn put_marker(out: &mut Vec<u8>, n: u8, lvt: u8) {
    if n >= 15 {
        out.push(0xf8 | lvt);
        out.push(n);
    } else {
        out.push((n << 4) | 0x08 | lvt);
    }
}

fn min_be(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take(7).take_while(|x| **x == 0).count();
    b.get(skip..).map(<[u8]>::to_vec).unwrap_or_default()
}

fn min_be_signed(v: i64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (Some(&cur), Some(&next)) = (b.get(start), b.get(start + 1)) else {
            break;
        };
        let redundant = (cur == 0 && next & 0x80 == 0) || (cur == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    b.get(start..).map(<[u8]>::to_vec).unwrap_or_default()
}

fn char_bytes(s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + 1);
    b.push(0);
    b.extend_from_slice(s.as_bytes());
    b
}

/// The content octets of a primitive (not for booleans, whose value sits in the tag).
fn primitive_bytes(v: &AppValue) -> Vec<u8> {
    match v {
        AppValue::Null | AppValue::Bool(_) => Vec::new(),
        AppValue::Unsigned(u) => min_be(*u),
        AppValue::Signed(s) => min_be_signed(*s),
        AppValue::Real(f) => f.to_be_bytes().to_vec(),
        AppValue::Double(d) => d.to_be_bytes().to_vec(),
        AppValue::Octets(b) => b.clone(),
        AppValue::Text(s) => char_bytes(s),
        AppValue::Bits { unused, bytes } => {
            let mut b = vec![*unused];
            b.extend_from_slice(bytes);
            b
        }
        AppValue::Enumerated(e) => min_be(u64::from(*e)),
        AppValue::Date(d) | AppValue::Time(d) => d.to_vec(),
        AppValue::ObjectId(o) => o.to_u32().to_be_bytes().to_vec(),
    }
}

pub fn app_number(v: &AppValue) -> u8 {
    match v {
        AppValue::Null => app::NULL,
        AppValue::Bool(_) => app::BOOLEAN,
        AppValue::Unsigned(_) => app::UNSIGNED,
        AppValue::Signed(_) => app::SIGNED,
        AppValue::Real(_) => app::REAL,
        AppValue::Double(_) => app::DOUBLE,
        AppValue::Octets(_) => app::OCTETS,
        AppValue::Text(_) => app::CHARSTRING,
        AppValue::Bits { .. } => app::BITSTRING,
        AppValue::Enumerated(_) => app::ENUMERATED,
        AppValue::Date(_) => app::DATE,
        AppValue::Time(_) => app::TIME,
        AppValue::ObjectId(_) => app::OBJECT_ID,
    }
}

/// An application-tagged primitive.
pub fn put_app(out: &mut Vec<u8>, v: &AppValue) {
    if let AppValue::Bool(b) = v {
        put_tag(out, app::BOOLEAN, Class::Application, u32::from(*b));
        return;
    }
    let b = primitive_bytes(v);
    put_tag(out, app_number(v), Class::Application, b.len() as u32);
    out.extend_from_slice(&b);
}

/// A context-tagged primitive (a boolean as one content octet).
pub fn put_context(out: &mut Vec<u8>, n: u8, v: &AppValue) {
    let b = match v {
        AppValue::Bool(x) => vec![u8::from(*x)],
        other => primitive_bytes(other),
    };
    put_tag(out, n, Class::Context, b.len() as u32);
    out.extend_from_slice(&b);
}

pub fn put_context_unsigned(out: &mut Vec<u8>, n: u8, v: u64) {
    put_context(out, n, &AppValue::Unsigned(v));
}
pub fn put_context_object_id(out: &mut Vec<u8>, n: u8, o: ObjectId) {
    put_context(out, n, &AppValue::ObjectId(o));
}

/// Property data, as [`data`] decodes it.
pub fn put_data(out: &mut Vec<u8>, d: &[Datum]) {
    for x in d {
        match x {
            Datum::App(v) => put_app(out, v),
            Datum::Context(n, b) => {
                put_tag(out, *n, Class::Context, b.len() as u32);
                out.extend_from_slice(b);
            }
            Datum::Constructed(n, inner) => {
                put_open(out, *n);
                put_data(out, inner);
                put_close(out, *n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::error::finish;

    fn enc(v: &AppValue) -> Vec<u8> {
        let mut o = Vec::new();
        put_app(&mut o, v);
        o
    }

    #[test]
    fn spec_examples_encode_as_clause_20_2_shows() {
        // 20.2.4: Unsigned 72 = X'21 48'
        assert_eq!(enc(&AppValue::Unsigned(72)), [0x21, 0x48]);
        // 20.2.5: Signed 72 = X'31 48', -1 = X'31 FF'
        assert_eq!(enc(&AppValue::Signed(72)), [0x31, 0x48]);
        assert_eq!(enc(&AppValue::Signed(-1)), [0x31, 0xff]);
        assert_eq!(enc(&AppValue::Signed(128)), [0x32, 0x00, 0x80]);
        // 20.2.6: Real 72.0 = X'44 42900000'
        assert_eq!(enc(&AppValue::Real(72.0)), [0x44, 0x42, 0x90, 0x00, 0x00]);
        // 20.2.3: Boolean true = X'11'
        assert_eq!(enc(&AppValue::Bool(true)), [0x11]);
        // 20.2.14: ObjectIdentifier (analog-input, 15) = X'C4 0000000F'
        assert_eq!(
            enc(&AppValue::ObjectId(ObjectId::new(0, 15))),
            [0xc4, 0, 0, 0, 0x0f]
        );
        // 20.2.11: Enumerated 0 = X'91 00'
        assert_eq!(enc(&AppValue::Enumerated(0)), [0x91, 0x00]);
        // 20.2.9: "This is a BACnet string!" = X'75 19 00 ...'
        let s = enc(&AppValue::Text("This is a BACnet string!".into()));
        assert_eq!(&s[..3], &[0x75, 0x19, 0x00]);
        // context boolean: X'09 01' for [0] true
        let mut o = Vec::new();
        put_context(&mut o, 0, &AppValue::Bool(true));
        assert_eq!(o, [0x09, 0x01]);
    }

    #[test]
    fn lengths_beyond_the_frame_are_refused() {
        // octet string claiming 200 bytes, 2 present
        assert_eq!(
            finish(app_value(&[0x65, 200, 1, 2])).unwrap_err(),
            DecodeError::Length(200)
        );
        // 4-byte extended length claiming 4 GiB
        assert_eq!(
            finish(app_value(&[0x65, 255, 0xff, 0xff, 0xff, 0xff])).unwrap_err(),
            DecodeError::Length(0xffff_ffff)
        );
        // truncated extended length
        assert_eq!(
            finish(app_value(&[0x65, 254, 0x01])).unwrap_err(),
            DecodeError::Truncated
        );
        // real with 3 octets
        assert!(matches!(
            finish(app_value(&[0x43, 1, 2, 3])).unwrap_err(),
            DecodeError::Tag(_)
        ));
        // unsigned with 9 octets
        assert!(finish(app_value(&[0x25, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9])).is_err());
        // application boolean with length 2
        assert!(finish(app_value(&[0x12])).is_err());
        // reserved application tag 13
        assert!(finish(app_value(&[0xd1, 0])).is_err());
    }

    #[test]
    fn nesting_is_bounded_and_tags_must_pair() {
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            put_open(&mut deep, 3);
        }
        for _ in 0..=MAX_DEPTH + 1 {
            put_close(&mut deep, 3);
        }
        assert_eq!(
            finish(data(&deep, None)).unwrap_err(),
            DecodeError::TooDeep(MAX_DEPTH)
        );
        // opened [3], closed [4]
        assert!(finish(data(&[0x3e, 0x21, 0x01, 0x4f], None)).is_err());
        // opened and never closed
        assert_eq!(
            finish(data(&[0x3e, 0x21, 0x01], None)).unwrap_err(),
            DecodeError::Truncated
        );
        // a runaway sequence of empty constructed groups stops at the element cap
        let mut many = Vec::new();
        for _ in 0..=MAX_ELEMENTS {
            many.extend_from_slice(&[0x0e, 0x0f]);
        }
        assert_eq!(
            finish(data(&many, None)).unwrap_err(),
            DecodeError::TooMany(MAX_ELEMENTS)
        );
    }

    #[test]
    fn strings_in_other_charsets() {
        // UCS-2 "Hi"
        let (_, v) = finish(app_value(&[0x75, 5, 4, 0, b'H', 0, b'i'])).unwrap();
        assert_eq!(v, AppValue::Text("Hi".into()));
        // ISO 8859-1 "é"
        let (_, v) = finish(app_value(&[0x72, 5, 0xe9])).unwrap();
        assert_eq!(v, AppValue::Text("é".into()));
        assert_eq!(
            finish(app_value(&[0x72, 3, 0x41])).unwrap_err(),
            DecodeError::Charset(3)
        );
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::finish;
    use proptest::prelude::*;

    pub fn app_value_strategy() -> impl Strategy<Value = AppValue> {
        prop_oneof![
            Just(AppValue::Null),
            any::<bool>().prop_map(AppValue::Bool),
            any::<u64>().prop_map(AppValue::Unsigned),
            any::<i64>().prop_map(AppValue::Signed),
            any::<f32>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(AppValue::Real),
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(AppValue::Double),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(AppValue::Octets),
            ".{0,80}".prop_map(AppValue::Text),
            (0u8..8, proptest::collection::vec(any::<u8>(), 1..6))
                .prop_map(|(unused, bytes)| AppValue::Bits { unused, bytes }),
            any::<u32>().prop_map(AppValue::Enumerated),
            any::<[u8; 4]>().prop_map(AppValue::Date),
            any::<[u8; 4]>().prop_map(AppValue::Time),
            (0u16..1024, 0u32..=ObjectId::MAX_INSTANCE)
                .prop_map(|(k, n)| AppValue::ObjectId(ObjectId::new(k, n))),
        ]
    }

    fn datum() -> impl Strategy<Value = Datum> {
        let leaf = prop_oneof![
            app_value_strategy().prop_map(Datum::App),
            (0u8..40, proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(n, b)| Datum::Context(n, b)),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            (0u8..40, proptest::collection::vec(inner, 0..6))
                .prop_map(|(n, v)| Datum::Constructed(n, v))
        })
    }

    proptest! {
        #[test]
        fn app_values_round_trip(v in app_value_strategy()) {
            let mut b = Vec::new();
            put_app(&mut b, &v);
            let (rest, back) = finish(app_value(&b)).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(back, v);
        }

        #[test]
        fn property_data_round_trips(d in proptest::collection::vec(datum(), 0..8)) {
            let mut b = Vec::new();
            put_data(&mut b, &d);
            let (rest, back) = finish(data(&b, None)).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(back, d);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = data(&b, None);
            let _ = app_value(&b);
        }
    }
}
