//! The USB radio-stick catalogue: what a USB vendor/product id (and, where a generic USB–serial bridge
//! makes that id ambiguous, the product or interface string) says about the stick behind a serial port:
//! the radio protocol, the firmware stack it speaks, its serial settings, and whether a Warden adapter
//! drives it.
//!
//! Facts come from the vendors' and the open-source stacks' public documentation (Zigbee2MQTT's
//! supported-adapter pages, Home Assistant's USB discovery matchers for ZHA and Z-Wave JS, the vendors'
//! data sheets). Rows marked [`Confidence::Unsure`] are ones where those sources disagree or say
//! nothing firm; a probe settles them on the real stick.
//!
//! Several sticks share the id of their USB–serial bridge chip (Silicon Labs CP210x `10c4:ea60`,
//! WCH CH9102 `1a86:55d4`, CH340 `1a86:7523`, FTDI `0403:6015`): a Z-Stack stick, an EmberZNet stick
//! and a Z-Wave 700 stick can all enumerate as `10c4:ea60`. For those the product string is a hint and
//! [`Identification::candidates`] lists the stacks a probe (see `probe`) must choose between.

use serde::Serialize;

/// The radio network a stick joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Zigbee,
    ZWave,
}

/// The serial protocol the stick's firmware speaks to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Stack {
    /// Texas Instruments Z-Stack, ZNP (Monitor and Test commands over UART).
    Znp,
    /// Silicon Labs EmberZNet, EZSP over ASH.
    Ezsp,
    /// Z-Wave Serial API (any 500/700/800-series controller).
    ZWaveSerialApi,
    /// dresden elektronik deCONZ serial protocol (ConBee, RaspBee).
    Deconz,
    /// ZiGate serial protocol.
    Zigate,
}

impl Stack {
    pub fn protocol(self) -> Protocol {
        match self {
            Stack::ZWaveSerialApi => Protocol::ZWave,
            Stack::Znp | Stack::Ezsp | Stack::Deconz | Stack::Zigate => Protocol::Zigbee,
        }
    }

    /// The name used in config (`stack = "…"`) and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Znp => "znp",
            Stack::Ezsp => "ezsp",
            Stack::ZWaveSerialApi => "zwave-serial-api",
            Stack::Deconz => "deconz",
            Stack::Zigate => "zigate",
        }
    }

    /// The Warden adapter that drives this stack, or `None` when there is none yet (the catalogue
    /// keeps the row so the stick is still recognised and the operator told).
    pub fn adapter(self) -> Option<&'static str> {
        match self {
            Stack::Znp | Stack::Ezsp => Some("zigbee"),
            Stack::ZWaveSerialApi => Some("zwave"),
            Stack::Deconz | Stack::Zigate => None,
        }
    }

    /// The baud rate the stack uses when the catalogue row does not say otherwise.
    pub fn default_baud(self) -> u32 {
        match self {
            Stack::Deconz => 38_400,
            _ => 115_200,
        }
    }
}

/// How firmly the public sources agree on a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// Vendor documentation and the open-source stacks agree.
    Documented,
    /// Reported by users or one source only; the probe confirms.
    Unsure,
}

/// Serial line flow control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    None,
    /// RTS/CTS.
    Hardware,
    /// XON/XOFF.
    Software,
}

/// One stick model.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: &'static str,
    pub vid: u16,
    pub pid: u16,
    /// Case-insensitive substrings, all of which must occur in the USB product string (or, for a
    /// multi-interface stick, the interface string); empty: the id alone identifies the stick.
    pub hints: &'static [&'static str],
    pub stack: Stack,
    pub baud: u32,
    pub flow: Flow,
    pub confidence: Confidence,
    /// What an operator should know (firmware variants, where the sources are unsure).
    pub note: &'static str,
}

// One row per call keeps the table readable; a struct literal per row would triple its length.
#[allow(clippy::too_many_arguments)]
const fn e(
    name: &'static str,
    vid: u16,
    pid: u16,
    hints: &'static [&'static str],
    stack: Stack,
    baud: u32,
    flow: Flow,
    confidence: Confidence,
    note: &'static str,
) -> Entry {
    Entry {
        name,
        vid,
        pid,
        hints,
        stack,
        baud,
        flow,
        confidence,
        note,
    }
}

use Confidence::{Documented, Unsure};
use Stack::{Deconz, Ezsp, ZWaveSerialApi, Zigate, Znp};

/// Ids of USB–serial bridge chips that several stick makers use: the id alone never identifies the
/// stick's firmware.
pub const GENERIC_BRIDGES: &[(u16, u16, &str)] = &[
    (0x10c4, 0xea60, "Silicon Labs CP210x"),
    (0x1a86, 0x55d4, "WCH CH9102"),
    (0x1a86, 0x7523, "WCH CH340"),
    (0x0403, 0x6015, "FTDI FT231X"),
    (0x0403, 0x6001, "FTDI FT232R"),
];

