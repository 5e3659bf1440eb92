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
//! So each coded picture — each video PES: DVB and ffmpeg put one access
//! unit in each — gets a fingerprint: its size and a hash of samples of its
//! bytes (its last 256 bytes, the end of the last slice's data; the head,
//! with the picture header's counters, is left out; a sample at the middle
//! was dropped so the channel monitor need not reassemble pictures). Sampling keeps the cost constant per
//! picture: a first version hashed every slice of MPEG-2 pictures and ran
//! at 568 MB/s of ES per core, too slow next to a capture path of
//! 1.8–4 GB/s (BENCHMARKS.md). No start code is searched, so the codec
//! matters only to ignore streams of no known video codec.
//!
//! A picture *repeats* when it is skip-sized (size × `skip_ratio` ≤ the
//! stream's recent largest picture), or its fingerprint matches one of the
//! last 64 non-skip pictures (a frozen input's GOP repeats whole, GOP after
//! GOP: mpeg2video's I and P pictures do), or — inside a run of repeats —
//! its size is within 0.5 % of one of them (x264 re-encodes a frozen
//! input's IDR pictures at a slightly different quantiser: 7175 then 7180
//! bytes in tests/es_health_ffmpeg.rs). The stream is frozen when every
//! picture for `frozen_after_ms` repeated.
//!
//! What it cannot tell: a live but perfectly still scene (a test card from
//! a camera with no noise) codes like a frozen one, and is called frozen —
//! it is, to a viewer. Never panics; memory is fixed per stream (64
//! fingerprints).

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
/// Bytes of a picture sampled for its hash: 2 × this at its end.
const WINDOW: usize = 128;

pub struct FreezeDetector {
    codec: VideoCodec,
    cfg: FreezeConfig,
    stats: FreezeStats,
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

    /// Feed the payload of one video PES packet (one coded picture: DVB
    /// and ffmpeg put one access unit in each video PES) that arrived at
    /// `now_ms`. The picture is judged at once.
    pub fn push_pes(&mut self, now_ms: u64, payload: &[u8]) {
        let len = payload.len();
        self.push_picture(now_ms, len, &payload[len - len.min(TAIL_BYTES)..]);
    }

    /// The same as `push_pes` for a caller that did not keep the whole
    /// picture: its size in bytes and its last bytes (at least
    /// `min(size, TAIL_BYTES)` of them, fewer only if the picture is
    /// shorter). The channel monitor keeps the last two TS payloads of each
    /// video PES instead of reassembling it.
    pub fn push_picture(&mut self, now_ms: u64, size: usize, end: &[u8]) {
        if self.codec == VideoCodec::Other || size == 0 {
            return;
        }
        let fp = fingerprint(size, end);
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

    /// The verdict at `now_ms`.
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

/// Bytes at the end of a picture its fingerprint reads.
pub const TAIL_BYTES: usize = 2 * WINDOW;

/// Size and a hash of a picture's tail (the last slice's data, identical
/// in a repeated picture; half the picture when it is small). The head is
/// left out: it holds the picture header's counters (temporal_reference,
/// frame_num, picture order count, timecodes) that change in a repeat.
/// The cost per picture is constant: the capture path does not read the
/// whole of every picture, nor keep it (the channel monitor keeps only the
/// last two TS payloads of each picture). `end`: the picture's last bytes.
fn fingerprint(size: usize, end: &[u8]) -> Fingerprint {
    let tail = (size / 2).min(TAIL_BYTES).min(end.len());
    Fingerprint {
        size: size.min(u32::MAX as usize) as u32,
        hash: hash(&end[end.len() - tail..]),
    }
}

/// A stable 64-bit hash without a dependency: multiply-rotate over 8-byte
/// words, the last bytes one by one, the length mixed in. Each step is a
/// bijection of the state for a given word, so two tails that differ in
/// one word never collide. It runs on every picture of every channel:
/// a multiply per 8 bytes (FNV-1a, before, chained one per byte: ≈ 1 %
/// of the capture path with 8 channels).
fn hash(data: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0xcbf2_9ce4_8422_2325 ^ data.len() as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(K).rotate_left(29);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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
        b[490] ^= 0x40;
        d.push_pes(2000, &mpeg2_picture(&b));
        d.push_pes(2040, &mpeg2_picture(&a));
        assert!(matches!(d.state(2040), PictureState::Frozen { .. }));
        assert_eq!(d.stats().near_identical_pictures, 1);
        // A picture of another size: the picture moved.
        let c: Vec<u8> = (0..700u32).map(|i| (i * 5 + 1) as u8 | 0x10).collect();
        d.push_pes(2080, &mpeg2_picture(&c));
        d.push_pes(2120, &mpeg2_picture(&a));
        assert_eq!(d.state(2120), PictureState::Moving);
        assert_eq!(d.stats().pictures, 54);
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
