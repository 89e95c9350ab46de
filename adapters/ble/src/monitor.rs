//! Passive scanning through BlueZ's advertisement monitor API (`org.bluez.AdvertisementMonitor
//! Manager1` on the adapter object), which btleplug does not expose.
//!
//! Warden exports one monitor of type `or_patterns` whose only pattern is BTHome's service data
//! (AD type 0x16 starting with the UUID 0xFCD2, little-endian), with `RSSISamplingPeriod` 0 so
//! BlueZ propagates every advert (duplicates included). BlueZ reads it through the object
//! manager Warden exports at [`ROOT`], calls `Activate`, then `DeviceFound` for each matching
//! advertiser; the adverts themselves arrive as `org.bluez.Device1` property changes, which
//! btleplug reports as it does under discovery. No discovery session (active scanning, scan
//! requests on the air) is started.
//!
//! The registration lives on a D-Bus connection of its own: dropping the [`Monitor`] closes it, and
//! BlueZ releases a monitor whose owner left the bus. Only BlueZ (the owner of `org.bluez` when the
//! monitor was registered) may call the exported objects; any other caller is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::channel::{MatchingReceiver, Sender};
use dbus::message::{MatchRule, MessageType};
use dbus::nonblock::stdintf::org_freedesktop_dbus::Properties;
use dbus::nonblock::{Proxy, SyncConnection};
use dbus::strings::ErrorName;
use dbus::{Message, Path};
use tokio::sync::mpsc;

pub const MANAGER: &str = "org.bluez.AdvertisementMonitorManager1";
pub const MONITOR: &str = "org.bluez.AdvertisementMonitor1";
/// The root of Warden's monitor hierarchy (the application path given to `RegisterMonitor`).
pub const ROOT: &str = "/org/warden/ble";
/// The BTHome monitor under [`ROOT`].
pub const MONITOR_PATH: &str = "/org/warden/ble/bthome";
/// AD type "Service Data - 16-bit UUID".
pub const AD_SERVICE_DATA_16: u8 = 0x16;
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
/// Monitor calls queued for the run loop at most; more are dropped (they only carry news the
/// property changes also carry, except `Release`, which BlueZ sends once).
const EVENTS: usize = 256;

/// What BlueZ told the monitor (or that its connection went away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorEvent {
    Activated,
    Released,
    DeviceFound(String),
    DeviceLost(String),
    /// The monitor's own D-Bus connection closed.
    ConnectionLost,
}

/// Why passive scanning could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("BlueZ offers no advertisement monitor manager on {0}")]
    Unsupported(String),
    #[error(
        "BlueZ's advertisement monitor manager offers no `or_patterns` monitors (it offers: {0})"
    )]
    NoOrPatterns(String),
    #[error("`{0}` is not a BlueZ adapter name")]
    BadAdapter(String),
    #[error("D-Bus: {0}")]
    Dbus(String),
    #[error("BlueZ did not answer {0} in time")]
    Timeout(&'static str),
    #[error("BlueZ refused the advertisement monitor: {0}")]
    Refused(String),
    #[error("BlueZ released the advertisement monitor instead of activating it")]
    Released,
}

/// The BTHome monitor's pattern list: service data whose first two bytes are UUID 0xFCD2 (LE).
pub fn patterns() -> Vec<(u8, u8, Vec<u8>)> {
    let uuid = crate::bthome::UUID16.to_le_bytes();
    vec![(0, AD_SERVICE_DATA_16, uuid.to_vec())]
}

fn monitor_properties() -> PropMap {
    let mut p: PropMap = HashMap::new();
    p.insert(
        "Type".into(),
        Variant(Box::new("or_patterns".to_owned()) as Box<dyn RefArg>),
    );
    p.insert("Patterns".into(), Variant(Box::new(patterns())));
    // 0: every advert of an in-range device is propagated (duplicates on)
    p.insert("RSSISamplingPeriod".into(), Variant(Box::new(0u16)));
    p
}

