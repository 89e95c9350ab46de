//! The configuration file (TOML). Every section and key is documented in `examples/warden.toml`.
//! Unknown keys are errors that name the key; defaults are secure and run with no file at all.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warden_core::Assurance;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub secrets: SecretsConfig,
    pub api: ApiConfig,
    pub mqtt: MqttConfig,
    pub audit: AuditConfig,
    pub registry: RegistryConfig,
    pub zones: BTreeMap<String, ZoneConfig>,
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// `"Manufacturer/Model" = "profile"`: the usage profile a device gets from its model when it has
    /// none of its own.
    pub models: BTreeMap<String, String>,
    pub controllers: Vec<ControllerConfig>,
    pub sim: SimConfig,
    /// Protocol adapters: `[adapters.<name>]`, each section parsed by its adapter crate.
    pub adapters: BTreeMap<String, toml::Value>,
    /// Wasm policy plugins: where they come from, who may sign them, and what they are bound to.
    pub plugins: PluginsConfig,
    /// Behaviour baselines, anomaly scores and the rules that act on them.
    pub behaviour: BehaviourConfig,
    /// The directory relative paths in the file are resolved against (the file's own).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let mut zones = BTreeMap::new();
        zones.insert("default".to_owned(), ZoneConfig::default());
        Self {
            gateway: GatewayConfig::default(),
            secrets: SecretsConfig::default(),
            api: ApiConfig::default(),
            mqtt: MqttConfig::default(),
            audit: AuditConfig::default(),
            registry: RegistryConfig::default(),
            zones,
            profiles: BTreeMap::new(),
            models: BTreeMap::new(),
            controllers: Vec::new(),
            sim: SimConfig::default(),
            adapters: BTreeMap::new(),
            plugins: PluginsConfig::default(),
            behaviour: BehaviourConfig::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

/// `[behaviour]`: per-device baselines and the built-in rules on their anomaly score. The rule keys
/// here are the defaults; `[behaviour.zones.<zone>]` and then `[behaviour.profiles.<profile>]`
/// override any of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// Learn baselines and score every message. Off: no state, no score (`anomaly-score` is none).
    pub enabled: bool,
    /// A device learns this long (seconds since its first message) …
    pub learning_s: u64,
    /// … and at least this many messages before its rules act. A device whose model's peers
    /// already learned starts from their baseline and needs a quarter of both.
    pub learning_messages: u64,
    /// A score at or above this is an alert: audit record, MQTT `…/behaviour` event, metric.
    pub alert_at: f32,
    /// A score at or above this quarantines the device (with `action = "quarantine"`); `1` turns
    /// this one-message rule off, leaving `quarantine_after`.
    pub quarantine_at: f32,
    /// So does this many alert-level messages within `window_s`.
    pub quarantine_after: u32,
    pub window_s: u64,
    /// `quarantine`, or `alert` (never quarantine, only alert).
    pub action: BehaviourAction,
    pub zones: BTreeMap<String, BehaviourRulesConfig>,
    pub profiles: BTreeMap<String, BehaviourRulesConfig>,
    pub guard: QuarantineGuardConfig,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_s: 7 * 86_400,
            learning_messages: 1000,
            alert_at: 0.5,
            quarantine_at: 0.9,
            quarantine_after: 5,
            window_s: 300,
            action: BehaviourAction::Quarantine,
            zones: BTreeMap::new(),
            profiles: BTreeMap::new(),
            guard: QuarantineGuardConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BehaviourAction {
    Quarantine,
    Alert,
}

/// Overrides of the `[behaviour]` rule keys for one zone or profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourRulesConfig {
    pub learning_s: Option<u64>,
    pub learning_messages: Option<u64>,
    pub alert_at: Option<f32>,
    pub quarantine_at: Option<f32>,
    pub quarantine_after: Option<u32>,
    pub window_s: Option<u64>,
    pub action: Option<BehaviourAction>,
}

/// `[behaviour.guard]`: when quarantines (from any source: rules, plugins) would take `share` of a
/// zone's devices within `window_s`, raise an alarm and stop auto-quarantining in that zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineGuardConfig {
    pub share: f32,
    pub window_s: u64,
}

impl Default for QuarantineGuardConfig {
    fn default() -> Self {
        Self {
            share: 0.3,
            window_s: 600,
        }
    }
}

/// `[plugins]`: the Wasm policy plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Where the modules (`NAME.wasm`, `NAME.wasm.sig`, optional `NAME.tests.jsonl`) live.
    /// Relative to the config file's directory.
    pub dir: PathBuf,
    /// Refuse any module without a valid signature by a trusted key. Turn off only for development.
    pub require_signature: bool,
    /// Trusted plugin-signing keys: base64 public keys, or paths to `.pub` files.
    pub trusted_keys: Vec<String>,
    /// Compiled-code cache. Default: `<data-dir>/plugin-cache`.
    pub cache_dir: Option<PathBuf>,
    /// Largest module file loaded, MiB (a `.sig` is capped at 512 bytes). Default 64.
    pub max_module_mib: u64,
    /// Reload a plugin when its module, signature or test file changes.
    pub watch: bool,
    pub watch_interval_ms: u64,
    /// Append every request that reaches the plugin stage to this JSONL file (the format of
    /// `warden plugin test --messages`). Relative to the data dir. Off when unset.
    pub record: Option<PathBuf>,
    /// Stop recording when the file reaches this size.
    pub record_max_mb: u64,
    /// Default limits for every plugin (each `[[plugins.load]]` may override them).
    pub limits: PluginLimitsConfig,
    /// The plugins to load.
    pub load: Vec<PluginLoadConfig>,
    /// Bindings, in chain order: every binding whose selectors match a message runs, and all
    /// must allow.
    pub bind: Vec<PluginBindConfig>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("plugins"),
            require_signature: true,
            trusted_keys: Vec::new(),
            cache_dir: None,
            max_module_mib: 64,
            watch: true,
            watch_interval_ms: 1000,
            record: None,
            record_max_mb: 64,
            limits: PluginLimitsConfig::default(),
            load: Vec::new(),
            bind: Vec::new(),
        }
    }
}

