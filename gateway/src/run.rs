//! `warden run`: wires the stages, stores, broker, adapters and API together, and shuts them down in
//! order so nothing held in memory is lost.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngCore;
use tokio::sync::{mpsc, watch};
use warden_core::{Adapter, AdapterContext, Command, DeviceId, Point, Value};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::broker::{Broker, BrokerConfig, BrokerEvent, BrokerUser, InboundPublish};
use crate::northbound::mqtt::{self, BrokerUrl, ClientSettings, ExternalCommand};
use crate::northbound::outbox::{self, Outbox};
use crate::northbound::{Northbound, envelope};
use crate::pipeline::authenticate::{CommandSource, Controller};
use crate::pipeline::decide::Policy;
use crate::pipeline::{CommandRequest, Control, Pipeline};
use crate::registry::{ImportDevice, Registry};
use crate::secrets::{MasterKey, write_private_file};
use crate::store::{DB_FILE, Store};

pub const TOKEN_FILE: &str = "api.token";
pub const API_ADDR_FILE: &str = "api.addr";
pub const OPERATOR_PASSWORD_FILE: &str = "mqtt-operator.password";
pub const MASTER_KEY_FILE: &str = "master.key";
const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");

pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub demo: bool,
    pub broker: Option<String>,
    pub log_json: bool,
}

/// Loads the config the way `run` would, for reloads too.
pub fn load_config(
    path: Option<&Path>,
    demo: bool,
    broker: Option<&str>,
) -> anyhow::Result<Config> {
    let mut cfg = match path {
        Some(p) => Config::load(p)?,
        None if demo => Config::parse(DEMO_CONFIG, Path::new("(built-in demo config)"))?,
        None => Config::default(),
    };
    if demo && path.is_some() {
        let d = Config::parse(DEMO_CONFIG, Path::new("(built-in demo config)"))?;
        for (k, v) in d.profiles {
            cfg.profiles.entry(k).or_insert(v);
        }
        for (k, v) in d.zones {
            let z = cfg.zones.entry(k).or_default();
            for c in v.commanders {
                if !z.commanders.contains(&c) {
                    z.commanders.push(c);
                }
            }
        }
        cfg.sim.devices.extend(d.sim.devices);
        cfg.sim.commands.extend(d.sim.commands);
        if cfg.sim.control.is_none() {
            cfg.sim.control = d.sim.control;
        }
    }
    if let Some(b) = broker {
        cfg.mqtt.broker = b.to_owned();
    }
    cfg.validate().map_err(|m| anyhow::anyhow!("config: {m}"))?;
    Ok(cfg)
}

fn controllers(cfg: &Config) -> Vec<Controller> {
    cfg.controllers
        .iter()
        .filter_map(|c| {
            envelope::decode_pubkey(&c.public_key)
                .ok()
                .map(|key| Controller {
                    name: c.name.clone(),
                    key,
                })
        })
        .collect()
}

fn random_secret() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Reads a private file, creating it with fresh random content if absent.
fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = random_secret();
            write_private_file(path, s.as_bytes())
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(s)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let cfg = load_config(args.config.as_deref(), args.demo, args.broker.as_deref())?;
    init_logging(args.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(cfg, args))
}

/// Everything the API handlers need.
pub struct Shared {
    pub config_path: Option<PathBuf>,
    pub demo: bool,
    pub broker_override: Option<String>,
    pub gateway_id: String,
    pub default_zone: String,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    pub control: mpsc::Sender<Control>,
    pub outbox: Arc<Outbox>,
    pub token: String,
    pub started_ms: u64,
    /// Counters of the embedded broker, when it runs.
    pub broker_stats: Option<crate::northbound::broker::StatsReader>,
}

