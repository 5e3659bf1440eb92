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

pub mod failover;
pub mod health;
pub mod pin;
pub mod slate;
pub mod slate_player;
pub mod state;

pub use crate::source::runner::{list_some, LISTED_SERVICES};
pub use crate::source::StreamStatus;
pub use state::ChannelState;

use crate::ca::descrambler::DescramblerStats;
use crate::ca::CaStatus;
use crate::config::{ChannelConfig, SlateSetting};
use crate::fanout::{ChunkWriter, Ring};
use crate::monitor::channel::{ChannelMonitor, MonitorSettings, MonitorStatus};
use crate::remux::splice::{SpliceConfig, Splicer, VIDEO_PID};
use crate::remux::{DemuxStats, ProgramStats};
use crate::source::{ChannelSink, SourceReport, SourceStats};
use crate::ts::es::EntryPointGate;
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pmt::{AudioCodec, VideoCodec};
use crate::ts::video_format::VideoFormatProbe;
use failover::{Failover, Health, Rules};
use health::{HealthRules, SourceHealth, Verdict};
use slate_player::SlatePlayer;
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
    /// Failover state, for a channel with several sources or a slate.
    pub failover: Option<FailoverStatus>,
    /// The format seen on air (failover channels: what an `auto` slate
    /// and `capbox slate` match).
    pub format: Option<FormatStatus>,
    /// Is the channel on air: its verdict and streams (`monitor::channel`),
    /// None when `[monitor] enabled = false`. In `/status` as `verdict`,
    /// `verdict_reason`, `verdict_since_s`, `es`.
    #[serde(skip)]
    pub monitor: Option<MonitorStatus>,
}

/// The channel's format as seen on air.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FormatStatus {
    pub video: Option<crate::ts::video_format::VideoFormat>,
    pub audio: Option<&'static str>,
}

/// Where a failover channel stands, in words.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FailoverStatus {
    /// "source 1 (http://site-b/stream/france2)", or "slate (…)".
    pub on_air: String,
    pub on_slate: bool,
    /// The source the operator pinned the channel to, if any.
    pub pinned: Option<usize>,
    /// Seconds until the pin ends by itself (none: until unpinned).
    pub pin_expires_in_s: Option<u64>,
    pub switches: u64,
    /// The last switch: "dvb sat1 … stalled 400 ms → http://…", and how
    /// long ago (in seconds).
    pub last_switch: Option<String>,
    pub last_switch_age_s: Option<u64>,
    /// The slate file that plays (or would play) when every source is down.
    pub slate: Option<String>,
    /// While the channel sends viewers away (`close_after_ms`), why.
    pub viewers_refused: Option<String>,
    /// Packet-level splice counters.
    pub splice: crate::remux::splice::SpliceStats,
}

/// One source of a channel, in words.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub state: ChannelState,
    pub reason: String,
    /// A remote source (another site), not a tuner or file of this box.
    pub remote: bool,
    /// The packet-level health of a failover channel's source, in words
    /// ("ok", "stalled 400 ms", "no video PES for 2 s").
    pub health: Option<String>,
    pub healthy: Option<bool>,
    /// A remote source's own view: state in words, `last_error` (why
    /// its last connection ended), counters. None for local sources.
    pub remote_status: Option<crate::source::remote::RemoteStatus>,
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
    /// Failover between sources, for a channel with several or a slate.
    failover: Option<Box<Spliced>>,
    /// Is the channel on air: the monitor of what it emits (`[monitor]`
    /// enabled), and the clock origin of its milliseconds.
    monitor: Option<Box<ChannelMonitor>>,
    epoch: Instant,
}

