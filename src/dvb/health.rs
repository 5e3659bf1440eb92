//! Stall signals of one adapter as pure logic: fed observations (a tick with
//! the time, lock state, dvr bytes and counter deltas since the last tick),
//! it says when the adapter's input goes bad and when it comes back. The
//! failover logic and the supervisor act on the events (retune, reopen, USB
//! reset); this file only decides. `source::dvb::DvbSource` feeds it on
//! every read and status refresh and fails on `LockLost` and `NoData`.
//!
//! Owns: the four conditions — lock lost, no dvr data for `no_data_ms`
//! while locked, a burst of ≥ `cc_burst_count` continuity errors within
//! `cc_window_ms`, dvr overflow — and their de-duplication: each fires once
//! per episode and a `Recovered` follows when it clears.
//!
//! Promises: no clock of its own (the caller passes milliseconds of a
//! monotonic clock, so tests use a fake one); bounded memory (the CC window
//! keeps at most `CC_WINDOW_SLOTS` ticks, merging older ones); no panics on
//! any input, including a clock that goes backwards (treated as no time).

use std::collections::VecDeque;

/// Most ticks the CC window remembers; beyond, the oldest merge.
pub const CC_WINDOW_SLOTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// No dvr data for this long while locked is a stall.
    pub no_data_ms: u64,
    /// This many continuity errors within `cc_window_ms` is a burst.
    pub cc_burst_count: u64,
    pub cc_window_ms: u64,
    /// An overflow episode ends after this long without a new overflow.
    pub overflow_quiet_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            no_data_ms: 2000,
            cc_burst_count: 20,
            cc_window_ms: 1000,
            overflow_quiet_ms: 1000,
        }
    }
}

/// What the adapter did since the previous tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Milliseconds of a monotonic clock.
    pub now_ms: u64,
    pub locked: bool,
    /// dvr bytes read since the previous tick.
    pub bytes: u64,
    /// Continuity-counter errors since the previous tick.
    pub cc_errors: u64,
    /// dvr overflows (EOVERFLOW) since the previous tick.
    pub overflows: u64,
}

/// The conditions, for `Recovered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    Lock,
    NoData,
    CcBurst,
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// The frontend is not locked (it was, or was never seen locked).
    LockLost,
    /// Locked, but no dvr data for `ms`.
    NoData { ms: u64 },
    /// `count` continuity errors within the last `window_ms`.
    CcBurst { count: u64, window_ms: u64 },
    /// The dvr ring overflowed `count` times in this tick.
    Overflow { count: u64 },
    /// The condition cleared.
    Recovered(Condition),
}

impl std::fmt::Display for HealthEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthEvent::LockLost => write!(f, "lock lost"),
            HealthEvent::NoData { ms } => write!(f, "no dvr data for {ms} ms while locked"),
            HealthEvent::CcBurst { count, window_ms } => {
                write!(f, "{count} continuity errors within {window_ms} ms")
            }
            HealthEvent::Overflow { count } => {
                write!(f, "dvr overflow ({count}): data dropped, reader too slow")
            }
            HealthEvent::Recovered(c) => write!(f, "recovered: {c:?}"),
        }
    }
}

/// Counters of the monitor: events emitted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthStats {
    pub ticks: u64,
    pub lock_lost: u64,
    pub no_data: u64,
    pub cc_bursts: u64,
    pub overflows: u64,
    pub recovered: u64,
    /// Ticks whose clock went backwards (taken as no time passing).
    pub clock_backwards: u64,
}

#[derive(Debug, Clone)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    last_now: Option<u64>,
    /// Since when data is missing while locked (reset by data and by lock).
    quiet_since: Option<u64>,
    lock_lost: bool,
    no_data: bool,
    cc_burst: bool,
    overflow_since: Option<u64>,
    /// (time, cc errors) of recent ticks.
    cc_window: VecDeque<(u64, u64)>,
    pub stats: HealthStats,
}

