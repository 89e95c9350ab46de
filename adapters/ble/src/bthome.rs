//! BTHome v2: the service data a BTHome sensor broadcasts under the 16-bit UUID 0xFCD2, parsed into
//! typed objects.
//!
//! Layout: one *device information* byte (bit 0 encrypted, bit 1 MAC included, bit 2 trigger-based,
//! bits 5-7 version = 2), the advertiser's MAC reversed when bit 1 is set, then either plain objects
//! or (bit 0) the AES-CCM ciphertext of the objects followed by a 4-byte counter and a 4-byte MIC
//! (see [`crate::crypto`]). An object is an id byte followed by a value whose length the id fixes
//! (or, for text, raw and command objects, a length byte). Ids must come in ascending order in a
//! well-formed advert, but receivers accept any order, and so do we.
//!
//! Every input is hostile: no byte is read without a bounds check, and a malformed advert is a
//! typed [`BthomeError`], never a panic. Parsing stops at the first unknown object id (its length
//! is unknowable); the objects before it are kept and [`Parsed::unknown_object`] says so.

use warden_core::{Point, Value};

/// The 16-bit UUID BTHome service data is carried under.
pub const UUID16: u16 = 0xfcd2;
/// The longest service data accepted: an extended advertisement's largest AD structure. Anything
/// longer is [`BthomeError::Oversized`].
pub const MAX_SERVICE_DATA: usize = 255;
/// The most objects kept from one advert (a 255-byte advert holds at most 127 two-byte objects).
pub const MAX_OBJECTS: usize = 128;
/// The longest text object kept (longer ones are cut at a character boundary).
pub const MAX_TEXT: usize = 64;

/// Why service data is not a usable BTHome v2 advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum BthomeError {
    #[error("empty service data")]
    Empty,
    #[error("service data of {0} bytes is longer than {MAX_SERVICE_DATA}")]
    Oversized(usize),
    #[error("BTHome version {0} is not 2")]
    Version(u8),
    #[error("service data ends inside the included MAC address")]
    TruncatedMac,
    #[error("object 0x{id:02x} at offset {at} runs past the end of the advert")]
    Truncated { id: u8, at: usize },
    #[error("object 0x{id:02x} at offset {at} has length 0")]
    ZeroLength { id: u8, at: usize },
    #[error("encrypted advert of {0} bytes is too short for ciphertext, counter and MIC")]
    EncryptedTooShort(usize),
    #[error("the advert carries no measurement")]
    NoObjects,
}

impl BthomeError {
    /// The stable audit/metric cause.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Empty | Self::EncryptedTooShort(_) | Self::TruncatedMac => "truncated",
            Self::Truncated { .. } => "truncated",
            Self::Oversized(_) => "oversized",
            Self::Version(_) => "bad-version",
            Self::ZeroLength { .. } | Self::NoObjects => "malformed",
        }
    }
}

/// The device information byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo(pub u8);

impl DeviceInfo {
    pub fn encrypted(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub fn mac_included(self) -> bool {
        self.0 & 0x02 != 0
    }
    pub fn trigger_based(self) -> bool {
        self.0 & 0x04 != 0
    }
    pub fn version(self) -> u8 {
        self.0 >> 5
    }
}

/// The frame around the objects: device info, the MAC if included, and the object bytes (plain) or
/// ciphertext + counter + MIC (encrypted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub info: DeviceInfo,
    /// The MAC the advert carries (in display order), when bit 1 is set.
    pub mac: Option<[u8; 6]>,
    pub body: &'a [u8],
}

/// Splits service data into its frame, checking size and version.
pub fn frame(sd: &[u8]) -> Result<Frame<'_>, BthomeError> {
    if sd.len() > MAX_SERVICE_DATA {
        return Err(BthomeError::Oversized(sd.len()));
    }
    let (&first, rest) = sd.split_first().ok_or(BthomeError::Empty)?;
    let info = DeviceInfo(first);
    if info.version() != 2 {
        return Err(BthomeError::Version(info.version()));
    }
    let (mac, body) = if info.mac_included() {
        let (m, body) = rest
            .split_first_chunk::<6>()
            .ok_or(BthomeError::TruncatedMac)?;
        let mut mac = *m;
        mac.reverse();
        (Some(mac), body)
    } else {
        (None, rest)
    };
    if info.encrypted() && body.len() < 9 {
        return Err(BthomeError::EncryptedTooShort(body.len()));
    }
    Ok(Frame { info, mac, body })
}

