//! Audio silence from the bitstream, without a decoder.
//!
//! Each frame's loudest level is read from the fields an encoder writes to
//! scale its spectrum: MPEG-1/2 Layer II scale factors (ISO/IEC 11172-3
//! 2.4.1.6; a scale factor index i scales by 2^(1 - i/3), about 6 − 2·i dB),
//! AC-3 and E-AC-3 exponents of the first audio block (ATSC A/52 5.4.3 and
//! Annex E; a coefficient with exponent e is below 2^-e, about −6·e dB).
//! AAC-LC — in ADTS, or in LATM/LOAS (ISO/IEC 14496-3 1.7: StreamMuxConfig
//! audioMuxVersion 0 or 1, kept for the frames that reuse it), and the
//! AAC-LC core of HE-AAC v1/v2 however signalled — is read for digital
//! silence only: the section data of the first channel of the first
//! element says whether any band carries spectrum (a frame of ZERO_HCB
//! sections is −∞, any other 0 dBFS). Its global_gain turned out
//! to be no level (ffmpeg writes a higher one for a −50 dBFS tone than for
//! −6 dBFS); a true AAC level needs the Huffman-coded scale factors. These
//! are the fields a decoder reads first, so the cost is a header parse per
//! frame.
//!
//! Promises: never panics on any input (every read is checked), memory is
//! one bounded reassembly buffer per stream ([`MAX_BUFFER`]), and every
//! byte or frame it cannot use is counted in [`SilenceStats`].
//!
//! What it cannot see: AAC measures one channel of the first element (a
//! channel silent on the right only is not flagged) and not HE-AAC's SBR
//! part; AC-3 and E-AC-3 measure the first block of each frame. Counted
//! `unsupported`, never measured: LATM with several programs or layers, a
//! frameLengthType other than 0, a program_config_element, a core other
//! than AAC-LC, and frames before the first StreamMuxConfig; E-AC-3
//! dependent substreams (the extra channels of 7.1), substreams of other
//! programs, spectral extension, enhanced coupling and AHT in use (no
//! encoder at hand writes them to test on).

use super::bits::BitReader;
use crate::ts::pmt::AudioCodec;

/// The reassembly buffer's bound: above the largest frame of every codec
/// read here (AAC ADTS frame_length and LOAS audioMuxLengthBytes are 13
/// bits, E-AC-3 frmsiz 11 bits of 16-bit words).
pub const MAX_BUFFER: usize = 16 * 1024;

/// When a stream counts as silent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceConfig {
    /// A frame whose loudest level is below this is silent (dBFS).
    pub threshold_dbfs: f32,
    /// How long every frame must be silent before the stream is flagged.
    pub silence_after_ms: u64,
}

impl Default for SilenceConfig {
    fn default() -> SilenceConfig {
        SilenceConfig {
            threshold_dbfs: -70.0,
            silence_after_ms: 30_000,
        }
    }
}

/// What the detector saw; every byte and frame it could not use is here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilenceStats {
    /// Frames whose level was read.
    pub frames: u64,
    /// Of those, frames below the threshold.
    pub silent_frames: u64,
    /// Frames with a valid header whose body could not be read (truncated,
    /// a value the standard forbids).
    pub bad_frames: u64,
    /// Frames of a kind this reader does not measure (free-format Layer
    /// II, an AAC element it cannot skip, the LATM and E-AC-3 kinds the
    /// module docs list).
    pub unsupported_frames: u64,
    /// Bytes skipped looking for a frame header.
    pub resync_bytes: u64,
    /// Bytes dropped because the reassembly buffer would pass its bound.
    pub overflow_bytes: u64,
}

/// The verdict on a stream's audio at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AudioState {
    /// No frame measured yet.
    Unknown,
    /// Sound within `silence_after_ms`, or silent for less than that.
    Sound,
    /// Every frame since `since_ms` was below the threshold, for at least
    /// `silence_after_ms`.
    Silent { since_ms: u64 },
}

/// Why one frame could not be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes do not start with a header of this codec.
    NoSync,
    /// The frame ends before the fields that carry its level.
    Truncated,
    /// A field has a value the standard forbids.
    Invalid,
    /// A frame this reader does not measure.
    Unsupported,
}

/// Per-stream silence detector: feed it PES payloads as they arrive.
pub struct SilenceDetector {
    codec: AudioCodec,
    cfg: SilenceConfig,
    buf: Vec<u8>,
    stats: SilenceStats,
    last_level: Option<f32>,
    /// Arrival time of the first frame of the current silent run.
    silent_since: Option<u64>,
    seen_frame: bool,
    /// LATM: the last StreamMuxConfig read (frames may reuse it).
    latm: LatmMux,
}

impl SilenceDetector {
    pub fn new(codec: AudioCodec, cfg: SilenceConfig) -> SilenceDetector {
        SilenceDetector {
            codec,
            cfg,
            buf: Vec::new(),
            stats: SilenceStats::default(),
            last_level: None,
            silent_since: None,
            seen_frame: false,
            latm: LatmMux::default(),
        }
    }

    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    pub fn stats(&self) -> &SilenceStats {
        &self.stats
    }

    /// The level of the last frame measured, in dBFS (−∞ for digital
    /// silence).
    pub fn last_level_dbfs(&self) -> Option<f32> {
        self.last_level
    }

    /// Bytes held for a frame not yet whole (≤ [`MAX_BUFFER`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// A discontinuity: drop a partial frame.
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Feed the payload of one PES packet that arrived at `now_ms`.
    pub fn push_pes(&mut self, now_ms: u64, payload: &[u8]) {
        if self.buf.is_empty() {
            // The usual case (a PES holds whole frames): read in place,
            // keep only a partial frame at the end.
            let used = self.parse(now_ms, payload);
            self.keep(&payload[used..]);
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() + payload.len() > MAX_BUFFER {
            // A frame that does not fit is lost either way.
            self.stats.overflow_bytes += buf.len() as u64;
            buf.clear();
            self.buf = buf;
            self.keep(payload);
            buf = std::mem::take(&mut self.buf);
        } else {
            buf.extend_from_slice(payload);
        }
        let used = self.parse(now_ms, &buf);
        buf.drain(..used);
        self.buf = buf;
    }

    /// Hold `rest` (a frame not yet whole), the newest bytes within the bound.
    fn keep(&mut self, rest: &[u8]) {
        let cut = rest.len().saturating_sub(MAX_BUFFER);
        self.stats.overflow_bytes += cut as u64;
        self.buf.extend_from_slice(&rest[cut..]);
    }

    /// Measure every whole frame of `data`; the bytes used.
    fn parse(&mut self, now_ms: u64, data: &[u8]) -> usize {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            match frame_length(self.codec, rest) {
                Framing::NotSync => {
                    self.stats.resync_bytes += 1;
                    i += 1;
                }
                Framing::NeedMore => break,
                Framing::Len(n) => {
                    if rest.len() < n {
                        break;
                    }
                    let frame = &rest[..n];
                    let level = match self.codec {
                        AudioCodec::AacLatm => latm_level(&mut self.latm, frame),
                        c => frame_level(c, frame),
                    };
                    i += n;
                    match level {
                        Ok(db) => {
                            self.stats.frames += 1;
                            self.seen_frame = true;
                            self.last_level = Some(db);
                            if db < self.cfg.threshold_dbfs {
                                self.stats.silent_frames += 1;
                                self.silent_since.get_or_insert(now_ms);
                            } else {
                                self.silent_since = None;
                            }
                        }
                        Err(FrameError::Unsupported) => self.stats.unsupported_frames += 1,
                        Err(_) => self.stats.bad_frames += 1,
                    }
                }
            }
        }
        i
    }

