//! One program out of a multiplex, per channel.
//!
//! `Remux` takes the packets of one mux (from a file, a tuner, a remote
//! stream) and produces, for each program it was asked for, a single-program
//! transport stream:
//! - a PAT with that one program, and the program's PMT, both written by
//!   capbox with its own continuity counters and re-emitted at least every
//!   `psi_interval` of stream time (≤ 100 ms by default) and at once when they
//!   change;
//! - the elementary streams, PCR PID and ECM PIDs the PMT names, passed
//!   through byte for byte — continuity counters included, so a loss upstream
//!   stays visible to every decoder downstream;
//! - the SDT rewritten to the one service, EIT present/following and schedule
//!   sections of that service, TDT and TOT, re-packetised with capbox's own
//!   counters (their PIDs carry other services' sections in the input).
//!
//! A PMT version change (new PIDs) is followed without restart. Null packets
//! are dropped (the output is carried over TCP). Every dropped packet or
//! section lands in a counter of `DemuxStats` or `ProgramStats`.
//!
//! Cost per packet: one table lookup by PID and, for carried packets, one
//! 188-byte copy. PSI sections are reassembled once per mux, not per program.

pub mod splice;

use crate::monitor::cc::CcCheck;
use crate::ts::packet::{self, Packet, PACKET_SIZE, PCR_HZ};
use crate::ts::pat::{PatEntry, PatPush, PatRepr, PatTable, MAX_PAT_ENTRIES};
use crate::ts::pmt::{PmtRepr, StreamKind, VideoCodec};
use crate::ts::section::{build_long_section, packetize, Assembler, Section};
use crate::ts::{pid, table_id};

/// No program on this PID.
const NONE: u16 = u16::MAX;
/// Default PAT/PMT repetition in 27 MHz ticks (100 ms).
pub const PSI_INTERVAL: u64 = PCR_HZ / 10;
/// SDT repetition (TR 101 290 wants ≤ 2 s; capbox does 0.5 s).
pub const SDT_INTERVAL: u64 = PCR_HZ / 2;

/// Counters of the whole mux.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DemuxStats {
    pub packets: u64,
    pub null_packets: u64,
    pub transport_errors: u64,
    /// Packets of a PID no wanted program uses.
    pub unused_packets: u64,
    /// Continuity errors on the PIDs capbox uses (carried and PSI).
    pub cc_errors: u64,
    pub pat_sections: u64,
    pub pmt_sections: u64,
    pub sdt_sections: u64,
    pub psi_crc_errors: u64,
    pub psi_dropped: u64,
    /// PMTs that parsed as sections but whose body was refused.
    pub pmt_malformed: u64,
    /// Packets without sync byte or with an impossible adaptation field.
    pub bad_packets: u64,
    /// PAT headers with reserved bits not set (seen from vidtv): accepted.
    pub pat_reserved_bits: u64,
    /// PAT entries not held: over `MAX_PAT_ENTRIES` (`ts::pat::PatTable`).
    pub pat_entries_refused: u64,
    /// PAT sections whose section_number is above last_section_number
    /// (also in `psi_dropped`).
    pub pat_sections_malformed: u64,
}

/// Counters of one program's output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProgramStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub cc_errors: u64,
    pub pat_seen: bool,
    pub pmt_seen: bool,
    pub pmt_version_changes: u64,
    pub psi_inserted: u64,
    pub sdt_inserted: u64,
    pub eit_sections: u64,
    pub scrambled_packets: u64,
    /// ES PIDs the PMT names that have not carried a packet yet.
    pub missing_pids: u64,
    /// Adaptation-only packets inserted to flag an input discontinuity.
    pub discontinuities_marked: u64,
}

/// The state and output of one wanted program.
#[derive(Debug)]
pub struct ProgramOut {
    /// The program produced. For a program asked as 0 ("whichever the
    /// mux carries": a remote single-program stream), the first program
    /// of the PAT, 0 until a PAT names one.
    pub program_number: u16,
    /// Asked as 0: follows the PAT's first program.
    pub any: bool,
    pub pmt_pid: Option<u16>,
    pub pmt: Option<PmtRepr>,
    pub transport_stream_id: u16,
    /// Packets produced since the last `take_output` (whole packets).
    pub out: Vec<u8>,
    /// Offsets in `out` of packets that begin a PES on the video PID: the
    /// channel runs its entry-point detector on these.
    pub video: Option<(u16, VideoCodec)>,
    /// Set when PAT/PMT changed; the channel refreshes its PSI prefix.
    pub psi_changed: bool,
    pub stats: ProgramStats,
    /// The channel descrambles this program (BISS): its PMT is emitted
    /// without CA descriptors and its ECM PIDs are not carried, so a player
    /// downstream does not think it is scrambled. Set with
    /// `Remux::set_descramble`.
    pub descramble: bool,
    /// The service's SDT entry as last seen, and the SDT header fields.
    sdt: Option<SdtEntry>,
    pat_cc: u8,
    pmt_cc: u8,
    sdt_cc: u8,
    eit_cc: u8,
    tdt_cc: u8,
    last_psi: Option<u64>,
    last_sdt: Option<u64>,
    pat_packets: Vec<u8>,
    pmt_packets: Vec<u8>,
    seen_pids: Vec<u16>,
    /// Carried PIDs whose next packet follows an input discontinuity.
    disc_pending: Vec<u16>,
    /// A PCR was seen on this program's own PCR PID: time its tables by it.
    own_clock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SdtEntry {
    transport_stream_id: u16,
    original_network_id: u16,
    version: u8,
    /// The service loop entry, raw (service_id … descriptors).
    entry: Vec<u8>,
}

impl ProgramOut {
    fn new(program_number: u16) -> Self {
        ProgramOut {
            program_number,
            any: program_number == 0,
            pmt_pid: None,
            pmt: None,
            transport_stream_id: 1,
            out: Vec::with_capacity(64 * 1024),
            video: None,
            psi_changed: false,
            stats: Default::default(),
            descramble: false,
            sdt: None,
            pat_cc: 0,
            pmt_cc: 0,
            sdt_cc: 0,
            eit_cc: 0,
            tdt_cc: 0,
            last_psi: None,
            last_sdt: None,
            pat_packets: Vec::new(),
            pmt_packets: Vec::new(),
            seen_pids: Vec::new(),
            disc_pending: Vec::new(),
            own_clock: false,
        }
    }

