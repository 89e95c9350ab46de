//! Driver tests against an in-memory fake NCP (ASH frames from our own codec, whose bytes are
//! pinned to bellows vectors in `ash`/`frame`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::EzspCoordinator;
use super::ash::{Decoder, Frame, encode};
use super::frame::id;
use crate::coordinator::{CoordinatorError, CoordinatorEvent, Ieee, SendStatus};

const WAIT: Duration = Duration::from_secs(5);

/// A scripted NCP: answers RST, ACKs DATA, replies to EZSP commands.
struct FakeNcp {
    io: DuplexStream,
    dec: Decoder,
    tx_seq: u8,
    rx_seq: u8,
    pending: Vec<Frame>,
}

impl FakeNcp {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            dec: Decoder::new(),
            tx_seq: 0,
            rx_seq: 0,
            pending: Vec::new(),
        }
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if !self.pending.is_empty() {
                return Some(self.pending.remove(0));
            }
            let mut buf = [0u8; 256];
            let n = tokio::time::timeout(WAIT, self.io.read(&mut buf))
                .await
                .expect("fake NCP waited too long")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.pending
                .extend(self.dec.feed(&buf[..n]).into_iter().flatten());
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn send_ezsp(&mut self, payload: Vec<u8>) {
        let f = Frame::Data {
            frm_num: self.tx_seq,
            re_tx: false,
            ack_num: self.rx_seq,
            payload,
        };
        self.tx_seq = (self.tx_seq + 1) & 7;
        self.write(&encode(&f)).await;
    }

    /// Next host DATA frame (ACKing it unless `ack` is false); other frames are skipped.
    async fn next_command(&mut self, ack: bool) -> Option<(bool, Vec<u8>)> {
        loop {
            match self.next_frame().await? {
                Frame::Rst => {
                    self.tx_seq = 0;
                    self.rx_seq = 0;
                    self.write(&encode(&Frame::RstAck {
                        version: 2,
                        reset_code: 0x0b,
                    }))
                    .await;
                }
                Frame::Data {
                    frm_num,
                    re_tx,
                    payload,
                    ..
                } => {
                    if frm_num == self.rx_seq {
                        self.rx_seq = (self.rx_seq + 1) & 7;
                    }
                    if ack {
                        self.write(&encode(&Frame::Ack {
                            ack_num: self.rx_seq,
                            not_ready: false,
                        }))
                        .await;
                    }
                    return Some((re_tx, payload));
                }
                _ => {}
            }
        }
    }

    async fn reply(&mut self, cmd: &[u8], params: &[u8]) {
        let mut p = vec![cmd[0], 0x80, 0x01, cmd[3], cmd[4]];
        p.extend_from_slice(params);
        self.send_ezsp(p).await;
    }

    async fn callback(&mut self, frame_id: u16, params: &[u8]) {
        let mut p = vec![0x00, 0x90, 0x01];
        p.extend_from_slice(&frame_id.to_le_bytes());
        p.extend_from_slice(params);
        self.send_ezsp(p).await;
    }

    /// RST/RSTACK and the two version exchanges.
    async fn handshake(&mut self) {
        let (_, v1) = self.next_command(true).await.unwrap();
        assert_eq!(v1[1..], [0x00, 0x00, 13], "legacy version(13)");
        self.send_ezsp(vec![v1[0], 0x80, 0x00, 13, 2, 0x50, 0x74])
            .await;
        let (_, v2) = self.next_command(true).await.unwrap();
        assert_eq!(
            v2[1..],
            [0x00, 0x01, 0x00, 0x00, 13],
            "extended version(13)"
        );
        self.reply(&v2, &[13, 2, 0x50, 0x74]).await;
    }
}

fn frame_id(cmd: &[u8]) -> u16 {
    u16::from_le_bytes([cmd[3], cmd[4]])
}

