//! The demux/dvr pair of an adapter: hardware PID filters whose packets go
//! to dvr (`DMX_SET_PES_FILTER` with `DMX_OUT_TS_TAP`; PID 0x2000 for the
//! whole TS) and the non-blocking dvr reader.
//!
//! Several PIDs to dvr take one demux fd each ([`PidSet`]): dvb-core refuses
//! `DMX_ADD_PID` (EINVAL) on a filter whose output is not
//! `DMX_OUT_TSDEMUX_TAP` once it has a PID (dmxdev.c, "only TS packet
//! filters may have multiple PIDs"; seen in the rig). `DMX_ADD_PID` /
//! `DMX_REMOVE_PID` work on a TSDEMUX_TAP filter, whose TS is read from the
//! demux fd itself ([`Output::Demux`]).
//!
//! Promises: both fds are O_NONBLOCK (a blocking dvr read waits to fill the
//! whole buffer, FIELD-NOTES) so they fit a mio loop; `Dvr::read_timeout`
//! never waits longer than asked; a dvr overflow (EOVERFLOW: the kernel
//! dropped data because nobody read in time) is counted, not returned as an
//! error, because reading on is the recovery.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use capbox_sys::bindings::*;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::DvbError;

type Result<T> = std::result::Result<T, DvbError>;

/// The pseudo-PID that passes every packet of the TS.
pub const FULL_TS: u16 = 0x2000;

fn open_node(path: &Path, device: &str, flags: OFlag) -> Result<OwnedFd> {
    let fd = open(
        path,
        flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DvbError::new(device, "open", e).with_detail(path.display().to_string()))?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where a TS filter's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `DMX_OUT_TS_TAP`: to the adapter's dvr (one PID per demux fd).
    Dvr,
    /// `DMX_OUT_TSDEMUX_TAP`: readable from this demux fd; PIDs can be
    /// added and removed on the running filter.
    Demux,
}

/// One demux fd carrying one TS-output filter.
#[derive(Debug)]
pub struct Demux {
    fd: OwnedFd,
    device: String,
    pids: Vec<u16>,
    pub stats: DvrStats,
}

impl Demux {
    /// Open `/dev/dvb/adapterN/demuxM`.
    pub fn open(adapter: u32, demux: u32) -> Result<Demux> {
        let path = format!("/dev/dvb/adapter{adapter}/demux{demux}");
        Self::open_path(Path::new(&path), &format!("adapter{adapter}/demux{demux}"))
    }

