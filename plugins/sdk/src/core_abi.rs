//! The wasm side of contract 0.2.0: a core module whose request the host lays out in
//! [`AREA`] before each `decide`, the imports of `warden:policy/host@0.2.0`, and the glue
//! `export_policy!` expands to. The layout is `warden-plugin-abi`, shared with the host.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{RefCell, UnsafeCell};

use warden_plugin_abi::{self as abi, off};

use crate::Policy;
use crate::types::{Assurance, Direction, Header, Kind, Observed, Status, Symbol, Value, Verdict};

#[link(wasm_import_module = "warden:policy/host@0.2.0")]
unsafe extern "C" {
    #[link_name = "intern"]
    pub(crate) fn intern(ptr: *const u8, len: usize) -> u32;
    #[link_name = "symbol-text"]
    pub(crate) fn symbol_text(sym: u32, ptr: *mut u8, cap: usize) -> i32;
    #[link_name = "text"]
    fn text(field: i32, index: u32, ptr: *mut u8, cap: usize) -> i32;
    #[link_name = "point"]
    fn point(index: u32, ptr: *mut u8) -> i32;
    #[link_name = "find-point"]
    fn find_point(sym: u32) -> i32;
    #[link_name = "log"]
    pub(crate) fn log(level: i32, ptr: *const u8, len: usize);
    #[link_name = "now-ms"]
    pub(crate) fn now_ms() -> i64;
    #[link_name = "kv-get"]
    pub(crate) fn kv_get(kptr: *const u8, klen: usize, ptr: *mut u8, cap: usize) -> i64;
    #[link_name = "kv-set"]
    pub(crate) fn kv_set(kptr: *const u8, klen: usize, vptr: *const u8, vlen: usize) -> i32;
    #[link_name = "kv-delete"]
    pub(crate) fn kv_delete(kptr: *const u8, klen: usize);
    #[link_name = "config"]
    fn config(ptr: *mut u8, cap: usize) -> i32;
    #[link_name = "verdict-text"]
    fn verdict_text(ptr: *const u8, len: usize);
}

/// The request area: written by the host before each `decide`, read here.
#[repr(C, align(8))]
pub struct Area(UnsafeCell<[u8; abi::AREA_BYTES]>);

// SAFETY: a core plugin instance runs on one thread (no threads proposal in this build); the host
// writes the area only while no guest code runs.
#[cfg(not(target_feature = "atomics"))]
unsafe impl Sync for Area {}

pub static AREA: Area = Area(UnsafeCell::new([0; abi::AREA_BYTES]));

/// The area's address (the `request-area` export).
#[inline]
pub fn area_ptr() -> *mut u8 {
    AREA.0.get().cast()
}

#[inline]
fn byte(at: usize) -> u8 {
    // SAFETY: `at` is a constant offset inside the area; raw reads, no reference kept across
    // calls, so the host's writes between calls are always seen.
    unsafe { area_ptr().add(at).read() }
}

#[inline]
fn u32_at(at: usize) -> u32 {
    // SAFETY: as `byte`; every u32 field is 4-aligned in an 8-aligned area.
    unsafe { area_ptr().add(at).cast::<u32>().read() }
}

#[inline]
fn u64_at(at: usize) -> u64 {
    // SAFETY: as `byte`; every u64 field is 8-aligned.
    unsafe { area_ptr().add(at).cast::<u64>().read() }
}

/// Reads a host string through a `(ptr, cap) -> len` import, growing the buffer once if needed.
pub(crate) fn fetch(f: impl Fn(*mut u8, usize) -> i64) -> Option<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let len = f(buf.as_mut_ptr(), buf.capacity());
    let len = usize::try_from(len).ok()?;
    if len > buf.capacity() {
        buf.reserve_exact(len);
        let again = usize::try_from(f(buf.as_mut_ptr(), buf.capacity())).ok()?;
        if again != len {
            return None;
        }
    }
    // SAFETY: the host wrote `len` (≤ capacity) bytes at the buffer's start.
    unsafe { buf.set_len(len) };
    Some(buf)
}

fn string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A string field of the request.
pub(crate) fn request_text(field: i32, index: u32) -> Option<String> {
    // SAFETY: the host copies at most `cap` bytes to `ptr`.
    fetch(|p, cap| i64::from(unsafe { text(field, index, p, cap) })).map(string)
}

pub(crate) fn header() -> Header {
    Header {
        direction: if byte(off::DIRECTION) == 1 {
            Direction::Downlink
        } else {
            Direction::Uplink
        },
        kind: match byte(off::KIND) {
            1 => Kind::Event,
            2 => Kind::Command,
            3 => Kind::CommandResult,
            4 => Kind::Announce,
            _ => Kind::Telemetry,
        },
        assurance: match byte(off::ASSURANCE) {
            1 => Assurance::Channel,
            2 => Assurance::SharedKey,
            3 => Assurance::Certificate,
            _ => Assurance::None,
        },
        fresh: byte(off::FRESH) == 1,
        point_count: u32_at(off::POINT_COUNT),
        time_ms: u64_at(off::TIME_MS),
    }
}

pub(crate) fn sym(at: usize) -> Symbol {
    Symbol(u32_at(at))
}

