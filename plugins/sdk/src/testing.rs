//! Native unit tests for plugins: build requests, drive `init`/`decide` against the mock host
//! (symbols, clock, log, key-value state with the gateway's limits), and check a JSONL file of
//! recorded or hand-written requests with expectations.
//!
//! Each test thread has its own mock host, so tests do not see each other's state.
//!
//! ```
//! use warden_sdk::testing::{self, RequestBuilder};
//! use warden_sdk::{Header, Policy, Request, Symbol, Verdict};
//!
//! struct NoReboot(Symbol);
//! impl Policy for NoReboot {
//!     fn init(_: &str) -> Result<Self, String> {
//!         Ok(NoReboot(warden_sdk::symbol("reboot")))
//!     }
//!     fn decide(&mut self, _: &Header, req: &Request) -> Verdict {
//!         if req.name() == self.0 { Verdict::deny("no reboots") } else { Verdict::Allow }
//!     }
//! }
//!
//! let mut p: NoReboot = testing::init("{}").unwrap();
//! let m = RequestBuilder::command("modbus:plc-1", "reboot").build();
//! assert_eq!(testing::decide(&mut p, &m), Verdict::deny("no reboots"));
//! let m = RequestBuilder::command("modbus:plc-1", "set_on").build();
//! assert!(testing::decide(&mut p, &m).is_allow());
//! ```
//!
//! # The JSONL format
//!
//! One JSON object per line, the gateway's request format (`warden plugin test --messages` reads
//! the same, and the gateway records traffic in it):
//!
//! ```json
//! {"device":{"id":"modbus:plc-1","zone":"hvac","role":"actuator"},"direction":"downlink","kind":"command","name":"set_setpoint","points":[{"name":"value","value":21.5,"unit":"C"}],"assurance":"shared-key","fresh":true,"principal":"mqtt:operator","time_ms":1700000000000}
//! ```
//!
//! `device` has `id` (required), `protocol` (defaults to the part of the id before `:`), `zone`
//! (default `default`), `role`, `status` (default `active`), `manufacturer`, `model`, `firmware`.
//! Point values are JSON booleans, numbers (integers without a fraction), strings or
//! `{"hex": "..."}` for bytes. `observed` holds the counters of [`crate::Observed`]. Unknown
//! members are errors, except `expect`, which a test file may add to a line:
//! `"expect": {"verdict": "deny", "reason_contains": "may not send"}`, or in short
//! `"expect": "deny: may not send"`. The verdicts are `allow`, `deny`, `quarantine` and `failed`
//! (the plugin produced no verdict: natively, it panicked). Blank lines and lines starting with
//! `#` are skipped. This is what the gateway's `warden plugin test` reads.

use std::fmt::Write as _;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::mock;
use crate::types::{Assurance, Direction, Header, Kind, Level, Observed, Status, Value, Verdict};
use crate::{Policy, Request};

/// One point (uplink) or command argument (downlink) of a native [`Request`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub name: String,
    pub value: Value,
    #[serde(default)]
    pub unit: Option<String>,
}

/// What a plugin's `decide` is called with.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub header: Header,
    pub request: Request,
}

/// Builds a [`Message`] for a unit test. Defaults: zone `default`, no role, status `active`,
/// assurance `none`, not fresh, time 0.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    header: Header,
    request: Request,
}

impl RequestBuilder {
    /// A message from or to `device_id` (`protocol:address`).
    pub fn new(device_id: &str, direction: Direction, kind: Kind) -> Self {
        let protocol = device_id.split_once(':').map_or("", |(p, _)| p).to_owned();
        Self {
            header: Header {
                direction,
                kind,
                assurance: Assurance::None,
                fresh: false,
                point_count: 0,
                time_ms: 0,
            },
            request: Request {
                device_id: device_id.to_owned(),
                protocol,
                zone: "default".into(),
                role: None,
                status: Status::Active,
                manufacturer: None,
                model: None,
                firmware: None,
                name: String::new(),
                principal: None,
                security: None,
                observed: Observed::default(),
                anomaly_feature: None,
                points: Vec::new(),
            },
        }
    }

