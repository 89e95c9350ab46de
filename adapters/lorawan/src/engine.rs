//! The edge network server proper, free of I/O: given one deduplicated PHYPayload and the best
//! forwarder's metadata, it authenticates (join MIC, DevNonce, data MIC, 32-bit FCnt), persists the
//! session before anything is delivered, decrypts and decodes, answers MAC commands and plans the
//! class A downlink. The UDP loop in `lib.rs` feeds it; the benchmark calls it directly.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_core::{
    AdapterEvent, Announcement, Assurance, CommandHeld, CommandOutcome, CommandResult,
    CredentialLookup, DeviceId, Downlink, LinkMeta, Message, Point, Rejection, StateStore, Value,
};

use crate::config::{Config, Decoder, Encoding, parse_eui};
use crate::gwmp::{RxPk, TxPk, b64};
use crate::lpp;
use crate::phy::{self, DataFrame, DataSpec, Dir, JoinRequest, Key, MacUp, Uplink};
use crate::region::{TxParams, required_snr};

pub const PROTOCOL: &str = "lorawan";

/// The largest FCnt jump accepted (LoRaWAN 1.0 MAX_FCNT_GAP).
pub const MAX_FCNT_GAP: u32 = 16_384;
/// The largest downlink application payload accepted (fits every EU868/US915 data rate).
pub const MAX_DOWNLINK_PAYLOAD: usize = 51;
/// DevNonces remembered per device.
pub const MAX_NONCES: usize = 16_384;

/// The device id of a DevEUI: `lorawan:<16 lower-case hex digits>`.
pub fn device_id(dev_eui: u64) -> Option<DeviceId> {
    DeviceId::new(PROTOCOL, &format!("{dev_eui:016x}")).ok()
}

/// An activated device's session, persisted as JSON in the adapter's sealed state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub dev_eui: u64,
    pub dev_addr: u32,
    pub nwk_s_key: [u8; 16],
    pub app_s_key: [u8; 16],
    /// The last accepted uplink counter (32 bits), none before the first uplink.
    pub fcnt_up: Option<u32>,
    /// The next downlink counter.
    pub fcnt_down: u32,
    pub abp: bool,
    pub rx1_dr_offset: u8,
}

/// The forwarder copy a frame is handled with.
#[derive(Debug, Clone)]
pub struct RxInfo {
    pub eui: u64,
    pub rxpk: RxPk,
    /// How many forwarders heard the frame.
    pub copies: usize,
}

/// A downlink to send in a PULL_RESP.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTx {
    pub eui: u64,
    pub txpk: TxPk,
    pub device: DeviceId,
    /// The command this downlink carries, for its result.
    pub command_id: Option<String>,
    /// `rx1`, `rx2`, `join-rx1`, `join-rx2`.
    pub window: &'static str,
}

/// What handling one frame produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<AdapterEvent>,
    pub downlink: Option<PlannedTx>,
}

