//! The card manager: one thread watching pcscd's readers, one thread per
//! inserted card doing its APDUs in order.
//!
//! Owns: the PC/SC contexts (one for watching, one per card), the reader
//! list and each reader's `CardStatus`, and one bounded job queue per card.
//!
//! Promises:
//! - `EcmClient` calls never block on a card (a short mutex, a `try_send`);
//! - every queued ECM's `done` is called exactly once: with words, with the
//!   card's refusal, with a timeout after `ecm_timeout_ms` (by the watchdog
//!   on the manager thread if the card thread is stuck in a transmit), or
//!   with "card removed" when the card goes with the ECM still queued;
//! - each driver operation (ECM, EMM) runs in a PC/SC transaction, so
//!   other programs sharing the reader cannot interleave APDUs;
//! - a card that answers too late or fails a transmit is reset (reconnect
//!   with reset) and re-identified before it gets more ECMs;
//! - pcscd going away marks every reader "pcscd not running"; the manager
//!   re-establishes its context with back-off (100 ms doubling to 2 s) and
//!   picks the readers and cards up again;
//! - readers appearing or vanishing are seen through the `\\?PnP?\Notification`
//!   pseudo-reader, by re-listing after a reader reports unavailable, and
//!   by re-listing every second (pcsc-lite 1.9's PnP events miss USB
//!   readers plugged in, see `watch`).

use super::{driver, Apdu, CardDriver, CardInfo, CardStatus, CwPair, EcmClient, Rapdu, DRIVERS};
use crate::config::CardsConfig;

use super::pcsclite::{self, Card, Context, Error, ReaderState, State, PNP_NOTIFICATION};
use crate::supervisor::{Heartbeat, Heartbeats};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Done = Box<dyn FnOnce(Result<CwPair, String>) + Send>;

enum Job {
    Ecm {
        section: Vec<u8>,
        done: Done,
        queued: Instant,
    },
    Emm {
        section: Vec<u8>,
    },
}

/// The ECM the card thread is waiting on; the watchdog takes `done` when
/// the card is too slow.
struct Inflight {
    started: Instant,
    queued: Instant,
    done: Option<Done>,
}

/// Shared by the manager and one card thread.
struct CardCell {
    generation: u64,
    timeout: Duration,
    inflight: Mutex<Option<Inflight>>,
    /// Driver and identity, once the card answered its driver's `init`.
    bound: Mutex<Option<(Arc<dyn CardDriver>, CardInfo)>>,
    alive: AtomicBool,
    /// The supervisor gave up on this thread (stuck in a transmit): a
    /// fresh one serves the reader; whatever this one returns is dropped.
    abandoned: AtomicBool,
}

struct ReaderSlot {
    status: CardStatus,
    card_present: bool,
    /// The card thread's queue; dropping it ends the thread.
    tx: Option<SyncSender<Job>>,
    cell: Option<Arc<CardCell>>,
    /// No new card thread before this (back-off after a failed one).
    retry_at: Instant,
}

struct Inner {
    readers: Vec<ReaderSlot>,
    pcscd_up: bool,
    pcscd_error: Option<String>,
    generation: u64,
}

struct Shared {
    /// Read when a card thread starts; `reconfigure` restarts them.
    cfg: Mutex<CardsConfig>,
    stop: AtomicBool,
    inner: Mutex<Inner>,
    /// The supervisor's registry: "cards" for the manager thread, "card
    /// <reader>" for each card thread, both restart policy.
    heartbeats: Option<Arc<Heartbeats>>,
    /// The manager thread that counts: a restart bumps it and starts a
    /// fresh thread; an older one ends at its next turn.
    manager_gen: AtomicU64,
    /// The current manager thread (`stop` joins it; an abandoned one is
    /// detached, it may never return).
    manager_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn current(&self, gen: u64) -> bool {
        self.manager_gen.load(Ordering::SeqCst) == gen && !self.stop.load(Ordering::SeqCst)
    }
}

/// Start manager thread `gen` (the first, or a fresh one after the
/// supervisor found the last one stuck).
fn spawn_manager(shared: &Arc<Shared>, gen: u64) {
    let s = shared.clone();
    match std::thread::Builder::new()
        .name("cards".into())
        .spawn(move || run(s, gen))
    {
        Ok(t) => *lock(&shared.manager_thread) = Some(t),
        Err(e) => log::error!("cards: cannot start the card manager thread: {e}"),
    }
}

