//! Fuzz-style property tests over every parser of untrusted input in the Zigbee adapter: the MT
//! (ZNP) streaming decoder and response parsers, the ASH decoder and host state machine, every
//! EZSP frame and parameter parser, the ZCL frame and value decoders, normalisation, install-code
//! keys and the whole `convert::decode` path. Arbitrary bytes must never panic; where an encoder
//! exists, encode→decode round trips; the stream decoders give the same frames however the bytes
//! are split, and find real frames after garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use tokio::time::Instant;
use warden_zigbee::config::{self, Config};
use warden_zigbee::convert;
use warden_zigbee::coordinator::{Ieee, Incoming};
use warden_zigbee::devices::{Device, Endpoint};
use warden_zigbee::ezsp::{ash, frame as ezsp};
use warden_zigbee::install_code;
use warden_zigbee::zcl::{
    self, DataType, DeviceContext, Direction, FrameType, Override, ZclBody, ZclHeader, ZclValue,
    clusters, global,
};
use warden_zigbee::znp::commands as mt;
use warden_zigbee::znp::frame::{self as mtf, CmdType, MtFrame};

const CASES: u32 = 512;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Every cluster id Warden knows, plus ZDO and a few it does not.
const CLUSTERS: &[u16] = &[
    clusters::id::BASIC,
    clusters::id::POWER_CONFIGURATION,
    clusters::id::ON_OFF,
    clusters::id::LEVEL_CONTROL,
    clusters::id::THERMOSTAT,
    clusters::id::COLOR_CONTROL,
    clusters::id::ILLUMINANCE_MEASUREMENT,
    clusters::id::TEMPERATURE_MEASUREMENT,
    clusters::id::PRESSURE_MEASUREMENT,
    clusters::id::RELATIVE_HUMIDITY,
    clusters::id::OCCUPANCY_SENSING,
    clusters::id::IAS_ZONE,
    clusters::id::METERING,
    clusters::id::ELECTRICAL_MEASUREMENT,
];

fn cluster() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => proptest::sample::select(CLUSTERS),
        1 => any::<u16>(),
    ]
}

fn data_type() -> impl Strategy<Value = DataType> {
    proptest::sample::select(DataType::ALL)
}

/// Splits `data` at the given cut points (taken modulo its length) into consecutive chunks.
fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| if data.is_empty() { 0 } else { c % data.len() })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for a in at {
        out.push(&data[start..a]);
        start = a;
    }
    out.push(&data[start..]);
    out
}

// ------------------------------------------------------------------ MT (ZNP)

fn mt_frame() -> impl Strategy<Value = MtFrame> {
    (
        prop_oneof![
            Just(CmdType::Poll),
            Just(CmdType::Sreq),
            Just(CmdType::Areq),
            Just(CmdType::Srsp)
        ],
        0u8..32,
        any::<u8>(),
        bytes(mtf::MAX_PAYLOAD + 1),
    )
        .prop_map(|(t, s, c, p)| MtFrame::new(t, s, c, p).unwrap())
}

/// Decodes everything pushed so far; returns the frames and drains errors.
fn mt_drain(d: &mut mtf::Decoder, frames: &mut Vec<MtFrame>) {
    while let Some(r) = d.next() {
        if let Ok(f) = r {
            frames.push(f);
        }
        assert!(d.buffered() <= mtf::DECODER_CAPACITY);
    }
}

fn mt_decode_chunks(chunks: &[&[u8]]) -> Vec<MtFrame> {
    let mut d = mtf::Decoder::new();
    let mut frames = Vec::new();
    for c in chunks {
        d.push(c);
        mt_drain(&mut d, &mut frames);
    }
    frames
}

/// Every MT response/callback parser on one payload.
fn mt_parse_all(p: &[u8]) {
    let _ = mt::parse_status("fuzz", p);
    let _ = mt::parse_version(p).map(|v| v.firmware());
    let _ = mt::parse_nv_read(p);
    let _ = mt::parse_device_info(p);
    let _ = mt::parse_data_confirm(p);
    let _ = mt::parse_incoming_msg(p);
    let _ = mt::parse_tc_dev_ind(p);
    let _ = mt::parse_end_device_annce(p);
    let _ = mt::parse_leave_ind(p);
    let _ = mt::zdo_rsp_src(p);
    let _ = mt::parse_node_desc_rsp(p);
    let _ = mt::parse_active_ep_rsp(p);
    let _ = mt::parse_simple_desc_rsp(p);
    let _ = mt::parse_rpc_error(p);
}

// ------------------------------------------------------------------ ASH / EZSP

