//! The `[adapters.modbus]` configuration section. Unknown keys are errors naming the key.
//!
//! ```toml
//! [[adapters.modbus.links]]
//! transport = "tcp"            # tcp | rtu | tls
//! host = "127.0.0.1"
//! port = 502
//! [[adapters.modbus.links.devices]]
//! unit = 1
//! [[adapters.modbus.links.devices.groups]]
//! interval_ms = 1000
//! points = [{ name = "temperature", table = "holding", address = 100, type = "f32", unit = "°C" }]
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// The whole section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub links: Vec<LinkConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    Tcp,
    Rtu,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// One bus or connection: a TCP/TLS endpoint or a serial line. Requests on a link are strictly
/// sequential (one outstanding request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub transport: Transport,
    /// Used in link-health reports; defaults to the endpoint.
    #[serde(default)]
    pub name: Option<String>,
    // tcp / tls
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    // rtu
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "d_baud")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "d_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "d_data_bits")]
    pub data_bits: u8,
    /// Silence kept between RTU frames; default 3.5 character times (at least 1750 µs).
    #[serde(default)]
    pub inter_frame_us: Option<u64>,
    // tls
    /// PEM CA certificate(s) the server certificate must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and private key presented to the server.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name checked against the server certificate; default `host`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// If set, the server certificate's SHA-256 fingerprint (hex) must match.
    #[serde(default)]
    pub pin_sha256: Option<String>,
    /// Refuse a server certificate without the Modbus/TCP Security role extension (a server
    /// certificate that names no role is then not a Modbus/TCP Security server).
    #[serde(default)]
    pub require_role: bool,
    // discipline
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "d_retries")]
    pub retries: u32,
    #[serde(default = "d_backoff")]
    pub backoff_ms: u64,
    /// Ceiling of the poll back-off for a device that does not answer.
    #[serde(default = "d_max_backoff")]
    pub max_backoff_ms: u64,
    #[serde(default = "d_reconnect")]
    pub reconnect_ms: u64,
    /// Unmapped registers/bits a merged request may read across.
    #[serde(default = "d_max_gap")]
    pub max_gap: u16,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

fn d_baud() -> u32 {
    19200
}
fn d_stop_bits() -> u8 {
    1
}
fn d_data_bits() -> u8 {
    8
}
fn d_timeout() -> u64 {
    1000
}
fn d_retries() -> u32 {
    1
}
fn d_backoff() -> u64 {
    100
}
fn d_max_backoff() -> u64 {
    10_000
}
fn d_reconnect() -> u64 {
    1000
}
fn d_max_gap() -> u16 {
    8
}
fn d_interval() -> u64 {
    1000
}
fn d_one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Publish {
    /// Only points whose value changed (beyond the deadband); an empty message when nothing did, so
    /// every poll still updates last-seen.
    #[default]
    Changed,
    /// Every point on every poll.
    Always,
}

/// One unit on a link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub unit: u8,
    /// Device address override (default `<transport>-<endpoint>-u<unit>`).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub publish: Publish,
    /// Default float deadband for this device's points.
    #[serde(default)]
    pub deadband: f64,
    /// Send an empty telemetry message when a poll changed nothing (keeps last-seen fresh).
    #[serde(default = "d_true")]
    pub heartbeat: bool,
    /// With `publish = "changed"`, still publish every point at least this often (0 = never), so a
    /// device approved after its first poll, or a subscriber that joined late, gets full state.
    #[serde(default = "d_refresh")]
    pub refresh_ms: u64,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

fn d_refresh() -> u64 {
    60_000
}

fn d_true() -> bool {
    true
}

/// Points polled together on one interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default = "d_interval")]
    pub interval_ms: u64,
    pub points: Vec<PointConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Table {
    Coil,
    DiscreteInput,
    Holding,
    Input,
}

impl Table {
    pub fn is_bits(self) -> bool {
        matches!(self, Self::Coil | Self::DiscreteInput)
    }
    pub fn max_count(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    F32,
    F64,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    #[default]
    Big,
    Little,
}

/// A named point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    pub name: String,
    pub table: Table,
    /// 0-based protocol address.
    pub address: u16,
    /// Default `bool` for coils/discrete inputs, `u16` for registers.
    #[serde(default, rename = "type")]
    pub dtype: Option<DataType>,
    /// Registers of a `string` point.
    #[serde(default)]
    pub length: u16,
    #[serde(default)]
    pub byte_order: Order,
    #[serde(default)]
    pub word_order: Order,
    #[serde(default = "d_one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub deadband: Option<f64>,
    /// Accept `set_<name>` commands (coils and holding registers only).
    #[serde(default)]
    pub writable: bool,
    /// Use FC 15/16 even for a single coil/register.
    #[serde(default)]
    pub write_multiple: bool,
    /// Read the point back after a write and return it in the command result.
    #[serde(default)]
    pub readback: bool,
}

