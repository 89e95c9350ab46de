//! Typed errors for the ZCL codec: what went wrong decoding bytes from a device, or encoding a value
//! or command for one. Nothing here carries payload bytes, so errors are safe to log.

use thiserror::Error;

/// Why bytes from the radio could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("truncated: {needed} more byte(s) needed")]
    Truncated { needed: usize },
    /// Frame-control bits 0-1 carry a reserved frame type (2 or 3).
    #[error("reserved ZCL frame type {0}")]
    ReservedFrameType(u8),
    /// A data-type id this codec does not know: its length cannot be known, so parsing stops.
    #[error("unknown ZCL data type 0x{0:02x}")]
    UnknownType(u8),
    /// Arrays/structures nested deeper than the bound.
    #[error("composite values nested deeper than {0}")]
    TooDeep(usize),
    /// More records or composite elements than the bound.
    #[error("more than {0} records or elements")]
    TooMany(usize),
    /// Bytes left over where the command has no more fields.
    #[error("{0} trailing byte(s)")]
    Trailing(usize),
}

impl DecodeError {
    /// A short, stable label (for metrics).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::ReservedFrameType(_) => "reserved-frame-type",
            Self::UnknownType(_) => "unknown-type",
            Self::TooDeep(_) => "too-deep",
            Self::TooMany(_) => "too-many",
            Self::Trailing(_) => "trailing",
        }
    }
}

/// Why a value or command could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The value's variant cannot be carried by the named data type.
    #[error("value does not match data type 0x{0:02x}")]
    TypeMismatch(u8),
    /// The number does not fit the data type's width.
    #[error("value out of range for data type 0x{0:02x}")]
    OutOfRange(u8),
    /// A string longer than its length prefix allows.
    #[error("string of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// Configure Reporting for an analog type needs a reportable change.
    #[error("analog attribute 0x{0:04x} needs a reportable change")]
    MissingReportableChange(u16),
    /// More records than one frame may carry.
    #[error("more than {0} records")]
    TooMany(usize),
}
