//! LoRaWAN 1.0.x frames and crypto on top of the `lorawan` crate (lora-rs, 0.9.0): parse uplinks
//! (never panicking on any bytes), check JoinRequest and data MICs, decrypt FRMPayloads, derive session
//! keys, and build JoinAccepts and data frames. This module only adapts the crate to Warden's types
//! (integer EUIs and addresses, owned buffers, typed errors) and bounds what the crate assumes of its
//! callers (buffer sizes, payload lengths). What the crate does not offer is kept here and marked.

use lorawan::creator::{self, DataPayloadCreator, JoinAcceptCreator};
use lorawan::default_crypto::DefaultFactory;
use lorawan::keys::{AES128, AppKey, AppSKey, NewSKey};
use lorawan::maccommandcreator::LinkCheckAnsCreator;
use lorawan::maccommands::{DLSettings, SerializableMacCommand};
use lorawan::parser::{
    self as lp, DataHeader, DecryptedJoinAcceptPayload, DevNonce, EncryptedDataPayload,
    EncryptedJoinAcceptPayload, FCtrl, FRMPayload, JoinRequestPayload, MICAble, PhyPayload,
};

/// A 128-bit AES key (AppKey, NwkSKey, AppSKey). `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key(pub [u8; 16]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(b).ok().map(Self)
    }
    fn aes(&self) -> AES128 {
        AES128(self.0)
    }
}

/// Why a PHYPayload could not be parsed, or a frame could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhyError {
    #[error("PHYPayload too short ({0} bytes)")]
    TooShort(usize),
    #[error("PHYPayload too long ({0} bytes)")]
    TooLong(usize),
    #[error("unsupported LoRaWAN major version {0}")]
    Major(u8),
    #[error("{0} frame has the wrong length ({1} bytes)")]
    Length(&'static str, usize),
    #[error("FOpts length {0} exceeds the frame")]
    FOpts(usize),
    #[error("message type {0} is not accepted uplink")]
    NotUplink(u8),
    #[error("MIC invalid")]
    BadMic,
    #[error("LoRaWAN codec: {0}")]
    Codec(&'static str),
}

impl From<creator::Error> for PhyError {
    fn from(e: creator::Error) -> Self {
        Self::Codec(match e {
            creator::Error::BufferTooShort => "buffer too short",
            creator::Error::InvalidChannelList => "invalid CFList",
            creator::Error::MacCommandTooBigForFOpts => "MAC commands exceed 15 bytes of FOpts",
            creator::Error::DataAndMacCommandsInPayloadNotAllowed => {
                "FPort 0 carries MAC commands only"
            }
            creator::Error::FRMPayloadWithFportZero => "FRMPayload without FPort",
        })
    }
}

/// MHDR message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MType {
    JoinRequest = 0,
    JoinAccept = 1,
    UnconfirmedUp = 2,
    UnconfirmedDown = 3,
    ConfirmedUp = 4,
    ConfirmedDown = 5,
    RejoinRequest = 6,
    Proprietary = 7,
}

impl MType {
    pub fn from_mhdr(mhdr: u8) -> Self {
        match mhdr >> 5 {
            0 => Self::JoinRequest,
            1 => Self::JoinAccept,
            2 => Self::UnconfirmedUp,
            3 => Self::UnconfirmedDown,
            4 => Self::ConfirmedUp,
            5 => Self::ConfirmedDown,
            6 => Self::RejoinRequest,
            _ => Self::Proprietary,
        }
    }
}

/// A JoinRequest: EUIs in the usual big-endian display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub app_eui: u64,
    pub dev_eui: u64,
    pub dev_nonce: u16,
    pub mic: [u8; 4],
    /// The whole PHYPayload as received (the crate checks its MIC from these bytes).
    pub phy: Vec<u8>,
}

/// A data frame (either direction), as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    pub mhdr: u8,
    pub dev_addr: u32,
    pub fctrl: u8,
    pub fcnt16: u16,
    pub fopts: Vec<u8>,
    pub fport: Option<u8>,
    /// The FRMPayload as on the air (encrypted).
    pub frm_payload: Vec<u8>,
    pub mic: [u8; 4],
    /// The whole PHYPayload (the crate checks the MIC and decrypts from these bytes).
    pub phy: Vec<u8>,
}

