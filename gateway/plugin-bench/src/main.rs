//! `plugin-bench`: the plugin benchmark of issue 3. See README.md for what each row measures.

mod cedar;
mod measure;
mod mix;
mod native;
mod record;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::json;
use warden_plugin_host::{
    CacheOutcome, FailureCause, Host, HostOptions, Kv, Limits, Outcome, Plugin, Prepared, Request,
};

use measure::Summary;

#[derive(Parser, Debug)]
#[command(
    name = "plugin-bench",
    about = "Warden plugin benchmark: per-decision latency of the example plugins, native and Cedar references, the record-contract alternative, start-up from the AOT cache and a hostile neighbour"
)]
struct Args {
    /// Timed calls per decision row (each also gets untimed batch passes of as many calls).
    /// Default: 100000 (about 20 s of timed calls in release on a 2-core machine, plus the cold
    /// start-up, where the Python and JavaScript plugins take seconds each to compile); --smoke: 2000.
    #[arg(long)]
    iterations: Option<usize>,
    /// A tiny run for CI: proves every part runs and every check holds; the figures mean little.
    #[arg(long)]
    smoke: bool,
    /// Also print one JSON object per figure, one per line, after the table.
    #[arg(long)]
    json: bool,
    /// Where the built plugins are (plugins/build.sh's output).
    #[arg(long, env = "WARDEN_PLUGIN_OUT")]
    plugins: Option<PathBuf>,
    /// Where the example configs are (`<dir>/<example>/config.json`).
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Skip plugins whose .wasm is missing instead of failing (least_privilege, hostile and
    /// least_privilege_record are always required).
    #[arg(long)]
    skip_missing: bool,
    /// Print the mix's least-privilege deny reasons (counted) and exit.
    #[arg(long)]
    show_mix: bool,
    /// Interleaved good/hostile rounds in the under-attack part. Default: 2000; --smoke: 20.
    #[arg(long)]
    attack_rounds: Option<usize>,
}

/// The example plugins: (module name in the output dir, example directory).
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("least_privilege", "least-privilege", "Rust 0.2.0"),
    ("least_privilege_component", "least-privilege", "Rust 0.1.0"),
    ("least_privilege_c", "least-privilege-c", "C 0.2.0"),
    ("rate_limit", "rate-limit", "Rust 0.2.0"),
    ("business_hours", "business-hours", "Rust 0.2.0"),
    ("assurance_floor", "assurance-floor", "Rust 0.2.0"),
    ("assurance_floor_py", "assurance-floor-py", "Python"),
    ("assurance_floor_js", "assurance-floor-js", "JavaScript"),
];
/// The four Rust examples: with a fifth plugin, the start-up sets.
const RUST_EXAMPLES: &[&str] = &[
    "least_privilege",
    "rate_limit",
    "business_hours",
    "assurance_floor",
];
/// The 0.2.0 floor: a core module whose `decide` allows at once.
const CORE_FLOOR: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "warden:policy@0.2.0#request-area") (result i32) (i32.const 1024))
  (func (export "warden:policy@0.2.0#init") (result i32) (i32.const 0))
  (func (export "warden:policy@0.2.0#decide") (result i32) (i32.const 0)))"#;
const HOSTILE_CONFIG: &str = r#"{"mode":"loop","targets":["sim:evil"]}"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Env {
    plugins: PathBuf,
    examples: PathBuf,
    skip_missing: bool,
}

