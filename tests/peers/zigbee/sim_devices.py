#!/usr/bin/env python3
"""Stack-agnostic simulated Zigbee network for Warden's coordinator tests.

A stack front-end (znp_sim.py for Z-Stack ZNP, ezsp_sim.py for EmberZNet EZSP) owns the serial link and
translates between its wire protocol and this module. Every ZCL byte is built and parsed with
zigpy.zcl.foundation / zigpy.types.

API
---
Radio (implemented by the front-end; the Network calls it):
    tc_join(dev)                  trust centre reports a device joining (ZNP TCDevInd, EZSP trustCenterJoinHandler)
    announce(dev)                 the device's ZDO Device_annce
    left(dev)                     the device left
    incoming(dev, src_ep, cluster, zcl_bytes, secured)   an application frame from the device
    permit_join_changed(secs)     joining opened for `secs` seconds (0 = closed)

Network(radio=None, extra_sensors=0)   set .radio once the front-end exists
    .devices {name: Device}       th1, motion1, plug1, bulb1 (fixed IEEE and NWK), then `extra_sensors` more
                                  temperature/humidity sensors ts0001..tsNNNN (see make_devices)
    .by_nwk(nwk) / .by_ieee(ieee) -> Device | None
    .set_permit_join(secs)        opens/closes joining, runs the closing timer, tells the radio
    .permit_join_remaining() -> int
    .install_codes {ieee: bytes}  code incl. CRC, as provisioned by the host
    .install_code_required        bool, set by the host
    .nv {}                        free-form persistent store for the front-end (survives unplug/replug)
    .network {pan_id, extended_pan_id, channel, formed}   what the front-end formed (no key)
    .form_count                   networks formed so far; call .formed(pan_id, ext_pan_id_hex, channel)
    .join(name, code=None, force=False) -> reply line   (control command semantics below)
    .report(name, what, value), .raw(name, cluster, zcl_bytes), .flood(name, n), .leave(name)
    .join_all(prefix, force=False) / .report_all(prefix, what, value) -> reply line   (joinall / reportall below)
    .host_leave(dev)              the host asked the device to leave (MgmtLeave): marks it gone, no radio call
    .deliver(dev, src_ep, dst_ep, cluster, data)   host -> device application frame; the device reacts
    .state() -> dict              for the `state` control line
Device: name, ieee (zigpy EUI64), nwk, logical_type (0/1/2), mac_capabilities, manufacturer_code,
    endpoints {ep: (profile, device_type, [in clusters], [out clusters])}, attrs {(cluster, attr): (type, value)},
    joined, secured (joined with an install code), last_commands (most recent first, at most 20)
ControlServer(network, frontend).start(port): line protocol on 127.0.0.1; frontend provides unplug(), replug(),
    quit(). Lines: join <dev> [code=<hex>] [force] | report <dev> <what> <value> | report <dev> raw <cluster hex>
    <zcl hex> | flood <dev> <n> | leave <dev> | joinall <prefix> [force] | reportall <prefix> <what> <value> | state |
    unplug | replug | quit. Replies `OK ...` / `ERR ...`.
    joinall: every device whose name starts with <prefix>, in name order, joins without an install code (as
    `join <dev> [force]`); `OK joined K` (`OK joined K refused R` when the trust centre requires install codes),
    `ERR closed` when joining is closed (and no `force`), `ERR unknown-device <prefix>*` when no name matches.
    reportall: one `report <dev> <what> <value>` from each matching device, in name order; `OK reported K`.
    Checked first, so either every matching device reports or none does: `ERR not-joined <dev>`, `ERR <dev>
    does not report <what>`, `ERR unknown-device <prefix>*`.
PtyLink(link_path): creates a pty whose slave is symlinked at link_path; write() buffers when the host is slow;
    unplug() closes it and removes the symlink; replug() makes a new pty at the same path.
"""
import asyncio
import json
import logging
import os
import termios
import time
import tty

import zigpy.types as zt
import zigpy.zcl.foundation as f

LOG = logging.getLogger("sim_devices")

# ZCL data type ids used below
BOOL, MAP8, MAP16, U8, U16, U24, U48, I16, I24, ENUM8, ENUM16, STR = (
    0x10, 0x18, 0x19, 0x20, 0x21, 0x22, 0x25, 0x29, 0x2A, 0x30, 0x31, 0x42)

