//! Availability is explicit: a device silent for `registry.offline_after_s` gets a retained status
//! with `"online": false`, and `true` again on its next uplink; an imported device is not online
//! until it is heard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use warden_e2e::*;

#[test]
fn silent_device_goes_offline_and_comes_back() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!("{}\n[registry]\noffline_after_s = 1\n", base_config(&p)),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let f = t.path().join("d.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:cnt\"\nprofile = \"counter\"\n").unwrap();
    assert!(
        g.cli(&["devices", "import", f.to_str().unwrap()])
            .status
            .success()
    );
    let topic = "warden/devices/sim:cnt/status";
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", topic]),
        &t.path().join("sub.txt"),
    );
    let online = |l: &[(String, String)]| -> Vec<bool> {
        l.iter()
            .map(|(_, p)| json(p)["online"].as_bool().unwrap())
            .collect()
    };
    // the import's retained status first, before the device says anything
    sub.wait_lines(
        Duration::from_secs(15),
        "the imported device's status",
        |l| !l.is_empty(),
    );
    g.sim(&["cnt n=1".to_string()]);
    // imported and never heard: not online (the retained status from the import), then online
    // once heard, then offline when silent
    let l = sub.wait_lines(Duration::from_secs(15), "an offline status", |l| {
        online(l).windows(2).any(|w| w == [true, false])
    });
    assert_eq!(
        online(&l).first(),
        Some(&false),
        "an imported device nobody heard is not online: {l:?}"
    );
    let heard = online(&l).iter().position(|o| *o).unwrap();
    let off = l
        .iter()
        .skip(heard)
        .find(|(_, p)| json(p)["online"] == false)
        .unwrap();
    assert_eq!(json(&off.1)["status"], "active");
    assert!(json(&off.1)["sig"].is_string());
    g.sim(&["cnt n=2".to_string()]);
    let l = sub.wait_lines(Duration::from_secs(10), "back online", |l| {
        online(l).last() == Some(&true) && online(l).contains(&false)
    });
    assert_eq!(online(&l).last(), Some(&true));
    g.stop();
}
