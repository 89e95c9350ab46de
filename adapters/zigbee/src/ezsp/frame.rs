//! EZSP frames: headers and the parameter layouts this driver uses (EZSP protocol v13).
//!
//! Header formats:
//! - legacy (protocol < 8): `seq, frame control, frame id` — used only for the first `version`
//!   command, as every NCP understands it;
//! - extended (protocol >= 8): `seq, FC low, FC high (0x01 = format version 1), frame id (u16 LE)`.
//!
//! FC low bit 7 marks a response; bits 4..3 give the callback type (01 synchronous, 10
//! asynchronous); bit 0 overflow, bit 1 truncated. All multi-byte numbers are little-endian.
//! Every layout below was checked against bellows 1.2.1 (`bellows/ezsp/v13/commands.py` and the
//! v4..v12 schemas it inherits); the tests hold vectors serialised by bellows.

use crate::coordinator::{Ieee, NodeDescriptor, SimpleDescriptor};

/// Frame ids (EZSP v13).
pub mod id {
    pub const VERSION: u16 = 0x0000;
    pub const ADD_ENDPOINT: u16 = 0x0002;
    pub const NETWORK_INIT: u16 = 0x0017;
    pub const NETWORK_STATE: u16 = 0x0018;
    pub const STACK_STATUS_HANDLER: u16 = 0x0019;
    pub const FORM_NETWORK: u16 = 0x001E;
    pub const LEAVE_NETWORK: u16 = 0x0020;
    pub const PERMIT_JOINING: u16 = 0x0022;
    pub const CHILD_JOIN_HANDLER: u16 = 0x0023;
    pub const TRUST_CENTER_JOIN_HANDLER: u16 = 0x0024;
    pub const GET_EUI64: u16 = 0x0026;
    pub const GET_NODE_ID: u16 = 0x0027;
    pub const GET_NETWORK_PARAMETERS: u16 = 0x0028;
    pub const SEND_UNICAST: u16 = 0x0034;
    pub const MESSAGE_SENT_HANDLER: u16 = 0x003F;
    pub const INCOMING_MESSAGE_HANDLER: u16 = 0x0045;
    pub const SET_CONFIGURATION_VALUE: u16 = 0x0053;
    pub const SET_POLICY: u16 = 0x0055;
    pub const INVALID_COMMAND: u16 = 0x0058;
    pub const SET_INITIAL_SECURITY_STATE: u16 = 0x0068;
    pub const REMOVE_DEVICE: u16 = 0x00A8;
    pub const IMPORT_TRANSIENT_KEY: u16 = 0x0111;
}

/// Protocol version the host asks for.
pub const DESIRED_VERSION: u8 = 13;
/// First protocol version with the extended header.
pub const MIN_EXTENDED_VERSION: u8 = 8;

/// EmberStatus / EzspStatus values the driver looks at.
pub mod status {
    pub const SUCCESS: u8 = 0x00;
    pub const NETWORK_UP: u8 = 0x90;
    pub const NETWORK_DOWN: u8 = 0x91;
    pub const NOT_JOINED: u8 = 0x93;
}

/// `EmberInitialSecurityBitmask` bits.
pub mod security {
    pub const TRUST_CENTER_GLOBAL_LINK_KEY: u16 = 0x0004;
    pub const HAVE_PRECONFIGURED_KEY: u16 = 0x0100;
    pub const HAVE_NETWORK_KEY: u16 = 0x0200;
    pub const REQUIRE_ENCRYPTED_KEY: u16 = 0x0800;
    pub const NO_FRAME_COUNTER_RESET: u16 = 0x1000;
}

/// `EmberApsOption` bits.
pub mod aps_option {
    pub const ENCRYPTION: u16 = 0x0020;
    pub const RETRY: u16 = 0x0040;
    pub const ENABLE_ROUTE_DISCOVERY: u16 = 0x0100;
}

/// `EzspPolicyId::TRUST_CENTER_POLICY` and `EzspDecisionBitmask` bits.
pub mod policy {
    pub const TRUST_CENTER_POLICY: u8 = 0x00;
    pub const ALLOW_JOINS: u8 = 0x01;
    pub const ALLOW_UNSECURED_REJOINS: u8 = 0x02;
    /// Admit a joiner only if the transient key table holds a key for its EUI-64.
    pub const JOINS_USE_INSTALL_CODE_KEY: u8 = 0x10;
}