    /// The verdict at `now_ms`.
    pub fn state(&self, now_ms: u64) -> AudioState {
        if !self.seen_frame {
            return AudioState::Unknown;
        }
        match self.silent_since {
            Some(since) if now_ms.saturating_sub(since) >= self.cfg.silence_after_ms => {
                AudioState::Silent { since_ms: since }
            }
            _ => AudioState::Sound,
        }
    }
}

enum Framing {
    NotSync,
    NeedMore,
    Len(usize),
}

fn frame_length(codec: AudioCodec, b: &[u8]) -> Framing {
    match codec {
        AudioCodec::Mpeg => match mpa_header(b) {
            Ok(h) => Framing::Len(h.frame_len),
            Err(FrameError::Truncated) => Framing::NeedMore,
            Err(_) => Framing::NotSync,
        },
        AudioCodec::Ac3 => match ac3_header(b) {
            Ok(h) => Framing::Len(h.frame_len),
            Err(FrameError::Truncated) => Framing::NeedMore,
            Err(_) => Framing::NotSync,
        },
        AudioCodec::Aac => match adts_header(b) {
            Ok(h) => Framing::Len(h.frame_len),
            Err(FrameError::Truncated) => Framing::NeedMore,
            Err(_) => Framing::NotSync,
        },
        AudioCodec::AacLatm => match loas_header(b) {
            Ok(n) => Framing::Len(n),
            Err(FrameError::Truncated) => Framing::NeedMore,
            Err(_) => Framing::NotSync,
        },
        AudioCodec::Eac3 => match eac3_frame_len(b) {
            Ok(n) => Framing::Len(n),
            Err(FrameError::Truncated) => Framing::NeedMore,
            Err(_) => Framing::NotSync,
        },
        // Nothing to measure: skip everything, counted as resync bytes.
        AudioCodec::Other => Framing::NotSync,
    }
}

/// The loudest level of one whole frame, in dBFS (−∞: digital silence).
/// An LATM frame is read on its own: one that reuses an earlier
/// StreamMuxConfig is `Unsupported` here ([`SilenceDetector`] keeps it).
pub fn frame_level(codec: AudioCodec, frame: &[u8]) -> Result<f32, FrameError> {
    match codec {
        AudioCodec::Mpeg => mp2_level(frame),
        AudioCodec::Ac3 => ac3_level(frame),
        AudioCodec::Aac => aac_level(frame),
        AudioCodec::AacLatm => latm_level(&mut LatmMux::default(), frame),
        AudioCodec::Eac3 => eac3_level(frame),
        AudioCodec::Other => Err(FrameError::Unsupported),
    }
}

// ---- MPEG-1/2 Layer II (ISO/IEC 11172-3, 13818-3) ----

struct MpaHeader {
    lsf: bool,
    protection: bool,
    bitrate_kbps: u32,
    mode: u32,
    mode_ext: u32,
    frame_len: usize,
}

const MPA1_L2_KBPS: [u32; 15] = [
    0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
];
const MPA2_L2_KBPS: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];

fn mpa_header(b: &[u8]) -> Result<MpaHeader, FrameError> {
    if b.len() < 4 {
        if b.is_empty() || b[0] == 0xFF {
            return Err(FrameError::Truncated);
        }
        return Err(FrameError::NoSync);
    }
    if b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return Err(FrameError::NoSync);
    }
    let version = (b[1] >> 3) & 3; // 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5
    let layer = (b[1] >> 1) & 3; // 2 = Layer II
    if version == 1 || layer != 2 {
        return Err(FrameError::NoSync);
    }
    let protection = b[1] & 1 == 0;
    let br_idx = (b[2] >> 4) as usize;
    let sr_idx = ((b[2] >> 2) & 3) as usize;
    if br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        // Free format is legal but has no frame length in its header.
        return Err(FrameError::NoSync);
    }
    let padding = ((b[2] >> 1) & 1) as usize;
    let lsf = version != 3;
    let bitrate_kbps = if lsf {
        MPA2_L2_KBPS[br_idx]
    } else {
        MPA1_L2_KBPS[br_idx]
    };
    let sr = [44100u32, 48000, 32000][sr_idx]
        / match version {
            3 => 1,
            2 => 2,
            _ => 4,
        };
    let frame_len = (144 * bitrate_kbps as usize * 1000) / sr as usize + padding;
    Ok(MpaHeader {
        lsf,
        protection,
        bitrate_kbps,
        mode: (b[3] >> 6) as u32,
        mode_ext: ((b[3] >> 4) & 3) as u32,
        frame_len,
    })
}

/// Bits of the allocation field of subband `sb` in Layer II table `t`
/// (ISO/IEC 11172-3 tables 3-B.2a–d, 13818-3 table B.1).
fn mp2_nbal(t: usize, sb: usize) -> u32 {
    match t {
        0 | 1 => match sb {
            0..=10 => 4,
            11..=22 => 3,
            _ => 2,
        },
        2 | 3 => match sb {
            0..=1 => 4,
            _ => 3,
        },
        _ => match sb {
            0..=3 => 4,
            4..=10 => 3,
            _ => 2,
        },
    }
}

