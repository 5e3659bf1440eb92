//! Is each elementary stream alive? Pure analysers fed by the demux, with
//! the clock passed in (like `dvb::health`): nothing here reads the time,
//! blocks, allocates per packet or panics on any input.
//!
//! - [`EsFlow`]: PES arriving, PTS advancing, bitrate, and PTS − PCR at
//!   arrival (range-checked) over a sliding window, with a verdict.
//! - [`FreezeDetector`] (`video`): frozen pictures from repeated coded
//!   pictures (MPEG-2, H.264, HEVC).
//! - [`SilenceDetector`] (`audio`): silence from Layer II scale factors,
//!   AC-3 exponents, AAC zero spectrum.
//! - [`channel_verdict`]: a channel's `ok` / `no video` / `no audio` /
//!   `frozen` / `silent` from the above.
//!
//! Times are milliseconds on any monotonic clock (`now_ms`); PTS are 90 kHz
//! and PCR 27 MHz, as on the wire.

pub mod audio;
mod bits;
pub mod verdict;
pub mod video;

pub use audio::{AudioState, SilenceConfig, SilenceDetector, SilenceStats};
pub use verdict::{channel_verdict, ChannelVerdict};
pub use video::{FreezeConfig, FreezeDetector, FreezeStats, PictureState};

use crate::ts::pes::pts_delta;

/// Buckets the window is cut into: memory is fixed, the window slides in
/// steps of `window_ms / BUCKETS`.
const BUCKETS: usize = 10;
/// A PTS step beyond this (forward) is a discontinuity, not an advance.
const PTS_JUMP: u64 = 10 * 90_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// The window the verdict and bitrate are computed over.
    pub window_ms: u64,
    /// PTS − PCR at a PES's arrival must be in this range (ms). ISO/IEC
    /// 13818-1 bounds a byte's stay in the decoder's buffer to one second
    /// (2.4.2.6), video reordering adds a few frames.
    pub pts_pcr_min_ms: i64,
    pub pts_pcr_max_ms: i64,
}

impl Default for FlowConfig {
    fn default() -> FlowConfig {
        FlowConfig {
            window_ms: 5_000,
            pts_pcr_min_ms: 0,
            pts_pcr_max_ms: 1_500,
        }
    }
}

/// The verdict on one elementary stream over the window, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowVerdict {
    /// Less than one window since the analyser started, nothing yet.
    Starting,
    /// No PES in the window.
    NoPes,
    /// PES arrive but their PTS did not advance (absent or stuck).
    PtsStalled,
    /// Some PES arrived with PTS − PCR outside the configured range.
    PtsPcrOutOfRange,
    Ok,
}

impl FlowVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            FlowVerdict::Starting => "starting",
            FlowVerdict::NoPes => "no pes",
            FlowVerdict::PtsStalled => "pts stalled",
            FlowVerdict::PtsPcrOutOfRange => "pts-pcr out of range",
            FlowVerdict::Ok => "ok",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Which slice of time (now_ms / bucket_ms) this bucket holds.
    slot: u64,
    pes: u32,
    bytes: u64,
    pts_advances: u32,
    pts_pcr_checked: u32,
    pts_pcr_bad: u32,
    pts_pcr_min: i64,
    pts_pcr_max: i64,
}

/// What [`EsFlow::report`] says about the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlowReport {
    pub verdict: FlowVerdict,
    pub pes: u32,
    /// Elementary-stream bits per second (PES payload) over the window.
    pub bitrate_bps: u64,
    pub pts_advances: u32,
    /// PTS − PCR range over the window (ms), when a PCR was known.
    pub pts_pcr_min_ms: Option<i64>,
    pub pts_pcr_max_ms: Option<i64>,
    pub pts_pcr_out_of_range: u32,
}

/// Lifetime counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowTotals {
    pub pes: u64,
    pub bytes: u64,
    /// PES with no PTS.
    pub no_pts: u64,
    /// PTS steps backwards beyond reordering or forwards beyond 10 s.
    pub pts_discontinuities: u64,
    pub pts_pcr_out_of_range: u64,
    /// PES that arrived with no PCR known yet (PTS − PCR not checked).
    pub no_pcr: u64,
}

/// Per-stream flow analyser.
pub struct EsFlow {
    cfg: FlowConfig,
    bucket_ms: u64,
    started_ms: u64,
    buckets: [Bucket; BUCKETS],
    /// Highest PTS seen (reordered video PTS go back a few frames).
    max_pts: Option<u64>,
    totals: FlowTotals,
}