    /// Uplink telemetry from `device_id`; add readings with [`RequestBuilder::point`].
    pub fn uplink(device_id: &str) -> Self {
        Self::new(device_id, Direction::Uplink, Kind::Telemetry)
    }

    /// A downlink command `name` to `device_id`; add arguments with [`RequestBuilder::arg`].
    pub fn command(device_id: &str, name: &str) -> Self {
        let mut b = Self::new(device_id, Direction::Downlink, Kind::Command);
        b.request.name = name.to_owned();
        b
    }

    pub fn kind(mut self, kind: Kind) -> Self {
        self.header.kind = kind;
        self
    }
    pub fn zone(mut self, zone: &str) -> Self {
        self.request.zone = zone.to_owned();
        self
    }
    pub fn role(mut self, role: &str) -> Self {
        self.request.role = Some(role.to_owned());
        self
    }
    pub fn status(mut self, status: Status) -> Self {
        self.request.status = status;
        self
    }
    pub fn manufacturer(mut self, v: &str) -> Self {
        self.request.manufacturer = Some(v.to_owned());
        self
    }
    pub fn model(mut self, v: &str) -> Self {
        self.request.model = Some(v.to_owned());
        self
    }
    pub fn firmware(mut self, v: &str) -> Self {
        self.request.firmware = Some(v.to_owned());
        self
    }
    pub fn principal(mut self, v: &str) -> Self {
        self.request.principal = Some(v.to_owned());
        self
    }
    pub fn assurance(mut self, a: Assurance) -> Self {
        self.header.assurance = a;
        self
    }
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.header.fresh = fresh;
        self
    }
    pub fn time_ms(mut self, ms: u64) -> Self {
        self.header.time_ms = ms;
        self
    }
    pub fn observed(mut self, o: Observed) -> Self {
        self.request.observed = o;
        self
    }
    /// The security label the message came under (`zwave-s2-access-control`, …).
    pub fn security(mut self, label: &str) -> Self {
        self.request.security = Some(label.to_owned());
        self
    }
    /// The feature that contributed most to the anomaly score.
    pub fn anomaly_feature(mut self, feature: &str) -> Self {
        self.request.anomaly_feature = Some(feature.to_owned());
        self
    }
    /// Adds a point (uplink reading).
    pub fn point(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.request.points.push(Point {
            name: name.to_owned(),
            value: value.into(),
            unit: None,
        });
        self
    }
    /// Adds a point with a unit.
    pub fn point_with_unit(mut self, name: &str, value: impl Into<Value>, unit: &str) -> Self {
        self.request.points.push(Point {
            name: name.to_owned(),
            value: value.into(),
            unit: Some(unit.to_owned()),
        });
        self
    }
    /// Adds a command argument (the same list as points; the name says what it is for).
    pub fn arg(self, name: &str, value: impl Into<Value>) -> Self {
        self.point(name, value)
    }

    pub fn build(mut self) -> Message {
        self.header.point_count = self.request.points.len() as u32;
        Message {
            header: self.header,
            request: self.request,
        }
    }
}

/// Calls `P::init` the way the gateway does: the clock reads the load time (the mock clock, see
/// [`set_now_ms`]).
pub fn init<P: Policy>(config: &str) -> Result<P, String> {
    P::init(config)
}

/// Calls `decide` the way the gateway does: the clock reads the message's `time_ms` during it.
pub fn decide<P: Policy>(policy: &mut P, m: &Message) -> Verdict {
    mock::with(|h| h.now_ms = m.header.time_ms);
    policy.decide(&m.header, &m.request)
}

/// Forgets this thread's symbols, log, key-value state and clock (a fresh gateway).
pub fn reset() {
    mock::with(|h| *h = mock::MockHost::default());
}

/// Sets the mock clock (what `now_ms` returns during `init`).
pub fn set_now_ms(ms: u64) {
    mock::with(|h| h.now_ms = ms);
}

/// Sets the key-value quota in bytes (keys plus values; default 1 MiB, like the gateway).
pub fn set_kv_quota(bytes: usize) {
    mock::with(|h| h.kv_quota = bytes);
}

/// Bytes the key-value state holds (keys plus values).
pub fn kv_used() -> usize {
    mock::with(|h| h.kv_used())
}

