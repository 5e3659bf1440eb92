//! Frozen video from the bitstream: pictures whose coded data repeats.
//!
//! An encoder fed a frozen picture (a stuck frame grabber, a paused
//! playout, a still input) writes one of two things, both visible without
//! decoding:
//! - pictures with every macroblock skipped — x264 and mpeg2video write
//!   P/B pictures of a few bytes per macroblock row, hundreds to thousands
//!   of times smaller than the stream's intra pictures;
//! - intra pictures identical to the last one, when the quantiser has
//!   settled (bit-identical slice data; only the header's counters differ).
//!
//! So each coded picture gets a fingerprint: its size (slice bytes) and a
//! hash of its slice data (MPEG-2: every slice unit whole, its header is
//! byte-free of counters; H.264/HEVC: the second half, at most 256 bytes,
//! of each slice NAL unit, which with CABAC is byte-aligned data after the
//! header's frame_num and picture order count). A picture *repeats* when it
//! is skip-sized (size × `skip_ratio` ≤ the stream's recent largest picture)
//! or its fingerprint matches one of the last 64 non-skip pictures (a
//! frozen input's GOP repeats whole, GOP after GOP), or — inside a run of
//! repeats — its size is within 0.5 % of one of them (x264 re-encodes a
//! frozen input's IDR pictures at a slightly different quantiser: 7175 then
//! 7180 bytes in tests/es_health_ffmpeg.rs). The
//! stream is frozen when every picture for `frozen_after_ms` repeated.
//!
//! Assumes a PES starts at a picture (DVB and ffmpeg align video PES with
//! access units); a PES's bytes before its first picture start belong to
//! the picture in progress. Never panics; memory is fixed per stream.

use crate::ts::pmt::VideoCodec;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreezeConfig {
    /// How long every picture must repeat before the stream is frozen.
    pub frozen_after_ms: u64,
    /// A picture this many times smaller than the recent largest is a
    /// skip picture.
    pub skip_ratio: u32,
}