/// How an object's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// Little-endian unsigned integer of `n` bytes, times `factor`.
    Uint(usize, f64),
    /// Little-endian signed integer of `n` bytes, times `factor`.
    Sint(usize, f64),
    /// One byte, 0 = false.
    Binary,
    /// Button event (1 byte).
    Button,
    /// Dimmer event: direction byte, steps byte.
    Dimmer,
    /// Command event: length byte (low 5 bits: argument bytes), opcode, arguments.
    Command,
    /// Length-prefixed UTF-8 text.
    Text,
    /// Length-prefixed bytes.
    Raw,
    /// Seconds since the epoch, 4 bytes.
    Timestamp,
    /// Packet id (1 byte): for deduplication, not a measurement.
    PacketId,
    /// Device type id (2 bytes).
    DeviceType,
    /// Firmware version, 4 or 3 bytes, least significant component first.
    Firmware(usize),
}

/// One object id of the BTHome v2 specification.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    unit: Option<&'static str>,
    format: Format,
}

const fn u(name: &'static str, n: usize, factor: f64, unit: Option<&'static str>) -> Spec {
    Spec {
        name,
        unit,
        format: Format::Uint(n, factor),
    }
}
const fn s(name: &'static str, n: usize, factor: f64, unit: Option<&'static str>) -> Spec {
    Spec {
        name,
        unit,
        format: Format::Sint(n, factor),
    }
}
const fn b(name: &'static str) -> Spec {
    Spec {
        name,
        unit: None,
        format: Format::Binary,
    }
}
const fn o(name: &'static str, format: Format) -> Spec {
    Spec {
        name,
        unit: None,
        format,
    }
}

const C: Option<&str> = Some("°C");
const PCT: Option<&str> = Some("%");
const UGM3: Option<&str> = Some("µg/m³");

