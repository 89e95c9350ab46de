//! Why a BACnet frame was refused. Every parser in this crate returns one of these — never a
//! panic — and [`DecodeError::cause`] gives the short stable label used for audit causes and
//! metrics.

use nom::error::{ErrorKind, ParseError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: the frame ends inside a field")]
    Truncated,
    #[error("BVLC type {0:#04x} is not BACnet/IP (0x81)")]
    NotBacnetIp(u8),
    #[error("BVLC length {declared} does not match the datagram's {actual} bytes")]
    BvlcLength { declared: usize, actual: usize },
    #[error("NPDU version {0:#04x} (expected 0x01)")]
    NpduVersion(u8),
    #[error("NPDU address: {0}")]
    NpduAddress(&'static str),
    #[error("APDU type {0} is not defined")]
    ApduType(u8),
    #[error("tag: {0}")]
    Tag(&'static str),
    #[error("a length of {0} bytes is more than the frame can hold")]
    Length(u64),
    #[error("tags nested deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} elements in one value")]
    TooMany(usize),
    #[error("unexpected {found} where {expected} belongs")]
    Unexpected {
        expected: &'static str,
        found: &'static str,
    },
    #[error("character set {0} is not supported")]
    Charset(u8),
    #[error("{0} bytes left over after the last field")]
    Trailing(usize),
    #[error("segmented response larger than {0} bytes")]
    SegmentsTooLarge(usize),
    #[error("BVLC-SC control flags {0:#04x} set reserved bits")]
    ScControl(u8),
    #[error("BVLC-SC function {0:#04x} is not defined")]
    ScFunction(u8),
    #[error("BVLC-SC header option {0:#04x} must be understood and is not")]
    ScOptionNotUnderstood(u8),
    #[error("parser: {0:?}")]
    Nom(ErrorKind),
}

impl DecodeError {
    /// The audit/metric label.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Truncated | Self::BvlcLength { .. } | Self::Length(_) | Self::Trailing(_) => {
                "bad-length"
            }
            Self::NotBacnetIp(_) | Self::NpduVersion(_) | Self::NpduAddress(_) => "malformed",
            Self::ApduType(_) | Self::Unexpected { .. } | Self::Nom(_) | Self::Charset(_) => {
                "malformed"
            }
            Self::ScControl(_) | Self::ScFunction(_) => "malformed",
            Self::ScOptionNotUnderstood(_) => "header-not-understood",
            Self::Tag(_) => "bad-tag",
            Self::TooDeep(_) | Self::TooMany(_) => "nesting",
            Self::SegmentsTooLarge(_) => "oversized-segments",
        }
    }
}

impl<I> ParseError<I> for DecodeError {
    fn from_error_kind(_: I, kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Eof | ErrorKind::Complete => Self::Truncated,
            k => Self::Nom(k),
        }
    }
    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// nom's result type with our error.
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, DecodeError>;

/// Fails the parse with `e` (no backtracking: a wire error is final).
pub fn fail<T>(e: DecodeError) -> Result<T, nom::Err<DecodeError>> {
    Err(nom::Err::Failure(e))
}

/// Runs a nom parser to completion and maps nom's wrapper to the typed error.
pub fn finish<T>(r: Result<T, nom::Err<DecodeError>>) -> Result<T, DecodeError> {
    r.map_err(|e| match e {
        nom::Err::Incomplete(_) => DecodeError::Truncated,
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
    })
}
