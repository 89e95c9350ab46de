//! Behaviour: a baseline per device, an anomaly score per message, and the built-in rules that act
//! on it (alert, quarantine), with the mass-quarantine guard.
//!
//! The `observe` stage calls [`Behaviour::uplink`] for every identified uplink and the downlink path
//! calls [`Behaviour::command`]; both return an [`Outcome`] the decide stage, plugins and the audit
//! record use. State lives on the pipeline thread (no locks); changed baselines go to the store in
//! batches every 30 s through [`persist::Writer`]'s thread.
//!
//! Modules: [`robust`] (median/MAD estimator), [`baseline`] (what one device learns and how a
//! message is scored), [`score`] (features and reasons), [`policy`] (rules per zone/profile),
//! [`guard`] (mass quarantine), [`persist`] (store form and writer).

pub mod baseline;
pub mod guard;
pub mod persist;
pub mod policy;
pub mod robust;
pub mod score;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use warden_core::{DeviceId, Message};

use crate::config::{BehaviourAction, BehaviourConfig};
use crate::registry::DeviceRecord;
use crate::store::Store;
use baseline::Baseline;
use policy::{Recent, Rules};
pub use score::Assessment;

/// Upper bound of `quarantine_after` (the per-device memory of anomalous messages).
pub const MAX_QUARANTINE_AFTER: u32 = 16;
/// Alerts per device are audited at most this often (the others are counted).
const ALERT_EVERY_MS: u64 = 60_000;
/// How long an operator's "expected" lets a device's baseline absorb what it sees.
pub const ABSORB_MS: u64 = 3_600_000;

/// What the rules make of a message's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do (normal, still learning, or absorbing an expected change).
    None,
    /// Alert: audit + MQTT event + metric (`audit` false when a recent alert already was).
    Alert { audit: bool },
    /// Quarantine the device (uplinks) or deny the command (downlinks).
    Quarantine,
}

/// A scored message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub assessment: Assessment,
    pub action: Action,
    pub learning: bool,
    /// Which rule acted: `score` (above `quarantine_at`) or `count` (N alerts in the window).
    pub rule: &'static str,
    /// Alert-level messages in the window, this one included.
    pub recent: u32,
}

impl Outcome {
    /// The reason a person reads.
    pub fn reason(&self) -> String {
        let r = self.assessment.reason();
        match (self.action, self.rule) {
            (Action::Quarantine, "count") => {
                format!("{r} ({} anomalous messages in the window)", self.recent)
            }
            _ => r,
        }
    }

    /// The audit record's `behaviour` detail.
    pub fn detail(&self) -> serde_json::Value {
        let mut d = self.assessment.detail();
        if let Some(o) = d.as_object_mut() {
            o.insert("rule".into(), serde_json::json!(self.rule));
            o.insert("learning".into(), serde_json::json!(self.learning));
            o.insert("recent".into(), serde_json::json!(self.recent));
        }
        d
    }
}

/// In memory order, what every message reads first (`repr(C)` keeps the order: the hot fields of
/// an entry and of its baseline share a few cache lines; what alerts and commands use comes last).
#[repr(C)]
struct Entry {
    /// The record the cached rules were resolved for (pointer identity) and the config generation.
    rules_for: usize,
    rules_gen: u64,
    absorb_until: u64,
    rules: Rules,
    dirty: bool,
    /// Past its learning period (seen by a message since the last start).
    enforcing: bool,
    base: Baseline,
    alerted_ms: u64,
    recent: Recent,
}

pub struct Behaviour {
    cfg: BehaviourConfig,
    generation: u64,
    /// This engine's number (a registry slot written by another engine is not trusted).
    instance: u32,
    /// The baselines, and where each device's is. Boxed: an `Entry` is ~570 bytes and the vector
    /// keeps up to half its capacity unused after growing; boxes cost 8 bytes a spare slot.
    /// (Unboxed was measured: RSS +7.3 MiB at 10,000 devices, the growth's copies, and no faster.)
    #[allow(clippy::vec_box)]
    entries: Vec<Box<Entry>>,
    index: HashMap<DeviceId, u32>,
    /// Baselines of models, seeded from a peer that finished learning: `Manufacturer/Model`.
    seeds: HashMap<String, Baseline>,
    dirty_seeds: Vec<String>,
    pub guard: guard::Guard,
    writer: Option<persist::Writer>,
}

