//! End-to-end: the driver against tests/peers/zigbee/ezsp_sim.py over a pty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use warden_zigbee::coordinator::{CoordinatorEvent, NetworkParams, SendStatus, StartOutcome};
use warden_zigbee::ezsp::EzspCoordinator;

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/peers/zigbee");

async fn control(port: u16, line: &str) -> String {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (r, mut w) = s.into_split();
    w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    BufReader::new(r).read_line(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_against_ezsp_sim() {
    let py = format!("{PEERS}/venv/bin/python");
    if !Path::new(&py).exists() {
        eprintln!("SKIPPED: {py} missing (run tests/scripts/install-zigbee.sh)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("ezsp-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("tty");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(&py)
        .arg(format!("{PEERS}/ezsp_sim.py"))
        .args([
            "--link",
            link.to_str().unwrap(),
            "--control-port",
            &port.to_string(),
        ])
        .current_dir(PEERS)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !link.exists()
            || tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("simulator did not start");
    // tokio's File runs one operation at a time; a pending read would block writes. Use two handles.
    let rd = tokio::fs::OpenOptions::new()
        .read(true)
        .open(&link)
        .await
        .unwrap();
    let wr = tokio::fs::OpenOptions::new()
        .write(true)
        .open(&link)
        .await
        .unwrap();
    let (c, mut ev) = EzspCoordinator::new(tokio::io::join(rd, wr));
    let t = Duration::from_secs(15);
    let info = tokio::time::timeout(t, c.info()).await.unwrap().unwrap();
    assert_eq!(info.firmware, "EmberZNet EZSP v13 (stack 7.4.5.0)");
    let params = NetworkParams {
        pan_id: 0x1A62,
        extended_pan_id: [0xdd; 8],
        channel: 15,
        network_key: [7; 16],
    };
    assert_eq!(
        tokio::time::timeout(t, c.start(&params))
            .await
            .unwrap()
            .unwrap(),
        StartOutcome::Formed
    );
    assert_eq!(
        tokio::time::timeout(t, c.start(&params))
            .await
            .unwrap()
            .unwrap(),
        StartOutcome::Resumed
    );
    tokio::time::timeout(t, c.permit_join(60))
        .await
        .unwrap()
        .unwrap();
    assert!(control(port, "join plug1").await.starts_with("OK joined"));
    let mut joined = false;
    let mut announced = false;
    while !(joined && announced) {
        match tokio::time::timeout(t, ev.recv()).await.unwrap().unwrap() {
            CoordinatorEvent::Joined { nwk, .. } => joined = nwk == 0x1003,
            CoordinatorEvent::Announced { nwk, .. } => announced = nwk == 0x1003,
            _ => {}
        }
    }
    let nd = tokio::time::timeout(t, c.node_descriptor(0x1003))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nd.logical_type, 1);
    assert_eq!(
        tokio::time::timeout(t, c.active_endpoints(0x1003))
            .await
            .unwrap()
            .unwrap(),
        vec![1]
    );
    let sd = tokio::time::timeout(t, c.simple_descriptor(0x1003, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(sd.input_clusters.contains(&0x0006));
    // ZCL On (cluster-specific, command 0x01)
    let st = tokio::time::timeout(t, c.send(0x1003, 1, 1, 0x0006, &[0x01, 0x10, 0x01]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st, SendStatus::Delivered);
    let _ = control(port, "quit").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}