fn ash_frame() -> impl Strategy<Value = ash::Frame> {
    prop_oneof![
        (
            0u8..8,
            any::<bool>(),
            0u8..8,
            proptest::collection::vec(any::<u8>(), 1..=ash::MAX_PAYLOAD)
        )
            .prop_map(|(frm_num, re_tx, ack_num, payload)| ash::Frame::Data {
                frm_num,
                re_tx,
                ack_num,
                payload
            }),
        (0u8..8, any::<bool>())
            .prop_map(|(ack_num, not_ready)| ash::Frame::Ack { ack_num, not_ready }),
        (0u8..8, any::<bool>())
            .prop_map(|(ack_num, not_ready)| ash::Frame::Nak { ack_num, not_ready }),
        Just(ash::Frame::Rst),
        (any::<u8>(), any::<u8>()).prop_map(|(version, reset_code)| ash::Frame::RstAck {
            version,
            reset_code
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(version, code)| ash::Frame::Error { version, code }),
    ]
}

/// Every EZSP parameter parser on one buffer.
fn ezsp_parse_all(p: &[u8]) {
    let _ = ezsp::Received::parse(p, true).map(|r| (r.is_callback(), r.overflow(), r.truncated()));
    let _ = ezsp::Received::parse(p, false);
    let _ = ezsp::VersionResponse::parse(p).map(|v| v.stack_string());
    let _ = ezsp::parse_get_network_parameters(p);
    let _ = ezsp::NetworkParameters::decode(&mut ezsp::Reader::new(p, "fuzz"));
    let _ = ezsp::ApsFrame::decode(&mut ezsp::Reader::new(p, "fuzz"));
    let _ = ezsp::parse_send_unicast(p);
    let _ = ezsp::parse_message_sent(p);
    let _ = ezsp::parse_incoming_message(p).map(|m| m.was_broadcast());
    let _ = ezsp::parse_trust_center_join(p);
    let _ = ezsp::parse_child_join(p);
    let _ = ezsp::parse_status(p, "fuzz");
    let _ = ezsp::parse_sl_status(p, "fuzz");
    let _ = ezsp::parse_eui64(p);
    let _ = ezsp::parse_node_id(p);
    let _ = ezsp::parse_device_annce(p);
    let _ = ezsp::parse_node_desc_rsp(p);
    let _ = ezsp::parse_active_ep_rsp(p);
    let _ = ezsp::parse_simple_desc_rsp(p);
    let mut r = ezsp::Reader::new(p, "fuzz");
    let _ = r.lv();
    let _ = r.i8();
    let _ = r.u32();
    let _ = r.finish();
}

fn aps() -> impl Strategy<Value = ezsp::ApsFrame> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(
            |(profile, cluster, src_ep, dst_ep, options, group, sequence)| ezsp::ApsFrame {
                profile,
                cluster,
                src_ep,
                dst_ep,
                options,
                group,
                sequence,
            },
        )
}

// ------------------------------------------------------------------ ZCL

/// A ZCL frame with a well-formed header (any flags) and a body of attribute records with known
/// type ids, so the fuzzer reaches the record and value decoders rather than stopping early.
fn zcl_frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    let record =
        (any::<u16>(), any::<u8>(), data_type(), bytes(24)).prop_map(|(attr, status, ty, raw)| {
            let mut out = attr.to_le_bytes().to_vec();
            // Sometimes a status byte (read-attributes-response shape), sometimes not.
            if status & 1 == 1 {
                out.push(if status & 2 == 0 { 0 } else { status });
            }
            out.push(ty.id());
            out.extend_from_slice(&raw);
            out
        });
    (
        any::<u8>(),
        proptest::option::of(any::<u16>()),
        any::<u8>(),
        prop_oneof![
            proptest::sample::select(&[0x00u8, 0x01, 0x02, 0x04, 0x06, 0x07, 0x0a, 0x0b][..]),
            any::<u8>()
        ],
        proptest::collection::vec(record, 0..6),
        bytes(8),
    )
        .prop_map(|(fc, manufacturer, tsn, command, records, tail)| {
            // Frame type 0 or 1 (2 and 3 are reserved and stop at the header).
            let mut fc = fc & !0x02;
            if manufacturer.is_some() {
                fc |= 0x04;
            } else {
                fc &= !0x04;
            }
            let mut out = vec![fc];
            if let Some(m) = manufacturer {
                out.extend_from_slice(&m.to_le_bytes());
            }
            out.push(tsn);
            out.push(command);
            for r in records {
                out.extend(r);
            }
            out.extend(tail);
            out
        })
}

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

fn context() -> impl Strategy<Value = DeviceContext> {
    let scale = || {
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(multiplier, divisor)| zcl::Scale {
                multiplier,
                divisor,
            })
    };
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<i8>()),
        scale(),
        scale(),
        scale(),
        scale(),
    )
        .prop_map(
            |(zone_type, pressure_scale, ac_voltage, ac_current, ac_power, metering)| {
                DeviceContext {
                    zone_type,
                    pressure_scale,
                    ac_voltage,
                    ac_current,
                    ac_power,
                    metering,
                }
            },
        )
}

