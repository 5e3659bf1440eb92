//! The escalation ladder of one adapter, as pure logic: fed what went
//! wrong (a [`Failure`], in facts) and when data flows again, it says what
//! to do next — retune, close and reopen, reset the USB device, or give the
//! adapter up as failed and retry now and then — and keeps the words for
//! the log, `/status` and `capbox status`. The mux runner
//! (`source::runner`) acts; this file only decides.
//!
//! Owns: the classification of a failure ([`classify`]): a tuner fault
//! (locked but dvr silent, an I/O error, will not lock on a mux it locked
//! on before in this run) climbs the ladder; weather (no lock since the
//! start, a lost lock, C/N falling) is reported as "no signal: weather or
//! antenna", retuned and reopened with a back-off, and never goes past
//! step 2 — a rain fade never resets a USB device. An episode keeps the
//! class it started with: the failed tunes that follow a lost lock are
//! still weather; those that follow a silent dvr are still a fault.
//!
//! Promises: no clock of its own (milliseconds of a monotonic clock are
//! passed in, so tests use a fake one); bounded memory; no panics on any
//! input, including a clock that goes backwards (taken as no time).

use std::fmt;

/// The ladder's timings and counts (`[recovery]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Locked with no dvr data for this long is a fault (`silent_ms`).
    pub silent_ms: u64,
    /// Retunes (step 1) before the adapter is reopened (`retunes`).
    pub retunes: u32,
    /// Reopens (step 2) before its USB device is reset (`reopens`).
    pub reopens: u32,
    /// How long a USB reset may take, device back included
    /// (`usb_reset_wait_ms`).
    pub usb_reset_wait_ms: u64,
    /// Data flowing this long after a step: healed, the ladder starts
    /// over (`healed_after_s`, in ms here).
    pub healed_after_ms: u64,
    /// A failed adapter is reopened (step 2) this often, so a repaired
    /// tuner comes back without a restart (`failed_retry_s`, in ms here).
    pub failed_retry_ms: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            silent_ms: 2000,
            retunes: 2,
            reopens: 2,
            usb_reset_wait_ms: 10_000,
            healed_after_ms: 60_000,
            failed_retry_ms: 300_000,
        }
    }
}

/// The weather back-off: the first reopen after 1 s, doubling to 30 s.
pub const WEATHER_BACKOFF_MIN_MS: u64 = 1000;
pub const WEATHER_BACKOFF_MAX_MS: u64 = 30_000;
/// A fault's reopen waits this long (a driver that fails at once must not
/// be hammered, nor climb the ladder in a tight loop).
pub const REOPEN_PAUSE_MS: u64 = 1000;

/// What went wrong with the adapter, in facts (the source knows them).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Locked, but no dvr data for `ms`.
    Silent { ms: u64 },
    /// Lock went away while streaming. `cnr_fell_db`: how far the C/N had
    /// fallen from its best since the tune, when the driver measures it.
    LockLost { cnr_fell_db: Option<f64> },
    /// A tune (open or retune) found no lock in time.
    NoLock,
    /// An I/O error from the frontend, demux or dvr (not ENODEV), in words.
    Io(String),
    /// The adapter went away (ENODEV): found again by its stable name.
    Gone,
    /// Anything else (in use by another program, bad settings): retried
    /// with the back-off, not the tuner's fault.
    Other,
}

/// A C/N this far below the best seen since the tune, when lock goes, says
/// the signal faded (rain, snow, a dish moving): weather.
pub const CNR_FADE_DB: f64 = 3.0;

/// Which kind of trouble a failure is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The tuner misbehaves: climb the ladder. The reason in words.
    Fault(String),
    /// No signal: weather or antenna. Reported, never past step 2.
    Weather(String),
    /// Gone or not the tuner's fault: reopen with the back-off.
    Other,
}

/// What an episode started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Fault,
    Weather,
}

/// What the classifier knows besides the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// The adapter locked on this mux at least once in this run.
    pub locked_before: bool,
    /// The class of the episode under way, if any.
    pub episode: Option<Class>,
}

