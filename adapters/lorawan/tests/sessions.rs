//! Sessions against a registry that changes under them (issue 15's regressions): an ABP device
//! re-provisioned with new keys for the same DevAddr, a device revoked, and forgeries for either,
//! which must never be attributed to the device.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_core::testing::MemoryState;
use warden_core::{AdapterEvent, CredentialLookup, DeviceId, Rejection, Secret, StateStore};
use warden_lorawan::phy::{self, DataSpec, Dir, Key};
use warden_lorawan::{Config, Engine, RxInfo};

const OLD_NWK: Key = Key([1; 16]);
const OLD_APP: Key = Key([2; 16]);
const NEW_NWK: Key = Key([7; 16]);
const NEW_APP: Key = Key([8; 16]);
const ADDR: u32 = 0x01ab_cdef;
const DEV: &str = "lorawan:0004a30b001c0531";

/// Credentials an operator can change while the engine runs, as the registry's can.
#[derive(Default)]
struct Registry(Mutex<HashMap<(String, String), Vec<u8>>>);

impl Registry {
    fn provision(&self, nwk: Key, app: Key) {
        let mut m = self.0.lock().unwrap();
        m.insert((DEV.into(), "dev_addr".into()), ADDR.to_be_bytes().to_vec());
        m.insert((DEV.into(), "nwk_s_key".into()), nwk.0.to_vec());
        m.insert((DEV.into(), "app_s_key".into()), app.0.to_vec());
    }
    fn revoke(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl CredentialLookup for Registry {
    fn credential(&self, device: &DeviceId, name: &str) -> Option<Secret> {
        self.0
            .lock()
            .unwrap()
            .get(&(device.to_string(), name.to_owned()))
            .map(|v| Secret::new(v.clone()))
    }
}

fn engine(reg: &Arc<Registry>, state: &Arc<MemoryState>) -> Engine {
    let cfg: toml::Value = toml::from_str(
        "[devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n[default_model]\ndecoder = \"raw\"\n",
    )
    .unwrap();
    let creds: Arc<dyn CredentialLookup> = reg.clone();
    let state: Arc<dyn StateStore> = state.clone();
    Engine::new(Config::from_toml(&cfg).unwrap(), creds, state).unwrap()
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

fn up(nwk: &Key, app: &Key, fcnt: u32) -> Vec<u8> {
    phy::build_data(
        Dir::Up,
        nwk,
        app,
        ADDR,
        fcnt,
        &DataSpec {
            fport: Some(1),
            payload: vec![0x42],
            ..Default::default()
        },
    )
    .unwrap()
}

/// "uplink", or the rejection's cause with the device it was attributed to.
fn outcome(e: &mut Engine, frame: &[u8]) -> (String, Option<String>) {
    match e.handle(frame, &rx(), Duration::ZERO).events.first() {
        Some(AdapterEvent::Uplink(m)) => ("uplink".into(), Some(m.device.to_string())),
        Some(AdapterEvent::Rejected(Rejection { cause, device, .. })) => {
            ((*cause).into(), device.as_ref().map(ToString::to_string))
        }
        other => (format!("{other:?}"), None),
    }
}

fn uplink() -> (String, Option<String>) {
    ("uplink".into(), Some(DEV.into()))
}

#[test]
fn abp_rekey_with_the_same_devaddr_replaces_the_session() {
    let reg = Arc::new(Registry::default());
    let state = Arc::new(MemoryState::default());
    reg.provision(OLD_NWK, OLD_APP);
    let mut e = engine(&reg, &state);
    assert_eq!(outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 10)), uplink());
    assert_eq!(outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 11)), uplink());

    // re-provisioned (re-flashed device, new keys, same DevAddr, counter from 0): taken at once
    reg.provision(NEW_NWK, NEW_APP);
    assert_eq!(outcome(&mut e, &up(&NEW_NWK, &NEW_APP, 0)), uplink());
    assert_eq!(outcome(&mut e, &up(&NEW_NWK, &NEW_APP, 1)), uplink());
    // the old keys no longer open anything, and a frame under them is nobody's denial
    assert_eq!(
        outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 12)),
        ("bad-mic".into(), None)
    );
    // the new session is the persisted one: after a restart the counter holds (replay refused)
    let mut again = engine(&reg, &state);
    assert_eq!(
        outcome(&mut again, &up(&NEW_NWK, &NEW_APP, 1)),
        ("replay".into(), Some(DEV.into()))
    );
    assert_eq!(outcome(&mut again, &up(&NEW_NWK, &NEW_APP, 2)), uplink());
}