/// Per-plugin limits. Unset values take `[plugins.limits]`, then the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimitsConfig {
    /// Wasm instructions (fuel) per decision. Default 2,000,000.
    pub fuel: Option<u64>,
    /// Wall-clock backstop per decision, ms. Default 250.
    pub deadline_ms: Option<u64>,
    /// Linear-memory cap, MiB. Default 64.
    pub memory_mib: Option<u64>,
    /// Key-value state quota, KiB. Default 1024.
    pub kv_quota_kib: Option<u64>,
    /// Host calls per decision. Default 10,000.
    pub host_calls: Option<u32>,
    /// Failures before the plugin is disabled: this many in a row, or this many within
    /// `failure_window_s`. Default 5.
    pub max_failures: Option<u32>,
    /// The failure-rate window, seconds. Default 60.
    pub failure_window_s: Option<u64>,
    /// Wall time the plugin may spend deciding per second, ms; beyond it the plugin is disabled
    /// and a security record written. Default 500.
    pub cpu_ms_per_sec: Option<u64>,
    /// Fuel for `init` (at load and when a failed instance is replaced, off the message
    /// thread). Default 200,000,000.
    pub init_fuel: Option<u64>,
    /// Wall-clock backstop for instantiation plus `init`, ms. Default 2000.
    pub init_deadline_ms: Option<u64>,
    /// Decisions after which the instance is swapped for a fresh one prepared in the
    /// background (the running one keeps deciding meanwhile), for language runtimes whose
    /// garbage grows inside a long-lived instance (componentize-js). Default 0: never.
    pub recycle_after: Option<u64>,
}

/// `[[plugins.load]]`: one plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLoadConfig {
    /// The name bindings and the audit log use.
    pub name: String,
    /// The module file, relative to `plugins.dir`. Default: `<name with - as _>.wasm`.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Overrides of `[plugins.limits]` for this plugin.
    #[serde(default)]
    pub limits: PluginLimitsConfig,
    /// WASI 0.2 packages the plugin may import (`cli`, `clocks`, `filesystem`, `io`, `random`,
    /// `sockets`). Default none: Rust and C plugins need none; the load error of a Python or
    /// JavaScript plugin names what its runtime imports. Granting a package grants no resources.
    #[serde(default)]
    pub wasi: Vec<String>,
    /// `wasi:random` from the OS instead of a generator seeded per decision (default false).
    #[serde(default)]
    pub real_random: bool,
}

/// `[[plugins.bind]]`: which messages a plugin decides on. Empty selectors match everything;
/// a device pattern may end in `*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginBindConfig {
    pub plugin: String,
    pub zones: Vec<String>,
    pub roles: Vec<String>,
    pub protocols: Vec<String>,
    pub devices: Vec<String>,
    /// `uplink`, `downlink` or `both` (default).
    pub direction: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Names this gateway in every northbound envelope (`gw`).
    pub id: String,
    /// Bound of the channel from adapters to the pipeline (backpressure when full).
    pub channel_capacity: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            id: "warden".into(),
            channel_capacity: 4096,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Master key file (64 hex chars, mode 0600). Default: `<data-dir>/master.key`.
    /// `WARDEN_MASTER_KEY` in the environment takes precedence.
    pub key_file: Option<PathBuf>,
}

/// `[api]`: the management API and the dashboard. It speaks plain HTTP on loopback; the
/// dashboard may also be served on a LAN address, over TLS only (`lan_listen`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Must be a loopback address (the API has no TLS of its own).
    pub listen: SocketAddr,
    /// Open connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Open connections at once from one source address.
    pub max_connections_per_source: usize,
    /// A client must send a request's whole header within this many seconds (also the limit for
    /// an idle keep-alive connection between requests).
    pub header_timeout_s: u64,
    /// A connection with no byte in either direction for this long is closed (longer than a
    /// command's 35 s wait).
    pub idle_timeout_s: u64,
    /// Largest request body (device imports are the big ones).
    pub max_body_kib: usize,
    /// Failed logins are counted per source over this window (a minute by default).
    pub failure_window_s: u64,
    /// Failed logins per source and window after which the API answers 429 without checking.
    pub max_login_failures: u64,
    /// Failed logins (API or MQTT) per source and window that raise the brute-force alarm.
    pub brute_force_alarm: u64,
    /// A second listener for the dashboard (and API) on a LAN address, always over TLS; off by
    /// default.
    pub lan_listen: Option<SocketAddr>,
    /// PEM certificate chain and key for `lan_listen`; without them a self-signed certificate is
    /// generated at first start into `<data-dir>/api-tls.crt` and `api-tls.key` (0600).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve the web dashboard (`/ui/…`); `false` leaves the JSON API only (what the CLI uses).
    /// A binary built without the `dashboard` feature has no dashboard whatever this says.
    pub dashboard: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            max_connections: 128,
            max_connections_per_source: 32,
            header_timeout_s: 10,
            idle_timeout_s: 60,
            max_body_kib: 8192,
            failure_window_s: 60,
            max_login_failures: 10,
            brute_force_alarm: 20,
            lan_listen: None,
            tls_cert: None,
            tls_key: None,
            dashboard: true,
        }
    }
}

