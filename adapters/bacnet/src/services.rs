//! The services Warden uses (clauses 13, 15, 16): parameters encoded and decoded with the
//! tagged primitives of [`crate::tag`]. Each decoder consumes its whole input or fails.

use crate::error::{DecodeError, PResult, finish};
use crate::tag::{self, AppValue, Datum, Lvt, ObjectId};

pub mod confirmed {
    pub const COV_NOTIFICATION: u8 = 1;
    pub const SUBSCRIBE_COV: u8 = 5;
    pub const READ_PROPERTY: u8 = 12;
    pub const READ_PROPERTY_MULTIPLE: u8 = 14;
    pub const WRITE_PROPERTY: u8 = 15;
}

pub mod unconfirmed {
    pub const I_AM: u8 = 0;
    pub const I_HAVE: u8 = 1;
    pub const COV_NOTIFICATION: u8 = 2;
    pub const WHO_HAS: u8 = 7;
    pub const WHO_IS: u8 = 8;
}

/// Property identifiers Warden reads or writes.
pub mod prop {
    pub const APPLICATION_SOFTWARE_VERSION: u32 = 12;
    pub const DESCRIPTION: u32 = 28;
    pub const FIRMWARE_REVISION: u32 = 44;
    pub const MODEL_NAME: u32 = 70;
    pub const NUMBER_OF_STATES: u32 = 74;
    pub const OBJECT_IDENTIFIER: u32 = 75;
    pub const OBJECT_LIST: u32 = 76;
    pub const OBJECT_NAME: u32 = 77;
    pub const OBJECT_TYPE: u32 = 79;
    pub const PRESENT_VALUE: u32 = 85;
    pub const PRIORITY_ARRAY: u32 = 87;
    pub const RELINQUISH_DEFAULT: u32 = 104;
    pub const STATUS_FLAGS: u32 = 111;
    pub const SYSTEM_STATUS: u32 = 112;
    pub const UNITS: u32 = 117;
    pub const VENDOR_IDENTIFIER: u32 = 120;
    pub const VENDOR_NAME: u32 = 121;
}

/// Object types Warden maps to points.
pub mod object {
    pub const ANALOG_INPUT: u16 = 0;
    pub const ANALOG_OUTPUT: u16 = 1;
    pub const ANALOG_VALUE: u16 = 2;
    pub const BINARY_INPUT: u16 = 3;
    pub const BINARY_OUTPUT: u16 = 4;
    pub const BINARY_VALUE: u16 = 5;
    pub const DEVICE: u16 = 8;
    pub const MULTI_STATE_INPUT: u16 = 13;
    pub const MULTI_STATE_OUTPUT: u16 = 14;
    pub const MULTI_STATE_VALUE: u16 = 19;

    pub fn name(kind: u16) -> &'static str {
        match kind {
            ANALOG_INPUT => "analog-input",
            ANALOG_OUTPUT => "analog-output",
            ANALOG_VALUE => "analog-value",
            BINARY_INPUT => "binary-input",
            BINARY_OUTPUT => "binary-output",
            BINARY_VALUE => "binary-value",
            DEVICE => "device",
            MULTI_STATE_INPUT => "multi-state-input",
            MULTI_STATE_OUTPUT => "multi-state-output",
            MULTI_STATE_VALUE => "multi-state-value",
            56 => "network-port",
            _ => "object",
        }
    }

    /// The type a name from [`name`] stands for, or a type number (`130`).
    pub fn from_name(s: &str) -> Option<u16> {
        let known = [
            ANALOG_INPUT,
            ANALOG_OUTPUT,
            ANALOG_VALUE,
            BINARY_INPUT,
            BINARY_OUTPUT,
            BINARY_VALUE,
            DEVICE,
            MULTI_STATE_INPUT,
            MULTI_STATE_OUTPUT,
            MULTI_STATE_VALUE,
            56,
        ];
        if let Some(k) = known.into_iter().find(|k| name(*k) == s) {
            return Some(k);
        }
        if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse::<u16>().ok().filter(|k| *k < 1024);
        }
        None
    }
}

