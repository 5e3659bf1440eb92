//! Multi-section table collection: groups long-form sections by table
//! (table_id, table_id_extension and, for the EIT/SDT, the stream ids in the
//! body) and version, and hands the table out once every section is there.
//!
//! Completeness: sections 0..=last_section_number; for the EIT, per segment
//! (8 sections) up to that segment's segment_last_section_number (EN 300 468
//! §5.2.4, TR 101 211 §4.1.4), every segment having at least one section.
//!
//! Bounded: at most `max_tables` tables tracked and `max_bytes` of buffered
//! sections (≤ 256 sections per table by construction: section_number is 8
//! bits). Anything refused is counted in `CollectorStats`. A complete table
//! keeps only its version, so repeats cost nothing.

use std::collections::HashMap;

use super::eit::is_eit;
use super::section::Section;
use super::table_id;

/// Identity of a table: (table_id, table_id_extension, extra), where extra is
/// transport_stream_id << 16 | original_network_id for an EIT and
/// original_network_id for an SDT (service_ids and transport_stream_ids are
/// only unique within a network).
pub type TableKey = (u8, u16, u32);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CollectorStats {
    pub sections: u64,
    pub tables_complete: u64,
    /// Sections of a table already complete at this version.
    pub repeats: u64,
    /// A section already held for an incomplete table.
    pub duplicates: u64,
    /// Incomplete tables discarded because a new version (or a different
    /// last_section_number) arrived.
    pub version_changes: u64,
    /// current_next_indicator = 0: not applicable yet, ignored.
    pub not_current: u64,
    /// Sections that fail `Section::new_checked`, or whose section_number
    /// exceeds last_section_number.
    pub malformed: u64,
    /// Short-form sections (TDT, TOT, …): complete by themselves, not
    /// collected.
    pub short_form: u64,
    /// Sections dropped because `max_tables` tables were already tracked.
    pub table_overflow: u64,
    /// Sections dropped because `max_bytes` were already buffered.
    pub byte_overflow: u64,
}

/// What a pushed section did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// Held; the table is not complete yet.
    Incomplete,
    /// The table is complete: its sections in section_number order.
    Complete(Vec<Vec<u8>>),
    /// Part of a table already complete at this version.
    Unchanged,
    /// Dropped; the reason is counted in `stats`.
    Dropped,
}

#[derive(Debug)]
struct Partial {
    version: u8,
    last_section_number: u8,
    /// `None` once the table was handed out.
    sections: Option<Vec<Option<Vec<u8>>>>,
    /// EIT: segment_last_section_number seen for each of the 32 segments.
    segment_last: [Option<u8>; 32],
    bytes: usize,
}

#[derive(Debug)]
pub struct TableCollector {
    tables: HashMap<TableKey, Partial>,
    max_tables: usize,
    max_bytes: usize,
    bytes: usize,
    pub stats: CollectorStats,
}

/// The key of a checked long-form section.
pub fn table_key<T: AsRef<[u8]>>(s: &Section<T>) -> TableKey {
    let tid = s.table_id();
    let b = s.body();
    let extra = if is_eit(tid) && b.len() >= 4 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    } else if (tid == table_id::SDT_ACTUAL || tid == table_id::SDT_OTHER) && b.len() >= 2 {
        u16::from_be_bytes([b[0], b[1]]) as u32
    } else {
        0
    };
    (tid, s.table_id_extension(), extra)
}

impl TableCollector {
    pub fn new(max_tables: usize, max_bytes: usize) -> TableCollector {
        TableCollector {
            tables: HashMap::new(),
            max_tables,
            max_bytes,
            bytes: 0,
            stats: CollectorStats::default(),
        }
    }

    /// Bytes of sections held for incomplete tables.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// Forget everything (e.g. after a retune).
    pub fn clear(&mut self) {
        self.tables.clear();
        self.bytes = 0;
    }

    /// Forget one table, so its next version (or a repeat) completes again.
    pub fn forget(&mut self, key: &TableKey) {
        if let Some(p) = self.tables.remove(key) {
            self.bytes -= p.bytes;
        }
    }

