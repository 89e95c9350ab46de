"""python-dbusmock template: Debian's `bluez5` template plus what Warden's BLE tests need of
bluetoothd, following BlueZ's documented D-Bus API:

- org.bluez.AdvertisementMonitorManager1 on every adapter (unless the parameter
  {"monitor_manager": false} is given): SupportedMonitorTypes ["or_patterns"], RegisterMonitor(root)
  reads the caller's monitors with GetManagedObjects on `root`, calls Activate on each valid one
  (Release on an invalid one), UnregisterMonitor(root) calls Release; a caller leaving the bus loses
  its monitors.
- org.bluez.Mock.Advertise(adapter, mac, uuid16, data, name, rssi, company): one advert on the air.
  It is reported only if the adapter is powered and either discovery is on (StartDiscovery) or an
  active monitor's pattern matches one of the advert's AD structures (complete local name 0x09,
  16-bit service data 0x16, manufacturer data 0xff). Reported: the device appears the first time
  (InterfacesAdded), DeviceFound goes to each matching monitor the first time, then its RSSI,
  ManufacturerData and ServiceData change (PropertiesChanged). A monitor with RSSISamplingPeriod
  255 gets only a device's first advert propagated. Returns "reported" or "dropped".
- org.bluez.Mock.ReleaseMonitors(adapter): BlueZ deactivating the adapter's monitors (Release).

Every call stays in dbusmock's call log of the adapter object (GetMethodCalls), so a test can tell
whether discovery was ever started and with which filter.
"""
import struct
import time

import dbus
import dbus.lowlevel

from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5
# every method of the bluez5 template (the root object gets them as with `--template bluez5`);
# AddAdapter and load are wrapped below
from dbusmock.templates.bluez5 import *  # noqa: F401,F403
from dbusmock.templates.bluez5 import ADAPTER_IFACE, BLUEZ_MOCK_IFACE, DEVICE_IFACE

MANAGER_IFACE = 'org.bluez.AdvertisementMonitorManager1'
MONITOR_IFACE = 'org.bluez.AdvertisementMonitor1'


def load(mock, parameters):
    bluez5.load(mock, parameters)
    mock.monitor_manager = bool(parameters.get('monitor_manager', True))
    # BlueZ forgets the monitors of an application that left the bus
    mock.connection.add_signal_receiver(
        owner_changed, 'NameOwnerChanged', 'org.freedesktop.DBus', 'org.freedesktop.DBus',
        '/org/freedesktop/DBus')


def owner_changed(name, _old, new):
    if new or not name.startswith(':'):
        return
    for obj in list(mockobject.objects.values()):
        monitors = getattr(obj, 'monitors', None)
        if monitors:
            for key in [k for k in monitors if k[0] == name]:
                del monitors[key]


@dbus.service.method(BLUEZ_MOCK_IFACE, in_signature='ss', out_signature='s')
def AddAdapter(self, device_name, system_name):
    path = bluez5.AddAdapter(self, device_name, system_name)
    adapter = mockobject.objects[path]
    adapter.monitors = {}
    if self.monitor_manager:
        adapter.AddProperties(MANAGER_IFACE, {
            'SupportedMonitorTypes': dbus.Array(['or_patterns'], signature='s'),
            'SupportedFeatures': dbus.Array([], signature='s'),
        })
        for name, fn in (('RegisterMonitor', register_monitor), ('UnregisterMonitor', unregister_monitor)):
            method = dbus.service.method(MANAGER_IFACE, in_signature='o', out_signature='',
                                         sender_keyword='sender')(fn)
            adapter.methods.setdefault(MANAGER_IFACE, {})[name] = ('o', '', '', method)
    return path


def notify(conn, dest, path, member, *args):
    """A [noreply] call on a client's monitor object, as bluetoothd makes them."""
    msg = dbus.lowlevel.MethodCallMessage(dest, path, MONITOR_IFACE, member)
    if args:
        msg.append(*args, signature='o')
    msg.set_no_reply(True)
    conn.send_message(msg)
    mockobject.objects['/'].log(f'monitor call {member} -> {dest} {path} {args}')


def register_monitor(adapter, root, sender=None):
    adapter.call_log.append((int(time.time()), 'RegisterMonitor', [root]))
    key = (str(sender), str(root))
    if key in adapter.monitors:
        raise dbus.exceptions.DBusException('already registered', name='org.bluez.Error.AlreadyExists')
    conn = adapter.connection
    try:
        om = dbus.Interface(conn.get_object(sender, root, introspect=False), OBJECT_MANAGER_IFACE)
        objects = om.GetManagedObjects(timeout=5)
    except dbus.exceptions.DBusException as e:
        raise dbus.exceptions.DBusException(f'cannot read the monitors: {e}', name='org.bluez.Error.Failed')
    monitors = []
    for path, ifaces in objects.items():
        props = ifaces.get(MONITOR_IFACE)
        if props is None:
            continue
        patterns = props.get('Patterns', [])
        valid = str(props.get('Type', '')) == 'or_patterns' and len(patterns) > 0 and all(
            len(p) == 3 and len(p[2]) <= 31 for p in patterns)
        if not valid:
            notify(conn, sender, path, 'Release')
            continue
        monitors.append({
            'path': str(path),
            'patterns': [(int(p[0]), int(p[1]), bytes(p[2])) for p in patterns],
            'sampling': int(props.get('RSSISamplingPeriod', 255)),
            'found': set(),
        })
    adapter.monitors[key] = monitors
    adapter.log(f'RegisterMonitor {root} from {sender}: {monitors}')
    for m in monitors:
        notify(conn, sender, m['path'], 'Activate')


