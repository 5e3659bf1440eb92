//! The USB device behind a sysfs node, and its reset: the last step of an
//! adapter's escalation ladder before it is marked failed (a USB tuner whose
//! firmware wedged keeps its lock and delivers nothing until it is reset).
//!
//! - [`owner_of`]: from any sysfs node (`/sys/class/dvb/dvb0.frontend0`,
//!   `/sys/block/sda`, an interface directory, or a `/dev` node) up the real
//!   path to the first USB *device* directory (the one with `busnum`,
//!   `devnum`, `idVendor`, e.g. `.../usb1/1-1`), never an interface
//!   (`1-1:1.0`): a reset acts on the whole device. `Ok(None)` when the node
//!   is not on USB (vidtv is a platform device, a PCIe card is on PCI).
//! - [`adapters_of`]: every DVB adapter the device carries now (a TBS card
//!   has several frontends; a reset takes them all down).
//! - [`reset`]: `authorized` 0 then 1 on the device (every interface is
//!   unbound and bound again, the drivers probe anew), then waits until the
//!   device and its adapters are back; if that cannot be written or the
//!   device does not come back, `USBDEVFS_RESET` on `/dev/bus/usb/BBB/DDD`.
//!
//! The caller closes every frontend, demux and dvr of the device first
//! ([`adapters_of`] lists them): the writes to `authorized` and the ioctl
//! return once the kernel has unbound the drivers (normally well under a
//! second, but a driver's disconnect is not bounded by capbox), and the
//! adapters come back under new numbers if others took theirs. A root hub
//! ("usb1": the whole bus) is never reset.
//!
//! Promises: sysfs content is untrusted (a damaged tree, a symlink loop,
//! garbage in `idVendor`): nothing here panics, every error names the file
//! and says what was wrong in words. Reads are bounded (sysfs attributes are
//! at most a page). The sysfs and `/dev` roots are parameters of the inner
//! functions, so the tests run on fake trees; only the public functions use
//! `/sys` and `/dev`.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The USB device (not interface) that owns a sysfs node, e.g.
/// `/sys/class/dvb/dvb0.frontend0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// Real path of the device directory, e.g.
    /// `/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1`.
    pub sysfs: PathBuf,
    pub busnum: u32,
    pub devnum: u32,
    pub vendor: u16,
    pub product: u16,
    pub serial: Option<String>,
    pub product_name: Option<String>,
}

impl UsbDevice {
    /// The kernel's name of the device: its USB port path, "1-1" or
    /// "2-1.4" (bus 2, hub on port 1, port 4). Stable while the device
    /// stays in the same socket; the device number is not.
    pub fn port_path(&self) -> String {
        self.sysfs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.sysfs.display().to_string())
    }

    /// "USB 1-1 (734c:5980 TBS 5927, serial 0042)": how log lines and the
    /// console name the device.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "USB {} ({:04x}:{:04x}",
            self.port_path(),
            self.vendor,
            self.product
        );
        if let Some(p) = &self.product_name {
            s.push(' ');
            s.push_str(p);
        }
        if let Some(sn) = &self.serial {
            s.push_str(", serial ");
            s.push_str(sn);
        }
        s.push(')');
        s
    }

    /// The usbfs node of the device, e.g. `/dev/bus/usb/001/002`.
    pub fn usbfs_node(&self) -> PathBuf {
        usbfs_node_in(Path::new("/dev"), self.busnum, self.devnum)
    }
}

/// Which ways [`reset_with`] may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSteps {
    /// `authorized` 0/1 first, `USBDEVFS_RESET` when that fails (what
    /// [`reset`] does).
    Both,
    /// Only `authorized` 0/1.
    AuthorizedOnly,
    /// Only `USBDEVFS_RESET` (tests of that path; a technician's choice
    /// when `authorized` is not writable).
    UsbdevfsResetOnly,
}

/// The USB device that owns `sysfs_node` (a path under /sys, or a device
/// node under /dev). `Ok(None)`: the node is not on USB.
pub fn owner_of(sysfs_node: &Path) -> Result<Option<UsbDevice>, String> {
    owner_in(Path::new("/sys"), sysfs_node)
}

/// The USB device of DVB adapter `adapter`, through
/// `/sys/class/dvb/dvb{N}.frontend0`.
pub fn owner_of_adapter(adapter: u32) -> Result<Option<UsbDevice>, String> {
    owner_of_adapter_in(Path::new("/sys"), adapter)
}

/// Every DVB adapter number under `dev` now, ascending.
pub fn adapters_of(dev: &UsbDevice) -> Vec<u32> {
    adapters_in(Path::new("/sys"), dev)
}

