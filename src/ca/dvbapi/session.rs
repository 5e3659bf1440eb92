//! `DvbapiSession`: the `CaSession` of one service whose control words come
//! from a softcam over dvbapi.
//!
//! Owns, on the runner thread: finding the service's PMT (PAT → PMT PID →
//! PMT of its program_number), handing each new PMT version to the
//! connection (which sends the CA PMT), and answering the softcam's demux
//! filters with the sections of the mux: sections are reassembled on the
//! requested PIDs only, matched against filter/mask/mode, and queued as
//! FILTER_DATA. An ECM (table_id 0x80/0x81) is sent only when it differs
//! from the last one sent on that filter; every kind is rate-limited.
//!
//! Promises: `feed` never blocks on the network (it takes the connection's
//! mutex for a queue push), costs a PID comparison for packets nobody
//! asked for, and holds bounded memory (`MAX_PIDS` assemblers of one
//! section each, one last ECM per filter). Every section not sent is
//! counted.

use super::client::{ConnState, Filter, SoftcamClient, MAX_FILTERS};
use super::proto;
use crate::ca::slots::KeySlots;
use crate::ca::{CaSession, CaStatus};
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pat::PatRepr;
use crate::ts::pmt::PmtRepr;
use crate::ts::section::{Assembler, Section};
use crate::ts::{pid, table_id};
use std::sync::Arc;
use std::time::Instant;

/// Distinct PIDs the softcam may have us filter for one service.
const MAX_PIDS: usize = 16;
/// ECMs sent per second per service, and the burst allowed (several ECM
/// PIDs, the 0x80/0x81 flip at each crypto period).
const ECM_RATE: f64 = 10.0;
const ECM_BURST: f64 = 20.0;
/// Other sections (EMMs, CAT) per second per service, and the burst.
const OTHER_RATE: f64 = 50.0;
const OTHER_BURST: f64 = 100.0;

/// Token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            at: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counters of the runner side.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    ecms_seen: u64,
    ecms_sent: u64,
    /// Rate limit or queue.
    ecms_dropped: u64,
    emms_seen: u64,
    emms_sent: u64,
    emms_dropped: u64,
    /// Requested PIDs beyond `MAX_PIDS`.
    pids_dropped: u64,
    pmts: u64,
}

fn is_ecm(table: u8) -> bool {
    table == table_id::ECM_EVEN || table == table_id::ECM_ODD
}

/// The CA session of one service fed by a softcam.
pub struct DvbapiSession {
    client: Arc<SoftcamClient>,
    /// The service's number on the connection (None: the connection has
    /// `MAX_SERVICES` already).
    n: Option<u8>,
    program_number: u16,
    slots: Arc<KeySlots>,
    pat: Assembler,
    pmt_pid: Option<u16>,
    pmt: Assembler,
    /// CRC of the PMT section last handed over: a change is a new PMT.
    pmt_crc: Option<u32>,
    /// (CA_system_id, ECM PID) of the PMT's CA descriptors, for the status
    /// before (or without) an ECM_INFO.
    ecm_pids: Vec<(u16, u16)>,
    filters: Vec<Filter>,
    filters_generation: u64,
    /// One assembler per filtered PID.
    assemblers: Vec<(u16, Assembler)>,
    /// Last ECM sent per (demux, filter), with the filter's `seq`.
    last_ecm: Vec<((u8, u8), u64, Vec<u8>)>,
    ecm_bucket: Bucket,
    other_bucket: Bucket,
    counters: Counters,
    /// Scratch for sections found in one packet.
    found: Vec<Vec<u8>>,
}

impl std::fmt::Debug for DvbapiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DvbapiSession")
            .field("softcam", &self.client.endpoint())
            .field("program_number", &self.program_number)
            .field("n", &self.n)
            .finish()
    }
}

impl DvbapiSession {
    pub fn new(client: Arc<SoftcamClient>, program_number: u16) -> DvbapiSession {
        let slots = Arc::new(KeySlots::new());
        let n = client.register(program_number, slots.clone());
        if n.is_none() {
            log::warn!(
                "softcam {}: more than {} services on one connection; program {program_number} gets no control words",
                client.endpoint(),
                super::client::MAX_SERVICES
            );
        }
        DvbapiSession {
            client,
            n,
            program_number,
            slots,
            pat: Assembler::new(),
            pmt_pid: None,
            pmt: Assembler::new(),
            pmt_crc: None,
            ecm_pids: Vec::new(),
            filters: Vec::new(),
            // Differs from any generation: the first feed copies filters.
            filters_generation: u64::MAX,
            assemblers: Vec::new(),
            last_ecm: Vec::new(),
            ecm_bucket: Bucket::new(ECM_RATE, ECM_BURST),
            other_bucket: Bucket::new(OTHER_RATE, OTHER_BURST),
            counters: Counters::default(),
            found: Vec::new(),
        }
    }

