//! Failed logins (management API tokens and passwords, embedded-broker credentials), per source
//! address per window (a minute by default): the first few go to the audit log in full, the rest
//! are counted and summed up in one record when the window closes, so a flood costs a handful of
//! rows, not one each. Past a threshold in one window a source raises a brute-force alarm (a
//! Security record and a metric), and the API refuses further attempts from it until the window
//! ends (HTTP 429) — before checking any credential.
//!
//! The map is bounded: at [`MAX_SOURCES`] the oldest window is closed (its summary written) to make
//! room, so a spoofed-source flood cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::metrics::{ListenerLabels, Metrics};

/// Sources tracked at once.
pub const MAX_SOURCES: usize = 4096;

/// Where a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    Api,
    Mqtt,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Mqtt => "mqtt",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Api => "api-auth",
            Self::Mqtt => "broker-auth",
        }
    }

    fn decider(self) -> &'static str {
        match self {
            Self::Api => "builtin:api",
            Self::Mqtt => "builtin:broker",
        }
    }
}

/// The limits, from `[api]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window_ms: u64,
    /// Failures per source and window recorded in full.
    pub full_records: u64,
    /// Failures per source and window that raise the brute-force alarm.
    pub alarm_at: u64,
    /// Failures per source and window after which the API answers 429 without checking.
    pub block_at: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            full_records: 3,
            alarm_at: 20,
            block_at: 10,
        }
    }
}

struct Window {
    start_ms: u64,
    count: u64,
    alarmed: bool,
    last_who: String,
}

pub struct LoginFailures {
    windows: Mutex<HashMap<(Listener, IpAddr), Window>>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    limits: Limits,
}

impl LoginFailures {
    pub fn new(audit: AuditSink, metrics: Arc<Metrics>, limits: Limits) -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            audit,
            metrics,
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Listener, IpAddr), Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn summary(&self, l: Listener, ip: IpAddr, w: &Window) -> Option<AuditEntry> {
        let suppressed = w.count.saturating_sub(self.limits.full_records);
        (suppressed > 0).then(|| {
            AuditEntry::new(
                Category::Security,
                "login-failures",
                &format!("source:{ip}"),
                format!(
                    "{} failed {} logins from {ip} in one window ({} recorded in full, {suppressed} counted here)",
                    w.count,
                    l.as_str(),
                    w.count - suppressed
                ),
            )
            .decision(l.decider(), "deny")
            .detail(serde_json::json!({
                "listener": l.as_str(),
                "source": ip.to_string(),
                "count": w.count,
                "suppressed": suppressed,
                "window_start_ms": w.start_ms,
                "window_ms": self.limits.window_ms,
                "last_user": w.last_who,
            }))
        })
    }

    /// Records one failed login. `detail` goes into the full record (never a secret).
    pub fn failed(
        &self,
        l: Listener,
        ip: IpAddr,
        who: &str,
        reason: &str,
        mut detail: serde_json::Value,
    ) {
        let labels = ListenerLabels {
            listener: l.as_str().to_owned(),
        };
        self.metrics.login_failures.get_or_create(&labels).inc();
        if l == Listener::Mqtt {
            self.metrics.broker_auth_failures.inc();
        }
        let now = warden_core::now_ms();
        let mut out = Vec::new();
        let (count, alarm) = {
            let mut g = self.lock();
            let key = (l, ip);
            if let Some(w) = g.get(&key)
                && now.saturating_sub(w.start_ms) >= self.limits.window_ms
            {
                out.extend(self.summary(l, ip, w));
                g.remove(&key);
            }
            if !g.contains_key(&key) && g.len() >= MAX_SOURCES {
                let oldest = g.iter().min_by_key(|(_, w)| w.start_ms).map(|(k, _)| *k);
                if let Some(k) = oldest
                    && let Some(w) = g.remove(&k)
                {
                    out.extend(self.summary(k.0, k.1, &w));
                }
            }
            let w = g.entry(key).or_insert_with(|| Window {
                start_ms: now,
                count: 0,
                alarmed: false,
                last_who: String::new(),
            });
            w.count = w.count.saturating_add(1);
            w.last_who = who.chars().take(128).collect();
            let alarm = w.count >= self.limits.alarm_at && !w.alarmed;
            if alarm {
                w.alarmed = true;
            }
            (w.count, alarm)
        };
        if count <= self.limits.full_records {
            if let Some(o) = detail.as_object_mut() {
                o.insert("source".into(), ip.to_string().into());
                o.insert("listener".into(), l.as_str().into());
            }
            out.push(
                AuditEntry::new(Category::Security, l.action(), who, reason)
                    .decision(l.decider(), "deny")
                    .detail(detail),
            );
        }
        if alarm {
            self.metrics.brute_force_alarms.get_or_create(&labels).inc();
            tracing::warn!(source = %ip, listener = l.as_str(), count, "brute-force login pattern");
            out.push(
                AuditEntry::new(
                    Category::Security,
                    "brute-force-suspected",
                    &format!("source:{ip}"),
                    format!(
                        "{count} failed {} logins from {ip} within {} s",
                        l.as_str(),
                        self.limits.window_ms / 1000
                    ),
                )
                .decision(l.decider(), "alarm")
                .detail(serde_json::json!({
                    "listener": l.as_str(), "source": ip.to_string(), "count": count,
                })),
            );
        }
        for e in out {
            self.audit.record(e);
        }
    }

    /// True while `ip` has used up its failures for the current window.
    pub fn blocked(&self, l: Listener, ip: IpAddr) -> bool {
        let now = warden_core::now_ms();
        self.lock().get(&(l, ip)).is_some_and(|w| {
            now.saturating_sub(w.start_ms) < self.limits.window_ms
                && w.count >= self.limits.block_at
        })
    }

    /// Closes the windows that ended (all of them with `all`), writing their summaries.
    pub fn flush(&self, all: bool) {
        let now = warden_core::now_ms();
        let done: Vec<_> = {
            let mut g = self.lock();
            let keys: Vec<_> = g
                .iter()
                .filter(|(_, w)| all || now.saturating_sub(w.start_ms) >= self.limits.window_ms)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| g.remove(&k).map(|w| (k, w)))
                .collect()
        };
        for ((l, ip), w) in done {
            if let Some(e) = self.summary(l, ip, &w) {
                self.audit.record(e);
            }
        }
    }

    /// Closes ended windows every second until shutdown, then closes them all.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(false),
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        self.flush(true);
    }
}
