//! Operator commands. `status`, `devices` and `command` talk to the running gateway's API; `audit` and
//! `verify` read the data dir directly, so forensics never depend on the process under suspicion.

// `serde_json::Value[...]` returns Null for a missing key or index; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;

pub mod adapter;
pub mod hardware;
pub mod operators;

use crate::audit;
use crate::audit::anchor;
use crate::northbound::envelope;
use crate::run::{API_ADDR_FILE, TOKEN_FILE};
use crate::store::{PUBKEY_FILE, open_readonly};

#[derive(Subcommand)]
pub enum DevicesCmd {
    /// All devices with status and counters.
    List,
    Show {
        id: String,
    },
    /// Approve a pending (or quarantined) device; optionally set its profile, zone and role (checked
    /// against the config). One audit record holds every change.
    Approve {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        role: Option<String>,
    },
    Quarantine {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Revoke a device. Terminal: only `re-enroll` brings it back (as pending).
    Revoke {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Let a quarantined device through again.
    Release {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Mark a device's anomaly alert as expected: its behaviour baseline absorbs what it sees for
    /// an hour instead of alerting (audited with the reason).
    Expect {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Bring a revoked device back as pending (audited with both states); approve it afterwards.
    ReEnroll {
        id: String,
        #[arg(long, value_parser = non_empty)]
        reason: String,
    },
    /// Bulk provisioning from TOML (`[[devices]]`) or CSV (by extension or --format). Existing
    /// devices keep their status, profile, zone and role unless --update is given.
    Import {
        file: PathBuf,
        #[arg(long)]
        format: Option<String>,
        /// Let the file change existing devices' status, profile, zone and role (audited from/to).
        #[arg(long)]
        update: bool,
    },
    /// Every device, without secrets.
    Export {
        #[arg(long, default_value = "toml")]
        format: String,
    },
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain and seals, and that the chain still holds every anchored head (the
    /// database's anchor row, and --head / --witness when given); exit non-zero naming the problem.
    Verify {
        /// Gateway public key to trust (default: <data-dir>/gateway.pub). Pin one kept elsewhere.
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// A head kept elsewhere (`warden status`, the retained MQTT audit-head): `SEQ:HASH`.
        #[arg(long)]
        head: Vec<String>,
        /// A witness file (`audit.witness_file`): every head since its last reset must be in the chain.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// Accept an audit chain that is shorter than its anchors (a wipe, a restored backup), so the
    /// gateway starts again. The gateway must be stopped. Audited as the next record, naming the lost
    /// head, and anchored with a reset mark in the database and the witness file.
    ResetAnchor {
        #[arg(long, value_parser = non_empty)]
        reason: String,
        /// The gateway's config (for `secrets.key_file` and `audit.witness_file`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The last records.
    Tail {
        #[arg(short, default_value_t = 20)]
        n: u64,
        #[arg(long)]
        json: bool,
    },
    /// All records for a SIEM.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Start at this sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
}

/// An API token in the environment takes precedence over `<data-dir>/api.token` (the bootstrap
/// admin's): how an operator other than `admin` uses the CLI.
pub const TOKEN_ENV: &str = "WARDEN_API_TOKEN";

pub(crate) struct Api {
    addr: String,
    token: String,
    /// Where the token came from, when it was the data dir's token file.
    token_file: Option<PathBuf>,
}

impl Api {
    pub(crate) fn new(data_dir: &Path, api: Option<&str>) -> anyhow::Result<Self> {
        let addr = match api {
            Some(a) => a
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            None => std::fs::read_to_string(data_dir.join(API_ADDR_FILE))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "127.0.0.1:7878".into()),
        };
        if let Ok(t) = std::env::var(TOKEN_ENV)
            && !t.trim().is_empty()
        {
            return Ok(Self {
                addr,
                token: t.trim().to_owned(),
                token_file: None,
            });
        }
        let path = data_dir.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "cannot read the API token in {} (is --data-dir right? or set {TOKEN_ENV})",
                    path.display()
                )
            })?
            .trim()
            .to_owned();
        Ok(Self {
            addr,
            token,
            token_file: Some(path),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn agent(timeout: Option<Duration>) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build()
            .into()
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the gateway API at {} (is `warden run` running?): {e}",
            self.addr
        )
    }

    /// One request; returns (status, body).
    fn call(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let agent = Self::agent(Some(Duration::from_secs(60)));
        let auth = format!("Bearer {}", self.token);
        let resp = match method {
            "GET" => agent
                .get(self.url(path))
                .header("Authorization", &auth)
                .call(),
            "DELETE" => agent
                .delete(self.url(path))
                .header("Authorization", &auth)
                .call(),
            _ => agent
                .post(self.url(path))
                .header("Authorization", &auth)
                .send(body),
        }
        .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .context("reading the API's answer")?;
        Ok((status, body))
    }

    /// A streamed GET: calls `line` with each newline-delimited JSON value until the stream ends
    /// or `line` returns false.
    pub(crate) fn stream(
        &self,
        path: &str,
        mut line: impl FnMut(serde_json::Value) -> bool,
    ) -> anyhow::Result<()> {
        let resp = Self::agent(None)
            .get(self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let mut reader = std::io::BufReader::new(resp.into_body().into_reader());
        if !(200..300).contains(&status) {
            let mut b = String::new();
            let _ = (&mut reader).take(64 * 1024).read_to_string(&mut b);
            bail!("{} (HTTP {status})", b.trim());
        }
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = std::io::BufRead::read_line(&mut (&mut reader).take(1 << 20), &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if buf.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(buf.trim())
                .with_context(|| "malformed progress line from the API")?;
            if !line(v) {
                return Ok(());
            }
        }
    }

    pub(crate) fn json(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<serde_json::Value> {
        let (code, b) = self.call(method, path, body)?;
        let v: serde_json::Value = serde_json::from_slice(&b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&b).into()));
        if !(200..300).contains(&code) {
            let msg = v
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            bail!("{msg} (HTTP {code})");
        }
        Ok(v)
    }
}

pub(crate) fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

pub fn status(data_dir: &Path, api: Option<&str>) -> anyhow::Result<()> {
    let v = Api::new(data_dir, api)?.json("GET", "/api/status", b"")?;
    println!("{}", pretty(&v));
    Ok(())
}

pub fn reload(data_dir: &Path, api: Option<&str>) -> anyhow::Result<()> {
    Api::new(data_dir, api)?
        .json("POST", "/api/config/reload", b"")
        .context("the config was not reloaded (the running one is kept)")?;
    println!("config reloaded");
    Ok(())
}

fn fmt_device_line(d: &serde_json::Value) -> String {
    let r = &d["device"];
    let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
    format!(
        "{:<32} {:<11} zone={:<10} profile={:<12} msgs={:<8} denied={:<6} firmware={:<10} posture={:<13} {}",
        s("id"),
        s("status"),
        s("zone"),
        s("profile"),
        d["stats"]["messages"],
        d["stats"]["denied"],
        // device-reported text: control characters escaped, cut to a column's worth
        s("firmware")
            .chars()
            .take(32)
            .collect::<String>()
            .escape_debug()
            .to_string(),
        d["stats"]["posture"].as_str().unwrap_or("-"),
        r["model"].as_str().unwrap_or("")
    )
}

pub fn devices(data_dir: &Path, api: Option<&str>, cmd: DevicesCmd) -> anyhow::Result<()> {
    let api = Api::new(data_dir, api)?;
    let action = |id: &str, act: &str, body: serde_json::Value| -> anyhow::Result<()> {
        let v = api.json(
            "POST",
            &format!("/api/devices/{id}/{act}"),
            body.to_string().as_bytes(),
        )?;
        println!(
            "{} is now {}",
            v["id"].as_str().unwrap_or(id),
            v["status"].as_str().unwrap_or("?")
        );
        Ok(())
    };
    match cmd {
        DevicesCmd::List => {
            let v = api.json("GET", "/api/devices", b"")?;
            for d in v.as_array().into_iter().flatten() {
                println!("{}", fmt_device_line(d));
            }
        }
        DevicesCmd::Show { id } => println!(
            "{}",
            pretty(&api.json("GET", &format!("/api/devices/{id}"), b"")?)
        ),
        DevicesCmd::Approve {
            id,
            reason,
            profile,
            zone,
            role,
        } => action(
            &id,
            "approve",
            serde_json::json!({ "reason": reason, "profile": profile, "zone": zone, "role": role }),
        )?,
        DevicesCmd::Quarantine { id, reason } => {
            action(&id, "quarantine", serde_json::json!({ "reason": reason }))?
        }
        DevicesCmd::Revoke { id, reason } => {
            action(&id, "revoke", serde_json::json!({ "reason": reason }))?
        }
        DevicesCmd::Release { id, reason } => {
            action(&id, "release", serde_json::json!({ "reason": reason }))?
        }
        DevicesCmd::Expect { id, reason } => {
            action(&id, "expect", serde_json::json!({ "reason": reason }))?
        }
        DevicesCmd::ReEnroll { id, reason } => {
            action(&id, "re-enroll", serde_json::json!({ "reason": reason }))?
        }
        DevicesCmd::Import {
            file,
            format,
            update,
        } => {
            let text = crate::files::read(&file, crate::files::IMPORT_MAX, "import file")?;
            let fmt = format.unwrap_or_else(|| {
                if file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                {
                    "csv".into()
                } else {
                    "toml".into()
                }
            });
            let v = api.json(
                "POST",
                &format!("/api/devices/import?format={fmt}&update={update}"),
                &text,
            )?;
            println!(
                "imported: {} created, {} updated, {} credentials set",
                v["created"], v["updated"], v["credentials_set"]
            );
        }
        DevicesCmd::Export { format } => {
            let (code, b) =
                api.call("GET", &format!("/api/devices/export?format={format}"), b"")?;
            if code != 200 {
                bail!(
                    "export failed (HTTP {code}): {}",
                    String::from_utf8_lossy(&b)
                );
            }
            std::io::stdout().write_all(&b)?;
        }
    }
    Ok(())
}

pub fn command(
    data_dir: &Path,
    api: Option<&str>,
    device: &str,
    name: &str,
    args: &[String],
) -> anyhow::Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let pts = if words.is_empty() {
        vec![]
    } else {
        warden_hardware::sim::parse_points(&words).map_err(anyhow::Error::msg)?
    };
    let args: serde_json::Map<String, serde_json::Value> = pts
        .into_iter()
        .map(|p| (p.name, serde_json::to_value(p.value).unwrap_or_default()))
        .collect();
    let body = serde_json::json!({ "command": name, "args": args });
    let v = Api::new(data_dir, api)?.json(
        "POST",
        &format!("/api/devices/{device}/commands"),
        body.to_string().as_bytes(),
    )?;
    println!("{}", pretty(&v));
    if v["outcome"] != "delivered" {
        bail!("command not delivered: {}", v["outcome"]);
    }
    Ok(())
}

fn load_pubkey(
    data_dir: &Path,
    pubkey: Option<PathBuf>,
) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let p = pubkey.unwrap_or_else(|| data_dir.join(PUBKEY_FILE));
    let text = crate::files::read_text(&p, crate::files::KEY_MAX, "public key")?;
    envelope::decode_pubkey(&text).with_context(|| format!("public key {}", p.display()))
}

fn parse_head(s: &str) -> anyhow::Result<(u64, [u8; 32])> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("--head `{s}`: expected SEQ:HASH"))?;
    let seq: u64 = seq
        .trim()
        .parse()
        .map_err(|_| anyhow!("--head `{s}`: SEQ is not a number"))?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash.trim(), &mut h)
        .map_err(|_| anyhow!("--head `{s}`: HASH is not 64 hex characters"))?;
    Ok((seq, h))
}