/// The supervisor's restart of the manager thread: abandon the stuck one
/// (it cannot be killed; it ends when it comes back), start a fresh one.
fn restart_manager(weak: &Weak<Shared>) {
    let Some(shared) = weak.upgrade() else { return };
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    let gen = shared.manager_gen.fetch_add(1, Ordering::SeqCst) + 1;
    log::warn!("cards: the card manager thread is stuck; abandoned, starting a fresh one");
    spawn_manager(&shared, gen);
}

/// The supervisor's restart of a card thread stuck in a PC/SC call: its
/// reader gets a fresh card thread at the manager's next turn.
fn abandon_card(weak: &Weak<Shared>, reader: &str, generation: u64) {
    let Some(shared) = weak.upgrade() else { return };
    let mut inner = lock(&shared.inner);
    let Some(r) = inner.readers.iter_mut().find(|r| r.status.reader == reader) else {
        return;
    };
    let Some(cell) = r.cell.as_ref().filter(|c| c.generation == generation) else {
        return;
    };
    cell.abandoned.store(true, Ordering::SeqCst);
    log::warn!(
        "cards: '{reader}': card thread stuck in a PC/SC call; abandoned, starting a fresh one"
    );
    r.tx = None;
    r.cell = None;
    r.retry_at = Instant::now();
    r.status.state = "card thread stuck: restarting".into();
    r.status.last_error = Some("card thread stuck in a PC/SC call (supervisor restart)".into());
}

/// Owner of the card threads. See the module comment.
pub struct CardManager {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking card thread must not take the others down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

const PCSCD_DOWN: &str = "pcscd not running";
/// A card thread's end after the supervisor abandoned it.
const ABANDONED: &str = "abandoned by the supervisor";
/// A card thread's end when the manager let go of it (card out, pcscd
/// gone, new config): not an error of the card.
const RELEASED: &str = "card released";
/// How long `stop` waits for the card threads to let go of their cards.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// How often the reader list is asked for even without a PnP event.
const RELIST_EVERY: Duration = Duration::from_secs(1);
/// How often a missing libpcsclite is looked for again.
const LIBRARY_RETRY: Duration = Duration::from_secs(5);

/// Whether this build's card manager can run here: Err says what to
/// install (libpcsclite.so.1 is loaded at run time).
pub fn available() -> Result<(), String> {
    pcsclite::library().map(|_| ())
}

impl CardManager {
    pub fn start(cfg: CardsConfig) -> CardManager {
        Self::start_supervised(cfg, None)
    }

