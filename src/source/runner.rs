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
//!
//! A DVB runner climbs its adapter's escalation ladder (`dvb::recovery`
//! decides): retune in place, close and reopen, reset the USB device (on a
//! helper thread, through the process's `resets::gate` so the runners of
//! the device's other adapters close first and reopen by name after), and
//! at last mark the adapter failed and retry it now and then; weather is
//! retuned and reopened with a back-off, never more. Each step is one log
//! line, counted and shown in the adapter's `recovery` status.

use super::dvb::{failure_of, DvbSource, DvbSourceConfig};
use super::resets::gate;
use super::{
    ChannelSink, FileSource, FileSourceConfig, ReadOutcome, Source, SourceError, SourceReport,
    StreamStatus,
};
use crate::ca::biss::{BissKey, BissSession};
use crate::ca::descrambler::{Descrambler, DescramblerStats, KeyPolicy};
use crate::ca::CaSession;
use crate::config::SourceConfig;
use crate::dvb::recovery::{Action, Decision, Failure, Ladder, Step};
use crate::epg::eit::EitCollector;
use crate::epg::live::MuxEit;
use crate::monitor::clock::{crossing_words, BoxClock, Crossing, TdtWatch};
use crate::monitor::tr101290::{self, Board, MuxReport, Tr101290};
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
    /// The source's `epg_charset`: this service's EIT strings without a
    /// selector byte.
    pub epg_charset: Option<crate::ts::text::Charset>,
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

/// What the runner monitors (`[monitor]`) and where it publishes it.
#[derive(Debug, Clone, Default)]
pub struct MonitorHook {
    /// TR 101 290 on the input mux and each channel's output.
    pub tr101290: bool,
    /// The box clock check on live inputs (a tuner, a remote stream).
    pub clock: bool,
    /// `[monitor] clock_drift_s`.
    pub clock_drift_s: u32,
    /// Where /status and /metrics read it; None: nothing published.
    pub board: Option<Arc<Board>>,
}

/// Knobs of a runner (from `[buffers]`, `[monitor]` and `[epg]`).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub flush: Duration,
    /// Pace by PCR (serve) or run as fast as possible (benchmarks).
    pub realtime: bool,
    /// How long a descrambled channel's partly filled CSA batch may wait
    /// for more packets (`descrambler::DEFAULT_BATCH_TIMEOUT`).
    pub csa_batch_timeout: Duration,
    pub monitor: MonitorHook,
    /// The daemon's guide: the EIT of every channel's service on this
    /// input goes there (`[epg] enabled`); None: not collected.
    pub epg: Option<Arc<crate::epg::live::Live>>,
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
    /// TR 101 290 on the single-program TS the channel gets from here.
    tr: Option<Box<Tr101290>>,
    /// The source's `epg_charset`.
    epg_charset: Option<crate::ts::text::Charset>,
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
    /// The escalation ladder of a DVB input (None for files and remotes).
    ladder: Option<Ladder>,
    /// The adapter number the DVB source last opened on.
    adapter_number: Option<u32>,
    /// The adapter is failed: the reopen at `retry_at` is its periodic
    /// retry (step 2 from step 4).
    failed_retry: bool,
    /// A USB reset under way on a helper thread: its outcome in words.
    usb_reset: Option<Receiver<Result<String, String>>>,
    /// Zero of the ladder's clock.
    t0: Instant,
    /// TR 101 290 on the input mux (`[monitor] tr101290`).
    mux_tr: Option<Box<Tr101290>>,
    /// The box clock against the mux's TDT/TOT (live inputs).
    clock: Option<(TdtWatch, BoxClock)>,
    /// The source's sync losses already reported to `mux_tr`.
    sync_losses_seen: u64,
    /// The PIDs the source passes, as last told to `mux_tr`.
    passed_seen: Option<Option<Vec<u16>>>,
    /// ms (of `t0`) of the previous read and of the previous output turn:
    /// the analysers spread a read's packets between the two.
    last_read_ms: u64,
    last_turn_ms: u64,
    /// The EIT of the channels' services (`cfg.epg`).
    eit: Option<EitCollector>,
}

/// A ladder line logged below warn (a healed ladder) is still one of the
/// supervisor's events, kept in the reset log beside the warnings and
/// errors the logger passes there itself.
fn ladder_event_for_supervisor(line: &str) {
    crate::supervisor::resetlog::note(&format!("INFO {line}"));
}

