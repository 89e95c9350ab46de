#!/usr/bin/env python3
"""A BACnet/IP device for Warden's end-to-end tests, built on bacpypes3 (pinned 0.0.108 by
tests/scripts/install-bacnet.sh).

    device.py --instance 1002 --address 127.0.0.2/8:47808 [--tick 1.0]

With a /8 prefix on Linux bacpypes3 also opens the subnet broadcast address (SO_REUSEPORT), so
several devices on 127.0.0.x all hear a Who-Is sent to 127.255.255.255.

Objects: analog-input,1 "ZoneTemp" (degrees Celsius, +0.5 every --tick seconds, COV increment
0.5 so every step notifies subscribers), analog-value,1 "Setpoint" (writable), binary-output,1
"Fan" (commandable: priority array, relinquish default inactive), binary-input,1 "Alarm",
multi-state-value,1 "Mode" (3 states).
"""
import asyncio

from bacpypes3.app import Application
from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject
from bacpypes3.local.multistate import MultiStateValueObject
from bacpypes3.primitivedata import Real


class MonitorWrites:
    """A WriteProperty from the network stores the value without running the object's property
    monitors in this bacpypes3 version, so no COV notification would follow a write. Run them."""

    async def write_property(self, attr, value, index=None, priority=None):
        name = attr if isinstance(attr, str) else self._property_identifier_class(attr).attr
        before = getattr(self, name, None)
        await super().write_property(attr, value, index=index, priority=priority)
        after = getattr(self, name, None)
        if before != after:
            for monitor in list(self._property_monitors[name]):
                monitor(before, after)


class Setpoint(MonitorWrites, AnalogValueObject):
    pass


class Fan(MonitorWrites, BinaryOutputObject):
    pass


async def main() -> None:
    parser = SimpleArgumentParser()
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between ZoneTemp steps; 0 = static")
    args = parser.parse_args()
    app = Application.from_args(args)
    normal = dict(statusFlags=[0, 0, 0, 0], eventState="normal", outOfService=False)
    zone = AnalogInputObject(objectIdentifier=("analog-input", 1), objectName="ZoneTemp",
                             presentValue=20.0, units="degreesCelsius", covIncrement=0.5, **normal)
    objects = [
        zone,
        Setpoint(objectIdentifier=("analog-value", 1), objectName="Setpoint", presentValue=21.5,
                 units="degreesCelsius", covIncrement=0.1, **normal),
        Fan(objectIdentifier=("binary-output", 1), objectName="Fan", presentValue="inactive",
            relinquishDefault="inactive", polarity="normal", **normal),
        BinaryInputObject(objectIdentifier=("binary-input", 1), objectName="Alarm",
                          presentValue="inactive", polarity="normal", **normal),
        # no COV for multi-state objects in this bacpypes3 (SubscribeCOV: operational-problem, and
        # the failed subscription's monitor breaks later writes if monitors are re-run): plain
        MultiStateValueObject(objectIdentifier=("multi-state-value", 1), objectName="Mode", presentValue=1,
             numberOfStates=3, stateText=["off", "heat", "cool"], **normal),
    ]
    for o in objects:
        app.add_object(o)
    print(f"device {args.instance} up on {args.address}", flush=True)
    try:
        while True:
            if args.tick <= 0:
                await asyncio.sleep(3600)
                continue
            await asyncio.sleep(args.tick)
            zone.presentValue = Real(float(zone.presentValue) + 0.5)
    finally:
        app.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
