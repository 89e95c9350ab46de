//! End to end against the project's ZNP simulator (tests/peers/zigbee/znp_sim.py, frames built by
//! zigpy-znp) over a pty. Skipped, with a note, when tests/peers/zigbee/venv is missing
//! (tests/scripts/install-zigbee.sh creates it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tokio_serial::SerialPortBuilderExt;

use super::driver::ZnpCoordinator;
use crate::coordinator::{CoordinatorEvent, Ieee, NetworkParams, SendStatus, StartOutcome};

const WAIT: Duration = Duration::from_secs(10);

fn peers_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WARDEN_ZIGBEE_PEERS") {
        return Some(PathBuf::from(p));
    }
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        let cand = dir.join("tests/peers/zigbee");
        if cand.join("znp_sim.py").exists() {
            return Some(cand);
        }
        if !dir.pop() {
            return None;
        }
    }
}

struct Sim {
    child: Child,
    ctl: BufReader<TcpStream>,
    link: PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    async fn start() -> Option<Sim> {
        let Some(dir) = peers_dir() else {
            eprintln!("NOTE: tests/peers/zigbee not found; ZNP simulator test skipped");
            return None;
        };
        let python = dir.join("venv/bin/python");
        if !python.exists() {
            eprintln!(
                "NOTE: {} missing (run tests/scripts/install-zigbee.sh); ZNP simulator test skipped",
                python.display()
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let link = std::env::temp_dir().join(format!("warden-znp-{}-{port}", std::process::id()));
        let mut child = Command::new(python)
            .arg(dir.join("znp_sim.py"))
            .arg("--link")
            .arg(&link)
            .arg("--control-port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The READY line, read on a thread so the wait is bounded.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let ctl = TcpStream::connect(("127.0.0.1", port));
        let sim = Sim {
            child,
            ctl: BufReader::new(ctl.unwrap()),
            link,
        };
        assert!(
            ready.starts_with("READY"),
            "simulator did not start: {ready:?}"
        );
        sim.ctl.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        Some(sim)
    }

    /// One control line and its reply (blocking but bounded by the socket's read timeout; the
    /// simulator answers at once and the driver keeps running on the other worker thread).
    async fn ctl(&mut self, line: &str) -> String {
        self.ctl
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        tokio::task::block_in_place(|| self.ctl.read_line(&mut reply)).unwrap();
        reply.trim().to_string()
    }

    async fn state(&mut self) -> String {
        let s = self.ctl("state").await;
        assert!(s.starts_with("OK {"), "{s}");
        s
    }

    fn open(&self) -> (ZnpCoordinator, Receiver<CoordinatorEvent>) {
        let port = tokio_serial::new(self.link.to_string_lossy(), 115_200)
            .open_native_async()
            .unwrap();
        ZnpCoordinator::new(port)
    }
}

async fn next_event(
    ev: &mut Receiver<CoordinatorEvent>,
    want: impl Fn(&CoordinatorEvent) -> bool,
) -> CoordinatorEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = ev.recv().await.expect("event channel closed");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event not seen in time")
}

fn incoming_on(cluster: u16, nwk: u16) -> impl Fn(&CoordinatorEvent) -> bool {
    move |e| matches!(e, CoordinatorEvent::Incoming(i) if i.cluster == cluster && i.src_nwk == nwk)
}

const TH1: (Ieee, u16) = (Ieee(0x0012_4b00_0000_1001), 0x1001);
const MOTION1: (Ieee, u16) = (Ieee(0x0012_4b00_0000_1002), 0x1002);
const PLUG1: (Ieee, u16) = (Ieee(0x0012_4b00_0000_1003), 0x1003);
const SPEC_CODE: &str = "83fed3407a939723a5c639b26916d505c3b5";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn znp_driver_against_simulator() {
    let Some(mut sim) = Sim::start().await else {
        return;
    };
    let params = NetworkParams {
        pan_id: 0x1a62,
        extended_pan_id: [0xdd; 8],
        channel: 15,
        network_key: [0x11; 16],
    };
    let (c, mut ev) = sim.open();

    let info = c.info().await.unwrap();
    assert_eq!(info.firmware, "Z-Stack 2.7.1 (20210708)");
    assert_eq!(info.ieee, Ieee(0x0012_4b00_0000_0001));

    assert_eq!(c.start(&params).await.unwrap(), StartOutcome::Formed);
    let st = sim.state().await;
    assert!(
        st.contains(r#""form_count": 1"#)
            && st.contains(r#""pan_id": 6754"#)
            && st.contains(r#""channel": 15"#),
        "{st}"
    );
    assert!(
        !st.contains("1111111111"),
        "state must not carry the key: {st}"
    );

    // Join window closed: a real stack refuses.
    assert_eq!(sim.ctl("join th1").await, "ERR closed");
    c.permit_join(60).await.unwrap();
    next_event(&mut ev, |e| {
        *e == CoordinatorEvent::PermitJoin { seconds: 60 }
    })
    .await;
    assert_eq!(sim.ctl("join th1").await, "OK joined");
    next_event(&mut ev, |e| {
        *e == CoordinatorEvent::Joined {
            ieee: TH1.0,
            nwk: TH1.1,
            parent: 0,
        }
    })
    .await;
    next_event(
        &mut ev,
        |e| matches!(e, CoordinatorEvent::Announced { ieee, .. } if *ieee == TH1.0),
    )
    .await;

    // Interview.
    let nd = c.node_descriptor(TH1.1).await.unwrap();
    assert!(nd.sleepy() && !nd.mains_powered());
    assert_eq!(nd.logical_type, 2);
    assert_eq!(c.active_endpoints(TH1.1).await.unwrap(), vec![1]);
    let sd = c.simple_descriptor(TH1.1, 1).await.unwrap();
    assert_eq!(sd.input_clusters, vec![0x0000, 0x0001, 0x0402, 0x0405]);
    assert!(matches!(
        c.simple_descriptor(TH1.1, 7).await,
        Err(crate::coordinator::CoordinatorError::Status { .. })
    ));

    // Read Attributes of the temperature.
    assert_eq!(
        c.send(TH1.1, 1, 1, 0x0402, &[0x00, 0x21, 0x00, 0x00, 0x00])
            .await
            .unwrap(),
        SendStatus::Delivered
    );
    let e = next_event(&mut ev, incoming_on(0x0402, TH1.1)).await;
    let CoordinatorEvent::Incoming(i) = e else {
        unreachable!()
    };
    assert_eq!(i.data, hex("182101000000296608"), "read rsp: 21.50 °C");
    assert!(!i.aps_secured);

    // A report pushed from the control port.
    assert_eq!(sim.ctl("report th1 humidity 5120").await, "OK humidity");
    let e = next_event(&mut ev, incoming_on(0x0405, TH1.1)).await;
    let CoordinatorEvent::Incoming(i) = e else {
        unreachable!()
    };
    assert_eq!(&i.data[3..], &[0x00, 0x00, 0x21, 0x00, 0x14]);

    // A plug: On -> Default Response + report; state shows it.
    assert_eq!(sim.ctl("join plug1").await, "OK joined");
    next_event(
        &mut ev,
        |e| matches!(e, CoordinatorEvent::Announced { nwk, .. } if *nwk == PLUG1.1),
    )
    .await;
    assert_eq!(
        c.send(PLUG1.1, 1, 1, 0x0006, &[0x01, 0x30, 0x01])
            .await
            .unwrap(),
        SendStatus::Delivered
    );
    let e = next_event(&mut ev, incoming_on(0x0006, PLUG1.1)).await;
    let CoordinatorEvent::Incoming(dr) = e else {
        unreachable!()
    };
    assert_eq!(
        &dr.data[1..],
        &[0x30, 0x0b, 0x01, 0x00],
        "default response to On"
    );
    let e = next_event(&mut ev, incoming_on(0x0006, PLUG1.1)).await;
    let CoordinatorEvent::Incoming(rep) = e else {
        unreachable!()
    };
    assert_eq!(
        &rep.data[2..],
        &[0x0a, 0x00, 0x00, 0x10, 0x01],
        "report on/off = on"
    );
    assert!(sim.state().await.contains(r#""on": true"#));

    // Sending to a device that is not on the network.
    assert_eq!(
        c.send(0x7777, 1, 1, 6, &[0x01, 0x31, 0x01]).await.unwrap(),
        SendStatus::Failed(0xCD)
    );

    // Install codes: required, provisioned for motion1 only.
    c.require_install_codes(true).await.unwrap();
    c.add_install_code(MOTION1.0, &hex(SPEC_CODE))
        .await
        .unwrap();
    let st = sim.state().await;
    assert!(
        st.contains(r#""install_code_required": true"#) && st.contains(SPEC_CODE),
        "{st}"
    );
    assert_eq!(
        sim.ctl(&format!("join motion1 code={SPEC_CODE}")).await,
        "OK joined secured"
    );
    next_event(
        &mut ev,
        |e| matches!(e, CoordinatorEvent::Announced { nwk, .. } if *nwk == MOTION1.1),
    )
    .await;
    assert_eq!(sim.ctl("report motion1 occupancy 1").await, "OK occupancy");
    let e = next_event(&mut ev, incoming_on(0x0406, MOTION1.1)).await;
    let CoordinatorEvent::Incoming(i) = e else {
        unreachable!()
    };
    assert!(i.aps_secured, "install-code device frames are APS-secured");
    assert_eq!(sim.ctl("join bulb1").await, "OK refused-by-tc");
    next_event(&mut ev, |e| {
        matches!(e, CoordinatorEvent::Joined { nwk: 0x1004, .. })
    })
    .await;

    // Hostile frames pass through as data.
    assert_eq!(sim.ctl("report th1 raw 0402 18").await, "OK raw");
    let e = next_event(&mut ev, incoming_on(0x0402, TH1.1)).await;
    let CoordinatorEvent::Incoming(i) = e else {
        unreachable!()
    };
    assert_eq!(i.data, vec![0x18]);

    // Flood: requests still work while reports pour in.
    assert_eq!(sim.ctl("flood th1 500").await, "OK flood 500");
    assert_eq!(c.active_endpoints(PLUG1.1).await.unwrap(), vec![1]);

    // Leave.
    c.leave(PLUG1.0, PLUG1.1).await.unwrap();
    next_event(&mut ev, |e| {
        *e == CoordinatorEvent::Left {
            ieee: PLUG1.0,
            nwk: PLUG1.1,
            rejoin: false,
        }
    })
    .await;
    assert_eq!(sim.ctl("leave th1").await, "OK left");
    next_event(
        &mut ev,
        |e| matches!(e, CoordinatorEvent::Left { nwk, .. } if *nwk == TH1.1),
    )
    .await;

    // Unplug: the driver ends, pending and later requests fail with Closed.
    assert_eq!(sim.ctl("unplug").await, "OK unplugged");
    tokio::time::timeout(WAIT, async { while ev.recv().await.is_some() {} })
        .await
        .unwrap();
    assert!(matches!(
        c.info().await,
        Err(crate::coordinator::CoordinatorError::Closed)
    ));
    drop(c);

    // Replug (a power cycle): same parameters resume without forming again.
    assert_eq!(sim.ctl("replug").await, "OK replugged");
    let (c, _ev2) = sim.open();
    assert_eq!(c.start(&params).await.unwrap(), StartOutcome::Resumed);
    assert!(sim.state().await.contains(r#""form_count": 1"#));
    // Different parameters: formed anew.
    let other = NetworkParams {
        channel: 20,
        ..params.clone()
    };
    assert_eq!(c.start(&other).await.unwrap(), StartOutcome::Formed);
    let st = sim.state().await;
    assert!(
        st.contains(r#""form_count": 2"#) && st.contains(r#""channel": 20"#),
        "{st}"
    );
    assert_eq!(sim.ctl("quit").await, "OK quit");
}
