//! Test vectors built with zigpy 2.4.0 (`zigpy.zcl.foundation` and cluster classes; regenerate with
//! `tests/peers/zigbee/zcl_gen_vectors.py`): our encoders must produce zigpy's bytes, and frames
//! zigpy builds must decode to the values it was given.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::clusters::ClusterCommand;
use super::commands::{Arg, command};
use super::frame::{Direction, FrameType, ZclBody, ZclHeader, decode_frame, encode_frame};
use super::global::{self, AttributeReport, ReportingConfig, Status};
use super::normalise::{DeviceContext, IdentityField, PointValue, identity, normalise};
use super::types::{DataType, ZclValue};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn gframe(tsn: u8, command: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(&ZclHeader::global(tsn, command), payload)
}

// ---------------------------------------------------------------- encoders == zigpy

#[test]
fn on_off_commands_match_zigpy() {
    assert_eq!(ClusterCommand::On.frame(1, false), hex("010101"));
    assert_eq!(ClusterCommand::Off.frame(2, true), hex("110200"));
    assert_eq!(ClusterCommand::Toggle.frame(3, false), hex("010302"));
    assert_eq!(
        command("turn_on", &[]).unwrap().frame(1, false),
        hex("010101")
    );
    assert_eq!(
        command("turn_off", &[]).unwrap().frame(2, true),
        hex("110200")
    );
    assert_eq!(
        command("toggle", &[]).unwrap().frame(3, false),
        hex("010302")
    );
}

#[test]
fn level_commands_match_zigpy() {
    let r = command(
        "set_level",
        &[("level", Arg::Num(50.0)), ("transition_s", Arg::Num(1.5))],
    )
    .unwrap();
    assert_eq!(r.cluster, 0x0008);
    assert_eq!(r.frame(4, false), hex("0104047f0f00"));
    let c = ClusterCommand::MoveToLevel {
        level: 254,
        transition: 0,
        with_on_off: false,
    };
    assert_eq!(c.frame(5, false), hex("010500fe0000"));
}

#[test]
fn color_commands_match_zigpy() {
    let r = command(
        "set_hue_sat",
        &[("hue", Arg::Num(180.0)), ("saturation", Arg::Num(100.0))],
    )
    .unwrap();
    assert_eq!(r.cluster, 0x0300);
    assert_eq!(r.frame(6, false), hex("0106067ffe0000"));
    let r = command(
        "set_color_xy",
        &[
            ("x", Arg::Num(0.5)),
            ("y", Arg::Num(0.25)),
            ("transition_s", Arg::Num(0.1)),
        ],
    )
    .unwrap();
    assert_eq!(r.frame(7, false), hex("010707008000400100"));
    let r = command("set_color_temp", &[("mireds", Arg::Num(370.0))]).unwrap();
    assert_eq!(r.frame(8, false), hex("01080a72010000"));
    let r = command("set_color_temp", &[("kelvin", Arg::Num(2700.0))]).unwrap();
    assert_eq!(r.frame(8, false), hex("01080a72010000"));
}

#[test]
fn read_attributes_match_zigpy() {
    let p = global::encode_read_attributes(&[0, 1]).unwrap();
    assert_eq!(gframe(9, 0x00, &p), hex("00090000000100"));
    let p = global::encode_read_attributes(&[4, 5, 7, 0x4000]).unwrap();
    assert_eq!(gframe(10, 0x00, &p), hex("000a000400050007000040"));
    let r = super::commands::read_points(&["temperature"], &[]).unwrap();
    assert_eq!(r[0].frame(9, false), hex("0009000000"));
}

#[test]
fn write_attributes_match_zigpy() {
    let r = command(
        "write_attribute",
        &[
            ("point", Arg::Text("heating_setpoint")),
            ("value", Arg::Num(21.5)),
        ],
    )
    .unwrap();
    assert_eq!(r.frame(11, false), hex("000b021200296608"));
    let r = command(
        "write_attribute",
        &[
            ("point", Arg::Text("system_mode")),
            ("value", Arg::Text("heat")),
        ],
    )
    .unwrap();
    assert_eq!(r.frame(12, false), hex("000c021c003004"));
}

#[test]
fn configure_reporting_matches_zigpy() {
    let p = global::encode_configure_reporting(&[ReportingConfig {
        attr: 0,
        data_type: DataType::Int16,
        min_interval: 10,
        max_interval: 300,
        reportable_change: Some(ZclValue::Signed(DataType::Int16, 50)),
    }])
    .unwrap();
    assert_eq!(gframe(13, 0x06, &p), hex("000d06000000290a002c013200"));
    let p = global::encode_configure_reporting(&[ReportingConfig {
        attr: 0,
        data_type: DataType::Bool,
        min_interval: 0,
        max_interval: 600,
        reportable_change: None,
    }])
    .unwrap();
    assert_eq!(gframe(14, 0x06, &p), hex("000e060000001000005802"));
}

