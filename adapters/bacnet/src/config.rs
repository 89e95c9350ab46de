//! The `[adapters.bacnet]` configuration section. Unknown keys are errors and every number is
//! bounded here, so `check-config` and `run` accept exactly the same files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CovMode {
    /// SubscribeCOV asking for confirmed notifications (acknowledged, retried by the device).
    Confirmed,
    Unconfirmed,
    /// No subscriptions: every object is polled.
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The UDP address Warden's BACnet/IP port binds (`192.168.1.20:47808`).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Where broadcast Who-Is goes: the subnet's directed broadcast (`192.168.1.255:47808`).
    #[serde(default = "default_broadcast")]
    pub broadcast: SocketAddr,
    /// Also listen on `broadcast` (SO_REUSEPORT) for I-Am and other broadcasts.
    #[serde(default = "yes")]
    pub listen_broadcast: bool,
    /// The network number of the local BACnet/IP network, used in device ids
    /// (`bacnet:<network>-<instance>`); devices behind a router use the router's SNET instead.
    #[serde(default)]
    pub network: u16,
    /// Devices asked with a directed (unicast) Who-Is at start-up and in every scan.
    #[serde(default)]
    pub devices: Vec<SocketAddr>,
    /// Send a broadcast Who-Is at start-up (a scan operation does it on demand too).
    #[serde(default = "yes")]
    pub discover_on_start: bool,
    /// A BBMD to register with as a foreign device (`host:port`), and the registration's TTL.
    #[serde(default)]
    pub bbmd: Option<SocketAddr>,
    #[serde(default = "default_bbmd_ttl")]
    pub bbmd_ttl_s: u16,
    /// Seconds between polls of objects without a COV subscription (and liveness checks).
    #[serde(default = "default_poll")]
    pub poll_s: u32,
    /// How long one device has to answer a confirmed request, and how often it is retried.
    #[serde(default = "default_timeout")]
    pub apdu_timeout_ms: u32,
    #[serde(default = "default_retries")]
    pub retries: u8,
    #[serde(default = "default_cov")]
    pub cov: CovMode,
    /// Per-device exceptions to `cov`, keyed by device instance: `{ "1003" = "unconfirmed" }`.
    #[serde(default)]
    pub cov_per_device: BTreeMap<String, CovMode>,
    /// Lifetime asked for in SubscribeCOV; Warden renews at two thirds of it.
    #[serde(default = "default_lifetime")]
    pub cov_lifetime_s: u32,
    /// The most devices the adapter tracks (a flood of I-Am from invented instances stops here).
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// The most objects read from one device's object list.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
    /// The max APDU Warden accepts, announced in its requests: 50, 128, 206, 480, 1024 or 1476
    /// octets; a device segments longer answers.
    #[serde(default = "default_max_apdu")]
    pub max_apdu: usize,
    /// The largest reassembled segmented response, in bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// BACnet Secure Connect: Warden as a node of a hub (`[adapters.bacnet.sc]`).
    #[serde(default)]
    pub sc: Option<ScConfig>,
}

/// `[adapters.bacnet.sc]`: the hub connection (Annex AB) — WebSocket over TLS 1.3, mutual
/// certificate authentication against one CA.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScConfig {
    /// The primary hub, `wss://host:port[/path]`.
    pub hub: String,
    /// Tried when the primary hub cannot be reached.
    #[serde(default)]
    pub failover_hub: Option<String>,
    /// PEM: the CA the hub's certificate must chain to (the only trust anchor).
    pub ca: PathBuf,
    /// PEM: Warden's operational certificate (chain) and its private key (owner-only file).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Warden's VMAC (`02:00:00:00:00:0a`); a random local one at each start when absent.
    #[serde(default)]
    pub vmac: Option<String>,
    /// Warden's device UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`); random at each start when absent.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The network number of the SC network, used in device ids (`bacnet:<network>-<instance>`).
    #[serde(default)]
    pub network: u16,
    /// Seconds of silence on the hub connection before Warden sends a Heartbeat-Request; the
    /// connection is dropped when nothing arrives for twice as long.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_s: u32,
    /// TCP + TLS + WebSocket + Connect-Request must complete within this.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u32,
    /// Reconnect backoff: starts at the minimum, doubles to the maximum.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u32,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u32,
    /// Send a broadcast Who-Is through the hub each time the connection comes up.
    #[serde(default = "yes")]
    pub discover_on_connect: bool,
}