/// `EzspConfigId` values set at start-up.
pub mod config {
    pub const STACK_PROFILE: u8 = 0x0C;
    pub const SECURITY_LEVEL: u8 = 0x0D;
}

/// `EmberDeviceUpdate::DEVICE_LEFT`.
pub const DEVICE_LEFT: u8 = 0x02;
/// `EmberJoinDecision::DENY_JOIN`.
pub const DENY_JOIN: u8 = 0x02;
/// The well-known Zigbee 3.0 global trust-centre link key.
pub const GLOBAL_LINK_KEY: [u8; 16] = *b"ZigBeeAlliance09";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{what}: frame ends early (need {need} more bytes)")]
    Short { what: &'static str, need: usize },
    #[error("{what}: {extra} unexpected trailing bytes")]
    Trailing { what: &'static str, extra: usize },
    #[error("unsupported EZSP frame format (FC high {0:#04x})")]
    Format(u8),
}

/// Bounds-checked little-endian reader.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Short {
                what: self.what,
                need: n - self.buf.len(),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub fn i8(&mut self) -> Result<i8, FrameError> {
        Ok(i8::from_le_bytes(self.array()?))
    }
    pub fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn ieee(&mut self) -> Result<Ieee, FrameError> {
        Ok(Ieee::from_le_bytes(self.array()?))
    }
    /// One length byte, then that many bytes.
    pub fn lv(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn finish(self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Trailing {
                what: self.what,
                extra: self.buf.len(),
            })
        }
    }
}

/// A command frame with the legacy header (only for the first `version`).
pub fn legacy_version_command(seq: u8, desired: u8) -> Vec<u8> {
    vec![seq, 0x00, 0x00, desired]
}

/// A command frame with the extended header.
pub fn command(seq: u8, frame_id: u16, params: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + params.len());
    out.push(seq);
    out.push(0x00);
    out.push(0x01);
    out.extend_from_slice(&frame_id.to_le_bytes());
    out.extend_from_slice(params);
    out
}

/// A frame from the NCP, header decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub seq: u8,
    pub fc_low: u8,
    pub frame_id: u16,
    pub params: Vec<u8>,
}

impl Received {
    pub fn is_callback(&self) -> bool {
        self.fc_low & 0x18 != 0
    }
    pub fn overflow(&self) -> bool {
        self.fc_low & 0x01 != 0
    }
    pub fn truncated(&self) -> bool {
        self.fc_low & 0x02 != 0
    }

    /// Decode an NCP frame; `extended` once the protocol version is >= 8.
    pub fn parse(raw: &[u8], extended: bool) -> Result<Self, FrameError> {
        let mut r = Reader::new(raw, "EZSP header");
        let seq = r.u8()?;
        let fc_low = r.u8()?;
        let frame_id = if extended {
            let fc_high = r.u8()?;
            if fc_high & 0x03 != 0x01 {
                return Err(FrameError::Format(fc_high));
            }
            r.u16()?
        } else {
            let id = r.u8()?;
            // The NCP may already answer the first version in the extended format.
            if id == 0x01 && r.remaining() >= 2 {
                r.u16()?
            } else {
                u16::from(id)
            }
        };
        Ok(Self {
            seq,
            fc_low,
            frame_id,
            params: r.rest().to_vec(),
        })
    }
}

// ------------------------------------------------------------------ parameters

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionResponse {
    pub protocol: u8,
    pub stack_type: u8,
    pub stack_version: u16,
}

impl VersionResponse {
    pub fn parse(p: &[u8]) -> Result<Self, FrameError> {
        let mut r = Reader::new(p, "version");
        let v = Self {
            protocol: r.u8()?,
            stack_type: r.u8()?,
            stack_version: r.u16()?,
        };
        r.finish()?;
        Ok(v)
    }
    /// `7.4.5.0` from 0x7450.
    pub fn stack_string(&self) -> String {
        let v = self.stack_version;
        format!(
            "{}.{}.{}.{}",
            (v >> 12) & 0xF,
            (v >> 8) & 0xF,
            (v >> 4) & 0xF,
            v & 0xF
        )
    }
}

