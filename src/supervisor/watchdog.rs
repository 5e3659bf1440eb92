//! The Linux watchdog API on `/dev/watchdog` (Documentation/watchdog/
//! watchdog-api.rst): open arms it, WDIOC_KEEPALIVE feeds it, writing 'V'
//! before close disarms it (the magic close) unless the driver was built
//! with nowayout.
//!
//! Owns the device file. Promises: every failure is in words naming the
//! device and the call; `Drop` without `disarm` leaves the watchdog running
//! (a crash must reset the box: that is the point).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `struct watchdog_info` of linux/watchdog.h.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WatchdogInfo {
    pub options: u32,
    pub firmware_version: u32,
    pub identity: [u8; 32],
}

// linux/watchdog.h: WATCHDOG_IOCTL_BASE 'W'.
nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
nix::ioctl_read!(wdioc_getbootstatus, b'W', 2, libc::c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);

/// WDIOF_* bits (options of WDIOC_GETSUPPORT, and WDIOC_GETBOOTSTATUS).
pub const WDIOF_OVERHEAT: u32 = 0x0001;
pub const WDIOF_FANFAULT: u32 = 0x0002;
pub const WDIOF_EXTERN1: u32 = 0x0004;
pub const WDIOF_EXTERN2: u32 = 0x0008;
pub const WDIOF_POWERUNDER: u32 = 0x0010;
pub const WDIOF_CARDRESET: u32 = 0x0020;
pub const WDIOF_POWEROVER: u32 = 0x0040;
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;
pub const WDIOF_KEEPALIVEPING: u32 = 0x8000;

/// The causes a bootstatus can name, in words (None: nothing reported).
pub fn bootstatus_words(bits: u32) -> Option<String> {
    const WORDS: [(u32, &str); 7] = [
        (WDIOF_CARDRESET, "watchdog reset (the card reported it)"),
        (WDIOF_OVERHEAT, "overheat"),
        (WDIOF_FANFAULT, "fan fault"),
        (WDIOF_EXTERN1, "external relay 1"),
        (WDIOF_EXTERN2, "external relay 2"),
        (WDIOF_POWERUNDER, "power under voltage"),
        (WDIOF_POWEROVER, "power over voltage"),
    ];
    let w: Vec<&str> = WORDS
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, w)| *w)
        .collect();
    (!w.is_empty()).then(|| w.join(", "))
}

/// An open (armed) watchdog.
pub struct Watchdog {
    file: Option<File>,
    pub device: PathBuf,
    pub identity: String,
    pub options: u32,
    /// The timeout in force (after WDIOC_SETTIMEOUT, or the driver's own).
    pub timeout_s: u32,
    /// WDIOC_GETBOOTSTATUS, read at open (0 when the driver cannot say).
    pub bootstatus: u32,
    /// What did not go as asked (timeout refused, no bootstatus), in words.
    pub notes: Vec<String>,
}

