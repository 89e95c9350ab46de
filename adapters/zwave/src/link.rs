//! The Serial API's link layer: one task owns the controller's byte stream, acknowledges every
//! frame the controller sends at once (the controller retransmits after 1.6 s without an ACK),
//! answers NAK to corrupt frames, and runs one host request at a time through its
//! request → ACK → response → callback sequence with the guide's timeouts and retransmissions.
//!
//! Frames the controller sends on its own (node reports, node information, inclusion progress)
//! go out on a bounded channel with `try_send`: the link never waits on its consumer, so a slow
//! consumer can cost dropped reports (counted) but never a deadlock or a missed ACK. Every wait
//! has a deadline, so a lost ACK, response or callback fails that one request and frees the link.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::frame::{ACK, Decoder, Frame, FrameType, NAK, Unit};

/// Link timing, from the Serial API host guide unless noted.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long the controller has to ACK a frame.
    pub ack: Duration,
    /// How long the controller has to answer a request that has a response.
    pub response: Duration,
    /// How long a callback (e.g. SEND_DATA's transmit report) may take.
    pub callback: Duration,
    /// Retransmissions after a NAK, CAN or missing ACK (the guide allows 3).
    pub retries: u8,
    /// An unfinished frame is dropped after this long.
    pub rx_frame: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ack: Duration::from_millis(1600),
            response: Duration::from_secs(10),
            callback: Duration::from_secs(65),
            retries: 3,
            rx_frame: Duration::from_millis(1500),
        }
    }
}

/// What a request waits for after its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Only the ACK (e.g. ADD_NODE_TO_NETWORK, whose progress arrives as unsolicited callbacks).
    Ack,
    Response,
    /// A response whose first byte is non-zero when the controller accepted the request, then
    /// a callback carrying `callback_id` as its first byte.
    ResponseAndCallback {
        callback_id: u8,
    },
    /// REQUEST_NODE_INFO: a non-zero response, then the APPLICATION_UPDATE that carries the
    /// node's information (or says the request failed). The controller takes no other request
    /// meanwhile, so the link holds the queue until it arrives.
    ResponseAndNodeInfo {
        node: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link to the controller is closed")]
    Closed,
    #[error("the controller did not acknowledge the frame after {0} attempts")]
    NoAck(u8),
    #[error("no response from the controller within {0:?}")]
    ResponseTimeout(Duration),
    #[error("no callback from the controller within {0:?}")]
    CallbackTimeout(Duration),
    #[error("the controller refused the request (busy or invalid)")]
    Refused,
    #[error("serial I/O: {0}")]
    Io(String),
    #[error("frame: {0}")]
    Encode(String),
}

/// What a completed request got back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub response: Option<Frame>,
    pub callback: Option<Frame>,
}

/// One queued request (opaque outside the link).
pub struct Call {
    frame: Frame,
    expect: Expect,
    reply: oneshot::Sender<Result<Reply, LinkError>>,
}

/// Counters the adapter reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub bad_frames: AtomicU64,
    pub garbage_bytes: AtomicU64,
    pub retransmits: AtomicU64,
    pub unexpected: AtomicU64,
    pub dropped_events: AtomicU64,
    pub incomplete_frames: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A cheap handle for making requests on the link.
#[derive(Clone)]
pub struct LinkHandle {
    calls: mpsc::Sender<Call>,
    next_callback: Arc<AtomicU8>,
}

impl LinkHandle {
    /// A callback id for the next request (1–255; 0 means "no callback" to the controller).
    pub fn callback_id(&self) -> u8 {
        loop {
            let id = self.next_callback.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub async fn call(&self, func: u8, data: Vec<u8>, expect: Expect) -> Result<Reply, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .send(Call {
                frame: Frame::request(func, data),
                expect,
                reply: tx,
            })
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.map_err(|_| LinkError::Closed)?
    }

    /// A request with a response, returning the response's data.
    pub async fn ask(&self, func: u8, data: Vec<u8>) -> Result<Vec<u8>, LinkError> {
        let r = self.call(func, data, Expect::Response).await?;
        Ok(r.response.map(|f| f.data).unwrap_or_default())
    }
}

/// The link's halves: the handle for requests and the task that owns the stream.
pub fn new(capacity: usize) -> (LinkHandle, mpsc::Receiver<Call>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        LinkHandle {
            calls: tx,
            next_callback: Arc::new(AtomicU8::new(1)),
        },
        rx,
    )
}

