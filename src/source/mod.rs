//! Where a mux's packets come from.
//!
//! A `Source` hands out whole, aligned 188-byte packets. Implementations:
//! `FileSource` (a `.ts` file paced in real time by its PCR) and
//! `DvbSource` (a tuned adapter). The mux runner (`runner`) reads one
//! source on its own thread and hands each channel its program through
//! the channel's `ChannelSink`, with a `SourceReport` of what it measured.
//!
//! `Resync` turns any byte stream into aligned packets: it locks on three
//! sync bytes 188 apart, and counts every byte it had to skip.

pub mod dvb;
pub mod file;
pub mod remote;
pub mod resets;
pub mod runner;

use crate::ca::descrambler::DescramblerStats;
use crate::ca::CaStatus;
use crate::remux::{DemuxStats, ProgramStats};
use std::time::{Duration, Instant};

pub use file::{FileSource, FileSourceConfig};

/// What one `read` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Packets were appended.
    Data,
    /// Packets were appended and they follow a break in the stream (file
    /// looped, sync regained): clocks and counters restart.
    Discontinuity,
    /// Nothing yet; call again.
    Idle,
}

/// Why a source cannot go on.
#[derive(Debug)]
pub enum SourceError {
    /// The file ended and the source does not loop.
    Eof,
    /// A whole pass over the input was mostly not transport packets.
    NoPackets {
        what: String,
        bytes: u64,
    },
    Io {
        what: String,
        err: std::io::Error,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Eof => write!(f, "end of input"),
            SourceError::NoPackets { what, bytes } => {
                write!(f, "{what}: no MPEG-TS packets found in {bytes} bytes (no sync byte 0x47 every 188 bytes): not a transport stream?")
            }
            SourceError::Io { what, err } => write!(f, "{what}: {err}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// Counters every source keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SourceStats {
    pub bytes: u64,
    pub packets: u64,
    /// Bytes skipped to regain packet sync.
    pub bytes_skipped: u64,
    pub sync_losses: u64,
    pub discontinuities: u64,
    /// Passes over a file (loops).
    pub loops: u64,
    /// A trailing partial packet at the end of a file.
    pub truncated_packets: u64,
}

pub trait Source: Send {
    /// What this source is, for logs and /status ("file samples/mux.ts").
    fn describe(&self) -> String;
    /// Wait at most `timeout` and append whole packets to `buf`.
    fn read(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<ReadOutcome, SourceError>;
    fn stats(&self) -> SourceStats;
    /// The PIDs the channels reading this source need (PMT, ES, PCR, ECM
    /// PIDs; any order). A source that can filter at the input (a DVB
    /// adapter's demux) passes only these plus the SI PIDs; others ignore
    /// it. Called again whenever the set may have changed (a PMT update, a
    /// channel added or removed); cheap when it did not.
    fn set_wanted_pids(&mut self, _pids: &[u16]) {}
    /// The PIDs this source passes now (a DVB adapter's per-PID hardware
    /// filters); None: the whole mux (TR 101 290 expects only these).
    fn passed_pids(&self) -> Option<Vec<u16>> {
        None
    }
    /// Tune the input again in place, keeping the rest open (a DVB
    /// adapter: same mux, demux filters and dvr kept): the first rung of
    /// the escalation ladder. None: this source cannot.
    fn retune(&mut self) -> Option<Result<(), SourceError>> {
        None
    }
    /// A remote source's own view: its state, why its last connection
    /// ended, its counters. None for the sources of this box.
    fn remote_status(&self) -> Option<remote::RemoteStatus> {
        None
    }
}

/// Where a channel's packets go: the narrow door between a mux runner (or
/// any thread that feeds a channel) and the channel, which owns its ring
/// and decides which of its sources is on air. `source` is the index of
/// the source among the channel's. Called on the feeding thread: every
/// method is short and never blocks on I/O.
pub trait ChannelSink: Send + Sync {
    /// The channel's name (logs, commands).
    fn name(&self) -> String;
    /// Packets of the channel's program from `source` (single-program TS
    /// after the remux and the descrambler). `video` is the program's
    /// video PID and codec, for keyframe detection.
    fn write(
        &self,
        source: usize,
        packets: &[u8],
        video: Option<(u16, crate::ts::pmt::VideoCodec)>,
        now: Instant,
    );
    /// The program's PAT and PMT from `source` changed: the packets a new
    /// client gets first.
    fn set_psi(&self, source: usize, pat_pmt_packets: Vec<u8>);
    /// Called on every turn of the feeding thread, data or not: a partly
    /// filled chunk goes out on its time bound.
    fn tick(&self, source: usize, now: Instant);
    /// The input of `source` broke (file looped, sync regained): clocks
    /// and keyframe detection restart.
    fn input_discontinuity(&self, source: usize);
    /// What the feeding thread measured of the program from `source`.
    fn report(&self, source: usize, report: SourceReport);
    /// `source` lets the channel go (removed, reloaded): flush.
    fn detach(&self, source: usize);
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    pub pid: u16,
    pub stream_type: u8,
    pub kind: &'static str,
    pub language: Option<String>,
}

/// What a feeding thread knows of one channel's program from one source,
/// in facts and counters (the channel turns them into a state and words).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceReport {
    /// What the source is ("file samples/mux.ts", "adapter sat1 …").
    pub source: String,
    /// The source is open and being read.
    pub open: bool,
    /// Why it is not, in words ("source: … end of file").
    pub error: Option<String>,
    pub source_errors: u64,
    /// program_number asked for.
    pub program: u16,
    /// The mux's programs (at most `LISTED_SERVICES + 1`) and how many.
    pub services: Vec<u16>,
    pub services_total: usize,
    pub pat_seen: bool,
    pub pmt_pid: Option<u16>,
    pub pmt_version: Option<u8>,
    pub psi_crc_errors: u64,
    pub streams: Vec<StreamStatus>,
    pub service_name: Option<String>,
    pub provider: Option<String>,
    pub program_stats: ProgramStats,
    pub mux_stats: DemuxStats,
    pub source_stats: SourceStats,
    /// ES PIDs of the PMT that carried nothing (after 2 s of the PMT).
    pub missing_pids: Vec<u16>,
    pub descrambler: Option<DescramblerStats>,
    pub ca: Option<CaStatus>,
    /// Why packets were left scrambled since the last report, in words.
    pub scrambled: Option<String>,
    /// A remote source's state, last error and counters.
    pub remote: Option<remote::RemoteStatus>,
}

impl SourceReport {
    /// A source that cannot be read, and why.
    pub fn failed(error: String, source_errors: u64) -> SourceReport {
        SourceReport {
            open: false,
            error: Some(error),
            source_errors,
            ..Default::default()
        }
    }
}

/// Packet alignment over an arbitrary byte stream.
#[derive(Debug, Default)]
pub struct Resync {
    /// Bytes carried over between calls (less than one packet, or unsynced).
    carry: Vec<u8>,
    synced: bool,
    pub stats: SourceStats,
}

impl Resync {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget partial data (e.g. on file loop); counts it as truncated.
    pub fn reset(&mut self) {
        if !self.carry.is_empty() {
            self.stats.truncated_packets += 1;
            self.stats.bytes_skipped += self.carry.len() as u64;
        }
        self.carry.clear();
        self.synced = false;
    }

    /// At the end of an input: hand out what is left if it is whole packets,
    /// count the rest as a truncated packet.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let carry = std::mem::take(&mut self.carry);
        let mut i = 0;
        while i + 188 <= carry.len() && carry[i] == 0x47 {
            out.extend_from_slice(&carry[i..i + 188]);
            self.stats.packets += 1;
            i += 188;
        }
        if i < carry.len() {
            self.stats.truncated_packets += 1;
            self.stats.bytes_skipped += (carry.len() - i) as u64;
        }
        self.synced = false;
    }

    /// Append the aligned packets found in `input` (plus carried bytes) to
    /// `out`. Bounded: the carry never exceeds 3 packets.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.stats.bytes += input.len() as u64;
        let owned;
        let data: &[u8] = if self.carry.is_empty() {
            input
        } else {
            self.carry.extend_from_slice(input);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let mut i = 0;
        let n = data.len();
        loop {
            if self.synced {
                // Fast path: consecutive packets.
                while i + 188 <= n && data[i] == 0x47 {
                    out.extend_from_slice(&data[i..i + 188]);
                    self.stats.packets += 1;
                    i += 188;
                }
                if i + 188 <= n {
                    self.synced = false;
                    self.stats.sync_losses += 1;
                } else {
                    break;
                }
            }
            // Hunt: a sync byte confirmed by the next two packets, or by as
            // many as the buffer holds at its end.
            let mut found = None;
            let mut j = i;
            while j < n {
                if data[j] == 0x47 {
                    let ok1 = j + 188 >= n || data[j + 188] == 0x47;
                    let ok2 = j + 376 >= n || data[j + 376] == 0x47;
                    if j + 376 < n && ok1 && ok2 {
                        found = Some(j);
                        break;
                    }
                    if j + 376 >= n {
                        // Not enough data to confirm: keep from here.
                        break;
                    }
                }
                j += 1;
            }
            self.stats.bytes_skipped += (j - i) as u64;
            i = j;
            match found {
                Some(_) => self.synced = true,
                None => break,
            }
        }
        let rest = &data[i..];
        // Keep at most 3 packets' worth to finish confirming sync.
        let keep = rest.len().min(3 * 188);
        self.stats.bytes_skipped += (rest.len() - keep) as u64;
        let rest = &rest[rest.len() - keep..];
        let mut carry = std::mem::take(&mut self.carry);
        carry.clear();
        carry.extend_from_slice(rest);
        self.carry = carry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkts(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            let mut p = [i as u8; 188];
            p[0] = 0x47;
            v.extend_from_slice(&p);
        }
        v
    }

    #[test]
    fn aligned_input_passes_through_in_any_split() {
        let data = pkts(20);
        for split in [1usize, 7, 188, 189, 1000] {
            let mut r = Resync::new();
            let mut out = Vec::new();
            for c in data.chunks(split) {
                r.push(c, &mut out);
            }
            // The last packet cannot be confirmed by the next two: it waits.
            assert!(out.len() >= 17 * 188, "split {split}: {}", out.len());
            assert_eq!(&out[..], &data[..out.len()]);
            assert_eq!(r.stats.bytes_skipped, 0, "split {split}");
        }
    }

    #[test]
    fn garbage_is_skipped_and_counted() {
        let mut data = vec![0x47, 1, 2, 3, 0x47, 9];
        data.extend_from_slice(&pkts(10));
        let mut r = Resync::new();
        let mut out = Vec::new();
        r.push(&data, &mut out);
        assert_eq!(out.len() % 188, 0);
        assert_eq!(&out[..188], &pkts(1)[..]);
        assert_eq!(r.stats.bytes_skipped, 6);
    }

    #[test]
    fn random_bytes_yield_nothing_and_stay_bounded() {
        let mut x = 0x1234_5678u32;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .collect();
        let mut r = Resync::new();
        let mut out = Vec::new();
        for c in data.chunks(4096) {
            r.push(c, &mut out);
            assert!(r.carry.len() <= 3 * 188);
        }
        assert!(
            out.len() < 188 * 4,
            "random data locked too often: {}",
            out.len()
        );
    }
}