/// The catalogue. Order matters only among rows with the same id: the first row whose hints all match
/// wins.
pub const ENTRIES: &[Entry] = &[
    // --- Zigbee, TI Z-Stack (ZNP) ---
    e(
        "Sonoff ZBDongle-P (CC2652P)",
        0x10c4,
        0xea60,
        &["sonoff", "dongle plus"],
        Znp,
        115_200,
        Flow::None,
        Documented,
        "CP2102N bridge; the -E model (EFR32) is the CH9102 row. Some -E batches are reported with this id: the probe decides",
    ),
    e(
        "slae.sh CC2652RB stick",
        0x10c4,
        0xea60,
        &["2652"],
        Znp,
        115_200,
        Flow::None,
        Documented,
        "",
    ),
    e(
        "TubesZB CC2652 coordinator",
        0x10c4,
        0xea60,
        &["tubeszb"],
        Znp,
        115_200,
        Flow::None,
        Unsure,
        "TubesZB also sells EFR32 models under the same name: the probe decides",
    ),
    e(
        "ZigStar CC2652 coordinator",
        0x1a86,
        0x55d4,
        &["zigstar"],
        Znp,
        115_200,
        Flow::None,
        Unsure,
        "",
    ),
    e(
        "TI CC2531 USB stick",
        0x0451,
        0x16a8,
        &[],
        Znp,
        115_200,
        Flow::None,
        Documented,
        "Z-Stack Home 1.2 firmware: small device tables, not recommended for new networks",
    ),
    e(
        "TI LaunchPad CC1352/CC2652 (XDS110)",
        0x0451,
        0xbef3,
        &[],
        Znp,
        115_200,
        Flow::None,
        Documented,
        "the XDS110 exposes two ports; the Z-Stack one is interface 00",
    ),
    // --- Zigbee, Silicon Labs EmberZNet (EZSP) ---
    e(
        "Sonoff ZBDongle-E (EFR32MG21)",
        0x1a86,
        0x55d4,
        &["sonoff", "dongle plus"],
        Ezsp,
        115_200,
        Flow::Software,
        Documented,
        "CH9102 bridge; stock firmware uses software flow control, hardware-flow builds exist",
    ),
    e(
        "Home Assistant SkyConnect",
        0x10c4,
        0xea60,
        &["skyconnect"],
        Ezsp,
        115_200,
        Flow::Hardware,
        Documented,
        "may carry Thread (RCP) firmware instead of Zigbee: the probe tells",
    ),
    e(
        "Home Assistant Connect ZBT-1",
        0x10c4,
        0xea60,
        &["connect zbt-1"],
        Ezsp,
        115_200,
        Flow::Hardware,
        Documented,
        "the renamed SkyConnect; may carry Thread (RCP) firmware instead of Zigbee",
    ),
    e(
        "SMLIGHT SLZB-07 (EFR32MG24)",
        0x10c4,
        0xea60,
        &["slzb-07"],
        Ezsp,
        115_200,
        Flow::Hardware,
        Unsure,
        "",
    ),
    e(
        "Nortek HUSBZB-1 (Zigbee interface)",
        0x10c4,
        0x8a2a,
        &["zigbee"],
        Ezsp,
        57_600,
        Flow::Software,
        Documented,
        "one USB device, two ports: interface 01 is Zigbee (EM3581), interface 00 is Z-Wave",
    ),
    // --- Zigbee, other stacks (no Warden adapter yet) ---
    e(
        "dresden elektronik ConBee II",
        0x1cf1,
        0x0030,
        &[],
        Deconz,
        38_400,
        Flow::None,
        Documented,
        "deCONZ protocol: no Warden adapter yet",
    ),
    e(
        "dresden elektronik ConBee III",
        0x0403,
        0x6015,
        &["conbee"],
        Deconz,
        115_200,
        Flow::None,
        Documented,
        "FTDI bridge; deCONZ protocol: no Warden adapter yet",
    ),
    e(
        "ZiGate USB-TTL",
        0x10c4,
        0xea60,
        &["zigate"],
        Zigate,
        115_200,
        Flow::None,
        Unsure,
        "ZiGate protocol: no Warden adapter yet",
    ),
    // --- Z-Wave Serial API ---
    e(
        "Aeotec Z-Stick Gen5/Gen5+ (ZW090)",
        0x0658,
        0x0200,
        &[],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Documented,
        "Sigma Designs id, also used by Z-Wave.me UZB1; the Gen5 needs a USB 2 hub on a Raspberry Pi 4",
    ),
    e(
        "Nortek HUSBZB-1 (Z-Wave interface)",
        0x10c4,
        0x8a2a,
        &["z-wave"],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Documented,
        "interface 00 of the combined stick",
    ),
    e(
        "Zooz ZST10 700",
        0x10c4,
        0xea60,
        &["zooz"],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Unsure,
        "CP2102N bridge shared with Zigbee sticks; the product string is often the bridge's own: the probe decides",
    ),
    e(
        "Aeotec Z-Stick 7",
        0x10c4,
        0xea60,
        &["z-stick 7"],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Unsure,
        "CP2102N bridge shared with Zigbee sticks: the probe decides",
    ),
    e(
        "Silicon Labs UZB-7",
        0x10c4,
        0xea60,
        &["uzb"],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Unsure,
        "CP2102N bridge shared with Zigbee sticks: the probe decides",
    ),
    e(
        "Zooz ZST39 800 LR",
        0x1a86,
        0x55d4,
        &["800"],
        ZWaveSerialApi,
        115_200,
        Flow::None,
        Unsure,
        "CH9102 bridge shared with the Sonoff ZBDongle-E; sources differ on its product string: the probe decides",
    ),
];

