//! The operator dashboard, served by the management API's own listener under `/ui/…`.
//!
//! Plain HTML and JavaScript modules embedded in the binary ([`assets`]) that call the same JSON
//! API as the CLI, so every action is checked by the same role table and audited with the
//! operator as principal. Browser sessions ([`session`]) are cookies with a CSRF token ([`csrf`]);
//! the live decision stream is [`live`]; the pages themselves are [`pages`] (left out of a
//! build without the `dashboard` feature, and not routed with `api.dashboard = false`). Every response of the listener carries a strict
//! Content-Security-Policy ([`security_headers`]): scripts and styles from this origin only, none
//! inline, no framing.

#[cfg(feature = "dashboard")]
pub mod assets;
pub mod catalogue;
pub mod csrf;
pub mod live;
#[cfg(feature = "dashboard")]
pub mod pages;
pub mod plugins;
pub mod points;
pub mod session;
pub mod tls;

use axum::http::{HeaderValue, header};
use axum::response::Response;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

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
}
