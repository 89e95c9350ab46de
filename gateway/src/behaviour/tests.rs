//! Scenario tests of the behaviour engine: one named rule per test, exact outcomes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use warden_core::{Assurance, DeviceId, Message, Point, Value};

use super::score::FeatureKind;
use super::*;
use crate::config::BehaviourConfig;
use crate::registry::{DeviceRecord, Status};

const T0: u64 = 1_796_601_600_000; // 2026-12-07 00:00 UTC, a Monday
const MIN: u64 = 60_000;

fn rec(id: &str, zone: &str) -> Arc<DeviceRecord> {
    Arc::new(DeviceRecord {
        id: DeviceId::new("sim", id).unwrap(),
        name: None,
        manufacturer: Some("Acme".into()),
        model: Some("Thermo".into()),
        firmware: None,
        serial: None,
        zone: zone.into(),
        role: None,
        profile: None,
        status: Status::Active,
        status_by: "t".into(),
        status_at: 0,
        status_reason: String::new(),
        first_seen: None,
        last_seen: None,
        credentials: vec![],
    })
}

fn cfg() -> BehaviourConfig {
    BehaviourConfig {
        learning_s: 86_400,
        learning_messages: 500,
        ..BehaviourConfig::default()
    }
}

/// A day/night temperature with a little deterministic noise.
fn temp_at(t: u64, i: u64) -> f64 {
    let day = (t % 86_400_000) as f64 / 86_400_000.0;
    let noise = ((i.wrapping_mul(2_654_435_761) >> 8) % 100) as f64 / 500.0 - 0.1;
    21.0 + 3.0 * (day * std::f64::consts::TAU).sin() + noise
}

fn msg(r: &DeviceRecord, t: f64) -> Message {
    let mut m = Message::telemetry(
        r.id.clone(),
        vec![Point::new("temperature", Value::Float(t)).with_unit("°C")],
    );
    m.assurance = Assurance::SharedKey;
    m.link.rssi = Some(-60.0);
    m
}

/// Feeds `days` of one message a minute from `start`; returns the highest action seen.
fn feed(b: &mut Behaviour, r: &Arc<DeviceRecord>, start: u64, days: u64) -> (Action, u64) {
    let mut worst = Action::None;
    let mut alerts = 0;
    for i in 0..days * 1440 {
        let t = start + i * MIN;
        let o = b.uplink(r, None, &msg(r, temp_at(t, i)), t).unwrap();
        if o.action != Action::None {
            alerts += 1;
            if worst == Action::None || o.action == Action::Quarantine {
                worst = o.action;
            }
        }
    }
    (worst, alerts)
}

#[test]
fn a_normal_day_night_week_raises_nothing_and_a_spoof_then_does() {
    let mut b = Behaviour::new(cfg());
    let r = rec("t1", "default");
    let (worst, _) = feed(&mut b, &r, T0, 2);
    assert_eq!(worst, Action::None, "learning never acts");
    let (worst, alerts) = feed(&mut b, &r, T0 + 2 * 86_400_000, 7);
    assert_eq!((worst, alerts), (Action::None, 0));
    // positive control: the same device, same time of day, a physically impossible reading
    let t = T0 + 9 * 86_400_000 + 30_000;
    let o = b.uplink(&r, None, &msg(&r, 150.0), t).unwrap();
    assert_eq!(o.action, Action::Quarantine);
    assert_eq!(o.rule, "score");
    let top = o.assessment.top().unwrap();
    assert_eq!(top.kind, FeatureKind::Value);
    assert_eq!(top.label(), "value:temperature");
    assert!(
        o.reason()
            .starts_with("temperature 150 °C, outside its history")
    );
}

#[test]
fn a_flood_is_scored_on_rate_with_the_hour_in_the_reason() {
    let mut b = Behaviour::new(cfg());
    let r = rec("t2", "default");
    feed(&mut b, &r, T0, 2);
    // Wednesday 14:00: 100 messages in ten seconds
    let start = T0 + 2 * 86_400_000 + 14 * 3_600_000;
    let mut first_q = None;
    for i in 0..100 {
        let t = start + i * 100;
        let o = b.uplink(&r, None, &msg(&r, temp_at(t, i)), t).unwrap();
        if o.action == Action::Quarantine && first_q.is_none() {
            first_q = Some((i, o));
        }
    }
    let (n, o) = first_q.expect("the flood was never quarantined");
    assert!(n < 40, "quarantined only after {n} messages");
    assert_eq!(o.assessment.top().unwrap().kind, FeatureKind::Rate);
    let reason = o.reason();
    assert!(reason.starts_with("message rate "), "{reason}");
    assert!(reason.contains("its usual for 14:00 UTC"), "{reason}");
}

