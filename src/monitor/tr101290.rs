//! ETSI TR 101 290 measurement guidelines, priorities 1, 2 and 3: one
//! analyser fed transport packets (or raw bytes) and the time each arrived.
//!
//! Owns: the 17 indicators (`Indicator`), their error counters, whether each
//! is in error now, the time of its last error; the standard's time limits
//! (`Limits`, defaults from TR 101 290 §5.2).
//!
//! Time: the analyser has no clock of its own. The caller passes a time in
//! milliseconds with every push: the daemon the monotonic arrival time, the
//! probe and the tests a stream time (packet position at the PCR-measured
//! mux rate, `StreamClock`). Every "at least every N ms" test is against
//! that time.
//!
//! What is measured and how (plain words in README "TR 101 290 and the box
//! clock"):
//! - sync: `push_bytes` frames 188-byte packets itself with the standard's
//!   hysteresis (5 good sync bytes to acquire, 2 bad in a row to lose);
//!   a single bad sync byte in sync is a sync_byte_error and the packet is
//!   still read (its framing is intact). Packets already aligned by a
//!   source's resync go through `push_packet`; the source's own sync losses
//!   are reported with `sync_lost`.
//! - continuity: `monitor::cc`, the one rule; a packet with the
//!   transport_error_indicator set is counted as transport_error and
//!   nothing else of it is read (its counter restarts the CC check of its
//!   PID, so one errored packet is not also a CC error).
//! - pcr_accuracy_error (only with `Config::pcr_accuracy`, i.e. on a
//!   tuner's input mux): the PCR against the value interpolated from the
//!   previous PCR at the mux's constant bitrate (measured over the PCRs of
//!   the PID since the last break) and the packets between them. That needs
//!   every packet of the mux: a tuner passing the full TS gives it; a tuner
//!   with per-PID hardware filters does not (call `set_passed_pids`: the
//!   test is then off), and a file or a remote stream cannot tell the
//!   multiplexer's jitter from the network's (`Config::pcr_accuracy` off).
//!   Arrival times are never used for it: a DVR hands packets in bursts.
//! - pts_error: PES start of each video and audio ES (clear packets only;
//!   subtitles and data may be sparse by design).
//!
//! Cost: a fixed PID → slot table, sections reassembled only on PSI/SI
//! PIDs, PAT/PMT parsed only when their CRC changes, time limits checked
//! at most every 5 ms of time; no allocation per packet.
//!
//! Promises: untrusted input never panics; memory bounded (at most 8192
//! PID slots, `MAX_PROGRAMS` programs, one section per PSI PID).

use super::cc::CcCheck;
use crate::ts::packet::{pcr_delta, Packet, PCR_HZ, PCR_WRAP};
use crate::ts::pat::PatRepr;
use crate::ts::pes::PesHeader;
use crate::ts::pmt::{PmtRepr, StreamKind};
use crate::ts::section::{Assembler, Section};
use crate::ts::{pid, table_id, PACKET_SIZE, SYNC_BYTE};
use serde::Serialize;

/// The indicators, priority 1, 2 and 3, in the standard's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Indicator {
    TsSyncLoss,
    SyncByteError,
    PatError,
    ContinuityCountError,
    PmtError,
    PidError,
    TransportError,
    CrcError,
    PcrRepetitionError,
    PcrDiscontinuityIndicatorError,
    PcrAccuracyError,
    PtsError,
    CatError,
    NitError,
    SdtError,
    EitError,
    TdtError,
}

/// Every indicator, in order (the metric's and /status's order).
pub const INDICATORS: [Indicator; 17] = [
    Indicator::TsSyncLoss,
    Indicator::SyncByteError,
    Indicator::PatError,
    Indicator::ContinuityCountError,
    Indicator::PmtError,
    Indicator::PidError,
    Indicator::TransportError,
    Indicator::CrcError,
    Indicator::PcrRepetitionError,
    Indicator::PcrDiscontinuityIndicatorError,
    Indicator::PcrAccuracyError,
    Indicator::PtsError,
    Indicator::CatError,
    Indicator::NitError,
    Indicator::SdtError,
    Indicator::EitError,
    Indicator::TdtError,
];

impl Indicator {
    /// The id in metrics and /status ("pat_error").
    pub fn id(self) -> &'static str {
        match self {
            Indicator::TsSyncLoss => "ts_sync_loss",
            Indicator::SyncByteError => "sync_byte_error",
            Indicator::PatError => "pat_error",
            Indicator::ContinuityCountError => "continuity_count_error",
            Indicator::PmtError => "pmt_error",
            Indicator::PidError => "pid_error",
            Indicator::TransportError => "transport_error",
            Indicator::CrcError => "crc_error",
            Indicator::PcrRepetitionError => "pcr_repetition_error",
            Indicator::PcrDiscontinuityIndicatorError => "pcr_discontinuity_indicator_error",
            Indicator::PcrAccuracyError => "pcr_accuracy_error",
            Indicator::PtsError => "pts_error",
            Indicator::CatError => "cat_error",
            Indicator::NitError => "nit_error",
            Indicator::SdtError => "sdt_error",
            Indicator::EitError => "eit_error",
            Indicator::TdtError => "tdt_error",
        }
    }

    /// 1, 2 or 3.
    pub fn priority(self) -> u8 {
        match self as u8 {
            0..=5 => 1,
            6..=12 => 2,
            _ => 3,
        }
    }

    pub fn from_id(id: &str) -> Option<Indicator> {
        INDICATORS.iter().copied().find(|i| i.id() == id)
    }
}

/// The standard's time limits (TR 101 290 §5.2), in ms; `Default` is the
/// standard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// PAT (table_id 0 on PID 0) at least this often (1.3.a: 0.5 s).
    pub pat_ms: u64,
    /// Each PMT of the PAT at least this often (1.5.a: 0.5 s).
    pub pmt_ms: u64,
    /// A PID a PMT names must carry a packet within this (1.6: "user
    /// specified"; 5 s as the standard's example).
    pub pid_ms: u64,
    /// PCRs of a PCR PID at least this often (2.3: 40 ms).
    pub pcr_repetition_ms: u64,
    /// Two PCRs more than this apart in value, without the
    /// discontinuity_indicator (2.3b: 100 ms).
    pub pcr_discontinuity_ms: u64,
    /// PCR against the constant-rate interpolation (2.4: ±500 ns).
    pub pcr_accuracy_ns: u64,
    /// PTS of each ES at least this often (2.5: 700 ms).
    pub pts_ms: u64,
    /// NIT actual at least this often (3.1.a: 10 s).
    pub nit_ms: u64,
    /// SDT actual (3.5.a: 2 s).
    pub sdt_ms: u64,
    /// EIT present/following actual, sections 0 and 1 (3.6.a: 2 s).
    pub eit_ms: u64,
    /// TDT (3.8.a: 30 s).
    pub tdt_ms: u64,
    /// Two sections of the same NIT/SDT/EIT/TDT less than this apart
    /// (3.x: 25 ms).
    pub si_min_gap_ms: u64,
    /// How long an indicator stays "active" after its last error (events
    /// such as a CC error have no duration of their own).
    pub active_hold_ms: u64,
    /// A condition that lasts (no CAT while scrambled) is counted again
    /// this often while it lasts.
    pub recount_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            pat_ms: 500,
            pmt_ms: 500,
            pid_ms: 5000,
            pcr_repetition_ms: 40,
            pcr_discontinuity_ms: 100,
            pcr_accuracy_ns: 500,
            pts_ms: 700,
            nit_ms: 10_000,
            sdt_ms: 2000,
            eit_ms: 2000,
            tdt_ms: 30_000,
            si_min_gap_ms: 25,
            active_hold_ms: 5000,
            recount_ms: 1000,
        }
    }
}

/// What to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    /// pcr_accuracy_error: only on a tuner's input mux (see the module).
    pub pcr_accuracy: bool,
    /// Priority 3 (NIT, SDT, EIT, TDT): on an input mux; a channel's
    /// single-program TS carries only PAT and PMT, so off there.
    pub si: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            pcr_accuracy: false,
            si: true,
        }
    }
}

impl Config {
    /// An input mux: everything, PCR accuracy if it is a tuner.
    pub fn mux(tuner: bool) -> Config {
        Config {
            pcr_accuracy: tuner,
            ..Default::default()
        }
    }

    /// A channel's single-program output: priorities 1 and 2.
    pub fn channel() -> Config {
        Config {
            si: false,
            ..Default::default()
        }
    }
}

