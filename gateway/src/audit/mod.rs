//! The tamper-evident audit log.
//!
//! Every record is hashed with the previous record's hash: `hash = SHA-256("warden-audit-v1" ‖ prev ‖
//! record)`. The last record of every committed batch carries a *seal*: the gateway's Ed25519 signature
//! over `(seq, record count, hash)`. [`verify`] walks the chain and names the first record that was
//! edited, deleted, inserted or reordered; recomputing hashes after an edit does not help an attacker,
//! because the seals further on no longer verify without the gateway's private key (which is sealed
//! under the master key). Deleting the *newest* records leaves a shorter chain that still verifies on
//! its own: [`anchor`] keeps signed heads elsewhere so that truncation and wipes are detected too.
//!
//! Retention: decisions on commands (allowed or not), every denial and quarantine, and every operator
//! and security action are recorded one by one, forever (the log is append-only; archive with
//! `warden audit export`). Allowed routine uplink telemetry is aggregated per device per window
//! (`category = aggregate`: count, bytes, first/last time) to bound the log's size.

use std::fmt::Write as _;
use std::sync::Arc;
use std::thread::JoinHandle;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub mod anchor;
pub mod retention;

use crate::batch::BatchSender;
use crate::disk::DiskState;
use crate::store::{Store, StoreError};

/// What kind of event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A pipeline decision on one message.
    Decision,
    /// Allowed routine telemetry, counted per device per window.
    Aggregate,
    /// Something an operator did (approve, quarantine, import, key change…).
    Operator,
    /// Security events outside the pipeline (broker auth failures, ACL violations, rejected frames).
    Security,
    /// Gateway lifecycle (start, stop, config load, queue overflow).
    System,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Aggregate => "aggregate",
            Self::Operator => "operator",
            Self::Security => "security",
            Self::System => "system",
        }
    }
}

/// One record to append. `detail` is JSON text; it never holds secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub ts: u64,
    pub category: Category,
    pub action: String,
    pub device: Option<String>,
    pub actor: String,
    pub decider: Option<String>,
    pub verdict: Option<String>,
    pub reason: String,
    pub detail: String,
}

impl AuditEntry {
    pub fn new(category: Category, action: &str, actor: &str, reason: impl Into<String>) -> Self {
        Self {
            ts: warden_core::now_ms(),
            category,
            action: action.to_owned(),
            device: None,
            actor: actor.to_owned(),
            decider: None,
            verdict: None,
            reason: reason.into(),
            detail: "{}".to_owned(),
        }
    }
    pub fn device(mut self, d: impl ToString) -> Self {
        self.device = Some(d.to_string());
        self
    }
    pub fn decision(mut self, decider: &str, verdict: &str) -> Self {
        self.decider = Some(decider.to_owned());
        self.verdict = Some(verdict.to_owned());
        self
    }
    pub fn detail(mut self, v: serde_json::Value) -> Self {
        self.detail = v.to_string();
        self
    }
}

/// A stored record, as read back.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seq: u64,
    pub ts: u64,
    pub category: String,
    pub action: String,
    pub device: Option<String>,
    pub actor: String,
    pub decider: Option<String>,
    pub verdict: Option<String>,
    pub reason: String,
    pub detail: String,
    #[serde(serialize_with = "ser_hex")]
    pub prev: Vec<u8>,
    #[serde(serialize_with = "ser_hex")]
    pub hash: Vec<u8>,
    #[serde(serialize_with = "ser_opt_hex")]
    pub seal: Option<Vec<u8>>,
}

fn ser_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}
fn ser_opt_hex<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

fn put_opt(h: &mut Sha256, s: Option<&str>) {
    match s {
        Some(s) => {
            h.update([1]);
            put_str(h, s);
        }
        None => h.update([0]),
    }
}

