//! Semtech UDP packet-forwarder protocol, version 2 (GWMP): the datagrams a packet forwarder and a
//! network server exchange. Parsing never panics; JSON bodies are typed with serde.
//!
//! ```text
//! PUSH_DATA  fwd → ns   ver token 0x00 EUI(8) JSON{rxpk[], stat}   answered by PUSH_ACK ver token 0x01
//! PULL_DATA  fwd → ns   ver token 0x02 EUI(8)                       answered by PULL_ACK ver token 0x04
//! PULL_RESP  ns → fwd   ver token 0x03 JSON{txpk}                   answered by TX_ACK   ver token 0x05 EUI(8) [JSON{txpk_ack}]
//! ```

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub const VERSION: u8 = 2;
pub const PUSH_DATA: u8 = 0x00;
pub const PUSH_ACK: u8 = 0x01;
pub const PULL_DATA: u8 = 0x02;
pub const PULL_RESP: u8 = 0x03;
pub const PULL_ACK: u8 = 0x04;
pub const TX_ACK: u8 = 0x05;

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GwmpError {
    #[error("datagram too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unknown packet identifier {0:#04x}")]
    Identifier(u8),
    #[error("invalid JSON body: {0}")]
    Json(String),
    #[error("invalid base64 in rxpk.data")]
    Base64,
}

/// One received radio packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxPk {
    /// Concentrator counter (µs) at the end of the preamble: the reference for RX1/RX2 timing.
    pub tmst: u32,
    #[serde(default)]
    pub freq: f64,
    #[serde(default)]
    pub chan: u32,
    #[serde(default)]
    pub rfch: u32,
    /// CRC status: 1 OK, -1 bad, 0 none.
    #[serde(default = "one")]
    pub stat: i32,
    #[serde(default)]
    pub modu: String,
    /// `SF7BW125` for LoRa.
    #[serde(default)]
    pub datr: serde_json::Value,
    #[serde(default)]
    pub codr: Option<String>,
    #[serde(default)]
    pub rssi: f64,
    #[serde(default)]
    pub lsnr: Option<f64>,
    #[serde(default)]
    pub size: u32,
    pub data: String,
}

fn one() -> i32 {
    1
}

impl RxPk {
    pub fn payload(&self) -> Result<Vec<u8>, GwmpError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.data.trim())
            .map_err(|_| GwmpError::Base64)
    }
    /// The LoRa spreading factor and bandwidth (kHz) of `datr`, if it is a LoRa data rate.
    pub fn sf_bw(&self) -> Option<(u8, u32)> {
        let s = self.datr.as_str()?;
        let rest = s.strip_prefix("SF")?;
        let (sf, bw) = rest.split_once("BW")?;
        Some((sf.parse().ok()?, bw.parse().ok()?))
    }
}

/// The `stat` object of PUSH_DATA (forwarder statistics), kept loosely typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Stat {
    #[serde(default)]
    pub rxnb: Option<u64>,
    #[serde(default)]
    pub rxok: Option<u64>,
    #[serde(default)]
    pub rxfw: Option<u64>,
    #[serde(default)]
    pub dwnb: Option<u64>,
    #[serde(default)]
    pub txnb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PushBody {
    #[serde(default)]
    pub rxpk: Vec<RxPk>,
    #[serde(default)]
    pub stat: Option<Stat>,
}

/// A packet to transmit (the `txpk` of PULL_RESP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPk {
    pub imme: bool,
    pub tmst: u32,
    pub freq: f64,
    pub rfch: u32,
    pub powe: u32,
    pub modu: String,
    pub datr: String,
    pub codr: String,
    pub ipol: bool,
    pub size: u32,
    pub ncrc: bool,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PullRespBody {
    txpk: TxPk,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TxAckBody {
    #[serde(default)]
    pub txpk_ack: Option<TxPkAck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TxPkAck {
    #[serde(default)]
    pub error: Option<String>,
}

/// A datagram from a packet forwarder.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    PushData {
        token: u16,
        eui: u64,
        body: PushBody,
    },
    PullData {
        token: u16,
        eui: u64,
    },
    /// `error` is `None` or `Some("NONE")` on success, else a code like `TOO_LATE`, `COLLISION_PACKET`.
    TxAck {
        token: u16,
        eui: u64,
        error: Option<String>,
    },
}

impl Upstream {
    pub fn eui(&self) -> u64 {
        match self {
            Self::PushData { eui, .. } | Self::PullData { eui, .. } | Self::TxAck { eui, .. } => {
                *eui
            }
        }
    }
}