pub fn audit(data_dir: &Path, cmd: AuditCmd) -> anyhow::Result<()> {
    if let AuditCmd::ResetAnchor { reason, config } = cmd {
        return reset_anchor(data_dir, &reason, config.as_deref());
    }
    let conn = open_readonly(data_dir)?;
    match cmd {
        AuditCmd::Verify {
            pubkey,
            head,
            witness,
        } => {
            let key = load_pubkey(data_dir, pubkey)?;
            let heads = head
                .iter()
                .map(|h| parse_head(h))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rep = audit::verify(&conn, &key).map_err(|e| anyhow!("audit log TAMPERED: {e}"))?;
            let tampered = |e: anchor::AnchorError| anyhow!("audit log TAMPERED: {e}");
            let mut anchored = 0usize;
            if let Some(h) = anchor::read_meta(&conn).map_err(tampered)? {
                anchor::check_head(&conn, &key, &h, "the database's anchor row")
                    .map_err(tampered)?;
                anchored += 1;
            }
            for (seq, hash) in &heads {
                anchor::check_contains(&conn, &key, *seq, hash, "--head").map_err(tampered)?;
                anchored += 1;
            }
            if let Some(w) = &witness {
                let all = anchor::read_witness(w).map_err(tampered)?;
                if all.is_empty() {
                    bail!("witness file {} holds no heads", w.display());
                }
                for (line, h) in anchor::current_heads(&all) {
                    let origin = format!("witness file {} line {line}", w.display());
                    anchor::check_head(&conn, &key, h, &origin).map_err(tampered)?;
                    anchored += 1;
                }
            }
            let from = match rep.checkpoint {
                Some(cp) => format!(
                    "from the signed retention checkpoint at #{cp} (records 1..{cp} pruned), "
                ),
                None => String::new(),
            };
            println!(
                "audit log intact: {from}{} records, {} seals, head #{} {}; holds {anchored} anchored head(s)",
                rep.records, rep.seals, rep.head_seq, rep.head_hash
            );
        }
        AuditCmd::ResetAnchor { .. } => {}
        AuditCmd::Tail { n, json } => {
            for r in audit::tail(&conn, n)? {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!("{}", audit::format_record(&r));
                }
            }
        }
        AuditCmd::Export { format, from } => {
            if format != "jsonl" {
                bail!("unknown export format `{format}` (supported: jsonl)");
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let n = audit::export_jsonl(&conn, from, &mut out)?;
            out.flush()?;
            eprintln!("exported {n} records");
        }
    }
    Ok(())
}

