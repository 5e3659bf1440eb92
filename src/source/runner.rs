//! The mux runner: one thread per input mux (a file, an adapter, a remote
//! stream). It reads the source, runs the remux once for every channel
//! that takes a program of that mux, feeds each scrambled channel's CA
//! session (BISS, a card, a softcam) the mux and descrambles the program
//! with the words the session delivers (`ca::descrambler`), and hands each
//! channel its packets through the narrow `ChannelSink` the channel owns.
//! Channels on the same mux share one read and one demux. Descrambled
//! packets may wait up to the CSA batch time bound (10 ms); the runner
//! calls every descrambler on each turn, data or not, so that bound holds.
//!
//! The runner knows no `Channel`: it writes into sinks, and reports what
//! it measured of each program (`SourceReport`); the channel decides what
//! goes on air. It never blocks on a client: the ring behind the sink is
//! the only thing between it and HTTP. Commands (attach or detach a
//! channel, stop) reach it through a channel it polls between reads, so a
//! reload touches only what changed.

use super::dvb::{DvbSource, DvbSourceConfig};
use super::{
    ChannelSink, FileSource, FileSourceConfig, ReadOutcome, Source, SourceError, SourceReport,
    StreamStatus,
};
use crate::ca::biss::{BissKey, BissSession};
use crate::ca::descrambler::{Descrambler, DescramblerStats, KeyPolicy};
use crate::ca::CaSession;
use crate::config::SourceConfig;
use crate::remux::Remux;
use crate::supervisor::Heartbeat;
use crate::ts::packet::PACKET_SIZE;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Services named in a message (a hostile PAT may list a thousand).
pub const LISTED_SERVICES: usize = 16;

/// The first `max` items joined with ", ", then "… (N more)" if there are
/// more: a message about the mux stays one readable line.
pub fn list_some(items: impl Iterator<Item = String>, max: usize) -> String {
    let mut out = Vec::new();
    let mut more = 0usize;
    for i in items {
        if out.len() < max {
            out.push(i);
        } else {
            more += 1;
        }
    }
    let mut s = out.join(", ");
    if more > 0 {
        s += &format!(", … ({more} more)");
    }
    s
}

/// One channel's program on this mux, as the daemon asks for it.
pub struct Attach {
    /// Where the program's packets go: the channel, as its source `source`.
    pub sink: Arc<dyn ChannelSink>,
    /// The index of this source among the channel's sources.
    pub source: usize,
    /// program_number (service_id) in the mux.
    pub program: u16,
    /// A BISS key (the runner makes the session), unless `ca` is given.
    pub biss: Option<BissKey>,
    /// A CA session that finds the control words (card, softcam).
    pub ca: Option<Box<dyn CaSession>>,
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
    /// A remote stream (another capbox's channel, any HTTP MPEG-TS URL).
    Remote {
        url: String,
        /// Cold standby: connected only while a channel needs it (a
        /// change of `standby` is a new runner).
        cold: bool,
    },
}

impl MuxKey {
    pub fn of(src: &SourceConfig) -> MuxKey {
        if let Some(r) = &src.remote {
            return MuxKey::Remote {
                url: r.url.clone(),
                cold: r.standby == crate::config::Standby::Cold,
            };
        }
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
            MuxKey::Remote { url, .. } => format!("remote {}", super::remote::redact_url(url)),
        }
    }
}

/// How to open the input of a runner.
#[derive(Debug, Clone)]
pub enum InputSpec {
    /// The file of a `MuxKey::File`.
    File,
    Dvb(DvbSourceConfig),
    Remote(super::remote::RemoteSourceConfig),
}

