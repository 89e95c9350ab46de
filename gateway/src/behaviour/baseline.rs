//! One device's baseline: what its normal traffic looks like, learned online, in bounded memory.
//!
//! - message rate per UTC hour of the day (24 buckets of messages per minute) and inter-arrival time;
//! - payload size; link RSSI and SNR when the adapter reports them;
//! - per point (at most [`MAX_POINTS`]): value and step size (median/MAD, see [`Robust`]) and the
//!   longest run of identical readings;
//! - the names it has used (at most [`MAX_NAMES`]: points, events, commands, command × principal),
//!   with the hours of the day each command was sent at;
//! - command rate, strongest assurance seen, recent denials.
//!
//! [`Baseline::uplink`] scores a message against what was learned (features in [0, 1]) and then
//! learns from it unless it was anomalous; the policy decides what a score means.

use smallvec::SmallVec;
use warden_core::{Assurance, Message, Value};

use super::robust::Robust;
use super::score::{Assessment, Feature, FeatureKind};

/// Points whose values are tracked per device; further points still count as names.
pub const MAX_POINTS: usize = 8;
/// Names (points, events, commands) remembered per device.
pub const MAX_NAMES: usize = 32;
/// Points of one message the baseline reads (the rest are not scored or learned).
const MAX_MSG_POINTS: usize = 64;

const MINUTE_MS: u64 = 60_000;
/// ln 4: gaps shorter than a quarter of the usual one are not learned.
const FAST_GAP_LN: f32 = 1.386_294_4;
/// Fingerprints of four-message stretches kept per device for replay detection (4 bytes each).
pub const REPLAY_RING: usize = 64;
/// Sampled stretches whose results are remembered (bits of [`Replay::recent`]).
const REPLAY_RECENT: u32 = 16;
/// Silent minutes learned as zero-traffic minutes after a gap (more are skipped).
const MAX_SILENT_MINUTES: u64 = 60;

/// A tracked point; what every reading touches first, the time-of-day blocks (off, see
/// [`TIME_OF_DAY_SCORING`]) last.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct PointStats {
    pub hash: u32,
    pub last: f32,
    pub value: Robust,
    pub change: Robust,
    pub run: u16,
    pub max_run: u16,
    /// Readings in a row that rose (a counter or meter total: no daily pattern to judge).
    pub rising: u16,
    /// Recent deviation from the usual level for the time of day, in spreads (average over about
    /// ten readings, learned or not).
    pub tod_recent: f32,
    /// Usual level and spread per four-hour block of the UTC day, and samples learned in each.
    pub tod: [f32; TOD_BLOCKS],
    pub tod_dev: [f32; TOD_BLOCKS],
    pub tod_n: [u16; TOD_BLOCKS],
}

/// Whether the time-of-day deviation is scored. Off: on `warden bench anomaly` it raised
/// thousands of false alarms per device-week (block means lag a within-block trend) while finding
/// only 1 of 6 replays. While off, the blocks are neither learned nor tracked (they cost a cache
/// line and ~10 % of the baseline's work per reading); the fields stay in the stored format.
const TIME_OF_DAY_SCORING: bool = false;

/// Blocks of the day a point's usual level is learned for.
pub const TOD_BLOCKS: usize = 6;

fn tod_block(ms: u64) -> usize {
    ((ms % 86_400_000) / (86_400_000 / TOD_BLOCKS as u64)) as usize % TOD_BLOCKS
}

/// Learns a reading into its time-of-day block.
fn learn_tod(ps: &mut PointStats, x: f32, now: u64) {
    let b = tod_block(now);
    if let (Some(m), Some(d), Some(n)) = (
        ps.tod.get_mut(b),
        ps.tod_dev.get_mut(b),
        ps.tod_n.get_mut(b),
    ) {
        let alpha = if *n < 50 {
            1.0 / (f32::from(*n) + 1.0)
        } else {
            0.02
        };
        if *n == 0 {
            *m = x;
        } else {
            *d += alpha * ((x - *m).abs() - *d);
            *m += alpha * (x - *m);
        }
        *n = n.saturating_add(1);
    }
}

/// Moves the recent deviation from the usual level for the time of day.
fn track_tod(ps: &mut PointStats, x: f32, now: u64) {
    let b = tod_block(now);
    if let (Some(m), Some(d), Some(n)) = (ps.tod.get(b), ps.tod_dev.get(b), ps.tod_n.get(b))
        && *n >= 20
    {
        let spread = d
            .max((ps.value.hi - ps.value.lo) * 0.1)
            .max(ps.value.sigma(1e-3) * 0.05);
        let z = ((x - m) / spread).clamp(-100.0, 100.0);
        ps.tod_recent += 0.2 * (z - ps.tod_recent);
    }
}

