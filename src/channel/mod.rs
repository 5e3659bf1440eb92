//! Channels: what a client asks for. A `Channel` owns its fan-out ring
//! and the writer into it, knows its sources in order of preference, and
//! decides which of them is on air; its state and the reason for it, in
//! words, are a pure function of what its sources report (`state`).
//!
//! Sources feed a channel through the narrow `source::ChannelSink` it
//! implements (`write(source_index, packets)`): a mux runner's thread, a
//! remote stream's thread or the slate may each call it. The active source
//! and the ring writer sit behind one short lock, held only for the copy
//! into the ring; no extra thread per channel.

pub mod health;
pub mod slate;
pub mod state;

pub use crate::source::runner::{list_some, LISTED_SERVICES};
pub use crate::source::StreamStatus;
pub use state::ChannelState;

use crate::ca::descrambler::DescramblerStats;
use crate::ca::CaStatus;
use crate::config::ChannelConfig;
use crate::fanout::{ChunkWriter, Ring};
use crate::remux::{DemuxStats, ProgramStats};
use crate::source::{ChannelSink, SourceReport, SourceStats};
use crate::ts::es::EntryPointGate;
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pmt::VideoCodec;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an operator needs to know about a channel: the active source's
/// view, refreshed whenever a source reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChannelStatus {
    pub state: ChannelState,
    /// Plain words: why the channel is not up ("source: … not a transport
    /// stream", "no service 4 in the mux (services: 1, 2, 3)").
    pub reason: String,
    /// The source on air: its index among the channel's sources.
    pub active_source: usize,
    pub source: String,
    pub service_name: Option<String>,
    pub provider: Option<String>,
    pub program: u16,
    pub pmt_pid: Option<u16>,
    pub pmt_version: Option<u8>,
    pub streams: Vec<StreamStatus>,
    pub program_stats: ProgramStats,
    pub mux_stats: DemuxStats,
    pub source_stats: SourceStats,
    pub entry_points: u64,
    /// ES PIDs named in the PMT that have carried no packet (after a grace
    /// period of 2 s from the PMT's arrival).
    pub missing_pids: Vec<u16>,
    /// When the channel last wrote into its ring.
    #[serde(skip)]
    pub last_data: Option<Instant>,
    pub source_errors: u64,
    /// Descrambling counts when the channel is descrambled (BISS or a CA
    /// session); never a key.
    pub descrambler: Option<DescramblerStats>,
    /// The CA session's state (never a control word).
    pub ca: Option<CaStatus>,
    /// Every source of the channel, in order of preference.
    pub sources: Vec<SourceSummary>,
}

/// One source of a channel, in words.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub state: ChannelState,
    pub reason: String,
}

/// The most sources a channel may list (the config refuses more): the
/// per-source tables of a channel are this long at most.
pub const MAX_SOURCES: usize = 8;

/// The output side of a channel: the active source and the ring writer,
/// behind one short lock.
struct Output {
    active: usize,
    writer: ChunkWriter,
    gate: Option<EntryPointGate>,
    video: Option<(u16, VideoCodec)>,
    /// A partly filled chunk goes out after this long (`flush_ms`).
    flush: Duration,
    /// When each source last delivered a packet.
    last_data: [Option<Instant>; MAX_SOURCES],
}

/// A channel: config, ring, status. Shared between its sources' feeding
/// threads and HTTP.
pub struct Channel {
    pub config: Mutex<ChannelConfig>,
    pub ring: Arc<Ring>,
    pub status: Mutex<ChannelStatus>,
    out: Mutex<Output>,
    /// Each source's last report.
    reports: Mutex<Vec<Option<SourceReport>>>,
}

impl Channel {
    pub fn new(config: ChannelConfig, ring: Arc<Ring>, flush: Duration) -> Arc<Channel> {
        let program = config.sources.first().map(|s| s.program).unwrap_or(0);
        let sources: Vec<SourceSummary> = config
            .sources
            .iter()
            .take(MAX_SOURCES)
            .map(|s| SourceSummary {
                source: s.describe(),
                ..Default::default()
            })
            .collect();
        let n = sources.len();
        let writer = ring.writer();
        Arc::new(Channel {
            config: Mutex::new(config),
            ring,
            status: Mutex::new(ChannelStatus {
                program,
                source: sources
                    .first()
                    .map(|s| s.source.clone())
                    .unwrap_or_default(),
                sources,
                ..Default::default()
            }),
            out: Mutex::new(Output {
                active: 0,
                writer,
                gate: None,
                video: None,
                flush,
                last_data: [None; MAX_SOURCES],
            }),
            reports: Mutex::new(vec![None; n]),
        })
    }

