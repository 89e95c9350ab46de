#!/usr/bin/env python3
"""Simulated TI Z-Stack (ZNP, MT over UART) coordinator on a pty, for Warden's Zigbee tests.

Every MT frame is parsed and built with zigpy-znp's own classes: zigpy_znp.uart.ZnpMtProtocol frames the
byte stream, zigpy_znp.commands decodes requests and builds responses/callbacks. Device behaviour (ZCL,
descriptors, join rules) lives in sim_devices.py, shared with the EZSP front-end.

usage: znp_sim.py --link /tmp/ttyZNP --control-port 5570 [--sensors N] [-v]
(--sensors N: N more temperature/humidity sensors ts0001..tsNNNN, see sim_devices.make_devices)

Implements what Warden's ZNP driver uses: SYS.Ping/Version/ResetReq(->ResetInd)/OSALNVRead/OSALNVWrite/
OSALNVItemInit/OSALNVLength, UTIL.GetDeviceInfo, AF.Register, AF.DataRequest(Ext) (-> DataConfirm, then the
device answers), ZDO.StartupFromApp (-> StateChangeInd 8, 9), ZDO.MgmtPermitJoinReq (-> MgmtPermitJoinRsp,
PermitJoinInd, closing timer -> PermitJoinInd 0), ZDO.Node/ActiveEp/SimpleDesc requests, ZDO.BindReq,
ZDO.MgmtLeaveReq (-> MgmtLeaveRsp, LeaveInd), APP_CNF.BDBAddInstallCode and BDBSetJoinUsesInstallCodeKey.
Anything else gets RPCError.CommandNotRecognized, like real firmware. NV memory lives in the Network, so
`unplug`/`replug` (a power cycle: the stack is not running afterwards) resumes the same network.
"""
import argparse
import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zigpy.types as zt  # noqa: E402
import zigpy.util  # noqa: E402
import zigpy.zdo.types as zdo_t  # noqa: E402
import zigpy_znp.commands as c  # noqa: E402
import zigpy_znp.types as t  # noqa: E402
from zigpy_znp.frames import GeneralFrame  # noqa: E402
from zigpy_znp.types.nvids import OsalNvIds  # noqa: E402
from zigpy_znp.uart import ZnpMtProtocol  # noqa: E402

from sim_devices import ControlServer, Network, PtyLink  # noqa: E402

LOG = logging.getLogger("znp_sim")
COORD_IEEE = zt.EUI64.convert("00:12:4b:00:00:00:00:01")
DEFAULT_KEY = bytes(range(16))


def fresh_nv():
    """NV items of a factory-fresh coordinator firmware (HAS_CONFIGURED_ZSTACK3 absent)."""
    return {
        OsalNvIds.STARTUP_OPTION: bytearray(b"\x00"),
        OsalNvIds.LOGICAL_TYPE: bytearray(b"\x00"),
        OsalNvIds.PANID: bytearray(b"\xff\xff"),
        OsalNvIds.EXTENDED_PAN_ID: bytearray(b"\xdd" * 8),
        OsalNvIds.CHANLIST: bytearray((1 << 11).to_bytes(4, "little")),
        OsalNvIds.PRECFGKEY: bytearray(DEFAULT_KEY),
        OsalNvIds.PRECFGKEYS_ENABLE: bytearray(b"\x00"),
    }


class PtyTransport:
    """The minimal transport ZnpMtProtocol needs, on top of a PtyLink."""

    def __init__(self, link):
        self.link = link

    def write(self, data):
        LOG.debug("sim -> host %s", data.hex(" "))
        self.link.write(data)

    def is_closing(self):
        return False

    def close(self):
        pass


