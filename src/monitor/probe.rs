//! The whole-stream probe: per-PID accounting (packets, CC errors,
//! scrambling, PCR and PTS clocks) and the PSI/SI picture (PAT, PMT, CAT,
//! SDT actual, NIT actual) of a transport stream, gathered into one
//! `Report`. `capbox probe` feeds it a file or an HTTP stream and renders
//! the report (cli::probe).
//!
//! Promises: bounded memory (one section per PSI PID, one record per PID —
//! at most 8192 — and per program), never panics on input, every refused
//! byte or section is counted in the report. Bit rates come from the PCR
//! clock of the capture (the mux rate between PCRs of the PID with the
//! longest PCR-measured span, spread over the PIDs by their packet share);
//! with no usable PCR, from the longest PTS span of a PID.

use std::collections::BTreeMap;

use serde::Serialize;

use super::pid::PidAnalyser;
use super::tr101290::{self, StreamClock, Tr101290, INDICATORS};
use crate::source::Resync;
use crate::ts::cat::CatRepr;
use crate::ts::descriptor::{self, tag};
use crate::ts::nit::NitRepr;
use crate::ts::packet::{Packet, PCR_HZ};
use crate::ts::pat::{PatRepr, MAX_PAT_ENTRIES};
use crate::ts::pes::{PesHeader, PTS_HZ};
use crate::ts::pmt::{stream_type_name, PmtRepr, PmtStream};
use crate::ts::sdt::{SdtRepr, SdtService};
use crate::ts::section::{Assembler, AssemblerStats, Section};
use crate::ts::{pid, table_id, PACKET_SIZE};

// ---------------------------------------------------------------------------
// Accounting
// ---------------------------------------------------------------------------

/// What was refused while reading tables.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PsiStats {
    pub sections: u64,
    pub crc_errors: u64,
    pub incomplete: u64,
    pub malformed: u64,
    pub bad_pointer: u64,
    /// Sections that reassembled but a table decoder refused.
    pub table_errors: u64,
    /// Sections with current_next_indicator = 0 (ignored).
    pub not_current: u64,
    /// PAT programs, SDT services and CAT EMM streams not kept: over
    /// `MAX_PAT_ENTRIES` (`MAX_EMM_STREAMS` for the CAT); a hostile mux may
    /// announce thousands.
    pub entries_refused: u64,
}

/// Most EMM streams (CA system, PID) kept from the CAT.
const MAX_EMM_STREAMS: usize = 256;

/// The probe state: feed bytes, then `finish`.
pub struct Probe {
    resync: Resync,
    aligned: Vec<u8>,
    packets: u64,
    /// Packets the resync handed out but `Packet::new_checked` refused.
    bad_packets: u64,
    pids: BTreeMap<u16, PidAnalyser>,
    assemblers: BTreeMap<u16, Assembler>,
    psi: PsiStats,
    pat_seen: bool,
    transport_stream_id: Option<u16>,
    network_pid: u16,
    /// program_number → PMT PID, from the PAT.
    pat: BTreeMap<u16, u16>,
    pmts: BTreeMap<u16, PmtRepr>,
    sdt: BTreeMap<u16, SdtService>,
    sdt_onid: Option<u16>,
    network_id: Option<u16>,
    network_name: Option<String>,
    emm: Vec<(u16, u16)>,
    cat_seen: bool,
    sdt_seen: bool,
    nit_seen: bool,
    /// TR 101 290 at stream time (the PCR-measured packet positions).
    tr: Box<Tr101290>,
    tr_clock: StreamClock,
    tr_sync_losses: u64,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Probe {
        let mut assemblers = BTreeMap::new();
        for p in [pid::PAT, pid::CAT, pid::NIT, pid::SDT] {
            assemblers.insert(p, Assembler::new());
        }
        Probe {
            resync: Resync::new(),
            aligned: Vec::new(),
            packets: 0,
            bad_packets: 0,
            pids: BTreeMap::new(),
            assemblers,
            psi: PsiStats::default(),
            pat_seen: false,
            transport_stream_id: None,
            network_pid: pid::NIT,
            pat: BTreeMap::new(),
            pmts: BTreeMap::new(),
            sdt: BTreeMap::new(),
            sdt_onid: None,
            network_id: None,
            network_name: None,
            emm: Vec::new(),
            cat_seen: false,
            sdt_seen: false,
            nit_seen: false,
            // A file or a stream: no PCR accuracy (see tr101290).
            tr: Box::new(Tr101290::new(tr101290::Config::mux(false))),
            tr_clock: StreamClock::default(),
            tr_sync_losses: 0,
        }
    }

