//! `CardSession`: the `CaSession` of a service whose control words come
//! from a card (through the card manager's `EcmClient`).
//!
//! Owns: the service's `EcmRouter`, its `KeySlots`, and the one-ECM-in-
//! flight discipline: while the card works on an ECM, a newer ECM waits in
//! a queue of one (a still newer one replaces it: the latest wins, the
//! replaced one is counted as dropped); when the answer comes, the waiting
//! ECM goes out on the next `feed`. The card manager's thread calls the
//! completion, which writes the words into the slots (`set_pair`) at once
//! and updates the counters (shared with `status()` under one mutex).
//!
//! An answer that comes after the ECM table_id toggled is late: its word
//! for a crypto period that is over is not delivered (`deliverable`), so a
//! slow card leaves packets scrambled (counted by the descrambler) rather
//! than descrambled with an old period's word.
//!
//! Promises: `feed` never blocks on a card (it only queues work on the
//! manager); every ECM and EMM routed lands in exactly one counter
//! (sent / dropped); an answer that takes longer than `ECM_TIMEOUT` of the
//! caller's clock frees the queue so the service does not stall behind a
//! lost completion (its late words, if they come, are still delivered:
//! the descrambler decides which slot may change). Control words never
//! reach logs or `CaStatus`.

use crate::ca::cards::{CwPair, EcmClient};
use crate::ca::ecm::{EcmRouter, Routed, RouterConfig, RouterStats};
use crate::ca::slots::KeySlots;
use crate::ca::{CaSession, CaStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An ECM unanswered for this long (by the `now` passed to `feed`) no
/// longer holds back the next one.
pub const ECM_TIMEOUT: Duration = Duration::from_secs(5);

/// ECM table_id sent while the even word is on air (0x81: odd).
const ECM_TABLE_ID_EVEN: u8 = 0x80;

#[derive(Debug, Default)]
struct Inner {
    /// Sequence number of the ECM in flight, and when it was sent.
    in_flight: Option<(u64, Instant)>,
    next_seq: u64,
    /// (caid, section, `toggles` when routed) of the ECM waiting for the
    /// card.
    queued: Option<(u16, Vec<u8>, u64)>,
    /// table_id of the latest ECM the router handed out, and how many times
    /// it toggled (0x80 ↔ 0x81: a parity switch on air): an answer to an
    /// ECM routed before a toggle is late.
    latest_table_id: Option<u8>,
    toggles: u64,
    /// Words of late answers not delivered (see `deliverable`).
    stale_words: u64,
    ecms_sent: u64,
    ecms_answered: u64,
    ecm_errors: u64,
    ecms_replaced: u64,
    ecm_timeouts: u64,
    emms_sent: u64,
    emms_filtered: u64,
    emm_errors: u64,
    cws_delivered: u64,
    last_rtt: Option<Duration>,
    last_cw: Option<Instant>,
    last_error: Option<String>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    // A panic elsewhere must not take the counters down with it.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// ECM → card → control words for one service.
pub struct CardSession {
    router: EcmRouter,
    client: Arc<dyn EcmClient>,
    slots: Arc<KeySlots>,
    shared: Shared,
}

impl CardSession {
    pub fn new(cfg: RouterConfig, client: Arc<dyn EcmClient>) -> CardSession {
        CardSession {
            router: EcmRouter::new(cfg),
            client,
            slots: Arc::new(KeySlots::new()),
            shared: Shared::default(),
        }
    }

    pub fn router_stats(&self) -> RouterStats {
        self.router.stats()
    }

    /// Control words of late answers not delivered (their crypto period
    /// was over when the card answered).
    pub fn stale_words(&self) -> u64 {
        lock(&self.shared).stale_words
    }

    /// Send `section` now. The caller has marked it in flight under
    /// sequence number `seq` and released the lock: a client may call the
    /// completion before `ecm` returns (an in-process card does).
    fn send(&self, seq: u64, caid: u16, section: Vec<u8>, routed: u64) {
        let table_id = section.first().copied().unwrap_or(0);
        let shared = self.shared.clone();
        let slots = self.slots.clone();
        // RTT is measured on the wall clock: `now` may be a stream clock.
        let sent_at = Instant::now();
        let done = Box::new(move |r: Result<CwPair, String>| {
            let rtt = sent_at.elapsed();
            let mut g = lock(&shared);
            match r {
                Ok(pair) => {
                    let (even, odd) = deliverable(&mut g, routed, table_id, pair);
                    // Under the counters' lock: a later answer cannot
                    // overtake this one between the check and the write.
                    slots.set_pair(even, odd);
                    let delivered = even.is_some() as u64 + odd.is_some() as u64;
                    g.ecms_answered += 1;
                    g.cws_delivered += delivered;
                    g.last_rtt = Some(rtt);
                    if delivered > 0 {
                        g.last_cw = Some(Instant::now());
                    }
                }
                Err(e) => {
                    g.ecm_errors += 1;
                    g.last_error = Some(e);
                }
            }
            if g.in_flight.map(|f| f.0) == Some(seq) {
                g.in_flight = None;
            }
        });
        if let Err(e) = self.client.ecm(caid, section, done) {
            // Refused at once (no card for this CA system, queue full).
            let mut g = lock(&self.shared);
            g.ecm_errors += 1;
            g.last_error = Some(e);
            if g.in_flight.map(|f| f.0) == Some(seq) {
                g.in_flight = None;
            }
        }
    }
}

/// The words of an answer still worth delivering. ECM k (table_id of
/// parity p) carries the word of its own period (p) and, usually, of the
/// next (the other parity). Answered before the table_id toggled: both.
/// After one toggle (the parity on air switched since): the word of
/// period k is for a period that is over — written into its slot, it would
/// descramble the next period of that parity with the wrong word — so only
/// the other word (now on air) is delivered. After two toggles: neither.
fn deliverable(
    g: &mut Inner,
    toggles_at_route: u64,
    table_id: u8,
    pair: CwPair,
) -> (Option<[u8; 8]>, Option<[u8; 8]>) {
    let (even, odd) = match g.toggles.saturating_sub(toggles_at_route) {
        0 => (pair.even, pair.odd),
        1 if table_id == ECM_TABLE_ID_EVEN => (None, pair.odd),
        1 => (pair.even, None),
        _ => (None, None),
    };
    let given = pair.even.is_some() as u64 + pair.odd.is_some() as u64;
    g.stale_words += given - (even.is_some() as u64 + odd.is_some() as u64);
    (even, odd)
}

impl CaSession for CardSession {
    fn wanted_pids(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .router
            .ca_systems()
            .iter()
            .map(|&(_, pid)| pid)
            .collect();
        v.extend(self.router.emm_choice().map(|(_, pid)| pid));
        v
    }

    fn feed(&mut self, packets: &[u8], now: Instant) {
        let client = &self.client;
        let shared = &self.shared;
        let mut ecms: Vec<(u16, Vec<u8>)> = Vec::new();
        self.router.feed(packets, now, |r| match r {
            Routed::Ecm { caid, section, .. } => ecms.push((caid, section.to_vec())),
            Routed::Emm { caid, section, .. } => {
                // The manager only queues the EMM (or filters it by the
                // card's address): no card I/O on this thread.
                let res = client.emm(caid, section.to_vec());
                let mut g = lock(shared);
                match res {
                    Ok(true) => g.emms_sent += 1,
                    Ok(false) => g.emms_filtered += 1,
                    Err(e) => {
                        g.emm_errors += 1;
                        g.last_error = Some(e);
                    }
                }
            }
        });
        // The lock is taken only when there is something to do.
        let pending = !ecms.is_empty() || lock(&self.shared).queued.is_some();
        if !pending {
            return;
        }
        let mut g = lock(&self.shared);
        for (caid, section) in ecms {
            let tid = section.first().copied();
            if g.latest_table_id != tid {
                if g.latest_table_id.is_some() {
                    g.toggles += 1;
                }
                g.latest_table_id = tid;
            }
            let routed = g.toggles;
            // The latest ECM wins: one replaced while waiting is dropped.
            if g.queued.replace((caid, section, routed)).is_some() {
                g.ecms_replaced += 1;
            }
        }
        if let Some((_, since)) = g.in_flight {
            if now.saturating_duration_since(since) < ECM_TIMEOUT {
                return;
            }
            g.ecm_timeouts += 1;
            g.ecm_errors += 1;
            g.last_error = Some("the card did not answer an ECM in time".to_string());
            g.in_flight = None;
        }
        let Some((caid, section, routed)) = g.queued.take() else {
            return;
        };
        let seq = g.next_seq;
        g.next_seq += 1;
        g.in_flight = Some((seq, now));
        g.ecms_sent += 1;
        drop(g);
        self.send(seq, caid, section, routed);
    }

    fn slots(&self) -> Arc<KeySlots> {
        self.slots.clone()
    }

    fn status(&self) -> CaStatus {
        let rs = self.router.stats();
        let g = lock(&self.shared);
        let caid =
            self.router
                .ecm_choice()
                .map(|e| e.0)
                .or(self.router.config().caids.first().copied());
        let state = if self.router.pmt_pid().is_none() {
            format!(
                "waiting for program {} in the PAT",
                self.router.config().program_number
            )
        } else if !self.router.has_pmt() {
            "waiting for the PMT".to_string()
        } else if self.router.ecm_choice().is_none() {
            if self.router.ca_systems().is_empty() {
                "the PMT has no CA descriptor (service not scrambled?)".to_string()
            } else {
                let list: Vec<String> = self
                    .router
                    .ca_systems()
                    .iter()
                    .map(|c| format!("0x{:04X}", c.0))
                    .collect();
                format!(
                    "no configured CA system in the PMT (it has {})",
                    list.join(", ")
                )
            }
        } else if g.last_cw.is_some() {
            "control words from the card".to_string()
        } else if g.ecms_sent == 0 {
            "waiting for an ECM".to_string()
        } else if let Some(e) = &g.last_error {
            format!("no control word yet: {e}")
        } else {
            "waiting for the card's first answer".to_string()
        };
        CaStatus {
            kind: "card",
            state,
            caid,
            ecm_pid: self.router.ecm_choice().map(|e| e.1),
            ecms_seen: rs.ecms_seen,
            ecms_sent: g.ecms_sent,
            ecms_answered: g.ecms_answered,
            ecm_errors: g.ecm_errors,
            ecms_dropped: rs.ecms_rate_limited + g.ecms_replaced,
            emms_seen: rs.emms_seen,
            emms_sent: g.emms_sent,
            emms_dropped: rs.emm_duplicates
                + rs.emms_rate_limited
                + rs.emm_other_address
                + g.emms_filtered
                + g.emm_errors,
            last_ecm_rtt_ms: g.last_rtt.map(|d| d.as_secs_f64() * 1e3),
            last_cw_age_s: g.last_cw.map(|t| t.elapsed().as_secs_f64()),
            cws_delivered: g.cws_delivered,
            last_error: g.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::testca;
    use crate::ts::section::packetize;
    use std::sync::mpsc;

    type Done = Box<dyn FnOnce(Result<CwPair, String>) + Send>;

    /// A card that parks the completions so the test decides when the card
    /// answers.
    struct Parked {
        key: [u8; 16],
        pending: Mutex<Vec<(Vec<u8>, Done)>>,
        emms: mpsc::Sender<Vec<u8>>,
    }

    impl EcmClient for Parked {
        fn ecm(
            &self,
            _caid: u16,
            section: Vec<u8>,
            done: Box<dyn FnOnce(Result<CwPair, String>) + Send>,
        ) -> Result<(), String> {
            self.pending.lock().unwrap().push((section, done));
            Ok(())
        }
        fn emm(&self, _caid: u16, section: Vec<u8>) -> Result<bool, String> {
            self.emms.send(section).unwrap();
            Ok(true)
        }
    }

    impl Parked {
        fn answer(&self) -> usize {
            let v: Vec<_> = self.pending.lock().unwrap().drain(..).collect();
            let n = v.len();
            for (s, done) in v {
                done(
                    testca::open_ecm(&self.key, &s)
                        .map(|e| CwPair {
                            even: Some(e.even),
                            odd: Some(e.odd),
                        })
                        .map_err(|e| e.to_string()),
                );
            }
            n
        }
    }

    fn psi(cc: &mut u8) -> Vec<u8> {
        let pat = crate::ts::pat::PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![crate::ts::pat::PatEntry {
                program_number: 3,
                pid: 0x100,
            }],
        };
        let pmt = crate::ts::pmt::PmtRepr {
            program_number: 3,
            version: 0,
            pcr_pid: 0x101,
            program_info: vec![0x09, 4, 0xFF, 0xFE, 0xE1, 0xF0],
            streams: vec![],
        };
        let mut v = Vec::new();
        packetize(&pat.emit(), 0, cc, &mut v);
        packetize(&pmt.emit(), 0x100, cc, &mut v);
        v
    }

    fn ecm(key: &[u8; 16], period: u32) -> Vec<u8> {
        testca::build_ecm(
            key,
            &testca::Ecm {
                table_id: if period & 1 == 0 { 0x80 } else { 0x81 },
                key_index: 0,
                period,
                service_id: 3,
                even: [period as u8; 8],
                odd: [period as u8 + 100; 8],
                access_day: 1,
            },
        )
    }

    #[test]
    fn one_in_flight_latest_wins() {
        let key = [9u8; 16];
        let (tx, _rx) = mpsc::channel();
        let card = Arc::new(Parked {
            key,
            pending: Mutex::new(Vec::new()),
            emms: tx,
        });
        let mut s = CardSession::new(
            RouterConfig {
                max_ecms_per_s: 0,
                ..RouterConfig::new(3)
            },
            card.clone(),
        );
        let t0 = Instant::now();
        let mut cc = 0;
        s.feed(&psi(&mut cc), t0);
        assert_eq!(s.status().ecm_pid, Some(0x1F0));
        assert_eq!(s.status().state, "waiting for an ECM");
        let mut ecc = 0;
        for p in 0..4u32 {
            let mut v = Vec::new();
            packetize(&ecm(&key, p), 0x1F0, &mut ecc, &mut v);
            s.feed(&v, t0);
        }
        // ECM 0 in flight, 1 and 2 replaced, 3 waiting.
        let st = s.status();
        assert_eq!((st.ecms_seen, st.ecms_sent, st.ecms_dropped), (4, 1, 2));
        assert_eq!(card.answer(), 1);
        // ECM 0's answer is late: the table_id toggled 3 times since (ECMs
        // 1, 2, 3): neither of its words is good any more.
        assert_eq!(s.slots().snapshot(), crate::ca::slots::Snapshot::default());
        assert_eq!(s.stale_words(), 2);
        s.feed(&[], t0);
        assert_eq!(card.answer(), 1);
        let snap = s.slots().snapshot();
        assert_eq!(snap.even.unwrap().cw, [3; 8]);
        assert_eq!(snap.odd.unwrap().cw, [103; 8]);
        let st = s.status();
        assert_eq!(
            (st.ecms_sent, st.ecms_answered, st.cws_delivered),
            (2, 2, 2)
        );
        assert_eq!(st.kind, "card");
        assert_eq!(st.state, "control words from the card");
        assert!(st.last_ecm_rtt_ms.is_some());
        // ECM 4 (even) in flight, 5 (odd) waits: the answer to 4 comes one
        // toggle late, only its odd word (on air now) is delivered.
        for p in 4..6u32 {
            let mut v = Vec::new();
            packetize(&ecm(&key, p), 0x1F0, &mut ecc, &mut v);
            s.feed(&v, t0);
        }
        card.answer();
        assert_eq!(s.slots().snapshot().even.unwrap().cw, [3; 8]);
        assert_eq!(s.slots().snapshot().odd.unwrap().cw, [104; 8]);
        assert_eq!(s.stale_words(), 3);
        s.feed(&[], t0);
        card.answer();
        assert_eq!(s.slots().snapshot().odd.unwrap().cw, [105; 8]);
        assert_eq!(s.slots().snapshot().even.unwrap().cw, [5; 8]);
        // Garbage ECM: a card error, counted, no words.
        let mut bad = ecm(&key, 9);
        bad[30] ^= 0xFF;
        let mut v = Vec::new();
        packetize(&bad, 0x1F0, &mut ecc, &mut v);
        s.feed(&v, t0);
        card.answer();
        assert_eq!(s.status().ecm_errors, 1);
        assert_eq!(s.slots().snapshot().even.unwrap().cw, [5; 8]);
    }

    #[test]
    fn lost_answer_times_out() {
        let key = [9u8; 16];
        let (tx, _rx) = mpsc::channel();
        let card = Arc::new(Parked {
            key,
            pending: Mutex::new(Vec::new()),
            emms: tx,
        });
        let mut s = CardSession::new(RouterConfig::new(3), card.clone());
        let t0 = Instant::now();
        let mut cc = 0;
        s.feed(&psi(&mut cc), t0);
        let mut ecc = 0;
        let mut v = Vec::new();
        packetize(&ecm(&key, 0), 0x1F0, &mut ecc, &mut v);
        s.feed(&v, t0);
        card.pending.lock().unwrap().clear(); // the completion is lost
        let mut v = Vec::new();
        packetize(&ecm(&key, 1), 0x1F0, &mut ecc, &mut v);
        s.feed(&v, t0 + Duration::from_secs(1));
        assert_eq!(s.status().ecms_sent, 1);
        s.feed(&[], t0 + ECM_TIMEOUT + Duration::from_secs(1));
        let st = s.status();
        assert_eq!((st.ecms_sent, st.ecm_errors), (2, 1));
        assert_eq!(card.answer(), 1);
        assert_eq!(s.slots().snapshot().odd.unwrap().cw, [101; 8]);
    }
}