fn overrides() -> impl Strategy<Value = Vec<Override>> {
    let one = (
        cluster(),
        prop_oneof![0u16..0x30, any::<u16>()],
        proptest::option::of("[a-z_]{1,12}"),
        proptest::option::of(prop_oneof![
            any::<f64>(),
            Just(0.0),
            Just(0.01),
            Just(1e-300),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]),
        proptest::option::of("[a-zA-Z°%]{0,4}"),
    )
        .prop_map(|(cluster, attr, name, scale, unit)| Override {
            cluster,
            attr,
            name,
            scale,
            unit,
        });
    proptest::collection::vec(one, 0..3)
}

/// Some value decoded from arbitrary bytes as an arbitrary type (so it is one a device can send).
fn decoded_value() -> impl Strategy<Value = ZclValue> {
    (data_type(), bytes(40)).prop_filter_map("does not decode", |(ty, b)| {
        ZclValue::decode(ty, &b).ok().map(|(v, _)| v)
    })
}

// ------------------------------------------------------------------ convert

/// A config with a model whose overrides rename, rescale and ignore attributes.
fn convert_config() -> Config {
    let section: toml::Value = toml::from_str(
        r#"
port = "/dev/null"
[models.fuzz]
points = [
  { cluster = 0x0402, attribute = 0x0000, name = "t", scale = 0.1, unit = "K" },
  { cluster = 0x0006, attribute = 0x0000, ignore = true },
  { cluster = 0xfc00, attribute = 0x0001, name = "vendor" },
  { cluster = 0x0b04, attribute = 0x050b, scale = 1e-300 },
]
"#,
    )
    .unwrap();
    config::parse(&section).unwrap()
}

fn device(model: bool, zone_type: Option<u16>) -> Device {
    let mut d = Device::new(Ieee(0x00124b001caabb01), 0x1a2b, true);
    d.endpoints.push(Endpoint {
        id: 1,
        profile: 0x0104,
        device_type: 0x0402,
        input_clusters: CLUSTERS.to_vec(),
        output_clusters: vec![0x0019],
    });
    if model {
        d.model = Some("fuzz".into());
    }
    if let Some(t) = zone_type {
        d.zone_types.push((1, t));
    }
    d
}

