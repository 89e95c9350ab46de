//! The `[adapters.zigbee]` configuration section. Every table denies unknown keys; every number is
//! bounded here, so `check-config` and `run` accept exactly the same files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Which coordinator firmware the port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StackChoice {
    /// Probe: ZNP (SYS.Ping) first, then EZSP (ASH RST).
    #[default]
    Auto,
    Znp,
    Ezsp,
}

/// One attribute the adapter asks a device to report (ZCL Configure Reporting).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reporting {
    pub cluster: u16,
    pub attribute: u16,
    /// Seconds.
    #[serde(default = "default_min")]
    pub min_interval: u16,
    #[serde(default = "default_max")]
    pub max_interval: u16,
    /// In the attribute's raw units (e.g. 10 = 0.10 °C for temperature).
    #[serde(default)]
    pub reportable_change: Option<u32>,
}

fn default_min() -> u16 {
    10
}
fn default_max() -> u16 {
    300
}

/// How one attribute of a model becomes a point, overriding the built-in table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointOverride {
    pub cluster: u16,
    pub attribute: u16,
    /// Point name (letters, digits, `_`).
    #[serde(default)]
    pub name: Option<String>,
    /// Multiplier applied to the raw value instead of the built-in scale.
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Drop this attribute instead of publishing it.
    #[serde(default)]
    pub ignore: bool,
}

/// Per-model settings, keyed by the model id the device reports in its Basic cluster.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Model {
    #[serde(default)]
    pub points: Vec<PointOverride>,
    /// Replaces the default reporting configuration for this model.
    #[serde(default)]
    pub reporting: Option<Vec<Reporting>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The coordinator's serial port (e.g. `/dev/serial/by-id/usb-…` or `/dev/ttyUSB0`).
    pub port: PathBuf,
    #[serde(default)]
    pub stack: StackChoice,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Channel for a new network (11–26). An existing network keeps its own.
    #[serde(default = "default_channel")]
    pub channel: u8,
    /// Windows opened without `--install-code-only` still require install codes.
    #[serde(default)]
    pub require_install_codes: bool,
    /// The longest join window an operator may open, in seconds.
    #[serde(default = "default_max_join")]
    pub max_join_seconds: u32,
    /// Frames per second one device may send before the excess is refused (and counted once).
    #[serde(default = "default_rate")]
    pub max_frames_per_s: u32,
    /// How long a command for a sleepy end device waits for its next poll.
    #[serde(default = "default_sleepy")]
    pub sleepy_queue_s: u32,
    /// Commands queued per sleepy device.
    #[serde(default = "default_sleepy_depth")]
    pub sleepy_queue_depth: usize,
    /// Seconds between reopen attempts after the dongle went away.
    #[serde(default = "default_reconnect")]
    pub reconnect_s: u32,
    /// The most devices the adapter keeps state for.
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// Reporting asked of every device whose model has no `reporting` of its own (for the
    /// clusters it has). Default: the measurement clusters at 10–300 s.
    #[serde(default)]
    pub reporting: Option<Vec<Reporting>>,
    #[serde(default)]
    pub models: BTreeMap<String, Model>,
    /// The IEEE address (16 hex digits) of a coordinator stick the operator accepts in place of the
    /// one the network was formed on. Without it a different stick on the port is refused.
    #[serde(default)]
    pub accept_coordinator: Option<String>,
}

fn default_baud() -> u32 {
    115_200
}
fn default_channel() -> u8 {
    15
}
fn default_max_join() -> u32 {
    600
}
fn default_rate() -> u32 {
    20
}
fn default_sleepy() -> u32 {
    3600
}
fn default_sleepy_depth() -> usize {
    8
}
fn default_reconnect() -> u32 {
    2
}
fn default_max_devices() -> usize {
    1000
}

