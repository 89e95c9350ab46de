//! The gateway's MQTT client (rumqttc over rustls with the ring provider): drains the outbox in order
//! at QoS 2, deletes each message once the broker has completed it (PUBCOMP), reconnects with backoff,
//! and — with an external broker — receives commands on `<prefix>/devices/+/cmd`.
//!
//! Exactly once per message id: across broker outages the persistent session resends unfinished
//! messages with their packet ids, which the broker deduplicates. The remaining window for a duplicate
//! is a gateway *crash* between the broker receiving a message and the outbox delete; envelopes carry
//! `id` so consumers can deduplicate even then.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use crate::metrics::Metrics;

/// An external broker address. Only `mqtts://` is accepted: the northbound link is mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = match s.split_once("://") {
            Some(("mqtts", r)) => r,
            Some(("mqtt", _)) | Some(("tcp", _)) => {
                return Err(
                    "plain MQTT to an external broker is refused; use mqtts:// (mutual TLS)".into(),
                );
            }
            _ => return Err(format!("`{s}` is not mqtts://host:port")),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| format!("bad port in `{s}`"))?,
            ),
            None => (rest, 8883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("no host in `{s}`"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// Builds the mutual-TLS client configuration from PEM files.
pub fn tls_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = crate::files::read(ca, crate::files::PEM_MAX, "mqtt.tls.ca_file")
        .map_err(|e| e.to_string())?;
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("mqtt.tls.ca_file {}: {e}", ca.display()))?;
    if cas.is_empty() {
        return Err(format!("mqtt.tls.ca_file {}: no certificate", ca.display()));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| format!("mqtt.tls.ca_file {}: {e}", ca.display()))?;
    }
    let cert_pem = crate::files::read(cert, crate::files::PEM_MAX, "mqtt.tls.cert_file")
        .map_err(|e| e.to_string())?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("mqtt.tls.cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "mqtt.tls.cert_file {}: no certificate",
            cert.display()
        ));
    }
    // the key file's content is never echoed in errors
    let key_pem = crate::files::read_secret(key, crate::files::PEM_MAX, "mqtt.tls.key_file")
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!(
            "mqtt.tls.key_file {}: no readable private key",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("mqtt.tls: client certificate and key do not fit: {e}"))
}

pub struct ClientSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub prefix: String,
    /// Unfinished QoS 2 publications at once. Keep it at or below the broker's limit: mosquitto
    /// accepts 20 by default and silently drops the excess for MQTT 3.1.1 clients.
    pub max_inflight: usize,
    /// Subscribe to command topics (external broker only; the embedded broker hands commands over
    /// in-process with the publisher's authenticated name).
    pub receive_commands: bool,
}

