//! A minimal BACnet/IP device responder built on this crate's codecs, for tests and load
//! measurements: answers Who-Is with I-Am, ReadProperty and ReadPropertyMultiple for a device
//! object and `objects` analog inputs (`T1`…, °C, present value 20.0), and SubscribeCOV with a
//! Simple-ACK. Behind a router it answers with the source network the request was sent to.
//! Not a BACnet implementation to test Warden's protocol against — bacpypes3 is that.

use crate::apdu::{self, Apdu};
use crate::npdu::{self, Body, Npdu};
use crate::services::{self, IAm, PropertyValue, RpmResult, confirmed, prop, unconfirmed};
use crate::tag::{AppValue, Datum, ObjectId};
use crate::{bvlc, npdu::NetAddr};

/// One simulated device.
#[derive(Debug, Clone)]
pub struct Responder {
    pub instance: u32,
    pub objects: u32,
    /// Set when the device sits behind a router: its network address there.
    pub routed: Option<NetAddr>,
}

fn text(s: String) -> Vec<Datum> {
    vec![Datum::App(AppValue::Text(s))]
}

/// BVLC Original-Unicast around an APDU, with `source` routing information if given.
pub fn datagram(a: &Apdu<'_>, source: Option<NetAddr>) -> Vec<u8> {
    let ap = apdu::encode(a);
    let mut n = Npdu::local(&ap, false);
    n.source = source;
    bvlc::encode(&bvlc::Bvlc::OriginalUnicast(&npdu::encode(&n))).unwrap_or_default()
}

impl Responder {
    /// The I-Am this device sends.
    pub fn i_am(&self) -> Vec<u8> {
        datagram(
            &Apdu::Unconfirmed {
                service: unconfirmed::I_AM,
                data: &services::i_am(&IAm {
                    device: ObjectId::new(8, self.instance),
                    max_apdu: 1476,
                    segmentation: 3,
                    vendor: 999,
                }),
            },
            self.routed.clone(),
        )
    }

    /// What the device answers for one property.
    pub fn property(&self, o: ObjectId, p: u32) -> Result<Vec<Datum>, (u32, u32)> {
        let device = o.kind == 8;
        if (device && o.instance != self.instance)
            || (!device && (o.kind != 0 || o.instance == 0 || o.instance > self.objects))
        {
            return Err((1, 31)); // unknown-object
        }
        Ok(match p {
            prop::OBJECT_NAME if device => text(format!("dev-{}", self.instance)),
            prop::OBJECT_NAME => text(format!("T{}", o.instance)),
            prop::VENDOR_NAME => text("Warden test responder".into()),
            prop::MODEL_NAME => text("R1".into()),
            prop::FIRMWARE_REVISION | prop::APPLICATION_SOFTWARE_VERSION => text("1.0".into()),
            prop::SYSTEM_STATUS => vec![Datum::App(AppValue::Enumerated(0))],
            prop::UNITS if !device => vec![Datum::App(AppValue::Enumerated(62))],
            prop::PRESENT_VALUE if !device => vec![Datum::App(AppValue::Real(20.0))],
            prop::OBJECT_LIST if device => std::iter::once(o)
                .chain((1..=self.objects).map(|i| ObjectId::new(0, i)))
                .map(|x| Datum::App(AppValue::ObjectId(x)))
                .collect(),
            _ => return Err((2, 32)), // unknown-property
        })
    }

    /// The answer to one datagram, if any; `subscribed` is told of each SubscribeCOV.
    pub fn answer(&self, req: &[u8], mut subscribed: impl FnMut(ObjectId)) -> Option<Vec<u8>> {
        let b = bvlc::decode(req).ok()?;
        let n = npdu::decode(b.npdu()?).ok()?;
        if self.routed.is_some() && n.dest != self.routed {
            return None;
        }
        let Body::Apdu(a) = n.body else {
            return None;
        };
        let src = self.routed.clone();
        match apdu::decode(a).ok()? {
            Apdu::Unconfirmed {
                service: unconfirmed::WHO_IS,
                ..
            } => Some(self.i_am()),
            Apdu::Confirmed {
                invoke_id,
                service,
                data,
                ..
            } => {
                let ack = |d: &[u8]| {
                    datagram(
                        &Apdu::ComplexAck {
                            invoke_id,
                            segment: None,
                            service,
                            data: d,
                        },
                        src.clone(),
                    )
                };
                match service {
                    confirmed::READ_PROPERTY => {
                        let (o, p, index) = services::decode_read_property(data).ok()?;
                        Some(match self.property(o, p) {
                            Ok(value) => ack(&services::read_property_ack(&PropertyValue {
                                object: o,
                                property: p,
                                index,
                                value,
                            })),
                            Err((class, code)) => datagram(
                                &Apdu::Error {
                                    invoke_id,
                                    service,
                                    class,
                                    code,
                                },
                                src.clone(),
                            ),
                        })
                    }
                    confirmed::READ_PROPERTY_MULTIPLE => {
                        let specs = services::decode_read_property_multiple(data).ok()?;
                        let results: Vec<RpmResult> = specs
                            .iter()
                            .flat_map(|s| {
                                s.properties.iter().map(|(p, index)| RpmResult {
                                    object: s.object,
                                    property: *p,
                                    index: *index,
                                    value: self.property(s.object, *p),
                                })
                            })
                            .collect();
                        Some(ack(&services::read_property_multiple_ack(&results)))
                    }
                    confirmed::SUBSCRIBE_COV => {
                        let (_, o, _) = services::decode_subscribe_cov(data).ok()?;
                        subscribed(o);
                        Some(datagram(&Apdu::SimpleAck { invoke_id, service }, src))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}
