//! A plugin author outside this repository: `warden plugin new` makes a Rust project in a
//! temporary directory, its native tests pass, `warden plugin build` makes the 0.2.0 core module,
//! `warden plugin test` passes its test file in the real host, and a running gateway, whose
//! config already names the plugin (denying its bindings while the module is missing), hot-loads
//! it once it is signed and copied into the plugin directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

fn ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_scaffolded_plugin_builds_tests_signs_and_hot_loads() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let project = root.join("speed-limit");
    ok(
        &warden(
            root,
            &[
                "plugin",
                "new",
                "speed-limit",
                "--dir",
                project.to_str().unwrap(),
            ],
        ),
        "plugin new",
    );
    // native tests, with the author's cargo
    let o = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", root.join("native-target"))
        .output()
        .unwrap();
    ok(&o, "cargo test in the scaffold");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 passed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // the core module; the repository's wasm target dir is shared so the standard library is reused
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm");
    let o = warden(
        root,
        &[
            "plugin",
            "build",
            project.to_str().unwrap(),
            "--target-dir",
            shared.to_str().unwrap(),
        ],
    );
    ok(&o, "plugin build");
    let module = project.join("target/plugin/speed_limit.wasm");
    assert!(module.is_file());
    ok(
        &warden(
            root,
            &[
                "plugin",
                "test",
                module.to_str().unwrap(),
                "--messages",
                project.join("tests.jsonl").to_str().unwrap(),
                "--config",
                project.join("config.json").to_str().unwrap(),
            ],
        ),
        "plugin test",
    );

    // a gateway that names the plugin before it exists: its binding denies (fail closed)
    ok(
        &warden(
            root,
            &[
                "plugin",
                "keygen",
                "--out",
                root.join("keys").to_str().unwrap(),
                "--name",
                "author",
            ],
        ),
        "keygen",
    );
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let p = Ports::new();
    let cfg = root.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"{base}
[plugins]
dir = "plugins"
trusted_keys = ["keys/author.pub"]
watch_interval_ms = 200

[[plugins.load]]
name = "speed-limit"
module = "speed_limit.wasm"
config = {{ blocked_points = ["debug_shell", "humidity"] }}

[[plugins.bind]]
plugin = "speed-limit"

[[sim.devices]]
address = "a"
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
    let decided = |reason: &str| {
        let reason = reason.to_owned();
        move |r: &serde_json::Value| {
            r["device"] == "sim:a"
                && r["action"] == "uplink"
                && r["reason"].as_str().unwrap_or("").contains(&reason)
        }
    };
    g.sim(&["a temperature=1 humidity=40".into()]);
    wait_for(
        Duration::from_secs(10),
        "a denied: plugin not loaded",
        || {
            audit_records(&dd)
                .into_iter()
                .find(decided("plugin is not loaded"))
        },
    );

    // deploy: module, its tests beside it (run under the configured config), signature
    let deployed = plugins.join("speed_limit.wasm");
    std::fs::copy(&module, &deployed).unwrap();
    std::fs::copy(
        project.join("tests.jsonl"),
        plugins.join("speed_limit.tests.jsonl"),
    )
    .unwrap();
    ok(
        &warden(
            root,
            &[
                "plugin",
                "sign",
                deployed.to_str().unwrap(),
                "--key",
                root.join("keys/author.key").to_str().unwrap(),
            ],
        ),
        "sign",
    );
    wait_for(Duration::from_secs(20), "the plugin hot-loaded", || {
        audit_records(&dd).into_iter().find(|r| {
            r["action"] == "plugin-reload"
                && r["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("`speed-limit` reloaded")
        })
    });
    // now it decides: the configured point is denied by it, the others pass
    let sub = Subscriber::spawn(
        &operator_args(&dd, p.mqtt, &["-t", "warden/devices/+/telemetry/#"]),
        &root.join("sub.txt"),
    );
    g.sim(&["a temperature=2 humidity=41".into()]);
    let r = wait_for(Duration::from_secs(10), "a denied by the plugin", || {
        audit_records(&dd)
            .into_iter()
            .find(decided("point `humidity` is blocked"))
    });
    assert_eq!(r["decider"], "plugin:speed-limit", "{r}");
    wait_for(Duration::from_secs(15), "a's temperature published", || {
        g.sim(&["a temperature=3".into()]);
        std::thread::sleep(Duration::from_millis(200));
        sub.lines()
            .iter()
            .any(|(t, _)| t == "warden/devices/sim:a/telemetry/temperature")
            .then_some(())
    });
    g.stop();
}

/// `plugin new --lang c|python|js`, then `plugin build` with the repository's pinned compiler or
/// componentizer,
/// then the project's own test file through `warden plugin test` in the real host (Python with the
/// WASI grant its runtime needs; the refusal without it names the grant).
fn scaffold_builds_and_passes_its_tests(lang: &str, tool: &Path, wasi: Option<&str>) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let project = root.join("guard");
    ok(
        &warden(
            root,
            &[
                "plugin",
                "new",
                "door-guard",
                "--lang",
                lang,
                "--dir",
                project.to_str().unwrap(),
            ],
        ),
        "plugin new",
    );
    assert!(
        tool.exists(),
        "{} missing: run tests/scripts/install-wasm-langs.sh (clang-19: install-wasm.sh)",
        tool.display()
    );
    let o = warden(
        root,
        &[
            "plugin",
            "build",
            project.to_str().unwrap(),
            "--tool",
            tool.to_str().unwrap(),
        ],
    );
    ok(&o, "plugin build");
    let module = project.join("target/plugin/door_guard.wasm");
    // the last line of the output is the module's path
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().last(),
        module.to_str()
    );
    let test = |wasi: Option<&str>| {
        let mut args = vec![
            "plugin".to_owned(),
            "test".into(),
            module.to_str().unwrap().into(),
            "--messages".into(),
            project.join("tests.jsonl").to_str().unwrap().into(),
            "--config".into(),
            project.join("config.json").to_str().unwrap().into(),
        ];
        if let Some(w) = wasi {
            args.push(format!("--wasi={w}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        warden(root, &args)
    };
    let o = test(wasi);
    ok(&o, "plugin test");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 passed, 0 mismatched"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    if let Some(w) = wasi {
        let o = test(None);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains(&format!("--wasi {w}")),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_scaffolded_python_plugin_builds_and_passes_its_tests() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    scaffold_builds_and_passes_its_tests(
        "python",
        &repo.join("target/wasm-langs/venv/bin/componentize-py"),
        Some("cli,clocks,filesystem,io,random,sockets"),
    );
}

#[test]
fn a_scaffolded_javascript_plugin_builds_and_passes_its_tests() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    scaffold_builds_and_passes_its_tests(
        "js",
        &repo.join("plugins/examples/assurance-floor-js/node_modules/.bin/componentize-js"),
        None,
    );
}

#[test]
fn a_scaffolded_c_plugin_builds_and_passes_its_tests() {
    scaffold_builds_and_passes_its_tests("c", Path::new("/usr/bin/clang-19"), None);
}
