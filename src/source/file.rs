//! A `.ts` file played as if it were live: paced in real time by its PCR.
//!
//! The pacing clock follows the first PID that carries a PCR. A packet is
//! released when the wall clock reaches the time of the last PCR before it.
//! A PCR that jumps (discontinuity_indicator, a step back, or more than
//! `max_pcr_gap` forward, e.g. the 2^33 wrap handled as a forward step) and
//! the file looping to its start re-anchor the clock where it was, so playback
//! continues without a burst or a pause. A file without any PCR is paced at
//! `fallback_bitrate`.

use super::{ReadOutcome, Resync, Source, SourceError, SourceStats};
use crate::ts::packet::{pcr_delta, Packet, PACKET_SIZE, PCR_HZ};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    /// Start again at the end of the file (the default) or stop.
    pub looping: bool,
    /// Pace by PCR (true) or read as fast as possible (benchmarks, tests).
    pub realtime: bool,
    /// Pacing rate for a file with no PCR, bits per second.
    pub fallback_bitrate: u64,
}

impl FileSourceConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceConfig {
            path: path.into(),
            looping: true,
            realtime: true,
            fallback_bitrate: 4_000_000,
        }
    }
}

/// A PCR step forward larger than this is a discontinuity, not time passing.
const MAX_PCR_GAP: u64 = PCR_HZ; // 1 s
/// Read size: 256 packets (48 KiB).
const BLOCK: usize = 256 * PACKET_SIZE;
/// Packets read without a PCR before pacing falls back to the bitrate.
const NO_PCR_PACKETS: u64 = 2000;

pub struct FileSource {
    cfg: FileSourceConfig,
    file: Option<File>,
    resync: Resync,
    /// Aligned packets read but not yet released.
    pending: Vec<u8>,
    /// Offset in `pending` of the first unreleased packet.
    pending_off: usize,
    clock: Clock,
    raw: Vec<u8>,
    packets_this_pass: u64,
    bytes_this_pass: u64,
    discontinuity: bool,
    /// Offset in `pending` where the next pass of a looped file begins.
    loop_at: Option<usize>,
    stats: SourceStats,
}

/// Maps PCR values of the reference PID to wall-clock instants.
#[derive(Debug)]
struct Clock {
    ref_pid: Option<u16>,
    anchor: Option<(Instant, u64)>,
    last_pcr: Option<u64>,
    /// Wall-clock due time of the latest PCR seen.
    last_due: Option<Instant>,
    packets_since_pcr: u64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            ref_pid: None,
            anchor: None,
            last_pcr: None,
            last_due: None,
            packets_since_pcr: 0,
        }
    }

    /// Re-anchor the clock at the next PCR, continuing from where it was.
    fn break_here(&mut self) {
        self.anchor = None;
        self.last_pcr = None;
    }

    /// Due time for a packet, given its PCR if it has one on the ref PID.
    fn due(
        &mut self,
        pid: u16,
        pcr: Option<u64>,
        discontinuity: bool,
        fallback_bitrate: u64,
    ) -> Option<Instant> {
        if self.ref_pid.is_none() && pcr.is_some() {
            self.ref_pid = Some(pid);
        }
        let pcr = match (self.ref_pid, pcr) {
            (Some(r), Some(p)) if r == pid => p,
            _ => {
                self.packets_since_pcr += 1;
                if self.ref_pid.is_none() && self.packets_since_pcr > NO_PCR_PACKETS {
                    // No PCR at all: pace by bytes.
                    let step = Duration::from_nanos(
                        (PACKET_SIZE as u64 * 8 * 1_000_000_000) / fallback_bitrate.max(1),
                    );
                    let t = self.last_due.map(|d| d + step).unwrap_or_else(Instant::now);
                    self.last_due = Some(t);
                    return Some(t);
                }
                return None;
            }
        };
        self.packets_since_pcr = 0;
        let jump = match self.last_pcr {
            None => true,
            Some(last) => {
                let d = pcr_delta(last, pcr);
                discontinuity || d > MAX_PCR_GAP
            }
        };
        if jump || self.anchor.is_none() {
            // Continue from the last due time (plus one typical PCR interval)
            // so a loop or a jump neither bursts nor stalls.
            let start = match self.last_due {
                Some(d) => d + Duration::from_millis(20),
                None => Instant::now(),
            };
            self.anchor = Some((start, pcr));
        }
        self.last_pcr = Some(pcr);
        let (t0, p0) = self.anchor?;
        let ticks = pcr_delta(p0, pcr);
        let due = t0 + Duration::from_nanos(ticks * 1000 / 27);
        self.last_due = Some(due);
        Some(due)
    }
}