/// The failover machinery of a channel: the rules, each source's health,
/// the splicer that makes one stream of them, and the slate.
struct Spliced {
    failover: Failover,
    splicer: Splicer,
    health: Vec<SourceHealth>,
    /// The video codec each source last announced.
    codecs: [Option<VideoCodec>; MAX_SOURCES],
    slate_setting: SlateSetting,
    slate_name: Option<String>,
    slate: Option<SlatePlayer>,
    /// The on-air source's video format, for an `auto` slate.
    probe: Option<(usize, VideoFormatProbe)>,
    format: slate::ChannelFormat,
    pmt_version: Option<u8>,
    last_decision: Instant,
    last_switch: Option<(Instant, String)>,
    /// When a pin with a duration ends.
    pin_until: Option<Instant>,
    /// `close_after_ms` (zero: never): viewers are sent away after the
    /// slate has played this long.
    close_after: Duration,
    /// Since when the slate plays.
    slate_since: Option<Instant>,
    /// The ring refuses viewers (close_after reached).
    hung_up: bool,
    /// Cold-standby sources: the flag their fetch thread connects on, and
    /// this channel's bit in it.
    cold: [Option<(crate::source::remote::Demand, u32)>; MAX_SOURCES],
    /// When each cold source was last needed, and when it was woken.
    cold_needed: [Option<Instant>; MAX_SOURCES],
    cold_woken: [Option<Instant>; MAX_SOURCES],
    created: Instant,
    buf: Vec<u8>,
    /// Source descriptions, for the switch log line.
    names: Vec<String>,
}

/// Decisions are taken at most this often (sources tick every ≤ 50 ms).
const DECIDE_EVERY: Duration = Duration::from_millis(20);

/// Each live backup keeps its packets since its latest entry point, up
/// to this much, so a switch to it starts on a picture at once (a GOP of
/// 2 s at 8 Mbit/s fits).
pub const PREROLL_BYTES: usize = 2 << 20;

