//! The descrambling stage of one channel: reads control words from the
//! service's `KeySlots`, keeps its own key schedule per parity, and runs the
//! bitsliced CSA engine over the channel's packets in batches.
//!
//! Owns: the active even/odd keys of the channel (`Keys`), the key timing
//! rules, the packets held back for a batch, and the counters
//! (`DescramblerStats`).
//!
//! Key timing (`KeyPolicy::Rotating`, control words from ECMs):
//! - each packet takes the key its own transport_scrambling_control bits
//!   name (10 even, 11 odd);
//! - a word delivered for parity P is taken at once when P is not on air
//!   (its key is empty, retired or not used yet); while P is on air the
//!   word is deferred, never put in place of the key in use (the classic
//!   key-change glitch), and taken when P retires;
//! - P retires when an elementary stream that used the current P key
//!   switches to the other parity. Packets that start a new P period on a
//!   PID (the PID was on the other parity before, or carried nothing for a
//!   whole period) are only descrambled with a P word taken after the
//!   retirement; until then they are left scrambled and counted
//!   `stale_key` ("control word late"). Packets that continue the old P
//!   period on a PID that has not switched yet (stragglers, right after
//!   the switch) still use the retired key;
//! - a delivered word equal to one of the last retired words of its parity
//!   is a late duplicate of an old answer: refused and counted;
//! - one exception to deferring: when a PES start descrambled with the key
//!   on air lacks its start code and the same packet descrambled with the
//!   deferred word has it, the key on air is wrong (a CA system whose ECM
//!   carries the previous word for the idle parity, when capbox starts in
//!   the middle of a period: the first answer's idle word is an old one),
//!   and the deferred word is taken at once (`cw_healed`). Both trial
//!   decryptions must agree, so a PID carrying sections (no start code
//!   under any key) never triggers it.
//!
//! `KeyPolicy::Fixed` (BISS): both slots hold one constant word; nothing
//! retires.
//!
//! Promises: never panics on any bytes; never reorders or loses bytes: a
//! packet waiting in a batch holds back everything after it, so `process`
//! may return fewer bytes than it was given and release them on a later
//! call, at the latest `batch_timeout` after the first of them arrived (the
//! caller must call `process` regularly, with an empty buffer when no data
//! came, or `flush`). Packets that cannot be descrambled are passed on
//! still scrambled, their scrambling bits set, so a downstream player sees
//! scrambled packets, never garbled clear ones (a wrong key is the one
//! thing CSA itself cannot show; it is counted when a descrambled PES start
//! lacks its start code). Memory is bounded: at most `MAX_HELD_PACKETS`
//! packets are held. Control words never appear in `Debug` output.

use crate::ca::csa::{Batch, Engine, Keys, Outcome, Parity, Pushed, BATCH_SIZE};
use crate::ca::slots::{Delivered, KeySlots};
use crate::ts::packet::{Packet, PACKET_SIZE};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a partly filled batch may wait for more packets.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_millis(10);

/// Packets held at most (scrambled ones in the batch plus everything
/// behind them): a channel whose clear packets outnumber its scrambled
/// ones must not grow the queue without end.
pub const MAX_HELD_PACKETS: usize = 4 * BATCH_SIZE;

/// Retired words remembered per parity, to refuse late duplicates.
const RETIRED_MEMORY: usize = 4;

/// PIDs followed per channel (a service has a handful of ES PIDs).
const MAX_PIDS: usize = 64;

/// Where the words come from, which decides the timing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// One constant word for both parities (BISS): never retires.
    Fixed,
    /// Words change every crypto period (ECMs): see the module comment.
    Rotating,
}

