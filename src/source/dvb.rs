//! A DVB adapter as a `Source`: one tuned frontend, the whole TS of its mux
//! on dvr, read non-blocking and handed out as aligned packets.
//!
//! Owns one adapter while open: the frontend (read-write, the only tuning
//! user), its demux filters and the dvr reader. It opens with the full TS
//! (PID 0x2000, `DMX_OUT_TS_TAP`) so PAT and PMTs arrive at once; when the
//! channel runner says which PIDs its channels need
//! ([`Source::set_wanted_pids`], from [`wanted_pids`]) and the adapter's
//! `PidFilter` allows it, it narrows to one filter per PID (`PidSet`),
//! widening again to the full TS above the threshold. New filters open
//! before old ones close (dvb-core copies a packet to dvr once even when two
//! filters pass it), so a change loses no packet.
//!
//! Promises:
//! - `open` runs the one tuning sequence (`dvb::tune`: LNB/DiSEqC actions
//!   for a satellite with an LNB, FE_SET_PROPERTY from `Tuning::to_props`,
//!   a lock wait bounded by `lock_timeout`), then the dvr buffer and the
//!   filter; every failure is a
//!   `SourceError` in plain words naming the adapter and the mux ("ter1
//!   (adapter0): no lock on dvbt 474000000 … within 3000 ms (status: …)").
//! - `read` never waits longer than asked; a lost lock or no dvr data for
//!   `stall_timeout` while locked is an error, and the mux runner climbs
//!   the adapter's escalation ladder (`dvb::recovery`: retune in place with
//!   [`DvbSource::retune`], reopen, USB reset, failed). The stall detector
//!   (`dvb::health::HealthMonitor`, pure, fed lock, bytes and overflows
//!   with the time since the open) decides; this file turns its events
//!   into words. Every error carries what went wrong in facts
//!   ([`failure_of`]: silent, lock lost with how far C/N fell, no lock, an
//!   I/O error, gone), so the ladder can tell a tuner fault from weather;
//!   a dvr gone silent is checked against the frontend once, so one whose
//!   lock went is a lost lock, never a silent tuner.
//! - dvr overflows (EOVERFLOW: the kernel dropped data) are counted, never
//!   fatal: reading on is the recovery; the packets after one are handed
//!   out as a `Discontinuity`.
//! - An adapter that disappears (driver unloaded, USB unplugged: ENODEV
//!   from dvr or the frontend) is an error "adapterN disappeared …"; the
//!   source closes every fd at once (dvb-core's unregister waits for that)
//!   and the runner's reopen finds it again by its stable name.
//! - A slave on a shared LNB cable (`cable_slave`) never sets voltage,
//!   tone or DiSEqC: the master drives the cable.
//! - The adapter's numbers (lock, C/N, strength, BER, UCB, overflows) are
//!   published about once a second into a shared [`AdapterStatus`] that the
//!   daemon reads for /metrics and /status.

use super::{ReadOutcome, Resync, Source, SourceError, SourceStats};
use crate::dvb::adapter;
use crate::dvb::demux::{dvr_buffer_for, Demux, Dvr, FilterPlan, PidFilter, PidSet, FULL_TS};
use crate::dvb::frontend::Frontend;
use crate::dvb::health::{HealthConfig, HealthEvent, HealthMonitor, Observation};
use crate::dvb::lnb::LnbSetup;
use crate::dvb::recovery::{Failure, RecoveryConfig, RecoveryStatus};
use crate::dvb::tune::{self, TuneError, TuneRequest};
use crate::dvb::tuning::{PlsStyle, Tuning};
use crate::dvb::DvbError;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the daemon shows of one adapter. Refreshed by the source that owns
/// the adapter; kept (with `locked = false`) while it is closed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AdapterStatus {
    /// The `[[adapter]]` name.
    pub name: String,
    /// `device` as configured (stable name or adapterN).
    pub device: String,
    /// The adapter number it resolved to, when open.
    pub number: Option<u32>,
    /// The mux it is tuned to (canonical tune string).
    pub mux: String,
    pub locked: bool,
    /// Frontend status in words ("SIGNAL CARRIER VITERBI SYNC LOCK").
    pub status: String,
    pub cnr_db: Option<f64>,
    pub signal_dbm: Option<f64>,
    pub ber: Option<f64>,
    /// Uncorrected blocks since the tune (driver counter).
    pub ucb_total: Option<u64>,
    pub dvr_bytes: u64,
    /// EOVERFLOW returns from dvr: the kernel dropped data.
    pub dvr_overflows: u64,
    pub tunes: u64,
    pub lock_failures: u64,
    /// Lock lost or dvr silent while locked.
    pub stalls: u64,
    /// The demux filters in words: "full TS" or "9 PIDs".
    pub pid_filter: String,
    /// The PIDs passed to dvr; empty with the full TS.
    pub pids: Vec<u16>,
    /// Changes of the filter set (a PMT change, a channel added).
    pub filter_changes: u64,
    /// Filter changes that failed and fell back to the full TS.
    pub filter_failures: u64,
    /// The adapter went away (ENODEV) and has not been opened since.
    pub gone: bool,
    /// Times it went away.
    pub disappeared: u64,
    /// The last error in words, empty when none.
    pub last_error: String,
    /// The escalation ladder (retune, reopen, USB reset, failed): the
    /// rung it is on, the last step taken, when and why.
    pub recovery: RecoveryStatus,
}

