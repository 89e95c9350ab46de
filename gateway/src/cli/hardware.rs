//! `warden hardware list`: the USB radio sticks attached, what each one is (from the catalogue, and
//! from a probe when its USB id is shared by several kinds of stick), and the config section to paste,
//! with the stable `/dev/serial/by-id` path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use warden_hardware::catalogue::{self, Identification, Stack};
use warden_hardware::discover::{Problem, Roots, UsbPort, discover};
use warden_hardware::probe::{Probed, probe_port};

#[derive(Subcommand)]
pub enum HardwareCmd {
    /// List the USB serial sticks attached, what they are, and the config section for each.
    List {
        /// sysfs root.
        #[arg(long, default_value = "/sys")]
        sysfs: PathBuf,
        /// Directory of stable serial links.
        #[arg(long, default_value = "/dev/serial/by-id")]
        by_id: PathBuf,
        /// Directory holding the tty device nodes.
        #[arg(long, default_value = "/dev")]
        dev: PathBuf,
        /// Do not ask ambiguous sticks which stack they speak.
        #[arg(long)]
        no_probe: bool,
        /// How long each probe question waits for its answer.
        #[arg(long, default_value_t = 1500)]
        probe_timeout_ms: u64,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// One port as reported.
#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    port: UsbPort,
    /// The stack settled on (catalogue or probe), when one was.
    stack: Option<Stack>,
    /// The catalogue row used for the serial settings.
    model: Option<&'static str>,
    probe: Option<Probed>,
    probe_error: Option<String>,
    /// The TOML to paste, when a Warden adapter drives this stick.
    config: Option<String>,
    note: Option<String>,
}

fn config_section(stack: Stack, path: &Path, baud: u32) -> Option<String> {
    let port = path
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    match stack {
        Stack::Znp | Stack::Ezsp => Some(format!(
            "[adapters.zigbee]\nport = \"{port}\"\nstack = \"{}\"\nbaud = {baud}\n",
            stack.as_str()
        )),
        Stack::ZWaveSerialApi => Some(format!(
            "[adapters.zwave]\nport = \"{port}\"\nbaud = {baud}\n"
        )),
        Stack::Deconz | Stack::Zigate => None,
    }
}

async fn row(port: UsbPort, probe: bool, timeout: Duration) -> Row {
    let (hint, known) = match &port.identification {
        Identification::Known { entry, stack } => (Some(*entry), Some(*stack)),
        Identification::Ambiguous { hint, .. } => (*hint, None),
        Identification::Unknown => (None, None),
    };
    let mut r = Row {
        stack: known,
        model: hint,
        probe: None,
        probe_error: None,
        config: None,
        note: None,
        port,
    };
    if known.is_none() && probe && !r.port.identification.candidates().is_empty() {
        match probe_port(
            r.port.stable_path(),
            115_200,
            &r.port.identification.candidates(),
            timeout,
        )
        .await
        {
            Ok(p) => {
                r.stack = Some(p.stack());
                r.model = catalogue::row_for(p.stack(), hint).map(|e| e.name);
                r.probe = Some(p);
            }
            Err(e) => r.probe_error = Some(e.to_string()),
        }
    }
    if let Some(stack) = r.stack {
        let entry = r.model.and_then(catalogue::entry);
        let baud = entry.map_or(stack.default_baud(), |e| e.baud);
        r.config = config_section(stack, r.port.stable_path(), baud);
        let mut notes = Vec::new();
        if let Some(e) = entry.filter(|e| !e.note.is_empty()) {
            notes.push(e.note.to_owned());
        }
        if stack.adapter().is_none() {
            notes.push(format!("no Warden adapter speaks {} yet", stack.as_str()));
        }
        if r.port.by_id.is_none() {
            notes.push(format!(
                "no by-id link: {} may change name when sticks are replugged",
                r.port.dev_path.display()
            ));
        }
        r.note = (!notes.is_empty()).then(|| notes.join("; "));
    }
    r
}

#[derive(Serialize)]
struct Report {
    ports: Vec<Row>,
    problems: Vec<Problem>,
}

pub fn main(cmd: HardwareCmd) -> anyhow::Result<()> {
    let HardwareCmd::List {
        sysfs,
        by_id,
        dev,
        no_probe,
        probe_timeout_ms,
        json,
    } = cmd;
    let found = discover(&Roots { sysfs, by_id, dev });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_millis(probe_timeout_ms);
    let ports = rt.block_on(async {
        let mut rows = Vec::new();
        for p in found.ports {
            rows.push(row(p, !no_probe, timeout).await);
        }
        rows
    });
    let report = Report {
        ports,
        problems: found.problems,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if report.ports.is_empty() {
        println!("no USB serial stick found");
    }
    for r in &report.ports {
        let p = &r.port;
        println!(
            "{}  {}  {} {}",
            p.stable_path().display(),
            p.usb_id(),
            p.manufacturer.as_deref().unwrap_or("?"),
            p.product.as_deref().unwrap_or("?")
        );
        match (r.stack, &r.probe_error) {
            (Some(s), _) => println!(
                "  is: {} ({}){}",
                r.model.unwrap_or("unlisted model"),
                s.as_str(),
                if r.probe.is_some() { ", by probe" } else { "" }
            ),
            (None, Some(e)) => println!("  is: undetermined: {e}"),
            (None, None) => match &p.identification {
                Identification::Ambiguous { bridge, .. } => {
                    println!("  is: a {bridge} bridge; not probed (--no-probe)")
                }
                _ => println!("  is: not a stick Warden's catalogue knows"),
            },
        }
        if let Some(n) = &r.note {
            println!("  note: {n}");
        }
        if let Some(c) = &r.config {
            println!("  config:");
            for l in c.lines() {
                println!("    {l}");
            }
        }
    }
    for pr in &report.problems {
        println!("problem: {pr}");
    }
    Ok(())
}