/// `low..=high` instance range of a Who-Is.
pub fn who_is(range: Option<(u32, u32)>) -> Vec<u8> {
    let mut o = Vec::new();
    if let Some((lo, hi)) = range {
        tag::put_context_unsigned(&mut o, 0, u64::from(lo));
        tag::put_context_unsigned(&mut o, 1, u64::from(hi));
    }
    o
}

pub fn decode_who_is(d: &[u8]) -> Result<Option<(u32, u32)>, DecodeError> {
    if d.is_empty() {
        return Ok(None);
    }
    let (r, lo) = finish(tag::context_u32(d, 0))?;
    let (r, hi) = finish(tag::context_u32(r, 1))?;
    done(r)?;
    Ok(Some((lo, hi)))
}

/// The longest object name Warden sends in a Who-Has or takes from an I-Have, in bytes.
pub const MAX_OBJECT_NAME: usize = 255;

/// What Who-Has looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum HasTarget {
    Id(ObjectId),
    Name(String),
}

impl HasTarget {
    /// `type:instance` (`analog-value:1`, `2:1`) is an object identifier; anything else is an
    /// object name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some((t, i)) = s.rsplit_once(':')
            && let Some(kind) = object::from_name(t)
            && !i.is_empty()
            && i.len() <= 8
            && i.bytes().all(|b| b.is_ascii_digit())
        {
            return match i.parse::<u32>() {
                Ok(n) if n <= ObjectId::MAX_INSTANCE => Ok(Self::Id(ObjectId::new(kind, n))),
                _ => Err(format!(
                    "object instance `{i}` is more than {}",
                    ObjectId::MAX_INSTANCE
                )),
            };
        }
        if s.is_empty() || s.len() > MAX_OBJECT_NAME {
            return Err(format!("an object name is 1 to {MAX_OBJECT_NAME} bytes"));
        }
        Ok(Self::Name(s.to_owned()))
    }

    /// Whether an I-Have answers this.
    pub fn matches(&self, h: &IHave) -> bool {
        match self {
            Self::Id(id) => h.object == *id,
            Self::Name(n) => h.name == *n,
        }
    }
}

impl std::fmt::Display for HasTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => match object::name(id.kind) {
                "object" => write!(f, "{}:{}", id.kind, id.instance),
                t => write!(f, "{t}:{}", id.instance),
            },
            Self::Name(n) => write!(f, "`{n}`"),
        }
    }
}

pub fn who_has(range: Option<(u32, u32)>, target: &HasTarget) -> Vec<u8> {
    let mut o = who_is(range);
    match target {
        HasTarget::Id(id) => tag::put_context_object_id(&mut o, 2, *id),
        HasTarget::Name(n) => tag::put_context(&mut o, 3, &AppValue::Text(n.clone())),
    }
    o
}

#[derive(Debug, Clone, PartialEq)]
pub struct IHave {
    pub device: ObjectId,
    pub object: ObjectId,
    pub name: String,
}

pub fn decode_i_have(d: &[u8]) -> Result<IHave, DecodeError> {
    let (r, device) = finish(tag::app_object_id(d))?;
    let (r, object) = finish(tag::app_object_id(r))?;
    let (r, name) = finish(tag::app_text(r))?;
    done(r)?;
    if name.len() > MAX_OBJECT_NAME {
        return Err(DecodeError::Length(name.len() as u64));
    }
    Ok(IHave {
        device,
        object,
        name,
    })
}

