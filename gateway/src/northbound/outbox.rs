//! The store-and-forward queue: every northbound envelope is written here first (SQLite, its own file
//! `outbox.db`, `synchronous=FULL`) and deleted only when the broker has acknowledged it. So nothing is
//! lost while the broker is down or across a gateway restart, and delivery is in order.
//!
//! Bounded: beyond `max` queued messages the oldest are deleted and counted (metric
//! `warden_northbound_queue_dropped` and an audit record), never silently.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::{Outgoing, OutgoingSink};
use crate::audit::{AuditEntry, AuditSink, Category};
use crate::batch::BatchSender;
use crate::disk::DiskState;
use crate::metrics::Metrics;

pub const OUTBOX_FILE: &str = "outbox.db";

pub struct Outbox {
    conn: Mutex<Connection>,
    max: u64,
    depth: AtomicU64,
    pub notify: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn open(data_dir: &Path, max: u64, metrics: Arc<Metrics>) -> rusqlite::Result<Arc<Self>> {
        let conn = Connection::open(data_dir.join(OUTBOX_FILE))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "cache_size", -crate::store::CACHE_KIB)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox(
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL,
                retain INTEGER NOT NULL,
                pkid INTEGER,
                released INTEGER NOT NULL DEFAULT 0)",
        )?;
        let depth: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
        metrics.queue_depth.set(depth);
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            max: max.max(1),
            depth: AtomicU64::new(depth as u64),
            notify: tokio::sync::Notify::new(),
            metrics,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Appends a batch; returns how many old messages were dropped to stay within the bound.
    pub fn push(&self, batch: &[Outgoing]) -> rusqlite::Result<u64> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO outbox(topic, payload, retain) VALUES(?1, ?2, ?3)")?;
            for o in batch {
                st.execute(params![o.topic, o.payload, o.retain as i64])?;
            }
        }
        let depth = self.depth.load(Ordering::Relaxed) + batch.len() as u64;
        let mut dropped = 0;
        if depth > self.max {
            dropped = depth - self.max;
            tx.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?1)",
                [dropped as i64],
            )?;
        }
        tx.commit()?;
        let now = depth - dropped;
        self.depth.store(now, Ordering::Relaxed);
        self.metrics.queue_depth.set(now as i64);
        if dropped > 0 {
            self.metrics.queue_dropped.inc_by(dropped);
            self.metrics
                .queue_drop("northbound", "queue-bound", dropped);
        }
        self.notify.notify_one();
        Ok(dropped)
    }

    /// Up to `limit` queued messages with an id above `after`, oldest first.
    pub fn fetch_after(&self, after: i64, limit: usize) -> rusqlite::Result<Vec<(i64, Outgoing)>> {
        let c = self.lock();
        let mut st = c.prepare_cached(
            "SELECT id, topic, payload, retain FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Outgoing {
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    retain: r.get::<_, i64>(3)? != 0,
                },
            ))
        })?;
        rows.collect()
    }

    /// Records, at shutdown, which queued messages are mid-handshake in the broker session: their
    /// packet id and whether they were released (PUBREC seen, PUBREL sent). The next run resumes them.
    pub fn save_session(&self, inflight: &[(i64, u16, bool)]) -> rusqlite::Result<()> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE outbox SET pkid = NULL, released = 0 WHERE pkid IS NOT NULL",
            [],
        )?;
        {
            let mut st =
                tx.prepare_cached("UPDATE outbox SET pkid = ?2, released = ?3 WHERE id = ?1")?;
            for (id, pkid, rel) in inflight {
                st.execute(params![id, *pkid as i64, *rel as i64])?;
            }
        }
        tx.commit()
    }

    /// Messages a previous run left mid-handshake: (row, message, packet id, released), oldest first.
    pub fn resumable(&self) -> rusqlite::Result<Vec<(i64, Outgoing, u16, bool)>> {
        let c = self.lock();
        let mut st = c.prepare(
            "SELECT id, topic, payload, retain, pkid, released FROM outbox
             WHERE pkid IS NOT NULL ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Outgoing {
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    retain: r.get::<_, i64>(3)? != 0,
                },
                r.get::<_, i64>(4)? as u16,
                r.get::<_, i64>(5)? != 0,
            ))
        })?;
        rows.collect()
    }

    /// Removes messages the broker acknowledged.
    pub fn ack(&self, ids: &[i64]) -> rusqlite::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.lock();
        let tx = c.transaction()?;
        let mut n = 0;
        {
            let mut st = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                n += st.execute([id])? as u64;
            }
        }
        tx.commit()?;
        let now = self.depth.load(Ordering::Relaxed).saturating_sub(n);
        self.depth.store(now, Ordering::Relaxed);
        self.metrics.queue_depth.set(now as i64);
        Ok(())
    }
}

