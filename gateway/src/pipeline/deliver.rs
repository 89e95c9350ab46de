//! Stage 6, deliver. Uplink: allowed messages become signed envelopes in the store-and-forward queue.
//! Downlink: allowed commands go to the adapter that owns the device's protocol (bounded queue; a full
//! queue is reported as a device error, never waited on).

use std::collections::HashMap;

use tokio::sync::mpsc;
use warden_core::{CommandOutcome, Downlink, Message};

use crate::northbound::Northbound;

pub fn uplink(nb: &Northbound, msg: &Message) {
    nb.uplink(msg);
}

pub fn downlink(
    routes: &HashMap<String, mpsc::Sender<Downlink>>,
    d: Downlink,
) -> Result<(), CommandOutcome> {
    let Some(tx) = routes.get(d.device.protocol()) else {
        return Err(CommandOutcome::DeviceError(format!(
            "no adapter for protocol `{}`",
            d.device.protocol()
        )));
    };
    tx.try_send(d).map_err(|e| {
        CommandOutcome::DeviceError(match e {
            mpsc::error::TrySendError::Full(_) => "adapter command queue is full".into(),
            mpsc::error::TrySendError::Closed(_) => "adapter is not running".into(),
        })
    })
}