impl ApiConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.listen.ip().is_loopback() {
            return Err(format!(
                "api.listen = \"{}\" is not a loopback address: the management API speaks plain \
                 HTTP there, so it only listens on 127.0.0.1 or ::1 (use api.lan_listen to serve the \
                 dashboard on a LAN address over TLS)",
                self.listen
            ));
        }
        let range = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(format!("api.{name} = {v} is out of range {lo}..={hi}"))
            } else {
                Ok(())
            }
        };
        range("max_connections", self.max_connections as u64, 1, 65_536)?;
        range(
            "max_connections_per_source",
            self.max_connections_per_source as u64,
            1,
            self.max_connections as u64,
        )?;
        range("header_timeout_s", self.header_timeout_s, 1, 300)?;
        range("idle_timeout_s", self.idle_timeout_s, 1, 3600)?;
        range("max_body_kib", self.max_body_kib as u64, 1, 1 << 20)?;
        range("failure_window_s", self.failure_window_s, 1, 3600)?;
        range("max_login_failures", self.max_login_failures, 1, 1_000_000)?;
        range("brute_force_alarm", self.brute_force_alarm, 1, 1_000_000)?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("api.tls_cert and api.tls_key go together: set both or neither".into());
        }
        if let Some(lan) = self.lan_listen
            && lan == self.listen
        {
            return Err(format!(
                "api.lan_listen = \"{lan}\" is api.listen too: the LAN listener needs its own address or port"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// First topic level of everything Warden publishes.
    pub topic_prefix: String,
    /// `embedded` (default) or an external broker URL: `mqtts://host:port` (mutual TLS).
    pub broker: String,
    pub embedded: EmbeddedBrokerConfig,
    pub tls: TlsClientConfig,
    pub client_id: String,
    /// Store-and-forward bound: at most this many messages wait; beyond it the oldest are dropped
    /// and counted (metric + audit record).
    pub queue_max_messages: u64,
    /// Sign every uplink envelope with the gateway's Ed25519 key.
    pub sign: bool,
    /// Unfinished QoS 2 publications at once; at or below the broker's limit (mosquitto: 20).
    pub max_inflight: usize,
    /// Home Assistant MQTT discovery.
    pub homeassistant: HomeAssistantConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            topic_prefix: "warden".into(),
            broker: "embedded".into(),
            embedded: EmbeddedBrokerConfig::default(),
            tls: TlsClientConfig::default(),
            client_id: "warden-gateway".into(),
            queue_max_messages: 100_000,
            sign: true,
            max_inflight: 16,
            homeassistant: HomeAssistantConfig::default(),
        }
    }
}

/// `[mqtt.homeassistant]`: Home Assistant MQTT discovery (see
/// `gateway/src/northbound/ha_discovery.rs`). On by default: active devices appear in Home
/// Assistant by themselves, pending, quarantined and revoked ones are removed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    /// Home Assistant's discovery prefix (its MQTT integration's setting; `homeassistant`).
    /// Its `<prefix>/status` birth message `online` makes Warden publish every config again.
    pub discovery_prefix: String,
    /// With the embedded broker: a broker user for Home Assistant, its password created in
    /// `<data-dir>/mqtt-<user>.password`. It may read the discovery configs and Warden's device
    /// status and telemetry, publish commands and its birth message; its commands carry the
    /// principal `mqtt:<user>` (list it in a zone's `commanders`). Empty: no such user.
    pub user: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            discovery_prefix: "homeassistant".into(),
            user: "homeassistant".into(),
        }
    }
}

