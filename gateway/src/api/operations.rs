//! `/api/adapters…`: adapter operations (join windows, scans, removals) and their live progress.
//!
//! - `GET  /api/adapters`: every adapter that takes operations, what it supports, its latest one.
//! - `POST /api/adapters/{name}/operations` with `{"op":"join","seconds":120}` (or `close`, `scan`,
//!   `remove` with `device`): 202 with the operation, or 400/404/429 with a clear error.
//! - `GET  /api/adapters/{name}/operations/{id}`: its current state.
//! - `GET  /api/adapters/{name}/operations/{id}/stream`: newline-delimited JSON, one line per
//!   change, ending with the final state (a slow reader skips to the newest state).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use warden_core::OperationRequest;

use super::{S, err};
use crate::operations::Started;
use crate::operators::Principal;
use crate::run::Shared;

/// The longest a stream stays open without a change before it sends the same state again (so a
/// client can tell a quiet operation from a dead connection).
const KEEPALIVE: Duration = Duration::from_secs(10);

pub async fn list(State(s): S) -> Response {
    axum::Json(s.operations.list()).into_response()
}

pub async fn start(
    State(s): S,
    Extension(p): Extension<Principal>,
    Path(adapter): Path<String>,
    body: Bytes,
) -> Response {
    let request: OperationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("operation: {e}")),
    };
    match s.operations.start(&adapter, request, &p.actor()) {
        Ok(st) => (
            StatusCode::ACCEPTED,
            axum::Json(st.to_json(&st.progress.current())),
        )
            .into_response(),
        Err(e) => err(
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        ),
    }
}

#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
fn find(s: &Shared, adapter: &str, id: &str) -> Result<Started, Response> {
    s.operations.get(adapter, id).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            format!("no operation {id} on {adapter}"),
        )
    })
}

pub async fn get_one(State(s): S, Path((adapter, id)): Path<(String, String)>) -> Response {
    match find(&s, &adapter, &id) {
        Ok(st) => axum::Json(st.to_json(&st.progress.current())).into_response(),
        Err(r) => r,
    }
}

fn line(st: &Started) -> Bytes {
    let mut v = serde_json::to_vec(&st.to_json(&st.progress.current())).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

pub async fn stream(State(s): S, Path((adapter, id)): Path<(String, String)>) -> Response {
    let st = match find(&s, &adapter, &id) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let rx = st.progress.subscribe();
    let shutdown = s.shutdown.clone();
    // the first line is the state now; then one per change (or a keep-alive repeat), until final
    let body = futures_util::stream::unfold(
        (st, rx, shutdown, false, true),
        |(st, mut rx, mut shutdown, done, first)| async move {
            if done {
                return None;
            }
            if !first {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep(KEEPALIVE) => {}
                    _ = shutdown.wait_for(|v| *v) => return None,
                }
            }
            rx.borrow_and_update();
            let finished = st.progress.current().state.is_final();
            let l = line(&st);
            Some((
                Ok::<_, std::convert::Infallible>(l),
                (st, rx, shutdown, finished, false),
            ))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}
