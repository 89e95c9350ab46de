//! Posture: whether a device's reported firmware is one its usage profile accepts.
//!
//! A profile (and so a model, through `[models]`) may declare `min_firmware` and
//! `vulnerable_firmware`. A device below the minimum or on the list is *restricted*: with
//! `firmware_action = "restrict"` (the default) its uplinks flow and every command to it is
//! denied (`builtin:posture`); with `"quarantine"` it is quarantined, and released again by the
//! gateway when a firmware update lifts the restriction (only a quarantine posture made).
//!
//! Firmware strings come from devices and are hostile. [`Version::parse`] reads the first word:
//! `1.2.3`, `v1.2`, `1.2.3-rc1`, `1.2.3+build`, `1.2.3 (20260101)` and dotted numbers of up to
//! [`MAX_PARTS`] parts; anything
//! else (empty, over [`MAX_LEN`] bytes, a part over `u32`, text where a number should be) is
//! *unparsable*. The rule for unparsable firmware: restricted when the profile declares a minimum
//! (it cannot be shown to meet it); with only a vulnerable list it is compared as exact text.
//! A device that reports no firmware at all is `unknown` and not restricted (adapters such as
//! Modbus have no way to report one).

use std::cmp::Ordering;

/// Longest firmware string read as a version.
pub const MAX_LEN: usize = 64;
/// Most numeric parts in a version.
pub const MAX_PARTS: usize = 8;
/// Most entries in a profile's `vulnerable_firmware`.
pub const MAX_VULNERABLE: usize = 1024;

/// A parsed firmware version: numeric parts (missing parts are 0) and an optional pre-release
/// tag, which orders before the release (`1.2.0-rc1 < 1.2.0`). Build metadata is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: [u32; MAX_PARTS],
    pre: Option<String>,
}

impl Version {
    /// `None` for anything not read as a version (see the module doc).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return None;
        }
        // the first word: `1.2.3 (20260101)` (a Zigbee date code after it) is 1.2.3
        let s = s.split_whitespace().next()?;
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (nums, pre) = match s.split_once('-') {
            Some((n, p)) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
                    return None;
                }
                (n, Some(p.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        let mut parts = [0u32; MAX_PARTS];
        for (n, p) in nums.split('.').enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let slot = parts.get_mut(n)?;
            *slot = p.parse().ok()?;
        }
        Some(Self { parts, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Self) -> Ordering {
        self.parts
            .cmp(&o.parts)
            .then_with(|| match (&self.pre, &o.pre) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// What a profile does with a restricted device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostureAction {
    /// Uplinks flow; commands are denied.
    #[default]
    Restrict,
    /// The device is quarantined.
    Quarantine,
}

/// A profile's firmware rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub min: Option<(String, Version)>,
    /// Each entry as written (trimmed) and parsed when it parses.
    pub vulnerable: Vec<(String, Option<Version>)>,
    pub action: PostureAction,
}

/// A device's posture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posture {
    /// Its profile declares no firmware rule.
    Unchecked,
    /// It reported no firmware.
    Unknown,
    Ok,
    BelowMinimum {
        firmware: String,
        min: String,
    },
    Vulnerable {
        firmware: String,
    },
    Unparsable {
        firmware: String,
        min: String,
    },
}

impl Posture {
    pub fn restricted(&self) -> bool {
        matches!(
            self,
            Self::BelowMinimum { .. } | Self::Vulnerable { .. } | Self::Unparsable { .. }
        )
    }

    /// The label in `devices list`, the metrics and the audit detail.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Unknown => "unknown",
            Self::Ok => "ok",
            Self::BelowMinimum { .. } => "below-minimum",
            Self::Vulnerable { .. } => "vulnerable",
            Self::Unparsable { .. } => "unparsable",
        }
    }

    /// A small code for the registry's per-device counters ([`label`] reads it back).
    pub fn code(&self) -> u8 {
        match self {
            Self::Unchecked => 1,
            Self::Unknown => 2,
            Self::Ok => 3,
            Self::BelowMinimum { .. } => 4,
            Self::Vulnerable { .. } => 5,
            Self::Unparsable { .. } => 6,
        }
    }

    /// The reason a person reads (firmware text is shown escaped and cut to [`MAX_LEN`]).
    pub fn reason(&self, profile: &str) -> String {
        let show = |s: &str| {
            s.chars()
                .take(MAX_LEN)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        match self {
            Self::Unchecked => format!("profile `{profile}` declares no firmware rule"),
            Self::Unknown => "the device reported no firmware".into(),
            Self::Ok => format!("firmware meets profile `{profile}`"),
            Self::BelowMinimum { firmware, min } => format!(
                "posture: firmware `{}` is below the minimum {min} of profile `{profile}`",
                show(firmware)
            ),
            Self::Vulnerable { firmware } => format!(
                "posture: firmware `{}` is a known-vulnerable version in profile `{profile}`",
                show(firmware)
            ),
            Self::Unparsable { firmware, min } => format!(
                "posture: firmware `{}` is not a version that can be shown to meet the minimum {min} of profile `{profile}`",
                show(firmware)
            ),
        }
    }
}

