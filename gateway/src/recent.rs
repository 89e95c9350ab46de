//! Recent values: the last value of every point of every device that had an uplink delivered, and
//! a short history of its numeric points, for the dashboard's device page (current values and the
//! history chart) and its live point stream.
//!
//! The pipeline hands each delivered uplink over by moving it into a bounded channel ([`Feed`]):
//! one non-blocking send, no copy, no lock and no wake-up on the message path. A thread of its own
//! drains the channel every [`DRAIN_EVERY`], updates the values under one lock per batch, and, only
//! while a page watches, copies the batch into a broadcast ring for the live stream. When the
//! pipeline outruns the thread (more than [`QUEUE`] uplinks in one interval), the excess is counted
//! and skipped: recent values are a view, never a reason to slow delivery down.
//!
//! Bounds: [`MAX_DEVICES`] devices (the least recently updated eighth is dropped when full),
//! [`MAX_POINTS`] points per device, [`HISTORY`] samples per numeric point (8 bytes each), text and
//! bytes values cut to [`MAX_VALUE_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use warden_core::{DeviceId, Message, Point, Value};

/// Uplinks that may wait for the thread; more in one interval are skipped (and counted).
pub const QUEUE: usize = 2048;
/// How often the thread takes what waits (the live stream's added latency at most).
pub const DRAIN_EVERY: Duration = Duration::from_millis(100);
/// Devices whose values are kept.
pub const MAX_DEVICES: usize = 20_000;
/// Points kept per device; later new names are not kept.
pub const MAX_POINTS: usize = 32;
/// Numeric samples kept per point.
pub const HISTORY: usize = 48;
/// Text and bytes values are cut to this many bytes.
pub const MAX_VALUE_BYTES: usize = 256;
/// Longer point names are not kept.
const MAX_NAME: usize = 128;
/// Live updates a watcher may fall behind by before it is dropped.
pub const LIVE_BUFFER: usize = 256;

/// One sample of a numeric (or boolean) point: seconds since the Unix epoch and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    ts_s: u32,
    v: f32,
}

/// A point's current value and recent numeric history.
#[derive(Debug, Clone, PartialEq)]
pub struct PointValues {
    pub name: String,
    pub value: Value,
    pub unit: Option<String>,
    pub ts: u64,
    history: VecDeque<Sample>,
}

#[derive(Debug, Default)]
struct DeviceValues {
    updated_ms: u64,
    points: Vec<PointValues>,
}

/// A device's points as `GET /api/devices/{id}/points` shows them.
#[derive(Debug, Serialize)]
pub struct PointView {
    pub name: String,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub ts: u64,
    /// `[ms since the epoch, value]`, oldest first.
    pub history: Vec<(u64, f32)>,
}

/// One delivered uplink's points, as the live stream sends them.
#[derive(Debug, Serialize)]
pub struct Update {
    pub device: String,
    pub ts: u64,
    pub points: Vec<Point>,
}

fn numeric(v: &Value) -> Option<f32> {
    match v {
        Value::Float(f) if f.is_finite() => Some(*f as f32),
        Value::Int(i) => Some(*i as f32),
        Value::Bool(b) => Some(f32::from(u8::from(*b))),
        _ => None,
    }
}

/// A value as kept: text and bytes cut to [`MAX_VALUE_BYTES`].
fn bounded(v: &Value) -> Value {
    match v {
        Value::Text(s) if s.len() > MAX_VALUE_BYTES => {
            let mut end = MAX_VALUE_BYTES;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::Text(format!("{}…", s.get(..end).unwrap_or_default()))
        }
        Value::Bytes(b) if b.len() > MAX_VALUE_BYTES => {
            Value::Bytes(b.get(..MAX_VALUE_BYTES).unwrap_or_default().to_vec())
        }
        other => other.clone(),
    }
}

/// The values themselves (one lock, taken once per drained batch and by readers).
#[derive(Default)]
struct Values {
    devices: HashMap<DeviceId, DeviceValues>,
}