/// The hash of a record given its predecessor's hash. Every field is length-prefixed so no two
/// different records encode alike.
#[allow(clippy::too_many_arguments)]
fn record_hash(
    prev: &[u8],
    seq: u64,
    ts: u64,
    category: &str,
    action: &str,
    device: Option<&str>,
    actor: &str,
    decider: Option<&str>,
    verdict: Option<&str>,
    reason: &str,
    detail: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"warden-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(ts.to_be_bytes());
    put_str(&mut h, category);
    put_str(&mut h, action);
    put_opt(&mut h, device);
    put_str(&mut h, actor);
    put_opt(&mut h, decider);
    put_opt(&mut h, verdict);
    put_str(&mut h, reason);
    put_str(&mut h, detail);
    h.finalize().into()
}

impl Record {
    /// This record's hash given its predecessor's hash.
    fn hash_with(&self, prev: &[u8]) -> [u8; 32] {
        record_hash(
            prev,
            self.seq,
            self.ts,
            &self.category,
            &self.action,
            self.device.as_deref(),
            &self.actor,
            self.decider.as_deref(),
            self.verdict.as_deref(),
            &self.reason,
            &self.detail,
        )
    }
}

/// What a seal signs: the record's number, how many records the chain holds up to it, and its hash.
/// (v1 seals, written before the count was added, signed only `seq ‖ hash`; [`verify`] still accepts
/// them for old records.)
fn seal_message(seq: u64, count: u64, hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + 16 + 32);
    m.extend_from_slice(b"warden-audit-seal-v2");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

fn seal_message_v1(seq: u64, hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + 8 + 32);
    m.extend_from_slice(b"warden-audit-seal-v1");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// The chain's head and the key that seals it. Lives inside the store's mutex.
pub struct Chain {
    seq: u64,
    hash: [u8; 32],
    key: Arc<SigningKey>,
}

impl Chain {
    pub fn load(conn: &Connection, key: Arc<SigningKey>) -> Result<Self, StoreError> {
        let head: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (seq, hash) = match head {
            Some((s, h)) => (
                s as u64,
                h.try_into()
                    .map_err(|_| StoreError::Other("audit head hash has a bad length".into()))?,
            ),
            None => (0, [0u8; 32]),
        };
        Ok(Self { seq, hash, key })
    }

    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.seq, self.hash)
    }

    /// Inserts `entries` after the head inside `tx` and seals the last one. Returns the new head, to
    /// be passed to [`Chain::commit`] once the transaction has committed.
    pub fn append(
        &self,
        tx: &Transaction<'_>,
        entries: &[AuditEntry],
    ) -> Result<(u64, [u8; 32]), StoreError> {
        let (mut seq, mut prev) = (self.seq, self.hash);
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit(seq, ts, category, action, device, actor, decider, verdict, reason,
                               detail, prev, hash, seal)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let n = entries.len();
        for (i, e) in entries.iter().enumerate() {
            seq += 1;
            let hash = record_hash(
                &prev,
                seq,
                e.ts,
                e.category.as_str(),
                &e.action,
                e.device.as_deref(),
                &e.actor,
                e.decider.as_deref(),
                e.verdict.as_deref(),
                &e.reason,
                &e.detail,
            );
            // Sequence numbers start at 1 and have no gaps, so the count up to `seq` is `seq`.
            let seal = (i + 1 == n).then(|| {
                self.key
                    .sign(&seal_message(seq, seq, &hash))
                    .to_bytes()
                    .to_vec()
            });
            stmt.execute(params![
                seq as i64,
                e.ts as i64,
                e.category.as_str(),
                e.action,
                e.device,
                e.actor,
                e.decider,
                e.verdict,
                e.reason,
                e.detail,
                prev.to_vec(),
                hash.to_vec(),
                seal,
            ])?;
            prev = hash;
        }
        Ok((seq, prev))
    }

    pub fn commit(&mut self, head: (u64, [u8; 32])) {
        self.seq = head.0;
        self.hash = head.1;
    }
}

const SELECT: &str = "SELECT seq, ts, category, action, device, actor, decider, verdict, reason,
                             detail, prev, hash, seal FROM audit";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: r.get::<_, i64>(0)? as u64,
        ts: r.get::<_, i64>(1)? as u64,
        category: r.get(2)?,
        action: r.get(3)?,
        device: r.get(4)?,
        actor: r.get(5)?,
        decider: r.get(6)?,
        verdict: r.get(7)?,
        reason: r.get(8)?,
        detail: r.get(9)?,
        prev: r.get(10)?,
        hash: r.get(11)?,
        seal: r.get(12)?,
    })
}