enum Command {
    /// A channel's program, and the CA session that finds its control
    /// words (else the `biss` key, if any, else none: served as received).
    Add(Attach),
    /// Every program of the channel of that name.
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
        Self::spawn_supervised(key, input, cfg, Heartbeat::detached())
    }

    /// As `spawn_input`, beating `hb` once per turn of its loop (the
    /// supervisor's "mux <describe>" heartbeat, reboot policy): the loop
    /// turns at least every 50 ms whether data comes or not, so only a
    /// thread stuck inside a call stops it, never a silent input.
    pub fn spawn_supervised(
        key: MuxKey,
        input: InputSpec,
        cfg: RunnerConfig,
        hb: Heartbeat,
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
            MuxKey::Remote { .. } => "remote".to_string(),
        };
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // Long bounded waits inside the source (the escalation
            // ladder's reopen and USB reset) beat through this binding.
            hb.bind_to_this_thread();
            let mut w = Worker::new(key2, input, cfg, rx, stop2);
            w.run(&hb);
        })?;
        Ok(MuxRunner {
            key,
            tx,
            stop,
            thread: Some(thread),
        })
    }

    /// Serve a channel's program: with `ca` (a card or softcam session)
    /// the runner feeds it the mux and descrambles the program with the
    /// words it puts into its slots (`KeyPolicy::Rotating`).
    pub fn attach(&self, a: Attach) {
        let _ = self.tx.send(Command::Add(a));
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

/// One channel's program inside the runner.
struct Output {
    sink: Arc<dyn ChannelSink>,
    /// The channel's name (for Remove), read once.
    name: String,
    source: usize,
    prog: usize,
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
    /// Why the source last failed, in words (reported while it is shut).
    last_error: Option<String>,
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
            last_error: None,
        }
    }

    fn describe(&self) -> String {
        self.key.describe()
    }

    fn run(&mut self, hb: &Heartbeat) {
        let mut buf = Vec::with_capacity(256 * PACKET_SIZE);
        let mut out = Vec::with_capacity(256 * PACKET_SIZE);
        let mut last_status = Instant::now() - Duration::from_secs(1);
        while !self.stop.load(Ordering::Relaxed) {
            hb.beat();
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
                        for o in &self.outputs {
                            o.sink.input_discontinuity(o.source);
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
                o.sink.set_psi(o.source, prog.psi_packets());
            }
            if !out.is_empty() {
                o.sink.write(o.source, out, prog.video, now);
            }
            o.sink.tick(o.source, now);
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
            (_, InputSpec::Remote(r)) => {
                super::remote::RemoteSource::start(r.clone()).map(|s| Box::new(s) as _)
            }
            (MuxKey::File { file, looping }, InputSpec::File) => {
                let mut cfg = FileSourceConfig::new(file);
                cfg.looping = *looping;
                cfg.realtime = self.cfg.realtime;
                FileSource::open(cfg).map(|s| Box::new(s) as _)
            }
            (MuxKey::Dvb { .. } | MuxKey::Remote { .. }, InputSpec::File) => Err(SourceError::Io {
                what: self.key.describe(),
                err: std::io::Error::other("no settings given to the runner"),
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
                self.last_error = None;
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
        let error = format!("source: {what}");
        for o in &self.outputs {
            o.sink.report(
                o.source,
                SourceReport::failed(error.clone(), self.source_errors),
            );
        }
        self.last_error = Some(error);
        self.source = None;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        self.remux.reset_input();
    }

    fn commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Add(a)) => {
                    let Attach {
                        sink,
                        source,
                        program,
                        biss,
                        ca,
                    } = a;
                    let name = sink.name();
                    let Some(prog) = self.remux.try_add_program(program) else {
                        sink.report(
                            source,
                            SourceReport::failed(
                                format!(
                                    "more than {} channels on {}: not served",
                                    Remux::MAX_PROGRAMS,
                                    self.describe()
                                ),
                                self.source_errors,
                            ),
                        );
                        continue;
                    };
                    log::info!(
                        "channel '{name}': program {program} from {} (source {source})",
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
                    self.outputs.push(Output {
                        sink,
                        name,
                        source,
                        prog,
                        service_id: program,
                        descrambler,
                        ca,
                        seen: DescramblerStats::default(),
                        pmt_at: None,
                    });
                }
                Ok(Command::Remove(name)) => {
                    while let Some(i) = self.outputs.iter().position(|o| o.name == name) {
                        let mut o = self.outputs.remove(i);
                        if let Some(d) = o.descrambler.as_mut() {
                            // A reload may hand the ring to a new channel:
                            // what the descrambler held still goes out.
                            let mut rest = Vec::new();
                            d.flush(&mut rest);
                            if !rest.is_empty() {
                                let video = self.remux.program(o.prog).video;
                                o.sink.write(o.source, &rest, video, Instant::now());
                            }
                        }
                        // And the chunk being filled: its clients (or the
                        // channel that takes the ring over) lose nothing.
                        o.sink.detach(o.source);
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

    /// What each channel's program looks like from here, in facts (the
    /// channel turns them into a state and words).
    fn refresh_status(&mut self) {
        let mux_stats = self.remux.stats;
        let source_stats = self.source.as_ref().map(|s| s.stats()).unwrap_or_default();
        let remote = self.source.as_ref().and_then(|s| s.remote_status());
        let services: Vec<u16> = self
            .remux
            .pat()
            .map(|p| {
                p.programs()
                    .map(|e| e.program_number)
                    .take(LISTED_SERVICES + 1)
                    .collect()
            })
            .unwrap_or_default();
        let services_total = self.remux.pat().map(|p| p.programs().count()).unwrap_or(0);
        let describe = self.describe();
        let open = self.source.is_some();
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
            let descrambler = o.descrambler.as_ref().map(|d| d.stats());
            let ca = o.ca.as_ref().map(|c| c.status());
            let scrambled = scrambled_reason(descrambler, ca.as_ref(), &o.seen);
            if let Some(d) = descrambler {
                o.seen = d;
            }
            let (service_name, provider) = match prog.service_descriptor() {
                // Names from the air reach the playlist, /status and logs:
                // one clean line each.
                Some((_, prov, name)) => (
                    Some(crate::ts::text::decode_name(&name)),
                    Some(crate::ts::text::decode_name(&prov)),
                ),
                None => (None, None),
            };
            let streams = prog
                .pmt
                .as_ref()
                .map(|pmt| {
                    pmt.streams
                        .iter()
                        .map(|s| StreamStatus {
                            pid: s.elementary_pid,
                            stream_type: s.stream_type,
                            kind: s.kind().as_str(),
                            language: s.any_language(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            o.sink.report(
                o.source,
                SourceReport {
                    source: describe.clone(),
                    open,
                    error: if open { None } else { self.last_error.clone() },
                    source_errors: self.source_errors,
                    program: o.service_id,
                    services: services.clone(),
                    services_total,
                    pat_seen: self.remux.pat().is_some(),
                    pmt_pid: prog.pmt_pid,
                    pmt_version,
                    psi_crc_errors: mux_stats.psi_crc_errors,
                    streams,
                    service_name,
                    provider,
                    program_stats: prog.stats,
                    mux_stats,
                    source_stats,
                    missing_pids: if settled {
                        prog.missing_pids().to_vec()
                    } else {
                        Vec::new()
                    },
                    descrambler,
                    ca,
                    scrambled,
                    remote: remote.clone(),
                },
            );
        }
    }
}

/// Why packets of a descrambled channel left scrambled (or garbled) since
/// the last refresh, in the words the channel's reason uses.
fn scrambled_reason(
    d: Option<DescramblerStats>,
    ca: Option<&crate::ca::CaStatus>,
    seen: &DescramblerStats,
) -> Option<String> {
    let d = d?;
    let biss = ca.is_some_and(|c| c.kind == "biss");
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
        match ca.map(|c| c.state.as_str()) {
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
    use crate::ca::CaStatus;
    use crate::channel::Channel;
    use crate::config::ChannelConfig;
    use crate::config::SourceConfig;
    use crate::fanout::Ring;
    use crate::fanout::{Next, RingConfig, StartAt};
    use crate::ts::packet::Packet;
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
                remote: None,
                program: 1,
                looping: false,
                biss: None,
                ca: None,
                line: 0,
                key: "channel[0].source[0]".into(),
            }],
            fail_after_ms: crate::config::DEFAULT_FAIL_AFTER_MS,
            recover_after_ms: crate::config::DEFAULT_RECOVER_AFTER_MS,
            slate: crate::config::SlateSetting::Off,
            close_after_ms: 0,
            line: 0,
            key: "channel[0]".into(),
        };
        let ring = Ring::new(RingConfig::default());
        let mut reader = ring.subscribe(StartAt::Live);
        let ch = Channel::new(cfg, ring, Duration::from_millis(20));
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
        runner.attach(Attach {
            sink: ch.clone(),
            source: 0,
            program: 1,
            biss: None,
            ca: Some(Box::new(FakeSession {
                slots: Arc::new(KeySlots::new()),
                per,
                count,
                seen: 0,
                fed: fed.clone(),
            })),
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        loop {
            match reader.next() {
                Next::Data(piece) => out.extend_from_slice(piece.as_ref()),
                Next::Pending => std::thread::sleep(Duration::from_millis(5)),
                Next::Lagged { .. } => panic!("lagged"),
                Next::Closed => panic!("closed"),
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
