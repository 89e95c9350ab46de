//! CSRF protection for cookie-authenticated requests: a synchronizer token per session.
//!
//! The token is an HMAC of a fixed label under the session token itself, so it is bound to the
//! session, unguessable without the (HttpOnly) session cookie, and needs no second table. The page
//! reads it from `GET /ui/session` (same-origin only: no CORS) and sends it as the
//! [`HEADER`] header on every state-changing request; a cookie-authenticated request without it, or
//! with a wrong one, is refused 403 and audited. Bearer-token requests (the CLI) need none: a
//! browser never attaches a bearer token on its own.
// Without the `dashboard` feature no page logs a browser in: the cookie side is unused (the
// API still reads a cookie it is sent, and refuses it without a session).
#![cfg_attr(not(feature = "dashboard"), allow(dead_code))]

use axum::http::{HeaderMap, Method};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The request header that carries the token.
pub const HEADER: &str = "x-csrf-token";
const LABEL: &[u8] = b"warden-dashboard-csrf-v1";

/// HMAC takes a key of any length, so this is `None` never in practice.
fn mac(session: &str) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(session.as_bytes()).ok()?;
    m.update(LABEL);
    Some(m)
}

/// The CSRF token of a session.
pub fn token_for(session: &str) -> String {
    mac(session).map_or_else(String::new, |m| hex::encode(m.finalize().into_bytes()))
}

/// Whether a request with this method changes state (and so needs the token).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a token check failed (audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "csrf-token-missing",
            Self::Wrong => "csrf-token-wrong",
        }
    }
}

/// Checks the request's token against the session's, in constant time.
pub fn check(headers: &HeaderMap, session: &str) -> Result<(), Refusal> {
    let Some(sent) = headers.get(HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Refusal::Missing);
    };
    let Ok(sent) = hex::decode(sent.trim()) else {
        return Err(Refusal::Wrong);
    };
    match mac(session) {
        Some(m) if !sent.is_empty() => m.verify_slice(&sent).map_err(|_| Refusal::Wrong),
        _ => Err(Refusal::Wrong),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use axum::http::HeaderValue;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_sessions_own_token_passes() {
        assert_eq!(check(&with(&token_for("s1")), "s1"), Ok(()));
    }

    #[test]
    fn a_request_without_the_token_is_refused() {
        assert_eq!(check(&HeaderMap::new(), "s1"), Err(Refusal::Missing));
    }

    #[test]
    fn another_sessions_token_is_refused() {
        assert_eq!(check(&with(&token_for("s2")), "s1"), Err(Refusal::Wrong));
    }

    #[test]
    fn a_token_that_is_not_hex_is_refused() {
        assert_eq!(check(&with("<script>"), "s1"), Err(Refusal::Wrong));
    }

    #[test]
    fn only_reads_are_exempt() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        assert!(changes_state(&Method::POST));
        assert!(changes_state(&Method::DELETE));
        assert!(changes_state(&Method::PUT));
    }
}
