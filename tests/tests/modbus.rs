//! The Modbus adapter against real pymodbus peers: TCP, RTU over a socat pty pair, and Modbus/TCP
//! Security (TLS with a role in the server certificate). Writes are checked with mbpoll, an
//! independent client; default deny is checked on the peer's registers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod modbus_support;

use std::time::Duration;

use modbus_support::*;
use warden_e2e::*;

const T: Duration = Duration::from_secs(20);

fn tcp_config(p: &Ports, a: u16, b: u16, rtu: &std::path::Path) -> String {
    format!(
        r#"{base}
[profiles.mb]
points = ["coil0", "relay", "relays", "di1", "hr0", "hr5", "locked", "ir0", "f32_be", "f32_le",
          "u32_be", "u32_le", "name", "setpoint"]
events = ["exception"]
commands = ["set_hr5", "set_relay", "set_relays", "set_setpoint"]
[profiles.mbb]
points = ["hr1"]
[profiles.mbrtu]
points = ["ir2", "hr3", "f32_be", "coil3"]

[[adapters.modbus.links]]
transport = "tcp"
host = "127.0.0.1"
port = {a}
timeout_ms = 500
retries = 1
reconnect_ms = 300
[[adapters.modbus.links.devices]]
unit = 1
refresh_ms = 2000
[[adapters.modbus.links.devices.groups]]
interval_ms = 300
points = [
  {{ name = "coil0", table = "coil", address = 0 }},
  {{ name = "relay", table = "coil", address = 1, writable = true, readback = true }},
  {{ name = "relays", table = "coil", address = 4, writable = true, write_multiple = true, readback = true }},
  {{ name = "di1", table = "discrete-input", address = 1 }},
  {{ name = "hr0", table = "holding", address = 0 }},
  {{ name = "hr5", table = "holding", address = 5, writable = true, readback = true }},
  {{ name = "locked", table = "holding", address = 7, writable = true }},
  {{ name = "ir0", table = "input", address = 0 }},
  {{ name = "f32_be", table = "holding", address = 20, type = "f32" }},
  {{ name = "f32_le", table = "holding", address = 22, type = "f32", word_order = "little" }},
  {{ name = "u32_be", table = "holding", address = 24, type = "u32" }},
  {{ name = "u32_le", table = "holding", address = 26, type = "u32", word_order = "little" }},
  {{ name = "name", table = "holding", address = 28, type = "string", length = 4 }},
  {{ name = "setpoint", table = "holding", address = 32, type = "f32", unit = "°C", writable = true, readback = true }},
]
[[adapters.modbus.links.devices.groups]]
interval_ms = 500
points = [{{ name = "missing", table = "holding", address = 500 }}]

[[adapters.modbus.links]]
transport = "tcp"
host = "127.0.0.1"
port = {b}
timeout_ms = 500
reconnect_ms = 300
[[adapters.modbus.links.devices]]
unit = 1
publish = "always"
[[adapters.modbus.links.devices.groups]]
interval_ms = 200
points = [{{ name = "hr1", table = "holding", address = 1 }}]

[[adapters.modbus.links]]
transport = "rtu"
path = "{rtu}"
baud = 19200
timeout_ms = 300
retries = 0
reconnect_ms = 300
[[adapters.modbus.links.devices]]
unit = 1
publish = "always"
[[adapters.modbus.links.devices.groups]]
interval_ms = 300
points = [
  {{ name = "ir2", table = "input", address = 2 }},
  {{ name = "hr3", table = "holding", address = 3 }},
  {{ name = "coil3", table = "coil", address = 3 }},
  {{ name = "f32_be", table = "holding", address = 20, type = "f32" }},
]
# nobody answers unit 7 on this line: it must not stall unit 1 beyond its timeout
[[adapters.modbus.links.devices]]
unit = 7
[[adapters.modbus.links.devices.groups]]
interval_ms = 300
points = [{{ name = "ir2", table = "input", address = 2 }}]
"#,
        base = base_config(p),
        rtu = rtu.display()
    )
}

fn count(sub: &Subscriber, topic: &str) -> usize {
    sub.lines().iter().filter(|(t, _)| t == topic).count()
}

