//! The testca scrambler: turns a clear transport stream into one scrambled
//! the way a real head-end with capbox's test CA system would, for tests
//! and for `examples/testca_scramble.rs`.
//!
//! Owns: for each chosen service (all services of the PAT by default),
//! DVB-CSA scrambling of every elementary-stream packet with a control
//! word per crypto period (stream time by the PCR of the first PID that
//! carries one; period k is even when k is even), a PMT rewritten with a
//! CA_descriptor (CA_system_id 0xFFFE, the service's ECM PID) in
//! program_info, testca ECMs on that PID (table_id 0x80/0x81 = the parity
//! on air; the word of period k in its slot and the word of period k+1 in
//! the other, so the next word is announced a whole period before it goes
//! on air; sent at each period change and repeated every `ecm_repeat_ms`),
//! a CAT naming the EMM PID (replacing any CAT of the input) and testca
//! EMMs for the given card addresses. It writes a key log: for each
//! (service, period), the word used and the range of output packets it
//! scrambled.
//!
//! Promises: deterministic: the same input, config and seed give the same
//! bytes (control words come from `control_word(seed, service, period)`);
//! every other packet is copied unchanged, in order (inserted packets only
//! add to the stream: an ES PID's packets keep their order and count);
//! malformed input packets are copied as they are and counted.
//! Scrambling is per service with its own words; all services change
//! period together.

use crate::ca::csa::{self, Keys, Outcome, Parity};
use crate::ca::testca;
use crate::ts::cat::CatRepr;
use crate::ts::packet::{pcr_delta, Packet, PACKET_SIZE};
use crate::ts::pat::PatRepr;
use crate::ts::pmt::PmtRepr;
use crate::ts::section::{packetize, Assembler, Section};
use crate::ts::{pid, table_id};
use std::collections::HashMap;

/// How to scramble.
#[derive(Clone)]
pub struct ScramblerConfig {
    /// testca card key the ECMs and EMMs are encrypted with.
    pub card_key: [u8; 16],
    pub key_index: u8,
    /// program_numbers to scramble; empty: every program of the PAT.
    pub services: Vec<u16>,
    /// Crypto period, in ms of stream time (PCR).
    pub period_ms: u64,
    /// ECM repetition, in ms of stream time.
    pub ecm_repeat_ms: u64,
    /// true (default, as real systems do): the ECM of period k carries the
    /// word of period k+1 in the other slot, a whole period ahead. false:
    /// it carries the word of period k-1 there, so a receiver learns each
    /// word only from the ECM sent at its own parity switch — the late
    /// answer case of key-change tests.
    pub announce_next: bool,
    /// ECM PID of the i-th scrambled service (PAT order) is base + i.
    pub ecm_pid_base: u16,
    pub emm_pid: u16,
    /// Cards (testca unique addresses) that get an EMM.
    pub emm_addresses: Vec<u32>,
    pub entitled_until_day: u32,
    /// EMM and CAT repetition, in ms of stream time.
    pub emm_repeat_ms: u64,
    pub cat_repeat_ms: u64,
    /// Day number written into ECMs (the card checks its entitlement
    /// against it).
    pub access_day: u32,
    pub seed: u64,
}

impl std::fmt::Debug for ScramblerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramblerConfig")
            .field("services", &self.services)
            .field("period_ms", &self.period_ms)
            .finish_non_exhaustive()
    }
}

impl ScramblerConfig {
    pub fn new(card_key: [u8; 16], seed: u64) -> ScramblerConfig {
        ScramblerConfig {
            card_key,
            key_index: 0,
            services: Vec::new(),
            period_ms: 500,
            ecm_repeat_ms: 100,
            announce_next: true,
            ecm_pid_base: 0x1FA0,
            emm_pid: 0x1FF0,
            emm_addresses: Vec::new(),
            entitled_until_day: testca::today() + 365,
            emm_repeat_ms: 1000,
            cat_repeat_ms: 500,
            access_day: testca::today(),
            seed,
        }
    }
}

/// The control word of `service_id` in crypto period `period`: 48 random
/// bits (splitmix64 of the seed, service and period) with checksum bytes.
pub fn control_word(seed: u64, service_id: u16, period: u32) -> [u8; 8] {
    let mut z = seed ^ ((service_id as u64) << 32) ^ period as u64;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let mut cw = z.to_be_bytes();
    csa::fix_checksums(&mut cw);
    cw
}

