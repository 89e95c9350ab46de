//! The northbound side of start-up: the embedded broker with its users and command topics, or the
//! client settings for an external broker over mutual TLS, and the tasks that turn inbound MQTT
//! publishes into pipeline commands.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};

use super::OPERATOR_PASSWORD_FILE;
use super::broker_events::broker_events;
use super::setup::{random_secret, read_or_create_secret};
use super::sources::{adapter_operations, broker_commands, external_commands};
use crate::audit::AuditSink;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::northbound::broker::{
    Broker, BrokerConfig, BrokerEvent, BrokerHandle, BrokerUser, InboundPublish,
};
use crate::northbound::mqtt::{self, BrokerUrl, ClientSettings, ExternalCommand};
use crate::operations::Operations;
use crate::pipeline::Control;

/// Starts the embedded broker (or prepares the external one's TLS settings) and the command tasks.
/// Returns the publisher's settings, the broker to shut down last, and where the publisher hands
/// commands received from an external broker.
#[allow(clippy::too_many_arguments)] // start-up wiring: each is a distinct shared service
pub async fn start(
    cfg: &Config,
    data_dir: &Path,
    control: &mpsc::Sender<Control>,
    operations: &Arc<Operations>,
    audit: &AuditSink,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
    failures: &Arc<crate::login_failures::LoginFailures>,
) -> anyhow::Result<(
    ClientSettings,
    Option<BrokerHandle>,
    Option<mpsc::Sender<ExternalCommand>>,
)> {
    let mut broker_handle = None;
    let settings = if cfg.mqtt.broker == "embedded" {
        let (cmd_tx, cmd_rx) = mpsc::channel::<InboundPublish>(256);
        let (op_tx, op_rx) = mpsc::channel::<InboundPublish>(16);
        let (bev_tx, bev_rx) = mpsc::channel::<BrokerEvent>(1024);
        let internal_pw = random_secret();
        let mut users = vec![
            BrokerUser {
                name: "warden".into(),
                password: internal_pw.clone().into_bytes(),
                publish: super::ha::gateway_publish(cfg),
                subscribe: super::ha::gateway_subscribe(cfg),
            },
            BrokerUser {
                name: "operator".into(),
                password: read_or_create_secret(&data_dir.join(OPERATOR_PASSWORD_FILE))?
                    .into_bytes(),
                publish: vec![
                    format!("{}/devices/+/cmd", cfg.mqtt.topic_prefix),
                    format!("{}/adapters/+/op", cfg.mqtt.topic_prefix),
                ],
                subscribe: vec![format!("{}/#", cfg.mqtt.topic_prefix)],
            },
        ];
        users.extend(super::ha::broker_user(cfg, data_dir)?);
        for u in &cfg.mqtt.embedded.users {
            let pw = crate::files::read_secret(
                &u.password_file,
                crate::files::KEY_MAX,
                "mqtt.embedded.users password_file",
            )
            .map_err(|e| anyhow::anyhow!("mqtt.embedded.users `{}`: {e}", u.name))?;
            let pw = String::from_utf8(pw).map_err(|_| {
                anyhow::anyhow!(
                    "mqtt.embedded.users `{}`: password_file is not UTF-8",
                    u.name
                )
            })?;
            users.push(BrokerUser {
                name: u.name.clone(),
                password: pw.trim().as_bytes().to_vec(),
                publish: u.publish.clone(),
                subscribe: u.subscribe.clone(),
            });
        }
        let h = Broker::start(
            BrokerConfig {
                listen: cfg.mqtt.embedded.listen,
                users,
                max_packet_size: 256 * 1024,
                max_connections: cfg.mqtt.embedded.max_connections,
                max_connections_per_source: cfg.mqtt.embedded.max_connections_per_source,
                outbound_queue: 1024,
            },
            vec![
                (format!("{}/devices/+/cmd", cfg.mqtt.topic_prefix), cmd_tx),
                (format!("{}/adapters/+/op", cfg.mqtt.topic_prefix), op_tx),
            ],
            bev_tx,
        )
        .await
        .with_context(|| {
            format!(
                "cannot start the embedded MQTT broker on {}",
                cfg.mqtt.embedded.listen
            )
        })?;
        tracing::info!(addr = %h.local_addr(), "embedded MQTT broker listening (operator password in {})",
            data_dir.join(OPERATOR_PASSWORD_FILE).display());
        let port = h.local_addr().port();
        broker_handle = Some(h);
        tokio::spawn(adapter_operations(
            op_rx,
            operations.clone(),
            cfg.mqtt.topic_prefix.clone(),
            audit.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(broker_commands(
            cmd_rx,
            control.clone(),
            cfg.mqtt.topic_prefix.clone(),
            audit.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(broker_events(
            bev_rx,
            audit.clone(),
            metrics.clone(),
            failures.clone(),
        ));
        ClientSettings {
            host: "127.0.0.1".into(),
            port,
            client_id: cfg.mqtt.client_id.clone(),
            credentials: Some(("warden".into(), internal_pw)),
            tls: None,
            prefix: cfg.mqtt.topic_prefix.clone(),
            receive_commands: false,
            max_inflight: cfg.mqtt.max_inflight,
        }
    } else {
        let url = BrokerUrl::parse(&cfg.mqtt.broker).map_err(anyhow::Error::msg)?;
        let (ca, cert, key) = match (
            &cfg.mqtt.tls.ca_file,
            &cfg.mqtt.tls.cert_file,
            &cfg.mqtt.tls.key_file,
        ) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => bail!(
                "mqtt.tls.ca_file, cert_file and key_file are required with an external broker"
            ),
        };
        let tls = mqtt::tls_config(ca, cert, key).map_err(anyhow::Error::msg)?;
        ClientSettings {
            host: url.host,
            port: url.port,
            client_id: cfg.mqtt.client_id.clone(),
            credentials: None,
            tls: Some(Arc::new(tls)),
            prefix: cfg.mqtt.topic_prefix.clone(),
            receive_commands: true,
            max_inflight: cfg.mqtt.max_inflight,
        }
    };
    let (ext_tx, ext_rx) = mpsc::channel::<ExternalCommand>(256);
    if settings.receive_commands {
        tokio::spawn(external_commands(
            ext_rx,
            control.clone(),
            cfg.mqtt.topic_prefix.clone(),
            audit.clone(),
            shutdown.clone(),
        ));
    }
    Ok((settings, broker_handle, Some(ext_tx)))
}
