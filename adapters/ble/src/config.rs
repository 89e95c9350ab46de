//! The `[adapters.ble]` configuration section. Unknown keys are errors and every number is bounded
//! here, so `check-config` and `run` accept exactly the same files.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The BlueZ adapter to scan with (`hci0`); the first one BlueZ lists when absent.
    #[serde(default)]
    pub adapter: Option<String>,
    /// `passive`: an advertisement monitor for BTHome service data, no scan requests on the air
    /// (active discovery instead, noted on the link, when BlueZ has no monitor manager);
    /// `active`: BlueZ discovery.
    #[serde(default)]
    pub scan: ScanMode,
    /// Seconds between attempts to find the adapter again after BlueZ or the adapter went away.
    #[serde(default = "default_reconnect")]
    pub reconnect_s: u32,
    /// How often the adapter's presence is checked, in milliseconds (BlueZ restarts and adapter
    /// removal are noticed within this).
    #[serde(default = "default_health_ms")]
    pub health_check_ms: u32,
    /// The most advertisers tracked at once (deduplication, replay state cache, announcements);
    /// the oldest is forgotten first. Bounds memory under a flood of random addresses.
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// New advertisers announced (registered pending) per minute at most; adverts of the others
    /// are dropped and counted in one rate-limited `flood` audit record.
    #[serde(default = "default_new_per_minute")]
    pub new_devices_per_minute: u32,
    /// Which advertisers are announced as pending devices: `bthome` (those sending BTHome service
    /// data) or `all`.
    #[serde(default = "default_announce")]
    pub announce: String,
    /// Deadline of a whole GATT command (connect, write, read back, disconnect), in milliseconds.
    #[serde(default = "default_gatt_ms")]
    pub gatt_timeout_ms: u32,
    /// GATT commands by name (the names device profiles list): what each writes where. A device
    /// is only ever connected to for one of these.
    #[serde(default)]
    pub commands: BTreeMap<String, GattCommand>,
}

/// How the adapter listens for adverts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    /// BlueZ's advertisement monitor (passive scanning), every advert reported.
    #[default]
    Passive,
    /// BlueZ discovery (active scanning: scan requests are sent), duplicates on.
    Active,
}

impl ScanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passive => "passive",
            Self::Active => "active",
        }
    }
}

/// One GATT command: connect, write `characteristic`, optionally read it back, disconnect.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GattCommand {
    /// The characteristic's 128-bit UUID.
    pub characteristic: String,
    /// A fixed value to write, as hex (`"01"`). Without it the command's `value` argument is
    /// written (hex text, or an integer 0-255 as one byte).
    #[serde(default)]
    pub value: Option<String>,
    /// Read the characteristic after writing and report the value (`value` point of the result);
    /// a read-back that differs from what was written is a device error.
    #[serde(default)]
    pub read_back: bool,
}

/// Decodes hex text (even length, at most 512 bytes' worth).
pub fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn default_reconnect() -> u32 {
    2
}
fn default_health_ms() -> u32 {
    1_000
}
fn default_max_devices() -> usize {
    4_096
}
fn default_new_per_minute() -> u32 {
    60
}
fn default_announce() -> String {
    "bthome".into()
}
fn default_gatt_ms() -> u32 {
    10_000
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.adapter
            && (a.is_empty()
                || a.len() > 32
                || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err("`adapter` must name a BlueZ adapter such as `hci0`".into());
        }
        if !(1..=3_600).contains(&self.reconnect_s) {
            return Err("`reconnect_s` must be between 1 and 3600".into());
        }
        if !(100..=60_000).contains(&self.health_check_ms) {
            return Err("`health_check_ms` must be between 100 and 60000".into());
        }
        if !(16..=1_000_000).contains(&self.max_devices) {
            return Err("`max_devices` must be between 16 and 1000000".into());
        }
        if !(1..=100_000).contains(&self.new_devices_per_minute) {
            return Err("`new_devices_per_minute` must be between 1 and 100000".into());
        }
        if !matches!(self.announce.as_str(), "bthome" | "all") {
            return Err("`announce` must be `bthome` or `all`".into());
        }
        if self.announce == "all" && self.scan == ScanMode::Passive {
            return Err(
                "`announce = \"all\"` needs `scan = \"active\"`: the passive monitor only hears BTHome adverts"
                    .into(),
            );
        }
        if !(500..=120_000).contains(&self.gatt_timeout_ms) {
            return Err("`gatt_timeout_ms` must be between 500 and 120000".into());
        }
        for (name, c) in &self.commands {
            if uuid::Uuid::parse_str(&c.characteristic).is_err() {
                return Err(format!(
                    "commands.{name}: `characteristic` must be a UUID such as 0000ff01-0000-1000-8000-00805f9b34fb"
                ));
            }
            if let Some(v) = &c.value
                && hex(v).is_none_or(|b| b.is_empty())
            {
                return Err(format!("commands.{name}: `value` must be hex bytes"));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            adapter: None,
            scan: ScanMode::Passive,
            reconnect_s: default_reconnect(),
            health_check_ms: default_health_ms(),
            max_devices: default_max_devices(),
            new_devices_per_minute: default_new_per_minute(),
            announce: default_announce(),
            gatt_timeout_ms: default_gatt_ms(),
            commands: BTreeMap::new(),
        }
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn p(s: &str) -> Result<Config, String> {
        parse(&toml::from_str::<toml::Value>(s).unwrap())
    }

    #[test]
    fn defaults_bounds_and_unknown_keys() {
        let c = p("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            p(r#"adapter = "hci1""#).unwrap().adapter.as_deref(),
            Some("hci1")
        );
        assert!(p(r#"adapter = "../x""#).is_err());
        assert!(p("reconnect_s = 0").is_err());
        assert!(p("max_devices = 1").is_err());
        assert!(p(r#"announce = "none""#).is_err());
        assert_eq!(c.scan, ScanMode::Passive, "passive by default");
        assert_eq!(p(r#"scan = "active""#).unwrap().scan, ScanMode::Active);
        assert!(p(r#"scan = "loud""#).is_err());
        assert!(
            p(r#"announce = "all""#).is_err(),
            "the passive monitor hears BTHome only"
        );
        assert!(p("announce = \"all\"\nscan = \"active\"").is_ok());
        let c = p("[commands.led]\ncharacteristic = \"0000ff01-0000-1000-8000-00805f9b34fb\"\nvalue = \"01\"\nread_back = true").unwrap();
        assert_eq!(c.commands["led"].value.as_deref(), Some("01"));
        assert!(p("[commands.led]\ncharacteristic = \"ff01\"").is_err());
        assert!(p("[commands.led]\ncharacteristic = \"0000ff01-0000-1000-8000-00805f9b34fb\"\nvalue = \"0\"").is_err());
        assert_eq!(hex("0aFf"), Some(vec![0x0a, 0xff]));
        let e = p("adaptor = \"hci0\"").unwrap_err();
        assert!(e.contains("adaptor"), "{e}");
    }
}
