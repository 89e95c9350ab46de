//! Link behaviour against an in-process tokio-modbus TCP server: a silent unit does not stall its
//! neighbour beyond its timeout, and writes map to FC 5/6/15/16 with exception and timeout outcomes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use warden_core::{
    AdapterContext, AdapterEvent, Command, CommandOutcome, DeviceId, Downlink, Point, Value,
};

/// Unit 1 has 10 holding registers and 10 coils; unit 2 never answers; the function codes seen
/// are logged.
#[derive(Clone)]
struct Plc {
    regs: Arc<Mutex<Vec<u16>>>,
    coils: Arc<Mutex<Vec<bool>>>,
    fcs: Arc<Mutex<Vec<u8>>>,
}

type Fut = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Plc {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Fut;
    fn call(&self, req: SlaveRequest<'static>) -> Fut {
        if req.slave == 2 {
            return Box::pin(std::future::pending());
        }
        self.fcs
            .lock()
            .unwrap()
            .push(req.request.function_code().value());
        let mut regs = self.regs.lock().unwrap();
        let mut coils = self.coils.lock().unwrap();
        let r = match req.request {
            Request::ReadHoldingRegisters(a, n) => regs
                .get(usize::from(a)..usize::from(a) + usize::from(n))
                .map(|v| Response::ReadHoldingRegisters(v.to_vec()))
                .ok_or(ExceptionCode::IllegalDataAddress),
            Request::ReadCoils(a, n) => coils
                .get(usize::from(a)..usize::from(a) + usize::from(n))
                .map(|v| Response::ReadCoils(v.to_vec()))
                .ok_or(ExceptionCode::IllegalDataAddress),
            Request::WriteSingleRegister(a, v) => match regs.get_mut(usize::from(a)) {
                Some(r) if v != 0xdead => {
                    *r = v;
                    Ok(Response::WriteSingleRegister(a, v))
                }
                Some(_) => Err(ExceptionCode::IllegalDataValue),
                None => Err(ExceptionCode::IllegalDataAddress),
            },
            Request::WriteMultipleRegisters(a, v) => {
                let s = usize::from(a);
                match regs.get_mut(s..s + v.len()) {
                    Some(r) => {
                        r.copy_from_slice(&v);
                        Ok(Response::WriteMultipleRegisters(a, v.len() as u16))
                    }
                    None => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            Request::WriteSingleCoil(a, v) => match coils.get_mut(usize::from(a)) {
                Some(c) => {
                    *c = v;
                    Ok(Response::WriteSingleCoil(a, v))
                }
                None => Err(ExceptionCode::IllegalDataAddress),
            },
            Request::WriteMultipleCoils(a, v) => {
                let s = usize::from(a);
                match coils.get_mut(s..s + v.len()) {
                    Some(c) => {
                        c.copy_from_slice(&v);
                        Ok(Response::WriteMultipleCoils(a, v.len() as u16))
                    }
                    None => Err(ExceptionCode::IllegalDataAddress),
                }
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Box::pin(std::future::ready(r))
    }
}

async fn serve(plc: Plc) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let on_connected = move |stream, a| {
            let p = plc.clone();
            async move { accept_tcp_connection(stream, a, move |_| Ok(Some(p.clone()))) }
        };
        let _ = Server::new(l).serve(&on_connected, |_| {}).await;
    });
    addr
}

fn config(addr: SocketAddr) -> toml::Value {
    toml::from_str(&format!(
        r#"
[[links]]
transport = "tcp"
host = "127.0.0.1"
port = {port}
timeout_ms = 200
retries = 0
reconnect_ms = 50
[[links.devices]]
unit = 1
publish = "always"
[[links.devices.groups]]
interval_ms = 100
points = [
  {{ name = "r0", table = "holding", address = 0 }},
  {{ name = "r1", table = "holding", address = 1, writable = true, readback = true }},
  {{ name = "wide", table = "holding", address = 2, type = "u32", writable = true, readback = true }},
  {{ name = "c0", table = "coil", address = 0, writable = true }},
  {{ name = "c1", table = "coil", address = 1, writable = true, write_multiple = true }},
  {{ name = "r9", table = "holding", address = 9, type = "u16", writable = true }},
]
[[links.devices]]
unit = 2
[[links.devices.groups]]
interval_ms = 100
points = [{{ name = "r0", table = "holding", address = 0 }}]
"#,
        port = addr.port()
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_unit_does_not_stall_and_writes_use_the_right_function_codes() {
    let plc = Plc {
        regs: Arc::new(Mutex::new((0..10).collect())),
        coils: Arc::new(Mutex::new(vec![false; 10])),
        fcs: Arc::new(Mutex::new(vec![])),
    };
    let addr = serve(plc.clone()).await;
    let adapter = warden_modbus::build(&config(addr)).unwrap();
    let (ev_tx, mut ev_rx) = mpsc::channel(256);
    let (dl_tx, dl_rx) = mpsc::channel(8);
    let (sd_tx, sd_rx) = watch::channel(false);
    let task = tokio::spawn(adapter.run(AdapterContext {
        events: ev_tx,
        downlinks: dl_rx,
        credentials: Arc::new(warden_core::testing::StaticCredentials::default()),
        operations: tokio::sync::mpsc::channel(1).1,
        state: Arc::new(warden_core::testing::MemoryState::default()),
        shutdown: sd_rx,
    }));
    let u1 = DeviceId::new("modbus", &format!("tcp-127.0.0.1-{}-u1", addr.port())).unwrap();

    // unit 1 keeps its pace although unit 2 eats a 200 ms timeout (and a reconnect) per attempt
    let t0 = Instant::now();
    let mut polls = 0;
    let mut degraded = false;
    while t0.elapsed() < Duration::from_secs(2) {
        match tokio::time::timeout(Duration::from_millis(500), ev_rx.recv()).await {
            Ok(Some(AdapterEvent::Uplink(m))) if m.device == u1 => polls += 1,
            Ok(Some(AdapterEvent::Health(h))) if h.detail.contains("unit 2 not answering") => {
                degraded = true
            }
            Ok(Some(AdapterEvent::Uplink(m))) => panic!("unit 2 cannot answer: {m:?}"),
            _ => {}
        }
    }
    assert!(polls >= 8, "unit 1 polled only {polls} times in 2 s");
    assert!(degraded, "the silent unit is reported");

    let send = |name: &str, v: Value| Downlink {
        command_id: name.to_owned(),
        device: u1.clone(),
        command: Command {
            name: name.to_owned(),
            args: vec![Point::new("value", v)],
        },
        principal: "test".into(),
        min_assurance: warden_core::Assurance::None,
        security: Vec::new(),
    };
    let mut results = std::collections::HashMap::new();
    for (name, v) in [
        ("set_r1", Value::Int(4242)),
        ("set_wide", Value::Int(70000)),
        ("set_c0", Value::Bool(true)),
        ("set_c1", Value::Bool(true)),
        ("set_r9", Value::Int(0xdead)),
        ("set_r0", Value::Int(1)),
        ("set_r1", Value::Int(70000)),
    ] {
        plc.fcs.lock().unwrap().clear();
        dl_tx.send(send(name, v)).await.unwrap();
        let r = loop {
            match tokio::time::timeout(Duration::from_secs(5), ev_rx.recv()).await {
                Ok(Some(AdapterEvent::CommandResult(r))) => break r,
                Ok(Some(_)) => {}
                other => panic!("no result for {name}: {other:?}"),
            }
        };
        let fcs: Vec<u8> = plc
            .fcs
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|f| *f >= 5)
            .collect();
        results.insert(format!("{name}-{}", results.len()), (r.clone(), fcs));
    }
    let get = |k: &str| {
        results
            .iter()
            .find(|(n, _)| n.starts_with(k))
            .unwrap()
            .1
            .clone()
    };
    let (r, fcs) = get("set_r1-0");
    assert_eq!(r.outcome, CommandOutcome::Delivered);
    assert_eq!(r.points[0].value, Value::Int(4242));
    assert_eq!(fcs, vec![6]);
    let (r, fcs) = get("set_wide-1");
    assert_eq!(r.outcome, CommandOutcome::Delivered);
    assert_eq!(r.points[0].value, Value::Int(70000));
    assert_eq!(fcs, vec![16]);
    assert_eq!(get("set_c0-2").1, vec![5]);
    assert_eq!(get("set_c1-3").1, vec![15]);
    let (r, _) = get("set_r9-4");
    assert_eq!(
        r.outcome,
        CommandOutcome::DeviceError("illegal-data-value".into())
    );
    // not writable, and out of range: refused before anything is sent
    let (r, fcs) = get("set_r0-5");
    assert!(matches!(r.outcome, CommandOutcome::DeviceError(_)), "{r:?}");
    assert!(fcs.is_empty());
    let (r, fcs) = get("set_r1-6");
    assert!(matches!(r.outcome, CommandOutcome::DeviceError(_)), "{r:?}");
    assert!(fcs.is_empty());
    {
        let regs = plc.regs.lock().unwrap();
        assert_eq!(&regs[..4], &[0, 4242, 1, 4464]);
        let coils = plc.coils.lock().unwrap();
        assert_eq!(&coils[..2], &[true, true]);
    }

    sd_tx.send(true).unwrap();
    drop(ev_rx);
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("the adapter stops on shutdown")
        .unwrap()
        .unwrap();
}
