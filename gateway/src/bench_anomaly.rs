//! `warden bench anomaly`: plays weeks of simulated traffic (timestamps, not wall time) through the
//! behaviour engine — the demo's device kinds plus a Modbus PLC and a LoRaWAN sensor, with day/night
//! cycles, jitter, lost messages and noise — injects labelled attacks into half of the devices after
//! their learning period, and reports per attack class the detection rate and time to detect, and on
//! the clean history the alerts and quarantines per device per week. JSON lines and a table.

use std::sync::Arc;

use clap::Args;
use warden_core::{Assurance, DeviceId, Kind, Message, Point, Value};

use crate::behaviour::{Action, Behaviour};
use crate::config::BehaviourConfig;
use crate::registry::{DeviceRecord, Status};

#[derive(Args, Clone, Debug)]
pub struct AnomalyArgs {
    /// Devices per kind (five kinds; half of them are attacked).
    #[arg(long, default_value_t = 20)]
    per_kind: u32,
    /// Weeks of history; the first is the learning period.
    #[arg(long, default_value_t = 3)]
    weeks: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const MIN: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
const WEEK: u64 = 7 * DAY;
/// 2026-11-02 00:00 UTC, a Monday.
const T0: u64 = 1_793_577_600_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of uniforms), mean 0, sd 1.
    fn n(&mut self) -> f64 {
        (0..4).map(|_| self.f()).sum::<f64>() * 1.732 - 3.464
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevKind {
    Thermostat,
    Switch,
    Meter,
    Plc,
    LoraSensor,
}

const KINDS: [DevKind; 5] = [
    DevKind::Thermostat,
    DevKind::Switch,
    DevKind::Meter,
    DevKind::Plc,
    DevKind::LoraSensor,
];

impl DevKind {
    fn name(self) -> &'static str {
        match self {
            Self::Thermostat => "thermostat",
            Self::Switch => "switch",
            Self::Meter => "meter",
            Self::Plc => "modbus-plc",
            Self::LoraSensor => "lorawan-sensor",
        }
    }
    /// ms between telemetry messages (events for the switch are drawn separately).
    fn interval(self) -> u64 {
        match self {
            Self::Thermostat => 60_000,
            Self::Switch => 600_000,
            Self::Meter => 30_000,
            Self::Plc => 10_000,
            Self::LoraSensor => 600_000,
        }
    }
    fn radio(self) -> bool {
        !matches!(self, Self::Meter | Self::Plc)
    }
    fn commands(self) -> Option<(&'static str, &'static str, [u64; 2])> {
        match self {
            Self::Thermostat => Some(("set_setpoint", "operator:alice", [7, 22])),
            Self::Switch => Some(("turn_on", "mqtt:homeassistant", [18, 23])),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    Flood,
    Drip,
    Impossible,
    Frozen,
    Replay,
    Relocation,
    CommandStorm,
    NightCommand,
    Probe,
}

const ATTACKS: [Attack; 9] = [
    Attack::Flood,
    Attack::Drip,
    Attack::Impossible,
    Attack::Frozen,
    Attack::Replay,
    Attack::Relocation,
    Attack::CommandStorm,
    Attack::NightCommand,
    Attack::Probe,
];

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Self::Flood => "flood",
            Self::Drip => "exfiltration-drip",
            Self::Impossible => "impossible-value",
            Self::Frozen => "frozen-value",
            Self::Replay => "replayed-readings",
            Self::Relocation => "relocation-rssi",
            Self::CommandStorm => "command-storm",
            Self::NightCommand => "command-at-night",
            Self::Probe => "probing-new-points",
        }
    }
    fn applies(self, k: DevKind) -> bool {
        match self {
            Self::Relocation => k.radio(),
            Self::CommandStorm | Self::NightCommand => k.commands().is_some(),
            Self::Frozen | Self::Replay | Self::Impossible | Self::Drip => k != DevKind::Switch,
            Self::Flood | Self::Probe => true,
        }
    }
    fn duration(self) -> u64 {
        match self {
            Self::Flood | Self::CommandStorm => 2 * MIN,
            Self::Impossible | Self::NightCommand => 10 * MIN,
            Self::Drip | Self::Relocation => 6 * HOUR,
            Self::Frozen | Self::Replay => 3 * HOUR,
            Self::Probe => 30 * MIN,
        }
    }
}