pub fn i_have(h: &IHave) -> Vec<u8> {
    let mut o = Vec::new();
    tag::put_app(&mut o, &AppValue::ObjectId(h.device));
    tag::put_app(&mut o, &AppValue::ObjectId(h.object));
    tag::put_app(&mut o, &AppValue::Text(h.name.clone()));
    o
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IAm {
    pub device: ObjectId,
    pub max_apdu: u32,
    pub segmentation: u32,
    pub vendor: u16,
}

pub fn i_am(a: &IAm) -> Vec<u8> {
    let mut o = Vec::new();
    tag::put_app(&mut o, &AppValue::ObjectId(a.device));
    tag::put_app(&mut o, &AppValue::Unsigned(u64::from(a.max_apdu)));
    tag::put_app(&mut o, &AppValue::Enumerated(a.segmentation));
    tag::put_app(&mut o, &AppValue::Unsigned(u64::from(a.vendor)));
    o
}

pub fn decode_i_am(d: &[u8]) -> Result<IAm, DecodeError> {
    let (r, device) = finish(tag::app_object_id(d))?;
    if device.kind != object::DEVICE {
        return Err(DecodeError::Unexpected {
            expected: "a device object identifier",
            found: "another object type",
        });
    }
    let (r, max_apdu) = finish(tag::app_unsigned(r))?;
    let (r, segmentation) = finish(tag::app_enumerated(r))?;
    let (r, vendor) = finish(tag::app_unsigned(r))?;
    done(r)?;
    Ok(IAm {
        device,
        max_apdu: u32::try_from(max_apdu).map_err(|_| DecodeError::Tag("max APDU > 32 bits"))?,
        segmentation,
        vendor: u16::try_from(vendor).map_err(|_| DecodeError::Tag("vendor id > 16 bits"))?,
    })
}

fn done(r: &[u8]) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Trailing(r.len()))
    }
}

/// ReadProperty request parameters.
pub fn read_property(object: ObjectId, property: u32, index: Option<u32>) -> Vec<u8> {
    let mut o = Vec::new();
    tag::put_context_object_id(&mut o, 0, object);
    tag::put_context(&mut o, 1, &AppValue::Enumerated(property));
    if let Some(i) = index {
        tag::put_context_unsigned(&mut o, 2, u64::from(i));
    }
    o
}

/// A ReadProperty-ACK (or one property of a request, for tests and the bench).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyValue {
    pub object: ObjectId,
    pub property: u32,
    pub index: Option<u32>,
    pub value: Vec<Datum>,
}

pub fn read_property_ack(p: &PropertyValue) -> Vec<u8> {
    let mut o = read_property(p.object, p.property, p.index);
    tag::put_open(&mut o, 3);
    tag::put_data(&mut o, &p.value);
    tag::put_close(&mut o, 3);
    o
}

fn enum_ctx(i: &[u8], n: u8) -> PResult<'_, u32> {
    tag::context_u32(i, n)
}

pub fn decode_read_property_ack(d: &[u8]) -> Result<PropertyValue, DecodeError> {
    let (r, object) = finish(tag::context_object_id(d, 0))?;
    let (r, property) = finish(enum_ctx(r, 1))?;
    let (r, index) = finish(tag::opt_context_u32(r, 2))?;
    let (r, ()) = finish(tag::opening(r, 3))?;
    let (r, value) = finish(tag::data(r, Some(3)))?;
    let (r, ()) = finish(tag::closing(r, 3))?;
    done(r)?;
    Ok(PropertyValue {
        object,
        property,
        index,
        value,
    })
}

/// One object's properties in a ReadPropertyMultiple request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSpec {
    pub object: ObjectId,
    pub properties: Vec<(u32, Option<u32>)>,
}

pub fn read_property_multiple(specs: &[ReadSpec]) -> Vec<u8> {
    let mut o = Vec::new();
    for s in specs {
        tag::put_context_object_id(&mut o, 0, s.object);
        tag::put_open(&mut o, 1);
        for (p, idx) in &s.properties {
            tag::put_context(&mut o, 0, &AppValue::Enumerated(*p));
            if let Some(i) = idx {
                tag::put_context_unsigned(&mut o, 1, u64::from(*i));
            }
        }
        tag::put_close(&mut o, 1);
    }
    o
}

/// At most this many object/property pairs are taken from one ReadPropertyMultiple request.
pub const MAX_RPM_REQUESTS: usize = 1024;