fn incoming(cluster: u16, data: Vec<u8>, secured: bool) -> Incoming {
    Incoming {
        src_nwk: 0x1a2b,
        src_endpoint: 1,
        dst_endpoint: 1,
        cluster,
        profile: 0x0104,
        lqi: 200,
        rssi: Some(-60),
        aps_secured: secured,
        was_broadcast: false,
        data,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    // -------------------------------------------------------------- MT (ZNP)

    #[test]
    fn mt_arbitrary_streams_never_panic_and_stay_bounded(
        chunks in proptest::collection::vec(bytes(700), 0..10),
        big in prop_oneof![4 => Just(0usize), 1 => 4000usize..6000],
    ) {
        let mut d = mtf::Decoder::new();
        let mut frames = Vec::new();
        for c in &chunks {
            d.push(c);
            mt_drain(&mut d, &mut frames);
        }
        // A frame start that never completes, then one push larger than the buffer.
        d.push(&[mtf::SOF, 0x10]);
        d.push(&vec![0xaa; big]);
        prop_assert!(d.buffered() <= mtf::DECODER_CAPACITY);
        mt_drain(&mut d, &mut frames);
        for f in &frames {
            prop_assert!(f.payload().len() <= mtf::MAX_PAYLOAD);
            prop_assert_eq!(mtf::encode(f).len(), f.payload().len() + 5);
        }
    }

    #[test]
    fn mt_frames_round_trip(frames in proptest::collection::vec(mt_frame(), 1..6)) {
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(mtf::encode(f));
        }
        prop_assert_eq!(mt_decode_chunks(&[&wire]), frames.clone());
        for f in &frames {
            let again = MtFrame::from_cmd0(f.cmd0(), f.cmd1(), f.payload().to_vec()).unwrap();
            prop_assert_eq!(&again, f);
            prop_assert!(f.is(f.cmd_type(), f.subsystem(), f.cmd1()));
        }
    }

    /// The same bytes pushed in any split give the same frames (streams kept under the
    /// decoder's capacity so nothing is dropped for space).
    #[test]
    fn mt_chunked_feeding_gives_the_same_frames(
        parts in proptest::collection::vec(
            (bytes(40), proptest::option::of(mt_frame())), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        for (garbage, f) in &parts {
            wire.extend_from_slice(garbage);
            if let Some(f) = f {
                wire.extend(mtf::encode(f));
            }
        }
        prop_assume!(wire.len() <= mtf::DECODER_CAPACITY);
        let whole = mt_decode_chunks(&[&wire]);
        let chunked = mt_decode_chunks(&split(&wire, &cuts));
        prop_assert_eq!(&whole, &chunked);
        let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
        prop_assert_eq!(whole, mt_decode_chunks(&bytewise));
    }

    /// Garbage without a start-of-frame byte between frames costs nothing: every frame is found,
    /// whichever way the stream is split.
    #[test]
    fn mt_frames_survive_garbage_between_them(
        parts in proptest::collection::vec((bytes(60), mt_frame()), 1..5),
        trailing in bytes(60),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let clean = |g: &[u8]| -> Vec<u8> {
            g.iter().map(|&b| if b == mtf::SOF { 0x00 } else { b }).collect()
        };
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (garbage, f) in &parts {
            wire.extend(clean(garbage));
            wire.extend(mtf::encode(f));
            want.push(f.clone());
        }
        wire.extend(clean(&trailing));
        prop_assert_eq!(mt_decode_chunks(&split(&wire, &cuts)), want);
    }

    /// A frame with one corrupted byte (anywhere after the length) is dropped, and the decoder
    /// resynchronises on the next frame. The corrupted frame is kept free of stray start-of-frame
    /// bytes, so the outcome is exact rather than probable (a stray SOF can start a false frame
    /// whose 8-bit FCS matches by chance once in 256).
    #[test]
    fn mt_corrupted_frame_is_dropped_and_the_next_one_found(
        a in mt_frame(), b in mt_frame(), pos in any::<usize>(), flip in 1u8..=255,
    ) {
        let sof_free = |x: u8| if x == mtf::SOF { 0x00 } else { x };
        let a = MtFrame::new(
            a.cmd_type(),
            a.subsystem(),
            sof_free(a.cmd1()),
            a.payload().iter().map(|&x| sof_free(x)).collect(),
        )
        .unwrap();
        let mut first = mtf::encode(&a);
        prop_assume!(*first.last().unwrap() != mtf::SOF);
        let i = 2 + pos % (first.len() - 2); // cmd0, cmd1, payload or FCS
        first[i] ^= flip;
        prop_assume!(first[i] != mtf::SOF);
        let mut wire = first;
        wire.extend(mtf::encode(&b));
        prop_assert_eq!(mt_decode_chunks(&[&wire]), vec![b]);
    }

    #[test]
    fn mt_payload_parsers_never_panic(p in bytes(300)) {
        mt_parse_all(&p);
    }

    /// Well-formed heads with arbitrary tails, so the list/length-driven branches are reached.
    #[test]
    fn mt_payload_parsers_on_structured_input(
        head in proptest::collection::vec(any::<u8>(), 5..=5),
        count in any::<u8>(),
        tail in bytes(64),
    ) {
        // status 0 (success) + a count/length byte in each plausible position
        let mut p = head;
        p[2] = 0;
        for at in [0usize, 1, 5] {
            let mut q = p.clone();
            q.insert(at.min(q.len()), count);
            q.extend_from_slice(&tail);
            mt_parse_all(&q);
        }
        // AF.IncomingMsg with a length byte that lies
        let mut q = vec![0u8; 16];
        q.push(count);
        q.extend_from_slice(&tail);
        if let Ok(m) = mt::parse_incoming_msg(&q) {
            prop_assert!(usize::from(count) <= tail.len());
            prop_assert_eq!(m.data.as_slice(), &tail[..usize::from(count)]);
        } else {
            prop_assert!(usize::from(count) > tail.len());
        }
    }

    /// Requests the driver builds go through the MT codec unchanged.
    #[test]
    fn mt_requests_round_trip_through_the_codec(
        item in any::<u16>(), offset in any::<u8>(), value in bytes(260),
        nwk in any::<u16>(), ep in any::<u8>(), ieee in any::<u64>(), secs in any::<u8>(),
        inputs in proptest::collection::vec(any::<u16>(), 0..20),
        data in bytes(260),
    ) {
        let mut reqs = vec![
            mt::sys_ping(), mt::sys_version(), mt::sys_reset_req(true), mt::util_get_device_info(),
            mt::sys_osal_nv_read(item, offset), mt::zdo_startup_from_app(item),
            mt::zdo_mgmt_permit_join(secs), mt::zdo_node_desc_req(nwk), mt::zdo_active_ep_req(nwk),
            mt::zdo_simple_desc_req(nwk, ep), mt::zdo_mgmt_leave_req(nwk, Ieee(ieee)),
            mt::app_cnf_set_join_uses_install_code_key(secs & 1 == 1),
        ];
        reqs.extend(mt::sys_osal_nv_write(item, offset, &value).ok());
        reqs.extend(mt::sys_osal_nv_item_init(item, &value).ok());
        reqs.extend(mt::af_register(ep, item, nwk, &inputs, &inputs).ok());
        reqs.extend(mt::app_cnf_add_install_code(Ieee(ieee), &value).ok());
        let dr = mt::DataRequest {
            dst_nwk: nwk, dst_endpoint: ep, src_endpoint: 1, cluster: item, tsn: offset,
            options: mt::TX_OPTION_ACK_REQUEST, radius: mt::DEFAULT_RADIUS, data: &data,
        };
        match mt::af_data_request(&dr) {
            Ok(f) => {
                prop_assert!(data.len() <= mt::MAX_AF_DATA);
                reqs.push(f);
            }
            Err(_) => prop_assert!(data.len() > mt::MAX_AF_DATA),
        }
        let mut wire = Vec::new();
        for r in &reqs {
            wire.extend(mtf::encode(r));
        }
        prop_assert_eq!(mt_decode_chunks(&[&wire]), reqs);
    }

    // -------------------------------------------------------------- ASH

    #[test]
    fn ash_arbitrary_bytes_never_panic(chunks in proptest::collection::vec(bytes(400), 0..6)) {
        let mut d = ash::Decoder::new();
        for c in &chunks {
            for r in d.feed(c) {
                if let Ok(ash::Frame::Data { payload, .. }) = r {
                    prop_assert!(!payload.is_empty() && payload.len() <= ash::MAX_PAYLOAD);
                }
            }
        }
        for c in &chunks {
            let _ = ash::Frame::parse(c);
            let _ = ash::unstuff(c);
        }
    }

    #[test]
    fn ash_frames_round_trip(frames in proptest::collection::vec(ash_frame(), 1..6)) {
        let mut d = ash::Decoder::new();
        let mut wire = Vec::new();
        for f in &frames {
            prop_assert_eq!(ash::Frame::parse(&f.to_bytes()), Ok(f.clone()));
            let enc = ash::encode(f);
            // Stuffing leaves no reserved byte but the closing flag.
            prop_assert!(enc[..enc.len() - 1].iter().all(|b| !matches!(
                *b,
                ash::FLAG | ash::XON | ash::XOFF | ash::SUBSTITUTE | ash::CANCEL
            )));
            wire.extend(enc);
        }
        let got: Vec<_> = d.feed(&wire);
        prop_assert_eq!(got, frames.into_iter().map(Ok).collect::<Vec<_>>());
        prop_assert_eq!(d.bad_frames, 0);
    }

    #[test]
    fn ash_stuffing_and_randomisation_invert(data in bytes(300)) {
        prop_assert_eq!(ash::unstuff(&ash::stuff(&data)), Some(data.clone()));
        let mut r = data.clone();
        ash::randomize(&mut r);
        ash::randomize(&mut r);
        prop_assert_eq!(r, data);
    }

    /// The decoder's results do not depend on how the bytes arrive.
    #[test]
    fn ash_chunked_feeding_gives_the_same_results(
        parts in proptest::collection::vec((bytes(40), proptest::option::of(ash_frame())), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        for (garbage, f) in &parts {
            wire.extend_from_slice(garbage);
            if let Some(f) = f {
                wire.extend(ash::encode(f));
            }
        }
        let whole = ash::Decoder::new().feed(&wire);
        let mut d = ash::Decoder::new();
        let mut chunked = Vec::new();
        for c in split(&wire, &cuts) {
            chunked.extend(d.feed(c));
        }
        prop_assert_eq!(&whole, &chunked);
        let mut d = ash::Decoder::new();
        let bytewise: Vec<_> = wire.iter().filter_map(|&b| d.push(b)).collect();
        prop_assert_eq!(whole, bytewise);
    }

    /// Arbitrary garbage (escapes, SUBSTITUTE, CANCEL, overlong runs included) ended by a flag
    /// never costs the next frame.
    #[test]
    fn ash_frames_survive_garbage_between_them(
        parts in proptest::collection::vec(
            (prop_oneof![bytes(40), bytes(400)], ash_frame()), 1..5),
    ) {
        let mut d = ash::Decoder::new();
        for (garbage, f) in &parts {
            let _ = d.feed(garbage);
            let _ = d.push(ash::FLAG);
            prop_assert_eq!(d.feed(&ash::encode(f)), vec![Ok(f.clone())]);
        }
    }

    /// The host state machine fed arbitrary bytes, valid frames with arbitrary sequence numbers,
    /// sends and timer ticks: no panic, bounded output, at most one frame in flight.
    #[test]
    fn ash_host_state_machine_never_panics(
        steps in proptest::collection::vec(
            prop_oneof![
                bytes(64).prop_map(|b| (0u8, b)),
                ash_frame().prop_map(|f| (1u8, ash::encode(&f))),
                proptest::collection::vec(any::<u8>(), 1..=ash::MAX_PAYLOAD).prop_map(|b| (2u8, b)),
                (0u64..5000).prop_map(|ms| (3u8, ms.to_le_bytes().to_vec())),
                Just((4u8, Vec::new())),
            ],
            0..40),
    ) {
        let start = Instant::now();
        let mut now = start;
        let mut a = ash::Ash::new();
        a.reset(now);
        // Usually connect first, so the connected-state paths are reached.
        a.receive(&ash::encode(&ash::Frame::RstAck { version: 2, reset_code: 0x0b }), now);
        for (kind, b) in steps {
            match kind {
                0 | 1 => a.receive(&b, now),
                2 => a.send(b, now),
                3 => {
                    let ms = u64::from_le_bytes(b.try_into().unwrap());
                    now += std::time::Duration::from_millis(ms);
                    a.on_timer(now);
                }
                _ => a.reset(now),
            }
            prop_assert!(a.t_rx_ack() >= ash::T_RX_ACK_MIN && a.t_rx_ack() <= ash::T_RX_ACK_MAX);
            let out = a.take_output();
            // Everything the host writes decodes as frames.
            for r in ash::Decoder::new().feed(&out) {
                prop_assert!(r.is_ok(), "host wrote a bad frame: {:?}", r);
            }
            while let Some(ev) = a.poll_event() {
                if let ash::AshEvent::Data(p) = ev {
                    prop_assert!(!p.is_empty());
                }
            }
            let _ = a.deadline();
            let _ = a.is_connected();
        }
    }

    // -------------------------------------------------------------- EZSP

    #[test]
    fn ezsp_parsers_never_panic(p in bytes(200)) {
        ezsp_parse_all(&p);
    }

    #[test]
    fn ezsp_parsers_on_extended_frames(
        seq in any::<u8>(), fc in any::<u8>(), id in any::<u16>(), status in prop_oneof![Just(0u8), any::<u8>()],
        n in any::<u8>(), tail in bytes(80),
    ) {
        let mut p = vec![seq, fc, 0x01];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&tail);
        let r = ezsp::Received::parse(&p, true).unwrap();
        prop_assert_eq!((r.seq, r.fc_low, r.frame_id), (seq, fc, id));
        prop_assert_eq!(&r.params, &tail);
        // ZDO responses: TSN, status, NWK, then count/length-driven lists
        let mut z = vec![seq, status, 0x34, 0x12, n];
        z.extend_from_slice(&tail);
        ezsp_parse_all(&z);
        if let Ok((0, eps)) = ezsp::parse_active_ep_rsp(&z) {
            prop_assert_eq!(eps.as_slice(), &tail[..usize::from(n)]);
        }
    }

    #[test]
    fn ezsp_encoders_round_trip(
        seq in any::<u8>(), id in any::<u16>(), params in bytes(120),
        a in aps(), dest in any::<u16>(), tag in any::<u8>(), data in bytes(300),
        ext in any::<[u8; 8]>(), pan in any::<u16>(), tx in any::<u8>(), ch in any::<u8>(),
        jm in any::<u8>(), mgr in any::<u16>(), upd in any::<u8>(), chans in any::<u32>(),
    ) {
        let cmd = ezsp::command(seq, id, &params);
        let r = ezsp::Received::parse(&cmd, true).unwrap();
        prop_assert_eq!((r.seq, r.fc_low, r.frame_id), (seq, 0, id));
        prop_assert_eq!(r.params, params);

        let mut out = Vec::new();
        a.encode(&mut out);
        prop_assert_eq!(out.len(), 11);
        prop_assert_eq!(ezsp::ApsFrame::decode(&mut ezsp::Reader::new(&out, "aps")).unwrap(), a);

        let np = ezsp::NetworkParameters {
            extended_pan_id: ext, pan_id: pan, tx_power: tx, channel: ch, join_method: jm,
            nwk_manager_id: mgr, nwk_update_id: upd, channels: chans,
        };
        let mut out = vec![0x00, 0x02];
        np.encode(&mut out);
        prop_assert_eq!(ezsp::parse_get_network_parameters(&out), Ok((0, 2, np)));

        match ezsp::send_unicast(dest, &a, tag, &data) {
            Ok(p) => {
                let mut r = ezsp::Reader::new(&p, "sendUnicast");
                prop_assert_eq!(r.u8().unwrap(), 0);
                prop_assert_eq!(r.u16().unwrap(), dest);
                prop_assert_eq!(ezsp::ApsFrame::decode(&mut r).unwrap(), a);
                prop_assert_eq!(r.u8().unwrap(), tag);
                prop_assert_eq!(r.lv().unwrap(), data.as_slice());
                prop_assert!(r.finish().is_ok());
            }
            Err(_) => prop_assert!(data.len() > 255),
        }

        // incomingMessageHandler built field by field parses back
        let mut m = vec![0x00];
        a.encode(&mut m);
        m.extend_from_slice(&[tag, 0xc4, 0x34, 0x12, 0xff, 0xff]);
        let short = &data[..data.len().min(255)];
        m.push(short.len() as u8);
        m.extend_from_slice(short);
        let im = ezsp::parse_incoming_message(&m).unwrap();
        prop_assert_eq!((im.aps, im.lqi, im.rssi, im.sender), (a, tag, -60, 0x1234));
        prop_assert_eq!(im.data.as_slice(), short);
    }

    // -------------------------------------------------------------- ZCL

    #[test]
    fn zcl_arbitrary_frames_never_panic(c in cluster(), b in bytes(200)) {
        let _ = zcl::decode_frame(c, &b);
        let _ = ZclHeader::decode(&b);
        let _ = global::decode_read_attributes(&b);
        let _ = global::decode_read_attributes_response(&b);
        let _ = global::decode_report_attributes(&b);
        let _ = global::decode_status_records(&b, true);
        let _ = global::decode_status_records(&b, false);
        let _ = zcl::ZoneStatusChange::decode(&b);
        let _ = ZclValue::decode_typed(&b);
    }

    /// Structured frames for every known cluster: decoding never panics, record lists stay
    /// bounded, every decoded value normalises without panicking.
    #[test]
    fn zcl_structured_frames_decode_and_normalise(
        c in cluster(), b in zcl_frame_bytes(), ctx in context(), ov in overrides(),
    ) {
        let Ok(f) = zcl::decode_frame(c, &b) else { return Ok(()) };
        let values: Vec<(u16, ZclValue)> = match f.body {
            ZclBody::ReportAttributes(r) => {
                prop_assert!(r.items.len() <= global::MAX_RECORDS);
                r.items.into_iter().map(|a| (a.attr, a.value)).collect()
            }
            ZclBody::ReadAttributesResponse(r) => {
                prop_assert!(r.items.len() <= global::MAX_RECORDS);
                r.items.into_iter().filter_map(|a| Some((a.attr, a.value?))).collect()
            }
            ZclBody::ReadAttributes(a) => {
                prop_assert!(a.len() <= global::MAX_RECORDS);
                Vec::new()
            }
            ZclBody::ManufacturerSpecific { code, .. } => {
                prop_assert_eq!(f.header.manufacturer, Some(code));
                Vec::new()
            }
            _ => Vec::new(),
        };
        for (attr, v) in &values {
            let mut ctx = ctx;
            ctx.observe(c, *attr, v);
            let _ = zcl::normalise(c, *attr, v, &ctx, &ov);
            let _ = zcl::identity(c, *attr, v);
        }
    }

    #[test]
    fn zcl_headers_round_trip(h in header(), payload in bytes(40)) {
        let wire = zcl::encode_frame(&h, &payload);
        let (back, rest) = ZclHeader::decode(&wire).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(rest, payload.as_slice());
    }

    /// Every data type: arbitrary bytes never panic; what decodes re-encodes to bytes that decode
    /// to the same value (unless the value cannot be sent back, e.g. lossy text grew too long).
    #[test]
    fn zcl_values_of_every_type_decode_and_re_encode(b in bytes(64)) {
        for &ty in DataType::ALL {
            let Ok((v, used)) = ZclValue::decode(ty, &b) else { continue };
            prop_assert!(used <= b.len());
            prop_assert_eq!(v.data_type(), ty);
            if let Some(n) = ty.fixed_len() {
                prop_assert_eq!(used, n);
            }
            let mut out = Vec::new();
            match v.encode(&mut out) {
                Ok(()) => {
                    let (again, n) = ZclValue::decode(ty, &out).unwrap();
                    prop_assert_eq!(&again, &v, "{:?}", ty);
                    prop_assert_eq!(n, out.len());
                }
                Err(e) => prop_assert!(
                    matches!(e, zcl::EncodeError::TooLong { .. }) && matches!(v, ZclValue::Text(..)),
                    "{:?} {:?}: {:?}", ty, v, e
                ),
            }
            let _ = v.as_f64();
            let _ = v.as_i64();
        }
    }

    /// Typed values (type id + value) of composite types nest and repeat within bounds.
    #[test]
    fn zcl_composite_values_stay_bounded(
        tys in proptest::collection::vec(proptest::sample::select(&[0x48u8, 0x4c, 0x50, 0x51, 0x00, 0x20][..]), 1..12),
        counts in proptest::collection::vec(any::<u16>(), 1..12),
        tail in bytes(64),
    ) {
        // nested headers: type, (element type), count … then arbitrary bytes
        let mut b = Vec::new();
        for (t, c) in tys.iter().zip(counts.iter().cycle()) {
            b.push(*t);
            b.extend_from_slice(&c.to_le_bytes());
        }
        b.extend_from_slice(&tail);
        if let Ok((v, used)) = ZclValue::decode_typed(&b) {
            prop_assert!(used <= b.len());
            let mut out = Vec::new();
            prop_assert!(v.encode_typed(&mut out).is_ok(), "{:?}", v);
        }
    }

    /// Reports built by the encoder decode to the same records; normalising them never panics.
    #[test]
    fn zcl_reports_round_trip(
        c in cluster(), tsn in any::<u8>(), ctx in context(),
        recs in proptest::collection::vec((any::<u16>(), decoded_value()), 0..8),
    ) {
        let reports: Vec<global::AttributeReport> = recs
            .iter()
            .map(|(attr, value)| global::AttributeReport { attr: *attr, value: value.clone() })
            .collect();
        let Ok(payload) = global::encode_report_attributes(&reports) else { return Ok(()) };
        let h = ZclHeader {
            direction: Direction::ServerToClient,
            disable_default_response: true,
            ..ZclHeader::global(tsn, global::cmd::REPORT_ATTRIBUTES)
        };
        let f = zcl::decode_frame(c, &zcl::encode_frame(&h, &payload)).unwrap();
        let r = match f.body {
            ZclBody::ReportAttributes(r) => r,
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(r.stopped, None);
        prop_assert_eq!(&r.items, &reports);
        for a in &r.items {
            let out = zcl::normalise(c, a.attr, &a.value, &ctx, &[]);
            if matches!(a.value, ZclValue::Invalid(_) | ZclValue::NoData) {
                prop_assert!(out.is_empty());
            }
        }
    }

    /// Every table row normalises every decodable value without panicking.
    #[test]
    fn zcl_normalise_every_point_on_any_value(
        v in decoded_value(), ctx in context(), ov in overrides(), attr in any::<u16>(),
    ) {
        for p in zcl::normalise::POINTS {
            let out = zcl::normalise(p.cluster, p.attr, &v, &ctx, &ov);
            if matches!(v, ZclValue::Invalid(_) | ZclValue::NoData) {
                prop_assert!(out.is_empty());
            }
            let _ = zcl::normalise(p.cluster, attr, &v, &ctx, &ov);
        }
        let _ = zcl::identity(0x0000, attr, &v);
        for a in [0x0004, 0x0005, 0x0006, 0x0007, 0x4000] {
            if let Some((_, text)) = zcl::identity(0x0000, a, &v) {
                prop_assert!(text.chars().count() <= zcl::normalise::MAX_IDENTITY_LEN);
            }
        }
    }

    /// Operator input into the command builder: refused or built, never a panic.
    #[test]
    fn zcl_commands_never_panic(
        name in prop_oneof![proptest::sample::select(zcl::commands::COMMANDS).prop_map(str::to_owned), "\\PC{0,20}"],
        keys in proptest::collection::vec(proptest::sample::select(&[
            "level", "transition_s", "mireds", "kelvin", "x", "y", "hue", "saturation", "point", "value", "zz"][..]), 0..4),
        nums in proptest::collection::vec(prop_oneof![any::<f64>(), -10.0f64..70000.0], 4),
        point in proptest::sample::select(&["heating_setpoint", "system_mode", "occupancy_timeout", "on", "temperature", "nope"][..]),
        ov in overrides(),
    ) {
        let args: Vec<(&str, zcl::Arg<'_>)> = keys
            .iter()
            .zip(&nums)
            .map(|(k, n)| match *k {
                "point" => (*k, zcl::Arg::Text(point)),
                "value" if *n > 1e4 => (*k, zcl::Arg::Text("heat")),
                "value" if *n < 0.0 => (*k, zcl::Arg::Bool(true)),
                _ => (*k, zcl::Arg::Num(*n)),
            })
            .collect();
        if let Ok(req) = zcl::command_with(&name, &args, &ov) {
            let f = req.frame(1, false);
            prop_assert!(zcl::decode_frame(req.cluster, &f).is_ok());
        }
    }

    // -------------------------------------------------------------- install codes

    #[test]
    fn install_code_keys_never_panic(b in bytes(40)) {
        let r = install_code::link_key(&b);
        if r.is_ok() {
            prop_assert!(matches!(b.len(), 8 | 10 | 14 | 18));
        }
        let _ = install_code::aes_mmo_hash(&b);
    }

    #[test]
    fn install_codes_with_their_crc_give_a_key_and_a_changed_byte_does_not(
        code in prop_oneof![
            proptest::collection::vec(any::<u8>(), 6..=6),
            proptest::collection::vec(any::<u8>(), 8..=8),
            proptest::collection::vec(any::<u8>(), 12..=12),
            proptest::collection::vec(any::<u8>(), 16..=16),
        ],
        pos in any::<usize>(), flip in 1u8..=255,
    ) {
        let mut with_crc = code.clone();
        with_crc.extend_from_slice(&install_code::crc16_x25(&code).to_le_bytes());
        let key = install_code::link_key(&with_crc).unwrap();
        prop_assert_eq!(key, install_code::aes_mmo_hash(&with_crc));
        let i = pos % with_crc.len();
        with_crc[i] ^= flip;
        prop_assert_eq!(install_code::link_key(&with_crc), Err(install_code::InstallCodeError::BadCrc));
    }

    // -------------------------------------------------------------- convert (whole path)

    #[test]
    fn convert_decode_never_panics_on_arbitrary_data(
        c in cluster(), raw in bytes(120), structured in zcl_frame_bytes(),
        model in any::<bool>(), zone in proptest::option::of(prop_oneof![
            Just(0x000du16), Just(0x0015), Just(0x002a), Just(0x0028), any::<u16>()]),
        secured in any::<bool>(), ctx in context(),
    ) {
        let cfg = convert_config();
        let dev = device(model, zone);
        for data in [raw, structured] {
            let msg = incoming(c, data, secured);
            let mut ctx = ctx;
            match convert::decode(&dev, &msg, &cfg, &mut ctx) {
                Ok(d) => {
                    let _ = d.response_tsn();
                    if let convert::Frame::Points(points, kind) = d.frame {
                        let m = convert::message(&dev, &msg, kind, points);
                        prop_assert!(m.fresh);
                    }
                }
                Err(e) => {
                    prop_assert!(matches!(e.cause(), "zcl-truncated" | "zcl-malformed"));
                    let _ = e.to_string();
                }
            }
        }
    }
}