    /// As `start`, with heartbeats in the supervisor's registry: a stuck
    /// manager or card thread is abandoned and started afresh.
    pub fn start_supervised(cfg: CardsConfig, heartbeats: Option<Arc<Heartbeats>>) -> CardManager {
        let shared = Arc::new(Shared {
            cfg: Mutex::new(cfg),
            stop: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                readers: Vec::new(),
                pcscd_up: false,
                pcscd_error: None,
                generation: 0,
            }),
            heartbeats,
            manager_gen: AtomicU64::new(0),
            manager_thread: Mutex::new(None),
        });
        spawn_manager(&shared, 0);
        CardManager { shared }
    }

    pub fn client(&self) -> Arc<dyn EcmClient> {
        Arc::new(Client(self.shared.clone()))
    }

    pub fn status(&self) -> Vec<CardStatus> {
        let inner = lock(&self.shared.inner);
        if !inner.pcscd_up && inner.readers.is_empty() {
            return vec![CardStatus {
                state: PCSCD_DOWN.into(),
                last_error: inner.pcscd_error.clone(),
                ..Default::default()
            }];
        }
        inner.readers.iter().map(|r| r.status.clone()).collect()
    }

    /// A new `[cards]` config (SIGHUP): applied by restarting the card
    /// threads (their queued ECMs fail with "card removed"); the manager,
    /// its counters and the `EcmClient`s handed out stay.
    pub fn reconfigure(&self, cfg: CardsConfig) {
        {
            let mut c = lock(&self.shared.cfg);
            if *c == cfg {
                return;
            }
            *c = cfg;
        }
        let mut inner = lock(&self.shared.inner);
        for r in inner.readers.iter_mut().filter(|r| r.card_present) {
            r.tx = None;
            r.cell = None;
            r.retry_at = Instant::now();
            r.status.state = "starting".into();
        }
    }

    /// Stops the manager; card threads end after their current APDU.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let t = lock(&self.shared.manager_thread).take();
        if let Some(t) = t {
            let _ = t.join();
        }
        let cells: Vec<Arc<CardCell>> = {
            let mut inner = lock(&self.shared.inner);
            for r in inner.readers.iter_mut() {
                r.tx = None;
            }
            inner
                .readers
                .iter()
                .filter_map(|r| r.cell.clone())
                .collect()
        };
        // With their queues closed, card threads end within one 200 ms poll
        // (or after the APDU in flight). Wait for them: a process that exits
        // while one still holds its PC/SC context runs libpcsclite's exit
        // handlers under it and can crash on the way out (seen once in the
        // CCID rig under load).
        let until = Instant::now() + STOP_WAIT;
        while cells.iter().any(|c| c.alive.load(Ordering::SeqCst)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for CardManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Client(Arc<Shared>);

impl Client {
    /// The ready card for `caid` (first reader in pcscd's order), or why
    /// there is none.
    fn pick(inner: &mut Inner, caid: u16) -> Result<&mut ReaderSlot, String> {
        let has = |r: &ReaderSlot| {
            r.cell
                .as_ref()
                .and_then(|c| lock(&c.bound).as_ref().map(|b| b.1.caid))
                == Some(caid)
        };
        let ready = inner
            .readers
            .iter()
            .position(|r| r.tx.is_some() && r.status.state == "ready" && has(r));
        if let Some(i) = ready {
            return Ok(&mut inner.readers[i]);
        }
        if let Some(r) = inner.readers.iter().find(|r| has(r)) {
            return Err(format!(
                "card for CA system {caid:#06X} in '{}' is {}",
                r.status.reader, r.status.state
            ));
        }
        if !inner.pcscd_up {
            return Err(format!("no card for CA system {caid:#06X}: {PCSCD_DOWN}"));
        }
        Err(format!("no card for CA system {caid:#06X}"))
    }
}

impl EcmClient for Client {
    fn ecm(&self, caid: u16, section: Vec<u8>, done: Done) -> Result<(), String> {
        let mut inner = lock(&self.0.inner);
        let slot = Client::pick(&mut inner, caid)?;
        let Some(tx) = &slot.tx else {
            return Err("card thread gone".into());
        };
        let job = Job::Ecm {
            section,
            done,
            queued: Instant::now(),
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                slot.status.ecms_dropped += 1;
                Err(format!("card in '{}': queue full", slot.status.reader))
            }
            Err(TrySendError::Disconnected(_)) => {
                slot.status.ecms_dropped += 1;
                Err(format!("card in '{}' removed", slot.status.reader))
            }
        }
    }

    fn emm(&self, caid: u16, section: Vec<u8>) -> Result<bool, String> {
        let mut inner = lock(&self.0.inner);
        let slot = Client::pick(&mut inner, caid)?;
        let wanted = slot
            .cell
            .as_ref()
            .and_then(|c| {
                lock(&c.bound)
                    .as_ref()
                    .map(|(d, info)| d.emm_wanted(info, &section))
            })
            .unwrap_or(false);
        if !wanted {
            slot.status.emms_filtered += 1;
            return Ok(false);
        }
        let Some(tx) = &slot.tx else {
            return Err("card thread gone".into());
        };
        match tx.try_send(Job::Emm { section }) {
            Ok(()) => Ok(true),
            Err(_) => {
                slot.status.emm_errors += 1;
                Err(format!("card in '{}': queue full", slot.status.reader))
            }
        }
    }
}

impl Shared {
    /// Update a reader's status from card thread `generation` (state
    /// changes from an old card thread are ignored; counters count).
    fn update(&self, reader: &str, generation: u64, f: impl FnOnce(&mut CardStatus, bool)) {
        let mut inner = lock(&self.inner);
        if let Some(r) = inner.readers.iter_mut().find(|r| r.status.reader == reader) {
            let current = r.cell.as_ref().is_some_and(|c| c.generation == generation);
            f(&mut r.status, current);
        }
    }

    fn set_state(&self, reader: &str, generation: u64, state: String) {
        self.update(reader, generation, |st, current| {
            if current {
                st.state = state;
            }
        });
    }
}

fn context_lost(e: Error) -> bool {
    matches!(
        e,
        Error::NO_SERVICE | Error::SERVICE_STOPPED | Error::INVALID_HANDLE | Error::COMM_ERROR
    )
}

