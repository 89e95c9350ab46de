//! `cargo bench -p warden-zigbee --bench parse`: coordinator frames per second the adapter parses
//! and normalises on one core (one thread, no runtime), for each stack.
//!
//! The mix (rotating, one device each): temperature, humidity, occupancy, on/off reports, an IAS
//! zone status change notification and a metering report (multiplier, divisor, summation, demand).
//!
//! 1. znp: a byte stream of MT `AF.IncomingMsg` AREQs, fed in 1 KiB reads (as the driver reads)
//!    through `znp::frame::Decoder`, `parse_incoming_msg`, then the uplink path below.
//! 2. ezsp: the same ZCL frames in EZSP `incomingMessageHandler` callbacks in ASH DATA frames
//!    (randomised, stuffed, CRC), fed in 1 KiB reads through the host's `ezsp::ash::Ash` link
//!    (decoder, CRC, de-randomisation, sequence check, the ACK it writes), `Received::parse`,
//!    `parse_incoming_message`, then the uplink path below.
//! 3. zcl-only: the uplink path alone, on ready `Incoming`s.
//! 4. znp-framing, ezsp-framing: 1 and 2 up to the `Incoming`, without the uplink path (where the
//!    time goes).
//!
//! Uplink path (as the runtime's `incoming`, without the rate limit and the emit): device by
//! network address, its `DeviceContext`, `convert::decode`, `convert::message` → `Message`.
//!
//! Prints a table and one JSON line per figure. `WARDEN_BENCH_QUICK=1`: 10k frames (smoke test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use warden_core::testing::MemoryState;
use warden_core::{Kind, Message};
use warden_zigbee::config::{self, Config};
use warden_zigbee::convert::{self, Frame};
use warden_zigbee::coordinator::{Ieee, Incoming};
use warden_zigbee::devices::{Device, Devices, Endpoint};
use warden_zigbee::ezsp::ash::{self, Ash, AshEvent};
use warden_zigbee::ezsp::frame::{self as ef, ApsFrame, Received};
use warden_zigbee::zcl::{
    self, AttributeReport, DataType as T, DeviceContext, Direction, FrameType, ZclHeader, ZclValue,
};
use warden_zigbee::znp::commands::{self as zc, id::AF_INCOMING_MSG};
use warden_zigbee::znp::frame::{self as mt, CmdType, MtFrame, subsystem};

/// Bytes per serial read, like the drivers' read buffers.
const READ: usize = 1024;
const PROFILE_HA: u16 = 0x0104;

/// One reporting device of the mix.
struct Source {
    name: &'static str,
    nwk: u16,
    cluster: u16,
    /// The ZCL frame for transaction `tsn`, value step `i`.
    zcl: fn(u8, u64) -> Vec<u8>,
}

fn report(tsn: u8, records: &[AttributeReport]) -> Vec<u8> {
    let h = ZclHeader {
        frame_type: FrameType::Global,
        manufacturer: None,
        direction: Direction::ServerToClient,
        disable_default_response: true,
        tsn,
        command: 0x0a,
    };
    zcl::encode_frame(&h, &zcl::global::encode_report_attributes(records).unwrap())
}

fn one(attr: u16, value: ZclValue) -> AttributeReport {
    AttributeReport { attr, value }
}

fn temperature(tsn: u8, i: u64) -> Vec<u8> {
    report(
        tsn,
        &[one(
            0x0000,
            ZclValue::Signed(T::Int16, 2000 + (i % 300) as i64),
        )],
    )
}
fn humidity(tsn: u8, i: u64) -> Vec<u8> {
    report(
        tsn,
        &[one(0x0000, ZclValue::Unsigned(T::Uint16, 4000 + i % 2000))],
    )
}
fn occupancy(tsn: u8, i: u64) -> Vec<u8> {
    report(tsn, &[one(0x0000, ZclValue::Unsigned(T::Bitmap8, i & 1))])
}
fn on_off(tsn: u8, i: u64) -> Vec<u8> {
    report(tsn, &[one(0x0000, ZclValue::Bool(i & 1 == 1))])
}
/// IAS Zone cluster command 0x00 (Zone Status Change Notification): status, extended status,
/// zone id, delay.
fn zone(tsn: u8, i: u64) -> Vec<u8> {
    let h = ZclHeader {
        frame_type: FrameType::ClusterSpecific,
        manufacturer: None,
        direction: Direction::ServerToClient,
        disable_default_response: true,
        tsn,
        command: 0x00,
    };
    let status = if i & 1 == 1 { 0x0001u16 } else { 0x0000 };
    let mut p = status.to_le_bytes().to_vec();
    p.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
    zcl::encode_frame(&h, &p)
}
fn metering(tsn: u8, i: u64) -> Vec<u8> {
    report(
        tsn,
        &[
            one(0x0301, ZclValue::Unsigned(T::Uint24, 1)),
            one(0x0302, ZclValue::Unsigned(T::Uint24, 1000)),
            one(0x0000, ZclValue::Unsigned(T::Uint48, 1_234_567 + i)),
            one(0x0400, ZclValue::Signed(T::Int24, 250 + (i % 50) as i64)),
        ],
    )
}

