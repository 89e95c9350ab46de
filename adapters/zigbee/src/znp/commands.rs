//! The Z-Stack MT commands the driver uses: request builders and bounds-checked response parsers.
//! Layouts follow zigpy-znp 1.1.1's `zigpy_znp/commands/*.py`; `vectors.rs` holds frames built by it.

use super::frame::{CmdType, FrameError, MtFrame, subsystem as sub};
use crate::coordinator::{Ieee, NodeDescriptor, SimpleDescriptor};

/// Why a frame's payload could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what}: payload truncated at byte {at}")]
    Truncated { what: &'static str, at: usize },
    #[error("{what}: {count} list entries exceed the payload")]
    BadCount { what: &'static str, count: usize },
}

/// Little-endian cursor over a payload; every read is bounds-checked.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(what: &'static str, data: &'a [u8]) -> Self {
        Self { data, pos: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated {
            what: self.what,
            at: self.pos,
        })?;
        let s = self.data.get(self.pos..end).ok_or(ParseError::Truncated {
            what: self.what,
            at: self.pos,
        })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn ieee(&mut self) -> Result<Ieee, ParseError> {
        Ok(Ieee::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        self.take(n)
    }
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    fn u16_list(&mut self, count: usize) -> Result<Vec<u16>, ParseError> {
        if count.saturating_mul(2) > self.remaining() {
            return Err(ParseError::BadCount {
                what: self.what,
                count,
            });
        }
        (0..count).map(|_| self.u16()).collect()
    }
}

// ------------------------------------------------------------------ command ids (cmd1)

pub mod id {
    // SYS
    pub const SYS_RESET_REQ: u8 = 0x00;
    pub const SYS_PING: u8 = 0x01;
    pub const SYS_VERSION: u8 = 0x02;
    pub const SYS_OSAL_NV_ITEM_INIT: u8 = 0x07;
    pub const SYS_OSAL_NV_READ: u8 = 0x08;
    pub const SYS_OSAL_NV_WRITE: u8 = 0x09;
    pub const SYS_RESET_IND: u8 = 0x80;
    // UTIL
    pub const UTIL_GET_DEVICE_INFO: u8 = 0x00;
    // AF
    pub const AF_REGISTER: u8 = 0x00;
    pub const AF_DATA_REQUEST: u8 = 0x01;
    pub const AF_DATA_CONFIRM: u8 = 0x80;
    pub const AF_INCOMING_MSG: u8 = 0x81;
    // ZDO
    pub const ZDO_NODE_DESC_REQ: u8 = 0x02;
    pub const ZDO_SIMPLE_DESC_REQ: u8 = 0x04;
    pub const ZDO_ACTIVE_EP_REQ: u8 = 0x05;
    pub const ZDO_BIND_REQ: u8 = 0x21;
    pub const ZDO_MGMT_LEAVE_REQ: u8 = 0x34;
    pub const ZDO_MGMT_PERMIT_JOIN_REQ: u8 = 0x36;
    pub const ZDO_STARTUP_FROM_APP: u8 = 0x40;
    pub const ZDO_NODE_DESC_RSP: u8 = 0x82;
    pub const ZDO_SIMPLE_DESC_RSP: u8 = 0x84;
    pub const ZDO_ACTIVE_EP_RSP: u8 = 0x85;
    pub const ZDO_BIND_RSP: u8 = 0xA1;
    pub const ZDO_MGMT_LEAVE_RSP: u8 = 0xB4;
    pub const ZDO_MGMT_PERMIT_JOIN_RSP: u8 = 0xB6;
    pub const ZDO_STATE_CHANGE_IND: u8 = 0xC0;
    pub const ZDO_END_DEVICE_ANNCE_IND: u8 = 0xC1;
    pub const ZDO_LEAVE_IND: u8 = 0xC9;
    pub const ZDO_TC_DEV_IND: u8 = 0xCA;
    pub const ZDO_PERMIT_JOIN_IND: u8 = 0xCB;
    // APP_CNF
    pub const APP_CNF_BDB_ADD_INSTALL_CODE: u8 = 0x04;
    pub const APP_CNF_BDB_SET_JOIN_USES_INSTALL_CODE_KEY: u8 = 0x06;
    // RPC error
    pub const RPC_COMMAND_NOT_RECOGNIZED: u8 = 0x00;
}

/// OSAL NV item ids (`ZCD_NV_*`).
pub mod nv {
    pub const STARTUP_OPTION: u16 = 0x0003;
    pub const EXTPANID: u16 = 0x002D;
    pub const HAS_CONFIGURED_ZSTACK3: u16 = 0x0060;
    pub const PRECFGKEY: u16 = 0x0062;
    pub const PRECFGKEYS_ENABLE: u16 = 0x0063;
    pub const PANID: u16 = 0x0083;
    pub const CHANLIST: u16 = 0x0084;
    pub const LOGICAL_TYPE: u16 = 0x0087;
    /// `ZCD_STARTOPT_CLEAR_STATE`
    pub const STARTOPT_CLEAR_STATE: u8 = 0x02;
    /// Marker zigpy-znp also writes once a Z-Stack 3 coordinator has been commissioned.
    pub const CONFIGURED_MARKER: u8 = 0x55;
}

/// `DeviceState` value of a running coordinator (`ZDO.StateChangeInd`).
pub const STATE_STARTED_AS_COORDINATOR: u8 = 9;
/// AF TransmitOptions: APS acknowledgement requested.
pub const TX_OPTION_ACK_REQUEST: u8 = 0x10;
/// Default AF radius.
pub const DEFAULT_RADIUS: u8 = 30;
/// Largest application payload an AF.DataRequest carries (250 minus its 10 header bytes).
pub const MAX_AF_DATA: usize = 240;

fn sreq(subsystem: u8, cmd1: u8, payload: Vec<u8>) -> Result<MtFrame, FrameError> {
    MtFrame::new(CmdType::Sreq, subsystem, cmd1, payload)
}

// ------------------------------------------------------------------ requests

/// A fixed-layout SREQ (payload at most a dozen bytes).
fn small_sreq(subsystem: u8, cmd1: u8, payload: Vec<u8>) -> MtFrame {
    MtFrame::bounded(CmdType::Sreq, subsystem, cmd1, payload)
}

pub fn sys_ping() -> MtFrame {
    small_sreq(sub::SYS, id::SYS_PING, vec![])
}

pub fn sys_version() -> MtFrame {
    small_sreq(sub::SYS, id::SYS_VERSION, vec![])
}

/// `SYS.ResetReq` (an AREQ: answered by `SYS.ResetInd`, not by an SRSP). `soft` = 1.
pub fn sys_reset_req(soft: bool) -> MtFrame {
    MtFrame::bounded(
        CmdType::Areq,
        sub::SYS,
        id::SYS_RESET_REQ,
        vec![u8::from(soft)],
    )
}

pub fn sys_osal_nv_read(item: u16, offset: u8) -> MtFrame {
    let [a, b] = item.to_le_bytes();
    small_sreq(sub::SYS, id::SYS_OSAL_NV_READ, vec![a, b, offset])
}

pub fn sys_osal_nv_write(item: u16, offset: u8, value: &[u8]) -> Result<MtFrame, FrameError> {
    let len = u8::try_from(value.len()).map_err(|_| FrameError::PayloadTooLong(value.len()))?;
    let mut p = Vec::with_capacity(value.len() + 4);
    p.extend_from_slice(&item.to_le_bytes());
    p.push(offset);
    p.push(len);
    p.extend_from_slice(value);
    sreq(sub::SYS, id::SYS_OSAL_NV_WRITE, p)
}

pub fn sys_osal_nv_item_init(item: u16, init: &[u8]) -> Result<MtFrame, FrameError> {
    let len = u8::try_from(init.len()).map_err(|_| FrameError::PayloadTooLong(init.len()))?;
    let mut p = Vec::with_capacity(init.len() + 5);
    p.extend_from_slice(&item.to_le_bytes());
    p.extend_from_slice(&u16::from(len).to_le_bytes());
    p.push(len);
    p.extend_from_slice(init);
    sreq(sub::SYS, id::SYS_OSAL_NV_ITEM_INIT, p)
}

pub fn util_get_device_info() -> MtFrame {
    small_sreq(sub::UTIL, id::UTIL_GET_DEVICE_INFO, vec![])
}

/// `AF.Register` of one endpoint with no latency requirement.
pub fn af_register(
    endpoint: u8,
    profile: u16,
    device_id: u16,
    inputs: &[u16],
    outputs: &[u16],
) -> Result<MtFrame, FrameError> {
    let ni = u8::try_from(inputs.len()).map_err(|_| FrameError::PayloadTooLong(inputs.len()))?;
    let no = u8::try_from(outputs.len()).map_err(|_| FrameError::PayloadTooLong(outputs.len()))?;
    let mut p = vec![endpoint];
    p.extend_from_slice(&profile.to_le_bytes());
    p.extend_from_slice(&device_id.to_le_bytes());
    p.push(0); // device version
    p.push(0); // LatencyReq.NoLatencyReqs
    p.push(ni);
    inputs
        .iter()
        .for_each(|c| p.extend_from_slice(&c.to_le_bytes()));
    p.push(no);
    outputs
        .iter()
        .for_each(|c| p.extend_from_slice(&c.to_le_bytes()));
    sreq(sub::AF, id::AF_REGISTER, p)
}

/// `AF.DataRequest` (unicast to a NWK address).
pub struct DataRequest<'a> {
    pub dst_nwk: u16,
    pub dst_endpoint: u8,
    pub src_endpoint: u8,
    pub cluster: u16,
    pub tsn: u8,
    pub options: u8,
    pub radius: u8,
    pub data: &'a [u8],
}