/// The manager thread `gen`.
fn run(shared: Arc<Shared>, gen: u64) {
    let hb = match &shared.heartbeats {
        Some(h) => {
            let weak = Arc::downgrade(&shared);
            h.register_restartable("cards", Arc::new(move || restart_manager(&weak)))
        }
        None => Heartbeat::detached(),
    };
    let mut backoff = Duration::from_millis(100);
    let mut told_install = false;
    while shared.current(gen) {
        hb.beat();
        // Loaded at run time (see pcsclite.rs): a box without it runs the
        // rest of capbox, and installing the package needs no restart.
        let lib = match pcsclite::library() {
            Ok(l) => l,
            Err(why) => {
                if !told_install {
                    log::error!("cards: {why}");
                    told_install = true;
                }
                pcscd_down(&shared, why);
                sleep_unless_stopped(&shared, LIBRARY_RETRY, &hb);
                continue;
            }
        };
        let ctx = match Context::establish(lib) {
            Ok(c) => c,
            Err(e) => {
                if !shared.current(gen) {
                    break;
                }
                pcscd_down(&shared, format!("cannot reach pcscd: {e}"));
                sleep_unless_stopped(&shared, backoff, &hb);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if !shared.current(gen) {
            break;
        }
        {
            let mut inner = lock(&shared.inner);
            if !inner.pcscd_up {
                log::info!("cards: connected to pcscd");
            }
            inner.pcscd_up = true;
            inner.pcscd_error = None;
        }
        if let Err(e) = watch(&shared, &ctx, gen, &hb) {
            if !shared.current(gen) {
                break;
            }
            pcscd_down(&shared, e);
            sleep_unless_stopped(&shared, backoff, &hb);
        }
    }
    if !shared.stop.load(Ordering::SeqCst) {
        // Abandoned: the fresh manager thread owns the readers now.
        return;
    }
    // Stopping: end the card threads.
    let mut inner = lock(&shared.inner);
    for r in inner.readers.iter_mut() {
        r.tx = None;
    }
}

fn sleep_unless_stopped(shared: &Shared, d: Duration, hb: &Heartbeat) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
        hb.beat();
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

/// The card is gone: its identity goes from the status, its counters stay.
fn forget_card(st: &mut CardStatus) {
    st.atr = None;
    st.caid = None;
    st.driver = None;
    st.address = None;
    st.detail.clear();
}

fn pcscd_down(shared: &Shared, why: String) {
    let mut inner = lock(&shared.inner);
    if inner.pcscd_up {
        log::warn!("cards: {why}; retrying");
    }
    inner.pcscd_up = false;
    inner.pcscd_error = Some(why.clone());
    for r in inner.readers.iter_mut() {
        r.tx = None;
        r.cell = None;
        r.card_present = false;
        forget_card(&mut r.status);
        r.status.state = PCSCD_DOWN.into();
        r.status.last_error = Some(why.clone());
    }
}

/// Watch readers on `ctx` until stop (Ok) or the context fails (Err).
fn watch(shared: &Arc<Shared>, ctx: &Context, gen: u64, hb: &Heartbeat) -> Result<(), String> {
    let mut states: Vec<ReaderState> = Vec::new();
    relist(shared, ctx, &mut states)?;
    let mut listed = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        hb.beat();
        if !shared.current(gen) {
            // Abandoned while stuck: the fresh thread watches now.
            return Ok(());
        }
        watchdog(shared);
        respawn(shared);
        // The PnP pseudo-reader alone misses readers plugged in: pcsc-lite
        // before 2.3 (Debian 12's 1.9.9) reports one only if its name
        // appears and its driver finishes starting within the same
        // SCardGetStatusChange call, and a USB reader takes longer than
        // the 100 ms calls the watchdog needs (hw-tests/run-ccid-vm.sh).
        // Listing is one round trip to pcscd.
        if listed.elapsed() >= RELIST_EVERY {
            relist(shared, ctx, &mut states)?;
            listed = Instant::now();
        }
        match ctx.get_status_change(Duration::from_millis(100), &mut states) {
            Ok(()) => {}
            Err(Error::TIMEOUT) => continue,
            Err(e) if context_lost(e) => return Err(format!("pcscd: {e}")),
            Err(e) => {
                // Anything else: a reader vanished under us, most likely.
                log::debug!("cards: SCardGetStatusChange: {e}; listing readers again");
                std::thread::sleep(Duration::from_millis(20));
                relist(shared, ctx, &mut states)?;
                continue;
            }
        }
        let mut again = false;
        for rs in states.iter_mut() {
            let ev = rs.event_state();
            if !ev.contains(State::CHANGED) {
                continue;
            }
            if rs.name() == PNP_NOTIFICATION
                || ev.intersects(State::UNAVAILABLE | State::UNKNOWN | State::IGNORE)
            {
                // A reader came or went.
                again = true;
            } else {
                let name = rs.name().to_string_lossy().into_owned();
                let present = ev.contains(State::PRESENT) && !ev.contains(State::MUTE);
                reader_event(shared, &name, present, ev, rs.atr());
            }
            rs.sync_current_state();
        }
        if again {
            relist(shared, ctx, &mut states)?;
        }
    }
    Ok(())
}

/// Bring the reader list (and `states`) in line with pcscd's.
fn relist(
    shared: &Arc<Shared>,
    ctx: &Context,
    states: &mut Vec<ReaderState>,
) -> Result<(), String> {
    let names: Vec<CString> = match ctx.list_readers() {
        Ok(n) => n,
        Err(Error::NO_READERS_AVAILABLE) => Vec::new(),
        Err(e) if context_lost(e) => return Err(format!("pcscd: {e}")),
        Err(e) => {
            log::warn!("cards: listing readers: {e}");
            Vec::new()
        }
    };
    // The PnP pseudo-reader keeps its state (pcscd counts readers in its
    // high word): a fresh one could report a change at once, for ever.
    states
        .retain(|s| s.name() == PNP_NOTIFICATION || names.iter().any(|n| n.as_c_str() == s.name()));
    for n in &names {
        if !states.iter().any(|s| s.name() == n.as_c_str()) {
            states.push(ReaderState::new(n.clone(), State::UNAWARE));
        }
    }
    if !states.iter().any(|s| s.name() == PNP_NOTIFICATION) {
        states.push(ReaderState::new(PNP_NOTIFICATION, State::UNAWARE));
    }
    let mut inner = lock(&shared.inner);
    let strs: Vec<String> = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    inner.readers.retain(|r| {
        let keep = strs.contains(&r.status.reader);
        if !keep {
            log::info!("cards: reader '{}' gone", r.status.reader);
        }
        keep
    });
    for n in strs {
        if !inner.readers.iter().any(|r| r.status.reader == n) {
            log::info!("cards: reader '{n}'");
            inner.readers.push(ReaderSlot {
                status: CardStatus {
                    reader: n,
                    state: "no card".into(),
                    ..Default::default()
                },
                card_present: false,
                tx: None,
                cell: None,
                retry_at: Instant::now(),
            });
        }
    }
    Ok(())
}

fn reader_event(shared: &Arc<Shared>, name: &str, present: bool, ev: State, atr: &[u8]) {
    let mut inner = lock(&shared.inner);
    let Some(r) = inner.readers.iter_mut().find(|r| r.status.reader == name) else {
        return;
    };
    if present && !r.card_present {
        log::info!("cards: card in '{name}', ATR {}", super::hex(atr));
        r.card_present = true;
        r.status.insertions += 1;
        r.status.atr = Some(super::hex(atr));
        r.status.state = "starting".into();
        r.retry_at = Instant::now();
    } else if !present && (r.card_present || r.tx.is_some()) {
        log::info!("cards: card out of '{name}'");
        if r.card_present {
            r.status.removals += 1;
        }
        r.card_present = false;
        r.tx = None;
        r.cell = None;
        forget_card(&mut r.status);
        r.status.state = if ev.contains(State::MUTE) {
            "card mute (no ATR)".into()
        } else {
            "no card".into()
        };
    } else if !present {
        r.status.state = if ev.contains(State::MUTE) {
            "card mute (no ATR)".into()
        } else {
            "no card".into()
        };
    }
}

/// Start a card thread for every present card that has none (or whose
/// thread ended).
fn respawn(shared: &Arc<Shared>) {
    let inner = lock(&shared.inner);
    let now = Instant::now();
    let mut starts = Vec::new();
    for i in 0..inner.readers.len() {
        let r = &inner.readers[i];
        let dead = r
            .cell
            .as_ref()
            .is_none_or(|c| !c.alive.load(Ordering::SeqCst));
        if r.card_present && dead && now >= r.retry_at {
            starts.push(i);
        }
    }
    if starts.is_empty() {
        return;
    }
    // Lock order everywhere: cfg before inner.
    drop(inner);
    let cfg = lock(&shared.cfg).clone();
    let mut inner = lock(&shared.inner);
    for i in starts {
        if i >= inner.readers.len() {
            continue;
        }
        inner.generation += 1;
        let generation = inner.generation;
        let r = &mut inner.readers[i];
        let entry = cfg
            .cards
            .iter()
            .find(|c| r.status.reader.contains(&c.reader))
            .cloned();
        let timeout = Duration::from_millis(
            entry
                .as_ref()
                .and_then(|e| e.ecm_timeout_ms)
                .unwrap_or(cfg.ecm_timeout_ms),
        );
        let cell = Arc::new(CardCell {
            generation,
            timeout,
            inflight: Mutex::new(None),
            bound: Mutex::new(None),
            alive: AtomicBool::new(true),
            abandoned: AtomicBool::new(false),
        });
        let (tx, rx) = sync_channel(cfg.queue_depth.max(1));
        r.tx = Some(tx);
        r.cell = Some(cell.clone());
        // A card thread that ends while its card is still in (reset failed)
        // is started again, but not in a tight loop.
        r.retry_at = now + Duration::from_secs(1);
        r.status.state = "starting".into();
        let reader = r.status.reader.clone();
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("card{generation}"))
            .spawn(move || card_thread(s, reader, cell, rx, entry));
        if let Err(e) = spawned {
            log::error!("cards: cannot start a card thread: {e}");
            r.tx = None;
            r.cell = None;
        }
    }
}

