//! Discovery of DVB adapters from sysfs (`/sys/class/dvb`): adapter number,
//! its device nodes, the driver, the owning USB device (bus path,
//! vendor:product, serial) and, when asked, each frontend's name from
//! FE_GET_INFO.
//!
//! Promises: discovery never fails as a whole — an unreadable entry is
//! skipped (and counted in `Discovery::skipped`), a frontend that cannot be
//! opened keeps its error text; the USB identity is what makes a tuner's
//! name stable when USB enumeration order changes (`Adapter::stable_name`).
//! Non-USB adapters (vidtv, PCIe cards) have `usb: None`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::frontend::Frontend;

/// The USB device that owns an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// Kernel USB path, e.g. "1-1.4" (bus 1, hub port 1, port 4): stable
    /// while the tuner stays in the same socket.
    pub bus_path: String,
    pub vendor: u16,
    pub product: u16,
    pub serial: Option<String>,
    pub product_name: Option<String>,
}

/// One frontend of an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendEntry {
    pub index: u32,
    /// From FE_GET_INFO when probed.
    pub name: Option<String>,
    /// `SYS_*` values from DTV_ENUM_DELSYS when probed.
    pub delivery_systems: Vec<u32>,
    /// Why probing failed (a `DvbError` in words), if it did.
    pub error: Option<String>,
}

/// One DVB adapter as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    pub number: u32,
    pub frontends: Vec<FrontendEntry>,
    pub demuxes: Vec<u32>,
    pub dvrs: Vec<u32>,
    pub cas: Vec<u32>,
    /// Driver bound to the parent device (e.g. "vidtv", "dvb_usb_dw2102").
    pub driver: Option<String>,
    /// Canonical sysfs path of the parent device.
    pub device_path: Option<PathBuf>,
    pub usb: Option<UsbDevice>,
}

impl Adapter {
    /// A name that survives re-enumeration: the USB serial when the device
    /// has one, else its USB path, else "adapterN".
    pub fn stable_name(&self) -> String {
        match &self.usb {
            Some(u) => match &u.serial {
                Some(s) if !s.trim().is_empty() => {
                    format!("usb-{:04x}:{:04x}-{}", u.vendor, u.product, sanitize(s))
                }
                _ => format!("usb-path-{}", u.bus_path),
            },
            None => format!("adapter{}", self.number),
        }
    }
}

fn sanitize(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The result of a discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub adapters: Vec<Adapter>,
    /// Entries of /sys/class/dvb that could not be understood.
    pub skipped: u64,
}

/// Parse "dvb0.frontend1" into (0, "frontend", 1).
fn parse_node_name(name: &str) -> Option<(u32, &str, u32)> {
    let rest = name.strip_prefix("dvb")?;
    let (adapter, node) = rest.split_once('.')?;
    let split = node.find(|c: char| c.is_ascii_digit())?;
    let (kind, idx) = node.split_at(split);
    Some((adapter.parse().ok()?, kind, idx.parse().ok()?))
}