impl Values {
    fn absorb(&mut self, m: &Message) {
        if !self.devices.contains_key(&m.device) && self.devices.len() >= MAX_DEVICES {
            self.evict();
        }
        let d = self.devices.entry(m.device.clone()).or_default();
        d.updated_ms = d.updated_ms.max(m.received_ms);
        let ts_s = u32::try_from(m.received_ms / 1000).unwrap_or(u32::MAX);
        for p in &m.points {
            if p.name.len() > MAX_NAME {
                continue;
            }
            let slot = match d.points.iter().position(|x| x.name == p.name) {
                Some(i) => d.points.get_mut(i),
                None if d.points.len() < MAX_POINTS => {
                    d.points.push(PointValues {
                        name: p.name.clone(),
                        value: Value::Bool(false),
                        unit: None,
                        ts: 0,
                        history: VecDeque::new(),
                    });
                    d.points.last_mut()
                }
                None => None,
            };
            let Some(slot) = slot else { continue };
            slot.value = bounded(&p.value);
            if slot.unit != p.unit {
                slot.unit = p.unit.as_ref().map(|u| {
                    let mut u = u.clone();
                    u.truncate(u.floor_char_boundary(32));
                    u
                });
            }
            slot.ts = m.received_ms;
            if let Some(v) = numeric(&p.value) {
                if slot.history.len() >= HISTORY {
                    slot.history.pop_front();
                }
                slot.history.push_back(Sample { ts_s, v });
            }
        }
    }