pub fn af_data_request(r: &DataRequest<'_>) -> Result<MtFrame, FrameError> {
    if r.data.len() > MAX_AF_DATA {
        return Err(FrameError::PayloadTooLong(r.data.len()));
    }
    let mut p = Vec::with_capacity(r.data.len() + 10);
    p.extend_from_slice(&r.dst_nwk.to_le_bytes());
    p.push(r.dst_endpoint);
    p.push(r.src_endpoint);
    p.extend_from_slice(&r.cluster.to_le_bytes());
    p.push(r.tsn);
    p.push(r.options);
    p.push(r.radius);
    p.push(u8::try_from(r.data.len()).map_err(|_| FrameError::PayloadTooLong(r.data.len()))?);
    p.extend_from_slice(r.data);
    sreq(sub::AF, id::AF_DATA_REQUEST, p)
}

pub fn zdo_startup_from_app(start_delay_ms: u16) -> MtFrame {
    small_sreq(
        sub::ZDO,
        id::ZDO_STARTUP_FROM_APP,
        start_delay_ms.to_le_bytes().to_vec(),
    )
}

/// `ZDO.MgmtPermitJoinReq` broadcast to all routers and the coordinator (0xFFFC), TC significance 1.
pub fn zdo_mgmt_permit_join(seconds: u8) -> MtFrame {
    let [a, b] = 0xFFFCu16.to_le_bytes();
    small_sreq(
        sub::ZDO,
        id::ZDO_MGMT_PERMIT_JOIN_REQ,
        vec![0x0F, a, b, seconds, 1],
    )
}

