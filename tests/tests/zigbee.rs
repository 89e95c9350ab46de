//! The Zigbee adapter end to end, once per coordinator stack, against the project's simulated
//! coordinators whose every frame is built by zigpy-znp's (ZNP) and bellows's (EZSP/ASH) own classes:
//! network start, a join window opened from the CLI with live progress, install-code joining, the
//! interview, pending until approved, reports to MQTT with their assurance, an on/off command and
//! its report, refusals outside a window and without an install code, and a dongle unplugged and
//! replugged mid-traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod zigbee_support;

use warden_e2e::*;
use zigbee_support::*;

fn is(r: &serde_json::Value, action: &str, device: &str) -> bool {
    r["action"] == action && r["device"] == device
}

/// A link-health record of the Zigbee link in `state`.
fn zigbee_link(r: &serde_json::Value, state: &str) -> bool {
    r["action"] == "link-health"
        && r["detail"]["state"] == state
        && r["detail"]["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("zigbee:"))
}

fn cause(r: &serde_json::Value) -> &str {
    r["detail"]["cause"].as_str().unwrap_or_default()
}

fn scenario(stack: &str) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let sim = Sim::start(stack, dir, &[]);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p, &sim.link)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );

    // the network is formed once, and the link reported up
    let up = wait_audit(&dd, "the Zigbee link up", |r| zigbee_link(r, "Up"));
    let reason = up["reason"].as_str().unwrap();
    assert!(reason.contains("network formed"), "{reason}");
    assert_eq!(sim.state()["form_count"], 1);

    // th1 is provisioned with its install code and lands pending (an operator's import)
    let imp = dir.join("imp.toml");
    std::fs::write(
        &imp,
        format!(
            "[[devices]]\nid = \"{TH1}\"\nstatus = \"pending\"\n\
             credentials = {{ install_code = \"hex:{INSTALL_CODE}\" }}\n"
        ),
    )
    .unwrap();
    let o = g.cli(&["devices", "import", imp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // a window for install-code devices only, opened from the CLI, which shows its progress
    let mut join = Cli::spawn(
        &g,
        &[
            "adapter",
            "zigbee",
            "join",
            "--seconds",
            "120",
            "--install-code-only",
        ],
        &dir.join("join.txt"),
    );
    join.wait_text("the window to open", |t| t.contains("s left"));
    assert_eq!(
        sim.ctl(&format!("join th1 code={INSTALL_CODE}")),
        "OK joined secured"
    );
    // interviewed, pending, with what the interview learned
    let d = wait_for(T, "th1 interviewed and pending", || {
        let d = device_show(&g, TH1);
        (d["device"]["model"] == "SIM-TH-1").then_some(d)
    });
    assert_eq!(d["device"]["status"], "pending", "{d}");
    assert_eq!(d["device"]["manufacturer"], "SimCo", "{d}");
    assert_eq!(d["device"]["firmware"], "1.2.3 (20260101)", "{d}");
    // what the interview learned is on record for a provisioned device too
    let learned = wait_audit(&dd, "th1's interview on record", |r| {
        is(r, "device-interviewed", TH1)
    });
    assert_eq!(learned["detail"]["power_source"], "battery", "{learned}");
    assert_eq!(learned["detail"]["sleepy"], "yes", "{learned}");
    let ep = learned["detail"]["endpoint_1"].as_str().unwrap_or_default();
    assert!(ep.contains("0x0402") && ep.contains("0x0405"), "{learned}");
    // the interview bound the reporting clusters to the coordinator
    let cmds = sim.state()["last_commands"]["th1"].to_string();
    for cluster in [0x0402, 0x0405] {
        assert!(
            cmds.contains(&format!(r#""cluster":{cluster}"#)) && cmds.contains("bind"),
            "th1 not bound for {cluster:#06x}: {cmds}"
        );
    }
    wait_audit(&dd, "th1's join audited", |r| {
        is(r, "membership", TH1) && r["detail"]["change"] == "joined"
    });

    // a device without a provisioned install code is refused while the window requires one
    let r = sim.ctl("join motion1");
    assert!(r.starts_with("OK"), "{r}");
    let refused = wait_audit(&dd, "motion1's refusal", |r| is(r, "uplink", MOTION1));
    assert_eq!(cause(&refused), "join-without-install-code", "{refused}");
    assert_eq!(refused["verdict"], "deny", "{refused}");
    assert!(
        device_show(&g, MOTION1).is_null(),
        "a refused device is not registered"
    );

    // the progress line counted both; closing the window ends the CLI cleanly
    join.wait_text("the refusal in the progress", |t| {
        t.contains("1 joined") && t.contains("1 refused")
    });
    let o = g.cli(&["adapter", "zigbee", "close"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(join.wait_exit(), "{}", join.text());
    let text = join.text();
    assert!(text.contains("cancelled"), "{text}");
    assert!(
        text.contains(&format!("{TH1} interviewed: SimCo SIM-TH-1")),
        "{text}"
    );
    assert!(
        text.contains("interview zigbee:"),
        "interview steps shown: {text}"
    );
    // the retained operation state says the same
    sub.wait_lines(T, "the retained operation state", |l| {
        l.iter().any(|(t, p)| {
            t == "warden/adapters/zigbee/operation"
                && json(p)["operation"]["progress"]["state"] == "cancelled"
        })
    });

    // a device joining outside any window is refused, told to leave, and audited
    let r = sim.ctl("join plug1 force");
    assert!(r.starts_with("OK"), "{r}");
    let refused = wait_audit(&dd, "plug1's refusal outside a window", |r| {
        is(r, "uplink", PLUG1)
    });
    assert_eq!(cause(&refused), "join-outside-window", "{refused}");
    wait_for(T, "plug1 made to leave", || {
        (sim.state()["devices"]["plug1"]["joined"] == false).then_some(())
    });

    // a pending device's reports never reach MQTT (the positive control follows its approval)
    assert_eq!(sim.ctl("report th1 temperature 2000"), "OK temperature");
    wait_audit(&dd, "th1's pending report denied", |r| {
        is(r, "uplink", TH1) && r["verdict"] == "deny"
    });
    let o = g.cli(&[
        "devices",
        "approve",
        TH1,
        "--profile",
        "zsensor",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sim.ctl("report th1 temperature 2234"), "OK temperature");
    assert_eq!(sim.ctl("report th1 humidity 5530"), "OK humidity");
    sub.wait_lines(T, "th1's humidity", |_| {
        latest(&sub, TH1, "humidity").is_some()
    });
    let temp = latest(&sub, TH1, "temperature").unwrap();
    assert_eq!(temp["value"], 22.34, "{temp}");
    assert_eq!(temp["unit"], "°C", "{temp}");
    // joined with its install-code key and the frame APS-secured under it
    assert_eq!(temp["assurance"], "shared-key", "{temp}");
    assert_eq!(latest(&sub, TH1, "humidity").unwrap()["value"], 55.3);
    assert_eq!(
        values(&sub, TH1, "temperature"),
        vec![serde_json::json!(22.34)],
        "the report sent while pending was never published"
    );

    // an ordinary window: motion1 and plug1 join without install codes
    let mut join = Cli::spawn(
        &g,
        &["adapter", "zigbee", "join", "--seconds", "60"],
        &dir.join("join2.txt"),
    );
    join.wait_text("the second window to open", |t| t.contains("s left"));
    for (name, id) in [("motion1", MOTION1), ("plug1", PLUG1)] {
        let r = sim.ctl(&format!("join {name}"));
        assert!(r.starts_with("OK joined"), "{name}: {r}");
        wait_for(T, &format!("{name} interviewed"), || {
            (device_show(&g, id)["device"]["status"] == "pending"
                && !device_show(&g, id)["device"]["model"].is_null())
            .then_some(())
        });
    }
    // this time the window is closed over MQTT, by the embedded broker's operator
    let o = std::process::Command::new("mosquitto_pub")
        .args(["-V", "mqttv311"])
        .args(operator_args(
            &dd,
            p.mqtt,
            &["-t", "warden/adapters/zigbee/op", "-m", r#"{"op":"close"}"#],
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(join.wait_exit(), "{}", join.text());
    assert!(
        join.text().contains("2 joined, 0 refused"),
        "{}",
        join.text()
    );
    let closed = wait_audit(&dd, "the MQTT close audited", |r| {
        r["action"] == "adapter-operation" && r["actor"] == "mqtt:operator"
    });
    assert_eq!(closed["detail"]["request"]["op"], "close", "{closed}");
    // an adapter without an operation says so, and an out-of-range request is refused
    let o = g.cli(&["adapter", "sim", "scan", "--seconds", "10"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the `sim` adapter has no `scan` operation (it supports: join, close)"),
        "{}",
        stderr(&o)
    );
    let o = g.cli(&["adapter", "zigbee", "join", "--seconds", "0"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`seconds` must be between 1 and 3600"),
        "{}",
        stderr(&o)
    );

    // occupancy from motion1, at `channel` (network key only)
    let o = g.cli(&[
        "devices",
        "approve",
        MOTION1,
        "--profile",
        "zsensor",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sim.ctl("report motion1 occupancy 1"), "OK occupancy");
    sub.wait_lines(T, "motion1's occupancy", |_| {
        latest(&sub, MOTION1, "occupancy").is_some()
    });
    let occ = latest(&sub, MOTION1, "occupancy").unwrap();
    assert_eq!(occ["value"], true, "{occ}");
    assert_eq!(occ["assurance"], "channel", "{occ}");

    // a pending plug gets no command; once approved, on/off reaches it and its report comes back
    let res = command(&g, PLUG1, "turn_on");
    assert_eq!(res["outcome"], "denied", "{res}");
    assert_eq!(sim.state()["devices"]["plug1"]["on"], false);
    let o = g.cli(&[
        "devices",
        "approve",
        PLUG1,
        "--profile",
        "zplug",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let res = command(&g, PLUG1, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(sim.state()["devices"]["plug1"]["on"], true);
    sub.wait_lines(T, "plug1's on/off report", |_| {
        latest(&sub, PLUG1, "on").is_some_and(|e| e["value"] == true)
    });
    let res = command(&g, PLUG1, "turn_off");
    assert_eq!(res["outcome"], "delivered", "{res}");
    sub.wait_lines(T, "plug1 off", |_| {
        latest(&sub, PLUG1, "on").is_some_and(|e| e["value"] == false)
    });
    // a command the profile does not allow never leaves the gateway
    let res = command(&g, PLUG1, "set_level");
    assert_eq!(res["outcome"], "denied", "{res}");

    // a sleepy device's command waits until the device is heard from: queued behind motion1's
    // silence while a later command to the (awake) plug is delivered, then sent on its next report
    let mut write = Cli::spawn(
        &g,
        &[
            "command",
            MOTION1,
            "write_attribute",
            "point=occupancy_timeout",
            "value=120",
        ],
        &dir.join("write.txt"),
    );
    wait_audit(&dd, "the write allowed", |r| {
        is(r, "command", MOTION1) && r["verdict"] == "allow"
    });
    let res = command(&g, PLUG1, "toggle");
    assert_eq!(res["outcome"], "delivered", "{res}");
    let writes =
        |st: &serde_json::Value| st["last_commands"]["motion1"].to_string().contains("write");
    assert!(
        !writes(&sim.state()),
        "sent before the sleepy device was heard from"
    );
    assert_eq!(sim.ctl("report motion1 occupancy 0"), "OK occupancy");
    assert!(write.wait_exit(), "{}", write.text());
    assert!(write.text().contains("delivered"), "{}", write.text());
    // the simulator records the write when its own handler has run, which can trail the
    // coordinator's delivery callback under load: wait for it
    wait_for(
        std::time::Duration::from_secs(10),
        "the write in the simulator's state",
        || writes(&sim.state()).then_some(()),
    );

    // hostile frames from an admitted device: truncated ZCL, an unknown cluster, a
    // manufacturer-specific report, then a flood; each refusal is audited once (the rest are
    // summarised), nothing panics, and the device's next good report still gets through
    assert!(sim.ctl("report th1 raw 0402 182a").starts_with("OK"));
    let bad = wait_audit(&dd, "the truncated frame refused", |r| {
        is(r, "uplink", TH1) && cause(r) == "zcl-truncated"
    });
    assert_eq!(bad["verdict"], "deny", "{bad}");
    assert!(
        sim.ctl("report th1 raw fc01 18010a00002001")
            .starts_with("OK")
    );
    assert!(
        sim.ctl("report th1 raw 0000 1c5f11010a0100420161")
            .starts_with("OK")
    );
    assert!(sim.ctl("flood th1 300").starts_with("OK"));
    let flood = wait_audit(&dd, "the flood refused", |r| {
        is(r, "uplink", TH1) && cause(r) == "flood"
    });
    assert_eq!(flood["verdict"], "deny", "{flood}");
    let floods = audit_where(&dd, |r| is(r, "uplink", TH1) && cause(r) == "flood");
    assert!(
        floods.len() <= 2,
        "a flood is summarised, not one record per frame: {}",
        floods.len()
    );
    // the flood's rate window passes: the device's next good report is published again
    // (resent every half second until it arrives, as a real sensor would keep reporting)
    let mut polls = 0;
    wait_for(T, "th1's good report after the hostile ones", || {
        if polls % 10 == 0 {
            assert_eq!(sim.ctl("report th1 temperature 2150"), "OK temperature");
        }
        polls += 1;
        latest(&sub, TH1, "temperature")
            .filter(|e| e["value"] == 21.5)
            .map(|_| ())
    });

    // unplug mid-traffic: link down; replug: up again on the same network, nobody duplicated
    let ids = || -> Vec<String> {
        stdout(&g.cli(&["devices", "list"]))
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    let before = ids();
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(sim.ctl("unplug").starts_with("OK"));
    wait_audit(&dd, "the link down", |r| zigbee_link(r, "Down"));
    assert!(sim.ctl("replug").starts_with("OK"));
    let resumed = wait_audit(&dd, "the link up again", |r| {
        zigbee_link(r, "Up") && r["reason"].as_str().unwrap_or_default().contains("resumed")
    });
    assert!(
        resumed["reason"].as_str().unwrap().contains("3 devices"),
        "{resumed}"
    );
    assert_eq!(
        sim.state()["form_count"],
        1,
        "the network was not re-formed"
    );
    assert_eq!(ids(), before, "no duplicate or lost device");
    assert_eq!(sim.ctl("report th1 temperature 2300"), "OK temperature");
    sub.wait_lines(T, "th1 after the replug", |_| {
        latest(&sub, TH1, "temperature").is_some_and(|e| e["value"] == 23.0)
    });
    let res = command(&g, PLUG1, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");

    if stack == "znp" {
        different_stick_in_the_same_port(&sim, dir, &dd, &sub);
    }

    let log = g.log_text();
    assert!(!log.contains("panicked"), "{log}");
    g.stop();
}

#[test]
fn zigbee_znp_end_to_end() {
    scenario("znp");
}

#[test]
fn zigbee_ezsp_end_to_end() {
    scenario("ezsp");
}

/// A different coordinator stick (another IEEE address) in the port of the network's stick: refused
/// for the network (nothing written to it), audited once however often the adapter retries, and the
/// network resumed when its own stick returns.
fn different_stick_in_the_same_port(
    sim: &Sim,
    dir: &std::path::Path,
    dd: &std::path::Path,
    sub: &Subscriber,
) {
    let ups = || audit_where(dd, |r| zigbee_link(r, "Up")).len();
    let ups_before = ups();
    assert!(sim.ctl("unplug").starts_with("OK"));
    let other = Sim::start_on(
        "znp",
        &sim.link,
        &dir.join("znp-other-sim.log"),
        &["--ieee", "00:12:4b:00:00:00:09:99"],
    );
    let refused = |r: &serde_json::Value| {
        cause(r) == "coordinator-not-accepted"
            && r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("a different coordinator (00124b0000000999)"))
    };
    let r = wait_audit(dd, "the different stick refused", refused);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("coordinator 00124b0000000001"), "{reason}");
    assert!(
        reason.contains("accept_coordinator = \"00124b0000000999\""),
        "{reason}"
    );
    // The adapter keeps asking (a reconnect every 2 s) and keeps refusing, with one audit record.
    wait_for(T, "three identity checks of the other stick", || {
        let asked = other
            .log_text()
            .lines()
            .filter(|l| l.contains("UTIL.GetDeviceInfo.Req"))
            .count();
        (asked >= 3).then_some(())
    });
    assert_eq!(audit_where(dd, refused).len(), 1);
    assert_eq!(other.state()["form_count"], 0, "nothing was started on it");
    let nv_writes = other
        .log_text()
        .lines()
        .filter(|l| l.contains("<-  ") && (l.contains("NVWrite") || l.contains("Startup")))
        .count();
    assert_eq!(nv_writes, 0, "{}", other.log_text());
    assert_eq!(ups(), ups_before, "never up on the other stick");
    drop(other);
    // The network's own stick back in the port: resumed, traffic flows.
    assert!(sim.ctl("replug").starts_with("OK"));
    wait_for(T, "the link up on the network's own stick", || {
        (ups() > ups_before).then_some(())
    });
    assert_eq!(
        sim.state()["form_count"],
        1,
        "the network was not re-formed"
    );
    assert_eq!(sim.ctl("report th1 temperature 2400"), "OK temperature");
    sub.wait_lines(T, "th1 after its own stick returned", |_| {
        latest(sub, TH1, "temperature").is_some_and(|e| e["value"] == 24.0)
    });
}