/// One indicator's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndicatorState {
    pub errors: u64,
    /// Time (caller's ms) of the last error.
    pub last_error_ms: Option<u64>,
    /// A lasting condition holds now (PAT missing, no CAT…).
    pub condition: bool,
}

/// The widest spread of one read's packets in time (`push_packets_between`).
pub const MAX_SPREAD_MS: u64 = 50;

/// The most programs followed (a hostile PAT may list thousands).
pub const MAX_PROGRAMS: usize = 256;
/// The most ES followed per program.
const MAX_ES: usize = 64;

const ROLE_PMT: u8 = 1;
const ROLE_ES: u8 = 2;
const ROLE_PCR: u8 = 4;
const ROLE_PTS: u8 = 8;

/// The PCR clock of one PCR PID.
#[derive(Debug, Clone, Copy, Default)]
struct PcrTrack {
    /// (PCR, packet index, arrival ms) of the last PCR.
    last: Option<(u64, u64, u64)>,
    /// (PCR, packet index) of the first PCR since the last break: the
    /// mux rate is measured from it.
    base: Option<(u64, u64)>,
    /// The PCR PID went silent: counted once per limit period.
    next_rep_ms: u64,
}

/// One PID. What every packet touches is here (32 bytes: two slots a
/// cache line, so the PIDs of a mux stay in few lines while the read
/// streams through the cache); what only sections, PTS starts and the
/// time checks touch is in `SlotCold`.
#[derive(Debug, Clone, Default)]
struct Slot {
    cc: CcCheck,
    role: u8,
    /// Index into `asms`.
    asm: Option<u8>,
    /// Arrival of the last packet (or when the PID became expected).
    last_seen_ms: u64,
    pcr: Option<Box<PcrTrack>>,
    cold: Box<SlotCold>,
}

#[derive(Debug, Clone, Default)]
struct SlotCold {
    /// Next time the PID-absent error may be counted.
    next_pid_ms: u64,
    /// Last table arrival (PMT on a PMT PID), next error time.
    last_table_ms: u64,
    next_table_ms: u64,
    /// CRC of the last PSI section parsed on this PID (skip unchanged).
    last_crc: Option<u32>,
    /// Last PTS arrival, next pts_error time.
    last_pts_ms: Option<u64>,
    next_pts_ms: u64,
    /// crc_errors of the assembler already counted.
    crc_seen: u64,
}

#[derive(Debug, Clone)]
struct Program {
    number: u16,
    pmt_pid: u16,
    pcr_pid: u16,
    /// (PID, PTS checked).
    es: Vec<(u16, bool)>,
}

/// A repetition test on one SI table: last arrival, next error time.
#[derive(Debug, Clone, Copy, Default)]
struct Repetition {
    last_ms: u64,
    next_ms: u64,
    seen: bool,
}

/// Last arrivals of sections, direct-mapped by (table_id, extension,
/// section_number): the 25 ms minimum gap. A collision forgets, never
/// invents an error.
const GAP_SLOTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncState {
    Hunting,
    Locked { bad_run: u8 },
}

/// The times of one read's packets (`push_packets_between`): packet k's
/// is from + span·(k+1)/n, stepped without a division per packet (`at`
/// + `rem`/n is it).
struct Spread {
    at: u64,
    q: u64,
    r: u64,
    n: u64,
    rem: u64,
}

impl Spread {
    /// The next packet's time.
    #[inline(always)]
    fn next(&mut self) -> u64 {
        self.at += self.q;
        self.rem += self.r;
        if self.rem >= self.n {
            self.at += 1;
            self.rem -= self.n;
        }
        self.at
    }

    /// `next` `m` times (one division): the last one's time.
    #[inline]
    fn skip(&mut self, m: u64) -> u64 {
        self.rem += self.r * m;
        self.at += self.q * m + self.rem / self.n;
        self.rem %= self.n;
        self.at
    }
}

/// The analyser; see the module.
pub struct Tr101290 {
    cfg: Config,
    ind: [IndicatorState; 17],
    slot_of: Box<[u16; 8192]>,
    slots: Vec<Slot>,
    asms: Vec<Assembler>,
    programs: Vec<Program>,
    nit_pid: u16,
    packets: u64,
    started_ms: Option<u64>,
    now_ms: u64,
    next_check_ms: u64,
    pat: Repetition,
    cat_seen: bool,
    next_cat_ms: u64,
    nit: Repetition,
    sdt: Repetition,
    eit0: Repetition,
    eit1: Repetition,
    tdt: Repetition,
    gaps: [(u32, u64); GAP_SLOTS],
    /// PIDs the input passes (None: all): bit per PID.
    passed: Option<Box<[u64; 128]>>,
    sync: SyncState,
    carry: Vec<u8>,
    /// Sections of this packet, waiting to be read (reused).
    sec_buf: Vec<u8>,
    sec_lens: Vec<usize>,
    /// TDT/TOT UTC seconds seen (for the box clock): (utc, arrival ms).
    pub last_utc: Option<(i64, u64)>,
    /// Bytes skipped while hunting for sync.
    pub bytes_skipped: u64,
}

impl Tr101290 {
    pub fn new(cfg: Config) -> Tr101290 {
        let mut t = Tr101290 {
            cfg,
            ind: [IndicatorState::default(); 17],
            slot_of: Box::new([0; 8192]),
            slots: vec![Slot::default()], // slot 0: "none"
            asms: Vec::new(),
            programs: Vec::new(),
            nit_pid: pid::NIT,
            packets: 0,
            started_ms: None,
            now_ms: 0,
            next_check_ms: 0,
            pat: Repetition::default(),
            cat_seen: false,
            next_cat_ms: 0,
            nit: Repetition::default(),
            sdt: Repetition::default(),
            eit0: Repetition::default(),
            eit1: Repetition::default(),
            tdt: Repetition::default(),
            gaps: [(u32::MAX, 0); GAP_SLOTS],
            passed: None,
            sync: SyncState::Hunting,
            carry: Vec::with_capacity(6 * PACKET_SIZE),
            sec_buf: Vec::with_capacity(4096),
            sec_lens: Vec::with_capacity(8),
            last_utc: None,
            bytes_skipped: 0,
        };
        for p in [pid::PAT, pid::CAT, pid::NIT, pid::SDT, pid::EIT, pid::TDT] {
            t.want_sections(p);
        }
        t
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The state of each indicator, in `INDICATORS` order.
    pub fn indicators(&self) -> &[IndicatorState; 17] {
        &self.ind
    }

    pub fn get(&self, i: Indicator) -> &IndicatorState {
        &self.ind[i as usize]
    }

    /// Whether `i` is in error at `now_ms`: its condition holds, or its
    /// last error is less than `active_hold_ms` old.
    pub fn active(&self, i: Indicator, now_ms: u64) -> bool {
        let s = &self.ind[i as usize];
        s.condition
            || s.last_error_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < self.cfg.limits.active_hold_ms)
    }

    /// Packets analysed.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The PIDs the input passes (a tuner's hardware filters); None: the
    /// whole mux. PIDs not passed are not expected (PMT, PID errors), and
    /// PCR accuracy is off (packet positions are not the mux's).
    pub fn set_passed_pids(&mut self, pids: Option<&[u16]>) {
        self.passed = pids.map(|list| {
            let mut b = Box::new([0u64; 128]);
            for &p in list.iter().chain(&[0u16, 1, 0x10, 0x11, 0x12, 0x14]) {
                let p = (p & 0x1FFF) as usize;
                b[p / 64] |= 1 << (p % 64);
            }
            b
        });
        for t in self.slots.iter_mut() {
            if let Some(pcr) = t.pcr.as_mut() {
                pcr.base = None;
            }
        }
    }

    fn is_passed(&self, p: u16) -> bool {
        match &self.passed {
            None => true,
            Some(b) => {
                let p = (p & 0x1FFF) as usize;
                b[p / 64] & (1 << (p % 64)) != 0
            }
        }
    }

    fn error(&mut self, i: Indicator, now: u64) {
        let s = &mut self.ind[i as usize];
        s.errors += 1;
        s.last_error_ms = Some(now);
    }

    fn slot_mut(&mut self, p: u16) -> &mut Slot {
        let p = p & 0x1FFF;
        let mut i = self.slot_of[p as usize] as usize;
        if i == 0 {
            i = self.slots.len();
            self.slots.push(Slot::default());
            self.slot_of[p as usize] = i as u16;
        }
        &mut self.slots[i]
    }