impl DataFrame {
    pub fn mtype(&self) -> MType {
        MType::from_mhdr(self.mhdr)
    }
    pub fn confirmed(&self) -> bool {
        self.mtype() == MType::ConfirmedUp || self.mtype() == MType::ConfirmedDown
    }
    pub fn ack(&self) -> bool {
        self.fctrl & 0x20 != 0
    }
    pub fn adr(&self) -> bool {
        self.fctrl & 0x80 != 0
    }

    /// Whether the MIC verifies with the NwkSKey and the full 32-bit frame counter (the direction
    /// comes from the MHDR).
    pub fn mic_ok(&self, nwk_s_key: &Key, fcnt: u32) -> bool {
        EncryptedDataPayload::new(self.phy.as_slice())
            .is_ok_and(|p| p.validate_mic(&nwk_s_key.aes(), fcnt))
    }

    /// The plaintext FRMPayload: decrypted with the AppSKey, or the NwkSKey on FPort 0. `fcnt` is
    /// the 32-bit counter (its low 16 bits are the frame's). Does not check the MIC: call
    /// [`DataFrame::mic_ok`] first.
    pub fn decrypt(
        &self,
        nwk_s_key: &Key,
        app_s_key: &Key,
        fcnt: u32,
    ) -> Result<Vec<u8>, PhyError> {
        if self.frm_payload.is_empty() {
            return Ok(Vec::new());
        }
        let enc = EncryptedDataPayload::new(self.phy.clone()).map_err(parse_error(&self.phy))?;
        let dec = enc
            .decrypt(Some(&nwk_s_key.aes()), Some(&app_s_key.aes()), fcnt)
            .map_err(parse_error(&self.phy))?;
        Ok(match dec.frm_payload() {
            FRMPayload::Data(d) => d.to_vec(),
            FRMPayload::MACCommands(m) => m.data().to_vec(),
            FRMPayload::None => Vec::new(),
        })
    }
}

/// An uplink PHYPayload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    Join(JoinRequest),
    Data(DataFrame),
}

/// The longest PHYPayload any region allows.
pub const MAX_PHY: usize = 255;

/// MHDR(1) DevAddr(4) FCtrl(1) FCnt(2): the FOpts start here.
const FOPTS_AT: usize = 8;
const MIC_LEN: usize = 4;

/// Maps the crate's parse errors to Warden's, with what they mean for these bytes.
fn parse_error(b: &[u8]) -> impl Fn(lp::Error) -> PhyError + '_ {
    move |e| {
        let mhdr = b.first().copied().unwrap_or(0);
        match e {
            lp::Error::InvalidPayload => PhyError::TooShort(b.len()),
            lp::Error::UnsupportedMajorVersion => PhyError::Major(mhdr & 0x03),
            lp::Error::InvalidMic => PhyError::BadMic,
            lp::Error::InvalidMessageType => PhyError::NotUplink(mhdr >> 5),
            lp::Error::InvalidKey => PhyError::Codec("no key for this FPort"),
            lp::Error::InvalidData => match MType::from_mhdr(mhdr) {
                MType::JoinRequest => PhyError::Length("JoinRequest", b.len()),
                MType::JoinAccept => PhyError::NotUplink(mhdr >> 5),
                _ => PhyError::FOpts(usize::from(b.get(5).copied().unwrap_or(0) & 0x0f)),
            },
        }
    }
}

fn mic_of(m: lorawan::keys::MIC) -> [u8; 4] {
    m.0
}

fn u64_le(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map_or(0, u64::from_le_bytes)
}