fn default_heartbeat() -> u32 {
    60
}
fn default_connect_timeout() -> u32 {
    10_000
}
fn default_reconnect_min() -> u32 {
    1_000
}
fn default_reconnect_max() -> u32 {
    30_000
}

/// The parts of a `wss://` URI the connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUri {
    pub text: String,
    pub host: String,
    pub port: u16,
}

impl HubUri {
    pub fn parse(s: &str) -> Result<HubUri, String> {
        let rest = s
            .strip_prefix("wss://")
            .ok_or_else(|| format!("`{s}`: a hub is a `wss://host:port` URI (TLS only)"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(format!("`{s}`: credentials in a hub URI are not allowed"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, p) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("`{s}`: unclosed IPv6 address"))?;
                (h.to_owned(), p.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            },
        };
        if host.is_empty() || host.len() > 253 {
            return Err(format!("`{s}`: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{s}`: bad port"))?,
            None => 443,
        };
        Ok(HubUri {
            text: s.to_owned(),
            host,
            port,
        })
    }
}

impl ScConfig {
    pub fn validate(&self) -> Result<(), String> {
        HubUri::parse(&self.hub)?;
        if let Some(f) = &self.failover_hub {
            HubUri::parse(f)?;
        }
        if let Some(v) = &self.vmac {
            let m = crate::bvlc_sc::Vmac::parse(v)
                .ok_or_else(|| format!("sc `vmac`: `{v}` is not six hex octets"))?;
            if m.is_broadcast() || m.0 == [0; 6] {
                return Err(format!("sc `vmac`: `{v}` is reserved"));
            }
        }
        if let Some(u) = &self.uuid
            && parse_uuid(u).is_none()
        {
            return Err(format!("sc `uuid`: `{u}` is not a UUID"));
        }
        if self.network == 0xffff {
            return Err("sc `network` 65535 is the global broadcast network".into());
        }
        if !(5..=3_600).contains(&self.heartbeat_s) {
            return Err("sc `heartbeat_s` must be between 5 and 3600".into());
        }
        if !(500..=120_000).contains(&self.connect_timeout_ms) {
            return Err("sc `connect_timeout_ms` must be between 500 and 120000".into());
        }
        if !(100..=600_000).contains(&self.reconnect_min_ms)
            || self.reconnect_max_ms < self.reconnect_min_ms
            || self.reconnect_max_ms > 600_000
        {
            return Err(
                "sc `reconnect_min_ms`/`reconnect_max_ms`: 100 <= min <= max <= 600000".into(),
            );
        }
        Ok(())
    }
}

/// `00000000-0000-4000-8000-000000001001` → 16 octets.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut u = [0u8; 16];
    for (i, b) in u.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(u)
}

fn yes() -> bool {
    true
}
fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 47808))
}
fn default_broadcast() -> SocketAddr {
    SocketAddr::from(([255, 255, 255, 255], 47808))
}
fn default_bbmd_ttl() -> u16 {
    300
}
fn default_poll() -> u32 {
    30
}
fn default_timeout() -> u32 {
    3_000
}
fn default_retries() -> u8 {
    2
}
fn default_cov() -> CovMode {
    CovMode::Confirmed
}
fn default_lifetime() -> u32 {
    600
}
fn default_max_devices() -> usize {
    256
}
fn default_max_objects() -> usize {
    1_000
}
fn default_max_apdu() -> usize {
    1476
}
fn default_max_response() -> usize {
    256 * 1024
}

