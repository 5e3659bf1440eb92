//! Channel scan: from initial tuning entries (a dtv-scan-tables file read by
//! `channels::parse`) to the services of every mux, as dvbv5 channel-file
//! entries (`channels::write`) and a capbox channel list
//! (`channels::capbox_config_snippet`).
//!
//! Owns two parts, split so the second is tested without hardware:
//! - [`MuxAnalyzer`]: TS bytes in, services out. Reassembles PAT, PMTs,
//!   SDT actual and NIT actual (section `Assembler` per PID, multi-section
//!   tables through `TableCollector`) and says when the mux is fully known
//!   (PAT, every PMT it lists, SDT, and the NIT when the PAT names a network
//!   PID) so a scan can stop reading early.
//! - [`scan`]: the loop over muxes through a [`Tuner`] (the real one is
//!   [`DvbTuner`]: `Frontend` + full-TS `Demux` + `Dvr`), following NIT
//!   actual delivery descriptors to muxes not yet listed (deduplicated by
//!   frequency, within a tolerance, and polarisation) and reporting progress.
//!
//! Promises: bounded memory (byte-level resync buffer of one packet, at most
//! `MAX_PMTS` PMTs, `TableCollector` bounds, at most `MAX_MUXES` muxes per
//! scan); every dropped byte, refused table and NIT entry not followed is
//! counted in [`AnalyzerStats`] / [`ScanStats`]; no panics on any bytes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::dvb::channels::ChannelEntry;
use crate::dvb::demux::{Demux, Dvr, FULL_TS};
use crate::dvb::frontend::Frontend;
use crate::dvb::lnb::LnbSetup;
use crate::dvb::tune::{self, TuneError, TuneRequest};
use crate::dvb::tuning::{PlsStyle, Polarization, Tuning};
use crate::dvb::DvbError;
use crate::ts::collector::{Push, TableCollector};
use crate::ts::descriptor::DeliverySystem;
use crate::ts::nit::NitRepr;
use crate::ts::pat::PatRepr;
use crate::ts::pmt::{PmtRepr, StreamKind};
use crate::ts::sdt::SdtRepr;
use crate::ts::section::{Assembler, Section};
use crate::ts::{pid, table_id, Packet, PACKET_SIZE, SYNC_BYTE};

/// Most programs one PAT may make us collect PMTs for.
pub const MAX_PMTS: usize = 256;
/// Most muxes one scan visits (initial entries plus NIT discoveries).
pub const MAX_MUXES: usize = 512;

/// One elementary stream of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream_type: u8,
    pub elementary_pid: u16,
    pub kind: StreamKind,
    /// ISO 639 (or subtitling/teletext) language, if any.
    pub language: Option<String>,
}

/// One service of a mux, from PAT + PMT + SDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub service_id: u16,
    /// service_name of the SDT's service_descriptor.
    pub name: Option<String>,
    pub provider: Option<String>,
    pub service_type: Option<u8>,
    /// program_map_PID from the PAT (`None`: in the SDT only).
    pub pmt_pid: Option<u16>,
    pub pcr_pid: Option<u16>,
    pub streams: Vec<StreamInfo>,
    /// CA_system_ids of the PMT's CA descriptors (program and stream level).
    pub ca_system_ids: Vec<u16>,
    /// SDT free_CA_mode.
    pub free_ca_mode: bool,
}

impl ServiceInfo {
    pub fn video_pids(&self) -> Vec<u16> {
        self.pids_of(StreamKind::Video)
    }
    pub fn audio_pids(&self) -> Vec<u16> {
        self.pids_of(StreamKind::Audio)
    }
    /// (pid, language) of the audio streams.
    pub fn audio(&self) -> Vec<(u16, Option<String>)> {
        self.streams
            .iter()
            .filter(|s| s.kind == StreamKind::Audio)
            .map(|s| (s.elementary_pid, s.language.clone()))
            .collect()
    }
    fn pids_of(&self, kind: StreamKind) -> Vec<u16> {
        self.streams
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.elementary_pid)
            .collect()
    }
}

/// A mux named by a NIT actual transport stream loop entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitMux {
    pub transport_stream_id: u16,
    pub original_network_id: u16,
    pub tuning: Tuning,
}

/// Counters of one analyzer; every byte or table not used lands in one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzerStats {
    pub bytes: u64,
    pub packets: u64,
    /// Bytes skipped to find the next sync byte.
    pub resync_bytes: u64,
    /// Packets that fail `Packet::new_checked` or carry transport_error.
    pub bad_packets: u64,
    /// Complete tables that did not parse (PAT/PMT/SDT/NIT).
    pub bad_tables: u64,
    /// table_id of the last one, for the log.
    pub last_bad_table_id: Option<u8>,
    /// Programs past `MAX_PMTS` whose PMT is not collected.
    pub pmts_ignored: u64,
    /// NIT transport streams without a usable delivery descriptor
    /// (none, frequency 0, or parameters `Tuning` refuses).
    pub nit_unusable: u64,
    /// Sections of the wanted PIDs dropped by the assemblers (CRC-32
    /// mismatch, lost packets, bad headers), as of `missing()`/report time.
    pub section_errors: u64,
}

