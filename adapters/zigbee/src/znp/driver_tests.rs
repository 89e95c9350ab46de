//! Driver edge cases against an in-memory fake coordinator (tokio duplex pipe).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::driver::{Timeouts, ZnpCoordinator, probe};
use super::frame::{CmdType, Decoder, MtFrame, encode, subsystem as sub};
use super::vectors::*;
use crate::coordinator::{CoordinatorError, CoordinatorEvent, Ieee, SendStatus};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fast() -> Timeouts {
    Timeouts {
        sreq: Duration::from_millis(200),
        zdo: Duration::from_millis(500),
        data_confirm: Duration::from_millis(500),
        reset: Duration::from_millis(500),
        startup: Duration::from_millis(500),
    }
}

/// The fake dongle's side of the pipe.
struct Fake {
    io: DuplexStream,
    dec: Decoder,
}

impl Fake {
    async fn next_frame(&mut self) -> Option<MtFrame> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(Ok(f)) = self.dec.next() {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.dec.push(&buf[..n]);
        }
    }
    async fn send_hex(&mut self, v: &str) {
        self.io.write_all(&hex(v)).await.unwrap();
    }
    async fn send(&mut self, f: &MtFrame) {
        self.io.write_all(&encode(f)).await.unwrap();
    }
}

fn setup() -> (
    ZnpCoordinator,
    tokio::sync::mpsc::Receiver<CoordinatorEvent>,
    Fake,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (c, ev) = ZnpCoordinator::with_timeouts(a, fast());
    (
        c,
        ev,
        Fake {
            io: b,
            dec: Decoder::new(),
        },
    )
}

#[tokio::test]
async fn info_reports_firmware_and_ieee() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        assert_eq!(
            encode(&fake.next_frame().await.unwrap()),
            hex(SYS_VERSION_REQ)
        );
        fake.send_hex(SYS_VERSION_RSP).await;
        assert_eq!(
            encode(&fake.next_frame().await.unwrap()),
            hex(UTIL_GET_DEVICE_INFO_REQ)
        );
        fake.send_hex(UTIL_GET_DEVICE_INFO_RSP).await;
        fake
    });
    let info = c.info().await.unwrap();
    assert_eq!(info.firmware, "Z-Stack 2.7.1 (20210708)");
    assert_eq!(info.ieee, Ieee(0x0012_4b00_0000_0001));
    t.await.unwrap();
}

#[tokio::test]
async fn timeout_retries_once_then_fails() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(f) = fake.next_frame().await {
            assert_eq!(encode(&f), hex(SYS_VERSION_REQ));
            seen += 1;
            if seen == 2 {
                break;
            }
        }
        (seen, fake)
    });
    let err = c.info().await.unwrap_err();
    assert!(matches!(err, CoordinatorError::Timeout(_)), "{err:?}");
    let (seen, _fake) = t.await.unwrap();
    assert_eq!(seen, 2);
}

#[tokio::test]
async fn retry_answer_is_accepted() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        fake.next_frame().await.unwrap(); // ignore the first attempt
        fake.next_frame().await.unwrap();
        fake.send_hex(SYS_VERSION_RSP).await;
        fake.next_frame().await.unwrap();
        fake.send_hex(UTIL_GET_DEVICE_INFO_RSP).await;
        fake
    });
    assert!(c.info().await.is_ok());
    t.await.unwrap();
}

#[tokio::test]
async fn garbage_and_bad_frames_are_skipped() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        fake.next_frame().await.unwrap();
        fake.io
            .write_all(&[0x00, 0xFE, 0xFF, 0x13, 0xFE, 0x00, 0x21, 0x02, 0x99])
            .await
            .unwrap();
        fake.send_hex(SYS_VERSION_RSP).await;
        fake.next_frame().await.unwrap();
        fake.send_hex(UTIL_GET_DEVICE_INFO_RSP).await;
        fake
    });
    assert!(c.info().await.is_ok());
    t.await.unwrap();
}

#[tokio::test]
async fn eof_mid_request_is_closed_and_events_end() {
    let (c, mut ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        fake.next_frame().await.unwrap();
        drop(fake);
    });
    let err = c.node_descriptor(0x1A2B).await.unwrap_err();
    assert!(matches!(err, CoordinatorError::Closed), "{err:?}");
    t.await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), ev.recv())
        .await
        .unwrap();
    assert!(end.is_none());
    assert!(matches!(
        c.permit_join(10).await,
        Err(CoordinatorError::Closed)
    ));
}

