//! Fuzz-style property tests over every parser of untrusted input (Semtech UDP datagrams,
//! PHYPayloads, MAC commands, Cayenne LPP) and the whole engine path, plus encode→decode round trips
//! and frame-counter properties. Arbitrary bytes must never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use warden_core::AdapterEvent;
use warden_core::testing::{MemoryState as Mem, StaticCredentials as Creds};
use warden_lorawan::gwmp::{self, PushBody, RxPk};
use warden_lorawan::phy::{self, DataSpec, Dir, Key, Uplink};
use warden_lorawan::{Config, Engine, RxInfo, lpp};

const NWK: Key = Key([1; 16]);
const APP: Key = Key([2; 16]);
const ADDR: u32 = 0x01ab_cdef;

/// An engine with one ABP device (DevAddr 01abcdef) and the test OTAA device.
fn engine() -> Engine {
    let cfg: toml::Value = toml::from_str(
        "[devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n[default_model]\ndecoder = \"raw\"\n",
    )
    .unwrap();
    let mut c = Creds::default();
    let id = "lorawan:0004a30b001c0531".to_string();
    c.0.insert((id.clone(), "dev_addr".into()), ADDR.to_be_bytes().to_vec());
    c.0.insert((id.clone(), "nwk_s_key".into()), NWK.0.to_vec());
    c.0.insert((id, "app_s_key".into()), APP.0.to_vec());
    c.0.insert(
        ("lorawan:0004a30b001c0530".into(), "app_key".into()),
        vec![0x2b; 16],
    );
    Engine::new(
        Config::from_toml(&cfg).unwrap(),
        Arc::new(c),
        Arc::new(Mem::default()),
    )
    .unwrap()
}

fn rx() -> RxInfo {
    RxInfo {
        eui: 1,
        rxpk: serde_json::from_str(
            r#"{"tmst":1000,"freq":868.1,"datr":"SF7BW125","rssi":-50,"lsnr":5.5,"data":""}"#,
        )
        .unwrap(),
        copies: 1,
    }
}

fn up(fcnt: u32, payload: &[u8]) -> Vec<u8> {
    phy::build_data(
        Dir::Up,
        &NWK,
        &APP,
        ADDR,
        fcnt,
        &DataSpec {
            fport: Some(1),
            payload: payload.to_vec(),
            ..Default::default()
        },
    )
    .unwrap()
}

