//! `GET /api/live`: the live decision stream (Server-Sent Events), fed from the audit sink's copy
//! of each record ([`crate::audit::AuditSink::subscribe`]).
//!
//! Filters, validated here: `verdict=allow|deny`, `device=<id>`, `category=<name>`. Each record is
//! one `data:` line of JSON; a comment line every [`KEEPALIVE`] keeps the connection from the
//! API's idle timeout. The buffer per viewer is the sink's ring: the pipeline never waits for a
//! viewer, and one that falls behind by more than the ring gets a final `lagged` event and is
//! dropped (the page reconnects).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use warden_core::DeviceId;

use crate::api::{S, err};
use crate::audit::AuditEntry;

/// How often an idle stream sends a comment line.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LiveQ {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// A validated filter.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    verdict: Option<&'static str>,
    device: Option<String>,
    category: Option<String>,
}

const CATEGORIES: &[&str] = &["decision", "aggregate", "operator", "security", "system"];

impl Filter {
    pub fn parse(q: &LiveQ) -> Result<Self, String> {
        let verdict = match q.verdict.as_deref() {
            None | Some("") => None,
            Some("allow") => Some("allow"),
            Some("deny") => Some("deny"),
            Some(_) => return Err("`verdict` is `allow` or `deny`".into()),
        };
        let device = match q.device.as_deref() {
            None | Some("") => None,
            Some(d) => Some(
                d.parse::<DeviceId>()
                    .map_err(|e| format!("`device`: {e}"))?
                    .to_string(),
            ),
        };
        let category = match q.category.as_deref() {
            None | Some("") => None,
            Some(c) if CATEGORIES.contains(&c) => Some(c.to_owned()),
            Some(_) => {
                return Err(format!("`category` is one of {}", CATEGORIES.join(", ")));
            }
        };
        Ok(Self {
            verdict,
            device,
            category,
        })
    }

    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.verdict.is_none_or(|v| e.verdict.as_deref() == Some(v))
            && self
                .device
                .as_ref()
                .is_none_or(|d| e.device.as_deref() == Some(d.as_str()))
            && self
                .category
                .as_ref()
                .is_none_or(|c| e.category.as_str() == c)
    }
}

/// One record as an SSE event.
pub fn event(e: &AuditEntry) -> Bytes {
    let detail: serde_json::Value =
        serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null);
    let v = serde_json::json!({
        "ts": e.ts,
        "category": e.category.as_str(),
        "action": e.action,
        "device": e.device,
        "actor": e.actor,
        "decider": e.decider,
        "verdict": e.verdict,
        "reason": e.reason,
        "detail": detail,
    });
    // JSON never holds a raw newline, so one `data:` line is the whole event
    Bytes::from(format!("data: {v}\n\n"))
}