/// `EmberNetworkParameters` (20 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkParameters {
    pub extended_pan_id: [u8; 8],
    pub pan_id: u16,
    pub tx_power: u8,
    pub channel: u8,
    pub join_method: u8,
    pub nwk_manager_id: u16,
    pub nwk_update_id: u8,
    pub channels: u32,
}

impl NetworkParameters {
    pub fn encode(&self, out: &mut Vec<u8>) {
        // ExtendedPanId is an EUI64-like value: little-endian on the wire.
        let mut ext = self.extended_pan_id;
        ext.reverse();
        out.extend_from_slice(&ext);
        out.extend_from_slice(&self.pan_id.to_le_bytes());
        out.push(self.tx_power);
        out.push(self.channel);
        out.push(self.join_method);
        out.extend_from_slice(&self.nwk_manager_id.to_le_bytes());
        out.push(self.nwk_update_id);
        out.extend_from_slice(&self.channels.to_le_bytes());
    }
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        let mut ext: [u8; 8] = r.array()?;
        ext.reverse();
        Ok(Self {
            extended_pan_id: ext,
            pan_id: r.u16()?,
            tx_power: r.u8()?,
            channel: r.u8()?,
            join_method: r.u8()?,
            nwk_manager_id: r.u16()?,
            nwk_update_id: r.u8()?,
            channels: r.u32()?,
        })
    }
}

/// `getNetworkParameters` response: status, node type, parameters.
pub fn parse_get_network_parameters(p: &[u8]) -> Result<(u8, u8, NetworkParameters), FrameError> {
    let mut r = Reader::new(p, "getNetworkParameters");
    let status = r.u8()?;
    let node_type = r.u8()?;
    let params = NetworkParameters::decode(&mut r)?;
    r.finish()?;
    Ok((status, node_type, params))
}

/// `EmberInitialSecurityState` for `setInitialSecurityState`.
pub fn initial_security_state(
    bitmask: u16,
    preconfigured: &[u8; 16],
    network_key: &[u8; 16],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(43);
    out.extend_from_slice(&bitmask.to_le_bytes());
    out.extend_from_slice(preconfigured);
    out.extend_from_slice(network_key);
    out.push(0); // network key sequence number
    out.extend_from_slice(&[0u8; 8]); // preconfigured trust centre EUI-64: unknown
    out
}

/// `EmberApsFrame` (11 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApsFrame {
    pub profile: u16,
    pub cluster: u16,
    pub src_ep: u8,
    pub dst_ep: u8,
    pub options: u16,
    pub group: u16,
    pub sequence: u8,
}

impl ApsFrame {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.profile.to_le_bytes());
        out.extend_from_slice(&self.cluster.to_le_bytes());
        out.push(self.src_ep);
        out.push(self.dst_ep);
        out.extend_from_slice(&self.options.to_le_bytes());
        out.extend_from_slice(&self.group.to_le_bytes());
        out.push(self.sequence);
    }
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(Self {
            profile: r.u16()?,
            cluster: r.u16()?,
            src_ep: r.u8()?,
            dst_ep: r.u8()?,
            options: r.u16()?,
            group: r.u16()?,
            sequence: r.u8()?,
        })
    }
}

/// `sendUnicast(OUTGOING_DIRECT, dest, apsFrame, messageTag, messageContents)`.
pub fn send_unicast(
    dest: u16,
    aps: &ApsFrame,
    tag: u8,
    data: &[u8],
) -> Result<Vec<u8>, FrameError> {
    let len = u8::try_from(data.len()).map_err(|_| FrameError::Trailing {
        what: "sendUnicast payload over 255 bytes",
        extra: data.len(),
    })?;
    let mut out = Vec::with_capacity(16 + data.len());
    out.push(0x00); // OUTGOING_DIRECT
    out.extend_from_slice(&dest.to_le_bytes());
    aps.encode(&mut out);
    out.push(tag);
    out.push(len);
    out.extend_from_slice(data);
    Ok(out)
}