/// ReadPropertyMultiple parameters as a device receives them (test devices, fuzzing).
pub fn decode_read_property_multiple(d: &[u8]) -> Result<Vec<ReadSpec>, DecodeError> {
    let mut out = Vec::new();
    let mut pairs = 0usize;
    let mut r = d;
    while !r.is_empty() {
        let (x, object) = finish(tag::context_object_id(r, 0))?;
        let (mut x, ()) = finish(tag::opening(x, 1))?;
        let mut properties = Vec::new();
        while tag::peek_context(x, 1) != Some(Lvt::Close) {
            pairs += 1;
            if pairs > MAX_RPM_REQUESTS {
                return Err(DecodeError::TooMany(MAX_RPM_REQUESTS));
            }
            let (y, p) = finish(enum_ctx(x, 0))?;
            let (y, idx) = finish(tag::opt_context_u32(y, 1))?;
            properties.push((p, idx));
            x = y;
        }
        let (x, ()) = finish(tag::closing(x, 1))?;
        out.push(ReadSpec { object, properties });
        r = x;
    }
    Ok(out)
}

/// ReadProperty parameters as a device receives them.
pub fn decode_read_property(d: &[u8]) -> Result<(ObjectId, u32, Option<u32>), DecodeError> {
    let (r, object) = finish(tag::context_object_id(d, 0))?;
    let (r, property) = finish(enum_ctx(r, 1))?;
    let (r, index) = finish(tag::opt_context_u32(r, 2))?;
    done(r)?;
    Ok((object, property, index))
}

/// SubscribeCOV parameters: process, object, and (confirmed, lifetime) unless it is a
/// cancellation.
pub type Subscription = (u32, ObjectId, Option<(bool, u32)>);

/// SubscribeCOV parameters as a device receives them.
pub fn decode_subscribe_cov(d: &[u8]) -> Result<Subscription, DecodeError> {
    let (r, process) = finish(tag::context_u32(d, 0))?;
    let (r, object) = finish(tag::context_object_id(r, 1))?;
    if r.is_empty() {
        return Ok((process, object, None));
    }
    let (r, confirmed) = finish(tag::context_bool(r, 2))?;
    let (r, lifetime) = finish(tag::context_u32(r, 3))?;
    done(r)?;
    Ok((process, object, Some((confirmed, lifetime))))
}

/// One result of a ReadPropertyMultiple-ACK: the value, or the error class and code.
#[derive(Debug, Clone, PartialEq)]
pub struct RpmResult {
    pub object: ObjectId,
    pub property: u32,
    pub index: Option<u32>,
    pub value: Result<Vec<Datum>, (u32, u32)>,
}

pub fn read_property_multiple_ack(results: &[RpmResult]) -> Vec<u8> {
    let mut o = Vec::new();
    let mut i = 0;
    while let Some(first) = results.get(i) {
        tag::put_context_object_id(&mut o, 0, first.object);
        tag::put_open(&mut o, 1);
        while let Some(r) = results.get(i).filter(|r| r.object == first.object) {
            tag::put_context(&mut o, 2, &AppValue::Enumerated(r.property));
            if let Some(x) = r.index {
                tag::put_context_unsigned(&mut o, 3, u64::from(x));
            }
            match &r.value {
                Ok(v) => {
                    tag::put_open(&mut o, 4);
                    tag::put_data(&mut o, v);
                    tag::put_close(&mut o, 4);
                }
                Err((class, code)) => {
                    tag::put_open(&mut o, 5);
                    tag::put_app(&mut o, &AppValue::Enumerated(*class));
                    tag::put_app(&mut o, &AppValue::Enumerated(*code));
                    tag::put_close(&mut o, 5);
                }
            }
            i += 1;
        }
        tag::put_close(&mut o, 1);
    }
    o
}

/// At most this many results are taken from one ReadPropertyMultiple-ACK.
pub const MAX_RPM_RESULTS: usize = 2048;

