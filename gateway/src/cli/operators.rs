//! `warden operators add|list|remove|passwd|token|totp`: operator accounts, through the API (admin
//! only). Passwords are read from standard input (one line), never from the command line, where
//! other users could see them in the process list.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::Api;

#[derive(Subcommand)]
pub enum OperatorsCmd {
    /// Add an operator; prints its API token (shown once).
    Add {
        name: String,
        /// viewer (reads), operator (approves, quarantines, commands, adapter operations) or
        /// admin (everything, including revoke, imports, reloads and operators).
        #[arg(long)]
        role: String,
        /// Also set a password for interactive logins, read from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every operator, with role and factors (no secrets).
    List,
    Remove {
        name: String,
    },
    /// Set an operator's password (read from standard input); ends their sessions.
    Passwd {
        name: String,
    },
    /// Rotate an operator's API token; prints the new one (the old one stops working). Rotating
    /// the token this CLI uses from `<data-dir>/api.token` rewrites that file.
    Token {
        name: String,
    },
    /// Turn the TOTP second factor on (prints the provisioning URI, once) or off.
    Totp {
        name: String,
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        bail!("no password on standard input");
    }
    Ok(pw)
}

trait TakeLine {
    fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize> {
        // a password is short: a few KiB at most is read
        std::io::Read::take(self, 4096).read_line(buf)
    }
}

/// Replaces a 0600 file atomically (a new file beside it, then a rename).
fn replace_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    crate::secrets::write_private_file(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

pub fn main(data_dir: &Path, api: Option<&str>, cmd: OperatorsCmd) -> anyhow::Result<()> {
    let api = Api::new(data_dir, api)?;
    match cmd {
        OperatorsCmd::Add {
            name,
            role,
            password_stdin,
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            let body = serde_json::json!({ "name": name, "role": role, "password": password });
            let v = api.json("POST", "/api/operators", body.to_string().as_bytes())?;
            println!(
                "operator {} added as {}",
                v["name"].as_str().unwrap_or("?"),
                v["role"].as_str().unwrap_or("?")
            );
            println!(
                "API token (shown once): {}",
                v["token"].as_str().unwrap_or("")
            );
        }
        OperatorsCmd::List => {
            let v = api.json("GET", "/api/operators", b"")?;
            for o in v.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<9} password={:<5} totp={}",
                    o["name"].as_str().unwrap_or("?"),
                    o["role"].as_str().unwrap_or("?"),
                    o["password"].as_bool().unwrap_or(false),
                    o["totp"].as_bool().unwrap_or(false)
                );
            }
        }
        OperatorsCmd::Remove { name } => {
            api.json("DELETE", &format!("/api/operators/{name}"), b"")?;
            println!("operator {name} removed");
        }
        OperatorsCmd::Passwd { name } => {
            let pw = read_password()?;
            let body = serde_json::json!({ "password": pw });
            api.json(
                "POST",
                &format!("/api/operators/{name}/password"),
                body.to_string().as_bytes(),
            )?;
            println!("password of {name} changed");
        }
        OperatorsCmd::Token { name } => {
            let v = api.json("POST", &format!("/api/operators/{name}/token"), b"")?;
            let token = v["token"].as_str().unwrap_or("");
            match (&api.token_file, v["self"].as_bool()) {
                (Some(path), Some(true)) => {
                    replace_private_file(path, token.as_bytes())
                        .with_context(|| format!("cannot rewrite {}", path.display()))?;
                    println!("token of {name} rotated; {} updated", path.display());
                }
                _ => println!("new API token of {name} (shown once): {token}"),
            }
        }
        OperatorsCmd::Totp {
            name,
            enable,
            disable: _,
        } => {
            let body = serde_json::json!({ "enable": enable });
            let v = api.json(
                "POST",
                &format!("/api/operators/{name}/totp"),
                body.to_string().as_bytes(),
            )?;
            match v["provisioning_uri"].as_str() {
                Some(uri) => {
                    println!(
                        "TOTP enabled for {name}; add it to an authenticator app (shown once):"
                    );
                    println!("{uri}");
                }
                None => println!("TOTP disabled for {name}"),
            }
        }
    }
    Ok(())
}