/// The learned messages per minute for one hour of the day (own bucket, else the busiest learned
/// one), kept beside the hot fields so a message does not read the 24 buckets: filled at the
/// first message of an hour, emptied whenever a bucket learns. Not part of what a baseline is
/// (equal whatever it holds; not stored).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateCache {
    /// The hour + 1 the rate is for (0: empty).
    hour: u8,
    /// NaN: no bucket has learned enough yet.
    rate: f32,
}

impl PartialEq for RateCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The usual gap in ms for the gap estimate it was computed from (one exponential per change of
/// the estimate, not per message): kept only to be cheap, not part of what a baseline learned
/// (equal whatever it holds; not stored).
#[derive(Debug, Clone, Copy)]
pub struct GapCache {
    /// `gap.med`'s bits `gap_ms` is for (a NaN pattern, never a finite estimate, when empty).
    gap_key: u32,
    gap_ms: f32,
}

impl Default for GapCache {
    fn default() -> Self {
        Self {
            gap_key: u32::MAX,
            gap_ms: 1.0,
        }
    }
}

impl PartialEq for GapCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A remembered name: its hash and, for commands, the UTC hours (bit per hour) it was used at.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Name {
    pub hash: u32,
    pub hours: u32,
}

/// Replay detection: a ring of fingerprints of four-message stretches of the device's value
/// tuples, sampled by content (a fingerprint is kept when it is 0 modulo `modulus`, a power of two
/// sized from the device's rate so that the ring spans about a day), so a replayed stretch of the
/// device's own history yields the same sampled fingerprints whatever the alignment. Stretches of
/// four identical tuples are not fingerprinted (a frozen value is the `frozen` feature's job).
/// Devices whose clean traffic repeats naturally (coarse, low-entropy values) are not scored: the
/// share of repeats among learned samples must stay under 1 in 20.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Replay {
    /// Value-tuple hashes of the previous three messages (0: none).
    pub prev: [u32; 3],
    /// One bit per recent sampled fingerprint: it repeated one in the ring.
    pub recent: u16,
    /// Learned samples, and how many of them repeated (halved together past 1024).
    pub samples: u16,
    pub repeats: u16,
    pub next: u8,
    /// log2 of the sampling modulus, from the device's usual gap (updated once a minute).
    pub shift: u8,
    /// Ring index of the last repeat (a replay repeats the ring in order), or `NO_HIT`.
    pub last_hit: u8,
    pub ring: Vec<u32>,
}

const NO_HIT: u8 = u8::MAX;

impl Default for Replay {
    fn default() -> Self {
        Self {
            prev: [0; 3],
            ring: Vec::new(),
            next: 0,
            recent: 0,
            samples: 0,
            repeats: 0,
            shift: 0,
            last_hit: NO_HIT,
        }
    }
}
/// Repeats among the last [`REPLAY_RECENT`] samples that make an alert (each further one adds 0.1).
const REPLAY_HITS: u32 = 3;
/// A repeat continues a replay when it is at most this many ring entries after the last one.
const REPLAY_STRIDE: usize = 8;

impl Replay {
    /// The fingerprint of the stretch ending in a message with value-tuple hash `h`, if it is
    /// sampled.
    fn sampled(&self, h: u32) -> Option<u32> {
        let [a, b, c] = self.prev;
        if a == 0 || (a == b && b == c && c == h) {
            return None;
        }
        let mut f = a.wrapping_mul(0x9e37_79b1) ^ b.rotate_left(11);
        f = f.wrapping_mul(0x85eb_ca6b) ^ c.rotate_left(17);
        f = f.wrapping_mul(0xcc9e_2d51) ^ h.rotate_left(23);
        f ^= f >> 15;
        f = f.wrapping_mul(0xc2b2_ae35);
        f ^= f >> 13;
        let mask = (1u32 << self.shift.min(10)) - 1;
        (f & mask == 0 && f != 0).then_some(f)
    }

    /// Where `f` is in the ring, and whether it follows the last repeat in order.
    fn find(&self, f: u32) -> Option<(usize, bool)> {
        let i = self.ring.iter().position(|x| *x == f)?;
        let last = usize::from(self.last_hit);
        let follows = last < REPLAY_RING
            && (1..=REPLAY_STRIDE).contains(&((i + REPLAY_RING - last) % REPLAY_RING));
        Some((i, follows))
    }

    /// Whether scoring is meaningful for this device: enough clean samples, few natural repeats.
    fn armed(&self) -> bool {
        self.samples >= 16 && u32::from(self.repeats) * 20 <= u32::from(self.samples)
    }

