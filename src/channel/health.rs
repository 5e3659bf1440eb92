//! Health of one source of one channel, measured on its packets: pure logic,
//! fed the single-program TS the source delivers (after remux and
//! descrambling) and the time, it gives one verdict in words.
//!
//! Owns: the conditions a failover decision needs —
//! - packets arriving at all (stall);
//! - the PAT and the program's PMT present (refreshed at least every
//!   `psi_ms`);
//! - each video and audio elementary stream of the PMT carrying PES packets
//!   with a PTS (`pes_ms`), and that PTS moving forward (`pts_stuck_ms`);
//! - packets still scrambled after the descrambler (no control word);
//! - continuity-counter errors per minute (TR 101 290 1.4: one duplicate
//!   packet is allowed, a second one, a gap or a step back is an error).
//!
//! A source is healthy only once proven: a fresh source is "no PAT" until a
//! PAT arrives and "no video PES" until its video carried a PES with a PTS.
//! Hysteresis (how long a verdict must hold before a switch) belongs to the
//! failover logic, not here.
//!
//! Promises: no clock of its own (the caller passes an `Instant`, so tests
//! use a fake one; a clock that goes backwards is taken as no time passing);
//! bounded memory (a fixed PID table, at most `MAX_ES` tracked streams, a
//! fixed ring of time buckets, the section collector's bounds); no panics on
//! any input; cheap per packet (a table lookup and a few compares; sections
//! and PES headers only on the packets that start them).

use crate::ts::collector::{Push, TableCollector};
use crate::ts::packet::{Packet, PACKET_SIZE, SYNC_BYTE};
use crate::ts::pat::PatRepr;
use crate::ts::pes::{pts_delta, PesHeader};
use crate::ts::pmt::{PmtRepr, StreamKind};
use crate::ts::section::{Assembler, Section};
use crate::ts::{pid, table_id};
use std::time::Instant;

/// Most video + audio streams tracked per program; more are counted in
/// `HealthStats::untracked_streams` and ignored (a real program has a
/// handful).
pub const MAX_ES: usize = 16;
/// Width of one time bucket of the scrambled / CC windows.
pub const BUCKET_MS: u64 = 250;
/// Buckets kept: 64 s, enough for the one-minute CC window.
const BUCKETS: usize = 256;
/// A backward PTS step larger than this (5 s of 90 kHz) is a jump (a new
/// encoder, a wrap seen from the wrong side), not a frozen clock.
const PTS_JUMP: u64 = 5 * 90_000;
/// Half the 33-bit PTS circle: a forward distance below this is "later".
const PTS_HALF: u64 = 1 << 32;

/// When a source counts as unhealthy. Every rule is a duration or a rate;
/// the defaults are chosen for a channel that fails over in well under a
/// second when its source dies, but does not flap on a normal stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HealthRules {
    /// No packet for this long is a stall. Default 400 ms: a tuner delivers
    /// a packet every few ms and a TCP relay at 120 ms RTT recovers one lost
    /// segment within about 2 RTT (fast retransmit); 400 ms is past both and
    /// still short enough for a failover the viewer barely notices.
    pub stall_ms: u64,
    /// No PAT, or no PMT, for this long. Default 1000 ms: TR 101 290 wants
    /// both every 0.5 s; twice that tolerates jitter and a lost section.
    pub psi_ms: u64,
    /// A video or audio stream without a PES start carrying a PTS for this
    /// long. Default 2000 ms: video carries one PES per frame (≤ 40 ms) and
    /// audio one every ≤ 100 ms, but some encoders pack a whole GOP of
    /// audio or a still-image radio video into long PES; 2 s is beyond any
    /// sane interleave and below a viewer's patience.
    pub pes_ms: u64,
    /// PES keep arriving but their PTS has not moved forward for this long
    /// (a frozen encoder repeating a frame). Default 2000 ms, as `pes_ms`.
    pub pts_stuck_ms: u64,
    /// Packets still scrambled after the descrambler within `scrambled_ms`
    /// that make the verdict "scrambled". Default 20 in 1000 ms: a key
    /// change can leave a few stragglers, a missing control word scrambles
    /// every packet (hundreds per second even for a radio channel).
    pub scrambled_max: u64,
    pub scrambled_ms: u64,
    /// Continuity errors in the last minute that make the source unhealthy.
    /// Default 20: each error is a visible glitch (up to a GOP of broken
    /// picture); one every three seconds means a backup is better. Over TCP
    /// a healthy relay has none.
    pub cc_max_per_min: u64,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            stall_ms: 400,
            psi_ms: 1000,
            pes_ms: 2000,
            pts_stuck_ms: 2000,
            scrambled_max: 20,
            scrambled_ms: 1000,
            cc_max_per_min: 20,
        }
    }
}

