//! Home Assistant MQTT discovery on the demo gateway, read the way Home Assistant reads it: as the
//! `homeassistant` broker user with the real mosquitto clients. Every config is validated against
//! a JSON Schema per component kept in `tests/peers/homeassistant/` (derived from Home Assistant's
//! documented discovery options) with Python's `jsonschema`, and its templates are rendered with
//! Jinja2 against what Warden really publishes. A quarantine empties the device's configs and a
//! release brings them back; a command published as HA publishes it is decided and audited with
//! the HA user as principal; HA's birth message makes Warden publish every config again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use warden_e2e::*;

mod api_support;

const HA_USER: &str = "homeassistant";
const GATEWAY_CONFIG: &str = "homeassistant/binary_sensor/warden_warden/connectivity/config";

fn ha_password(dd: &Path) -> String {
    std::fs::read_to_string(dd.join("mqtt-homeassistant.password"))
        .expect("the gateway creates the HA user's password file")
        .trim()
        .to_owned()
}

fn ha_args(dd: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let pw = ha_password(dd);
    let port = port.to_string();
    ["-h", "127.0.0.1", "-p", &port, "-u", HA_USER, "-P", &pw]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// One message as `mosquitto_sub -F %j` prints it.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: String,
}

/// A `mosquitto_sub` printing every message as JSON (`-F %j`: topic, retain flag, payload).
struct JsonSub {
    child: Child,
    out: PathBuf,
}

impl JsonSub {
    fn spawn(args: &[String], out: &Path) -> Self {
        let f = std::fs::File::create(out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args(["-V", "mqttv311", "-F", "%j"])
            .args(args)
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (install mosquitto-clients: tests/scripts/install.sh)");
        Self {
            child,
            out: out.to_owned(),
        }
    }

    fn msgs(&self) -> Vec<Msg> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Msg {
                topic: v["topic"].as_str().unwrap_or_default().to_owned(),
                payload: v["payload"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    fn wait(&self, what: &str, pred: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        wait_for(Duration::from_secs(20), what, || {
            let m = self.msgs();
            pred(&m).then_some(m)
        })
    }
}

impl Drop for JsonSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish_as_ha(dd: &Path, port: u16, topic: &str, payload: &str) {
    let o = Command::new("mosquitto_pub")
        .args(["-V", "mqttv311", "-q", "1"])
        .args(ha_args(dd, port, &["-t", topic, "-m", payload]))
        .output()
        .unwrap();
    assert!(o.status.success(), "mosquitto_pub: {}", stderr(&o));
}

/// The retained configs now under `homeassistant/#`: subscribe, wait for the gateway's own config
/// (the subscription is live), then publish a marker on HA's status topic; the broker hands out a
/// subscription's retained messages before anything published after it, so everything before
/// the marker is the retained set.
fn retained_configs(dir: &Path, dd: &Path, port: u16, n: usize) -> BTreeMap<String, String> {
    let sub = JsonSub::spawn(
        &ha_args(dd, port, &["-t", "homeassistant/#"]),
        &dir.join(format!("retained-{n}.jsonl")),
    );
    sub.wait("the gateway's retained config", |m| {
        m.iter().any(|x| x.topic == GATEWAY_CONFIG)
    });
    let marker = format!("probe-{n}");
    publish_as_ha(dd, port, "homeassistant/status", &marker);
    let msgs = sub.wait("the marker after the retained configs", |m| {
        m.iter()
            .any(|x| x.topic == "homeassistant/status" && x.payload == marker)
    });
    msgs.into_iter()
        .take_while(|x| x.payload != marker)
        .filter(|x| x.topic.ends_with("/config") && !x.payload.is_empty())
        .map(|x| (x.topic, x.payload))
        .collect()
}

/// The device a config belongs to (from its availability's device status topic), or `gateway`.
fn device_of(config: &Value) -> String {
    config["availability"]
        .as_array()
        .and_then(|a| {
            a.iter().find_map(|e| {
                e["topic"]
                    .as_str()?
                    .strip_prefix("warden/devices/")?
                    .strip_suffix("/status")
                    .map(str::to_owned)
            })
        })
        .unwrap_or_else(|| "gateway".into())
}

fn by_device(configs: &BTreeMap<String, String>) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (t, p) in configs {
        let v: Value = serde_json::from_str(p).unwrap_or_else(|e| panic!("{t}: {e}: {p}"));
        out.entry(device_of(&v)).or_default().push((t.clone(), v));
    }
    out
}

fn component(topic: &str) -> &str {
    topic.split('/').nth(1).unwrap()
}

fn validator() -> PathBuf {
    peer_dir("homeassistant").join("validate.py")
}

/// Validates configs with the kept schemas; returns the validator's output.
fn validate(dir: &Path, configs: &BTreeMap<String, String>) -> (bool, String) {
    let input = dir.join("configs.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for (t, p) in configs {
        writeln!(f, "{}", serde_json::json!({ "topic": t, "payload": p })).unwrap();
    }
    drop(f);
    let o = Command::new("python3")
        .arg(validator())
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("ModuleNotFoundError"),
        "jsonschema missing: run tests/scripts/install-homeassistant.sh\n{}",
        stderr(&o)
    );
    (o.status.success(), stdout(&o))
}

/// Renders `(template, payload)` pairs as Home Assistant would (Jinja2, `value`, `value_json`).
fn render(pairs: &[(&str, &str)]) -> Vec<String> {
    let mut c = Command::new("python3")
        .arg(validator())
        .arg("render")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut i = c.stdin.take().unwrap();
        for (t, p) in pairs {
            writeln!(i, "{}", serde_json::json!({ "template": t, "payload": p })).unwrap();
        }
    }
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "render: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<String>(l).unwrap())
        .collect()
}

