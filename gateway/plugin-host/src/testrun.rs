//! `warden plugin test`: run recorded or hand-written requests through a plugin and compare the
//! verdicts with expectations.
//!
//! Messages: JSON Lines, one [`Request`] per line (blank lines and lines starting with `#` are
//! skipped). A line may carry its expectation inline in an extra `"expect"` field.
//! Expectations file (optional): one line per message, in order — either JSON
//! (`"deny"` or `{"verdict":"deny","reason_contains":"too hot"}`) or the bare form
//! `deny` / `deny: too hot`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Outcome;
use crate::plugin::Plugin;
use crate::request::Request;

const VERDICTS: [&str; 4] = ["allow", "deny", "quarantine", "failed"];

/// What a case should produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny`, `quarantine` or `failed`.
    pub verdict: String,
    /// A substring the reason must contain (deny/quarantine reason, or the failure text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
}

impl Expect {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let e = if text.starts_with('{') || text.starts_with('"') {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Form {
                Word(String),
                Full(Expect),
            }
            match serde_json::from_str::<Form>(text).map_err(|e| e.to_string())? {
                Form::Word(w) => Self::bare(&w),
                Form::Full(e) => e,
            }
        } else {
            Self::bare(text)
        };
        if !VERDICTS.contains(&e.verdict.as_str()) {
            return Err(format!(
                "unknown verdict {:?} (expected one of {})",
                e.verdict,
                VERDICTS.join(", ")
            ));
        }
        Ok(e)
    }

    fn bare(text: &str) -> Self {
        match text.split_once(':') {
            Some((v, r)) if !r.trim().is_empty() => Self {
                verdict: v.trim().to_ascii_lowercase(),
                reason_contains: Some(r.trim().to_owned()),
            },
            Some((v, _)) => Self {
                verdict: v.trim().to_ascii_lowercase(),
                reason_contains: None,
            },
            None => Self {
                verdict: text.trim().to_ascii_lowercase(),
                reason_contains: None,
            },
        }
    }

    /// Whether `outcome` meets this expectation.
    pub fn matches(&self, outcome: &Outcome) -> bool {
        outcome.verdict_str() == self.verdict
            && self
                .reason_contains
                .as_deref()
                .is_none_or(|s| outcome.reason().contains(s))
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verdict)?;
        if let Some(r) = &self.reason_contains {
            write!(f, " containing {r:?}")?;
        }
        Ok(())
    }
}

/// One request to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Line number in the messages file (1-based).
    pub line: usize,
    pub request: Request,
    pub expect: Option<Expect>,
}

fn is_skipped(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Cap on a messages or expectations file (`NAME.tests.jsonl` sits in the plugin directory).
pub const CASES_MAX: u64 = 64 << 20;

/// A regular file of at most [`CASES_MAX`] bytes, as UTF-8 (a FIFO or `/dev/zero` is an error).
fn read_text(path: &Path, what: &'static str) -> Result<String, String> {
    let bytes = crate::files::read(path, CASES_MAX, what, None).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| format!("{what} {}: not UTF-8 text", path.display()))
}

/// Reads the cases of a messages file and, optionally, an expectations file.
pub fn read_cases(messages: &Path, expect: Option<&Path>) -> Result<Vec<Case>, String> {
    let text = read_text(messages, "messages file")?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if is_skipped(line) {
            continue;
        }
        let at = |e: &dyn fmt::Display| format!("{}:{}: {e}", messages.display(), i + 1);
        let mut obj: serde_json::Value = serde_json::from_str(line).map_err(|e| at(&e))?;
        let inline = match obj.as_object_mut().and_then(|o| o.remove("expect")) {
            None => None,
            Some(serde_json::Value::String(s)) => Some(Expect::parse(&s).map_err(|e| at(&e))?),
            Some(v) => Some(Expect::parse(&v.to_string()).map_err(|e| at(&e))?),
        };
        let mut request: Request = serde_json::from_value(obj).map_err(|e| at(&e))?;
        request.normalize();
        cases.push(Case {
            line: i + 1,
            request,
            expect: inline,
        });
    }
    if let Some(path) = expect {
        let text = read_text(path, "expectations file")?;
        let expects = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !is_skipped(l))
            .map(|(i, l)| {
                Expect::parse(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if expects.len() != cases.len() {
            return Err(format!(
                "{} has {} expectations for {} messages in {}",
                path.display(),
                expects.len(),
                cases.len(),
                messages.display()
            ));
        }
        for (case, e) in cases.iter_mut().zip(expects) {
            case.expect = Some(e);
        }
    }
    Ok(cases)
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub line: usize,
    pub device: String,
    pub outcome: Outcome,
    pub expect: Option<Expect>,
    /// `None` when the case had no expectation.
    pub passed: Option<bool>,
    pub fuel_used: u64,
}

impl CaseResult {
    pub fn verdict(&self) -> &'static str {
        self.outcome.verdict_str()
    }
    pub fn reason(&self) -> String {
        self.outcome.reason()
    }
}