/// Reset `dev`: `authorized` 0 then 1, wait up to `wait` for the device and
/// its adapters to be back; if `authorized` cannot be written or the device
/// does not come back, `USBDEVFS_RESET` and wait again. `Ok`: what was done,
/// in words ("USB 1-1 (734c:5980 TBS 5927): deauthorized and authorized
/// again, back in 1.2 s"); `Err`: what was tried and why it failed.
pub fn reset(dev: &UsbDevice, wait: Duration) -> Result<String, String> {
    reset_with(dev, wait, ResetSteps::Both)
}

/// [`reset`] restricted to some of its ways.
pub fn reset_with(dev: &UsbDevice, wait: Duration, steps: ResetSteps) -> Result<String, String> {
    reset_in(
        Path::new("/sys"),
        Path::new("/dev"),
        dev,
        wait,
        steps,
        &mut write_attr,
    )
}

// ---------------------------------------------------------------------------
// The inner functions, with the sysfs and /dev roots as parameters.

/// Sysfs attributes are at most a page; anything longer is not sysfs.
const MAX_ATTR: u64 = 4096;

/// How often the wait for a device to come back looks.
const POLL: Duration = Duration::from_millis(50);

fn io_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => super::errno_words(n),
        None => e.to_string(),
    }
}

/// One attribute, trimmed; `Ok(None)` when the file does not exist.
fn read_attr(path: &Path) -> Result<Option<String>, String> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot open: {}", path.display(), io_words(&e))),
    };
    let mut buf = Vec::new();
    f.take(MAX_ATTR + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: cannot read: {}", path.display(), io_words(&e)))?;
    if buf.len() as u64 > MAX_ATTR {
        return Err(format!(
            "{}: longer than {MAX_ATTR} bytes: not a sysfs attribute",
            path.display()
        ));
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim().to_string()))
}

fn required(path: &Path) -> Result<String, String> {
    read_attr(path)?.ok_or_else(|| format!("{}: missing", path.display()))
}

fn optional(path: &Path) -> Result<Option<String>, String> {
    Ok(read_attr(path)?.filter(|s| !s.is_empty()))
}

fn parse_hex16(path: &Path, what: &str) -> Result<u16, String> {
    let s = required(path)?;
    if s.len() != 4 {
        return Err(format!(
            "{}: {:?} is not a {what} (4 hex digits)",
            path.display(),
            shorten(&s)
        ));
    }
    u16::from_str_radix(&s, 16).map_err(|_| {
        format!(
            "{}: {:?} is not a {what} (4 hex digits)",
            path.display(),
            shorten(&s)
        )
    })
}

fn parse_dec(path: &Path, what: &str, max: u32) -> Result<u32, String> {
    let s = required(path)?;
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{}: {:?} is not a {what} (1..={max})",
            path.display(),
            shorten(&s)
        )),
    }
}

/// Untrusted text quoted in an error: at most 40 characters.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(40).collect::<String>())
    }
}

/// Whether `dir` looks like a USB device directory. Any one of the three
/// attributes counts, so a device with one missing is reported as damaged
/// instead of being skipped for its parent (the root hub: resetting that
/// takes down the whole bus).
fn is_usb_device_dir(dir: &Path) -> bool {
    ["idVendor", "busnum", "devnum"]
        .iter()
        .any(|a| fs::symlink_metadata(dir.join(a)).is_ok())
}

/// Read the identity of the USB device directory `dir`.
fn read_device(dir: &Path) -> Result<UsbDevice, String> {
    Ok(UsbDevice {
        sysfs: dir.to_path_buf(),
        // The usbfs node names them in 3 digits (BBB/DDD); the kernel
        // gives buses from 1 and devices 1..=127.
        busnum: parse_dec(&dir.join("busnum"), "USB bus number", 999)?,
        devnum: parse_dec(&dir.join("devnum"), "USB device number", 999)?,
        vendor: parse_hex16(&dir.join("idVendor"), "USB vendor id")?,
        product: parse_hex16(&dir.join("idProduct"), "USB product id")?,
        serial: optional(&dir.join("serial"))?,
        product_name: optional(&dir.join("product"))?,
    })
}

/// A `/dev` node given instead of a sysfs path: its sysfs directory through
/// `<sysfs>/dev/{char,block}/MAJ:MIN`.
fn dev_node_to_sysfs(sysfs: &Path, node: &Path) -> Result<Option<PathBuf>, String> {
    let md = fs::metadata(node).map_err(|e| format!("{}: {}", node.display(), io_words(&e)))?;
    let kind = if md.file_type().is_char_device() {
        "char"
    } else if md.file_type().is_block_device() {
        "block"
    } else {
        return Ok(None);
    };
    let rdev = md.rdev();
    let (maj, min) = (libc::major(rdev), libc::minor(rdev));
    Ok(Some(
        sysfs.join("dev").join(kind).join(format!("{maj}:{min}")),
    ))
}

