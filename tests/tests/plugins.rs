//! Wasm policy plugins in the real gateway: signed plugins loaded from a directory and bound by
//! selectors, an unsigned one refused (its bindings deny), a hostile plugin contained and
//! disabled while other devices keep flowing, hot reload keeping the last-known-good version,
//! traffic recorded and replayed with `warden plugin test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use warden_e2e::*;

mod api_support;

fn keygen(dir: &Path) {
    let o = warden(
        dir,
        &[
            "plugin",
            "keygen",
            "--out",
            dir.join("keys").to_str().unwrap(),
            "--name",
            "ci",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

fn install(plugins: &Path, keys: &Path, from: &Path, as_name: &str, sign: bool) {
    let dst = plugins.join(as_name);
    std::fs::copy(from, &dst).unwrap();
    if sign {
        sign_with_ci_key(keys, &dst);
    }
}

/// `warden plugin sign MODULE --key <root>/keys/ci.key` (the key `keygen` made).
fn sign_with_ci_key(root: &Path, module: &Path) {
    let o = warden(
        root,
        &[
            "plugin",
            "sign",
            module.to_str().unwrap(),
            "--key",
            root.join("keys/ci.key").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

fn audit_has(
    dd: &Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(Duration::from_secs(15), what, || {
        audit_records(dd).into_iter().find(|r| pred(r))
    })
}

fn detail(r: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(r["detail"].as_str().unwrap_or("{}")).unwrap_or_default()
}

#[test]
fn signed_plugins_decide_hostile_ones_are_contained_and_reload_keeps_last_known_good() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    keygen(root);
    install(
        &plugins,
        root,
        &plugin_module("least_privilege"),
        "least_privilege.wasm",
        true,
    );
    install(
        &plugins,
        root,
        &plugin_module("hostile"),
        "guard.wasm",
        true,
    );
    install(
        &plugins,
        root,
        &plugin_module("hostile"),
        "unsigned.wasm",
        false,
    );

    let p = Ports::new();
    let cfg = root.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[zones.lab]
commanders = []

[plugins]
dir = "plugins"
trusted_keys = ["keys/ci.pub"]
watch_interval_ms = 200
record = "traffic.jsonl"

[[plugins.load]]
name = "least-privilege"
config = {{ default_role = "sensor", roles = {{ sensor = {{ points = ["temperature", "humidity"], commands = [] }} }} }}

[[plugins.load]]
name = "guard"
module = "guard.wasm"
config = {{ mode = "loop", targets = ["sim:evil"] }}
limits = {{ fuel = 200000, max_failures = 3 }}

[[plugins.load]]
name = "unsigned"
module = "unsigned.wasm"
config = {{ mode = "ok" }}

[[plugins.bind]]
plugin = "least-privilege"
zones = ["default"]
direction = "uplink"

[[plugins.bind]]
plugin = "guard"
devices = ["sim:evil"]

[[plugins.bind]]
plugin = "unsigned"
zones = ["lab"]

[[sim.devices]]
address = "good"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true

[[sim.devices]]
address = "evil"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true

[[sim.devices]]
address = "labdev"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
zone = "lab"
provision = true
"#,
            base = base_config(&p)
        ),
    )
    .unwrap();
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/devices/+/telemetry/#"]),
        &root.join("sub.txt"),
    );
    std::thread::sleep(Duration::from_millis(500));

    // The unsigned plugin was refused at load (a security event), and its binding denies.
    let refused = audit_has(&dd, "the unsigned plugin's refusal", |r| {
        r["action"] == "plugin-load"
            && r["reason"]
                .as_str()
                .unwrap_or("")
                .contains("`unsigned` refused")
    });
    assert_eq!(refused["category"], "security", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("signature"),
        "{refused}"
    );

    // good: allowed by least-privilege; a point outside its role is denied by the plugin.
    g.sim(&["good temperature=21.5".into()]);
    sub.wait_lines(Duration::from_secs(10), "good's temperature", |l| {
        l.iter()
            .any(|(t, _)| t == "warden/devices/sim:good/telemetry/temperature")
    });
    g.sim(&["good setpoint=5".into()]);
    let denied = audit_has(&dd, "least-privilege's deny", |r| {
        r["decider"] == "plugin:least-privilege" && r["device"] == "sim:good"
    });
    assert_eq!(denied["verdict"], "deny");
    assert!(
        denied["reason"].as_str().unwrap().contains("setpoint"),
        "{denied}"
    );

    // labdev's plugin never loaded: fail closed.
    g.sim(&["labdev temperature=20".into()]);
    let unavailable = audit_has(&dd, "labdev denied by the missing plugin", |r| {
        r["device"] == "sim:labdev" && r["decider"] == "plugin:unsigned"
    });
    assert_eq!(
        detail(&unavailable)["cause"],
        "unavailable",
        "{unavailable}"
    );

    // evil: the guard loops for it; every message is denied out-of-fuel (or `restarting` while
    // the failed instance is being replaced, off the message thread), until the third failure
    // disables the guard, while good's messages keep flowing.
    let mut sent = 0;
    while !audit_records(&dd)
        .iter()
        .any(|r| r["action"] == "plugin-disabled")
    {
        assert!(sent < 40, "the guard is not disabled after {sent} messages");
        g.sim(&[
            format!("evil temperature={sent}"),
            format!("good temperature={}", 30 + sent),
        ]);
        sent += 1;
        wait_for(Duration::from_secs(10), "evil's decision", || {
            (audit_records(&dd)
                .iter()
                .filter(|r| r["device"] == "sim:evil" && r["action"] == "uplink")
                .count()
                == sent)
                .then_some(())
        });
    }
    g.sim(&["evil temperature=99".into()]);
    sub.wait_lines(
        Duration::from_secs(15),
        "good's messages during the hostile plugin's failures",
        |l| {
            (30..30 + sent).all(|i| {
                l.iter().any(|(t, v)| {
                    t == "warden/devices/sim:good/telemetry/temperature"
                        && v.contains(&format!("{i}"))
                })
            })
        },
    );
    let disabled = audit_has(&dd, "the guard disabled", |r| {
        r["action"] == "plugin-disabled"
    });
    assert_eq!(detail(&disabled)["plugin"], "guard");
    assert_eq!(detail(&disabled)["cause"], "out-of-fuel");
    let evil = wait_for(Duration::from_secs(10), "evil's last decision", || {
        let v: Vec<_> = audit_records(&dd)
            .into_iter()
            .filter(|r| r["device"] == "sim:evil" && r["action"] == "uplink")
            .collect();
        (v.len() == sent + 1).then_some(v)
    });
    assert!(
        evil.iter()
            .all(|r| r["verdict"] == "deny" && r["decider"] == "plugin:guard")
    );
    let causes: Vec<_> = evil
        .iter()
        .map(|r| detail(r)["cause"].as_str().unwrap().to_owned())
        .collect();
    let failures: Vec<_> = causes.iter().filter(|c| *c != "restarting").collect();
    assert_eq!(
        failures,
        ["out-of-fuel", "out-of-fuel", "out-of-fuel", "disabled"],
        "{causes:?}"
    );
    assert!(
        !sub.lines().iter().any(|(t, _)| t.contains("sim:evil")),
        "evil got through"
    );

    // Hot reload 1: a new least-privilege module without a matching signature is refused,
    // and the last-known-good keeps deciding.
    let lp = plugins.join("least_privilege.wasm");
    let v2 = wasm_with_custom_section(
        &std::fs::read(plugin_module("least_privilege")).unwrap(),
        "v2",
    );
    std::fs::write(&lp, &v2).unwrap();
    let r = audit_has(&dd, "reload refused for a bad signature", |r| {
        r["action"] == "plugin-reload" && detail(r)["result"] == "signature-or-compile"
    });
    assert!(
        r["reason"].as_str().unwrap().contains("last-known-good"),
        "{r}"
    );
    g.sim(&["good setpoint=6".into()]);
    wait_for(
        Duration::from_secs(10),
        "the old version still denying",
        || {
            (audit_records(&dd)
                .iter()
                .filter(|r| r["decider"] == "plugin:least-privilege" && r["verdict"] == "deny")
                .count()
                >= 2)
                .then_some(())
        },
    );

    // Hot reload 2: its own tests fail → refused at tests.
    std::fs::write(
        plugins.join("least_privilege.tests.jsonl"),
        r#"{"device":{"id":"sim:x"},"direction":"uplink","kind":"telemetry","points":[{"name":"debug_shell","value":1}],"time_ms":1,"expect":{"verdict":"allow"}}"#,
    )
    .unwrap();
    sign_with_ci_key(root, &lp);
    let r = audit_has(&dd, "reload refused by the plugin's own tests", |r| {
        r["action"] == "plugin-reload" && detail(r)["result"] == "tests"
    });
    // the refusal says which line, what it expected and what it got
    let why = r["reason"].as_str().unwrap();
    assert!(
        why.contains("line 1: expected allow, got deny") && why.contains("debug_shell"),
        "{r}"
    );

    // Hot reload 3: correct tests, signed → swapped in.
    std::fs::write(
        plugins.join("least_privilege.tests.jsonl"),
        r#"{"device":{"id":"sim:x"},"direction":"uplink","kind":"telemetry","points":[{"name":"debug_shell","value":1}],"time_ms":1,"expect":{"verdict":"deny","reason_contains":"debug_shell"}}"#,
    )
    .unwrap();
    let ok = audit_has(&dd, "reload accepted", |r| {
        r["action"] == "plugin-reload" && detail(r)["result"] == "ok"
    });
    assert_eq!(detail(&ok)["plugin"], "least-privilege");

    // The guard is fixed by a new version: reloaded and enabled again (its failures recount).
    let guard_v2 =
        wasm_with_custom_section(&std::fs::read(plugin_module("hostile")).unwrap(), "fixed");
    std::fs::write(plugins.join("guard.wasm"), guard_v2).unwrap();
    sign_with_ci_key(root, &plugins.join("guard.wasm"));
    audit_has(&dd, "the guard reloaded", |r| {
        r["action"] == "plugin-reload"
            && detail(r)["result"] == "ok"
            && detail(r)["plugin"] == "guard"
    });
    g.sim(&["evil temperature=9".into()]);
    wait_for(
        Duration::from_secs(10),
        "evil decided by the reloaded guard",
        || {
            audit_records(&dd)
                .iter()
                .filter(|r| r["device"] == "sim:evil" && r["action"] == "uplink")
                .nth(sent + 1)
                .map(|r| detail(r)["cause"].as_str().unwrap_or("").to_owned())
                .filter(|c| c == "out-of-fuel")
        },
    );
    g.stop();

    // The recorded traffic replays through `warden plugin test`.
    let traffic = dd.join("traffic.jsonl");
    let text = std::fs::read_to_string(&traffic).unwrap();
    assert!(text.lines().count() >= 8, "{text}");
    let lp_cfg = root.join("lp.json");
    std::fs::write(&lp_cfg, r#"{"default_role":"sensor","roles":{"sensor":{"points":["temperature","humidity"],"commands":[]}}}"#).unwrap();
    let o = warden(
        root,
        &[
            "plugin",
            "test",
            plugin_module("least_privilege").to_str().unwrap(),
            "--messages",
            traffic.to_str().unwrap(),
            "--config",
            lp_cfg.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("deny") && out.contains("setpoint"), "{out}");
    // an expectation that does not hold fails the run
    let expect = root.join("expect.jsonl");
    std::fs::write(
        &expect,
        text.lines()
            .map(|_| r#"{"verdict":"allow"}"#)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let o = warden(
        root,
        &[
            "plugin",
            "test",
            plugin_module("least_privilege").to_str().unwrap(),
            "--messages",
            traffic.to_str().unwrap(),
            "--config",
            lp_cfg.to_str().unwrap(),
            "--expect",
            expect.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
}

#[test]
fn plugin_signing_cli_accepts_only_the_exact_signed_bytes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    keygen(root);
    let o = warden(
        root,
        &[
            "plugin",
            "keygen",
            "--out",
            root.join("other").to_str().unwrap(),
            "--name",
            "x",
        ],
    );
    assert!(o.status.success());
    let m = root.join("p.wasm");
    std::fs::copy(plugin_module("least_privilege"), &m).unwrap();
    let ms = m.to_str().unwrap();
    let pubk = root.join("keys/ci.pub");
    let verify = |pk: &Path| {
        warden(
            root,
            &["plugin", "verify", ms, "--pubkey", pk.to_str().unwrap()],
        )
    };

    let o = verify(&pubk);
    assert!(!o.status.success(), "an unsigned module verified");
    let o = warden(
        root,
        &[
            "plugin",
            "sign",
            ms,
            "--key",
            root.join("keys/ci.key").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(root.join("p.wasm.sig").exists());
    let o = verify(&pubk);
    assert!(o.status.success(), "{}", stderr(&o));
    // the wrong key
    assert!(!verify(&root.join("other/x.pub")).status.success());
    // one flipped byte
    let mut b = std::fs::read(&m).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&m, &b).unwrap();
    let o = verify(&pubk);
    assert!(!o.status.success());
    // the private key file is private
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("keys/ci.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "private key mode {mode:o}");
}

/// Every example, built from source by plugins/build.sh, passes its own test file in the host
/// through `warden plugin test`, and a wrong expectation fails the run.
#[test]
fn every_example_passes_its_own_tests_in_the_host() {
    let t = tempfile::tempdir().unwrap();
    // WASI packages granted per plugin: only the Python runtime imports any
    const PY_WASI: &str = "cli,clocks,filesystem,io,random,sockets";
    for (module, example, wasi) in [
        ("least_privilege", "least-privilege", ""),
        // the same rule, same tests: built against contract 0.1.0 (a component), and in C
        ("least_privilege_component", "least-privilege", ""),
        ("least_privilege_c", "least-privilege-c", ""),
        ("rate_limit", "rate-limit", ""),
        ("business_hours", "business-hours", ""),
        ("assurance_floor", "assurance-floor", ""),
        ("anomaly_gate", "anomaly-gate", ""),
        ("assurance_floor_py", "assurance-floor-py", PY_WASI),
        ("assurance_floor_js", "assurance-floor-js", ""),
    ] {
        let dir = plugin_example(example);
        let tests = dir.join("tests.jsonl");
        let config = dir.join("config.json");
        let run_with = |tests: &Path, wasi: &str| {
            let mut args = vec![
                "plugin",
                "test",
                plugin_module(module).to_str().unwrap(),
                "--messages",
                tests.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
            if !wasi.is_empty() {
                args.push(format!("--wasi={wasi}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            warden(t.path(), &args)
        };
        let run = |tests: &Path| run_with(tests, wasi);
        if !wasi.is_empty() {
            // without its grant the plugin is refused, naming what to grant
            let o = run_with(&tests, "");
            assert!(!o.status.success());
            assert!(
                stderr(&o).contains(&format!("--wasi {wasi}")),
                "{example}: {}",
                stderr(&o)
            );
        }
        let o = run(&tests);
        assert!(
            o.status.success(),
            "{example}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let cases = std::fs::read_to_string(&tests)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        assert!(cases >= 3, "{example} has only {cases} cases");
        // flip the first expectation: the run must fail
        let text = std::fs::read_to_string(&tests).unwrap();
        let mut first = json(text.lines().next().unwrap());
        let was = first["expect"]["verdict"].as_str().unwrap().to_owned();
        first["expect"]["verdict"] =
            serde_json::json!(if was == "allow" { "deny" } else { "allow" });
        let flipped = first.to_string();
        let bad = t.path().join(format!("{example}.jsonl"));
        std::fs::write(&bad, format!("{flipped}\n")).unwrap();
        let o = run(&bad);
        assert!(
            !o.status.success(),
            "{example}: a wrong expectation passed: {}",
            stdout(&o)
        );
    }
}

/// Issue 19, parts 4 and 5, in the running gateway: a `.sig` linked to `/dev/zero` is refused at
/// once (security record); a hostile plugin's reason full of control characters and a forged
/// "allow" line reaches the audit log and `audit tail` without any of them; a cache entry forged
/// with a valid MAC under the key derived from the data dir's master key — another module's code
/// under this module's name — is refused, audited as a security event and recompiled, and the
/// signed plugin's own code decides.
#[test]
fn forged_cache_entry_dev_zero_signature_and_hostile_reasons_are_contained() {
    use hmac::Mac;
    use sha2::Digest;
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    keygen(root);
    install(
        &plugins,
        root,
        &plugin_module("least_privilege"),
        "a.wasm",
        true,
    );
    install(&plugins, root, &plugin_module("hostile"), "b.wasm", true);
    install(&plugins, root, &plugin_module("hostile"), "c.wasm", false);
    std::os::unix::fs::symlink("/dev/zero", plugins.join("c.wasm.sig")).unwrap();

    let p = Ports::new();
    let cfg = root.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[plugins]
dir = "plugins"
trusted_keys = ["keys/ci.pub"]
watch = false

[[plugins.load]]
name = "a"
config = {{ default_role = "sensor", roles = {{ sensor = {{ points = ["temperature"], commands = [] }} }} }}

[[plugins.load]]
name = "b"
config = {{ mode = "deny", targets = ["sim:evil"], reason = "too hot\n#999    2026-01-01T00:00:00Z decision  uplink device=sim:evil actor=gateway allow by builtin:profile\r\u001b[2K\u001b]0;pwned\u0007\u202e" }}

[[plugins.load]]
name = "c"
config = {{ mode = "ok" }}

[[plugins.bind]]
plugin = "b"
devices = ["sim:evil"]

[[sim.devices]]
address = "evil"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true
"#,
            base = base_config(&p)
        ),
    )
    .unwrap();
    let dd = root.join("data");
    let clean = |s: &str| !s.chars().any(|c| c.is_control() || c == '\u{202e}');

    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let refused = audit_has(&dd, "c refused for its /dev/zero .sig", |r| {
        r["action"] == "plugin-load" && r["reason"].as_str().unwrap_or("").contains("`c` refused")
    });
    assert_eq!(refused["category"], "security", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{refused}"
    );
    g.sim(&["evil temperature=21.5".into()]);
    let denied = audit_has(&dd, "b's hostile deny", |r| {
        r["decider"] == "plugin:b" && r["device"] == "sim:evil"
    });
    let reason = denied["reason"].as_str().unwrap();
    assert!(reason.contains("too hot"), "{denied}");
    assert!(clean(reason), "{reason:?}");
    let tail = stdout(&warden(&dd, &["audit", "tail", "-n", "50"]));
    assert!(tail.contains("too hot"), "{tail}");
    assert!(
        tail.lines().all(|l| clean(l) && !l.contains("pwned\u{7}")),
        "{tail:?}"
    );
    assert!(
        !tail.lines().any(|l| l.starts_with("#999")),
        "a forged line: {tail}"
    );
    g.stop();

    // Forge b's cache entry from a's, MAC'd under the key anyone who can read the master key
    // (beside the data dir, `<data-dir>.master.key`) can derive.
    let master = hex::decode(
        std::fs::read_to_string(dd.with_file_name(format!(
            "{}.master.key",
            dd.file_name().unwrap().to_string_lossy()
        )))
        .unwrap()
        .trim(),
    )
    .unwrap();
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"warden-master-v1"), &master);
    let mut key = [0u8; 32];
    hk.expand(b"plugin-cache", &mut key).unwrap();
    let sha = |f: &str| {
        hex::encode(sha2::Sha256::digest(
            std::fs::read(plugins.join(f)).unwrap(),
        ))
    };
    let cache = dd.join("plugin-cache");
    let entry = |digest: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(digest))
            .unwrap_or_else(|| panic!("no cache entry for {digest}"))
    };
    let (from, to) = (entry(&sha("a.wasm")), entry(&sha("b.wasm")));
    let data = std::fs::read(&from).unwrap();
    let body = &data[..data.len() - 32];
    let name = to.file_name().unwrap().to_str().unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(body);
    let mut forged = body.to_vec();
    forged.extend_from_slice(&mac.finalize().into_bytes());
    std::fs::write(&to, forged).unwrap();

    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let tampered = audit_has(&dd, "the forged cache entry's security record", |r| {
        r["action"] == "plugin-cache-refused"
    });
    assert_eq!(tampered["category"], "security", "{tampered}");
    assert_eq!(detail(&tampered)["plugin"], "b", "{tampered}");
    assert!(
        tampered["reason"]
            .as_str()
            .unwrap()
            .contains("not the signed module"),
        "{tampered}"
    );
    // b's own code decides (a's would have allowed: least-privilege lets temperature through)
    let before = audit_records(&dd)
        .iter()
        .filter(|r| r["decider"] == "plugin:b")
        .count();
    g.sim(&["evil temperature=22".into()]);
    wait_for(Duration::from_secs(15), "b's deny after restart", || {
        (audit_records(&dd)
            .iter()
            .filter(|r| r["decider"] == "plugin:b" && r["verdict"] == "deny")
            .count()
            > before)
            .then_some(())
    });
    g.stop();
}

/// The stall attack: a plugin traps on one device and allows the others it is bound to, and its
/// `init` is slow (~a second), so each failure means a slow re-instantiation. The failed instance
/// is replaced off the message thread: a device bound to another plugin is decided and published
/// while the replacement is still running (the evil device's next message, sent after it, is
/// still denied `restarting`), and the failure-rate rule disables the plugin although a success
/// (a device it allows) comes between each two of its failures.
#[test]
fn a_plugin_that_traps_on_one_device_neither_stalls_the_others_nor_escapes_the_breaker() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    keygen(root);
    install(
        &plugins,
        root,
        &plugin_module("hostile"),
        "guard.wasm",
        true,
    );
    install(&plugins, root, &plugin_module("hostile"), "fine.wasm", true);
    let p = Ports::new();
    let cfg = root.join("w.toml");
    // ~16 fuel per iteration: 600 M iterations is ~10 G fuel, about a second of init here
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[plugins]
dir = "plugins"
trusted_keys = ["keys/ci.pub"]
watch = false

[[plugins.load]]
name = "guard"
module = "guard.wasm"
config = {{ mode = "unreachable", targets = ["sim:evil"], init_iterations = 600000000 }}
limits = {{ max_failures = 3, init_fuel = 20000000000, init_deadline_ms = 30000 }}

[[plugins.load]]
name = "fine"
module = "fine.wasm"
config = {{ mode = "ok" }}

[[plugins.bind]]
plugin = "guard"
devices = ["sim:evil", "sim:other"]

[[plugins.bind]]
plugin = "fine"
devices = ["sim:good"]

[[sim.devices]]
address = "good"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true

[[sim.devices]]
address = "evil"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true

[[sim.devices]]
address = "other"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true
"#,
            base = base_config(&p)
        ),
    )
    .unwrap();
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/devices/+/telemetry/#"]),
        &root.join("sub.txt"),
    );
    // positive control: good flows through the plugin (sent again until the subscription is up)
    wait_for(Duration::from_secs(15), "good's first reading", || {
        g.sim(&["good temperature=1".into()]);
        std::thread::sleep(Duration::from_millis(200));
        sub.lines()
            .iter()
            .any(|(t, _)| t == "warden/devices/sim:good/telemetry/temperature")
            .then_some(())
    });
    // Rounds of: good's message (published?), then evil's (decided how?), until the guard is
    // disabled. Only evil traps; good's decisions between the traps are successes.
    let mut causes: Vec<String> = Vec::new();
    let mut good_ms = Vec::new();
    for round in 0..600 {
        let value = 1000 + round;
        let sent = std::time::Instant::now();
        g.sim(&[format!("good temperature={value}")]);
        sub.wait_lines(Duration::from_secs(15), "good's reading", |l| {
            l.iter().any(|(t, v)| {
                t == "warden/devices/sim:good/telemetry/temperature"
                    && v.contains(&value.to_string())
            })
        });
        good_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        // other shares the guard: allowed while it has an instance, `restarting` meanwhile
        g.sim(&[
            format!("other temperature={round}"),
            format!("evil temperature={round}"),
        ]);
        let cause = wait_for(Duration::from_secs(20), "evil's decision", || {
            audit_records(&dd)
                .into_iter()
                .filter(|r| r["device"] == "sim:evil" && r["action"] == "uplink")
                .nth(round)
                .map(|r| detail(&r)["cause"].as_str().unwrap_or("").to_owned())
        });
        causes.push(cause);
        if audit_records(&dd)
            .iter()
            .any(|r| r["action"] == "plugin-disabled")
        {
            break;
        }
    }
    let failures: Vec<_> = causes.iter().filter(|c| *c != "restarting").collect();
    assert_eq!(failures, ["trap", "trap", "trap"], "{causes:?}");
    // right after the first trap, evil's next message found the replacement still running
    // although good's message, sent between the two, had been decided and published
    let first = causes.iter().position(|c| c == "trap").unwrap();
    assert_eq!(causes[first + 1], "restarting", "{causes:?}");
    good_ms.sort_by(f64::total_cmp);
    let pct = |q: f64| good_ms[((good_ms.len() - 1) as f64 * q) as usize];
    eprintln!(
        "good's round trip (sim → MQTT) over {} rounds next to the trapping plugin: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; evil's causes: {causes:?}",
        good_ms.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    let disabled = audit_has(&dd, "the guard disabled", |r| {
        r["action"] == "plugin-disabled"
    });
    assert_eq!(disabled["category"], "security");
    assert!(
        disabled["reason"]
            .as_str()
            .unwrap()
            .contains("3 failures within 60 s"),
        "{disabled}"
    );
    assert!(
        !sub.lines().iter().any(|(t, _)| t.contains("sim:evil")),
        "evil got through"
    );
    // the gateway stops at once although nothing waits for the plugin any more
    g.stop();
}

/// A plugin's `config` in the gateway's config file changes: `POST /api/config/reload` reloads that
/// plugin (verified, tested and instantiated off the message thread) and audits it; a config the
/// plugin rejects is refused and the last-known-good version keeps deciding.
#[test]
fn a_plugin_config_change_is_reloaded_without_a_restart_and_audited() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    keygen(root);
    install(
        &plugins,
        root,
        &plugin_module("hostile"),
        "sayer.wasm",
        true,
    );
    let p = Ports::new();
    let cfg = root.join("w.toml");
    let write = |plugin_config: &str| {
        std::fs::write(
            &cfg,
            format!(
                r#"{base}
[plugins]
dir = "plugins"
trusted_keys = ["keys/ci.pub"]
watch = false

[[plugins.load]]
name = "sayer"
module = "sayer.wasm"
config = {plugin_config}

[[plugins.bind]]
plugin = "sayer"

[[sim.devices]]
address = "a"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
assurance = "shared-key"
provision = true
"#,
                base = base_config(&p)
            ),
        )
        .unwrap()
    };
    write(r#"{ mode = "deny", reason = "version one" }"#);
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let token = std::fs::read_to_string(dd.join("api.token")).unwrap();
    let reload = || {
        api_support::http(
            p.api,
            "POST",
            "/api/config/reload",
            Some(&api_support::bearer(token.trim())),
            "",
        )
    };
    let denied_with = |n: usize, reason: &str| {
        g.sim(&[format!("a temperature={n}")]);
        audit_has(&dd, &format!("a denied with `{reason}`"), |r| {
            r["device"] == "sim:a"
                && r["action"] == "uplink"
                && r["reason"].as_str().unwrap_or("") == reason
                && r["detail"].as_str().unwrap_or("").contains("\"bytes\"")
        })
    };
    denied_with(1, "version one");

    write(r#"{ mode = "deny", reason = "version two" }"#);
    let (status, body) = reload();
    assert_eq!(status, 200, "{body}");
    let r = audit_has(&dd, "the plugin reloaded for its config", |r| {
        r["action"] == "plugin-reload" && detail(r)["result"] == "ok"
    });
    assert_eq!(detail(&r)["changed"], "config", "{r}");
    let c = audit_has(&dd, "the config reload", |r| r["action"] == "config-reload");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("changed config: sayer"),
        "{c}"
    );
    denied_with(2, "version two");

    // a config the plugin's init rejects: refused, the running version stays
    write(r#"{ mode = "nice" }"#);
    let (status, body) = reload();
    assert_eq!(status, 200, "{body}");
    let refused = audit_has(&dd, "the bad plugin config refused", |r| {
        r["action"] == "plugin-reload" && detail(r)["result"] != "ok"
    });
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("unknown variant `nice`"),
        "{refused}"
    );
    assert_eq!(detail(&refused)["changed"], "config");
    let before = audit_records(&dd)
        .iter()
        .filter(|r| r["reason"].as_str() == Some("version two"))
        .count();
    g.sim(&["a temperature=3".into()]);
    wait_for(
        Duration::from_secs(10),
        "the old config still deciding",
        || {
            (audit_records(&dd)
                .iter()
                .filter(|r| r["reason"].as_str() == Some("version two"))
                .count()
                > before)
                .then_some(())
        },
    );
}

/// The memory cap in the real gateway: a plugin that keeps 4 MiB more on every decision for one
/// device fills its 32 MiB cap, traps `memory-cap`, is replaced, fills it again, many times over
/// (~400 MiB asked for in all); the gateway's peak RSS grows by about one cap, not by what the
/// plugin asked for, while another device keeps flowing.
#[test]
fn a_growing_plugin_is_held_to_its_memory_cap_in_the_gateway() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    keygen(root);
    install(&plugins, root, &plugin_module("hostile"), "hog.wasm", true);
    let p = Ports::new();
    let cfg = root.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[plugins]
dir = "plugins"
trusted_keys = ["keys/ci.pub"]
watch = false

[[plugins.load]]
name = "hog"
module = "hog.wasm"
config = {{ mode = "grow", grow_bytes = 4194304, targets = ["sim:evil"] }}
limits = {{ memory_mib = 32, max_failures = 100000, fuel = 200000000, cpu_ms_per_sec = 1000 }}

[[plugins.bind]]
plugin = "hog"
devices = ["sim:evil"]

[[sim.devices]]
address = "good"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
provision = true

[[sim.devices]]
address = "evil"
kind = "thermostat"
interval_ms = 86400000
profile = "thermostat"
provision = true
"#,
            base = base_config(&p)
        ),
    )
    .unwrap();
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let pid = g.pid();
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/devices/+/telemetry/#"]),
        &root.join("sub.txt"),
    );
    let published = |who: &str| {
        let topic = format!("warden/devices/sim:{who}/telemetry/temperature");
        sub.lines().iter().filter(|(t, _)| *t == topic).count()
    };
    // evil's decisions: allowed ones are published, denied ones audited one by one
    let evil_decisions = || {
        published("evil")
            + audit_records(&dd)
                .into_iter()
                .filter(|r| r["device"] == "sim:evil" && r["action"] == "uplink")
                .count()
    };
    // warm-up (until the subscription is up and each device has been seen), then the baseline
    wait_for(Duration::from_secs(15), "first readings", || {
        g.sim(&["evil temperature=0".into(), "good temperature=0".into()]);
        std::thread::sleep(Duration::from_millis(200));
        (published("evil") > 0 && published("good") > 0).then_some(())
    });
    let good_before = published("good");
    let warm = evil_decisions();
    let base = memory_kib(pid).0;
    let mut caps = 0;
    for i in 1..=100 {
        g.sim(&[
            format!("good temperature={i}"),
            format!("evil temperature={i}"),
        ]);
        wait_for(Duration::from_secs(10), "evil's decision", || {
            (evil_decisions() >= warm + i).then_some(())
        });
    }
    for r in audit_records(&dd) {
        if r["device"] == "sim:evil" && detail(&r)["cause"] == "memory-cap" {
            caps += 1;
        }
    }
    // good, not bound to the plugin, was published every time
    wait_for(Duration::from_secs(10), "good's 100 readings", || {
        (published("good") >= good_before + 100).then_some(())
    });
    let peak = memory_kib(pid).1;
    let now = memory_kib(pid).0;
    eprintln!(
        "gateway RSS: {base} KiB after warm-up, peak {peak} KiB, {now} KiB at the end; {caps} memory-cap traps"
    );
    // the plugin hit its cap many times (each fill is 8 decisions of 4 MiB)
    assert!(caps >= 8, "only {caps} memory-cap traps");
    // ~400 MiB asked for; the peak grew by at most one cap (32 MiB) plus 32 MiB of overhead
    // (the replacement instance, allocator slack, audit and MQTT buffers)
    assert!(
        peak.saturating_sub(base) < 64 * 1024,
        "peak RSS grew by {} KiB",
        peak - base
    );
    g.stop();
}
