//! The embedded transactional store (SQLite, WAL, `synchronous=FULL`): registry, credentials, audit
//! chain and gateway metadata in `warden.db`. One writer connection behind a mutex; every change that
//! must be atomic with its audit record happens in one transaction (see [`Store::write`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

use crate::audit::{AuditEntry, Chain};
use crate::secrets::{MasterKey, Sealer, SecretError};

pub const DB_FILE: &str = "warden.db";
pub const PUBKEY_FILE: &str = "gateway.pub";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the master key does not match this data dir (its sealed secrets cannot be opened)")]
    WrongKey,
    #[error("{0}")]
    Other(String),
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
    id TEXT PRIMARY KEY,
    protocol TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT,
    manufacturer TEXT,
    model TEXT,
    firmware TEXT,
    serial TEXT,
    zone TEXT NOT NULL,
    role TEXT,
    profile TEXT,
    status TEXT NOT NULL,
    status_by TEXT NOT NULL,
    status_at INTEGER NOT NULL,
    status_reason TEXT NOT NULL,
    first_seen INTEGER,
    last_seen INTEGER,
    mac BLOB
);
CREATE TABLE IF NOT EXISTS credentials(
    device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY(device, name)
);
CREATE TABLE IF NOT EXISTS adapter_state(
    protocol TEXT NOT NULL,
    key TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY(protocol, key)
);
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    device TEXT,
    actor TEXT NOT NULL,
    decider TEXT,
    verdict TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL,
    seal BLOB
);
"#;

pub struct Inner {
    pub conn: Connection,
    pub chain: Chain,
    sealer: Sealer,
}

/// The `meta` key set once every registry row carries a MAC (new data dirs have it from the start;
/// older ones get it from the registry's one-time migration). Once set, a row without a MAC is an edit.
pub const REGISTRY_MACS_KEY: &str = "registry_macs";

/// A read-only connection of its own, for the hot lookups (credentials, adapter state): in WAL
/// mode it sees the last committed state without waiting for a writer's transaction or fsync.
struct Reader {
    conn: Connection,
    sealer: Sealer,
}

/// Shared handle to the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    reader: Arc<Mutex<Reader>>,
    pub data_dir: PathBuf,
    pub verifying_key: ed25519_dalek::VerifyingKey,
    signing_key: Arc<SigningKey>,
}

/// SQLite's page cache per connection, in KiB (SQLite's default is 2,000). A hub's working set is
/// the registry's rows and the baselines, rewritten in batches; pages beyond this are read back
/// from the OS page cache. Measured: at 10,000 devices the default cache was full (~2 MiB).
pub const CACHE_KIB: i64 = 1024;

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(conn)
}