    pub fn name(&self) -> String {
        lock(&self.config).name.clone()
    }

    pub fn status(&self) -> ChannelStatus {
        lock(&self.status).clone()
    }

    /// The source on air.
    pub fn active_source(&self) -> usize {
        lock(&self.out).active
    }

    /// Recompute the channel's status from its sources' reports.
    fn refresh(&self, now: Instant) {
        let (active, last_data, entry_points) = {
            let o = lock(&self.out);
            (
                o.active,
                o.last_data,
                o.gate.as_ref().map(|g| g.detector.stats.entry_points),
            )
        };
        let reports = lock(&self.reports).clone();
        let name = self.name();
        let mut st = lock(&self.status);
        for (i, s) in st.sources.iter_mut().enumerate() {
            let (state, reason) = state::verdict(
                reports.get(i).and_then(|r| r.as_ref()),
                last_data.get(i).copied().flatten(),
                now,
            );
            s.state = state;
            s.reason = reason;
        }
        let Some(summary) = st.sources.get(active).cloned() else {
            return;
        };
        if summary.state == ChannelState::Down
            && (st.state != ChannelState::Down || st.reason != summary.reason)
        {
            log::warn!("channel '{name}': down: {}", summary.reason);
        } else if summary.state == ChannelState::Up && st.state == ChannelState::Down {
            log::info!("channel '{name}': up again ({})", summary.source);
        }
        st.state = summary.state;
        st.reason = summary.reason;
        st.active_source = active;
        st.last_data = last_data.get(active).copied().flatten();
        if let Some(e) = entry_points {
            st.entry_points = e;
        }
        if let Some(Some(r)) = reports.get(active) {
            // A failure report carries only the error: keep the last
            // facts the source gave (counters, names) until it reports
            // again.
            st.source_errors = r.source_errors;
            if !r.source.is_empty() {
                st.source = r.source.clone();
                st.program = r.program;
                st.pmt_pid = r.pmt_pid;
                st.pmt_version = r.pmt_version.or(st.pmt_version);
                if r.pmt_version.is_some() {
                    st.streams = r.streams.clone();
                }
                st.program_stats = r.program_stats;
                st.mux_stats = r.mux_stats;
                st.source_stats = r.source_stats;
                st.missing_pids = r.missing_pids.clone();
                st.descrambler = r.descrambler;
                st.ca = r.ca.clone();
                if r.service_name.is_some() {
                    st.service_name = r.service_name.clone();
                    st.provider = r.provider.clone();
                }
            }
        }
    }
}

impl ChannelSink for Channel {
    fn name(&self) -> String {
        Channel::name(self)
    }

    fn write(&self, source: usize, packets: &[u8], video: Option<(u16, VideoCodec)>, now: Instant) {
        let mut o = lock(&self.out);
        if let Some(t) = o.last_data.get_mut(source) {
            *t = Some(now);
        }
        if source != o.active {
            return;
        }
        if video != o.video {
            o.video = video;
            o.gate = video.map(|(pid, codec)| EntryPointGate::new(codec, pid));
        }
        let Output { writer, gate, .. } = &mut *o;
        match gate.as_mut() {
            Some(gate) => {
                for raw in packets.chunks_exact(PACKET_SIZE) {
                    if let Ok(pkt) = Packet::new_checked(raw) {
                        gate.push(&pkt, |bytes, ep| writer.push(bytes, ep));
                    }
                }
            }
            None => writer.push(packets, false),
        }
    }

    fn set_psi(&self, source: usize, pat_pmt_packets: Vec<u8>) {
        if source == lock(&self.out).active {
            self.ring.set_psi(pat_pmt_packets);
        }
    }

    fn tick(&self, source: usize, now: Instant) {
        let mut o = lock(&self.out);
        if source == o.active {
            let flush = o.flush;
            o.writer.flush_if_older(now, flush);
        }
    }

    fn input_discontinuity(&self, source: usize) {
        let mut o = lock(&self.out);
        if source == o.active {
            if let Some(g) = o.gate.as_mut() {
                g.detector.reset();
            }
        }
    }

    fn report(&self, source: usize, report: SourceReport) {
        {
            let mut r = lock(&self.reports);
            match r.get_mut(source) {
                Some(slot) => *slot = Some(report),
                None => return,
            }
        }
        self.refresh(Instant::now());
    }

    fn detach(&self, source: usize) {
        let mut o = lock(&self.out);
        if source == o.active {
            o.writer.flush();
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// data (counters, names) is still the best we have.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