/// A cold-standby source stays connected this long after it was last
/// needed, so a flapping source on air does not reconnect it each time.
pub const COLD_LINGER: Duration = Duration::from_secs(10);

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
                remote: !s.is_local(),
                ..Default::default()
            })
            .collect();
        let n = sources.len();
        let writer = ring.writer();
        let now = Instant::now();
        let spliced = (n > 1 || config.slate != SlateSetting::Off).then(|| {
            let rules = Rules {
                fail_after: Duration::from_millis(config.fail_after_ms),
                recover_after: Duration::from_millis(config.recover_after_ms),
            };
            let slate = config.slate != SlateSetting::Off;
            // A stall is unhealthy as soon as it lasts fail_after: the
            // failover counts it from the last packet.
            let health_rules = HealthRules {
                stall_ms: config.fail_after_ms,
                ..HealthRules::default()
            };
            let health = config
                .sources
                .iter()
                .take(n)
                .map(|s| match s.program {
                    0 => SourceHealth::new(health_rules),
                    p => SourceHealth::for_program(health_rules, p),
                })
                .collect();
            Box::new(Spliced {
                failover: Failover::new(rules, n, slate, now),
                splicer: Splicer::new(SpliceConfig {
                    program_number: if program == 0 { 1 } else { program },
                    preroll_bytes: PREROLL_BYTES,
                    ..SpliceConfig::default()
                }),
                health,
                codecs: [None; MAX_SOURCES],
                slate_setting: config.slate.clone(),
                slate_name: None,
                slate: None,
                probe: None,
                format: slate::ChannelFormat::default(),
                pmt_version: None,
                last_decision: now,
                last_switch: None,
                pin_until: None,
                close_after: Duration::from_millis(config.close_after_ms),
                slate_since: None,
                hung_up: false,
                cold: Default::default(),
                cold_needed: [None; MAX_SOURCES],
                cold_woken: [None; MAX_SOURCES],
                created: now,
                buf: Vec::with_capacity(64 * PACKET_SIZE),
                names: sources.iter().map(|s| s.source.clone()).collect(),
            })
        });
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
                failover: spliced,
                monitor: None,
                epoch: now,
            }),
            reports: Mutex::new(vec![None; n]),
        })
    }

    /// Monitor what the channel emits (`[monitor]`; `enabled = false`:
    /// no monitor, no verdict).
    pub fn set_monitor(&self, config: &crate::config::MonitorConfig) {
        let mut o = lock(&self.out);
        o.monitor = config.enabled.then(|| {
            let now = o.epoch.elapsed().as_millis() as u64;
            Box::new(ChannelMonitor::new(
                MonitorSettings::from_config(config),
                now,
            ))
        });
        let off = o.monitor.is_none();
        drop(o);
        // Not under the output lock: status is never taken inside it.
        if off {
            lock(&self.status).monitor = None;
        }
    }

    /// Pin the channel to one of its sources until `until` (or until
    /// unpinned); `None`: back to the rules. The switch happens on the
    /// channel's next turn, spliced like any other.
    pub fn pin(&self, source: Option<usize>, until: Option<Instant>) -> Result<(), String> {
        let mut o = lock(&self.out);
        let Some(f) = o.failover.as_mut() else {
            return Err(
                "the channel has one source and no slate: there is nothing to switch".into(),
            );
        };
        let n = f.names.len();
        if !f.failover.pin(source) {
            return Err(format!(
                "the channel has {n} source(s), numbered 0 to {}",
                n.saturating_sub(1)
            ));
        }
        f.pin_until = source.and(until);
        Ok(())
    }

    /// Source `index` is on cold standby: the channel sets its `bit` in
    /// `demand` while it needs the source.
    pub fn set_demand(&self, index: usize, demand: crate::source::remote::Demand, bit: u32) {
        let mut o = lock(&self.out);
        if let Some(slot) = o.failover.as_mut().and_then(|f| f.cold.get_mut(index)) {
            *slot = Some((demand, bit));
        } else {
            // Not a failover channel: a lone source is always needed.
            demand.set(bit, true);
        }
    }

    /// The pinned source, if any.
    pub fn pinned(&self) -> Option<usize> {
        lock(&self.out)
            .failover
            .as_ref()
            .and_then(|f| f.failover.pinned())
    }

    /// Each source's description, in order ("remote http://…").
    pub fn source_names(&self) -> Vec<String> {
        lock(&self.status)
            .sources
            .iter()
            .map(|s| s.source.clone())
            .collect()
    }

    /// The source on air is one of this box's own (tuner or file) and the
    /// channel is up: what a peer's `?origin=local` asks for.
    /// The source on air is the failover's decision as taken (the
    /// status follows it only at the next report): a peer's stream is
    /// ended before it gets a packet of a relay or of the slate.
    pub fn fed_locally(&self) -> bool {
        let decided = {
            let o = lock(&self.out);
            o.failover
                .as_ref()
                .map(|f| (f.failover.active(), f.failover.on_slate()))
        };
        let st = lock(&self.status);
        let (active, on_slate) = decided.unwrap_or((st.active_source, false));
        st.state == ChannelState::Up
            && !on_slate
            && st.sources.get(active).is_some_and(|s| !s.remote)
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
                o.failover
                    .as_ref()
                    .map(|f| f.failover.active())
                    .unwrap_or(o.active),
                o.last_data,
                o.gate.as_ref().map(|g| g.detector.stats.entry_points),
            )
        };
        let reports = lock(&self.reports).clone();
        let name = self.name();
        let (failover, health, format) = {
            let o = lock(&self.out);
            match o.failover.as_ref() {
                Some(f) => (
                    Some(FailoverStatus {
                        on_air: if f.failover.on_slate() {
                            format!("slate ({})", f.slate_name.clone().unwrap_or_default())
                        } else {
                            format!(
                                "source {} ({})",
                                f.failover.active(),
                                f.names
                                    .get(f.failover.active())
                                    .cloned()
                                    .unwrap_or_default()
                            )
                        },
                        on_slate: f.failover.on_slate(),
                        pinned: f.failover.pinned(),
                        pin_expires_in_s: f
                            .pin_until
                            .filter(|_| f.failover.pinned().is_some())
                            .map(|t| t.saturating_duration_since(now).as_secs()),
                        switches: f.failover.switches,
                        last_switch: f.last_switch.as_ref().map(|(_, w)| w.clone()),
                        last_switch_age_s: f
                            .last_switch
                            .as_ref()
                            .map(|(t, _)| now.saturating_duration_since(*t).as_secs()),
                        slate: f.slate_name.clone(),
                        viewers_refused: self.ring.held(),
                        splice: *f.splicer.stats(),
                    }),
                    f.health
                        .iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let v = h.verdict(now);
                            let r = reports.get(i).and_then(|r| r.as_ref());
                            if f.cold_idle(i) {
                                (COLD_WORDS.to_string(), false)
                            } else {
                                (health_words(v, r), v.is_ok())
                            }
                        })
                        .collect::<Vec<_>>(),
                    Some(FormatStatus {
                        video: f.format.video,
                        audio: f.format.audio.map(|a| a.as_str()),
                    }),
                ),
                None => (None, Vec::new(), None),
            }
        };
        let mut st = lock(&self.status);
        for (s, (words, ok)) in st.sources.iter_mut().zip(health) {
            s.health = Some(words);
            s.healthy = Some(ok);
        }
        let on_slate = failover.as_ref().is_some_and(|f| f.on_slate);
        st.failover = failover;
        st.format = format;
        for (i, s) in st.sources.iter_mut().enumerate() {
            let report = reports.get(i).and_then(|r| r.as_ref());
            let (state, reason) = state::verdict(report, last_data.get(i).copied().flatten(), now);
            s.state = state;
            s.reason = reason;
            // A failure report carries no remote view: keep the last one.
            if let Some(rs) = report.and_then(|r| r.remote.clone()) {
                s.remote_status = Some(rs);
            }
        }
        let summary = if on_slate {
            SourceSummary {
                source: "slate".into(),
                state: ChannelState::Down,
                reason: "every source is down: the slate plays".into(),
                ..Default::default()
            }
        } else {
            match st.sources.get(active).cloned() {
                Some(s) => s,
                None => return,
            }
        };
        // A channel still starting is "waiting for the PMT" for a moment:
        // not worth a line. Going down from up, a source that fails, and a
        // new reason while down are.
        let source_failed = reports
            .get(active)
            .and_then(|r| r.as_ref())
            .is_some_and(|r| !r.open);
        if summary.state == ChannelState::Down
            && (st.state == ChannelState::Up
                || (st.state == ChannelState::Down && st.reason != summary.reason)
                || source_failed
                || on_slate)
            && !(st.state == ChannelState::Down && st.reason == summary.reason)
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
        if let Some(Some(r)) = reports.get(active).filter(|_| !on_slate) {
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

impl Drop for Channel {
    fn drop(&mut self) {
        // A removed channel no longer needs its cold sources.
        let o = lock(&self.out);
        if let Some(f) = o.failover.as_ref() {
            for (d, bit) in f.cold.iter().flatten() {
                d.set(*bit, false);
            }
        }
    }
}

impl ChannelSink for Channel {
    fn name(&self) -> String {
        Channel::name(self)
    }

    fn write(&self, source: usize, packets: &[u8], video: Option<(u16, VideoCodec)>, now: Instant) {
        let mut guard = lock(&self.out);
        let o = &mut *guard;
        if let Some(t) = o.last_data.get_mut(source) {
            *t = Some(now);
        }
        if let Some(f) = o.failover.as_mut() {
            if let Some(h) = f.health.get_mut(source) {
                h.observe(packets, now);
            }
            if let Some(c) = f.codecs.get_mut(source) {
                *c = video.map(|(_, c)| c);
            }
            if source == f.failover.active() {
                f.watch_format(source, video, packets);
                if f.splicer.active().is_none()
                    && f.splicer.pending().is_none()
                    && !f.failover.on_slate()
                {
                    // The first source on air was never switched to (a
                    // decision is a switch): take it on its first packets,
                    // cut on its first keyframe.
                    f.splicer.switch_to(source, now);
                }
            }
            let mut buf = std::mem::take(&mut f.buf);
            buf.clear();
            f.splicer.push(source, packets, now, &mut buf);
            let codec = f.codecs.get(f.failover.active()).copied().flatten();
            self.emit(o, &buf, codec.map(|c| (VIDEO_PID, c)), now);
            if let Some(f) = o.failover.as_mut() {
                f.buf = buf;
            }
            return;
        }
        if source != o.active {
            return;
        }
        self.emit(o, packets, video, now);
    }

    fn set_psi(&self, source: usize, pat_pmt_packets: Vec<u8>) {
        let o = lock(&self.out);
        if o.failover.is_none() && source == o.active {
            self.ring.set_psi(pat_pmt_packets);
        }
    }

    fn tick(&self, source: usize, now: Instant) {
        let mut guard = lock(&self.out);
        let o = &mut *guard;
        if o.failover.is_some() {
            self.failover_turn(o, now);
            let flush = o.flush;
            o.writer.flush_if_older(now, flush);
        } else if source == o.active {
            let flush = o.flush;
            o.writer.flush_if_older(now, flush);
        }
        let on_slate = o.failover.as_ref().is_some_and(|f| f.failover.on_slate());
        let ms = now.saturating_duration_since(o.epoch).as_millis() as u64;
        let Some(m) = o.monitor.as_mut() else { return };
        if !m.update(ms, on_slate) {
            return;
        }
        let news = m.take_news();
        let snapshot = m.status().clone();
        drop(guard);
        if let Some(line) = news {
            let name = self.name();
            if snapshot.verdict.is_fault() {
                log::warn!("channel {name}: {line}");
            } else {
                log::info!("channel {name}: {line}");
            }
        }
        lock(&self.status).monitor = Some(snapshot);
    }

    fn input_discontinuity(&self, source: usize) {
        let mut o = lock(&self.out);
        if let Some(f) = o.failover.as_mut() {
            if let Some(h) = f.health.get_mut(source) {
                h.reset_stream();
            }
            return;
        }
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
        if o.failover.is_some() || source == o.active {
            o.writer.flush();
        }
    }
}

impl Channel {
    /// Into the ring, through the keyframe gate. `video`: the output's
    /// video PID and codec.
    fn emit(&self, o: &mut Output, packets: &[u8], video: Option<(u16, VideoCodec)>, now: Instant) {
        if packets.is_empty() {
            return;
        }
        if let Some(m) = o.monitor.as_mut() {
            m.feed(
                now.saturating_duration_since(o.epoch).as_millis() as u64,
                packets,
            );
        }
        if video != o.video {
            o.video = video;
            o.gate = video.map(|(pid, codec)| EntryPointGate::new(codec, pid));
        }
        let Output { writer, gate, .. } = o;
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

    /// A failover channel's turn: decide, play the slate if on air, let
    /// the splicer repeat its PSI, keep the ring's PSI current.
    fn failover_turn(&self, o: &mut Output, now: Instant) {
        let Some(mut f) = o.failover.take() else {
            return;
        };
        if f.pin_until.is_some_and(|t| now >= t) && f.failover.pinned().is_some() {
            let p = f.failover.pinned().unwrap_or(0);
            f.failover.pin(None);
            f.pin_until = None;
            log::warn!(
                "channel '{}': the pin on source {p} ({}) has run its time; back to the failover rules",
                self.name(),
                f.names.get(p).cloned().unwrap_or_default()
            );
        }
        if now.saturating_duration_since(f.last_decision) >= DECIDE_EVERY {
            f.last_decision = now;
            let reports = lock(&self.reports).clone();
            if !f.failover.on_slate() {
                let audio = reports
                    .get(f.failover.active())
                    .and_then(|r| r.as_ref())
                    .and_then(|r| r.streams.iter().find(|s| s.kind == "audio"))
                    .and_then(|s| audio_codec_of(s.stream_type));
                if audio.is_some() {
                    f.format.audio = audio;
                }
            }
            let health: Vec<Health> = f
                .health
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let v = h.verdict(now);
                    let (state, why) = state::verdict(
                        reports.get(i).and_then(|r| r.as_ref()),
                        o.last_data.get(i).copied().flatten(),
                        now,
                    );
                    let healthy = v.is_ok() && state != ChannelState::Down;
                    let unhealthy_since = match v {
                        Verdict::Stalled { for_ms } => {
                            now.checked_sub(Duration::from_millis(for_ms))
                        }
                        _ => None,
                    };
                    let words = if f.cold_idle(i) {
                        COLD_WORDS.to_string()
                    } else if !v.is_ok() {
                        health_words(v, reports.get(i).and_then(|r| r.as_ref()))
                    } else if state == ChannelState::Down {
                        why
                    } else {
                        "ok".into()
                    };
                    Health {
                        healthy,
                        unhealthy_since,
                        words,
                        waking: false,
                    }
                })
                .collect();
            let mut health = health;
            f.wake_cold(&health, now);
            for (i, h) in health.iter_mut().enumerate() {
                h.waking = !h.healthy && f.waking(i, now);
            }
            if let Some(sw) = f.failover.decide(&health, now) {
                let name = |i: usize| {
                    if Some(i) == f.failover.slate_index() {
                        "the slate".to_string()
                    } else {
                        f.names.get(i).cloned().unwrap_or_default()
                    }
                };
                let words = format!("{} {} → {}", name(sw.from), sw.why, name(sw.to));
                log::warn!("channel '{}': {words}", self.name());
                if Some(sw.to) == f.failover.slate_index() {
                    f.start_slate(now);
                    f.slate_since = Some(now);
                } else {
                    f.slate = None;
                    f.slate_since = None;
                    if f.hung_up {
                        f.hung_up = false;
                        self.ring.resume();
                        log::warn!(
                            "channel '{}': a source is back: viewers are taken again",
                            self.name()
                        );
                    }
                }
                // Leaving a source that failed (or the slate): nothing more
                // comes of it, cut at once on the backup's preroll. Leaving
                // one that still delivers (a pin, going back): let its
                // current PES finish.
                let failed = !health.get(sw.from).is_some_and(|h| h.healthy);
                if failed {
                    f.splicer.switch_to_at_once(sw.to, now);
                } else {
                    f.splicer.switch_to(sw.to, now);
                }
                f.probe = None;
                f.last_switch = Some((now, words));
            }
        }
        if let Some(since) = f.slate_since {
            let on = now.saturating_duration_since(since);
            if !f.close_after.is_zero() && !f.hung_up && on >= f.close_after {
                f.hung_up = true;
                let secs = f.close_after.as_secs_f64();
                let why = format!(
                    "every source down for {secs:.0} s: viewers sent away (close_after_ms); \
                     taken again when a source is back"
                );
                log::warn!("channel '{}': {why}", self.name());
                self.ring.hang_up(why);
            }
        }
        let mut buf = std::mem::take(&mut f.buf);
        buf.clear();
        if let (Some(slate), Some(idx)) = (f.slate.as_mut(), f.failover.slate_index()) {
            if f.failover.on_slate() {
                let mut raw = Vec::new();
                slate.play(now, &mut raw);
                f.splicer.push(idx, &raw, now, &mut buf);
            }
        }
        f.splicer.tick(now, &mut buf);
        let version = Some(f.splicer.pmt_version());
        if version != f.pmt_version && f.splicer.active().is_some() {
            f.pmt_version = version;
            self.ring.set_psi(f.splicer.psi_packets());
        }
        let codec = if f.failover.on_slate() {
            f.format.video.map(|v| v.codec).or(f.format.video_codec)
        } else {
            f.codecs.get(f.failover.active()).copied().flatten()
        };
        f.buf = Vec::new();
        o.failover = Some(f);
        self.emit(o, &buf, codec.map(|c| (VIDEO_PID, c)), now);
        if let Some(f) = o.failover.as_mut() {
            f.buf = buf;
        }
    }
}