impl Rule {
    /// From a profile's config; an error names what is wrong (checked at config load).
    pub fn compile(
        min: Option<&str>,
        vulnerable: &[String],
        action: PostureAction,
    ) -> Result<Option<Self>, String> {
        if min.is_none() && vulnerable.is_empty() {
            return Ok(None);
        }
        if vulnerable.len() > MAX_VULNERABLE {
            return Err(format!(
                "vulnerable_firmware has more than {MAX_VULNERABLE} entries"
            ));
        }
        let min = match min {
            Some(m) => Some((
                m.trim().to_owned(),
                Version::parse(m).ok_or_else(|| format!("min_firmware `{m}` is not a version"))?,
            )),
            None => None,
        };
        let vulnerable = vulnerable
            .iter()
            .map(|v| {
                if v.trim().is_empty() || v.len() > MAX_LEN {
                    Err(format!(
                        "vulnerable_firmware entry `{v}` is empty or longer than {MAX_LEN} bytes"
                    ))
                } else {
                    Ok((v.trim().to_owned(), Version::parse(v)))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            min,
            vulnerable,
            action,
        }))
    }

    /// The posture of a device reporting `firmware`.
    pub fn assess(&self, firmware: Option<&str>) -> Posture {
        let Some(fw) = firmware else {
            return Posture::Unknown;
        };
        let parsed = Version::parse(fw);
        let text = fw.trim();
        let listed = self.vulnerable.iter().any(|(s, v)| match (v, &parsed) {
            (Some(v), Some(p)) => v == p,
            _ => s.eq_ignore_ascii_case(text),
        });
        if listed {
            return Posture::Vulnerable {
                firmware: fw.to_owned(),
            };
        }
        match (&self.min, parsed) {
            (Some((m, mv)), Some(p)) if p < *mv => Posture::BelowMinimum {
                firmware: fw.to_owned(),
                min: m.clone(),
            },
            (Some((m, _)), None) => Posture::Unparsable {
                firmware: fw.to_owned(),
                min: m.clone(),
            },
            _ => Posture::Ok,
        }
    }
}

/// The label of a [`Posture::code`] (`unchecked` for 0, never evaluated).
pub fn label(code: u8) -> &'static str {
    match code {
        2 => "unknown",
        3 => "ok",
        4 => "below-minimum",
        5 => "vulnerable",
        6 => "unparsable",
        _ => "unchecked",
    }
}