BASIC, POWER, ONOFF, LEVEL, TEMP, HUMIDITY, OCCUPANCY, IAS_ZONE, COLOR, METERING, ELECTRICAL = (
    0x0000, 0x0001, 0x0006, 0x0008, 0x0402, 0x0405, 0x0406, 0x0500, 0x0300, 0x0702, 0x0B04)

# `report <dev> <what> <value>` -> (cluster, attribute)
REPORTABLE = {
    "temperature": (TEMP, 0x0000), "humidity": (HUMIDITY, 0x0000), "occupancy": (OCCUPANCY, 0x0000),
    "battery": (POWER, 0x0021), "power": (ELECTRICAL, 0x050B), "energy": (METERING, 0x0000),
    "onoff": (ONOFF, 0x0000), "level": (LEVEL, 0x0000), "color_temp": (COLOR, 0x0007),
}


def zcl_value(type_id, value):
    return f.TypeValue(type=type_id, value=f.DataType.from_type_id(type_id).python_type(value))


class Device:
    def __init__(self, name, ieee, nwk, logical_type, mac_capabilities, model, power_source, device_type, clusters,
                 attrs):
        self.name, self.ieee, self.nwk = name, zt.EUI64.convert(ieee), nwk
        self.logical_type, self.mac_capabilities, self.manufacturer_code = logical_type, mac_capabilities, 0x1234
        self.endpoints = {1: (0x0104, device_type, list(clusters), [])}
        self.attrs = {
            (BASIC, 0x0000): (U8, 3), (BASIC, 0x0004): (STR, "SimCo"), (BASIC, 0x0005): (STR, model),
            (BASIC, 0x0006): (STR, "20260101"), (BASIC, 0x0007): (ENUM8, power_source),
            (BASIC, 0x4000): (STR, "1.2.3"),
        }
        self.attrs.update(attrs)
        self.joined = False
        self.secured = False
        self.tsn = 0
        self.last_commands = []

    def ieee_hex(self):
        return bytes(reversed(bytes(self.ieee))).hex()

    def next_tsn(self):
        self.tsn = (self.tsn + 1) & 0xFF
        return self.tsn

    def remember(self, what):
        self.last_commands.insert(0, what)
        del self.last_commands[20:]

    def value(self, cluster, attr):
        return self.attrs.get((cluster, attr), (None, None))[1]


SENSOR_NWK_BASE = 0x2000
MAX_EXTRA_SENSORS = 9999


def extra_sensor(i):
    """The i-th (1-based) extra sensor: mains-powered end device (receiver on when idle, so not sleepy) with
    Basic, Temperature and Humidity; IEEE 00:12:4b:00:00:01:hi:lo, NWK 0x2000 + i."""
    return Device(f"ts{i:04d}", f"00:12:4b:00:00:01:{i >> 8:02x}:{i & 0xFF:02x}", SENSOR_NWK_BASE + i, 2, 0x8C,
                  "SIM-TS-1", 1, 0x0302, [BASIC, TEMP, HUMIDITY],
                  {(TEMP, 0x0000): (I16, 2000 + i % 500), (HUMIDITY, 0x0000): (U16, 4000 + (i * 7) % 2000)})


