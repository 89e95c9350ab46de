//! `warden run`: wires the stages, stores, broker, adapters and API together, and shuts them down in
//! order so nothing held in memory is lost.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use warden_core::{Adapter, AdapterContext};

use crate::audit::anchor::{Anchors, StartCheck};
use crate::audit::{AuditEntry, AuditSink, Category};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::mqtt;
use crate::northbound::outbox::{self, Outbox};
use crate::northbound::{Northbound, envelope};
use crate::operations::Operations;
use crate::pipeline::authenticate::Controller;
use crate::pipeline::decide::Policy;
use crate::pipeline::{Control, Pipeline};
use crate::registry::{Catalogue, Registry};
use crate::secrets::MasterKey;
use crate::store::{DB_FILE, Store};
use plugins::start_plugins;
use setup::{init_logging, provision_sim_devices, read_or_create_secret};
use sources::periodic_command;

mod broker_events;
mod ha;
mod housekeeping;
mod northbound;
mod plugins;
mod reload;
mod setup;
mod sources;

pub use plugins::check_config;
pub use reload::reload;
pub use sources::{new_command_id, parse_command};

pub const TOKEN_FILE: &str = "api.token";
pub const API_ADDR_FILE: &str = "api.addr";
pub const OPERATOR_PASSWORD_FILE: &str = "mqtt-operator.password";
pub const MASTER_KEY_FILE: &str = "master.key";
/// Held locked (`flock`) while a gateway runs, so offline tools that write the data dir refuse to.
pub const LOCK_FILE: &str = "warden.lock";
const DEMO_CONFIG: &str = include_str!("../../../examples/demo.toml");

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
    /// Operator accounts and sessions.
    pub operators: Arc<crate::operators::Operators>,
    /// Failed logins per source (API and MQTT): audit aggregation, alarm and API rate limit.
    pub failures: Arc<crate::login_failures::LoginFailures>,
    /// Password checks (argon2) running at once.
    pub login_slots: Arc<tokio::sync::Semaphore>,
    /// When the gateway started (monotonic: uptime survives the wall clock stepping back).
    pub started: std::time::Instant,
    /// Counters of the embedded broker, when it runs.
    pub broker_stats: Option<crate::northbound::broker::StatsReader>,
    /// Join windows, scans and removals on the adapters that support them.
    pub operations: Arc<Operations>,
    /// Turns true at shutdown (long-lived API streams end on it).
    pub shutdown: watch::Receiver<bool>,
    /// Reloads plugins whose config changed (`warden reload`); `None` without plugins.
    pub plugin_reloader: Option<crate::plugins::watch::Reloader>,
    /// Each plugin as the host runs it: version, signer, loads, refused or disabled and why.
    pub plugins: crate::plugins::status::PluginStatus,
    /// Recent point values for the dashboard's device pages.
    pub points: crate::recent::Recent,
    /// Northbound publications (a reload hands Home Assistant discovery its new profiles).
    pub northbound: Arc<Northbound>,
}

