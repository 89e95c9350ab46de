//! The advert engine: one BLE advertisement in, the events it is worth out. No I/O besides the
//! adapter's state store (the per-device counters), so every rule is unit-tested without BlueZ.
//!
//! For each advert, in order:
//! 1. **track** the advertiser (bounded table; a flood of new addresses spends a per-minute budget
//!    of announcements, the rest is dropped and counted in one rate-limited `flood` record);
//! 2. **announce** a new advertiser once (it lands pending with its name, BTHome device info and
//!    manufacturer company id);
//! 3. **frame** the BTHome service data (typed errors: truncated, oversized, bad version);
//! 4. encrypted: **key** (a missing bind key is an audited `no-key`), **MIC**, then the **counter**
//!    against the one persisted for the device (a replayed counter, or one gone back near its
//!    start, is refused — [`counter_cause`] tells which), persisted before anything is published;
//!    plain: refused as a `downgrade` when the device has a bind key, deduplicated by packet id;
//! 5. **objects** → a message at `shared-key` + fresh (encrypted) or `none` (plain).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_core::{
    AdapterEvent, Announcement, Assurance, CredentialLookup, DeviceId, Kind, LinkMeta, Message,
    Rejection, StateStore,
};

use crate::bthome::{self, BthomeError, Parsed};
use crate::crypto::{self, CryptoError};

/// The credential holding a device's 16-byte BTHome bind key.
pub const BINDKEY: &str = "bindkey";
/// Rejections of one cause audited per [`AUDIT_WINDOW`]; the rest are counted into the next record.
pub const REJECTIONS_PER_WINDOW: u32 = 5;
pub const AUDIT_WINDOW: Duration = Duration::from_secs(10);
/// A plain advert without a packet id repeating the last one's bytes within this is a duplicate.
pub const PLAIN_DEDUP: Duration = Duration::from_secs(4);

/// Why an advert was refused (the audit/metric cause is [`Cause::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Encrypted advert from a device without a bind key (unknown, pending or not provisioned).
    NoKey,
    /// The provisioned bind key is not 16 bytes.
    BadKey,
    /// The MIC does not verify: wrong key or tampered advert.
    BadMic,
    /// A counter at or below the last accepted one, recently seen or not near the start: an old
    /// advert sent again (or reordered).
    Replay,
    /// A counter back at 0, or back near its start from far above (a reset device, or an attacker
    /// replaying its first adverts).
    CounterRestart,
    /// A plain advert from a device provisioned with a bind key.
    Downgrade,
    /// The MAC inside the advert is not the advertiser's address.
    MacMismatch,
    /// The service data is not a usable BTHome v2 advert.
    Malformed(BthomeError),
    /// The first object id is unknown: nothing could be read.
    UnknownObject,
    /// The counter could not be persisted: nothing is published without replay protection.
    StateError,
    /// A new advertiser beyond the announcement budget.
    Flood,
}

impl Cause {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoKey => "no-key",
            Self::BadKey => "bad-key",
            Self::BadMic => "bad-mic",
            Self::Replay => "replay",
            Self::CounterRestart => "counter-restart",
            Self::Downgrade => "downgrade",
            Self::MacMismatch => "mac-mismatch",
            Self::Malformed(e) => e.cause(),
            Self::UnknownObject => "unknown-object",
            Self::StateError => "state-error",
            Self::Flood => "flood",
        }
    }
}

/// What kind of address BlueZ reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressKind {
    Public,
    /// Random, top two bits 11: stable until the device is reset.
    RandomStatic,
    /// Random, top bits 01: changes every few minutes; not a stable identity.
    RandomResolvable,
    /// Random, top bits 00: changes at will; not a stable identity.
    RandomNonResolvable,
    #[default]
    Unknown,
}

impl AddressKind {
    /// Classifies a random address by its two most significant bits.
    pub fn random(mac: &[u8; 6]) -> Self {
        match mac[0] >> 6 {
            0b11 => Self::RandomStatic,
            0b01 => Self::RandomResolvable,
            0b00 => Self::RandomNonResolvable,
            _ => Self::Unknown,
        }
    }
    pub fn stable(self) -> bool {
        matches!(self, Self::Public | Self::RandomStatic | Self::Unknown)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::RandomStatic => "random static",
            Self::RandomResolvable => "random resolvable (not a stable identity)",
            Self::RandomNonResolvable => "random non-resolvable (not a stable identity)",
            Self::Unknown => "unknown type",
        }
    }
}

/// One advertisement as BlueZ reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advert {
    pub mac: [u8; 6],
    pub address: AddressKind,
    pub name: Option<String>,
    pub rssi: Option<i16>,
    /// Service data under 0xFCD2, if any.
    pub bthome: Option<Vec<u8>>,
    /// The first manufacturer data's company id, if any.
    pub company: Option<u16>,
}

