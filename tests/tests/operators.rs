//! Named operators against the real binary: a viewer reads but cannot approve (403, audited);
//! an operator approves and commands but cannot revoke; every action is recorded with
//! `operator:<name>`; `Bearer` is accepted in any case; a rotated token stops working; an
//! interactive login with a TOTP second factor (the code computed here with the same crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod api_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use api_support::*;
use warden_e2e::*;

fn config(t: &std::path::Path, p: &Ports) -> std::path::PathBuf {
    let cfg = t.join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[sim.devices]]\naddress = \"thermo\"\nkind = \"thermostat\"\ninterval_ms = 0\nprofile = \"thermostat\"\nprovision = true\n",
            base_config(p)
        ),
    )
    .unwrap();
    cfg
}

/// `warden operators …` as the bootstrap admin, with `stdin` piped in.
fn admin_cli(dd: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new(warden_bin())
        .arg("--data-dir")
        .arg(dd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn roles_are_enforced_and_every_action_carries_its_operator() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = config(t.path(), &p);
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);

    let o = g.cli(&["operators", "add", "vera", "--role", "viewer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let vera = token_from(&stdout(&o));
    let o = g.cli(&["operators", "add", "otto", "--role", "operator"]);
    let otto = token_from(&stdout(&o));
    let list = stdout(&g.cli(&["operators", "list"]));
    assert!(
        list.contains("admin") && list.contains("vera") && list.contains("viewer"),
        "{list}"
    );

    // an unknown device becomes pending
    g.sim(&["newdev temperature=1".to_string()]);
    wait_for(Duration::from_secs(10), "the pending device", || {
        let (c, _) = http(
            p.api,
            "GET",
            "/api/devices/sim:newdev",
            Some(&bearer(&vera)),
            "",
        );
        (c == 200).then_some(())
    });

    // Bearer in any case (RFC 7235); anything else is 401
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (c, b) = http(
            p.api,
            "GET",
            "/api/whoami",
            Some(&format!("{scheme} {vera}")),
            "",
        );
        assert_eq!(c, 200, "{scheme}: {b}");
        assert_eq!(json(&b)["operator"], "vera");
    }
    assert_eq!(
        http(
            p.api,
            "GET",
            "/api/status",
            Some(&format!("Basic {vera}")),
            ""
        )
        .0,
        401
    );
    assert_eq!(http(p.api, "GET", "/api/status", None, "").0, 401);

    // the viewer reads but cannot approve, command, or manage operators
    let approve = r#"{"reason":"installed by the night shift"}"#;
    let (c, b) = http(
        p.api,
        "POST",
        "/api/devices/sim:newdev/approve",
        Some(&bearer(&vera)),
        approve,
    );
    assert_eq!(c, 403, "{b}");
    let cmd = r#"{"id":"c-vera","command":"set_setpoint","args":{"value":20}}"#;
    assert_eq!(
        http(
            p.api,
            "POST",
            "/api/devices/sim:thermo/commands",
            Some(&bearer(&vera)),
            cmd
        )
        .0,
        403
    );
    assert_eq!(
        http(p.api, "GET", "/api/operators", Some(&bearer(&vera)), "").0,
        403
    );
    // … and neither can the CLI acting as the viewer
    let o = Command::new(warden_bin())
        .arg("--data-dir")
        .arg(&dd)
        .args(["devices", "approve", "sim:newdev", "--reason", "x"])
        .env("WARDEN_API_TOKEN", &vera)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );

    // the operator approves and commands, but may not revoke
    let (c, b) = http(
        p.api,
        "POST",
        "/api/devices/sim:newdev/approve",
        Some(&bearer(&otto)),
        approve,
    );
    assert_eq!(c, 200, "{b}");
    let cmd = r#"{"id":"c-otto","command":"set_setpoint","args":{"value":20}}"#;
    let (c, b) = http(
        p.api,
        "POST",
        "/api/devices/sim:thermo/commands",
        Some(&bearer(&otto)),
        cmd,
    );
    assert_eq!(c, 200, "{b}");
    let (c, _) = http(
        p.api,
        "POST",
        "/api/devices/sim:newdev/revoke",
        Some(&bearer(&otto)),
        r#"{"reason":"x"}"#,
    );
    assert_eq!(c, 403);

    // a rotated token stops working at once
    let o = g.cli(&["operators", "token", "vera"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        http(p.api, "GET", "/api/status", Some(&bearer(&vera)), "").0,
        401
    );
    // the bootstrap admin's own rotation rewrites api.token, and the CLI keeps working
    let o = g.cli(&["operators", "token", "admin"]);
    assert!(
        o.status.success() && stdout(&o).contains("updated"),
        "{}",
        stdout(&o)
    );
    assert!(g.cli(&["operators", "list"]).status.success());
    let o = g.cli(&["operators", "remove", "otto"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        http(p.api, "GET", "/api/status", Some(&bearer(&otto)), "").0,
        401
    );
    g.stop();

    let recs = audit_records(&dd);
    let find = |action: &str, actor: &str| {
        recs.iter()
            .filter(|r| r["action"] == action && r["actor"] == actor)
            .count()
    };
    assert_eq!(
        find("operator-add", "operator:admin"),
        2,
        "adds carry the admin"
    );
    assert!(
        find("api-forbidden", "operator:vera") >= 3,
        "the viewer's refusals are audited"
    );
    assert_eq!(
        find("api-forbidden", "operator:otto"),
        1,
        "the operator's revoke"
    );
    let approved: Vec<_> = recs
        .iter()
        .filter(|r| r["device"] == "sim:newdev" && r["reason"] == "installed by the night shift")
        .collect();
    assert_eq!(approved.len(), 1, "one approve record");
    assert_eq!(approved[0]["actor"], "operator:otto");
    assert!(
        recs.iter().any(|r| r["device"] == "sim:thermo"
            && r["actor"] == "operator:otto"
            && r["detail"].as_str().unwrap_or("").contains("c-otto")),
        "the command carries its operator"
    );
    assert_eq!(find("operator-token", "operator:admin"), 2);
    assert_eq!(find("operator-remove", "operator:admin"), 1);
    assert!(
        !recs.iter().any(|r| r["actor"] == "api:operator"),
        "no shared principal left"
    );
    for r in &recs {
        let text = r.to_string();
        assert!(
            !text.contains(&vera) && !text.contains(&otto),
            "a token in the audit log: {text}"
        );
    }
}

#[test]
fn totp_login_needs_the_current_code_once() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = config(t.path(), &p);
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let pw = "a long enough passphrase";
    let o = admin_cli(
        &dd,
        &[
            "operators",
            "add",
            "tara",
            "--role",
            "operator",
            "--password-stdin",
        ],
        &format!("{pw}\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let login =
        |body: serde_json::Value| http(p.api, "POST", "/api/login", None, &body.to_string());

    // password alone works until TOTP is on
    let (c, b) = login(serde_json::json!({ "name": "tara", "password": pw }));
    assert_eq!(c, 200, "{b}");
    let session = json(&b)["token"].as_str().unwrap().to_owned();
    let (c, b) = http(p.api, "GET", "/api/whoami", Some(&bearer(&session)), "");
    assert_eq!((c, json(&b)["role"].clone()), (200, "operator".into()));

    let o = g.cli(&["operators", "totp", "tara", "--enable"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let uri = stdout(&o)
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap()
        .to_owned();
    assert!(
        uri.contains("algorithm=SHA1") && uri.contains("digits=6") && uri.contains("period=30"),
        "{uri}"
    );
    assert_eq!(
        http(p.api, "GET", "/api/whoami", Some(&bearer(&session)), "").0,
        401,
        "sessions end when a factor changes"
    );
    let secret = totp_secret(&uri);
    let totp = totp_from_uri(&uri);

    assert_eq!(
        login(serde_json::json!({ "name": "tara", "password": pw })).0,
        401,
        "code missing"
    );
    // a wrong code (000000 could be right by chance once in a million: then it is not refused)
    let wrong = if totp.generate_current().unwrap() == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(
        login(serde_json::json!({ "name": "tara", "password": pw, "totp": wrong })).0,
        401
    );
    let code = totp.generate_current().unwrap();
    assert_eq!(
        login(serde_json::json!({ "name": "tara", "password": "wrong password", "totp": code })).0,
        401
    );
    let (c, b) = login(serde_json::json!({ "name": "tara", "password": pw, "totp": code }));
    assert_eq!(c, 200, "{b}");
    let session = json(&b)["token"].as_str().unwrap().to_owned();
    let (c, b) = http(p.api, "GET", "/api/whoami", Some(&bearer(&session)), "");
    assert_eq!((c, json(&b)["operator"].clone()), (200, "tara".into()));
    assert_eq!(
        login(serde_json::json!({ "name": "tara", "password": pw, "totp": code })).0,
        401,
        "a code is good once"
    );
    g.stop();
    let recs = audit_records(&dd);
    assert_eq!(
        recs.iter()
            .filter(|r| r["action"] == "login" && r["actor"] == "operator:tara")
            .count(),
        2
    );
    assert!(
        recs.iter()
            .any(|r| r["action"] == "operator-totp" && r["actor"] == "operator:admin")
    );
    let all = serde_json::to_string(&recs).unwrap();
    assert!(
        !all.contains(secret) && !all.contains(pw),
        "a secret in the audit log"
    );
}