impl FileSource {
    pub fn open(cfg: FileSourceConfig) -> Result<FileSource, SourceError> {
        let file = File::open(&cfg.path).map_err(|err| SourceError::Io {
            what: format!("open {}", cfg.path.display()),
            err,
        })?;
        Ok(FileSource {
            cfg,
            file: Some(file),
            resync: Resync::new(),
            pending: Vec::with_capacity(2 * BLOCK),
            pending_off: 0,
            clock: Clock::new(),
            raw: vec![0; BLOCK],
            packets_this_pass: 0,
            bytes_this_pass: 0,
            discontinuity: false,
            loop_at: None,
            stats: Default::default(),
        })
    }

    fn what(&self) -> String {
        self.cfg.path.display().to_string()
    }

    /// Read one block into `pending`. Ok(false) at the end of a non-looping
    /// file.
    fn fill(&mut self) -> Result<bool, SourceError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        let n = file.read(&mut self.raw).map_err(|err| SourceError::Io {
            what: format!("read {}", self.cfg.path.display()),
            err,
        })?;
        if self.pending_off > 0 {
            self.pending.drain(..self.pending_off);
            if let Some(l) = self.loop_at.as_mut() {
                *l -= self.pending_off;
            }
            self.pending_off = 0;
        }
        if n == 0 {
            let before = self.pending.len();
            self.resync.finish(&mut self.pending);
            self.packets_this_pass += ((self.pending.len() - before) / PACKET_SIZE) as u64;
            // A pass that is mostly not TS (random bytes can fake a sync
            // now and then) is refused rather than looped forever.
            if self.packets_this_pass * (PACKET_SIZE as u64) < self.bytes_this_pass / 2 {
                return Err(SourceError::NoPackets {
                    what: self.what(),
                    bytes: self.bytes_this_pass,
                });
            }
            if !self.cfg.looping {
                self.file = None;
                return Ok(!self.pending.is_empty());
            }
            file.seek(SeekFrom::Start(0))
                .map_err(|err| SourceError::Io {
                    what: format!("seek {}", self.cfg.path.display()),
                    err,
                })?;
            self.packets_this_pass = 0;
            self.bytes_this_pass = 0;
            self.loop_at = Some(self.pending.len());
            return Ok(true);
        }
        self.bytes_this_pass += n as u64;
        let before = self.pending.len();
        self.resync.push(&self.raw[..n], &mut self.pending);
        self.packets_this_pass += ((self.pending.len() - before) / PACKET_SIZE) as u64;
        Ok(true)
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.cfg.path.display())
    }

    fn read(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<ReadOutcome, SourceError> {
        let deadline = Instant::now() + timeout;
        let start_len = buf.len();
        loop {
            // Release pending packets whose time has come.
            while self.pending_off + PACKET_SIZE <= self.pending.len() {
                if self.loop_at == Some(self.pending_off) {
                    // The next packet starts a new pass: hand out what came
                    // before it on its own, then flag the break.
                    if buf.len() > start_len {
                        return Ok(self.outcome());
                    }
                    self.loop_at = None;
                    self.stats.loops += 1;
                    self.discontinuity = true;
                    self.clock.break_here();
                }
                let raw = &self.pending[self.pending_off..self.pending_off + PACKET_SIZE];
                if self.cfg.realtime {
                    if let Ok(p) = Packet::new_checked(raw) {
                        if let Some(due) = self.clock.due(
                            p.pid(),
                            p.pcr(),
                            p.discontinuity(),
                            self.cfg.fallback_bitrate,
                        ) {
                            let now = Instant::now();
                            if due > now {
                                // Not yet: undo the clock's view of this packet
                                // by keeping it pending and waiting.
                                if buf.len() > start_len {
                                    return Ok(self.outcome());
                                }
                                let wait = due.min(deadline).saturating_duration_since(now);
                                std::thread::sleep(wait);
                                if Instant::now() < due {
                                    // Timed out before it was due. The next
                                    // call times the same packet again and
                                    // gets the same due time: the anchor is
                                    // unchanged and a PCR equal to the last
                                    // one is no jump.
                                    return Ok(ReadOutcome::Idle);
                                }
                            }
                        }
                    }
                }
                buf.extend_from_slice(raw);
                self.pending_off += PACKET_SIZE;
                self.stats.packets += 1;
                self.stats.bytes += PACKET_SIZE as u64;
                if !self.cfg.realtime && buf.len() - start_len >= BLOCK {
                    return Ok(self.outcome());
                }
            }
            if buf.len() > start_len && (Instant::now() >= deadline || !self.cfg.realtime) {
                return Ok(self.outcome());
            }
            if !self.fill()? {
                if buf.len() > start_len {
                    return Ok(self.outcome());
                }
                return Err(SourceError::Eof);
            }
        }
    }

    fn stats(&self) -> SourceStats {
        let r = self.resync.stats;
        SourceStats {
            bytes_skipped: r.bytes_skipped,
            sync_losses: r.sync_losses,
            truncated_packets: r.truncated_packets,
            ..self.stats
        }
    }
}