def unregister_monitor(adapter, root, sender=None):
    adapter.call_log.append((int(time.time()), 'UnregisterMonitor', [root]))
    monitors = adapter.monitors.pop((str(sender), str(root)), None)
    if monitors is None:
        raise dbus.exceptions.DBusException('not registered', name='org.bluez.Error.DoesNotExist')
    for m in monitors:
        notify(adapter.connection, sender, m['path'], 'Release')


@dbus.service.method(BLUEZ_MOCK_IFACE, in_signature='s', out_signature='u')
def ReleaseMonitors(self, adapter_name):
    """BlueZ deactivating every monitor of the adapter (Release to each); how many."""
    adapter = mockobject.objects.get('/org/bluez/' + adapter_name)
    monitors = getattr(adapter, 'monitors', {})
    n = 0
    for (sender, _root), ms in list(monitors.items()):
        for m in ms:
            notify(adapter.connection, sender, m['path'], 'Release')
            n += 1
    monitors.clear()
    return dbus.UInt32(n)


def matches(patterns, ads):
    for start, ad_type, content in patterns:
        for t, data in ads:
            if t == ad_type and data[start:start + len(content)] == content:
                return True
    return False


def dev_path(adapter_path, mac):
    return adapter_path + '/dev_' + mac.replace(':', '_').upper()


def add_device(root, adapter_path, mac, name, rssi):
    path = dev_path(adapter_path, mac)
    props = {
        'Address': dbus.String(mac), 'AddressType': dbus.String('random'), 'Name': dbus.String(name),
        'Alias': dbus.String(name), 'Adapter': dbus.ObjectPath(adapter_path), 'Paired': dbus.Boolean(False),
        'Connected': dbus.Boolean(False), 'Trusted': dbus.Boolean(False), 'Blocked': dbus.Boolean(False),
        'LegacyPairing': dbus.Boolean(False), 'ServicesResolved': dbus.Boolean(False),
        'UUIDs': dbus.Array([], signature='s'), 'RSSI': dbus.Int16(rssi),
        'ManufacturerData': dbus.Dictionary({}, signature='qv'),
        'ServiceData': dbus.Dictionary({}, signature='sv'),
    }
    root.AddObject(path, DEVICE_IFACE, props, [('Connect', '', '', ''), ('Disconnect', '', '', '')])
    root.EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(path), dbus.Dictionary({DEVICE_IFACE: props}, signature='sa{sv}')])
    return path


@dbus.service.method(BLUEZ_MOCK_IFACE, in_signature='ssqaysni', out_signature='s')
def Advertise(self, adapter_name, mac, uuid16, data, name, rssi, company):
    adapter_path = '/org/bluez/' + adapter_name
    adapter = mockobject.objects.get(adapter_path)
    if adapter is None or not adapter.props[ADAPTER_IFACE].get('Powered'):
        return 'dropped'
    data = bytes(data)
    ads = [(0x09, name.encode()), (0x16, struct.pack('<H', uuid16) + data)]
    if company >= 0:
        ads.append((0xff, struct.pack('<H', company) + b'\x01\x02'))
    discovering = bool(adapter.props[ADAPTER_IFACE].get('Discovering'))
    matched = [(sender, m) for (sender, _root), ms in getattr(adapter, 'monitors', {}).items()
               for m in ms if matches(m['patterns'], ads)]
    if not discovering and not matched:
        return 'dropped'
    path = dev_path(adapter_path, mac)
    if path not in mockobject.objects:
        add_device(self, adapter_path, mac, name, rssi)
    propagate = discovering
    for sender, m in matched:
        if path not in m['found']:
            m['found'].add(path)
            notify(adapter.connection, sender, m['path'], 'DeviceFound', dbus.ObjectPath(path))
            propagate = True
        elif m['sampling'] != 255:
            propagate = True
    if not propagate:
        return 'dropped'
    dev = mockobject.objects[path]
    dev.Set(DEVICE_IFACE, 'RSSI', dbus.Int16(rssi))
    md = {} if company < 0 else {dbus.UInt16(company): dbus.Array(b'\x01\x02', signature='y')}
    dev.Set(DEVICE_IFACE, 'ManufacturerData', dbus.Dictionary(md, signature='qv'))
    uuid = f'0000{uuid16:04x}-0000-1000-8000-00805f9b34fb'
    dev.Set(DEVICE_IFACE, 'ServiceData',
            dbus.Dictionary({uuid: dbus.Array(data, signature='y')}, signature='sv'))
    return 'reported'