/// The pipeline's side of the queue: a bounded channel to a writer thread that batches inserts (see
/// [`crate::batch`]). `send` blocks when the channel is full (backpressure), it never drops — except
/// while the disk is degraded ([`crate::disk`]): then a message that finds the channel full is
/// counted (`warden_northbound_queue_dropped`, and the housekeeping thread's `audit-records-lost`
/// record) instead of stalling the message path behind a writer that cannot write.
#[derive(Clone)]
pub struct OutboxSink {
    tx: BatchSender<Outgoing>,
    disk: Arc<DiskState>,
    metrics: Arc<Metrics>,
}

impl OutgoingSink for OutboxSink {
    fn send(&self, o: Outgoing) {
        if self.disk.degraded() {
            if !self.tx.try_send(o) {
                self.metrics.queue_dropped.inc();
                self.metrics.queue_drop("northbound", "disk-degraded", 1);
                self.disk.count_lost("northbound");
            }
        } else if !self.tx.send(o) {
            tracing::error!("outbox writer is gone; message not queued");
        }
    }
}

impl OutboxSink {
    /// Returns once everything sent before this call is in the outbox.
    pub fn flush(&self) {
        self.tx.flush();
    }
}

pub fn start_writer(
    outbox: Arc<Outbox>,
    audit: AuditSink,
    capacity: usize,
) -> std::io::Result<(OutboxSink, JoinHandle<()>)> {
    let disk = audit.disk().clone();
    let metrics = outbox.metrics.clone();
    let d = disk.clone();
    let (tx, h) = BatchSender::spawn("outbox-writer", capacity, 1024, move |b: &[Outgoing]| {
        let pushed = outbox.push(b).map_err(|e| e.to_string());
        d.set_outbox_failing(pushed.is_err());
        let dropped = pushed?;
        if dropped > 0 {
            tracing::warn!(dropped, "northbound queue full: oldest messages dropped");
            audit.record(
                AuditEntry::new(
                    Category::System,
                    "queue-overflow",
                    "gateway",
                    "store-and-forward queue at its bound; oldest messages dropped",
                )
                .detail(serde_json::json!({ "dropped": dropped })),
            );
        }
        Ok(())
    })?;
    Ok((OutboxSink { tx, disk, metrics }, h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn o(i: usize) -> Outgoing {
        Outgoing {
            topic: format!("t/{i}"),
            payload: vec![i as u8],
            retain: false,
        }
    }

    #[test]
    fn fifo_ack_bound_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new());
        {
            let ob = Outbox::open(d.path(), 5, m.clone()).unwrap();
            assert_eq!(ob.push(&(0..3).map(o).collect::<Vec<_>>()).unwrap(), 0);
            let rows = ob.fetch_after(0, 10).unwrap();
            assert_eq!(
                rows.iter().map(|r| r.1.topic.as_str()).collect::<Vec<_>>(),
                ["t/0", "t/1", "t/2"]
            );
            ob.ack(&[rows[0].0]).unwrap();
            assert_eq!(ob.depth(), 2);
            // 2 queued + 5 new = 7 > 5: the two oldest are dropped and counted
            assert_eq!(ob.push(&(3..8).map(o).collect::<Vec<_>>()).unwrap(), 2);
            assert_eq!(ob.depth(), 5);
            assert_eq!(m.queue_dropped.get(), 2);
        }
        let ob = Outbox::open(d.path(), 5, m).unwrap();
        let rows = ob.fetch_after(0, 10).unwrap();
        ob.save_session(&[(rows[0].0, 7, true), (rows[1].0, 8, false)])
            .unwrap();
        let resumed = ob.resumable().unwrap();
        assert_eq!(
            resumed.iter().map(|r| (r.0, r.2, r.3)).collect::<Vec<_>>(),
            [(rows[0].0, 7, true), (rows[1].0, 8, false)]
        );
        ob.save_session(&[]).unwrap();
        assert!(ob.resumable().unwrap().is_empty());
        assert_eq!(
            rows.iter().map(|r| r.1.topic.as_str()).collect::<Vec<_>>(),
            ["t/3", "t/4", "t/5", "t/6", "t/7"]
        );
        let after = ob.fetch_after(rows[2].0, 10).unwrap();
        assert_eq!(after.len(), 2);
    }
}
