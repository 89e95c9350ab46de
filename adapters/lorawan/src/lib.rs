//! Warden's LoRaWAN adapter: Semtech UDP packet forwarders in, an edge LoRaWAN 1.0.x class A network
//! server inside. Warden alone holds the device keys, so every frame is authenticated here (join MIC,
//! DevNonce, data MIC, 32-bit frame counter) before it becomes a message; every refusal is a
//! [`Rejection`](warden_core::Rejection) with a stable cause.
//!
//! Modules follow the data flow: [`gwmp`] (forwarder datagrams) → dedup (here) → [`engine`]
//! (sessions, counters, MAC, downlink planning) using [`phy`] (frames and crypto), [`region`] (RX1/RX2)
//! and [`lpp`] (payload decoding) → events to the gateway; decided commands come back through
//! [`engine::Engine::enqueue`] and leave in the RX window after the device's next uplink.

pub mod config;
pub mod engine;
pub mod gwmp;
pub mod lpp;
pub mod phy;
pub mod region;
pub mod udp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use warden_core::{
    Adapter, AdapterContext, AdapterError, AdapterEvent, BoxFuture, CommandOutcome, CommandResult,
    DeviceId, LinkHealth, LinkState, Notice, Rejection,
};

pub use config::Config;
pub use engine::{Engine, PROTOCOL, RxInfo};

/// Builds the adapter from its `[adapters.lorawan]` section, without starting any I/O.
pub fn build(section: &toml::Value) -> Result<Box<dyn Adapter>, String> {
    Ok(Box::new(LorawanAdapter::new(Config::from_toml(section)?)?))
}

pub struct LorawanAdapter {
    cfg: Config,
    allowed: HashSet<u64>,
}

impl LorawanAdapter {
    pub fn new(cfg: Config) -> Result<Self, String> {
        let allowed = cfg
            .forwarders
            .iter()
            .map(|f| config::parse_eui(f))
            .collect::<Result<_, _>>()?;
        Ok(Self { cfg, allowed })
    }
}

impl Adapter for LorawanAdapter {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }
    fn run(self: Box<Self>, ctx: AdapterContext) -> BoxFuture<Result<(), AdapterError>> {
        Box::pin(run(*self, ctx))
    }
}

/// Frames handled (and committed) together at most: bounds one commit's work and the time
/// before the loop reads the socket again.
const MAX_BATCH: usize = 512;

/// The link name of the forwarders' socket in notices (drops) and metrics.
const UDP_LINK: &str = "lorawan:udp";

/// Distinct frames held in the dedup window at once; beyond it new frames are dropped (and logged).
const MAX_IN_FLIGHT: usize = 10_000;

struct Forwarder {
    pull_addr: Option<std::net::SocketAddr>,
    last_pull: Option<Instant>,
    state: Option<LinkState>,
}

struct Copies {
    first: Instant,
    copies: Vec<(u64, gwmp::RxPk)>,
}

struct Pending {
    device: DeviceId,
    command_id: Option<String>,
    deadline: Instant,
}

fn link_name(eui: u64) -> String {
    format!("forwarder:{eui:016x}")
}

