//! Cluster ids and cluster-specific commands: the ones Warden sends (On/Off, Level Control, Color
//! Control; client to server) and the one it decodes (IAS Zone Status Change Notification; server to
//! client).

use crate::zcl::error::DecodeError;
use crate::zcl::frame::{Direction, FrameType, ZclBody, ZclHeader, encode_frame};
use crate::zcl::types::{Reader, put_u16};

/// Cluster ids used by this module (ZCL spec, chapter per cluster).
pub mod id {
    pub const BASIC: u16 = 0x0000;
    pub const POWER_CONFIGURATION: u16 = 0x0001;
    pub const ON_OFF: u16 = 0x0006;
    pub const LEVEL_CONTROL: u16 = 0x0008;
    pub const THERMOSTAT: u16 = 0x0201;
    pub const COLOR_CONTROL: u16 = 0x0300;
    pub const ILLUMINANCE_MEASUREMENT: u16 = 0x0400;
    pub const TEMPERATURE_MEASUREMENT: u16 = 0x0402;
    pub const PRESSURE_MEASUREMENT: u16 = 0x0403;
    pub const RELATIVE_HUMIDITY: u16 = 0x0405;
    pub const OCCUPANCY_SENSING: u16 = 0x0406;
    pub const IAS_ZONE: u16 = 0x0500;
    pub const METERING: u16 = 0x0702;
    pub const ELECTRICAL_MEASUREMENT: u16 = 0x0b04;
}

/// A cluster-specific command from the gateway to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCommand {
    /// On/Off 0x00.
    Off,
    /// On/Off 0x01.
    On,
    /// On/Off 0x02.
    Toggle,
    /// Level Control 0x00 (`with_on_off` false) or 0x04 (true). Level 0-254, transition in
    /// tenths of a second.
    MoveToLevel {
        level: u8,
        transition: u16,
        with_on_off: bool,
    },
    /// Color Control 0x06: hue and saturation 0-254.
    MoveToHueSaturation {
        hue: u8,
        saturation: u8,
        transition: u16,
    },
    /// Color Control 0x07: CIE x and y as value/65536.
    MoveToColorXy { x: u16, y: u16, transition: u16 },
    /// Color Control 0x0a: mireds.
    MoveToColorTemp { mireds: u16, transition: u16 },
}

impl ClusterCommand {
    /// The cluster the command belongs to.
    pub fn cluster(&self) -> u16 {
        match self {
            Self::Off | Self::On | Self::Toggle => id::ON_OFF,
            Self::MoveToLevel { .. } => id::LEVEL_CONTROL,
            Self::MoveToHueSaturation { .. }
            | Self::MoveToColorXy { .. }
            | Self::MoveToColorTemp { .. } => id::COLOR_CONTROL,
        }
    }

    /// The command id within its cluster.
    pub fn command_id(&self) -> u8 {
        match self {
            Self::Off => 0x00,
            Self::On => 0x01,
            Self::Toggle => 0x02,
            Self::MoveToLevel {
                with_on_off: false, ..
            } => 0x00,
            Self::MoveToLevel {
                with_on_off: true, ..
            } => 0x04,
            Self::MoveToHueSaturation { .. } => 0x06,
            Self::MoveToColorXy { .. } => 0x07,
            Self::MoveToColorTemp { .. } => 0x0a,
        }
    }

    /// The payload after the ZCL header (optional trailing "options" fields are not sent).
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6);
        match *self {
            Self::Off | Self::On | Self::Toggle => {}
            Self::MoveToLevel {
                level, transition, ..
            } => {
                out.push(level);
                put_u16(&mut out, transition);
            }
            Self::MoveToHueSaturation {
                hue,
                saturation,
                transition,
            } => {
                out.push(hue);
                out.push(saturation);
                put_u16(&mut out, transition);
            }
            Self::MoveToColorXy { x, y, transition } => {
                put_u16(&mut out, x);
                put_u16(&mut out, y);
                put_u16(&mut out, transition);
            }
            Self::MoveToColorTemp { mireds, transition } => {
                put_u16(&mut out, mireds);
                put_u16(&mut out, transition);
            }
        }
        out
    }

    /// The whole ZCL frame (header + payload), client to server.
    pub fn frame(&self, tsn: u8, disable_default_response: bool) -> Vec<u8> {
        let header = ZclHeader {
            disable_default_response,
            ..ZclHeader::cluster(tsn, self.command_id())
        };
        encode_frame(&header, &self.payload())
    }
}

/// IAS Zone status bits (attribute 0x0002 and the status change notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneStatus(pub u16);