/// The object table of BTHome v2, indexed by object id.
fn spec(id: u8) -> Option<Spec> {
    Some(match id {
        0x00 => o("packet_id", Format::PacketId),
        0x01 => u("battery", 1, 1.0, PCT),
        0x02 => s("temperature", 2, 0.01, C),
        0x03 => u("humidity", 2, 0.01, PCT),
        0x04 => u("pressure", 3, 0.01, Some("mbar")),
        0x05 => u("illuminance", 3, 0.01, Some("lx")),
        0x06 => u("mass", 2, 0.01, Some("kg")),
        0x07 => u("mass", 2, 0.01, Some("lb")),
        0x08 => s("dew_point", 2, 0.01, C),
        0x09 => u("count", 1, 1.0, None),
        0x0a => u("energy", 3, 0.001, Some("kWh")),
        0x0b => u("power", 3, 0.01, Some("W")),
        0x0c => u("voltage", 2, 0.001, Some("V")),
        0x0d => u("pm25", 2, 1.0, UGM3),
        0x0e => u("pm10", 2, 1.0, UGM3),
        0x0f => b("generic"),
        0x10 => b("power_on"),
        0x11 => b("opening"),
        0x12 => u("carbon_dioxide", 2, 1.0, Some("ppm")),
        0x13 => u("volatile_organic_compounds", 2, 1.0, UGM3),
        0x14 => u("moisture", 2, 0.01, PCT),
        0x15 => b("battery_low"),
        0x16 => b("battery_charging"),
        0x17 => b("carbon_monoxide"),
        0x18 => b("cold"),
        0x19 => b("connectivity"),
        0x1a => b("door"),
        0x1b => b("garage_door"),
        0x1c => b("gas_detected"),
        0x1d => b("heat"),
        0x1e => b("light"),
        0x1f => b("lock"),
        0x20 => b("moisture_detected"),
        0x21 => b("motion"),
        0x22 => b("moving"),
        0x23 => b("occupancy"),
        0x24 => b("plug"),
        0x25 => b("presence"),
        0x26 => b("problem"),
        0x27 => b("running"),
        0x28 => b("safety"),
        0x29 => b("smoke"),
        0x2a => b("sound"),
        0x2b => b("tamper"),
        0x2c => b("vibration"),
        0x2d => b("window"),
        0x2e => u("humidity", 1, 1.0, PCT),
        0x2f => u("moisture", 1, 1.0, PCT),
        0x3a => o("button", Format::Button),
        0x3b => o("command", Format::Command),
        0x3c => o("dimmer", Format::Dimmer),
        0x3d => u("count", 2, 1.0, None),
        0x3e => u("count", 4, 1.0, None),
        0x3f => s("rotation", 2, 0.1, Some("°")),
        0x40 => u("distance", 2, 1.0, Some("mm")),
        0x41 => u("distance", 2, 0.1, Some("m")),
        0x42 => u("duration", 3, 0.001, Some("s")),
        0x43 => u("current", 2, 0.001, Some("A")),
        0x44 => u("speed", 2, 0.01, Some("m/s")),
        0x45 => s("temperature", 2, 0.1, C),
        0x46 => u("uv_index", 1, 0.1, None),
        0x47 => u("volume", 2, 0.1, Some("L")),
        0x48 => u("volume", 2, 1.0, Some("mL")),
        0x49 => u("volume_flow_rate", 2, 0.001, Some("m³/h")),
        0x4a => u("voltage", 2, 0.1, Some("V")),
        0x4b => u("gas", 3, 0.001, Some("m³")),
        0x4c => u("gas", 4, 0.001, Some("m³")),
        0x4d => u("energy", 4, 0.001, Some("kWh")),
        0x4e => u("volume", 4, 0.001, Some("L")),
        0x4f => u("water", 4, 0.001, Some("L")),
        0x50 => Spec {
            name: "timestamp",
            unit: Some("s"),
            format: Format::Timestamp,
        },
        0x51 => u("acceleration", 2, 0.001, Some("m/s²")),
        0x52 => u("gyroscope", 2, 0.001, Some("°/s")),
        0x53 => o("text", Format::Text),
        0x54 => o("raw", Format::Raw),
        0x55 => u("volume_storage", 4, 0.001, Some("L")),
        0x56 => u("conductivity", 2, 1.0, Some("µS/cm")),
        0x57 => s("temperature", 1, 1.0, C),
        0x58 => s("temperature", 1, 0.35, C),
        0x59 => s("count", 1, 1.0, None),
        0x5a => s("count", 2, 1.0, None),
        0x5b => s("count", 4, 1.0, None),
        0x5c => s("power", 4, 0.01, Some("W")),
        0x5d => s("current", 2, 0.001, Some("A")),
        0x5e => u("direction", 2, 0.01, Some("°")),
        0x5f => u("precipitation", 2, 0.1, Some("mm")),
        0x60 => u("channel", 1, 1.0, None),
        0x61 => u("rotational_speed", 2, 1.0, Some("rpm")),
        0x62 => s("speed", 4, 0.000_001, Some("m/s")),
        0x63 => s("acceleration", 4, 0.000_001, Some("m/s²")),
        0x64 => u("light_level", 1, 1.0, None),
        0x65 => u("settings_revision", 1, 1.0, None),
        0xf0 => o("device_type_id", Format::DeviceType),
        0xf1 => o("firmware", Format::Firmware(4)),
        0xf2 => o("firmware", Format::Firmware(3)),
        _ => return None,
    })
}

/// Whether `id` is an object id of BTHome v2 this parser knows.
pub fn known_object(id: u8) -> bool {
    spec(id).is_some()
}

/// One decoded measurement, binary state or event.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: u8,
    pub name: &'static str,
    pub value: Value,
    pub unit: Option<&'static str>,
}

/// A parsed plain object list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub packet_id: Option<u8>,
    pub device_type_id: Option<u16>,
    pub firmware: Option<String>,
    /// The unknown object id parsing stopped at (the objects before it are kept).
    pub unknown_object: Option<u8>,
}

impl Parsed {
    /// The objects as message points. A name that occurs more than once gets `_1`, `_2`, … in
    /// advert order (as Home Assistant's parser names them).
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(self.objects.len());
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for obj in &self.objects {
            let total = self.objects.iter().filter(|x| x.name == obj.name).count();
            let name = if total > 1 {
                let n = match seen.iter_mut().find(|(k, _)| *k == obj.name) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        seen.push((obj.name, 1));
                        1
                    }
                };
                format!("{}_{n}", obj.name)
            } else {
                obj.name.to_owned()
            };
            let mut p = Point::new(name, obj.value.clone());
            if let Some(u) = obj.unit {
                p = p.with_unit(u);
            }
            out.push(p);
        }
        out
    }
}

fn le_uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