/// Parses any frame with major version LoRaWAN R1 (data frames of both directions, JoinRequest).
pub fn parse_data_or_join(b: &[u8]) -> Result<Uplink, PhyError> {
    // the crate bounds only the minimum length
    if b.len() > MAX_PHY {
        return Err(PhyError::TooLong(b.len()));
    }
    // one copy: the crate parses in place (it needs `AsMut` for decryption) and the frame keeps it
    let mut raw = b.to_vec();
    let parsed = match lp::parse(raw.as_mut_slice()).map_err(parse_error(b))? {
        PhyPayload::JoinRequest(jr) => Parsed::Join {
            app_eui: u64_le(jr.app_eui().as_ref()),
            dev_eui: u64_le(jr.dev_eui().as_ref()),
            dev_nonce: <[u8; 2]>::try_from(jr.dev_nonce().as_ref()).map_or(0, u16::from_le_bytes),
            mic: mic_of(jr.mic()),
        },
        PhyPayload::JoinAccept(_) => return Err(PhyError::NotUplink(MType::JoinAccept as u8)),
        PhyPayload::Data(d) => {
            let fhdr = d.fhdr();
            let fopts = fhdr.data().to_vec();
            let dev_addr =
                <[u8; 4]>::try_from(fhdr.dev_addr().as_ref()).map_or(0, u32::from_le_bytes);
            // Not the crate's `f_port()`: lorawan 0.9.0 reports no FPort when the FRMPayload after
            // it is empty, but the port byte is on the air (and covered by the MIC) all the same.
            let body = b
                .get(FOPTS_AT + fopts.len()..b.len().saturating_sub(MIC_LEN))
                .unwrap_or(&[]);
            let (fport, frm_payload) = match body.split_first() {
                None => (None, Vec::new()),
                Some((p, pl)) => (Some(*p), pl.to_vec()),
            };
            Parsed::Data(DataFrame {
                mhdr: b.first().copied().unwrap_or(0),
                dev_addr,
                fctrl: fhdr.fctrl().raw_value(),
                fcnt16: fhdr.fcnt(),
                fopts,
                fport,
                frm_payload,
                mic: mic_of(d.mic()),
                phy: Vec::new(),
            })
        }
    };
    Ok(match parsed {
        Parsed::Join {
            app_eui,
            dev_eui,
            dev_nonce,
            mic,
        } => Uplink::Join(JoinRequest {
            app_eui,
            dev_eui,
            dev_nonce,
            mic,
            phy: raw,
        }),
        Parsed::Data(d) => Uplink::Data(DataFrame { phy: raw, ..d }),
    })
}

/// The fields read while the crate borrows the buffer.
enum Parsed {
    Join {
        app_eui: u64,
        dev_eui: u64,
        dev_nonce: u16,
        mic: [u8; 4],
    },
    Data(DataFrame),
}

/// Parses an uplink PHYPayload: a JoinRequest or a data-up frame.
pub fn parse_uplink(b: &[u8]) -> Result<Uplink, PhyError> {
    let u = parse_data_or_join(b)?;
    if let Uplink::Data(d) = &u
        && matches!(d.mtype(), MType::UnconfirmedDown | MType::ConfirmedDown)
    {
        return Err(PhyError::NotUplink(d.mhdr >> 5));
    }
    Ok(u)
}

/// Direction of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up = 0,
    Down = 1,
}

/// The JoinRequest MIC check with the AppKey.
pub fn join_request_mic_ok(app_key: &Key, jr: &JoinRequest) -> bool {
    JoinRequestPayload::new(jr.phy.as_slice()).is_ok_and(|p| p.validate_mic(&app_key.aes()))
}

/// The fields of a JoinAccept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAccept {
    pub app_nonce: u32,
    pub net_id: u32,
    pub dev_addr: u32,
    pub rx1_dr_offset: u8,
    pub rx2_dr: u8,
    pub rx_delay: u8,
}

fn u24_le(v: u32) -> [u8; 3] {
    let [a, b, c, _] = v.to_le_bytes();
    [a, b, c]
}

fn u24_of(b: &[u8]) -> u32 {
    b.iter().rev().fold(0u32, |a, x| (a << 8) | u32::from(*x))
}

