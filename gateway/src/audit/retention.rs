//! Audit retention: the oldest records are pruned by age and by size, and what remains still
//! verifies, from a **signed checkpoint**.
//!
//! Pruning records `first..=n` writes, in the same transaction as the delete, a checkpoint row: the
//! number and hash of record `n`, signed with the gateway key. [`super::verify`] then starts at
//! `n + 1` with the checkpoint's hash as the previous link, so every kept record is checked exactly as
//! before; an edit inside the kept range is still found. Deleting old records without a checkpoint
//! leaves a gap that `verify` names; a forged or rolled-back checkpoint does not verify or does not
//! meet the first kept record. The prune itself is the next audit record (`audit-pruned`, naming
//! the range, the checkpoint hash and the export file).
//!
//! When `audit.export_dir` is set, every pruned range is first written there as JSON lines (the
//! same format as `warden audit export`), fsynced and renamed into place; a failed export stops the
//! prune, so nothing leaves the database that was meant to be archived and was not.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rusqlite::{Connection, OptionalExtension, params};

use super::{AuditEntry, Category, VerifyError};
use crate::store::{Store, StoreError};

/// The table of checkpoints (one per pruned chunk; the newest one is the one that counts).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_checkpoints(
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    ts INTEGER NOT NULL,
    sig BLOB NOT NULL,
    exported TEXT
);";

/// Records pruned per transaction: the store lock is held for one chunk at a time, so the audit
/// writer and the registry are never held up for long.
const CHUNK: u64 = 5_000;

/// A signed statement that the chain reached record `seq` with hash `hash` before everything up to
/// it was pruned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(serialize_with = "ser_hash")]
    pub hash: [u8; 32],
    pub ts: u64,
    pub exported: Option<String>,
}

fn ser_hash<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

fn message(seq: u64, hash: &[u8; 32], ts: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(26 + 8 + 32 + 8);
    m.extend_from_slice(b"warden-audit-checkpoint-v1");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&ts.to_be_bytes());
    m
}

/// seq, hash, ts, signature, export file.
type CheckpointRow = (i64, Vec<u8>, i64, Vec<u8>, Option<String>);

/// The newest checkpoint, its signature checked against `key`. `Ok(None)`: nothing was ever pruned.
pub fn latest(conn: &Connection, key: &VerifyingKey) -> Result<Option<Checkpoint>, VerifyError> {
    let db = |e: rusqlite::Error| VerifyError {
        seq: 0,
        problem: format!("cannot read the audit checkpoints: {e}"),
    };
    let row: Option<CheckpointRow> = conn
        .query_row(
            "SELECT seq, hash, ts, sig, exported FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .or_else(|e| match e {
            // a database from before retention has no checkpoint table: nothing was pruned
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such table") => Ok(None),
            e => Err(e),
        })
        .map_err(db)?;
    let Some((seq, hash, ts, sig, exported)) = row else {
        return Ok(None);
    };
    let seq = u64::try_from(seq).unwrap_or(0);
    let bad = |problem: &str| VerifyError {
        seq,
        problem: format!("retention checkpoint: {problem}"),
    };
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| bad("its hash has a bad length"))?;
    let ts = u64::try_from(ts).unwrap_or(0);
    let sig = Signature::from_slice(&sig).map_err(|_| bad("its signature is malformed"))?;
    key.verify_strict(&message(seq, &hash, ts), &sig).map_err(|_| {
        bad("it is not signed by this gateway's key (forged or edited; records before it cannot be accounted for)")
    })?;
    Ok(Some(Checkpoint {
        seq,
        hash,
        ts,
        exported,
    }))
}

/// When records leave the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Records older than this many days are pruned (0: no age limit).
    pub retain_days: u64,
    /// The audit table is kept under about this many bytes (0: no size limit).
    pub max_bytes: u64,
    /// The newest records that are never pruned, whatever the limits say.
    pub keep_records: u64,
    /// Where pruned ranges are exported first (none: pruned records are gone).
    pub export_dir: Option<PathBuf>,
}

impl Policy {
    pub fn is_off(&self) -> bool {
        self.retain_days == 0 && self.max_bytes == 0
    }
}

/// What one pass pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub pruned: u64,
    /// The last pruned record (the newest checkpoint), if any was pruned.
    pub through: Option<u64>,
    pub exported: Vec<PathBuf>,
}

