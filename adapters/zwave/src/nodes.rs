//! The adapter's durable table of the nodes it knows: what their interview found (device
//! classes, command classes, manufacturer, firmware), kept in the adapter's sealed state store
//! under `node/<home id>/<node id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_core::{DeviceId, StateStore};

use crate::func::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Node {
    pub id: NodeId,
    pub basic: u8,
    pub generic: u8,
    pub specific: u8,
    pub listening: bool,
    pub command_classes: Vec<u8>,
    pub manufacturer: Option<u16>,
    pub product_type: Option<u16>,
    pub product_id: Option<u16>,
    pub firmware: Option<String>,
    /// The interview finished (every step answered or timed out).
    pub interviewed: bool,
    /// The S2 class granted at inclusion (`s2-unauthenticated`…); `None`: included without security.
    #[serde(default)]
    pub security: Option<String>,
}

impl Node {
    pub fn supports(&self, cc: u8) -> bool {
        self.command_classes.contains(&cc)
    }

    pub fn class(&self) -> Option<crate::s2::session::Class> {
        crate::s2::session::Class::ALL
            .into_iter()
            .find(|c| Some(c.as_str()) == self.security.as_deref())
    }
}

/// `zwave:<home id as 8 hex digits>-<node id>`.
pub fn device_id(home: u32, node: NodeId) -> DeviceId {
    #[allow(clippy::expect_used)]
    DeviceId::new(crate::PROTOCOL, &format!("{home:08x}-{node}"))
        .expect("hex digits, '-' and digits form a valid address")
}

/// The node id in `zwave:<home>-<node>` when the home id is `home`.
pub fn node_of(home: u32, id: &DeviceId) -> Option<NodeId> {
    if id.protocol() != crate::PROTOCOL {
        return None;
    }
    let (h, n) = id.address().split_once('-')?;
    if u32::from_str_radix(h, 16).ok()? != home || h.len() != 8 {
        return None;
    }
    n.parse::<NodeId>().ok().filter(|n| (1..=232).contains(n))
}

fn key(home: u32, node: NodeId) -> String {
    format!("node/{home:08x}/{node:03}")
}

#[derive(Debug, Default)]
pub struct Nodes {
    home: u32,
    pub by_id: BTreeMap<NodeId, Node>,
}

impl Nodes {
    /// Loads this network's nodes; a record that does not parse is skipped and named.
    pub fn load(state: &dyn StateStore, home: u32) -> (Self, Vec<String>) {
        let mut by_id = BTreeMap::new();
        let mut bad = Vec::new();
        let prefix = format!("node/{home:08x}/");
        for k in state.keys(&prefix).unwrap_or_default() {
            match state.get(&k) {
                Ok(Some(v)) => match serde_json::from_slice::<Node>(&v) {
                    Ok(n) if (1..=232).contains(&n.id) => {
                        by_id.insert(n.id, n);
                    }
                    _ => bad.push(k),
                },
                _ => bad.push(k),
            }
        }
        (Self { home, by_id }, bad)
    }

    pub fn save(&mut self, state: &dyn StateStore, node: Node) -> Result<(), String> {
        let v = serde_json::to_vec(&node).map_err(|e| e.to_string())?;
        state
            .put(&key(self.home, node.id), &v)
            .map_err(|e| e.to_string())?;
        self.by_id.insert(node.id, node);
        Ok(())
    }

    pub fn forget(&mut self, state: &dyn StateStore, node: NodeId) -> Result<(), String> {
        self.by_id.remove(&node);
        state
            .delete(&key(self.home, node))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::testing::MemoryState;

    #[test]
    fn ids_round_trip_and_other_networks_are_not_ours() {
        let id = device_id(0xc0ffee01, 3);
        assert_eq!(id.to_string(), "zwave:c0ffee01-3");
        assert_eq!(node_of(0xc0ffee01, &id), Some(3));
        assert_eq!(node_of(0xc0ffee02, &id), None);
        for bad in [
            "zwave:c0ffee01-0",
            "zwave:c0ffee01-233",
            "zwave:c0ffee1-3",
            "zigbee:c0ffee01-3",
        ] {
            assert_eq!(node_of(0xc0ffee01, &bad.parse().unwrap()), None, "{bad}");
        }
    }

    #[test]
    fn the_table_survives_a_reload_and_skips_garbage() {
        let st = MemoryState::default();
        let (mut n, bad) = Nodes::load(&st, 1);
        assert!(bad.is_empty());
        n.save(
            &st,
            Node {
                id: 2,
                command_classes: vec![0x25],
                ..Node::default()
            },
        )
        .unwrap();
        st.put("node/00000001/099", b"{not json").unwrap();
        let (n2, bad) = Nodes::load(&st, 1);
        assert_eq!(n2.by_id.len(), 1);
        assert!(n2.by_id[&2].supports(0x25));
        assert_eq!(bad, vec!["node/00000001/099".to_owned()]);
        let (other, _) = Nodes::load(&st, 2);
        assert!(other.by_id.is_empty());
    }
}
