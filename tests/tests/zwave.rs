//! The Z-Wave adapter end to end against zwave-js's own MockController and MockNodes
//! (tests/peers/zwave/zwave_mock.cjs, over a TCP Serial API port on loopback): controller start,
//! the interview of the nodes the controller already holds, pending until approved, sensor reports
//! to MQTT with their assurance, switch commands confirmed by the mock node's state, an inclusion
//! window opened from the CLI with its progress, hostile frames refused and audited, and the
//! controller going away and coming back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use warden_e2e::*;
use zigbee_support::{Cli, T, audit_where, command, device_show, latest, values, wait_audit};

const SWITCH: &str = "zwave:c0ffee01-2";
const SENSOR: &str = "zwave:c0ffee01-3";
const NEW_SENSOR: &str = "zwave:c0ffee01-4";
const SLEEPY: &str = "zwave:c0ffee01-5";
const S2NODE: &str = "zwave:c0ffee01-6";

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/zwave")
}

/// zwave-js's mock controller on two free loopback ports, killed when dropped.
struct Mock {
    child: Child,
    control: u16,
}

impl Mock {
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, &[])
    }

    /// A mock controller with extra arguments (`--home-id deadbeef`: another stick).
    fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Self {
        assert!(
            peers().join("node_modules/zwave-js").exists(),
            "zwave-js missing: run tests/scripts/install-zwave.sh"
        );
        let control = free_port();
        let log = dir.join(format!("zwave-mock-{port}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("node")
            .arg(peers().join("zwave_mock.cjs"))
            .args([
                "--port",
                &port.to_string(),
                "--control-port",
                &control.to_string(),
            ])
            .args(extra)
            .current_dir(peers())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("node");
        let m = Self { child, control };
        wait_for(T, "the mock controller's control port", || {
            TcpStream::connect(("127.0.0.1", m.control))
                .ok()
                .map(|_| ())
        });
        m
    }

    fn ctl(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.control)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out).unwrap();
        out.trim().to_owned()
    }

    fn state(&self) -> serde_json::Value {
        let r = self.ctl("state");
        json(r.strip_prefix("OK ").unwrap_or(&r))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(p: &Ports, port: u16) -> String {
    format!(
        r#"{base}
[profiles.zwsensor]
points = ["temperature", "battery", "battery_low"]
commands = ["refresh"]
min_assurance = "none"

[profiles.zwswitch]
points = ["switch"]
commands = ["turn_on", "turn_off"]
min_assurance = "none"

[profiles.zws2]
points = ["temperature"]
commands = ["refresh"]
min_assurance = "shared-key"

[profiles.zwlock]
points = ["temperature"]
commands = ["refresh"]
min_assurance = "shared-key"
security = ["zwave-s2-access-control"]

[adapters.zwave]
port = "tcp://127.0.0.1:{port}"
reconnect_s = 1
interview_timeout_ms = 3000
"#,
        base = base_config(p)
    )
}

/// SOF LEN body CHECKSUM.
fn serial_frame(body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len() + 1).unwrap();
    let sum = body.iter().fold(0xff ^ len, |a, b| a ^ b);
    let mut f = vec![0x01, len];
    f.extend_from_slice(body);
    f.push(sum);
    f
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is(r: &serde_json::Value, action: &str, device: &str) -> bool {
    r["action"] == action && r["device"] == device
}

fn zwave_link(r: &serde_json::Value, state: &str) -> bool {
    r["action"] == "link-health"
        && r["detail"]["state"] == state
        && r["detail"]["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("zwave:"))
}

fn cause(r: &serde_json::Value) -> &str {
    r["detail"]["cause"].as_str().unwrap_or_default()
}

fn approve(g: &Gateway, id: &str, profile: &str) {
    let o = g.cli(&[
        "devices",
        "approve",
        id,
        "--profile",
        profile,
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn zwave_controller_nodes_inclusion_commands_and_hostile_frames() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let port = free_port();
    let mut mock = Mock::start(dir, port);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p, port)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );

    // the controller started: version, home id, its two nodes
    let up = wait_audit(&dd, "the Z-Wave link up", |r| zwave_link(r, "Up"));
    let reason = up["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("home c0ffee01"), "{up}");
    assert!(reason.contains("3 nodes"), "{up}");

    // both nodes were interviewed and land pending, with what the interview learned
    for (id, manufacturer, model) in [
        (SWITCH, "0x0086", "0003:0006"),
        (SENSOR, "0x0371", "0002:0005"),
    ] {
        let d = wait_for(T, &format!("{id} interviewed"), || {
            let d = device_show(&g, id);
            (!d["device"]["manufacturer"].is_null()).then_some(d)
        });
        assert_eq!(d["device"]["status"], "pending", "{d}");
        assert_eq!(d["device"]["manufacturer"], manufacturer, "{d}");
        assert_eq!(d["device"]["model"], model, "{d}");
    }
    let learned = wait_audit(&dd, "the sensor's interview on record", |r| {
        is(r, "device-registered", SENSOR)
    });
    let reason = learned["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("command_classes: 0x31 0x72 0x86") && reason.contains("security: none"),
        "{learned}"
    );

    // a pending node's report is denied; once approved, reports reach MQTT at assurance `none`
    assert_eq!(mock.ctl("temp 3 19.5"), "OK temp 3");
    wait_audit(&dd, "the pending sensor's report denied", |r| {
        is(r, "uplink", SENSOR) && r["verdict"] == "deny"
    });
    approve(&g, SENSOR, "zwsensor");
    assert_eq!(mock.ctl("temp 3 23.4"), "OK temp 3");
    sub.wait_lines(T, "the sensor's temperature", |_| {
        latest(&sub, SENSOR, "temperature").is_some()
    });
    let temp = latest(&sub, SENSOR, "temperature").unwrap();
    assert_eq!(temp["value"], 23.4, "{temp}");
    assert_eq!(temp["unit"], "°C", "{temp}");
    assert_eq!(temp["assurance"], "none", "{temp}");
    assert_eq!(
        values(&sub, SENSOR, "temperature"),
        vec![serde_json::json!(23.4)],
        "the report sent while pending was never published"
    );

    // the switch: denied while pending, then on and off, confirmed by the mock node's own state
    let res = command(&g, SWITCH, "turn_on");
    assert_eq!(res["outcome"], "denied", "{res}");
    assert!(mock.state()["switches"]["2"] != true);
    wait_for(T, "the switch interviewed", || {
        (!device_show(&g, SWITCH)["device"]["manufacturer"].is_null()).then_some(())
    });
    approve(&g, SWITCH, "zwswitch");
    let res = command(&g, SWITCH, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(mock.state()["switches"]["2"], true);
    let res = command(&g, SWITCH, "turn_off");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(mock.state()["switches"]["2"], false);
    assert_eq!(mock.ctl("switch 2 on"), "OK switch 2");
    sub.wait_lines(T, "the switch's report", |_| {
        latest(&sub, SWITCH, "switch").is_some_and(|e| e["value"] == true)
    });

    // a sleeping node's command is held until its Wake Up Notification; a command to a
    // listening node meanwhile goes at once (the positive control)
    wait_for(T, "the sleeping node interviewed", || {
        (!device_show(&g, SLEEPY)["device"]["model"].is_null()).then_some(())
    });
    approve(&g, SLEEPY, "zwsensor");
    // answered `queued` at once (not a timeout after the gateway's default wait)
    let refresh = queued(&command(&g, SLEEPY, "refresh"));
    let res = command(&g, SWITCH, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert!(latest(&sub, SLEEPY, "temperature").is_none());
    assert_eq!(mock.ctl("wakeup 5"), "OK wakeup 5");
    let res = final_result(&sub, &refresh);
    assert_eq!(res["outcome"], "delivered", "{res}");
    // nothing but `queued` before it: it was not sent before the node woke
    let before: Vec<_> = sub
        .lines()
        .iter()
        .filter(|(t, _)| t.ends_with("/cmd/result"))
        .map(|(_, p)| json(p))
        .filter(|r| r["command_id"] == refresh.as_str())
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(before, ["queued", "delivered"]);
    sub.wait_lines(T, "the sleeping node's answer", |_| {
        latest(&sub, SLEEPY, "temperature").is_some_and(|e| e["value"] == 18.0)
    });

    // inclusion: a sensor waits to be included; a window opened from the CLI takes it in, its
    // progress is shown, it is interviewed and lands pending, and the join is audited
    assert_eq!(mock.ctl("include 4 sensor"), "OK include 4");
    let mut join = Cli::spawn(
        &g,
        &["adapter", "zwave", "join", "--seconds", "120"],
        &dir.join("join.txt"),
    );
    let d = wait_for(T, "node 4 interviewed", || {
        let d = device_show(&g, NEW_SENSOR);
        (!d["device"]["manufacturer"].is_null()).then_some(d)
    });
    assert_eq!(d["device"]["status"], "pending", "{d}");
    wait_audit(&dd, "node 4's inclusion audited", |r| {
        is(r, "membership", NEW_SENSOR) && r["detail"]["change"] == "joined"
    });
    join.wait_text("the inclusion in the progress", |t| t.contains("1 joined"));
    let o = g.cli(&["adapter", "zwave", "close"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(join.wait_exit(), "{}", join.text());
    let text = join.text();
    assert!(text.contains("1 joined"), "{text}");
    assert!(text.contains(NEW_SENSOR), "{text}");
    assert!(
        mock.state()["nodes"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(4))
    );

    // S2: a node that asks for S2 Unauthenticated is included; Warden runs the key exchange
    // (ECDH, temporary keys, its network key sent encrypted and verified) against zwave-js's own
    // S2 implementation in the mock node, and the interview runs encrypted
    // (an S2 node's answer carries its PIN; S2 Unauthenticated needs none)
    assert!(
        mock.ctl("include 6 s2sensor")
            .starts_with("OK include 6 pin=")
    );
    let mut join = Cli::spawn(
        &g,
        &["adapter", "zwave", "join", "--seconds", "120"],
        &dir.join("join-s2.txt"),
    );
    let reg = wait_audit(&dd, "the S2 node registered", |r| {
        is(r, "device-registered", S2NODE)
    });
    let reason = reg["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("security: s2-unauthenticated"), "{reg}");
    assert_eq!(reg["detail"]["manufacturer"], "0x0371", "{reg}");
    let o = g.cli(&["adapter", "zwave", "close"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(join.wait_exit(), "{}", join.text());
    approve(&g, S2NODE, "zws2");
    // its encrypted report reaches MQTT at `shared-key` (the profile requires it)
    assert_eq!(mock.ctl("s2temp 6 21.5"), "OK s2temp 6");
    sub.wait_lines(T, "the S2 node's temperature", |_| {
        latest(&sub, S2NODE, "temperature").is_some()
    });
    let t6 = latest(&sub, S2NODE, "temperature").unwrap();
    assert_eq!(t6["value"], 21.5, "{t6}");
    assert_eq!(t6["assurance"], "shared-key", "{t6}");
    // the same frame again is a replay; a frame with a bad tag does not decrypt; an unencrypted
    // frame from this node is a downgrade: each refused and audited, none published
    assert_eq!(mock.ctl("replay"), "OK replay");
    wait_audit(&dd, "the replayed S2 frame refused", |r| {
        is(r, "uplink", S2NODE) && cause(r) == "replay"
    });
    assert_eq!(mock.ctl("badmac"), "OK badmac");
    wait_audit(&dd, "the S2 frame with a bad tag refused", |r| {
        is(r, "uplink", S2NODE) && cause(r) == "s2-decrypt-failed"
    });
    assert_eq!(mock.ctl("temp 6 30.0"), "OK temp 6");
    wait_audit(&dd, "the unencrypted frame refused", |r| {
        is(r, "uplink", S2NODE) && cause(r) == "downgrade"
    });
    // the session recovers (new nonces), and a command goes encrypted and is answered encrypted
    assert_eq!(mock.ctl("s2temp 6 22.5"), "OK s2temp 6");
    sub.wait_lines(T, "the S2 node's report after the refusals", |_| {
        latest(&sub, S2NODE, "temperature").is_some_and(|e| e["value"] == 22.5)
    });
    let res = command(&g, S2NODE, "refresh");
    assert_eq!(res["outcome"], "delivered", "{res}");
    sub.wait_lines(T, "the answer to the encrypted refresh", |_| {
        values(&sub, S2NODE, "temperature").len() >= 3
    });
    let v6 = values(&sub, S2NODE, "temperature");
    assert_eq!(
        v6,
        vec![
            serde_json::json!(21.5),
            serde_json::json!(22.5),
            serde_json::json!(22.5)
        ]
    );

    // the gateway restarts: the S2 node's granted class and the network keys come back from the
    // sealed state store. The node's next frame rides its old session, which Warden no longer
    // holds: refused and answered with a Nonce Report; the frame after it decrypts at
    // `shared-key` again (no re-inclusion)
    g.stop();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    wait_for(T, "the Z-Wave link up after the gateway restart", || {
        (audit_where(&dd, |r| zwave_link(r, "Up")).len() >= 2).then_some(())
    });
    drop(sub);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub-after-restart.txt"),
    );
    sub.wait_lines(T, "the new subscription's retained messages", |l| {
        !l.is_empty()
    });
    let refused_before = audit_where(&dd, |r| {
        is(r, "uplink", S2NODE) && cause(r) == "s2-decrypt-failed"
    })
    .len();
    assert_eq!(mock.ctl("s2temp 6 23.0"), "OK s2temp 6");
    wait_for(
        T,
        "the old session's frame refused after the restart",
        || {
            (audit_where(&dd, |r| {
                is(r, "uplink", S2NODE) && cause(r) == "s2-decrypt-failed"
            })
            .len()
                > refused_before)
                .then_some(())
        },
    );
    // the Nonce Report that answers the refusal reaches the node after the audit record: wait
    // until the node has taken it, or its next frame still rides the old session
    wait_for(T, "the node taking the gateway's Nonce Report", || {
        (mock.ctl("span 6") == "OK RemoteEI").then_some(())
    });
    assert_eq!(mock.ctl("s2temp 6 23.5"), "OK s2temp 6");
    sub.wait_lines(T, "the S2 node's report after the gateway restart", |_| {
        latest(&sub, S2NODE, "temperature").is_some_and(|e| e["value"] == 23.5)
    });
    let t6 = latest(&sub, S2NODE, "temperature").unwrap();
    assert_eq!(t6["assurance"], "shared-key", "{t6}");
    assert_eq!(
        values(&sub, S2NODE, "temperature"),
        vec![serde_json::json!(23.5)],
        "the frame on the lost session was not published"
    );

    // hostile frames from the approved sensor: a truncated report, a Security 2 frame Warden
    // cannot decrypt, and a frame from a node the controller does not hold; each is refused and
    // audited with its cause, and the sensor's next good report still gets through
    assert!(mock.ctl("appcmd 3 3105").starts_with("OK"));
    let bad = wait_audit(&dd, "the truncated report refused", |r| {
        is(r, "uplink", SENSOR) && cause(r) == "malformed"
    });
    assert_eq!(bad["verdict"], "deny", "{bad}");
    assert!(
        mock.ctl("appcmd 3 9f03a100000102030405060708090a0b")
            .starts_with("OK")
    );
    wait_audit(&dd, "the S2 frame refused", |r| {
        is(r, "uplink", SENSOR) && cause(r) == "s2-decrypt-failed"
    });
    assert!(mock.ctl("appcmd 77 3105012200d7").starts_with("OK"));
    wait_audit(&dd, "the unknown node refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-77") && cause(r) == "unknown-node"
    });
    assert!(
        device_show(&g, "zwave:c0ffee01-77").is_null(),
        "a refused node is not registered"
    );
    // a frame with a bad checksum is NAKed by the link (the mock sees no ACK); the same frame
    // with its checksum right is ACKed (an unhandled command class: counted, nothing published)
    let unhandled = serial_frame(&[0x00, 0x04, 0x00, 0x03, 0x02, 0x5e, 0x02]);
    let mut corrupt = unhandled.clone();
    *corrupt.last_mut().unwrap() ^= 0xff;
    assert_eq!(
        mock.ctl(&format!("rawframe {}", hex(&corrupt))),
        "OK rawframe not acked"
    );
    assert_eq!(
        mock.ctl(&format!("rawframe {}", hex(&unhandled))),
        "OK rawframe acked"
    );
    assert_eq!(mock.ctl("temp 3 24.0"), "OK temp 3");
    sub.wait_lines(T, "the sensor's report after the hostile frames", |_| {
        latest(&sub, SENSOR, "temperature").is_some_and(|e| e["value"] == 24.0)
    });
    assert_eq!(
        values(&sub, SENSOR, "temperature"),
        vec![serde_json::json!(24.0)],
        "nothing from the hostile frames was published (this subscription began at the restart)"
    );

    // the controller goes away: link Down, a command fails fast; it comes back: link Up, reports flow
    mock.stop();
    wait_audit(&dd, "the Z-Wave link down", |r| zwave_link(r, "Down"));
    let res = command(&g, SWITCH, "turn_on");
    assert_eq!(res["outcome"], "device-error", "{res}");
    // another stick (another home id) on the same port: refused, audited once however often
    // the adapter reconnects, never Up, nothing interviewed on it
    let other = Mock::start_with(dir, port, &["--home-id", "deadbeef"]);
    let refused = |dd: &Path| audit_where(dd, |r| cause(r) == "controller-not-accepted");
    wait_for(T, "the other stick refused", || {
        (!refused(&dd).is_empty()).then_some(())
    });
    wait_for(T, "the adapter retried the other stick", || {
        (other
            .ctl("connections")
            .strip_prefix("OK ")?
            .parse::<u32>()
            .ok()?
            >= 3)
            .then_some(())
    });
    let r = refused(&dd);
    assert_eq!(r.len(), 1, "audited once: {r:?}");
    let text = r[0].to_string();
    assert!(
        text.contains("deadbeef") && text.contains("c0ffee01"),
        "{text}"
    );
    assert!(text.contains("accept_controller"), "{text}");
    assert_eq!(
        audit_where(&dd, |r| zwave_link(r, "Up")).len(),
        2,
        "never Up on the other stick"
    );
    assert!(
        audit_where(&dd, |r| r["device"]
            .as_str()
            .is_some_and(|d| d.starts_with("zwave:deadbeef")))
        .is_empty(),
        "nothing of the other stick's network registered"
    );
    drop(other);
    // the own stick back: Up, and the network as before
    let mock = Mock::start(dir, port);
    wait_for(T, "the Z-Wave link up again", || {
        (audit_where(&dd, |r| zwave_link(r, "Up")).len() >= 3).then_some(())
    });
    assert_eq!(mock.ctl("temp 3 25.5"), "OK temp 3");
    sub.wait_lines(T, "the sensor's report after the reconnect", |_| {
        latest(&sub, SENSOR, "temperature").is_some_and(|e| e["value"] == 25.5)
    });
    g.stop();
}

/// The PIN the mock's `include` answered (`OK include N pin=NNNNN`).
fn pin_of(answer: &str) -> String {
    let pin = answer
        .split_once("pin=")
        .map(|(_, p)| p.trim().to_owned())
        .unwrap_or_default();
    assert!(
        pin.len() == 5 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{answer}"
    );
    pin
}

/// Includes the node the mock holds ready through a join window with these extra arguments, waits
/// for its registration record and closes the window; returns the record.
fn include_with(
    g: &Gateway,
    dd: &Path,
    dir: &Path,
    device: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec!["adapter", "zwave", "join", "--seconds", "120"];
    args.extend_from_slice(extra);
    let out = dir.join(format!("join-{}.txt", device.replace(':', "_")));
    let mut join = Cli::spawn(g, &args, &out);
    let reg = wait_audit(dd, &format!("{device} registered"), |r| {
        is(r, "device-registered", device)
    });
    let o = g.cli(&["adapter", "zwave", "close"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(join.wait_exit(), "{}", join.text());
    reg
}

#[test]
fn zwave_s2_authenticated_and_access_control_need_the_dsk_pin() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let port = free_port();
    let mock = Mock::start(dir, port);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p, port)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    wait_audit(&dd, "the Z-Wave link up", |r| zwave_link(r, "Up"));

    // no PIN: a node asking only for S2 Authenticated gets no S2 class (KEX Fail), audited
    let a7 = mock.ctl("include 7 s2auth");
    pin_of(&a7);
    let reg = include_with(&g, &dd, dir, "zwave:c0ffee01-7", &[]);
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security: none"),
        "{reg}"
    );
    let f = wait_audit(&dd, "node 7's bootstrap refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-7") && cause(r) == "s2-bootstrap-failed"
    });
    assert!(f.to_string().contains("need the DSK PIN"), "{f}");

    // a wrong PIN: Warden's temporary keys differ from the node's, its KEX Set echo does not
    // decrypt, KEX Fail; the node is included without security, refused and audited
    let a8 = mock.ctl("include 8 s2auth");
    let right8: u32 = pin_of(&a8).parse().unwrap();
    let wrong8 = format!("{:05}", (right8 + 1) % 65536);
    let reg = include_with(&g, &dd, dir, "zwave:c0ffee01-8", &["--pin", &wrong8]);
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security: none"),
        "{reg}"
    );
    let f = wait_audit(&dd, "node 8's bootstrap refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-8") && cause(r) == "s2-bootstrap-failed"
    });
    assert!(f.to_string().contains("DSK PIN does not match"), "{f}");
    wait_audit(&dd, "node 8's KEX Set echo did not decrypt", |r| {
        is(r, "uplink", "zwave:c0ffee01-8") && cause(r) == "s2-decrypt-failed"
    });
    // no S2 keys: its S2 frames are refused as from a node without S2
    assert_eq!(
        mock.ctl("s2temp 8 19.0").split(' ').next(),
        Some("ERR"),
        "the mock node holds no session with Warden"
    );

    // the right PIN (the positive control): S2 Authenticated granted, encrypted reports at
    // shared-key
    let a10 = mock.ctl("include 10 s2auth");
    let pin10 = pin_of(&a10);
    let reg = include_with(&g, &dd, dir, "zwave:c0ffee01-10", &["--pin", &pin10]);
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security: s2-authenticated"),
        "{reg}"
    );

    // a lock-like node asking for Access Control and Authenticated: both keys sent and verified,
    // its frames under Access Control
    let a9 = mock.ctl("include 9 s2lock");
    let pin9 = pin_of(&a9);
    let reg = include_with(&g, &dd, dir, "zwave:c0ffee01-9", &["--pin", &pin9]);
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security: s2-access-control"),
        "{reg}"
    );
    // node 9 under a profile that accepts only S2 Access Control (the positive control of the
    // security-label check below), node 10 under one that takes any shared-key security
    for (node, id, v, profile, label) in [
        (
            10,
            "zwave:c0ffee01-10",
            20.5,
            "zws2",
            "zwave-s2-authenticated",
        ),
        (
            9,
            "zwave:c0ffee01-9",
            21.25,
            "zwlock",
            "zwave-s2-access-control",
        ),
    ] {
        approve(&g, id, profile);
        assert_eq!(
            mock.ctl(&format!("s2temp {node} {v}")),
            format!("OK s2temp {node}")
        );
        sub.wait_lines(T, &format!("{id}'s temperature"), |_| {
            latest(&sub, id, "temperature").is_some()
        });
        let t = latest(&sub, id, "temperature").unwrap();
        assert_eq!(t["value"], v, "{t}");
        assert_eq!(t["assurance"], "shared-key", "{t}");
        assert_eq!(t["security"], label, "{t}");
        let res = command(&g, id, "refresh");
        assert_eq!(res["outcome"], "delivered", "{res}");
    }
    // node 10 (S2 Authenticated, also `shared-key`) moved to the Access Control profile: its
    // reports and commands are refused, naming the label
    approve(&g, "zwave:c0ffee01-10", "zwlock");
    assert_eq!(mock.ctl("s2temp 10 22.5"), "OK s2temp 10");
    let d = wait_audit(&dd, "node 10's report refused for its security", |r| {
        is(r, "uplink", "zwave:c0ffee01-10")
            && r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("security `zwave-s2-authenticated`"))
    });
    assert_eq!(d["verdict"], "deny", "{d}");
    let res = command(&g, "zwave:c0ffee01-10", "refresh");
    assert_ne!(res["outcome"], "delivered", "{res}");
    assert!(res.to_string().contains("zwave-s2-authenticated"), "{res}");
    assert!(
        !values(&sub, "zwave:c0ffee01-10", "temperature")
            .iter()
            .any(|v| *v == 22.5)
    );
    // a plain frame from the Access Control node is a downgrade, and so is a frame under a
    // lower S2 class whose key it also holds (S2 Authenticated, granted with Access Control)
    assert_eq!(mock.ctl("temp 9 30.0"), "OK temp 9");
    wait_audit(&dd, "node 9's plain frame refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-9") && cause(r) == "downgrade"
    });
    assert_eq!(mock.ctl("granted 9"), "OK ac,auth");
    assert_eq!(mock.ctl("s2temp 9 31.0 auth"), "OK s2temp 9");
    let d = wait_audit(&dd, "node 9's frame under S2 Authenticated refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-9")
            && cause(r) == "downgrade"
            && r.to_string().contains("under s2-authenticated")
    });
    assert!(d.to_string().contains("granted s2-access-control"), "{d}");
    // its next frame under Access Control is taken (positive control)
    assert_eq!(mock.ctl("s2temp 9 21.75 ac"), "OK s2temp 9");
    sub.wait_lines(T, "node 9's frame under Access Control again", |_| {
        latest(&sub, "zwave:c0ffee01-9", "temperature").is_some_and(|e| e["value"] == 21.75)
    });

    // Fewer classes than requested: a node asking for S2 Access Control and S2 Unauthenticated,
    // joined without the DSK PIN, is granted S2 Unauthenticated only — what the node itself
    // holds after the key exchange, and what Warden stored
    let a15 = mock.ctl("include 15 s2multi");
    pin_of(&a15);
    let reg = include_with(&g, &dd, dir, "zwave:c0ffee01-15", &[]);
    assert!(
        reg["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("security: s2-unauthenticated"),
        "{reg}"
    );
    assert_eq!(mock.ctl("granted 15"), "OK unauth");
    let d = device_show(&g, "zwave:c0ffee01-15");
    assert!(
        d.to_string().contains("s2-unauthenticated")
            && !d.to_string().contains("s2-access-control"),
        "{d}"
    );
    approve(&g, "zwave:c0ffee01-15", "zws2");
    assert_eq!(mock.ctl("s2temp 15 20.25"), "OK s2temp 15");
    sub.wait_lines(T, "node 15's temperature under S2 Unauthenticated", |_| {
        latest(&sub, "zwave:c0ffee01-15", "temperature").is_some_and(|e| e["value"] == 20.25)
    });
    // the node gets the Access Control key (read out of node 9): a frame under it decrypts, but
    // the class was never granted to node 15, so it is refused and audited, and not published
    assert_eq!(mock.ctl("stealkey 9 15 ac"), "OK stealkey 15");
    assert_eq!(mock.ctl("s2temp 15 35.0 ac"), "OK s2temp 15");
    let d = wait_audit(&dd, "node 15's frame under Access Control refused", |r| {
        is(r, "uplink", "zwave:c0ffee01-15") && cause(r) == "s2-class-not-granted"
    });
    assert!(
        d.to_string()
            .contains("under s2-access-control from a node granted only s2-unauthenticated"),
        "{d}"
    );
    // its next frame under its own class is taken again
    assert_eq!(mock.ctl("s2temp 15 20.5 unauth"), "OK s2temp 15");
    sub.wait_lines(T, "node 15's next frame under S2 Unauthenticated", |_| {
        latest(&sub, "zwave:c0ffee01-15", "temperature").is_some_and(|e| e["value"] == 20.5)
    });
    assert_eq!(
        values(&sub, "zwave:c0ffee01-15", "temperature"),
        vec![serde_json::json!(20.25), serde_json::json!(20.5)]
    );

    // S2 multicast (MPAN), Warden as a member of a group node 15 multicasts to: its first
    // multicast comes before Warden holds the group's MPAN (refused, `s2-no-mpan`); its
    // singlecast follow-up decrypts and is answered with a Nonce Report with MOS, for which the
    // node sends the group's MPAN; its next multicast decrypts with it, at `shared-key`; the same
    // multicast again is a replay
    const N15: &str = "zwave:c0ffee01-15";
    assert!(mock.ctl("mcast 15 24.0").starts_with("OK mcast 15"));
    wait_audit(&dd, "the multicast before the MPAN refused", |r| {
        is(r, "uplink", N15) && cause(r) == "s2-no-mpan"
    });
    assert_eq!(mock.ctl("mcfollow 15 24.0"), "OK mcfollow 15 mos");
    sub.wait_lines(T, "the follow-up's temperature", |_| {
        latest(&sub, N15, "temperature").is_some_and(|e| e["value"] == 24.0)
    });
    assert!(mock.ctl("mcast 15 24.5").starts_with("OK mcast 15"));
    sub.wait_lines(T, "the multicast's temperature", |_| {
        latest(&sub, N15, "temperature").is_some_and(|e| e["value"] == 24.5)
    });
    let t = latest(&sub, N15, "temperature").unwrap();
    assert_eq!(t["assurance"], "shared-key", "{t}");
    assert_eq!(t["security"], "zwave-s2-unauthenticated", "{t}");
    assert_eq!(mock.ctl("replay"), "OK replay");
    wait_audit(&dd, "the replayed multicast refused", |r| {
        is(r, "uplink", N15) && cause(r) == "replay" && r.to_string().contains("multicast")
    });
    // a follow-up while Warden holds the MPAN asks for nothing; the next multicast still decrypts
    assert_eq!(mock.ctl("mcfollow 15 24.5"), "OK mcfollow 15");
    assert!(mock.ctl("mcast 15 25.0").starts_with("OK mcast 15"));
    sub.wait_lines(T, "the next multicast's temperature", |_| {
        latest(&sub, N15, "temperature").is_some_and(|e| e["value"] == 25.0)
    });
    assert_eq!(
        values(&sub, N15, "temperature"),
        vec![
            serde_json::json!(20.25),
            serde_json::json!(20.5),
            serde_json::json!(24.0),
            serde_json::json!(24.5),
            serde_json::json!(24.5),
            serde_json::json!(25.0)
        ],
        "nothing from the refused multicasts"
    );

    // Nonce floods: a granted node asking for nonces in a loop gets a few Nonce Reports, then one
    // per refill period; the rest are dropped and audited. Counted by the mock, which sees every
    // SEND_DATA the host makes.
    let sent = |m: &Mock| -> usize {
        let r = m.ctl("sent 10 9f02");
        r.strip_prefix("OK ").unwrap().parse().unwrap()
    };
    let before = sent(&mock);
    // the positive control: one Nonce Get is answered
    assert!(mock.ctl("appcmd 10 9f0101").starts_with("OK"));
    wait_for(T, "a Nonce Report to node 10", || {
        (sent(&mock) > before).then_some(())
    });
    let started = std::time::Instant::now();
    for i in 0..60u8 {
        assert!(
            mock.ctl(&format!("appcmd 10 9f01{:02x}", i.wrapping_add(2)))
                .starts_with("OK")
        );
    }
    wait_audit(&dd, "the nonce flood audited", |r| {
        is(r, "uplink", "zwave:c0ffee01-10") && cause(r) == "s2-nonce-flood"
    });
    // a command to another node goes through the same link queue after any queued Nonce Report
    let res = command(&g, "zwave:c0ffee01-9", "refresh");
    assert_eq!(res["outcome"], "delivered", "{res}");
    let answered = sent(&mock) - before;
    let elapsed = started.elapsed();
    let bound = 1 + 6 + usize::try_from(elapsed.as_secs() / 2).unwrap() + 1;
    eprintln!(
        "nonce flood: 61 Nonce Gets in {elapsed:?}, {answered} Nonce Reports sent (bound {bound})"
    );
    assert!(answered >= 2, "the flood got no answer at all: {answered}");
    assert!(
        answered <= bound,
        "{answered} Nonce Reports for 61 Nonce Gets in {elapsed:?}"
    );

    // the PIN was taken but never written back: the audited requests say one was given, no more
    let ops = audit_where(&dd, |r| {
        r["action"] == "adapter-operation" && r["detail"]["request"]["op"] == "join"
    });
    assert!(ops.len() >= 4, "{ops:?}");
    let with_pin: Vec<_> = ops
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("with a DSK PIN")
        })
        .collect();
    assert_eq!(with_pin.len(), 3, "{ops:?}");
    for r in &ops {
        assert!(r["detail"]["request"].get("pin").is_none(), "{r}");
        let s = r.to_string();
        for pin in [&wrong8, &pin10, &pin9] {
            assert!(!s.contains(&format!("\"{pin}\"")), "{s}");
        }
    }
    assert!(values(&sub, "zwave:c0ffee01-8", "temperature").is_empty());
    g.stop();
}