/// A registered, activated monitor. Dropping it closes its D-Bus connection (BlueZ then releases
/// the monitor); [`Monitor::unregister`] does it politely first.
pub struct Monitor {
    conn: Arc<SyncConnection>,
    adapter_path: Path<'static>,
    task: tokio::task::JoinHandle<()>,
    pub events: mpsc::Receiver<MonitorEvent>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Monitor {
    /// Registers the BTHome monitor on adapter `adapter` (`hci0`) and waits for BlueZ to activate
    /// it, each step within `deadline`.
    pub async fn register(adapter: &str, deadline: Duration) -> Result<Self, MonitorError> {
        if adapter.is_empty()
            || adapter.len() > 32
            || !adapter
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(MonitorError::BadAdapter(adapter.chars().take(32).collect()));
        }
        let adapter_path = Path::new(format!("/org/bluez/{adapter}"))
            .map_err(|_| MonitorError::BadAdapter(adapter.to_owned()))?;
        let (resource, conn) = dbus_tokio::connection::new_system_sync()
            .map_err(|e| MonitorError::Dbus(e.to_string()))?;
        let (tx, mut events) = mpsc::channel(EVENTS);
        let lost = tx.clone();
        let task = tokio::spawn(async move {
            let e = resource.await;
            tracing::debug!(error = %e, "advertisement monitor connection closed");
            let _ = lost.try_send(MonitorEvent::ConnectionLost);
        });
        let mut m = Self {
            conn,
            adapter_path,
            task,
            events: mpsc::channel(1).1,
        };
        let timed = |what: &'static str| move |_| MonitorError::Timeout(what);

        // only the current owner of org.bluez may call the exported objects
        let bus = Proxy::new(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            deadline,
            m.conn.clone(),
        );
        let (owner,): (String,) = tokio::time::timeout(
            deadline,
            bus.method_call("org.freedesktop.DBus", "GetNameOwner", ("org.bluez",)),
        )
        .await
        .map_err(timed("who owns org.bluez"))?
        .map_err(|e| MonitorError::Dbus(e.to_string()))?;

        let bluez = Proxy::new(
            "org.bluez",
            m.adapter_path.clone(),
            deadline,
            m.conn.clone(),
        );
        // the manager is there when the adapter object lists its interface
        let (xml,): (String,) = tokio::time::timeout(
            deadline,
            bluez.method_call(INTROSPECTABLE, "Introspect", ()),
        )
        .await
        .map_err(timed("the adapter's introspection"))?
        .map_err(|e| MonitorError::Dbus(e.to_string()))?;
        if !lists_interface(&xml, MANAGER) {
            return Err(MonitorError::Unsupported(m.adapter_path.to_string()));
        }
        let types: Vec<String> =
            match tokio::time::timeout(deadline, bluez.get(MANAGER, "SupportedMonitorTypes"))
                .await
                .map_err(timed("the advertisement monitor manager's properties"))?
            {
                Ok(t) => t,
                Err(e) if missing(&e) => {
                    return Err(MonitorError::Unsupported(m.adapter_path.to_string()));
                }
                Err(e) => return Err(MonitorError::Dbus(e.to_string())),
            };
        if !types.iter().any(|t| t == "or_patterns") {
            let offered: Vec<String> = types.into_iter().take(8).collect();
            return Err(MonitorError::NoOrPatterns(offered.join(", ")));
        }

        m.conn.start_receive(
            MatchRule::new_method_call(),
            Box::new(move |msg, conn| {
                if let Some(reply) = answer(&msg, &owner, &tx)
                    && !msg.get_no_reply()
                {
                    let _ = conn.send(reply);
                }
                true
            }),
        );
        let root = Path::from(ROOT);
        let r: Result<(), dbus::Error> = tokio::time::timeout(
            deadline,
            bluez.method_call(MANAGER, "RegisterMonitor", (root,)),
        )
        .await
        .map_err(timed("RegisterMonitor"))?;
        r.map_err(|e| {
            MonitorError::Refused(format!(
                "{}: {}",
                e.name().unwrap_or("error"),
                e.message().unwrap_or_default()
            ))
        })?;
        loop {
            match tokio::time::timeout(deadline, events.recv()).await {
                Err(_) => return Err(MonitorError::Timeout("the monitor's activation")),
                Ok(None) | Ok(Some(MonitorEvent::ConnectionLost)) => {
                    return Err(MonitorError::Dbus("the connection closed".into()));
                }
                Ok(Some(MonitorEvent::Released)) => return Err(MonitorError::Released),
                Ok(Some(MonitorEvent::Activated)) => break,
                Ok(Some(_)) => {}
            }
        }
        m.events = events;
        Ok(m)
    }

    /// Unregisters the monitor (best effort, within `deadline`) and closes the connection.
    pub async fn unregister(self, deadline: Duration) {
        let bluez = Proxy::new(
            "org.bluez",
            self.adapter_path.clone(),
            deadline,
            self.conn.clone(),
        );
        let call: dbus::nonblock::MethodReply<()> =
            bluez.method_call(MANAGER, "UnregisterMonitor", (Path::from(ROOT),));
        let _ = tokio::time::timeout(deadline, call).await;
    }
}

/// Whether introspection data names `iface` (a plain search: nothing else of the XML is used).
fn lists_interface(xml: &str, iface: &str) -> bool {
    xml.contains(&format!("<interface name=\"{iface}\""))
}