/// Parity on air in crypto period `period`.
pub fn parity_of(period: u32) -> Parity {
    if period & 1 == 0 {
        Parity::Even
    } else {
        Parity::Odd
    }
}

/// One line of the key log: the word used for one service in one period.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyLogEntry {
    pub service_id: u16,
    pub period: u32,
    pub parity: Parity,
    pub cw: [u8; 8],
    /// The service's ES PIDs.
    pub pids: Vec<u16>,
    /// First and last output packet index (from 0) scrambled with `cw`.
    pub first_packet: u64,
    pub last_packet: u64,
    /// Packets scrambled with `cw` (not in the text form: 0 when read
    /// back by `parse_key_log`).
    pub packets: u64,
}

impl std::fmt::Debug for KeyLogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyLogEntry(service {} period {} {:?} packets {}..={})",
            self.service_id, self.period, self.parity, self.first_packet, self.last_packet
        )
    }
}

/// Text form, one entry a line (tests/c/testca_descramble.c reads it):
/// `service period even|odd cw(16 hex) first last pid,pid,...`.
pub fn write_key_log(entries: &[KeyLogEntry]) -> String {
    let mut s = String::from("# service period parity cw first_packet last_packet pids\n");
    for e in entries {
        let cw: String = e.cw.iter().map(|b| format!("{b:02x}")).collect();
        let pids: Vec<String> = e.pids.iter().map(|p| p.to_string()).collect();
        s.push_str(&format!(
            "{} {} {} {} {} {} {}\n",
            e.service_id,
            e.period,
            if e.parity == Parity::Even {
                "even"
            } else {
                "odd"
            },
            cw,
            e.first_packet,
            e.last_packet,
            pids.join(",")
        ));
    }
    s
}

/// Read `write_key_log`'s text back.
pub fn parse_key_log(text: &str) -> Result<Vec<KeyLogEntry>, String> {
    let mut v = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("key log line {}: {what}", n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 7 {
            return Err(bad("want 7 fields"));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad("not a number"));
        let parity = match f[2] {
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            _ => return Err(bad("parity")),
        };
        let cw = u64::from_str_radix(f[3], 16)
            .ok()
            .filter(|_| f[3].len() == 16)
            .ok_or_else(|| bad("control word"))?
            .to_be_bytes();
        let pids = f[6]
            .split(',')
            .map(|p| p.parse::<u16>().map_err(|_| bad("PID")))
            .collect::<Result<Vec<u16>, String>>()?;
        let (first_packet, last_packet) = (num(f[4])?, num(f[5])?);
        v.push(KeyLogEntry {
            service_id: num(f[0])? as u16,
            period: num(f[1])? as u32,
            parity,
            cw,
            pids,
            first_packet,
            last_packet,
            packets: 0,
        });
    }
    Ok(v)
}

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScramblerStats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub scrambled: u64,
    /// ES packets left clear: before the PMT was seen, or without payload.
    pub es_clear: u64,
    pub malformed: u64,
    pub ecms: u64,
    pub emms: u64,
    pub cats: u64,
    pub pmts: u64,
    pub periods: u64,
}

struct Service {
    service_id: u16,
    pmt_pid: u16,
    ecm_pid: u16,
    es_pids: Vec<u16>,
    pmt_asm: Assembler,
    pmt_cc: u8,
    ecm_cc: u8,
    /// Key log entry of the current period, once a packet used it.
    log: Option<usize>,
}

pub struct Scrambler {
    cfg: ScramblerConfig,
    pat_asm: Assembler,
    services: Vec<Service>,
    /// ES PID → service index.
    es: HashMap<u16, usize>,
    keys: Vec<Keys>,
    clock_pid: Option<u16>,
    last_pcr: Option<u64>,
    /// Stream time since the first PCR, in 27 MHz ticks.
    ticks: u64,
    period: u32,
    next_ecm_ms: u64,
    next_emm_ms: u64,
    next_cat_ms: u64,
    cat_cc: u8,
    emm_cc: u8,
    log: Vec<KeyLogEntry>,
    stats: ScramblerStats,
}

impl Scrambler {
    pub fn new(cfg: ScramblerConfig) -> Scrambler {
        Scrambler {
            cfg,
            pat_asm: Assembler::new(),
            services: Vec::new(),
            es: HashMap::new(),
            keys: Vec::new(),
            clock_pid: None,
            last_pcr: None,
            ticks: 0,
            period: 0,
            next_ecm_ms: 0,
            next_emm_ms: 0,
            next_cat_ms: 0,
            cat_cc: 0,
            emm_cc: 0,
            log: Vec::new(),
            stats: ScramblerStats::default(),
        }
    }

