//! The ZCL frame: header (frame control, optional manufacturer code, transaction sequence number,
//! command id) and the top-level decoder that turns a whole frame into a typed [`ZclFrame`].
//!
//! Manufacturer-specific frames decode to [`ZclBody::ManufacturerSpecific`] without looking at the
//! payload, so the adapter can log and ignore them.

use crate::zcl::clusters::{self, ZoneStatusChange};
use crate::zcl::error::DecodeError;
use crate::zcl::global::{
    self, AttributeReport, AttributeStatus, ReadAttributeRecord, Records, Status,
};
use crate::zcl::types::{Reader, put_u16};

/// Frame-control bits 0-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A command defined for every cluster (read, write, report, …).
    Global,
    /// A command defined by the cluster itself (on, off, move to level, …).
    ClusterSpecific,
}

/// Frame-control bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (usually the gateway) to the server (usually the device).
    ClientToServer,
    /// From the server to the client: reports and responses from devices.
    ServerToClient,
}

/// A decoded ZCL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZclHeader {
    pub frame_type: FrameType,
    /// Set when frame-control bit 2 is set: the manufacturer code that follows.
    pub manufacturer: Option<u16>,
    pub direction: Direction,
    pub disable_default_response: bool,
    /// Transaction sequence number.
    pub tsn: u8,
    pub command: u8,
}

const FC_CLUSTER_SPECIFIC: u8 = 0x01;
const FC_MANUFACTURER: u8 = 0x04;
const FC_SERVER_TO_CLIENT: u8 = 0x08;
const FC_DISABLE_DEFAULT_RSP: u8 = 0x10;

impl ZclHeader {
    /// A header for a global command from the gateway to a device.
    pub fn global(tsn: u8, command: u8) -> Self {
        Self {
            frame_type: FrameType::Global,
            manufacturer: None,
            direction: Direction::ClientToServer,
            disable_default_response: false,
            tsn,
            command,
        }
    }

    /// A header for a cluster-specific command from the gateway to a device.
    pub fn cluster(tsn: u8, command: u8) -> Self {
        Self {
            frame_type: FrameType::ClusterSpecific,
            ..Self::global(tsn, command)
        }
    }

    /// The frame-control byte.
    pub fn frame_control(&self) -> u8 {
        let mut fc = 0;
        if self.frame_type == FrameType::ClusterSpecific {
            fc |= FC_CLUSTER_SPECIFIC;
        }
        if self.manufacturer.is_some() {
            fc |= FC_MANUFACTURER;
        }
        if self.direction == Direction::ServerToClient {
            fc |= FC_SERVER_TO_CLIENT;
        }
        if self.disable_default_response {
            fc |= FC_DISABLE_DEFAULT_RSP;
        }
        fc
    }

    /// Append the encoded header (3 or 5 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.frame_control());
        if let Some(code) = self.manufacturer {
            put_u16(out, code);
        }
        out.push(self.tsn);
        out.push(self.command);
    }

    /// Decode a header; returns it and the payload after it. Reserved frame-control bits 5-7 are
    /// ignored (they are reserved for future use and zero today).
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(bytes);
        let fc = r.u8()?;
        let frame_type = match fc & 0x03 {
            0 => FrameType::Global,
            1 => FrameType::ClusterSpecific,
            t => return Err(DecodeError::ReservedFrameType(t)),
        };
        let manufacturer = if fc & FC_MANUFACTURER != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let direction = if fc & FC_SERVER_TO_CLIENT != 0 {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        let tsn = r.u8()?;
        let command = r.u8()?;
        Ok((
            Self {
                frame_type,
                manufacturer,
                direction,
                disable_default_response: fc & FC_DISABLE_DEFAULT_RSP != 0,
                tsn,
                command,
            },
            r.rest(),
        ))
    }
}