struct Device {
    kind: DevKind,
    record: Arc<DeviceRecord>,
    rssi: f64,
    phase: f64,
    energy: f64,
    counter: i64,
}

/// One simulated device's readings at `t` (the day/night cycle and noise).
fn readings(d: &mut Device, t: u64, rng: &mut Rng) -> (Kind, Vec<Point>) {
    let day = ((t % DAY) as f64 / DAY as f64 + d.phase) * std::f64::consts::TAU;
    let daylight = (-(day - std::f64::consts::PI).cos()).max(0.0); // 0 at night, 1 at noon
    let q = |x: f64, step: f64| (x / step).round() * step;
    match d.kind {
        DevKind::Thermostat => (
            Kind::Telemetry,
            vec![
                Point::new(
                    "temperature",
                    Value::Float(q(19.5 + 3.0 * daylight + 0.15 * rng.n(), 0.1)),
                )
                .with_unit("°C"),
                Point::new(
                    "humidity",
                    Value::Float(q(50.0 - 8.0 * daylight + 1.0 * rng.n(), 0.5)),
                )
                .with_unit("%"),
                Point::new("setpoint", Value::Float(21.0)).with_unit("°C"),
            ],
        ),
        DevKind::Switch => (
            Kind::Event,
            vec![Point::new("on", Value::Bool(rng.f() < 0.5))],
        ),
        DevKind::Meter => {
            let p = 150.0 + 650.0 * daylight + 60.0 * rng.n().abs() + 30.0 * rng.n();
            d.energy += p.max(0.0) * 30.0 / 3_600_000.0;
            (
                Kind::Telemetry,
                vec![
                    Point::new("power", Value::Float(q(p.max(0.0), 1.0))).with_unit("W"),
                    Point::new("energy", Value::Float(q(d.energy, 0.001))).with_unit("kWh"),
                ],
            )
        }
        DevKind::Plc => {
            d.counter += 1;
            (
                Kind::Telemetry,
                vec![
                    Point::new(
                        "flow",
                        Value::Float(q(12.0 + 4.0 * daylight + 0.3 * rng.n(), 0.01)),
                    ),
                    Point::new("pressure", Value::Float(q(3.2 + 0.05 * rng.n(), 0.01))),
                    Point::new(
                        "temp",
                        Value::Float(q(45.0 + 5.0 * daylight + 0.4 * rng.n(), 0.1)),
                    ),
                    Point::new("valve", Value::Int(i64::from(daylight > 0.1))),
                    Point::new("cycles", Value::Int(d.counter)),
                    Point::new("mode", Value::Int(2)),
                ],
            )
        }
        DevKind::LoraSensor => (
            Kind::Telemetry,
            vec![
                Point::new(
                    "temperature",
                    Value::Float(q(8.0 + 9.0 * daylight + 0.3 * rng.n(), 0.1)),
                )
                .with_unit("°C"),
                Point::new(
                    "battery",
                    Value::Float(q(3.6 - (t - T0) as f64 / (40.0 * DAY as f64) * 0.1, 0.01)),
                )
                .with_unit("V"),
            ],
        ),
    }
}

fn message(d: &Device, kind: Kind, points: Vec<Point>, t: u64, rng: &mut Rng) -> Message {
    let mut m = Message::telemetry(d.record.id.clone(), points);
    m.kind = kind;
    m.received_ms = t;
    m.assurance = match d.kind {
        DevKind::Thermostat | DevKind::LoraSensor => Assurance::SharedKey,
        DevKind::Switch => Assurance::Channel,
        _ => Assurance::None,
    };
    if d.kind.radio() {
        m.link.rssi = Some((d.rssi + 3.0 * rng.n()).round() as f32);
        if d.kind == DevKind::LoraSensor {
            m.link.snr = Some((5.0 + 2.0 * rng.n()) as f32);
        }
    }
    m
}