/// The one verdict on a source, most serious condition first (see
/// `SourceHealth::verdict`). `Display` gives the words for `/status`,
/// `/metrics` labels and `capbox status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No packet was ever observed.
    NeverStarted,
    /// No packet for `for_ms`.
    Stalled {
        for_ms: u64,
    },
    /// No PAT for `for_ms` (since the first packet if there never was one).
    NoPat {
        for_ms: u64,
    },
    /// The PAT names no program (`None`), or not the one asked for, for
    /// `for_ms`.
    NoProgram {
        program_number: Option<u16>,
        for_ms: u64,
    },
    /// The PAT names `pmt_pid` but no PMT came on it for `for_ms`.
    NoPmt {
        pmt_pid: u16,
        for_ms: u64,
    },
    /// `packets` packets left scrambled in the last `window_ms`.
    Scrambled {
        packets: u64,
        window_ms: u64,
    },
    /// The video stream on `pid` has carried no PES with a PTS for `for_ms`.
    NoVideoPes {
        pid: u16,
        for_ms: u64,
    },
    /// Same for an audio stream.
    NoAudioPes {
        pid: u16,
        for_ms: u64,
    },
    /// PES arrive on `pid` but the PTS has not moved forward for `for_ms`.
    PtsStuck {
        pid: u16,
        for_ms: u64,
    },
    /// `per_min` continuity errors in the last minute.
    CcErrors {
        per_min: u64,
    },
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }

    /// A short stable name for metrics labels ("stalled", "no_video_pes").
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::NeverStarted => "never_started",
            Verdict::Stalled { .. } => "stalled",
            Verdict::NoPat { .. } => "no_pat",
            Verdict::NoProgram { .. } => "no_program",
            Verdict::NoPmt { .. } => "no_pmt",
            Verdict::Scrambled { .. } => "scrambled",
            Verdict::NoVideoPes { .. } => "no_video_pes",
            Verdict::NoAudioPes { .. } => "no_audio_pes",
            Verdict::PtsStuck { .. } => "pts_stuck",
            Verdict::CcErrors { .. } => "cc_errors",
        }
    }
}

/// "400 ms" below a second, "2.5 s" above.
fn dur(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 10_000 && !ms.is_multiple_of(1000) {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    } else {
        format!("{} s", ms / 1000)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Verdict::Ok => write!(f, "ok"),
            Verdict::NeverStarted => write!(f, "no packets yet"),
            Verdict::Stalled { for_ms } => write!(f, "stalled {}", dur(for_ms)),
            Verdict::NoPat { for_ms } => write!(f, "no PAT for {}", dur(for_ms)),
            Verdict::NoProgram {
                program_number: Some(n),
                for_ms,
            } => write!(f, "program {n} not in the PAT for {}", dur(for_ms)),
            Verdict::NoProgram {
                program_number: None,
                for_ms,
            } => write!(f, "the PAT names no program for {}", dur(for_ms)),
            Verdict::NoPmt { pmt_pid, for_ms } => {
                write!(f, "no PMT on PID {pmt_pid} for {}", dur(for_ms))
            }
            Verdict::Scrambled { packets, window_ms } => write!(
                f,
                "scrambled: no control word ({packets} packets in {})",
                dur(window_ms)
            ),
            Verdict::NoVideoPes { pid, for_ms } => {
                write!(f, "no video PES for {} (PID {pid})", dur(for_ms))
            }
            Verdict::NoAudioPes { pid, for_ms } => {
                write!(f, "no audio PES for {} (PID {pid})", dur(for_ms))
            }
            Verdict::PtsStuck { pid, for_ms } => {
                write!(f, "PTS stuck for {} (PID {pid})", dur(for_ms))
            }
            Verdict::CcErrors { per_min } => write!(f, "{per_min} continuity errors per minute"),
        }
    }
}