def make_devices(extra_sensors=0):
    extra_sensors = int(extra_sensors)
    if not 0 <= extra_sensors <= MAX_EXTRA_SENSORS:
        raise ValueError(f"extra_sensors must be 0..{MAX_EXTRA_SENSORS}, not {extra_sensors}")
    return {d.name: d for d in [
        Device("th1", "00:12:4b:00:00:00:10:01", 0x1001, 2, 0x80, "SIM-TH-1", 3, 0x0302,
               [BASIC, POWER, TEMP, HUMIDITY],
               {(POWER, 0x0020): (U8, 30), (POWER, 0x0021): (U8, 200), (TEMP, 0x0000): (I16, 2150),
                (HUMIDITY, 0x0000): (U16, 4500)}),
        Device("motion1", "00:12:4b:00:00:00:10:02", 0x1002, 2, 0x80, "SIM-MOTION-1", 3, 0x0402,
               [BASIC, POWER, OCCUPANCY, IAS_ZONE],
               {(POWER, 0x0020): (U8, 30), (POWER, 0x0021): (U8, 180), (OCCUPANCY, 0x0000): (MAP8, 0),
                (OCCUPANCY, 0x0001): (ENUM8, 0), (OCCUPANCY, 0x0010): (U16, 30), (IAS_ZONE, 0x0000): (ENUM8, 1), (IAS_ZONE, 0x0001): (ENUM16, 0x000D),
                (IAS_ZONE, 0x0002): (MAP16, 0)}),
        Device("plug1", "00:12:4b:00:00:00:10:03", 0x1003, 1, 0x8E, "SIM-PLUG-1", 1, 0x0051,
               [BASIC, ONOFF, METERING, ELECTRICAL],
               {(ONOFF, 0x0000): (BOOL, 0), (METERING, 0x0000): (U48, 0), (METERING, 0x0300): (ENUM8, 0),
                (METERING, 0x0301): (U24, 1), (METERING, 0x0302): (U24, 1000), (METERING, 0x0400): (I24, 0),
                (ELECTRICAL, 0x050B): (I16, 0), (ELECTRICAL, 0x0505): (U16, 230), (ELECTRICAL, 0x0508): (U16, 0)}),
        Device("bulb1", "00:12:4b:00:00:00:10:04", 0x1004, 1, 0x8E, "SIM-BULB-1", 1, 0x010D,
               [BASIC, ONOFF, LEVEL, COLOR],
               {(ONOFF, 0x0000): (BOOL, 0), (LEVEL, 0x0000): (U8, 254), (COLOR, 0x0000): (U8, 0),
                (COLOR, 0x0001): (U8, 0), (COLOR, 0x0003): (U16, 0x616B), (COLOR, 0x0004): (U16, 0x607D),
                (COLOR, 0x0007): (U16, 370), (COLOR, 0x0008): (ENUM8, 2)}),
    ] + [extra_sensor(i) for i in range(1, extra_sensors + 1)]}


def zcl_header(dev, command_id, *, general=True, tsn=None, no_default_response=False):
    make = f.ZCLHeader.general if general else f.ZCLHeader.cluster
    hdr = make(tsn=dev.next_tsn() if tsn is None else tsn, command_id=command_id,
               direction=f.Direction.Server_to_Client)
    if no_default_response:
        hdr.frame_control = hdr.frame_control.replace(disable_default_response=True)
    return hdr


def report_frame(dev, cluster, attr_ids):
    hdr = zcl_header(dev, f.GeneralCommand.Report_Attributes, no_default_response=True)
    recs = [f.Attribute(attrid=a, value=zcl_value(*dev.attrs[(cluster, a)])) for a in attr_ids]
    body = f.GENERAL_COMMANDS[f.GeneralCommand.Report_Attributes].schema(attribute_reports=recs)
    return hdr.serialize() + body.serialize()


def default_response(dev, tsn, command_id, status):
    hdr = zcl_header(dev, f.GeneralCommand.Default_Response, tsn=tsn, no_default_response=True)
    body = f.GENERAL_COMMANDS[f.GeneralCommand.Default_Response].schema(command_id=command_id, status=status)
    return hdr.serialize() + body.serialize()