    fn set_rate(&mut self, per_day: f32) {
        let want = (per_day / REPLAY_RING as f32).max(1.0);
        self.shift = if want.is_finite() {
            (want.log2().floor() as u8).min(10)
        } else {
            0
        };
    }

    /// Records a message's tuple hash `h` (0 for a message without numeric values).
    fn record(&mut self, h: u32, sampled: Option<u32>, learned: bool) {
        if let Some(f) = sampled {
            let found = self.find(f);
            let hit = found.is_some();
            self.recent = (self.recent << 1) | u16::from(hit);
            if let Some((i, _)) = found {
                self.last_hit = i as u8;
            }
            if learned {
                self.samples = self.samples.saturating_add(1);
                self.repeats = self.repeats.saturating_add(u16::from(hit));
                if self.samples >= 1024 {
                    self.samples /= 2;
                    self.repeats /= 2;
                }
            }
            if !hit {
                if self.ring.len() < REPLAY_RING {
                    self.ring.push(f);
                } else if let Some(slot) = self.ring.get_mut(usize::from(self.next)) {
                    *slot = f;
                }
                self.next = ((usize::from(self.next) + 1) % REPLAY_RING) as u8;
            }
        }
        if h != 0 {
            self.prev = [self.prev[1], self.prev[2], h];
        }
    }
}

/// A hash of a message's numeric values in order (0 when it has no integer or float value: a
/// message of booleans is too coarse to tell a replay from chance).
fn tuple_hash(msg: &Message) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut any = false;
    for (i, p) in msg.points.iter().take(64).enumerate() {
        let bits = match p.value {
            Value::Int(v) => v as u64,
            Value::Float(v) => v.to_bits(),
            Value::Bool(b) => u64::from(b),
            Value::Text(_) | Value::Bytes(_) => continue,
        };
        any |= matches!(p.value, Value::Int(_) | Value::Float(_));
        h = (h ^ bits ^ ((i as u64) << 56)).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    if !any {
        return 0;
    }
    let h = (h ^ (h >> 32)) as u32;
    if h == 0 { 1 } else { h }
}

/// In memory order, what every message reads first (`repr(C)` keeps the order: with the entry's
/// own hot fields, a message touches a few neighbouring cache lines rather than most of ~600
/// bytes); link values, names and commands after.
#[derive(Debug, Clone, Default, PartialEq)]
#[repr(C)]
pub struct Baseline {
    pub messages: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Minute index (ms / 60 000) being counted, and messages in it so far.
    pub minute: u64,
    pub minute_count: u32,
    /// Denials, decayed by half per minute, and when last decayed.
    pub denials: f32,
    pub denials_ms: u64,
    /// Strongest assurance seen (0 none seen; 1 + `Assurance` rank).
    pub best_assurance: u8,
    /// Started from its model's peers rather than from nothing.
    pub seeded: bool,
    pub rate_cache: RateCache,
    pub gap_cache: GapCache,
    /// ln(ms between messages).
    pub gap: Robust,
    pub size: Robust,
    /// Inline up to one point and four names (most devices): no allocation of their own, and one
    /// cache line fewer to fetch per message than a vector's separate block.
    pub points: SmallVec<[PointStats; 1]>,
    pub replay: Replay,
    /// Messages per minute, per UTC hour, and how many minutes each bucket learned.
    pub rate: [f32; 24],
    pub rate_n: [u16; 24],
    pub names: SmallVec<[Name; 4]>,
    pub rssi: Robust,
    pub snr: Robust,
    /// Recent RSSI and SNR (exponential average over about ten messages, learned or not).
    pub rssi_recent: f32,
    pub snr_recent: f32,
    pub cmd_minute: u64,
    pub cmd_count: u32,
    /// Commands per minute (EWMA over minutes with traffic) and commands learned.
    pub cmd_rate: f32,
    pub commands: u32,
}

/// The exponential average over about ten readings of a link value, started at the baseline's
/// level (or the first reading).
fn recent_average(avg: &mut f32, x: f32, base: &Robust) {
    if x.is_finite() && x.abs() < 1e4 {
        if *avg == 0.0 {
            *avg = if base.med != 0.0 { base.med } else { x };
        }
        *avg += 0.2 * (x - *avg);
    }
}

/// FNV-1a over a tag and the parts of a name.
pub fn name_hash(tag: u8, parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: u8| {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    };
    eat(tag);
    for p in parts {
        for b in p.bytes() {
            eat(b);
        }
        eat(0);
    }
    h
}

pub fn hour_of(ms: u64) -> usize {
    ((ms / 3_600_000) % 24) as usize
}

