//! Adapter operations on the gateway side: one entry point for the CLI, the API and MQTT to open a
//! join window, close it, scan, or remove a device, on any adapter that supports it.
//!
//! `start` checks the request against what the adapter declared, audits it with its principal, hands
//! it to the adapter, and follows its progress: every change is republished as the retained
//! `<prefix>/adapters/<name>/operation` state, and the final state is audited. Readers (the API
//! stream, the CLI progress line) subscribe to the same latest-value channel, so a slow reader never
//! holds the adapter up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::RngCore;
use tokio::sync::{mpsc, watch};
use warden_core::operation::RequestError;
use warden_core::{
    Operation, OperationKind, OperationProgress, OperationRequest, OperationState, ProgressSender,
};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::northbound::Northbound;

/// How many operations per adapter `status` and the API remember.
const RECENT_PER_ADAPTER: usize = 16;
/// How many operations may wait for an adapter to pick them up.
pub const QUEUE: usize = 8;

/// Why an operation was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    #[error("no adapter `{0}` is running (running: {1})")]
    UnknownAdapter(String, String),
    #[error("the `{adapter}` adapter has no `{kind}` operation (it supports: {supported})")]
    Unsupported {
        adapter: String,
        kind: OperationKind,
        supported: String,
    },
    #[error("{0}")]
    Invalid(#[from] RequestError),
    #[error("the `{0}` adapter has too many operations waiting; try again")]
    Busy(String),
    #[error("the `{0}` adapter has stopped")]
    Stopped(String),
}

impl OpError {
    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownAdapter(..) => 404,
            Self::Unsupported { .. } | Self::Invalid(_) => 400,
            Self::Busy(_) => 429,
            Self::Stopped(_) => 503,
        }
    }
}

/// One started operation, as the API and `status` show it.
#[derive(Clone)]
pub struct Started {
    pub id: String,
    pub adapter: String,
    pub request: OperationRequest,
    pub principal: String,
    pub started_ms: u64,
    pub progress: ProgressSender,
}

impl Started {
    pub fn to_json(&self, p: &OperationProgress) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "adapter": self.adapter,
            "request": self.request,
            "principal": self.principal,
            "started_ms": self.started_ms,
            "progress": p,
        })
    }
}

struct Entry {
    kinds: &'static [OperationKind],
    tx: mpsc::Sender<Operation>,
    recent: VecDeque<Started>,
}

/// The adapters that take operations, and their recent operations.
pub struct Operations {
    adapters: Mutex<HashMap<String, Entry>>,
    audit: AuditSink,
    northbound: Arc<Northbound>,
    counter: AtomicU64,
    run_tag: String,
}