/// Devices with a baseline at most (beyond, new devices are scored by nothing: the registry's
/// own caps keep the device count far below this).
const MAX_DEVICES: usize = 1_000_000;
const MAX_SEEDS: usize = 10_000;

static INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn model_key(r: &DeviceRecord) -> Option<String> {
    Some(format!(
        "{}/{}",
        r.manufacturer.as_deref()?,
        r.model.as_deref()?
    ))
}

impl Behaviour {
    pub fn new(cfg: BehaviourConfig) -> Self {
        let guard = guard::Guard::new(cfg.guard.share, cfg.guard.window_s);
        Self {
            cfg,
            generation: 0,
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            entries: Vec::new(),
            index: HashMap::new(),
            seeds: HashMap::new(),
            dirty_seeds: Vec::new(),
            guard,
            writer: None,
        }
    }

    /// With the baselines stored in `store`, saved back to it by a writer thread.
    pub fn with_store(cfg: BehaviourConfig, store: &Store) -> anyhow::Result<Self> {
        let mut b = Self::new(cfg);
        let (stored, bad) = persist::load(store)?;
        if bad > 0 {
            tracing::warn!(bad, "stored baselines that could not be read were skipped");
        }
        for (k, base) in stored {
            if let Some(m) = k.strip_prefix("model:") {
                b.seeds.insert(m.to_owned(), base);
            } else if let Ok(id) = k.parse::<DeviceId>() {
                b.insert(id, Entry::new(base));
            }
        }
        b.writer = Some(persist::Writer::start(store.clone())?);
        Ok(b)
    }

    pub fn reconfigure(&mut self, cfg: BehaviourConfig) {
        self.guard.reconfigure(cfg.guard.share, cfg.guard.window_s);
        self.cfg = cfg;
        self.generation += 1;
    }

    pub fn devices(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of baseline state held for all devices (index entries included, approximately).
    pub fn bytes(&self) -> usize {
        self.index
            .iter()
            .map(|(k, i)| {
                self.entries.get(*i as usize).map_or(0, |e| e.base.bytes())
                    + std::mem::size_of::<Entry>()
                    - std::mem::size_of::<Baseline>()
                    + std::mem::size_of_val(k)
                    + std::mem::size_of::<u32>()
                    + std::mem::size_of::<Box<Entry>>()
                    + k.to_string().len()
            })
            .sum()
    }

    fn insert(&mut self, id: DeviceId, e: Entry) -> u32 {
        let i = self.entries.len() as u32;
        self.entries.push(Box::new(e));
        self.index.insert(id, i);
        i
    }

    fn get_mut(&mut self, id: &DeviceId) -> Option<&mut Entry> {
        let i = *self.index.get(id)?;
        self.entries.get_mut(i as usize).map(|e| &mut **e)
    }

    #[cfg(test)]
    pub fn base(&self, id: &DeviceId) -> Option<&Baseline> {
        let i = *self.index.get(id)?;
        self.entries.get(i as usize).map(|e| &e.base)
    }

    /// The entry's position: from the registry's slot when this engine wrote it, else by id
    /// (creating the entry), and the slot written for next time.
    fn position(
        &mut self,
        r: &std::sync::Arc<DeviceRecord>,
        slot: Option<&std::sync::atomic::AtomicU64>,
    ) -> Option<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(v) = slot.map(|s| s.load(Relaxed))
            && (v >> 32) as u32 == self.instance
            && let Some(i) = ((v & 0xffff_ffff) as usize).checked_sub(1)
            && i < self.entries.len()
        {
            return Some(i);
        }
        let i = match self.index.get(&r.id) {
            Some(i) => *i,
            None => {
                if self.entries.len() >= MAX_DEVICES {
                    return None;
                }
                let base = model_key(r)
                    .and_then(|m| self.seeds.get(&m))
                    .map(Baseline::seed)
                    .unwrap_or_default();
                self.insert(r.id.clone(), Entry::new(base))
            }
        };
        if let Some(s) = slot {
            s.store(
                (u64::from(self.instance) << 32) | (u64::from(i) + 1),
                Relaxed,
            );
        }
        Some(i as usize)
    }