pub use crate::monitor::cc::CcCheck;

/// Counters since the monitor was made; every dropped or refused input is
/// in one of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthStats {
    pub packets: u64,
    /// Chunks that did not start with a sync byte (the caller should pass
    /// aligned packets only).
    pub bad_packets: u64,
    pub pat_sections: u64,
    pub pmt_sections: u64,
    /// PAT or PMT sections refused by the parser (malformed, wrong table).
    pub bad_sections: u64,
    pub pes_starts: u64,
    /// PES starts on a tracked stream whose header did not parse or had no
    /// PTS.
    pub pes_without_pts: u64,
    pub scrambled_packets: u64,
    pub cc_errors: u64,
    /// Video/audio streams past `MAX_ES`, not tracked.
    pub untracked_streams: u64,
    /// Calls whose clock was earlier than a previous call's.
    pub clock_backwards: u64,
}

/// One video or audio stream of the PMT, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EsHealth {
    pub pid: u16,
    pub kind: &'static str,
    pub pes: u64,
    /// Milliseconds since the last PES with a PTS, or since the PMT if none.
    pub pes_age_ms: u64,
    /// Milliseconds since the PTS last moved forward.
    pub pts_still_ms: Option<u64>,
}

/// Everything `/status` shows of a source's health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthStatus {
    /// The verdict in words ("ok", "stalled 400 ms", …).
    pub verdict: String,
    /// The verdict's stable name ("ok", "stalled", …).
    pub kind: &'static str,
    pub healthy: bool,
    pub program_number: Option<u16>,
    pub pmt_pid: Option<u16>,
    pub streams: Vec<EsHealth>,
    pub cc_errors_last_min: u64,
    pub scrambled_last_window: u64,
    pub stats: HealthStats,
}

/// What a PID means to the monitor (index into `SourceHealth::pid_role`).
const ROLE_NONE: u8 = 0;
const ROLE_PAT: u8 = 1;
const ROLE_PMT: u8 = 2;
/// ES slot i is role `ROLE_ES0 + i`.
const ROLE_ES0: u8 = 3;

#[derive(Debug, Clone)]
struct EsState {
    pid: u16,
    video: bool,
    pes: u64,
    /// Last PES start with a PTS (ms on the monitor's clock).
    last_pes_ms: Option<u64>,
    /// When the stream was first listed (grace start for `pes_ms`).
    listed_ms: u64,
    high_pts: Option<u64>,
    last_advance_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which absolute bucket (ms / BUCKET_MS) the counts belong to.
    idx: u64,
    cc: u32,
    scrambled: u32,
}

/// The health monitor of one source of one channel.
pub struct SourceHealth {
    rules: HealthRules,
    /// Origin of the monitor's millisecond clock (first `observe`).
    epoch: Option<Instant>,
    /// Latest millisecond seen (the clock never goes back).
    now_ms: u64,
    first_packet_ms: Option<u64>,
    last_packet_ms: Option<u64>,
    /// Role of each of the 8192 PIDs.
    pid_role: Box<[u8; 8192]>,
    cc: Box<[CcCheck; 8192]>,
    pat_asm: Assembler,
    pmt_asm: Assembler,
    pat_tables: TableCollector,
    pmt_tables: TableCollector,
    last_pat_ms: Option<u64>,
    /// Only this program of the PAT, if set; else the first.
    want_program: Option<u16>,
    /// (program_number, PMT PID) from the PAT.
    program: Option<(u16, u16)>,
    /// Since when the PAT names no (wanted) program, if it ever did.
    no_program_since_ms: u64,
    /// When the current PMT PID was learnt.
    pmt_pid_since_ms: u64,
    last_pmt_ms: Option<u64>,
    es: Vec<EsState>,
    /// Sections completed by the packet at hand (reused).
    sections: Vec<Vec<u8>>,
    buckets: Box<[Bucket; BUCKETS]>,
    pub stats: HealthStats,
}