    /// Any bytes: they are aligned on the sync byte first.
    pub fn push_bytes(&mut self, data: &[u8]) {
        let mut aligned = std::mem::take(&mut self.aligned);
        aligned.clear();
        self.resync.push(data, &mut aligned);
        self.note_sync_losses();
        for p in aligned.chunks_exact(PACKET_SIZE) {
            self.push_packet(p);
        }
        self.aligned = aligned;
    }

    fn note_sync_losses(&mut self) {
        let losses = self.resync.stats.sync_losses;
        let now = self.tr.now_ms();
        for _ in self.tr_sync_losses..losses {
            self.tr.sync_lost(now);
        }
        self.tr_sync_losses = losses;
    }

    fn push_packet(&mut self, raw: &[u8]) {
        if raw.len() == PACKET_SIZE {
            let ms = self.tr_clock.packet(raw);
            self.tr.packet(raw, ms);
            self.tr.tick(ms);
        }
        let Ok(p) = Packet::new_checked(raw) else {
            self.bad_packets += 1;
            return;
        };
        let idx = self.packets;
        self.packets += 1;
        let pid = p.pid();
        let st = self.pids.entry(pid).or_default();
        if !st.packet(&p, idx) {
            return;
        }
        let scrambled = p.scrambling_control() != 0;
        if let Some(asm) = self.assemblers.get_mut(&pid) {
            let mut sections: Vec<Vec<u8>> = Vec::new();
            asm.push(&p, |s| sections.push(s.to_vec()));
            for s in sections {
                self.on_section(pid, &s);
            }
        } else if p.payload_unit_start() && !scrambled {
            if let Ok(h) = PesHeader::new_checked(p.payload()) {
                st.pes_start(&h);
            }
        }
    }

    fn on_section(&mut self, pid: u16, bytes: &[u8]) {
        self.psi.sections += 1;
        let Ok(s) = Section::new_checked(bytes) else {
            self.psi.table_errors += 1;
            return;
        };
        if s.syntax_indicator() && !s.current_next() {
            self.psi.not_current += 1;
            return;
        }
        let tid = s.table_id();
        let ok = match tid {
            table_id::PAT if pid == pid::PAT => PatRepr::parse(&s).map(|pat| self.on_pat(pat)),
            table_id::CAT if pid == pid::CAT => CatRepr::parse(&s).map(|cat| {
                self.cat_seen = true;
                for e in cat.emm_pids() {
                    if self.emm.contains(&e) {
                        continue;
                    }
                    if self.emm.len() >= MAX_EMM_STREAMS {
                        self.psi.entries_refused += 1;
                        continue;
                    }
                    self.emm.push(e);
                }
                self.emm.sort_unstable();
            }),
            table_id::PMT => PmtRepr::parse(&s).map(|pmt| {
                // Only the PMT the PAT announces on this PID.
                if self.pat.get(&pmt.program_number) == Some(&pid) {
                    self.pmts.insert(pmt.program_number, pmt);
                }
            }),
            table_id::SDT_ACTUAL if pid == pid::SDT => SdtRepr::parse(&s).map(|sdt| {
                self.sdt_seen = true;
                self.sdt_onid = Some(sdt.original_network_id);
                for svc in sdt.services {
                    if self.sdt.len() >= MAX_PAT_ENTRIES && !self.sdt.contains_key(&svc.service_id)
                    {
                        self.psi.entries_refused += 1;
                        continue;
                    }
                    self.sdt.insert(svc.service_id, svc);
                }
            }),
            table_id::NIT_ACTUAL if pid == self.network_pid => NitRepr::parse(&s).map(|nit| {
                self.nit_seen = true;
                self.network_id = Some(nit.network_id);
                if let Some(n) = nit.network_name() {
                    self.network_name = Some(n);
                }
            }),
            // Other tables sharing these PIDs (BAT, SDT other, ST…): not ours.
            _ => Ok(()),
        };
        if ok.is_err() {
            self.psi.table_errors += 1;
        }
    }