/// Whether a D-Bus error says the manager interface or its property is not there.
fn missing(e: &dbus::Error) -> bool {
    e.name().is_some_and(|n| {
        n.ends_with(".UnknownInterface")
            || n.ends_with(".UnknownProperty")
            || n == "org.freedesktop.DBus.Error.UnknownMethod"
            || n == "org.freedesktop.DBus.Error.UnknownObject"
            || n == "org.freedesktop.DBus.Error.InvalidArgs"
    })
}

fn error(msg: &Message, name: &'static str, text: &str) -> Message {
    let name = ErrorName::from(name);
    let text = std::ffi::CString::new(text).unwrap_or_default();
    msg.error(&name, &text)
}

/// The reply to one method call on Warden's monitor connection (`None`: nothing to send).
fn answer(msg: &Message, owner: &str, events: &mpsc::Sender<MonitorEvent>) -> Option<Message> {
    if msg.msg_type() != MessageType::MethodCall {
        return None;
    }
    if msg.sender().as_deref() != Some(owner) {
        return Some(error(
            msg,
            "org.freedesktop.DBus.Error.AccessDenied",
            "only BlueZ may call Warden's advertisement monitor",
        ));
    }
    let path = msg.path();
    let path = path.as_deref().unwrap_or_default();
    let iface = msg.interface();
    let iface = iface.as_deref().unwrap_or_default();
    let member = msg.member();
    let member = member.as_deref().unwrap_or_default();
    match (path, iface, member) {
        (ROOT, OBJECT_MANAGER, "GetManagedObjects") => {
            let mut ifaces: HashMap<String, PropMap> = HashMap::new();
            ifaces.insert(MONITOR.to_owned(), monitor_properties());
            let mut objects: HashMap<Path<'static>, HashMap<String, PropMap>> = HashMap::new();
            objects.insert(Path::from(MONITOR_PATH), ifaces);
            Some(msg.method_return().append1(objects))
        }
        (MONITOR_PATH, PROPERTIES, "GetAll") => match msg.read1::<&str>() {
            Ok(MONITOR) => Some(msg.method_return().append1(monitor_properties())),
            Ok(_) => Some(msg.method_return().append1(PropMap::new())),
            Err(_) => Some(error(
                msg,
                "org.freedesktop.DBus.Error.InvalidArgs",
                "GetAll takes an interface name",
            )),
        },
        (MONITOR_PATH, PROPERTIES, "Get") => {
            let found = msg
                .read2::<&str, &str>()
                .ok()
                .filter(|(i, _)| *i == MONITOR)
                .and_then(|(_, name)| monitor_properties().remove(name));
            Some(match found {
                Some(v) => msg.method_return().append1(v),
                None => error(
                    msg,
                    "org.freedesktop.DBus.Error.UnknownProperty",
                    "no such property",
                ),
            })
        }
        (MONITOR_PATH, MONITOR, m) => {
            let ev = match m {
                "Activate" => MonitorEvent::Activated,
                "Release" => MonitorEvent::Released,
                "DeviceFound" | "DeviceLost" => {
                    let Ok(dev) = msg.read1::<Path>() else {
                        return Some(error(
                            msg,
                            "org.freedesktop.DBus.Error.InvalidArgs",
                            "expected an object path",
                        ));
                    };
                    let dev: String = dev.chars().take(128).collect();
                    if m == "DeviceFound" {
                        MonitorEvent::DeviceFound(dev)
                    } else {
                        MonitorEvent::DeviceLost(dev)
                    }
                }
                _ => {
                    return Some(error(
                        msg,
                        "org.freedesktop.DBus.Error.UnknownMethod",
                        "no such method",
                    ));
                }
            };
            // full: dropped (a burst of DeviceFound); the adverts still arrive as properties
            let _ = events.try_send(ev);
            Some(msg.method_return())
        }
        (ROOT | MONITOR_PATH, INTROSPECTABLE, "Introspect") => {
            Some(msg.method_return().append1(introspection(path)))
        }
        _ => Some(error(
            msg,
            "org.freedesktop.DBus.Error.UnknownMethod",
            "no such object or method",
        )),
    }
}

