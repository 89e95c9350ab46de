//! ZCL global ("profile-wide") commands: Read Attributes (+ response), Write Attributes (+ response),
//! Configure Reporting (+ response), Report Attributes and Default Response. Encoders produce the
//! payload after the ZCL header; decoders take the payload after it.

use crate::zcl::error::{DecodeError, EncodeError};
use crate::zcl::frame::ZclBody;
use crate::zcl::types::{DataType, Reader, TypeClass, ZclValue, put_u16};

/// Global command ids (ZCL spec table 2-3).
pub mod cmd {
    pub const READ_ATTRIBUTES: u8 = 0x00;
    pub const READ_ATTRIBUTES_RESPONSE: u8 = 0x01;
    pub const WRITE_ATTRIBUTES: u8 = 0x02;
    pub const WRITE_ATTRIBUTES_RESPONSE: u8 = 0x04;
    pub const CONFIGURE_REPORTING: u8 = 0x06;
    pub const CONFIGURE_REPORTING_RESPONSE: u8 = 0x07;
    pub const REPORT_ATTRIBUTES: u8 = 0x0a;
    pub const DEFAULT_RESPONSE: u8 = 0x0b;
}

/// Most records decoded from, or encoded into, one frame (a ZCL frame fits in < 128 bytes).
pub const MAX_RECORDS: usize = 64;

/// A ZCL status code (ZCL spec table 2-12). Unknown codes are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    pub const SUCCESS: Status = Status(0x00);
    pub const FAILURE: Status = Status(0x01);
    pub const NOT_AUTHORIZED: Status = Status(0x7e);
    pub const MALFORMED_COMMAND: Status = Status(0x80);
    pub const UNSUP_COMMAND: Status = Status(0x81);
    pub const INVALID_FIELD: Status = Status(0x85);
    pub const UNSUPPORTED_ATTRIBUTE: Status = Status(0x86);
    pub const INVALID_VALUE: Status = Status(0x87);
    pub const READ_ONLY: Status = Status(0x88);
    pub const INSUFFICIENT_SPACE: Status = Status(0x89);
    pub const NOT_FOUND: Status = Status(0x8b);
    pub const UNREPORTABLE_ATTRIBUTE: Status = Status(0x8c);
    pub const INVALID_DATA_TYPE: Status = Status(0x8d);
    pub const HARDWARE_FAILURE: Status = Status(0xc0);
    pub const SOFTWARE_FAILURE: Status = Status(0xc1);

    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }

    /// A stable label (for logs and metrics).
    pub fn as_str(self) -> &'static str {
        match self.0 {
            0x00 => "success",
            0x01 => "failure",
            0x7e => "not-authorized",
            0x80 => "malformed-command",
            0x81 => "unsupported-command",
            0x85 => "invalid-field",
            0x86 => "unsupported-attribute",
            0x87 => "invalid-value",
            0x88 => "read-only",
            0x89 => "insufficient-space",
            0x8b => "not-found",
            0x8c => "unreportable-attribute",
            0x8d => "invalid-data-type",
            0xc0 => "hardware-failure",
            0xc1 => "software-failure",
            _ => "other",
        }
    }
}

/// A decoded record list. If a record could not be decoded, the ones before it are in `items`
/// and the reason is in `stopped`; nothing after it is guessed at.
#[derive(Debug, Clone, PartialEq)]
pub struct Records<T> {
    pub items: Vec<T>,
    pub stopped: Option<DecodeError>,
}

/// One record of a Read Attributes Response: `value` is present iff `status` is success.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAttributeRecord {
    pub attr: u16,
    pub status: Status,
    pub value: Option<ZclValue>,
}

/// One record of a Report Attributes command.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeReport {
    pub attr: u16,
    pub value: ZclValue,
}

/// A per-attribute status in a Write Attributes or Configure Reporting response.
/// `direction` is only present in Configure Reporting responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeStatus {
    pub status: Status,
    pub direction: Option<u8>,
    pub attr: u16,
}

/// One attribute to configure for reporting (direction 0x00: the device reports).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportingConfig {
    pub attr: u16,
    pub data_type: DataType,
    /// Seconds.
    pub min_interval: u16,
    /// Seconds; 0xffff turns periodic reports off.
    pub max_interval: u16,
    /// Required for analog data types (a value of `data_type`), ignored for discrete ones.
    pub reportable_change: Option<ZclValue>,
}

fn check_count(n: usize) -> Result<(), EncodeError> {
    if n > MAX_RECORDS {
        Err(EncodeError::TooMany(MAX_RECORDS))
    } else {
        Ok(())
    }
}

/// Read Attributes (0x00) payload.
pub fn encode_read_attributes(attrs: &[u16]) -> Result<Vec<u8>, EncodeError> {
    check_count(attrs.len())?;
    let mut out = Vec::with_capacity(attrs.len() * 2);
    for a in attrs {
        put_u16(&mut out, *a);
    }
    Ok(out)
}

