//! Asking a stick which stack it speaks, when its USB id does not say.
//!
//! Each question is the stack's own harmless one, tried in this order:
//! 1. ZNP `SYS_PING` (`FE 00 21 01 20`): a Z-Stack coordinator answers with its capabilities and
//!    changes nothing.
//! 2. Z-Wave `FUNC_ID_ZW_GET_VERSION` (0x15): a Serial API controller answers its library version
//!    and type and changes nothing.
//! 3. ASH `RST`: an EmberZNet NCP answers `RSTACK`. This resets the NCP, which is harmless for a stick
//!    nobody is driving (its network settings live in its flash) but would drop a running host's
//!    session: so a port another process holds open is never probed (see [`holders`]).
//!
//! Answers are parsed with length caps and checksums; bytes that fit none of the answers give
//! [`ProbeError::Garbage`], silence gives [`ProbeError::Silent`], both after a timeout per question.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::catalogue::Stack;

/// What the stick said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stack", rename_all = "kebab-case")]
pub enum Probed {
    /// `SYS_PING` answered; the capabilities bit map.
    Znp { capabilities: u16 },
    /// `RSTACK` (or an ASH `ERROR` frame: `error = true`) answered.
    Ezsp {
        ash_version: u8,
        reset_code: u8,
        error: bool,
    },
    /// `GET_VERSION` answered.
    #[serde(rename = "zwave-serial-api")]
    ZWave { version: String, library_type: u8 },
}

impl Probed {
    pub fn stack(&self) -> Stack {
        match self {
            Probed::Znp { .. } => Stack::Znp,
            Probed::Ezsp { .. } => Stack::Ezsp,
            Probed::ZWave { .. } => Stack::ZWaveSerialApi,
        }
    }
}

/// Why a probe gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "{path}: permission denied; the user running Warden must be in the `{group}` group that owns the device (sudo usermod -aG {group} USER, then log in again; the packaged service's `warden` user already is)"
    )]
    PermissionDenied { path: String, group: String },
    #[error("{path}: does not exist (unplugged?)")]
    Missing { path: String },
    #[error("{path}: cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "{path}: in use by process {pids:?}; not probed, so a running network is not disturbed (stop that program, or read its own status)"
    )]
    InUse { path: String, pids: Vec<u32> },
    #[error(
        "the stick answered, but nothing it sent is a {tried} answer ({count} bytes, starting {sample}): wrong baud rate, or firmware Warden does not speak"
    )]
    Garbage {
        tried: String,
        count: usize,
        sample: String,
    },
    #[error("no answer to {tried} within {timeout_ms} ms each")]
    Silent { tried: String, timeout_ms: u128 },
    #[error("no stack to probe (the catalogue lists none Warden can ask)")]
    NothingToTry,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Most bytes kept from one answer.
const MAX_ANSWER: usize = 512;

pub const ZNP_SYS_PING: [u8; 5] = [0xfe, 0x00, 0x21, 0x01, 0x20];
pub const ZWAVE_GET_VERSION: [u8; 5] = [0x01, 0x03, 0x00, 0x15, 0xe9];
/// CAN (cancel any partial frame), then the RST frame `C0 38 BC` and the flag.
pub const ASH_RST: [u8; 5] = [0x1a, 0xc0, 0x38, 0xbc, 0x7e];
const ZWAVE_ACK: u8 = 0x06;