/// TS bytes in, PAT/PMT/SDT/NIT-actual knowledge out.
#[derive(Debug)]
pub struct MuxAnalyzer {
    partial: Vec<u8>,
    assemblers: HashMap<u16, Assembler>,
    collector: TableCollector,
    pat: Option<PatRepr>,
    /// program_map_PID → program_numbers carried on it.
    pmt_pids: HashMap<u16, Vec<u16>>,
    pmts: BTreeMap<u16, PmtRepr>,
    sdt: Option<Vec<SdtRepr>>,
    nit: Option<Vec<NitRepr>>,
    pub stats: AnalyzerStats,
}

impl Default for MuxAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl MuxAnalyzer {
    pub fn new() -> MuxAnalyzer {
        MuxAnalyzer {
            partial: Vec::with_capacity(PACKET_SIZE),
            assemblers: HashMap::new(),
            // PAT + ≤256 PMTs + a few SDT/NIT tables; 1 MiB of sections.
            collector: TableCollector::new(MAX_PMTS + 16, 1 << 20),
            pat: None,
            pmt_pids: HashMap::new(),
            pmts: BTreeMap::new(),
            sdt: None,
            nit: None,
            stats: AnalyzerStats::default(),
        }
    }

    /// The network PID the PAT names (program 0), else 0x0010.
    fn nit_pid(&self) -> u16 {
        self.pat
            .as_ref()
            .and_then(|p| p.entries.iter().find(|e| e.program_number == 0))
            .map(|e| e.pid)
            .unwrap_or(pid::NIT)
    }

    /// Feed any number of bytes; packets may be split across calls.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.stats.bytes += bytes.len() as u64;
        if !self.partial.is_empty() {
            let need = PACKET_SIZE - self.partial.len();
            let n = need.min(bytes.len());
            self.partial.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.partial.len() < PACKET_SIZE {
                return;
            }
            let pkt = std::mem::take(&mut self.partial);
            self.packet(&pkt);
            self.partial = pkt;
            self.partial.clear();
        }
        while !bytes.is_empty() {
            if bytes[0] != SYNC_BYTE {
                let skip = bytes
                    .iter()
                    .position(|&b| b == SYNC_BYTE)
                    .unwrap_or(bytes.len());
                self.stats.resync_bytes += skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            if bytes.len() < PACKET_SIZE {
                self.partial.extend_from_slice(bytes);
                return;
            }
            let (p, rest) = bytes.split_at(PACKET_SIZE);
            self.packet(p);
            bytes = rest;
        }
    }

    fn wanted(&self, p: u16) -> bool {
        p == pid::PAT || p == pid::SDT || p == self.nit_pid() || self.pmt_pids.contains_key(&p)
    }

    fn packet(&mut self, bytes: &[u8]) {
        let pkt = match Packet::new_checked(bytes) {
            Ok(p) if !p.transport_error() => p,
            _ => {
                self.stats.bad_packets += 1;
                return;
            }
        };
        self.stats.packets += 1;
        let p = pkt.pid();
        if !self.wanted(p) {
            return;
        }
        let mut sections: Vec<Vec<u8>> = Vec::new();
        self.assemblers
            .entry(p)
            .or_default()
            .push(&pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            self.section(p, &s);
        }
    }

    fn section(&mut self, p: u16, bytes: &[u8]) {
        let tid = bytes.first().copied().unwrap_or(0xFF);
        let expected = match tid {
            table_id::PAT => p == pid::PAT,
            table_id::PMT => self.pmt_pids.contains_key(&p),
            table_id::SDT_ACTUAL => p == pid::SDT,
            table_id::NIT_ACTUAL => p == self.nit_pid(),
            _ => false,
        };
        if !expected {
            return;
        }
        let Push::Complete(secs) = self.collector.push(bytes) else {
            return;
        };
        let bad_before = self.stats.bad_tables;
        let parsed: Vec<Section<&[u8]>> = secs
            .iter()
            .filter_map(|s| Section::new_checked(&s[..]).ok())
            .collect();
        match tid {
            table_id::PAT => self.on_pat(&parsed),
            table_id::PMT => {
                for s in &parsed {
                    match PmtRepr::parse(s) {
                        Ok(pmt) => {
                            let wanted = self
                                .pmt_pids
                                .get(&p)
                                .is_some_and(|v| v.contains(&pmt.program_number));
                            if wanted {
                                self.pmts.insert(pmt.program_number, pmt);
                            }
                        }
                        Err(_) => self.stats.bad_tables += 1,
                    }
                }
            }
            table_id::SDT_ACTUAL => {
                let v: Result<Vec<SdtRepr>, _> = parsed.iter().map(SdtRepr::parse).collect();
                // A complete table that does not parse is still "seen":
                // its repeats are the same bytes, waiting longer gains nothing.
                self.sdt = Some(v.unwrap_or_else(|_| {
                    self.stats.bad_tables += 1;
                    Vec::new()
                }));
            }
            table_id::NIT_ACTUAL => {
                let v: Result<Vec<NitRepr>, _> = parsed.iter().map(NitRepr::parse).collect();
                self.nit = Some(v.unwrap_or_else(|_| {
                    self.stats.bad_tables += 1;
                    Vec::new()
                }));
            }
            _ => {}
        }
        if self.stats.bad_tables != bad_before {
            self.stats.last_bad_table_id = Some(tid);
        }
    }

