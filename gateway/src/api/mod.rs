//! The management API (axum) on loopback. Every route but `/healthz` and `/api/login` needs
//! `Authorization: Bearer <token>` (scheme in any case, RFC 7235): an operator's API token (the
//! bootstrap admin's is in `<data-dir>/api.token`, mode 0600) or a session token from
//! `POST /api/login`; or, from the dashboard ([`crate::web`]), a browser session cookie, with
//! the session's CSRF token on every state-changing request. Each route needs a role
//! ([`crate::operators::required_role`]); a refusal is audited. Connections are bounded by
//! [`listener`] before any of this runs.

mod listener;
mod operations;
mod operators;

pub(crate) use operators::check_login;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};
use warden_core::DeviceId;

use crate::audit::{AuditEntry, Category};
use crate::login_failures::Listener;
use crate::operators::{Principal, required_role};
use crate::pipeline::authenticate::CommandSource;
use crate::pipeline::{CommandRequest, Control};
use crate::registry::{Assignment, RegistryError, StatusAction, parse_import};
use crate::run::{Shared, new_command_id, parse_command};

pub(crate) type S = State<Arc<Shared>>;

pub(crate) fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

/// The token of an `Authorization: Bearer …` header; the scheme is matched in any case.
fn bearer(req: &Request) -> Option<&str> {
    let v = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn peer_ip(req: &Request) -> std::net::IpAddr {
    req.extensions()
        .get::<listener::Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

async fn auth(State(s): S, mut req: Request, next: Next) -> Response {
    let ip = peer_ip(&req);
    if s.failures.blocked(Listener::Api, ip) {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
        );
    }
    // a bearer token (the CLI) wins; a browser session cookie is the other way in
    let token = bearer(&req).map(str::to_owned);
    let cookie = match token {
        None => crate::web::session::cookie_token(req.headers()),
        Some(_) => None,
    };
    let p = match (&token, &cookie) {
        (Some(t), _) => s.operators.authenticate(t),
        (None, Some(c)) => s.operators.authenticate_session(c),
        (None, None) => None,
    };
    let Some(p) = p else {
        let why = if token.is_some() {
            "unknown API or session token"
        } else if cookie.is_some() {
            "unknown or expired session cookie"
        } else {
            "no bearer token"
        };
        s.failures.failed(
            Listener::Api,
            ip,
            "(token)",
            why,
            serde_json::json!({ "method": req.method().as_str(), "path": req.uri().path() }),
        );
        return err(StatusCode::UNAUTHORIZED, "missing or wrong API token");
    };
    if let Some(c) = &cookie
        && let Err(r) = crate::web::session::require_csrf(&s, &req, c, &p)
    {
        return r;
    }
    let need = required_role(req.method(), req.uri().path());
    if p.role < need {
        s.audit.record(
            AuditEntry::new(
                Category::Security,
                "api-forbidden",
                &p.actor(),
                format!(
                    "{} {} needs role {need}; `{}` is {}",
                    req.method(),
                    req.uri().path(),
                    p.name,
                    p.role
                ),
            )
            .decision("builtin:api", "deny")
            .detail(serde_json::json!({
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "role": p.role.as_str(),
                "needs": need.as_str(),
            })),
        );
        return err(
            StatusCode::FORBIDDEN,
            format!("this needs the {need} role; you are {}", p.role),
        );
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

/// The connection limits from the config, with `max_connections` already fitted to the process's
/// file-descriptor limit.
pub struct ServeConfig {
    pub max_connections: usize,
    pub per_source: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body: usize,
    /// Serve the dashboard's pages (`api.dashboard`).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    pub dashboard: bool,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    s: Arc<Shared>,
    cfg: ServeConfig,
    shutdown: watch::Receiver<bool>,
    lan: Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>,
) {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/whoami", get(whoami))
        .route("/api/status", get(status))
        .route("/api/devices", get(devices))
        .route("/api/devices/import", post(import))
        .route("/api/devices/export", get(export))
        .route("/api/devices/{id}", get(device))
        .route(
            "/api/devices/{id}/points",
            get(crate::web::points::snapshot),
        )
        .route(
            "/api/devices/{id}/points/live",
            get(crate::web::points::stream),
        )
        // approve | quarantine | revoke | release | re-enroll | commands
        .route("/api/devices/{id}/{action}", post(device_action))
        .route("/api/audit/tail", get(audit_tail))
        .route("/api/audit/verify", get(audit_verify))
        .route("/api/live", get(crate::web::live::stream))
        .route("/api/catalogue", get(crate::web::catalogue::get))
        .route("/api/plugins", get(crate::web::plugins::get))
        .route("/api/config/reload", post(reload))
        .route("/api/adapters", get(operations::list))
        .route("/api/adapters/{name}/operations", post(operations::start))
        .route(
            "/api/adapters/{name}/operations/{id}",
            get(operations::get_one),
        )
        .route(
            "/api/adapters/{name}/operations/{id}/stream",
            get(operations::stream),
        )
        .route("/api/operators", get(operators::list).post(operators::add))
        .route("/api/operators/{name}", delete(operators::remove))
        .route("/api/operators/{name}/{action}", post(operators::action))
        .route_layer(middleware::from_fn_with_state(s.clone(), auth));
    #[cfg_attr(not(feature = "dashboard"), allow(unused_mut))]
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/login", post(operators::login))
        .merge(protected);
    #[cfg(feature = "dashboard")]
    if cfg.dashboard {
        app = app.merge(crate::web::pages::routes());
    }
    let app = app
        .layer(DefaultBodyLimit::max(cfg.max_body))
        .layer(middleware::map_response(crate::web::security_headers))
        .with_state(s.clone());
    let limits = listener::Limits {
        max_connections: cfg.max_connections,
        per_source: cfg.per_source,
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
    };
    // the dashboard's optional LAN listener: the same routes, over TLS, with its own caps
    let lan = lan.map(|(l, tls)| {
        tokio::spawn(listener::serve(
            l,
            app.clone(),
            limits,
            s.metrics.clone(),
            shutdown.clone(),
            Some(tls),
        ))
    });
    listener::serve(listener, app, limits, s.metrics.clone(), shutdown, None).await;
    if let Some(t) = lan {
        let _ = t.await;
    }
}

async fn whoami(Extension(p): Extension<Principal>) -> Response {
    axum::Json(serde_json::json!({ "operator": p.name, "role": p.role.as_str() })).into_response()
}

async fn metrics(State(s): S) -> Response {
    let (seq, _) = s.store.audit_head();
    s.metrics.audit_records.set(seq as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn status(State(s): S) -> Response {
    let (seq, hash) = s.store.audit_head();
    axum::Json(serde_json::json!({
        "gateway": s.gateway_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "devices": s.registry.len(),
        "pending": s.registry.pending_count(),
        "queue_depth": s.outbox.depth(),
        "broker_connected": s.metrics.broker_connected.get() == 1,
        "published": s.metrics.published.get(),
        "audit_head": { "seq": seq, "hash": hex::encode(hash) },
        "public_key": crate::northbound::envelope::encode_pubkey(&s.store.verifying_key).trim(),
        "embedded_broker": s.broker_stats.as_ref().map(|b| b.get()),
        "disk": {
            "free_bytes": s.audit.disk().free_bytes(),
            "low": s.audit.disk().is_low(),
            "audit_writes_failing": s.audit.disk().is_failing(),
            "degraded": s.audit.disk().degraded(),
        },
    }))
    .into_response()
}

async fn devices(State(s): S) -> Response {
    let v: Vec<_> = s
        .registry
        .all()
        .into_iter()
        .map(|(r, st)| serde_json::json!({ "device": *r, "stats": st }))
        .collect();
    axum::Json(v).into_response()
}

#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
fn parse_id(id: &str) -> Result<DeviceId, Response> {
    id.parse()
        .map_err(|e: warden_core::IdError| err(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn device(State(s): S, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match s.registry.get(&id) {
        Some(e) => axum::Json(serde_json::json!({
            "device": *e.record(), "stats": e.stats.snapshot(),
        }))
        .into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no device {id}")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

fn registry_err(e: RegistryError) -> Response {
    let code = match &e {
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::Invalid(_)
        | RegistryError::ReasonRequired(_)
        | RegistryError::Unknown { .. } => StatusCode::BAD_REQUEST,
        RegistryError::Revoked(_) | RegistryError::WrongState { .. } => StatusCode::CONFLICT,
        RegistryError::DiskLow => StatusCode::SERVICE_UNAVAILABLE,
        RegistryError::TooManyPending(_) | RegistryError::Store(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    err(code, e.to_string())
}

async fn device_action(
    State(s): S,
    Extension(p): Extension<Principal>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if action == "commands" {
        return command(s, &p, id, body).await;
    }
    let b: ActionBody = if body.is_empty() {
        ActionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    if action == "expect" {
        return expect(s, &p, id, b.reason.unwrap_or_default()).await;
    }
    let Some(act) = StatusAction::parse(&action) else {
        return err(StatusCode::NOT_FOUND, format!("unknown action `{action}`"));
    };
    let assign = Assignment {
        profile: b.profile,
        zone: b.zone,
        role: b.role,
    };
    let reason = b.reason.unwrap_or_default();
    // the registry write (a transaction with its audit record, fsynced) runs off the async workers
    let (registry, dev, actor) = (s.registry.clone(), id.clone(), p.actor());
    let done = tokio::task::spawn_blocking(move || {
        registry.operator_action(&dev, act, &assign, &actor, &reason)
    })
    .await;
    let Ok(done) = done else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "registry task failed");
    };
    match done {
        Ok(r) => {
            let _ = s.control.send(Control::Status(id)).await;
            axum::Json(&*r).into_response()
        }
        Err(e) => registry_err(e),
    }
}

/// `POST /api/devices/{id}/expect {"reason": …}`: the device's anomaly alert is expected; its
/// baseline absorbs the new behaviour for an hour (audited with the reason).
async fn expect(s: Arc<Shared>, p: &Principal, device: DeviceId, reason: String) -> Response {
    if reason.trim().is_empty() {
        return err(
            StatusCode::BAD_REQUEST,
            "a reason is required to mark an alert as expected",
        );
    }
    let (tx, rx) = oneshot::channel();
    let c = Control::Expect {
        device: device.clone(),
        actor: p.actor(),
        reason,
        reply: tx,
    };
    if s.control.send(c).await.is_err() {
        return err(StatusCode::SERVICE_UNAVAILABLE, "pipeline is not running");
    }
    match rx.await {
        Ok(true) => axum::Json(serde_json::json!({
            "device": device, "expected": true,
            "absorb_s": crate::behaviour::ABSORB_MS / 1000,
        }))
        .into_response(),
        Ok(false) => err(
            StatusCode::NOT_FOUND,
            format!("{device} has no behaviour baseline"),
        ),
        Err(_) => err(StatusCode::SERVICE_UNAVAILABLE, "pipeline is not running"),
    }
}

async fn command(s: Arc<Shared>, p: &Principal, device: DeviceId, body: Bytes) -> Response {
    let (id, command) = match parse_command(&body) {
        Ok(c) => c,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let (tx, rx) = oneshot::channel();
    let req = CommandRequest {
        command_id: id.unwrap_or_else(new_command_id),
        device,
        command,
        source: CommandSource::Operator {
            name: p.name.clone(),
            role: p.role,
        },
        reply: Some(tx),
    };
    if s.control.send(Control::Command(req)).await.is_err() {
        return err(StatusCode::SERVICE_UNAVAILABLE, "pipeline is not running");
    }
    match tokio::time::timeout(Duration::from_secs(35), rx).await {
        Ok(Ok(r)) => axum::Json(r).into_response(),
        _ => err(StatusCode::GATEWAY_TIMEOUT, "no result in time"),
    }
}

#[derive(Deserialize)]
struct FormatQ {
    #[serde(default)]
    format: Option<String>,
    /// Import only: let the file change existing devices' status, profile, zone and role.
    #[serde(default)]
    update: bool,
}

async fn import(
    State(s): S,
    Extension(p): Extension<Principal>,
    Query(q): Query<FormatQ>,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return err(StatusCode::BAD_REQUEST, "import file is not UTF-8");
    };
    let csv = match q.format.as_deref() {
        None | Some("toml") => false,
        Some("csv") => true,
        Some(f) => return err(StatusCode::BAD_REQUEST, format!("unknown format `{f}`")),
    };
    let devs = match parse_import(text, csv) {
        Ok(d) => d,
        Err(e) => return registry_err(e),
    };
    let (registry, actor, zone) = (s.registry.clone(), p.actor(), s.default_zone.clone());
    let update = q.update;
    let done = tokio::task::spawn_blocking(move || {
        let r = registry.import(&devs, &actor, &zone, update);
        (r, devs)
    })
    .await;
    let Ok((done, devs)) = done else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "registry task failed");
    };
    match done {
        Ok(rep) => {
            for d in &devs {
                if let Ok(id) = d.id.parse() {
                    let _ = s.control.send(Control::Status(id)).await;
                }
            }
            axum::Json(rep).into_response()
        }
        Err(e) => registry_err(e),
    }
}

async fn export(State(s): S, Query(q): Query<FormatQ>) -> Response {
    let devs = s.registry.export();
    match q.format.as_deref() {
        None | Some("toml") => {
            match toml::to_string(&crate::registry::ImportFile { devices: devs }) {
                Ok(t) => t.into_response(),
                Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Some("csv") => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record([
                "id",
                "name",
                "zone",
                "role",
                "profile",
                "status",
                "manufacturer",
                "model",
                "firmware",
                "serial",
            ]);
            for d in devs {
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let _ = w.write_record([
                    d.id.clone(),
                    o(&d.name),
                    o(&d.zone),
                    o(&d.role),
                    o(&d.profile),
                    o(&d.status),
                    o(&d.manufacturer),
                    o(&d.model),
                    o(&d.firmware),
                    o(&d.serial),
                ]);
            }
            match w.into_inner() {
                Ok(b) => b.into_response(),
                Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Some(f) => err(StatusCode::BAD_REQUEST, format!("unknown format `{f}`")),
    }
}

#[derive(Deserialize)]
struct TailQ {
    #[serde(default)]
    n: Option<u64>,
}

async fn audit_tail(State(s): S, Query(q): Query<TailQ>) -> Response {
    match s
        .store
        .read(|c, _| crate::audit::tail(c, q.n.unwrap_or(20).min(10_000)))
    {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn audit_verify(State(s): S) -> Response {
    let store = s.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        // a separate read-only connection: verification does not hold up the writers
        crate::store::open_readonly(&store.data_dir)
            .map(|c| crate::audit::verify(&c, &store.verifying_key))
    })
    .await;
    match r {
        Ok(Ok(Ok(rep))) => axum::Json(rep).into_response(),
        Ok(Ok(Err(e))) => err(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn reload(State(s): S, Extension(p): Extension<Principal>) -> Response {
    match crate::run::reload(&s, &p.actor()).await {
        Ok(()) => axum::Json(serde_json::json!({ "reloaded": true })).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}
