//! One DVB frontend (`/dev/dvb/adapterN/frontendM`): capabilities
//! (FE_GET_INFO, DTV_ENUM_DELSYS), tuning from a list of DTV_* properties,
//! lock detection, statistics, and the satellite equipment control calls
//! (voltage, 22 kHz tone, DiSEqC message, tone burst).
//!
//! Promises:
//! - Nothing here can block: the fd is opened O_NONBLOCK and lock waits poll
//!   with a deadline (a blocking FE_GET_EVENT with no event pending hangs
//!   forever, FIELD-NOTES).
//! - Tuning takes `(cmd, value)` pairs, the form `Tuning::to_props()` (in
//!   `tuning.rs`) produces, so this file knows no delivery-system rules.
//! - Statistics keep the driver's scale (dB, relative, counter, not
//!   available); implausible values (vidtv reports a dB strength with a
//!   garbage value when unlocked) are kept apart, never passed on as numbers.
//! - Every failed ioctl is a `DvbError` naming the device, call and errno.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use capbox_sys::bindings::*;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::DvbError;

type Result<T> = std::result::Result<T, DvbError>;

/// Most properties one FE_SET_PROPERTY/FE_GET_PROPERTY call may carry.
pub const MAX_PROPS: usize = DTV_IOCTL_MAX_MSGS as usize;

/// The `fe_status` bits of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(pub u32);

impl Status {
    pub fn has_lock(self) -> bool {
        self.0 & FE_HAS_LOCK != 0
    }
    pub fn has_signal(self) -> bool {
        self.0 & FE_HAS_SIGNAL != 0
    }
    pub fn has_carrier(self) -> bool {
        self.0 & FE_HAS_CARRIER != 0
    }
}

impl fmt::Display for Status {
    /// "locked (signal carrier viterbi sync lock)" or "no signal".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const BITS: [(u32, &str); 7] = [
            (FE_HAS_SIGNAL, "signal"),
            (FE_HAS_CARRIER, "carrier"),
            (FE_HAS_VITERBI, "viterbi"),
            (FE_HAS_SYNC, "sync"),
            (FE_HAS_LOCK, "lock"),
            (FE_TIMEDOUT, "timed-out"),
            (FE_REINIT, "reinit"),
        ];
        if self.0 == 0 {
            return write!(f, "no signal");
        }
        let words: Vec<&str> = BITS
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, w)| *w)
            .collect();
        let head = if self.has_lock() {
            "locked"
        } else {
            "not locked"
        };
        write!(f, "{head} ({})", words.join(" "))
    }
}

/// What FE_GET_INFO and DTV_ENUM_DELSYS say about a frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendInfo {
    pub name: String,
    /// Hz for terrestrial/cable, kHz for satellite (the API's units).
    pub frequency_min: u32,
    pub frequency_max: u32,
    pub frequency_stepsize: u32,
    pub symbol_rate_min: u32,
    pub symbol_rate_max: u32,
    /// `FE_CAN_*` bits.
    pub caps: u32,
    /// `SYS_*` values from DTV_ENUM_DELSYS.
    pub delivery_systems: Vec<u32>,
}

/// Short name of a `fe_delivery_system` (as dvbv5 files spell them).
pub fn delivery_system_name(sys: u32) -> &'static str {
    match sys {
        SYS_DVBC_ANNEX_A => "DVBC/ANNEX_A",
        SYS_DVBC_ANNEX_B => "DVBC/ANNEX_B",
        SYS_DVBC_ANNEX_C => "DVBC/ANNEX_C",
        SYS_DVBT => "DVBT",
        SYS_DVBT2 => "DVBT2",
        SYS_DVBS => "DVBS",
        SYS_DVBS2 => "DVBS2",
        SYS_DVBH => "DVBH",
        SYS_ISDBT => "ISDBT",
        SYS_ISDBS => "ISDBS",
        SYS_ISDBC => "ISDBC",
        SYS_ATSC => "ATSC",
        SYS_ATSCMH => "ATSCMH",
        SYS_DTMB => "DTMB",
        SYS_DSS => "DSS",
        SYS_TURBO => "TURBO",
        SYS_CMMB => "CMMB",
        SYS_DAB => "DAB",
        _ => "UNDEFINED",
    }
}