async fn run(cfg: Config, args: RunArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let _ = std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700));
    let fresh = !data_dir.join(DB_FILE).exists();
    let key_path = cfg
        .secrets
        .key_file
        .clone()
        .unwrap_or_else(|| data_dir.join(MASTER_KEY_FILE));
    let master = MasterKey::load(&key_path, fresh)?;
    let store = Store::open(&data_dir, &master)?;
    let plugin_cache_key = master.plugin_cache_key();
    drop(master);
    let token = read_or_create_secret(&data_dir.join(TOKEN_FILE))?;

    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::load(store.clone(), cfg.registry.max_pending)?);
    let (audit, _audit_thread) = AuditSink::start(store.clone(), 8192)?;
    let outbox = Outbox::open(&data_dir, cfg.mqtt.queue_max_messages, metrics.clone())?;
    let (outbox_sink, _outbox_thread) = outbox::start_writer(outbox.clone(), audit.clone(), 8192)?;
    let northbound = Arc::new(Northbound::new(
        &cfg.mqtt.topic_prefix,
        &cfg.gateway.id,
        cfg.mqtt.sign.then(|| store.signing_key().clone()),
        Some(store.clone()),
        Box::new(outbox_sink.clone()),
    ));

    let config_text = args
        .config
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    store.audit(&[
        AuditEntry::new(Category::System, "gateway-start", "gateway", "started").detail(
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "config": args.config.as_ref().map(|p| p.display().to_string()),
                "config_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&config_text)),
                "demo": args.demo,
                "broker": cfg.mqtt.broker,
            }),
        ),
    ])?;

    provision_sim_devices(&cfg, &registry)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (control_tx, control_rx) = mpsc::channel::<Control>(1024);
    let (events_tx, events_rx) = mpsc::channel(cfg.gateway.channel_capacity);

    // Northbound: the embedded broker, or an external one over mutual TLS.
    let mut broker_handle = None;
    let settings = if cfg.mqtt.broker == "embedded" {
        let (cmd_tx, cmd_rx) = mpsc::channel::<InboundPublish>(256);
        let (bev_tx, bev_rx) = mpsc::channel::<BrokerEvent>(1024);
        let internal_pw = random_secret();
        let mut users = vec![
            BrokerUser {
                name: "warden".into(),
                password: internal_pw.clone().into_bytes(),
                publish: vec![format!("{}/#", cfg.mqtt.topic_prefix)],
                subscribe: vec![],
            },
            BrokerUser {
                name: "operator".into(),
                password: read_or_create_secret(&data_dir.join(OPERATOR_PASSWORD_FILE))?
                    .into_bytes(),
                publish: vec![format!("{}/devices/+/cmd", cfg.mqtt.topic_prefix)],
                subscribe: vec![format!("{}/#", cfg.mqtt.topic_prefix)],
            },
        ];
        for u in &cfg.mqtt.embedded.users {
            let pw = std::fs::read_to_string(&u.password_file).with_context(|| {
                format!(
                    "mqtt.embedded.users `{}`: cannot read password_file {}",
                    u.name,
                    u.password_file.display()
                )
            })?;
            users.push(BrokerUser {
                name: u.name.clone(),
                password: pw.trim().as_bytes().to_vec(),
                publish: u.publish.clone(),
                subscribe: u.subscribe.clone(),
            });
        }
        let h = Broker::start(
            BrokerConfig {
                listen: cfg.mqtt.embedded.listen,
                users,
                max_packet_size: 256 * 1024,
                max_connections: cfg.mqtt.embedded.max_connections,
                outbound_queue: 1024,
            },
            vec![(format!("{}/devices/+/cmd", cfg.mqtt.topic_prefix), cmd_tx)],
            bev_tx,
        )
        .await
        .with_context(|| {
            format!(
                "cannot start the embedded MQTT broker on {}",
                cfg.mqtt.embedded.listen
            )
        })?;
        tracing::info!(addr = %h.local_addr(), "embedded MQTT broker listening (operator password in {})",
            data_dir.join(OPERATOR_PASSWORD_FILE).display());
        let port = h.local_addr().port();
        broker_handle = Some(h);
        tokio::spawn(broker_commands(
            cmd_rx,
            control_tx.clone(),
            cfg.mqtt.topic_prefix.clone(),
            audit.clone(),
            shutdown_rx.clone(),
        ));
        tokio::spawn(broker_events(bev_rx, audit.clone(), metrics.clone()));
        ClientSettings {
            host: "127.0.0.1".into(),
            port,
            client_id: cfg.mqtt.client_id.clone(),
            credentials: Some(("warden".into(), internal_pw)),
            tls: None,
            prefix: cfg.mqtt.topic_prefix.clone(),
            receive_commands: false,
            max_inflight: cfg.mqtt.max_inflight,
        }
    } else {
        let url = BrokerUrl::parse(&cfg.mqtt.broker).map_err(anyhow::Error::msg)?;
        let (ca, cert, key) = match (
            &cfg.mqtt.tls.ca_file,
            &cfg.mqtt.tls.cert_file,
            &cfg.mqtt.tls.key_file,
        ) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => bail!(
                "mqtt.tls.ca_file, cert_file and key_file are required with an external broker"
            ),
        };
        let tls = mqtt::tls_config(ca, cert, key).map_err(anyhow::Error::msg)?;
        ClientSettings {
            host: url.host,
            port: url.port,
            client_id: cfg.mqtt.client_id.clone(),
            credentials: None,
            tls: Some(Arc::new(tls)),
            prefix: cfg.mqtt.topic_prefix.clone(),
            receive_commands: true,
            max_inflight: cfg.mqtt.max_inflight,
        }
    };
    let (ext_tx, ext_rx) = mpsc::channel::<ExternalCommand>(256);
    if settings.receive_commands {
        tokio::spawn(external_commands(
            ext_rx,
            control_tx.clone(),
            cfg.mqtt.topic_prefix.clone(),
            audit.clone(),
            shutdown_rx.clone(),
        ));
    }
    let publisher = tokio::spawn(mqtt::run_publisher(
        settings,
        outbox.clone(),
        metrics.clone(),
        Some(ext_tx),
        shutdown_rx.clone(),
    ));

    // Adapters: each owns its transport and gets a bounded downlink queue.
    let mut pipeline = Pipeline::new(
        registry.clone(),
        Policy::from_config(&cfg),
        controllers(&cfg),
        audit.clone(),
        cfg.audit.aggregate_telemetry,
        cfg.registry.default_zone.clone(),
        metrics.clone(),
        northbound.clone(),
    );
    pipeline.offline_after_ms = cfg.registry.offline_after_s.saturating_mul(1000);
    let plugin_watcher = start_plugins(
        &cfg,
        &data_dir,
        plugin_cache_key,
        &audit,
        &metrics,
        &control_tx,
        &mut pipeline,
    )?;
    let mut adapters: Vec<Box<dyn Adapter>> = Vec::new();
    for (name, section) in &cfg.adapters {
        adapters.push(crate::adapters::build(name, section).map_err(anyhow::Error::msg)?);
    }
    if !cfg.sim.devices.is_empty() || cfg.sim.control.is_some() {
        adapters.push(Box::new(warden_hardware::sim::SimAdapter::new(
            cfg.sim.devices.clone(),
            cfg.sim.control,
        )));
    }
    let mut adapter_tasks = Vec::new();
    for a in adapters {
        let protocol = a.protocol();
        let (dl_tx, dl_rx) = mpsc::channel(64);
        pipeline.routes.insert(protocol.to_owned(), dl_tx);
        let ctx = AdapterContext {
            events: events_tx.clone(),
            downlinks: dl_rx,
            credentials: registry.lookup_for(protocol),
            state: Arc::new(crate::store::AdapterState::new(store.clone(), protocol)),
            shutdown: shutdown_rx.clone(),
        };
        let audit = audit.clone();
        adapter_tasks.push(tokio::spawn(async move {
            if let Err(e) = a.run(ctx).await {
                tracing::error!(adapter = protocol, error = %e, "adapter stopped");
                audit.record(
                    AuditEntry::new(
                        Category::System,
                        "adapter-stopped",
                        "gateway",
                        e.to_string(),
                    )
                    .detail(serde_json::json!({ "adapter": protocol })),
                );
            }
        }));
    }
    drop(events_tx);

    let pipeline_thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(pipeline.run(events_rx, control_rx)),
                Err(e) => tracing::error!(error = %e, "cannot start the pipeline runtime"),
            }
        })?;

    for c in &cfg.sim.commands {
        tokio::spawn(periodic_command(
            c.clone(),
            control_tx.clone(),
            shutdown_rx.clone(),
        ));
    }

    let shared = Arc::new(Shared {
        config_path: args.config.clone(),
        demo: args.demo,
        broker_override: args.broker.clone(),
        gateway_id: cfg.gateway.id.clone(),
        default_zone: cfg.registry.default_zone.clone(),
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        audit: audit.clone(),
        control: control_tx.clone(),
        outbox: outbox.clone(),
        token,
        started_ms: warden_core::now_ms(),
        broker_stats: broker_handle.as_ref().map(|h| h.stats_reader()),
    });
    drop(control_tx);
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot bind the management API on {}", cfg.api.listen))?;
    let api_addr = listener.local_addr()?;
    std::fs::write(data_dir.join(API_ADDR_FILE), api_addr.to_string())?;
    tracing::info!(%api_addr, data_dir = %data_dir.display(), "warden running");
    let api = tokio::spawn(crate::api::serve(
        listener,
        shared.clone(),
        shutdown_rx.clone(),
    ));

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    if let Some(w) = plugin_watcher {
        w.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || w.handle.join()).await;
    }
    for t in adapter_tasks {
        let _ = t.await;
    }
    let _ = api.await;
    drop(shared);
    // the pipeline ends once every adapter and command source has let go of its channels
    let _ = tokio::task::spawn_blocking(move || pipeline_thread.join()).await;
    outbox_sink.flush();
    let _ = publisher.await;
    if let Some(h) = broker_handle {
        h.shutdown().await;
    }
    audit.record(
        AuditEntry::new(Category::System, "gateway-stop", "gateway", "stopped")
            .detail(serde_json::json!({ "queued": outbox.depth() })),
    );
    audit.flush();
    let _ = registry.flush_last_seen();
    tracing::info!(queued = outbox.depth(), "stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Provisions `[[sim.devices]]` entries marked `provision = true` that the registry does not hold.
fn provision_sim_devices(cfg: &Config, registry: &Registry) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for d in cfg.sim.devices.iter().filter(|d| d.provision) {
        for id in d.ids().into_iter().flatten() {
            if registry.get(&id).is_none() {
                todo.push(ImportDevice {
                    id: id.to_string(),
                    profile: d.profile.clone(),
                    zone: d.zone.clone(),
                    manufacturer: Some("Warden Sim".into()),
                    ..ImportDevice::default()
                });
            }
        }
    }
    if !todo.is_empty() {
        registry.import(&todo, "config:sim", &cfg.registry.default_zone)?;
    }
    Ok(())
}

