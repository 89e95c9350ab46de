//! The start-up side of Home Assistant discovery: the broker users' topics, the `homeassistant`
//! broker user, the first announcement, and the task that answers Home Assistant's birth message
//! (`<discovery-prefix>/status` = `online`) by publishing every config again. What is published is
//! built in [`crate::northbound::ha_discovery`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::watch;

use super::setup::read_or_create_secret;
use crate::config::Config;
use crate::northbound::Northbound;
use crate::northbound::broker::BrokerUser;
use crate::northbound::ha_discovery::{Discovery, Profiles, Settings};
use crate::northbound::mqtt::ClientSettings;
use crate::registry::Registry;

/// Birth messages closer together than this are answered once, at the end of the interval (a
/// client that repeats `online` cannot make the gateway re-publish every config in a loop).
const REPUBLISH_EVERY: Duration = Duration::from_secs(5);

fn on(cfg: &Config) -> bool {
    cfg.mqtt.homeassistant.enabled
}

/// The password file of the embedded broker's Home Assistant user.
pub fn password_file(data_dir: &Path, user: &str) -> std::path::PathBuf {
    data_dir.join(format!("mqtt-{user}.password"))
}

/// What the gateway's own broker user publishes: its topic prefix, and the discovery configs.
pub(super) fn gateway_publish(cfg: &Config) -> Vec<String> {
    let mut v = vec![format!("{}/#", cfg.mqtt.topic_prefix)];
    if on(cfg) {
        v.push(format!("{}/#", cfg.mqtt.homeassistant.discovery_prefix));
    }
    v
}

/// What it subscribes to: Home Assistant's birth message.
pub(super) fn gateway_subscribe(cfg: &Config) -> Vec<String> {
    if on(cfg) {
        vec![format!(
            "{}/status",
            cfg.mqtt.homeassistant.discovery_prefix
        )]
    } else {
        Vec::new()
    }
}

/// The embedded broker's Home Assistant user, when configured: it reads the configs and the state
/// and availability topics they name, and publishes commands and its birth message.
pub(super) fn broker_user(cfg: &Config, data_dir: &Path) -> anyhow::Result<Option<BrokerUser>> {
    let ha = &cfg.mqtt.homeassistant;
    if !ha.enabled || ha.user.is_empty() {
        return Ok(None);
    }
    let p = &cfg.mqtt.topic_prefix;
    let d = &ha.discovery_prefix;
    Ok(Some(BrokerUser {
        name: ha.user.clone(),
        password: read_or_create_secret(&password_file(data_dir, &ha.user))?.into_bytes(),
        publish: vec![format!("{p}/devices/+/cmd"), format!("{d}/status")],
        subscribe: vec![
            format!("{d}/#"),
            format!("{p}/gateway/status"),
            format!("{p}/devices/+/status"),
            format!("{p}/devices/+/telemetry/+"),
            format!("{p}/devices/+/cmd/result"),
        ],
    }))
}

/// Turns discovery on: announces the gateway and every device now (active ones' configs, empty
/// ones for the rest), then answers birth messages on the broker `s` points at.
pub(super) fn start(
    cfg: &Config,
    s: &ClientSettings,
    northbound: &Arc<Northbound>,
    registry: &Arc<Registry>,
    shutdown: watch::Receiver<bool>,
) {
    if !on(cfg) {
        return;
    }
    let ha = &cfg.mqtt.homeassistant;
    let discovery = Arc::new(Discovery::new(
        Settings {
            discovery_prefix: ha.discovery_prefix.clone(),
            topic_prefix: cfg.mqtt.topic_prefix.clone(),
            gateway_id: cfg.gateway.id.clone(),
        },
        Profiles::from_config(cfg),
    ));
    northbound.set_ha_discovery(discovery);
    let n = republish(northbound, registry);
    tracing::info!(
        published = n,
        prefix = %ha.discovery_prefix,
        "Home Assistant discovery on"
    );
    let mut opts = MqttOptions::new(format!("{}-ha", s.client_id), &s.host, s.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true);
    if let Some((u, p)) = &s.credentials {
        opts.set_credentials(u, p);
    }
    if let Some(tls) = &s.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    tokio::spawn(watch_birth(
        opts,
        format!("{}/status", ha.discovery_prefix),
        northbound.clone(),
        registry.clone(),
        shutdown,
    ));
}