impl Worker {
    fn new(
        key: MuxKey,
        input: InputSpec,
        cfg: RunnerConfig,
        rx: Receiver<Command>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        let ladder = match &input {
            InputSpec::Dvb(d) => {
                // Counters and the last step survive a new runner (a
                // reload); the rung starts over.
                let prior = super::dvb::lock_status(&d.status).recovery.clone();
                Some(Ladder::with_history(d.recovery, prior))
            }
            _ => None,
        };
        let tuner = matches!(input, InputSpec::Dvb(_));
        let live = !matches!(input, InputSpec::File);
        let mux_tr = cfg
            .monitor
            .tr101290
            .then(|| Box::new(Tr101290::new(tr101290::Config::mux(tuner))));
        let clock = (cfg.monitor.clock && live).then(|| {
            (
                TdtWatch::default(),
                BoxClock::new(cfg.monitor.clock_drift_s),
            )
        });
        let eit = cfg.epg.as_ref().map(|live| {
            let s = live.settings();
            EitCollector::new(std::iter::empty(), s.charset, s.language).actual_only()
        });
        let w = Worker {
            eit,
            mux_tr,
            clock,
            sync_losses_seen: 0,
            passed_seen: None,
            last_read_ms: 0,
            last_turn_ms: 0,
            ladder,
            adapter_number: None,
            failed_retry: false,
            usb_reset: None,
            t0: Instant::now(),
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
        };
        // A new runner (a reload) shows its fresh rung at once, not the
        // old runner's.
        w.publish_recovery();
        w
    }

    fn describe(&self) -> String {
        self.key.describe()
    }

    /// The source failed: every channel on it is told why (counted), the
    /// reason is kept for the status while it is shut, and it is closed.
    fn fail_source(&mut self, error: String) {
        for o in &self.outputs {
            o.sink.report(
                o.source,
                SourceReport::failed(error.clone(), self.source_errors),
            );
        }
        self.last_error = Some(error);
        self.close_source();
    }

