//! The host side of contract 0.2.0 (`warden-plugin-abi`): core Wasm modules whose request is
//! laid out in their own memory before each `decide`, and the imports they may call.
//!
//! Every address and length a plugin passes is checked against its memory before anything is
//! read or written; lengths are capped *before* text is copied out of the guest (reasons, logs,
//! names, keys); every copy is charged as moved bytes, like the component path's host calls.

use warden_core::Value;
use warden_plugin_abi::{self as abi, field, import, off, point, tag};
use wasmtime::{Caller, Linker, Memory};

use crate::bindings::warden::policy::types as wit;
use crate::intern::MAX_SYMBOL_BYTES;
use crate::kv::{KvError, MAX_KEY_BYTES};
use crate::plugin::{HostTrap, LOG_MAX_BYTES, REASON_MAX_BYTES, State};
use crate::request::{DeviceStatus, Request};

fn malformed(what: String) -> wasmtime::Error {
    wasmtime::Error::new(HostTrap::Malformed(what))
}

/// The byte range `[ptr, ptr + len)` of guest memory, checked.
fn range(
    data_len: usize,
    ptr: u32,
    len: u32,
    what: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).filter(|&e| e <= data_len);
    match end {
        Some(end) => Ok(start..end),
        None => Err(malformed(format!(
            "{what}: {len} bytes at {ptr:#x} lie outside the plugin's memory ({data_len} bytes)"
        ))),
    }
}

/// The plugin's memory and its store data.
fn memory<'a>(
    caller: &'a mut Caller<'_, State>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut State)> {
    let Some(m) = caller.data().memory else {
        return Err(malformed(
            "host called before the plugin's memory was known".into(),
        ));
    };
    Ok(m.data_and_store_mut(caller))
}

/// Copies `src` (or its first `cap` bytes) to guest memory at `ptr`; returns `src`'s full length.
fn copy_out(
    data: &mut [u8],
    ptr: u32,
    cap: u32,
    src: &[u8],
    what: &str,
) -> wasmtime::Result<(i32, usize)> {
    let n = src.len().min(cap as usize);
    let r = range(data.len(), ptr, n as u32, what)?;
    if let (Some(dst), Some(s)) = (data.get_mut(r), src.get(..n)) {
        dst.copy_from_slice(s);
    }
    Ok((i32::try_from(src.len()).unwrap_or(i32::MAX), n))
}

/// Reads guest text, refusing invalid UTF-8.
fn read_str<'d>(data: &'d [u8], ptr: u32, len: u32, what: &str) -> wasmtime::Result<&'d str> {
    let r = range(data.len(), ptr, len, what)?;
    std::str::from_utf8(data.get(r).unwrap_or_default())
        .map_err(|e| malformed(format!("{what}: not UTF-8 ({e})")))
}

/// The request must be the one of the call in progress (not `init`).
fn in_decide(st: &State, what: &str) -> wasmtime::Result<()> {
    if st.rep == 0 {
        return Err(malformed(format!("`{what}` called outside decide")));
    }
    Ok(())
}

fn opt(s: &Option<String>) -> Option<&[u8]> {
    s.as_deref().map(str::as_bytes)
}

/// A string of the request by `field` (and point index).
fn request_text(req: &Request, f: i32, index: u32) -> Option<&[u8]> {
    let pt = || req.points.get(index as usize);
    match f {
        field::DEVICE_ID => Some(req.device.id.as_bytes()),
        field::PROTOCOL => Some(req.device.protocol.as_bytes()),
        field::ZONE => Some(req.device.zone.as_bytes()),
        field::ROLE => opt(&req.device.role),
        field::MANUFACTURER => opt(&req.device.manufacturer),
        field::MODEL => opt(&req.device.model),
        field::FIRMWARE => opt(&req.device.firmware),
        field::NAME => Some(req.name.as_bytes()),
        field::PRINCIPAL => opt(&req.principal),
        field::SECURITY => opt(&req.security),
        field::ANOMALY_FEATURE => opt(&req.observed.anomaly_feature),
        field::POINT_NAME => pt().map(|p| p.name.as_bytes()),
        field::POINT_UNIT => pt().and_then(|p| opt(&p.unit)),
        field::POINT_VALUE => pt().and_then(|p| match &p.value {
            Value::Text(t) => Some(t.as_bytes()),
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        }),
        _ => None,
    }
}

