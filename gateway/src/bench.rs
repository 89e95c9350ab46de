//! `warden bench`: drives the pipeline in-process with a simulated adapter's messages and the built-in
//! rules, over N registered devices. Prints JSON lines (one per phase) and a table.
//!
//! Phases: `pipeline` (identify → authenticate → observe → decide → record, no signing, no broker),
//! `pipeline+sign` (adds deliver: envelope + Ed25519 signature per point), and `publish` (adds the
//! store-and-forward queue and the embedded broker, counted at a subscriber).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use warden_core::{Assurance, DeviceId, Message, Point, Value};

use crate::audit::AuditSink;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::{CountingSink, Northbound};
use crate::pipeline::Pipeline;
use crate::pipeline::decide::Policy;
use crate::registry::{ImportDevice, Registry};
use crate::secrets::MasterKey;
use crate::store::Store;

#[derive(clap::Subcommand, Clone)]
pub enum BenchKind {
    /// Detection rate, time to detect and false alarms of the behaviour baselines on weeks of
    /// simulated traffic with injected attacks.
    Anomaly(crate::bench_anomaly::AnomalyArgs),
    /// The pipeline alone and under a 10,000-device import and audit exports; a day of audit log.
    Storage(crate::bench_storage::StorageArgs),
}

#[derive(Args, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: Option<BenchKind>,
    /// Registered (active) devices.
    #[arg(long, default_value_t = 10_000)]
    devices: u32,
    /// Messages for the pipeline phases.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Messages for the publish phase (through the embedded broker).
    #[arg(long, default_value_t = 50_000)]
    publish_messages: u64,
    /// Skip the publish phase.
    #[arg(long)]
    no_publish: bool,
    /// Also run the pipeline phase with this plugin bound to every device (the spine's
    /// benchmark with one plugin in the chain).
    #[arg(long)]
    plugin: Option<std::path::PathBuf>,
    /// The plugin's config (JSON file; default `{}`).
    #[arg(long)]
    plugin_config: Option<std::path::PathBuf>,
}

fn rss_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Phase {
    name: &'static str,
    messages: u64,
    secs: f64,
    p50_ns: u64,
    p99_ns: u64,
    rss_kib: u64,
}

impl Phase {
    fn json(&self, devices: u32) -> String {
        serde_json::json!({
            "bench": "pipeline", "phase": self.name, "devices": devices, "messages": self.messages,
            "seconds": (self.secs * 1000.0).round() / 1000.0,
            "msgs_per_sec": (self.messages as f64 / self.secs).round(),
            "p50_ns": self.p50_ns, "p99_ns": self.p99_ns, "rss_mib": self.rss_kib as f64 / 1024.0,
        })
        .to_string()
    }
}

/// One bench reading: a temperature at `shared-key`, fresh.
pub(crate) fn make_msg(id: &DeviceId, i: u64) -> Message {
    let mut m = Message::telemetry(
        id.clone(),
        vec![
            Point::new("temperature", Value::Float(20.0 + (i % 50) as f64 / 10.0)).with_unit("°C"),
        ],
    );
    m.assurance = Assurance::SharedKey;
    m.fresh = true;
    m
}

fn percentile(v: &mut [u32], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v.get(i).copied().unwrap_or(0) as u64
}

/// Runs `n` messages through `step`, timing every 8th for the latency percentiles.
fn drive(ids: &[DeviceId], n: u64, step: impl FnMut(Message)) -> (f64, u64, u64) {
    let mut samples = Vec::with_capacity(((n / 8) as usize).min(300_000));
    let limit = samples.capacity();
    let busy = drive_into(ids, 0, n, &mut samples, limit, step);
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    (busy, p50, p99)
}

/// Runs messages `from..from + n` through `step` (message `i` goes to device `i mod devices`),
/// timing every 8th into `samples` while it holds fewer than `limit`; the busy seconds.
fn drive_into(
    ids: &[DeviceId],
    from: u64,
    n: u64,
    samples: &mut Vec<u32>,
    limit: usize,
    mut step: impl FnMut(Message),
) -> f64 {
    const BATCH: usize = 8192;
    let mut batch = Vec::with_capacity(BATCH);
    let mut done = 0u64;
    let mut busy = Duration::ZERO;
    while done < n {
        batch.clear();
        let k = (n - done).min(BATCH as u64);
        for j in 0..k {
            let i = from + done + j;
            if let Some(id) = ids.get((i % ids.len() as u64) as usize) {
                batch.push(make_msg(id, i));
            }
        }
        let t0 = Instant::now();
        for (j, m) in batch.drain(..).enumerate() {
            if j % 8 == 0 && samples.len() < limit {
                let t = Instant::now();
                step(m);
                samples.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            } else {
                step(m);
            }
        }
        busy += t0.elapsed();
        done += k;
    }
    busy.as_secs_f64()
}

