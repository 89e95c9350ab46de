#!/usr/bin/python3
"""Drives a python-dbusmock `bluez5` org.bluez (Debian python3-dbusmock) on the bus named by
DBUS_SYSTEM_BUS_ADDRESS, the way bluetoothd would look to a D-Bus client such as btleplug.

Run with Debian's /usr/bin/python3 (python3-dbus). One command per invocation:
  setup [ADAPTER]                      AddAdapter (default hci0), with the Roles property BlueZ >= 5.56 has
  remove-adapter [ADAPTER]             the adapter goes away (as when its dongle is unplugged)
  serve                                reads `adv MAC SERVICE_DATA_HEX` lines on stdin, answers `ok` per
                                       advert once it is on the bus (for latency and load tests)
  power on|off                         hci0's Powered property changes (rfkill, bluetoothctl power off)
  adv MAC SERVICE_DATA_HEX [NAME] [RSSI] [COMPANY_ID] [UUID16]
                                       one advertisement (BTHome's UUID 0xFCD2 unless UUID16 is given,
                                       as hex), through the template's org.bluez.Mock.Advertise:
                                       reported while discovery is on or when a registered monitor's
                                       pattern matches it (the device appears the first time, then its
                                       ServiceData, RSSI and ManufacturerData change), else dropped;
                                       prints `reported` or `dropped`
  calls METHOD [ADAPTER]               how many times hci0's METHOD was called (dbusmock's call log:
                                       StartDiscovery, SetDiscoveryFilter, RegisterMonitor…)
  filter                               the arguments of hci0's last SetDiscoveryFilter, as key=value
  release-monitors                     BlueZ releases every monitor on hci0; prints how many
  device-exists MAC                    `yes` if BlueZ has a device object for MAC, else `no`
  gatt-device MAC SERVICE_UUID CHAR_UUID LOCKED_CHAR_UUID
                                       a connectable device with one GATT service holding a writable,
                                       readable characteristic (the value is kept) and one whose writes
                                       fail with org.bluez.Error.NotPermitted; Connect resolves services
  gatt-value MAC                       prints the writable characteristic's value as hex (`-` if empty)
The mock runs tests/peers/ble/bluez_template.py (dbusmock's bluez5 template plus the advertisement
monitor manager and Advertise). The bluez5 template (dbusmock 0.28) declares ServiceData/ManufacturerData with the wrong D-Bus type and has
no GATT objects, so devices are added here with correctly typed properties (a{sv}, a{qv}) and the
GATT objects follow BlueZ's documented org.bluez.GattService1 / GattCharacteristic1 API.
"""
import sys

import dbus

BTHOME = "0000fcd2-0000-1000-8000-00805f9b34fb"
DEVICE = "org.bluez.Device1"
CHAR = "org.bluez.GattCharacteristic1"
bus = dbus.SystemBus()


def root():
    return bus.get_object("org.bluez", "/")


def dev_path(mac, adapter="hci0"):
    return f"/org/bluez/{adapter}/dev_" + mac.replace(":", "_").upper()


def exists(path):
    objs = dbus.Interface(root(), "org.freedesktop.DBus.ObjectManager").GetManagedObjects()
    return dbus.ObjectPath(path) in objs


def add_object(path, iface, props, methods):
    mock = dbus.Interface(root(), "org.freedesktop.DBus.Mock")
    mock.AddObject(path, iface, props, methods)
    mock.EmitSignal("org.freedesktop.DBus.ObjectManager", "InterfacesAdded", "oa{sa{sv}}",
                    [dbus.ObjectPath(path), dbus.Dictionary({iface: props}, signature="sa{sv}")])


CONNECT = (
    "self.Set('org.bluez.Device1', 'Connected', dbus.Boolean(True, variant_level=1))\n"
    "self.Set('org.bluez.Device1', 'ServicesResolved', dbus.Boolean(True, variant_level=1))\n"
)
DISCONNECT = (
    "self.Set('org.bluez.Device1', 'ServicesResolved', dbus.Boolean(False, variant_level=1))\n"
    "self.Set('org.bluez.Device1', 'Connected', dbus.Boolean(False, variant_level=1))\n"
)


def add_device(mac, name, rssi, connectable=False):
    path = dev_path(mac)
    props = {
        "Address": dbus.String(mac), "AddressType": dbus.String("random"), "Name": dbus.String(name),
        "Alias": dbus.String(name), "Adapter": dbus.ObjectPath("/org/bluez/hci0"), "Paired": dbus.Boolean(False),
        "Connected": dbus.Boolean(False), "Trusted": dbus.Boolean(False), "Blocked": dbus.Boolean(False),
        "LegacyPairing": dbus.Boolean(False), "ServicesResolved": dbus.Boolean(False),
        "UUIDs": dbus.Array([], signature="s"), "RSSI": dbus.Int16(rssi),
        "ManufacturerData": dbus.Dictionary({}, signature="qv"), "ServiceData": dbus.Dictionary({}, signature="sv"),
    }
    methods = [("Connect", "", "", CONNECT if connectable else ""),
               ("Disconnect", "", "", DISCONNECT if connectable else "")]
    add_object(path, DEVICE, props, methods)
    return path


