//! Anchors for the audit chain: signed heads kept where deleting the newest records cannot reach.
//!
//! A chain verifies on its own up to its last seal, so deleting the newest records (or all of them)
//! leaves a shorter chain that still looks intact. The gateway therefore records its head, signed with
//! its Ed25519 key, every `audit.head_every_s` seconds and at a clean stop:
//! - in the `meta` row `audit_anchor` of the database (protects against `DELETE FROM audit …` by
//!   someone who does not also know to edit or roll back the `meta` table);
//! - as one line of the append-only **witness file** `audit.witness_file`, which should live outside
//!   the data dir (protects against anyone who can only write the data dir: deleting or rolling back
//!   the whole database does not remove a line from a file they cannot write);
//! - retained on MQTT at `<prefix>/gateway/audit-head` (a copy outside the machine).
//!
//! At start-up the chain must contain every anchored head (the record at the head's `seq`, with that
//! hash); an empty or shorter chain stops the gateway until an operator runs
//! `warden audit reset-anchor --reason …`, which is itself audited, naming the old head.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{AuditEntry, Category, hash_at, last_seq};
use crate::store::{Store, StoreError};

/// The `meta` key holding the last anchored head.
pub const META_KEY: &str = "audit_anchor";
/// A witness file larger than this is refused (one line per head is ~250 bytes: years of heads).
const MAX_WITNESS_BYTES: u64 = 256 << 20;

/// One signed head: a line of the witness file, the `meta` anchor, and the MQTT head's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub seq: u64,
    /// Hex SHA-256 of record `seq` (64 zeros for an empty chain).
    pub hash: String,
    pub ts: u64,
    /// Set on the head written by `warden audit reset-anchor`: earlier heads no longer apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// Hex Ed25519 signature by the gateway key over [`Head::message`].
    pub sig: String,
}

fn message(seq: u64, hash: &[u8; 32], ts: u64, reset: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + 8 + 32 + 8 + 1);
    m.extend_from_slice(b"warden-audit-head-v1");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&ts.to_be_bytes());
    m.push(u8::from(reset));
    m
}

/// Why an anchor check failed.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error(
        "the audit chain is empty but its last anchored head is record {seq} ({origin}): the audit log was wiped"
    )]
    Wiped { seq: u64, origin: String },
    #[error(
        "the audit chain ends at record {have} but its last anchored head is record {seq} ({origin}): the newest records were deleted"
    )]
    Truncated { have: u64, seq: u64, origin: String },
    #[error(
        "audit record {seq} does not have the hash anchored in {origin}: the chain was replaced or rewritten"
    )]
    Rewritten { seq: u64, origin: String },
    #[error("{origin}: {problem}")]
    BadHead { origin: String, problem: String },
    #[error("witness file {path}: {problem}")]
    Witness { path: PathBuf, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AnchorError {
    /// Whether the chain itself is shorter or different than an anchor says (as opposed to an
    /// unreadable or unsigned anchor).
    pub fn is_chain_loss(&self) -> bool {
        matches!(
            self,
            Self::Wiped { .. } | Self::Truncated { .. } | Self::Rewritten { .. }
        )
    }
}

impl Head {
    pub fn sign(key: &SigningKey, seq: u64, hash: &[u8; 32], ts: u64, reset: bool) -> Self {
        let sig = key.sign(&message(seq, hash, ts, reset));
        Self {
            seq,
            hash: hex::encode(hash),
            ts,
            reset,
            sig: hex::encode(sig.to_bytes()),
        }
    }

    fn hash_bytes(&self) -> Option<[u8; 32]> {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut h).ok()?;
        Some(h)
    }

    /// Whether the gateway key signed this head.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(hash) = self.hash_bytes() else {
            return false;
        };
        let Ok(sig) = hex::decode(&self.sig) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&sig) else {
            return false;
        };
        key.verify(&message(self.seq, &hash, self.ts, self.reset), &sig)
            .is_ok()
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text.trim()).map_err(|e| format!("not a signed head: {e}"))
    }
}

