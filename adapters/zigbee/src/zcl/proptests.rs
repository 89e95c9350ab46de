//! Property tests: encode→decode round trips for headers and every data type, arbitrary bytes into
//! every decoder without panics, and bounded nesting of composite values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::clusters::ZoneStatusChange;
use super::commands::{Arg, command};
use super::error::DecodeError;
use super::frame::{Direction, FrameType, ZclHeader, decode_frame};
use super::global;
use super::normalise::{DeviceContext, POINTS, normalise};
use super::types::{DataType, MAX_DEPTH, ValueKind, ZclValue, f64_to_half, half_to_f64};

fn header() -> impl Strategy<Value = ZclHeader> {
    (
        any::<bool>(),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(cs, manufacturer, s2c, ddr, tsn, command)| ZclHeader {
            frame_type: if cs {
                FrameType::ClusterSpecific
            } else {
                FrameType::Global
            },
            manufacturer,
            direction: if s2c {
                Direction::ServerToClient
            } else {
                Direction::ClientToServer
            },
            disable_default_response: ddr,
            tsn,
            command,
        })
}

/// A valid (non-sentinel) value of `ty`, or the type's invalid value.
fn value_of(ty: DataType) -> BoxedStrategy<ZclValue> {
    let n = ty.fixed_len().unwrap_or(0);
    let valid: BoxedStrategy<ZclValue> = match ty.kind() {
        ValueKind::NoData => Just(ZclValue::NoData).boxed(),
        ValueKind::Bool => any::<bool>().prop_map(ZclValue::Bool).boxed(),
        ValueKind::Unsigned => {
            let max = if n >= 8 {
                u64::MAX
            } else {
                (1u64 << (n * 8)) - 1
            };
            let sentinel = ZclValue::Unsigned(ty, max).encode(&mut Vec::new()).is_err();
            let hi = if sentinel { max - 1 } else { max };
            (0..=hi)
                .prop_map(move |v| ZclValue::Unsigned(ty, v))
                .boxed()
        }
        ValueKind::Signed => {
            let bits = n * 8;
            let (lo, hi) = if bits >= 64 {
                (i64::MIN + 1, i64::MAX)
            } else {
                (-(1i64 << (bits - 1)) + 1, (1i64 << (bits - 1)) - 1)
            };
            (lo..=hi).prop_map(move |v| ZclValue::Signed(ty, v)).boxed()
        }
        ValueKind::Float => match ty {
            DataType::SemiFloat => any::<u16>()
                .prop_filter("not NaN", |h| !half_to_f64(*h).is_nan())
                .prop_map(|h| ZclValue::Float(DataType::SemiFloat, half_to_f64(h)))
                .boxed(),
            DataType::SingleFloat => any::<f32>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(|f| ZclValue::Float(DataType::SingleFloat, f64::from(f)))
                .boxed(),
            _ => any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(|f| ZclValue::Float(DataType::DoubleFloat, f))
                .boxed(),
        },
        ValueKind::Octets => proptest::collection::vec(any::<u8>(), 0..=254)
            .prop_map(move |b| ZclValue::Octets(ty, b))
            .boxed(),
        ValueKind::Text => "[a-zA-Z0-9 .°µ-]{0,60}"
            .prop_map(move |s| ZclValue::Text(ty, s))
            .boxed(),
        ValueKind::Composite => match ty {
            DataType::Structure => (any::<u16>(), any::<bool>())
                .prop_map(|(a, b)| {
                    let mut raw = vec![2, 0, 0x21];
                    raw.extend_from_slice(&a.to_le_bytes());
                    raw.extend_from_slice(&[0x10, u8::from(b)]);
                    ZclValue::Composite(DataType::Structure, raw)
                })
                .boxed(),
            _ => proptest::collection::vec(0u8..0xff, 0..20)
                .prop_map(move |items| {
                    let mut raw = vec![0x20];
                    raw.extend_from_slice(&(items.len() as u16).to_le_bytes());
                    raw.extend_from_slice(&items);
                    ZclValue::Composite(ty, raw)
                })
                .boxed(),
        },
        ValueKind::SecurityKey => any::<[u8; 16]>().prop_map(ZclValue::SecurityKey).boxed(),
    };
    let has_invalid = ty.has_invalid();
    if has_invalid {
        prop_oneof![9 => valid, 1 => Just(ZclValue::Invalid(ty))].boxed()
    } else {
        valid
    }
}

