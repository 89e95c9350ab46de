//! A device's points on the dashboard: `GET /api/devices/{id}/points` (current values and the
//! recent history of numeric points, kept since start by [`crate::recent`]) and
//! `GET /api/devices/{id}/points/live` (Server-Sent Events of its delivered uplinks' points).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use warden_core::DeviceId;

use crate::api::{S, err};
use crate::recent::Update;

/// The device the path names, if it is registered; otherwise the error to answer with.
fn known(s: &crate::run::Shared, id: &str) -> Result<DeviceId, (StatusCode, String)> {
    let device: DeviceId = id
        .parse()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("device id: {e}")))?;
    if s.registry.get(&device).is_none() {
        return Err((StatusCode::NOT_FOUND, format!("no device {device}")));
    }
    Ok(device)
}

pub async fn snapshot(State(s): S, Path(id): Path<String>) -> Response {
    let device = match known(&s, &id) {
        Ok(d) => d,
        Err((code, why)) => return err(code, why),
    };
    let points = s.points.points(&device).unwrap_or_default();
    Json(serde_json::json!({
        "device": device.to_string(),
        "points": points,
        "history_samples": crate::recent::HISTORY,
    }))
    .into_response()
}

pub async fn stream(State(s): S, Path(id): Path<String>) -> Response {
    let device = match known(&s, &id) {
        Ok(d) => d,
        Err((code, why)) => return err(code, why),
    };
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
