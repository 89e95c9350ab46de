//! Known vectors from outside Warden and outside the `lorawan` crate, so the codec (which is now that
//! crate, see `src/phy.rs`) cannot silently agree with itself: frames, MICs and session keys produced
//! by npm `lora-packet` 0.9.3 with the LoRaWAN test keys (AppKey 2B7E1516…4F3C, DevEUI
//! 0004A30B001C0530, AppEUI 70B3D57ED0000001), embedded as hex. Plus the crate's own parser run over
//! frames the engine emits (JoinAccept, ACK downlinks across the 16-bit counter rollover).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lorawan::keys::AppKey;
use lorawan::parser::{DataHeader, DataPayload, DevNonce, JoinAcceptPayload, PhyPayload, parse};
use warden_core::testing::{MemoryState as Mem, StaticCredentials as Creds};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};
use warden_lorawan::{Config, Engine, RxInfo};

const APP_KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];

fn b64d(s: &str) -> Vec<u8> {
    let rxpk: warden_lorawan::gwmp::RxPk =
        serde_json::from_value(serde_json::json!({"tmst": 0, "data": s})).unwrap();
    rxpk.payload().unwrap()
}

const H: fn(&str) -> Vec<u8> = |s| hex::decode(s).unwrap();

#[test]
fn lora_packet_vectors() {
    let k = Key(APP_KEY);
    // JoinRequest (DevNonce 0x1234, on the wire 34 12)
    let jr = H("00010000d07ed5b37030051c000ba3040034124f5ca349");
    let Ok(phy::Uplink::Join(j)) = phy::parse_uplink(&jr) else {
        panic!("JoinRequest")
    };
    assert_eq!(
        (j.app_eui, j.dev_eui, j.dev_nonce),
        (0x70b3_d57e_d000_0001, 0x0004_a30b_001c_0530, 0x1234)
    );
    assert!(
        phy::join_request_mic_ok(&k, &j),
        "lora-packet's JoinRequest MIC"
    );
    assert!(!phy::join_request_mic_ok(&Key([0x2b; 16]), &j));
    for i in 0..jr.len() {
        let mut bad = jr.clone();
        bad[i] ^= 0x01;
        if let Ok(phy::Uplink::Join(j)) = phy::parse_uplink(&bad) {
            assert!(!phy::join_request_mic_ok(&k, &j), "bit flip in byte {i}");
        }
    }

    // JoinAccept AppNonce 000001, NetID 000013, DevAddr 26000001, DLSettings 0, RxDelay 1
    let ja = phy::JoinAccept {
        app_nonce: 1,
        net_id: 0x13,
        dev_addr: 0x2600_0001,
        rx1_dr_offset: 0,
        rx2_dr: 0,
        rx_delay: 1,
    };
    let lp_ja = H("207b521b4671f455339dc84fe2defd3db9");
    assert_eq!(phy::build_join_accept(&k, &ja).unwrap(), lp_ja);
    assert_eq!(phy::open_join_accept(&k, &lp_ja), Some(ja.clone()));

    // session keys for that JoinAccept and DevNonce 1234
    let nwk = Key(H("4e3fef7d8993d07fa7d837ca1b4b0adb").try_into().unwrap());
    let app = Key(H("b562f1a7e7d2ef8703b82b94d81c6190").try_into().unwrap());
    assert_eq!(
        phy::derive_session_keys(&k, 1, 0x13, 0x1234).unwrap(),
        (nwk, app)
    );
    assert_eq!(
        phy::accept_join(&k, &ja, 0x1234).unwrap(),
        (lp_ja, nwk, app)
    );

    // confirmed uplink, FCnt 70 000 (MIC over the 32-bit counter), ADR, FOpts LinkCheckReq, FPort 1
    let up = H("80010000268170110201b1f23105420cc8799e8154");
    let Ok(phy::Uplink::Data(d)) = phy::parse_uplink(&up) else {
        panic!("uplink")
    };
    assert_eq!(d.dev_addr, 0x2600_0001);
    assert!(d.confirmed() && d.adr() && !d.ack());
    assert_eq!((d.fcnt16, d.fport), (70_000u32 as u16, Some(1)));
    assert_eq!(phy::parse_mac_up(&d.fopts), vec![phy::MacUp::LinkCheckReq]);
    assert!(d.mic_ok(&nwk, 70_000));
    assert!(
        !d.mic_ok(&nwk, 70_000 & 0xffff),
        "the MIC covers the upper 16 bits"
    );
    assert!(!d.mic_ok(&app, 70_000));
    assert_eq!(d.decrypt(&nwk, &app, 70_000).unwrap(), H("0167011102685a"));

    // MAC commands on FPort 0, encrypted with the NwkSKey
    let m0 = H("4001000026000500000963381209");
    let Ok(phy::Uplink::Data(d)) = phy::parse_uplink(&m0) else {
        panic!("FPort 0")
    };
    assert!(d.mic_ok(&nwk, 5));
    assert_eq!(d.decrypt(&nwk, &app, 5).unwrap(), vec![0x02]);

    // a downlink Warden builds is byte for byte lora-packet's: ACK, FPending, FOpts LinkCheckAns,
    // FPort 5, payload 0102, FCntDown 3
    let spec = DataSpec {
        ack: true,
        fpending: true,
        fopts: phy::link_check_ans(13, 1),
        fport: Some(5),
        payload: vec![1, 2],
        ..Default::default()
    };
    assert_eq!(
        phy::build_data(Dir::Down, &nwk, &app, 0x2600_0001, 3, &spec).unwrap(),
        H("6001000026330300020d010550d66e5ab1f7")
    );
}