async fn run(a: LorawanAdapter, ctx: AdapterContext) -> Result<(), AdapterError> {
    let AdapterContext {
        events,
        mut downlinks,
        credentials,
        state,
        mut shutdown,
        ..
    } = ctx;
    let emit = |ev: AdapterEvent| {
        let events = events.clone();
        async move { events.send(ev).await.map_err(|_| AdapterError::Closed) }
    };
    let cfg = a.cfg.clone();
    let bound = udp::bind(cfg.bind, cfg.udp_receive_buffer)
        .map_err(|e| AdapterError::Transport(format!("bind {}: {e}", cfg.bind)))?;
    tracing::info!(bind = %cfg.bind, region = ?cfg.region, receive_buffer = bound.receive_buffer,
        "lorawan: listening for packet forwarders");
    // Linux books twice what it can hold, so half the granted size is the usable buffer
    if bound.receive_buffer / 2 < cfg.udp_receive_buffer {
        emit(AdapterEvent::Notice(Notice {
            link: UDP_LINK.into(),
            kind: "udp-receive-buffer-capped",
            count: 1,
            detail: format!(
                "asked for a {} byte receive buffer, the kernel granted {} (raise net.core.rmem_max)",
                cfg.udp_receive_buffer,
                bound.receive_buffer / 2
            ),
        }))
        .await?;
    }
    let mut kernel_drops = bound.kernel_drops().unwrap_or(0);
    let sock = &bound.socket;
    let mut engine = Engine::new(cfg.clone(), credentials, state).map_err(AdapterError::Config)?;
    let dedup_window = Duration::from_millis(cfg.dedup_ms);
    let fwd_timeout = Duration::from_secs(cfg.forwarder_timeout_s);
    let mut fwds: HashMap<u64, Forwarder> = HashMap::new();
    let mut dedup: HashMap<Vec<u8>, Copies> = HashMap::new();
    let mut order: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut pending: HashMap<u16, Pending> = HashMap::new();
    let mut refused: HashMap<u64, Instant> = HashMap::new();
    let mut refused_moves: HashMap<u64, Instant> = HashMap::new();
    let mut token: u16 = 0;
    let mut downlinks_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut buf = vec![0u8; 65_536];
    loop {
        let next_flush = order.front().map(|(t, _)| *t + dedup_window);
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "lorawan: UDP receive failed");
                        continue;
                    }
                };
                let now = Instant::now();
                let dgram = buf.get(..n).unwrap_or(&[]);
                let up = match gwmp::parse_upstream(dgram) {
                    Ok(u) => u,
                    Err(e) => {
                        emit(AdapterEvent::Rejected(Rejection {
                            protocol: engine::PROTOCOL,
                            device: None,
                            cause: "malformed-datagram",
                            detail: format!("{n} bytes from {from}: {e}"),
                        })).await?;
                        continue;
                    }
                };
                let eui = up.eui();
                if !a.allowed.contains(&eui) {
                    // audit once a minute per EUI, not every keep-alive
                    let due = refused.get(&eui).is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60));
                    if due {
                        if refused.len() >= 4096 {
                            refused.clear(); // spoofed EUIs must not grow memory without bound
                        }
                        refused.insert(eui, now);
                        emit(AdapterEvent::Rejected(Rejection {
                            protocol: engine::PROTOCOL,
                            device: None,
                            cause: "unknown-forwarder",
                            detail: format!("gateway EUI {eui:016x} from {from} is not configured"),
                        })).await?;
                    }
                    continue;
                }
                let fwd = fwds.entry(eui).or_insert(Forwarder { pull_addr: None, last_pull: None, state: None });
                match up {
                    gwmp::Upstream::PullData { token: t, .. } => {
                        // the downlink path moves only from a silent forwarder, or when roaming is
                        // allowed: a spoofed PULL_DATA cannot redirect a live forwarder's downlinks
                        let live = fwd.last_pull.is_some_and(|l| now.duration_since(l) < fwd_timeout);
                        let moved = match fwd.pull_addr {
                            Some(prev) if prev != from => Some(prev),
                            _ => None,
                        };
                        if let Some(prev) = moved {
                            if live && !cfg.forwarder_roaming {
                                let due = refused_moves.get(&eui).is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60));
                                if due {
                                    if refused_moves.len() >= 4096 {
                                        refused_moves.clear();
                                    }
                                    refused_moves.insert(eui, now);
                                    emit(AdapterEvent::Rejected(Rejection {
                                        protocol: engine::PROTOCOL,
                                        device: None,
                                        cause: "forwarder-moved",
                                        detail: format!(
                                            "PULL_DATA for gateway {eui:016x} from {from}, while it pulls from {prev}: refused (set forwarder_roaming to allow)"
                                        ),
                                    })).await?;
                                }
                                continue;
                            }
                            emit(AdapterEvent::Notice(Notice {
                                link: link_name(eui),
                                kind: "forwarder-moved",
                                count: 1,
                                detail: format!(
                                    "downlink path moved from {prev} to {from} ({})",
                                    if live { "roaming allowed" } else { "the old path was silent" }
                                ),
                            })).await?;
                        }
                        fwd.pull_addr = Some(from);
                        fwd.last_pull = Some(now);
                        let _ = sock.send_to(&gwmp::ack(t, gwmp::PULL_ACK), from).await;
                        if fwd.state != Some(LinkState::Up) {
                            fwd.state = Some(LinkState::Up);
                            emit(AdapterEvent::Health(LinkHealth {
                                link: link_name(eui),
                                state: LinkState::Up,
                                detail: format!("PULL_DATA from {from}"),
                            })).await?;
                        }
                    }
                    gwmp::Upstream::PushData { token: t, body, .. } => {
                        let _ = sock.send_to(&gwmp::ack(t, gwmp::PUSH_ACK), from).await;
                        if let Some(s) = &body.stat {
                            let st = fwd.state.unwrap_or(LinkState::Degraded);
                            emit(AdapterEvent::Health(LinkHealth {
                                link: link_name(eui),
                                state: st,
                                detail: format!(
                                    "stat: rxnb={} rxok={} rxfw={} dwnb={} txnb={}",
                                    s.rxnb.unwrap_or(0), s.rxok.unwrap_or(0), s.rxfw.unwrap_or(0),
                                    s.dwnb.unwrap_or(0), s.txnb.unwrap_or(0)
                                ),
                            })).await?;
                        }
                        for rxpk in body.rxpk {
                            if rxpk.stat != 1 {
                                tracing::debug!(eui = format!("{eui:016x}"), "lorawan: rxpk with bad CRC dropped");
                                continue;
                            }
                            let phy = match rxpk.payload() {
                                Ok(p) => p,
                                Err(e) => {
                                    emit(AdapterEvent::Rejected(Rejection {
                                        protocol: engine::PROTOCOL,
                                        device: None,
                                        cause: "malformed",
                                        detail: format!("rxpk from {eui:016x}: {e}"),
                                    })).await?;
                                    continue;
                                }
                            };
                            let in_flight = dedup.len();
                            match dedup.get_mut(&phy) {
                                Some(c) => c.copies.push((eui, rxpk)),
                                None if in_flight >= MAX_IN_FLIGHT => {
                                    emit(AdapterEvent::Notice(Notice {
                                        link: UDP_LINK.into(),
                                        kind: "dedup-full",
                                        count: 1,
                                        detail: format!("{MAX_IN_FLIGHT} frames already in the dedup window: a frame from {eui:016x} dropped"),
                                    })).await?;
                                }
                                None => {
                                    order.push_back((now, phy.clone()));
                                    dedup.insert(phy, Copies { first: now, copies: vec![(eui, rxpk)] });
                                }
                            }
                        }
                    }
                    gwmp::Upstream::TxAck { token: t, error, .. } => {
                        let Some(p) = pending.remove(&t) else {
                            tracing::debug!(token = t, "lorawan: TX_ACK for no pending downlink");
                            continue;
                        };
                        let ok = error.as_deref().is_none_or(|e| e == "NONE");
                        if !ok {
                            tracing::warn!(device = %p.device, error = ?error, "lorawan: forwarder refused downlink");
                        }
                        if let Some(id) = p.command_id {
                            let outcome = if ok {
                                CommandOutcome::Delivered
                            } else {
                                CommandOutcome::DeviceError(format!("TX_ACK {}", error.unwrap_or_default()))
                            };
                            emit(AdapterEvent::CommandResult(CommandResult {
                                command_id: id, device: p.device, outcome, points: vec![],
                            })).await?;
                        }
                    }
                }
            }
            _ = async {
                // a deadline already passed (or a zero window) needs no timer tick
                if let Some(t) = next_flush && t > Instant::now() {
                    sleep_until(t).await
                }
            }, if next_flush.is_some() => {
                // every frame whose dedup window has closed, handled as one batch: their counters
                // share one durable commit before any of them is delivered or answered
                let now = Instant::now();
                let mut batch = Vec::new();
                while batch.len() < MAX_BATCH
                    && order.front().is_some_and(|(t, _)| *t + dedup_window <= now)
                {
                    let Some((_, key)) = order.pop_front() else { break };
                    let Some(c) = dedup.remove(&key) else { continue };
                    let copies = c.copies.len();
                    // best signal: highest SNR, then RSSI
                    let best = c.copies.into_iter().max_by(|(_, x), (_, y)| {
                        x.lsnr.unwrap_or(f64::MIN).total_cmp(&y.lsnr.unwrap_or(f64::MIN))
                            .then(x.rssi.total_cmp(&y.rssi))
                    });
                    let Some((eui, rxpk)) = best else { continue };
                    batch.push((key, RxInfo { eui, rxpk, copies }, c.first.elapsed()));
                }
                for out in engine.handle_batch(&batch) {
                    for ev in out.events {
                        emit(ev).await?;
                    }
                    if let Some(tx) = out.downlink {
                        let dest = fwds.get(&tx.eui).and_then(|f| f.pull_addr);
                        match dest {
                            Some(addr) => {
                                token = token.wrapping_add(1);
                                let _ = sock.send_to(&gwmp::pull_resp(token, &tx.txpk), addr).await;
                                tracing::debug!(device = %tx.device, window = tx.window, "lorawan: downlink sent");
                                pending.insert(token, Pending {
                                    device: tx.device,
                                    command_id: tx.command_id,
                                    deadline: Instant::now() + Duration::from_millis(cfg.tx_ack_timeout_ms),
                                });
                            }
                            None => {
                                tracing::warn!(eui = format!("{:016x}", tx.eui), "lorawan: forwarder has no downlink path (no PULL_DATA yet)");
                                if let Some(id) = tx.command_id {
                                    emit(AdapterEvent::CommandResult(CommandResult {
                                        command_id: id, device: tx.device,
                                        outcome: CommandOutcome::DeviceError("forwarder has no downlink path".into()),
                                        points: vec![],
                                    })).await?;
                                }
                            }
                        }
                    }
                }
            }
            dl = downlinks.recv(), if downlinks_open => {
                match dl {
                    None => downlinks_open = false,
                    Some(dl) => {
                        match engine.enqueue(&dl) {
                            Ok(held) => emit(AdapterEvent::CommandHeld(held)).await?,
                            Err(r) => emit(AdapterEvent::CommandResult(r)).await?,
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(d) = bound.kernel_drops()
                    && d > kernel_drops
                {
                    emit(AdapterEvent::Notice(Notice {
                        link: UDP_LINK.into(),
                        kind: "udp-receive-buffer",
                        count: d - kernel_drops,
                        detail: format!(
                            "the kernel dropped {} datagrams at {} (receive buffer full: raise udp_receive_buffer / net.core.rmem_max)",
                            d - kernel_drops,
                            cfg.bind
                        ),
                    })).await?;
                    kernel_drops = d;
                }
                for r in engine.expire_queued(now.into_std()) {
                    emit(AdapterEvent::CommandResult(r)).await?;
                }
                let expired: Vec<u16> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(t, _)| *t).collect();
                for t in expired {
                    if let Some(p) = pending.remove(&t)
                        && let Some(id) = p.command_id {
                        emit(AdapterEvent::CommandResult(CommandResult {
                            command_id: id, device: p.device, outcome: CommandOutcome::Timeout, points: vec![],
                        })).await?;
                    }
                }
                for (eui, f) in fwds.iter_mut() {
                    let stale = f.last_pull.is_none_or(|t| now.duration_since(t) > fwd_timeout);
                    if stale && f.state == Some(LinkState::Up) {
                        f.state = Some(LinkState::Down);
                        emit(AdapterEvent::Health(LinkHealth {
                            link: link_name(*eui),
                            state: LinkState::Down,
                            detail: format!("no PULL_DATA for {}s", cfg.forwarder_timeout_s),
                        })).await?;
                    }
                }
            }
        }
    }
    Ok(())
}