#[test]
fn a_revoked_device_is_refused_only_for_frames_that_are_really_its_own() {
    let reg = Arc::new(Registry::default());
    let state = Arc::new(MemoryState::default());
    reg.provision(OLD_NWK, OLD_APP);
    let mut e = engine(&reg, &state);
    assert_eq!(outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 1)), uplink());
    reg.revoke();
    // a genuine frame (its MIC checks under the stored session): the device's, refused
    assert_eq!(
        outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 2)),
        ("inactive-device".into(), Some(DEV.into()))
    );
    // a forgery claiming its DevAddr: not attributed to the device, many times over
    for f in 3..20 {
        assert_eq!(
            outcome(&mut e, &up(&NEW_NWK, &NEW_APP, f)),
            ("bad-mic".into(), None)
        );
    }
    // and for an active device too: a bad MIC is a stranger's
    reg.provision(OLD_NWK, OLD_APP);
    let mut forged = up(&OLD_NWK, &OLD_APP, 30);
    let last = forged.len() - 1;
    forged[last] ^= 0x5a;
    assert_eq!(outcome(&mut e, &forged), ("bad-mic".into(), None));
    assert_eq!(outcome(&mut e, &up(&OLD_NWK, &OLD_APP, 30)), uplink());
}

/// A state store that counts its commits and can be made to fail them.
#[derive(Default)]
struct Commits {
    mem: MemoryState,
    puts: std::sync::atomic::AtomicU32,
    groups: std::sync::atomic::AtomicU32,
    fail: std::sync::atomic::AtomicBool,
}

impl StateStore for Commits {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, warden_core::StateError> {
        self.mem.get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), warden_core::StateError> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.mem.put(key, value)
    }
    fn put_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), warden_core::StateError> {
        self.groups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(warden_core::StateError("disk full".into()));
        }
        for (k, v) in items {
            self.mem.put(k, v)?;
        }
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), warden_core::StateError> {
        self.mem.delete(key)
    }
    fn keys(&self, prefix: &str) -> Result<Vec<String>, warden_core::StateError> {
        self.mem.keys(prefix)
    }
}

#[test]
fn a_batch_shares_one_commit_and_a_failed_commit_delivers_nothing() {
    use std::sync::atomic::Ordering::SeqCst;
    let reg = Arc::new(Registry::default());
    reg.provision(OLD_NWK, OLD_APP);
    let store = Arc::new(Commits::default());
    let cfg: toml::Value = toml::from_str(
        "[devices.\"0004a30b001c0531\"]\nactivation = \"abp\"\n[default_model]\ndecoder = \"raw\"\n",
    )
    .unwrap();
    let creds: Arc<dyn CredentialLookup> = reg.clone();
    let state: Arc<dyn StateStore> = store.clone();
    let mut e = Engine::new(Config::from_toml(&cfg).unwrap(), creds, state.clone()).unwrap();
    let batch = |from: u32, n: u32| -> Vec<(Vec<u8>, RxInfo, Duration)> {
        (from..from + n)
            .map(|f| (up(&OLD_NWK, &OLD_APP, f), rx(), Duration::ZERO))
            .collect()
    };
    let kinds = |outs: &[warden_lorawan::engine::Outcome]| -> Vec<String> {
        outs.iter()
            .map(|o| match o.events.first() {
                Some(AdapterEvent::Uplink(_)) => "uplink".to_owned(),
                Some(AdapterEvent::Rejected(r)) => r.cause.to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    // 50 uplinks, one commit, no single puts
    let outs = e.handle_batch(&batch(1, 50));
    assert_eq!(kinds(&outs), vec!["uplink"; 50]);
    assert_eq!(store.groups.load(SeqCst), 1);
    assert_eq!(store.puts.load(SeqCst), 0);
    // the commit fails: nothing of the batch is delivered
    store.fail.store(true, SeqCst);
    let outs = e.handle_batch(&batch(51, 10));
    assert_eq!(kinds(&outs), vec!["state-error"; 10]);
    assert!(outs.iter().all(|o| o.downlink.is_none()));
    // the reset: the store works again, the next frames go through; the refused ones are not
    // taken later (their counters stayed advanced in memory)
    store.fail.store(false, SeqCst);
    assert_eq!(kinds(&e.handle_batch(&batch(61, 5))), vec!["uplink"; 5]);
    assert_eq!(kinds(&e.handle_batch(&batch(55, 1))), vec!["stale-fcnt"]);
    // what was committed survives a restart: the last delivered frame is a replay
    let mut again = Engine::new(
        Config::from_toml(&cfg).unwrap(),
        reg.clone() as Arc<dyn CredentialLookup>,
        state,
    )
    .unwrap();
    assert_eq!(
        outcome(&mut again, &up(&OLD_NWK, &OLD_APP, 65)),
        ("replay".into(), Some(DEV.into()))
    );
}