impl HomeAssistantConfig {
    fn validate(&self, topic_prefix: &str) -> Result<(), String> {
        let p = &self.discovery_prefix;
        if p.is_empty()
            || p.len() > 64
            || p.starts_with('/')
            || p.ends_with('/')
            || p.contains("//")
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
        {
            return Err(format!(
                "mqtt.homeassistant.discovery_prefix = \"{p}\" must be 1-64 letters, digits, '_', '-' \
                 and inner '/'"
            ));
        }
        if p.split('/').next() == topic_prefix.split('/').next() {
            return Err(format!(
                "mqtt.homeassistant.discovery_prefix = \"{p}\" must not share its first level with \
                 mqtt.topic_prefix"
            ));
        }
        let u = &self.user;
        if u.len() > 64
            || !u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(format!(
                "mqtt.homeassistant.user = \"{u}\" must be at most 64 letters, digits, '_' or '-'"
            ));
        }
        if u == "operator" || u == "warden" {
            return Err(format!(
                "mqtt.homeassistant.user = \"{u}\" is reserved for the gateway's own users"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Open sockets one source address may hold (so one host cannot take every slot).
    pub max_connections_per_source: usize,
    /// Extra broker users. The `operator` user (password in `<data-dir>/mqtt-operator.password`)
    /// always exists: it may read everything under the prefix and publish commands.
    pub users: Vec<BrokerUserConfig>,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_connections: 256,
            max_connections_per_source: 64,
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerUserConfig {
    pub name: String,
    /// File holding the password (mode 0600).
    pub password_file: PathBuf,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// CA that signed the external broker's certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Gateway client certificate chain and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Aggregate allowed routine telemetry per device per window instead of one record each.
    pub aggregate_telemetry: bool,
    /// The aggregation window: one record per device per this many seconds (a device that sends
    /// once a minute costs one record a minute at 60, a sixtieth of that at 3600).
    pub aggregate_window_s: u64,
    /// How often the gateway signs and records its audit head (anchor row, witness file, MQTT).
    pub head_every_s: u64,
    /// Append-only file that receives one signed head per line. Keep it outside the data dir (ideally
    /// on storage the gateway can only append to): it is what proves a wiped or truncated chain even
    /// to someone who can rewrite the whole data dir. Relative to the config file's directory.
    pub witness_file: Option<PathBuf>,
    /// Records older than this many days are pruned, leaving a signed checkpoint the rest verifies
    /// from (0: no age limit).
    pub retain_days: u64,
    /// The audit log is kept under about this many bytes, oldest records pruned first (0: no limit).
    pub max_bytes: u64,
    /// The newest records that are never pruned, whatever the limits.
    pub keep_records: u64,
    /// Pruned ranges are first exported here as JSON lines (a failed export stops the prune).
    /// Relative to the config file's directory. None: pruned records are gone.
    pub export_dir: Option<PathBuf>,
    /// How often retention runs.
    pub prune_every_s: u64,
    /// Under this much free space on the data dir's filesystem the gateway raises the disk alarm
    /// and runs degraded (no new devices, unknown sources only aggregated, never blocked on audit).
    pub disk_low_mib: u64,
    /// A file of this size kept in the data dir and deleted when the disk runs low, so the audit
    /// log has room for the records that follow (0: none).
    pub disk_reserve_mib: u64,
    /// How often free space is measured.
    pub disk_check_s: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            aggregate_telemetry: true,
            aggregate_window_s: 900,
            head_every_s: 60,
            witness_file: None,
            retain_days: 365,
            max_bytes: 1 << 30,
            keep_records: 10_000,
            export_dir: None,
            prune_every_s: 3600,
            disk_low_mib: 64,
            disk_reserve_mib: 8,
            disk_check_s: 5,
        }
    }
}

/// A period of the audit section within [`HEAD_EVERY_S`], or an error naming the key.
fn seconds_in_range(key: &str, v: u64) -> Result<(), String> {
    if HEAD_EVERY_S.contains(&v) {
        return Ok(());
    }
    Err(format!(
        "{key} must be between {} and {} seconds",
        HEAD_EVERY_S.start(),
        HEAD_EVERY_S.end()
    ))
}

/// `audit.head_every_s` bounds: at least once a second, at most once a day.
pub const HEAD_EVERY_S: std::ops::RangeInclusive<u64> = 1..=86_400;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Unknown devices beyond this many pending ones are denied without being registered, so a flood
    /// of forged addresses cannot fill the store.
    pub max_pending: usize,
    /// Zone given to newly discovered devices.
    pub default_zone: String,
    /// A device silent this long is published as offline (retained status `"online": false`).
    pub offline_after_s: u64,
    /// Device roles an operator may assign (besides those named by `[[plugins.bind]] roles`).
    pub roles: Vec<String>,
    /// New pending devices one source may register a minute (a LoRaWAN forwarder, a radio):
    /// a flood of forged identities from one source cannot fill `max_pending`.
    pub pending_per_source_per_min: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            pending_per_source_per_min: 30,
            max_pending: 1000,
            default_zone: "default".into(),
            offline_after_s: 900,
            roles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZoneConfig {
    /// Principals allowed to command devices in this zone (`*` for any authenticated principal).
    pub commanders: Vec<String>,
}

/// A usage profile (MUD-like): what a device may send and which commands it may receive.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    pub points: Vec<String>,
    pub events: Vec<String>,
    pub commands: Vec<String>,
    /// Uplinks below this assurance are denied.
    pub min_assurance: Assurance,
    /// Uplinks not replay-checked by the adapter are denied.
    pub require_fresh: bool,
    /// Security labels the device must use (`zwave-s2-access-control`, …; see the README's
    /// assurance table). Empty: any. Uplinks under another label, or none, are denied; commands
    /// are denied until the device was heard under one of them, and the adapter sends them only
    /// under one of them.
    pub security: Vec<String>,
    /// Posture: devices reporting firmware below this version are restricted (see
    /// `gateway/src/posture.rs` for how versions compare and what an unreadable one means).
    pub min_firmware: Option<String>,
    /// Posture: firmware versions known to be vulnerable; devices reporting one are restricted.
    pub vulnerable_firmware: Vec<String>,
    /// What a restricted device gets: `restrict` (uplinks flow, commands denied) or `quarantine`.
    pub firmware_action: crate::posture::PostureAction,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Principal name recorded for commands this key signs.
    pub name: String,
    /// Ed25519 public key, base64 (the format of `gateway.pub`).
    pub public_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Simulated devices (the `sim` protocol). `warden run --demo` adds a set of its own.
    pub devices: Vec<warden_hardware::sim::SimDeviceConfig>,
    /// Line-based control port to make simulated devices send chosen values (tests, demos).
    pub control: Option<SocketAddr>,
    /// Commands the demo issues periodically through the downlink pipeline.
    pub commands: Vec<SimCommandConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCommandConfig {
    pub device: String,
    pub command: String,
    #[serde(default)]
    pub value: Option<f64>,
    pub every_s: u64,
    pub principal: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::files::read_text(path, crate::files::CONFIG_MAX, "config file").map_err(
            |e| ConfigError::Read {
                path: path.to_owned(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(cfg)
    }

    /// `audit.witness_file`, resolved against the config file's directory.
    pub fn witness_file(&self) -> Option<PathBuf> {
        self.audit
            .witness_file
            .as_ref()
            .map(|p| self.base_dir.join(p))
    }

    /// The audit retention policy, `export_dir` resolved against the config file's directory.
    pub fn retention(&self) -> crate::audit::retention::Policy {
        crate::audit::retention::Policy {
            retain_days: self.audit.retain_days,
            max_bytes: self.audit.max_bytes,
            keep_records: self.audit.keep_records,
            export_dir: self
                .audit
                .export_dir
                .as_ref()
                .map(|p| self.base_dir.join(p)),
        }
    }

    /// `plugins.dir`, resolved against the config file's directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.base_dir.join(&self.plugins.dir)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    /// Cross-field checks that serde cannot express. Messages name the offending key.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_bounds()?;
        if self.gateway.id.is_empty() || self.gateway.id.contains(['/', '+', '#']) {
            return Err("gateway.id must be non-empty and contain no '/', '+' or '#'".into());
        }
        if self.mqtt.topic_prefix.is_empty() || self.mqtt.topic_prefix.contains(['+', '#']) {
            return Err("mqtt.topic_prefix must be non-empty and contain no wildcard".into());
        }
        self.api.validate()?;
        if self.gateway.channel_capacity == 0 {
            return Err("gateway.channel_capacity must be at least 1".into());
        }
        if !self.zones.contains_key(&self.registry.default_zone) {
            return Err(format!(
                "registry.default_zone `{}` is not defined under [zones]",
                self.registry.default_zone
            ));
        }
        for (name, p) in &self.profiles {
            crate::posture::Rule::compile(
                p.min_firmware.as_deref(),
                &p.vulnerable_firmware,
                p.firmware_action,
            )
            .map_err(|e| format!("profiles.{name}: {e}"))?;
        }
        for (model, profile) in &self.models {
            if !self.profiles.contains_key(profile) {
                return Err(format!(
                    "models.\"{model}\" names profile `{profile}`, which is not defined under [profiles]"
                ));
            }
        }
        if self.mqtt.broker != "embedded" {
            crate::northbound::mqtt::BrokerUrl::parse(&self.mqtt.broker)
                .map_err(|e| format!("mqtt.broker: {e}"))?;
            if self.mqtt.tls.ca_file.is_none() {
                return Err("mqtt.tls.ca_file is required with an external broker".into());
            }
            if self.mqtt.tls.cert_file.is_none() || self.mqtt.tls.key_file.is_none() {
                return Err(
                    "mqtt.tls.cert_file and mqtt.tls.key_file are required with an external broker (mutual TLS)"
                        .into(),
                );
            }
        }
        seconds_in_range("audit.head_every_s", self.audit.head_every_s)?;
        if self
            .audit
            .witness_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("audit.witness_file must not be empty".into());
        }
        seconds_in_range("audit.prune_every_s", self.audit.prune_every_s)?;
        seconds_in_range("audit.disk_check_s", self.audit.disk_check_s)?;
        if self.audit.disk_low_mib > 1 << 30 || self.audit.disk_reserve_mib > 1 << 20 {
            return Err("audit.disk_low_mib or audit.disk_reserve_mib is implausibly large".into());
        }
        seconds_in_range("audit.aggregate_window_s", self.audit.aggregate_window_s)?;
        if self.audit.keep_records == 0 {
            return Err(
                "audit.keep_records must be at least 1 (the newest record ends the chain)".into(),
            );
        }
        if self
            .audit
            .export_dir
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("audit.export_dir must not be empty".into());
        }
        for r in &self.registry.roles {
            if r.is_empty()
                || r.len() > 64
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "registry.roles: `{r}` must be 1-64 letters, digits, '-' or '_'"
                ));
            }
        }
        self.mqtt.homeassistant.validate(&self.mqtt.topic_prefix)?;
        let mut names = HashSet::new();
        if self.mqtt.homeassistant.enabled && !self.mqtt.homeassistant.user.is_empty() {
            names.insert(self.mqtt.homeassistant.user.as_str());
        }
        for u in &self.mqtt.embedded.users {
            if u.name == "operator" || u.name == "warden" || !names.insert(u.name.as_str()) {
                return Err(format!(
                    "mqtt.embedded.users: user name `{}` is reserved or duplicated",
                    u.name
                ));
            }
        }
        for c in &self.controllers {
            crate::northbound::envelope::decode_pubkey(&c.public_key)
                .map_err(|e| format!("controllers `{}`: public_key: {e}", c.name))?;
        }
        for (name, section) in &self.adapters {
            crate::adapters::build(name, section)?;
        }
        self.validate_plugins()?;
        self.validate_behaviour()?;
        for d in &self.sim.devices {
            d.validate().map_err(|e| format!("sim.devices: {e}"))?;
            if let Some(p) = &d.profile
                && !self.profiles.contains_key(p)
            {
                return Err(format!(
                    "sim.devices `{}`: profile `{p}` is not defined under [profiles]",
                    d.address
                ));
            }
        }
        Ok(())
    }
}

