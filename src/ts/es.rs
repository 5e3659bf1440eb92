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
    let mut rbsp = Rbsp {
        b: nal,
        pos: 0,
        zeros: 0,
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::write_header;

    /// Packetize one PES (header + `es`) on PID 0x100, `chunk` ES bytes per
    /// packet (stuffing through the adaptation field), cc from `cc`.
    fn pes_packets(es: &[u8], chunk: usize, cc: &mut u8) -> Vec<[u8; PACKET_SIZE]> {
        let mut pes = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5];
        let mut t = [0u8; 5];
        crate::ts::pes::encode_pts(90_000, 2, &mut t);
        pes.extend_from_slice(&t);
        pes.extend_from_slice(es);
        let mut out = Vec::new();
        let mut first = true;
        for piece in pes.chunks(chunk.clamp(1, 184)) {
            let mut p = [0xFFu8; PACKET_SIZE];
            write_header(&mut p, 0x100, first, *cc);
            *cc = (*cc + 1) & 0x0F;
            first = false;
            let af = 184 - piece.len();
            if af > 0 {
                p[3] |= 0x20;
                p[4] = (af - 1) as u8;
                if af > 1 {
                    p[5] = 0;
                }
            }
            p[4 + af..].copy_from_slice(piece);
            out.push(p);
        }
        out
    }

    fn verdicts(
        codec: VideoCodec,
        pkts: &[[u8; PACKET_SIZE]],
    ) -> (Vec<(usize, bool)>, EntryPointDetector) {
        let mut d = EntryPointDetector::new(codec);
        let mut v = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            if let Some(x) = d.push(&Packet::new_checked(&p[..]).unwrap()) {
                v.push((i, x));
            }
        }
        (v, d)
    }

    const MPEG2_I: &[u8] = &[
        0, 0, 1, 0xB3, 0x14, 0x00, 0xF0, 0x13, 0xFF, 0xFF, 0xE0, 0x18, // sequence_header
        0, 0, 1, 0xB8, 0, 8, 0, 0, // GOP
        0, 0, 1, 0x00, 0x00, 0x0F, 0xFF, 0xF8, // picture, I
        0, 0, 1, 0x01, 0x22, 0x33,
    ];

    #[test]
    fn mpeg2_split_everywhere() {
        // Every split size puts start codes across packet boundaries.
        for chunk in 1..=40 {
            let mut cc = 0;
            let pkts = pes_packets(MPEG2_I, chunk, &mut cc);
            let (v, _) = verdicts(VideoCodec::Mpeg2, &pkts);
            assert_eq!(v.len(), 1, "chunk {chunk}");
            assert!(v[0].1, "chunk {chunk}");
        }
    }

    #[test]
    fn mpeg2_needs_sequence_header_and_i() {
        let mut cc = 0;
        let no_seq = &MPEG2_I[12..];
        let (v, _) = verdicts(VideoCodec::Mpeg2, &pes_packets(no_seq, 184, &mut cc));
        assert_eq!(v, vec![(0, false)]);
        let mut p_pic = MPEG2_I.to_vec();
        p_pic[25] = 0x10; // picture_coding_type 2 (P)
        let (v, _) = verdicts(VideoCodec::Mpeg2, &pes_packets(&p_pic, 184, &mut cc));
        assert_eq!(v, vec![(0, false)]);
    }

    #[test]
    fn h264_idr_sei_and_non_idr() {
        let idr = [
            0, 0, 0, 1, 9, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xCE, 0, 0, 1, 0x65, 0x88,
        ];
        let non = [0, 0, 0, 1, 9, 0xF0, 0, 0, 1, 0x41, 0x9A, 0, 0, 1, 0x65];
        // SEI: user data (type 5, 3 bytes, with an emulation prevention
        // byte), then recovery point (type 6), then a non-IDR slice.
        let sei = [
            0, 0, 1, 0x06, 5, 4, 0, 0, 3, 1, 7, 6, 1, 0x84, 0x80, 0, 0, 1, 0x41, 0x9A,
        ];
        let sei_no_rp = [
            0, 0, 1, 0x06, 5, 4, 0, 0, 3, 6, 9, 0x80, 0, 0, 1, 0x41, 0x9A,
        ];
        for chunk in 1..=30 {
            for (es, want) in [
                (&idr[..], true),
                (&non[..], false),
                (&sei[..], true),
                (&sei_no_rp[..], false),
            ] {
                let mut cc = 3;
                let (v, _) = verdicts(VideoCodec::H264, &pes_packets(es, chunk, &mut cc));
                assert_eq!(v.len(), 1, "chunk {chunk} {es:?}");
                assert_eq!(v[0].1, want, "chunk {chunk} {es:?}");
            }
        }
    }

    #[test]
    fn hevc_irap() {
        let cra = [0, 0, 0, 1, 0x46, 1, 0, 0, 1, 0x40, 1, 0, 0, 1, 0x2A, 1];
        let trail = [0, 0, 0, 1, 0x46, 1, 0, 0, 1, 0x02, 1];
        let mut cc = 0;
        assert_eq!(
            verdicts(VideoCodec::Hevc, &pes_packets(&cra, 184, &mut cc)).0,
            vec![(0, true)]
        );
        assert_eq!(
            verdicts(VideoCodec::Hevc, &pes_packets(&trail, 184, &mut cc)).0,
            vec![(0, false)]
        );
    }

    #[test]
    fn scrambled_and_cc_gap_say_no() {
        let mut cc = 0;
        let mut pkts = pes_packets(MPEG2_I, 8, &mut cc);
        pkts[0][3] |= 0x80; // even key on the start packet
        let (v, d) = verdicts(VideoCodec::Mpeg2, &pkts);
        assert_eq!(v, vec![(0, false)]);
        assert_eq!(d.stats.scrambled, 1);

        let mut cc = 0;
        let mut pkts = pes_packets(MPEG2_I, 8, &mut cc);
        pkts.remove(2);
        let (v, d) = verdicts(VideoCodec::Mpeg2, &pkts);
        assert_eq!(v, vec![(2, false)]);
        assert_eq!(d.stats.cc_gaps, 1);

        // A duplicate packet is ignored, not a gap.
        let mut cc = 0;
        let mut pkts = pes_packets(MPEG2_I, 8, &mut cc);
        pkts.insert(2, pkts[1]);
        let (v, d) = verdicts(VideoCodec::Mpeg2, &pkts);
        assert_eq!(v.len(), 1);
        assert!(v[0].1);
        assert_eq!(d.stats.duplicates, 1);
    }

    #[test]
    fn undecided_pes_is_bounded() {
        // A long PES with no start code: the scan stops at SCAN_LIMIT.
        let es = vec![0x55u8; SCAN_LIMIT * 2];
        let mut cc = 0;
        let pkts = pes_packets(&es, 184, &mut cc);
        let (v, d) = verdicts(VideoCodec::H264, &pkts);
        assert_eq!(v.len(), 1);
        assert!(!v[0].1);
        assert!(v[0].0 < SCAN_LIMIT / 184 + 2);
        assert_eq!(d.stats.scan_limit, 1);

        // The gate lets go of held packets before MAX_HELD_PACKETS.
        let mut gate = EntryPointGate::new(VideoCodec::H264, 0x100);
        let mut emitted = 0;
        let mut max_held = 0;
        for p in &pkts {
            gate.push(&Packet::new_checked(&p[..]).unwrap(), |b, _| {
                emitted += b.len()
            });
            max_held = max_held.max(gate.held_packets());
        }
        assert!(max_held <= MAX_HELD_PACKETS);
        assert_eq!(emitted, pkts.len() * PACKET_SIZE);
    }

    #[test]
    fn never_panics_on_noise() {
        // xorshift noise as ES and as whole packets.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for codec in [
            VideoCodec::Mpeg2,
            VideoCodec::H264,
            VideoCodec::Hevc,
            VideoCodec::Other,
        ] {
            let mut gate = EntryPointGate::new(codec, 0x100);
            for _ in 0..3000 {
                let mut p = [0u8; PACKET_SIZE];
                for b in p.iter_mut() {
                    // Many zeros and ones so start codes appear.
                    *b = match rnd() % 4 {
                        0 | 1 => 0,
                        2 => 1,
                        _ => rnd() as u8,
                    };
                }
                p[0] = 0x47;
                p[1] = (p[1] & 0xE0) | 0x01;
                p[2] = 0x00;
                if rnd() % 3 == 0 {
                    p[4..8].copy_from_slice(&[0, 0, 1, 0xE0]);
                }
                if let Ok(pkt) = Packet::new_checked(&p[..]) {
                    gate.push(&pkt, |_, _| {});
                }
            }
        }
    }
}
