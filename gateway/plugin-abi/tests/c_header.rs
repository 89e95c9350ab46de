//! The C header (`plugins/sdk-c/warden_policy.h`) states the same layout as this crate: every
//! number and name it defines is checked here, and every constant here appears there.

use std::collections::HashMap;

use warden_plugin_abi::*;

fn header() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/sdk-c/warden_policy.h"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `#define NAME VALUE` lines with a numeric value.
fn defines(h: &str) -> HashMap<String, u64> {
    h.lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.trim_end_matches('u');
            let v = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                None => value.parse().ok()?,
            };
            Some((name.to_owned(), v))
        })
        .collect()
}

#[test]
fn the_c_header_states_the_same_layout() {
    let h = header();
    let d = defines(&h);
    let expect: &[(&str, u64)] = &[
        ("WARDEN_AREA_BYTES", AREA_BYTES as u64),
        ("WARDEN_HEADER_BYTES", HEADER_BYTES as u64),
        ("WARDEN_AREA_POINTS", AREA_POINTS as u64),
        ("WARDEN_POINT_BYTES", POINT_BYTES as u64),
        ("WARDEN_AREA_VERSION", u64::from(AREA_VERSION)),
        ("WARDEN_OFF_VERSION", off::VERSION as u64),
        ("WARDEN_OFF_DIRECTION", off::DIRECTION as u64),
        ("WARDEN_OFF_KIND", off::KIND as u64),
        ("WARDEN_OFF_ASSURANCE", off::ASSURANCE as u64),
        ("WARDEN_OFF_FRESH", off::FRESH as u64),
        ("WARDEN_OFF_STATUS", off::STATUS as u64),
        ("WARDEN_OFF_HAS_ROLE", off::HAS_ROLE as u64),
        ("WARDEN_OFF_HAS_PRINCIPAL", off::HAS_PRINCIPAL as u64),
        ("WARDEN_OFF_HAS_ANOMALY", off::HAS_ANOMALY as u64),
        ("WARDEN_OFF_POINT_COUNT", off::POINT_COUNT as u64),
        ("WARDEN_OFF_TIME_MS", off::TIME_MS as u64),
        ("WARDEN_OFF_PROTOCOL", off::PROTOCOL as u64),
        ("WARDEN_OFF_ZONE", off::ZONE as u64),
        ("WARDEN_OFF_ROLE", off::ROLE as u64),
        ("WARDEN_OFF_NAME", off::NAME as u64),
        ("WARDEN_OFF_PRINCIPAL", off::PRINCIPAL as u64),
        ("WARDEN_OFF_ANOMALY_SCORE", off::ANOMALY_SCORE as u64),
        ("WARDEN_OFF_RATE_PER_MIN", off::RATE_PER_MIN as u64),
        ("WARDEN_OFF_MESSAGES", off::MESSAGES as u64),
        ("WARDEN_OFF_BYTES", off::BYTES as u64),
        ("WARDEN_OFF_DENIED", off::DENIED as u64),
        ("WARDEN_OFF_LAST_SEEN_MS", off::LAST_SEEN_MS as u64),
        ("WARDEN_OFF_SECURITY", off::SECURITY as u64),
        ("WARDEN_OFF_ANOMALY_FEATURE", off::ANOMALY_FEATURE as u64),
        ("WARDEN_OFF_HAS_SECURITY", off::HAS_SECURITY as u64),
        (
            "WARDEN_OFF_HAS_ANOMALY_FEATURE",
            off::HAS_ANOMALY_FEATURE as u64,
        ),
        ("WARDEN_POINT_NAME", point::NAME as u64),
        ("WARDEN_POINT_TAG", point::TAG as u64),
        ("WARDEN_POINT_HAS_UNIT", point::HAS_UNIT as u64),
        ("WARDEN_POINT_VALUE", point::VALUE as u64),
        ("WARDEN_TAG_BOOL", u64::from(tag::BOOL)),
        ("WARDEN_TAG_INT", u64::from(tag::INT)),
        ("WARDEN_TAG_FLOAT", u64::from(tag::FLOAT)),
        ("WARDEN_TAG_TEXT", u64::from(tag::TEXT)),
        ("WARDEN_TAG_BYTES", u64::from(tag::BYTES)),
        ("WARDEN_ALLOW", verdict::ALLOW as u64),
        ("WARDEN_DENY", verdict::DENY as u64),
        ("WARDEN_QUARANTINE", verdict::QUARANTINE as u64),
        ("WARDEN_FIELD_DEVICE_ID", field::DEVICE_ID as u64),
        ("WARDEN_FIELD_PROTOCOL", field::PROTOCOL as u64),
        ("WARDEN_FIELD_ZONE", field::ZONE as u64),
        ("WARDEN_FIELD_ROLE", field::ROLE as u64),
        ("WARDEN_FIELD_MANUFACTURER", field::MANUFACTURER as u64),
        ("WARDEN_FIELD_MODEL", field::MODEL as u64),
        ("WARDEN_FIELD_FIRMWARE", field::FIRMWARE as u64),
        ("WARDEN_FIELD_NAME", field::NAME as u64),
        ("WARDEN_FIELD_PRINCIPAL", field::PRINCIPAL as u64),
        ("WARDEN_FIELD_POINT_NAME", field::POINT_NAME as u64),
        ("WARDEN_FIELD_POINT_UNIT", field::POINT_UNIT as u64),
        ("WARDEN_FIELD_POINT_VALUE", field::POINT_VALUE as u64),
        ("WARDEN_FIELD_SECURITY", field::SECURITY as u64),
        (
            "WARDEN_FIELD_ANOMALY_FEATURE",
            field::ANOMALY_FEATURE as u64,
        ),
        ("WARDEN_KV_OK", kv::OK as u64),
        ("WARDEN_KV_KEY_TOO_LARGE", kv::KEY_TOO_LARGE as u64),
        ("WARDEN_KV_QUOTA_EXCEEDED", kv::QUOTA_EXCEEDED as u64),
    ];
    for (name, want) in expect {
        assert_eq!(d.get(*name), Some(want), "{name}");
    }
    assert_eq!(
        d.len(),
        expect.len(),
        "the header defines numbers this test does not check: {:?}",
        d.keys()
            .filter(|k| !expect.iter().any(|(n, _)| n == k))
            .collect::<Vec<_>>()
    );
    for name in [
        import::INTERN,
        import::SYMBOL_TEXT,
        import::TEXT,
        import::POINT,
        import::FIND_POINT,
        import::LOG,
        import::NOW_MS,
        import::KV_GET,
        import::KV_SET,
        import::KV_DELETE,
        import::CONFIG,
        import::VERDICT_TEXT,
    ] {
        assert!(
            h.contains(&format!("WARDEN_IMPORT(\"{name}\")")),
            "import {name}"
        );
    }
    assert_eq!(h.matches("WARDEN_IMPORT(\"").count(), 12);
    for name in [EXPORT_AREA, EXPORT_INIT, EXPORT_DECIDE] {
        assert!(h.contains(&format!("export_name(\"{name}\")")), "{name}");
    }
    assert!(h.contains(&format!("#define WARDEN_IMPORT_MODULE \"{IMPORT_MODULE}\"")));
}

#[test]
fn the_layout_fits_and_is_aligned() {
    // every u64 8-aligned, every u32 4-aligned, all inside the header
    for at in [
        off::TIME_MS,
        off::RATE_PER_MIN,
        off::MESSAGES,
        off::BYTES,
        off::DENIED,
        off::LAST_SEEN_MS,
    ] {
        assert_eq!(at % 8, 0);
        assert!(at + 8 <= HEADER_BYTES);
    }
    for at in [
        off::VERSION,
        off::POINT_COUNT,
        off::PROTOCOL,
        off::ZONE,
        off::ROLE,
        off::NAME,
        off::PRINCIPAL,
        off::ANOMALY_SCORE,
    ] {
        assert_eq!(at % 4, 0);
    }
    assert_eq!(point::VALUE % 8, 0);
    assert_eq!(POINT_BYTES % 8, 0);
    assert_eq!(HEADER_BYTES % 8, 0);
}