/// Request queue type, so the runtime can hold it across reconnects without naming `Call`.
pub type Requests = mpsc::Receiver<Call>;

enum Phase {
    /// Sent; waiting for ACK (attempt counts from 1).
    Ack {
        attempt: u8,
    },
    /// NAK/CAN/ACK timeout: resend at the deadline.
    Resend {
        attempt: u8,
    },
    Response,
    Callback(Awaited),
}

#[derive(Clone, Copy)]
enum Awaited {
    /// A request frame of the same function whose first byte is this callback id.
    Id(u8),
    /// APPLICATION_UPDATE: node info received from this node, or request failed.
    NodeInfo(u8),
}

impl Awaited {
    fn matches(self, func: u8, frame: &Frame) -> bool {
        match self {
            Self::Id(id) => frame.func == func && frame.data.first() == Some(&id),
            Self::NodeInfo(node) => {
                frame.func == APPLICATION_UPDATE
                    && match frame.data.first() {
                        Some(0x84) => frame.data.get(1) == Some(&node),
                        Some(0x81) => true,
                        _ => false,
                    }
            }
        }
    }
}

/// The function id of APPLICATION_UPDATE, which answers REQUEST_NODE_INFO.
const APPLICATION_UPDATE: u8 = 0x49;

struct InFlight {
    call: Call,
    bytes: Vec<u8>,
    phase: Phase,
    deadline: Instant,
    response: Option<Frame>,
}

impl InFlight {
    fn finish(self, r: Result<Reply, LinkError>) {
        let _ = self.call.reply.send(r);
    }
}

