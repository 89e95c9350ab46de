//! Home Assistant MQTT discovery: retained `<discovery-prefix>/<component>/<node_id>/<object_id>/config`
//! payloads that make every **active** device appear in Home Assistant by itself, and empty retained
//! payloads that remove a device again when it is pending, quarantined or revoked.
//!
//! - Points become `sensor`s and `binary_sensor`s (device class, unit and state class from a table of
//!   well-known point names); commands become `switch`, `light`, `number` or `climate` entities
//!   where the profile's points and commands fit one (`turn_on`+`turn_off`, `set_level`,
//!   `set_<point>`, a `setpoint` beside a `temperature`).
//! - State is read from Warden's telemetry envelopes as published today (`value_json.value` of the
//!   signed envelope on `<prefix>/devices/<id>/telemetry/<point>`); availability from the retained
//!   gateway status (`online`/`offline`) and the device's retained status envelope (`active` and
//!   `online`), both required.
//! - Commands go to Warden's own command topic `<prefix>/devices/<id>/cmd` as the JSON it expects
//!   (`{"command":…,"args":{…}}`, shaped by `payload_on`/`command_template`), so they pass the same
//!   authenticate and decide stages as any other MQTT command, with the HA broker user as principal.
//! - Every device hangs off the gateway's own HA device (`via_device`), announced here too.
//!
//! Device ids and names are attacker-controlled: topic levels are built only from
//! [`sanitize`]d text (`[a-zA-Z0-9_-]`, bounded), with a hash of the original appended so two ids that
//! sanitize alike never share a topic; names go only into JSON string values, bounded and without
//! control characters.
//!
//! The payload builders are pure functions; [`Discovery`] remembers what it announced per device so a
//! clear removes exactly those topics, and so an unchanged status (online/offline) publishes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use warden_core::DeviceId;

use super::Outgoing;
use crate::registry::{DeviceRecord, Status};

/// Longest sanitized text kept before the hash suffix.
const NODE_MAX: usize = 40;
const OBJECT_MAX: usize = 32;
/// Hex digits of the SHA-256 suffix (64 bits: two ids that sanitize alike cannot be ground to collide
/// cheaply).
const HASH_HEX: usize = 16;
/// Longest display text (names, manufacturer, model, firmware) taken from a device.
const TEXT_MAX: usize = 64;

/// Where discovery publishes and what it points Home Assistant at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// HA's discovery prefix (`homeassistant`).
    pub discovery_prefix: String,
    /// Warden's topic prefix (`warden`).
    pub topic_prefix: String,
    /// `gateway.id`.
    pub gateway_id: String,
}

/// A usage profile as discovery needs it: its points and commands, in the config's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaProfile {
    pub points: Vec<String>,
    pub commands: Vec<String>,
}

/// Profiles by name and `"Manufacturer/Model"` → profile, as in the config.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    pub profiles: BTreeMap<String, HaProfile>,
    pub models: BTreeMap<String, String>,
}

impl Profiles {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            profiles: cfg
                .profiles
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        HaProfile {
                            points: p.points.clone(),
                            commands: p.commands.clone(),
                        },
                    )
                })
                .collect(),
            models: cfg.models.clone(),
        }
    }

    /// The device's profile: its own, else its model's (as the decide stage resolves it).
    pub fn for_record(&self, r: &DeviceRecord) -> Option<&HaProfile> {
        let name = match &r.profile {
            Some(p) => p.clone(),
            None => {
                let (m, mo) = (r.manufacturer.as_deref()?, r.model.as_deref()?);
                self.models.get(&format!("{m}/{mo}"))?.clone()
            }
        };
        self.profiles.get(&name)
    }
}

