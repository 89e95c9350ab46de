//! The `[adapters.zwave]` configuration section. Unknown keys are errors and every number is
//! bounded here, so `check-config` and `run` accept exactly the same files.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The controller: a serial device (`/dev/serial/by-id/usb-…`, `/dev/ttyACM0`) or
    /// `tcp://host:port` for a Serial API bridged over TCP (ser2net, zwave-js's mock controller).
    pub port: String,
    /// Serial speed; every Serial API controller uses 115200.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// How long a node has to confirm a command (SEND_DATA's callback), in milliseconds.
    #[serde(default = "default_callback_ms")]
    pub send_timeout_ms: u32,
    /// How long each interview step (node information, manufacturer, version) may take.
    #[serde(default = "default_interview_ms")]
    pub interview_timeout_ms: u32,
    /// Seconds between attempts to reopen a controller that went away.
    #[serde(default = "default_reconnect")]
    pub reconnect_s: u32,
    /// Seconds an exclusion (operator `remove`) waits for the node's button.
    #[serde(default = "default_exclusion")]
    pub exclusion_s: u32,
    /// Seconds a command to a sleeping node waits for the node's next wake-up before it times out.
    #[serde(default = "default_sleep_queue")]
    pub sleeping_command_s: u32,
    /// The home id (8 hex digits) of a controller stick the operator accepts in place of the one
    /// the adapter has run with. Without it a controller with another home id on the port (a
    /// different stick) is refused, audited once, and waited on.
    #[serde(default)]
    pub accept_controller: Option<String>,
}

/// A home id written as 8 hex digits (`c0ffee01`, `0xC0FFEE01`).
pub fn parse_home_id(s: &str) -> Option<u32> {
    let t = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    (t.len() == 8).then(|| u32::from_str_radix(t, 16).ok())?
}

fn default_baud() -> u32 {
    115_200
}
fn default_callback_ms() -> u32 {
    10_000
}
fn default_interview_ms() -> u32 {
    5_000
}
fn default_reconnect() -> u32 {
    5
}
fn default_exclusion() -> u32 {
    60
}
fn default_sleep_queue() -> u32 {
    3_600
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.port.trim().is_empty() || self.port.len() > 256 {
            return Err("`port` must name a serial device or tcp://host:port".into());
        }
        if let Some(addr) = self.port.strip_prefix("tcp://")
            && addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("`port` {:?}: expected tcp://host:port", self.port));
        }
        if !(9_600..=921_600).contains(&self.baud) {
            return Err("`baud` must be between 9600 and 921600".into());
        }
        if !(500..=65_000).contains(&self.send_timeout_ms) {
            return Err("`send_timeout_ms` must be between 500 and 65000".into());
        }
        if !(200..=60_000).contains(&self.interview_timeout_ms) {
            return Err("`interview_timeout_ms` must be between 200 and 60000".into());
        }
        if !(1..=3_600).contains(&self.reconnect_s) {
            return Err("`reconnect_s` must be between 1 and 3600".into());
        }
        if !(5..=600).contains(&self.exclusion_s) {
            return Err("`exclusion_s` must be between 5 and 600".into());
        }
        if !(1..=86_400).contains(&self.sleeping_command_s) {
            return Err("`sleeping_command_s` must be between 1 and 86400".into());
        }
        if let Some(a) = &self.accept_controller
            && parse_home_id(a).is_none()
        {
            return Err(
                "`accept_controller` must be the controller's home id, 8 hex digits".into(),
            );
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
        let c = p(r#"port = "tcp://127.0.0.1:5555""#).unwrap();
        assert_eq!(c.baud, 115_200);
        assert_eq!(c.send_timeout_ms, 10_000);
        assert!(p(r#"port = "/dev/ttyACM0""#).is_ok());
        assert!(p(r#"port = "tcp://127.0.0.1""#).is_err());
        assert!(p(r#"port = """#).is_err());
        assert!(p("port = \"/dev/x\"\nsend_timeout_ms = 70000").is_err());
        assert!(p("port = \"/dev/x\"\nreconnect_s = 0").is_err());
        let e = p("port = \"/dev/x\"\nbaudrate = 9600").unwrap_err();
        assert!(e.contains("baudrate"), "{e}");
    }

    #[test]
    fn accept_controller_is_a_home_id() {
        assert_eq!(parse_home_id("c0ffee01"), Some(0xc0ff_ee01));
        assert_eq!(parse_home_id("0xDEADBEEF"), Some(0xdead_beef));
        assert_eq!(parse_home_id("c0ffee"), None);
        assert_eq!(parse_home_id("c0ffee0g"), None);
        assert!(p("port = \"/dev/x\"\naccept_controller = \"deadbeef\"").is_ok());
        let e = p("port = \"/dev/x\"\naccept_controller = \"nope\"").unwrap_err();
        assert!(e.contains("accept_controller"), "{e}");
    }
}
