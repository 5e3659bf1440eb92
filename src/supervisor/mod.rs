//! The supervisor: heartbeats of every thread that must make progress,
//! the hardware watchdog fed only while they are all fresh, systemd's
//! notify protocol, and the reset log with its reboot-loop guard.
//!
//! Owns the watchdog device, the notify socket and the reset log file, all
//! on its own thread. Promises:
//! - a heartbeat means "my loop is turning", never "data arrives": rain
//!   fade never stops the feed;
//! - a stalled reboot-policy thread (a mux runner, the HTTP loop) stops
//!   the hardware feed and WATCHDOG=1: the box resets within the timeout;
//! - a stalled restart-policy thread (the card manager, a card thread, the
//!   softcam client) is abandoned and its part started afresh, once per
//!   stall, counted; the feed goes on;
//! - if the supervisor thread itself hangs, nothing feeds: the box resets
//!   (that is correct);
//! - a clean stop disarms with the magic close and records it; N resets
//!   within an hour and capbox runs unarmed, with an alarm in /status and
//!   /metrics (`resetlog`).

pub mod heartbeat;
pub mod notify;
pub mod resetlog;
pub mod watchdog;

pub use heartbeat::{
    beat_this_thread, register_here, verdict, BeatSnapshot, Heartbeat, Heartbeats, Policy,
    RestartAction, Verdict,
};

use crate::config::SupervisorConfig;
use resetlog::{Event, LogFile, Previous};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the supervisor thread wakes: advances the heartbeat clock,
/// takes a verdict, feeds when due.
const WAKE: Duration = Duration::from_millis(100);
/// The reset log is written at most this often for new events.
const EVENTS_FLUSH_MS: u64 = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Default)]
struct WatchdogState {
    device: String,
    /// A device is configured and this run is meant to arm it (`capbox
    /// serve`, not the demo): armed == false is then a fault to alert on.
    configured: bool,
    armed: bool,
    timeout_s: u32,
    disarmed_reason: String,
}

#[derive(Debug, Clone, Default)]
struct ResetsState {
    last_cause: Option<String>,
    last_unix: Option<u64>,
    in_last_hour: u32,
    guard_tripped: bool,
    /// The events before the last reset (else none).
    last_events: Vec<Event>,
}

/// What /status, /metrics and the control route read; shared by the
/// daemon's `App` and the supervisor thread.
pub struct Shared {
    pub heartbeats: Arc<Heartbeats>,
    stall_after_ms: AtomicU64,
    fault_injection: AtomicBool,
    watchdog: Mutex<WatchdogState>,
    feeds: AtomicU64,
    notify_sent: AtomicU64,
    notify_target: Mutex<Option<String>>,
    /// READY=1 was sent: WATCHDOG=1 and STATUS= only after it.
    ready: AtomicBool,
    resets: Mutex<ResetsState>,
}

impl Shared {
    pub fn new(cfg: &SupervisorConfig) -> Arc<Shared> {
        Arc::new(Shared {
            heartbeats: Heartbeats::new(),
            stall_after_ms: AtomicU64::new(u64::from(cfg.stall_after_s) * 1000),
            fault_injection: AtomicBool::new(cfg.fault_injection),
            watchdog: Mutex::new(WatchdogState {
                device: cfg.watchdog_shown(),
                disarmed_reason: "not started".into(),
                ..WatchdogState::default()
            }),
            feeds: AtomicU64::new(0),
            notify_sent: AtomicU64::new(0),
            notify_target: Mutex::new(None),
            ready: AtomicBool::new(false),
            resets: Mutex::new(ResetsState::default()),
        })
    }

    pub fn stall_after_ms(&self) -> u64 {
        self.stall_after_ms.load(Ordering::Relaxed)
    }