fn assurance_rank(a: Assurance) -> u8 {
    match a {
        Assurance::None => 1,
        Assurance::Channel => 2,
        Assurance::SharedKey => 3,
        Assurance::Certificate => 4,
    }
}

pub fn assurance_name(rank: u8) -> &'static str {
    match rank {
        1 => "none",
        2 => "channel",
        3 => "shared-key",
        4 => "certificate",
        _ => "unknown",
    }
}

/// A number as the baseline reads it (text and bytes are not numeric series).
fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(_) | Value::Text(_) | Value::Bytes(_) => None,
    }
}

/// Maps a deviation in spreads to a score: 0 below `z0`, 1 from `z1`.
fn ramp(z: f32, z0: f32, z1: f32) -> f32 {
    ((z - z0) / (z1 - z0)).clamp(0.0, 1.0)
}

/// Maps a ratio to its usual level to a score: 0 up to 4×, 1 from 32×.
fn ratio_score(r: f32) -> f32 {
    // (up to 4× scores 0: most messages end here, without a logarithm)
    if r <= 4.0 {
        return 0.0;
    }
    if !r.is_finite() {
        return 1.0;
    }
    ((r.log2() - 2.0) / 3.0).clamp(0.0, 1.0)
}

impl Baseline {
    /// The expected messages per minute for `hour`: its own bucket once it has learned a few
    /// minutes, else the busiest learned bucket (never quieter than the device has shown), else
    /// (a young device) what its median time between messages implies.
    pub fn expected_rate(&self, hour: usize) -> Option<f32> {
        self.expected_rate_with(hour, || self.gap.med.exp())
    }

    /// [`Self::expected_rate`] with the usual gap in ms computed (at most once) by `gap_ms`.
    fn expected_rate_with(&self, hour: usize, gap_ms: impl FnOnce() -> f32) -> Option<f32> {
        let cached = self.rate_cache;
        let buckets = if usize::from(cached.hour) == hour + 1 {
            (!cached.rate.is_nan()).then_some(cached.rate)
        } else {
            self.bucket_rate(hour)
        };
        buckets.or_else(|| {
            (self.gap.n >= 8)
                .then(|| MINUTE_MS as f32 / gap_ms().max(1.0))
                .filter(|r| r.is_finite())
        })
    }

    /// The rate the buckets give for `hour`: its own once it has learned a few minutes, else the
    /// busiest learned one.
    fn bucket_rate(&self, hour: usize) -> Option<f32> {
        let own = self.rate_n.get(hour).copied().unwrap_or(0);
        if own >= 3 {
            return self.rate.get(hour).copied();
        }
        self.rate
            .iter()
            .zip(self.rate_n.iter())
            .filter(|(_, n)| **n >= 3)
            .map(|(r, _)| *r)
            .reduce(f32::max)
    }

    /// Fills the rate cache for `hour` unless it holds it.
    fn cache_rate(&mut self, hour: usize) {
        if usize::from(self.rate_cache.hour) != hour + 1 {
            self.rate_cache = RateCache {
                hour: (hour + 1) as u8,
                rate: self.bucket_rate(hour).unwrap_or(f32::NAN),
            };
        }
    }

    fn learn_minute(&mut self, minute: u64, count: u32) {
        let h = hour_of(minute * MINUTE_MS);
        let (Some(r), Some(n)) = (self.rate.get(h).copied(), self.rate_n.get(h).copied()) else {
            return;
        };
        // a flood does not teach the baseline that floods are normal: winsorised at 4× + 2
        let cap = self.expected_rate(h).map_or(f32::MAX, |e| e * 4.0 + 2.0);
        let c = (count as f32).min(cap);
        let alpha = if n < 20 {
            1.0 / (f32::from(n) + 1.0)
        } else {
            0.05
        };
        if let Some(slot) = self.rate.get_mut(h) {
            *slot = r + alpha * (c - r);
        }
        if let Some(slot) = self.rate_n.get_mut(h) {
            *slot = n.saturating_add(1);
        }
        self.rate_cache = RateCache::default();
    }

    /// Moves the rate counter to the minute of `now`, learning the minutes that ended.
    fn roll_minute(&mut self, now: u64) {
        let m = now / MINUTE_MS;
        if self.minute == 0 {
            self.minute = m;
            return;
        }
        // a clock step backwards counts into the current minute
        if m <= self.minute {
            return;
        }
        let finished = self.minute_count;
        self.learn_minute(self.minute, finished);
        let silent = (m - self.minute - 1).min(MAX_SILENT_MINUTES);
        for i in 0..silent {
            self.learn_minute(m - silent + i, 0);
        }
        self.minute = m;
        self.minute_count = 0;
        if self.gap.n >= 8 {
            self.replay
                .set_rate(86_400_000.0 / self.gap.med.exp().max(1.0));
        }
    }