/// `sendUnicast` response: status, APS sequence.
pub fn parse_send_unicast(p: &[u8]) -> Result<(u8, u8), FrameError> {
    let mut r = Reader::new(p, "sendUnicast");
    let v = (r.u8()?, r.u8()?);
    r.finish()?;
    Ok(v)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSent {
    pub msg_type: u8,
    pub destination: u16,
    pub aps: ApsFrame,
    pub tag: u8,
    pub status: u8,
}

pub fn parse_message_sent(p: &[u8]) -> Result<MessageSent, FrameError> {
    let mut r = Reader::new(p, "messageSentHandler");
    let m = MessageSent {
        msg_type: r.u8()?,
        destination: r.u16()?,
        aps: ApsFrame::decode(&mut r)?,
        tag: r.u8()?,
        status: r.u8()?,
    };
    let _contents = r.lv()?;
    r.finish()?;
    Ok(m)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub msg_type: u8,
    pub aps: ApsFrame,
    pub lqi: u8,
    pub rssi: i8,
    pub sender: u16,
    pub binding_index: u8,
    pub address_index: u8,
    pub data: Vec<u8>,
}

impl IncomingMessage {
    /// Multicast or broadcast (incl. loopbacks) rather than unicast.
    pub fn was_broadcast(&self) -> bool {
        (2..=5).contains(&self.msg_type)
    }
}

pub fn parse_incoming_message(p: &[u8]) -> Result<IncomingMessage, FrameError> {
    let mut r = Reader::new(p, "incomingMessageHandler");
    let m = IncomingMessage {
        msg_type: r.u8()?,
        aps: ApsFrame::decode(&mut r)?,
        lqi: r.u8()?,
        rssi: r.i8()?,
        sender: r.u16()?,
        binding_index: r.u8()?,
        address_index: r.u8()?,
        data: r.lv()?.to_vec(),
    };
    r.finish()?;
    Ok(m)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustCenterJoin {
    pub nwk: u16,
    pub ieee: Ieee,
    pub status: u8,
    pub decision: u8,
    pub parent: u16,
}

pub fn parse_trust_center_join(p: &[u8]) -> Result<TrustCenterJoin, FrameError> {
    let mut r = Reader::new(p, "trustCenterJoinHandler");
    let j = TrustCenterJoin {
        nwk: r.u16()?,
        ieee: r.ieee()?,
        status: r.u8()?,
        decision: r.u8()?,
        parent: r.u16()?,
    };
    r.finish()?;
    Ok(j)
}

/// `childJoinHandler`: index, joining, child NWK, child EUI-64, child type.
pub fn parse_child_join(p: &[u8]) -> Result<(u8, bool, u16, Ieee, u8), FrameError> {
    let mut r = Reader::new(p, "childJoinHandler");
    let v = (r.u8()?, r.u8()? != 0, r.u16()?, r.ieee()?, r.u8()?);
    r.finish()?;
    Ok(v)
}

/// A response (or callback) whose only parameter is a one-byte status.
pub fn parse_status(p: &[u8], what: &'static str) -> Result<u8, FrameError> {
    let mut r = Reader::new(p, what);
    let s = r.u8()?;
    r.finish()?;
    Ok(s)
}

/// `importTransientKey` (v13): EUI-64, plaintext key, flags.
pub fn import_transient_key(ieee: Ieee, key: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.extend_from_slice(&ieee.to_le_bytes());
    out.extend_from_slice(key);
    out.push(0x00); // SecurityManagerContextFlags::NONE
    out
}

/// `importTransientKey` response: `sl_Status` (u32).
pub fn parse_sl_status(p: &[u8], what: &'static str) -> Result<u32, FrameError> {
    let mut r = Reader::new(p, what);
    let s = r.u32()?;
    r.finish()?;
    Ok(s)
}

pub fn parse_eui64(p: &[u8]) -> Result<Ieee, FrameError> {
    let mut r = Reader::new(p, "getEui64");
    let v = r.ieee()?;
    r.finish()?;
    Ok(v)
}

pub fn parse_node_id(p: &[u8]) -> Result<u16, FrameError> {
    let mut r = Reader::new(p, "getNodeId");
    let v = r.u16()?;
    r.finish()?;
    Ok(v)
}

/// `removeDevice(destShort, destLong, targetLong)`.
pub fn remove_device(nwk: u16, ieee: Ieee) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(&nwk.to_le_bytes());
    out.extend_from_slice(&ieee.to_le_bytes());
    out.extend_from_slice(&ieee.to_le_bytes());
    out
}

// ------------------------------------------------------------------ ZDO payloads

/// ZDO cluster ids.
pub mod zdo {
    pub const NODE_DESC_REQ: u16 = 0x0002;
    pub const SIMPLE_DESC_REQ: u16 = 0x0004;
    pub const ACTIVE_EP_REQ: u16 = 0x0005;
    pub const DEVICE_ANNCE: u16 = 0x0013;
    pub const BIND_REQ: u16 = 0x0021;
    pub const MGMT_LEAVE_REQ: u16 = 0x0034;
    pub const RESPONSE: u16 = 0x8000;
}

/// Bind_req body (after the ZDO TSN): source IEEE, endpoint, cluster, 64-bit destination.
pub fn bind_req(src: Ieee, src_ep: u8, cluster: u16, dst: Ieee, dst_ep: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(21);
    p.extend_from_slice(&src.to_le_bytes());
    p.push(src_ep);
    p.extend_from_slice(&cluster.to_le_bytes());
    p.push(0x03);
    p.extend_from_slice(&dst.to_le_bytes());
    p.push(dst_ep);
    p
}

/// Bind_rsp (after the ZDO TSN): status.
pub fn parse_bind_rsp(p: &[u8]) -> Result<u8, FrameError> {
    let mut r = Reader::new(p, "Bind_rsp");
    r.u8()
}

/// Device_annce: TSN, NWK, IEEE, capability.
pub fn parse_device_annce(p: &[u8]) -> Result<(u16, Ieee, u8), FrameError> {
    let mut r = Reader::new(p, "Device_annce");
    let _tsn = r.u8()?;
    let v = (r.u16()?, r.ieee()?, r.u8()?);
    r.finish()?;
    Ok(v)
}

/// The common start of ZDO responses: TSN, status, NWK of interest.
fn zdo_head(r: &mut Reader<'_>) -> Result<(u8, u16), FrameError> {
    let _tsn = r.u8()?;
    Ok((r.u8()?, r.u16()?))
}

/// Node_Desc_rsp → (status, descriptor when status is 0).
pub fn parse_node_desc_rsp(p: &[u8]) -> Result<(u8, Option<NodeDescriptor>), FrameError> {
    let mut r = Reader::new(p, "Node_Desc_rsp");
    let (status, _nwk) = zdo_head(&mut r)?;
    if status != 0 {
        return Ok((status, None));
    }
    let b0 = r.u8()?;
    let _freq = r.u8()?;
    let mac = r.u8()?;
    let manufacturer = r.u16()?;
    Ok((
        status,
        Some(NodeDescriptor {
            logical_type: b0 & 0x07,
            manufacturer_code: manufacturer,
            mac_capabilities: mac,
        }),
    ))
}

/// Active_EP_rsp → (status, endpoints).
pub fn parse_active_ep_rsp(p: &[u8]) -> Result<(u8, Vec<u8>), FrameError> {
    let mut r = Reader::new(p, "Active_EP_rsp");
    let (status, _nwk) = zdo_head(&mut r)?;
    if status != 0 {
        return Ok((status, Vec::new()));
    }
    Ok((status, r.lv()?.to_vec()))
}

/// Simple_Desc_rsp → (status, descriptor).
pub fn parse_simple_desc_rsp(p: &[u8]) -> Result<(u8, Option<SimpleDescriptor>), FrameError> {
    let mut r = Reader::new(p, "Simple_Desc_rsp");
    let (status, _nwk) = zdo_head(&mut r)?;
    if status != 0 {
        return Ok((status, None));
    }
    let _len = r.u8()?;
    let endpoint = r.u8()?;
    let profile = r.u16()?;
    let device_type = r.u16()?;
    let _version = r.u8()?;
    let list = |r: &mut Reader<'_>| -> Result<Vec<u16>, FrameError> {
        let n = r.u8()?;
        (0..n).map(|_| r.u16()).collect()
    };
    let input_clusters = list(&mut r)?;
    let output_clusters = list(&mut r)?;
    Ok((
        status,
        Some(SimpleDescriptor {
            endpoint,
            profile,
            device_type,
            input_clusters,
            output_clusters,
        }),
    ))
}

