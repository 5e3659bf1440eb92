//! The guide from the air: EIT sections of one mux's packets (PID 0x0012)
//! for the services capbox carries, collected into complete tables and
//! handed to the `Store`.
//!
//! Reuses the TS layer: `section::Assembler` (reassembly, CRC),
//! `collector::TableCollector` (a table is complete once every segment is
//! there; a repeat costs a version comparison), `ts::eit` (parsing and DVB
//! text). Each complete table replaces one part of the channel in the store:
//! present/following (0x4E/0x4F) → `PartKey::EitPresentFollowing`, schedule
//! 0x50..=0x6F → `PartKey::EitSchedule(table_id & 0x0F)`.
//!
//! Bounded: sections of services nobody wants are dropped before the
//! collector (counted), and the collector holds at most `MAX_TABLES`
//! tables and `MAX_BUFFERED` bytes. Never panics on any packet.

use std::collections::HashMap;

use super::store::{Outcome, PartKey, RawEvent, Store};
use crate::ts::collector::{table_key, Push, TableCollector};
use crate::ts::eit::{is_eit, EitEvent, EitRepr};
use crate::ts::packet::Packet;
use crate::ts::section::{Assembler, Section};
use crate::ts::table_id;
use crate::ts::text::Charset;

/// The EIT's PID (EN 300 468 §5.1.3).
pub const EIT_PID: u16 = 0x0012;
/// Tables tracked at once: p/f + 16 schedule tables per service, for 200
/// services, actual and other.
pub const MAX_TABLES: usize = 8192;
/// Bytes of sections held for incomplete tables (a full 7-day schedule of
/// one service is ≈ 100 kB; a mux carries tens).
pub const MAX_BUFFERED: usize = 16 << 20;

/// Counters of one mux's EIT; the store counts what validation drops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EitStats {
    /// EIT sections of a wanted service handed to the collector.
    pub sections: u64,
    /// EIT sections of services no channel carries.
    pub unwanted: u64,
    /// Sections on the EIT PID that are not EIT (ST 0x72 stuffing, junk).
    pub not_eit: u64,
    /// Complete tables that did not parse (`EitRepr::parse` failed).
    pub malformed: u64,
    /// Complete tables handed to the store.
    pub tables: u64,
    /// Of those, refused by the store as a wipe-out.
    pub wipeouts: u64,
}

/// One mux's EIT collection.
#[derive(Debug)]
pub struct EitCollector {
    assembler: Assembler,
    collector: TableCollector,
    /// service_id → the channel id in the store (the playlist's tvg-id).
    services: HashMap<u16, String>,
    charset: Option<Charset>,
    language: Option<String>,
    pub stats: EitStats,
}

impl EitCollector {
    /// `services`: (service_id, channel id) of every channel on this mux;
    /// `charset`: the mux's override for strings without a selector
    /// (`text::charset_by_name`); `language`: the preferred ISO 639-2 code
    /// when an event is described in several.
    pub fn new(
        services: impl IntoIterator<Item = (u16, String)>,
        charset: Option<Charset>,
        language: Option<String>,
    ) -> EitCollector {
        EitCollector {
            assembler: Assembler::new(),
            collector: TableCollector::new(MAX_TABLES, MAX_BUFFERED),
            services: services.into_iter().collect(),
            charset,
            language,
            stats: EitStats::default(),
        }
    }

    /// Reassembly counters (CRC errors, lost packets).
    pub fn assembler_stats(&self) -> crate::ts::section::AssemblerStats {
        self.assembler.stats
    }

    pub fn collector_stats(&self) -> crate::ts::collector::CollectorStats {
        self.collector.stats
    }

    /// Forget partial tables and versions (after a retune).
    pub fn reset(&mut self) {
        self.assembler.reset();
        self.collector.clear();
    }

    /// Feed packets (188-byte aligned; other PIDs are skipped).
    pub fn push_packets(&mut self, ts: &[u8], store: &mut Store, now: i64) {
        for p in ts.chunks_exact(188) {
            self.push_packet(p, store, now);
        }
    }

    /// Feed one transport packet.
    pub fn push_packet(&mut self, p: &[u8], store: &mut Store, now: i64) {
        let Ok(pkt) = Packet::new_checked(p) else {
            return;
        };
        if pkt.pid() != EIT_PID {
            return;
        }
        let mut sections: Vec<Vec<u8>> = Vec::new();
        self.assembler.push(&pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            self.push_section(&s, store, now);
        }
    }

    /// Feed one section (CRC checked by the caller, as the assembler does).
    pub fn push_section(&mut self, section: &[u8], store: &mut Store, now: i64) {
        let Ok(s) = Section::new_checked(section) else {
            self.stats.not_eit += 1;
            return;
        };
        if !is_eit(s.table_id()) {
            self.stats.not_eit += 1;
            return;
        }
        let Some(channel) = self.services.get(&s.table_id_extension()) else {
            self.stats.unwanted += 1;
            return;
        };
        self.stats.sections += 1;
        let Push::Complete(table) = self.collector.push(section) else {
            return;
        };
        let mut raw = Vec::new();
        let mut tid = 0;
        for sec in &table {
            let parsed = Section::new_checked(&sec[..])
                .ok()
                .and_then(|s| EitRepr::parse(&s).ok());
            let Some(eit) = parsed else {
                self.stats.malformed += 1;
                return;
            };
            tid = eit.table_id;
            raw.extend(
                eit.events
                    .iter()
                    .map(|e| raw_event(e, self.charset, self.language.as_deref())),
            );
        }
        let key = if tid == table_id::EIT_PF_ACTUAL || tid == table_id::EIT_PF_OTHER {
            PartKey::EitPresentFollowing
        } else {
            PartKey::EitSchedule(tid & 0x0F)
        };
        self.stats.tables += 1;
        if store.replace_raw(channel, key, raw, now) == Outcome::Wipeout {
            self.stats.wipeouts += 1;
            // Collect the shrunk table again at its next repetition, so the
            // store's wipe-out hold can run out if the broadcaster means it.
            self.collector.forget(&table_key(&s));
        }
    }
}

/// An EIT event as the store takes it (times may be undefined: the store
/// counts those).
pub fn raw_event(e: &EitEvent, charset: Option<Charset>, language: Option<&str>) -> RawEvent {
    let shorts = e.short_events_with(charset);
    let short = language
        .and_then(|l| shorts.iter().find(|s| s.language.eq_ignore_ascii_case(l)))
        .or(shorts.first());
    let lang = short.map(|s| s.language.clone());
    RawEvent {
        event_id: e.event_id,
        start: e.start_time(),
        duration: e.duration(),
        title: short.map(|s| s.name.clone()).unwrap_or_default(),
        subtitle: short.map(|s| s.text.clone()).unwrap_or_default(),
        description: e
            .extended_text_with(lang.as_deref().or(language), charset)
            .unwrap_or_default(),
        language: lang,
        content: e
            .content()
            .iter()
            .map(|c| c.content_nibble_level_1 << 4 | (c.content_nibble_level_2 & 0x0F))
            .collect(),
        min_age: e.parental_ratings().iter().find_map(|r| r.minimum_age()),
    }
}

#[cfg(test)]
mod tests;