#[test]
fn modbus_tcp_and_rtu_against_pymodbus() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (pa, pb) = (free_port(), free_port());
    let _peer_a = tcp_peer(dir, pa, &[]);
    let mut peer_b = tcp_peer(dir, pb, &[]);
    let (mut socat, srv, cli) = pty_pair(dir, "rtu");
    let mut rtu = rtu_peer(dir, &srv);

    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(&cfg, tcp_config(&p, pa, pb, &cli)).unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &mq_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    let a = format!("modbus:tcp-127.0.0.1-{pa}-u1");
    let b = format!("modbus:tcp-127.0.0.1-{pb}-u1");
    let r = "modbus:rtu-rtu-cli-u1".to_string();

    // every device lands pending; nothing is published and a write never reaches the bus
    for id in [&a, &b, &r] {
        wait_for(T, &format!("{id} pending"), || {
            (device_show(&g, id)["device"]["status"] == "pending").then_some(())
        });
    }
    let res = command(&g, &a, "set_hr5", &["value=999"]);
    assert_eq!(res["outcome"], "denied", "{res}");
    assert_eq!(mbpoll_holding(pa, 5, 1), vec![105]);
    assert!(!sub.lines().iter().any(|(t, _)| t.contains("/telemetry/")));

    for (id, prof) in [(&a, "mb"), (&b, "mbb"), (&r, "mbrtu")] {
        let o = g.cli(&[
            "devices",
            "approve",
            id,
            "--profile",
            prof,
            "--reason",
            "e2e",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // FC 1, 2, 3, 4; f32 and u32 in both word orders; strings; assurance none
    sub.wait_lines(T, "device A's telemetry", |_| {
        latest(&sub, &a, "setpoint").is_some()
    });
    let want = [
        ("coil0", serde_json::json!(true)),
        ("relay", serde_json::json!(false)),
        ("di1", serde_json::json!(true)),
        ("hr0", serde_json::json!(100)),
        ("ir0", serde_json::json!(1000)),
        ("f32_be", serde_json::json!(12.5)),
        ("f32_le", serde_json::json!(12.5)),
        ("u32_be", serde_json::json!(65538)),
        ("u32_le", serde_json::json!(65538)),
        ("name", serde_json::json!("WARDEN-1")),
        ("setpoint", serde_json::json!(0.0)),
    ];
    for (point, v) in &want {
        let env = latest(&sub, &a, point).unwrap_or_else(|| panic!("no {point}"));
        assert_eq!(&env["value"], v, "{point}: {env}");
        assert_eq!(env["assurance"], "none", "{env}");
    }
    assert_eq!(latest(&sub, &a, "setpoint").unwrap()["unit"], "°C");
    // the exception (illegal data address) is a device event, not a crash
    let ev = sub.wait_lines(T, "the exception event", |l| {
        l.iter()
            .any(|(t, _)| t == &format!("warden/devices/{a}/event"))
    });
    let (_, ev) = ev.iter().find(|(t, _)| t.ends_with("/event")).unwrap();
    assert_eq!(
        json(ev)["points"][0]["value"],
        "illegal-data-address",
        "{ev}"
    );

    // RTU over the pty pair
    sub.wait_lines(T, "RTU telemetry", |_| latest(&sub, &r, "f32_be").is_some());
    assert_eq!(latest(&sub, &r, "ir2").unwrap()["value"], 1002);
    assert_eq!(latest(&sub, &r, "hr3").unwrap()["value"], 103);
    assert_eq!(latest(&sub, &r, "coil3").unwrap()["value"], true);
    assert_eq!(latest(&sub, &r, "f32_be").unwrap()["assurance"], "none");

    // writes: FC 6, 5, 15, 16, each read back by the adapter and checked with mbpoll
    let res = command(&g, &a, "set_hr5", &["value=555"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(res["points"][0]["value"], 555, "{res}");
    assert_eq!(mbpoll_holding(pa, 5, 1), vec![555]);
    let res = command(&g, &a, "set_relay", &["value=true"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(mbpoll_coils(pa, 1, 1), vec![1]);
    let res = command(&g, &a, "set_relays", &["value=true"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(res["points"][0]["value"], true, "{res}");
    assert_eq!(mbpoll_coils(pa, 4, 1), vec![1]);
    let res = command(&g, &a, "set_setpoint", &["value=21.5"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(res["points"][0]["value"], 21.5, "{res}");
    assert_eq!(mbpoll_holding(pa, 32, 2), vec![0x41ac, 0]);
    // a writable point the profile does not allow: denied, the register is untouched
    let res = command(&g, &a, "set_locked", &["value=1"]);
    assert_eq!(res["outcome"], "denied", "{res}");
    assert_eq!(mbpoll_holding(pa, 7, 1), vec![107]);
    // only changes are published: the new value shows up, unchanged points are not repeated
    sub.wait_lines(T, "hr5 change published", |_| {
        latest(&sub, &a, "hr5").is_some_and(|e| e["value"] == 555)
    });
    // (A re-publishes unchanged points every refresh_ms = 2 s; B publishes every 200 ms poll)
    let (hr0, hr1) = (
        format!("warden/devices/{a}/telemetry/hr0"),
        format!("warden/devices/{b}/telemetry/hr1"),
    );
    let (n0, n1) = (count(&sub, &hr0), count(&sub, &hr1));
    std::thread::sleep(Duration::from_millis(2500));
    let (d0, d1) = (count(&sub, &hr0) - n0, count(&sub, &hr1) - n1);
    assert!(
        d0 <= 2 && d1 >= 8,
        "unchanged hr0 published {d0} times, hr1 (always) {d1} times"
    );

    // kill peer B mid-poll: A and the RTU device keep going; B resumes after a restart
    peer_b.kill();
    let seen_a = device_show(&g, &a)["stats"]["messages"].as_u64().unwrap();
    let rtu_n = count(&sub, &format!("warden/devices/{r}/telemetry/ir2"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(device_show(&g, &a)["stats"]["messages"].as_u64().unwrap() > seen_a + 2);
    assert!(count(&sub, &format!("warden/devices/{r}/telemetry/ir2")) > rtu_n + 2);
    let b_n = count(&sub, &format!("warden/devices/{b}/telemetry/hr1"));
    let _peer_b = tcp_peer(dir, pb, &[]);
    sub.wait_lines(T, "B resumes", |_| {
        count(&sub, &format!("warden/devices/{b}/telemetry/hr1")) > b_n + 2
    });

    // pull the serial "cable" (the pty pair), then plug it back: the port is re-opened
    rtu.kill();
    socat.kill();
    std::thread::sleep(Duration::from_millis(1000));
    let rtu_n = count(&sub, &format!("warden/devices/{r}/telemetry/ir2"));
    let (_socat2, srv2, _cli2) = pty_pair(dir, "rtu");
    let _rtu2 = rtu_peer(dir, &srv2);
    sub.wait_lines(T, "RTU resumes", |_| {
        count(&sub, &format!("warden/devices/{r}/telemetry/ir2")) > rtu_n + 2
    });
    let log = g.log_text();
    assert!(log.contains("unit 7 not answering: timeout"), "{log}");
    assert!(device_show(&g, "modbus:rtu-rtu-cli-u7").is_null());
    g.stop();
}

#[test]
fn modbus_tls_certificate_and_role() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let pki = dir.join("pki");
    modbus_pki(&pki, "Engineer");
    let f = |n: &str| pki.join(n).display().to_string();
    let port = free_port();
    let _peer = tcp_peer(
        dir,
        port,
        &[
            "--cert",
            &f("server.crt"),
            "--key",
            &f("server.key"),
            "--ca",
            &f("ca.crt"),
        ],
    );
    let p = Ports::new();
    let cfg = dir.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[profiles.mbtls]
points = ["hr0", "f32_le"]
commands = ["set_hr0"]
min_assurance = "certificate"

[[adapters.modbus.links]]
transport = "tls"
host = "127.0.0.1"
port = {port}
ca = "{ca}"
cert = "{cc}"
key = "{ck}"
timeout_ms = 1000
[[adapters.modbus.links.devices]]
unit = 1
refresh_ms = 1000
[[adapters.modbus.links.devices.groups]]
interval_ms = 300
points = [
  {{ name = "hr0", table = "holding", address = 0, writable = true, readback = true }},
  {{ name = "f32_le", table = "holding", address = 22, type = "f32", word_order = "little" }},
]

[[adapters.modbus.links]]
name = "rogue"
transport = "tls"
host = "127.0.0.1"
port = {port}
ca = "{ca}"
cert = "{rc}"
key = "{rk}"
reconnect_ms = 500
[[adapters.modbus.links.devices]]
unit = 1
address = "tls-rogue-u1"
[[adapters.modbus.links.devices.groups]]
points = [{{ name = "hr0", table = "holding", address = 0 }}]
"#,
            base = base_config(&p),
            ca = f("ca.crt"),
            cc = f("client.crt"),
            ck = f("client.key"),
            rc = f("rogue.crt"),
            rk = f("rogue.key"),
        ),
    )
    .unwrap();
    let dd = dir.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &mq_args(&dd, p.mqtt, &["-t", "warden/#"]),
        &dir.join("sub.txt"),
    );
    let id = format!("modbus:tls-127.0.0.1-{port}-u1");
    let dev = wait_for(T, "TLS device pending", || {
        let v = device_show(&g, &id);
        (v["device"]["status"] == "pending").then_some(v)
    });
    // identity evidence includes the server certificate's fingerprint
    assert!(dev.to_string().contains("sha256:"), "{dev}");
    let o = g.cli(&[
        "devices",
        "approve",
        &id,
        "--profile",
        "mbtls",
        "--reason",
        "e2e",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    sub.wait_lines(T, "TLS telemetry", |_| {
        latest(&sub, &id, "f32_le").is_some()
    });
    for point in ["hr0", "f32_le"] {
        let env = latest(&sub, &id, point).unwrap();
        assert_eq!(env["assurance"], "certificate", "{env}");
        assert_eq!(env["role"], "Engineer", "{env}");
    }
    assert_eq!(latest(&sub, &id, "f32_le").unwrap()["value"], 12.5);
    let res = command(&g, &id, "set_hr0", &["value=7"]);
    assert_eq!(res["outcome"], "delivered", "{res}");
    assert_eq!(res["points"][0]["value"], 7, "{res}");

    // the client certificate from an untrusted CA is refused by the server, and said so clearly
    wait_for(T, "the rogue link's refusal in the log", || {
        let log = g.log_text();
        (log.contains("modbus:rogue") && log.contains("refused")).then_some(())
    });
    assert_eq!(
        device_show(&g, "modbus:tls-rogue-u1"),
        serde_json::Value::Null
    );
    g.stop();
}
