//! Finding the USB serial ports that are attached, from sysfs and the `/dev/serial/by-id` links udev
//! makes, without libudev. Both roots are parameters so tests run against a fixture tree.
//!
//! Every file read here is treated as hostile: attribute files are read with a size cap and must be
//! short UTF-8, ids must be four hex digits, and a link that points nowhere is reported, not followed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalogue::{Identification, identify};

/// Where to look. `Default` is the real system.
#[derive(Debug, Clone)]
pub struct Roots {
    /// sysfs mount point (`/sys`).
    pub sysfs: PathBuf,
    /// The by-id link directory (`/dev/serial/by-id`).
    pub by_id: PathBuf,
    /// Where the tty device nodes are (`/dev`).
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sysfs: "/sys".into(),
            by_id: "/dev/serial/by-id".into(),
            dev: "/dev".into(),
        }
    }
}

/// One attached USB serial port.
#[derive(Debug, Clone, Serialize)]
pub struct UsbPort {
    /// Kernel name, e.g. `ttyUSB0`.
    pub tty: String,
    /// The device node, e.g. `/dev/ttyUSB0` (changes with plug order).
    pub dev_path: PathBuf,
    /// The stable by-id link for this port, when udev made one.
    pub by_id: Option<PathBuf>,
    pub vid: u16,
    pub pid: u16,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    pub interface_number: Option<u8>,
    pub interface: Option<String>,
    pub identification: Identification,
}

impl UsbPort {
    /// The path config should use: the by-id link when there is one.
    pub fn stable_path(&self) -> &Path {
        self.by_id.as_deref().unwrap_or(&self.dev_path)
    }

    pub fn usb_id(&self) -> String {
        format!("{:04x}:{:04x}", self.vid, self.pid)
    }
}

/// Something found while looking that the operator should hear about.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    #[error(
        "{link}: points to {target}, which does not exist (the stick was unplugged, or the link is stale)"
    )]
    DanglingLink { link: String, target: String },
    #[error("{link}: not a symbolic link; by-id entries are links to a tty")]
    NotALink { link: String },
    #[error("{link}: points to {target}, which sysfs does not list as a USB serial port")]
    NotUsb { link: String, target: String },
    #[error("{tty}: sysfs attribute {attribute} is unreadable or malformed: {reason}")]
    BadAttribute {
        tty: String,
        attribute: String,
        reason: String,
    },
    #[error("{path}: cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The result of one look: ports (sorted by tty name) and problems.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discovery {
    pub ports: Vec<UsbPort>,
    pub problems: Vec<Problem>,
}

/// The longest sysfs attribute accepted (USB strings are at most 126 UTF-16 units).
const MAX_ATTR: u64 = 512;
/// How many directories up from a tty's device to look for the USB device.
const MAX_DEPTH: usize = 8;

fn read_attr(dir: &Path, name: &str) -> Result<Option<String>, String> {
    let p = dir.join(name);
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut buf = Vec::new();
    f.take(MAX_ATTR + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_ATTR {
        return Err(format!("longer than {MAX_ATTR} bytes"));
    }
    let s = String::from_utf8(buf).map_err(|_| "not UTF-8".to_owned())?;
    let s = s.trim();
    if s.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(Some(s.to_owned()))
}

fn hex16(s: &str) -> Option<u16> {
    (s.len() == 4 && s.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| u16::from_str_radix(s, 16).ok())
        .flatten()
}

/// Finds the USB device directory (the one holding `idVendor`) above a tty's device directory, and the
/// USB interface directory (holding `bInterfaceNumber`) on the way, staying inside sysfs.
fn usb_dirs(sysfs: &Path, tty_dir: &Path) -> Option<(PathBuf, Option<PathBuf>)> {
    let root = std::fs::canonicalize(sysfs).ok()?;
    let mut d = std::fs::canonicalize(tty_dir.join("device")).ok()?;
    let mut iface = None;
    for _ in 0..MAX_DEPTH {
        if !d.starts_with(&root) {
            return None;
        }
        if iface.is_none() && d.join("bInterfaceNumber").is_file() {
            iface = Some(d.clone());
        }
        if d.join("idVendor").is_file() && d.join("idProduct").is_file() {
            return Some((d, iface));
        }
        d = d.parent()?.to_path_buf();
    }
    None
}

/// The by-id links, as tty name → link path; dangling and malformed links go to `problems`.
fn by_id_links(dir: &Path, problems: &mut Vec<Problem>) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // No by-id directory: udev made none (no USB serial device yet), not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            problems.push(Problem::Unreadable {
                path: dir.display().to_string(),
                reason: e.to_string(),
            });
            return out;
        }
    };
    let mut links: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    links.sort();
    for link in links {
        let target = match std::fs::read_link(&link) {
            Ok(t) => t,
            Err(_) => {
                problems.push(Problem::NotALink {
                    link: link.display().to_string(),
                });
                continue;
            }
        };
        if std::fs::metadata(&link).is_err() {
            problems.push(Problem::DanglingLink {
                link: link.display().to_string(),
                target: target.display().to_string(),
            });
            continue;
        }
        // udev's links are relative (`../../ttyUSB0`): the tty is the last component of the target.
        if let Some(name) = target.file_name().and_then(|n| n.to_str()) {
            out.entry(name.to_owned()).or_insert(link);
        }
    }
    out
}