    pub fn open_path(path: &Path, device: &str) -> Result<Demux> {
        Ok(Demux {
            fd: open_node(path, device, OFlag::O_RDWR)?,
            device: device.to_string(),
            pids: Vec::new(),
            stats: DvrStats::default(),
        })
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The PIDs currently passed to dvr.
    pub fn pids(&self) -> &[u16] {
        &self.pids
    }

    /// DMX_SET_PES_FILTER: pass `pid` (or [`FULL_TS`]) from the frontend to
    /// dvr as TS packets, started at once. Replaces any earlier filter.
    pub fn set_ts_filter(&mut self, pid: u16) -> Result<()> {
        self.set_ts_filter_to(pid, Output::Dvr)
    }

    /// DMX_SET_PES_FILTER with the chosen output, started at once.
    pub fn set_ts_filter_to(&mut self, pid: u16, output: Output) -> Result<()> {
        if pid > FULL_TS {
            return Err(DvbError::other(
                &self.device,
                "DMX_SET_PES_FILTER",
                format!("PID {pid:#x} is above 0x2000"),
            ));
        }
        let params = dmx_pes_filter_params {
            pid,
            input: DMX_IN_FRONTEND,
            output: match output {
                Output::Dvr => DMX_OUT_TS_TAP,
                Output::Demux => DMX_OUT_TSDEMUX_TAP,
            },
            pes_type: DMX_PES_OTHER,
            flags: DMX_IMMEDIATE_START,
        };
        // SAFETY: `params` is a valid dmx_pes_filter_params read by the kernel.
        unsafe { capbox_sys::dmx_set_pes_filter(self.fd.as_raw_fd(), &params) }.map_err(|e| {
            DvbError::new(&self.device, "DMX_SET_PES_FILTER", e)
                .with_detail(format!("PID {pid:#06x}"))
        })?;
        self.pids = vec![pid];
        Ok(())
    }

    /// DMX_ADD_PID: pass one more PID through the running filter (an
    /// [`Output::Demux`] filter; dvb-core refuses it for [`Output::Dvr`]).
    pub fn add_pid(&mut self, pid: u16) -> Result<()> {
        if self.pids.contains(&pid) {
            return Ok(());
        }
        // SAFETY: `pid` is a valid u16 read by the kernel.
        unsafe { capbox_sys::dmx_add_pid(self.fd.as_raw_fd(), &pid) }.map_err(|e| {
            DvbError::new(&self.device, "DMX_ADD_PID", e).with_detail(format!("PID {pid:#06x}"))
        })?;
        self.pids.push(pid);
        Ok(())
    }

    /// DMX_REMOVE_PID.
    pub fn remove_pid(&mut self, pid: u16) -> Result<()> {
        // SAFETY: `pid` is a valid u16 read by the kernel.
        unsafe { capbox_sys::dmx_remove_pid(self.fd.as_raw_fd(), &pid) }.map_err(|e| {
            DvbError::new(&self.device, "DMX_REMOVE_PID", e).with_detail(format!("PID {pid:#06x}"))
        })?;
        self.pids.retain(|&p| p != pid);
        Ok(())
    }

    pub fn start(&self) -> Result<()> {
        // SAFETY: no argument; the fd is a demux.
        unsafe { capbox_sys::dmx_start(self.fd.as_raw_fd()) }
            .map_err(|e| DvbError::new(&self.device, "DMX_START", e))?;
        Ok(())
    }

    pub fn stop(&self) -> Result<()> {
        // SAFETY: no argument; the fd is a demux.
        unsafe { capbox_sys::dmx_stop(self.fd.as_raw_fd()) }
            .map_err(|e| DvbError::new(&self.device, "DMX_STOP", e))?;
        Ok(())
    }

    /// Read TS from an [`Output::Demux`] filter, waiting up to `timeout`.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        read_timeout(&self.fd, &self.device, &mut self.stats, buf, timeout)
    }
}

/// The PIDs an adapter passes to dvr: one demux fd per PID (see the module
/// comment), opened and closed as PIDs come and go (a PMT change).
#[derive(Debug)]
pub struct PidSet {
    adapter: u32,
    demux: u32,
    filters: std::collections::BTreeMap<u16, Demux>,
}

impl PidSet {
    pub fn new(adapter: u32, demux: u32) -> PidSet {
        PidSet {
            adapter,
            demux,
            filters: Default::default(),
        }
    }

    pub fn pids(&self) -> impl Iterator<Item = u16> + '_ {
        self.filters.keys().copied()
    }

    /// Pass `pid` (or [`FULL_TS`]) to dvr; already passed is fine.
    pub fn add(&mut self, pid: u16) -> Result<()> {
        if self.filters.contains_key(&pid) {
            return Ok(());
        }
        let mut d = Demux::open(self.adapter, self.demux)?;
        d.set_ts_filter(pid)?;
        self.filters.insert(pid, d);
        Ok(())
    }

    /// Stop passing `pid` (closing its fd stops the filter).
    pub fn remove(&mut self, pid: u16) {
        self.filters.remove(&pid);
    }

    /// Make the set exactly `pids`.
    pub fn set(&mut self, pids: &[u16]) -> Result<()> {
        self.filters.retain(|p, _| pids.contains(p));
        pids.iter().try_for_each(|&p| self.add(p))
    }
}

/// One non-blocking read: Ok(0) when nothing is waiting or after an
/// overflow (counted).
fn read_once(fd: &OwnedFd, device: &str, stats: &mut DvrStats, buf: &mut [u8]) -> Result<usize> {
    match nix::unistd::read(fd.as_raw_fd(), buf) {
        Ok(n) => {
            stats.reads += 1;
            stats.bytes += n as u64;
            Ok(n)
        }
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(0),
        Err(Errno::EOVERFLOW) => {
            stats.overflows += 1;
            Ok(0)
        }
        Err(e) => Err(DvbError::new(device, "read", e)),
    }
}

