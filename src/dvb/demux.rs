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
//! Which of the two an adapter uses is [`PidFilter`]'s choice: per-PID
//! filters while the channels on the mux need few PIDs (the tuner's
//! hardware or dvb-core's software demux drops the rest before it costs a
//! copy to user space), the full TS above a threshold (one filter instead
//! of dozens of fds).
//!
//! Promises: both fds are O_NONBLOCK (a blocking dvr read waits to fill the
//! whole buffer, FIELD-NOTES); the dvr fd is registered with its own mio
//! `Poll` (edge-triggered epoll), so `Dvr::read_timeout` reads until EAGAIN
//! (or the buffer is full) before it waits, and never waits longer than
//! asked; a dvr overflow (EOVERFLOW: the kernel dropped data because nobody
//! read in time) is counted, not returned as an error, because reading on
//! is the recovery; the caller learns of it through `DvrStats::overflows`.

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

/// PIDs every per-PID filter set passes, whatever the channels: PAT, CAT,
/// NIT, SDT/BAT, EIT and TDT/TOT (ISO/IEC 13818-1 table 2-3, EN 300 468
/// table 1). The remux re-emits PAT, SDT, EIT and TDT per channel and the
/// scanner follows the NIT, so these are never filtered away.
pub const BASE_PIDS: [u16; 6] = [0x0000, 0x0001, 0x0010, 0x0011, 0x0012, 0x0014];

/// Above this many PIDs `PidFilter::Auto` takes the full TS: each PID costs
/// a demux fd and a kernel filter slot (some bridges have 32 in hardware).
pub const DEFAULT_MAX_PIDS: usize = 32;

/// How an adapter picks its demux filters (`[[adapter]] pid_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFilter {
    /// Per-PID filters ([`BASE_PIDS`] plus what the channels ask for) while
    /// that is at most `max_pids` PIDs, the full TS above.
    Auto { max_pids: usize },
    /// Always the full TS (PID 0x2000).
    Full,
}

impl Default for PidFilter {
    fn default() -> Self {
        PidFilter::Auto {
            max_pids: DEFAULT_MAX_PIDS,
        }
    }
}

/// What a [`PidFilter`] decides for a wanted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterPlan {
    Full,
    /// Sorted, unique, each below 0x1fff, [`BASE_PIDS`] included.
    Pids(Vec<u16>),
}

impl PidFilter {
    /// The filters for channels that need `wanted` (any order, duplicates
    /// and out-of-range values tolerated: the null PID 0x1fff and anything
    /// above are never filtered for).
    pub fn plan(&self, wanted: &[u16]) -> FilterPlan {
        let max = match *self {
            PidFilter::Full => return FilterPlan::Full,
            PidFilter::Auto { max_pids } => max_pids,
        };
        let mut pids: Vec<u16> = BASE_PIDS
            .iter()
            .copied()
            .chain(wanted.iter().copied().filter(|&p| p < 0x1fff))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.len() > max {
            FilterPlan::Full
        } else {
            FilterPlan::Pids(pids)
        }
    }
}

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
/// there; Ok(0) at the deadline. For the demux fd; dvr uses its mio `Poll`.
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
pub struct Dvr {
    fd: OwnedFd,
    device: String,
    pub stats: DvrStats,
    /// The dvr fd's own epoll (edge-triggered): the adapter's thread waits
    /// here, not in poll(2) per read.
    poll: mio::Poll,
    events: mio::Events,
}