    /// `POST /control/fault?thread=NAME&kind=stall|clear`.
    pub fn control_fault(&self, params: &[(String, String)]) -> (u16, String) {
        if !self.fault_injection.load(Ordering::Relaxed) {
            return (
                403,
                "fault injection is off ([supervisor] fault_injection)\n".into(),
            );
        }
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(thread) = get("thread") else {
            return (
                400,
                "fault needs thread=<heartbeat name> (see /status supervisor.threads)\n".into(),
            );
        };
        let stall = match get("kind") {
            Some("stall") => true,
            Some("clear") => false,
            _ => return (400, "fault needs kind=stall or kind=clear\n".into()),
        };
        let name = crate::ts::text::clean_name(thread);
        match self.heartbeats.set_fault(thread, stall) {
            Ok(n) => {
                let what = if stall {
                    "stalls at its next beat"
                } else {
                    "released"
                };
                log::warn!(
                    "supervisor: fault injection: thread '{name}' {what} ({n} heartbeat(s))"
                );
                (200, format!("thread '{name}' {what}\n"))
            }
            Err(e) => (404, format!("{e}\n")),
        }
    }

    fn threads(&self) -> Vec<(BeatSnapshot, u64, bool, u64)> {
        let now = self.heartbeats.tick();
        let stall = self.stall_after_ms();
        let restarts = self.heartbeats.restarts();
        let mut v: Vec<_> = self
            .heartbeats
            .snapshot()
            .into_iter()
            .filter(|b| !b.retired)
            .map(|b| {
                let age = now.saturating_sub(b.last_ms);
                let n = restarts.get(&b.name).copied().unwrap_or(0);
                (b, age, age >= stall, n)
            })
            .collect();
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        v
    }

    /// The `supervisor` object of /status.
    pub fn status(&self) -> serde_json::Value {
        let wd = lock(&self.watchdog).clone();
        let r = lock(&self.resets).clone();
        let (this_run, events_total) = resetlog::events_and_total();
        let threads: Vec<serde_json::Value> = self
            .threads()
            .into_iter()
            .map(|(b, age, stalled, restarts)| {
                serde_json::json!({
                    "name": b.name,
                    "policy": b.policy.word(),
                    "age_ms": age,
                    "stalled": stalled,
                    "restarts": restarts,
                })
            })
            .collect();
        serde_json::json!({
            "watchdog": {
                "device": wd.device,
                "armed": wd.armed,
                "configured": wd.configured,
                "timeout_s": wd.timeout_s,
                "feeds": self.feeds.load(Ordering::Relaxed),
                "disarmed_reason": wd.disarmed_reason,
            },
            "stall_after_s": self.stall_after_ms() / 1000,
            "systemd": {
                "notify_socket": *lock(&self.notify_target),
                "notifications": self.notify_sent.load(Ordering::Relaxed),
            },
            "threads": threads,
            // This run's warnings, errors and supervisor lines (`capbox
            // logs`), oldest first; `events_total` counts every one noted.
            "events": this_run.iter().map(|e| serde_json::json!({
                "unix": e.unix,
                "at": resetlog::utc_words(e.unix),
                "text": e.text,
            })).collect::<Vec<_>>(),
            "events_total": events_total,
            "resets": {
                "last_cause": r.last_cause,
                "last_at": r.last_unix.map(resetlog::utc_words),
                "in_last_hour": r.in_last_hour,
                "guard_tripped": r.guard_tripped,
                "last_events": r.last_events.iter()
                    .map(|e| format!("{} {}", resetlog::utc_words(e.unix), e.text))
                    .collect::<Vec<_>>(),
            },
        })
    }

    /// The `capbox_supervisor_*` families of /metrics.
    pub fn metrics(&self, m: &mut String) {
        let wd = lock(&self.watchdog).clone();
        let r = lock(&self.resets).clone();
        use crate::monitor::metrics::{family, Kind};
        family(
            m,
            "capbox_supervisor_watchdog_armed",
            Kind::Gauge,
            "1 while capbox holds the hardware watchdog armed.",
        )
        .value(wd.armed);
        family(
            m,
            "capbox_supervisor_watchdog_configured",
            Kind::Gauge,
            "1 when [supervisor] watchdog names a device and this run arms it (capbox serve): armed 0 is then a fault.",
        )
        .value(wd.configured);
        family(
            m,
            "capbox_supervisor_watchdog_feeds_total",
            Kind::Counter,
            "Keepalives written to the hardware watchdog.",
        )
        .value(self.feeds.load(Ordering::Relaxed));
        let threads = self.threads();
        let mut f = family(
            m,
            "capbox_supervisor_thread_stalled",
            Kind::Gauge,
            "1 while the thread's loop has not turned for stall_after_s.",
        );
        for (b, _, stalled, _) in &threads {
            f.sample(&[("thread", &b.name)], *stalled);
        }
        let mut names = BTreeSet::new();
        for (b, _, _, _) in &threads {
            names.insert(b.name.clone());
        }
        let restarts = self.heartbeats.restarts();
        names.extend(restarts.keys().cloned());
        let mut f = family(
            m,
            "capbox_supervisor_thread_restarts_total",
            Kind::Counter,
            "Times the supervisor abandoned a stalled thread and started its part afresh.",
        );
        for n in names {
            f.sample(&[("thread", &n)], restarts.get(&n).copied().unwrap_or(0));
        }
        family(
            m,
            "capbox_supervisor_resets_last_hour",
            Kind::Gauge,
            "Watchdog resets of the box recorded within the last hour (at start).",
        )
        .value(r.in_last_hour);
        family(
            m,
            "capbox_supervisor_reboot_guard",
            Kind::Gauge,
            "1 when the reboot-loop guard keeps the watchdog unarmed.",
        )
        .value(r.guard_tripped);
    }
}