impl Env {
    fn module(&self, name: &str) -> PathBuf {
        self.plugins.join(format!("{name}.wasm"))
    }
    fn config(&self, dir: &str) -> Result<String, String> {
        let p = self.examples.join(dir).join("config.json");
        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// Collected output: table lines and JSON figures.
#[derive(Default)]
struct Report {
    json: Vec<serde_json::Value>,
}

impl Report {
    fn section(&self, title: &str) {
        println!("\n== {title} ==");
    }
    fn figure(&mut self, v: serde_json::Value) {
        self.json.push(v);
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn options(cache_dir: &Path, key: [u8; 32]) -> HostOptions {
    HostOptions {
        cache_dir: Some(cache_dir.to_owned()),
        cache_key: key,
        trusted_keys: Vec::new(),
        // The bench loads unsigned builds; the signature check is a digest compare plus one
        // Ed25519 verification per plugin (tens of µs), measured by the host's own tests.
        require_signature: false,
        ..HostOptions::default()
    }
}

/// One plugin's start-up cost.
struct Loaded {
    /// Size of the module's AOT cache entry.
    cache_bytes: u64,
    name: String,
    cache: CacheOutcome,
    prepare_ms: f64,
    compile_ms: f64,
    instantiate_ms: f64,
    /// Kept alive until the start-up is over, as the gateway keeps it.
    _plugin: Plugin,
}

fn load(host: &Host, env: &Env, name: &str, config: &str) -> Result<Loaded, String> {
    let t = Instant::now();
    let prepared = host
        .prepare(name, &env.module(name))
        .map_err(|e| format!("{name}: {e}"))?;
    let prepare_ms = ms(t);
    let t = Instant::now();
    let plugin = host
        .instantiate(&prepared, config, granted(&prepared), Kv::default())
        .map_err(|e| format!("{name}: {e}"))?;
    let cache_bytes = host
        .cache_path(&prepared.sha256)
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    Ok(Loaded {
        cache_bytes,
        name: name.to_owned(),
        cache: prepared.cache,
        prepare_ms,
        compile_ms: prepared.compile_ms,
        instantiate_ms: ms(t),
        _plugin: plugin,
    })
}

/// The timings of a [`Loaded`].
#[derive(Clone)]
struct LoadTimes {
    name: String,
    cache_bytes: u64,
    prepare_ms: f64,
    compile_ms: f64,
    instantiate_ms: f64,
}

impl LoadTimes {
    fn of(l: &Loaded) -> Self {
        Self {
            name: l.name.clone(),
            cache_bytes: l.cache_bytes,
            prepare_ms: l.prepare_ms,
            compile_ms: l.compile_ms,
            instantiate_ms: l.instantiate_ms,
        }
    }
}

struct Started {
    host_new_ms: f64,
    total_ms: f64,
    loaded: Vec<Loaded>,
}

/// `Host::new` + prepare + instantiate for `set` (names and configs), from `cache_dir`.
fn start(
    env: &Env,
    cache_dir: &Path,
    key: [u8; 32],
    set: &[(&str, String)],
) -> Result<Started, String> {
    let t0 = Instant::now();
    let host = Host::new(options(cache_dir, key)).map_err(|e| e.to_string())?;
    let host_new_ms = ms(t0);
    let mut loaded = Vec::new();
    for (name, config) in set {
        loaded.push(load(&host, env, name, config)?);
    }
    Ok(Started {
        host_new_ms,
        total_ms: ms(t0),
        loaded,
    })
}

/// The config a plugin is loaded with: its example's, or the hostile plugin's loop mode.
fn config_of(env: &Env, name: &str) -> Result<String, String> {
    if name == "hostile" {
        return Ok(HOSTILE_CONFIG.to_owned());
    }
    let dir = EXAMPLES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, _)| *d)
        .ok_or_else(|| format!("{name} is not an example"))?;
    env.config(dir)
}

/// Start-up figures: three sets of five plugins (the four Rust examples plus the hostile one
/// (all Rust), plus the Python one, plus the JavaScript one), each cold (empty AOT cache: every
/// module compiles) where it makes sense, and warm (second start, every module from the cache;
/// median of `repeats`). Returns a host on a cache holding every plugin, for what follows.
fn startup(
    env: &Env,
    present: &dyn Fn(&str) -> bool,
    repeats: usize,
    report: &mut Report,
) -> Result<(Host, [tempfile::TempDir; 2]), String> {
    let key: [u8; 32] = *b"warden-plugin-bench-cache-key-01";
    let rust_dir = tempfile::tempdir().map_err(|e| format!("temporary cache dir: {e}"))?;
    let all_dir = tempfile::tempdir().map_err(|e| format!("temporary cache dir: {e}"))?;
    let with = |fifth: &str| -> Result<Vec<(&'static str, String)>, String> {
        RUST_EXAMPLES
            .iter()
            .copied()
            .chain(
                EXAMPLES
                    .iter()
                    .map(|(n, _, _)| *n)
                    .chain(["hostile"])
                    .filter(|n| *n == fifth),
            )
            .filter(|n| present(n))
            .map(|n| Ok((n, config_of(env, n)?)))
            .collect()
    };
    // (label, plugins and configs, cache dir, measured cold too)
    type Set<'a> = (&'static str, Vec<(&'static str, String)>, &'a Path, bool);
    let all_sets: [Set; 3] = [
        (
            "4 Rust + hostile (Rust)",
            with("hostile")?,
            rust_dir.path(),
            true,
        ),
        (
            "4 Rust + Python",
            with("assurance_floor_py")?,
            all_dir.path(),
            true,
        ),
        (
            "4 Rust + JavaScript",
            with("assurance_floor_js")?,
            all_dir.path(),
            false,
        ),
    ];
    report.section("Start-up: Host::new + prepare + instantiate (with init) of 5 plugins, from an empty AOT cache (cold) and from a warm one");
    let (sets, skipped): (Vec<Set>, Vec<Set>) = all_sets.into_iter().partition(|s| s.1.len() == 5);
    for (label, ..) in &skipped {
        println!("(set {label} skipped: a plugin of it is missing)");
    }
    // Per plugin: (cold, warm) timings, in first-seen order.
    let mut per_plugin: Vec<(String, Option<LoadTimes>, Option<LoadTimes>)> = Vec::new();
    let mut note = |times: &[LoadTimes], warm: bool| {
        for t in times {
            let i = match per_plugin.iter().position(|(n, _, _)| *n == t.name) {
                Some(i) => i,
                None => {
                    per_plugin.push((t.name.clone(), None, None));
                    per_plugin.len() - 1
                }
            };
            if let Some(slot) = per_plugin.get_mut(i) {
                let slot = if warm { &mut slot.2 } else { &mut slot.1 };
                if slot.is_none() {
                    *slot = Some(t.clone());
                }
            }
        }
    };
    let mut totals = Vec::new();
    // Cold: the all-Rust set into its own cache, the Python set into the shared one; then the
    // rest (JavaScript, hostile) compiled into the shared cache, timed per plugin only.
    for (label, set, dir, _) in sets.iter().filter(|s| s.3) {
        let cold = start(env, dir, key, set)?;
        let times: Vec<LoadTimes> = cold.loaded.iter().map(LoadTimes::of).collect();
        note(&times, false);
        totals.push((
            *label,
            "cold",
            cold.total_ms,
            cold.host_new_ms,
            1usize,
            cold.total_ms,
            cold.total_ms,
        ));
    }
    {
        let host = Host::new(options(all_dir.path(), key)).map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        for name in ["assurance_floor_js", "hostile"]
            .into_iter()
            .filter(|n| present(n))
        {
            times.push(LoadTimes::of(&load(
                &host,
                env,
                name,
                &config_of(env, name)?,
            )?));
        }
        note(&times, false);
    }
    for (label, set, dir, _) in &sets {
        let mut runs = Vec::new();
        for _ in 0..repeats.max(1) {
            let s = start(env, dir, key, set)?;
            if let Some(l) = s.loaded.iter().find(|l| l.cache != CacheOutcome::Hit) {
                return Err(format!(
                    "{}: the warm start did not hit the AOT cache ({})",
                    l.name,
                    l.cache.as_str()
                ));
            }
            runs.push((
                s.total_ms,
                s.host_new_ms,
                s.loaded.iter().map(LoadTimes::of).collect::<Vec<_>>(),
            ));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (min, max) = (
            runs.first().map_or(f64::NAN, |r| r.0),
            runs.last().map_or(f64::NAN, |r| r.0),
        );
        let median = runs.get(runs.len() / 2).ok_or("no warm run")?;
        note(&median.2, true);
        totals.push((*label, "warm", median.0, median.1, runs.len(), min, max));
    }
    println!(
        "{:<26} {:>15} {:>16} {:>16} {:>8} {:>9}",
        "plugin", "cold compile ms", "warm prepare ms", "(cache load ms)", "init ms", "cache MB"
    );
    for (name, cold, warm) in &per_plugin {
        let f = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.2}"));
        println!(
            "{name:<26} {:>15} {:>16} {:>16} {:>8} {:>9}",
            f(cold.as_ref().map(|c| c.compile_ms)),
            f(warm.as_ref().map(|w| w.prepare_ms)),
            f(warm.as_ref().map(|w| w.compile_ms)),
            f(warm.as_ref().map(|w| w.instantiate_ms)),
            f(warm.as_ref().map(|w| w.cache_bytes as f64 / 1e6)),
        );
        report.figure(json!({"figure": "startup_plugin", "plugin": name,
            "cold_compile_ms": cold.as_ref().map(|c| round3(c.compile_ms)),
            "warm_prepare_ms": warm.as_ref().map(|w| round3(w.prepare_ms)),
            "warm_cache_load_ms": warm.as_ref().map(|w| round3(w.compile_ms)),
            "instantiate_ms": warm.as_ref().map(|w| round3(w.instantiate_ms)),
            "cache_entry_bytes": warm.as_ref().map(|w| w.cache_bytes)}));
    }
    for (label, cache, total, host_new, runs, min, max) in totals {
        let plugins: Vec<&str> = sets
            .iter()
            .find(|s| s.0 == label)
            .map(|s| s.1.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        if cache == "cold" {
            println!("5 plugins, {label:<22} cold: {total:>9.1} ms (Host::new {host_new:.2} ms)");
        } else {
            println!(
                "5 plugins, {label:<22} warm: {total:>9.1} ms (Host::new {host_new:.2} ms; median of {runs}, min {min:.1}, max {max:.1})"
            );
        }
        report.figure(
            json!({"figure": "startup", "set": label, "plugins": plugins, "cache": cache,
            "total_ms": round3(total), "host_new_ms": round3(host_new), "runs": runs,
            "min_ms": round3(min), "max_ms": round3(max)}),
        );
    }
    let host = Host::new(options(all_dir.path(), key)).map_err(|e| e.to_string())?;
    Ok((host, [rust_dir, all_dir]))
}

fn print_row(subject: &str, s: &Summary, fuel: Option<f64>) {
    let fuel = fuel.map_or("-".to_owned(), |f| format!("{f:.0}"));
    let batch = if s.batch_mean_ns.is_nan() {
        "-".to_owned()
    } else {
        format!("{:.1}", s.batch_mean_ns)
    };
    println!(
        "{subject:<52} {:>10.0} {:>10.0} {:>12} {:>10} {:>9}",
        s.median_ns, s.p99_ns, batch, fuel, s.samples
    );
}

fn decision_figure(subject: &str, kind: &str, s: &Summary, fuel: Option<f64>) -> serde_json::Value {
    json!({
        "figure": "decision",
        "subject": subject,
        "kind": kind,
        "median_ns": s.median_ns,
        "p99_ns": s.p99_ns,
        "max_ns": s.max_ns,
        "batch_mean_ns": round1(s.batch_mean_ns),
        "fuel_per_decision": fuel.map(round1),
        "samples": s.samples,
    })
}

/// Mean fuel per decision over one pass of the mix.
fn mean_fuel(p: &mut Plugin, mix: &[Request]) -> f64 {
    let mut sum = 0u64;
    for r in mix {
        p.decide(r);
        sum += p.stats().last_fuel_used;
    }
    sum as f64 / mix.len().max(1) as f64
}

fn check_no_failures(
    name: &str,
    p: &mut Plugin,
    mix: &[Request],
) -> Result<(usize, usize), String> {
    let (mut allow, mut deny) = (0, 0);
    for r in mix {
        match p.decide(r) {
            Outcome::Allow => allow += 1,
            Outcome::Deny(_) | Outcome::Quarantine(_) => deny += 1,
            Outcome::Failed(f) => {
                return Err(format!(
                    "{name} failed on a benchmark request ({f}); its figures would be meaningless.\nrequest: {}",
                    serde_json::to_string(r).unwrap_or_default()
                ));
            }
        }
    }
    Ok((allow, deny))
}

fn run(args: Args) -> Result<(), String> {
    let smoke = args.smoke;
    let iterations = args
        .iterations
        .unwrap_or(if smoke { 2_000 } else { 100_000 });
    let attack_rounds = args.attack_rounds.unwrap_or(if smoke { 20 } else { 2_000 });
    let mix_len = if smoke { 200 } else { 1_000 };
    let warm_repeats = if smoke { 1 } else { 5 };
    let env = Env {
        plugins: args
            .plugins
            .clone()
            .unwrap_or_else(|| repo_root().join("target/plugins")),
        examples: args
            .examples
            .clone()
            .unwrap_or_else(|| repo_root().join("plugins/examples")),
        skip_missing: args.skip_missing,
    };
    let mut report = Report::default();
    let run_started = Instant::now();

    // Which plugins exist.
    let mut missing = Vec::new();
    for name in EXAMPLES
        .iter()
        .map(|(n, _, _)| *n)
        .chain(["hostile", "least_privilege_record"])
    {
        if !env.module(name).is_file() {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        let msg = format!(
            "missing plugin builds in {}: {} (build them with `bash plugins/build.sh`)",
            env.plugins.display(),
            missing.join(", ")
        );
        let required = ["least_privilege", "hostile", "least_privilege_record"];
        if !env.skip_missing || missing.iter().any(|m| required.contains(m)) {
            return Err(msg);
        }
        eprintln!("warning: {msg}; skipping them");
    }
    let present = |name: &str| !missing.contains(&name);

    // The mix.
    let lp_config_text = env.config("least-privilege")?;
    let lp_config = native::Config::parse(&lp_config_text)?;
    let mut rng = mix::Rng::new(0x5741_5244_454e); // "WARDEN"
    let devices = mix::fleet(&lp_config, 48, &mut rng);
    let requests = mix::requests(&lp_config, &devices, mix_len, &mut rng);
    let native_lp = native::LeastPrivilege::new(&lp_config);
    let denied = requests
        .iter()
        .filter(|r| native_lp.decide(r) != Outcome::Allow)
        .count();
    let uplinks = requests
        .iter()
        .filter(|r| r.direction == warden_core::Direction::Uplink)
        .count();
    let points: usize = requests.iter().map(|r| r.points.len()).sum();
    println!(
        "plugin-bench{}: {} requests ({} uplinks, {} downlinks, {:.2} points or arguments each; least-privilege denies {}), {} devices, {iterations} timed calls per row",
        if smoke { " --smoke" } else { "" },
        requests.len(),
        uplinks,
        requests.len() - uplinks,
        points as f64 / requests.len().max(1) as f64,
        denied,
        devices.len(),
    );
    if args.show_mix {
        let mut reasons = std::collections::BTreeMap::<String, usize>::new();
        for r in &requests {
            *reasons.entry(native_lp.decide(r).reason()).or_default() += 1;
        }
        for (reason, n) in reasons {
            println!(
                "{n:>6}  {}",
                if reason.is_empty() {
                    "(allow)"
                } else {
                    &reason
                }
            );
        }
        return Ok(());
    }
    report.figure(
        json!({"figure": "mix", "requests": requests.len(), "uplinks": uplinks,
        "downlinks": requests.len() - uplinks, "points": points, "least_privilege_denies": denied,
        "devices": devices.len(), "iterations": iterations, "smoke": smoke}),
    );

    // ---------------------------------------------------------------- start-up
    let (host, _caches) = startup(&env, &present, warm_repeats, &mut report)?;
    let prepared_lp = host
        .prepare("least_privilege", &env.module("least_privilege"))
        .map_err(|e| format!("least_privilege: {e}"))?;

    // ---------------------------------------------------------------- decisions
    report.section(&format!(
        "Per decision: warm instance, default Limits (fuel {} + epoch deadline {} ms), {} timed calls over the mix",
        Limits::default().fuel,
        Limits::default().deadline_ms,
        iterations
    ));
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>10} {:>9}",
        "subject", "median ns", "p99 ns", "batch ns", "fuel", "samples"
    );
    let timer = measure::timer_overhead(iterations.max(10_000));
    print_row(
        "(timer: Instant::now + elapsed, nothing timed)",
        &timer,
        None,
    );
    report.figure(
        json!({"figure": "timer_overhead", "median_ns": timer.median_ns, "p99_ns": timer.p99_ns}),
    );

    // The least-privilege plugin first, and its decisions checked against the references.
    let mut lp_plugin = host
        .instantiate(
            &prepared_lp,
            &lp_config_text,
            Limits::default(),
            Kv::default(),
        )
        .map_err(|e| format!("least_privilege: {e}"))?;
    let plugin_outcomes: Vec<Outcome> = requests.iter().map(|r| lp_plugin.decide(r)).collect();
    let cedar_rule = cedar::CedarRule::new(
        &lp_config,
        devices
            .iter()
            .map(|d| (d.info.id.as_str(), d.info.role.as_deref())),
    )?;
    let mut record_plugin = record::RecordPlugin::load(
        &env.module("least_privilege_record"),
        &lp_config_text,
        &Limits::default(),
    )?;
    let mut mismatches = Vec::new();
    for (i, (r, got)) in requests.iter().zip(&plugin_outcomes).enumerate() {
        let native = native_lp.decide(r);
        let cedar = cedar_rule.decide(r);
        let rec = record_plugin.decide(r)?;
        if matches!(got, Outcome::Failed(_))
            || *got != native
            || rec != native
            || cedar != (native == Outcome::Allow)
        {
            mismatches.push(format!(
                "request {i}: plugin {got:?}, native {native:?}, record {rec:?}, cedar allow={cedar}\n  {}",
                serde_json::to_string(r).unwrap_or_default()
            ));
        }
    }
    if !mismatches.is_empty() {
        return Err(format!(
            "the least-privilege implementations disagree on {} of {} requests:\n{}",
            mismatches.len(),
            requests.len(),
            mismatches
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let allowed = plugin_outcomes
        .iter()
        .filter(|o| **o == Outcome::Allow)
        .count();
    println!(
        "(checked: the plugin, native Rust, the record-contract guest and Cedar agree on all {} requests: {} allow, {} deny)",
        requests.len(),
        allowed,
        requests.len() - allowed
    );
    report.figure(json!({"figure": "agreement", "requests": requests.len(), "allow": allowed, "deny": requests.len() - allowed,
        "implementations": ["plugin", "native", "record", "cedar"]}));

    // The gateway's plugin chain fills one request per message and lends it to each plugin
    // without a copy (`decide_in_place`); the rows below decide the same way.
    let cells: Vec<std::cell::RefCell<Box<Request>>> = requests
        .iter()
        .map(|r| std::cell::RefCell::new(Box::new(r.clone())))
        .collect();
    let mut lp_baseline = Summary::default();
    for (name, dir, lang) in EXAMPLES.iter().filter(|(n, _, _)| present(n)) {
        let mut p = if *name == "least_privilege" {
            std::mem::replace(
                &mut lp_plugin,
                host.instantiate(
                    &prepared_lp,
                    &lp_config_text,
                    Limits::default(),
                    Kv::default(),
                )
                .map_err(|e| format!("least_privilege: {e}"))?,
            )
        } else {
            let prepared = host
                .prepare(name, &env.module(name))
                .map_err(|e| format!("{name}: {e}"))?;
            host.instantiate(
                &prepared,
                &env.config(dir)?,
                granted(&prepared),
                Kv::default(),
            )
            .map_err(|e| format!("{name}: {e}"))?
        };
        let (allow, deny) = check_no_failures(name, &mut p, &requests)?;
        let mut failures: Vec<String> = Vec::new();
        let calls_before = p.stats().calls;
        let s = measure::bench(&cells, iterations, |r| {
            let o = p.decide_in_place(&mut r.borrow_mut());
            if let Outcome::Failed(f) = &o {
                failures.push(f.to_string());
            }
            o
        });
        let calls = p.stats().calls - calls_before;
        let fuel = mean_fuel(&mut p, &requests);
        let subject = format!("{name} ({lang} plugin; {allow} allow/{deny} deny)");
        print_row(&subject, &s, Some(fuel));
        let mut fig = decision_figure(
            name,
            &format!("wasm-{}", lang.to_lowercase().replace(' ', "-")),
            &s,
            Some(fuel),
        );
        if let Some(o) = fig.as_object_mut() {
            o.insert("allow".into(), json!(allow));
            o.insert("deny".into(), json!(deny));
            o.insert("failures".into(), json!(failures.len()));
        }
        report.figure(fig);
        if let Some(first) = failures.first() {
            // A failure is a deny in production: report it loudly, but keep measuring.
            println!(
                "  !! {name} FAILED {} of {} calls (fails closed: each is a deny); first: {first}",
                failures.len(),
                calls
            );
        }
        if *name == "least_privilege" {
            lp_baseline = s;
            // The references right under it.
            let s = measure::bench(&requests, iterations, |r| native_lp.decide(r));
            print_row("  least-privilege as native Rust", &s, None);
            report.figure(decision_figure("least_privilege", "native", &s, None));
            let s = measure::bench(&requests, iterations, |r| cedar_rule.decide(r));
            print_row(
                &format!(
                    "  least-privilege as Cedar ({} policies)",
                    cedar_rule.policy_count()
                ),
                &s,
                None,
            );
            report.figure(decision_figure("least_privilege", "cedar", &s, None));
            let mut fuel_sum = 0u64;
            let s = measure::bench(&requests, iterations, |r| record_plugin.decide(r));
            for r in &requests {
                record_plugin.decide(r)?;
                fuel_sum += record_plugin.last_fuel_used;
            }
            let fuel = fuel_sum as f64 / requests.len().max(1) as f64;
            print_row(
                "  least-privilege, record contract (alternative)",
                &s,
                Some(fuel),
            );
            report.figure(decision_figure(
                "least_privilege",
                "wasm-rust-record-contract",
                &s,
                Some(fuel),
            ));
        }
    }

    // The floor: a plugin that allows at once, without a single host call.
    let hostile_prepared = host
        .prepare("hostile", &env.module("hostile"))
        .map_err(|e| format!("hostile: {e}"))?;
    let mut floor = host
        .instantiate(
            &hostile_prepared,
            r#"{"mode":"ok"}"#,
            Limits::default(),
            Kv::default(),
        )
        .map_err(|e| format!("hostile (mode ok): {e}"))?;
    check_no_failures("hostile (mode ok)", &mut floor, &requests)?;
    let s = measure::bench(&cells, iterations, |r| floor.decide_in_place(&mut r.borrow_mut()));
    let fuel = mean_fuel(&mut floor, &requests);
    print_row(
        "(floor 0.1.0: a component allowing at once, no host call)",
        &s,
        Some(fuel),
    );
    report.figure(decision_figure(
        "hostile-mode-ok",
        "wasm-rust-floor",
        &s,
        Some(fuel),
    ));
    drop(floor);
    // The 0.2.0 floor: a core module that allows at once (the request area is still written).
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let core_floor = dir.path().join("core_floor.wasm");
    std::fs::write(
        &core_floor,
        wat::parse_str(CORE_FLOOR).map_err(|e| format!("core floor: {e}"))?,
    )
    .map_err(|e| e.to_string())?;
    let prepared = host
        .prepare("core_floor", &core_floor)
        .map_err(|e| format!("core floor: {e}"))?;
    let mut floor = host
        .instantiate(&prepared, "{}", Limits::default(), Kv::default())
        .map_err(|e| format!("core floor: {e}"))?;
    check_no_failures("core floor", &mut floor, &requests)?;
    let s = measure::bench(&cells, iterations, |r| floor.decide_in_place(&mut r.borrow_mut()));
    let fuel = mean_fuel(&mut floor, &requests);
    print_row(
        "(floor 0.2.0: a core module allowing at once)",
        &s,
        Some(fuel),
    );
    report.figure(decision_figure("core-floor", "wasm-floor-0.2.0", &s, Some(fuel)));
    drop(floor);
    // What `decide` (not in place) adds: the host copies the message into the store's Request.
    let mut buffer = Request::default();
    let s = measure::bench(&requests, iterations, |r| buffer.copy_from(r));
    print_row("(host part: Request::copy_from, reused buffer)", &s, None);
    report.figure(decision_figure("request-copy", "native", &s, None));

    // ---------------------------------------------------------------- under attack
    attack(
        &host,
        &env,
        &requests,
        &prepared_lp,
        &lp_config_text,
        &native_lp,
        attack_rounds,
        &lp_baseline,
        &mut report,
    )?;

    println!(
        "\n(total run time {:.1} s)",
        run_started.elapsed().as_secs_f64()
    );
    if args.json {
        println!();
        for f in &report.json {
            println!("{f}");
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn attack(
    host: &Host,
    env: &Env,
    requests: &[Request],
    prepared_lp: &Prepared,
    lp_config: &str,
    native_lp: &native::LeastPrivilege,
    rounds: usize,
    baseline: &Summary,
    report: &mut Report,
) -> Result<(), String> {
    let limits = Limits::default();
    report.section(&format!(
        "Under attack: least_privilege for good devices interleaved 1:1 on one thread with the hostile plugin looping for `sim:evil` (fuel {}), {rounds} rounds",
        limits.fuel
    ));
    let hostile_prepared = host
        .prepare("hostile", &env.module("hostile"))
        .map_err(|e| format!("hostile: {e}"))?;
    let mut evil = Request::from_json(
        r#"{"device":{"id":"sim:evil","zone":"lab","role":"sensor"},"direction":"uplink","kind":"telemetry","points":[{"name":"temperature","value":20.5,"unit":"C"}],"assurance":"channel","fresh":true,"time_ms":1763460000000}"#,
    )
    .map_err(|e| e.to_string())?;
    evil.normalize();
    let mut good = host
        .instantiate(prepared_lp, lp_config, limits.clone(), Kv::default())
        .map_err(|e| format!("least_privilege: {e}"))?;
    // Phase 1: a hostile plugin that is never disabled, so every call burns its whole budget
    // and the instance is recreated after it.
    let mut hostile = host
        .instantiate(
            &hostile_prepared,
            HOSTILE_CONFIG,
            Limits {
                max_failures: u32::MAX,
                cpu_ms_per_sec: u64::MAX,
                ..limits.clone()
            },
            Kv::default(),
        )
        .map_err(|e| format!("hostile: {e}"))?;
    // The hostile plugin lets everyone else through.
    if let Some(r) = requests.first()
        && hostile.decide(r) != Outcome::Allow
    {
        return Err(
            "the hostile plugin (mode loop) should allow devices it does not target".into(),
        );
    }
    let mut good_ns = Vec::with_capacity(rounds);
    let mut hostile_ns = Vec::with_capacity(rounds);
    let mut causes = std::collections::BTreeMap::<&'static str, usize>::new();
    for (i, r) in requests.iter().cycle().take(rounds).enumerate() {
        let mut lent = Box::new(r.clone());
        let t = Instant::now();
        let got = good.decide_in_place(&mut lent);
        good_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let t = Instant::now();
        let bad = hostile.decide(&evil);
        hostile_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if got != native_lp.decide(r) {
            return Err(format!(
                "round {i}: the good plugin's decision changed under attack: {got:?}"
            ));
        }
        match bad {
            Outcome::Failed(f) => *causes.entry(f.cause.as_str()).or_default() += 1,
            other => {
                return Err(format!(
                    "round {i}: the hostile plugin returned {other:?} instead of failing"
                ));
            }
        }
    }
    let g = measure::summarize(good_ns);
    let h = measure::summarize(hostile_ns);
    let hs = hostile.stats();
    println!("{:<52} {:>10} {:>10} {:>10}", "", "median", "p99", "max");
    println!(
        "{:<52} {:>7.0} ns {:>7.0} ns {:>7.0} ns",
        "good decision, no neighbour (from the table above)",
        baseline.median_ns,
        baseline.p99_ns,
        baseline.max_ns
    );
    println!(
        "{:<52} {:>7.0} ns {:>7.0} ns {:>7.0} ns",
        "good decision, interleaved with hostile calls", g.median_ns, g.p99_ns, g.max_ns
    );
    println!(
        "{:<52} {:>7.0} µs {:>7.0} µs {:>7.0} µs",
        "hostile call (burns its fuel and fails, or `restarting`)",
        h.median_ns / 1e3,
        h.p99_ns / 1e3,
        h.max_ns / 1e3
    );
    println!(
        "  hostile failures by cause: {:?}; instance restarts: {}; fuel used by the last one: {}",
        causes, hs.restarts, hs.last_fuel_used
    );
    report.figure(
        json!({"figure": "attack", "phase": "looping", "rounds": rounds,
        "good_median_ns": g.median_ns, "good_p99_ns": g.p99_ns, "good_max_ns": g.max_ns,
        "baseline_median_ns": baseline.median_ns, "baseline_p99_ns": baseline.p99_ns,
        "hostile_median_us": round3(h.median_ns / 1e3), "hostile_p99_us": round3(h.p99_ns / 1e3),
        "hostile_max_us": round3(h.max_ns / 1e3), "causes": causes, "restarts": hs.restarts,
        "fuel": limits.fuel}),
    );

    // Phase 2: the default max_failures disables it; then each call is refused up front.
    let mut hostile = host
        .instantiate(
            &hostile_prepared,
            HOSTILE_CONFIG,
            limits.clone(),
            Kv::default(),
        )
        .map_err(|e| format!("hostile: {e}"))?;
    let mut to_disable = 0;
    while !hostile.is_disabled() {
        to_disable += 1;
        if to_disable > limits.max_failures + 1 {
            return Err(format!(
                "the hostile plugin is not disabled after {} failures",
                to_disable - 1
            ));
        }
        hostile.wait_ready(std::time::Duration::from_secs(10));
        hostile.decide(&evil);
    }
    let disabled_rounds = rounds * 10;
    let mut good_ns = Vec::with_capacity(disabled_rounds);
    let mut disabled_ns = Vec::with_capacity(disabled_rounds);
    for (i, r) in requests.iter().cycle().take(disabled_rounds).enumerate() {
        let mut lent = Box::new(r.clone());
        let t = Instant::now();
        let got = good.decide_in_place(&mut lent);
        good_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let t = Instant::now();
        let bad = hostile.decide(&evil);
        disabled_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if got != native_lp.decide(r) {
            return Err(format!(
                "round {i}: the good plugin's decision changed: {got:?}"
            ));
        }
        if !matches!(&bad, Outcome::Failed(f) if f.cause == FailureCause::Disabled) {
            return Err(format!("round {i}: the disabled plugin returned {bad:?}"));
        }
    }
    let g = measure::summarize(good_ns);
    let d = measure::summarize(disabled_ns);
    println!(
        "{:<52} {:>7.0} ns {:>7.0} ns {:>7.0} ns",
        format!("good decision, next to the disabled one ({disabled_rounds})"),
        g.median_ns,
        g.p99_ns,
        g.max_ns
    );
    println!(
        "{:<52} {:>7.0} ns {:>7.0} ns {:>7.0} ns",
        format!("disabled call (after {to_disable} failures)"),
        d.median_ns,
        d.p99_ns,
        d.max_ns
    );
    report.figure(
        json!({"figure": "attack", "phase": "disabled", "rounds": disabled_rounds,
        "failures_to_disable": to_disable, "good_median_ns": g.median_ns, "good_p99_ns": g.p99_ns,
        "disabled_median_ns": d.median_ns, "disabled_p99_ns": d.p99_ns}),
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The default limits, with exactly the WASI packages the plugin imports granted (the gateway
/// takes them from each plugin's load config; here the plugins are the project's own).
/// The limits a measured plugin runs under: the defaults, its WASI grant, and no per-second CPU
/// budget (a benchmark loop spends all its time in the plugin by design; in a gateway an
/// expensive plugin is given a larger `cpu_ms_per_sec`).
///
/// The JavaScript example runs as its README says to run it, `recycle_after = 1000`: its
/// runtime's garbage collection inside a long-lived instance otherwise overruns the default fuel
/// from about the 2,300th decision.
fn granted(prepared: &warden_plugin_host::Prepared) -> Limits {
    Limits {
        wasi: warden_plugin_host::WasiGrants::required(&prepared.wasi_imports),
        cpu_ms_per_sec: u64::MAX,
        recycle_after: if prepared.name == "assurance_floor_js" {
            1000
        } else {
            0
        },
        ..Limits::default()
    }
}
