//! What the decide stage concludes, and who concluded it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Allow,
    Deny,
    /// Deny, and move the device to quarantine.
    Quarantine,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict with the decider that reached it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// `builtin:<rule>` for the gateway's own rules, `plugin:<name>` for Wasm plugins.
    pub decider: String,
    pub reason: String,
    /// A machine-readable cause when the decider failed rather than decided (e.g. a plugin's
    /// `out-of-fuel`); the decision is then a deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl Decision {
    pub fn allow(decider: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Allow,
            decider: decider.into(),
            reason: String::new(),
            cause: None,
        }
    }
    pub fn deny(decider: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Deny,
            decider: decider.into(),
            reason: reason.into(),
            cause: None,
        }
    }
    pub fn quarantine(decider: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Quarantine,
            decider: decider.into(),
            reason: reason.into(),
            cause: None,
        }
    }
    /// The same decision, marked as caused by a failure.
    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }
    pub fn is_allow(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}