/// One statistic as the driver reports it (global layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    NotAvailable,
    /// dB (the API's 0.001 dB units converted); dBm for signal strength.
    Decibel(f64),
    /// 0..=65535, driver-specific meaning (0 worst).
    Relative(u16),
    Counter(u64),
    /// A value the driver sent that cannot be true (unknown scale, or a dB
    /// value outside what any receiver measures); kept raw for logs only.
    Implausible {
        scale: u8,
        raw: u64,
    },
}

impl Measure {
    pub fn decibel(self) -> Option<f64> {
        match self {
            Measure::Decibel(d) => Some(d),
            _ => None,
        }
    }
    pub fn counter(self) -> Option<u64> {
        match self {
            Measure::Counter(c) => Some(c),
            _ => None,
        }
    }

    /// Interpret one `dtv_stats` entry; `db_range` bounds believable dB values.
    pub fn from_raw(scale: u8, raw: u64, db_range: (f64, f64)) -> Measure {
        match u32::from(scale) {
            FE_SCALE_NOT_AVAILABLE => Measure::NotAvailable,
            FE_SCALE_DECIBEL => {
                let db = (raw as i64) as f64 / 1000.0;
                if db >= db_range.0 && db <= db_range.1 {
                    Measure::Decibel(db)
                } else {
                    Measure::Implausible { scale, raw }
                }
            }
            FE_SCALE_RELATIVE if raw <= 0xFFFF => Measure::Relative(raw as u16),
            FE_SCALE_COUNTER => Measure::Counter(raw),
            _ => Measure::Implausible { scale, raw },
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::NotAvailable => write!(f, "n/a"),
            Measure::Decibel(d) => write!(f, "{d:.2} dB"),
            Measure::Relative(r) => write!(f, "{:.1}%", f64::from(*r) * 100.0 / 65535.0),
            Measure::Counter(c) => write!(f, "{c}"),
            Measure::Implausible { .. } => write!(f, "invalid"),
        }
    }
}

/// Believable signal strength in dBm and C/N in dB. Wide on purpose: they
/// only separate garbage from measurements.
const SIGNAL_DBM_RANGE: (f64, f64) = (-150.0, 30.0);
const CNR_DB_RANGE: (f64, f64) = (-30.0, 70.0);
const COUNT_RANGE: (f64, f64) = (0.0, 0.0);

/// The DVBv5 statistics of a frontend (global layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub signal: Measure,
    pub cnr: Measure,
    pub pre_error_bits: Measure,
    pub pre_total_bits: Measure,
    pub post_error_bits: Measure,
    pub post_total_bits: Measure,
    pub error_blocks: Measure,
    pub total_blocks: Measure,
}

const STAT_CMDS: [u32; 8] = [
    DTV_STAT_SIGNAL_STRENGTH,
    DTV_STAT_CNR,
    DTV_STAT_PRE_ERROR_BIT_COUNT,
    DTV_STAT_PRE_TOTAL_BIT_COUNT,
    DTV_STAT_POST_ERROR_BIT_COUNT,
    DTV_STAT_POST_TOTAL_BIT_COUNT,
    DTV_STAT_ERROR_BLOCK_COUNT,
    DTV_STAT_TOTAL_BLOCK_COUNT,
];

impl Stats {
    pub fn signal_dbm(&self) -> Option<f64> {
        self.signal.decibel()
    }
    pub fn cnr_db(&self) -> Option<f64> {
        self.cnr.decibel()
    }
    /// Bit error ratio since the counters started: post-FEC when the driver
    /// counts it, else pre-FEC. None without both counts or with no bits yet.
    pub fn ber(&self) -> Option<f64> {
        let ratio = |e: Measure, t: Measure| match (e.counter(), t.counter()) {
            (Some(e), Some(t)) if t > 0 && e <= t => Some(e as f64 / t as f64),
            _ => None,
        };
        ratio(self.post_error_bits, self.post_total_bits)
            .or_else(|| ratio(self.pre_error_bits, self.pre_total_bits))
    }
    /// Uncorrected blocks since the counter started.
    pub fn error_blocks(&self) -> Option<u64> {
        self.error_blocks.counter()
    }
}