#[test]
fn alerts_count_to_a_quarantine_within_the_window() {
    let mut c = cfg();
    c.quarantine_after = 3;
    let mut b = Behaviour::new(c);
    let r = rec("t3", "default");
    feed(&mut b, &r, T0, 2);
    let t = T0 + 2 * 86_400_000;
    let actions: Vec<Action> = (0..3)
        .map(|i| {
            let mut m = msg(&r, temp_at(t, i));
            m.link.rssi = Some(-71.25); // 7.5 spreads off: alert level, not quarantine level
            b.uplink(&r, None, &m, t + i * MIN).unwrap().action
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            Action::Alert { audit: true },
            Action::Alert { audit: true },
            Action::Quarantine
        ]
    );
}

#[test]
fn a_new_command_from_a_new_principal_at_night_is_named() {
    let mut b = Behaviour::new(cfg());
    let r = rec("t4", "default");
    feed(&mut b, &r, T0, 2);
    for d in 0..10 {
        let t = T0 + d * 86_400_000 + 8 * 3_600_000;
        b.command(&r, None, "set_setpoint", "operator:alice", t);
    }
    let t = T0 + 2 * 86_400_000 + 3 * 3_600_000 + 12 * MIN;
    let o = b
        .command(&r, None, "set_setpoint", "mqtt:intruder", t)
        .unwrap();
    assert_eq!(o.assessment.top().unwrap().kind, FeatureKind::NewCommand);
    assert_eq!(
        o.reason(),
        "first `set_setpoint` ever from `mqtt:intruder` at 03:12"
    );
    // the known principal at an hour it never used
    let o = b
        .command(&r, None, "set_setpoint", "operator:alice", t + MIN)
        .unwrap();
    assert_eq!(o.assessment.top().unwrap().kind, FeatureKind::CommandHour);
}

#[test]
fn hostile_values_and_names_stay_bounded_and_never_panic() {
    let mut b = Behaviour::new(cfg());
    let r = rec("t5", "default");
    feed(&mut b, &r, T0, 1);
    let t = T0 + 86_400_000;
    for x in [f64::NAN, f64::INFINITY, -f64::INFINITY, f64::MAX, -f64::MAX] {
        let o = b.uplink(&r, None, &msg(&r, x), t).unwrap();
        assert_eq!(o.assessment.score, 1.0, "{x}");
    }
    // a thousand new point names, each in its own message, and one message with 10 000 points
    for i in 0..1000 {
        let m = Message::telemetry(
            r.id.clone(),
            vec![Point::new(format!("p{i}"), Value::Float(i as f64))],
        );
        b.uplink(&r, None, &m, t + i).unwrap();
    }
    let many: Vec<Point> = (0..10_000)
        .map(|i| Point::new(format!("q{i}"), Value::Int(i)))
        .collect();
    b.uplink(&r, None, &Message::telemetry(r.id.clone(), many), t)
        .unwrap();
    let e = b.base(&r.id).unwrap();
    assert!(e.points.len() <= baseline::MAX_POINTS);
    assert!(e.names.len() <= baseline::MAX_NAMES);
    assert!(e.bytes() < 1500, "{} bytes", e.bytes());
    // the clock steps back a day, then forward a year: still scores, still finite
    for t in [t - 86_400_000, t + 365 * 86_400_000] {
        let o = b.uplink(&r, None, &msg(&r, 21.0), t).unwrap();
        assert!(o.assessment.score.is_finite());
    }
}

#[test]
fn a_new_device_of_a_known_model_starts_from_its_peer() {
    let mut b = Behaviour::new(cfg());
    let peer = rec("peer", "default");
    feed(&mut b, &peer, T0, 2);
    let newcomer = rec("new", "default");
    let t = T0 + 2 * 86_400_000;
    b.uplink(&newcomer, None, &msg(&newcomer, 21.0), t).unwrap();
    let (msgs, learning) = b.learning(&newcomer.id, t).unwrap();
    assert!(msgs > 2, "not seeded");
    assert!(
        learning,
        "a seeded device still learns a quarter of the period"
    );
    // a quarter of the time and messages later it enforces, and knows the peer's range
    let t = t + 86_400_000 / 4 + 125 * MIN;
    for i in 0..130 {
        b.uplink(
            &newcomer,
            None,
            &msg(&newcomer, temp_at(t, i)),
            t - 130 * MIN + i * MIN,
        );
    }
    let o = b
        .uplink(&newcomer, None, &msg(&newcomer, 150.0), t)
        .unwrap();
    assert!(!o.learning);
    assert_eq!(o.action, Action::Quarantine);
}