/// Runs the link until the stream fails or closes (the error says which) or every handle is gone
/// (`Ok`). Requests queued when it returns stay queued for the next run (after a reconnect).
pub async fn run<S>(
    stream: S,
    timing: Timing,
    calls: &mut Requests,
    events: &mpsc::Sender<Frame>,
    counters: &Counters,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut dec = Decoder::new();
    let mut buf = [0u8; 512];
    let mut flight: Option<InFlight> = None;
    let mut rx_deadline: Option<Instant> = None;
    let io = |e: std::io::Error| LinkError::Io(e.to_string());

    loop {
        let deadline = flight.as_ref().map(|f| f.deadline);
        tokio::select! {
            biased;
            n = rd.read(&mut buf) => {
                let n = n.map_err(io)?;
                if n == 0 {
                    if let Some(f) = flight.take() { f.finish(Err(LinkError::Closed)); }
                    return Err(LinkError::Io("the controller closed the connection".into()));
                }
                let units = dec.push(buf.get(..n).unwrap_or(&[]));
                rx_deadline = (dec.pending() > 0).then(|| Instant::now() + timing.rx_frame);
                for u in units {
                    match u {
                        Unit::Frame(frame) => {
                            Counters::add(&counters.frames_in, 1);
                            wr.write_all(&[ACK]).await.map_err(io)?;
                            flight = deliver(flight, frame, &timing, events, counters);
                        }
                        Unit::BadChecksum | Unit::Malformed(_) => {
                            Counters::add(&counters.bad_frames, 1);
                            wr.write_all(&[NAK]).await.map_err(io)?;
                        }
                        Unit::Garbage(n) => Counters::add(&counters.garbage_bytes, n as u64),
                        Unit::Ack => {
                            if let Some(mut f) = flight.take() {
                                if matches!(f.phase, Phase::Ack { .. }) {
                                    match f.call.expect {
                                        Expect::Ack => f.finish(Ok(Reply::default())),
                                        Expect::Response
                                        | Expect::ResponseAndCallback { .. }
                                        | Expect::ResponseAndNodeInfo { .. } => {
                                            f.phase = Phase::Response;
                                            f.deadline = Instant::now() + timing.response;
                                            flight = Some(f);
                                        }
                                    }
                                } else {
                                    Counters::add(&counters.unexpected, 1);
                                    flight = Some(f);
                                }
                            } else {
                                Counters::add(&counters.unexpected, 1);
                            }
                        }
                        Unit::Nak | Unit::Can => {
                            if let Some(f) = flight.as_mut()
                                && let Phase::Ack { attempt } = f.phase
                            {
                                f.phase = Phase::Resend { attempt };
                                f.deadline = Instant::now() + resend_delay(attempt);
                            } else {
                                Counters::add(&counters.unexpected, 1);
                            }
                        }
                    }
                }
                if let Some(f) = flight.as_mut()
                    && let Phase::Resend { attempt } = f.phase
                    && attempt > timing.retries
                    && let Some(f) = flight.take()
                {
                    f.finish(Err(LinkError::NoAck(attempt)));
                }
            }
            _ = sleep_opt(deadline) => {
                if let Some(mut f) = flight.take() {
                    match f.phase {
                        Phase::Ack { attempt } => {
                            if attempt > timing.retries {
                                f.finish(Err(LinkError::NoAck(attempt)));
                            } else {
                                f.phase = Phase::Resend { attempt };
                                f.deadline = Instant::now() + resend_delay(attempt);
                                flight = Some(f);
                            }
                        }
                        Phase::Resend { attempt } => {
                            if attempt > timing.retries {
                                f.finish(Err(LinkError::NoAck(attempt)));
                            } else {
                                Counters::add(&counters.retransmits, 1);
                                wr.write_all(&f.bytes).await.map_err(io)?;
                                f.phase = Phase::Ack { attempt: attempt + 1 };
                                f.deadline = Instant::now() + timing.ack;
                                flight = Some(f);
                            }
                        }
                        Phase::Response => f.finish(Err(LinkError::ResponseTimeout(timing.response))),
                        Phase::Callback(_) => f.finish(Err(LinkError::CallbackTimeout(timing.callback))),
                    }
                }
            }
            _ = sleep_opt(rx_deadline) => {
                let n = dec.reset();
                if n > 0 {
                    Counters::add(&counters.incomplete_frames, 1);
                }
                rx_deadline = None;
            }
            call = calls.recv(), if flight.is_none() => {
                let Some(call) = call else { return Ok(()) };
                match call.frame.encode() {
                    Ok(bytes) => {
                        wr.write_all(&bytes).await.map_err(io)?;
                        flight = Some(InFlight {
                            call,
                            bytes,
                            phase: Phase::Ack { attempt: 1 },
                            deadline: Instant::now() + timing.ack,
                            response: None,
                        });
                    }
                    Err(e) => { let _ = call.reply.send(Err(LinkError::Encode(e.to_string()))); }
                }
            }
        }
    }
}