class Network:
    def __init__(self, radio=None, extra_sensors=0):
        self.radio = radio
        self.devices = make_devices(extra_sensors)
        self.install_codes = {}
        self.install_code_required = False
        self.nv = {}
        self.network = {"pan_id": None, "extended_pan_id": None, "channel": None, "formed": False}
        self.form_count = 0
        self._permit_until = 0.0
        self._permit_timer = None

    # ---------------------------------------------------------------- lookup
    def by_nwk(self, nwk):
        return next((d for d in self.devices.values() if d.nwk == nwk), None)

    def by_ieee(self, ieee):
        return next((d for d in self.devices.values() if d.ieee == ieee), None)

    # ---------------------------------------------------------------- network state
    def formed(self, pan_id, extended_pan_id, channel):
        """The front-end formed a new network: devices from the old one are gone."""
        self.form_count += 1
        self.network = {"pan_id": pan_id, "extended_pan_id": extended_pan_id, "channel": channel, "formed": True}
        for d in self.devices.values():
            d.joined = d.secured = False

    def permit_join_remaining(self):
        return max(0, int(round(self._permit_until - time.monotonic())))

    def set_permit_join(self, secs):
        secs = min(int(secs), 254)
        if self._permit_timer is not None:
            self._permit_timer.cancel()
            self._permit_timer = None
        self._permit_until = time.monotonic() + secs if secs else 0.0
        if secs:
            self._permit_timer = asyncio.get_running_loop().call_later(secs, self._permit_expired)
        self.radio.permit_join_changed(secs)

    def _permit_expired(self):
        self._permit_timer = None
        self._permit_until = 0.0
        self.radio.permit_join_changed(0)

    # ---------------------------------------------------------------- control commands
    def _dev(self, name):
        d = self.devices.get(name)
        if d is None:
            raise ValueError(f"unknown-device {name}")
        return d

    def join(self, name, code=None, force=False):
        dev = self._dev(name)
        if not force and self.permit_join_remaining() <= 0:
            return "ERR closed"
        self.radio.tc_join(dev)
        provisioned = self.install_codes.get(dev.ieee_hex())
        code_ok = code is not None and provisioned is not None and provisioned == code
        if self.install_code_required and not code_ok and not force:
            return "OK refused-by-tc"
        dev.joined = True
        dev.secured = code_ok or (force and dev.secured)
        self.radio.announce(dev)
        return "OK joined" + (" secured" if dev.secured else "")

    def leave(self, name):
        dev = self._dev(name)
        dev.joined = False
        self.radio.left(dev)
        return "OK left"

    def host_leave(self, dev):
        dev.joined = False

    def send(self, dev, cluster, zcl_bytes):
        if not dev.joined:
            raise ValueError(f"not-joined {dev.name}")
        self.radio.incoming(dev, 1, cluster, zcl_bytes, dev.secured)

    def report(self, name, what, value):
        dev = self._dev(name)
        if what == "zone":
            if (IAS_ZONE, 0x0002) not in dev.attrs:
                raise ValueError(f"{name} has no IAS zone")
            status = int(value, 0)
            dev.attrs[(IAS_ZONE, 0x0002)] = (MAP16, status)
            hdr = zcl_header(dev, 0x00, general=False, no_default_response=True)
            body = (zt.bitmap16(status).serialize() + zt.uint8_t(0).serialize() + zt.uint8_t(0).serialize()
                    + zt.uint16_t(0).serialize())
            self.send(dev, IAS_ZONE, hdr.serialize() + body)
            return "OK zone"
        if what not in REPORTABLE:
            raise ValueError(f"unknown-measurement {what}")
        cluster, attr = REPORTABLE[what]
        if (cluster, attr) not in dev.attrs:
            raise ValueError(f"{name} does not report {what}")
        type_id = dev.attrs[(cluster, attr)][0]
        dev.attrs[(cluster, attr)] = (type_id, int(value, 0))
        self.send(dev, cluster, report_frame(dev, cluster, [attr]))
        return f"OK {what}"

    def _matching(self, prefix):
        names = sorted(n for n in self.devices if n.startswith(prefix))
        if not names:
            raise ValueError(f"unknown-device {prefix}*")
        return names

    def join_all(self, prefix, force=False):
        names = self._matching(prefix)
        if not force and self.permit_join_remaining() <= 0:
            return "ERR closed"
        joined = refused = 0
        for name in names:
            reply = self.join(name, force=force)
            if reply.startswith("OK joined"):
                joined += 1
            elif reply == "OK refused-by-tc":
                refused += 1
            else:  # joining closed in between (cannot happen within one call, but never count it as joined)
                return f"{reply} after {joined} joined"
        return f"OK joined {joined}" + (f" refused {refused}" if refused else "")

    def report_all(self, prefix, what, value):
        names = self._matching(prefix)
        int(value, 0)  # a bad value fails before anything is sent
        for name in names:
            dev = self.devices[name]
            if not dev.joined:
                raise ValueError(f"not-joined {name}")
            if what == "zone":
                if (IAS_ZONE, 0x0002) not in dev.attrs:
                    raise ValueError(f"{name} has no IAS zone")
            elif what not in REPORTABLE:
                raise ValueError(f"unknown-measurement {what}")
            elif REPORTABLE[what] not in dev.attrs:
                raise ValueError(f"{name} does not report {what}")
        for name in names:
            self.report(name, what, value)
        return f"OK reported {len(names)}"

    def raw(self, name, cluster, zcl_bytes):
        self.send(self._dev(name), cluster, zcl_bytes)
        return "OK raw"

    def flood(self, name, n):
        dev = self._dev(name)
        cluster, attr = next(((c, a) for c, a in REPORTABLE.values() if (c, a) in dev.attrs and c != BASIC))
        for _ in range(n):
            self.send(dev, cluster, report_frame(dev, cluster, [attr]))
        return f"OK flood {n}"

    # ---------------------------------------------------------------- host -> device
    def deliver(self, dev, src_ep, dst_ep, cluster, data):
        """An application frame from the host reached `dev`: answer like a real device would."""
        try:
            hdr, rest = f.ZCLHeader.deserialize(data)
        except Exception:  # noqa: BLE001 - garbage from the host is dropped, as a device would
            dev.remember({"cluster": cluster, "malformed": data.hex()})
            return
        if cluster not in dev.endpoints[1][2]:
            dev.remember({"cluster": cluster, "command": hdr.command_id, "unsupported": True})
            if not hdr.frame_control.disable_default_response:
                self.send(dev, cluster, default_response(dev, hdr.tsn, hdr.command_id, f.Status.UNSUPPORTED_CLUSTER))
            return
        if hdr.frame_control.is_general:
            self._general(dev, cluster, hdr, rest)
        else:
            self._cluster_command(dev, cluster, hdr, rest)

    def _general(self, dev, cluster, hdr, rest):
        cmd = hdr.command_id
        GC = f.GeneralCommand
        try:
            if cmd == GC.Read_Attributes:
                req, _ = f.GENERAL_COMMANDS[cmd].schema.deserialize(rest)
                dev.remember({"cluster": cluster, "command": "read", "attrs": list(req.attribute_ids)})
                recs = []
                for a in req.attribute_ids:
                    if (cluster, a) in dev.attrs:
                        recs.append(f.ReadAttributeRecord(attrid=a, status=f.Status.SUCCESS,
                                                          value=zcl_value(*dev.attrs[(cluster, a)])))
                    else:
                        recs.append(f.ReadAttributeRecord(attrid=a, status=f.Status.UNSUPPORTED_ATTRIBUTE))
                body = f.GENERAL_COMMANDS[GC.Read_Attributes_rsp].schema(status_records=recs)
                self.send(dev, cluster, zcl_header(dev, GC.Read_Attributes_rsp, tsn=hdr.tsn).serialize()
                          + body.serialize())
            elif cmd in (GC.Write_Attributes, GC.Write_Attributes_Undivided, GC.Write_Attributes_No_Response):
                req, _ = f.GENERAL_COMMANDS[cmd].schema.deserialize(rest)
                dev.remember({"cluster": cluster, "command": "write",
                              "attrs": {a.attrid: str(a.value.value) for a in req.attributes}})
                failed = []
                for a in req.attributes:
                    if (cluster, a.attrid) in dev.attrs:
                        dev.attrs[(cluster, a.attrid)] = (int(a.value.type), a.value.value)
                    else:
                        failed.append(a.attrid)
                if cmd != GC.Write_Attributes_No_Response:
                    recs = ([f.WriteAttributesStatusRecord(status=f.Status.UNSUPPORTED_ATTRIBUTE, attrid=a)
                             for a in failed] or [f.WriteAttributesStatusRecord(status=f.Status.SUCCESS)])
                    body = f.GENERAL_COMMANDS[GC.Write_Attributes_rsp].schema(status_records=recs)
                    self.send(dev, cluster, zcl_header(dev, GC.Write_Attributes_rsp, tsn=hdr.tsn).serialize()
                              + body.serialize())
            elif cmd == GC.Configure_Reporting:
                dev.remember({"cluster": cluster, "command": "configure_reporting"})
                body = f.GENERAL_COMMANDS[GC.Configure_Reporting_rsp].schema(
                    status_records=[f.ConfigureReportingResponseRecord(status=f.Status.SUCCESS)])
                self.send(dev, cluster, zcl_header(dev, GC.Configure_Reporting_rsp, tsn=hdr.tsn).serialize()
                          + body.serialize())
            elif cmd == GC.Default_Response:
                dev.remember({"cluster": cluster, "command": "default_response"})
            else:
                dev.remember({"cluster": cluster, "command": int(cmd), "unsupported": True})
                if not hdr.frame_control.disable_default_response:
                    self.send(dev, cluster, default_response(dev, hdr.tsn, cmd, f.Status.UNSUP_GENERAL_COMMAND))
        except Exception:  # noqa: BLE001 - a truncated request gets MALFORMED_COMMAND, never a crash
            LOG.warning("malformed general command %s on %s", cmd, dev.name, exc_info=True)
            self.send(dev, cluster, default_response(dev, hdr.tsn, cmd, f.Status.MALFORMED_COMMAND))

    def _cluster_command(self, dev, cluster, hdr, rest):
        cmd = hdr.command_id
        changed = []

        def u8(i):
            return rest[i]

        def u16(i):
            return int.from_bytes(rest[i:i + 2], "little")

        try:
            if hdr.manufacturer is not None:
                raise LookupError("manufacturer-specific")
            if cluster == ONOFF and cmd in (0x00, 0x01, 0x02):
                cur = bool(dev.value(ONOFF, 0))
                new = {0x00: False, 0x01: True, 0x02: not cur}[cmd]
                dev.attrs[(ONOFF, 0)] = (BOOL, int(new))
                dev.remember({"cluster": cluster, "command": {0: "off", 1: "on", 2: "toggle"}[cmd]})
                changed.append((ONOFF, [0x0000]))
            elif cluster == LEVEL and cmd in (0x00, 0x04):
                level = u8(0)
                u16(1)  # transition time (must be present)
                if len(rest) < 3:
                    raise IndexError("short")
                dev.attrs[(LEVEL, 0)] = (U8, level)
                dev.remember({"cluster": cluster, "command": "move_to_level", "level": level})
                changed.append((LEVEL, [0x0000]))
                if cmd == 0x04:
                    dev.attrs[(ONOFF, 0)] = (BOOL, int(level > 0))
                    changed.append((ONOFF, [0x0000]))
            elif cluster == COLOR and cmd == 0x06:
                if len(rest) < 4:
                    raise IndexError("short")
                dev.attrs[(COLOR, 0)], dev.attrs[(COLOR, 1)] = (U8, u8(0)), (U8, u8(1))
                dev.attrs[(COLOR, 8)] = (ENUM8, 0)
                dev.remember({"cluster": cluster, "command": "move_to_hue_sat", "hue": u8(0), "sat": u8(1)})
                changed.append((COLOR, [0x0000, 0x0001]))
            elif cluster == COLOR and cmd == 0x07:
                if len(rest) < 6:
                    raise IndexError("short")
                dev.attrs[(COLOR, 3)], dev.attrs[(COLOR, 4)] = (U16, u16(0)), (U16, u16(2))
                dev.attrs[(COLOR, 8)] = (ENUM8, 1)
                dev.remember({"cluster": cluster, "command": "move_to_xy", "x": u16(0), "y": u16(2)})
                changed.append((COLOR, [0x0003, 0x0004]))
            elif cluster == COLOR and cmd == 0x0A:
                if len(rest) < 4:
                    raise IndexError("short")
                dev.attrs[(COLOR, 7)] = (U16, u16(0))
                dev.attrs[(COLOR, 8)] = (ENUM8, 2)
                dev.remember({"cluster": cluster, "command": "move_to_color_temp", "mireds": u16(0)})
                changed.append((COLOR, [0x0007]))
            else:
                raise LookupError("unsupported")
        except LookupError as e:
            dev.remember({"cluster": cluster, "command": int(cmd), "unsupported": True})
            if not hdr.frame_control.disable_default_response:
                status = (f.Status.UNSUP_MANUF_CLUSTER_COMMAND if str(e) == "'manufacturer-specific'"
                          or hdr.manufacturer is not None else f.Status.UNSUP_CLUSTER_COMMAND)
                self.send(dev, cluster, default_response(dev, hdr.tsn, cmd, status))
            return
        except IndexError:
            dev.remember({"cluster": cluster, "command": int(cmd), "malformed": True})
            if not hdr.frame_control.disable_default_response:
                self.send(dev, cluster, default_response(dev, hdr.tsn, cmd, f.Status.MALFORMED_COMMAND))
            return
        if not hdr.frame_control.disable_default_response:
            self.send(dev, cluster, default_response(dev, hdr.tsn, cmd, f.Status.SUCCESS))
        for c, attrs in changed:
            self.send(dev, c, report_frame(dev, c, attrs))

    # ---------------------------------------------------------------- state
    def state(self):
        def dev_state(d):
            out = {"joined": d.joined, "secured": d.secured, "nwk": d.nwk, "ieee": d.ieee_hex()}
            if (ONOFF, 0) in d.attrs:
                out["on"] = bool(d.value(ONOFF, 0))
            if (LEVEL, 0) in d.attrs:
                out["level"] = d.value(LEVEL, 0)
            if (COLOR, 7) in d.attrs:
                out.update(hue=d.value(COLOR, 0), saturation=d.value(COLOR, 1), x=d.value(COLOR, 3),
                           y=d.value(COLOR, 4), color_temp=d.value(COLOR, 7), color_mode=d.value(COLOR, 8))
            return out

        return {
            "permit_join": self.permit_join_remaining(),
            "joined": sorted(d.name for d in self.devices.values() if d.joined),
            "install_codes": {ieee: code.hex() for ieee, code in self.install_codes.items()},
            "install_code_required": self.install_code_required,
            "form_count": self.form_count,
            "network": self.network,
            "devices": {n: dev_state(d) for n, d in self.devices.items()},
            "last_commands": {n: d.last_commands for n, d in self.devices.items()},
        }