    fn on_pat(&mut self, pat: PatRepr) {
        self.pat_seen = true;
        self.transport_stream_id = Some(pat.transport_stream_id);
        for e in &pat.entries {
            if e.program_number == 0 {
                if e.pid != self.network_pid {
                    self.assemblers.remove(&self.network_pid);
                    self.network_pid = e.pid;
                    self.assemblers.entry(e.pid).or_default();
                }
                continue;
            }
            if self.pat.len() >= MAX_PAT_ENTRIES && !self.pat.contains_key(&e.program_number) {
                self.psi.entries_refused += 1;
                continue;
            }
            self.pat.insert(e.program_number, e.pid);
            self.assemblers.entry(e.pid).or_default();
        }
    }

    /// Settle the clocks and build the report.
    pub fn finish(mut self, input: &str) -> Result<Report, ProbeError> {
        let mut tail = Vec::new();
        self.resync.finish(&mut tail);
        for p in tail.chunks_exact(PACKET_SIZE) {
            self.push_packet(p);
        }
        let sync = self.resync.stats;
        if self.packets == 0 {
            return Err(ProbeError::NoSync { bytes: sync.bytes });
        }
        if !self.pat_seen {
            let pat_packets = self.pids.get(&pid::PAT).map_or(0, |s| s.packets);
            return Err(ProbeError::NoPat {
                packets: self.packets,
                pat_packets,
            });
        }
        Ok(self.report(input))
    }

    fn clock(&self) -> (Option<f64>, Option<&'static str>, Option<u16>) {
        let total_bits = (self.packets * PACKET_SIZE as u64 * 8) as f64;
        let best = self
            .pids
            .iter()
            .filter(|(_, s)| s.pcr_ticks > 0 && s.pcr_span_packets > 0)
            .max_by_key(|(_, s)| s.pcr_ticks);
        if let Some((&p, s)) = best {
            let secs = s.pcr_ticks as f64 / PCR_HZ as f64;
            let mux_bps = (s.pcr_span_packets * PACKET_SIZE as u64 * 8) as f64 / secs;
            return (Some(total_bits / mux_bps), Some("pcr"), Some(p));
        }
        let best = self
            .pids
            .iter()
            .filter(|(_, s)| s.pts_span > 0)
            .max_by_key(|(_, s)| s.pts_span);
        if let Some((&p, s)) = best {
            return (
                Some(s.pts_span as f64 / PTS_HZ as f64),
                Some("pts"),
                Some(p),
            );
        }
        (None, None, None)
    }

