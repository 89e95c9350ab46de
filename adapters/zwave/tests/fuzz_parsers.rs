//! Fuzz-style property tests over every parser of untrusted input in the Z-Wave adapter: the
//! Serial API stream decoder, every Serial API function parser and every command-class decoder,
//! and the command encoder over arbitrary names and arguments. Arbitrary bytes never panic; frames
//! round trip; the stream decoder yields the same units however the bytes are split and finds
//! real frames after garbage; a sensor value survives encode → decode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use warden_core::{Command, Point, Value};
use warden_zwave::cc;
use warden_zwave::frame::{Decoder, Frame, FrameType, MAX_DATA, Unit};
use warden_zwave::func;

const CASES: u32 = 1024;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<bool>(), any::<u8>(), bytes(MAX_DATA + 1)).prop_map(|(req, func, data)| Frame {
        kind: if req {
            FrameType::Request
        } else {
            FrameType::Response
        },
        func,
        data,
    })
}

/// Command classes Warden decodes, plus some it does not.
const CCS: &[u8] = &[
    0x20, 0x25, 0x26, 0x30, 0x31, 0x32, 0x40, 0x43, 0x5b, 0x62, 0x70, 0x71, 0x72, 0x80, 0x84, 0x85,
    0x86, 0x98, 0x9f, 0x5e, 0x00, 0xff,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn frames_round_trip_through_the_decoder(f in frame()) {
        let wire = f.encode().unwrap();
        let mut d = Decoder::new();
        prop_assert_eq!(d.push(&wire), vec![Unit::Frame(f)]);
        prop_assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_decoder_gives_the_same_units_however_the_stream_is_split(
        frames in proptest::collection::vec(frame(), 1..6),
        noise in bytes(16),
        cuts in proptest::collection::vec(1usize..40, 1..20),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.push(0x06);
            stream.extend(f.encode().unwrap());
        }
        let whole = Decoder::new().push(&stream);
        let mut d = Decoder::new();
        let mut split = Vec::new();
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at >= stream.len() { break; }
            let end = (at + c).min(stream.len());
            split.extend(d.push(&stream[at..end]));
            at = end;
        }
        prop_assert_eq!(&whole, &split);
        let got: Vec<Frame> = whole.into_iter().filter_map(|u| match u {
            Unit::Frame(f) => Some(f),
            _ => None,
        }).collect();
        prop_assert_eq!(got, frames.clone());

        // Garbage that starts nothing, then the frames: every frame is still found.
        let mut dirty: Vec<u8> = noise.iter().map(|b| if matches!(b, 0x01 | 0x06 | 0x15 | 0x18) { 0x42 } else { *b }).collect();
        dirty.extend(&stream);
        let found = Decoder::new().push(&dirty).into_iter().filter(|u| matches!(u, Unit::Frame(_))).count();
        prop_assert_eq!(found, frames.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_and_memory_stays_bounded(
        chunks in proptest::collection::vec(bytes(300), 0..8)
    ) {
        let mut d = Decoder::new();
        for c in &chunks {
            let _ = d.push(c);
            prop_assert!(d.pending() <= 257);
        }
    }

    #[test]
    fn every_serial_api_parser_survives_arbitrary_data(data in bytes(300)) {
        let _ = func::parse_version(&data);
        let _ = func::parse_memory_id(&data);
        let _ = func::parse_capabilities(&data);
        if let Ok(nodes) = func::parse_init_data(&data) {
            prop_assert!(nodes.iter().all(|n| (1..=232).contains(n)));
        }
        let _ = func::parse_protocol_info(&data);
        let _ = func::parse_application_update(&data);
        for f in [func::APPLICATION_COMMAND_HANDLER, func::APPLICATION_COMMAND_HANDLER_BRIDGE] {
            if let Ok(i) = func::parse_command_handler(f, &data) {
                prop_assert!(!i.payload.is_empty() && i.payload.len() <= func::MAX_PAYLOAD);
                prop_assert!((1..=232).contains(&i.source));
            }
        }
        let _ = func::parse_inclusion_callback(&data);
    }

    #[test]
    fn every_command_class_decoder_survives_arbitrary_payloads(
        class in proptest::sample::select(CCS), command in any::<u8>(), rest in bytes(64)
    ) {
        let mut p = vec![class, command];
        p.extend(rest);
        if let Ok(cc::Report::Points(points)) = cc::decode(&p) {
            for pt in points {
                prop_assert!(!pt.name.is_empty() && pt.name.len() <= 32);
                if let Value::Float(f) = pt.value { prop_assert!(f.is_finite()); }
            }
        }
        // and every truncation of it
        for n in 0..p.len() {
            let _ = cc::decode(&p[..n]);
        }
    }

    #[test]
    fn multilevel_sensor_values_survive_encode_then_decode(
        v in -2_000_000_000i32..2_000_000_000, precision in 0u8..4, size_pick in 0usize..3
    ) {
        let size = [1u8, 2, 4][size_pick];
        let v = match size { 1 => v.clamp(-128, 127), 2 => v.clamp(-32768, 32767), _ => v };
        let mut p = vec![0x31, 0x05, 0x01, (precision << 5) | size];
        match size {
            1 => p.push(v as i8 as u8),
            2 => p.extend((v as i16).to_be_bytes()),
            _ => p.extend(v.to_be_bytes()),
        }
        let cc::Report::Points(pts) = cc::decode(&p).unwrap() else { panic!() };
        let Value::Float(got) = pts[0].value else { panic!() };
        let want = f64::from(v) / 10f64.powi(i32::from(precision));
        prop_assert!((got - want).abs() < 1e-6, "{} vs {}", got, want);
    }

    #[test]
    fn the_command_encoder_never_panics_and_bounds_what_it_sends(
        name in proptest::sample::select(&["turn_on", "turn_off", "set_level", "lock", "unlock",
            "set_setpoint", "set_mode", "set_config", "refresh", "bogus"][..]),
        args in proptest::collection::vec(
            (proptest::sample::select(&["level", "value", "mode", "parameter", "x"][..]),
             prop_oneof![any::<i64>().prop_map(Value::Int), any::<f64>().prop_map(Value::Float),
                         "[a-z0-9.]{0,12}".prop_map(Value::Text), any::<bool>().prop_map(Value::Bool)]),
            0..4),
        supported in proptest::collection::vec(proptest::sample::select(CCS), 0..8),
    ) {
        let c = Command {
            name: name.to_owned(),
            args: args.into_iter().map(|(n, v)| Point::new(n, v)).collect(),
        };
        if let Ok(payload) = cc::command(&c, &supported) {
            prop_assert!(payload.len() >= 2 && payload.len() <= 8);
            prop_assert!(supported.contains(&payload[0]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The fuzz target's body on stable: arbitrary bytes, and S2-looking frames (the header right,
    /// a SPAN extension, the rest random) so decapsulation reaches its AES-CCM step.
    #[test]
    fn the_fuzz_body_never_panics(b in bytes(300), s2 in bytes(80), cut in any::<u8>()) {
        warden_zwave::fuzzing::one(&b);
        let mut frame = vec![cut, 0x9f, 0x03, 0x01, 0x01, 0x12, 0x41];
        frame.extend_from_slice(&s2);
        warden_zwave::fuzzing::one(&frame);
        if let Some(p) = frame.get(1..) {
            warden_zwave::fuzzing::one(p);
        }
    }
}
