//! How a new client joins a running stream: the PSI prefix with continuity
//! counters that line up with what follows, and the per-PID start filter.
//!
//! Promises: every packet handed out is a whole 188-byte packet copied from
//! the ring or the prefix; nothing here allocates more than one chunk's worth
//! per call; the filter gives up after `FILTER_LIMIT` bytes so a PID that
//! never starts cannot keep a client in the copying path forever.

use crate::ts::{Packet, PACKET_SIZE};

use super::Chunk;

/// Bytes after which the start filter stops, whatever has started (~1 MiB).
pub const FILTER_LIMIT: u64 = 1 << 20;

/// A set of the 8192 PIDs.
#[derive(Clone)]
pub(crate) struct PidSet([u64; 128]);

impl PidSet {
    pub fn new() -> PidSet {
        PidSet([0; 128])
    }
    pub fn insert(&mut self, pid: u16) {
        let p = (pid & 0x1FFF) as usize;
        self.0[p / 64] |= 1 << (p % 64);
    }
    pub fn contains(&self, pid: u16) -> bool {
        let p = (pid & 0x1FFF) as usize;
        self.0[p / 64] & (1 << (p % 64)) != 0
    }
    /// Every PID of `self` is in `other`.
    pub fn is_subset(&self, other: &PidSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

/// PIDs present in the PSI prefix, in order of first appearance.
pub(crate) fn prefix_pids(psi: &[u8]) -> Vec<u16> {
    let mut pids = Vec::new();
    for p in psi.chunks_exact(PACKET_SIZE) {
        if let Ok(p) = Packet::new_checked(p) {
            if !pids.contains(&p.pid()) {
                pids.push(p.pid());
            }
        }
    }
    pids
}

/// Where the reader is in finding the continuity_counter that each prefix PID
/// must lead into.
pub(crate) struct PrefixPlan {
    pub psi: std::sync::Arc<Vec<u8>>,
    pub pids: Vec<u16>,
    /// For each of `pids`, the CC of the first packet of that PID the client
    /// will actually receive (its first payload_unit_start packet, since PSI
    /// PIDs are filtered to start at a section).
    pub next_cc: Vec<Option<u8>>,
}

impl PrefixPlan {
    pub fn new(psi: std::sync::Arc<Vec<u8>>) -> PrefixPlan {
        let pids = prefix_pids(&psi);
        let next_cc = vec![None; pids.len()];
        PrefixPlan { psi, pids, next_cc }
    }

    /// Look through `chunks` (in stream order, from the client's start) for
    /// the first section start of each prefix PID. Returns the bytes scanned.
    pub fn scan(&mut self, chunks: &[std::sync::Arc<Chunk>]) -> u64 {
        let mut scanned = 0u64;
        for c in chunks {
            for p in c.data.chunks_exact(PACKET_SIZE) {
                let Ok(p) = Packet::new_checked(p) else {
                    continue;
                };
                if !p.payload_unit_start() {
                    continue;
                }
                if let Some(i) = self.pids.iter().position(|&x| x == p.pid()) {
                    if self.next_cc[i].is_none() {
                        self.next_cc[i] = Some(p.continuity_counter());
                    }
                }
            }
            scanned += c.data.len() as u64;
            if self.complete() {
                break;
            }
        }
        scanned
    }

    pub fn complete(&self) -> bool {
        self.next_cc.iter().all(|c| c.is_some())
    }

    /// The prefix with CCs rewritten: the last packet of each PID gets one
    /// less than the CC that follows, earlier ones count back from there.
    /// PIDs whose follower was not found keep the remux's own CCs.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.psi.as_ref().clone();
        out.truncate(out.len() / PACKET_SIZE * PACKET_SIZE);
        for (i, &pid) in self.pids.iter().enumerate() {
            let Some(next) = self.next_cc[i] else {
                continue;
            };
            let count = out
                .chunks_exact(PACKET_SIZE)
                .filter(|p| {
                    Packet::new_checked(*p)
                        .map(|p| p.pid() == pid)
                        .unwrap_or(false)
                })
                .count() as u8;
            let mut cc = next.wrapping_sub(count) & 0x0F;
            for p in out.chunks_exact_mut(PACKET_SIZE) {
                if let Ok(mut p) = Packet::new_checked(p) {
                    if p.pid() == pid {
                        p.set_continuity_counter(cc);
                        cc = (cc + 1) & 0x0F;
                    }
                }
            }
        }
        out
    }
}

/// Drops packets of each PID until that PID can be decoded from where the
/// client joins: a PES start for elementary streams, a section start for PSI.
pub(crate) struct StartFilter {
    started: PidSet,
    seen: PidSet,
    /// PIDs that must have started before the filter may stop early.
    required: Vec<u16>,
    filtered_bytes: u64,
    first_chunk: bool,
    pub dropped_packets: u64,
}

impl StartFilter {
    pub fn new(required: Vec<u16>) -> StartFilter {
        StartFilter {
            started: PidSet::new(),
            seen: PidSet::new(),
            required,
            filtered_bytes: 0,
            first_chunk: true,
            dropped_packets: 0,
        }
    }

    /// Copy the packets of `chunk` the client may receive into `out`.
    /// Returns true when filtering is over (the caller then stops calling).
    pub fn filter(&mut self, chunk: &Chunk, out: &mut Vec<u8>) -> bool {
        let first = std::mem::replace(&mut self.first_chunk, false);
        for (i, raw) in chunk.data.chunks_exact(PACKET_SIZE).enumerate() {
            let Ok(p) = Packet::new_checked(raw) else {
                // Not ours to judge: the remux wrote it; pass it on.
                out.extend_from_slice(raw);
                continue;
            };
            let pid = p.pid();
            // The entry point's own PID (the video) starts at the entry point:
            // the keyframe detector has already chosen a decodable start.
            if first && i == 0 && chunk.entry_point {
                self.started.insert(pid);
            }
            if !self.started.contains(pid) && p.has_payload() {
                self.seen.insert(pid);
                if p.payload_unit_start() {
                    self.started.insert(pid);
                } else {
                    self.dropped_packets += 1;
                    continue;
                }
            }
            out.extend_from_slice(raw);
        }
        self.filtered_bytes += chunk.data.len() as u64;
        self.done()
    }

    fn done(&self) -> bool {
        if self.filtered_bytes >= FILTER_LIMIT {
            return true;
        }
        let required = self.required.iter().all(|&p| self.started.contains(p));
        required && self.seen.is_subset(&self.started)
    }
}