    fn want_sections(&mut self, p: u16) {
        if self.slot_mut(p).asm.is_some() || self.asms.len() >= u8::MAX as usize {
            return;
        }
        let n = self.asms.len() as u8;
        self.asms.push(Assembler::new());
        self.slot_mut(p).asm = Some(n);
    }

    /// The source behind the aligned packets lost sync and found it
    /// again (its resync skipped bytes): a TS sync loss.
    pub fn sync_lost(&mut self, now_ms: u64) {
        self.error(Indicator::TsSyncLoss, now_ms);
        self.error(Indicator::SyncByteError, now_ms);
        self.positions_broken();
    }

    /// The input broke on purpose (a file looped, a source reopened): the
    /// continuity and clock checks restart, counters stay.
    pub fn input_discontinuity(&mut self) {
        for s in self.slots.iter_mut() {
            s.cc = CcCheck::default();
            if let Some(t) = s.pcr.as_mut() {
                **t = PcrTrack::default();
            }
            s.cold.last_pts_ms = None;
        }
        for a in self.asms.iter_mut() {
            a.reset();
        }
        self.sync = SyncState::Hunting;
        self.carry.clear();
    }

    /// Packets were lost: positions between PCRs no longer measure time,
    /// the PCR accuracy restarts from the next PCR of each PID.
    fn positions_broken(&mut self) {
        for s in self.slots.iter_mut() {
            if let Some(pcr) = s.pcr.as_mut() {
                pcr.base = None;
                if let Some(l) = pcr.last.as_mut() {
                    l.1 = u64::MAX;
                }
            }
        }
    }

    /// Any bytes: framed into packets with the standard's hysteresis.
    pub fn push_bytes(&mut self, mut data: &[u8], now_ms: u64) {
        let mut carry = std::mem::take(&mut self.carry);
        while !data.is_empty() || carry.len() >= PACKET_SIZE {
            match self.sync {
                SyncState::Locked { bad_run } => {
                    // One packet: complete the carry first.
                    let pkt: [u8; PACKET_SIZE];
                    if !carry.is_empty() || data.len() < PACKET_SIZE {
                        let need = PACKET_SIZE.saturating_sub(carry.len());
                        let take = need.min(data.len());
                        carry.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if carry.len() < PACKET_SIZE {
                            break;
                        }
                        let mut p = [0u8; PACKET_SIZE];
                        p.copy_from_slice(&carry[..PACKET_SIZE]);
                        carry.drain(..PACKET_SIZE);
                        pkt = p;
                    } else {
                        let mut p = [0u8; PACKET_SIZE];
                        p.copy_from_slice(&data[..PACKET_SIZE]);
                        data = &data[PACKET_SIZE..];
                        pkt = p;
                    }
                    if pkt[0] == SYNC_BYTE {
                        self.sync = SyncState::Locked { bad_run: 0 };
                        self.packet(&pkt, now_ms);
                    } else {
                        self.error(Indicator::SyncByteError, now_ms);
                        let bad_run = bad_run + 1;
                        if bad_run >= 2 {
                            // Lost: hunt from the byte after this slot's start.
                            self.error(Indicator::TsSyncLoss, now_ms);
                            self.ind[Indicator::TsSyncLoss as usize].condition = true;
                            self.sync = SyncState::Hunting;
                            self.positions_broken();
                            let mut rest = Vec::with_capacity(carry.len() + PACKET_SIZE);
                            rest.extend_from_slice(&pkt[1..]);
                            rest.extend_from_slice(&carry);
                            self.bytes_skipped += 1;
                            carry = rest;
                        } else {
                            // In sync, one bad byte: the framing holds.
                            self.sync = SyncState::Locked { bad_run };
                            let mut p = pkt;
                            p[0] = SYNC_BYTE;
                            self.packet(&p, now_ms);
                        }
                    }
                }
                SyncState::Hunting => {
                    // Bounded: keep at most 5 packets' worth looking ahead.
                    let room = 5 * PACKET_SIZE + PACKET_SIZE - carry.len().min(6 * PACKET_SIZE);
                    let take = room.min(data.len());
                    carry.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    let mut found = None;
                    let mut i = 0;
                    while i + 4 * PACKET_SIZE < carry.len() {
                        if (0..5).all(|k| carry[i + k * PACKET_SIZE] == SYNC_BYTE) {
                            found = Some(i);
                            break;
                        }
                        i += 1;
                    }
                    match found {
                        Some(i) => {
                            self.bytes_skipped += i as u64;
                            carry.drain(..i);
                            self.sync = SyncState::Locked { bad_run: 0 };
                            self.ind[Indicator::TsSyncLoss as usize].condition = false;
                        }
                        None => {
                            // Drop what cannot start a locked run.
                            let keep = carry.len().min(4 * PACKET_SIZE);
                            let drop = carry.len() - keep;
                            self.bytes_skipped += drop as u64;
                            carry.drain(..drop);
                            if data.is_empty() {
                                break;
                            }
                        }
                    }
                }
            }
        }
        self.carry = carry;
        self.tick(now_ms);
    }

    /// Aligned packets (a source already framed them); a slot that does not
    /// start with the sync byte is a sync_byte_error.
    pub fn push_packets(&mut self, data: &[u8], now_ms: u64) {
        for p in data.chunks_exact(PACKET_SIZE) {
            if p[0] != SYNC_BYTE {
                self.error(Indicator::SyncByteError, now_ms);
                continue;
            }
            self.packet(p, now_ms);
        }
        self.tick(now_ms);
    }

    /// Aligned packets that arrived together (one read) at `to_ms`, the
    /// previous read at `from_ms`: each gets a time spread evenly between
    /// the two (a read of a DVR or a socket hands over milliseconds of
    /// stream at once; stamping them all with the read's time would make
    /// PCR gaps look longer at each read's edge). A spread wider than
    /// `MAX_SPREAD_MS` is cut to it (the input was idle before).
    pub fn push_packets_between(&mut self, data: &[u8], from_ms: u64, to_ms: u64) {
        let n = ((data.len() / PACKET_SIZE) as u64).max(1);
        let from = from_ms.max(to_ms.saturating_sub(MAX_SPREAD_MS)).min(to_ms);
        let span = to_ms - from;
        // Packet k's time is from + span·(k+1)/n, stepped without a
        // division per packet (`Spread`).
        let mut spread = Spread {
            at: from,
            q: span / n,
            r: span % n,
            n,
            rem: 0,
        };
        // `packet`'s fast path, by runs: a packet that takes it and the
        // packets right after it on the same PID that also would (clear,
        // payload only, no PES start on a PTS PID) are checked with the
        // PID's continuity state, the packet count and the time in
        // registers, stored once at the run's end; what `packet` does per
        // packet, in the same order. The count is written back before a
        // packet that takes the full path (it reads it: PCR accuracy), which
        // sets the time itself; the times of one read never go back.
        let mut packets = self.packets;
        let mut latest: Option<u64> = None;
        let total = data.len() / PACKET_SIZE;
        let mut k = 0;
        while k < total {
            let p = &data[k * PACKET_SIZE..(k + 1) * PACKET_SIZE];
            k += 1;
            let t = spread.next();
            let (b0, b1, b2, b3) = (p[0], p[1], p[2], p[3]);
            if b0 != SYNC_BYTE {
                self.error(Indicator::SyncByteError, t);
                continue;
            }
            if b1 & 0x80 == 0 && b3 & 0xE0 == 0 && self.started_ms.is_some() {
                let pid = u16::from_be_bytes([b1 & 0x1F, b2]);
                let si = self.slot_of[pid as usize] as usize;
                if si != 0 {
                    if let Some(s) = self.slots.get_mut(si) {
                        let pts = s.role & ROLE_PTS != 0;
                        if s.asm.is_none() && (!pts || b1 & 0x40 == 0) {
                            // Byte 1 of the run's packets: no TEI, this PID,
                            // and no PES start if the PID's PTS are read.
                            let m1 = if pts { 0xDF } else { 0x9F };
                            let v1 = b1 & m1;
                            let checked = pid != pid::NULL;
                            let mut cc = s.cc;
                            let (mut c3, mut last) = (b3, t);
                            loop {
                                packets += 1;
                                if checked && cc.check(c3, c3 & 0x10 != 0, false) {
                                    let e = &mut self.ind[Indicator::ContinuityCountError as usize];
                                    e.errors += 1;
                                    e.last_error_ms = Some(last);
                                }
                                // The packets after it that continue the PID
                                // plainly (payload only, the next counter):
                                // no error, nothing but their count.
                                if let Some(mut e) = cc.next_cc().filter(|_| checked) {
                                    let mut m = 0;
                                    while k + m < total {
                                        let h = &data[(k + m) * PACKET_SIZE..][..4];
                                        if h[0] != SYNC_BYTE
                                            || h[1] & m1 != v1
                                            || h[2] != b2
                                            || h[3] != 0x10 | e
                                        {
                                            break;
                                        }
                                        e = (e + 1) & 0x0F;
                                        m += 1;
                                    }
                                    if m > 0 {
                                        cc.continued(e.wrapping_sub(1));
                                        packets += m as u64;
                                        k += m;
                                        last = spread.skip(m as u64);
                                    }
                                }
                                if k >= total {
                                    break;
                                }
                                let h = &data[k * PACKET_SIZE..k * PACKET_SIZE + 4];
                                if h[0] != SYNC_BYTE
                                    || h[1] & m1 != v1
                                    || h[2] != b2
                                    || h[3] & 0xE0 != 0
                                {
                                    break;
                                }
                                c3 = h[3];
                                k += 1;
                                last = spread.next();
                            }
                            s.cc = cc;
                            s.last_seen_ms = last;
                            latest = Some(last);
                            continue;
                        }
                    }
                }
            }
            self.packets = packets;
            self.packet_full(p, t);
            packets = self.packets;
        }
        self.packets = packets;
        if let Some(t) = latest {
            self.now_ms = self.now_ms.max(t);
        }
        self.tick(to_ms);
    }