async fn run(cfg: Config, args: RunArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let _ = std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700));
    let _lock = lock_data_dir(&data_dir)?;
    let fresh = !data_dir.join(DB_FILE).exists();
    let moved_key = migrate_master_key(&cfg, &data_dir)?;
    let master = MasterKey::load(&master_key_path(&cfg, &data_dir), fresh)?;
    let store = Store::open(&data_dir, &master)?;
    let plugin_cache_key = master.plugin_cache_key();
    drop(master);
    // Before anything is appended: the chain must still hold every head anchored before.
    if let Some(w) = cfg.witness_file()
        && w.starts_with(&data_dir)
    {
        tracing::warn!(witness = %w.display(),
            "audit.witness_file is inside the data dir: it does not survive someone who rewrites the data dir; keep it elsewhere");
    }
    let anchors = Anchors::new(store.clone(), cfg.witness_file());
    let start_check = anchors.check_at_start().map_err(|e| {
        anyhow::anyhow!(
            "refusing to start: {e}.{}",
            if e.is_chain_loss() {
                " If this loss is understood (e.g. a restored backup), accept it with \
                 `warden audit reset-anchor --reason \"…\"` (audited, naming the lost head)"
            } else {
                ""
            }
        )
    })?;
    let token = read_or_create_secret(&data_dir.join(TOKEN_FILE))?;
    let operators = Arc::new(crate::operators::Operators::load(store.clone(), &token)?);
    if operators.authenticate(&token).is_none() {
        tracing::warn!(
            file = %data_dir.join(TOKEN_FILE).display(),
            "the API token file belongs to no operator (rotated or removed); the CLI needs WARDEN_API_TOKEN"
        );
    }
    drop(token);
    let nofile = setup::raise_nofile_limit();

    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::load(store.clone(), cfg.registry.max_pending)?);
    registry.set_catalogue(Catalogue::from_config(&cfg));
    // the pipeline's own registry changes are written by this thread, not on the message path
    let _registry_writer = registry.start_writer()?;
    let (audit, _audit_thread) = AuditSink::start(store.clone(), 8192)?;
    let failures = Arc::new(crate::login_failures::LoginFailures::new(
        audit.clone(),
        metrics.clone(),
        crate::login_failures::Limits {
            window_ms: cfg.api.failure_window_s.saturating_mul(1000),
            full_records: 3,
            alarm_at: cfg.api.brute_force_alarm,
            block_at: cfg.api.max_login_failures,
        },
    ));
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
    if let Some((from, to)) = &moved_key {
        store.audit(&[AuditEntry::new(
            Category::Security,
            "master-key-moved",
            "gateway",
            "master key moved out of the data dir it protects",
        )
        .detail(serde_json::json!({ "from": from.display().to_string(), "to": to.display().to_string() }))])?;
    }
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

    if start_check == StartCheck::Unanchored {
        let (seq, hash) = store.audit_head();
        store.audit(&[AuditEntry::new(
            Category::System,
            "audit-anchor-created",
            "gateway",
            "no anchored audit head yet (new data dir, or one from before anchors); anchoring now",
        )
        .detail(serde_json::json!({ "seq": seq, "hash": hex::encode(hash) }))])?;
    }
    anchors.record(false)?;

    provision_sim_devices(&cfg, &registry)?;
    let operations = Arc::new(Operations::new(audit.clone(), northbound.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (control_tx, control_rx) = mpsc::channel::<Control>(1024);
    let (events_tx, events_rx) = mpsc::channel(cfg.gateway.channel_capacity);

    // Northbound: the embedded broker, or an external one over mutual TLS.
    let (settings, broker_handle, ext_tx) = northbound::start(
        &cfg,
        &data_dir,
        &control_tx,
        &operations,
        &audit,
        &metrics,
        &shutdown_rx,
        &failures,
    )
    .await?;
    ha::start(&cfg, &settings, &northbound, &registry, shutdown_rx.clone());
    let failures_task = tokio::spawn(failures.clone().run(shutdown_rx.clone()));
    let publisher = tokio::spawn(mqtt::run_publisher(
        settings,
        outbox.clone(),
        metrics.clone(),
        ext_tx,
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
    pipeline.aggregator =
        crate::pipeline::record::Aggregator::with_window_s(cfg.audit.aggregate_window_s);
    pipeline.behaviour = crate::behaviour::Behaviour::with_store(cfg.behaviour.clone(), &store)?;
    pipeline.admission = crate::pipeline::Admission::new(cfg.registry.pending_per_source_per_min);
    let (recent_feed, live_points) =
        crate::recent::start().context("cannot start the recent-values thread")?;
    pipeline.recent = Some(recent_feed);
    let notifier = crate::sdnotify::Notifier::from_env();
    pipeline.watchdog = notifier
        .as_ref()
        .and_then(crate::sdnotify::Watchdog::from_env);
    if let Some(w) = &pipeline.watchdog {
        tracing::info!(
            every_ms = w.every().as_millis() as u64,
            "systemd watchdog: pinged from the pipeline's tick"
        );
    }
    let plugin_runtime = start_plugins(
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
            operations: operations.register(protocol, a.operations()),
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

    let (housekeeping_stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let housekeeping = housekeeping::Housekeeping {
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        audit: audit.clone(),
        northbound: northbound.clone(),
        policy: cfg.retention(),
        prune_every: std::time::Duration::from_secs(cfg.audit.prune_every_s),
        check_every: std::time::Duration::from_secs(cfg.audit.disk_check_s),
        low_bytes: cfg.audit.disk_low_mib << 20,
        reserve: crate::disk::Reserve::new(&data_dir, cfg.audit.disk_reserve_mib << 20),
        reserve_bytes: cfg.audit.disk_reserve_mib << 20,
        lost_metered: std::sync::Mutex::default(),
    };
    let housekeeping_thread = std::thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || housekeeping.run(stop_rx))?;

    tokio::spawn(publish_heads(
        anchors.clone(),
        northbound.clone(),
        std::time::Duration::from_secs(cfg.audit.head_every_s),
        shutdown_rx.clone(),
    ));

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
        operators,
        failures,
        login_slots: Arc::new(tokio::sync::Semaphore::new(2)),
        started: std::time::Instant::now(),
        broker_stats: broker_handle.as_ref().map(|h| h.stats_reader()),
        operations: operations.clone(),
        shutdown: shutdown_rx.clone(),
        plugin_reloader: plugin_runtime.reloader,
        plugins: plugin_runtime.status,
        points: live_points,
        northbound: northbound.clone(),
    });
    drop(control_tx);
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot bind the management API on {}", cfg.api.listen))?;
    let api_addr = listener.local_addr()?;
    std::fs::write(data_dir.join(API_ADDR_FILE), api_addr.to_string())?;
    tracing::info!(%api_addr, data_dir = %data_dir.display(), "warden running");
    // the broker listens, the pipeline thread runs and the API is bound: ready for systemd
    if let Some(n) = &notifier {
        n.notify(&format!("READY=1\nSTATUS=running, API on {api_addr}"));
    }
    let lan = match cfg.api.lan_listen {
        Some(addr) => Some(lan_listener(&cfg, addr, &data_dir).await?),
        None => None,
    };
    let api = tokio::spawn(crate::api::serve(
        listener,
        shared.clone(),
        api_serve_config(&cfg, nofile),
        shutdown_rx.clone(),
        lan,
    ));

    wait_for_signal(&shared, notifier.as_deref()).await;
    tracing::info!("shutting down");
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }
    let _ = shutdown_tx.send(true);
    if let Some(w) = plugin_runtime.watcher {
        w.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || w.handle.join()).await;
    }
    for t in adapter_tasks {
        let _ = t.await;
    }
    let _ = api.await;
    let _ = failures_task.await;
    drop(shared);
    // the pipeline ends once every adapter and command source has let go of its channels; a
    // task an adapter left running past its own end must not hold the stop up for ever
    let joined = tokio::time::timeout(
        PIPELINE_STOP_WAIT,
        tokio::task::spawn_blocking(move || pipeline_thread.join()),
    )
    .await;
    if joined.is_err() {
        tracing::error!(
            waited_s = PIPELINE_STOP_WAIT.as_secs(),
            "the pipeline still has senders after every adapter stopped; stopping without it"
        );
    }
    registry.flush_writer();
    drop(housekeeping_stop);
    let _ = tokio::task::spawn_blocking(move || housekeeping_thread.join()).await;
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
    // the head after the last record, so a stopped gateway's newest records are anchored too
    if let Err(e) = anchors.record(false) {
        tracing::error!(error = %e, "cannot anchor the final audit head");
    }
    let _ = registry.flush_last_seen();
    tracing::info!(queued = outbox.depth(), "stopped");
    Ok(())
}