/// Command JSON: `{"id": "...", "command": "name", "args": {"name": value, ...}}`; `id` optional.
pub fn parse_command(payload: &[u8]) -> Result<(Option<String>, Command), String> {
    let body = envelope::split_signed(payload)
        .map(|(b, _)| b)
        .unwrap_or_else(|| payload.to_vec());
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("command is not JSON: {e}"))?;
    let name = v
        .get("command")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .ok_or("command needs a `command` name")?;
    let mut args = Vec::new();
    if let Some(a) = v.get("args") {
        let obj = a.as_object().ok_or("`args` must be an object")?;
        for (k, val) in obj {
            let value: Value =
                serde_json::from_value(val.clone()).map_err(|e| format!("argument `{k}`: {e}"))?;
            args.push(Point::new(k.clone(), value));
        }
    }
    let id = v.get("id").and_then(|i| i.as_str()).map(str::to_owned);
    Ok((
        id,
        Command {
            name: name.to_owned(),
            args,
        },
    ))
}

pub fn new_command_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("c-{}", hex::encode(b))
}

fn device_from_topic(prefix: &str, topic: &str) -> Option<DeviceId> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix("/devices/")?;
    rest.strip_suffix("/cmd")?.parse().ok()
}

async fn submit(
    control: &mpsc::Sender<Control>,
    audit: &AuditSink,
    prefix: &str,
    topic: &str,
    payload: &[u8],
    source: CommandSource,
    actor: &str,
) {
    let Some(device) = device_from_topic(prefix, topic) else {
        audit.record(
            AuditEntry::new(
                Category::Security,
                "command",
                actor,
                "command on a malformed topic",
            )
            .decision("builtin:identify", "deny")
            .detail(serde_json::json!({ "topic": topic })),
        );
        return;
    };
    match parse_command(payload) {
        Ok((id, command)) => {
            let req = CommandRequest {
                command_id: id.unwrap_or_else(new_command_id),
                device,
                command,
                source,
                reply: None,
            };
            let _ = control.send(Control::Command(req)).await;
        }
        Err(e) => audit.record(
            AuditEntry::new(Category::Decision, "command", actor, e)
                .device(&device)
                .decision("builtin:authenticate", "deny"),
        ),
    }
}