#[test]
fn default_response_matches_zigpy() {
    let h = ZclHeader {
        direction: Direction::ServerToClient,
        disable_default_response: true,
        ..ZclHeader::global(15, 0x0b)
    };
    let f = encode_frame(&h, &global::encode_default_response(1, Status::SUCCESS));
    assert_eq!(f, hex("180f0b0100"));
}

#[test]
fn report_encoder_matches_zigpy() {
    let p = global::encode_report_attributes(&[AttributeReport {
        attr: 0,
        value: ZclValue::Signed(DataType::Int16, 2150),
    }])
    .unwrap();
    let h = ZclHeader {
        direction: Direction::ServerToClient,
        disable_default_response: true,
        ..ZclHeader::global(0x2a, 0x0a)
    };
    assert_eq!(encode_frame(&h, &p), hex("182a0a0000296608"));
}

// ---------------------------------------------------------------- zigpy frames decode

fn report(cluster: u16, h: &str) -> Vec<AttributeReport> {
    let f = decode_frame(cluster, &hex(h)).unwrap();
    assert_eq!(f.header.direction, Direction::ServerToClient);
    match f.body {
        ZclBody::ReportAttributes(r) => {
            assert_eq!(r.stopped, None);
            r.items
        }
        other => panic!("{other:?}"),
    }
}

fn first_float(cluster: u16, r: &AttributeReport) -> f64 {
    let out = normalise(cluster, r.attr, &r.value, &DeviceContext::default(), &[]);
    match out[0].value {
        PointValue::Float(f) => f,
        ref o => panic!("{o:?}"),
    }
}

#[test]
fn shared_temperature_vector() {
    // /work/shared/peers/zigbee/zigbee_vectors.py: 18 2a 0a 00 00 29 66 08
    let f = decode_frame(0x0402, &hex("182a0a0000296608")).unwrap();
    assert_eq!(f.header.tsn, 0x2a);
    assert!(f.header.disable_default_response);
    let r = report(0x0402, "182a0a0000296608");
    assert_eq!(r[0].value, ZclValue::Signed(DataType::Int16, 2150));
    let out = normalise(0x0402, 0, &r[0].value, &DeviceContext::default(), &[]);
    assert_eq!(out[0].name, "temperature");
    assert_eq!(out[0].value, PointValue::Float(21.5));
    assert_eq!(out[0].unit.as_deref(), Some("°C"));
}

#[test]
fn zigpy_reports_decode() {
    let r = report(0x0001, "08100a2000201e210020ab");
    assert_eq!(first_float(0x0001, &r[0]), 3.0);
    assert_eq!(first_float(0x0001, &r[1]), 85.5);
    let r = report(0x0402, "08110a0000290080");
    assert_eq!(r[0].value, ZclValue::Invalid(DataType::Int16));
    assert!(normalise(0x0402, 0, &r[0].value, &DeviceContext::default(), &[]).is_empty());
    let r = report(0x0405, "08120a000021d711");
    assert_eq!(first_float(0x0405, &r[0]), 45.67);
    let r = report(0x0406, "08130a00001801");
    let out = normalise(0x0406, 0, &r[0].value, &DeviceContext::default(), &[]);
    assert_eq!(out[0].value, PointValue::Bool(true));
    let r = report(0x0702, "08140a000025141a99be1c00");
    assert_eq!(
        r[0].value,
        ZclValue::Unsigned(DataType::Uint48, 123_456_789_012)
    );
    let r = report(
        0x0300,
        "08150a0700217201f0ff390000c03ff1ff3a00000000000002c0f2ff380038",
    );
    assert_eq!(r[0].value, ZclValue::Unsigned(DataType::Uint16, 370));
    assert_eq!(r[1].value, ZclValue::Float(DataType::SingleFloat, 1.5));
    assert_eq!(r[2].value, ZclValue::Float(DataType::DoubleFloat, -2.25));
    assert_eq!(r[3].value, ZclValue::Float(DataType::SemiFloat, 0.5));
}

#[test]
fn zigpy_array_and_struct_are_skipped() {
    let r = report(
        0x0000,
        "08200af0ff482002000709f1ff4c020021050042026869040042044c554d49",
    );
    assert_eq!(r.len(), 3);
    assert!(matches!(
        r[0].value,
        ZclValue::Composite(DataType::Array, _)
    ));
    assert!(matches!(
        r[1].value,
        ZclValue::Composite(DataType::Structure, _)
    ));
    assert_eq!(
        identity(0, r[2].attr, &r[2].value),
        Some((IdentityField::Manufacturer, "LUMI".into()))
    );
    // and they re-encode to zigpy's bytes
    let p = global::encode_report_attributes(&r).unwrap();
    let mut expect = hex("08200af0ff482002000709f1ff4c020021050042026869040042044c554d49");
    expect.drain(..3);
    assert_eq!(p, expect);
}