/// The class of `f` given `h`: a pure function (unit tested below).
pub fn classify(f: &Failure, h: &History) -> Verdict {
    match f {
        Failure::Silent { ms } => {
            Verdict::Fault(format!("locked but no data for {}", seconds_words(*ms)))
        }
        Failure::Io(words) => Verdict::Fault(format!("I/O error: {words}")),
        Failure::LockLost { cnr_fell_db } => Verdict::Weather(match cnr_fell_db {
            Some(d) if *d >= CNR_FADE_DB => {
                format!("no signal: weather or antenna (lost lock after C/N fell {d:.1} dB)")
            }
            _ => "no signal: weather or antenna (lost lock)".to_string(),
        }),
        Failure::NoLock if !h.locked_before => {
            Verdict::Weather("no signal: weather or antenna (no lock since start)".to_string())
        }
        Failure::NoLock if h.episode == Some(Class::Weather) => {
            Verdict::Weather("no signal: weather or antenna (still no lock)".to_string())
        }
        Failure::NoLock => Verdict::Fault("will not lock on a mux it locked on before".to_string()),
        Failure::Gone | Failure::Other => Verdict::Other,
    }
}

/// "5 s", "1.5 s", "800 ms": to a tenth of a second, so a measured
/// 1014 ms reads "1 s".
fn seconds_words(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let tenths = ms.saturating_add(50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{} s", tenths / 10)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// The rungs. Step 4 is a state (failed), retried from step 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Retune = 1,
    Reopen = 2,
    UsbReset = 3,
    Failed = 4,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Retune, Step::Reopen, Step::UsbReset, Step::Failed];

    pub fn number(self) -> u8 {
        self as u8
    }

    /// The metric label and `/status` word.
    pub fn label(self) -> &'static str {
        match self {
            Step::Retune => "retune",
            Step::Reopen => "reopen",
            Step::UsbReset => "usb_reset",
            Step::Failed => "failed",
        }
    }

    /// The words of the log line ("step 1/4 retune").
    pub fn words(self) -> &'static str {
        match self {
            Step::Retune => "retune",
            Step::Reopen => "close and reopen frontend, demux and dvr",
            Step::UsbReset => "reset the USB device",
            Step::Failed => "marking the adapter failed",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}/4 {}", self.number(), self.words())
    }
}

/// What the runner must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Retune the open source (`DvbSource::retune`).
    Retune,
    /// Close the source (if open) and open it again after `after_ms`.
    Reopen { after_ms: u64 },
    /// Close the source and reset the USB device that owns the adapter
    /// (and close every other adapter on it first).
    UsbReset,
    /// Close the source; the adapter is failed; reopen after `after_ms`.
    Failed { after_ms: u64 },
}

/// One decision: the action, the rung it is (none for a plain back-off)
/// and why, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub step: Option<Step>,
    pub reason: String,
    pub weather: bool,
}

/// What `/status` shows of the ladder (`adapters[].recovery`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RecoveryStatus {
    /// The rung the adapter is on: 0 healthy, 1 retune, 2 reopen, 3 USB
    /// reset, 4 failed.
    pub step: u8,
    /// The last rung taken ("retune", "reopen", "usb_reset", "failed"),
    /// kept after it healed.
    pub last_step: Option<&'static str>,
    /// When, in seconds since the epoch.
    pub last_step_at: Option<u64>,
    /// Why, in words ("locked but no data for 2 s", "no signal: weather or
    /// antenna (lost lock)"); kept after it healed.
    pub reason: String,
    /// Given up: channel failover carries its channels; retried every
    /// `failed_retry_s`.
    pub failed: bool,
    /// The episode under way is weather (never past step 2).
    pub weather: bool,
    /// Steps taken since the start, per rung (retune, reopen, usb_reset,
    /// failed).
    pub steps_total: [u64; 4],
    /// Times a ladder healed (data flowed `healed_after_s` after a step).
    pub healed: u64,
}

/// The ladder of one adapter.
#[derive(Debug, Clone)]
pub struct Ladder {
    cfg: RecoveryConfig,
    locked_before: bool,
    episode: Option<Class>,
    retunes_done: u32,
    reopens_done: u32,
    usb_reset_done: bool,
    /// Step 4 reached; a fault before the ladder heals goes straight back.
    exhausted: bool,
    weather_retuned: bool,
    weather_backoff_ms: u64,
    /// Data flows since (ms), while an episode is open.
    healthy_since: Option<u64>,
    last_now: u64,
    status: RecoveryStatus,
}

