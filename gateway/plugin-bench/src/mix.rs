//! A deterministic, realistic request mix: a fleet of devices of a few roles in a few zones over
//! four protocols; mostly uplink telemetry of 2–4 points, some downlink commands; a few percent
//! carry a point or command their role may not use, or come from a device with an unconfigured
//! role or none, so some decisions deny.

use warden_core::{Assurance, Direction, Kind, Point, Value};
use warden_plugin_host::{DeviceInfo, Observed, Request};

use crate::native::Config;

/// xorshift64*: small, deterministic, good enough to pick from lists.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % (n.max(1) as u64)) as usize
    }
    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Names no role in the example config may use.
const FOREIGN_POINTS: &[&str] = &["debug_shell", "firmware_blob", "raw_frame"];
const FOREIGN_COMMANDS: &[&str] = &["reboot", "factory_reset", "open_shell"];
const ZONES: &[&str] = &["hvac", "lab", "office", "warehouse"];
/// Monday 2026-11-16 00:00 UTC.
const WEEK_START_MS: u64 = 1_763_251_200_000;

#[derive(Clone, Debug)]
pub struct Device {
    pub info: DeviceInfo,
    pub assurance: Assurance,
}

fn protocol_assurance(protocol: &str, rng: &mut Rng) -> Assurance {
    match protocol {
        "lorawan" | "zigbee" => Assurance::SharedKey,
        "modbus" if rng.percent(50) => Assurance::Certificate,
        "modbus" => Assurance::Channel,
        _ => Assurance::None,
    }
}

/// `n` devices: the config's roles in turn, plus an unconfigured role (`camera`) and role-less
/// devices at about 1 in 16 each.
pub fn fleet(config: &Config, n: usize, rng: &mut Rng) -> Vec<Device> {
    let roles: Vec<&str> = config.roles.keys().map(String::as_str).collect();
    let protocols = ["lorawan", "modbus", "bacnet", "zigbee"];
    (0..n)
        .map(|i| {
            let protocol = protocols
                .get(i % protocols.len())
                .copied()
                .unwrap_or("modbus");
            let role = match i % 16 {
                7 => Some("camera".to_owned()),
                15 => None,
                _ => rng.pick(&roles).map(|r| (*r).to_owned()),
            };
            let id = format!("{protocol}:dev-{i:03}");
            Device {
                assurance: protocol_assurance(protocol, rng),
                info: DeviceInfo {
                    id,
                    protocol: protocol.to_owned(),
                    zone: rng.pick(ZONES).copied().unwrap_or("default").to_owned(),
                    role,
                    manufacturer: Some("Acme".into()),
                    model: Some(format!("M{}", i % 5)),
                    firmware: Some("1.4.2".into()),
                    ..DeviceInfo::default()
                },
            }
        })
        .collect()
}

fn point_value(name: &str, rng: &mut Rng) -> Point {
    match name {
        "temperature" | "setpoint" => {
            Point::new(name, Value::Float(15.0 + rng.below(150) as f64 / 10.0)).with_unit("C")
        }
        "humidity" => Point::new(name, Value::Int(30 + rng.below(50) as i64)).with_unit("%"),
        "battery" => Point::new(name, Value::Int(rng.below(101) as i64)).with_unit("%"),
        "state" => Point::new(name, Value::Bool(rng.percent(50))),
        "debug_shell" | "raw_frame" => Point::new(name, Value::Text("on".into())),
        _ => Point::new(name, Value::Int(rng.below(1000) as i64)),
    }
}