impl FileSource {
    fn outcome(&mut self) -> ReadOutcome {
        if std::mem::take(&mut self.discontinuity) {
            self.stats.discontinuities += 1;
            ReadOutcome::Discontinuity
        } else {
            ReadOutcome::Data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::{encode_pcr, write_header};

    fn write_ts(path: &std::path::Path, seconds: u64, pcr0: u64) {
        // One PCR packet every 40 ms plus 9 payload packets.
        let mut v = Vec::new();
        let mut cc = 0u8;
        for i in 0..(seconds * 25) {
            let mut p = [0xFFu8; 188];
            write_header(&mut p, 0x100, false, cc);
            p[3] = 0x30 | cc;
            p[4] = 7;
            p[5] = 0x10;
            let mut b = [0u8; 6];
            encode_pcr(
                (pcr0 + i * PCR_HZ / 25) % crate::ts::packet::PCR_WRAP,
                &mut b,
            );
            p[6..12].copy_from_slice(&b);
            v.extend_from_slice(&p);
            cc = (cc + 1) & 15;
            for _ in 0..9 {
                let mut p = [0u8; 188];
                write_header(&mut p, 0x100, false, cc);
                cc = (cc + 1) & 15;
                v.extend_from_slice(&p);
            }
        }
        std::fs::write(path, v).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("capbox-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn paced_by_pcr_across_wrap_and_loop() {
        let path = tmp("wrap.ts");
        // Starts 0.2 s before the 2^33 wrap; file of 0.4 s, played twice.
        write_ts(&path, 1, crate::ts::packet::PCR_WRAP - PCR_HZ / 5);
        let mut cfg = FileSourceConfig::new(&path);
        cfg.looping = true;
        let mut src = FileSource::open(cfg).unwrap();
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let mut disc = 0;
        for _ in 0..10_000 {
            if buf.len() >= 2 * 250 * 188 {
                break;
            }
            if let ReadOutcome::Discontinuity =
                src.read(&mut buf, Duration::from_millis(50)).unwrap()
            {
                disc += 1;
            }
        }
        let el = t0.elapsed();
        // Two passes of 1 s: at least ~1.9 s of real time (lower bound only:
        // never assert an upper bound on a shared machine).
        assert!(el >= Duration::from_millis(1900), "{el:?}: burst");
        assert_eq!(disc, 1);
        assert_eq!(src.stats().loops, 1);
    }

    #[test]
    fn unpaced_reads_fast_and_random_file_fails_clearly() {
        let path = tmp("rand.ts");
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut cfg = FileSourceConfig::new(&path);
        cfg.realtime = false;
        let mut src = FileSource::open(cfg).unwrap();
        let mut buf = Vec::new();
        let mut err = None;
        for _ in 0..10_000 {
            if let Err(e) = src.read(&mut buf, Duration::from_millis(10)) {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("random file must be refused");
        assert!(matches!(err, SourceError::NoPackets { .. }), "{err}");
        assert!(err.to_string().contains("no MPEG-TS packets"));
    }

    #[test]
    fn truncated_file_counts_partial_packet() {
        let path = tmp("trunc.ts");
        write_ts(&path, 1, 0);
        let mut d = std::fs::read(&path).unwrap();
        d.truncate(d.len() - 100);
        std::fs::write(&path, &d).unwrap();
        let mut cfg = FileSourceConfig::new(&path);
        cfg.realtime = false;
        cfg.looping = false;
        let mut src = FileSource::open(cfg).unwrap();
        let mut buf = Vec::new();
        while src.read(&mut buf, Duration::from_millis(10)).is_ok() {}
        assert_eq!(buf.len(), 249 * 188);
        assert_eq!(src.stats().truncated_packets, 1);
    }
}