    fn decay_denials(&mut self, now: u64) {
        // (nothing to decay: most devices, most messages)
        if self.denials == 0.0 {
            return;
        }
        let minutes = now.saturating_sub(self.denials_ms) / MINUTE_MS;
        if minutes > 0 {
            self.denials *= 0.5f32.powi(minutes.min(64) as i32);
            self.denials_ms = now;
        }
    }

    /// A message the decide stage denied.
    pub fn denied(&mut self, now: u64) {
        self.decay_denials(now);
        self.denials = (self.denials + 1.0).min(1e6);
    }

    fn find_name(&self, h: u32) -> Option<&Name> {
        self.names.iter().find(|n| n.hash == h)
    }

    fn learn_name(&mut self, h: u32, hour: Option<usize>) {
        let bit = hour.map_or(0, |h| 1u32 << h);
        if let Some(n) = self.names.iter_mut().find(|n| n.hash == h) {
            n.hours |= bit;
        } else if self.names.len() < MAX_NAMES {
            self.names.push(Name {
                hash: h,
                hours: bit,
            });
        }
    }

    /// The usual gap between messages in ms (`exp` of the estimate), computed again only when the
    /// estimate moved.
    fn gap_ms(&mut self) -> f32 {
        let key = self.gap.med.to_bits();
        if self.gap_cache.gap_key != key {
            self.gap_cache.gap_key = key;
            self.gap_cache.gap_ms = self.gap.med.exp();
        }
        self.gap_cache.gap_ms
    }

    /// Scores an uplink, then learns from it when `learn` says so given the assessment.
    pub fn uplink(
        &mut self,
        msg: &Message,
        now: u64,
        learn: impl FnOnce(&Assessment) -> bool,
    ) -> Assessment {
        self.roll_minute(now);
        self.minute_count = self.minute_count.saturating_add(1);
        self.decay_denials(now);
        // (the baselines' levels are read only for a message that carries the value: one cache
        // line fewer per message without link metadata)
        if let Some(x) = msg.link.rssi {
            recent_average(&mut self.rssi_recent, x, &self.rssi);
        }
        if let Some(x) = msg.link.snr {
            recent_average(&mut self.snr_recent, x, &self.snr);
        }
        // each point's name hashed once for scoring, learning and tracking
        let tag = if msg.kind == warden_core::Kind::Event {
            b'e'
        } else {
            b'p'
        };
        let mut hashes = [0u32; MAX_MSG_POINTS];
        for (slot, p) in hashes.iter_mut().zip(&msg.points) {
            *slot = name_hash(tag, &[&p.name]);
        }
        let names = hashes
            .get(..msg.points.len().min(MAX_MSG_POINTS))
            .unwrap_or_default();
        let h = tuple_hash(msg);
        let sampled = if h != 0 { self.replay.sampled(h) } else { None };
        let hour = hour_of(now);
        self.cache_rate(hour);
        let gap_ms = self.gap_ms();
        let mut a = self.score_uplink(msg, now, hour, (tag, names), gap_ms);
        // a repeat that follows the last one in ring order, with two more within the last 16
        // samples: a stretch of the device's history played again
        if let Some(f) = sampled
            && self.replay.armed()
            && let Some((_, true)) = self.replay.find(f)
        {
            let hits = ((self.replay.recent << 1) | 1).count_ones();
            if hits >= REPLAY_HITS {
                let s = 0.5 + 0.1 * (hits - REPLAY_HITS) as f32;
                a.push(Feature::new(FeatureKind::Replay, s).nums(
                    hits as f32,
                    REPLAY_RECENT as f32,
                    0.0,
                ));
            }
        }
        let learned = learn(&a);
        if learned {
            self.learn_uplink(msg, now);
        }
        self.replay.record(h, sampled, learned);
        self.points_pass(msg, learned, now, names);
        self.messages = self.messages.saturating_add(1);
        if self.first_ms == 0 {
            self.first_ms = now;
        }
        self.last_ms = self.last_ms.max(now);
        a
    }