/// `n` requests over `devices`: about 75% uplinks (2–4 points, distinct where the role allows
/// that many), 25% downlink commands; about 5% of points and 10% of commands are foreign to the
/// role. Times spread over a week; observed rates 0–119 per minute.
pub fn requests(config: &Config, devices: &[Device], n: usize, rng: &mut Rng) -> Vec<Request> {
    let generic: Vec<String> = vec!["temperature".into(), "state".into()];
    (0..n)
        .filter_map(|_| {
            let dev = rng.pick(devices)?;
            let rules = dev.info.role.as_ref().and_then(|r| config.roles.get(r));
            let time_ms = WEEK_START_MS + rng.next_u64() % (7 * 24 * 3_600_000);
            let observed = Observed {
                rate_per_min: rng.below(120) as u64,
                messages: 1_000 + rng.below(100_000) as u64,
                bytes: 50_000 + rng.below(5_000_000) as u64,
                denied: rng.below(5) as u64,
                last_seen_ms: time_ms.saturating_sub(rng.below(60_000) as u64),
                anomaly_score: None,
                anomaly_feature: None,
            };
            let mut r = Request {
                device: dev.info.clone(),
                assurance: dev.assurance,
                fresh: !rng.percent(2),
                time_ms,
                observed,
                ..Request::default()
            };
            if rng.percent(75) {
                r.direction = Direction::Uplink;
                r.kind = if rng.percent(90) {
                    Kind::Telemetry
                } else {
                    Kind::Event
                };
                let own = rules
                    .map(|c| &c.points)
                    .filter(|p| !p.is_empty() && !p.iter().any(|n| n == "*"))
                    .unwrap_or(&generic);
                let want = 2 + rng.below(3);
                let start = rng.below(own.len());
                for k in 0..want.min(own.len()) {
                    let name = own
                        .get((start + k) % own.len())
                        .map_or("temperature", String::as_str);
                    r.points.push(point_value(name, rng));
                }
                if rng.percent(5) {
                    let foreign = rng.pick(FOREIGN_POINTS).copied().unwrap_or("debug_shell");
                    let at = rng.below(r.points.len() + 1);
                    r.points
                        .insert(at.min(r.points.len()), point_value(foreign, rng));
                }
            } else {
                r.direction = Direction::Downlink;
                r.kind = Kind::Command;
                r.principal = Some(
                    if rng.percent(70) {
                        "mqtt:operator"
                    } else {
                        "operator:admin"
                    }
                    .into(),
                );
                let own: Vec<&str> = rules
                    .map(|c| {
                        c.commands
                            .iter()
                            .map(String::as_str)
                            .filter(|n| *n != "*")
                            .collect()
                    })
                    .unwrap_or_default();
                r.name = if own.is_empty() || rng.percent(10) {
                    // A sensor has no commands: ask it for someone else's, as a mistake would.
                    if rng.percent(50) {
                        rng.pick(FOREIGN_COMMANDS)
                            .copied()
                            .unwrap_or("reboot")
                            .to_owned()
                    } else {
                        "set_setpoint".to_owned()
                    }
                } else {
                    rng.pick(&own).copied().unwrap_or("set_on").to_owned()
                };
                if r.name == "set_setpoint" {
                    r.points.push(point_value("setpoint", rng));
                }
            }
            Some(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::native::LeastPrivilege;

    const CONFIG: &str = r#"{"roles":{"sensor":{"points":["temperature","humidity","battery"]},"actuator":{"points":["state"],"commands":["set_on","set_off"]},"thermostat":{"points":["temperature","setpoint"],"commands":["set_setpoint"]}}}"#;

    #[test]
    fn mix_is_deterministic_and_mixed() {
        let c = Config::parse(CONFIG).unwrap();
        let mk = || {
            let mut rng = Rng::new(7);
            let devs = fleet(&c, 48, &mut rng);
            requests(&c, &devs, 1000, &mut rng)
        };
        let a = mk();
        assert_eq!(a, mk());
        assert_eq!(a.len(), 1000);
        let up = a
            .iter()
            .filter(|r| r.direction == Direction::Uplink)
            .count();
        assert!((650..850).contains(&up), "{up} uplinks");
        assert!(
            a.iter()
                .filter(|r| r.direction == Direction::Uplink)
                .all(|r| !r.points.is_empty() && r.points.len() <= 5)
        );
        let lp = LeastPrivilege::new(&c);
        let denied = a
            .iter()
            .filter(|r| lp.decide(r) != warden_plugin_host::Outcome::Allow)
            .count();
        assert!((50..400).contains(&denied), "{denied} denied of 1000");
    }
}
