//! `warden plugin …`: keys, signatures, and running a plugin against recorded messages.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use warden_plugin_host::{Host, HostOptions, Kv, Limits, WasiGrants, signing, testrun};

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Create a plugin project that builds and tests out of the box (in DIR, default ./NAME).
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: super::scaffold::Lang,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin in DIR (default .: a Rust crate, or a Python/JavaScript project made by
    /// `plugin new`) into a component: DIR/target/plugin/NAME.wasm.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Cargo target dir to share between plugin projects (the wasm standard library is built
        /// once per target dir). Default DIR/target.
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// The componentizer of a Python or JavaScript project (componentize-py / componentize-js).
        #[arg(long)]
        tool: Option<PathBuf>,
    },
    /// Create a plugin-signing key pair: DIR/NAME.key (private, 0600) and DIR/NAME.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "plugin-signing")]
        name: String,
    },
    /// Sign a module: writes MODULE.sig (Ed25519 over the module's SHA-256).
    Sign {
        module: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Exit 0 only if MODULE.sig is a valid signature of exactly these bytes by this key.
    Verify {
        module: PathBuf,
        /// A `.pub` file or a base64 public key.
        #[arg(long)]
        pubkey: String,
        /// Default: MODULE.sig.
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// Run a plugin against messages (JSONL, the format `plugins.record` writes) and print each
    /// decision; exit non-zero when an expectation does not hold.
    Test {
        plugin: PathBuf,
        #[arg(long)]
        messages: PathBuf,
        /// Expectations, one JSON object per line, matched to the messages by line (otherwise
        /// each message's own `expect` member is used).
        #[arg(long)]
        expect: Option<PathBuf>,
        /// The plugin's config: a JSON or TOML file (default `{}`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Per-decision fuel (default: the gateway default).
        #[arg(long)]
        fuel: Option<u64>,
        /// WASI packages the plugin may import, comma-separated, as `wasi = [...]` in its
        /// `[[plugins.load]]` (default none; Python and JavaScript runtimes need some: the
        /// error names them).
        #[arg(long, value_delimiter = ',')]
        wasi: Vec<String>,
        /// `wasi:random` from the OS (as `real_random = true`); otherwise seeded per decision.
        #[arg(long)]
        real_random: bool,
        /// One JSON result per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn main(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            super::scaffold::new(&name, lang, &dir)
        }
        PluginCmd::Build {
            dir,
            target_dir,
            tool,
        } => {
            let out = super::scaffold::build(&dir, target_dir.as_deref(), tool.as_deref())?;
            println!("{}", out.display());
            Ok(())
        }
        PluginCmd::Keygen { out, name } => {
            let (private, public) = signing::keygen(&out, &name)
                .with_context(|| format!("cannot write keys in {}", out.display()))?;
            let key = signing::read_pubkey(&public.to_string_lossy())?;
            println!(
                "private key: {} (keep it off the gateway)",
                private.display()
            );
            println!(
                "public key:  {} (key id {})",
                public.display(),
                signing::key_id(&key)
            );
            Ok(())
        }
        PluginCmd::Sign { module, key } => {
            let sig = signing::sign(&module, &key)?;
            println!("{}", sig.display());
            Ok(())
        }
        PluginCmd::Verify {
            module,
            pubkey,
            sig,
        } => {
            let key = signing::read_pubkey(&pubkey)?;
            let sig = sig.unwrap_or_else(|| signing::sig_path(&module));
            signing::verify(&module, &sig, &key)?;
            println!(
                "{}: signature valid (key id {})",
                module.display(),
                signing::key_id(&key)
            );
            Ok(())
        }
        PluginCmd::Test {
            plugin,
            messages,
            expect,
            config,
            fuel,
            wasi,
            real_random,
            json,
        } => {
            let mut limits = Limits {
                // a replay runs flat out by design: the per-second CPU budget (the plugin's share
                // of a live pipeline) would disable any plugin on a long recording
                cpu_ms_per_sec: u64::MAX,
                ..Limits::default()
            };
            if let Some(f) = fuel {
                limits.fuel = f;
            }
            limits.wasi = WasiGrants::parse(&wasi).map_err(anyhow::Error::msg)?;
            limits.real_random = real_random;
            test(
                &plugin,
                &messages,
                expect.as_deref(),
                config.as_deref(),
                limits,
                json,
            )
        }
    }
}

fn read_config(path: Option<&Path>) -> anyhow::Result<String> {
    let Some(p) = path else {
        return Ok("{}".into());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    if p.extension().is_some_and(|e| e == "toml") {
        let t: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: not TOML", p.display()))?;
        Ok(serde_json::to_string(&t)?)
    } else {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        Ok(v.to_string())
    }
}

fn test(
    plugin: &Path,
    messages: &Path,
    expect: Option<&Path>,
    config: Option<&Path>,
    limits: Limits,
    json: bool,
) -> anyhow::Result<()> {
    let config_json = read_config(config)?;
    // A local test run checks behaviour, not provenance: signatures are checked by `verify`
    // and by the gateway at load time. No compiled-code cache: a cache's key kept beside it (the
    // only place a CLI run could keep one) would let whoever can write the cache plant native
    // code, and a fresh key per run would make the cache useless. Compiling is the cost.
    let host = Host::new(HostOptions {
        cache_dir: None,
        require_signature: false,
        ..HostOptions::default()
    })?;
    let name = plugin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let prepared = host.prepare(&name, plugin)?;
    let mut p = host.instantiate(&prepared, &config_json, limits, Kv::default())?;
    let cases = testrun::read_cases(messages, expect).map_err(anyhow::Error::msg)?;
    let report = testrun::run(&mut p, &cases);
    if json {
        for c in &report.cases {
            println!(
                "{}",
                serde_json::json!({
                    "line": c.line, "device": c.device, "verdict": c.verdict(),
                    "reason": c.reason(), "passed": c.passed, "fuel": c.fuel_used,
                })
            );
        }
    } else {
        println!("{report}");
    }
    if !report.all_passed() {
        bail!(
            "{} of {} expectations did not hold",
            report.mismatched,
            report.mismatched + report.passed
        );
    }
    Ok(())
}
