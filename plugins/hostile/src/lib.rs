//! # hostile — a plugin that misbehaves on purpose
//!
//! Not an example: a test guest for the gateway's plugin host. It checks that fuel, epoch
//! deadlines, memory limits, trap handling and host-call limits hold, and that other devices keep
//! flowing while one plugin instance is being restarted.
//!
//! ## Config
//!
//! ```json
//! {"mode": "loop", "targets": ["modbus:tcp-1-u9"], "iterations": 1000000}
//! ```
//!
//! - `mode` (required), what `decide` does for a target device:
//!   - `loop`: spins forever (ends only by fuel or the epoch deadline).
//!   - `grow`: allocates another `grow_bytes` (default 1 MiB), touches and keeps it, on every
//!     decision, until an allocation fails (the instance then traps).
//!   - `recurse`: recurses without bound (stack exhaustion traps).
//!   - `huge-alloc`: allocates 1 GiB in one go and touches it.
//!   - `unreachable`: panics (a trap).
//!   - `kv-storm`: calls `kv_set` in a tight loop with ever new keys, ignoring errors.
//!   - `slow`: legal work: `iterations` (default 1 000 000) rounds of arithmetic, then allows
//!     (about 16 units of wasmtime fuel per iteration).
//!   - `ok`: allows.
//!   - `deny`: denies with `reason` verbatim (control characters, escape sequences, forged
//!     audit lines: the host must strip them before the text goes anywhere).
//! - `targets` (default: every device): the device ids that get the behaviour; every other
//!   device is allowed at once.
//! - `iterations`, `grow_bytes`, `reason`: see `slow`, `grow` and `deny`.
//! - `init_iterations` (default 0): rounds of the same arithmetic `init` does before it returns,
//!   so that every (re)instantiation is slow.
//!
//! Verdicts: `allow` for non-targets and for `slow`/`ok` targets; the other modes never return.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use core::hint::black_box;

use serde::Deserialize;
use warden_sdk::prelude::*;

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Loop,
    Grow,
    Recurse,
    HugeAlloc,
    Unreachable,
    KvStorm,
    Slow,
    Ok,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default = "default_iterations")]
    iterations: u64,
    #[serde(default = "default_grow_bytes")]
    grow_bytes: usize,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    init_iterations: u64,
}

fn default_iterations() -> u64 {
    1_000_000
}

fn default_grow_bytes() -> usize {
    1 << 20
}

pub struct Hostile {
    mode: Mode,
    targets: Option<Vec<String>>,
    iterations: u64,
    grow_bytes: usize,
    reason: String,
    /// What `grow` keeps.
    hoard: Vec<Vec<u8>>,
    decisions: u64,
}

/// Arithmetic the optimizer cannot remove or shortcut.
fn burn(iterations: u64) -> u64 {
    let mut x = black_box(0x9e37_79b9_7f4a_7c15_u64);
    for i in 0..iterations {
        x = black_box(x.rotate_left(7) ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    }
    x
}

/// Recursion the optimizer cannot turn into a loop: each frame keeps a buffer alive across the
/// call and uses it afterwards.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(frame.iter().sum::<u64>())
}

/// Allocates `bytes` and writes every page, so the memory is really used.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for b in v.iter_mut().step_by(4096) {
        *b = 1;
    }
    black_box(v)
}

impl Hostile {
    fn is_target(&self, req: &Request) -> bool {
        match &self.targets {
            None => true,
            Some(t) => {
                let id = req.device_id();
                t.contains(&id)
            }
        }
    }
}

impl Policy for Hostile {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = config::parse(config)?;
        black_box(burn(c.init_iterations));
        Ok(Self {
            mode: c.mode,
            targets: c.targets,
            iterations: c.iterations,
            grow_bytes: c.grow_bytes,
            reason: c.reason,
            hoard: Vec::new(),
            decisions: 0,
        })
    }

    fn decide(&mut self, _h: &Header, req: &Request) -> Verdict {
        self.decisions += 1;
        if !self.is_target(req) {
            return Verdict::Allow;
        }
        match self.mode {
            Mode::Ok => Verdict::Allow,
            Mode::Deny => Verdict::deny(self.reason.clone()),
            Mode::Slow => {
                black_box(burn(self.iterations));
                Verdict::Allow
            }
            Mode::Loop => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Mode::Grow => {
                let chunk = touched(self.grow_bytes);
                self.hoard.push(chunk);
                Verdict::Allow
            }
            Mode::Recurse => {
                black_box(recurse(0));
                Verdict::Allow
            }
            Mode::HugeAlloc => {
                let big = touched(1 << 30);
                black_box(&big);
                Verdict::Allow
            }
            Mode::Unreachable => panic!("hostile plugin: unreachable on purpose"),
            Mode::KvStorm => {
                let value = [0x5a_u8; 64];
                let mut i = 0u64;
                loop {
                    let key = format!("storm-{i}");
                    let _ = black_box(kv_set(&key, &value));
                    i = i.wrapping_add(1);
                }
            }
        }
    }
}

export_policy!(Hostile);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use warden_sdk::testing::{self, RequestBuilder};

    // Only the modes that return can run natively; the others are exercised against the real host.

    #[test]
    fn non_targets_are_allowed_without_the_behaviour() {
        let mut p: Hostile =
            testing::init(r#"{"mode":"unreachable","targets":["modbus:bad"]}"#).unwrap();
        let m = RequestBuilder::uplink("modbus:good").point("x", 1).build();
        assert!(testing::decide(&mut p, &m).is_allow());
        assert_eq!(p.decisions, 1);
    }

    #[test]
    #[should_panic(expected = "unreachable on purpose")]
    fn unreachable_panics_for_targets() {
        let mut p: Hostile =
            testing::init(r#"{"mode":"unreachable","targets":["modbus:bad"]}"#).unwrap();
        testing::decide(&mut p, &RequestBuilder::uplink("modbus:bad").build());
    }

    #[test]
    fn slow_and_ok_allow() {
        for mode in ["slow", "ok"] {
            let mut p: Hostile =
                testing::init(&format!(r#"{{"mode":"{mode}","iterations":1000}}"#)).unwrap();
            assert!(testing::decide(&mut p, &RequestBuilder::uplink("a:b").build()).is_allow());
        }
        assert_ne!(burn(10), burn(11));
    }

    #[test]
    fn deny_returns_the_reason_verbatim() {
        let mut p: Hostile = testing::init(r#"{"mode":"deny","reason":"a\nb\u001b[2K"}"#).unwrap();
        let v = testing::decide(&mut p, &RequestBuilder::uplink("a:b").build());
        assert_eq!(v, Verdict::deny("a\nb\x1b[2K"));
    }

    #[test]
    fn grow_keeps_what_it_allocates() {
        let mut p: Hostile = testing::init(r#"{"mode":"grow","grow_bytes":65536}"#).unwrap();
        for _ in 0..3 {
            assert!(testing::decide(&mut p, &RequestBuilder::uplink("a:b").build()).is_allow());
        }
        assert_eq!(p.hoard.iter().map(Vec::len).sum::<usize>(), 3 * 65536);
    }

    #[test]
    fn unknown_modes_are_rejected() {
        let e = testing::init::<Hostile>(r#"{"mode":"nice"}"#)
            .err()
            .unwrap();
        assert!(e.contains("unknown variant `nice`"), "{e}");
    }
}