/// `raw` reduced to HA's topic-level charset `[a-zA-Z0-9_-]`, at most `max` characters, and whether
/// anything was changed or cut.
pub fn sanitize(raw: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(raw.len().min(max));
    let mut lossy = false;
    for c in raw.chars() {
        if out.len() >= max {
            lossy = true;
            break;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else {
            out.push('_');
            lossy = true;
        }
    }
    if out.is_empty() {
        out.push('x');
        lossy = true;
    }
    (out, lossy)
}

fn short_hash(raw: &str) -> String {
    let h = Sha256::digest(raw.as_bytes());
    hex::encode(h).chars().take(HASH_HEX).collect()
}

/// The `node_id` of a device: its id sanitized and bounded, followed by a hash of the whole id.
/// A device id always holds a `:`, so the hash is always there: ids that sanitize alike
/// (`sim:a.b`, `sim:a_b`) or share a long prefix still get distinct node ids.
pub fn node_id(device: &DeviceId) -> String {
    let raw = device.to_string();
    let (s, _) = sanitize(&raw, NODE_MAX);
    format!("{s}_{}", short_hash(&raw))
}

/// The `object_id` of a point or command: the name as is when it is already in the charset and
/// short, else sanitized with a hash of the original.
pub fn object_id(name: &str) -> String {
    match sanitize(name, OBJECT_MAX) {
        (s, false) => s,
        (s, true) => format!("{s}_{}", short_hash(name)),
    }
}

/// Display text from a device: no control characters, at most [`TEXT_MAX`] characters.
pub fn display_text(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(TEXT_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `<discovery-prefix>/<component>/<node_id>/<object_id>/config`.
pub fn config_topic(s: &Settings, component: &str, node: &str, object: &str) -> String {
    format!("{}/{component}/{node}/{object}/config", s.discovery_prefix)
}

/// The HA device identifier of the gateway itself (the `via_device` of every other device).
pub fn gateway_identifier(s: &Settings) -> String {
    format!("warden_{}", sanitize(&s.gateway_id, NODE_MAX).0)
}

fn device_identifier(s: &Settings, node: &str) -> String {
    format!("{}_{node}", gateway_identifier(s))
}

fn origin() -> Json {
    json!({ "name": "Warden", "sw_version": env!("CARGO_PKG_VERSION") })
}

fn gateway_status_topic(s: &Settings) -> String {
    format!("{}/gateway/status", s.topic_prefix)
}

/// Availability: the gateway is online (its retained status, last will `offline`) and the device is
/// active and online (its retained status envelope).
fn availability(s: &Settings, device: &DeviceId) -> Json {
    json!([
        {
            "topic": gateway_status_topic(s),
            "payload_available": "online",
            "payload_not_available": "offline",
        },
        {
            "topic": format!("{}/devices/{device}/status", s.topic_prefix),
            "value_template": "{{ 'online' if value_json.status == 'active' and value_json.online else 'offline' }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ])
}

/// A sensor's meaning from its point name: `(device_class, unit, state_class)`.
fn sensor_kind(point: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match point {
        "temperature" | "setpoint" | "local_temperature" => ("temperature", "°C", "measurement"),
        "humidity" => ("humidity", "%", "measurement"),
        "pressure" => ("pressure", "hPa", "measurement"),
        "illuminance" => ("illuminance", "lx", "measurement"),
        "power" => ("power", "W", "measurement"),
        "energy" => ("energy", "kWh", "total_increasing"),
        "voltage" => ("voltage", "V", "measurement"),
        "current" => ("current", "A", "measurement"),
        "battery" => ("battery", "%", "measurement"),
        "co2" => ("carbon_dioxide", "ppm", "measurement"),
        "pm25" => ("pm25", "µg/m³", "measurement"),
        _ => return None,
    })
}

/// A binary sensor's device class from its point name (`None`: not a binary point).
fn binary_kind(point: &str) -> Option<Option<&'static str>> {
    Some(match point {
        "occupancy" => Some("occupancy"),
        "motion" => Some("motion"),
        "water_leak" | "leak" => Some("moisture"),
        "smoke" => Some("smoke"),
        "tamper" => Some("tamper"),
        "battery_low" => Some("battery"),
        "open" => Some("opening"),
        "on" => Some("power"),
        _ => return None,
    })
}

/// One entity's discovery config.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub component: &'static str,
    pub object_id: String,
    pub config: Json,
}

struct Ctx<'a> {
    s: &'a Settings,
    device: &'a DeviceId,
    node: String,
    device_block: Json,
}

impl Ctx<'_> {
    fn telemetry(&self, point: &str) -> String {
        format!(
            "{}/devices/{}/telemetry/{point}",
            self.s.topic_prefix, self.device
        )
    }

    fn command_topic(&self) -> String {
        format!("{}/devices/{}/cmd", self.s.topic_prefix, self.device)
    }

    /// The members every entity has.
    fn entity(&self, component: &'static str, key: &str, name: &str, mut extra: Json) -> Entity {
        let object = object_id(key);
        let base = json!({
            "name": display_text(name),
            "unique_id": format!("{}_{component}_{object}", device_identifier(self.s, &self.node)),
            "device": self.device_block,
            "origin": origin(),
            "availability": availability(self.s, self.device),
            "availability_mode": "all",
        });
        if let (Json::Object(e), Json::Object(b)) = (&mut extra, base) {
            for (k, v) in b {
                e.insert(k, v);
            }
        }
        Entity {
            component,
            object_id: object,
            config: extra,
        }
    }
}

/// Sets member `k` of the object `c` (a no-op on anything but an object).
fn set(c: &mut Json, k: &str, v: Json) {
    if let Json::Object(m) = c {
        m.insert(k.to_owned(), v);
    }
}

/// A command's JSON for Warden's command topic, with one argument from HA's `value` (a Jinja
/// expression rendered by HA).
fn command_template(command: &str, arg: &str) -> String {
    // command and argument names are JSON-escaped here; the template braces are HA's
    let c = Json::String(command.to_owned()).to_string();
    let a = Json::String(arg.to_owned()).to_string();
    format!("{{\"command\":{c},\"args\":{{{a}:{{{{ value }}}}}}}}")
}

/// `s` as a single-quoted Jinja string literal.
fn jinja_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn plain_command(command: &str) -> String {
    json!({ "command": command }).to_string()
}

/// The discovery configs for one active device under its profile. Pure: same input, same output.
pub fn device_entities(s: &Settings, r: &DeviceRecord, profile: &HaProfile) -> Vec<Entity> {
    let node = node_id(&r.id);
    let mut block = serde_json::Map::new();
    block.insert("identifiers".into(), json!([device_identifier(s, &node)]));
    let name = r
        .name
        .as_deref()
        .map(display_text)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| display_text(&r.id.to_string()));
    block.insert("name".into(), Json::String(name));
    for (key, v) in [
        ("manufacturer", &r.manufacturer),
        ("model", &r.model),
        ("sw_version", &r.firmware),
        ("serial_number", &r.serial),
    ] {
        if let Some(t) = v.as_deref().map(display_text).filter(|t| !t.is_empty()) {
            block.insert(key.into(), Json::String(t));
        }
    }
    block.insert("via_device".into(), Json::String(gateway_identifier(s)));
    let ctx = Ctx {
        s,
        device: &r.id,
        node,
        device_block: Json::Object(block),
    };
    let has_point = |p: &str| profile.points.iter().any(|x| x == p);
    let has_cmd = |c: &str| profile.commands.iter().any(|x| x == c);
    // points some command entity shows already
    let mut shown: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    // commands some entity sends already
    let mut sent: Vec<&str> = Vec::new();

    // climate: a setpoint command beside a temperature reading
    if has_cmd("set_setpoint") && has_point("temperature") {
        sent.push("set_setpoint");
        let mut c = json!({
            "temperature_command_topic": ctx.command_topic(),
            "temperature_command_template": command_template("set_setpoint", "value"),
            "current_temperature_topic": ctx.telemetry("temperature"),
            "current_temperature_template": "{{ value_json.value }}",
            "modes": ["heat"],
            "temperature_unit": "C",
            "precision": 0.5,
        });
        if has_point("setpoint") {
            set(
                &mut c,
                "temperature_state_topic",
                json!(ctx.telemetry("setpoint")),
            );
            set(
                &mut c,
                "temperature_state_template",
                json!("{{ value_json.value }}"),
            );
            shown.push("setpoint");
        }
        out.push(ctx.entity("climate", "climate", "Thermostat", c));
    }

    // switch or light: on/off commands with the `on` point as state
    if has_cmd("turn_on") && has_cmd("turn_off") {
        let (on, off) = (plain_command("turn_on"), plain_command("turn_off"));
        let mut c = json!({
            "command_topic": ctx.command_topic(),
            "payload_on": on,
            "payload_off": off,
        });
        let key = if has_point("on") { "on" } else { "power" };
        if has_point("on") {
            set(&mut c, "state_topic", json!(ctx.telemetry("on")));
            shown.push("on");
        }
        if has_cmd("set_level") {
            sent.push("set_level");
            // a light compares its state with `payload_on`/`payload_off`
            if has_point("on") {
                set(
                    &mut c,
                    "state_value_template",
                    json!(format!(
                        "{{{{ {} if value_json.value else {} }}}}",
                        jinja_str(&on),
                        jinja_str(&off)
                    )),
                );
            }
            set(
                &mut c,
                "brightness_command_topic",
                json!(ctx.command_topic()),
            );
            set(
                &mut c,
                "brightness_command_template",
                json!(command_template("set_level", "level")),
            );
            set(&mut c, "brightness_scale", json!(254));
            if has_point("level") {
                set(
                    &mut c,
                    "brightness_state_topic",
                    json!(ctx.telemetry("level")),
                );
                set(
                    &mut c,
                    "brightness_value_template",
                    json!("{{ value_json.value }}"),
                );
                shown.push("level");
            }
            out.push(ctx.entity("light", key, "Light", c));
        } else {
            if has_point("on") {
                set(
                    &mut c,
                    "value_template",
                    json!("{{ 'ON' if value_json.value else 'OFF' }}"),
                );
                set(&mut c, "state_on", json!("ON"));
                set(&mut c, "state_off", json!("OFF"));
            }
            set(&mut c, "device_class", json!("switch"));
            out.push(ctx.entity("switch", key, "Switch", c));
        }
    }

    // number: any other `set_<x>` (with the point `x` as its state when the profile has it)
    for cmd in &profile.commands {
        let Some(target) = cmd.strip_prefix("set_").filter(|t| !t.is_empty()) else {
            continue;
        };
        if shown.contains(&target) || sent.contains(&cmd.as_str()) {
            continue;
        }
        let mut c = json!({
            "command_topic": ctx.command_topic(),
            "command_template": command_template(cmd, "value"),
            "mode": "box",
        });
        if has_point(target) {
            set(&mut c, "state_topic", json!(ctx.telemetry(target)));
            set(&mut c, "value_template", json!("{{ value_json.value }}"));
        }
        if let Some((class, unit, _)) = sensor_kind(target) {
            set(&mut c, "device_class", json!(class));
            set(&mut c, "unit_of_measurement", json!(unit));
        }
        out.push(ctx.entity("number", cmd, cmd, c));
    }

    // the remaining points: binary sensors and sensors
    for p in &profile.points {
        if shown.contains(&p.as_str()) {
            continue;
        }
        if let Some(class) = binary_kind(p) {
            let mut c = json!({
                "state_topic": ctx.telemetry(p),
                "value_template": "{{ 'ON' if value_json.value else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            });
            if let Some(class) = class {
                set(&mut c, "device_class", json!(class));
            }
            out.push(ctx.entity("binary_sensor", p, p, c));
            continue;
        }
        let mut c = json!({
            "state_topic": ctx.telemetry(p),
            "value_template": "{{ value_json.value }}",
        });
        if let Some((class, unit, state_class)) = sensor_kind(p) {
            set(&mut c, "device_class", json!(class));
            set(&mut c, "unit_of_measurement", json!(unit));
            set(&mut c, "state_class", json!(state_class));
        }
        out.push(ctx.entity("sensor", p, p, c));
    }
    out
}

/// The gateway's own HA device: one connectivity binary sensor on its retained status.
pub fn gateway_entities(s: &Settings) -> Vec<Entity> {
    let id = gateway_identifier(s);
    let config = json!({
        "name": "Connectivity",
        "unique_id": format!("{id}_connectivity"),
        "state_topic": gateway_status_topic(s),
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": {
            "identifiers": [id],
            "name": display_text(&format!("Warden {}", s.gateway_id)),
            "manufacturer": "Warden",
            "model": "Warden zero-trust gateway",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "origin": origin(),
    });
    vec![Entity {
        component: "binary_sensor",
        object_id: "connectivity".into(),
        config,
    }]
}

fn gateway_node(s: &Settings) -> String {
    gateway_identifier(s)
}

/// Topic → payload for a device's entities.
pub fn device_configs(
    s: &Settings,
    r: &DeviceRecord,
    profile: &HaProfile,
) -> BTreeMap<String, Vec<u8>> {
    let node = node_id(&r.id);
    device_entities(s, r, profile)
        .into_iter()
        .map(|e| {
            (
                config_topic(s, e.component, &node, &e.object_id),
                e.config.to_string().into_bytes(),
            )
        })
        .collect()
}

/// What discovery publishes, and what it published per device.
pub struct Discovery {
    settings: Settings,
    /// Replaced by a config reload; read once per publication, not per message.
    profiles: RwLock<Arc<Profiles>>,
    announced: Mutex<HashMap<DeviceId, BTreeMap<String, Vec<u8>>>>,
    /// Held from deciding what to publish until it is queued, so a re-publish and a quarantine
    /// on another thread cannot interleave (a stale config queued after the clear).
    sending: Mutex<()>,
}

fn retained(topic: String, payload: Vec<u8>) -> Outgoing {
    Outgoing {
        topic,
        payload,
        retain: true,
    }
}

impl Discovery {
    pub fn new(settings: Settings, profiles: Profiles) -> Self {
        Self {
            settings,
            profiles: RwLock::new(Arc::new(profiles)),
            announced: Mutex::new(HashMap::new()),
            sending: Mutex::new(()),
        }
    }

    /// [`Discovery::on_status`], queued on `sink` before another publication can start.
    pub fn publish_status(&self, r: &DeviceRecord, sink: &dyn super::OutgoingSink) {
        let _g = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        for o in self.on_status(r) {
            sink.send(o);
        }
    }

    /// [`Discovery::republish`] of the records `current` returns, read and queued while no
    /// other publication runs (so no record is older than a status change queued before).
    pub fn publish_all<R: std::ops::Deref<Target = DeviceRecord>>(
        &self,
        current: impl FnOnce() -> Vec<R>,
        sink: &dyn super::OutgoingSink,
    ) -> usize {
        let _g = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        let records = current();
        let out = self.republish(records.iter().map(|r| &**r));
        let n = out.len();
        for o in out {
            sink.send(o);
        }
        n
    }

    /// Where and as whom it publishes (fixed at start).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Hands over the profiles of a reloaded config. Nothing is published here: the next
    /// [`Discovery::republish`] (or a device's next status) announces what the new profiles give
    /// and empties what they no longer give.
    pub fn set_profiles(&self, profiles: Profiles) {
        *self.profiles.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(profiles);
    }

    fn profiles(&self) -> Arc<Profiles> {
        self.profiles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn wanted(&self, profiles: &Profiles, r: &DeviceRecord) -> BTreeMap<String, Vec<u8>> {
        match profiles.for_record(r) {
            Some(p) => device_configs(&self.settings, r, p),
            None => BTreeMap::new(),
        }
    }

    /// A device's status was published: what to publish to HA. An active device gets the configs
    /// that changed since the last announcement (nothing when only its availability changed) and
    /// empty payloads for configs it no longer has; any other status empties every config it was
    /// announced with. (Only those: a flood of new pending devices costs no publications.)
    pub fn on_status(&self, r: &DeviceRecord) -> Vec<Outgoing> {
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        let before = announced.remove(&r.id).unwrap_or_default();
        let mut out = Vec::new();
        if r.status == Status::Active {
            let now = self.wanted(&self.profiles(), r);
            for t in before.keys() {
                if !now.contains_key(t) {
                    out.push(retained(t.clone(), Vec::new()));
                }
            }
            for (t, p) in &now {
                if before.get(t) != Some(p) {
                    out.push(retained(t.clone(), p.clone()));
                }
            }
            if !now.is_empty() {
                announced.insert(r.id.clone(), now);
            }
        } else {
            out.extend(before.into_keys().map(|t| retained(t, Vec::new())));
        }
        out
    }

    /// Everything again (at start, when HA announces itself with its birth message, and after a
    /// config reload replaced the profiles): the gateway's device, every active device's configs
    /// with empty ones for configs it no longer has, and empty configs for every device that is
    /// not active.
    pub fn republish<'a>(
        &self,
        records: impl IntoIterator<Item = &'a DeviceRecord>,
    ) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> = gateway_entities(&self.settings)
            .into_iter()
            .map(|e| {
                retained(
                    config_topic(
                        &self.settings,
                        e.component,
                        &gateway_node(&self.settings),
                        &e.object_id,
                    ),
                    e.config.to_string().into_bytes(),
                )
            })
            .collect();
        let profiles = self.profiles();
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            let before = announced.remove(&r.id).unwrap_or_default();
            let now = self.wanted(&profiles, r);
            if r.status == Status::Active {
                // every config again, and empties for any it no longer has
                for t in before.into_keys().filter(|t| !now.contains_key(t)) {
                    out.push(retained(t, Vec::new()));
                }
                out.extend(now.iter().map(|(t, p)| retained(t.clone(), p.clone())));
                if !now.is_empty() {
                    announced.insert(r.id.clone(), now);
                }
            } else {
                // after a restart nothing is remembered: empty what its profile would give it too
                let mut gone = before;
                gone.extend(now);
                out.extend(gone.into_keys().map(|t| retained(t, Vec::new())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn settings() -> Settings {
        Settings {
            discovery_prefix: "homeassistant".into(),
            topic_prefix: "warden".into(),
            gateway_id: "warden-demo".into(),
        }
    }

    fn record(id: &str, profile: &str, status: Status) -> DeviceRecord {
        DeviceRecord {
            id: id.parse().unwrap(),
            name: None,
            manufacturer: Some("Acme".into()),
            model: Some("T-1000".into()),
            firmware: Some("1.2.3".into()),
            serial: None,
            zone: "default".into(),
            role: None,
            profile: Some(profile.into()),
            status,
            status_by: "test".into(),
            status_at: 0,
            status_reason: String::new(),
            first_seen: None,
            last_seen: None,
            credentials: Vec::new(),
        }
    }

    fn profile(points: &[&str], commands: &[&str]) -> HaProfile {
        HaProfile {
            points: points.iter().map(|s| s.to_string()).collect(),
            commands: commands.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn profiles() -> Profiles {
        let mut p = Profiles::default();
        p.profiles.insert(
            "thermostat".into(),
            profile(&["temperature", "humidity", "setpoint"], &["set_setpoint"]),
        );
        p.profiles
            .insert("switch".into(), profile(&["on"], &["turn_on", "turn_off"]));
        p.profiles
            .insert("meter".into(), profile(&["power", "energy"], &[]));
        p.profiles.insert(
            "dimmer".into(),
            profile(&["on", "level"], &["turn_on", "turn_off", "set_level"]),
        );
        p.profiles.insert(
            "valve".into(),
            profile(&["position", "occupancy"], &["set_position"]),
        );
        p
    }

    fn by_component<'a>(es: &'a [Entity], c: &str) -> Vec<&'a Entity> {
        es.iter().filter(|e| e.component == c).collect()
    }

    fn check_common(e: &Entity, device: &str) {
        let c = &e.config;
        assert!(
            c["unique_id"]
                .as_str()
                .unwrap()
                .starts_with("warden_warden-demo_")
        );
        assert_eq!(c["device"]["via_device"], "warden_warden-demo");
        assert_eq!(c["device"]["manufacturer"], "Acme");
        assert_eq!(c["device"]["model"], "T-1000");
        assert_eq!(c["device"]["sw_version"], "1.2.3");
        assert_eq!(c["availability_mode"], "all");
        assert_eq!(c["availability"][0]["topic"], "warden/gateway/status");
        assert_eq!(
            c["availability"][1]["topic"],
            format!("warden/devices/{device}/status")
        );
    }

    #[test]
    fn sensors_carry_class_unit_and_state_class() {
        let s = settings();
        let p = profiles();
        let r = record("sim:meter-1", "meter", Status::Active);
        let es = device_entities(&s, &r, p.for_record(&r).unwrap());
        assert_eq!(es.len(), 2);
        let power = &es[0];
        assert_eq!(power.component, "sensor");
        assert_eq!(power.object_id, "power");
        assert_eq!(power.config["device_class"], "power");
        assert_eq!(power.config["unit_of_measurement"], "W");
        assert_eq!(power.config["state_class"], "measurement");
        assert_eq!(
            power.config["state_topic"],
            "warden/devices/sim:meter-1/telemetry/power"
        );
        assert_eq!(power.config["value_template"], "{{ value_json.value }}");
        let energy = &es[1];
        assert_eq!(energy.config["device_class"], "energy");
        assert_eq!(energy.config["unit_of_measurement"], "kWh");
        assert_eq!(energy.config["state_class"], "total_increasing");
        for e in &es {
            check_common(e, "sim:meter-1");
            assert!(e.config.get("command_topic").is_none());
        }
    }

    #[test]
    fn thermostat_is_a_climate_and_two_sensors() {
        let s = settings();
        let p = profiles();
        let r = record("sim:thermostat-1", "thermostat", Status::Active);
        let es = device_entities(&s, &r, p.for_record(&r).unwrap());
        let climate = by_component(&es, "climate");
        assert_eq!(climate.len(), 1);
        let c = &climate[0].config;
        assert_eq!(
            c["temperature_command_topic"],
            "warden/devices/sim:thermostat-1/cmd"
        );
        assert_eq!(
            c["temperature_command_template"],
            r#"{"command":"set_setpoint","args":{"value":{{ value }}}}"#
        );
        assert_eq!(
            c["current_temperature_topic"],
            "warden/devices/sim:thermostat-1/telemetry/temperature"
        );
        assert_eq!(
            c["temperature_state_topic"],
            "warden/devices/sim:thermostat-1/telemetry/setpoint"
        );
        let sensors: Vec<&str> = by_component(&es, "sensor")
            .iter()
            .map(|e| e.object_id.as_str())
            .collect();
        // the setpoint is the climate's state, not a sensor of its own; no number either
        assert_eq!(sensors, ["temperature", "humidity"]);
        assert!(by_component(&es, "number").is_empty());
        for e in &es {
            check_common(e, "sim:thermostat-1");
        }
    }

    #[test]
    fn on_off_commands_make_a_switch_whose_payloads_are_warden_commands() {
        let s = settings();
        let p = profiles();
        let r = record("sim:switch-1", "switch", Status::Active);
        let es = device_entities(&s, &r, p.for_record(&r).unwrap());
        assert_eq!(es.len(), 1, "the `on` point is the switch's state: {es:?}");
        let sw = &es[0];
        assert_eq!(sw.component, "switch");
        assert_eq!(
            sw.config["command_topic"],
            "warden/devices/sim:switch-1/cmd"
        );
        let on: Json = serde_json::from_str(sw.config["payload_on"].as_str().unwrap()).unwrap();
        assert_eq!(on, json!({"command": "turn_on"}));
        let off: Json = serde_json::from_str(sw.config["payload_off"].as_str().unwrap()).unwrap();
        assert_eq!(off, json!({"command": "turn_off"}));
        assert_eq!(sw.config["state_on"], "ON");
        assert_eq!(
            sw.config["value_template"],
            "{{ 'ON' if value_json.value else 'OFF' }}"
        );
        // a command payload parses as the command topic's JSON
        let (_, cmd) =
            crate::run::parse_command(sw.config["payload_on"].as_str().unwrap().as_bytes())
                .unwrap();
        assert_eq!(cmd.name, "turn_on");
    }

    #[test]
    fn a_level_command_makes_a_light() {
        let s = settings();
        let p = profiles();
        let r = record("zigbee:00124b001caabb01", "dimmer", Status::Active);
        let es = device_entities(&s, &r, p.for_record(&r).unwrap());
        assert_eq!(es.len(), 1, "{es:?}");
        let l = &es[0];
        assert_eq!(l.component, "light");
        assert_eq!(
            l.config["brightness_command_template"],
            r#"{"command":"set_level","args":{"level":{{ value }}}}"#
        );
        assert_eq!(
            l.config["brightness_state_topic"],
            "warden/devices/zigbee:00124b001caabb01/telemetry/level"
        );
        assert_eq!(
            l.config["state_value_template"],
            r#"{{ '{"command":"turn_on"}' if value_json.value else '{"command":"turn_off"}' }}"#
        );
        assert!(l.config.get("value_template").is_none());
    }

    #[test]
    fn set_commands_make_numbers_and_binary_points_binary_sensors() {
        let s = settings();
        let p = profiles();
        let r = record("modbus:tcp-127.0.0.1-502-u1", "valve", Status::Active);
        let es = device_entities(&s, &r, p.for_record(&r).unwrap());
        let n = by_component(&es, "number");
        assert_eq!(n.len(), 1);
        assert_eq!(
            n[0].config["command_template"],
            r#"{"command":"set_position","args":{"value":{{ value }}}}"#
        );
        // a rendered template is the command topic's JSON
        let rendered = n[0].config["command_template"]
            .as_str()
            .unwrap()
            .replace("{{ value }}", "42");
        let (_, cmd) = crate::run::parse_command(rendered.as_bytes()).unwrap();
        assert_eq!(cmd.name, "set_position");
        let b = by_component(&es, "binary_sensor");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].config["device_class"], "occupancy");
        // `position` has no known class: a plain sensor without unit or state class
        let sensor = by_component(&es, "sensor");
        assert_eq!(sensor.len(), 1);
        assert!(sensor[0].config.get("unit_of_measurement").is_none());
    }

    #[test]
    fn hostile_ids_and_names_stay_inside_their_topic_level() {
        for raw in [
            "<script>alert(1)</script>",
            "a/b",
            "+",
            "#",
            "x/+/#/../config",
            "",
            "ünïcødé",
            &"y".repeat(10_000),
        ] {
            let o = object_id(raw);
            assert!(!o.is_empty() && o.len() <= OBJECT_MAX + 1 + HASH_HEX, "{o}");
            assert!(
                o.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{raw:?} → {o}"
            );
        }
        // distinct names that sanitize alike stay distinct
        assert_ne!(object_id("a/b"), object_id("a+b"));
        assert_ne!(object_id("a/b"), object_id("a_b"));
        assert_eq!(object_id("temperature"), "temperature");

        let long: DeviceId = format!("sim:{}", "a".repeat(128)).parse().unwrap();
        let n = node_id(&long);
        assert!(n.len() <= NODE_MAX + 1 + HASH_HEX);
        let other: DeviceId = format!("sim:{}b", "a".repeat(127)).parse().unwrap();
        assert_ne!(node_id(&other), n, "a shared long prefix still differs");
        let a: DeviceId = "sim:a.b".parse().unwrap();
        let b: DeviceId = "sim:a_b".parse().unwrap();
        assert_ne!(node_id(&a), node_id(&b));

        // a hostile point name and device name in a full config
        let s = settings();
        let mut r = record("sim:x~y@z", "evil", Status::Active);
        r.name = Some(format!(
            "<script>alert(1)</script>\n\u{1b}[31m{}",
            "n".repeat(500)
        ));
        r.manufacturer = Some("\"/#+".into());
        let p = profile(&["<script>", "a/b/+/#", &"q".repeat(300)], &["set_/#"]);
        let configs = device_configs(&s, &r, &p);
        assert_eq!(configs.len(), 4);
        for (topic, payload) in &configs {
            let levels: Vec<&str> = topic.split('/').collect();
            assert_eq!(levels.len(), 5, "{topic}");
            assert_eq!(levels[0], "homeassistant");
            assert_eq!(levels[4], "config");
            for l in &levels[1..4] {
                assert!(
                    l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                    "{topic}"
                );
            }
            let v: Json = serde_json::from_slice(payload).unwrap();
            let name = v["device"]["name"].as_str().unwrap();
            assert!(name.chars().count() <= TEXT_MAX);
            assert!(!name.chars().any(char::is_control), "{name:?}");
            assert!(v["name"].as_str().unwrap().chars().count() <= TEXT_MAX);
            // the device name is data, never part of a topic
            assert!(!topic.contains("script>"));
            assert_eq!(v["device"]["manufacturer"], "\"/#+");
        }
    }

    #[test]
    fn the_gateway_device_is_announced() {
        let s = settings();
        let d = Discovery::new(s.clone(), profiles());
        let out = d.republish(std::iter::empty());
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].topic,
            "homeassistant/binary_sensor/warden_warden-demo/connectivity/config"
        );
        let v: Json = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(v["device"]["identifiers"][0], "warden_warden-demo");
        assert_eq!(v["state_topic"], "warden/gateway/status");
        assert!(out[0].retain);
    }

    #[test]
    fn quarantine_clears_exactly_what_was_announced_and_release_restores_it() {
        let d = Discovery::new(settings(), profiles());
        let mut r = record("sim:thermostat-1", "thermostat", Status::Active);
        let first = d.on_status(&r);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|o| o.retain && !o.payload.is_empty()));
        // an availability change of an active device publishes nothing new
        assert!(d.on_status(&r).is_empty());
        // another device's configs are not touched by this one's quarantine
        let other = record("sim:meter-1", "meter", Status::Active);
        assert_eq!(d.on_status(&other).len(), 2);

        r.status = Status::Quarantined;
        let cleared = d.on_status(&r);
        let mut want: Vec<&str> = first.iter().map(|o| o.topic.as_str()).collect();
        let mut got: Vec<&str> = cleared.iter().map(|o| o.topic.as_str()).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        assert!(cleared.iter().all(|o| o.retain && o.payload.is_empty()));

        r.status = Status::Active;
        let back = d.on_status(&r);
        assert_eq!(back, first);

        // revoked and pending clear too
        for st in [Status::Revoked, Status::Pending] {
            r.status = Status::Active;
            d.on_status(&r);
            r.status = st;
            let c = d.on_status(&r);
            assert_eq!(c.len(), 3);
            assert!(c.iter().all(|o| o.payload.is_empty()));
        }
    }

    #[test]
    fn a_device_never_announced_publishes_nothing_when_not_active() {
        let d = Discovery::new(settings(), profiles());
        for st in [Status::Pending, Status::Quarantined, Status::Revoked] {
            let r = record("sim:new", "meter", st);
            assert!(d.on_status(&r).is_empty(), "{st:?}");
        }
    }

    #[test]
    fn a_profile_change_removes_configs_it_no_longer_has() {
        let d = Discovery::new(settings(), profiles());
        let mut r = record("sim:x", "thermostat", Status::Active);
        let first = d.on_status(&r);
        r.profile = Some("meter".into());
        let next = d.on_status(&r);
        let emptied: Vec<&str> = next
            .iter()
            .filter(|o| o.payload.is_empty())
            .map(|o| o.topic.as_str())
            .collect();
        assert_eq!(emptied.len(), first.len());
        assert_eq!(next.iter().filter(|o| !o.payload.is_empty()).count(), 2);
        // no profile: nothing to announce, and what was announced goes
        r.profile = Some("unknown".into());
        assert!(d.on_status(&r).iter().all(|o| o.payload.is_empty()));
    }

    #[test]
    fn republish_sends_every_config_again() {
        let d = Discovery::new(settings(), profiles());
        let a = record("sim:thermostat-1", "thermostat", Status::Active);
        let b = record("sim:rogue-1", "thermostat", Status::Quarantined);
        let c = record("sim:newcomer-1", "meter", Status::Pending);
        let first = d.on_status(&a);
        let again = d.republish([&a, &b, &c]);
        let full: Vec<&Outgoing> = again.iter().filter(|o| !o.payload.is_empty()).collect();
        // the gateway's config and all three of the thermostat's
        assert_eq!(full.len(), 1 + first.len());
        // the quarantined and pending devices' would-be configs are emptied
        assert_eq!(again.iter().filter(|o| o.payload.is_empty()).count(), 3 + 2);
        // what was re-published is remembered: no change, nothing; a quarantine clears it
        assert!(d.on_status(&a).is_empty());
        let mut q = a.clone();
        q.status = Status::Quarantined;
        assert_eq!(d.on_status(&q).len(), first.len());
    }

    #[test]
    fn replaced_profiles_announce_new_entities_and_empty_removed_ones() {
        let d = Discovery::new(settings(), profiles());
        let meter = record("sim:meter-1", "meter", Status::Active);
        let mut by_model = record("sim:modelled", "meter", Status::Active);
        by_model.profile = None;
        let mut old = profiles();
        old.models.insert("Acme/T-1000".into(), "switch".into());
        d.set_profiles(old);
        let first = d.republish([&meter, &by_model]);
        let announced = |out: &[Outgoing], device: &str| -> Vec<String> {
            let node = node_id(&device.parse().unwrap());
            let mut t: Vec<String> = out
                .iter()
                .filter(|o| o.topic.contains(&node) && !o.payload.is_empty())
                .map(|o| o.topic.clone())
                .collect();
            t.sort();
            t
        };
        let node = node_id(&meter.id);
        let topic = |c: &str, o: &str| config_topic(&settings(), c, &node, o);
        assert_eq!(
            announced(&first, "sim:meter-1"),
            [topic("sensor", "energy"), topic("sensor", "power")]
        );
        assert_eq!(announced(&first, "sim:modelled").len(), 1, "a switch");

        // the meter loses `energy`, gains `voltage` and a `set_limit` command; the model now maps
        // to a profile that is gone
        let mut new = profiles();
        new.profiles.insert(
            "meter".into(),
            profile(&["power", "voltage"], &["set_limit"]),
        );
        new.models.insert("Acme/T-1000".into(), "gone".into());
        d.set_profiles(new);
        // what a reload does next: everything again under the new profiles
        let out = d.republish([&meter, &by_model]);
        assert_eq!(
            announced(&out, "sim:meter-1"),
            [
                topic("number", "set_limit"),
                topic("sensor", "power"),
                topic("sensor", "voltage"),
            ]
        );
        let emptied: Vec<&str> = out
            .iter()
            .filter(|o| o.payload.is_empty())
            .map(|o| o.topic.as_str())
            .collect();
        let modelled: Vec<String> = first
            .iter()
            .filter(|o| o.topic.contains(&node_id(&by_model.id)))
            .map(|o| o.topic.clone())
            .collect();
        let mut want = vec![topic("sensor", "energy")];
        want.extend(modelled);
        assert_eq!(emptied, want);
        assert!(out.iter().all(|o| o.retain));
        let voltage = out
            .iter()
            .find(|o| o.topic == topic("sensor", "voltage"))
            .unwrap();
        let v: Json = serde_json::from_slice(&voltage.payload).unwrap();
        assert_eq!(v["unit_of_measurement"], "V");
        // what was published under the new profiles is what is remembered
        assert!(d.on_status(&meter).is_empty());
        let mut q = meter.clone();
        q.status = Status::Quarantined;
        assert_eq!(d.on_status(&q).len(), 3);
    }

    #[test]
    fn models_map_to_profiles() {
        let mut p = profiles();
        p.models.insert("Acme/T-1000".into(), "meter".into());
        let mut r = record("sim:m", "meter", Status::Active);
        r.profile = None;
        assert_eq!(p.for_record(&r).unwrap().points, ["power", "energy"]);
    }
}