class ControlServer:
    """Line-oriented control port (127.0.0.1 only). `frontend` provides unplug(), replug() and quit()."""

    def __init__(self, network, frontend):
        self.network, self.frontend = network, frontend

    async def start(self, port):
        return await asyncio.start_server(self._client, "127.0.0.1", port)

    async def _client(self, reader, writer):
        try:
            while line := await reader.readline():
                reply = self.dispatch(line.decode(errors="replace").strip())
                writer.write((reply + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def dispatch(self, line):
        words = line.split()
        if not words:
            return "ERR empty"
        cmd, args = words[0], words[1:]
        net = self.network
        try:
            if cmd == "join" and args:
                code = next((bytes.fromhex(a[5:]) for a in args[1:] if a.startswith("code=")), None)
                return net.join(args[0], code=code, force="force" in args[1:])
            if cmd == "report" and len(args) == 4 and args[1] == "raw":
                return net.raw(args[0], int(args[2], 16), bytes.fromhex(args[3]))
            if cmd == "report" and len(args) == 3:
                return net.report(args[0], args[1], args[2])
            if cmd == "flood" and len(args) == 2:
                return net.flood(args[0], int(args[1]))
            if cmd == "leave" and len(args) == 1:
                return net.leave(args[0])
            if cmd == "joinall" and (len(args) == 1 or (len(args) == 2 and args[1] == "force")):
                return net.join_all(args[0], force=len(args) == 2)
            if cmd == "reportall" and len(args) == 3:
                return net.report_all(args[0], args[1], args[2])
            if cmd == "state":
                return "OK " + json.dumps(net.state(), sort_keys=True)
            if cmd == "unplug":
                self.frontend.unplug()
                return "OK unplugged"
            if cmd == "replug":
                self.frontend.replug()
                return "OK replugged"
            if cmd == "quit":
                self.frontend.quit()
                return "OK quit"
        except (ValueError, KeyError, StopIteration) as e:
            return f"ERR {e}"
        return f"ERR unknown command: {line}"


class PtyLink:
    """A pty standing in for the dongle's serial port; its slave is symlinked at `link`."""

    MAX_PENDING = 1 << 20  # a UART would drop bytes the host never reads; so do we beyond 1 MiB

    def __init__(self, link, on_data):
        self.link, self.on_data = link, on_data
        self.fd = self.slave = None
        self.pending = bytearray()
        self.loop = asyncio.get_running_loop()
        self.replug()

    def replug(self):
        if self.fd is not None:
            self.unplug()
        fd, slave = os.openpty()
        os.set_blocking(fd, False)
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        if os.path.islink(self.link) or os.path.exists(self.link):
            os.unlink(self.link)
        os.symlink(os.ttyname(slave), self.link)
        # Keeping our own slave fd open keeps the master from seeing hangups between host connections.
        self.fd, self.slave = fd, slave
        self.pending.clear()
        self.loop.add_reader(fd, self._read)
        LOG.info("pty %s -> %s", self.link, os.ttyname(slave))

    def unplug(self):
        if self.fd is None:
            return
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        for fd in (self.fd, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self.slave = None
        self.pending.clear()
        if os.path.islink(self.link):
            os.unlink(self.link)

    def _read(self):
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO while no process has the slave side open
            return
        if data:
            self.on_data(data)

    def write(self, data):
        if self.fd is None:
            return
        if self.pending:
            if len(self.pending) + len(data) <= self.MAX_PENDING:
                self.pending += data
            return
        try:
            n = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            return
        if n < len(data):
            self.pending += data[n:]
            self.loop.add_writer(self.fd, self._flush)

    def _flush(self):
        try:
            n = os.write(self.fd, self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = len(self.pending)
        del self.pending[:n]
        if not self.pending:
            self.loop.remove_writer(self.fd)
