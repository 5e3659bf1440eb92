//! A DVB adapter as a `Source`: one tuned frontend, the whole TS of its mux
//! on dvr, read non-blocking and handed out as aligned packets.
//!
//! Owns one adapter while open: the frontend (read-write, the only tuning
//! user), one demux filter (PID 0x2000, `DMX_OUT_TS_TAP`: the full TS, the
//! simplest filter that serves any number of channels on the mux; `PidSet`
//! in `dvb::demux` is the per-PID alternative) and the dvr reader.
//!
//! Promises:
//! - `open` runs, in order: LNB/DiSEqC actions (satellite with an LNB),
//!   FE_SET_PROPERTY from `Tuning::to_props`, a lock wait bounded by
//!   `lock_timeout`, then the dvr buffer and the filter; every failure is a
//!   `SourceError` in plain words naming the adapter and the mux ("ter1
//!   (adapter0): no lock on dvbt 474000000 … within 3000 ms (status: …)").
//! - `read` never waits longer than asked; a lost lock or no dvr data for
//!   `stall_timeout` while locked is an error, so the channel runner closes
//!   the source and retunes with its back-off.
//! - dvr overflows (EOVERFLOW: the kernel dropped data) are counted, never
//!   fatal: reading on is the recovery.
//! - The adapter's numbers (lock, C/N, strength, BER, UCB, overflows) are
//!   published about once a second into a shared [`AdapterStatus`] that the
//!   daemon reads for /metrics and /status.

use super::{ReadOutcome, Resync, Source, SourceError, SourceStats};
use crate::dvb::adapter;
use crate::dvb::demux::{dvr_buffer_for, Demux, Dvr, FULL_TS};
use crate::dvb::diseqc::{self, Action};
use crate::dvb::frontend::{self, Frontend};
use crate::dvb::lnb::{self, LnbSetup};
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
    /// The last error in words, empty when none.
    pub last_error: String,
}

/// Shared handle on one adapter's status.
pub type AdapterStatusHandle = Arc<Mutex<AdapterStatus>>;

fn lock_status(h: &AdapterStatusHandle) -> std::sync::MutexGuard<'_, AdapterStatus> {
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
        c.status = status;
        c
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

fn err(what: &str, msg: impl Into<String>) -> SourceError {
    SourceError::Io {
        what: what.to_string(),
        err: std::io::Error::other(msg.into()),
    }
}

/// Runs the LNB/DiSEqC actions of one tune.
fn run_actions(fe: &Frontend, actions: &[Action]) -> Result<(), DvbError> {
    for a in actions {
        match a {
            Action::SetVoltage(v) => fe.set_voltage(match v {
                lnb::Voltage::V13 => frontend::Voltage::V13,
                lnb::Voltage::V18 => frontend::Voltage::V18,
                lnb::Voltage::Off => frontend::Voltage::Off,
            })?,
            Action::SetTone(on) => fe.set_tone(*on)?,
            Action::Send(bytes) => fe.send_diseqc(bytes)?,
            Action::Burst(b) => fe.send_burst(match b {
                diseqc::Burst::A => frontend::Burst::A,
                diseqc::Burst::B => frontend::Burst::B,
            })?,
            Action::Sleep(ms) => std::thread::sleep(Duration::from_millis(u64::from(*ms))),
        }
    }
    Ok(())
}

