//! The CCID rig's in-VM test program (example `ccid-guest`, built with the
//! default features so the card manager talks to a real pcscd): starts a
//! `CardManager` in a VM where pcscd runs Debian's libccid driver over
//! QEMU's emulated USB CCID readers, asks the host (hw-tests/run-ccid-vm.sh,
//! through a `HOST: ...` line on the serial console) to plug and pull
//! readers and cards over QMP, and checks what the manager's `status()` and
//! logs say after each step. Prints one PASS/FAIL line per check and exits
//! with the number of failures (the VM's /init hands it to QEMU).
//!
//! Readers are told apart by their USB serial number, which the host sets
//! (`serial=CAPBOXR1`) and pcscd puts into the reader name.
//!
//! Then capbox's USB reset path (`capbox::dvb::usb`, the adapter ladder's
//! USB step) against QEMU's emulated devices: a `usb-storage` disk the host
//! attached at boot (serial `CAPBOXDISK`, first sector starting with
//! `CAPBOX-USB-RESET-DISK`), found from `/sys/block/sdX`, reset through
//! `authorized` 0/1 and then through `USBDEVFS_RESET`, found again and read
//! after each; and reader 2, found from its interface directory, reset the
//! default way while the card manager watches it go and come back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use capbox::ca::cards::{CardManager, CardStatus};
use capbox::config::CardsConfig;
use capbox::dvb::usb::{self, ResetSteps, UsbDevice};

/// Every wait is generous: TCG is slow and the machine is shared. The
/// checks are about what happens, never how fast.
const WAIT: Duration = Duration::from_secs(30);

/// The serial numbers the host gives readers 1 and 2 (see run-ccid-vm.sh);
/// `CCID_R1_SERIAL` overrides reader 1's, to show the checks can fail.
fn r1_tag() -> String {
    format!(
        "({})",
        std::env::var("CCID_R1_SERIAL").unwrap_or_else(|_| "CAPBOXR1".into())
    )
}
const R2_TAG: &str = "(CAPBOXR2)";

/// Logs go to the console (the host shows them) and are kept for checks.
struct Logger(Mutex<Vec<String>>);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("{} {}", r.level(), r.args());
        println!("log: {line}");
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn flush(&self) {}
}

static LOGGER: Logger = Logger(Mutex::new(Vec::new()));

