//! The fan-out ring between one channel's writer (the remux) and its HTTP
//! clients. "The ring is chunks, not bytes": the writer cuts the stream into
//! shared immutable [`Chunk`]s (tens of KB, cut at video entry points), the
//! ring keeps the newest ones within a byte budget, and each client holds
//! only a read index (a [`Reader`]).
//!
//! Promises:
//! - Memory is bounded per channel by `RingConfig::max_bytes` (plus the one
//!   chunk being filled and at most one chunk held by each slow reader),
//!   whatever the number of clients.
//! - The writer never waits for a reader: the ring's mutex is held only to
//!   push or clone an `Arc`; a reader whose index fell off the tail is cut
//!   (`Next::Lagged`) and counted.
//! - A client joining at an entry point gets PAT+PMT first, with continuity
//!   counters that run into the stream without a CC error, then each PID from
//!   a point where it can be decoded (see `start.rs`).
//! - Every drop has a counter in [`RingStats`]. No `unsafe`.
//! - A ring whose channel is gone is closed ([`Ring::close`]): each reader
//!   gets what was published, then [`Next::Closed`], so a client sees the
//!   end of the stream instead of waiting forever.

mod start;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ts::PACKET_SIZE;

pub use start::FILTER_LIMIT;
use start::{PrefixPlan, StartFilter};

/// One piece of the stream: whole transport packets, immutable once published.
#[derive(Debug)]
pub struct Chunk {
    /// Consecutive from 0 in publishing order; the reader's index.
    pub seq: u64,
    /// Whole 188-byte packets.
    pub data: Vec<u8>,
    /// The first packet is a video entry point (keyframe start).
    pub entry_point: bool,
    /// Stream bytes published before this chunk (lag in bytes is a subtraction).
    pub offset: u64,
    /// When the chunk was published (lag in time).
    pub published: Instant,
}

/// Sizes and time bound of one ring.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Budget for the chunks kept (allocated bytes). Sized for the longest
    /// GOP plus how far behind a client may fall before it is cut.
    pub max_bytes: usize,
    /// Target chunk size; a chunk is cut when it reaches this (≥ 16 KiB so
    /// HTTP writes stay large).
    pub chunk_bytes: usize,
    /// The longest a packet waits in the chunk being filled (radio channels).
    pub max_delay: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            max_bytes: 8 << 20,
            chunk_bytes: 32 << 10,
            max_delay: Duration::from_millis(50),
        }
    }
}

/// Counters of one ring, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct RingStats {
    pub bytes_in: AtomicU64,
    pub packets_in: AtomicU64,
    /// Chunks published.
    pub chunks: AtomicU64,
    pub entry_points: AtomicU64,
    /// Chunks dropped from the tail to stay within `max_bytes`.
    pub chunks_dropped_by_budget: AtomicU64,
    pub bytes_dropped_by_budget: AtomicU64,
    /// Trailing bytes of a `push` that were not a whole packet.
    pub bytes_dropped_partial: AtomicU64,
    /// Packets a joining client skipped until its PID started.
    pub packets_skipped_at_start: AtomicU64,
    pub psi_updates: AtomicU64,
    pub clients_now: AtomicU64,
    pub clients_total: AtomicU64,
    pub clients_cut_lagging: AtomicU64,
    pub clients_cut_timeout: AtomicU64,
}

/// A plain copy of [`RingStats`] plus the ring's current occupancy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RingStatsSnapshot {
    pub bytes_in: u64,
    pub packets_in: u64,
    pub chunks: u64,
    pub entry_points: u64,
    pub chunks_dropped_by_budget: u64,
    pub bytes_dropped_by_budget: u64,
    pub bytes_dropped_partial: u64,
    pub packets_skipped_at_start: u64,
    pub psi_updates: u64,
    pub clients_now: u64,
    pub clients_total: u64,
    pub clients_cut_lagging: u64,
    pub clients_cut_timeout: u64,
    /// Chunks and allocated bytes held now.
    pub chunks_held: u64,
    pub bytes_held: u64,
}

/// Where a new reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// PSI prefix, then the newest entry point in the ring (or the newest
    /// chunk), with the per-PID start filter. What an HTTP client gets.
    LatestEntryPoint,
    /// The raw stream from the next chunk published: no prefix, no filter.
    Live,
}