    fn on_pat(&mut self, parsed: &[Section<&[u8]>]) {
        let mut merged: Option<PatRepr> = None;
        for s in parsed {
            match PatRepr::parse(s) {
                Ok(p) => match &mut merged {
                    Some(m) => m.entries.extend(p.entries),
                    None => merged = Some(p),
                },
                Err(_) => {
                    self.stats.bad_tables += 1;
                    return;
                }
            }
        }
        let Some(pat) = merged else { return };
        self.pmt_pids.clear();
        let mut n = 0;
        for e in pat.entries.iter().filter(|e| e.program_number != 0) {
            if n >= MAX_PMTS {
                self.stats.pmts_ignored += 1;
                continue;
            }
            n += 1;
            self.pmt_pids
                .entry(e.pid)
                .or_default()
                .push(e.program_number);
        }
        let listed: Vec<u16> = self.pmt_pids.values().flatten().copied().collect();
        self.pmts.retain(|k, _| listed.contains(k));
        self.pat = Some(pat);
    }

    /// Whether the NIT is needed before the mux counts as complete: only
    /// when the PAT names a network PID (many muxes, e.g. ffmpeg's, have none).
    fn nit_expected(&self) -> bool {
        self.pat
            .as_ref()
            .is_some_and(|p| p.entries.iter().any(|e| e.program_number == 0))
    }

    /// PAT, every PMT it lists, the SDT actual, and the NIT actual if the
    /// PAT names one: nothing more to learn from this mux.
    pub fn is_complete(&self) -> bool {
        let Some(_) = &self.pat else { return false };
        let pmts_done = self
            .pmt_pids
            .values()
            .flatten()
            .all(|p| self.pmts.contains_key(p));
        pmts_done && self.sdt.is_some() && (!self.nit_expected() || self.nit.is_some())
    }

    /// Tables still missing for `is_complete` ("PAT", "PMT", "SDT", "NIT").
    pub fn missing(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pat.is_none() {
            v.push("PAT");
        }
        if !self
            .pmt_pids
            .values()
            .flatten()
            .all(|p| self.pmts.contains_key(p))
        {
            v.push("PMT");
        }
        if self.sdt.is_none() {
            v.push("SDT");
        }
        if self.nit_expected() && self.nit.is_none() {
            v.push("NIT");
        }
        v
    }

    /// Counters including the assemblers' dropped sections.
    pub fn stats_now(&self) -> AnalyzerStats {
        let mut s = self.stats;
        s.section_errors = self
            .assemblers
            .values()
            .map(|a| {
                a.stats.crc_errors + a.stats.incomplete + a.stats.malformed + a.stats.bad_pointer
            })
            .sum();
        s
    }

    pub fn transport_stream_id(&self) -> Option<u16> {
        self.pat.as_ref().map(|p| p.transport_stream_id)
    }

    pub fn original_network_id(&self) -> Option<u16> {
        self.sdt
            .as_ref()
            .and_then(|v| v.first())
            .map(|s| s.original_network_id)
    }

    pub fn network_name(&self) -> Option<String> {
        self.nit
            .as_ref()
            .and_then(|v| v.iter().find_map(|n| n.network_name()))
    }

    /// The services known so far: every PAT program (with its PMT when
    /// seen) and every SDT service, ordered by service_id.
    pub fn services(&self) -> Vec<ServiceInfo> {
        let mut out: BTreeMap<u16, ServiceInfo> = BTreeMap::new();
        let blank = |sid: u16| ServiceInfo {
            service_id: sid,
            name: None,
            provider: None,
            service_type: None,
            pmt_pid: None,
            pcr_pid: None,
            streams: Vec::new(),
            ca_system_ids: Vec::new(),
            free_ca_mode: false,
        };
        if let Some(pat) = &self.pat {
            for e in pat.entries.iter().filter(|e| e.program_number != 0) {
                let s = out
                    .entry(e.program_number)
                    .or_insert_with(|| blank(e.program_number));
                s.pmt_pid = Some(e.pid);
                if let Some(pmt) = self.pmts.get(&e.program_number) {
                    s.pcr_pid = Some(pmt.pcr_pid);
                    let mut ca: Vec<u16> = pmt
                        .program_info()
                        .filter_map(|d| crate::ts::descriptor::CaDescriptor::parse(&d))
                        .map(|c| c.ca_system_id)
                        .collect();
                    for st in &pmt.streams {
                        ca.extend(st.ca_descriptors().map(|c| c.ca_system_id));
                        s.streams.push(StreamInfo {
                            stream_type: st.stream_type,
                            elementary_pid: st.elementary_pid,
                            kind: st.kind(),
                            language: st.any_language(),
                        });
                    }
                    ca.sort_unstable();
                    ca.dedup();
                    s.ca_system_ids = ca;
                }
            }
        }
        for sdt in self.sdt.iter().flatten() {
            for sv in &sdt.services {
                let s = out
                    .entry(sv.service_id)
                    .or_insert_with(|| blank(sv.service_id));
                s.name = sv.service_name();
                s.provider = sv.provider_name();
                s.service_type = sv.service_type();
                s.free_ca_mode = sv.free_ca_mode;
            }
        }
        out.into_values().collect()
    }

    /// Muxes of the NIT actual's transport stream loop that have a delivery
    /// descriptor capbox can tune; others are counted in `nit_unusable`.
    pub fn nit_muxes(&mut self) -> Vec<NitMux> {
        let mut out = Vec::new();
        let mut unusable = 0;
        for nit in self.nit.iter().flatten() {
            for ts in &nit.transport_streams {
                match ts.delivery_system().and_then(|d| tuning_from_delivery(&d)) {
                    Some(tuning) => out.push(NitMux {
                        transport_stream_id: ts.transport_stream_id,
                        original_network_id: ts.original_network_id,
                        tuning,
                    }),
                    None => unusable += 1,
                }
            }
        }
        self.stats.nit_unusable = unusable;
        out
    }
}