/// Counters of one descrambled channel. Every scrambled packet lands in
/// `descrambled` or in one of the undecryptable reasons; `wrong_key`
/// counts descrambled PES starts without a start code (also counted in
/// `descrambled`, since the cipher ran on them).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct DescramblerStats {
    pub descrambled: u64,
    /// no_key + stale_key + wrong_key + pes_scrambled + reserved + malformed.
    pub undecryptable: u64,
    /// Scrambled with a parity whose slot never had a word (or was
    /// cleared: card gone).
    pub no_key: u64,
    /// A new crypto period started before its word arrived: left
    /// scrambled.
    pub stale_key: u64,
    pub wrong_key: u64,
    /// PES-level scrambling (not supported), left as is.
    pub pes_scrambled: u64,
    /// transport_scrambling_control 01.
    pub reserved: u64,
    /// Not a TS packet (sync byte, length, adaptation field), passed on.
    pub malformed: u64,
    /// Batches run and the packets in them.
    pub batches: u64,
    pub packets_in_batches: u64,
    pub batch_capacity: u64,
    /// Mean packets per batch / batch capacity.
    pub fill_ratio: f64,
    /// Batches run because the time bound expired (low-rate services).
    pub time_flushes: u64,
    /// Words taken into the active keys.
    pub key_changes: u64,
    /// Parity retirements (crypto period changes seen).
    pub parity_switches: u64,
    /// Words for the parity on air, deferred until it retired.
    pub cw_deferred: u64,
    /// Words refused: equal to a retired word of their parity (a late
    /// duplicate of an old answer).
    pub late_cw_refused: u64,
    /// Deferred words taken early because the key on air proved wrong on a
    /// PES start and the deferred word proved right on the same packet.
    pub cw_healed: u64,
    /// Packets held back right now, waiting for a batch.
    pub held_packets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    Empty,
    /// Taken, no packet used it yet.
    Ready,
    OnAir,
    Retired,
}

/// One parity's side of the schedule.
struct Local {
    state: KeyState,
    /// Changes whenever the key changes (0: never a key).
    epoch: u32,
    cw: Option<[u8; 8]>,
    /// Generation of the last delivery looked at.
    seen_generation: u64,
    /// A word delivered while this parity was on air.
    pending: Option<Delivered>,
    retired: [Option<[u8; 8]>; RETIRED_MEMORY],
    next_retired: usize,
}

impl Local {
    fn new() -> Local {
        Local {
            state: KeyState::Empty,
            epoch: 0,
            cw: None,
            seen_generation: 0,
            pending: None,
            retired: [None; RETIRED_MEMORY],
            next_retired: 0,
        }
    }

    fn was_retired(&self, cw: &[u8; 8]) -> bool {
        self.retired.iter().any(|r| r.as_ref() == Some(cw))
    }
}

/// What a PID was last scrambled with.
#[derive(Debug, Clone, Copy)]
struct PidState {
    pid: u16,
    parity: Parity,
    /// Epoch of the key its last packet was descrambled with; 0 when it
    /// was left scrambled.
    epoch: u32,
    /// Parity switches (retirements) counted at its last packet.
    switches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pass,
    Descramble,
}

/// The descrambling stage of one channel.
pub struct Descrambler {
    slots: Arc<KeySlots>,
    policy: KeyPolicy,
    batch_timeout: Duration,
    slots_generation: Option<u64>,
    keys: Keys,
    even: Local,
    odd: Local,
    next_epoch: u32,
    pids: Vec<PidState>,
    engine: Option<Engine>,
    /// Packets held back: the first is scrambled and queued, the rest came
    /// after it; one mark per packet.
    held: Vec<u8>,
    marks: Vec<Mark>,
    queued: usize,
    held_since: Option<Instant>,
    out: Vec<u8>,
    stats: DescramblerStats,
}