/// A command received from an external broker: topic and raw payload (authenticated later, in the
/// pipeline's authenticate stage, by its controller signature).
pub struct ExternalCommand {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Publishes the outbox until `shutdown`. Never returns early on broker errors: it reconnects.
///
/// Messages go out at QoS 2 in a persistent session (`clean_session = false`) that this client keeps
/// across reconnects: after an outage rumqttc resends what was not completed with the same packet ids,
/// so the broker drops what it already had. An outbox row is deleted on PUBCOMP.
pub async fn run_publisher(
    s: ClientSettings,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    commands: Option<mpsc::Sender<ExternalCommand>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let status_topic = format!("{}/gateway/status", s.prefix);
    let cmd_filter = format!("{}/devices/+/cmd", s.prefix);
    let window = s.max_inflight.clamp(1, 1000);
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    opts.set_keep_alive(Duration::from_secs(15))
        .set_clean_session(false)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(window as u16 + 4)
        .set_last_will(LastWill::new(
            &status_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((u, p)) = &s.credentials {
        opts.set_credentials(u, p);
    }
    if let Some(tls) = &s.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut ev) = AsyncClient::new(opts, window * 2 + 8);
    // what this session has published, in order: (outbox row or None, packet id once assigned)
    let mut inflight: VecDeque<Slot> = VecDeque::new();
    let mut last_sent: i64 = 0;
    // Resume what a previous run left mid-handshake in this persistent session: released messages
    // get their PUBREL again, unreleased ones their PUBLISH with the same packet id (DUP), so the
    // broker completes or deduplicates them instead of taking them as new.
    let mut resuming = 0usize;
    match crate::store::off_async(|| outbox.resumable()) {
        Ok(rows) => {
            for (id, o, pkid, released) in rows {
                if released {
                    ev.pending
                        .push_back(rumqttc::Request::PubRel(rumqttc::PubRel::new(pkid)));
                } else {
                    let mut p = rumqttc::Publish::new(o.topic, QoS::ExactlyOnce, o.payload);
                    p.retain = o.retain;
                    p.pkid = pkid;
                    p.dup = true;
                    ev.pending.push_back(rumqttc::Request::Publish(p));
                }
                inflight.push_back(Slot {
                    row: Some(id),
                    pkid: Some(pkid),
                    released,
                    resumed: true,
                });
                last_sent = last_sent.max(id);
                resuming += 1;
            }
            if resuming > 0 {
                tracing::info!(messages = resuming, "resuming unfinished QoS 2 handshakes");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the outbox session state"),
    }
    let mut connected = false;
    // rows the broker completed, deleted from the outbox in batches
    let mut done: Vec<i64> = Vec::new();
    let mut flush_tick = tokio::time::interval(Duration::from_millis(20));
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            drain(
                &client,
                &mut ev,
                &outbox,
                &metrics,
                &mut inflight,
                &mut done,
                &status_topic,
                connected,
            )
            .await;
            return;
        }
        // new messages wait until resumed handshakes are done, so packet ids cannot collide
        if resuming > 0 {
            resuming = inflight.iter().filter(|e| e.resumed).count();
        }
        if connected && resuming == 0 {
            let room = window.saturating_sub(inflight.len());
            if room > 0 {
                match crate::store::off_async(|| outbox.fetch_after(last_sent, room)) {
                    Ok(rows) => {
                        for (id, o) in rows {
                            if client
                                .try_publish(o.topic, QoS::ExactlyOnce, o.retain, o.payload)
                                .is_err()
                            {
                                break;
                            }
                            inflight.push_back(Slot {
                                row: Some(id),
                                pkid: None,
                                released: false,
                                resumed: false,
                            });
                            last_sent = id;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "outbox read failed"),
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    drain(&client, &mut ev, &outbox, &metrics, &mut inflight, &mut done, &status_topic, connected).await;
                    return;
                }
            }
            _ = outbox.notify.notified(), if connected => {}
            _ = flush_tick.tick(), if !done.is_empty() => flush_done(&outbox, &mut done),
            r = ev.poll() => match r {
                Ok(Event::Incoming(Packet::ConnAck(ca))) => {
                    tracing::info!(host = %s.host, port = s.port, session_present = ca.session_present,
                        "connected to MQTT broker");
                    connected = true;
                    backoff = Duration::from_millis(200);
                    metrics.broker_connected.set(1);
                    if client.try_publish(&status_topic, QoS::AtLeastOnce, true, "online").is_ok() {
                        inflight.push_back(Slot { row: None, pkid: None, released: false, resumed: false });
                    }
                    if s.receive_commands
                        && let Err(e) = client.try_subscribe(&cmd_filter, QoS::AtLeastOnce)
                    {
                        tracing::error!(error = %e, "cannot subscribe to command topics");
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => assign(&mut inflight, pkid),
                Ok(Event::Incoming(Packet::PubRec(r))) => released(&mut inflight, r.pkid),
                Ok(Event::Incoming(Packet::PubComp(c))) => ack(&mut done, &metrics, &mut inflight, c.pkid),
                Ok(Event::Incoming(Packet::PubAck(a))) => ack(&mut done, &metrics, &mut inflight, a.pkid),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(tx) = &commands {
                        let c = ExternalCommand { topic: p.topic.clone(), payload: p.payload.to_vec() };
                        if tx.try_send(c).is_err() {
                            metrics.queue_drop("commands", "queue-full", 1);
                            tracing::warn!(topic = %p.topic, "command queue full; command dropped");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(sa))) => {
                    if sa.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        tracing::error!(filter = %cmd_filter, "broker refused the command subscription");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    metrics.broker_connected.set(0);
                    tracing::warn!(error = %e, host = %s.host, port = s.port, retry_in = ?backoff,
                        queued = outbox.depth(), "MQTT broker unreachable; queueing");
                    // the next poll reconnects and resends what the session has not completed
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// On shutdown: announce `offline` and give outstanding handshakes a moment to complete, so that
/// completed messages are not sent again by the next run.
#[allow(clippy::too_many_arguments)]
async fn drain(
    client: &AsyncClient,
    ev: &mut rumqttc::EventLoop,
    outbox: &Outbox,
    metrics: &Metrics,
    inflight: &mut VecDeque<Slot>,
    done: &mut Vec<i64>,
    status_topic: &str,
    connected: bool,
) {
    if connected {
        drain_connected(client, ev, metrics, inflight, done, status_topic).await;
    }
    flush_done(outbox, done);
    let session: Vec<(i64, u16, bool)> = inflight
        .iter()
        .filter_map(|e| Some((e.row?, e.pkid?, e.released)))
        .collect();
    if let Err(e) = crate::store::off_async(|| outbox.save_session(&session)) {
        tracing::error!(error = %e, "cannot save the MQTT session state; unfinished messages will be sent again");
    }
}

async fn drain_connected(
    client: &AsyncClient,
    ev: &mut rumqttc::EventLoop,
    metrics: &Metrics,
    inflight: &mut VecDeque<Slot>,
    done: &mut Vec<i64>,
    status_topic: &str,
) {
    if client
        .try_publish(status_topic, QoS::AtLeastOnce, true, "offline")
        .is_ok()
    {
        inflight.push_back(Slot {
            row: None,
            pkid: None,
            released: false,
            resumed: false,
        });
    }
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    while inflight.iter().any(|e| e.row.is_some() || e.pkid.is_none()) {
        tokio::select! {
            _ = &mut deadline => break,
            r = ev.poll() => match r {
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => assign(inflight, pkid),
                Ok(Event::Incoming(Packet::PubRec(r))) => released(inflight, r.pkid),
                Ok(Event::Incoming(Packet::PubComp(c))) => ack(done, metrics, inflight, c.pkid),
                Ok(Event::Incoming(Packet::PubAck(a))) => ack(done, metrics, inflight, a.pkid),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let _ = client.try_disconnect();
    let flush = tokio::time::sleep(Duration::from_millis(200));
    tokio::pin!(flush);
    loop {
        tokio::select! {
            _ = &mut flush => break,
            r = ev.poll() => if r.is_err() { break },
        }
    }
}

/// A first transmission gets the next unassigned row; a retransmission (same packet id, after a
/// reconnect) is already assigned and is ignored.
fn assign(inflight: &mut VecDeque<Slot>, pkid: u16) {
    if inflight.iter().any(|e| e.pkid == Some(pkid)) {
        return;
    }
    if let Some(slot) = inflight.iter_mut().find(|e| e.pkid.is_none()) {
        slot.pkid = Some(pkid);
    }
}

fn released(inflight: &mut VecDeque<Slot>, pkid: u16) {
    if let Some(slot) = inflight.iter_mut().find(|e| e.pkid == Some(pkid)) {
        slot.released = true;
    }
}

/// One publication of this session: its outbox row (None for the gateway's own status), its packet
/// id once rumqttc assigned one, and whether the broker has it (PUBREC seen).
struct Slot {
    row: Option<i64>,
    pkid: Option<u16>,
    released: bool,
    /// Left mid-handshake by a previous run and resumed by this one.
    resumed: bool,
}

/// Completed rows are deleted from the outbox in batches (one transaction, one fsync), not one by
/// one: see [`flush_done`].
fn flush_done(outbox: &Outbox, done: &mut Vec<i64>) {
    if done.is_empty() {
        return;
    }
    if let Err(e) = crate::store::off_async(|| outbox.ack(done)) {
        tracing::error!(error = %e, "outbox delete failed (messages may be sent again)");
    }
    done.clear();
}

fn ack(done: &mut Vec<i64>, metrics: &Metrics, inflight: &mut VecDeque<Slot>, pkid: u16) {
    if let Some(pos) = inflight.iter().position(|e| e.pkid == Some(pkid))
        && let Some(slot) = inflight.remove(pos)
        && let Some(id) = slot.row
    {
        done.push(id);
        metrics.published.inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerUrl::parse("mqtts://127.0.0.1:8883"),
            Ok(BrokerUrl {
                host: "127.0.0.1".into(),
                port: 8883
            })
        );
        assert_eq!(BrokerUrl::parse("mqtts://broker").map(|b| b.port), Ok(8883));
        assert!(
            BrokerUrl::parse("mqtt://127.0.0.1:1883")
                .unwrap_err()
                .contains("refused")
        );
        assert!(BrokerUrl::parse("http://x").is_err());
        assert!(BrokerUrl::parse("mqtts://:1").is_err());
        assert!(BrokerUrl::parse("mqtts://h:99999").is_err());
    }
}
