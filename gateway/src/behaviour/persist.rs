//! Baselines in the store: a compact binary form (version byte, little-endian fields), a table
//! `baselines(key, state, updated_at)`, and a writer thread that takes batches of changed baselines
//! from the pipeline over a bounded channel, so no SQLite call happens on the pipeline thread.
//! A full channel drops the batch and counts it; its baselines stay dirty and go with the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use rusqlite::params;

use super::baseline::{Baseline, MAX_NAMES, MAX_POINTS, Name, PointStats, REPLAY_RING};
use super::robust::Robust;
use crate::store::{Store, StoreError};

const VERSION: u8 = 2;
/// Largest encoded baseline accepted when loading.
const MAX_ENCODED: usize = 4096;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS baselines(
    key TEXT PRIMARY KEY, state BLOB NOT NULL, updated_at INTEGER NOT NULL)";

struct W(Vec<u8>);

impl W {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn rob(&mut self, r: &Robust) {
        for v in [r.med, r.mad, r.lo, r.hi] {
            self.f32(v);
        }
        self.u32(r.n);
    }
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    /// A finite f32 (a stored NaN or infinity makes the record invalid).
    fn f32(&mut self) -> Option<f32> {
        self.take()
            .map(f32::from_le_bytes)
            .filter(|v| v.is_finite())
    }
    fn rob(&mut self) -> Option<Robust> {
        Some(Robust {
            med: self.f32()?,
            mad: self.f32()?,
            lo: self.f32()?,
            hi: self.f32()?,
            n: self.u32()?,
        })
    }
}

pub fn encode(b: &Baseline) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(640));
    w.0.push(VERSION);
    w.0.push(u8::from(b.seeded));
    w.0.push(b.best_assurance);
    for v in [b.first_ms, b.last_ms, b.messages, b.minute] {
        w.u64(v);
    }
    w.u32(b.minute_count);
    for r in b.rate {
        w.f32(r);
    }
    for n in b.rate_n {
        w.u16(n);
    }
    for r in [&b.gap, &b.size, &b.rssi, &b.snr] {
        w.rob(r);
    }
    w.0.push(b.points.len().min(MAX_POINTS) as u8);
    for p in b.points.iter().take(MAX_POINTS) {
        w.u32(p.hash);
        w.rob(&p.value);
        w.rob(&p.change);
        w.f32(p.last);
        w.u16(p.run);
        w.u16(p.max_run);
        for i in 0..super::baseline::TOD_BLOCKS {
            w.f32(p.tod.get(i).copied().unwrap_or(0.0));
            w.f32(p.tod_dev.get(i).copied().unwrap_or(0.0));
            w.u16(p.tod_n.get(i).copied().unwrap_or(0));
        }
        w.f32(p.tod_recent);
        w.u16(p.rising);
    }
    w.0.push(b.names.len().min(MAX_NAMES) as u8);
    for n in b.names.iter().take(MAX_NAMES) {
        w.u32(n.hash);
        w.u32(n.hours);
    }
    w.u64(b.cmd_minute);
    w.u32(b.cmd_count);
    w.f32(b.cmd_rate);
    w.u32(b.commands);
    w.f32(b.denials);
    w.u64(b.denials_ms);
    // the replay ring, as an optional trailer (records written before it decode without one)
    let r = &b.replay;
    w.0.push(b'R');
    for h in r.prev {
        w.u32(h);
    }
    w.u16(r.recent);
    w.u16(r.samples);
    w.u16(r.repeats);
    w.0.push(r.shift);
    w.0.push(r.next);
    w.0.push(r.last_hit);
    w.0.push(r.ring.len().min(REPLAY_RING) as u8);
    for f in r.ring.iter().take(REPLAY_RING) {
        w.u32(*f);
    }
    w.0
}

