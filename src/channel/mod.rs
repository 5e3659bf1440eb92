//! Channels and the threads that feed them.
//!
//! A `Channel` is what a client asks for: a name, its fan-out ring and what
//! capbox knows of its health. A `MuxRunner` is one thread per input mux (a
//! file or an adapter): it reads the source, runs the remux once for every
//! channel on that mux, feeds each scrambled channel's CA session (BISS, a
//! card, a softcam) the mux and descrambles the channel with the words the
//! session delivers (`ca::descrambler`), finds video entry points and
//! writes each channel's ring. Channels on the same mux share one read and
//! one demux. Descrambled packets may wait up to the CSA batch time bound
//! (10 ms); the runner calls every descrambler on each turn, data or not,
//! so that bound holds.
//!
//! The runner never blocks on a client: the ring is the only thing between
//! it and HTTP. Commands (add or remove a channel, stop) reach it through a
//! channel it polls between reads, so a reload touches only what changed.

pub mod health;

use crate::ca::biss::BissSession;
use crate::ca::descrambler::{Descrambler, DescramblerStats, KeyPolicy};
use crate::ca::{CaSession, CaStatus};
use crate::config::{ChannelConfig, SourceConfig};
use crate::fanout::{ChunkWriter, Ring};
use crate::remux::{DemuxStats, ProgramStats, Remux};
use crate::source::dvb::{DvbSource, DvbSourceConfig};
use crate::source::{FileSource, FileSourceConfig, ReadOutcome, Source, SourceError, SourceStats};
use crate::ts::es::EntryPointGate;
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pmt::VideoCodec;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an operator needs to know about a channel, refreshed by its runner.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChannelStatus {
    /// "starting", "up", "down".
    pub state: &'static str,
    /// Plain words: why the channel is not up ("source: … not a transport
    /// stream", "no service 4 in the mux (services: 1, 2, 3)").
    pub reason: String,
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
    /// Seconds since the runner last wrote into the ring.
    #[serde(skip)]
    pub last_data: Option<Instant>,
    pub source_errors: u64,
    /// Descrambling counts when the channel is descrambled (BISS or a CA
    /// session); never a key.
    pub descrambler: Option<DescramblerStats>,
    /// The CA session's state (never a control word).
    pub ca: Option<CaStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    pub pid: u16,
    pub stream_type: u8,
    pub kind: &'static str,
    pub language: Option<String>,
}

/// A channel: config, ring, status. Shared between its runner and HTTP.
pub struct Channel {
    pub config: Mutex<ChannelConfig>,
    pub ring: Arc<Ring>,
    pub status: Mutex<ChannelStatus>,
}

impl Channel {
    pub fn new(config: ChannelConfig, ring: Arc<Ring>) -> Arc<Channel> {
        let program = config.sources.first().map(|s| s.program).unwrap_or(0);
        let source = config
            .sources
            .first()
            .map(|s| s.describe())
            .unwrap_or_default();
        Arc::new(Channel {
            config: Mutex::new(config),
            ring,
            status: Mutex::new(ChannelStatus {
                state: "starting",
                program,
                source,
                ..Default::default()
            }),
        })
    }

    pub fn name(&self) -> String {
        lock(&self.config).name.clone()
    }

    pub fn status(&self) -> ChannelStatus {
        lock(&self.status).clone()
    }

    fn set_down(&self, reason: String) {
        let mut st = lock(&self.status);
        if st.state != "down" || st.reason != reason {
            log::warn!("channel '{}': down: {}", lock(&self.config).name, reason);
        }
        st.state = "down";
        st.reason = reason;
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// data (counters, names) is still the best we have.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which input a runner reads: channels with equal keys share a runner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MuxKey {
    File {
        file: PathBuf,
        looping: bool,
    },
    /// One adapter tuned to one mux (canonical tune string): the config
    /// allows one mux per adapter, so channels on it share this runner.
    Dvb {
        adapter: String,
        mux: String,
    },
}

impl MuxKey {
    pub fn of(src: &SourceConfig) -> MuxKey {
        match &src.dvb {
            Some(d) => MuxKey::Dvb {
                adapter: d.adapter.clone(),
                mux: d.mux.clone(),
            },
            None => MuxKey::File {
                file: src.file.clone(),
                looping: src.looping,
            },
        }
    }

