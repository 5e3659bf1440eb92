//! ECM/EMM routing for one service of a mux.
//!
//! Owns: finding the service's CA signalling (PAT → its PMT → the
//! CA_descriptors at program and elementary-stream level: ECM PID per
//! CA_system_id; CAT → EMM PID per CA_system_id), choosing one CA system
//! (the configured preference, else the first descriptor), reassembling
//! the ECM and EMM sections (private sections, no CRC for table_id
//! 0x80..=0x8F) and deciding which of them are worth a card's time.
//!
//! Promises: an ECM is handed out only when its bytes differ from the last
//! one handed out (a broadcast repeats the same ECM every ~100 ms; only the
//! change at a crypto period — table_id toggling 0x80/0x81 — or a new
//! period's words is news); identical EMMs seen within `EMM_DEDUP_WINDOW`
//! are handed out once (a small fixed cache); both are rate limited per
//! second of the `now` the caller passes (a token bucket, so the caller's
//! clock decides: a test may feed a file faster than real time with a
//! clock derived from the stream). Every section not handed out lands in
//! exactly one counter of `RouterStats`. Memory is bounded: four
//! assemblers (one maximal section each), the last PMT/CAT/ECM bytes and a
//! fixed EMM cache. Never panics on any bytes.
//!
//! Not here: talking to cards (`card_session`), address filtering for CA
//! systems other than testca (the card driver knows its own EMM format;
//! for testca, `RouterConfig::emm_address` filters before the card).

use crate::ca::testca;
use crate::ts::cat::CatRepr;
use crate::ts::descriptor::CaDescriptor;
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pat::PatRepr;
use crate::ts::pmt::PmtRepr;
use crate::ts::section::{Assembler, AssemblerStats, Section};
use crate::ts::{pid, table_id};
use std::time::{Duration, Instant};

/// ECM table_ids (ETSI TS 100 289: 0x80 and 0x81, the parity on air).
pub const ECM_TABLE_IDS: std::ops::RangeInclusive<u8> = 0x80..=0x81;
/// EMM table_ids (CA-system private: 0x82..=0x8F).
pub const EMM_TABLE_IDS: std::ops::RangeInclusive<u8> = 0x82..=0x8F;
/// An identical EMM seen again within this window is a repeat; after it,
/// it goes to the card again (cards miss some, and entitlements renew only
/// if an EMM gets through).
pub const EMM_DEDUP_WINDOW: Duration = Duration::from_secs(60);
/// Number of recent EMMs remembered for de-duplication.
pub const EMM_CACHE: usize = 32;

/// What to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// program_number (service_id) of the service.
    pub program_number: u16,
    /// CA_system_ids in order of preference (configured `caid`, or those
    /// the cards can serve). Empty: the first CA_descriptor of the PMT.
    pub caids: Vec<u16>,
    /// ECMs handed out per second at most (0: no limit).
    pub max_ecms_per_s: u32,
    /// EMMs handed out per second at most (0: no limit).
    pub max_emms_per_s: u32,
    /// testca only: the card's unique address; EMMs for other addresses
    /// are dropped here (counted) instead of queueing behind ECMs.
    pub emm_address: Option<u32>,
}

impl RouterConfig {
    /// For a source with `ca = "card"` and its optional `caid`.
    pub fn from_source(program_number: u16, ca: &crate::config::CaSourceConfig) -> RouterConfig {
        let caid = match ca {
            crate::config::CaSourceConfig::Card { caid } => *caid,
            crate::config::CaSourceConfig::Dvbapi => None,
        };
        RouterConfig {
            caids: caid.iter().copied().collect(),
            ..RouterConfig::new(program_number)
        }
    }

    pub fn new(program_number: u16) -> RouterConfig {
        RouterConfig {
            program_number,
            caids: Vec::new(),
            max_ecms_per_s: 10,
            max_emms_per_s: 50,
            emm_address: None,
        }
    }
}

/// A section worth sending to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed<'a> {
    Ecm {
        caid: u16,
        pid: u16,
        section: &'a [u8],
    },
    Emm {
        caid: u16,
        pid: u16,
        section: &'a [u8],
    },
}