impl Outcome {
    fn reject(device: Option<DeviceId>, cause: &'static str, detail: String) -> Self {
        Self {
            events: vec![AdapterEvent::Rejected(Rejection {
                protocol: PROTOCOL,
                device,
                cause,
                detail,
            })],
            downlink: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Queued {
    command_id: String,
    /// Reported `timeout` (and dropped) when the device has not sent an uplink by then.
    until: std::time::Instant,
    fport: u8,
    payload: Vec<u8>,
    confirmed: bool,
}

pub struct Engine {
    cfg: Config,
    net_id: u32,
    creds: Arc<dyn CredentialLookup>,
    state: Arc<dyn StateStore>,
    sessions: HashMap<u32, Session>,
    queues: HashMap<u64, VecDeque<Queued>>,
    /// During [`Engine::handle_batch`]: the state writes of the batch, committed together.
    batch: Option<Vec<(String, Vec<u8>)>>,
}

fn session_key(addr: u32) -> String {
    format!("session/{addr:08x}")
}

fn result(device: &DeviceId, command_id: &str, outcome: CommandOutcome) -> CommandResult {
    CommandResult {
        command_id: command_id.to_owned(),
        device: device.clone(),
        outcome,
        points: vec![],
    }
}

impl Engine {
    /// Loads persisted sessions.
    pub fn new(
        cfg: Config,
        creds: Arc<dyn CredentialLookup>,
        state: Arc<dyn StateStore>,
    ) -> Result<Self, String> {
        let net_id = cfg.net_id_value()?;
        let mut sessions = HashMap::new();
        for k in state.keys("session/").map_err(|e| e.to_string())? {
            if let Some(v) = state.get(&k).map_err(|e| e.to_string())? {
                match serde_json::from_slice::<Session>(&v) {
                    Ok(s) => {
                        sessions.insert(s.dev_addr, s);
                    }
                    Err(e) => {
                        tracing::warn!(key = %k, error = %e, "lorawan: unreadable session skipped")
                    }
                }
            }
        }
        Ok(Self {
            cfg,
            net_id,
            creds,
            state,
            sessions,
            queues: HashMap::new(),
            batch: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn session(&self, dev_addr: u32) -> Option<&Session> {
        self.sessions.get(&dev_addr)
    }

    fn save_session(&mut self, s: &Session) -> Result<(), String> {
        let v = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        self.write(session_key(s.dev_addr), v)?;
        self.sessions.insert(s.dev_addr, s.clone());
        Ok(())
    }

    /// A durable write: at once, or in a batch's one commit (a later write of the same key in
    /// the batch replaces the earlier one).
    fn write(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        match &mut self.batch {
            Some(b) => {
                match b.iter_mut().find(|(k, _)| *k == key) {
                    Some(e) => e.1 = value,
                    None => b.push((key, value)),
                }
                Ok(())
            }
            None => self.state.put(&key, &value).map_err(|e| e.to_string()),
        }
    }

    /// Handles frames together with one durable commit for all of their state (counters,
    /// DevNonces, sessions): none of them is delivered or answered before it (group commit). If
    /// the commit fails, every frame of the batch is refused (`state-error`) and nothing of them
    /// goes out; their counters stay advanced in memory, so none can be replayed.
    pub fn handle_batch(&mut self, frames: &[(Vec<u8>, RxInfo, Duration)]) -> Vec<Outcome> {
        self.batch = Some(Vec::new());
        let outs: Vec<Outcome> = frames
            .iter()
            .map(|(phy, rx, elapsed)| self.handle(phy, rx, *elapsed))
            .collect();
        let writes = self.batch.take().unwrap_or_default();
        match self.state.put_many(&writes) {
            Ok(()) => outs,
            Err(e) => outs
                .into_iter()
                .map(|o| {
                    let device = o.events.iter().find_map(|ev| match ev {
                        AdapterEvent::Uplink(m) => Some(m.device.clone()),
                        _ => None,
                    });
                    Outcome::reject(device, "state-error", format!("group commit: {e}"))
                })
                .collect(),
        }
    }

    /// Handles one (deduplicated) uplink PHYPayload. `elapsed` is the time since the PUSH_DATA
    /// arrived, used to pick a receive window the device is still listening in.
    pub fn handle(&mut self, phy_bytes: &[u8], rx: &RxInfo, elapsed: Duration) -> Outcome {
        match phy::parse_uplink(phy_bytes) {
            Err(e) => Outcome::reject(None, "malformed", format!("PHYPayload: {e}")),
            Ok(Uplink::Join(jr)) => self.join(&jr, rx, elapsed),
            Ok(Uplink::Data(d)) => self.data(&d, phy_bytes, rx, elapsed),
        }
    }

    /// A session for an ABP device configured with this DevAddr, from its registry credentials.
    fn abp_session(&self, dev_addr: u32) -> Option<Session> {
        for eui in self.cfg.abp_devices() {
            let id = device_id(eui)?;
            let Some(a) = self.creds.credential(&id, "dev_addr") else {
                continue;
            };
            let addr = match a.expose() {
                [a, b, c, d] => u32::from_be_bytes([*a, *b, *c, *d]),
                _ => continue,
            };
            if addr != dev_addr {
                continue;
            }
            let n = self.creds.credential(&id, "nwk_s_key")?;
            let s = self.creds.credential(&id, "app_s_key")?;
            return Some(Session {
                dev_eui: eui,
                dev_addr,
                nwk_s_key: <[u8; 16]>::try_from(n.expose()).ok()?,
                app_s_key: <[u8; 16]>::try_from(s.expose()).ok()?,
                fcnt_up: None,
                fcnt_down: 0,
                abp: true,
                rx1_dr_offset: self.cfg.rx1_dr_offset,
            });
        }
        None
    }

    fn plan(
        &self,
        rx: &RxInfo,
        elapsed: Duration,
        first_delay_s: u8,
        rx1_offset: u8,
        phy: &[u8],
        join: bool,
    ) -> Option<(u32, TxParams, &'static str)> {
        let margin = Duration::from_millis(self.cfg.schedule_margin_ms);
        let rx1_at = Duration::from_secs(u64::from(first_delay_s));
        let rx2_at = rx1_at + Duration::from_secs(1);
        let rx1 = rx
            .rxpk
            .sf_bw()
            .and_then(|(sf, bw)| self.cfg.region.rx1(rx.rxpk.freq, sf, bw, rx1_offset));
        let rx2 = self.cfg.region.rx2(self.cfg.rx2_frequency, self.cfg.rx2_dr);
        let _ = phy;
        if elapsed + margin < rx1_at
            && let Some(p) = rx1
        {
            let t = rx
                .rxpk
                .tmst
                .wrapping_add(u32::from(first_delay_s) * 1_000_000);
            return Some((t, p, if join { "join-rx1" } else { "rx1" }));
        }
        if elapsed + margin < rx2_at
            && let Some(p) = rx2
        {
            let t = rx
                .rxpk
                .tmst
                .wrapping_add((u32::from(first_delay_s) + 1) * 1_000_000);
            return Some((t, p, if join { "join-rx2" } else { "rx2" }));
        }
        None
    }

    fn txpk(tmst: u32, p: &TxParams, phy: &[u8]) -> TxPk {
        TxPk {
            imme: false,
            tmst,
            freq: p.freq_mhz,
            rfch: 0,
            powe: p.power_dbm,
            modu: "LORA".into(),
            datr: p.datr.clone(),
            codr: "4/5".into(),
            ipol: true,
            size: phy.len() as u32,
            ncrc: true,
            data: b64(phy),
        }
    }

    fn join(&mut self, jr: &JoinRequest, rx: &RxInfo, elapsed: Duration) -> Outcome {
        let Some(device) = device_id(jr.dev_eui) else {
            return Outcome::reject(None, "malformed", "DevEUI".into());
        };
        let app_key = self
            .creds
            .credential(&device, "app_key")
            .and_then(|s| Key::from_slice(s.expose()));
        let Some(app_key) = app_key else {
            // unknown, pending or keyless: register/refresh it as pending and answer nothing
            return Outcome {
                events: vec![
                    AdapterEvent::Announce(Announcement {
                        device: Some(device.clone()),
                        serial: Some(format!("{:016x}", jr.dev_eui)),
                        // the source the gateway rate-limits new pending devices by: spoofed
                        // JoinRequests through one forwarder cannot fill the pending list
                        details: vec![("via".into(), format!("lorawan:forwarder:{:016x}", rx.eui))],
                        ..Default::default()
                    }),
                    AdapterEvent::Rejected(Rejection {
                        protocol: PROTOCOL,
                        device: Some(device),
                        cause: "not-provisioned",
                        detail: format!(
                            "JoinRequest (AppEUI {:016x}) from a device with no approved AppKey",
                            jr.app_eui
                        ),
                    }),
                ],
                downlink: None,
            };
        };
        if !phy::join_request_mic_ok(&app_key, jr) {
            return Outcome::reject(
                Some(device),
                "bad-mic",
                format!("JoinRequest MIC invalid (DevNonce {:04x})", jr.dev_nonce),
            );
        }
        let eui_hex = format!("{:016x}", jr.dev_eui);
        let nonce_key = format!("nonces/{eui_hex}");
        let mut nonces: Vec<u16> = match self.state.get(&nonce_key) {
            Ok(v) => v
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            Err(e) => return Outcome::reject(Some(device), "state-error", e.to_string()),
        };
        if nonces.contains(&jr.dev_nonce) {
            return Outcome::reject(
                Some(device),
                "devnonce-reuse",
                format!("DevNonce {:04x} was used before", jr.dev_nonce),
            );
        }
        nonces.push(jr.dev_nonce);
        if nonces.len() > MAX_NONCES {
            let extra = nonces.len() - MAX_NONCES;
            nonces.drain(..extra);
        }
        let counter = |st: &dyn StateStore, key: &str| -> Result<u32, String> {
            let cur = st
                .get(key)
                .map_err(|e| e.to_string())?
                .and_then(|b| serde_json::from_slice::<u32>(&b).ok())
                .unwrap_or(0);
            let next = cur.wrapping_add(1);
            st.put(key, next.to_string().as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(next)
        };
        let saved = serde_json::to_vec(&nonces)
            .map_err(|e| e.to_string())
            .and_then(|v| self.state.put(&nonce_key, &v).map_err(|e| e.to_string()))
            .and_then(|_| counter(self.state.as_ref(), &format!("joinnonce/{eui_hex}")))
            .and_then(|jn| Ok((jn, counter(self.state.as_ref(), "next_devaddr")?)));
        let (app_nonce, n) = match saved {
            Ok(x) => x,
            Err(e) => return Outcome::reject(Some(device), "state-error", e),
        };
        let dev_addr = ((self.net_id & 0x7f) << 25) | (n & 0x01ff_ffff);
        let rx2_dr = self
            .cfg
            .rx2_dr
            .unwrap_or_else(|| self.cfg.region.rx2_default().1);
        let ja = phy::JoinAccept {
            app_nonce: app_nonce & 0x00ff_ffff,
            net_id: self.net_id,
            dev_addr,
            rx1_dr_offset: self.cfg.rx1_dr_offset,
            rx2_dr,
            rx_delay: self.cfg.rx1_delay_s,
        };
        let (phy_out, nwk, app) = match phy::accept_join(&app_key, &ja, jr.dev_nonce) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(device = %device, error = %e, "lorawan: cannot build the JoinAccept");
                return Outcome::default();
            }
        };
        // forget the device's previous session: its counters end with it
        let old: Vec<u32> = self
            .sessions
            .values()
            .filter(|s| s.dev_eui == jr.dev_eui)
            .map(|s| s.dev_addr)
            .collect();
        for a in old {
            let _ = self.state.delete(&session_key(a));
            self.sessions.remove(&a);
        }
        let sess = Session {
            dev_eui: jr.dev_eui,
            dev_addr,
            nwk_s_key: nwk.0,
            app_s_key: app.0,
            fcnt_up: None,
            fcnt_down: 0,
            abp: false,
            rx1_dr_offset: self.cfg.rx1_dr_offset,
        };
        if let Err(e) = self.save_session(&sess) {
            return Outcome::reject(Some(device), "state-error", e);
        }
        tracing::info!(device = %device, dev_addr = format!("{dev_addr:08x}"), "lorawan: join accepted");
        let Some((tmst, params, window)) =
            self.plan(rx, elapsed, self.cfg.join_accept_delay_s, 0, &phy_out, true)
        else {
            tracing::warn!(device = %device, "lorawan: JoinAccept missed both windows");
            return Outcome::default();
        };
        Outcome {
            events: vec![],
            downlink: Some(PlannedTx {
                eui: rx.eui,
                txpk: Self::txpk(tmst, &params, &phy_out),
                device,
                command_id: None,
                window,
            }),
        }
    }

    /// Resolves the 32-bit FCnt of a data uplink and checks its MIC, or names why it is refused.
    fn resolve_fcnt(s: &Session, d: &DataFrame) -> Result<u32, (&'static str, String)> {
        let nwk = Key(s.nwk_s_key);
        let mic_at = |f: u32| d.mic_ok(&nwk, f);
        let w = u32::from(d.fcnt16);
        let bad = || ("bad-mic", format!("MIC invalid (FCnt {w})"));
        let Some(last) = s.fcnt_up else {
            return if mic_at(w) { Ok(w) } else { Err(bad()) };
        };
        let c1 = (last & 0xffff_0000) | w;
        // a newer counter: this epoch, or the next one after a 16-bit rollover
        let newer = if c1 > last {
            Some(c1)
        } else {
            c1.checked_add(0x1_0000)
        };
        if let Some(n) = newer
            && n - last <= MAX_FCNT_GAP
            && mic_at(n)
        {
            return Ok(n);
        }
        // an older (or the same) counter: this epoch, or the previous one
        let older = if c1 <= last {
            Some(c1)
        } else {
            c1.checked_sub(0x1_0000)
        };
        if let Some(o) = older
            && mic_at(o)
        {
            return Err(if o == last {
                ("replay", format!("FCnt {o} was already received"))
            } else {
                ("stale-fcnt", format!("FCnt {o} is older than {last}"))
            });
        }
        if let Some(n) = newer
            && mic_at(n)
        {
            return Err((
                "fcnt-gap",
                format!("FCnt {n} jumps more than {MAX_FCNT_GAP} past {last}"),
            ));
        }
        Err(bad())
    }

    fn data(&mut self, d: &DataFrame, raw: &[u8], rx: &RxInfo, elapsed: Duration) -> Outcome {
        let mut sess = match self.sessions.get(&d.dev_addr).cloned() {
            Some(s) => s,
            None => match self.abp_session(d.dev_addr) {
                Some(s) => s,
                None => {
                    return Outcome::reject(
                        None,
                        "unknown-devaddr",
                        format!("no session for DevAddr {:08x}", d.dev_addr),
                    );
                }
            },
        };
        let Some(mut device) = device_id(sess.dev_eui) else {
            return Outcome::reject(None, "malformed", "DevEUI".into());
        };
        // zero trust: a session outlives nothing — the device must still be active with its keys
        let still = if sess.abp {
            self.creds
                .credential(&device, "nwk_s_key")
                .is_some_and(|k| k.expose() == sess.nwk_s_key)
        } else {
            self.creds.credential(&device, "app_key").is_some()
        };
        if !still {
            match self.abp_session(d.dev_addr) {
                // An ABP device re-provisioned with new keys for the same DevAddr: the stored
                // session is replaced by one under the new keys, its counter starting afresh (a
                // frame under the old keys fails the MIC below; ABP devices reset their counter
                // when re-flashed).
                Some(fresh) if fresh.nwk_s_key != sess.nwk_s_key => {
                    let Some(id) = device_id(fresh.dev_eui) else {
                        return Outcome::reject(None, "malformed", "DevEUI".into());
                    };
                    tracing::info!(device = %id, dev_addr = format_args!("{:08x}", d.dev_addr),
                        "lorawan: ABP keys changed, the stored session is replaced");
                    sess = fresh;
                    device = id;
                }
                // The MIC first: only a frame under the stored session's keys is the device's
                // and counts against it; anything else is a stranger's.
                _ => {
                    return match Self::resolve_fcnt(&sess, d) {
                        Err(("bad-mic", detail)) => Outcome::reject(
                            None,
                            "bad-mic",
                            format!("DevAddr {:08x} (a stale session): {detail}", d.dev_addr),
                        ),
                        _ => Outcome::reject(
                            Some(device),
                            "inactive-device",
                            format!(
                                "DevAddr {:08x}: the device is no longer active or its keys changed",
                                d.dev_addr
                            ),
                        ),
                    };
                }
            }
        }
        let fcnt = match Self::resolve_fcnt(&sess, d) {
            Ok(f) => f,
            // a bad MIC proves nothing about who sent it: not the device's denial
            Err(("bad-mic", detail)) => {
                return Outcome::reject(
                    None,
                    "bad-mic",
                    format!("DevAddr {:08x} ({device}): {detail}", d.dev_addr),
                );
            }
            Err((cause, detail)) => return Outcome::reject(Some(device), cause, detail),
        };
        // persist the counter before anything is delivered or answered
        sess.fcnt_up = Some(fcnt);
        if let Err(e) = self.save_session(&sess) {
            return Outcome::reject(Some(device), "state-error", e);
        }
        let nwk = Key(sess.nwk_s_key);
        let app = Key(sess.app_s_key);
        let mut macs = phy::parse_mac_up(&d.fopts);
        let mut points = Vec::new();
        match d.fport {
            Some(0) => {
                if !d.fopts.is_empty() {
                    return Outcome::reject(
                        Some(device),
                        "malformed",
                        "MAC commands in both FOpts and FPort 0".into(),
                    );
                }
                match d.decrypt(&nwk, &app, fcnt) {
                    Ok(plain) => macs = phy::parse_mac_up(&plain),
                    Err(e) => return Outcome::reject(Some(device), "malformed", e.to_string()),
                }
            }
            Some(port) => {
                let plain = match d.decrypt(&nwk, &app, fcnt) {
                    Ok(p) => p,
                    Err(e) => return Outcome::reject(Some(device), "malformed", e.to_string()),
                };
                let model = self.cfg.model_of(&format!("{:016x}", sess.dev_eui));
                let dec = model
                    .ports
                    .get(&port.to_string())
                    .copied()
                    .unwrap_or(model.decoder);
                match dec {
                    Decoder::Raw => {
                        points.push(Point::new(format!("payload_{port}"), Value::Bytes(plain)))
                    }
                    Decoder::CayenneLpp => match lpp::decode(&plain) {
                        Ok(p) => points = p,
                        Err(e) => {
                            return Outcome::reject(
                                Some(device),
                                "undecodable",
                                format!("FPort {port}: {e}"),
                            );
                        }
                    },
                }
            }
            None => {}
        }
        let snr = rx.rxpk.lsnr.unwrap_or(0.0);
        let mut answers = Vec::new();
        let mut link_checked = false;
        for m in &macs {
            match m {
                // one answer however many requests: FOpts hold 15 bytes
                MacUp::LinkCheckReq if !link_checked => {
                    link_checked = true;
                    let sf = rx.rxpk.sf_bw().map_or(12, |(sf, _)| sf);
                    let margin = (snr - required_snr(sf)).clamp(0.0, 254.0) as u8;
                    answers.extend(phy::link_check_ans(margin, rx.copies.min(255) as u8));
                }
                MacUp::LinkCheckReq => {}
                MacUp::DeviceTimeReq => {
                    tracing::info!(device = %device, "lorawan: DeviceTimeReq ignored (not supported)")
                }
                MacUp::Answer { cid, payload } => {
                    tracing::debug!(device = %device, cid, payload = ?payload, "lorawan: MAC answer")
                }
                MacUp::Unknown { cid, rest } => tracing::warn!(
                    device = %device,
                    cid,
                    remaining = rest.len(),
                    "lorawan: unknown MAC command ignored"
                ),
            }
        }
        let mut out = Outcome::default();
        if !points.is_empty() {
            let mut msg = Message::telemetry(device.clone(), points);
            msg.assurance = Assurance::SharedKey;
            msg.fresh = true;
            msg.link = LinkMeta {
                rssi: Some(rx.rxpk.rssi as f32),
                snr: rx.rxpk.lsnr.map(|s| s as f32),
                lqi: None,
            };
            msg.raw = raw.to_vec();
            out.events.push(AdapterEvent::Uplink(msg));
        }
        let queue = self.queues.entry(sess.dev_eui).or_default();
        if !(d.confirmed() || !answers.is_empty() || !queue.is_empty()) {
            return out;
        }
        let cmd = queue.pop_front();
        let more = !queue.is_empty();
        let fcnt_down = sess.fcnt_down;
        sess.fcnt_down = sess.fcnt_down.wrapping_add(1);
        if let Err(e) = self.save_session(&sess) {
            tracing::error!(device = %device, error = %e, "lorawan: cannot persist FCntDown; no downlink");
            if let Some(c) = cmd {
                out.events.push(AdapterEvent::CommandResult(result(
                    &device,
                    &c.command_id,
                    CommandOutcome::DeviceError(format!("state store: {e}")),
                )));
            }
            return out;
        }
        let spec = DataSpec {
            confirmed: cmd.as_ref().is_some_and(|c| c.confirmed),
            ack: d.confirmed(),
            adr: false,
            fpending: more,
            fopts: answers,
            fport: cmd.as_ref().map(|c| c.fport),
            payload: cmd.as_ref().map(|c| c.payload.clone()).unwrap_or_default(),
        };
        let phy_out = match phy::build_data(Dir::Down, &nwk, &app, d.dev_addr, fcnt_down, &spec) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(device = %device, error = %e, "lorawan: cannot build the downlink");
                if let Some(c) = cmd {
                    out.events.push(AdapterEvent::CommandResult(result(
                        &device,
                        &c.command_id,
                        CommandOutcome::DeviceError(format!("downlink: {e}")),
                    )));
                }
                return out;
            }
        };
        match self.plan(
            rx,
            elapsed,
            self.cfg.rx1_delay_s,
            sess.rx1_dr_offset,
            &phy_out,
            false,
        ) {
            Some((tmst, params, window)) => {
                out.downlink = Some(PlannedTx {
                    eui: rx.eui,
                    txpk: Self::txpk(tmst, &params, &phy_out),
                    device,
                    command_id: cmd.map(|c| c.command_id),
                    window,
                });
            }
            None => {
                tracing::warn!(device = %device, "lorawan: downlink missed RX1 and RX2");
                if let Some(c) = cmd {
                    out.events.push(AdapterEvent::CommandResult(result(
                        &device,
                        &c.command_id,
                        CommandOutcome::Timeout,
                    )));
                }
            }
        }
        out
    }

    /// Commands whose device sent no uplink within `downlink_wait_s`: dropped, answered `timeout`.
    pub fn expire_queued(&mut self, now: std::time::Instant) -> Vec<CommandResult> {
        let mut out = Vec::new();
        for (eui, q) in &mut self.queues {
            let Some(device) = device_id(*eui) else {
                continue;
            };
            q.retain(|c| {
                let keep = c.until > now;
                if !keep {
                    out.push(result(&device, &c.command_id, CommandOutcome::Timeout));
                }
                keep
            });
        }
        self.queues.retain(|_, q| !q.is_empty());
        out
    }

    /// Queues a decided command for the device's next uplink (what the gateway is told: it is
    /// held, and for how long), or says why it cannot be sent.
    pub fn enqueue(&mut self, dl: &Downlink) -> Result<CommandHeld, CommandResult> {
        let err = |m: String| result(&dl.device, &dl.command_id, CommandOutcome::DeviceError(m));
        let eui = parse_eui(dl.device.address()).map_err(err)?;
        let model = self.cfg.model_of(dl.device.address());
        let arg = |n: &str| {
            dl.command
                .args
                .iter()
                .find(|p| p.name == n)
                .map(|p| &p.value)
        };
        let bytes_arg = || -> Result<Vec<u8>, String> {
            match arg("payload") {
                Some(Value::Bytes(b)) => Ok(b.clone()),
                Some(Value::Text(t)) => {
                    hex::decode(t.trim()).map_err(|_| "`payload` is not hex".to_string())
                }
                _ => Err("`payload` (bytes or hex text) is required".into()),
            }
        };
        let (fport, payload, confirmed) = if let Some(spec) = model.commands.get(&dl.command.name) {
            let int = || -> Result<i64, String> {
                match arg("value") {
                    Some(Value::Int(i)) => Ok(*i),
                    Some(Value::Float(f)) if f.fract() == 0.0 => Ok(*f as i64),
                    _ => Err("an integer `value` is required".into()),
                }
            };
            let range = |v: i64, lo: i64, hi: i64| {
                if (lo..=hi).contains(&v) {
                    Ok(v)
                } else {
                    Err(format!("`value` {v} is out of range {lo}..={hi}"))
                }
            };
            let payload = match spec.encoding {
                Encoding::U8 => vec![range(int().map_err(err)?, 0, 255).map_err(err)? as u8],
                Encoding::U16be => (range(int().map_err(err)?, 0, 65535).map_err(err)? as u16)
                    .to_be_bytes()
                    .to_vec(),
                Encoding::I16be => (range(int().map_err(err)?, -32768, 32767).map_err(err)? as i16)
                    .to_be_bytes()
                    .to_vec(),
                Encoding::U32be => (range(int().map_err(err)?, 0, u32::MAX.into()).map_err(err)?
                    as u32)
                    .to_be_bytes()
                    .to_vec(),
                Encoding::Bytes => bytes_arg().map_err(err)?,
            };
            (spec.fport, payload, spec.confirmed)
        } else if dl.command.name == "send" {
            let fport = match arg("fport") {
                Some(Value::Int(p)) if (1..=223).contains(p) => *p as u8,
                _ => return Err(err("`fport` 1-223 is required".into())),
            };
            let confirmed = matches!(arg("confirmed"), Some(Value::Bool(true)));
            (fport, bytes_arg().map_err(err)?, confirmed)
        } else {
            return Err(err(format!(
                "command `{}` is not defined for this device's model",
                dl.command.name
            )));
        };
        if payload.len() > MAX_DOWNLINK_PAYLOAD {
            return Err(err(format!(
                "payload of {} bytes exceeds {MAX_DOWNLINK_PAYLOAD}",
                payload.len()
            )));
        }
        let cap = self.cfg.downlink_queue;
        let q = self.queues.entry(eui).or_default();
        if q.len() >= cap {
            return Err(err(format!("downlink queue full ({cap} commands)")));
        }
        let wait = std::time::Duration::from_secs(self.cfg.downlink_wait_s);
        q.push_back(Queued {
            command_id: dl.command_id.clone(),
            until: std::time::Instant::now() + wait,
            fport,
            payload,
            confirmed,
        });
        Ok(CommandHeld {
            command_id: dl.command_id.clone(),
            device: dl.device.clone(),
            wait,
            reason: format!(
                "class A: sent in the receive window after the device's next uplink (waits up to {} s)",
                self.cfg.downlink_wait_s
            ),
        })
    }
}
