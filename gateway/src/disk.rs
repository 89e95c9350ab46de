//! The data dir's disk: free space watched, an alarm and a **degraded mode** before it is full.
//!
//! [`DiskState`] is shared by the housekeeping thread (which measures free space), the audit sink
//! (whose writer reports failed writes) and the registry (which refuses new devices while degraded).
//! Degraded means: free space under `audit.disk_low_mib`, or the audit writer's last write failed.
//! While degraded:
//! - the audit sink never blocks the message path: a record that finds the writer's queue full is
//!   counted by category instead of waited for, and the counts become a security record
//!   (`audit-records-lost`) as soon as writes succeed again: nothing is lost silently (the same for
//!   northbound messages, which are also counted in `warden_northbound_queue_dropped`);
//! - no new device is registered (pending registrations are refused with the reason);
//! - rejections from unknown sources are only aggregated, without their first record in full;
//! - a reserve file (`audit.disk_reserve_mib`, made at start) is deleted, giving the database room
//!   for the security records that follow; it is made again once the disk has room.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The file kept in the data dir to be given back when the disk fills.
pub const RESERVE_FILE: &str = "disk-reserve";

#[derive(Debug, Default)]
pub struct DiskState {
    low: AtomicBool,
    failing: AtomicBool,
    outbox_failing: AtomicBool,
    free: AtomicU64,
    lost: Mutex<BTreeMap<&'static str, u64>>,
}

impl DiskState {
    /// Whether the gateway runs degraded (disk low, or audit writes failing).
    pub fn degraded(&self) -> bool {
        self.low.load(Ordering::Relaxed)
            || self.failing.load(Ordering::Relaxed)
            || self.outbox_failing.load(Ordering::Relaxed)
    }
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }
    pub fn set_low(&self, low: bool) {
        self.low.store(low, Ordering::Relaxed);
    }
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
    /// The northbound queue's writer reports its last write.
    pub fn set_outbox_failing(&self, failing: bool) {
        self.outbox_failing.store(failing, Ordering::Relaxed);
    }
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }
    pub fn set_free_bytes(&self, b: u64) {
        self.free.store(b, Ordering::Relaxed);
    }
    /// Counts a record that could not be queued: an audit record by category, or `northbound`.
    pub fn count_lost(&self, category: &'static str) {
        let mut m = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(category).or_default() += 1;
    }
    /// The counts of lost records not yet taken, without taking them.
    pub fn lost_snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The counts of lost records since the last call.
    pub fn take_lost(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.lost.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The reserve file: made (`bytes` of zeros, fsynced) when missing, deleted when the disk is low.
pub struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    pub fn new(data_dir: &Path, bytes: u64) -> Self {
        Self {
            path: data_dir.join(RESERVE_FILE),
            bytes,
        }
    }

    pub fn present(&self) -> bool {
        self.path.metadata().is_ok_and(|m| m.len() >= self.bytes)
    }

    /// Makes the reserve; a partial file (no room) is removed again.
    pub fn make(&self) -> std::io::Result<()> {
        if self.bytes == 0 || self.present() {
            return Ok(());
        }
        let r = (|| {
            let mut f = std::fs::File::create(&self.path)?;
            let block = vec![0u8; 64 << 10];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                f.write_all(block.get(..n).unwrap_or(&block))?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        r
    }

    /// Gives the reserve back to the filesystem; true if there was one.
    pub fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reserve_is_made_and_released_and_lost_counts_drain() {
        let d = tempfile::tempdir().unwrap();
        let r = Reserve::new(d.path(), 200_000);
        assert!(!r.present());
        r.make().unwrap();
        assert!(r.present());
        assert_eq!(
            std::fs::metadata(d.path().join(RESERVE_FILE))
                .unwrap()
                .len(),
            200_000
        );
        assert!(r.release());
        assert!(!r.present());
        assert!(free_bytes(d.path()).unwrap() > 0);

        let s = DiskState::default();
        assert!(!s.degraded());
        s.set_failing(true);
        assert!(s.degraded());
        s.count_lost("security");
        s.count_lost("security");
        s.count_lost("decision");
        let m = s.take_lost();
        assert_eq!(m.get("security"), Some(&2));
        assert_eq!(m.get("decision"), Some(&1));
        assert!(s.take_lost().is_empty());
    }
}
