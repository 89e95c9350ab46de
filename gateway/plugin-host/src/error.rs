//! What a decision returns and how loading or running a plugin can fail.

use std::fmt;

/// The result of one `decide` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny(String),
    Quarantine(String),
    /// The plugin did not reach a verdict (it trapped, ran out of budget, returned garbage, or is
    /// disabled). The gateway fails closed on this.
    Failed(Failure),
}

impl Outcome {
    /// `allow`, `deny`, `quarantine` or `failed`.
    pub fn verdict_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny(_) => "deny",
            Self::Quarantine(_) => "quarantine",
            Self::Failed(_) => "failed",
        }
    }

    /// The plugin's reason (deny/quarantine), or the failure's description; empty for allow.
    pub fn reason(&self) -> String {
        match self {
            Self::Allow => String::new(),
            Self::Deny(r) | Self::Quarantine(r) => r.clone(),
            Self::Failed(f) => f.to_string(),
        }
    }
}

/// Why a plugin call produced no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub cause: FailureCause,
    pub detail: String,
    /// This failure made the plugin cross `max_failures`: it is disabled from now on.
    pub disabled_now: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause.as_str())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if self.disabled_now {
            write!(f, " (plugin disabled by its failure breaker)")?;
        }
        Ok(())
    }
}

/// The class of a failure, for metrics and audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// The guest trapped (`unreachable`, out-of-bounds access, a stale request handle, …).
    Trap,
    /// The decision used up its fuel (`Limits::fuel`).
    OutOfFuel,
    /// The wall-clock backstop (`Limits::deadline_ms`) fired.
    Deadline,
    /// The guest trapped after the host refused to grow its memory past `Limits::memory_bytes`.
    MemoryCap,
    StackOverflow,
    /// Too many host calls in one decision, or abuse of the key-value store.
    HostCallBudget,
    /// The guest's return value could not be read (invalid discriminant, bad string, …).
    MalformedReturn,
    /// The plugin is disabled and was not run.
    Disabled,
    /// The instance could not be recreated after an earlier failure.
    Restart,
    /// A replacement instance is being prepared after a failure; the plugin was not run.
    Restarting,
    /// The plugin spent more wall time per second than `Limits::cpu_ms_per_sec`.
    CpuBudget,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::OutOfFuel => "out-of-fuel",
            Self::Deadline => "deadline",
            Self::MemoryCap => "memory-cap",
            Self::StackOverflow => "stack-overflow",
            Self::HostCallBudget => "host-call-budget",
            Self::MalformedReturn => "malformed-return",
            Self::Disabled => "disabled",
            Self::Restart => "restart-failed",
            Self::Restarting => "restarting",
            Self::CpuBudget => "cpu-budget",
        }
    }

    /// All causes, for metrics that want a zero for every label.
    pub const ALL: [FailureCause; 11] = [
        Self::Trap,
        Self::OutOfFuel,
        Self::Deadline,
        Self::MemoryCap,
        Self::StackOverflow,
        Self::HostCallBudget,
        Self::MalformedReturn,
        Self::Disabled,
        Self::Restart,
        Self::Restarting,
        Self::CpuBudget,
    ];
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unsigned (while signatures are required), bad signature, unknown key, unreadable signature.
    #[error("signature check failed: {0}")]
    Signature(String),
    #[error("cannot read plugin: {0}")]
    Read(String),
    #[error("cannot compile plugin: {0}")]
    Compile(String),
    /// Not a component of this gateway's world (wrong package version, missing exports, extra
    /// imports).
    #[error("plugin does not fit this gateway's plugin contract: {0}")]
    Contract(String),
    /// `init` returned an error.
    #[error("plugin rejected its configuration: {0}")]
    Config(String),
    /// `init` trapped or ran out of budget.
    #[error("plugin init failed: {0}")]
    Init(Failure),
}

/// Why the host itself could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
    #[error("cannot link the host functions: {0}")]
    Link(String),
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(String),
    #[error("cannot use the plugin cache directory: {0}")]
    Cache(String),
}