/// The key-value state, sorted by key.
pub fn kv_entries() -> Vec<(String, Vec<u8>)> {
    mock::with(|h| h.kv.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// What the plugin logged so far, oldest first.
pub fn logs() -> Vec<(Level, String)> {
    mock::with(|h| h.logs.clone())
}

/// What a line of a test file expects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny`, `quarantine` or `failed`.
    pub verdict: ExpectedVerdict,
    /// A text the reason (or the failure's description) must contain.
    #[serde(default)]
    pub reason_contains: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectedVerdict {
    Allow,
    Deny,
    Quarantine,
    /// No verdict: the plugin trapped (natively: panicked).
    Failed,
}

impl ExpectedVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Quarantine => "quarantine",
            Self::Failed => "failed",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        [Self::Allow, Self::Deny, Self::Quarantine, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == word)
    }
}

/// What a decision produced, for comparing with an [`Expect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Verdict(Verdict),
    /// `decide` panicked, with this message.
    Failed(String),
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Self::Verdict(v) => v.name(),
            Self::Failed(_) => "failed",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Verdict(v) => v.reason(),
            Self::Failed(why) => Some(why),
        }
    }
}

impl Expect {
    /// The short form: `deny` or `deny: some reason text`.
    fn parse_short(text: &str) -> Result<Self, String> {
        let (word, reason) = match text.split_once(':') {
            Some((w, r)) => (w.trim(), Some(r.trim().to_owned())),
            None => (text.trim(), None),
        };
        let verdict = ExpectedVerdict::parse(word).ok_or_else(|| {
            format!("unknown verdict `{word}` (expected allow, deny, quarantine or failed)")
        })?;
        Ok(Self {
            verdict,
            reason_contains: reason.filter(|r| !r.is_empty()),
        })
    }

    /// Why `v` does not meet this expectation, or `None` when it does.
    pub fn mismatch(&self, v: &Verdict) -> Option<String> {
        self.check(&Outcome::Verdict(v.clone()))
    }

    /// Why `o` does not meet this expectation, or `None` when it does.
    pub fn check(&self, o: &Outcome) -> Option<String> {
        let kind_ok = self.verdict.as_str() == o.name();
        let reason_ok = match (&self.reason_contains, o.reason()) {
            (None, _) => true,
            (Some(want), Some(got)) => got.contains(want.as_str()),
            (Some(_), None) => false,
        };
        if kind_ok && reason_ok {
            return None;
        }
        let mut s = format!("expected {}", self.verdict.as_str());
        if let Some(want) = &self.reason_contains {
            let _ = write!(s, " with a reason containing {want:?}");
        }
        let _ = write!(s, ", got {}", o.name());
        if let Some(r) = o.reason() {
            let _ = write!(s, " ({r:?})");
        }
        Some(s)
    }
}

/// One line of a JSONL file.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// 1-based line number in the file.
    pub line: usize,
    pub message: Message,
    pub expect: Option<Expect>,
}

/// The gateway's JSON shape of a request (see the module docs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    device: DeviceJson,
    direction: Direction,
    kind: Kind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    points: Vec<Point>,
    #[serde(default)]
    assurance: Assurance,
    #[serde(default)]
    fresh: bool,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    security: Option<String>,
    time_ms: u64,
    #[serde(default)]
    observed: ObservedJson,
}

/// `observed` as the gateway writes it: the counters of [`Observed`] and the top anomaly feature.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ObservedJson {
    rate_per_min: u64,
    messages: u64,
    bytes: u64,
    denied: u64,
    last_seen_ms: u64,
    anomaly_score: Option<f32>,
    anomaly_feature: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceJson {
    id: String,
    #[serde(default)]
    protocol: String,
    #[serde(default = "default_zone")]
    zone: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    status: Status,
    #[serde(default)]
    manufacturer: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    firmware: Option<String>,
}

fn default_zone() -> String {
    "default".into()
}