fn setup() -> (
    EzspCoordinator,
    tokio::sync::mpsc::Receiver<CoordinatorEvent>,
    FakeNcp,
) {
    let (a, b) = tokio::io::duplex(4096);
    let (c, ev) = EzspCoordinator::new(a);
    (c, ev, FakeNcp::new(b))
}

#[tokio::test]
async fn info_after_garbage_and_bad_crc() {
    let (c, _ev, mut ncp) = setup();
    // Line noise before anything: the host must ignore it.
    ncp.write(&[0x00, 0xff, 0x7d, 0x7e, 0x12, 0x34, 0x7e]).await;
    ncp.handshake().await;
    let ncp_task = tokio::spawn(async move {
        let (_, cmd) = ncp.next_command(true).await.unwrap();
        assert_eq!(frame_id(&cmd), id::GET_EUI64);
        // a DATA frame with a bad CRC first: the host must NAK it
        ncp.write(&[0x00, 0x42, 0x21, 0xde, 0xad, 0x7e]).await;
        match ncp.next_frame().await.unwrap() {
            Frame::Nak { ack_num, .. } => assert_eq!(ack_num, 2),
            other => panic!("expected NAK, got {other:?}"),
        }
        ncp.reply(&cmd, &[1, 0, 0, 0, 0, 0x6f, 0x0d, 0]).await;
        ncp
    });
    let info = tokio::time::timeout(WAIT, c.info()).await.unwrap().unwrap();
    assert_eq!(info.ieee, Ieee(0x000d_6f00_0000_0001));
    assert_eq!(info.firmware, "EmberZNet EZSP v13 (stack 7.4.5.0)");
    ncp_task.await.unwrap();
}

#[tokio::test]
async fn lost_ack_is_retransmitted() {
    let (c, _ev, mut ncp) = setup();
    ncp.handshake().await;
    let ncp_task = tokio::spawn(async move {
        // Do not ACK the first transmission: the host retransmits with reTx set.
        let (re_tx, cmd) = ncp.next_command(false).await.unwrap();
        assert!(!re_tx);
        let (re_tx2, cmd2) = ncp.next_command(true).await.unwrap();
        assert!(re_tx2, "second copy must carry reTx");
        assert_eq!(cmd, cmd2);
        ncp.reply(&cmd, &[0x00]).await;
        ncp
    });
    let r = tokio::time::timeout(WAIT, c.permit_join(0)).await.unwrap();
    r.unwrap();
    let _ncp = ncp_task.await.unwrap();
}