impl Config {
    /// The COV mode for one device.
    pub fn cov_for(&self, instance: u32) -> &CovMode {
        self.cov_per_device
            .get(&instance.to_string())
            .unwrap_or(&self.cov)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.broadcast.is_ipv4() || !self.bind.is_ipv4() {
            return Err("BACnet/IP (Annex J) is IPv4: `bind` and `broadcast` must be IPv4".into());
        }
        if self.network == 0xffff {
            return Err("`network` 65535 is the global broadcast network".into());
        }
        if self.devices.len() > 1024 {
            return Err("`devices`: at most 1024 addresses".into());
        }
        if !(1..=86_400).contains(&self.poll_s) {
            return Err("`poll_s` must be between 1 and 86400".into());
        }
        if !(50..=60_000).contains(&self.apdu_timeout_ms) {
            return Err("`apdu_timeout_ms` must be between 50 and 60000".into());
        }
        if self.retries > 5 {
            return Err("`retries` must be between 0 and 5".into());
        }
        if !(5..=86_400).contains(&self.cov_lifetime_s) {
            return Err("`cov_lifetime_s` must be between 5 and 86400".into());
        }
        if !(30..=65_535).contains(&self.bbmd_ttl_s) {
            return Err("`bbmd_ttl_s` must be between 30 and 65535".into());
        }
        if !(1..=10_000).contains(&self.max_devices) {
            return Err("`max_devices` must be between 1 and 10000".into());
        }
        if !(1..=10_000).contains(&self.max_objects) {
            return Err("`max_objects` must be between 1 and 10000".into());
        }
        if ![50, 128, 206, 480, 1024, 1476].contains(&self.max_apdu) {
            return Err("`max_apdu` must be 50, 128, 206, 480, 1024 or 1476".into());
        }
        if !(1_476..=16 * 1024 * 1024).contains(&self.max_response_bytes) {
            return Err("`max_response_bytes` must be between 1476 and 16777216".into());
        }
        if let Some(sc) = &self.sc {
            sc.validate()?;
        }
        for k in self.cov_per_device.keys() {
            if k.parse::<u32>().ok().filter(|i| *i <= 0x3f_ffff).is_none() {
                return Err(format!(
                    "`cov_per_device`: `{k}` is not a device instance (0-4194303)"
                ));
            }
        }
        Ok(())
    }
}

pub fn parse(section: &toml::Value) -> Result<Config, String> {
    let c: Config = section.clone().try_into().map_err(|e: toml::de::Error| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("invalid section")
            .to_owned()
    })?;
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(s: &str) -> Result<Config, String> {
        parse(&toml::from_str::<toml::Value>(s).unwrap())
    }

    #[test]
    fn defaults_bounds_and_unknown_keys() {
        let c = p("").unwrap();
        assert_eq!(c.bind.port(), 47808);
        assert_eq!(c.cov, CovMode::Confirmed);
        assert_eq!(c.retries, 2);
        let c =
            p("bind = \"127.0.0.9:47808\"\ncov = \"unconfirmed\"\ndevices = [\"127.0.0.2:47808\"]")
                .unwrap();
        assert_eq!(c.devices.len(), 1);
        assert_eq!(c.cov, CovMode::Unconfirmed);
        assert!(p("bind = \"[::1]:47808\"").is_err());
        assert!(p("poll_s = 0").is_err());
        assert!(p("retries = 9").is_err());
        assert!(p("network = 65535").is_err());
        assert!(p("cov = \"sometimes\"").is_err());
        let c = p("[cov_per_device]\n\"1003\" = \"off\"").unwrap();
        assert_eq!(c.cov_for(1003), &CovMode::Off);
        assert_eq!(c.cov_for(1002), &CovMode::Confirmed);
        assert!(p("[cov_per_device]\nfan = \"off\"").is_err());
        let e = p("poll_seconds = 3").unwrap_err();
        assert!(e.contains("poll_seconds"), "{e}");
    }

    #[test]
    fn sc_section() {
        let base = "[sc]\nhub = \"wss://127.0.0.1:28901\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let c = p(base).unwrap();
        let sc = c.sc.unwrap();
        assert_eq!(sc.heartbeat_s, 60);
        assert_eq!(
            HubUri::parse(&sc.hub).unwrap(),
            HubUri {
                text: "wss://127.0.0.1:28901".into(),
                host: "127.0.0.1".into(),
                port: 28901
            }
        );
        assert!(p(&format!("{base}vmac = \"02:00:00:00:00:0a\"\nuuid = \"00000000-0000-4000-8000-000000001001\"")).is_ok());
        assert!(p(&format!("{base}vmac = \"ff:ff:ff:ff:ff:ff\"")).is_err());
        assert!(p(&format!("{base}uuid = \"nope\"")).is_err());
        assert!(p(&format!("{base}failover_hub = \"ws://127.0.0.1:1\"")).is_err());
        assert!(p(&format!("{base}hubb = 1")).is_err());
        assert!(
            p("[sc]\nhub = \"wss://h:1\"").is_err(),
            "ca/cert/key required"
        );
        assert_eq!(HubUri::parse("wss://[::1]:9/x").unwrap().host, "::1");
        assert_eq!(HubUri::parse("wss://hub.example").unwrap().port, 443);
        assert!(HubUri::parse("wss://u@h:1").is_err());
        assert!(HubUri::parse("wss://h:0").is_err());
    }
}
