//! `warden adapter <name> join|close|scan|remove|status`: operator actions on an adapter, with the
//! operation's progress shown live — one line rewritten in place on a terminal, one line per change
//! otherwise — until it ends. Exits non-zero when the operation is refused or fails.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use super::Api;

#[derive(Subcommand)]
pub enum AdapterCmd {
    /// Open a join (inclusion) window.
    Join {
        /// How long the window stays open.
        #[arg(long, default_value_t = 120)]
        seconds: u32,
        /// Only this provisioned device may join (e.g. `zigbee:00124b001caabb01`).
        #[arg(long)]
        device: Option<String>,
        /// Only devices provisioned with an install code may join.
        #[arg(long)]
        install_code_only: bool,
        /// Z-Wave S2: the five-digit PIN on the joining device's label (the first group of its
        /// DSK), needed to grant S2 Authenticated or Access Control. Giving it again while a
        /// window is open replaces the window with one that carries it.
        #[arg(long)]
        pin: Option<String>,
        /// Return once the window is open instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Close the join window now.
    Close,
    /// Discover devices without letting any join.
    Scan {
        #[arg(long, default_value_t = 30)]
        seconds: u32,
        /// Look for the devices that have this object instead: an object name, or
        /// `type:instance` (`analog-value:1`). BACnet only (Who-Has).
        #[arg(long)]
        has: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Make a device leave the radio network.
    Remove {
        device: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// What the adapter supports and its latest operation.
    Status,
}

/// One progress line: `join window: running, 97 s left, 2 seen, 1 joined, 0 refused — interview…`.
pub(crate) fn progress_line(v: &serde_json::Value) -> String {
    let p = &v["progress"];
    let mut s = format!(
        "{} {}: {}",
        v["adapter"].as_str().unwrap_or("?"),
        v["request"]["op"].as_str().unwrap_or("?"),
        p["state"].as_str().unwrap_or("?")
    );
    if let Some(left) = p["seconds_left"].as_u64() {
        s.push_str(&format!(", {left} s left"));
    }
    s.push_str(&format!(
        ", {} seen, {} joined, {} refused",
        p["devices_seen"].as_u64().unwrap_or(0),
        p["devices_joined"].as_u64().unwrap_or(0),
        p["devices_refused"].as_u64().unwrap_or(0)
    ));
    if let Some(step) = p["step"].as_str() {
        s.push_str(&format!(" — {step}"));
    }
    if let Some(d) = p["detail"].as_str() {
        s.push_str(&format!(" ({d})"));
    }
    // everything shown came from the gateway: strip control characters before a terminal sees it
    s.retain(|c| !c.is_control());
    s
}

fn device_lines(v: &serde_json::Value) -> Vec<String> {
    v["progress"]["devices"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let mut l = format!(
                        "  {} {}",
                        d["device"].as_str().unwrap_or("?"),
                        d["state"].as_str().unwrap_or("?")
                    );
                    l.retain(|c| !c.is_control());
                    l
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn main(
    data_dir: &Path,
    api: Option<&str>,
    adapter: &str,
    cmd: AdapterCmd,
) -> anyhow::Result<()> {
    let api = Api::new(data_dir, api)?;
    let (body, wait) = match cmd {
        AdapterCmd::Status => {
            let all = api.json("GET", "/api/adapters", b"")?;
            let one = all
                .as_array()
                .and_then(|a| a.iter().find(|e| e["adapter"] == adapter))
                .cloned();
            match one {
                Some(e) => {
                    println!("{}", super::pretty(&e));
                    return Ok(());
                }
                None => bail!("no adapter `{adapter}` is running"),
            }
        }
        AdapterCmd::Join {
            seconds,
            device,
            install_code_only,
            pin,
            no_wait,
        } => {
            let mut j = serde_json::json!({"op": "join", "seconds": seconds, "device": device,
                "install_code_only": install_code_only});
            if let (Some(p), Some(o)) = (pin, j.as_object_mut()) {
                o.insert("pin".into(), serde_json::Value::String(p));
            }
            (j, !no_wait)
        }
        AdapterCmd::Close => (serde_json::json!({"op": "close"}), true),
        AdapterCmd::Scan {
            seconds,
            has,
            no_wait,
        } => (
            serde_json::json!({"op": "scan", "seconds": seconds, "has": has}),
            !no_wait,
        ),
        AdapterCmd::Remove { device, no_wait } => (
            serde_json::json!({"op": "remove", "device": device}),
            !no_wait,
        ),
    };
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let started = api.json(
        "POST",
        &format!("/api/adapters/{adapter}/operations"),
        body.to_string().as_bytes(),
    )?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    if !wait {
        println!("{}", progress_line(&started));
        return Ok(());
    }
    let tty = std::io::stdout().is_terminal();
    let mut last = serde_json::Value::Null;
    let mut shown = String::new();
    api.stream(
        &format!("/api/adapters/{adapter}/operations/{id}/stream"),
        |v| {
            let line = progress_line(&v);
            if line != shown {
                let mut out = std::io::stdout().lock();
                if tty {
                    let _ = write!(out, "\r\x1b[2K{line}");
                } else {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
                shown = line;
            }
            let done = v["progress"]["state"]
                .as_str()
                .is_some_and(|s| matches!(s, "done" | "cancelled" | "failed"));
            last = v;
            !done
        },
    )?;
    if tty {
        println!();
    }
    for l in device_lines(&last) {
        println!("{l}");
    }
    match last["progress"]["state"].as_str() {
        Some("done") | Some("cancelled") => Ok(()),
        Some("failed") => bail!("operation failed"),
        _ => bail!("the progress stream ended before the operation did"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_what_is_happening_and_strips_control_characters() {
        let v = serde_json::json!({
            "adapter": "zigbee", "request": {"op": "join", "seconds": 120},
            "progress": {"state": "running", "seconds_left": 97, "devices_seen": 2,
                "devices_joined": 1, "devices_refused": 1, "step": "interview\u{1b}[31m 1a2b"}
        });
        assert_eq!(
            progress_line(&v),
            "zigbee join: running, 97 s left, 2 seen, 1 joined, 1 refused — interview[31m 1a2b"
        );
    }
}
