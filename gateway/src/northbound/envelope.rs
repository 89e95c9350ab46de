//! Signed envelopes: how every uplink payload proves it came from this gateway.
//!
//! A payload is a JSON object whose **last member** is `"sig"`: the base64 Ed25519 signature, by the
//! gateway's key, over the payload's bytes with that member removed — i.e. over the text up to the
//! final `,"sig":"…"` followed by `}`. A verifier in any language needs only string operations and an
//! Ed25519 library: cut at the last `,"sig":"`, append `}`, verify. The gateway's public key is the
//! base64 text in `<data-dir>/gateway.pub`. Controllers sign commands the same way.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

const SIG_MARK: &[u8] = b",\"sig\":\"";
/// The same member as the first of an object.
const SIG_FIRST: &[u8] = b"\"sig\":\"";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("payload carries no signature (no trailing \"sig\" member)")]
    Unsigned,
    #[error("signature is not valid base64 Ed25519")]
    Malformed,
    #[error("signature does not match the payload and key (modified, or signed by another key)")]
    BadSignature,
    #[error("public key must be 32 bytes of base64")]
    BadKey,
}

pub fn encode_pubkey(k: &VerifyingKey) -> String {
    format!("{}\n", STANDARD.encode(k.as_bytes()))
}

pub fn decode_pubkey(text: &str) -> Result<VerifyingKey, EnvelopeError> {
    let b = STANDARD
        .decode(text.trim())
        .map_err(|_| EnvelopeError::BadKey)?;
    let b: [u8; 32] = b.try_into().map_err(|_| EnvelopeError::BadKey)?;
    VerifyingKey::from_bytes(&b).map_err(|_| EnvelopeError::BadKey)
}

/// Appends `"sig"` to a JSON object's text. `body` must end with `}` (a serialized object).
pub fn attach_signature(body: &[u8], sig: &Signature) -> Vec<u8> {
    let b64 = STANDARD.encode(sig.to_bytes());
    let stem = body.strip_suffix(b"}").unwrap_or(body);
    let mut out = Vec::with_capacity(stem.len() + SIG_MARK.len() + b64.len() + 2);
    out.extend_from_slice(stem);
    // an empty object `{}` has no member to follow
    if stem.ends_with(b"{") {
        out.extend_from_slice(SIG_FIRST);
    } else {
        out.extend_from_slice(SIG_MARK);
    }
    out.extend_from_slice(b64.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

pub fn sign(body: &[u8], key: &SigningKey) -> Vec<u8> {
    attach_signature(body, &key.sign(body))
}

/// Splits a signed payload into the signed body and the base64 signature text.
pub fn split_signed(payload: &[u8]) -> Option<(Vec<u8>, String)> {
    let p = payload.trim_ascii_end();
    let rest = p.strip_suffix(b"\"}")?;
    let (body_end, sig_start) = match rest.windows(SIG_MARK.len()).rposition(|w| w == SIG_MARK) {
        Some(at) => (at, at + SIG_MARK.len()),
        // `{"sig":"…"}`: the signed body was the empty object
        None if rest.starts_with(b"{\"sig\":\"") => (1, 8),
        None => return None,
    };
    let sig = rest.get(sig_start..)?;
    if sig.contains(&b'"') {
        return None;
    }
    let mut body = rest.get(..body_end)?.to_vec();
    body.push(b'}');
    Some((body, String::from_utf8(sig.to_vec()).ok()?))
}

pub fn verify(payload: &[u8], key: &VerifyingKey) -> Result<(), EnvelopeError> {
    let (body, sig) = split_signed(payload).ok_or(EnvelopeError::Unsigned)?;
    let sig = STANDARD
        .decode(sig)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(EnvelopeError::Malformed)?;
    key.verify(&body, &sig)
        .map_err(|_| EnvelopeError::BadSignature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let k = SigningKey::from_bytes(&[5; 32]);
        let body = br#"{"v":1,"device":"sim:a","value":21.5}"#;
        let p = sign(body, &k);
        let text = String::from_utf8(p.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"device":"sim:a","value":21.5,"sig":""#));
        // still plain JSON for consumers
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["value"], 21.5);
        assert_eq!(verify(&p, &k.verifying_key()), Ok(()));
        let modified = text.replace("21.5", "31.5");
        assert_eq!(
            verify(modified.as_bytes(), &k.verifying_key()),
            Err(EnvelopeError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key();
        assert_eq!(verify(&p, &other), Err(EnvelopeError::BadSignature));
        assert_eq!(
            verify(body, &k.verifying_key()),
            Err(EnvelopeError::Unsigned)
        );
        assert_eq!(
            verify(br#"{"a":1,"sig":"!!"}"#, &k.verifying_key()),
            Err(EnvelopeError::Malformed)
        );
        // a trailing newline (as from a shell) is tolerated
        let mut nl = p.clone();
        nl.push(b'\n');
        assert_eq!(verify(&nl, &k.verifying_key()), Ok(()));
    }

    #[test]
    fn a_sig_inside_a_value_cannot_confuse_the_split() {
        let k = SigningKey::from_bytes(&[5; 32]);
        let body = br#"{"text":",\"sig\":\"x","n":1}"#;
        let p = sign(body, &k);
        assert_eq!(verify(&p, &k.verifying_key()), Ok(()));
        let empty = sign(b"{}", &k);
        assert!(serde_json::from_slice::<serde_json::Value>(&empty).is_ok());
        assert_eq!(verify(&empty, &k.verifying_key()), Ok(()));
    }

    #[test]
    fn pubkey_text_round_trips() {
        let k = SigningKey::from_bytes(&[5; 32]).verifying_key();
        assert_eq!(decode_pubkey(&encode_pubkey(&k)).unwrap(), k);
        assert!(decode_pubkey("abc").is_err());
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Payloads arrive from brokers and files: splitting and verifying any bytes must not panic,
        /// and nothing but a genuine signature verifies.
        #[test]
        fn arbitrary_payloads_never_panic_or_verify(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let k = SigningKey::from_bytes(&[5; 32]);
            let _ = split_signed(&b);
            prop_assert!(verify(&b, &k.verifying_key()).is_err());
        }

        #[test]
        fn any_json_object_signs_and_verifies(m in proptest::collection::btree_map("[a-z]{1,8}", ".{0,20}", 0..6)) {
            let k = SigningKey::from_bytes(&[5; 32]);
            let body = serde_json::to_vec(&m).unwrap();
            let p = sign(&body, &k);
            prop_assert_eq!(verify(&p, &k.verifying_key()), Ok(()));
            let (b, _) = split_signed(&p).unwrap();
            prop_assert_eq!(b, body);
        }
    }
}