/// Bytes handed to a reader: a shared chunk (no copy) or an owned buffer
/// (the PSI prefix and chunks passed through the start filter).
#[derive(Debug, Clone)]
pub enum Piece {
    Shared(Arc<Chunk>),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Shared(c) => &c.data,
            Piece::Owned(v) => v,
        }
    }
}

/// What [`Reader::next`] found.
#[derive(Debug)]
pub enum Next {
    /// The next bytes to send; never empty.
    Data(Piece),
    /// Nothing new yet; a notifier fires when a chunk is published.
    Pending,
    /// The reader's position was dropped from the ring: cut the client.
    Lagged { behind_bytes: u64 },
    /// The ring was closed (its channel removed) and this reader has had
    /// everything published: end the client's response.
    Closed,
}

/// Identifies a registered notifier, for [`Ring::remove_notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyId(u64);

type Notify = Box<dyn Fn() + Send + Sync>;

struct Inner {
    chunks: VecDeque<Arc<Chunk>>,
    /// Allocated bytes of `chunks`.
    bytes: usize,
    next_seq: u64,
    /// Stream bytes published so far.
    total: u64,
    psi: Arc<Vec<u8>>,
    /// No more chunks are coming: readers end after the last one.
    closed: bool,
    /// Readers subscribed before the last `hang_up` end at once.
    hangup_epoch: u64,
    /// Why new readers are refused now (`hang_up` until `resume`).
    held: Option<String>,
}

/// The bounded broadcast queue of one channel. Share it as `Arc<Ring>`.
pub struct Ring {
    cfg: RingConfig,
    inner: Mutex<Inner>,
    notify: Mutex<(u64, Vec<(u64, Notify)>)>,
    stats: RingStats,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("cfg", &self.cfg).finish()
    }
}

