//! What the adapter remembers about each device in its network (address, how it joined, what the
//! interview learned), kept in the adapter's sealed state store so a restart or a replugged dongle
//! resumes without re-interviewing or re-admitting anyone.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use warden_core::{DeviceId, StateStore};

use crate::coordinator::Ieee;

const PREFIX: &str = "dev/";

/// One endpoint's clusters, from its simple descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: u8,
    pub profile: u16,
    pub device_type: u16,
    pub input_clusters: Vec<u16>,
    pub output_clusters: Vec<u16>,
}

/// A device the adapter admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub ieee: u64,
    pub nwk: u16,
    /// Joined with its own install-code link key.
    pub install_code: bool,
    #[serde(default)]
    pub sleepy: bool,
    #[serde(default)]
    pub mains_powered: bool,
    #[serde(default)]
    pub manufacturer_code: Option<u16>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub sw_build: Option<String>,
    #[serde(default)]
    pub date_code: Option<String>,
    #[serde(default)]
    pub power_source: Option<u8>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// IAS zone type per endpoint (decides what an alarm bit means).
    #[serde(default)]
    pub zone_types: Vec<(u8, u16)>,
    #[serde(default)]
    pub interviewed: bool,
    pub joined_ms: u64,
}

impl Device {
    pub fn new(ieee: Ieee, nwk: u16, install_code: bool) -> Self {
        Self {
            ieee: ieee.0,
            nwk,
            install_code,
            sleepy: false,
            mains_powered: false,
            manufacturer_code: None,
            manufacturer: None,
            model: None,
            sw_build: None,
            date_code: None,
            power_source: None,
            endpoints: Vec::new(),
            zone_types: Vec::new(),
            interviewed: false,
            joined_ms: warden_core::now_ms(),
        }
    }

    pub fn ieee(&self) -> Ieee {
        Ieee(self.ieee)
    }

    pub fn id(&self) -> DeviceId {
        device_id(self.ieee())
    }

    /// The endpoint that serves `cluster` (the first one, as most devices have one).
    pub fn endpoint_for(&self, cluster: u16) -> Option<u8> {
        self.endpoints
            .iter()
            .find(|e| e.input_clusters.contains(&cluster))
            .map(|e| e.id)
    }

    pub fn zone_type(&self, endpoint: u8) -> Option<u16> {
        self.zone_types
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, t)| *t)
    }

    /// `1.2.3 (20260101)`: the firmware evidence the registry keeps.
    pub fn firmware(&self) -> Option<String> {
        match (&self.sw_build, &self.date_code) {
            (Some(b), Some(d)) => Some(format!("{b} ({d})")),
            (Some(b), None) => Some(b.clone()),
            (None, Some(d)) => Some(format!("date code {d}")),
            (None, None) => None,
        }
    }

    pub fn power_source_text(&self) -> Option<&'static str> {
        Some(match self.power_source? & 0x7f {
            0x01 | 0x02 => "mains",
            0x03 => "battery",
            0x04 => "dc",
            0x05 | 0x06 => "emergency mains",
            _ => "unknown",
        })
    }
}

/// `zigbee:<ieee as 16 hex digits>`.
pub fn device_id(ieee: Ieee) -> DeviceId {
    match DeviceId::new(crate::PROTOCOL, &ieee.hex()) {
        Ok(d) => d,
        Err(_) => unreachable!("16 hex digits are a valid device address"),
    }
}

/// The IEEE address of a `zigbee:` device id.
pub fn parse_ieee(id: &DeviceId) -> Option<Ieee> {
    if id.protocol() != crate::PROTOCOL || id.address().len() != 16 {
        return None;
    }
    u64::from_str_radix(id.address(), 16).ok().map(Ieee)
}

/// The devices, by IEEE address, with an index by network address.
#[derive(Default)]
pub struct Devices {
    by_ieee: HashMap<u64, Device>,
    by_nwk: HashMap<u16, u64>,
}

impl Devices {
    /// Loads every stored device; unreadable entries are skipped and reported.
    pub fn load(store: &dyn StateStore) -> (Self, Vec<String>) {
        let mut d = Self::default();
        let mut bad = Vec::new();
        for key in store.keys(PREFIX).unwrap_or_default() {
            match store.get(&key) {
                Ok(Some(v)) => match serde_json::from_slice::<Device>(&v) {
                    Ok(dev) => d.insert_mem(dev),
                    Err(e) => bad.push(format!("{key}: {e}")),
                },
                Ok(None) => {}
                Err(e) => bad.push(format!("{key}: {e}")),
            }
        }
        (d, bad)
    }

    fn insert_mem(&mut self, dev: Device) {
        if let Some(old) = self.by_ieee.get(&dev.ieee)
            && old.nwk != dev.nwk
        {
            self.by_nwk.remove(&old.nwk);
        }
        self.by_nwk.insert(dev.nwk, dev.ieee);
        self.by_ieee.insert(dev.ieee, dev);
    }

    /// Stores the device (durably) and indexes it.
    pub fn save(&mut self, store: &dyn StateStore, dev: Device) -> Result<(), String> {
        let bytes = serde_json::to_vec(&dev).map_err(|e| e.to_string())?;
        store
            .put(&format!("{PREFIX}{:016x}", dev.ieee), &bytes)
            .map_err(|e| e.to_string())?;
        self.insert_mem(dev);
        Ok(())
    }

    pub fn remove(&mut self, store: &dyn StateStore, ieee: Ieee) -> Option<Device> {
        let _ = store.delete(&format!("{PREFIX}{:016x}", ieee.0));
        let d = self.by_ieee.remove(&ieee.0)?;
        if self.by_nwk.get(&d.nwk) == Some(&d.ieee) {
            self.by_nwk.remove(&d.nwk);
        }
        Some(d)
    }

    pub fn get(&self, ieee: Ieee) -> Option<&Device> {
        self.by_ieee.get(&ieee.0)
    }

    pub fn by_nwk(&self, nwk: u16) -> Option<&Device> {
        self.by_ieee.get(self.by_nwk.get(&nwk)?)
    }

    pub fn len(&self) -> usize {
        self.by_ieee.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ieee.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &Device> {
        self.by_ieee.values()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::testing::MemoryState;

    #[test]
    fn devices_survive_a_reload_and_a_new_network_address() {
        let store = MemoryState::default();
        let mut d = Devices::default();
        let ieee = Ieee(0x00124b001caabb01);
        d.save(&store, Device::new(ieee, 0x1a2b, true)).unwrap();
        let mut moved = d.get(ieee).unwrap().clone();
        moved.nwk = 0x3c4d;
        d.save(&store, moved).unwrap();
        assert!(d.by_nwk(0x1a2b).is_none());
        let (again, bad) = Devices::load(&store);
        assert!(bad.is_empty());
        assert_eq!(again.by_nwk(0x3c4d).unwrap().ieee(), ieee);
        assert!(again.get(ieee).unwrap().install_code);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let ieee = Ieee(0x00124b001caabb01);
        let id = device_id(ieee);
        assert_eq!(id.to_string(), "zigbee:00124b001caabb01");
        assert_eq!(parse_ieee(&id), Some(ieee));
        assert_eq!(
            parse_ieee(&"modbus:00124b001caabb01".parse().unwrap()),
            None
        );
        assert_eq!(parse_ieee(&"zigbee:xyz".parse().unwrap()), None);
    }
}