/// Builds the over-the-air (encrypted) JoinAccept PHYPayload, without CFList.
pub fn build_join_accept(app_key: &Key, ja: &JoinAccept) -> Result<Vec<u8>, PhyError> {
    // 17 bytes: MHDR, AppNonce, NetID, DevAddr, DLSettings, RxDelay, MIC (no CFList)
    let mut c = JoinAcceptCreator::with_options([0u8; 17], DefaultFactory)?;
    c.set_app_nonce(&u24_le(ja.app_nonce))
        .set_net_id(&u24_le(ja.net_id))
        // the crate's `From<u32>` for DevAddr is big-endian; the air carries it little-endian
        .set_dev_addr(&ja.dev_addr.to_le_bytes())
        .set_dl_settings(DLSettings::new(
            ((ja.rx1_dr_offset & 0x07) << 4) | (ja.rx2_dr & 0x0f),
        ))
        .set_rx_delay(ja.rx_delay & 0x0f);
    Ok(c.build(&app_key.aes())?.to_vec())
}

/// Session keys of LoRaWAN 1.0.x from a (decrypted) JoinAccept: (NwkSKey, AppSKey).
fn session_keys<T: AsRef<[u8]>>(
    ja: &DecryptedJoinAcceptPayload<T, DefaultFactory>,
    app_key: &AppKey,
    dev_nonce: u16,
) -> (Key, Key) {
    // the wire order, not the crate's big-endian `From<u16>`
    let dn = DevNonce::from(dev_nonce.to_le_bytes());
    (
        Key(ja.derive_newskey(&dn, app_key).inner().0),
        Key(ja.derive_appskey(&dn, app_key).inner().0),
    )
}

/// The network server's side of a join: the encrypted JoinAccept PHYPayload and the session keys
/// (NwkSKey, AppSKey) the crate derives from that very JoinAccept.
pub fn accept_join(
    app_key: &Key,
    ja: &JoinAccept,
    dev_nonce: u16,
) -> Result<(Vec<u8>, Key, Key), PhyError> {
    let phy = build_join_accept(app_key, ja)?;
    let ak = AppKey::from(app_key.0);
    let enc = EncryptedJoinAcceptPayload::new(phy.clone()).map_err(parse_error(&phy))?;
    let (nwk, app) = session_keys(&enc.decrypt(&ak), &ak, dev_nonce);
    Ok((phy, nwk, app))
}

/// Session keys of LoRaWAN 1.0.x: (NwkSKey, AppSKey). The crate derives them from a JoinAccept only,
/// so this builds one with these nonces (the keys depend on nothing else).
pub fn derive_session_keys(
    app_key: &Key,
    app_nonce: u32,
    net_id: u32,
    dev_nonce: u16,
) -> Result<(Key, Key), PhyError> {
    let ja = JoinAccept {
        app_nonce,
        net_id,
        dev_addr: 0,
        rx1_dr_offset: 0,
        rx2_dr: 0,
        rx_delay: 0,
    };
    accept_join(app_key, &ja, dev_nonce).map(|(_, n, a)| (n, a))
}

/// Decrypts and checks a JoinAccept the way a device does (used by tests and the benchmark).
pub fn open_join_accept(app_key: &Key, phy: &[u8]) -> Option<JoinAccept> {
    let dec = DecryptedJoinAcceptPayload::new(phy.to_vec(), &AppKey::from(app_key.0)).ok()?;
    let dl = dec.dl_settings();
    Some(JoinAccept {
        app_nonce: u24_of(dec.app_nonce().as_ref()),
        net_id: u24_of(dec.net_id().as_ref()),
        dev_addr: <[u8; 4]>::try_from(dec.dev_addr().as_ref()).map_or(0, u32::from_le_bytes),
        rx1_dr_offset: dl.rx1_dr_offset(),
        rx2_dr: dl.rx2_data_rate(),
        rx_delay: dec.rx_delay(),
    })
}

/// What a data frame carries, for [`build_data`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSpec {
    pub confirmed: bool,
    pub ack: bool,
    pub adr: bool,
    pub fpending: bool,
    /// Serialised MAC commands for FOpts (at most 15 bytes; see [`link_check_ans`]).
    pub fopts: Vec<u8>,
    pub fport: Option<u8>,
    /// Plaintext FRMPayload; encrypted with AppSKey (NwkSKey on FPort 0, where it holds MAC
    /// commands).
    pub payload: Vec<u8>,
}