/// `name` within `range`, or an error that names the key and the range. Every number `run` uses is
/// checked here, so `check-config` and `run` accept exactly the same files and no value can make
/// `run` panic or allocate without bound.
fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{name} = {v} is out of range ({}..={})",
            range.start(),
            range.end()
        ))
    }
}

impl Config {
    fn validate_bounds(&self) -> Result<(), String> {
        bounded(
            "gateway.channel_capacity",
            self.gateway.channel_capacity,
            1..=1 << 20,
        )?;
        bounded(
            "mqtt.queue_max_messages",
            self.mqtt.queue_max_messages,
            1..=100_000_000,
        )?;
        bounded("mqtt.max_inflight", self.mqtt.max_inflight, 1..=1000)?;
        bounded(
            "mqtt.embedded.max_connections",
            self.mqtt.embedded.max_connections,
            1..=10_000,
        )?;
        bounded(
            "mqtt.embedded.max_connections_per_source",
            self.mqtt.embedded.max_connections_per_source,
            1..=self.mqtt.embedded.max_connections,
        )?;
        bounded(
            "registry.max_pending",
            self.registry.max_pending,
            1..=1_000_000,
        )?;
        bounded(
            "registry.pending_per_source_per_min",
            self.registry.pending_per_source_per_min as usize,
            1..=100_000,
        )?;
        bounded(
            "registry.offline_after_s",
            self.registry.offline_after_s,
            1..=31_536_000,
        )?;
        bounded(
            "plugins.watch_interval_ms",
            self.plugins.watch_interval_ms,
            50..=3_600_000,
        )?;
        bounded(
            "plugins.max_module_mib",
            self.plugins.max_module_mib,
            1..=1024,
        )?;
        bounded(
            "plugins.record_max_mb",
            self.plugins.record_max_mb,
            1..=1_000_000,
        )?;
        if self.sim.devices.len() > 10_000 || self.sim.commands.len() > 1000 {
            return Err("sim: at most 10000 [[sim.devices]] and 1000 [[sim.commands]]".into());
        }
        for c in &self.sim.commands {
            bounded("sim.commands.every_s", c.every_s, 1..=86_400)?;
        }
        for (at, l) in std::iter::once(("plugins.limits".to_owned(), &self.plugins.limits)).chain(
            self.plugins
                .load
                .iter()
                .map(|p| (format!("plugins.load `{}`", p.name), &p.limits)),
        ) {
            if let Some(v) = l.fuel {
                bounded(&format!("{at}: fuel"), v, 1..=10_000_000_000)?;
            }
            if let Some(v) = l.deadline_ms {
                bounded(&format!("{at}: deadline_ms"), v, 1..=60_000)?;
            }
            if let Some(v) = l.kv_quota_kib {
                bounded(&format!("{at}: kv_quota_kib"), v, 0..=1 << 20)?;
            }
            if let Some(v) = l.host_calls {
                bounded(&format!("{at}: host_calls"), v, 1..=10_000_000)?;
            }
            if let Some(v) = l.max_failures {
                bounded(&format!("{at}: max_failures"), v, 1..=1_000_000)?;
            }
            if let Some(v) = l.failure_window_s {
                bounded(&format!("{at}: failure_window_s"), v, 1..=86_400)?;
            }
            if let Some(v) = l.cpu_ms_per_sec {
                bounded(&format!("{at}: cpu_ms_per_sec"), v, 1..=1000)?;
            }
            if let Some(v) = l.init_fuel {
                bounded(&format!("{at}: init_fuel"), v, 1..=100_000_000_000)?;
            }
            if let Some(v) = l.init_deadline_ms {
                bounded(&format!("{at}: init_deadline_ms"), v, 1..=600_000)?;
            }
            if let Some(v) = l.recycle_after {
                bounded(&format!("{at}: recycle_after"), v, 0..=1_000_000_000)?;
            }
        }
        Ok(())
    }

