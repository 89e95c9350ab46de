#!/usr/bin/env python3
"""BTHome v2 oracle: bthome-ble (Home Assistant's parser, pinned by tests/scripts/install-ble.sh) encodes
the adverts a test asks for and decodes each with its own parser, so the test can check Warden's values
against an independent implementation.

Run with tests/peers/ble/venv/bin/python. Reads one JSON request on stdin:
  {"mac": "54:48:E6:8F:80:A5", "key": "<32 hex>", "adverts": [
     {"objects": "<hex>", "encrypt": true, "counter": 5, "key": "<32 hex, optional override>"}, ...]}
and prints one JSON line: {"adverts": [{"service_data": "<hex after the UUID>",
  "values": {"temperature": 25.06, ...}, "verified": true|false}, ...]}
"values" is what BTHomeBluetoothDeviceData(bindkey=request key, none for plain adverts).update() yields for that advert alone
(a fresh parser each time, so no replay state of its own interferes); "verified" is its bindkey_verified.
Encryption uses bthome_ble.bthome_v2_encryption.encrypt_payload, shipped in the package.
"""
import contextlib
import io
import json
import sys
import time

from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.bthome_v2_encryption import encrypt_payload
from habluetooth import BluetoothServiceInfoBleak
from bleak.backends.device import BLEDevice

UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"


def service_info(mac, sd):
    return BluetoothServiceInfoBleak(
        name="BTHome sensor", address=mac, rssi=-60, manufacturer_data={}, service_data={UUID: sd},
        service_uuids=[UUID], source="local", device=BLEDevice(mac, "BTHome sensor", None), advertisement=None,
        connectable=False, time=time.monotonic(), tx_power=None)


def native(v):
    return v.isoformat() if hasattr(v, "isoformat") else v


def main():
    req = json.load(sys.stdin)
    mac = req["mac"]
    key = bytes.fromhex(req["key"])
    out = []
    for a in req["adverts"]:
        objects = bytes.fromhex(a["objects"])
        if a.get("encrypt"):
            k = bytes.fromhex(a.get("key", req["key"]))
            with contextlib.redirect_stdout(io.StringIO()):  # encrypt_payload prints its working
                sd = encrypt_payload(data=objects, mac=bytes.fromhex(mac.replace(":", "")), uuid16=b"\xd2\xfc",
                                     sw_version=b"\x41", count_id=int(a["counter"]).to_bytes(4, "little"), key=k)[2:]
        else:
            sd = bytes([0x40]) + objects
        dev = BTHomeBluetoothDeviceData(bindkey=key if a.get("encrypt") else None)
        upd = dev.update(service_info(mac, sd))
        values = {k.key: native(v.native_value) for k, v in upd.entity_values.items()}
        values.update({k.key: v.native_value for k, v in upd.binary_entity_values.items()})
        values.update({f"{k.key}": e.event_type for k, e in upd.events.items()})
        values.pop("signal_strength", None)  # the RSSI the oracle was handed, not advert content
        out.append({"service_data": sd.hex(), "values": values, "verified": bool(dev.bindkey_verified)})
    print(json.dumps({"adverts": out}))


if __name__ == "__main__":
    main()
