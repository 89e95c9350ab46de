//! New pending devices are rate-limited per source (issue 15): a flood of invented identities from
//! one radio registers its share a minute, audited as a few aggregated records, and cannot fill
//! `registry.max_pending`; once the minute refills, a new device registers again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::time::Duration;

use warden_e2e::*;
use zigbee_support::{audit_where, wait_audit};

#[test]
fn a_flood_of_unknown_devices_registers_its_share_and_no_more() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[registry]\nmax_pending = 50\npending_per_source_per_min = 6\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let registered = |dd: &std::path::Path| {
        audit_where(dd, |r| {
            r["action"] == "device-registered"
                && r["device"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("sim:flood-"))
        })
        .len()
    };
    // 200 invented devices from the one simulated radio
    let flood: Vec<String> = (0..200).map(|i| format!("flood-{i} n=1")).collect();
    g.sim(&flood);
    // the refusals, aggregated: one record names the source and the rule
    let r = wait_audit(&dd, "the flood refused", |r| {
        r["action"] == "link-notice" && r["detail"]["kind"] == "pending-rate"
    });
    assert_eq!(r["detail"]["link"], "sim", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("pending_per_source_per_min"),
        "{r}"
    );
    // the positive control: the source's share was registered (its burst), the rest were not
    wait_for(Duration::from_secs(10), "the burst registered", || {
        (registered(&dd) == 6).then_some(())
    });
    let notices = audit_where(&dd, |r| {
        r["action"] == "link-notice" && r["detail"]["kind"] == "pending-rate"
    });
    assert!(
        notices.len() <= 2,
        "194 refusals became {} records",
        notices.len()
    );
    assert!(registered(&dd) < 50, "the pending list was not filled");
    // the reset: at 6 a minute, one more is admitted within ten seconds or so
    wait_for(
        Duration::from_secs(30),
        "a new device after the refill",
        || {
            g.sim(&["late-1 n=1".to_string()]);
            (!audit_where(&dd, |r| {
                r["action"] == "device-registered" && r["device"] == "sim:late-1"
            })
            .is_empty())
            .then_some(())
        },
    );
    assert_eq!(registered(&dd), 6, "the flood's refused devices stayed out");
    g.stop();
}