/// A `Tuning` from an EN 300 468 delivery system descriptor, through the
/// dvbv5 keys so `Tuning`'s own validation applies. `None` for frequency 0
/// and for parameters `Tuning` refuses.
pub fn tuning_from_delivery(d: &DeliverySystem) -> Option<Tuning> {
    let code_rate = |c: u8| match c {
        1 => "1/2",
        2 => "2/3",
        3 => "3/4",
        4 => "5/6",
        5 => "7/8",
        6 => "8/9",
        7 => "3/5",
        8 => "4/5",
        9 => "9/10",
        15 => "NONE",
        _ => "AUTO",
    };
    let mut pairs: Vec<(&str, String)> = Vec::new();
    match d {
        DeliverySystem::Terrestrial(t) => {
            if t.centre_frequency == 0 {
                return None;
            }
            // Table 43-47 of EN 300 468: the 3-bit codes in order.
            let bw = match t.bandwidth {
                0 => 8_000_000,
                1 => 7_000_000,
                2 => 6_000_000,
                3 => 5_000_000,
                _ => 0,
            };
            let tcr = |c: u8| ["1/2", "2/3", "3/4", "5/6", "7/8"].get(c as usize).copied();
            pairs.push(("DELIVERY_SYSTEM", "DVBT".into()));
            pairs.push(("FREQUENCY", t.centre_frequency.to_string()));
            pairs.push(("BANDWIDTH_HZ", bw.to_string()));
            let m = ["QPSK", "QAM/16", "QAM/64"].get(t.constellation as usize);
            pairs.push(("MODULATION", m.copied().unwrap_or("QAM/AUTO").into()));
            pairs.push((
                "CODE_RATE_HP",
                tcr(t.code_rate_hp_stream).unwrap_or("AUTO").into(),
            ));
            // The LP stream exists only with hierarchy.
            let hier = t.hierarchy_information & 3;
            let lp = if hier == 0 {
                "NONE"
            } else {
                tcr(t.code_rate_lp_stream).unwrap_or("AUTO")
            };
            pairs.push(("CODE_RATE_LP", lp.into()));
            let g = ["1/32", "1/16", "1/8", "1/4"][(t.guard_interval & 3) as usize];
            pairs.push(("GUARD_INTERVAL", g.into()));
            let tm = ["2K", "8K", "4K"].get(t.transmission_mode as usize);
            pairs.push(("TRANSMISSION_MODE", tm.copied().unwrap_or("AUTO").into()));
            pairs.push(("HIERARCHY", ["NONE", "1", "2", "4"][hier as usize].into()));
        }
        DeliverySystem::Cable(c) => {
            if c.frequency == 0 {
                return None;
            }
            let m = match c.modulation {
                1 => "QAM/16",
                2 => "QAM/32",
                3 => "QAM/64",
                4 => "QAM/128",
                5 => "QAM/256",
                _ => "QAM/AUTO",
            };
            pairs.push(("DELIVERY_SYSTEM", "DVBC/ANNEX_A".into()));
            pairs.push(("FREQUENCY", c.frequency.to_string()));
            pairs.push(("SYMBOL_RATE", c.symbol_rate.to_string()));
            pairs.push(("MODULATION", m.into()));
            pairs.push(("INNER_FEC", code_rate(c.fec_inner).into()));
        }
        DeliverySystem::Satellite(s) => {
            if s.frequency == 0 {
                return None;
            }
            let pol = ["HORIZONTAL", "VERTICAL", "LEFT", "RIGHT"][(s.polarization & 3) as usize];
            pairs.push((
                "DELIVERY_SYSTEM",
                if s.modulation_system { "DVBS2" } else { "DVBS" }.into(),
            ));
            pairs.push(("FREQUENCY", (s.frequency / 1000).to_string()));
            pairs.push(("POLARIZATION", pol.into()));
            pairs.push(("SYMBOL_RATE", s.symbol_rate.to_string()));
            pairs.push(("INNER_FEC", code_rate(s.fec_inner).into()));
            if s.modulation_system {
                let m = match s.modulation_type {
                    1 => "QPSK",
                    2 => "PSK/8",
                    3 => "QAM/16",
                    _ => "QPSK",
                };
                pairs.push(("MODULATION", m.into()));
                let r = ["35", "25", "20"].get(s.roll_off as usize);
                pairs.push(("ROLLOFF", r.copied().unwrap_or("35").into()));
            }
        }
    }
    Tuning::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).ok()
}

/// (medium, frequency in kHz, polarisation) of a mux, for deduplication.
fn mux_key(t: &Tuning) -> (u8, u64, Option<Polarization>) {
    match t {
        Tuning::DvbS(p) | Tuning::DvbS2(p) => (0, p.frequency_khz as u64, Some(p.polarization)),
        Tuning::DvbT(p) | Tuning::DvbT2(p) => (1, p.frequency_hz as u64 / 1000, None),
        Tuning::DvbC(p) => (2, p.frequency_hz as u64 / 1000, None),
    }
}

/// Whether two tunings are the same mux: same medium and polarisation, and
/// frequencies within 2 MHz (satellite; NIT and scan tables round
/// differently) or 1 MHz (terrestrial, cable).
pub fn same_mux(a: &Tuning, b: &Tuning) -> bool {
    let (ma, fa, pa) = mux_key(a);
    let (mb, fb, pb) = mux_key(b);
    let tol = if ma == 0 { 2000 } else { 1000 };
    ma == mb && pa == pb && fa.abs_diff(fb) < tol
}

