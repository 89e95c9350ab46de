//! LoRaWAN 1.0.x PHYPayload codec and crypto: parse frames off the air (never panicking on any bytes),
//! compute and check MICs, encrypt/decrypt FRMPayloads, derive session keys, and build JoinAccepts and
//! data downlinks. AES-128 and AES-CMAC come from RustCrypto.

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use cmac::{Cmac, Mac};

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
}

/// Why a PHYPayload could not be parsed.
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
    /// MHDR..DevNonce, the bytes the MIC covers.
    pub signed: Vec<u8>,
}

/// A data frame (either direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    pub mhdr: u8,
    pub dev_addr: u32,
    pub fctrl: u8,
    pub fcnt16: u16,
    pub fopts: Vec<u8>,
    pub fport: Option<u8>,
    pub frm_payload: Vec<u8>,
    pub mic: [u8; 4],
    /// MHDR..FRMPayload, the bytes the MIC covers.
    pub signed: Vec<u8>,
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
}

/// An uplink PHYPayload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    Join(JoinRequest),
    Data(DataFrame),
}

/// The longest PHYPayload any region allows.
pub const MAX_PHY: usize = 255;

fn arr4(b: &[u8]) -> [u8; 4] {
    let mut o = [0u8; 4];
    for (d, s) in o.iter_mut().zip(b) {
        *d = *s;
    }
    o
}

fn le_u64(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x))
}

fn split_mic(b: &[u8]) -> Result<(&[u8], [u8; 4]), PhyError> {
    let n = b.len().checked_sub(4).ok_or(PhyError::TooShort(b.len()))?;
    let (body, mic) = b.split_at(n);
    Ok((body, arr4(mic)))
}

