//! Warden's Modbus adapter: polls Modbus TCP, RTU (serial) and Modbus/TCP Security (TLS) devices
//! into typed, named points, and writes coils and registers for commands the gateway allowed.
//!
//! - [`config`]: the `[adapters.modbus]` section.
//! - [`plan`]: merging points into read requests.
//! - [`codec`]: registers ↔ values, the TLS role extension.
//! - [`transport`]: opening TCP, serial and TLS links.
//! - [`link`]: one task per link: the poll scheduler, bus discipline, downlinks.

pub mod codec;
pub mod config;
pub mod link;
pub mod plan;
pub mod transport;

use std::collections::HashMap;

use tokio::sync::mpsc;
use warden_core::{
    Adapter, AdapterContext, AdapterError, AdapterEvent, BoxFuture, CommandOutcome, CommandResult,
    DeviceId,
};

pub use config::Config;

pub const PROTOCOL: &str = "modbus";

/// The adapter built from config; it does no I/O until [`Adapter::run`].
pub struct ModbusAdapter {
    config: Config,
}

impl ModbusAdapter {
    pub fn new(config: Config) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for l in &config.links {
            l.validate()?;
            for d in &l.devices {
                let id = link::device_id(l, d)?;
                if !seen.insert(id.clone()) {
                    return Err(format!("device `{id}` is configured twice"));
                }
            }
        }
        Ok(Self { config })
    }
}

/// The gateway's constructor for `[adapters.modbus]`.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    let c = config::parse(section)?;
    Ok(Box::new(ModbusAdapter::new(c)?))
}

impl Adapter for ModbusAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(async move {
            let AdapterContext {
                events,
                mut downlinks,
                shutdown,
                ..
            } = ctx;
            let mut routes: HashMap<DeviceId, mpsc::Sender<warden_core::Downlink>> = HashMap::new();
            let mut tasks = Vec::new();
            for l in self.config.links {
                let (tx, rx) = mpsc::channel(32);
                for d in &l.devices {
                    if let Ok(id) = link::device_id(&l, d) {
                        routes.insert(id, tx.clone());
                    }
                }
                let lk = link::Link::new(l, events.clone()).map_err(AdapterError::Config)?;
                tasks.push(tokio::spawn(lk.run(rx, shutdown.clone())));
            }
            let mut shutdown = shutdown;
            loop {
                tokio::select! {
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() { break; }
                    }
                    d = downlinks.recv() => {
                        let Some(d) = d else { break };
                        let routed = match routes.get(&d.device) {
                            Some(tx) => tx.try_send(d.clone()).map_err(|_| "the device's bus is busy (queue full)"),
                            None => Err("not a configured modbus device"),
                        };
                        if let Err(why) = routed {
                            let r = CommandResult {
                                command_id: d.command_id,
                                device: d.device,
                                outcome: CommandOutcome::DeviceError(why.into()),
                                points: vec![],
                            };
                            events.send(AdapterEvent::CommandResult(r)).await.map_err(|_| AdapterError::Closed)?;
                        }
                    }
                }
            }
            drop(routes);
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn section(s: &str) -> toml::Value {
        toml::from_str(s).unwrap()
    }

    const OK: &str = r#"
[[links]]
transport = "tcp"
host = "127.0.0.1"
port = 5020
[[links.devices]]
unit = 3
[[links.devices.groups]]
points = [{ name = "t", table = "holding", address = 1, type = "f32" }]
"#;

    #[test]
    fn builds_without_io_and_names_devices() {
        let a = build(&section(OK)).unwrap();
        assert_eq!(a.protocol(), "modbus");
        let c = config::parse(&section(OK)).unwrap();
        let id = link::device_id(&c.links[0], &c.links[0].devices[0]).unwrap();
        assert_eq!(id.to_string(), "modbus:tcp-127.0.0.1-5020-u3");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for (bad, key) in [
            (OK.replace("port = 5020", "port = 5020\nprot = 1"), "prot"),
            (OK.replace("unit = 3", "unit = 3\nslave = 1"), "slave"),
            (
                OK.replace("type = \"f32\"", "type = \"f32\", scael = 2"),
                "scael",
            ),
            (format!("bogus = 1\n{OK}"), "bogus"),
        ] {
            let e = build(&section(&bad)).err().unwrap();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn bad_combinations_are_refused() {
        let rtu_with_host = OK.replace(
            "transport = \"tcp\"",
            "transport = \"rtu\"\npath = \"/dev/x\"",
        );
        assert!(build(&section(&rtu_with_host)).is_err());
        let tls_without_ca = OK.replace("transport = \"tcp\"", "transport = \"tls\"");
        assert!(
            build(&section(&tls_without_ca))
                .err()
                .unwrap()
                .contains("ca")
        );
        let coil_f32 = OK.replace("table = \"holding\"", "table = \"coil\"");
        assert!(build(&section(&coil_f32)).is_err());
        let input_writable = OK.replace("type = \"f32\"", "type = \"f32\", table2 = 1");
        assert!(build(&section(&input_writable)).is_err());
        let dup = OK.replace(
            "points = [{ name = \"t\", table = \"holding\", address = 1, type = \"f32\" }]",
            "points = [{ name = \"t\", table = \"holding\", address = 1 }, { name = \"t\", table = \"input\", address = 1 }]",
        );
        assert!(build(&section(&dup)).err().unwrap().contains("twice"));
        let two = format!("{OK}{OK}");
        assert!(
            build(&section(&two))
                .err()
                .unwrap()
                .contains("configured twice")
        );
    }
}