/// Parses one line: a request, plus an optional `expect` member.
pub fn parse_line(line: &str) -> Result<(Message, Option<Expect>), String> {
    let mut obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| e.to_string())?;
    let expect = match obj.remove("expect") {
        Some(serde_json::Value::String(short)) => {
            Some(Expect::parse_short(&short).map_err(|e| format!("expect: {e}"))?)
        }
        Some(e) => Some(Expect::deserialize(e).map_err(|e| format!("expect: {e}"))?),
        None => None,
    };
    let r = RequestJson::deserialize(serde_json::Value::Object(obj)).map_err(|e| e.to_string())?;
    let protocol = if r.device.protocol.is_empty() {
        r.device
            .id
            .split_once(':')
            .map_or("", |(p, _)| p)
            .to_owned()
    } else {
        r.device.protocol
    };
    let header = Header {
        direction: r.direction,
        kind: r.kind,
        assurance: r.assurance,
        fresh: r.fresh,
        point_count: r.points.len() as u32,
        time_ms: r.time_ms,
    };
    let request = Request {
        device_id: r.device.id,
        protocol,
        zone: r.device.zone,
        role: r.device.role,
        status: r.device.status,
        manufacturer: r.device.manufacturer,
        model: r.device.model,
        firmware: r.device.firmware,
        name: r.name,
        principal: r.principal,
        security: r.security,
        observed: Observed {
            rate_per_min: r.observed.rate_per_min,
            messages: r.observed.messages,
            bytes: r.observed.bytes,
            denied: r.observed.denied,
            last_seen_ms: r.observed.last_seen_ms,
            anomaly_score: r.observed.anomaly_score,
        },
        anomaly_feature: r.observed.anomaly_feature,
        points: r.points,
    };
    Ok((Message { header, request }, expect))
}

/// Reads a JSONL text (blank lines and `#` lines are skipped). The error names the line.
pub fn read_jsonl(text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (message, expect) = parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        cases.push(Case {
            line: i + 1,
            message,
            expect,
        });
    }
    Ok(cases)
}

/// Calls `decide` like [`decide`], but turns a panic into [`Outcome::Failed`] (the gateway sees a
/// trap). The policy value may be half-updated afterwards: start a new one, as the gateway does.
pub fn try_decide<P: Policy>(policy: &mut P, m: &Message) -> Outcome {
    let run = std::panic::AssertUnwindSafe(|| decide(policy, m));
    match std::panic::catch_unwind(run) {
        Ok(v) => Outcome::Verdict(v),
        Err(payload) => Outcome::Failed(
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned()),
        ),
    }
}

/// Runs a test file against a fresh instance: `init(config)` once, then every line in order
/// through `decide` (state carries over from line to line, as in the gateway), checking each
/// line's `expect`. After a panic the policy is rebuilt with `init(config)`, like the gateway
/// restarts an instance; the key-value state stays. Returns how many expectations were checked,
/// or every mismatch, one a line.
pub fn check_jsonl<P: Policy>(config: &str, jsonl: &str) -> Result<usize, String> {
    let cases = read_jsonl(jsonl)?;
    let mut policy: P = init(config).map_err(|e| format!("init failed: {e}"))?;
    let mut checked = 0;
    let mut failures = String::new();
    for case in &cases {
        let outcome = try_decide(&mut policy, &case.message);
        if matches!(outcome, Outcome::Failed(_)) {
            policy = init(config).map_err(|e| format!("init failed after a panic: {e}"))?;
        }
        if let Some(expect) = &case.expect {
            checked += 1;
            if let Some(why) = expect.check(&outcome) {
                let _ = writeln!(failures, "line {}: {why}", case.line);
            }
        }
    }
    if failures.is_empty() {
        Ok(checked)
    } else {
        Err(failures)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a bool, number, string or {\"hex\": \"...\"}")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let key: Option<String> = map.next_key()?;
        if key.as_deref() != Some("hex") {
            return Err(de::Error::custom(
                "object values must be {\"hex\": \"...\"}",
            ));
        }
        let hex: String = map.next_value()?;
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom("a bytes value has one key, `hex`"));
        }
        from_hex(&hex)
            .map(Value::Bytes)
            .ok_or_else(|| de::Error::custom("bad hex"))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16);
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [a, b] => Some((nibble(*a)? << 4 | nibble(*b)?) as u8),
            _ => None,
        })
        .collect()
}