/// What the catalogue says about one USB serial port.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Identification {
    /// One row matches and the id is not a shared bridge id (or the row's hints matched a product
    /// string and the row is documented): no probe needed.
    Known { entry: &'static str, stack: Stack },
    /// The id belongs to a shared bridge chip: these stacks are possible (the first is the product
    /// string's hint, when there is one); a probe decides.
    Ambiguous {
        hint: Option<&'static str>,
        bridge: &'static str,
        candidates: Vec<Stack>,
    },
    /// Not a stick the catalogue knows.
    Unknown,
}

impl Identification {
    /// The stacks a probe should try, in order.
    pub fn candidates(&self) -> Vec<Stack> {
        match self {
            Identification::Known { stack, .. } => vec![*stack],
            Identification::Ambiguous { candidates, .. } => candidates.clone(),
            Identification::Unknown => Vec::new(),
        }
    }
}

fn hints_match(entry: &Entry, texts: &[&str]) -> bool {
    !entry.hints.is_empty()
        && texts.iter().any(|t| {
            let t = t.to_ascii_lowercase();
            entry.hints.iter().all(|h| t.contains(h))
        })
}

/// Finds a row by its model name.
pub fn entry(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name)
}

/// Identifies a port from its USB ids and the strings the device reports (product, interface).
pub fn identify(
    vid: u16,
    pid: u16,
    product: Option<&str>,
    interface: Option<&str>,
) -> Identification {
    let texts: Vec<&str> = [product, interface].into_iter().flatten().collect();
    let rows: Vec<&'static Entry> = ENTRIES
        .iter()
        .filter(|e| e.vid == vid && e.pid == pid)
        .collect();
    let hinted = rows.iter().copied().find(|e| hints_match(e, &texts));
    let bridge = GENERIC_BRIDGES
        .iter()
        .find(|(v, p, _)| *v == vid && *p == pid)
        .map(|(_, _, n)| *n);
    match bridge {
        None => {
            if let Some(e) = hinted {
                return Identification::Known {
                    entry: e.name,
                    stack: e.stack,
                };
            }
            // A dedicated id: rows without hints identify the stick; rows with hints need them.
            match rows.iter().find(|e| e.hints.is_empty()) {
                Some(e) => Identification::Known {
                    entry: e.name,
                    stack: e.stack,
                },
                None => Identification::Unknown,
            }
        }
        Some(bridge) => {
            // A shared bridge id: even a matching product string is a hint, since vendors reuse the
            // bridge's default strings and firmware can be swapped. Only stacks a probe can check
            // (those with a Warden adapter) are candidates; the hinted one goes first.
            let mut candidates: Vec<Stack> = Vec::new();
            if let Some(e) = hinted {
                candidates.push(e.stack);
            }
            for s in [Stack::Znp, Stack::Ezsp, Stack::ZWaveSerialApi] {
                if !candidates.contains(&s) {
                    candidates.push(s);
                }
            }
            // A hinted stick whose stack has no adapter (ConBee III, ZiGate) cannot be probed here.
            if let Some(e) = hinted.filter(|e| e.stack.adapter().is_none()) {
                return Identification::Known {
                    entry: e.name,
                    stack: e.stack,
                };
            }
            Identification::Ambiguous {
                hint: hinted.map(|e| e.name),
                bridge,
                candidates,
            }
        }
    }
}