fn mp2_level(frame: &[u8]) -> Result<f32, FrameError> {
    let h = mpa_header(frame)?;
    let sr_idx = ((frame[2] >> 2) & 3) as usize;
    let nch = if h.mode == 3 { 1 } else { 2 };
    // Table selection as in ISO/IEC 11172-3 annex B (and ffmpeg's encoder).
    let table = if h.lsf {
        4
    } else {
        let chr = h.bitrate_kbps / nch as u32;
        let freq = [44100, 48000, 32000][sr_idx];
        if (freq == 48000 && chr >= 56) || (56..=80).contains(&chr) {
            0
        } else if freq != 48000 && chr >= 96 {
            1
        } else if freq != 32000 && chr <= 48 {
            2
        } else {
            3
        }
    };
    let sblimit = [27usize, 30, 8, 12, 30][table];
    let bound = if h.mode == 1 {
        (4 * (h.mode_ext as usize + 1)).min(sblimit)
    } else {
        sblimit
    };
    let mut r = BitReader::new(frame);
    r.skip(32).ok_or(FrameError::Truncated)?;
    if h.protection {
        r.skip(16).ok_or(FrameError::Truncated)?;
    }
    let mut alloc = [[0u8; 32]; 2];
    for sb in 0..sblimit {
        let nbal = mp2_nbal(table, sb);
        if sb < bound {
            for a in alloc.iter_mut().take(nch) {
                a[sb] = r.read(nbal).ok_or(FrameError::Truncated)? as u8;
            }
        } else {
            let v = r.read(nbal).ok_or(FrameError::Truncated)? as u8;
            alloc[0][sb] = v;
            alloc[1][sb] = v;
        }
    }
    let mut scfsi = [[0u8; 32]; 2];
    for sb in 0..sblimit {
        for ch in 0..nch {
            if alloc[ch][sb] != 0 {
                scfsi[ch][sb] = r.read(2).ok_or(FrameError::Truncated)? as u8;
            }
        }
    }
    let mut min_idx: Option<u32> = None;
    for sb in 0..sblimit {
        for ch in 0..nch {
            if alloc[ch][sb] == 0 {
                continue;
            }
            let n = match scfsi[ch][sb] {
                0 => 3,
                2 => 1,
                _ => 2,
            };
            for _ in 0..n {
                let idx = r.read(6).ok_or(FrameError::Truncated)?;
                if idx == 63 {
                    return Err(FrameError::Invalid);
                }
                min_idx = Some(min_idx.map_or(idx, |m| m.min(idx)));
            }
        }
    }
    Ok(match min_idx {
        None => f32::NEG_INFINITY,
        Some(i) => 6.02 - 2.007 * i as f32,
    })
}

// ---- AC-3 (ATSC A/52) ----

struct Ac3Header {
    frame_len: usize,
}

const AC3_KBPS: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// The AC-3 / E-AC-3 syncword (0x0B77) and room for the 6 bytes both
/// headers read: `Truncated` when what is there could still be one.
fn ac3_sync(b: &[u8]) -> Result<(), FrameError> {
    if b.len() < 6 {
        if b.is_empty() || b[0] == 0x0B && (b.len() < 2 || b[1] == 0x77) {
            return Err(FrameError::Truncated);
        }
        return Err(FrameError::NoSync);
    }
    if b[0] != 0x0B || b[1] != 0x77 {
        return Err(FrameError::NoSync);
    }
    Ok(())
}

fn ac3_header(b: &[u8]) -> Result<Ac3Header, FrameError> {
    ac3_sync(b)?;
    let fscod = b[4] >> 6;
    let frmsizecod = (b[4] & 0x3F) as usize;
    let bsid = b[5] >> 3;
    if fscod == 3 || frmsizecod >= 38 || bsid > 10 {
        return Err(FrameError::NoSync);
    }
    let kbps = AC3_KBPS[frmsizecod / 2] as usize;
    let words = match fscod {
        0 => kbps * 2,
        1 => kbps * 1000 * 1536 / 44100 / 16 + (frmsizecod & 1),
        _ => kbps * 3,
    };
    Ok(Ac3Header {
        frame_len: words * 2,
    })
}

fn ac3_level(frame: &[u8]) -> Result<f32, FrameError> {
    ac3_header(frame)?;
    let mut r = BitReader::new(frame);
    let t = FrameError::Truncated;
    r.skip(40).ok_or(t)?; // syncword, crc1, fscod, frmsizecod
    let bsid = r.read(5).ok_or(t)?;
    if bsid > 8 && bsid != 9 && bsid != 10 {
        return Err(FrameError::Unsupported);
    }
    r.skip(3).ok_or(t)?; // bsmod
    let acmod = r.read(3).ok_or(t)?;
    if acmod & 1 == 1 && acmod != 1 {
        r.skip(2).ok_or(t)?; // cmixlev
    }
    if acmod & 4 != 0 {
        r.skip(2).ok_or(t)?; // surmixlev
    }
    if acmod == 2 {
        r.skip(2).ok_or(t)?; // dsurmod
    }
    let lfeon = r.flag().ok_or(t)?;
    let dual = if acmod == 0 { 2 } else { 1 };
    for _ in 0..dual {
        r.skip(5).ok_or(t)?; // dialnorm
        if r.flag().ok_or(t)? {
            r.skip(8).ok_or(t)?; // compr
        }
        if r.flag().ok_or(t)? {
            r.skip(8).ok_or(t)?; // langcod
        }
        if r.flag().ok_or(t)? {
            r.skip(7).ok_or(t)?; // mixlevel, roomtyp
        }
    }
    r.skip(2).ok_or(t)?; // copyrightb, origbs
                         // timecod1/timecod2, or xbsi1/xbsi2 in the alternate syntax (bsid 6):
                         // 14 bits each either way.
    for _ in 0..2 {
        if r.flag().ok_or(t)? {
            r.skip(14).ok_or(t)?;
        }
    }
    if r.flag().ok_or(t)? {
        let addbsil = r.read(6).ok_or(t)? as usize;
        r.skip((addbsil + 1) * 8).ok_or(t)?;
    }
    // Audio block 0.
    let nfchans = [2usize, 1, 2, 3, 3, 4, 4, 5][acmod as usize];
    r.skip(nfchans).ok_or(t)?; // blksw
    r.skip(nfchans).ok_or(t)?; // dithflag
    for _ in 0..dual {
        if r.flag().ok_or(t)? {
            r.skip(8).ok_or(t)?; // dynrng
        }
    }
    // Block 0 must start the coupling strategy (A/52 5.4.3.7).
    if !r.flag().ok_or(t)? {
        return Err(FrameError::Invalid);
    }
    let cplinu = r.flag().ok_or(t)?;
    let mut chincpl = [false; 5];
    let mut cplbegf = 0u32;
    let mut cplendf = 0u32;
    let mut phsflginu = false;
    if cplinu {
        for c in chincpl.iter_mut().take(nfchans) {
            *c = r.flag().ok_or(t)?;
        }
        if acmod == 2 {
            phsflginu = r.flag().ok_or(t)?;
        }
        cplbegf = r.read(4).ok_or(t)?;
        cplendf = r.read(4).ok_or(t)?;
        if cplbegf > cplendf + 2 {
            return Err(FrameError::Invalid);
        }
        let ncplsubnd = 3 + cplendf - cplbegf;
        let mut ncplbnd = ncplsubnd;
        for _ in 1..ncplsubnd {
            if r.flag().ok_or(t)? {
                ncplbnd -= 1;
            }
        }
        // Coupling coordinates (block 0: cplcoe must be set for each
        // coupled channel, but read it as written).
        let mut any_cplcoe = false;
        for &c in chincpl.iter().take(nfchans) {
            if c && r.flag().ok_or(t)? {
                any_cplcoe = true;
                r.skip(2).ok_or(t)?; // mstrcplco
                r.skip(8 * ncplbnd as usize).ok_or(t)?; // cplcoexp, cplcomant
            }
        }
        if acmod == 2 && phsflginu && any_cplcoe {
            r.skip(ncplbnd as usize).ok_or(t)?;
        }
    }
    if acmod == 2 && r.flag().ok_or(t)? {
        // rematstr
        let nrematbd = if !cplinu || cplbegf > 2 {
            4
        } else if cplbegf > 0 {
            3
        } else {
            2
        };
        r.skip(nrematbd).ok_or(t)?;
    }
    let cplexpstr = if cplinu { r.read(2).ok_or(t)? } else { 0 };
    let mut chexpstr = [0u32; 5];
    for e in chexpstr.iter_mut().take(nfchans) {
        *e = r.read(2).ok_or(t)?;
    }
    if lfeon {
        r.skip(1).ok_or(t)?;
    }
    let cpl = (cplinu && cplexpstr != 0).then_some((cplexpstr, cplendf));
    block0_exponents(&mut r, nfchans, &chexpstr, &chincpl, cplbegf, cpl)
}

