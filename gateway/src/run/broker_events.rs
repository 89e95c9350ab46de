//! Audits what the embedded broker reports: refused logins (aggregated per source, see
//! [`crate::login_failures`]), ACL denials, slow subscribers.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::audit::{AuditEntry, AuditSink, Category};
use crate::login_failures::{Listener, LoginFailures};
use crate::metrics::Metrics;
use crate::northbound::broker::BrokerEvent;

pub(super) async fn broker_events(
    mut rx: mpsc::Receiver<BrokerEvent>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    failures: Arc<LoginFailures>,
) {
    while let Some(e) = rx.recv().await {
        match e {
            BrokerEvent::AuthFailed {
                peer,
                username,
                client_id,
            } => {
                failures.failed(
                    Listener::Mqtt,
                    peer.ip(),
                    username.as_deref().unwrap_or("(anonymous)"),
                    "MQTT client refused: bad or missing credentials",
                    serde_json::json!({ "peer": peer.to_string(), "client_id": client_id }),
                );
            }
            BrokerEvent::AclDenied {
                username,
                action,
                topic,
            } => {
                metrics.broker_acl_denials.inc();
                audit.record(
                    AuditEntry::new(
                        Category::Security,
                        "broker-acl",
                        &username,
                        format!("{action} outside the client's allowed topics"),
                    )
                    .decision("builtin:broker", "deny")
                    .detail(serde_json::json!({ "topic": topic, "action": action })),
                );
            }
            BrokerEvent::Dropped { username, count } => {
                tracing::warn!(%username, count, "slow MQTT subscriber: messages dropped");
            }
            _ => {}
        }
    }
}