#[test]
fn expected_behaviour_is_absorbed_and_release_resets_the_count() {
    let mut b = Behaviour::new(cfg());
    let r = rec("t6", "default");
    feed(&mut b, &r, T0, 2);
    let t = T0 + 2 * 86_400_000;
    let moved = |i: u64| {
        let mut m = msg(&r, temp_at(t, i));
        m.link.rssi = Some(-95.0);
        m
    };
    assert_ne!(
        b.uplink(&r, None, &moved(0), t).unwrap().action,
        Action::None
    );
    assert!(b.expect(&r.id, t));
    // an hour of the new location is learned, not acted on
    for i in 1..=60 {
        let o = b.uplink(&r, None, &moved(i), t + i * MIN).unwrap();
        assert_eq!(o.action, Action::None);
    }
    let after = t + ABSORB_MS + 2 * MIN;
    assert_eq!(
        b.uplink(&r, None, &moved(99), after).unwrap().action,
        Action::None,
        "the new RSSI is normal now"
    );
    assert!(!b.expect(&DeviceId::new("sim", "nobody").unwrap(), t));
}

#[test]
fn baselines_survive_a_restart_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::secrets::MasterKey::ephemeral();
    let r = rec("t7", "default");
    let t = T0 + 3600 * 1000;
    {
        let store = crate::store::Store::open(dir.path(), &key).unwrap();
        let mut b = Behaviour::with_store(cfg(), &store).unwrap();
        feed(&mut b, &r, T0, 1);
        b.shutdown();
    }
    let store = crate::store::Store::open(dir.path(), &key).unwrap();
    let mut b = Behaviour::with_store(cfg(), &store).unwrap();
    let (msgs, learning) = b.learning(&r.id, t).unwrap();
    assert_eq!(msgs, 1440);
    assert!(learning);
    // it goes on learning from where it was and enforces once the period is over
    feed(&mut b, &r, T0 + 86_400_000, 1);
    let t = T0 + 2 * 86_400_000 + 1;
    let o = b.uplink(&r, None, &msg(&r, 150.0), t).unwrap();
    assert_eq!(o.action, Action::Quarantine);
    b.shutdown();
}

#[test]
fn learning_never_acts_and_alert_mode_never_quarantines() {
    let mut c = cfg();
    c.action = crate::config::BehaviourAction::Alert;
    let mut b = Behaviour::new(c);
    let r = rec("t8", "default");
    for i in 0..10 {
        let o = b
            .uplink(&r, None, &msg(&r, 1e6 * i as f64), T0 + i * MIN)
            .unwrap();
        assert_eq!(o.action, Action::None);
        assert!(o.learning);
    }
    // (what a device sends while learning is its normal: poisoning then is not detected here)
    let r = rec("t9", "default");
    feed(&mut b, &r, T0, 2);
    let o = b
        .uplink(&r, None, &msg(&r, 150.0), T0 + 3 * 86_400_000)
        .unwrap();
    assert_eq!(o.action, Action::Alert { audit: true });
}

/// A young device (30 messages 500 ms apart, as in the e2e flood test) floods 3,000 messages
/// spread over `spread_ms` from `offset` ms into a minute; returns the index of the first
/// quarantine, if any.
fn young_flood(spread_ms: u64, offset: u64) -> Option<u64> {
    let c = BehaviourConfig {
        learning_s: 0,
        learning_messages: 30,
        window_s: 120,
        ..BehaviourConfig::default()
    };
    let mut b = Behaviour::new(c);
    let r = rec("young", "default");
    let mut t = T0 + 14 * 3_600_000 + offset;
    for i in 0..32 {
        t += 500;
        b.uplink(&r, None, &msg(&r, temp_at(t, i)), t).unwrap();
    }
    let start = t;
    (0..3000u64).find(|i| {
        let t = start + 1 + i * spread_ms / 3000;
        b.uplink(&r, None, &msg(&r, temp_at(t, *i)), t)
            .unwrap()
            .action
            == Action::Quarantine
    })
}