/// A cold-standby source nobody needs, in words.
const COLD_WORDS: &str = "cold standby: not connected until needed";

impl Spliced {
    /// Source `i` is on cold standby and not connected on purpose.
    fn cold_idle(&self, i: usize) -> bool {
        self.cold
            .get(i)
            .and_then(|c| c.as_ref())
            .is_some_and(|(d, _)| !d.wanted())
    }

    /// Source `i` is a cold backup connecting for this channel, woken
    /// less than `COLD_WAIT` ago.
    fn waking(&self, i: usize, now: Instant) -> bool {
        self.cold
            .get(i)
            .and_then(|c| c.as_ref())
            .is_some_and(|(d, _)| d.wanted())
            && self.cold_woken[i]
                .is_some_and(|t| now.saturating_duration_since(t) < failover::COLD_WAIT)
    }

    /// Connect cold sources while the channel may need them: the source on
    /// air is unhealthy (or the slate plays), or one of them is on air or
    /// pinned; let go `COLD_LINGER` after the last need.
    fn wake_cold(&mut self, health: &[Health], now: Instant) {
        if self.cold.iter().all(|c| c.is_none()) {
            return;
        }
        let active = self.failover.active();
        let on_slate = self.failover.on_slate();
        let settled = now.saturating_duration_since(self.created) >= failover::STARTUP_GRACE;
        let trouble = on_slate || (settled && !health.get(active).is_some_and(|h| h.healthy));
        let pinned = self.failover.pinned();
        for i in 0..MAX_SOURCES {
            let Some((d, bit)) = self.cold[i].as_ref() else {
                continue;
            };
            let need = trouble || (i == active && !on_slate) || pinned == Some(i);
            if need {
                if self.cold_needed[i]
                    .is_none_or(|t| now.saturating_duration_since(t) >= COLD_LINGER)
                {
                    self.cold_woken[i] = Some(now);
                }
                self.cold_needed[i] = Some(now);
            }
            let keep =
                self.cold_needed[i].is_some_and(|t| now.saturating_duration_since(t) < COLD_LINGER);
            if keep != d.wanted() || need {
                d.set(*bit, keep);
            }
        }
    }

