//! The USB reset gate: one per process, consulted by every DVB mux runner.
//! A USB reset takes down every frontend of the device, so the runner that
//! resets (step 3 of its adapter's ladder) first asks the runners of the
//! other adapters on that device to close their sources, waits (bounded)
//! until they did, resets, and lifts the hold; they then reopen by their
//! stable names (the adapter numbers may change on re-enumeration).
//!
//! Owns: which adapter numbers each runner has open, and the holds under
//! way. Promises: never blocks a runner — `must_release`, `closed` and
//! `opened` take a mutex for a few operations; only the reset's own
//! helper thread waits (`wait_released`, bounded by its timeout); a hold
//! not lifted in time (a helper thread gone) expires, so no adapter stays
//! held for ever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A reset under way: the adapters of its device, who asked, until when.
#[derive(Debug, Clone)]
struct Hold {
    id: u64,
    adapters: BTreeSet<u32>,
    /// "ter1 (adapter0)": who resets, for the others' log lines.
    by: String,
    /// The device in words ("usb 1-1.4 734c:5980"), for the log.
    device: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    holds: Vec<Hold>,
    /// Adapter number -> runners that have it open (normally one).
    open: BTreeMap<u32, u32>,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct ResetGate {
    state: Mutex<State>,
    changed: Condvar,
}

/// The process's gate.
pub fn gate() -> &'static ResetGate {
    static GATE: OnceLock<ResetGate> = OnceLock::new();
    GATE.get_or_init(ResetGate::default)
}

/// Who holds an adapter, for the log line of the runner that lets it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub by: String,
    pub device: String,
}

impl ResetGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expire(st: &mut State) {
        let now = Instant::now();
        st.holds.retain(|h| h.expires > now);
    }

    /// A runner opened adapter `n`.
    pub fn opened(&self, n: u32) {
        *self.lock().open.entry(n).or_insert(0) += 1;
    }

    /// A runner closed adapter `n` (for any reason).
    pub fn closed(&self, n: u32) {
        let mut st = self.lock();
        if let Some(c) = st.open.get_mut(&n) {
            *c -= 1;
            if *c == 0 {
                st.open.remove(&n);
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Whether adapter `n` is held by a reset (its runner must close it
    /// and not open it until the hold is lifted), and by whom.
    pub fn held(&self, n: u32) -> Option<HeldBy> {
        let mut st = self.lock();
        Self::expire(&mut st);
        st.holds
            .iter()
            .find(|h| h.adapters.contains(&n))
            .map(|h| HeldBy {
                by: h.by.clone(),
                device: h.device.clone(),
            })
    }

    /// Hold `adapters` (every adapter of one USB device) for a reset by
    /// `by`, for at most `limit`. Returns the hold's id.
    pub fn hold(&self, adapters: &[u32], by: &str, device: &str, limit: Duration) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.holds.push(Hold {
            id,
            adapters: adapters.iter().copied().collect(),
            by: by.to_string(),
            device: device.to_string(),
            expires: Instant::now() + limit,
        });
        id
    }

    /// Waits until no runner has any adapter of hold `id` open, at most
    /// `timeout`. Returns those still open (empty: all closed).
    pub fn wait_released(&self, id: u64, timeout: Duration) -> Vec<u32> {
        let end = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            let still: Vec<u32> = match st.holds.iter().find(|h| h.id == id) {
                Some(h) => h
                    .adapters
                    .iter()
                    .copied()
                    .filter(|n| st.open.contains_key(n))
                    .collect(),
                None => return Vec::new(),
            };
            let now = Instant::now();
            if still.is_empty() || now >= end {
                return still;
            }
            st = match self.changed.wait_timeout(st, end - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// The reset is done (or given up): the runners may open again.
    pub fn lift(&self, id: u64) {
        self.lock().holds.retain(|h| h.id != id);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn gate_hold_waits_for_the_other_runners_to_close() {
        let g = Arc::new(ResetGate::default());
        g.opened(3);
        g.opened(4);
        g.opened(9);
        let id = g.hold(
            &[3, 4],
            "ter1 (adapter3)",
            "usb 1-1",
            Duration::from_secs(30),
        );
        // The resetting runner closes its own at once.
        g.closed(3);
        assert_eq!(
            g.held(4),
            Some(HeldBy {
                by: "ter1 (adapter3)".into(),
                device: "usb 1-1".into()
            })
        );
        assert_eq!(g.held(9), None, "another device's adapter is not held");
        // Nobody closes 4: the wait ends at its timeout naming it.
        assert_eq!(g.wait_released(id, Duration::from_millis(30)), [4]);
        // The other runner closes from its own thread: the wait returns.
        let g2 = g.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            g2.closed(4);
        });
        assert_eq!(
            g.wait_released(id, Duration::from_secs(10)),
            Vec::<u32>::new()
        );
        t.join().unwrap();
        g.lift(id);
        assert_eq!(g.held(4), None);
        // Closing what was never opened is harmless.
        g.closed(77);
    }

    #[test]
    fn gate_hold_expires() {
        let g = ResetGate::default();
        let id = g.hold(&[1], "x", "usb", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(g.held(1), None);
        assert!(g.wait_released(id, Duration::from_secs(1)).is_empty());
    }
}