/// Receives the next item unless shutdown comes first (command sources must let go of the pipeline's
/// control channel at shutdown, or the pipeline would wait for them forever).
async fn recv_or_stop<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &mut watch::Receiver<bool>,
) -> Option<T> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        v = rx.recv() => v,
        _ = stop.wait_for(|v| *v) => None,
    }
}

async fn broker_commands(
    mut rx: mpsc::Receiver<InboundPublish>,
    control: mpsc::Sender<Control>,
    prefix: String,
    audit: AuditSink,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(p) = recv_or_stop(&mut rx, &mut stop).await {
        let actor = format!("mqtt:{}", p.principal);
        submit(
            &control,
            &audit,
            &prefix,
            &p.topic,
            &p.payload,
            CommandSource::BrokerClient(p.principal.clone()),
            &actor,
        )
        .await;
    }
}

async fn external_commands(
    mut rx: mpsc::Receiver<ExternalCommand>,
    control: mpsc::Sender<Control>,
    prefix: String,
    audit: AuditSink,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(c) = recv_or_stop(&mut rx, &mut stop).await {
        let source = CommandSource::ExternalBroker {
            payload: c.payload.clone(),
        };
        submit(
            &control,
            &audit,
            &prefix,
            &c.topic,
            &c.payload,
            source,
            "external-broker",
        )
        .await;
    }
}