/// The result of a successful verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The first record checked: 1, or the one after the retention checkpoint.
    pub from_seq: u64,
    /// The signed retention checkpoint the walk started from (the last pruned record), if any.
    pub checkpoint: Option<u64>,
    /// Records checked (from `from_seq` to the head).
    pub records: u64,
    pub seals: u64,
    pub head_seq: u64,
    pub head_hash: String,
}

/// The first problem found, naming the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {problem}")]
pub struct VerifyError {
    pub seq: u64,
    pub problem: String,
}

/// Walks the whole chain. `key` is the gateway's public key (from `gateway.pub` or pinned by the
/// operator).
pub fn verify(conn: &Connection, key: &VerifyingKey) -> Result<VerifyReport, VerifyError> {
    let db_err = |e: rusqlite::Error| VerifyError {
        seq: 0,
        problem: format!("cannot read the audit table: {e}"),
    };
    // After a prune, the walk starts from the signed checkpoint: its hash is the first kept
    // record's `prev`, and sequence numbers go on from it.
    let checkpoint = retention::latest(conn, key)?;
    let (from_seq, start_prev) = checkpoint
        .as_ref()
        .map_or((1, [0u8; 32]), |c| (c.seq + 1, c.hash));
    let mut stmt = conn
        .prepare(&format!("{SELECT} WHERE seq >= ?1 ORDER BY seq"))
        .map_err(db_err)?;
    let mut rows = stmt
        .query([i64::try_from(from_seq).unwrap_or(i64::MAX)])
        .map_err(db_err)?;
    let mut expect = from_seq;
    let mut prev = start_prev.to_vec();
    let mut seals = 0u64;
    let mut last_sealed = true;
    while let Some(row) = rows.next().map_err(db_err)? {
        let r = row_to_record(row).map_err(db_err)?;
        let bad = |problem: String| VerifyError {
            seq: r.seq,
            problem,
        };
        if r.seq != expect {
            return Err(if r.seq > expect {
                bad(format!(
                    "expected record {expect} next: record(s) {expect}..{} are missing (deleted)",
                    r.seq - 1
                ))
            } else {
                bad("sequence number out of order".into())
            });
        }
        if r.prev != prev {
            return Err(bad(
                "its link to the previous record is broken (a record was inserted, deleted or reordered before it)"
                    .into(),
            ));
        }
        if r.hash_with(&r.prev).as_slice() != r.hash.as_slice() {
            return Err(bad(
                "its content does not match its hash (the record was edited)".into(),
            ));
        }
        match &r.seal {
            Some(s) => {
                let sig = Signature::from_slice(s)
                    .map_err(|_| bad("its seal is not a signature".into()))?;
                // `expect - 1` records precede this one in the walk: the count this seal must name.
                let v2 = key.verify(&seal_message(r.seq, expect, &r.hash), &sig);
                if v2.is_err() && key.verify(&seal_message_v1(r.seq, &r.hash), &sig).is_err() {
                    return Err(bad("its seal does not verify with the gateway key (the chain was rewritten up to here)".into()));
                }
                seals += 1;
                last_sealed = true;
            }
            None => last_sealed = false,
        }
        prev = r.hash;
        expect += 1;
    }
    let head_seq = expect - 1;
    if !last_sealed {
        return Err(VerifyError {
            seq: head_seq,
            problem: "the last record is not sealed (records were appended outside the gateway)"
                .into(),
        });
    }
    Ok(VerifyReport {
        from_seq,
        checkpoint: checkpoint.map(|c| c.seq),
        records: head_seq + 1 - from_seq,
        seals,
        head_seq,
        head_hash: hex::encode(&prev),
    })
}

/// The hash of record `seq`, if the chain holds it.
pub fn hash_at(conn: &Connection, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT hash FROM audit WHERE seq = ?1",
            [i64::try_from(seq).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )
        .optional()?)
}