/// The guide's back-off before retransmission `n` (1-based): 100 ms + (n − 1) × 1 s.
fn resend_delay(attempt: u8) -> Duration {
    Duration::from_millis(100 + 1000 * u64::from(attempt.saturating_sub(1)))
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Routes a frame from the controller: to the request in flight when it answers it, otherwise
/// to the event channel (requests) or the unexpected counter (stray responses).
fn deliver(
    flight: Option<InFlight>,
    frame: Frame,
    timing: &Timing,
    events: &mpsc::Sender<Frame>,
    counters: &Counters,
) -> Option<InFlight> {
    if let Some(mut f) = flight {
        let func = f.call.frame.func;
        match (&f.phase, frame.kind) {
            (Phase::Response, FrameType::Response) if frame.func == func => {
                let awaited = match f.call.expect {
                    Expect::ResponseAndCallback { callback_id } => Some(Awaited::Id(callback_id)),
                    Expect::ResponseAndNodeInfo { node } => Some(Awaited::NodeInfo(node)),
                    Expect::Ack | Expect::Response => None,
                };
                let Some(awaited) = awaited else {
                    f.finish(Ok(Reply {
                        response: Some(frame),
                        callback: None,
                    }));
                    return None;
                };
                if frame.data.first().copied().unwrap_or(0) == 0 {
                    f.finish(Err(LinkError::Refused));
                    return None;
                }
                f.response = Some(frame);
                f.phase = Phase::Callback(awaited);
                f.deadline = Instant::now() + timing.callback;
                return Some(f);
            }
            (Phase::Callback(awaited), FrameType::Request) if awaited.matches(func, &frame) => {
                let response = f.response.take();
                f.finish(Ok(Reply {
                    response,
                    callback: Some(frame),
                }));
                return None;
            }
            _ => {}
        }
        route(frame, events, counters);
        return Some(f);
    }
    route(frame, events, counters);
    None
}

fn route(frame: Frame, events: &mpsc::Sender<Frame>, counters: &Counters) {
    if frame.kind == FrameType::Response {
        Counters::add(&counters.unexpected, 1);
        return;
    }
    if events.try_send(frame).is_err() {
        Counters::add(&counters.dropped_events, 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]
    use super::*;
    use crate::frame::{CAN, checksum};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    fn quick() -> Timing {
        Timing {
            ack: Duration::from_millis(200),
            response: Duration::from_millis(300),
            callback: Duration::from_millis(300),
            retries: 3,
            rx_frame: Duration::from_millis(100),
        }
    }

    async fn read_unit(peer: &mut DuplexStream, dec: &mut Decoder) -> Unit {
        let mut b = [0u8; 1];
        loop {
            peer.read_exact(&mut b).await.unwrap();
            if let Some(u) = dec.push(&b).into_iter().next() {
                return u;
            }
        }
    }

    /// The next data frame the link sent, skipping the ACKs it gave the peer's frames.
    async fn read_frame(peer: &mut DuplexStream, dec: &mut Decoder) -> Frame {
        loop {
            match read_unit(peer, dec).await {
                Unit::Ack => continue,
                Unit::Frame(f) => return f,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    struct Rig {
        handle: LinkHandle,
        peer: DuplexStream,
        events: mpsc::Receiver<Frame>,
        counters: Arc<Counters>,
        task: tokio::task::JoinHandle<Result<(), LinkError>>,
    }

    fn rig(timing: Timing) -> Rig {
        let (ours, peer) = duplex(4096);
        let (handle, mut calls) = new(8);
        let (etx, erx) = mpsc::channel(4);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move { run(ours, timing, &mut calls, &etx, &c).await });
        Rig {
            handle,
            peer,
            events: erx,
            counters,
            task,
        }
    }

    #[tokio::test]
    async fn a_send_data_runs_through_ack_response_and_callback() {
        let mut r = rig(quick());
        let h = r.handle.clone();
        let call = tokio::spawn(async move {
            h.call(
                0x13,
                vec![2, 3, 0x25, 1, 0xff, 0x25, 7],
                Expect::ResponseAndCallback { callback_id: 7 },
            )
            .await
        });
        let mut dec = Decoder::new();
        let f = read_frame(&mut r.peer, &mut dec).await;
        assert_eq!(f.func, 0x13);
        // ACK, the response, an unrelated report in between, then the callback.
        let mut out = vec![ACK];
        out.extend(Frame::response(0x13, vec![1]).encode().unwrap());
        out.extend(
            Frame::request(0x04, vec![0, 3, 3, 0x25, 3, 0xff])
                .encode()
                .unwrap(),
        );
        out.extend(Frame::request(0x13, vec![7, 0]).encode().unwrap());
        r.peer.write_all(&out).await.unwrap();
        let reply = call.await.unwrap().unwrap();
        assert_eq!(reply.callback.unwrap().data, vec![7, 0]);
        assert_eq!(r.events.recv().await.unwrap().func, 0x04);
        // The link ACKed the three frames the controller sent.
        for _ in 0..3 {
            assert_eq!(read_unit(&mut r.peer, &mut dec).await, Unit::Ack);
        }
        r.task.abort();
    }

    #[tokio::test]
    async fn nak_and_can_are_retransmitted_and_a_silent_controller_fails_the_request() {
        let mut r = rig(quick());
        let h = r.handle.clone();
        let call = tokio::spawn(async move { h.ask(0x15, vec![]).await });
        let mut dec = Decoder::new();
        let mut sends = 0;
        for answer in [NAK, CAN] {
            read_frame(&mut r.peer, &mut dec).await;
            sends += 1;
            r.peer.write_all(&[answer]).await.unwrap();
        }
        // Third attempt: ACK + response.
        read_frame(&mut r.peer, &mut dec).await;
        sends += 1;
        let mut out = vec![ACK];
        out.extend(
            Frame::response(0x15, b"Z-Wave 7.17\0\x01".to_vec())
                .encode()
                .unwrap(),
        );
        r.peer.write_all(&out).await.unwrap();
        assert_eq!(call.await.unwrap().unwrap().len(), 13);
        assert_eq!(sends, 3);
        assert_eq!(r.counters.retransmits.load(Ordering::Relaxed), 2);

        // Now nothing answers: 1 + 3 retries, then NoAck; the link stays usable.
        let h = r.handle.clone();
        let call = tokio::spawn(async move { h.ask(0x15, vec![]).await });
        for _ in 0..4 {
            read_frame(&mut r.peer, &mut dec).await;
        }
        assert_eq!(call.await.unwrap(), Err(LinkError::NoAck(4)));
        let h = r.handle.clone();
        let call = tokio::spawn(async move { h.ask(0x20, vec![]).await });
        read_frame(&mut r.peer, &mut dec).await;
        let mut out = vec![ACK];
        out.extend(
            Frame::response(0x20, vec![0xc0, 0xff, 0xee, 0x01, 0x01])
                .encode()
                .unwrap(),
        );
        r.peer.write_all(&out).await.unwrap();
        assert_eq!(
            call.await.unwrap().unwrap(),
            vec![0xc0, 0xff, 0xee, 0x01, 0x01]
        );
        r.task.abort();
    }

    #[tokio::test]
    async fn a_lost_response_or_callback_times_out_and_frees_the_link() {
        let mut r = rig(quick());
        let mut dec = Decoder::new();
        let h = r.handle.clone();
        let call = tokio::spawn(async move {
            h.call(
                0x13,
                vec![2, 1, 0x20, 9],
                Expect::ResponseAndCallback { callback_id: 9 },
            )
            .await
        });
        read_frame(&mut r.peer, &mut dec).await;
        let mut out = vec![ACK];
        out.extend(Frame::response(0x13, vec![1]).encode().unwrap());
        r.peer.write_all(&out).await.unwrap();
        assert!(matches!(
            call.await.unwrap(),
            Err(LinkError::CallbackTimeout(_))
        ));

        let h = r.handle.clone();
        let call = tokio::spawn(async move { h.ask(0x15, vec![]).await });
        read_frame(&mut r.peer, &mut dec).await;
        r.peer.write_all(&[ACK]).await.unwrap();
        assert!(matches!(
            call.await.unwrap(),
            Err(LinkError::ResponseTimeout(_))
        ));

        // A refused SEND_DATA (response 0) fails at once instead of waiting for a callback.
        let h = r.handle.clone();
        let call = tokio::spawn(async move {
            h.call(
                0x13,
                vec![2, 1, 0x20, 9],
                Expect::ResponseAndCallback { callback_id: 9 },
            )
            .await
        });
        read_frame(&mut r.peer, &mut dec).await;
        let mut out = vec![ACK];
        out.extend(Frame::response(0x13, vec![0]).encode().unwrap());
        r.peer.write_all(&out).await.unwrap();
        assert_eq!(call.await.unwrap(), Err(LinkError::Refused));
        r.task.abort();
    }

    #[tokio::test]
    async fn corrupt_frames_get_nak_garbage_is_counted_and_a_full_event_queue_drops_not_blocks() {
        let mut r = rig(quick());
        let mut dec = Decoder::new();
        let mut bad = Frame::request(0x04, vec![0, 3, 2, 0x20, 3])
            .encode()
            .unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        r.peer.write_all(&bad).await.unwrap();
        assert_eq!(read_unit(&mut r.peer, &mut dec).await, Unit::Nak);
        r.peer.write_all(&[0xaa, 0xbb]).await.unwrap();
        // Ten reports into a queue of four that nobody reads: all ACKed, six dropped.
        for i in 0..10u8 {
            r.peer
                .write_all(
                    &Frame::request(0x04, vec![0, 3, 3, 0x20, 3, i])
                        .encode()
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(read_unit(&mut r.peer, &mut dec).await, Unit::Ack);
        }
        assert_eq!(r.counters.dropped_events.load(Ordering::Relaxed), 6);
        assert_eq!(r.counters.garbage_bytes.load(Ordering::Relaxed), 2);
        assert_eq!(r.events.recv().await.unwrap().data[5], 0);
        // An unfinished frame is dropped after the RX timeout and the stream resynchronises.
        r.peer.write_all(&[0x01, 0x09, 0x00]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.counters.incomplete_frames.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "incomplete frame never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let good = Frame::request(0x04, vec![0, 3, 3, 0x20, 3, 0x42])
            .encode()
            .unwrap();
        r.peer.write_all(&good).await.unwrap();
        assert_eq!(read_unit(&mut r.peer, &mut dec).await, Unit::Ack);
        let _ = checksum(&[]);
        r.task.abort();
    }

    #[tokio::test]
    async fn request_node_info_holds_the_link_until_the_application_update_arrives() {
        let mut r = rig(quick());
        let mut dec = Decoder::new();
        let h = r.handle.clone();
        let call = tokio::spawn(async move {
            h.call(0x60, vec![3], Expect::ResponseAndNodeInfo { node: 3 })
                .await
        });
        read_frame(&mut r.peer, &mut dec).await;
        // A second request queues behind it: nothing is written until the node info arrives.
        let h = r.handle.clone();
        let second = tokio::spawn(async move { h.ask(0x15, vec![]).await });
        let mut out = vec![ACK];
        out.extend(Frame::response(0x60, vec![1]).encode().unwrap());
        // Another node's unsolicited NIF is not the answer; node 3's is.
        out.extend(
            Frame::request(0x49, vec![0x84, 2, 3, 4, 0x10, 1])
                .encode()
                .unwrap(),
        );
        out.extend(
            Frame::request(0x49, vec![0x84, 3, 4, 4, 0x21, 1, 0x31])
                .encode()
                .unwrap(),
        );
        r.peer.write_all(&out).await.unwrap();
        let reply = call.await.unwrap().unwrap();
        assert_eq!(reply.callback.unwrap().data[1], 3);
        assert_eq!(r.events.recv().await.unwrap().data[1], 2);
        let f = read_frame(&mut r.peer, &mut dec).await;
        assert_eq!(f.func, 0x15, "the queued request goes only now");
        let mut out = vec![ACK];
        out.extend(Frame::response(0x15, vec![0x5a, 1]).encode().unwrap());
        r.peer.write_all(&out).await.unwrap();
        assert!(second.await.unwrap().is_ok());
        r.task.abort();
    }

    #[tokio::test]
    async fn a_closed_stream_fails_the_request_in_flight() {
        let r = rig(quick());
        let h = r.handle.clone();
        let call = tokio::spawn(async move { h.ask(0x15, vec![]).await });
        let mut peer = r.peer;
        let mut dec = Decoder::new();
        read_frame(&mut peer, &mut dec).await;
        drop(peer);
        assert_eq!(call.await.unwrap(), Err(LinkError::Closed));
        assert!(matches!(r.task.await.unwrap(), Err(LinkError::Io(_))));
    }
}
