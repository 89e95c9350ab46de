//! The BACnet adapter end to end against real bacpypes3 devices on loopback
//! (tests/peers/bacnet/device.py; 1002 on 127.0.0.2 with confirmed COV, 1003 on 127.0.0.3 with
//! unconfirmed COV, 1004 on 127.0.0.4 polled only): directed then broadcast discovery (a scan
//! with its progress), the object-list walk, present values on MQTT at assurance `none`, COV
//! notifications as telemetry with subscriptions renewed past their lifetime, a write with a
//! priority and its relinquish checked by an independent bacpypes3 client reading the priority
//! array, writes refused before sending, a device that stops answering while its neighbours keep
//! their pace, hostile datagrams, and tshark decoding every frame Warden sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "zigbee_support/mod.rs"]
mod zigbee_support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_e2e::*;
use zigbee_support::{Cli, T, audit_where, device_show, latest, values, wait_audit};

const WARDEN_IP: &str = "127.0.0.19";
const D2: &str = "bacnet:0-1002";
const D3: &str = "bacnet:0-1003";
const D4: &str = "bacnet:0-1004";
/// Approved under a profile that requires `certificate`: plain BACnet/IP cannot satisfy it.
const D5: &str = "bacnet:0-1005";

fn peers() -> PathBuf {
    peer_dir("bacnet")
}

fn python() -> PathBuf {
    peer_python("bacnet", ".venv", "bacnet")
}

/// One bacpypes3 device process, killed when dropped.
struct Device {
    child: Child,
    log: PathBuf,
}

impl Device {
    fn start(dir: &Path, instance: u32, ip: &str) -> Self {
        let log = dir.join(format!("device-{instance}-{}.log", free_port()));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(python())
            .arg(peers().join("device.py"))
            .args([
                "--instance",
                &instance.to_string(),
                "--name",
                &format!("dev{instance}"),
                "--address",
                &format!("{ip}/8:47808"),
                "--tick",
                "1",
            ])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("python");
        let d = Self { child, log };
        wait_for(T, &format!("device {instance} up"), || {
            std::fs::read_to_string(&d.log)
                .unwrap_or_default()
                .contains("up on")
                .then_some(())
        });
        d
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tshark capturing BACnet/IP on loopback (the tests run as root), stopped with SIGINT.
struct Capture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    fn start(dir: &Path) -> Self {
        let file = dir.join("bacnet.pcapng");
        let log = dir.join("tshark.log");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-f", "udp port 47808", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("tshark (run tests/scripts/install-bacnet.sh)");
        let c = Self { child, file, log };
        wait_for(T, "tshark capturing", || {
            std::fs::read_to_string(&c.log)
                .unwrap_or_default()
                .contains("Capturing on")
                .then_some(())
        });
        c
    }

    fn stop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let _ = self.child.wait();
    }