    /// The service's number on the connection (its adapter_device).
    pub fn service_number(&self) -> Option<u8> {
        self.n
    }

    fn refresh_filters(&mut self, n: u8) {
        let g = self.client.filters_generation();
        if g == self.filters_generation {
            return;
        }
        self.filters_generation = g;
        self.client.filters(n, &mut self.filters);
        self.filters.truncate(MAX_FILTERS);
        let filters = &self.filters;
        self.assemblers
            .retain(|(p, _)| filters.iter().any(|f| f.pid == *p));
        // A filter set again (or set on a new connection) starts afresh.
        self.last_ecm.retain(|(k, seq, _)| {
            filters
                .iter()
                .any(|f| (f.demux, f.filter) == *k && f.seq == *seq)
        });
        for f in &self.filters {
            if self.assemblers.iter().any(|(p, _)| *p == f.pid) {
                continue;
            }
            if self.assemblers.len() < MAX_PIDS {
                self.assemblers.push((f.pid, Assembler::new()));
            } else {
                self.counters.pids_dropped += 1;
            }
        }
    }

    fn on_pat(&mut self, section: &[u8]) {
        let Ok(s) = Section::new_checked(section) else {
            return;
        };
        let Ok(pat) = PatRepr::parse(&s) else { return };
        if !s.current_next() {
            return;
        }
        let pmt_pid = pat
            .programs()
            .find(|e| e.program_number == self.program_number)
            .map(|e| e.pid);
        if pmt_pid.is_some() && pmt_pid != self.pmt_pid {
            self.pmt_pid = pmt_pid;
            self.pmt.reset();
            self.pmt_crc = None;
        }
    }

    fn on_pmt(&mut self, n: u8, pmt_pid: u16, section: &[u8]) {
        let Ok(s) = Section::new_checked(section) else {
            return;
        };
        if s.table_id() != table_id::PMT
            || s.table_id_extension() != self.program_number
            || !s.current_next()
        {
            return;
        }
        if s.crc32() == self.pmt_crc {
            return;
        }
        let Ok(pmt) = PmtRepr::parse(&s) else { return };
        self.pmt_crc = s.crc32();
        self.counters.pmts += 1;
        self.ecm_pids = pmt.ecm_pids();
        self.client.set_pmt(n, pmt_pid, &pmt, true);
    }

    fn on_filtered(&mut self, n: u8, pid: u16, section: &[u8], now: Instant) {
        let table = section.first().copied().unwrap_or(0xFF);
        let ecm = is_ecm(table);
        for i in 0..self.filters.len() {
            let f = &self.filters[i];
            if f.pid != pid || !f.matches(section) {
                continue;
            }
            let key = (f.demux, f.filter);
            let seq = f.seq;
            if ecm {
                self.counters.ecms_seen += 1;
                let last = self.last_ecm.iter().position(|(k, _, _)| *k == key);
                if let Some(j) = last {
                    if self.last_ecm[j].1 == seq && self.last_ecm[j].2 == section {
                        continue; // unchanged: the softcam answered it already
                    }
                }
                if !self.ecm_bucket.take(now) {
                    self.counters.ecms_dropped += 1;
                    continue;
                }
                if !self.client.send_section(n, key.0, key.1, section) {
                    self.counters.ecms_dropped += 1;
                    continue;
                }
                self.counters.ecms_sent += 1;
                match last {
                    Some(j) => {
                        self.last_ecm[j].1 = seq;
                        self.last_ecm[j].2.clear();
                        self.last_ecm[j].2.extend_from_slice(section);
                    }
                    None => self.last_ecm.push((key, seq, section.to_vec())),
                }
            } else {
                self.counters.emms_seen += 1;
                if !self.other_bucket.take(now)
                    || !self.client.send_section(n, key.0, key.1, section)
                {
                    self.counters.emms_dropped += 1;
                    continue;
                }
                self.counters.emms_sent += 1;
            }
        }
    }
}

// The runner moves sessions between threads (`CaSession: Send`).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<DvbapiSession>();
};

impl Drop for DvbapiSession {
    fn drop(&mut self) {
        if let Some(n) = self.n {
            self.client.unregister(n);
        }
    }
}

