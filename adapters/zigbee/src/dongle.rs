//! Opening the coordinator's serial port, telling which stack it speaks, and one handle over either
//! driver, so the runtime never matches on the stack.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;

use crate::config::StackChoice;
use crate::coordinator::{
    CoordinatorError, CoordinatorEvent, CoordinatorInfo, Ieee, NetworkParams, NodeDescriptor,
    SendStatus, SimpleDescriptor, StartOutcome,
};
use crate::ezsp::EzspCoordinator;
use crate::znp::ZnpCoordinator;

/// How long each probe waits for its answer.
const PROBE: Duration = Duration::from_millis(1500);

/// A started driver for one stack.
pub enum Dongle {
    Znp(ZnpCoordinator),
    Ezsp(EzspCoordinator),
}

macro_rules! each {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Dongle::Znp($d) => $e,
            Dongle::Ezsp($d) => $e,
        }
    };
}

fn open_port(path: &Path, baud: u32) -> Result<tokio_serial::SerialStream, CoordinatorError> {
    let p = path.to_string_lossy();
    tokio_serial::new(p.as_ref(), baud)
        .timeout(Duration::from_millis(100))
        .open_native_async()
        .map_err(|e| CoordinatorError::Io(std::io::Error::other(format!("{p}: {e}"))))
}

/// Opens the port and starts the driver for the configured (or detected) stack.
pub async fn open(
    path: &Path,
    baud: u32,
    stack: StackChoice,
) -> Result<(Arc<Dongle>, mpsc::Receiver<CoordinatorEvent>), CoordinatorError> {
    let mut port = open_port(path, baud)?;
    let use_znp = match stack {
        StackChoice::Znp => true,
        StackChoice::Ezsp => false,
        StackChoice::Auto => {
            if crate::znp::probe(&mut port, PROBE).await {
                true
            } else if EzspCoordinator::probe(&mut port, PROBE).await {
                false
            } else {
                return Err(CoordinatorError::Unsupported(
                    "the port answers neither ZNP (SYS.Ping) nor EZSP/ASH (RST)",
                ));
            }
        }
    };
    Ok(if use_znp {
        let (d, rx) = ZnpCoordinator::new(port);
        (Arc::new(Dongle::Znp(d)), rx)
    } else {
        let (d, rx) = EzspCoordinator::new(port);
        (Arc::new(Dongle::Ezsp(d)), rx)
    })
}

impl Dongle {
    pub async fn info(&self) -> Result<CoordinatorInfo, CoordinatorError> {
        each!(self, d => d.info().await)
    }
    pub async fn start(&self, p: &NetworkParams) -> Result<StartOutcome, CoordinatorError> {
        each!(self, d => d.start(p).await)
    }
    pub async fn permit_join(&self, seconds: u8) -> Result<(), CoordinatorError> {
        each!(self, d => d.permit_join(seconds).await)
    }
    pub async fn require_install_codes(&self, on: bool) -> Result<(), CoordinatorError> {
        each!(self, d => d.require_install_codes(on).await)
    }
    pub async fn add_install_code(&self, ieee: Ieee, code: &[u8]) -> Result<(), CoordinatorError> {
        each!(self, d => d.add_install_code(ieee, code).await)
    }
    pub async fn node_descriptor(&self, nwk: u16) -> Result<NodeDescriptor, CoordinatorError> {
        each!(self, d => d.node_descriptor(nwk).await)
    }
    pub async fn bind(
        &self,
        nwk: u16,
        ieee: Ieee,
        endpoint: u8,
        cluster: u16,
        coordinator: Ieee,
    ) -> Result<(), CoordinatorError> {
        each!(self, d => d.bind(nwk, ieee, endpoint, cluster, coordinator).await)
    }
    pub async fn active_endpoints(&self, nwk: u16) -> Result<Vec<u8>, CoordinatorError> {
        each!(self, d => d.active_endpoints(nwk).await)
    }
    pub async fn simple_descriptor(
        &self,
        nwk: u16,
        ep: u8,
    ) -> Result<SimpleDescriptor, CoordinatorError> {
        each!(self, d => d.simple_descriptor(nwk, ep).await)
    }
    pub async fn send(
        &self,
        nwk: u16,
        src_ep: u8,
        dst_ep: u8,
        cluster: u16,
        data: &[u8],
    ) -> Result<SendStatus, CoordinatorError> {
        each!(self, d => d.send(nwk, src_ep, dst_ep, cluster, data).await)
    }
    /// Events the driver dropped because the adapter fell behind (application frames only).
    pub fn dropped_events(&self) -> u64 {
        each!(self, d => d.dropped_events())
    }
    pub async fn leave(&self, ieee: Ieee, nwk: u16) -> Result<(), CoordinatorError> {
        each!(self, d => d.leave(ieee, nwk).await)
    }
}