fn put_u32(area: &mut [u8], at: usize, v: u32) {
    if let Some(d) = area.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u64(area: &mut [u8], at: usize, v: u64) {
    if let Some(d) = area.get_mut(at..at + 8) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u8(area: &mut [u8], at: usize, v: u8) {
    if let Some(d) = area.get_mut(at) {
        *d = v;
    }
}

/// One point record (`abi::POINT_BYTES`).
fn write_point(rec: &mut [u8], p: &warden_core::Point, interner: &crate::intern::Interner) {
    put_u32(rec, point::NAME, interner.lookup(&p.name));
    let (t, v) = match &p.value {
        Value::Bool(b) => (tag::BOOL, u64::from(*b)),
        Value::Int(i) => (tag::INT, *i as u64),
        Value::Float(f) => (tag::FLOAT, f.to_bits()),
        Value::Text(s) => (tag::TEXT, s.len() as u64),
        Value::Bytes(b) => (tag::BYTES, b.len() as u64),
    };
    put_u8(rec, point::TAG, t);
    put_u8(rec, point::HAS_UNIT, u8::from(p.unit.is_some()));
    put_u8(rec, point::HAS_UNIT + 1, 0);
    put_u8(rec, point::HAS_UNIT + 2, 0);
    put_u64(rec, point::VALUE, v);
}

/// Lays the request out in the plugin's request area (`area` = its `AREA_BYTES`): the header and
/// the first `AREA_POINTS` points, names resolved to the plugin's symbols.
pub(crate) fn write_area(area: &mut [u8], req: &Request, interner: &crate::intern::Interner) {
    let sym = |s: &str| interner.lookup(s);
    let Some(header) = area.get_mut(..abi::HEADER_BYTES) else {
        return;
    };
    header.fill(0);
    put_u32(header, off::VERSION, abi::AREA_VERSION);
    put_u8(
        header,
        off::KIND,
        match req.kind {
            warden_core::Kind::Telemetry => 0,
            warden_core::Kind::Event => 1,
            warden_core::Kind::Command => 2,
            warden_core::Kind::CommandResult => 3,
            warden_core::Kind::Announce => 4,
        },
    );
    put_u8(
        header,
        off::DIRECTION,
        match req.direction {
            warden_core::Direction::Uplink => 0,
            warden_core::Direction::Downlink => 1,
        },
    );
    put_u8(
        header,
        off::ASSURANCE,
        match req.assurance {
            warden_core::Assurance::None => 0,
            warden_core::Assurance::Channel => 1,
            warden_core::Assurance::SharedKey => 2,
            warden_core::Assurance::Certificate => 3,
        },
    );
    put_u8(header, off::FRESH, u8::from(req.fresh));
    put_u8(
        header,
        off::STATUS,
        match req.device.status {
            DeviceStatus::Pending => 0,
            DeviceStatus::Active => 1,
            DeviceStatus::Quarantined => 2,
            DeviceStatus::Revoked => 3,
        },
    );
    put_u8(header, off::HAS_ROLE, u8::from(req.device.role.is_some()));
    put_u8(
        header,
        off::HAS_PRINCIPAL,
        u8::from(req.principal.is_some()),
    );
    put_u32(
        header,
        off::POINT_COUNT,
        u32::try_from(req.points.len()).unwrap_or(u32::MAX),
    );
    put_u64(header, off::TIME_MS, req.time_ms);
    put_u32(header, off::PROTOCOL, sym(&req.device.protocol));
    put_u32(header, off::ZONE, sym(&req.device.zone));
    put_u32(header, off::ROLE, req.device.role.as_deref().map_or(0, sym));
    put_u32(
        header,
        off::NAME,
        if req.name.is_empty() {
            0
        } else {
            sym(&req.name)
        },
    );
    put_u32(
        header,
        off::PRINCIPAL,
        req.principal.as_deref().map_or(0, sym),
    );
    let o = &req.observed;
    if let Some(score) = o.anomaly_score {
        put_u8(header, off::HAS_ANOMALY, 1);
        put_u32(header, off::ANOMALY_SCORE, score.to_bits());
    }
    put_u64(header, off::RATE_PER_MIN, o.rate_per_min);
    put_u64(header, off::MESSAGES, o.messages);
    put_u64(header, off::BYTES, o.bytes);
    put_u64(header, off::DENIED, o.denied);
    put_u64(header, off::LAST_SEEN_MS, o.last_seen_ms);
    if let Some(label) = req.security.as_deref() {
        put_u8(header, off::HAS_SECURITY, 1);
        put_u32(header, off::SECURITY, sym(label));
    }
    if let Some(feature) = o.anomaly_feature.as_deref() {
        put_u8(header, off::HAS_ANOMALY_FEATURE, 1);
        put_u32(header, off::ANOMALY_FEATURE, sym(feature));
    }
    let points = area.get_mut(abi::HEADER_BYTES..).unwrap_or_default();
    for (p, rec) in req
        .points
        .iter()
        .take(abi::AREA_POINTS)
        .zip(points.chunks_exact_mut(abi::POINT_BYTES))
    {
        write_point(rec, p, interner);
    }
}

/// Bytes of the area a decision writes (what it is charged as moved).
pub(crate) fn area_bytes_written(req: &Request) -> usize {
    abi::HEADER_BYTES + req.points.len().min(abi::AREA_POINTS) * abi::POINT_BYTES
}

/// The functions of module [`abi::IMPORT_MODULE`].
pub(crate) fn link(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let m = abi::IMPORT_MODULE;
    linker.func_wrap(
        m,
        import::INTERN,
        |mut c: Caller<'_, State>, ptr: u32, len: u32| {
            if len as usize > MAX_SYMBOL_BYTES {
                // not copied: such a name cannot be a symbol
                return Ok(0u32);
            }
            let (data, st) = memory(&mut c)?;
            let name = read_str(data, ptr, len, "intern")?;
            let sym = st.interner.intern(name);
            st.moved(len as usize);
            Ok(sym)
        },
    )?;
    linker.func_wrap(
        m,
        import::SYMBOL_TEXT,
        |mut c: Caller<'_, State>, sym: u32, ptr: u32, cap: u32| {
            let (data, st) = memory(&mut c)?;
            let Some(text) = st.interner.text(sym) else {
                return Ok(-1i32);
            };
            let (len, n) = copy_out(data, ptr, cap, text.as_bytes(), "symbol-text")?;
            st.moved(n);
            Ok(len)
        },
    )?;
    linker.func_wrap(
        m,
        import::TEXT,
        |mut c: Caller<'_, State>, f: i32, index: u32, ptr: u32, cap: u32| {
            let (data, st) = memory(&mut c)?;
            in_decide(st, "text")?;
            let Some(src) = request_text(&st.req, f, index) else {
                return Ok(-1i32);
            };
            let (len, n) = copy_out(data, ptr, cap, src, "text")?;
            st.moved(n);
            Ok(len)
        },
    )?;
    linker.func_wrap(
        m,
        import::POINT,
        |mut c: Caller<'_, State>, index: u32, ptr: u32| {
            let (data, st) = memory(&mut c)?;
            in_decide(st, "point")?;
            let Some(p) = st.req.points.get(index as usize) else {
                return Ok(-1i32);
            };
            let r = range(data.len(), ptr, abi::POINT_BYTES as u32, "point")?;
            write_point(data.get_mut(r).unwrap_or_default(), p, &st.interner);
            st.moved(abi::POINT_BYTES);
            Ok(0)
        },
    )?;
    linker.func_wrap(m, import::FIND_POINT, |c: Caller<'_, State>, sym: u32| {
        let st = c.data();
        in_decide(st, "find-point")?;
        if sym == 0 {
            return Ok(-1i32);
        }
        Ok(st
            .req
            .points
            .iter()
            .position(|p| st.interner.lookup(&p.name) == sym)
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or(-1))
    })?;
    linker.func_wrap(
        m,
        import::LOG,
        |mut c: Caller<'_, State>, level: i32, ptr: u32, len: u32| {
            let (data, st) = memory(&mut c)?;
            // truncated before it is copied out of the guest
            let n = (len as usize).min(LOG_MAX_BYTES * 4) as u32;
            let r = range(data.len(), ptr, n, "log")?;
            let text = String::from_utf8_lossy(data.get(r).unwrap_or_default()).into_owned();
            st.moved(n as usize);
            let level = match level {
                0 => wit::Level::Debug,
                1 => wit::Level::Info,
                2 => wit::Level::Warn,
                _ => wit::Level::Error,
            };
            st.log_line(level, &text);
            Ok(())
        },
    )?;
    linker.func_wrap(m, import::NOW_MS, |c: Caller<'_, State>| {
        Ok(i64::try_from(c.data().now_ms()).unwrap_or(i64::MAX))
    })?;
    linker.func_wrap(
        m,
        import::KV_GET,
        |mut c: Caller<'_, State>, kptr: u32, klen: u32, ptr: u32, cap: u32| {
            if klen as usize > MAX_KEY_BYTES {
                return Ok(-1i64);
            }
            let (data, st) = memory(&mut c)?;
            let key = read_str(data, kptr, klen, "kv-get key")?.to_owned();
            let Some(value) = st.kv.get(&key) else {
                st.moved(klen as usize);
                return Ok(-1);
            };
            let (len, n) = copy_out(data, ptr, cap, value, "kv-get")?;
            st.moved(n + klen as usize);
            Ok(i64::from(len))
        },
    )?;
    linker.func_wrap(
        m,
        import::KV_SET,
        |mut c: Caller<'_, State>, kptr: u32, klen: u32, vptr: u32, vlen: u32| {
            let (data, st) = memory(&mut c)?;
            // both refused before anything is copied
            let refused = if klen as usize > MAX_KEY_BYTES {
                Some(KvError::KeyTooLarge)
            } else if vlen as usize > st.kv_quota() {
                Some(KvError::QuotaExceeded)
            } else {
                None
            };
            let result = match refused {
                Some(e) => st.kv_refused(e)?,
                None => {
                    let key = read_str(data, kptr, klen, "kv-set key")?.to_owned();
                    let r = range(data.len(), vptr, vlen, "kv-set value")?;
                    st.moved(klen as usize + vlen as usize);
                    let value = data.get(r).unwrap_or_default();
                    st.kv_set_counted(&key, value)?
                }
            };
            Ok(match result {
                Ok(()) => abi::kv::OK,
                Err(KvError::KeyTooLarge) => abi::kv::KEY_TOO_LARGE,
                Err(KvError::QuotaExceeded) => abi::kv::QUOTA_EXCEEDED,
            })
        },
    )?;
    linker.func_wrap(
        m,
        import::KV_DELETE,
        |mut c: Caller<'_, State>, kptr: u32, klen: u32| {
            if klen as usize > MAX_KEY_BYTES {
                return Ok(());
            }
            let (data, st) = memory(&mut c)?;
            let key = read_str(data, kptr, klen, "kv-delete key")?.to_owned();
            st.moved(klen as usize);
            st.kv.delete(&key);
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        import::CONFIG,
        |mut c: Caller<'_, State>, ptr: u32, cap: u32| {
            let (data, st) = memory(&mut c)?;
            let config = st.config.clone();
            let (len, n) = copy_out(data, ptr, cap, config.as_bytes(), "config")?;
            st.moved(n);
            Ok(len)
        },
    )?;
    linker.func_wrap(
        m,
        import::VERDICT_TEXT,
        |mut c: Caller<'_, State>, ptr: u32, len: u32| {
            let (data, st) = memory(&mut c)?;
            // bounded before the copy: a reason longer than the host keeps is cut here
            let n = (len as usize).min(REASON_MAX_BYTES) as u32;
            let r = range(data.len(), ptr, n, "verdict-text")?;
            st.verdict_text.clear();
            st.verdict_text
                .push_str(&String::from_utf8_lossy(data.get(r).unwrap_or_default()));
            st.moved(n as usize);
            Ok(())
        },
    )?;
    Ok(())
}

/// A core plugin's entry points, found and type-checked after instantiation.
pub(crate) struct CoreExports {
    pub(crate) memory: Memory,
    pub(crate) area: usize,
    pub(crate) init: wasmtime::TypedFunc<(), i32>,
    pub(crate) decide: wasmtime::TypedFunc<(), i32>,
}
