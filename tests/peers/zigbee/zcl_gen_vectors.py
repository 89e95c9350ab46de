#!/usr/bin/env python3
"""Build ZCL frames with zigpy 2.4.0's own classes and print `name hex` lines: the vectors embedded in
adapters/zigbee/src/zcl/zigpy_vectors.rs (both directions: frames Warden must build byte for byte,
and device frames Warden must decode).   pip install zigpy==2.4.0
"""
from types import SimpleNamespace
import zigpy.types as t
import zigpy.zcl.foundation as f
from zigpy.zcl.clusters.general import OnOff, LevelControl, Basic, PowerConfiguration
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.clusters.measurement import TemperatureMeasurement, RelativeHumidity, OccupancySensing
from zigpy.zcl.clusters.hvac import Thermostat
from zigpy.zcl.clusters.smartenergy import Metering

ep = SimpleNamespace(endpoint_id=1, device=SimpleNamespace(name="x", nwk=1, manufacturer_id=None, get_sequence=lambda: 1))

def rc(**kw):
    c = f.AttributeReportingConfig()
    for k, v in kw.items():
        setattr(c, k, v)
    return c

def cl(c):
    return c(endpoint=ep, is_server=True)

def cmd(cluster, name, tsn, ddr=False, **kw):
    c = cl(cluster)
    d = c.server_commands[c.commands_by_name[name].id]
    hdr, req = c._create_request(general=False, command_id=d.id, schema=d.schema, tsn=tsn,
                                 disable_default_response=ddr, direction=f.Direction.Client_to_Server,
                                 args=(), kwargs=kw)
    return hdr.serialize() + req.serialize()

def gen(cluster, command, tsn, direction=f.Direction.Client_to_Server, ddr=False, manufacturer=None, **kw):
    c = cl(cluster)
    schema = f.GENERAL_COMMANDS[command].schema
    hdr, req = c._create_request(general=True, command_id=command, schema=schema, tsn=tsn,
                                 disable_default_response=ddr, direction=direction,
                                 manufacturer=manufacturer, args=(), kwargs=kw)
    return hdr.serialize() + req.serialize()

