//! `warden bench storage`: what storage costs the message path.
//!
//! - `pipeline-quiet` and `pipeline-under-load`: the pipeline phase of `warden bench` (identify →
//!   record, audit to its writer, 10,000 devices), alone and then while another thread imports
//!   10,000 new devices (one transaction with their audit records, fsynced) and a third exports the
//!   whole audit log over and over. Reported: msgs/s, p50, p99 and the longest single message
//!   (a stall shows there, not in the percentiles).
//! - `audit-per-day`: the bytes a day of audit log costs for `--day-devices` devices sending
//!   every `--day-interval-s` seconds, with `--day-deny-percent` of messages denied (one record
//!   each) and the rest aggregated per device per window (`--day-windows-s`), played through the record stage on a
//!   simulated clock into a real store: row bytes and database growth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Args;
use warden_core::{Decision, DeviceId};

use crate::audit::AuditSink;
use crate::bench::make_msg;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::{CountingSink, Northbound};
use crate::pipeline::Pipeline;
use crate::pipeline::decide::Policy;
use crate::pipeline::record;
use crate::registry::{ImportDevice, Registry};
use crate::secrets::MasterKey;
use crate::store::Store;

#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Registered devices the pipeline phases send from.
    #[arg(long, default_value_t = 10_000)]
    devices: u32,
    /// Messages per pipeline phase.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Devices imported concurrently in the loaded phase.
    #[arg(long, default_value_t = 10_000)]
    import_devices: u32,
    /// Devices of the audit-per-day estimate.
    #[arg(long, default_value_t = 200)]
    day_devices: u32,
    /// Seconds between one device's messages in the audit-per-day estimate.
    #[arg(long, default_value_t = 60)]
    day_interval_s: u64,
    /// Percent of messages denied (one record each) in the audit-per-day estimate.
    #[arg(long, default_value_t = 1.0)]
    day_deny_percent: f64,
    /// Aggregation windows (`audit.aggregate_window_s`) the audit-per-day estimate is run with.
    #[arg(long, value_delimiter = ',', default_value = "60,900,3600")]
    day_windows_s: Vec<u64>,
}

fn ids(prefix: &str, n: u32) -> anyhow::Result<Vec<DeviceId>> {
    Ok((0..n)
        .map(|i| DeviceId::new("sim", &format!("{prefix}-{i}")))
        .collect::<Result<_, _>>()?)
}

fn import_all(registry: &Registry, ids: &[DeviceId]) -> anyhow::Result<()> {
    let devs: Vec<ImportDevice> = ids
        .iter()
        .map(|id| ImportDevice {
            id: id.to_string(),
            profile: Some("bench".into()),
            ..ImportDevice::default()
        })
        .collect();
    registry.import(&devs, "bench", "default", false)?;
    Ok(())
}

struct Run {
    secs: f64,
    p50: u64,
    p99: u64,
    max: u64,
}

/// Every message timed (the longest one is the figure that shows a stall).
fn drive(p: &mut Pipeline, ids: &[DeviceId], n: u64) -> anyhow::Result<Run> {
    let mut lat: Vec<u32> = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        let Some(id) = ids.get((i % ids.len() as u64) as usize) else {
            continue;
        };
        let m = make_msg(id, i);
        let t = Instant::now();
        let (d, _) = p.uplink_decide(m);
        lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        anyhow::ensure!(d.is_allow(), "a bench message was denied: {}", d.reason);
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0) as u64
    };
    Ok(Run {
        secs,
        p50: at(0.5),
        p99: at(0.99),
        max: lat.last().copied().unwrap_or(0) as u64,
    })
}