    fn entry(
        &mut self,
        r: &std::sync::Arc<DeviceRecord>,
        profile: Option<&str>,
        slot: Option<&std::sync::atomic::AtomicU64>,
    ) -> Option<&mut Entry> {
        let i = self.position(r, slot)?;
        let (cfg, generation) = (&self.cfg, self.generation);
        let e = self.entries.get_mut(i)?;
        let ptr = std::sync::Arc::as_ptr(r) as usize;
        if e.rules_for != ptr || e.rules_gen != generation {
            e.rules = Rules::resolve(cfg, &r.zone, profile);
            e.rules_for = ptr;
            e.rules_gen = generation;
        }
        Some(e)
    }

    /// Scores and learns an uplink; `profile` is the device's usage profile name.
    pub fn uplink(
        &mut self,
        r: &std::sync::Arc<DeviceRecord>,
        profile: Option<&str>,
        msg: &Message,
        now: u64,
    ) -> Option<Outcome> {
        self.uplink_at(None, r, profile, msg, now)
    }

    /// [`Self::uplink`] with the registry's per-device slot, which spares the id lookup.
    pub fn uplink_at(
        &mut self,
        slot: Option<&std::sync::atomic::AtomicU64>,
        r: &std::sync::Arc<DeviceRecord>,
        profile: Option<&str>,
        msg: &Message,
        now: u64,
    ) -> Option<Outcome> {
        if !self.cfg.enabled {
            return None;
        }
        let e = self.entry(r, profile, slot)?;
        let rules = e.rules;
        let learning = e.learning(&rules, now);
        let absorbing = now < e.absorb_until;
        let learn_all = learning || absorbing;
        let a = e
            .base
            .uplink(msg, now, |a| learn_all || a.score < rules.alert_at);
        e.dirty = true;
        let out = e.act(a, &rules, learning, absorbing, now);
        // just finished learning: this device's baseline seeds its model's next peers
        let seed = (!learning && !e.enforcing).then(|| {
            e.enforcing = true;
            e.base.seed()
        });
        if let Some(seed) = seed
            && let Some(m) = model_key(r)
            && (self.seeds.len() < MAX_SEEDS || self.seeds.contains_key(&m))
        {
            self.seeds.insert(m.clone(), seed);
            self.dirty_seeds.push(m);
        }
        Some(out)
    }

    /// Scores and learns a command to a device from `principal`.
    pub fn command(
        &mut self,
        r: &std::sync::Arc<DeviceRecord>,
        profile: Option<&str>,
        name: &str,
        principal: &str,
        now: u64,
    ) -> Option<Outcome> {
        if !self.cfg.enabled {
            return None;
        }
        let e = self.entry(r, profile, None)?;
        let rules = e.rules;
        let learning = e.learning(&rules, now);
        let absorbing = now < e.absorb_until;
        let learn_all = learning || absorbing;
        let a = e.base.command(name, principal, now, |a| {
            learn_all || a.score < rules.alert_at
        });
        e.dirty = true;
        Some(e.act(a, &rules, learning, absorbing, now))
    }

    /// A message of this device was denied.
    pub fn denied(&mut self, id: &DeviceId, now: u64) {
        if let Some(e) = self.get_mut(id) {
            e.base.denied(now);
        }
    }

    /// An operator released the device: its count of recent anomalies starts afresh.
    pub fn released(&mut self, id: &DeviceId) {
        if let Some(e) = self.get_mut(id) {
            e.recent.clear();
            e.base.denials = 0.0;
            // the minute that ended in a quarantine is not held against it
            e.base.minute_count = 0;
        }
    }