/// The flaky e2e flood test's cause: a flood spread over distinct milliseconds (a loaded gateway)
/// taught the young device's baseline its own 1 ms gaps, and the expected rate derived from them
/// rose to 60,000 a minute: never quarantined. Every spread must quarantine at the same message.
#[test]
fn a_young_devices_flood_is_quarantined_however_the_gateway_spreads_it() {
    for offset in [0, 20_000] {
        // positive control: the whole flood within one millisecond (a fast gateway)
        let fast = young_flood(0, offset).expect("the fast flood was never quarantined");
        assert!(fast < 1400, "fast flood quarantined only at {fast}");
        for spread in [300, 1000, 3000, 10_000, 30_000] {
            assert_eq!(
                young_flood(spread, offset),
                Some(fast),
                "spread over {spread} ms from {offset} ms into the minute"
            );
        }
    }
}

/// Replayed readings: the device's own values of 12 hours earlier, sent again in order, are
/// found by the fingerprint ring; the clean days before them raised nothing (the control).
#[test]
fn replayed_readings_of_its_own_history_are_named() {
    let mut b = Behaviour::new(cfg());
    let r = rec("replay", "default");
    let (worst, alerts) = feed(&mut b, &r, T0, 9);
    assert_eq!((worst, alerts), (Action::None, 0), "clean days alerted");
    let start = T0 + 9 * 86_400_000;
    let mut first = None;
    for i in 0..180u64 {
        let t = start + i * MIN;
        // what it sent 12 h (720 messages) before, in the same order
        let old = start - 720 * MIN + i * MIN;
        let j = 9 * 1440 - 720 + i;
        let o = b.uplink(&r, None, &msg(&r, temp_at(old, j)), t).unwrap();
        if o.action != Action::None && first.is_none() {
            first = Some((i, o));
        }
    }
    let (n, o) = first.expect("the replay was never detected");
    let top = o.assessment.top().unwrap();
    assert_eq!(top.kind, FeatureKind::Replay, "{}", o.reason());
    assert!(n < 120, "detected only after {n} replayed readings");
    assert!(
        o.reason()
            .starts_with("readings repeat an earlier stretch of its own history exactly"),
        "{}",
        o.reason()
    );
}

/// The replay ring is bounded and survives the store form; a record without it (written before
/// it existed) still loads.
#[test]
fn the_replay_ring_is_bounded_and_persisted() {
    let mut b = Behaviour::new(cfg());
    let r = rec("ring", "default");
    feed(&mut b, &r, T0, 3);
    let base = b.base(&r.id).unwrap();
    assert!(base.replay.ring.len() <= baseline::REPLAY_RING);
    assert!(!base.replay.ring.is_empty());
    let bytes = persist::encode(base);
    assert_eq!(persist::decode(&bytes).unwrap().replay, base.replay);
    // without the trailer: an empty ring, everything else kept
    let trailer = 1 + 12 + 6 + 4 + 4 * base.replay.ring.len();
    let old = persist::decode(&bytes[..bytes.len() - trailer]).unwrap();
    assert!(old.replay.ring.is_empty());
    assert_eq!(old.points, base.points);
    // a bad trailer is refused, not half-read
    let mut bad = bytes.clone();
    bad[bytes.len() - trailer] = b'X';
    assert_eq!(persist::decode(&bad), None);
}

/// The registry's slot spares the id lookup, and a slot another engine wrote (the bench builds
/// several pipelines on one registry; a reload builds a new one) is never trusted.
#[test]
fn a_registry_slot_finds_the_entry_and_is_never_shared_between_engines() {
    let slot = std::sync::atomic::AtomicU64::new(0);
    let (mut b1, mut b2) = (Behaviour::new(cfg()), Behaviour::new(cfg()));
    let (r, other) = (rec("s1", "default"), rec("s2", "default"));
    b1.uplink(&other, None, &msg(&other, 20.0), T0).unwrap();
    for i in 0..3 {
        b1.uplink_at(Some(&slot), &r, None, &msg(&r, 20.0), T0 + i * MIN)
            .unwrap();
    }
    assert_ne!(slot.load(std::sync::atomic::Ordering::Relaxed), 0);
    b2.uplink_at(Some(&slot), &r, None, &msg(&r, 20.0), T0)
        .unwrap();
    assert_eq!(b1.learning(&r.id, T0).unwrap().0, 3);
    assert_eq!(b1.learning(&other.id, T0).unwrap().0, 1);
    assert_eq!(b2.learning(&r.id, T0).unwrap().0, 1);
    assert_eq!((b1.devices(), b2.devices()), (2, 1));
    // and b1 finds its own entry again through the id after b2 took the slot
    b1.uplink_at(Some(&slot), &r, None, &msg(&r, 20.0), T0 + 3 * MIN)
        .unwrap();
    assert_eq!(b1.learning(&r.id, T0).unwrap().0, 4);
}