    fn validate_behaviour(&self) -> Result<(), String> {
        let b = &self.behaviour;
        let score = |name: &str, v: f32| -> Result<(), String> {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} must be a score between 0 and 1"))
            }
        };
        let check = |at: &str, r: &BehaviourRulesConfig| -> Result<(), String> {
            if let Some(v) = r.learning_s {
                bounded(&format!("{at}learning_s"), v, 0..=31_536_000)?;
            }
            if let Some(v) = r.learning_messages {
                bounded(&format!("{at}learning_messages"), v, 0..=100_000_000)?;
            }
            if let Some(v) = r.alert_at {
                score(&format!("{at}alert_at"), v)?;
            }
            if let Some(v) = r.quarantine_at {
                score(&format!("{at}quarantine_at"), v)?;
            }
            if let Some(v) = r.quarantine_after {
                bounded(
                    &format!("{at}quarantine_after"),
                    v,
                    1..=crate::behaviour::MAX_QUARANTINE_AFTER,
                )?;
            }
            if let Some(v) = r.window_s {
                bounded(&format!("{at}window_s"), v, 1..=86_400)?;
            }
            Ok(())
        };
        check(
            "behaviour.",
            &BehaviourRulesConfig {
                learning_s: Some(b.learning_s),
                learning_messages: Some(b.learning_messages),
                alert_at: Some(b.alert_at),
                quarantine_at: Some(b.quarantine_at),
                quarantine_after: Some(b.quarantine_after),
                window_s: Some(b.window_s),
                action: Some(b.action),
            },
        )?;
        for (z, r) in &b.zones {
            if !self.zones.contains_key(z) {
                return Err(format!(
                    "behaviour.zones.{z}: zone `{z}` is not defined under [zones]"
                ));
            }
            check(&format!("behaviour.zones.{z}."), r)?;
        }
        for (p, r) in &b.profiles {
            if !self.profiles.contains_key(p) {
                return Err(format!(
                    "behaviour.profiles.{p}: profile `{p}` is not defined under [profiles]"
                ));
            }
            check(&format!("behaviour.profiles.{p}."), r)?;
        }
        if !(b.guard.share.is_finite() && b.guard.share > 0.0 && b.guard.share <= 1.0) {
            return Err(format!(
                "behaviour.guard.share = {} must be a share of a zone's devices, above 0 and at most 1",
                b.guard.share
            ));
        }
        bounded("behaviour.guard.window_s", b.guard.window_s, 1..=86_400)?;
        Ok(())
    }

    fn validate_plugins(&self) -> Result<(), String> {
        let p = &self.plugins;
        let mut names = HashSet::new();
        for l in &p.load {
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "plugins.load: name `{}` must be non-empty letters, digits, '-' or '_'",
                    l.name
                ));
            }
            if !names.insert(l.name.as_str()) {
                return Err(format!("plugins.load: plugin `{}` is listed twice", l.name));
            }
            if let Some(m) = &l.module
                && (m.is_absolute() || m.components().any(|c| c.as_os_str() == ".."))
            {
                return Err(format!(
                    "plugins.load `{}`: module must be a path inside plugins.dir",
                    l.name
                ));
            }
            check_limits(&format!("plugins.load `{}`", l.name), &l.limits)?;
            warden_plugin_host::WasiGrants::parse(&l.wasi)
                .map_err(|e| format!("plugins.load `{}`: wasi: {e}", l.name))?;
        }
        check_limits("plugins.limits", &p.limits)?;
        for (i, b) in p.bind.iter().enumerate() {
            if !names.contains(b.plugin.as_str()) {
                return Err(format!(
                    "plugins.bind[{i}]: plugin `{}` is not listed under [[plugins.load]]",
                    b.plugin
                ));
            }
            if let Some(d) = &b.direction
                && !matches!(d.as_str(), "uplink" | "downlink" | "both")
            {
                return Err(format!(
                    "plugins.bind[{i}].direction: `{d}` is not uplink, downlink or both"
                ));
            }
        }
        if p.require_signature && !p.load.is_empty() && p.trusted_keys.is_empty() {
            return Err(
                "plugins.trusted_keys is empty but plugins.require_signature is on: no plugin could load"
                    .into(),
            );
        }
        if p.watch_interval_ms < 100 {
            return Err("plugins.watch_interval_ms must be at least 100".into());
        }
        Ok(())
    }
}

