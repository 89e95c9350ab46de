//! The network the coordinator forms once and resumes ever after: PAN id, extended PAN id, channel
//! and network key, generated on first start and kept in the adapter's sealed state store (the key
//! is never logged, and `Debug` hides it).

use rand::RngCore;
use serde::{Deserialize, Serialize};
use warden_core::StateStore;

use crate::coordinator::NetworkParams;

const KEY: &str = "network";
/// The IEEE address of the coordinator stick the network lives on.
const COORDINATOR: &str = "coordinator";

#[derive(Serialize, Deserialize)]
struct Stored {
    pan_id: u16,
    extended_pan_id: String,
    channel: u8,
    network_key: String,
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

/// The stored network, if there is one and it is readable.
pub fn load(store: &dyn StateStore) -> Result<Option<NetworkParams>, String> {
    let Some(raw) = store.get(KEY).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let s: Stored = serde_json::from_slice(&raw).map_err(|e| format!("stored network: {e}"))?;
    let p = NetworkParams {
        pan_id: s.pan_id,
        extended_pan_id: hex_array(&s.extended_pan_id).ok_or("stored extended PAN id")?,
        channel: s.channel,
        network_key: hex_array(&s.network_key).ok_or("stored network key")?,
    };
    Ok(Some(p))
}

/// Fresh random parameters on `channel`: a PAN id outside the reserved 0x0000 and 0xFFFF, a random
/// extended PAN id and a random 128-bit network key.
pub fn generate(channel: u8) -> NetworkParams {
    let mut rng = rand::rngs::OsRng;
    let mut pan = [0u8; 2];
    let pan_id = loop {
        rng.fill_bytes(&mut pan);
        let p = u16::from_le_bytes(pan);
        if p != 0 && p < 0xfff0 {
            break p;
        }
    };
    let mut extended_pan_id = [0u8; 8];
    rng.fill_bytes(&mut extended_pan_id);
    let mut network_key = [0u8; 16];
    rng.fill_bytes(&mut network_key);
    NetworkParams {
        pan_id,
        extended_pan_id,
        channel,
        network_key,
    }
}

pub fn save(store: &dyn StateStore, p: &NetworkParams) -> Result<(), String> {
    let s = Stored {
        pan_id: p.pan_id,
        extended_pan_id: hex::encode(p.extended_pan_id),
        channel: p.channel,
        network_key: hex::encode(p.network_key),
    };
    let b = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
    store.put(KEY, &b).map_err(|e| e.to_string())
}

/// The stored network, or a new one saved before it is used (so a crash between forming and
/// saving cannot lose the key of a network devices have joined).
pub fn load_or_create(
    store: &dyn StateStore,
    channel: u8,
) -> Result<(NetworkParams, bool), String> {
    if let Some(p) = load(store)? {
        return Ok((p, false));
    }
    let p = generate(channel);
    save(store, &p)?;
    Ok((p, true))
}

/// An IEEE address as config and audit records write it: 16 hex digits (colons allowed).
pub fn parse_coordinator(s: &str) -> Option<u64> {
    let h: String = s.chars().filter(|c| *c != ':').collect();
    (h.len() == 16)
        .then(|| u64::from_str_radix(&h, 16).ok())
        .flatten()
}

/// Whether the stick on the port may carry the stored network.
#[derive(Debug, PartialEq, Eq)]
pub enum Coordinator {
    /// The stick the network lives on (or the first one seen, now recorded).
    Same,
    /// A different stick, accepted by the operator's `accept_coordinator`: now recorded.
    Replaced { previous: u64 },
    /// A different stick the operator has not accepted: the network must not be moved to it.
    Different { expected: u64 },
}

/// Checks the coordinator's IEEE address against the one the network lives on, recording it the
/// first time and when the operator accepted a replacement.
pub fn check_coordinator(
    store: &dyn StateStore,
    ieee: u64,
    accepted: Option<&str>,
) -> Result<Coordinator, String> {
    let stored = match store.get(COORDINATOR).map_err(|e| e.to_string())? {
        None => None,
        Some(raw) => Some(
            std::str::from_utf8(&raw)
                .ok()
                .and_then(parse_coordinator)
                .ok_or("stored coordinator address is unreadable")?,
        ),
    };
    let record = |v: u64| {
        store
            .put(COORDINATOR, format!("{v:016x}").as_bytes())
            .map_err(|e| e.to_string())
    };
    match stored {
        Some(s) if s == ieee => Ok(Coordinator::Same),
        None => {
            record(ieee)?;
            Ok(Coordinator::Same)
        }
        Some(s) if accepted.and_then(parse_coordinator) == Some(ieee) => {
            record(ieee)?;
            Ok(Coordinator::Replaced { previous: s })
        }
        Some(s) => Ok(Coordinator::Different { expected: s }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::testing::MemoryState;

    #[test]
    fn the_network_is_created_once_and_then_resumed() {
        let s = MemoryState::default();
        let (a, new) = load_or_create(&s, 20).unwrap();
        assert!(new);
        assert_eq!(a.channel, 20);
        assert!(a.pan_id != 0 && a.pan_id < 0xfff0);
        let (b, new) = load_or_create(&s, 11).unwrap();
        assert!(!new);
        assert_eq!(a, b, "same network, whatever the channel setting says now");
        let shown = format!("{b:?}");
        assert!(shown.contains("<sealed>"));
        assert!(!shown.contains(&hex::encode(b.network_key)));
        assert!(!shown.contains(&format!("{:?}", b.network_key)));
    }

    #[test]
    fn a_different_coordinator_is_refused_until_the_operator_accepts_it() {
        let s = MemoryState::default();
        assert_eq!(check_coordinator(&s, 1, None), Ok(Coordinator::Same));
        assert_eq!(check_coordinator(&s, 1, None), Ok(Coordinator::Same));
        assert_eq!(
            check_coordinator(&s, 2, None),
            Ok(Coordinator::Different { expected: 1 })
        );
        // accepting some other stick does not accept this one
        assert_eq!(
            check_coordinator(&s, 2, Some("0000000000000003")),
            Ok(Coordinator::Different { expected: 1 })
        );
        assert_eq!(
            check_coordinator(&s, 2, Some("00:00:00:00:00:00:00:02")),
            Ok(Coordinator::Replaced { previous: 1 })
        );
        // the replacement is now the network's stick; the old one is the stranger
        assert_eq!(check_coordinator(&s, 2, None), Ok(Coordinator::Same));
        assert_eq!(
            check_coordinator(&s, 1, None),
            Ok(Coordinator::Different { expected: 2 })
        );
        s.put(COORDINATOR, b"zz").unwrap();
        assert!(check_coordinator(&s, 1, None).is_err());
        assert_eq!(
            parse_coordinator("00124b0000000001"),
            Some(0x0012_4b00_0000_0001)
        );
        assert_eq!(parse_coordinator("00124b00000001"), None);
    }

    #[test]
    fn a_corrupt_stored_network_is_an_error_not_a_new_key() {
        let s = MemoryState::default();
        s.put(KEY, b"{not json").unwrap();
        assert!(load_or_create(&s, 15).is_err());
    }
}