/// Write Attributes (0x02) payload.
pub fn encode_write_attributes(records: &[(u16, ZclValue)]) -> Result<Vec<u8>, EncodeError> {
    check_count(records.len())?;
    let mut out = Vec::new();
    for (attr, value) in records {
        put_u16(&mut out, *attr);
        value.encode_typed(&mut out)?;
    }
    Ok(out)
}

/// Configure Reporting (0x06) payload.
pub fn encode_configure_reporting(configs: &[ReportingConfig]) -> Result<Vec<u8>, EncodeError> {
    check_count(configs.len())?;
    let mut out = Vec::new();
    for c in configs {
        out.push(0x00); // direction: reported by the server
        put_u16(&mut out, c.attr);
        out.push(c.data_type.id());
        put_u16(&mut out, c.min_interval);
        put_u16(&mut out, c.max_interval);
        if c.data_type.class() == TypeClass::Analog {
            let change = c
                .reportable_change
                .as_ref()
                .ok_or(EncodeError::MissingReportableChange(c.attr))?;
            if change.data_type() != c.data_type {
                return Err(EncodeError::TypeMismatch(c.data_type.id()));
            }
            change.encode(&mut out)?;
        }
    }
    Ok(out)
}

/// Report Attributes (0x0a) payload (used by simulators and tests).
pub fn encode_report_attributes(reports: &[AttributeReport]) -> Result<Vec<u8>, EncodeError> {
    check_count(reports.len())?;
    let mut out = Vec::new();
    for r in reports {
        put_u16(&mut out, r.attr);
        r.value.encode_typed(&mut out)?;
    }
    Ok(out)
}

/// Read Attributes Response (0x01) payload (used by simulators and tests).
pub fn encode_read_attributes_response(
    records: &[ReadAttributeRecord],
) -> Result<Vec<u8>, EncodeError> {
    check_count(records.len())?;
    let mut out = Vec::new();
    for r in records {
        put_u16(&mut out, r.attr);
        out.push(r.status.0);
        if r.status.is_success() {
            match &r.value {
                Some(v) => v.encode_typed(&mut out)?,
                None => return Err(EncodeError::TypeMismatch(0x00)),
            }
        }
    }
    Ok(out)
}

/// Default Response (0x0b) payload.
pub fn encode_default_response(command: u8, status: Status) -> Vec<u8> {
    vec![command, status.0]
}

/// Decode the payload of a global command.
pub(crate) fn decode_body(command: u8, payload: &[u8]) -> Result<ZclBody, DecodeError> {
    Ok(match command {
        cmd::READ_ATTRIBUTES => ZclBody::ReadAttributes(decode_read_attributes(payload)?),
        cmd::READ_ATTRIBUTES_RESPONSE => {
            ZclBody::ReadAttributesResponse(decode_read_attributes_response(payload))
        }
        cmd::WRITE_ATTRIBUTES_RESPONSE => {
            ZclBody::WriteAttributesResponse(decode_status_records(payload, false))
        }
        cmd::CONFIGURE_REPORTING_RESPONSE => {
            ZclBody::ConfigureReportingResponse(decode_status_records(payload, true))
        }
        cmd::REPORT_ATTRIBUTES => ZclBody::ReportAttributes(decode_report_attributes(payload)),
        cmd::DEFAULT_RESPONSE => {
            let mut r = Reader::new(payload);
            let command = r.u8()?;
            let status = Status(r.u8()?);
            if !r.is_empty() {
                return Err(DecodeError::Trailing(r.remaining()));
            }
            ZclBody::DefaultResponse { command, status }
        }
        other => ZclBody::Unsupported {
            frame_type: crate::zcl::frame::FrameType::Global,
            command: other,
        },
    })
}

/// Read Attributes (0x00) payload: attribute ids.
pub fn decode_read_attributes(payload: &[u8]) -> Result<Vec<u16>, DecodeError> {
    let mut r = Reader::new(payload);
    let mut out = Vec::new();
    while r.remaining() >= 2 {
        if out.len() >= MAX_RECORDS {
            return Err(DecodeError::TooMany(MAX_RECORDS));
        }
        out.push(r.u16()?);
    }
    if !r.is_empty() {
        return Err(DecodeError::Trailing(r.remaining()));
    }
    Ok(out)
}