#[test]
fn lorawan_crate_parses_what_the_engine_emits() {
    let mut c = HashMap::new();
    c.insert(
        (
            "lorawan:0004a30b001c0530".to_string(),
            "app_key".to_string(),
        ),
        APP_KEY.to_vec(),
    );
    let cfg = Config::from_toml(&toml::from_str("net_id = \"000013\"").unwrap()).unwrap();
    let mut e = Engine::new(cfg, Arc::new(Creds(c)), Arc::new(Mem::default())).unwrap();
    let rx = RxInfo {
        eui: 1,
        rxpk: serde_json::from_str(
            r#"{"tmst":1000,"freq":868.1,"datr":"SF7BW125","rssi":-50,"lsnr":5.5,"data":""}"#,
        )
        .unwrap(),
        copies: 1,
    };

    let jr = H("00010000d07ed5b37030051c000ba3040034124f5ca349");

    // the engine's JoinAccept, decrypted and MIC-checked by the crate; the same session keys
    let o = e.handle(&jr, &rx, Duration::ZERO);
    let ja = b64d(&o.downlink.expect("JoinAccept").txpk.data);
    let Ok(PhyPayload::JoinAccept(JoinAcceptPayload::Encrypted(enc))) = parse(ja) else {
        panic!("JoinAccept")
    };
    let key = AppKey::from(APP_KEY);
    let dec = enc.decrypt(&key);
    assert!(
        dec.validate_mic(&key),
        "lorawan rejects Warden's JoinAccept MIC"
    );
    let dev_addr = u32::from_le_bytes(dec.dev_addr().as_ref().try_into().unwrap());
    let nonce = [0x34u8, 0x12];
    let dn = DevNonce::new(&nonce[..]).unwrap();
    let nwk = dec.derive_newskey(&dn, &key);
    let app = dec.derive_appskey(&dn, &key);
    let s = e.session(dev_addr).expect("session").clone();
    assert_eq!(nwk.as_ref(), &s.nwk_s_key[..]);
    assert_eq!(app.as_ref(), &s.app_s_key[..]);

    // uplinks (FCnt across 65 535) are accepted, and the crate checks each ACK downlink's MIC
    for fcnt in [
        0u32, 1, 16_000, 32_000, 48_000, 64_000, 65_535, 65_536, 65_537,
    ] {
        let up = phy::build_data(
            Dir::Up,
            &Key(s.nwk_s_key),
            &Key(s.app_s_key),
            dev_addr,
            fcnt,
            &DataSpec {
                confirmed: true,
                fport: Some(1),
                payload: vec![1, 0x67, 0, 0xd7],
                ..Default::default()
            },
        )
        .unwrap();
        let Ok(PhyPayload::Data(DataPayload::Encrypted(d))) = parse(up.clone()) else {
            panic!("data")
        };
        assert!(d.validate_mic(nwk.inner(), fcnt), "uplink MIC at {fcnt}");
        let out = e.handle(&up, &rx, Duration::ZERO);
        assert!(
            matches!(
                out.events.first(),
                Some(warden_core::AdapterEvent::Uplink(_))
            ),
            "{:?}",
            out.events
        );
        // the ACK downlink: its MIC with the downlink counter
        let dl = b64d(&out.downlink.expect("ACK").txpk.data);
        let Ok(PhyPayload::Data(DataPayload::Encrypted(d))) = parse(dl) else {
            panic!("downlink")
        };
        let fcnt_down = e.session(dev_addr).unwrap().fcnt_down - 1;
        assert!(d.fhdr().fctrl().ack());
        assert!(
            d.validate_mic(nwk.inner(), fcnt_down),
            "downlink MIC at FCntDown {fcnt_down}"
        );
    }
}