/// Answer ECMs the card is too slow for, and mark the card not answering;
/// the card thread resets the card when its transmit comes back.
fn watchdog(shared: &Shared) {
    let cells: Vec<(String, Arc<CardCell>)> = lock(&shared.inner)
        .readers
        .iter()
        .filter_map(|r| r.cell.clone().map(|c| (r.status.reader.clone(), c)))
        .collect();
    for (reader, cell) in cells {
        let late = {
            let mut inf = lock(&cell.inflight);
            match inf.as_mut() {
                Some(i) if i.done.is_some() && i.started.elapsed() > cell.timeout => i.done.take(),
                _ => None,
            }
        };
        if let Some(done) = late {
            let why = format!(
                "card not answering: no answer to an ECM in {} ms",
                cell.timeout.as_millis()
            );
            log::warn!("cards: '{reader}': {why}");
            shared.update(&reader, cell.generation, |st, current| {
                st.ecm_errors += 1;
                st.ecm_timeouts += 1;
                st.last_error = Some(why.clone());
                if current {
                    st.state = why.clone();
                }
            });
            done(Err(why));
        }
    }
}

/// PC/SC transmit, remembering the transport error for the card thread.
struct PcscApdu<'a> {
    card: &'a Card,
    error: Option<Error>,
    buf: Vec<u8>,
}

