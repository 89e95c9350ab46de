//! An anomaly score and the features that drove it, with the sentence a person reads.
//!
//! Each feature scores in [0, 1]; the message's score is the highest, and the feature that gave it
//! is the top feature. A normal message carries no features and allocates nothing.

use std::fmt::Write as _;

/// What deviated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    Rate,
    Size,
    Value,
    Change,
    Frozen,
    TimeOfDay,
    Rssi,
    Snr,
    NewPoint,
    NewEvent,
    NewCommand,
    CommandHour,
    CommandRate,
    Assurance,
    Denials,
    Replay,
}

impl FeatureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Size => "size",
            Self::Value => "value",
            Self::Change => "change",
            Self::Frozen => "frozen",
            Self::TimeOfDay => "time-of-day",
            Self::Rssi => "rssi",
            Self::Snr => "snr",
            Self::NewPoint => "new-point",
            Self::NewEvent => "new-event",
            Self::NewCommand => "new-command",
            Self::CommandHour => "command-hour",
            Self::CommandRate => "command-rate",
            Self::Assurance => "assurance",
            Self::Denials => "denials",
            Self::Replay => "replay",
        }
    }
}

/// One deviating feature, with the numbers its sentence needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub kind: FeatureKind,
    pub score: f32,
    /// The point, event or command concerned.
    pub name: Option<String>,
    pub principal: Option<String>,
    pub unit: Option<String>,
    pub a: f32,
    pub b: f32,
    pub c: f32,
}

impl Feature {
    pub fn new(kind: FeatureKind, score: f32) -> Self {
        Self {
            kind,
            score: if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                1.0
            },
            name: None,
            principal: None,
            unit: None,
            a: 0.0,
            b: 0.0,
            c: 0.0,
        }
    }
    // (out of line: only an anomalous message builds one, and the hot path stays small)
    #[cold]
    #[inline(never)]
    pub fn named(mut self, n: &str) -> Self {
        self.name = Some(clip(n));
        self
    }
    // (out of line: only an anomalous message builds one, and the hot path stays small)
    #[cold]
    #[inline(never)]
    pub fn who(mut self, p: &str) -> Self {
        self.principal = Some(clip(p));
        self
    }
    // (out of line: only an anomalous message builds one, and the hot path stays small)
    #[cold]
    #[inline(never)]
    pub fn unit(mut self, u: Option<&str>) -> Self {
        self.unit = u.map(clip);
        self
    }
    pub fn nums(mut self, a: f32, b: f32, c: f32) -> Self {
        (self.a, self.b, self.c) = (a, b, c);
        self
    }

    /// `rate`, `value:temperature`, `new-command`…: the name plugins and metrics see.
    pub fn label(&self) -> String {
        match (&self.name, self.kind) {
            (
                Some(n),
                FeatureKind::Value
                | FeatureKind::Change
                | FeatureKind::Frozen
                | FeatureKind::TimeOfDay,
            ) => format!("{}:{n}", self.kind.as_str()),
            _ => self.kind.as_str().to_owned(),
        }
    }

    /// The sentence for an operator.
    pub fn reason(&self) -> String {
        let name = self.name.as_deref().unwrap_or("?");
        let unit = self
            .unit
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        match self.kind {
            FeatureKind::Rate => format!(
                "message rate {:.0}× its usual for {}:00 UTC ({:.0} messages this minute, usually {:.1})",
                self.a / self.b.max(1.0),
                self.c,
                self.a,
                self.b
            ),
            FeatureKind::Size => format!(
                "payload of {:.0} bytes, usually {:.0} (largest seen {:.0})",
                self.a, self.b, self.c
            ),
            FeatureKind::Value if self.a.is_nan() => format!("{name} is not a finite number"),
            FeatureKind::Value => format!(
                "{name} {}{unit}, outside its history ({}–{}{unit})",
                num(self.a),
                num(self.b),
                num(self.c)
            ),
            FeatureKind::Change => format!(
                "{name} changed by {} in one message (usually {}, at most {} seen)",
                num(self.a),
                num(self.b),
                num(self.c)
            ),
            FeatureKind::Frozen => format!(
                "{name} frozen at {} for {:.0} readings (longest repeat seen {:.0})",
                num(self.a),
                self.b,
                self.c
            ),
            FeatureKind::TimeOfDay => format!(
                "{name} {}{unit}, lately far from its usual {}{unit} for {:02}:00–{:02}:00 UTC (replayed or shifted readings?)",
                num(self.a),
                num(self.b),
                self.c as u32 * 4,
                self.c as u32 * 4 + 4
            ),
            FeatureKind::Rssi | FeatureKind::Snr => format!(
                "{} {} dB lately, usually {} ± {}: moved or impersonated?",
                if self.kind == FeatureKind::Rssi {
                    "RSSI"
                } else {
                    "SNR"
                },
                num(self.a),
                num(self.b),
                num(self.c)
            ),
            FeatureKind::NewPoint => format!("first `{name}` ever from this device"),
            FeatureKind::NewEvent => format!("first `{name}` event ever from this device"),
            FeatureKind::NewCommand => format!(
                "first `{name}` ever from `{}` at {}",
                self.principal.as_deref().unwrap_or("?"),
                hhmm(self.a)
            ),
            FeatureKind::CommandHour => format!(
                "`{name}` at {} UTC, an hour it was never sent at",
                hhmm(self.a)
            ),
            FeatureKind::CommandRate => format!(
                "command rate {:.0}× its usual ({:.0} this minute, usually {:.1})",
                self.a / self.b.max(1.0),
                self.a,
                self.b
            ),
            FeatureKind::Assurance => format!(
                "assurance dropped to `{}` (it has sent with `{}`)",
                super::baseline::assurance_name(self.a as u8),
                super::baseline::assurance_name(self.b as u8)
            ),
            FeatureKind::Denials => format!("{:.0} of its messages denied recently", self.a),
            FeatureKind::Replay => format!(
                "readings repeat an earlier stretch of its own history exactly ({:.0} of the last {:.0} sampled stretches): replayed?",
                self.a, self.b
            ),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn num(x: f32) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn hhmm(minute_of_day: f32) -> String {
    let m = minute_of_day.max(0.0) as u32 % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A message's score: the highest feature, and every feature that scored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub score: f32,
    pub features: Vec<Feature>,
}

/// Features kept per assessment (the highest).
const MAX_FEATURES: usize = 4;

impl Assessment {
    #[cold]
    #[inline(never)]
    pub fn push(&mut self, f: Feature) {
        if f.score <= 0.0 {
            return;
        }
        self.score = self.score.max(f.score);
        self.features.push(f);
        self.features.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.features.truncate(MAX_FEATURES);
    }

    pub fn top(&self) -> Option<&Feature> {
        self.features.first()
    }

    /// The top feature's sentence, and the next ones after a semicolon.
    pub fn reason(&self) -> String {
        let mut s = String::new();
        for (i, f) in self.features.iter().take(2).enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            let _ = write!(s, "{}", f.reason());
        }
        s
    }

    /// The features as they go into an audit record's detail.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "score": (self.score * 1000.0).round() / 1000.0,
            "features": self.features.iter().map(|f| serde_json::json!({
                "feature": f.label(), "score": (f.score * 1000.0).round() / 1000.0,
            })).collect::<Vec<_>>(),
        })
    }
}