/// What the DVBv3 calls report; None where the driver lacks the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegacyStats {
    pub signal_strength: Option<u16>,
    pub snr: Option<u16>,
    pub ber: Option<u32>,
    pub uncorrected_blocks: Option<u32>,
}

/// LNB supply voltage and tone burst: one type each, owned by the pure
/// modules that decide them (`lnb`, `diseqc`); re-exported here because
/// the frontend is what sends them.
pub use super::diseqc::Burst;
pub use super::lnb::Voltage;

/// An open frontend.
#[derive(Debug)]
pub struct Frontend {
    fd: OwnedFd,
    device: String,
    /// Events dropped by the kernel's event queue (EOVERFLOW on FE_GET_EVENT).
    pub events_lost: u64,
}

fn prop(cmd: u32, data: u32) -> dtv_property {
    let mut p = dtv_property {
        cmd,
        ..Default::default()
    };
    p.u.data = data;
    p
}

fn prop_data(p: &dtv_property) -> u32 {
    let u = p.u;
    // SAFETY: the union is plain integers; every bit pattern is a valid u32.
    unsafe { u.data }
}

fn prop_buffer(p: &dtv_property) -> ([u8; 32], u32) {
    let u = p.u;
    // SAFETY: plain bytes and a u32; every bit pattern is valid.
    let b = unsafe { u.buffer };
    (b.data, b.len)
}

/// The first (global) stat of a property: (scale, raw value), or None when
/// the driver filled no entry. A `len` above 4 is garbage: use entry 0.
fn prop_stat0(p: &dtv_property) -> Option<(u8, u64)> {
    let u = p.u;
    // SAFETY: dtv_fe_stats is plain integers; every bit pattern is valid.
    let st = unsafe { u.st };
    if st.len == 0 {
        return None;
    }
    let s = st.stat[0];
    // SAFETY: both union members are 64-bit integers.
    let raw = unsafe { s.__bindgen_anon_1.uvalue };
    Some((s.scale, raw))
}

impl Frontend {
    /// Open `/dev/dvb/adapterN/frontendM` read-write (the tuning user).
    pub fn open(adapter: u32, frontend: u32) -> Result<Frontend> {
        let path = format!("/dev/dvb/adapter{adapter}/frontend{frontend}");
        Self::open_path(
            Path::new(&path),
            &format!("adapter{adapter}/frontend{frontend}"),
            true,
        )
    }

    /// Open a frontend node; `rw` false gives a read-only (monitoring) fd,
    /// allowed while another process tunes.
    pub fn open_path(path: &Path, device: &str, rw: bool) -> Result<Frontend> {
        let mode = if rw { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let fd = open(
            path,
            mode | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| DvbError::new(device, "open", e).with_detail(path.display().to_string()))?;
        // SAFETY: `open` just returned this fd and nothing else owns it.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Frontend {
            fd,
            device: device.to_string(),
            events_lost: 0,
        })
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    fn err(&self, call: &'static str, e: Errno) -> DvbError {
        DvbError::new(&self.device, call, e)
    }

    /// FE_GET_INFO plus DTV_ENUM_DELSYS.
    pub fn info(&self) -> Result<FrontendInfo> {
        let mut info = dvb_frontend_info::default();
        // SAFETY: `info` is a valid, writable dvb_frontend_info; the fd is a
        // frontend.
        unsafe { capbox_sys::fe_get_info(self.fd.as_raw_fd(), &mut info) }
            .map_err(|e| self.err("FE_GET_INFO", e))?;
        // The kernel NUL-terminates, but a driver may fill all 128 bytes.
        let bytes: Vec<u8> = info.name.iter().map(|&c| c as u8).collect();
        let name = CStr::from_bytes_until_nul(&bytes)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        Ok(FrontendInfo {
            name,
            frequency_min: info.frequency_min,
            frequency_max: info.frequency_max,
            frequency_stepsize: info.frequency_stepsize,
            symbol_rate_min: info.symbol_rate_min,
            symbol_rate_max: info.symbol_rate_max,
            caps: info.caps,
            delivery_systems: self.delivery_systems()?,
        })
    }

