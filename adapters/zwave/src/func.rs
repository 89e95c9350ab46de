//! Serial API functions Warden uses, with the layouts of their requests, responses and callbacks
//! (8-bit node ids, the Serial API's default). Every parser checks lengths and returns a
//! [`ParseError`]; nothing here indexes blindly.

use std::collections::BTreeSet;

pub const GET_INIT_DATA: u8 = 0x02;
pub const APPLICATION_COMMAND_HANDLER: u8 = 0x04;
pub const GET_CONTROLLER_CAPABILITIES: u8 = 0x05;
pub const GET_CAPABILITIES: u8 = 0x07;
pub const SEND_DATA: u8 = 0x13;
pub const GET_VERSION: u8 = 0x15;
pub const MEMORY_GET_ID: u8 = 0x20;
pub const GET_NODE_PROTOCOL_INFO: u8 = 0x41;
pub const APPLICATION_UPDATE: u8 = 0x49;
pub const ADD_NODE_TO_NETWORK: u8 = 0x4a;
pub const REMOVE_NODE_FROM_NETWORK: u8 = 0x4b;
pub const REQUEST_NODE_INFO: u8 = 0x60;
pub const REMOVE_FAILED_NODE: u8 = 0x61;
pub const APPLICATION_COMMAND_HANDLER_BRIDGE: u8 = 0xa8;

/// Transmit options for SEND_DATA: ACK, auto-route, explore.
pub const TX_OPTIONS: u8 = 0x25;

/// A Z-Wave node id (8-bit addressing: 1–232).
pub type NodeId = u8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: {len} bytes, need at least {need}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("{what}: {detail}")]
    Invalid {
        what: &'static str,
        detail: &'static str,
    },
}

fn need(what: &'static str, data: &[u8], n: usize) -> Result<(), ParseError> {
    if data.len() < n {
        return Err(ParseError::Short {
            what,
            len: data.len(),
            need: n,
        });
    }
    Ok(())
}

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// GET_VERSION's response: the library's version string and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub text: String,
    pub library_type: u8,
}

pub fn parse_version(data: &[u8]) -> Result<Version, ParseError> {
    need("GET_VERSION response", data, 2)?;
    let (text, rest) = data.split_at(data.len() - 1);
    let text: String = text
        .iter()
        .take_while(|b| **b != 0)
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .map(|b| char::from(*b))
        .collect();
    Ok(Version {
        text,
        library_type: byte(rest, 0),
    })
}

/// MEMORY_GET_ID's response: the network's home id and the controller's node id.
pub fn parse_memory_id(data: &[u8]) -> Result<(u32, NodeId), ParseError> {
    need("MEMORY_GET_ID response", data, 5)?;
    let home = u32::from_be_bytes([byte(data, 0), byte(data, 1), byte(data, 2), byte(data, 3)]);
    Ok((home, byte(data, 4)))
}

/// SERIAL_API_GET_CAPABILITIES' response: the stick's application version and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickIdentity {
    pub app_version: u8,
    pub app_revision: u8,
    pub manufacturer: u16,
    pub product_type: u16,
    pub product_id: u16,
}

pub fn parse_capabilities(data: &[u8]) -> Result<StickIdentity, ParseError> {
    need("GET_CAPABILITIES response", data, 8)?;
    Ok(StickIdentity {
        app_version: byte(data, 0),
        app_revision: byte(data, 1),
        manufacturer: u16::from_be_bytes([byte(data, 2), byte(data, 3)]),
        product_type: u16::from_be_bytes([byte(data, 4), byte(data, 5)]),
        product_id: u16::from_be_bytes([byte(data, 6), byte(data, 7)]),
    })
}

