//! The operator dashboard (`/ui/…` on the management API's listener): its guards over raw HTTP
//! (session cookie flags, CSRF refusal, security headers, nothing readable without a session,
//! login rate limit), and the whole of it in Debian's headless chromium driven by selenium
//! (`tests/peers/dashboard/drive.py`, installed by `tests/scripts/install-dashboard.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use warden_e2e::*;

const PASSWORD: &str = "correct horse battery";

/// One HTTP/1.1 request on its own connection: (status, header block, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    let (head, body) = b.split_once("\r\n\r\n").unwrap_or((&b, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn demo_gateway(t: &Path) -> (Gateway, Ports) {
    demo_gateway_with(t, "")
}

/// The demo on free ports, with more `[api]` settings.
fn demo_gateway_with(t: &Path, api: &str) -> (Gateway, Ports) {
    let p = Ports::new();
    let cfg = t.join("ports.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:{}\"\n{api}[mqtt.embedded]\nlisten = \"127.0.0.1:{}\"\n[sim]\ncontrol = \"127.0.0.1:{}\"\n",
            p.api, p.mqtt, p.sim
        ),
    )
    .unwrap();
    let g = Gateway::start(&t.join("data"), &cfg, &p, &["--demo"]);
    (g, p)
}

fn admin_token(g: &Gateway) -> String {
    std::fs::read_to_string(g.data_dir.join("api.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Adds an operator with a password through the bearer-token API.
fn add_operator(port: u16, token: &str, name: &str, role: &str) {
    let auth = format!("Bearer {token}");
    let (st, _, body) = request(
        port,
        "POST",
        "/api/operators",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &format!(r#"{{"name":"{name}","role":"{role}","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(st, 201, "{body}");
}

/// Logs in on the dashboard; returns the `Cookie` header value, the CSRF token and the
/// `Set-Cookie` header.
fn login(port: u16, name: &str) -> (String, String, String) {
    let (st, head, body) = request(
        port,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/json")],
        &format!(r#"{{"name":"{name}","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    let set = header(&head, "set-cookie")[0].to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    (
        cookie,
        json(&body)["csrf"].as_str().unwrap().to_owned(),
        set,
    )
}

#[test]
fn dashboard_guards_over_http() {
    let t = tempfile::tempdir().unwrap();
    let (g, p) = demo_gateway(t.path());
    let api = p.api;

    // nothing but the login page, its files and liveness without a session
    let (st, head, _) = request(api, "GET", "/ui/devices", &[], "");
    assert_eq!(st, 303);
    assert_eq!(header(&head, "location"), ["/ui/login"]);
    assert_eq!(request(api, "GET", "/", &[], "").0, 303);
    for path in [
        "/api/status",
        "/api/devices",
        "/api/live",
        "/ui/assets/app.js",
        "/ui/session",
    ] {
        assert_eq!(request(api, "GET", path, &[], "").0, 401, "{path}");
    }
    for path in [
        "/ui/login",
        "/ui/assets/login.js",
        "/ui/assets/style.css",
        "/healthz",
    ] {
        assert_eq!(request(api, "GET", path, &[], "").0, 200, "{path}");
    }
    // every response carries the security headers, the API's too
    for path in ["/ui/login", "/api/status", "/healthz"] {
        let (_, head, _) = request(api, "GET", path, &[], "");
        let csp = header(&head, "content-security-policy");
        assert_eq!(csp.len(), 1, "{path}: {head}");
        assert!(csp[0].contains("default-src 'self'") && csp[0].contains("frame-ancestors 'none'"));
        assert!(!csp[0].contains("unsafe-inline"));
        assert_eq!(header(&head, "x-content-type-options"), ["nosniff"]);
        assert_eq!(header(&head, "referrer-policy"), ["no-referrer"]);
    }

    let token = admin_token(&g);
    add_operator(api, &token, "olga", "operator");
    // a login is JSON only (a cross-site form cannot post it)
    let (st, _, _) = request(
        api,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("name=olga&password={PASSWORD}"),
    );
    assert_eq!(st, 415);
    let (cookie, csrf, set) = login(api, "olga");
    let attrs: Vec<&str> = set.split("; ").collect();
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&a), "{set}");
    }
    assert!(!attrs.contains(&"Secure"), "plain HTTP on loopback: {set}");

    // the cookie reads pages and the API, as the operator
    assert_eq!(
        request(api, "GET", "/ui/devices", &[("Cookie", &cookie)], "").0,
        200
    );
    let (st, _, who) = request(api, "GET", "/api/whoami", &[("Cookie", &cookie)], "");
    assert_eq!(st, 200);
    assert_eq!(json(&who)["operator"], "olga");
    let (st, _, s) = request(api, "GET", "/ui/session", &[("Cookie", &cookie)], "");
    assert_eq!(st, 200);
    assert_eq!(json(&s)["csrf"], csrf.as_str());
    // the choices for approvals and commands: the demo's profiles with what they allow
    let (st, _, c) = request(api, "GET", "/api/catalogue", &[("Cookie", &cookie)], "");
    assert_eq!(st, 200, "{c}");
    let c = json(&c);
    assert!(
        c["profiles"]["switch"]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "turn_on"),
        "{c}"
    );
    // what the running plugin host has loaded (the demo loads none)
    let (st, _, pl) = request(api, "GET", "/api/plugins", &[("Cookie", &cookie)], "");
    assert_eq!(st, 200, "{pl}");
    assert_eq!(json(&pl)["plugins"], serde_json::json!([]), "{pl}");
    // a bad live filter is refused with the reason
    let (st, _, b) = request(
        api,
        "GET",
        "/api/live?verdict=maybe",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(st, 400);
    assert_eq!(json(&b)["error"], "`verdict` is `allow` or `deny`");

    // a state-changing request on the cookie without the CSRF token: 403, audited, not done
    let cmd = r#"{"command":"turn_on"}"#;
    let path = "/api/devices/sim:switch-1/commands";
    let json_ct = ("Content-Type", "application/json");
    let (st, _, body) = request(api, "POST", path, &[("Cookie", &cookie), json_ct], cmd);
    assert_eq!(st, 403, "{body}");
    let wrong = "ab".repeat(32);
    let (st, _, _) = request(
        api,
        "POST",
        path,
        &[("Cookie", &cookie), json_ct, ("X-CSRF-Token", &wrong)],
        cmd,
    );
    assert_eq!(st, 403);
    // with it: done, as the operator
    let (st, _, body) = request(
        api,
        "POST",
        path,
        &[("Cookie", &cookie), json_ct, ("X-CSRF-Token", &csrf)],
        cmd,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["outcome"], "delivered");
    // the role table holds for the cookie too: revoking needs admin
    let (st, _, _) = request(
        api,
        "POST",
        "/api/devices/sim:meter-1/revoke",
        &[("Cookie", &cookie), json_ct, ("X-CSRF-Token", &csrf)],
        r#"{"reason":"no"}"#,
    );
    assert_eq!(st, 403);
    // the CLI's bearer token needs no CSRF token (unchanged)
    let o = g.cli(&["command", "sim:switch-1", "turn_off"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // logout needs the token too; afterwards the cookie opens nothing
    assert_eq!(
        request(api, "POST", "/ui/logout", &[("Cookie", &cookie)], "").0,
        403
    );
    let (st, head, _) = request(
        api,
        "POST",
        "/ui/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(st, 200);
    assert!(header(&head, "set-cookie")[0].contains("Max-Age=0"));
    assert_eq!(
        request(api, "GET", "/api/status", &[("Cookie", &cookie)], "").0,
        401
    );
    assert_eq!(
        request(api, "GET", "/ui/devices", &[("Cookie", &cookie)], "").0,
        303
    );

    // the audit log has the web login, the refusals and the logout
    let recs = wait_for(Duration::from_secs(10), "the audit records", || {
        let r = audit_records(&g.data_dir);
        r.iter().any(|x| x["action"] == "logout").then_some(r)
    });
    let csrf_refusals: Vec<_> = recs
        .iter()
        .filter(|r| r["action"] == "csrf-refused")
        .collect();
    assert_eq!(csrf_refusals.len(), 3, "two commands and one logout");
    assert!(csrf_refusals.iter().all(|r| r["actor"] == "operator:olga"));
    assert!(
        recs.iter()
            .any(|r| r["action"] == "login" && r["actor"] == "operator:olga")
    );
    assert!(recs.iter().any(|r| r["action"] == "command"
        && r["device"] == "sim:switch-1"
        && r["actor"] == "operator:olga"
        && r["verdict"] == "allow"));

    // with TOTP enrolled, the page's login needs the current code too
    let auth = format!("Bearer {token}");
    let (st, _, b) = request(
        api,
        "POST",
        "/api/operators/olga/totp",
        &[("Authorization", &auth), json_ct],
        r#"{"enable":true}"#,
    );
    assert_eq!(st, 200, "{b}");
    let uri = json(&b)["provisioning_uri"].as_str().unwrap().to_owned();
    let totp = totp_from_uri(&uri);
    let without = format!(r#"{{"name":"olga","password":"{PASSWORD}"}}"#);
    assert_eq!(
        request(api, "POST", "/ui/login", &[json_ct], &without).0,
        401
    );
    let code = totp.generate_current().unwrap();
    let with = format!(r#"{{"name":"olga","password":"{PASSWORD}","totp":"{code}"}}"#);
    let (st, head, _) = request(api, "POST", "/ui/login", &[json_ct], &with);
    assert_eq!(st, 200);
    assert!(header(&head, "set-cookie")[0].starts_with("warden_session="));

    // login rate limit: past the threshold the source gets 429 before any password check
    let mut codes = Vec::new();
    for _ in 0..12 {
        let (st, _, _) = request(
            api,
            "POST",
            "/ui/login",
            &[json_ct],
            r#"{"name":"olga","password":"wrong password"}"#,
        );
        codes.push(st);
    }
    assert_eq!(codes[0], 401, "{codes:?}");
    assert_eq!(*codes.last().unwrap(), 429, "{codes:?}");
    // even the right password is refused while blocked
    let (st, _, _) = request(
        api,
        "POST",
        "/ui/login",
        &[json_ct],
        &format!(r#"{{"name":"olga","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(st, 429);
    g.stop();
}

#[test]
fn the_dashboard_turned_off_leaves_the_api_and_its_recent_values() {
    let t = tempfile::tempdir().unwrap();
    let (g, p) = demo_gateway_with(t.path(), "dashboard = false\n");
    let auth = format!("Bearer {}", admin_token(&g));
    // the API answers (the control), and keeps the meter's recent values for whoever asks
    let (st, _, body) = request(p.api, "GET", "/api/status", &[("Authorization", &auth)], "");
    assert_eq!(st, 200, "{body}");
    let kept = wait_for(Duration::from_secs(30), "sim:meter-1's kept values", || {
        let (st, _, body) = request(
            p.api,
            "GET",
            "/api/devices/sim:meter-1/points",
            &[("Authorization", &auth)],
            "",
        );
        assert_eq!(st, 200, "{body}");
        let v = json(&body);
        let power = v["points"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "power")?
            .clone();
        (power["history"].as_array()?.len() >= 2).then_some(power)
    });
    assert_eq!(kept["unit"], "W");
    assert!(kept["value"].is_f64(), "{kept}");
    // without a token the points are not readable
    let (st, _, _) = request(p.api, "GET", "/api/devices/sim:meter-1/points", &[], "");
    assert_eq!(st, 401);
    // and no page, file or login route exists
    for (method, path) in [
        ("GET", "/ui/"),
        ("GET", "/ui/login"),
        ("POST", "/ui/login"),
        ("GET", "/ui/assets/login.js"),
        ("GET", "/ui/devices"),
    ] {
        let (st, _, _) = request(p.api, method, path, &[], "");
        assert_eq!(st, 404, "{method} {path}");
    }
    g.stop();
}

#[test]
fn dashboard_in_headless_chromium() {
    let t = tempfile::tempdir().unwrap();
    let (g, p) = demo_gateway(t.path());
    let token = admin_token(&g);
    add_operator(p.api, &token, "alice", "admin");
    add_operator(p.api, &token, "vic", "viewer");
    // a device whose name is markup (names come from devices and imports: attacker-controlled)
    let evil_name = r#"<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">"#;
    // and a provisioning batch waiting for approval
    let import = format!(
        "[[devices]]\nid = \"sim:evil-1\"\nname = '{evil_name}'\nprofile = \"meter\"\n\
         [[devices]]\nid = \"sim:batch-1\"\nstatus = \"pending\"\nserial = \"B-1\"\n\
         [[devices]]\nid = \"sim:batch-2\"\nstatus = \"pending\"\nserial = \"B-2\"\n"
    );
    let auth = format!("Bearer {token}");
    let (st, _, body) = request(
        p.api,
        "POST",
        "/api/devices/import",
        &[("Authorization", &auth)],
        &import,
    );
    assert_eq!(st, 200, "{body}");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = peer_dir("dashboard").join("drive.py");
    let o = Command::new(&py)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", p.api))
        .args(["alice", PASSWORD, &token])
        .arg(&shots)
        .args(["sim:evil-1", evil_name, "vic"])
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e} (run tests/scripts/install-dashboard.sh)"));
    let out = stdout(&o);
    println!("{out}");
    assert!(
        o.status.success(),
        "drive.py failed:\n{out}\n{}\n--- gateway log ---\n{}",
        stderr(&o),
        g.log_text()
    );
    for step in [
        "logged in",
        "the demo's devices are listed",
        "renders as text",
        "the newcomer's telemetry appears",
        "a provisioning batch is approved together",
        "quarantined and released",
        "a denial is shown",
        "audit verify from the page",
        "a command is sent and its result shown",
        "without the CSRF token is refused",
        "a device page shows kept values",
        "a join window opened from the adapters page",
        "after logout the pages and the API are locked",
        "a viewer is offered no action",
    ] {
        assert!(out.contains(step), "missing step `{step}`:\n{out}");
    }
    for page in [
        "login",
        "overview",
        "devices",
        "pending",
        "device",
        "quarantine",
        "live",
        "audit",
        "command",
        "plugins",
        "adapters",
        "device-history",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
    // what the browser did is in the audit log with the operator as principal
    let recs = audit_records(&g.data_dir);
    let by_alice = |action: &str| {
        recs.iter()
            .any(|r| r["actor"] == "operator:alice" && r["action"] == action)
    };
    for action in [
        "login",
        "approve",
        "quarantine",
        "release",
        "command",
        "logout",
        "csrf-refused",
        "adapter-operation",
    ] {
        assert!(
            by_alice(action),
            "no `{action}` by operator:alice in the audit log"
        );
    }
    for id in ["sim:newcomer-1", "sim:batch-1", "sim:batch-2"] {
        let dev = json(&stdout(&g.cli(&["devices", "show", id])));
        assert_eq!(dev["device"]["status"], "active", "{id}");
        assert_eq!(dev["device"]["profile"], "meter", "{id}");
    }
    g.stop();
}

#[test]
fn dashboard_on_the_lan_is_tls_only_with_a_generated_certificate() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let lan = free_port();
    let cfg = t.path().join("lan.toml");
    std::fs::write(
        &cfg,
        base_config(&p).replace(
            "[api]\n",
            &format!("[api]\nlan_listen = \"127.0.0.1:{lan}\"\n"),
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    // the self-signed pair, owner-only
    use std::os::unix::fs::PermissionsExt;
    for f in ["api-tls.crt", "api-tls.key"] {
        let mode = std::fs::metadata(dd.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let ca = dd.join("api-tls.crt");
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .args(args)
            .output()
            .unwrap()
    };
    // curl verifies the chain and the name (the certificate carries 127.0.0.1 and localhost)
    let url = format!("https://127.0.0.1:{lan}");
    let o = curl(&["-i", &format!("{url}/ui/login")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("content-security-policy:")
    );
    // nothing without a session there either
    let o = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url}/api/status"),
    ]);
    assert_eq!(stdout(&o), "401");
    // the session cookie is Secure over TLS
    let token = admin_token(&g);
    add_operator(p.api, &token, "lana", "viewer");
    let o = curl(&[
        "-i",
        "-H",
        "Content-Type: application/json",
        "--data",
        &format!(r#"{{"name":"lana","password":"{PASSWORD}"}}"#),
        &format!("{url}/ui/login"),
    ]);
    let out = stdout(&o);
    let set = out
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(set.split("; ").any(|a| a.trim() == "Secure"), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    // plain HTTP on the LAN port gets no HTTP answer
    let o = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{lan}/healthz"),
        ])
        .output()
        .unwrap();
    assert!(
        !stdout(&o).contains("ok"),
        "plain HTTP answered on the TLS port"
    );
    // a second start reuses the certificate
    let before = std::fs::read(&ca).unwrap();
    g.stop();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    g.stop();
}
