#!/usr/bin/env python3
"""EmberZNet NCP simulator (EZSP v13 over ASH) on a pty: the EZSP front-end of sim_devices.Network.

ASH frames are built and parsed with bellows.ash (RST/RSTACK, DATA with randomisation, ACK/NAK, CRC,
stuffing); EZSP parameters with bellows's EZSPv13 schemas. Behaviour follows a real NCP as far as Warden's
driver uses it: version negotiation (legacy header, then extended), networkInit resumes the network kept in
Network.nv (so unplug/replug resumes), formNetwork/leaveNetwork, setInitialSecurityState, setPolicy
(JOINS_USE_INSTALL_CODE_KEY -> install codes required), importTransientKey, permitJoining, sendUnicast ->
messageSentHandler then the device reacts (ZDO requests answered through incomingMessageHandler,
Mgmt_Leave_req makes the device leave), unknown commands -> invalidCommand, bad CRC -> NAK.

usage: ezsp_sim.py --link PATH [--control-port 5573] [--sensors N] [-v]
(--sensors N: N more temperature/humidity sensors ts0001..tsNNNN, see sim_devices.make_devices)
"""
import argparse
import asyncio
import logging

import bellows.ash as ash
import bellows.types as t
import zigpy.types as zt
import zigpy.util
from bellows.ezsp.v13 import EZSPv13

from sim_devices import ControlServer, Network, PtyLink

LOG = logging.getLogger("ezsp_sim")
CMDS = EZSPv13.COMMANDS
BY_ID = {v[0]: (k, v[1], v[2]) for k, v in CMDS.items()}
NCP_EUI64 = t.EUI64.convert("00:0d:6f:00:00:00:00:01")
JOINS_USE_INSTALL_CODE_KEY = 0x10


def ser(schema, **kw):
    return t.serialize_dict((), kw, schema) if isinstance(schema, dict) else schema(**kw).serialize()


class EzspNetwork(Network):
    """Network whose install codes arrive as transient link keys (EZSP never sees the code itself)."""

    def __init__(self, extra_sensors=0):
        super().__init__(extra_sensors=extra_sensors)
        self.transient_keys = {}  # ieee_hex -> 16-byte key

    def join(self, name, code=None, force=False):
        dev = self._dev(name)
        key = self.transient_keys.get(dev.ieee_hex())
        if code is not None and key is not None:
            derived = zigpy.util.convert_install_code(code)
            if derived is not None and bytes(derived) == key:
                self.install_codes[dev.ieee_hex()] = code
        return super().join(name, code=code, force=force)


class AshNcp:
    def __init__(self, sim):
        self.sim, self.buf = sim, bytearray()
        self.tx_seq = self.rx_expected = 0
        self.link = None

    def write(self, frame):
        LOG.debug("ASH -> %r", frame)
        self.link.write(bytes(ash.AshProtocol._stuff_bytes(frame.to_bytes())) + bytes([ash.Reserved.FLAG]))

    def data_received(self, data):
        for b in data:
            if b in (ash.Reserved.CANCEL, ash.Reserved.SUBSTITUTE):
                self.buf.clear()
            elif b == ash.Reserved.FLAG:
                if self.buf:
                    raw, self.buf = bytes(self.buf), bytearray()
                    try:
                        fr = ash.parse_frame(bytes(ash.AshProtocol._unstuff_bytes(raw)))
                    except Exception as e:  # bad CRC etc. -> NAK like a real NCP
                        LOG.warning("bad ASH frame %s: %r", raw.hex(), e)
                        self.write(ash.NakFrame(res=0, ncp_ready=False, ack_num=self.rx_expected))
                        continue
                    self.frame_received(fr)
            elif b in (ash.Reserved.XON, ash.Reserved.XOFF):
                continue
            else:
                self.buf.append(b)

    def frame_received(self, fr):
        LOG.debug("ASH <- %r", fr)
        if isinstance(fr, ash.RstFrame):
            self.tx_seq = self.rx_expected = 0
            self.write(ash.RStackFrame(version=2, reset_code=t.NcpResetCode.RESET_SOFTWARE))
            self.sim.on_reset()
        elif isinstance(fr, ash.DataFrame):
            if fr.frm_num != self.rx_expected:  # duplicate / out of order: re-ACK what we expect
                self.write(ash.AckFrame(res=0, ncp_ready=False, ack_num=self.rx_expected))
                return
            self.rx_expected = (fr.frm_num + 1) % 8
            self.write(ash.AckFrame(res=0, ncp_ready=False, ack_num=self.rx_expected))
            self.sim.ezsp_received(fr.ezsp_frame)

    def send_ezsp(self, payload: bytes):
        self.write(ash.DataFrame(frm_num=self.tx_seq, re_tx=False, ack_num=self.rx_expected, ezsp_frame=payload))
        self.tx_seq = (self.tx_seq + 1) % 8