impl HealthMonitor {
    pub fn new(cfg: HealthConfig) -> HealthMonitor {
        HealthMonitor {
            cfg,
            last_now: None,
            quiet_since: None,
            lock_lost: false,
            no_data: false,
            cc_burst: false,
            overflow_since: None,
            cc_window: VecDeque::new(),
            stats: HealthStats::default(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// Conditions currently active.
    pub fn active(&self) -> Vec<Condition> {
        let mut v = Vec::new();
        if self.lock_lost {
            v.push(Condition::Lock);
        }
        if self.no_data {
            v.push(Condition::NoData);
        }
        if self.cc_burst {
            v.push(Condition::CcBurst);
        }
        if self.overflow_since.is_some() {
            v.push(Condition::Overflow);
        }
        v
    }

    /// Forget everything (after a retune or reopen): the next tick starts
    /// fresh and nothing active is reported as recovered.
    pub fn reset(&mut self) {
        let stats = self.stats;
        *self = HealthMonitor::new(self.cfg);
        self.stats = stats;
    }

    /// One observation; the events it causes, in a fixed order (lock, data,
    /// CC, overflow).
    pub fn tick(&mut self, o: Observation) -> Vec<HealthEvent> {
        self.stats.ticks += 1;
        let now = match self.last_now {
            Some(last) if o.now_ms < last => {
                self.stats.clock_backwards += 1;
                last
            }
            _ => o.now_ms,
        };
        self.last_now = Some(now);
        let mut ev = Vec::new();

        // Lock.
        if !o.locked && !self.lock_lost {
            self.lock_lost = true;
            self.stats.lock_lost += 1;
            ev.push(HealthEvent::LockLost);
        } else if o.locked && self.lock_lost {
            self.lock_lost = false;
            self.stats.recovered += 1;
            ev.push(HealthEvent::Recovered(Condition::Lock));
        }

        // Data while locked. Unlocked, no data is expected: lock lost says it
        // already, and the clock restarts when lock comes back.
        if !o.locked || o.bytes > 0 {
            self.quiet_since = None;
            if self.no_data && (o.bytes > 0 || !o.locked) {
                self.no_data = false;
                if o.bytes > 0 {
                    self.stats.recovered += 1;
                    ev.push(HealthEvent::Recovered(Condition::NoData));
                }
            }
        } else {
            let since = *self.quiet_since.get_or_insert(now);
            let ms = now - since;
            if ms >= self.cfg.no_data_ms && !self.no_data {
                self.no_data = true;
                self.stats.no_data += 1;
                ev.push(HealthEvent::NoData { ms });
            }
        }
        if o.bytes > 0 && o.locked {
            self.quiet_since = Some(now);
        }

        // CC errors in the sliding window.
        if o.cc_errors > 0 {
            if self.cc_window.len() >= CC_WINDOW_SLOTS {
                if let Some((_, c)) = self.cc_window.pop_front() {
                    if let Some(front) = self.cc_window.front_mut() {
                        front.1 += c;
                    }
                }
            }
            self.cc_window.push_back((now, o.cc_errors));
        }
        while let Some(&(t, _)) = self.cc_window.front() {
            if now.saturating_sub(t) >= self.cfg.cc_window_ms {
                self.cc_window.pop_front();
            } else {
                break;
            }
        }
        let count: u64 = self.cc_window.iter().map(|(_, c)| c).sum();
        if count >= self.cfg.cc_burst_count && !self.cc_burst {
            self.cc_burst = true;
            self.stats.cc_bursts += 1;
            ev.push(HealthEvent::CcBurst {
                count,
                window_ms: self.cfg.cc_window_ms,
            });
        } else if count < self.cfg.cc_burst_count && self.cc_burst {
            self.cc_burst = false;
            self.stats.recovered += 1;
            ev.push(HealthEvent::Recovered(Condition::CcBurst));
        }

        // Overflow.
        if o.overflows > 0 {
            if self.overflow_since.is_none() {
                self.stats.overflows += 1;
                ev.push(HealthEvent::Overflow { count: o.overflows });
            }
            self.overflow_since = Some(now);
        } else if let Some(t) = self.overflow_since {
            if now.saturating_sub(t) >= self.cfg.overflow_quiet_ms {
                self.overflow_since = None;
                self.stats.recovered += 1;
                ev.push(HealthEvent::Recovered(Condition::Overflow));
            }
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: ticks every `step` ms.
    struct Rig {
        m: HealthMonitor,
        now: u64,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                m: HealthMonitor::new(HealthConfig::default()),
                now: 0,
            }
        }
        fn tick(
            &mut self,
            step: u64,
            locked: bool,
            bytes: u64,
            cc: u64,
            ovf: u64,
        ) -> Vec<HealthEvent> {
            self.now += step;
            self.m.tick(Observation {
                now_ms: self.now,
                locked,
                bytes,
                cc_errors: cc,
                overflows: ovf,
            })
        }
    }

    #[test]
    fn healthy_stream_is_quiet() {
        let mut r = Rig::new();
        for _ in 0..100 {
            assert_eq!(r.tick(100, true, 50_000, 0, 0), []);
        }
        assert!(r.m.active().is_empty());
    }

    #[test]
    fn lock_lost_once_then_recovered() {
        let mut r = Rig::new();
        r.tick(100, true, 1000, 0, 0);
        assert_eq!(r.tick(100, false, 0, 0, 0), [HealthEvent::LockLost]);
        for _ in 0..50 {
            // Unlocked for 5 s: no NoData on top of LockLost.
            assert_eq!(r.tick(100, false, 0, 0, 0), []);
        }
        assert_eq!(
            r.tick(100, true, 1000, 0, 0),
            [HealthEvent::Recovered(Condition::Lock)]
        );
        assert_eq!(r.m.stats.lock_lost, 1);
    }

    #[test]
    fn no_data_while_locked_fires_at_threshold_once() {
        let mut r = Rig::new();
        r.tick(100, true, 1000, 0, 0);
        let mut fired = Vec::new();
        for _ in 0..40 {
            let ev = r.tick(100, true, 0, 0, 0);
            if !ev.is_empty() {
                fired.push((r.now, ev));
            }
        }
        // Last data at t=100; 2000 ms later, at t=2100.
        assert_eq!(fired, [(2100, vec![HealthEvent::NoData { ms: 2000 }])]);
        assert_eq!(
            r.tick(100, true, 188, 0, 0),
            [HealthEvent::Recovered(Condition::NoData)]
        );
        // A second episode fires again.
        let mut n = 0;
        for _ in 0..25 {
            n += r.tick(100, true, 0, 0, 0).len();
        }
        assert_eq!(n, 1);
        assert_eq!(r.m.stats.no_data, 2);
    }

    #[test]
    fn no_data_clock_starts_at_lock() {
        let mut r = Rig::new();
        r.tick(100, false, 0, 0, 0);
        // Locked at t=200, never any data: fires at t=2200.
        let mut at = None;
        for _ in 0..30 {
            if r.tick(100, true, 0, 0, 0)
                .contains(&HealthEvent::NoData { ms: 2000 })
            {
                at = Some(r.now);
            }
        }
        assert_eq!(at, Some(2200));
    }

    #[test]
    fn cc_burst_threshold_and_window() {
        let mut r = Rig::new();
        // 19 errors in a second: below the default 20.
        for _ in 0..19 {
            assert_eq!(r.tick(50, true, 100, 1, 0), []);
        }
        // Spread out (1 per 100 ms) never reaches 20 within 1 s.
        let mut r2 = Rig::new();
        for _ in 0..100 {
            assert_eq!(r2.tick(100, true, 100, 1, 0), []);
        }
        // The 20th within the window fires, once.
        assert_eq!(
            r.tick(50, true, 100, 1, 0),
            [HealthEvent::CcBurst {
                count: 20,
                window_ms: 1000
            }]
        );
        assert_eq!(r.tick(50, true, 100, 5, 0), []);
        // Quiet for a window: recovered.
        let mut ev = Vec::new();
        for _ in 0..25 {
            ev.extend(r.tick(50, true, 100, 0, 0));
        }
        assert_eq!(ev, [HealthEvent::Recovered(Condition::CcBurst)]);
    }

    #[test]
    fn overflow_episode() {
        let mut r = Rig::new();
        assert_eq!(
            r.tick(100, true, 100, 0, 2),
            [HealthEvent::Overflow { count: 2 }]
        );
        assert_eq!(r.tick(100, true, 100, 0, 1), []);
        let mut ev = Vec::new();
        for _ in 0..9 {
            ev.extend(r.tick(100, true, 100, 0, 0));
        }
        assert_eq!(ev, []);
        assert_eq!(
            r.tick(100, true, 100, 0, 0),
            [HealthEvent::Recovered(Condition::Overflow)]
        );
    }

    #[test]
    fn custom_thresholds_and_backwards_clock() {
        let cfg = HealthConfig {
            no_data_ms: 300,
            cc_burst_count: 3,
            cc_window_ms: 200,
            overflow_quiet_ms: 100,
        };
        let mut m = HealthMonitor::new(cfg);
        let o = |t, b, cc| Observation {
            now_ms: t,
            locked: true,
            bytes: b,
            cc_errors: cc,
            overflows: 0,
        };
        assert_eq!(m.tick(o(1000, 10, 3)).len(), 1);
        assert_eq!(m.tick(o(900, 0, 0)), []);
        assert_eq!(m.stats.clock_backwards, 1);
        let ev = m.tick(o(1300, 0, 0));
        assert!(ev.contains(&HealthEvent::NoData { ms: 300 }), "{ev:?}");
        assert!(ev.contains(&HealthEvent::Recovered(Condition::CcBurst)));
        m.reset();
        assert!(m.active().is_empty());
        assert_eq!(m.stats.no_data, 1);
    }

    #[test]
    fn cc_window_memory_is_bounded() {
        let mut m = HealthMonitor::new(HealthConfig {
            cc_burst_count: u64::MAX,
            cc_window_ms: u64::MAX,
            ..HealthConfig::default()
        });
        for t in 0..10_000 {
            m.tick(Observation {
                now_ms: t,
                locked: true,
                bytes: 1,
                cc_errors: 1,
                overflows: 0,
            });
        }
        assert!(m.cc_window.len() <= CC_WINDOW_SLOTS);
        let total: u64 = m.cc_window.iter().map(|(_, c)| c).sum();
        assert_eq!(total, 10_000);
    }
}