/// The results of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    pub allows: usize,
    pub denies: usize,
    pub quarantines: usize,
    pub failures: usize,
    pub passed: usize,
    pub mismatched: usize,
    /// Cases without an expectation.
    pub unchecked: usize,
}

impl Report {
    /// No case contradicted its expectation.
    pub fn all_passed(&self) -> bool {
        self.mismatched == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let mark = match c.passed {
                Some(true) => "ok  ",
                Some(false) => "FAIL",
                None => "    ",
            };
            write!(
                f,
                "{mark} line {:>4}  {:<10} {}",
                c.line,
                c.verdict(),
                c.device
            )?;
            let reason = c.reason();
            if !reason.is_empty() {
                write!(f, "  ({reason})")?;
            }
            if let (Some(false), Some(e)) = (c.passed, &c.expect) {
                write!(f, "  expected {e}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} cases: {} allow, {} deny, {} quarantine, {} failed; {} passed, {} mismatched, {} unchecked",
            self.cases.len(),
            self.allows,
            self.denies,
            self.quarantines,
            self.failures,
            self.passed,
            self.mismatched,
            self.unchecked
        )
    }
}

/// Runs every case through `plugin`, in order (state carries over from case to case, as in
/// traffic).
pub fn run(plugin: &mut Plugin, cases: &[Case]) -> Report {
    let mut report = Report::default();
    // Cases run one after another: a case after a failure waits for the replacement instance
    // (in traffic, messages meanwhile are denied `restarting`).
    let wait =
        std::time::Duration::from_millis(plugin.limits().init_deadline_ms.saturating_add(1000));
    for case in cases {
        plugin.wait_ready(wait);
        let outcome = plugin.decide(&case.request);
        match &outcome {
            Outcome::Allow => report.allows += 1,
            Outcome::Deny(_) => report.denies += 1,
            Outcome::Quarantine(_) => report.quarantines += 1,
            Outcome::Failed(_) => report.failures += 1,
        }
        let passed = case.expect.as_ref().map(|e| e.matches(&outcome));
        match passed {
            Some(true) => report.passed += 1,
            Some(false) => report.mismatched += 1,
            None => report.unchecked += 1,
        }
        report.cases.push(CaseResult {
            line: case.line,
            device: case.request.device.id.clone(),
            outcome,
            expect: case.expect.clone(),
            passed,
            fuel_used: plugin.stats().last_fuel_used,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::error::{Failure, FailureCause};

    #[test]
    fn cases_with_inline_and_file_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let msgs = dir.path().join("m.jsonl");
        std::fs::write(
            &msgs,
            concat!(
                "# comment\n",
                r#"{"device":{"id":"modbus:a"},"direction":"uplink","kind":"telemetry","time_ms":1,"expect":"deny: hot"}"#,
                "\n\n",
                r#"{"device":{"id":"lorawan:b"},"direction":"uplink","kind":"telemetry","time_ms":2}"#,
                "\n"
            ),
        )
        .unwrap();
        let cases = read_cases(&msgs, None).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].line, 2);
        assert_eq!(cases[1].line, 4);
        assert_eq!(cases[0].request.device.protocol, "modbus");
        assert_eq!(
            cases[0].expect,
            Some(Expect {
                verdict: "deny".into(),
                reason_contains: Some("hot".into())
            })
        );
        assert_eq!(cases[1].expect, None);

        let exp = dir.path().join("e.txt");
        std::fs::write(
            &exp,
            "allow\n{\"verdict\":\"quarantine\",\"reason_contains\":\"x\"}\n",
        )
        .unwrap();
        let cases = read_cases(&msgs, Some(&exp)).unwrap();
        assert_eq!(cases[0].expect.as_ref().unwrap().verdict, "allow");
        assert_eq!(cases[1].expect.as_ref().unwrap().verdict, "quarantine");

        std::fs::write(&exp, "allow\n").unwrap();
        let e = read_cases(&msgs, Some(&exp)).unwrap_err();
        assert!(e.contains("1 expectations for 2 messages"), "{e}");
        std::fs::write(&exp, "allow\nmaybe\n").unwrap();
        assert!(
            read_cases(&msgs, Some(&exp))
                .unwrap_err()
                .contains("unknown verdict")
        );
        std::fs::write(&msgs, "{\"device\":{\"id\":\"a:b\"},\"oops\":1}\n").unwrap();
        assert!(read_cases(&msgs, None).unwrap_err().contains(":1:"));
    }

    #[test]
    fn expectation_matching() {
        let e = Expect::parse("deny: too hot").unwrap();
        assert!(e.matches(&Outcome::Deny("setpoint too hot".into())));
        assert!(!e.matches(&Outcome::Deny("too cold".into())));
        assert!(!e.matches(&Outcome::Quarantine("too hot".into())));
        let f = Expect::parse("failed: out-of-fuel").unwrap();
        assert!(f.matches(&Outcome::Failed(Failure {
            cause: FailureCause::OutOfFuel,
            detail: String::new(),
            disabled_now: false
        })));
        assert!(Expect::parse("\"allow\"").unwrap().matches(&Outcome::Allow));
    }
}