/// Poisoning only means another thread panicked while holding the lock; the
/// data (a queue of Arcs) is still consistent, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ring {
    pub fn new(cfg: RingConfig) -> Arc<Ring> {
        let cfg = RingConfig {
            chunk_bytes: cfg.chunk_bytes.max(16 << 10),
            max_bytes: cfg.max_bytes.max(cfg.chunk_bytes),
            ..cfg
        };
        Arc::new(Ring {
            cfg,
            inner: Mutex::new(Inner {
                chunks: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                total: 0,
                psi: Arc::new(Vec::new()),
                closed: false,
                hangup_epoch: 0,
                held: None,
            }),
            notify: Mutex::new((0, Vec::new())),
            stats: RingStats::default(),
        })
    }

    pub fn config(&self) -> RingConfig {
        self.cfg
    }

    /// A chunk is filled up to the first whole packet at or past
    /// `chunk_bytes`: allocate exactly that, so the budget (which counts
    /// allocated bytes) holds as much stream as it says.
    fn chunk_capacity(&self) -> usize {
        self.cfg.chunk_bytes.div_ceil(PACKET_SIZE) * PACKET_SIZE
    }

    /// The writer for this ring; one per channel thread.
    pub fn writer(self: &Arc<Self>) -> ChunkWriter {
        ChunkWriter {
            ring: self.clone(),
            buf: Vec::with_capacity(self.chunk_capacity()),
            entry_point: false,
            since: None,
        }
    }

    /// Replace the PSI prefix given to joining clients: PAT packet(s) then
    /// PMT packet(s), whole packets. The remux calls this when either changes.
    pub fn set_psi(&self, pat_pmt_packets: Vec<u8>) {
        lock(&self.inner).psi = Arc::new(pat_pmt_packets);
        self.stats.psi_updates.fetch_add(1, Relaxed);
    }

    /// Register a function called after each publish (e.g. a mio::Waker).
    /// It runs on the writer's thread: it must be quick and never block.
    pub fn add_notify(&self, f: Box<dyn Fn() + Send + Sync>) -> NotifyId {
        let mut n = lock(&self.notify);
        n.0 += 1;
        let id = n.0;
        n.1.push((id, f));
        NotifyId(id)
    }

    pub fn remove_notify(&self, id: NotifyId) {
        lock(&self.notify).1.retain(|(i, _)| *i != id.0);
    }

    pub fn stats(&self) -> &RingStats {
        &self.stats
    }

    pub fn snapshot(&self) -> RingStatsSnapshot {
        let (chunks_held, bytes_held) = {
            let i = lock(&self.inner);
            (i.chunks.len() as u64, i.bytes as u64)
        };
        let s = &self.stats;
        RingStatsSnapshot {
            bytes_in: s.bytes_in.load(Relaxed),
            packets_in: s.packets_in.load(Relaxed),
            chunks: s.chunks.load(Relaxed),
            entry_points: s.entry_points.load(Relaxed),
            chunks_dropped_by_budget: s.chunks_dropped_by_budget.load(Relaxed),
            bytes_dropped_by_budget: s.bytes_dropped_by_budget.load(Relaxed),
            bytes_dropped_partial: s.bytes_dropped_partial.load(Relaxed),
            packets_skipped_at_start: s.packets_skipped_at_start.load(Relaxed),
            psi_updates: s.psi_updates.load(Relaxed),
            clients_now: s.clients_now.load(Relaxed),
            clients_total: s.clients_total.load(Relaxed),
            clients_cut_lagging: s.clients_cut_lagging.load(Relaxed),
            clients_cut_timeout: s.clients_cut_timeout.load(Relaxed),
            chunks_held,
            bytes_held,
        }
    }

    /// The channel is gone: readers get what was published, then
    /// `Next::Closed`. Waiting readers are woken (the notifiers run) to see
    /// it. Idempotent.
    pub fn close(&self) {
        {
            let mut i = lock(&self.inner);
            if i.closed {
                return;
            }
            i.closed = true;
        }
        for (_, f) in lock(&self.notify).1.iter() {
            f();
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    /// End every current reader now (`Next::Closed`) and refuse new ones
    /// (the server answers 503 with `why`) until `resume`: a channel on
    /// its slate past `close_after`, for media servers that fail over
    /// themselves. The ring keeps taking chunks.
    pub fn hang_up(&self, why: String) {
        {
            let mut i = lock(&self.inner);
            i.hangup_epoch += 1;
            i.held = Some(why);
        }
        for (_, f) in lock(&self.notify).1.iter() {
            f();
        }
    }

    /// Take readers again after `hang_up`.
    pub fn resume(&self) {
        lock(&self.inner).held = None;
    }

    /// Why new readers are refused, while they are.
    pub fn held(&self) -> Option<String> {
        lock(&self.inner).held.clone()
    }

    /// Stream bytes published so far.
    pub fn total_bytes(&self) -> u64 {
        lock(&self.inner).total
    }

    fn publish(&self, mut data: Vec<u8>, entry_point: bool) {
        // Account allocated bytes, not length: a chunk cut early by an entry
        // point or the time bound would otherwise hide most of its capacity.
        if data.len() < data.capacity() / 2 {
            data.shrink_to_fit();
        }
        let len = data.len() as u64;
        {
            let mut i = lock(&self.inner);
            let chunk = Arc::new(Chunk {
                seq: i.next_seq,
                data,
                entry_point,
                offset: i.total,
                published: Instant::now(),
            });
            i.next_seq += 1;
            i.total += len;
            i.bytes += chunk.data.capacity();
            i.chunks.push_back(chunk);
            // Oldest first. The newest entry point survives as long as it and
            // everything after it fit the budget; the newest chunk always does.
            while i.bytes > self.cfg.max_bytes && i.chunks.len() > 1 {
                if let Some(old) = i.chunks.pop_front() {
                    i.bytes -= old.data.capacity();
                    self.stats.chunks_dropped_by_budget.fetch_add(1, Relaxed);
                    self.stats
                        .bytes_dropped_by_budget
                        .fetch_add(old.data.len() as u64, Relaxed);
                }
            }
        }
        self.stats.chunks.fetch_add(1, Relaxed);
        if entry_point {
            self.stats.entry_points.fetch_add(1, Relaxed);
        }
        for (_, f) in lock(&self.notify).1.iter() {
            f();
        }
    }

    /// A new reader. `LatestEntryPoint` starts at the newest entry-point chunk
    /// (or the newest chunk, or the next one if the ring is empty).
    pub fn subscribe(self: &Arc<Self>, start: StartAt) -> Reader {
        let (next_seq, offset, psi, epoch) = {
            let i = lock(&self.inner);
            let epoch = i.hangup_epoch;
            let start_chunk = match start {
                StartAt::Live => None,
                StartAt::LatestEntryPoint => i
                    .chunks
                    .iter()
                    .rev()
                    .find(|c| c.entry_point)
                    .or_else(|| i.chunks.back()),
            };
            match start_chunk {
                Some(c) => (c.seq, c.offset, i.psi.clone(), epoch),
                None => (i.next_seq, i.total, i.psi.clone(), epoch),
            }
        };
        self.stats.clients_now.fetch_add(1, Relaxed);
        self.stats.clients_total.fetch_add(1, Relaxed);
        let (prefix, filter) = match start {
            StartAt::Live => (None, None),
            StartAt::LatestEntryPoint => {
                let plan = PrefixPlan::new(psi);
                let mut required = plan.pids.clone();
                if required.is_empty() {
                    required.push(crate::ts::pid::PAT);
                }
                let prefix = if plan.psi.len() >= PACKET_SIZE {
                    Some(plan)
                } else {
                    None
                };
                (prefix, Some(StartFilter::new(required)))
            }
        };
        Reader {
            ring: self.clone(),
            next_seq,
            offset,
            prefix,
            filter,
            cut: false,
            epoch,
        }
    }
}

/// The channel thread's handle: accumulates packets and publishes chunks.
pub struct ChunkWriter {
    ring: Arc<Ring>,
    buf: Vec<u8>,
    entry_point: bool,
    /// When the first packet of `buf` arrived.
    since: Option<Instant>,
}

impl ChunkWriter {
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Append one or more whole packets. `entry_point_at_start`: the first
    /// packet starts a video entry point, so a new chunk begins with it.
    /// A trailing partial packet is dropped and counted.
    pub fn push(&mut self, packets: &[u8], entry_point_at_start: bool) {
        let whole = packets.len() / PACKET_SIZE * PACKET_SIZE;
        if whole < packets.len() {
            self.ring
                .stats
                .bytes_dropped_partial
                .fetch_add((packets.len() - whole) as u64, Relaxed);
        }
        let mut rest = &packets[..whole];
        if rest.is_empty() {
            return;
        }
        let stats = &self.ring.stats;
        stats.bytes_in.fetch_add(whole as u64, Relaxed);
        stats
            .packets_in
            .fetch_add((whole / PACKET_SIZE) as u64, Relaxed);
        if entry_point_at_start {
            self.flush();
            self.entry_point = true;
        }
        let target = self.ring.cfg.chunk_bytes;
        while !rest.is_empty() {
            if self.buf.is_empty() {
                self.since = Some(Instant::now());
            }
            let room = target.saturating_sub(self.buf.len());
            // Round up to a packet so chunks stay whole packets.
            let room = room.div_ceil(PACKET_SIZE).max(1) * PACKET_SIZE;
            let n = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() >= target {
                self.flush();
            }
        }
    }

    /// Publish the chunk being filled if its first packet waited `max_delay`.
    pub fn flush_if_older(&mut self, now: Instant, max_delay: Duration) {
        if let Some(t) = self.since {
            if now.saturating_duration_since(t) >= max_delay {
                self.flush();
            }
        }
    }

    /// Publish the chunk being filled, if any.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let data = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(self.ring.chunk_capacity()),
        );
        let ep = std::mem::replace(&mut self.entry_point, false);
        self.since = None;
        self.ring.publish(data, ep);
    }
}