impl Apdu for PcscApdu<'_> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Rapdu, String> {
        match self.card.transmit(capdu, &mut self.buf) {
            Ok(r) if r.len() >= 2 => {
                let n = r.len() - 2;
                Ok(Rapdu {
                    data: r[..n].to_vec(),
                    sw: u16::from_be_bytes([r[n], r[n + 1]]),
                })
            }
            Ok(r) => {
                // vpcd answers nothing when the card goes mid-APDU; a real
                // reader's driver may too. Treat it as a failed transmit:
                // the card is reset (or found gone).
                self.error = Some(Error::NOT_TRANSACTED);
                Err(format!("answer of {} bytes without a status word", r.len()))
            }
            Err(e) => {
                self.error = Some(e);
                Err(format!("transmit: {e}"))
            }
        }
    }
}

/// One driver operation inside a PC/SC transaction, so another program
/// using the card (`capbox cards --local`, pcsc_scan, a softcam sharing the
/// reader) cannot slip its APDUs between a driver's. Returns the result and
/// the transport error, if any.
fn exchange<T>(
    card: &mut Card,
    f: impl FnOnce(&mut dyn Apdu) -> Result<T, String>,
) -> (Result<T, String>, Option<Error>) {
    match card.transaction() {
        Ok(tx) => {
            let mut apdu = PcscApdu {
                card: &tx,
                error: None,
                buf: vec![0; 512],
            };
            let r = f(&mut apdu);
            (r, apdu.error)
        }
        Err(e) => (Err(format!("cannot lock the card: {e}")), Some(e)),
    }
}

/// Errors after which the card (or reader, or pcscd) is gone: the thread
/// ends and the manager's reader events decide what next.
fn card_gone(e: Error) -> bool {
    context_lost(e)
        || matches!(
            e,
            Error::REMOVED_CARD
                | Error::NO_SMARTCARD
                | Error::READER_UNAVAILABLE
                | Error::UNKNOWN_READER
                | Error::NO_READERS_AVAILABLE
        )
}

