//! The last hour, for the status page's sparklines: C/N per adapter and
//! output bitrate per channel, one point every 30 s, 120 points.
//!
//! Owns: one fixed ring per adapter and per channel, and how long each
//! adapter has been (un)locked. Promises: no clock of its own (the caller
//! passes `now`, see `daemon::sample_history`), no growth over time (each
//! ring is a fixed array; names no longer observed are dropped at the
//! next observation, and past `MAX_TRACKS` names new ones are refused and
//! counted), never panics on counters that go backwards (a channel
//! re-created by a reload: that point is a gap).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Points per ring: one hour at `PERIOD`.
pub const POINTS: usize = 120;
/// One point every 30 s.
pub const PERIOD: Duration = Duration::from_secs(30);
/// The "now" bitrate is measured over this window.
pub const NOW_WINDOW: Duration = Duration::from_secs(5);
/// At most this many adapters + channels are tracked; more are counted in
/// `refused_names`.
pub const MAX_TRACKS: usize = 4096;

/// A fixed ring of `POINTS` values, `None` for a gap.
#[derive(Clone)]
pub struct Series {
    vals: [f32; POINTS],
    next: usize,
    len: usize,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            vals: [f32::NAN; POINTS],
            next: 0,
            len: 0,
        }
    }
}

impl Series {
    pub fn push(&mut self, v: Option<f64>) {
        self.vals[self.next] = match v {
            Some(x) if x.is_finite() => x as f32,
            _ => f32::NAN,
        };
        self.next = (self.next + 1) % POINTS;
        self.len = (self.len + 1).min(POINTS);
    }

    /// Oldest first.
    pub fn points(&self) -> Vec<Option<f32>> {
        let start = (self.next + POINTS - self.len) % POINTS;
        (0..self.len)
            .map(|i| self.vals[(start + i) % POINTS])
            .map(|v| (!v.is_nan()).then_some(v))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What the sampler saw of one adapter at one tick.
pub struct AdapterObs<'a> {
    pub name: &'a str,
    pub locked: bool,
    pub cnr_db: Option<f64>,
}

/// What the sampler saw of one channel at one tick: bytes sent to its
/// viewers' ring so far (a counter).
pub struct ChannelObs<'a> {
    pub name: &'a str,
    pub bytes: u64,
}

struct AdapterTrack {
    cnr: Series,
    sum: f64,
    n: u32,
    locked: bool,
    /// When `locked` last changed, or when the adapter was first seen.
    since: Instant,
    /// `since` is the first sight, not a change.
    since_first_seen: bool,
    gen: u64,
}

struct ChannelTrack {
    bitrate: Series,
    /// Counter and time at the start of the current period.
    base: Option<(u64, Instant)>,
    /// Counter and time at the start of the "now" window.
    recent: Option<(u64, Instant)>,
    now_bps: Option<f64>,
    gen: u64,
}

#[derive(Default)]
struct Inner {
    adapters: BTreeMap<String, AdapterTrack>,
    channels: BTreeMap<String, ChannelTrack>,
    last_push: Option<Instant>,
    gen: u64,
    points: u64,
    refused_names: u64,
    counter_resets: u64,
}

/// The rings, shared by the sampler thread and the HTTP thread.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

/// A copy for one page render.
#[derive(Default, Clone)]
pub struct View {
    pub adapters: BTreeMap<String, AdapterView>,
    pub channels: BTreeMap<String, ChannelView>,
    /// Points pushed since the start.
    pub points: u64,
    /// Names refused past `MAX_TRACKS`.
    pub refused_names: u64,
    /// Bitrate points left as a gap because a byte counter went back.
    pub counter_resets: u64,
}

#[derive(Default, Clone)]
pub struct AdapterView {
    /// dB, oldest first, one per `PERIOD`.
    pub cnr: Vec<Option<f32>>,
    pub locked: bool,
    /// How long `locked` has held.
    pub for_s: u64,
    /// `for_s` counts from the first sight (the state never changed).
    pub since_first_seen: bool,
}