fn any_value() -> impl Strategy<Value = ZclValue> {
    proptest::sample::select(DataType::ALL).prop_flat_map(value_of)
}

proptest! {
    #[test]
    fn header_round_trip(h in header(), payload in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut b = Vec::new();
        h.encode(&mut b);
        b.extend_from_slice(&payload);
        let (d, rest) = ZclHeader::decode(&b).unwrap();
        prop_assert_eq!(d, h);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn value_round_trip(v in any_value()) {
        let mut b = Vec::new();
        v.encode_typed(&mut b).unwrap();
        let (d, used) = ZclValue::decode_typed(&b).unwrap();
        prop_assert_eq!(used, b.len());
        prop_assert_eq!(d, v);
    }

    #[test]
    fn report_round_trip(vals in proptest::collection::vec((any::<u16>(), any_value()), 0..8)) {
        let reports: Vec<_> = vals
            .into_iter()
            .map(|(attr, value)| global::AttributeReport { attr, value })
            .collect();
        let p = global::encode_report_attributes(&reports).unwrap();
        let d = global::decode_report_attributes(&p);
        prop_assert_eq!(d.stopped, None);
        prop_assert_eq!(d.items, reports);
    }

    #[test]
    fn invalid_round_trips(ty in proptest::sample::select(DataType::ALL)) {
        let mut b = Vec::new();
        let v = ZclValue::Invalid(ty);
        match v.encode(&mut b) {
            Ok(()) => prop_assert_eq!(ZclValue::decode(ty, &b).unwrap(), (v, b.len())),
            Err(_) => prop_assert!(!ty.has_invalid()),
        }
    }

    #[test]
    fn half_round_trip(h in any::<u16>()) {
        let f = half_to_f64(h);
        prop_assume!(!f.is_nan());
        prop_assert_eq!(f64_to_half(f), h);
    }

    #[test]
    fn decoders_never_panic(cluster in any::<u16>(), b in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = decode_frame(cluster, &b);
        let _ = decode_frame(0x0500, &b);
        let _ = ZclValue::decode_typed(&b);
        for ty in DataType::ALL {
            let _ = ZclValue::decode(*ty, &b);
        }
        let _ = ZoneStatusChange::decode(&b);
        let _ = global::decode_read_attributes(&b);
        let _ = global::decode_read_attributes_response(&b);
        let _ = global::decode_report_attributes(&b);
        let _ = global::decode_status_records(&b, true);
        let _ = global::decode_status_records(&b, false);
        let _ = ZclHeader::decode(&b);
    }

    #[test]
    fn report_frames_with_random_records_never_panic(b in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut f = vec![0x18, 1, 0x0a];
        f.extend_from_slice(&b);
        let _ = decode_frame(0x0402, &f);
        let mut f = vec![0x18, 1, 0x01];
        f.extend_from_slice(&b);
        let _ = decode_frame(0x0000, &f);
    }

    #[test]
    fn nesting_is_bounded(depth in 0usize..12) {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(&[0x48, 1, 0]);
        }
        b.extend_from_slice(&[0x20, 1, 0, 5]);
        let r = ZclValue::decode(DataType::Array, &b);
        if depth + 1 > MAX_DEPTH {
            prop_assert_eq!(r, Err(DecodeError::TooDeep(MAX_DEPTH)));
        } else {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn normalise_never_panics(row in 0..POINTS.len(), v in any_value(), zt in proptest::option::of(any::<u16>())) {
        let p = &POINTS[row];
        let ctx = DeviceContext { zone_type: zt, ..Default::default() };
        let _ = normalise(p.cluster, p.attr, &v, &ctx, &[]);
    }

    #[test]
    fn commands_never_panic(
        name in proptest::sample::select(super::commands::COMMANDS),
        n in proptest::collection::vec((proptest::sample::select(&["level", "transition_s", "mireds", "kelvin", "x", "y", "hue", "saturation", "value"][..]), any::<f64>()), 0..4),
    ) {
        let args: Vec<(&str, Arg<'_>)> = n.iter().map(|(k, v)| (*k, Arg::Num(*v))).collect();
        let _ = command(name, &args);
    }
}