    pub fn key_log(&self) -> &[KeyLogEntry] {
        &self.log
    }

    pub fn stats(&self) -> ScramblerStats {
        self.stats
    }

    fn now_ms(&self) -> u64 {
        self.ticks / 27_000
    }

    fn period_keys(&self, service_id: u16, period: u32) -> Keys {
        let mut k = Keys::default();
        k.set(
            parity_of(period),
            control_word(self.cfg.seed, service_id, period),
        );
        k
    }

    fn emit(&mut self, out: &[u8], start: usize) {
        self.stats.packets_out += ((out.len() - start) / PACKET_SIZE) as u64;
    }

    fn ecm(&mut self, i: usize, out: &mut Vec<u8>) {
        let p = self.period;
        let s = &self.services[i];
        let here = control_word(self.cfg.seed, s.service_id, p);
        let other = if self.cfg.announce_next {
            p.wrapping_add(1)
        } else {
            p.wrapping_sub(1)
        };
        let other = control_word(self.cfg.seed, s.service_id, other);
        let (even, odd) = match parity_of(p) {
            Parity::Even => (here, other),
            Parity::Odd => (other, here),
        };
        let sec = testca::build_ecm(
            &self.cfg.card_key,
            &testca::Ecm {
                table_id: match parity_of(p) {
                    Parity::Even => testca::ECM_EVEN,
                    Parity::Odd => testca::ECM_ODD,
                },
                key_index: self.cfg.key_index,
                period: p,
                service_id: s.service_id,
                even,
                odd,
                access_day: self.cfg.access_day,
            },
        );
        let start = out.len();
        let s = &mut self.services[i];
        packetize(&sec, s.ecm_pid, &mut s.ecm_cc, out);
        self.stats.ecms += 1;
        self.emit(out, start);
    }

    /// Timers and period changes at a clock step.
    fn tick(&mut self, out: &mut Vec<u8>) {
        let ms = self.now_ms();
        let period = (ms / self.cfg.period_ms.max(1)) as u32;
        if period != self.period {
            self.period = period;
            self.stats.periods += 1;
            for i in 0..self.services.len() {
                self.keys[i] = self.period_keys(self.services[i].service_id, period);
                self.services[i].log = None;
            }
            self.next_ecm_ms = ms; // the new ECM goes out now
        }
        if ms >= self.next_ecm_ms {
            for i in 0..self.services.len() {
                self.ecm(i, out);
            }
            self.next_ecm_ms = ms + self.cfg.ecm_repeat_ms.max(1);
        }
        if ms >= self.next_cat_ms {
            let mut d = vec![0x09, 4];
            d.extend_from_slice(&testca::CAID.to_be_bytes());
            d.extend_from_slice(&(0xE000 | self.cfg.emm_pid).to_be_bytes());
            let cat = CatRepr {
                version: 0,
                section_number: 0,
                last_section_number: 0,
                descriptors: d,
            };
            let start = out.len();
            packetize(&cat.emit(), pid::CAT, &mut self.cat_cc, out);
            self.stats.cats += 1;
            self.emit(out, start);
            self.next_cat_ms = ms + self.cfg.cat_repeat_ms.max(1);
        }
        if ms >= self.next_emm_ms {
            for a in self.cfg.emm_addresses.clone() {
                let sec = testca::build_emm(
                    &self.cfg.card_key,
                    &testca::Emm {
                        key_index: self.cfg.key_index,
                        address: a,
                        entitled_until_day: self.cfg.entitled_until_day,
                    },
                );
                let start = out.len();
                packetize(&sec, self.cfg.emm_pid, &mut self.emm_cc, out);
                self.stats.emms += 1;
                self.emit(out, start);
            }
            self.next_emm_ms = ms + self.cfg.emm_repeat_ms.max(1);
        }
    }

    fn pat_section(&mut self, s: &[u8]) {
        let Ok(sec) = Section::new_checked(s) else {
            return;
        };
        let Ok(pat) = PatRepr::parse(&sec) else {
            return;
        };
        for e in pat.programs() {
            let wanted =
                self.cfg.services.is_empty() || self.cfg.services.contains(&e.program_number);
            if !wanted
                || self
                    .services
                    .iter()
                    .any(|s| s.service_id == e.program_number)
            {
                continue;
            }
            let n = self.services.len() as u16;
            self.services.push(Service {
                service_id: e.program_number,
                pmt_pid: e.pid,
                ecm_pid: self.cfg.ecm_pid_base.wrapping_add(n) & 0x1FFF,
                es_pids: Vec::new(),
                pmt_asm: Assembler::new(),
                pmt_cc: 0,
                ecm_cc: 0,
                log: None,
            });
            self.keys
                .push(self.period_keys(e.program_number, self.period));
            // Its first ECM goes out at once.
            self.next_ecm_ms = 0;
        }
    }