    /// DTV_ENUM_DELSYS: the delivery systems the frontend can tune.
    pub fn delivery_systems(&self) -> Result<Vec<u32>> {
        let mut props = [prop(DTV_ENUM_DELSYS, 0)];
        self.get_raw(&mut props, "FE_GET_PROPERTY")?;
        let (data, len) = prop_buffer(&props[0]);
        let n = (len as usize).min(data.len());
        Ok(data[..n].iter().map(|&b| u32::from(b)).collect())
    }

    fn get_raw(&self, props: &mut [dtv_property], call: &'static str) -> Result<()> {
        let mut arg = dtv_properties {
            num: props.len() as u32,
            props: props.as_mut_ptr(),
        };
        // SAFETY: `arg.props` points at `num` initialised properties that
        // stay alive and writable for the call.
        unsafe { capbox_sys::fe_get_property(self.fd.as_raw_fd(), &mut arg) }
            .map_err(|e| self.err(call, e))?;
        Ok(())
    }

    /// FE_SET_PROPERTY with `(DTV_* cmd, value)` pairs, in order.
    pub fn set_props(&self, props: &[(u32, u32)]) -> Result<()> {
        for chunk in props.chunks(MAX_PROPS) {
            let mut raw: Vec<dtv_property> = chunk.iter().map(|&(c, v)| prop(c, v)).collect();
            let arg = dtv_properties {
                num: raw.len() as u32,
                props: raw.as_mut_ptr(),
            };
            // SAFETY: `arg.props` points at `num` initialised properties
            // alive for the call.
            unsafe { capbox_sys::fe_set_property(self.fd.as_raw_fd(), &arg) }.map_err(|e| {
                let err = self.err("FE_SET_PROPERTY", e);
                let names: Vec<String> = chunk
                    .iter()
                    .map(|&(c, v)| format!("{}={v}", prop_name(c)))
                    .collect();
                err.with_detail(names.join(" "))
            })?;
        }
        Ok(())
    }

    /// FE_GET_PROPERTY of plain-valued properties.
    pub fn get_props(&self, cmds: &[u32]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(MAX_PROPS) {
            let mut raw: Vec<dtv_property> = chunk.iter().map(|&c| prop(c, 0)).collect();
            self.get_raw(&mut raw, "FE_GET_PROPERTY")?;
            out.extend(raw.iter().map(prop_data));
        }
        Ok(out)
    }

    /// Tune: drop stale events, then DTV_CLEAR, the given properties and
    /// DTV_TUNE in one call. `props` must not contain DTV_CLEAR/DTV_TUNE.
    pub fn tune(&mut self, props: &[(u32, u32)]) -> Result<()> {
        self.drain_events();
        let mut all = Vec::with_capacity(props.len() + 2);
        all.push((DTV_CLEAR, 0));
        all.extend(
            props
                .iter()
                .copied()
                .filter(|&(c, _)| c != DTV_CLEAR && c != DTV_TUNE),
        );
        all.push((DTV_TUNE, 0));
        if all.len() > MAX_PROPS {
            return Err(DvbError::other(
                &self.device,
                "FE_SET_PROPERTY",
                format!("{} properties, at most {MAX_PROPS} per tune", all.len()),
            ));
        }
        self.set_props(&all)
    }

    /// FE_READ_STATUS.
    pub fn status(&self) -> Result<Status> {
        let mut st: fe_status_t = 0;
        // SAFETY: `st` is a valid, writable fe_status_t.
        unsafe { capbox_sys::fe_read_status(self.fd.as_raw_fd(), &mut st) }
            .map_err(|e| self.err("FE_READ_STATUS", e))?;
        Ok(Status(st))
    }