/// Lists the USB serial ports under `roots`.
pub fn discover(roots: &Roots) -> Discovery {
    let mut d = Discovery::default();
    let mut links = by_id_links(&roots.by_id, &mut d.problems);
    let class = roots.sysfs.join("class/tty");
    let mut ttys: Vec<String> = match std::fs::read_dir(&class) {
        Ok(es) => es
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect(),
        Err(e) => {
            d.problems.push(Problem::Unreadable {
                path: class.display().to_string(),
                reason: e.to_string(),
            });
            Vec::new()
        }
    };
    ttys.sort();
    for tty in ttys {
        let tty_dir = class.join(&tty);
        let Some((usb, iface)) = usb_dirs(&roots.sysfs, &tty_dir) else {
            continue; // not a USB serial port (ttyS0, a pty, a console)
        };
        let mut bad = |attribute: &str, reason: String| {
            d.problems.push(Problem::BadAttribute {
                tty: tty.clone(),
                attribute: attribute.to_owned(),
                reason,
            })
        };
        let id = |name: &str| -> Result<u16, String> {
            match read_attr(&usb, name)? {
                Some(s) => hex16(&s).ok_or_else(|| format!("{s:?} is not four hex digits")),
                None => Err("missing".into()),
            }
        };
        let (vid, pid) = match (id("idVendor"), id("idProduct")) {
            (Ok(v), Ok(p)) => (v, p),
            (Err(r), _) => {
                bad("idVendor", r);
                continue;
            }
            (_, Err(r)) => {
                bad("idProduct", r);
                continue;
            }
        };
        let mut text = |dir: &Path, name: &str| match read_attr(dir, name) {
            Ok(v) => v,
            Err(r) => {
                bad(name, r);
                None
            }
        };
        let manufacturer = text(&usb, "manufacturer");
        let product = text(&usb, "product");
        let serial = text(&usb, "serial");
        let (interface_number, interface) = match &iface {
            Some(i) => (
                text(i, "bInterfaceNumber").and_then(|s| u8::from_str_radix(&s, 16).ok()),
                text(i, "interface"),
            ),
            None => (None, None),
        };
        let identification = identify(vid, pid, product.as_deref(), interface.as_deref());
        d.ports.push(UsbPort {
            dev_path: roots.dev.join(&tty),
            by_id: links.remove(&tty),
            tty,
            vid,
            pid,
            manufacturer,
            product,
            serial,
            interface_number,
            interface,
            identification,
        });
    }
    for (tty, link) in links {
        d.problems.push(Problem::NotUsb {
            link: link.display().to_string(),
            target: tty,
        });
    }
    d
}

/// Test and fixture support: writes a sysfs-like tree for one USB serial port, laid out as the kernel
/// does (`class/tty/NAME` → the tty directory under the USB interface under the USB device).
pub mod fixture {
    use std::path::Path;