/// Checks that the chain in `conn` holds record `seq` with hash `hash`. `origin` names where the
/// head came from, for the message.
pub fn check_contains(
    conn: &Connection,
    key: &VerifyingKey,
    seq: u64,
    hash: &[u8; 32],
    origin: &str,
) -> Result<(), AnchorError> {
    if seq == 0 {
        return Ok(());
    }
    match hash_at(conn, seq)? {
        Some(h) if h.as_slice() == hash.as_slice() => Ok(()),
        Some(_) => Err(AnchorError::Rewritten {
            seq,
            origin: origin.to_owned(),
        }),
        None => {
            // Pruned by retention: the signed checkpoint vouches that the chain passed this head.
            let cp = super::retention::latest(conn, key).map_err(|e| AnchorError::BadHead {
                origin: origin.to_owned(),
                problem: e.to_string(),
            })?;
            if let Some(cp) = cp
                && seq <= cp.seq
                && last_seq(conn)? > cp.seq
            {
                return if seq < cp.seq || cp.hash == *hash {
                    Ok(())
                } else {
                    Err(AnchorError::Rewritten {
                        seq,
                        origin: origin.to_owned(),
                    })
                };
            }
            missing(conn, seq, origin)
        }
    }
}

/// A head the chain does not hold: wiped (empty) or truncated.
fn missing(conn: &Connection, seq: u64, origin: &str) -> Result<(), AnchorError> {
    match last_seq(conn)? {
        0 => Err(AnchorError::Wiped {
            seq,
            origin: origin.to_owned(),
        }),
        have => Err(AnchorError::Truncated {
            have,
            seq,
            origin: origin.to_owned(),
        }),
    }
}

/// Checks a signed head: its signature, then that the chain contains it.
pub fn check_head(
    conn: &Connection,
    key: &VerifyingKey,
    head: &Head,
    origin: &str,
) -> Result<(), AnchorError> {
    let bad = |problem: &str| AnchorError::BadHead {
        origin: origin.to_owned(),
        problem: problem.to_owned(),
    };
    if !head.verify(key) {
        return Err(bad(
            "the head is not signed by this gateway's key (edited, or from another data dir)",
        ));
    }
    let hash = head.hash_bytes().ok_or_else(|| bad("bad hash"))?;
    check_contains(conn, key, head.seq, &hash, origin)
}

/// The signed head in the `meta` row, if any.
pub fn read_meta(conn: &Connection) -> Result<Option<Head>, AnchorError> {
    let v: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_KEY], |r| {
            r.get(0)
        })
        .optional()
        .map_err(StoreError::from)?;
    v.map(|b| {
        let text = String::from_utf8_lossy(&b);
        Head::parse(&text).map_err(|problem| AnchorError::BadHead {
            origin: "the database's anchor row".into(),
            problem,
        })
    })
    .transpose()
}

/// Every head in a witness file, in order, with line numbers. A missing file has none.
pub fn read_witness(path: &Path) -> Result<Vec<(usize, Head)>, AnchorError> {
    let werr = |problem: String| AnchorError::Witness {
        path: path.to_owned(),
        problem,
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(werr(e.to_string())),
    };
    let meta = f.metadata().map_err(|e| werr(e.to_string()))?;
    if !meta.is_file() {
        return Err(werr("not a regular file".into()));
    }
    if meta.len() > MAX_WITNESS_BYTES {
        return Err(werr(format!(
            "larger than {MAX_WITNESS_BYTES} bytes; archive it and start a new one"
        )));
    }
    let mut text = String::new();
    f.take(MAX_WITNESS_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| werr(e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let h = Head::parse(line).map_err(|p| werr(format!("line {}: {p}", i + 1)))?;
        out.push((i + 1, h));
    }
    Ok(out)
}

/// The heads that still apply: from the last reset on.
pub fn current_heads(heads: &[(usize, Head)]) -> &[(usize, Head)] {
    let start = heads.iter().rposition(|(_, h)| h.reset).unwrap_or(0);
    heads.get(start..).unwrap_or_default()
}

/// Appends one line to the witness file (opened `O_APPEND`, created 0600, synced).
pub fn append_witness(path: &Path, head: &Head) -> Result<(), AnchorError> {
    let werr = |e: std::io::Error| AnchorError::Witness {
        path: path.to_owned(),
        problem: e.to_string(),
    };
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    let meta = f.metadata().map_err(werr)?;
    if !meta.is_file() {
        return Err(AnchorError::Witness {
            path: path.to_owned(),
            problem: "not a regular file".into(),
        });
    }
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(AnchorError::Witness {
            path: path.to_owned(),
            problem: "writable by anyone".into(),
        });
    }
    let mut line = head.to_line();
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(werr)?;
    f.sync_data().map_err(werr)
}

