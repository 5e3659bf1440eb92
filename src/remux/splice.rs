//! The splice: one channel's stable output stream out of several sources.
//!
//! Each source hands the `Splicer` a single-program transport stream with its
//! own PAT, PMT, PIDs and clock (a service out of `Remux`, a peer capbox's
//! stream, the slate file looped). Only the source on air reaches the output;
//! a switch (`switch_to`) changes nothing a client sees but the content:
//!
//! - **Stable PIDs.** Every elementary stream goes to a PID chosen by its role
//!   and language, not by the PID or the order a source uses (the plan below).
//!   A slot, once given to (kind, language, audio_type, n-th of that key),
//!   keeps its PID for the life of the splicer while slots remain.
//! - **Own PAT and PMT**, sent at once on every switch and repeated every
//!   `psi_interval` (of wall time or of output stream time, whichever comes
//!   first). The PMT version is bumped whenever its content (the stream set,
//!   types, descriptors) changes. CA descriptors are dropped: ECM PIDs are not
//!   carried (sources are clear here).
//! - **Continuity counters** of each output PID continue across a switch; the
//!   source's own pattern (gaps, duplicates) is kept after that, so a loss
//!   upstream stays visible downstream. The first packet of each PID after a
//!   switch carries a discontinuity_indicator: set in its adaptation field if
//!   it has one, else announced by an adaptation-only packet inserted before
//!   it (which, having no payload, repeats the previous counter).
//! - **Random access cut.** After `switch_to`, the old source stays on air
//!   until the new one starts a video PES that `ts::es` proves to be an entry
//!   point (held by an `EntryPointGate`), for at most `rap_wait`; after that
//!   the cut happens anyway, counted. A source without video cuts on the next
//!   PES start. After the cut each PID starts at its next PES start. While
//!   the switch is pending the old source goes out PES by PES (a packet
//!   leaves once the next PES of its PID began, at most `MAX_HELD_PACKETS`
//!   held), so the cut leaves no half PES behind: its unfinished last PES is
//!   dropped, counted.
//! - **One timeline.** PCR, PTS and DTS are re-stamped with an offset per
//!   activation, so time moves forward across a switch: the new source's first
//!   timestamp lands where the latest PES sent ends (its DTS plus the PID's
//!   PES duration), and its PCR after the latest PCR sent. The same happens
//!   when the source on air jumps by itself (a looped file, a restarted
//!   encoder): a PCR or lead-stream DTS going back, or forward by more than
//!   `MAX_FORWARD_JUMP`, re-anchors the offset. Arithmetic is modulo 2^33
//!   (PTS/DTS) and 2^33·300 (PCR, 27 MHz with its extension). The lead
//!   stream (video, else the first audio) or the PCR sets the offset; other
//!   streams' PES wait for it (at most `MAX_ANCHOR_WAIT`). The first PES of
//!   each PID after that must start after the end of the last one sent on
//!   that PID: the lead (and the first PCR) push the offset forward if
//!   needed, other streams drop that PES. Audio DTS never go back in the
//!   output. Wall time plays no part in the offset: an outage shows as a
//!   pause, never as a hole in the timeline.
//!
//! Output PID plan (ISO/IEC 13818-1 PIDs; the hex digit of hundreds names the
//! role):
//!
//! | PID             | role                                                  |
//! |-----------------|-------------------------------------------------------|
//! | 0x0000          | PAT (one program, `program_number` of the config)      |
//! | 0x0100          | PMT                                                   |
//! | 0x0200..=0x0201 | video (first, second)                                 |
//! | 0x0300..=0x030F | audio: one per (language, audio_type, n-th), first seen first |
//! | 0x0400..=0x0407 | DVB subtitles, by language                            |
//! | 0x0500..=0x0503 | teletext, by language                                 |
//! | 0x0600..=0x0607 | other data                                            |
//! | 0x0700          | PCR, when a source carries it on a PID of its own      |
//!
//! Promises: never panics on any input; memory is fixed (tables sized by the
//! constants below, the gate bounded by `ts::es::MAX_HELD_PACKETS`); every
//! packet not sent lands in a counter of `SpliceStats`. Cost per packet on
//! air: one table lookup, one 188-byte copy, a few header reads. Packets of
//! sources off air are only looked at for their PAT and PMT.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ts::descriptor::{tag, Descriptors};
use crate::ts::es::EntryPointGate;
use crate::ts::packet::{self, Packet, PACKET_SIZE, PCR_WRAP};
use crate::ts::pat::{PatEntry, PatRepr};
use crate::ts::pes::{self, PesHeader, PTS_WRAP};
use crate::ts::pmt::{PmtRepr, PmtStream, StreamKind};
use crate::ts::section::{packetize, Assembler, Section};
use crate::ts::{pid, table_id, Error};

/// Sources one splicer accepts (indexes 0..MAX_SOURCES).
pub const MAX_SOURCES: usize = 16;
/// The output's PMT PID.
pub const PMT_PID: u16 = 0x0100;
/// The output's first video PID (where the fan-out looks for entry points).
pub const VIDEO_PID: u16 = 0x0200;
/// The output's first audio PID.
pub const AUDIO_PID: u16 = 0x0300;
/// The output's PCR PID when a source's PCR has a PID of its own.
pub const PCR_ONLY_PID: u16 = 0x0700;
/// A forward jump of the source's PCR or lead DTS beyond this (90 kHz) is
/// taken for a new timeline (3 s).
pub const MAX_FORWARD_JUMP: u64 = 3 * pes::PTS_HZ;
/// Packets of the old source held at most while a switch is pending.
pub const MAX_HELD_PACKETS: usize = 4096;
/// PES of other streams dropped waiting for the lead stream (a dead video
/// PID) before any stream may set the timeline.
pub const MAX_ANCHOR_WAIT: u32 = 64;
/// The gap put between the last timestamp sent and the first of a new
/// timeline before any frame duration was measured (40 ms, 90 kHz).
pub const DEFAULT_STEP: u64 = 3600;

/// (kind, first PID, number of PIDs) of the plan.
const PLAN: [(StreamKind, u16, usize); 5] = [
    (StreamKind::Video, VIDEO_PID, 2),
    (StreamKind::Audio, AUDIO_PID, 16),
    (StreamKind::Subtitles, 0x0400, 8),
    (StreamKind::Teletext, 0x0500, 4),
    (StreamKind::Data, 0x0600, 8),
];
/// ES slots (sum of the plan's counts) plus the PCR-only slot.
const SLOTS: usize = 2 + 16 + 8 + 4 + 8 + 1;
const PCR_SLOT: usize = SLOTS - 1;
/// No slot for this source PID.
const UNMAPPED: u8 = u8::MAX;

/// How a splicer behaves. `Default` gives the values named in each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceConfig {
    /// How long the old source stays on air waiting for an entry point of the
    /// new one (1 s).
    pub rap_wait: Duration,
    /// PAT/PMT repetition (100 ms).
    pub psi_interval: Duration,
    /// program_number of the output's only program (1).
    pub program_number: u16,
    /// transport_stream_id of the output's PAT (1).
    pub transport_stream_id: u16,
    /// Preroll (0: off): each source off air keeps its packets since its
    /// latest video entry point, up to this many bytes, so a switch to a
    /// live backup cuts at once on that entry point instead of waiting
    /// for the next one (the decoder gets a picture at once; the output
    /// carries that part of a GOP in a burst). A source whose GOP does not
    /// fit, or that sent nothing for `PREROLL_FRESH`, waits as without.
    pub preroll_bytes: usize,
}

/// A preroll older than this (the source stopped) is not used.
pub const PREROLL_FRESH: Duration = Duration::from_millis(300);

impl Default for SpliceConfig {
    fn default() -> Self {
        SpliceConfig {
            rap_wait: Duration::from_secs(1),
            psi_interval: Duration::from_millis(100),
            program_number: 1,
            transport_stream_id: 1,
            preroll_bytes: 0,
        }
    }
}

/// Counters of one splicer, in packets. Every packet in is sent
/// (`packets_carried`), read for its tables (`source_psi_packets`), off air,
/// held for now (`Splicer::held_packets`), or in exactly one drop counter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SpliceStats {
    pub packets_in: u64,
    /// Everything sent: carried packets, PAT/PMT, inserted packets.
    pub packets_out: u64,
    /// Packets of the sources sent on.
    pub packets_carried: u64,
    /// PAT and PMT packets of the sources (read, never sent).
    pub source_psi_packets: u64,
    /// Packets of sources off air (only their PAT/PMT were read).
    pub packets_off_air: u64,
    /// Drop: no sync byte, short, or impossible adaptation field.
    pub bad_packets: u64,
    /// Drop: pushed with a source index ≥ MAX_SOURCES.
    pub bad_source_packets: u64,
    /// Cuts from one source (or none) to another.
    pub switches: u64,
    /// Cuts made on an entry point of the new source.
    pub cuts_on_rap: u64,
    /// Cuts made without one after `rap_wait`.
    pub rap_timeouts: u64,
    /// Cuts made at once on the new source's preroll (its latest entry
    /// point, already received).
    pub cuts_on_preroll: u64,
    /// Packets sent from prerolls (counted off air when they arrived; a
    /// replayed packet moves to `packets_carried`).
    pub preroll_packets: u64,
    /// Prerolls given up because a GOP did not fit `preroll_bytes`.
    pub preroll_overflows: u64,
    /// Drop: packets of the incoming source before its entry point.
    pub dropped_waiting_rap: u64,
    /// Drop: packets of a PID after a cut, before its first PES start.
    pub dropped_before_pes_start: u64,
    /// Drop: packets of PIDs with no output slot (SI, ECM, plan full…).
    pub unmapped_packets: u64,
    /// Elementary streams left out because their kind's slots were full.
    pub unmapped_streams: u64,
    /// Drop: packets of PES whose DTS would have gone back in the output.
    pub dropped_backwards: u64,
    /// Drop: PES of other streams before the lead stream set the timeline.
    pub dropped_before_anchor: u64,
    /// Drop: packets of the old source's last, unfinished PES at a cut.
    pub dropped_old_tail: u64,
    /// Held packets of the old source sent before their PES ended, because
    /// MAX_HELD_PACKETS was reached.
    pub hold_overflows: u64,
    /// Drop: packets of PES whose header did not fit the first packet.
    pub dropped_bad_pes_header: u64,
    /// New timelines of the source on air (loops, restarts).
    pub timeline_jumps: u64,
    /// Times the offset was pushed forward to keep PCR or video DTS rising.
    pub offset_bumps: u64,
    /// discontinuity_indicators set (in place or by an inserted packet).
    pub discontinuities_marked: u64,
    /// Adaptation-only packets inserted to carry one.
    pub af_packets_inserted: u64,
    /// PAT+PMT pairs sent.
    pub psi_sent: u64,
    pub pmt_version_changes: u64,
    /// Source PAT/PMT sections refused (CRC, malformed, wrong table).
    pub psi_errors: u64,
}