#[tokio::test]
async fn send_waits_for_message_sent_and_incoming_events() {
    let (c, mut ev, mut ncp) = setup();
    ncp.handshake().await;
    let ncp_task = tokio::spawn(async move {
        let (_, cmd) = ncp.next_command(true).await.unwrap();
        assert_eq!(frame_id(&cmd), id::SEND_UNICAST);
        let params = &cmd[5..];
        let tag = params[14];
        ncp.reply(&cmd, &[0x00, 0x22]).await;
        // an incoming secured report arrives before the messageSent
        ncp.callback(
            id::INCOMING_MESSAGE_HANDLER,
            &hex("000401020401016000000041c8ce2b1affff08182a0a0000296608"),
        )
        .await;
        let mut ms = hex("002b1a040106000101400100000007");
        ms[14] = tag;
        ms.extend([0x66, 0x00]);
        ncp.callback(id::MESSAGE_SENT_HANDLER, &ms).await;
        ncp
    });
    let st = tokio::time::timeout(WAIT, c.send(0x1A2B, 1, 1, 0x0006, &[1, 0, 1]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st, SendStatus::Failed(0x66));
    match tokio::time::timeout(WAIT, ev.recv())
        .await
        .unwrap()
        .unwrap()
    {
        CoordinatorEvent::Incoming(i) => {
            assert!(i.aps_secured);
            assert_eq!(
                (i.src_nwk, i.cluster, i.lqi, i.rssi),
                (0x1A2B, 0x0402, 200, Some(-50))
            );
        }
        other => panic!("{other:?}"),
    }
    let mut ncp = ncp_task.await.unwrap();
    // trust centre join + Device_annce
    ncp.callback(
        id::TRUST_CENTER_JOIN_HANDLER,
        &hex("2b1accbbaa1c004b120001000000"),
    )
    .await;
    ncp.callback(
        id::INCOMING_MESSAGE_HANDLER,
        &hex("000000130000000000000000c8ce2b1affff0c012b1accbbaa1c004b120080"),
    )
    .await;
    let dev = Ieee(0x0012_4b00_1caa_bbcc);
    let e1 = tokio::time::timeout(WAIT, ev.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e1,
        CoordinatorEvent::Joined {
            ieee: dev,
            nwk: 0x1A2B,
            parent: 0
        }
    );
    let e2 = tokio::time::timeout(WAIT, ev.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e2,
        CoordinatorEvent::Announced {
            ieee: dev,
            nwk: 0x1A2B,
            capabilities: 0x80
        }
    );
}

#[tokio::test]
async fn eof_mid_request_fails_closed() {
    let (c, mut ev, mut ncp) = setup();
    ncp.handshake().await;
    let ncp_task = tokio::spawn(async move {
        let _ = ncp.next_command(true).await.unwrap();
        drop(ncp); // unplugged
    });
    let r = tokio::time::timeout(WAIT, c.info()).await.unwrap();
    assert!(matches!(r, Err(CoordinatorError::Closed)), "{r:?}");
    ncp_task.await.unwrap();
    assert!(
        tokio::time::timeout(WAIT, ev.recv())
            .await
            .unwrap()
            .is_none()
    );
    let r = tokio::time::timeout(WAIT, c.permit_join(10)).await.unwrap();
    assert!(matches!(r, Err(CoordinatorError::Closed)));
}

#[tokio::test]
async fn zdo_active_endpoints_matched_by_tsn() {
    let (c, _ev, mut ncp) = setup();
    ncp.handshake().await;
    let ncp_task = tokio::spawn(async move {
        let (_, cmd) = ncp.next_command(true).await.unwrap();
        let p = &cmd[5..];
        assert_eq!(u16::from_le_bytes([p[3], p[4]]), 0x0000, "ZDO profile");
        assert_eq!(u16::from_le_bytes([p[5], p[6]]), 0x0005, "Active_EP_req");
        let tsn = p[16];
        ncp.reply(&cmd, &[0x00, 0x01]).await;
        // a response with another TSN is not ours
        let mut other = hex("010000058000000000000000c8ce2b1affff");
        other.extend([6, tsn.wrapping_add(1), 0, 0x2b, 0x1a, 1, 9]);
        ncp.callback(id::INCOMING_MESSAGE_HANDLER, &other).await;
        let mut ours = hex("010000058000000000000000c8ce2b1affff");
        ours.extend([7, tsn, 0, 0x2b, 0x1a, 2, 1, 8]);
        ncp.callback(id::INCOMING_MESSAGE_HANDLER, &ours).await;
        ncp
    });
    let eps = tokio::time::timeout(WAIT, c.active_endpoints(0x1A2B))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(eps, vec![1, 8]);
    let _ncp = ncp_task.await.unwrap();
}

#[tokio::test]
async fn probe_sees_rstack() {
    let (mut a, b) = tokio::io::duplex(256);
    let mut ncp = FakeNcp::new(b);
    let t = tokio::spawn(async move {
        assert_eq!(ncp.next_frame().await, Some(Frame::Rst));
        ncp.write(&[0xc1, 0x02, 0x02, 0x9b, 0x7b, 0x7e]).await;
    });
    assert!(EzspCoordinator::probe(&mut a, WAIT).await);
    t.await.unwrap();
    let (mut silent, _keep) = tokio::io::duplex(256);
    assert!(!EzspCoordinator::probe(&mut silent, Duration::from_millis(200)).await);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