fn tried_names(stacks: &[Stack]) -> String {
    stacks
        .iter()
        .map(|s| match s {
            Stack::Znp => "ZNP SYS_PING",
            Stack::Ezsp => "ASH RST",
            Stack::ZWaveSerialApi => "Z-Wave GET_VERSION",
            Stack::Deconz | Stack::Zigate => "?",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ZNP `SYS_PING` SRSP anywhere in `buf`.
pub fn parse_znp_ping(buf: &[u8]) -> Option<u16> {
    for i in 0..buf.len() {
        if buf.get(i) != Some(&0xfe) {
            continue;
        }
        let Some(&len) = buf.get(i + 1) else { break };
        let end = i + 5 + usize::from(len);
        let Some(frame) = buf.get(i..end) else {
            continue;
        };
        let body = frame.get(1..frame.len() - 1)?;
        let fcs = body.iter().fold(0u8, |a, b| a ^ b);
        if Some(&fcs) != frame.last() {
            continue;
        }
        if let [2, 0x61, 0x01, lo, hi] = body {
            return Some(u16::from_le_bytes([*lo, *hi]));
        }
    }
    None
}

/// A Z-Wave `GET_VERSION` response frame anywhere in `buf`.
pub fn parse_zwave_version(buf: &[u8]) -> Option<(String, u8)> {
    for i in 0..buf.len() {
        if buf.get(i) != Some(&0x01) {
            continue;
        }
        let Some(&len) = buf.get(i + 1) else { break };
        let len = usize::from(len);
        if len < 3 {
            continue;
        }
        let Some(frame) = buf.get(i..i + len + 2) else {
            continue;
        };
        let (Some(&sum), Some(covered)) = (frame.last(), frame.get(1..frame.len() - 1)) else {
            continue;
        };
        if covered.iter().fold(0xffu8, |a, b| a ^ b) != sum {
            continue;
        }
        let (Some(&kind), Some(&func), Some(data)) =
            (frame.get(2), frame.get(3), frame.get(4..frame.len() - 1))
        else {
            continue;
        };
        if kind != 0x01 || func != 0x15 || data.len() < 13 {
            continue;
        }
        let text = data.get(..12)?;
        let text = text.split(|b| *b == 0).next().unwrap_or_default();
        if !text.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            continue;
        }
        return Some((String::from_utf8_lossy(text).into_owned(), *data.get(12)?));
    }
    None
}

/// CRC-CCITT (polynomial 0x1021, initial 0xFFFF), as ASH uses.
pub fn ash_crc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for b in data {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// An ASH `RSTACK` (`C1`) or `ERROR` (`C2`) frame anywhere in `buf`: (version, code, is_error).
pub fn parse_ash_reset(buf: &[u8]) -> Option<(u8, u8, bool)> {
    let mut frame: Vec<u8> = Vec::new();
    let mut escape = false;
    for &b in buf {
        match b {
            0x7e => {
                if let [control @ (0xc1 | 0xc2), version, code, hi, lo] = frame.as_slice()
                    && ash_crc(&[*control, *version, *code]) == u16::from_be_bytes([*hi, *lo])
                {
                    return Some((*version, *code, *control == 0xc2));
                }
                frame.clear();
                escape = false;
            }
            0x1a | 0x18 => {
                frame.clear();
                escape = false;
            }
            0x11 | 0x13 => {}
            0x7d => escape = true,
            _ => {
                if frame.len() >= 16 {
                    frame.clear();
                }
                frame.push(if escape { b ^ 0x20 } else { b });
                escape = false;
            }
        }
    }
    None
}

async fn drain<S: AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 256];
    let mut total = 0;
    // Whatever the stick sent before the question (a boot banner, a callback) is not its answer.
    while total < 4096 {
        match tokio::time::timeout(Duration::from_millis(30), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

/// Asks one question and collects the answer until `parse` accepts it or `timeout` passes.
async fn ask<S, T>(
    s: &mut S,
    question: &[u8],
    timeout: Duration,
    parse: impl Fn(&[u8]) -> Option<T>,
    got: &mut Vec<u8>,
) -> Result<Option<T>, std::io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drain(s).await;
    s.write_all(question).await?;
    s.flush().await?;
    let end = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 128];
    loop {
        let n = match tokio::time::timeout_at(end, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Ok(Err(e)) => return Err(e),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(v) = parse(&buf) {
            return Ok(Some(v));
        }
        if buf.len() >= MAX_ANSWER {
            break;
        }
    }
    if got.is_empty() {
        *got = buf;
    }
    Ok(None)
}

/// Probes a stream for each of `candidates` in the safe order (ZNP, Z-Wave, then ASH).
pub async fn probe_stream<S>(
    s: &mut S,
    candidates: &[Stack],
    timeout: Duration,
) -> Result<Probed, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let order: Vec<Stack> = [Stack::Znp, Stack::ZWaveSerialApi, Stack::Ezsp]
        .into_iter()
        .filter(|s| candidates.contains(s))
        .collect();
    if order.is_empty() {
        return Err(ProbeError::NothingToTry);
    }
    let mut garbage = Vec::new();
    for stack in &order {
        match stack {
            Stack::Znp => {
                if let Some(capabilities) =
                    ask(s, &ZNP_SYS_PING, timeout, parse_znp_ping, &mut garbage).await?
                {
                    return Ok(Probed::Znp { capabilities });
                }
            }
            Stack::ZWaveSerialApi => {
                if let Some((version, library_type)) = ask(
                    s,
                    &ZWAVE_GET_VERSION,
                    timeout,
                    parse_zwave_version,
                    &mut garbage,
                )
                .await?
                {
                    // Acknowledge the response, or the controller sends it again.
                    s.write_all(&[ZWAVE_ACK]).await?;
                    s.flush().await?;
                    return Ok(Probed::ZWave {
                        version,
                        library_type,
                    });
                }
            }
            Stack::Ezsp => {
                if let Some((ash_version, reset_code, error)) =
                    ask(s, &ASH_RST, timeout, parse_ash_reset, &mut garbage).await?
                {
                    return Ok(Probed::Ezsp {
                        ash_version,
                        reset_code,
                        error,
                    });
                }
            }
            Stack::Deconz | Stack::Zigate => {}
        }
    }
    let tried = tried_names(&order);
    // A lone Z-Wave ACK/NAK is not an answer to anything we asked but is not garbage either.
    if garbage.iter().all(|b| matches!(b, 0x06 | 0x15 | 0x18)) {
        return Err(ProbeError::Silent {
            tried,
            timeout_ms: timeout.as_millis(),
        });
    }
    Err(ProbeError::Garbage {
        tried,
        count: garbage.len(),
        sample: garbage
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// The processes (other than this one) holding `dev` open, from `/proc/*/fd`: programs using the
/// port. For a pseudo-terminal (a simulated or bridged stick), the program holding its master side,
/// and that program's children, are the stick's far end, not users of the port, and are left out.
pub fn holders(dev: &Path) -> Vec<u32> {
    let Ok(target) = std::fs::canonicalize(dev) else {
        return Vec::new();
    };
    let pty_index: Option<String> = target
        .strip_prefix("/dev/pts")
        .ok()
        .and_then(|n| n.to_str())
        .map(str::to_owned);
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut users = Vec::new();
    let mut far_end = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if link == target {
                if pid != me {
                    users.push(pid);
                }
            } else if let Some(n) = &pty_index
                && (link == Path::new("/dev/ptmx") || link == Path::new("/dev/pts/ptmx"))
            {
                let info = p.path().join("fdinfo").join(fd.file_name());
                let master_of = std::fs::read_to_string(info).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("tty-index:"))
                        .map(|v| v.trim().to_owned())
                });
                if master_of.as_deref() == Some(n.as_str()) {
                    far_end.push(pid);
                }
            }
        }
    }
    users.retain(|pid| !descends_from(*pid, &far_end));
    users.sort_unstable();
    users.dedup();
    users
}

