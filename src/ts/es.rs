//! Video entry points: which PES of a video elementary stream a decoder can
//! start on (a real keyframe with the headers it needs), so the fan-out can
//! start a new client there.
//!
//! The transport's random_access_indicator is a hint, not proof; this module
//! looks at the elementary stream itself:
//! - MPEG-1/2 video: a sequence header (00 00 01 B3) followed, in the same
//!   PES, by a picture whose picture_coding_type is I (1). The first picture
//!   of the PES decides.
//! - H.264: an IDR slice (nal_unit_type 5) or a recovery point SEI (SEI
//!   payloadType 6) before the first slice of the PES. The first slice of
//!   any other kind decides "no".
//! - HEVC: an IRAP picture (nal_unit_type 16..=23) is the first VCL NAL.
//! - Other codecs: the random_access_indicator of the PES start packet, the
//!   only evidence there is.
//!
//! A verdict needs bytes that may span several TS packets, so the PES start
//! packet is only known to be an entry point some packets later. Two levels:
//!
//! * [`EntryPointDetector`] — fed the video PID's packets; `push` returns
//!   `Some(verdict)` once per PES, when the verdict about the PES *begun by
//!   the last payload_unit_start packet* is known (often on that very
//!   packet). If the next PES starts before a verdict, the earlier PES was
//!   not an entry point (no `Some(false)` is returned for it).
//! * [`EntryPointGate`] — what the fan-out wants: fed *every* packet of the
//!   program in order, it holds packets back from a video PES start until the
//!   verdict is known (bounded) and hands them on, in order, with
//!   `entry_point_at_start` set when the first packet handed on is the start
//!   packet of an entry-point PES:
//!
//! ```ignore
//! let mut gate = EntryPointGate::new(VideoCodec::H264, video_pid);
//! for raw in packets_of_the_program {
//!     let pkt = Packet::new_checked(raw)?;
//!     gate.push(&pkt, |bytes, entry_point_at_start| {
//!         chunk_writer.push(bytes, entry_point_at_start) // cut a chunk here if true
//!     });
//! }
//! ```
//!
//! Promises: never panics on any input; memory is bounded (the detector keeps
//! at most [`SCAN_LIMIT`] bytes of each PES, the gate at most
//! [`MAX_HELD_PACKETS`] packets); scrambled packets (transport or PES
//! scrambling_control ≠ 0), continuity gaps and transport errors yield "not
//! an entry point", never a guess.

use super::pes::PesHeader;
use super::pmt::VideoCodec;
use super::{Error, Packet, PACKET_SIZE};

/// Bytes of each PES (header included) scanned before giving up.
pub const SCAN_LIMIT: usize = 64 * 1024;
/// Packets (of all PIDs) the gate holds back while a verdict is pending.
pub const MAX_HELD_PACKETS: usize = 1024;

/// Why PES were not entry points, or packets were ignored. Every drop counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DetectorStats {
    /// PES starts seen.
    pub pes: u64,
    /// PES found to be entry points.
    pub entry_points: u64,
    /// PES refused because a packet or the PES was scrambled.
    pub scrambled: u64,
    /// Continuity gaps and transport_error packets (scan of the PES dropped).
    pub cc_gaps: u64,
    /// Duplicate packets ignored (same continuity_counter, ISO/IEC 13818-1
    /// allows one).
    pub duplicates: u64,
    /// PES whose header was malformed.
    pub bad_pes_header: u64,
    /// PES still undecided after SCAN_LIMIT bytes.
    pub scan_limit: u64,
    /// PES still undecided when the next one started.
    pub undecided: u64,
}