/// One client's position in the ring.
pub struct Reader {
    ring: Arc<Ring>,
    next_seq: u64,
    /// Stream offset of chunk `next_seq`.
    offset: u64,
    prefix: Option<PrefixPlan>,
    filter: Option<StartFilter>,
    cut: bool,
    /// The ring's hang-up epoch when subscribed.
    epoch: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("next_seq", &self.next_seq)
            .field("offset", &self.offset)
            .field("cut", &self.cut)
            .finish()
    }
}

impl Reader {
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The next bytes for this client. Never blocks beyond the ring's mutex.
    // Not an Iterator: `Pending` is not the end, and `Lagged` is final.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next {
        loop {
            if self.cut {
                return Next::Lagged {
                    behind_bytes: self.ring.total_bytes().saturating_sub(self.offset),
                };
            }
            if let Some(plan) = &mut self.prefix {
                // Wait until the first section start of every PSI PID is in
                // the ring (PAT/PMT repeat at least every 0.5 s), or give up
                // on the ones missing after FILTER_LIMIT bytes.
                let (chunks, lagged) = self.ring.chunks_from(self.next_seq, FILTER_LIMIT);
                if lagged {
                    self.cut_lagging();
                    continue;
                }
                let scanned = plan.scan(&chunks);
                if !plan.complete() && scanned < FILTER_LIMIT {
                    // A closed ring will not bring the missing tables.
                    return if self.ring.is_closed() || self.hung_up() {
                        Next::Closed
                    } else {
                        Next::Pending
                    };
                }
                let bytes = plan.build();
                self.prefix = None;
                if !bytes.is_empty() {
                    return Next::Data(Piece::Owned(bytes));
                }
            }
            let chunk = {
                let i = lock(&self.ring.inner);
                if i.hangup_epoch != self.epoch {
                    return Next::Closed;
                }
                let front = i.chunks.front().map(|c| c.seq).unwrap_or(i.next_seq);
                if self.next_seq < front {
                    None
                } else {
                    match i.chunks.get((self.next_seq - front) as usize) {
                        Some(c) => Some(c.clone()),
                        None if i.closed => return Next::Closed,
                        None => return Next::Pending,
                    }
                }
            };
            let Some(chunk) = chunk else {
                self.cut_lagging();
                continue;
            };
            self.next_seq = chunk.seq + 1;
            self.offset = chunk.offset + chunk.data.len() as u64;
            let Some(filter) = &mut self.filter else {
                return Next::Data(Piece::Shared(chunk));
            };
            let mut out = Vec::with_capacity(chunk.data.len());
            let before = filter.dropped_packets;
            let done = filter.filter(&chunk, &mut out);
            self.ring
                .stats
                .packets_skipped_at_start
                .fetch_add(filter.dropped_packets - before, Relaxed);
            if done {
                self.filter = None;
            }
            if out.len() == chunk.data.len() {
                // Nothing dropped: hand out the shared chunk, not the copy.
                return Next::Data(Piece::Shared(chunk));
            }
            if !out.is_empty() {
                return Next::Data(Piece::Owned(out));
            }
        }
    }

    /// Has this reader's next chunk already been dropped from the ring? Call
    /// it for a client whose socket is full (it is not calling `next`): then
    /// it is cut and counted here, and `next` returns `Lagged` from now on.
    pub fn check_lagging(&mut self) -> Option<u64> {
        if !self.cut {
            let i = lock(&self.ring.inner);
            let front = i.chunks.front().map(|c| c.seq).unwrap_or(i.next_seq);
            let fell_off = self.next_seq < front;
            drop(i);
            if fell_off {
                self.cut_lagging();
            }
        }
        self.cut
            .then(|| self.ring.total_bytes().saturating_sub(self.offset))
    }

    fn cut_lagging(&mut self) {
        if !self.cut {
            self.cut = true;
            self.ring.stats.clients_cut_lagging.fetch_add(1, Relaxed);
        }
    }

    fn hung_up(&self) -> bool {
        lock(&self.ring.inner).hangup_epoch != self.epoch
    }

    /// The HTTP side cut this client for making no write progress.
    pub fn note_cut_timeout(&self) {
        self.ring.stats.clients_cut_timeout.fetch_add(1, Relaxed);
    }

    /// Stream bytes published that this reader has not taken yet, and how
    /// long ago its next chunk was published (zero when it is up to date).
    pub fn lag(&self) -> (u64, Duration) {
        let i = lock(&self.ring.inner);
        let bytes = i.total.saturating_sub(self.offset);
        let front = i.chunks.front().map(|c| c.seq).unwrap_or(i.next_seq);
        let age = self
            .next_seq
            .checked_sub(front)
            .and_then(|k| i.chunks.get(k as usize))
            .map(|c| c.published.elapsed())
            .unwrap_or_default();
        (bytes, age)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.ring.stats.clients_now.fetch_sub(1, Relaxed);
    }
}

impl Ring {
    /// Clones of the chunks from `seq` on, up to about `limit` bytes; true
    /// if `seq` already fell off the tail.
    fn chunks_from(&self, seq: u64, limit: u64) -> (Vec<Arc<Chunk>>, bool) {
        let i = lock(&self.inner);
        let front = i.chunks.front().map(|c| c.seq).unwrap_or(i.next_seq);
        if seq < front {
            return (Vec::new(), true);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for c in i.chunks.iter().skip((seq - front) as usize) {
            if bytes >= limit {
                break;
            }
            bytes += c.data.len() as u64;
            out.push(c.clone());
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests;