/// One stream of the output, as the PMT describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStream {
    pub pid: u16,
    pub kind: &'static str,
    pub language: Option<String>,
    pub stream_type: u8,
    /// The PID the source on air uses for it.
    pub source_pid: u16,
}

/// What a slot stands for; equal keys from two sources share the PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SlotKey {
    kind: StreamKind,
    language: [u8; 3],
    audio_type: u8,
    nth: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: Option<SlotKey>,
    /// Source PID on air for this slot (0x1FFF: none).
    source_pid: u16,
    /// Last continuity_counter sent.
    last_cc: Option<u8>,
    /// Added to the source's counter, fixed at the first packet after a cut.
    cc_delta: u8,
    /// Next packet gets a discontinuity_indicator and a fresh cc_delta.
    disc_pending: bool,
    /// Drop until the next payload_unit_start.
    wait_pusi: bool,
    /// Last DTS (or PTS) sent, output timeline.
    last_dts: Option<u64>,
    /// DTS distance between its last two PES: how long the last one lasts.
    last_dur: u64,
    /// PES starts seen on this slot (input side, for the hold).
    pes_seq: u32,
    /// The first PES after an anchor is still to be checked.
    check_first_pes: bool,
}

/// What the splicer knows of one source.
#[derive(Debug)]
struct SourceState {
    pat_asm: Assembler,
    pmt_asm: Assembler,
    pmt_pid: Option<u16>,
    pmt: Option<PmtRepr>,
}

impl SourceState {
    fn new() -> SourceState {
        SourceState {
            pat_asm: Assembler::new(),
            pmt_asm: Assembler::new(),
            pmt_pid: None,
            pmt: None,
        }
    }
}

/// A switch asked for and not made yet.
#[derive(Debug)]
struct Pending {
    source: usize,
    deadline: Instant,
    /// The new source's preroll, to cut on at the next push or tick.
    replay: Option<Vec<u8>>,
    /// Built once the source's PMT names a video stream.
    gate: Option<EntryPointGate>,
}

/// A source off air's packets since its latest video entry point.
#[derive(Debug)]
struct Warm {
    gate: EntryPointGate,
    buf: Vec<u8>,
    /// `buf` begins with an entry point.
    started: bool,
    /// When the source last sent a packet.
    last: Instant,
}

/// One channel's splicer. See the module docs.
#[derive(Debug)]
pub struct Splicer {
    config: SpliceConfig,
    sources: Vec<SourceState>,
    /// Each source's preroll while off air (`preroll_bytes`).
    warm: Vec<Option<Warm>>,
    active: Option<usize>,
    pending: Option<Pending>,
    /// Source PID → slot, for the source on air.
    map: Box<[u8; 8192]>,
    slots: [Slot; SLOTS],
    /// The slot of the lead stream (video, else the first audio).
    lead: Option<usize>,
    /// Source PCR PID on air (0x1FFF: none).
    pcr_pid: u16,
    pat_section: Vec<u8>,
    pmt_section: Vec<u8>,
    pmt_version: u8,
    /// The PMT's content at version 0, to tell a change.
    pmt_content: Option<PmtRepr>,
    pat_cc: u8,
    pmt_cc: u8,
    last_psi_wall: Option<Instant>,
    last_psi_pcr: Option<u64>,
    /// Offset added to source timestamps, 90 kHz, modulo 2^33.
    offset: u64,
    /// The offset is to be chosen at the next timestamp of the source on air.
    anchor_pending: bool,
    /// PES of other streams dropped while waiting for the lead to anchor.
    anchor_waits: u32,
    /// The first PCR after an anchor is still to be checked.
    check_first_pcr: bool,
    /// Last PCR sent (27 MHz) and the latest DTS sent on any PID (90 kHz).
    out_pcr: Option<u64>,
    /// End (DTS + duration) of the latest PES sent on any PID, and the
    /// latest PTS of the lead stream.
    out_end_max: Option<u64>,
    lead_pts_max: Option<u64>,
    /// Packets of the source on air held while a switch is pending, so that
    /// it leaves on whole PES: (packet, slot, its PES's pes_seq).
    hold: VecDeque<([u8; PACKET_SIZE], u8, u32)>,
    /// Source timeline on air: last PCR (90 kHz) and last lead DTS.
    src_pcr: Option<u64>,
    src_lead_dts: Option<u64>,
    /// Measured lead frame duration, 90 kHz.
    step: u64,
    stats: SpliceStats,
    /// Reused buffers for what the gate hands on.
    gate_bytes: Vec<u8>,
    gate_marks: Vec<(usize, bool)>,
}

/// Signed distance from `b` to `a` on the 33-bit circle.
fn ts_diff(a: u64, b: u64) -> i64 {
    let d = pes::pts_delta(b, a);
    if d >= PTS_WRAP / 2 {
        d as i64 - PTS_WRAP as i64
    } else {
        d as i64
    }
}

fn ts_add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b) & (PTS_WRAP - 1)
}

fn ts_sub(a: u64, b: u64) -> u64 {
    pes::pts_delta(b, a)
}

fn slot_pid(slot: usize) -> u16 {
    if slot == PCR_SLOT {
        return PCR_ONLY_PID;
    }
    let mut first = 0;
    for (_, base, n) in PLAN {
        if slot < first + n {
            return base + (slot - first) as u16;
        }
        first += n;
    }
    PCR_ONLY_PID
}

fn slot_range(kind: StreamKind) -> core::ops::Range<usize> {
    let mut first = 0;
    for (k, _, n) in PLAN {
        if k == kind {
            return first..first + n;
        }
        first += n;
    }
    0..0
}

fn strip_ca(loop_: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(loop_.len());
    for d in Descriptors::new(loop_) {
        if d.tag != tag::CA {
            d.emit(&mut v);
        }
    }
    v
}

/// The timestamps in a packet: PCR (27 MHz) and the PES header's PTS/DTS.
struct Stamps {
    pcr: Option<u64>,
    pts: Option<u64>,
    dts: Option<u64>,
    /// Offset of the PES header in the packet, when it carries timestamps.
    pes_at: Option<usize>,
}

enum PesRead {
    Stamps(Stamps),
    /// A PES start whose header does not fit this packet.
    Unreadable,
}

fn read_stamps(pkt: &Packet<&[u8]>) -> PesRead {
    let mut s = Stamps {
        pcr: pkt.pcr(),
        pts: None,
        dts: None,
        pes_at: None,
    };
    if pkt.payload_unit_start() && pkt.has_payload() {
        let payload = pkt.payload();
        if payload.len() >= 3 && payload[..3] == [0, 0, 1] {
            match PesHeader::new_checked(payload) {
                Ok(h) => {
                    s.pts = h.pts();
                    s.dts = h.dts();
                    if s.pts.is_some() {
                        s.pes_at = Some(pkt.payload_offset());
                    }
                }
                Err(Error::Truncated) => return PesRead::Unreadable,
                Err(_) => {}
            }
        }
    }
    PesRead::Stamps(s)
}