fn check_limits(at: &str, l: &PluginLimitsConfig) -> Result<(), String> {
    let zero = |v: Option<u64>| v == Some(0);
    if zero(l.fuel) || zero(l.deadline_ms) || zero(l.memory_mib) || l.max_failures == Some(0) {
        return Err(format!(
            "{at}: fuel, deadline_ms, memory_mib and max_failures must be at least 1"
        ));
    }
    if l.memory_mib.is_some_and(|m| m > 4096) {
        return Err(format!("{at}: memory_mib is at most 4096 (wasm32)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_secure_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.mqtt.broker, "embedded");
        assert_eq!(c.mqtt.embedded.listen.ip().to_string(), "127.0.0.1");
        assert_eq!(c.api.listen.ip().to_string(), "127.0.0.1");
        assert!(c.mqtt.sign);
        assert!(
            c.profiles.is_empty(),
            "no device may send anything until profiled"
        );
    }

    #[test]
    fn the_dashboard_lan_listener_is_off_by_default_and_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.api.lan_listen, None);
        let c = parse("[api]\nlan_listen = \"0.0.0.0:7443\"\n").unwrap();
        assert_eq!(
            c.api.lan_listen,
            Some(SocketAddr::from(([0, 0, 0, 0], 7443)))
        );
        let e = parse("[api]\nlan_listen = \"0.0.0.0:7443\"\ntls_cert = \"a.crt\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("api.tls_cert and api.tls_key go together"),
            "{e}"
        );
        let e = parse("[api]\nlan_listen = \"127.0.0.1:7878\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs its own address or port"), "{e}");
        // api.listen itself stays loopback-only
        let e = parse("[api]\nlisten = \"0.0.0.0:7878\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.lan_listen"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[gateway]\nidd = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("idd"), "{e}");
        let e = parse("[profiles.t]\npoints = [\"a\"]\nmin_assurence = \"none\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_assurence"), "{e}");
        let e = parse("[nonsense]\n").unwrap_err().to_string();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn plugin_wasi_grants_and_breaker_limits_are_checked() {
        let base = "[plugins]\nrequire_signature = false\n[[plugins.load]]\nname = \"p\"\n";
        let e = parse(&format!("{base}wasi = [\"net\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugins.load `p`: wasi: unknown WASI package `net`"),
            "{e}"
        );
        let e = parse(&format!("{base}limits = {{ cpu_ms_per_sec = 2000 }}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpu_ms_per_sec"), "{e}");
        let c = parse(&format!(
            "{base}wasi = [\"io\", \"cli\"]\nreal_random = true\nlimits = {{ failure_window_s = 10, init_fuel = 5 }}\n"
        ))
        .unwrap();
        let spec = crate::plugins::specs(&c).remove(0);
        assert_eq!(spec.limits.wasi.names(), ["cli", "io"]);
        assert!(spec.limits.real_random);
        assert_eq!(spec.limits.failure_window_ms, 10_000);
        assert_eq!(spec.limits.init_fuel, 5);
        assert_eq!(spec.limits.cpu_ms_per_sec, 500);
    }

    #[test]
    fn unknown_adapters_are_named() {
        let e = parse("[adapters.carrier-pigeon]\nx = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("carrier-pigeon"), "{e}");
    }

    #[test]
    fn cross_field_errors_name_the_key() {
        let e = parse("[models]\n\"Acme/X\" = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("models"), "{e}");
        let e = parse("[profiles.t]\nmin_firmware = \"latest\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("profiles.t") && e.contains("min_firmware `latest`"),
            "{e}"
        );
        let e = parse("[profiles.t]\nfirmware_action = \"ignore\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("firmware_action") || e.contains("ignore"), "{e}");
        assert!(
            parse("[profiles.t]\nmin_firmware = \"1.2\"\nvulnerable_firmware = [\"1.3.1\"]\nfirmware_action = \"quarantine\"\n")
                .is_ok()
        );
        let e = parse("[mqtt]\nbroker = \"mqtts://127.0.0.1:8883\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.tls.ca_file"), "{e}");
        let e = parse("[api]\nlisten = \"0.0.0.0:7878\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.listen") && e.contains("loopback"), "{e}");
        let e = parse("[api]\nmax_connections_per_source = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.max_connections_per_source"), "{e}");
        assert!(parse("[api]\nlisten = \"[::1]:7878\"\n").is_ok());
        let e = parse("[profiles.t]\nmin_assurance = \"super\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("super"), "{e}");
    }

    #[test]
    fn home_assistant_settings_are_checked() {
        let c = parse("").unwrap();
        assert!(c.mqtt.homeassistant.enabled, "on by default");
        assert_eq!(c.mqtt.homeassistant.discovery_prefix, "homeassistant");
        for (text, key) in [
            ("discovery_prefix = \"ha/+\"", "discovery_prefix"),
            ("discovery_prefix = \"\"", "discovery_prefix"),
            ("discovery_prefix = \"/ha\"", "discovery_prefix"),
            ("discovery_prefix = \"warden\"", "first level"),
            ("user = \"operator\"", "reserved"),
            ("user = \"ha/x\"", "mqtt.homeassistant.user"),
            ("colour = \"blue\"", "colour"),
        ] {
            let e = parse(&format!("[mqtt.homeassistant]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        // the HA user's name cannot be taken again by an extra broker user
        let e =
            parse("[[mqtt.embedded.users]]\nname = \"homeassistant\"\npassword_file = \"/x\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("reserved or duplicated"), "{e}");
        // unless HA discovery is off
        assert!(parse("[mqtt.homeassistant]\nenabled = false\n[[mqtt.embedded.users]]\nname = \"homeassistant\"\npassword_file = \"/x\"\n").is_ok());
        assert!(
            parse("[mqtt.homeassistant]\ndiscovery_prefix = \"site/ha\"\nuser = \"\"\n").is_ok()
        );
    }

    #[test]
    fn plugin_config_errors_name_the_key() {
        let base = "[plugins]\ntrusted_keys = [\"k\"]\n[[plugins.load]]\nname = \"lp\"\n";
        let ok = parse(&format!(
            "{base}config = {{ a = 1 }}\nlimits = {{ fuel = 10 }}\n[[plugins.bind]]\nplugin = \"lp\"\nzones = [\"default\"]\ndirection = \"uplink\"\n"
        ))
        .unwrap();
        assert_eq!(ok.plugins.load[0].limits.fuel, Some(10));
        let cases = [
            (
                format!("{base}[[plugins.bind]]\nplugin = \"nope\"\n"),
                "plugins.bind[0]",
            ),
            (
                format!("{base}[[plugins.bind]]\nplugin = \"lp\"\ndirection = \"sideways\"\n"),
                "sideways",
            ),
            (
                format!("{base}module = \"../x.wasm\"\n"),
                "inside plugins.dir",
            ),
            (
                format!("{base}limits = {{ fuel = 0 }}\n"),
                "fuel = 0 is out of range",
            ),
            (format!("{base}limits = {{ fule = 1 }}\n"), "fule"),
            (
                format!("{base}[[plugins.load]]\nname = \"lp\"\n"),
                "listed twice",
            ),
            (
                "[[plugins.load]]\nname = \"lp\"\n".to_owned(),
                "trusted_keys",
            ),
            (
                "[[plugins.load]]\nname = \"a b\"\n".to_owned(),
                "name `a b`",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}\n→ {e}");
        }
    }

    proptest::proptest! {
        /// A config file is operator input: any text gives a config or an error, never a panic.
        #[test]
        fn arbitrary_config_text_never_panics(t in ".{0,400}") {
            let _ = parse(&t);
        }

        /// Any number in a known key is accepted or refused by the one validation path, never a
        /// panic (the values `run` would choke on are refused here).
        #[test]
        fn arbitrary_numbers_are_bounded_not_panics(v in proptest::prelude::any::<i64>(), k in 0usize..6) {
            let key = ["gateway]\nchannel_capacity", "registry]\nmax_pending", "registry]\noffline_after_s",
                "mqtt]\nqueue_max_messages", "mqtt]\nmax_inflight", "audit]\nhead_every_s"][k];
            let _ = parse(&format!("[{key} = {v}\n"));
        }
    }
}