fn one<'a>(configs: &'a [(String, Value)], comp: &str, object: &str) -> &'a Value {
    &configs
        .iter()
        .find(|(t, _)| component(t) == comp && t.split('/').nth(3) == Some(object))
        .unwrap_or_else(|| panic!("no {comp} `{object}` in {configs:#?}"))
        .1
}

/// Waits for the audit record of the HA user's `command` to `device`, checks it was allowed, and
/// finds the result of that very command (by its id) delivered on MQTT.
fn ha_command_delivered(dd: &Path, live: &JsonSub, device: &str, command: &str) {
    let detail = |r: &Value| match &r["detail"] {
        Value::String(s) => json(s),
        v => v.clone(),
    };
    let rec = wait_for(
        Duration::from_secs(20),
        &format!("the audit record of {command} to {device}"),
        || {
            audit_records(dd).into_iter().find(|r| {
                r["action"] == "command"
                    && r["actor"] == "mqtt:homeassistant"
                    && r["device"] == device
                    && detail(r)["command"] == command
            })
        },
    );
    assert_eq!(rec["verdict"], "allow", "{rec}");
    let id = detail(&rec)["command_id"].as_str().unwrap().to_owned();
    let topic = format!("warden/devices/{device}/cmd/result");
    let m = live.wait(&format!("the result of {id}"), |m| {
        m.iter()
            .any(|x| x.topic == topic && json(&x.payload)["command_id"] == id.as_str())
    });
    let res = json(
        &m.iter()
            .find(|x| x.topic == topic && json(&x.payload)["command_id"] == id.as_str())
            .unwrap()
            .payload,
    );
    assert_eq!(res["outcome"], "delivered", "{res}");
}