    /// One aligned packet (sync byte checked by the caller).
    ///
    /// Most packets of a mux are clear ES payload without an adaptation
    /// field on a PID that needs no section, PCR or PTS reading: for them
    /// only the continuity check and the PID's arrival, here, inlined in
    /// the push loops; every other packet goes through `packet_full`,
    /// which does the same for them and the rest.
    #[inline(always)]
    pub fn packet(&mut self, raw: &[u8], now: u64) {
        if let [SYNC_BYTE, b1, b2, b3, ..] = *raw {
            // Clear (no TEI, not scrambled), payload only, started.
            if raw.len() >= PACKET_SIZE
                && b1 & 0x80 == 0
                && b3 & 0xE0 == 0
                && self.started_ms.is_some()
            {
                let pid = u16::from_be_bytes([b1 & 0x1F, b2]);
                let si = self.slot_of[pid as usize] as usize;
                if let Some(s) = self.slots.get_mut(si).filter(|_| si != 0) {
                    if s.asm.is_none() && (s.role & ROLE_PTS == 0 || b1 & 0x40 == 0) {
                        self.packets += 1;
                        self.now_ms = self.now_ms.max(now);
                        s.last_seen_ms = now;
                        if pid != pid::NULL && s.cc.check(b3, b3 & 0x10 != 0, false) {
                            self.error(Indicator::ContinuityCountError, now);
                        }
                        return;
                    }
                }
            }
        }
        self.packet_full(raw, now);
    }

    /// `packet` for any packet.
    #[inline(never)]
    fn packet_full(&mut self, raw: &[u8], now: u64) {
        let Ok(p) = Packet::new_checked(raw) else {
            return;
        };
        if self.started_ms.is_none() {
            self.start(now);
        }
        self.now_ms = self.now_ms.max(now);
        let idx = self.packets;
        self.packets += 1;
        let pid = p.pid();
        if p.transport_error() {
            self.error(Indicator::TransportError, now);
            // Nothing of it trusted; its PID's CC check restarts.
            let si = self.slot_of[pid as usize] as usize;
            if si != 0 {
                self.slots[si].cc = CcCheck::default();
            }
            return;
        }
        let scrambled = p.scrambling_control() != 0;
        if self.slot_of[pid as usize] == 0 {
            // First packet of a PID nobody named: a slot keeps its CC.
            self.slot_mut(pid);
        }
        let s = &mut self.slots[self.slot_of[pid as usize] as usize];
        s.last_seen_ms = now;
        let cc_err = pid != pid::NULL && s.cc.check_packet(&p);
        let (role, asm) = (s.role, s.asm);
        if cc_err {
            self.error(Indicator::ContinuityCountError, now);
        }

        if scrambled {
            match pid {
                pid::PAT => self.error(Indicator::PatError, now),
                _ if role & ROLE_PMT != 0 => self.error(Indicator::PmtError, now),
                _ => {}
            }
            if !self.cat_seen && now >= self.next_cat_ms {
                self.error(Indicator::CatError, now);
                self.ind[Indicator::CatError as usize].condition = true;
                self.next_cat_ms = now + self.cfg.limits.recount_ms;
            }
        }
        if role & ROLE_PCR != 0 {
            if let Some(pcr) = p.pcr() {
                self.on_pcr(pid, pcr, p.discontinuity(), idx, now);
            }
        }
        if scrambled {
            return;
        }
        if let Some(a) = asm {
            self.sections(pid, a as usize, &p, now);
        } else if role & ROLE_PTS != 0 && p.payload_unit_start() {
            if let Ok(h) = PesHeader::new_checked(p.payload()) {
                if h.pts().is_some() {
                    let s = self.slot_mut(pid);
                    s.cold.last_pts_ms = Some(now);
                    s.cold.next_pts_ms = 0;
                }
            }
        }
    }

    fn start(&mut self, now: u64) {
        self.started_ms = Some(now);
        for r in [
            &mut self.pat,
            &mut self.nit,
            &mut self.sdt,
            &mut self.eit0,
            &mut self.eit1,
            &mut self.tdt,
        ] {
            r.last_ms = now;
        }
    }

    fn on_pcr(&mut self, pid: u16, pcr: u64, disc: bool, idx: u64, now: u64) {
        let lim = self.cfg.limits;
        let accuracy = self.cfg.pcr_accuracy && self.passed.is_none();
        let s = self.slot_mut(pid);
        let t = s.pcr.get_or_insert_with(Default::default);
        let mut rep = false;
        let mut jump = false;
        let mut inaccurate = false;
        if let Some((prev, prev_idx, prev_ms)) = t.last {
            if now.saturating_sub(prev_ms) > lim.pcr_repetition_ms && t.next_rep_ms <= prev_ms {
                // Not already counted by the time check while it was silent.
                rep = true;
            }
            let d = pcr_delta(prev, pcr);
            let back = d > PCR_WRAP / 2;
            if !disc && (back || d > lim.pcr_discontinuity_ms * (PCR_HZ / 1000)) {
                jump = true;
                t.base = None;
            } else if disc {
                t.base = None;
            } else if accuracy {
                if let Some((b_pcr, b_idx)) = t.base {
                    let span = idx - b_idx;
                    let ticks = pcr_delta(b_pcr, pcr);
                    if span > 0 && prev_idx != u64::MAX && idx > prev_idx {
                        let per_packet = ticks as f64 / span as f64;
                        let expect = prev as f64 + per_packet * (idx - prev_idx) as f64;
                        let err_ns = (pcr as f64 - expect).abs() * 1e9 / PCR_HZ as f64;
                        // Wrap of the 2^33·300 circle: far off, skip.
                        if err_ns > lim.pcr_accuracy_ns as f64 && err_ns < 1e8 {
                            inaccurate = true;
                        }
                    }
                }
            }
        }
        if t.base.is_none() {
            t.base = Some((pcr, idx));
        }
        t.last = Some((pcr, idx, now));
        t.next_rep_ms = 0;
        if rep {
            self.error(Indicator::PcrRepetitionError, now);
        }
        if jump {
            self.error(Indicator::PcrDiscontinuityIndicatorError, now);
        }
        if inaccurate {
            self.error(Indicator::PcrAccuracyError, now);
        }
    }

    fn sections<T: AsRef<[u8]>>(&mut self, pid: u16, a: usize, p: &Packet<T>, now: u64) {
        let mut buf = std::mem::take(&mut self.sec_buf);
        let mut lens = std::mem::take(&mut self.sec_lens);
        buf.clear();
        lens.clear();
        let asm = &mut self.asms[a];
        asm.push(p, |s| {
            buf.extend_from_slice(s);
            lens.push(s.len());
        });
        let crc_errors = asm.stats.crc_errors;
        let s = self.slot_mut(pid);
        if crc_errors > s.cold.crc_seen {
            let n = crc_errors - s.cold.crc_seen;
            s.cold.crc_seen = crc_errors;
            for _ in 0..n {
                self.error(Indicator::CrcError, now);
            }
        }
        let mut off = 0;
        for &len in &lens {
            self.on_section(pid, &buf[off..off + len], now);
            off += len;
        }
        self.sec_buf = buf;
        self.sec_lens = lens;
    }