    /// PIDs the PMT names that have not carried a packet since it arrived.
    pub fn missing_pids(&self) -> &[u16] {
        &self.seen_pids
    }

    /// The PAT and PMT packets of the current tables (for a new client).
    pub fn psi_packets(&self) -> Vec<u8> {
        if self.pmt.is_none() {
            return Vec::new();
        }
        let mut v = self.pat_packets.clone();
        v.extend_from_slice(&self.pmt_packets);
        v
    }

    /// Service name and provider from the SDT, raw DVB text bytes.
    pub fn service_descriptor(&self) -> Option<(u8, Vec<u8>, Vec<u8>)> {
        let e = self.sdt.as_ref()?;
        let desc = e.entry.get(5..)?;
        for d in crate::ts::descriptor::Descriptors::new(desc) {
            if d.tag == crate::ts::descriptor::tag::SERVICE && d.data.len() >= 2 {
                let st = d.data[0];
                let pl = d.data[1] as usize;
                let prov = d.data.get(2..2 + pl)?;
                let nl = *d.data.get(2 + pl)? as usize;
                let name = d.data.get(3 + pl..3 + pl + nl)?;
                return Some((st, prov.to_vec(), name.to_vec()));
            }
        }
        None
    }

    fn rebuild_psi(&mut self) {
        let Some(pmt_pid) = self.pmt_pid else { return };
        let pat = PatRepr {
            transport_stream_id: self.transport_stream_id,
            version: self.pmt.as_ref().map(|p| p.version).unwrap_or(0),
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: self.program_number,
                pid: pmt_pid,
            }],
        };
        self.pat_packets.clear();
        let mut cc = 0;
        packetize(&pat.emit(), pid::PAT, &mut cc, &mut self.pat_packets);
        self.pmt_packets.clear();
        if let Some(pmt) = &self.pmt {
            let section = if self.descramble {
                without_ca_descriptors(pmt).emit()
            } else {
                pmt.emit()
            };
            packetize(&section, pmt_pid, &mut cc, &mut self.pmt_packets);
        }
        self.psi_changed = true;
    }

    /// Append PAT+PMT with this output's own counters.
    fn insert_psi(&mut self, now: Option<u64>) {
        if self.pmt.is_none() {
            return;
        }
        let n = self.pat_packets.len() / PACKET_SIZE;
        for i in 0..n {
            let start = self.out.len();
            self.out
                .extend_from_slice(&self.pat_packets[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]);
            let mut p = Packet::new_unchecked(&mut self.out[start..start + PACKET_SIZE]);
            p.set_continuity_counter(self.pat_cc);
            self.pat_cc = (self.pat_cc + 1) & 0x0F;
        }
        let n = self.pmt_packets.len() / PACKET_SIZE;
        for i in 0..n {
            let start = self.out.len();
            self.out
                .extend_from_slice(&self.pmt_packets[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]);
            let mut p = Packet::new_unchecked(&mut self.out[start..start + PACKET_SIZE]);
            p.set_continuity_counter(self.pmt_cc);
            self.pmt_cc = (self.pmt_cc + 1) & 0x0F;
        }
        self.stats.psi_inserted += 1;
        self.stats.packets_out +=
            (self.pat_packets.len() + self.pmt_packets.len()) as u64 / PACKET_SIZE as u64;
        self.last_psi = now.or(self.last_psi);
    }

    fn insert_sdt(&mut self, now: Option<u64>) {
        let Some(e) = &self.sdt else { return };
        let mut body = Vec::with_capacity(3 + e.entry.len());
        body.extend_from_slice(&e.original_network_id.to_be_bytes());
        body.push(0xFF);
        body.extend_from_slice(&e.entry);
        let sec = build_long_section(
            table_id::SDT_ACTUAL,
            e.transport_stream_id,
            e.version,
            0,
            0,
            &body,
        );
        let before = self.out.len();
        packetize(&sec, pid::SDT, &mut self.sdt_cc, &mut self.out);
        self.stats.packets_out += ((self.out.len() - before) / PACKET_SIZE) as u64;
        self.stats.sdt_inserted += 1;
        self.last_sdt = now.or(self.last_sdt);
    }

    fn insert_section(&mut self, section: &[u8], on_pid: u16) {
        let cc = match on_pid {
            pid::EIT => &mut self.eit_cc,
            _ => &mut self.tdt_cc,
        };
        let before = self.out.len();
        packetize(section, on_pid, cc, &mut self.out);
        self.stats.packets_out += ((self.out.len() - before) / PACKET_SIZE) as u64;
    }

    /// Take the produced bytes, leaving an empty buffer with its capacity.
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(into, &mut self.out);
    }
}

/// What a PID means to the remux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidRole {
    Unused,
    /// A PMT PID: index into `pmt_slots`.
    Pmt,
    /// Carried as is for the programs in `carry[pid]`.
    Carry,
}

/// The demultiplexer and the per-program outputs of one mux.
pub struct Remux {
    programs: Vec<ProgramOut>,
    /// For each PID: a bitmask of the programs that carry it (≤ 64 programs
    /// per mux, plenty: a DVB-S2 mux carries 10–30 services).
    carry: Vec<u64>,
    role: Vec<PidRole>,
    /// Continuity of each PID, by the one rule of `monitor::cc`.
    cc: Vec<CcCheck>,
    pat_asm: Assembler,
    pmt_asm: Vec<(u16, Assembler)>,
    sdt_asm: Assembler,
    eit_asm: Assembler,
    tdt_asm: Assembler,
    /// The input's PAT, gathered from its sections, bounded.
    pat: Option<PatTable>,
    /// Latest PCR seen on any PID (27 MHz), the mux's notion of "now".
    now: Option<u64>,
    pub stats: DemuxStats,
    /// A PMT PID can carry several programs' PMTs; map program → pmt pid.
    pcr_pid_of: Vec<u16>,
    /// The first PID seen with a PCR: the mux's reference clock.
    ref_pcr_pid: Option<u16>,
}

