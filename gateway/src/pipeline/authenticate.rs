//! Stage 2, authenticate.
//!
//! Uplink: the adapter has verified what its protocol can (MIC, counter, certificate) and says so in
//! the message's assurance and freshness. This stage holds it to what the device's profile requires
//! and refuses downgrades: a device once seen at `shared-key` that now arrives with `none` is denied.
//!
//! Downlink: who is commanding? A principal comes from an authenticated broker client, an API token,
//! or a command signed by a configured controller key (the only way through an external broker).

use std::sync::atomic::Ordering;

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use warden_core::{Assurance, Decision, Message};

use crate::pipeline::decide::Profile;
use crate::registry::Stats;

fn rank(a: Assurance) -> u64 {
    a as u64 + 1
}

pub fn uplink(msg: &Message, profile: Option<&Profile>, stats: &Stats) -> Result<(), Decision> {
    let best = stats.best_assurance.load(Ordering::Relaxed);
    if rank(msg.assurance) < best {
        return Err(Decision::deny(
            "builtin:authenticate",
            format!(
                "assurance downgrade: `{}` from a device seen with stronger assurance",
                msg.assurance
            ),
        ));
    }
    if let Some(p) = profile {
        if msg.assurance < p.min_assurance {
            return Err(Decision::deny(
                "builtin:authenticate",
                format!(
                    "assurance `{}` is below the profile's minimum `{}`",
                    msg.assurance, p.min_assurance
                ),
            ));
        }
        if p.require_fresh && !msg.fresh {
            return Err(Decision::deny(
                "builtin:authenticate",
                "message is not replay-checked and the profile requires freshness",
            ));
        }
        if !accepts(&p.security, msg.security.as_deref()) {
            return Err(Decision::deny(
                "builtin:authenticate",
                format!(
                    "security `{}` is not one the profile accepts ({})",
                    msg.security.as_deref().unwrap_or("none"),
                    p.security.join(", ")
                ),
            ));
        }
    }
    if rank(msg.assurance) > best {
        stats
            .best_assurance
            .store(rank(msg.assurance), Ordering::Relaxed);
    }
    if let Ok(mut last) = stats.security.lock()
        && *last != msg.security
    {
        last.clone_from(&msg.security);
    }
    Ok(())
}

/// Whether a profile's security list (empty: any) accepts a label.
fn accepts(list: &[String], label: Option<&str>) -> bool {
    list.is_empty() || label.is_some_and(|l| list.iter().any(|a| a == l))
}

/// A command to a device whose profile names security labels: allowed only once the device was
/// heard under one of them (the adapter then sends it only under one of them, see
/// `Downlink::security`). A profile without labels never denies here.
pub fn downlink(p: &Profile, last: Option<&str>) -> Result<(), Decision> {
    if accepts(&p.security, last) {
        return Ok(());
    }
    Err(Decision::deny(
        "builtin:authenticate",
        match last {
            Some(l) => format!(
                "the device was last heard under security `{l}`, not one the profile accepts ({})",
                p.security.join(", ")
            ),
            None => format!(
                "the device has not been heard under a security the profile accepts ({})",
                p.security.join(", ")
            ),
        },
    ))
}

/// How a command reached the gateway, before its commander is authenticated.
#[derive(Debug, Clone)]
pub enum CommandSource {
    /// Published on the embedded broker by an authenticated client.
    BrokerClient(String),
    /// Posted to the management API by a named operator (principal `operator:<name>`).
    Operator {
        name: String,
        role: crate::operators::Role,
    },
    /// Published on an external broker: must carry a controller signature over the payload.
    ExternalBroker { payload: Vec<u8> },
    /// Issued by the gateway itself (demo mode's periodic commands).
    Internal(String),
}

/// The `role:<name>` forms of a zone's `commanders` this source satisfies besides its principal.
pub fn commander_roles(source: &CommandSource) -> Vec<String> {
    match source {
        CommandSource::Operator { role, .. } => role.commander_forms(),
        _ => Vec::new(),
    }
}

/// A configured controller key.
pub struct Controller {
    pub name: String,
    pub key: VerifyingKey,
}