    fn score_uplink(
        &self,
        msg: &Message,
        now: u64,
        hour: usize,
        (tag, names): (u8, &[u32]),
        gap_ms: f32,
    ) -> Assessment {
        let mut a = Assessment::default();
        if self.messages < 2 {
            return a;
        }
        if let Some(e) = self.expected_rate_with(hour, || gap_ms) {
            let c = self.minute_count as f32;
            let r = c / e.max(1.0);
            let s = ratio_score(r);
            if s > 0.0 {
                a.push(Feature::new(FeatureKind::Rate, s).nums(c, e, hour as f32));
            }
        }
        let size = msg.size() as f32;
        let z = self.size.surprise(size, 4.0);
        if z > 0.0 {
            a.push(Feature::new(FeatureKind::Size, ramp(z, 6.0, 16.0)).nums(
                size,
                self.size.med,
                self.size.hi,
            ));
        }
        for (kind, rob, x, recent) in [
            (
                FeatureKind::Rssi,
                &self.rssi,
                msg.link.rssi,
                self.rssi_recent,
            ),
            (FeatureKind::Snr, &self.snr, msg.link.snr, self.snr_recent),
        ] {
            let Some(x) = x else { continue };
            if rob.n < 8 {
                continue;
            }
            let s = rob.sigma(1.5);
            let z = if x.is_finite() {
                rob.surprise(x, 1.5)
            } else {
                f32::MAX
            };
            // a lasting shift (a relocated or impersonated device): the recent average, whose
            // spread is far smaller than one reading's, has left the usual level
            let shifted = ((recent - rob.med).abs() / (s / 2.5) - 6.0) / 6.0;
            let score = ramp(z, 4.0, 10.0).max(shifted.clamp(0.0, 1.0));
            if score > 0.0 {
                a.push(Feature::new(kind, score).nums(recent, rob.med, s));
            }
        }
        let rank = assurance_rank(msg.assurance);
        if self.best_assurance > rank {
            a.push(Feature::new(FeatureKind::Assurance, 0.7).nums(
                f32::from(rank),
                f32::from(self.best_assurance),
                0.0,
            ));
        }
        if self.denials > 3.0 {
            a.push(
                Feature::new(
                    FeatureKind::Denials,
                    ((self.denials - 3.0) / 7.0).clamp(0.0, 1.0),
                )
                .nums(self.denials, 0.0, 0.0),
            );
        }
        let names_full = self.names.len() >= MAX_NAMES;
        // a step is judged only against the previous reading of a device that is not back
        // from a silence (after hours off, any step is plausible)
        let usual_gap = gap_ms.max(1000.0);
        let recent = (now.saturating_sub(self.last_ms) as f32) < usual_gap * 4.0;
        for (p, &h) in msg.points.iter().zip(names) {
            // a tracked point is a known name: the name list is read only for the others
            let tracked = self.points.iter().find(|s| s.hash == h);
            if tracked.is_none() && !names_full && self.find_name(h).is_none() {
                let kind = if tag == b'e' {
                    FeatureKind::NewEvent
                } else {
                    FeatureKind::NewPoint
                };
                a.push(Feature::new(kind, 0.6).named(&p.name));
                continue;
            }
            let Some(x) = numeric(&p.value) else { continue };
            let Some(ps) = tracked else {
                continue;
            };
            if !x.is_finite() || x.abs() > f64::from(f32::MAX) {
                a.push(Feature::new(FeatureKind::Value, 1.0).named(&p.name).nums(
                    f32::NAN,
                    ps.value.med,
                    0.0,
                ));
                continue;
            }
            let x = x as f32;
            let z = ps.value.surprise(x, 1e-3);
            if z > 0.0 {
                a.push(
                    Feature::new(FeatureKind::Value, ramp(z, 6.0, 16.0))
                        .named(&p.name)
                        .nums(x, ps.value.lo, ps.value.hi)
                        .unit(p.unit.as_deref()),
                );
            }
            if ps.value.n >= 2 && recent {
                let d = (x - ps.last).abs();
                // a step is measured against the point's own spread too: a counter that skips a
                // lost reading, or a switch that flips across its whole range, is not a jump
                let floor = ((ps.value.hi - ps.value.lo) * 0.25).max(1e-3);
                let z = ps.change.surprise(d, floor);
                if z > 0.0 && d > 0.0 {
                    a.push(
                        Feature::new(FeatureKind::Change, ramp(z, 8.0, 20.0))
                            .named(&p.name)
                            .nums(d, ps.change.med, ps.change.hi),
                    );
                }
                // a lasting departure from its usual level for this time of day (replayed or
                // shifted readings): the recent average deviation, not one reading
                let tod = if TIME_OF_DAY_SCORING && ps.rising < 64 {
                    ramp(ps.tod_recent.abs(), 4.0, 8.0)
                } else {
                    0.0
                };
                if tod > 0.0 {
                    let b = tod_block(now);
                    a.push(
                        Feature::new(FeatureKind::TimeOfDay, tod)
                            .named(&p.name)
                            .nums(x, ps.tod.get(b).copied().unwrap_or(0.0), b as f32)
                            .unit(p.unit.as_deref()),
                    );
                }
                // (a point that never varied, like a setpoint, is not "frozen")
                if x.to_bits() == ps.last.to_bits()
                    && matches!(p.value, Value::Float(_))
                    && ps.value.mad > 0.0
                {
                    let run = f32::from(ps.run) + 1.0;
                    let limit = (f32::from(ps.max_run) * 4.0).max(8.0);
                    if run >= limit {
                        let s = 0.55 + 0.45 * (run / limit - 1.0).min(1.0);
                        a.push(Feature::new(FeatureKind::Frozen, s).named(&p.name).nums(
                            x,
                            run,
                            f32::from(ps.max_run),
                        ));
                    }
                }
            }
        }
        a
    }

