//! `warden`: the gateway binary and its command-line interface.

mod adapters;
mod api;
mod audit;
mod batch;
mod behaviour;
mod bench;
mod bench_anomaly;
mod bench_storage;
mod cli;
mod config;
mod disk;
mod files;
mod login_failures;
mod metrics;
mod northbound;
mod operations;
mod operators;
mod password;
mod pipeline;
mod plugins;
mod posture;
mod recent;
mod registry;
mod run;
mod sdnotify;
mod secrets;
mod store;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Warden: a zero-trust edge gateway for IoT devices"
)]
struct Cli {
    /// Data directory: database, keys, queue, API token.
    #[arg(
        long,
        global = true,
        env = "WARDEN_DATA_DIR",
        default_value = "warden-data"
    )]
    data_dir: PathBuf,
    /// Management API address (default: the one the running gateway wrote to the data dir).
    #[arg(long, global = true, env = "WARDEN_API")]
    api: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway.
    Run {
        /// Configuration file (TOML). Without one, secure defaults apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start simulated devices (a demo that runs end to end with no hardware).
        #[arg(long)]
        demo: bool,
        /// External broker, `mqtts://host:port` (overrides `mqtt.broker`).
        #[arg(long)]
        broker: Option<String>,
        /// Log as JSON lines.
        #[arg(long)]
        log_json: bool,
    },
    /// Check a configuration file and exit.
    CheckConfig { config: PathBuf },
    /// Gateway status (through the API).
    Status,
    /// Re-read the running gateway's config file: profiles, zones, models, controllers, plugin
    /// configs and baseline rules (through the API; admin only; a broken file is refused and the
    /// running config kept). `kill -HUP` on the gateway does the same.
    Reload,
    /// Device registry (through the API).
    Devices {
        #[command(subcommand)]
        cmd: cli::DevicesCmd,
    },
    /// Send a command to a device (through the API; the principal is `operator:<name>`).
    Command {
        device: String,
        command: String,
        /// Arguments as name=value.
        args: Vec<String>,
    },
    /// Operator accounts: roles, API tokens, passwords, TOTP (through the API; admin only).
    Operators {
        #[command(subcommand)]
        cmd: cli::operators::OperatorsCmd,
    },
    /// The audit log. Works directly on a stopped gateway's data dir.
    Audit {
        #[command(subcommand)]
        cmd: cli::AuditCmd,
    },
    /// Verify a signed northbound payload (from a file or stdin) against the gateway's public key.
    Verify {
        /// Payload file; `-` or absent for stdin.
        file: Option<PathBuf>,
        /// Public key file (default: <data-dir>/gateway.pub).
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Operator actions on an adapter: join windows, scans, removals, with live progress.
    Adapter {
        /// The adapter's name (`zigbee`, `zwave`, `ble`, `bacnet`, …).
        name: String,
        #[command(subcommand)]
        cmd: cli::adapter::AdapterCmd,
    },
    /// USB radio sticks: what is attached, what it is, the config to use.
    Hardware {
        #[command(subcommand)]
        cmd: cli::hardware::HardwareCmd,
    },
    /// Benchmark the pipeline in-process (JSON lines and a table).
    Bench(bench::BenchArgs),
    /// Wasm policy plugins: signing keys, signatures, and test runs against recorded traffic.
    Plugin {
        #[command(subcommand)]
        cmd: plugins::cli::PluginCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            config,
            demo,
            broker,
            log_json,
        } => run::main(run::RunArgs {
            config,
            data_dir: cli.data_dir,
            demo,
            broker,
            log_json,
        }),
        Cmd::CheckConfig { config } => run::check_config(&config, &cli.data_dir),
        Cmd::Status => cli::status(&cli.data_dir, cli.api.as_deref()),
        Cmd::Reload => cli::reload(&cli.data_dir, cli.api.as_deref()),
        Cmd::Devices { cmd } => cli::devices(&cli.data_dir, cli.api.as_deref(), cmd),
        Cmd::Command {
            device,
            command,
            args,
        } => cli::command(&cli.data_dir, cli.api.as_deref(), &device, &command, &args),
        Cmd::Operators { cmd } => cli::operators::main(&cli.data_dir, cli.api.as_deref(), cmd),
        Cmd::Audit { cmd } => cli::audit(&cli.data_dir, cmd),
        Cmd::Verify { file, pubkey } => cli::verify(&cli.data_dir, file, pubkey),
        Cmd::Adapter { name, cmd } => {
            cli::adapter::main(&cli.data_dir, cli.api.as_deref(), &name, cmd)
        }
        Cmd::Hardware { cmd } => cli::hardware::main(cmd),
        Cmd::Bench(args) => bench::main(args),
        Cmd::Plugin { cmd } => plugins::cli::main(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::FAILURE
        }
    }
}
