//! `GET /api/plugins`: each configured plugin as the running host has it — the version loaded
//! (module SHA-256, contract), its signer (key id) or that it is unsigned, when it was loaded and
//! how many times, whether it was refused or disabled and why, and the last reload refused. Read
//! from memory the loader, reloader and chain keep up to date (not from the config file).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::api::S;

pub async fn get(State(s): S) -> Response {
    axum::Json(s.plugins.to_json()).into_response()
}
