//! Heartbeats: "my loop is turning", one per thread that must make
//! progress, and the pure verdict the supervisor takes from them.
//!
//! Owns: the registry of heartbeats (name, policy, restart action) and the
//! coarse clock they stamp. Promises: `Heartbeat::beat` is two relaxed
//! loads and one relaxed store, no syscall and no lock, so it can sit in
//! the capture loop; the clock is a shared millisecond counter that the
//! supervisor thread advances (every 100 ms), so a beat never reads the
//! time itself. Dropping a `Heartbeat` unregisters it. `verdict` is a pure
//! function of snapshots and a time, unit tested below.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// What a stall of a thread warrants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The box cannot do its job without this thread (a mux runner, the
    /// HTTP loop): stop feeding the watchdog, the box resets.
    Reboot,
    /// A part that can be started afresh (the card manager, a card thread,
    /// the softcam client): abandon the stuck thread and start a new one.
    Restart,
}

impl Policy {
    pub fn word(self) -> &'static str {
        match self {
            Policy::Reboot => "reboot",
            Policy::Restart => "restart",
        }
    }
}

/// Abandoned threads of one name still stuck (their heartbeat not dropped)
/// beyond which the part is not restarted again: each is a thread leaked.
pub const MAX_ABANDONED: usize = 8;

/// Called once per stall of a restart-policy heartbeat. It must not wait
/// for the stuck thread: it marks it abandoned and starts a fresh one.
pub type RestartAction = Arc<dyn Fn() + Send + Sync>;

/// One heartbeat's shared cell.
struct Cell {
    id: u64,
    /// Coarse clock (ms since the registry's epoch) at the last beat.
    last: AtomicU64,
    /// Fault injection: the next beat blocks while this is set.
    fault: AtomicBool,
}

struct Entry {
    cell: Arc<Cell>,
    name: String,
    policy: Policy,
    restart: Option<RestartAction>,
    /// Its restart action ran: the thread behind it is abandoned; the
    /// entry stays (out of verdicts and /status) until the handle drops.
    retired: bool,
}

#[derive(Default)]
struct Registry {
    entries: Vec<Entry>,
    next_id: u64,
    /// Restarts per heartbeat name: they outlive the abandoned thread.
    restarts: BTreeMap<String, u64>,
}

/// The registry. One per daemon (`Arc`), shared by every thread that beats.
pub struct Heartbeats {
    /// Itself, for the threads bound to one of its heartbeats
    /// (`register_here`).
    me: Weak<Heartbeats>,
    epoch: Instant,
    clock: Arc<AtomicU64>,
    reg: Arc<Mutex<Registry>>,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread's handle: `beat()` once per turn of its loop.
pub struct Heartbeat {
    cell: Arc<Cell>,
    clock: Arc<AtomicU64>,
    reg: Weak<Mutex<Registry>>,
    owner: Weak<Heartbeats>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Heartbeat({})", self.cell.id)
    }
}

impl Heartbeat {
    /// A heartbeat nobody watches (tests, tools, a part started without a
    /// supervisor).
    pub fn detached() -> Heartbeat {
        Heartbeat {
            cell: Arc::new(Cell {
                id: u64::MAX,
                last: AtomicU64::new(0),
                fault: AtomicBool::new(false),
            }),
            clock: Arc::new(AtomicU64::new(0)),
            reg: Weak::new(),
            owner: Weak::new(),
        }
    }