    fn gap_check(&mut self, tid: u8, ext: u16, sn: u8, now: u64) -> bool {
        let key = (tid as u32) << 24 | (ext as u32) << 8 | sn as u32;
        let h = (key.wrapping_mul(0x9E37_79B9) >> 26) as usize % GAP_SLOTS;
        let (k, last) = self.gaps[h];
        self.gaps[h] = (key, now);
        k == key && now.saturating_sub(last) < self.cfg.limits.si_min_gap_ms
    }

    fn on_section(&mut self, pid: u16, bytes: &[u8], now: u64) {
        let Ok(s) = Section::new_checked(bytes) else {
            return;
        };
        let tid = s.table_id();
        let si = self.cfg.si;
        match pid {
            pid::PAT => {
                if tid != table_id::PAT {
                    self.error(Indicator::PatError, now);
                    return;
                }
                self.pat.last_ms = now;
                self.pat.seen = true;
                self.ind[Indicator::PatError as usize].condition = false;
                if s.syntax_indicator() && !s.current_next() {
                    return;
                }
                let crc = s.crc32();
                if self.slot_mut(pid::PAT).cold.last_crc == crc {
                    return;
                }
                self.slot_mut(pid::PAT).cold.last_crc = crc;
                if let Ok(pat) = PatRepr::parse(&s) {
                    self.on_pat(&pat, now);
                }
                return;
            }
            pid::CAT => {
                if tid != table_id::CAT {
                    self.error(Indicator::CatError, now);
                } else {
                    self.cat_seen = true;
                    self.ind[Indicator::CatError as usize].condition = false;
                }
                return;
            }
            _ => {}
        }
        if pid == self.nit_pid && si {
            match tid {
                table_id::NIT_ACTUAL => {
                    self.nit.last_ms = now;
                    self.nit.seen = true;
                    self.ind[Indicator::NitError as usize].condition = false;
                    if self.gap_check(tid, s.table_id_extension(), s.section_number(), now) {
                        self.error(Indicator::NitError, now);
                    }
                }
                table_id::NIT_OTHER | table_id::ST => {}
                _ if pid == pid::NIT => self.error(Indicator::NitError, now),
                _ => {}
            }
            if pid == pid::NIT {
                return;
            }
        }
        match pid {
            pid::SDT if si => match tid {
                table_id::SDT_ACTUAL => {
                    self.sdt.last_ms = now;
                    self.sdt.seen = true;
                    self.ind[Indicator::SdtError as usize].condition = false;
                    if self.gap_check(tid, s.table_id_extension(), s.section_number(), now) {
                        self.error(Indicator::SdtError, now);
                    }
                }
                table_id::SDT_OTHER | table_id::BAT | table_id::ST => {}
                _ => self.error(Indicator::SdtError, now),
            },
            pid::EIT if si => match tid {
                table_id::EIT_PF_ACTUAL => {
                    let sn = s.section_number();
                    if sn == 0 {
                        self.eit0.last_ms = now;
                        self.eit0.seen = true;
                    } else if sn == 1 {
                        self.eit1.last_ms = now;
                        self.eit1.seen = true;
                    }
                    if sn <= 1 {
                        self.ind[Indicator::EitError as usize].condition = false;
                    }
                    if self.gap_check(tid, s.table_id_extension(), sn, now) {
                        self.error(Indicator::EitError, now);
                    }
                }
                table_id::EIT_PF_OTHER..=table_id::EIT_SCHED_OTHER_LAST | table_id::ST => {}
                _ => self.error(Indicator::EitError, now),
            },
            pid::TDT => match tid {
                table_id::TDT | table_id::TOT => {
                    let utc = if tid == table_id::TDT {
                        crate::ts::tdt::TdtRepr::parse(&s)
                            .ok()
                            .and_then(|t| t.utc_time())
                    } else {
                        crate::ts::tot::TotRepr::parse(&s)
                            .ok()
                            .and_then(|t| t.utc_time())
                    };
                    if let Some(u) = utc {
                        self.last_utc = Some((u, now));
                    }
                    if tid == table_id::TDT && si {
                        self.tdt.last_ms = now;
                        self.tdt.seen = true;
                        self.ind[Indicator::TdtError as usize].condition = false;
                        if self.gap_check(tid, 0, 0, now) {
                            self.error(Indicator::TdtError, now);
                        }
                    }
                }
                table_id::ST => {}
                _ if si => self.error(Indicator::TdtError, now),
                _ => {}
            },
            _ => {
                let si_idx = self.slot_of[pid as usize] as usize;
                if si_idx == 0 || self.slots[si_idx].role & ROLE_PMT == 0 {
                    return;
                }
                if tid != table_id::PMT {
                    return;
                }
                let s_crc = s.crc32();
                let slot = &mut self.slots[si_idx];
                slot.cold.last_table_ms = now;
                slot.cold.next_table_ms = 0;
                if slot.cold.last_crc == s_crc || (s.syntax_indicator() && !s.current_next()) {
                    return;
                }
                slot.cold.last_crc = s_crc;
                if let Ok(pmt) = PmtRepr::parse(&s) {
                    self.on_pmt(pid, &pmt, now);
                }
            }
        }
    }

    fn on_pat(&mut self, pat: &PatRepr, now: u64) {
        // The PAT of a multi-section table: this section's programs
        // replace what it said before (single-section PATs are the rule).
        let mut programs: Vec<Program> = Vec::new();
        for e in &pat.entries {
            if e.program_number == 0 {
                if e.pid != self.nit_pid && e.pid > 0x1F {
                    self.nit_pid = e.pid;
                    self.want_sections(e.pid);
                }
                continue;
            }
            if programs.len() >= MAX_PROGRAMS {
                break;
            }
            let old = self
                .programs
                .iter()
                .find(|p| p.number == e.program_number && p.pmt_pid == e.pid);
            programs.push(match old {
                Some(o) => o.clone(),
                None => Program {
                    number: e.program_number,
                    pmt_pid: e.pid,
                    pcr_pid: pid::NULL,
                    es: Vec::new(),
                },
            });
        }
        if pat.last_section_number > 0 {
            // Keep the other sections' programs.
            for p in &self.programs {
                if !programs.iter().any(|q| q.number == p.number) && programs.len() < MAX_PROGRAMS {
                    programs.push(p.clone());
                }
            }
        }
        self.programs = programs;
        self.roles(now);
    }

    fn on_pmt(&mut self, pmt_pid: u16, pmt: &PmtRepr, now: u64) {
        let Some(p) = self
            .programs
            .iter_mut()
            .find(|p| p.pmt_pid == pmt_pid && p.number == pmt.program_number)
        else {
            return;
        };
        p.pcr_pid = pmt.pcr_pid;
        p.es = pmt
            .streams
            .iter()
            .take(MAX_ES)
            .map(|s| {
                let k = s.kind();
                (
                    s.elementary_pid,
                    matches!(k, StreamKind::Video | StreamKind::Audio),
                )
            })
            .collect();
        self.roles(now);
    }

    /// Give every PID its role from the PAT and PMTs.
    fn roles(&mut self, now: u64) {
        let mut keep_pcr = Vec::new();
        for s in self.slots.iter_mut().skip(1) {
            s.role = 0;
        }
        let programs = std::mem::take(&mut self.programs);
        for p in &programs {
            if !self.is_passed(p.pmt_pid) || p.pmt_pid <= 0x1F || p.pmt_pid == pid::NULL {
                continue;
            }
            self.want_sections(p.pmt_pid);
            let s = self.slot_mut(p.pmt_pid);
            if s.role & ROLE_PMT == 0 && s.cold.last_table_ms == 0 {
                s.cold.last_table_ms = now;
            }
            s.role |= ROLE_PMT;
            for &(es, pts) in &p.es {
                if es == pid::NULL || es <= 0x1F || !self.is_passed(es) {
                    continue;
                }
                let s = self.slot_mut(es);
                if s.role & ROLE_ES == 0 && s.last_seen_ms < now {
                    // Expected from now: the first packet may be on its way.
                    s.last_seen_ms = s.last_seen_ms.max(now);
                }
                s.role |= ROLE_ES;
                if pts {
                    s.role |= ROLE_PTS;
                }
            }
            if p.pcr_pid != pid::NULL && p.pcr_pid > 0x1F && self.is_passed(p.pcr_pid) {
                self.slot_mut(p.pcr_pid).role |= ROLE_PCR;
                keep_pcr.push(p.pcr_pid);
            }
        }
        self.programs = programs;
        for s in self.slots.iter_mut().skip(1) {
            if s.role & ROLE_PCR == 0 {
                s.pcr = None;
            }
            if s.role & ROLE_PTS == 0 {
                s.cold.last_pts_ms = None;
            }
        }
    }