#[derive(Default, Clone)]
pub struct ChannelView {
    /// bit/s, oldest first, one per `PERIOD`.
    pub bitrate: Vec<Option<f32>>,
    /// bit/s over the last `NOW_WINDOW`.
    pub now_bps: Option<f64>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// One tick (the sampler calls this about once a second): lock
    /// transitions and C/N are folded in at once, a point is pushed on
    /// every ring when `PERIOD` has passed since the last one. Names not
    /// in this observation are forgotten. Returns whether a point was
    /// pushed.
    pub fn observe(&self, now: Instant, adapters: &[AdapterObs], channels: &[ChannelObs]) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        g.gen += 1;
        let gen = g.gen;
        // Forget the names not observed first, so that they do not count
        // against MAX_TRACKS.
        for a in adapters {
            if let Some(t) = g.adapters.get_mut(a.name) {
                t.gen = gen;
            }
        }
        for c in channels {
            if let Some(t) = g.channels.get_mut(c.name) {
                t.gen = gen;
            }
        }
        g.adapters.retain(|_, t| t.gen == gen);
        g.channels.retain(|_, t| t.gen == gen);
        for a in adapters {
            if !g.adapters.contains_key(a.name) {
                if g.adapters.len() + g.channels.len() >= MAX_TRACKS {
                    g.refused_names += 1;
                    continue;
                }
                g.adapters.insert(
                    a.name.to_string(),
                    AdapterTrack {
                        cnr: Series::default(),
                        sum: 0.0,
                        n: 0,
                        locked: a.locked,
                        since: now,
                        since_first_seen: true,
                        gen,
                    },
                );
            }
            let Some(t) = g.adapters.get_mut(a.name) else {
                continue;
            };
            t.gen = gen;
            if t.locked != a.locked {
                t.locked = a.locked;
                t.since = now;
                t.since_first_seen = false;
            }
            if let Some(c) = a.cnr_db.filter(|c| c.is_finite() && a.locked) {
                t.sum += c;
                t.n += 1;
            }
        }
        for c in channels {
            if !g.channels.contains_key(c.name) {
                if g.adapters.len() + g.channels.len() >= MAX_TRACKS {
                    g.refused_names += 1;
                    continue;
                }
                g.channels.insert(
                    c.name.to_string(),
                    ChannelTrack {
                        bitrate: Series::default(),
                        base: Some((c.bytes, now)),
                        recent: Some((c.bytes, now)),
                        now_bps: None,
                        gen,
                    },
                );
            }
            let Some(t) = g.channels.get_mut(c.name) else {
                continue;
            };
            t.gen = gen;
            match t.recent {
                Some((b, _)) if c.bytes < b => {
                    t.recent = Some((c.bytes, now));
                    t.now_bps = None;
                }
                Some((b, at)) => {
                    let dt = now.saturating_duration_since(at);
                    if dt >= NOW_WINDOW {
                        t.now_bps = Some((c.bytes - b) as f64 * 8.0 / dt.as_secs_f64());
                        t.recent = Some((c.bytes, now));
                    }
                }
                None => t.recent = Some((c.bytes, now)),
            }
        }
        let due = match g.last_push {
            None => {
                g.last_push = Some(now);
                false
            }
            Some(at) => now.saturating_duration_since(at) >= PERIOD,
        };
        if !due {
            return false;
        }
        g.last_push = Some(now);
        g.points += 1;
        for t in g.adapters.values_mut() {
            let mean = (t.n > 0).then(|| t.sum / t.n as f64);
            t.cnr.push(mean);
            t.sum = 0.0;
            t.n = 0;
        }
        let by_name: BTreeMap<&str, u64> = channels.iter().map(|c| (c.name, c.bytes)).collect();
        let mut resets = 0;
        for (name, t) in g.channels.iter_mut() {
            let Some(&bytes) = by_name.get(name.as_str()) else {
                continue;
            };
            let point = match t.base {
                Some((b, at)) if bytes >= b => {
                    let dt = now.saturating_duration_since(at).as_secs_f64();
                    (dt > 0.0).then(|| (bytes - b) as f64 * 8.0 / dt)
                }
                Some(_) => {
                    resets += 1;
                    None
                }
                None => None,
            };
            t.bitrate.push(point);
            t.base = Some((bytes, now));
        }
        g.counter_resets += resets;
        true
    }

    /// A copy of every ring, and lock durations as of `now`.
    pub fn view(&self, now: Instant) -> View {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        View {
            adapters: g
                .adapters
                .iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        AdapterView {
                            cnr: t.cnr.points(),
                            locked: t.locked,
                            for_s: now.saturating_duration_since(t.since).as_secs(),
                            since_first_seen: t.since_first_seen,
                        },
                    )
                })
                .collect(),
            channels: g
                .channels
                .iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        ChannelView {
                            bitrate: t.bitrate.points(),
                            now_bps: t.now_bps,
                        },
                    )
                })
                .collect(),
            points: g.points,
            refused_names: g.refused_names,
            counter_resets: g.counter_resets,
        }
    }

    /// Adapters + channels tracked now (bounded by `MAX_TRACKS`).
    pub fn tracked(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.adapters.len() + g.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str, bytes: u64) -> ChannelObs<'_> {
        ChannelObs { name, bytes }
    }

    #[test]
    fn series_keeps_the_last_points_oldest_first() {
        let mut s = Series::default();
        assert!(s.points().is_empty());
        for i in 0..(POINTS + 7) {
            s.push(if i == POINTS + 3 {
                None
            } else {
                Some(i as f64)
            });
        }
        let p = s.points();
        assert_eq!(p.len(), POINTS);
        assert_eq!(p[0], Some(7.0));
        assert_eq!(p[POINTS - 4], None);
        assert_eq!(p[POINTS - 1], Some((POINTS + 6) as f32));
        s.push(Some(f64::INFINITY));
        assert_eq!(s.points().last(), Some(&None));
    }

    #[test]
    fn a_point_every_period_with_the_mean_bitrate() {
        let h = History::new();
        let t0 = Instant::now();
        // 1 Mbit/s = 125_000 bytes a second.
        let mut pushed = 0;
        for s in 0..=(30 * 3) {
            let now = t0 + Duration::from_secs(s);
            if h.observe(now, &[], &[ch("a", s * 125_000)]) {
                pushed += 1;
            }
        }
        assert_eq!(pushed, 3);
        let v = h.view(t0 + Duration::from_secs(90));
        let a = &v.channels["a"];
        assert_eq!(a.bitrate.len(), 3);
        for p in &a.bitrate {
            assert!((p.unwrap() - 1e6).abs() < 1.0, "{p:?}");
        }
        assert!((a.now_bps.unwrap() - 1e6).abs() < 1.0);
    }

    #[test]
    fn cnr_is_the_mean_while_locked_and_a_gap_without_lock() {
        let h = History::new();
        let t0 = Instant::now();
        for s in 0..=30 {
            let obs = AdapterObs {
                name: "sat1",
                locked: true,
                cnr_db: Some(if s % 2 == 0 { 10.0 } else { 12.0 }),
            };
            h.observe(t0 + Duration::from_secs(s), &[obs], &[]);
        }
        for s in 31..=60 {
            let obs = AdapterObs {
                name: "sat1",
                locked: false,
                cnr_db: Some(3.0),
            };
            h.observe(t0 + Duration::from_secs(s), &[obs], &[]);
        }
        let v = h.view(t0 + Duration::from_secs(240));
        let a = &v.adapters["sat1"];
        assert_eq!(a.cnr.len(), 2);
        // 16 even seconds of 10 dB and 15 odd seconds of 12 dB.
        let m = a.cnr[0].unwrap();
        assert!((m - (16.0 * 10.0 + 15.0 * 12.0) / 31.0).abs() < 1e-4, "{m}");
        assert_eq!(a.cnr[1], None);
        assert!(!a.locked);
        assert_eq!(a.for_s, 240 - 31);
        assert!(!a.since_first_seen);
    }

    #[test]
    fn a_counter_going_back_is_a_gap_not_a_panic() {
        let h = History::new();
        let t0 = Instant::now();
        h.observe(t0, &[], &[ch("a", 10_000_000)]);
        h.observe(t0 + PERIOD, &[], &[ch("a", 5)]);
        h.observe(t0 + PERIOD * 2, &[], &[ch("a", 5 + 30 * 1000)]);
        let v = h.view(t0 + PERIOD * 2);
        assert_eq!(v.channels["a"].bitrate, vec![None, Some(8000.0)]);
        assert_eq!(v.counter_resets, 1);
    }

    #[test]
    fn names_gone_are_forgotten_and_memory_stays_bounded() {
        let h = History::new();
        let t0 = Instant::now();
        // A reload every tick renames every channel: tracked stays at the
        // number observed now.
        for tick in 0..1000u64 {
            let names: Vec<String> = (0..10).map(|i| format!("c{tick}-{i}")).collect();
            let obs: Vec<ChannelObs> = names.iter().map(|n| ch(n, tick)).collect();
            h.observe(t0 + Duration::from_secs(tick), &[], &obs);
            assert_eq!(h.tracked(), 10);
        }
        // Past MAX_TRACKS, names are refused and counted.
        let names: Vec<String> = (0..MAX_TRACKS + 5).map(|i| format!("x{i}")).collect();
        let obs: Vec<ChannelObs> = names.iter().map(|n| ch(n, 0)).collect();
        h.observe(t0 + Duration::from_secs(2000), &[], &obs);
        assert_eq!(h.tracked(), MAX_TRACKS);
        assert_eq!(h.view(t0).refused_names, 5);
    }

    #[test]
    fn lock_duration_counts_from_first_sight_until_a_change() {
        let h = History::new();
        let t0 = Instant::now();
        let obs = |locked| AdapterObs {
            name: "t",
            locked,
            cnr_db: None,
        };
        h.observe(t0, &[obs(false)], &[]);
        let v = h.view(t0 + Duration::from_secs(180));
        assert_eq!(v.adapters["t"].for_s, 180);
        assert!(v.adapters["t"].since_first_seen);
        h.observe(t0 + Duration::from_secs(200), &[obs(true)], &[]);
        let v = h.view(t0 + Duration::from_secs(260));
        assert!(v.adapters["t"].locked);
        assert_eq!(v.adapters["t"].for_s, 60);
    }
}