/// A decoded ZCL frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ZclFrame {
    pub header: ZclHeader,
    pub body: ZclBody,
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ZclBody {
    /// Global 0x00 (a device asking the gateway, e.g. for the time).
    ReadAttributes(Vec<u16>),
    /// Global 0x01.
    ReadAttributesResponse(Records<ReadAttributeRecord>),
    /// Global 0x04: empty `items` with no error means every write succeeded.
    WriteAttributesResponse(Records<AttributeStatus>),
    /// Global 0x07: empty `items` with no error means every configuration succeeded.
    ConfigureReportingResponse(Records<AttributeStatus>),
    /// Global 0x0a.
    ReportAttributes(Records<AttributeReport>),
    /// Global 0x0b.
    DefaultResponse { command: u8, status: Status },
    /// IAS Zone (0x0500) cluster command 0x00, server to client.
    ZoneStatusChange(ZoneStatusChange),
    /// Manufacturer-specific frame: payload not interpreted.
    ManufacturerSpecific {
        code: u16,
        frame_type: FrameType,
        command: u8,
        payload: Vec<u8>,
    },
    /// A command this codec does not decode (Discover Attributes, cluster commands other than
    /// the ones above, …).
    Unsupported { frame_type: FrameType, command: u8 },
}

/// Decode a whole ZCL frame received on `cluster`.
///
/// Header errors fail the whole frame. Errors inside a record list (unknown data type, truncation)
/// stop that list: the records before it are kept and the error is in [`Records::stopped`].
pub fn decode_frame(cluster: u16, bytes: &[u8]) -> Result<ZclFrame, DecodeError> {
    let (header, payload) = ZclHeader::decode(bytes)?;
    let body = if let Some(code) = header.manufacturer {
        ZclBody::ManufacturerSpecific {
            code,
            frame_type: header.frame_type,
            command: header.command,
            payload: payload.to_vec(),
        }
    } else {
        match header.frame_type {
            FrameType::Global => global::decode_body(header.command, payload)?,
            FrameType::ClusterSpecific => {
                clusters::decode_body(cluster, header.direction, header.command, payload)?
            }
        }
    };
    Ok(ZclFrame { header, body })
}

/// Header + payload in one buffer.
pub fn encode_frame(header: &ZclHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    header.encode(&mut out);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn header_plain() {
        let (h, rest) = ZclHeader::decode(&[0x18, 0x2a, 0x0a, 0xaa]).unwrap();
        assert_eq!(h.frame_type, FrameType::Global);
        assert_eq!(h.direction, Direction::ServerToClient);
        assert!(h.disable_default_response);
        assert_eq!(h.manufacturer, None);
        assert_eq!((h.tsn, h.command), (0x2a, 0x0a));
        assert_eq!(rest, [0xaa]);
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, [0x18, 0x2a, 0x0a]);
    }

    #[test]
    fn header_manufacturer() {
        let (h, rest) = ZclHeader::decode(&[0x1c, 0x5f, 0x11, 0x07, 0x0a, 1, 2]).unwrap();
        assert_eq!(h.manufacturer, Some(0x115f));
        assert_eq!(rest, [1, 2]);
        let f = decode_frame(0x0000, &[0x1c, 0x5f, 0x11, 0x07, 0x0a, 1, 2]).unwrap();
        assert_eq!(
            f.body,
            ZclBody::ManufacturerSpecific {
                code: 0x115f,
                frame_type: FrameType::Global,
                command: 0x0a,
                payload: vec![1, 2]
            }
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            ZclHeader::decode(&[]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            ZclHeader::decode(&[0x02, 1, 1]),
            Err(DecodeError::ReservedFrameType(2))
        );
        assert_eq!(
            ZclHeader::decode(&[0x04, 0x5f]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        assert_eq!(
            ZclHeader::decode(&[0x00, 1]),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }

    #[test]
    fn unsupported_command() {
        let f = decode_frame(0x0006, &[0x18, 1, 0x0d, 0, 0]).unwrap();
        assert_eq!(
            f.body,
            ZclBody::Unsupported {
                frame_type: FrameType::Global,
                command: 0x0d
            }
        );
    }
}
