//! Zigbee Cluster Library (ZCL) codec and normalisation for the Zigbee adapter. Pure: no I/O.
//!
//! - [`frame`]: the ZCL header and the top-level [`decode_frame`].
//! - [`types`]: attribute data types and [`ZclValue`].
//! - [`global`]: Read/Write Attributes, Configure Reporting, Report Attributes, Default Response.
//! - [`clusters`]: cluster ids, the cluster commands Warden sends, IAS Zone notifications.
//! - [`normalise`]: (cluster, attribute, value) → named readings with units, and back.
//! - [`commands`]: operator commands by name → ZCL requests.
//!
//! Uplink: `decode_frame` → for each attribute record `DeviceContext::observe`, then
//! `normalise` (or `identity` for the Basic cluster). Downlink: `command` → `ZclRequest::frame`.

pub mod clusters;
pub mod commands;
pub mod error;
pub mod frame;
pub mod global;
pub mod normalise;
pub mod types;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod zigpy_vectors;

pub use clusters::{ClusterCommand, ZoneStatus, ZoneStatusChange};
pub use commands::{
    Arg, CommandError, ZclRequest, command, command_with, read_points, write_point,
};
pub use error::{DecodeError, EncodeError};
pub use frame::{Direction, FrameType, ZclBody, ZclFrame, ZclHeader, decode_frame, encode_frame};
pub use global::{
    AttributeReport, AttributeStatus, ReadAttributeRecord, Records, ReportingConfig, Status,
};
pub use normalise::{
    DeviceContext, IdentityField, Override, PointDef, PointValue, Reading, Scale, identity,
    normalise, point,
};
pub use types::{DataType, ZclValue};
