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
use crate::ts::collector::{table_key, Push, TableCollector, TableKey};
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
    /// EIT "other" sections (another mux's services) when only this mux's
    /// are collected (`actual_only`, the daemon's runners).
    pub other: u64,
    /// Complete tables that did not parse (`EitRepr::parse` failed).
    pub malformed: u64,
    /// Complete tables handed to the store.
    pub tables: u64,
    /// Tables dropped while the store was busy and too many waited
    /// (collected again at their next repetition).
    pub deferred_dropped: u64,
    /// Of those, refused by the store as a wipe-out.
    pub wipeouts: u64,
}

/// One mux's EIT collection.
#[derive(Debug)]
pub struct EitCollector {
    assembler: Assembler,
    collector: TableCollector,
    /// service_id → the channel id in the store and the service's own
    /// charset override (else `charset`).
    services: HashMap<u16, (String, Option<Charset>)>,
    charset: Option<Charset>,
    /// Drop EIT "other" tables (0x4F, 0x60..=0x6F): a runner collects the
    /// services it receives from their own mux's "actual" tables, where a
    /// service_id cannot belong to another network.
    actual_only: bool,
    language: Option<String>,
    /// Complete tables waiting for a busy store (`push_packets_shared`).
    pending: Vec<Pending>,
    pub stats: EitStats,
}

/// Most tables waiting for a busy store (an XMLTV document going in holds
/// it up to a second): p/f + 16 schedule tables of seven services.
pub const MAX_PENDING: usize = 128;

type Pending = (String, PartKey, Vec<RawEvent>, TableKey);

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
            services: services.into_iter().map(|(s, c)| (s, (c, None))).collect(),
            charset,
            actual_only: false,
            language,
            pending: Vec::new(),
            stats: EitStats::default(),
        }
    }

    /// Keep only "actual" tables (see `actual_only`).
    pub fn actual_only(mut self) -> EitCollector {
        self.actual_only = true;
        self
    }

    /// The services wanted now: (service_id, channel id, charset override).
    /// Tables already collected stay (a repeat of an unchanged table costs
    /// nothing either way).
    pub fn set_services(
        &mut self,
        services: impl IntoIterator<Item = (u16, String, Option<Charset>)>,
    ) {
        self.services = services
            .into_iter()
            .map(|(s, c, cs)| (s, (c, cs)))
            .collect();
    }

    pub fn services(&self) -> impl Iterator<Item = (u16, &str)> {
        self.services.iter().map(|(s, (c, _))| (*s, c.as_str()))
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
        self.push_packet_with(p, now, &mut |ch, key, raw, _| {
            store.replace_raw(ch, key, raw, now)
        });
    }

    /// Feed packets into a store other threads read. The lock is only
    /// tried, when a table is complete and new (a repeat costs a comparison
    /// in the collector, without it): a reader rendering a whole guide
    /// never stalls the runner that calls this. A table that finds the
    /// store busy waits in `pending` (at most `MAX_PENDING`; past that the
    /// oldest is dropped, counted in `EitStats::deferred_dropped`, and
    /// collected again at its next repetition).
    pub fn push_packets_shared(&mut self, ts: &[u8], store: &std::sync::Mutex<Store>, now: i64) {
        let mut fresh: Vec<Pending> = Vec::new();
        for p in ts.chunks_exact(188) {
            // PID first: the mux's other packets cost one comparison.
            if p[0] != 0x47 || (u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])) != EIT_PID {
                continue;
            }
            self.push_packet_with(p, now, &mut |ch, key, raw, tk| {
                fresh.push((ch.to_string(), key, raw, tk));
                Outcome::Unchanged
            });
        }
        self.pending.extend(fresh);
        if self.pending.is_empty() {
            return;
        }
        let mut guard = match store.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                while self.pending.len() > MAX_PENDING {
                    let (_, _, _, tk) = self.pending.remove(0);
                    self.stats.deferred_dropped += 1;
                    self.collector.forget(&tk);
                }
                return;
            }
        };
        for (ch, key, raw, tk) in std::mem::take(&mut self.pending) {
            if guard.replace_raw(&ch, key, raw, now) == Outcome::Wipeout {
                self.stats.wipeouts += 1;
                self.collector.forget(&tk);
            }
        }
    }

    fn push_packet_with(&mut self, p: &[u8], now: i64, apply: &mut Apply<'_>) {
        let Ok(pkt) = Packet::new_checked(p) else {
            return;
        };
        if pkt.pid() != EIT_PID {
            return;
        }
        let mut sections: Vec<Vec<u8>> = Vec::new();
        self.assembler.push(&pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            self.push_section_with(&s, now, apply);
        }
    }

    /// Feed one section (CRC checked by the caller, as the assembler does).
    pub fn push_section(&mut self, section: &[u8], store: &mut Store, now: i64) {
        self.push_section_with(section, now, &mut |ch, key, raw, _| {
            store.replace_raw(ch, key, raw, now)
        });
    }

    fn push_section_with(&mut self, section: &[u8], _now: i64, apply: &mut Apply<'_>) {
        let Ok(s) = Section::new_checked(section) else {
            self.stats.not_eit += 1;
            return;
        };
        let tid = s.table_id();
        if !is_eit(tid) {
            self.stats.not_eit += 1;
            return;
        }
        let other = tid == table_id::EIT_PF_OTHER || (0x60..=0x6F).contains(&tid);
        if self.actual_only && other {
            self.stats.other += 1;
            return;
        }
        let Some((channel, own_charset)) = self.services.get(&s.table_id_extension()) else {
            self.stats.unwanted += 1;
            return;
        };
        let charset = own_charset.or(self.charset);
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
                    .map(|e| raw_event(e, charset, self.language.as_deref())),
            );
        }
        let key = if tid == table_id::EIT_PF_ACTUAL || tid == table_id::EIT_PF_OTHER {
            PartKey::EitPresentFollowing
        } else {
            PartKey::EitSchedule(tid & 0x0F)
        };
        self.stats.tables += 1;
        let tk = table_key(&s);
        if apply(channel, key, raw, tk) == Outcome::Wipeout {
            self.stats.wipeouts += 1;
            // Collect the shrunk table again at its next repetition, so the
            // store's wipe-out hold can run out if the broadcaster means it.
            self.collector.forget(&tk);
        }
    }
}

/// Hands a complete table's raw events to the store (plain or locked).
type Apply<'a> = dyn FnMut(&str, PartKey, Vec<RawEvent>, TableKey) -> Outcome + 'a;

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