/// `ble:` + the MAC as 12 lower-case hex digits.
pub fn device_id(mac: &[u8; 6]) -> Option<DeviceId> {
    let mut s = String::with_capacity(12);
    for b in mac {
        s.push_str(&format!("{b:02x}"));
    }
    DeviceId::new(crate::PROTOCOL, &s).ok()
}

/// Parses `aa:bb:cc:dd:ee:ff` (any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Counters of what the engine saw (for logs and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub adverts: u64,
    pub published: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub unknown_objects: u64,
    pub flood_dropped: u64,
    pub announced: u64,
    pub evicted: u64,
}

#[derive(Debug, Default)]
struct Tracked {
    announced: bool,
    last_packet_id: Option<u8>,
    last_hash: Option<u64>,
    last_at: Option<Instant>,
    /// The last accepted counter and the check value of the key it was under (mirrors the state
    /// store).
    counter: Option<(u32, [u8; 8])>,
}

/// A map that forgets its oldest entry when full.
struct Bounded<V> {
    cap: usize,
    map: HashMap<[u8; 6], V>,
    order: VecDeque<[u8; 6]>,
}

impl<V: Default> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn get_mut(&mut self, k: &[u8; 6]) -> Option<&mut V> {
        self.map.get_mut(k)
    }
    /// Inserts a default entry, evicting the oldest when full; returns whether one was evicted.
    fn insert(&mut self, k: [u8; 6]) -> bool {
        let mut evicted = false;
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    evicted |= self.map.remove(&old).is_some();
                }
                None => break,
            }
        }
        self.map.insert(k, V::default());
        self.order.push_back(k);
        evicted
    }
}

#[derive(Default)]
struct RateLimit {
    window_start: Option<Instant>,
    counts: HashMap<&'static str, (u32, u64)>,
}

impl RateLimit {
    /// Whether to audit this cause now, and how many of it went unaudited since the last record.
    fn admit(&mut self, cause: &'static str, now: Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= AUDIT_WINDOW)
        {
            self.window_start = Some(now);
            for (n, _) in self.counts.values_mut() {
                *n = 0;
            }
        }
        let e = self.counts.entry(cause).or_insert((0, 0));
        if e.0 < REJECTIONS_PER_WINDOW {
            e.0 += 1;
            Some(std::mem::take(&mut e.1))
        } else {
            e.1 = e.1.saturating_add(1);
            None
        }
    }
}

/// A token bucket of announcements of new advertisers.
struct Budget {
    per_minute: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_minute / 60.0).min(self.per_minute);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A counter at most this far below the last accepted one is a recently seen one: a replay.
pub const RECENT_COUNTERS: u32 = 256;
/// Counters below this are near the start, where a reset device counts from again.
pub const RESTART_BELOW: u32 = 256;

/// Why `counter` is refused after `last` (only called for `counter <= last`): back at 0 after
/// higher ones, or back near the start from more than [`RECENT_COUNTERS`] above, is a
/// `counter-restart` (a reset device or its first adverts replayed); anything else — the last
/// counter itself, one just below it, an old counter far from the start — is a `replay`. Both
/// are refused; the cause tells an operator which to look for. Only the last counter is kept
/// (it survives a restart), so the rule is arithmetic and the same before and after one.
pub fn counter_cause(counter: u32, last: u32) -> Cause {
    let below = last.saturating_sub(counter);
    if (counter == 0 && last > 0) || (counter < RESTART_BELOW && below > RECENT_COUNTERS) {
        Cause::CounterRestart
    } else {
        Cause::Replay
    }
}

fn counter_key(id: &DeviceId) -> String {
    format!("counter/{}", id.address())
}

/// The counter of a stored record (counter LE ‖ key check value) if it was under the key `kcv`.
fn stored_counter(v: &[u8], kcv: &[u8; 8]) -> Option<u32> {
    let (ctr, k) = v.split_first_chunk::<4>()?;
    (k == kcv).then(|| u32::from_le_bytes(*ctr))
}

