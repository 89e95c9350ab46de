//! `cargo bench -p warden-bacnet --bench parse`: BACnet/IP datagrams per second Warden decodes on
//! one core (one thread, no runtime), all the way down: BVLC → NPDU → APDU → service parameters
//! → tagged values → points. The mix rotates through what a busy gateway receives: confirmed and
//! unconfirmed COV notifications, ReadPropertyMultiple-ACKs of 16 present values, ReadProperty-
//! ACKs and I-Ams.
//!
//! Prints a table and one JSON line. `WARDEN_BENCH_QUICK=1`: 20k datagrams (smoke test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use warden_bacnet::apdu::{self, Apdu};
use warden_bacnet::points::{self, ObjectInfo};
use warden_bacnet::services::{self, CovNotification, IAm, PropertyValue, RpmResult, prop};
use warden_bacnet::tag::{AppValue, Datum, ObjectId};
use warden_bacnet::{bvlc, npdu};

fn datagram(a: &Apdu<'_>) -> Vec<u8> {
    let ap = apdu::encode(a);
    let n = npdu::encode(&npdu::Npdu::local(&ap, false));
    bvlc::encode(&bvlc::Bvlc::OriginalUnicast(&n)).unwrap()
}

fn main() {
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| v == "1");
    let n: usize = if quick { 20_000 } else { 2_000_000 };
    let ai = |i| ObjectId::new(0, i);
    let cov = services::cov_notification(&CovNotification {
        process: 0x5741,
        device: ObjectId::new(8, 1002),
        object: ai(1),
        time_remaining: 300,
        values: vec![
            (
                prop::PRESENT_VALUE,
                None,
                vec![Datum::App(AppValue::Real(21.5))],
                None,
            ),
            (
                prop::STATUS_FLAGS,
                None,
                vec![Datum::App(AppValue::Bits {
                    unused: 4,
                    bytes: vec![0],
                })],
                None,
            ),
        ],
    });
    let rpm = services::read_property_multiple_ack(
        &(1..=16)
            .map(|i| RpmResult {
                object: ai(i),
                property: prop::PRESENT_VALUE,
                index: None,
                value: Ok(vec![Datum::App(AppValue::Real(20.0 + i as f32))]),
            })
            .collect::<Vec<_>>(),
    );
    let rp = services::read_property_ack(&PropertyValue {
        object: ai(1),
        property: prop::PRESENT_VALUE,
        index: None,
        value: vec![Datum::App(AppValue::Real(19.25))],
    });
    let iam = services::i_am(&IAm {
        device: ObjectId::new(8, 1002),
        max_apdu: 1476,
        segmentation: 0,
        vendor: 999,
    });
    let frames = [
        datagram(&Apdu::Confirmed {
            segmented_response_accepted: false,
            max_segments: 0,
            max_apdu: 5,
            invoke_id: 7,
            segment: None,
            service: services::confirmed::COV_NOTIFICATION,
            data: &cov,
        }),
        datagram(&Apdu::Unconfirmed {
            service: services::unconfirmed::COV_NOTIFICATION,
            data: &cov,
        }),
        datagram(&Apdu::ComplexAck {
            invoke_id: 9,
            segment: None,
            service: services::confirmed::READ_PROPERTY_MULTIPLE,
            data: &rpm,
        }),
        datagram(&Apdu::ComplexAck {
            invoke_id: 10,
            segment: None,
            service: services::confirmed::READ_PROPERTY,
            data: &rp,
        }),
        datagram(&Apdu::Unconfirmed {
            service: services::unconfirmed::I_AM,
            data: &iam,
        }),
    ];
    let objects: Vec<ObjectInfo> = (1..=16)
        .map(|i| ObjectInfo {
            id: ai(i),
            name: format!("T{i}"),
            point: format!("t{i}"),
            units: Some(62),
            states: None,
        })
        .collect();
    let bytes: usize = frames.iter().map(Vec::len).sum::<usize>() * n / frames.len();
    let start = Instant::now();
    let mut points_out = 0usize;
    for i in 0..n {
        let f = &frames[i % frames.len()];
        let b = bvlc::decode(black_box(f)).unwrap();
        let np = npdu::decode(b.npdu().unwrap()).unwrap();
        let npdu::Body::Apdu(a) = np.body else {
            unreachable!()
        };
        match apdu::decode(a).unwrap() {
            Apdu::Confirmed { data, .. } | Apdu::Unconfirmed { service: 2, data } => {
                let c = services::decode_cov_notification(data).unwrap();
                points_out += c
                    .values
                    .iter()
                    .filter_map(|v| points::point(&objects[0], &v.2))
                    .count();
            }
            Apdu::Unconfirmed { data, .. } => {
                black_box(services::decode_i_am(data).unwrap());
            }
            Apdu::ComplexAck {
                service: 14, data, ..
            } => {
                for r in services::decode_read_property_multiple_ack(data).unwrap() {
                    let o = &objects[(r.object.instance as usize - 1) % 16];
                    points_out += usize::from(points::point(o, &r.value.unwrap()).is_some());
                }
            }
            Apdu::ComplexAck { data, .. } => {
                let v = services::decode_read_property_ack(data).unwrap();
                points_out += usize::from(points::point(&objects[0], &v.value).is_some());
            }
            _ => unreachable!(),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!("datagrams        {n}");
    println!("bytes            {bytes}");
    println!("points produced  {points_out}");
    println!("seconds          {secs:.3}");
    println!("datagrams/s      {rate:.0}");
    println!("MB/s             {:.1}", bytes as f64 / secs / 1e6);
    println!(
        "{{\"bench\":\"bacnet-parse\",\"datagrams\":{n},\"per_second\":{rate:.0},\"points\":{points_out}}}"
    );
}