    /// Read pending events without blocking; returns the last status seen.
    fn drain_events(&mut self) -> Option<Status> {
        let mut last = None;
        // Bounded: the kernel queue holds 8 events.
        for _ in 0..64 {
            let mut ev = dvb_frontend_event::default();
            // SAFETY: `ev` is a valid, writable dvb_frontend_event; the fd is
            // O_NONBLOCK, so an empty queue gives EWOULDBLOCK, not a hang.
            match unsafe { capbox_sys::fe_get_event(self.fd.as_raw_fd(), &mut ev) } {
                Ok(_) => last = Some(Status(ev.status)),
                Err(Errno::EOVERFLOW) => self.events_lost += 1,
                Err(_) => break,
            }
        }
        last
    }

    /// Wait until the frontend locks or `timeout` passes. Polls for POLLPRI
    /// (frontend events) in slices of at most 10 ms and reads the status
    /// after each: FE_READ_STATUS shows the lock before dvb-core's thread
    /// queues the event (in the rig, 50 ms slices gave a median of 54 ms
    /// from tune to the first dvr byte, 10 ms slices 15 ms), and a driver
    /// that sends no event still gets noticed.
    /// Err says "no lock within N ms" and the last status in words.
    pub fn wait_lock(&mut self, timeout: Duration) -> Result<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_events();
            let st = self.status()?;
            if st.has_lock() {
                return Ok(st);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DvbError::other(
                    &self.device,
                    "lock",
                    format!("no lock within {} ms (status: {st})", timeout.as_millis()),
                ));
            }
            let slice = (deadline - now).min(Duration::from_millis(10));
            let ms = u16::try_from(slice.as_millis()).unwrap_or(50);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(self.err("poll", e)),
            }
        }
    }

    /// DVBv5 statistics (one FE_GET_PROPERTY call).
    pub fn stats(&self) -> Result<Stats> {
        let mut raw: Vec<dtv_property> = STAT_CMDS.iter().map(|&c| prop(c, 0)).collect();
        self.get_raw(&mut raw, "FE_GET_PROPERTY")?;
        let m = |i: usize, range| match prop_stat0(&raw[i]) {
            Some((scale, v)) => Measure::from_raw(scale, v, range),
            None => Measure::NotAvailable,
        };
        Ok(Stats {
            signal: m(0, SIGNAL_DBM_RANGE),
            cnr: m(1, CNR_DB_RANGE),
            pre_error_bits: m(2, COUNT_RANGE),
            pre_total_bits: m(3, COUNT_RANGE),
            post_error_bits: m(4, COUNT_RANGE),
            post_total_bits: m(5, COUNT_RANGE),
            error_blocks: m(6, COUNT_RANGE),
            total_blocks: m(7, COUNT_RANGE),
        })
    }

    /// The DVBv3 statistics calls, for drivers without DTV_STAT_*. A call
    /// the driver lacks (ENOTSUPP 524, EOPNOTSUPP, ENOTTY) gives None; any
    /// other error is returned.
    pub fn legacy_stats(&self) -> Result<LegacyStats> {
        let fd = self.fd.as_raw_fd();
        // Each result is turned into a DvbError right after its ioctl, while
        // errno still holds the raw value (see `DvbError::new`).
        let opt = |r: nix::Result<i32>, call: &'static str| -> Result<bool> {
            match r {
                Ok(_) => Ok(true),
                Err(e) => {
                    let err = self.err(call, e);
                    if err.is_not_supported() {
                        Ok(false)
                    } else {
                        Err(err)
                    }
                }
            }
        };
        let (mut s, mut n, mut b, mut u) = (0u16, 0u16, 0u32, 0u32);
        // SAFETY: `s` is a valid, writable u16, the type the ioctl writes.
        let r = unsafe { capbox_sys::fe_read_signal_strength(fd, &mut s) };
        let has_s = opt(r, "FE_READ_SIGNAL_STRENGTH")?;
        // SAFETY: `n` is a valid, writable u16, the type the ioctl writes.
        let r = unsafe { capbox_sys::fe_read_snr(fd, &mut n) };
        let has_n = opt(r, "FE_READ_SNR")?;
        // SAFETY: `b` is a valid, writable u32, the type the ioctl writes.
        let r = unsafe { capbox_sys::fe_read_ber(fd, &mut b) };
        let has_b = opt(r, "FE_READ_BER")?;
        // SAFETY: `u` is a valid, writable u32, the type the ioctl writes.
        let r = unsafe { capbox_sys::fe_read_uncorrected_blocks(fd, &mut u) };
        let has_u = opt(r, "FE_READ_UNCORRECTED_BLOCKS")?;
        Ok(LegacyStats {
            signal_strength: has_s.then_some(s),
            snr: has_n.then_some(n),
            ber: has_b.then_some(b),
            uncorrected_blocks: has_u.then_some(u),
        })
    }

    /// FE_SET_VOLTAGE.
    pub fn set_voltage(&self, v: Voltage) -> Result<()> {
        let arg = v.raw();
        // SAFETY: value argument; the fd is a frontend.
        unsafe { capbox_sys::fe_set_voltage(self.fd.as_raw_fd(), libc::c_ulong::from(arg)) }
            .map_err(|e| self.err("FE_SET_VOLTAGE", e))?;
        Ok(())
    }

    /// FE_SET_TONE: the 22 kHz continuous tone on or off.
    pub fn set_tone(&self, on: bool) -> Result<()> {
        let arg = if on { SEC_TONE_ON } else { SEC_TONE_OFF };
        // SAFETY: value argument; the fd is a frontend.
        unsafe { capbox_sys::fe_set_tone(self.fd.as_raw_fd(), libc::c_ulong::from(arg)) }
            .map_err(|e| self.err("FE_SET_TONE", e))?;
        Ok(())
    }

    /// FE_DISEQC_SEND_MASTER_CMD with a 3..=6-byte message (framing,
    /// address, command, data), as `diseqc.rs` builds them.
    pub fn send_diseqc(&self, msg: &[u8]) -> Result<()> {
        if !(3..=6).contains(&msg.len()) {
            return Err(DvbError::other(
                &self.device,
                "FE_DISEQC_SEND_MASTER_CMD",
                format!("a DiSEqC message has 3 to 6 bytes, not {}", msg.len()),
            ));
        }
        let mut cmd = dvb_diseqc_master_cmd::default();
        cmd.msg[..msg.len()].copy_from_slice(msg);
        cmd.msg_len = msg.len() as u8;
        // SAFETY: `cmd` is a valid dvb_diseqc_master_cmd read by the kernel.
        unsafe { capbox_sys::fe_diseqc_send_master_cmd(self.fd.as_raw_fd(), &cmd) }
            .map_err(|e| self.err("FE_DISEQC_SEND_MASTER_CMD", e))?;
        Ok(())
    }

    /// FE_DISEQC_SEND_BURST (tone burst / mini DiSEqC A or B).
    pub fn send_burst(&self, b: Burst) -> Result<()> {
        let arg = b.raw();
        // SAFETY: value argument; the fd is a frontend.
        unsafe { capbox_sys::fe_diseqc_send_burst(self.fd.as_raw_fd(), libc::c_ulong::from(arg)) }
            .map_err(|e| self.err("FE_DISEQC_SEND_BURST", e))?;
        Ok(())
    }
}

