//! Harness for Warden's end-to-end tests: runs the real `warden` binary on loopback ports it picks,
//! drives simulated devices through the sim control port, and starts real third-party peers
//! (mosquitto) with certificates it generates. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `warden` binary built by `cargo build` next to this test executable.
pub fn warden_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WARDEN_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/warden
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("warden");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// A loopback port that was free a moment ago.
/// A third-party peer's directory, `tests/peers/NAME`.
pub fn peer_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// The Python of a peer's virtualenv (`tests/peers/NAME/VENV/bin/python`), which
/// `tests/scripts/install-SCRIPT.sh` creates; a clear failure when it is missing.
pub fn peer_python(name: &str, venv: &str, script: &str) -> PathBuf {
    let p = peer_dir(name).join(venv).join("bin/python");
    assert!(
        p.exists(),
        "{} missing: run tests/scripts/install-{script}.sh",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Ports {
    pub mqtt: u16,
    pub api: u16,
    pub sim: u16,
}

impl Ports {
    pub fn new() -> Self {
        Self {
            mqtt: free_port(),
            api: free_port(),
            sim: free_port(),
        }
    }
}

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

/// The config header every test gateway uses: its own ports, embedded broker unless overridden.
pub fn base_config(p: &Ports) -> String {
    format!(
        r#"
[api]
listen = "127.0.0.1:{api}"
[mqtt.embedded]
listen = "127.0.0.1:{mqtt}"
[sim]
control = "127.0.0.1:{sim}"
[zones.default]
commanders = ["mqtt:operator", "role:operator"]
[profiles.counter]
points = ["n"]
commands = ["reset"]
[profiles.thermostat]
points = ["temperature", "humidity", "setpoint"]
commands = ["set_setpoint"]
min_assurance = "shared-key"
"#,
        api = p.api,
        mqtt = p.mqtt,
        sim = p.sim
    )
}

/// A running gateway.
pub struct Gateway {
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub ports_api: u16,
    pub sim_port: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts `warden run` and waits until its API answers.
    pub fn start(data_dir: &Path, config: &Path, ports: &Ports, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, config, ports, extra, &[])
    }

    /// The start most tests share: the base config written to `dir/w.toml`, the data dir
    /// `dir/data` (both kept in the returned gateway's `config` and `data_dir`), fresh ports.
    pub fn start_base(dir: &Path) -> (Ports, Self) {
        let p = Ports::new();
        let cfg = dir.join("w.toml");
        std::fs::write(&cfg, base_config(&p)).unwrap();
        let g = Self::start(&dir.join("data"), &cfg, &p, &[]);
        (p, g)
    }

    /// [`Gateway::start`] with extra environment variables (e.g. the D-Bus bus a BLE test uses).
    pub fn start_with_env(
        data_dir: &Path,
        config: &Path,
        ports: &Ports,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let log = data_dir.with_extension(format!("log{}", free_port()));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(warden_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("WARDEN_LOG", "info,warden::northbound::broker=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut g = Self {
            data_dir: data_dir.to_owned(),
            config: config.to_owned(),
            ports_api: ports.api,
            sim_port: ports.sim,
            child: Some(child),
            log,
        };
        let api = ports.api;
        let mut exited = None;
        wait_for(Duration::from_secs(30), "the gateway API", || {
            if let Some(c) = g.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                exited = Some(st);
                return Some(());
            }
            http_get(api, "/healthz").filter(|b| b == "ok").map(|_| ())
        });
        if let Some(st) = exited {
            panic!("gateway exited during start ({st}):\n{}", g.log_text());
        }
        g
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The gateway process's id (for `/proc/<pid>/…` measurements).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway is running").id()
    }

    /// Runs a `warden` CLI command against this gateway's data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        warden(&self.data_dir, args)
    }

    /// Sends lines to the sim control port; each must be answered `ok`.
    pub fn sim(&self, lines: &[String]) {
        sim_send(self.sim_port, lines)
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// SIGTERM and wait (a clean stop).
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > end {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("gateway did not stop within 20 s:\n{}", self.log_text());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The embedded broker's `operator` password (created by the gateway at first start).
pub fn operator_password(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("mqtt-operator.password"))
        .unwrap()
        .trim()
        .to_owned()
}

/// mosquitto client args for the embedded broker as `operator`, followed by `extra`.
pub fn operator_args(data_dir: &Path, mqtt_port: u16, extra: &[&str]) -> Vec<String> {
    let pw = operator_password(data_dir);
    let port = mqtt_port.to_string();
    ["-h", "127.0.0.1", "-p", &port, "-u", "operator", "-P", &pw]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

pub fn warden(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(warden_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn sim_send(port: u16, lines: &[String]) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for l in lines {
        w.write_all(format!("{l}\n").as_bytes()).unwrap();
        let mut ans = String::new();
        r.read_line(&mut ans).unwrap();
        assert_eq!(
            ans.trim(),
            "ok",
            "sim control answered `{}` to `{l}`",
            ans.trim()
        );
    }
}

/// Unauthenticated GET (only `/healthz` answers without a token).
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    b.split_once("\r\n\r\n").map(|x| x.1.to_owned())
}

/// A `mosquitto_sub` writing `topic payload` lines to a file until dropped.
pub struct Subscriber {
    child: Child,
    pub out: PathBuf,
}

impl Subscriber {
    pub fn spawn(args: &[String], out: &Path) -> Self {
        let f = std::fs::File::create(out).unwrap();
        let child = Command::new("mosquitto_sub")
            .args(["-V", "mqttv311", "-v"])
            .args(args)
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (install mosquitto-clients: tests/scripts/install.sh)");
        Self {
            child,
            out: out.to_owned(),
        }
    }

    /// (topic, payload) lines received so far.
    pub fn lines(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_owned(), p.to_owned())))
            .collect()
    }

    pub fn wait_lines(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        wait_for(timeout, what, || {
            let l = self.lines();
            pred(&l).then_some(l)
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test PKI: a CA, a broker certificate for 127.0.0.1, client certificates, and a rogue CA.
pub struct Pki {
    pub dir: PathBuf,
}

fn write_cert(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) {
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&k, key.serialize_pem()).unwrap();
    // the gateway refuses a private key others can read (the brokers' own keys keep theirs)
    if name != "server" && name != "ca" {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Pki {
    /// `clients`: common names of client certificates signed by the CA. A `rogue` client certificate
    /// is signed by a CA the broker does not trust.
    pub fn generate(dir: &Path, clients: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        std::fs::create_dir_all(dir).unwrap();
        let mk_ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let k = KeyPair::generate().unwrap();
            let c = p.self_signed(&k).unwrap();
            (p, c, k)
        };
        let (ca_p, ca, ca_k) = mk_ca("Warden Test CA");
        write_cert(dir, "ca", &ca, &ca_k);
        let issuer = rcgen::Issuer::new(ca_p, &ca_k);
        let mut sp =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "broker");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let sk = KeyPair::generate().unwrap();
        write_cert(dir, "server", &sp.signed_by(&sk, &issuer).unwrap(), &sk);
        let client = |cn: &str, issuer: &rcgen::Issuer<'_, &KeyPair>| {
            let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
            cp.distinguished_name.push(DnType::CommonName, cn);
            cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let ck = KeyPair::generate().unwrap();
            (cp.signed_by(&ck, issuer).unwrap(), ck)
        };
        for cn in clients {
            let (c, k) = client(cn, &issuer);
            write_cert(dir, cn, &c, &k);
        }
        let (rogue_p, _rogue_ca, rogue_k) = mk_ca("Rogue CA");
        let rogue_issuer = rcgen::Issuer::new(rogue_p, &rogue_k);
        let (c, k) = client("warden-gw", &rogue_issuer);
        write_cert(dir, "rogue", &c, &k);
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

/// A mosquitto broker with one mutual-TLS listener (client certificate CN = user name, ACL file) and
/// persistence, so queued messages for persistent sessions survive a restart.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    pub log: PathBuf,
}

impl Mosquitto {
    pub fn start(dir: &Path, pki: &Pki, port: u16, acl: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let aclf = dir.join("acl");
        std::fs::write(&aclf, acl).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user {user}\nper_listener_settings false\nallow_anonymous false\npersistence true\npersistence_location {pers}/\n\
                 log_dest file {log}\nlog_type all\nacl_file {acl}\n\
                 listener {port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n\
                 require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n",
                user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into()),
                pers = dir.display(),
                log = dir.join("mosquitto.log").display(),
                acl = aclf.display(),
                port = port,
                ca = pki.path("ca.crt"),
                crt = pki.path("server.crt"),
                key = pki.path("server.key"),
            ),
        )
        .unwrap();
        let mut m = Self {
            child: None,
            port,
            conf,
            log: dir.join("mosquitto.log"),
        };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (install it: tests/scripts/install.sh)");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(10), "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// SIGTERM: mosquitto writes its persistence file and exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mosquitto_path() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

/// Parses an envelope payload.
pub fn json(p: &str) -> serde_json::Value {
    serde_json::from_str(p).unwrap_or_else(|e| panic!("not JSON ({e}): {p}"))
}

/// Where `plugins/build.sh` put the plugin components built from source
/// (`WARDEN_PLUGIN_OUT`, default `<repo>/target/plugins`).
pub fn plugin_dist() -> PathBuf {
    let dir = std::env::var("WARDEN_PLUGIN_OUT").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
        PathBuf::from,
    );
    assert!(
        dir.join("least_privilege.wasm").exists(),
        "{} has no built plugins: run `bash plugins/build.sh` first (tests/run.sh does)",
        dir.display()
    );
    dir
}

/// A plugin component from [`plugin_dist`].
pub fn plugin_module(name: &str) -> PathBuf {
    let p = plugin_dist().join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// The source directory of an example plugin (`plugins/examples/<name>`).
pub fn plugin_example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/examples")
        .join(name)
}

/// Appends a custom section to a Wasm component: a new version with new bytes (a new SHA-256)
/// and the same behaviour, as a rebuild would give.
pub fn wasm_with_custom_section(module: &[u8], tag: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, tag.len() as u64);
    payload.extend_from_slice(tag.as_bytes());
    payload.extend_from_slice(b"rebuilt");
    let mut out = module.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// GET /metrics with the data dir's API token: the Prometheus text.
pub fn metrics_text(api_port: u16, data_dir: &Path) -> String {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(data_dir.join("api.token")).unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", api_port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    );
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    b
}

/// The sum of a metric's samples whose line contains every one of `labels` (e.g. `cause="x"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The audit log as JSON records (`warden audit export`), read from the data dir.
pub fn audit_records(data_dir: &Path) -> Vec<serde_json::Value> {
    let o = warden(data_dir, &["audit", "export", "--format", "jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(json)
        .collect()
}

/// One line a [`TimedSubscriber`] received: when, topic, payload.
pub type TimedLine = (Instant, String, String);

/// `mosquitto_sub -v` whose lines are stamped with the moment they arrived (for latency figures).
pub struct TimedSubscriber {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<TimedLine>>>,
}

impl TimedSubscriber {
    pub fn spawn(args: &[String]) -> Self {
        let mut child = Command::new("mosquitto_sub")
            .args(["-V", "mqttv311", "-v"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (install mosquitto-clients: tests/scripts/install.sh)");
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                if let Some((t, p)) = line.split_once(' ') {
                    sink.lock().unwrap().push((at, t.to_owned(), p.to_owned()));
                }
            }
        });
        Self { child, lines }
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lines from index `from` on.
    pub fn since(&self, from: usize) -> Vec<TimedLine> {
        let l = self.lines.lock().unwrap();
        l.get(from..).unwrap_or_default().to_vec()
    }

    /// When a publish on `topic` with this `value` arrived.
    pub fn find(&self, topic: &str, value: f64) -> Option<Instant> {
        self.lines.lock().unwrap().iter().find_map(|(at, t, p)| {
            let v: serde_json::Value = serde_json::from_str(p).ok()?;
            (t == topic && v["value"].as_f64() == Some(value)).then_some(*at)
        })
    }
}

impl Drop for TimedSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The `q`-th percentile (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], q: usize) -> f64 {
    let rank = (sorted.len() * q).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// The base32 secret of an `otpauth://totp/…` provisioning URI.
pub fn totp_secret(uri: &str) -> &str {
    uri.split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_else(|| panic!("no secret in {uri}"))
}

/// The TOTP generator an authenticator app would build from an `otpauth://totp/…` provisioning
/// URI (SHA-1, 6 digits, 30 s: what the gateway issues).
pub fn totp_from_uri(uri: &str) -> totp_rs::TOTP {
    let secret = totp_secret(uri);
    let raw = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap_or_else(|e| panic!("secret of {uri}: {e:?}"));
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, raw)
        .unwrap_or_else(|e| panic!("TOTP from {uri}: {e}"))
}