    /// Learns what is not per point: gap, size, link values, assurance.
    fn learn_uplink(&mut self, msg: &Message, now: u64) {
        if self.last_ms > 0 && now > self.last_ms {
            let g = ((now - self.last_ms) as f32).ln();
            // a burst does not teach the baseline that bursts are normal: a gap under a quarter
            // of the usual one is not learned. Without this a young device's flood, spread over
            // distinct milliseconds (a loaded gateway), taught its own 1 ms gaps and raised the
            // expected rate it was judged against to 60,000 a minute: it was never quarantined.
            if self.gap.n < 8 || g >= self.gap.med - FAST_GAP_LN {
                self.gap.update(g);
            }
        }
        self.size.update(msg.size() as f32);
        if let Some(r) = msg.link.rssi {
            self.rssi.update(r);
        }
        if let Some(s) = msg.link.snr {
            self.snr.update(s);
        }
        self.best_assurance = self.best_assurance.max(assurance_rank(msg.assurance));
    }

    /// Per point, in one pass: when `learned`, its name, value and step are learned (a new point
    /// starts being tracked); learned or not, the previous reading and the run of identical
    /// readings are kept (a step and a frozen value are judged against what the device really
    /// sent last).
    fn points_pass(&mut self, msg: &Message, learned: bool, now: u64, names: &[u32]) {
        for (p, &h) in msg.points.iter().zip(names) {
            let mut tracked = self.points.iter().position(|s| s.hash == h);
            // a tracked point's name was learned when it started being tracked
            if learned && tracked.is_none() {
                self.learn_name(h, None);
            }
            let Some(x) = numeric(&p.value).filter(|x| x.is_finite()) else {
                continue;
            };
            let x = x as f32;
            if learned && tracked.is_none() && self.points.len() < MAX_POINTS {
                self.points.push(PointStats {
                    hash: h,
                    ..PointStats::default()
                });
                tracked = Some(self.points.len() - 1);
            }
            let Some(ps) = tracked.and_then(|i| self.points.get_mut(i)) else {
                continue;
            };
            if learned {
                if ps.value.n > 0 {
                    ps.change.update((x - ps.last).abs());
                }
                ps.value.update(x);
                if TIME_OF_DAY_SCORING {
                    learn_tod(ps, x, now);
                }
            }
            if x.abs() >= 3e38 {
                continue;
            }
            if x > ps.last {
                ps.rising = ps.rising.saturating_add(1);
            } else if x < ps.last {
                ps.rising = 0;
            }
            if x.to_bits() == ps.last.to_bits() {
                ps.run = ps.run.saturating_add(1);
            } else {
                // only a run that ended, in normal traffic, teaches how long repeats last
                if learned {
                    ps.max_run = ps.max_run.max(ps.run);
                }
                ps.run = 0;
            }
            ps.last = x;
            if TIME_OF_DAY_SCORING {
                track_tod(ps, x, now);
            }
        }
    }

    /// After an operator marked an alert as expected: every estimate learns as fast as a young
    /// one again, so the baseline absorbs the new normal within an hour.
    pub fn loosen(&mut self) {
        for r in [&mut self.gap, &mut self.size, &mut self.rssi, &mut self.snr] {
            r.n = r.n.min(8);
        }
        for p in &mut self.points {
            p.value.n = p.value.n.min(8);
            p.change.n = p.change.n.min(8);
        }
        for n in &mut self.rate_n {
            *n = (*n).min(3);
        }
        self.rate_cache = RateCache::default();
    }