pub fn decode(bytes: &[u8]) -> Option<Baseline> {
    if bytes.len() > MAX_ENCODED {
        return None;
    }
    let mut r = R(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let mut b = Baseline {
        seeded: r.u8()? != 0,
        best_assurance: r.u8()?.min(4),
        first_ms: r.u64()?,
        last_ms: r.u64()?,
        messages: r.u64()?,
        minute: r.u64()?,
        minute_count: r.u32()?,
        ..Baseline::default()
    };
    for slot in &mut b.rate {
        *slot = r.f32()?;
    }
    for slot in &mut b.rate_n {
        *slot = r.u16()?;
    }
    b.gap = r.rob()?;
    b.size = r.rob()?;
    b.rssi = r.rob()?;
    b.snr = r.rob()?;
    let np = usize::from(r.u8()?);
    if np > MAX_POINTS {
        return None;
    }
    for _ in 0..np {
        let mut p = PointStats {
            hash: r.u32()?,
            value: r.rob()?,
            change: r.rob()?,
            last: r.f32()?,
            run: r.u16()?,
            max_run: r.u16()?,
            ..PointStats::default()
        };
        for i in 0..super::baseline::TOD_BLOCKS {
            let (m, d, n) = (r.f32()?, r.f32()?, r.u16()?);
            if let (Some(a), Some(b), Some(c)) =
                (p.tod.get_mut(i), p.tod_dev.get_mut(i), p.tod_n.get_mut(i))
            {
                (*a, *b, *c) = (m, d, n);
            }
        }
        p.tod_recent = r.f32()?;
        p.rising = r.u16()?;
        b.points.push(p);
    }
    let nn = usize::from(r.u8()?);
    if nn > MAX_NAMES {
        return None;
    }
    for _ in 0..nn {
        b.names.push(Name {
            hash: r.u32()?,
            hours: r.u32()?,
        });
    }
    b.cmd_minute = r.u64()?;
    b.cmd_count = r.u32()?;
    b.cmd_rate = r.f32()?;
    b.commands = r.u32()?;
    b.denials = r.f32()?;
    b.denials_ms = r.u64()?;
    if !r.0.is_empty() {
        if r.u8()? != b'R' {
            return None;
        }
        let rp = &mut b.replay;
        rp.prev = [r.u32()?, r.u32()?, r.u32()?];
        rp.recent = r.u16()?;
        rp.samples = r.u16()?;
        rp.repeats = r.u16()?.min(rp.samples);
        rp.shift = r.u8()?.min(10);
        let next = r.u8()?;
        rp.last_hit = r.u8()?;
        let n = usize::from(r.u8()?);
        if n > REPLAY_RING || usize::from(next) >= REPLAY_RING {
            return None;
        }
        rp.next = next;
        for _ in 0..n {
            rp.ring.push(r.u32()?);
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(b)
}

/// Creates the table and reads every stored baseline (`device id` or `model:<M/M>` → baseline).
/// Undecodable rows are skipped and counted.
pub fn load(store: &Store) -> Result<(HashMap<String, Baseline>, usize), StoreError> {
    store.write(|tx, _| {
        tx.execute_batch(TABLE)?;
        Ok(((), Vec::new()))
    })?;
    store.read(|conn, _| {
        let mut st = conn.prepare("SELECT key, state FROM baselines")?;
        let mut rows = st.query([])?;
        let mut out = HashMap::new();
        let mut bad = 0;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let state: Vec<u8> = row.get(1)?;
            match decode(&state) {
                Some(b) => {
                    out.insert(key, b);
                }
                None => bad += 1,
            }
        }
        Ok((out, bad))
    })
}

/// The writer thread and its bounded queue of batches.
/// Changed baselines: (key, encoded state).
pub type Batch = Vec<(String, Vec<u8>)>;

pub struct Writer {
    tx: Option<mpsc::SyncSender<Batch>>,
    handle: Option<JoinHandle<()>>,
    pub dropped: Arc<AtomicU64>,
}

impl Writer {
    pub fn start(store: Store) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<(String, Vec<u8>)>>(4);
        let handle = std::thread::Builder::new()
            .name("baselines".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let n = batch.len() as u64;
                    let now = warden_core::now_ms() as i64;
                    let r = store.write(|tx, _| {
                        let mut st = tx.prepare_cached(
                            "INSERT INTO baselines(key, state, updated_at) VALUES(?1, ?2, ?3)
                             ON CONFLICT(key) DO UPDATE SET state=excluded.state,
                             updated_at=excluded.updated_at",
                        )?;
                        for (k, v) in &batch {
                            st.execute(params![k, v, now])?;
                        }
                        Ok(((), Vec::new()))
                    });
                    if let Err(e) = r {
                        tracing::error!(error = %e, batch = n, "baselines not saved");
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hands a batch to the writer without waiting; false (and counted) when its queue is full.
    pub fn offer(&self, batch: Vec<(String, Vec<u8>)>) -> bool {
        match self.tx.as_ref().map(|t| t.try_send(batch)) {
            Some(Ok(())) => true,
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Hands over the last batch, waiting for room, then waits until everything is written.
    pub fn finish(&mut self, batch: Vec<(String, Vec<u8>)>) {
        if let Some(tx) = self.tx.take() {
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trip_and_hostile_bytes() {
        let mut b = Baseline {
            messages: 7,
            first_ms: 1,
            seeded: true,
            ..Baseline::default()
        };
        b.rate[3] = 2.5;
        b.rate_n[3] = 9;
        b.points.push(PointStats {
            hash: 42,
            last: 1.5,
            ..PointStats::default()
        });
        b.names.push(Name { hash: 9, hours: 3 });
        let e = encode(&b);
        assert_eq!(decode(&e).unwrap(), b);
        // every truncation and any trailing byte is refused, never a panic; the one exception is
        // the cut before the optional replay trailer (a record written before it existed)
        let trailer = e.len() - (1 + 12 + 6 + 4);
        for n in 0..e.len() {
            assert_eq!(decode(&e[..n]).is_some(), n == trailer, "cut at {n}");
        }
        let mut long = e.clone();
        long.push(0);
        assert!(decode(&long).is_none());
        // a NaN where a number belongs is refused
        let mut nan = e.clone();
        let at = 3 + 8 * 4 + 4; // first rate bucket
        nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode(&nan).is_none());
    }
}