    fn run(&mut self, hb: &Heartbeat) {
        let mut buf = Vec::with_capacity(256 * PACKET_SIZE);
        let mut out = Vec::with_capacity(256 * PACKET_SIZE);
        let mut last_status = Instant::now() - Duration::from_secs(1);
        while !self.stop.load(Ordering::Relaxed) {
            hb.beat();
            self.commands();
            if self.ladder.is_some() {
                self.usb_turn();
            }
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
                if fresh {
                    self.ladder_data();
                }
                if fresh {
                    self.monitor_mux(&buf, matches!(res, Ok(ReadOutcome::Discontinuity)));
                }
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
                        if self.ladder.is_some() {
                            self.dvb_failed(e);
                        } else {
                            self.source_failed(e);
                        }
                        buf.clear();
                    }
                }
                if self.source.is_some() {
                    self.backoff = Duration::from_secs(1);
                }
                if fresh {
                    self.collect_eit(&buf);
                }
            }
            let now = Instant::now();
            if let Some(t) = self.mux_tr.as_mut() {
                // Time passes for the "at least every" tests, data or not.
                t.tick(self.t0.elapsed().as_millis() as u64);
            }
            self.outputs_turn(&buf, fresh, &mut out, now);
            if now.duration_since(last_status) >= Duration::from_millis(250) {
                last_status = now;
                self.refresh_status();
                self.publish_eit();
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
                self.monitor_passed_pids();
            }
        }
        if let Some(live) = &self.cfg.epg {
            live.remove_mux(&self.describe());
        }
        self.close_source();
        if let Some(b) = &self.cfg.monitor.board {
            b.remove_mux(&self.describe());
            for o in &self.outputs {
                b.remove_channel(&o.name, o.source);
            }
        }
    }

    /// TR 101 290 and the box clock on what the source read.
    fn monitor_mux(&mut self, buf: &[u8], discontinuity: bool) {
        let ms = self.t0.elapsed().as_millis() as u64;
        let from = std::mem::replace(&mut self.last_read_ms, ms);
        if let Some(t) = self.mux_tr.as_mut() {
            if discontinuity {
                t.input_discontinuity();
            }
            t.push_packets_between(buf, from, ms);
        }
        if let Some((watch, clock)) = self.clock.as_mut() {
            if let Some(utc) = watch.push_packets(buf) {
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                if let Some(c) = clock.observe(utc, wall, ms) {
                    let words =
                        crossing_words(c, &self.key.describe(), self.cfg.monitor.clock_drift_s);
                    match c {
                        Crossing::Drift(_) => log::warn!("{words}"),
                        Crossing::Back(_) => log::info!("{words}"),
                    }
                }
            }
        }
    }

    /// A tuner passing only some PIDs: the mux analyser expects no others
    /// (and measures no PCR accuracy from positions that are not the mux's).
    fn monitor_passed_pids(&mut self) {
        let Some(t) = self.mux_tr.as_mut() else {
            return;
        };
        let passed = self.source.as_ref().and_then(|s| s.passed_pids());
        if self.passed_seen.as_ref() != Some(&passed) {
            t.set_passed_pids(passed.as_deref());
            self.passed_seen = Some(passed);
        }
    }

    /// The channels' EIT out of what the source read, into the store.
    fn collect_eit(&mut self, buf: &[u8]) {
        if let (Some(c), Some(live)) = (self.eit.as_mut(), self.cfg.epg.as_ref()) {
            if live.enabled() {
                c.push_packets_shared(buf, live.store_mutex(), crate::epg::live::now_secs());
            }
        }
    }

    /// Which services the collector wants (a remote's program 0 is known
    /// once its PAT came), and its counters for /status and /metrics.
    fn publish_eit(&mut self) {
        self.eit_services();
        let (Some(c), Some(live)) = (self.eit.as_ref(), self.cfg.epg.as_ref()) else {
            return;
        };
        let key = self.key.describe();
        live.set_mux(&key, MuxEit::of(&c.stats, c.assembler_stats().crc_errors));
    }

    /// Tell the collector the channels' services (at attach, so the first
    /// read is collected, and at each status refresh).
    fn eit_services(&mut self) {
        let Some(c) = self.eit.as_mut() else {
            return;
        };
        let wanted: Vec<(u16, String, Option<crate::ts::text::Charset>)> = self
            .outputs
            .iter()
            .map(|o| {
                (
                    self.remux.program(o.prog).program_number,
                    o.name.clone(),
                    o.epg_charset,
                )
            })
            .filter(|(sid, _, _)| *sid != 0)
            .collect();
        let same = c.services().count() == wanted.len()
            && wanted
                .iter()
                .all(|(sid, n, _)| c.services().any(|(s, m)| s == *sid && m == n));
        if !same {
            c.set_services(wanted);
        }
    }

    /// One turn of every output: feed its CA session the mux read (if
    /// any), take its remux output, descramble it (also with nothing new,
    /// so held packets go out on their time bound), gate and write it.
    fn outputs_turn(&mut self, buf: &[u8], fresh: bool, out: &mut Vec<u8>, now: Instant) {
        let ms = now.saturating_duration_since(self.t0).as_millis() as u64;
        let from = std::mem::replace(&mut self.last_turn_ms, ms);
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
            if let Some(t) = o.tr.as_mut() {
                if !out.is_empty() {
                    t.push_packets_between(out, from, ms);
                } else {
                    t.tick(ms);
                }
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
        if self.ladder.is_some() {
            if self.usb_reset.is_some() {
                return false;
            }
            if let Some(n) = self.adapter_number {
                if gate().held(n).is_some() {
                    return false;
                }
            }
            if self.failed_retry {
                self.failed_retry = false;
                let now = self.ms();
                if let Some(l) = self.ladder.as_mut() {
                    let d = l.failed_retry(now);
                    self.log_step(&d, "");
                    self.publish_recovery();
                }
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
                if let InputSpec::Dvb(d) = &self.input {
                    let n = super::dvb::lock_status(&d.status).number;
                    self.adapter_number = n.or(self.adapter_number);
                    if let Some(n) = n {
                        gate().opened(n);
                    }
                    let now = self.ms();
                    if let Some(l) = self.ladder.as_mut() {
                        l.on_locked(now);
                    }
                }
                true
            }
            Err(e) => {
                if self.ladder.is_some() {
                    self.dvb_failed(e);
                } else {
                    self.source_failed(e);
                }
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
        self.fail_source(error);
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
        self.remux.reset_input();
    }

    /// Milliseconds of the ladder's clock.
    fn ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// "ter1 (adapter0)": the adapter in the ladder's lines.
    fn adapter_what(&self) -> String {
        let name = match &self.input {
            InputSpec::Dvb(d) => d.name.clone(),
            _ => self.describe(),
        };
        match self.adapter_number {
            Some(n) => format!("{name} (adapter{n})"),
            None => name,
        }
    }

    /// Closes the source (if open); a DVB adapter is let go in the gate.
    fn close_source(&mut self) {
        if self.source.take().is_some() && self.ladder.is_some() {
            if let Some(n) = self.adapter_number {
                gate().closed(n);
            }
        }
    }

    /// The ladder's status into the adapter's shared status.
    fn publish_recovery(&self) {
        if let (InputSpec::Dvb(d), Some(l)) = (&self.input, &self.ladder) {
            super::dvb::lock_status(&d.status).recovery = l.status().clone();
        }
    }

    /// Data flowed: the ladder may heal.
    fn ladder_data(&mut self) {
        let now = self.ms();
        let Some(l) = self.ladder.as_mut() else {
            return;
        };
        let was_failed = l.status().failed;
        let healed = l.on_data(now);
        let failed_changed = l.status().failed != was_failed;
        let Some(words) = healed else {
            // A failed adapter serving again is no longer failed.
            if failed_changed {
                self.publish_recovery();
            }
            return;
        };
        let line = format!("{}: {words}; the ladder starts over", self.adapter_what());
        log::info!("{line}");
        ladder_event_for_supervisor(&line);
        self.publish_recovery();
    }

    /// One line per step: "ter1 (adapter0): locked but no data for 2 s:
    /// step 1/4 retune".
    fn log_step(&self, d: &Decision, words: &str) {
        let what = self.adapter_what();
        let line = match (d.step, d.action) {
            (Some(Step::Failed), Action::Failed { after_ms }) => format!(
                "{what}: {}: {}; channel failover carries its channels; retrying every {} s",
                d.reason,
                Step::Failed,
                after_ms / 1000
            ),
            (Some(step), Action::Reopen { after_ms }) if after_ms > 0 => {
                format!("{what}: {}: {step}, in {} s", d.reason, secs(after_ms))
            }
            (Some(step), _) => format!("{what}: {}: {step}", d.reason),
            // Not a rung (gone, busy): the source's own words.
            (None, Action::Reopen { after_ms }) => {
                format!("{words}; {}: reopening in {} s", d.reason, secs(after_ms))
            }
            (None, _) => format!("{words}; {}", d.reason),
        };
        match d.step {
            Some(Step::UsbReset | Step::Failed) => log::error!("{line}"),
            Some(_) => log::warn!("{line}"),
            None => log::info!("{line}"),
        }
    }

    /// A DVB source failed with `e` (read, status or open): the ladder
    /// decides what to do.
    fn dvb_failed(&mut self, e: SourceError) {
        let failure = failure_of(&e).cloned().unwrap_or(Failure::Other);
        let open = self.source.is_some();
        let now = self.ms();
        let Some(l) = self.ladder.as_mut() else {
            return self.source_failed(e);
        };
        let d = l.on_failure(now, &failure, open);
        self.take_decision(d, e.to_string());
    }

    /// Carries out `d` (and what follows when a step cannot be taken: a
    /// retune that fails is a new failure, a USB reset that cannot be made
    /// marks the adapter failed). `words`: the source's error.
    fn take_decision(&mut self, mut d: Decision, mut words: String) {
        // Each round climbs or ends; 6 bounds it whatever happens.
        for _ in 0..6 {
            self.log_step(&d, &words);
            self.publish_recovery();
            match d.action {
                Action::Retune => {
                    let r = self.source.as_mut().and_then(|s| s.retune());
                    let now = self.ms();
                    match r {
                        Some(Ok(())) => {
                            if let Some(l) = self.ladder.as_mut() {
                                l.on_locked(now);
                            }
                            return;
                        }
                        Some(Err(e)) => {
                            let failure = failure_of(&e).cloned().unwrap_or(Failure::Other);
                            words = e.to_string();
                            self.close_source();
                            let Some(l) = self.ladder.as_mut() else {
                                return;
                            };
                            d = l.on_failure(now, &failure, false);
                        }
                        None => {
                            self.shut(&words, &d, crate::dvb::recovery::REOPEN_PAUSE_MS);
                            return;
                        }
                    }
                }
                Action::Reopen { after_ms } => {
                    self.shut(&words, &d, after_ms);
                    return;
                }
                Action::Failed { after_ms } => {
                    self.shut(&words, &d, after_ms);
                    self.failed_retry = true;
                    return;
                }
                Action::UsbReset => {
                    self.shut(&words, &d, 0);
                    match self.start_usb_reset() {
                        Some(next) => d = next,
                        None => return,
                    }
                }
            }
        }
    }

    /// Closes the source for a step, tells the channels why (their
    /// failover carries them) and sets when to open again.
    fn shut(&mut self, words: &str, d: &Decision, after_ms: u64) {
        self.source_errors += 1;
        let name = match &self.input {
            InputSpec::Dvb(c) => c.name.clone(),
            _ => String::new(),
        };
        let error = match (d.step, d.action) {
            (Some(Step::Failed), _) => format!(
                "source: adapter {name} failed ({}); retrying every {} s",
                d.reason,
                after_ms / 1000
            ),
            (Some(step), _) => format!("source: {words} ({}: {step})", d.reason),
            (None, _) => format!("source: {words}"),
        };
        self.fail_source(error);
        self.retry_at = Some(Instant::now() + Duration::from_millis(after_ms));
        self.remux.reset_input();
    }

    /// Step 3: find the USB device that owns the adapter and reset it on a
    /// helper thread once the device's other adapters are closed. None: under
    /// way; Some: it cannot be done, the next decision (failed).
    fn start_usb_reset(&mut self) -> Option<Decision> {
        let what = self.adapter_what();
        let now = self.ms();
        let wait_ms = self.ladder.as_ref()?.config().usb_reset_wait_ms;
        let cannot = |this: &mut Worker, why: String| -> Option<Decision> {
            log::error!("{what}: {why}");
            this.ladder
                .as_mut()
                .map(|l| l.usb_reset_impossible(now, &why))
        };
        let Some(n) = self.adapter_number else {
            return cannot(
                self,
                "the adapter number is not known (never opened): cannot reset, marking failed"
                    .into(),
            );
        };
        let dev = match crate::dvb::usb::owner_of_adapter(n) {
            Ok(Some(dev)) => dev,
            Ok(None) => {
                let why = format!(
                    "not a USB device ({}): cannot reset, marking failed",
                    parent_words(n)
                );
                return cannot(self, why);
            }
            Err(e) => {
                return cannot(
                    self,
                    format!("cannot find its USB device ({e}): cannot reset, marking failed"),
                )
            }
        };
        let mut adapters = crate::dvb::usb::adapters_of(&dev);
        if !adapters.contains(&n) {
            adapters.push(n);
        }
        let device = format!(
            "USB device {} ({:04x}:{:04x}{})",
            dev.sysfs
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
            dev.vendor,
            dev.product,
            dev.product_name
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default()
        );
        let others: Vec<String> = adapters
            .iter()
            .filter(|&&a| a != n)
            .map(|a| format!("adapter{a}"))
            .collect();
        let release = Duration::from_secs(5);
        // The hold outlives the reset's own bound, then expires.
        let limit = release + Duration::from_millis(wait_ms) + Duration::from_secs(5);
        let id = gate().hold(&adapters, &what, &device, limit);
        log::warn!(
            "{what}: resetting {device}{}",
            if others.is_empty() {
                String::new()
            } else {
                format!("; closing its other adapters first: {}", others.join(", "))
            }
        );
        let (tx, rx) = mpsc::channel();
        let what2 = what.clone();
        let spawned = std::thread::Builder::new()
            .name("usb reset".into())
            .spawn(move || {
                let still = gate().wait_released(id, release);
                if !still.is_empty() {
                    log::warn!(
                        "{what2}: {} still open after {} s: resetting anyway",
                        still
                            .iter()
                            .map(|a| format!("adapter{a}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        release.as_secs()
                    );
                }
                let r = crate::dvb::usb::reset(&dev, Duration::from_millis(wait_ms));
                gate().lift(id);
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => {
                self.usb_reset = Some(rx);
                None
            }
            Err(e) => {
                gate().lift(id);
                cannot(
                    self,
                    format!("cannot start the reset thread ({e}): marking failed"),
                )
            }
        }
    }

    /// Every turn of a DVB runner: the outcome of its USB reset, and
    /// another runner's reset that needs this adapter closed.
    fn usb_turn(&mut self) {
        if let Some(rx) = &self.usb_reset {
            let r = match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    Err("the reset thread ended without an answer".to_string())
                }
            };
            self.usb_reset = None;
            let what = self.adapter_what();
            match r {
                Ok(words) => {
                    let line = format!("{what}: USB reset done: {words}; reopening by its name");
                    log::warn!("{line}");
                    self.retry_at = None;
                }
                Err(e) => {
                    let why = format!("USB reset failed: {e}; marking failed");
                    log::error!("{what}: {why}");
                    let now = self.ms();
                    if let Some(l) = self.ladder.as_mut() {
                        let d = l.usb_reset_impossible(now, &why);
                        self.take_decision(d, why);
                    }
                }
            }
            return;
        }
        let Some(n) = self.adapter_number else { return };
        if self.source.is_none() {
            return;
        }
        if let Some(h) = gate().held(n) {
            let what = self.adapter_what();
            let line = format!(
                "{what}: closing for the reset of {} (asked by {}); reopening by its name after it",
                h.device, h.by
            );
            log::warn!("{line}");
            let error = format!("source: {line}");
            self.fail_source(error);
            self.retry_at = None;
            self.remux.reset_input();
        }
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
                        epg_charset,
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
                        tr: self
                            .cfg
                            .monitor
                            .tr101290
                            .then(|| Box::new(Tr101290::new(tr101290::Config::channel()))),
                        epg_charset,
                    });
                    self.eit_services();
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
                        if let Some(b) = &self.cfg.monitor.board {
                            b.remove_channel(&o.name, o.source);
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

    /// What each channel's program looks like from here, in facts (the
    /// channel turns them into a state and words).
    fn refresh_status(&mut self) {
        let mux_stats = self.remux.stats;
        let source_stats = self.source.as_ref().map(|s| s.stats()).unwrap_or_default();
        self.publish_monitor(source_stats.sync_losses);
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

impl Worker {
    /// TR 101 290 and the clock, onto the board (every status refresh).
    fn publish_monitor(&mut self, sync_losses: u64) {
        let ms = self.t0.elapsed().as_millis() as u64;
        if let Some(t) = self.mux_tr.as_mut() {
            // The source's resync found the mux broken and regained it.
            if sync_losses < self.sync_losses_seen {
                self.sync_losses_seen = 0; // a new source
            }
            for _ in self.sync_losses_seen..sync_losses {
                t.sync_lost(ms);
            }
        }
        self.sync_losses_seen = sync_losses;
        let Some(board) = self.cfg.monitor.board.clone() else {
            return;
        };
        if self.mux_tr.is_some() || self.clock.is_some() {
            board.set_mux(MuxReport {
                name: self.describe(),
                tr101290: self.mux_tr.as_ref().map(|t| t.snapshot(ms)),
                clock: self
                    .clock
                    .as_ref()
                    .map(|(_, c)| c.status(ms))
                    .unwrap_or_default(),
            });
        }
        for o in &self.outputs {
            if let Some(t) = &o.tr {
                board.set_channel(&o.name, o.source, t.snapshot(ms));
            }
        }
    }
}

/// "5", "0.5": seconds for a log line.
fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{:.1}", ms as f64 / 1000.0)
    }
}

/// What an adapter that is not on USB hangs off, in words: "platform
/// device vidtv", "pci device saa716x_tbs": the nearest device up from the
/// frontend's that has a driver (vidtv's frontend sits on a driverless
/// i2c adapter under the platform device `vidtv.0`); "no USB parent" when
/// sysfs says nothing.
fn parent_words(adapter: u32) -> String {
    let node = std::path::PathBuf::from(format!("/sys/class/dvb/dvb{adapter}.frontend0/device"));
    let name = |p: std::path::PathBuf| {
        std::fs::canonicalize(p)
            .ok()
            .and_then(|r| r.file_name().map(|f| f.to_string_lossy().to_string()))
    };
    let Ok(start) = std::fs::canonicalize(&node) else {
        return "no USB parent".to_string();
    };
    let mut cur = Some(start.as_path());
    while let Some(dir) = cur {
        if let Some(driver) = name(dir.join("driver")) {
            return match name(dir.join("subsystem")) {
                Some(bus) => format!("{bus} device {driver}"),
                None => format!("device of driver {driver}"),
            };
        }
        cur = dir.parent().filter(|p| p.starts_with("/sys/devices"));
    }
    "no USB parent".to_string()
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
                epg_charset: None,
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
                monitor: MonitorHook::default(),
                epg: None,
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
            epg_charset: None,
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