    /// Time passes without packets (a dead input): the "at least every"
    /// tests still run. Called by `push_*` too.
    pub fn tick(&mut self, now: u64) {
        if self.started_ms.is_none() || now < self.next_check_ms {
            return;
        }
        self.now_ms = self.now_ms.max(now);
        self.next_check_ms = now + 5;
        let lim = self.cfg.limits;
        // Repetition of PAT and SI tables.
        let fire = |r: &mut Repetition, limit: u64| -> bool {
            let since = now.saturating_sub(r.last_ms);
            if since > limit && now >= r.next_ms {
                // Again after another full period while it lasts.
                r.next_ms = now + limit;
                return true;
            }
            false
        };
        let mut hits: [Option<Indicator>; 6] = [None; 6];
        if fire(&mut self.pat, lim.pat_ms) {
            hits[0] = Some(Indicator::PatError);
        }
        if self.cfg.si {
            if fire(&mut self.nit, lim.nit_ms) {
                hits[1] = Some(Indicator::NitError);
            }
            if fire(&mut self.sdt, lim.sdt_ms) {
                hits[2] = Some(Indicator::SdtError);
            }
            let e0 = fire(&mut self.eit0, lim.eit_ms);
            let e1 = fire(&mut self.eit1, lim.eit_ms);
            if e0 || e1 {
                hits[3] = Some(Indicator::EitError);
            }
            if fire(&mut self.tdt, lim.tdt_ms) {
                hits[4] = Some(Indicator::TdtError);
            }
        }
        for h in hits.into_iter().flatten() {
            self.error(h, now);
            self.ind[h as usize].condition = true;
        }
        // Clear the lasting conditions that ended.
        let ended = |r: &Repetition, limit: u64| now.saturating_sub(r.last_ms) <= limit;
        if ended(&self.pat, lim.pat_ms) {
            self.ind[Indicator::PatError as usize].condition = false;
        }
        if ended(&self.nit, lim.nit_ms) {
            self.ind[Indicator::NitError as usize].condition = false;
        }
        if ended(&self.sdt, lim.sdt_ms) {
            self.ind[Indicator::SdtError as usize].condition = false;
        }
        if ended(&self.eit0, lim.eit_ms) && ended(&self.eit1, lim.eit_ms) {
            self.ind[Indicator::EitError as usize].condition = false;
        }
        if ended(&self.tdt, lim.tdt_ms) {
            self.ind[Indicator::TdtError as usize].condition = false;
        }
        if self.cat_seen || now >= self.next_cat_ms + lim.recount_ms {
            self.ind[Indicator::CatError as usize].condition = false;
        }

        // Per PID: PMT, PID, PCR and PTS repetition.
        let (mut pmt, mut pmt_c) = (0u32, false);
        let (mut pidc, mut pid_c) = (0u32, false);
        let (mut rep, mut rep_c) = (0u32, false);
        let (mut pts, mut pts_c) = (0u32, false);
        for s in self.slots.iter_mut().skip(1) {
            if s.role == 0 {
                continue;
            }
            if s.role & ROLE_PMT != 0 {
                let since = now.saturating_sub(s.cold.last_table_ms);
                if since > lim.pmt_ms {
                    pmt_c = true;
                    if now >= s.cold.next_table_ms {
                        s.cold.next_table_ms = now + lim.pmt_ms;
                        pmt += 1;
                    }
                }
            }
            if s.role & ROLE_ES != 0 {
                let since = now.saturating_sub(s.last_seen_ms);
                if since > lim.pid_ms {
                    pid_c = true;
                    if now >= s.cold.next_pid_ms {
                        s.cold.next_pid_ms = now + lim.pid_ms;
                        pidc += 1;
                    }
                }
            }
            if s.role & ROLE_PTS != 0 {
                if let Some(t) = s.cold.last_pts_ms {
                    if now.saturating_sub(t) > lim.pts_ms {
                        pts_c = true;
                        if now >= s.cold.next_pts_ms {
                            s.cold.next_pts_ms = now + lim.pts_ms;
                            pts += 1;
                        }
                    }
                }
            }
            if let Some(t) = s.pcr.as_mut() {
                if let Some((_, _, ms)) = t.last {
                    if now.saturating_sub(ms) > lim.pcr_repetition_ms {
                        rep_c = true;
                        if t.next_rep_ms <= ms {
                            // Once per silence; the PCR that ends it is not
                            // counted again.
                            t.next_rep_ms = now;
                            rep += 1;
                        }
                    }
                }
            }
        }
        for (i, n, c) in [
            (Indicator::PmtError, pmt, pmt_c),
            (Indicator::PidError, pidc, pid_c),
            (Indicator::PcrRepetitionError, rep, rep_c),
            (Indicator::PtsError, pts, pts_c),
        ] {
            for _ in 0..n {
                self.error(i, now);
            }
            self.ind[i as usize].condition = c;
        }
    }

    /// A summary for /status and `capbox probe`.
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        let mut s = Snapshot::default();
        for (k, i) in INDICATORS.iter().enumerate() {
            let st = &self.ind[k];
            let active = self.active(*i, now_ms);
            s.indicators[k] = IndicatorSnapshot {
                errors: st.errors,
                active,
                last_error_s_ago: st.last_error_ms.map(|t| now_ms.saturating_sub(t) / 1000),
            };
        }
        s.packets = self.packets;
        s
    }

    /// What the analyser holds: (PID slots, section assemblers, programs,
    /// bytes of carry). All bounded (see the module).
    pub fn footprint(&self) -> (usize, usize, usize, usize) {
        (
            self.slots.len(),
            self.asms.len(),
            self.programs.len(),
            self.carry.capacity(),
        )
    }

    /// The analyser's own "now": the latest time it was given.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// One indicator in /status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndicatorSnapshot {
    pub errors: u64,
    pub active: bool,
    pub last_error_s_ago: Option<u64>,
}

/// Every indicator at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub indicators: [IndicatorSnapshot; 17],
    pub packets: u64,
}

impl Snapshot {
    pub fn get(&self, i: Indicator) -> &IndicatorSnapshot {
        &self.indicators[i as usize]
    }

    /// No indicator of this priority active.
    pub fn priority_ok(&self, prio: u8) -> bool {
        INDICATORS
            .iter()
            .zip(&self.indicators)
            .all(|(i, s)| i.priority() != prio || !s.active)
    }

    /// The /status shape of the contract: priorityN_ok and indicators.
    pub fn to_json(&self) -> serde_json::Value {
        let mut ind = serde_json::Map::new();
        for (i, s) in INDICATORS.iter().zip(&self.indicators) {
            ind.insert(
                i.id().to_string(),
                serde_json::json!({
                    "errors": s.errors,
                    "active": s.active,
                    "last_error_s_ago": s.last_error_s_ago,
                }),
            );
        }
        serde_json::json!({
            "priority1_ok": self.priority_ok(1),
            "priority2_ok": self.priority_ok(2),
            "priority3_ok": self.priority_ok(3),
            "indicators": ind,
        })
    }

    /// One line for `capbox status` when something is wrong: "priority 1:
    /// pat_error (3), continuity_count_error (12)"; None when all is quiet.
    pub fn summary(&self) -> Option<String> {
        let active: Vec<String> = INDICATORS
            .iter()
            .zip(&self.indicators)
            .filter(|(_, s)| s.active)
            .map(|(i, s)| format!("{} ({})", i.id(), s.errors))
            .collect();
        if active.is_empty() {
            return None;
        }
        let worst = INDICATORS
            .iter()
            .zip(&self.indicators)
            .filter(|(_, s)| s.active)
            .map(|(i, _)| i.priority())
            .min()
            .unwrap_or(3);
        Some(format!("priority {worst}: {}", active.join(", ")))
    }
}

/// A stream time for files and tests: the packet position at the mux rate
/// the PCRs of one PID measure (the first PCR PID seen). Before two PCRs
/// the time is 0; when PCRs stop or jump the last rate goes on, so a fault
/// in the PCRs does not stop the clock that measures it.
#[derive(Debug, Clone, Default)]
pub struct StreamClock {
    pcr_pid: Option<u16>,
    packets: u64,
    first: Option<(u64, u64)>,
    last: Option<(u64, u64)>,
    /// ms per packet, measured.
    rate: Option<f64>,
    /// (ms, packet) of the anchor the rate extrapolates from.
    anchor: (f64, u64),
    /// The time at the first PCR of the current run.
    run_start: f64,
}