/// The loudest exponent of block 0, from the channel bandwidth codes on
/// (the part AC-3 and E-AC-3 share): each full-bandwidth channel's
/// `chexpstr` (none may be reuse), whether it is coupled, cplbegf, and the
/// coupling channel's (cplexpstr, cplendf) when it has exponents.
fn block0_exponents(
    r: &mut BitReader,
    nfchans: usize,
    chexpstr: &[u32; 5],
    chincpl: &[bool; 5],
    cplbegf: u32,
    cpl: Option<(u32, u32)>,
) -> Result<f32, FrameError> {
    let t = FrameError::Truncated;
    let mut endmant = [0u32; 5];
    for ch in 0..nfchans {
        if chexpstr[ch] == 0 {
            // Block 0 cannot reuse exponents.
            return Err(FrameError::Invalid);
        }
        if chincpl[ch] {
            endmant[ch] = 37 + 12 * cplbegf;
        } else {
            let chbwcod = r.read(6).ok_or(t)?;
            if chbwcod > 60 {
                return Err(FrameError::Invalid);
            }
            endmant[ch] = 37 + 3 * (chbwcod + 12);
        }
    }
    let mut min_exp = u32::MAX;
    if let Some((cplexpstr, cplendf)) = cpl {
        // The coupling channel carries the coupled channels' level above
        // cplbegf: its exponents count too.
        let strt = 37 + 12 * cplbegf;
        let end = 37 + 12 * (cplendf + 3);
        let ngrps = (end - strt) / (3 << (cplexpstr - 1));
        let mut exp = (r.read(4).ok_or(t)? << 1) as i32;
        read_exp_groups(r, ngrps, &mut exp, &mut min_exp)?;
    }
    for ch in 0..nfchans {
        let ngrps = match chexpstr[ch] {
            1 => (endmant[ch] - 1) / 3,
            2 => (endmant[ch] - 1 + 3) / 6,
            _ => (endmant[ch] - 1 + 9) / 12,
        };
        let mut exp = r.read(4).ok_or(t)? as i32;
        min_exp = min_exp.min(exp as u32);
        read_exp_groups(r, ngrps, &mut exp, &mut min_exp)?;
        r.skip(2).ok_or(t)?; // gainrng
    }
    Ok(-6.02 * min_exp as f32)
}

// ---- E-AC-3 (ATSC A/52 Annex E) ----

/// The length of the E-AC-3 syncframe at `b` (frmsiz + 1 words); an AC-3
/// frame (bsid ≤ 10) in an E-AC-3 stream is read as AC-3.
fn eac3_frame_len(b: &[u8]) -> Result<usize, FrameError> {
    ac3_sync(b)?;
    let bsid = b[5] >> 3;
    if bsid <= 10 {
        return ac3_header(b).map(|h| h.frame_len);
    }
    let strmtyp = b[2] >> 6;
    let fscod_pair = b[4] >> 4; // fscod, then fscod2 or numblkscod
    if bsid > 16 || strmtyp == 3 || fscod_pair == 0xF {
        return Err(FrameError::NoSync);
    }
    let frmsiz = (((b[2] & 7) as usize) << 8) | b[3] as usize;
    Ok((frmsiz + 1) * 2)
}

/// Table E2.16: the coupling band structure of block 0 when the frame
/// does not send one.
const EAC3_DEFAULT_CPL_BANDS: [bool; 18] = {
    let mut t = [false; 18];
    let mut i = 0;
    while i < 18 {
        t[i] = matches!(i, 8 | 10 | 11 | 13..=17);
        i += 1;
    }
    t
};