/// Parses any frame with major version LoRaWAN R1 (data frames of both directions, JoinRequest).
pub fn parse_data_or_join(b: &[u8]) -> Result<Uplink, PhyError> {
    if b.len() > MAX_PHY {
        return Err(PhyError::TooLong(b.len()));
    }
    let (&mhdr, _) = b.split_first().ok_or(PhyError::TooShort(0))?;
    if mhdr & 0x03 != 0 {
        return Err(PhyError::Major(mhdr & 0x03));
    }
    match MType::from_mhdr(mhdr) {
        MType::JoinRequest => {
            if b.len() != 23 {
                return Err(PhyError::Length("JoinRequest", b.len()));
            }
            let (body, mic) = split_mic(b)?;
            let app_eui = le_u64(body.get(1..9).ok_or(PhyError::TooShort(b.len()))?);
            let dev_eui = le_u64(body.get(9..17).ok_or(PhyError::TooShort(b.len()))?);
            let dn = body.get(17..19).ok_or(PhyError::TooShort(b.len()))?;
            let dev_nonce = le_u64(dn) as u16;
            Ok(Uplink::Join(JoinRequest {
                app_eui,
                dev_eui,
                dev_nonce,
                mic,
                signed: body.to_vec(),
            }))
        }
        MType::UnconfirmedUp
        | MType::ConfirmedUp
        | MType::UnconfirmedDown
        | MType::ConfirmedDown => {
            // MHDR(1) DevAddr(4) FCtrl(1) FCnt(2) MIC(4) = 12 bytes minimum
            if b.len() < 12 {
                return Err(PhyError::TooShort(b.len()));
            }
            let (body, mic) = split_mic(b)?;
            let dev_addr = le_u64(body.get(1..5).ok_or(PhyError::TooShort(b.len()))?) as u32;
            let fctrl = *body.get(5).ok_or(PhyError::TooShort(b.len()))?;
            let fcnt16 = le_u64(body.get(6..8).ok_or(PhyError::TooShort(b.len()))?) as u16;
            let fopts_len = usize::from(fctrl & 0x0f);
            let fopts = body
                .get(8..8 + fopts_len)
                .ok_or(PhyError::FOpts(fopts_len))?
                .to_vec();
            let rest = body.get(8 + fopts_len..).unwrap_or(&[]);
            let (fport, frm_payload) = match rest.split_first() {
                None => (None, Vec::new()),
                Some((p, pl)) => (Some(*p), pl.to_vec()),
            };
            Ok(Uplink::Data(DataFrame {
                mhdr,
                dev_addr,
                fctrl,
                fcnt16,
                fopts,
                fport,
                frm_payload,
                mic,
                signed: body.to_vec(),
            }))
        }
        other => Err(PhyError::NotUplink(other as u8)),
    }
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

fn cipher(key: &Key) -> Aes128 {
    Aes128::new(GenericArray::from_slice(&key.0))
}

fn aes_encrypt(key: &Key, block: [u8; 16]) -> [u8; 16] {
    let mut b = GenericArray::from(block);
    cipher(key).encrypt_block(&mut b);
    b.into()
}

fn aes_decrypt(key: &Key, block: [u8; 16]) -> [u8; 16] {
    let mut b = GenericArray::from(block);
    cipher(key).decrypt_block(&mut b);
    b.into()
}

/// AES-CMAC truncated to the 4-byte MIC.
pub fn cmac4(key: &Key, parts: &[&[u8]]) -> [u8; 4] {
    let mut m = <Cmac<Aes128> as KeyInit>::new(GenericArray::from_slice(&key.0));
    for p in parts {
        m.update(p);
    }
    arr4(&m.finalize().into_bytes())
}

/// Whether two MICs are equal, in constant time.
pub fn mic_eq(a: &[u8; 4], b: &[u8; 4]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Direction byte of B0/Ai blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Up = 0,
    Down = 1,
}

fn block(first: u8, dir: Dir, dev_addr: u32, fcnt: u32, last: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    let a = dev_addr.to_le_bytes();
    let c = fcnt.to_le_bytes();
    let fields = [
        first, 0, 0, 0, 0, dir as u8, a[0], a[1], a[2], a[3], c[0], c[1], c[2], c[3], 0, last,
    ];
    b.copy_from_slice(&fields);
    b
}

/// The data-frame MIC over `signed` (MHDR..FRMPayload) with the 32-bit frame counter.
pub fn data_mic(nwk_s_key: &Key, dir: Dir, dev_addr: u32, fcnt: u32, signed: &[u8]) -> [u8; 4] {
    let b0 = block(0x49, dir, dev_addr, fcnt, signed.len() as u8);
    cmac4(nwk_s_key, &[&b0, signed])
}

/// FRMPayload encryption and decryption (the same XOR stream).
pub fn crypt_frm(key: &Key, dir: Dir, dev_addr: u32, fcnt: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(16).enumerate() {
        let s = aes_encrypt(key, block(0x01, dir, dev_addr, fcnt, (i + 1) as u8));
        out.extend(chunk.iter().zip(s.iter()).map(|(d, k)| d ^ k));
    }
    out
}

/// The JoinRequest MIC check with the AppKey.
pub fn join_request_mic_ok(app_key: &Key, jr: &JoinRequest) -> bool {
    mic_eq(&cmac4(app_key, &[&jr.signed]), &jr.mic)
}

/// Session keys of LoRaWAN 1.0.x: (NwkSKey, AppSKey).
pub fn derive_session_keys(
    app_key: &Key,
    app_nonce: u32,
    net_id: u32,
    dev_nonce: u16,
) -> (Key, Key) {
    let an = app_nonce.to_le_bytes();
    let ni = net_id.to_le_bytes();
    let dn = dev_nonce.to_le_bytes();
    let mk = |t: u8| {
        let mut b = [0u8; 16];
        let f = [t, an[0], an[1], an[2], ni[0], ni[1], ni[2], dn[0], dn[1]];
        for (d, s) in b.iter_mut().zip(f) {
            *d = s;
        }
        Key(aes_encrypt(app_key, b))
    };
    (mk(0x01), mk(0x02))
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

/// Builds the over-the-air (encrypted) JoinAccept PHYPayload.
pub fn build_join_accept(app_key: &Key, ja: &JoinAccept) -> Vec<u8> {
    let mut plain = Vec::with_capacity(17);
    plain.push((MType::JoinAccept as u8) << 5);
    plain.extend_from_slice(ja.app_nonce.to_le_bytes().get(..3).unwrap_or(&[0, 0, 0]));
    plain.extend_from_slice(ja.net_id.to_le_bytes().get(..3).unwrap_or(&[0, 0, 0]));
    plain.extend_from_slice(&ja.dev_addr.to_le_bytes());
    plain.push(((ja.rx1_dr_offset & 0x07) << 4) | (ja.rx2_dr & 0x0f));
    plain.push(ja.rx_delay & 0x0f);
    let mic = cmac4(app_key, &[&plain]);
    let mut body = plain.get(1..).unwrap_or(&[]).to_vec();
    body.extend_from_slice(&mic);
    // 16 bytes: the network server "encrypts" with AES decrypt so the device can use AES encrypt
    let mut out = vec![(MType::JoinAccept as u8) << 5];
    for chunk in body.chunks(16) {
        let mut blk = [0u8; 16];
        for (d, s) in blk.iter_mut().zip(chunk) {
            *d = *s;
        }
        out.extend_from_slice(&aes_decrypt(app_key, blk));
    }
    out
}

/// Decrypts and checks a JoinAccept the way a device does (used by tests and the benchmark).
pub fn open_join_accept(app_key: &Key, phy: &[u8]) -> Option<JoinAccept> {
    let (&mhdr, enc) = phy.split_first()?;
    if enc.len() != 16 {
        return None;
    }
    let mut blk = [0u8; 16];
    blk.copy_from_slice(enc);
    let plain = aes_encrypt(app_key, blk);
    let (body, mic) = plain.split_at(12);
    let mut signed = vec![mhdr];
    signed.extend_from_slice(body);
    if !mic_eq(&cmac4(app_key, &[&signed]), &arr4(mic)) {
        return None;
    }
    let u24 = |r: std::ops::Range<usize>| le_u64(body.get(r).unwrap_or(&[])) as u32;
    let dl = *body.get(10)?;
    Some(JoinAccept {
        app_nonce: u24(0..3),
        net_id: u24(3..6),
        dev_addr: u24(6..10),
        rx1_dr_offset: (dl >> 4) & 0x07,
        rx2_dr: dl & 0x0f,
        rx_delay: *body.get(11)?,
    })
}

/// What a data frame carries, for [`build_data`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSpec {
    pub confirmed: bool,
    pub ack: bool,
    pub adr: bool,
    pub fpending: bool,
    pub fopts: Vec<u8>,
    pub fport: Option<u8>,
    /// Plaintext FRMPayload; encrypted with AppSKey (NwkSKey on FPort 0).
    pub payload: Vec<u8>,
}

/// Builds a data frame (downlink when `dir` is `Down`, uplink otherwise) with its MIC.
pub fn build_data(
    dir: Dir,
    nwk_s_key: &Key,
    app_s_key: &Key,
    dev_addr: u32,
    fcnt: u32,
    spec: &DataSpec,
) -> Vec<u8> {
    let mtype = match (dir, spec.confirmed) {
        (Dir::Up, false) => MType::UnconfirmedUp,
        (Dir::Up, true) => MType::ConfirmedUp,
        (Dir::Down, false) => MType::UnconfirmedDown,
        (Dir::Down, true) => MType::ConfirmedDown,
    };
    let fopts = spec.fopts.get(..spec.fopts.len().min(15)).unwrap_or(&[]);
    let mut fctrl = fopts.len() as u8;
    if spec.adr {
        fctrl |= 0x80;
    }
    if spec.ack {
        fctrl |= 0x20;
    }
    if spec.fpending {
        fctrl |= 0x10;
    }
    let mut f = vec![(mtype as u8) << 5];
    f.extend_from_slice(&dev_addr.to_le_bytes());
    f.push(fctrl);
    f.extend_from_slice(&(fcnt as u16).to_le_bytes());
    f.extend_from_slice(fopts);
    if let Some(port) = spec.fport {
        f.push(port);
        let key = if port == 0 { nwk_s_key } else { app_s_key };
        f.extend(crypt_frm(key, dir, dev_addr, fcnt, &spec.payload));
    }
    let mic = data_mic(nwk_s_key, dir, dev_addr, fcnt, &f);
    f.extend_from_slice(&mic);
    f
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
        let phy = build_join_accept(&APP_KEY, &ja);
        assert_eq!(phy.len(), 17);
        assert_eq!(open_join_accept(&APP_KEY, &phy), Some(ja));
    }

    #[test]
    fn data_round_trip_with_mic_and_encryption() {
        let (n, a) = derive_session_keys(&APP_KEY, 1, 2, 3);
        let spec = DataSpec {
            confirmed: true,
            fopts: vec![0x02],
            fport: Some(1),
            payload: b"hello world, this is longer than one block".to_vec(),
            ..Default::default()
        };
        let phy = build_data(Dir::Up, &n, &a, 0x2601_1234, 70_000, &spec);
        let Uplink::Data(d) = parse_uplink(&phy).unwrap() else {
            panic!()
        };
        assert!(d.confirmed());
        assert_eq!(d.fcnt16, 70_000u32 as u16);
        assert!(mic_eq(
            &data_mic(&n, Dir::Up, d.dev_addr, 70_000, &d.signed),
            &d.mic
        ));
        assert!(!mic_eq(
            &data_mic(&n, Dir::Up, d.dev_addr, 70_000 & 0xffff, &d.signed),
            &d.mic
        ));
        assert_eq!(
            crypt_frm(&a, Dir::Up, d.dev_addr, 70_000, &d.frm_payload),
            spec.payload
        );
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