/// Already serialised MAC commands handed to the crate's creator as one opaque command (CID = the
/// first byte), so that any FOpts bytes round-trip unchanged.
struct RawMacCommands<'a>(&'a [u8]);

impl SerializableMacCommand for RawMacCommands<'_> {
    fn payload_bytes(&self) -> &[u8] {
        self.0.get(1..).unwrap_or(&[])
    }
    fn cid(&self) -> u8 {
        self.0.first().copied().unwrap_or(0)
    }
    fn payload_len(&self) -> usize {
        self.0.len().saturating_sub(1)
    }
}

/// A serialised LinkCheckAns (CID 0x02): demodulation margin in dB and gateway count.
pub fn link_check_ans(margin: u8, gw_cnt: u8) -> Vec<u8> {
    LinkCheckAnsCreator::new()
        .set_margin(margin)
        .set_gateway_count(gw_cnt)
        .build()
        .to_vec()
}

/// Builds a data frame (downlink when `dir` is `Down`, uplink otherwise) with its MIC.
pub fn build_data(
    dir: Dir,
    nwk_s_key: &Key,
    app_s_key: &Key,
    dev_addr: u32,
    fcnt: u32,
    spec: &DataSpec,
) -> Result<Vec<u8>, PhyError> {
    // the creator writes into a 256-byte buffer and would panic past it: bound the frame first
    if spec.fopts.len() > 15 {
        return Err(PhyError::FOpts(spec.fopts.len()));
    }
    let len =
        FOPTS_AT + spec.fopts.len() + spec.fport.map_or(0, |_| 1 + spec.payload.len()) + MIC_LEN;
    if len > MAX_PHY {
        return Err(PhyError::TooLong(len));
    }
    if spec.fport.is_none() && !spec.payload.is_empty() {
        return Err(creator::Error::FRMPayloadWithFportZero.into());
    }
    let uplink = dir == Dir::Up;
    let mut fctrl = 0u8;
    if spec.adr {
        fctrl |= 0x80;
    }
    if spec.ack {
        fctrl |= 0x20;
    }
    if spec.fpending {
        fctrl |= 0x10;
    }
    let mut c = DataPayloadCreator::new();
    c.set_uplink(uplink)
        .set_confirmed(spec.confirmed)
        .set_dev_addr(&dev_addr.to_le_bytes())
        .set_fctrl(&FCtrl::new(fctrl, uplink))
        .set_fcnt(fcnt);
    if let Some(p) = spec.fport {
        c.set_f_port(p);
    }
    let fport0 = spec.fport == Some(0);
    if fport0 && !spec.fopts.is_empty() {
        return Err(PhyError::Codec("MAC commands in both FOpts and FPort 0"));
    }
    // on FPort 0 the crate takes the FRMPayload's MAC commands as commands, not as data
    let (payload, macs): (&[u8], &[u8]) = if fport0 {
        (&[], &spec.payload)
    } else {
        (&spec.payload, &spec.fopts)
    };
    let raw = RawMacCommands(macs);
    let cmds: &[&dyn SerializableMacCommand] = if macs.is_empty() { &[] } else { &[&raw] };
    let nwk = NewSKey::from(nwk_s_key.0);
    let app = AppSKey::from(app_s_key.0);
    Ok(c.build(payload, cmds, &nwk, &app)?.to_vec())
}

/// A MAC command a device sent (LoRaWAN 1.0.x uplink CIDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacUp {
    LinkCheckReq,
    DeviceTimeReq,
    /// A known answer (LinkADRAns, DevStatusAns, …) with its payload.
    Answer {
        cid: u8,
        payload: Vec<u8>,
    },
    /// An unknown CID: parsing stops there because its length is unknown.
    Unknown {
        cid: u8,
        rest: Vec<u8>,
    },
}