impl std::fmt::Debug for Dvr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dvr")
            .field("device", &self.device)
            .field("stats", &self.stats)
            .finish()
    }
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
        Self::from_fd(open_node(path, device, OFlag::O_RDONLY)?, device)
    }

    /// A reader over any non-blocking fd that speaks like dvr (a FIFO in
    /// the benchmark and tests); registers it with a fresh mio `Poll`.
    pub fn from_fd(fd: OwnedFd, device: &str) -> Result<Dvr> {
        let io_err = |call: &'static str, e: std::io::Error| {
            DvbError::new(
                device,
                call,
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        };
        let poll = mio::Poll::new().map_err(|e| io_err("epoll_create", e))?;
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                mio::Token(0),
                mio::Interest::READABLE,
            )
            .map_err(|e| io_err("epoll_ctl", e))?;
        Ok(Dvr {
            fd,
            device: device.to_string(),
            stats: DvrStats::default(),
            poll,
            events: mio::Events::with_capacity(4),
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

    /// Reads until EAGAIN or `buf` is full (an edge-triggered epoll only
    /// wakes again after EAGAIN was seen). An overflow is counted and read
    /// past: dvb-core flushes its ring with the EOVERFLOW return.
    pub fn read_available(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.stats.reads += 1;
                    self.stats.bytes += n as u64;
                    filled += n;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(Errno::EOVERFLOW) => self.stats.overflows += 1,
                Err(e) => {
                    if filled > 0 {
                        // Hand out what was read; the error comes back on
                        // the next call.
                        break;
                    }
                    return Err(DvbError::new(&self.device, "read", e));
                }
            }
        }
        Ok(filled)
    }

    /// Reads what is waiting; when nothing is, waits on the mio `Poll` for
    /// up to `timeout` and reads again. Ok(0) at the deadline.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.read_available(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(0);
            }
            match self.poll.poll(&mut self.events, Some(deadline - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(DvbError::new(
                        &self.device,
                        "epoll_wait",
                        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    ))
                }
            }
        }
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
        assert!((7_500_000..7_500_000 + 188).contains(&b));
        // Small muxes keep the kernel default.
        assert_eq!(dvr_buffer_for(1_000_000, 0.5), DEFAULT_DVR_BUFFER);
    }

    #[test]
    fn pid_filter_plan_adds_base_pids_and_switches_above_the_threshold() {
        let auto = PidFilter::Auto { max_pids: 10 };
        // Unsorted, duplicated, a base PID repeated, the null PID and an
        // impossible one: the plan is sorted, unique, base included.
        assert_eq!(
            auto.plan(&[0x111, 0x101, 0x111, 0x0011, 0x1fff, 0x2000, 0x200]),
            FilterPlan::Pids(vec![0, 1, 0x10, 0x11, 0x12, 0x14, 0x101, 0x111, 0x200])
        );
        // Nothing wanted yet: the SI PIDs alone.
        assert_eq!(auto.plan(&[]), FilterPlan::Pids(BASE_PIDS.to_vec()));
        // 6 base + 4 = 10 fits, 6 + 5 does not.
        assert!(
            matches!(auto.plan(&[0x100, 0x101, 0x102, 0x103]), FilterPlan::Pids(p) if p.len() == 10)
        );
        assert_eq!(
            auto.plan(&[0x100, 0x101, 0x102, 0x103, 0x104]),
            FilterPlan::Full
        );
        assert_eq!(PidFilter::Full.plan(&[0x100]), FilterPlan::Full);
        assert_eq!(
            PidFilter::default(),
            PidFilter::Auto {
                max_pids: DEFAULT_MAX_PIDS
            }
        );
    }

    fn pipe_dvr() -> (Dvr, std::fs::File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .unwrap();
        (
            Dvr::from_fd(r, "test/dvr0").unwrap(),
            std::fs::File::from(w),
        )
    }

    #[test]
    fn dvr_reads_through_mio_until_eagain() {
        use std::io::Write;
        let (mut dvr, mut w) = pipe_dvr();
        let mut buf = vec![0u8; 10 * 188];
        // Nothing written: Ok(0) at the deadline, not an error.
        assert_eq!(
            dvr.read_timeout(&mut buf, Duration::from_millis(5))
                .unwrap(),
            0
        );
        // Three writes before the read: one call drains them all (an
        // edge-triggered epoll would not wake for what is left).
        for i in 0..3u8 {
            w.write_all(&[i; 188]).unwrap();
        }
        let n = dvr.read_timeout(&mut buf, Duration::from_secs(5)).unwrap();
        assert_eq!(n, 3 * 188);
        assert_eq!(&buf[376..564], &[2u8; 188][..]);
        assert_eq!(dvr.stats.bytes, 564);
        // More than the buffer holds: it fills, the rest waits for the next
        // call (read before any wait, so nothing is stranded).
        w.write_all(&vec![7u8; 12 * 188]).unwrap();
        assert_eq!(
            dvr.read_timeout(&mut buf, Duration::from_secs(5)).unwrap(),
            10 * 188
        );
        assert_eq!(
            dvr.read_timeout(&mut buf, Duration::from_secs(5)).unwrap(),
            2 * 188
        );
        // A writer on another thread wakes the wait.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.write_all(&[9u8; 188]).unwrap();
            w
        });
        let n = dvr.read_timeout(&mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(n, 188);
        drop(t.join().unwrap());
        // Writer gone: end of file reads as nothing, never a spin of errors.
        assert_eq!(dvr.read_available(&mut buf).unwrap(), 0);
        assert_eq!(dvr.stats.overflows, 0);
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
