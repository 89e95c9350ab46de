//! The interview of a newly admitted device: node descriptor (sleepy? mains?), active endpoints and
//! their clusters, the Basic cluster's identity (manufacturer, model, firmware, date code, power
//! source), the IAS zone type, and the reporting configuration its model asks for. Every step is
//! bounded; a step that fails is noted and the rest goes on, so a sleepy device that misses a
//! request still lands pending with what was learned.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use warden_core::ProgressSender;

use crate::config::{Config, Reporting};
use crate::coordinator::Ieee;
use crate::devices::{Device, Endpoint};
use crate::dongle::Dongle;
use crate::runtime::{LOCAL_EP, Waiters};
use crate::zcl::types::{TypeClass, ValueKind};
use crate::zcl::{self, IdentityField, ZclBody, ZclHeader, ZclValue};

/// How long one ZCL request of the interview waits for its answer.
const ANSWER: Duration = Duration::from_secs(5);
/// The most endpoints interviewed per device.
const MAX_ENDPOINTS: usize = 8;

const BASIC: u16 = 0x0000;
/// The Basic-cluster attributes read for a device's identity: manufacturer, model, date code,
/// power source, software build.
pub const IDENTITY_ATTRS: &[u16] = &[0x0004, 0x0005, 0x0006, 0x0007, 0x4000];
const IAS_ZONE: u16 = 0x0500;

/// Where a request goes: a device's network address, endpoint and cluster.
#[derive(Clone, Copy)]
pub struct Target {
    pub nwk: u16,
    pub endpoint: u8,
    pub cluster: u16,
}

/// Sends one global ZCL command and waits for the answer with the same transaction number.
pub async fn request(
    dongle: &Dongle,
    waiters: &Waiters,
    tsn: &AtomicU8,
    to: Target,
    command: u8,
    payload: &[u8],
) -> Result<ZclBody, String> {
    let Target {
        nwk,
        endpoint,
        cluster,
    } = to;
    let t = tsn.fetch_add(1, Ordering::Relaxed);
    let frame = zcl::encode_frame(&ZclHeader::global(t, command), payload);
    let (tx, rx) = oneshot::channel();
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((nwk, t), tx);
    let result = async {
        dongle
            .send(nwk, LOCAL_EP, endpoint, cluster, &frame)
            .await
            .map_err(|e| e.to_string())?;
        let data = tokio::time::timeout(ANSWER, rx)
            .await
            .map_err(|_| format!("no answer within {} s", ANSWER.as_secs()))?
            .map_err(|_| "the adapter stopped".to_owned())?;
        zcl::decode_frame(cluster, &data)
            .map(|f| f.body)
            .map_err(|e| e.to_string())
    }
    .await;
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(nwk, t));
    result
}

fn step(progress: Option<&ProgressSender>, dev: &Device, what: &str) {
    if let Some(p) = progress {
        let id = dev.id();
        p.update(|p| p.set_step(Some(format!("interview {id}: {what}"))));
    }
}

/// Runs the interview; returns the device with what was learned and notes on what failed.
pub async fn run(
    dongle: &Dongle,
    mut dev: Device,
    waiters: &Waiters,
    tsn: &AtomicU8,
    cfg: &Config,
    progress: Option<&ProgressSender>,
    coordinator: Ieee,
) -> (Device, Vec<String>) {
    let mut notes = Vec::new();
    let nwk = dev.nwk;
    step(progress, &dev, "node descriptor");
    match dongle.node_descriptor(nwk).await {
        Ok(nd) => {
            dev.sleepy = nd.sleepy();
            dev.mains_powered = nd.mains_powered();
            dev.manufacturer_code = Some(nd.manufacturer_code);
        }
        Err(e) => notes.push(format!("node descriptor: {e}")),
    }
    step(progress, &dev, "active endpoints");
    let eps = match dongle.active_endpoints(nwk).await {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!("active endpoints: {e}"));
            Vec::new()
        }
    };
    dev.endpoints.clear();
    for ep in eps.into_iter().take(MAX_ENDPOINTS) {
        step(
            progress,
            &dev,
            &format!("simple descriptor of endpoint {ep}"),
        );
        match dongle.simple_descriptor(nwk, ep).await {
            Ok(sd) => dev.endpoints.push(Endpoint {
                id: sd.endpoint,
                profile: sd.profile,
                device_type: sd.device_type,
                input_clusters: sd.input_clusters,
                output_clusters: sd.output_clusters,
            }),
            Err(e) => notes.push(format!("simple descriptor {ep}: {e}")),
        }
    }
    if let Some(ep) = dev.endpoint_for(BASIC) {
        step(progress, &dev, "identity (Basic cluster)");
        match zcl::global::encode_read_attributes(IDENTITY_ATTRS) {
            Ok(payload) => {
                match request(
                    dongle,
                    waiters,
                    tsn,
                    Target {
                        nwk,
                        endpoint: ep,
                        cluster: BASIC,
                    },
                    0x00,
                    &payload,
                )
                .await
                {
                    Ok(ZclBody::ReadAttributesResponse(r)) => {
                        for rec in r.items {
                            let Some(v) = rec.value else { continue };
                            if let Some((field, text)) = zcl::identity(BASIC, rec.attr, &v) {
                                match field {
                                    IdentityField::Manufacturer => dev.manufacturer = Some(text),
                                    IdentityField::Model => dev.model = Some(text),
                                    IdentityField::DateCode => dev.date_code = Some(text),
                                    IdentityField::SwBuildId => dev.sw_build = Some(text),
                                    IdentityField::PowerSource => {
                                        dev.power_source =
                                            v.as_i64().and_then(|p| u8::try_from(p).ok());
                                    }
                                }
                            }
                        }
                    }
                    Ok(other) => notes.push(format!("identity: unexpected answer {other:?}")),
                    Err(e) => notes.push(format!("identity: {e}")),
                }
            }
            Err(e) => notes.push(format!("identity: {e}")),
        }
    }
    let zone_eps: Vec<u8> = dev
        .endpoints
        .iter()
        .filter(|e| e.input_clusters.contains(&IAS_ZONE))
        .map(|e| e.id)
        .collect();
    for ep in zone_eps {
        step(progress, &dev, "IAS zone type");
        let payload = zcl::global::encode_read_attributes(&[0x0001]).unwrap_or_default();
        match request(
            dongle,
            waiters,
            tsn,
            Target {
                nwk,
                endpoint: ep,
                cluster: IAS_ZONE,
            },
            0x00,
            &payload,
        )
        .await
        {
            Ok(ZclBody::ReadAttributesResponse(r)) => {
                if let Some(t) = r
                    .items
                    .iter()
                    .find(|a| a.attr == 0x0001)
                    .and_then(|a| a.value.as_ref()?.as_i64())
                    .and_then(|t| u16::try_from(t).ok())
                {
                    dev.zone_types.retain(|(e, _)| *e != ep);
                    dev.zone_types.push((ep, t));
                }
            }
            Ok(_) => notes.push("zone type: unexpected answer".into()),
            Err(e) => notes.push(format!("zone type: {e}")),
        }
    }
    bind(dongle, &dev, cfg, coordinator, progress, &mut notes).await;
    configure_reporting(dongle, &mut dev, waiters, tsn, cfg, progress, &mut notes).await;
    dev.interviewed = true;
    (dev, notes)
}