/// What the start-up check found.
#[derive(Debug, PartialEq, Eq)]
pub enum StartCheck {
    /// Every anchor is contained in the chain.
    Anchored { seq: u64 },
    /// No anchor yet: a new data dir, or one from before anchoring existed.
    Unanchored,
}

/// Where the gateway keeps its anchors.
#[derive(Clone)]
pub struct Anchors {
    store: Store,
    witness: Option<PathBuf>,
}

impl Anchors {
    pub fn new(store: Store, witness: Option<PathBuf>) -> Self {
        Self { store, witness }
    }

    /// The chain's current head (seq, hash).
    pub fn head(&self) -> (u64, [u8; 32]) {
        self.store.audit_head()
    }

    /// The last head of each anchor place, with a name for messages.
    fn last_heads(&self) -> Result<Vec<(String, Head)>, AnchorError> {
        let mut out = Vec::new();
        if let Some(h) = self.store.read(|c, _| Ok(read_meta(c)))?? {
            out.push(("the database's anchor row".to_owned(), h));
        }
        if let Some(p) = &self.witness
            && let Some((line, h)) = read_witness(p)?.pop()
        {
            out.push((format!("witness file {} line {line}", p.display()), h));
        }
        Ok(out)
    }

    /// Refuses a chain that is empty, shorter than, or different from any anchored head.
    pub fn check_at_start(&self) -> Result<StartCheck, AnchorError> {
        let heads = self.last_heads()?;
        let key = self.store.verifying_key;
        let mut seq = None;
        for (origin, h) in &heads {
            self.store
                .read(|c, _| Ok(check_head(c, &key, h, origin)))??;
            seq = Some(seq.unwrap_or(0).max(h.seq));
        }
        Ok(match seq {
            Some(seq) => StartCheck::Anchored { seq },
            None => StartCheck::Unanchored,
        })
    }

    /// Signs the current head and records it in the `meta` row and the witness file. `reset` marks
    /// the head written by `reset-anchor`.
    pub fn record(&self, reset: bool) -> Result<Head, AnchorError> {
        let key = self.store.signing_key().clone();
        let head = self.store.write_meta_at_head(META_KEY, |seq, hash| {
            let h = Head::sign(&key, seq, &hash, warden_core::now_ms(), reset);
            let line = h.to_line().into_bytes();
            (h, line)
        })?;
        if let Some(p) = &self.witness {
            append_witness(p, &head)?;
        }
        Ok(head)
    }

