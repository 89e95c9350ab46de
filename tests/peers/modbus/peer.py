#!/usr/bin/env python3
"""Modbus server for Warden's end-to-end tests (pymodbus 3.16, simulator data store).

    peer.py tcp --port P                      Modbus/TCP on 127.0.0.1:P
    peer.py tls --port P --cert C --key K --ca CA   Modbus/TCP Security; client certificate required
    peer.py rtu --serial /dev/pts/N [--baud B]      Modbus RTU, 8N1

Every unit in --units (default 1) has the same map (0-based protocol addresses):
    coils            0..19   on when addr % 3 == 0 (writable)
    discrete inputs  0..19   on when addr is odd
    holding          0..19   100 + addr (writable)
                     20..21  f32 12.5, high word first      22..23  f32 12.5, low word first
                     24..25  u32 65538, high word first     26..27  u32 65538, low word first
                     28..31  ASCII "WARDEN-1"
                     32..33  f32 0.0 (writable setpoint)
    input            0..9    1000 + addr
Any other address answers exception 2 (illegal data address). On RTU, unknown unit ids get no answer.
"""
import argparse
import asyncio
import ssl
import struct

from pymodbus import FramerType, pymodbus_apply_logging_config
from pymodbus.server import ModbusSerialServer, ModbusTcpServer, ModbusTlsServer
from pymodbus.simulator import DataType, SimData, SimDevice


def words(fmt: str, v) -> list:
    return list(struct.unpack(">" + "H" * (struct.calcsize(fmt) // 2), struct.pack(">" + fmt, v)))


def holding() -> list:
    f = words("f", 12.5)
    u = words("I", 65538)
    text = list(struct.unpack(">4H", b"WARDEN-1"))
    return [100 + a for a in range(20)] + f + f[::-1] + u + u[::-1] + text + [0, 0]


def unit(uid: int) -> SimDevice:
    return SimDevice(
        id=uid,
        simdata=(
            [SimData(0, values=[a % 3 == 0 for a in range(20)], datatype=DataType.BITS)],
            [SimData(0, values=[a % 2 == 1 for a in range(20)], datatype=DataType.BITS, readonly=True)],
            [SimData(0, values=holding(), datatype=DataType.REGISTERS)],
            [SimData(0, values=[1000 + a for a in range(10)], datatype=DataType.REGISTERS, readonly=True)],
        ),
    )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["tcp", "tls", "rtu"])
    ap.add_argument("--port", type=int, default=5020)
    ap.add_argument("--units", default="1")
    ap.add_argument("--serial")
    ap.add_argument("--baud", type=int, default=19200)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    a = ap.parse_args()
    pymodbus_apply_logging_config("WARNING")
    units = [unit(int(u)) for u in a.units.split(",")]
    if a.mode == "tcp":
        server = ModbusTcpServer(units, address=("127.0.0.1", a.port), framer=FramerType.SOCKET)
    elif a.mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.cert, a.key)
        ctx.load_verify_locations(a.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        server = ModbusTlsServer(units, address=("127.0.0.1", a.port), sslctx=ctx, framer=FramerType.TLS)
    else:
        served = {int(u) for u in a.units.split(",")}

        def silent_for_others(sending: bool, data: bytes) -> bytes:
            # like a real RS-485 line: a unit id nobody has gets no answer at all
            if sending and data and data[0] not in served:
                return b""
            return data

        server = ModbusSerialServer(
            units, port=a.serial, baudrate=a.baud, framer=FramerType.RTU, timeout=1,
            trace_packet=silent_for_others,
        )
    print(f"peer ready: {a.mode}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