/// Counters; every ECM/EMM section reassembled lands in exactly one of
/// forwarded / repeats / duplicates / rate_limited / other_table /
/// other_address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    pub pmt_updates: u64,
    pub cat_updates: u64,
    /// PAT/PMT/CAT sections that did not parse.
    pub psi_errors: u64,
    /// Packets on a PID of interest that are not valid TS packets.
    pub malformed_packets: u64,
    /// Bytes after the last whole 188-byte packet of a `feed` call.
    pub partial_bytes: u64,
    pub ecms_seen: u64,
    pub ecms_forwarded: u64,
    /// The same ECM as the last one forwarded.
    pub ecm_repeats: u64,
    pub ecms_rate_limited: u64,
    /// Sections on the ECM PID whose table_id is not 0x80/0x81.
    pub ecm_other_table: u64,
    pub emms_seen: u64,
    pub emms_forwarded: u64,
    pub emm_duplicates: u64,
    pub emms_rate_limited: u64,
    pub emm_other_table: u64,
    /// testca EMMs for another card address.
    pub emm_other_address: u64,
    /// Sections lost in reassembly (CC gaps, bad pointer_field, bad header)
    /// on the PAT, PMT, CAT, ECM and EMM PIDs of the current choice.
    pub incomplete_sections: u64,
}