    fn report(&self, input: &str) -> Report {
        let (duration, clock, clock_pid) = self.clock();
        let kbps = |packets: u64| {
            duration
                .filter(|d| *d > 0.0)
                .map(|d| round1((packets * PACKET_SIZE as u64 * 8) as f64 / d / 1000.0))
        };

        // What every PID is for, as the tables say.
        let mut usage: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        let mut add = |pid: u16, what: String| {
            let v = usage.entry(pid).or_default();
            if !v.contains(&what) {
                v.push(what);
            }
        };
        add(pid::PAT, "PAT".into());
        add(pid::CAT, "CAT".into());
        add(self.network_pid, "NIT".into());
        add(pid::SDT, "SDT/BAT".into());
        add(pid::EIT, "EIT".into());
        add(pid::TDT, "TDT/TOT".into());
        add(pid::NULL, "null".into());

        let mut programs = Vec::new();
        for (&pn, &pmt_pid) in &self.pat {
            add(pmt_pid, format!("PMT {pn}"));
            let svc = self.sdt.get(&pn);
            let sd = svc.and_then(|s| s.service_descriptor());
            let mut prog = ProgramReport {
                program_number: pn,
                pmt_pid,
                pmt_seen: false,
                pcr_pid: None,
                service_name: svc.and_then(|s| s.service_name()),
                provider: svc.and_then(|s| s.provider_name()),
                service_type: sd.as_ref().map(|d| d.service_type),
                service_type_name: sd.as_ref().map(|d| service_type_name(d.service_type)),
                free_ca_mode: svc.map(|s| s.free_ca_mode),
                running_status: svc.map(|s| s.running_status),
                ca: Vec::new(),
                streams: Vec::new(),
            };
            if let Some(pmt) = self.pmts.get(&pn) {
                prog.pmt_seen = true;
                prog.pcr_pid = Some(pmt.pcr_pid);
                if pmt.pcr_pid != pid::NULL {
                    add(pmt.pcr_pid, format!("PCR {pn}"));
                }
                for (sys, ecm) in pmt.ecm_pids() {
                    add(ecm, format!("ECM {pn} {}", ca_system_name(sys)));
                    prog.ca.push(CaReport::new(sys, ecm));
                }
                for s in &pmt.streams {
                    let st = self.pids.get(&s.elementary_pid);
                    let packets = st.map_or(0, |st| st.packets);
                    let layer = st.and_then(|st| st.mpeg_audio_layer);
                    let codec = codec_name(s, layer);
                    let kind = s.kind().as_str();
                    add(
                        s.elementary_pid,
                        format!("{} {} {pn}", codec.unwrap_or(kind), kind),
                    );
                    prog.streams.push(StreamReport {
                        pid: s.elementary_pid,
                        stream_type: s.stream_type,
                        stream_type_name: stream_type_name(s.stream_type),
                        codec,
                        kind,
                        languages: languages(s),
                        packets,
                        bitrate_kbps: kbps(packets),
                        scrambled: st.is_some_and(|st| st.scrambled_packets > 0),
                    });
                }
            }
            programs.push(prog);
        }
        let emm: Vec<CaReport> = self
            .emm
            .iter()
            .map(|&(sys, p)| {
                add(p, format!("EMM {}", ca_system_name(sys)));
                CaReport::new(sys, p)
            })
            .collect();

        // Named by a table but never seen: a stream the mux lost.
        let missing: Vec<u16> = usage
            .keys()
            .copied()
            .filter(|p| *p > 0x1F && *p != pid::NULL && !self.pids.contains_key(p))
            .collect();
        let mut pids = Vec::new();
        let mut unreferenced = Vec::new();
        for (&p, st) in &self.pids {
            let uses = usage.get(&p);
            // The DVB SI range 0x00..=0x1F is reserved for tables: known.
            let referenced = uses.is_some() || p <= 0x1F;
            if !referenced {
                unreferenced.push(p);
            }
            pids.push(PidReport {
                pid: p,
                packets: st.packets,
                bitrate_kbps: kbps(st.packets),
                cc_errors: st.cc_errors,
                transport_errors: st.transport_errors,
                scrambled: st.scrambled_packets > 0,
                scrambled_packets: st.scrambled_packets,
                pcr: st.pcr_count > 0,
                referenced,
                usage: match uses {
                    Some(u) => u.join(", "),
                    None if referenced => "SI (reserved)".into(),
                    None => "unreferenced".into(),
                },
            });
        }

        let mut psi = self.psi;
        for a in self.assemblers.values() {
            let AssemblerStats {
                crc_errors,
                incomplete,
                malformed,
                bad_pointer,
                ..
            } = a.stats;
            psi.crc_errors += crc_errors;
            psi.incomplete += incomplete;
            psi.malformed += malformed;
            psi.bad_pointer += bad_pointer;
        }
        let sync = self.resync.stats;
        let now = self.tr.now_ms();
        let snap = self.tr.snapshot(now);
        let tr101290 = Tr290Report {
            stream_time_s: now as f64 / 1000.0,
            pcr_accuracy_measured: self.tr.config().pcr_accuracy,
            indicators: INDICATORS
                .iter()
                .zip(&snap.indicators)
                .map(|(i, st)| Tr290Row {
                    indicator: i.id(),
                    priority: i.priority(),
                    errors: st.errors,
                })
                .collect(),
        };
        Report {
            tr101290,
            input: input.to_string(),
            bytes_read: sync.bytes,
            packets: self.packets,
            sync: SyncReport {
                bytes_skipped: sync.bytes_skipped,
                sync_losses: sync.sync_losses,
                truncated_packets: sync.truncated_packets,
                bad_packets: self.bad_packets,
            },
            duration_s: duration.map(|d| (d * 1000.0).round() / 1000.0),
            clock,
            clock_pid,
            mux_bitrate_kbps: kbps(self.packets),
            transport_stream_id: self.transport_stream_id,
            original_network_id: self.sdt_onid,
            network_id: self.network_id,
            network_name: self.network_name.clone(),
            nit_pid: self.network_pid,
            tables: TablesSeen {
                pat: self.pat_seen,
                pmt: self.pmts.len(),
                cat: self.cat_seen,
                sdt: self.sdt_seen,
                nit: self.nit_seen,
            },
            programs,
            emm,
            pids,
            unreferenced_pids: unreferenced,
            missing_pids: missing,
            psi,
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Why a probe gave no report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    NoSync { bytes: u64 },
    NoPat { packets: u64, pat_packets: u64 },
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::NoSync { bytes } => {
                write!(
                    f,
                    "not a transport stream: no MPEG-TS sync found in {bytes} bytes"
                )
            }
            ProbeError::NoPat {
                packets,
                pat_packets,
            } => write!(
                f,
                "no PAT in {packets} packets ({pat_packets} packets on PID 0x0000)"
            ),
        }
    }
}