/// Rounds the baselines-off and baselines-on pipelines alternate in: the machine's drift (other
/// tenants, frequency) falls on both alike rather than on whichever phase ran second.
const ROUNDS: u64 = 5;

/// The busy time, messages and latency samples of one pipeline over its rounds.
struct Tally {
    secs: f64,
    messages: u64,
    samples: Vec<u32>,
}

impl Tally {
    fn new(messages: u64) -> Self {
        Self {
            secs: 0.0,
            messages: 0,
            samples: Vec::with_capacity(((messages / 8) as usize).min(300_000)),
        }
    }

    /// Runs the next `n` of this pipeline's messages (they continue where the last round ended).
    /// (each round samples at most its share of the latencies kept)
    fn round(&mut self, ids: &[DeviceId], n: u64, step: impl FnMut(Message)) {
        let limit = self.samples.len() + ((n / 8) as usize).min(300_000 / ROUNDS as usize);
        self.secs += drive_into(
            ids,
            100_000 + self.messages,
            n,
            &mut self.samples,
            limit,
            step,
        );
        self.messages += n;
    }

    fn phase(mut self, name: &'static str, rss_kib: u64) -> Phase {
        let p50 = percentile(&mut self.samples, 0.50);
        let p99 = percentile(&mut self.samples, 0.99);
        Phase {
            name,
            messages: self.messages,
            secs: self.secs,
            p50_ns: p50,
            p99_ns: p99,
            rss_kib,
        }
    }
}

pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        Some(BenchKind::Anomaly(a)) => return crate::bench_anomaly::main(a),
        Some(BenchKind::Storage(a)) => return crate::bench_storage::main(a),
        None => {}
    }
    let dir = tempfile_dir()?;
    let store = Store::open(&dir, &MasterKey::ephemeral())?;
    let registry = Arc::new(Registry::load(store.clone(), 1000)?);
    let ids: Vec<DeviceId> = (0..args.devices)
        .map(|i| DeviceId::new("sim", &format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let devs: Vec<ImportDevice> = ids
        .iter()
        .map(|id| ImportDevice {
            id: id.to_string(),
            profile: Some("bench".into()),
            ..ImportDevice::default()
        })
        .collect();
    registry.import(&devs, "bench", "default", false)?;
    drop(devs);
    let cfg = Config::parse(
        "[profiles.bench]\npoints = [\"temperature\"]\nmin_assurance = \"shared-key\"\n",
        std::path::Path::new("(bench)"),
    )?;
    let (audit, _h) = AuditSink::start(store.clone(), 8192)?;
    let metrics = Arc::new(Metrics::new());
    let counter = Arc::new(CountingSink::default());
    let mk_pipeline = |sign: bool, baselines: bool| {
        let nb = Northbound::new(
            "warden",
            "bench",
            sign.then(|| store.signing_key().clone()),
            None,
            Box::new(counter.clone()),
        );
        let mut policy = Policy::from_config(&cfg);
        policy.behaviour.enabled = baselines;
        Pipeline::new(
            registry.clone(),
            policy,
            vec![],
            audit.clone(),
            true,
            "default".into(),
            metrics.clone(),
            Arc::new(nb),
        )
    };
    let mut phases = Vec::new();

    // identify → record with behaviour baselines off and on (as `warden run` has them), each
    // warmed up, then in alternating rounds: the cost of baselines, measured in one run
    let mut off = mk_pipeline(false, false);
    drive(&ids, 100_000, |m| {
        off.uplink_decide(m);
    });
    let per_round = (args.messages / ROUNDS).max(1);
    let (mut t_off, mut t_on) = (Tally::new(args.messages), Tally::new(args.messages));
    let (mut allowed_off, mut allowed_on) = (0u64, 0u64);
    t_off.round(&ids, per_round, |m| {
        allowed_off += u64::from(off.uplink_decide(m).0.is_allow());
    });
    // (its RSS before the second pipeline exists)
    let rss_off = rss_kib().0;
    let mut p = mk_pipeline(false, true);
    drive(&ids, 100_000, |m| {
        p.uplink_decide(m);
    });
    for round in 0..ROUNDS {
        t_on.round(&ids, per_round, |m| {
            allowed_on += u64::from(p.uplink_decide(m).0.is_allow());
        });
        if round + 1 < ROUNDS {
            t_off.round(&ids, per_round, |m| {
                allowed_off += u64::from(off.uplink_decide(m).0.is_allow());
            });
        }
    }
    anyhow::ensure!(
        allowed_off == t_off.messages && allowed_on == t_on.messages,
        "bench messages were denied: {allowed_off} of {} allowed without baselines, {allowed_on} of {} with",
        t_off.messages,
        t_on.messages
    );
    drop(off);
    phases.push(t_off.phase("pipeline-nobase", rss_off));
    phases.push(t_on.phase("pipeline", rss_kib().0));
    let baseline_devices = p.behaviour.devices();
    let baseline_bytes = p.behaviour.bytes();
    drop(p);

    // the same with one plugin bound to every device
    if let Some(module) = &args.plugin {
        let mut p = mk_pipeline(false, true);
        p.deciders.push(Box::new(bench_chain(
            module,
            args.plugin_config.as_deref(),
            &audit,
            &metrics,
        )?));
        drive(&ids, 100_000, |m| {
            p.uplink_decide(m);
        });
        let mut allowed = 0u64;
        let (secs, p50, p99) = drive(&ids, args.messages, |m| {
            if p.uplink_decide(m).0.is_allow() {
                allowed += 1;
            }
        });
        anyhow::ensure!(
            allowed == args.messages,
            "the plugin denied bench messages: {allowed} of {} allowed",
            args.messages
        );
        phases.push(Phase {
            name: "pipeline+plugin",
            messages: args.messages,
            secs,
            p50_ns: p50,
            p99_ns: p99,
            rss_kib: rss_kib().0,
        });
    }

    // + deliver with signing (one envelope and signature per point), and the hand-over to the
    // recent-values thread as `warden run` has it
    let mut p = mk_pipeline(true, true);
    let (feed, recent) = crate::recent::start()?;
    p.recent = Some(feed);
    let n = (args.messages / 10).max(10_000);
    let before = counter.0.load(std::sync::atomic::Ordering::Relaxed);
    let (secs, p50, p99) = drive(&ids, n, |m| {
        p.uplink(m);
    });
    let sent = counter.0.load(std::sync::atomic::Ordering::Relaxed) - before;
    anyhow::ensure!(
        sent == n,
        "deliver produced {sent} envelopes for {n} messages"
    );
    tracing::info!(
        kept_devices = recent.devices(),
        skipped = recent.skipped(),
        "recent values during pipeline+sign"
    );
    phases.push(Phase {
        name: "pipeline+sign",
        messages: n,
        secs,
        p50_ns: p50,
        p99_ns: p99,
        rss_kib: rss_kib().0,
    });

    p.shutdown();
    audit.flush();

    if !args.no_publish {
        phases.push(publish_phase(&args, &dir, &store, &registry, &cfg, &audit)?);
    }

    let (_, hwm) = rss_kib();
    for ph in &phases {
        println!("{}", ph.json(args.devices));
    }
    println!(
        "{}",
        serde_json::json!({"bench": "pipeline", "phase": "summary", "devices": args.devices, "peak_rss_mib": hwm as f64 / 1024.0,
            "baseline_devices": baseline_devices, "baseline_bytes": baseline_bytes,
            "baseline_bytes_per_device": baseline_bytes.checked_div(baseline_devices).unwrap_or(0)})
    );
    println!();
    println!(
        "{:<16} {:>10} {:>12} {:>9} {:>9} {:>9}",
        "phase", "messages", "msgs/s", "p50 µs", "p99 µs", "RSS MiB"
    );
    for ph in &phases {
        println!(
            "{:<16} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.1}",
            ph.name,
            ph.messages,
            ph.messages as f64 / ph.secs,
            ph.p50_ns as f64 / 1000.0,
            ph.p99_ns as f64 / 1000.0,
            ph.rss_kib as f64 / 1024.0
        );
    }
    println!(
        "devices: {}, peak RSS {:.1} MiB, baseline state {} bytes per device ({} devices)",
        args.devices,
        hwm as f64 / 1024.0,
        baseline_bytes.checked_div(baseline_devices).unwrap_or(0),
        baseline_devices
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A plugin chain with `module` (unsigned allowed: a local benchmark) bound to every device.
fn bench_chain(
    module: &std::path::Path,
    config: Option<&std::path::Path>,
    audit: &AuditSink,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<crate::plugins::chain::PluginChain> {
    use crate::plugins::{LoadedPlugin, PluginSpec, chain::PluginChain};
    let host = warden_plugin_host::Host::new(warden_plugin_host::HostOptions {
        require_signature: false,
        ..warden_plugin_host::HostOptions::default()
    })?;
    let config_json = match config {
        Some(p) => std::fs::read_to_string(p)?,
        None => "{}".into(),
    };
    let spec = PluginSpec {
        name: "bench".into(),
        module: module.to_owned(),
        config_json,
        // the benchmark drives the plugin flat out on purpose: no per-second CPU budget
        limits: warden_plugin_host::Limits {
            cpu_ms_per_sec: u64::MAX,
            ..warden_plugin_host::Limits::default()
        },
    };
    let prepared = host.prepare("bench", module)?;
    let plugin = host.instantiate(
        &prepared,
        &spec.config_json,
        spec.limits.clone(),
        warden_plugin_host::Kv::default(),
    )?;
    Ok(PluginChain::new(
        vec![LoadedPlugin {
            spec,
            result: Ok(plugin),
        }],
        &[crate::config::PluginBindConfig {
            plugin: "bench".into(),
            ..Default::default()
        }],
        audit.clone(),
        metrics.clone(),
        None,
    ))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("warden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Pipeline + outbox + embedded broker + a subscriber counting arrivals.
fn publish_phase(
    args: &BenchArgs,
    dir: &std::path::Path,
    store: &Store,
    registry: &Arc<Registry>,
    cfg: &Config,
    audit: &AuditSink,
) -> anyhow::Result<Phase> {
    use crate::northbound::broker::{Broker, BrokerConfig, BrokerUser};
    use crate::northbound::mqtt::{ClientSettings, run_publisher};
    use crate::northbound::outbox::{Outbox, start_writer};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let metrics = Arc::new(Metrics::new());
    let outbox = Outbox::open(dir, 10_000_000, metrics.clone())?;
    let (sink, _w) = start_writer(outbox.clone(), audit.clone(), 8192)?;
    let n = args.publish_messages;
    let (secs, p50, p99) = rt.block_on(async {
        let (bev, _bev_rx) = tokio::sync::mpsc::channel(1024);
        let broker = Broker::start(
            BrokerConfig {
                listen: "127.0.0.1:0".parse()?,
                users: vec![
                    BrokerUser {
                        name: "warden".into(),
                        password: b"pw".to_vec(),
                        publish: vec!["warden/#".into()],
                        subscribe: vec![],
                    },
                    BrokerUser {
                        name: "sub".into(),
                        password: b"pw".to_vec(),
                        publish: vec![],
                        subscribe: vec!["warden/#".into()],
                    },
                ],
                max_packet_size: 256 * 1024,
                max_connections: 16,
                max_connections_per_source: 16,
                outbound_queue: 100_000,
            },
            vec![],
            bev,
        )
        .await?;
        let port = broker.local_addr().port();
        // subscriber
        let mut o = rumqttc::MqttOptions::new("bench-sub", "127.0.0.1", port);
        o.set_credentials("sub", "pw")
            .set_max_packet_size(1 << 20, 1 << 20);
        let (sub, mut sev) = rumqttc::AsyncClient::new(o, 1000);
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                match sev.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))
                        if p.topic.contains("/telemetry/") =>
                    {
                        let _ = got_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        sub.subscribe("warden/devices/+/telemetry/#", rumqttc::QoS::AtLeastOnce)
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (sd_tx, sd_rx) = tokio::sync::watch::channel(false);
        let publisher = tokio::spawn(run_publisher(
            ClientSettings {
                host: "127.0.0.1".into(),
                port,
                client_id: "bench-gw".into(),
                credentials: Some(("warden".into(), "pw".into())),
                tls: None,
                prefix: "warden".into(),
                receive_commands: false,
                max_inflight: 64,
            },
            outbox.clone(),
            metrics.clone(),
            None,
            sd_rx,
        ));
        let nb = Northbound::new(
            "warden",
            "bench",
            Some(store.signing_key().clone()),
            None,
            Box::new(sink.clone()),
        );
        let mut p = Pipeline::new(
            registry.clone(),
            Policy::from_config(cfg),
            vec![],
            audit.clone(),
            true,
            "default".into(),
            metrics.clone(),
            Arc::new(nb),
        );
        let ids: Vec<DeviceId> = (0..args.devices)
            .filter_map(|i| DeviceId::new("sim", &format!("bench-{i}")).ok())
            .collect();
        let t0 = Instant::now();
        let (_, p50, p99) = tokio::task::block_in_place(|| {
            drive(&ids, n, |m| {
                p.uplink(m);
            })
        });
        let mut got = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while got < n && Instant::now() < deadline {
            if tokio::time::timeout(Duration::from_secs(5), got_rx.recv())
                .await
                .ok()
                .flatten()
                .is_some()
            {
                got += 1;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        anyhow::ensure!(got == n, "subscriber received {got} of {n} messages");
        let _ = sd_tx.send(true);
        let _ = publisher.await;
        broker.shutdown().await;
        Ok::<_, anyhow::Error>((secs, p50, p99))
    })?;
    Ok(Phase {
        name: "publish",
        messages: n,
        secs,
        p50_ns: p50,
        p99_ns: p99,
        rss_kib: rss_kib().0,
    })
}