impl Default for Remux {
    fn default() -> Self {
        Self::new()
    }
}

impl Remux {
    pub fn new() -> Remux {
        let mut r = Remux {
            programs: Vec::new(),
            carry: vec![0; 8192],
            role: vec![PidRole::Unused; 8192],
            cc: vec![CcCheck::default(); 8192],
            pat_asm: Assembler::new(),
            pmt_asm: Vec::new(),
            sdt_asm: Assembler::new(),
            eit_asm: Assembler::new(),
            tdt_asm: Assembler::new(),
            pat: None,
            now: None,
            stats: Default::default(),
            pcr_pid_of: Vec::new(),
            ref_pcr_pid: None,
        };
        r.carry[pid::NULL as usize] = 0;
        r
    }

    /// Most programs one `Remux` produces (one bit each in the PID map).
    pub const MAX_PROGRAMS: usize = 64;

    /// Ask for a program; returns its index for `program()`, or `None` when
    /// `MAX_PROGRAMS` are already produced from this mux.
    pub fn try_add_program(&mut self, program_number: u16) -> Option<usize> {
        if self.programs.len() >= Self::MAX_PROGRAMS {
            return None;
        }
        Some(self.add_program_unchecked(program_number))
    }

    /// Like `try_add_program`, for callers that stay below `MAX_PROGRAMS`
    /// (tests, benchmarks); past it the program is not added and index
    /// `MAX_PROGRAMS - 1` is returned.
    pub fn add_program(&mut self, program_number: u16) -> usize {
        self.try_add_program(program_number)
            .unwrap_or(Self::MAX_PROGRAMS - 1)
    }

    fn add_program_unchecked(&mut self, program_number: u16) -> usize {
        self.programs.push(ProgramOut::new(program_number));
        self.pcr_pid_of.push(NONE);
        if self.pat.is_some() {
            self.apply_pat();
        }
        self.programs.len() - 1
    }

    pub fn program(&self, idx: usize) -> &ProgramOut {
        &self.programs[idx]
    }

    /// Mark program `idx` as descrambled by its channel (or not): its PMT
    /// loses the CA descriptors and its ECM PIDs stop being carried.
    pub fn set_descramble(&mut self, idx: usize, on: bool) {
        let Some(prog) = self.programs.get_mut(idx) else {
            return;
        };
        if prog.descramble == on {
            return;
        }
        prog.descramble = on;
        prog.rebuild_psi();
        self.recompute_carry();
    }

    pub fn program_mut(&mut self, idx: usize) -> &mut ProgramOut {
        &mut self.programs[idx]
    }

    pub fn programs(&self) -> &[ProgramOut] {
        &self.programs
    }

    pub fn programs_mut(&mut self) -> &mut [ProgramOut] {
        &mut self.programs
    }

    /// The input's PAT (every section of its current version), once one was
    /// read.
    pub fn pat(&self) -> Option<&PatTable> {
        self.pat.as_ref()
    }

    /// Forget all input state (a new source: other PIDs, other tables).
    /// Output counters continue so the output stays a continuous stream.
    pub fn reset_input(&mut self) {
        self.pat = None;
        self.pat_asm.reset();
        self.pmt_asm.clear();
        self.sdt_asm.reset();
        self.eit_asm.reset();
        self.tdt_asm.reset();
        self.carry.iter_mut().for_each(|c| *c = 0);
        self.role.iter_mut().for_each(|r| *r = PidRole::Unused);
        self.cc.fill(CcCheck::default());
        self.now = None;
        self.ref_pcr_pid = None;
        for prog in self.programs.iter_mut() {
            prog.own_clock = false;
        }
    }

    /// Feed whole packets (`data.len()` a multiple of 188; a trailing partial
    /// packet is ignored). Input must be packet-aligned: sources resync.
    pub fn push(&mut self, data: &[u8]) {
        for raw in data.chunks_exact(PACKET_SIZE) {
            self.push_packet(raw);
        }
    }

