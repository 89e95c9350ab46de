//! The device registry: who each device is, its zone, role, usage profile and status, and its
//! credentials (sealed with AES-256-GCM). Persistent in the store; cached in memory for the pipeline.
//!
//! Every status change and credential change is written in the same transaction as its audit record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use warden_core::{Announcement, CredentialLookup, DeviceId, Secret, now_ms};

use crate::audit::{AuditEntry, Category};
use crate::store::{Store, StoreError};

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
    #[error("too many pending devices ({0}); approve or revoke some first")]
    TooManyPending(usize),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Registry {
    store: Store,
    map: RwLock<HashMap<DeviceId, Arc<DeviceEntry>>>,
    pending: AtomicUsize,
    max_pending: usize,
}

const COLUMNS: &str =
    "id, name, manufacturer, model, firmware, serial, zone, role, profile, status,
                       status_by, status_at, status_reason, first_seen, last_seen";

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
        status: Status::parse(&status).ok_or_else(|| conv(format!("bad status {status}")))?,
        status_by: r.get(10)?,
        status_at: r.get::<_, i64>(11)? as u64,
        status_reason: r.get(12)?,
        first_seen: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        last_seen: r.get::<_, Option<i64>>(14)?.map(|v| v as u64),
        credentials: Vec::new(),
    })
}