fn owner_in(sysfs: &Path, node: &Path) -> Result<Option<UsbDevice>, String> {
    let root = fs::canonicalize(sysfs)
        .map_err(|e| format!("{}: cannot resolve: {}", sysfs.display(), io_words(&e)))?;
    let start = if node.starts_with(sysfs) || node.starts_with(&root) {
        node.to_path_buf()
    } else {
        match dev_node_to_sysfs(sysfs, node)? {
            Some(p) => p,
            None => {
                return Err(format!(
                    "{}: neither under {} nor a device node",
                    node.display(),
                    sysfs.display()
                ))
            }
        }
    };
    let real = fs::canonicalize(&start)
        .map_err(|e| format!("{}: cannot resolve: {}", start.display(), io_words(&e)))?;
    let devices = root.join("devices");
    if !real.starts_with(&devices) {
        return Err(format!(
            "{} resolves to {}, which is not a device under {}",
            node.display(),
            real.display(),
            devices.display()
        ));
    }
    for dir in real.ancestors() {
        if dir == devices || !dir.starts_with(&devices) {
            break;
        }
        if is_usb_device_dir(dir) {
            return read_device(dir).map(Some);
        }
    }
    Ok(None)
}

fn owner_of_adapter_in(sysfs: &Path, adapter: u32) -> Result<Option<UsbDevice>, String> {
    let node = sysfs
        .join("class/dvb")
        .join(format!("dvb{adapter}.frontend0"));
    if fs::symlink_metadata(&node).is_err() {
        return Err(format!(
            "adapter{adapter}: no {} (no such DVB adapter now)",
            node.display()
        ));
    }
    owner_in(sysfs, &node)
}

/// Adapter number of a `/sys/class/dvb` entry named "dvbN.frontendM".
fn frontend_adapter(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("dvb")?;
    let (n, node) = rest.split_once('.')?;
    let idx = node.strip_prefix("frontend")?;
    idx.parse::<u32>().ok()?;
    n.parse().ok()
}