impl AsFd for Frontend {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Frontend {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The DTV_* name of a property command, for error messages.
pub fn prop_name(cmd: u32) -> &'static str {
    match cmd {
        DTV_TUNE => "DTV_TUNE",
        DTV_CLEAR => "DTV_CLEAR",
        DTV_FREQUENCY => "DTV_FREQUENCY",
        DTV_MODULATION => "DTV_MODULATION",
        DTV_BANDWIDTH_HZ => "DTV_BANDWIDTH_HZ",
        DTV_INVERSION => "DTV_INVERSION",
        DTV_SYMBOL_RATE => "DTV_SYMBOL_RATE",
        DTV_INNER_FEC => "DTV_INNER_FEC",
        DTV_VOLTAGE => "DTV_VOLTAGE",
        DTV_TONE => "DTV_TONE",
        DTV_PILOT => "DTV_PILOT",
        DTV_ROLLOFF => "DTV_ROLLOFF",
        DTV_DELIVERY_SYSTEM => "DTV_DELIVERY_SYSTEM",
        DTV_CODE_RATE_HP => "DTV_CODE_RATE_HP",
        DTV_CODE_RATE_LP => "DTV_CODE_RATE_LP",
        DTV_GUARD_INTERVAL => "DTV_GUARD_INTERVAL",
        DTV_TRANSMISSION_MODE => "DTV_TRANSMISSION_MODE",
        DTV_HIERARCHY => "DTV_HIERARCHY",
        DTV_STREAM_ID => "DTV_STREAM_ID",
        DTV_SCRAMBLING_SEQUENCE_INDEX => "DTV_SCRAMBLING_SEQUENCE_INDEX",
        DTV_ENUM_DELSYS => "DTV_ENUM_DELSYS",
        DTV_LNA => "DTV_LNA",
        DTV_INTERLEAVING => "DTV_INTERLEAVING",
        _ => "DTV_?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_scales_and_garbage() {
        // vidtv's C/N when locked: 33500 in 0.001 dB.
        assert_eq!(
            Measure::from_raw(FE_SCALE_DECIBEL as u8, 33500, CNR_DB_RANGE),
            Measure::Decibel(33.5)
        );
        // Signal strength is signed: -34 dBm.
        let raw = (-34000i64) as u64;
        assert_eq!(
            Measure::from_raw(FE_SCALE_DECIBEL as u8, raw, SIGNAL_DBM_RANGE),
            Measure::Decibel(-34.0)
        );
        // A dB value no receiver measures is not a number.
        assert!(matches!(
            Measure::from_raw(FE_SCALE_DECIBEL as u8, 0x7fff_ffff_ffff, SIGNAL_DBM_RANGE),
            Measure::Implausible { .. }
        ));
        assert_eq!(
            Measure::from_raw(0, 12345, CNR_DB_RANGE),
            Measure::NotAvailable
        );
        assert_eq!(
            Measure::from_raw(2, 65535, CNR_DB_RANGE),
            Measure::Relative(65535)
        );
        assert!(matches!(
            Measure::from_raw(2, 70000, CNR_DB_RANGE),
            Measure::Implausible { .. }
        ));
        assert!(matches!(
            Measure::from_raw(9, 1, CNR_DB_RANGE),
            Measure::Implausible { .. }
        ));
        assert_eq!(Measure::from_raw(3, 7, COUNT_RANGE), Measure::Counter(7));
    }