impl Ladder {
    pub fn new(cfg: RecoveryConfig) -> Ladder {
        Ladder {
            cfg,
            locked_before: false,
            episode: None,
            retunes_done: 0,
            reopens_done: 0,
            usb_reset_done: false,
            exhausted: false,
            weather_retuned: false,
            weather_backoff_ms: WEATHER_BACKOFF_MIN_MS,
            healthy_since: None,
            last_now: 0,
            status: RecoveryStatus::default(),
        }
    }

    /// A ladder for a new runner of an adapter that had one: the counters,
    /// the last step and its reason are kept, the rung starts at 0.
    pub fn with_history(cfg: RecoveryConfig, prior: RecoveryStatus) -> Ladder {
        let mut l = Ladder::new(cfg);
        l.status = RecoveryStatus {
            step: 0,
            failed: false,
            weather: false,
            ..prior
        };
        l
    }

    pub fn config(&self) -> &RecoveryConfig {
        &self.cfg
    }

    pub fn status(&self) -> &RecoveryStatus {
        &self.status
    }

    pub fn history(&self) -> History {
        History {
            locked_before: self.locked_before,
            episode: self.episode,
        }
    }

    /// A monotonic view of the caller's clock.
    fn now(&mut self, now_ms: u64) -> u64 {
        self.last_now = self.last_now.max(now_ms);
        self.last_now
    }

    /// The frontend locked on the mux (an open or retune succeeded).
    pub fn on_locked(&mut self, now_ms: u64) {
        self.now(now_ms);
        self.locked_before = true;
        self.weather_backoff_ms = WEATHER_BACKOFF_MIN_MS;
    }

    /// Data flows (called on reads that returned packets). Returns the
    /// words of the healing, once, when an episode heals.
    pub fn on_data(&mut self, now_ms: u64) -> Option<String> {
        let now = self.now(now_ms);
        self.locked_before = true;
        if self.status.failed {
            // A repaired tuner: serving again. A fault before it heals
            // sends it straight back to failed.
            self.status.failed = false;
        }
        self.episode?;
        let since = *self.healthy_since.get_or_insert(now);
        if now - since < self.cfg.healed_after_ms {
            return None;
        }
        let words = format!(
            "healed: data for {} after {}",
            seconds_words(now - since),
            self.status.last_step.unwrap_or("a step")
        );
        self.reset_episode();
        self.status.healed += 1;
        Some(words)
    }

    fn reset_episode(&mut self) {
        self.episode = None;
        self.retunes_done = 0;
        self.reopens_done = 0;
        self.usb_reset_done = false;
        self.exhausted = false;
        self.weather_retuned = false;
        self.weather_backoff_ms = WEATHER_BACKOFF_MIN_MS;
        self.healthy_since = None;
        self.status.step = 0;
        self.status.failed = false;
        self.status.weather = false;
    }

    fn take(&mut self, step: Step, action: Action, reason: String, weather: bool) -> Decision {
        self.status.step = step.number();
        self.status.last_step = Some(step.label());
        self.status.last_step_at = Some(epoch_seconds());
        self.status.reason = reason.clone();
        self.status.weather = weather;
        self.status.steps_total[step.number() as usize - 1] += 1;
        if step == Step::Failed {
            self.status.failed = true;
            self.exhausted = true;
        }
        Decision {
            action,
            step: Some(step),
            reason,
            weather,
        }
    }

