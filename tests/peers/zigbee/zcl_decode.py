#!/usr/bin/env python3
"""Decode ZCL frames that Warden builds with zigpy's own cluster classes (independent oracle).

Reads one frame per line on stdin:   <cluster id hex> <ZCL frame hex>     e.g. `0006 010101`
(blank lines and lines starting with # are skipped). Prints one JSON object per frame:
    {"cluster": 6, "cluster_name": "on_off", "frame_type": "cluster", "direction": "client_to_server",
     "manufacturer": null, "tsn": 1, "disable_default_response": false,
     "command_id": 1, "command": "on", "args": {}}
Exits 1 with a message on stderr at the first frame that does not decode: bad hex, unknown command,
schema error, or bytes left over after the command's fields.

Needs zigpy (tested with 2.4.0):  pip install zigpy==2.4.0
"""
import enum
import json
import sys
from types import SimpleNamespace

import zigpy.types as t
import zigpy.zcl as zcl
import zigpy.zcl.foundation as f


def jsonable(v):
    """zigpy values → plain JSON values."""
    if isinstance(v, f.TypeValue):
        return {"type": int(v.type), "value": jsonable(v.value)}
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, t.Struct):
        return {k: jsonable(x) for k, x in v.as_dict().items()}
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "__dict__"):  # e.g. AttributeReportingConfig
        return {k: jsonable(x) for k, x in vars(v).items() if not k.startswith("_")}
    return repr(v)


ENDPOINT = SimpleNamespace(
    endpoint_id=1,
    device=SimpleNamespace(name="warden-e2e", nwk=0x0001, manufacturer_id=None),
)


def decode(cluster_id: int, data: bytes) -> dict:
    cluster = zcl.Cluster.from_id(ENDPOINT, cluster_id, is_server=True)
    hdr, rest = f.ZCLHeader.deserialize(data)
    fc = hdr.frame_control
    if fc.frame_type == f.FrameType.CLUSTER_COMMAND:
        commands = (cluster.client_commands if hdr.direction == f.Direction.Server_to_Client
                    else cluster.server_commands)
        if hdr.command_id not in commands:
            raise ValueError(f"unknown cluster command 0x{hdr.command_id:02x} for cluster 0x{cluster_id:04x}")
        definition = commands[hdr.command_id]
        frame_type = "cluster"
    else:
        if hdr.command_id not in f.GENERAL_COMMANDS:
            raise ValueError(f"unknown global command 0x{hdr.command_id:02x}")
        definition = f.GENERAL_COMMANDS[f.GeneralCommand(hdr.command_id)]
        frame_type = "global"
    args, leftover = definition.schema.deserialize(rest)
    if leftover:
        raise ValueError(f"{len(leftover)} byte(s) left over: {leftover.hex()}")
    return {
        "cluster": cluster_id,
        "cluster_name": getattr(cluster, "ep_attribute", None),
        "frame_type": frame_type,
        "direction": "server_to_client" if hdr.direction == f.Direction.Server_to_Client else "client_to_server",
        "manufacturer": None if hdr.manufacturer is None else int(hdr.manufacturer),
        "tsn": int(hdr.tsn),
        "disable_default_response": bool(fc.disable_default_response),
        "command_id": int(hdr.command_id),
        "command": definition.name,
        "args": {k: jsonable(v) for k, v in args.as_dict().items()},
    }


def main() -> int:
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            cluster_hex, frame_hex = line.split()
            out = decode(int(cluster_hex, 16), bytes.fromhex(frame_hex))
        except Exception as e:  # any failure is a test failure, reported with its line
            print(f"zcl_decode: line {lineno} ({line!r}): {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(json.dumps(out, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