impl std::error::Error for ProbeError {}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// ffmpeg's codec name for a stream: the PMT's classification, MPEG audio
/// refined by the layer of its first frame header.
fn codec_name(s: &PmtStream, mpeg_audio_layer: Option<u8>) -> Option<&'static str> {
    match s.classify().codec {
        Some("mp2") => Some(match mpeg_audio_layer {
            Some(1) => "mp1",
            Some(3) => "mp3",
            _ => "mp2",
        }),
        c => c,
    }
}

/// Languages of a stream: ISO 639, subtitling and teletext descriptors.
fn languages(s: &PmtStream) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for d in s.descriptors() {
        let codes: Vec<[u8; 3]> = match d.tag {
            tag::ISO_639_LANGUAGE => descriptor::languages(&d).map(|l| l.code).collect(),
            tag::SUBTITLING => descriptor::subtitling(&d)
                .map(|x| x.iso_639_language_code)
                .collect(),
            tag::TELETEXT => descriptor::teletext(&d)
                .map(|x| x.iso_639_language_code)
                .collect(),
            _ => continue,
        };
        for c in codes {
            let l = descriptor::lang_str(&c);
            if !v.contains(&l) {
                v.push(l);
            }
        }
    }
    v
}

/// service_type (EN 300 468 table 87).
pub fn service_type_name(t: u8) -> &'static str {
    match t {
        0x01 => "digital television",
        0x02 => "digital radio",
        0x03 => "teletext",
        0x04 => "NVOD reference",
        0x05 => "NVOD time-shifted",
        0x06 => "mosaic",
        0x07 => "FM radio",
        0x0A => "advanced codec radio",
        0x0C => "data broadcast",
        0x10 => "DVB MHP",
        0x11 => "MPEG-2 HD television",
        0x16 => "H.264 SD television",
        0x19 => "H.264 HD television",
        0x1C => "H.264 3D HD television",
        0x1F => "HEVC television",
        0x20 => "HEVC UHD television",
        _ => "other",
    }
}