/// The Configure Reporting record for one row of a reporting list, with the attribute's table row
/// (its data type decides whether a reportable change is sent); `None` when Warden does not know
/// the attribute. Analog types get the row's reportable change (default 1) in the attribute's type.
pub fn reporting_config(r: &Reporting) -> Option<(&'static zcl::PointDef, zcl::ReportingConfig)> {
    let def = zcl::normalise::lookup(r.cluster, r.attribute)?;
    let dt = def.data_type;
    let change = r.reportable_change.unwrap_or(1);
    let reportable_change = match (dt.class(), dt.kind()) {
        (TypeClass::Analog, ValueKind::Unsigned) => Some(ZclValue::Unsigned(dt, u64::from(change))),
        (TypeClass::Analog, ValueKind::Signed) => Some(ZclValue::Signed(dt, i64::from(change))),
        (TypeClass::Analog, ValueKind::Float) => Some(ZclValue::Float(dt, f64::from(change))),
        _ => None,
    };
    let rc = zcl::ReportingConfig {
        attr: r.attribute,
        data_type: dt,
        min_interval: r.min_interval,
        max_interval: r.max_interval,
        reportable_change,
    };
    Some((def, rc))
}

/// Asks the device to report what its model's reporting list names, for the clusters it has.
/// Binds each cluster the device will report to the coordinator: without a binding a device has
/// nowhere to send its configured reports.
async fn bind(
    dongle: &Dongle,
    dev: &Device,
    cfg: &Config,
    coordinator: Ieee,
    progress: Option<&ProgressSender>,
    notes: &mut Vec<String>,
) {
    let mut done = Vec::new();
    for r in cfg.reporting_for(dev.model.as_deref()) {
        let Some(ep) = dev.endpoint_for(r.cluster) else {
            continue;
        };
        if done.contains(&(ep, r.cluster)) {
            continue;
        }
        done.push((ep, r.cluster));
        step(progress, dev, &format!("bind cluster {:#06x}", r.cluster));
        if let Err(e) = dongle
            .bind(dev.nwk, dev.ieee(), ep, r.cluster, coordinator)
            .await
        {
            notes.push(format!("bind {:#06x}: {e}", r.cluster));
        }
    }
}

async fn configure_reporting(
    dongle: &Dongle,
    dev: &mut Device,
    waiters: &Waiters,
    tsn: &AtomicU8,
    cfg: &Config,
    progress: Option<&ProgressSender>,
    notes: &mut Vec<String>,
) {
    for r in cfg.reporting_for(dev.model.as_deref()) {
        let Some(ep) = dev.endpoint_for(r.cluster) else {
            continue;
        };
        let Some((def, rc)) = reporting_config(&r) else {
            notes.push(format!(
                "reporting {:#06x}/{:#06x}: attribute unknown to Warden",
                r.cluster, r.attribute
            ));
            continue;
        };
        step(progress, dev, &format!("reporting of {}", def.name));
        let payload = match zcl::global::encode_configure_reporting(&[rc]) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("reporting of {}: {e}", def.name));
                continue;
            }
        };
        match request(
            dongle,
            waiters,
            tsn,
            Target {
                nwk: dev.nwk,
                endpoint: ep,
                cluster: r.cluster,
            },
            0x06,
            &payload,
        )
        .await
        {
            Ok(ZclBody::ConfigureReportingResponse(rsp)) => {
                if let Some(bad) = rsp.items.iter().find(|s| !s.status.is_success()) {
                    notes.push(format!(
                        "reporting of {}: device answered {}",
                        def.name,
                        bad.status.as_str()
                    ));
                }
            }
            Ok(ZclBody::DefaultResponse { status, .. }) if !status.is_success() => {
                notes.push(format!("reporting of {}: {}", def.name, status.as_str()));
            }
            Ok(_) => {}
            Err(e) => notes.push(format!("reporting of {}: {e}", def.name)),
        }
    }
}