/// Read size: 512 packets (96 KiB), about 13 ms of a 60 Mbit/s mux.
const BLOCK: usize = 512 * 188;
/// How often lock and statistics are read while streaming.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub struct DvbSource {
    cfg: DvbSourceConfig,
    /// "ter1 (adapter0)", for messages.
    what: String,
    mux: String,
    fe: Frontend,
    // Kept open: closing the demux fd stops the filter.
    _demux: Demux,
    dvr: Dvr,
    resync: Resync,
    raw: Vec<u8>,
    last_data: Instant,
    last_stats: Instant,
    /// Set until the first packets after a (re)tune are handed out.
    fresh: bool,
    ucb_at_tune: Option<u64>,
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
        self.fe
            .device()
            .strip_prefix("adapter")
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse().ok())
    }

    fn open_inner(cfg: DvbSourceConfig, mux: String) -> Result<DvbSource, SourceError> {
        let n = resolve_device(&cfg.device).map_err(|m| err(&cfg.name, m))?;
        let what = format!("{} (adapter{n})", cfg.name);
        let mut fe =
            Frontend::open(n, cfg.frontend).map_err(|e| err(&what, open_error_words(&e)))?;
        if let (Some(setup), Some(sat)) = (&cfg.lnb, cfg.tuning.satellite()) {
            let plan = setup
                .lnb
                .plan(sat.frequency_khz, sat.polarization)
                .map_err(|e| err(&what, format!("{mux}: {e}")))?;
            let actions = diseqc::tune_sequence(setup, &plan, sat.polarization, false)
                .map_err(|e| err(&what, format!("{mux}: {e}")))?;
            run_actions(&fe, &actions).map_err(|e| err(&what, e.to_string()))?;
        }
        let props = cfg
            .tuning
            .to_props(cfg.lnb.as_ref(), cfg.pls_style)
            .map_err(|e| err(&what, format!("cannot tune {mux}: {e}")))?;
        fe.tune(&props).map_err(|e| err(&what, e.to_string()))?;
        if let Err(e) = fe.wait_lock(cfg.lock_timeout) {
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
            return Err(err(&cfg.name, msg));
        }
        // dvr first, so the buffer is sized before the filter fills it.
        let dvr = Dvr::open(n, 0).map_err(|e| err(&what, e.to_string()))?;
        let size = cfg
            .dvr_buffer_bytes
            .unwrap_or_else(|| dvr_buffer_for(60_000_000, 1.0));
        if let Err(e) = dvr.set_buffer_size(size) {
            // The default buffer still works, with less slack.
            log::warn!("{what}: {e}; keeping the driver's default dvr buffer");
        }
        let mut demux = Demux::open(n, 0).map_err(|e| err(&what, e.to_string()))?;
        demux
            .set_ts_filter(FULL_TS)
            .map_err(|e| err(&what, e.to_string()))?;
        log::info!("{what}: locked on {mux}, reading the full TS");
        let now = Instant::now();
        let mut s = DvbSource {
            cfg,
            what,
            mux,
            fe,
            _demux: demux,
            dvr,
            resync: Resync::new(),
            raw: vec![0u8; BLOCK],
            last_data: now,
            last_stats: now - STATS_EVERY,
            fresh: true,
            ucb_at_tune: None,
        };
        s.refresh_stats()?;
        Ok(s)
    }

    /// The shared status this source publishes into.
    pub fn status(&self) -> AdapterStatusHandle {
        self.cfg.status.clone()
    }

    /// Reads lock and statistics into the shared status. Err when the lock
    /// is gone.
    fn refresh_stats(&mut self) -> Result<(), SourceError> {
        self.last_stats = Instant::now();
        let status = self
            .fe
            .status()
            .map_err(|e| err(&self.what, e.to_string()))?;
        let stats = self.fe.stats().ok();
        let mut st = lock_status(&self.cfg.status);
        st.locked = status.has_lock();
        st.status = status.to_string();
        st.cnr_db = stats.and_then(|s| s.cnr_db());
        st.signal_dbm = stats.and_then(|s| s.signal_dbm());
        st.ber = stats.and_then(|s| s.ber());
        let ucb = stats.and_then(|s| s.error_blocks());
        if self.ucb_at_tune.is_none() {
            self.ucb_at_tune = ucb;
        }
        st.ucb_total = ucb;
        st.dvr_bytes = self.dvr.stats.bytes;
        st.dvr_overflows = self.dvr.stats.overflows;
        if !status.has_lock() {
            st.stalls += 1;
            st.locked = false;
            let msg = format!("lost lock on {} (status: {status})", self.mux);
            st.last_error = msg.clone();
            drop(st);
            return Err(err(&self.what, msg));
        }
        Ok(())
    }
}

impl Source for DvbSource {
    fn describe(&self) -> String {
        format!("{} {}", self.what, self.mux)
    }

    fn read(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<ReadOutcome, SourceError> {
        if self.last_stats.elapsed() >= STATS_EVERY {
            self.refresh_stats()?;
        }
        let n = self
            .dvr
            .read_timeout(&mut self.raw, timeout)
            .map_err(|e| err(&self.what, e.to_string()))?;
        let now = Instant::now();
        if n == 0 {
            let silent = now.duration_since(self.last_data);
            if silent >= self.cfg.stall_timeout {
                let msg = format!(
                    "no data from dvr for {} ms while locked on {}",
                    silent.as_millis(),
                    self.mux
                );
                let mut st = lock_status(&self.cfg.status);
                st.stalls += 1;
                st.last_error = msg.clone();
                return Err(err(&self.what, msg));
            }
            return Ok(ReadOutcome::Idle);
        }
        self.last_data = now;
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
    fn dvb_busy_frontend_in_words() {
        let e = DvbError::new("adapter0/frontend0", "open", nix::errno::Errno::EBUSY);
        let w = open_error_words(&e);
        assert!(w.contains("in use by another program"), "{w}");
    }
}
