//! The `[adapters.lorawan]` configuration section. Every table denies unknown keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::region::Region;

/// How FRMPayloads of one FPort become points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Decoder {
    /// Cayenne LPP records → `<type>_<channel>` points.
    #[default]
    CayenneLpp,
    /// The decrypted bytes as one `payload_<fport>` point.
    Raw,
}

/// How a command's `value` argument is encoded into a downlink payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    U8,
    U16be,
    I16be,
    U32be,
    /// The `payload` argument as bytes (or hex text).
    Bytes,
}

/// A downlink command a model supports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub fport: u8,
    pub encoding: Encoding,
    /// Send as a confirmed downlink.
    #[serde(default)]
    pub confirmed: bool,
}

/// A device model: the payload profile shared by devices of one kind.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Decoder for FPorts not listed in `ports`.
    #[serde(default)]
    pub decoder: Decoder,
    /// Per-FPort decoders, e.g. `ports = { "2" = "raw" }`.
    #[serde(default)]
    pub ports: BTreeMap<String, Decoder>,
    #[serde(default)]
    pub commands: BTreeMap<String, CommandSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    #[default]
    Otaa,
    /// Session from the registry credentials `dev_addr`, `nwk_s_key`, `app_s_key`.
    Abp,
}

/// Per-device settings, keyed by DevEUI (16 hex digits).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// UDP address the packet forwarders send to.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Gateway EUIs (16 hex digits) of the packet forwarders Warden accepts. Empty refuses all.
    #[serde(default)]
    pub forwarders: Vec<String>,
    #[serde(default = "default_region")]
    pub region: Region,
    /// NetID (6 hex digits) put in JoinAccepts; DevAddrs are allocated in its NwkID prefix.
    #[serde(default = "default_net_id")]
    pub net_id: String,
    #[serde(default)]
    pub rx1_dr_offset: u8,
    /// RX1 delay in seconds (RECEIVE_DELAY1); RX2 is one second later.
    #[serde(default = "one")]
    pub rx1_delay_s: u8,
    /// JOIN_ACCEPT_DELAY1 in seconds; RX2 one second later.
    #[serde(default = "five")]
    pub join_accept_delay_s: u8,
    /// RX2 overrides (region defaults otherwise).
    #[serde(default)]
    pub rx2_frequency: Option<f64>,
    #[serde(default)]
    pub rx2_dr: Option<u8>,
    /// Time to send a PULL_RESP ahead of the window: later than this before the RX1 window, RX2 is
    /// used; later than this before RX2, the downlink is reported missed.
    #[serde(default = "default_margin")]
    pub schedule_margin_ms: u64,
    /// The socket's kernel receive buffer in bytes, for bursts of PUSH_DATA (the kernel may
    /// grant less: up to `net.core.rmem_max` unless Warden runs with CAP_NET_ADMIN; the granted
    /// size is in the adapter's link health). Datagrams the kernel still drops are counted.
    #[serde(default = "default_rcvbuf")]
    pub udp_receive_buffer: usize,
    /// How long copies of one frame from several forwarders are collected (best signal kept).
    #[serde(default = "default_dedup")]
    pub dedup_ms: u64,
    /// Downlink commands queued per device; more are answered with an error.
    #[serde(default = "default_queue")]
    pub downlink_queue: usize,
    /// A forwarder without PULL_DATA for this long is reported down.
    #[serde(default = "default_fwd_timeout")]
    pub forwarder_timeout_s: u64,
    /// Let a forwarder's downlink path (the address its PULL_DATA comes from) move to another
    /// address while the old one is alive. Off: a PULL_DATA claiming a live forwarder's EUI from
    /// another address is refused and audited (`forwarder-moved`), so nobody who learns a gateway
    /// EUI can redirect its downlinks; the path moves only once the old one has been silent for
    /// `forwarder_timeout_s` (a forwarder whose address changed). Either move is audited.
    #[serde(default)]
    pub forwarder_roaming: bool,
    /// How long to wait for a TX_ACK before reporting a command as timed out.
    #[serde(default = "default_txack")]
    pub tx_ack_timeout_ms: u64,
    /// How long a queued command waits for its device's next uplink (class A: the only moment
    /// it can be sent) before it is reported `timeout`; until then the command is `queued`.
    #[serde(default = "default_downlink_wait")]
    pub downlink_wait_s: u64,
    /// Model used by devices without one.
    #[serde(default)]
    pub default_model: Model,
    #[serde(default)]
    pub models: BTreeMap<String, Model>,
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceConfig>,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1700))
}
fn default_region() -> Region {
    Region::Eu868
}
fn default_net_id() -> String {
    "000000".into()
}
fn one() -> u8 {
    1
}
fn five() -> u8 {
    5
}
fn default_margin() -> u64 {
    100
}
fn default_dedup() -> u64 {
    200
}
fn default_queue() -> usize {
    8
}
fn default_fwd_timeout() -> u64 {
    30
}
fn default_rcvbuf() -> usize {
    4 << 20
}
fn default_downlink_wait() -> u64 {
    3600
}
fn default_txack() -> u64 {
    3000
}