/// Shared handle on one adapter's status.
pub type AdapterStatusHandle = Arc<Mutex<AdapterStatus>>;

pub fn lock_status(h: &AdapterStatusHandle) -> std::sync::MutexGuard<'_, AdapterStatus> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything needed to open one adapter on one mux.
#[derive(Debug, Clone)]
pub struct DvbSourceConfig {
    /// The `[[adapter]]` name, for logs and labels.
    pub name: String,
    /// Stable name (`Adapter::stable_name`) or `adapterN`.
    pub device: String,
    pub frontend: u32,
    pub tuning: Tuning,
    pub lnb: Option<LnbSetup>,
    pub pls_style: PlsStyle,
    /// Kernel dvr buffer; None = 1 s at 60 Mbit/s.
    pub dvr_buffer_bytes: Option<usize>,
    pub lock_timeout: Duration,
    /// No dvr data for this long while locked is a stall.
    pub stall_timeout: Duration,
    /// Per-PID filters or the full TS.
    pub pid_filter: PidFilter,
    /// A slave on a shared LNB cable: no voltage, tone or DiSEqC.
    pub cable_slave: bool,
    /// The ladder's settings (`[recovery]`); the runner climbs it.
    pub recovery: RecoveryConfig,
    pub status: AdapterStatusHandle,
}

impl DvbSourceConfig {
    pub fn new(name: &str, device: &str, tuning: Tuning) -> DvbSourceConfig {
        DvbSourceConfig {
            name: name.to_string(),
            device: device.to_string(),
            frontend: 0,
            tuning,
            lnb: None,
            pls_style: PlsStyle::Mainline,
            dvr_buffer_bytes: None,
            lock_timeout: Duration::from_millis(3000),
            stall_timeout: Duration::from_millis(2000),
            pid_filter: PidFilter::default(),
            cable_slave: false,
            recovery: RecoveryConfig::default(),
            status: Arc::new(Mutex::new(AdapterStatus {
                name: name.to_string(),
                device: device.to_string(),
                ..Default::default()
            })),
        }
    }

    /// From an `[[adapter]]` table and a source's tuning.
    pub fn from_config(
        a: &crate::config::AdapterConfig,
        tuning: Tuning,
        status: AdapterStatusHandle,
    ) -> DvbSourceConfig {
        let mut c = DvbSourceConfig::new(&a.name, &a.device, tuning);
        c.frontend = a.frontend;
        c.lnb = a.lnb_setup();
        c.pls_style = a.pls_style;
        c.dvr_buffer_bytes = a.dvr_buffer_bytes;
        c.pid_filter = a.pid_filter;
        c.cable_slave = a.cable.as_ref().is_some_and(|c| !c.master);
        c.status = status;
        c
    }

    /// The ladder's settings (`[recovery]`); its `silent_ms` is the stall
    /// timeout.
    pub fn with_recovery(mut self, recovery: RecoveryConfig) -> DvbSourceConfig {
        self.stall_timeout = Duration::from_millis(recovery.silent_ms);
        self.recovery = recovery;
        self
    }
}

/// The adapter number for `device`: `adapterN`, or the adapter in sysfs
/// whose stable name it is (no device is opened to find out).
pub fn resolve_device(device: &str) -> Result<u32, String> {
    if let Some(n) = device
        .strip_prefix("adapter")
        .and_then(|n| n.parse::<u32>().ok())
    {
        return Ok(n);
    }
    let found = adapter::discover_in(Path::new("/sys/class/dvb"));
    if let Some(a) = found.adapters.iter().find(|a| a.stable_name() == device) {
        return Ok(a.number);
    }
    let present: Vec<String> = found.adapters.iter().map(|a| a.stable_name()).collect();
    Err(format!(
        "no DVB adapter named {device:?} is present (present: {})",
        if present.is_empty() {
            "none".to_string()
        } else {
            present.join(", ")
        }
    ))
}

