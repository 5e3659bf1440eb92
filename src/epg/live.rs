//! The guide in the running daemon: the one `Store` every mux runner
//! writes its EIT into and the HTTP server reads, with what each input's
//! EIT collection counted (for /status and /metrics).
//!
//! Owns the lock discipline: runners take the store's lock only when a
//! complete, new table arrives (`EitCollector::push_packets_shared`);
//! readers (a guide, coverage for a scrape) hold it while they copy out
//! what they need. Never a lock across I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::eit::EitStats;
use super::store::{Limits, Store};
use super::xmltv::Audience;
use crate::ts::text::Charset;

/// Settings a runner reads when it starts collecting (a reload replaces
/// them; runners pick them up when they are re-created).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `[epg] charset`: strings without a selector, sources without
    /// `epg_charset`.
    pub charset: Option<Charset>,
    /// `[epg] language`.
    pub language: Option<String>,
}

/// What one input's EIT collection saw, as last published by its runner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MuxEit {
    pub sections: u64,
    pub unwanted: u64,
    pub other: u64,
    pub not_eit: u64,
    pub malformed: u64,
    pub tables: u64,
    pub wipeouts: u64,
    /// Tables dropped while the store was busy (collected again).
    pub deferred_dropped: u64,
    /// Sections whose CRC failed (the assembler's count).
    pub crc_errors: u64,
}

impl MuxEit {
    pub fn of(s: &EitStats, crc_errors: u64) -> MuxEit {
        MuxEit {
            sections: s.sections,
            unwanted: s.unwanted,
            other: s.other,
            not_eit: s.not_eit,
            malformed: s.malformed,
            tables: s.tables,
            wipeouts: s.wipeouts,
            deferred_dropped: s.deferred_dropped,
            crc_errors,
        }
    }

    /// (name, value) of every counter, for metrics.
    pub fn counters(&self) -> [(&'static str, u64); 9] {
        [
            ("sections", self.sections),
            ("unwanted", self.unwanted),
            ("other", self.other),
            ("not_eit", self.not_eit),
            ("malformed", self.malformed),
            ("tables", self.tables),
            ("wipeouts", self.wipeouts),
            ("deferred_dropped", self.deferred_dropped),
            ("crc_errors", self.crc_errors),
        ]
    }
}

/// The daemon's guide.
#[derive(Debug)]
pub struct Live {
    /// `[epg] enabled`: runners collect and /epg.xml serves while set.
    enabled: std::sync::atomic::AtomicBool,
    store: Arc<Mutex<Store>>,
    settings: RwLock<Settings>,
    audiences: RwLock<Vec<Audience>>,
    /// Per input (`MuxKey::describe`): its EIT counters.
    muxes: Mutex<BTreeMap<String, MuxEit>>,
}

impl Live {
    pub fn new(
        limits: Limits,
        settings: Settings,
        audiences: Vec<Audience>,
        enabled: bool,
    ) -> Live {
        Live {
            enabled: std::sync::atomic::AtomicBool::new(enabled),
            store: Arc::new(Mutex::new(Store::new(limits))),
            settings: RwLock::new(settings),
            audiences: RwLock::new(audiences),
            muxes: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The store, locked: copy out and let go.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's mutex, for `EitCollector::push_packets_shared`.
    pub fn store_mutex(&self) -> &Mutex<Store> {
        &self.store
    }

    /// The store, shared, for `fetch::spawn`.
    pub fn store_arc(&self) -> Arc<Mutex<Store>> {
        self.store.clone()
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    pub fn audiences(&self) -> Vec<Audience> {
        self.audiences
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_audiences(&self, a: Vec<Audience>) {
        *self.audiences.write().unwrap_or_else(|e| e.into_inner()) = a;
    }

    pub fn audience(&self, name: &str) -> Option<Audience> {
        self.audiences
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|a| a.name == name)
            .cloned()
    }

    pub fn set_mux(&self, mux: &str, eit: MuxEit) {
        let mut m = self.muxes.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(mux) {
            Some(v) => *v = eit,
            None => {
                m.insert(mux.to_string(), eit);
            }
        }
    }

    pub fn remove_mux(&self, mux: &str) {
        self.muxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mux);
    }

    pub fn muxes(&self) -> BTreeMap<String, MuxEit> {
        self.muxes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Unix seconds now (the box clock: the guide's "now").
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