/// `warden audit reset-anchor`: on a stopped gateway, with its master key.
fn reset_anchor(data_dir: &Path, reason: &str, config: Option<&Path>) -> anyhow::Result<()> {
    let cfg = crate::run::load_config(config, false, None)?;
    let _lock = crate::run::lock_data_dir(data_dir)?;
    open_readonly(data_dir)?;
    let master =
        crate::secrets::MasterKey::load(&crate::run::master_key_path(&cfg, data_dir), false)?;
    let store = crate::store::Store::open(data_dir, &master)?;
    drop(master);
    let anchors = anchor::Anchors::new(store, cfg.witness_file());
    let h = anchors.reset("cli:operator", reason)?;
    println!(
        "audit anchor reset: the chain is accepted up to record #{} {} (audited); the gateway can start",
        h.seq, h.hash
    );
    Ok(())
}

pub fn verify(
    data_dir: &Path,
    file: Option<PathBuf>,
    pubkey: Option<PathBuf>,
) -> anyhow::Result<()> {
    let key = load_pubkey(data_dir, pubkey)?;
    let payload = match file {
        Some(f) if f.as_os_str() != "-" => {
            crate::files::read(&f, crate::files::IMPORT_MAX, "payload file")?
        }
        _ => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b)?;
            b
        }
    };
    envelope::verify(&payload, &key).map_err(|e| anyhow!("INVALID: {e}"))?;
    println!("valid: signed by the gateway key");
    Ok(())
}