/// What a scan needs from a tuner; [`DvbTuner`] is the real one.
pub trait Tuner {
    /// Tune and wait for lock: Ok(true) locked, Ok(false) no lock within
    /// `timeout` (with the status in words), Err on an ioctl failure.
    fn tune_lock(&mut self, t: &Tuning, timeout: Duration) -> Result<(bool, String), DvbError>;
    /// Read TS bytes of the tuned mux, waiting at most `timeout`; Ok(0) when
    /// none came.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, DvbError>;
}

/// A frontend with the full TS to dvr (the scan reads every PID).
pub struct DvbTuner {
    pub frontend: Frontend,
    pub demux: Demux,
    pub dvr: Dvr,
    pub lnb: Option<LnbSetup>,
    pub pls_style: PlsStyle,
}

impl DvbTuner {
    /// Open frontend0, demux0 and dvr0 of `adapter`. The frontend open fails
    /// with EBUSY when another process holds it read-write.
    pub fn open(
        adapter: u32,
        lnb: Option<LnbSetup>,
        pls_style: PlsStyle,
    ) -> Result<DvbTuner, DvbError> {
        let frontend = Frontend::open(adapter, 0)?;
        let dvr = Dvr::open(adapter, 0)?;
        let mut demux = Demux::open(adapter, 0)?;
        demux.set_ts_filter(FULL_TS)?;
        Ok(DvbTuner {
            frontend,
            demux,
            dvr,
            lnb,
            pls_style,
        })
    }
}

impl Tuner for DvbTuner {
    fn tune_lock(&mut self, t: &Tuning, timeout: Duration) -> Result<(bool, String), DvbError> {
        let request = TuneRequest {
            tuning: t,
            lnb: self.lnb.as_ref(),
            pls_style: self.pls_style,
            cable_slave: false,
            lock_timeout: timeout,
        };
        match tune::tune(&mut self.frontend, &request) {
            Ok(st) => {
                // Drop what the dvr holds from the previous mux.
                let mut buf = vec![0u8; 64 * 1024];
                for _ in 0..64 {
                    if self.dvr.read(&mut buf)? == 0 {
                        break;
                    }
                }
                Ok((true, st.to_string()))
            }
            Err(TuneError::Lock(e)) if e.errno == 0 => Ok((false, e.detail)),
            Err(TuneError::Lock(e) | TuneError::Ioctl(e)) => Err(e),
            Err(TuneError::Lnb(e)) => Err(DvbError::other(self.frontend.device(), "LNB", e)),
            Err(TuneError::Props(e)) => Err(DvbError::other(self.frontend.device(), "tune", e)),
        }
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, DvbError> {
        self.dvr.read_timeout(buf, timeout)
    }
}

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub lock_timeout: Duration,
    /// Longest time reading one locked mux (stops earlier when complete).
    pub read_time: Duration,
    /// Add NIT actual muxes not in the list.
    pub follow_nit: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            lock_timeout: Duration::from_secs(2),
            read_time: Duration::from_secs(5),
            follow_nit: true,
        }
    }
}

/// How one mux went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxOutcome {
    /// No lock within the timeout; the frontend status in words.
    NoLock(String),
    /// Locked; `complete` false when the read time ran out first.
    Locked { complete: bool },
    /// An ioctl or read failed (the error in words).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct MuxReport {
    pub tuning: Tuning,
    /// Found in a NIT rather than the initial file.
    pub from_nit: bool,
    pub outcome: MuxOutcome,
    pub transport_stream_id: Option<u16>,
    pub original_network_id: Option<u16>,
    pub network_name: Option<String>,
    pub services: Vec<ServiceInfo>,
    /// Tables not seen before the read time ran out.
    pub missing: Vec<&'static str>,
    pub stats: AnalyzerStats,
}

/// Progress as a scan goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// About to tune mux `n` (1-based) of `total` (which grows with NIT).
    Tuning {
        n: usize,
        total: usize,
        tuning: &'a Tuning,
    },
    Done {
        n: usize,
        total: usize,
        report: &'a MuxReport,
    },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    pub nit_added: u64,
    /// NIT muxes already in the list (same frequency and polarisation).
    pub nit_duplicates: u64,
    /// NIT muxes of another medium than the one being scanned.
    pub nit_other_medium: u64,
    /// NIT muxes refused because the list had `MAX_MUXES`.
    pub nit_over_limit: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    pub muxes: Vec<MuxReport>,
    pub stats: ScanStats,
}

impl ScanResult {
    /// One dvbv5 entry per service with a PMT (the dvbv5-scan shape), muxes
    /// in scan order; the same service on two muxes is kept once.
    pub fn channel_entries(&self, lnb: Option<&str>) -> Vec<ChannelEntry> {
        let mut out = Vec::new();
        let mut seen: Vec<(Option<u16>, u16)> = Vec::new();
        for m in &self.muxes {
            for s in &m.services {
                if s.pmt_pid.is_none() {
                    continue;
                }
                let key = (m.original_network_id, s.service_id);
                if m.original_network_id.is_some() && seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                out.push(service_entry(&m.tuning, s, lnb));
            }
        }
        out
    }
}