#[test]
fn home_assistant_discovers_controls_and_forgets_the_demo_devices() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("ports.toml");
    std::fs::write(&cfg, ports_config(&p, "")).unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &["--demo"]);

    // --- every active demo device is announced, the pending newcomer is not ---
    let configs = wait_for(
        Duration::from_secs(20),
        "every active device's configs",
        || {
            let c = retained_configs(t.path(), &dd, p.mqtt, 0);
            let d = by_device(&c);
            [
                "sim:thermostat-1",
                "sim:switch-1",
                "sim:meter-1",
                "sim:rogue-1",
                "gateway",
            ]
            .iter()
            .all(|k| d.contains_key(*k))
            .then_some(c)
        },
    );
    let devices = by_device(&configs);
    // the positive control is every other device above: the pending one has nothing
    assert!(!devices.contains_key("sim:newcomer-1"), "{devices:#?}");
    let counts: BTreeMap<&str, usize> =
        devices.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("gateway", 1),
            ("sim:meter-1", 2),
            ("sim:rogue-1", 3),
            ("sim:switch-1", 1),
            ("sim:thermostat-1", 3),
        ])
    );

    // --- each config is valid under its component's schema ---
    let (ok, out) = validate(t.path(), &configs);
    assert!(ok, "schema validation failed:\n{out}");
    assert_eq!(out.trim(), format!("ok {}", configs.len()));
    // and the schemas can fail: a config with a misspelt option and a wrong unit is refused
    let mut broken = configs.clone();
    let (bt, bp) = configs
        .iter()
        .find(|(t, _)| t.starts_with("homeassistant/sensor/"))
        .unwrap();
    let mut v: Value = serde_json::from_str(bp).unwrap();
    v["unit_of_measurment"] = v["unit_of_measurement"].clone();
    broken.insert(bt.clone(), v.to_string());
    let (ok, out) = validate(t.path(), &broken);
    assert!(!ok && out.contains("unit_of_measurment"), "{out}");

    // --- what the configs say, component by component ---
    let meter = &devices["sim:meter-1"];
    let energy = one(meter, "sensor", "energy");
    assert_eq!(energy["device_class"], "energy");
    assert_eq!(energy["unit_of_measurement"], "kWh");
    assert_eq!(energy["state_class"], "total_increasing");
    let power = one(meter, "sensor", "power");
    assert_eq!(power["state_class"], "measurement");
    assert_eq!(power["device"]["via_device"], "warden_warden");
    let thermostat = &devices["sim:thermostat-1"];
    let climate = one(thermostat, "climate", "climate");
    assert_eq!(
        climate["temperature_command_topic"],
        "warden/devices/sim:thermostat-1/cmd"
    );
    assert_eq!(
        one(thermostat, "sensor", "humidity")["unit_of_measurement"],
        "%"
    );
    let switch_cfgs: Vec<String> = devices["sim:switch-1"]
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    let switch = one(&devices["sim:switch-1"], "switch", "on").clone();
    assert_eq!(switch["command_topic"], "warden/devices/sim:switch-1/cmd");
    let gw = one(&devices["gateway"], "binary_sensor", "connectivity");
    assert_eq!(gw["device"]["identifiers"][0], "warden_warden");

    // --- the templates read what Warden really publishes (signed envelopes, status) ---
    let live = JsonSub::spawn(
        &ha_args(
            &dd,
            p.mqtt,
            &[
                "-t",
                "homeassistant/#",
                "-t",
                "warden/devices/+/telemetry/+",
                "-t",
                "warden/devices/+/status",
                "-t",
                "warden/devices/+/cmd/result",
            ],
        ),
        &t.path().join("live.jsonl"),
    );
    let power_topic = power["state_topic"].as_str().unwrap().to_owned();
    let status_topic = power["availability"][1]["topic"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = live.wait("the meter's power and status", |m| {
        m.iter().any(|x| x.topic == power_topic) && m.iter().any(|x| x.topic == status_topic)
    });
    let envelope = &m.iter().find(|x| x.topic == power_topic).unwrap().payload;
    let status = &m
        .iter()
        .rev()
        .find(|x| x.topic == status_topic)
        .unwrap()
        .payload;
    assert!(
        envelope.contains("\"sig\":\""),
        "a signed envelope: {envelope}"
    );
    let r = render(&[
        (power["value_template"].as_str().unwrap(), envelope.as_str()),
        (
            power["availability"][1]["value_template"].as_str().unwrap(),
            status.as_str(),
        ),
    ]);
    let watts: f64 = r[0]
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {r:?}"));
    assert_eq!(watts, json(envelope)["value"].as_f64().unwrap());
    assert_eq!(r[1], "online", "{status}");

    // --- quarantine: exactly the switch's configs are emptied, and stay gone ---
    let before = live.msgs().len();
    let o = g.cli(&[
        "devices",
        "quarantine",
        "sim:switch-1",
        "--reason",
        "ha test",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = live.wait("the switch's configs emptied", |m| {
        switch_cfgs.iter().all(|c| {
            m[before..]
                .iter()
                .any(|x| &x.topic == c && x.payload.is_empty())
        })
    });
    let emptied: Vec<&String> = m[before..]
        .iter()
        .filter(|x| x.topic.starts_with("homeassistant/") && x.payload.is_empty())
        .map(|x| &x.topic)
        .collect();
    let mut want: Vec<&String> = switch_cfgs.iter().collect();
    let mut got = emptied.clone();
    want.sort();
    got.sort();
    got.dedup();
    assert_eq!(
        got, want,
        "only the quarantined device's configs are emptied"
    );
    let after = by_device(&retained_configs(t.path(), &dd, p.mqtt, 1));
    assert!(!after.contains_key("sim:switch-1"), "{after:#?}");
    // positive control: the other devices are still there in the same read
    assert!(after.contains_key("sim:meter-1") && after.contains_key("sim:thermostat-1"));

    // --- release: the same configs come back ---
    let before = live.msgs().len();
    let o = g.cli(&[
        "devices",
        "release",
        "sim:switch-1",
        "--reason",
        "ha test over",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    live.wait("the switch's configs back", |m| {
        switch_cfgs.iter().all(|c| {
            m[before..]
                .iter()
                .any(|x| &x.topic == c && !x.payload.is_empty())
        })
    });
    let back = by_device(&retained_configs(t.path(), &dd, p.mqtt, 2));
    assert_eq!(
        back["sim:switch-1"]
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<Vec<_>>(),
        switch_cfgs
    );

    // --- a command as Home Assistant sends it: decided, delivered, audited as mqtt:homeassistant ---
    let state_topic = switch["state_topic"].as_str().unwrap().to_owned();
    let tpl = switch["value_template"].as_str().unwrap().to_owned();
    let switch_state = |from: usize| {
        let m = live.msgs();
        let last = m[from.min(m.len())..]
            .iter()
            .rev()
            .find(|x| x.topic == state_topic)?
            .payload
            .clone();
        Some(render(&[(tpl.as_str(), last.as_str())]).remove(0))
    };
    // the switch starts off, read through the config's own template
    let before = live.msgs().len();
    wait_for(Duration::from_secs(20), "the switch reporting OFF", || {
        (switch_state(before)? == switch["state_off"].as_str().unwrap()).then_some(())
    });
    publish_as_ha(
        &dd,
        p.mqtt,
        switch["command_topic"].as_str().unwrap(),
        switch["payload_on"].as_str().unwrap(),
    );
    ha_command_delivered(&dd, &live, "sim:switch-1", "turn_on");
    // and turns ON
    let before = live.msgs().len();
    wait_for(Duration::from_secs(20), "the switch reporting ON", || {
        (switch_state(before)? == switch["state_on"].as_str().unwrap()).then_some(())
    });
    // the thermostat's setpoint through the climate's command template, rendered as HA renders it
    let cmd = render(&[(
        climate["temperature_command_template"].as_str().unwrap(),
        "22.5",
    )]);
    assert_eq!(
        json(&cmd[0]),
        serde_json::json!({"command": "set_setpoint", "args": {"value": 22.5}})
    );
    publish_as_ha(
        &dd,
        p.mqtt,
        climate["temperature_command_topic"].as_str().unwrap(),
        &cmd[0],
    );
    ha_command_delivered(&dd, &live, "sim:thermostat-1", "set_setpoint");

    // --- approving the pending newcomer announces it ---
    let o = g.cli(&[
        "devices",
        "approve",
        "sim:newcomer-1",
        "--profile",
        "meter",
        "--reason",
        "expected meter",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    live.wait("the newcomer's configs", |m| {
        m.iter().any(|x| {
            x.topic.starts_with("homeassistant/sensor/")
                && !x.payload.is_empty()
                && device_of(&json(&x.payload)) == "sim:newcomer-1"
        })
    });

    // --- Home Assistant's birth message: every config again ---
    let before = live.msgs().len();
    publish_as_ha(&dd, p.mqtt, "homeassistant/status", "online");
    let m = live.wait("every config published again", |m| {
        let again: BTreeMap<String, String> = m[before..]
            .iter()
            .filter(|x| x.topic.ends_with("/config") && !x.payload.is_empty())
            .map(|x| (x.topic.clone(), x.payload.clone()))
            .collect();
        let d = by_device(&again);
        [
            "sim:thermostat-1",
            "sim:switch-1",
            "sim:meter-1",
            "sim:rogue-1",
            "sim:newcomer-1",
            "gateway",
        ]
        .iter()
        .all(|k| d.contains_key(*k))
    });
    let again: BTreeMap<String, String> = m[before..]
        .iter()
        .filter(|x| x.topic.ends_with("/config") && !x.payload.is_empty())
        .map(|x| (x.topic.clone(), x.payload.clone()))
        .collect();
    let (ok, out) = validate(t.path(), &again);
    assert!(ok, "re-published configs fail validation:\n{out}");
    g.stop();
}

/// The ports config, with `extra` appended (profiles that override the demo's).
fn ports_config(p: &Ports, extra: &str) -> String {
    format!(
        "[api]\nlisten = \"127.0.0.1:{}\"\n[mqtt.embedded]\nlisten = \"127.0.0.1:{}\"\n[sim]\ncontrol = \"127.0.0.1:{}\"\n{extra}",
        p.api, p.mqtt, p.sim
    )
}

/// A config reload that changes a profile changes what Home Assistant sees, without a restart:
/// the meter's profile loses `energy` and gains `voltage` and a `set_limit` command; after
/// `POST /api/config/reload` the new sensor and number are announced (valid under their schemas),
/// the energy sensor's retained config is emptied, and the other devices keep theirs.
#[test]
fn a_config_reload_re_announces_changed_profiles() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        ports_config(&p, "[profiles.meter]\npoints = [\"power\", \"energy\"]\n"),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &["--demo"]);

    let configs = wait_for(Duration::from_secs(20), "the meter's configs", || {
        let c = retained_configs(t.path(), &dd, p.mqtt, 0);
        let d = by_device(&c);
        (d.get("sim:meter-1").map(Vec::len) == Some(2) && d.contains_key("sim:thermostat-1"))
            .then_some(c)
    });
    let devices = by_device(&configs);
    let energy = devices["sim:meter-1"]
        .iter()
        .find(|(t, _)| t.ends_with("/energy/config"))
        .map(|(t, _)| t.clone())
        .unwrap();
    let power = energy.replace("/energy/", "/power/");
    assert!(configs.contains_key(&power), "{configs:#?}");
    let voltage = energy.replace("/energy/", "/voltage/");
    let limit = energy
        .replace("/sensor/", "/number/")
        .replace("/energy/", "/set_limit/");
    // the control: neither new entity exists before the reload
    assert!(!configs.contains_key(&voltage) && !configs.contains_key(&limit));
    let thermostat: Vec<String> = devices["sim:thermostat-1"]
        .iter()
        .map(|(t, _)| t.clone())
        .collect();

    let live = JsonSub::spawn(
        &ha_args(&dd, p.mqtt, &["-t", "homeassistant/#"]),
        &t.path().join("live.jsonl"),
    );
    live.wait("the live subscription's retained configs", |m| {
        m.iter().any(|x| x.topic == energy)
    });
    std::fs::write(
        &cfg,
        ports_config(
            &p,
            "[profiles.meter]\npoints = [\"power\", \"voltage\"]\ncommands = [\"set_limit\"]\n",
        ),
    )
    .unwrap();
    let token = std::fs::read_to_string(dd.join("api.token")).unwrap();
    let (status, body) = api_support::http(
        p.api,
        "POST",
        "/api/config/reload",
        Some(&api_support::bearer(token.trim())),
        "",
    );
    assert_eq!(status, 200, "{body}");

    let m = live.wait("the new entities announced and energy emptied", |m| {
        let last = |topic: &str| m.iter().rev().find(|x| x.topic == topic);
        last(&voltage).is_some_and(|x| !x.payload.is_empty())
            && last(&limit).is_some_and(|x| !x.payload.is_empty())
            && last(&energy).is_some_and(|x| x.payload.is_empty())
    });
    let v = json(&m.iter().rev().find(|x| x.topic == voltage).unwrap().payload);
    assert_eq!(v["unit_of_measurement"], "V");
    assert_eq!(
        v["state_topic"],
        "warden/devices/sim:meter-1/telemetry/voltage"
    );
    let n = json(&m.iter().rev().find(|x| x.topic == limit).unwrap().payload);
    assert_eq!(
        json(
            &n["command_template"]
                .as_str()
                .unwrap()
                .replace("{{ value }}", "3")
        ),
        serde_json::json!({"command": "set_limit", "args": {"value": 3}})
    );

    // what a Home Assistant connecting now would read: the new set, and nothing of energy
    let after = retained_configs(t.path(), &dd, p.mqtt, 1);
    let d = by_device(&after);
    let mut meter: Vec<&str> = d["sim:meter-1"].iter().map(|(t, _)| t.as_str()).collect();
    meter.sort_unstable();
    let mut want = vec![limit.as_str(), power.as_str(), voltage.as_str()];
    want.sort_unstable();
    assert_eq!(meter, want);
    assert_eq!(
        d["sim:thermostat-1"]
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<Vec<_>>(),
        thermostat,
        "a device whose profile did not change keeps its configs"
    );
    let (ok, out) = validate(t.path(), &after);
    assert!(ok, "configs after the reload fail validation:\n{out}");

    let rec = wait_for(Duration::from_secs(10), "the reload's audit record", || {
        audit_records(&dd)
            .into_iter()
            .find(|r| r["action"] == "config-reload")
    });
    let reason = rec["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Home Assistant discovery configs published again"),
        "{rec}"
    );
    g.stop();
}