fn introspection(path: &str) -> String {
    let body = if path == ROOT {
        format!(
            "<interface name=\"{OBJECT_MANAGER}\"><method name=\"GetManagedObjects\"><arg type=\"a{{oa{{sa{{sv}}}}}}\" direction=\"out\"/></method></interface><node name=\"bthome\"/>"
        )
    } else {
        format!(
            "<interface name=\"{MONITOR}\"><method name=\"Release\"/><method name=\"Activate\"/><method name=\"DeviceFound\"><arg type=\"o\" direction=\"in\"/></method><method name=\"DeviceLost\"><arg type=\"o\" direction=\"in\"/></method><property name=\"Type\" type=\"s\" access=\"read\"/><property name=\"Patterns\" type=\"a(yyay)\" access=\"read\"/><property name=\"RSSISamplingPeriod\" type=\"q\" access=\"read\"/></interface>"
        )
    };
    format!("<node>{body}</node>")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn call(sender: &str, path: &str, iface: &str, member: &str) -> Message {
        let mut m = Message::new_method_call(":1.1", path, iface, member).unwrap();
        m.set_sender(Some(sender.into()));
        // as if received: a reply needs the call's serial
        m.set_serial(7);
        m
    }

    #[test]
    fn the_pattern_is_bthome_service_data() {
        assert_eq!(patterns(), vec![(0, 0x16, vec![0xd2, 0xfc])]);
    }

    #[test]
    fn the_manager_is_found_by_its_interface_name() {
        let xml = "<node><interface name=\"org.bluez.Adapter1\"></interface><interface name=\"org.bluez.AdvertisementMonitorManager1\"><property name=\"SupportedMonitorTypes\" type=\"as\" access=\"read\"/></interface></node>";
        assert!(lists_interface(xml, MANAGER));
        assert!(!lists_interface(
            "<node><interface name=\"org.bluez.Adapter1\"/></node>",
            MANAGER
        ));
        assert!(!lists_interface(
            "<node><interface name=\"org.bluez.AdvertisementMonitorManager10\"/></node>",
            MANAGER
        ));
    }

    #[test]
    fn only_bluez_may_call_the_monitor() {
        let (tx, mut rx) = mpsc::channel(4);
        let r = answer(&call(":1.9", MONITOR_PATH, MONITOR, "Release"), ":1.2", &tx).unwrap();
        assert_eq!(r.msg_type(), MessageType::Error);
        assert!(
            rx.try_recv().is_err(),
            "a stranger's Release is not passed on"
        );
        let r = answer(
            &call(":1.2", MONITOR_PATH, MONITOR, "Activate"),
            ":1.2",
            &tx,
        )
        .unwrap();
        assert_eq!(r.msg_type(), MessageType::MethodReturn);
        assert_eq!(rx.try_recv().unwrap(), MonitorEvent::Activated);
    }

    #[test]
    fn bluez_reads_one_bthome_monitor() {
        let (tx, _rx) = mpsc::channel(4);
        let r = answer(
            &call(":1.2", ROOT, OBJECT_MANAGER, "GetManagedObjects"),
            ":1.2",
            &tx,
        )
        .unwrap();
        let objects: HashMap<Path<'static>, HashMap<String, PropMap>> = r.read1().unwrap();
        let props = &objects[&Path::from(MONITOR_PATH)][MONITOR];
        assert_eq!(props["Type"].0.as_str(), Some("or_patterns"));
        assert_eq!(props["RSSISamplingPeriod"].0.as_u64(), Some(0));
        // a device path that is not an object path, and unknown members, are typed D-Bus errors
        let bad = call(":1.2", MONITOR_PATH, MONITOR, "DeviceFound").append1("not a path");
        let r = answer(&bad, ":1.2", &tx).unwrap();
        assert_eq!(r.msg_type(), MessageType::Error);
        let r = answer(
            &call(":1.2", "/elsewhere", MONITOR, "Activate"),
            ":1.2",
            &tx,
        )
        .unwrap();
        assert_eq!(r.msg_type(), MessageType::Error);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever a caller sends to the monitor's objects (any member of the interfaces it
            /// serves, with string, path or byte arguments), the answer is a reply or a typed
            /// D-Bus error, never a panic; a caller that is not BlueZ only ever gets an error and
            /// nothing reaches the run loop.
            #[test]
            fn any_call_is_answered_without_panic(
                from_bluez in any::<bool>(),
                path in prop::sample::select(vec![ROOT, MONITOR_PATH, "/", "/org/warden"]),
                iface in prop::sample::select(vec![OBJECT_MANAGER, PROPERTIES, MONITOR, INTROSPECTABLE, "org.example.X"]),
                member in prop::sample::select(vec!["GetManagedObjects", "Get", "GetAll", "Set", "Activate", "Release", "DeviceFound", "DeviceLost", "Introspect", "Other"]),
                text in "\\PC{0,40}",
                bytes in proptest::collection::vec(any::<u8>(), 0..40),
                arg in 0u8..4,
            ) {
                let (tx, mut rx) = mpsc::channel(4);
                let sender = if from_bluez { ":1.2" } else { ":1.9" };
                let mut m = call(sender, path, iface, member);
                m = match arg {
                    0 => m,
                    1 => m.append1(text.as_str()),
                    2 => m.append2(MONITOR, text.as_str()),
                    _ => m.append1(bytes),
                };
                let r = answer(&m, ":1.2", &tx);
                prop_assert!(r.is_some());
                if !from_bluez {
                    prop_assert_eq!(r.map(|r| r.msg_type()), Some(MessageType::Error));
                    prop_assert!(rx.try_recv().is_err());
                }
            }
        }
    }
}
