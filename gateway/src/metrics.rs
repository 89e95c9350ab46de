//! Prometheus metrics, served on the API's `/metrics` (token required).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MsgLabels {
    pub protocol: String,
    pub direction: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub protocol: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginOutcomeLabels {
    pub plugin: String,
    /// allow, deny, quarantine, or a failure cause (out-of-fuel, trap, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    pub link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `api` or `mqtt`.
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `listener-cap`, `source-cap`.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnomalyLabels {
    pub zone: String,
    /// The top feature's kind (`rate`, `value`, `new-command`…).
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: String,
}

/// A device and its firmware posture (`ok`, `below-minimum`, `vulnerable`, `unparsable`, `unknown`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PostureLabels {
    pub device: String,
    pub posture: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    pub zone: String,
}

pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct Metrics {
    pub registry: Registry,
    pub messages: Family<MsgLabels, Counter>,
    pub rejected: Family<CauseLabels, Counter>,
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub queue_depth: Gauge,
    pub queue_dropped: Counter,
    pub published: Counter,
    pub broker_connected: Gauge,
    pub audit_records: Gauge,
    pub devices: Gauge,
    pub pending_devices: Gauge,
    pub link_up: Family<LinkLabels, Gauge>,
    pub broker_auth_failures: Counter,
    pub broker_acl_denials: Counter,
    pub plugin_decisions: Family<PluginOutcomeLabels, Counter>,
    pub plugin_active: Family<PluginLabels, Gauge>,
    pub plugin_loads: Family<PluginOutcomeLabels, Counter>,
    pub login_failures: Family<ListenerLabels, Counter>,
    pub brute_force_alarms: Family<ListenerLabels, Counter>,
    pub api_connections: Gauge,
    pub api_connections_refused: Family<RefusalLabels, Counter>,
    pub api_connections_timed_out: Counter,
    pub anomaly_alerts: Family<AnomalyLabels, Counter>,
    pub anomaly_quarantines: Family<AnomalyLabels, Counter>,
    /// The last alert-level score per device (only devices that alerted appear).
    pub anomaly_score: Family<DeviceLabels, FloatGauge>,
    pub quarantine_guard_trips: Family<ZoneLabels, Counter>,
    pub quarantine_guard_held: Counter,
    pub baseline_devices: Gauge,
    pub baseline_bytes: Gauge,
    pub link_notices: Family<NoticeLabels, Counter>,
    pub queue_drops: Family<QueueDropLabels, Counter>,
    pub audit_pruned: Counter,
    pub disk_free_bytes: Gauge,
    pub disk_alarm: Gauge,
    /// 1 for a device's current posture, for devices whose profile has firmware rules.
    pub device_posture: Family<PostureLabels, Gauge>,
    /// Commands denied by posture.
    pub posture_denials: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueDropLabels {
    pub queue: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    pub link: String,
    pub kind: String,
}

fn stage_histogram() -> Histogram {
    // 100 ns … ~3 ms
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-7, 2.0, 15,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let messages = Family::<MsgLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages through the pipeline by protocol, direction and verdict",
            messages.clone(),
        );
        let rejected = Family::<CauseLabels, Counter>::default();
        registry.register(
            "adapter_rejections",
            "Frames an adapter refused before they became messages (bad MIC, replay, malformed)",
            rejected.clone(),
        );
        let stage_seconds =
            Family::<StageLabels, Histogram>::new_with_constructor(stage_histogram as fn() -> _);
        registry.register(
            "stage_duration_seconds",
            "Per-stage latency (sampled: every 64th message)",
            stage_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "northbound_queue_depth",
            "Messages waiting in the store-and-forward queue",
            queue_depth.clone(),
        );
        let queue_dropped = Counter::default();
        registry.register(
            "northbound_queue_dropped",
            "Oldest queued messages dropped at the queue bound",
            queue_dropped.clone(),
        );
        let published = Counter::default();
        registry.register(
            "northbound_published",
            "Messages acknowledged by the broker",
            published.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "northbound_connected",
            "1 while the gateway's MQTT client is connected",
            broker_connected.clone(),
        );
        let audit_records = Gauge::default();
        registry.register(
            "audit_records",
            "Records in the audit log",
            audit_records.clone(),
        );
        let devices = Gauge::default();
        registry.register("devices", "Devices in the registry", devices.clone());
        let pending_devices = Gauge::default();
        registry.register(
            "pending_devices",
            "Devices waiting for approval",
            pending_devices.clone(),
        );
        let link_up = Family::<LinkLabels, Gauge>::default();
        registry.register(
            "link_up",
            "Adapter link health (1 up, 0.5 degraded as 0, 0 down)",
            link_up.clone(),
        );
        let broker_auth_failures = Counter::default();
        registry.register(
            "broker_auth_failures",
            "Embedded broker connections refused for bad or missing credentials",
            broker_auth_failures.clone(),
        );
        let broker_acl_denials = Counter::default();
        registry.register(
            "broker_acl_denials",
            "Embedded broker publishes or subscriptions outside a client's ACL",
            broker_acl_denials.clone(),
        );
        let plugin_decisions = Family::<PluginOutcomeLabels, Counter>::default();
        registry.register(
            "plugin_decisions",
            "Plugin calls by plugin and outcome (allow, deny, quarantine, or the failure cause)",
            plugin_decisions.clone(),
        );
        let plugin_active = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "plugin_active",
            "1 while a plugin is loaded and enabled; 0 when it failed to load or was disabled (its bindings deny)",
            plugin_active.clone(),
        );
        let plugin_loads = Family::<PluginOutcomeLabels, Counter>::default();
        registry.register(
            "plugin_loads",
            "Plugin loads and hot reloads by outcome (ok, or why it was refused)",
            plugin_loads.clone(),
        );
        let login_failures = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Failed logins by listener (api: tokens and passwords; mqtt: embedded broker credentials)",
            login_failures.clone(),
        );
        let brute_force_alarms = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "brute_force_alarms",
            "Sources that passed the brute-force threshold of failed logins in one window",
            brute_force_alarms.clone(),
        );
        let api_connections = Gauge::default();
        registry.register(
            "api_connections",
            "Open connections to the management API",
            api_connections.clone(),
        );
        let api_connections_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "api_connections_refused",
            "Management API connections closed at accept by the listener or per-source cap",
            api_connections_refused.clone(),
        );
        let link_notices = Family::<NoticeLabels, Counter>::default();
        registry.register(
            "link_notices",
            "What adapters report about their links besides state: datagrams the kernel dropped at a socket (kind udp-receive-buffer), work a bounded queue dropped, moved paths",
            link_notices.clone(),
        );
        let api_connections_timed_out = Counter::default();
        registry.register(
            "api_connections_timed_out",
            "Management API connections cut for a slow header or an idle timeout",
            api_connections_timed_out.clone(),
        );
        let anomaly_alerts = Family::<AnomalyLabels, Counter>::default();
        registry.register(
            "anomaly_alerts",
            "Messages whose anomaly score reached the alert threshold, by zone and top feature",
            anomaly_alerts.clone(),
        );
        let anomaly_quarantines = Family::<AnomalyLabels, Counter>::default();
        registry.register(
            "anomaly_quarantines",
            "Devices the behaviour rules quarantined, by zone and top feature",
            anomaly_quarantines.clone(),
        );
        let anomaly_score = Family::<DeviceLabels, FloatGauge>::default();
        registry.register(
            "anomaly_score",
            "The last alert-level anomaly score of a device",
            anomaly_score.clone(),
        );
        let quarantine_guard_trips = Family::<ZoneLabels, Counter>::default();
        registry.register(
            "quarantine_guard_trips",
            "Times the mass-quarantine guard stopped auto-quarantining in a zone",
            quarantine_guard_trips.clone(),
        );
        let device_posture = Family::<PostureLabels, Gauge>::default();
        registry.register(
            "device_posture",
            "1 for a device's current firmware posture (devices whose profile declares firmware rules)",
            device_posture.clone(),
        );
        let posture_denials = Counter::default();
        registry.register(
            "posture_denials",
            "Commands denied because the device's firmware is restricted by its profile",
            posture_denials.clone(),
        );
        let quarantine_guard_held = Counter::default();
        registry.register(
            "quarantine_guard_held",
            "Automatic quarantines the tripped guard refused",
            quarantine_guard_held.clone(),
        );
        let baseline_devices = Gauge::default();
        registry.register(
            "baseline_devices",
            "Devices with a behaviour baseline",
            baseline_devices.clone(),
        );
        let baseline_bytes = Gauge::default();
        registry.register(
            "baseline_bytes",
            "Bytes of behaviour baseline state in memory",
            baseline_bytes.clone(),
        );
        let queue_drops = Family::<QueueDropLabels, Counter>::default();
        registry.register(
            "queue_drops",
            "Items a bounded queue of the gateway dropped, by queue and reason (northbound: its bound or a degraded disk; audit: a degraded disk; commands: the external broker's command queue full; downlink: an adapter's command queue full)",
            queue_drops.clone(),
        );
        let audit_pruned = Counter::default();
        registry.register(
            "audit_pruned_records",
            "Audit records pruned by retention (each prune leaves a signed checkpoint)",
            audit_pruned.clone(),
        );
        let disk_free_bytes = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Bytes free for the gateway on the data dir's filesystem",
            disk_free_bytes.clone(),
        );
        let disk_alarm = Gauge::default();
        registry.register(
            "disk_alarm",
            "1 while the data dir's free space is under audit.disk_low_mib (degraded mode)",
            disk_alarm.clone(),
        );
        Self {
            registry,
            messages,
            rejected,
            stage_seconds,
            queue_depth,
            queue_dropped,
            published,
            broker_connected,
            audit_records,
            devices,
            pending_devices,
            link_up,
            broker_auth_failures,
            broker_acl_denials,
            plugin_decisions,
            plugin_active,
            plugin_loads,
            login_failures,
            brute_force_alarms,
            api_connections,
            api_connections_refused,
            api_connections_timed_out,
            anomaly_alerts,
            anomaly_quarantines,
            anomaly_score,
            quarantine_guard_trips,
            quarantine_guard_held,
            baseline_devices,
            baseline_bytes,
            link_notices,
            queue_drops,
            audit_pruned,
            disk_free_bytes,
            disk_alarm,
            device_posture,
            posture_denials,
        }
    }

    /// Counts `n` items a bounded queue dropped.
    pub fn queue_drop(&self, queue: &str, reason: &str, n: u64) {
        self.queue_drops
            .get_or_create(&QueueDropLabels {
                queue: queue.to_owned(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}