fn logs() -> Vec<String> {
    LOGGER.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[path = "../suite.rs"]
mod suite;
use suite::Suite;

/// Ask the host to act; it answers on the QMP side, we see the result
/// through pcscd.
fn host(what: &str) {
    use std::io::Write;
    println!("HOST: {what}");
    let _ = std::io::stdout().flush();
}

fn show(st: &[CardStatus]) -> String {
    if st.is_empty() {
        return "no readers".into();
    }
    st.iter()
        .map(|r| {
            format!(
                "['{}': {}{}]",
                r.reader,
                r.state,
                r.atr
                    .as_ref()
                    .map(|a| format!(", ATR {a}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Poll `status()` until `ok` holds or `WAIT` passes; the last status
/// either way.
fn wait_for(m: &CardManager, ok: impl Fn(&[CardStatus]) -> bool) -> (bool, Vec<CardStatus>) {
    let until = Instant::now() + WAIT;
    loop {
        let st = m.status();
        if ok(&st) {
            return (true, st);
        }
        if Instant::now() >= until {
            return (false, st);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find<'a>(st: &'a [CardStatus], tag: &str) -> Option<&'a CardStatus> {
    st.iter().find(|r| r.reader.contains(tag))
}

fn count(st: &[CardStatus], tag: &str) -> usize {
    st.iter().filter(|r| r.reader.contains(tag)).count()
}

/// Reader `tag` listed once, empty.
fn empty_reader(st: &[CardStatus], tag: &str) -> bool {
    count(st, tag) == 1 && find(st, tag).is_some_and(|r| r.state == "no card" && r.atr.is_none())
}

/// Reader `tag` listed once, with a card the manager has finished looking
/// at (QEMU's emulated card is no testca card: "unknown card: ...").
fn card_in(st: &[CardStatus], tag: &str) -> bool {
    count(st, tag) == 1
        && find(st, tag).is_some_and(|r| r.atr.is_some() && r.state.starts_with("unknown card"))
}

fn pcscd_log_tail() {
    let log = std::fs::read_to_string("/tmp/pcscd.log").unwrap_or_default();
    // Without the client chatter (every status poll is a few lines).
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("winscard_svc.c") && !l.contains("winscard_msg_srv.c"))
        .collect();
    println!("---- last lines of pcscd.log (no client chatter) ----");
    for l in &lines[lines.len().saturating_sub(400)..] {
        println!("pcscd: {l}");
    }
}

fn main() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    let mut s = Suite::default();
    let r1 = r1_tag();
    let with_card = std::env::var("CCID_NO_CARD").is_err();
    let m = CardManager::start(CardsConfig {
        enabled: true,
        ..Default::default()
    });

    // 1. Booted without readers: once connected to pcscd, nothing listed.
    let (ok, st) = wait_for(&m, |st| st.iter().all(|r| !r.reader.is_empty()));
    s.check("boot: manager connected to pcscd", ok, show(&st));
    // pcscd may still be enumerating the bus: give it a moment to show a
    // reader that should not be there.
    std::thread::sleep(Duration::from_secs(2));
    let st = m.status();
    s.check("boot: no readers", st.is_empty(), show(&st));

    // 2. Reader 1 plugged, no card.
    host("plug r1");
    let (ok, st) = wait_for(&m, |st| empty_reader(st, &r1));
    s.check("plug r1: listed, no card", ok, show(&st));
    let mut r1_before = find(&st, &r1).cloned();
    let r1_name = r1_before
        .as_ref()
        .map(|r| r.reader.clone())
        .unwrap_or_default();
    s.check(
        "plug r1: logged",
        !r1_name.is_empty()
            && logs()
                .iter()
                .any(|l| *l == format!("INFO cards: reader '{r1_name}'")),
        &r1_name,
    );

    // 3. A card (QEMU's emulated one) into reader 1.
    if with_card {
        host("card r1");
        let (ok, st) = wait_for(&m, |st| card_in(st, &r1));
        s.check("card r1: card seen", ok, show(&st));
        r1_before = find(&st, &r1).cloned();
    }

    // 4. Reader 2 plugged; reader 1 unchanged.
    host("plug r2");
    let (ok, st) = wait_for(&m, |st| empty_reader(st, R2_TAG));
    s.check("plug r2: listed, no card", ok, show(&st));
    let r1_now = find(&st, &r1).cloned();
    s.check(
        "plug r2: reader 1 unchanged",
        r1_now.is_some() && r1_now == r1_before,
        format!("before {r1_before:?}, now {r1_now:?}"),
    );
    s.check("plug r2: two readers", st.len() == 2, show(&st));

    // 5. Reader 1 pulled: gone, reader 2 stays. The card comes out first
    // and pcscd is given time to see that: pulling a reader whose card
    // pcscd sees go only after it began removing the reader wedges pcscd
    // 1.9.9 (hw-tests/README.md); CCID_PULL_WITH_CARD=1 does it anyway.
    if with_card && std::env::var("CCID_PULL_WITH_CARD").is_err() {
        host("uncard r1");
        let (ok, st) = wait_for(&m, |st| empty_reader(st, &r1) && empty_reader(st, R2_TAG));
        s.check("uncard r1: card out, readers stay", ok, show(&st));
    }
    host("unplug r1");
    let (ok, st) = wait_for(&m, |st| st.iter().all(|r| r.reader != r1_name));
    s.check(
        "unplug r1: gone from status",
        ok && !r1_name.is_empty(),
        show(&st),
    );
    s.check(
        "unplug r1: reader 2 still there",
        empty_reader(&st, R2_TAG) && st.len() == 1,
        show(&st),
    );
    let gone = format!("INFO cards: reader '{r1_name}' gone");
    s.check(
        "unplug r1: logged",
        logs().contains(&gone),
        format!("want log line {gone:?}"),
    );
    // The card threads of a pulled reader end; the manager still answers
    // and sees pcscd (no "pcscd not running" pseudo-row).
    std::thread::sleep(Duration::from_secs(1));
    let st = m.status();
    s.check(
        "unplug r1: manager still healthy",
        st.len() == 1 && empty_reader(&st, R2_TAG),
        show(&st),
    );

    // 6. Reader 1 plugged back: listed again, no restart.
    host("plug r1");
    let (ok, st) = wait_for(&m, |st| empty_reader(st, &r1) && empty_reader(st, R2_TAG));
    s.check("replug r1: listed again, reader 2 unchanged", ok, show(&st));
    if with_card {
        // And a card in the re-plugged reader is picked up.
        host("card r1");
        let (ok, st) = wait_for(&m, |st| card_in(st, &r1) && empty_reader(st, R2_TAG));
        s.check("replug r1: card seen", ok, show(&st));
    }

    usb_reset_disk(&mut s);
    usb_reset_cli(&mut s);
    usb_reset_reader(&mut s, &m);

    if s.failures > 0 {
        pcscd_log_tail();
    }
    host("done");
    println!("ccid-guest: {} passed, {} failed", s.passes, s.failures);
    m.stop();
    std::process::exit(s.failures.min(127) as i32);
}

/// The USB serial and first bytes of the disk the host attaches
/// (run-ccid-vm.sh).
const DISK_SERIAL: &str = "CAPBOXDISK";
const DISK_MAGIC: &[u8] = b"CAPBOX-USB-RESET-DISK";

/// The `/sys/block/sdX` whose USB device has the disk's serial, with that
/// device, as `usb::owner_of` resolves it.
fn find_disk() -> Option<(PathBuf, UsbDevice)> {
    let rd = std::fs::read_dir("/sys/block").ok()?;
    for e in rd.flatten() {
        let node = Path::new("/sys/block").join(e.file_name());
        if let Ok(Some(d)) = usb::owner_of(&node) {
            if d.serial.as_deref() == Some(DISK_SERIAL) {
                return Some((node, d));
            }
        }
    }
    None
}

/// The disk's first sector, read from the device (page cache dropped
/// first, so the read reaches the emulated disk through the reset device).
fn disk_reads(block: &Path) -> Result<(), String> {
    use std::io::Read;
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let name = block.file_name().unwrap_or_default().to_string_lossy();
    let dev = format!("/dev/{name}");
    let mut buf = [0u8; 512];
    std::fs::File::open(&dev)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("{dev}: {e}"))?;
    if buf.starts_with(DISK_MAGIC) {
        Ok(())
    } else {
        Err(format!(
            "{dev}: first bytes {:?}, not the rig's disk",
            String::from_utf8_lossy(&buf[..DISK_MAGIC.len()])
        ))
    }
}

/// Wait until the disk is there and reads: its node, device and the
/// outcome of the last read.
fn wait_disk_reads() -> (Option<(PathBuf, UsbDevice)>, Result<(), String>) {
    let until = Instant::now() + WAIT;
    loop {
        let found = find_disk();
        let read = match &found {
            Some((node, _)) => disk_reads(node),
            None => Err(format!(
                "no /sys/block entry on a USB device with serial {DISK_SERIAL}"
            )),
        };
        if read.is_ok() || Instant::now() >= until {
            return (found, read);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn usb_reset_disk(s: &mut Suite) {
    // Not every node is on USB: the serial port is a platform device.
    let tty = usb::owner_of(Path::new("/sys/class/tty/ttyS0"));
    s.check(
        "usb: ttyS0 is not on USB",
        matches!(tty, Ok(None)),
        format!("{tty:?}"),
    );

    let (found, read) = wait_disk_reads();
    let Some((node, dev)) = found else {
        s.check("usb disk: found from /sys/block", false, read.unwrap_err());
        return;
    };
    s.check(
        "usb disk: found from /sys/block",
        dev.serial.as_deref() == Some(DISK_SERIAL) && dev.vendor == 0x46f4,
        format!(
            "{} -> {} at {}",
            node.display(),
            dev.describe(),
            dev.sysfs.display()
        ),
    );
    s.check("usb disk: reads", read.is_ok(), format!("{read:?}"));
    s.check(
        "usb disk: no DVB adapters",
        usb::adapters_of(&dev).is_empty(),
        format!("{:?}", usb::adapters_of(&dev)),
    );
    // The same device from its /dev node (through /sys/dev/block).
    let via_dev = usb::owner_of(&Path::new("/dev").join(node.file_name().unwrap_or_default()));
    s.check(
        "usb disk: same device from /dev",
        via_dev.as_ref().ok().and_then(|d| d.as_ref()) == Some(&dev),
        format!("{via_dev:?}"),
    );

    // The root hub of the disk's bus is a USB device too, but never reset.
    let hub = usb::owner_of(Path::new(&format!(
        "/sys/bus/usb/devices/usb{}",
        dev.busnum
    )));
    let refused = match &hub {
        Ok(Some(h)) => usb::reset(h, WAIT),
        other => Ok(format!("root hub not found: {other:?}")),
    };
    s.check(
        "usb: a root hub is refused",
        refused
            .as_ref()
            .is_err_and(|e| e.contains("a root hub (every device on bus")),
        format!("{refused:?}"),
    );

    for (what, steps, words) in [
        (
            "authorized 0/1",
            ResetSteps::AuthorizedOnly,
            "deauthorized and authorized again, back in ",
        ),
        (
            "USBDEVFS_RESET",
            ResetSteps::UsbdevfsResetOnly,
            "USBDEVFS_RESET on /dev/bus/usb/",
        ),
    ] {
        let before = find_disk().map(|(_, d)| d).unwrap_or_else(|| dev.clone());
        let iface_ino = interface_inode(&before);
        let kernel_resets = kernel_log_count(&format!("usb {}: reset ", before.port_path()));
        let r = usb::reset_with(&before, WAIT, steps);
        println!("usb disk: reset ({what}): {r:?}");
        s.check(
            &format!("usb disk: reset ({what})"),
            r.as_ref()
                .is_ok_and(|w| w.contains(words) && w.starts_with(&before.describe())),
            format!("{r:?}"),
        );
        let (found, read) = wait_disk_reads();
        let again = found.as_ref().map(|(n, d)| {
            format!(
                "{} -> {} (device {} before, {} now)",
                n.display(),
                d.describe(),
                before.devnum,
                d.devnum
            )
        });
        s.check(
            &format!("usb disk: found again after {what}"),
            found.as_ref().is_some_and(|(_, d)| {
                d.sysfs == before.sysfs && d.serial == before.serial && d.vendor == before.vendor
            }),
            again.unwrap_or_else(|| "not found".into()),
        );
        s.check(
            &format!("usb disk: reads after {what}"),
            read.is_ok(),
            format!("{read:?}"),
        );
        // Proof that each way did what it says: authorized 0/1 removes the
        // interfaces and makes them anew (a new sysfs directory, a new
        // inode); USBDEVFS_RESET is a port reset the kernel logs, and
        // usb-storage, which has reset hooks, keeps its interface.
        let ino_now = interface_inode(&before);
        let resets_now = kernel_log_count(&format!("usb {}: reset ", before.port_path()));
        let (ok, detail) = if steps == ResetSteps::AuthorizedOnly {
            (
                iface_ino.is_some() && ino_now.is_some() && iface_ino != ino_now,
                format!("interface inode {iface_ino:?} before, {ino_now:?} now"),
            )
        } else {
            (
                resets_now > kernel_resets && iface_ino == ino_now,
                format!(
                    "kernel log 'usb {}: reset' {kernel_resets} -> {resets_now} time(s); interface inode {iface_ino:?} -> {ino_now:?}",
                    before.port_path()
                ),
            )
        };
        s.check(&format!("usb disk: the kernel did the {what}"), ok, detail);
    }
}

/// The inode of the device's first interface directory ("2-1:1.0").
fn interface_inode(dev: &UsbDevice) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let iface = dev.sysfs.join(format!("{}:1.0", dev.port_path()));
    std::fs::metadata(iface).ok().map(|m| m.ino())
}

/// How many kernel log lines contain `what` (busybox dmesg).
fn kernel_log_count(what: &str) -> usize {
    std::process::Command::new("dmesg")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(what))
                .count()
        })
        .unwrap_or(0)
}

/// `capbox usb-reset` (the technician's command) on the disk: shows the
/// device, resets it, the disk reads again; refuses the serial port.
fn usb_reset_cli(s: &mut Suite) {
    let run = |args: &[&str]| match std::process::Command::new("/bin/capbox")
        .arg("usb-reset")
        .args(args)
        .output()
    {
        Ok(o) => (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (None, format!("/bin/capbox: {e}")),
    };
    let Some((node, dev)) = find_disk() else {
        s.check("capbox usb-reset: disk", false, "no disk");
        return;
    };
    let node = node.display().to_string();
    let (rc, out) = run(&[&node]);
    for l in out.lines() {
        println!("capbox usb-reset {node}: {l}");
    }
    s.check(
        "capbox usb-reset: disk reset",
        rc == Some(0)
            && out.starts_with(&dev.describe())
            && out.contains("deauthorized and authorized again, back in "),
        format!("exit {rc:?}"),
    );
    let (_, read) = wait_disk_reads();
    s.check(
        "capbox usb-reset: disk reads after",
        read.is_ok(),
        format!("{read:?}"),
    );
    let (rc, out) = run(&["/sys/class/tty/ttyS0"]);
    s.check(
        "capbox usb-reset: refuses a non-USB device",
        rc == Some(1) && out.contains("is not on a USB device"),
        format!("exit {rc:?}: {}", out.trim()),
    );
}

/// Reader 2 (no card: see step 5 on pcscd and cards), found from its
/// interface directory, reset the default way (`authorized` 0/1): pcscd
/// sees its interface go and come back, and so does the card manager.
fn usb_reset_reader(s: &mut Suite, m: &CardManager) {
    let Some(r2_name) = find(&m.status(), R2_TAG).map(|r| r.reader.clone()) else {
        s.check(
            "usb reader: reader 2 listed before",
            false,
            show(&m.status()),
        );
        return;
    };
    // The interface directory of the USB device with reader 2's serial.
    let iface = std::fs::read_dir("/sys/bus/usb/devices")
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| {
                    let serial = std::fs::read_to_string(p.join("serial")).unwrap_or_default();
                    serial.trim() == "CAPBOXR2"
                })
                .and_then(|dev| {
                    let name = dev.file_name()?.to_string_lossy().into_owned();
                    Some(Path::new("/sys/bus/usb/devices").join(format!("{name}:1.0")))
                })
        });
    let Some(iface) = iface else {
        s.check(
            "usb reader: interface of CAPBOXR2",
            false,
            "no USB device with that serial",
        );
        return;
    };
    let owner = usb::owner_of(&iface);
    let dev = match &owner {
        Ok(Some(d)) if d.serial.as_deref() == Some("CAPBOXR2") => d.clone(),
        _ => {
            s.check(
                "usb reader: device from its interface",
                false,
                format!("{} -> {owner:?}", iface.display()),
            );
            return;
        }
    };
    // The device directory ("1-3"), never the interface ("1-3:1.0").
    s.check(
        "usb reader: device from its interface",
        iface.file_name().is_some_and(|n| {
            n.to_string_lossy().split(':').next() == Some(dev.port_path().as_str())
        }) && !dev.port_path().contains(':'),
        format!(
            "{} -> {} at {}",
            iface.display(),
            dev.describe(),
            dev.sysfs.display()
        ),
    );
    let gone = format!("INFO cards: reader '{r2_name}' gone");
    let gone_before = logs().iter().filter(|l| **l == gone).count();
    let removed_before = pcscd_removals("(CAPBOXR2)");
    let r = usb::reset(&dev, WAIT);
    println!("usb reader: reset: {r:?}");
    s.check(
        "usb reader: reset (authorized 0/1)",
        r.as_ref()
            .is_ok_and(|w| w.contains("deauthorized and authorized again")),
        format!("{r:?}"),
    );
    // pcscd saw the interface go (and dropped the reader) and come back;
    // the card manager lists the reader again. The manager may or may not
    // notice the gap (it lasts about 0.1 s and the manager lists readers
    // once a second): shown, not checked.
    let (ok, st) = wait_for(m, |st| {
        pcscd_removals("(CAPBOXR2)") > removed_before && empty_reader(st, R2_TAG)
    });
    s.check(
        "usb reader: pcscd dropped it and the manager lists it again",
        ok,
        format!(
            "{}; pcscd removals of CAPBOXR2 {} -> {}",
            show(&st),
            removed_before,
            pcscd_removals("(CAPBOXR2)")
        ),
    );
    println!(
        "usb reader: the manager logged '{gone}' {} time(s) during the reset",
        logs().iter().filter(|l| **l == gone).count() - gone_before
    );
    let again = usb::owner_of(&iface);
    s.check(
        "usb reader: found again from its interface",
        again
            .as_ref()
            .ok()
            .and_then(|d| d.as_ref())
            .is_some_and(|d| d.sysfs == dev.sysfs && d.serial == dev.serial),
        format!("{again:?}"),
    );
}

/// How often pcscd's debug log says it removed the reader with `tag`.
fn pcscd_removals(tag: &str) -> usize {
    std::fs::read_to_string("/tmp/pcscd.log")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("HPRemoveDevice() Removing USB device") && l.contains(tag))
        .count()
}
