//! Broken configuration and key material: a clear error naming the problem, a non-zero exit, and
//! nothing in the data dir overwritten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

/// File name → content, without SQLite's transient `-wal`/`-shm` files.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && !name.ends_with("-wal") && !name.ends_with("-shm") {
                m.insert(name, std::fs::read(e.path()).unwrap());
            }
        }
    }
    m
}

/// Names of files added, removed or changed between two snapshots.
fn changed(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut v: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    v.dedup();
    v
}

fn run(dd: &Path, cfg: &Path) -> (bool, String) {
    let o = Command::new(warden_bin())
        .arg("--data-dir")
        .arg(dd)
        .args(["run", "--config"])
        .arg(cfg)
        .env_remove("WARDEN_MASTER_KEY")
        .output()
        .unwrap();
    (o.status.success(), stderr(&o))
}

#[test]
fn broken_configs_and_keys_fail_clearly_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let good = t.path().join("good.toml");
    std::fs::write(&good, base_config(&p)).unwrap();
    let dd = t.path().join("data");
    // a data dir with real content first
    let g = Gateway::start(&dd, &good, &p, &[]);
    g.sim(&["cnt n=1".to_string()]);
    g.stop();
    let before = snapshot(&dd);
    assert!(before.contains_key("warden.db"));
    // the master key lives beside the data dir, not in it
    let key = t.path().join("data.master.key");
    assert!(key.exists() && !before.contains_key("master.key"));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed",
            format!("{}\n[gateway\nid = 1\n", base_config(&p)),
            "good.toml",
        ),
        (
            "unknown key",
            format!("{}\n[gateway]\nidentity = \"x\"\n", base_config(&p)),
            "identity",
        ),
        (
            "unknown section",
            format!("{}\n[dashboard]\nx = 1\n", base_config(&p)),
            "dashboard",
        ),
        (
            "a channel capacity that would abort the allocator",
            format!(
                "{}\n[gateway]\nchannel_capacity = 9223372036854775807\n",
                base_config(&p)
            ),
            "gateway.channel_capacity = 9223372036854775807 is out of range",
        ),
        (
            "four billion simulated devices",
            format!(
                "{}\n[[sim.devices]]\naddress = \"x\"\nkind = \"counter\"\ncount = 4294967295\n",
                base_config(&p)
            ),
            "count must be at most 100000",
        ),
        (
            "a 5 MB config (it once peaked at 1.6 GB)",
            format!("{}\n# {}\n", base_config(&p), "x".repeat(5 << 20)),
            "larger than 4194304 bytes",
        ),
        (
            "a broker that accepts no connection",
            base_config(&p).replace(
                "[mqtt.embedded]\n",
                "[mqtt.embedded]\nmax_connections = 0\n",
            ),
            "mqtt.embedded.max_connections = 0 is out of range",
        ),
        (
            "a sim interval past a day",
            format!(
                "{}\n[[sim.devices]]\naddress = \"x\"\nkind = \"counter\"\ninterval_ms = 18446744073709551\n",
                base_config(&p)
            ),
            "interval_ms must be at most 86400000",
        ),
        (
            "bad value",
            base_config(&p).replace(
                "[profiles.counter]",
                "[profiles.counter]\nmin_assurance = \"strong\"",
            ),
            "strong",
        ),
        (
            "dangling profile",
            format!("{}\n[models]\n\"Acme/X\" = \"nope\"\n", base_config(&p)),
            "nope",
        ),
        (
            "plain external broker",
            format!(
                "{}\n[mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\n",
                base_config(&p)
            ),
            "mqtts://",
        ),
    ];
    for (name, text, needle) in &cases {
        let f = t.path().join("good.toml");
        std::fs::write(&f, text).unwrap();
        let (ok, err) = run(&dd, &f);
        assert!(!ok, "{name}: accepted");
        let needle = if *name == "malformed" {
            "good.toml"
        } else {
            needle
        };
        assert!(
            err.contains(needle),
            "{name}: error does not name `{needle}`: {err}"
        );
        assert_eq!(
            changed(&snapshot(&dd), &before),
            Vec::<String>::new(),
            "{name}: data dir changed"
        );
        // check-config agrees
        let o = warden(&dd, &["check-config", f.to_str().unwrap()]);
        assert!(!o.status.success(), "{name}: check-config accepted it");
    }

    // key file problems, with an otherwise good config
    let keyed = |key: &Path| {
        format!(
            "{}\n[secrets]\nkey_file = \"{}\"\n",
            base_config(&p),
            key.display()
        )
    };
    let cfg = t.path().join("k.toml");
    // unreadable: the path is a directory
    let kdir = t.path().join("keydir");
    std::fs::create_dir(&kdir).unwrap();
    std::fs::write(&cfg, keyed(&kdir)).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok);
    assert!(
        err.contains("master key file") && err.contains("keydir"),
        "{err}"
    );
    // readable by others
    let loose = t.path().join("loose.key");
    std::fs::copy(&key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&cfg, keyed(&loose)).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok);
    assert!(err.contains("chmod 600"), "{err}");
    // not a key
    let garbage = t.path().join("garbage.key");
    std::fs::write(&garbage, "this is not a key").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&cfg, keyed(&garbage)).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok);
    assert!(
        err.contains("64 hex") && !err.contains("this is not a key"),
        "{err}"
    );
    // a valid key, but not this data dir's
    let other = t.path().join("other.key");
    std::fs::write(&other, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&cfg, keyed(&other)).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
    // missing key for an existing data dir: refused, no new key written
    let missing = t.path().join("missing.key");
    std::fs::write(&cfg, keyed(&missing)).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok);
    assert!(err.contains("refusing to create a new key"), "{err}");
    assert!(!missing.exists());
    assert_eq!(
        changed(&snapshot(&dd), &before),
        Vec::<String>::new(),
        "key errors changed the data dir"
    );

    // and the untouched data dir still runs with its own key
    std::fs::write(&good, base_config(&p)).unwrap();
    let g = Gateway::start(&dd, &good, &p, &[]);
    g.stop();
    let o = warden(&dd, &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // an install from before keeps its key inside the data dir: the next start moves it out, audited
    std::fs::rename(&key, dd.join("master.key")).unwrap();
    let g = Gateway::start(&dd, &good, &p, &[]);
    g.stop();
    assert!(key.exists() && !dd.join("master.key").exists());
    let moved = audit_records(&dd)
        .into_iter()
        .filter(|r| r["action"] == "master-key-moved")
        .count();
    assert_eq!(moved, 1);
    // two keys at once: refused, nothing guessed
    std::fs::copy(&key, dd.join("master.key")).unwrap();
    let (ok, err) = run(&dd, &good);
    assert!(!ok && err.contains("two master keys"), "{err}");
    std::fs::remove_file(dd.join("master.key")).unwrap();

    // files that would hang or exhaust memory: a FIFO as key file, /dev/zero as a password file
    let fifo = t.path().join("fifo.key");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(&cfg, keyed(&fifo)).unwrap();
    let started = std::time::Instant::now();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok && err.contains("fifo.key"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a FIFO key file hung the start"
    );
    let zero = base_config(&p).replace(
        "[mqtt.embedded]\n",
        "[mqtt.embedded]\nusers = [{ name = \"ha\", password_file = \"/dev/zero\", publish = [], subscribe = [] }]\n",
    );
    std::fs::write(&cfg, zero).unwrap();
    let (ok, err) = run(&dd, &cfg);
    assert!(!ok && err.contains("not a regular file"), "{err}");
}