/// The loudest exponent of block 0 of an independent E-AC-3 substream
/// (bsi, audfrm, then audblk up to the exponents), as AC-3's. Dependent
/// substreams, substreams of other programs, spectral extension, enhanced
/// coupling and AHT are `Unsupported`.
fn eac3_level(frame: &[u8]) -> Result<f32, FrameError> {
    let words = eac3_frame_len(frame)? / 2;
    if frame[5] >> 3 <= 10 {
        return ac3_level(frame);
    }
    let t = FrameError::Truncated;
    let u = FrameError::Unsupported;
    let mut r = BitReader::new(frame);
    r.skip(16).ok_or(t)?; // syncword
    let strmtyp = r.read(2).ok_or(t)?;
    let substreamid = r.read(3).ok_or(t)?;
    if strmtyp == 1 || substreamid != 0 {
        // A dependent substream adds channels to an independent one; other
        // substream ids are other programs.
        return Err(u);
    }
    r.skip(11).ok_or(t)?; // frmsiz
    let fscod = r.read(2).ok_or(t)?;
    let numblkscod = if fscod == 3 {
        r.skip(2).ok_or(t)?; // fscod2
        3
    } else {
        r.read(2).ok_or(t)?
    };
    let nblks = [1usize, 2, 3, 6][numblkscod as usize];
    let acmod = r.read(3).ok_or(t)? as usize;
    let lfeon = r.flag().ok_or(t)?;
    r.skip(5).ok_or(t)?; // bsid
    let dual = if acmod == 0 { 2 } else { 1 };
    for _ in 0..dual {
        r.skip(5).ok_or(t)?; // dialnorm
        if r.flag().ok_or(t)? {
            r.skip(8).ok_or(t)?; // compr
        }
    }
    // strmtyp 1 (chanmape) was refused above.
    if r.flag().ok_or(t)? {
        // mixmdate
        if acmod > 2 {
            r.skip(2).ok_or(t)?; // dmixmod
        }
        if acmod & 1 == 1 && acmod > 2 {
            r.skip(6).ok_or(t)?; // ltrtcmixlev, lorocmixlev
        }
        if acmod & 4 != 0 {
            r.skip(6).ok_or(t)?; // ltrtsurmixlev, lorosurmixlev
        }
        if lfeon && r.flag().ok_or(t)? {
            r.skip(5).ok_or(t)?; // lfemixlevcod
        }
        if strmtyp == 0 {
            for _ in 0..dual {
                if r.flag().ok_or(t)? {
                    r.skip(6).ok_or(t)?; // pgmscl
                }
            }
            if r.flag().ok_or(t)? {
                r.skip(6).ok_or(t)?; // extpgmscl
            }
            match r.read(2).ok_or(t)? {
                1 => r.skip(5).ok_or(t)?,
                2 => r.skip(12).ok_or(t)?,
                3 => {
                    let mixdeflen = r.read(5).ok_or(t)? as usize;
                    r.skip((mixdeflen + 2) * 8).ok_or(t)?;
                }
                _ => {}
            }
            if acmod < 2 {
                for _ in 0..dual {
                    if r.flag().ok_or(t)? {
                        r.skip(14).ok_or(t)?; // panmean, paninfo
                    }
                }
            }
            if r.flag().ok_or(t)? {
                // frmmixcfginfoe
                for _ in 0..nblks {
                    if nblks == 1 || r.flag().ok_or(t)? {
                        r.skip(5).ok_or(t)?; // blkmixcfginfo
                    }
                }
            }
        }
    }
    if r.flag().ok_or(t)? {
        // infomdate
        r.skip(5).ok_or(t)?; // bsmod, copyrightb, origbs
        if acmod == 2 {
            r.skip(4).ok_or(t)?; // dsurmod, dheadphonmod
        }
        if acmod >= 6 {
            r.skip(2).ok_or(t)?; // dsurexmod
        }
        for _ in 0..dual {
            if r.flag().ok_or(t)? {
                r.skip(8).ok_or(t)?; // mixlevel, roomtyp, adconvtyp
            }
        }
        if fscod < 3 {
            r.skip(1).ok_or(t)?; // sourcefscod
        }
    }
    if strmtyp == 0 && numblkscod != 3 {
        r.skip(1).ok_or(t)?; // convsync
    }
    if strmtyp == 2 && (numblkscod == 3 || r.flag().ok_or(t)?) {
        r.skip(6).ok_or(t)?; // frmsizecod
    }
    if r.flag().ok_or(t)? {
        let addbsil = r.read(6).ok_or(t)? as usize;
        r.skip((addbsil + 1) * 8).ok_or(t)?;
    }

    // audfrm
    let (expstre, ahte) = if numblkscod == 3 {
        (r.flag().ok_or(t)?, r.flag().ok_or(t)?)
    } else {
        (true, false)
    };
    let snroffststr = r.read(2).ok_or(t)?;
    let transproce = r.flag().ok_or(t)?;
    let blkswe = r.flag().ok_or(t)?;
    let dithflage = r.flag().ok_or(t)?;
    r.skip(4).ok_or(t)?; // bamode, frmfgaincode, dbaflde, skipflde
    let spxattene = r.flag().ok_or(t)?;
    let nfchans = [2usize, 1, 2, 3, 3, 4, 4, 5][acmod];
    let mut cplstre = [false; 6];
    let mut cplinu = [false; 6];
    if acmod > 1 {
        for blk in 0..nblks {
            cplstre[blk] = blk == 0 || r.flag().ok_or(t)?;
            cplinu[blk] = if cplstre[blk] {
                r.flag().ok_or(t)?
            } else {
                cplinu[blk - 1]
            };
        }
    }
    let ncplblks = cplinu.iter().filter(|&&c| c).count();
    // Exponent strategies: [0] coupling, [1..=nfchans] full bandwidth,
    // [6] LFE; 0 is reuse. `later_reuse`: every block after the first
    // reuses (the only way a channel may use AHT).
    let mut blk0 = [0u32; 7];
    let mut later_reuse = [true; 7];
    if expstre {
        for (blk, &cpl) in cplinu.iter().enumerate().take(nblks) {
            let first = if cpl { 0 } else { 1 };
            for ch in first..=nfchans {
                let e = r.read(2).ok_or(t)?;
                if blk == 0 {
                    blk0[ch] = e;
                } else if e != 0 {
                    later_reuse[ch] = false;
                }
            }
        }
    } else {
        // frmchexpstr, table E2.14: block 0 is D15 for 0..=3, D25 for
        // 4..=15, D45 above; only 0 reuses in every later block.
        let first = if acmod > 1 && ncplblks > 0 { 0 } else { 1 };
        for ch in first..=nfchans {
            let f = r.read(5).ok_or(t)?;
            blk0[ch] = 1 + (f >= 4) as u32 + (f >= 16) as u32;
            later_reuse[ch] = f == 0;
        }
    }
    if lfeon {
        for blk in 0..nblks {
            let e = r.read(1).ok_or(t)?;
            if blk > 0 && e != 0 {
                later_reuse[6] = false;
            }
        }
    }
    if strmtyp == 0 && (numblkscod == 3 || r.flag().ok_or(t)?) {
        r.skip(5 * nfchans).ok_or(t)?; // convexpstr
    }
    if ahte {
        // chahtinu, for the channels whose exponents allow it.
        let cpl_ok = ncplblks == 6 && later_reuse[0] && !cplstre[1..].contains(&true);
        let chans = (1..=nfchans).chain(lfeon.then_some(6));
        for ch in std::iter::once(0).filter(|_| cpl_ok).chain(chans) {
            if ch != 0 && !later_reuse[ch] {
                continue;
            }
            if r.flag().ok_or(t)? {
                // The level would still be in block 0's exponents, but
                // no encoder at hand writes AHT to test it on.
                return Err(u);
            }
        }
    }
    if snroffststr == 0 {
        r.skip(10).ok_or(t)?; // frmcsnroffst, frmfsnroffst
    }
    if transproce {
        for _ in 0..nfchans {
            if r.flag().ok_or(t)? {
                r.skip(18).ok_or(t)?; // transprocloc, transproclen
            }
        }
    }
    if spxattene {
        for _ in 0..nfchans {
            if r.flag().ok_or(t)? {
                r.skip(5).ok_or(t)?; // spxattencod
            }
        }
    }
    if numblkscod != 0 && r.flag().ok_or(t)? {
        // blkstrtinfo: (nblks − 1) × (4 + ceil(log2(words per frame))).
        let log2 = (usize::BITS - (words.max(1) - 1).leading_zeros()) as usize;
        r.skip((nblks - 1) * (4 + log2)).ok_or(t)?;
    }

    // audblk, block 0.
    if blkswe {
        r.skip(nfchans).ok_or(t)?;
    }
    if dithflage {
        r.skip(nfchans).ok_or(t)?;
    }
    for _ in 0..dual {
        if r.flag().ok_or(t)? {
            r.skip(8).ok_or(t)?; // dynrng
        }
    }
    // spxstre is implicit in block 0.
    if r.flag().ok_or(t)? {
        // spxinu: spectral extension, not read.
        return Err(u);
    }
    let mut chincpl = [false; 5];
    let mut cplbegf = 0;
    let mut cplendf = 0;
    if cplinu[0] {
        if r.flag().ok_or(t)? {
            // ecplinu: enhanced coupling, not read.
            return Err(u);
        }
        if acmod == 2 {
            chincpl[0] = true;
            chincpl[1] = true;
        } else {
            for c in chincpl.iter_mut().take(nfchans) {
                *c = r.flag().ok_or(t)?;
            }
        }
        let phsflginu = acmod == 2 && r.flag().ok_or(t)?;
        cplbegf = r.read(4).ok_or(t)?;
        cplendf = r.read(4).ok_or(t)?;
        if cplbegf > cplendf + 2 {
            return Err(FrameError::Invalid);
        }
        let (sb0, sb1) = (cplbegf as usize + 1, cplendf as usize + 3);
        let mut bndstrc = EAC3_DEFAULT_CPL_BANDS;
        if r.flag().ok_or(t)? {
            for b in &mut bndstrc[sb0..sb1] {
                *b = r.flag().ok_or(t)?;
            }
        }
        let merged = bndstrc[sb0..sb1].iter().filter(|&&b| b).count();
        let ncplbnd = sb1 - cplbegf as usize - merged;
        // Coupling coordinates: in block 0 every coupled channel has them
        // (firstcplcos), with no cplcoe bit.
        for _ in chincpl.iter().take(nfchans).filter(|&&c| c) {
            r.skip(2 + 8 * ncplbnd).ok_or(t)?; // mstrcplco, cplcoexp, cplcomant
        }
        if phsflginu {
            r.skip(ncplbnd).ok_or(t)?; // phsflg
        }
    }
    if acmod == 2 {
        // rematstr is implicit in block 0.
        let nrematbd = if !cplinu[0] || cplbegf > 2 {
            4
        } else if cplbegf > 0 {
            3
        } else {
            2
        };
        r.skip(nrematbd).ok_or(t)?;
    }
    let mut chexpstr = [0u32; 5];
    chexpstr[..nfchans].copy_from_slice(&blk0[1..=nfchans]);
    let cpl = if cplinu[0] {
        if blk0[0] == 0 {
            return Err(FrameError::Invalid);
        }
        Some((blk0[0], cplendf))
    } else {
        None
    };
    block0_exponents(&mut r, nfchans, &chexpstr, &chincpl, cplbegf, cpl)
}