impl EsFlow {
    pub fn new(cfg: FlowConfig, now_ms: u64) -> EsFlow {
        let window = cfg.window_ms.max(BUCKETS as u64);
        EsFlow {
            cfg: FlowConfig {
                window_ms: window,
                ..cfg
            },
            bucket_ms: window / BUCKETS as u64,
            started_ms: now_ms,
            buckets: [Bucket::default(); BUCKETS],
            max_pts: None,
            totals: FlowTotals::default(),
        }
    }

    pub fn totals(&self) -> &FlowTotals {
        &self.totals
    }

    fn bucket(&mut self, now_ms: u64) -> &mut Bucket {
        let slot = now_ms / self.bucket_ms;
        let b = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                pts_pcr_min: i64::MAX,
                pts_pcr_max: i64::MIN,
                ..Bucket::default()
            };
        }
        b
    }

    /// One PES arrived at `now_ms` with `payload_len` bytes of payload, its
    /// PTS (90 kHz) if it had one, and the PCR (27 MHz) of the stream's
    /// program extrapolated to this packet's arrival, if known.
    pub fn on_pes(&mut self, now_ms: u64, payload_len: usize, pts: Option<u64>, pcr: Option<u64>) {
        self.totals.pes += 1;
        self.totals.bytes = self.totals.bytes.saturating_add(payload_len as u64);
        let mut advanced = false;
        let mut pts_pcr = None;
        match pts {
            None => self.totals.no_pts += 1,
            Some(pts) => {
                let pts = pts & ((1 << 33) - 1);
                match self.max_pts {
                    None => self.max_pts = Some(pts),
                    Some(m) => {
                        let fwd = pts_delta(m, pts);
                        let back = pts_delta(pts, m);
                        if fwd != 0 && fwd <= PTS_JUMP {
                            self.max_pts = Some(pts);
                            advanced = true;
                        } else if fwd > PTS_JUMP && back > PTS_JUMP {
                            self.totals.pts_discontinuities += 1;
                            self.max_pts = Some(pts);
                        }
                    }
                }
                match pcr {
                    None => self.totals.no_pcr += 1,
                    Some(pcr) => {
                        let base = (pcr / 300) & ((1 << 33) - 1);
                        let d = pts_delta(base, pts) as i64;
                        // Signed on the 33-bit circle.
                        let d = if d >= 1 << 32 { d - (1 << 33) } else { d };
                        pts_pcr = Some(d / 90);
                    }
                }
            }
        }
        let (lo, hi) = (self.cfg.pts_pcr_min_ms, self.cfg.pts_pcr_max_ms);
        let bad = pts_pcr.is_some_and(|d| d < lo || d > hi);
        if bad {
            self.totals.pts_pcr_out_of_range += 1;
        }
        let b = self.bucket(now_ms);
        b.pes = b.pes.saturating_add(1);
        b.bytes = b.bytes.saturating_add(payload_len as u64);
        b.pts_advances = b.pts_advances.saturating_add(advanced as u32);
        if let Some(d) = pts_pcr {
            b.pts_pcr_checked = b.pts_pcr_checked.saturating_add(1);
            b.pts_pcr_bad = b.pts_pcr_bad.saturating_add(bad as u32);
            b.pts_pcr_min = b.pts_pcr_min.min(d);
            b.pts_pcr_max = b.pts_pcr_max.max(d);
        }
    }

    /// The window ending at `now_ms`.
    pub fn report(&self, now_ms: u64) -> FlowReport {
        let now_slot = now_ms / self.bucket_ms;
        let mut r = FlowReport {
            verdict: FlowVerdict::Ok,
            pes: 0,
            bitrate_bps: 0,
            pts_advances: 0,
            pts_pcr_min_ms: None,
            pts_pcr_max_ms: None,
            pts_pcr_out_of_range: 0,
        };
        let mut bytes = 0u64;
        for b in &self.buckets {
            // The current (partial) bucket and the BUCKETS-1 before it.
            if b.slot > now_slot || now_slot - b.slot >= BUCKETS as u64 || b.pes == 0 {
                continue;
            }
            r.pes = r.pes.saturating_add(b.pes);
            bytes = bytes.saturating_add(b.bytes);
            r.pts_advances = r.pts_advances.saturating_add(b.pts_advances);
            r.pts_pcr_out_of_range = r.pts_pcr_out_of_range.saturating_add(b.pts_pcr_bad);
            if b.pts_pcr_checked > 0 {
                r.pts_pcr_min_ms = Some(
                    r.pts_pcr_min_ms
                        .map_or(b.pts_pcr_min, |m| m.min(b.pts_pcr_min)),
                );
                r.pts_pcr_max_ms = Some(
                    r.pts_pcr_max_ms
                        .map_or(b.pts_pcr_max, |m| m.max(b.pts_pcr_max)),
                );
            }
        }
        // The window covers BUCKETS-1 whole buckets and part of the current.
        let span_ms = (BUCKETS as u64 - 1) * self.bucket_ms + now_ms % self.bucket_ms + 1;
        let span_ms = span_ms.min(now_ms.saturating_sub(self.started_ms) + 1);
        r.bitrate_bps = bytes.saturating_mul(8000) / span_ms.max(1);
        let young = now_ms.saturating_sub(self.started_ms) < self.cfg.window_ms;
        r.verdict = if r.pes == 0 {
            if young {
                FlowVerdict::Starting
            } else {
                FlowVerdict::NoPes
            }
        } else if r.pts_advances == 0 {
            if young && r.pes < 3 {
                FlowVerdict::Starting
            } else {
                FlowVerdict::PtsStalled
            }
        } else if r.pts_pcr_out_of_range > 0 {
            FlowVerdict::PtsPcrOutOfRange
        } else {
            FlowVerdict::Ok
        };
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCR_DELAY: u64 = 500 * 90; // PTS 500 ms ahead of the PCR

    /// 25 PES a second, `bytes` each, PTS from `pts0` stepping 3600.
    fn feed(f: &mut EsFlow, from_ms: u64, to_ms: u64, bytes: usize, stuck_pts: bool) {
        let mut t = from_ms;
        while t < to_ms {
            let pcr90 = t * 90;
            let pts = if stuck_pts { 1000 } else { pcr90 + PCR_DELAY };
            f.on_pes(t, bytes, Some(pts), Some(pcr90 * 300));
            t += 40;
        }
    }

    #[test]
    fn a_steady_stream_is_ok_with_its_bitrate_and_pts_pcr() {
        let mut f = EsFlow::new(FlowConfig::default(), 0);
        assert_eq!(f.report(0).verdict, FlowVerdict::Starting);
        feed(&mut f, 0, 20_000, 1000, false);
        let r = f.report(20_000);
        assert_eq!(r.verdict, FlowVerdict::Ok);
        // 25 × 1000 bytes a second = 200 kbit/s, within a bucket's slack.
        assert!((190_000..=210_000).contains(&r.bitrate_bps), "{r:?}");
        assert_eq!(r.pts_pcr_min_ms, Some(500));
        assert_eq!(r.pts_pcr_max_ms, Some(500));
    }

    #[test]
    fn stopped_pes_stuck_pts_and_drift_each_show() {
        let mut f = EsFlow::new(FlowConfig::default(), 0);
        feed(&mut f, 0, 10_000, 500, false);
        assert_eq!(f.report(10_000).verdict, FlowVerdict::Ok);
        // Nothing for a window: no PES.
        assert_eq!(f.report(15_600).verdict, FlowVerdict::NoPes);
        assert_eq!(f.report(15_600).bitrate_bps, 0);
        // PES again, PTS stuck.
        feed(&mut f, 16_000, 22_000, 500, true);
        assert_eq!(f.report(22_000).verdict, FlowVerdict::PtsStalled);
        // An encoder drifting: PTS − PCR grows 100 ms a second.
        let mut t = 22_000;
        let mut pts = 22_000 * 90 + PCR_DELAY;
        while t < 40_000 {
            pts += 3600 + 360; // 10 % fast
            f.on_pes(t, 500, Some(pts), Some(t * 90 * 300));
            t += 40;
        }
        let r = f.report(40_000);
        assert_eq!(r.verdict, FlowVerdict::PtsPcrOutOfRange, "{r:?}");
        assert!(r.pts_pcr_max_ms.unwrap() > 1_500);
        assert!(f.totals().pts_pcr_out_of_range > 0);
    }

    #[test]
    fn pts_wrap_and_reordering_are_not_faults() {
        let mut f = EsFlow::new(FlowConfig::default(), 0);
        let wrap = 1u64 << 33;
        let mut t = 0;
        let mut pts = wrap - 90_000;
        while t < 10_000 {
            // I P B B order: a B's PTS is below the P's.
            for off in [0i64, 3 * 3600, 3600, 2 * 3600] {
                let p = (pts as i64 + off) as u64 % wrap;
                let pcr = (p + wrap - PCR_DELAY) % wrap;
                f.on_pes(t, 100, Some(p), Some(pcr * 300));
                t += 40;
            }
            pts = (pts + 4 * 3600) % wrap;
        }
        let r = f.report(t);
        assert_eq!(r.verdict, FlowVerdict::Ok, "{r:?}");
        assert_eq!(f.totals().pts_discontinuities, 0);
    }
}