fn read_trimmed(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_hex16(p: &Path) -> Option<u16> {
    u16::from_str_radix(read_trimmed(p)?.as_str(), 16).ok()
}

/// Walk up from a device until a USB device (a directory with idVendor and
/// idProduct) is found. Stops at the sysfs root.
fn find_usb(device: &Path) -> Option<UsbDevice> {
    let mut cur = Some(device);
    while let Some(dir) = cur {
        if dir.join("idVendor").is_file() && dir.join("idProduct").is_file() {
            return Some(UsbDevice {
                bus_path: dir.file_name()?.to_string_lossy().into_owned(),
                vendor: read_hex16(&dir.join("idVendor"))?,
                product: read_hex16(&dir.join("idProduct"))?,
                serial: read_trimmed(&dir.join("serial")),
                product_name: read_trimmed(&dir.join("product")),
            });
        }
        if dir.file_name().map(|n| n == "devices").unwrap_or(true) {
            break;
        }
        cur = dir.parent();
    }
    None
}

/// The driver of the nearest device up from `device` that has one: a DVB
/// node's parent is often a driverless i2c adapter or USB interface glue
/// (vidtv's is `vidtv.0/i2c-0`; the driver sits on `vidtv.0`).
fn find_driver(device: &Path) -> Option<String> {
    let mut cur = Some(device);
    while let Some(dir) = cur {
        if let Ok(d) = fs::read_link(dir.join("driver")) {
            return d.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        if dir.file_name().map(|n| n == "devices").unwrap_or(true) {
            break;
        }
        cur = dir.parent();
    }
    None
}

/// Discover adapters under `class_dir` (normally `/sys/class/dvb`) without
/// opening any device.
pub fn discover_in(class_dir: &Path) -> Discovery {
    let mut out = Discovery::default();
    let Ok(rd) = fs::read_dir(class_dir) else {
        return out;
    };
    let mut by_num: BTreeMap<u32, Adapter> = BTreeMap::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some((num, kind, idx)) = parse_node_name(&name) else {
            out.skipped += 1;
            continue;
        };
        let a = by_num.entry(num).or_insert_with(|| Adapter {
            number: num,
            frontends: Vec::new(),
            demuxes: Vec::new(),
            dvrs: Vec::new(),
            cas: Vec::new(),
            driver: None,
            device_path: None,
            usb: None,
        });
        match kind {
            "frontend" => a.frontends.push(FrontendEntry {
                index: idx,
                name: None,
                delivery_systems: Vec::new(),
                error: None,
            }),
            "demux" => a.demuxes.push(idx),
            "dvr" => a.dvrs.push(idx),
            "ca" => a.cas.push(idx),
            _ => {}
        }
        if a.device_path.is_none() {
            if let Ok(dev) = fs::canonicalize(ent.path().join("device")) {
                a.driver = find_driver(&dev);
                a.usb = find_usb(&dev);
                a.device_path = Some(dev);
            }
        }
    }
    for a in by_num.values_mut() {
        a.frontends.sort_by_key(|f| f.index);
        a.demuxes.sort_unstable();
        a.dvrs.sort_unstable();
        a.cas.sort_unstable();
    }
    out.adapters = by_num.into_values().collect();
    out
}

/// Discover adapters in `/sys/class/dvb` and probe each frontend
/// (read-only open, FE_GET_INFO, DTV_ENUM_DELSYS) under `/dev/dvb`.
pub fn discover() -> Discovery {
    let mut d = discover_in(Path::new("/sys/class/dvb"));
    for a in &mut d.adapters {
        for fe in &mut a.frontends {
            let path = format!("/dev/dvb/adapter{}/frontend{}", a.number, fe.index);
            let dev = format!("adapter{}/frontend{}", a.number, fe.index);
            match Frontend::open_path(Path::new(&path), &dev, false).and_then(|f| f.info()) {
                Ok(info) => {
                    fe.name = Some(info.name);
                    fe.delivery_systems = info.delivery_systems;
                }
                Err(e) => fe.error = Some(e.to_string()),
            }
        }
    }
    d
}

/// The adapters as an 80-column table (for `capbox adapters`).
pub fn table(adapters: &[Adapter]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<9} {:<26} {:<14} {:<27}",
        "ADAPTER", "FRONTEND", "DRIVER", "STABLE NAME"
    );
    for a in adapters {
        for fe in &a.frontends {
            let name = fe.name.as_deref().or(fe.error.as_deref()).unwrap_or("?");
            let _ = writeln!(
                s,
                "{:<9} {:<26.26} {:<14.14} {:<27.27}",
                format!("{}/fe{}", a.number, fe.index),
                name,
                a.driver.as_deref().unwrap_or("-"),
                a.stable_name()
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn node_names() {
        assert_eq!(parse_node_name("dvb0.frontend0"), Some((0, "frontend", 0)));
        assert_eq!(parse_node_name("dvb12.dvr3"), Some((12, "dvr", 3)));
        assert_eq!(parse_node_name("dvb0.net"), None);
        assert_eq!(parse_node_name("foo"), None);
    }

    /// A fake sysfs shaped like a TBS USB tuner's (devices/…/usb1/1-1/1-1.4
    /// with an interface 1-1.4:1.0 bound to the driver) and a platform one.
    #[test]
    fn discovers_usb_identity_through_the_device_link() {
        let root = std::env::temp_dir().join(format!("capbox-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let usbdev = root.join("devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.4");
        let intf = usbdev.join("1-1.4:1.0");
        let drv = root.join("bus/usb/drivers/dvb_usb_tbs5927");
        fs::create_dir_all(&intf).unwrap();
        fs::create_dir_all(&drv).unwrap();
        fs::write(usbdev.join("idVendor"), "734c\n").unwrap();
        fs::write(usbdev.join("idProduct"), "5927\n").unwrap();
        fs::write(usbdev.join("serial"), "TBS 0042\n").unwrap();
        symlink(&drv, intf.join("driver")).unwrap();
        let plat = root.join("devices/platform/vidtv.0");
        let plat_drv = root.join("bus/platform/drivers/vidtv");
        fs::create_dir_all(&plat_drv).unwrap();
        fs::create_dir_all(plat.join("i2c-0")).unwrap();
        symlink(&plat_drv, plat.join("driver")).unwrap();
        let plat = plat.join("i2c-0");
        let class = root.join("class/dvb");
        for (name, dev) in [
            ("dvb1.frontend0", &intf),
            ("dvb1.demux0", &intf),
            ("dvb1.dvr0", &intf),
            ("dvb0.frontend0", &plat),
            ("dvb0.demux0", &plat),
        ] {
            let d = class.join(name);
            fs::create_dir_all(&d).unwrap();
            symlink(dev, d.join("device")).unwrap();
        }
        fs::create_dir_all(class.join("garbage")).unwrap();

        let d = discover_in(&class);
        assert_eq!(d.skipped, 1);
        assert_eq!(d.adapters.len(), 2);
        let a0 = &d.adapters[0];
        assert_eq!(a0.number, 0);
        assert_eq!(a0.usb, None);
        assert_eq!(a0.driver.as_deref(), Some("vidtv"));
        assert_eq!(a0.stable_name(), "adapter0");
        let a1 = &d.adapters[1];
        assert_eq!(a1.frontends.len(), 1);
        assert_eq!(a1.dvrs, vec![0]);
        assert_eq!(a1.driver.as_deref(), Some("dvb_usb_tbs5927"));
        let u = a1.usb.as_ref().unwrap();
        assert_eq!((u.vendor, u.product), (0x734c, 0x5927));
        assert_eq!(u.bus_path, "1-1.4");
        assert_eq!(u.serial.as_deref(), Some("TBS 0042"));
        assert_eq!(a1.stable_name(), "usb-734c:5927-TBS_0042");
        for line in table(&d.adapters).lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        let _ = fs::remove_dir_all(&root);
    }
}
