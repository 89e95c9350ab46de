//! The device registry: who each device is, its zone, role, usage profile and status, and its
//! credentials (sealed with AES-256-GCM). Persistent in the store; cached in memory for the pipeline.
//!
//! Every status change and credential change is written in the same transaction as its audit record.
//!
//! **Integrity.** Every device row carries an HMAC-SHA256 (key derived from the master key, label
//! `registry-row-mac`) over everything that grants something: status, zone, role, profile, the
//! identity evidence a model profile is looked up by, and who set the status when and why. Credentials
//! are sealed with AES-GCM bound to `device/name`, which authenticates their binding the same way. A
//! row that fails its check at load (edited in the database behind the gateway's back) is refused: the
//! device is kept as **pending** and a `registry-tampered` security record says what the row claimed.
//!
//! **Semantics.** Approve, quarantine, revoke, release and re-enroll need a reason. Revoke is terminal:
//! only an explicit re-enroll (audited with both states) brings a revoked device back, as pending.
//! Import never changes an existing device's status, profile, zone or role unless asked (`update`),
//! and then audits each change from/to.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A map keyed by device, hashed with foldhash: for the maps read on every message.
pub type DeviceMap<V> = HashMap<DeviceId, V, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use warden_core::{Announcement, CredentialLookup, DeviceId, Secret, now_ms};

use crate::audit::{AuditEntry, Category};
use crate::secrets::Sealer;
use crate::store::{REGISTRY_MACS_KEY, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pending,
    Active,
    Quarantined,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Quarantined => "quarantined",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "quarantined" => Self::Quarantined,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// What the registry knows about a device. Never holds secrets: only credential names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub serial: Option<String>,
    pub zone: String,
    pub role: Option<String>,
    pub profile: Option<String>,
    pub status: Status,
    pub status_by: String,
    pub status_at: u64,
    pub status_reason: String,
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
    pub credentials: Vec<String>,
}

/// Counters the observe stage keeps per device (lock-free; written by the pipeline thread).
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub denied: AtomicU64,
    pub last_seen: AtomicU64,
    /// Start (ms) of the current one-minute window, messages in it, and in the previous one.
    pub window_start: AtomicU64,
    pub window_count: AtomicU64,
    pub prev_window_count: AtomicU64,
    pub last_flushed: AtomicU64,
    /// Strongest assurance seen from this device (rank: 0 none seen, 1 none … 4 certificate).
    pub best_assurance: AtomicU64,
    /// `best_assurance` as last written to the store.
    pub best_flushed: AtomicU64,
    /// The security label (`Message::security`) of the last uplink that passed authentication:
    /// what a command's decision sees, since a downlink has no label of its own until the
    /// adapter sends it. Written only when it changes.
    pub security: std::sync::Mutex<Option<std::borrow::Cow<'static, str>>>,
    /// The firmware posture last evaluated ([`crate::posture::Posture::code`]; 0 never).
    pub posture: std::sync::atomic::AtomicU8,
    /// Where the behaviour stage keeps this device's baseline (see
    /// [`crate::behaviour::Behaviour::uplink_at`]): saves hashing the id and comparing keys on
    /// every message.
    pub behaviour_slot: AtomicU64,
}

impl Stats {
    /// The last accepted uplink's security label.
    pub fn security(&self) -> Option<std::borrow::Cow<'static, str>> {
        self.security.lock().map_or(None, |g| g.clone())
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatsSnapshot {
    pub messages: u64,
    pub bytes: u64,
    pub denied: u64,
    pub last_seen: u64,
    /// Messages in the last full minute (or the current one if higher).
    pub rate_per_min: u64,
    /// Strongest assurance seen (rank: 0 nothing seen, 1 none … 4 certificate).
    pub best_assurance: u64,
    /// Firmware posture (`ok`, `vulnerable`, … ; `unchecked` when never evaluated or no rule).
    pub posture: &'static str,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let cur = self.window_count.load(Ordering::Relaxed);
        let prev = self.prev_window_count.load(Ordering::Relaxed);
        StatsSnapshot {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            last_seen: self.last_seen.load(Ordering::Relaxed),
            rate_per_min: cur.max(prev),
            best_assurance: self.best_assurance.load(Ordering::Relaxed),
            posture: crate::posture::label(self.posture.load(Ordering::Relaxed)),
        }
    }
}

/// A registry entry: the current record (swapped whole on change) and live counters.
#[derive(Debug)]
pub struct DeviceEntry {
    record: RwLock<Arc<DeviceRecord>>,
    pub stats: Stats,
}

impl DeviceEntry {
    pub fn record(&self) -> Arc<DeviceRecord> {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn set(&self, r: DeviceRecord) {
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no device {0}")]
    NotFound(String),
    #[error("a reason is required for {0}")]
    ReasonRequired(&'static str),
    #[error("device {0} is revoked; revoke is terminal (re-enroll it explicitly first)")]
    Revoked(String),
    #[error("device {id} is {status}, not {expected}")]
    WrongState {
        id: String,
        status: &'static str,
        expected: &'static str,
    },
    #[error("unknown {kind} `{name}` (configured: {valid})")]
    Unknown {
        kind: &'static str,
        name: String,
        valid: String,
    },
    #[error("too many pending devices ({0}); approve or revoke some first")]
    TooManyPending(usize),
    #[error(
        "the data dir's disk is nearly full (degraded mode): no new device is registered until it has room"
    )]
    DiskLow,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Registry {
    store: Store,
    /// Keyed with foldhash (seeded per process), not SipHash: this map is read for every message,
    /// and its size is bounded (`max_pending` newcomers; the rest are operator-imported devices).
    map: RwLock<DeviceMap<Arc<DeviceEntry>>>,
    pending: AtomicUsize,
    max_pending: usize,
    catalogue: RwLock<Option<Catalogue>>,
    /// Set while the disk is degraded: no new pending device.
    refuse_new: AtomicBool,
    /// Credentials as unsealed, so a frame's key lookup does not read and unseal from SQLite each
    /// time (a miss is cached too). Cleared whenever credentials are written (import, key change);
    /// only an active device's entry is ever served. Bounded by [`CREDENTIAL_CACHE_MAX`].
    creds: std::sync::Mutex<CredentialCache>,
    /// Bumped (under the cache's lock) by every credential write: a lookup that read the store
    /// before a write does not cache what it read.
    creds_gen: AtomicU64,
    /// The registry writer: set in the gateway, where the pipeline's own changes (a new pending
    /// device, new evidence, a quarantine) take effect in memory at once and are written by this
    /// thread, so the message path never waits on SQLite. Unset (tests, tools): written in place.
    writer: std::sync::OnceLock<crate::batch::BatchSender<Deferred>>,
    /// Held by a change written in place from its write until memory shows it, and by the writer
    /// around each batch: the writer, which writes rows as memory holds them, can then never write
    /// a row older than one just committed by an operator or an import.
    in_place: std::sync::Mutex<()>,
}

/// A change already in memory, to be written: the device (its row is written as it is when the
/// writer gets to it, so a later change is never overwritten by an earlier one) and its records.
pub struct Deferred {
    id: DeviceId,
    audit: Vec<AuditEntry>,
}

/// (device, credential name) → the unsealed bytes, or `None` for "no such credential".
type CredentialCache = HashMap<(DeviceId, String), Option<zeroize::Zeroizing<Vec<u8>>>>;

/// Cached credentials before the cache starts over.
const CREDENTIAL_CACHE_MAX: usize = 65_536;

/// The names an operator may assign, from the config: approve refuses anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub profiles: BTreeSet<String>,
    pub zones: BTreeSet<String>,
    pub roles: BTreeSet<String>,
}

impl Catalogue {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            profiles: cfg.profiles.keys().cloned().collect(),
            zones: cfg.zones.keys().cloned().collect(),
            roles: cfg
                .registry
                .roles
                .iter()
                .chain(cfg.plugins.bind.iter().flat_map(|b| b.roles.iter()))
                .cloned()
                .collect(),
        }
    }

    fn check(&self, a: &Assignment) -> Result<(), RegistryError> {
        for (kind, name, set) in [
            ("profile", &a.profile, &self.profiles),
            ("zone", &a.zone, &self.zones),
            ("role", &a.role, &self.roles),
        ] {
            if let Some(n) = name
                && !set.contains(n)
            {
                let valid = if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                return Err(RegistryError::Unknown {
                    kind,
                    name: n.clone(),
                    valid,
                });
            }
        }
        Ok(())
    }
}

/// Profile, zone and role to set together with a status change (`None` keeps the current one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub profile: Option<String>,
    pub zone: Option<String>,
    pub role: Option<String>,
}

/// An operator's status change. Each has its own audit action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    Approve,
    Quarantine,
    Revoke,
    /// Quarantined → active.
    Release,
    /// Revoked → pending (the only way out of revoked).
    ReEnroll,
}