impl CaSession for DvbapiSession {
    fn wanted_pids(&self) -> Vec<u16> {
        self.filters.iter().map(|f| f.pid).collect()
    }

    fn feed(&mut self, packets: &[u8], now: Instant) {
        let Some(n) = self.n else { return };
        self.refresh_filters(n);
        for raw in packets.chunks_exact(PACKET_SIZE) {
            // The PID straight from the header bytes first: most packets
            // are nobody's business here.
            let pid = u16::from_be_bytes([raw[1] & 0x1F, raw[2]]);
            if pid != pid::PAT
                && Some(pid) != self.pmt_pid
                && !self.assemblers.iter().any(|(x, _)| *x == pid)
            {
                continue;
            }
            let Ok(p) = Packet::new_checked(raw) else {
                continue;
            };
            if pid == pid::PAT {
                let mut found = std::mem::take(&mut self.found);
                self.pat.push(&p, |s| found.push(s.to_vec()));
                for s in found.drain(..) {
                    self.on_pat(&s);
                }
                self.found = found;
            } else if Some(pid) == self.pmt_pid {
                let mut found = std::mem::take(&mut self.found);
                self.pmt.push(&p, |s| found.push(s.to_vec()));
                for s in found.drain(..) {
                    self.on_pmt(n, pid, &s);
                }
                self.found = found;
            }
            // A filtered PID may also be the PAT or PMT (OSCam can ask):
            // its own assembler.
            if let Some(i) = self.assemblers.iter().position(|(x, _)| *x == pid) {
                let mut found = std::mem::take(&mut self.found);
                self.assemblers[i].1.push(&p, |s| found.push(s.to_vec()));
                for s in found.drain(..) {
                    self.on_filtered(n, pid, &s, now);
                }
                self.found = found;
            }
        }
    }

    fn slots(&self) -> Arc<KeySlots> {
        self.slots.clone()
    }

    fn status(&self) -> CaStatus {
        let c = &self.counters;
        let mut st = CaStatus {
            kind: "dvbapi",
            ecms_seen: c.ecms_seen,
            ecms_sent: c.ecms_sent,
            ecms_dropped: c.ecms_dropped,
            emms_seen: c.emms_seen,
            emms_sent: c.emms_sent,
            emms_dropped: c.emms_dropped,
            ..CaStatus::default()
        };
        let Some(v) = self.n.and_then(|n| self.client.view(n)) else {
            st.state = format!(
                "no control words: more than {} services on the softcam connection to {}",
                super::client::MAX_SERVICES,
                self.client.endpoint()
            );
            return st;
        };
        let ep = &v.endpoint;
        st.last_error = v.last_error.clone();
        st.ecm_pid = v.ecm_pid;
        st.cws_delivered = v.counters.cws_delivered;
        st.ecms_answered = v.counters.ecm_infos;
        st.ecm_errors = v.counters.cws_refused;
        st.last_cw_age_s = v.last_cw.map(|t| t.elapsed().as_secs_f64());
        if let Some(e) = &v.ecm_info {
            st.caid = Some(e.caid);
            st.last_ecm_rtt_ms = Some(e.ecm_time_ms as f64);
        } else if let Some(pid) = st.ecm_pid {
            st.caid = self
                .ecm_pids
                .iter()
                .find(|&&(_, p)| p == pid)
                .map(|&(caid, _)| caid);
        }
        st.state = match &v.state {
            ConnState::Down { .. } => format!("waiting for the softcam at {ep}"),
            ConnState::Handshake => format!("waiting for the softcam at {ep} to answer CLIENT_INFO"),
            ConnState::Ready { .. } if !v.announced && self.pmt_pid.is_none() => {
                format!("waiting for program {} in the PAT", self.program_number)
            }
            ConnState::Ready { .. } if !v.announced => {
                format!("waiting for the PMT of program {}", self.program_number)
            }
            ConnState::Ready { .. } => match (v.unsupported_algo, v.last_cw, &v.ecm_info) {
                (Some(a), _, _) => format!(
                    "the softcam at {ep} gives {} keys; capbox descrambles DVB-CSA only",
                    proto::algo_name(a)
                ),
                (None, None, _) => {
                    format!("CA PMT sent to the softcam at {ep}; waiting for control words")
                }
                (None, Some(_), Some(e)) => format!(
                    "control words from the softcam at {ep} (reader '{}', CA system 0x{:04X}, {} hops)",
                    e.reader, e.caid, e.hops
                ),
                (None, Some(_), None) => format!("control words from the softcam at {ep}"),
            },
        };
        st
    }
}