    /// A PMT section of service `i`'s PMT PID, re-emitted with the
    /// CA_descriptor when it is that service's.
    fn pmt_section(&mut self, i: usize, s: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let svc = &mut self.services[i];
        let parsed = Section::new_checked(s)
            .ok()
            .filter(|sec| sec.table_id() == table_id::PMT)
            .and_then(|sec| PmtRepr::parse(&sec).ok());
        match parsed {
            Some(mut pmt) if pmt.program_number == svc.service_id => {
                let mut d = vec![0x09, 4];
                d.extend_from_slice(&testca::CAID.to_be_bytes());
                d.extend_from_slice(&(0xE000 | svc.ecm_pid).to_be_bytes());
                d.extend_from_slice(&pmt.program_info);
                pmt.program_info = d;
                svc.es_pids = pmt.streams.iter().map(|s| s.elementary_pid).collect();
                for &p in &svc.es_pids {
                    self.es.insert(p, i);
                }
                packetize(&pmt.emit(), svc.pmt_pid, &mut svc.pmt_cc, out);
                self.stats.pmts += 1;
            }
            // Another program's section on this PID: carried unchanged.
            _ => packetize(s, svc.pmt_pid, &mut svc.pmt_cc, out),
        }
        self.emit(out, start);
    }

    /// One input packet; appends the output packets to `out`.
    pub fn push(&mut self, pkt: &[u8], out: &mut Vec<u8>) {
        self.stats.packets_in += 1;
        let Ok(p) = Packet::new_checked(pkt) else {
            self.stats.malformed += 1;
            let start = out.len();
            out.extend_from_slice(&pkt[..pkt.len().min(PACKET_SIZE)]);
            out.resize(start + PACKET_SIZE, 0xFF);
            self.emit(out, start);
            return;
        };
        let pid = p.pid();
        if let Some(pcr) = p.pcr() {
            if self.clock_pid.is_none() {
                self.clock_pid = Some(pid);
            }
            if self.clock_pid == Some(pid) {
                if let Some(last) = self.last_pcr {
                    self.ticks += pcr_delta(last, pcr);
                }
                self.last_pcr = Some(pcr);
            }
        }
        // Timers run on every packet so the first ECM precedes the first
        // scrambled packet; the clock only moves at PCRs.
        self.tick(out);
        if pid == pid::PAT {
            let mut got = Vec::new();
            self.pat_asm.push(&p, |s| got.push(s.to_vec()));
            for s in got {
                self.pat_section(&s);
            }
        } else if pid == pid::CAT {
            return; // ours replaces it
        }
        if let Some(i) = self.services.iter().position(|s| s.pmt_pid == pid) {
            let mut got = Vec::new();
            self.services[i].pmt_asm.push(&p, |s| got.push(s.to_vec()));
            for s in got {
                self.pmt_section(i, &s, out);
            }
            return;
        }
        let index = self.stats.packets_out;
        let start = out.len();
        out.extend_from_slice(&pkt[..PACKET_SIZE]);
        self.emit(out, start);
        let Some(&i) = self.es.get(&pid) else {
            return;
        };
        let parity = parity_of(self.period);
        match csa::scramble_packet(&mut out[start..], &self.keys[i], parity) {
            Outcome::Done => {}
            _ => {
                self.stats.es_clear += 1;
                return;
            }
        }
        self.stats.scrambled += 1;
        let svc = &mut self.services[i];
        let e = match svc.log {
            Some(e) => e,
            None => {
                self.log.push(KeyLogEntry {
                    service_id: svc.service_id,
                    period: self.period,
                    parity,
                    cw: control_word(self.cfg.seed, svc.service_id, self.period),
                    pids: svc.es_pids.clone(),
                    first_packet: index,
                    last_packet: index,
                    packets: 0,
                });
                svc.log = Some(self.log.len() - 1);
                self.log.len() - 1
            }
        };
        self.log[e].last_packet = index;
        self.log[e].packets += 1;
    }
}