/// The last record that the policy lets go now, and why; `None` if nothing is due.
pub fn due(
    conn: &Connection,
    policy: &Policy,
    now_ms: u64,
) -> Result<Option<(u64, u64, String)>, StoreError> {
    if policy.is_off() {
        return Ok(None);
    }
    let (first, last): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT MIN(seq), MAX(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let (first, last) = (first.max(0) as u64, last.max(0) as u64);
    // never the newest `keep_records`, never the last record (its seal ends the chain)
    let limit = last.saturating_sub(policy.keep_records.max(1));
    if limit < first {
        return Ok(None);
    }
    let mut through = 0u64;
    let mut why = Vec::new();
    if policy.retain_days > 0 {
        let cutoff = now_ms.saturating_sub(policy.retain_days.saturating_mul(86_400_000));
        // Up to the first record that is young enough: a clock that stepped back stops the prune
        // early rather than letting it skip over young records.
        let young: Option<i64> = conn
            .query_row(
                "SELECT seq FROM audit WHERE seq BETWEEN ?1 AND ?2 AND ts >= ?3 ORDER BY seq LIMIT 1",
                params![first as i64, limit as i64, cutoff as i64],
                |r| r.get(0),
            )
            .optional()?;
        let t = young.map_or(limit, |y| (y.max(1) as u64) - 1);
        if t >= first {
            through = through.max(t);
            why.push(format!("older than {} days", policy.retain_days));
        }
    }
    if policy.max_bytes > 0 {
        // average size of the newest records (fixed columns and the row's overhead included)
        let avg: Option<f64> = conn.query_row(
            "SELECT AVG(length(category) + length(action) + ifnull(length(device), 0) + length(actor)
                       + ifnull(length(decider), 0) + ifnull(length(verdict), 0) + length(reason)
                       + length(detail) + ifnull(length(seal), 0) + 88)
             FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT 1000)",
            [],
            |r| r.get(0),
        )?;
        let avg = avg.unwrap_or(1.0).max(1.0);
        let records = last - first + 1;
        if (records as f64) * avg > policy.max_bytes as f64 {
            let keep = (policy.max_bytes as f64 / avg) as u64;
            let t = last.saturating_sub(keep).min(limit);
            if t >= first {
                through = through.max(t);
                why.push(format!("the log is over {} bytes", policy.max_bytes));
            }
        }
    }
    Ok((through >= first).then(|| (first, through.min(limit), why.join(" and "))))
}

/// Prunes what the policy lets go, one chunk per transaction, exporting first when configured.
pub fn prune(store: &Store, policy: &Policy, now_ms: u64) -> Result<Outcome, StoreError> {
    let mut out = Outcome::default();
    // The target is fixed for the pass: each chunk appends its own `audit-pruned` record, which
    // must not move the goal (under a tiny size limit that would prune one record at a time forever).
    let Some((mut first, target, why)) = store.read(|c, _| due(c, policy, now_ms))? else {
        return Ok(out);
    };
    while first <= target {
        let through = target.min(first.saturating_add(CHUNK - 1));
        let exported = match &policy.export_dir {
            Some(dir) => Some(export_range(store, dir, first, through)?),
            None => None,
        };
        let key = store.signing_key().clone();
        let exported_text = exported.as_ref().map(|p| p.display().to_string());
        let n = store.write(|tx, _| {
            let hash: Vec<u8> = tx.query_row(
                "SELECT hash FROM audit WHERE seq = ?1",
                [through as i64],
                |r| r.get(0),
            )?;
            let hash: [u8; 32] = hash
                .try_into()
                .map_err(|_| StoreError::Other("audit record hash has a bad length".into()))?;
            let ts = warden_core::now_ms();
            let sig = key.sign(&message(through, &hash, ts));
            tx.execute(
                "INSERT OR REPLACE INTO audit_checkpoints(seq, hash, ts, sig, exported)
                 VALUES(?1, ?2, ?3, ?4, ?5)",
                params![
                    through as i64,
                    hash.to_vec(),
                    ts as i64,
                    sig.to_bytes().to_vec(),
                    exported_text
                ],
            )?;
            let n = tx.execute(
                "DELETE FROM audit WHERE seq BETWEEN ?1 AND ?2",
                params![first as i64, through as i64],
            )? as u64;
            let rec = AuditEntry::new(
                Category::System,
                "audit-pruned",
                "gateway",
                format!("records {first}..{through} pruned: {why}"),
            )
            .detail(serde_json::json!({
                "from": first, "through": through, "records": n,
                "checkpoint_hash": hex::encode(hash), "exported": exported_text,
            }));
            Ok((n, vec![rec]))
        })?;
        tracing::info!(from = first, through, records = n, "audit records pruned");
        out.pruned += n;
        out.through = Some(through);
        out.exported.extend(exported);
        first = through + 1;
    }
    Ok(out)
}