/// Parses a 16-hex-digit EUI.
pub fn parse_eui(s: &str) -> Result<u64, String> {
    let t = s.trim().replace(['-', ':'], "");
    if t.len() != 16 {
        return Err(format!("`{s}` is not a 16-hex-digit EUI"));
    }
    u64::from_str_radix(&t, 16).map_err(|_| format!("`{s}` is not a 16-hex-digit EUI"))
}

impl Config {
    pub fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let c: Config = v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(4096..=(256 << 20)).contains(&self.udp_receive_buffer) {
            return Err("`udp_receive_buffer` must be between 4096 and 268435456 bytes".into());
        }
        if !(1..=86_400).contains(&self.downlink_wait_s) {
            return Err("`downlink_wait_s` must be between 1 and 86400".into());
        }
        for f in &self.forwarders {
            parse_eui(f).map_err(|e| format!("forwarders: {e}"))?;
        }
        self.net_id_value()?;
        for (eui, d) in &self.devices {
            parse_eui(eui).map_err(|e| format!("devices: {e}"))?;
            if let Some(m) = &d.model
                && !self.models.contains_key(m)
            {
                return Err(format!("devices.{eui}: unknown model `{m}`"));
            }
        }
        for (name, m) in self
            .models
            .iter()
            .chain([(&String::from("default"), &self.default_model)])
        {
            for p in m.ports.keys() {
                match p.parse::<u8>() {
                    Ok(1..=223) => {}
                    _ => return Err(format!("models.{name}.ports: `{p}` is not an FPort 1-223")),
                }
            }
            for (c, s) in &m.commands {
                if !(1..=223).contains(&s.fport) {
                    return Err(format!("models.{name}.commands.{c}: fport must be 1-223"));
                }
            }
        }
        if self.rx1_dr_offset > 5 {
            return Err("rx1_dr_offset must be 0-5".into());
        }
        if self.rx1_delay_s == 0 || self.rx1_delay_s > 15 {
            return Err("rx1_delay_s must be 1-15".into());
        }
        if self.join_accept_delay_s == 0 || self.join_accept_delay_s > 15 {
            return Err("join_accept_delay_s must be 1-15".into());
        }
        if self.region.rx2(self.rx2_frequency, self.rx2_dr).is_none() {
            return Err("rx2_dr is not a downlink data rate of the region".into());
        }
        if self.downlink_queue == 0 {
            return Err("downlink_queue must be at least 1".into());
        }
        Ok(())
    }

    pub fn net_id_value(&self) -> Result<u32, String> {
        let t = self.net_id.trim();
        if t.len() != 6 {
            return Err(format!("net_id `{t}` is not 6 hex digits"));
        }
        u32::from_str_radix(t, 16).map_err(|_| format!("net_id `{t}` is not 6 hex digits"))
    }

    /// The model of a device (by DevEUI hex, lower case).
    pub fn model_of(&self, dev_eui: &str) -> &Model {
        self.devices
            .get(dev_eui)
            .or_else(|| self.devices.get(&dev_eui.to_uppercase()))
            .and_then(|d| d.model.as_ref())
            .and_then(|m| self.models.get(m))
            .unwrap_or(&self.default_model)
    }

    /// DevEUIs configured for ABP.
    pub fn abp_devices(&self) -> Vec<u64> {
        self.devices
            .iter()
            .filter(|(_, d)| d.activation == Activation::Abp)
            .filter_map(|(e, _)| parse_eui(e).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::from_toml(&toml::from_str::<toml::Value>(s).unwrap())
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            r#"
            bind = "127.0.0.1:1700"
            forwarders = ["aa555a0000000001"]
            region = "US915"
            net_id = "000013"
            dedup_ms = 50
            [models.sensor]
            decoder = "cayenne-lpp"
            ports = { "9" = "raw" }
            commands = { set_interval = { fport = 10, encoding = "u16be" } }
            [devices."0004a30b001c0530"]
            model = "sensor"
            [devices."0004a30b001c0531"]
            activation = "abp"
            "#,
        )
        .unwrap();
        assert_eq!(c.region, Region::Us915);
        assert_eq!(c.abp_devices(), vec![0x0004a30b001c0531]);
        assert_eq!(c.model_of("0004a30b001c0530").ports.len(), 1);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("bind = \"127.0.0.1:1\"\nbogus = 1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[models.m]\ndecodr = \"raw\"").unwrap_err();
        assert!(e.contains("decodr"), "{e}");
        assert!(parse("forwarders = [\"xyz\"]").is_err());
        assert!(parse("[devices.\"0004a30b001c0530\"]\nmodel = \"nope\"").is_err());
        assert!(parse("region = \"AS923\"").is_err());
    }
}