    /// The source failed with `f`; `open` says whether it is still open
    /// (a retune needs it open). The next action.
    pub fn on_failure(&mut self, now_ms: u64, f: &Failure, open: bool) -> Decision {
        self.now(now_ms);
        self.healthy_since = None;
        match classify(f, &self.history()) {
            Verdict::Other => {
                let after = self.weather_backoff_ms;
                self.weather_backoff_ms = (after * 2).min(WEATHER_BACKOFF_MAX_MS);
                let reason = match f {
                    Failure::Gone => "the adapter went away: finding it again by its name",
                    _ => "cannot open the adapter",
                };
                Decision {
                    action: Action::Reopen { after_ms: after },
                    step: None,
                    reason: reason.to_string(),
                    weather: false,
                }
            }
            Verdict::Weather(reason) => {
                if self.episode.is_none() {
                    self.episode = Some(Class::Weather);
                }
                if self.status.failed || self.exhausted {
                    // A failed adapter stays failed whatever the sky does.
                    let after = self.cfg.failed_retry_ms;
                    return self.take(
                        Step::Failed,
                        Action::Failed { after_ms: after },
                        reason,
                        true,
                    );
                }
                if open && !self.weather_retuned {
                    self.weather_retuned = true;
                    return self.take(Step::Retune, Action::Retune, reason, true);
                }
                let after = self.weather_backoff_ms;
                self.weather_backoff_ms = (after * 2).min(WEATHER_BACKOFF_MAX_MS);
                self.take(
                    Step::Reopen,
                    Action::Reopen { after_ms: after },
                    reason,
                    true,
                )
            }
            Verdict::Fault(reason) => {
                // A fault turns a weather episode into a fault one (lock
                // came back but the dvr is silent).
                self.episode = Some(Class::Fault);
                if self.exhausted {
                    let after = self.cfg.failed_retry_ms;
                    return self.take(
                        Step::Failed,
                        Action::Failed { after_ms: after },
                        reason,
                        false,
                    );
                }
                if open && self.retunes_done < self.cfg.retunes {
                    self.retunes_done += 1;
                    return self.take(Step::Retune, Action::Retune, reason, false);
                }
                if self.reopens_done < self.cfg.reopens {
                    self.reopens_done += 1;
                    return self.take(
                        Step::Reopen,
                        Action::Reopen {
                            after_ms: REOPEN_PAUSE_MS,
                        },
                        reason,
                        false,
                    );
                }
                if !self.usb_reset_done {
                    self.usb_reset_done = true;
                    return self.take(Step::UsbReset, Action::UsbReset, reason, false);
                }
                let after = self.cfg.failed_retry_ms;
                self.take(
                    Step::Failed,
                    Action::Failed { after_ms: after },
                    reason,
                    false,
                )
            }
        }
    }

    /// Step 3 could not be taken (not a USB device, no permission, the
    /// reset failed): `why` in words. The ladder goes to step 4.
    pub fn usb_reset_impossible(&mut self, now_ms: u64, why: &str) -> Decision {
        self.now(now_ms);
        let reason = format!("{}; {why}", self.status.reason);
        let after = self.cfg.failed_retry_ms;
        self.take(
            Step::Failed,
            Action::Failed { after_ms: after },
            reason,
            false,
        )
    }

    /// The failed adapter's periodic retry is being made (step 2 from
    /// step 4): counted as a reopen, shown as such.
    pub fn failed_retry(&mut self, now_ms: u64) -> Decision {
        self.now(now_ms);
        let reason = format!("retrying the failed adapter ({})", self.status.reason);
        let d = self.take(Step::Reopen, Action::Reopen { after_ms: 0 }, reason, false);
        // Still failed until data flows.
        self.status.failed = true;
        self.status.step = Step::Failed.number();
        d
    }
}