fn adapters_in(sysfs: &Path, dev: &UsbDevice) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(sysfs.join("class/dvb")) else {
        return out;
    };
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(n) = frontend_adapter(&name.to_string_lossy()) else {
            continue;
        };
        // An entry that cannot be resolved (vanishing during a reset, a
        // loop) belongs to no device.
        if let Ok(real) = fs::canonicalize(ent.path()) {
            if real.starts_with(&dev.sysfs) {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn usbfs_node_in(dev_root: &Path, busnum: u32, devnum: u32) -> PathBuf {
    dev_root
        .join("bus/usb")
        .join(format!("{busnum:03}"))
        .join(format!("{devnum:03}"))
}

/// Whether the device is back after a reset: its directory is there with
/// the same identity, authorized, and at least as many DVB adapters as
/// before. `Err` (with the state in words) while not.
fn is_back(sysfs: &Path, dev: &UsbDevice, adapters_before: usize) -> Result<UsbDevice, String> {
    let now = read_device(&dev.sysfs)?;
    if (now.vendor, now.product, &now.serial) != (dev.vendor, dev.product, &dev.serial) {
        return Err(format!(
            "another device is at {}: {}",
            dev.port_path(),
            now.describe()
        ));
    }
    if let Some(a) = read_attr(&dev.sysfs.join("authorized"))? {
        if a != "1" {
            return Err("not authorized".into());
        }
    }
    let adapters = adapters_in(sysfs, &now).len();
    if adapters < adapters_before {
        return Err(format!(
            "{adapters} of its {adapters_before} DVB adapter(s) registered"
        ));
    }
    Ok(now)
}

/// Wait up to `wait` for [`is_back`]; `Ok(seconds it took)` or the last
/// state in words.
fn wait_back(
    sysfs: &Path,
    dev: &UsbDevice,
    adapters_before: usize,
    since: Instant,
    wait: Duration,
) -> Result<f64, String> {
    let until = Instant::now() + wait;
    loop {
        match is_back(sysfs, dev, adapters_before) {
            Ok(_) => return Ok(since.elapsed().as_secs_f64()),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn write_attr(path: &Path, value: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new().write(true).open(path).map_err(|e| {
        format!(
            "{}: cannot open for writing: {}",
            path.display(),
            io_words(&e)
        )
    })?;
    f.write_all(value.as_bytes()).map_err(|e| {
        format!(
            "{}: writing {value} failed: {}",
            path.display(),
            io_words(&e)
        )
    })
}

/// `authorized` 0 then 1, then wait. `Ok(seconds)`; `Err(words)`.
/// Writes a sysfs attribute: [`write_attr`], or in the tests a fake that
/// also does what the kernel would.
type AttrWriter<'a> = &'a mut dyn FnMut(&Path, &str) -> Result<(), String>;

fn reset_authorized(
    sysfs: &Path,
    dev: &UsbDevice,
    adapters_before: usize,
    wait: Duration,
    write: AttrWriter,
) -> Result<f64, String> {
    let auth = dev.sysfs.join("authorized");
    if fs::symlink_metadata(&auth).is_err() {
        return Err(format!("{}: missing", auth.display()));
    }
    let t0 = Instant::now();
    write(&auth, "0")?;
    if let Err(e) = write(&auth, "1") {
        // Left deauthorized, the device is useless: one more try.
        std::thread::sleep(Duration::from_millis(100));
        write(&auth, "1").map_err(|_| format!("{e} (the device is left deauthorized)"))?;
    }
    wait_back(sysfs, dev, adapters_before, t0, wait).map_err(|state| {
        format!(
            "deauthorized and authorized again, but not back within {:.1} s ({state})",
            wait.as_secs_f64()
        )
    })
}

/// `USBDEVFS_RESET` on the usbfs node, then wait. Bus and device numbers
/// are read again (they change when a device re-enumerates) and the
/// identity is checked first, so a device that took the port is not reset
/// instead. `Ok((node, seconds))`; `Err(words)`.
fn reset_usbdevfs(
    sysfs: &Path,
    dev_root: &Path,
    dev: &UsbDevice,
    adapters_before: usize,
    wait: Duration,
) -> Result<(PathBuf, f64), String> {
    let now = read_device(&dev.sysfs)?;
    if (now.vendor, now.product, &now.serial) != (dev.vendor, dev.product, &dev.serial) {
        return Err(format!(
            "another device is at {}: {}; not resetting it",
            dev.port_path(),
            now.describe()
        ));
    }
    let node = usbfs_node_in(dev_root, now.busnum, now.devnum);
    let md = fs::metadata(&node).map_err(|e| format!("{}: {}", node.display(), io_words(&e)))?;
    if !md.file_type().is_char_device() {
        return Err(format!("{}: not a character device", node.display()));
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node)
        .map_err(|e| format!("{}: cannot open: {}", node.display(), io_words(&e)))?;
    let t0 = Instant::now();
    // SAFETY: `f` is an open usbfs node (checked: a character device under
    // <dev>/bus/usb); USBDEVFS_RESET takes no argument.
    let r = unsafe { capbox_sys::usbdevfs_reset(f.as_raw_fd()) };
    drop(f);
    if let Err(e) = r {
        return Err(format!(
            "{}: USBDEVFS_RESET failed: {}",
            node.display(),
            super::errno_words(e as i32)
        ));
    }
    let secs = wait_back(sysfs, dev, adapters_before, t0, wait).map_err(|state| {
        format!(
            "{}: USBDEVFS_RESET done, but not back within {:.1} s ({state})",
            node.display(),
            wait.as_secs_f64()
        )
    })?;
    Ok((node, secs))
}

/// Root hubs are named "usbN"; devices behind them "N-P[.P...]".
fn is_root_hub(dev: &UsbDevice) -> bool {
    dev.port_path().starts_with("usb")
}

fn reset_in(
    sysfs: &Path,
    dev_root: &Path,
    dev: &UsbDevice,
    wait: Duration,
    steps: ResetSteps,
    write: AttrWriter,
) -> Result<String, String> {
    let who = dev.describe();
    if is_root_hub(dev) {
        return Err(format!(
            "{who}: a root hub (every device on bus {}): not resetting it",
            dev.busnum
        ));
    }
    let adapters_before = adapters_in(sysfs, dev).len();
    let mut tried = Vec::new();
    if steps != ResetSteps::UsbdevfsResetOnly {
        match reset_authorized(sysfs, dev, adapters_before, wait, write) {
            Ok(secs) => {
                return Ok(format!(
                    "{who}: deauthorized and authorized again, back in {secs:.1} s"
                ))
            }
            Err(e) => tried.push(format!("authorized 0/1: {e}")),
        }
    }
    if steps != ResetSteps::AuthorizedOnly {
        match reset_usbdevfs(sysfs, dev_root, dev, adapters_before, wait) {
            Ok((node, secs)) => {
                let before = if tried.is_empty() {
                    String::new()
                } else {
                    format!("{}; then ", tried.join("; "))
                };
                return Ok(format!(
                    "{who}: {before}USBDEVFS_RESET on {}, back in {secs:.1} s",
                    node.display()
                ));
            }
            Err(e) => tried.push(format!("USBDEVFS_RESET: {e}")),
        }
    }
    Err(format!("{who}: reset failed: {}", tried.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs (and /dev) in a temporary directory, removed on drop.
    struct Tree {
        root: PathBuf,
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    const PCI: &str = "devices/pci0000:00/0000:00:14.0";

    impl Tree {
        fn new(tag: &str) -> Tree {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root =
                std::env::temp_dir().join(format!("capbox-usb-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("sys/class/dvb")).unwrap();
            fs::create_dir_all(root.join("dev/bus/usb/001")).unwrap();
            let t = Tree { root };
            // The root hub: itself a USB device, which a walk from a
            // damaged device must never reach.
            t.usb_device(
                &format!("{PCI}/usb1"),
                1,
                1,
                "1d6b",
                "0002",
                None,
                Some("xHCI Host Controller"),
            );
            t
        }
        fn sys(&self) -> PathBuf {
            self.root.join("sys")
        }
        fn dev(&self) -> PathBuf {
            self.root.join("dev")
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.sys().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        #[allow(clippy::too_many_arguments)]
        fn usb_device(
            &self,
            rel: &str,
            bus: u32,
            dev: u32,
            vid: &str,
            pid: &str,
            serial: Option<&str>,
            product: Option<&str>,
        ) {
            self.write(&format!("{rel}/busnum"), &format!("{bus}\n"));
            self.write(&format!("{rel}/devnum"), &format!("{dev}\n"));
            self.write(&format!("{rel}/idVendor"), &format!("{vid}\n"));
            self.write(&format!("{rel}/idProduct"), &format!("{pid}\n"));
            self.write(&format!("{rel}/authorized"), "1\n");
            if let Some(s) = serial {
                self.write(&format!("{rel}/serial"), &format!("{s}\n"));
            }
            if let Some(p) = product {
                self.write(&format!("{rel}/product"), &format!("{p}\n"));
            }
        }
        /// class/dvb/dvbN.frontend0 -> ../../<rel>/dvb/dvbN.frontend0
        fn frontend(&self, rel: &str, adapter: u32) {
            let name = format!("dvb{adapter}.frontend0");
            fs::create_dir_all(self.sys().join(rel).join("dvb").join(&name)).unwrap();
            self.write(
                &format!("{rel}/dvb/{name}/dev"),
                &format!("212:{}\n", adapter * 4),
            );
            symlink(
                format!("../../{rel}/dvb/{name}"),
                self.sys().join("class/dvb").join(&name),
            )
            .unwrap();
        }
        fn owner(&self, rel: &str) -> Result<Option<UsbDevice>, String> {
            owner_in(&self.sys(), &self.sys().join(rel))
        }
    }

    fn tbs(t: &Tree) -> String {
        let d = format!("{PCI}/usb1/1-1");
        t.usb_device(&d, 1, 2, "734c", "5980", Some("0042"), Some("TBS 5927"));
        fs::create_dir_all(t.sys().join(format!("{d}/1-1:1.0"))).unwrap();
        t.write(&format!("{d}/1-1:1.0/bInterfaceNumber"), "00\n");
        d
    }

    #[test]
    fn adapter_under_a_usb_interface_resolves_to_the_device() {
        let t = Tree::new("one");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 0);
        let dev = t.owner("class/dvb/dvb0.frontend0").unwrap().unwrap();
        assert_eq!(dev.sysfs, fs::canonicalize(t.sys().join(&d)).unwrap());
        assert_eq!((dev.busnum, dev.devnum), (1, 2));
        assert_eq!((dev.vendor, dev.product), (0x734c, 0x5980));
        assert_eq!(dev.serial.as_deref(), Some("0042"));
        assert_eq!(dev.product_name.as_deref(), Some("TBS 5927"));
        assert_eq!(dev.port_path(), "1-1");
        assert_eq!(dev.describe(), "USB 1-1 (734c:5980 TBS 5927, serial 0042)");
        assert_eq!(owner_of_adapter_in(&t.sys(), 0).unwrap(), Some(dev.clone()));
        // The interface directory itself, and the device directory, give
        // the same device (never the interface, never the root hub).
        assert_eq!(t.owner(&format!("{d}/1-1:1.0")).unwrap(), Some(dev.clone()));
        assert_eq!(t.owner(&d).unwrap(), Some(dev.clone()));
        assert_eq!(adapters_in(&t.sys(), &dev), vec![0]);
        let e = owner_of_adapter_in(&t.sys(), 7).unwrap_err();
        assert!(
            e.starts_with("adapter7: no ") && e.contains("dvb7.frontend0"),
            "{e}"
        );
    }

    #[test]
    fn two_adapters_on_one_device_and_one_elsewhere() {
        let t = Tree::new("two");
        let d = tbs(&t);
        fs::create_dir_all(t.sys().join(format!("{d}/1-1:1.1"))).unwrap();
        t.frontend(&format!("{d}/1-1:1.0"), 0);
        t.frontend(&format!("{d}/1-1:1.1"), 2);
        // Another tuner on port 2, no serial, no product name.
        let d2 = format!("{PCI}/usb1/1-2");
        t.usb_device(&d2, 1, 3, "2040", "0265", None, None);
        t.frontend(&format!("{d2}/1-2:1.0"), 1);
        t.write("class/dvb/dvb3.demux0", "not a symlink");
        let a = t.owner("class/dvb/dvb2.frontend0").unwrap().unwrap();
        assert_eq!(a.port_path(), "1-1");
        assert_eq!(adapters_in(&t.sys(), &a), vec![0, 2]);
        let b = t.owner("class/dvb/dvb1.frontend0").unwrap().unwrap();
        assert_eq!(b.describe(), "USB 1-2 (2040:0265)");
        assert_eq!(adapters_in(&t.sys(), &b), vec![1]);
    }

    #[test]
    fn platform_device_is_not_usb() {
        let t = Tree::new("vidtv");
        t.frontend("devices/platform/vidtv.0/i2c-0", 0);
        assert_eq!(t.owner("class/dvb/dvb0.frontend0").unwrap(), None);
        assert_eq!(owner_of_adapter_in(&t.sys(), 0).unwrap(), None);
    }

    #[test]
    fn damaged_trees_give_errors_that_name_the_file() {
        let t = Tree::new("damaged");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 0);

        // Missing busnum: reported, not skipped for the root hub above.
        fs::remove_file(t.sys().join(format!("{d}/busnum"))).unwrap();
        let e = t.owner("class/dvb/dvb0.frontend0").unwrap_err();
        assert!(e.ends_with("/1-1/busnum: missing"), "{e}");
        t.write(&format!("{d}/busnum"), "1\n");

        for (file, text, words) in [
            (
                "idVendor",
                "zz9x\n",
                "\"zz9x\" is not a USB vendor id (4 hex digits)",
            ),
            ("idVendor", "\n", "\"\" is not a USB vendor id"),
            ("idProduct", "15980\n", "\"15980\" is not a USB product id"),
            ("devnum", "-3\n", "\"-3\" is not a USB device number"),
            ("devnum", "0\n", "\"0\" is not a USB device number"),
            ("busnum", "99999999999999\n", "is not a USB bus number"),
        ] {
            let good = fs::read_to_string(t.sys().join(format!("{d}/{file}"))).unwrap();
            t.write(&format!("{d}/{file}"), text);
            let e = t.owner("class/dvb/dvb0.frontend0").unwrap_err();
            assert!(
                e.contains(&format!("/1-1/{file}: ")) && e.contains(words),
                "{file}={text:?}: {e}"
            );
            t.write(&format!("{d}/{file}"), &good);
        }

        // Binary junk and an oversized attribute.
        t.write(&format!("{d}/serial"), "\u{fffd}\u{0}\n");
        assert!(t.owner("class/dvb/dvb0.frontend0").unwrap().is_some());
        t.write(&format!("{d}/product"), &"x".repeat(10_000));
        let e = t.owner("class/dvb/dvb0.frontend0").unwrap_err();
        assert!(e.contains("/1-1/product: longer than 4096 bytes"), "{e}");
        t.write(&format!("{d}/product"), "TBS 5927\n");
        // An attribute that is a directory.
        fs::remove_file(t.sys().join(format!("{d}/idProduct"))).unwrap();
        fs::create_dir(t.sys().join(format!("{d}/idProduct"))).unwrap();
        let e = t.owner("class/dvb/dvb0.frontend0").unwrap_err();
        assert!(
            e.contains("/1-1/idProduct: cannot read: Is a directory"),
            "{e}"
        );

        // A symlink loop.
        symlink("dvb9.frontend0", t.sys().join("class/dvb/dvb8.frontend0")).unwrap();
        symlink("dvb8.frontend0", t.sys().join("class/dvb/dvb9.frontend0")).unwrap();
        let e = owner_of_adapter_in(&t.sys(), 8).unwrap_err();
        assert!(
            e.contains("dvb8.frontend0: cannot resolve: ") && e.contains("ELOOP"),
            "{e}"
        );
        // A dangling link, and a link out of the devices tree.
        symlink(
            "../../devices/gone",
            t.sys().join("class/dvb/dvb5.frontend0"),
        )
        .unwrap();
        let e = owner_of_adapter_in(&t.sys(), 5).unwrap_err();
        assert!(
            e.contains("dvb5.frontend0: cannot resolve: No such file"),
            "{e}"
        );
        symlink("/", t.sys().join("class/dvb/dvb6.frontend0")).unwrap();
        let e = owner_of_adapter_in(&t.sys(), 6).unwrap_err();
        assert!(e.contains("which is not a device under"), "{e}");
        // Something that is neither under sysfs nor a device node, and
        // something that does not exist.
        let e = owner_in(&t.sys(), Path::new("/etc/passwd")).unwrap_err();
        assert!(e.contains("/etc/passwd: neither under"), "{e}");
        let e = owner_in(&t.sys(), Path::new("/dev/capbox-no-such-node")).unwrap_err();
        assert!(
            e.starts_with("/dev/capbox-no-such-node: No such file"),
            "{e}"
        );
    }

    #[test]
    fn adapters_listing_survives_loops_and_junk() {
        let t = Tree::new("junk");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 4);
        symlink("dvb9.frontend0", t.sys().join("class/dvb/dvb8.frontend0")).unwrap();
        symlink("dvb8.frontend0", t.sys().join("class/dvb/dvb9.frontend0")).unwrap();
        symlink(
            format!("../../{d}"),
            t.sys().join("class/dvb/dvbX.frontend0"),
        )
        .unwrap();
        symlink(
            format!("../../{d}"),
            t.sys().join("class/dvb/dvb7.frontendZ"),
        )
        .unwrap();
        let dev = t.owner("class/dvb/dvb4.frontend0").unwrap().unwrap();
        assert_eq!(adapters_in(&t.sys(), &dev), vec![4]);
    }

    /// A fake `authorized` writer: records each write, does what the test
    /// says the kernel does (`on_write`), then writes the file.
    fn recorder<'a>(
        seen: &'a mut Vec<String>,
        mut on_write: impl FnMut(&str) + 'a,
    ) -> impl FnMut(&Path, &str) -> Result<(), String> + 'a {
        move |p: &Path, v: &str| {
            seen.push(format!("{}={v}", p.file_name().unwrap().to_string_lossy()));
            on_write(v);
            write_attr(p, v)
        }
    }

    #[test]
    fn reset_writes_authorized_0_then_1_and_waits_for_the_adapters() {
        let t = Tree::new("auth");
        let d = tbs(&t);
        let iface = format!("{d}/1-1:1.0");
        t.frontend(&iface, 0);
        let dev = t.owner("class/dvb/dvb0.frontend0").unwrap().unwrap();
        let class = t.sys().join("class/dvb/dvb0.frontend0");
        let target = format!("../../{iface}/dvb/dvb0.frontend0");
        let mut seen = Vec::new();
        let mut w = recorder(&mut seen, |v| {
            // The kernel unbinds the interfaces on 0 and probes them on 1.
            if v == "0" {
                fs::remove_file(&class).unwrap();
            } else {
                symlink(&target, &class).unwrap();
            }
        });
        let r = reset_in(
            &t.sys(),
            &t.dev(),
            &dev,
            Duration::from_secs(30),
            ResetSteps::Both,
            &mut w,
        );
        drop(w);
        assert_eq!(seen, vec!["authorized=0", "authorized=1"]);
        let words = r.unwrap();
        assert!(
            words.starts_with(
                "USB 1-1 (734c:5980 TBS 5927, serial 0042): deauthorized and authorized again, back in "
            ) && words.ends_with(" s"),
            "{words}"
        );
        assert_eq!(adapters_in(&t.sys(), &dev), vec![0]);
    }

    #[test]
    fn device_not_back_falls_back_to_usbdevfs_and_says_both() {
        let t = Tree::new("notback");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 0);
        let dev = t.owner("class/dvb/dvb0.frontend0").unwrap().unwrap();
        let class = t.sys().join("class/dvb/dvb0.frontend0");
        // The adapter never comes back.
        let mut seen = Vec::new();
        let mut w = recorder(&mut seen, |v| {
            if v == "0" {
                fs::remove_file(&class).unwrap();
            }
        });
        // The usbfs node is a plain file here: refused before any ioctl.
        fs::write(t.dev().join("bus/usb/001/002"), "").unwrap();
        let e = reset_in(
            &t.sys(),
            &t.dev(),
            &dev,
            Duration::from_millis(200),
            ResetSteps::Both,
            &mut w,
        )
        .unwrap_err();
        drop(w);
        assert_eq!(seen, vec!["authorized=0", "authorized=1"]);
        assert!(
            e.starts_with("USB 1-1 (734c:5980 TBS 5927, serial 0042): reset failed: authorized 0/1: deauthorized and authorized again, but not back within 0.2 s (0 of its 1 DVB adapter(s) registered); USBDEVFS_RESET: "),
            "{e}"
        );
        assert!(
            e.ends_with("/bus/usb/001/002: not a character device"),
            "{e}"
        );
    }

    #[test]
    fn unwritable_authorized_goes_to_usbdevfs_with_fresh_numbers() {
        let t = Tree::new("noauth");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 0);
        let dev = t.owner("class/dvb/dvb0.frontend0").unwrap().unwrap();
        // `authorized` that cannot be written (a directory here; EACCES on
        // a box without root), and the device re-enumerated as 1/5 since.
        let auth = t.sys().join(format!("{d}/authorized"));
        fs::remove_file(&auth).unwrap();
        fs::create_dir(&auth).unwrap();
        t.write(&format!("{d}/devnum"), "5\n");
        let e = reset_in(
            &t.sys(),
            &t.dev(),
            &dev,
            Duration::ZERO,
            ResetSteps::Both,
            &mut write_attr,
        )
        .unwrap_err();
        assert!(e.contains("reset failed: authorized 0/1: "), "{e}");
        assert!(
            e.contains("/1-1/authorized: cannot open for writing: Is a directory"),
            "{e}"
        );
        assert!(
            e.contains("USBDEVFS_RESET: ") && e.contains("/bus/usb/001/005: No such file"),
            "{e}"
        );

        // Another device took the port: never reset it.
        t.write(&format!("{d}/serial"), "9999\n");
        let e = reset_in(
            &t.sys(),
            &t.dev(),
            &dev,
            Duration::ZERO,
            ResetSteps::UsbdevfsResetOnly,
            &mut write_attr,
        )
        .unwrap_err();
        assert!(e.contains("another device is at 1-1: USB 1-1 (734c:5980 TBS 5927, serial 9999); not resetting it"), "{e}");
        assert!(!e.contains("authorized 0/1"), "{e}");
    }

    #[test]
    fn authorized_only_does_not_touch_usbfs() {
        let t = Tree::new("authonly");
        let d = tbs(&t);
        let dev = read_device(&fs::canonicalize(t.sys().join(&d)).unwrap()).unwrap();
        fs::remove_file(t.sys().join(format!("{d}/authorized"))).unwrap();
        let e = reset_in(
            &t.sys(),
            &t.dev(),
            &dev,
            Duration::ZERO,
            ResetSteps::AuthorizedOnly,
            &mut write_attr,
        )
        .unwrap_err();
        assert!(
            e.contains("reset failed: authorized 0/1: ") && e.contains("/1-1/authorized: missing"),
            "{e}"
        );
        assert!(!e.contains("USBDEVFS_RESET"), "{e}");
    }

    #[test]
    fn a_root_hub_is_never_reset() {
        let t = Tree::new("roothub");
        let hub = t.owner(&format!("{PCI}/usb1")).unwrap().unwrap();
        assert_eq!(hub.describe(), "USB usb1 (1d6b:0002 xHCI Host Controller)");
        let mut seen = Vec::new();
        let e = reset_in(
            &t.sys(),
            &t.dev(),
            &hub,
            Duration::ZERO,
            ResetSteps::Both,
            &mut recorder(&mut seen, |_| {}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "USB usb1 (1d6b:0002 xHCI Host Controller): a root hub (every device on bus 1): not resetting it"
        );
        assert!(seen.is_empty());
    }

    #[test]
    fn dev_node_maps_through_sys_dev() {
        let t = Tree::new("devnode");
        let d = tbs(&t);
        t.frontend(&format!("{d}/1-1:1.0"), 0);
        // /dev/null is char 1:3 on every Linux.
        fs::create_dir_all(t.sys().join("dev/char")).unwrap();
        symlink(
            format!("../../{d}/1-1:1.0/dvb/dvb0.frontend0"),
            t.sys().join("dev/char/1:3"),
        )
        .unwrap();
        let dev = owner_in(&t.sys(), Path::new("/dev/null")).unwrap().unwrap();
        assert_eq!(dev.port_path(), "1-1");
        assert_eq!(
            usbfs_node_in(Path::new("/dev"), 1, 2),
            Path::new("/dev/bus/usb/001/002")
        );
    }
}