class EzspSim:
    """Implements sim_devices's Radio interface on top of EZSP callbacks."""

    def __init__(self, net):
        self.net, self.ash, self.aps_seq, self.zdo_tsn = net, AshNcp(self), 0, 0x80
        self.up = False
        self.pending_security = None

    # ------------------------------------------------------------------ plumbing
    def on_reset(self):
        LOG.info("RST -> RSTACK")
        self.up = False

    def later(self, d, fn, *a, **kw):
        asyncio.get_running_loop().call_later(d, lambda: fn(*a, **kw))

    def reply(self, seq, name, **kw):
        cmd_id, _, rx = CMDS[name]
        LOG.info("  -> %s %s", name, {k: v for k, v in kw.items() if "key" not in k.lower()})
        self.ash.send_ezsp(bytes([seq, 0x80, 0x01]) + t.uint16_t(cmd_id).serialize() + ser(rx, **kw))

    def callback(self, name, **kw):
        cmd_id, _, rx = CMDS[name]
        LOG.info("  => %s", name)
        self.ash.send_ezsp(bytes([0, 0x90, 0x01]) + t.uint16_t(cmd_id).serialize() + ser(rx, **kw))

    def ezsp_received(self, f: bytes):
        if len(f) == 4 and f[2] == 0x00 and f[1] & 0x80 == 0:  # legacy header: version only
            LOG.info("<-  version(desired=%d) [legacy header]", f[3])
            self.ash.send_ezsp(bytes([f[0], 0x80, 0x00, 13, 2]) + t.uint16_t(0x7450).serialize())
            return
        if len(f) < 5:
            return
        seq, cmd_id = f[0], int.from_bytes(f[3:5], "little")
        name, tx, rx = BY_ID.get(cmd_id, (None, None, None))
        if name is None:
            return self.reply(seq, "invalidCommand", status=t.EzspStatus.ERROR_INVALID_FRAME_ID)
        try:
            args, _ = t.deserialize_dict(f[5:], tx) if isinstance(tx, dict) else ({}, b"")
        except Exception as e:
            LOG.warning("bad %s parameters: %r", name, e)
            return self.reply(seq, "invalidCommand", status=t.EzspStatus.ERROR_INVALID_FRAME_ID)
        LOG.info("<-  %s", name)
        h = getattr(self, "on_" + name, None)
        if h:
            return h(seq, **args)
        if isinstance(rx, dict) and list(rx) == ["status"]:
            return self.reply(seq, name, status=rx["status"](0))
        self.reply(seq, "invalidCommand", status=t.EzspStatus.ERROR_INVALID_FRAME_ID)

    # ------------------------------------------------------------------ commands
    def on_version(self, seq, desiredProtocolVersion):
        self.reply(seq, "version", protocolVersion=13, stackType=2, stackVersion=0x7450)

    def on_getEui64(self, seq):
        self.reply(seq, "getEui64", eui64=NCP_EUI64)

    def on_getNodeId(self, seq):
        self.reply(seq, "getNodeId", nodeId=t.EmberNodeId(0x0000 if self.up else 0xFFFE))

    def stored(self):
        return self.net.nv.get("ezsp")

    def on_networkInit(self, seq, networkInitBitmask):
        if not self.stored():
            return self.reply(seq, "networkInit", status=t.EmberStatus.NOT_JOINED)
        self.reply(seq, "networkInit", status=t.EmberStatus.SUCCESS)
        self.up = True
        self.later(0.05, self.callback, "stackStatusHandler", status=t.EmberStatus.NETWORK_UP)

    def on_networkState(self, seq):
        self.reply(seq, "networkState",
                   status=t.EmberNetworkStatus.JOINED_NETWORK if self.up else t.EmberNetworkStatus.NO_NETWORK)

    def on_getNetworkParameters(self, seq):
        s = self.stored()
        if not (self.up and s):
            p = t.EmberNetworkParameters(extendedPanId=t.ExtendedPanId.convert("00:00:00:00:00:00:00:00"),
                                         panId=t.EmberPanId(0), radioTxPower=0, radioChannel=0,
                                         joinMethod=t.EmberJoinMethod.USE_MAC_ASSOCIATION,
                                         nwkManagerId=t.EmberNodeId(0), nwkUpdateId=0, channels=t.Channels(0))
            return self.reply(seq, "getNetworkParameters", status=t.EmberStatus.NOT_JOINED,
                              nodeType=t.EmberNodeType.UNKNOWN_DEVICE, parameters=p)
        self.reply(seq, "getNetworkParameters", status=t.EmberStatus.SUCCESS, nodeType=t.EmberNodeType.COORDINATOR,
                   parameters=t.EmberNetworkParameters.deserialize(bytes.fromhex(s["params"]))[0])

    def on_setInitialSecurityState(self, seq, state):
        self.pending_security = state  # network key stays in memory only (never logged)
        self.reply(seq, "setInitialSecurityState", status=t.EmberStatus.SUCCESS)

    def on_formNetwork(self, seq, parameters):
        if self.up or self.pending_security is None:
            return self.reply(seq, "formNetwork", status=t.EmberStatus.INVALID_CALL)
        self.net.nv["ezsp"] = {"params": parameters.serialize().hex()}
        self.net.formed(int(parameters.panId), str(parameters.extendedPanId).replace(":", ""),
                        int(parameters.radioChannel))
        self.net.transient_keys.clear()
        self.reply(seq, "formNetwork", status=t.EmberStatus.SUCCESS)
        self.up = True
        self.later(0.05, self.callback, "stackStatusHandler", status=t.EmberStatus.NETWORK_UP)

    def on_leaveNetwork(self, seq):
        if not self.up:
            return self.reply(seq, "leaveNetwork", status=t.EmberStatus.INVALID_CALL)
        self.net.nv.pop("ezsp", None)
        self.up = False
        self.reply(seq, "leaveNetwork", status=t.EmberStatus.SUCCESS)
        self.later(0.05, self.callback, "stackStatusHandler", status=t.EmberStatus.NETWORK_DOWN)

    def on_setPolicy(self, seq, policyId, decisionId):
        if policyId == t.EzspPolicyId.TRUST_CENTER_POLICY:
            self.net.install_code_required = bool(int(decisionId) & JOINS_USE_INSTALL_CODE_KEY)
        self.reply(seq, "setPolicy", status=t.EzspStatus.SUCCESS)

    def on_importTransientKey(self, seq, eui64, plaintext_key, flags):
        self.net.transient_keys[bytes(reversed(bytes(eui64))).hex()] = bytes(plaintext_key)
        self.reply(seq, "importTransientKey", status=t.sl_Status.OK)

    def on_permitJoining(self, seq, duration):
        if not self.up:
            return self.reply(seq, "permitJoining", status=t.EmberStatus.NETWORK_DOWN)
        self.reply(seq, "permitJoining", status=t.EmberStatus.SUCCESS)
        self.net.set_permit_join(int(duration))

    def on_sendUnicast(self, seq, type, indexOrDestination, apsFrame, messageTag, messageContents):
        dev = self.net.by_nwk(int(indexOrDestination))
        if not self.up or dev is None or not dev.joined:
            return self.reply(seq, "sendUnicast", status=t.EmberStatus.INVALID_CALL, sequence=0)
        self.aps_seq = (self.aps_seq + 1) & 0xFF
        self.reply(seq, "sendUnicast", status=t.EmberStatus.SUCCESS, sequence=self.aps_seq)
        self.later(0.02, self.callback, "messageSentHandler", type=type, indexOrDestination=int(indexOrDestination),
                   apsFrame=apsFrame, messageTag=messageTag, status=t.EmberStatus.SUCCESS, messageContents=b"")
        data = bytes(messageContents)
        if apsFrame.profileId == 0:
            self.later(0.04, self.zdo_request, dev, int(apsFrame.clusterId), data)
        else:
            self.later(0.04, self.net.deliver, dev, int(apsFrame.sourceEndpoint), int(apsFrame.destinationEndpoint),
                       int(apsFrame.clusterId), data)

    # ------------------------------------------------------------------ ZDO answers from the device model
    def zdo_request(self, dev, cluster, data):
        if not data:
            return
        tsn, body, nwk = data[0], b"", t.uint16_t(dev.nwk).serialize()
        if cluster == 0x0002:  # Node_Desc_req
            body = nwk + bytes([dev.logical_type & 0x07, 0x40, dev.mac_capabilities]) + \
                t.uint16_t(dev.manufacturer_code).serialize() + bytes([0x52]) + t.uint16_t(0x52).serialize() + \
                t.uint16_t(0x2C00).serialize() + t.uint16_t(0x52).serialize() + bytes([0])
        elif cluster == 0x0005:  # Active_EP_req
            eps = sorted(dev.endpoints)
            body = nwk + bytes([len(eps)] + eps)
        elif cluster == 0x0004 and len(data) >= 4:  # Simple_Desc_req
            ep = data[3]
            if ep not in dev.endpoints:
                return self.zdo_response(dev, cluster, bytes([tsn, 0x82]) + nwk + bytes([0]))
            prof, dtype, ins, outs = dev.endpoints[ep]
            sd = bytes([ep]) + t.uint16_t(prof).serialize() + t.uint16_t(dtype).serialize() + bytes([0]) + \
                bytes([len(ins)]) + b"".join(t.uint16_t(c).serialize() for c in ins) + \
                bytes([len(outs)]) + b"".join(t.uint16_t(c).serialize() for c in outs)
            body = nwk + bytes([len(sd)]) + sd
        elif cluster == 0x0021 and len(data) >= 12:  # Bind_req: src IEEE, src ep, cluster, dst
            dev.remember({"zdo": "bind", "cluster": int.from_bytes(data[10:12], "little")})
            return self.zdo_response(dev, cluster, bytes([tsn, 0]))
        elif cluster == 0x0034:  # Mgmt_Leave_req
            self.zdo_response(dev, cluster, bytes([tsn, 0]))
            self.net.host_leave(dev)
            return self.left(dev)
        else:
            return
        self.zdo_response(dev, cluster, bytes([tsn, 0]) + body)

    def zdo_response(self, dev, cluster, payload):
        self.frame(dev, 0x0000, cluster | 0x8000, 0, 0, payload, False)

    # ------------------------------------------------------------------ Radio interface
    def frame(self, dev, profile, cluster, src_ep, dst_ep, payload, secured):
        opts = t.EmberApsOption.APS_OPTION_ENCRYPTION if secured else t.EmberApsOption.APS_OPTION_NONE
        aps = t.EmberApsFrame(profileId=profile, clusterId=cluster, sourceEndpoint=src_ep, destinationEndpoint=dst_ep,
                              options=opts, groupId=0, sequence=dev.next_tsn())
        self.callback("incomingMessageHandler", type=t.EmberIncomingMessageType.INCOMING_UNICAST, apsFrame=aps,
                      lastHopLqi=200, lastHopRssi=-50, sender=t.EmberNodeId(dev.nwk), bindingIndex=0xFF,
                      addressIndex=0xFF, messageContents=payload)

    def tc_join(self, dev):
        refused = self.net.install_code_required and dev.ieee_hex() not in self.net.transient_keys
        self.callback("trustCenterJoinHandler", newNodeId=t.EmberNodeId(dev.nwk), newNodeEui64=dev.ieee,
                      status=t.EmberDeviceUpdate.STANDARD_SECURITY_UNSECURED_JOIN,
                      policyDecision=t.EmberJoinDecision.DENY_JOIN if refused else
                      t.EmberJoinDecision.USE_PRECONFIGURED_KEY, parentOfNewNodeId=t.EmberNodeId(0))

    def announce(self, dev):
        self.callback("childJoinHandler", index=0, joining=t.Bool.true, childId=t.EmberNodeId(dev.nwk),
                      childEui64=dev.ieee, childType=t.EmberNodeType.ROUTER if dev.logical_type == 1 else
                      t.EmberNodeType.SLEEPY_END_DEVICE)
        annce = bytes([dev.next_tsn()]) + t.uint16_t(dev.nwk).serialize() + dev.ieee.serialize() + \
            bytes([dev.mac_capabilities])
        self.frame(dev, 0x0000, 0x0013, 0, 0, annce, False)

    def left(self, dev):
        self.callback("trustCenterJoinHandler", newNodeId=t.EmberNodeId(dev.nwk), newNodeEui64=dev.ieee,
                      status=t.EmberDeviceUpdate.DEVICE_LEFT, policyDecision=t.EmberJoinDecision.NO_ACTION,
                      parentOfNewNodeId=t.EmberNodeId(0))

    def incoming(self, dev, src_ep, cluster, zcl_bytes, secured):
        self.frame(dev, 0x0104, cluster, src_ep, 1, zcl_bytes, secured)

    def permit_join_changed(self, secs):
        LOG.info("permit join %ss", secs)  # EZSP has no callback for this