impl StatusAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => Self::Approve,
            "quarantine" => Self::Quarantine,
            "revoke" => Self::Revoke,
            "release" => Self::Release,
            "re-enroll" => Self::ReEnroll,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Quarantine => "quarantine",
            Self::Revoke => "revoke",
            Self::Release => "release",
            Self::ReEnroll => "re-enroll",
        }
    }
    fn target(self) -> Status {
        match self {
            Self::Approve | Self::Release => Status::Active,
            Self::Quarantine => Status::Quarantined,
            Self::Revoke => Status::Revoked,
            Self::ReEnroll => Status::Pending,
        }
    }
}

const COLUMNS: &str =
    "id, name, manufacturer, model, firmware, serial, zone, role, profile, status,
                       status_by, status_at, status_reason, first_seen, last_seen";

/// A device row as stored, before its MAC is checked.
struct RawRow {
    id: String,
    status: String,
    record: Option<DeviceRecord>,
    mac: Option<Vec<u8>>,
}

fn row_to_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        status: r.get(9)?,
        record: row_to_record(r).ok(),
        mac: r.get(15)?,
    })
}

/// The fields a row's MAC covers: everything but the first/last-seen times (which the gateway
/// updates on its own and which grant nothing).
fn mac_parts(r: &DeviceRecord) -> [Option<Vec<u8>>; 13] {
    let b = |s: &str| Some(s.as_bytes().to_vec());
    let o = |s: &Option<String>| s.as_ref().map(|s| s.as_bytes().to_vec());
    [
        b(&r.id.to_string()),
        o(&r.name),
        o(&r.manufacturer),
        o(&r.model),
        o(&r.firmware),
        o(&r.serial),
        b(&r.zone),
        o(&r.role),
        o(&r.profile),
        b(r.status.as_str()),
        b(&r.status_by),
        Some(r.status_at.to_be_bytes().to_vec()),
        b(&r.status_reason),
    ]
}

fn row_mac(sealer: &Sealer, r: &DeviceRecord) -> Vec<u8> {
    let parts = mac_parts(r);
    let refs: Vec<Option<&[u8]>> = parts.iter().map(|p| p.as_deref()).collect();
    sealer.row_mac(&refs)
}

fn row_mac_ok(sealer: &Sealer, r: &DeviceRecord, tag: &[u8]) -> bool {
    let parts = mac_parts(r);
    let refs: Vec<Option<&[u8]>> = parts.iter().map(|p| p.as_deref()).collect();
    sealer.row_mac_ok(&refs, tag)
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let id: String = r.get(0)?;
    let status: String = r.get(9)?;
    let conv = |e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    };
    Ok(DeviceRecord {
        id: id
            .parse()
            .map_err(|e: warden_core::IdError| conv(e.to_string()))?,
        name: r.get(1)?,
        manufacturer: r.get(2)?,
        model: r.get(3)?,
        firmware: r.get(4)?,
        serial: r.get(5)?,
        zone: r.get(6)?,
        role: r.get(7)?,
        profile: r.get(8)?,
        // an unknown status was never written by the gateway: the row fails its MAC check
        status: Status::parse(&status).unwrap_or(Status::Pending),
        status_by: r.get(10)?,
        status_at: r.get::<_, i64>(11)? as u64,
        status_reason: r.get(12)?,
        first_seen: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        last_seen: r.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        credentials: Vec::new(),
    })
}

fn upsert(tx: &Transaction<'_>, sealer: &Sealer, r: &DeviceRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO devices({COLUMNS}, protocol, address, mac)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT(id) DO UPDATE SET name=excluded.name, manufacturer=excluded.manufacturer,
           model=excluded.model, firmware=excluded.firmware, serial=excluded.serial,
           zone=excluded.zone, role=excluded.role, profile=excluded.profile, status=excluded.status,
           status_by=excluded.status_by, status_at=excluded.status_at,
           status_reason=excluded.status_reason, first_seen=excluded.first_seen,
           last_seen=excluded.last_seen, mac=excluded.mac"
    ))?
    .execute(params![
        r.id.to_string(),
        r.name,
        r.manufacturer,
        r.model,
        r.firmware,
        r.serial,
        r.zone,
        r.role,
        r.profile,
        r.status.as_str(),
        r.status_by,
        r.status_at as i64,
        r.status_reason,
        r.first_seen.map(|v| v as i64),
        r.last_seen.map(|v| v as i64),
        r.id.protocol(),
        r.id.address(),
        row_mac(sealer, r),
    ])?;
    Ok(())
}

/// One device in an import file (TOML `[[devices]]` or a CSV row).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportDevice {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// Default `active`: provisioning by an operator is an approval.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    /// name → value; a value is `hex:…`, `base64:…` or literal text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    /// Written by export to show which credentials are set; ignored on import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials_set: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    pub devices: Vec<ImportDevice>,
}

/// Parses an import file, TOML (`[[devices]]`) or CSV (header `id,name,zone,…,cred:<name>`).
/// A TOML import error as line, column and what was wrong — never the offending text, which may
/// be a key (`app_key = "hex:…` with a typo echoed back would leak it).
fn import_error(text: &str, e: &toml::de::Error) -> String {
    let mut msg = String::new();
    // the parser's message may quote a value: keep only what is outside quotes and backticks
    let mut quoted = None;
    for c in e.message().chars() {
        match (quoted, c) {
            (None, '"' | '`' | '\'') => {
                quoted = Some(c);
                msg.push('…');
            }
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, c) if c.is_control() => msg.push(' '),
            (None, c) => msg.push(c),
        }
    }
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("import file, line {line}, column {col}: {}", msg.trim())
        }
        None => format!("import file: {}", msg.trim()),
    }
}

pub fn parse_import(text: &str, csv_format: bool) -> Result<Vec<ImportDevice>, RegistryError> {
    if !csv_format {
        let f: ImportFile =
            toml::from_str(text).map_err(|e| RegistryError::Invalid(import_error(text, &e)))?;
        return Ok(f.devices);
    }
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| RegistryError::Invalid(format!("csv header: {e}")))?
        .clone();
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| RegistryError::Invalid(format!("csv row {}: {e}", line + 2)))?;
        let mut d = ImportDevice::default();
        for (h, v) in headers.iter().zip(rec.iter()) {
            let val = (!v.is_empty()).then(|| v.to_owned());
            match h {
                "id" => d.id = v.to_owned(),
                "name" => d.name = val,
                "zone" => d.zone = val,
                "role" => d.role = val,
                "profile" => d.profile = val,
                "status" => d.status = val,
                "manufacturer" => d.manufacturer = val,
                "model" => d.model = val,
                "firmware" => d.firmware = val,
                "serial" => d.serial = val,
                other => match other.strip_prefix("cred:") {
                    Some(name) if !name.is_empty() => {
                        if let Some(v) = val {
                            d.credentials.insert(name.to_owned(), v);
                        }
                    }
                    _ => {
                        return Err(RegistryError::Invalid(format!(
                            "csv: unknown column `{other}`"
                        )));
                    }
                },
            }
        }
        out.push(d);
    }
    Ok(out)
}

fn decode_credential(v: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if let Some(h) = v.strip_prefix("hex:") {
        hex::decode(h).map_err(|_| "invalid hex".to_owned())
    } else if let Some(b) = v.strip_prefix("base64:") {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| "invalid base64".to_owned())
    } else {
        Ok(v.as_bytes().to_vec())
    }
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub credentials_set: usize,
}

