#!/usr/bin/env python3
"""An independent BACnet client (bacpypes3) the end-to-end tests use to check what Warden did.

    client.py --address 127.0.0.50/8 --instance 3999 --target 127.0.0.2 OBJECT PROPERTY [...]

Prints one JSON line per OBJECT PROPERTY pair: {"object": ..., "property": ..., "value": ...};
a priority array prints as a list of 16 entries (null where the slot is empty).
"""
import asyncio
import json
import sys

from bacpypes3.app import Application
from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.pdu import Address


def plain(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if hasattr(v, "__iter__") and not isinstance(v, (bytes, str)):
        out = []
        for x in v:
            choice = getattr(x, "_choice", None)
            out.append(None if choice in (None, "null") else plain(getattr(x, choice)))
        return out
    return str(v)


async def main() -> int:
    p = SimpleArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("pairs", nargs="+")
    args = p.parse_args()
    if len(args.pairs) % 2:
        print("OBJECT PROPERTY pairs expected", file=sys.stderr)
        return 2
    app = Application.from_args(args)
    try:
        for obj, prop in zip(args.pairs[::2], args.pairs[1::2]):
            v = await asyncio.wait_for(app.read_property(Address(args.target), obj, prop), 10)
            print(json.dumps({"object": obj, "property": prop, "value": plain(v)}), flush=True)
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