impl ZoneStatus {
    pub fn alarm1(self) -> bool {
        self.0 & 0x0001 != 0
    }
    pub fn alarm2(self) -> bool {
        self.0 & 0x0002 != 0
    }
    pub fn tamper(self) -> bool {
        self.0 & 0x0004 != 0
    }
    pub fn battery_low(self) -> bool {
        self.0 & 0x0008 != 0
    }
    pub fn supervision_reports(self) -> bool {
        self.0 & 0x0010 != 0
    }
    pub fn restore_reports(self) -> bool {
        self.0 & 0x0020 != 0
    }
    pub fn trouble(self) -> bool {
        self.0 & 0x0040 != 0
    }
    pub fn ac_mains_fault(self) -> bool {
        self.0 & 0x0080 != 0
    }
    pub fn test(self) -> bool {
        self.0 & 0x0100 != 0
    }
    pub fn battery_defect(self) -> bool {
        self.0 & 0x0200 != 0
    }
}

/// IAS Zone command 0x00 (server to client). Older devices stop after the zone status or the
/// extended status, so the later fields are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneStatusChange {
    pub zone_status: ZoneStatus,
    pub extended_status: Option<u8>,
    pub zone_id: Option<u8>,
    /// Quarter-seconds between the change and this notification.
    pub delay: Option<u16>,
}

impl ZoneStatusChange {
    /// Decode the payload after the header.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let zone_status = ZoneStatus(r.u16()?);
        let extended_status = r.u8().ok();
        let zone_id = r.u8().ok();
        let delay = if r.remaining() >= 2 {
            Some(r.u16()?)
        } else {
            None
        };
        if !r.is_empty() {
            return Err(DecodeError::Trailing(r.remaining()));
        }
        Ok(Self {
            zone_status,
            extended_status,
            zone_id,
            delay,
        })
    }
}

/// Decode the payload of a cluster-specific command.
pub(crate) fn decode_body(
    cluster: u16,
    direction: Direction,
    command: u8,
    payload: &[u8],
) -> Result<ZclBody, DecodeError> {
    match (cluster, direction, command) {
        (id::IAS_ZONE, Direction::ServerToClient, 0x00) => Ok(ZclBody::ZoneStatusChange(
            ZoneStatusChange::decode(payload)?,
        )),
        _ => Ok(ZclBody::Unsupported {
            frame_type: FrameType::ClusterSpecific,
            command,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::zcl::frame::decode_frame;

    #[test]
    fn on_off_frames() {
        assert_eq!(ClusterCommand::On.frame(5, false), [0x01, 5, 0x01]);
        assert_eq!(ClusterCommand::Off.frame(6, true), [0x11, 6, 0x00]);
        assert_eq!(ClusterCommand::Toggle.cluster(), id::ON_OFF);
    }

    #[test]
    fn level_payload() {
        let c = ClusterCommand::MoveToLevel {
            level: 127,
            transition: 10,
            with_on_off: true,
        };
        assert_eq!(c.command_id(), 4);
        assert_eq!(c.payload(), [127, 10, 0]);
    }

    #[test]
    fn color_payloads() {
        assert_eq!(
            ClusterCommand::MoveToColorTemp {
                mireds: 370,
                transition: 0
            }
            .payload(),
            [0x72, 0x01, 0, 0]
        );
        assert_eq!(
            ClusterCommand::MoveToColorXy {
                x: 0x1234,
                y: 0x5678,
                transition: 1
            }
            .payload(),
            [0x34, 0x12, 0x78, 0x56, 1, 0]
        );
    }

    #[test]
    fn zone_status_change() {
        let f = decode_frame(
            0x0500,
            &[0x19, 0x10, 0x00, 0x25, 0x00, 0x00, 0x01, 0x00, 0x00],
        )
        .unwrap();
        match f.body {
            ZclBody::ZoneStatusChange(z) => {
                assert!(z.zone_status.alarm1());
                assert!(z.zone_status.tamper());
                assert!(!z.zone_status.battery_low());
                assert!(z.zone_status.restore_reports());
                assert_eq!(z.zone_id, Some(1));
                assert_eq!(z.delay, Some(0));
            }
            other => panic!("{other:?}"),
        }
        let z = ZoneStatusChange::decode(&[0x08, 0x00]).unwrap();
        assert!(z.zone_status.battery_low());
        assert_eq!(z.extended_status, None);
        assert_eq!(
            ZoneStatusChange::decode(&[0x08]),
            Err(DecodeError::Truncated { needed: 1 })
        );
        // the same command id client to server is not a notification
        let f = decode_frame(0x0500, &[0x01, 0x10, 0x00, 0x25, 0x00]).unwrap();
        assert!(matches!(f.body, ZclBody::Unsupported { .. }));
    }
}