/// The row for a probed stack on a port: the hinted row when the probe confirmed its stack. A bridge
/// stick without a confirmed hint is an unlisted model (its serial settings: the stack's defaults),
/// never the first row that happens to share the bridge's id.
pub fn row_for(stack: Stack, hint: Option<&str>) -> Option<&'static Entry> {
    hint.and_then(entry).filter(|e| e.stack == stack)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_dedicated_id_identifies_the_stick_without_a_probe() {
        assert_eq!(
            identify(0x1cf1, 0x0030, Some("ConBee II"), None),
            Identification::Known {
                entry: "dresden elektronik ConBee II",
                stack: Stack::Deconz
            }
        );
        assert_eq!(
            identify(0x0658, 0x0200, None, None),
            Identification::Known {
                entry: "Aeotec Z-Stick Gen5/Gen5+ (ZW090)",
                stack: Stack::ZWaveSerialApi
            }
        );
    }

    #[test]
    fn the_husbzb_1_interfaces_are_told_apart_by_their_interface_string() {
        let zb = identify(
            0x10c4,
            0x8a2a,
            Some("HubZ Smart Home Controller"),
            Some("HubZ ZigBee Com Port"),
        );
        let zw = identify(
            0x10c4,
            0x8a2a,
            Some("HubZ Smart Home Controller"),
            Some("HubZ Z-Wave Com Port"),
        );
        assert_eq!(
            zb,
            Identification::Known {
                entry: "Nortek HUSBZB-1 (Zigbee interface)",
                stack: Stack::Ezsp
            }
        );
        assert_eq!(
            zw,
            Identification::Known {
                entry: "Nortek HUSBZB-1 (Z-Wave interface)",
                stack: Stack::ZWaveSerialApi
            }
        );
        assert_eq!(
            identify(0x10c4, 0x8a2a, Some("HubZ Smart Home Controller"), None),
            Identification::Unknown
        );
    }

    #[test]
    fn a_shared_bridge_id_is_ambiguous_and_the_product_string_only_orders_the_probe() {
        assert_eq!(
            identify(
                0x10c4,
                0xea60,
                Some("Sonoff Zigbee 3.0 USB Dongle Plus"),
                None
            ),
            Identification::Ambiguous {
                hint: Some("Sonoff ZBDongle-P (CC2652P)"),
                bridge: "Silicon Labs CP210x",
                candidates: vec![Stack::Znp, Stack::Ezsp, Stack::ZWaveSerialApi],
            }
        );
        assert_eq!(
            identify(
                0x1a86,
                0x55d4,
                Some("SONOFF Zigbee 3.0 USB Dongle Plus V2"),
                None
            )
            .candidates(),
            vec![Stack::Ezsp, Stack::Znp, Stack::ZWaveSerialApi]
        );
        assert_eq!(
            identify(
                0x10c4,
                0xea60,
                Some("CP2102N USB to UART Bridge Controller"),
                None
            ),
            Identification::Ambiguous {
                hint: None,
                bridge: "Silicon Labs CP210x",
                candidates: vec![Stack::Znp, Stack::Ezsp, Stack::ZWaveSerialApi],
            }
        );
        assert_eq!(
            identify(0x10c4, 0xea60, Some("SkyConnect v1.0"), None).candidates()[0],
            Stack::Ezsp
        );
        assert_eq!(
            identify(0x10c4, 0xea60, Some("Zooz ZST10 700"), None).candidates()[0],
            Stack::ZWaveSerialApi
        );
    }

    #[test]
    fn a_bridge_stick_without_an_adapter_is_reported_as_such_not_probed() {
        assert_eq!(
            identify(0x0403, 0x6015, Some("ConBee III"), None),
            Identification::Known {
                entry: "dresden elektronik ConBee III",
                stack: Stack::Deconz
            }
        );
    }

    #[test]
    fn a_probed_bridge_stick_takes_its_hinted_row_only_when_the_stack_agrees() {
        assert_eq!(
            row_for(Stack::Znp, Some("Sonoff ZBDongle-P (CC2652P)")).map(|e| e.name),
            Some("Sonoff ZBDongle-P (CC2652P)")
        );
        assert!(row_for(Stack::Ezsp, Some("Sonoff ZBDongle-P (CC2652P)")).is_none());
        assert!(row_for(Stack::Znp, None).is_none());
    }

    #[test]
    fn unknown_ids_are_unknown() {
        assert_eq!(
            identify(0x1234, 0x5678, Some("sonoff dongle plus"), None),
            Identification::Unknown
        );
    }

    #[test]
    fn every_row_is_well_formed() {
        for e in ENTRIES {
            assert!(
                e.hints.iter().all(|h| *h == h.to_ascii_lowercase()),
                "{}",
                e.name
            );
            assert!(e.baud >= 9600, "{}", e.name);
            let shared = GENERIC_BRIDGES
                .iter()
                .any(|(v, p, _)| *v == e.vid && *p == e.pid);
            if shared {
                assert!(!e.hints.is_empty(), "{} on a shared id needs hints", e.name);
            }
        }
    }
}