    /// An operator marked the device's alert as expected: for [`ABSORB_MS`] its baseline learns
    /// everything it sees and its rules do not act. False for a device with no baseline.
    pub fn expect(&mut self, id: &DeviceId, now: u64) -> bool {
        match self.get_mut(id) {
            Some(e) => {
                e.absorb_until = now.saturating_add(ABSORB_MS);
                e.recent.clear();
                e.base.loosen();
                true
            }
            None => false,
        }
    }

    /// Per device: messages learned, and whether it is still learning.
    #[cfg(test)]
    pub fn learning(&self, id: &DeviceId, now: u64) -> Option<(u64, bool)> {
        let e = self.entries.get(*self.index.get(id)? as usize)?;
        Some((e.base.messages, e.learning(&e.rules, now)))
    }

    fn dirty_batch(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut batch = Vec::new();
        for (id, i) in &self.index {
            let Some(e) = self.entries.get_mut(*i as usize) else {
                continue;
            };
            if e.dirty {
                e.dirty = false;
                batch.push((id.to_string(), persist::encode(&e.base)));
            }
        }
        for m in self.dirty_seeds.drain(..) {
            if let Some(b) = self.seeds.get(&m) {
                batch.push((format!("model:{m}"), persist::encode(b)));
            }
        }
        batch
    }

    /// Hands changed baselines to the writer thread (every 30 s). Returns how many.
    pub fn flush(&mut self) -> usize {
        if self.writer.is_none() {
            return 0;
        }
        let batch = self.dirty_batch();
        let n = batch.len();
        if n == 0 {
            return 0;
        }
        let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
        if self.writer.as_ref().is_some_and(|w| w.offer(batch)) {
            return n;
        }
        // the writer is behind: keep them dirty for the next batch
        for k in keys {
            if let Ok(id) = k.parse::<DeviceId>()
                && let Some(e) = self.get_mut(&id)
            {
                e.dirty = true;
            } else if let Some(m) = k.strip_prefix("model:") {
                self.dirty_seeds.push(m.to_owned());
            }
        }
        0
    }

    /// Writes everything changed and stops the writer (at shutdown).
    pub fn shutdown(&mut self) {
        let batch = self.dirty_batch();
        if let Some(w) = self.writer.as_mut() {
            w.finish(batch);
        }
        self.writer = None;
    }
}

impl Entry {
    fn new(base: Baseline) -> Self {
        Self {
            base,
            recent: Recent::default(),
            alerted_ms: 0,
            absorb_until: 0,
            dirty: true,
            enforcing: false,
            rules_for: 0,
            rules_gen: u64::MAX,
            rules: Rules::resolve(&BehaviourConfig::default(), "", None),
        }
    }

    fn learning(&self, rules: &Rules, now: u64) -> bool {
        let (ms, msgs) = if self.base.seeded {
            (rules.learning_ms / 4, rules.learning_messages / 4)
        } else {
            (rules.learning_ms, rules.learning_messages)
        };
        self.base.messages < msgs
            || self.base.first_ms == 0
            || now.saturating_sub(self.base.first_ms) < ms
    }

    fn act(
        &mut self,
        assessment: Assessment,
        rules: &Rules,
        learning: bool,
        absorbing: bool,
        now: u64,
    ) -> Outcome {
        let mut out = Outcome {
            assessment,
            action: Action::None,
            learning,
            rule: "",
            recent: 0,
        };
        let score = out.assessment.score;
        if learning || absorbing || score < rules.alert_at {
            return out;
        }
        self.recent.push(now);
        out.recent = self.recent.within(now, rules.window_ms);
        let quarantine = rules.action == BehaviourAction::Quarantine;
        // `quarantine_at = 1` turns the one-message rule off: only the count quarantines
        if quarantine && rules.quarantine_at < 1.0 && score >= rules.quarantine_at {
            out.action = Action::Quarantine;
            out.rule = "score";
        } else if quarantine && out.recent >= rules.quarantine_after {
            out.action = Action::Quarantine;
            out.rule = "count";
        } else {
            let audit =
                now.saturating_sub(self.alerted_ms) >= ALERT_EVERY_MS || now < self.alerted_ms;
            if audit {
                self.alerted_ms = now;
            }
            out.action = Action::Alert { audit };
            out.rule = "alert";
        }
        out
    }
}