/// A TOML import with a syntax error on the `app_key` line: the error names the line and column,
/// never the key (it once came back whole in the HTTP 400 body).
#[test]
fn import_errors_never_echo_a_secret() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let g = Gateway::start(&t.path().join("data"), &cfg, &p, &[]);
    let key = "2b7e151628aed2a6abf7158809cf4f3c";
    let f = t.path().join("bad.toml");
    std::fs::write(
        &f,
        format!(
            "[[devices]]\nid = \"lorawan:0004a30b001c0530\"\ncredentials = {{ app_key = \"hex:{key}\n"
        ),
    )
    .unwrap();
    let o = g.cli(&["devices", "import", f.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains(key) && !err.contains("2b7e"), "{err}");
    g.stop();
}

/// `warden reload` and SIGHUP re-read the running gateway's config: each reload is audited with
/// its actor; a broken file is refused with the parse error (exit 1, audited as a deny) and the
/// gateway keeps running on the config it had (the control: the next good file reloads again, and
/// the gateway still answers after the signal, whose default action would have ended it).
#[test]
fn warden_reload_and_sighup_reload_the_config_and_refuse_a_broken_one() {
    let t = tempfile::tempdir().unwrap();
    let (p, g) = Gateway::start_base(t.path());
    let cfg = g.config.clone();
    let dd = g.data_dir.clone();
    let reloads = |dd: &Path| -> Vec<serde_json::Value> {
        audit_records(dd)
            .into_iter()
            .filter(|r| r["action"] == "config-reload")
            .collect()
    };

    let o = g.cli(&["reload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "config reloaded");
    let first = wait_for(Duration::from_secs(10), "the CLI's reload record", || {
        reloads(&dd).into_iter().next()
    });
    assert!(
        first["actor"].as_str().unwrap().starts_with("operator:"),
        "{first}"
    );
    assert_eq!(first["verdict"], serde_json::Value::Null, "{first}");

    // a broken file: refused, named, audited; the gateway keeps running
    std::fs::write(&cfg, format!("{}\n[zones.lab\n", base_config(&p))).unwrap();
    let o = g.cli(&["reload"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("not reloaded") && err.contains("line"),
        "{err}"
    );
    let refused = wait_for(
        Duration::from_secs(10),
        "the refused reload's record",
        || reloads(&dd).into_iter().find(|r| r["verdict"] == "deny"),
    );
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("reload refused, previous config kept"),
        "{refused}"
    );

    // SIGHUP with a good file again: reloaded, audited as the signal
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &g.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let by_signal = wait_for(
        Duration::from_secs(10),
        "the SIGHUP reload's record",
        || {
            reloads(&dd)
                .into_iter()
                .find(|r| r["actor"] == "signal:SIGHUP")
        },
    );
    assert_eq!(by_signal["verdict"], serde_json::Value::Null, "{by_signal}");
    // still running: `status` through the API succeeds (it asserts so)
    g.status();
    g.stop();
}