fn le_sint(b: &[u8]) -> i64 {
    let bits = (b.len() * 8) as u32;
    let raw = le_uint(b);
    if bits == 0 || bits >= 64 {
        return raw as i64;
    }
    // sign-extend from `bits`
    let shift = 64 - bits;
    ((raw << shift) as i64) >> shift
}

/// The number of decimals a factor has (0.01 → 2, 0.35 → 2, 1e-6 → 6).
fn decimals(factor: f64) -> i32 {
    let mut d = 0;
    let mut f = factor;
    while d < 9 && (f - f.round()).abs() > 1e-9 {
        f *= 10.0;
        d += 1;
    }
    d
}

fn scaled(raw: i64, factor: f64) -> Value {
    if factor == 1.0 {
        return Value::Int(raw);
    }
    let d = decimals(factor);
    let p = 10f64.powi(d);
    Value::Float(((raw as f64) * factor * p).round() / p)
}

fn button(code: u8) -> Option<&'static str> {
    Some(match code {
        0x00 => return None,
        0x01 => "press",
        0x02 => "double_press",
        0x03 => "triple_press",
        0x04 => "long_press",
        0x05 => "long_double_press",
        0x06 => "long_triple_press",
        0x80 => "hold_press",
        0x81 => "hold_release",
        _ => "unknown",
    })
}

fn command(op: u8) -> &'static str {
    match op {
        0x00 => "off",
        0x01 => "on",
        0x02 => "toggle",
        0x03 => "step_up",
        0x04 => "step_down",
        _ => "unknown",
    }
}

/// Parses a plain (or decrypted) object list.
pub fn parse_objects(body: &[u8]) -> Result<Parsed, BthomeError> {
    let mut out = Parsed::default();
    let mut at = 0usize;
    while let Some(&id) = body.get(at) {
        let Some(spec) = spec(id) else {
            out.unknown_object = Some(id);
            break;
        };
        // (start of value, value length, next object)
        let (start, len) = match spec.format {
            Format::Uint(n, _) | Format::Sint(n, _) => (at + 1, n),
            Format::Binary | Format::Button | Format::PacketId => (at + 1, 1),
            Format::Dimmer | Format::DeviceType => (at + 1, 2),
            Format::Timestamp => (at + 1, 4),
            Format::Firmware(n) => (at + 1, n),
            Format::Text | Format::Raw => {
                let l = *body.get(at + 1).ok_or(BthomeError::Truncated { id, at })?;
                (at + 2, usize::from(l))
            }
            Format::Command => {
                let l = *body.get(at + 1).ok_or(BthomeError::Truncated { id, at })?;
                (at + 2, 1 + usize::from(l & 0x1f))
            }
        };
        if len == 0 {
            return Err(BthomeError::ZeroLength { id, at });
        }
        let v = body
            .get(start..start + len)
            .ok_or(BthomeError::Truncated { id, at })?;
        at = start + len;
        let value = match spec.format {
            Format::Uint(_, f) => scaled(le_uint(v) as i64, f),
            Format::Sint(_, f) => scaled(le_sint(v), f),
            Format::Binary => Value::Bool(v.first().is_some_and(|&x| x != 0)),
            Format::Button => match v.first().copied().and_then(button) {
                Some(e) => Value::Text(e.to_owned()),
                None => continue, // "no event": nothing to report
            },
            Format::Dimmer => {
                let (dir, steps) = (v.first().copied(), v.get(1).copied().unwrap_or(0));
                let e = match dir {
                    Some(1) => "rotate_left",
                    Some(2) => "rotate_right",
                    Some(0) | None => continue,
                    Some(_) => "unknown",
                };
                push(&mut out, id, spec.name, Value::Text(e.to_owned()), None);
                push(
                    &mut out,
                    id,
                    "dimmer_steps",
                    Value::Int(i64::from(steps)),
                    None,
                );
                continue;
            }
            Format::Command => {
                let (op, args) = v.split_first().map_or((0, &[][..]), |(o, a)| (*o, a));
                push(
                    &mut out,
                    id,
                    spec.name,
                    Value::Text(command(op).to_owned()),
                    None,
                );
                if !args.is_empty() {
                    push(
                        &mut out,
                        id,
                        "command_args",
                        Value::Bytes(args.to_vec()),
                        None,
                    );
                }
                continue;
            }
            Format::Text => {
                let t = String::from_utf8_lossy(v);
                let mut t: String = t.chars().filter(|c| !c.is_control()).collect();
                if t.len() > MAX_TEXT {
                    let mut end = MAX_TEXT;
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    t.truncate(end);
                }
                Value::Text(t)
            }
            Format::Raw => Value::Bytes(v.to_vec()),
            Format::Timestamp => Value::Int(le_uint(v) as i64),
            Format::PacketId => {
                out.packet_id = v.first().copied();
                continue;
            }
            Format::DeviceType => {
                out.device_type_id = Some(le_uint(v) as u16);
                continue;
            }
            Format::Firmware(_) => {
                let parts: Vec<String> = v.iter().rev().map(|x| x.to_string()).collect();
                out.firmware = Some(parts.join("."));
                continue;
            }
        };
        push(&mut out, id, spec.name, value, spec.unit);
    }
    Ok(out)
}

