//! Which source of a channel is on air: the failover rules, as a pure
//! function of each source's health and the time (the clock is passed
//! in), so every rule is tested without a thread.
//!
//! The rules (README "Failover rules"):
//! - Sources are in order of preference; the slate, when the channel has
//!   one, comes after them and never counts as healthy.
//! - The source on air that stays unhealthy for `fail_after` is left for
//!   the most preferred healthy source, else the slate. A stall counts
//!   from the last packet, not from when it was noticed.
//! - A source preferred to the one on air is taken back only after it has
//!   stayed healthy for `recover_after` (a flapping dish is not).
//! - From the slate, any healthy source is taken at once.
//! - A fresh channel gives its sources `STARTUP_GRACE` to come up before
//!   anything is decided, so the preferred one is not passed over while
//!   it tunes.
//! - A pin (the operator's hand) overrides all of it until unpinned.

use std::time::{Duration, Instant};

/// Time a new channel's sources get before the first decision.
pub const STARTUP_GRACE: Duration = Duration::from_secs(3);

/// The most entries (sources + slate) a decision looks at.
pub const MAX_ENTRIES: usize = crate::channel::MAX_SOURCES + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub fail_after: Duration,
    pub recover_after: Duration,
}

/// One source's health at a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    /// When it became unhealthy, if it is (for a stall: its last packet).
    pub unhealthy_since: Option<Instant>,
    /// Why not, in words ("stalled 400 ms").
    pub words: String,
    /// A cold-standby source being connected for this channel: worth
    /// waiting for (up to `COLD_WAIT`) rather than playing the slate.
    pub waking: bool,
}

/// How long a channel whose sources are all down waits for a cold backup
/// it is connecting before it plays the slate.
pub const COLD_WAIT: Duration = Duration::from_secs(3);

/// A decision to switch, with its reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub from: usize,
    pub to: usize,
    pub why: String,
}

#[derive(Debug, Clone)]
pub struct Failover {
    rules: Rules,
    /// Real sources; index `sources` is the slate when `slate`.
    sources: usize,
    slate: bool,
    active: usize,
    started: Instant,
    healthy_since: [Option<Instant>; MAX_ENTRIES],
    unhealthy_from: [Option<Instant>; MAX_ENTRIES],
    pinned: Option<usize>,
    pub switches: u64,
}

