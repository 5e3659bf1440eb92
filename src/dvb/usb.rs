//! The USB device that owns a DVB adapter, and its reset.
//!
//! THIS BRANCH (h/ladder) CARRIES A MINIMAL VERSION: the contract's
//! signatures (issue 12 contract, "USB reset API"), with `owner_of`,
//! `owner_of_adapter` and `adapters_of` working from sysfs and `reset`
//! returning Err("not built yet"). The lead replaces this file with
//! h/usb's at merge; the ladder calls only these four functions.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The USB device (not interface) that owns a sysfs node, e.g.
/// /sys/class/dvb/dvb0.frontend0
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    pub sysfs: PathBuf,
    pub busnum: u32,
    pub devnum: u32,
    pub vendor: u16,
    pub product: u16,
    pub serial: Option<String>,
    pub product_name: Option<String>,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Ok(None): not on USB (e.g. vidtv: platform device).
pub fn owner_of(sysfs_node: &Path) -> Result<Option<UsbDevice>, String> {
    let dev = sysfs_node.join("device");
    let real = std::fs::canonicalize(&dev)
        .map_err(|e| format!("{}: cannot resolve: {e}", dev.display()))?;
    let mut cur = Some(real.as_path());
    while let Some(dir) = cur {
        if dir.join("idVendor").is_file() && dir.join("busnum").is_file() {
            let hex = |f: &str| read(&dir.join(f)).and_then(|s| u16::from_str_radix(&s, 16).ok());
            let num = |f: &str| read(&dir.join(f)).and_then(|s| s.parse::<u32>().ok());
            return match (
                num("busnum"),
                num("devnum"),
                hex("idVendor"),
                hex("idProduct"),
            ) {
                (Some(busnum), Some(devnum), Some(vendor), Some(product)) => Ok(Some(UsbDevice {
                    sysfs: dir.to_path_buf(),
                    busnum,
                    devnum,
                    vendor,
                    product,
                    serial: read(&dir.join("serial")),
                    product_name: read(&dir.join("product")),
                })),
                _ => Err(format!("{}: unreadable USB attributes", dir.display())),
            };
        }
        cur = dir.parent().filter(|p| *p != Path::new("/sys"));
    }
    Ok(None)
}

/// Via /sys/class/dvb/dvb{N}.frontend0.
pub fn owner_of_adapter(adapter: u32) -> Result<Option<UsbDevice>, String> {
    owner_of(Path::new(&format!("/sys/class/dvb/dvb{adapter}.frontend0")))
}

/// Every DVB adapter number under that USB device now.
pub fn adapters_of(dev: &UsbDevice) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/class/dvb") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(n) = name
            .strip_prefix("dvb")
            .and_then(|r| r.strip_suffix(".frontend0"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(real) = std::fs::canonicalize(e.path().join("device")) {
            if real.starts_with(&dev.sysfs) {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    out
}

/// authorized 0/1 first, then USBDEVFS_RESET; Ok(words of what was done).
pub fn reset(dev: &UsbDevice, _wait: Duration) -> Result<String, String> {
    Err(format!(
        "USB reset of {} not built yet (h/usb provides it)",
        dev.sysfs.display()
    ))
}