    /// Learn the on-air source's video format (for an `auto` slate).
    fn watch_format(&mut self, source: usize, video: Option<(u16, VideoCodec)>, packets: &[u8]) {
        let Some((pid, codec)) = video else { return };
        self.format.video_codec = Some(codec);
        if self.probe.as_ref().is_none_or(|(s, _)| *s != source) {
            self.probe = Some((source, VideoFormatProbe::new(codec, pid)));
        }
        if let Some((_, p)) = self.probe.as_mut() {
            if p.format().is_none() {
                for raw in packets.chunks_exact(PACKET_SIZE) {
                    if let Ok(pkt) = Packet::new_checked(raw) {
                        p.push(&pkt);
                    }
                }
                if let Some(fmt) = p.format() {
                    self.format.video = Some(fmt);
                }
            }
        }
    }

    /// Load the slate for the format seen on air, from the start.
    fn start_slate(&mut self, now: Instant) {
        let choice = match &self.slate_setting {
            SlateSetting::File(p) => slate::choose(&slate::default_dir(), Some(p), &self.format),
            _ => slate::choose(&slate::default_dir(), None, &self.format),
        };
        if !choice.exact() {
            log::info!(
                "slate {} is the closest to the channel's format; differs: {}",
                choice.name,
                choice.differences.join(", ")
            );
        }
        match SlatePlayer::load(&choice.path) {
            Ok(mut p) => {
                p.restart(now);
                self.slate = Some(p);
                self.slate_name = Some(choice.path.display().to_string());
            }
            Err(e) => {
                log::error!("{e}: the channel has no slate to play");
                self.slate = None;
            }
        }
    }
}

/// A source's packet verdict in words; a failing remote source adds its
/// own reason: "stalled 1200 ms (remote: not MPEG-TS: got text/html)".
fn health_words(v: Verdict, report: Option<&SourceReport>) -> String {
    match report.and_then(|r| r.remote.as_ref()) {
        Some(rs) if !v.is_ok() => format!("{v} (remote: {})", rs.words()),
        _ => v.to_string(),
    }
}

/// The audio codec of a stream from what a source report carries (its
/// stream_type): DVB private audio (0x06) is taken as AC-3, the usual one.
pub fn audio_codec_of(stream_type: u8) -> Option<AudioCodec> {
    AudioCodec::of_stream_type(stream_type).or((stream_type == 0x06).then_some(AudioCodec::Ac3))
}

/// A poisoned lock only means another thread panicked while holding it; the
/// data (counters, names) is still the best we have.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