/// Writes records `from..=through` as JSON lines to `dir/audit-<from>-<through>.jsonl`: a temporary
/// file, fsynced, renamed into place, the directory fsynced.
fn export_range(store: &Store, dir: &Path, from: u64, through: u64) -> Result<PathBuf, StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Other(format!(
            "audit export to {}: {what}: {e} (nothing pruned)",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory", e))?;
    let name = format!("audit-{from:012}-{through:012}.jsonl");
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io("cannot create the file", e))?;
    let mut w = std::io::BufWriter::new(&mut f);
    // a separate read-only connection: the export does not hold the writers' lock
    let conn = crate::store::open_readonly(&store.data_dir)?;
    let n = super::export_range_jsonl(&conn, from, through, &mut w)?;
    w.flush().map_err(|e| io("write", e))?;
    drop(w);
    f.sync_all().map_err(|e| io("fsync", e))?;
    drop(f);
    if n != through - from + 1 {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::Other(format!(
            "audit export: records {from}..{through} should be {} but {n} were read (nothing pruned)",
            through - from + 1
        )));
    }
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::audit::{anchor, tail, verify};
    use crate::secrets::MasterKey;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), &MasterKey::from_bytes([1; 32])).unwrap();
        (d, s)
    }

    /// `n` records in batches of ten (a seal every ten), one transaction per batch.
    fn fill(s: &Store, n: usize, ts: u64) {
        let all: Vec<AuditEntry> = (0..n)
            .map(|i| {
                let mut e =
                    AuditEntry::new(Category::Operator, "approve", "alice", format!("r{i}"))
                        .device(format!("sim:d{i}"));
                e.ts = ts;
                e
            })
            .collect();
        for b in all.chunks(10) {
            s.audit(b).unwrap();
        }
    }

    fn check(s: &Store) -> Result<super::super::VerifyReport, VerifyError> {
        s.read(|c, _| Ok(verify(c, &s.verifying_key))).unwrap()
    }

    fn exec(s: &Store, sql: &str) {
        s.read(|c, _| {
            c.execute_batch(sql)?;
            Ok(())
        })
        .unwrap();
    }

    const DAY: u64 = 86_400_000;

    #[test]
    fn age_prune_leaves_a_chain_that_verifies_from_its_checkpoint() {
        let (_d, s) = store();
        let now = 400 * DAY;
        fill(&s, 30, now - 40 * DAY); // 1..=30: old
        fill(&s, 20, now - DAY); // 31..=50: young
        let policy = Policy {
            retain_days: 30,
            max_bytes: 0,
            keep_records: 5,
            export_dir: None,
        };
        let out = prune(&s, &policy, now).unwrap();
        assert_eq!(out.pruned, 30);
        assert_eq!(out.through, Some(30));
        let rep = check(&s).unwrap();
        assert_eq!(rep.from_seq, 31, "{rep:?}");
        assert_eq!(rep.checkpoint, Some(30));
        // 31..=50 kept, plus the audit-pruned record
        assert_eq!(rep.records, 21);
        assert_eq!(rep.head_seq, 51);
        let last = s.read(|c, _| tail(c, 1)).unwrap().remove(0);
        assert_eq!(last.action, "audit-pruned");
        assert!(
            last.reason
                .contains("records 1..30 pruned: older than 30 days")
        );
        // a second pass has nothing to do
        assert_eq!(prune(&s, &policy, now).unwrap().pruned, 0);
    }

    #[test]
    fn size_prune_keeps_the_newest_and_never_the_last_records() {
        let (_d, s) = store();
        fill(&s, 12_000, 1);
        let policy = Policy {
            retain_days: 0,
            max_bytes: 200_000,
            keep_records: 100,
            export_dir: None,
        };
        let out = prune(&s, &policy, 2).unwrap();
        // more than one chunk: several checkpoints, the newest counts
        assert!(out.pruned > CHUNK, "{out:?}");
        let rep = check(&s).unwrap();
        assert_eq!(rep.checkpoint, out.through);
        let kept = rep.records;
        assert!((100..12_000).contains(&kept), "{rep:?}");
        let bytes = s
            .read(|c, _| {
                Ok(c.query_row(
                    "SELECT SUM(length(reason) + length(detail) + length(actor) + length(action) + length(category) + ifnull(length(device),0) + ifnull(length(seal),0) + 88) FROM audit",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .unwrap();
        // the kept records, plus the few `audit-pruned` records the pass appended
        assert!(bytes <= 200_000 + 2_000, "{bytes}");

        // keep_records wins over the size limit
        let (_d, s) = store();
        fill(&s, 300, 1);
        let policy = Policy {
            max_bytes: 1,
            keep_records: 250,
            ..policy
        };
        prune(&s, &policy, 2).unwrap();
        assert_eq!(check(&s).unwrap().from_seq, 51);
    }

    #[test]
    fn tampering_inside_the_kept_range_and_with_the_checkpoint_is_detected() {
        let policy = Policy {
            retain_days: 0,
            max_bytes: 1,
            keep_records: 10,
            export_dir: None,
        };
        let pruned = || {
            let (d, s) = store();
            fill(&s, 30, 1);
            prune(&s, &policy, 2).unwrap();
            assert_eq!(check(&s).unwrap().from_seq, 21);
            (d, s)
        };

        // an edit in the kept range
        let (_d, s) = pruned();
        exec(&s, "UPDATE audit SET reason = 'nothing' WHERE seq = 25");
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 25, "{e}");
        assert!(e.problem.contains("edited"), "{e}");

        // more old records deleted without a checkpoint for them
        let (_d, s) = pruned();
        exec(&s, "DELETE FROM audit WHERE seq <= 22");
        let e = check(&s).unwrap_err();
        assert_eq!(e.seq, 23, "{e}");
        assert!(e.problem.contains("missing"), "{e}");

        // the checkpoint deleted: the pruned range shows as missing
        let (_d, s) = pruned();
        exec(&s, "DELETE FROM audit_checkpoints");
        let e = check(&s).unwrap_err();
        assert!(e.problem.contains("record(s) 1..20 are missing"), "{e}");

        // a checkpoint moved forward (to hide more deletions) no longer verifies
        let (_d, s) = pruned();
        exec(
            &s,
            "UPDATE audit_checkpoints SET seq = 22, hash = (SELECT hash FROM audit WHERE seq = 22);
             DELETE FROM audit WHERE seq <= 22",
        );
        let e = check(&s).unwrap_err();
        assert!(e.problem.contains("not signed"), "{e}");

        // an older checkpoint's hash put back in the newest row does not link to the kept records
        let (_d, s) = pruned();
        exec(&s, "UPDATE audit_checkpoints SET hash = zeroblob(32)");
        let e = check(&s).unwrap_err();
        assert!(e.problem.contains("not signed"), "{e}");
    }

    #[test]
    fn export_first_then_prune_and_the_export_links_to_the_checkpoint() {
        let (d, s) = store();
        fill(&s, 40, 1);
        let dir = d.path().join("archive");
        let policy = Policy {
            retain_days: 0,
            max_bytes: 1,
            keep_records: 15,
            export_dir: Some(dir.clone()),
        };
        let out = prune(&s, &policy, 2).unwrap();
        assert_eq!(out.exported.len(), 1);
        let text = std::fs::read_to_string(&out.exported[0]).unwrap();
        let recs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 25);
        assert_eq!(recs[0]["seq"], 1);
        assert_eq!(recs[24]["seq"], 25);
        let cp = s
            .read(|c, _| Ok(latest(c, &s.verifying_key).unwrap().unwrap()))
            .unwrap();
        assert_eq!(recs[24]["hash"], hex::encode(cp.hash));
        assert_eq!(cp.exported.as_deref(), out.exported[0].to_str());

        // an export directory that cannot be written: nothing pruned, the error says so
        let (d, s) = store();
        fill(&s, 40, 1);
        let blocker = d.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let policy = Policy {
            export_dir: Some(blocker.join("sub")),
            ..policy
        };
        let e = prune(&s, &policy, 2).unwrap_err();
        assert!(e.to_string().contains("nothing pruned"), "{e}");
        assert_eq!(check(&s).unwrap().from_seq, 1);
    }

    #[test]
    fn anchors_below_the_checkpoint_are_covered_by_it() {
        let (_d, s) = store();
        fill(&s, 30, 1);
        let (seq, hash) = s.audit_head();
        let old_hash: [u8; 32] = s
            .read(|c, _| Ok(anchor_hash(c, 10)))
            .unwrap()
            .try_into()
            .unwrap();
        fill(&s, 30, 1);
        prune(
            &s,
            &Policy {
                retain_days: 0,
                max_bytes: 1,
                keep_records: 10,
                export_dir: None,
            },
            2,
        )
        .unwrap();
        let key = s.verifying_key;
        s.read(|c, _| {
            // pruned, but vouched for by the signed checkpoint
            anchor::check_contains(c, &key, seq, &hash, "t").unwrap();
            anchor::check_contains(c, &key, 10, &old_hash, "t").unwrap();
            // a head beyond the chain is still a truncation
            let e = anchor::check_contains(c, &key, 999, &hash, "t").unwrap_err();
            assert!(e.is_chain_loss(), "{e}");
            Ok(())
        })
        .unwrap();
        // without a valid checkpoint, the pruned head is missing
        exec(&s, "UPDATE audit_checkpoints SET ts = ts + 1");
        s.read(|c, _| {
            assert!(anchor::check_contains(c, &key, 10, &old_hash, "t").is_err());
            Ok(())
        })
        .unwrap();
    }

    fn anchor_hash(c: &Connection, seq: u64) -> Vec<u8> {
        c.query_row("SELECT hash FROM audit WHERE seq = ?1", [seq as i64], |r| {
            r.get(0)
        })
        .unwrap()
    }
}