class Frontend:
    def __init__(self, link, sim):
        self.sim, self.done = sim, asyncio.Event()
        self.pty = PtyLink(link, sim.ash.data_received)
        sim.ash.link = self.pty

    def unplug(self):
        self.pty.unplug()
        self.sim.up = False  # power cut: the NCP forgets RAM state, keeps its tokens (Network.nv)

    def replug(self):
        self.pty.replug()
        self.sim.ash.tx_seq = self.sim.ash.rx_expected = 0

    def quit(self):
        self.done.set()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--link", default="/tmp/ttyEZSP")
    ap.add_argument("--control-port", type=int, default=5573)
    ap.add_argument("--sensors", type=int, default=0, metavar="N",
                    help="add N temperature/humidity sensors ts0001..tsNNNN (mains-powered end devices)")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.v else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        net = EzspNetwork(extra_sensors=a.sensors)
    except ValueError as e:
        ap.error(str(e))
    sim = EzspSim(net)
    net.radio = sim
    fe = Frontend(a.link, sim)
    await ControlServer(net, fe).start(a.control_port)
    LOG.info("EZSP/ASH simulator on %s (control 127.0.0.1:%d)", a.link, a.control_port)
    await fe.done.wait()
    fe.pty.unplug()


if __name__ == "__main__":
    asyncio.run(main())