G = f.GeneralCommand
S2C = f.Direction.Server_to_Client
TV = lambda ty, v: f.TypeValue(type=ty, value=v)
out = {
  "on": cmd(OnOff, "on", 1),
  "off": cmd(OnOff, "off", 2, ddr=True),
  "toggle": cmd(OnOff, "toggle", 3),
  "move_to_level_with_on_off": cmd(LevelControl, "move_to_level_with_on_off", 4, level=127, transition_time=15),
  "move_to_level": cmd(LevelControl, "move_to_level", 5, level=254, transition_time=0),
  "move_to_hue_and_saturation": cmd(Color, "move_to_hue_and_saturation", 6, hue=127, saturation=254, transition_time=0),
  "move_to_color": cmd(Color, "move_to_color", 7, color_x=0x8000, color_y=0x4000, transition_time=1),
  "move_to_color_temp": cmd(Color, "move_to_color_temp", 8, color_temp_mireds=370, transition_time=0),
  "read_attributes": gen(TemperatureMeasurement, G.Read_Attributes, 9, attribute_ids=[0x0000, 0x0001]),
  "read_attributes_basic": gen(Basic, G.Read_Attributes, 10, attribute_ids=[4, 5, 7, 0x4000]),
  "write_heating_setpoint": gen(Thermostat, G.Write_Attributes, 11, attributes=[
      f.Attribute(attrid=0x0012, value=TV(f.DataTypeId.int16, t.int16s(2150)))]),
  "write_system_mode": gen(Thermostat, G.Write_Attributes, 12, attributes=[
      f.Attribute(attrid=0x001c, value=TV(f.DataTypeId.enum8, t.enum8(4)))]),
  "configure_reporting_temp": gen(TemperatureMeasurement, G.Configure_Reporting, 13, config_records=[
      rc(direction=f.ReportingDirection.SendReports, attrid=0, datatype=f.DataTypeId.int16,
                                 min_interval=10, max_interval=300, reportable_change=50)]),
  "configure_reporting_onoff": gen(OnOff, G.Configure_Reporting, 14, config_records=[
      rc(direction=f.ReportingDirection.SendReports, attrid=0, datatype=f.DataTypeId.bool_,
                                 min_interval=0, max_interval=600, reportable_change=0)]),
  "default_response": gen(OnOff, G.Default_Response, 15, direction=S2C, ddr=True, command_id=1, status=f.Status.SUCCESS),
  # device -> gateway
  "report_temp": gen(TemperatureMeasurement, G.Report_Attributes, 0x2a, direction=S2C, ddr=True, attribute_reports=[
      f.Attribute(attrid=0, value=TV(f.DataTypeId.int16, t.int16s(2150)))]),
  "report_multi": gen(PowerConfiguration, G.Report_Attributes, 16, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0x20, value=TV(f.DataTypeId.uint8, t.uint8_t(30))),
      f.Attribute(attrid=0x21, value=TV(f.DataTypeId.uint8, t.uint8_t(171)))]),
  "report_invalid_temp": gen(TemperatureMeasurement, G.Report_Attributes, 17, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0, value=TV(f.DataTypeId.int16, t.int16s(-32768)))]),
  "report_humidity": gen(RelativeHumidity, G.Report_Attributes, 18, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0, value=TV(f.DataTypeId.uint16, t.uint16_t(4567)))]),
  "report_occupancy": gen(OccupancySensing, G.Report_Attributes, 19, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0, value=TV(f.DataTypeId.map8, t.bitmap8(1)))]),
  "report_energy": gen(Metering, G.Report_Attributes, 20, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0, value=TV(f.DataTypeId.uint48, t.uint48_t(123456789012)))]),
  "report_color_float": gen(Color, G.Report_Attributes, 21, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0x0007, value=TV(f.DataTypeId.uint16, t.uint16_t(370))),
      f.Attribute(attrid=0xfff0, value=TV(f.DataTypeId.single, t.Single(1.5))),
      f.Attribute(attrid=0xfff1, value=TV(f.DataTypeId.double, t.Double(-2.25))),
      f.Attribute(attrid=0xfff2, value=TV(f.DataTypeId.semi, t.Half(0.5)))]),
  "read_rsp_basic": gen(Basic, G.Read_Attributes_rsp, 22, direction=S2C, status_records=[
      f.ReadAttributeRecord(attrid=4, status=f.Status.SUCCESS, value=TV(f.DataTypeId.string, t.CharacterString("IKEA of Sweden"))),
      f.ReadAttributeRecord(attrid=5, status=f.Status.UNSUPPORTED_ATTRIBUTE),
      f.ReadAttributeRecord(attrid=7, status=f.Status.SUCCESS, value=TV(f.DataTypeId.enum8, t.enum8(3))),
      f.ReadAttributeRecord(attrid=0x4000, status=f.Status.SUCCESS, value=TV(f.DataTypeId.string, t.CharacterString("2.3.7")))]),
  "read_rsp_ieee_utc": gen(Basic, G.Read_Attributes_rsp, 23, direction=S2C, status_records=[
      f.ReadAttributeRecord(attrid=0xfff0, status=f.Status.SUCCESS, value=TV(f.DataTypeId.EUI64, t.EUI64.convert("00:12:4b:00:1c:aa:bb:cc"))),
      f.ReadAttributeRecord(attrid=0xfff1, status=f.Status.SUCCESS, value=TV(f.DataTypeId.UTC, t.UTCTime(700000000))),
      f.ReadAttributeRecord(attrid=0xfff2, status=f.Status.SUCCESS, value=TV(f.DataTypeId.octstr, t.LVBytes(b"\x01\x02"))),
      f.ReadAttributeRecord(attrid=0xfff3, status=f.Status.SUCCESS, value=TV(f.DataTypeId.key128, t.KeyData([i for i in range(16)])))]),
  "write_rsp_ok": gen(Thermostat, G.Write_Attributes_rsp, 24, direction=S2C, status_records=[
      f.WriteAttributesStatusRecord(status=f.Status.SUCCESS)]),
  "write_rsp_fail": gen(Thermostat, G.Write_Attributes_rsp, 25, direction=S2C, status_records=[
      f.WriteAttributesStatusRecord(status=f.Status.READ_ONLY, attrid=0x0000),
      f.WriteAttributesStatusRecord(status=f.Status.INVALID_VALUE, attrid=0x0012)]),
  "configure_rsp_ok": gen(TemperatureMeasurement, G.Configure_Reporting_rsp, 26, direction=S2C, status_records=[
      f.ConfigureReportingResponseRecord(status=f.Status.SUCCESS)]),
  "configure_rsp_fail": gen(TemperatureMeasurement, G.Configure_Reporting_rsp, 27, direction=S2C, status_records=[
      f.ConfigureReportingResponseRecord(status=f.Status.UNREPORTABLE_ATTRIBUTE, direction=f.ReportingDirection.SendReports, attrid=0)]),
  "default_rsp_from_device": gen(OnOff, G.Default_Response, 28, direction=S2C, ddr=True, command_id=2, status=f.Status.UNSUP_CLUSTER_COMMAND),
  "discover_attributes": gen(OnOff, G.Discover_Attributes, 29, start_attribute_id=0, max_attribute_ids=10),
  "report_manufacturer": gen(Basic, G.Report_Attributes, 30, direction=S2C, manufacturer=0x115f, attribute_reports=[
      f.Attribute(attrid=0xff01, value=TV(f.DataTypeId.uint8, t.uint8_t(1)))]),
  "report_array_struct": gen(Basic, G.Report_Attributes, 32, direction=S2C, attribute_reports=[
      f.Attribute(attrid=0xfff0, value=TV(f.DataTypeId.array, f.Array(type=0x20, value=t.LVList[t.uint8_t, t.uint16_t]([7, 9])))),
      f.Attribute(attrid=0xfff1, value=TV(f.DataTypeId.struct, f.ZCLStructure([TV(0x21, t.uint16_t(5)), TV(0x42, t.CharacterString("hi"))]))),
      f.Attribute(attrid=0x0004, value=TV(f.DataTypeId.string, t.CharacterString("LUMI")))]),
}
z = cl(IasZone)
d = z.client_commands[0x00]
hdr, req = z._create_request(general=False, command_id=0, schema=d.schema, tsn=31, disable_default_response=True,
                             direction=S2C, args=(), kwargs=dict(zone_status=IasZone.ZoneStatus(0x0005), extended_status=0, zone_id=1, delay=0))
out["zone_status_change"] = hdr.serialize() + req.serialize()
for k, v in out.items():
    print(k, v.hex())