    /// `warden audit reset-anchor`: accepts the chain as it is, audited as the next record (the
    /// first of an empty chain) naming the anchored head that was lost, then anchors the new head.
    /// Refused while the chain still contains every anchor (there is nothing to reset).
    pub fn reset(&self, actor: &str, reason: &str) -> Result<Head, AnchorError> {
        let heads = self.last_heads()?;
        let key = self.store.verifying_key;
        let mut lost = Vec::new();
        for (origin, h) in &heads {
            if let Err(e) = self.store.read(|c, _| Ok(check_head(c, &key, h, origin)))? {
                lost.push(serde_json::json!({
                    "origin": origin, "seq": h.seq, "hash": h.hash, "ts": h.ts,
                    "problem": e.to_string(),
                }));
            }
        }
        if lost.is_empty() {
            return Err(AnchorError::BadHead {
                origin: "reset-anchor".into(),
                problem: "the audit chain contains every anchored head; there is nothing to reset"
                    .into(),
            });
        }
        let (seq, hash) = self.store.audit_head();
        self.store.audit(&[AuditEntry::new(
            Category::Security,
            "audit-anchor-reset",
            actor,
            reason,
        )
        .detail(serde_json::json!({
            "lost_heads": lost,
            "chain_head": { "seq": seq, "hash": hex::encode(hash) },
        }))])?;
        self.record(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::secrets::MasterKey;

    fn setup(witness: bool) -> (tempfile::TempDir, Store, Anchors) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        let s = Store::open(&d.path().join("data"), &MasterKey::from_bytes([5; 32])).unwrap();
        let w = witness.then(|| d.path().join("witness.jsonl"));
        let a = Anchors::new(s.clone(), w);
        (d, s, a)
    }

    fn fill(s: &Store, batches: usize) {
        for i in 0..batches {
            let e = AuditEntry::new(Category::Operator, "x", "alice", format!("r{i}"));
            s.audit(&[e.clone(), e.clone(), e]).unwrap();
        }
    }

    fn exec(s: &Store, sql: &str) {
        s.read(|c, _| {
            c.execute_batch(sql)?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn heads_round_trip_and_reject_edits() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let h = Head::sign(&k, 12, &[3; 32], 99, false);
        let back = Head::parse(&h.to_line()).unwrap();
        assert!(back.verify(&k.verifying_key()));
        assert!(!h.to_line().contains("reset"));
        let mut edited = back.clone();
        edited.seq = 11;
        assert!(!edited.verify(&k.verifying_key()));
        let mut edited = back;
        edited.reset = true;
        assert!(!edited.verify(&k.verifying_key()));
        assert!(Head::parse("{\"seq\":1}").is_err());
    }

    #[test]
    fn unanchored_then_anchored_then_truncation_and_wipe_refused() {
        let (_d, s, a) = setup(false);
        assert_eq!(a.check_at_start().unwrap(), StartCheck::Unanchored);
        fill(&s, 4);
        let h = a.record(false).unwrap();
        assert_eq!(h.seq, 12);
        assert_eq!(
            a.check_at_start().unwrap(),
            StartCheck::Anchored { seq: 12 }
        );
        // records 10..12 are one batch: 9 is sealed, so the shorter chain verifies on its own
        exec(&s, "DELETE FROM audit WHERE seq > 9");
        assert!(
            s.read(|c, _| Ok(super::super::verify(c, &s.verifying_key)))
                .unwrap()
                .is_ok()
        );
        assert!(matches!(
            a.check_at_start(),
            Err(AnchorError::Truncated {
                have: 9,
                seq: 12,
                ..
            })
        ));
        exec(&s, "DELETE FROM audit");
        assert!(matches!(
            a.check_at_start(),
            Err(AnchorError::Wiped { seq: 12, .. })
        ));
    }

    #[test]
    fn witness_outlives_a_rewritten_meta_row_and_reset_is_audited() {
        let (d, s, a) = setup(true);
        fill(&s, 3);
        a.record(false).unwrap();
        fill(&s, 1);
        a.record(false).unwrap();
        let w = read_witness(&d.path().join("witness.jsonl")).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].1.seq, 12);
        // an attacker who knows the meta row deletes it along with the newest records
        exec(
            &s,
            "DELETE FROM audit WHERE seq > 3; DELETE FROM meta WHERE key = 'audit_anchor'",
        );
        let s = Store::open(&d.path().join("data"), &MasterKey::from_bytes([5; 32])).unwrap();
        let a = Anchors::new(s.clone(), Some(d.path().join("witness.jsonl")));
        let e = a.check_at_start().unwrap_err();
        assert!(
            matches!(
                e,
                AnchorError::Truncated {
                    have: 3,
                    seq: 12,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.is_chain_loss());
        // the operator accepts the loss: audited, naming the old head, then start-up passes
        let h = a.reset("cli:operator", "restored from backup").unwrap();
        assert!(h.reset);
        assert_eq!(h.seq, 4);
        assert_eq!(a.check_at_start().unwrap(), StartCheck::Anchored { seq: 4 });
        let rec = s.read(|c, _| super::super::tail(c, 1)).unwrap().remove(0);
        assert_eq!(rec.action, "audit-anchor-reset");
        assert_eq!(rec.reason, "restored from backup");
        assert!(rec.detail.contains("\"seq\":12"), "{}", rec.detail);
        // the witness keeps the old lines; only those from the reset on apply
        let w = read_witness(&d.path().join("witness.jsonl")).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(current_heads(&w).len(), 1);
        // nothing to reset now
        assert!(a.reset("cli:operator", "again").is_err());
    }

    #[test]
    fn a_forged_or_foreign_head_is_refused() {
        let (d, s, a) = setup(true);
        fill(&s, 2);
        let other = SigningKey::from_bytes(&[1; 32]);
        let forged = Head::sign(&other, 3, &[0; 32], 1, false);
        append_witness(&d.path().join("witness.jsonl"), &forged).unwrap();
        assert!(matches!(
            a.check_at_start(),
            Err(AnchorError::BadHead { .. })
        ));
        std::fs::write(d.path().join("witness.jsonl"), "not json\n").unwrap();
        let e = a.check_at_start().unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
