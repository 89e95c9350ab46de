//! Named operator accounts: who may do what through the management API.
//!
//! Three roles, each including the one below it: `viewer` reads; `operator` also approves,
//! quarantines and releases devices, sends commands and runs adapter operations; `admin` also
//! revokes, re-enrolls, imports keys and credentials, loads plugins and config, resets the audit
//! anchor and manages operators (see [`required_role`] for the one table that says which).
//!
//! Each operator has an API token (random, stored only as its SHA-256: a 192-bit random token
//! needs no slow hash), an optional password (argon2id, a PHC string) for interactive logins and
//! an optional TOTP second factor (RFC 6238, SHA-1, 30 s, 6 digits) whose secret is sealed under the
//! master key like device credentials. Rows live in the `operators` table of `warden.db`; every
//! change lands in the same transaction as its audit record. The table is read into memory at
//! start, so authenticating a request touches no SQLite on the async workers.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::audit::{AuditEntry, Category};
use crate::store::{Store, StoreError};

/// The table, created beside the store's own schema (kept here so the operator accounts are one
/// module).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS operators(
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    password TEXT,
    totp_sealed BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

/// The operator created on first start, whose token goes to `<data-dir>/api.token`.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// Sessions from `POST /api/login` live this long.
pub const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// At most this many live sessions; the oldest goes first.
const MAX_SESSIONS: usize = 1024;
/// Passwords longer than this are refused (argon2 would take them, but nobody needs more).
const MAX_PASSWORD: usize = 1024;
const TOTP_ISSUER: &str = "Warden";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// The `role:<name>` forms a zone's `commanders` may list that this role satisfies (a role
    /// satisfies its own form and every lower one).
    pub fn commander_forms(self) -> Vec<String> {
        [Self::Viewer, Self::Operator, Self::Admin]
            .into_iter()
            .filter(|r| *r <= self)
            .map(|r| format!("role:{}", r.as_str()))
            .collect()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least role an API request needs, by method and path: the one place that says who may do
/// what. Unknown changes need `admin` (least privilege by default).
pub fn required_role(method: &axum::http::Method, path: &str) -> Role {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return match parts.as_slice() {
            ["api", "operators", ..] => Role::Admin,
            _ => Role::Viewer,
        };
    }
    match parts.as_slice() {
        [
            "api",
            "devices",
            id,
            "approve" | "quarantine" | "release" | "commands",
        ] if *id != "import" => Role::Operator,
        ["api", "adapters", _, "operations", ..] => Role::Operator,
        _ => Role::Admin,
    }
}

/// Who made an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The actor recorded in the audit log and used as a command's principal.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }
}

/// One account, as listed (no secrets).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OperatorInfo {
    pub name: String,
    pub role: &'static str,
    pub password: bool,
    pub totp: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no operator `{0}`")]
    NotFound(String),
    #[error("operator `{0}` already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OperatorError {
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::Exists(_) => 409,
            Self::Invalid(_) => 400,
            Self::Store(_) => 500,
        }
    }
}

impl From<rusqlite::Error> for OperatorError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sql(e))
    }
}

#[derive(Clone)]
struct Account {
    role: Role,
    token_hash: [u8; 32],
    password: Option<String>,
    totp: bool,
    created_at: u64,
    updated_at: u64,
}

struct Session {
    name: String,
    expires_ms: u64,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// token hash → operator name
    tokens: HashMap<[u8; 32], String>,
    /// session token hash → session
    sessions: HashMap<[u8; 32], Session>,
    /// the last TOTP time step each operator used (a code is good once)
    totp_last_step: HashMap<String, u64>,
}

impl State {
    fn index(&mut self) {
        self.tokens = self
            .accounts
            .iter()
            .map(|(n, a)| (a.token_hash, n.clone()))
            .collect();
    }

    fn drop_sessions_of(&mut self, name: &str) {
        self.sessions.retain(|_, s| s.name != name);
    }
}