/// A dvbv5 channel-file entry for one service.
pub fn service_entry(t: &Tuning, s: &ServiceInfo, lnb: Option<&str>) -> ChannelEntry {
    let mut other: Vec<(u8, Vec<u16>)> = Vec::new();
    for st in s
        .streams
        .iter()
        .filter(|x| !matches!(x.kind, StreamKind::Video | StreamKind::Audio))
    {
        match other.iter_mut().find(|(t, _)| *t == st.stream_type) {
            Some((_, v)) => v.push(st.elementary_pid),
            None => other.push((st.stream_type, vec![st.elementary_pid])),
        }
    }
    let mut extra = Vec::new();
    if let Some(p) = &s.provider {
        extra.push(("PROVIDER".to_string(), p.clone()));
    }
    ChannelEntry {
        name: s.name.clone(),
        vchannel: None,
        service_id: Some(s.service_id),
        video_pids: s.video_pids(),
        audio_pids: s.audio_pids(),
        other_pids: other,
        sat_number: None,
        freq_bpf: None,
        diseqc_wait: None,
        lnb: lnb.map(str::to_string),
        tuning: *t,
        extra,
    }
}

/// Read one locked mux into an analyzer until complete or `read_time`.
pub fn read_mux<T: Tuner>(
    tuner: &mut T,
    read_time: Duration,
) -> Result<(MuxAnalyzer, bool), DvbError> {
    let mut a = MuxAnalyzer::new();
    let mut buf = vec![0u8; 188 * 348];
    let deadline = Instant::now() + read_time;
    loop {
        if a.is_complete() {
            return Ok((a, true));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok((a, false));
        }
        let slice = (deadline - now).min(Duration::from_millis(100));
        let n = tuner.read(&mut buf, slice)?;
        a.push(&buf[..n.min(buf.len())]);
    }
}