impl StreamClock {
    /// The time of this packet (call for every packet, in order).
    pub fn packet(&mut self, raw: &[u8]) -> u64 {
        let idx = self.packets;
        self.packets += 1;
        if let Ok(p) = Packet::new_checked(raw) {
            if let Some(pcr) = p.pcr() {
                if self.pcr_pid.is_none() {
                    self.pcr_pid = Some(p.pid());
                }
                if self.pcr_pid == Some(p.pid()) {
                    self.on_pcr(pcr, idx);
                }
            }
        }
        self.time(idx)
    }

    fn on_pcr(&mut self, pcr: u64, idx: u64) {
        let now = self.time(idx) as f64;
        let same_run = self
            .last
            .is_some_and(|(lp, li)| idx > li && (1..PCR_HZ / 2).contains(&pcr_delta(lp, pcr)));
        match (same_run, self.first) {
            (true, Some((fp, fi))) => {
                // Within a run the PCR is the time; the rate is measured
                // over the whole run.
                let ms = pcr_delta(fp, pcr) as f64 / 27_000.0;
                if idx > fi && ms > 0.0 {
                    self.rate = Some(ms / (idx - fi) as f64);
                }
                self.anchor = (self.run_start + ms, idx);
            }
            _ => {
                // The first PCR or a jump: a new run, the time goes on.
                self.first = Some((pcr, idx));
                self.run_start = now;
                self.anchor = (now, idx);
            }
        }
        self.last = Some((pcr, idx));
    }

    fn time(&self, idx: u64) -> u64 {
        match self.rate {
            Some(r) => (self.anchor.0 + r * (idx.saturating_sub(self.anchor.1)) as f64) as u64,
            None => self.anchor.0 as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::{encode_pcr, write_header};
    use crate::ts::pat::PatEntry;
    use crate::ts::section::packetize;

    fn pat() -> Vec<u8> {
        PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: 1,
                pid: 0x100,
            }],
        }
        .emit()
    }

    #[test]
    fn ids_and_priorities() {
        assert_eq!(INDICATORS.len(), 17);
        for (k, i) in INDICATORS.iter().enumerate() {
            assert_eq!(*i as usize, k);
            assert_eq!(Indicator::from_id(i.id()), Some(*i));
        }
        assert_eq!(Indicator::PidError.priority(), 1);
        assert_eq!(Indicator::TransportError.priority(), 2);
        assert_eq!(Indicator::CatError.priority(), 2);
        assert_eq!(Indicator::NitError.priority(), 3);
    }

    #[test]
    fn pat_every_half_second_and_not_scrambled() {
        let mut t = Tr101290::new(Config::channel());
        let mut cc = 0;
        let mut now = 0;
        for _ in 0..10 {
            let mut b = Vec::new();
            packetize(&pat(), 0, &mut cc, &mut b);
            t.push_packets(&b, now);
            now += 400;
        }
        assert_eq!(t.get(Indicator::PatError).errors, 0);
        // 1.2 s without: counted twice (after 0.5 and again after 1.0).
        t.tick(now + 800);
        t.tick(now + 1300);
        assert_eq!(t.get(Indicator::PatError).errors, 2);
        assert!(t.active(Indicator::PatError, now + 1300));
        let mut b = Vec::new();
        packetize(&pat(), 0, &mut cc, &mut b);
        b[3] |= 0x80; // scrambled
        t.push_packets(&b, now + 1400);
        assert_eq!(t.get(Indicator::PatError).errors, 3);
        assert_eq!(t.get(Indicator::ContinuityCountError).errors, 0);
    }

    #[test]
    fn sync_hysteresis() {
        let mut one = [0xFFu8; 188];
        write_header(&mut one, 0x1FFF, false, 0);
        let mut data = Vec::new();
        for _ in 0..20 {
            data.extend_from_slice(&one);
        }
        // Garbage before: hunted over, not an error.
        let mut t = Tr101290::new(Config::channel());
        let mut all = vec![0x11u8; 77];
        all.extend_from_slice(&data);
        t.push_bytes(&all, 0);
        assert_eq!(t.get(Indicator::SyncByteError).errors, 0);
        assert_eq!(t.bytes_skipped, 77);
        // One bad sync byte: an error, still in sync.
        let mut d = data.clone();
        d[188 * 3] = 0x46;
        t.push_bytes(&d, 10);
        assert_eq!(t.get(Indicator::SyncByteError).errors, 1);
        assert_eq!(t.get(Indicator::TsSyncLoss).errors, 0);
        // Two in a row: lost, found again after 5 good.
        let mut d = data.clone();
        d[188 * 3] = 0x46;
        d[188 * 4] = 0x46;
        let before = t.packets();
        for c in d.chunks(50) {
            t.push_bytes(c, 20);
        }
        assert_eq!(t.get(Indicator::SyncByteError).errors, 3);
        assert_eq!(t.get(Indicator::TsSyncLoss).errors, 1);
        assert!(!t.get(Indicator::TsSyncLoss).condition, "found again");
        assert!(t.packets() - before >= 15);
    }

    #[test]
    fn pcr_repetition_and_jump() {
        let mut t = Tr101290::new(Config::channel());
        let mut cc = 0;
        let mut b = Vec::new();
        packetize(&pat(), 0, &mut cc, &mut b);
        let pmt = PmtRepr {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            program_info: vec![],
            streams: vec![],
        }
        .emit();
        let mut cc2 = 0;
        packetize(&pmt, 0x100, &mut cc2, &mut b);
        t.push_packets(&b, 0);
        let pcr_pkt = |pcr: u64, cc: u8, disc: bool| {
            let mut p = [0xFFu8; 188];
            write_header(&mut p, 0x101, false, cc);
            p[3] = (p[3] & 0xCF) | 0x20; // adaptation only
            p[4] = 183;
            p[5] = 0x10 | if disc { 0x80 } else { 0 };
            let mut e = [0u8; 6];
            encode_pcr(pcr, &mut e);
            p[6..12].copy_from_slice(&e);
            p
        };
        for k in 0..10u64 {
            t.push_packets(&pcr_pkt(k * 20 * 27_000, 0, false), k * 20);
        }
        assert_eq!(t.get(Indicator::PcrRepetitionError).errors, 0);
        // 60 ms gap in arrival, 60 ms in value: repetition only.
        t.push_packets(&pcr_pkt(240 * 27_000, 0, false), 240);
        assert_eq!(t.get(Indicator::PcrRepetitionError).errors, 1);
        assert_eq!(t.get(Indicator::PcrDiscontinuityIndicatorError).errors, 0);
        // A 500 ms jump in value: discontinuity error unless flagged.
        t.push_packets(&pcr_pkt(760 * 27_000, 0, false), 260);
        assert_eq!(t.get(Indicator::PcrDiscontinuityIndicatorError).errors, 1);
        t.push_packets(&pcr_pkt(9_000 * 27_000, 0, true), 280);
        assert_eq!(t.get(Indicator::PcrDiscontinuityIndicatorError).errors, 1);
        assert_eq!(t.get(Indicator::PcrRepetitionError).errors, 1);
    }

    /// The per-read loop takes runs of plain packets at once: the same
    /// indicators (times of errors included) and count as one packet at a
    /// time, each at its time in the read,
    /// with continuity errors inside runs, at their ends and across reads.
    #[test]
    fn runs_count_what_packets_one_at_a_time_count() {
        let mut data = Vec::new();
        packetize(&pat(), pid::PAT, &mut 0, &mut data);
        // Two PIDs the PAT does not name (slots of their own at their
        // first packet), in runs of 40 and 10.
        let mut cc = [0u8; 2];
        for k in 0..400u32 {
            let (which, pid) = if k % 50 < 40 { (0, 0x200) } else { (1, 0x201) };
            let mut c = cc[which];
            match k {
                37 | 120 => c = c.wrapping_add(3),      // a gap inside a run
                80 | 81 | 210 => c = c.wrapping_sub(1), // duplicates, one a second
                90 => c = c.wrapping_sub(5),            // a step back at a run's end
                _ => {}
            }
            cc[which] = c.wrapping_add(1);
            let mut p = [0xFFu8; PACKET_SIZE];
            p[0] = if k == 300 { 0x46 } else { SYNC_BYTE };
            p[1] = (pid >> 8) as u8 | if k % 97 == 0 { 0x40 } else { 0 };
            p[2] = pid as u8;
            p[3] = if k % 61 == 0 { 0x30 } else { 0x10 } | (c & 0x0F);
            if k % 61 == 0 {
                p[4] = 1;
                p[5] = 0;
            }
            data.extend_from_slice(&p);
        }
        for read in [1, 2, 3, 40, 1000] {
            let mut one = Tr101290::new(Config::mux(false));
            let mut runs = Tr101290::new(Config::mux(false));
            for (k, r) in data.chunks(read * PACKET_SIZE).enumerate() {
                // Reads 7 ms apart, their packets spread over the 7 ms.
                let (from, to) = (7 * k as u64, 7 * k as u64 + 7);
                let n = (r.len() / PACKET_SIZE) as u64;
                for (j, p) in r.chunks_exact(PACKET_SIZE).enumerate() {
                    let t = from + 7 * (j as u64 + 1) / n;
                    if p[0] != SYNC_BYTE {
                        one.error(Indicator::SyncByteError, t);
                    } else {
                        one.packet(p, t);
                    }
                }
                one.tick(to);
                runs.push_packets_between(r, from, to);
            }
            assert_eq!(one.indicators(), runs.indicators(), "reads of {read}");
            assert_eq!(one.packets(), runs.packets(), "reads of {read}");
        }
        let mut t = Tr101290::new(Config::mux(false));
        t.push_packets_between(&data, 0, 0);
        assert!(
            t.get(Indicator::ContinuityCountError).errors >= 4,
            "{:?}",
            t.indicators()
        );
        assert_eq!(t.get(Indicator::SyncByteError).errors, 1);
    }

    #[test]
    fn a_read_is_spread_over_the_time_since_the_last() {
        let mut t = Tr101290::new(Config::channel());
        let mut cc = 0;
        let mut b = Vec::new();
        packetize(&pat(), 0, &mut cc, &mut b);
        let pmt = PmtRepr {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            program_info: vec![],
            streams: vec![],
        }
        .emit();
        let mut cc2 = 0;
        packetize(&pmt, 0x100, &mut cc2, &mut b);
        t.push_packets(&b, 0);
        // PCRs every 30 ms of stream, read in bursts of two every 60 ms:
        // stamped at the read, the gap across reads looks like 60 ms.
        let mut read = Vec::new();
        let mut last = 0;
        for k in 1..40u64 {
            let mut p = [0xFFu8; 188];
            write_header(&mut p, 0x101, false, 0);
            p[3] = (p[3] & 0xCF) | 0x20;
            p[4] = 183;
            p[5] = 0x10;
            let mut e = [0u8; 6];
            encode_pcr(k * 30 * 27_000, &mut e);
            p[6..12].copy_from_slice(&e);
            read.extend_from_slice(&p);
            if k % 2 == 0 {
                t.push_packets_between(&read, last, k * 30);
                last = k * 30;
                read.clear();
            }
        }
        assert_eq!(t.get(Indicator::PcrRepetitionError).errors, 0);
    }

    #[test]
    fn summary_and_json() {
        let mut t = Tr101290::new(Config::channel());
        t.error(Indicator::CrcError, 100);
        let s = t.snapshot(1100);
        assert!(s.priority_ok(1) && !s.priority_ok(2) && s.priority_ok(3));
        assert_eq!(s.summary().unwrap(), "priority 2: crc_error (1)");
        let j = s.to_json();
        assert_eq!(j["indicators"]["crc_error"]["last_error_s_ago"], 1);
        assert_eq!(
            j["indicators"]["pat_error"]["last_error_s_ago"],
            serde_json::Value::Null
        );
        assert_eq!(t.snapshot(100_000).summary(), None);
    }

    #[test]
    fn stream_clock_follows_pcr_and_goes_on_without() {
        let mut c = StreamClock::default();
        let mut times = Vec::new();
        for k in 0..100u64 {
            let mut p = [0xFFu8; 188];
            write_header(&mut p, 0x101, false, 0);
            if k % 10 == 0 && k < 60 {
                p[3] = (p[3] & 0xCF) | 0x20;
                p[4] = 183;
                p[5] = 0x10;
                let mut e = [0u8; 6];
                encode_pcr(k * 27_000, &mut e); // 1 ms a packet
                p[6..12].copy_from_slice(&e);
            }
            times.push(c.packet(&p));
        }
        assert_eq!(times[50], 50);
        assert!((98..=100).contains(&times[99]), "{}", times[99]);
    }
}