fn kinds_text(k: &[OperationKind]) -> String {
    if k.is_empty() {
        "none".into()
    } else {
        k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

fn describe(r: &OperationRequest) -> String {
    match r {
        OperationRequest::Join {
            seconds,
            device,
            install_code_only,
            pin,
        } => {
            let mut s = format!("join window for {seconds} s");
            if let Some(d) = device {
                s.push_str(&format!(", only for {d}"));
            }
            if *install_code_only {
                s.push_str(", install-code devices only");
            }
            if pin.is_some() {
                // that one was given, never the PIN itself
                s.push_str(", with a DSK PIN");
            }
            s
        }
        OperationRequest::Close {} => "close the join window".into(),
        OperationRequest::Scan { seconds, has } => match has {
            None => format!("discovery scan for {seconds} s"),
            Some(h) => format!("object search for `{h}` for {seconds} s"),
        },
        OperationRequest::Remove { device } => format!("remove {device} from the network"),
    }
}

impl Operations {
    pub fn new(audit: AuditSink, northbound: Arc<Northbound>) -> Self {
        let mut tag = [0u8; 3];
        rand::rngs::OsRng.fill_bytes(&mut tag);
        Self {
            adapters: Mutex::new(HashMap::new()),
            audit,
            northbound,
            counter: AtomicU64::new(0),
            run_tag: hex::encode(tag),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.adapters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a running adapter; returns the receiver for its context.
    pub fn register(
        &self,
        adapter: &str,
        kinds: &'static [OperationKind],
    ) -> mpsc::Receiver<Operation> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(
            adapter.to_owned(),
            Entry {
                kinds,
                tx,
                recent: VecDeque::new(),
            },
        );
        rx
    }

    /// Starts an operation: validated, audited, handed to the adapter, followed until it ends.
    /// Must be called inside the tokio runtime (it spawns the follower).
    pub fn start(
        self: &Arc<Self>,
        adapter: &str,
        request: OperationRequest,
        principal: &str,
    ) -> Result<Started, OpError> {
        let result = self.try_start(adapter, request.clone(), principal);
        match &result {
            Ok(s) => self.audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "adapter-operation",
                    principal,
                    format!("{}: {}", adapter, describe(&request)),
                )
                .detail(serde_json::json!({
                    "adapter": adapter, "operation": s.id, "request": request, "result": "started",
                })),
            ),
            Err(e) => self.audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "adapter-operation",
                    principal,
                    format!("{}: {} refused: {e}", adapter, describe(&request)),
                )
                .decision("builtin:operations", "deny")
                .detail(serde_json::json!({
                    "adapter": adapter, "request": request, "result": "refused",
                })),
            ),
        }
        if let Ok(s) = &result {
            self.publish(s);
            tokio::spawn(follow(self.clone(), s.clone()));
        }
        result
    }

    fn try_start(
        &self,
        adapter: &str,
        request: OperationRequest,
        principal: &str,
    ) -> Result<Started, OpError> {
        let mut g = self.lock();
        let names = {
            let mut n: Vec<_> = g.keys().cloned().collect();
            n.sort();
            if n.is_empty() {
                "none".into()
            } else {
                n.join(", ")
            }
        };
        let entry = g
            .get_mut(adapter)
            .ok_or_else(|| OpError::UnknownAdapter(adapter.to_owned(), names))?;
        let kind = request.kind();
        if !entry.kinds.contains(&kind) {
            return Err(OpError::Unsupported {
                adapter: adapter.to_owned(),
                kind,
                supported: kinds_text(entry.kinds),
            });
        }
        request.validate(adapter)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("op-{}-{n}", self.run_tag);
        let (progress, _) = ProgressSender::channel();
        let op = Operation {
            id: id.clone(),
            request: request.clone(),
            principal: principal.to_owned(),
            progress: progress.clone(),
        };
        entry.tx.try_send(op).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OpError::Busy(adapter.to_owned()),
            mpsc::error::TrySendError::Closed(_) => OpError::Stopped(adapter.to_owned()),
        })?;
        let s = Started {
            id,
            adapter: adapter.to_owned(),
            request,
            principal: principal.to_owned(),
            started_ms: warden_core::now_ms(),
            progress,
        };
        if entry.recent.len() >= RECENT_PER_ADAPTER {
            entry.recent.pop_front();
        }
        entry.recent.push_back(s.clone());
        Ok(s)
    }

    /// One operation by id.
    pub fn get(&self, adapter: &str, id: &str) -> Option<Started> {
        self.lock()
            .get(adapter)?
            .recent
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Every adapter that takes operations: what it supports and its latest operation.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let g = self.lock();
        let mut names: Vec<_> = g.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| {
                let e = g.get(n)?;
                let latest = e.recent.back().map(|s| s.to_json(&s.progress.current()));
                Some(serde_json::json!({
                    "adapter": n,
                    "operations": e.kinds,
                    "latest": latest,
                }))
            })
            .collect()
    }

    fn publish(&self, s: &Started) {
        self.northbound
            .adapter_operation(&s.adapter, &s.to_json(&s.progress.current()));
    }
}