/// Run `one` until the payload is used up, at most [`MAX_RECORDS`] times.
fn decode_records<T>(
    payload: &[u8],
    mut one: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Records<T> {
    let mut r = Reader::new(payload);
    let mut items = Vec::new();
    let mut stopped = None;
    while !r.is_empty() {
        if items.len() >= MAX_RECORDS {
            stopped = Some(DecodeError::TooMany(MAX_RECORDS));
            break;
        }
        match one(&mut r) {
            Ok(item) => items.push(item),
            Err(e) => {
                stopped = Some(e);
                break;
            }
        }
    }
    Records { items, stopped }
}

/// Read Attributes Response (0x01) payload.
pub fn decode_read_attributes_response(payload: &[u8]) -> Records<ReadAttributeRecord> {
    decode_records(payload, |r| {
        let attr = r.u16()?;
        let status = Status(r.u8()?);
        let value = if status.is_success() {
            Some(ZclValue::read_typed(r)?)
        } else {
            None
        };
        Ok(ReadAttributeRecord {
            attr,
            status,
            value,
        })
    })
}

/// Report Attributes (0x0a) payload.
pub fn decode_report_attributes(payload: &[u8]) -> Records<AttributeReport> {
    decode_records(payload, |r| {
        let attr = r.u16()?;
        let value = ZclValue::read_typed(r)?;
        Ok(AttributeReport { attr, value })
    })
}

/// Write Attributes Response (0x04, `with_direction` false) or Configure Reporting Response
/// (0x07, true). A lone success byte means every record succeeded and gives an empty list.
pub fn decode_status_records(payload: &[u8], with_direction: bool) -> Records<AttributeStatus> {
    if payload == [Status::SUCCESS.0] {
        return Records {
            items: Vec::new(),
            stopped: None,
        };
    }
    decode_records(payload, |r| {
        let status = Status(r.u8()?);
        let direction = if with_direction { Some(r.u8()?) } else { None };
        let attr = r.u16()?;
        Ok(AttributeStatus {
            status,
            direction,
            attr,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn report_stops_at_unknown_type() {
        let p = [
            0x00, 0x00, 0x29, 0x66, 0x08, 0x01, 0x00, 0x77, 0x01, 0x02, 0x00, 0x21, 1, 0,
        ];
        let recs = decode_report_attributes(&p);
        assert_eq!(
            recs.items,
            vec![AttributeReport {
                attr: 0,
                value: ZclValue::Signed(DataType::Int16, 2150)
            }]
        );
        assert_eq!(recs.stopped, Some(DecodeError::UnknownType(0x77)));
    }

    #[test]
    fn read_response_mixed_status() {
        let p = [0x04, 0x00, 0x00, 0x42, 0x02, b'I', b'K', 0x05, 0x00, 0x86];
        let recs = decode_read_attributes_response(&p);
        assert_eq!(recs.stopped, None);
        assert_eq!(recs.items.len(), 2);
        assert_eq!(
            recs.items[0].value,
            Some(ZclValue::Text(DataType::CharString, "IK".into()))
        );
        assert_eq!(recs.items[1].status, Status::UNSUPPORTED_ATTRIBUTE);
        assert_eq!(recs.items[1].value, None);
    }

    #[test]
    fn status_records() {
        assert_eq!(decode_status_records(&[0], false).items, vec![]);
        let r = decode_status_records(&[0x88, 0x00, 0x40], false);
        assert_eq!(
            r.items,
            vec![AttributeStatus {
                status: Status::READ_ONLY,
                direction: None,
                attr: 0x4000
            }]
        );
        let r = decode_status_records(&[0x8c, 0x00, 0x00, 0x00, 0x86], true);
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].direction, Some(0));
        assert_eq!(r.stopped, Some(DecodeError::Truncated { needed: 1 }));
    }

    #[test]
    fn configure_reporting_needs_change_for_analog() {
        let c = ReportingConfig {
            attr: 0,
            data_type: DataType::Int16,
            min_interval: 10,
            max_interval: 300,
            reportable_change: None,
        };
        assert_eq!(
            encode_configure_reporting(&[c]),
            Err(EncodeError::MissingReportableChange(0))
        );
        let d = ReportingConfig {
            attr: 0,
            data_type: DataType::Bool,
            min_interval: 0,
            max_interval: 600,
            reportable_change: None,
        };
        assert_eq!(
            encode_configure_reporting(&[d]).unwrap(),
            [0, 0, 0, 0x10, 0, 0, 0x58, 0x02]
        );
    }

    #[test]
    fn too_many_records() {
        let attrs = vec![0u16; MAX_RECORDS + 1];
        assert_eq!(
            encode_read_attributes(&attrs),
            Err(EncodeError::TooMany(MAX_RECORDS))
        );
        let p = vec![0u8; (MAX_RECORDS + 1) * 2];
        assert_eq!(
            decode_read_attributes(&p),
            Err(DecodeError::TooMany(MAX_RECORDS))
        );
    }

    #[test]
    fn default_response() {
        assert_eq!(
            decode_body(0x0b, &[0x01, 0x00]).unwrap(),
            ZclBody::DefaultResponse {
                command: 1,
                status: Status::SUCCESS
            }
        );
        assert_eq!(
            decode_body(0x0b, &[0x01]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(encode_default_response(2, Status(0x81)), [2, 0x81]);
    }
}