pub async fn stream(
    State(s): S,
    q: Result<Query<LiveQ>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filter = match Filter::parse(&q) {
        Ok(f) => f,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let first = Bytes::from_static(b": live decisions\nretry: 1000\n\n");
    let render = move |e: &AuditEntry| filter.matches(e).then(|| event(e));
    let (guard, rx) = s.audit.subscribe();
    sse(rx, s.shutdown.clone(), first, render, guard)
}

enum Next<T> {
    Item(Arc<T>),
    Lagged(u64),
    KeepAlive,
    End,
}

/// A Server-Sent Events response from a broadcast receiver: `render` turns an item into an event
/// (or skips it), a comment every [`KEEPALIVE`], a final `lagged` event when the viewer fell
/// behind by more than the ring, the end at shutdown. `guard` lives as long as the stream.
pub fn sse<T, F, G>(
    rx: broadcast::Receiver<Arc<T>>,
    shutdown: watch::Receiver<bool>,
    first: Bytes,
    render: F,
    guard: G,
) -> Response
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<Bytes> + Send + 'static,
    G: Send + 'static,
{
    let body = futures_util::stream::unfold(
        (rx, shutdown, render, guard, Some(first), false),
        |(mut rx, mut shutdown, render, guard, pending, done)| async move {
            if done {
                return None;
            }
            if let Some(b) = pending {
                let state = (rx, shutdown, render, guard, None, false);
                return Some((Ok::<_, std::convert::Infallible>(b), state));
            }
            loop {
                let next = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(x) => Next::Item(x),
                        Err(RecvError::Lagged(n)) => Next::Lagged(n),
                        Err(RecvError::Closed) => Next::End,
                    },
                    () = tokio::time::sleep(KEEPALIVE) => Next::KeepAlive,
                    _ = shutdown.wait_for(|v| *v) => Next::End,
                };
                let (b, last) = match next {
                    Next::Item(x) => match render(&x) {
                        Some(b) => (b, false),
                        None => continue,
                    },
                    Next::Lagged(n) => (
                        Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n")),
                        true,
                    ),
                    Next::KeepAlive => (Bytes::from_static(b": keep-alive\n\n"), false),
                    Next::End => return None,
                };
                return Some((Ok(b), (rx, shutdown, render, guard, None, last)));
            }
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::audit::Category;

    fn q(verdict: Option<&str>, device: Option<&str>, category: Option<&str>) -> LiveQ {
        LiveQ {
            verdict: verdict.map(str::to_owned),
            device: device.map(str::to_owned),
            category: category.map(str::to_owned),
        }
    }

    #[test]
    fn a_bad_verdict_is_refused_with_the_choices() {
        assert_eq!(
            Filter::parse(&q(Some("maybe"), None, None)),
            Err("`verdict` is `allow` or `deny`".to_owned())
        );
    }

    #[test]
    fn a_bad_device_id_is_refused() {
        assert!(Filter::parse(&q(None, Some("no-colon"), None)).is_err());
    }

    #[test]
    fn a_deny_filter_keeps_only_denials_of_that_device() {
        let f = Filter::parse(&q(Some("deny"), Some("sim:a"), None)).unwrap();
        let deny = AuditEntry::new(Category::Decision, "uplink", "device", "no profile")
            .device("sim:a")
            .decision("builtin", "deny");
        let other = deny.clone().device("sim:b");
        let allow = AuditEntry::new(Category::Decision, "uplink", "device", "ok")
            .device("sim:a")
            .decision("builtin", "allow");
        assert!(f.matches(&deny));
        assert!(!f.matches(&other));
        assert!(!f.matches(&allow));
    }

    #[tokio::test]
    async fn a_viewer_that_falls_behind_is_told_and_dropped_while_the_sender_never_waits() {
        let (tx, rx) = broadcast::channel::<Arc<u32>>(2);
        // the sender runs ahead of a viewer that reads nothing: never blocked, never an error
        for i in 0..10 {
            tx.send(Arc::new(i)).unwrap();
        }
        let (_stop, stop_rx) = watch::channel(false);
        let render = |v: &u32| Some(Bytes::from(format!("data: {v}\n\n")));
        let r = sse(rx, stop_rx, Bytes::from_static(b": hi\n\n"), render, ());
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            axum::body::to_bytes(r.into_body(), 1 << 20),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            ": hi\n\nevent: lagged\ndata: {\"missed\":8}\n\n"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn a_viewer_in_time_gets_each_item_and_the_stream_ends_at_shutdown() {
        let (tx, rx) = broadcast::channel::<Arc<u32>>(8);
        let (stop, stop_rx) = watch::channel(false);
        let render = |v: &u32| (*v != 2).then(|| Bytes::from(format!("data: {v}\n\n")));
        let r = sse(rx, stop_rx, Bytes::from_static(b": hi\n\n"), render, ());
        for i in 1..=3 {
            tx.send(Arc::new(i)).unwrap();
        }
        let collect = tokio::spawn(axum::body::to_bytes(r.into_body(), 1 << 20));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        let body = tokio::time::timeout(std::time::Duration::from_secs(5), collect)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            ": hi\n\ndata: 1\n\ndata: 3\n\n"
        );
    }

    #[test]
    fn an_event_is_one_data_line_even_with_newlines_in_the_reason() {
        let e = AuditEntry::new(Category::Decision, "uplink", "device", "a\nb<script>");
        let b = event(&e);
        let t = std::str::from_utf8(&b).unwrap();
        assert!(t.starts_with("data: {"));
        assert!(t.ends_with("}\n\n"));
        assert_eq!(t.matches('\n').count(), 2);
    }
}