def adv(mac, sd_hex, name="BTHome sensor", rssi=-60, company=None, uuid16=0xFCD2):
    mock = dbus.Interface(root(), "org.bluez.Mock")
    return str(mock.Advertise("hci0", mac, dbus.UInt16(uuid16), dbus.Array(bytes.fromhex(sd_hex), signature="y"),
                              name, dbus.Int16(rssi), dbus.Int32(-1 if company is None else company)))


def main():
    cmd = sys.argv[1]
    mock = dbus.Interface(root(), "org.bluez.Mock")
    if cmd == "setup":
        name = sys.argv[2] if len(sys.argv) > 2 else "hci0"
        print(mock.AddAdapter(name, "warden-test"))
        ad = dbus.Interface(bus.get_object("org.bluez", f"/org/bluez/{name}"), "org.freedesktop.DBus.Mock")
        ad.AddProperty("org.bluez.Adapter1", "Roles", dbus.Array(["central", "peripheral"], signature="s"))
    elif cmd == "remove-adapter":
        mock.RemoveAdapter(sys.argv[2] if len(sys.argv) > 2 else "hci0")
        print("removed")
    elif cmd == "power":
        ad = dbus.Interface(bus.get_object("org.bluez", "/org/bluez/hci0"), "org.freedesktop.DBus.Properties")
        ad.Set("org.bluez.Adapter1", "Powered", dbus.Boolean(sys.argv[2] == "on"))
        print("powered", sys.argv[2])
    elif cmd == "adv":
        a = sys.argv
        print(adv(a[2], a[3], a[4] if len(a) > 4 else "BTHome sensor", int(a[5]) if len(a) > 5 else -60,
                  int(a[6], 16) if len(a) > 6 and a[6] != "-" else None, int(a[7], 16) if len(a) > 7 else 0xFCD2))
    elif cmd == "calls":
        name = sys.argv[3] if len(sys.argv) > 3 else "hci0"
        ad = dbus.Interface(bus.get_object("org.bluez", f"/org/bluez/{name}"), "org.freedesktop.DBus.Mock")
        print(len(ad.GetMethodCalls(sys.argv[2])))
    elif cmd == "filter":
        ad = dbus.Interface(bus.get_object("org.bluez", "/org/bluez/hci0"), "org.freedesktop.DBus.Mock")
        calls = ad.GetMethodCalls("SetDiscoveryFilter")
        if calls:
            show = lambda v: str(bool(v)).lower() if isinstance(v, dbus.Boolean) else str(v)  # noqa: E731
            print(" ".join(f"{k}={show(v)}" for k, v in sorted(calls[-1][1][0].items())))
    elif cmd == "release-monitors":
        print(int(mock.ReleaseMonitors("hci0")))
    elif cmd == "device-exists":
        print("yes" if exists(dev_path(sys.argv[2])) else "no")
    elif cmd == "serve":
        for line in sys.stdin:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "adv":
                print("ok" if adv(parts[1], parts[2]) == "reported" else "dropped", flush=True)
            else:
                print("error", flush=True)
    elif cmd == "gatt-device":
        mac, service, char, locked = sys.argv[2:6]
        path = dev_path(mac)
        if not exists(path):
            add_device(mac, "BLE actuator", -55, connectable=True)
        spath = path + "/service0010"
        add_object(spath, "org.bluez.GattService1", {
            "UUID": dbus.String(service), "Primary": dbus.Boolean(True), "Device": dbus.ObjectPath(path),
            "Includes": dbus.Array([], signature="o"),
        # GattService1 has no methods; dbusmock then lists a property-only interface after the child
        # nodes in its introspection XML, which bluez-async's parser refuses. One inert method keeps
        # the interface in the usual place.
        }, [("MockInert", "", "", "")])
        for i, (uuid, write_code) in enumerate([
            (char, "self.Set('org.bluez.GattCharacteristic1', 'Value', dbus.Array(args[0], signature='y'))\n"
),
            (locked, "raise dbus.exceptions.DBusException('Write not permitted', name='org.bluez.Error.NotPermitted')"),
        ]):
            add_object(f"{spath}/char{0x11 + i:04x}", CHAR, {
                "UUID": dbus.String(uuid), "Service": dbus.ObjectPath(spath),
                "Value": dbus.Array([], signature="y"),
                "Flags": dbus.Array(["read", "write"], signature="s"),
            }, [
                ("WriteValue", "aya{sv}", "", write_code),
                ("ReadValue", "a{sv}", "ay", "ret = self.props['org.bluez.GattCharacteristic1']['Value']"),
                ("StartNotify", "", "", ""), ("StopNotify", "", "", ""),
            ])
        print("gatt device", path)
    elif cmd == "gatt-value":
        cpath = dev_path(sys.argv[2]) + "/service0010/char0011"
        obj = bus.get_object("org.bluez", cpath)
        v = dbus.Interface(obj, "org.freedesktop.DBus.Properties").Get(CHAR, "Value")
        print(bytes(v).hex() or "-")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
