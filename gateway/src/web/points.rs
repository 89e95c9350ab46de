//! `GET /api/devices/{id}/points/live`: the values of a device's allowed uplinks as they are
//! delivered (Server-Sent Events), for the device page's current values and history chart.
//!
//! The pipeline offers each delivered uplink to [`PointTap::uplink`], which costs one atomic load
//! while no page watches; with watchers, the points are copied into a broadcast ring of
//! [`BUFFER`] (never blocking the pipeline: a viewer that falls behind is dropped).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::broadcast;
use warden_core::{DeviceId, Message, Point};

use crate::api::{S, err};

/// Updates a watcher may fall behind by before it is dropped.
pub const BUFFER: usize = 256;

/// One delivered uplink's points.
#[derive(Debug, serde::Serialize)]
pub struct Update {
    pub device: String,
    pub ts: u64,
    pub points: Vec<Point>,
}

/// Where the pipeline offers delivered uplinks.
pub struct PointTap {
    watchers: AtomicUsize,
    tx: broadcast::Sender<Arc<Update>>,
}

impl Default for PointTap {
    fn default() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            tx: broadcast::channel(BUFFER).0,
        }
    }
}

/// Counts a watcher while it lives.
struct Watching(Arc<PointTap>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PointTap {
    /// Called by the pipeline for each delivered uplink.
    pub fn uplink(&self, msg: &Message) {
        if self.watchers.load(Ordering::Relaxed) == 0 || msg.points.is_empty() {
            return;
        }
        let _ = self.tx.send(Arc::new(Update {
            device: msg.device.to_string(),
            ts: msg.received_ms,
            points: msg.points.clone(),
        }));
    }

    fn watch(self: &Arc<Self>) -> (Watching, broadcast::Receiver<Arc<Update>>) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        (Watching(self.clone()), self.tx.subscribe())
    }
}

pub async fn stream(State(s): S, Path(id): Path<String>) -> Response {
    let device: DeviceId = match id.parse() {
        Ok(d) => d,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("device id: {e}")),
    };
    if s.registry.get(&device).is_none() {
        return err(StatusCode::NOT_FOUND, format!("no device {device}"));
    }
    let want = device.to_string();
    let (guard, rx) = s.points.watch();
    let render = move |u: &Update| {
        (u.device == want).then(|| {
            let line = serde_json::to_string(u).unwrap_or_default();
            Bytes::from(format!("data: {line}\n\n"))
        })
    };
    let first = Bytes::from_static(b": points\nretry: 1000\n\n");
    super::live::sse(rx, s.shutdown.clone(), first, render, guard)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn msg(dev: &str) -> Message {
        Message::telemetry(
            dev.parse().unwrap(),
            vec![Point::new("temperature", warden_core::Value::Float(21.5))],
        )
    }

    #[test]
    fn nothing_is_copied_while_nobody_watches() {
        let t = Arc::new(PointTap::default());
        let mut rx = t.tx.subscribe();
        t.uplink(&msg("sim:a"));
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }

    #[test]
    fn a_watcher_sees_the_points_and_stops_counting_when_gone() {
        let t = Arc::new(PointTap::default());
        let (g, mut rx) = t.watch();
        t.uplink(&msg("sim:a"));
        let u = rx.try_recv().unwrap();
        assert_eq!(u.device, "sim:a");
        assert_eq!(u.points[0].name, "temperature");
        drop(g);
        assert_eq!(t.watchers.load(Ordering::Relaxed), 0);
    }
}