fn hash(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// See the module documentation.
pub struct Engine {
    state: Arc<dyn StateStore>,
    credentials: Arc<dyn CredentialLookup>,
    announce_all: bool,
    devices: Bounded<Tracked>,
    rejections: RateLimit,
    budget: Budget,
    pub stats: Stats,
}

impl Engine {
    pub fn new(
        cfg: &crate::Config,
        state: Arc<dyn StateStore>,
        credentials: Arc<dyn CredentialLookup>,
    ) -> Self {
        let per_minute = f64::from(cfg.new_devices_per_minute);
        Self {
            state,
            credentials,
            announce_all: cfg.announce == "all",
            devices: Bounded::new(cfg.max_devices),
            rejections: RateLimit::default(),
            budget: Budget {
                per_minute,
                tokens: per_minute,
                at: None,
            },
            stats: Stats::default(),
        }
    }

    /// How many advertisers are tracked now (bounded by `max_devices`).
    pub fn tracked(&self) -> usize {
        self.devices.len()
    }

    fn reject(
        &mut self,
        out: &mut Vec<AdapterEvent>,
        device: Option<DeviceId>,
        cause: Cause,
        detail: String,
        now: Instant,
    ) {
        self.stats.rejected += 1;
        let c = cause.as_str();
        let Some(unaudited) = self.rejections.admit(c, now) else {
            return;
        };
        let detail = if unaudited > 0 {
            format!("{detail} ({unaudited} more `{c}` adverts since the last record)")
        } else {
            detail
        };
        out.push(AdapterEvent::Rejected(Rejection {
            protocol: crate::PROTOCOL,
            device,
            cause: c,
            detail,
        }));
    }

    /// Handles one advert; returns the events for the gateway, in order.
    pub fn advert(&mut self, a: &Advert, now: Instant) -> Vec<AdapterEvent> {
        let mut out = Vec::new();
        self.stats.adverts += 1;
        let Some(id) = device_id(&a.mac) else {
            return out;
        };
        let key = self.credentials.credential(&id, BINDKEY);

        // 1. track (a provisioned device is always admitted; new ones spend the budget)
        if self.devices.get_mut(&a.mac).is_none() {
            let interesting = a.bthome.is_some() || self.announce_all;
            if !interesting && key.is_none() {
                return out;
            }
            if key.is_none() && !self.budget.take(now) {
                self.stats.flood_dropped += 1;
                self.reject(
                    &mut out,
                    None,
                    Cause::Flood,
                    format!(
                        "new advertiser {id} ignored: more than the configured new devices per minute; {} tracked",
                        self.devices.len()
                    ),
                    now,
                );
                return out;
            }
            if self.devices.insert(a.mac) {
                self.stats.evicted += 1;
            }
        }

        // 2. announce once
        if let Some(t) = self.devices.get_mut(&a.mac)
            && !t.announced
        {
            t.announced = true;
            self.stats.announced += 1;
            out.push(AdapterEvent::Announce(announcement(&id, a)));
        }

        let Some(sd) = a.bthome.as_deref() else {
            return out;
        };
        // 3. frame
        let frame = match bthome::frame(sd) {
            Ok(f) => f,
            Err(e) => {
                let d = format!("BTHome advert from {id}: {e}");
                self.reject(&mut out, Some(id), Cause::Malformed(e), d, now);
                return out;
            }
        };
        if let Some(m) = frame.mac
            && m != a.mac
        {
            let d = format!("BTHome advert from {id} carries another MAC");
            self.reject(&mut out, Some(id), Cause::MacMismatch, d, now);
            return out;
        }
        let h = hash(sd);

        // 4. authenticate
        let (objects, assurance, fresh) = if frame.info.encrypted() {
            if self
                .devices
                .get_mut(&a.mac)
                .is_some_and(|t| t.last_hash == Some(h))
            {
                // the radio repeats each advert: the same bytes as the last accepted one
                self.stats.duplicates += 1;
                return out;
            }
            let Some(key) = key else {
                let d = format!(
                    "encrypted BTHome advert from {id}, which has no bind key (unknown, pending or not provisioned)"
                );
                self.reject(&mut out, Some(id), Cause::NoKey, d, now);
                return out;
            };
            let opened = match crypto::open(key.expose(), &a.mac, frame.info, frame.body) {
                Ok(o) => o,
                Err(CryptoError::BadMic) => {
                    let d = format!(
                        "encrypted BTHome advert from {id} (counter {}) does not verify: wrong key or tampered",
                        crypto::claimed_counter(frame.body).unwrap_or(0)
                    );
                    self.reject(&mut out, Some(id), Cause::BadMic, d, now);
                    return out;
                }
                Err(e @ CryptoError::KeyLength(_)) => {
                    let d = format!("{id}: {e}");
                    self.reject(&mut out, Some(id), Cause::BadKey, d, now);
                    return out;
                }
                Err(e @ CryptoError::TooShort(_)) => {
                    let d = format!("{id}: {e}");
                    self.reject(
                        &mut out,
                        Some(id),
                        Cause::Malformed(BthomeError::EncryptedTooShort(frame.body.len())),
                        d,
                        now,
                    );
                    return out;
                }
            };
            let Some(t) = self.devices.get_mut(&a.mac) else {
                return out;
            };
            // the counter belongs to the key: a device re-provisioned with a new bind key (after a
            // factory reset, say) starts a new counter; the old key's adverts no longer verify
            let kcv = crypto::key_check(key.expose()).unwrap_or_default();
            let last = match t.counter {
                Some((c, k)) if k == kcv => Some(c),
                Some(_) => None,
                None => match self.state.get(&counter_key(&id)) {
                    Ok(v) => v.and_then(|v| stored_counter(&v, &kcv)),
                    Err(e) => {
                        let d = format!("{id}: counter unreadable: {e}");
                        self.reject(&mut out, Some(id), Cause::StateError, d, now);
                        return out;
                    }
                },
            };
            if let Some(last) = last
                && opened.counter <= last
            {
                let cause = counter_cause(opened.counter, last);
                let why = match cause {
                    Cause::CounterRestart => {
                        "the counter went back near its start (a reset device, or its first adverts replayed); refused until the device is re-provisioned with a new bind key"
                    }
                    _ => "a counter already used (an advert sent again, or reordered)",
                };
                let d = format!(
                    "encrypted BTHome advert from {id} with counter {} after {last}: {why}",
                    opened.counter
                );
                if let Some(t) = self.devices.get_mut(&a.mac) {
                    t.counter = Some((last, kcv));
                }
                self.reject(&mut out, Some(id), cause, d, now);
                return out;
            }
            // persisted before anything is published: a restart cannot accept it again
            let mut record = opened.counter.to_le_bytes().to_vec();
            record.extend_from_slice(&kcv);
            if let Err(e) = self.state.put(&counter_key(&id), &record) {
                let d = format!("{id}: counter not persisted: {e}");
                self.reject(&mut out, Some(id), Cause::StateError, d, now);
                return out;
            }
            if let Some(t) = self.devices.get_mut(&a.mac) {
                t.counter = Some((opened.counter, kcv));
                t.last_hash = Some(h);
                t.last_at = Some(now);
            }
            match bthome::parse_objects(&opened.objects) {
                Ok(p) => (p, Assurance::SharedKey, true),
                Err(e) => {
                    let d = format!("decrypted BTHome advert from {id}: {e}");
                    self.reject(&mut out, Some(id), Cause::Malformed(e), d, now);
                    return out;
                }
            }
        } else {
            if key.is_some() {
                let d = format!(
                    "plain BTHome advert from {id}, which is provisioned with a bind key: a spoof or a downgrade"
                );
                self.reject(&mut out, Some(id), Cause::Downgrade, d, now);
                return out;
            }
            let parsed = match bthome::parse_objects(frame.body) {
                Ok(p) => p,
                Err(e) => {
                    let d = format!("BTHome advert from {id}: {e}");
                    self.reject(&mut out, Some(id), Cause::Malformed(e), d, now);
                    return out;
                }
            };
            let Some(t) = self.devices.get_mut(&a.mac) else {
                return out;
            };
            let dup = match parsed.packet_id {
                Some(p) => t.last_packet_id == Some(p),
                None => {
                    t.last_hash == Some(h)
                        && t.last_at
                            .is_some_and(|at| now.saturating_duration_since(at) < PLAIN_DEDUP)
                }
            };
            if dup {
                self.stats.duplicates += 1;
                return out;
            }
            t.last_packet_id = parsed.packet_id;
            t.last_hash = Some(h);
            t.last_at = Some(now);
            (parsed, Assurance::None, false)
        };

        // 5. objects → message
        if let Some(u) = objects.unknown_object {
            self.stats.unknown_objects += 1;
            if objects.objects.is_empty() {
                let d = format!("BTHome advert from {id}: unknown object id 0x{u:02x}");
                self.reject(&mut out, Some(id), Cause::UnknownObject, d, now);
                return out;
            }
        }
        if objects.objects.is_empty() {
            return out;
        }
        out.push(AdapterEvent::Uplink(message(
            id, &objects, assurance, fresh, a.rssi, sd,
        )));
        self.stats.published += 1;
        out
    }
}

fn message(
    id: DeviceId,
    p: &Parsed,
    assurance: Assurance,
    fresh: bool,
    rssi: Option<i16>,
    raw: &[u8],
) -> Message {
    let mut m = Message::telemetry(id, p.points());
    if p.objects.iter().any(|o| matches!(o.id, 0x3a..=0x3c)) {
        m.kind = Kind::Event;
    }
    m.assurance = assurance;
    m.fresh = fresh;
    m.link = LinkMeta {
        rssi: rssi.map(f32::from),
        ..LinkMeta::default()
    };
    m.raw = raw.to_vec();
    m
}

fn announcement(id: &DeviceId, a: &Advert) -> Announcement {
    let mut details = vec![("address".to_owned(), a.address.as_str().to_owned())];
    if let Some(n) = &a.name {
        details.push(("name".into(), n.chars().take(64).collect()));
    }
    let mut firmware = None;
    if let Some(sd) = &a.bthome
        && let Ok(f) = bthome::frame(sd)
    {
        details.push((
            "bthome".into(),
            format!(
                "v{}{}{}",
                f.info.version(),
                if f.info.encrypted() {
                    ", encrypted"
                } else {
                    ", plain"
                },
                if f.info.trigger_based() {
                    ", trigger-based"
                } else {
                    ""
                }
            ),
        ));
        if !f.info.encrypted()
            && let Ok(p) = bthome::parse_objects(f.body)
        {
            if let Some(t) = p.device_type_id {
                details.push(("device_type_id".into(), format!("0x{t:04x}")));
            }
            firmware = p.firmware;
        }
    }
    if let Some(c) = a.company {
        details.push(("company_id".into(), format!("0x{c:04x}")));
    }
    if let Some(r) = a.rssi {
        details.push(("rssi".into(), r.to_string()));
    }
    Announcement {
        device: Some(id.clone()),
        manufacturer: a.company.map(|c| format!("0x{c:04x}")),
        model: a.name.as_ref().map(|n| n.chars().take(64).collect()),
        firmware,
        serial: None,
        details,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::bthome::DeviceInfo;
    use warden_core::testing::{MemoryState, StaticCredentials};
    use warden_core::{Point, Value};

    const KEY: [u8; 16] = [0x5a; 16];
    const ENC: [u8; 6] = [0xc4, 0x7c, 0x8d, 0x6a, 0x01, 0x02];
    const PLAIN: [u8; 6] = [0xc4, 0x7c, 0x8d, 0x6a, 0x01, 0x03];
    const OBJ: [u8; 8] = [0x01, 0x64, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13];

    fn engine_with(state: Arc<MemoryState>, cfg: &crate::Config) -> Engine {
        let creds = StaticCredentials::default().with(&device_id(&ENC).unwrap(), BINDKEY, &KEY);
        Engine::new(cfg, state, Arc::new(creds))
    }

    fn engine() -> (Engine, Arc<MemoryState>) {
        let st = Arc::new(MemoryState::default());
        (engine_with(st.clone(), &crate::Config::default()), st)
    }

    fn enc_sd(counter: u32, objects: &[u8]) -> Vec<u8> {
        let mut sd = vec![0x41];
        sd.extend(crypto::seal(&KEY, &ENC, DeviceInfo(0x41), counter, objects));
        sd
    }

    fn adv(mac: [u8; 6], sd: Vec<u8>) -> Advert {
        Advert {
            mac,
            address: AddressKind::RandomStatic,
            name: Some("BTHome sensor".into()),
            rssi: Some(-60),
            bthome: Some(sd),
            company: None,
        }
    }

    fn uplinks(ev: &[AdapterEvent]) -> Vec<&Message> {
        ev.iter()
            .filter_map(|e| match e {
                AdapterEvent::Uplink(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn causes(ev: &[AdapterEvent]) -> Vec<&'static str> {
        ev.iter()
            .filter_map(|e| match e {
                AdapterEvent::Rejected(r) => Some(r.cause),
                _ => None,
            })
            .collect()
    }

    fn point<'a>(m: &'a Message, n: &str) -> &'a Point {
        m.points.iter().find(|p| p.name == n).unwrap()
    }

    #[test]
    fn a_verified_encrypted_advert_is_shared_key_and_fresh() {
        let (mut e, st) = engine();
        let t = Instant::now();
        let ev = e.advert(&adv(ENC, enc_sd(5, &OBJ)), t);
        assert!(matches!(ev[0], AdapterEvent::Announce(_)), "{ev:?}");
        let m = uplinks(&ev);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].assurance, Assurance::SharedKey);
        assert!(m[0].fresh);
        assert_eq!(point(m[0], "temperature").value, Value::Float(25.06));
        assert_eq!(m[0].link.rssi, Some(-60.0));
        // the counter is on record before the message goes out
        let rec = st.get("counter/c47c8d6a0102").unwrap().unwrap();
        assert_eq!(rec[..4], 5u32.to_le_bytes());
        assert_eq!(rec[4..], crypto::key_check(&KEY).unwrap());
    }

    #[test]
    fn a_plain_advert_is_assurance_none() {
        let (mut e, _) = engine();
        let mut sd = vec![0x40];
        sd.extend(OBJ);
        let ev = e.advert(&adv(PLAIN, sd), Instant::now());
        let m = uplinks(&ev);
        assert_eq!(m[0].assurance, Assurance::None);
        assert!(!m[0].fresh);
        assert_eq!(point(m[0], "battery").value, Value::Int(100));
    }

    /// One named row per counter rule: (name, counters sent before, counter sent, expected cause).
    #[test]
    fn counter_rules() {
        let rows: &[(&str, &[u32], u32, Option<&str>)] = &[
            ("first counter accepted", &[], 0x0011_2233, None),
            ("higher counter accepted", &[10], 11, None),
            ("a jump forward accepted", &[10], 1_000_000, None),
            (
                "same counter, other contents: replay",
                &[10],
                10,
                Some("replay"),
            ),
            ("older counter: replay", &[10, 11], 10, Some("replay")),
            (
                "back to 0: restart refused",
                &[0x0011_2234],
                0,
                Some("counter-restart"),
            ),
            (
                "back near the start from far above: restart",
                &[500],
                1,
                Some("counter-restart"),
            ),
            (
                "3 after 5000: restart, not replay",
                &[5000],
                3,
                Some("counter-restart"),
            ),
            (
                "a recently accepted counter: replay",
                &[4990, 5000],
                4990,
                Some("replay"),
            ),
            ("just below the last: replay", &[5000], 4999, Some("replay")),
            (
                "far below but not near the start: replay",
                &[5000],
                2000,
                Some("replay"),
            ),
            (
                "low but within the recent window: replay",
                &[100],
                3,
                Some("replay"),
            ),
            (
                "255 after 512 (257 below, near the start): restart",
                &[512],
                255,
                Some("counter-restart"),
            ),
            (
                "256 after 10000 (not near the start): replay",
                &[10_000],
                256,
                Some("replay"),
            ),
            ("0 again after 0: replay", &[0], 0, Some("replay")),
        ];
        for (name, before, ctr, want) in rows {
            let (mut e, _) = engine();
            let t = Instant::now();
            for (i, c) in before.iter().enumerate() {
                let ev = e.advert(&adv(ENC, enc_sd(*c, &OBJ[..i % 2 * 3 + 2])), t);
                assert_eq!(uplinks(&ev).len(), 1, "{name}: setup {c}");
            }
            // other contents than any earlier advert, so it is not a radio duplicate
            let ev = e.advert(&adv(ENC, enc_sd(*ctr, &[0x02, 0x00, 0x01])), t);
            match want {
                None => {
                    assert_eq!(uplinks(&ev).len(), 1, "{name}: {ev:?}");
                    assert!(causes(&ev).is_empty(), "{name}");
                }
                Some(c) => {
                    assert!(uplinks(&ev).is_empty(), "{name}: published");
                    assert_eq!(causes(&ev), [*c], "{name}");
                }
            }
        }
    }

    #[test]
    fn the_counter_survives_a_restart_of_the_engine() {
        let st = Arc::new(MemoryState::default());
        let cfg = crate::Config::default();
        let mut e = engine_with(st.clone(), &cfg);
        let old = enc_sd(41, &OBJ);
        assert_eq!(
            uplinks(&e.advert(&adv(ENC, old.clone()), Instant::now())).len(),
            1
        );
        assert_eq!(
            uplinks(&e.advert(&adv(ENC, enc_sd(42, &OBJ)), Instant::now())).len(),
            1
        );
        let mut e = engine_with(st, &cfg);
        let ev = e.advert(&adv(ENC, old), Instant::now());
        assert_eq!(causes(&ev), ["replay"]);
        let ev = e.advert(&adv(ENC, enc_sd(42, &OBJ)), Instant::now());
        assert_eq!(
            causes(&ev),
            ["replay"],
            "the last advert replayed into a fresh engine"
        );
        assert_eq!(
            uplinks(&e.advert(&adv(ENC, enc_sd(43, &OBJ)), Instant::now())).len(),
            1
        );
    }

    #[test]
    fn the_restart_rule_is_the_same_after_an_engine_restart() {
        let st = Arc::new(MemoryState::default());
        let cfg = crate::Config::default();
        let mut e = engine_with(st.clone(), &cfg);
        let t = Instant::now();
        let recent = enc_sd(4_999, &OBJ);
        assert_eq!(uplinks(&e.advert(&adv(ENC, recent.clone()), t)).len(), 1);
        assert_eq!(
            uplinks(&e.advert(&adv(ENC, enc_sd(5_000, &OBJ)), t)).len(),
            1
        );
        // only the last counter is kept: the rule reads it from the store after a restart
        let mut e = engine_with(st, &cfg);
        assert_eq!(causes(&e.advert(&adv(ENC, recent), t)), ["replay"]);
        let ev = e.advert(&adv(ENC, enc_sd(3, &[0x02, 0x00, 0x01])), t);
        assert_eq!(causes(&ev), ["counter-restart"]);
        assert!(uplinks(&ev).is_empty());
        let reason = ev
            .iter()
            .find_map(|ev| match ev {
                AdapterEvent::Rejected(r) => Some(r.detail.clone()),
                _ => None,
            })
            .unwrap();
        assert!(reason.contains("counter 3 after 5000"), "{reason}");
        assert!(reason.contains("near its start"), "{reason}");
    }

    #[test]
    fn counter_causes_at_the_edges() {
        assert_eq!(counter_cause(0, 1), Cause::CounterRestart);
        assert_eq!(counter_cause(0, 0), Cause::Replay);
        assert_eq!(counter_cause(u32::MAX, u32::MAX), Cause::Replay);
        assert_eq!(counter_cause(255, u32::MAX), Cause::CounterRestart);
        assert_eq!(counter_cause(1, 1 + RECENT_COUNTERS), Cause::Replay);
        assert_eq!(counter_cause(1, 2 + RECENT_COUNTERS), Cause::CounterRestart);
        assert_eq!(counter_cause(RESTART_BELOW, u32::MAX), Cause::Replay);
    }

    #[test]
    fn a_new_bind_key_starts_a_new_counter() {
        let st = Arc::new(MemoryState::default());
        let mut e = engine_with(st.clone(), &crate::Config::default());
        let t = Instant::now();
        assert_eq!(uplinks(&e.advert(&adv(ENC, enc_sd(500, &OBJ)), t)).len(), 1);
        assert_eq!(
            causes(&e.advert(&adv(ENC, enc_sd(0, &[0x01, 0x01])), t)),
            ["counter-restart"]
        );
        // the operator re-provisions the device with a new key (state kept, engine restarted)
        let new_key = [0x77u8; 16];
        let creds = StaticCredentials::default().with(&device_id(&ENC).unwrap(), BINDKEY, &new_key);
        let mut e = Engine::new(&crate::Config::default(), st, Arc::new(creds));
        let sealed = |ctr: u32, k: &[u8; 16]| {
            let mut sd = vec![0x41];
            sd.extend(crypto::seal(k, &ENC, DeviceInfo(0x41), ctr, &OBJ));
            adv(ENC, sd)
        };
        assert_eq!(
            uplinks(&e.advert(&sealed(0, &new_key), t)).len(),
            1,
            "new key, counter from 0"
        );
        assert_eq!(
            causes(&e.advert(&sealed(501, &KEY), t)),
            ["bad-mic"],
            "the old key is dead"
        );
        assert_eq!(
            causes(&e.advert(&sealed(0, &new_key), t)).len(),
            0,
            "a radio repeat"
        );
        let mut again = sealed(0, &new_key);
        if let Some(sd) = again.bthome.as_mut() {
            // same counter under the new key, other ciphertext (other objects)
            *sd = {
                let mut v = vec![0x41];
                v.extend(crypto::seal(
                    &new_key,
                    &ENC,
                    DeviceInfo(0x41),
                    0,
                    &[0x01, 0x02],
                ));
                v
            };
        }
        assert_eq!(causes(&e.advert(&again, t)), ["replay"]);
    }

    #[test]
    fn radio_repeats_are_duplicates_not_replays() {
        let (mut e, _) = engine();
        let t = Instant::now();
        let sd = enc_sd(7, &OBJ);
        assert_eq!(uplinks(&e.advert(&adv(ENC, sd.clone()), t)).len(), 1);
        for _ in 0..5 {
            let ev = e.advert(&adv(ENC, sd.clone()), t);
            assert!(ev.is_empty(), "{ev:?}");
        }
        assert_eq!(e.stats.duplicates, 5);
        // plain: the same packet id is a duplicate, a new one is not
        let plain = |pid: u8| {
            let mut sd = vec![0x40, 0x00, pid];
            sd.extend(OBJ);
            adv(PLAIN, sd)
        };
        assert_eq!(uplinks(&e.advert(&plain(1), t)).len(), 1);
        assert!(uplinks(&e.advert(&plain(1), t)).is_empty());
        assert_eq!(uplinks(&e.advert(&plain(2), t)).len(), 1);
    }

    #[test]
    fn forgeries_are_refused_with_their_cause() {
        let (mut e, _) = engine();
        let t = Instant::now();
        // wrong key
        let mut sd = vec![0x41];
        sd.extend(crypto::seal(&[1; 16], &ENC, DeviceInfo(0x41), 9, &OBJ));
        let ev = e.advert(&adv(ENC, sd), t);
        assert_eq!(causes(&ev), ["bad-mic"]);
        assert!(uplinks(&ev).is_empty());
        // a plain advert spoofing the encrypted device's MAC
        let mut sd = vec![0x40];
        sd.extend(OBJ);
        let ev = e.advert(&adv(ENC, sd.clone()), t);
        assert_eq!(causes(&ev), ["downgrade"]);
        // an encrypted advert from a device without a key (the plain one)
        let mut enc_other = vec![0x41];
        enc_other.extend(crypto::seal(&KEY, &PLAIN, DeviceInfo(0x41), 1, &OBJ));
        let ev = e.advert(&adv(PLAIN, enc_other), t);
        assert_eq!(causes(&ev), ["no-key"]);
        assert!(uplinks(&ev).is_empty());
        // a MAC inside the advert that is not the sender's
        let ev = e.advert(&adv(PLAIN, vec![0x42, 1, 2, 3, 4, 5, 6, 0x01, 0x64]), t);
        assert_eq!(causes(&ev), ["mac-mismatch"]);
        // positive control: the right key still goes through
        assert_eq!(uplinks(&e.advert(&adv(ENC, enc_sd(10, &OBJ)), t)).len(), 1);
    }

    #[test]
    fn malformed_adverts_have_typed_causes() {
        let (mut e, _) = engine();
        let t = Instant::now();
        let cases: &[(&[u8], &str)] = &[
            (&[], "truncated"),
            (&[0x40, 0x02, 0xca], "truncated"),
            (&[0x20, 0x01, 0x64], "bad-version"),
            (&[0x40, 0x30, 0x01], "unknown-object"),
            (&[0x41, 1, 2, 3], "truncated"),
        ];
        for (i, (sd, cause)) in cases.iter().enumerate() {
            let mut mac = PLAIN;
            mac[5] = i as u8 + 0x10;
            let ev = e.advert(&adv(mac, sd.to_vec()), t);
            assert_eq!(causes(&ev), [*cause], "{sd:02x?}");
            assert!(uplinks(&ev).is_empty());
        }
        let ev = e.advert(&adv(PLAIN, vec![0x40; 300]), t);
        assert_eq!(causes(&ev), ["oversized"]);
        // an unknown id after a good object: the good one is kept and the stop counted
        let ev = e.advert(&adv([9; 6], vec![0x40, 0x01, 0x50, 0x30, 0x00]), t);
        assert_eq!(uplinks(&ev).len(), 1);
        assert_eq!(e.stats.unknown_objects, 2);
    }

    #[test]
    fn announced_once_with_what_the_advert_tells() {
        let (mut e, _) = engine();
        let t = Instant::now();
        let mut a = adv(PLAIN, vec![0x40, 0x00, 0x01, 0x01, 0x64, 0xf0, 0x01, 0x00]);
        a.company = Some(0x0969);
        a.address = AddressKind::random(&[0x54, 0, 0, 0, 0, 0]);
        let ev = e.advert(&a, t);
        let ann: Vec<&Announcement> = ev
            .iter()
            .filter_map(|e| match e {
                AdapterEvent::Announce(x) => Some(x),
                _ => None,
            })
            .collect();
        assert_eq!(ann.len(), 1);
        let d: HashMap<&str, &str> = ann[0]
            .details
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(d["name"], "BTHome sensor");
        assert_eq!(d["company_id"], "0x0969");
        assert_eq!(d["device_type_id"], "0x0001");
        assert_eq!(d["bthome"], "v2, plain");
        assert_eq!(d["address"], "random resolvable (not a stable identity)");
        for pid in 2..50u8 {
            a.bthome = Some(vec![0x40, 0x00, pid, 0x01, 0x64]);
            let ev = e.advert(&a, t);
            assert!(!ev.iter().any(|e| matches!(e, AdapterEvent::Announce(_))));
        }
        assert_eq!(e.stats.announced, 1);
    }

    #[test]
    fn a_flood_of_random_macs_is_bounded() {
        let cfg = crate::Config {
            max_devices: 500,
            new_devices_per_minute: 100,
            ..crate::Config::default()
        };
        let mut e = engine_with(Arc::new(MemoryState::default()), &cfg);
        let t0 = Instant::now();
        let mut audited = 0;
        let mut announced = 0;
        let mut seed: u64 = 0x1234_5678;
        // 5000 random advertisers over 60 simulated seconds
        for i in 0..5_000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = seed.to_le_bytes();
            let mac = [b[0], b[1], b[2], b[3], b[4], b[5]];
            let now = t0 + Duration::from_millis(i * 12);
            let ev = e.advert(&adv(mac, vec![0x40, 0x01, 0x64]), now);
            audited += causes(&ev).len();
            announced += ev
                .iter()
                .filter(|e| matches!(e, AdapterEvent::Announce(_)))
                .count();
            assert!(e.tracked() <= 500);
        }
        // the budget: 100 at once plus 100 per minute refilled over the minute
        assert!((100..=201).contains(&announced), "{announced}");
        assert!(e.stats.flood_dropped >= 4_700, "{:?}", e.stats);
        // at most REJECTIONS_PER_WINDOW records per cause per 10 s window (7 windows)
        assert!(audited <= 7 * REJECTIONS_PER_WINDOW as usize, "{audited}");
        // a provisioned device still gets through during the flood
        let ev = e.advert(&adv(ENC, enc_sd(1, &OBJ)), t0 + Duration::from_secs(60));
        assert_eq!(uplinks(&ev).len(), 1);
    }

    #[test]
    fn macs_and_address_kinds() {
        assert_eq!(
            parse_mac("54:48:E6:8f:80:a5"),
            Some([0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5])
        );
        assert_eq!(parse_mac("54:48:E6:8f:80"), None);
        assert_eq!(parse_mac("54:48:E6:8f:80:a5:00"), None);
        assert_eq!(parse_mac("5448E68f80a5"), None);
        assert_eq!(
            device_id(&[0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5])
                .unwrap()
                .to_string(),
            "ble:5448e68f80a5"
        );
        assert!(!AddressKind::random(&[0x54, 0, 0, 0, 0, 0]).stable());
        assert!(!AddressKind::random(&[0x14, 0, 0, 0, 0, 0]).stable());
        assert!(AddressKind::random(&[0xd4, 0, 0, 0, 0, 0]).stable());
    }
}

#[cfg(test)]
mod props {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;
    use warden_core::testing::{MemoryState, StaticCredentials};

    proptest! {
        #[test]
        fn arbitrary_adverts_never_panic(mac in any::<[u8; 6]>(), sd in proptest::collection::vec(any::<u8>(), 0..300),
                                         keyed in any::<bool>()) {
            let mut creds = StaticCredentials::default();
            if keyed {
                creds = creds.with(&device_id(&mac).unwrap(), BINDKEY, &[7; 16]);
            }
            let mut e = Engine::new(&crate::Config::default(), Arc::new(MemoryState::default()), Arc::new(creds));
            let a = Advert { mac, bthome: Some(sd), ..Advert::default() };
            let ev = e.advert(&a, Instant::now());
            prop_assert!(ev.len() <= 2);
        }
    }
}