    /// Drops the least recently updated eighth of the devices.
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.devices.values().map(|d| d.updated_ms).collect();
        let k = ages.len() / 8;
        if ages.is_empty() {
            return;
        }
        let (_, cut, _) = ages.select_nth_unstable(k);
        let cut = *cut;
        let mut left = k.max(1);
        self.devices.retain(|_, d| {
            if left > 0 && d.updated_ms <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

struct Shared {
    values: Mutex<Values>,
    watchers: AtomicUsize,
    live: broadcast::Sender<Arc<Update>>,
    skipped: AtomicU64,
}

/// The reading side: the API's snapshot and live stream.
#[derive(Clone)]
pub struct Recent(Arc<Shared>);

/// The pipeline's side: where delivered uplinks are handed over.
pub struct Feed {
    tx: SyncSender<Message>,
    shared: Arc<Shared>,
}

impl Feed {
    /// Hands a delivered uplink over; never blocks (a full queue skips it and counts).
    pub fn offer(&self, m: Message) {
        if m.points.is_empty() {
            return;
        }
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts a live watcher while it lives.
pub struct Watching(Arc<Shared>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the recent-values thread. It ends when the [`Feed`] is dropped.
pub fn start() -> std::io::Result<(Feed, Recent)> {
    let (tx, rx) = mpsc::sync_channel::<Message>(QUEUE);
    let shared = Arc::new(Shared {
        values: Mutex::new(Values::default()),
        watchers: AtomicUsize::new(0),
        live: broadcast::channel(LIVE_BUFFER).0,
        skipped: AtomicU64::new(0),
    });
    let s = shared.clone();
    std::thread::Builder::new()
        .name("recent-values".into())
        .spawn(move || drain(&rx, &s, DRAIN_EVERY))?;
    Ok((
        Feed {
            tx,
            shared: shared.clone(),
        },
        Recent(shared),
    ))
}

fn drain(rx: &mpsc::Receiver<Message>, s: &Shared, every: Duration) {
    let mut batch: Vec<Message> = Vec::new();
    loop {
        std::thread::sleep(every);
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        absorb_batch(s, &mut batch);
        if gone {
            return;
        }
    }
}

fn absorb_batch(s: &Shared, batch: &mut Vec<Message>) {
    if batch.is_empty() {
        return;
    }
    if let Ok(mut v) = s.values.lock() {
        for m in batch.iter() {
            v.absorb(m);
        }
    }
    let watched = s.watchers.load(Ordering::Relaxed) > 0;
    for m in batch.drain(..) {
        if watched {
            let _ = s.live.send(Arc::new(Update {
                device: m.device.to_string(),
                ts: m.received_ms,
                points: m.points,
            }));
        }
    }
    // a burst must not keep its peak capacity for ever
    if batch.capacity() > QUEUE {
        batch.shrink_to(QUEUE);
    }
}

impl Recent {
    /// A device's points, or `None` when nothing of it was delivered since start.
    pub fn points(&self, device: &DeviceId) -> Option<Vec<PointView>> {
        let v = self.0.values.lock().ok()?;
        let d = v.devices.get(device)?;
        Some(
            d.points
                .iter()
                .map(|p| PointView {
                    name: p.name.clone(),
                    value: p.value.clone(),
                    unit: p.unit.clone(),
                    ts: p.ts,
                    history: p
                        .history
                        .iter()
                        .map(|s| (u64::from(s.ts_s) * 1000, s.v))
                        .collect(),
                })
                .collect(),
        )
    }

    /// Uplinks skipped because the thread fell behind.
    pub fn skipped(&self) -> u64 {
        self.0.skipped.load(Ordering::Relaxed)
    }

    /// Devices with values kept.
    pub fn devices(&self) -> usize {
        self.0.values.lock().map(|v| v.devices.len()).unwrap_or(0)
    }

    /// Subscribes to the live updates; the guard keeps them copied while it lives.
    pub fn watch(&self) -> (Watching, broadcast::Receiver<Arc<Update>>) {
        self.0.watchers.fetch_add(1, Ordering::Relaxed);
        (Watching(self.0.clone()), self.0.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn msg(dev: &str, ts: u64, points: Vec<Point>) -> Message {
        let mut m = Message::telemetry(dev.parse().unwrap(), points);
        m.received_ms = ts;
        m
    }

    fn temp(v: f64) -> Point {
        Point::new("temperature", Value::Float(v))
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            values: Mutex::new(Values::default()),
            watchers: AtomicUsize::new(0),
            live: broadcast::channel(LIVE_BUFFER).0,
            skipped: AtomicU64::new(0),
        })
    }

    #[test]
    fn last_value_and_history_per_point() {
        let s = shared();
        let mut batch: Vec<Message> = (0..(HISTORY as u64 + 5))
            .map(|i| msg("sim:a", 1_000_000 + i * 1000, vec![temp(i as f64)]))
            .collect();
        batch.push(msg(
            "sim:a",
            2_000_000,
            vec![Point::new("state", Value::Text("open".into()))],
        ));
        absorb_batch(&s, &mut batch);
        let r = Recent(s);
        let p = r.points(&"sim:a".parse().unwrap()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "temperature");
        assert_eq!(p[0].value, Value::Float((HISTORY + 4) as f64));
        assert_eq!(p[0].history.len(), HISTORY);
        // the oldest five fell out; oldest first
        assert_eq!(p[0].history[0], (1_005_000, 5.0));
        assert_eq!(p[1].value, Value::Text("open".into()));
        assert!(p[1].history.is_empty());
        assert!(r.points(&"sim:b".parse().unwrap()).is_none());
    }

    #[test]
    fn hostile_values_are_bounded() {
        let s = shared();
        let mut many: Vec<Point> = (0..(MAX_POINTS + 10))
            .map(|i| Point::new(format!("p{i}"), Value::Int(i as i64)))
            .collect();
        many.push(Point::new("x".repeat(MAX_NAME + 1), Value::Int(1)));
        let mut batch = vec![
            msg("sim:a", 1000, many),
            msg(
                "sim:a",
                2000,
                vec![
                    Point::new("p0", Value::Text("é".repeat(MAX_VALUE_BYTES))),
                    Point::new("p1", Value::Bytes(vec![7; 10_000])),
                    Point::new("p2", Value::Float(f64::NAN)),
                ],
            ),
        ];
        absorb_batch(&s, &mut batch);
        let p = Recent(s).points(&"sim:a".parse().unwrap()).unwrap();
        assert_eq!(p.len(), MAX_POINTS);
        let Value::Text(t) = &p[0].value else {
            panic!("{:?}", p[0].value)
        };
        assert!(t.len() <= MAX_VALUE_BYTES + '…'.len_utf8(), "{}", t.len());
        assert_eq!(p[1].value, Value::Bytes(vec![7; MAX_VALUE_BYTES]));
        // NaN is shown as the value but never charted
        assert_eq!(p[2].history.len(), 1);
    }

    #[test]
    fn many_devices_evict_the_least_recently_updated() {
        let mut v = Values::default();
        for i in 0..(MAX_DEVICES + 1) {
            v.absorb(&msg(&format!("sim:d{i}"), 1000 + i as u64, vec![temp(1.0)]));
        }
        assert!(v.devices.len() <= MAX_DEVICES);
        assert!(v.devices.len() >= MAX_DEVICES - MAX_DEVICES / 8);
        // the newest is there, the oldest went
        assert!(
            v.devices
                .contains_key(&format!("sim:d{MAX_DEVICES}").parse().unwrap())
        );
        assert!(!v.devices.contains_key(&"sim:d0".parse().unwrap()));
    }

    #[test]
    fn the_feed_never_blocks_and_counts_what_it_skips() {
        let (tx, rx) = mpsc::sync_channel::<Message>(2);
        let s = shared();
        let f = Feed {
            tx,
            shared: s.clone(),
        };
        for i in 0..5 {
            f.offer(msg("sim:a", i, vec![temp(1.0)]));
        }
        // an uplink without points is not offered at all
        f.offer(msg("sim:a", 9, vec![]));
        assert_eq!(s.skipped.load(Ordering::Relaxed), 3);
        drop(f);
        // the thread takes what waited, then ends because the feed is gone
        drain(&rx, &s, Duration::from_millis(1));
        let r = Recent(s);
        assert_eq!(r.devices(), 1);
        assert_eq!(
            r.points(&"sim:a".parse().unwrap()).unwrap()[0]
                .history
                .len(),
            2
        );
    }

    #[test]
    fn a_full_queue_skips_then_takes_again_once_drained() {
        let (tx, rx) = mpsc::sync_channel::<Message>(2);
        let s = shared();
        let f = Feed {
            tx,
            shared: s.clone(),
        };
        let mut batch = Vec::new();
        // full, skipped, drained, accepted again: three rounds
        for round in 0..3u64 {
            for i in 0..4 {
                f.offer(msg("sim:a", round * 10 + i, vec![temp(i as f64)]));
            }
            batch.extend(rx.try_iter());
            assert_eq!(batch.len(), 2, "round {round}");
            absorb_batch(&s, &mut batch);
            assert_eq!(s.skipped.load(Ordering::Relaxed), 2 * (round + 1));
        }
        let p = Recent(s).points(&"sim:a".parse().unwrap()).unwrap();
        assert_eq!(p[0].history.len(), 6);
        assert_eq!(p[0].ts, 21);
    }

    #[test]
    fn live_updates_are_copied_only_while_watched() {
        let s = shared();
        let r = Recent(s.clone());
        let mut idle = s.live.subscribe();
        absorb_batch(&s, &mut vec![msg("sim:a", 1, vec![temp(1.0)])]);
        assert!(matches!(
            idle.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        let (g, mut rx) = r.watch();
        absorb_batch(&s, &mut vec![msg("sim:a", 2, vec![temp(2.0)])]);
        let u = rx.try_recv().unwrap();
        assert_eq!((u.device.as_str(), u.ts), ("sim:a", 2));
        drop(g);
        assert_eq!(s.watchers.load(Ordering::Relaxed), 0);
    }
}
