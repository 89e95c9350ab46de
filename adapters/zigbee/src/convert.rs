//! Between ZCL frames and Warden's normalised model: an incoming frame becomes points (with the
//! model's overrides and the assurance its security earns), and a command by name becomes a ZCL
//! request for the endpoint that serves its cluster.
//!
//! Assurance: Zigbee NWK security uses one key for the whole network, so it proves a frame came
//! from *some* device of this network — `channel`. A device that joined with its own install-code
//! link key and whose frame the stack reports as APS-secured under that key earns `shared-key`.
//! Frame counters are checked by the coordinator's stack (NWK security), so frames are `fresh`.

use std::fmt;

use warden_core::{Assurance, Command, Kind, LinkMeta, Message, Point, Value};

use crate::config::Config;
use crate::coordinator::Incoming;
use crate::devices::Device;
use crate::zcl::{self, Arg, DecodeError, DeviceContext, FrameType, PointValue, ZclBody, ZclValue};

/// What an incoming frame means to the runtime.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Readings (from a report, a read response or a notification).
    Points(Vec<Point>, Kind),
    /// A device's answer to a command (a Default Response, or a Write Attributes Response whose
    /// status is the first failure, 0 when every attribute was written).
    DefaultResponse { tsn: u8, status: u8 },
    /// Nothing to publish (manufacturer-specific, a command the device sends the coordinator…).
    Ignored(&'static str),
}

/// A decoded frame with what the runtime needs to route it.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    pub tsn: u8,
    /// A response to something the coordinator asked (read, configure, write, default response).
    pub response: bool,
    pub frame: Frame,
}

impl Decoded {
    /// The transaction number a waiting task may be matched on.
    pub fn response_tsn(&self) -> Option<u8> {
        self.response.then_some(self.tsn)
    }
}

/// Why a frame was refused.
#[derive(Debug, PartialEq)]
pub struct BadFrame(pub DecodeError);

impl BadFrame {
    /// The audit cause / metric label.
    pub fn cause(&self) -> &'static str {
        match self.0 {
            DecodeError::Truncated { .. } => "zcl-truncated",
            _ => "zcl-malformed",
        }
    }
}

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed ZCL frame: {}", self.0)
    }
}