/// Wait up to `timeout` for data (poll POLLIN), reading as soon as any is
/// there; Ok(0) at the deadline.
fn read_timeout(
    fd: &OwnedFd,
    device: &str,
    stats: &mut DvrStats,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = read_once(fd, device, stats, buf)?;
        if n > 0 {
            return Ok(n);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(0);
        }
        let ms = u16::try_from((deadline - now).as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(DvbError::new(device, "poll", e)),
        }
    }
}

/// Counters of one dvr reader.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DvrStats {
    pub bytes: u64,
    pub reads: u64,
    /// EOVERFLOW returns: the kernel's dvr ring overflowed and dropped data.
    pub overflows: u64,
}

/// The dvr reader of an adapter.
#[derive(Debug)]
pub struct Dvr {
    fd: OwnedFd,
    device: String,
    pub stats: DvrStats,
}

/// The kernel's default dvr buffer (10 × 188 × 1024 bytes).
pub const DEFAULT_DVR_BUFFER: usize = 10 * 188 * 1024;

/// A dvr buffer holding `seconds` of a mux at `bits_per_second`, rounded up
/// to whole packets, never below the kernel default.
pub fn dvr_buffer_for(bits_per_second: u64, seconds: f64) -> usize {
    let bytes = (bits_per_second as f64 / 8.0 * seconds).ceil() as usize;
    let packets = bytes.div_ceil(188);
    (packets * 188).max(DEFAULT_DVR_BUFFER)
}

impl Dvr {
    /// Open `/dev/dvb/adapterN/dvrM` read-only, non-blocking.
    pub fn open(adapter: u32, dvr: u32) -> Result<Dvr> {
        let path = format!("/dev/dvb/adapter{adapter}/dvr{dvr}");
        Self::open_path(Path::new(&path), &format!("adapter{adapter}/dvr{dvr}"))
    }

    pub fn open_path(path: &Path, device: &str) -> Result<Dvr> {
        Ok(Dvr {
            fd: open_node(path, device, OFlag::O_RDONLY)?,
            device: device.to_string(),
            stats: DvrStats::default(),
        })
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// DMX_SET_BUFFER_SIZE on the dvr fd (where DMX_OUT_TS_TAP data waits).
    pub fn set_buffer_size(&self, bytes: usize) -> Result<()> {
        // SAFETY: value argument; the fd is a dvr.
        unsafe { capbox_sys::dmx_set_buffer_size(self.fd.as_raw_fd(), bytes as libc::c_ulong) }
            .map_err(|e| {
                DvbError::new(&self.device, "DMX_SET_BUFFER_SIZE", e)
                    .with_detail(format!("{bytes} bytes"))
            })?;
        Ok(())
    }

    /// One non-blocking read: Ok(0) when nothing is waiting (or after an
    /// overflow, which is counted).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        read_once(&self.fd, &self.device, &mut self.stats, buf)
    }

    /// Wait up to `timeout` for data (poll POLLIN), then read once.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        read_timeout(&self.fd, &self.device, &mut self.stats, buf, timeout)
    }
}

impl AsFd for Dvr {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Dvr {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dvr_buffer_sizing() {
        // 60 Mbit/s for 1 s: 7.5 MB, whole packets.
        let b = dvr_buffer_for(60_000_000, 1.0);
        assert_eq!(b % 188, 0);
        assert!(b >= 7_500_000 && b < 7_500_000 + 188);
        // Small muxes keep the kernel default.
        assert_eq!(dvr_buffer_for(1_000_000, 0.5), DEFAULT_DVR_BUFFER);
    }

    #[test]
    fn filter_pid_above_full_ts_is_refused_before_any_ioctl() {
        // /dev/null stands in for a demux: the PID check must fire first.
        let mut d = Demux::open_path(Path::new("/dev/null"), "test/demux0").unwrap();
        let e = d.set_ts_filter(0x2001).unwrap_err();
        assert_eq!(e.call, "DMX_SET_PES_FILTER");
        // On a non-DVB fd the ioctl fails with ENOTTY, named.
        let e = d.set_ts_filter(0x100).unwrap_err();
        assert!(e.to_string().contains("DMX_SET_PES_FILTER failed"), "{e}");
        assert!(e.to_string().contains("ENOTTY"), "{e}");
    }
}