/// Scramble a whole stream (whole packets; a trailing partial packet is
/// dropped). Returns the output and the key log.
pub fn scramble(input: &[u8], cfg: ScramblerConfig) -> (Vec<u8>, Vec<KeyLogEntry>, ScramblerStats) {
    let mut s = Scrambler::new(cfg);
    let mut out = Vec::with_capacity(input.len() + input.len() / 16);
    for p in input.chunks_exact(PACKET_SIZE) {
        s.push(p, &mut out);
    }
    let stats = s.stats();
    (out, s.log, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_checksummed_and_distinct() {
        let a = control_word(1, 1, 0);
        assert!(csa::has_valid_checksums(&a));
        assert_ne!(a, control_word(1, 1, 1));
        assert_ne!(a, control_word(1, 2, 0));
        assert_ne!(a, control_word(2, 1, 0));
        assert_eq!(a, control_word(1, 1, 0));
    }

    #[test]
    fn small_stream() {
        // PAT + PMT + a few PCR-bearing ES packets, 200 ms apart.
        let mut v = Vec::new();
        let mut cc = 0;
        let pat = PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![crate::ts::pat::PatEntry {
                program_number: 5,
                pid: 0x100,
            }],
        };
        packetize(&pat.emit(), 0, &mut cc, &mut v);
        let pmt = PmtRepr {
            program_number: 5,
            version: 0,
            pcr_pid: 0x101,
            program_info: vec![],
            streams: vec![crate::ts::pmt::PmtStream {
                stream_type: 0x1B,
                elementary_pid: 0x101,
                descriptors: vec![],
            }],
        };
        packetize(&pmt.emit(), 0x100, &mut cc, &mut v);
        for i in 0..10u64 {
            let mut p = [0x5Au8; 188];
            crate::ts::packet::write_header(&mut p, 0x101, false, i as u8 & 15);
            p[3] = 0x30 | (i as u8 & 15);
            p[4] = 7;
            p[5] = 0x10;
            let mut b = [0u8; 6];
            crate::ts::packet::encode_pcr(i * 200 * 27_000, &mut b);
            p[6..12].copy_from_slice(&b);
            v.extend_from_slice(&p);
        }
        let mut cfg = ScramblerConfig::new([3; 16], 42);
        cfg.emm_addresses = vec![7];
        let (out, log, st) = scramble(&v, cfg.clone());
        assert_eq!(st.scrambled, 10);
        assert_eq!(out.len() as u64, st.packets_out * 188);
        // 10 packets 200 ms apart, 500 ms periods: periods 0..=3.
        assert_eq!(
            log.iter().map(|e| e.period).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(log.iter().map(|e| e.packets).sum::<u64>(), 10);
        let (out2, _, _) = scramble(&v, cfg.clone());
        assert_eq!(out, out2, "deterministic");
        // The ECMs: period k's word in its slot, the next one (or, without
        // announce_next, the previous one) in the other.
        for ahead in [true, false] {
            cfg.announce_next = ahead;
            let (out, _, _) = scramble(&v, cfg.clone());
            let mut periods = Vec::new();
            for p in out.chunks_exact(188) {
                let p = Packet::new_checked(p).unwrap();
                if p.pid() != 0x1FA0 {
                    continue;
                }
                let sec = &p.payload()[1..1 + testca::ECM_LEN];
                let e = testca::open_ecm(&[3; 16], sec).unwrap();
                let k = e.period;
                let other = if ahead { k + 1 } else { k.wrapping_sub(1) };
                let (even, odd) = if k & 1 == 0 { (k, other) } else { (other, k) };
                assert_eq!(e.even, control_word(42, 5, even));
                assert_eq!(e.odd, control_word(42, 5, odd));
                assert_eq!(e.table_id, 0x80 + (k & 1) as u8);
                periods.push(k);
            }
            periods.dedup();
            assert_eq!(periods, vec![0, 1, 2, 3]);
        }
        // Every ES packet carries the parity its log entry names.
        for e in &log {
            for i in e.first_packet..=e.last_packet {
                let p = Packet::new_checked(&out[i as usize * 188..][..188]).unwrap();
                if p.pid() == 0x101 {
                    assert_eq!(p.scrambling_control(), e.parity.scrambling_control());
                }
            }
        }
        let text = write_key_log(&log);
        assert_eq!(text.lines().count(), 5);
        let back = parse_key_log(&text).unwrap();
        assert_eq!(back.len(), 4);
        for (a, b) in back.iter().zip(&log) {
            assert_eq!(
                (a.cw, a.first_packet, &a.pids),
                (b.cw, b.first_packet, &b.pids)
            );
        }
    }
}