/// SERIAL_API_GET_INIT_DATA's response: the nodes the controller holds.
pub fn parse_init_data(data: &[u8]) -> Result<BTreeSet<NodeId>, ParseError> {
    need("GET_INIT_DATA response", data, 3)?;
    let bitmap_len = usize::from(byte(data, 2));
    if bitmap_len > 29 {
        return Err(ParseError::Invalid {
            what: "GET_INIT_DATA response",
            detail: "node bitmap longer than 29 bytes",
        });
    }
    let bitmap = data.get(3..3 + bitmap_len).ok_or(ParseError::Short {
        what: "GET_INIT_DATA node bitmap",
        len: data.len(),
        need: 3 + bitmap_len,
    })?;
    Ok(bitmap_nodes(bitmap))
}

fn bitmap_nodes(bitmap: &[u8]) -> BTreeSet<NodeId> {
    let mut nodes = BTreeSet::new();
    for (i, b) in bitmap.iter().enumerate() {
        for bit in 0..8 {
            if b & (1 << bit) != 0
                && let Ok(id) = u8::try_from(i * 8 + bit + 1)
                && id <= 232
            {
                nodes.insert(id);
            }
        }
    }
    nodes
}

/// GET_NODE_PROTOCOL_INFO's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolInfo {
    pub listening: bool,
    pub routing: bool,
    /// Frequently listening (FLiRS: beams wake it).
    pub flirs: bool,
    pub basic: u8,
    pub generic: u8,
    pub specific: u8,
}

pub fn parse_protocol_info(data: &[u8]) -> Result<ProtocolInfo, ParseError> {
    need("GET_NODE_PROTOCOL_INFO response", data, 6)?;
    let cap = byte(data, 0);
    let sec = byte(data, 1);
    if byte(data, 4) == 0 {
        return Err(ParseError::Invalid {
            what: "GET_NODE_PROTOCOL_INFO response",
            detail: "generic device class 0: the controller does not know this node",
        });
    }
    Ok(ProtocolInfo {
        listening: cap & 0x80 != 0,
        routing: cap & 0x40 != 0,
        flirs: sec & 0x60 != 0,
        basic: byte(data, 3),
        generic: byte(data, 4),
        specific: byte(data, 5),
    })
}

/// A node information frame: device classes and the command classes it supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub node: NodeId,
    pub basic: u8,
    pub generic: u8,
    pub specific: u8,
    pub command_classes: Vec<u8>,
}

/// `len basic generic specific cc…` as carried by APPLICATION_UPDATE and ADD_NODE callbacks.
fn parse_nif(node: NodeId, data: &[u8], what: &'static str) -> Result<NodeInfo, ParseError> {
    need(what, data, 1)?;
    let len = usize::from(byte(data, 0));
    if len == 0 {
        return Ok(NodeInfo {
            node,
            ..NodeInfo::default()
        });
    }
    if len < 3 {
        return Err(ParseError::Invalid {
            what,
            detail: "node info shorter than its three device classes",
        });
    }
    let body = data.get(1..1 + len).ok_or(ParseError::Short {
        what,
        len: data.len(),
        need: 1 + len,
    })?;
    let mut command_classes = Vec::new();
    for &cc in body.get(3..).unwrap_or(&[]) {
        // 0xEF marks the end of supported and the start of controlled command classes.
        if cc == 0xef {
            break;
        }
        command_classes.push(cc);
    }
    Ok(NodeInfo {
        node,
        basic: byte(body, 0),
        generic: byte(body, 1),
        specific: byte(body, 2),
        command_classes,
    })
}

/// APPLICATION_UPDATE (a request from the controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationUpdate {
    NodeInfo(NodeInfo),
    /// REQUEST_NODE_INFO failed: the node did not answer.
    NodeInfoFailed,
    Other {
        status: u8,
        node: NodeId,
    },
}