class ZnpFrontEnd:
    def __init__(self, network, link_path):
        self.net = network
        self.net.radio = self
        if not self.net.nv:
            self.net.nv.update(fresh_nv())
        self.state = t.DeviceState.InitializedNotStarted
        self.endpoints = {}
        self.form_pending = False
        self.stop = asyncio.Event()
        self.uart = ZnpMtProtocol(self)
        self.link = PtyLink(link_path, self._data)
        self.uart.connection_made(PtyTransport(self.link))

    # ---------------------------------------------------------------- plumbing
    def _data(self, data):
        LOG.debug("host -> sim %s", data.hex(" "))
        self.uart.data_received(data)

    def connection_made(self):
        pass

    def connection_lost(self, exc):
        pass

    def send(self, cmd):
        LOG.info("  -> %s", cmd)
        self.uart.send(cmd.to_frame())

    def later(self, delay, fn, *args):
        asyncio.get_running_loop().call_later(delay, fn, *args)

    def not_recognized(self, header):
        self.send(c.RPCError.CommandNotRecognized.Rsp(ErrorCode=c.rpc_error.ErrorCode.InvalidCommandId,
                                                      RequestHeader=header))

    def frame_received(self, frame):
        cls = c.COMMANDS_BY_ID.get(frame.header)
        if cls is None:
            LOG.warning("unknown frame %s", frame)
            if frame.header.type == t.CommandType.SREQ:
                self.not_recognized(frame.header)
            return
        try:
            req = cls.from_frame(frame)
        except Exception:  # noqa: BLE001 - firmware answers a bad request with an RPC error
            LOG.warning("undecodable %s", frame, exc_info=True)
            if frame.header.type == t.CommandType.SREQ:
                self.send(c.RPCError.CommandNotRecognized.Rsp(ErrorCode=c.rpc_error.ErrorCode.InvalidParameter,
                                                              RequestHeader=frame.header))
            return
        LOG.info("<-  %s", req)
        handler = getattr(self, "on_" + type(req).__qualname__.replace(".", "_"), None)
        if handler is None:
            if frame.header.type == t.CommandType.SREQ:
                self.not_recognized(frame.header)
            return
        handler(req)

    # ---------------------------------------------------------------- control-port hooks
    def unplug(self):
        self.link.unplug()

    def replug(self):
        # A power cycle: NV and the network survive, the running stack does not.
        self.state = t.DeviceState.InitializedNotStarted
        self.endpoints.clear()
        self.link.replug()

    def quit(self):
        self.stop.set()

    # ---------------------------------------------------------------- Radio interface (sim_devices)
    def tc_join(self, dev):
        self.send(c.ZDO.TCDevInd.Callback(SrcNwk=dev.nwk, SrcIEEE=dev.ieee, ParentNwk=0x0000))

    def announce(self, dev):
        self.send(c.ZDO.EndDeviceAnnceInd.Callback(Src=dev.nwk, NWK=dev.nwk, IEEE=dev.ieee,
                                                   Capabilities=c.zdo.MACCapabilities(dev.mac_capabilities)))

    def left(self, dev):
        self.send(c.ZDO.LeaveInd.Callback(NWK=dev.nwk, IEEE=dev.ieee, Request=False, Remove=False, Rejoin=False))

    def incoming(self, dev, src_ep, cluster, zcl_bytes, secured):
        self.send(c.AF.IncomingMsg.Callback(GroupId=0, ClusterId=cluster, SrcAddr=dev.nwk, SrcEndpoint=src_ep,
                                            DstEndpoint=1, WasBroadcast=False, LQI=200, SecurityUse=bool(secured),
                                            TimeStamp=123456, TSN=0, Data=t.ShortBytes(zcl_bytes),
                                            MacSrcAddr=dev.nwk, MsgResultRadius=29))

    def permit_join_changed(self, secs):
        self.send(c.ZDO.PermitJoinInd.Callback(Duration=secs))

    # ---------------------------------------------------------------- SYS / UTIL
    def on_SYS_Ping_Req(self, req):
        self.send(c.SYS.Ping.Rsp(Capabilities=t.MTCapabilities(0x0D7F)))

    def on_SYS_Version_Req(self, req):
        self.send(c.SYS.Version.Rsp(TransportRev=2, ProductId=1, MajorRel=2, MinorRel=7, MaintRel=1,
                                    CodeRevision=20210708,
                                    BootloaderBuildType=c.sys.BootloaderBuildType.NON_BOOTLOADER_BUILD,
                                    BootloaderRevision=0xFFFFFFFF))

    def on_SYS_ResetReq_Req(self, req):
        nv = self.net.nv
        if nv[OsalNvIds.STARTUP_OPTION][0] & t.StartupOptions.ClearState:
            self.form_pending = True
            nv[OsalNvIds.STARTUP_OPTION][0] = 0
            nv.pop(OsalNvIds.HAS_CONFIGURED_ZSTACK3, None)
        self.state = t.DeviceState.InitializedNotStarted
        self.endpoints.clear()
        self.net.set_permit_join(0) if self.net.permit_join_remaining() else None
        self.later(0.05, self.send, c.SYS.ResetInd.Callback(Reason=t.ResetReason.PowerUp, TransportRev=2,
                                                            ProductId=1, MajorRel=2, MinorRel=7, MaintRel=1))

    def _nv_status_value(self, item, offset):
        v = self.net.nv.get(item)
        if v is None:
            return t.Status.INVALID_PARAMETER, b""
        return t.Status.SUCCESS, bytes(v[offset:offset + 246])

    def on_SYS_OSALNVRead_Req(self, req):
        status, value = self._nv_status_value(req.Id, req.Offset)
        self.send(c.SYS.OSALNVRead.Rsp(Status=status, Value=t.ShortBytes(value)))

    def on_SYS_OSALNVReadExt_Req(self, req):
        status, value = self._nv_status_value(req.Id, req.Offset)
        self.send(c.SYS.OSALNVReadExt.Rsp(Status=status, Value=t.ShortBytes(value)))

    def on_SYS_OSALNVLength_Req(self, req):
        self.send(c.SYS.OSALNVLength.Rsp(ItemLen=len(self.net.nv.get(req.Id, b""))))

    def on_SYS_OSALNVItemInit_Req(self, req):
        if req.Id in self.net.nv:
            self.send(c.SYS.OSALNVItemInit.Rsp(Status=t.Status.SUCCESS))
        else:
            self.net.nv[req.Id] = bytearray(bytes(req.Value).ljust(req.ItemLen, b"\x00")[:req.ItemLen])
            self.send(c.SYS.OSALNVItemInit.Rsp(Status=t.Status.NV_ITEM_UNINIT))

    def _nv_write(self, req, rsp):
        v = self.net.nv.get(req.Id)
        value = bytes(req.Value)
        if v is None:
            self.send(rsp(Status=t.Status.INVALID_PARAMETER))
        elif req.Offset + len(value) > len(v):
            self.send(rsp(Status=t.Status.NV_BAD_ITEM_LEN))
        else:
            v[req.Offset:req.Offset + len(value)] = value
            self.send(rsp(Status=t.Status.SUCCESS))

    def on_SYS_OSALNVWrite_Req(self, req):
        self._nv_write(req, c.SYS.OSALNVWrite.Rsp)

    def on_SYS_OSALNVWriteExt_Req(self, req):
        self._nv_write(req, c.SYS.OSALNVWriteExt.Rsp)

    def on_UTIL_GetDeviceInfo_Req(self, req):
        joined = [d.nwk for d in self.net.devices.values() if d.joined]
        self.send(c.UTIL.GetDeviceInfo.Rsp(Status=t.Status.SUCCESS, IEEE=COORD_IEEE, NWK=0x0000,
                                           DeviceType=t.DeviceTypeCapabilities(7), DeviceState=self.state,
                                           AssociatedDevices=joined))

    # ---------------------------------------------------------------- network start
    def on_AF_Register_Req(self, req):
        if req.Endpoint in self.endpoints:
            self.send(c.AF.Register.Rsp(Status=t.Status.APS_DUPLICATE_ENTRY))
            return
        self.endpoints[req.Endpoint] = req
        self.send(c.AF.Register.Rsp(Status=t.Status.SUCCESS))

    def on_ZDO_StartupFromApp_Req(self, req):
        nv = self.net.nv
        new = self.form_pending or not self.net.network["formed"]
        if self.state == t.DeviceState.StartedAsCoordinator:
            self.send(c.ZDO.StartupFromApp.Rsp(State=c.zdo.StartupState.RestoredNetworkState))
            return
        self.send(c.ZDO.StartupFromApp.Rsp(State=c.zdo.StartupState.NewNetworkState if new
                                           else c.zdo.StartupState.RestoredNetworkState))
        if new:
            self.form_pending = False
            mask = int.from_bytes(nv[OsalNvIds.CHANLIST], "little")
            channel = next((ch for ch in range(11, 27) if mask & (1 << ch)), None)
            pan = int.from_bytes(nv[OsalNvIds.PANID], "little")
            self.net.formed(pan, bytes(nv[OsalNvIds.EXTENDED_PAN_ID]).hex(), channel)
        for i, st in enumerate([t.DeviceState.StartingAsCoordinator, t.DeviceState.StartedAsCoordinator]):
            self.later(0.05 * (i + 1), self._set_state, st)

    def _set_state(self, st):
        self.state = st
        self.send(c.ZDO.StateChangeInd.Callback(State=st))

    def on_ZDO_MgmtPermitJoinReq_Req(self, req):
        self.send(c.ZDO.MgmtPermitJoinReq.Rsp(Status=t.Status.SUCCESS))
        self.later(0.01, self.send, c.ZDO.MgmtPermitJoinRsp.Callback(Src=0x0000, Status=t.ZDOStatus.SUCCESS))
        self.later(0.02, self.net.set_permit_join, req.Duration)

    # ---------------------------------------------------------------- install codes
    def on_AppConfig_BDBAddInstallCode_Req(self, req):
        code = bytes(req.InstallCode)
        if req.InstallCodeFormat != c.app_config.InstallCodeFormat.InstallCodeAndCRC:
            self.send(c.AppConfig.BDBAddInstallCode.Rsp(Status=t.Status.INVALID_PARAMETER))
            return
        try:
            zigpy.util.convert_install_code(code)
        except ValueError:
            self.send(c.AppConfig.BDBAddInstallCode.Rsp(Status=t.Status.FAILURE))
            return
        self.net.install_codes[bytes(reversed(bytes(req.IEEE))).hex()] = code
        self.send(c.AppConfig.BDBAddInstallCode.Rsp(Status=t.Status.SUCCESS))

    def on_AppConfig_BDBSetJoinUsesInstallCodeKey_Req(self, req):
        self.net.install_code_required = bool(req.BdbJoinUsesInstallCodeKey)
        self.send(c.AppConfig.BDBSetJoinUsesInstallCodeKey.Rsp(Status=t.Status.SUCCESS))

    # ---------------------------------------------------------------- ZDO towards devices
    def _zdo_target(self, req, srsp):
        """SRSP first (the request was accepted); a device that is not on the network never answers."""
        self.send(srsp(Status=t.Status.SUCCESS))
        dev = self.net.by_nwk(req.NWKAddrOfInterest)
        return dev if dev is not None and dev.joined else None

    def on_ZDO_NodeDescReq_Req(self, req):
        dev = self._zdo_target(req, c.ZDO.NodeDescReq.Rsp)
        if dev is None:
            return
        nd = c.zdo.NullableNodeDescriptor(
            logical_type=zdo_t.LogicalType(dev.logical_type), complex_descriptor_available=0,
            user_descriptor_available=0, reserved=0, aps_flags=0,
            frequency_band=zdo_t.NodeDescriptor.FrequencyBand.Freq2400MHz,
            mac_capability_flags=dev.mac_capabilities, manufacturer_code=dev.manufacturer_code,
            maximum_buffer_size=80, maximum_incoming_transfer_size=160, server_mask=0,
            maximum_outgoing_transfer_size=160, descriptor_capability_field=0)
        self.later(0.02, self.send, c.ZDO.NodeDescRsp.Callback(Src=dev.nwk, Status=t.ZDOStatus.SUCCESS,
                                                              NWK=dev.nwk, NodeDescriptor=nd))

    def on_ZDO_ActiveEpReq_Req(self, req):
        dev = self._zdo_target(req, c.ZDO.ActiveEpReq.Rsp)
        if dev is None:
            return
        self.later(0.02, self.send, c.ZDO.ActiveEpRsp.Callback(Src=dev.nwk, Status=t.ZDOStatus.SUCCESS,
                                                              NWK=dev.nwk, ActiveEndpoints=list(dev.endpoints)))

    def on_ZDO_SimpleDescReq_Req(self, req):
        dev = self._zdo_target(req, c.ZDO.SimpleDescReq.Rsp)
        if dev is None:
            return
        if req.Endpoint not in dev.endpoints:
            # zigpy-znp cannot serialise an empty descriptor; the firmware sends a zero length byte.
            payload = (zt.NWK(dev.nwk).serialize() + t.ZDOStatus.NOT_ACTIVE.serialize()
                       + zt.NWK(dev.nwk).serialize() + b"\x00")
            self.later(0.02, self.uart.send, GeneralFrame(c.ZDO.SimpleDescRsp.Callback.header, payload))
            return
        profile, device_type, inputs, outputs = dev.endpoints[req.Endpoint]
        sd = zdo_t.SizePrefixedSimpleDescriptor(endpoint=req.Endpoint, profile=profile, device_type=device_type,
                                                device_version=1, input_clusters=inputs, output_clusters=outputs)
        self.later(0.02, self.send, c.ZDO.SimpleDescRsp.Callback(Src=dev.nwk, Status=t.ZDOStatus.SUCCESS,
                                                                NWK=dev.nwk, SimpleDescriptor=sd))

    def on_ZDO_BindReq_Req(self, req):
        self.send(c.ZDO.BindReq.Rsp(Status=t.Status.SUCCESS))
        dev = self.net.by_ieee(req.Src)
        if dev is not None:
            dev.remember({"zdo": "bind", "cluster": int(req.ClusterId)})
        self.later(0.02, self.send, c.ZDO.BindRsp.Callback(Src=req.Dst, Status=t.ZDOStatus.SUCCESS))

    def on_ZDO_MgmtLeaveReq_Req(self, req):
        self.send(c.ZDO.MgmtLeaveReq.Rsp(Status=t.Status.SUCCESS))
        dev = self.net.by_nwk(req.DstAddr)
        if dev is None or not dev.joined:
            return
        dev.remember({"zdo": "mgmt_leave"})
        self.net.host_leave(dev)
        self.later(0.02, self.send, c.ZDO.MgmtLeaveRsp.Callback(Src=dev.nwk, Status=t.ZDOStatus.SUCCESS))
        self.later(0.04, self.send, c.ZDO.LeaveInd.Callback(NWK=dev.nwk, IEEE=dev.ieee, Request=False,
                                                           Remove=False, Rejoin=False))

    # ---------------------------------------------------------------- application data
    def _af_data(self, req, rsp_cls, dst):
        self.send(rsp_cls(Status=t.Status.SUCCESS))
        dev = self.net.by_nwk(dst)
        if dev is None or not dev.joined:
            self.later(0.02, self.send, c.AF.DataConfirm.Callback(Status=t.Status.NWK_NO_ROUTE,
                                                                 Endpoint=req.DstEndpoint, TSN=req.TSN))
            return
        self.later(0.02, self.send, c.AF.DataConfirm.Callback(Status=t.Status.SUCCESS, Endpoint=req.DstEndpoint,
                                                             TSN=req.TSN))
        self.later(0.04, self.net.deliver, dev, req.SrcEndpoint, req.DstEndpoint, int(req.ClusterId),
                   bytes(req.Data))

    def on_AF_DataRequest_Req(self, req):
        self._af_data(req, c.AF.DataRequest.Rsp, req.DstAddr)

    def on_AF_DataRequestExt_Req(self, req):
        addr = req.DstAddrModeAddress
        dst = addr.address if addr.mode == t.AddrMode.NWK else None
        if addr.mode == t.AddrMode.IEEE:
            dev = self.net.by_ieee(addr.address)
            dst = dev.nwk if dev is not None else None
        self._af_data(req, c.AF.DataRequestExt.Rsp, dst)


async def main():
    global COORD_IEEE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", required=True, help="create a pty and symlink its slave here")
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--sensors", type=int, default=0, metavar="N",
                    help="add N temperature/humidity sensors ts0001..tsNNNN (mains-powered end devices)")
    ap.add_argument("--ieee", default=str(COORD_IEEE),
                    help="the coordinator's IEEE address (another value: a different stick)")
    ap.add_argument("-v", action="store_true", help="log every byte")
    a = ap.parse_args()
    COORD_IEEE = zt.EUI64.convert(a.ieee)
    logging.basicConfig(level=logging.DEBUG if a.v else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        net = Network(extra_sensors=a.sensors)
    except ValueError as e:
        ap.error(str(e))
    fe = ZnpFrontEnd(net, a.link)
    srv = await ControlServer(net, fe).start(a.control_port)
    LOG.info("ZNP simulator ready on %s (control 127.0.0.1:%d)", a.link, a.control_port)
    print(f"READY {a.link} {a.control_port}", flush=True)
    await fe.stop.wait()
    srv.close()
    fe.link.unplug()


if __name__ == "__main__":
    asyncio.run(main())