pub fn decode_read_property_multiple_ack(d: &[u8]) -> Result<Vec<RpmResult>, DecodeError> {
    let mut out = Vec::new();
    let mut r = d;
    while !r.is_empty() {
        let (x, object) = finish(tag::context_object_id(r, 0))?;
        let (mut x, ()) = finish(tag::opening(x, 1))?;
        loop {
            if tag::peek_context(x, 1) == Some(Lvt::Close) {
                break;
            }
            let (y, property) = finish(enum_ctx(x, 2))?;
            let (y, index) = finish(tag::opt_context_u32(y, 3))?;
            let (y, value) = match tag::peek_context(y, 4) {
                Some(Lvt::Open) => {
                    let (y, ()) = finish(tag::opening(y, 4))?;
                    let (y, v) = finish(tag::data(y, Some(4)))?;
                    let (y, ()) = finish(tag::closing(y, 4))?;
                    (y, Ok(v))
                }
                _ => {
                    let (y, ()) = finish(tag::opening(y, 5))?;
                    let (y, class) = finish(tag::app_enumerated(y))?;
                    let (y, code) = finish(tag::app_enumerated(y))?;
                    let (y, ()) = finish(tag::closing(y, 5))?;
                    (y, Err((class, code)))
                }
            };
            if out.len() >= MAX_RPM_RESULTS {
                return Err(DecodeError::TooMany(MAX_RPM_RESULTS));
            }
            out.push(RpmResult {
                object,
                property,
                index,
                value,
            });
            x = y;
        }
        let (x, ()) = finish(tag::closing(x, 1))?;
        r = x;
    }
    Ok(out)
}

pub fn write_property(
    object: ObjectId,
    property: u32,
    index: Option<u32>,
    value: &AppValue,
    priority: Option<u8>,
) -> Vec<u8> {
    let mut o = read_property(object, property, index);
    tag::put_open(&mut o, 3);
    tag::put_app(&mut o, value);
    tag::put_close(&mut o, 3);
    if let Some(p) = priority {
        tag::put_context_unsigned(&mut o, 4, u64::from(p));
    }
    o
}

/// WriteProperty parameters as a device receives them (tests, fuzzing).
pub fn decode_write_property(d: &[u8]) -> Result<(PropertyValue, Option<u8>), DecodeError> {
    let (r, object) = finish(tag::context_object_id(d, 0))?;
    let (r, property) = finish(enum_ctx(r, 1))?;
    let (r, index) = finish(tag::opt_context_u32(r, 2))?;
    let (r, ()) = finish(tag::opening(r, 3))?;
    let (r, value) = finish(tag::data(r, Some(3)))?;
    let (r, ()) = finish(tag::closing(r, 3))?;
    let (r, priority) = finish(tag::opt_context_u32(r, 4))?;
    done(r)?;
    let priority = match priority {
        None => None,
        Some(p @ 1..=16) => Some(p as u8),
        Some(_) => return Err(DecodeError::Tag("priority outside 1-16")),
    };
    Ok((
        PropertyValue {
            object,
            property,
            index,
            value,
        },
        priority,
    ))
}

/// SubscribeCOV; `None` for `confirmed_and_lifetime` cancels the subscription.
pub fn subscribe_cov(
    process: u32,
    object: ObjectId,
    confirmed_and_lifetime: Option<(bool, u32)>,
) -> Vec<u8> {
    let mut o = Vec::new();
    tag::put_context_unsigned(&mut o, 0, u64::from(process));
    tag::put_context_object_id(&mut o, 1, object);
    if let Some((c, l)) = confirmed_and_lifetime {
        tag::put_context(&mut o, 2, &AppValue::Bool(c));
        tag::put_context_unsigned(&mut o, 3, u64::from(l));
    }
    o
}

/// One changed property in a COV notification: (property, array index, value, priority).
pub type CovValue = (u32, Option<u32>, Vec<Datum>, Option<u32>);

/// A COV notification (confirmed or unconfirmed: same parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct CovNotification {
    pub process: u32,
    pub device: ObjectId,
    pub object: ObjectId,
    pub time_remaining: u32,
    pub values: Vec<CovValue>,
}

