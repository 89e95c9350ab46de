//! `warden run --demo`: within seconds a newcomer sees telemetry on MQTT, a pending device, a denial
//! in the audit log, and a command with its result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use warden_e2e::*;

#[test]
fn demo_shows_the_whole_path_within_seconds() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    // only the ports differ from a bare `warden run --demo` (so tests can run side by side)
    let cfg = t.path().join("ports.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:{}\"\n[mqtt.embedded]\nlisten = \"127.0.0.1:{}\"\n[sim]\ncontrol = \"127.0.0.1:{}\"\n",
            p.api, p.mqtt, p.sim
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &["--demo"]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &t.path().join("sub.txt"),
    );
    sub.wait_lines(Duration::from_secs(15), "demo telemetry", |l| {
        l.iter()
            .any(|(t, _)| t.starts_with("warden/devices/sim:thermostat-1/telemetry/"))
            && l.iter()
                .any(|(t, _)| t.starts_with("warden/devices/sim:meter-1/telemetry/"))
    });
    let list = stdout(&g.cli(&["devices", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("sim:newcomer-1") && l.contains("pending")),
        "{list}"
    );
    // a command through the API and its result
    let o = g.cli(&["command", "sim:switch-1", "turn_on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&stdout(&o))["outcome"], "delivered");
    // denials in the audit log: the pending newcomer and the rogue's debug_shell
    wait_for(
        Duration::from_secs(15),
        "both denials in the audit log",
        || {
            let tail = stdout(&g.cli(&["audit", "tail", "-n", "200"]));
            (tail.contains("device=sim:newcomer-1")
                && tail.contains("device is pending")
                && tail.contains("`debug_shell` is not in profile"))
            .then_some(())
        },
    );
    // the rogue's telemetry never reached MQTT
    assert!(
        !sub.lines()
            .iter()
            .any(|(t, _)| t.contains("sim:rogue-1/telemetry"))
    );
    g.stop();
}