fn overrides(dev: &Device, cfg: &Config) -> Vec<zcl::Override> {
    dev.model
        .as_deref()
        .and_then(|m| cfg.models.get(m))
        .map(|m| {
            m.points
                .iter()
                .filter(|p| !p.ignore)
                .map(|p| zcl::Override {
                    cluster: p.cluster,
                    attr: p.attribute,
                    name: p.name.clone(),
                    scale: p.scale,
                    unit: p.unit.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ignored(dev: &Device, cfg: &Config, cluster: u16, attr: u16) -> bool {
    dev.model
        .as_deref()
        .and_then(|m| cfg.models.get(m))
        .is_some_and(|m| {
            m.points
                .iter()
                .any(|p| p.ignore && p.cluster == cluster && p.attribute == attr)
        })
}

fn value(v: PointValue) -> Value {
    match v {
        PointValue::Bool(b) => Value::Bool(b),
        PointValue::Int(i) => Value::Int(i),
        PointValue::Float(f) => Value::Float(f),
        PointValue::Text(t) => Value::Text(t),
        PointValue::Bytes(b) => Value::Bytes(b),
    }
}

fn readings(
    dev: &Device,
    cfg: &Config,
    ctx: &mut DeviceContext,
    cluster: u16,
    endpoint: u8,
    records: &[(u16, ZclValue)],
) -> Vec<Point> {
    if cluster == 0x0500 {
        ctx.zone_type = dev.zone_type(endpoint).or(ctx.zone_type);
    }
    for (attr, v) in records {
        ctx.observe(cluster, *attr, v);
    }
    let ov = overrides(dev, cfg);
    let mut out = Vec::new();
    for (attr, v) in records {
        if ignored(dev, cfg, cluster, *attr) {
            continue;
        }
        for r in zcl::normalise(cluster, *attr, v, ctx, &ov) {
            let mut p = Point::new(r.name, value(r.value));
            if let Some(u) = r.unit {
                p = p.with_unit(u);
            }
            out.push(p);
        }
    }
    out
}

/// Decodes one application frame from an admitted device.
pub fn decode(
    dev: &Device,
    msg: &Incoming,
    cfg: &Config,
    ctx: &mut DeviceContext,
) -> Result<Decoded, BadFrame> {
    let f = zcl::decode_frame(msg.cluster, &msg.data).map_err(BadFrame)?;
    let tsn = f.header.tsn;
    let d = |response, frame| Decoded {
        tsn,
        response,
        frame,
    };
    Ok(match f.body {
        ZclBody::ReportAttributes(r) => {
            let recs: Vec<_> = r.items.into_iter().map(|a| (a.attr, a.value)).collect();
            let pts = readings(dev, cfg, ctx, msg.cluster, msg.src_endpoint, &recs);
            if recs.is_empty()
                && let Some(e) = r.stopped
            {
                return Err(BadFrame(e));
            }
            d(false, Frame::Points(pts, Kind::Telemetry))
        }
        ZclBody::ReadAttributesResponse(r) => {
            let recs: Vec<_> = r
                .items
                .into_iter()
                .filter_map(|a| Some((a.attr, a.value?)))
                .collect();
            let pts = readings(dev, cfg, ctx, msg.cluster, msg.src_endpoint, &recs);
            d(true, Frame::Points(pts, Kind::Telemetry))
        }
        ZclBody::ZoneStatusChange(z) => {
            let recs = [(
                0x0002u16,
                ZclValue::Unsigned(zcl::DataType::Bitmap16, u64::from(z.zone_status.0)),
            )];
            let pts = readings(dev, cfg, ctx, msg.cluster, msg.src_endpoint, &recs);
            d(false, Frame::Points(pts, Kind::Event))
        }
        ZclBody::DefaultResponse { status, .. } => d(
            true,
            Frame::DefaultResponse {
                tsn,
                status: status.0,
            },
        ),
        ZclBody::WriteAttributesResponse(r) => {
            let status = r
                .items
                .iter()
                .find(|a| !a.status.is_success())
                .map_or(0, |a| a.status.0);
            d(true, Frame::DefaultResponse { tsn, status })
        }
        ZclBody::ConfigureReportingResponse(_) => {
            d(true, Frame::Ignored("response nobody waits for"))
        }
        ZclBody::ManufacturerSpecific { .. } => d(false, Frame::Ignored("manufacturer-specific")),
        ZclBody::ReadAttributes(_) => d(false, Frame::Ignored("the device reads from us")),
        ZclBody::Unsupported { .. } => d(false, Frame::Ignored("unsupported command")),
    })
}

/// Builds the normalised message for readings from `dev`.
pub fn message(dev: &Device, msg: &Incoming, kind: Kind, points: Vec<Point>) -> Message {
    let mut m = Message::telemetry(dev.id(), points);
    m.kind = kind;
    m.assurance = if dev.install_code && msg.aps_secured {
        Assurance::SharedKey
    } else {
        Assurance::Channel
    };
    m.fresh = true;
    m.link = LinkMeta {
        rssi: msg.rssi.map(f32::from),
        snr: None,
        lqi: Some(msg.lqi),
    };
    m.raw = msg.data.clone();
    m
}

/// A command ready to send: where, and the frame for a given transaction number.
pub struct Request {
    pub cluster: u16,
    pub endpoint: u8,
    req: zcl::ZclRequest,
}

impl Request {
    /// The whole ZCL frame, asking for a default response.
    pub fn frame(&self, tsn: u8) -> Vec<u8> {
        self.req.frame(tsn, false)
    }

    pub fn is_cluster_specific(&self) -> bool {
        self.req.frame_type == FrameType::ClusterSpecific
    }
}

/// A command by name (`turn_on`, `set_level level=50`…) for `dev`.
pub fn command(dev: &Device, c: &Command, cfg: &Config) -> Result<Request, String> {
    let texts: Vec<String> = c
        .args
        .iter()
        .map(|p| match &p.value {
            Value::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    let args: Vec<(&str, Arg<'_>)> = c
        .args
        .iter()
        .zip(&texts)
        .map(|(p, t)| {
            let a = match &p.value {
                Value::Bool(b) => Arg::Bool(*b),
                Value::Int(i) => Arg::Num(*i as f64),
                Value::Float(f) => Arg::Num(*f),
                Value::Text(_) | Value::Bytes(_) => Arg::Text(t.as_str()),
            };
            (p.name.as_str(), a)
        })
        .collect();
    let req = zcl::command_with(&c.name, &args, &overrides(dev, cfg)).map_err(|e| e.to_string())?;
    let endpoint = dev.endpoint_for(req.cluster).ok_or_else(|| {
        format!(
            "the device has no endpoint with cluster {:#06x} for `{}`",
            req.cluster, c.name
        )
    })?;
    Ok(Request {
        cluster: req.cluster,
        endpoint,
        req,
    })
}

/// A short name for a ZCL status code.
pub fn status_text(status: u8) -> &'static str {
    zcl::Status(status).as_str()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::coordinator::Ieee;
    use crate::devices::Endpoint;

    fn cfg() -> Config {
        crate::config::parse(&toml::from_str::<toml::Value>(r#"port = "/dev/x""#).unwrap()).unwrap()
    }

    fn dev(install_code: bool) -> Device {
        let mut d = Device::new(Ieee(0x00124b001caabb01), 0x1a2b, install_code);
        d.endpoints.push(Endpoint {
            id: 1,
            profile: 0x0104,
            device_type: 0x0302,
            input_clusters: vec![0x0000, 0x0006, 0x0402],
            output_clusters: vec![],
        });
        d
    }

    fn incoming(cluster: u16, data: &[u8], secured: bool) -> Incoming {
        Incoming {
            src_nwk: 0x1a2b,
            src_endpoint: 1,
            dst_endpoint: 1,
            cluster,
            profile: 0x0104,
            lqi: 200,
            rssi: Some(-60),
            aps_secured: secured,
            was_broadcast: false,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_temperature_report_becomes_a_point_with_its_unit() {
        // zigpy: Report Attributes 0x0402/0x0000 int16 2150
        let msg = incoming(
            0x0402,
            &[0x18, 0x2a, 0x0a, 0x00, 0x00, 0x29, 0x66, 0x08],
            false,
        );
        let d = decode(&dev(false), &msg, &cfg(), &mut DeviceContext::default()).unwrap();
        assert_eq!(d.response_tsn(), None);
        let Frame::Points(p, Kind::Telemetry) = d.frame else {
            panic!("{:?}", d.frame)
        };
        assert_eq!(
            p,
            vec![Point::new("temperature", Value::Float(21.5)).with_unit("°C")]
        );
    }

    #[test]
    fn assurance_is_channel_unless_install_code_and_aps_security() {
        let data = [0x18, 0x2a, 0x0a, 0x00, 0x00, 0x29, 0x66, 0x08];
        let rows = [
            (false, false, Assurance::Channel),
            (false, true, Assurance::Channel),
            (true, false, Assurance::Channel),
            (true, true, Assurance::SharedKey),
        ];
        for (ic, secured, want) in rows {
            let m = message(
                &dev(ic),
                &incoming(0x0402, &data, secured),
                Kind::Telemetry,
                vec![],
            );
            assert_eq!(m.assurance, want, "install code {ic}, aps {secured}");
            assert!(m.fresh);
        }
    }

    #[test]
    fn truncated_and_manufacturer_specific_frames() {
        let msg = incoming(0x0402, &[0x18, 0x2a], false);
        let e = decode(&dev(false), &msg, &cfg(), &mut DeviceContext::default()).unwrap_err();
        assert_eq!(e.cause(), "zcl-truncated");
        // manufacturer-specific global report (frame control bit 2) with code 0x115f
        let msg = incoming(
            0x0000,
            &[0x1c, 0x5f, 0x11, 0x01, 0x0a, 0x01, 0xff, 0x42, 0x00],
            false,
        );
        let d = decode(&dev(false), &msg, &cfg(), &mut DeviceContext::default()).unwrap();
        assert_eq!(d.frame, Frame::Ignored("manufacturer-specific"));
    }

    #[test]
    fn commands_go_to_the_endpoint_with_the_cluster() {
        let c = Command {
            name: "turn_on".into(),
            args: vec![],
        };
        let r = command(&dev(false), &c, &cfg()).unwrap();
        assert_eq!((r.cluster, r.endpoint), (0x0006, 1));
        assert_eq!(r.frame(7), vec![0x01, 0x07, 0x01]);
        let c = Command {
            name: "set_level".into(),
            args: vec![Point::new("level", Value::Int(50))],
        };
        let e = command(&dev(false), &c, &cfg()).err().unwrap();
        assert!(e.contains("0x0008"), "{e}");
        let c = Command {
            name: "format_disk".into(),
            args: vec![],
        };
        assert!(command(&dev(false), &c, &cfg()).is_err());
    }
}