/// The running supervisor thread.
pub struct Supervisor {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    notifier: Arc<Mutex<Option<notify::Notifier>>>,
    thread: Option<JoinHandle<Runtime>>,
    /// Restart-only keys as started (a reload reports their change).
    started: SupervisorConfig,
}

/// What the thread owns and hands back at stop.
struct Runtime {
    wd: Option<watchdog::Watchdog>,
    log: Option<(PathBuf, LogFile)>,
}

impl Supervisor {
    /// Read the reset log, decide whether to arm (`arm` false: the demo
    /// never arms), arm, and start the thread.
    pub fn start(shared: Arc<Shared>, cfg: &SupervisorConfig, arm: bool) -> Supervisor {
        let boot = resetlog::boot_id();
        let now = resetlog::unix_now();
        let mut log_file: Option<(PathBuf, LogFile)> = None;
        let mut resets = ResetsState::default();
        let mut previous = Previous::Fine;
        // No hardware watchdog, no watchdog resets to count: a box without
        // one writes no file beside its config.
        if arm && cfg.watchdog.is_some() {
            let (mut f, why) = resetlog::load(&cfg.reset_log);
            if let Some(w) = why {
                log::warn!("supervisor: {w}");
            }
            previous = resetlog::previous(&f, &boot);
            match previous {
                Previous::BoxReset => {
                    log::warn!(
                        "supervisor: the box restarted while capbox held the watchdog {} (last run started {})",
                        if f.device.is_empty() { "?" } else { &f.device },
                        resetlog::utc_words(f.started_unix)
                    );
                    f.resets.push(resetlog::Reset {
                        unix: now,
                        cause: resetlog::cause_words(None),
                        last_events: f.events.clone(),
                    });
                    let n = f.resets.len();
                    f.resets.drain(..n.saturating_sub(resetlog::MAX_RESETS));
                }
                Previous::ProcessEnded => log::warn!(
                    "supervisor: capbox ended without a clean stop earlier in this boot; the watchdog was taken over again in time (not a reset)"
                ),
                Previous::Fine => {}
            }
            resets.in_last_hour = resetlog::in_last_hour(&f.resets, now);
            resets.guard_tripped =
                resetlog::guard_tripped(resets.in_last_hour, cfg.reboot_guard_resets);
            if let Some(last) = f.resets.last() {
                resets.last_cause = Some(last.cause.clone());
                resets.last_unix = Some(last.unix);
                resets.last_events = last.last_events.clone();
            }
            f.boot_id = boot;
            f.started_unix = now;
            f.clean_stop = false;
            f.armed = false;
            f.device = cfg.watchdog_shown();
            f.events.clear();
            log_file = Some((cfg.reset_log.clone(), f));
        }
        let mut wd = None;
        let mut state = WatchdogState {
            device: cfg.watchdog_shown(),
            configured: cfg.watchdog.is_some() && arm,
            ..WatchdogState::default()
        };
        match (&cfg.watchdog, arm) {
            (None, _) => {
                state.disarmed_reason = "no watchdog configured ([supervisor] watchdog)".into()
            }
            (Some(_), false) => {
                state.disarmed_reason = "capbox demo never arms the watchdog".into()
            }
            (Some(_), true) if resets.guard_tripped => {
                log::error!(
                    "supervisor: {} watchdog resets in the last hour: not arming the watchdog (reboot-loop guard)",
                    resets.in_last_hour
                );
                state.disarmed_reason = format!(
                    "reboot-loop guard: {} watchdog resets in the last hour (limit {})",
                    resets.in_last_hour, cfg.reboot_guard_resets
                );
            }
            (Some(dev), true) => {
                // Recorded armed before opening: a reset right after the
                // open must still be found at the next start.
                if let Some((p, f)) = log_file.as_mut() {
                    f.armed = true;
                    if let Err(e) = resetlog::store(p, f) {
                        log::error!("supervisor: {e}");
                    }
                }
                match watchdog::Watchdog::open(dev, cfg.watchdog_timeout_s) {
                    Ok(w) => {
                        for n in &w.notes {
                            log::warn!("supervisor: {n}");
                        }
                        if previous == Previous::BoxReset {
                            let cause = resetlog::cause_words(Some(w.bootstatus));
                            if let Some((_, f)) = log_file.as_mut() {
                                if let Some(r) = f.resets.last_mut() {
                                    r.cause = cause.clone();
                                }
                            }
                            resets.last_cause = Some(cause);
                        }
                        log::info!(
                            "supervisor: watchdog {} armed, timeout {} s",
                            dev.display(),
                            w.timeout_s
                        );
                        state.armed = true;
                        state.timeout_s = w.timeout_s;
                        wd = Some(w);
                    }
                    Err(e) => {
                        log::error!("supervisor: {e}; running without the watchdog");
                        state.disarmed_reason = e;
                        if let Some((_, f)) = log_file.as_mut() {
                            f.armed = false;
                        }
                    }
                }
            }
        }
        if let Some((p, f)) = &log_file {
            if let Err(e) = resetlog::store(p, f) {
                log::error!("supervisor: {e}");
            }
        }
        *lock(&shared.watchdog) = state;
        *lock(&shared.resets) = resets;
        let notifier = match notify::Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                log::warn!("supervisor: {e}");
                None
            }
        };
        if let Some(n) = &notifier {
            *lock(&shared.notify_target) = Some(n.target.clone());
            log::info!(
                "supervisor: telling systemd at {}{}",
                n.target,
                match n.watchdog {
                    Some(d) => format!(", WATCHDOG=1 every {} ms", (d / 2).as_millis()),
                    None => String::new(),
                }
            );
        }
        let notifier = Arc::new(Mutex::new(notifier));
        let stop = Arc::new(AtomicBool::new(false));
        let feed_every_ms = cfg.feed_every_ms(wd.as_ref().map(|w| w.timeout_s));
        let rt = Runtime { wd, log: log_file };
        let (s, st, nt) = (shared.clone(), stop.clone(), notifier.clone());
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || run(s, st, nt, rt, feed_every_ms))
            .map_err(|e| {
                log::error!("supervisor: cannot start its thread: {e}; nothing feeds the watchdog")
            })
            .ok();
        Supervisor {
            shared,
            stop,
            notifier,
            thread,
            started: cfg.clone(),
        }
    }

    fn notify(&self, msg: &str) {
        if let Some(n) = lock(&self.notifier).as_mut() {
            if n.send(msg) {
                self.shared.notify_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The daemon is up: READY=1.
    pub fn ready(&self) {
        // Under the notifier's lock: no WATCHDOG=1 can overtake it.
        let mut n = lock(&self.notifier);
        if let Some(n) = n.as_mut() {
            if n.send("READY=1") {
                self.shared.notify_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.shared.ready.store(true, Ordering::Relaxed);
    }

    /// A reload: `stall_after_s` and `fault_injection` apply now; the rest
    /// needs a restart (said in the log).
    pub fn reconfigure(&self, new: &SupervisorConfig) {
        self.shared
            .stall_after_ms
            .store(u64::from(new.stall_after_s) * 1000, Ordering::Relaxed);
        self.shared
            .fault_injection
            .store(new.fault_injection, Ordering::Relaxed);
        if !new.fault_injection {
            self.shared.heartbeats.clear_faults();
        }
        log::info!(
            "reload: [supervisor] stall_after_s = {}, fault_injection = {}: applied",
            new.stall_after_s,
            new.fault_injection
        );
        let o = &self.started;
        if (
            &o.watchdog,
            o.watchdog_timeout_s,
            o.reboot_guard_resets,
            &o.reset_log,
        ) != (
            &new.watchdog,
            new.watchdog_timeout_s,
            new.reboot_guard_resets,
            &new.reset_log,
        ) {
            log::warn!("reload: [supervisor] watchdog, watchdog_timeout_s, reboot_guard_resets and reset_log apply at the next start: restart capbox to apply them (stall_after_s and fault_injection applied)");
        }
    }

    /// A clean stop begins: STOPPING=1, and injected stalls are released
    /// so every thread can end.
    pub fn stopping(&self) {
        self.shared.heartbeats.clear_faults();
        self.notify("STOPPING=1");
    }

    /// The end of a clean stop: the magic close, recorded.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(rt) = self.thread.take().and_then(|t| t.join().ok()) else {
            return;
        };
        let mut clean = true;
        if let Some(wd) = rt.wd {
            match wd.disarm() {
                Ok(()) => log::info!("supervisor: watchdog disarmed (clean stop)"),
                Err(e) => {
                    clean = false;
                    log::error!("supervisor: {e}");
                }
            }
            lock(&self.shared.watchdog).armed = false;
        }
        if let Some((p, mut f)) = rt.log {
            f.clean_stop = clean;
            f.events = resetlog::events(true).0;
            if let Err(e) = resetlog::store(&p, &f) {
                log::error!("supervisor: {e}");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Without `stop` (a test dropping its daemon): the thread ends; a
        // watchdog it held stays armed (no magic close: not a clean stop).
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    notifier: Arc<Mutex<Option<notify::Notifier>>>,
    mut rt: Runtime,
    feed_every_ms: u64,
) -> Runtime {
    let hb = shared.heartbeats.clone();
    let me = hb.register("supervisor", Policy::Reboot);
    let notify_every_ms = lock(&notifier)
        .as_ref()
        .and_then(|n| n.watchdog)
        .map(|d| (d.as_millis() as u64 / 2).max(1))
        .unwrap_or(feed_every_ms);
    let mut next_feed = 0u64;
    let mut next_notify = 0u64;
    let mut last_flush = 0u64;
    let mut stalled_before: BTreeSet<u64> = BTreeSet::new();
    // Stalls whose restart was refused (too many stuck): said once each.
    let mut refused: BTreeSet<u64> = BTreeSet::new();
    let mut status_before = String::new();
    let timeout_s = lock(&shared.watchdog).timeout_s;
    while !stop.load(Ordering::Relaxed) {
        let now = hb.tick();
        me.beat();
        let snaps = hb.snapshot();
        let stall_after = shared.stall_after_ms();
        let v = verdict(&snaps, now, stall_after);
        let stalled_now: BTreeSet<u64> = v.stalled.iter().copied().collect();
        for b in snaps
            .iter()
            .filter(|b| stalled_now.contains(&b.id) && !stalled_before.contains(&b.id))
        {
            let age = now.saturating_sub(b.last_ms) / 1000;
            let tail = match b.policy {
                Policy::Reboot if rt.wd.is_some() => format!(
                    "no longer feeding the watchdog, the box resets within {timeout_s} s"
                ),
                Policy::Reboot => "no longer feeding the watchdog (no hardware watchdog armed; systemd restarts capbox if it watches)".to_string(),
                Policy::Restart if b.can_restart => "restarting it".to_string(),
                Policy::Restart => "nothing can restart it (reported only)".to_string(),
            };
            log::error!(
                "supervisor: thread '{}' has not turned for {age} s: {tail}",
                b.name
            );
        }
        for b in snaps.iter().filter(|b| {
            stalled_before.contains(&b.id) && !stalled_now.contains(&b.id) && !b.retired
        }) {
            log::warn!("supervisor: thread '{}' turns again", b.name);
        }
        stalled_before = stalled_now;
        for id in &v.restart {
            match hb.take_restart(*id) {
                Ok(Some((name, action))) => {
                    action();
                    log::warn!("supervisor: thread '{name}' abandoned, a fresh one started");
                }
                Ok(None) => {}
                Err(why) => {
                    if refused.insert(*id) {
                        log::error!("supervisor: {why}");
                    }
                }
            }
        }
        refused.retain(|id| stalled_before.contains(id));
        if v.feed && now >= next_feed {
            next_feed = now + feed_every_ms;
            if let Some(wd) = rt.wd.as_mut() {
                match wd.keepalive() {
                    Ok(()) => {
                        shared.feeds.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log::error!("supervisor: {e}"),
                }
            }
        }
        {
            let mut n = lock(&notifier);
            if let Some(n) = n.as_mut().filter(|_| shared.ready.load(Ordering::Relaxed)) {
                if v.feed && now >= next_notify {
                    next_notify = now + notify_every_ms;
                    if n.send("WATCHDOG=1") {
                        shared.notify_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let status = if v.starving.is_empty() {
                    format!(
                        "STATUS=serving; {} threads turning",
                        snaps.iter().filter(|b| !b.retired).count()
                    )
                } else {
                    let names: Vec<&str> = snaps
                        .iter()
                        .filter(|b| v.starving.contains(&b.id))
                        .map(|b| b.name.as_str())
                        .collect();
                    format!("STATUS=stalled: {}", names.join(", "))
                };
                if status != status_before && n.send(&status) {
                    shared.notify_sent.fetch_add(1, Ordering::Relaxed);
                    status_before = status;
                }
            }
        }
        if let Some((p, f)) = rt.log.as_mut() {
            if now.saturating_sub(last_flush) >= EVENTS_FLUSH_MS {
                let (events, dirty) = resetlog::events(true);
                if dirty {
                    last_flush = now;
                    f.events = events;
                    if let Err(e) = resetlog::store(p, f) {
                        log::debug!("supervisor: {e}");
                    }
                }
            }
        }
        std::thread::sleep(WAKE);
    }
    rt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(thread: &str, kind: &str) -> Vec<(String, String)> {
        vec![
            ("thread".into(), thread.into()),
            ("kind".into(), kind.into()),
        ]
    }

    #[test]
    fn reload_applies_stall_after_and_fault_injection() {
        let cfg = SupervisorConfig::default();
        let shared = Shared::new(&cfg);
        let sup = Supervisor::start(shared.clone(), &cfg, false);
        let _h = shared.heartbeats.register("http", Policy::Reboot);
        let (code, body) = shared.control_fault(&params("http", "stall"));
        assert_eq!(code, 403);
        assert!(body.contains("fault injection is off ([supervisor] fault_injection)"));
        sup.reconfigure(&SupervisorConfig {
            stall_after_s: 3,
            fault_injection: true,
            ..cfg.clone()
        });
        assert_eq!(shared.stall_after_ms(), 3000);
        assert_eq!(shared.control_fault(&params("http", "stall")).0, 200);
        assert_eq!(shared.control_fault(&params("http", "nope")).0, 400);
        assert_eq!(shared.control_fault(&[]).0, 400);
        assert_eq!(shared.control_fault(&params("nobody", "stall")).0, 404);
        // Turned off again: every injected stall is released.
        sup.reconfigure(&cfg);
        assert_eq!(shared.control_fault(&params("http", "clear")).0, 403);
        let st = shared.status();
        assert_eq!(st["stall_after_s"], 10);
        assert_eq!(st["watchdog"]["armed"], false);
        assert_eq!(
            st["watchdog"]["disarmed_reason"],
            "no watchdog configured ([supervisor] watchdog)"
        );
        let t = &st["threads"];
        assert!(
            t.as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "http" && t["policy"] == "reboot"),
            "{t}"
        );
        sup.stop();
    }

    #[test]
    fn metrics_name_every_family() {
        let cfg = SupervisorConfig::default();
        let shared = Shared::new(&cfg);
        let _h = shared
            .heartbeats
            .register("mux file \"a\".ts", Policy::Reboot);
        let mut m = String::new();
        shared.metrics(&mut m);
        for f in [
            "capbox_supervisor_watchdog_armed 0",
            "capbox_supervisor_watchdog_configured 0",
            "capbox_supervisor_watchdog_feeds_total 0",
            "capbox_supervisor_thread_stalled{thread=\"mux file \\\"a\\\".ts\"} 0",
            "capbox_supervisor_thread_restarts_total{thread=\"mux file \\\"a\\\".ts\"} 0",
            "capbox_supervisor_resets_last_hour 0",
            "capbox_supervisor_reboot_guard 0",
        ] {
            assert!(m.contains(f), "{f} missing:\n{m}");
        }
    }
}