    /// "file samples/mux.ts" or "adapter ter1 dvbt 474000000 …".
    pub fn describe(&self) -> String {
        match self {
            MuxKey::File { file, .. } => format!("file {}", file.display()),
            MuxKey::Dvb { adapter, mux } => format!("adapter {adapter} {mux}"),
        }
    }
}

/// How to open the input of a runner.
#[derive(Debug, Clone)]
pub enum InputSpec {
    /// The file of a `MuxKey::File`.
    File,
    Dvb(DvbSourceConfig),
}

enum Command {
    /// A channel, and the CA session that finds its control words (else
    /// the source's `biss` key, if any, else none: served as received).
    Add(Arc<Channel>, Option<Box<dyn CaSession>>),
    Remove(String),
}

/// Handle on a running mux thread.
pub struct MuxRunner {
    pub key: MuxKey,
    tx: Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Knobs of a runner (from `[buffers]`).
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    pub flush: Duration,
    /// Pace by PCR (serve) or run as fast as possible (benchmarks).
    pub realtime: bool,
    /// How long a descrambled channel's partly filled CSA batch may wait
    /// for more packets (`descrambler::DEFAULT_BATCH_TIMEOUT`).
    pub csa_batch_timeout: Duration,
}

impl MuxRunner {
    pub fn spawn(key: MuxKey, cfg: RunnerConfig) -> std::io::Result<MuxRunner> {
        Self::spawn_input(key, InputSpec::File, cfg)
    }