/// Why a login failed, as audited (the HTTP answer is the same for all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    UnknownOperator,
    NoPassword,
    BadPassword,
    TotpMissing,
    BadTotp,
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownOperator => "unknown-operator",
            Self::NoPassword => "no-password-set",
            Self::BadPassword => "bad-password",
            Self::TotpMissing => "totp-code-missing",
            Self::BadTotp => "bad-totp-code",
        }
    }
}

/// The operator accounts and live sessions.
pub struct Operators {
    store: Store,
    state: Mutex<State>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn new_token() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn valid_name(name: &str) -> Result<(), OperatorError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OperatorError::Invalid(
            "operator names are 1-64 letters, digits, '-', '_' or '.'".into(),
        ))
    }
}

fn hash_password(password: &str) -> Result<String, OperatorError> {
    if password.len() < 8 || password.len() > MAX_PASSWORD {
        return Err(OperatorError::Invalid(format!(
            "a password is 8 to {MAX_PASSWORD} bytes"
        )));
    }
    crate::password::hash(password)
        .map_err(|e| OperatorError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    crate::password::verify(phc, password)
}

fn totp_aad(name: &str) -> Vec<u8> {
    format!("operator-totp/{name}").into_bytes()
}

fn totp_for(secret: Vec<u8>, name: &str) -> Result<totp_rs::TOTP, OperatorError> {
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret)
        .map_err(|e| OperatorError::Invalid(format!("TOTP secret for `{name}`: {e}")))
}

/// The provisioning URI an authenticator app scans (shown once, when TOTP is enabled).
fn provisioning_uri(secret: &[u8], name: &str, gateway: &str) -> String {
    let b32 = match totp_rs::Secret::Raw(secret.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => s,
        totp_rs::Secret::Raw(_) => String::new(),
    };
    let label = format!("{TOTP_ISSUER}%20{gateway}:{name}");
    format!(
        "otpauth://totp/{label}?secret={b32}&issuer={TOTP_ISSUER}&algorithm=SHA1&digits=6&period=30"
    )
}

fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Vec<u8>, Account)> {
    let name: String = r.get(0)?;
    let role: String = r.get(1)?;
    let th: Vec<u8> = r.get(2)?;
    let password: Option<String> = r.get(3)?;
    let totp: Option<Vec<u8>> = r.get(4)?;
    let created_at: i64 = r.get(5)?;
    let updated_at: i64 = r.get(6)?;
    Ok((
        name,
        role,
        th,
        Account {
            role: Role::Viewer,
            token_hash: [0; 32],
            password,
            totp: totp.is_some(),
            created_at: u64::try_from(created_at).unwrap_or(0),
            updated_at: u64::try_from(updated_at).unwrap_or(0),
        },
    ))
}