async fn broker_events(
    mut rx: mpsc::Receiver<BrokerEvent>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
) {
    while let Some(e) = rx.recv().await {
        match e {
            BrokerEvent::AuthFailed {
                peer,
                username,
                client_id,
            } => {
                metrics.broker_auth_failures.inc();
                audit.record(
                    AuditEntry::new(
                        Category::Security,
                        "broker-auth",
                        username.as_deref().unwrap_or("(anonymous)"),
                        "MQTT client refused: bad or missing credentials",
                    )
                    .decision("builtin:broker", "deny")
                    .detail(
                        serde_json::json!({ "peer": peer.to_string(), "client_id": client_id }),
                    ),
                );
            }
            BrokerEvent::AclDenied {
                username,
                action,
                topic,
            } => {
                metrics.broker_acl_denials.inc();
                audit.record(
                    AuditEntry::new(
                        Category::Security,
                        "broker-acl",
                        &username,
                        format!("{action} outside the client's allowed topics"),
                    )
                    .decision("builtin:broker", "deny")
                    .detail(serde_json::json!({ "topic": topic, "action": action })),
                );
            }
            BrokerEvent::Dropped { username, count } => {
                tracing::warn!(%username, count, "slow MQTT subscriber: messages dropped");
            }
            _ => {}
        }
    }
}