/// Where the master key is read from: `secrets.key_file`; else systemd's credential
/// `$CREDENTIALS_DIRECTORY/warden-master-key` when it exists; else `<data-dir>.master.key`, a file
/// *beside* the data dir, never inside it — a copied data dir or backup then does not carry the key
/// that opens its sealed secrets. (`WARDEN_MASTER_KEY` in the environment overrides all of them.)
pub fn master_key_path(cfg: &Config, data_dir: &Path) -> PathBuf {
    if let Some(k) = &cfg.secrets.key_file {
        return k.clone();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = Path::new(&dir).join("warden-master-key");
        if p.is_file() {
            return p;
        }
    }
    default_master_key_path(data_dir)
}

/// `<data-dir>.master.key` beside the data dir (or inside it, for a data dir at `/`).
fn default_master_key_path(data_dir: &Path) -> PathBuf {
    let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    match abs.file_name() {
        Some(name) => {
            let mut n = name.to_os_string();
            n.push(".master.key");
            abs.with_file_name(n)
        }
        None => data_dir.join(MASTER_KEY_FILE),
    }
}

/// Versions before 0.1 kept the key at `<data-dir>/master.key`. With the default location in
/// use, move it out (same filesystem: a rename) and say so; two keys at once is an error for the
/// operator to resolve. Returns the move, for the audit log.
fn migrate_master_key(cfg: &Config, data_dir: &Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let old = data_dir.join(MASTER_KEY_FILE);
    let new = master_key_path(cfg, data_dir);
    if new == old
        || cfg.secrets.key_file.is_some()
        || std::env::var_os(crate::secrets::MASTER_KEY_ENV).is_some()
        || !old.exists()
    {
        return Ok(None);
    }
    if new.exists() {
        anyhow::bail!(
            "two master keys: {} (old location, inside the data dir) and {}; keep the one this data \
             dir was made with and remove the other",
            old.display(),
            new.display()
        );
    }
    std::fs::rename(&old, &new).with_context(|| {
        format!(
            "cannot move the master key out of the data dir ({} → {})",
            old.display(),
            new.display()
        )
    })?;
    tracing::warn!(from = %old.display(), to = %new.display(),
        "moved the master key out of the data dir it protects");
    Ok(Some((old, new)))
}