/// `ngrps` grouped exponent deltas (A/52 7.1.3): each 7-bit group holds
/// three deltas, each 0..=4 meaning −2..=+2.
fn read_exp_groups(
    r: &mut BitReader,
    ngrps: u32,
    exp: &mut i32,
    min_exp: &mut u32,
) -> Result<(), FrameError> {
    for _ in 0..ngrps {
        let g = r.read(7).ok_or(FrameError::Truncated)?;
        if g >= 125 {
            return Err(FrameError::Invalid);
        }
        for d in [g / 25, (g % 25) / 5, g % 5] {
            *exp += d as i32 - 2;
            if !(0..=24).contains(exp) {
                return Err(FrameError::Invalid);
            }
            *min_exp = (*min_exp).min(*exp as u32);
        }
    }
    Ok(())
}

// ---- AAC in ADTS (ISO/IEC 13818-7, 14496-3) ----

struct AdtsHeader {
    header_len: usize,
    frame_len: usize,
}

fn adts_header(b: &[u8]) -> Result<AdtsHeader, FrameError> {
    if b.len() < 7 {
        if b.is_empty() || b[0] == 0xFF && (b.len() < 2 || b[1] & 0xF6 == 0xF0) {
            return Err(FrameError::Truncated);
        }
        return Err(FrameError::NoSync);
    }
    if b[0] != 0xFF || b[1] & 0xF6 != 0xF0 {
        return Err(FrameError::NoSync);
    }
    let protection_absent = b[1] & 1 == 1;
    let sf_index = (b[2] >> 2) & 0xF;
    if sf_index > 12 {
        return Err(FrameError::NoSync);
    }
    let frame_len = (((b[3] & 3) as usize) << 11) | ((b[4] as usize) << 3) | ((b[5] >> 5) as usize);
    let header_len = if protection_absent { 7 } else { 9 };
    if frame_len < header_len + 1 {
        return Err(FrameError::NoSync);
    }
    Ok(AdtsHeader {
        header_len,
        frame_len,
    })
}

// ---- AAC in LATM/LOAS (ISO/IEC 14496-3 1.7.2, 1.7.3) ----

/// The StreamMuxConfig an LATM frame may reuse (useSameStreamMux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LatmMux {
    /// None read yet: a frame that reuses one cannot be read.
    #[default]
    Unknown,
    /// One AAC-LC stream (plain, or the core of HE-AAC v1/v2), one layer,
    /// frameLengthType 0: the only kind read.
    Usable,
    /// The last config read was of a kind not read, or broken.
    Unusable(FrameError),
}

