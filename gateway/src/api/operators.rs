//! `/api/login` and `/api/operators…`: interactive logins and operator accounts (admin only, see
//! [`crate::operators::required_role`]).
//!
//! - `POST /api/login` `{"name","password","totp"?}` → `{"token","expires_in_s","operator","role"}`
//! - `GET /api/operators` → every account (no secrets)
//! - `POST /api/operators` `{"name","role","password"?}` → `{"name","role","token"}` (token shown once)
//! - `DELETE /api/operators/{name}`
//! - `POST /api/operators/{name}/password` `{"password"}`
//! - `POST /api/operators/{name}/token` → `{"token"}` (the old one stops working)
//! - `POST /api/operators/{name}/totp` `{"enable":bool}` → `{"provisioning_uri"}` when enabled

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{S, err, listener::Peer};
use crate::audit::{AuditEntry, Category};
use crate::login_failures::Listener;
use crate::operators::{OperatorError, Principal, Role, SESSION_TTL_MS};
use crate::run::Shared;

/// How long a login waits for a free password-check slot before answering 503.
const LOGIN_QUEUE_WAIT: Duration = Duration::from_secs(5);

fn op_err(e: OperatorError) -> Response {
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    err(code, e.to_string())
}

#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    // serde's message names the field, never echoes a value
    serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("request body: {}", e.classify_msg()),
        )
    })
}

trait Classify {
    fn classify_msg(&self) -> String;
}

impl Classify for serde_json::Error {
    fn classify_msg(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Data => {
                format!(
                    "wrong or missing field (line {}, column {})",
                    self.line(),
                    self.column()
                )
            }
            _ => format!("not JSON (line {}, column {})", self.line(), self.column()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

pub async fn login(State(s): S, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
    if s.failures.blocked(Listener::Api, ip) {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
        );
    }
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return err(StatusCode::PAYLOAD_TOO_LARGE, "login body too large"),
    };
    match check_login(&s, ip, &body, "api").await {
        Ok((token, p)) => axum::Json(serde_json::json!({
            "token": token,
            "expires_in_s": SESSION_TTL_MS / 1000,
            "operator": p.name,
            "role": p.role.as_str(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// Checks a login body `{"name","password","totp"?}` (argon2 off the async workers, a few at a
/// time) and audits the outcome; `via` (`api` or `web`) goes into the audit detail. The caller has
/// already checked that the source is not blocked.
pub(crate) async fn check_login(
    s: &Arc<Shared>,
    ip: std::net::IpAddr,
    body: &[u8],
    via: &str,
) -> Result<(String, Principal), Response> {
    let b: LoginBody = parse(body)?;
    let Ok(slot) = tokio::time::timeout(LOGIN_QUEUE_WAIT, s.login_slots.clone().acquire_owned())
        .await
        .map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
    else {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "login busy; try again",
        ));
    };
    let ops = s.operators.clone();
    let name: String = b.name.chars().take(64).collect();
    let n2 = name.clone();
    let r = tokio::task::spawn_blocking(move || {
        let r = ops.login(&n2, &b.password, b.totp.as_deref());
        drop(slot);
        r
    })
    .await;
    match r {
        Ok(Ok((token, p))) => {
            s.audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "login",
                    &p.actor(),
                    "interactive login; session opened",
                )
                .detail(serde_json::json!({
                    "source": ip.to_string(), "role": p.role.as_str(), "via": via,
                })),
            );
            Ok((token, p))
        }
        Ok(Err(why)) => {
            s.failures.failed(
                Listener::Api,
                ip,
                &format!("operator:{name}"),
                &format!("login refused: {}", why.as_str()),
                serde_json::json!({ "cause": why.as_str(), "via": via }),
            );
            Err(err(
                StatusCode::UNAUTHORIZED,
                "wrong name, password or code",
            ))
        }
        Err(e) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub async fn list(State(s): S) -> Response {
    axum::Json(s.operators.list()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    role: String,
    #[serde(default)]
    password: Option<String>,
}

#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
fn parse_role(r: &str) -> Result<Role, Response> {
    Role::parse(r).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            format!("unknown role `{r}` (viewer, operator or admin)"),
        )
    })
}

/// Runs an account change (argon2 and SQLite) off the async workers.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OperatorError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(op_err),
        Err(e) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub async fn add(State(s): S, Extension(p): Extension<Principal>, body: Bytes) -> Response {
    let b: AddBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let role = match parse_role(&b.role) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ops = s.operators.clone();
    let name = b.name.clone();
    match blocking(move || ops.add(&p, &name, role, b.password.as_deref())).await {
        Ok(token) => (
            StatusCode::CREATED,
            axum::Json(
                serde_json::json!({ "name": b.name, "role": role.as_str(), "token": token }),
            ),
        )
            .into_response(),
        Err(r) => r,
    }
}

pub async fn remove(
    State(s): S,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let ops = s.operators.clone();
    let n = name.clone();
    match blocking(move || ops.remove(&p, &n)).await {
        Ok(()) => axum::Json(serde_json::json!({ "removed": name })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    enable: Option<bool>,
}

pub async fn action(
    State(s): S,
    Extension(p): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let b: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        match parse(&body) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    let ops = s.operators.clone();
    let me = p.name == name;
    match action.as_str() {
        "password" => {
            let Some(pw) = b.password else {
                return err(StatusCode::BAD_REQUEST, "`password` is required");
            };
            match blocking(move || ops.set_password(&p, &name, &pw)).await {
                Ok(()) => axum::Json(serde_json::json!({ "password": "changed" })).into_response(),
                Err(r) => r,
            }
        }
        "token" => match blocking(move || ops.rotate_token(&p, &name)).await {
            Ok(token) => {
                axum::Json(serde_json::json!({ "token": token, "self": me })).into_response()
            }
            Err(r) => r,
        },
        "totp" => {
            let Some(enable) = b.enable else {
                return err(
                    StatusCode::BAD_REQUEST,
                    "`enable` (true or false) is required",
                );
            };
            let gw = s.gateway_id.clone();
            match blocking(move || ops.set_totp(&p, &name, enable, &gw)).await {
                Ok(uri) => axum::Json(serde_json::json!({
                    "totp": enable,
                    "provisioning_uri": uri,
                }))
                .into_response(),
                Err(r) => r,
            }
        }
        _ => err(StatusCode::NOT_FOUND, format!("unknown action `{action}`")),
    }
}