fn zdo_addr_req(cmd1: u8, nwk: u16, extra: Option<u8>) -> MtFrame {
    let mut p = Vec::with_capacity(5);
    p.extend_from_slice(&nwk.to_le_bytes());
    p.extend_from_slice(&nwk.to_le_bytes());
    p.extend(extra);
    small_sreq(sub::ZDO, cmd1, p)
}

pub fn zdo_node_desc_req(nwk: u16) -> MtFrame {
    zdo_addr_req(id::ZDO_NODE_DESC_REQ, nwk, None)
}
pub fn zdo_active_ep_req(nwk: u16) -> MtFrame {
    zdo_addr_req(id::ZDO_ACTIVE_EP_REQ, nwk, None)
}
pub fn zdo_simple_desc_req(nwk: u16, endpoint: u8) -> MtFrame {
    zdo_addr_req(id::ZDO_SIMPLE_DESC_REQ, nwk, Some(endpoint))
}

/// `ZDO.BindReq`: bind the device's (`src`, `src_ep`, `cluster`) to `dst`'s endpoint `dst_ep`
/// (64-bit destination address mode), so its reports come to the coordinator.
pub fn zdo_bind_req(
    nwk: u16,
    src: Ieee,
    src_ep: u8,
    cluster: u16,
    dst: Ieee,
    dst_ep: u8,
) -> MtFrame {
    let mut p = Vec::with_capacity(23);
    p.extend_from_slice(&nwk.to_le_bytes());
    p.extend_from_slice(&src.to_le_bytes());
    p.push(src_ep);
    p.extend_from_slice(&cluster.to_le_bytes());
    p.push(0x03);
    p.extend_from_slice(&dst.to_le_bytes());
    p.push(dst_ep);
    small_sreq(sub::ZDO, id::ZDO_BIND_REQ, p)
}