pub fn cov_notification(n: &CovNotification) -> Vec<u8> {
    let mut o = Vec::new();
    tag::put_context_unsigned(&mut o, 0, u64::from(n.process));
    tag::put_context_object_id(&mut o, 1, n.device);
    tag::put_context_object_id(&mut o, 2, n.object);
    tag::put_context_unsigned(&mut o, 3, u64::from(n.time_remaining));
    tag::put_open(&mut o, 4);
    for (p, idx, v, prio) in &n.values {
        tag::put_context(&mut o, 0, &AppValue::Enumerated(*p));
        if let Some(i) = idx {
            tag::put_context_unsigned(&mut o, 1, u64::from(*i));
        }
        tag::put_open(&mut o, 2);
        tag::put_data(&mut o, v);
        tag::put_close(&mut o, 2);
        if let Some(pr) = prio {
            tag::put_context_unsigned(&mut o, 3, u64::from(*pr));
        }
    }
    tag::put_close(&mut o, 4);
    o
}

/// At most this many values are taken from one notification.
pub const MAX_COV_VALUES: usize = 64;

pub fn decode_cov_notification(d: &[u8]) -> Result<CovNotification, DecodeError> {
    let (r, process) = finish(tag::context_u32(d, 0))?;
    let (r, device) = finish(tag::context_object_id(r, 1))?;
    let (r, object) = finish(tag::context_object_id(r, 2))?;
    let (r, time_remaining) = finish(tag::context_u32(r, 3))?;
    let (mut r, ()) = finish(tag::opening(r, 4))?;
    let mut values = Vec::new();
    while tag::peek_context(r, 4) != Some(Lvt::Close) {
        if values.len() >= MAX_COV_VALUES {
            return Err(DecodeError::TooMany(MAX_COV_VALUES));
        }
        let (x, p) = finish(enum_ctx(r, 0))?;
        let (x, idx) = finish(tag::opt_context_u32(x, 1))?;
        let (x, ()) = finish(tag::opening(x, 2))?;
        let (x, v) = finish(tag::data(x, Some(2)))?;
        let (x, ()) = finish(tag::closing(x, 2))?;
        let (x, prio) = finish(tag::opt_context_u32(x, 3))?;
        values.push((p, idx, v, prio));
        r = x;
    }
    let (r, ()) = finish(tag::closing(r, 4))?;
    done(r)?;
    Ok(CovNotification {
        process,
        device,
        object,
        time_remaining,
        values,
    })
}

/// Who-Has as a device receives it (fuzzing, tests).
pub fn decode_who_has(d: &[u8]) -> Result<(Option<(u32, u32)>, HasTarget), DecodeError> {
    let (r, range) = if tag::peek_context(d, 0).is_some() {
        let (r, lo) = finish(tag::context_u32(d, 0))?;
        let (r, hi) = finish(tag::context_u32(r, 1))?;
        (r, Some((lo, hi)))
    } else {
        (d, None)
    };
    let (r, t) = if tag::peek_context(r, 2).is_some() {
        let (r, id) = finish(tag::context_object_id(r, 2))?;
        (r, HasTarget::Id(id))
    } else {
        let (r, b) = finish(tag::context_bytes(r, 3))?;
        // reuse the application decoder for the character string content
        let mut enc = Vec::new();
        tag::put_tag(
            &mut enc,
            tag::app::CHARSTRING,
            tag::Class::Application,
            b.len() as u32,
        );
        enc.extend_from_slice(b);
        let (_, s) = finish(tag::app_text(&enc))?;
        (r, HasTarget::Name(s))
    };
    done(r)?;
    Ok((range, t))
}