/// The last record's sequence number (0 for an empty chain).
pub fn last_seq(conn: &Connection) -> Result<u64, StoreError> {
    let s: Option<i64> = conn.query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))?;
    Ok(s.map_or(0, |s| s.max(0) as u64))
}

/// The last `n` records, oldest first.
pub fn tail(conn: &Connection, n: u64) -> Result<Vec<Record>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM ({SELECT} ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
    ))?;
    let rows = stmt.query_map([n as i64], row_to_record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Streams every record from `from_seq` on as JSON lines into `out`.
pub fn export_jsonl(
    conn: &Connection,
    from_seq: u64,
    out: &mut dyn std::io::Write,
) -> Result<u64, StoreError> {
    export_range_jsonl(conn, from_seq, i64::MAX as u64, out)
}

/// Streams records `from..=through` as JSON lines into `out` (what retention exports).
pub fn export_range_jsonl(
    conn: &Connection,
    from: u64,
    through: u64,
    out: &mut dyn std::io::Write,
) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![from as i64, through as i64], row_to_record)?;
    let mut n = 0;
    for r in rows {
        let line = serde_json::to_string(&r?).map_err(|e| StoreError::Other(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| StoreError::Other(e.to_string()))?;
        n += 1;
    }
    Ok(n)
}

/// One line for a human. Every field is escaped ([`warden_core::text::escape`]): records come
/// from a database that someone may have written to directly, and a control character in a
/// reason or a detail must not forge a line, move the cursor or recolour the operator's terminal.
pub fn format_record(r: &Record) -> String {
    use warden_core::text::escape;
    let mut s = format!(
        "#{:<6} {} {:<9} {}",
        r.seq,
        fmt_ts(r.ts),
        escape(&r.category),
        escape(&r.action)
    );
    if let Some(d) = &r.device {
        let _ = write!(s, " device={}", escape(d));
    }
    let _ = write!(s, " actor={}", escape(&r.actor));
    if let (Some(dec), Some(v)) = (&r.decider, &r.verdict) {
        let _ = write!(s, " {} by {}", escape(v), escape(dec));
    }
    if !r.reason.is_empty() {
        let _ = write!(s, ": {}", escape(&r.reason));
    }
    if r.detail != "{}" {
        let _ = write!(s, " {}", escape(&r.detail));
    }
    s
}

fn fmt_ts(ms: u64) -> String {
    // UTC, ISO-8601-ish, without pulling a time crate.
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    let (h, m, sec) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil-from-days (Howard Hinnant's algorithm, public domain description)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{sec:02}.{:03}Z",
        ms % 1000
    )
}

/// Background writer for pipeline decisions: batches records into one transaction each (see
/// [`crate::batch`]): bounded, blocking when full, never dropping a record.
///
/// While the disk is degraded ([`DiskState`]) a record that finds the queue full is counted by
/// category instead of blocking the message path; the counts are audited once writes succeed again.
#[derive(Clone)]
pub struct AuditSink {
    tx: BatchSender<AuditEntry>,
    disk: Arc<DiskState>,
    /// A copy of each record for live viewers (the dashboard's decision stream): a ring of
    /// [`LIVE_BUFFER`] records that never blocks the sender; a viewer that falls behind by more
    /// is told so and dropped by its stream. Nothing is copied while nobody watches.
    live: tokio::sync::broadcast::Sender<Arc<AuditEntry>>,
    /// Live viewers now (an atomic, so recording takes no lock while nobody watches).
    live_watchers: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a live viewer while it lives (see [`AuditSink::subscribe`]).
pub struct LiveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Records a live viewer may fall behind by before it is dropped.
pub const LIVE_BUFFER: usize = 1024;

impl AuditSink {
    pub fn start(store: Store, capacity: usize) -> std::io::Result<(Self, JoinHandle<()>)> {
        Self::start_with(store, capacity, Arc::default())
    }