impl Operators {
    /// Creates the table if needed and loads every account. With none, creates [`BOOTSTRAP_ADMIN`]
    /// with `bootstrap_token` (the content of `api.token`) and audits it.
    pub fn load(store: Store, bootstrap_token: &str) -> Result<Self, OperatorError> {
        let accounts = store.write(|tx, _| {
            tx.execute_batch(SCHEMA)?;
            let mut st = tx.prepare(
                "SELECT name, role, token_hash, password, totp_sealed, created_at, updated_at FROM operators",
            )?;
            let rows = st.query_map([], row_to_account)?;
            let mut out = HashMap::new();
            for r in rows {
                let (name, role, th, mut a) = r?;
                // a row that does not parse grants nothing: it is skipped, not trusted
                let (Some(role), Ok(th)) = (Role::parse(&role), <[u8; 32]>::try_from(th)) else {
                    tracing::warn!(operator = %name, "operator row is malformed; ignored");
                    continue;
                };
                a.role = role;
                a.token_hash = th;
                out.insert(name, a);
            }
            drop(st);
            let mut audit = Vec::new();
            if out.is_empty() {
                let now = warden_core::now_ms();
                let th = hash_token(bootstrap_token);
                tx.execute(
                    "INSERT INTO operators(name, role, token_hash, created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?4)",
                    params![BOOTSTRAP_ADMIN, Role::Admin.as_str(), th.to_vec(), now as i64],
                )?;
                out.insert(
                    BOOTSTRAP_ADMIN.to_owned(),
                    Account {
                        role: Role::Admin,
                        token_hash: th,
                        password: None,
                        totp: false,
                        created_at: now,
                        updated_at: now,
                    },
                );
                audit.push(
                    AuditEntry::new(
                        Category::Operator,
                        "operator-add",
                        "gateway",
                        "first start: operator `admin` created with the token in api.token",
                    )
                    .detail(serde_json::json!({ "operator": BOOTSTRAP_ADMIN, "role": "admin" })),
                );
            }
            Ok((out, audit))
        })?;
        let mut state = State {
            accounts,
            ..State::default()
        };
        state.index();
        Ok(Self {
            store,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operator a bearer token (API token or session) belongs to.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let h = hash_token(token);
        let mut g = self.lock();
        let name = match g.tokens.get(&h) {
            Some(n) => n.clone(),
            None => {
                let now = warden_core::now_ms();
                let s = g.sessions.get(&h)?;
                if s.expires_ms <= now {
                    g.sessions.remove(&h);
                    return None;
                }
                s.name.clone()
            }
        };
        let role = g.accounts.get(&name)?.role;
        Some(Principal { name, role })
    }

    /// The operator a browser session token belongs to: sessions from [`Self::login`] only (an
    /// API token is never accepted from a cookie).
    pub fn authenticate_session(&self, token: &str) -> Option<Principal> {
        let h = hash_token(token);
        let mut g = self.lock();
        let s = g.sessions.get(&h)?;
        if s.expires_ms <= warden_core::now_ms() {
            g.sessions.remove(&h);
            return None;
        }
        let name = s.name.clone();
        let role = g.accounts.get(&name)?.role;
        Some(Principal { name, role })
    }

    /// Ends a session (logout); false when there was none.
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))] // the dashboard's logout
    pub fn end_session(&self, token: &str) -> bool {
        self.lock().sessions.remove(&hash_token(token)).is_some()
    }

    pub fn list(&self) -> Vec<OperatorInfo> {
        let g = self.lock();
        let mut v: Vec<_> = g
            .accounts
            .iter()
            .map(|(n, a)| OperatorInfo {
                name: n.clone(),
                role: a.role.as_str(),
                password: a.password.is_some(),
                totp: a.totp,
                created_at: a.created_at,
                updated_at: a.updated_at,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn entry(by: &Principal, action: &str, name: &str, reason: String) -> AuditEntry {
        AuditEntry::new(Category::Operator, action, &by.actor(), reason)
            .detail(serde_json::json!({ "operator": name }))
    }

    /// Adds an operator; returns its API token (shown once).
    pub fn add(
        &self,
        by: &Principal,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<String, OperatorError> {
        valid_name(name)?;
        if self.lock().accounts.contains_key(name) {
            return Err(OperatorError::Exists(name.to_owned()));
        }
        let pw = password.map(hash_password).transpose()?;
        let token = new_token();
        let th = hash_token(&token);
        let now = warden_core::now_ms();
        self.store.write(|tx, _| {
            tx.execute(
                "INSERT INTO operators(name, role, token_hash, password, created_at, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?5)",
                params![name, role.as_str(), th.to_vec(), pw, now as i64],
            )?;
            let e = AuditEntry::new(
                Category::Operator,
                "operator-add",
                &by.actor(),
                format!("operator `{name}` added as {role}"),
            )
            .detail(serde_json::json!({ "operator": name, "role": role.as_str(), "password": pw.is_some() }));
            Ok(((), vec![e]))
        }).map_err(|e| match e {
            StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation => OperatorError::Exists(name.to_owned()),
            e => e.into(),
        })?;
        let mut g = self.lock();
        g.accounts.insert(
            name.to_owned(),
            Account {
                role,
                token_hash: th,
                password: pw,
                totp: false,
                created_at: now,
                updated_at: now,
            },
        );
        g.index();
        Ok(token)
    }

    fn admins_left_without(&self, name: &str) -> usize {
        self.lock()
            .accounts
            .iter()
            .filter(|(n, a)| n.as_str() != name && a.role == Role::Admin)
            .count()
    }

    pub fn remove(&self, by: &Principal, name: &str) -> Result<(), OperatorError> {
        let role = self
            .lock()
            .accounts
            .get(name)
            .map(|a| a.role)
            .ok_or_else(|| OperatorError::NotFound(name.to_owned()))?;
        if role == Role::Admin && self.admins_left_without(name) == 0 {
            return Err(OperatorError::Invalid(
                "refusing to remove the last admin".into(),
            ));
        }
        self.store.write(|tx, _| {
            tx.execute("DELETE FROM operators WHERE name=?1", params![name])?;
            Ok((
                (),
                vec![Self::entry(
                    by,
                    "operator-remove",
                    name,
                    format!("operator `{name}` ({role}) removed"),
                )],
            ))
        })?;
        let mut g = self.lock();
        g.accounts.remove(name);
        g.drop_sessions_of(name);
        g.totp_last_step.remove(name);
        g.index();
        Ok(())
    }

    pub fn set_password(
        &self,
        by: &Principal,
        name: &str,
        password: &str,
    ) -> Result<(), OperatorError> {
        if !self.lock().accounts.contains_key(name) {
            return Err(OperatorError::NotFound(name.to_owned()));
        }
        let pw = hash_password(password)?;
        let now = warden_core::now_ms();
        self.store.write(|tx, _| {
            tx.execute(
                "UPDATE operators SET password=?2, updated_at=?3 WHERE name=?1",
                params![name, pw, now as i64],
            )?;
            Ok((
                (),
                vec![Self::entry(
                    by,
                    "operator-password",
                    name,
                    format!("password of `{name}` changed"),
                )],
            ))
        })?;
        let mut g = self.lock();
        if let Some(a) = g.accounts.get_mut(name) {
            a.password = Some(pw);
            a.updated_at = now;
        }
        g.drop_sessions_of(name);
        Ok(())
    }

    /// A new API token for `name` (the old one stops working at once); returns it.
    pub fn rotate_token(&self, by: &Principal, name: &str) -> Result<String, OperatorError> {
        if !self.lock().accounts.contains_key(name) {
            return Err(OperatorError::NotFound(name.to_owned()));
        }
        let token = new_token();
        let th = hash_token(&token);
        let now = warden_core::now_ms();
        self.store.write(|tx, _| {
            tx.execute(
                "UPDATE operators SET token_hash=?2, updated_at=?3 WHERE name=?1",
                params![name, th.to_vec(), now as i64],
            )?;
            Ok((
                (),
                vec![Self::entry(
                    by,
                    "operator-token",
                    name,
                    format!("API token of `{name}` rotated"),
                )],
            ))
        })?;
        let mut g = self.lock();
        if let Some(a) = g.accounts.get_mut(name) {
            a.token_hash = th;
            a.updated_at = now;
        }
        g.index();
        Ok(token)
    }

    /// Turns TOTP on (returns the provisioning URI, shown once) or off (returns None).
    pub fn set_totp(
        &self,
        by: &Principal,
        name: &str,
        enable: bool,
        gateway: &str,
    ) -> Result<Option<String>, OperatorError> {
        if !self.lock().accounts.contains_key(name) {
            return Err(OperatorError::NotFound(name.to_owned()));
        }
        let now = warden_core::now_ms();
        let secret = enable.then(|| {
            let mut s = vec![0u8; 20];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        });
        self.store.write(|tx, sealer| {
            let sealed = secret.as_ref().map(|s| sealer.seal(&totp_aad(name), s));
            tx.execute(
                "UPDATE operators SET totp_sealed=?2, updated_at=?3 WHERE name=?1",
                params![name, sealed, now as i64],
            )?;
            let what = if enable { "enabled" } else { "disabled" };
            Ok((
                (),
                vec![Self::entry(
                    by,
                    "operator-totp",
                    name,
                    format!("TOTP second factor of `{name}` {what}"),
                )],
            ))
        })?;
        let mut g = self.lock();
        if let Some(a) = g.accounts.get_mut(name) {
            a.totp = enable;
            a.updated_at = now;
        }
        g.drop_sessions_of(name);
        g.totp_last_step.remove(name);
        Ok(secret.map(|s| provisioning_uri(&s, name, gateway)))
    }

    /// Checks a login; returns a session token (valid [`SESSION_TTL_MS`]) and the principal. Slow
    /// on purpose (argon2): call it off the async workers.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Result<(String, Principal), LoginFailure> {
        let acc = self.lock().accounts.get(name).cloned();
        let Some(acc) = acc else {
            // spend the same effort as a real check, so timing does not tell names apart
            let _ = verify_password(dummy_phc(), password);
            return Err(LoginFailure::UnknownOperator);
        };
        let Some(phc) = &acc.password else {
            let _ = verify_password(dummy_phc(), password);
            return Err(LoginFailure::NoPassword);
        };
        if !verify_password(phc, password) {
            return Err(LoginFailure::BadPassword);
        }
        if acc.totp {
            let code = totp.ok_or(LoginFailure::TotpMissing)?;
            self.check_totp(name, code)?;
        }
        let token = new_token();
        let mut g = self.lock();
        let now = warden_core::now_ms();
        g.sessions.retain(|_, s| s.expires_ms > now);
        while g.sessions.len() >= MAX_SESSIONS {
            let oldest = g
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => g.sessions.remove(&k),
                None => break,
            };
        }
        g.sessions.insert(
            hash_token(&token),
            Session {
                name: name.to_owned(),
                expires_ms: now.saturating_add(SESSION_TTL_MS),
            },
        );
        Ok((
            token,
            Principal {
                name: name.to_owned(),
                role: acc.role,
            },
        ))
    }

    fn check_totp(&self, name: &str, code: &str) -> Result<(), LoginFailure> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LoginFailure::BadTotp);
        }
        let sealed: Option<Vec<u8>> = self
            .store
            .read(|c, _| {
                Ok(c.query_row(
                    "SELECT totp_sealed FROM operators WHERE name=?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?
                .flatten())
            })
            .map_err(|_| LoginFailure::BadTotp)?;
        let secret = self
            .store
            .read(|_, sealer| Ok(sealed.map(|b| sealer.open(&totp_aad(name), &b))))
            .ok()
            .flatten()
            .and_then(Result::ok)
            .ok_or(LoginFailure::BadTotp)?;
        let totp = totp_for(secret, name).map_err(|_| LoginFailure::BadTotp)?;
        let now_s = warden_core::now_ms() / 1000;
        // the current step and one either side (clock skew); each step's code is good once
        let mut g = self.lock();
        let last = g.totp_last_step.get(name).copied();
        for step in [now_s / 30, (now_s / 30).saturating_sub(1), now_s / 30 + 1] {
            if last.is_some_and(|l| step <= l) {
                continue;
            }
            if totp.generate(step * 30) == code {
                g.totp_last_step.insert(name.to_owned(), step);
                return Ok(());
            }
        }
        Err(LoginFailure::BadTotp)
    }
}