#[tokio::test]
async fn rpc_error_maps_to_unsupported() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        let f = fake.next_frame().await.unwrap();
        assert_eq!(encode(&f), hex(APP_CNF_SET_IC_KEY_REQ));
        // RPCError naming this request (cmd0 0x2f, cmd1 0x06)
        fake.send(&MtFrame::new(CmdType::Srsp, sub::RPC_ERROR, 0, vec![2, 0x2f, 0x06]).unwrap())
            .await;
        fake
    });
    let err = c.require_install_codes(true).await.unwrap_err();
    assert!(
        matches!(
            err,
            CoordinatorError::Unsupported("APP_CNF.BDBSetJoinUsesInstallCodeKey")
        ),
        "{err:?}"
    );
    t.await.unwrap();
}

#[tokio::test]
async fn status_errors_are_reported() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        fake.next_frame().await.unwrap();
        fake.send(&MtFrame::new(CmdType::Srsp, sub::ZDO, 0x36, vec![0x01]).unwrap())
            .await;
        fake
    });
    let err = c.permit_join(60).await.unwrap_err();
    assert!(
        matches!(
            err,
            CoordinatorError::Status {
                request: "ZDO.MgmtPermitJoinReq",
                status: 1
            }
        ),
        "{err:?}"
    );
    t.await.unwrap();
}

#[tokio::test]
async fn zdo_callbacks_are_matched_by_nwk() {
    let (c, mut ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        let f = fake.next_frame().await.unwrap();
        assert_eq!(encode(&f), hex(ZDO_NODE_DESC_REQ));
        fake.send_hex(ZDO_NODE_DESC_SRSP).await;
        // A response for another device first: not ours.
        let mut other = hex(ZDO_NODE_DESC_RSP)[4..hex(ZDO_NODE_DESC_RSP).len() - 1].to_vec();
        other[0] = 0x99;
        fake.send(&MtFrame::new(CmdType::Areq, sub::ZDO, 0x82, other).unwrap())
            .await;
        fake.send_hex(AF_INCOMING_MSG).await; // an event in between
        fake.send_hex(ZDO_NODE_DESC_RSP).await;
        fake
    });
    let nd = c.node_descriptor(0x1A2B).await.unwrap();
    assert_eq!(
        (nd.logical_type, nd.manufacturer_code, nd.sleepy()),
        (2, 0x1234, true)
    );
    match ev.recv().await.unwrap() {
        CoordinatorEvent::Incoming(i) => {
            assert!(i.aps_secured);
            assert_eq!((i.src_nwk, i.cluster, i.lqi), (0x1A2B, 0x0402, 200));
        }
        other => panic!("{other:?}"),
    }
    t.await.unwrap();
}

#[tokio::test]
async fn zdo_error_status_and_timeout() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        fake.next_frame().await.unwrap();
        fake.send_hex(ZDO_NODE_DESC_SRSP).await;
        fake.send_hex(ZDO_NODE_DESC_RSP_FAIL).await;
        fake.next_frame().await.unwrap();
        fake.send_hex(ZDO_NODE_DESC_SRSP).await; // accepted, but the device never answers
        fake
    });
    let err = c.node_descriptor(0x1A2B).await.unwrap_err();
    assert!(
        matches!(err, CoordinatorError::Status { status: 0x81, .. }),
        "{err:?}"
    );
    let err = c.node_descriptor(0x1A2B).await.unwrap_err();
    assert!(matches!(err, CoordinatorError::Timeout(_)), "{err:?}");
    t.await.unwrap();
}

#[tokio::test]
async fn send_waits_for_matching_data_confirm() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        for want_status in [0u8, 0xE9] {
            let f = fake.next_frame().await.unwrap();
            assert!(f.is(CmdType::Sreq, sub::AF, 0x01));
            assert_eq!(f.payload()[7], 0x10, "ack requested");
            let tsn = f.payload()[6];
            fake.send_hex(AF_DATA_RSP).await;
            // A confirm for another transaction first.
            fake.send(
                &MtFrame::new(
                    CmdType::Areq,
                    sub::AF,
                    0x80,
                    vec![0xE9, 1, tsn.wrapping_add(100)],
                )
                .unwrap(),
            )
            .await;
            fake.send(
                &MtFrame::new(CmdType::Areq, sub::AF, 0x80, vec![want_status, 1, tsn]).unwrap(),
            )
            .await;
        }
        fake
    });
    assert_eq!(
        c.send(0x1A2B, 1, 1, 6, &[1, 5, 1]).await.unwrap(),
        SendStatus::Delivered
    );
    assert_eq!(
        c.send(0x1A2B, 1, 1, 6, &[1, 6, 0]).await.unwrap(),
        SendStatus::Failed(0xE9)
    );
    t.await.unwrap();
}

