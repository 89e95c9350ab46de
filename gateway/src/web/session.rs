//! Browser sessions: the login page's `POST /ui/login`, `POST /ui/logout` and `GET /ui/session`,
//! and the session cookie.
//!
//! A session is the same one `POST /api/login` opens (named operators, argon2 password, TOTP where
//! enrolled; [`crate::operators::Operators::login`]), carried in the [`COOKIE`] cookie instead of a
//! bearer header: `HttpOnly` (scripts never see it), `SameSite=Strict`, `Path=/`, `Secure` when
//! served over TLS. Logins share the API's failed-login limiter (429 from a source past its
//! threshold, before any password check) and audit records.
// Without the `dashboard` feature no page logs a browser in: the cookie side is unused (the
// API still reads a cookie it is sent, and refuses it without a session).
#![cfg_attr(not(feature = "dashboard"), allow(dead_code))]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::csrf;
use crate::api::{S, err};
use crate::audit::{AuditEntry, Category};
use crate::login_failures::Listener;
use crate::operators::{Principal, SESSION_TTL_MS};
use crate::run::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "warden_session";

/// A request extension set by a listener that serves over TLS (session cookies are then `Secure`).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The session token from the request's `Cookie` headers, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that opens a session (`tls`: add `Secure`).
pub fn set_cookie(token: &str, tls: bool) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL_MS / 1000,
        if tls { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that clears it.
pub fn clear_cookie(tls: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if tls { "; Secure" } else { "" }
    )
}

/// The operator and token of the request's session cookie, when it names a live session.
pub fn principal(s: &Shared, headers: &HeaderMap) -> Option<(Principal, String)> {
    let t = cookie_token(headers)?;
    s.operators.authenticate_session(&t).map(|p| (p, t))
}

fn peer_ip(req: &Request) -> std::net::IpAddr {
    crate::api::peer_ip(req)
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// `POST /ui/login` `{"name","password","totp"?}` (JSON only: a cross-site form cannot send it
/// without a preflight) → `{"operator","role","csrf"}` and the session cookie.
pub async fn login(State(s): S, req: Request) -> Response {
    let ip = peer_ip(&req);
    if s.failures.blocked(Listener::Api, ip) {
        return err(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins from this address; try again later",
        );
    }
    if !is_json(req.headers()) {
        return err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a login is a JSON body (Content-Type: application/json)",
        );
    }
    let tls = req.extensions().get::<OverTls>().is_some();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return err(StatusCode::PAYLOAD_TOO_LARGE, "login body too large"),
    };
    match crate::api::check_login(&s, ip, &body, "web").await {
        Ok((token, p)) => {
            let r = axum::Json(serde_json::json!({
                "operator": p.name,
                "role": p.role.as_str(),
                "csrf": csrf::token_for(&token),
                "expires_in_s": SESSION_TTL_MS / 1000,
            }))
            .into_response();
            with_cookie(r, &set_cookie(&token, tls))
        }
        Err(r) => r,
    }
}

/// `GET /ui/session` → `{"operator","role","csrf"}` for the page's scripts; 401 without a session.
pub async fn info(State(s): S, headers: HeaderMap) -> Response {
    match principal(&s, &headers) {
        Some((p, t)) => axum::Json(serde_json::json!({
            "operator": p.name,
            "role": p.role.as_str(),
            "csrf": csrf::token_for(&t),
        }))
        .into_response(),
        None => err(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

/// `POST /ui/logout` (with the CSRF token): ends the session, audited, and clears the cookie.
pub async fn logout(State(s): S, req: Request) -> Response {
    let tls = req.extensions().get::<OverTls>().is_some();
    let Some((p, token)) = principal(&s, req.headers()) else {
        return with_cookie(
            err(StatusCode::UNAUTHORIZED, "not logged in"),
            &clear_cookie(tls),
        );
    };
    if let Err(r) = require_csrf(&s, &req, &token, &p) {
        return r;
    }
    s.operators.end_session(&token);
    s.audit.record(
        AuditEntry::new(Category::Operator, "logout", &p.actor(), "session ended")
            .detail(serde_json::json!({ "via": "web" })),
    );
    with_cookie(
        axum::Json(serde_json::json!({ "logged_out": true })).into_response(),
        &clear_cookie(tls),
    )
}

/// Refuses (403, audited) a cookie-authenticated state-changing request without the session's
/// CSRF token.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself, built once
pub fn require_csrf(
    s: &Arc<Shared>,
    req: &Request,
    token: &str,
    p: &Principal,
) -> Result<(), Response> {
    if !csrf::changes_state(req.method()) {
        return Ok(());
    }
    let Err(why) = csrf::check(req.headers(), token) else {
        return Ok(());
    };
    s.audit.record(
        AuditEntry::new(
            Category::Security,
            "csrf-refused",
            &p.actor(),
            format!(
                "{} {} from a browser session without a valid CSRF token",
                req.method(),
                req.uri().path()
            ),
        )
        .decision("builtin:web", "deny")
        .detail(serde_json::json!({
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "cause": why.as_str(),
            "source": peer_ip(req).to_string(),
        })),
    );
    Err(err(
        StatusCode::FORBIDDEN,
        "this request needs the session's CSRF token (X-CSRF-Token header); reload the page",
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_session_cookie_is_httponly_strict_and_site_wide() {
        let c = set_cookie("abcd", false);
        let attrs: Vec<&str> = c.split("; ").collect();
        assert_eq!(attrs[0], "warden_session=abcd");
        assert!(attrs.contains(&"HttpOnly"));
        assert!(attrs.contains(&"SameSite=Strict"));
        assert!(attrs.contains(&"Path=/"));
        assert!(
            !attrs.contains(&"Secure"),
            "no Secure over plain HTTP on loopback"
        );
    }

    #[test]
    fn the_session_cookie_is_secure_under_tls() {
        let c = set_cookie("abcd", true);
        assert!(c.split("; ").any(|a| a == "Secure"));
        assert!(clear_cookie(true).split("; ").any(|a| a == "Secure"));
    }

    #[test]
    fn clearing_expires_the_cookie_at_once() {
        let c = clear_cookie(false);
        assert!(c.starts_with("warden_session=;"));
        assert!(c.split("; ").any(|a| a == "Max-Age=0"));
    }

    #[test]
    fn the_token_is_read_among_other_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden_session=0fa9; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("0fa9"));
    }

    #[test]
    fn a_malformed_cookie_value_is_no_token() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("warden_session=<script>"),
        );
        assert_eq!(cookie_token(&h), None);
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