/// The header fields of any datagram, when present: for telling which forwarder sent garbage.
pub fn peek_eui(b: &[u8]) -> Option<u64> {
    let e = b.get(4..12)?;
    Some(e.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
}

/// Parses a datagram a forwarder sent.
pub fn parse_upstream(b: &[u8]) -> Result<Upstream, GwmpError> {
    let hdr = b.get(..12).ok_or(GwmpError::TooShort(b.len()))?;
    let (&ver, rest) = hdr.split_first().ok_or(GwmpError::TooShort(b.len()))?;
    if ver != 1 && ver != VERSION {
        return Err(GwmpError::Version(ver));
    }
    let token = rest
        .get(..2)
        .map(|t| t.iter().fold(0u16, |a, x| (a << 8) | u16::from(*x)))
        .ok_or(GwmpError::TooShort(b.len()))?;
    let id = *rest.get(2).ok_or(GwmpError::TooShort(b.len()))?;
    let eui = peek_eui(b).ok_or(GwmpError::TooShort(b.len()))?;
    let json = b.get(12..).unwrap_or(&[]);
    match id {
        PUSH_DATA => {
            let body: PushBody =
                serde_json::from_slice(json).map_err(|e| GwmpError::Json(e.to_string()))?;
            Ok(Upstream::PushData { token, eui, body })
        }
        PULL_DATA => Ok(Upstream::PullData { token, eui }),
        TX_ACK => {
            let trimmed: &[u8] = {
                // some forwarders send a trailing NUL or nothing at all
                let end = json.iter().rposition(|c| *c != 0).map_or(0, |p| p + 1);
                json.get(..end).unwrap_or(&[])
            };
            let error = if trimmed.iter().all(|c| c.is_ascii_whitespace()) {
                None
            } else {
                let body: TxAckBody =
                    serde_json::from_slice(trimmed).map_err(|e| GwmpError::Json(e.to_string()))?;
                body.txpk_ack.and_then(|a| a.error)
            };
            Ok(Upstream::TxAck { token, eui, error })
        }
        other => Err(GwmpError::Identifier(other)),
    }
}

/// PUSH_ACK or PULL_ACK.
pub fn ack(token: u16, id: u8) -> [u8; 4] {
    let t = token.to_be_bytes();
    [VERSION, t[0], t[1], id]
}

/// A PULL_RESP carrying `txpk`.
pub fn pull_resp(token: u16, txpk: &TxPk) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![VERSION, t[0], t[1], PULL_RESP];
    // serialising plain structs of numbers and strings cannot fail
    if let Ok(j) = serde_json::to_vec(&PullRespBody { txpk: txpk.clone() }) {
        out.extend(j);
    }
    out
}

/// Base64 for txpk.data.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Builds a PUSH_DATA datagram (used by tests, the benchmark and fuzzing round trips).
pub fn push_data(token: u16, eui: u64, body: &PushBody) -> Vec<u8> {
    let t = token.to_be_bytes();
    let mut out = vec![VERSION, t[0], t[1], PUSH_DATA];
    out.extend_from_slice(&eui.to_be_bytes());
    if let Ok(j) = serde_json::to_vec(body) {
        out.extend(j);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn push_data_round_trip() {
        let body = PushBody {
            rxpk: vec![RxPk {
                tmst: 5,
                freq: 868.1,
                chan: 0,
                rfch: 0,
                stat: 1,
                modu: "LORA".into(),
                datr: "SF7BW125".into(),
                codr: Some("4/5".into()),
                rssi: -57.0,
                lsnr: Some(9.5),
                size: 3,
                data: b64(&[1, 2, 3]),
            }],
            stat: None,
        };
        let d = push_data(0xabcd, 0xaa555a0000000001, &body);
        let Upstream::PushData {
            token,
            eui,
            body: b,
        } = parse_upstream(&d).unwrap()
        else {
            panic!()
        };
        assert_eq!((token, eui), (0xabcd, 0xaa555a0000000001));
        assert_eq!(b, body);
        assert_eq!(b.rxpk[0].payload().unwrap(), vec![1, 2, 3]);
        assert_eq!(b.rxpk[0].sf_bw(), Some((7, 125)));
    }

    #[test]
    fn tx_ack_variants() {
        let mut d = vec![2, 0, 7, TX_ACK, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            parse_upstream(&d).unwrap(),
            Upstream::TxAck {
                token: 7,
                eui: 0x0102030405060708,
                error: None
            }
        );
        d.extend_from_slice(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#);
        assert!(
            matches!(parse_upstream(&d).unwrap(), Upstream::TxAck { error: Some(e), .. } if e == "TOO_LATE")
        );
        assert!(parse_upstream(&d[..5]).is_err());
        d[0] = 9;
        assert_eq!(parse_upstream(&d), Err(GwmpError::Version(9)));
    }
}