    /// Starts the writer; its failures and successes are reported to `disk`.
    pub fn start_with(
        store: Store,
        capacity: usize,
        disk: Arc<DiskState>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let d = disk.clone();
        let (tx, h) =
            BatchSender::spawn("audit-writer", capacity, 4096, move |b: &[AuditEntry]| {
                let r = store.audit(b).map_err(|e| e.to_string());
                d.set_failing(r.is_err());
                r
            })?;
        let (live, _) = tokio::sync::broadcast::channel(LIVE_BUFFER);
        Ok((
            Self {
                tx,
                disk,
                live,
                live_watchers: Arc::default(),
            },
            h,
        ))
    }

    pub fn record(&self, e: AuditEntry) {
        if self
            .live_watchers
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            let _ = self.live.send(Arc::new(e.clone()));
        }
        if self.disk.degraded() {
            let category = e.category.as_str();
            if !self.tx.try_send(e) {
                self.disk.count_lost(category);
            }
        } else if !self.tx.send(e) {
            tracing::error!("audit writer is gone; record lost");
        }
    }

    /// Every record from now on, for a live viewer (see [`LIVE_BUFFER`]), while the guard lives.
    pub fn subscribe(&self) -> (LiveGuard, tokio::sync::broadcast::Receiver<Arc<AuditEntry>>) {
        self.live_watchers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (LiveGuard(self.live_watchers.clone()), self.live.subscribe())
    }

    /// The disk state this sink reports to.
    pub fn disk(&self) -> &Arc<DiskState> {
        &self.disk
    }

    /// Returns once everything recorded before this call is committed.
    pub fn flush(&self) {
        self.tx.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::secrets::MasterKey;

    #[test]
    fn live_viewers_get_a_copy_only_while_they_watch() {
        let (_d, s) = store();
        let (sink, _h) = AuditSink::start(s, 16).unwrap();
        let e = |r: &str| AuditEntry::new(Category::Decision, "uplink", "device", r);
        sink.record(e("before"));
        let (guard, mut rx) = sink.subscribe();
        sink.record(e("while"));
        assert_eq!(rx.try_recv().unwrap().reason, "while");
        drop(guard);
        sink.record(e("after"));
        assert!(
            rx.try_recv().is_err(),
            "nothing copied once the viewer is gone"
        );
        sink.flush();
    }

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        (d, s)
    }

    fn fill(s: &Store, n: usize) {
        for i in 0..n {
            let e = AuditEntry::new(Category::Operator, "approve", "alice", format!("r{i}"))
                .device(format!("sim:d{i}"));
            s.audit(&[e.clone(), e]).unwrap();
        }
    }

    fn check(s: &Store) -> Result<VerifyReport, VerifyError> {
        s.read(|c, _| Ok(verify(c, &s.verifying_key))).unwrap()
    }

    fn exec(s: &Store, sql: &str) {
        s.read(|c, _| {
            c.execute_batch(sql)?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn tail_escapes_control_characters_planted_in_the_database() {
        let (_d, s) = store();
        fill(&s, 1);
        // written straight into SQLite, bypassing every sanitiser on the way in
        exec(
            &s,
            "UPDATE audit SET reason = 'ok' || char(10) || '#999    2026-01-01 security  decision device=x actor=gateway allow by builtin:profile' || char(13) || char(27) || '[2K' || char(27) || ']0;pwned' || char(7), \
             actor = 'al' || char(27) || '[31mice', device = 'sim:' || char(8238) || 'd', \
             detail = '{\"x\":\"' || char(155) || '\"}' WHERE seq = 1",
        );
        let recs = s.read(|c, _| tail(c, 10)).unwrap();
        let line = format_record(&recs[0]);
        assert!(warden_core::text::is_clean(&line), "{line:?}");
        assert!(!line.contains(['\n', '\r', '\x1b', '\x07', '\u{9b}', '\u{202e}']));
        assert!(line.contains("ok\\u{a}#999"), "{line}");
        assert!(line.contains("\\u{1b}[2K"), "{line}");
        assert!(line.contains("actor=al\\u{1b}[31mice"), "{line}");
        assert!(line.contains("device=sim:\\u{202e}d"), "{line}");
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, s) = store();
        fill(&s, 5);
        let r = check(&s).unwrap();
        assert_eq!(r.records, 10);
        assert_eq!(r.seals, 5);
        assert_eq!(s.audit_head().0, 10);
    }

    #[test]
    fn edit_is_detected_even_with_recomputed_hashes() {
        let (_d, s) = store();
        fill(&s, 5);
        exec(&s, "UPDATE audit SET reason='nothing to see' WHERE seq=4");
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.problem.contains("edited"), "{e}");
        // An attacker who recomputes every hash from 4 on is stopped by the next seal.
        s.read(|c, _| {
            let recs = tail(c, 100)?;
            let mut prev = recs[2].hash.clone();
            for r in recs.iter().skip(3) {
                let h = r.hash_with(&prev);
                c.execute(
                    "UPDATE audit SET prev=?1, hash=?2 WHERE seq=?3",
                    params![prev, h.to_vec(), r.seq as i64],
                )?;
                prev = h.to_vec();
            }
            Ok(())
        })
        .unwrap();
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 4, "{e}");
        assert!(e.problem.contains("seal"), "{e}");
    }