/// The length of the AudioSyncStream frame at `b`: syncword 0x2B7 (11
/// bits), audioMuxLengthBytes (13), then that many bytes.
fn loas_header(b: &[u8]) -> Result<usize, FrameError> {
    if b.len() < 3 {
        if b.is_empty() || b[0] == 0x56 && (b.len() < 2 || b[1] & 0xE0 == 0xE0) {
            return Err(FrameError::Truncated);
        }
        return Err(FrameError::NoSync);
    }
    if b[0] != 0x56 || b[1] & 0xE0 != 0xE0 {
        return Err(FrameError::NoSync);
    }
    let len = (((b[1] & 0x1F) as usize) << 8) | b[2] as usize;
    if len == 0 {
        return Err(FrameError::NoSync);
    }
    Ok(3 + len)
}

/// The level of one AudioSyncStream frame: its AudioMuxElement(1), with a
/// StreamMuxConfig or reusing `mux`, then the first subframe's payload (a
/// raw_data_block) read as ADTS's is.
fn latm_level(mux: &mut LatmMux, frame: &[u8]) -> Result<f32, FrameError> {
    let len = loas_header(frame)?;
    let t = FrameError::Truncated;
    let body = frame.get(3..len).ok_or(t)?;
    let mut r = BitReader::new(body);
    let use_same = r.flag().ok_or(t)?;
    if !use_same {
        *mux = match stream_mux_config(&mut r) {
            Ok(()) => LatmMux::Usable,
            Err(e) => LatmMux::Unusable(e),
        };
    }
    match *mux {
        LatmMux::Usable => {}
        LatmMux::Unknown => return Err(FrameError::Unsupported),
        LatmMux::Unusable(e) => return Err(e),
    }
    // PayloadLengthInfo: one stream, frameLengthType 0.
    let mut payload_len = 0usize;
    loop {
        let b = r.read(8).ok_or(t)? as usize;
        payload_len += b;
        if b != 255 {
            break;
        }
    }
    // The payload is not byte-aligned in the frame; the raw_data_block's
    // byte_alignment counts from its own start, so copy it out.
    let mut payload = Vec::with_capacity(payload_len.min(body.len()));
    for _ in 0..payload_len {
        payload.push(r.read(8).ok_or(t)? as u8);
    }
    raw_data_block_level(&mut BitReader::new(&payload))
}

/// LatmGetValue (1.7.3): bytesForValue, then that many bytes plus one.
fn latm_value(r: &mut BitReader) -> Option<u32> {
    let n = r.read(2)?;
    let mut v = 0u32;
    for _ in 0..=n {
        v = (v << 8) | r.read(8)?;
    }
    Some(v)
}

/// StreamMuxConfig (1.7.3), audioMuxVersion 0 or 1: Ok when it is one
/// program of one layer of AAC-LC with frameLengthType 0, leaving `r` at
/// the end of the config.
fn stream_mux_config(r: &mut BitReader) -> Result<(), FrameError> {
    let t = FrameError::Truncated;
    let version = r.read(1).ok_or(t)?;
    if version == 1 && r.flag().ok_or(t)? {
        // audioMuxVersionA 1: syntax "to be defined".
        return Err(FrameError::Unsupported);
    }
    if version == 1 {
        latm_value(r).ok_or(t)?; // taraBufferFullness
    }
    let all_same_framing = r.flag().ok_or(t)?;
    r.skip(6).ok_or(t)?; // numSubFrames: the first is read
    let num_program = r.read(4).ok_or(t)?;
    let num_layer = r.read(3).ok_or(t)?;
    if num_program != 0 || num_layer != 0 || !all_same_framing {
        return Err(FrameError::Unsupported);
    }
    if version == 0 {
        audio_specific_config(r, None)?;
    } else {
        let asc_len = latm_value(r).ok_or(t)? as usize;
        let start = r.pos();
        audio_specific_config(r, Some(asc_len))?;
        let used = r.pos() - start;
        if used > asc_len {
            return Err(FrameError::Invalid);
        }
        r.skip(asc_len - used).ok_or(t)?; // fillBits
    }
    let frame_length_type = r.read(3).ok_or(t)?;
    if frame_length_type != 0 {
        return Err(FrameError::Unsupported);
    }
    r.skip(8).ok_or(t)?; // latmBufferFullness
    if r.flag().ok_or(t)? {
        // otherDataPresent: otherDataLenBits (the other data follows the
        // payloads, not read).
        if version == 1 {
            latm_value(r).ok_or(t)?;
        } else {
            loop {
                let esc = r.flag().ok_or(t)?;
                r.skip(8).ok_or(t)?;
                if !esc {
                    break;
                }
            }
        }
    }
    if r.flag().ok_or(t)? {
        r.skip(8).ok_or(t)?; // crcCheckSum
    }
    Ok(())
}

/// GetAudioObjectType (1.6.2.1).
fn audio_object_type(r: &mut BitReader) -> Option<u32> {
    let aot = r.read(5)?;
    if aot == 31 {
        return Some(32 + r.read(6)?);
    }
    Some(aot)
}

/// samplingFrequencyIndex, and the explicit frequency after index 15.
fn sampling_frequency(r: &mut BitReader) -> Result<(), FrameError> {
    let t = FrameError::Truncated;
    match r.read(4).ok_or(t)? {
        15 => r.skip(24).ok_or(t),
        13 | 14 => Err(FrameError::Invalid),
        _ => Ok(()),
    }
}

/// AudioSpecificConfig (1.6.2.1): Ok when the core is AAC-LC (object type
/// 2, or 5/29 — SBR, SBR+PS — over AAC-LC), leaving `r` after it.
/// `len` is its length in bits when the mux says (audioMuxVersion 1).
fn audio_specific_config(r: &mut BitReader, len: Option<usize>) -> Result<(), FrameError> {
    let t = FrameError::Truncated;
    let start = r.pos();
    let mut aot = audio_object_type(r).ok_or(t)?;
    sampling_frequency(r)?;
    let channel_config = r.read(4).ok_or(t)?;
    let explicit_sbr = aot == 5 || aot == 29;
    if explicit_sbr {
        sampling_frequency(r)?; // extensionSamplingFrequencyIndex
        aot = audio_object_type(r).ok_or(t)?;
    }
    if aot != 2 {
        return Err(FrameError::Unsupported);
    }
    // GASpecificConfig for AAC-LC.
    r.skip(1).ok_or(t)?; // frameLengthFlag
    if r.flag().ok_or(t)? {
        r.skip(14).ok_or(t)?; // coreCoderDelay
    }
    let extension_flag = r.flag().ok_or(t)?;
    if channel_config == 0 {
        // A program_config_element: not parsed.
        return Err(FrameError::Unsupported);
    }
    if extension_flag {
        r.skip(1).ok_or(t)?; // extensionFlag3
    }
    if explicit_sbr {
        return Ok(());
    }
    // Backward-compatible SBR/PS signalling (syncExtensionType 0x2B7).
    // With no length (audioMuxVersion 0) it is recognised by its sync:
    // the bits a config without it has next (frameLengthType 0, then
    // latmBufferFullness) never start with 0x2B7.
    let room = |r: &BitReader, n: usize| len.is_none_or(|l| r.pos() - start + n <= l);
    if room(r, 16) && r.clone().read(11) == Some(0x2B7) {
        r.skip(11).ok_or(t)?;
        let ext_aot = audio_object_type(r).ok_or(t)?;
        if ext_aot == 5 {
            if r.flag().ok_or(t)? {
                // sbrPresentFlag
                sampling_frequency(r)?;
                if room(r, 12) && r.clone().read(11) == Some(0x548) {
                    r.skip(12).ok_or(t)?; // syncExtensionType, psPresentFlag
                }
            }
        } else if len.is_none() {
            // Another extension of unknown length: the config's end is
            // unknown.
            return Err(FrameError::Unsupported);
        }
    }
    Ok(())
}