const MIX: [Source; 6] = [
    Source {
        name: "temperature",
        nwk: 0x1001,
        cluster: 0x0402,
        zcl: temperature,
    },
    Source {
        name: "humidity",
        nwk: 0x1002,
        cluster: 0x0405,
        zcl: humidity,
    },
    Source {
        name: "occupancy",
        nwk: 0x1003,
        cluster: 0x0406,
        zcl: occupancy,
    },
    Source {
        name: "on_off",
        nwk: 0x1004,
        cluster: 0x0006,
        zcl: on_off,
    },
    Source {
        name: "ias_zone",
        nwk: 0x1005,
        cluster: 0x0500,
        zcl: zone,
    },
    Source {
        name: "metering",
        nwk: 0x1006,
        cluster: 0x0702,
        zcl: metering,
    },
];

/// The `i`th frame of the mix: its source and ZCL bytes.
fn nth(i: u64) -> (&'static Source, Vec<u8>) {
    let k = &MIX[(i % MIX.len() as u64) as usize];
    (k, (k.zcl)(i as u8, i / MIX.len() as u64))
}

/// The admitted devices and their contexts: what the runtime holds.
struct Uplinks {
    cfg: Config,
    devices: Devices,
    contexts: HashMap<u64, DeviceContext>,
    messages: u64,
    points: u64,
}