    #[test]
    fn ber_prefers_post_fec_and_refuses_nonsense() {
        let mut s = Stats {
            signal: Measure::NotAvailable,
            cnr: Measure::NotAvailable,
            pre_error_bits: Measure::Counter(10),
            pre_total_bits: Measure::Counter(1000),
            post_error_bits: Measure::NotAvailable,
            post_total_bits: Measure::NotAvailable,
            error_blocks: Measure::Counter(3),
            total_blocks: Measure::Counter(100),
        };
        assert_eq!(s.ber(), Some(0.01));
        s.post_error_bits = Measure::Counter(1);
        s.post_total_bits = Measure::Counter(1000);
        assert_eq!(s.ber(), Some(0.001));
        s.post_error_bits = Measure::Counter(2000); // more errors than bits
        assert_eq!(s.ber(), Some(0.01));
        s.pre_total_bits = Measure::Counter(0);
        assert_eq!(s.ber(), None);
    }

    #[test]
    fn status_in_words() {
        assert_eq!(Status(0).to_string(), "no signal");
        assert_eq!(
            Status(0x1f).to_string(),
            "locked (signal carrier viterbi sync lock)"
        );
        assert_eq!(Status(0x03).to_string(), "not locked (signal carrier)");
    }

    #[test]
    fn open_missing_device_names_it() {
        let e = Frontend::open(97, 0).unwrap_err();
        assert_eq!(e.call, "open");
        assert!(e
            .to_string()
            .starts_with("adapter97/frontend0: open failed: No such file"));
    }
}