fn upsert(tx: &Transaction<'_>, r: &DeviceRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO devices({COLUMNS}, protocol, address)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(id) DO UPDATE SET name=excluded.name, manufacturer=excluded.manufacturer,
           model=excluded.model, firmware=excluded.firmware, serial=excluded.serial,
           zone=excluded.zone, role=excluded.role, profile=excluded.profile, status=excluded.status,
           status_by=excluded.status_by, status_at=excluded.status_at,
           status_reason=excluded.status_reason, first_seen=excluded.first_seen,
           last_seen=excluded.last_seen"
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
pub fn parse_import(text: &str, csv_format: bool) -> Result<Vec<ImportDevice>, RegistryError> {
    if !csv_format {
        let f: ImportFile =
            toml::from_str(text).map_err(|e| RegistryError::Invalid(e.to_string()))?;
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
    pub fn load(store: Store, max_pending: usize) -> Result<Self, RegistryError> {
        let records: Vec<DeviceRecord> = store.read(|c, _| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM devices"))?;
            let rows = stmt.query_map([], row_to_record)?;
            let mut v: Vec<DeviceRecord> = rows.collect::<Result<_, _>>()?;
            let mut cs = c.prepare("SELECT device, name FROM credentials ORDER BY name")?;
            let mut creds: HashMap<String, Vec<String>> = HashMap::new();
            for row in cs.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (d, n) = row?;
                creds.entry(d).or_default().push(n);
            }
            for r in &mut v {
                r.credentials = creds.remove(&r.id.to_string()).unwrap_or_default();
            }
            Ok(v)
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
            .collect();
        Ok(Self {
            store,
            map: RwLock::new(map),
            pending: AtomicUsize::new(pending),
            max_pending,
        })
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
        self.store.write(|tx, _| {
            upsert(tx, &r)?;
            let a = AuditEntry::new(Category::Security, "device-registered", "gateway", why)
                .device(id)
                .decision("builtin:registry", "deny")
                .detail(serde_json::json!({
                    "status": "pending",
                    "manufacturer": r.manufacturer, "model": r.model,
                    "firmware": r.firmware, "serial": r.serial,
                }));
            Ok(((), vec![a]))
        })?;
        self.pending.fetch_add(1, Ordering::Relaxed);
        Ok(self.insert_entry(r))
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
        self.store.write(|tx, _| {
            upsert(tx, &r)?;
            let e = AuditEntry::new(
                Category::Security,
                "evidence-changed",
                "gateway",
                "device reported different identity evidence",
            )
            .device(id)
            .detail(serde_json::json!({ "changes": changed }));
            Ok(((), vec![e]))
        })?;
        entry.set(r);
        Ok(())
    }

    /// Changes a device's status (approve, quarantine, revoke), audited as an action of `actor`.
    pub fn set_status(
        &self,
        id: &DeviceId,
        status: Status,
        actor: &str,
        reason: &str,
        category: Category,
    ) -> Result<Arc<DeviceRecord>, RegistryError> {
        let entry = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        let old = entry.record();
        let mut r = (*old).clone();
        r.status = status;
        r.status_by = actor.to_owned();
        r.status_at = now_ms();
        r.status_reason = reason.to_owned();
        let action = match status {
            Status::Active => "approve",
            Status::Quarantined => "quarantine",
            Status::Revoked => "revoke",
            Status::Pending => "set-pending",
        };
        self.store.write(|tx, _| {
            upsert(tx, &r)?;
            let e = AuditEntry::new(category, action, actor, reason)
                .device(id)
                .detail(serde_json::json!({"from": old.status, "to": status}));
            Ok(((), vec![e]))
        })?;
        if old.status == Status::Pending && status != Status::Pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        } else if old.status != Status::Pending && status == Status::Pending {
            self.pending.fetch_add(1, Ordering::Relaxed);
        }
        entry.set(r.clone());
        Ok(Arc::new(r))
    }

    /// Creates or updates devices and their credentials in one transaction, audited per device.
    pub fn import(
        &self,
        devices: &[ImportDevice],
        actor: &str,
        default_zone: &str,
    ) -> Result<ImportReport, RegistryError> {
        let now = now_ms();
        let mut records = Vec::new();
        let mut creds = Vec::new();
        for d in devices {
            let id: DeviceId =
                d.id.parse()
                    .map_err(|e| RegistryError::Invalid(format!("device `{}`: {e}", d.id)))?;
            let status = match &d.status {
                None => Status::Active,
                Some(s) => Status::parse(s).ok_or_else(|| {
                    RegistryError::Invalid(format!("device `{id}`: unknown status `{s}`"))
                })?,
            };
            let existing = self.get(&id).map(|e| e.record());
            let r = DeviceRecord {
                id: id.clone(),
                name: d
                    .name
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.name.clone())),
                manufacturer: d
                    .manufacturer
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.manufacturer.clone())),
                model: d
                    .model
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.model.clone())),
                firmware: d
                    .firmware
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.firmware.clone())),
                serial: d
                    .serial
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.serial.clone())),
                zone: d
                    .zone
                    .clone()
                    .or_else(|| existing.as_ref().map(|e| e.zone.clone()))
                    .unwrap_or_else(|| default_zone.to_owned()),
                role: d
                    .role
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.role.clone())),
                profile: d
                    .profile
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|e| e.profile.clone())),
                status,
                status_by: actor.to_owned(),
                status_at: now,
                status_reason: "imported".into(),
                first_seen: existing.as_ref().and_then(|e| e.first_seen),
                last_seen: existing.as_ref().and_then(|e| e.last_seen),
                credentials: Vec::new(),
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
            records.push((r, existing.is_some()));
        }
        let report = self.store.write(|tx, sealer| {
            let mut audit = Vec::new();
            let mut report = ImportReport {
                created: 0,
                updated: 0,
                credentials_set: 0,
            };
            for (r, existed) in &records {
                upsert(tx, r)?;
                if *existed {
                    report.updated += 1;
                } else {
                    report.created += 1;
                }
                audit.push(
                    AuditEntry::new(Category::Operator, "import", actor, "device provisioned")
                        .device(&r.id)
                        .detail(serde_json::json!({
                            "status": r.status, "zone": r.zone, "role": r.role,
                            "profile": r.profile, "updated": existed,
                        })),
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
        for (mut r, existed) in records {
            let mut names: Vec<String> = creds
                .iter()
                .filter(|c| c.0 == r.id)
                .map(|c| c.1.clone())
                .collect();
            if existed && let Some(e) = self.get(&r.id) {
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
        self.store
            .read(|c, sealer| {
                let blob: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT sealed FROM credentials WHERE device=?1 AND name=?2",
                        params![id.to_string(), name],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(blob.and_then(|b| sealer.open(format!("{id}/{name}").as_bytes(), &b).ok()))
            })
            .ok()
            .flatten()
            .map(Secret::new)
    }

    /// Enrolment credentials named `name` of `protocol`'s pending and active devices (see
    /// [`CredentialLookup::enrolment`]).
    pub fn enrolment(&self, protocol: &str, name: &str) -> Vec<(DeviceId, Secret)> {
        let rows: Vec<(String, Vec<u8>)> = self
            .store
            .read(|c, sealer| {
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
        let rep = r.import(&devs, "alice", "default").unwrap();
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
        let e = r.import(&devs, "a", "default").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(r.all().is_empty(), "a failed import changes nothing");
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
}