impl Registry {
    /// Loads every device, checking each row's MAC and credentials (see the module doc). Rows of a
    /// data dir from before MACs existed get one here, once, audited as `registry-macs-added`.
    pub fn load(store: Store, max_pending: usize) -> Result<Self, RegistryError> {
        let records = store.write(|tx, sealer| {
            let migrate = tx
                .query_row(
                    "SELECT 1 FROM meta WHERE key = ?1",
                    [REGISTRY_MACS_KEY],
                    |_| Ok(()),
                )
                .optional()?
                .is_none();
            let raw: Vec<RawRow> = {
                let mut stmt = tx.prepare(&format!("SELECT {COLUMNS}, mac FROM devices"))?;
                stmt.query_map([], row_to_raw)?
                    .collect::<Result<_, _>>()?
            };
            let mut bad_creds: HashMap<String, Vec<String>> = HashMap::new();
            let mut creds: HashMap<String, Vec<String>> = HashMap::new();
            {
                let mut cs =
                    tx.prepare("SELECT device, name, sealed FROM credentials ORDER BY name")?;
                let rows = cs.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })?;
                for row in rows {
                    let (d, n, blob) = row?;
                    // the seal's associated data is `device/name`: a blob moved, edited or forged
                    // does not open
                    if sealer.open(format!("{d}/{n}").as_bytes(), &blob).is_err() {
                        bad_creds.entry(d.clone()).or_default().push(n.clone());
                    }
                    creds.entry(d).or_default().push(n);
                }
            }
            let mut audit = Vec::new();
            let mut out = Vec::new();
            let mut migrated = 0usize;
            for row in raw {
                let Some(mut r) = row.record else {
                    // an id the gateway cannot parse was never written by it
                    audit.push(
                        AuditEntry::new(
                            Category::Security,
                            "registry-tampered",
                            "gateway",
                            "registry row with an invalid device id ignored (edited outside the gateway)",
                        )
                        .decision("builtin:registry", "deny")
                        .detail(serde_json::json!({ "row_id": row.id, "status": row.status })),
                    );
                    continue;
                };
                r.credentials = creds.remove(&r.id.to_string()).unwrap_or_default();
                let problem = match (&row.mac, migrate) {
                    (None, true) => {
                        upsert(tx, sealer, &r)?;
                        migrated += 1;
                        None
                    }
                    (None, false) => Some("the row has no integrity tag"),
                    (Some(tag), _) if !row_mac_ok(sealer, &r, tag) => {
                        Some("the row does not match its integrity tag")
                    }
                    (Some(_), _) => None,
                };
                let problem = problem.or_else(|| {
                    bad_creds
                        .contains_key(&r.id.to_string())
                        .then_some("a credential does not open under its binding")
                });
                if let Some(problem) = problem {
                    let claimed = serde_json::json!({
                        "status": row.status, "profile": r.profile, "zone": r.zone,
                        "role": r.role, "status_by": r.status_by,
                        "bad_credentials": bad_creds.get(&r.id.to_string()),
                    });
                    r.status = Status::Pending;
                    r.status_by = "gateway".into();
                    r.status_at = now_ms();
                    r.status_reason = format!(
                        "registry row refused at load: {problem} (edited outside the gateway); approve again after checking"
                    );
                    upsert(tx, sealer, &r)?;
                    audit.push(
                        AuditEntry::new(
                            Category::Security,
                            "registry-tampered",
                            "gateway",
                            r.status_reason.clone(),
                        )
                        .device(&r.id)
                        .decision("builtin:registry", "deny")
                        .detail(serde_json::json!({ "claimed": claimed, "now": "pending" })),
                    );
                }
                out.push(r);
            }
            if migrate {
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES(?1, x'01')",
                    [REGISTRY_MACS_KEY],
                )?;
                audit.push(
                    AuditEntry::new(
                        Category::System,
                        "registry-macs-added",
                        "gateway",
                        "registry rows from before integrity tags were tagged (one-time migration)",
                    )
                    .detail(serde_json::json!({ "rows": migrated })),
                );
            }
            Ok((out, audit))
        })?;
        let pending = records
            .iter()
            .filter(|r| r.status == Status::Pending)
            .count();
        let map = records
            .into_iter()
            .map(|r| {
                let stats = Stats::default();
                stats
                    .last_seen
                    .store(r.last_seen.unwrap_or(0), Ordering::Relaxed);
                stats
                    .last_flushed
                    .store(r.last_seen.unwrap_or(0), Ordering::Relaxed);
                (
                    r.id.clone(),
                    Arc::new(DeviceEntry {
                        record: RwLock::new(Arc::new(r)),
                        stats,
                    }),
                )
            })
            .collect::<DeviceMap<_>>();
        // the downgrade guard's memory (a row without it: nothing seen yet)
        let best: Vec<(String, i64)> = store.read(|c, _| {
            let mut st = c.prepare(
                "SELECT id, best_assurance FROM devices WHERE best_assurance IS NOT NULL",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        for (id, rank) in best {
            let rank = u64::try_from(rank).unwrap_or(0).min(4);
            if let Some(e) = id.parse::<DeviceId>().ok().and_then(|d| map.get(&d)) {
                e.stats.best_assurance.store(rank, Ordering::Relaxed);
                e.stats.best_flushed.store(rank, Ordering::Relaxed);
            }
        }
        Ok(Self {
            store,
            map: RwLock::new(map),
            pending: AtomicUsize::new(pending),
            max_pending,
            catalogue: RwLock::new(None),
            refuse_new: AtomicBool::new(false),
            creds: std::sync::Mutex::default(),
            creds_gen: AtomicU64::new(0),
            writer: std::sync::OnceLock::new(),
            in_place: std::sync::Mutex::new(()),
        })
    }

    /// The names approve accepts (set from the config at start and on reload). Without one (unit
    /// tests, benchmarks) nothing is checked.
    pub fn set_catalogue(&self, c: Catalogue) {
        *self.catalogue.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    fn check_names(&self, a: &Assignment) -> Result<(), RegistryError> {
        match &*self.catalogue.read().unwrap_or_else(|p| p.into_inner()) {
            Some(c) => c.check(a),
            None => Ok(()),
        }
    }

    pub fn get(&self, id: &DeviceId) -> Option<Arc<DeviceEntry>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn all(&self) -> Vec<(Arc<DeviceRecord>, StatsSnapshot)> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = m
            .values()
            .map(|e| (e.record(), e.stats.snapshot()))
            .collect();
        v.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        v
    }

    /// Devices heard at least once but not since `now - after_ms`, not among `skip`: a scan of
    /// atomics under the read lock, with no copy of the registry (the availability check).
    pub fn silent(
        &self,
        now: u64,
        after_ms: u64,
        skip: &std::collections::HashSet<DeviceId>,
    ) -> Vec<Arc<DeviceRecord>> {
        let m = self.map.read().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|(id, e)| {
                let seen = e.stats.last_seen.load(Ordering::Relaxed);
                seen > 0 && now.saturating_sub(seen) > after_ms && !skip.contains(*id)
            })
            .map(|(_, e)| e.record())
            .collect()
    }

    fn insert_entry(&self, r: DeviceRecord) -> Arc<DeviceEntry> {
        let e = Arc::new(DeviceEntry {
            record: RwLock::new(Arc::new(r.clone())),
            stats: Stats::default(),
        });
        let mut m = self.map.write().unwrap_or_else(|p| p.into_inner());
        match m.get(&r.id) {
            Some(existing) => {
                existing.set(r);
                existing.clone()
            }
            None => {
                m.insert(r.id.clone(), e.clone());
                e
            }
        }
    }

    /// Starts the registry writer thread (see [`Registry::writer`]): from now on the pipeline's
    /// own changes are written off its thread, many to a transaction.
    pub fn start_writer(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = Arc::downgrade(self);
        let store = self.store.clone();
        let (tx, h) = crate::batch::BatchSender::spawn(
            "registry-writer",
            4096,
            512,
            move |batch: &[Deferred]| {
                let reg = me.upgrade();
                let _g = reg
                    .as_ref()
                    .map(|r| r.in_place.lock().unwrap_or_else(|p| p.into_inner()));
                store
                    .write(|tx, sealer| {
                        let mut audit = Vec::new();
                        for d in batch {
                            if let Some(e) = reg.as_ref().and_then(|r| r.get(&d.id)) {
                                upsert(tx, sealer, &e.record())?;
                            }
                            audit.extend(d.audit.iter().cloned());
                        }
                        Ok(((), audit))
                    })
                    .map_err(|e| e.to_string())
            },
        )?;
        let _ = self.writer.set(tx);
        Ok(h)
    }

    /// Returns once every deferred change queued before this call is written.
    pub fn flush_writer(&self) {
        if let Some(w) = self.writer.get() {
            w.flush();
        }
    }

    /// Writes `r` with `audit` now, or (with the writer running) queues it: `apply` puts the change
    /// in memory, before the write when deferred, after it otherwise.
    fn commit(
        &self,
        r: &DeviceRecord,
        audit: Vec<AuditEntry>,
        defer: bool,
        apply: impl FnOnce(),
    ) -> Result<(), RegistryError> {
        match self.writer.get().filter(|_| defer) {
            Some(w) => {
                apply();
                if !w.send(Deferred {
                    id: r.id.clone(),
                    audit,
                }) {
                    tracing::error!(device = %r.id, "registry writer is gone; change not written");
                }
            }
            None => {
                let _g = self.in_place.lock().unwrap_or_else(|p| p.into_inner());
                self.store.write(|tx, sealer| {
                    upsert(tx, sealer, r)?;
                    Ok(((), audit))
                })?;
                apply();
            }
        }
        Ok(())
    }

    /// Refuses (or again accepts) new pending devices: the disk's degraded mode.
    pub fn set_refuse_new(&self, refuse: bool) {
        self.refuse_new.store(refuse, Ordering::Relaxed);
    }

    /// Registers a device the gateway has never seen as pending, with whatever identity evidence the
    /// adapter had. Refused beyond `max_pending`.
    pub fn register_pending(
        &self,
        id: &DeviceId,
        evidence: Option<&Announcement>,
        zone: &str,
        why: &str,
    ) -> Result<Arc<DeviceEntry>, RegistryError> {
        if let Some(e) = self.get(id) {
            return Ok(e);
        }
        if self.pending_count() >= self.max_pending {
            return Err(RegistryError::TooManyPending(self.max_pending));
        }
        if self.refuse_new.load(Ordering::Relaxed) {
            return Err(RegistryError::DiskLow);
        }
        let now = now_ms();
        let r = DeviceRecord {
            id: id.clone(),
            name: None,
            manufacturer: evidence.and_then(|a| a.manufacturer.clone()),
            model: evidence.and_then(|a| a.model.clone()),
            firmware: evidence.and_then(|a| a.firmware.clone()),
            serial: evidence.and_then(|a| a.serial.clone()),
            zone: zone.to_owned(),
            role: None,
            profile: None,
            status: Status::Pending,
            status_by: "gateway".into(),
            status_at: now,
            status_reason: why.to_owned(),
            first_seen: Some(now),
            last_seen: Some(now),
            credentials: Vec::new(),
        };
        let a = AuditEntry::new(Category::Security, "device-registered", "gateway", why)
            .device(id)
            .decision("builtin:registry", "deny")
            .detail(serde_json::json!({
                "status": "pending",
                "manufacturer": r.manufacturer, "model": r.model,
                "firmware": r.firmware, "serial": r.serial,
            }));
        let mut entry = None;
        self.commit(&r, vec![a], true, || {
            self.pending.fetch_add(1, Ordering::Relaxed);
            entry = Some(self.insert_entry(r.clone()));
        })?;
        entry.ok_or_else(|| RegistryError::NotFound(id.to_string()))
    }

    /// Records identity evidence an adapter reported for a known device; a change is audited (a
    /// device whose model or firmware changes under the same address deserves a look).
    pub fn update_evidence(&self, id: &DeviceId, a: &Announcement) -> Result<(), RegistryError> {
        let Some(entry) = self.get(id) else {
            return Err(RegistryError::NotFound(id.to_string()));
        };
        let old = entry.record();
        let mut r = (*old).clone();
        let mut changed = Vec::new();
        for (field, slot, new) in [
            ("manufacturer", &mut r.manufacturer, &a.manufacturer),
            ("model", &mut r.model, &a.model),
            ("firmware", &mut r.firmware, &a.firmware),
            ("serial", &mut r.serial, &a.serial),
        ] {
            if new.is_some() && slot != new {
                changed.push(serde_json::json!({"field": field, "from": slot.clone(), "to": new}));
                *slot = new.clone();
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let e = AuditEntry::new(
            Category::Security,
            "evidence-changed",
            "gateway",
            "device reported different identity evidence",
        )
        .device(id)
        .detail(serde_json::json!({ "changes": changed }));
        self.commit(&r, vec![e], true, || entry.set(r.clone()))
    }

    /// A status change the gateway makes itself (the pipeline quarantining a device), audited under
    /// `category` as an action of `actor`. The same rules as for operators apply: a reason, and
    /// nothing changes a revoked device.
    pub fn set_status(
        &self,
        id: &DeviceId,
        status: Status,
        actor: &str,
        reason: &str,
        category: Category,
    ) -> Result<Arc<DeviceRecord>, RegistryError> {
        let action = match status {
            Status::Active => StatusAction::Approve,
            Status::Quarantined => StatusAction::Quarantine,
            Status::Revoked => StatusAction::Revoke,
            Status::Pending => StatusAction::ReEnroll,
        };
        self.apply(
            id,
            action,
            &Assignment::default(),
            actor,
            reason,
            category,
            true,
        )
    }

    /// An operator's approve, quarantine, revoke, release or re-enroll, with an optional new
    /// profile, zone and role (approve only), written as one audit record with every change
    /// from/to. The names are checked against the config's catalogue first.
    pub fn operator_action(
        &self,
        id: &DeviceId,
        action: StatusAction,
        assign: &Assignment,
        actor: &str,
        reason: &str,
    ) -> Result<Arc<DeviceRecord>, RegistryError> {
        if action != StatusAction::Approve && *assign != Assignment::default() {
            return Err(RegistryError::Invalid(format!(
                "profile, zone and role can only be set on approve, not on {}",
                action.as_str()
            )));
        }
        self.check_names(assign)?;
        // an operator's change is durable before the API answers
        self.apply(id, action, assign, actor, reason, Category::Operator, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        id: &DeviceId,
        action: StatusAction,
        assign: &Assignment,
        actor: &str,
        reason: &str,
        category: Category,
        defer: bool,
    ) -> Result<Arc<DeviceRecord>, RegistryError> {
        if reason.trim().is_empty() {
            return Err(RegistryError::ReasonRequired(action.as_str()));
        }
        let entry = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        let old = entry.record();
        let wrong = |expected: &'static str| RegistryError::WrongState {
            id: id.to_string(),
            status: old.status.as_str(),
            expected,
        };
        match action {
            StatusAction::ReEnroll if old.status != Status::Revoked => {
                return Err(wrong("revoked"));
            }
            StatusAction::ReEnroll => {}
            _ if old.status == Status::Revoked => {
                return Err(RegistryError::Revoked(id.to_string()));
            }
            StatusAction::Release if old.status != Status::Quarantined => {
                return Err(wrong("quarantined"));
            }
            _ => {}
        }
        let status = action.target();
        let mut r = (*old).clone();
        let mut changes = serde_json::Map::new();
        for (field, slot, new) in [
            ("profile", &mut r.profile, &assign.profile),
            ("role", &mut r.role, &assign.role),
        ] {
            if new.is_some() && slot != new {
                changes.insert(
                    field.into(),
                    serde_json::json!({ "from": slot.clone(), "to": new }),
                );
                *slot = new.clone();
            }
        }
        if let Some(z) = &assign.zone
            && *z != r.zone
        {
            changes.insert(
                "zone".into(),
                serde_json::json!({ "from": r.zone, "to": z }),
            );
            r.zone = z.clone();
        }
        r.status = status;
        r.status_by = actor.to_owned();
        r.status_at = now_ms();
        r.status_reason = reason.to_owned();
        let mut detail = serde_json::json!({"from": old.status, "to": status});
        if !changes.is_empty()
            && let Some(o) = detail.as_object_mut()
        {
            o.insert("changes".into(), serde_json::Value::Object(changes));
        }
        let e = AuditEntry::new(category, action.as_str(), actor, reason)
            .device(id)
            .detail(detail);
        self.commit(&r, vec![e], defer, || {
            if old.status == Status::Pending && status != Status::Pending {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            } else if old.status != Status::Pending && status == Status::Pending {
                self.pending.fetch_add(1, Ordering::Relaxed);
            }
            entry.set(r.clone());
        })?;
        Ok(Arc::new(r))
    }

    /// Creates or updates devices and their credentials in one transaction, audited per device.
    ///
    /// A new device gets the file's status (default `active`: provisioning by an operator is an
    /// approval). An existing device keeps its status, profile, zone and role unless `update` is
    /// set; then each field the file names is changed and audited from/to, except that a revoked
    /// device's status never changes here (re-enroll it explicitly).
    pub fn import(
        &self,
        devices: &[ImportDevice],
        actor: &str,
        default_zone: &str,
        update: bool,
    ) -> Result<ImportReport, RegistryError> {
        let now = now_ms();
        let mut records = Vec::new();
        let mut creds = Vec::new();
        for d in devices {
            let id: DeviceId =
                d.id.parse()
                    .map_err(|e| RegistryError::Invalid(format!("device `{}`: {e}", d.id)))?;
            let asked = match &d.status {
                None => None,
                Some(s) => Some(Status::parse(s).ok_or_else(|| {
                    RegistryError::Invalid(format!("device `{id}`: unknown status `{s}`"))
                })?),
            };
            let existing = self.get(&id).map(|e| e.record());
            let pick =
                |new: &Option<String>, old: Option<&String>| new.clone().or_else(|| old.cloned());
            let mut changes = serde_json::Map::new();
            let mut kept = serde_json::Map::new();
            let r = match &existing {
                None => DeviceRecord {
                    id: id.clone(),
                    name: d.name.clone(),
                    manufacturer: d.manufacturer.clone(),
                    model: d.model.clone(),
                    firmware: d.firmware.clone(),
                    serial: d.serial.clone(),
                    zone: d.zone.clone().unwrap_or_else(|| default_zone.to_owned()),
                    role: d.role.clone(),
                    profile: d.profile.clone(),
                    status: asked.unwrap_or(Status::Active),
                    status_by: actor.to_owned(),
                    status_at: now,
                    status_reason: "imported".into(),
                    first_seen: None,
                    last_seen: None,
                    credentials: Vec::new(),
                },
                Some(e) => {
                    let mut r = DeviceRecord {
                        name: pick(&d.name, e.name.as_ref()),
                        manufacturer: pick(&d.manufacturer, e.manufacturer.as_ref()),
                        model: pick(&d.model, e.model.as_ref()),
                        firmware: pick(&d.firmware, e.firmware.as_ref()),
                        serial: pick(&d.serial, e.serial.as_ref()),
                        ..(**e).clone()
                    };
                    let status_wanted = asked.filter(|s| *s != e.status);
                    let fields: [(&str, Option<String>, Option<String>); 4] = [
                        (
                            "status",
                            Some(e.status.as_str().to_owned()),
                            status_wanted.map(|s| s.as_str().to_owned()),
                        ),
                        ("profile", e.profile.clone(), d.profile.clone()),
                        ("zone", Some(e.zone.clone()), d.zone.clone()),
                        ("role", e.role.clone(), d.role.clone()),
                    ];
                    for (field, from, to) in fields {
                        let Some(to) = to.filter(|t| Some(t) != from.as_ref()) else {
                            continue;
                        };
                        let entry = serde_json::json!({ "from": from, "to": to });
                        if update {
                            changes.insert(field.into(), entry);
                        } else {
                            kept.insert(field.into(), entry);
                        }
                    }
                    if update {
                        if let Some(s) = status_wanted {
                            if e.status == Status::Revoked {
                                return Err(RegistryError::Revoked(id.to_string()));
                            }
                            r.status = s;
                            r.status_by = actor.to_owned();
                            r.status_at = now;
                            r.status_reason = "imported with --update".into();
                        }
                        r.profile = pick(&d.profile, e.profile.as_ref());
                        r.role = pick(&d.role, e.role.as_ref());
                        r.zone = d.zone.clone().unwrap_or_else(|| e.zone.clone());
                    }
                    r
                }
            };
            for (name, value) in &d.credentials {
                if name.is_empty() || name.len() > 64 {
                    return Err(RegistryError::Invalid(format!(
                        "device `{id}`: bad credential name"
                    )));
                }
                let bytes = decode_credential(value).map_err(|e| {
                    // never echo the value
                    RegistryError::Invalid(format!("device `{id}`: credential `{name}`: {e}"))
                })?;
                creds.push((id.clone(), name.clone(), bytes));
            }
            records.push((r, existing, changes, kept));
        }
        let _in_place = self.in_place.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.store.write(|tx, sealer| {
            let mut audit = Vec::new();
            let mut report = ImportReport {
                created: 0,
                updated: 0,
                credentials_set: 0,
            };
            for (r, existing, changes, kept) in &records {
                upsert(tx, sealer, r)?;
                let detail = match existing {
                    None => {
                        report.created += 1;
                        serde_json::json!({
                            "status": r.status, "zone": r.zone, "role": r.role,
                            "profile": r.profile, "updated": false,
                        })
                    }
                    Some(_) => {
                        report.updated += 1;
                        serde_json::json!({
                            "status": r.status, "zone": r.zone, "role": r.role,
                            "profile": r.profile, "updated": true,
                            "changes": changes,
                            "kept": kept,
                        })
                    }
                };
                let reason = match existing {
                    None => "device provisioned",
                    Some(_) if !changes.is_empty() => "existing device updated (--update)",
                    Some(_) if !kept.is_empty() => {
                        "existing device: status, profile, zone and role kept (import without --update)"
                    }
                    Some(_) => "existing device: details refreshed",
                };
                audit.push(
                    AuditEntry::new(Category::Operator, "import", actor, reason)
                        .device(&r.id)
                        .detail(detail),
                );
            }
            for (id, name, bytes) in &creds {
                let aad = format!("{id}/{name}");
                tx.prepare_cached(
                    "INSERT INTO credentials(device, name, sealed, updated_at) VALUES(?1, ?2, ?3, ?4)
                     ON CONFLICT(device, name) DO UPDATE SET sealed=excluded.sealed,
                       updated_at=excluded.updated_at",
                )?
                .execute(params![
                    id.to_string(),
                    name,
                    sealer.seal(aad.as_bytes(), bytes),
                    now as i64
                ])?;
                report.credentials_set += 1;
                audit.push(
                    AuditEntry::new(Category::Operator, "key-change", actor, "credential set")
                        .device(id)
                        .detail(serde_json::json!({ "credential": name })),
                );
            }
            audit.push(
                AuditEntry::new(Category::Operator, "import-summary", actor, "bulk import")
                    .detail(serde_json::json!({
                        "created": report.created, "updated": report.updated,
                        "credentials": report.credentials_set,
                    })),
            );
            Ok((report, audit))
        })?;
        // keys may have changed: nothing unsealed before the import is served after it
        {
            let mut c = self.creds.lock().unwrap_or_else(|p| p.into_inner());
            self.creds_gen.fetch_add(1, Ordering::AcqRel);
            c.clear();
        }
        for (mut r, existing, _, _) in records {
            let mut names: Vec<String> = creds
                .iter()
                .filter(|c| c.0 == r.id)
                .map(|c| c.1.clone())
                .collect();
            if existing.is_some()
                && let Some(e) = self.get(&r.id)
            {
                names.extend(e.record().credentials.iter().cloned());
                let old = e.record().status;
                if old == Status::Pending && r.status != Status::Pending {
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                } else if old != Status::Pending && r.status == Status::Pending {
                    self.pending.fetch_add(1, Ordering::Relaxed);
                }
            } else if r.status == Status::Pending {
                self.pending.fetch_add(1, Ordering::Relaxed);
            }
            names.sort();
            names.dedup();
            r.credentials = names;
            self.insert_entry(r);
        }
        Ok(report)
    }

    /// Every device, without secrets, in the import format.
    pub fn export(&self) -> Vec<ImportDevice> {
        self.all()
            .into_iter()
            .map(|(r, _)| ImportDevice {
                id: r.id.to_string(),
                name: r.name.clone(),
                zone: Some(r.zone.clone()),
                role: r.role.clone(),
                profile: r.profile.clone(),
                status: Some(r.status.as_str().to_owned()),
                manufacturer: r.manufacturer.clone(),
                model: r.model.clone(),
                firmware: r.firmware.clone(),
                serial: r.serial.clone(),
                credentials: BTreeMap::new(),
                credentials_set: r.credentials.clone(),
            })
            .collect()
    }

    /// Opens a credential of an *active* device.
    pub fn credential(&self, id: &DeviceId, name: &str) -> Option<Secret> {
        let e = self.get(id)?;
        if e.record().status != Status::Active {
            return None;
        }
        let key = (id.clone(), name.to_owned());
        if let Some(hit) = self
            .creds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return hit.as_ref().map(|b| Secret::new(b.to_vec()));
        }
        let generation = self.creds_gen.load(Ordering::Acquire);
        let opened = crate::store::off_async(|| {
            self.store.query(|c, sealer| {
                let blob: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT sealed FROM credentials WHERE device=?1 AND name=?2",
                        params![id.to_string(), name],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(blob.and_then(|b| sealer.open(format!("{id}/{name}").as_bytes(), &b).ok()))
            })
        })
        // a read error is not cached: the next frame tries again
        .ok()?
        .map(zeroize::Zeroizing::new);
        let out = opened.as_ref().map(|b| Secret::new(b.to_vec()));
        let mut c = self.creds.lock().unwrap_or_else(|p| p.into_inner());
        if self.creds_gen.load(Ordering::Acquire) == generation {
            if c.len() >= CREDENTIAL_CACHE_MAX {
                c.clear();
            }
            c.insert(key, opened);
        }
        out
    }

    /// Enrolment credentials named `name` of `protocol`'s pending and active devices (see
    /// [`CredentialLookup::enrolment`]).
    pub fn enrolment(&self, protocol: &str, name: &str) -> Vec<(DeviceId, Secret)> {
        let rows: Vec<(String, Vec<u8>)> = crate::store::off_async(|| {
            self.store.query(|c, sealer| {
                let mut st = c.prepare(
                    "SELECT device, sealed FROM credentials WHERE name=?1 AND device LIKE ?2",
                )?;
                let rows = st
                    .query_map(params![name, format!("{protocol}:%")], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })?
                    .filter_map(Result::ok)
                    .filter_map(|(d, b)| {
                        let open = sealer.open(format!("{d}/{name}").as_bytes(), &b).ok()?;
                        Some((d, open))
                    })
                    .collect();
                Ok(rows)
            })
        })
        .unwrap_or_default();
        rows.into_iter()
            .filter_map(|(d, secret)| {
                let id: DeviceId = d.parse().ok()?;
                let status = self.get(&id)?.record().status;
                matches!(status, Status::Active | Status::Pending)
                    .then(|| (id, Secret::new(secret)))
            })
            .collect()
    }

    /// Writes every raised `best_assurance` to the store, so the downgrade guard survives a
    /// restart. Called every second: a scan of atomics, and a write only when some device's
    /// assurance rose (a handful of times in a device's life).
    pub fn flush_raised_assurance(&self) -> Result<usize, RegistryError> {
        let raised: Vec<(String, u64)> = {
            let m = self.map.read().unwrap_or_else(|p| p.into_inner());
            m.iter()
                .filter_map(|(id, e)| {
                    let best = e.stats.best_assurance.load(Ordering::Relaxed);
                    (best > e.stats.best_flushed.load(Ordering::Relaxed)).then(|| {
                        e.stats.best_flushed.store(best, Ordering::Relaxed);
                        (id.to_string(), best)
                    })
                })
                .collect()
        };
        if raised.is_empty() {
            return Ok(0);
        }
        self.store.write(|tx, _| {
            let mut st = tx.prepare_cached(
                "UPDATE devices SET best_assurance=max(coalesce(best_assurance, 0), ?2) WHERE id=?1",
            )?;
            for (id, best) in &raised {
                st.execute(params![id, *best as i64])?;
            }
            Ok(((), Vec::new()))
        })?;
        Ok(raised.len())
    }

    /// Writes changed `last_seen` values to the store (called periodically and at shutdown).
    pub fn flush_last_seen(&self) -> Result<usize, RegistryError> {
        let dirty: Vec<(String, u64)> = {
            let m = self.map.read().unwrap_or_else(|p| p.into_inner());
            m.iter()
                .filter_map(|(id, e)| {
                    let ls = e.stats.last_seen.load(Ordering::Relaxed);
                    (ls > e.stats.last_flushed.load(Ordering::Relaxed)).then(|| {
                        e.stats.last_flushed.store(ls, Ordering::Relaxed);
                        (id.to_string(), ls)
                    })
                })
                .collect()
        };
        if dirty.is_empty() {
            return Ok(0);
        }
        self.store.write(|tx, _| {
            let mut st = tx.prepare_cached("UPDATE devices SET last_seen=?2 WHERE id=?1")?;
            for (id, ls) in &dirty {
                st.execute(params![id, *ls as i64])?;
            }
            Ok(((), Vec::new()))
        })?;
        Ok(dirty.len())
    }

    /// A lookup restricted to one protocol's devices, handed to that protocol's adapter.
    pub fn lookup_for(self: &Arc<Self>, protocol: &'static str) -> Arc<dyn CredentialLookup> {
        Arc::new(ProtocolCredentials {
            registry: self.clone(),
            protocol,
        })
    }
}