/// What an input mux's monitor publishes (`/status muxes[]`, metrics).
#[derive(Debug, Clone)]
pub struct MuxReport {
    /// `MuxKey::describe()`.
    pub name: String,
    /// None when `[monitor] tr101290` is off.
    pub tr101290: Option<Snapshot>,
    pub clock: super::clock::ClockStatus,
}

/// Where the mux runners publish TR 101 290 and the box clock, and where
/// `/status` and `/metrics` read them: one per daemon.
#[derive(Debug, Default)]
pub struct Board {
    muxes: std::sync::Mutex<std::collections::BTreeMap<String, MuxReport>>,
    /// (channel, source index) → the channel output's indicators.
    channels: std::sync::Mutex<std::collections::BTreeMap<(String, usize), Snapshot>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Board {
    pub fn set_mux(&self, r: MuxReport) {
        lock(&self.muxes).insert(r.name.clone(), r);
    }

    pub fn remove_mux(&self, name: &str) {
        lock(&self.muxes).remove(name);
    }

    pub fn set_channel(&self, channel: &str, source: usize, s: Snapshot) {
        lock(&self.channels).insert((channel.to_string(), source), s);
    }

    pub fn remove_channel(&self, channel: &str, source: usize) {
        lock(&self.channels).remove(&(channel.to_string(), source));
    }

    /// Every mux, by name.
    pub fn muxes(&self) -> Vec<MuxReport> {
        lock(&self.muxes).values().cloned().collect()
    }

    /// The indicators of a channel's output from `source`.
    pub fn channel(&self, channel: &str, source: usize) -> Option<Snapshot> {
        lock(&self.channels)
            .get(&(channel.to_string(), source))
            .cloned()
    }
}

/// The /status `muxes[]` entry.
pub fn mux_json(r: &MuxReport) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "tr101290": r.tr101290.as_ref().map(|s| s.to_json()),
        "clock": r.clock,
    })
}

/// Write the TR 101 290 and clock families (`monitor::metrics`).
/// `channels`: (channel name, its on-air output's indicators).
pub fn render_metrics(muxes: &[MuxReport], channels: &[(String, Snapshot)], m: &mut String) {
    use super::metrics::{family, Kind};
    let rows = || {
        muxes
            .iter()
            .filter_map(|r| r.tr101290.as_ref().map(|s| ("mux", r.name.as_str(), s)))
            .chain(channels.iter().map(|(n, s)| ("channel", n.as_str(), s)))
    };
    let mut f = family(
        m,
        "capbox_tr101290_errors_total",
        Kind::Counter,
        "TR 101 290 errors by indicator, on each input mux and each channel's output (priority 1: ts_sync_loss … pid_error, 2: transport_error … cat_error, 3: nit_error … tdt_error).",
    );
    for (scope, name, s) in rows() {
        for (i, st) in INDICATORS.iter().zip(&s.indicators) {
            f.sample(
                &[("scope", scope), ("name", name), ("indicator", i.id())],
                st.errors,
            );
        }
    }
    let mut f = family(
        m,
        "capbox_tr101290_active",
        Kind::Gauge,
        "1 while the TR 101 290 indicator is in error (its condition holds, or its last error is less than 5 s old).",
    );
    for (scope, name, s) in rows() {
        for (i, st) in INDICATORS.iter().zip(&s.indicators) {
            f.sample(
                &[("scope", scope), ("name", name), ("indicator", i.id())],
                st.active,
            );
        }
    }
    let mut f = family(
        m,
        "capbox_clock_offset_seconds",
        Kind::Gauge,
        "Broadcast UTC (TDT/TOT of the input mux) minus the box clock at arrival, seconds; live inputs only.",
    );
    for r in muxes {
        if let Some(o) = r.clock.offset_s {
            f.sample(&[("mux", &r.name)], o);
        }
    }
    let mut f = family(
        m,
        "capbox_clock_tdt_age_seconds",
        Kind::Gauge,
        "Seconds since the last TDT/TOT of the input mux.",
    );
    for r in muxes {
        if let Some(a) = r.clock.tdt_age_s {
            f.sample(&[("mux", &r.name)], a);
        }
    }
}