/// `ZDO.BindRsp`: the responder and its status.
pub fn parse_bind_rsp(payload: &[u8]) -> Result<Result<(), u8>, ParseError> {
    let mut r = Reader::new("ZDO.BindRsp", payload);
    let _src = r.u16()?;
    let status = r.u8()?;
    Ok(if status == 0 { Ok(()) } else { Err(status) })
}

/// `ZDO.MgmtLeaveReq` sent to the device itself: no rejoin, children not removed.
pub fn zdo_mgmt_leave_req(nwk: u16, ieee: Ieee) -> MtFrame {
    let mut p = Vec::with_capacity(11);
    p.extend_from_slice(&nwk.to_le_bytes());
    p.extend_from_slice(&ieee.to_le_bytes());
    p.push(0);
    small_sreq(sub::ZDO, id::ZDO_MGMT_LEAVE_REQ, p)
}

/// `APP_CNF.BDBAddInstallCode`, format 0x01 (install code followed by its CRC).
pub fn app_cnf_add_install_code(ieee: Ieee, code_with_crc: &[u8]) -> Result<MtFrame, FrameError> {
    let mut p = Vec::with_capacity(code_with_crc.len() + 9);
    p.push(0x01);
    p.extend_from_slice(&ieee.to_le_bytes());
    p.extend_from_slice(code_with_crc);
    sreq(sub::APP_CNF, id::APP_CNF_BDB_ADD_INSTALL_CODE, p)
}

pub fn app_cnf_set_join_uses_install_code_key(required: bool) -> MtFrame {
    small_sreq(
        sub::APP_CNF,
        id::APP_CNF_BDB_SET_JOIN_USES_INSTALL_CODE_KEY,
        vec![u8::from(required)],
    )
}

// ------------------------------------------------------------------ responses and callbacks

/// SRSPs whose whole payload is one status byte.
pub fn parse_status(what: &'static str, payload: &[u8]) -> Result<u8, ParseError> {
    Reader::new(what, payload).u8()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub transport_rev: u8,
    pub product_id: u8,
    pub major: u8,
    pub minor: u8,
    pub maint: u8,
    /// Build date as `YYYYMMDD` (absent on old firmware).
    pub code_revision: Option<u32>,
}

impl Version {
    pub fn firmware(&self) -> String {
        match self.code_revision {
            Some(rev) => format!(
                "Z-Stack {}.{}.{} ({rev})",
                self.major, self.minor, self.maint
            ),
            None => format!("Z-Stack {}.{}.{}", self.major, self.minor, self.maint),
        }
    }
}

pub fn parse_version(payload: &[u8]) -> Result<Version, ParseError> {
    let mut r = Reader::new("SYS.Version", payload);
    Ok(Version {
        transport_rev: r.u8()?,
        product_id: r.u8()?,
        major: r.u8()?,
        minor: r.u8()?,
        maint: r.u8()?,
        code_revision: r.u32().ok(),
    })
}