pub fn parse_application_update(data: &[u8]) -> Result<ApplicationUpdate, ParseError> {
    need("APPLICATION_UPDATE", data, 2)?;
    let status = byte(data, 0);
    let node = byte(data, 1);
    Ok(match status {
        0x84 => ApplicationUpdate::NodeInfo(parse_nif(
            node,
            data.get(2..).unwrap_or(&[]),
            "APPLICATION_UPDATE node info",
        )?),
        0x81 => ApplicationUpdate::NodeInfoFailed,
        _ => ApplicationUpdate::Other { status, node },
    })
}

/// The frame-type bits of an APPLICATION_COMMAND_HANDLER rxStatus: 0 singlecast, 0x04 broadcast,
/// 0x08 multicast.
pub const RX_TYPE_MASK: u8 = 0x0c;

/// A command-class frame from a node (APPLICATION_COMMAND_HANDLER or its bridge form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub source: NodeId,
    pub rx_status: u8,
    pub payload: Vec<u8>,
    pub rssi: Option<i8>,
}

/// The most command-class bytes Warden accepts from one frame (the Serial API frame bounds it too).
pub const MAX_PAYLOAD: usize = 64;

pub fn parse_command_handler(func: u8, data: &[u8]) -> Result<Incoming, ParseError> {
    let what = "APPLICATION_COMMAND_HANDLER";
    // Plain: rxStatus src len payload [rssi]; bridge: rxStatus dst src len payload [mcast] [rssi].
    let (rx_status, source, len_at) = if func == APPLICATION_COMMAND_HANDLER_BRIDGE {
        need(what, data, 4)?;
        (byte(data, 0), byte(data, 2), 3)
    } else {
        need(what, data, 3)?;
        (byte(data, 0), byte(data, 1), 2)
    };
    let len = usize::from(byte(data, len_at));
    if len == 0 || len > MAX_PAYLOAD {
        return Err(ParseError::Invalid {
            what,
            detail: "command length is 0 or above the limit",
        });
    }
    let payload = data
        .get(len_at + 1..len_at + 1 + len)
        .ok_or(ParseError::Short {
            what,
            len: data.len(),
            need: len_at + 1 + len,
        })?
        .to_vec();
    let rssi = if func == APPLICATION_COMMAND_HANDLER {
        data.get(len_at + 1 + len).map(|b| i8::from_be_bytes([*b]))
    } else {
        None
    };
    if source == 0 || source > 232 {
        return Err(ParseError::Invalid {
            what,
            detail: "source node id outside 1–232",
        });
    }
    Ok(Incoming {
        source,
        rx_status,
        payload,
        rssi: rssi.filter(|r| *r < 0x7d),
    })
}

/// An ADD_NODE_TO_NETWORK / REMOVE_NODE_FROM_NETWORK callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionStatus {
    pub callback_id: u8,
    pub status: u8,
    pub info: Option<NodeInfo>,
}

pub fn parse_inclusion_callback(data: &[u8]) -> Result<InclusionStatus, ParseError> {
    need("inclusion callback", data, 2)?;
    let callback_id = byte(data, 0);
    let status = byte(data, 1);
    let info = match (data.get(2), data.get(3..)) {
        (Some(&node), Some(rest)) if node != 0 && !rest.is_empty() => {
            Some(parse_nif(node, rest, "inclusion callback node info")?)
        }
        (Some(&node), _) if node != 0 => Some(NodeInfo {
            node,
            ..NodeInfo::default()
        }),
        _ => None,
    };
    Ok(InclusionStatus {
        callback_id,
        status,
        info,
    })
}

/// ADD_NODE_TO_NETWORK callback statuses.
pub mod add_status {
    pub const READY: u8 = 0x01;
    pub const NODE_FOUND: u8 = 0x02;
    pub const ADDING_END_NODE: u8 = 0x03;
    pub const ADDING_CONTROLLER: u8 = 0x04;
    pub const PROTOCOL_DONE: u8 = 0x05;
    pub const DONE: u8 = 0x06;
    pub const FAILED: u8 = 0x07;
    pub const NOT_PRIMARY: u8 = 0x23;
}