/// Parses uplink MAC commands from FOpts or an FPort-0 FRMPayload.
///
/// Not the crate's `MacCommandIterator`: in lorawan 0.9.0 it indexes past the end of a truncated
/// command (it compares the remaining length with the payload length without the CID), which would
/// panic on wire input, and it ends silently at an unknown CID.
pub fn parse_mac_up(mut b: &[u8]) -> Vec<MacUp> {
    let mut out = Vec::new();
    while let Some((&cid, rest)) = b.split_first() {
        let len = match cid {
            0x02 | 0x04 | 0x08 | 0x09 | 0x0d => 0,
            0x03 | 0x05 | 0x07 | 0x0a => 1,
            0x06 => 2,
            _ => {
                out.push(MacUp::Unknown {
                    cid,
                    rest: rest.to_vec(),
                });
                break;
            }
        };
        let Some(payload) = rest.get(..len) else {
            out.push(MacUp::Unknown {
                cid,
                rest: rest.to_vec(),
            });
            break;
        };
        out.push(match cid {
            0x02 => MacUp::LinkCheckReq,
            0x0d => MacUp::DeviceTimeReq,
            _ => MacUp::Answer {
                cid,
                payload: payload.to_vec(),
            },
        });
        b = rest.get(len..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const APP_KEY: Key = Key([
        0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f,
        0x3c,
    ]);

    #[test]
    fn known_join_request_parses_and_its_mic_checks() {
        // built by lora-packet with the test keys (DevNonce 0x1234, on the wire as 34 12)
        let b = hex::decode("00010000d07ed5b37030051c000ba3040034124f5ca349").unwrap();
        let Uplink::Join(jr) = parse_uplink(&b).unwrap() else {
            panic!()
        };
        assert_eq!(jr.app_eui, 0x70b3d57ed0000001);
        assert_eq!(jr.dev_eui, 0x0004a30b001c0530);
        assert!(join_request_mic_ok(&APP_KEY, &jr));
        let mut bad = b.clone();
        bad[22] ^= 1;
        let Uplink::Join(jr) = parse_uplink(&bad).unwrap() else {
            panic!()
        };
        assert!(!join_request_mic_ok(&APP_KEY, &jr));
    }

    #[test]
    fn join_accept_opens_with_the_same_key() {
        let ja = JoinAccept {
            app_nonce: 0x123456,
            net_id: 0x000013,
            dev_addr: 0x0100_0001,
            rx1_dr_offset: 0,
            rx2_dr: 0,
            rx_delay: 1,
        };
        let phy = build_join_accept(&APP_KEY, &ja).unwrap();
        assert_eq!(phy.len(), 17);
        assert_eq!(open_join_accept(&APP_KEY, &phy), Some(ja));
    }

    #[test]
    fn data_round_trip_with_mic_and_encryption() {
        let (n, a) = derive_session_keys(&APP_KEY, 1, 2, 3).unwrap();
        let spec = DataSpec {
            confirmed: true,
            fopts: vec![0x02],
            fport: Some(1),
            payload: b"hello world, this is longer than one block".to_vec(),
            ..Default::default()
        };
        let phy = build_data(Dir::Up, &n, &a, 0x2601_1234, 70_000, &spec).unwrap();
        let Uplink::Data(d) = parse_uplink(&phy).unwrap() else {
            panic!()
        };
        assert!(d.confirmed());
        assert_eq!(d.fcnt16, 70_000u32 as u16);
        assert!(d.mic_ok(&n, 70_000));
        assert!(!d.mic_ok(&n, 70_000 & 0xffff));
        assert!(!d.mic_ok(&a, 70_000));
        assert_eq!(d.decrypt(&n, &a, 70_000).unwrap(), spec.payload);
        assert_eq!(parse_mac_up(&d.fopts), vec![MacUp::LinkCheckReq]);
    }

    #[test]
    fn mac_commands_stop_at_unknown() {
        let m = parse_mac_up(&[0x02, 0x06, 0xff, 0x10, 0x80, 0x01]);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[2],
            MacUp::Unknown {
                cid: 0x80,
                rest: vec![0x01]
            }
        );
    }
}
