#!/usr/bin/env python3
"""BACnet/SC peers for Warden's end-to-end test, built on bac-py 1.5.7 (`bac-py[secure]`).

  peer.py hub    --port P --cert C --key K --ca CA           a hub (relay only, no device of its own)
  peer.py device --hub URI --cert C --key K --ca CA ...      a device node: AV 1 "Setpoint"
                                                              (commandable), AI 1 "ZoneTemp" (changes
                                                              every --tick s, COV increment 0.1)
  peer.py client --hub URI ... --target VMAC --object O --property P       an independent client: one read,
                                                              printed as a JSON line
  peer.py raw-hub --port P --cert C --key K --ca CA          a hub written on the websockets
                                                              library alone: accepts one node, then
                                                              sends malformed BVLC-SC messages and
                                                              a Heartbeat-Request, printing what
                                                              comes back

Every process prints READY when it is up. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import ssl
import sys
import time


def heartbeat_fix() -> None:
    """bac-py 1.5.7: once a connection has been idle for `heartbeat_timeout`, its heartbeat loop
    re-checks without sleeping after each Heartbeat-Request and floods the peer. Replace it with
    one that waits a full timeout after each request."""
    from bac_py.transport.sc import connection as conn
    from bac_py.transport.sc.bvlc import SCMessage
    from bac_py.transport.sc.types import BvlcSCFunction

    async def loop(self) -> None:
        try:
            while self._state == conn.SCConnectionState.CONNECTED and self._ws is not None:
                idle = time.monotonic() - self._last_recv_time
                wait = self._config.heartbeat_timeout - idle
                if wait <= 0:
                    msg = SCMessage(BvlcSCFunction.HEARTBEAT_REQUEST, message_id=self._next_msg_id())
                    try:
                        await self._ws.send(msg.encode())
                    except (OSError, ConnectionError):
                        return
                    wait = self._config.heartbeat_timeout
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            pass

    conn.SCConnection._heartbeat_loop = loop


def tls(a: argparse.Namespace):
    from bac_py.transport.sc.tls import SCTLSConfig

    return SCTLSConfig(private_key_path=a.key, certificate_path=a.cert, ca_certificates_path=a.ca)


def sc_config(a: argparse.Namespace, hub_uri: str, hub_function=None):
    from bac_py.transport.sc import SCTransportConfig
    from bac_py.transport.sc.connection import SCConnectionConfig
    from bac_py.transport.sc.vmac import SCVMAC, DeviceUUID

    return SCTransportConfig(
        primary_hub_uri=hub_uri,
        hub_function_config=hub_function,
        tls_config=tls(a),
        connection_config=SCConnectionConfig(heartbeat_timeout=a.heartbeat),
        vmac=SCVMAC.from_hex(a.vmac),
        device_uuid=DeviceUUID.from_hex(a.uuid),
        min_reconnect_time=0.5,
        max_reconnect_time=2.0,
    )


def log_refused_tls(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio reports a failed server-side TLS handshake only in debug mode, to the loop's
    exception handler: turn each into one `refused TLS connection` line."""
    loop.set_debug(True)
    loop.slow_callback_duration = 10.0
    log = logging.getLogger("hub")

    def handler(lp, ctx) -> None:
        exc = ctx.get("exception")
        if isinstance(exc, (ssl.SSLError, ConnectionError)):
            log.warning("refused TLS connection: %s", exc)
            return
        lp.default_exception_handler(ctx)

    loop.set_exception_handler(handler)


async def until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()


async def run_hub(a: argparse.Namespace) -> None:
    from bac_py.app.application import BACnetApplication, DeviceConfig
    from bac_py.transport.sc.hub_function import SCHubConfig

    log_refused_tls(asyncio.get_running_loop())
    hub = SCHubConfig(bind_address="127.0.0.1", bind_port=a.port, tls_config=tls(a))
    # no connection to itself: this process only relays between nodes
    cfg = DeviceConfig(instance_number=a.instance, name=f"hub-{a.instance}",
                       sc_config=sc_config(a, "", hub))
    app = BACnetApplication(cfg)
    await app.start()
    print(f"READY hub wss://127.0.0.1:{a.port}", flush=True)
    await until_stopped()
    await app.stop()