    /// Frames matching a display filter.
    fn count(&self, filter: &str) -> usize {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args(["-Y", filter])
            .output()
            .unwrap();
        assert!(o.status.success(), "tshark -Y {filter}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).lines().count()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(p: &Ports) -> String {
    format!(
        r#"{base}
[profiles.bacsecure]
points = ["zonetemp", "setpoint", "fan", "alarm", "mode"]
min_assurance = "certificate"

[profiles.bacdev]
points = ["zonetemp", "setpoint", "fan", "alarm", "mode"]
commands = ["write_setpoint", "write_fan", "relinquish_fan", "write_mode", "write_zonetemp", "relinquish_setpoint"]
min_assurance = "none"

[adapters.bacnet]
bind = "{WARDEN_IP}:47808"
broadcast = "127.255.255.255:47808"
devices = ["127.0.0.3:47808"]
discover_on_start = false
poll_s = 1
apdu_timeout_ms = 400
retries = 1
cov = "confirmed"
cov_lifetime_s = 6
max_devices = 6
# small enough that bacpypes3 segments its longer answers (interviews, polls)
max_apdu = 50

[adapters.bacnet.cov_per_device]
"1003" = "unconfirmed"
"1004" = "off"
"#,
        base = base_config(p)
    )
}

/// An independent bacpypes3 client reading `object property` from the device at `ip`.
fn client_read(ip: &str, object: &str, property: &str) -> serde_json::Value {
    let o = Command::new(python())
        .arg(peers().join("client.py"))
        .args([
            "--address",
            "127.0.0.50/8",
            "--instance",
            "3999",
            "--target",
            &format!("{ip}:47808"),
            object,
            property,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "client.py: {}", stderr(&o));
    json(stdout(&o).lines().last().unwrap_or_default())["value"].clone()
}

fn command(g: &Gateway, id: &str, name: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["command", id, name];
    a.extend_from_slice(args);
    let o = g.cli(&a);
    let out = stdout(&o);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from warden command: {out} {}", stderr(&o)));
    json(&out[start..])
}

fn approve(g: &Gateway, id: &str) {
    let o = g.cli(&[
        "devices",
        "approve",
        id,
        "--profile",
        "bacdev",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn is(r: &serde_json::Value, action: &str, device: &str) -> bool {
    r["action"] == action && r["device"] == device
}

fn cause(r: &serde_json::Value) -> &str {
    r["detail"]["cause"].as_str().unwrap_or_default()
}

fn link(r: &serde_json::Value, name: &str, state: &str) -> bool {
    r["action"] == "link-health" && r["detail"]["link"] == name && r["detail"]["state"] == state
}

fn floats(sub: &Subscriber, id: &str, point: &str) -> Vec<f64> {
    values(sub, id, point)
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

/// BVLC Original-Unicast + NPDU (no routing) + `apdu`.
fn bip(apdu: &[u8]) -> Vec<u8> {
    let len = (apdu.len() + 6) as u16;
    let mut f = vec![0x81, 0x0a];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0x01, 0x00]);
    f.extend_from_slice(apdu);
    f
}

#[test]
fn bacnet_ip_discovery_cov_polling_writes_silence_and_hostile_frames() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let _d2 = Device::start(dir, 1002, "127.0.0.2");
    let mut d3 = Device::start(dir, 1003, "127.0.0.3");
    let _d4 = Device::start(dir, 1004, "127.0.0.4");
    let _d5 = Device::start(dir, 1005, "127.0.0.5");
    let mut cap = Capture::start(dir);
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, config(&p)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    wait_audit(&dd, "the BACnet/IP port up", |r| {
        link(r, &format!("bacnet:{WARDEN_IP}:47808"), "Up")
    });

    // directed discovery: only the configured address was asked, so 1003 alone is interviewed;
    // its object list walked, it lands pending with what the interview learned
    let reg = wait_audit(&dd, "1003 registered from a directed Who-Is", |r| {
        is(r, "device-registered", D3)
    });
    let reason = reg["reason"].as_str().unwrap_or_default().to_owned();
    for o in [
        "zonetemp: analog-input,1 \"ZoneTemp\" °C",
        "setpoint: analog-value,1 \"Setpoint\" °C",
        "fan: binary-output,1 \"Fan\"",
        "alarm: binary-input,1 \"Alarm\"",
        "mode: multi-state-value,1 \"Mode\"",
        "object_list: 7 objects, 5 mapped to points",
    ] {
        assert!(reason.contains(o), "{o} missing from {reg}");
    }
    assert!(reason.contains("assurance: none"), "{reg}");
    let d = device_show(&g, D3);
    assert_eq!(d["device"]["status"], "pending", "{d}");
    assert!(!d["device"]["manufacturer"].is_null(), "{d}");
    assert!(device_show(&g, D2).is_null(), "1002 was not asked yet");
    assert!(device_show(&g, D4).is_null(), "1004 was not asked yet");

    // broadcast discovery: a scan from the CLI finds all three, with progress
    let mut scan = Cli::spawn(
        &g,
        &["adapter", "bacnet", "scan", "--seconds", "4"],
        &dir.join("scan.txt"),
    );
    assert!(scan.wait_exit(), "{}", scan.text());
    let text = scan.text();
    assert!(text.contains("4 devices answered"), "{text}");
    for id in [D2, D3, D4, D5] {
        assert!(text.contains(id), "{id} not in the scan: {text}");
    }
    for id in [D2, D4, D5] {
        wait_for(T, &format!("{id} interviewed"), || {
            let d = device_show(&g, id);
            (d["device"]["status"] == "pending").then_some(())
        });
    }

    // object search (Who-Has, broadcast and directed to 127.0.0.3): each device object is named
    // `dev<instance>`, so one name is one device's; every device has analog-value 1; nobody has
    // `NoSuchObject` (the scan above is the positive control that all four answer)
    let has_scan = |has: &str, file: &str| {
        let mut s = Cli::spawn(
            &g,
            &["adapter", "bacnet", "scan", "--seconds", "3", "--has", has],
            &dir.join(file),
        );
        assert!(s.wait_exit(), "{}", s.text());
        s.text()
    };
    let text = has_scan("dev1003", "has-name.txt");
    assert!(text.contains("1 device has `dev1003`"), "{text}");
    assert!(
        text.contains(&format!(
            "{D3} has device:1003 `dev1003` (I-Have from 127.0.0.3:47808)"
        )),
        "{text}"
    );
    for id in [D2, D4, D5] {
        assert!(!text.contains(id), "{id} does not have dev1003: {text}");
    }
    let text = has_scan("analog-value:1", "has-id.txt");
    assert!(text.contains("4 devices have analog-value:1"), "{text}");
    for id in [D2, D3, D4, D5] {
        assert!(
            text.contains(&format!("{id} has analog-value:1 `Setpoint`")),
            "{id} not in the object search: {text}"
        );
    }
    let text = has_scan("NoSuchObject", "has-none.txt");
    assert!(text.contains("0 devices have `NoSuchObject`"), "{text}");
    for id in [D2, D3, D4, D5] {
        assert!(!text.contains(id), "{id} has no NoSuchObject: {text}");
    }

    // pending devices' values are denied; approved, they reach MQTT at assurance `none`
    wait_audit(&dd, "a pending device's values denied", |r| {
        is(r, "uplink", D4) && r["verdict"] == "deny"
    });
    assert!(latest(&sub, D4, "setpoint").is_none());
    for id in [D2, D3, D4] {
        approve(&g, id);
    }
    let o = g.cli(&[
        "devices",
        "approve",
        D5,
        "--profile",
        "bacsecure",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for id in [D2, D3, D4] {
        sub.wait_lines(T, &format!("{id}'s present values"), |_| {
            ["zonetemp", "setpoint", "fan", "alarm", "mode"]
                .iter()
                .all(|p| latest(&sub, id, p).is_some())
        });
        let sp = latest(&sub, id, "setpoint").unwrap();
        assert_eq!(sp["value"], 21.5, "{sp}");
        assert_eq!(sp["unit"], "°C", "{sp}");
        assert_eq!(sp["assurance"], "none", "{sp}");
        assert_eq!(latest(&sub, id, "fan").unwrap()["value"], false);
        assert_eq!(latest(&sub, id, "alarm").unwrap()["value"], false);
        assert_eq!(latest(&sub, id, "mode").unwrap()["value"], 1);
    }

    // 1005's profile requires `certificate`: its BACnet/IP values (assurance `none`) are denied
    // though it is approved, while the other three's reach MQTT (checked above). A command its
    // profile allowed would be refused by the adapter too (BACnet/IP is below `certificate`):
    // tests/tests/bacnet_sc.rs checks that beside a BACnet/SC device that gets its write.
    let denied = wait_audit(&dd, "an approved 1005's BACnet/IP value denied", |r| {
        is(r, "uplink", D5)
            && r["verdict"] == "deny"
            && r["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("certificate")
    });
    assert!(
        denied["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate"),
        "{denied}"
    );
    assert!(latest(&sub, D5, "setpoint").is_none(), "1005 published");

    // COV: ZoneTemp steps +0.5 every second; on 1002 (confirmed) and 1003 (unconfirmed) it is
    // subscribed, so it is never polled — its values come from notifications. The lifetime is
    // 6 s: values still arriving 10 s of ticks later prove the subscriptions were renewed.
    for id in [D2, D3] {
        let first = floats(&sub, id, "zonetemp")[0];
        sub.wait_lines(T, &format!("{id}'s ZoneTemp past its COV lifetime"), |_| {
            floats(&sub, id, "zonetemp")
                .last()
                .is_some_and(|v| *v >= first + 5.0)
        });
        let v = floats(&sub, id, "zonetemp");
        assert!(
            v.windows(2).all(|w| w[1] >= w[0]),
            "notifications in step order: {v:?}"
        );
    }
    // 1004 has no subscription: polled every second
    let first = floats(&sub, D4, "zonetemp")[0];
    sub.wait_lines(T, "1004's ZoneTemp polled", |_| {
        floats(&sub, D4, "zonetemp")
            .last()
            .is_some_and(|v| *v >= first + 2.0)
    });

    // a write at priority 8, checked by an independent client reading the priority array
    let res = command(&g, D2, "write_fan", &["value=true", "priority=8"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    let pa = client_read("127.0.0.2", "binary-output,1", "priority-array");
    let slots = pa.as_array().unwrap();
    assert_eq!(slots.len(), 16, "{pa}");
    for (i, s) in slots.iter().enumerate() {
        if i == 7 {
            assert!(s == "active" || s == 1, "slot 8: {pa}");
        } else {
            assert!(s.is_null(), "slot {}: {pa}", i + 1);
        }
    }
    let pv = client_read("127.0.0.2", "binary-output,1", "present-value");
    assert!(pv == "active" || pv == 1, "{pv}");
    sub.wait_lines(T, "the fan on", |_| {
        latest(&sub, D2, "fan").is_some_and(|e| e["value"] == true)
    });
    // relinquish: slot 8 empty again, the present value back to the relinquish default
    let res = command(&g, D2, "relinquish_fan", &["priority=8"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    let pa = client_read("127.0.0.2", "binary-output,1", "priority-array");
    assert!(
        pa.as_array()
            .unwrap()
            .iter()
            .all(serde_json::Value::is_null),
        "{pa}"
    );
    let pv = client_read("127.0.0.2", "binary-output,1", "present-value");
    assert!(pv == "inactive" || pv == 0, "{pv}");
    let res = command(&g, D2, "write_setpoint", &["value=23.25"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(
        client_read("127.0.0.2", "analog-value,1", "present-value"),
        23.25
    );
    let res = command(&g, D2, "write_mode", &["value=3"]);
    assert_eq!(res["outcome"], "delivered", "{res}");

    // refused before anything is sent: wrong type, out of range, bad priority, an input
    for (name, args, why) in [
        ("write_setpoint", vec!["value=hot"], "must be a number"),
        ("write_fan", vec!["value=2"], "outside"),
        ("write_fan", vec!["value=true", "priority=17"], "priority"),
        ("write_mode", vec!["value=4"], "outside"),
        ("write_zonetemp", vec!["value=1.0"], "read-only"),
        ("relinquish_fan", vec![], "missing `priority`"),
    ] {
        let res = command(&g, D2, name, &args);
        assert_eq!(res["outcome"], "denied", "{name}: {res}");
        assert!(
            res["detail"].as_str().unwrap_or_default().contains(why),
            "{name}: {res}"
        );
    }
    // the device's own refusal comes back with its error class and code: Setpoint is not
    // commandable, so relinquishing a priority of it is refused by bacpypes3
    let res = command(&g, D2, "relinquish_setpoint", &["priority=8"]);
    assert_eq!(res["outcome"], "device-error", "{res}");
    assert!(
        res["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("BACnet error"),
        "{res}"
    );
    assert_eq!(
        client_read("127.0.0.2", "analog-value,1", "present-value"),
        23.25,
        "the refused relinquish changed nothing"
    );

    // a device that stops answering: it goes Down; the others keep their pace meanwhile
    d3.stop();
    let down_at = Instant::now();
    wait_audit(&dd, "1003 down", |r| link(r, "bacnet:0-1003", "Down"));
    let d4_before = floats(&sub, D4, "zonetemp").len();
    let d2_before = floats(&sub, D2, "zonetemp").len();
    sub.wait_lines(T, "1002 and 1004 carry on while 1003 is silent", |_| {
        floats(&sub, D4, "zonetemp").len() >= d4_before + 4
            && floats(&sub, D2, "zonetemp").len() >= d2_before + 4
    });
    assert!(
        down_at.elapsed() < Duration::from_secs(15),
        "the neighbours were slowed: {:?}",
        down_at.elapsed()
    );
    // it comes back (a fresh process: ZoneTemp restarts at 20): Up, resubscribed, values again
    let n3 = floats(&sub, D3, "zonetemp").len();
    let _d3 = Device::start(dir, 1003, "127.0.0.3");
    wait_audit(&dd, "1003 up again", |r| link(r, "bacnet:0-1003", "Up"));
    sub.wait_lines(T, "1003's values after its restart", |_| {
        floats(&sub, D3, "zonetemp").len() >= n3 + 3
    });
    let after: Vec<f64> = floats(&sub, D3, "zonetemp")[n3..].to_vec();
    assert!(after[0] < 25.0, "a restarted device's value: {after:?}");
    assert!(
        after.windows(2).all(|w| w[1] >= w[0]),
        "notifications after the restart: {after:?}"
    );

    // hostile datagrams from a stranger: each refused and audited with its cause, none a panic
    let evil = UdpSocket::bind("127.0.0.66:47808").unwrap();
    let to = format!("{WARDEN_IP}:47808");
    // BVLC length lying about the datagram
    evil.send_to(&[0x81, 0x0a, 0x00, 0x40, 0x01, 0x00], &to)
        .unwrap();
    wait_audit(&dd, "a lying BVLC length refused", |r| {
        r["action"] == "uplink" && cause(r) == "bad-length"
    });
    // a confirmed COV notification 20 levels of constructed tags deep
    let mut apdu = vec![
        0x00, 0x05, 0x01, 0x01, 0x09, 0x01, 0x1c, 0x02, 0x00, 0x03, 0xea,
    ];
    apdu.extend_from_slice(&[
        0x2c, 0x00, 0x00, 0x00, 0x01, 0x39, 0x10, 0x4e, 0x09, 0x55, 0x2e,
    ]);
    apdu.extend(std::iter::repeat_n(0x0e, 20));
    apdu.extend(std::iter::repeat_n(0x0f, 20));
    apdu.extend_from_slice(&[0x2f, 0x4f]);
    evil.send_to(&bip(&apdu), &to).unwrap();
    wait_audit(&dd, "runaway nesting refused", |r| {
        r["action"] == "uplink" && cause(r) == "nesting"
    });
    // an unconfirmed COV notification for 1002 from a stranger's address, and one for an
    // instance Warden never subscribed to
    let cov = |device: u32| {
        let mut a = vec![0x10, 0x02, 0x0a, 0x57, 0x41];
        a.push(0x1c);
        a.extend_from_slice(&((8u32 << 22) | device).to_be_bytes());
        a.extend_from_slice(&[0x2c, 0x00, 0x00, 0x00, 0x01, 0x39, 0x10, 0x4e, 0x09, 0x55]);
        a.extend_from_slice(&[0x2e, 0x44, 0x42, 0xc8, 0x00, 0x00, 0x2f, 0x4f]);
        bip(&a)
    };
    evil.send_to(&cov(1002), &to).unwrap();
    wait_audit(&dd, "a spoofed COV notification refused", |r| {
        is(r, "uplink", D2) && cause(r) == "spoofed-source"
    });
    evil.send_to(&cov(777), &to).unwrap();
    wait_audit(
        &dd,
        "a COV notification nobody subscribed to refused",
        |r| is(r, "uplink", "bacnet:0-777") && cause(r) == "unknown-subscription",
    );
    assert!(
        floats(&sub, D2, "zonetemp").iter().all(|v| *v != 100.0),
        "the spoofed value (100.0) was not published"
    );
    // an I-Am claiming 1002's instance from the stranger's address: 1002 still answers where it
    // is, so it keeps its address and the claim is refused
    let mut claim = vec![0x10, 0x00, 0xc4];
    claim.extend_from_slice(&((8u32 << 22) | 1002).to_be_bytes());
    claim.extend_from_slice(&[0x22, 0x05, 0xc4, 0x91, 0x03, 0x21, 0x0f]);
    evil.send_to(&bip(&claim), &to).unwrap();
    wait_audit(&dd, "a claim on 1002's instance refused", |r| {
        is(r, "uplink", D2) && cause(r) == "address-conflict"
    });
    // a network-layer message (Who-Is-Router-To-Network) is ignored without an audit record
    let before = audit_where(&dd, |r| r["action"] == "uplink" && r["verdict"] == "deny").len();
    evil.send_to(&[0x81, 0x0a, 0x00, 0x07, 0x01, 0x80, 0x00], &to)
        .unwrap();
    // an I-Am flood from invented instances: at most `max_devices` tracked (4 real + 2), the
    // rest refused and audited at a bounded rate; the flood's interviews fail (nobody answers
    // at the stranger's address) and none is registered
    for inst in 5000..5200u32 {
        let mut a = vec![0x10, 0x00, 0xc4];
        a.extend_from_slice(&((8u32 << 22) | inst).to_be_bytes());
        a.extend_from_slice(&[0x22, 0x05, 0xc4, 0x91, 0x03, 0x21, 0x0f]);
        evil.send_to(&bip(&a), &to).unwrap();
    }
    wait_audit(&dd, "the I-Am flood refused", |r| cause(r) == "i-am-flood");
    let flood = audit_where(&dd, |r| cause(r) == "i-am-flood");
    assert!(
        flood.len() <= 10,
        "{} flood records: not rate-limited",
        flood.len()
    );
    let denies = audit_where(&dd, |r| r["action"] == "uplink" && r["verdict"] == "deny").len();
    assert!(
        denies - before < 40,
        "{} new deny records for 200 I-Ams",
        denies - before
    );
    // the real devices carry on (positive control), and no invented instance was registered
    let n2 = floats(&sub, D2, "zonetemp").len();
    sub.wait_lines(T, "1002 after the hostile frames", |_| {
        floats(&sub, D2, "zonetemp").len() >= n2 + 2
    });
    for inst in [5000, 5001, 5199] {
        assert!(device_show(&g, &format!("bacnet:0-{inst}")).is_null());
    }
    // (the polls run until the stop: a segmented answer still arriving then has segments no one
    // is left to acknowledge, so segments are counted up to a second before it)
    let stopping = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    g.stop();
    drop(sub);

    // tshark: every frame Warden sent decodes, none malformed; and the positive controls show
    // the dissector saw each kind of frame
    cap.stop();
    let from_warden = format!("ip.src=={WARDEN_IP} && bvlc");
    let sent = cap.count(&from_warden);
    assert!(sent > 50, "{sent} frames from Warden captured");
    assert_eq!(
        cap.count(&format!(
            "{from_warden} && (_ws.malformed || _ws.expert.severity==error)"
        )),
        0,
        "malformed frames from Warden"
    );
    for (what, filter, at_least) in [
        (
            "directed Who-Is",
            "bvlc.function==0x0a && bacapp.unconfirmed_service==8 && ip.dst==127.0.0.3",
            1,
        ),
        (
            "broadcast Who-Is",
            "bvlc.function==0x0b && bacapp.unconfirmed_service==8",
            1,
        ),
        (
            "broadcast Who-Has",
            "bvlc.function==0x0b && bacapp.unconfirmed_service==7",
            3,
        ),
        (
            "directed Who-Has",
            "bvlc.function==0x0a && bacapp.unconfirmed_service==7 && ip.dst==127.0.0.3",
            3,
        ),
        (
            "ReadProperty",
            "bacapp.type==0 && bacapp.confirmed_service==12",
            1,
        ),
        (
            "ReadPropertyMultiple",
            "bacapp.type==0 && bacapp.confirmed_service==14",
            10,
        ),
        (
            "SubscribeCOV",
            "bacapp.type==0 && bacapp.confirmed_service==5",
            12,
        ),
        (
            "WriteProperty",
            "bacapp.type==0 && bacapp.confirmed_service==15",
            4,
        ),
        (
            "Simple-ACK to a confirmed COV notification",
            "bacapp.type==2 && bacapp.confirmed_service==1",
            3,
        ),
    ] {
        let n = cap.count(&format!("{from_warden} && {filter}"));
        assert!(n >= at_least, "{what}: {n} frames");
    }
    // and only the valid writes were sent (the six refusals never reached the wire)
    assert_eq!(
        cap.count(&format!(
            "{from_warden} && bacapp.type==0 && bacapp.confirmed_service==15"
        )),
        5
    );
    // bacpypes3 segmented answers longer than the 50-octet max APDU Warden announced; Warden
    // acknowledged each segment and reassembled them (the interviews above needed them)
    let segmented = cap.count(&format!(
        "bacapp.type==3 && bacapp.segmented_request==1 && ip.dst==127.0.0.19 \
         && frame.time_epoch < {:.3}",
        stopping - 1.0
    ));
    let seg_acks = cap.count(&format!("{from_warden} && bacapp.type==4"));
    assert!(segmented >= 4, "{segmented} segmented Complex-ACKs");
    assert!(
        seg_acks >= segmented,
        "{seg_acks} Segment-ACKs for {segmented} segments"
    );
    // the devices' notifications were of both kinds
    assert!(cap.count("ip.src==127.0.0.2 && bacapp.type==0 && bacapp.confirmed_service==1") >= 3);
    assert!(cap.count("ip.src==127.0.0.3 && bacapp.unconfirmed_service==2") >= 3);
}