    /// Scores a command to this device, then learns it when `learn` says so.
    pub fn command(
        &mut self,
        name: &str,
        principal: &str,
        now: u64,
        learn: impl FnOnce(&Assessment) -> bool,
    ) -> Assessment {
        let m = now / MINUTE_MS;
        if m > self.cmd_minute {
            if self.cmd_minute > 0 && self.cmd_count > 0 {
                let c = (self.cmd_count as f32).min(self.cmd_rate * 4.0 + 2.0);
                self.cmd_rate += 0.1 * (c - self.cmd_rate);
            }
            self.cmd_minute = m;
            self.cmd_count = 0;
        }
        self.cmd_count = self.cmd_count.saturating_add(1);
        let hour = hour_of(now);
        let mut a = Assessment::default();
        if self.commands >= 2 {
            let r = self.cmd_count as f32 / self.cmd_rate.max(1.0);
            let s = ratio_score(r);
            if s > 0.0 {
                a.push(Feature::new(FeatureKind::CommandRate, s).nums(
                    self.cmd_count as f32,
                    self.cmd_rate,
                    0.0,
                ));
            }
            let full = self.names.len() >= MAX_NAMES;
            let by = name_hash(b'q', &[name, principal]);
            match self.find_name(name_hash(b'c', &[name])) {
                _ if !full && self.find_name(by).is_none() => {
                    a.push(
                        Feature::new(FeatureKind::NewCommand, 0.6)
                            .named(name)
                            .who(principal)
                            .nums((now % 86_400_000) as f32 / 60_000.0, 0.0, 0.0),
                    );
                }
                Some(n) if self.commands >= 8 && n.hours & (1 << hour) == 0 => {
                    a.push(
                        Feature::new(FeatureKind::CommandHour, 0.55)
                            .named(name)
                            .nums((now % 86_400_000) as f32 / 60_000.0, 0.0, 0.0),
                    );
                }
                _ => {}
            }
        }
        if learn(&a) {
            self.learn_name(name_hash(b'c', &[name]), Some(hour));
            self.learn_name(name_hash(b'q', &[name, principal]), None);
            self.commands = self.commands.saturating_add(1);
        }
        a
    }

    /// Bytes this baseline holds (struct plus its bounded vectors' capacity).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + usize::from(self.points.spilled())
                * self.points.capacity()
                * std::mem::size_of::<PointStats>()
            + usize::from(self.names.spilled())
                * self.names.capacity()
                * std::mem::size_of::<Name>()
            + self.replay.ring.capacity() * std::mem::size_of::<u32>()
    }

    /// A copy for a new peer of the same model: what was learned, none of the per-device moment.
    pub fn seed(&self) -> Self {
        let mut b = self.clone();
        b.first_ms = 0;
        b.last_ms = 0;
        b.messages = 2;
        b.minute = 0;
        b.minute_count = 0;
        b.cmd_minute = 0;
        b.cmd_count = 0;
        b.denials = 0.0;
        b.denials_ms = 0;
        b.seeded = true;
        for p in &mut b.points {
            p.run = 0;
        }
        // a peer's history is not this device's: only the sampling rate carries over
        b.replay = Replay {
            shift: self.replay.shift,
            ..Replay::default()
        };
        b
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use warden_core::{DeviceId, Point};

    fn msg(v: f64) -> Message {
        Message::telemetry(
            DeviceId::new("sim", "cache").unwrap(),
            vec![Point::new("t", Value::Float(v))],
        )
    }

    #[test]
    fn the_rate_cache_follows_every_bucket_change() {
        let mut b = Baseline::default();
        let t0 = 10 * 3_600_000; // 10:00 UTC
        // six messages a minute for six minutes, then twelve in the seventh
        let mut now = t0;
        for m in 0..7u64 {
            let per = if m == 6 { 12 } else { 6 };
            for k in 0..per {
                now = t0 + m * MINUTE_MS + k * (MINUTE_MS / per);
                b.uplink(&msg(20.0), now, |_| true);
            }
        }
        let h = hour_of(now);
        assert_eq!(usize::from(b.rate_cache.hour), h + 1);
        let six = b.bucket_rate(h).unwrap();
        assert_eq!(b.rate_cache.rate, six);
        assert_eq!(b.expected_rate_with(h, || f32::NAN), Some(six));
        // the busy minute is learned at the next message: the cache is emptied and filled anew
        b.uplink(&msg(20.0), now + MINUTE_MS, |_| true);
        let busier = b.bucket_rate(h).unwrap();
        assert!(busier > six, "{busier} after {six}");
        assert_eq!(b.rate_cache.rate, busier);
        // another hour, with no bucket of its own: the busiest learned one
        let later = t0 + 2 * 3_600_000;
        b.uplink(&msg(20.0), later, |_| true);
        assert_eq!(usize::from(b.rate_cache.hour), hour_of(later) + 1);
        assert_eq!(b.rate_cache.rate, b.bucket_rate(hour_of(later)).unwrap());
        // loosening empties it
        b.loosen();
        assert_eq!(b.rate_cache.hour, 0);
    }
}