impl Failover {
    pub fn new(rules: Rules, sources: usize, slate: bool, now: Instant) -> Failover {
        Failover {
            rules,
            sources: sources.clamp(1, crate::channel::MAX_SOURCES),
            slate,
            active: 0,
            started: now,
            healthy_since: [None; MAX_ENTRIES],
            unhealthy_from: [None; MAX_ENTRIES],
            pinned: None,
            switches: 0,
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    /// The slate's index, when the channel has one.
    pub fn slate_index(&self) -> Option<usize> {
        self.slate.then_some(self.sources)
    }

    pub fn on_slate(&self) -> bool {
        self.slate && self.active == self.sources
    }

    pub fn pinned(&self) -> Option<usize> {
        self.pinned
    }

    /// Pin a source (`None`: back to the rules). False when out of range.
    pub fn pin(&mut self, source: Option<usize>) -> bool {
        match source {
            Some(s) if s >= self.sources => false,
            s => {
                self.pinned = s;
                true
            }
        }
    }

    /// One decision. `health[i]` for each real source (missing entries
    /// count as unhealthy). Returns the switch made, if any.
    pub fn decide(&mut self, health: &[Health], now: Instant) -> Option<Switch> {
        let healthy = |i: usize| health.get(i).is_some_and(|h| h.healthy);
        for i in 0..self.sources {
            if healthy(i) {
                self.healthy_since[i].get_or_insert(now);
                self.unhealthy_from[i] = None;
            } else {
                self.healthy_since[i] = None;
                // The earlier of what the source says (a stall: its last
                // packet) and when it was first seen unhealthy.
                let said = health.get(i).and_then(|h| h.unhealthy_since).unwrap_or(now);
                let seen = self.unhealthy_from[i].unwrap_or(now);
                self.unhealthy_from[i] = Some(said.min(seen));
            }
        }
        let words = |i: usize| {
            health
                .get(i)
                .map(|h| h.words.clone())
                .unwrap_or_else(|| "no report".into())
        };
        if let Some(p) = self.pinned {
            return (self.active != p).then(|| self.go(p, "pinned by hand".into()));
        }
        let best_healthy = (0..self.sources).find(|&i| healthy(i));
        if self.on_slate() {
            return best_healthy.map(|to| self.go(to, format!("source {to} is healthy")));
        }
        if now.saturating_duration_since(self.started) < STARTUP_GRACE {
            return None;
        }
        if !healthy(self.active) {
            let since = self.unhealthy_from[self.active].unwrap_or(now);
            if now.saturating_duration_since(since) < self.rules.fail_after {
                return None;
            }
            let why = words(self.active);
            let waking = health.iter().take(self.sources).any(|h| h.waking);
            return match (best_healthy, self.slate_index()) {
                (Some(to), _) => Some(self.go(to, why)),
                // A cold backup is connecting: hold the last picture a
                // moment rather than flash the slate.
                (None, Some(_)) if waking && !self.on_slate() => None,
                (None, Some(slate)) => Some(self.go(slate, format!("{why}; no healthy source"))),
                (None, None) => None,
            };
        }
        // Back to a preferred source once it has held long enough.
        let back = (0..self.active).find(|&i| {
            self.healthy_since[i]
                .is_some_and(|t| now.saturating_duration_since(t) >= self.rules.recover_after)
        });
        back.map(|to| {
            let secs = self.rules.recover_after.as_secs_f64();
            self.go(to, format!("source {to} healthy again for {secs:.0} s"))
        })
    }

    fn go(&mut self, to: usize, why: String) -> Switch {
        let s = Switch {
            from: self.active,
            to,
            why,
        };
        self.active = to;
        self.switches += 1;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(healthy: bool, since: Option<Instant>) -> Health {
        Health {
            healthy,
            unhealthy_since: since,
            words: if healthy {
                "ok".into()
            } else {
                "stalled".into()
            },
            waking: false,
        }
    }

    #[test]
    fn a_waking_cold_backup_is_waited_for_instead_of_the_slate() {
        let t0 = Instant::now();
        let mut f = Failover::new(rules(), 2, true, t0);
        let t = t0 + STARTUP_GRACE + 1000 * MS;
        let mut cold = h(false, None);
        cold.waking = true;
        assert_eq!(f.decide(&[h(false, Some(t0)), cold.clone()], t), None);
        let s = f
            .decide(&[h(false, Some(t0)), h(true, None)], t + 500 * MS)
            .unwrap();
        assert_eq!((s.from, s.to), (0, 1));
        // Not waking any more (it failed to connect): the slate.
        let mut f = Failover::new(rules(), 2, true, t0);
        assert_eq!(f.decide(&[h(false, Some(t0)), cold], t), None);
        let s = f
            .decide(&[h(false, Some(t0)), h(false, None)], t + 3000 * MS)
            .unwrap();
        assert_eq!(s.to, 2);
    }

    const MS: Duration = Duration::from_millis(1);

    fn rules() -> Rules {
        Rules {
            fail_after: 150 * MS,
            recover_after: 30_000 * MS,
        }
    }

    #[test]
    fn fails_over_after_fail_after_counted_from_the_last_packet() {
        let t0 = Instant::now();
        let mut f = Failover::new(rules(), 2, true, t0);
        let t = t0 + STARTUP_GRACE;
        assert_eq!(f.decide(&[h(true, None), h(true, None)], t), None);
        // Stalled since 100 ms ago: not yet.
        let last = t + 1000 * MS;
        assert_eq!(
            f.decide(&[h(false, Some(last)), h(true, None)], last + 100 * MS),
            None
        );
        let s = f
            .decide(&[h(false, Some(last)), h(true, None)], last + 150 * MS)
            .unwrap();
        assert_eq!((s.from, s.to, s.why.as_str()), (0, 1, "stalled"));
        assert_eq!(f.switches, 1);
    }

    #[test]
    fn everything_down_plays_the_slate_and_leaves_it_at_once() {
        let t0 = Instant::now();
        let mut f = Failover::new(rules(), 2, true, t0);
        let t = t0 + STARTUP_GRACE + 1000 * MS;
        let s = f
            .decide(&[h(false, Some(t0)), h(false, Some(t0))], t)
            .unwrap();
        assert_eq!(s.to, 2);
        assert!(f.on_slate());
        assert!(s.why.ends_with("no healthy source"), "{}", s.why);
        let s = f
            .decide(&[h(false, Some(t0)), h(true, None)], t + MS)
            .unwrap();
        assert_eq!((s.from, s.to), (2, 1));
        // Without a slate, the channel stays on its source.
        let mut f = Failover::new(rules(), 2, false, t0);
        assert_eq!(f.decide(&[h(false, Some(t0)), h(false, Some(t0))], t), None);
    }

    #[test]
    fn a_flapping_source_is_left_once_and_not_taken_back_until_stable() {
        let t0 = Instant::now();
        let mut f = Failover::new(rules(), 2, true, t0);
        let mut t = t0 + STARTUP_GRACE;
        let mut switches = Vec::new();
        // One minute: 300 ms down every 2 s, decisions every 20 ms.
        let end = t + 60_000 * MS;
        while t < end {
            let phase = (t - t0).as_millis() % 2000;
            let down = phase < 300;
            let since = down.then(|| t - Duration::from_millis(phase as u64));
            if let Some(s) = f.decide(&[h(!down, since), h(true, None)], t) {
                switches.push(s);
            }
            t += 20 * MS;
        }
        assert_eq!(switches.len(), 1, "{switches:?}");
        assert_eq!((switches[0].from, switches[0].to), (0, 1));
        // Then stable for recover_after: back.
        let mut back = None;
        for _ in 0..1600 {
            back = back.or(f.decide(&[h(true, None), h(true, None)], t));
            t += 20 * MS;
        }
        let back = back.expect("back to source 0 once stable");
        assert_eq!((back.from, back.to), (1, 0));
        assert!(back.why.contains("healthy again for 30 s"), "{}", back.why);
    }

    #[test]
    fn startup_grace_and_pins() {
        let t0 = Instant::now();
        let mut f = Failover::new(rules(), 3, true, t0);
        // Source 0 still tuning at 1 s: nothing decided.
        assert_eq!(
            f.decide(
                &[h(false, Some(t0)), h(true, None), h(true, None)],
                t0 + 1000 * MS
            ),
            None
        );
        assert!(f.pin(Some(2)));
        let s = f
            .decide(
                &[h(true, None), h(true, None), h(true, None)],
                t0 + 1001 * MS,
            )
            .unwrap();
        assert_eq!((s.to, s.why.as_str()), (2, "pinned by hand"));
        // A pinned source stays on air even when unhealthy.
        assert_eq!(
            f.decide(
                &[h(true, None), h(true, None), h(false, Some(t0))],
                t0 + 9000 * MS
            ),
            None
        );
        assert!(!f.pin(Some(3)), "the slate cannot be pinned");
        assert!(f.pin(None));
        let s = f
            .decide(
                &[h(true, None), h(true, None), h(false, Some(t0))],
                t0 + 9001 * MS,
            )
            .unwrap();
        assert_eq!(s.to, 0);
    }
}