/// The level given to an AAC frame with any spectral energy: AAC is read
/// for digital silence only (module docs).
const AAC_SIGNAL_DBFS: f32 = 0.0;

fn aac_level(frame: &[u8]) -> Result<f32, FrameError> {
    let h = adts_header(frame)?;
    let profile = frame[2] >> 6; // 1 = LC
    if profile != 1 {
        return Err(FrameError::Unsupported);
    }
    // With several raw_data_blocks only the first is read.
    raw_data_block_level(&mut BitReader::new(&frame[h.header_len..]))
}

/// The level of an AAC-LC raw_data_block (ISO/IEC 14496-3 4.4.2.1), from
/// its first channel element; `r` starts at the block, byte-aligned (a
/// DSE's byte_alignment counts from there). Shared by ADTS and LATM.
fn raw_data_block_level(r: &mut BitReader) -> Result<f32, FrameError> {
    let t = FrameError::Truncated;
    loop {
        let id = r.read(3).ok_or(t)?;
        match id {
            // SCE, LFE
            0 | 3 => {
                r.skip(4).ok_or(t)?;
                return ics_level(r, None);
            }
            // CPE
            1 => {
                r.skip(4).ok_or(t)?;
                let common_window = r.flag().ok_or(t)?;
                if common_window {
                    let info = ics_info(r)?;
                    let ms_mask_present = r.read(2).ok_or(t)?;
                    if ms_mask_present == 1 {
                        r.skip(info.groups as usize * info.max_sfb as usize)
                            .ok_or(t)?;
                    }
                    return ics_level(r, Some(info));
                }
                return ics_level(r, None);
            }
            // DSE
            4 => {
                r.skip(4).ok_or(t)?;
                let align = r.flag().ok_or(t)?;
                let mut count = r.read(8).ok_or(t)? as usize;
                if count == 255 {
                    count += r.read(8).ok_or(t)? as usize;
                }
                if align {
                    r.align();
                }
                r.skip(count * 8).ok_or(t)?;
            }
            // FIL
            6 => {
                let mut count = r.read(4).ok_or(t)? as usize;
                if count == 15 {
                    // count = 15 + esc_count − 1
                    count = 14 + r.read(8).ok_or(t)? as usize;
                }
                r.skip(count * 8).ok_or(t)?;
            }
            // END: no channel at all.
            7 => return Err(FrameError::Invalid),
            // CCE, PCE: not skipped without a deeper parse.
            _ => return Err(FrameError::Unsupported),
        }
    }
}

#[derive(Clone, Copy)]
struct IcsInfo {
    long: bool,
    max_sfb: u32,
    groups: u32,
}

fn ics_info(r: &mut BitReader) -> Result<IcsInfo, FrameError> {
    let t = FrameError::Truncated;
    r.skip(1).ok_or(t)?; // ics_reserved_bit
    let window_sequence = r.read(2).ok_or(t)?;
    r.skip(1).ok_or(t)?; // window_shape
    if window_sequence == 2 {
        let max_sfb = r.read(4).ok_or(t)?;
        let grouping = r.read(7).ok_or(t)?;
        let groups = 1 + (0..7).filter(|i| grouping & (1 << i) == 0).count() as u32;
        if max_sfb > 14 {
            return Err(FrameError::Invalid);
        }
        Ok(IcsInfo {
            long: false,
            max_sfb,
            groups,
        })
    } else {
        let max_sfb = r.read(6).ok_or(t)?;
        if r.flag().ok_or(t)? {
            // predictor_data_present: not in AAC-LC.
            return Err(FrameError::Unsupported);
        }
        if max_sfb > 51 {
            return Err(FrameError::Invalid);
        }
        Ok(IcsInfo {
            long: true,
            max_sfb,
            groups: 1,
        })
    }
}

fn ics_level(r: &mut BitReader, common: Option<IcsInfo>) -> Result<f32, FrameError> {
    let t = FrameError::Truncated;
    let global_gain = r.read(8).ok_or(t)?;
    let info = match common {
        Some(i) => i,
        None => ics_info(r)?,
    };
    let sect_bits = if info.long { 5 } else { 3 };
    let esc = (1 << sect_bits) - 1;
    let mut any_energy = false;
    for _ in 0..info.groups {
        let mut k = 0;
        while k < info.max_sfb {
            let cb = r.read(4).ok_or(t)?;
            if cb == 12 {
                return Err(FrameError::Invalid);
            }
            let mut len = 0;
            loop {
                let inc = r.read(sect_bits).ok_or(t)?;
                len += inc;
                if inc != esc {
                    break;
                }
                if len > info.max_sfb {
                    return Err(FrameError::Invalid);
                }
            }
            if len == 0 {
                return Err(FrameError::Invalid);
            }
            k += len;
            // 1..=11 spectral codebooks, 13 noise; 14/15 intensity copies
            // the other channel, ZERO_HCB (0) carries nothing.
            if (1..=11).contains(&cb) || cb == 13 {
                any_energy = true;
            }
        }
        if k > info.max_sfb {
            return Err(FrameError::Invalid);
        }
    }
    if !any_energy {
        return Ok(f32::NEG_INFINITY);
    }
    // global_gain is only the scale factors' starting value: ffmpeg writes
    // a higher one for a −50 dBFS tone than for a −6 dBFS one, so it is no
    // level. A level needs the Huffman-coded scale factors (ISO/IEC
    // 14496-3 table 4.A.1), not read yet.
    let _ = global_gain;
    Ok(AAC_SIGNAL_DBFS)
}