/// Opens a data dir's database read-only, for forensics on a stopped (or running) gateway.
pub fn open_readonly(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(StoreError::Other(format!(
            "no database at {} (is --data-dir right?)",
            path.display()
        )));
    }
    open_conn(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`, checks the master key against it and
    /// loads or creates the gateway signing key.
    pub fn open(data_dir: &Path, master: &MasterKey) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        if path.exists() {
            // check the key before writing anything to an existing data dir
            let ro = open_conn(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let check: Option<Vec<u8>> = ro
                .query_row("SELECT value FROM meta WHERE key='key_check'", [], |r| {
                    r.get(0)
                })
                .optional()
                .unwrap_or(None);
            if let Some(blob) = check
                && master.sealer().open(b"key-check", &blob).ok().as_deref() != Some(b"warden")
            {
                return Err(StoreError::WrongKey);
            }
        }
        let conn = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::audit::retention::SCHEMA)?;
        add_column_if_missing(&conn, "devices", "mac", "BLOB")?;
        // the strongest assurance seen: the downgrade guard survives a restart
        add_column_if_missing(&conn, "devices", "best_assurance", "INTEGER")?;
        let sealer = master.sealer();

        // Key check: a sealed constant proves this master key is the one the data dir was made with.
        let check: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key='key_check'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match check {
            Some(blob) => {
                if sealer.open(b"key-check", &blob).ok().as_deref() != Some(b"warden") {
                    return Err(StoreError::WrongKey);
                }
            }
            None => {
                // A new data dir: every registry row it will ever hold is written with a MAC.
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('key_check', ?1), (?2, x'01')",
                    params![sealer.seal(b"key-check", b"warden"), REGISTRY_MACS_KEY],
                )?;
            }
        }

        let sk: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE key='gateway_signing_key'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let signing_key = match sk {
            Some(blob) => {
                let seed = sealer.open(b"gateway-signing-key", &blob)?;
                let seed: [u8; 32] = seed
                    .try_into()
                    .map_err(|_| StoreError::Other("stored signing key has a bad length".into()))?;
                SigningKey::from_bytes(&seed)
            }
            None => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('gateway_signing_key', ?1)",
                    params![sealer.seal(b"gateway-signing-key", key.as_bytes())],
                )?;
                key
            }
        };
        let verifying_key = signing_key.verifying_key();
        let pub_path = data_dir.join(PUBKEY_FILE);
        let pub_text = crate::northbound::envelope::encode_pubkey(&verifying_key);
        if std::fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_text.as_str()) {
            std::fs::write(&pub_path, &pub_text)
                .map_err(|e| StoreError::Other(format!("{}: {e}", pub_path.display())))?;
        }
        let signing_key = Arc::new(signing_key);
        let chain = Chain::load(&conn, signing_key.clone())?;
        let reader = Reader {
            conn: open_conn(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
            sealer: master.sealer(),
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                chain,
                sealer,
            })),
            reader: Arc::new(Mutex::new(reader)),
            data_dir: data_dir.to_owned(),
            verifying_key,
            signing_key,
        })
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls back), so a
        // poisoned mutex is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction, then appends `audit` entries (returned by `f`) to the hash chain
    /// in the same transaction. Either both land or neither does.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &Sealer) -> Result<(T, Vec<AuditEntry>), StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.lock();
        let Inner {
            conn,
            chain,
            sealer,
        } = &mut *g;
        let tx = conn.transaction()?;
        let (out, entries) = f(&tx, sealer)?;
        let pending = chain.append(&tx, &entries)?;
        tx.commit()?;
        chain.commit(pending);
        Ok(out)
    }

    /// Appends audit entries in their own transaction.
    pub fn audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(|_, _| Ok(((), entries.to_vec())))
    }

    /// A query on the reader connection: it does not wait for writers (nor they for it). Sees
    /// what was committed; for read-your-own-write inside a change use [`Store::write`].
    pub fn query<T>(
        &self,
        f: impl FnOnce(&Connection, &Sealer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let g = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&g.conn, &g.sealer)
    }

    /// Read access to the connection (for queries). Keep it short: it blocks writers.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection, &Sealer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let g = self.lock();
        f(&g.conn, &g.sealer)
    }

    /// Writes `meta[key]` from the audit chain's current head, with no record appended in between:
    /// `f` gets the head and returns a value and the bytes to store.
    pub fn write_meta_at_head<T>(
        &self,
        key: &str,
        f: impl FnOnce(u64, [u8; 32]) -> (T, Vec<u8>),
    ) -> Result<T, StoreError> {
        let mut g = self.lock();
        let (seq, hash) = g.chain.head();
        let (out, value) = f(seq, hash);
        let tx = g.conn.transaction()?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES(?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            params![key, value],
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// The audit chain's head: (last sequence number, its hash).
    pub fn audit_head(&self) -> (u64, [u8; 32]) {
        let g = self.lock();
        g.chain.head()
    }

    /// Reserves a block of `n` northbound message ids, persisted so a restart never reuses one.
    pub fn reserve_ids(&self, n: u64) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let tx = g.conn.transaction()?;
        let next: u64 = tx
            .query_row("SELECT value FROM meta WHERE key='next_msg_id'", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        let after = next.saturating_add(n);
        tx.execute(
            "INSERT INTO meta(key, value) VALUES('next_msg_id', ?1)
             ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            params![after.to_be_bytes().to_vec()],
        )?;
        tx.commit()?;
        Ok(next)
    }
}

/// Schema migration for columns added after a table was first created.
fn add_column_if_missing(
    conn: &Connection,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), StoreError> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if !names.iter().any(|n| n == column) {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// One adapter's view of the `adapter_state` table: values sealed with AES-256-GCM (bound to
/// protocol and key), each `put` its own `synchronous=FULL` transaction.
pub struct AdapterState {
    store: Store,
    protocol: String,
}

impl AdapterState {
    pub fn new(store: Store, protocol: &str) -> Self {
        Self {
            store,
            protocol: protocol.to_owned(),
        }
    }

    fn aad(&self, key: &str) -> Vec<u8> {
        format!("adapter-state/{}/{key}", self.protocol).into_bytes()
    }
}

fn state_err(e: impl std::fmt::Display) -> warden_core::StateError {
    warden_core::StateError(e.to_string())
}

/// Runs blocking storage work (SQLite, fsync) for a caller that may be an async task: on a tokio
/// multi-thread worker, the worker first hands its other tasks to another thread
/// (`block_in_place`), so no adapter, API or broker task waits behind an fsync. Elsewhere (the
/// pipeline's own thread, plain threads, tests) it just runs.
pub fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl warden_core::StateStore for AdapterState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, warden_core::StateError> {
        off_async(|| self.get_now(key))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), warden_core::StateError> {
        off_async(|| self.put_now(key, value))
    }

    /// One `synchronous=FULL` transaction for all: one fsync however many.
    fn put_many(&self, items: &[(String, Vec<u8>)]) -> Result<(), warden_core::StateError> {
        off_async(|| self.put_many_now(items))
    }

    fn delete(&self, key: &str) -> Result<(), warden_core::StateError> {
        off_async(|| self.delete_now(key))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>, warden_core::StateError> {
        off_async(|| self.keys_now(prefix))
    }
}

impl AdapterState {
    fn get_now(&self, key: &str) -> Result<Option<Vec<u8>>, warden_core::StateError> {
        self.store
            .query(|c, sealer| {
                let blob: Option<Vec<u8>> = c
                    .query_row(
                        "SELECT sealed FROM adapter_state WHERE protocol=?1 AND key=?2",
                        params![self.protocol, key],
                        |r| r.get(0),
                    )
                    .optional()?;
                match blob {
                    None => Ok(None),
                    Some(b) => Ok(Some(sealer.open(&self.aad(key), &b)?)),
                }
            })
            .map_err(state_err)
    }

    fn put_now(&self, key: &str, value: &[u8]) -> Result<(), warden_core::StateError> {
        self.store
            .write(|tx, sealer| {
                tx.prepare_cached(
                    "INSERT INTO adapter_state(protocol, key, sealed) VALUES(?1, ?2, ?3)
                     ON CONFLICT(protocol, key) DO UPDATE SET sealed=excluded.sealed",
                )?
                .execute(params![
                    self.protocol,
                    key,
                    sealer.seal(&self.aad(key), value)
                ])?;
                Ok(((), Vec::new()))
            })
            .map_err(state_err)
    }

    fn put_many_now(&self, items: &[(String, Vec<u8>)]) -> Result<(), warden_core::StateError> {
        if items.is_empty() {
            return Ok(());
        }
        self.store
            .write(|tx, sealer| {
                let mut st = tx.prepare_cached(
                    "INSERT INTO adapter_state(protocol, key, sealed) VALUES(?1, ?2, ?3)
                     ON CONFLICT(protocol, key) DO UPDATE SET sealed=excluded.sealed",
                )?;
                for (key, value) in items {
                    st.execute(params![
                        self.protocol,
                        key,
                        sealer.seal(&self.aad(key), value)
                    ])?;
                }
                Ok(((), Vec::new()))
            })
            .map_err(state_err)
    }

    fn delete_now(&self, key: &str) -> Result<(), warden_core::StateError> {
        self.store
            .write(|tx, _| {
                tx.execute(
                    "DELETE FROM adapter_state WHERE protocol=?1 AND key=?2",
                    params![self.protocol, key],
                )?;
                Ok(((), Vec::new()))
            })
            .map_err(state_err)
    }

    fn keys_now(&self, prefix: &str) -> Result<Vec<String>, warden_core::StateError> {
        self.store
            .query(|c, _| {
                let mut st = c.prepare(
                    "SELECT key FROM adapter_state WHERE protocol=?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )?;
                let rows = st.query_map(params![self.protocol, prefix], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .map_err(state_err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warden_core::StateStore;

    #[test]
    fn adapter_state_is_sealed_scoped_and_durable() {
        let d = tempfile::tempdir().unwrap();
        let key = [9u8; 32];
        {
            let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
            let a = AdapterState::new(s.clone(), "lorawan");
            let b = AdapterState::new(s, "modbus");
            a.put("session/26011bda", b"nwkskey-secret-bytes").unwrap();
            a.put("devnonce/0004a30b001c0530/0001", b"").unwrap();
            assert_eq!(
                a.get("session/26011bda").unwrap().as_deref(),
                Some(&b"nwkskey-secret-bytes"[..])
            );
            assert_eq!(
                b.get("session/26011bda").unwrap(),
                None,
                "scoped per adapter"
            );
            assert_eq!(
                a.keys("devnonce/").unwrap(),
                ["devnonce/0004a30b001c0530/0001"]
            );
            a.delete("devnonce/0004a30b001c0530/0001").unwrap();
            assert!(a.keys("devnonce/").unwrap().is_empty());
        }
        let raw = std::fs::read(d.path().join(DB_FILE)).unwrap();
        let wal = std::fs::read(d.path().join("warden.db-wal")).unwrap_or_default();
        for hay in [&raw, &wal] {
            assert!(
                !hay.windows(12).any(|w| w == b"nwkskey-secr"),
                "state stored in clear"
            );
        }
        let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
        let a = AdapterState::new(s, "lorawan");
        assert_eq!(
            a.get("session/26011bda").unwrap().as_deref(),
            Some(&b"nwkskey-secret-bytes"[..])
        );
    }
}
