//! The operator dashboard, served by the management API's own listener under `/ui/…`.
//!
//! Plain HTML and JavaScript modules embedded in the binary ([`assets`]) that call the same JSON
//! API as the CLI, so every action is checked by the same role table and audited with the
//! operator as principal. Browser sessions ([`session`]) are cookies with a CSRF token ([`csrf`]);
//! the live decision stream is [`live`]. Every response of the listener carries a strict
//! Content-Security-Policy ([`security_headers`]): scripts and styles from this origin only, none
//! inline, no framing.

pub mod assets;
pub mod catalogue;
pub mod csrf;
pub mod live;
pub mod plugins;
pub mod points;
pub mod session;
pub mod tls;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::{S, err};

/// The policy on every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to a response (every route of the listener, API included).
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The dashboard's routes (the API's own are in [`crate::api`]).
pub fn routes() -> Router<std::sync::Arc<crate::run::Shared>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/session", get(session::info))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/", get(|s: S, h: HeaderMap| page(s, h, String::new())))
        .route(
            "/ui/{*page}",
            get(|s: S, h: HeaderMap, Path(p): Path<String>| page(s, h, p)),
        )
}

async fn login_page() -> Response {
    html(assets::LOGIN_HTML)
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Whether `/ui/<path>` names a dashboard page (checked before the shell is served).
pub fn known_page(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => true,
        ["devices" | "pending" | "quarantine" | "live" | "audit" | "plugins" | "adapters"] => true,
        ["devices", id] => id.parse::<warden_core::DeviceId>().is_ok(),
        _ => false,
    }
}

async fn page(State(s): S, headers: HeaderMap, path: String) -> Response {
    if session::principal(&s, &headers).is_none() {
        return Redirect::to("/ui/login").into_response();
    }
    if !known_page(&path) {
        return err(StatusCode::NOT_FOUND, "no such dashboard page");
    }
    html(assets::APP_HTML)
}

async fn asset(State(s): S, headers: HeaderMap, Path(file): Path<String>) -> Response {
    let Some(a) = assets::find(&file) else {
        return err(StatusCode::NOT_FOUND, "no such file");
    };
    if !a.public && session::principal(&s, &headers).is_none() {
        return err(StatusCode::UNAUTHORIZED, "not logged in");
    }
    ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[tokio::test]
    async fn every_response_gets_a_strict_policy() {
        let r = security_headers(StatusCode::OK.into_response()).await;
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.split("; ").any(|d| d == "default-src 'self'"));
        assert!(csp.split("; ").any(|d| d == "frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(!csp.contains("unsafe-eval"));
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
    }

    #[test]
    fn only_known_pages_get_the_shell() {
        assert!(known_page(""));
        assert!(known_page("devices"));
        assert!(known_page("devices/sim:switch-1"));
        assert!(known_page("live/"));
        assert!(!known_page("devices/not an id"));
        assert!(!known_page("secret"));
        assert!(!known_page("audit/x/y"));
    }

    #[test]
    fn embedded_files_have_no_inline_script_or_style() {
        for body in [assets::LOGIN_HTML, assets::APP_HTML] {
            let lower = body.to_ascii_lowercase();
            assert!(!lower.contains("<style"), "inline style block");
            assert!(!lower.contains(" style="), "inline style attribute");
            assert!(!lower.contains(" onclick="), "inline handler");
            for (i, _) in lower.match_indices("<script") {
                let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |e| i + e)];
                assert!(tag.contains(" src="), "inline script: {tag}");
            }
        }
        for a in assets::ASSETS {
            assert!(!a.body.contains(".innerHTML"), "{} sets innerHTML", a.name);
            assert!(!a.body.contains("insertAdjacentHTML"), "{}", a.name);
            assert!(!a.body.contains("eval("), "{}", a.name);
        }
    }
}