    /// One fake USB serial port.
    pub struct FakePort<'a> {
        pub tty: &'a str,
        pub bus_path: &'a str,
        pub vid: &'a str,
        pub pid: &'a str,
        pub manufacturer: Option<&'a str>,
        pub product: Option<&'a str>,
        pub serial: Option<&'a str>,
        pub interface_number: u8,
        pub interface: Option<&'a str>,
    }

    /// Adds `port` under `sysfs`.
    pub fn add(sysfs: &Path, port: &FakePort) -> std::io::Result<()> {
        let usb = sysfs.join("devices/pci0000:00/usb1").join(port.bus_path);
        let iface = usb.join(format!("{}:1.{}", port.bus_path, port.interface_number));
        let tty = iface.join(port.tty).join("tty").join(port.tty);
        std::fs::create_dir_all(&tty)?;
        std::fs::write(usb.join("idVendor"), format!("{}\n", port.vid))?;
        std::fs::write(usb.join("idProduct"), format!("{}\n", port.pid))?;
        for (name, v) in [
            ("manufacturer", port.manufacturer),
            ("product", port.product),
            ("serial", port.serial),
        ] {
            if let Some(v) = v {
                std::fs::write(usb.join(name), format!("{v}\n"))?;
            }
        }
        std::fs::write(
            iface.join("bInterfaceNumber"),
            format!("{:02x}\n", port.interface_number),
        )?;
        if let Some(i) = port.interface {
            std::fs::write(iface.join("interface"), format!("{i}\n"))?;
        }
        // class/tty/NAME → the tty dir; its `device` → the usb-serial port dir (its parent's parent).
        let class = sysfs.join("class/tty");
        std::fs::create_dir_all(&class)?;
        std::os::unix::fs::symlink(&tty, class.join(port.tty))?;
        std::os::unix::fs::symlink(iface.join(port.tty), tty.join("device"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::fixture::{FakePort, add};
    use super::*;
    use crate::catalogue::Stack;

    fn port<'a>(
        tty: &'a str,
        bus: &'a str,
        vid: &'a str,
        pid: &'a str,
        product: &'a str,
    ) -> FakePort<'a> {
        FakePort {
            tty,
            bus_path: bus,
            vid,
            pid,
            manufacturer: Some("Vendor"),
            product: Some(product),
            serial: Some("0001"),
            interface_number: 0,
            interface: None,
        }
    }

    fn roots(dir: &Path) -> Roots {
        Roots {
            sysfs: dir.join("sys"),
            by_id: dir.join("by-id"),
            dev: dir.join("dev"),
        }
    }

    #[test]
    fn ports_are_found_with_their_ids_strings_and_by_id_links() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        add(
            &r.sysfs,
            &port("ttyACM0", "1-1", "1cf1", "0030", "ConBee II"),
        )
        .unwrap();
        add(&r.sysfs, &port("ttyUSB0", "1-2", "0658", "0200", "Z-Stick")).unwrap();
        // A non-USB tty: listed in class/tty but with no USB ancestor.
        std::fs::create_dir_all(r.sysfs.join("devices/platform/serial8250/tty/ttyS0")).unwrap();
        std::os::unix::fs::symlink(
            r.sysfs.join("devices/platform/serial8250/tty/ttyS0"),
            r.sysfs.join("class/tty/ttyS0"),
        )
        .unwrap();
        std::fs::create_dir_all(&r.by_id).unwrap();
        std::fs::create_dir_all(&r.dev).unwrap();
        std::fs::write(r.dev.join("ttyACM0"), b"").unwrap();
        std::os::unix::fs::symlink(
            "../dev/ttyACM0",
            r.by_id.join("usb-dresden_elektronik_ConBee_II-if00"),
        )
        .unwrap();
        let d = discover(&r);
        assert_eq!(d.problems, vec![]);
        assert_eq!(d.ports.len(), 2);
        let conbee = &d.ports[0];
        assert_eq!(conbee.tty, "ttyACM0");
        assert_eq!(conbee.usb_id(), "1cf1:0030");
        assert_eq!(conbee.product.as_deref(), Some("ConBee II"));
        assert_eq!(conbee.interface_number, Some(0));
        assert_eq!(
            conbee.stable_path(),
            r.by_id.join("usb-dresden_elektronik_ConBee_II-if00")
        );
        assert_eq!(conbee.identification.candidates(), vec![Stack::Deconz]);
        let zstick = &d.ports[1];
        assert_eq!(zstick.by_id, None);
        assert_eq!(zstick.stable_path(), r.dev.join("ttyUSB0"));
        assert_eq!(
            zstick.identification.candidates(),
            vec![Stack::ZWaveSerialApi]
        );
    }

    #[test]
    fn a_dangling_by_id_link_is_a_problem_that_names_its_target() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        std::fs::create_dir_all(&r.by_id).unwrap();
        std::fs::create_dir_all(r.sysfs.join("class/tty")).unwrap();
        std::os::unix::fs::symlink("../../ttyUSB7", r.by_id.join("usb-gone-if00-port0")).unwrap();
        std::fs::write(r.by_id.join("not-a-link"), b"").unwrap();
        let d = discover(&r);
        assert!(d.ports.is_empty());
        assert_eq!(
            d.problems,
            vec![
                Problem::NotALink {
                    link: r.by_id.join("not-a-link").display().to_string()
                },
                Problem::DanglingLink {
                    link: r.by_id.join("usb-gone-if00-port0").display().to_string(),
                    target: "../../ttyUSB7".into()
                },
            ]
        );
        assert!(d.problems[1].to_string().contains("does not exist"));
    }

    #[test]
    fn malformed_sysfs_attributes_are_reported_and_the_port_skipped() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        add(&r.sysfs, &port("ttyUSB0", "1-1", "zz10", "ea60", "x")).unwrap();
        let mut big = port("ttyUSB1", "1-2", "10c4", "ea60", "x");
        big.product = None;
        add(&r.sysfs, &big).unwrap();
        std::fs::write(
            r.sysfs.join("devices/pci0000:00/usb1/1-2/product"),
            "A".repeat(5000),
        )
        .unwrap();
        add(
            &r.sysfs,
            &port("ttyUSB2", "1-3", "10c4", "ea60", "bad\u{7}bell"),
        )
        .unwrap();
        let d = discover(&r);
        let ttys: Vec<&str> = d.ports.iter().map(|p| p.tty.as_str()).collect();
        // ttyUSB1 and ttyUSB2 keep their ids; their bad product string is dropped and reported.
        assert_eq!(ttys, vec!["ttyUSB1", "ttyUSB2"]);
        assert_eq!(d.ports[0].product, None);
        assert_eq!(d.ports[1].product, None);
        assert_eq!(
            d.problems,
            vec![
                Problem::BadAttribute {
                    tty: "ttyUSB0".into(),
                    attribute: "idVendor".into(),
                    reason: "\"zz10\" is not four hex digits".into()
                },
                Problem::BadAttribute {
                    tty: "ttyUSB1".into(),
                    attribute: "product".into(),
                    reason: "longer than 512 bytes".into()
                },
                Problem::BadAttribute {
                    tty: "ttyUSB2".into(),
                    attribute: "product".into(),
                    reason: "contains control characters".into()
                },
            ]
        );
    }

    #[test]
    fn a_device_link_escaping_sysfs_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        let outside = t.path().join("outside/1-1");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("idVendor"), "10c4\n").unwrap();
        std::fs::write(outside.join("idProduct"), "ea60\n").unwrap();
        let tty = r.sysfs.join("devices/x/tty/ttyUSB0");
        std::fs::create_dir_all(&tty).unwrap();
        std::os::unix::fs::symlink(&outside, tty.join("device")).unwrap();
        std::fs::create_dir_all(r.sysfs.join("class/tty")).unwrap();
        std::os::unix::fs::symlink(&tty, r.sysfs.join("class/tty/ttyUSB0")).unwrap();
        let d = discover(&r);
        assert!(d.ports.is_empty());
        // Positive control: the same layout inside sysfs is found.
        add(&r.sysfs, &port("ttyUSB1", "1-1", "10c4", "ea60", "x")).unwrap();
        assert_eq!(discover(&r).ports.len(), 1);
    }
}