fn outcome_kind(ev: &[AdapterEvent]) -> String {
    match ev.first() {
        Some(AdapterEvent::Uplink(_)) => "uplink".into(),
        Some(AdapterEvent::Rejected(r)) => r.cause.into(),
        Some(other) => format!("{other:?}"),
        None => "none".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = gwmp::parse_upstream(&b);
        let _ = gwmp::peek_eui(&b);
    }

    #[test]
    fn datagrams_with_a_valid_header_and_arbitrary_body_never_panic(
        id in prop_oneof![Just(0u8), Just(2u8), Just(5u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..200),
        json in "\\PC{0,120}",
    ) {
        for tail in [&body[..], json.as_bytes()] {
            let mut d = vec![2, 0, 1, id, 0xaa, 0x55, 0x5a, 0, 0, 0, 0, 1];
            d.extend_from_slice(tail);
            let _ = gwmp::parse_upstream(&d);
        }
    }

    #[test]
    fn arbitrary_phy_payloads_never_panic_anywhere(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = phy::parse_uplink(&b);
        let _ = phy::parse_data_or_join(&b);
        let _ = phy::parse_mac_up(&b);
        let _ = lpp::decode(&b);
        let _ = phy::open_join_accept(&Key([3; 16]), &b);
        let mut e = engine();
        let _ = e.handle(&b, &rx(), Duration::ZERO);
    }

    #[test]
    fn mutated_valid_frames_never_panic_and_never_pass(
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        pos in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let mut f = up(7, &payload);
        let i = pos % f.len();
        f[i] ^= flip;
        let mut e = engine();
        let out = e.handle(&f, &rx(), Duration::ZERO);
        // a changed byte is either caught (MIC, framing) or … never delivered
        prop_assert!(!matches!(out.events.first(), Some(AdapterEvent::Uplink(_))), "{:?}", out.events);
    }

    #[test]
    fn data_frames_round_trip(
        dir_up in any::<bool>(), confirmed in any::<bool>(), ack in any::<bool>(),
        addr in any::<u32>(), fcnt in any::<u32>(), port in 1u8..=223,
        fopts in proptest::collection::vec(any::<u8>(), 0..15),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = if dir_up { Dir::Up } else { Dir::Down };
        let spec = DataSpec { confirmed, ack, fopts: fopts.clone(), fport: Some(port), payload: payload.clone(), ..Default::default() };
        let f = phy::build_data(dir, &NWK, &APP, addr, fcnt, &spec).unwrap();
        let Ok(Uplink::Data(d)) = phy::parse_data_or_join(&f) else { panic!("parse") };
        prop_assert_eq!(d.dev_addr, addr);
        prop_assert_eq!(d.fcnt16, fcnt as u16);
        prop_assert_eq!(d.confirmed(), confirmed);
        prop_assert_eq!(d.ack(), ack);
        prop_assert_eq!(&d.fopts, &fopts);
        prop_assert_eq!(d.fport, Some(port));
        prop_assert!(d.mic_ok(&NWK, fcnt));
        prop_assert_eq!(d.decrypt(&NWK, &APP, fcnt).unwrap(), payload);
    }

    /// Any spec either builds a frame that parses back or is refused: the crate's creator writes
    /// into a fixed buffer, so the sizes are bounded before it runs.
    #[test]
    fn building_any_spec_never_panics(
        dir_up in any::<bool>(), fport in proptest::option::of(any::<u8>()),
        fopts in proptest::collection::vec(any::<u8>(), 0..40),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        fcnt in any::<u32>(),
    ) {
        let dir = if dir_up { Dir::Up } else { Dir::Down };
        let spec = DataSpec { fopts, fport, payload, ..Default::default() };
        if let Ok(f) = phy::build_data(dir, &NWK, &APP, ADDR, fcnt, &spec) {
            prop_assert!(f.len() <= phy::MAX_PHY);
            let Ok(Uplink::Data(d)) = phy::parse_data_or_join(&f) else { panic!("parse") };
            prop_assert!(d.mic_ok(&NWK, fcnt));
            prop_assert_eq!(d.fport, fport);
            prop_assert_eq!(d.decrypt(&NWK, &APP, fcnt).unwrap(), spec.payload);
        }
    }

    #[test]
    fn join_accepts_round_trip(an in 0u32..0x100_0000, net in 0u32..0x100_0000, addr in any::<u32>(),
                               off in 0u8..8, dr in 0u8..16, delay in 0u8..16, key in any::<[u8; 16]>()) {
        let ja = phy::JoinAccept { app_nonce: an, net_id: net, dev_addr: addr, rx1_dr_offset: off, rx2_dr: dr, rx_delay: delay };
        let b = phy::build_join_accept(&Key(key), &ja).unwrap();
        prop_assert_eq!(phy::open_join_accept(&Key(key), &b), Some(ja));
    }

    #[test]
    fn push_data_round_trips(token in any::<u16>(), eui in any::<u64>(), tmst in any::<u32>(),
                             rssi in -140i32..0, data in proptest::collection::vec(any::<u8>(), 0..255)) {
        let rxpk: RxPk = serde_json::from_value(serde_json::json!({
            "tmst": tmst, "freq": 868.3, "stat": 1, "modu": "LORA", "datr": "SF9BW125",
            "rssi": rssi, "lsnr": -2.5, "size": data.len(), "data": gwmp::b64(&data)})).unwrap();
        let body = PushBody { rxpk: vec![rxpk], stat: None };
        let d = gwmp::push_data(token, eui, &body);
        let Ok(gwmp::Upstream::PushData { token: t, eui: e, body: b }) = gwmp::parse_upstream(&d) else { panic!() };
        prop_assert_eq!((t, e), (token, eui));
        prop_assert_eq!(b.rxpk[0].payload().unwrap(), data);
        prop_assert_eq!(b.rxpk[0].tmst, tmst);
    }

    /// Increasing counters with gaps up to MAX_FCNT_GAP across 16-bit rollovers are accepted as
    /// the right 32-bit value; every earlier frame is then refused.
    #[test]
    fn fcnt_tracks_32_bits_and_refuses_old_frames(start in 60_000u32..65_536, gaps in proptest::collection::vec(1u32..3000, 1..6)) {
        let mut e = engine();
        let mut f = start;
        let mut sent = vec![];
        for g in std::iter::once(0).chain(gaps) {
            f += g;
            let fr = up(f, &[f as u8]);
            let out = e.handle(&fr, &rx(), Duration::ZERO);
            prop_assert_eq!(outcome_kind(&out.events), "uplink");
            prop_assert_eq!(e.session(ADDR).unwrap().fcnt_up, Some(f));
            sent.push(fr);
        }
        let last = sent.pop().unwrap();
        prop_assert_eq!(outcome_kind(&e.handle(&last, &rx(), Duration::ZERO).events), "replay");
        for old in sent {
            prop_assert_eq!(outcome_kind(&e.handle(&old, &rx(), Duration::ZERO).events), "stale-fcnt");
        }
    }
}

#[test]
fn far_future_counter_is_a_gap_not_a_delivery() {
    let mut e = engine();
    assert_eq!(
        outcome_kind(&e.handle(&up(10, b"a"), &rx(), Duration::ZERO).events),
        "uplink"
    );
    assert_eq!(
        outcome_kind(&e.handle(&up(40_000, b"b"), &rx(), Duration::ZERO).events),
        "fcnt-gap"
    );
    assert_eq!(
        outcome_kind(&e.handle(&up(11, b"c"), &rx(), Duration::ZERO).events),
        "uplink"
    );
}

#[test]
fn late_processing_falls_back_to_rx2_then_reports_missed() {
    let mut e = engine();
    let confirmed = |f: u32| {
        phy::build_data(
            Dir::Up,
            &NWK,
            &APP,
            ADDR,
            f,
            &DataSpec {
                confirmed: true,
                fport: Some(1),
                payload: vec![1],
                ..Default::default()
            },
        )
        .unwrap()
    };
    let o = e.handle(&confirmed(1), &rx(), Duration::from_millis(10));
    assert_eq!(o.downlink.as_ref().unwrap().window, "rx1");
    assert_eq!(o.downlink.unwrap().txpk.tmst, 1000 + 1_000_000);
    let o = e.handle(&confirmed(2), &rx(), Duration::from_millis(950));
    let dl = o.downlink.unwrap();
    assert_eq!(dl.window, "rx2");
    assert_eq!(dl.txpk.tmst, 1000 + 2_000_000);
    assert_eq!(
        (dl.txpk.freq, dl.txpk.datr.as_str()),
        (869.525, "SF12BW125")
    );
    let o = e.handle(&confirmed(3), &rx(), Duration::from_millis(1950));
    assert!(o.downlink.is_none());
}

#[test]
fn fport0_mac_commands_are_decrypted_with_nwkskey_and_answered() {
    let mut e = engine();
    let f = phy::build_data(
        Dir::Up,
        &NWK,
        &APP,
        ADDR,
        1,
        &DataSpec {
            fport: Some(0),
            payload: vec![0x02, 0x80, 0x01], // LinkCheckReq, then an unknown CID (ignored)
            ..Default::default()
        },
    )
    .unwrap();
    let o = e.handle(&f, &rx(), Duration::ZERO);
    assert!(o.events.is_empty(), "MAC-only frames deliver nothing");
    let dl = o.downlink.expect("LinkCheckAns");
    let b = gwmp_b64_decode(&dl.txpk.data);
    let Ok(Uplink::Data(d)) = phy::parse_data_or_join(&b) else {
        panic!()
    };
    assert!(d.mic_ok(&NWK, 0));
    // SNR 5.5 at SF7 (floor -7.5) → margin 13, one gateway
    assert_eq!(d.fopts, vec![0x02, 13, 1]);
}

fn gwmp_b64_decode(s: &str) -> Vec<u8> {
    let rxpk: RxPk = serde_json::from_value(serde_json::json!({"tmst": 0, "data": s})).unwrap();
    rxpk.payload().unwrap()
}

#[test]
fn downlink_queue_is_bounded_and_commands_are_checked() {
    use warden_core::{Command, Downlink, Point, Value};
    let mut e = engine();
    let dl = |id: usize, name: &str, args: Vec<Point>| Downlink {
        command_id: format!("c{id}"),
        device: "lorawan:0004a30b001c0531".parse().unwrap(),
        command: Command {
            name: name.into(),
            args,
        },
        principal: "test".into(),
        min_assurance: warden_core::Assurance::None,
        security: Vec::new(),
    };
    let send = |i| {
        dl(
            i,
            "send",
            vec![
                Point::new("fport", Value::Int(5)),
                Point::new("payload", Value::Text("0102".into())),
            ],
        )
    };
    for i in 0..8 {
        let held = e.enqueue(&send(i)).unwrap();
        assert_eq!(held.command_id, format!("c{i}"));
        assert_eq!(held.wait, Duration::from_secs(3600));
    }
    let full = e.enqueue(&send(8)).unwrap_err();
    assert!(format!("{:?}", full.outcome).contains("queue full"));
    assert!(e.enqueue(&dl(9, "reboot", vec![])).is_err());
    let long = dl(
        10,
        "send",
        vec![
            Point::new("fport", Value::Int(5)),
            Point::new("payload", Value::Bytes(vec![0; 52])),
        ],
    );
    assert!(e.enqueue(&long).is_err());
    // the next uplink carries the first queued command, with FPending set
    let o = e.handle(&up(1, &[1]), &rx(), Duration::ZERO);
    let dl = o.downlink.expect("command downlink");
    assert_eq!(dl.command_id.as_deref(), Some("c0"));
    let b = gwmp_b64_decode(&dl.txpk.data);
    let Ok(Uplink::Data(d)) = phy::parse_data_or_join(&b) else {
        panic!()
    };
    assert_eq!(d.fport, Some(5));
    assert!(d.fctrl & 0x10 != 0, "FPending");
    assert_eq!(d.decrypt(&NWK, &APP, 0).unwrap(), vec![1, 2]);
    // the seven still queued wait for the next uplinks; past `downlink_wait_s` without one they
    // are dropped and answered `timeout`, each once
    let now = std::time::Instant::now();
    assert!(e.expire_queued(now).is_empty());
    let gone = e.expire_queued(now + Duration::from_secs(3601));
    assert_eq!(gone.len(), 7);
    assert!(
        gone.iter()
            .all(|r| r.outcome == warden_core::CommandOutcome::Timeout)
    );
    assert!(e.expire_queued(now + Duration::from_secs(7200)).is_empty());
    assert!(
        e.handle(&up(2, &[1]), &rx(), Duration::ZERO)
            .downlink
            .is_none()
    );
}