/// A frontend open error in words; EBUSY means another program (or
/// `capbox serve`) is tuning it.
pub fn open_error_words(e: &DvbError) -> String {
    if e.errno == libc::EBUSY {
        format!("{e}: the frontend is in use by another program (capbox serve, dvbv5-zap, a second capbox?)")
    } else {
        e.to_string()
    }
}

/// The PIDs the wanted programs of `remux` need from the mux: each PMT PID
/// and, once its PMT is in, the elementary streams, the PCR PID and the
/// ECM PIDs (not for a program capbox descrambles with BISS itself). For
/// [`Source::set_wanted_pids`]; the SI PIDs are added by the filter.
pub fn wanted_pids(remux: &crate::remux::Remux) -> Vec<u16> {
    let mut pids = Vec::new();
    for p in remux.programs() {
        pids.extend(p.pmt_pid);
        if let Some(pmt) = &p.pmt {
            pids.extend(pmt.streams.iter().map(|s| s.elementary_pid));
            pids.push(pmt.pcr_pid);
            // ECMs are wanted either way: passed on, or read by the
            // channel's CA session when capbox descrambles.
            pids.extend(pmt.ecm_pids().into_iter().map(|(_, pid)| pid));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A DVB error in words; ENODEV (and ENXIO, which some USB bridges return
/// after a disconnect) means the adapter is gone.
fn gone_words(adapter: u32, e: &DvbError) -> Option<String> {
    (e.errno == libc::ENODEV || e.errno == libc::ENXIO)
        .then(|| format!("adapter{adapter} disappeared (driver unloaded or device unplugged): {e}"))
}

/// A DVB source's error: its words, and what went wrong in facts for the
/// runner's escalation ladder ([`failure_of`]).
#[derive(Debug)]
pub struct DvbFailure {
    pub failure: Failure,
    pub words: String,
}

impl std::fmt::Display for DvbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.words)
    }
}

impl std::error::Error for DvbFailure {}

/// What went wrong, when `e` came from a `DvbSource`.
pub fn failure_of(e: &SourceError) -> Option<&Failure> {
    match e {
        SourceError::Io { err, .. } => err
            .get_ref()
            .and_then(|i| i.downcast_ref::<DvbFailure>())
            .map(|f| &f.failure),
        _ => None,
    }
}

fn fault(what: &str, failure: Failure, msg: impl Into<String>) -> SourceError {
    SourceError::Io {
        what: what.to_string(),
        err: std::io::Error::other(DvbFailure {
            failure,
            words: msg.into(),
        }),
    }
}

/// An error not of the tuner's making (settings, a busy device).
fn err(what: &str, msg: impl Into<String>) -> SourceError {
    fault(what, Failure::Other, msg)
}

/// A failed call on a device node: gone (ENODEV/ENXIO/ENOENT), busy
/// (EBUSY: another program) or an I/O error of the tuner.
fn io_failure(e: &DvbError) -> Failure {
    if e.errno == libc::ENODEV || e.errno == libc::ENXIO || e.errno == libc::ENOENT {
        Failure::Gone
    } else if e.errno == libc::EBUSY {
        Failure::Other
    } else {
        Failure::Io(e.to_string())
    }
}

/// A failed tune in the source's words, naming the adapter and the mux;
/// a lock wait that failed is counted in `lock_failures`.
fn tune_failed(e: TuneError, cfg: &DvbSourceConfig, what: &str, mux: &str, n: u32) -> SourceError {
    match e {
        TuneError::Lnb(e) => err(what, format!("{mux}: {e}")),
        TuneError::Props(e) => err(what, format!("cannot tune {mux}: {e}")),
        TuneError::Ioctl(e) => fault(what, io_failure(&e), e.to_string()),
        TuneError::Lock(e) => {
            lock_status(&cfg.status).lock_failures += 1;
            // wait_lock's detail is "no lock within N ms (status: …)".
            let msg = if e.errno == 0 {
                let detail = e
                    .detail
                    .replacen("no lock", &format!("no lock on {mux}"), 1);
                format!("adapter{n}: {detail}")
            } else {
                e.to_string()
            };
            log::warn!("{}: {msg}", cfg.name);
            if e.errno == 0 {
                fault(&cfg.name, Failure::NoLock, msg)
            } else {
                fault(&cfg.name, io_failure(&e), msg)
            }
        }
    }
}

/// The stall detector's settings: no dvr data for `stall_timeout` while
/// locked. Lock is read every `STATS_EVERY`, so a lost lock is seen within
/// a second of it.
fn health_config(stall_timeout: Duration) -> HealthConfig {
    HealthConfig {
        no_data_ms: u64::try_from(stall_timeout.as_millis()).unwrap_or(u64::MAX),
        ..HealthConfig::default()
    }
}

/// A health event that stalls the source, in the words `/status`, the log
/// and the README use; None for the events it reads past.
#[cfg(test)]
fn stall_words(e: &HealthEvent, mux: &str, status: &str) -> Option<String> {
    stall_failure(e, mux, status, None).map(|(w, _)| w)
}

/// A stalling health event in words and as the ladder's `Failure`;
/// `cnr_fell_db` is how far C/N fell from its best since the tune.
fn stall_failure(
    e: &HealthEvent,
    mux: &str,
    status: &str,
    cnr_fell_db: Option<f64>,
) -> Option<(String, Failure)> {
    match e {
        HealthEvent::LockLost => Some((
            format!("lost lock on {mux} (status: {status})"),
            Failure::LockLost { cnr_fell_db },
        )),
        HealthEvent::NoData { ms } => Some((
            format!("no data from dvr for {ms} ms while locked on {mux}"),
            Failure::Silent { ms: *ms },
        )),
        // An overflow is counted and read past (`read`); CC is not fed;
        // recoveries need nothing.
        HealthEvent::Overflow { .. } | HealthEvent::CcBurst { .. } | HealthEvent::Recovered(_) => {
            None
        }
    }
}

/// Read size: 512 packets (96 KiB), about 13 ms of a 60 Mbit/s mux.
const BLOCK: usize = 512 * 188;
/// How often lock and statistics are read while streaming.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// The demux filters in use. Kept open: closing a demux fd stops its
/// filter.
enum Filters {
    // Never read: held so the filter runs (closing the fd stops it).
    Full(#[allow(dead_code)] Demux),
    Pids(PidSet),
}

impl Filters {
    fn words(&self) -> (String, Vec<u16>) {
        match self {
            Filters::Full(_) => ("full TS".to_string(), Vec::new()),
            Filters::Pids(set) => {
                let pids: Vec<u16> = set.pids().collect();
                (format!("{} PIDs", pids.len()), pids)
            }
        }
    }
}

pub struct DvbSource {
    cfg: DvbSourceConfig,
    /// "ter1 (adapter0)", for messages.
    what: String,
    mux: String,
    number: u32,
    fe: Frontend,
    filters: Filters,
    /// The last wanted set given, to skip work when it did not change.
    wanted: Option<Vec<u16>>,
    dvr: Dvr,
    overflows_seen: u64,
    resync: Resync,
    raw: Vec<u8>,
    /// The stall detector (`dvb::health`): fed by every read and every
    /// status refresh, it decides when lock or dvr data is missing.
    health: HealthMonitor,
    /// Zero of the health monitor's clock (the open).
    opened: Instant,
    last_stats: Instant,
    /// Set until the first packets after a (re)tune are handed out.
    fresh: bool,
    ucb_at_tune: Option<u64>,
    /// The best and the last C/N read while locked since the tune: how
    /// far it fell when lock goes tells weather (a fade) in the words.
    cnr_best: Option<f64>,
    cnr_last: Option<f64>,
}

impl DvbSource {
    /// Opens and tunes the adapter, waits for lock, starts the full TS.
    pub fn open(cfg: DvbSourceConfig) -> Result<DvbSource, SourceError> {
        let mux = cfg.tuning.to_args();
        let status = cfg.status.clone();
        {
            let mut st = lock_status(&status);
            st.name = cfg.name.clone();
            st.device = cfg.device.clone();
            st.mux = mux.clone();
            st.locked = false;
            st.tunes += 1;
        }
        let r = Self::open_inner(cfg, mux);
        let mut st = lock_status(&status);
        match &r {
            Ok(s) => {
                st.last_error.clear();
                st.number = s.number();
            }
            Err(e) => {
                st.last_error = e.to_string();
                st.locked = false;
            }
        }
        r
    }

    fn number(&self) -> Option<u32> {
        Some(self.number)
    }

    /// The filters in use: "full TS" or the PIDs passed to dvr.
    pub fn filter_pids(&self) -> Option<Vec<u16>> {
        match &self.filters {
            Filters::Full(_) => None,
            Filters::Pids(set) => Some(set.pids().collect()),
        }
    }

    /// Makes the filters follow `plan`. New filters open before old ones
    /// close. A per-PID set that cannot be made (no free filter slot, fd
    /// limit) falls back to the full TS, counted and logged.
    fn apply_plan(&mut self, plan: FilterPlan) -> Result<(), DvbError> {
        match (plan, &mut self.filters) {
            (FilterPlan::Full, Filters::Full(_)) => return Ok(()),
            (FilterPlan::Full, Filters::Pids(_)) => {
                let mut d = Demux::open(self.number, 0)?;
                d.set_ts_filter(FULL_TS)?;
                self.filters = Filters::Full(d);
            }
            (FilterPlan::Pids(pids), Filters::Pids(set)) => {
                // Open the new PIDs first, then close the old ones.
                for &p in &pids {
                    set.add(p)?;
                }
                let old: Vec<u16> = set.pids().filter(|p| !pids.contains(p)).collect();
                old.into_iter().for_each(|p| set.remove(p));
            }
            (FilterPlan::Pids(pids), Filters::Full(_)) => {
                let mut set = PidSet::new(self.number, 0);
                set.set(&pids)?;
                self.filters = Filters::Pids(set);
            }
        }
        Ok(())
    }

    fn publish_filters(&self) {
        let (words, pids) = self.filters.words();
        let mut st = lock_status(&self.cfg.status);
        st.pid_filter = words;
        st.pids = pids;
    }

    /// A read or ioctl error: ENODEV means the adapter went away, which
    /// the status remembers so the reopen can say so.
    fn fail(&self, e: &DvbError) -> SourceError {
        match gone_words(self.number, e) {
            Some(msg) => {
                let mut st = lock_status(&self.cfg.status);
                st.gone = true;
                st.disappeared += 1;
                st.locked = false;
                st.number = None;
                st.last_error = format!("{}: {msg}", self.what);
                drop(st);
                log::error!("{}: {msg}; closing it", self.what);
                fault(&self.what, Failure::Gone, msg)
            }
            None => fault(&self.what, io_failure(e), e.to_string()),
        }
    }

    fn open_inner(cfg: DvbSourceConfig, mux: String) -> Result<DvbSource, SourceError> {
        // After an ENODEV the reopen says the adapter is still away, not
        // just "no such file".
        let gone = lock_status(&cfg.status).gone;
        let not_back = |m: String| {
            if gone {
                format!(
                    "adapter {} disappeared and is not back yet: {m}",
                    cfg.device
                )
            } else {
                m
            }
        };
        let n = resolve_device(&cfg.device)
            .map_err(|m| fault(&cfg.name, Failure::Gone, not_back(m)))?;
        let what = format!("{} (adapter{n})", cfg.name);
        let mut fe = Frontend::open(n, cfg.frontend).map_err(|e| {
            let words = open_error_words(&e);
            if e.errno == libc::ENOENT || e.errno == libc::ENODEV {
                fault(&what, Failure::Gone, not_back(words))
            } else {
                fault(&what, io_failure(&e), words)
            }
        })?;
        let request = TuneRequest {
            tuning: &cfg.tuning,
            lnb: cfg.lnb.as_ref(),
            pls_style: cfg.pls_style,
            cable_slave: cfg.cable_slave,
            lock_timeout: cfg.lock_timeout,
        };
        tune::tune(&mut fe, &request).map_err(|e| tune_failed(e, &cfg, &what, &mux, n))?;
        // dvr first, so the buffer is sized before the filter fills it.
        let dvr = Dvr::open(n, 0).map_err(|e| fault(&what, io_failure(&e), e.to_string()))?;
        let size = cfg
            .dvr_buffer_bytes
            .unwrap_or_else(|| dvr_buffer_for(60_000_000, 1.0));
        if let Err(e) = dvr.set_buffer_size(size) {
            // The default buffer still works, with less slack.
            log::warn!("{what}: {e}; keeping the driver's default dvr buffer");
        }
        let mut demux =
            Demux::open(n, 0).map_err(|e| fault(&what, io_failure(&e), e.to_string()))?;
        demux
            .set_ts_filter(FULL_TS)
            .map_err(|e| fault(&what, io_failure(&e), e.to_string()))?;
        log::info!("{what}: locked on {mux}, reading the full TS");
        let now = Instant::now();
        let stall_timeout = cfg.stall_timeout;
        {
            let mut st = lock_status(&cfg.status);
            st.pid_filter = "full TS".into();
            st.pids.clear();
            st.gone = false;
        }
        let mut s = DvbSource {
            cfg,
            what,
            mux,
            number: n,
            fe,
            filters: Filters::Full(demux),
            wanted: None,
            dvr,
            overflows_seen: 0,
            resync: Resync::new(),
            raw: vec![0u8; BLOCK],
            health: HealthMonitor::new(health_config(stall_timeout)),
            opened: now,
            last_stats: now - STATS_EVERY,
            fresh: true,
            ucb_at_tune: None,
            cnr_best: None,
            cnr_last: None,
        };
        s.refresh_stats()?;
        Ok(s)
    }

    /// Retunes the open frontend to the same mux and keeps the rest open:
    /// the demux filters (full TS or per-PID, as they are) and the dvr
    /// with its buffer. The cheap first step against a stall, before
    /// closing and reopening the adapter; counted in `tunes` like an open.
    /// The stall detector starts afresh (the no-data clock from the
    /// retune) and the next packets are a `Discontinuity`. On Err the
    /// source is as after a failed open: the caller closes it.
    pub fn retune(&mut self) -> Result<(), SourceError> {
        {
            let mut st = lock_status(&self.cfg.status);
            st.locked = false;
            st.tunes += 1;
        }
        let request = TuneRequest {
            tuning: &self.cfg.tuning,
            lnb: self.cfg.lnb.as_ref(),
            pls_style: self.cfg.pls_style,
            cable_slave: self.cfg.cable_slave,
            lock_timeout: self.cfg.lock_timeout,
        };
        if let Err(e) = tune::tune(&mut self.fe, &request) {
            let e = tune_failed(e, &self.cfg, &self.what, &self.mux, self.number);
            lock_status(&self.cfg.status).last_error = e.to_string();
            return Err(e);
        }
        self.health.reset();
        self.opened = Instant::now();
        self.ucb_at_tune = None;
        self.cnr_best = None;
        self.cnr_last = None;
        self.fresh = true;
        self.refresh_stats()?;
        lock_status(&self.cfg.status).last_error.clear();
        log::info!(
            "{}: retuned to {}, filters and dvr kept open",
            self.what,
            self.mux
        );
        Ok(())
    }

    /// The shared status this source publishes into.
    pub fn status(&self) -> AdapterStatusHandle {
        self.cfg.status.clone()
    }

    /// Reads lock and statistics into the shared status. Err when the lock
    /// is gone.
    fn refresh_stats(&mut self) -> Result<(), SourceError> {
        self.last_stats = Instant::now();
        let status = self.fe.status().map_err(|e| self.fail(&e))?;
        let stats = self.fe.stats().ok();
        let mut st = lock_status(&self.cfg.status);
        st.locked = status.has_lock();
        st.status = status.to_string();
        st.cnr_db = stats.and_then(|s| s.cnr_db());
        if status.has_lock() {
            if let Some(c) = st.cnr_db.filter(|c| c.is_finite()) {
                self.cnr_last = Some(c);
                self.cnr_best = Some(self.cnr_best.map_or(c, |b| b.max(c)));
            }
        }
        st.signal_dbm = stats.and_then(|s| s.signal_dbm());
        st.ber = stats.and_then(|s| s.ber());
        let ucb = stats.and_then(|s| s.error_blocks());
        if self.ucb_at_tune.is_none() {
            self.ucb_at_tune = ucb;
        }
        st.ucb_total = ucb;
        st.dvr_bytes = self.dvr.stats.bytes;
        st.dvr_overflows = self.dvr.stats.overflows;
        drop(st);
        // No dvr bytes since the last read's observation: this one is about
        // the lock.
        self.observe(status.has_lock(), 0, 0, &status.to_string())
    }

    /// One observation for the stall detector; a stall it reports becomes
    /// the source's error (counted in `stalls`, kept as `last_error`), so
    /// the runner closes the source and retunes. `status` is the frontend
    /// status in words, for a lost lock.
    fn observe(
        &mut self,
        locked: bool,
        bytes: u64,
        overflows: u64,
        status: &str,
    ) -> Result<(), SourceError> {
        let now_ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        let events = self.health.tick(Observation {
            now_ms,
            locked,
            bytes,
            // CC is the remux's to count, per program; the adapter's stall
            // is lock and data.
            cc_errors: 0,
            overflows,
        });
        let fell = match (self.cnr_best, self.cnr_last) {
            (Some(b), Some(l)) => Some(b - l),
            _ => None,
        };
        if let Some((mut msg, mut failure)) = events
            .iter()
            .find_map(|e| stall_failure(e, &self.mux, status, fell))
        {
            // Reads assume the lock of the last refresh (a second ago): a
            // dvr gone silent because lock went is a lost lock (weather),
            // not a silent tuner (a fault). Ask the frontend once.
            if matches!(failure, Failure::Silent { .. }) {
                if let Ok(now) = self.fe.status() {
                    if !now.has_lock() {
                        let words = now.to_string();
                        if let Some(lost) =
                            stall_failure(&HealthEvent::LockLost, &self.mux, &words, fell)
                        {
                            (msg, failure) = lost;
                        }
                    }
                }
            }
            let mut st = lock_status(&self.cfg.status);
            st.stalls += 1;
            if !locked || matches!(failure, Failure::LockLost { .. }) {
                st.locked = false;
            }
            st.last_error = msg.clone();
            return Err(fault(&self.what, failure, msg));
        }
        Ok(())
    }
}

impl Source for DvbSource {
    fn describe(&self) -> String {
        format!("{} {}", self.what, self.mux)
    }

    fn retune(&mut self) -> Option<Result<(), SourceError>> {
        Some(DvbSource::retune(self))
    }

    fn read(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<ReadOutcome, SourceError> {
        if self.last_stats.elapsed() >= STATS_EVERY {
            self.refresh_stats()?;
        }
        let n = match self.dvr.read_timeout(&mut self.raw, timeout) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(&e)),
        };
        let overflows = self.dvr.stats.overflows.saturating_sub(self.overflows_seen);
        if overflows > 0 {
            // The kernel dropped data: what follows is not contiguous.
            self.overflows_seen = self.dvr.stats.overflows;
            self.fresh = true;
            lock_status(&self.cfg.status).dvr_overflows = self.overflows_seen;
        }
        // Reads run only while the last status refresh saw lock (it fails
        // the source otherwise).
        self.observe(true, n as u64, overflows, "")?;
        if n == 0 {
            return Ok(ReadOutcome::Idle);
        }
        let before = buf.len();
        self.resync.push(&self.raw[..n], buf);
        if buf.len() == before {
            return Ok(ReadOutcome::Idle);
        }
        if self.fresh {
            self.fresh = false;
            self.resync.stats.discontinuities += 1;
            return Ok(ReadOutcome::Discontinuity);
        }
        Ok(ReadOutcome::Data)
    }

    fn stats(&self) -> SourceStats {
        self.resync.stats
    }

    fn passed_pids(&self) -> Option<Vec<u16>> {
        self.filter_pids()
    }

    fn set_wanted_pids(&mut self, pids: &[u16]) {
        let mut want = pids.to_vec();
        want.sort_unstable();
        want.dedup();
        if self.wanted.as_ref() == Some(&want) {
            return;
        }
        let plan = self.cfg.pid_filter.plan(&want);
        self.wanted = Some(want);
        let before = self.filter_pids();
        if let Err(e) = self.apply_plan(plan.clone()) {
            lock_status(&self.cfg.status).filter_failures += 1;
            log::warn!("{}: {e}; taking the full TS instead", self.what);
            if let Err(e) = self.apply_plan(FilterPlan::Full) {
                // Keep whatever filters are still open; the next change
                // tries again.
                log::error!("{}: {e}", self.what);
            }
        }
        let after = self.filter_pids();
        if before != after {
            lock_status(&self.cfg.status).filter_changes += 1;
            match &after {
                Some(p) => log::info!(
                    "{}: per-PID filters on {} PIDs: {}",
                    self.what,
                    p.len(),
                    p.iter()
                        .map(|x| format!("{x:#06x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => log::info!("{}: full TS", self.what),
            }
        }
        self.publish_filters();
    }
}

impl Drop for DvbSource {
    fn drop(&mut self) {
        lock_status(&self.cfg.status).locked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dvb_resolve_device_by_number_and_unknown_name() {
        assert_eq!(resolve_device("adapter3"), Ok(3));
        let e = resolve_device("usb-dead:beef-none").unwrap_err();
        assert!(
            e.contains("no DVB adapter named \"usb-dead:beef-none\""),
            "{e}"
        );
    }

    #[test]
    fn dvb_open_missing_adapter_says_so() {
        let cfg = DvbSourceConfig::new(
            "ter9",
            "adapter97",
            Tuning::from_args("dvbt 474000000 8MHz").unwrap(),
        );
        let status = cfg.status.clone();
        let e = DvbSource::open(cfg)
            .err()
            .expect("adapter97 does not exist");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "ter9 (adapter97): adapter97/frontend0: open failed: No such file or directory"
            ),
            "{text}"
        );
        let st = status.lock().unwrap();
        assert_eq!(st.last_error, text);
        assert_eq!(st.tunes, 1);
        assert!(!st.locked);
    }

    #[test]
    fn dvb_enodev_is_an_adapter_that_disappeared() {
        let e = DvbError::new("adapter2/dvr0", "read", nix::errno::Errno::ENODEV);
        let w = gone_words(2, &e).expect("ENODEV is gone");
        assert_eq!(
            w,
            "adapter2 disappeared (driver unloaded or device unplugged): adapter2/dvr0: read failed: No such device (ENODEV, errno 19)"
        );
        let e = DvbError::new(
            "adapter2/frontend0",
            "FE_READ_STATUS",
            nix::errno::Errno::ENXIO,
        );
        assert!(gone_words(2, &e).is_some());
        // Other errors are not a disappearance.
        let e = DvbError::new("adapter2/dvr0", "read", nix::errno::Errno::EIO);
        assert!(gone_words(2, &e).is_none());
    }

    #[test]
    fn dvb_reopen_after_disappearing_says_not_back() {
        let cfg = DvbSourceConfig::new(
            "ter9",
            "adapter97",
            Tuning::from_args("dvbt 474000000 8MHz").unwrap(),
        );
        let status = cfg.status.clone();
        status.lock().unwrap().gone = true;
        let text = DvbSource::open(cfg).err().expect("absent").to_string();
        assert!(
            text.starts_with("ter9 (adapter97): adapter adapter97 disappeared and is not back yet: adapter97/frontend0: open failed: No such file or directory"),
            "{text}"
        );
        assert!(
            status.lock().unwrap().gone,
            "still gone until an open succeeds"
        );
    }

    /// The source's stall decisions, driven the way `DvbSource` drives
    /// `dvb::health`: one observation at the open (locked, no bytes), one
    /// per read (bytes, overflows), one per status refresh each second
    /// (lock, no bytes). Same timings and words as the checks it replaced.
    #[test]
    fn dvb_stall_decisions_through_health() {
        let mux = "dvbt 474000000 8MHz";
        let mut m = HealthMonitor::new(health_config(Duration::from_millis(2000)));
        let o = |now_ms, locked, bytes, overflows| Observation {
            now_ms,
            locked,
            bytes,
            cc_errors: 0,
            overflows,
        };
        let stall = |m: &mut HealthMonitor, ob| {
            m.tick(ob)
                .iter()
                .find_map(|e| stall_words(e, mux, "SIGNAL CARRIER"))
        };
        // The open: locked, nothing read yet; the clock starts here.
        assert_eq!(stall(&mut m, o(0, true, 0, 0)), None);
        // Reads every 100 ms with data, refreshes each second: quiet.
        // An overflow is read past, never a stall.
        for t in (100..=1000).step_by(100) {
            assert_eq!(stall(&mut m, o(t, true, 18_800, u64::from(t == 500))), None);
            if t % 1000 == 0 {
                assert_eq!(stall(&mut m, o(t, true, 0, 0)), None);
            }
        }
        // Data stops after t=1000: empty reads and refreshes are quiet
        // until 2000 ms have passed, then one stall, in words.
        for t in (1100..3000).step_by(100) {
            assert_eq!(stall(&mut m, o(t, true, 0, 0)), None, "t={t}");
        }
        assert_eq!(
            stall(&mut m, o(3000, true, 0, 0)).as_deref(),
            Some("no data from dvr for 2000 ms while locked on dvbt 474000000 8MHz")
        );
        // A source that never delivers a byte after its open stalls
        // 2000 ms after the open.
        let mut m = HealthMonitor::new(health_config(Duration::from_millis(2000)));
        assert_eq!(stall(&mut m, o(0, true, 0, 0)), None);
        assert_eq!(stall(&mut m, o(1999, true, 0, 0)), None);
        assert!(stall(&mut m, o(2000, true, 0, 0)).is_some());
        // A refresh that finds no lock stalls at once, with the status.
        let mut m = HealthMonitor::new(health_config(Duration::from_millis(2000)));
        assert_eq!(stall(&mut m, o(0, true, 0, 0)), None);
        assert_eq!(stall(&mut m, o(100, true, 188, 0)), None);
        assert_eq!(
            stall(&mut m, o(1000, false, 0, 0)).as_deref(),
            Some("lost lock on dvbt 474000000 8MHz (status: SIGNAL CARRIER)")
        );
        // stall_timeout is the threshold.
        assert_eq!(health_config(Duration::from_millis(750)).no_data_ms, 750);
    }

    #[test]
    fn dvb_busy_frontend_in_words() {
        let e = DvbError::new("adapter0/frontend0", "open", nix::errno::Errno::EBUSY);
        let w = open_error_words(&e);
        assert!(w.contains("in use by another program"), "{w}");
    }
}
