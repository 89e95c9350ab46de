//! The dashboard's pages: the login page, the page shell and the embedded files, served under
//! `/ui/…` (only with the `dashboard` feature, and when `api.dashboard` is on).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{assets, session};
use crate::api::{S, err};

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