/// Takes the data dir's lock for as long as the returned file lives; refuses when a gateway (or
/// an offline tool) holds it.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "data dir {} is in use by a running gateway (stop it first)",
            data_dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Signs and records the audit head every `every` when it moved, and publishes it retained.
async fn publish_heads(
    anchors: Anchors,
    northbound: Arc<Northbound>,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = None;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let a = anchors.clone();
        let head = tokio::task::spawn_blocking(move || {
            let now = a.head();
            (Some(now) != last).then(|| a.record(false).map(|h| (now, h)))
        })
        .await;
        match head {
            Ok(Some(Ok((now, h)))) => {
                last = Some(now);
                northbound.audit_head(&h);
            }
            Ok(Some(Err(e))) => tracing::error!(error = %e, "cannot record the audit head"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "audit head task failed"),
        }
    }
}

/// Descriptors kept back from the API's connection cap: the database, the broker's own listener,
/// adapters' serial ports and sockets, plugins, logs.
const FD_RESERVE: u64 = 256;

/// The dashboard's LAN listener: bound, with its TLS certificate (configured or self-signed).
async fn lan_listener(
    cfg: &Config,
    addr: std::net::SocketAddr,
    data_dir: &std::path::Path,
) -> anyhow::Result<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)> {
    let names = vec!["localhost".to_owned(), addr.ip().to_string()];
    let cert = cfg.api.tls_cert.as_ref().map(|p| cfg.base_dir.join(p));
    let key = cfg.api.tls_key.as_ref().map(|p| cfg.base_dir.join(p));
    let (cert, key) =
        crate::web::tls::cert_paths(cert.as_deref(), key.as_deref(), data_dir, &names)?;
    let acceptor = crate::web::tls::acceptor(&cert, &key)?;
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the dashboard's LAN listener on {addr}"))?;
    tracing::info!(%addr, cert = %cert.display(), "dashboard on the LAN over TLS");
    Ok((l, acceptor))
}

/// The API's limits, its connection cap fitted under the file-descriptor limit beside the
/// embedded broker's, so a flood of sockets is refused at accept instead of starving the process.
fn api_serve_config(cfg: &Config, nofile: Option<u64>) -> crate::api::ServeConfig {
    let mut max = cfg.api.max_connections;
    if let Some(limit) = nofile {
        let broker = if cfg.mqtt.broker == "embedded" {
            cfg.mqtt.embedded.max_connections as u64
        } else {
            0
        };
        let room = limit.saturating_sub(FD_RESERVE).saturating_sub(broker);
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(8);
        if max > room {
            tracing::warn!(
                configured = max,
                used = room,
                nofile = limit,
                "api.max_connections lowered to fit the open-file limit"
            );
            max = room;
        }
    }
    crate::api::ServeConfig {
        max_connections: max,
        per_source: cfg.api.max_connections_per_source.min(max),
        header_timeout: std::time::Duration::from_secs(cfg.api.header_timeout_s),
        idle_timeout: std::time::Duration::from_secs(cfg.api.idle_timeout_s),
        max_body: cfg.api.max_body_kib.saturating_mul(1024),
        dashboard: cfg.api.dashboard,
    }
}

/// How long a stop waits for the pipeline to drain once the adapters have returned.
const PIPELINE_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for SIGTERM or SIGINT (stop); each SIGHUP meanwhile reloads the config, as
/// `POST /api/config/reload` does (audited with the actor `signal:SIGHUP`).
async fn wait_for_signal(shared: &Shared, notifier: Option<&crate::sdnotify::Notifier>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                if let Some(n) = notifier {
                    n.notify("RELOADING=1");
                }
                match reload(shared, "signal:SIGHUP").await {
                    Ok(()) => tracing::info!("config reloaded (SIGHUP)"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"),
                        "config reload refused (SIGHUP), the running config is kept"),
                }
                if let Some(n) = notifier {
                    n.notify("READY=1");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let c = load_config(None, true, None).unwrap();
        assert!(c.sim.devices.len() >= 4);
        assert!(!c.sim.commands.is_empty());
    }
}
