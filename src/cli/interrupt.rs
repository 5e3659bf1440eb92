//! Ctrl-C for the live console commands (`capbox signal`, `capbox logs
//! -f`): the first SIGINT (or SIGTERM, SIGHUP: the serial line hung up)
//! ends their loop between two lines, so the last line is whole and a
//! summary can follow; a second one ends the process at once (a request
//! hanging on a dead daemon). No signal handler and no `unsafe`: the
//! signals are blocked and one thread waits for them (`sigwait`), as
//! `capbox serve` does.

use nix::sys::signal::{SigSet, Signal};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Set once the first signal came.
#[derive(Clone)]
pub struct Interrupt {
    inner: Arc<(Mutex<Option<Signal>>, Condvar)>,
}

impl Interrupt {
    /// Block SIGINT, SIGTERM and SIGHUP in this thread (and the threads it
    /// starts afterwards) and wait for them in a thread of their own. Call
    /// before starting other threads.
    pub fn catch() -> Result<Interrupt, String> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        set.thread_block()
            .map_err(|e| format!("cannot block SIGINT to stop cleanly: {e}"))?;
        let me = Interrupt {
            inner: Arc::new((Mutex::new(None), Condvar::new())),
        };
        let waiter = me.clone();
        std::thread::Builder::new()
            .name("interrupt".into())
            .spawn(move || loop {
                let Ok(sig) = set.wait() else { return };
                let (m, cv) = &*waiter.inner;
                let mut got = m.lock().unwrap_or_else(|p| p.into_inner());
                if got.is_some() {
                    // The second one: the loop did not end; do not make
                    // the technician reach for another terminal.
                    std::process::exit(130);
                }
                *got = Some(sig);
                cv.notify_all();
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(me)
    }

    /// Wait up to `d`; true when a signal came (before or during the wait).
    pub fn wait(&self, d: Duration) -> bool {
        let (m, cv) = &*self.inner;
        let until = Instant::now() + d;
        let mut got = m.lock().unwrap_or_else(|p| p.into_inner());
        while got.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            got = cv
                .wait_timeout(got, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Whether a signal came.
    pub fn came(&self) -> bool {
        self.wait(Duration::ZERO)
    }
}