impl std::fmt::Debug for SourceHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceHealth")
            .field("rules", &self.rules)
            .field("program", &self.program)
            .field("es", &self.es)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SourceHealth {
    /// A monitor of the first program the PAT names (a channel's output
    /// after remux carries exactly one).
    pub fn new(rules: HealthRules) -> SourceHealth {
        Self::build(rules, None)
    }

    /// A monitor of `program_number` only, for a stream that may carry
    /// several programs (a whole mux, a relay that was not remuxed).
    pub fn for_program(rules: HealthRules, program_number: u16) -> SourceHealth {
        Self::build(rules, Some(program_number))
    }

    fn build(rules: HealthRules, want_program: Option<u16>) -> SourceHealth {
        SourceHealth {
            rules,
            epoch: None,
            now_ms: 0,
            first_packet_ms: None,
            last_packet_ms: None,
            pid_role: Box::new([ROLE_NONE; 8192]),
            cc: Box::new([CcCheck::default(); 8192]),
            pat_asm: Assembler::new(),
            pmt_asm: Assembler::new(),
            // A single-program stream has one PAT and one PMT; a few more
            // keys tolerate a transport_stream_id or program change.
            pat_tables: TableCollector::new(4, 16 * 1024),
            pmt_tables: TableCollector::new(4, 16 * 1024),
            last_pat_ms: None,
            want_program,
            program: None,
            no_program_since_ms: 0,
            pmt_pid_since_ms: 0,
            last_pmt_ms: None,
            es: Vec::new(),
            sections: Vec::new(),
            buckets: Box::new([Bucket::default(); BUCKETS]),
            stats: HealthStats::default(),
        }
        .with_pat_role()
    }

    fn with_pat_role(mut self) -> Self {
        self.pid_role[pid::PAT as usize] = ROLE_PAT;
        self
    }

    pub fn rules(&self) -> &HealthRules {
        &self.rules
    }

    /// Forget the stream (the source reconnected, a file looped): PSI, ES
    /// and CC state start again; counters and the packet clock stay, so a
    /// source that restarts without packets still shows as stalled.
    pub fn reset_stream(&mut self) {
        self.pid_role.fill(ROLE_NONE);
        self.pid_role[pid::PAT as usize] = ROLE_PAT;
        self.cc.fill(CcCheck::default());
        self.pat_asm.reset();
        self.pmt_asm.reset();
        self.pat_tables.clear();
        self.pmt_tables.clear();
        self.last_pat_ms = None;
        self.program = None;
        self.last_pmt_ms = None;
        self.es.clear();
        self.first_packet_ms = self.last_packet_ms;
    }

    fn tick(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let ms = match now.checked_duration_since(epoch) {
            Some(d) => d.as_millis().min(u64::MAX as u128) as u64,
            None => 0,
        };
        if ms < self.now_ms {
            self.stats.clock_backwards += 1;
        } else {
            self.now_ms = ms;
        }
        self.now_ms
    }

    fn bucket(&mut self, ms: u64) -> &mut Bucket {
        let idx = ms / BUCKET_MS;
        let b = &mut self.buckets[(idx % BUCKETS as u64) as usize];
        if b.idx != idx {
            *b = Bucket {
                idx,
                cc: 0,
                scrambled: 0,
            };
        }
        b
    }

    /// Feed aligned 188-byte packets of the channel, as delivered at `now`.
    /// A trailing partial packet is ignored.
    pub fn observe(&mut self, packets: &[u8], now: Instant) {
        let ms = self.tick(now);
        if packets.len() < PACKET_SIZE {
            return;
        }
        self.first_packet_ms.get_or_insert(ms);
        self.last_packet_ms = Some(ms);
        let (mut cc_errors, mut scrambled) = (0u32, 0u32);
        for raw in packets.chunks_exact(PACKET_SIZE) {
            self.stats.packets += 1;
            if raw[0] != SYNC_BYTE {
                self.stats.bad_packets += 1;
                continue;
            }
            // The PID and flags straight from the header: this loop runs for
            // every packet on the capture thread.
            let pid = (u16::from(raw[1] & 0x1F) << 8) | u16::from(raw[2]);
            if pid == pid::NULL {
                continue;
            }
            let afc = (raw[3] >> 4) & 0x03;
            let has_payload = afc & 0x01 != 0;
            let discontinuity = afc & 0x02 != 0 && raw[4] > 0 && raw[5] & 0x80 != 0;
            if self.cc[pid as usize].check(raw[3] & 0x0F, has_payload, discontinuity) {
                cc_errors += 1;
            }
            if raw[3] & 0xC0 != 0 {
                scrambled += 1;
                continue;
            }
            let role = self.pid_role[pid as usize];
            if role == ROLE_NONE {
                continue;
            }
            let Ok(pkt) = Packet::new_checked(raw) else {
                self.stats.bad_packets += 1;
                continue;
            };
            match role {
                ROLE_PAT => self.on_pat_packet(&pkt, ms),
                ROLE_PMT => self.on_pmt_packet(&pkt, ms),
                r => {
                    if pkt.payload_unit_start() {
                        self.on_pes_start(usize::from(r - ROLE_ES0), pkt.payload(), ms);
                    }
                }
            }
        }
        if cc_errors > 0 || scrambled > 0 {
            self.stats.cc_errors += u64::from(cc_errors);
            self.stats.scrambled_packets += u64::from(scrambled);
            let b = self.bucket(ms);
            b.cc = b.cc.saturating_add(cc_errors);
            b.scrambled = b.scrambled.saturating_add(scrambled);
        }
    }

    fn on_pat_packet(&mut self, pkt: &Packet<&[u8]>, ms: u64) {
        let mut found = std::mem::take(&mut self.sections);
        found.clear();
        self.pat_asm.push(pkt, |s| found.push(s.to_vec()));
        for s in &found {
            self.on_pat_section(s, ms);
        }
        self.sections = found;
    }

    fn on_pmt_packet(&mut self, pkt: &Packet<&[u8]>, ms: u64) {
        let mut found = std::mem::take(&mut self.sections);
        found.clear();
        self.pmt_asm.push(pkt, |s| found.push(s.to_vec()));
        for s in &found {
            self.on_pmt_section(s, ms);
        }
        self.sections = found;
    }

    fn on_pat_section(&mut self, bytes: &[u8], ms: u64) {
        if bytes.first() != Some(&table_id::PAT) {
            return;
        }
        self.stats.pat_sections += 1;
        let overflow = self.pat_tables.stats.table_overflow;
        match self.pat_tables.push(bytes) {
            Push::Complete(secs) => {
                let mut first = None;
                for s in &secs {
                    match Section::new_checked(&s[..]).and_then(|s| PatRepr::parse(&s)) {
                        Ok(pat) => {
                            if first.is_none() {
                                first = pat
                                    .programs()
                                    .find(|e| {
                                        self.want_program.is_none_or(|w| w == e.program_number)
                                    })
                                    .map(|e| (e.program_number, e.pid));
                            }
                        }
                        Err(_) => self.stats.bad_sections += 1,
                    }
                }
                self.last_pat_ms = Some(ms);
                match first {
                    Some(p) => self.set_program(p, ms),
                    None => self.drop_program(ms),
                }
            }
            Push::Unchanged => self.last_pat_ms = Some(ms),
            Push::Incomplete => {}
            Push::Dropped => {
                if self.pat_tables.stats.table_overflow != overflow {
                    // Keys churn (transport_stream_id changing): start over
                    // rather than refuse the new table for ever.
                    self.pat_tables.clear();
                }
            }
        }
    }

    /// The PAT no longer names the program (or never did).
    fn drop_program(&mut self, ms: u64) {
        if self.program.is_some() {
            self.no_program_since_ms = ms;
        }
        self.forget_program();
        self.program = None;
    }

    fn forget_program(&mut self) {
        if let Some((_, old)) = self.program {
            if old != pid::PAT {
                self.pid_role[old as usize] = ROLE_NONE;
            }
        }
        self.clear_es();
    }

    fn set_program(&mut self, p: (u16, u16), ms: u64) {
        if self.program == Some(p) {
            return;
        }
        self.forget_program();
        self.pmt_asm.reset();
        self.pmt_tables.clear();
        self.last_pmt_ms = None;
        self.program = Some(p);
        self.pmt_pid_since_ms = ms;
        // A PMT PID that collides with the PAT (or the null PID) is nonsense:
        // it never gets a PMT and the verdict says so.
        if p.1 != pid::PAT && p.1 != pid::NULL {
            self.pid_role[p.1 as usize] = ROLE_PMT;
        }
    }

    fn clear_es(&mut self) {
        for e in &self.es {
            if self.pid_role[e.pid as usize] >= ROLE_ES0 {
                self.pid_role[e.pid as usize] = ROLE_NONE;
            }
        }
        self.es.clear();
    }

    fn on_pmt_section(&mut self, bytes: &[u8], ms: u64) {
        let Some((program_number, _)) = self.program else {
            return;
        };
        if bytes.first() != Some(&table_id::PMT) {
            return;
        }
        self.stats.pmt_sections += 1;
        let pmt = match Section::new_checked(bytes).and_then(|s| PmtRepr::parse(&s)) {
            Ok(p) => p,
            Err(_) => {
                self.stats.bad_sections += 1;
                return;
            }
        };
        if pmt.program_number != program_number {
            return;
        }
        let overflow = self.pmt_tables.stats.table_overflow;
        match self.pmt_tables.push(bytes) {
            Push::Complete(_) => {
                self.last_pmt_ms = Some(ms);
                self.set_streams(&pmt, ms);
            }
            Push::Unchanged => self.last_pmt_ms = Some(ms),
            Push::Incomplete => {}
            Push::Dropped => {
                if self.pmt_tables.stats.table_overflow != overflow {
                    self.pmt_tables.clear();
                }
            }
        }
    }

    /// Track the video and audio streams of a new PMT version; streams that
    /// stay keep their history.
    fn set_streams(&mut self, pmt: &PmtRepr, ms: u64) {
        let mut old = std::mem::take(&mut self.es);
        for e in &old {
            if self.pid_role[e.pid as usize] >= ROLE_ES0 {
                self.pid_role[e.pid as usize] = ROLE_NONE;
            }
        }
        for s in &pmt.streams {
            let video = match s.kind() {
                StreamKind::Video => true,
                StreamKind::Audio => false,
                _ => continue,
            };
            let pid = s.elementary_pid;
            if self.pid_role[pid as usize] != ROLE_NONE || pid == pid::NULL {
                continue; // listed twice, or on a PSI PID
            }
            if self.es.len() >= MAX_ES {
                self.stats.untracked_streams += 1;
                continue;
            }
            let st = match old.iter().position(|e| e.pid == pid && e.video == video) {
                Some(i) => old.swap_remove(i),
                None => EsState {
                    pid,
                    video,
                    pes: 0,
                    last_pes_ms: None,
                    listed_ms: ms,
                    high_pts: None,
                    last_advance_ms: None,
                },
            };
            self.pid_role[pid as usize] = ROLE_ES0 + self.es.len() as u8;
            self.es.push(st);
        }
    }

    fn on_pes_start(&mut self, slot: usize, payload: &[u8], ms: u64) {
        self.stats.pes_starts += 1;
        let Some(e) = self.es.get_mut(slot) else {
            return;
        };
        let pts = PesHeader::new_checked(payload).ok().and_then(|h| h.pts());
        let Some(pts) = pts else {
            self.stats.pes_without_pts += 1;
            return;
        };
        e.pes += 1;
        e.last_pes_ms = Some(ms);
        let advanced = match e.high_pts {
            None => true,
            Some(high) => {
                let fwd = pts_delta(high, pts);
                // Forward, or a big step back (a jump, not B-frame reorder
                // and not a frozen clock).
                (fwd != 0 && fwd < PTS_HALF) || pts_delta(pts, high) > PTS_JUMP
            }
        };
        if advanced {
            e.high_pts = Some(pts);
            e.last_advance_ms = Some(ms);
        }
    }

    fn window_sum(&self, now_ms: u64, window_ms: u64, f: impl Fn(&Bucket) -> u32) -> u64 {
        let cur = now_ms / BUCKET_MS;
        let n = window_ms.div_ceil(BUCKET_MS).clamp(1, BUCKETS as u64);
        let mut sum = 0u64;
        for i in 0..n {
            let Some(idx) = cur.checked_sub(i) else { break };
            let b = &self.buckets[(idx % BUCKETS as u64) as usize];
            if b.idx == idx {
                sum += u64::from(f(b));
            }
        }
        sum
    }

    /// The verdict at `now`: the most serious condition that holds.
    /// Order: no packets, stall, PAT, PMT, scrambling (it hides PES), then
    /// per stream video before audio (PES missing, then PTS stuck), then
    /// continuity errors.
    pub fn verdict(&self, now: Instant) -> Verdict {
        let now_ms = self.ms_at(now);
        let r = &self.rules;
        let (Some(first), Some(last)) = (self.first_packet_ms, self.last_packet_ms) else {
            return Verdict::NeverStarted;
        };
        let age = |t: u64| now_ms.saturating_sub(t);
        if age(last) > r.stall_ms {
            return Verdict::Stalled { for_ms: age(last) };
        }
        match self.last_pat_ms {
            None => return Verdict::NoPat { for_ms: age(first) },
            Some(t) if age(t) > r.psi_ms => return Verdict::NoPat { for_ms: age(t) },
            _ => {}
        }
        let Some((_, pmt_pid)) = self.program else {
            return Verdict::NoProgram {
                program_number: self.want_program,
                for_ms: age(first.max(self.no_program_since_ms)),
            };
        };
        match self.last_pmt_ms {
            None => {
                return Verdict::NoPmt {
                    pmt_pid,
                    for_ms: age(self.pmt_pid_since_ms),
                }
            }
            Some(t) if age(t) > r.psi_ms => {
                return Verdict::NoPmt {
                    pmt_pid,
                    for_ms: age(t),
                }
            }
            _ => {}
        }
        let scrambled = self.window_sum(now_ms, r.scrambled_ms, |b| b.scrambled);
        if scrambled > r.scrambled_max {
            return Verdict::Scrambled {
                packets: scrambled,
                window_ms: r.scrambled_ms,
            };
        }
        for video in [true, false] {
            for e in self.es.iter().filter(|e| e.video == video) {
                // Unproven (no PES yet) is unhealthy at once; a stream that
                // had PES is given `pes_ms`.
                let missing = match e.last_pes_ms {
                    None => Some(age(e.listed_ms)),
                    Some(t) if age(t) > r.pes_ms => Some(age(t)),
                    _ => None,
                };
                if let Some(for_ms) = missing {
                    return if video {
                        Verdict::NoVideoPes { pid: e.pid, for_ms }
                    } else {
                        Verdict::NoAudioPes { pid: e.pid, for_ms }
                    };
                }
            }
        }
        for e in &self.es {
            if let Some(t) = e.last_advance_ms {
                if age(t) > r.pts_stuck_ms {
                    return Verdict::PtsStuck {
                        pid: e.pid,
                        for_ms: age(t),
                    };
                }
            }
        }
        let per_min = self.cc_last_min(now_ms);
        if per_min > r.cc_max_per_min {
            return Verdict::CcErrors { per_min };
        }
        Verdict::Ok
    }

    fn cc_last_min(&self, now_ms: u64) -> u64 {
        self.window_sum(now_ms, 60_000, |b| b.cc)
    }

    /// Milliseconds of the monitor's clock at `now` (never before the latest
    /// observed time).
    fn ms_at(&self, now: Instant) -> u64 {
        let Some(epoch) = self.epoch else {
            return 0;
        };
        let ms = now
            .checked_duration_since(epoch)
            .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64);
        ms.max(self.now_ms)
    }

    pub fn is_healthy(&self, now: Instant) -> bool {
        self.verdict(now).is_ok()
    }

    /// The program found in the PAT: (program_number, PMT PID).
    pub fn program(&self) -> Option<(u16, u16)> {
        self.program
    }

    /// Everything for `/status`.
    pub fn status(&self, now: Instant) -> HealthStatus {
        let v = self.verdict(now);
        let now_ms = self.ms_at(now);
        HealthStatus {
            verdict: v.to_string(),
            kind: v.kind(),
            healthy: v.is_ok(),
            program_number: self.program.map(|p| p.0),
            pmt_pid: self.program.map(|p| p.1),
            streams: self
                .es
                .iter()
                .map(|e| EsHealth {
                    pid: e.pid,
                    kind: if e.video { "video" } else { "audio" },
                    pes: e.pes,
                    pes_age_ms: now_ms.saturating_sub(e.last_pes_ms.unwrap_or(e.listed_ms)),
                    pts_still_ms: e.last_advance_ms.map(|t| now_ms.saturating_sub(t)),
                })
                .collect(),
            cc_errors_last_min: self.cc_last_min(now_ms),
            scrambled_last_window: self
                .window_sum(now_ms, self.rules.scrambled_ms, |b| b.scrambled),
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests;