/// Find the driver for the card: the configured one, else every driver
/// whose ATR check passes, first to answer `init` wins.
fn bind(
    apdu: &mut PcscApdu,
    atr: &[u8],
    entry: &Option<crate::config::CardConfig>,
) -> Result<(Arc<dyn CardDriver>, CardInfo), String> {
    let candidates: Vec<Arc<dyn CardDriver>> = match entry {
        Some(e) => driver(&e.driver).into_iter().collect(),
        None => DRIVERS
            .iter()
            .filter_map(|n| driver(n))
            .filter(|d| d.matches_atr(atr))
            .collect(),
    };
    let mut why = "no driver knows this ATR".to_string();
    for d in candidates {
        match d.init(apdu) {
            Ok(mut info) => {
                if let Some(c) = entry.as_ref().and_then(|e| e.caid) {
                    info.caid = c;
                }
                return Ok((d, info));
            }
            Err(e) => why = format!("{}: {e}", d.name()),
        }
        if apdu.error.is_some_and(card_gone) {
            break;
        }
    }
    Err(why)
}

fn card_thread(
    shared: Arc<Shared>,
    reader: String,
    cell: Arc<CardCell>,
    rx: Receiver<Job>,
    entry: Option<crate::config::CardConfig>,
) {
    let g = cell.generation;
    let hb = match &shared.heartbeats {
        Some(h) => {
            let weak = Arc::downgrade(&shared);
            let r = reader.clone();
            h.register_restartable(
                &format!("card {reader}"),
                Arc::new(move || abandon_card(&weak, &r, g)),
            )
        }
        None => Heartbeat::detached(),
    };
    let why = card_loop(&shared, &reader, &cell, &rx, &entry, &hb);
    drop(hb);
    // Whatever is still queued will not be answered by this card.
    *lock(&cell.bound) = None;
    let mut dropped = 0;
    while let Ok(job) = rx.try_recv() {
        if let Job::Ecm { done, .. } = job {
            dropped += 1;
            done(Err(format!("card in '{reader}' gone ({why})")));
        }
    }
    shared.update(&reader, g, |st, current| {
        st.ecms_dropped += dropped;
        if current && st.state != "no card" && !st.state.starts_with(PCSCD_DOWN) {
            st.state = format!("card error: {why}");
        }
        if why != RELEASED && why != "stopping" && why != ABANDONED {
            st.last_error = Some(why.clone());
        }
    });
    cell.alive.store(false, Ordering::SeqCst);
}