    fn push_packet(&mut self, raw: &[u8]) {
        if raw.len() < PACKET_SIZE || raw[0] != packet::SYNC_BYTE {
            self.stats.bad_packets += 1;
            return;
        }
        self.stats.packets += 1;
        let pid = (((raw[1] & 0x1F) as u16) << 8) | raw[2] as u16;
        let p = pid as usize;
        if raw[1] & 0x80 != 0 {
            self.stats.transport_errors += 1;
        }
        // Fast path: most packets of a mux belong to services nobody asked
        // for. Only a PCR is looked at there (it may be the mux clock).
        if self.carry[p] == 0
            && self.role[p] == PidRole::Unused
            && !matches!(pid, pid::PAT | pid::SDT | pid::EIT | pid::TDT)
        {
            if pid == pid::NULL {
                self.stats.null_packets += 1;
            } else {
                self.stats.unused_packets += 1;
            }
            if raw[3] & 0x20 != 0 && raw[4] >= 7 && raw[5] & 0x10 != 0 {
                if let Some(pcr) = Packet::new_checked(raw).ok().and_then(|k| k.pcr()) {
                    self.on_pcr(pid, pcr);
                }
            }
            return;
        }
        let Ok(pkt) = Packet::new_checked(raw) else {
            self.stats.bad_packets += 1;
            return;
        };
        // Continuity of the PIDs capbox uses, by the one rule of
        // `monitor::cc` (TR 101 290 1.4). Duplicates are forwarded as they
        // came; only the count follows the rule.
        let cc_error = self.cc[p].check_packet(&pkt);
        if cc_error {
            self.stats.cc_errors += 1;
        }
        if let Some(pcr) = pkt.pcr() {
            self.on_pcr(pid, pcr);
        }

        match pid {
            pid::PAT => {
                let mut secs = Vec::new();
                self.pat_asm.push(&pkt, |s| secs.push(s.to_vec()));
                for s in secs {
                    self.on_pat_section(&s);
                }
                self.sync_asm_stats();
                return;
            }
            pid::SDT => {
                let mut secs = Vec::new();
                self.sdt_asm.push(&pkt, |s| secs.push(s.to_vec()));
                for s in secs {
                    self.on_sdt_section(&s);
                }
                self.sync_asm_stats();
            }
            pid::EIT if !self.programs.is_empty() => {
                let programs = &mut self.programs;
                self.eit_asm.push(&pkt, |s| {
                    let Ok(sec) = Section::new_checked(s) else {
                        return;
                    };
                    let tid = sec.table_id();
                    let actual = tid == table_id::EIT_PF_ACTUAL
                        || (table_id::EIT_SCHED_ACTUAL_FIRST..=table_id::EIT_SCHED_ACTUAL_LAST)
                            .contains(&tid);
                    if !actual {
                        return;
                    }
                    let sid = sec.table_id_extension();
                    for prog in programs.iter_mut() {
                        if prog.program_number == sid && prog.pmt.is_some() {
                            prog.stats.eit_sections += 1;
                            prog.insert_section(s, pid::EIT);
                        }
                    }
                });
                self.sync_asm_stats();
            }
            pid::TDT if !self.programs.is_empty() => {
                let programs = &mut self.programs;
                self.tdt_asm.push(&pkt, |s| {
                    for prog in programs.iter_mut() {
                        if prog.pmt.is_some() {
                            prog.insert_section(s, pid::TDT);
                        }
                    }
                });
                self.sync_asm_stats();
            }
            _ => {}
        }

        match self.role[p] {
            PidRole::Pmt => {
                let mut secs = Vec::new();
                if let Some((_, asm)) = self.pmt_asm.iter_mut().find(|(q, _)| *q == pid) {
                    asm.push(&pkt, |s| secs.push(s.to_vec()));
                }
                for s in secs {
                    self.on_pmt_section(pid, &s);
                }
                self.sync_asm_stats();
            }
            PidRole::Carry => {}
            PidRole::Unused => {
                if !matches!(pid, pid::SDT | pid::EIT | pid::TDT) {
                    self.stats.unused_packets += 1;
                }
            }
        }

        let mask = self.carry[p];
        if mask == 0 {
            return;
        }
        let scrambled = pkt.scrambling_control() != 0;
        let mut m = mask;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let prog = &mut self.programs[i];
            prog.stats.packets_in += 1;
            if cc_error {
                prog.stats.cc_errors += 1;
            }
            if scrambled {
                prog.stats.scrambled_packets += 1;
            }
            if let Some(pos) = prog.seen_pids.iter().position(|&q| q == pid) {
                prog.seen_pids.swap_remove(pos);
                prog.stats.missing_pids = prog.seen_pids.len() as u64;
            }
            if !prog.disc_pending.is_empty() {
                if let Some(pos) = prog.disc_pending.iter().position(|&q| q == pid) {
                    prog.disc_pending.swap_remove(pos);
                    if pkt.has_payload() && !pkt.discontinuity() {
                        // An adaptation-only packet flags the break; it does
                        // not advance CC, so it takes the counter before the
                        // packet it announces.
                        let mut a = [0xFFu8; PACKET_SIZE];
                        packet::write_header(
                            &mut a,
                            pid,
                            false,
                            pkt.continuity_counter().wrapping_sub(1),
                        );
                        a[3] = 0x20 | (pkt.continuity_counter().wrapping_sub(1) & 0x0F);
                        a[4] = 183;
                        a[5] = 0x80;
                        prog.out.extend_from_slice(&a);
                        prog.stats.packets_out += 1;
                        prog.stats.discontinuities_marked += 1;
                    }
                }
            }
            prog.out.extend_from_slice(raw);
            prog.stats.packets_out += 1;
        }
    }

    /// A PCR on `pid`. Each program keeps its tables' rate on its own clock
    /// (its PCR PID) once that clock has been seen, else on the mux's
    /// reference clock (the first PCR PID of the input): programs of one mux
    /// may run on unrelated clocks, and mixing them would make every PCR
    /// look like a jump.
    fn on_pcr(&mut self, pid: u16, pcr: u64) {
        if self.ref_pcr_pid.is_none() {
            self.ref_pcr_pid = Some(pid);
        }
        if self.ref_pcr_pid == Some(pid) {
            self.now = Some(pcr);
        }
        let reference = self.ref_pcr_pid;
        for prog in self.programs.iter_mut() {
            let own = prog.pmt.as_ref().map(|p| p.pcr_pid);
            if own == Some(pid) {
                prog.own_clock = true;
            }
            let clock = if prog.own_clock { own } else { reference };
            if clock != Some(pid) {
                continue;
            }
            let due = prog
                .last_psi
                .map(|l| packet::pcr_delta(l, pcr) >= PSI_INTERVAL)
                .unwrap_or(true);
            if due {
                prog.insert_psi(Some(pcr));
            }
            let due = prog
                .last_sdt
                .map(|l| packet::pcr_delta(l, pcr) >= SDT_INTERVAL)
                .unwrap_or(true);
            if due && prog.sdt.is_some() && prog.pmt.is_some() {
                prog.insert_sdt(Some(pcr));
            }
        }
    }

    fn sync_asm_stats(&mut self) {
        let mut crc = self.pat_asm.stats.crc_errors
            + self.sdt_asm.stats.crc_errors
            + self.eit_asm.stats.crc_errors;
        let mut dropped = self.pat_asm.stats.incomplete
            + self.pat_asm.stats.malformed
            + self.sdt_asm.stats.incomplete
            + self.sdt_asm.stats.malformed
            + self.eit_asm.stats.incomplete
            + self.eit_asm.stats.malformed
            + self.tdt_asm.stats.incomplete
            + self.tdt_asm.stats.malformed;
        crc += self.tdt_asm.stats.crc_errors;
        dropped += self.stats.pat_sections_malformed;
        for (_, a) in &self.pmt_asm {
            crc += a.stats.crc_errors;
            dropped += a.stats.incomplete + a.stats.malformed + a.stats.bad_pointer;
        }
        self.stats.psi_crc_errors = crc;
        self.stats.psi_dropped = dropped;
    }

    fn on_pat_section(&mut self, bytes: &[u8]) {
        let Ok(sec) = Section::new_checked(bytes) else {
            return;
        };
        if sec.table_id() != table_id::PAT || !sec.current_next() {
            return;
        }
        // vidtv writes the reserved bits of the header as 0: accept, count.
        if bytes.len() > 1 && bytes[1] & 0x30 != 0x30 {
            self.stats.pat_reserved_bits += 1;
        }
        let Ok(pat) = PatRepr::parse(&sec) else {
            return;
        };
        self.stats.pat_sections += 1;
        // A multi-section PAT: each section replaces what it said before,
        // within a bound (a flood of distinct sections of one version must
        // not grow the table, nor the work per section).
        // A first PAT (at start, or after `reset_input` cleared the PID
        // roles) is always applied, even when it names the PMT PIDs the
        // programs still remember.
        let fresh = self.pat.is_none();
        let changed = match self.pat.as_mut() {
            Some(t) => {
                let (refused, malformed) = (t.entries_refused, t.sections_malformed);
                let r = t.push(pat);
                self.stats.pat_entries_refused += t.entries_refused - refused;
                self.stats.pat_sections_malformed += t.sections_malformed - malformed;
                r == PatPush::Changed
            }
            None => {
                let t = PatTable::new(pat, MAX_PAT_ENTRIES);
                self.stats.pat_entries_refused += t.entries_refused;
                self.stats.pat_sections_malformed += t.sections_malformed;
                self.pat = Some(t);
                true
            }
        };
        // Only a change of what the wanted programs see costs a rebuild.
        if changed {
            let mut resolved = false;
            if let Some(t) = self.pat.as_ref() {
                let first = t.programs().next().map(|e| e.program_number).unwrap_or(0);
                for p in self.programs.iter_mut().filter(|p| p.any) {
                    if p.program_number != first {
                        p.program_number = first;
                        resolved = true;
                    }
                }
            }
            let moved = fresh
                || resolved
                || self.pat.as_ref().is_some_and(|t| {
                    self.programs.iter().any(|p| {
                        p.transport_stream_id != t.transport_stream_id()
                            || p.pmt_pid != t.pmt_pid(p.program_number)
                    })
                });
            if moved {
                self.apply_pat();
            }
        }
        for prog in &mut self.programs {
            prog.stats.pat_seen = true;
        }
    }

    /// Follow the PAT: each program's PMT PID, the PMT PID roles.
    fn apply_pat(&mut self) {
        let Some(pat) = self.pat.as_ref() else {
            return;
        };
        let first = pat.programs().next().map(|e| e.program_number).unwrap_or(0);
        for prog in self.programs.iter_mut() {
            if prog.any && prog.program_number != first {
                prog.program_number = first;
                prog.pmt = None;
            }
            prog.transport_stream_id = pat.transport_stream_id();
            // Program 0 is the NIT's entry, never a program to produce.
            let new_pid = match prog.program_number {
                0 => None,
                n => pat.pmt_pid(n),
            };
            if new_pid != prog.pmt_pid {
                prog.pmt_pid = new_pid;
                prog.pmt = None;
                prog.rebuild_psi();
            }
        }
        // Rebuild PMT PID roles.
        let wanted: Vec<u16> = self.programs.iter().filter_map(|p| p.pmt_pid).collect();
        for r in self.role.iter_mut() {
            if *r == PidRole::Pmt {
                *r = PidRole::Unused;
            }
        }
        self.pmt_asm.retain(|(p, _)| wanted.contains(p));
        for &p in &wanted {
            self.role[p as usize] = PidRole::Pmt;
            if !self.pmt_asm.iter().any(|(q, _)| *q == p) {
                self.pmt_asm.push((p, Assembler::new()));
            }
        }
        self.recompute_carry();
    }

    fn on_pmt_section(&mut self, pmt_pid: u16, bytes: &[u8]) {
        let Ok(sec) = Section::new_checked(bytes) else {
            return;
        };
        if sec.table_id() != table_id::PMT || !sec.current_next() {
            return;
        }
        self.stats.pmt_sections += 1;
        let pmt = match PmtRepr::parse(&sec) {
            Ok(p) => p,
            Err(_) => {
                self.stats.pmt_malformed += 1;
                return;
            }
        };
        let mut changed = false;
        for prog in self.programs.iter_mut() {
            if prog.pmt_pid != Some(pmt_pid) || prog.program_number != pmt.program_number {
                continue;
            }
            prog.stats.pmt_seen = true;
            if prog.pmt.as_ref() == Some(&pmt) {
                continue;
            }
            if prog.pmt.is_some() {
                prog.stats.pmt_version_changes += 1;
                log::info!(
                    "program {}: PMT changed (version {} → {}), now {} streams",
                    prog.program_number,
                    prog.pmt.as_ref().map(|p| p.version).unwrap_or(0),
                    pmt.version,
                    pmt.streams.len()
                );
            }
            prog.video = pmt
                .streams
                .iter()
                .find(|s| s.kind() == StreamKind::Video)
                .and_then(|s| s.video_codec().map(|c| (s.elementary_pid, c)));
            prog.seen_pids = pmt.streams.iter().map(|s| s.elementary_pid).collect();
            prog.own_clock = false;
            prog.stats.missing_pids = prog.seen_pids.len() as u64;
            prog.pmt = Some(pmt.clone());
            prog.rebuild_psi();
            // A changed PMT goes out at once, not at the next interval.
            let now = self.now;
            prog.insert_psi(now);
            changed = true;
        }
        if changed {
            self.recompute_carry();
        }
    }

    fn on_sdt_section(&mut self, bytes: &[u8]) {
        let Ok(sec) = Section::new_checked(bytes) else {
            return;
        };
        if sec.table_id() != table_id::SDT_ACTUAL || !sec.current_next() {
            return;
        }
        self.stats.sdt_sections += 1;
        let body = sec.body();
        if body.len() < 3 {
            return;
        }
        let onid = u16::from_be_bytes([body[0], body[1]]);
        let mut rest = &body[3..];
        while rest.len() >= 5 {
            let sid = u16::from_be_bytes([rest[0], rest[1]]);
            let dl = (u16::from_be_bytes([rest[3], rest[4]]) & 0x0FFF) as usize;
            if 5 + dl > rest.len() {
                break;
            }
            let entry = &rest[..5 + dl];
            for prog in self.programs.iter_mut().filter(|p| p.program_number == sid) {
                let e = SdtEntry {
                    transport_stream_id: sec.table_id_extension(),
                    original_network_id: onid,
                    version: sec.version_number(),
                    entry: entry.to_vec(),
                };
                if prog.sdt.as_ref() != Some(&e) {
                    prog.sdt = Some(e);
                    prog.last_sdt = None;
                }
            }
            rest = &rest[5 + dl..];
        }
    }

    fn recompute_carry(&mut self) {
        for (p, c) in self.carry.iter_mut().enumerate() {
            *c = 0;
            if self.role[p] == PidRole::Carry {
                self.role[p] = PidRole::Unused;
            }
        }
        for (i, prog) in self.programs.iter().enumerate() {
            let Some(pmt) = &prog.pmt else { continue };
            let bit = 1u64 << i;
            let mut pids: Vec<u16> = pmt.streams.iter().map(|s| s.elementary_pid).collect();
            pids.push(pmt.pcr_pid);
            if !prog.descramble {
                // A descrambled output has no use for ECMs (and its PMT no
                // longer names them).
                pids.extend(pmt.ecm_pids().into_iter().map(|(_, p)| p));
            }
            for p in pids {
                // Never carry a PID capbox rewrites itself.
                if p == pid::NULL || p < 0x20 || Some(p) == prog.pmt_pid {
                    continue;
                }
                self.carry[p as usize] |= bit;
                if self.role[p as usize] == PidRole::Unused {
                    self.role[p as usize] = PidRole::Carry;
                }
            }
        }
    }

    /// The input jumped (file looped, source restarted with the same
    /// tables): continuity is not checked across it, and the first packet of
    /// every carried PID afterwards is flagged with a discontinuity_indicator
    /// so decoders downstream reset instead of counting errors.
    pub fn input_discontinuity(&mut self) {
        self.cc.fill(CcCheck::default());
        self.pat_asm.reset();
        self.sdt_asm.reset();
        self.eit_asm.reset();
        self.tdt_asm.reset();
        for (_, a) in self.pmt_asm.iter_mut() {
            a.reset();
        }
        for (i, prog) in self.programs.iter_mut().enumerate() {
            let bit = 1u64 << i;
            prog.disc_pending = (0..8192u16)
                .filter(|&p| self.carry[p as usize] & bit != 0)
                .collect();
        }
        self.now = None;
    }

    /// Stop producing a program; the indexes of later programs shift down.
    pub fn remove_program(&mut self, idx: usize) {
        if idx >= self.programs.len() {
            return;
        }
        self.programs.remove(idx);
        self.pcr_pid_of.remove(idx);
        if self.pat.is_some() {
            self.apply_pat();
        } else {
            self.recompute_carry();
        }
    }

    /// Stream time (the latest PCR seen), 27 MHz.
    pub fn now(&self) -> Option<u64> {
        self.now
    }
}

