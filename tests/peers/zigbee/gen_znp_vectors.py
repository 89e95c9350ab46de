#!/usr/bin/env python3
"""Prints MT frames built by zigpy-znp's own command classes, as hex, for the Rust ZNP codec's tests
(adapters/zigbee/src/znp/vectors.rs embeds this output). Run with tests/peers/zigbee/venv/bin/python."""
import zigpy.types as zt
import zigpy.zdo.types as zdo_t
import zigpy.util
import zigpy_znp.commands as c
import zigpy_znp.types as t
from zigpy_znp.frames import TransportFrame
from zigpy_znp.types.nvids import OsalNvIds

IEEE = zt.EUI64.convert("00:12:4b:00:1c:aa:bb:cc")


def hx(cmd):
    return TransportFrame(cmd.to_frame()).serialize().hex()


V = {
    "SYS_PING_REQ": c.SYS.Ping.Req(),
    "SYS_PING_RSP": c.SYS.Ping.Rsp(Capabilities=t.MTCapabilities(0x0D7F)),
    "SYS_VERSION_REQ": c.SYS.Version.Req(),
    "SYS_VERSION_RSP": c.SYS.Version.Rsp(TransportRev=2, ProductId=1, MajorRel=2, MinorRel=7, MaintRel=1,
                                         CodeRevision=20210708,
                                         BootloaderBuildType=c.sys.BootloaderBuildType.NON_BOOTLOADER_BUILD,
                                         BootloaderRevision=0xFFFFFFFF),
    "SYS_RESET_REQ": c.SYS.ResetReq.Req(Type=t.ResetType.Soft),
    "SYS_RESET_IND": c.SYS.ResetInd.Callback(Reason=t.ResetReason.PowerUp, TransportRev=2, ProductId=1,
                                             MajorRel=2, MinorRel=7, MaintRel=1),
    "NV_READ_PANID_REQ": c.SYS.OSALNVRead.Req(Id=OsalNvIds.PANID, Offset=0),
    "NV_READ_PANID_RSP": c.SYS.OSALNVRead.Rsp(Status=t.Status.SUCCESS, Value=t.ShortBytes(b"\x62\x1a")),
    "NV_READ_FAIL_RSP": c.SYS.OSALNVRead.Rsp(Status=t.Status.INVALID_PARAMETER, Value=t.ShortBytes(b"")),
    "NV_WRITE_CHANLIST_REQ": c.SYS.OSALNVWrite.Req(Id=OsalNvIds.CHANLIST, Offset=0,
                                                   Value=t.ShortBytes((1 << 15).to_bytes(4, "little"))),
    "NV_WRITE_RSP": c.SYS.OSALNVWrite.Rsp(Status=t.Status.SUCCESS),
    "NV_ITEM_INIT_REQ": c.SYS.OSALNVItemInit.Req(Id=OsalNvIds.HAS_CONFIGURED_ZSTACK3, ItemLen=1,
                                                 Value=t.ShortBytes(b"\x55")),
    "NV_ITEM_INIT_RSP": c.SYS.OSALNVItemInit.Rsp(Status=t.Status.NV_ITEM_UNINIT),
    "UTIL_GET_DEVICE_INFO_REQ": c.UTIL.GetDeviceInfo.Req(),
    "UTIL_GET_DEVICE_INFO_RSP": c.UTIL.GetDeviceInfo.Rsp(Status=t.Status.SUCCESS,
                                                         IEEE=zt.EUI64.convert("00:12:4b:00:00:00:00:01"),
                                                         NWK=0x0000, DeviceType=t.DeviceTypeCapabilities(7),
                                                         DeviceState=t.DeviceState.StartedAsCoordinator,
                                                         AssociatedDevices=[0x1A2B, 0x3344]),
    "AF_REGISTER_REQ": c.AF.Register.Req(Endpoint=1, ProfileId=0x0104, DeviceId=0x0005, DeviceVersion=0,
                                         LatencyReq=c.af.LatencyReq.NoLatencyReqs,
                                         InputClusters=[0x0000, 0x0006], OutputClusters=[0x0000, 0x0006]),
    "AF_REGISTER_RSP": c.AF.Register.Rsp(Status=t.Status.SUCCESS),
    "AF_DATA_REQ": c.AF.DataRequest.Req(DstAddr=0x1A2B, DstEndpoint=1, SrcEndpoint=1, ClusterId=0x0006, TSN=7,
                                        Options=c.af.TransmitOptions.ACK_REQUEST, Radius=30,
                                        Data=t.ShortBytes(b"\x01\x05\x01")),
    "AF_DATA_RSP": c.AF.DataRequest.Rsp(Status=t.Status.SUCCESS),
    "AF_DATA_CONFIRM": c.AF.DataConfirm.Callback(Status=t.Status.MAC_NO_ACK, Endpoint=1, TSN=7),
    "AF_INCOMING_MSG": c.AF.IncomingMsg.Callback(GroupId=0, ClusterId=0x0402, SrcAddr=0x1A2B, SrcEndpoint=1,
                                                 DstEndpoint=1, WasBroadcast=False, LQI=200, SecurityUse=True,
                                                 TimeStamp=123456, TSN=9, Data=t.ShortBytes(b"\x18\x41\x0a\x00\x00\x29\x66\x08"),
                                                 MacSrcAddr=0x1A2B, MsgResultRadius=29),
    "ZDO_STARTUP_REQ": c.ZDO.StartupFromApp.Req(StartDelay=100),
    "ZDO_STARTUP_RSP": c.ZDO.StartupFromApp.Rsp(State=c.zdo.StartupState.NewNetworkState),
    "ZDO_STATE_CHANGE_IND": c.ZDO.StateChangeInd.Callback(State=t.DeviceState.StartedAsCoordinator),
    "ZDO_PERMIT_JOIN_REQ": c.ZDO.MgmtPermitJoinReq.Req(AddrMode=t.AddrMode.Broadcast, Dst=0xFFFC, Duration=60,
                                                       TCSignificance=1),
    "ZDO_PERMIT_JOIN_RSP": c.ZDO.MgmtPermitJoinReq.Rsp(Status=t.Status.SUCCESS),
    "ZDO_PERMIT_JOIN_IND": c.ZDO.PermitJoinInd.Callback(Duration=60),
    "ZDO_TC_DEV_IND": c.ZDO.TCDevInd.Callback(SrcNwk=0x1A2B, SrcIEEE=IEEE, ParentNwk=0x0000),
    "ZDO_END_DEVICE_ANNCE_IND": c.ZDO.EndDeviceAnnceInd.Callback(Src=0x1A2B, NWK=0x1A2B, IEEE=IEEE,
                                                                 Capabilities=c.zdo.MACCapabilities(0x80)),
    "ZDO_LEAVE_IND": c.ZDO.LeaveInd.Callback(NWK=0x1A2B, IEEE=IEEE, Request=False, Remove=False, Rejoin=True),
    "ZDO_NODE_DESC_REQ": c.ZDO.NodeDescReq.Req(DstAddr=0x1A2B, NWKAddrOfInterest=0x1A2B),
    "ZDO_NODE_DESC_SRSP": c.ZDO.NodeDescReq.Rsp(Status=t.Status.SUCCESS),
    "ZDO_NODE_DESC_RSP": c.ZDO.NodeDescRsp.Callback(
        Src=0x1A2B, Status=t.ZDOStatus.SUCCESS, NWK=0x1A2B,
        NodeDescriptor=c.zdo.NullableNodeDescriptor(
            logical_type=zdo_t.LogicalType.EndDevice, complex_descriptor_available=0,
            user_descriptor_available=0, reserved=0, aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz, mac_capability_flags=0x80,
            manufacturer_code=0x1234, maximum_buffer_size=80, maximum_incoming_transfer_size=160,
            server_mask=0, maximum_outgoing_transfer_size=160, descriptor_capability_field=0)),
    "ZDO_NODE_DESC_RSP_FAIL": c.ZDO.NodeDescRsp.Callback(Src=0x1A2B, Status=t.ZDOStatus.DEVICE_NOT_FOUND,
                                                         NWK=0x1A2B,
                                                         NodeDescriptor=c.zdo.NullableNodeDescriptor()),
    "ZDO_ACTIVE_EP_REQ": c.ZDO.ActiveEpReq.Req(DstAddr=0x1A2B, NWKAddrOfInterest=0x1A2B),
    "ZDO_ACTIVE_EP_RSP": c.ZDO.ActiveEpRsp.Callback(Src=0x1A2B, Status=t.ZDOStatus.SUCCESS, NWK=0x1A2B,
                                                    ActiveEndpoints=[1, 2]),
    "ZDO_SIMPLE_DESC_REQ": c.ZDO.SimpleDescReq.Req(DstAddr=0x1A2B, NWKAddrOfInterest=0x1A2B, Endpoint=1),
    "ZDO_SIMPLE_DESC_RSP": c.ZDO.SimpleDescRsp.Callback(
        Src=0x1A2B, Status=t.ZDOStatus.SUCCESS, NWK=0x1A2B,
        SimpleDescriptor=zdo_t.SizePrefixedSimpleDescriptor(endpoint=1, profile=0x0104, device_type=0x0302,
                                                             device_version=1,
                                                             input_clusters=[0x0000, 0x0001, 0x0402],
                                                             output_clusters=[0x0019])),
    "ZDO_MGMT_LEAVE_REQ": c.ZDO.MgmtLeaveReq.Req(DstAddr=0x1A2B, IEEE=IEEE,
                                                 RemoveChildren_Rejoin=c.zdo.LeaveOptions(0)),
    "ZDO_MGMT_LEAVE_SRSP": c.ZDO.MgmtLeaveReq.Rsp(Status=t.Status.SUCCESS),
    "APP_CNF_ADD_INSTALL_CODE_REQ": c.AppConfig.BDBAddInstallCode.Req(
        InstallCodeFormat=c.app_config.InstallCodeFormat.InstallCodeAndCRC, IEEE=IEEE,
        InstallCode=t.Bytes(bytes.fromhex("83FED3407A939723A5C639B26916D505C3B5"))),
    "APP_CNF_ADD_INSTALL_CODE_RSP": c.AppConfig.BDBAddInstallCode.Rsp(Status=t.Status.SUCCESS),
    "APP_CNF_SET_IC_KEY_REQ": c.AppConfig.BDBSetJoinUsesInstallCodeKey.Req(BdbJoinUsesInstallCodeKey=True),
    "APP_CNF_SET_IC_KEY_RSP": c.AppConfig.BDBSetJoinUsesInstallCodeKey.Rsp(Status=t.Status.SUCCESS),
    "RPC_ERROR_NOT_RECOGNIZED": c.RPCError.CommandNotRecognized.Rsp(
        ErrorCode=c.rpc_error.ErrorCode.InvalidCommandId, RequestHeader=c.AppConfig.BDBAddInstallCode.Req.header),
}

print("// Generated by tests/peers/zigbee/gen_znp_vectors.py (zigpy-znp 1.1.1 classes).")
for k, v in V.items():
    print(f'pub const {k}: &str = "{hx(v)}";')
# install codes: (code incl. CRC, link key) from zigpy.util.convert_install_code
import random
rnd = random.Random(7)
print("pub const INSTALL_CODES: &[(&str, &str)] = &[")
for n in (6, 8, 12, 16, 16):
    body = bytes(rnd.randrange(256) for _ in range(n))
    crc = zigpy.util.CrcX25(); crc.process(body)
    code = body + crc.finalbytes(byteorder="little")
    print(f'    ("{code.hex()}", "{bytes(zigpy.util.convert_install_code(code)).hex()}"),')
print("];")