/// The posture of a device under an optional rule.
pub fn assess(rule: Option<&Rule>, firmware: Option<&str>) -> Posture {
    rule.map_or(Posture::Unchecked, |r| r.assess(firmware))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_order_numerically_with_pre_releases_first() {
        assert!(v("1.10.0") > v("1.9.9"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("v1.2.0"), v("1.2.0+build.7"));
        assert!(v("1.2.0-rc1") < v("1.2.0"));
        assert!(v("1.2.0-rc1") < v("1.2.0-rc2"));
        assert!(v("2") > v("1.99.99.99"));
        assert!(v("1.0.0.0.0.0.0.1") > v("1"));
        assert_eq!(v("1.2.3 (20260101)"), v("1.2.3"));
    }

    #[test]
    fn hostile_strings_are_unparsable_never_a_panic() {
        for s in [
            "",
            "   ",
            "v",
            "1..2",
            ".1",
            "1.",
            "1.2.x",
            "abc",
            "1.2.3-",
            "1.2.3-r_c1",
            "Z-Stack 2.7.1",
            "99999999999.0",
            "1.2.3.4.5.6.7.8.9",
            "١.٢",
            "1.2\u{0}",
            "-1.2",
            "+",
            &"9".repeat(65),
            &"1.".repeat(40),
        ] {
            assert_eq!(Version::parse(s), None, "{s:?}");
        }
        // and assessing them never panics, and is restricted where a minimum exists
        let r = Rule::compile(Some("1.2.0"), &[], PostureAction::Restrict)
            .unwrap()
            .unwrap();
        assert_eq!(r.assess(Some("1.2.x")).as_str(), "unparsable");
        assert!(r.assess(Some(&"\u{202e}".repeat(1000))).restricted());
        let reason = r.assess(Some("evil\n`x")).reason("p");
        assert!(!reason.contains('\n'), "{reason}");
    }

    #[test]
    fn the_posture_of_each_case() {
        let r = Rule::compile(
            Some("1.2.0"),
            &["1.3.1".into(), "1.4-beta".into(), "Z-Stack weird".into()],
            PostureAction::Restrict,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.assess(None), Posture::Unknown);
        assert_eq!(r.assess(Some("1.2.0")), Posture::Ok);
        assert_eq!(r.assess(Some("1.5")), Posture::Ok);
        assert_eq!(r.assess(Some("1.1.9")).as_str(), "below-minimum");
        assert_eq!(r.assess(Some("1.2.0-rc1")).as_str(), "below-minimum");
        assert_eq!(r.assess(Some("v1.3.1.0")).as_str(), "vulnerable");
        assert_eq!(r.assess(Some("1.4.0-BETA")).as_str(), "vulnerable");
        assert_eq!(r.assess(Some(" z-stack WEIRD ")).as_str(), "vulnerable");
        assert_eq!(r.assess(Some("1.x")).as_str(), "unparsable");
        // only a list: unparsable firmware is compared as text and otherwise allowed
        let l = Rule::compile(None, &["1.0.0".into()], PostureAction::Quarantine)
            .unwrap()
            .unwrap();
        assert_eq!(l.assess(Some("build 7")), Posture::Ok);
        assert_eq!(l.assess(Some("1.0")).as_str(), "vulnerable");
        assert_eq!(assess(None, Some("0.0.1")), Posture::Unchecked);
        assert_eq!(
            r.assess(Some("1.3.1")).reason("thermostat"),
            "posture: firmware `1.3.1` is a known-vulnerable version in profile `thermostat`"
        );
    }

    #[test]
    fn bad_rules_are_config_errors() {
        assert!(Rule::compile(Some("latest"), &[], PostureAction::Restrict).is_err());
        assert!(Rule::compile(None, &[" ".into()], PostureAction::Restrict).is_err());
        let many = vec!["1".to_string(); MAX_VULNERABLE + 1];
        assert!(Rule::compile(None, &many, PostureAction::Restrict).is_err());
        assert!(
            Rule::compile(None, &[], PostureAction::Restrict)
                .unwrap()
                .is_none()
        );
    }
}