/// Republishes every change of an operation's progress and audits how it ended.
async fn follow(ops: Arc<Operations>, s: Started) {
    let mut rx: watch::Receiver<OperationProgress> = s.progress.subscribe();
    loop {
        let state = rx.borrow_and_update().state;
        ops.publish(&s);
        if state.is_final() || rx.changed().await.is_err() {
            break;
        }
    }
    let p = s.progress.current();
    let mut e = AuditEntry::new(
        Category::Operator,
        "adapter-operation",
        &s.principal,
        format!(
            "{}: {} {}{}",
            s.adapter,
            describe(&s.request),
            p.state.as_str(),
            if p.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", p.detail)
            }
        ),
    )
    .detail(serde_json::json!({
        "adapter": s.adapter, "operation": s.id, "result": p.state.as_str(),
        "devices_seen": p.devices_seen, "devices_joined": p.devices_joined,
        "devices_refused": p.devices_refused, "devices": p.devices,
    }));
    if p.state == OperationState::Failed {
        e = e.decision("builtin:operations", "error");
    }
    ops.audit.record(e);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::northbound::{Outgoing, OutgoingSink};

    struct Capture(Arc<Mutex<Vec<Outgoing>>>);
    impl OutgoingSink for Capture {
        fn send(&self, o: Outgoing) {
            self.0.lock().unwrap().push(o);
        }
    }

    fn ops() -> (
        Arc<Operations>,
        Arc<Mutex<Vec<Outgoing>>>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(dir.path(), &crate::secrets::MasterKey::from_bytes([1; 32]))
                .unwrap();
        let (audit, _h) = crate::audit::AuditSink::start(store, 16).unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let nb = Arc::new(Northbound::new(
            "warden",
            "gw",
            None,
            None,
            Box::new(Capture(out.clone())),
        ));
        (Arc::new(Operations::new(audit, nb)), out, dir)
    }

    const JOIN: OperationRequest = OperationRequest::Join {
        seconds: 60,
        device: None,
        install_code_only: false,
        pin: None,
    };

    #[tokio::test]
    async fn unsupported_and_unknown_adapters_are_refused_with_what_is_supported() {
        let (ops, _, _d) = ops();
        let _rx = ops.register("modbus", &[]);
        let e = ops.start("modbus", JOIN, "operator:admin").err().unwrap();
        assert_eq!(
            e,
            OpError::Unsupported {
                adapter: "modbus".into(),
                kind: OperationKind::Join,
                supported: "none".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "the `modbus` adapter has no `join` operation (it supports: none)"
        );
        let e = ops.start("zwave", JOIN, "operator:admin").err().unwrap();
        assert_eq!(e.http_status(), 404);
    }

    #[tokio::test]
    async fn progress_reaches_the_retained_topic_and_the_final_state_sticks() {
        let (ops, out, _d) = ops();
        let mut rx = ops.register("zigbee", &[OperationKind::Join, OperationKind::Close]);
        let s = ops.start("zigbee", JOIN, "operator:admin").unwrap();
        let op = rx.recv().await.unwrap();
        assert_eq!(op.id, s.id);
        op.progress.update(|p| {
            p.state = OperationState::Running;
            p.seconds_left = Some(59);
        });
        op.progress.finish(OperationState::Done, "window closed");
        let got = ops.get("zigbee", &s.id).unwrap().progress.current();
        assert_eq!(got.state, OperationState::Done);
        // the follower publishes the final state as retained
        for _ in 0..200 {
            let done = out.lock().unwrap().iter().any(|o| {
                o.retain
                    && o.topic == "warden/adapters/zigbee/operation"
                    && String::from_utf8_lossy(&o.payload).contains(r#""state":"done""#)
            });
            if done {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("final state never published");
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_not_a_stall() {
        let (ops, _, _d) = ops();
        let _rx = ops.register("zigbee", &[OperationKind::Join]);
        for _ in 0..QUEUE {
            ops.start("zigbee", JOIN, "operator:admin").unwrap();
        }
        let e = ops.start("zigbee", JOIN, "operator:admin").err().unwrap();
        assert_eq!(e, OpError::Busy("zigbee".into()));
        assert_eq!(e.http_status(), 429);
    }
}