#[test]
fn zigpy_read_responses_decode() {
    let f = decode_frame(
        0,
        &hex("081601040000420e494b4541206f662053776564656e05008607000030030040004205322e332e37"),
    )
    .unwrap();
    let ZclBody::ReadAttributesResponse(r) = f.body else {
        panic!()
    };
    assert_eq!(r.stopped, None);
    assert_eq!(r.items.len(), 4);
    assert_eq!(
        identity(0, 4, r.items[0].value.as_ref().unwrap()),
        Some((IdentityField::Manufacturer, "IKEA of Sweden".into()))
    );
    assert_eq!(r.items[1].status, Status::UNSUPPORTED_ATTRIBUTE);
    assert_eq!(
        identity(0, 7, r.items[2].value.as_ref().unwrap()),
        Some((IdentityField::PowerSource, "battery".into()))
    );
    assert_eq!(
        identity(0, 0x4000, r.items[3].value.as_ref().unwrap()),
        Some((IdentityField::SwBuildId, "2.3.7".into()))
    );

    let f = decode_frame(0, &hex("081701f0ff00f0ccbbaa1c004b1200f1ff00e20027b929f2ff0041020102f3ff00f1000102030405060708090a0b0c0d0e0f")).unwrap();
    let ZclBody::ReadAttributesResponse(r) = f.body else {
        panic!()
    };
    assert_eq!(r.stopped, None);
    assert_eq!(
        r.items[0].value,
        Some(ZclValue::Unsigned(DataType::Ieee, 0x0012_4b00_1caa_bbcc))
    );
    assert_eq!(
        r.items[1].value,
        Some(ZclValue::Unsigned(DataType::UtcTime, 700_000_000))
    );
    assert_eq!(
        r.items[2].value,
        Some(ZclValue::Octets(DataType::OctetString, vec![1, 2]))
    );
    let key: [u8; 16] = core::array::from_fn(|i| i as u8);
    assert_eq!(r.items[3].value, Some(ZclValue::SecurityKey(key)));
}

#[test]
fn zigpy_status_responses_decode() {
    let f = decode_frame(0x0201, &hex("08180400")).unwrap();
    let ZclBody::WriteAttributesResponse(r) = f.body else {
        panic!()
    };
    assert!(r.items.is_empty() && r.stopped.is_none());
    let f = decode_frame(0x0201, &hex("081904880000871200")).unwrap();
    let ZclBody::WriteAttributesResponse(r) = f.body else {
        panic!()
    };
    assert_eq!(r.items.len(), 2);
    assert_eq!(
        (r.items[1].status, r.items[1].attr),
        (Status::INVALID_VALUE, 0x0012)
    );
    let f = decode_frame(0x0402, &hex("081a0700")).unwrap();
    let ZclBody::ConfigureReportingResponse(r) = f.body else {
        panic!()
    };
    assert!(r.items.is_empty());
    let f = decode_frame(0x0402, &hex("081b078c000000")).unwrap();
    let ZclBody::ConfigureReportingResponse(r) = f.body else {
        panic!()
    };
    assert_eq!(r.items[0].status, Status::UNREPORTABLE_ATTRIBUTE);
    assert_eq!(r.items[0].direction, Some(0));
    let f = decode_frame(0x0006, &hex("181c0b0281")).unwrap();
    assert_eq!(
        f.body,
        ZclBody::DefaultResponse {
            command: 2,
            status: Status(0x81)
        }
    );
}

#[test]
fn zigpy_other_frames() {
    let f = decode_frame(0x0006, &hex("001d0c00000a")).unwrap();
    assert_eq!(
        f.body,
        ZclBody::Unsupported {
            frame_type: FrameType::Global,
            command: 0x0c
        }
    );
    let f = decode_frame(0x0000, &hex("0c5f111e0a01ff2001")).unwrap();
    assert!(matches!(
        f.body,
        ZclBody::ManufacturerSpecific { code: 0x115f, .. }
    ));
    let f = decode_frame(0x0500, &hex("191f00050000010000")).unwrap();
    let ZclBody::ZoneStatusChange(z) = f.body else {
        panic!()
    };
    assert!(z.zone_status.alarm1() && z.zone_status.tamper());
    assert_eq!(
        (z.extended_status, z.zone_id, z.delay),
        (Some(0), Some(1), Some(0))
    );
}