pub(crate) fn has(at: usize) -> bool {
    byte(at) == 1
}

pub(crate) fn status() -> Status {
    match byte(off::STATUS) {
        0 => Status::Pending,
        2 => Status::Quarantined,
        3 => Status::Revoked,
        _ => Status::Active,
    }
}

pub(crate) fn observed() -> Observed {
    Observed {
        rate_per_min: u64_at(off::RATE_PER_MIN),
        messages: u64_at(off::MESSAGES),
        bytes: u64_at(off::BYTES),
        denied: u64_at(off::DENIED),
        last_seen_ms: u64_at(off::LAST_SEEN_MS),
        anomaly_score: has(off::HAS_ANOMALY).then(|| f32::from_bits(u32_at(off::ANOMALY_SCORE))),
    }
}

/// A point record: `(name, tag, value bits)`, from the area or (past its 16) the host.
fn point_record(index: u32) -> Option<(Symbol, u8, u64)> {
    if index >= u32_at(off::POINT_COUNT) {
        return None;
    }
    let i = index as usize;
    if i < abi::AREA_POINTS {
        let at = abi::HEADER_BYTES + i * abi::POINT_BYTES;
        return Some((
            Symbol(u32_at(at + abi::point::NAME)),
            byte(at + abi::point::TAG),
            u64_at(at + abi::point::VALUE),
        ));
    }
    #[repr(C, align(8))]
    struct Rec([u8; abi::POINT_BYTES]);
    let mut rec = Rec([0; abi::POINT_BYTES]);
    // SAFETY: the host writes POINT_BYTES at the pointer.
    if unsafe { point(index, rec.0.as_mut_ptr()) } != 0 {
        return None;
    }
    let r = &rec.0;
    let u32_of = |at: usize| u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
    let mut v = [0u8; 8];
    v.copy_from_slice(&r[abi::point::VALUE..abi::point::VALUE + 8]);
    Some((
        Symbol(u32_of(abi::point::NAME)),
        r[abi::point::TAG],
        u64::from_le_bytes(v),
    ))
}

pub(crate) fn point_name(index: u32) -> Symbol {
    point_record(index).map_or(Symbol::OTHER, |(n, _, _)| n)
}

pub(crate) fn point_value(index: u32) -> Option<Value> {
    let (_, tag, bits) = point_record(index)?;
    Some(match tag {
        abi::tag::BOOL => Value::Bool(bits != 0),
        abi::tag::INT => Value::Int(bits as i64),
        abi::tag::FLOAT => Value::Float(f64::from_bits(bits)),
        abi::tag::TEXT => Value::Text(request_text(abi::field::POINT_VALUE, index)?),
        abi::tag::BYTES => Value::Bytes(fetch(|p, cap| {
            // SAFETY: as `request_text`.
            i64::from(unsafe { text(abi::field::POINT_VALUE, index, p, cap) })
        })?),
        _ => return None,
    })
}

pub(crate) fn find(name: Symbol) -> Option<u32> {
    if !name.is_known() {
        return None;
    }
    let count = u32_at(off::POINT_COUNT);
    let inline = count.min(abi::AREA_POINTS as u32);
    if let Some(i) = (0..inline).find(|&i| point_name(i) == name) {
        return Some(i);
    }
    if count > inline {
        // SAFETY: a plain call.
        let i = unsafe { find_point(name.0) };
        return u32::try_from(i).ok();
    }
    None
}

/// Holds the plugin's state between calls (see the component side's `Slot`).
pub struct Slot<P>(RefCell<Option<P>>);

// SAFETY: as `Area`.
#[cfg(not(target_feature = "atomics"))]
unsafe impl<P> Sync for Slot<P> {}

fn say(text: &str) {
    // SAFETY: the host reads at most `len` bytes at `ptr`.
    unsafe { verdict_text(text.as_ptr(), text.len()) }
}

impl<P: Policy> Slot<P> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// The `init` export: 0, or 1 with the error said.
    pub fn init(&self) -> i32 {
        // SAFETY: the host copies at most `cap` bytes.
        let config = fetch(|p, cap| i64::from(unsafe { config(p, cap) }))
            .map(string)
            .unwrap_or_default();
        match P::init(&config) {
            Ok(policy) => match self.0.try_borrow_mut() {
                Ok(mut slot) => {
                    *slot = Some(policy);
                    0
                }
                Err(_) => {
                    say("init called during a decision");
                    1
                }
            },
            Err(msg) => {
                say(&msg);
                1
            }
        }
    }

    /// The `decide` export: a verdict code, the reason said.
    #[inline]
    pub fn decide(&self) -> i32 {
        let header = header();
        let verdict = match self.0.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(policy) => policy.decide(&header, &crate::request::REQUEST),
                None => Verdict::Deny("plugin is not initialised".into()),
            },
            Err(_) => Verdict::Deny("plugin re-entered".into()),
        };
        match verdict {
            Verdict::Allow => abi::verdict::ALLOW,
            Verdict::Deny(r) => {
                say(&r);
                abi::verdict::DENY
            }
            Verdict::Quarantine(r) => {
                say(&r);
                abi::verdict::QUARANTINE
            }
        }
    }
}