impl std::fmt::Debug for Descrambler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descrambler")
            .field("policy", &self.policy)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Descrambler {
    pub fn new(slots: Arc<KeySlots>, policy: KeyPolicy) -> Descrambler {
        Descrambler {
            slots,
            policy,
            batch_timeout: DEFAULT_BATCH_TIMEOUT,
            slots_generation: None,
            keys: Keys::default(),
            even: Local::new(),
            odd: Local::new(),
            next_epoch: 1,
            pids: Vec::new(),
            engine: Some(Engine::new()),
            held: Vec::with_capacity(BATCH_SIZE * PACKET_SIZE),
            marks: Vec::with_capacity(BATCH_SIZE),
            queued: 0,
            held_since: None,
            out: Vec::new(),
            stats: DescramblerStats {
                batch_capacity: BATCH_SIZE as u64,
                ..Default::default()
            },
        }
    }

    /// How long a partly filled batch may wait (default 10 ms).
    pub fn with_batch_timeout(mut self, t: Duration) -> Descrambler {
        self.batch_timeout = t;
        self
    }

    pub fn slots(&self) -> &Arc<KeySlots> {
        &self.slots
    }

    pub fn stats(&self) -> DescramblerStats {
        let mut s = self.stats;
        s.held_packets = self.marks.len() as u64;
        s.fill_ratio = if s.batches == 0 {
            0.0
        } else {
            s.packets_in_batches as f64 / s.batches as f64 / s.batch_capacity.max(1) as f64
        };
        s
    }

    /// Packets held back now.
    pub fn held_packets(&self) -> usize {
        self.marks.len()
    }

    /// Descramble `buf` (188-byte packets that arrived at `now`) and replace
    /// it with the bytes released now, in order: possibly fewer (held for a
    /// batch), possibly more (held earlier). Call with an empty `buf` when
    /// no data came, so the time bound holds.
    pub fn process(&mut self, buf: &mut Vec<u8>, now: Instant) {
        self.refresh();
        let input = std::mem::take(buf);
        let whole = input.len() - input.len() % PACKET_SIZE;
        for pkt in input[..whole].chunks_exact(PACKET_SIZE) {
            let mark = self.classify(pkt);
            if self.marks.is_empty() && mark == Mark::Pass {
                self.out.extend_from_slice(pkt);
                continue;
            }
            if self.marks.is_empty() {
                self.held_since = Some(now);
            }
            self.held.extend_from_slice(pkt);
            self.marks.push(mark);
            if mark == Mark::Descramble {
                self.queued += 1;
            }
            if self.queued >= BATCH_SIZE || self.marks.len() >= MAX_HELD_PACKETS {
                self.run_held();
            }
        }
        if whole < input.len() {
            // Not a whole packet (the runner never gives one): passed on
            // in order rather than misaligning the held packets.
            self.stats.malformed += 1;
            self.stats.undecryptable += 1;
            self.run_held();
            self.out.extend_from_slice(&input[whole..]);
        }
        if let Some(t) = self.held_since {
            if now.saturating_duration_since(t) >= self.batch_timeout {
                self.stats.time_flushes += 1;
                self.run_held();
            }
        }
        let mut recycled = input;
        recycled.clear();
        *buf = std::mem::replace(&mut self.out, recycled);
    }

    /// Release everything held now (appended to `buf`): an idle channel
    /// being removed, the end of a file.
    pub fn flush(&mut self, buf: &mut Vec<u8>) {
        self.run_held();
        buf.extend_from_slice(&self.out);
        self.out.clear();
    }

    fn local(&mut self, p: Parity) -> &mut Local {
        match p {
            Parity::Even => &mut self.even,
            Parity::Odd => &mut self.odd,
        }
    }

    /// Look at the slots if they changed since the last look.
    fn refresh(&mut self) {
        let g = self.slots.generation();
        if self.slots_generation == Some(g) {
            return;
        }
        let snap = self.slots.snapshot();
        self.slots_generation = Some(g);
        for p in [Parity::Even, Parity::Odd] {
            match snap.get(p) {
                None => {
                    if self.local(p).cw.is_some() {
                        self.clear_key(p);
                    }
                }
                Some(d) => {
                    let l = self.local(p);
                    if d.generation != l.seen_generation {
                        l.seen_generation = d.generation;
                        self.offer(p, d);
                    }
                }
            }
        }
    }

    /// A word delivered for `p`: take it, defer it or refuse it.
    fn offer(&mut self, p: Parity, d: Delivered) {
        let (same, retired, state) = {
            let l = self.local(p);
            (l.cw == Some(d.cw), l.was_retired(&d.cw), l.state)
        };
        if same {
            // The slot came back to the word in use: nothing to defer.
            self.local(p).pending = None;
            return;
        }
        if self.policy == KeyPolicy::Fixed {
            self.adopt(p, d.cw);
            return;
        }
        if retired {
            self.stats.late_cw_refused += 1;
            return;
        }
        match state {
            KeyState::OnAir => {
                self.local(p).pending = Some(d);
                self.stats.cw_deferred += 1;
            }
            KeyState::Empty | KeyState::Ready | KeyState::Retired => self.adopt(p, d.cw),
        }
    }

    fn adopt(&mut self, p: Parity, cw: [u8; 8]) {
        // Held packets were classified with the old keys: run them first.
        self.run_held();
        self.keys.set(p, cw);
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1).max(1);
        let l = self.local(p);
        l.cw = Some(cw);
        l.epoch = epoch;
        l.state = KeyState::Ready;
        l.pending = None;
        self.stats.key_changes += 1;
    }

    fn clear_key(&mut self, p: Parity) {
        self.run_held();
        match p {
            Parity::Even => self.keys.even = None,
            Parity::Odd => self.keys.odd = None,
        }
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1).max(1);
        let l = self.local(p);
        l.cw = None;
        l.epoch = epoch;
        l.state = KeyState::Empty;
        l.pending = None;
    }

    /// `p` went off air: remember its word, take a deferred one.
    fn retire(&mut self, p: Parity) {
        self.stats.parity_switches += 1;
        let pending = {
            let l = self.local(p);
            l.state = KeyState::Retired;
            if let Some(cw) = l.cw {
                let i = l.next_retired;
                l.retired[i] = Some(cw);
                l.next_retired = (i + 1) % RETIRED_MEMORY;
            }
            l.pending.take().map(|d| (d, l.was_retired(&d.cw)))
        };
        match pending {
            Some((_, true)) => self.stats.late_cw_refused += 1,
            Some((d, false)) => self.adopt(p, d.cw),
            None => {}
        }
    }

    /// `pkt` starts a PES on parity `p`, which has a deferred word: if the
    /// key on air fails the start-code check on it and the deferred word
    /// passes, the key on air is an old word: take the deferred one now.
    fn heal_if_wrong(&mut self, pkt: &[u8], p: Parity) {
        let Some(pending) = self.local(p).pending else {
            return;
        };
        let opens = |keys: &Keys| {
            let mut trial = [0u8; PACKET_SIZE];
            trial.copy_from_slice(pkt);
            crate::ca::csa::descramble_packet(&mut trial, keys) == Outcome::Done
                && Packet::new_checked(&trial[..])
                    .is_ok_and(|t| t.payload().len() >= 3 && t.payload().starts_with(&[0, 0, 1]))
        };
        if opens(&self.keys) {
            return;
        }
        let mut candidate = Keys::default();
        candidate.set(p, pending.cw);
        if !opens(&candidate) {
            return;
        }
        // The wrong word is remembered as retired, so a late copy of the
        // answer that carried it is refused.
        let l = self.local(p);
        if let Some(cw) = l.cw {
            let i = l.next_retired;
            l.retired[i] = Some(cw);
            l.next_retired = (i + 1) % RETIRED_MEMORY;
        }
        self.stats.cw_healed += 1;
        self.adopt(p, pending.cw);
    }

    fn undecryptable(&mut self, o: Outcome) {
        let s = &mut self.stats;
        match o {
            Outcome::NoKey => s.no_key += 1,
            Outcome::Reserved => s.reserved += 1,
            Outcome::PesScrambled => s.pes_scrambled += 1,
            _ => s.malformed += 1,
        }
        s.undecryptable += 1;
    }

    /// Decide what happens to one packet, in stream order (which is also
    /// when the key schedule moves).
    fn classify(&mut self, pkt: &[u8]) -> Mark {
        let (sc, pid, offset) = match Packet::new_checked(pkt) {
            Ok(p) => (p.scrambling_control(), p.pid(), p.payload_offset()),
            Err(_) => {
                self.undecryptable(Outcome::Malformed);
                return Mark::Pass;
            }
        };
        let parity = match sc {
            0b00 => {
                if pes_scrambled(pkt, offset) {
                    self.undecryptable(Outcome::PesScrambled);
                }
                return Mark::Pass;
            }
            0b01 => {
                self.undecryptable(Outcome::Reserved);
                return Mark::Pass;
            }
            0b10 => Parity::Even,
            _ => Parity::Odd,
        };
        let has_key = self.keys.get(parity).is_some();
        if self.policy == KeyPolicy::Fixed {
            if has_key {
                return Mark::Descramble;
            }
            self.undecryptable(Outcome::NoKey);
            return Mark::Pass;
        }
        if has_key && pkt.get(1).is_some_and(|b| b & 0x40 != 0) {
            self.heal_if_wrong(pkt, parity);
        }
        let slot = self.pids.iter().position(|s| s.pid == pid);
        let prev = slot.map(|i| self.pids[i]);
        if let Some(prev) = prev {
            if prev.parity != parity {
                // This PID switched: the key it used is done.
                let q = self.local(prev.parity);
                if q.state == KeyState::OnAir && q.epoch == prev.epoch {
                    self.retire(prev.parity);
                }
            }
        }
        let switches = self.stats.parity_switches;
        let l = self.local(parity);
        let live = matches!(l.state, KeyState::Ready | KeyState::OnAir);
        let usable = has_key
            && match prev {
                // The PID stays on this parity.
                Some(s) if s.parity == parity => match switches - s.switches {
                    // Same period (or its word came while it was stale).
                    0 => s.epoch == l.epoch || live,
                    // This parity went off air just now and the PID has
                    // not switched yet: a straggler of the old period,
                    // for the key it had.
                    1 if l.state == KeyState::Retired => s.epoch == l.epoch,
                    // The PID carried nothing for a whole period (audio
                    // comes in bursts): this is a new period of the parity.
                    _ => live,
                },
                // A new period on this PID: only a word taken for it.
                _ => live,
            };
        let epoch = if usable { l.epoch } else { 0 };
        if usable && l.state == KeyState::Ready {
            l.state = KeyState::OnAir;
        }
        let st = PidState {
            pid,
            parity,
            epoch,
            switches,
        };
        match slot {
            Some(i) => self.pids[i] = st,
            None if self.pids.len() < MAX_PIDS => self.pids.push(st),
            // More PIDs than a service has: each packet of the others is
            // judged as the first of its PID.
            None => {}
        }
        if usable {
            Mark::Descramble
        } else if !has_key {
            self.undecryptable(Outcome::NoKey);
            Mark::Pass
        } else {
            self.stats.stale_key += 1;
            self.stats.undecryptable += 1;
            Mark::Pass
        }
    }

    /// Descramble the held packets marked for it and release everything
    /// held, in order.
    fn run_held(&mut self) {
        if self.marks.is_empty() {
            return;
        }
        if self.queued > 0 {
            let engine = self.engine.take().unwrap_or_default();
            let mut batch = Batch::with_engine(engine);
            let mut in_batch = 0u64;
            let mut starts: Vec<usize> = Vec::new();
            for (i, raw) in self.held.chunks_exact_mut(PACKET_SIZE).enumerate() {
                if self.marks.get(i) != Some(&Mark::Descramble) {
                    continue;
                }
                let pes_start = raw.get(1).is_some_and(|b| b & 0x40 != 0);
                match batch.push(raw, &self.keys) {
                    Pushed::Queued => {
                        in_batch += 1;
                        self.stats.descrambled += 1;
                        if pes_start {
                            starts.push(i);
                        }
                    }
                    Pushed::Finished(Outcome::Done) => {
                        // Payload too short to be scrambled: sent in clear.
                        self.stats.descrambled += 1;
                        if pes_start {
                            starts.push(i);
                        }
                    }
                    Pushed::Finished(Outcome::Clear) => {}
                    Pushed::Finished(o) => {
                        let s = &mut self.stats;
                        match o {
                            Outcome::NoKey => s.no_key += 1,
                            Outcome::Reserved => s.reserved += 1,
                            Outcome::PesScrambled => s.pes_scrambled += 1,
                            _ => s.malformed += 1,
                        }
                        s.undecryptable += 1;
                    }
                    // One Keys for the whole batch: cannot happen; counted
                    // all the same (the packet stays scrambled).
                    Pushed::OtherKeys(_) => {
                        self.stats.malformed += 1;
                        self.stats.undecryptable += 1;
                    }
                }
            }
            self.engine = Some(batch.into_engine());
            if in_batch > 0 {
                self.stats.batches += 1;
                self.stats.packets_in_batches += in_batch;
            }
            for i in starts {
                let raw = &self.held[i * PACKET_SIZE..(i + 1) * PACKET_SIZE];
                if let Ok(p) = Packet::new_checked(raw) {
                    let payload = p.payload();
                    if payload.len() >= 3 && !payload.starts_with(&[0, 0, 1]) {
                        self.stats.wrong_key += 1;
                        self.stats.undecryptable += 1;
                    }
                }
            }
        }
        self.out.extend_from_slice(&self.held);
        self.held.clear();
        self.marks.clear();
        self.queued = 0;
        self.held_since = None;
    }
}

/// A clear packet starting a PES whose PES_scrambling_control (ISO/IEC
/// 13818-1 §2.4.3.7) is not 00: the rule `csa::descramble_packet` applies.
fn pes_scrambled(pkt: &[u8], offset: usize) -> bool {
    if pkt.get(1).is_none_or(|b| b & 0x40 == 0) || pkt.get(3).is_none_or(|b| b & 0x10 == 0) {
        return false;
    }
    let p = pkt.get(offset..).unwrap_or(&[]);
    if p.len() < 7 || p[0..3] != [0, 0, 1] {
        return false;
    }
    // Streams without the optional PES header.
    if matches!(p[3], 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xFF | 0xF2 | 0xF8) {
        return false;
    }
    p[6] & 0xC0 == 0x80 && p[6] & 0x30 != 0
}

#[cfg(test)]
mod tests;