    /// "My loop turned." No syscall, no lock.
    #[inline]
    pub fn beat(&self) {
        if self.cell.fault.load(Ordering::Relaxed) {
            self.stalled_by_fault();
        }
        self.cell
            .last
            .store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// `POST /control/fault?kind=stall`: block here, as if stuck inside the
    /// loop, until `kind=clear` (or the daemon stops and clears it).
    #[cold]
    fn stalled_by_fault(&self) {
        while self.cell.fault.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the supervisor gave up on this thread (restarted the part):
    /// what the thread produces from now on must be dropped.
    pub fn abandoned(&self) -> bool {
        match self.reg.upgrade() {
            Some(r) => lock(&r)
                .entries
                .iter()
                .any(|e| e.cell.id == self.cell.id && e.retired),
            None => false,
        }
    }
}

/// A second handle on a heartbeat's cell for code deep inside a thread's
/// loop that waits on purpose for a bounded time (a USB reset waiting for
/// the device to come back, a reopen): `beat_this_thread()` from there
/// keeps a legitimate wait from looking like a hang. It does not
/// unregister anything when dropped.
#[derive(Clone)]
struct Beater {
    cell: Arc<Cell>,
    clock: Arc<AtomicU64>,
    owner: Weak<Heartbeats>,
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Beater>> = const { std::cell::RefCell::new(None) };
}

impl Heartbeat {
    /// Make this the heartbeat of the calling thread, for
    /// `beat_this_thread` and `register_here`.
    pub fn bind_to_this_thread(&self) {
        let b = Beater {
            cell: self.cell.clone(),
            clock: self.clock.clone(),
            owner: self.owner.clone(),
        };
        CURRENT.with(|c| *c.borrow_mut() = Some(b));
    }
}

/// A new heartbeat in the registry of the calling thread's own (a thread
/// that a supervised thread starts, e.g. a remote source's fetch thread
/// started by its mux runner), or None when the caller is not supervised.
pub fn register_here(name: &str, policy: Policy) -> Option<Heartbeat> {
    let owner = CURRENT.with(|c| c.borrow().as_ref().map(|b| b.owner.clone()))?;
    Some(owner.upgrade()?.register(name, policy))
}

/// Beat the calling thread's heartbeat (`Heartbeat::bind_to_this_thread`),
/// if it has one: for bounded waits deep inside a loop (the ladder's USB
/// reset, a reopen) that would otherwise outlast `stall_after_s`.
pub fn beat_this_thread() {
    CURRENT.with(|c| {
        if let Some(b) = c.borrow().as_ref() {
            if b.cell.fault.load(Ordering::Relaxed) {
                while b.cell.fault.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            b.cell
                .last
                .store(b.clock.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    });
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(r) = self.reg.upgrade() {
            lock(&r).entries.retain(|e| e.cell.id != self.cell.id);
        }
    }
}

/// What the supervisor sees of one heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatSnapshot {
    pub id: u64,
    pub name: String,
    pub policy: Policy,
    /// Clock (ms) at its last beat.
    pub last_ms: u64,
    /// A restart action is registered.
    pub can_restart: bool,
    /// Its restart action ran (the thread is abandoned).
    pub retired: bool,
}

/// The supervisor's decision at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Feed the watchdog (and send WATCHDOG=1): no reboot-policy thread
    /// is stalled.
    pub feed: bool,
    /// Ids of every stalled (not retired) heartbeat.
    pub stalled: Vec<u64>,
    /// Ids of the stalled reboot-policy heartbeats (why `feed` is false).
    pub starving: Vec<u64>,
    /// Ids whose restart action must run now (once per stall: it retires
    /// the entry).
    pub restart: Vec<u64>,
}

/// Pure: which threads are stalled at `now_ms`, whether to feed, which
/// parts to restart. A beat stamped after `now_ms` (clock read raced) is
/// fresh.
pub fn verdict(beats: &[BeatSnapshot], now_ms: u64, stall_after_ms: u64) -> Verdict {
    let mut v = Verdict {
        feed: true,
        ..Verdict::default()
    };
    for b in beats.iter().filter(|b| !b.retired) {
        if now_ms.saturating_sub(b.last_ms) < stall_after_ms {
            continue;
        }
        v.stalled.push(b.id);
        match b.policy {
            Policy::Reboot => {
                v.feed = false;
                v.starving.push(b.id);
            }
            Policy::Restart if b.can_restart => v.restart.push(b.id),
            Policy::Restart => {}
        }
    }
    v
}

impl Heartbeats {
    pub fn new() -> Arc<Heartbeats> {
        Arc::new_cyclic(|me| Heartbeats {
            me: me.clone(),
            epoch: Instant::now(),
            clock: Arc::new(AtomicU64::new(0)),
            reg: Arc::new(Mutex::new(Registry::default())),
        })
    }

    /// A heartbeat named `name` (the contract's names: "http", "mux …",
    /// "cards", "card <reader>", "softcam"), fresh from now.
    pub fn register(&self, name: &str, policy: Policy) -> Heartbeat {
        self.add(name, policy, None)
    }

    /// A restart-policy heartbeat with the action that restarts its part.
    pub fn register_restartable(&self, name: &str, restart: RestartAction) -> Heartbeat {
        self.add(name, Policy::Restart, Some(restart))
    }

    fn add(&self, name: &str, policy: Policy, restart: Option<RestartAction>) -> Heartbeat {
        let now = self.tick();
        let mut r = lock(&self.reg);
        r.next_id += 1;
        let cell = Arc::new(Cell {
            id: r.next_id,
            last: AtomicU64::new(now),
            fault: AtomicBool::new(false),
        });
        r.entries.push(Entry {
            cell: cell.clone(),
            name: name.to_string(),
            policy,
            restart,
            retired: false,
        });
        Heartbeat {
            cell,
            clock: self.clock.clone(),
            reg: Arc::downgrade(&self.reg),
            owner: self.me.clone(),
        }
    }

    /// Advance the coarse clock to now; returns it (ms since the epoch).
    pub fn tick(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.clock.fetch_max(now, Ordering::Relaxed);
        now
    }

    pub fn snapshot(&self) -> Vec<BeatSnapshot> {
        lock(&self.reg)
            .entries
            .iter()
            .map(|e| BeatSnapshot {
                id: e.cell.id,
                name: e.name.clone(),
                policy: e.policy,
                last_ms: e.cell.last.load(Ordering::Relaxed),
                can_restart: e.restart.is_some(),
                retired: e.retired,
            })
            .collect()
    }

    /// Retire entry `id`, count a restart of its name and return its
    /// action (to be called without the registry locked: it registers
    /// the fresh thread's heartbeat). None: nothing to restart. Err: the
    /// part has `MAX_ABANDONED` threads still stuck; another would only
    /// leak one more (bounded: the part stays down, said in words).
    pub fn take_restart(&self, id: u64) -> Result<Option<(String, RestartAction)>, String> {
        let mut r = lock(&self.reg);
        let Some(i) = r.entries.iter().position(|e| e.cell.id == id && !e.retired) else {
            return Ok(None);
        };
        let Some(action) = r.entries[i].restart.clone() else {
            return Ok(None);
        };
        let name = r.entries[i].name.clone();
        let stuck = r
            .entries
            .iter()
            .filter(|e| e.retired && e.name == name)
            .count();
        if stuck >= MAX_ABANDONED {
            return Err(format!(
                "thread '{name}' has {stuck} abandoned threads still stuck: not restarting it again (the part stays down until capbox restarts)"
            ));
        }
        r.entries[i].retired = true;
        *r.restarts.entry(name.clone()).or_insert(0) += 1;
        Ok(Some((name, action)))
    }

    pub fn restarts(&self) -> BTreeMap<String, u64> {
        lock(&self.reg).restarts.clone()
    }

    /// Fault injection: `stall` makes the next beat of every live heartbeat
    /// named `name` block; `clear` releases every one of that name
    /// (abandoned ones too). Err lists the names there are.
    pub fn set_fault(&self, name: &str, stall: bool) -> Result<usize, String> {
        let r = lock(&self.reg);
        let mut n = 0;
        for e in r.entries.iter().filter(|e| e.name == name) {
            if stall && e.retired {
                continue;
            }
            e.cell.fault.store(stall, Ordering::Relaxed);
            n += 1;
        }
        if n > 0 || !stall {
            return Ok(n);
        }
        let mut names: Vec<&str> = r
            .entries
            .iter()
            .filter(|e| !e.retired)
            .map(|e| e.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        Err(format!(
            "no thread '{}'; there are: {}",
            crate::ts::text::clean_name(name),
            names.join(", ")
        ))
    }

    /// Release every injected stall (the daemon is stopping).
    pub fn clear_faults(&self) {
        for e in lock(&self.reg).entries.iter() {
            e.cell.fault.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64, policy: Policy, last_ms: u64, can_restart: bool) -> BeatSnapshot {
        BeatSnapshot {
            id,
            name: format!("t{id}"),
            policy,
            last_ms,
            can_restart,
            retired: false,
        }
    }

    #[test]
    fn all_fresh_feeds() {
        let b = [
            snap(1, Policy::Reboot, 9_000, false),
            snap(2, Policy::Restart, 5_000, true),
        ];
        let v = verdict(&b, 10_000, 10_000);
        assert!(v.feed);
        assert!(v.stalled.is_empty() && v.restart.is_empty());
        assert!(verdict(&[], 10_000, 10_000).feed);
    }

    #[test]
    fn a_stalled_runner_stops_the_feed() {
        let b = [
            snap(1, Policy::Reboot, 0, false),
            snap(2, Policy::Reboot, 19_000, false),
        ];
        let v = verdict(&b, 20_000, 10_000);
        assert!(!v.feed);
        assert_eq!(v.stalled, vec![1]);
        assert_eq!(v.starving, vec![1]);
        assert!(v.restart.is_empty());
        // Exactly at the limit counts as stalled; one ms before does not.
        assert!(!verdict(&b, 10_000, 10_000).feed);
        assert!(verdict(&b, 9_999, 10_000).feed);
    }

    #[test]
    fn a_stalled_card_thread_is_restarted_and_feeding_goes_on() {
        let b = [
            snap(1, Policy::Reboot, 19_500, false),
            snap(2, Policy::Restart, 1_000, true),
            snap(3, Policy::Restart, 1_000, false),
        ];
        let v = verdict(&b, 20_000, 10_000);
        assert!(v.feed);
        assert_eq!(v.stalled, vec![2, 3]);
        assert_eq!(v.restart, vec![2], "no action registered: reported only");
    }

    #[test]
    fn retired_entries_and_future_beats_are_ignored() {
        let mut old = snap(1, Policy::Reboot, 0, true);
        old.retired = true;
        let b = [old, snap(2, Policy::Reboot, 50_000, false)];
        let v = verdict(&b, 20_000, 10_000);
        assert!(v.feed);
        assert!(v.stalled.is_empty());
    }

    #[test]
    fn registry_counts_restarts_once_per_stall_and_unregisters_on_drop() {
        let hb = Heartbeats::new();
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let h = hb.register_restartable(
            "cards",
            Arc::new(move || {
                c.fetch_add(1, Ordering::Relaxed);
            }),
        );
        let r = hb.register("http", Policy::Reboot);
        let snaps = hb.snapshot();
        assert_eq!(snaps.len(), 2);
        let id = snaps.iter().find(|s| s.name == "cards").unwrap().id;
        let (name, action) = hb.take_restart(id).unwrap().unwrap();
        action();
        assert_eq!(name, "cards");
        assert!(hb.take_restart(id).unwrap().is_none(), "once per stall");
        assert!(h.abandoned());
        assert!(!r.abandoned());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(hb.restarts().get("cards"), Some(&1));
        drop(h);
        assert_eq!(hb.snapshot().len(), 1);
        // Restart counts outlive the abandoned thread's entry.
        assert_eq!(hb.restarts().get("cards"), Some(&1));
        drop(r);
        assert!(hb.snapshot().is_empty());
    }

    #[test]
    fn restarts_stop_when_too_many_abandoned_threads_are_still_stuck() {
        let hb = Heartbeats::new();
        let mut stuck = Vec::new();
        for i in 0..=MAX_ABANDONED {
            let h = hb.register_restartable("card R", Arc::new(|| {}));
            let id = hb.snapshot().iter().find(|s| !s.retired).unwrap().id;
            let r = hb.take_restart(id);
            if i < MAX_ABANDONED {
                assert!(r.unwrap().is_some());
            } else {
                let e = r.err().expect("refused");
                assert!(e.contains("8 abandoned threads still stuck"), "{e}");
            }
            stuck.push(h);
        }
        assert_eq!(hb.restarts().get("card R"), Some(&(MAX_ABANDONED as u64)));
        // One of them comes back: room for one more restart.
        stuck.remove(0);
        let id = hb.snapshot().iter().find(|s| !s.retired).unwrap().id;
        assert!(hb.take_restart(id).unwrap().is_some());
    }

    #[test]
    fn fault_names_unknown_threads_and_blocks_the_next_beat() {
        let hb = Heartbeats::new();
        let h = hb.register("mux file a.ts", Policy::Reboot);
        let e = hb.set_fault("nope", true).unwrap_err();
        assert!(
            e.contains("no thread 'nope'") && e.contains("mux file a.ts"),
            "{e}"
        );
        assert_eq!(hb.set_fault("mux file a.ts", true), Ok(1));
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let t = std::thread::spawn(move || {
            h.beat();
            d.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!done.load(Ordering::SeqCst), "the beat must block");
        assert_eq!(hb.set_fault("mux file a.ts", false), Ok(1));
        t.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }

    #[test]
    fn a_bound_thread_beats_from_deep_inside_its_loop() {
        let hb = Heartbeats::new();
        let h = hb.register("mux x", Policy::Reboot);
        let hb2 = hb.clone();
        std::thread::spawn(move || {
            h.bind_to_this_thread();
            std::thread::sleep(Duration::from_millis(30));
            let now = hb2.tick();
            beat_this_thread();
            assert_eq!(hb2.snapshot()[0].last_ms, now);
            let fetch = register_here("remote http://x/", Policy::Restart).unwrap();
            assert_eq!(hb2.snapshot().len(), 2);
            drop(fetch);
        })
        .join()
        .unwrap();
        // A thread with no heartbeat: nothing happens.
        beat_this_thread();
        assert!(register_here("remote http://x/", Policy::Restart).is_none());
    }

    #[test]
    fn beats_stamp_the_coarse_clock() {
        let hb = Heartbeats::new();
        let h = hb.register("http", Policy::Reboot);
        std::thread::sleep(Duration::from_millis(30));
        let now = hb.tick();
        h.beat();
        assert_eq!(hb.snapshot()[0].last_ms, now);
        assert!(Heartbeat::detached().reg.upgrade().is_none());
        Heartbeat::detached().beat();
    }

    /// The cost of a beat (prints, asserts nothing about time):
    /// `cargo test --lib beat_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn beat_cost() {
        let hb = Heartbeats::new();
        let h = hb.register("bench", Policy::Reboot);
        let n = 100_000_000u64;
        let t = Instant::now();
        for _ in 0..n {
            h.beat();
            std::hint::black_box(&h);
        }
        let per = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        println!("beat: {per:.2} ns");
        assert_eq!(hb.snapshot().len(), 1);
    }
}