/// CA system from the top byte of its CA_system_ID (ETSI TS 101 162).
pub fn ca_system_name(id: u16) -> &'static str {
    match id >> 8 {
        0x01 => "Seca/Mediaguard",
        0x05 => "Viaccess",
        0x06 => "Irdeto",
        0x09 => "NDS Videoguard",
        0x0B => "Conax",
        0x0D => "Cryptoworks",
        0x0E => "PowerVu",
        0x10 => "RAS",
        0x17 => "BetaCrypt",
        0x18 => "Nagravision",
        0x26 => "BISS",
        0x4A if id == 0x4AE0 || id == 0x4AE1 => "DRE-Crypt",
        0x56 => "Verimatrix",
        _ => "CA",
    }
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// TR 101 290 over the whole input, at stream time.
#[derive(Debug, Clone, Serialize)]
pub struct Tr290Report {
    /// The stream time the analyser reached (PCR-measured positions).
    pub stream_time_s: f64,
    /// False on files and streams: PCR accuracy needs a tuner's mux.
    pub pcr_accuracy_measured: bool,
    pub indicators: Vec<Tr290Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tr290Row {
    pub indicator: &'static str,
    pub priority: u8,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub bytes_skipped: u64,
    pub sync_losses: u64,
    pub truncated_packets: u64,
    pub bad_packets: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TablesSeen {
    pub pat: bool,
    /// PMTs seen (of the programs in the PAT).
    pub pmt: usize,
    pub cat: bool,
    pub sdt: bool,
    pub nit: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaReport {
    pub ca_system_id: u16,
    pub ca_system: &'static str,
    /// ECM PID (in a program) or EMM PID (in `emm`).
    pub pid: u16,
}

impl CaReport {
    fn new(ca_system_id: u16, pid: u16) -> CaReport {
        CaReport {
            ca_system_id,
            ca_system: ca_system_name(ca_system_id),
            pid,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub pid: u16,
    pub stream_type: u8,
    pub stream_type_name: &'static str,
    /// ffmpeg's codec name, when the PMT says it.
    pub codec: Option<&'static str>,
    /// video, audio, subtitles, teletext, data.
    pub kind: &'static str,
    pub languages: Vec<String>,
    pub packets: u64,
    pub bitrate_kbps: Option<f64>,
    pub scrambled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    pub program_number: u16,
    pub pmt_pid: u16,
    pub pmt_seen: bool,
    pub pcr_pid: Option<u16>,
    pub service_name: Option<String>,
    pub provider: Option<String>,
    pub service_type: Option<u8>,
    pub service_type_name: Option<&'static str>,
    pub free_ca_mode: Option<bool>,
    pub running_status: Option<u8>,
    /// CA systems with their ECM PIDs (program and stream level).
    pub ca: Vec<CaReport>,
    pub streams: Vec<StreamReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PidReport {
    pub pid: u16,
    pub packets: u64,
    pub bitrate_kbps: Option<f64>,
    pub cc_errors: u64,
    pub transport_errors: u64,
    pub scrambled: bool,
    pub scrambled_packets: u64,
    /// Carries PCRs.
    pub pcr: bool,
    /// Named by the PAT, a PMT or the CAT, or in the SI range 0x00..=0x1F.
    pub referenced: bool,
    pub usage: String,
}

/// Everything `capbox probe` says, text and JSON alike.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub bytes_read: u64,
    pub packets: u64,
    pub sync: SyncReport,
    pub duration_s: Option<f64>,
    /// "pcr" or "pts": which clock measured the duration.
    pub clock: Option<&'static str>,
    pub clock_pid: Option<u16>,
    pub mux_bitrate_kbps: Option<f64>,
    pub transport_stream_id: Option<u16>,
    pub original_network_id: Option<u16>,
    pub network_id: Option<u16>,
    pub network_name: Option<String>,
    pub nit_pid: u16,
    pub tables: TablesSeen,
    pub programs: Vec<ProgramReport>,
    pub emm: Vec<CaReport>,
    pub pids: Vec<PidReport>,
    pub unreferenced_pids: Vec<u16>,
    /// PIDs a table names (PMT, PCR, ECM, EMM, streams) with no packet.
    pub missing_pids: Vec<u16>,
    pub psi: PsiStats,
    pub tr101290: Tr290Report,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_flood_is_bounded_and_counted() {
        use crate::ts::pat::PatEntry;
        use crate::ts::section::packetize;
        let mut probe = Probe::new();
        let mut cc = 0;
        let mut ts = Vec::new();
        for k in 0..40u32 {
            let pat = PatRepr {
                transport_stream_id: 1,
                version: (k % 32) as u8,
                section_number: 0,
                last_section_number: 0,
                entries: (0..253u32)
                    .map(|j| PatEntry {
                        program_number: (1 + k * 253 + j) as u16,
                        pid: 0x20 + j as u16,
                    })
                    .collect(),
            };
            packetize(&pat.emit(), 0, &mut cc, &mut ts);
        }
        probe.push_bytes(&ts);
        assert_eq!(probe.pat.len(), MAX_PAT_ENTRIES);
        assert_eq!(
            probe.psi.entries_refused,
            (40 * 253 - MAX_PAT_ENTRIES) as u64
        );
    }
}
