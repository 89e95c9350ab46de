//! The `lorawan` crate (lora-rs, 0.9) as an independent oracle for Warden's own LoRaWAN codec: it
//! parses and decrypts Warden's JoinAccept, checks its MIC, derives the same session keys, and checks
//! the MIC of Warden's downlinks and of uplinks built by `phy` (including a counter above 65 535).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lorawan::keys::{AES128, AppKey};
use lorawan::parser::{DataHeader, DataPayload, DevNonce, JoinAcceptPayload, PhyPayload, parse};
use warden_core::{CredentialLookup, DeviceId, Secret, StateError, StateStore};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};
use warden_lorawan::{Config, Engine, RxInfo};

struct Creds(HashMap<(String, String), Vec<u8>>);
impl CredentialLookup for Creds {
    fn credential(&self, device: &DeviceId, name: &str) -> Option<Secret> {
        self.0
            .get(&(device.to_string(), name.to_owned()))
            .map(|v| Secret::new(v.clone()))
    }
}

#[derive(Default)]
struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);
impl StateStore for Mem {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.0.lock().unwrap().insert(key.into(), value.to_vec());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), StateError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
    fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

const APP_KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];

fn b64d(s: &str) -> Vec<u8> {
    let rxpk: warden_lorawan::gwmp::RxPk =
        serde_json::from_value(serde_json::json!({"tmst": 0, "data": s})).unwrap();
    rxpk.payload().unwrap()
}

#[test]
fn lorawan_crate_agrees_with_warden() {
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

    // lorawan parses lora-packet's JoinRequest and agrees on its MIC
    let jr = hex::decode("00010000d07ed5b37030051c000ba3040034124f5ca349").unwrap();
    let Ok(PhyPayload::JoinRequest(p)) = parse(jr.clone()) else {
        panic!("JoinRequest")
    };
    assert!(p.validate_mic(&AES128(APP_KEY)));

    // Warden's JoinAccept, decrypted and MIC-checked by lorawan; the same session keys
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

    // uplinks from Warden's codec (FCnt across 65 535) pass lorawan's MIC check and decrypt
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
        );
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
        // Warden's ACK downlink: lorawan checks its MIC with the downlink counter
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