async fn periodic_command(
    c: crate::config::SimCommandConfig,
    control: mpsc::Sender<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(device) = c.device.parse::<DeviceId>() else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_secs(c.every_s.max(1)));
    every.tick().await;
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        i += 1;
        let args = c
            .value
            .map(|v| vec![Point::new("value", Value::Float(v + (i % 3) as f64 * 0.5))])
            .unwrap_or_default();
        let req = CommandRequest {
            command_id: new_command_id(),
            device: device.clone(),
            command: Command {
                name: c.command.clone(),
                args,
            },
            source: CommandSource::Internal(c.principal.clone()),
            reply: None,
        };
        if control.send(Control::Command(req)).await.is_err() {
            return;
        }
    }
}

/// Loads the configured plugins into the pipeline's chain and starts the hot-reload watcher.
/// A plugin that cannot load does not stop the gateway: its bindings deny (fail closed), and the
/// audit log and `warden_plugin_active` say why.
fn start_plugins(
    cfg: &Config,
    data_dir: &Path,
    cache_key: [u8; 32],
    audit: &AuditSink,
    metrics: &Arc<Metrics>,
    control: &mpsc::Sender<Control>,
    pipeline: &mut Pipeline,
) -> anyhow::Result<Option<crate::plugins::watch::Watcher>> {
    use crate::metrics::PluginOutcomeLabels;
    use crate::plugins::{self, LoadedPlugin};
    let p = &cfg.plugins;
    if p.load.is_empty() && p.record.is_none() {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let cache_dir = p
        .cache_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("plugin-cache"));
    let host = plugins::host(cfg, Some(cache_dir), cache_key)?;
    let specs = plugins::specs(cfg);
    let mut loaded = Vec::new();
    for spec in &specs {
        let (result, outcome) = match plugins::load(&host, spec) {
            Ok((plugin, prepared)) => {
                let sha = hex::encode(prepared.sha256);
                tracing::info!(plugin = %spec.name, sha256 = %sha, signer = ?prepared.signer,
                    cache = ?prepared.cache, "plugin loaded");
                audit.record(
                    AuditEntry::new(
                        Category::System,
                        "plugin-load",
                        "gateway",
                        format!("plugin `{}` loaded", spec.name),
                    )
                    .detail(serde_json::json!({
                        "plugin": spec.name, "sha256": sha, "signer": prepared.signer,
                        "result": "ok",
                    })),
                );
                (Ok(plugin), "ok")
            }
            Err((stage, why)) => {
                tracing::error!(plugin = %spec.name, stage = stage.as_str(), error = %why,
                    "plugin refused; its bindings deny");
                let category = if stage == plugins::Stage::Prepare {
                    Category::Security
                } else {
                    Category::System
                };
                audit.record(
                    AuditEntry::new(
                        category,
                        "plugin-load",
                        "gateway",
                        format!(
                            "plugin `{}` refused at {}: {why}",
                            spec.name,
                            stage.as_str()
                        ),
                    )
                    .decision("builtin:plugins", "deny")
                    .detail(serde_json::json!({ "plugin": spec.name, "result": stage.as_str() })),
                );
                (Err(why), stage.as_str())
            }
        };
        metrics
            .plugin_loads
            .get_or_create(&PluginOutcomeLabels {
                plugin: spec.name.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        loaded.push(LoadedPlugin {
            spec: spec.clone(),
            result,
        });
    }
    tracing::info!(
        plugins = specs.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "plugins loaded"
    );
    let recorder = match &p.record {
        Some(path) => Some(
            plugins::recorder::Recorder::open(
                &data_dir.join(path),
                p.record_max_mb.saturating_mul(1 << 20),
            )
            .with_context(|| format!("plugins.record: cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let chain = plugins::chain::PluginChain::new(
        Some(host.clone()),
        loaded,
        &p.bind,
        audit.clone(),
        metrics.clone(),
        recorder,
    );
    pipeline.deciders.push(Box::new(chain));
    if !p.watch || specs.is_empty() {
        return Ok(None);
    }
    Ok(Some(plugins::watch::spawn(
        host,
        specs,
        std::time::Duration::from_millis(p.watch_interval_ms),
        control.clone(),
        audit.clone(),
        metrics.clone(),
    )?))
}

/// `warden check-config`: the file, and every plugin it loads (signature, compile, config,
/// the plugin's own tests).
pub fn check_config(path: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    if !cfg.plugins.load.is_empty() {
        // no cache: a check compiles from the module itself and leaves nothing behind
        let _ = data_dir;
        let host = crate::plugins::host(&cfg, None, [0; 32])?;
        let mut bad = 0;
        for spec in crate::plugins::specs(&cfg) {
            match crate::plugins::load(&host, &spec) {
                Ok(_) => println!("plugin `{}`: ok", spec.name),
                Err((stage, why)) => {
                    bad += 1;
                    println!(
                        "plugin `{}`: refused at {}: {why}",
                        spec.name,
                        stage.as_str()
                    );
                }
            }
        }
        if bad > 0 {
            anyhow::bail!("{bad} plugin(s) would not load");
        }
    }
    println!("{}: ok", path.display());
    Ok(())
}

/// Rebuilds the built-in policy from the config file and hands it to the pipeline.
pub async fn reload(shared: &Shared) -> anyhow::Result<()> {
    let cfg = load_config(
        shared.config_path.as_deref(),
        shared.demo,
        shared.broker_override.as_deref(),
    );
    match cfg {
        Ok(cfg) => {
            shared
                .control
                .send(Control::Reload(
                    Policy::from_config(&cfg),
                    controllers(&cfg),
                ))
                .await
                .map_err(|_| anyhow::anyhow!("pipeline is not running"))?;
            shared.audit.record(AuditEntry::new(
                Category::Operator,
                "config-reload",
                "api:operator",
                "profiles, zones, models and controllers reloaded",
            ));
            Ok(())
        }
        Err(e) => {
            shared.audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "config-reload",
                    "api:operator",
                    format!("reload refused, previous config kept: {e}"),
                )
                .decision("builtin:config", "deny"),
            );
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn commands_parse_from_json() {
        let (id, c) =
            parse_command(br#"{"id":"c1","command":"set_setpoint","args":{"value":22.5}}"#)
                .unwrap();
        assert_eq!(id.as_deref(), Some("c1"));
        assert_eq!(c.name, "set_setpoint");
        assert_eq!(c.args[0].value, Value::Float(22.5));
        assert!(parse_command(b"not json").is_err());
        assert!(parse_command(br#"{"args":{}}"#).is_err());
        assert!(parse_command(br#"{"command":"x","args":[1]}"#).is_err());
        assert_eq!(
            device_from_topic("warden", "warden/devices/sim:a/cmd")
                .unwrap()
                .to_string(),
            "sim:a"
        );
        assert!(device_from_topic("warden", "warden/devices/a/b/cmd").is_none());
        assert!(device_from_topic("warden", "other/devices/sim:a/cmd").is_none());
    }

    #[test]
    fn demo_config_is_valid() {
        let c = load_config(None, true, None).unwrap();
        assert!(c.sim.devices.len() >= 4);
        assert!(!c.sim.commands.is_empty());
    }

    proptest::proptest! {
        /// Command payloads come from MQTT clients: any bytes give a command or an error, never a panic.
        #[test]
        fn arbitrary_command_payloads_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_command(&b);
        }

        #[test]
        fn arbitrary_command_topics_never_panic(t in ".{0,80}") {
            let _ = device_from_topic("warden", &t);
        }
    }
}