/// Mgmt_Leave_req payload (after the TSN): device address, flags (rejoin bit 7, children bit 6).
pub fn mgmt_leave_req(tsn: u8, ieee: Ieee, rejoin: bool) -> Vec<u8> {
    let mut out = vec![tsn];
    out.extend_from_slice(&ieee.to_le_bytes());
    out.push(if rejoin { 0x80 } else { 0x00 });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const DEV: Ieee = Ieee(0x0012_4b00_1caa_bbcc);

    fn net() -> NetworkParameters {
        NetworkParameters {
            extended_pan_id: [0xdd; 8],
            pan_id: 0x1A62,
            tx_power: 8,
            channel: 15,
            join_method: 0,
            nwk_manager_id: 0,
            nwk_update_id: 0,
            channels: 1 << 15,
        }
    }

    // All vectors below were serialised by bellows 1.2.1 EZSPv13 schemas.
    #[test]
    fn bellows_vectors_encode() {
        let mut out = Vec::new();
        net().encode(&mut out);
        assert_eq!(out, hex("dddddddddddddddd621a080f0000000000800000"));
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let bm = security::HAVE_PRECONFIGURED_KEY
            | security::REQUIRE_ENCRYPTED_KEY
            | security::TRUST_CENTER_GLOBAL_LINK_KEY
            | security::HAVE_NETWORK_KEY
            | security::NO_FRAME_COUNTER_RESET;
        assert_eq!(
            initial_security_state(bm, &GLOBAL_LINK_KEY, &key),
            hex(
                "041b5a6967426565416c6c69616e63653039000102030405060708090a0b0c0d0e0f000000000000000000"
            )
        );
        let aps = ApsFrame {
            profile: 0x0104,
            cluster: 0x0006,
            src_ep: 1,
            dst_ep: 1,
            options: aps_option::RETRY | aps_option::ENABLE_ROUTE_DISCOVERY,
            group: 0,
            sequence: 0,
        };
        assert_eq!(
            send_unicast(0x1A2B, &aps, 7, &[1, 0, 1]).unwrap(),
            hex("002b1a04010600010140010000000703010001")
        );
        let tk: [u8; 16] = core::array::from_fn(|i| 16 + i as u8);
        assert_eq!(
            import_transient_key(DEV, &tk),
            hex("ccbbaa1c004b1200101112131415161718191a1b1c1d1e1f00")
        );
        assert_eq!(
            remove_device(0x1A2B, DEV),
            hex("2b1accbbaa1c004b1200ccbbaa1c004b1200")
        );
        assert_eq!(legacy_version_command(0, 13), vec![0, 0, 0, 13]);
        assert_eq!(
            command(3, id::IMPORT_TRANSIENT_KEY, &[9]),
            hex("030001110109")
        );
    }

    #[test]
    fn bellows_vectors_decode() {
        let (st, nt, p) =
            parse_get_network_parameters(&hex("0001dddddddddddddddd621a080f0000000000800000"))
                .unwrap();
        assert_eq!((st, nt, p), (0, 1, net()));
        let v = VersionResponse::parse(&hex("0d025074")).unwrap();
        assert_eq!(
            (v.protocol, v.stack_type, v.stack_string().as_str()),
            (13, 2, "7.4.5.0")
        );
        assert_eq!(
            parse_eui64(&hex("01000000006f0d00")).unwrap(),
            Ieee(0x000d_6f00_0000_0001)
        );
        assert_eq!(
            parse_trust_center_join(&hex("2b1accbbaa1c004b120001000000")).unwrap(),
            TrustCenterJoin {
                nwk: 0x1A2B,
                ieee: DEV,
                status: 1,
                decision: 0,
                parent: 0
            }
        );
        assert_eq!(
            parse_child_join(&hex("00012b1accbbaa1c004b120004")).unwrap(),
            (0, true, 0x1A2B, DEV, 4)
        );
        let m = parse_incoming_message(&hex(
            "000401020401016000000041c8ce2b1affff08182a0a0000296608",
        ))
        .unwrap();
        assert_eq!(m.aps.cluster, 0x0402);
        assert_eq!(
            m.aps.options & aps_option::ENCRYPTION,
            aps_option::ENCRYPTION
        );
        assert_eq!((m.lqi, m.rssi, m.sender), (200, -50, 0x1A2B));
        assert_eq!(m.data, hex("182a0a0000296608"));
        let s = parse_message_sent(&hex("002b1a0401060001014001000000076600")).unwrap();
        assert_eq!((s.destination, s.tag, s.status), (0x1A2B, 7, 0x66));
        assert_eq!(parse_send_unicast(&hex("0022")).unwrap(), (0, 0x22));
        assert_eq!(
            parse_status(&hex("90"), "stackStatusHandler").unwrap(),
            status::NETWORK_UP
        );
        assert_eq!(
            parse_sl_status(&hex("00000000"), "importTransientKey").unwrap(),
            0
        );
        assert_eq!(parse_status(&hex("31"), "invalidCommand").unwrap(), 0x31);
    }

    #[test]
    fn headers() {
        let legacy = Received::parse(&[5, 0x80, 0x00, 13, 2, 0x50, 0x74], false).unwrap();
        assert_eq!(
            (legacy.seq, legacy.frame_id, legacy.is_callback()),
            (5, 0, false)
        );
        let cb = Received::parse(&hex("079001450090"), true).unwrap();
        assert!(cb.is_callback());
        assert_eq!(cb.frame_id, id::INCOMING_MESSAGE_HANDLER);
        assert!(Received::parse(&hex("0790"), true).is_err());
        assert!(Received::parse(&hex("07900245"), true).is_err());
    }

    #[test]
    fn zdo_payloads() {
        let (s, nd) = parse_node_desc_rsp(&hex("0100341202408 0de10520000005200 00"
            .replace(" ", "")
            .as_str()))
        .unwrap();
        assert_eq!(s, 0);
        let nd = nd.unwrap();
        assert_eq!(
            (nd.logical_type, nd.manufacturer_code, nd.mac_capabilities),
            (2, 0x10de, 0x80)
        );
        assert!(nd.sleepy());
        let (s, eps) = parse_active_ep_rsp(&hex("02003412020108")).unwrap();
        assert_eq!((s, eps), (0, vec![1, 8]));
        let (s, sd) =
            parse_simple_desc_rsp(&hex("030034120e01040102030003000002040100011900")).unwrap();
        assert_eq!(s, 0);
        let sd = sd.unwrap();
        assert_eq!(sd.input_clusters, vec![0x0000, 0x0402, 0x0001]);
        assert_eq!(sd.output_clusters, vec![0x0019]);
        assert_eq!(
            (sd.endpoint, sd.profile, sd.device_type),
            (1, 0x0104, 0x0302)
        );
        assert_eq!(
            parse_simple_desc_rsp(&hex("03820000")).unwrap(),
            (0x82, None)
        );
        assert_eq!(
            parse_device_annce(&hex("012b1accbbaa1c004b120080")).unwrap(),
            (0x1A2B, DEV, 0x80)
        );
        assert_eq!(mgmt_leave_req(9, DEV, false), hex("09ccbbaa1c004b120000"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), ext: bool) {
            let _ = Received::parse(&data, ext);
            let _ = parse_incoming_message(&data);
            let _ = parse_message_sent(&data);
            let _ = parse_trust_center_join(&data);
            let _ = parse_get_network_parameters(&data);
            let _ = parse_node_desc_rsp(&data);
            let _ = parse_active_ep_rsp(&data);
            let _ = parse_simple_desc_rsp(&data);
            let _ = parse_device_annce(&data);
            let _ = VersionResponse::parse(&data);
        }

        #[test]
        fn network_parameters_roundtrip(ext: [u8; 8], pan: u16, ch in 11u8..=26, up: u8) {
            let p = NetworkParameters { extended_pan_id: ext, pan_id: pan, tx_power: 8, channel: ch,
                join_method: 0, nwk_manager_id: 0, nwk_update_id: up, channels: 1 << ch };
            let mut out = Vec::new();
            p.encode(&mut out);
            let mut r = Reader::new(&out, "t");
            prop_assert_eq!(NetworkParameters::decode(&mut r).unwrap(), p);
        }

        #[test]
        fn aps_roundtrip(profile: u16, cluster: u16, s: u8, d: u8, o: u16, g: u16, q: u8) {
            let a = ApsFrame { profile, cluster, src_ep: s, dst_ep: d, options: o, group: g, sequence: q };
            let mut out = Vec::new();
            a.encode(&mut out);
            prop_assert_eq!(ApsFrame::decode(&mut Reader::new(&out, "t")).unwrap(), a);
        }
    }
}
