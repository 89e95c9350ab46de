//! Where commands come from besides the API: MQTT publishes on the embedded broker, signed commands
//! from an external broker, and the demo's periodic commands. Each is parsed here and handed to the
//! pipeline's downlink path; nothing here decides.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::{mpsc, watch};
use warden_core::{Command, DeviceId, OperationRequest, Point, Value};

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::northbound::broker::InboundPublish;
use crate::northbound::envelope;
use crate::northbound::mqtt::ExternalCommand;
use crate::operations::Operations;
use crate::pipeline::authenticate::CommandSource;
use crate::pipeline::{CommandRequest, Control};

/// Command JSON: `{"id": "...", "command": "name", "args": {"name": value, ...}}`; `id` optional.
pub fn parse_command(payload: &[u8]) -> Result<(Option<String>, Command), String> {
    let body = envelope::split_signed(payload)
        .map(|(b, _)| b)
        .unwrap_or_else(|| payload.to_vec());
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("command is not JSON: {e}"))?;
    let name = v
        .get("command")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .ok_or("command needs a `command` name")?;
    let mut args = Vec::new();
    if let Some(a) = v.get("args") {
        let obj = a.as_object().ok_or("`args` must be an object")?;
        for (k, val) in obj {
            let value: Value =
                serde_json::from_value(val.clone()).map_err(|e| format!("argument `{k}`: {e}"))?;
            args.push(Point::new(k.clone(), value));
        }
    }
    let id = v.get("id").and_then(|i| i.as_str()).map(str::to_owned);
    Ok((
        id,
        Command {
            name: name.to_owned(),
            args,
        },
    ))
}

pub fn new_command_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("c-{}", hex::encode(b))
}

fn device_from_topic(prefix: &str, topic: &str) -> Option<DeviceId> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix("/devices/")?;
    rest.strip_suffix("/cmd")?.parse().ok()
}

async fn submit(
    control: &mpsc::Sender<Control>,
    audit: &AuditSink,
    prefix: &str,
    topic: &str,
    payload: &[u8],
    source: CommandSource,
    actor: &str,
) {
    let Some(device) = device_from_topic(prefix, topic) else {
        audit.record(
            AuditEntry::new(
                Category::Security,
                "command",
                actor,
                "command on a malformed topic",
            )
            .decision("builtin:identify", "deny")
            .detail(serde_json::json!({ "topic": topic })),
        );
        return;
    };
    match parse_command(payload) {
        Ok((id, command)) => {
            let req = CommandRequest {
                command_id: id.unwrap_or_else(new_command_id),
                device,
                command,
                source,
                reply: None,
            };
            let _ = control.send(Control::Command(req)).await;
        }
        Err(e) => audit.record(
            AuditEntry::new(Category::Decision, "command", actor, e)
                .device(&device)
                .decision("builtin:authenticate", "deny"),
        ),
    }
}

/// Receives the next item unless shutdown comes first (command sources must let go of the pipeline's
/// control channel at shutdown, or the pipeline would wait for them forever).
pub(super) async fn recv_or_stop<T>(
    rx: &mut mpsc::Receiver<T>,
    stop: &mut watch::Receiver<bool>,
) -> Option<T> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        v = rx.recv() => v,
        _ = stop.wait_for(|v| *v) => None,
    }
}

pub(super) async fn broker_commands(
    mut rx: mpsc::Receiver<InboundPublish>,
    control: mpsc::Sender<Control>,
    prefix: String,
    audit: AuditSink,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(p) = recv_or_stop(&mut rx, &mut stop).await {
        let actor = format!("mqtt:{}", p.principal);
        submit(
            &control,
            &audit,
            &prefix,
            &p.topic,
            &p.payload,
            CommandSource::BrokerClient(p.principal.clone()),
            &actor,
        )
        .await;
    }
}

/// `<prefix>/adapters/<name>/op` on the embedded broker: an operator's join window, scan or
/// removal, with the authenticated MQTT user as principal. Malformed requests are audited.
pub(super) async fn adapter_operations(
    mut rx: mpsc::Receiver<InboundPublish>,
    operations: Arc<Operations>,
    prefix: String,
    audit: AuditSink,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(p) = recv_or_stop(&mut rx, &mut stop).await {
        let actor = format!("mqtt:{}", p.principal);
        let adapter = p
            .topic
            .strip_prefix(prefix.as_str())
            .and_then(|t| t.strip_prefix("/adapters/"))
            .and_then(|t| t.strip_suffix("/op"))
            .filter(|a| !a.is_empty() && !a.contains('/'));
        let parsed = serde_json::from_slice::<OperationRequest>(&p.payload);
        match (adapter, parsed) {
            (Some(a), Ok(req)) => {
                // refusals are audited by `start` itself
                let _ = operations.start(a, req, &actor);
            }
            (a, r) => audit.record(
                AuditEntry::new(
                    Category::Operator,
                    "adapter-operation",
                    &actor,
                    match r {
                        Err(e) => format!("malformed operation request: {e}"),
                        Ok(_) => "operation on a malformed topic".into(),
                    },
                )
                .decision("builtin:operations", "deny")
                .detail(serde_json::json!({ "topic": p.topic, "adapter": a })),
            ),
        }
    }
}

pub(super) async fn external_commands(
    mut rx: mpsc::Receiver<ExternalCommand>,
    control: mpsc::Sender<Control>,
    prefix: String,
    audit: AuditSink,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(c) = recv_or_stop(&mut rx, &mut stop).await {
        let source = CommandSource::ExternalBroker {
            payload: c.payload.clone(),
        };
        submit(
            &control,
            &audit,
            &prefix,
            &c.topic,
            &c.payload,
            source,
            "external-broker",
        )
        .await;
    }
}

pub(super) async fn periodic_command(
    c: crate::config::SimCommandConfig,
    control: mpsc::Sender<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(device) = c.device.parse::<DeviceId>() else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_secs(c.every_s.max(1)));
    every.tick().await;
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        i += 1;
        let args = c
            .value
            .map(|v| vec![Point::new("value", Value::Float(v + (i % 3) as f64 * 0.5))])
            .unwrap_or_default();
        let req = CommandRequest {
            command_id: new_command_id(),
            device: device.clone(),
            command: Command {
                name: c.command.clone(),
                args,
            },
            source: CommandSource::Internal(c.principal.clone()),
            reply: None,
        };
        if control.send(Control::Command(req)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn commands_parse_from_json() {
        let (id, c) =
            parse_command(br#"{"id":"c1","command":"set_setpoint","args":{"value":22.5}}"#)
                .unwrap();
        assert_eq!(id.as_deref(), Some("c1"));
        assert_eq!(c.name, "set_setpoint");
        assert_eq!(c.args[0].value, Value::Float(22.5));
        assert!(parse_command(b"not json").is_err());
        assert!(parse_command(br#"{"args":{}}"#).is_err());
        assert!(parse_command(br#"{"command":"x","args":[1]}"#).is_err());
        assert_eq!(
            device_from_topic("warden", "warden/devices/sim:a/cmd")
                .unwrap()
                .to_string(),
            "sim:a"
        );
        assert!(device_from_topic("warden", "warden/devices/a/b/cmd").is_none());
        assert!(device_from_topic("warden", "other/devices/sim:a/cmd").is_none());
    }

    proptest::proptest! {
        /// Command payloads come from MQTT clients: any bytes give a command or an error, never a panic.
        #[test]
        fn arbitrary_command_payloads_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_command(&b);
        }

        #[test]
        fn arbitrary_command_topics_never_panic(t in ".{0,80}") {
            let _ = device_from_topic("warden", &t);
        }
    }
}