/// The reporting Warden configures when neither the model nor the section says otherwise.
pub fn default_reporting() -> Vec<Reporting> {
    let r = |cluster, attribute, change| Reporting {
        cluster,
        attribute,
        min_interval: default_min(),
        max_interval: default_max(),
        reportable_change: change,
    };
    vec![
        r(0x0006, 0x0000, None),
        r(0x0008, 0x0000, Some(1)),
        r(0x0402, 0x0000, Some(10)),
        r(0x0405, 0x0000, Some(100)),
        r(0x0403, 0x0000, Some(1)),
        r(0x0400, 0x0000, Some(500)),
        r(0x0406, 0x0000, None),
        r(0x0001, 0x0021, Some(2)),
        r(0x0b04, 0x050b, Some(1)),
        r(0x0702, 0x0000, Some(1)),
    ]
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.port.as_os_str().is_empty() {
            return Err("`port` must name the coordinator's serial port".into());
        }
        if !(11..=26).contains(&self.channel) {
            return Err(format!("`channel` {} is not 11–26", self.channel));
        }
        if !(9600..=4_000_000).contains(&self.baud) {
            return Err(format!("`baud` {} is not 9600–4000000", self.baud));
        }
        if !(1..=warden_core::operation::MAX_OPERATION_SECONDS).contains(&self.max_join_seconds) {
            return Err(format!(
                "`max_join_seconds` must be 1–{}",
                warden_core::operation::MAX_OPERATION_SECONDS
            ));
        }
        if !(1..=10_000).contains(&self.max_frames_per_s) {
            return Err("`max_frames_per_s` must be 1–10000".into());
        }
        if !(1..=86_400).contains(&self.sleepy_queue_s) {
            return Err("`sleepy_queue_s` must be 1–86400".into());
        }
        if !(1..=256).contains(&self.sleepy_queue_depth) {
            return Err("`sleepy_queue_depth` must be 1–256".into());
        }
        if !(1..=3600).contains(&self.reconnect_s) {
            return Err("`reconnect_s` must be 1–3600".into());
        }
        if !(1..=65_000).contains(&self.max_devices) {
            return Err("`max_devices` must be 1–65000".into());
        }
        if let Some(a) = &self.accept_coordinator
            && crate::network::parse_coordinator(a).is_none()
        {
            return Err(
                "`accept_coordinator` must be the coordinator's IEEE address, 16 hex digits".into(),
            );
        }
        let all_reporting = self.reporting.iter().flatten().chain(
            self.models
                .values()
                .flat_map(|m| m.reporting.iter().flatten()),
        );
        for r in all_reporting {
            if r.min_interval > r.max_interval && r.max_interval != 0 {
                return Err(format!(
                    "reporting of cluster {:#06x} attribute {:#06x}: min_interval > max_interval",
                    r.cluster, r.attribute
                ));
            }
        }
        for (model, m) in &self.models {
            if model.is_empty() || model.len() > 64 {
                return Err(format!("model name `{model}` must be 1–64 characters"));
            }
            for p in &m.points {
                if let Some(n) = &p.name
                    && !valid_name(n)
                {
                    return Err(format!(
                        "models.{model}: point name `{n}` must be 1–64 letters, digits, `_` or `-`"
                    ));
                }
                if let Some(s) = p.scale
                    && !s.is_finite()
                {
                    return Err(format!("models.{model}: scale must be a finite number"));
                }
            }
        }
        Ok(())
    }

    pub fn reporting_for(&self, model: Option<&str>) -> Vec<Reporting> {
        model
            .and_then(|m| self.models.get(m))
            .and_then(|m| m.reporting.clone())
            .or_else(|| self.reporting.clone())
            .unwrap_or_else(default_reporting)
    }
}

/// Parses and validates the section.
pub fn parse(section: &toml::Value) -> Result<Config, String> {
    let c: Config = section.clone().try_into().map_err(|e: toml::de::Error| {
        e.to_string().lines().next().unwrap_or_default().to_owned()
    })?;
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn p(s: &str) -> Result<Config, String> {
        parse(&toml::from_str::<toml::Value>(s).unwrap())
    }

    #[test]
    fn minimal_config_has_secure_running_defaults() {
        let c = p(r#"port = "/dev/ttyUSB0""#).unwrap();
        assert_eq!(c.stack, StackChoice::Auto);
        assert_eq!(c.channel, 15);
        assert!(!c.require_install_codes);
        assert_eq!(c.reporting_for(None), default_reporting());
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        assert!(
            p(r#"port = "/dev/x"
channel = 27"#)
            .unwrap_err()
            .contains("channel")
        );
        assert!(
            p(r#"port = "/dev/x"
max_join_seconds = 0"#)
            .unwrap_err()
            .contains("max_join_seconds")
        );
        assert!(
            p(r#"port = "/dev/x"
max_frames_per_s = 99999999999"#)
            .is_err()
        );
        assert!(
            p(r#"port = "/dev/x"
max_frames_per_s = 10001"#)
            .unwrap_err()
            .contains("max_frames_per_s")
        );
        assert!(
            p(r#"port = "/dev/x"
unknown = 1"#)
            .unwrap_err()
            .contains("unknown")
        );
        assert!(
            p(r#"port = "/dev/x"
[models.m]
points = [{ cluster = 1026, attribute = 0, name = "a b" }]"#)
            .unwrap_err()
            .contains("point name")
        );
        assert!(
            p(r#"port = "/dev/x"
[[reporting]]
cluster = 1026
attribute = 0
min_interval = 60
max_interval = 10"#)
            .unwrap_err()
            .contains("min_interval")
        );
    }

    #[test]
    fn a_model_reporting_overrides_the_default() {
        let c = p(r#"port = "/dev/x"
[models."SIM-TH-1"]
reporting = [{ cluster = 1026, attribute = 0, min_interval = 1, max_interval = 60 }]"#)
        .unwrap();
        assert_eq!(c.reporting_for(Some("SIM-TH-1")).len(), 1);
        assert_eq!(c.reporting_for(Some("other")), default_reporting());
    }
}