/// An argon2id hash of a random string, made once with the same parameters as real ones: unknown
/// names cost as much to refuse as wrong passwords.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::secrets::MasterKey;
    use axum::http::Method;

    fn admin() -> Principal {
        Principal {
            name: "admin".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn the_role_table_is_least_privilege() {
        let cases = [
            (Method::GET, "/api/devices", Role::Viewer),
            (Method::GET, "/api/audit/tail", Role::Viewer),
            (Method::GET, "/api/operators", Role::Admin),
            (Method::POST, "/api/devices/sim:a/approve", Role::Operator),
            (
                Method::POST,
                "/api/devices/sim:a/quarantine",
                Role::Operator,
            ),
            (Method::POST, "/api/devices/sim:a/release", Role::Operator),
            (Method::POST, "/api/devices/sim:a/commands", Role::Operator),
            (Method::POST, "/api/devices/sim:a/revoke", Role::Admin),
            (Method::POST, "/api/devices/sim:a/reenroll", Role::Admin),
            (Method::POST, "/api/devices/import", Role::Admin),
            (Method::POST, "/api/config/reload", Role::Admin),
            (
                Method::POST,
                "/api/adapters/zigbee/operations",
                Role::Operator,
            ),
            (Method::POST, "/api/operators", Role::Admin),
            (Method::POST, "/api/audit/reset", Role::Admin),
            (Method::POST, "/api/plugins/x/load", Role::Admin),
            (Method::DELETE, "/api/devices/sim:a/approve", Role::Operator),
        ];
        for (m, p, want) in cases {
            assert_eq!(required_role(&m, p), want, "{m} {p}");
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(
            Role::Operator.commander_forms(),
            ["role:viewer", "role:operator"]
        );
    }

    #[test]
    fn accounts_tokens_passwords_and_totp() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), &MasterKey::from_bytes([3; 32])).unwrap();
        let ops = Operators::load(store.clone(), "boot-token").unwrap();
        assert_eq!(ops.authenticate("boot-token").unwrap(), admin());
        assert!(ops.authenticate("nope").is_none());

        let t = ops
            .add(&admin(), "vera", Role::Viewer, Some("correct horse"))
            .unwrap();
        assert_eq!(ops.authenticate(&t).unwrap().role, Role::Viewer);
        assert!(matches!(
            ops.add(&admin(), "vera", Role::Admin, None),
            Err(OperatorError::Exists(_))
        ));
        assert!(ops.add(&admin(), "bad name", Role::Viewer, None).is_err());
        assert!(
            ops.add(&admin(), "short", Role::Viewer, Some("1234"))
                .is_err()
        );

        assert_eq!(
            ops.login("vera", "wrong", None).unwrap_err(),
            LoginFailure::BadPassword
        );
        assert_eq!(
            ops.login("nobody", "x", None).unwrap_err(),
            LoginFailure::UnknownOperator
        );
        let (session, p) = ops.login("vera", "correct horse", None).unwrap();
        assert_eq!(p.name, "vera");
        assert_eq!(ops.authenticate(&session).unwrap().name, "vera");

        let t2 = ops.rotate_token(&admin(), "vera").unwrap();
        assert!(ops.authenticate(&t).is_none(), "old token dead");
        assert!(ops.authenticate(&t2).is_some());

        let uri = ops.set_totp(&admin(), "vera", true, "gw").unwrap().unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(
            ops.authenticate(&session).is_none(),
            "sessions end on a factor change"
        );
        assert_eq!(
            ops.login("vera", "correct horse", None).unwrap_err(),
            LoginFailure::TotpMissing
        );
        let secret = uri
            .split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let raw = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
        let code = totp_for(raw, "vera").unwrap().generate_current().unwrap();
        assert!(ops.login("vera", "correct horse", Some(&code)).is_ok());
        assert_eq!(
            ops.login("vera", "correct horse", Some(&code)).unwrap_err(),
            LoginFailure::BadTotp,
            "a code is good once"
        );

        // the secret is sealed at rest; everything survives a reload
        drop(ops);
        let raw_db = std::fs::read(d.path().join(crate::store::DB_FILE)).unwrap();
        let wal = std::fs::read(d.path().join("warden.db-wal")).unwrap_or_default();
        for hay in [&raw_db, &wal] {
            assert!(
                !hay.windows(t2.len()).any(|w| w == t2.as_bytes()),
                "token stored in clear"
            );
        }
        let ops = Operators::load(store, "other").unwrap();
        assert!(ops.authenticate("other").is_none(), "bootstrap only once");
        assert_eq!(ops.authenticate(&t2).unwrap().name, "vera");
        assert!(matches!(
            ops.remove(&admin(), "admin"),
            Err(OperatorError::Invalid(_))
        ));
        ops.remove(&admin(), "vera").unwrap();
        assert!(ops.authenticate(&t2).is_none());
    }
}