/// The first primitive of a value, for single-valued properties.
pub fn first_app(v: &[Datum]) -> Option<&AppValue> {
    v.iter().find_map(|d| match d {
        Datum::App(a) => Some(a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::prop;
    use super::*;
    use proptest::prelude::*;

    fn oid() -> impl Strategy<Value = ObjectId> {
        (0u16..1024, 0u32..=ObjectId::MAX_INSTANCE).prop_map(|(k, n)| ObjectId::new(k, n))
    }

    fn small_value() -> impl Strategy<Value = Vec<Datum>> {
        proptest::collection::vec(
            prop_oneof![
                any::<f32>()
                    .prop_filter("nan", |f| !f.is_nan())
                    .prop_map(|f| Datum::App(AppValue::Real(f))),
                any::<u32>().prop_map(|e| Datum::App(AppValue::Enumerated(e))),
                "[a-zA-Z ]{0,20}".prop_map(|s| Datum::App(AppValue::Text(s))),
                Just(Datum::App(AppValue::Null)),
            ],
            0..4,
        )
    }

    #[test]
    fn i_am_from_bacpypes3() {
        // I-Am device,1002 max 1024 segmentation both(0) vendor 999 (as bacpypes3 sends it)
        let d = [
            0xc4, 0x02, 0x00, 0x03, 0xea, 0x22, 0x04, 0x00, 0x91, 0x00, 0x22, 0x03, 0xe7,
        ];
        let a = decode_i_am(&d).unwrap();
        assert_eq!(a.device, ObjectId::new(8, 1002));
        assert_eq!(a.max_apdu, 1024);
        assert_eq!(a.vendor, 999);
        assert_eq!(i_am(&a), d);
        // an I-Am naming an analog input is refused
        let mut bad = d;
        bad[1] = 0x00;
        assert!(decode_i_am(&bad).is_err());
        assert!(decode_i_am(&d[..12]).is_err());
    }

    #[test]
    fn rpm_ack_with_a_property_error() {
        let results = vec![
            RpmResult {
                object: ObjectId::new(0, 1),
                property: prop::PRESENT_VALUE,
                index: None,
                value: Ok(vec![Datum::App(AppValue::Real(20.5))]),
            },
            RpmResult {
                object: ObjectId::new(0, 1),
                property: prop::PRIORITY_ARRAY,
                index: None,
                value: Err((2, 32)),
            },
        ];
        let wire = read_property_multiple_ack(&results);
        assert_eq!(decode_read_property_multiple_ack(&wire).unwrap(), results);
        // cut anywhere: an error, never a panic, never a partial success
        for n in 0..wire.len() {
            let _ = decode_read_property_multiple_ack(&wire[..n]);
        }
        assert!(decode_read_property_multiple_ack(&wire[..wire.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn read_property_ack_round_trips(o in oid(), p in any::<u32>(), i in proptest::option::of(any::<u32>()), v in small_value()) {
            let pv = PropertyValue { object: o, property: p, index: i, value: v };
            prop_assert_eq!(decode_read_property_ack(&read_property_ack(&pv)).unwrap(), pv);
        }

        #[test]
        fn rpm_ack_round_trips(rs in proptest::collection::vec((oid(), any::<u32>(), proptest::option::of(any::<u32>()), small_value(), any::<bool>(), any::<(u32,u32)>()), 0..6)) {
            let results: Vec<RpmResult> = rs.into_iter().map(|(object, property, index, v, ok, e)| RpmResult {
                object, property, index, value: if ok { Ok(v) } else { Err(e) } }).collect();
            prop_assert_eq!(decode_read_property_multiple_ack(&read_property_multiple_ack(&results)).unwrap(), results);
        }

        #[test]
        fn cov_notifications_round_trip(pid in any::<u32>(), d in oid(), o in oid(), t in any::<u32>(),
            vals in proptest::collection::vec((any::<u32>(), proptest::option::of(any::<u32>()), small_value(), proptest::option::of(1u32..17)), 0..5)) {
            let n = CovNotification { process: pid, device: d, object: o, time_remaining: t, values: vals };
            prop_assert_eq!(decode_cov_notification(&cov_notification(&n)).unwrap(), n);
        }

        #[test]
        fn write_property_round_trips(o in oid(), p in any::<u32>(), v in prop_oneof![any::<f32>().prop_filter("nan", |f| !f.is_nan()).prop_map(AppValue::Real), Just(AppValue::Null), any::<u32>().prop_map(AppValue::Enumerated)], prio in proptest::option::of(1u8..17)) {
            let wire = write_property(o, p, None, &v, prio);
            let (pv, back) = decode_write_property(&wire).unwrap();
            prop_assert_eq!(pv.value, vec![Datum::App(v)]);
            prop_assert_eq!(back, prio);
            prop_assert_eq!(pv.object, o);
        }

        #[test]
        fn who_is_and_who_has_round_trip(r in proptest::option::of((0u32..=ObjectId::MAX_INSTANCE, 0u32..=ObjectId::MAX_INSTANCE)), o in oid(), name in "[a-zA-Z0-9]{1,20}", by_name in any::<bool>()) {
            prop_assert_eq!(decode_who_is(&who_is(r)).unwrap(), r);
            let t = if by_name { HasTarget::Name(name) } else { HasTarget::Id(o) };
            prop_assert_eq!(decode_who_has(&who_has(r, &t)).unwrap(), (r, t));
        }

        #[test]
        fn device_side_requests_round_trip(
            specs in proptest::collection::vec((oid(), proptest::collection::vec((any::<u32>(), proptest::option::of(any::<u32>())), 0..5)), 0..5),
            o in oid(), p in any::<u32>(), idx in proptest::option::of(any::<u32>()),
            pid in any::<u32>(), sub in proptest::option::of((any::<bool>(), any::<u32>())),
        ) {
            let specs: Vec<ReadSpec> = specs.into_iter().map(|(object, properties)| ReadSpec { object, properties }).collect();
            prop_assert_eq!(decode_read_property_multiple(&read_property_multiple(&specs)).unwrap(), specs);
            prop_assert_eq!(decode_read_property(&read_property(o, p, idx)).unwrap(), (o, p, idx));
            prop_assert_eq!(decode_subscribe_cov(&subscribe_cov(pid, o, sub)).unwrap(), (pid, o, sub));
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode_i_am(&b);
            let _ = decode_i_have(&b);
            let _ = decode_read_property_ack(&b);
            let _ = decode_read_property_multiple_ack(&b);
            let _ = decode_cov_notification(&b);
            let _ = decode_write_property(&b);
            let _ = decode_who_has(&b);
            let _ = decode_who_is(&b);
            let _ = decode_read_property_multiple(&b);
            let _ = decode_read_property(&b);
            let _ = decode_subscribe_cov(&b);
        }
    }

    #[test]
    fn has_targets_parse_as_an_object_id_or_a_name() {
        assert_eq!(
            HasTarget::parse("analog-value:1").unwrap(),
            HasTarget::Id(ObjectId::new(object::ANALOG_VALUE, 1))
        );
        assert_eq!(
            HasTarget::parse("130:7").unwrap(),
            HasTarget::Id(ObjectId::new(130, 7))
        );
        // not a known type before the colon: a name
        assert_eq!(
            HasTarget::parse("Zone:1").unwrap(),
            HasTarget::Name("Zone:1".into())
        );
        assert_eq!(
            HasTarget::parse("Zone Temp").unwrap(),
            HasTarget::Name("Zone Temp".into())
        );
        assert!(HasTarget::parse("analog-value:4194304").is_err());
        assert!(HasTarget::parse("").is_err());
        assert!(HasTarget::parse(&"n".repeat(MAX_OBJECT_NAME + 1)).is_err());
        for t in ["analog-value:1", "130:7"] {
            assert_eq!(HasTarget::parse(t).unwrap().to_string(), t);
        }
    }

    #[test]
    fn an_i_have_with_an_overlong_name_is_refused() {
        let h = IHave {
            device: ObjectId::new(object::DEVICE, 9),
            object: ObjectId::new(object::ANALOG_VALUE, 1),
            name: "n".repeat(MAX_OBJECT_NAME + 1),
        };
        assert_eq!(
            decode_i_have(&i_have(&h)),
            Err(DecodeError::Length(MAX_OBJECT_NAME as u64 + 1))
        );
        let ok = IHave {
            name: "n".repeat(MAX_OBJECT_NAME),
            ..h
        };
        assert_eq!(decode_i_have(&i_have(&ok)).unwrap(), ok);
    }
}