/// A config reload: hands the new profiles to the running discovery and publishes every device's
/// configs again (off the async runtime), so Home Assistant gains the entities a profile gained and
/// loses, by an empty retained config, those it lost. Returns what to add to the reload's audit
/// record; what only a restart applies (discovery turned on or off, another discovery prefix) is
/// said there rather than done.
pub(super) async fn reload(
    cfg: &Config,
    northbound: &Arc<Northbound>,
    registry: &Arc<Registry>,
) -> String {
    let running = northbound.ha_discovery().cloned();
    let note = reload_note(running.as_deref().map(Discovery::settings), cfg);
    let Some(d) = running.filter(|_| on(cfg)) else {
        return note;
    };
    d.set_profiles(Profiles::from_config(cfg));
    let (nb, reg) = (northbound.clone(), registry.clone());
    match tokio::task::spawn_blocking(move || republish(&nb, &reg)).await {
        Ok(n) => {
            tracing::info!(
                published = n,
                "config reloaded: Home Assistant discovery configs published again"
            );
            format!("; Home Assistant discovery configs published again ({n}){note}")
        }
        Err(e) => {
            tracing::error!(error = %e, "Home Assistant re-publish after a reload failed");
            format!("; Home Assistant discovery not re-published: {e}{note}")
        }
    }
}

/// What a reload cannot change in a running discovery (`running`: its settings, `None` when it
/// was off at start), as text for the audit record.
fn reload_note(running: Option<&Settings>, cfg: &Config) -> String {
    let ha = &cfg.mqtt.homeassistant;
    match running {
        None if on(cfg) => {
            "; Home Assistant discovery turned on: applies at the next restart".into()
        }
        None => String::new(),
        Some(_) if !on(cfg) => {
            "; Home Assistant discovery turned off: applies at the next restart (configs kept until then)".into()
        }
        Some(s) if s.discovery_prefix != ha.discovery_prefix => format!(
            "; Home Assistant discovery prefix `{}`: applies at the next restart (still `{}`)",
            ha.discovery_prefix, s.discovery_prefix
        ),
        Some(_) => String::new(),
    }
}

fn republish(northbound: &Northbound, registry: &Registry) -> usize {
    northbound.ha_republish(|| {
        registry
            .all()
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>()
    })
}

async fn watch_birth(
    opts: MqttOptions,
    topic: String,
    northbound: Arc<Northbound>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (client, mut ev) = AsyncClient::new(opts, 16);
    let mut due: Option<tokio::time::Instant> = None;
    let mut next_allowed = tokio::time::Instant::now();
    loop {
        let mut failed = false;
        let wait = due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            e = ev.poll() => match e {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Err(e) = client.try_subscribe(&topic, QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot subscribe to Home Assistant's birth message");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(a)))
                    if a.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) =>
                {
                    // an external broker's ACL may refuse it: say so rather than wait forever
                    tracing::warn!(%topic, "the broker refused the subscription to Home Assistant's birth message (its ACL?): configs are published again only at start and on a config reload");
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == topic && p.payload.trim_ascii() == b"online" {
                        due = Some(next_allowed.max(tokio::time::Instant::now()));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "Home Assistant birth watcher: connection lost; retrying");
                    failed = true;
                }
            },
            _ = tokio::time::sleep_until(wait), if due.is_some() => {
                due = None;
                next_allowed = tokio::time::Instant::now() + REPUBLISH_EVERY;
                let (nb, reg) = (northbound.clone(), registry.clone());
                match tokio::task::spawn_blocking(move || republish(&nb, &reg)).await {
                    Ok(n) => tracing::info!(published = n, "Home Assistant came online: discovery configs published again"),
                    Err(e) => tracing::error!(error = %e, "Home Assistant re-publish failed"),
                }
            }
            // the guard `wait_for` returns must not live across the re-publish's await
            () = async { let _ = shutdown.wait_for(|v| *v).await; } => {
                let _ = client.try_disconnect();
                return;
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(enabled: bool, prefix: &str) -> Config {
        let mut c = Config::default();
        c.mqtt.homeassistant.enabled = enabled;
        c.mqtt.homeassistant.discovery_prefix = prefix.into();
        c
    }

    fn running(prefix: &str) -> Settings {
        Settings {
            discovery_prefix: prefix.into(),
            topic_prefix: "warden".into(),
            gateway_id: "warden".into(),
        }
    }

    #[test]
    fn ha_reload_note_names_what_waits_for_a_restart() {
        let ha = running("homeassistant");
        // applied live: nothing to say
        assert_eq!(reload_note(Some(&ha), &cfg(true, "homeassistant")), "");
        assert_eq!(reload_note(None, &cfg(false, "homeassistant")), "");
        let on = reload_note(None, &cfg(true, "homeassistant"));
        assert!(
            on.contains("turned on") && on.contains("next restart"),
            "{on}"
        );
        let off = reload_note(Some(&ha), &cfg(false, "homeassistant"));
        assert!(
            off.contains("turned off") && off.contains("next restart"),
            "{off}"
        );
        let moved = reload_note(Some(&ha), &cfg(true, "ha2"));
        assert!(
            moved.contains("`ha2`") && moved.contains("next restart"),
            "{moved}"
        );
    }
}