impl PointConfig {
    pub fn data_type(&self) -> DataType {
        self.dtype.unwrap_or(if self.table.is_bits() {
            DataType::Bool
        } else {
            DataType::U16
        })
    }

    /// Registers or bits spanned.
    pub fn width(&self) -> u16 {
        if self.table.is_bits() {
            1
        } else {
            crate::codec::width(self.data_type(), self.length)
        }
    }

    #[cfg(test)]
    pub fn for_tests(name: &str, dtype: DataType) -> Self {
        Self {
            name: name.into(),
            table: Table::Holding,
            address: 0,
            dtype: Some(dtype),
            length: 0,
            byte_order: Order::Big,
            word_order: Order::Big,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            deadband: None,
            writable: false,
            write_multiple: false,
            readback: false,
        }
    }
}

impl LinkConfig {
    /// The endpoint part of device addresses and the default link name.
    pub fn endpoint(&self) -> String {
        match self.transport {
            Transport::Rtu => {
                let p = self.path.as_deref().unwrap_or("");
                let base = p.rsplit('/').next().unwrap_or(p);
                format!("rtu-{base}")
            }
            t => format!(
                "{}-{}-{}",
                if t == Transport::Tls { "tls" } else { "tcp" },
                self.host.as_deref().unwrap_or(""),
                self.port
                    .unwrap_or(if t == Transport::Tls { 802 } else { 502 })
            ),
        }
    }

    pub fn link_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.endpoint())
    }

    pub fn validate(&self) -> Result<(), String> {
        let n = self.link_name();
        let missing = |k: &str| format!("link `{n}`: `{k}` is required for {:?}", self.transport);
        match self.transport {
            Transport::Tcp | Transport::Tls => {
                if self.host.is_none() {
                    return Err(missing("host"));
                }
                if self.path.is_some() {
                    return Err(format!("link `{n}`: `path` is only for rtu"));
                }
            }
            Transport::Rtu => {
                if self.path.is_none() {
                    return Err(missing("path"));
                }
                if self.host.is_some() || self.port.is_some() {
                    return Err(format!("link `{n}`: `host`/`port` are not for rtu"));
                }
                if !(5..=8).contains(&self.data_bits) || !(1..=2).contains(&self.stop_bits) {
                    return Err(format!("link `{n}`: data_bits 5-8, stop_bits 1-2"));
                }
            }
        }
        if self.transport == Transport::Tls {
            for (k, v) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
                if v.is_none() {
                    return Err(missing(k));
                }
            }
        } else if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
            return Err(format!("link `{n}`: `ca`/`cert`/`key` are only for tls"));
        }
        if self.timeout_ms == 0 {
            return Err(format!("link `{n}`: timeout_ms must be > 0"));
        }
        for d in &self.devices {
            if d.groups.is_empty() {
                return Err(format!("link `{n}` unit {}: no groups", d.unit));
            }
            let mut names = std::collections::HashSet::new();
            for g in &d.groups {
                for p in &g.points {
                    if !names.insert(p.name.as_str()) {
                        return Err(format!("unit {}: point `{}` defined twice", d.unit, p.name));
                    }
                    self.validate_point(p)?;
                }
            }
        }
        Ok(())
    }

    fn validate_point(&self, p: &PointConfig) -> Result<(), String> {
        let e = |m: &str| Err(format!("point `{}`: {m}", p.name));
        if p.name.is_empty() {
            return e("empty name");
        }
        if p.table.is_bits() && p.data_type() != DataType::Bool {
            return e("coils and discrete inputs are `bool`");
        }
        if p.data_type() == DataType::String && p.length == 0 {
            return e("a string needs `length` (registers)");
        }
        if p.scale == 0.0 || !p.scale.is_finite() || !p.offset.is_finite() {
            return e("scale must be finite and non-zero");
        }
        if u32::from(p.address) + u32::from(p.width()) > 65536 {
            return e("runs past address 65535");
        }
        if p.width() > p.table.max_count() {
            return e("too long for one request");
        }
        if p.writable && !matches!(p.table, Table::Coil | Table::Holding) {
            return e("only coils and holding registers are writable");
        }
        Ok(())
    }
}

/// Parses and checks the section.
pub fn parse(section: &toml::Value) -> Result<Config, String> {
    let c: Config = section
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    for l in &c.links {
        l.validate()?;
    }
    Ok(c)
}