/// The final (not `queued`) result of command `id` on MQTT.
fn final_result(sub: &Subscriber, id: &str) -> serde_json::Value {
    let find = |l: &[(String, String)]| {
        l.iter()
            .filter(|(t, _)| t.ends_with("/cmd/result"))
            .map(|(_, p)| json(p))
            .find(|r| r["command_id"] == id && r["outcome"] != "queued")
    };
    let l = sub.wait_lines(T, &format!("command {id}'s result"), |l| find(l).is_some());
    find(&l).unwrap()
}

/// A command to a sleeping node: answered `queued` at once, naming the wake-up; its id.
fn queued(res: &serde_json::Value) -> String {
    assert_eq!(res["outcome"], "queued", "{res}");
    assert!(
        res["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Wake Up Notification")),
        "{res}"
    );
    res["command_id"].as_str().unwrap().to_owned()
}

/// `warden command` with arguments; the printed result JSON.
fn command_with(g: &Gateway, id: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["command", id, name];
    a.extend_from_slice(args);
    let o = g.cli(&a);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}

#[test]
fn zwave_supervision_status_is_the_command_result() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let port = free_port();
    let mock = Mock::start(dir, port);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    let mut text = config(&p, port);
    text.push_str(
        r#"
[profiles.zwsup]
points = ["switch"]
commands = ["turn_on", "turn_off", "set_config"]
min_assurance = "none"
"#,
    );
    std::fs::write(&cfg, text).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    wait_audit(&dd, "the Z-Wave link up", |r| zwave_link(r, "Up"));
    // allowed telemetry is audited per minute in aggregate, and held commands finish on MQTT
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    // subscribed once the retained gateway topics arrive
    sub.wait_lines(T, "the subscription up", |l| !l.is_empty());

    const SUP: &str = "zwave:c0ffee01-11";
    assert_eq!(mock.ctl("include 11 supswitch"), "OK include 11");
    let reg = include_with(&g, &dd, dir, SUP, &[]);
    assert!(
        reg["reason"].as_str().unwrap_or_default().contains("0x6c"),
        "Supervision in its command classes: {reg}"
    );
    approve(&g, SUP, "zwsup");

    // a supervised Set the node carries out: delivered, with the node's own status
    let res = command(&g, SUP, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(
        res["points"],
        serde_json::json!([{"name": "supervision", "value": "success"}]),
        "{res}"
    );
    assert_eq!(mock.state()["switches"]["11"], true);
    let res = command_with(&g, SUP, "set_config", &["parameter=1", "value=5"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    // the node refuses these (no parameter 9; 99 is over the parameter's maximum): the radio
    // delivered them, but the result is the node's status, a device error
    for args in [["parameter=9", "value=1"], ["parameter=1", "value=99"]] {
        let res = command_with(&g, SUP, "set_config", &args);
        assert_eq!(res["outcome"], "device-error", "{args:?}: {res}");
        assert!(
            res.to_string().contains("supervision status: fail"),
            "{args:?}: {res}"
        );
    }
    // the switch on a node without Supervision (positive control for the wrapping): delivered
    // from the transmit status alone, no supervision status
    wait_for(T, "the switch interviewed", || {
        (!device_show(&g, SWITCH)["device"]["manufacturer"].is_null()).then_some(())
    });
    approve(&g, SWITCH, "zwswitch");
    let res = command(&g, SWITCH, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert!(!res.to_string().contains("supervision"), "{res}");
    let res = command(&g, SUP, "turn_off");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(mock.state()["switches"]["11"], false);

    // a sleeping node that supports Supervision: a Set for it is held until its Wake Up
    // Notification, then sent inside Supervision Get, and the node's Supervision Report is the
    // command's result, as for a node that is awake
    const SLEEPSUP: &str = "zwave:c0ffee01-13";
    assert_eq!(mock.ctl("include 13 supsleepy"), "OK include 13");
    let reg = include_with(&g, &dd, dir, SLEEPSUP, &[]);
    let reason = reg["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("listening: false"), "{reg}");
    assert!(
        reason.contains("0x6c"),
        "Supervision in its command classes: {reg}"
    );
    approve(&g, SLEEPSUP, "zwsup");
    let allowed = |dd: &Path| {
        audit_where(dd, |r| {
            is(r, "command", SLEEPSUP) && r["verdict"] == "allow"
        })
        .len()
    };
    let set = queued(&command_with(
        &g,
        SLEEPSUP,
        "set_config",
        &["parameter=1", "value=7"],
    ));
    wait_for(T, "the held Set allowed", || {
        (allowed(&dd) == 1).then_some(())
    });
    // the awake relay's command goes meanwhile (positive control): the sleeping node gets nothing
    let res = command(&g, SUP, "turn_on");
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(mock.state()["switches"]["11"], true);
    assert_eq!(
        mock.ctl("sent 13 6c01"),
        "OK 0",
        "sent before the node woke"
    );
    assert!(mock.state()["config"]["13"].is_null());
    assert_eq!(mock.ctl("wakeup 13"), "OK wakeup 13");
    let res = final_result(&sub, &set);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(
        res["points"],
        serde_json::json!([{"name": "supervision", "value": "success"}]),
        "{res}"
    );
    assert_eq!(mock.state()["config"]["13"], 7);
    assert_eq!(
        mock.ctl("sent 13 6c01"),
        "OK 1",
        "the held Set went supervised"
    );
    // two held at once, one the node refuses (99 is over the parameter's maximum): each gets
    // its own status, in order, at the one wake-up
    let bad = queued(&command_with(
        &g,
        SLEEPSUP,
        "set_config",
        &["parameter=1", "value=99"],
    ));
    let good = queued(&command_with(
        &g,
        SLEEPSUP,
        "set_config",
        &["parameter=1", "value=3"],
    ));
    wait_for(T, "the third held Set allowed", || {
        (allowed(&dd) == 3).then_some(())
    });
    assert_eq!(
        mock.ctl("sent 13 6c01"),
        "OK 1",
        "sent before the node woke again"
    );
    assert_eq!(mock.ctl("wakeup 13"), "OK wakeup 13");
    let rb = final_result(&sub, &bad);
    let rg = final_result(&sub, &good);
    assert_eq!(rb["outcome"], "device-error", "{rb}");
    assert!(rb.to_string().contains("supervision status: fail"), "{rb}");
    assert_eq!(rg["outcome"], "delivered", "{rg}");
    assert_eq!(
        rg["points"],
        serde_json::json!([{"name": "supervision", "value": "success"}]),
        "{rg}"
    );
    assert_eq!(mock.state()["config"]["13"], 3);
    assert_eq!(mock.ctl("sent 13 6c01"), "OK 3");
    // the node acts on a held Set but its Supervision Report is lost: `timeout` after
    // send_timeout_ms, although the radio delivered it
    assert_eq!(mock.ctl("mute 13 on"), "OK mute 13 on");
    let lost = queued(&command_with(
        &g,
        SLEEPSUP,
        "set_config",
        &["parameter=1", "value=4"],
    ));
    wait_for(T, "the fourth held Set allowed", || {
        (allowed(&dd) == 4).then_some(())
    });
    assert_eq!(mock.ctl("wakeup 13"), "OK wakeup 13");
    let rl = final_result(&sub, &lost);
    assert_eq!(rl["outcome"], "timeout", "{rl}");
    assert_eq!(mock.state()["config"]["13"], 4);
    assert_eq!(mock.ctl("sent 13 6c01"), "OK 4");
    assert_eq!(mock.ctl("mute 13 off"), "OK mute 13 off");

    // a report the node supervises itself: its temperature is taken and Warden answers
    // Supervision Report (session 5, success)
    wait_for(T, "the sensor interviewed", || {
        (!device_show(&g, SENSOR)["device"]["manufacturer"].is_null()).then_some(())
    });
    approve(&g, SENSOR, "zwsensor");
    assert_eq!(mock.ctl("sent 3 6c0205ff"), "OK 0");
    assert!(mock.ctl("appcmd 3 6c0105063105012200d7").starts_with("OK"));
    sub.wait_lines(T, "the supervised report's temperature on MQTT", |_| {
        latest(&sub, SENSOR, "temperature").is_some_and(|t| t["value"] == 21.5)
    });
    wait_for(T, "the Supervision Report to node 3", || {
        (mock.ctl("sent 3 6c0205ff") == "OK 1").then_some(())
    });
    // a Supervision Get whose length byte claims more than it carries is refused
    assert!(mock.ctl("appcmd 3 6c0106093105").starts_with("OK"));
    wait_audit(&dd, "the truncated Supervision Get refused", |r| {
        is(r, "uplink", SENSOR) && cause(r) == "malformed"
    });
    assert_eq!(
        mock.ctl("sent 3 6c02"),
        "OK 1",
        "the malformed one was not answered"
    );
    g.stop();
}

#[test]
fn zwave_s0_node_included_and_its_encrypted_reports_taken() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let port = free_port();
    let mock = Mock::start(dir, port);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p, port)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    wait_audit(&dd, "the Z-Wave link up", |r| zwave_link(r, "Up"));

    const S0NODE: &str = "zwave:c0ffee01-12";
    assert!(mock.ctl("include 12 s0sensor").starts_with("OK include 12"));
    let reg = include_with(&g, &dd, dir, S0NODE, &[]);
    let reason = reg["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("security: s0"), "{reg}");
    // the interview ran encrypted: the mock answers its secure command classes only under S0
    assert_eq!(reg["detail"]["manufacturer"], "0x0371", "{reg}");
    approve(&g, S0NODE, "zws2");
    assert_eq!(mock.ctl("s0temp 12 17.5"), "OK s0temp 12");
    sub.wait_lines(T, "the S0 node's temperature", |_| {
        latest(&sub, S0NODE, "temperature").is_some()
    });
    let t12 = latest(&sub, S0NODE, "temperature").unwrap();
    assert_eq!(t12["value"], 17.5, "{t12}");
    assert_eq!(t12["assurance"], "shared-key", "{t12}");
    // the same frame again: its nonce was used up
    assert_eq!(mock.ctl("replay"), "OK replay");
    wait_audit(&dd, "the replayed S0 frame refused", |r| {
        is(r, "uplink", S0NODE) && cause(r) == "replay"
    });
    // a plain frame from the S0 node is a downgrade
    assert_eq!(mock.ctl("temp 12 30.0"), "OK temp 12");
    wait_audit(&dd, "the plain frame refused", |r| {
        is(r, "uplink", S0NODE) && cause(r) == "downgrade"
    });
    // the session goes on, and a command goes encrypted and is answered encrypted
    assert_eq!(mock.ctl("s0temp 12 18.25"), "OK s0temp 12");
    sub.wait_lines(T, "the next S0 report", |_| {
        latest(&sub, S0NODE, "temperature").is_some_and(|e| e["value"] == 18.25)
    });
    let res = command(&g, S0NODE, "refresh");
    assert_eq!(res["outcome"], "delivered", "{res}");
    sub.wait_lines(T, "the answer to the S0 refresh", |_| {
        values(&sub, S0NODE, "temperature").len() >= 3
    });
    assert_eq!(
        values(&sub, S0NODE, "temperature"),
        vec![
            serde_json::json!(17.5),
            serde_json::json!(18.25),
            serde_json::json!(18.25)
        ]
    );
    // a report split over two sequenced S0 encapsulations (built by the mock with zwave-js's S0
    // primitives and the node's key; zwave-js never sends them itself) is joined and taken
    assert_eq!(mock.ctl("s0seq 12 19.5"), "OK s0seq 12");
    sub.wait_lines(T, "the sequenced S0 report", |_| {
        latest(&sub, S0NODE, "temperature").is_some_and(|e| e["value"] == 19.5)
    });
    let t12 = latest(&sub, S0NODE, "temperature").unwrap();
    assert_eq!(t12["assurance"], "shared-key", "{t12}");
    assert_eq!(t12["security"], "zwave-s0", "{t12}");
    // each part authentic, the sequence not: refused with its cause, audited, nothing published
    let sequenced = |cause_: &str| {
        audit_where(&dd, |r| {
            is(r, "uplink", S0NODE)
                && cause(r) == cause_
                && r.to_string().contains("a sequenced S0 command")
        })
        .len()
    };
    for (mode, want) in [
        ("repeat", "replay"),
        ("mismatch", "s0-sequence-mismatch"),
        ("second", "s0-second-without-first"),
    ] {
        assert_eq!(
            mock.ctl(&format!("s0seq 12 40.0 {mode}")),
            "OK s0seq 12",
            "{mode}"
        );
        wait_for(T, &format!("the {mode} sequence refused as {want}"), || {
            (sequenced(want) == 1).then_some(())
        });
    }
    // the node's next sequenced report is taken again
    assert_eq!(mock.ctl("s0seq 12 20.5"), "OK s0seq 12");
    sub.wait_lines(T, "the sequenced S0 report after the refusals", |_| {
        latest(&sub, S0NODE, "temperature").is_some_and(|e| e["value"] == 20.5)
    });
    assert_eq!(
        values(&sub, S0NODE, "temperature"),
        vec![
            serde_json::json!(17.5),
            serde_json::json!(18.25),
            serde_json::json!(18.25),
            serde_json::json!(19.5),
            serde_json::json!(20.5)
        ]
    );
    // an S0 frame from a node without S0 is refused
    assert!(mock.ctl("appcmd 3 9840").starts_with("OK"));
    wait_audit(&dd, "an S0 Nonce Get from a plain node refused", |r| {
        is(r, "uplink", SENSOR) && cause(r) == "s0-not-granted"
    });
    g.stop();
}