fn push(out: &mut Parsed, id: u8, name: &'static str, value: Value, unit: Option<&'static str>) {
    if out.objects.len() < MAX_OBJECTS {
        out.objects.push(Object {
            id,
            name,
            value,
            unit,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn plain(objects: &str) -> Parsed {
        let mut sd = vec![0x40];
        sd.extend(hex(objects));
        let f = frame(&sd).unwrap();
        assert!(!f.info.encrypted());
        parse_objects(f.body).unwrap()
    }

    fn val(p: &Parsed, name: &str) -> Value {
        p.points()
            .into_iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("{name} missing in {p:?}"))
            .value
    }

    #[test]
    fn the_reference_vector_battery_temperature_humidity() {
        let p = plain("01 64 02 ca 09 03 bf 13");
        assert_eq!(val(&p, "battery"), Value::Int(100));
        assert_eq!(val(&p, "temperature"), Value::Float(25.06));
        assert_eq!(val(&p, "humidity"), Value::Float(50.55));
        let t = p
            .points()
            .into_iter()
            .find(|x| x.name == "temperature")
            .unwrap();
        assert_eq!(t.unit.as_deref(), Some("°C"));
    }

    #[test]
    fn factors_signs_and_widths_follow_the_spec() {
        // 0x02 -1.5 °C; 0x04 1008.83 mbar (3 bytes); 0x0c 3.074 V; 0x12 1250 ppm
        let p = plain("02 6a ff 04 13 8a 01 0c 02 0c 12 e2 04");
        assert_eq!(val(&p, "temperature"), Value::Float(-1.5));
        assert_eq!(val(&p, "pressure"), Value::Float(1008.83));
        assert_eq!(val(&p, "voltage"), Value::Float(3.074));
        assert_eq!(val(&p, "carbon_dioxide"), Value::Int(1250));
        // 0x5c signed 4-byte power -10.00 W, 0x58 temperature * 0.35, 0x62 speed * 1e-6
        let p = plain("58 10 5c 18 fc ff ff 62 40 42 0f 00");
        assert_eq!(val(&p, "temperature"), Value::Float(5.6));
        assert_eq!(val(&p, "power"), Value::Float(-10.0));
        assert_eq!(val(&p, "speed"), Value::Float(1.0));
        // 0x3e 4-byte count, 0x50 timestamp
        let p = plain("3e 78 56 34 12 50 5d 39 61 64");
        assert_eq!(val(&p, "count"), Value::Int(0x1234_5678));
        assert_eq!(val(&p, "timestamp"), Value::Int(0x6461_395d));
    }

    #[test]
    fn binary_sensors_and_events() {
        let p = plain("11 01 1a 00 21 01 2d 01 3a 04 3c 01 03");
        assert_eq!(val(&p, "opening"), Value::Bool(true));
        assert_eq!(val(&p, "door"), Value::Bool(false));
        assert_eq!(val(&p, "motion"), Value::Bool(true));
        assert_eq!(val(&p, "window"), Value::Bool(true));
        assert_eq!(val(&p, "button"), Value::Text("long_press".into()));
        assert_eq!(val(&p, "dimmer"), Value::Text("rotate_left".into()));
        assert_eq!(val(&p, "dimmer_steps"), Value::Int(3));
        // a button with "no event" reports nothing
        assert!(plain("3a 00").objects.is_empty());
    }

    #[test]
    fn repeated_ids_are_numbered_in_order() {
        let p = plain("02 ca 09 02 c4 09 45 fa 00");
        let names: Vec<String> = p.points().into_iter().map(|x| x.name).collect();
        assert_eq!(names, ["temperature_1", "temperature_2", "temperature_3"]);
        assert_eq!(val(&p, "temperature_2"), Value::Float(25.0));
        assert_eq!(val(&p, "temperature_3"), Value::Float(25.0));
        let p = plain("3a 01 3a 02");
        assert_eq!(val(&p, "button_1"), Value::Text("press".into()));
        assert_eq!(val(&p, "button_2"), Value::Text("double_press".into()));
    }

    #[test]
    fn packet_id_device_info_text_and_raw() {
        let p = plain("00 09 01 50 53 03 61 62 63 54 02 de ad f0 01 00 f2 00 01 06");
        assert_eq!(p.packet_id, Some(9));
        assert_eq!(p.device_type_id, Some(1));
        assert_eq!(p.firmware.as_deref(), Some("6.1.0"));
        assert_eq!(val(&p, "text"), Value::Text("abc".into()));
        assert_eq!(val(&p, "raw"), Value::Bytes(vec![0xde, 0xad]));
        assert!(p.points().iter().all(|x| x.name != "packet_id"));
    }

    #[test]
    fn every_known_id_parses_with_enough_bytes() {
        for id in 0..=255u8 {
            if !known_object(id) {
                continue;
            }
            // a length byte of 1 for the variable-length ones, then value bytes: every prefix
            // shorter than the object is a typed truncation, the first long enough parses
            let body = [id, 1, 1, 1, 1, 1];
            let ok = (1..=body.len())
                .find(|&k| parse_objects(&body[..k]).is_ok())
                .unwrap_or_else(|| panic!("0x{id:02x} never parses"));
            for k in 1..ok {
                assert_eq!(
                    parse_objects(&body[..k]),
                    Err(BthomeError::Truncated { id, at: 0 }),
                    "0x{id:02x} cut to {k}"
                );
            }
        }
        assert!(!known_object(0x30));
        assert!(!known_object(0xff));
    }

    #[test]
    fn unknown_ids_stop_parsing_and_keep_what_came_before() {
        let p = plain("01 64 30 01 02 ca 09");
        assert_eq!(p.unknown_object, Some(0x30));
        assert_eq!(p.objects.len(), 1);
        assert_eq!(val(&p, "battery"), Value::Int(100));
    }

    #[test]
    fn typed_errors_for_bad_frames() {
        assert_eq!(frame(&[]), Err(BthomeError::Empty));
        assert_eq!(frame(&[0x20]).unwrap_err(), BthomeError::Version(1));
        assert_eq!(frame(&[0x42, 1, 2]), Err(BthomeError::TruncatedMac));
        assert_eq!(frame(&vec![0x40; 256]), Err(BthomeError::Oversized(256)));
        assert_eq!(
            frame(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(BthomeError::EncryptedTooShort(8))
        );
        assert_eq!(
            parse_objects(&[0x02, 0xca]),
            Err(BthomeError::Truncated { id: 2, at: 0 })
        );
        assert_eq!(
            parse_objects(&[0x01, 0x64, 0x53]),
            Err(BthomeError::Truncated { id: 0x53, at: 2 })
        );
        assert_eq!(
            parse_objects(&[0x54, 0x00]),
            Err(BthomeError::ZeroLength { id: 0x54, at: 0 })
        );
        assert_eq!(
            parse_objects(&[0x53, 0x05, b'a']),
            Err(BthomeError::Truncated { id: 0x53, at: 0 })
        );
        let f = frame(&[0x42, 6, 5, 4, 3, 2, 1, 0x01, 0x64]).unwrap();
        assert_eq!(f.mac, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.body, &[0x01, 0x64]);
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_never_panic(sd in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(f) = frame(&sd)
                && let Ok(p) = parse_objects(f.body)
            {
                prop_assert!(p.objects.len() <= MAX_OBJECTS);
                let _ = p.points();
            }
        }

        #[test]
        fn uint16_temperature_like_objects_round_trip(raw in any::<i16>(), hum in any::<u16>()) {
            let mut body = vec![0x02];
            body.extend(raw.to_le_bytes());
            body.push(0x03);
            body.extend(hum.to_le_bytes());
            let p = parse_objects(&body).unwrap();
            prop_assert_eq!(p.objects.len(), 2);
            match (&p.objects[0].value, &p.objects[1].value) {
                (Value::Float(t), Value::Float(h)) => {
                    prop_assert!((t * 100.0 - f64::from(raw)).abs() < 1e-6);
                    prop_assert!((h * 100.0 - f64::from(hum)).abs() < 1e-6);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