impl Default for FreezeConfig {
    fn default() -> FreezeConfig {
        FreezeConfig {
            frozen_after_ms: 10_000,
            skip_ratio: 128,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreezeStats {
    /// Coded pictures seen.
    pub pictures: u64,
    /// Of those, skip-sized.
    pub skip_pictures: u64,
    /// Of those, whose fingerprint matched a recent picture.
    pub identical_pictures: u64,
    /// Of those, within 0.5 % of a recent picture's size, in a run of
    /// repeats (an intra picture of a frozen input re-encoded at a slightly
    /// different quantiser).
    pub near_identical_pictures: u64,
    /// PES payload bytes before any picture start (not measured).
    pub orphan_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureState {
    /// No picture yet.
    Unknown,
    /// A picture changed within `frozen_after_ms`.
    Moving,
    /// Every picture since `since_ms` repeated, for `frozen_after_ms`.
    Frozen { since_ms: u64 },
}

/// The last picture judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureInfo {
    /// Coded slice bytes.
    pub size: u32,
    /// The recent largest picture it was compared with.
    pub ref_size: u32,
    pub skip: bool,
    pub identical: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    size: u32,
    hash: u64,
}

/// Recent non-skip fingerprints compared against: a frozen picture's GOP
/// repeats as a whole (the rate control's P pictures converge to the same
/// bytes GOP after GOP), so this covers the non-skip pictures of a long
/// GOP.
const RECENT: usize = 64;
/// H.264/HEVC: bytes hashed at the end of each slice NAL unit.
const NAL_TAIL: usize = 256;

pub struct FreezeDetector {
    codec: VideoCodec,
    cfg: FreezeConfig,
    stats: FreezeStats,
    /// The picture being read.
    open: bool,
    cur: Fingerprint,
    /// Largest picture lately, decaying by 1/1024 per picture.
    ref_size: u32,
    recent: [Fingerprint; RECENT],
    recent_next: usize,
    /// Arrival of the first picture of the current run of repeats.
    repeat_since: Option<u64>,
    last: Option<PictureInfo>,
}

impl FreezeDetector {
    pub fn new(codec: VideoCodec, cfg: FreezeConfig) -> FreezeDetector {
        FreezeDetector {
            codec,
            cfg,
            stats: FreezeStats::default(),
            open: false,
            cur: Fingerprint::default(),
            ref_size: 0,
            recent: [Fingerprint::default(); RECENT],
            recent_next: 0,
            repeat_since: None,
            last: None,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    pub fn stats(&self) -> &FreezeStats {
        &self.stats
    }

    pub fn last_picture(&self) -> Option<PictureInfo> {
        self.last
    }

    /// Feed the payload of one video PES packet that arrived at `now_ms`.
    pub fn push_pes(&mut self, now_ms: u64, payload: &[u8]) {
        let units = StartCodes::new(payload);
        // Bytes before the first start code continue the previous unit;
        // they are counted, not hashed (the unit's tail is unknown).
        let first = units.peek_first();
        // (A zero_byte before a 4-byte start code is not data.)
        if !self.open && payload[..first].iter().any(|&b| b != 0) {
            self.stats.orphan_bytes += first as u64;
        }
        for unit in units {
            self.unit(now_ms, unit);
        }
    }

    /// One start-code unit: `unit` begins after the 00 00 01 prefix.
    fn unit(&mut self, now_ms: u64, unit: &[u8]) {
        let Some(&code) = unit.first() else { return };
        match self.codec {
            VideoCodec::Mpeg2 => match code {
                0x00 => {
                    self.finish(now_ms);
                    self.open = true;
                }
                0x01..=0xAF if self.open => {
                    self.cur.size = self.cur.size.saturating_add(unit.len() as u32);
                    self.cur.hash = hash(self.cur.hash, unit);
                }
                _ => {}
            },
            VideoCodec::H264 => {
                let nal_type = code & 0x1F;
                match nal_type {
                    // Access unit delimiter.
                    9 => {
                        self.finish(now_ms);
                        self.open = true;
                    }
                    1 | 5 => {
                        // first_mb_in_slice == 0 (ue '1'): a new picture.
                        let first_mb_zero = unit.get(1).is_some_and(|b| b & 0x80 != 0);
                        if first_mb_zero && (!self.open || self.cur.size > 0) {
                            self.finish(now_ms);
                            self.open = true;
                        }
                        self.slice(unit);
                    }
                    _ => {}
                }
            }
            VideoCodec::Hevc => {
                let nal_type = (code >> 1) & 0x3F;
                match nal_type {
                    35 => {
                        self.finish(now_ms);
                        self.open = true;
                    }
                    0..=31 => {
                        let first_slice = unit.get(2).is_some_and(|b| b & 0x80 != 0);
                        if first_slice && (!self.open || self.cur.size > 0) {
                            self.finish(now_ms);
                            self.open = true;
                        }
                        self.slice(unit);
                    }
                    _ => {}
                }
            }
            VideoCodec::Other => {}
        }
    }

    fn slice(&mut self, unit: &[u8]) {
        if !self.open {
            return;
        }
        self.cur.size = self.cur.size.saturating_add(unit.len() as u32);
        let tail = (unit.len() / 2).min(NAL_TAIL);
        self.cur.hash = hash(self.cur.hash, &unit[unit.len() - tail..]);
    }

    /// Close the picture in progress, if any, and judge it.
    fn finish(&mut self, now_ms: u64) {
        if !self.open || self.cur.size == 0 {
            return;
        }
        let fp = std::mem::take(&mut self.cur);
        self.open = false;
        self.stats.pictures += 1;
        self.ref_size = self
            .ref_size
            .saturating_sub(self.ref_size / 1024)
            .max(fp.size);
        let skip = (fp.size as u64) * (self.cfg.skip_ratio as u64) <= self.ref_size as u64;
        let repeat = if skip {
            self.stats.skip_pictures += 1;
            true
        } else {
            let same = self
                .recent
                .iter()
                .any(|r| r.hash == fp.hash && r.size.abs_diff(fp.size) <= 16 && r.size > 0);
            let tol = (fp.size / 200).max(16);
            let near = !same
                && self.repeat_since.is_some()
                && self
                    .recent
                    .iter()
                    .any(|r| r.size > 0 && r.size.abs_diff(fp.size) <= tol);
            if same {
                self.stats.identical_pictures += 1;
            } else if near {
                self.stats.near_identical_pictures += 1;
            }
            self.recent[self.recent_next] = fp;
            self.recent_next = (self.recent_next + 1) % RECENT;
            same || near
        };
        self.last = Some(PictureInfo {
            size: fp.size,
            ref_size: self.ref_size,
            skip,
            identical: repeat && !skip,
        });
        if repeat {
            self.repeat_since.get_or_insert(now_ms);
        } else {
            self.repeat_since = None;
        }
    }

    /// The verdict at `now_ms` (a picture counts once the next one starts).
    pub fn state(&self, now_ms: u64) -> PictureState {
        if self.stats.pictures == 0 {
            return PictureState::Unknown;
        }
        match self.repeat_since {
            Some(since) if now_ms.saturating_sub(since) >= self.cfg.frozen_after_ms => {
                PictureState::Frozen { since_ms: since }
            }
            _ => PictureState::Moving,
        }
    }
}

/// FNV-1a, 64 bits: a stable hash without a dependency.
fn hash(mut h: u64, data: &[u8]) -> u64 {
    if h == 0 {
        h = 0xcbf2_9ce4_8422_2325;
    }
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The units of a byte string split at 00 00 01 start codes: each unit is
/// the bytes after a prefix up to the next prefix (trailing zero bytes of
/// the next prefix's zero_byte included; harmless for a fingerprint).
struct StartCodes<'a> {
    data: &'a [u8],
    pos: Option<usize>,
}

impl<'a> StartCodes<'a> {
    fn new(data: &'a [u8]) -> StartCodes<'a> {
        let pos = find_prefix(data, 0).map(|p| p + 3);
        StartCodes { data, pos }
    }

    /// Offset of the first start code (all of `data` if none).
    fn peek_first(&self) -> usize {
        self.pos.map_or(self.data.len(), |p| p - 3)
    }
}

impl<'a> Iterator for StartCodes<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.pos?;
        match find_prefix(self.data, start) {
            Some(next) => {
                self.pos = Some(next + 3);
                Some(&self.data[start..next])
            }
            None => {
                self.pos = None;
                Some(&self.data[start..])
            }
        }
    }
}

/// Offset of the next 00 00 01 at or after `from`.
fn find_prefix(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= data.len() {
        // Look for the 01, then check the two zeros before it.
        let rel = data[i + 2..].iter().position(|&b| b == 1)?;
        let one = i + 2 + rel;
        if data[one - 1] == 0 && data[one - 2] == 0 {
            return Some(one - 2);
        }
        i = one - 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_codes_split_units() {
        let d = [9, 0, 0, 1, 0xB3, 7, 0, 0, 0, 1, 0x00, 5, 0, 0, 1];
        let mut s = StartCodes::new(&d);
        assert_eq!(s.peek_first(), 1);
        assert_eq!(s.next(), Some(&[0xB3, 7, 0][..]));
        assert_eq!(s.next(), Some(&[0x00, 5][..]));
        assert_eq!(s.next(), Some(&[][..]));
        assert_eq!(s.next(), None);
        assert_eq!(find_prefix(&[0, 0], 0), None);
        assert_eq!(find_prefix(&[1, 0, 0, 1], 0), Some(1));
    }

    fn mpeg2_picture(slice: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 1, 0x00, 0x12, 0x34, 0, 0, 1, 0x01];
        v.extend_from_slice(slice);
        v
    }

    #[test]
    fn identical_mpeg2_pictures_freeze_and_a_change_thaws() {
        let cfg = FreezeConfig {
            frozen_after_ms: 1000,
            skip_ratio: 128,
        };
        let mut d = FreezeDetector::new(VideoCodec::Mpeg2, cfg);
        assert_eq!(d.state(0), PictureState::Unknown);
        let a: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8 | 0x10).collect();
        for t in 0..50u64 {
            d.push_pes(t * 40, &mpeg2_picture(&a));
        }
        assert!(matches!(d.state(50 * 40), PictureState::Frozen { .. }));
        // One bit changed, same size, inside a run of repeats: near-identical
        // (a re-encode of the same frozen picture), still frozen.
        let mut b = a.clone();
        b[100] ^= 0x40;
        d.push_pes(2000, &mpeg2_picture(&b));
        d.push_pes(2040, &mpeg2_picture(&a));
        assert!(matches!(d.state(2040), PictureState::Frozen { .. }));
        assert_eq!(d.stats().near_identical_pictures, 1);
        // A picture of another size: the picture moved.
        let c: Vec<u8> = (0..700u32).map(|i| (i * 5 + 1) as u8 | 0x10).collect();
        d.push_pes(2080, &mpeg2_picture(&c));
        d.push_pes(2120, &mpeg2_picture(&a));
        assert_eq!(d.state(2120), PictureState::Moving);
        // The last picture is judged when the next one starts.
        assert_eq!(d.stats().pictures, 53);
    }

    #[test]
    fn distinct_pictures_never_freeze() {
        let mut d = FreezeDetector::new(VideoCodec::Mpeg2, FreezeConfig::default());
        for t in 0..1000u64 {
            let s: Vec<u8> = (0..300u64).map(|i| ((i * t) % 251) as u8 | 0x10).collect();
            d.push_pes(t * 40, &mpeg2_picture(&s));
        }
        assert_eq!(d.state(40_000), PictureState::Moving);
    }
}