/// Finds entry points in one video PID. See the module docs.
#[derive(Debug)]
pub struct EntryPointDetector {
    codec: VideoCodec,
    /// Scanning a PES whose verdict is not known yet.
    pending: bool,
    /// The current PES from its first byte, at most SCAN_LIMIT bytes.
    buf: Vec<u8>,
    /// Offset of the elementary stream in `buf`, once the header parsed.
    es_start: Option<usize>,
    /// Next offset in `buf` where a start code may begin.
    scan_pos: usize,
    /// MPEG-2: a sequence header was seen in this PES.
    seen_sequence_header: bool,
    last_cc: Option<u8>,
    pub stats: DetectorStats,
}

enum Scan {
    Decided(bool),
    NeedMore,
}

impl EntryPointDetector {
    pub fn new(codec: VideoCodec) -> EntryPointDetector {
        EntryPointDetector {
            codec,
            pending: false,
            buf: Vec::new(),
            es_start: None,
            scan_pos: 0,
            seen_sequence_header: false,
            last_cc: None,
            stats: DetectorStats::default(),
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Whether the verdict on the current PES is still to come.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Stop scanning the current PES (the caller could not wait any longer);
    /// it counts as not an entry point.
    pub fn abandon(&mut self) {
        self.pending = false;
        self.buf.clear();
    }

    /// Forget all state (e.g. after a retune); statistics are kept.
    pub fn reset(&mut self) {
        self.abandon();
        self.last_cc = None;
    }

    /// Feed the next packet of the video PID. Returns the verdict on the PES
    /// begun by the last payload_unit_start packet, once, when known.
    pub fn push(&mut self, pkt: &Packet<&[u8]>) -> Option<bool> {
        if pkt.transport_error() {
            self.stats.cc_gaps += 1;
            self.last_cc = None;
            return self.decide_if_pending(false);
        }
        if !pkt.has_payload() {
            // continuity_counter does not advance without a payload.
            return None;
        }
        let cc = pkt.continuity_counter();
        let mut gap = None;
        if let Some(last) = self.last_cc {
            if cc == last && !pkt.discontinuity() {
                self.stats.duplicates += 1;
                return None;
            }
            if cc != (last + 1) & 0x0F && !pkt.discontinuity() {
                self.stats.cc_gaps += 1;
                gap = self.decide_if_pending(false);
            }
        }
        self.last_cc = Some(cc);

        if pkt.payload_unit_start() {
            if self.pending {
                self.stats.undecided += 1;
                self.abandon();
            }
            self.stats.pes += 1;
            if pkt.scrambling_control() != 0 {
                self.stats.scrambled += 1;
                return Some(false);
            }
            if self.codec == VideoCodec::Other {
                return Some(self.count(pkt.random_access()));
            }
            self.pending = true;
            self.buf.clear();
            self.es_start = None;
            self.scan_pos = 0;
            self.seen_sequence_header = false;
        } else if !self.pending {
            return gap;
        } else if pkt.scrambling_control() != 0 {
            self.stats.scrambled += 1;
            return self.decide_if_pending(false);
        }

        let room = SCAN_LIMIT - self.buf.len();
        let payload = pkt.payload();
        self.buf
            .extend_from_slice(&payload[..payload.len().min(room)]);
        match self.scan() {
            Scan::Decided(v) => self.decide_if_pending(v),
            Scan::NeedMore if self.buf.len() >= SCAN_LIMIT => {
                self.stats.scan_limit += 1;
                self.decide_if_pending(false)
            }
            Scan::NeedMore => None,
        }
    }

    fn count(&mut self, v: bool) -> bool {
        if v {
            self.stats.entry_points += 1;
        }
        v
    }

    fn decide_if_pending(&mut self, v: bool) -> Option<bool> {
        if !self.pending {
            return None;
        }
        self.abandon();
        Some(self.count(v))
    }

    fn scan(&mut self) -> Scan {
        let es_start = match self.es_start {
            Some(s) => s,
            None => match PesHeader::new_checked(&self.buf[..]) {
                Ok(h) => {
                    if h.pes_scrambling_control() != 0 {
                        self.stats.scrambled += 1;
                        return Scan::Decided(false);
                    }
                    let s = h.payload_offset();
                    self.es_start = Some(s);
                    self.scan_pos = s;
                    s
                }
                // The header (≤ 9 + 255 bytes) may continue in the next packet.
                Err(Error::Truncated) if self.buf.len() < 9 + 255 => return Scan::NeedMore,
                Err(_) => {
                    self.stats.bad_pes_header += 1;
                    return Scan::Decided(false);
                }
            },
        };
        loop {
            let i = match find_start_code(&self.buf, self.scan_pos) {
                Some(i) => i,
                None => {
                    // Keep the last bytes: a start code may straddle packets.
                    self.scan_pos = self.buf.len().saturating_sub(3).max(es_start);
                    return Scan::NeedMore;
                }
            };
            let Some(&code) = self.buf.get(i + 3) else {
                self.scan_pos = i;
                return Scan::NeedMore;
            };
            let verdict = match self.codec {
                VideoCodec::Mpeg2 => self.mpeg2(i, code),
                VideoCodec::H264 => h264(&self.buf, i, code),
                VideoCodec::Hevc => hevc(code),
                VideoCodec::Other => Some(Scan::Decided(false)),
            };
            match verdict {
                Some(Scan::NeedMore) => {
                    self.scan_pos = i;
                    return Scan::NeedMore;
                }
                Some(d) => return d,
                None => self.scan_pos = i + 3,
            }
        }
    }

    /// None: keep scanning.
    fn mpeg2(&mut self, i: usize, code: u8) -> Option<Scan> {
        match code {
            0xB3 => {
                self.seen_sequence_header = true;
                None
            }
            // picture_header: temporal_reference(10) picture_coding_type(3)
            0x00 => Some(match self.buf.get(i + 5) {
                Some(b) => {
                    let picture_coding_type = (b >> 3) & 0x07;
                    Scan::Decided(picture_coding_type == 1 && self.seen_sequence_header)
                }
                None => Scan::NeedMore,
            }),
            _ => None,
        }
    }
}

fn h264(buf: &[u8], i: usize, code: u8) -> Option<Scan> {
    match code & 0x1F {
        5 => Some(Scan::Decided(true)),
        1..=4 => Some(Scan::Decided(false)),
        6 => {
            // Needs the whole SEI NAL: up to the next start code.
            let Some(end) = find_start_code(buf, i + 4) else {
                return Some(Scan::NeedMore);
            };
            if sei_has_recovery_point(&buf[i + 4..end]) {
                Some(Scan::Decided(true))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn hevc(code: u8) -> Option<Scan> {
    match (code >> 1) & 0x3F {
        16..=23 => Some(Scan::Decided(true)),
        0..=15 => Some(Scan::Decided(false)),
        _ => None,
    }
}

/// First `00 00 01` at or after `from`.
fn find_start_code(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= buf.len() {
        // Skip fast: the third byte must be 1, the others 0.
        match buf[i + 2] {
            1 if buf[i] == 0 && buf[i + 1] == 0 => return Some(i),
            0 => i += 1,
            1 => i += 3,
            _ => i += 3,
        }
    }
    None
}

/// H.264 sei_rbsp (§7.3.2.3): does any sei_message have payloadType 6
/// (recovery point)? `nal` is the NAL after its header byte, emulation
/// prevention bytes included (removed here).
fn sei_has_recovery_point(nal: &[u8]) -> bool {
    let mut rbsp = Rbsp { b: nal, pos: 0, zeros: 0 };
    loop {
        let Some(t) = rbsp.sei_value() else {
            return false;
        };
        if t == 6 {
            return true;
        }
        let Some(size) = rbsp.sei_value() else {
            return false;
        };
        for _ in 0..size {
            if rbsp.next().is_none() {
                return false;
            }
        }
        // rbsp_trailing_bits: 0x80 and nothing but zeros after.
        match rbsp.peek() {
            None | Some(0x80) => return false,
            _ => {}
        }
    }
}

/// Bytes of a NAL with emulation_prevention_three_byte removed.
struct Rbsp<'a> {
    b: &'a [u8],
    pos: usize,
    zeros: usize,
}

impl Rbsp<'_> {
    fn next(&mut self) -> Option<u8> {
        let mut c = *self.b.get(self.pos)?;
        if self.zeros >= 2 && c == 3 {
            self.pos += 1;
            self.zeros = 0;
            c = *self.b.get(self.pos)?;
        }
        self.pos += 1;
        self.zeros = if c == 0 { self.zeros + 1 } else { 0 };
        Some(c)
    }

    fn peek(&self) -> Option<u8> {
        let mut p = self.pos;
        if self.zeros >= 2 && self.b.get(p) == Some(&3) {
            p += 1;
        }
        self.b.get(p).copied()
    }

    /// ff_byte* then last byte, as payloadType / payloadSize are coded.
    fn sei_value(&mut self) -> Option<usize> {
        let mut v = 0usize;
        loop {
            let c = self.next()?;
            v = v.saturating_add(c as usize);
            if c != 0xFF {
                return Some(v);
            }
        }
    }
}

/// Packets handed on because the gate could not hold them longer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GateStats {
    /// Times MAX_HELD_PACKETS was reached and the pending PES was let go as
    /// not an entry point.
    pub held_overflows: u64,
}

/// Holds a program's packets from a video PES start until the detector's
/// verdict, so the fan-out can cut at entry points. See the module docs.
#[derive(Debug)]
pub struct EntryPointGate {
    video_pid: u16,
    pub detector: EntryPointDetector,
    /// Whole packets, the first being the pending video PES start packet.
    held: Vec<u8>,
    pub stats: GateStats,
}

impl EntryPointGate {
    pub fn new(codec: VideoCodec, video_pid: u16) -> EntryPointGate {
        EntryPointGate {
            video_pid,
            detector: EntryPointDetector::new(codec),
            held: Vec::new(),
            stats: GateStats::default(),
        }
    }

    pub fn video_pid(&self) -> u16 {
        self.video_pid
    }

    /// Packets currently held back.
    pub fn held_packets(&self) -> usize {
        self.held.len() / PACKET_SIZE
    }

    /// Feed the next packet of the program (any PID). `emit(bytes,
    /// entry_point_at_start)` is called zero or more times with whole
    /// packets, in input order; `entry_point_at_start` is true only when
    /// `bytes` begins with the start packet of an entry-point PES.
    pub fn push(&mut self, pkt: &Packet<&[u8]>, mut emit: impl FnMut(&[u8], bool)) {
        let bytes = pkt.as_bytes();
        if pkt.pid() != self.video_pid {
            if self.held.is_empty() {
                emit(bytes, false);
            } else {
                self.hold(bytes, &mut emit);
            }
            return;
        }
        if pkt.payload_unit_start() && !self.held.is_empty() {
            // The detector drops the undecided PES on this start: so do we.
            emit(&self.held, false);
            self.held.clear();
        }
        match self.detector.push(pkt) {
            Some(entry_point) if !self.held.is_empty() => {
                self.held.extend_from_slice(bytes);
                emit(&self.held, entry_point);
                self.held.clear();
            }
            Some(entry_point) => emit(bytes, entry_point && pkt.payload_unit_start()),
            None if self.detector.is_pending() => self.hold(bytes, &mut emit),
            None => emit(bytes, false),
        }
    }

    fn hold(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        self.held.extend_from_slice(bytes);
        if self.held.len() >= MAX_HELD_PACKETS * PACKET_SIZE {
            self.stats.held_overflows += 1;
            self.detector.abandon();
            emit(&self.held, false);
            self.held.clear();
        }
    }

    /// Hand on whatever is held (end of stream, or the caller must drain).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.held.is_empty() {
            self.detector.abandon();
            emit(&self.held, false);
            self.held.clear();
        }
    }
}
