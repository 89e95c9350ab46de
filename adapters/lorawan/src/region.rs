//! Regional parameters the network server needs for class A downlinks: the RX1 frequency and data
//! rate for a given uplink, and the RX2 defaults (LoRaWAN Regional Parameters RP002, EU868 and US915).

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Region {
    #[serde(rename = "EU868")]
    Eu868,
    #[serde(rename = "US915")]
    Us915,
}

/// Where and how to transmit one downlink.
#[derive(Debug, Clone, PartialEq)]
pub struct TxParams {
    pub freq_mhz: f64,
    pub datr: String,
    pub power_dbm: u32,
}

fn lora_datr(sf: u8, bw: u32) -> String {
    format!("SF{sf}BW{bw}")
}

impl Region {
    /// Uplink data-rate index of a LoRa (SF, BW kHz) pair.
    pub fn uplink_dr(self, sf: u8, bw: u32) -> Option<u8> {
        match (self, bw) {
            (Self::Eu868, 125) if (7..=12).contains(&sf) => Some(12 - sf),
            (Self::Eu868, 250) if sf == 7 => Some(6),
            (Self::Us915, 125) if (7..=10).contains(&sf) => Some(10 - sf),
            (Self::Us915, 500) if sf == 8 => Some(4),
            _ => None,
        }
    }

    /// (SF, BW) of a downlink data-rate index.
    pub fn dr_params(self, dr: u8) -> Option<(u8, u32)> {
        match self {
            Self::Eu868 => match dr {
                0..=5 => Some((12 - dr, 125)),
                6 => Some((7, 250)),
                _ => None,
            },
            Self::Us915 => match dr {
                8..=13 => Some((20 - dr, 500)),
                _ => None,
            },
        }
    }

    pub fn default_power(self) -> u32 {
        match self {
            Self::Eu868 => 14,
            Self::Us915 => 20,
        }
    }

    /// RX2 defaults: (frequency MHz, data rate).
    pub fn rx2_default(self) -> (f64, u8) {
        match self {
            Self::Eu868 => (869.525, 0),
            Self::Us915 => (923.3, 8),
        }
    }

    /// RX1 data rate for an uplink data rate and the session's RX1DROffset.
    pub fn rx1_dr(self, up_dr: u8, offset: u8) -> u8 {
        match self {
            Self::Eu868 => up_dr.saturating_sub(offset).min(7),
            Self::Us915 => {
                let base: u8 = if up_dr >= 4 { 13 } else { 10 + up_dr };
                base.saturating_sub(offset).clamp(8, 13)
            }
        }
    }

    /// RX1 frequency for an uplink frequency.
    pub fn rx1_freq(self, up_freq_mhz: f64) -> f64 {
        match self {
            Self::Eu868 => up_freq_mhz,
            Self::Us915 => {
                // 125 kHz uplink channels 0..63 at 902.3 + 0.2 n; 500 kHz 64..71 at 903.0 + 1.6 (n-64)
                let khz = (up_freq_mhz * 1000.0).round() as i64;
                let ch = if (khz - 902_300) % 200 == 0 && (902_300..=914_900).contains(&khz) {
                    (khz - 902_300) / 200
                } else {
                    64 + (khz - 903_000).max(0) / 1600
                };
                let dn = ch.rem_euclid(8) as f64;
                ((923.3 + 0.6 * dn) * 10.0).round() / 10.0
            }
        }
    }

    /// RX1 transmit parameters, or `None` if the uplink's data rate is not one of this region's.
    pub fn rx1(self, up_freq_mhz: f64, sf: u8, bw: u32, offset: u8) -> Option<TxParams> {
        let up = self.uplink_dr(sf, bw)?;
        let (sf, bw) = self.dr_params(self.rx1_dr(up, offset))?;
        Some(TxParams {
            freq_mhz: self.rx1_freq(up_freq_mhz),
            datr: lora_datr(sf, bw),
            power_dbm: self.default_power(),
        })
    }

    /// RX2 transmit parameters (with optional overrides of frequency and data rate).
    pub fn rx2(self, freq: Option<f64>, dr: Option<u8>) -> Option<TxParams> {
        let (f, d) = self.rx2_default();
        let (sf, bw) = self.dr_params(dr.unwrap_or(d))?;
        Some(TxParams {
            freq_mhz: freq.unwrap_or(f),
            datr: lora_datr(sf, bw),
            power_dbm: self.default_power(),
        })
    }
}

/// The demodulation floor (dB) of a spreading factor, for LinkCheckAns margins.
pub fn required_snr(sf: u8) -> f64 {
    -5.0 - 2.5 * f64::from(sf.saturating_sub(6))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn eu868_rx1_and_rx2() {
        let r = Region::Eu868.rx1(868.3, 7, 125, 0).unwrap();
        assert_eq!((r.freq_mhz, r.datr.as_str()), (868.3, "SF7BW125"));
        let r = Region::Eu868.rx1(868.1, 9, 125, 2).unwrap();
        assert_eq!(r.datr, "SF11BW125");
        let r = Region::Eu868.rx2(None, None).unwrap();
        assert_eq!((r.freq_mhz, r.datr.as_str()), (869.525, "SF12BW125"));
    }

    #[test]
    fn us915_rx1_and_rx2() {
        // uplink channel 9 (904.1 MHz) SF10 → downlink channel 1 (923.9 MHz) DR10 (SF10BW500)
        let r = Region::Us915.rx1(904.1, 10, 125, 0).unwrap();
        assert_eq!((r.freq_mhz, r.datr.as_str()), (923.9, "SF10BW500"));
        let r = Region::Us915.rx1(903.0, 8, 500, 0).unwrap();
        assert_eq!((r.freq_mhz, r.datr.as_str()), (923.3, "SF7BW500"));
        let r = Region::Us915.rx2(None, None).unwrap();
        assert_eq!((r.freq_mhz, r.datr.as_str()), (923.3, "SF12BW500"));
        assert!(Region::Us915.rx1(902.3, 12, 125, 0).is_none());
    }
}