/// Whether `pid` is one of `ancestors` or a descendant of one (parent chain from /proc, bounded).
fn descends_from(pid: u32, ancestors: &[u32]) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        if ancestors.contains(&p) {
            return true;
        }
        // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s.get(s.rfind(')')? + 1..)?;
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

/// The name of the group owning `path`, from /etc/group ("dialout" when it cannot be told).
fn group_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(gid) = std::fs::metadata(path).map(|m| m.gid()) else {
        return "dialout".into();
    };
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|g| {
            g.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id = f.nth(1)?.parse::<u32>().ok()?;
                (id == gid && gid != 0).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| "dialout".into())
}

/// Opens the serial port at `path` (by-id links are followed) and probes it.
pub async fn probe_port(
    path: &Path,
    baud: u32,
    candidates: &[Stack],
    timeout: Duration,
) -> Result<Probed, ProbeError> {
    let shown = path.display().to_string();
    let dev: PathBuf = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(_) => return Err(ProbeError::Missing { path: shown }),
    };
    let pids = holders(&dev);
    if !pids.is_empty() {
        return Err(ProbeError::InUse { path: shown, pids });
    }
    // Opening first with std tells a permission problem apart from a serial-layer one.
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
    {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => ProbeError::PermissionDenied {
                path: shown,
                group: group_of(&dev),
            },
            std::io::ErrorKind::NotFound => ProbeError::Missing { path: shown },
            _ => ProbeError::Open {
                path: shown,
                reason: e.to_string(),
            },
        });
    }
    let mut port = {
        use tokio_serial::SerialPortBuilderExt;
        tokio_serial::new(dev.to_string_lossy(), baud)
            .timeout(Duration::from_millis(100))
            .open_native_async()
            .map_err(|e| ProbeError::Open {
                path: shown.clone(),
                reason: e.to_string(),
            })?
    };
    probe_stream(&mut port, candidates, timeout).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn zwave_frame(kind: u8, func: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x01, (data.len() + 3) as u8, kind, func];
        f.extend_from_slice(data);
        let sum = f[1..].iter().fold(0xffu8, |a, b| a ^ b);
        f.push(sum);
        f
    }

    #[test]
    fn the_questions_carry_their_own_checksums() {
        assert_eq!(ash_crc(&[0xc0]), 0x38bc);
        assert_eq!(ZWAVE_GET_VERSION.to_vec(), zwave_frame(0x00, 0x15, &[]));
        assert_eq!(
            ZNP_SYS_PING[4],
            ZNP_SYS_PING[1..4].iter().fold(0, |a, b| a ^ b)
        );
    }

    #[test]
    fn answers_are_parsed_and_near_misses_refused() {
        assert_eq!(
            parse_znp_ping(&[0x00, 0xfe, 0x02, 0x61, 0x01, 0x59, 0x06, 0x3d]),
            Some(0x0659)
        );
        assert_eq!(
            parse_znp_ping(&[0xfe, 0x02, 0x61, 0x01, 0x59, 0x06, 0x3e]),
            None,
            "bad FCS"
        );
        assert_eq!(parse_znp_ping(&[0xfe, 0xff, 0x61]), None, "truncated");
        let mut v = b"Z-Wave 7.18\0".to_vec();
        v.push(0x01);
        let f = zwave_frame(0x01, 0x15, &v);
        let mut with_ack = vec![0x06];
        with_ack.extend_from_slice(&f);
        assert_eq!(
            parse_zwave_version(&with_ack),
            Some(("Z-Wave 7.18".into(), 1))
        );
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(parse_zwave_version(&bad), None, "bad checksum");
        assert_eq!(
            parse_zwave_version(&zwave_frame(0x01, 0x16, &v)),
            None,
            "other function"
        );
        let rstack = [0xc1, 0x02, 0x0b];
        let crc = ash_crc(&rstack).to_be_bytes();
        let mut f = rstack.to_vec();
        f.extend_from_slice(&crc);
        f.push(0x7e);
        assert_eq!(parse_ash_reset(&f), Some((2, 0x0b, false)));
        f[2] = 0x0c;
        assert_eq!(parse_ash_reset(&f), None, "bad CRC");
    }

    /// A fake stick: answers each question with `reply(question)`.
    async fn fake_stick(
        mut peer: tokio::io::DuplexStream,
        reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) {
        let mut buf = [0u8; 64];
        while let Ok(n) = peer.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Some(r) = reply(&buf[..n]) {
                let _ = peer.write_all(&r).await;
            }
        }
    }

    #[tokio::test]
    async fn a_zwave_controller_is_found_after_a_silent_znp_question_and_acknowledged() {
        let (mut host, peer) = duplex(1024);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let s2 = seen.clone();
        tokio::spawn(fake_stick(peer, move |q| {
            s2.lock().unwrap().extend_from_slice(q);
            (q == ZWAVE_GET_VERSION).then(|| {
                let mut v = b"Z-Wave 7.18\0".to_vec();
                v.push(0x07);
                let mut r = vec![0x06];
                r.extend(zwave_frame(0x01, 0x15, &v));
                r
            })
        }));
        let p = probe_stream(
            &mut host,
            &[Stack::Ezsp, Stack::ZWaveSerialApi, Stack::Znp],
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert_eq!(
            p,
            Probed::ZWave {
                version: "Z-Wave 7.18".into(),
                library_type: 7
            }
        );
        // ZNP first, then Z-Wave and its ACK; never the resetting ASH RST.
        let want: Vec<u8> = [&ZNP_SYS_PING[..], &ZWAVE_GET_VERSION[..], &[0x06]].concat();
        tokio::time::timeout(Duration::from_secs(5), async {
            while *seen.lock().unwrap() != want {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn garbage_answers_are_a_clear_error_and_silence_another() {
        let (mut host, peer) = duplex(1024);
        tokio::spawn(fake_stick(peer, |_| {
            Some(vec![0xde, 0xad, 0xbe, 0xef, 0x7e, 0xfe, 0x09])
        }));
        let e = probe_stream(
            &mut host,
            &[Stack::Znp, Stack::Ezsp],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, ProbeError::Garbage { count: 7, sample, .. } if sample == "de ad be ef 7e fe 09"),
            "{e}"
        );
        assert!(e.to_string().contains("ZNP SYS_PING, ASH RST"), "{e}");

        let (mut host, peer) = duplex(1024);
        tokio::spawn(fake_stick(peer, |_| None));
        let e = probe_stream(&mut host, &[Stack::Znp], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ProbeError::Silent {
                    timeout_ms: 100,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_endless_stream_of_noise_is_cut_off() {
        let (mut host, mut peer) = duplex(64);
        tokio::spawn(async move { while peer.write_all(&[0x55; 64]).await.is_ok() {} });
        let e = probe_stream(&mut host, &[Stack::Znp], Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Garbage { .. }), "{e}");
    }

    #[test]
    fn a_missing_device_is_named() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(probe_port(
                Path::new("/nonexistent/ttyUSB9"),
                115_200,
                &[Stack::Znp],
                Duration::from_millis(50),
            ))
            .unwrap_err();
        assert!(matches!(e, ProbeError::Missing { .. }), "{e}");
    }
}
