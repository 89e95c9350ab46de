//! The storage housekeeping thread: measures the data dir's free space (metric, alarm, degraded
//! mode: see [`crate::disk`]), audits records lost while the disk failed, runs audit retention,
//! and writes the registry's last-seen times and raised assurance levels.
//! It is a thread of its own, so neither the pipeline nor tokio's workers wait on it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::audit::retention::{self, Policy};
use crate::audit::{AuditEntry, AuditSink, Category};
use crate::disk::{self, Reserve};
use crate::metrics::Metrics;
use crate::northbound::Northbound;
use crate::registry::Registry;
use crate::store::Store;

/// How often last-seen times are written.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(30);

pub struct Housekeeping {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
    pub northbound: Arc<Northbound>,
    pub policy: Policy,
    pub prune_every: Duration,
    pub check_every: Duration,
    /// Free bytes under which the disk is low.
    pub low_bytes: u64,
    pub reserve: Reserve,
    pub reserve_bytes: u64,
    /// Lost-record counts already added to the metric.
    pub lost_metered: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Housekeeping {
    /// Runs until `stop`'s sender is dropped.
    pub fn run(self, stop: Receiver<()>) {
        if let Err(e) = self.reserve.make() {
            tracing::warn!(error = %e, "cannot make the disk reserve file");
        }
        let mut next_prune = Instant::now();
        let mut next_seen = Instant::now() + LAST_SEEN_EVERY;
        let mut next_disk = Instant::now();
        loop {
            if Instant::now() >= next_disk {
                self.check_disk();
                self.report_lost();
                next_disk = Instant::now() + self.check_every;
            }
            // registry writes the message path used to do itself: the downgrade guard's raised
            // assurance at once, last-seen times every 30 s
            if let Err(e) = self.registry.flush_raised_assurance() {
                tracing::error!(error = %e, "best-assurance flush failed");
            }
            if Instant::now() >= next_seen {
                if let Err(e) = self.registry.flush_last_seen() {
                    tracing::error!(error = %e, "last-seen flush failed");
                }
                next_seen = Instant::now() + LAST_SEEN_EVERY;
            }
            if Instant::now() >= next_prune {
                self.prune();
                next_prune = Instant::now() + self.prune_every;
            }
            match stop.recv_timeout(Duration::from_secs(1)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn check_disk(&self) {
        let state = self.audit.disk();
        let free = match disk::free_bytes(&self.store.data_dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure the data dir's free space");
                return;
            }
        };
        state.set_free_bytes(free);
        self.metrics
            .disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        let was_low = state.is_low();
        // hysteresis: leave only with room for the reserve again and a margin
        let low = if was_low {
            free < self.low_bytes + self.reserve_bytes + (1 << 20)
        } else {
            free < self.low_bytes
        };
        if low != was_low {
            state.set_low(low);
            self.metrics.disk_alarm.set(i64::from(low));
            let mib = free >> 20;
            let (action, reason) = if low {
                let released = self.reserve.release();
                (
                    "disk-low",
                    format!(
                        "{mib} MiB free on the data dir's filesystem, under audit.disk_low_mib = {}: degraded mode (no new devices, unknown sources only aggregated, audit never blocks the message path){}",
                        self.low_bytes >> 20,
                        if released {
                            "; the disk reserve was released"
                        } else {
                            ""
                        }
                    ),
                )
            } else {
                if let Err(e) = self.reserve.make() {
                    tracing::warn!(error = %e, "cannot make the disk reserve file again");
                }
                (
                    "disk-ok",
                    format!("{mib} MiB free again: degraded mode ends"),
                )
            };
            tracing::warn!(free, action, "{reason}");
            self.audit.record(
                AuditEntry::new(Category::Security, action, "gateway", reason.clone()).detail(
                    serde_json::json!({ "free_bytes": free, "threshold_bytes": self.low_bytes }),
                ),
            );
            self.northbound.alarm(&serde_json::json!({
                "alarm": "disk-low", "active": low, "free_bytes": free,
                "threshold_bytes": self.low_bytes, "reason": reason,
            }));
        }
        self.registry.set_refuse_new(state.degraded());
    }

    /// Records that could not be queued while degraded become one security record once the
    /// writer works again.
    fn report_lost(&self) {
        let state = self.audit.disk();
        // audit records count into the metric as soon as they are seen (northbound messages are
        // counted by the outbox's sink itself)
        let now = state.lost_snapshot();
        let mut seen = self.lost_metered.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in &now {
            let before = seen.get(k).copied().unwrap_or(0);
            if *k != "northbound" && *n > before {
                self.metrics
                    .queue_drop("audit", "disk-degraded", n - before);
            }
        }
        *seen = now;
        if state.degraded() {
            return;
        }
        let lost = state.take_lost();
        seen.clear();
        if lost.is_empty() {
            return;
        }
        let total: u64 = lost.values().sum();
        self.audit.record(
            AuditEntry::new(
                Category::Security,
                "audit-records-lost",
                "gateway",
                format!(
                    "{total} record(s) could not be queued while the disk was failing or full (audit records by category; northbound: MQTT messages)"
                ),
            )
            .detail(serde_json::json!({ "by_category": lost })),
        );
    }

    fn prune(&self) {
        if self.policy.is_off() {
            return;
        }
        match retention::prune(&self.store, &self.policy, warden_core::now_ms()) {
            Ok(out) => {
                self.metrics.audit_pruned.inc_by(out.pruned);
            }
            Err(e) => {
                tracing::error!(error = %e, "audit retention failed");
                self.audit.record(AuditEntry::new(
                    Category::System,
                    "audit-prune-failed",
                    "gateway",
                    e.to_string(),
                ));
            }
        }
    }
}