/// Returns the principal, or a deny naming what failed.
pub fn commander(source: &CommandSource, controllers: &[Controller]) -> Result<String, Decision> {
    match source {
        CommandSource::BrokerClient(user) => Ok(format!("mqtt:{user}")),
        CommandSource::Operator { name, .. } => Ok(format!("operator:{name}")),
        CommandSource::Internal(who) => Ok(format!("internal:{who}")),
        CommandSource::ExternalBroker { payload } => {
            let deny = |r: &str| Decision::deny("builtin:authenticate", r.to_owned());
            let (body, sig) = crate::northbound::envelope::split_signed(payload)
                .ok_or_else(|| deny("command is not signed by a controller key"))?;
            let sig = base64::engine::general_purpose::STANDARD
                .decode(sig)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok())
                .ok_or_else(|| deny("command signature is malformed"))?;
            let claimed: Option<String> = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("principal")
                        .and_then(|p| p.as_str())
                        .map(str::to_owned)
                });
            controllers
                .iter()
                .filter(|c| claimed.as_deref().is_none_or(|p| p == c.name))
                .find(|c| c.key.verify(&body, &sig).is_ok())
                .map(|c| format!("controller:{}", c.name))
                .ok_or_else(|| deny("command signature does not verify with any controller key"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::{DeviceId, Point, Value};

    fn msg(a: Assurance, fresh: bool) -> Message {
        let mut m = Message::telemetry(
            DeviceId::new("sim", "a").unwrap(),
            vec![Point::new("t", Value::Float(1.0))],
        );
        m.assurance = a;
        m.fresh = fresh;
        m
    }

    #[test]
    fn floors_freshness_and_downgrades() {
        let p = Profile {
            min_assurance: Assurance::SharedKey,
            require_fresh: true,
            ..Profile::default()
        };
        let s = Stats::default();
        assert!(uplink(&msg(Assurance::None, true), Some(&p), &s).is_err());
        assert!(uplink(&msg(Assurance::SharedKey, false), Some(&p), &s).is_err());
        assert!(uplink(&msg(Assurance::SharedKey, true), Some(&p), &s).is_ok());
        let open = Profile::default();
        let e = uplink(&msg(Assurance::None, false), Some(&open), &s).unwrap_err();
        assert!(e.reason.contains("downgrade"), "{}", e.reason);
        assert!(uplink(&msg(Assurance::Certificate, false), Some(&open), &s).is_ok());
        assert!(uplink(&msg(Assurance::SharedKey, true), Some(&open), &s).is_err());
    }

    #[test]
    fn security_labels_gate_uplinks_and_commands() {
        let p = Profile {
            security: vec!["zwave-s2-access-control".into()],
            ..Profile::default()
        };
        let s = Stats::default();
        let mut m = msg(Assurance::SharedKey, true);
        let down = |p: &Profile| downlink(p, s.security().as_deref());
        // nothing heard yet: commands wait for an uplink under an accepted label
        let e = down(&p).unwrap_err();
        assert!(e.reason.contains("has not been heard"), "{}", e.reason);
        m.security = Some("zwave-s0".into());
        let e = uplink(&m, Some(&p), &s).unwrap_err();
        assert!(e.reason.contains("`zwave-s0`"), "{}", e.reason);
        m.security = None;
        let e = uplink(&m, Some(&p), &s).unwrap_err();
        assert!(e.reason.contains("`none`"), "{}", e.reason);
        assert!(down(&p).is_err());
        m.security = Some("zwave-s2-access-control".into());
        assert!(uplink(&m, Some(&p), &s).is_ok());
        assert!(down(&p).is_ok());
        // a profile without labels takes anything and records the label for plugins
        let open = Profile::default();
        m.security = Some("zwave-s2-authenticated".into());
        assert!(uplink(&m, Some(&open), &s).is_ok());
        assert_eq!(s.security().as_deref(), Some("zwave-s2-authenticated"));
        assert!(down(&open).is_ok());
        let e = down(&p).unwrap_err();
        assert!(
            e.reason
                .contains("last heard under security `zwave-s2-authenticated`"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn external_commands_need_a_controller_signature() {
        use ed25519_dalek::{Signer, SigningKey};
        let sk = SigningKey::from_bytes(&[9; 32]);
        let ctl = vec![Controller {
            name: "scada".into(),
            key: sk.verifying_key(),
        }];
        let body = br#"{"id":"c1","command":"turn_on","principal":"scada"}"#;
        let signed = crate::northbound::envelope::attach_signature(body, &sk.sign(body));
        assert_eq!(
            commander(
                &CommandSource::ExternalBroker {
                    payload: signed.clone()
                },
                &ctl
            )
            .unwrap(),
            "controller:scada"
        );
        let mut forged = signed.clone();
        forged[12] ^= 1;
        assert!(commander(&CommandSource::ExternalBroker { payload: forged }, &ctl).is_err());
        assert!(
            commander(
                &CommandSource::ExternalBroker {
                    payload: body.to_vec()
                },
                &ctl
            )
            .is_err()
        );
        let other = SigningKey::from_bytes(&[1; 32]);
        let bad = crate::northbound::envelope::attach_signature(body, &other.sign(body));
        assert!(commander(&CommandSource::ExternalBroker { payload: bad }, &ctl).is_err());
    }
}