/// Scan: tune each mux, read its tables, follow the NIT actual.
pub fn scan<T: Tuner>(
    tuner: &mut T,
    initial: &[Tuning],
    opts: &ScanOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> ScanResult {
    let mut list: Vec<(Tuning, bool)> = Vec::new();
    let mut result = ScanResult::default();
    for t in initial {
        if !list.iter().any(|(x, _)| same_mux(x, t)) && list.len() < MAX_MUXES {
            list.push((*t, false));
        }
    }
    let mut i = 0;
    while i < list.len() {
        let (tuning, from_nit) = list[i];
        progress(Progress::Tuning {
            n: i + 1,
            total: list.len(),
            tuning: &tuning,
        });
        let mut report = MuxReport {
            tuning,
            from_nit,
            outcome: MuxOutcome::NoLock(String::new()),
            transport_stream_id: None,
            original_network_id: None,
            network_name: None,
            services: Vec::new(),
            missing: Vec::new(),
            stats: AnalyzerStats::default(),
        };
        match tuner.tune_lock(&tuning, opts.lock_timeout) {
            Ok((false, st)) => report.outcome = MuxOutcome::NoLock(st),
            Err(e) => report.outcome = MuxOutcome::Failed(e.to_string()),
            Ok((true, _)) => match read_mux(tuner, opts.read_time) {
                Err(e) => report.outcome = MuxOutcome::Failed(e.to_string()),
                Ok((mut a, complete)) => {
                    report.outcome = MuxOutcome::Locked { complete };
                    report.transport_stream_id = a.transport_stream_id();
                    report.original_network_id = a.original_network_id();
                    report.network_name = a.network_name();
                    report.services = a.services();
                    if opts.follow_nit {
                        let medium = mux_key(&tuning).0;
                        for m in a.nit_muxes() {
                            if mux_key(&m.tuning).0 != medium {
                                result.stats.nit_other_medium += 1;
                            } else if list.iter().any(|(x, _)| same_mux(x, &m.tuning)) {
                                result.stats.nit_duplicates += 1;
                            } else if list.len() >= MAX_MUXES {
                                result.stats.nit_over_limit += 1;
                            } else {
                                result.stats.nit_added += 1;
                                list.push((m.tuning, true));
                            }
                        }
                    }
                    report.missing = a.missing();
                    report.stats = a.stats_now();
                }
            },
        }
        progress(Progress::Done {
            n: i + 1,
            total: list.len(),
            report: &report,
        });
        result.muxes.push(report);
        i += 1;
    }
    result
}

/// "474.000 MHz DVB-T" / "11362.000 MHz H DVB-S2": a mux in a few words.
pub fn mux_label(t: &Tuning) -> String {
    let sys = match t {
        Tuning::DvbS(_) => "DVB-S",
        Tuning::DvbS2(_) => "DVB-S2",
        Tuning::DvbT(_) => "DVB-T",
        Tuning::DvbT2(_) => "DVB-T2",
        Tuning::DvbC(_) => "DVB-C",
    };
    match t {
        Tuning::DvbS(p) | Tuning::DvbS2(p) => {
            let pol = &p.polarization.dvbv5_name()[..1];
            format!(
                "{}.{:03} MHz {pol} {sys}",
                p.frequency_khz / 1000,
                p.frequency_khz % 1000
            )
        }
        Tuning::DvbT(p) | Tuning::DvbT2(p) => format!(
            "{}.{:03} MHz {sys}",
            p.frequency_hz / 1_000_000,
            p.frequency_hz / 1000 % 1000
        ),
        Tuning::DvbC(p) => format!(
            "{}.{:03} MHz {sys}",
            p.frequency_hz / 1_000_000,
            p.frequency_hz / 1000 % 1000
        ),
    }
}

/// One console line (≤ 80 columns) for a finished mux:
/// "mux 2/5 474.000 MHz DVB-T locked, 3 services".
pub fn progress_line(n: usize, total: usize, r: &MuxReport) -> String {
    let what = match &r.outcome {
        MuxOutcome::NoLock(_) => "no lock".to_string(),
        MuxOutcome::Locked { complete } => {
            let k = r.services.len();
            format!(
                "locked, {k} service{}{}",
                if k == 1 { "" } else { "s" },
                if *complete {
                    String::new()
                } else {
                    format!(" (no {})", r.missing.join("/"))
                }
            )
        }
        MuxOutcome::Failed(e) => format!("failed: {e}"),
    };
    let nit = if r.from_nit { " (NIT)" } else { "" };
    let line = format!("mux {n}/{total} {}{nit} {what}", mux_label(&r.tuning));
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::nit::NitTransportStream;
    use crate::ts::section::packetize;

    fn sample() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts")).unwrap()
    }

    fn ter_desc(freq_hz: u32) -> Vec<u8> {
        // 8 MHz, 64-QAM, HP 2/3, no hierarchy, guard 1/4, 8k.
        let mut d = vec![0x5A, 11];
        d.extend_from_slice(&(freq_hz / 10).to_be_bytes());
        d.extend_from_slice(&[0x1F, 0x81, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF]);
        d
    }

    fn nit_ts(freqs: &[u32]) -> Vec<u8> {
        let nit = NitRepr {
            table_id: table_id::NIT_ACTUAL,
            network_id: 0x3001,
            version: 1,
            section_number: 0,
            last_section_number: 0,
            network_descriptors: [&[0x40, 4][..], b"Test"].concat(),
            transport_streams: freqs
                .iter()
                .enumerate()
                .map(|(i, f)| NitTransportStream {
                    transport_stream_id: i as u16 + 1,
                    original_network_id: 0x20FA,
                    descriptors: ter_desc(*f),
                })
                .collect(),
        };
        let mut out = Vec::new();
        let mut cc = 0;
        packetize(&nit.emit().unwrap(), pid::NIT, &mut cc, &mut out);
        out
    }

    #[test]
    fn sample_mux_services_match_readme() {
        let data = sample();
        let mut a = MuxAnalyzer::new();
        // Odd chunk sizes: packets split across pushes.
        for chunk in data.chunks(1000) {
            a.push(chunk);
        }
        assert!(a.is_complete());
        assert_eq!(a.transport_stream_id(), Some(0x0C0B));
        assert_eq!(a.original_network_id(), Some(0x20FA));
        let s = a.services();
        let ids: Vec<u16> = s.iter().map(|x| x.service_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(s[1].name.as_deref(), Some("Demo Sport"));
        assert_eq!(s[1].provider.as_deref(), Some("capbox sports"));
        assert_eq!(s[1].pmt_pid, Some(0x1001));
        assert_eq!(s[1].video_pids(), [0x201]);
        assert_eq!(
            s[1].audio(),
            [
                (0x202, Some("fra".to_string())),
                (0x203, Some("eng".to_string()))
            ]
        );
        assert_eq!(s[2].audio(), [(0x302, Some("deu".to_string()))]);
        assert!(s.iter().all(|x| x.ca_system_ids.is_empty()));
        assert_eq!(a.stats.resync_bytes, 0);
        assert_eq!(a.stats.bad_tables, 0);
    }

    #[test]
    fn stops_early_when_complete() {
        let data = sample();
        let mut a = MuxAnalyzer::new();
        let mut used = 0;
        for chunk in data.chunks(188 * 10) {
            a.push(chunk);
            used += chunk.len();
            if a.is_complete() {
                break;
            }
        }
        assert!(a.is_complete());
        assert!(
            used < data.len() / 2,
            "needed {used} of {} bytes",
            data.len()
        );
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let data = sample();
        let mut a = MuxAnalyzer::new();
        a.push(&[0x12, 0x34, 0x56]);
        a.push(&data[..188 * 2000]);
        assert_eq!(a.stats.resync_bytes, 3);
        assert!(a.is_complete());
    }

    #[test]
    fn unparsable_nit_counts_as_seen() {
        // PAT naming a network PID, so the NIT is awaited.
        let pat = PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![crate::ts::pat::PatEntry {
                program_number: 0,
                pid: 0x10,
            }],
        };
        let sdt = crate::ts::section::build_long_section(0x42, 1, 0, 0, 0, &[0, 1, 0xFF]);
        // NIT whose transport_stream_loop_length runs past the section.
        let nit = crate::ts::section::build_long_section(
            0x40,
            1,
            0,
            0,
            0,
            &[0xF0, 0, 0xF0, 7, 0, 1, 0, 1, 0xF0, 9, 0],
        );
        let mut ts = Vec::new();
        let (mut c0, mut c1, mut c2) = (0, 0, 0);
        packetize(&pat.emit(), pid::PAT, &mut c0, &mut ts);
        packetize(&sdt, pid::SDT, &mut c1, &mut ts);
        let mut a = MuxAnalyzer::new();
        a.push(&ts);
        assert_eq!(a.missing(), ["NIT"]);
        assert!(!a.is_complete());
        let mut n = Vec::new();
        packetize(&nit, pid::NIT, &mut c2, &mut n);
        a.push(&n);
        assert!(a.is_complete());
        assert_eq!(a.stats.bad_tables, 1);
        assert_eq!(a.stats.last_bad_table_id, Some(0x40));
        assert!(a.nit_muxes().is_empty());
    }

    #[test]
    fn delivery_descriptor_to_tuning() {
        let d = ter_desc(506_000_000);
        let desc = crate::ts::descriptor::Descriptors::new(&d).next().unwrap();
        let t = tuning_from_delivery(&DeliverySystem::parse(&desc).unwrap()).unwrap();
        assert_eq!(
            t,
            Tuning::from_args("dvbt 506000000 8MHz modulation=qam64 code_rate_hp=2/3 code_rate_lp=none guard=1/4 mode=8k hierarchy=none").unwrap()
        );
        assert!(same_mux(
            &t,
            &Tuning::from_args("dvbt 506166000 8MHz").unwrap()
        ));
        assert!(!same_mux(
            &t,
            &Tuning::from_args("dvbt 514000000 8MHz").unwrap()
        ));
    }

    /// Serves a TS per frequency (Hz); other frequencies do not lock.
    struct FakeTuner {
        muxes: Vec<(u32, Vec<u8>)>,
        current: Option<usize>,
        pos: usize,
        tuned: Vec<u32>,
    }

    impl Tuner for FakeTuner {
        fn tune_lock(&mut self, t: &Tuning, _: Duration) -> Result<(bool, String), DvbError> {
            let Tuning::DvbT(p) = t else { panic!("{t:?}") };
            self.tuned.push(p.frequency_hz);
            self.current = self.muxes.iter().position(|(f, _)| *f == p.frequency_hz);
            self.pos = 0;
            Ok((self.current.is_some(), "no signal".into()))
        }
        fn read(&mut self, buf: &mut [u8], _: Duration) -> Result<usize, DvbError> {
            let Some(i) = self.current else { return Ok(0) };
            let data = &self.muxes[i].1;
            let n = buf.len().min(data.len() - self.pos).min(188 * 7);
            buf[..n].copy_from_slice(&data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn scan_follows_nit_and_reports_no_lock() {
        // Mux 474 MHz carries a NIT naming itself (dedupe, 474.0xx MHz) and
        // 506 MHz (new); 506 MHz carries the plain sample.
        let mut m474 = nit_ts(&[474_010_000, 506_000_000]);
        m474.extend_from_slice(&sample()[..188 * 3000]);
        let mut tuner = FakeTuner {
            muxes: vec![(474_000_000, m474), (506_000_000, sample())],
            current: None,
            pos: 0,
            tuned: Vec::new(),
        };
        let initial = [
            Tuning::from_args("dvbt 474000000 8MHz").unwrap(),
            Tuning::from_args("dvbt 490000000 8MHz").unwrap(),
        ];
        let opts = ScanOptions {
            read_time: Duration::from_secs(30),
            ..ScanOptions::default()
        };
        let mut lines = Vec::new();
        let r = scan(&mut tuner, &initial, &opts, |p| {
            if let Progress::Done { n, total, report } = p {
                lines.push(progress_line(n, total, report));
            }
        });
        assert_eq!(tuner.tuned, [474_000_000, 490_000_000, 506_000_000]);
        assert_eq!(
            lines,
            [
                "mux 1/3 474.000 MHz DVB-T locked, 3 services",
                "mux 2/3 490.000 MHz DVB-T no lock",
                "mux 3/3 506.000 MHz DVB-T (NIT) locked, 3 services",
            ]
        );
        assert_eq!(r.stats.nit_added, 1);
        assert_eq!(r.stats.nit_duplicates, 1);
        assert_eq!(r.muxes[0].network_name.as_deref(), Some("Test"));
        assert!(r.muxes[2].from_nit);
        // Same onid + service ids on both muxes: listed once.
        let entries = r.channel_entries(None);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].name.as_deref(), Some("Demo News"));
        assert_eq!(entries[0].audio_pids, [0x102]);
        let text = crate::dvb::channels::write(&entries);
        let back = crate::dvb::channels::parse("scan", text.as_bytes()).unwrap();
        assert_eq!(back, entries);
        let snippet = crate::dvb::channels::capbox_config_snippet(&entries);
        assert!(snippet.contains("name = \"demo-sport\""), "{snippet}");
        assert!(snippet.contains("program = 2"));
    }

    #[test]
    fn satellite_delivery_to_tuning() {
        let mut a = MuxAnalyzer::new();
        let mut ts = nit_ts(&[0]);
        // satellite descriptor: 11.362 GHz, 19.2E, H, DVB-S2 8PSK, 22000, 3/4
        let sat = NitRepr {
            table_id: table_id::NIT_ACTUAL,
            network_id: 1,
            version: 2,
            section_number: 0,
            last_section_number: 0,
            network_descriptors: vec![],
            transport_streams: vec![NitTransportStream {
                transport_stream_id: 9,
                original_network_id: 1,
                descriptors: vec![
                    0x43, 11, 0x01, 0x13, 0x62, 0x00, 0x01, 0x92, 0x86, 0x02, 0x20, 0x00, 0x03,
                ],
            }],
        };
        let mut cc = 5;
        packetize(&sat.emit().unwrap(), pid::NIT, &mut cc, &mut ts);
        a.push(&ts);
        let muxes = a.nit_muxes();
        assert_eq!(muxes.len(), 1);
        let Tuning::DvbS2(p) = muxes[0].tuning else {
            panic!("{:?}", muxes[0])
        };
        assert_eq!(
            (p.frequency_khz, p.symbol_rate, p.polarization),
            (11_362_000, 22_000_000, Polarization::Horizontal)
        );
        // The later NIT actual (another network_id) replaced the first.
        assert_eq!(a.stats.nit_unusable, 0);
    }
}