    /// Feed one section (CRC already checked, e.g. by `section::Assembler`).
    pub fn push(&mut self, section: &[u8]) -> Push {
        let s = match Section::new_checked(section) {
            Ok(s) if s.syntax_indicator() => s,
            Ok(_) => {
                self.stats.short_form += 1;
                return Push::Dropped;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return Push::Dropped;
            }
        };
        self.stats.sections += 1;
        if !s.current_next() {
            self.stats.not_current += 1;
            return Push::Dropped;
        }
        let key = table_key(&s);
        let (version, sn, last) = (
            s.version_number(),
            s.section_number(),
            s.last_section_number(),
        );
        if let Some(p) = self.tables.get(&key) {
            if p.version == version && p.last_section_number == last {
                if p.sections.is_none() {
                    self.stats.repeats += 1;
                    return Push::Unchanged;
                }
            } else {
                if p.sections.is_some() {
                    self.stats.version_changes += 1;
                }
                self.forget(&key);
            }
        }
        if !self.tables.contains_key(&key) {
            if self.tables.len() >= self.max_tables {
                self.stats.table_overflow += 1;
                return Push::Dropped;
            }
            self.tables.insert(
                key,
                Partial {
                    version,
                    last_section_number: last,
                    sections: Some(vec![None; last as usize + 1]),
                    segment_last: [None; 32],
                    bytes: 0,
                },
            );
        }
        let bytes = s.as_bytes().len();
        let over = self.bytes + bytes > self.max_bytes;
        let Some(p) = self.tables.get_mut(&key) else {
            return Push::Dropped;
        };
        let Some(secs) = p.sections.as_mut() else {
            return Push::Unchanged;
        };
        let Some(slot) = secs.get_mut(sn as usize) else {
            // section_number above last_section_number.
            self.stats.malformed += 1;
            return Push::Dropped;
        };
        if slot.is_some() {
            self.stats.duplicates += 1;
            return Push::Incomplete;
        }
        if over {
            self.stats.byte_overflow += 1;
            return Push::Dropped;
        }
        *slot = Some(s.as_bytes().to_vec());
        p.bytes += bytes;
        self.bytes += bytes;
        if is_eit(key.0) {
            if let Some(&seg_last) = s.body().get(4) {
                p.segment_last[(sn / 8) as usize] = Some(seg_last);
            }
        }
        if !complete(p, is_eit(key.0)) {
            return Push::Incomplete;
        }
        let secs = p.sections.take().unwrap_or_default();
        self.bytes -= p.bytes;
        p.bytes = 0;
        self.stats.tables_complete += 1;
        Push::Complete(secs.into_iter().flatten().collect())
    }
}

fn complete(p: &Partial, eit: bool) -> bool {
    let Some(secs) = &p.sections else {
        return false;
    };
    let last = p.last_section_number as usize;
    if !eit {
        return secs.iter().all(|s| s.is_some());
    }
    for seg in 0..=last / 8 {
        let Some(seg_last) = p.segment_last[seg] else {
            return false;
        };
        let first = seg * 8;
        let end = (seg_last as usize).clamp(first, (first + 7).min(last));
        if secs[first..=end].iter().any(|s| s.is_none()) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::section::build_long_section;

    fn eit(sn: u8, last: u8, seg_last: u8, version: u8) -> Vec<u8> {
        build_long_section(0x50, 7, version, sn, last, &[0, 1, 0, 2, seg_last, 0x50])
    }

    #[test]
    fn plain_table_completes_once() {
        let mut c = TableCollector::new(8, 1 << 20);
        let a = build_long_section(0x42, 1, 3, 0, 1, &[0, 1, 0xFF]);
        let b = build_long_section(0x42, 1, 3, 1, 1, &[0, 1, 0xFF]);
        assert_eq!(c.push(&b), Push::Incomplete);
        assert_eq!(c.push(&b), Push::Incomplete);
        assert_eq!(c.push(&a), Push::Complete(vec![a.clone(), b.clone()]));
        assert_eq!(c.push(&a), Push::Unchanged);
        assert_eq!(c.buffered_bytes(), 0);
        // New version: collected again.
        let a4 = build_long_section(0x42, 1, 4, 0, 0, &[0, 1, 0xFF]);
        assert_eq!(c.push(&a4), Push::Complete(vec![a4.clone()]));
        assert_eq!(c.stats.duplicates, 1);
        assert_eq!(c.stats.repeats, 1);
    }

    #[test]
    fn eit_segments() {
        let mut c = TableCollector::new(8, 1 << 20);
        // Segments 0 (sections 0,1) and 1 (section 8 only): last = 8.
        assert_eq!(c.push(&eit(0, 8, 1, 0)), Push::Incomplete);
        assert_eq!(c.push(&eit(8, 8, 8, 0)), Push::Incomplete);
        match c.push(&eit(1, 8, 1, 0)) {
            Push::Complete(v) => assert_eq!(v.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bounds_are_counted() {
        let mut c = TableCollector::new(1, 100);
        let big = build_long_section(0x40, 1, 0, 0, 1, &[0xF0, 0x00, 0xF0, 0x00, 0xAA].repeat(30));
        assert_eq!(c.push(&big), Push::Dropped);
        assert_eq!(c.stats.byte_overflow, 1);
        let other = build_long_section(0x40, 2, 0, 0, 1, &[0xF0, 0, 0xF0, 0]);
        assert_eq!(c.push(&other), Push::Dropped);
        assert_eq!(c.stats.table_overflow, 1);
        assert_eq!(c.push(&[0x70, 0x70, 0x05, 0, 0, 0, 0, 0]), Push::Dropped);
        assert_eq!(c.stats.short_form, 1);
        assert_eq!(c.push(&[0x42, 0xF0, 0x20, 0]), Push::Dropped);
        assert_eq!(c.stats.malformed, 1);
        // section_number above last.
        let bad = build_long_section(0x40, 1, 0, 5, 1, &[0xF0, 0, 0xF0, 0]);
        assert_eq!(c.push(&bad), Push::Dropped);
        assert_eq!(c.stats.malformed, 2);
    }
}