    #[test]
    fn delete_insert_reorder_are_detected() {
        let (_d, s) = store();
        fill(&s, 5);
        exec(&s, "DELETE FROM audit WHERE seq=6");
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 7);
        assert!(e.problem.contains("missing"), "{e}");

        let (_d, s) = store();
        fill(&s, 5);
        // insert: shift 6.. up by one and put a forged record at 6
        exec(
            &s,
            "UPDATE audit SET seq = seq + 1000 WHERE seq >= 6;
             UPDATE audit SET seq = seq - 999 WHERE seq >= 1006;
             INSERT INTO audit SELECT 6, ts, category, 'forged', device, actor, decider, verdict,
                 reason, detail, prev, hash, seal FROM audit WHERE seq = 5;",
        );
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 6, "{e}");

        let (_d, s) = store();
        fill(&s, 5);
        // reorder: swap records 3 and 4
        exec(
            &s,
            "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4;
             UPDATE audit SET seq = 4 WHERE seq = -3;",
        );
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 3, "{e}");
        assert!(e.problem.contains("link"), "{e}");

        let (_d, s) = store();
        fill(&s, 2);
        // append an unsealed record at the end with a correct hash
        s.read(|c, _| {
            let last = tail(c, 1)?.remove(0);
            let h = record_hash(&last.hash, 5, 1, "operator", "x", None, "mallory", None, None, "", "{}");
            c.execute(
                "INSERT INTO audit VALUES(5, 1, 'operator', 'x', NULL, 'mallory', NULL, NULL, '', '{}', ?1, ?2, NULL)",
                params![last.hash, h.to_vec()],
            )?;
            Ok(())
        })
        .unwrap();
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 5);
        assert!(e.problem.contains("not sealed"), "{e}");
    }

    #[test]
    fn sink_batches_and_chain_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let key = [3u8; 32];
        {
            let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
            let (sink, h) = AuditSink::start(s.clone(), 16).unwrap();
            for i in 0..1000 {
                sink.record(AuditEntry::new(
                    Category::Decision,
                    "uplink",
                    "gw",
                    format!("{i}"),
                ));
            }
            drop(sink);
            h.join().unwrap();
            assert_eq!(check(&s).unwrap().records, 1000);
        }
        let s = Store::open(d.path(), &MasterKey::from_bytes(key)).unwrap();
        fill(&s, 1);
        assert_eq!(check(&s).unwrap().records, 1002);
        let mut out = Vec::new();
        let n = s.read(|c, _| export_jsonl(c, 1001, &mut out)).unwrap();
        assert_eq!(n, 2);
        let first: serde_json::Value =
            serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["seq"], 1001);
        assert_eq!(first["actor"], "alice");
        assert!(Store::open(d.path(), &MasterKey::from_bytes([4; 32])).is_err());
    }

    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(fmt_ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_ts(1_795_330_596_123), "2026-11-22T06:56:36.123Z");
    }
}