/// `SYS.OSALNVRead` SRSP: status and value.
pub fn parse_nv_read(payload: &[u8]) -> Result<(u8, Vec<u8>), ParseError> {
    let mut r = Reader::new("SYS.OSALNVRead", payload);
    let status = r.u8()?;
    if status != 0 {
        return Ok((status, vec![]));
    }
    let len = usize::from(r.u8()?);
    Ok((status, r.bytes(len)?.to_vec()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub status: u8,
    pub ieee: Ieee,
    pub nwk: u16,
    pub device_type: u8,
    pub device_state: u8,
    pub associated: Vec<u16>,
}

pub fn parse_device_info(payload: &[u8]) -> Result<DeviceInfo, ParseError> {
    let mut r = Reader::new("UTIL.GetDeviceInfo", payload);
    let status = r.u8()?;
    let ieee = r.ieee()?;
    let nwk = r.u16()?;
    let device_type = r.u8()?;
    let device_state = r.u8()?;
    let n = usize::from(r.u8().unwrap_or(0));
    let associated = r.u16_list(n)?;
    Ok(DeviceInfo {
        status,
        ieee,
        nwk,
        device_type,
        device_state,
        associated,
    })
}

/// `AF.DataConfirm`: (status, endpoint, transaction id).
pub fn parse_data_confirm(payload: &[u8]) -> Result<(u8, u8, u8), ParseError> {
    let mut r = Reader::new("AF.DataConfirm", payload);
    Ok((r.u8()?, r.u8()?, r.u8()?))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMsg {
    pub group: u16,
    pub cluster: u16,
    pub src_nwk: u16,
    pub src_endpoint: u8,
    pub dst_endpoint: u8,
    pub was_broadcast: bool,
    pub lqi: u8,
    pub security_use: bool,
    pub timestamp: u32,
    pub tsn: u8,
    pub data: Vec<u8>,
}

pub fn parse_incoming_msg(payload: &[u8]) -> Result<IncomingMsg, ParseError> {
    let mut r = Reader::new("AF.IncomingMsg", payload);
    let group = r.u16()?;
    let cluster = r.u16()?;
    let src_nwk = r.u16()?;
    let src_endpoint = r.u8()?;
    let dst_endpoint = r.u8()?;
    let was_broadcast = r.u8()? != 0;
    let lqi = r.u8()?;
    let security_use = r.u8()? != 0;
    let timestamp = r.u32()?;
    let tsn = r.u8()?;
    let len = usize::from(r.u8()?);
    let data = r.bytes(len)?.to_vec();
    // MacSrcAddr and MsgResultRadius follow; not needed.
    Ok(IncomingMsg {
        group,
        cluster,
        src_nwk,
        src_endpoint,
        dst_endpoint,
        was_broadcast,
        lqi,
        security_use,
        timestamp,
        tsn,
        data,
    })
}

/// `ZDO.TCDevInd`: (nwk, ieee, parent nwk).
pub fn parse_tc_dev_ind(payload: &[u8]) -> Result<(u16, Ieee, u16), ParseError> {
    let mut r = Reader::new("ZDO.TCDevInd", payload);
    Ok((r.u16()?, r.ieee()?, r.u16()?))
}

/// `ZDO.EndDeviceAnnceInd`: (src, nwk, ieee, capabilities).
pub fn parse_end_device_annce(payload: &[u8]) -> Result<(u16, u16, Ieee, u8), ParseError> {
    let mut r = Reader::new("ZDO.EndDeviceAnnceInd", payload);
    Ok((r.u16()?, r.u16()?, r.ieee()?, r.u8()?))
}

/// `ZDO.LeaveInd`: (nwk, ieee, request, remove, rejoin).
pub fn parse_leave_ind(payload: &[u8]) -> Result<(u16, Ieee, bool, bool, bool), ParseError> {
    let mut r = Reader::new("ZDO.LeaveInd", payload);
    Ok((
        r.u16()?,
        r.ieee()?,
        r.u8()? != 0,
        r.u8()? != 0,
        r.u8()? != 0,
    ))
}

/// ZDO response callbacks start with `Src`, `Status`, `NWK`. Returns them and the rest.
fn zdo_rsp_head<'a>(
    what: &'static str,
    payload: &'a [u8],
) -> Result<(u16, u8, u16, Reader<'a>), ParseError> {
    let mut r = Reader::new(what, payload);
    let src = r.u16()?;
    let status = r.u8()?;
    let nwk = r.u16()?;
    Ok((src, status, nwk, r))
}

/// The `Src` of a ZDO response callback (what the driver matches requests on).
pub fn zdo_rsp_src(payload: &[u8]) -> Option<u16> {
    Reader::new("ZDO response", payload).u16().ok()
}

/// `ZDO.NodeDescRsp`: `Err` on truncation, `Ok(Err(status))` when the device answered with a ZDO error.
pub fn parse_node_desc_rsp(payload: &[u8]) -> Result<Result<NodeDescriptor, u8>, ParseError> {
    let (_, status, _, mut r) = zdo_rsp_head("ZDO.NodeDescRsp", payload)?;
    if status != 0 {
        return Ok(Err(status));
    }
    let b0 = r.u8()?;
    let _b1 = r.u8()?;
    let mac_capabilities = r.u8()?;
    let manufacturer_code = r.u16()?;
    Ok(Ok(NodeDescriptor {
        logical_type: b0 & 0x07,
        manufacturer_code,
        mac_capabilities,
    }))
}

pub fn parse_active_ep_rsp(payload: &[u8]) -> Result<Result<Vec<u8>, u8>, ParseError> {
    let (_, status, _, mut r) = zdo_rsp_head("ZDO.ActiveEpRsp", payload)?;
    if status != 0 {
        return Ok(Err(status));
    }
    let n = usize::from(r.u8()?);
    Ok(Ok(r
        .bytes(n)
        .map_err(|_| ParseError::BadCount {
            what: "ZDO.ActiveEpRsp",
            count: n,
        })?
        .to_vec()))
}

pub fn parse_simple_desc_rsp(payload: &[u8]) -> Result<Result<SimpleDescriptor, u8>, ParseError> {
    let (_, status, _, mut r) = zdo_rsp_head("ZDO.SimpleDescRsp", payload)?;
    if status != 0 {
        return Ok(Err(status));
    }
    let len = usize::from(r.u8()?);
    let body = r.bytes(len)?;
    let mut r = Reader::new("ZDO.SimpleDescRsp descriptor", body);
    let endpoint = r.u8()?;
    let profile = r.u16()?;
    let device_type = r.u16()?;
    let _version = r.u8()?;
    let ni = usize::from(r.u8()?);
    let input_clusters = r.u16_list(ni)?;
    let no = usize::from(r.u8()?);
    let output_clusters = r.u16_list(no)?;
    Ok(Ok(SimpleDescriptor {
        endpoint,
        profile,
        device_type,
        input_clusters,
        output_clusters,
    }))
}

/// `RPCError.CommandNotRecognized`: (error code, cmd0 and cmd1 of the rejected request).
pub fn parse_rpc_error(payload: &[u8]) -> Result<(u8, u8, u8), ParseError> {
    let mut r = Reader::new("RPCError.CommandNotRecognized", payload);
    Ok((r.u8()?, r.u8()?, r.u8()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::super::frame::{Decoder, encode};
    use super::super::vectors::*;
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    fn dec(v: &str) -> MtFrame {
        let mut d = Decoder::new();
        d.push(&hex(v));
        d.next().unwrap().unwrap()
    }
    const IEEE: Ieee = Ieee(0x0012_4b00_1caa_bbcc);

    #[test]
    fn requests_match_zigpy_znp() {
        let cases: Vec<(MtFrame, &str)> = vec![
            (sys_ping(), SYS_PING_REQ),
            (sys_version(), SYS_VERSION_REQ),
            (sys_reset_req(true), SYS_RESET_REQ),
            (sys_osal_nv_read(nv::PANID, 0), NV_READ_PANID_REQ),
            (
                sys_osal_nv_write(nv::CHANLIST, 0, &(1u32 << 15).to_le_bytes()).unwrap(),
                NV_WRITE_CHANLIST_REQ,
            ),
            (
                sys_osal_nv_item_init(nv::HAS_CONFIGURED_ZSTACK3, &[0x55]).unwrap(),
                NV_ITEM_INIT_REQ,
            ),
            (util_get_device_info(), UTIL_GET_DEVICE_INFO_REQ),
            (
                af_register(1, 0x0104, 0x0005, &[0, 6], &[0, 6]).unwrap(),
                AF_REGISTER_REQ,
            ),
            (
                af_data_request(&DataRequest {
                    dst_nwk: 0x1A2B,
                    dst_endpoint: 1,
                    src_endpoint: 1,
                    cluster: 6,
                    tsn: 7,
                    options: TX_OPTION_ACK_REQUEST,
                    radius: 30,
                    data: &[1, 5, 1],
                })
                .unwrap(),
                AF_DATA_REQ,
            ),
            (zdo_startup_from_app(100), ZDO_STARTUP_REQ),
            (zdo_mgmt_permit_join(60), ZDO_PERMIT_JOIN_REQ),
            (zdo_node_desc_req(0x1A2B), ZDO_NODE_DESC_REQ),
            (zdo_active_ep_req(0x1A2B), ZDO_ACTIVE_EP_REQ),
            (zdo_simple_desc_req(0x1A2B, 1), ZDO_SIMPLE_DESC_REQ),
            (zdo_mgmt_leave_req(0x1A2B, IEEE), ZDO_MGMT_LEAVE_REQ),
            (
                app_cnf_add_install_code(IEEE, &hex("83FED3407A939723A5C639B26916D505C3B5"))
                    .unwrap(),
                APP_CNF_ADD_INSTALL_CODE_REQ,
            ),
            (
                app_cnf_set_join_uses_install_code_key(true),
                APP_CNF_SET_IC_KEY_REQ,
            ),
        ];
        for (f, v) in cases {
            assert_eq!(encode(&f), hex(v), "{f:?}");
        }
    }

    #[test]
    fn responses_parse() {
        let v = parse_version(dec(SYS_VERSION_RSP).payload()).unwrap();
        assert_eq!(v.firmware(), "Z-Stack 2.7.1 (20210708)");
        assert_eq!(
            parse_nv_read(dec(NV_READ_PANID_RSP).payload()).unwrap(),
            (0, vec![0x62, 0x1a])
        );
        assert_eq!(parse_nv_read(dec(NV_READ_FAIL_RSP).payload()).unwrap().0, 2);
        let di = parse_device_info(dec(UTIL_GET_DEVICE_INFO_RSP).payload()).unwrap();
        assert_eq!(di.ieee, Ieee(0x0012_4b00_0000_0001));
        assert_eq!(di.device_state, 9);
        assert_eq!(di.associated, vec![0x1A2B, 0x3344]);
        assert_eq!(
            parse_data_confirm(dec(AF_DATA_CONFIRM).payload()).unwrap(),
            (0xE9, 1, 7)
        );
        let m = parse_incoming_msg(dec(AF_INCOMING_MSG).payload()).unwrap();
        assert_eq!(
            (m.cluster, m.src_nwk, m.lqi, m.security_use, m.tsn),
            (0x0402, 0x1A2B, 200, true, 9)
        );
        assert_eq!(m.data, hex("18410a0000296608"));
        assert_eq!(
            parse_tc_dev_ind(dec(ZDO_TC_DEV_IND).payload()).unwrap(),
            (0x1A2B, IEEE, 0)
        );
        assert_eq!(
            parse_end_device_annce(dec(ZDO_END_DEVICE_ANNCE_IND).payload()).unwrap(),
            (0x1A2B, 0x1A2B, IEEE, 0x80)
        );
        assert_eq!(
            parse_leave_ind(dec(ZDO_LEAVE_IND).payload()).unwrap(),
            (0x1A2B, IEEE, false, false, true)
        );
        let nd = parse_node_desc_rsp(dec(ZDO_NODE_DESC_RSP).payload())
            .unwrap()
            .unwrap();
        assert_eq!(
            nd,
            NodeDescriptor {
                logical_type: 2,
                manufacturer_code: 0x1234,
                mac_capabilities: 0x80
            }
        );
        assert_eq!(
            parse_node_desc_rsp(dec(ZDO_NODE_DESC_RSP_FAIL).payload()).unwrap(),
            Err(0x81)
        );
        assert_eq!(
            parse_active_ep_rsp(dec(ZDO_ACTIVE_EP_RSP).payload()).unwrap(),
            Ok(vec![1, 2])
        );
        let sd = parse_simple_desc_rsp(dec(ZDO_SIMPLE_DESC_RSP).payload())
            .unwrap()
            .unwrap();
        assert_eq!(
            sd,
            SimpleDescriptor {
                endpoint: 1,
                profile: 0x0104,
                device_type: 0x0302,
                input_clusters: vec![0, 1, 0x0402],
                output_clusters: vec![0x0019]
            }
        );
        assert_eq!(
            parse_rpc_error(dec(RPC_ERROR_NOT_RECOGNIZED).payload()).unwrap(),
            (2, 0x2f, 0x04)
        );
        for v in [
            SYS_PING_RSP,
            AF_REGISTER_RSP,
            ZDO_STARTUP_RSP,
            ZDO_PERMIT_JOIN_RSP,
            ZDO_MGMT_LEAVE_SRSP,
            APP_CNF_SET_IC_KEY_RSP,
        ] {
            assert!(parse_status("x", dec(v).payload()).is_ok());
        }
        assert_eq!(parse_status("x", dec(NV_ITEM_INIT_RSP).payload()), Ok(9));
        assert_eq!(dec(SYS_RESET_IND).cmd1(), id::SYS_RESET_IND);
        assert_eq!(
            dec(ZDO_STATE_CHANGE_IND).payload(),
            &[STATE_STARTED_AS_COORDINATOR]
        );
        assert_eq!(dec(ZDO_PERMIT_JOIN_IND).payload(), &[60]);
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        for v in [
            AF_INCOMING_MSG,
            ZDO_SIMPLE_DESC_RSP,
            ZDO_NODE_DESC_RSP,
            UTIL_GET_DEVICE_INFO_RSP,
            ZDO_ACTIVE_EP_RSP,
            ZDO_TC_DEV_IND,
        ] {
            let full = dec(v);
            let p = full.payload();
            for cut in 0..p.len() {
                let p = &p[..cut];
                let _ = parse_incoming_msg(p);
                let _ = parse_simple_desc_rsp(p);
                let _ = parse_node_desc_rsp(p);
                let _ = parse_device_info(p);
                let _ = parse_active_ep_rsp(p);
                let _ = parse_tc_dev_ind(p);
            }
        }
        assert!(parse_incoming_msg(&dec(AF_INCOMING_MSG).payload()[..20]).is_err());
        // A simple descriptor whose cluster count lies.
        let mut p = dec(ZDO_SIMPLE_DESC_RSP).payload().to_vec();
        p[12] = 200;
        assert!(parse_simple_desc_rsp(&p).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_incoming_msg(&p);
            let _ = parse_simple_desc_rsp(&p);
            let _ = parse_node_desc_rsp(&p);
            let _ = parse_device_info(&p);
            let _ = parse_active_ep_rsp(&p);
            let _ = parse_version(&p);
            let _ = parse_nv_read(&p);
            let _ = parse_leave_ind(&p);
            let _ = parse_end_device_annce(&p);
            let _ = parse_rpc_error(&p);
        }
    }

    #[test]
    fn bind_matches_zigpy_znp() {
        let f = zdo_bind_req(
            0x1a2b,
            Ieee(0x0012_4b00_0000_1001),
            1,
            0x0402,
            Ieee(0x0012_4b00_0000_0001),
            1,
        );
        assert_eq!(hex::encode(encode(&f)), crate::znp::vectors::ZDO_BIND_REQ);
        let rsp = hex::decode(crate::znp::vectors::ZDO_BIND_RSP).unwrap();
        let mut d = Decoder::new();
        d.push(&rsp);
        let f = d.next().unwrap().unwrap();
        assert_eq!(parse_bind_rsp(f.payload()).unwrap(), Ok(()));
        assert!(parse_bind_rsp(&[0x2b]).is_err());
        assert_eq!(parse_bind_rsp(&[0x2b, 0x1a, 0x8c]).unwrap(), Err(0x8c));
    }
}