impl Splicer {
    pub fn new(config: SpliceConfig) -> Splicer {
        let pat = PatRepr {
            transport_stream_id: config.transport_stream_id,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: config.program_number,
                pid: PMT_PID,
            }],
        };
        Splicer {
            pat_section: pat.emit(),
            config,
            sources: (0..MAX_SOURCES).map(|_| SourceState::new()).collect(),
            warm: (0..MAX_SOURCES).map(|_| None).collect(),
            active: None,
            pending: None,
            map: Box::new([UNMAPPED; 8192]),
            slots: [Slot::default(); SLOTS],
            lead: None,
            pcr_pid: pid::NULL,
            pmt_section: Vec::new(),
            pmt_version: 0,
            pmt_content: None,
            pat_cc: 0,
            pmt_cc: 0,
            last_psi_wall: None,
            last_psi_pcr: None,
            offset: 0,
            anchor_pending: true,
            anchor_waits: 0,
            check_first_pcr: false,
            out_pcr: None,
            out_end_max: None,
            lead_pts_max: None,
            hold: VecDeque::new(),
            src_pcr: None,
            src_lead_dts: None,
            step: DEFAULT_STEP,
            stats: SpliceStats::default(),
            gate_bytes: Vec::new(),
            gate_marks: Vec::new(),
        }
    }

    /// The source on air, if any.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// The source a switch is waiting for, if any.
    pub fn pending(&self) -> Option<usize> {
        self.pending.as_ref().map(|p| p.source)
    }

    pub fn stats(&self) -> &SpliceStats {
        &self.stats
    }

    /// Packets held back now: the source on air's unfinished PES while a
    /// switch is pending, and the incoming source's awaiting a verdict.
    pub fn held_packets(&self) -> usize {
        self.hold.len()
            + self
                .pending
                .as_ref()
                .and_then(|p| p.gate.as_ref())
                .map_or(0, |g| g.held_packets())
    }

    /// version_number of the PMT sent.
    pub fn pmt_version(&self) -> u8 {
        self.pmt_version
    }

    /// Offset added to the source on air's PTS/DTS (90 kHz, modulo 2^33).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The streams of the output now, by output PID.
    pub fn pid_plan(&self) -> Vec<PlannedStream> {
        let mut v = Vec::new();
        let Some(pmt) = self.active.and_then(|a| self.sources[a].pmt.as_ref()) else {
            return v;
        };
        for s in &pmt.streams {
            let Some(&slot) = self.map.get(s.elementary_pid as usize) else {
                continue;
            };
            if slot == UNMAPPED || slot as usize == PCR_SLOT {
                continue;
            }
            v.push(PlannedStream {
                pid: slot_pid(slot as usize),
                kind: s.kind().as_str(),
                language: s.any_language(),
                stream_type: s.stream_type,
                source_pid: s.elementary_pid,
            });
        }
        v.sort_by_key(|p| p.pid);
        v
    }

    /// The PAT and PMT as sent now (for a client that joins), with the
    /// splicer's continuity counters left untouched; empty before the first
    /// cut.
    pub fn psi_packets(&self) -> Vec<u8> {
        let mut v = Vec::new();
        if self.pmt_section.is_empty() {
            return v;
        }
        let (mut a, mut b) = (self.pat_cc, self.pmt_cc);
        packetize(&self.pat_section, pid::PAT, &mut a, &mut v);
        packetize(&self.pmt_section, PMT_PID, &mut b, &mut v);
        v
    }

    /// Put `source` on air at its next entry point (within `rap_wait` of
    /// `now`). Asking for the source on air cancels a pending switch; an
    /// index ≥ MAX_SOURCES is ignored (false).
    pub fn switch_to(&mut self, source: usize, now: Instant) -> bool {
        self.switch(source, now, false)
    }

    /// As `switch_to`, for a source on air that has failed (nothing more
    /// will come of it): cut at once on the new source's preroll when it
    /// has one (`preroll_bytes`), else at its next entry point. A source
    /// on air that still delivers is better left by `switch_to`, which
    /// lets its current PES finish.
    pub fn switch_to_at_once(&mut self, source: usize, now: Instant) -> bool {
        self.switch(source, now, true)
    }

    fn switch(&mut self, source: usize, now: Instant, at_once: bool) -> bool {
        if source >= MAX_SOURCES {
            return false;
        }
        if self.active == Some(source) {
            // What the splicer held goes out with the next push or tick.
            self.drop_gate();
            self.pending = None;
            return true;
        }
        if self.pending.as_ref().map(|p| p.source) == Some(source) {
            return true;
        }
        let deadline = now.checked_add(self.config.rap_wait).unwrap_or(now);
        self.drop_gate();
        let replay = self
            .warm
            .get_mut(source)
            .and_then(|w| w.take())
            .and_then(|w| {
                (at_once
                    && w.started
                    && !w.buf.is_empty()
                    && now.saturating_duration_since(w.last) <= PREROLL_FRESH
                    && self.sources[source].pmt.is_some())
                .then_some(w.buf)
            });
        self.pending = Some(Pending {
            source,
            deadline,
            gate: None,
            replay,
        });
        self.rebuild_gate();
        true
    }

    /// Cut on the pending source's preroll, if it has one.
    fn replay_preroll(&mut self, out: &mut Vec<u8>) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let Some(buf) = p.replay.take() else {
            return;
        };
        let source = p.source;
        self.stats.cuts_on_preroll += 1;
        self.cut(source, out);
        let n = (buf.len() / PACKET_SIZE) as u64;
        self.stats.preroll_packets += n;
        self.stats.packets_off_air = self.stats.packets_off_air.saturating_sub(n);
        for raw in buf.chunks_exact(PACKET_SIZE) {
            if let Ok(k) = Packet::new_checked(raw) {
                self.send(&k, out);
            }
        }
    }

    /// Keep a source off air's packets since its latest entry point.
    fn warm_packet(&mut self, source: usize, pkt: &Packet<&[u8]>, now: Instant) {
        let cap = self.config.preroll_bytes;
        if cap == 0 {
            return;
        }
        let Some(slot) = self.warm.get_mut(source) else {
            return;
        };
        if slot.is_none() {
            let gate = self.sources[source].pmt.as_ref().and_then(|pmt| {
                pmt.streams.iter().find_map(|s| {
                    s.video_codec()
                        .map(|c| EntryPointGate::new(c, s.elementary_pid))
                })
            });
            let Some(gate) = gate else { return };
            *slot = Some(Warm {
                gate,
                buf: Vec::new(),
                started: false,
                last: now,
            });
        }
        let Some(w) = slot.as_mut() else { return };
        w.last = now;
        let Warm {
            gate, buf, started, ..
        } = w;
        let mut overflow = false;
        gate.push(pkt, |b, ep| {
            if ep {
                buf.clear();
                *started = true;
            }
            if *started {
                if buf.len() + b.len() > cap {
                    buf.clear();
                    buf.shrink_to(cap / 4);
                    *started = false;
                    overflow = true;
                } else {
                    buf.extend_from_slice(b);
                }
            }
        });
        if overflow {
            self.stats.preroll_overflows += 1;
        }
    }

    /// Repeat PAT/PMT when `psi_interval` of wall time has passed without
    /// them (call it when sources are silent; `push` does it too).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<u8>) {
        self.replay_preroll(out);
        if self.pending.is_none() {
            self.release_held(true, out);
        }
        let due = match self.last_psi_wall {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= self.config.psi_interval,
        };
        if due && self.active.is_some() && !self.pmt_section.is_empty() {
            self.send_psi(out);
            self.last_psi_wall = Some(now);
        }
    }

    /// Feed whole packets of `source` (a trailing partial packet is
    /// ignored: sources resync); what goes on air is appended to `out`.
    pub fn push(&mut self, source: usize, packets: &[u8], now: Instant, out: &mut Vec<u8>) {
        let n = (packets.len() / PACKET_SIZE) as u64;
        if source >= MAX_SOURCES {
            self.stats.packets_in += n;
            self.stats.bad_source_packets += n;
            return;
        }
        self.tick(now, out);
        for raw in packets.chunks_exact(PACKET_SIZE) {
            self.stats.packets_in += 1;
            let Ok(pkt) = Packet::new_checked(raw) else {
                self.stats.bad_packets += 1;
                continue;
            };
            self.push_packet(source, &pkt, now, out);
        }
    }

    fn push_packet(&mut self, source: usize, pkt: &Packet<&[u8]>, now: Instant, out: &mut Vec<u8>) {
        let p = pkt.pid();
        if p == pid::PAT {
            self.stats.source_psi_packets += 1;
            self.on_pat_packet(source, pkt);
            return;
        }
        if Some(p) == self.sources[source].pmt_pid {
            self.stats.source_psi_packets += 1;
            self.on_pmt_packet(source, pkt, out);
            return;
        }
        if self.active == Some(source) {
            if self.pending.is_some() {
                self.hold_packet(pkt, out);
            } else {
                self.release_held(true, out);
                self.send(pkt, out);
            }
            return;
        }
        if self.pending() != Some(source) {
            self.warm_packet(source, pkt, now);
        }
        let Some(pending) = self.pending.as_mut() else {
            self.stats.packets_off_air += 1;
            return;
        };
        if pending.source != source {
            self.stats.packets_off_air += 1;
            return;
        }
        let Some(pmt) = self.sources[source].pmt.as_ref() else {
            self.stats.dropped_waiting_rap += 1;
            return;
        };
        if now >= pending.deadline {
            // What the gate held goes first, in order.
            let mut held = Vec::new();
            if let Some(mut g) = pending.gate.take() {
                g.flush(|b, _| held.extend_from_slice(b));
            }
            self.stats.rap_timeouts += 1;
            self.cut(source, out);
            for raw in held.chunks_exact(PACKET_SIZE) {
                self.send_raw(raw, out);
            }
            self.send(pkt, out);
            return;
        }
        let Some(mut gate) = pending.gate.take() else {
            // No video: any PES start of a carried stream is an entry point.
            let carried = pmt.streams.iter().any(|s| s.elementary_pid == p);
            if carried && pkt.payload_unit_start() {
                self.stats.cuts_on_rap += 1;
                self.cut(source, out);
                self.send(pkt, out);
            } else {
                self.stats.dropped_waiting_rap += 1;
            }
            return;
        };
        let mut bytes = std::mem::take(&mut self.gate_bytes);
        let mut marks = std::mem::take(&mut self.gate_marks);
        bytes.clear();
        marks.clear();
        gate.push(pkt, |b, ep| {
            marks.push((bytes.len(), ep));
            bytes.extend_from_slice(b);
        });
        if let Some(pending) = self.pending.as_mut() {
            pending.gate = Some(gate);
        }
        let mut on_air = false;
        for (i, &(start, ep)) in marks.iter().enumerate() {
            let end = marks.get(i + 1).map(|m| m.0).unwrap_or(bytes.len());
            let chunk = &bytes[start..end];
            if !on_air && ep {
                self.stats.cuts_on_rap += 1;
                self.cut(source, out);
                on_air = true;
            }
            if on_air {
                for raw in chunk.chunks_exact(PACKET_SIZE) {
                    if let Ok(k) = Packet::new_checked(raw) {
                        self.send(&k, out);
                    }
                }
            } else {
                self.stats.dropped_waiting_rap += (chunk.len() / PACKET_SIZE) as u64;
            }
        }
        self.gate_bytes = bytes;
        self.gate_marks = marks;
    }

    fn on_pat_packet(&mut self, source: usize, pkt: &Packet<&[u8]>) {
        let mut sections: Vec<Vec<u8>> = Vec::new();
        self.sources[source]
            .pat_asm
            .push(pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            let Ok(sec) = Section::new_verified(&s[..]) else {
                self.stats.psi_errors += 1;
                continue;
            };
            let Ok(pat) = PatRepr::parse(&sec) else {
                self.stats.psi_errors += 1;
                continue;
            };
            let Some(first) = pat.programs().next() else {
                continue;
            };
            let st = &mut self.sources[source];
            if st.pmt_pid != Some(first.pid) {
                st.pmt_pid = Some(first.pid);
                st.pmt_asm.reset();
            }
        }
    }

    fn on_pmt_packet(&mut self, source: usize, pkt: &Packet<&[u8]>, out: &mut Vec<u8>) {
        let mut sections: Vec<Vec<u8>> = Vec::new();
        self.sources[source]
            .pmt_asm
            .push(pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            let Ok(sec) = Section::new_verified(&s[..]) else {
                self.stats.psi_errors += 1;
                continue;
            };
            if sec.table_id() != table_id::PMT {
                continue;
            }
            let Ok(pmt) = PmtRepr::parse(&sec) else {
                self.stats.psi_errors += 1;
                continue;
            };
            if self.sources[source].pmt.as_ref() == Some(&pmt) {
                continue;
            }
            self.sources[source].pmt = Some(pmt);
            if let Some(w) = self.warm.get_mut(source) {
                *w = None;
            }
            if self.active == Some(source) {
                self.remap(source, false);
                self.send_psi(out);
            }
            if self.pending() == Some(source) {
                self.rebuild_gate();
            }
        }
    }

    /// Forget what the pending switch's gate held, counted.
    fn drop_gate(&mut self) {
        if let Some(g) = self.pending.as_mut().and_then(|p| p.gate.take()) {
            self.stats.dropped_waiting_rap += g.held_packets() as u64;
        }
    }

    fn rebuild_gate(&mut self) {
        self.drop_gate();
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        pending.gate = self.sources[pending.source].pmt.as_ref().and_then(|pmt| {
            pmt.streams.iter().find_map(|s| {
                s.video_codec()
                    .map(|c| EntryPointGate::new(c, s.elementary_pid))
            })
        });
    }

    /// While a switch is pending, the source on air goes out PES by PES:
    /// a packet leaves once the PES it belongs to has ended (the next PES
    /// started on its PID), so the cut never leaves half a PES behind.
    fn hold_packet(&mut self, pkt: &Packet<&[u8]>, out: &mut Vec<u8>) {
        let slot = self.map[pkt.pid() as usize];
        if slot != UNMAPPED && pkt.payload_unit_start() {
            let s = &mut self.slots[slot as usize];
            s.pes_seq = s.pes_seq.wrapping_add(1);
        }
        let seq = if slot == UNMAPPED {
            0
        } else {
            self.slots[slot as usize].pes_seq
        };
        let mut raw = [0u8; PACKET_SIZE];
        raw.copy_from_slice(pkt.as_bytes());
        self.hold.push_back((raw, slot, seq));
        if self.hold.len() > MAX_HELD_PACKETS {
            self.stats.hold_overflows += 1;
            if let Some((raw, _, _)) = self.hold.pop_front() {
                self.send_raw(&raw, out);
            }
        }
        while let Some(&(raw, slot, seq)) = self.hold.front() {
            if !self.pes_complete(raw[3], slot, seq) {
                break;
            }
            self.hold.pop_front();
            self.send_raw(&raw, out);
        }
    }

    fn pes_complete(&self, control: u8, slot: u8, seq: u32) -> bool {
        control & 0x10 == 0
            || slot == UNMAPPED
            || slot as usize == PCR_SLOT
            || self.slots[slot as usize].pes_seq != seq
    }

    /// Send the held packets: all (`all`), or only those of whole PES, the
    /// rest counted as dropped (at a cut).
    fn release_held(&mut self, all: bool, out: &mut Vec<u8>) {
        while let Some((raw, slot, seq)) = self.hold.pop_front() {
            if all || self.pes_complete(raw[3], slot, seq) {
                self.send_raw(&raw, out);
            } else {
                self.stats.dropped_old_tail += 1;
            }
        }
    }

    fn send_raw(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if let Ok(k) = Packet::new_checked(raw) {
            self.send(&k, out);
        }
    }

    /// Take `source` on air now.
    fn cut(&mut self, source: usize, out: &mut Vec<u8>) {
        if let Some(w) = self.warm.get_mut(source) {
            *w = None;
        }
        self.release_held(false, out);
        self.drop_gate();
        self.pending = None;
        self.active = Some(source);
        self.stats.switches += 1;
        self.remap(source, true);
        self.anchor_pending = true;
        self.src_pcr = None;
        self.src_lead_dts = None;
        self.send_psi(out);
    }

    /// Map the source's streams to slots and rebuild the PMT. On a cut every
    /// slot restarts; on a PMT change only those whose source PID changed.
    fn remap(&mut self, source: usize, cut: bool) {
        let Some(pmt) = self.sources[source].pmt.clone() else {
            return;
        };
        self.map.fill(UNMAPPED);
        let mut taken = [false; SLOTS];
        let mut chosen: Vec<(usize, &PmtStream)> = Vec::new();
        let mut seen: Vec<SlotKey> = Vec::new();
        for s in &pmt.streams {
            let kind = s.kind();
            let (language, audio_type) = match s.language() {
                Some(l) => (l.code, l.audio_type),
                None => match s.any_language() {
                    Some(l) => match l.as_bytes() {
                        [a, b, c, ..] => ([*a, *b, *c], 0),
                        _ => ([0; 3], 0),
                    },
                    None => ([0; 3], 0),
                },
            };
            let mut key = SlotKey {
                kind,
                language,
                audio_type,
                nth: 0,
            };
            while seen.contains(&key) && key.nth < u8::MAX {
                key.nth += 1;
            }
            seen.push(key);
            let range = slot_range(kind);
            let found = range
                .clone()
                .find(|&i| !taken[i] && self.slots[i].key == Some(key))
                .or_else(|| {
                    range
                        .clone()
                        .find(|&i| !taken[i] && self.slots[i].key.is_none())
                })
                // Full: reuse one this source has not claimed.
                .or_else(|| range.clone().find(|&i| !taken[i]));
            let Some(slot) = found else {
                self.stats.unmapped_streams += 1;
                continue;
            };
            taken[slot] = true;
            self.slots[slot].key = Some(key);
            chosen.push((slot, s));
        }
        let old_pids: Vec<u16> = self.slots.iter().map(|s| s.source_pid).collect();
        for s in self.slots.iter_mut() {
            s.source_pid = pid::NULL;
        }
        for &(slot, s) in &chosen {
            self.map[s.elementary_pid as usize] = slot as u8;
            self.slots[slot].source_pid = s.elementary_pid;
        }
        self.pcr_pid = pmt.pcr_pid;
        let out_pcr_pid = if pmt.pcr_pid == pid::NULL {
            pid::NULL
        } else if let Some(&(slot, _)) =
            chosen.iter().find(|(_, s)| s.elementary_pid == pmt.pcr_pid)
        {
            slot_pid(slot)
        } else {
            self.map[pmt.pcr_pid as usize] = PCR_SLOT as u8;
            self.slots[PCR_SLOT].source_pid = pmt.pcr_pid;
            PCR_ONLY_PID
        };
        self.lead = chosen
            .iter()
            .find(|(_, s)| s.kind() == StreamKind::Video)
            .or_else(|| chosen.iter().find(|(_, s)| s.kind() == StreamKind::Audio))
            .map(|&(slot, _)| slot);
        for (i, s) in self.slots.iter_mut().enumerate() {
            if cut || s.source_pid != old_pids[i] {
                s.disc_pending = true;
                s.wait_pusi = i != PCR_SLOT;
                s.check_first_pes = true;
            }
        }
        let mut streams: Vec<PmtStream> = chosen
            .iter()
            .map(|&(slot, s)| PmtStream {
                stream_type: s.stream_type,
                elementary_pid: slot_pid(slot),
                descriptors: strip_ca(&s.descriptors),
            })
            .collect();
        streams.sort_by_key(|s| s.elementary_pid);
        let content = PmtRepr {
            program_number: self.config.program_number,
            version: 0,
            pcr_pid: out_pcr_pid,
            program_info: strip_ca(&pmt.program_info),
            streams,
        };
        if self.pmt_content.as_ref() != Some(&content) {
            if self.pmt_content.is_some() {
                self.pmt_version = (self.pmt_version + 1) & 0x1F;
                self.stats.pmt_version_changes += 1;
            }
            let mut versioned = content.clone();
            versioned.version = self.pmt_version;
            self.pmt_section = versioned.emit();
            self.pmt_content = Some(content);
        }
    }

    fn send_psi(&mut self, out: &mut Vec<u8>) {
        if self.pmt_section.is_empty() {
            return;
        }
        let before = out.len();
        packetize(&self.pat_section, pid::PAT, &mut self.pat_cc, out);
        packetize(&self.pmt_section, PMT_PID, &mut self.pmt_cc, out);
        self.stats.packets_out += ((out.len() - before) / PACKET_SIZE) as u64;
        self.stats.psi_sent += 1;
        self.last_psi_pcr = self.out_pcr;
    }

    /// Choose the offset so that this sample lands just after what was sent.
    fn anchor(&mut self, dts: Option<u64>, pts: Option<u64>, pcr90: Option<u64>) {
        self.anchor_pending = false;
        self.anchor_waits = 0;
        self.check_first_pcr = true;
        for s in self.slots.iter_mut() {
            s.check_first_pes = true;
        }
        let mut best: Option<u64> = None;
        let mut consider = |off: u64| {
            best = Some(match best {
                Some(b) if ts_diff(off, b) <= 0 => b,
                _ => off,
            });
        };
        if let (Some(d), Some(end)) = (dts, self.out_end_max) {
            consider(ts_sub(end, d));
        }
        if let (Some(p), Some(last)) = (pts, self.lead_pts_max) {
            consider(ts_sub(ts_add(last, self.step), p));
        }
        if let (Some(p), Some(last)) = (pcr90, self.out_pcr) {
            consider(ts_sub(ts_add(last / 300, self.step), p));
        }
        // Nothing sent yet: the first source keeps its own clock.
        if let Some(off) = best {
            self.offset = off;
        } else if self.out_end_max.is_none() && self.out_pcr.is_none() {
            self.offset = 0;
        }
    }

    fn bump(&mut self, by: u64) {
        self.offset = ts_add(self.offset, by);
        self.stats.offset_bumps += 1;
    }

    fn mark_all(&mut self) {
        for s in self.slots.iter_mut() {
            s.disc_pending = true;
        }
    }

    /// Send one packet of the source on air.
    fn send(&mut self, pkt: &Packet<&[u8]>, out: &mut Vec<u8>) {
        let p = pkt.pid();
        let slot = self.map[p as usize];
        if slot == UNMAPPED {
            self.stats.unmapped_packets += 1;
            return;
        }
        let slot = slot as usize;
        if self.slots[slot].wait_pusi {
            if !pkt.payload_unit_start() {
                self.stats.dropped_before_pes_start += 1;
                return;
            }
            self.slots[slot].wait_pusi = false;
        }
        let st = match read_stamps(pkt) {
            PesRead::Stamps(s) => s,
            PesRead::Unreadable => {
                self.stats.dropped_bad_pes_header += 1;
                self.slots[slot].wait_pusi = true;
                return;
            }
        };
        let is_pcr = p == self.pcr_pid;
        let pcr90 = if is_pcr {
            st.pcr.map(|v| v / 300)
        } else {
            None
        };
        let is_lead = Some(slot) == self.lead;
        let dts = st.dts.or(st.pts);
        let lead_dts = if is_lead { dts } else { None };

        // A new timeline of the source on air?
        if !self.anchor_pending {
            let jumped = |sample: Option<u64>, last: Option<u64>| match (sample, last) {
                (Some(x), Some(l)) => {
                    let d = ts_diff(x, l);
                    d < 0 || d > MAX_FORWARD_JUMP as i64
                }
                _ => false,
            };
            if jumped(pcr90, self.src_pcr) || jumped(lead_dts, self.src_lead_dts) {
                self.stats.timeline_jumps += 1;
                self.anchor_pending = true;
                self.mark_all();
            }
        }
        if self.anchor_pending {
            // The lead stream (or the PCR) sets the new timeline; other
            // streams' PES wait for it, so none is stamped on the old one.
            let lead_or_alone =
                is_lead || self.lead.is_none() || self.anchor_waits >= MAX_ANCHOR_WAIT;
            if pcr90.is_some() || (lead_or_alone && dts.is_some()) {
                let (d, p) = if lead_or_alone {
                    (dts, st.pts)
                } else {
                    (None, None)
                };
                self.anchor(d, p, pcr90);
            } else if dts.is_some() {
                self.anchor_waits += 1;
                self.stats.dropped_before_anchor += 1;
                self.slots[slot].wait_pusi = true;
                return;
            }
        }
        if pcr90.is_some() {
            self.src_pcr = pcr90;
        }
        if lead_dts.is_some() {
            self.src_lead_dts = lead_dts;
        }

        // Keep the output rising: the first PES of each PID after an anchor
        // and every audio PES.
        if let Some(d) = dts {
            let out_d = ts_add(d, self.offset);
            let s = self.slots[slot];
            if let Some(last) = s.last_dts {
                let dur = if s.last_dur > 0 {
                    s.last_dur
                } else {
                    self.step
                };
                // The first PES after an anchor must start where the last
                // one ended; afterwards audio must merely rise.
                let back = if s.check_first_pes {
                    ts_diff(out_d, ts_add(last, dur)) < 0
                } else {
                    ts_diff(out_d, last) <= 0
                };
                let audio = s.key.map(|k| k.kind) == Some(StreamKind::Audio);
                if back && s.check_first_pes && is_lead {
                    self.bump(ts_sub(ts_add(last, dur), out_d));
                } else if back && (s.check_first_pes || audio) {
                    self.stats.dropped_backwards += 1;
                    self.slots[slot].wait_pusi = true;
                    return;
                }
            }
            if let (true, true, Some(p), Some(last)) =
                (is_lead, s.check_first_pes, st.pts, self.lead_pts_max)
            {
                let out_p = ts_add(p, self.offset);
                if ts_diff(out_p, last) <= 0 {
                    self.bump(ts_sub(ts_add(last, self.step), out_p));
                }
            }
        }
        if let (Some(p90), true) = (pcr90, self.check_first_pcr) {
            self.check_first_pcr = false;
            if let Some(last) = self.out_pcr {
                let out_p = ts_add(p90, self.offset);
                if ts_diff(out_p, last / 300) <= 0 {
                    self.bump(ts_sub(ts_add(last / 300, self.step), out_p));
                }
            }
        }

        let mut buf = [0u8; PACKET_SIZE];
        buf.copy_from_slice(pkt.as_bytes());
        let mut out_pcr = None;
        if let Some(pcr) = st.pcr {
            let v = (pcr + self.offset * 300) % PCR_WRAP;
            let mut b6 = [0u8; 6];
            packet::encode_pcr(v, &mut b6);
            buf[6..12].copy_from_slice(&b6);
            if is_pcr {
                out_pcr = Some(v);
            }
        }
        if let (Some(at), Some(pts)) = (st.pes_at, st.pts) {
            let h = at + 9;
            let out_pts = ts_add(pts, self.offset);
            let mut b5 = [0u8; 5];
            let prefix = if st.dts.is_some() { 0b0011 } else { 0b0010 };
            pes::encode_pts(out_pts, prefix, &mut b5);
            if h + 5 <= PACKET_SIZE {
                buf[h..h + 5].copy_from_slice(&b5);
            }
            if let Some(d) = st.dts {
                pes::encode_pts(ts_add(d, self.offset), 0b0001, &mut b5);
                if h + 10 <= PACKET_SIZE {
                    buf[h + 5..h + 10].copy_from_slice(&b5);
                }
            }
        }
        if let Some(d) = dts {
            let out_d = ts_add(d, self.offset);
            let s = &mut self.slots[slot];
            if let Some(last) = s.last_dts {
                let gap = ts_diff(out_d, last);
                // A PES lasts until the next; more than 1 s is a hole.
                if gap > 0 && gap <= pes::PTS_HZ as i64 && !s.check_first_pes {
                    s.last_dur = gap as u64;
                    if is_lead && gap <= 9000 {
                        self.step = gap as u64;
                    }
                }
            }
            let s = &mut self.slots[slot];
            s.last_dts = Some(out_d);
            s.check_first_pes = false;
            let dur = if s.last_dur > 0 {
                s.last_dur
            } else {
                self.step
            };
            let end = ts_add(out_d, dur);
            self.out_end_max = Some(match self.out_end_max {
                Some(m) if ts_diff(m, end) >= 0 => m,
                _ => end,
            });
            if let (true, Some(p)) = (is_lead, st.pts) {
                let out_p = ts_add(p, self.offset);
                self.lead_pts_max = Some(match self.lead_pts_max {
                    Some(m) if ts_diff(m, out_p) >= 0 => m,
                    _ => out_p,
                });
            }
        }
        if let Some(v) = out_pcr {
            self.out_pcr = Some(v);
            match self.last_psi_pcr.map(|l| packet::pcr_delta(l, v)) {
                Some(d) if d >= PCR_WRAP / 2 => self.last_psi_pcr = Some(v), // went back
                Some(d) if d < crate::remux::PSI_INTERVAL => {}
                _ => self.send_psi(out),
            }
        }
        buf[1] = (buf[1] & 0xE0) | ((slot_pid(slot) >> 8) as u8 & 0x1F);
        buf[2] = slot_pid(slot) as u8;
        self.finish(slot, &mut buf, out);
    }

    /// Continuity counter and discontinuity_indicator, then out.
    fn finish(&mut self, slot: usize, buf: &mut [u8; PACKET_SIZE], out: &mut Vec<u8>) {
        let has_payload = buf[3] & 0x10 != 0;
        let has_af = buf[3] & 0x20 != 0;
        let src_cc = buf[3] & 0x0F;
        let s = &mut self.slots[slot];
        if s.disc_pending {
            s.disc_pending = false;
            self.stats.discontinuities_marked += 1;
            let last = s.last_cc.unwrap_or(0x0F);
            if has_af && buf[4] >= 1 {
                buf[5] |= 0x80;
            } else {
                let mut af = [0xFFu8; PACKET_SIZE];
                af[..4].copy_from_slice(&buf[..4]);
                af[1] &= !0x40; // no payload_unit_start without payload
                af[3] = (buf[3] & 0xC0) | 0x20 | last;
                af[4] = 183;
                af[5] = 0x80;
                out.extend_from_slice(&af);
                self.stats.af_packets_inserted += 1;
                self.stats.packets_out += 1;
            }
            let next = if has_payload { (last + 1) & 0x0F } else { last };
            s.cc_delta = next.wrapping_sub(src_cc) & 0x0F;
        }
        let cc = (src_cc + s.cc_delta) & 0x0F;
        buf[3] = (buf[3] & 0xF0) | cc;
        s.last_cc = Some(cc);
        out.extend_from_slice(&buf[..]);
        self.stats.packets_out += 1;
        self.stats.packets_carried += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::write_header;
    use std::collections::HashMap;

    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21];
    const NON_IDR: &[u8] = &[0, 0, 0, 1, 0x41, 0x9A, 0x02, 0x03];
    const AUDIO: &[u8] = &[0xFF, 0xFD, 0x90, 0x04];
    const GOP: u64 = 10;
    const FRAME: u64 = 3600;
    /// PCR runs 0.7 s behind DTS, as ffmpeg muxes.
    const MUX_DELAY: u64 = 63_000;

    fn lang(code: &[u8; 3]) -> Vec<u8> {
        vec![tag::ISO_639_LANGUAGE, 4, code[0], code[1], code[2], 0]
    }

    /// A single-program source that counts its own continuity.
    struct Src {
        pmt_pid: u16,
        pmt: PmtRepr,
        video: Option<u16>,
        audio: Vec<u16>,
        cc: HashMap<u16, u8>,
        /// Timestamp of frame 0, 90 kHz.
        base: u64,
        frame: u64,
    }

    impl Src {
        fn new(pmt_pid: u16, video: Option<u16>, audio: &[(u16, &[u8; 3])], base: u64) -> Src {
            let mut streams = Vec::new();
            if let Some(v) = video {
                streams.push(PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: v,
                    descriptors: vec![],
                });
            }
            for (p, l) in audio {
                streams.push(PmtStream {
                    stream_type: 0x03,
                    elementary_pid: *p,
                    descriptors: lang(l),
                });
            }
            Src {
                pmt_pid,
                pmt: PmtRepr {
                    program_number: 7,
                    version: 3,
                    pcr_pid: video.unwrap_or_else(|| audio[0].0),
                    program_info: vec![],
                    streams,
                },
                video,
                audio: audio.iter().map(|a| a.0).collect(),
                cc: HashMap::new(),
                base,
                frame: 0,
            }
        }

        fn next_cc(&mut self, pid: u16) -> u8 {
            let c = self.cc.entry(pid).or_insert(15);
            *c = (*c + 1) & 15;
            *c
        }

        fn psi(&mut self) -> Vec<u8> {
            let pat = PatRepr {
                transport_stream_id: 9,
                version: 0,
                section_number: 0,
                last_section_number: 0,
                entries: vec![PatEntry {
                    program_number: 7,
                    pid: self.pmt_pid,
                }],
            };
            let mut v = Vec::new();
            let mut c = self.cc.get(&0).map(|c| (c + 1) & 15).unwrap_or(0);
            packetize(&pat.emit(), 0, &mut c, &mut v);
            self.cc.insert(0, c.wrapping_sub(1) & 15);
            let pp = self.pmt_pid;
            let mut c = self.cc.get(&pp).map(|c| (c + 1) & 15).unwrap_or(0);
            packetize(&self.pmt.emit(), pp, &mut c, &mut v);
            self.cc.insert(pp, c.wrapping_sub(1) & 15);
            v
        }

        /// One PES in `n` packets, PCR in the first when asked.
        fn pes(
            &mut self,
            pid: u16,
            pts: u64,
            dts: Option<u64>,
            pcr: Option<u64>,
            es: &[u8],
            n: usize,
        ) -> Vec<u8> {
            let mut pes = vec![0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5];
            let mut t = [0u8; 5];
            if let Some(d) = dts {
                pes[7] = 0xC0;
                pes[8] = 10;
                pes::encode_pts(pts, 3, &mut t);
                pes.extend_from_slice(&t);
                pes::encode_pts(d, 1, &mut t);
                pes.extend_from_slice(&t);
            } else {
                pes::encode_pts(pts, 2, &mut t);
                pes.extend_from_slice(&t);
            }
            pes.extend_from_slice(es);
            let mut out = Vec::new();
            let mut rest = &pes[..];
            for i in 0..n {
                let mut p = [0xFFu8; PACKET_SIZE];
                let cc = self.next_cc(pid);
                write_header(&mut p, pid, i == 0, cc);
                let mut off = 4;
                if i == 0 && pcr.is_some() {
                    p[3] |= 0x20;
                    p[4] = 7;
                    p[5] = 0x10;
                    let mut b = [0u8; 6];
                    packet::encode_pcr(pcr.unwrap_or(0) % PCR_WRAP, &mut b);
                    p[6..12].copy_from_slice(&b);
                    off = 12;
                }
                let take = rest.len().min(PACKET_SIZE - off);
                p[off..off + take].copy_from_slice(&rest[..take]);
                for b in p[off + take..].iter_mut() {
                    *b = 0xAB;
                }
                rest = &rest[take..];
                out.extend_from_slice(&p);
            }
            out
        }

        /// The next `frames` frames: video (3 packets, PCR on each) and one
        /// audio PES per language; PAT/PMT every 5 frames.
        fn frames(&mut self, frames: u64) -> Vec<u8> {
            let mut v = Vec::new();
            for _ in 0..frames {
                let n = self.frame;
                self.frame += 1;
                if n.is_multiple_of(5) {
                    v.extend(self.psi());
                }
                let dts = (self.base + n * FRAME) & (PTS_WRAP - 1);
                if let Some(vp) = self.video {
                    let es = if n.is_multiple_of(GOP) { IDR } else { NON_IDR };
                    let pcr = ((dts + PTS_WRAP - MUX_DELAY) % PTS_WRAP) * 300;
                    v.extend(self.pes(
                        vp,
                        (dts + 2 * FRAME) & (PTS_WRAP - 1),
                        Some(dts),
                        Some(pcr),
                        es,
                        3,
                    ));
                }
                for a in self.audio.clone() {
                    let pcr = if self.video.is_none() && Some(&a) == self.audio.first() {
                        Some(((dts + PTS_WRAP - MUX_DELAY) % PTS_WRAP) * 300)
                    } else {
                        None
                    };
                    v.extend(self.pes(a, dts, None, pcr, AUDIO, 1));
                }
            }
            v
        }
    }

    #[derive(Debug, Clone)]
    struct Out {
        index: usize,
        pid: u16,
        cc: u8,
        payload: bool,
        pusi: bool,
        disc: bool,
        pcr: Option<u64>,
        dts: Option<u64>,
        es: Vec<u8>,
    }

    fn parse(out: &[u8]) -> Vec<Out> {
        assert_eq!(out.len() % PACKET_SIZE, 0);
        out.chunks(PACKET_SIZE)
            .enumerate()
            .map(|(index, raw)| {
                let p = Packet::new_checked(raw).expect("valid packet out");
                let (mut dts, mut es) = (None, vec![]);
                if p.payload_unit_start() {
                    if let Ok(h) = PesHeader::new_checked(p.payload()) {
                        dts = h.dts().or(h.pts());
                        es = h.payload().iter().copied().take(8).collect();
                    }
                }
                Out {
                    index,
                    pid: p.pid(),
                    cc: p.continuity_counter(),
                    payload: p.has_payload(),
                    pusi: p.payload_unit_start(),
                    disc: p.discontinuity(),
                    pcr: p.pcr(),
                    dts,
                    es,
                }
            })
            .collect()
    }

    fn pmts(out: &[Out], raw: &[u8]) -> Vec<PmtRepr> {
        let mut asm = Assembler::new();
        let mut v = Vec::new();
        for o in out.iter().filter(|o| o.pid == PMT_PID) {
            let p = Packet::new_checked(&raw[o.index * PACKET_SIZE..][..PACKET_SIZE]).unwrap();
            asm.push(&p, |s| {
                let s = Section::new_verified(s).unwrap();
                v.push(PmtRepr::parse(&s).unwrap());
            });
        }
        v
    }

    /// Every payload packet continues its PID's counter, or is marked.
    fn assert_cc(out: &[Out]) {
        let mut last: HashMap<u16, u8> = HashMap::new();
        for o in out {
            if let Some(&l) = last.get(&o.pid) {
                let want = if o.payload { (l + 1) & 15 } else { l };
                assert!(
                    o.cc == want || o.disc,
                    "packet {} pid {:#x}: cc {} after {}",
                    o.index,
                    o.pid,
                    o.cc,
                    l
                );
            }
            last.insert(o.pid, o.cc);
        }
    }

    /// DTS rise on every PID, PCR rises.
    fn assert_rising(out: &[Out]) {
        let mut last: HashMap<u16, u64> = HashMap::new();
        let mut last_pcr: Option<u64> = None;
        for o in out {
            if let Some(d) = o.dts {
                if let Some(&l) = last.get(&o.pid) {
                    assert!(
                        ts_diff(d, l) > 0,
                        "packet {} pid {:#x}: DTS {d} after {l}",
                        o.index,
                        o.pid
                    );
                }
                last.insert(o.pid, d);
            }
            if let Some(p) = o.pcr {
                if let Some(l) = last_pcr {
                    assert!(
                        ts_diff(p / 300, l / 300) > 0,
                        "packet {}: PCR {p} after {l}",
                        o.index
                    );
                }
                last_pcr = Some(p);
            }
        }
    }

    /// Every packet in is accounted for once.
    fn assert_accounted(sp: &Splicer) {
        let s = sp.stats();
        let sum = s.packets_carried
            + s.source_psi_packets
            + s.packets_off_air
            + s.bad_packets
            + s.bad_source_packets
            + s.dropped_waiting_rap
            + s.dropped_before_pes_start
            + s.unmapped_packets
            + s.dropped_backwards
            + s.dropped_before_anchor
            + s.dropped_old_tail
            + s.dropped_bad_pes_header
            + sp.held_packets() as u64;
        assert_eq!(s.packets_in, sum, "{s:#?}");
    }

    fn t(ms: u64) -> Instant {
        thread_local!(static T0: Instant = Instant::now());
        T0.with(|t0| *t0 + Duration::from_millis(ms))
    }

    /// A (video 0x100, audio fra 0x101) then B (audio eng 0x44, video 0x41,
    /// audio fra 0x45): both fed 40 ms at a time, B asked for at frame
    /// `switch_at` of A's 40 frames.
    fn a_then_b(switch_at: u64, b_base: u64) -> (Splicer, Vec<u8>) {
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut b = Src::new(
            0x0FAB,
            Some(0x41),
            &[(0x44, b"eng"), (0x45, b"fra")],
            b_base,
        );
        // B's GOP is offset so the switch lands mid-GOP.
        b.frame = 3;
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..40 {
            let now = t(40 * f);
            if f == switch_at {
                assert!(sp.switch_to(1, now));
            }
            let pa = a.frames(1);
            sp.push(0, &pa, now, &mut out);
            let pb = b.frames(1);
            sp.push(1, &pb, now, &mut out);
        }
        (sp, out)
    }

    #[test]
    fn pids_follow_the_plan_not_the_source() {
        let (sp, raw) = a_then_b(15, 5_000_000);
        let out = parse(&raw);
        let pids: std::collections::BTreeSet<u16> = out.iter().map(|o| o.pid).collect();
        assert_eq!(
            pids,
            [0, PMT_PID, 0x200, 0x300, 0x301].into_iter().collect()
        );
        // fra was seen first (on A): it keeps 0x300 on B, where eng is listed
        // first; eng gets the next audio PID.
        let plan = sp.pid_plan();
        let by_lang: HashMap<Option<String>, u16> =
            plan.iter().map(|p| (p.language.clone(), p.pid)).collect();
        assert_eq!(by_lang[&Some("fra".into())], 0x300);
        assert_eq!(by_lang[&Some("eng".into())], 0x301);
        assert_eq!(
            plan[0],
            PlannedStream {
                pid: 0x200,
                kind: "video",
                language: None,
                stream_type: 0x1B,
                source_pid: 0x41
            }
        );
    }

    #[test]
    fn pmt_sent_at_once_and_version_bumped_when_streams_change() {
        let (sp, raw) = a_then_b(15, 5_000_000);
        let out = parse(&raw);
        let p = pmts(&out, &raw);
        assert_eq!(p.first().map(|p| p.version), Some(0));
        assert_eq!(p.last().map(|p| p.version), Some(1));
        assert_eq!(sp.pmt_version(), 1);
        assert_eq!(sp.stats().pmt_version_changes, 1);
        let last = p.last().unwrap();
        assert_eq!(last.program_number, 1);
        assert_eq!(last.pcr_pid, 0x200);
        let pids: Vec<u16> = last.streams.iter().map(|s| s.elementary_pid).collect();
        assert_eq!(pids, vec![0x200, 0x300, 0x301]);
        // The cut: PAT and PMT right before the first packet of B.
        let cut = out
            .iter()
            .position(|o| o.pid == 0x200 && o.disc && o.index > 10)
            .unwrap();
        assert_eq!(out[cut - 2].pid, 0);
        assert_eq!(out[cut - 1].pid, PMT_PID);
        // Repeated at least every 100 ms of wall time (a push every 40 ms).
        let psi = out.iter().filter(|o| o.pid == 0).count();
        assert!(psi >= 40 / 3, "{psi} PATs");
    }

    #[test]
    fn cut_waits_for_an_entry_point_of_the_new_source() {
        let (sp, raw) = a_then_b(15, 5_000_000);
        assert_accounted(&sp);
        let s = sp.stats();
        assert_eq!((s.switches, s.cuts_on_rap, s.rap_timeouts), (2, 2, 0));
        assert!(s.dropped_waiting_rap > 0);
        let out = parse(&raw);
        // The first video PES after the cut is B's IDR; A's video ran until then.
        let cut = out
            .iter()
            .position(|o| o.pid == 0x200 && o.disc && o.index > 10)
            .unwrap();
        assert_eq!(&out[cut].es[..5], &IDR[..5]);
        let a_frames_after_ask = out[..cut]
            .iter()
            .filter(|o| o.pid == 0x200 && o.pusi)
            .count();
        assert!(a_frames_after_ask > 15, "A stayed on air while waiting");
        assert_eq!(sp.active(), Some(1));
        assert_eq!(sp.pending(), None);
    }

    #[test]
    fn preroll_cuts_at_once_on_the_latest_entry_point_of_a_live_backup() {
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut b = Src::new(0x0FAB, Some(0x41), &[(0x45, b"fra")], 5_000_000);
        b.frame = 3; // mid-GOP at the switch: the next IDR is 7 frames away
        let mut sp = Splicer::new(SpliceConfig {
            preroll_bytes: 1 << 20,
            ..SpliceConfig::default()
        });
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        let mut asked_at = 0;
        for f in 0..40 {
            let now = t(40 * f);
            if f == 15 {
                // A stops (it failed); B, warm, goes on air at once.
                assert!(sp.switch_to_at_once(1, now));
                let before = out.len();
                sp.tick(now, &mut out);
                assert!(out.len() > before, "nothing sent at the switch");
                asked_at = before;
            }
            if f < 15 {
                let pa = a.frames(1);
                sp.push(0, &pa, now, &mut out);
            }
            let pb = b.frames(1);
            sp.push(1, &pb, now, &mut out);
        }
        assert_accounted(&sp);
        let s = *sp.stats();
        assert_eq!(
            (s.switches, s.cuts_on_preroll, s.rap_timeouts),
            (2, 1, 0),
            "{s:#?}"
        );
        assert!(s.preroll_packets > 0);
        let parsed = parse(&out);
        assert_cc(&parsed);
        assert_rising(&parsed);
        // The first video packet after the ask is B's IDR, sent in the tick.
        let first_b = parsed
            .iter()
            .find(|o| o.pid == 0x200 && o.index * PACKET_SIZE >= asked_at && o.pusi)
            .unwrap();
        assert!(first_b.disc);
        assert_eq!(&first_b.es[..5], &IDR[..5]);
        // A source that went quiet has no preroll: the switch waits.
        let mut sp2 = Splicer::new(SpliceConfig {
            preroll_bytes: 1 << 20,
            ..SpliceConfig::default()
        });
        let mut b2 = Src::new(0x0FAB, Some(0x41), &[(0x45, b"fra")], 5_000_000);
        let mut a2 = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut o2 = Vec::new();
        sp2.switch_to(0, t(0));
        for f in 0..12 {
            let pa = a2.frames(1);
            sp2.push(0, &pa, t(40 * f), &mut o2);
            let pb = b2.frames(1);
            sp2.push(1, &pb, t(40 * f), &mut o2);
        }
        sp2.switch_to_at_once(1, t(40 * 12 + 400));
        sp2.tick(t(40 * 12 + 400), &mut o2);
        assert_eq!(sp2.stats().cuts_on_preroll, 0);
        assert_eq!(sp2.pending(), Some(1));
    }

    #[test]
    fn cut_anyway_after_rap_wait() {
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut b = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 1_900_000);
        b.frame = 1; // B's next IDR is 9 frames (360 ms) away…
        let mut sp = Splicer::new(SpliceConfig {
            rap_wait: Duration::from_millis(100), // …more than we wait.
            ..SpliceConfig::default()
        });
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..12 {
            if f == 2 {
                sp.switch_to(1, t(40 * f));
            }
            let pa = a.frames(1);
            sp.push(0, &pa, t(40 * f), &mut out);
            let pb = b.frames(1);
            sp.push(1, &pb, t(40 * f), &mut out);
        }
        let s = sp.stats();
        assert_eq!((s.switches, s.cuts_on_rap, s.rap_timeouts), (2, 1, 1));
        assert_eq!(sp.active(), Some(1));
        let out = parse(&out);
        assert_cc(&out);
        assert_rising(&out);
    }

    #[test]
    fn continuity_counters_continue_and_discontinuity_is_marked() {
        let (sp, raw) = a_then_b(15, 5_000_000);
        let out = parse(&raw);
        assert_cc(&out);
        // Each ES PID of the output is marked once at its start (A) and once
        // at the cut (B); 0x301 starts with B.
        for (pid, n) in [(0x200, 2), (0x300, 2), (0x301, 1)] {
            let marked = out.iter().filter(|o| o.pid == pid && o.disc).count();
            assert_eq!(marked, n, "pid {pid:#x}");
        }
        // Full-payload audio packets carry their mark in an inserted
        // adaptation-only packet that repeats the previous counter.
        assert!(sp.stats().af_packets_inserted >= 3);
        let ins = out
            .iter()
            .find(|o| o.pid == 0x300 && o.disc && !o.payload && o.index > 10)
            .unwrap();
        let prev = out[..ins.index]
            .iter()
            .rev()
            .find(|o| o.pid == 0x300)
            .unwrap();
        assert_eq!(ins.cc, prev.cc);
        let next = out[ins.index + 1..]
            .iter()
            .find(|o| o.pid == 0x300)
            .unwrap();
        assert_eq!(next.cc, (prev.cc + 1) & 15);
    }

    #[test]
    fn one_rising_timeline_across_the_switch() {
        // B's clock is 20 s behind A's (so across the wrap): without re-stamping time would go back.
        let (sp, raw) = a_then_b(15, PTS_WRAP + 900_000 - 20 * 90_000);
        let out = parse(&raw);
        assert_rising(&out);
        // The first B frame lands one frame after A's last.
        let cut = out
            .iter()
            .position(|o| o.pid == 0x200 && o.disc && o.index > 10)
            .unwrap();
        let last_a = out[..cut]
            .iter()
            .rev()
            .find_map(|o| if o.pid == 0x200 { o.dts } else { None })
            .unwrap();
        let first_b = out[cut].dts.unwrap();
        assert_eq!(ts_diff(first_b, last_a), FRAME as i64);
        assert_ne!(sp.offset(), 0);
    }

    #[test]
    fn timestamps_wrap_at_33_bits() {
        // B crosses 2^33 while on air; A starts near the top of the range.
        let (_, raw) = a_then_b(5, PTS_WRAP - 10 * FRAME);
        let out = parse(&raw);
        assert_rising(&out);
        let pcrs: Vec<u64> = out.iter().filter_map(|o| o.pcr).collect();
        assert!(pcrs.iter().all(|&p| p < PCR_WRAP));
    }

    #[test]
    fn pcr_extension_is_carried() {
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        let mut pkts = a.frames(1);
        // Rewrite the first video packet's PCR with extension 123.
        let i = pkts
            .chunks(PACKET_SIZE)
            .position(|p| p[1] & 0x1F == 1 && p[2] == 0 && p[3] & 0x20 != 0)
            .unwrap();
        let mut b = [0u8; 6];
        packet::encode_pcr(5_000 * 300 + 123, &mut b);
        pkts[i * PACKET_SIZE + 6..i * PACKET_SIZE + 12].copy_from_slice(&b);
        sp.push(0, &pkts, t(0), &mut out);
        let pcr = parse(&out).iter().find_map(|o| o.pcr).unwrap();
        assert_eq!(pcr % 300, 123);
    }

    #[test]
    fn a_looping_source_keeps_time_moving() {
        // A 20-frame file played three times over.
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let file = a.frames(20);
        for lap in 0..3u64 {
            for (i, chunk) in file.chunks(PACKET_SIZE * 7).enumerate() {
                sp.push(0, chunk, t(lap * 800 + i as u64), &mut out);
            }
        }
        assert_eq!(sp.stats().timeline_jumps, 2);
        let out = parse(&out);
        assert_rising(&out);
        let v: Vec<u64> = out
            .iter()
            .filter(|o| o.pid == 0x200)
            .filter_map(|o| o.dts)
            .collect();
        assert_eq!(v.len(), 60);
        for w in v.windows(2) {
            assert_eq!(
                ts_diff(w[1], w[0]),
                FRAME as i64,
                "evenly spaced across loops"
            );
        }
    }

    #[test]
    fn audio_only_source_cuts_on_a_pes_start() {
        let mut a = Src::new(0x1000, None, &[(0x101, b"fra")], 900_000);
        let mut b = Src::new(0x1001, None, &[(0x201, b"fra")], 100);
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..10 {
            if f == 4 {
                sp.switch_to(1, t(40 * f));
            }
            let pa = a.frames(1);
            sp.push(0, &pa, t(40 * f), &mut out);
            let pb = b.frames(1);
            sp.push(1, &pb, t(40 * f), &mut out);
        }
        assert_eq!(sp.stats().cuts_on_rap, 2);
        let o = parse(&out);
        assert_rising(&o);
        assert_cc(&o);
        let pmt = pmts(&o, &out);
        assert_eq!(pmt.last().unwrap().pcr_pid, 0x300);
    }

    #[test]
    fn ca_descriptors_are_not_carried_and_pcr_pid_of_its_own_is() {
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        a.pmt.program_info = vec![tag::CA, 4, 0x0B, 0x00, 0xE5, 0x00];
        a.pmt.streams[1]
            .descriptors
            .extend([tag::CA, 4, 0x0B, 0x00, 0xE6, 0x00]);
        a.pmt.pcr_pid = 0x1FF;
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        let mut pk = a.frames(3);
        let pcr = a.pes(0x1FF, 0, None, Some(300 * 900_000), &[], 1);
        pk.extend(pcr);
        sp.push(0, &pk, t(0), &mut out);
        let o = parse(&out);
        let p = pmts(&o, &out);
        let p = p.last().unwrap();
        assert!(p.program_info.is_empty());
        assert_eq!(p.streams[1].descriptors, lang(b"fra"));
        assert_eq!(p.pcr_pid, PCR_ONLY_PID);
        assert!(o.iter().any(|o| o.pid == PCR_ONLY_PID && o.pcr.is_some()));
    }

    #[test]
    fn nothing_before_a_switch_and_bad_input_is_counted() {
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let pk = a.frames(2);
        sp.push(0, &pk, t(0), &mut out);
        assert!(out.is_empty());
        assert!(sp.stats().packets_off_air > 0);
        sp.push(MAX_SOURCES, &pk, t(0), &mut out);
        assert_eq!(
            sp.stats().bad_source_packets,
            (pk.len() / PACKET_SIZE) as u64
        );
        assert!(!sp.switch_to(MAX_SOURCES, t(0)));
        let mut bad = pk.clone();
        bad[0] = 0x46;
        sp.switch_to(0, t(0));
        sp.push(0, &bad[..PACKET_SIZE], t(0), &mut out);
        assert_eq!(sp.stats().bad_packets, 1);
    }

    #[test]
    fn the_old_source_leaves_on_whole_pes() {
        // Packets of A and B interleave one by one, so the cut comes while
        // A is in the middle of a PES.
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut b = Src::new(0x0FAB, Some(0x41), &[(0x45, b"fra")], 5_000_000);
        // B's IDR comes at frame 15, where A's video PES starts a packet
        // before B's does.
        b.frame = 5;
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..30 {
            let now = t(40 * f);
            if f == 12 {
                sp.switch_to(1, now);
            }
            let (pa, pb) = (a.frames(1), b.frames(1));
            let (mut ia, mut ib) = (pa.chunks(PACKET_SIZE), pb.chunks(PACKET_SIZE));
            loop {
                let (x, y) = (ia.next(), ib.next());
                if x.is_none() && y.is_none() {
                    break;
                }
                if let Some(x) = x {
                    sp.push(0, x, now, &mut out);
                }
                if let Some(y) = y {
                    sp.push(1, y, now, &mut out);
                }
            }
        }
        assert_eq!(sp.active(), Some(1));
        let o = parse(&out);
        // Every video PES sent has its 3 packets, every audio PES its one.
        let mut run: HashMap<u16, usize> = HashMap::new();
        for x in o
            .iter()
            .filter(|x| x.payload && (x.pid == 0x200 || x.pid == 0x300))
        {
            if x.pusi {
                if let Some(n) = run.insert(x.pid, 1) {
                    let want = if x.pid == 0x200 { 3 } else { 1 };
                    assert_eq!(
                        n, want,
                        "PES of pid {:#x} ending at packet {}",
                        x.pid, x.index
                    );
                }
            } else {
                *run.entry(x.pid).or_insert(0) += 1;
            }
        }
        assert_cc(&o);
        assert_rising(&o);
        assert!(sp.stats().dropped_old_tail > 0);
        assert_accounted(&sp);
    }

    #[test]
    fn a_cancelled_switch_loses_nothing() {
        // B never speaks; A is held PES by PES while B is awaited, and what
        // was held goes out once the switch is called off.
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..20 {
            if f == 5 {
                sp.switch_to(1, t(40 * f));
            }
            if f == 12 {
                sp.switch_to(0, t(40 * f));
                assert_eq!(sp.pending(), None);
            }
            let pk = a.frames(1);
            for p in pk.chunks(PACKET_SIZE) {
                sp.push(0, p, t(40 * f), &mut out);
            }
        }
        sp.tick(t(1000), &mut out);
        let o = parse(&out);
        let video_pes = o.iter().filter(|x| x.pid == 0x200 && x.pusi).count();
        assert_eq!(video_pes, 20);
        assert_eq!(sp.stats().dropped_old_tail, 0);
        assert_cc(&o);
        assert_accounted(&sp);
    }

    #[test]
    fn a_dead_video_pid_does_not_silence_the_audio() {
        // The PMT names a video PID (carrying the PCR) that never comes.
        let mut a = Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], 900_000);
        let mut sp = Splicer::new(SpliceConfig::default());
        let mut out = Vec::new();
        sp.switch_to(0, t(0));
        for f in 0..125 {
            let pk = a.frames(1);
            let audio_only: Vec<u8> = pk
                .chunks(PACKET_SIZE)
                .filter(|p| !(p[1] & 0x1F == 0x01 && p[2] == 0x00))
                .flatten()
                .copied()
                .collect();
            sp.push(0, &audio_only, t(40 * f), &mut out);
        }
        // No entry point ever: on air after rap_wait (1 s, 25 frames), then
        // the audio waits MAX_ANCHOR_WAIT PES for the video, then goes.
        assert_eq!(sp.stats().rap_timeouts, 1);
        let o = parse(&out);
        let audio = o.iter().filter(|x| x.pid == 0x300 && x.pusi).count() as u32;
        assert_eq!(audio, 125 - 25 - MAX_ANCHOR_WAIT, "{:?}", sp.stats());
        assert_eq!(sp.stats().dropped_before_anchor, MAX_ANCHOR_WAIT as u64);
        assert_rising(&o);
    }

    /// xorshift64*: the tests' own randomness, reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let mut rng = Rng(0x5EED_CAFE);
        for round in 0..300 {
            let mut sp = Splicer::new(SpliceConfig {
                rap_wait: Duration::from_millis(rng.next() % 200),
                ..SpliceConfig::default()
            });
            let mut srcs = [
                Src::new(0x1000, Some(0x100), &[(0x101, b"fra")], rng.next()),
                Src::new(
                    0x20,
                    Some(0x21),
                    &[(0x22, b"eng"), (0x23, b"fra")],
                    rng.next(),
                ),
                Src::new(0x30, None, &[(0x31, b"deu")], rng.next()),
            ];
            let mut out = Vec::new();
            for step in 0..40u64 {
                let s = (rng.next() % 3) as usize;
                let mut pk = srcs[s].frames(1 + rng.next() % 3);
                // Mutate: flip bytes, keep most sync bytes (sources resync).
                for _ in 0..(rng.next() % 12) {
                    let i = (rng.next() as usize) % pk.len();
                    pk[i] ^= rng.next() as u8;
                }
                if round % 7 == 0 {
                    for b in pk.iter_mut() {
                        *b = rng.next() as u8;
                    }
                    for c in pk.chunks_mut(PACKET_SIZE) {
                        c[0] = 0x47;
                    }
                }
                if rng.next().is_multiple_of(5) {
                    sp.switch_to((rng.next() % 4) as usize, t(step * 40));
                }
                sp.push(s, &pk, t(step * 40), &mut out);
                sp.tick(t(step * 40), &mut out);
                assert_eq!(out.len() % PACKET_SIZE, 0);
                for p in out.chunks(PACKET_SIZE) {
                    assert!(Packet::new_checked(p).is_ok());
                }
                out.clear();
                let _ = (sp.pid_plan(), sp.psi_packets());
            }
            assert!(sp.hold.len() <= MAX_HELD_PACKETS);
            assert_accounted(&sp);
        }
    }
}