impl Uplinks {
    fn new() -> Self {
        let cfg =
            config::parse(&toml::from_str::<toml::Value>(r#"port = "/dev/x""#).unwrap()).unwrap();
        let store = MemoryState::default();
        let mut devices = Devices::default();
        for (n, k) in MIX.iter().enumerate() {
            let mut d = Device::new(Ieee(0x0012_4b00_0000_1000 + n as u64), k.nwk, false);
            d.model = Some(format!("bench.{}", k.name));
            d.interviewed = true;
            d.endpoints.push(Endpoint {
                id: 1,
                profile: PROFILE_HA,
                device_type: 0x0302,
                input_clusters: vec![0x0000, 0x0001, k.cluster],
                output_clusters: vec![],
            });
            if k.cluster == 0x0500 {
                d.zone_types.push((1, 0x000d)); // motion sensor
            }
            devices.save(&store, d).unwrap();
        }
        Self {
            cfg,
            devices,
            contexts: HashMap::new(),
            messages: 0,
            points: 0,
        }
    }

    /// [`Uplinks::handle`], the message dropped; whether there was one.
    fn full(&mut self, msg: &Incoming) -> bool {
        self.handle(msg).map(black_box).is_some()
    }

    /// The runtime's uplink path; the message is built and returned instead of emitted.
    fn handle(&mut self, msg: &Incoming) -> Option<Message> {
        let dev = self.devices.by_nwk(msg.src_nwk)?;
        let ctx = self.contexts.entry(dev.ieee).or_default();
        let d = convert::decode(dev, msg, &self.cfg, ctx).ok()?;
        let Frame::Points(points, kind) = d.frame else {
            return None;
        };
        if points.is_empty() {
            return None;
        }
        self.points += points.len() as u64;
        self.messages += 1;
        Some(convert::message(dev, msg, kind, points))
    }
}

fn incoming(i: u64) -> Incoming {
    let (k, data) = nth(i);
    Incoming {
        src_nwk: k.nwk,
        src_endpoint: 1,
        dst_endpoint: 1,
        cluster: k.cluster,
        profile: PROFILE_HA,
        lqi: 180,
        rssi: Some(-62),
        aps_secured: false,
        was_broadcast: false,
        data,
    }
}

// ------------------------------------------------------------------ ZNP

/// `AF.IncomingMsg` AREQ for frame `i`, MT-framed.
fn znp_frame(i: u64) -> Vec<u8> {
    let (k, data) = nth(i);
    let mut p = Vec::with_capacity(20 + data.len());
    p.extend_from_slice(&0u16.to_le_bytes()); // group
    p.extend_from_slice(&k.cluster.to_le_bytes());
    p.extend_from_slice(&k.nwk.to_le_bytes());
    p.extend_from_slice(&[1, 1, 0, 180, 0]); // src ep, dst ep, broadcast, lqi, security
    p.extend_from_slice(&(i as u32).to_le_bytes()); // timestamp
    p.push(i as u8); // trans seq
    p.push(u8::try_from(data.len()).unwrap());
    p.extend_from_slice(&data);
    p.extend_from_slice(&k.nwk.to_le_bytes()); // MAC source
    p.push(0); // radius
    mt::encode(&MtFrame::new(CmdType::Areq, subsystem::AF, AF_INCOMING_MSG, p).unwrap())
}

fn znp_stream(n: u64) -> Vec<u8> {
    (0..n).flat_map(znp_frame).collect()
}

/// Frames from the stream that `on` accepted.
fn run_znp(stream: &[u8], mut on: impl FnMut(&Incoming) -> bool) -> u64 {
    let mut dec = mt::Decoder::new();
    let mut n = 0;
    for chunk in stream.chunks(READ) {
        dec.push(chunk);
        while let Some(r) = dec.next() {
            let f = r.unwrap();
            if !f.is(CmdType::Areq, subsystem::AF, AF_INCOMING_MSG) {
                continue;
            }
            let m = zc::parse_incoming_msg(f.payload()).unwrap();
            let msg = Incoming {
                src_nwk: m.src_nwk,
                src_endpoint: m.src_endpoint,
                dst_endpoint: m.dst_endpoint,
                cluster: m.cluster,
                profile: PROFILE_HA,
                lqi: m.lqi,
                rssi: None,
                aps_secured: m.security_use,
                was_broadcast: m.was_broadcast,
                data: m.data,
            };
            if on(&msg) {
                n += 1;
            }
        }
    }
    assert_eq!(dec.buffered(), 0, "the stream ends on a frame boundary");
    n
}

// ------------------------------------------------------------------ EZSP

/// `incomingMessageHandler` callback for frame `i` in an ASH DATA frame, stuffed and flagged.
fn ezsp_frame(i: u64) -> Vec<u8> {
    let (k, data) = nth(i);
    let mut params = vec![0x00]; // EMBER_INCOMING_UNICAST
    ApsFrame {
        profile: PROFILE_HA,
        cluster: k.cluster,
        src_ep: 1,
        dst_ep: 1,
        options: ef::aps_option::RETRY | ef::aps_option::ENABLE_ROUTE_DISCOVERY,
        group: 0,
        sequence: i as u8,
    }
    .encode(&mut params);
    params.push(180); // lqi
    params.push((-62i8) as u8); // rssi
    params.extend_from_slice(&k.nwk.to_le_bytes());
    params.extend_from_slice(&[0xff, 0xff]); // binding index, address index
    params.push(u8::try_from(data.len()).unwrap());
    params.extend_from_slice(&data);
    // An asynchronous callback (FC low 0x90) with the extended header.
    let mut ezsp = vec![i as u8, 0x90, 0x01];
    ezsp.extend_from_slice(&ef::id::INCOMING_MESSAGE_HANDLER.to_le_bytes());
    ezsp.extend_from_slice(&params);
    ash::encode(&ash::Frame::Data {
        frm_num: (i & 7) as u8,
        re_tx: false,
        ack_num: 0,
        payload: ezsp,
    })
}

fn ezsp_stream(n: u64) -> Vec<u8> {
    (0..n).flat_map(ezsp_frame).collect()
}

/// A host link after RST/RSTACK.
fn connected() -> Ash {
    let mut a = Ash::new();
    let now = tokio::time::Instant::now();
    a.reset(now);
    let _ = a.take_output();
    a.receive(
        &ash::encode(&ash::Frame::RstAck {
            version: ash::ASH_VERSION,
            reset_code: 0x0b,
        }),
        now,
    );
    assert!(matches!(a.poll_event(), Some(AshEvent::Connected { .. })));
    a
}

fn run_ezsp(stream: &[u8], mut on: impl FnMut(&Incoming) -> bool) -> u64 {
    let mut link = connected();
    let mut n = 0;
    let mut acks = 0usize;
    for chunk in stream.chunks(READ) {
        link.receive(chunk, tokio::time::Instant::now());
        acks += link.take_output().len();
        while let Some(ev) = link.poll_event() {
            let AshEvent::Data(p) = ev else {
                panic!("{ev:?}")
            };
            let r = Received::parse(&p, true).unwrap();
            if !r.is_callback() || r.frame_id != ef::id::INCOMING_MESSAGE_HANDLER {
                continue;
            }
            let m = ef::parse_incoming_message(&r.params).unwrap();
            let msg = Incoming {
                src_nwk: m.sender,
                src_endpoint: m.aps.src_ep,
                dst_endpoint: m.aps.dst_ep,
                cluster: m.aps.cluster,
                profile: m.aps.profile,
                lqi: m.lqi,
                rssi: Some(m.rssi),
                aps_secured: m.aps.options & ef::aps_option::ENCRYPTION != 0,
                was_broadcast: m.was_broadcast(),
                data: m.data,
            };
            if on(&msg) {
                n += 1;
            }
        }
    }
    assert_eq!(link.stats.bad_frames, 0);
    assert_eq!(link.stats.naks_sent, 0);
    assert!(acks > 0, "the host acknowledged the DATA frames");
    n
}

// ------------------------------------------------------------------ ZCL only

fn run_zcl(msgs: &[Incoming], up: &mut Uplinks) -> u64 {
    msgs.iter().map(|m| u64::from(up.full(m))).sum()
}

// ------------------------------------------------------------------

/// Every kind of the mix yields the points it should.
fn check_mix() {
    let mut up = Uplinks::new();
    let want: [(&str, Kind); 6] = [
        ("temperature", Kind::Telemetry),
        ("humidity", Kind::Telemetry),
        ("occupancy", Kind::Telemetry),
        ("on", Kind::Telemetry),
        ("motion", Kind::Event),
        ("energy", Kind::Telemetry),
    ];
    for (i, (name, kind)) in want.iter().enumerate() {
        let m = up
            .handle(&incoming(i as u64))
            .unwrap_or_else(|| panic!("{} gave no message", MIX[i].name));
        assert_eq!(m.kind, *kind, "{}", MIX[i].name);
        let names: Vec<&str> = m.points.iter().map(|p| p.name.as_str()).collect();
        assert!(
            names.contains(name),
            "{}: points {names:?}, expected {name}",
            MIX[i].name
        );
    }
}

/// Framing only: the `Incoming` is dropped.
fn framing_only(msg: &Incoming) -> bool {
    black_box(msg);
    true
}

struct Figure {
    stack: &'static str,
    what: &'static str,
    frames: u64,
    secs: f64,
    bytes: usize,
    points: u64,
}

impl Figure {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.secs
    }
    fn ns(&self) -> f64 {
        self.secs * 1e9 / self.frames as f64
    }
}

fn measure(
    stack: &'static str,
    what: &'static str,
    n: u64,
    bytes: usize,
    run: impl Fn(&mut Uplinks) -> u64,
) -> Figure {
    // framing-only runs never touch the uplink path
    let framing = stack.ends_with("-framing");
    // warm-up over the whole stream (caches, allocator, branch predictors), then a fresh table
    let mut up = Uplinks::new();
    run(&mut up);
    let mut up = Uplinks::new();
    let t = Instant::now();
    let frames = run(&mut up);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(frames, n, "{stack}: every frame came through");
    assert_eq!(up.messages, if framing { 0 } else { n });
    Figure {
        stack,
        what,
        frames,
        secs,
        bytes,
        points: up.points,
    }
}

fn main() {
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let n: u64 = if quick { 10_000 } else { 240_000 };
    check_mix();

    let znp = znp_stream(n);
    let ezsp = ezsp_stream(n);
    let msgs: Vec<Incoming> = (0..n).map(incoming).collect();

    let figures = [
        measure(
            "znp",
            "MT bytes -> AF.IncomingMsg -> ZCL -> Message",
            n,
            znp.len(),
            |up| run_znp(&znp, |m| up.full(m)),
        ),
        measure(
            "ezsp",
            "ASH bytes -> EZSP incomingMessageHandler -> ZCL -> Message",
            n,
            ezsp.len(),
            |up| run_ezsp(&ezsp, |m| up.full(m)),
        ),
        measure(
            "znp-framing",
            "MT bytes -> AF.IncomingMsg -> Incoming (no ZCL)",
            n,
            znp.len(),
            |_| run_znp(&znp, framing_only),
        ),
        measure(
            "ezsp-framing",
            "ASH bytes -> EZSP incomingMessageHandler -> Incoming (no ZCL)",
            n,
            ezsp.len(),
            |_| run_ezsp(&ezsp, framing_only),
        ),
        measure(
            "zcl-only",
            "Incoming -> ZCL decode + normalise -> Message",
            n,
            0,
            |up| run_zcl(&msgs, up),
        ),
    ];

    println!(
        "zigbee parse + normalise, 1 thread, {n} frames{} (mix: temperature, humidity, occupancy, on/off, IAS zone, metering)",
        if quick { ", quick" } else { "" }
    );
    println!(
        "{:<13} {:<62} {:>10} {:>9} {:>8}",
        "stack", "path", "frames/s", "ns/frame", "B/frame"
    );
    for f in &figures {
        println!(
            "{:<13} {:<62} {:>10.0} {:>9.1} {:>8.1}",
            f.stack,
            f.what,
            f.fps(),
            f.ns(),
            f.bytes as f64 / f.frames as f64
        );
    }
    for f in &figures {
        println!(
            "{}",
            serde_json::json!({
                "bench": "zigbee-parse",
                "stack": f.stack,
                "frames_per_s": f.fps().round(),
                "ns_per_frame": (f.ns() * 10.0).round() / 10.0,
                "frames": f.frames,
                "points": f.points,
                "quick": quick,
            })
        );
    }
}