async def run_device(a: argparse.Namespace) -> None:
    from bac_py.app.application import BACnetApplication, DeviceConfig
    from bac_py.app.server import DefaultServerHandlers
    from bac_py.objects.analog import AnalogInputObject, AnalogValueObject
    from bac_py.objects.device import DeviceObject
    from bac_py.types.enums import EngineeringUnits, PropertyIdentifier

    name = f"scdev{a.instance}"
    cfg = DeviceConfig(instance_number=a.instance, name=name, vendor_name="bac-py",
                       vendor_id=0, sc_config=sc_config(a, a.hub))
    app = BACnetApplication(cfg)
    await app.start()
    device = DeviceObject(a.instance, object_name=name, vendor_name="bac-py",
                          vendor_identifier=0, model_name="warden-sc-test")
    app.object_db.add(device)
    setpoint = AnalogValueObject(1, object_name="Setpoint", present_value=21.0,
                                 units=EngineeringUnits.DEGREES_CELSIUS, commandable=True)
    setpoint._properties[PropertyIdentifier.RELINQUISH_DEFAULT] = 21.0
    zone = AnalogInputObject(1, object_name="ZoneTemp", present_value=20.0,
                             units=EngineeringUnits.DEGREES_CELSIUS, cov_increment=0.1)
    app.object_db.add(setpoint)
    app.object_db.add(zone)
    DefaultServerHandlers(app, app.object_db, device).register()
    print(f"READY device {a.instance} vmac {a.vmac} via {a.hub}", flush=True)

    async def tick() -> None:
        n = 0
        while True:
            await asyncio.sleep(a.tick)
            n += 1
            # an input's present value is read-only on the network: change it locally
            zone._properties[PropertyIdentifier.PRESENT_VALUE] = round(20.0 + 2.0 * math.sin(n / 2.0), 2)
            if app.cov_manager:
                app.cov_manager.check_and_notify(zone, PropertyIdentifier.PRESENT_VALUE)

    t = asyncio.create_task(tick())
    await until_stopped()
    t.cancel()
    await app.stop()


def plain(v):
    """A bac-py value as JSON: numbers, None for NULL, lists element by element."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    for attr in ("value", "real", "unsigned", "null"):
        if hasattr(v, attr):
            return plain(getattr(v, attr))
    try:
        return float(v)
    except (TypeError, ValueError):
        return None if "null" in repr(v).lower() else repr(v)


async def run_client(a: argparse.Namespace) -> int:
    from bac_py import Client
    from bac_py.app.application import DeviceConfig

    cfg = DeviceConfig(instance_number=a.instance, name=f"client-{a.instance}",
                       sc_config=sc_config(a, a.hub), apdu_timeout=3000, apdu_retries=1)
    async with Client(config=cfg) as client:
        v = await client.read(a.target, a.object, a.property)
    print(json.dumps({"value": plain(v), "repr": repr(v)}), flush=True)
    return 0


async def run_raw_hub(a: argparse.Namespace) -> None:
    from websockets.asyncio.server import serve

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    hub_vmac = bytes.fromhex("020000000099")

    def out(line: str) -> None:
        print(line, flush=True)

    async def node(ws) -> None:
        req = await ws.recv()
        if not isinstance(req, bytes) or len(req) < 4 or req[0] != 0x06:
            out(f"BAD-CONNECT {req!r}")
            return
        # Connect-Accept: same message id, the hub's VMAC and UUID, max BVLC 1600, max NPDU 1497
        await ws.send(bytes([0x07, 0x00]) + req[2:4] + hub_vmac + bytes(15) + b"\x01"
                      + (1600).to_bytes(2, "big") + (1497).to_bytes(2, "big"))
        out("CONNECTED")
        hostile = {
            "undefined-function": bytes([0x0D, 0x00, 0x00, 0x21]),
            "reserved-control-bits": bytes([0x0A, 0x80, 0x00, 0x22]),
            "truncated-origin": bytes([0x01, 0x08, 0x00, 0x23, 0x02, 0x00]),
            "must-understand-option": bytes([0x0A, 0x02, 0x00, 0x24, 0x45]),
            "npdu-without-origin": bytes([0x01, 0x00, 0x00, 0x25, 0x01, 0x00, 0x10, 0x08]),
            "bad-npdu": bytes([0x01, 0x08, 0x00, 0x26]) + hub_vmac + bytes([0x07, 0x00]),
            "text-frame": "not binary",
        }
        for name, m in hostile.items():
            await ws.send(m)
            out(f"SENT {name}")
        # the positive control: a well-formed Heartbeat-Request must still be answered
        await ws.send(bytes([0x0A, 0x00, 0x00, 0x30]))
        out("SENT heartbeat")
        async for m in ws:
            if isinstance(m, bytes) and m:
                out(f"GOT {m.hex()}")

    async with serve(node, "127.0.0.1", a.port, ssl=ctx, subprotocols=["hub.bsc.bacnet.org"]):
        out(f"READY raw-hub wss://127.0.0.1:{a.port}")
        await until_stopped()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["hub", "device", "client", "raw-hub"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--hub", default="")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--instance", type=int, default=4000)
    p.add_argument("--vmac", default="02:00:00:00:00:40")
    p.add_argument("--uuid", default="00000000-0000-4000-8000-000000004000")
    p.add_argument("--heartbeat", type=float, default=300.0)
    p.add_argument("--tick", type=float, default=1.0)
    p.add_argument("--target", default="")
    p.add_argument("--object", default="")
    p.add_argument("--property", default="")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    heartbeat_fix()
    runner = {"hub": run_hub, "device": run_device, "client": run_client, "raw-hub": run_raw_hub}[a.mode]
    return asyncio.run(runner(a)) or 0


if __name__ == "__main__":
    sys.exit(main())