/// Token bucket: `per_s` tokens per second, at most `per_s` saved up.
#[derive(Debug)]
struct Bucket {
    per_s: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(per_s: u32) -> Bucket {
        Bucket {
            per_s,
            tokens: 0.0,
            last: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if self.per_s == 0 {
            return true;
        }
        let cap = self.per_s as f64;
        self.tokens = match self.last {
            None => cap,
            Some(l) => {
                (self.tokens + now.saturating_duration_since(l).as_secs_f64() * cap).min(cap)
            }
        };
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// FNV-1a: EMM identity for the de-duplication cache (not security).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Everything but the assemblers, so a section callback can borrow it
/// while an assembler is borrowed.
#[derive(Debug)]
struct Core {
    cfg: RouterConfig,
    stats: RouterStats,
    pmt_pid: Option<u16>,
    last_pmt: Vec<u8>,
    last_cat: Vec<u8>,
    /// (CA_system_id, ECM PID) of the PMT, program level first, in order.
    ecm_list: Vec<(u16, u16)>,
    /// (CA_system_id, EMM PID) of the CAT, in order.
    emm_list: Vec<(u16, u16)>,
    ecm: Option<(u16, u16)>,
    emm: Option<(u16, u16)>,
    last_ecm: Vec<u8>,
    emm_cache: [(u64, Option<Instant>); EMM_CACHE],
    emm_cache_next: usize,
    ecm_bucket: Bucket,
    emm_bucket: Bucket,
    /// Set when the PMT or PAT changed which PIDs matter.
    reset_pmt: bool,
    reset_ecm: bool,
    reset_emm: bool,
}

/// Routes the ECMs and EMMs of one service. Feed it the whole mux.
#[derive(Debug)]
pub struct EcmRouter {
    core: Core,
    pat_asm: Assembler,
    pmt_asm: Assembler,
    cat_asm: Assembler,
    ecm_asm: Assembler,
    emm_asm: Assembler,
    /// Reassembly losses of assemblers already reset.
    lost_before: u64,
}

fn choose(list: &[(u16, u16)], prefs: &[u16]) -> Option<(u16, u16)> {
    if prefs.is_empty() {
        return list.first().copied();
    }
    prefs
        .iter()
        .find_map(|c| list.iter().find(|(id, _)| id == c).copied())
}

fn lost(s: &AssemblerStats) -> u64 {
    s.incomplete + s.malformed + s.bad_pointer + s.crc_errors
}

impl EcmRouter {
    pub fn new(cfg: RouterConfig) -> EcmRouter {
        let ecm_bucket = Bucket::new(cfg.max_ecms_per_s);
        let emm_bucket = Bucket::new(cfg.max_emms_per_s);
        EcmRouter {
            core: Core {
                cfg,
                stats: RouterStats::default(),
                pmt_pid: None,
                last_pmt: Vec::new(),
                last_cat: Vec::new(),
                ecm_list: Vec::new(),
                emm_list: Vec::new(),
                ecm: None,
                emm: None,
                last_ecm: Vec::new(),
                emm_cache: [(0, None); EMM_CACHE],
                emm_cache_next: 0,
                ecm_bucket,
                emm_bucket,
                reset_pmt: false,
                reset_ecm: false,
                reset_emm: false,
            },
            pat_asm: Assembler::new(),
            pmt_asm: Assembler::new(),
            cat_asm: Assembler::new(),
            ecm_asm: Assembler::new(),
            emm_asm: Assembler::new(),
            lost_before: 0,
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.core.cfg
    }

    pub fn stats(&self) -> RouterStats {
        let mut s = self.core.stats;
        s.incomplete_sections = self.lost_before
            + [
                &self.pat_asm,
                &self.pmt_asm,
                &self.cat_asm,
                &self.ecm_asm,
                &self.emm_asm,
            ]
            .iter()
            .map(|a| lost(&a.stats))
            .sum::<u64>();
        s
    }

    /// The PMT PID of the service, once the PAT named it.
    pub fn pmt_pid(&self) -> Option<u16> {
        self.core.pmt_pid
    }

    /// The chosen (CA_system_id, ECM PID).
    pub fn ecm_choice(&self) -> Option<(u16, u16)> {
        self.core.ecm
    }

    /// The chosen (CA_system_id, EMM PID).
    pub fn emm_choice(&self) -> Option<(u16, u16)> {
        self.core.emm
    }

    /// Every (CA_system_id, ECM PID) the PMT announces (for "no card for
    /// CA system …" messages).
    pub fn ca_systems(&self) -> &[(u16, u16)] {
        &self.core.ecm_list
    }

    /// Whether a PMT for the service has been seen.
    pub fn has_pmt(&self) -> bool {
        !self.core.last_pmt.is_empty()
    }

    /// Feed whole 188-byte packets of the mux; `out` gets each section to
    /// send to a card. Trailing bytes short of a packet are counted and
    /// ignored.
    pub fn feed(&mut self, packets: &[u8], now: Instant, mut out: impl FnMut(Routed<'_>)) {
        let chunks = packets.chunks_exact(PACKET_SIZE);
        self.core.stats.partial_bytes += chunks.remainder().len() as u64;
        for c in chunks {
            let p = (((c[1] & 0x1F) as u16) << 8) | c[2] as u16;
            let core = &mut self.core;
            let asm = if p == pid::PAT {
                &mut self.pat_asm
            } else if p == pid::CAT {
                &mut self.cat_asm
            } else if Some(p) == core.pmt_pid {
                &mut self.pmt_asm
            } else if Some(p) == core.ecm.map(|e| e.1) {
                &mut self.ecm_asm
            } else if Some(p) == core.emm.map(|e| e.1) {
                &mut self.emm_asm
            } else {
                continue;
            };
            let Ok(pkt) = Packet::new_checked(c) else {
                core.stats.malformed_packets += 1;
                continue;
            };
            asm.push(&pkt, |s| core.section(p, s, now, &mut out));
            // A PAT or PMT change re-targets assemblers: reset them outside
            // the callback (they are borrowed inside).
            if core.reset_pmt {
                core.reset_pmt = false;
                self.lost_before += lost(&self.pmt_asm.stats);
                self.pmt_asm = Assembler::new();
            }
            if core.reset_ecm {
                core.reset_ecm = false;
                self.lost_before += lost(&self.ecm_asm.stats);
                self.ecm_asm = Assembler::new();
            }
            if core.reset_emm {
                core.reset_emm = false;
                self.lost_before += lost(&self.emm_asm.stats);
                self.emm_asm = Assembler::new();
            }
        }
    }
}

impl Core {
    fn section(&mut self, p: u16, s: &[u8], now: Instant, out: &mut impl FnMut(Routed<'_>)) {
        // One PID may be several things at once in a broken mux (an ECM
        // PID equal to the PMT PID): check each role.
        if p == pid::PAT {
            self.pat(s);
            return;
        }
        if p == pid::CAT {
            self.cat(s);
            return;
        }
        if Some(p) == self.pmt_pid && s.first() == Some(&table_id::PMT) {
            self.pmt(s);
            return;
        }
        if let Some((caid, epid)) = self.ecm {
            if p == epid {
                self.ecm_section(caid, epid, s, now, out);
                return;
            }
        }
        if let Some((caid, mpid)) = self.emm {
            if p == mpid {
                self.emm_section(caid, mpid, s, now, out);
            }
        }
    }

    fn pat(&mut self, s: &[u8]) {
        let Ok(sec) = Section::new_checked(s) else {
            self.stats.psi_errors += 1;
            return;
        };
        if sec.table_id() != table_id::PAT || !sec.current_next() {
            return;
        }
        let Ok(pat) = PatRepr::parse(&sec) else {
            self.stats.psi_errors += 1;
            return;
        };
        let found = pat
            .programs()
            .find(|e| e.program_number == self.cfg.program_number)
            .map(|e| e.pid);
        let whole_table = pat.section_number == 0 && pat.last_section_number == 0;
        if found.is_none() && !whole_table {
            return; // perhaps in another section of the PAT
        }
        if found != self.pmt_pid {
            self.pmt_pid = found;
            self.last_pmt.clear();
            self.reset_pmt = true;
            if found.is_none() {
                self.set_ecm_list(Vec::new());
            }
        }
    }

    fn pmt(&mut self, s: &[u8]) {
        if s == self.last_pmt.as_slice() {
            return;
        }
        let Ok(sec) = Section::new_checked(s) else {
            self.stats.psi_errors += 1;
            return;
        };
        let Ok(pmt) = PmtRepr::parse(&sec) else {
            self.stats.psi_errors += 1;
            return;
        };
        if pmt.program_number != self.cfg.program_number || !sec.current_next() {
            return; // another program's PMT on a shared PID
        }
        self.stats.pmt_updates += 1;
        self.last_pmt.clear();
        self.last_pmt.extend_from_slice(s);
        let mut list: Vec<(u16, u16)> = Vec::new();
        let program = pmt.program_info().filter_map(|d| CaDescriptor::parse(&d));
        let es = pmt.streams.iter().flat_map(|st| st.ca_descriptors());
        for c in program.chain(es) {
            let e = (c.ca_system_id, c.ca_pid);
            // A PMT has at most a few hundred descriptors (1021 bytes).
            if !list.contains(&e) {
                list.push(e);
            }
        }
        self.set_ecm_list(list);
    }

    fn set_ecm_list(&mut self, list: Vec<(u16, u16)>) {
        let choice = choose(&list, &self.cfg.caids);
        self.ecm_list = list;
        if choice != self.ecm {
            self.ecm = choice;
            self.last_ecm.clear();
            self.reset_ecm = true;
            self.choose_emm();
        }
    }

    fn cat(&mut self, s: &[u8]) {
        if s == self.last_cat.as_slice() {
            return;
        }
        let Ok(sec) = Section::new_checked(s) else {
            self.stats.psi_errors += 1;
            return;
        };
        if sec.table_id() != table_id::CAT || !sec.current_next() {
            return;
        }
        let Ok(cat) = CatRepr::parse(&sec) else {
            self.stats.psi_errors += 1;
            return;
        };
        self.stats.cat_updates += 1;
        self.last_cat.clear();
        self.last_cat.extend_from_slice(s);
        let mut list: Vec<(u16, u16)> = Vec::new();
        for c in cat.ca_descriptors() {
            let e = (c.ca_system_id, c.ca_pid);
            if !list.contains(&e) {
                list.push(e);
            }
        }
        self.emm_list = list;
        self.choose_emm();
    }

    /// The EMM PID of the CA system whose ECMs we route; before a PMT
    /// names one, the preferred CA system's.
    fn choose_emm(&mut self) {
        let choice = match self.ecm {
            Some((caid, _)) => self.emm_list.iter().find(|e| e.0 == caid).copied(),
            None if !self.cfg.caids.is_empty() => choose(&self.emm_list, &self.cfg.caids),
            None => None,
        };
        if choice != self.emm {
            self.emm = choice;
            self.reset_emm = true;
        }
    }

    fn ecm_section(
        &mut self,
        caid: u16,
        epid: u16,
        s: &[u8],
        now: Instant,
        out: &mut impl FnMut(Routed<'_>),
    ) {
        let st = &mut self.stats;
        if !s.first().is_some_and(|t| ECM_TABLE_IDS.contains(t)) {
            st.ecm_other_table += 1;
            return;
        }
        st.ecms_seen += 1;
        if s == self.last_ecm.as_slice() {
            st.ecm_repeats += 1;
            return;
        }
        if !self.ecm_bucket.take(now) {
            // Not remembered as sent: its next repetition gets another try.
            st.ecms_rate_limited += 1;
            return;
        }
        st.ecms_forwarded += 1;
        self.last_ecm.clear();
        self.last_ecm.extend_from_slice(s);
        out(Routed::Ecm {
            caid,
            pid: epid,
            section: s,
        });
    }

    fn emm_section(
        &mut self,
        caid: u16,
        mpid: u16,
        s: &[u8],
        now: Instant,
        out: &mut impl FnMut(Routed<'_>),
    ) {
        let st = &mut self.stats;
        let Some(&tid) = s.first() else {
            st.emm_other_table += 1;
            return;
        };
        if !EMM_TABLE_IDS.contains(&tid) {
            st.emm_other_table += 1;
            return;
        }
        st.emms_seen += 1;
        if caid == testca::CAID && tid == testca::EMM_UNIQUE {
            if let Some(addr) = self.cfg.emm_address {
                if testca::emm_address(s) != Some(addr) {
                    st.emm_other_address += 1;
                    return;
                }
            }
        }
        let h = fnv1a(s);
        let recent = self.emm_cache.iter().any(|&(ch, at)| {
            ch == h && at.is_some_and(|t| now.saturating_duration_since(t) < EMM_DEDUP_WINDOW)
        });
        if recent {
            st.emm_duplicates += 1;
            return;
        }
        if !self.emm_bucket.take(now) {
            st.emms_rate_limited += 1;
            return;
        }
        st.emms_forwarded += 1;
        self.emm_cache[self.emm_cache_next] = (h, Some(now));
        self.emm_cache_next = (self.emm_cache_next + 1) % EMM_CACHE;
        out(Routed::Emm {
            caid,
            pid: mpid,
            section: s,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::section::packetize;

    const PMT_PID: u16 = 0x100;
    const ECM_PID: u16 = 0x1F0;
    const EMM_PID: u16 = 0x1F8;

    fn pat(cc: &mut u8) -> Vec<u8> {
        let pat = PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![crate::ts::pat::PatEntry {
                program_number: 7,
                pid: PMT_PID,
            }],
        };
        let mut v = Vec::new();
        packetize(&pat.emit(), pid::PAT, cc, &mut v);
        v
    }

    fn ca(caid: u16, pid: u16) -> Vec<u8> {
        let mut d = vec![0x09, 4];
        d.extend_from_slice(&caid.to_be_bytes());
        d.extend_from_slice(&(0xE000 | pid).to_be_bytes());
        d
    }

    fn pmt(cc: &mut u8, program_info: Vec<u8>, es: Vec<u8>) -> Vec<u8> {
        let pmt = PmtRepr {
            program_number: 7,
            version: 0,
            pcr_pid: 0x101,
            program_info,
            streams: vec![crate::ts::pmt::PmtStream {
                stream_type: 0x1B,
                elementary_pid: 0x101,
                descriptors: es,
            }],
        };
        let mut v = Vec::new();
        packetize(&pmt.emit(), PMT_PID, cc, &mut v);
        v
    }

    fn cat(cc: &mut u8, descriptors: Vec<u8>) -> Vec<u8> {
        let cat = CatRepr {
            version: 0,
            section_number: 0,
            last_section_number: 0,
            descriptors,
        };
        let mut v = Vec::new();
        packetize(&cat.emit(), pid::CAT, cc, &mut v);
        v
    }

    fn private(tid: u8, body: &[u8], p: u16, cc: &mut u8) -> Vec<u8> {
        let mut s = vec![tid, 0x70 | (body.len() >> 8) as u8, body.len() as u8];
        s.extend_from_slice(body);
        let mut v = Vec::new();
        packetize(&s, p, cc, &mut v);
        v
    }

    fn collect(r: &mut EcmRouter, b: &[u8], now: Instant) -> Vec<(bool, u16, u16, Vec<u8>)> {
        let mut v = Vec::new();
        r.feed(b, now, |e| match e {
            Routed::Ecm { caid, pid, section } => v.push((true, caid, pid, section.to_vec())),
            Routed::Emm { caid, pid, section } => v.push((false, caid, pid, section.to_vec())),
        });
        v
    }

    #[test]
    fn ecm_changes_only_and_rate_limit() {
        let mut cc = [0u8; 4];
        let mut r = EcmRouter::new(RouterConfig {
            max_ecms_per_s: 2,
            ..RouterConfig::new(7)
        });
        let t0 = Instant::now();
        let mut b = pat(&mut cc[0]);
        b.extend(pmt(&mut cc[1], ca(0x0B00, 0x1E0), ca(0xFFFE, ECM_PID)));
        assert!(collect(&mut r, &b, t0).is_empty());
        // No preference: the program-level descriptor comes first.
        assert_eq!(r.ecm_choice(), Some((0x0B00, 0x1E0)));
        let mut r = EcmRouter::new(RouterConfig {
            caids: vec![0xFFFE],
            max_ecms_per_s: 2,
            ..RouterConfig::new(7)
        });
        assert!(collect(&mut r, &b, t0).is_empty());
        assert_eq!(r.ecm_choice(), Some((0xFFFE, ECM_PID)));
        let e0 = private(0x80, &[1; 20], ECM_PID, &mut cc[2]);
        let e0b = private(0x80, &[1; 20], ECM_PID, &mut cc[2]);
        let e1 = private(0x81, &[2; 20], ECM_PID, &mut cc[2]);
        let got = collect(&mut r, &[e0, e0b].concat(), t0);
        assert_eq!(got.len(), 1);
        assert!(got[0].0);
        assert_eq!(got[0].1, 0xFFFE);
        assert_eq!(r.stats().ecm_repeats, 1);
        assert_eq!(collect(&mut r, &e1, t0).len(), 1);
        // Third change in the same instant: the bucket (2/s) is empty.
        let e2 = private(0x80, &[3; 20], ECM_PID, &mut cc[2]);
        assert!(collect(&mut r, &e2, t0).is_empty());
        assert_eq!(r.stats().ecms_rate_limited, 1);
        // Its repetition half a second later goes through.
        let e2b = private(0x80, &[3; 20], ECM_PID, &mut cc[2]);
        assert_eq!(
            collect(&mut r, &e2b, t0 + Duration::from_millis(500)).len(),
            1
        );
        let junk = private(0x4E, &[0; 10], ECM_PID, &mut cc[2]);
        assert!(collect(&mut r, &junk, t0).is_empty());
        let s = r.stats();
        assert_eq!(s.ecm_other_table, 1);
        assert_eq!(
            s.ecms_seen,
            s.ecms_forwarded + s.ecm_repeats + s.ecms_rate_limited
        );
    }

    #[test]
    fn emm_pid_from_cat_dedup_and_address() {
        let mut cc = [0u8; 4];
        let mut r = EcmRouter::new(RouterConfig {
            caids: vec![testca::CAID],
            emm_address: Some(0xC0FFEE01),
            ..RouterConfig::new(7)
        });
        let t0 = Instant::now();
        let mut b = cat(
            &mut cc[0],
            [ca(0x0B00, 0x1F7), ca(testca::CAID, EMM_PID)].concat(),
        );
        b.extend(pat(&mut cc[1]));
        b.extend(pmt(&mut cc[2], Vec::new(), ca(testca::CAID, ECM_PID)));
        assert!(collect(&mut r, &b, t0).is_empty());
        assert_eq!(r.emm_choice(), Some((testca::CAID, EMM_PID)));
        let key = [5u8; 16];
        let mine = testca::build_emm(
            &key,
            &testca::Emm {
                key_index: 0,
                address: 0xC0FFEE01,
                entitled_until_day: 30_000,
            },
        );
        let other = testca::build_emm(
            &key,
            &testca::Emm {
                key_index: 0,
                address: 0xC0FFEE02,
                entitled_until_day: 30_000,
            },
        );
        let mut v = Vec::new();
        for s in [&mine, &other, &mine] {
            packetize(s, EMM_PID, &mut cc[3], &mut v);
        }
        let got = collect(&mut r, &v, t0);
        assert_eq!(got, vec![(false, testca::CAID, EMM_PID, mine.clone())]);
        let s = r.stats();
        assert_eq!((s.emm_other_address, s.emm_duplicates), (1, 1));
        // After the window the same EMM goes to the card again.
        let mut v = Vec::new();
        packetize(&mine, EMM_PID, &mut cc[3], &mut v);
        assert_eq!(collect(&mut r, &v, t0 + EMM_DEDUP_WINDOW).len(), 1);
    }

    #[test]
    fn pmt_change_retargets_ecm_pid() {
        let mut cc = [0u8; 4];
        let mut r = EcmRouter::new(RouterConfig::new(7));
        let t0 = Instant::now();
        let mut b = pat(&mut cc[0]);
        b.extend(pmt(&mut cc[1], ca(0x0100, 0x1E0), Vec::new()));
        collect(&mut r, &b, t0);
        assert_eq!(r.ecm_choice(), Some((0x0100, 0x1E0)));
        let b = pmt(&mut cc[1], Vec::new(), Vec::new());
        collect(&mut r, &b, t0);
        assert_eq!(r.ecm_choice(), None);
        assert_eq!(r.stats().pmt_updates, 2);
    }

    /// Random bytes, random packets with sync bytes on the interesting PIDs,
    /// and random sections: never a panic, memory bounded by construction.
    #[test]
    fn garbage_never_panics() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut r = EcmRouter::new(RouterConfig {
            caids: vec![],
            ..RouterConfig::new(7)
        });
        let t0 = Instant::now();
        let mut cc = [0u8; 4];
        let mut setup = pat(&mut cc[0]);
        setup.extend(pmt(&mut cc[1], ca(0x0500, ECM_PID), Vec::new()));
        setup.extend(cat(&mut cc[2], ca(0x0500, EMM_PID)));
        r.feed(&setup, t0, |_| {});
        let mut corpus = setup.clone();
        for i in 0..8u8 {
            corpus.extend(private(0x80 | (i & 1), &[i; 40], ECM_PID, &mut cc[3]));
            corpus.extend(private(0x82 + (i & 3), &[i; 300], EMM_PID, &mut cc[3]));
        }
        let pids = [0u16, 1, PMT_PID, ECM_PID, EMM_PID];
        let mut n = 0u64;
        for round in 0..3000 {
            let mut buf = vec![0u8; 188 * 4 + (rnd() % 3) as usize * 61];
            for b in buf.iter_mut() {
                *b = rnd() as u8;
            }
            match round % 3 {
                0 => {
                    for c in buf.chunks_exact_mut(188) {
                        let p = pids[(rnd() % 5) as usize];
                        c[0] = 0x47;
                        c[1] = (c[1] & 0xE0) | (p >> 8) as u8;
                        c[2] = p as u8;
                    }
                }
                1 => {
                    // Valid packets with a few bytes flipped (or none).
                    for c in buf.chunks_exact_mut(188) {
                        let k = (rnd() % (corpus.len() as u64 / 188)) as usize;
                        c.copy_from_slice(&corpus[k * 188..][..188]);
                        for _ in 0..rnd() % 3 {
                            c[(rnd() % 188) as usize] = rnd() as u8;
                        }
                    }
                }
                _ => {}
            }
            if round % 500 == 0 {
                r.feed(&setup, t0, |_| {});
            }
            r.feed(&buf, t0 + Duration::from_millis(round), |_| n += 1);
        }
        let s = r.stats();
        assert!(s.partial_bytes > 0);
        assert_eq!(
            s.ecms_seen,
            s.ecms_forwarded + s.ecm_repeats + s.ecms_rate_limited
        );
        assert_eq!(
            s.emms_seen,
            s.emms_forwarded + s.emm_duplicates + s.emms_rate_limited + s.emm_other_address
        );
        assert_eq!(n, s.ecms_forwarded + s.emms_forwarded);
        assert!(s.ecms_seen > 0 && s.emms_seen > 0, "{s:?}");
    }
}