/// One scheduled thing for a device: a message or a command.
enum Ev {
    Msg(Message),
    Cmd(&'static str, &'static str),
}

/// Every event of one device over the history, the attack (if any) woven in, in time order.
fn history(
    d: &mut Device,
    weeks: u64,
    attack: Option<(Attack, u64)>,
    rng: &mut Rng,
) -> Vec<(u64, Ev)> {
    let end = T0 + weeks * WEEK;
    let mut out: Vec<(u64, Ev)> = Vec::new();
    // readings recorded for replay: (t, points) 12 h back
    let mut recorded: std::collections::VecDeque<(u64, Vec<Point>)> = Default::default();
    let in_attack =
        |a: Attack, t: u64| attack.is_some_and(|(x, s)| x == a && t >= s && t < s + a.duration());
    let mut t = T0 + (rng.f() * d.kind.interval() as f64) as u64;
    while t < end {
        let (kind, mut points) = readings(d, t, rng);
        if d.kind != DevKind::Switch {
            recorded.push_back((t, points.clone()));
            while recorded.front().is_some_and(|(rt, _)| t - rt > 12 * HOUR) {
                recorded.pop_front();
            }
        }
        let mut extra_raw = 0usize;
        if in_attack(Attack::Impossible, t)
            && let Some(p) = points.first_mut()
            && let Value::Float(x) = p.value
        {
            p.value = Value::Float(x * 10.0 + 100.0);
        }
        if in_attack(Attack::Frozen, t)
            && let Some((_, frozen)) = recorded
                .iter()
                .find(|(rt, _)| *rt >= attack.map_or(0, |a| a.1))
            && let (Some(p), Some(f)) = (points.first_mut(), frozen.first())
        {
            p.value = f.value.clone();
        }
        if in_attack(Attack::Replay, t)
            && let Some((_, old)) = recorded.front()
        {
            points = old.clone();
        }
        if in_attack(Attack::Drip, t) {
            extra_raw = 48;
        }
        let mut m = message(d, kind, points, t, rng);
        if extra_raw > 0 {
            m.raw = vec![0x5a; m.size() + extra_raw];
        }
        if in_attack(Attack::Relocation, t)
            && let Some(r) = m.link.rssi.as_mut()
        {
            *r -= 18.0;
        }
        // 1 % of messages lost on the way
        if rng.f() >= 0.01 {
            out.push((t, Ev::Msg(m)));
        }
        let step = match d.kind {
            // switch events: every ~20 min by day, every ~3 h at night (a heartbeat otherwise)
            DevKind::Switch => {
                let h = (t % DAY) / HOUR;
                let mean = if (7..23).contains(&h) {
                    20.0 * MIN as f64
                } else {
                    180.0 * MIN as f64
                };
                ((-rng.f().max(1e-9).ln()) * mean) as u64 + 1000
            }
            k => (k.interval() as f64 * (0.95 + 0.1 * rng.f())) as u64,
        };
        t += step;
    }
    if let Some((cmd, who, hours)) = d.kind.commands() {
        for day in 0..weeks * 7 {
            for h in hours {
                let jitter = (rng.f() * 20.0 * MIN as f64) as u64;
                out.push((T0 + day * DAY + h * HOUR + jitter, Ev::Cmd(cmd, who)));
            }
        }
    }
    if let Some((a, s)) = attack {
        match a {
            Attack::Flood => {
                for i in 0..(a.duration() / 50) {
                    let t = s + i * 50;
                    let (kind, points) = readings(d, t, rng);
                    out.push((t, Ev::Msg(message(d, kind, points, t, rng))));
                }
            }
            Attack::Probe => {
                for (i, name) in ["config", "debug", "fw_dump", "keys", "shell", "mem"]
                    .iter()
                    .enumerate()
                {
                    let t = s + i as u64 * 5 * MIN;
                    let p = vec![Point::new(*name, Value::Int(1))];
                    out.push((t, Ev::Msg(message(d, Kind::Telemetry, p, t, rng))));
                }
            }
            Attack::CommandStorm => {
                if let Some((cmd, who, _)) = d.kind.commands() {
                    for i in 0..100 {
                        out.push((s + i * 1200, Ev::Cmd(cmd, who)));
                    }
                }
            }
            Attack::NightCommand => {
                if let Some((cmd, who, _)) = d.kind.commands() {
                    out.push((s, Ev::Cmd(cmd, who)));
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|e| e.0);
    out
}

#[derive(Default)]
struct ClassResult {
    injected: u32,
    detected: u32,
    quarantined: u32,
    ttd_ms: Vec<u64>,
    /// The top feature of each first detection.
    by: std::collections::BTreeMap<String, u32>,
}

pub fn main(args: AnomalyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.weeks >= 2,
        "--weeks must be at least 2 (one learning, one scored)"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.per_kind),
        "--per-kind must be between 1 and 10000"
    );
    let cfg = BehaviourConfig {
        learning_s: 7 * 86_400,
        learning_messages: 100,
        ..BehaviourConfig::default()
    };
    let mut engine = Behaviour::new(cfg);
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut results: Vec<ClassResult> = ATTACKS.iter().map(|_| ClassResult::default()).collect();
    let (mut clean_alerts, mut clean_quarantines, mut clean_ms) = (0u64, 0u64, 0u64);
    let mut false_by_feature: std::collections::BTreeMap<String, u64> = Default::default();
    let mut messages = 0u64;
    let started = std::time::Instant::now();
    let mut next_attack = 0usize;
    for kind in KINDS {
        for i in 0..args.per_kind {
            let id = DeviceId::new("bench", &format!("{}-{i}", kind.name()))?;
            let record = Arc::new(DeviceRecord {
                id,
                name: None,
                manufacturer: None,
                model: None,
                firmware: None,
                serial: None,
                zone: "default".into(),
                role: None,
                profile: None,
                status: Status::Active,
                status_by: "bench".into(),
                status_at: 0,
                status_reason: String::new(),
                first_seen: None,
                last_seen: None,
                credentials: vec![],
            });
            let mut d = Device {
                kind,
                record: record.clone(),
                rssi: -50.0 - 60.0 * rng.f(),
                phase: 0.02 * rng.n(),
                energy: 1000.0 * rng.f(),
                counter: 0,
            };
            // every other device is attacked once, in the last week, with the next class it can have
            let attack = if i % 2 == 1 {
                let mut a = None;
                for _ in 0..ATTACKS.len() {
                    let c = ATTACKS.get(next_attack % ATTACKS.len()).copied();
                    next_attack += 1;
                    if let Some(c) = c
                        && c.applies(kind)
                    {
                        a = Some(c);
                        break;
                    }
                }
                a.map(|a| {
                    let start = if a == Attack::NightCommand {
                        let day = (args.weeks - 1) * 7 + (rng.next() % 6);
                        T0 + day * DAY + 3 * HOUR + 12 * MIN
                    } else {
                        T0 + (args.weeks - 1) * WEEK + (rng.f() * 6.0 * DAY as f64) as u64
                    };
                    (a, start)
                })
            } else {
                None
            };
            let events = history(&mut d, args.weeks, attack, &mut rng);
            let mut first_detect: Option<u64> = None;
            let mut first_feature = String::new();
            let mut quarantined = false;
            let scored_from = T0 + WEEK;
            let clean_until = attack.map_or(T0 + args.weeks * WEEK, |a| a.1);
            for (t, ev) in events {
                let o = match ev {
                    Ev::Msg(m) => {
                        messages += 1;
                        engine.uplink(&record, None, &m, t)
                    }
                    Ev::Cmd(c, who) => engine.command(&record, None, c, who, t),
                };
                let Some(o) = o else { continue };
                if o.action == Action::None {
                    continue;
                }
                if let Some((a, s)) = attack
                    && t >= s
                    && t < s + a.duration() + 10 * MIN
                {
                    if first_detect.is_none() {
                        first_detect = Some(t - s);
                        first_feature = o.assessment.top().map_or("?".into(), |f| f.label());
                        if let Some((kind, _)) = first_feature.split_once(':') {
                            first_feature = kind.to_owned();
                        }
                    }
                    quarantined |= o.action == Action::Quarantine;
                    let _ = a;
                } else if t >= scored_from && t < clean_until {
                    match o.action {
                        Action::Quarantine => {
                            // counted, then released by the operator as a false alarm
                            clean_quarantines += 1;
                            engine.released(&record.id);
                        }
                        // repeats within a minute are one alert to an operator
                        Action::Alert { audit: false } | Action::None => continue,
                        Action::Alert { audit: true } => clean_alerts += 1,
                    }
                    let f = o
                        .assessment
                        .top()
                        .map_or("?".into(), |f| f.kind.as_str().to_owned());
                    *false_by_feature.entry(f).or_default() += 1;
                }
            }
            clean_ms += clean_until.saturating_sub(scored_from);
            if let Some((a, _)) = attack
                && let Some(k) = ATTACKS.iter().position(|x| *x == a)
                && let Some(r) = results.get_mut(k)
            {
                r.injected += 1;
                if let Some(ttd) = first_detect {
                    r.detected += 1;
                    r.ttd_ms.push(ttd);
                    *r.by.entry(first_feature).or_default() += 1;
                }
                r.quarantined += u32::from(quarantined);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let devices = args.per_kind * KINDS.len() as u32;
    let device_weeks = clean_ms as f64 / WEEK as f64;
    println!();
    let mut rows = Vec::new();
    for (a, r) in ATTACKS.iter().zip(&mut results) {
        r.ttd_ms.sort_unstable();
        let med = r.ttd_ms.get(r.ttd_ms.len() / 2).map(|v| *v as f64 / 1000.0);
        let max = r.ttd_ms.last().map(|v| *v as f64 / 1000.0);
        let rate = if r.injected > 0 {
            f64::from(r.detected) / f64::from(r.injected)
        } else {
            0.0
        };
        println!(
            "{}",
            serde_json::json!({
                "bench": "anomaly", "attack": a.name(), "injected": r.injected,
                "detected": r.detected, "detection_rate": rate, "quarantined": r.quarantined,
                "median_time_to_detect_s": med, "max_time_to_detect_s": max,
                "detected_by": r.by,
            })
        );
        rows.push((
            a.name(),
            r.injected,
            r.detected,
            rate,
            r.quarantined,
            med,
            max,
        ));
    }
    let per_dev_week = |n: u64| {
        if device_weeks > 0.0 {
            n as f64 / device_weeks
        } else {
            0.0
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "anomaly", "phase": "clean", "devices": devices, "weeks": args.weeks,
            "scored_device_weeks": (device_weeks * 100.0).round() / 100.0,
            "alerts_per_device_week": per_dev_week(clean_alerts),
            "false_quarantines_per_100_device_weeks": per_dev_week(clean_quarantines) * 100.0,
            "false_alarms_by_feature": false_by_feature,
            "messages": messages, "seconds": (secs * 1000.0).round() / 1000.0,
            "baseline_bytes_per_device": engine.bytes().checked_div(engine.devices()).unwrap_or(0),
        })
    );
    println!();
    println!(
        "{:<20} {:>8} {:>8} {:>9} {:>11} {:>12} {:>12}",
        "attack", "injected", "detected", "rate", "quarantined", "median TTD s", "max TTD s"
    );
    for (n, inj, det, rate, q, med, max) in rows {
        println!(
            "{:<20} {:>8} {:>8} {:>8.0}% {:>11} {:>12} {:>12}",
            n,
            inj,
            det,
            rate * 100.0,
            q,
            med.map_or("-".into(), |v| format!("{v:.0}")),
            max.map_or("-".into(), |v| format!("{v:.0}"))
        );
    }
    println!(
        "clean history: {devices} devices, {device_weeks:.1} scored device-weeks: {:.3} alerts per device per week, {:.2} false quarantines per 100 devices per week ({messages} messages in {secs:.1} s)",
        per_dev_week(clean_alerts),
        per_dev_week(clean_quarantines) * 100.0
    );
    Ok(())
}