pub fn main(args: StorageArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("warden-bench-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = run(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn run(args: &StorageArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::parse(
        "[profiles.bench]\npoints = [\"temperature\"]\nmin_assurance = \"shared-key\"\n",
        std::path::Path::new("(bench)"),
    )?;
    let mut lines = Vec::new();

    // ---- the pipeline alone, then under an import and audit exports
    {
        let d = dir.join("pipeline");
        std::fs::create_dir_all(&d)?;
        let store = Store::open(&d, &MasterKey::ephemeral())?;
        let registry = Arc::new(Registry::load(store.clone(), 1000)?);
        let ids = ids("bench", args.devices)?;
        import_all(&registry, &ids)?;
        let (audit, _h) = AuditSink::start(store.clone(), 8192)?;
        let mut p = bench_pipeline(&registry, &audit, &cfg);
        // warm-up
        drive(&mut p, &ids, 100_000)?;
        let quiet = drive(&mut p, &ids, args.messages)?;
        audit.flush();

        let stop = Arc::new(AtomicBool::new(false));
        let new_ids = ids_for_import(args.import_devices)?;
        let importer = {
            let registry = registry.clone();
            std::thread::spawn(move || -> anyhow::Result<f64> {
                let t = Instant::now();
                import_all(&registry, &new_ids)?;
                Ok(t.elapsed().as_secs_f64())
            })
        };
        let exporter = {
            let (stop, d) = (stop.clone(), d.clone());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let conn = crate::store::open_readonly(&d)?;
                    n += crate::audit::export_jsonl(&conn, 1, &mut std::io::sink())?;
                }
                Ok(n)
            })
        };
        let loaded = drive(&mut p, &ids, args.messages)?;
        stop.store(true, Ordering::Relaxed);
        let import_s = importer
            .join()
            .map_err(|_| anyhow::anyhow!("import thread panicked"))??;
        let exported = exporter
            .join()
            .map_err(|_| anyhow::anyhow!("export thread panicked"))??;
        audit.flush();
        for (name, r) in [("pipeline-quiet", &quiet), ("pipeline-under-load", &loaded)] {
            lines.push(serde_json::json!({
                "bench": "storage", "phase": name, "devices": args.devices,
                "messages": args.messages,
                "msgs_per_sec": (args.messages as f64 / r.secs).round(),
                "p50_ns": r.p50, "p99_ns": r.p99, "max_us": r.max / 1000,
            }));
        }
        lines.push(serde_json::json!({
            "bench": "storage", "phase": "concurrent-load",
            "imported_devices": args.import_devices, "import_seconds": (import_s * 1000.0).round() / 1000.0,
            "audit_records_exported": exported,
        }));
    }

    // ---- newcomers: 1 message in 100 from a device never seen (registered pending, denied), with
    // the registry's writes in place on the message thread (before) and by its writer (after)
    for (name, writer) in [("newcomers-in-place", false), ("newcomers-writer", true)] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let store = Store::open(&d, &MasterKey::ephemeral())?;
        let registry = Arc::new(Registry::load(store.clone(), usize::MAX)?);
        let _w = if writer {
            Some(registry.start_writer()?)
        } else {
            None
        };
        let ids = ids("bench", args.devices)?;
        import_all(&registry, &ids)?;
        let (audit, _h) = AuditSink::start(store.clone(), 8192)?;
        let mut p = bench_pipeline(&registry, &audit, &cfg);
        p.admission = crate::pipeline::Admission::new(u32::MAX);
        let n = (args.messages / 10).max(10_000);
        let mut lat: Vec<u32> = Vec::with_capacity(n as usize);
        let mut newcomers = 0u64;
        let t0 = Instant::now();
        for i in 0..n {
            let m = if i % 100 == 99 {
                newcomers += 1;
                make_msg(&DeviceId::new("sim", &format!("new-{i}"))?, i)
            } else {
                let Some(id) = ids.get((i % ids.len() as u64) as usize) else {
                    continue;
                };
                make_msg(id, i)
            };
            let t = Instant::now();
            p.uplink_decide(m);
            lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        }
        let secs = t0.elapsed().as_secs_f64();
        registry.flush_writer();
        anyhow::ensure!(
            registry.pending_count() as u64 == newcomers,
            "{} pending for {newcomers} newcomers",
            registry.pending_count()
        );
        lat.sort_unstable();
        let at = |q: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0) as u64
        };
        lines.push(serde_json::json!({
            "bench": "storage", "phase": name, "devices": args.devices, "messages": n,
            "newcomers": newcomers, "msgs_per_sec": (n as f64 / secs).round(),
            "p50_ns": at(0.5), "p99_ns": at(0.99), "max_us": lat.last().copied().unwrap_or(0) / 1000,
        }));
    }

    // ---- a day of audit log for a small site, on a simulated clock, per aggregation window
    for window in &args.day_windows_s {
        let d = dir.join(format!("day-{window}"));
        std::fs::create_dir_all(&d)?;
        let store = Store::open(&d, &MasterKey::ephemeral())?;
        let db = |s: &Store| -> anyhow::Result<(u64, u64)> {
            Ok(s.read(|c, _| {
                let rows: i64 = c.query_row(
                    "SELECT ifnull(SUM(length(category) + length(action) + ifnull(length(device), 0)
                        + length(actor) + ifnull(length(decider), 0) + ifnull(length(verdict), 0)
                        + length(reason) + length(detail) + length(prev) + length(hash)
                        + ifnull(length(seal), 0) + 16), 0) FROM audit",
                    [],
                    |r| r.get(0),
                )?;
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                Ok((rows.max(0) as u64, (pages * size).max(0) as u64))
            })?)
        };
        let (rows0, file0) = db(&store)?;
        let (audit, h) = AuditSink::start(store.clone(), 8192)?;
        let ids = ids("site", args.day_devices)?;
        let mut agg = record::Aggregator::with_window_s(*window);
        let t0 = 1_800_000_000_000u64;
        let per_device = 86_400 / args.day_interval_s.max(1);
        let deny_every = if args.day_deny_percent > 0.0 {
            (100.0 / args.day_deny_percent).round().max(1.0) as u64
        } else {
            u64::MAX
        };
        let allow = Decision::allow("builtin:profile");
        let deny = Decision::deny("builtin:profile", "point `shell` is not in profile `bench`");
        let mut sent = 0u64;
        for k in 0..per_device {
            for (j, id) in ids.iter().enumerate() {
                // spread the devices over the interval
                let now = t0
                    + (k * args.day_interval_s * 1000)
                    + (j as u64 * args.day_interval_s * 1000) / ids.len().max(1) as u64;
                let m = make_msg(id, sent);
                sent += 1;
                let d = if sent.is_multiple_of(deny_every) {
                    &deny
                } else {
                    &allow
                };
                record::uplink(&mut agg, &audit, true, &m, d, None, now);
            }
        }
        agg.flush(&audit);
        audit.flush();
        drop(audit);
        let _ = h.join();
        let (rows1, file1) = db(&store)?;
        let records = store.audit_head().0;
        lines.push(serde_json::json!({
            "bench": "storage", "phase": "audit-per-day", "devices": args.day_devices,
            "interval_s": args.day_interval_s, "deny_percent": args.day_deny_percent,
            "aggregate_window_s": window,
            "messages": sent, "records": records,
            "row_bytes": rows1 - rows0, "db_bytes": file1.saturating_sub(file0),
        }));
    }

    for l in &lines {
        println!("{l}");
    }
    println!();
    println!(
        "{:<22} {:>12} {:>10} {:>10} {:>10}",
        "phase", "msgs/s", "p50 ns", "p99 ns", "max µs"
    );
    for l in &lines {
        if l["phase"]
            .as_str()
            .is_some_and(|p| p.starts_with("pipeline"))
        {
            println!(
                "{:<22} {:>12} {:>10} {:>10} {:>10}",
                l["phase"].as_str().unwrap_or(""),
                l["msgs_per_sec"],
                l["p50_ns"],
                l["p99_ns"],
                l["max_us"]
            );
        } else {
            println!("{l}");
        }
    }
    Ok(())
}

fn ids_for_import(n: u32) -> anyhow::Result<Vec<DeviceId>> {
    ids("imported", n)
}

/// A pipeline over `registry` with no plugins and a northbound that only counts.
fn bench_pipeline(registry: &Arc<Registry>, audit: &AuditSink, cfg: &Config) -> Pipeline {
    let nb = Northbound::new(
        "warden",
        "bench",
        None,
        None,
        Box::new(Arc::new(CountingSink::default())),
    );
    Pipeline::new(
        registry.clone(),
        Policy::from_config(cfg),
        vec![],
        audit.clone(),
        true,
        "default".into(),
        Arc::new(Metrics::new()),
        Arc::new(nb),
    )
}