/// Seconds since the epoch (for `last_step_at`); 0 on a clock before 1970.
pub fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RecoveryConfig {
        RecoveryConfig {
            silent_ms: 2000,
            retunes: 2,
            reopens: 2,
            usb_reset_wait_ms: 5000,
            healed_after_ms: 60_000,
            failed_retry_ms: 300_000,
        }
    }

    /// Drives a ladder the way the runner does with a fake clock: a
    /// silent-while-locked adapter (locks every time, never delivers).
    /// Each fault comes `silent_ms` after the previous step's open or
    /// retune; returns (time, step) of each decision.
    fn silent_run(l: &mut Ladder, faults: usize) -> Vec<(u64, Option<Step>, Action)> {
        let mut now = 0;
        let mut open = true;
        l.on_locked(now);
        let mut out = Vec::new();
        for _ in 0..faults {
            now += l.config().silent_ms;
            let d = l.on_failure(
                now,
                &Failure::Silent {
                    ms: l.config().silent_ms,
                },
                open,
            );
            out.push((now, d.step, d.action));
            match d.action {
                Action::Retune => {
                    l.on_locked(now);
                    open = true;
                }
                Action::Reopen { after_ms } | Action::Failed { after_ms } => {
                    now += after_ms;
                    l.on_locked(now);
                    open = true;
                }
                Action::UsbReset => {
                    now += l.config().usb_reset_wait_ms;
                    l.on_locked(now);
                    open = true;
                }
            }
        }
        out
    }

    #[test]
    fn ladder_silent_while_locked_climbs_each_step_after_its_time() {
        let mut l = Ladder::new(cfg());
        let run = silent_run(&mut l, 7);
        let steps: Vec<Option<Step>> = run.iter().map(|r| r.1).collect();
        assert_eq!(
            steps,
            [
                Some(Step::Retune),
                Some(Step::Retune),
                Some(Step::Reopen),
                Some(Step::Reopen),
                Some(Step::UsbReset),
                Some(Step::Failed),
                Some(Step::Failed),
            ]
        );
        // Each step comes silent_ms after the last open/retune; reopens
        // pause 1 s first, the USB reset takes its wait.
        let times: Vec<u64> = run.iter().map(|r| r.0).collect();
        assert_eq!(times, [2000, 4000, 6000, 9000, 12000, 19000, 321_000]);
        assert_eq!(run[5].2, Action::Failed { after_ms: 300_000 });
        let st = l.status();
        assert_eq!(st.step, 4);
        assert!(st.failed);
        assert_eq!(st.steps_total, [2, 2, 1, 2]);
        assert_eq!(st.last_step, Some("failed"));
        assert_eq!(st.reason, "locked but no data for 2 s");
    }

    #[test]
    fn ladder_counts_are_configuration() {
        let mut l = Ladder::new(RecoveryConfig {
            retunes: 0,
            reopens: 1,
            ..cfg()
        });
        let steps: Vec<Option<Step>> = silent_run(&mut l, 3).iter().map(|r| r.1).collect();
        assert_eq!(
            steps,
            [Some(Step::Reopen), Some(Step::UsbReset), Some(Step::Failed)]
        );
    }

    #[test]
    fn ladder_rain_fade_never_reaches_usb_reset() {
        let mut l = Ladder::new(cfg());
        l.on_locked(0);
        for t in (100..5000).step_by(100) {
            assert_eq!(l.on_data(t), None);
        }
        // C/N falls, lock goes: weather. Then an hour of failed tunes.
        let d = l.on_failure(
            5000,
            &Failure::LockLost {
                cnr_fell_db: Some(9.5),
            },
            true,
        );
        assert_eq!(d.step, Some(Step::Retune));
        assert!(d.weather);
        assert_eq!(
            d.reason,
            "no signal: weather or antenna (lost lock after C/N fell 9.5 dB)"
        );
        let mut now = 5000;
        let mut afters = Vec::new();
        for _ in 0..200 {
            let d = l.on_failure(now, &Failure::NoLock, false);
            assert!(d.weather, "{d:?}");
            assert_eq!(d.step, Some(Step::Reopen), "{d:?}");
            let Action::Reopen { after_ms } = d.action else {
                panic!("{d:?}")
            };
            afters.push(after_ms);
            now += after_ms + 3000;
        }
        assert_eq!(afters[..6], [1000, 2000, 4000, 8000, 16000, 30000]);
        assert!(afters.iter().all(|&a| a <= WEATHER_BACKOFF_MAX_MS));
        let st = l.status();
        assert_eq!(st.steps_total[2], 0, "no USB reset: {st:?}");
        assert_eq!(st.steps_total[3], 0, "never failed: {st:?}");
        assert!(st.step <= 2);
        assert!(st.reason.starts_with("no signal: weather or antenna"));
        // The signal comes back: the back-off starts over.
        l.on_locked(now);
        let d = l.on_failure(now + 10, &Failure::LockLost { cnr_fell_db: None }, false);
        assert_eq!(d.action, Action::Reopen { after_ms: 1000 });
    }

    #[test]
    fn ladder_no_lock_since_start_is_weather() {
        let mut l = Ladder::new(cfg());
        for i in 0..50 {
            let d = l.on_failure(i * 1000, &Failure::NoLock, false);
            assert!(d.weather);
            assert!(d.step <= Some(Step::Reopen));
        }
        assert_eq!(l.status().steps_total[2..], [0, 0]);
    }

    #[test]
    fn ladder_no_lock_where_it_locked_before_is_a_fault() {
        let mut l = Ladder::new(cfg());
        l.on_locked(0);
        l.on_data(100);
        // Reopened (after a reload or a hot-plug) and no lock on the mux
        // it locked on: the tuner, not the sky.
        let mut steps = Vec::new();
        for i in 1..=6 {
            let d = l.on_failure(i * 4000, &Failure::NoLock, false);
            assert!(!d.weather);
            steps.push(d.step);
        }
        assert_eq!(
            steps,
            [
                Some(Step::Reopen),
                Some(Step::Reopen),
                Some(Step::UsbReset),
                Some(Step::Failed),
                Some(Step::Failed),
                Some(Step::Failed)
            ]
        );
    }

    #[test]
    fn ladder_a_healed_step_resets_after_the_quiet_period() {
        let mut l = Ladder::new(cfg());
        l.on_locked(0);
        let d = l.on_failure(2000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(d.step, Some(Step::Retune));
        l.on_locked(2100);
        // Data for less than the quiet period, then silent again: the
        // ladder goes on climbing (the retune did not heal it).
        assert_eq!(l.on_data(2200), None);
        assert_eq!(l.on_data(30_000), None);
        let d = l.on_failure(32_000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(d.step, Some(Step::Retune));
        assert_eq!(l.status().step, 1);
        // Now data for the whole quiet period: healed, once.
        assert_eq!(l.on_data(32_100), None);
        let w = l.on_data(92_100).expect("healed");
        assert_eq!(w, "healed: data for 60 s after retune");
        assert_eq!(l.on_data(92_200), None);
        let st = l.status();
        assert_eq!((st.step, st.failed, st.healed), (0, false, 1));
        assert_eq!(st.last_step, Some("retune"), "kept for the operator");
        // The next fault starts at step 1 again.
        let d = l.on_failure(100_000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(d.step, Some(Step::Retune));
    }

    #[test]
    fn ladder_failed_adapter_retries_and_comes_back() {
        let mut l = Ladder::new(cfg());
        silent_run(&mut l, 6);
        assert!(l.status().failed);
        // The retry after failed_retry: a reopen, still shown failed.
        let d = l.failed_retry(400_000);
        assert_eq!(d.step, Some(Step::Reopen));
        assert!(l.status().failed);
        assert_eq!(l.status().step, 4);
        // It works: no longer failed at once; healed after the period.
        l.on_locked(400_100);
        assert_eq!(l.on_data(400_200), None);
        assert!(!l.status().failed);
        assert!(l.on_data(460_200).is_some());
        assert_eq!(l.status().step, 0);
        // A fault after healing climbs from step 1 again.
        let d = l.on_failure(470_000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(d.step, Some(Step::Retune));
    }

    #[test]
    fn ladder_failed_adapter_faulting_again_before_healing_is_failed_at_once() {
        let mut l = Ladder::new(cfg());
        silent_run(&mut l, 6);
        l.failed_retry(400_000);
        l.on_locked(400_100);
        l.on_data(400_200);
        let d = l.on_failure(402_000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(d.step, Some(Step::Failed));
        assert_eq!(d.action, Action::Failed { after_ms: 300_000 });
        assert!(l.status().failed);
    }

    #[test]
    fn ladder_usb_reset_impossible_goes_to_failed() {
        let mut l = Ladder::new(RecoveryConfig {
            retunes: 1,
            reopens: 1,
            ..cfg()
        });
        let run = silent_run(&mut l, 3);
        assert_eq!(run[2].1, Some(Step::UsbReset));
        let d = l.usb_reset_impossible(
            20_000,
            "not a USB device (platform device vidtv): cannot reset, marking failed",
        );
        assert_eq!(d.step, Some(Step::Failed));
        assert_eq!(
            d.reason,
            "locked but no data for 2 s; not a USB device (platform device vidtv): cannot reset, marking failed"
        );
        assert!(l.status().failed);
        assert_eq!(l.status().steps_total, [1, 1, 1, 1]);
    }

    #[test]
    fn ladder_weather_then_silent_becomes_a_fault() {
        let mut l = Ladder::new(cfg());
        l.on_locked(0);
        let d = l.on_failure(1000, &Failure::LockLost { cnr_fell_db: None }, true);
        assert!(d.weather);
        // Lock is back but the dvr stays silent: that is the tuner.
        l.on_locked(3000);
        let d = l.on_failure(5000, &Failure::Silent { ms: 2000 }, true);
        assert!(!d.weather);
        assert_eq!(d.step, Some(Step::Retune));
        // And the no-locks that follow in this episode are faults too.
        let d = l.on_failure(9000, &Failure::NoLock, false);
        assert!(!d.weather);
        assert_eq!(d.step, Some(Step::Reopen));
    }

    #[test]
    fn ladder_io_errors_climb_and_gone_only_backs_off() {
        let mut l = Ladder::new(cfg());
        l.on_locked(0);
        let d = l.on_failure(10, &Failure::Io("dvr0: read failed: EIO".into()), true);
        assert_eq!(d.step, Some(Step::Retune));
        assert_eq!(d.reason, "I/O error: dvr0: read failed: EIO");
        for i in 0..10 {
            let d = l.on_failure(100 + i, &Failure::Gone, false);
            assert_eq!(d.step, None);
            assert!(matches!(d.action, Action::Reopen { .. }));
        }
        assert_eq!(l.status().steps_total, [1, 0, 0, 0]);
    }

    #[test]
    fn classify_is_pure_and_words_are_plain() {
        let h = History {
            locked_before: true,
            episode: None,
        };
        assert_eq!(
            classify(&Failure::Silent { ms: 5000 }, &h),
            Verdict::Fault("locked but no data for 5 s".into())
        );
        assert_eq!(
            classify(&Failure::Silent { ms: 1500 }, &h),
            Verdict::Fault("locked but no data for 1.5 s".into())
        );
        assert_eq!(seconds_words(1014), "1 s");
        assert_eq!(seconds_words(2960), "3 s");
        assert_eq!(seconds_words(999), "999 ms");
        assert!(seconds_words(u64::MAX).ends_with(" s"));
        assert!(matches!(
            classify(&Failure::LockLost { cnr_fell_db: Some(1.0) }, &h),
            Verdict::Weather(w) if w == "no signal: weather or antenna (lost lock)"
        ));
        assert!(matches!(classify(&Failure::NoLock, &h), Verdict::Fault(_)));
        let weather = History {
            episode: Some(Class::Weather),
            ..h
        };
        assert!(matches!(
            classify(&Failure::NoLock, &weather),
            Verdict::Weather(_)
        ));
        let fresh = History::default();
        assert!(matches!(
            classify(&Failure::NoLock, &fresh),
            Verdict::Weather(_)
        ));
        assert_eq!(classify(&Failure::Other, &h), Verdict::Other);
    }

    #[test]
    fn ladder_clock_going_backwards_is_no_time() {
        let mut l = Ladder::new(RecoveryConfig {
            healed_after_ms: 1000,
            ..cfg()
        });
        l.on_locked(10_000);
        l.on_failure(10_000, &Failure::Silent { ms: 2000 }, true);
        assert_eq!(l.on_data(10_500), None);
        assert_eq!(l.on_data(5), None, "backwards: no time passed");
        assert!(l.on_data(11_500).is_some());
    }

    #[test]
    fn step_words() {
        assert_eq!(Step::Retune.to_string(), "step 1/4 retune");
        assert_eq!(
            Step::Reopen.to_string(),
            "step 2/4 close and reopen frontend, demux and dvr"
        );
        assert_eq!(Step::UsbReset.to_string(), "step 3/4 reset the USB device");
        assert_eq!(
            Step::Failed.to_string(),
            "step 4/4 marking the adapter failed"
        );
    }
}