    /// A runner for any input: a file (`InputSpec::File`) or a DVB adapter.
    pub fn spawn_input(
        key: MuxKey,
        input: InputSpec,
        cfg: RunnerConfig,
    ) -> std::io::Result<MuxRunner> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let key2 = key.clone();
        let name = match &key {
            MuxKey::File { file, .. } => format!(
                "mux {}",
                file.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ),
            MuxKey::Dvb { adapter, .. } => format!("dvb {adapter}"),
        };
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut w = Worker::new(key2, input, cfg, rx, stop2);
            w.run();
        })?;
        Ok(MuxRunner {
            key,
            tx,
            stop,
            thread: Some(thread),
        })
    }

    pub fn add(&self, ch: Arc<Channel>) {
        let _ = self.tx.send(Command::Add(ch, None));
    }

    /// Add a channel whose control words come from `ca` (a card or softcam
    /// session): the runner feeds it the mux and descrambles the channel
    /// with the words it puts into its slots (`KeyPolicy::Rotating`).
    pub fn add_with_ca(&self, ch: Arc<Channel>, ca: Box<dyn CaSession>) {
        let _ = self.tx.send(Command::Add(ch, Some(ca)));
    }

    pub fn remove(&self, name: &str) {
        let _ = self.tx.send(Command::Remove(name.to_string()));
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MuxRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One channel's output stage inside the runner.
struct Output {
    ch: Arc<Channel>,
    prog: usize,
    writer: ChunkWriter,
    gate: Option<EntryPointGate>,
    video: Option<(u16, VideoCodec)>,
    service_id: u16,
    /// Descramble before the gate (entry points are found in clear ES)
    /// and the ring; reads `ca`'s slots.
    descrambler: Option<Descrambler>,
    /// Finds the control words: fed the whole mux on this thread.
    ca: Option<Box<dyn CaSession>>,
    /// The descrambler's counters at the last status refresh: a rise says
    /// why the channel is (partly) scrambled, in its reason.
    seen: DescramblerStats,
    /// When the current PMT arrived: a PID is only called missing after a
    /// grace period, not while the first packets are on their way.
    pmt_at: Option<(u8, Instant)>,
}

struct Worker {
    key: MuxKey,
    input: InputSpec,
    cfg: RunnerConfig,
    rx: Receiver<Command>,
    stop: Arc<AtomicBool>,
    remux: Remux,
    outputs: Vec<Output>,
    source: Option<Box<dyn Source>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    source_errors: u64,
}

impl Worker {
    fn new(
        key: MuxKey,
        input: InputSpec,
        cfg: RunnerConfig,
        rx: Receiver<Command>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        Worker {
            key,
            input,
            cfg,
            rx,
            stop,
            remux: Remux::new(),
            outputs: Vec::new(),
            source: None,
            retry_at: None,
            backoff: Duration::from_secs(1),
            source_errors: 0,
        }
    }

    fn describe(&self) -> String {
        self.key.describe()
    }

    fn run(&mut self) {
        let mut buf = Vec::with_capacity(256 * PACKET_SIZE);
        let mut out = Vec::with_capacity(256 * PACKET_SIZE);
        let mut last_status = Instant::now() - Duration::from_secs(1);
        while !self.stop.load(Ordering::Relaxed) {
            self.commands();
            if self.outputs.is_empty() {
                // Nobody wants this mux: idle until told otherwise.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // Packets held for a batch must not wait a whole read.
            let holding = self
                .outputs
                .iter()
                .any(|o| o.descrambler.as_ref().is_some_and(|d| d.held_packets() > 0));
            let wait = if holding {
                self.cfg.csa_batch_timeout.min(Duration::from_millis(20))
            } else {
                Duration::from_millis(20)
            };
            buf.clear();
            let mut fresh = false;
            if self.source.is_none() && !self.open() {
                // The source is down: still release what the descramblers
                // hold and keep the counters current.
                std::thread::sleep(if holding {
                    wait
                } else {
                    Duration::from_millis(50)
                });
            } else {
                let res = match self.source.as_mut() {
                    Some(s) => s.read(&mut buf, wait),
                    None => continue,
                };
                fresh = matches!(res, Ok(ReadOutcome::Data | ReadOutcome::Discontinuity));
                match res {
                    Ok(ReadOutcome::Discontinuity) => {
                        self.remux.input_discontinuity();
                        for o in &mut self.outputs {
                            if let Some(g) = o.gate.as_mut() {
                                g.detector.reset();
                            }
                        }
                        self.remux.push(&buf);
                    }
                    Ok(ReadOutcome::Data) => self.remux.push(&buf),
                    Ok(ReadOutcome::Idle) => {}
                    Err(e) => {
                        self.source_failed(e);
                        buf.clear();
                    }
                }
                if self.source.is_some() {
                    self.backoff = Duration::from_secs(1);
                }
            }
            let now = Instant::now();
            self.outputs_turn(&buf, fresh, &mut out, now);
            if now.duration_since(last_status) >= Duration::from_millis(250) {
                last_status = now;
                self.refresh_status();
                // A DVB source narrows its hardware filters to what the
                // channels' PMTs name (files ignore it).
                if let Some(src) = self.source.as_mut() {
                    let mut pids = crate::source::dvb::wanted_pids(&self.remux);
                    for o in &self.outputs {
                        if let Some(ca) = &o.ca {
                            pids.extend(ca.wanted_pids());
                        }
                    }
                    pids.sort_unstable();
                    pids.dedup();
                    src.set_wanted_pids(&pids);
                }
            }
        }
    }

    /// One turn of every output: feed its CA session the mux read (if
    /// any), take its remux output, descramble it (also with nothing new,
    /// so held packets go out on their time bound), gate and write it.
    fn outputs_turn(&mut self, buf: &[u8], fresh: bool, out: &mut Vec<u8>, now: Instant) {
        for o in &mut self.outputs {
            let prog = self.remux.program_mut(o.prog);
            if let Some(ca) = o.ca.as_mut() {
                if fresh {
                    ca.feed(buf, now);
                }
            }
            prog.take_output(out);
            if let Some(d) = o.descrambler.as_mut() {
                d.process(out, now);
            }
            if prog.psi_changed {
                prog.psi_changed = false;
                o.ch.ring.set_psi(prog.psi_packets());
            }
            if prog.video != o.video {
                o.video = prog.video;
                o.gate = o.video.map(|(pid, codec)| EntryPointGate::new(codec, pid));
            }
            if !out.is_empty() {
                match o.gate.as_mut() {
                    Some(gate) => {
                        let writer = &mut o.writer;
                        for raw in out.chunks_exact(PACKET_SIZE) {
                            if let Ok(pkt) = Packet::new_checked(raw) {
                                gate.push(&pkt, |bytes, ep| writer.push(bytes, ep));
                            }
                        }
                    }
                    None => o.writer.push(out, false),
                }
                lock(&o.ch.status).last_data = Some(now);
            }
            o.writer.flush_if_older(now, self.cfg.flush);
        }
    }

    fn open(&mut self) -> bool {
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return false;
            }
        }
        let opened: Result<Box<dyn Source>, SourceError> = match (&self.key, &self.input) {
            (_, InputSpec::Dvb(d)) => DvbSource::open(d.clone()).map(|s| Box::new(s) as _),
            (MuxKey::File { file, looping }, InputSpec::File) => {
                let mut cfg = FileSourceConfig::new(file);
                cfg.looping = *looping;
                cfg.realtime = self.cfg.realtime;
                FileSource::open(cfg).map(|s| Box::new(s) as _)
            }
            (MuxKey::Dvb { adapter, .. }, InputSpec::File) => Err(SourceError::Io {
                what: format!("adapter {adapter}"),
                err: std::io::Error::other("no adapter settings given to the runner"),
            }),
        };
        match opened {
            Ok(s) => {
                log::info!(
                    "{}: opened for {} channel(s)",
                    self.describe(),
                    self.outputs.len()
                );
                self.source = Some(s);
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.source_failed(e);
                false
            }
        }
    }

    fn source_failed(&mut self, e: SourceError) {
        self.source_errors += 1;
        let what = match &e {
            SourceError::Eof => format!("{}: end of file (loop = false)", self.describe()),
            SourceError::Io { .. } if matches!(self.key, MuxKey::Dvb { .. }) => {
                // DVB errors already name the adapter and the mux.
                e.to_string()
            }
            _ => e.to_string(),
        };
        log::error!("source {what}; retrying in {} s", self.backoff.as_secs());
        for o in &self.outputs {
            o.ch.set_down(format!("source: {what}"));
            lock(&o.ch.status).source_errors = self.source_errors;
        }
        self.source = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        self.remux.reset_input();
    }

    fn commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Add(ch, ca)) => {
                    let (program, name, biss) = {
                        let c = lock(&ch.config);
                        (
                            c.sources.first().map(|s| s.program).unwrap_or(0),
                            c.name.clone(),
                            c.sources.first().and_then(|s| s.biss.clone()),
                        )
                    };
                    let Some(prog) = self.remux.try_add_program(program) else {
                        ch.set_down(format!(
                            "more than {} channels on {}: not served",
                            Remux::MAX_PROGRAMS,
                            self.describe()
                        ));
                        continue;
                    };
                    log::info!(
                        "channel '{name}': program {program} from {}",
                        self.describe()
                    );
                    let (descrambler, ca) = match (ca, biss) {
                        (Some(ca), _) => {
                            let d = Descrambler::new(ca.slots(), KeyPolicy::Rotating)
                                .with_batch_timeout(self.cfg.csa_batch_timeout);
                            (Some(d), Some(ca))
                        }
                        (None, Some(k)) => {
                            let session = BissSession::new(&k);
                            let d = session
                                .descrambler()
                                .with_batch_timeout(self.cfg.csa_batch_timeout);
                            (Some(d), Some(Box::new(session) as Box<dyn CaSession>))
                        }
                        (None, None) => (None, None),
                    };
                    if descrambler.is_some() {
                        // The PMT loses its CA descriptors and ECM PIDs.
                        self.remux.set_descramble(prog, true);
                    }
                    let writer = ch.ring.writer();
                    self.outputs.push(Output {
                        ch,
                        prog,
                        writer,
                        gate: None,
                        video: None,
                        service_id: program,
                        descrambler,
                        ca,
                        seen: DescramblerStats::default(),
                        pmt_at: None,
                    });
                }
                Ok(Command::Remove(name)) => {
                    if let Some(i) = self.outputs.iter().position(|o| o.ch.name() == name) {
                        let mut o = self.outputs.remove(i);
                        if let Some(d) = o.descrambler.as_mut() {
                            // A reload may hand the ring to a new channel:
                            // what the descrambler held still goes out.
                            let mut rest = Vec::new();
                            d.flush(&mut rest);
                            if !rest.is_empty() {
                                o.writer.push(&rest, false);
                                o.writer.flush();
                            }
                        }
                        self.remux.remove_program(o.prog);
                        for later in &mut self.outputs {
                            if later.prog > o.prog {
                                later.prog -= 1;
                            }
                        }
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
    }

    fn refresh_status(&mut self) {
        let mux_stats = self.remux.stats;
        let source_stats = self.source.as_ref().map(|s| s.stats()).unwrap_or_default();
        let services: Vec<u16> = self
            .remux
            .pat()
            .map(|p| p.programs().map(|e| e.program_number).collect())
            .unwrap_or_default();
        let describe = self.describe();
        for o in &mut self.outputs {
            let prog = self.remux.program(o.prog);
            let pmt_version = prog.pmt.as_ref().map(|p| p.version);
            match (pmt_version, o.pmt_at) {
                (Some(v), Some((w, _))) if v == w => {}
                (Some(v), _) => o.pmt_at = Some((v, Instant::now())),
                (None, _) => o.pmt_at = None,
            }
            let settled = o
                .pmt_at
                .map(|(_, t)| t.elapsed() >= Duration::from_secs(2))
                .unwrap_or(false);
            let mut st = lock(&o.ch.status);
            st.mux_stats = mux_stats;
            st.source_stats = source_stats;
            st.program_stats = prog.stats;
            st.program = o.service_id;
            st.pmt_pid = prog.pmt_pid;
            st.source = describe.clone();
            st.source_errors = self.source_errors;
            st.descrambler = o.descrambler.as_ref().map(|d| d.stats());
            st.ca = o.ca.as_ref().map(|c| c.status());
            let scrambled_reason = scrambled_reason(&st, &o.seen);
            if let Some(d) = st.descrambler {
                o.seen = d;
            }
            if let Some(g) = &o.gate {
                st.entry_points = g.detector.stats.entry_points;
            }
            if let Some((_, prov, name)) = prog.service_descriptor() {
                st.service_name = Some(crate::ts::text::decode(&name));
                st.provider = Some(crate::ts::text::decode(&prov));
            }
            if let Some(pmt) = &prog.pmt {
                st.pmt_version = Some(pmt.version);
                st.streams = pmt
                    .streams
                    .iter()
                    .map(|s| StreamStatus {
                        pid: s.elementary_pid,
                        stream_type: s.stream_type,
                        kind: s.kind().as_str(),
                        language: s.any_language(),
                    })
                    .collect();
            }
            // Plain words for the state.
            let fresh = st
                .last_data
                .map(|t| t.elapsed() < Duration::from_secs(2))
                .unwrap_or(false);
            if self.source.is_none() {
                // set_down already said why.
            } else if self.remux.pat().is_some() && prog.pmt_pid.is_none() {
                st.state = "down";
                st.reason = format!(
                    "no service {} in the mux (services: {})",
                    o.service_id,
                    services
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            } else if prog.pmt_pid.is_some() && prog.pmt.is_none() {
                st.state = "down";
                st.reason = if mux_stats.psi_crc_errors > 0 {
                    format!(
                        "no valid PMT on PID {:#06x} ({} PSI CRC errors)",
                        prog.pmt_pid.unwrap_or(0),
                        mux_stats.psi_crc_errors
                    )
                } else {
                    format!(
                        "waiting for the PMT on PID {:#06x}",
                        prog.pmt_pid.unwrap_or(0)
                    )
                };
            } else if self.remux.pat().is_none() {
                st.state = "down";
                st.reason = "no PAT in the input yet".into();
            } else if fresh {
                st.state = "up";
                let missing = prog.missing_pids();
                st.missing_pids = if settled {
                    missing.to_vec()
                } else {
                    Vec::new()
                };
                st.reason = if settled && !missing.is_empty() {
                    let list: Vec<String> = missing.iter().map(|p| format!("{p:#06x}")).collect();
                    format!(
                        "PID(s) {} named in the PMT carry no packets",
                        list.join(", ")
                    )
                } else {
                    scrambled_reason.unwrap_or_default()
                };
            } else {
                st.state = "down";
                st.reason = "no data from the source for 2 s".into();
            }
        }
    }
}

/// Why packets of a descrambled channel left scrambled (or garbled) since
/// the last refresh, in the words the channel's reason uses.
fn scrambled_reason(st: &ChannelStatus, seen: &DescramblerStats) -> Option<String> {
    let d = st.descrambler?;
    let biss = st.ca.as_ref().is_some_and(|c| c.kind == "biss");
    let wrong = d.wrong_key.saturating_sub(seen.wrong_key);
    let stale = d.stale_key.saturating_sub(seen.stale_key);
    let no_key = d.no_key.saturating_sub(seen.no_key);
    let other = (d.pes_scrambled + d.reserved + d.malformed)
        .saturating_sub(seen.pes_scrambled + seen.reserved + seen.malformed);
    Some(if wrong > 0 {
        if biss {
            format!(
                "wrong key: {wrong} packets could not be descrambled \
                 (wrong BISS key, or not scrambled with CSA)"
            )
        } else {
            format!("wrong key: {wrong} packets could not be descrambled")
        }
    } else if stale > 0 {
        format!("control word late: {stale} packets left scrambled")
    } else if no_key > 0 {
        match st.ca.as_ref().map(|c| c.state.as_str()) {
            Some(state) if !state.is_empty() => {
                format!("no control word yet: {no_key} packets left scrambled ({state})")
            }
            _ => format!("no control word yet: {no_key} packets left scrambled"),
        }
    } else if other > 0 {
        format!(
            "{other} packets could not be descrambled \
             (PES-level or reserved scrambling, or malformed)"
        )
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::csa::{scramble_packet, Keys, Outcome, Parity};
    use crate::ca::slots::KeySlots;
    use crate::config::SourceConfig;
    use crate::fanout::{Next, RingConfig, StartAt};
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;

    const ES: [u16; 2] = [0x101, 0x102];
    const PERIODS: usize = 24;

    fn cw(k: usize) -> [u8; 8] {
        [k as u8, 0x11, 0x22, 0x33, 0x44, k as u8 ^ 0x55, 0x66, 0x77]
    }

    fn parity(k: usize) -> Parity {
        if k.is_multiple_of(2) {
            Parity::Even
        } else {
            Parity::Odd
        }
    }

    /// The packets of program 1's ES with a payload to scramble.
    fn wanted(p: &[u8]) -> bool {
        match Packet::new_checked(p) {
            Ok(pkt) => {
                ES.contains(&pkt.pid())
                    && pkt.scrambling_control() == 0
                    && pkt.has_payload()
                    && PACKET_SIZE - pkt.payload_offset() >= 8
            }
            Err(_) => false,
        }
    }

    /// A CA session that answers "ECMs" in time: it counts the wanted
    /// packets the runner feeds it and delivers words k and k+1 in the
    /// middle of period k.
    struct FakeSession {
        slots: Arc<KeySlots>,
        per: usize,
        count: usize,
        seen: usize,
        fed: Arc<AtomicU64>,
    }

    impl CaSession for FakeSession {
        fn feed(&mut self, packets: &[u8], _now: Instant) {
            for p in packets.chunks_exact(PACKET_SIZE) {
                self.fed.fetch_add(1, Ordering::Relaxed);
                if !wanted(p) && p[3] & 0xC0 == 0 {
                    continue;
                }
                let pid = ((p[1] as u16 & 0x1F) << 8) | p[2] as u16;
                if !ES.contains(&pid) {
                    continue;
                }
                // The file may be read again (a source retries after its
                // end): the schedule repeats with it.
                let at = self.seen % self.count;
                if at == 0 || at % self.per == self.per / 2 {
                    let k = at / self.per;
                    let next = (k + 1) % PERIODS;
                    let (e, o) = match parity(k) {
                        Parity::Even => (cw(k), cw(next)),
                        Parity::Odd => (cw(next), cw(k)),
                    };
                    self.slots.set_pair(Some(e), Some(o));
                }
                self.seen += 1;
            }
        }

        fn slots(&self) -> Arc<KeySlots> {
            self.slots.clone()
        }

        fn status(&self) -> CaStatus {
            CaStatus {
                kind: "fake",
                state: "answers in time".into(),
                ..Default::default()
            }
        }
    }

    #[test]
    fn runner_feeds_the_session_and_descrambles_with_its_words() {
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts");
        let clear = std::fs::read(&sample).unwrap();
        let count = clear
            .chunks_exact(PACKET_SIZE)
            .filter(|p| wanted(p))
            .count();
        let per = count.div_ceil(PERIODS);
        assert_eq!(
            count.div_ceil(per),
            PERIODS,
            "the schedule must repeat evenly"
        );
        let mut scrambled = clear.clone();
        let mut n = 0;
        for p in scrambled.chunks_exact_mut(PACKET_SIZE) {
            if wanted(p) {
                let k = n / per;
                let keys = Keys::new(cw(k), cw(k));
                assert_eq!(scramble_packet(p, &keys, parity(k)), Outcome::Done);
                n += 1;
            }
        }
        let dir = std::env::temp_dir().join(format!("capbox-runner-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("scrambled.ts");
        std::fs::write(&file, &scrambled).unwrap();

        let cfg = ChannelConfig {
            name: "scr".into(),
            tvg_id: "scr".into(),
            tvg_name: None,
            group: None,
            sources: vec![SourceConfig {
                file: file.clone(),
                file_as_written: file.display().to_string(),
                dvb: None,
                program: 1,
                looping: false,
                biss: None,
                ca: None,
                line: 0,
                key: "channel[0].source[0]".into(),
            }],
            line: 0,
            key: "channel[0]".into(),
        };
        let ring = Ring::new(RingConfig::default());
        let mut reader = ring.subscribe(StartAt::Live);
        let ch = Channel::new(cfg, ring);
        let key = MuxKey::File {
            file: file.clone(),
            looping: false,
        };
        let runner = MuxRunner::spawn(
            key,
            RunnerConfig {
                flush: Duration::from_millis(20),
                realtime: false,
                csa_batch_timeout: Duration::from_millis(5),
            },
        )
        .unwrap();
        let fed = Arc::new(AtomicU64::new(0));
        runner.add_with_ca(
            ch.clone(),
            Box::new(FakeSession {
                slots: Arc::new(KeySlots::new()),
                per,
                count,
                seen: 0,
                fed: fed.clone(),
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        loop {
            match reader.next() {
                Next::Data(piece) => out.extend_from_slice(piece.as_ref()),
                Next::Pending => std::thread::sleep(Duration::from_millis(5)),
                Next::Lagged { .. } => panic!("lagged"),
            }
            let st = ch.status();
            let d = st.descrambler.unwrap_or_default();
            if d.descrambled + d.undecryptable >= count as u64 && d.held_packets == 0 {
                // Let the writer publish its last chunk.
                std::thread::sleep(Duration::from_millis(100));
                while let Next::Data(piece) = reader.next() {
                    out.extend_from_slice(piece.as_ref());
                }
                break;
            }
            assert!(Instant::now() < deadline, "timed out: {st:?}");
        }
        runner.stop();
        let _ = std::fs::remove_dir_all(&dir);

        let st = ch.status();
        let d = st.descrambler.unwrap();
        assert_eq!(d.undecryptable, 0, "{d:?}");
        assert!(d.descrambled >= count as u64, "{d:?}");
        assert!(d.parity_switches >= PERIODS as u64 - 1, "{d:?}");
        assert_eq!(st.ca.as_ref().map(|c| c.kind), Some("fake"));
        assert!(fed.load(Ordering::Relaxed) >= (clear.len() / PACKET_SIZE) as u64);
        // Every ES packet served is clear and one of the original's.
        let originals: HashSet<&[u8]> = clear
            .chunks_exact(PACKET_SIZE)
            .filter(|p| wanted(p))
            .map(|p| &p[4..])
            .collect();
        let mut es = 0;
        for p in out.chunks_exact(PACKET_SIZE) {
            if wanted(p) || (ES.contains(&(((p[1] as u16 & 0x1F) << 8) | p[2] as u16))) {
                assert_eq!(p[3] & 0xC0, 0, "scrambled packet served");
                if wanted(p) {
                    assert!(originals.contains(&p[4..]), "garbled packet served");
                    es += 1;
                }
            }
        }
        assert!(es > count / 2, "only {es} of {count} ES packets served");
    }
}