struct ProtocolCredentials {
    registry: Arc<Registry>,
    protocol: &'static str,
}

impl CredentialLookup for ProtocolCredentials {
    fn credential(&self, device: &DeviceId, name: &str) -> Option<Secret> {
        if device.protocol() != self.protocol {
            return None;
        }
        self.registry.credential(device, name)
    }

    fn enrolment(&self, name: &str) -> Vec<(DeviceId, Secret)> {
        self.registry.enrolment(self.protocol, name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::secrets::MasterKey;

    fn reg() -> (tempfile::TempDir, Store, Arc<Registry>) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([2; 32])).unwrap();
        let r = Arc::new(Registry::load(s.clone(), 2).unwrap());
        (d, s, r)
    }

    #[test]
    fn the_pipelines_changes_take_effect_at_once_and_are_written_by_the_writer() {
        let (_d, s, r) = reg();
        let _w = r.start_writer().unwrap();
        let head = s.audit_head().0;
        let dev = id("sim:new");
        r.register_pending(&dev, None, "default", "first uplink")
            .unwrap();
        // in force in memory at once
        assert_eq!(r.get(&dev).unwrap().record().status, Status::Pending);
        r.set_status(
            &dev,
            Status::Quarantined,
            "builtin:behaviour",
            "flood",
            Category::Decision,
        )
        .unwrap();
        assert_eq!(r.get(&dev).unwrap().record().status, Status::Quarantined);
        // an operator's change is written in place, and a queued earlier change written later
        // does not undo it (the writer writes the row as it is then)
        r.operator_action(
            &dev,
            StatusAction::Release,
            &Assignment::default(),
            "alice",
            "checked",
        )
        .unwrap();
        r.flush_writer();
        let stored: String = s
            .read(|c, _| {
                Ok(
                    c.query_row("SELECT status FROM devices WHERE id = 'sim:new'", [], |x| {
                        x.get(0)
                    })?,
                )
            })
            .unwrap();
        assert_eq!(stored, "active");
        // every change audited: registered, quarantine, release
        let recs = s.read(|c, _| crate::audit::tail(c, 10)).unwrap();
        let actions: Vec<_> = recs
            .iter()
            .filter(|x| x.seq > head)
            .map(|x| x.action.as_str())
            .collect();
        for a in ["device-registered", "quarantine", "release"] {
            assert!(actions.contains(&a), "{actions:?}");
        }
        // a reload sees the row the writer wrote, with a valid MAC
        let again = Registry::load(s.clone(), 2).unwrap();
        assert_eq!(again.get(&dev).unwrap().record().status, Status::Active);
        let v = s
            .read(|c, _| Ok(crate::audit::verify(c, &s.verifying_key)))
            .unwrap();
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn pending_registration_is_bounded_and_audited() {
        let (_d, s, r) = reg();
        for i in 0..2 {
            let id: DeviceId = format!("sim:n{i}").parse().unwrap();
            r.register_pending(&id, None, "default", "first uplink")
                .unwrap();
        }
        let id: DeviceId = "sim:n9".parse().unwrap();
        assert!(matches!(
            r.register_pending(&id, None, "default", "x"),
            Err(RegistryError::TooManyPending(2))
        ));
        assert_eq!(s.audit_head().0, 2);
        let n0: DeviceId = "sim:n0".parse().unwrap();
        r.set_status(&n0, Status::Active, "alice", "checked", Category::Operator)
            .unwrap();
        assert_eq!(r.pending_count(), 1);
        r.register_pending(&id, None, "default", "x").unwrap();
    }

    #[test]
    fn credentials_are_sealed_and_only_for_active_devices_of_the_protocol() {
        let (d, s, r) = reg();
        let toml = r#"
[[devices]]
id = "lorawan:0004a30b001c0530"
profile = "p"
credentials = { app_key = "hex:2b7e151628aed2a6abf7158809cf4f3c" }
[[devices]]
id = "sim:x"
status = "pending"
credentials = { psk = "base64:aGVsbG8=" }
"#;
        let devs = parse_import(toml, false).unwrap();
        let rep = r.import(&devs, "alice", "default", false).unwrap();
        assert_eq!((rep.created, rep.credentials_set), (2, 2));
        let lw: DeviceId = "lorawan:0004a30b001c0530".parse().unwrap();
        let key = r.credential(&lw, "app_key").unwrap();
        assert_eq!(
            hex::encode(key.expose()),
            "2b7e151628aed2a6abf7158809cf4f3c"
        );
        // pending device: no credential handed out
        assert!(r.credential(&"sim:x".parse().unwrap(), "psk").is_none());
        // a lookup for another protocol sees nothing
        assert!(r.lookup_for("modbus").credential(&lw, "app_key").is_none());
        assert!(r.lookup_for("lorawan").credential(&lw, "app_key").is_some());
        // nothing readable in the database file, audit or export
        drop(s);
        let raw = std::fs::read(d.path().join(crate::store::DB_FILE)).unwrap();
        let wal = std::fs::read(d.path().join("warden.db-wal")).unwrap_or_default();
        let needle = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        for hay in [&raw, &wal] {
            assert!(!hay.windows(16).any(|w| w == needle.as_slice()));
            assert!(!hay.windows(5).any(|w| w == b"hello"));
        }
        let exported = toml::to_string(&ImportFile {
            devices: r.export(),
        })
        .unwrap();
        // the export is itself a valid import file
        assert_eq!(parse_import(&exported, false).unwrap().len(), 2);
        assert!(
            exported.contains("credentials_set = [\"app_key\"]"),
            "{exported}"
        );
        assert!(!exported.contains("2b7e15"));
    }

    #[test]
    fn csv_import_and_errors_do_not_echo_secrets() {
        let csv = "id,zone,profile,cred:key\nsim:a,default,p,hex:00ff\nsim:b,,,\n";
        let d = parse_import(csv, true).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].credentials["key"], "hex:00ff");
        assert!(d[1].zone.is_none());
        let bad = parse_import("id,bogus\nsim:a,1\n", true)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("bogus"));
        let (_d, _s, r) = reg();
        let devs = parse_import(
            "[[devices]]\nid = \"sim:a\"\ncredentials = { k = \"hex:zz-topsecret\" }\n",
            false,
        )
        .unwrap();
        let e = r
            .import(&devs, "a", "default", false)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(r.all().is_empty(), "a failed import changes nothing");
    }

    #[test]
    fn the_downgrade_guard_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let id: DeviceId = "sim:g".parse().unwrap();
        let other: DeviceId = "sim:h".parse().unwrap();
        {
            let s = Store::open(d.path(), &MasterKey::from_bytes([2; 32])).unwrap();
            let r = Registry::load(s, 10).unwrap();
            let e = r.register_pending(&id, None, "default", "seen").unwrap();
            r.register_pending(&other, None, "default", "seen").unwrap();
            assert_eq!(r.flush_raised_assurance().unwrap(), 0, "nothing raised");
            e.stats.best_assurance.store(3, Ordering::Relaxed);
            assert_eq!(r.flush_raised_assurance().unwrap(), 1);
            assert_eq!(r.flush_raised_assurance().unwrap(), 0, "written once");
            // the store only ever raises it
            e.stats.best_assurance.store(4, Ordering::Relaxed);
            assert_eq!(r.flush_raised_assurance().unwrap(), 1);
        }
        let s = Store::open(d.path(), &MasterKey::from_bytes([2; 32])).unwrap();
        let r = Registry::load(s, 10).unwrap();
        let best = |id: &DeviceId| {
            r.get(id)
                .unwrap()
                .stats
                .best_assurance
                .load(Ordering::Relaxed)
        };
        assert_eq!(best(&id), 4);
        assert_eq!(best(&other), 0);
    }

    #[test]
    fn registry_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let id: DeviceId = "sim:p".parse().unwrap();
        {
            let s = Store::open(d.path(), &MasterKey::from_bytes([2; 32])).unwrap();
            let r = Registry::load(s, 10).unwrap();
            let e = r.register_pending(&id, None, "default", "seen").unwrap();
            e.stats.last_seen.store(12345, Ordering::Relaxed);
            r.set_status(&id, Status::Quarantined, "bob", "odd", Category::Operator)
                .unwrap();
            assert_eq!(r.flush_last_seen().unwrap(), 1);
        }
        let s = Store::open(d.path(), &MasterKey::from_bytes([2; 32])).unwrap();
        let r = Registry::load(s, 10).unwrap();
        let rec = r.get(&id).unwrap().record();
        assert_eq!(rec.status, Status::Quarantined);
        assert_eq!(rec.status_by, "bob");
        assert_eq!(rec.last_seen, Some(12345));
        assert_eq!(r.pending_count(), 0);
    }

    fn exec(s: &Store, sql: &str) {
        s.read(|c, _| {
            c.execute_batch(sql)?;
            Ok(())
        })
        .unwrap();
    }

    fn last_records(s: &Store, n: u64) -> Vec<crate::audit::Record> {
        s.read(|c, _| crate::audit::tail(c, n)).unwrap()
    }

    fn id(s: &str) -> DeviceId {
        s.parse().unwrap()
    }

    fn catalogue() -> Catalogue {
        Catalogue {
            profiles: ["counter".to_owned(), "thermostat".to_owned()].into(),
            zones: ["default".to_owned(), "plant".to_owned()].into(),
            roles: ["sensor".to_owned()].into(),
        }
    }

    #[test]
    fn a_row_edited_behind_the_gateway_is_refused_and_the_device_is_pending() {
        let d = tempfile::tempdir().unwrap();
        let key = [2u8; 32];
        {
            let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
            let r = Registry::load(s, 10).unwrap();
            r.register_pending(&id("sim:evil"), None, "default", "seen")
                .unwrap();
            r.import(
                &parse_import(
                    "[[devices]]\nid = \"sim:good\"\nprofile = \"counter\"\n",
                    false,
                )
                .unwrap(),
                "alice",
                "default",
                false,
            )
            .unwrap();
        }
        let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
        exec(
            &s,
            "UPDATE devices SET status='active', profile='counter' WHERE id='sim:evil'",
        );
        let r = Registry::load(s.clone(), 10).unwrap();
        let evil = r.get(&id("sim:evil")).unwrap().record();
        assert_eq!(evil.status, Status::Pending);
        assert!(
            evil.status_reason.contains("integrity tag"),
            "{}",
            evil.status_reason
        );
        assert_eq!(
            r.get(&id("sim:good")).unwrap().record().status,
            Status::Active
        );
        assert_eq!(r.pending_count(), 1);
        let rec = last_records(&s, 1).remove(0);
        assert_eq!(rec.action, "registry-tampered");
        assert_eq!(rec.category, "security");
        assert_eq!(rec.device.as_deref(), Some("sim:evil"));
        let detail: serde_json::Value = serde_json::from_str(&rec.detail).unwrap();
        assert_eq!(detail["claimed"]["status"], "active");
        assert_eq!(detail["claimed"]["profile"], "counter");
        // the refusal rewrote the row as pending under a valid tag: the next load is quiet
        let head = s.audit_head().0;
        let r = Registry::load(s.clone(), 10).unwrap();
        assert_eq!(
            r.get(&id("sim:evil")).unwrap().record().status,
            Status::Pending
        );
        assert_eq!(s.audit_head().0, head);
        // a row whose tag was removed is refused too (the migration ran long ago)
        exec(&s, "UPDATE devices SET mac=NULL WHERE id='sim:good'");
        let r = Registry::load(s.clone(), 10).unwrap();
        assert_eq!(
            r.get(&id("sim:good")).unwrap().record().status,
            Status::Pending
        );
        // and an unknown status string does not stop the gateway from loading
        exec(&s, "UPDATE devices SET status='owned' WHERE id='sim:evil'");
        let r = Registry::load(s, 10).unwrap();
        assert_eq!(
            r.get(&id("sim:evil")).unwrap().record().status,
            Status::Pending
        );
    }

    #[test]
    fn credentials_are_cached_after_unsealing_and_evicted_on_a_key_change_or_status() {
        let (_d, s, r) = reg();
        let import = |hex: &str, update: bool| {
            let toml =
                format!("[[devices]]\nid = \"sim:k\"\ncredentials = {{ k = \"hex:{hex}\" }}\n");
            r.import(
                &parse_import(&toml, false).unwrap(),
                "alice",
                "default",
                update,
            )
            .unwrap();
        };
        import("00ff", false);
        let k = || {
            r.credential(&id("sim:k"), "k")
                .map(|s| hex::encode(s.expose()))
        };
        assert_eq!(k().as_deref(), Some("00ff"));
        // served from the cache: the store is not read again (a row removed behind its back)
        exec(&s, "DELETE FROM credentials WHERE device='sim:k'");
        assert_eq!(k().as_deref(), Some("00ff"));
        // a key change through the registry evicts it
        import("0102", true);
        assert_eq!(k().as_deref(), Some("0102"));
        // a device that is no longer active gets nothing, cached or not
        r.set_status(
            &id("sim:k"),
            Status::Revoked,
            "alice",
            "lost",
            Category::Operator,
        )
        .unwrap();
        assert!(k().is_none());
        // a miss is cached too, and evicted by the next import
        assert!(r.credential(&id("sim:k"), "other").is_none());
    }

    #[test]
    fn a_credential_moved_to_another_device_does_not_open_and_the_device_is_pending() {
        let (_d, s, r) = reg();
        let toml = "[[devices]]\nid = \"sim:a\"\ncredentials = { k = \"hex:00ff\" }\n[[devices]]\nid = \"sim:b\"\ncredentials = { k = \"hex:0102\" }\n";
        r.import(
            &parse_import(toml, false).unwrap(),
            "alice",
            "default",
            false,
        )
        .unwrap();
        exec(
            &s,
            "UPDATE credentials SET sealed=(SELECT sealed FROM credentials WHERE device='sim:a') WHERE device='sim:b'",
        );
        let r = Registry::load(s.clone(), 10).unwrap();
        assert_eq!(r.get(&id("sim:a")).unwrap().record().status, Status::Active);
        let b = r.get(&id("sim:b")).unwrap().record();
        assert_eq!(b.status, Status::Pending);
        assert!(
            b.status_reason.contains("credential"),
            "{}",
            b.status_reason
        );
        assert!(r.credential(&id("sim:b"), "k").is_none());
    }

    #[test]
    fn rows_from_before_macs_are_tagged_once_and_audited_once() {
        let (_d, s, r) = reg();
        r.register_pending(&id("sim:old"), None, "default", "seen")
            .unwrap();
        r.set_status(
            &id("sim:old"),
            Status::Active,
            "alice",
            "ok",
            Category::Operator,
        )
        .unwrap();
        // what a data dir from before this change looks like
        exec(
            &s,
            "UPDATE devices SET mac=NULL; DELETE FROM meta WHERE key='registry_macs'",
        );
        let r = Registry::load(s.clone(), 10).unwrap();
        assert_eq!(
            r.get(&id("sim:old")).unwrap().record().status,
            Status::Active
        );
        let rec = last_records(&s, 1).remove(0);
        assert_eq!(rec.action, "registry-macs-added");
        assert!(rec.detail.contains("\"rows\":1"), "{}", rec.detail);
        let head = s.audit_head().0;
        let r = Registry::load(s.clone(), 10).unwrap();
        assert_eq!(
            r.get(&id("sim:old")).unwrap().record().status,
            Status::Active
        );
        assert_eq!(s.audit_head().0, head, "migration runs once");
    }

    #[test]
    fn reasons_are_mandatory() {
        let (_d, _s, r) = reg();
        r.register_pending(&id("sim:a"), None, "default", "seen")
            .unwrap();
        for reason in ["", "   "] {
            for act in [
                StatusAction::Approve,
                StatusAction::Quarantine,
                StatusAction::Revoke,
            ] {
                assert!(matches!(
                    r.operator_action(&id("sim:a"), act, &Assignment::default(), "alice", reason),
                    Err(RegistryError::ReasonRequired(_))
                ));
            }
        }
        assert_eq!(
            r.get(&id("sim:a")).unwrap().record().status,
            Status::Pending
        );
    }

    #[test]
    fn revoke_is_terminal_until_an_explicit_re_enroll() {
        let (_d, s, r) = reg();
        let a = id("sim:a");
        let none = Assignment::default();
        r.register_pending(&a, None, "default", "seen").unwrap();
        assert!(matches!(
            r.operator_action(&a, StatusAction::Release, &none, "alice", "x"),
            Err(RegistryError::WrongState {
                expected: "quarantined",
                ..
            })
        ));
        r.operator_action(&a, StatusAction::Revoke, &none, "alice", "stolen")
            .unwrap();
        for act in [
            StatusAction::Approve,
            StatusAction::Quarantine,
            StatusAction::Release,
        ] {
            assert!(
                matches!(
                    r.operator_action(&a, act, &none, "alice", "again"),
                    Err(RegistryError::Revoked(_))
                ),
                "{act:?}"
            );
        }
        // the pipeline cannot move it either
        assert!(matches!(
            r.set_status(
                &a,
                Status::Quarantined,
                "builtin:x",
                "odd",
                Category::Decision
            ),
            Err(RegistryError::Revoked(_))
        ));
        let rec = r
            .operator_action(
                &a,
                StatusAction::ReEnroll,
                &none,
                "admin",
                "replaced battery",
            )
            .unwrap();
        assert_eq!(rec.status, Status::Pending);
        assert_eq!(r.pending_count(), 1);
        let last = last_records(&s, 1).remove(0);
        assert_eq!(last.action, "re-enroll");
        let detail: serde_json::Value = serde_json::from_str(&last.detail).unwrap();
        assert_eq!(
            (detail["from"].as_str(), detail["to"].as_str()),
            (Some("revoked"), Some("pending"))
        );
        assert!(matches!(
            r.operator_action(&a, StatusAction::ReEnroll, &none, "admin", "twice"),
            Err(RegistryError::WrongState {
                expected: "revoked",
                ..
            })
        ));
    }

    #[test]
    fn import_keeps_an_existing_devices_grants_unless_update() {
        let (_d, s, r) = reg();
        let first = "[[devices]]\nid = \"sim:a\"\nprofile = \"counter\"\n";
        r.import(
            &parse_import(first, false).unwrap(),
            "alice",
            "default",
            false,
        )
        .unwrap();
        r.operator_action(
            &id("sim:a"),
            StatusAction::Revoke,
            &Assignment::default(),
            "alice",
            "stolen",
        )
        .unwrap();
        // re-importing (default status active, another profile) changes neither
        let again = "[[devices]]\nid = \"sim:a\"\nprofile = \"thermostat\"\nzone = \"plant\"\nname = \"Lobby\"\n";
        r.import(
            &parse_import(again, false).unwrap(),
            "mallory",
            "default",
            false,
        )
        .unwrap();
        let rec = r.get(&id("sim:a")).unwrap().record();
        assert_eq!(rec.status, Status::Revoked);
        assert_eq!(rec.profile.as_deref(), Some("counter"));
        assert_eq!(rec.zone, "default");
        assert_eq!(
            rec.name.as_deref(),
            Some("Lobby"),
            "descriptive fields still update"
        );
        let imp = last_records(&s, 2).remove(0);
        assert_eq!(imp.action, "import");
        let detail: serde_json::Value = serde_json::from_str(&imp.detail).unwrap();
        assert_eq!(detail["kept"]["profile"]["to"], "thermostat");
        assert!(detail["changes"].as_object().unwrap().is_empty());
        // --update cannot un-revoke either
        let reactivate = "[[devices]]\nid = \"sim:a\"\nstatus = \"active\"\n";
        assert!(matches!(
            r.import(
                &parse_import(reactivate, false).unwrap(),
                "alice",
                "default",
                true
            ),
            Err(RegistryError::Revoked(_))
        ));
        // on a live device --update changes what it names, audited from/to
        r.import(
            &parse_import("[[devices]]\nid = \"sim:b\"\n", false).unwrap(),
            "alice",
            "default",
            false,
        )
        .unwrap();
        let upd =
            "[[devices]]\nid = \"sim:b\"\nprofile = \"thermostat\"\nstatus = \"quarantined\"\n";
        r.import(&parse_import(upd, false).unwrap(), "alice", "default", true)
            .unwrap();
        let b = r.get(&id("sim:b")).unwrap().record();
        assert_eq!(
            (b.status, b.profile.as_deref()),
            (Status::Quarantined, Some("thermostat"))
        );
        let imp = last_records(&s, 2).remove(0);
        let detail: serde_json::Value = serde_json::from_str(&imp.detail).unwrap();
        assert_eq!(detail["changes"]["status"]["from"], "active");
        assert_eq!(detail["changes"]["status"]["to"], "quarantined");
        assert_eq!(detail["changes"]["profile"]["to"], "thermostat");
    }

    #[test]
    fn approve_checks_names_and_writes_one_record() {
        let (_d, s, r) = reg();
        r.set_catalogue(catalogue());
        let a = id("sim:a");
        r.register_pending(&a, None, "default", "seen").unwrap();
        for (assign, kind) in [
            (
                Assignment {
                    profile: Some("no-such".into()),
                    ..Assignment::default()
                },
                "profile",
            ),
            (
                Assignment {
                    zone: Some("nowhere".into()),
                    ..Assignment::default()
                },
                "zone",
            ),
            (
                Assignment {
                    role: Some("boss".into()),
                    ..Assignment::default()
                },
                "role",
            ),
        ] {
            match r.operator_action(&a, StatusAction::Approve, &assign, "alice", "ok") {
                Err(RegistryError::Unknown { kind: k, valid, .. }) => {
                    assert_eq!(k, kind);
                    assert!(!valid.is_empty());
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
        let e = r
            .operator_action(
                &a,
                StatusAction::Approve,
                &Assignment {
                    profile: Some("nope".into()),
                    ..Assignment::default()
                },
                "alice",
                "ok",
            )
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unknown profile `nope` (configured: counter, thermostat)"
        );
        let head = s.audit_head().0;
        let assign = Assignment {
            profile: Some("counter".into()),
            zone: Some("plant".into()),
            role: Some("sensor".into()),
        };
        let rec = r
            .operator_action(&a, StatusAction::Approve, &assign, "alice", "checked label")
            .unwrap();
        assert_eq!(rec.status, Status::Active);
        assert_eq!(rec.zone, "plant");
        assert_eq!(s.audit_head().0, head + 1, "one record");
        let last = last_records(&s, 1).remove(0);
        assert_eq!(last.action, "approve");
        let detail: serde_json::Value = serde_json::from_str(&last.detail).unwrap();
        assert_eq!(detail["changes"]["profile"]["to"], "counter");
        assert_eq!(detail["changes"]["zone"]["from"], "default");
        assert_eq!(detail["changes"]["role"]["to"], "sensor");
        assert!(matches!(
            r.operator_action(&a, StatusAction::Quarantine, &assign, "alice", "x"),
            Err(RegistryError::Invalid(_))
        ));
    }

    #[test]
    fn import_errors_name_the_place_never_the_secret() {
        let secret = "2b7e151628aed2a6abf7158809cf4f3c";
        let bad = [
            format!(
                "[[devices]]\nid = \"lorawan:0004a30b001c0530\"\ncredentials = {{ app_key = \"hex:{secret}\n"
            ),
            format!(
                "[[devices]]\nid = \"lorawan:0004a30b001c0530\"\ncredentials = {{ app_key = hex:{secret} }}\n"
            ),
            format!("[[devices]]\nid = \"x\"\nstatus = \"{secret}\"\nbogus = \"{secret}\"\n"),
        ];
        for text in bad {
            let e = parse_import(&text, false).unwrap_err().to_string();
            assert!(!e.contains(secret) && !e.contains("2b7e"), "{e}");
            assert!(e.contains("line "), "{e}");
        }
    }

    proptest::proptest! {
        /// Import files come from operators' tools and other systems: any text gives devices or an
        /// error, never a panic.
        #[test]
        fn arbitrary_import_text_never_panics(t in ".{0,300}", csv in proptest::prelude::any::<bool>()) {
            if let Err(e) = parse_import(&t, csv) {
                let _ = e.to_string();
            }
        }
    }
}