/// `pmt` without CA_descriptors (tag 0x09) at program and ES level.
fn without_ca_descriptors(pmt: &PmtRepr) -> PmtRepr {
    fn strip(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len());
        for d in crate::ts::descriptor::Descriptors::new(raw) {
            if d.tag != CA_DESCRIPTOR_TAG {
                d.emit(&mut out);
            }
        }
        out
    }
    let mut p = pmt.clone();
    p.program_info = strip(&p.program_info);
    for s in &mut p.streams {
        s.descriptors = strip(&s.descriptors);
    }
    p
}

/// CA_descriptor (ISO/IEC 13818-1 2.6.16).
const CA_DESCRIPTOR_TAG: u8 = 0x09;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::pmt::PmtStream;

    fn mk_mux() -> Vec<u8> {
        let mut ts = Vec::new();
        let pat = PatRepr {
            transport_stream_id: 7,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![
                PatEntry {
                    program_number: 0,
                    pid: 0x10,
                },
                PatEntry {
                    program_number: 1,
                    pid: 0x100,
                },
                PatEntry {
                    program_number: 2,
                    pid: 0x200,
                },
            ],
        };
        let pmt1 = PmtRepr {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            program_info: vec![],
            streams: vec![
                PmtStream {
                    stream_type: 0x02,
                    elementary_pid: 0x101,
                    descriptors: vec![],
                },
                PmtStream {
                    stream_type: 0x03,
                    elementary_pid: 0x102,
                    descriptors: vec![0x0A, 4, b'f', b'r', b'a', 0],
                },
            ],
        };
        let pmt2 = PmtRepr {
            program_number: 2,
            version: 0,
            pcr_pid: 0x201,
            program_info: vec![],
            streams: vec![PmtStream {
                stream_type: 0x1B,
                elementary_pid: 0x201,
                descriptors: vec![],
            }],
        };
        let (mut c0, mut c1, mut c2) = (0, 0, 0);
        packetize(&pat.emit(), 0, &mut c0, &mut ts);
        packetize(&pmt1.emit(), 0x100, &mut c1, &mut ts);
        packetize(&pmt2.emit(), 0x200, &mut c2, &mut ts);
        for i in 0..20u8 {
            for pid in [0x101u16, 0x102, 0x201, 0x1FFF] {
                let mut p = [0u8; 188];
                packet::write_header(&mut p, pid, i == 0, i);
                p[4] = pid as u8;
                ts.extend_from_slice(&p);
            }
        }
        ts
    }

    fn pids_of(out: &[u8]) -> Vec<u16> {
        out.chunks_exact(188)
            .map(|p| Packet::new_checked(p).unwrap().pid())
            .collect()
    }

    /// A scrambled program: CA_descriptor (ECM PID 0x1F0) at program level
    /// and on the video ES; ECM packets on 0x1F0.
    fn mk_scrambled_mux() -> Vec<u8> {
        let mut ts = Vec::new();
        let pat = PatRepr {
            transport_stream_id: 7,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: 1,
                pid: 0x100,
            }],
        };
        let ca = vec![0x09, 4, 0x26, 0x00, 0xE1, 0xF0];
        let pmt = PmtRepr {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            program_info: ca.clone(),
            streams: vec![PmtStream {
                stream_type: 0x02,
                elementary_pid: 0x101,
                descriptors: [ca, vec![0x52, 1, 7]].concat(),
            }],
        };
        let (mut c0, mut c1) = (0, 0);
        packetize(&pat.emit(), 0, &mut c0, &mut ts);
        packetize(&pmt.emit(), 0x100, &mut c1, &mut ts);
        for i in 0..10u8 {
            for pid in [0x101u16, 0x1F0] {
                let mut p = [0u8; 188];
                packet::write_header(&mut p, pid, i == 0, i);
                ts.extend_from_slice(&p);
            }
        }
        ts
    }

    fn pmt_out(out: &[u8]) -> PmtRepr {
        let mut asm = Assembler::new();
        let mut pmt = None;
        for p in out.chunks_exact(188) {
            let pkt = Packet::new_checked(p).unwrap();
            if pkt.pid() == 0x100 {
                asm.push(&pkt, |s| {
                    pmt = Some(PmtRepr::parse(&Section::new_verified(s).unwrap()).unwrap())
                });
            }
        }
        pmt.unwrap()
    }

    #[test]
    fn descrambled_program_drops_ca_descriptors_and_ecm_pids() {
        // Without the flag the CA signalling passes through.
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&mk_scrambled_mux());
        assert!(pids_of(&r.program(a).out).contains(&0x1F0));
        let pmt = pmt_out(&r.program(a).out);
        assert_eq!(pmt.ecm_pids(), vec![(0x2600, 0x1F0)]);

        let mut r = Remux::new();
        let a = r.add_program(1);
        r.set_descramble(a, true);
        r.push(&mk_scrambled_mux());
        let out = &r.program(a).out;
        assert!(!pids_of(out).contains(&0x1F0), "ECM PID carried");
        assert_eq!(pids_of(out).iter().filter(|&&p| p == 0x101).count(), 10);
        let pmt = pmt_out(out);
        assert!(pmt.program_info.is_empty(), "{:x?}", pmt.program_info);
        assert_eq!(pmt.streams[0].descriptors, vec![0x52, 1, 7]);
        assert!(pmt.ecm_pids().is_empty());
        // The prefix a new client gets says the same.
        assert!(pmt_out(&r.program(a).psi_packets()).ecm_pids().is_empty());
    }

    #[test]
    fn one_program_out() {
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&mk_mux());
        let prog = r.program(a);
        let pids = pids_of(&prog.out);
        assert_eq!(pids[0], 0, "PAT first");
        assert_eq!(pids[1], 0x100, "then PMT");
        assert!(
            pids.iter().all(|p| [0, 0x100, 0x101, 0x102].contains(p)),
            "{pids:x?}"
        );
        assert_eq!(pids.iter().filter(|&&p| p == 0x101).count(), 20);
        // The PAT out has exactly our program.
        let mut asm = Assembler::new();
        let mut pat = None;
        for p in prog.out.chunks_exact(188) {
            let pkt = Packet::new_checked(p).unwrap();
            if pkt.pid() == 0 {
                asm.push(&pkt, |s| {
                    pat = Some(PatRepr::parse(&Section::new_verified(s).unwrap()).unwrap())
                });
            }
        }
        let pat = pat.unwrap();
        assert_eq!(
            pat.entries,
            vec![PatEntry {
                program_number: 1,
                pid: 0x100
            }]
        );
        assert_eq!(pat.transport_stream_id, 7);
        assert_eq!(prog.stats.cc_errors, 0);
        assert_eq!(prog.video, Some((0x101, VideoCodec::Mpeg2)));
        assert_eq!(r.stats.null_packets, 20);
    }

    /// A source that fails and comes back (a tuner unplugged and found
    /// again) gives the same PAT again after `reset_input`: the program's
    /// streams must flow again (found by the vidtv hot-plug rig).
    #[test]
    fn the_same_pat_after_an_input_reset_is_followed_again() {
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&mk_mux());
        let mut out = Vec::new();
        r.program_mut(a).take_output(&mut out);
        assert!(pids_of(&out).contains(&0x101));
        r.reset_input();
        r.push(&mk_mux());
        out.clear();
        r.program_mut(a).take_output(&mut out);
        let pids = pids_of(&out);
        assert_eq!(
            pids.iter().filter(|&&p| p == 0x101).count(),
            20,
            "{pids:x?}"
        );
    }

    #[test]
    fn cc_kept_as_they_came_and_counted() {
        let mut mux = mk_mux();
        // Drop the 5th packet of PID 0x101.
        let mut seen = 0;
        let mut cut = None;
        for (i, p) in mux.chunks_exact(188).enumerate() {
            if Packet::new_checked(p).unwrap().pid() == 0x101 {
                seen += 1;
                if seen == 5 {
                    cut = Some(i);
                }
            }
        }
        let i = cut.unwrap();
        mux.drain(i * 188..(i + 1) * 188);
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&mux);
        let out = &r.program(a).out;
        let ccs: Vec<u8> = out
            .chunks_exact(188)
            .map(|p| Packet::new_checked(p).unwrap())
            .filter(|p| p.pid() == 0x101)
            .map(|p| p.continuity_counter())
            .collect();
        assert_eq!(ccs[..6], [0, 1, 2, 3, 5, 6]);
        assert_eq!(r.program(a).stats.cc_errors, 1);
    }

    #[test]
    fn duplicates_forwarded_second_one_counted() {
        // The 5th packet of PID 0x101 sent twice (allowed), the 9th three
        // times (the second repeat is a TR 101 290 continuity error).
        let mux = mk_mux();
        let mut dup = Vec::new();
        let mut seen = 0;
        for p in mux.chunks_exact(188) {
            dup.extend_from_slice(p);
            if Packet::new_checked(p).unwrap().pid() == 0x101 {
                seen += 1;
                let extra = match seen {
                    5 => 1,
                    9 => 2,
                    _ => 0,
                };
                for _ in 0..extra {
                    dup.extend_from_slice(p);
                }
            }
        }
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&dup);
        let ccs: Vec<u8> = r
            .program(a)
            .out
            .chunks_exact(188)
            .map(|p| Packet::new_checked(p).unwrap())
            .filter(|p| p.pid() == 0x101)
            .map(|p| p.continuity_counter())
            .collect();
        assert_eq!(ccs[..12], [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 8]);
        assert_eq!(r.program(a).stats.cc_errors, 1);
        assert_eq!(r.stats.cc_errors, 1);
    }

    #[test]
    fn eit_of_the_service_only_and_tdt_carried() {
        // EIT p/f actual for services 1 and 2, schedule actual for 1, p/f
        // other for 1 (another mux: dropped), and a TDT.
        let mut ts = mk_mux();
        let mut cc = 0u8;
        let mut sections = Vec::new();
        for (tid, sid) in [(0x4Eu8, 1u16), (0x4E, 2), (0x50, 1), (0x4F, 1)] {
            // transport_stream_id, original_network_id, segment_last, last_table_id
            let body = [0, 7, 0, 1, 0, tid];
            let s = build_long_section(tid, sid, 0, 0, 0, &body);
            sections.push((tid, sid, s.clone()));
            packetize(&s, pid::EIT, &mut cc, &mut ts);
        }
        let tdt = [0x70u8, 0x70, 0x05, 0xE0, 0x00, 0x12, 0x34, 0x56];
        let mut tcc = 0;
        packetize(&tdt, pid::TDT, &mut tcc, &mut ts);
        let mut r = Remux::new();
        let a = r.add_program(1);
        r.push(&ts);
        let mut got = Vec::new();
        let mut tdts = 0;
        let mut asm = Assembler::new();
        let mut tasm = Assembler::new();
        for raw in r.program(a).out.chunks_exact(188) {
            let p = Packet::new_checked(raw).unwrap();
            if p.pid() == pid::EIT {
                asm.push(&p, |s| got.push(s.to_vec()));
            }
            if p.pid() == pid::TDT {
                tasm.push(&p, |_| tdts += 1);
            }
        }
        let want: Vec<Vec<u8>> = sections
            .iter()
            .filter(|(tid, sid, _)| *sid == 1 && *tid != 0x4F)
            .map(|(_, _, s)| s.clone())
            .collect();
        assert_eq!(
            got, want,
            "EIT p/f and schedule actual of service 1, byte for byte"
        );
        assert_eq!(tdts, 1);
        assert_eq!(r.program(a).stats.eit_sections, 2);
    }

    #[test]
    fn pmt_update_adds_pid() {
        let mut r = Remux::new();
        let a = r.add_program(2);
        r.push(&mk_mux());
        let pmt2 = PmtRepr {
            program_number: 2,
            version: 1,
            pcr_pid: 0x201,
            program_info: vec![],
            streams: vec![
                PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: 0x201,
                    descriptors: vec![],
                },
                PmtStream {
                    stream_type: 0x0F,
                    elementary_pid: 0x202,
                    descriptors: vec![],
                },
            ],
        };
        let mut ts = Vec::new();
        let mut cc = 1;
        packetize(&pmt2.emit(), 0x200, &mut cc, &mut ts);
        let mut p = [0u8; 188];
        packet::write_header(&mut p, 0x202, true, 0);
        ts.extend_from_slice(&p);
        let mut out = Vec::new();
        r.program_mut(a).take_output(&mut out);
        r.push(&ts);
        r.program_mut(a).take_output(&mut out);
        let pids = pids_of(&out);
        assert!(pids.contains(&0x202), "{pids:x?}");
        assert_eq!(r.program(a).stats.pmt_version_changes, 1);
    }

    /// A PAT of 256 sections whose sections 1..=255 change at every
    /// repetition (a hostile or broken multiplexer): the table stays within
    /// MAX_PAT_ENTRIES, the refusals are counted, and the wanted programs
    /// (in section 0) are served throughout.
    #[test]
    fn pat_section_flood_is_bounded_and_programs_stay() {
        let mut r = Remux::new();
        let a = r.add_program(1);
        let b = r.add_program(2);
        // mk_mux's PAT as section 0 of 256.
        let mut ts = Vec::new();
        let sec0 = PatRepr {
            transport_stream_id: 7,
            version: 0,
            section_number: 0,
            last_section_number: 255,
            entries: vec![
                PatEntry {
                    program_number: 1,
                    pid: 0x100,
                },
                PatEntry {
                    program_number: 2,
                    pid: 0x200,
                },
            ],
        };
        let mut pat_cc = 0;
        packetize(&sec0.emit(), 0, &mut pat_cc, &mut ts);
        ts.extend(mk_mux().chunks_exact(188).skip(1).flatten());
        r.push(&ts);
        for i in 0..4000u32 {
            let flood = PatRepr {
                section_number: 1 + (i % 255) as u8,
                entries: (0..253u32)
                    .map(|j| PatEntry {
                        program_number: (3 + (i * 253 + j) % 60000) as u16,
                        pid: 0x20 + (j as u16),
                    })
                    .collect(),
                ..sec0.clone()
            };
            let mut t = Vec::new();
            packetize(&flood.emit(), 0, &mut pat_cc, &mut t);
            if i % 100 == 0 {
                packetize(&sec0.emit(), 0, &mut pat_cc, &mut t);
            }
            r.push(&t);
        }
        let pat = r.pat().unwrap();
        assert!(pat.len() <= MAX_PAT_ENTRIES, "{}", pat.len());
        assert_eq!(pat.pmt_pid(1), Some(0x100));
        assert!(r.stats.pat_entries_refused > 500_000, "{:?}", r.stats);
        assert_eq!(r.program(a).pmt_pid, Some(0x100));
        assert_eq!(r.program(b).pmt_pid, Some(0x200));
        assert!(r.program(a).pmt.is_some() && r.program(b).pmt.is_some());
    }
}