/// ADD_NODE_TO_NETWORK modes.
pub mod add_mode {
    pub const ANY: u8 = 0x01;
    pub const STOP: u8 = 0x05;
    pub const HIGH_POWER: u8 = 0x80;
    pub const NETWORK_WIDE: u8 = 0x40;
}

/// SEND_DATA's transmit status (its callback).
pub fn tx_status_text(status: u8) -> &'static str {
    match status {
        0x00 => "ok",
        0x01 => "no ACK from the node",
        0x02 => "transmit failed",
        0x03 => "routing not idle",
        0x04 => "no route",
        0x05 => "verified delivery failed",
        _ => "unknown transmit status",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_mock_controllers_version_string_is_read() {
        let mut d = b"Z-Wave 7.17.99\0".to_vec();
        d.push(0x01);
        let v = parse_version(&d).unwrap();
        assert_eq!(v.text, "Z-Wave 7.17.99");
        assert_eq!(v.library_type, 1);
    }

    #[test]
    fn init_data_lists_nodes_from_the_bitmap() {
        let mut d = vec![0x08, 0x00, 29];
        let mut bm = vec![0u8; 29];
        bm[0] = 0b0000_0111; // nodes 1, 2, 3
        bm[28] = 0xff; // nodes 225–232 (233–… are not nodes)
        d.extend(bm);
        let n = parse_init_data(&d).unwrap();
        assert!(n.contains(&1) && n.contains(&2) && n.contains(&3) && n.contains(&232));
        assert_eq!(n.len(), 3 + 8);
        assert!(parse_init_data(&[0x08, 0x00, 30]).is_err());
        assert!(parse_init_data(&[0x08, 0x00, 29, 0xff]).is_err());
    }

    #[test]
    fn the_sensor_report_example_is_an_incoming_frame_from_node_3() {
        let i = parse_command_handler(
            APPLICATION_COMMAND_HANDLER,
            &[0x00, 0x03, 0x06, 0x31, 0x05, 0x01, 0x22, 0x00, 0xd7],
        )
        .unwrap();
        assert_eq!(i.source, 3);
        assert_eq!(i.payload, vec![0x31, 0x05, 0x01, 0x22, 0x00, 0xd7]);
        assert_eq!(i.rssi, None);
        assert!(parse_command_handler(APPLICATION_COMMAND_HANDLER, &[0, 3, 9, 0x31]).is_err());
        assert!(parse_command_handler(APPLICATION_COMMAND_HANDLER, &[0, 0, 1, 0x20]).is_err());
        assert!(parse_command_handler(APPLICATION_COMMAND_HANDLER, &[0, 3, 0]).is_err());
    }

    #[test]
    fn node_info_stops_at_the_controlled_mark() {
        let u = parse_application_update(&[0x84, 0x02, 0x06, 0x04, 0x10, 0x01, 0x25, 0xef, 0x20])
            .unwrap();
        assert_eq!(
            u,
            ApplicationUpdate::NodeInfo(NodeInfo {
                node: 2,
                basic: 4,
                generic: 0x10,
                specific: 0x01,
                command_classes: vec![0x25],
            })
        );
        assert!(parse_application_update(&[0x84, 0x02, 0x02, 0x04, 0x10]).is_err());
        assert!(parse_application_update(&[0x84, 0x02, 0x09, 0x04]).is_err());
    }

    #[test]
    fn inclusion_callbacks_with_and_without_node_info() {
        let s = parse_inclusion_callback(&[0x07, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!((s.callback_id, s.status, s.info), (7, 1, None));
        let s = parse_inclusion_callback(&[0x07, 0x03, 0x04, 0x05, 0x04, 0x21, 0x01, 0x31, 0x72])
            .unwrap();
        let info = s.info.unwrap();
        assert_eq!(info.node, 4);
        assert_eq!(info.command_classes, vec![0x31, 0x72]);
    }
}