impl Watchdog {
    /// Open `device` (this arms it) and ask for `timeout_s`.
    pub fn open(device: &Path, timeout_s: u32) -> Result<Watchdog, String> {
        let dev = device.display();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::ENOENT) => " (no watchdog driver loaded? e.g. softdog, i6300esb, iTCO_wdt)",
                    Some(libc::EBUSY) => " (another program holds it: a watchdog daemon, systemd's RuntimeWatchdogSec?)",
                    Some(libc::EACCES) => " (capbox's user may not open it: see udev/ rules)",
                    _ => "",
                };
                format!("cannot open the watchdog {dev}: {e}{hint}")
            })?;
        let fd = file.as_raw_fd();
        let mut wd = Watchdog {
            file: Some(file),
            device: device.to_path_buf(),
            identity: String::new(),
            options: 0,
            timeout_s: 0,
            bootstatus: 0,
            notes: Vec::new(),
        };
        let mut info = WatchdogInfo {
            options: 0,
            firmware_version: 0,
            identity: [0; 32],
        };
        // SAFETY: fd is open for the life of `wd`; `info` is a valid
        // watchdog_info the kernel fills in.
        match unsafe { wdioc_getsupport(fd, &mut info) } {
            Ok(_) => {
                let n = info.identity.iter().position(|&b| b == 0).unwrap_or(32);
                wd.identity =
                    crate::ts::text::clean_name(&String::from_utf8_lossy(&info.identity[..n]));
                wd.options = info.options;
            }
            Err(e) => wd.notes.push(format!("{dev}: WDIOC_GETSUPPORT: {e}")),
        }
        let mut boot: libc::c_int = 0;
        // SAFETY: as above; the kernel writes one int.
        match unsafe { wdioc_getbootstatus(fd, &mut boot) } {
            Ok(_) => wd.bootstatus = boot as u32,
            Err(e) => wd.notes.push(format!("{dev}: WDIOC_GETBOOTSTATUS: {e}")),
        }
        let mut t: libc::c_int = timeout_s.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: as above; the kernel reads and writes back one int.
        match unsafe { wdioc_settimeout(fd, &mut t) } {
            Ok(_) if t > 0 => wd.timeout_s = t as u32,
            Ok(_) => {}
            Err(e) => wd.notes.push(format!(
                "{dev}: the driver refused a timeout of {timeout_s} s (WDIOC_SETTIMEOUT: {e}); using its own"
            )),
        }
        if wd.timeout_s == 0 {
            let mut t: libc::c_int = 0;
            // SAFETY: as above.
            match unsafe { wdioc_gettimeout(fd, &mut t) } {
                Ok(_) if t > 0 => wd.timeout_s = t as u32,
                Ok(_) | Err(_) => {
                    wd.notes.push(format!(
                        "{dev}: the driver does not tell its timeout; assuming {timeout_s} s"
                    ));
                    wd.timeout_s = timeout_s;
                }
            }
        } else if wd.timeout_s != timeout_s {
            wd.notes.push(format!(
                "{dev}: asked for a timeout of {timeout_s} s, the driver set {} s",
                wd.timeout_s
            ));
        }
        // First feed right away: the timer may have been running since
        // before capbox (a boot loader or a previous holder's nowayout).
        wd.keepalive()?;
        Ok(wd)
    }

    /// WDIOC_KEEPALIVE (a write of one byte when the driver lacks it).
    pub fn keepalive(&mut self) -> Result<(), String> {
        let Some(f) = self.file.as_mut() else {
            return Err(format!("watchdog {} is closed", self.device.display()));
        };
        let mut dummy: libc::c_int = 0;
        // SAFETY: the fd is open; the kernel ignores the argument.
        match unsafe { wdioc_keepalive(f.as_raw_fd(), &mut dummy) } {
            Ok(_) => Ok(()),
            Err(_) => f
                .write_all(b"\0")
                .map_err(|e| format!("cannot feed the watchdog {}: {e}", self.device.display())),
        }
    }

    /// The magic close: 'V', then close. Err when the driver cannot be
    /// disarmed (no WDIOF_MAGICCLOSE or built with nowayout: the box then
    /// resets after the timeout, say so).
    pub fn disarm(mut self) -> Result<(), String> {
        let Some(mut f) = self.file.take() else {
            return Ok(());
        };
        let res = f
            .write_all(b"V")
            .map_err(|e| format!("magic close of {}: {e}", self.device.display()));
        drop(f);
        res?;
        if self.options != 0 && self.options & WDIOF_MAGICCLOSE == 0 {
            return Err(format!(
                "{} ({}) does not announce the magic close: it may reset the box in {} s",
                self.device.display(),
                self.identity,
                self.timeout_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstatus_in_words() {
        assert_eq!(bootstatus_words(0), None);
        assert_eq!(
            bootstatus_words(WDIOF_CARDRESET).as_deref(),
            Some("watchdog reset (the card reported it)")
        );
        assert_eq!(
            bootstatus_words(WDIOF_OVERHEAT | WDIOF_POWERUNDER).as_deref(),
            Some("overheat, power under voltage")
        );
        // Capability bits are not causes.
        assert_eq!(
            bootstatus_words(WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING),
            None
        );
    }

    #[test]
    fn ioctl_numbers_match_linux_watchdog_h() {
        // _IOR('W', 0, struct watchdog_info) etc., as the kernel defines them.
        assert_eq!(
            nix::request_code_read!(b'W', 0, std::mem::size_of::<WatchdogInfo>()),
            0x80285700
        );
        assert_eq!(nix::request_code_read!(b'W', 2, 4), 0x80045702);
        assert_eq!(nix::request_code_read!(b'W', 5, 4), 0x80045705);
        assert_eq!(nix::request_code_readwrite!(b'W', 6, 4), 0xc0045706);
        assert_eq!(nix::request_code_read!(b'W', 7, 4), 0x80045707);
    }

    #[test]
    fn a_missing_device_is_named_in_the_error() {
        let e = Watchdog::open(Path::new("/nonexistent/watchdog9"), 20)
            .err()
            .unwrap();
        assert!(
            e.contains("cannot open the watchdog /nonexistent/watchdog9"),
            "{e}"
        );
        assert!(e.contains("no watchdog driver loaded"), "{e}");
    }
}
