//! The Linux DVB API v5 path to the tuners: adapter discovery from sysfs
//! (`adapter`), frontends (`frontend`: capabilities, tuning from DTV_*
//! properties, lock detection that cannot hang, statistics) and the
//! demux/dvr pair (`demux`: PID filters, the full TS on dvr, overflow
//! counting); tuning parameters (`tuning`), the one tuning sequence
//! (`tune`), LNB arithmetic (`lnb`),
//! DiSEqC and Unicable commands (`diseqc`) and dvbv5 channel files
//! (`channels`).
//!
//! Promise: no ioctl error is silent. Every one becomes a [`DvbError`] that
//! names the device, the call and the errno in words, so a log line alone
//! tells a technician which tuner refused what.

pub mod adapter;
pub mod channels;
pub mod demux;
pub mod diseqc;
pub mod frontend;
pub mod health;
pub mod lnb;
pub mod recovery;
pub mod scan;
pub mod tune;
pub mod tuning;
pub mod usb;

use std::fmt;

use nix::errno::Errno;

/// ENOTSUPP: the kernel-internal "operation not supported" (524) that DVB
/// drivers return for legacy calls they do not implement. libc has no name
/// for it (strerror says "Unknown error 524").
pub const ENOTSUPP: i32 = 524;

/// An error on one DVB device: which device, which call, which errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvbError {
    /// The device, e.g. "adapter0/frontend0".
    pub device: String,
    /// The call, e.g. "FE_SET_PROPERTY" or "open".
    pub call: &'static str,
    /// The raw errno (0 when the error is not an errno, see `detail`).
    pub errno: i32,
    /// Extra words: the property that failed, the path, "no lock after 2 s".
    pub detail: String,
}

impl DvbError {
    /// Call right after the failed syscall: nix maps errnos it has no name
    /// for (ENOTSUPP 524 from DVB drivers) to `UnknownErrno` (0), so the raw
    /// value is then taken from the thread's errno, still set.
    pub fn new(device: &str, call: &'static str, errno: Errno) -> DvbError {
        let raw = match errno {
            Errno::UnknownErrno => std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            e => e as i32,
        };
        DvbError {
            device: device.to_string(),
            call,
            errno: raw,
            detail: String::new(),
        }
    }

    /// An error that is not an errno (e.g. a lock timeout).
    pub fn other(device: &str, call: &'static str, detail: impl Into<String>) -> DvbError {
        DvbError {
            device: device.to_string(),
            call,
            errno: 0,
            detail: detail.into(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> DvbError {
        self.detail = detail.into();
        self
    }

    /// Whether the driver simply lacks the call (ENOTSUPP, EOPNOTSUPP, ENOTTY).
    pub fn is_not_supported(&self) -> bool {
        self.errno == ENOTSUPP || self.errno == libc::EOPNOTSUPP || self.errno == libc::ENOTTY
    }
}

/// The errno in words: "Invalid argument (EINVAL, errno 22)".
pub fn errno_words(errno: i32) -> String {
    if errno == ENOTSUPP {
        return "operation not supported by this driver (ENOTSUPP, errno 524)".to_string();
    }
    let e = Errno::from_raw(errno);
    if e == Errno::UnknownErrno {
        return format!("unknown error (errno {errno})");
    }
    format!("{} ({:?}, errno {})", e.desc(), e, errno)
}

impl fmt::Display for DvbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.device, self.call)?;
        if self.errno != 0 {
            write!(f, " failed: {}", errno_words(self.errno))?;
            if !self.detail.is_empty() {
                write!(f, " ({})", self.detail)?;
            }
        } else if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for DvbError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_device_call_and_errno_in_words() {
        let e = DvbError::new("adapter0/frontend0", "FE_SET_PROPERTY", Errno::EINVAL)
            .with_detail("DTV_SYMBOL_RATE");
        assert_eq!(
            e.to_string(),
            "adapter0/frontend0: FE_SET_PROPERTY failed: Invalid argument (EINVAL, errno 22) (DTV_SYMBOL_RATE)"
        );
        let e = DvbError {
            errno: ENOTSUPP,
            ..DvbError::other("adapter1/frontend0", "FE_READ_SNR", "")
        };
        assert!(e.is_not_supported());
        assert!(e.to_string().contains("not supported by this driver"));
        let e = DvbError::other("adapter0/frontend0", "lock", "no lock within 2000 ms");
        assert_eq!(
            e.to_string(),
            "adapter0/frontend0: lock: no lock within 2000 ms"
        );
    }
}