#[tokio::test]
async fn areq_flood_does_not_block_requests_and_is_counted() {
    let (c, ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        let flood: Vec<u8> = (0..2000).flat_map(|_| hex(AF_INCOMING_MSG)).collect();
        let f = fake.next_frame().await.unwrap();
        assert!(f.is(CmdType::Sreq, sub::ZDO, 0x36));
        fake.io.write_all(&flood).await.unwrap();
        fake.send_hex(ZDO_PERMIT_JOIN_RSP).await;
        fake.io.write_all(&flood).await.unwrap();
        fake
    });
    tokio::time::timeout(Duration::from_secs(10), c.permit_join(60))
        .await
        .unwrap()
        .unwrap();
    let _fake = t.await.unwrap();
    // Nobody reads events: the channel fills and the rest are counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.dropped_events() < 2000 * 2 - 256 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dropped {}",
            c.dropped_events()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(c.dropped_events(), 2000 * 2 - 256);
    drop(ev);
}

#[tokio::test]
async fn events_are_decoded() {
    let (_c, mut ev, mut fake) = setup();
    for v in [
        ZDO_TC_DEV_IND,
        ZDO_END_DEVICE_ANNCE_IND,
        ZDO_LEAVE_IND,
        ZDO_PERMIT_JOIN_IND,
        ZDO_STATE_CHANGE_IND,
    ] {
        fake.send_hex(v).await;
    }
    fake.send_hex(ZDO_PERMIT_JOIN_IND).await;
    let ieee = Ieee(0x0012_4b00_1caa_bbcc);
    assert_eq!(
        ev.recv().await.unwrap(),
        CoordinatorEvent::Joined {
            ieee,
            nwk: 0x1A2B,
            parent: 0
        }
    );
    assert_eq!(
        ev.recv().await.unwrap(),
        CoordinatorEvent::Announced {
            ieee,
            nwk: 0x1A2B,
            capabilities: 0x80
        }
    );
    assert_eq!(
        ev.recv().await.unwrap(),
        CoordinatorEvent::Left {
            ieee,
            nwk: 0x1A2B,
            rejoin: true
        }
    );
    assert_eq!(
        ev.recv().await.unwrap(),
        CoordinatorEvent::PermitJoin { seconds: 60 }
    );
    // StateChangeInd is not an event.
    assert_eq!(
        ev.recv().await.unwrap(),
        CoordinatorEvent::PermitJoin { seconds: 60 }
    );
}

#[tokio::test]
async fn cancelled_request_does_not_wedge_the_driver() {
    let (c, _ev, mut fake) = setup();
    let t = tokio::spawn(async move {
        let _first = fake.next_frame().await.unwrap(); // never answered, retried once
        let _retry = fake.next_frame().await.unwrap();
        let f = fake.next_frame().await.unwrap();
        assert_eq!(encode(&f), hex(SYS_VERSION_REQ));
        fake.send_hex(SYS_VERSION_RSP).await;
        fake.next_frame().await.unwrap();
        fake.send_hex(UTIL_GET_DEVICE_INFO_RSP).await;
        fake
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), c.permit_join(1))
            .await
            .is_err()
    );
    assert!(c.info().await.is_ok());
    t.await.unwrap();
}

#[tokio::test]
async fn bad_install_codes_are_rejected_locally() {
    let (c, _ev, _fake) = setup();
    let ieee = Ieee(1);
    assert!(matches!(
        c.add_install_code(ieee, &[0; 5]).await,
        Err(CoordinatorError::Unsupported(_))
    ));
    let mut code = hex("83FED3407A939723A5C639B26916D505C3B5");
    code[0] ^= 1;
    assert!(matches!(
        c.add_install_code(ieee, &code).await,
        Err(CoordinatorError::Unsupported(_))
    ));
}

#[tokio::test]
async fn probe_detects_znp_and_rejects_silence() {
    let (mut a, b) = tokio::io::duplex(1024);
    let mut fake = Fake {
        io: b,
        dec: Decoder::new(),
    };
    let t = tokio::spawn(async move {
        assert_eq!(encode(&fake.next_frame().await.unwrap()), hex(SYS_PING_REQ));
        fake.io
            .write_all(&[0x1A, 0xC0, 0x38, 0xBC, 0x7E])
            .await
            .unwrap(); // ASH noise first
        fake.send_hex(SYS_PING_RSP).await;
        fake
    });
    assert!(probe(&mut a, Duration::from_secs(2)).await);
    let _fake = t.await.unwrap();
    let (mut a, _b) = tokio::io::duplex(1024);
    assert!(!probe(&mut a, Duration::from_millis(100)).await);
}