/// The card thread's life; returns why it ended.
fn card_loop(
    shared: &Shared,
    reader: &str,
    cell: &CardCell,
    rx: &Receiver<Job>,
    entry: &Option<crate::config::CardConfig>,
    hb: &Heartbeat,
) -> String {
    let g = cell.generation;
    let ctx = match pcsclite::library().map(Context::establish) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return format!("cannot reach pcscd: {e}"),
        Err(why) => return why,
    };
    let Ok(cname) = CString::new(reader) else {
        return "reader name with a NUL byte".into();
    };
    let mut card = match ctx.connect(&cname) {
        Ok(c) => c,
        Err(e) => return format!("cannot connect to the card: {e}"),
    };
    let atr = card.atr().unwrap_or_default();
    let mut bound = match bind(
        &mut PcscApdu {
            card: &card,
            error: None,
            buf: vec![0; 512],
        },
        &atr,
        entry,
    ) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("cards: '{reader}': unknown card: {e}");
            shared.set_state(reader, g, format!("unknown card: {e}"));
            // Keep the card (nothing to send it) until it is pulled.
            loop {
                hb.beat();
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Err(RecvTimeoutError::Disconnected) => return RELEASED.into(),
                    _ if shared.stop.load(Ordering::SeqCst) => return "stopping".into(),
                    _ => {}
                }
            }
        }
    };
    publish(shared, reader, cell, &atr, &bound);
    loop {
        hb.beat();
        if cell.abandoned.load(Ordering::SeqCst) {
            return ABANDONED.into();
        }
        let job = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) if shared.stop.load(Ordering::SeqCst) => {
                return "stopping".into()
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return RELEASED.into(),
        };
        let mut hung = false;
        let error;
        match job {
            Job::Ecm {
                section,
                done,
                queued,
            } => {
                if queued.elapsed() > cell.timeout {
                    // Waited behind a slow card: too late to be of use.
                    shared.update(reader, g, |st, _| st.ecms_dropped += 1);
                    done(Err(format!(
                        "expired in the queue of '{reader}' after {} ms",
                        cell.timeout.as_millis()
                    )));
                    continue;
                }
                *lock(&cell.inflight) = Some(Inflight {
                    started: Instant::now(),
                    queued,
                    done: Some(done),
                });
                let (r, e) = exchange(&mut card, |a| bound.0.ecm(a, &bound.1, &section));
                error = e;
                let inf = lock(&cell.inflight).take();
                if cell.abandoned.load(Ordering::SeqCst) {
                    // Came back after the supervisor gave up on it: the
                    // fresh thread owns the reader; this answer is dropped.
                    if let Some(done) = inf.and_then(|i| i.done) {
                        done(Err(format!("card thread of '{reader}' was abandoned")));
                    }
                    return ABANDONED.into();
                }
                match inf.and_then(|i| i.done.map(|d| (d, i.queued))) {
                    // The watchdog answered already: the card is hung.
                    None => hung = true,
                    Some((done, queued)) => match r {
                        Ok(cw) => {
                            let rtt = queued.elapsed().as_secs_f64() * 1000.0;
                            shared.update(reader, g, |st, _| {
                                st.ecms_ok += 1;
                                st.last_ecm_rtt_ms = Some(rtt);
                                st.last_ecm_unix = Some(unix_now());
                            });
                            done(Ok(cw));
                        }
                        Err(e) => {
                            shared.update(reader, g, |st, _| {
                                st.ecm_errors += 1;
                                st.last_error = Some(e.clone());
                            });
                            done(Err(e));
                        }
                    },
                }
            }
            Job::Emm { section } => {
                let (r, e) = exchange(&mut card, |a| bound.0.emm(a, &bound.1, &section));
                error = e;
                shared.update(reader, g, |st, _| match r {
                    Ok(()) => st.emms += 1,
                    Err(e) => {
                        st.emm_errors += 1;
                        st.last_error = Some(e);
                    }
                });
            }
        }
        match error {
            Some(e) if card_gone(e) => return format!("{e}"),
            Some(_) => hung = true,
            None => {}
        }
        if hung {
            log::warn!("cards: '{reader}': card stopped answering; resetting it");
            shared.set_state(reader, g, "card not answering: resetting".into());
            // A card that failed a transmit may have been pulled: pcscd
            // notices within about 0.4 s. Resetting a card that is gone
            // leaves pcscd 1.9 reporting the reader empty for good (it
            // never sees the next insertion), so look first.
            if let Some(why) = gone_within(&card, Duration::from_secs(1)) {
                return why;
            }
            if let Err(e) = card.reconnect(true) {
                return format!("reset failed: {e}");
            }
            shared.update(reader, g, |st, _| st.resets += 1);
            let atr = card.atr().unwrap_or_default();
            let mut apdu = PcscApdu {
                card: &card,
                error: None,
                buf: vec![0; 512],
            };
            match bind(&mut apdu, &atr, entry) {
                Ok(b) => bound = b,
                Err(e) => return format!("after reset: {e}"),
            }
            publish(shared, reader, cell, &atr, &bound);
        }
    }
}

/// Watch the card for `d`: Some(why) if pcscd says it is gone.
fn gone_within(card: &Card, d: Duration) -> Option<String> {
    let until = Instant::now() + d;
    loop {
        match card.atr() {
            Err(e) if card_gone(e) => return Some(format!("{e}")),
            Err(_) | Ok(_) => {}
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The card is ready: status and the binding the client reads.
fn publish(
    shared: &Shared,
    reader: &str,
    cell: &CardCell,
    atr: &[u8],
    bound: &(Arc<dyn CardDriver>, CardInfo),
) {
    let (d, info) = bound;
    log::info!(
        "cards: '{reader}': {} card, CA system {:#06X}, ready",
        d.name(),
        info.caid
    );
    *lock(&cell.bound) = Some((d.clone(), info.clone()));
    shared.update(reader, cell.generation, |st, current| {
        if current {
            st.state = "ready".into();
            st.atr = Some(super::hex(atr));
            st.caid = Some(info.caid);
            st.driver = Some(d.name().into());
            st.address = info.address.map(|a| format!("{a:08X}"));
            st.detail = info.detail.clone();
        }
    });
}
