//! Program Association Table (ISO/IEC 13818-1 §2.4.4.3).
//!
//! `PatRepr` is one section; `PatTable` is the whole table gathered from its
//! sections (a PAT may span up to 256 sections of one version), bounded:
//! each section's entries replace what that section said before, at most
//! `MAX_PAT_ENTRIES` entries are held, and every entry refused is counted.

use super::section::{build_long_section, Section};
use super::{table_id, Error, Result};

/// One PAT entry. program_number 0 points at the NIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatEntry {
    pub program_number: u16,
    pub pid: u16,
}

/// One PAT section, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatRepr {
    pub transport_stream_id: u16,
    pub version: u8,
    pub section_number: u8,
    pub last_section_number: u8,
    pub entries: Vec<PatEntry>,
}

impl PatRepr {
    /// Parse a verified section. A trailing partial entry is refused.
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<PatRepr> {
        if s.table_id() != table_id::PAT {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        let body = s.body();
        if !body.len().is_multiple_of(4) {
            return Err(Error::Malformed);
        }
        let entries = body
            .chunks_exact(4)
            .map(|c| PatEntry {
                program_number: u16::from_be_bytes([c[0], c[1]]),
                pid: u16::from_be_bytes([c[2], c[3]]) & 0x1FFF,
            })
            .collect();
        Ok(PatRepr {
            transport_stream_id: s.table_id_extension(),
            version: s.version_number(),
            section_number: s.section_number(),
            last_section_number: s.last_section_number(),
            entries,
        })
    }

    /// Programs (entries with program_number ≠ 0).
    pub fn programs(&self) -> impl Iterator<Item = &PatEntry> {
        self.entries.iter().filter(|e| e.program_number != 0)
    }

    /// The whole section, CRC included.
    pub fn emit(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 4);
        for e in &self.entries {
            body.extend_from_slice(&e.program_number.to_be_bytes());
            body.extend_from_slice(&(0xE000 | e.pid).to_be_bytes());
        }
        build_long_section(
            table_id::PAT,
            self.transport_stream_id,
            self.version,
            self.section_number,
            self.last_section_number,
            &body,
        )
    }
}

/// Most entries a `PatTable` holds. A mux carries tens of services (a
/// crowded cable mux a few hundred); 256 sections of 253 entries would be
/// 64768.
pub const MAX_PAT_ENTRIES: usize = 1024;

/// What `PatTable::push` did with a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatPush {
    /// The table is as it was (a repeat, or nothing of it could be held).
    Unchanged,
    /// The table changed: look up the programs again.
    Changed,
}

/// The PAT as a whole: the entries of every section of the current version,
/// by section_number.
///
/// Bounded: a section replaces what the same section_number said before
/// (never accumulates); a new transport_stream_id, version or
/// last_section_number starts the table afresh; at most `max_entries`
/// entries are held, lower section_numbers first (a section that does not
/// fit pushes out higher-numbered ones, which are counted when they come
/// again and cannot come back in). Refused entries are counted in
/// `entries_refused`; sections whose section_number is above
/// last_section_number in `sections_malformed`.
///
/// Cost of a push: one comparison with what the section said before; a
/// changed section costs a copy of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatTable {
    transport_stream_id: u16,
    version: u8,
    last_section_number: u8,
    /// Index section_number; `None`: not received (or pushed out).
    sections: Vec<Option<Vec<PatEntry>>>,
    held: usize,
    max_entries: usize,
    /// Entries not held: over `max_entries` when their section came, or
    /// pushed out by a lower section.
    pub entries_refused: u64,
    pub sections_malformed: u64,
}

impl PatTable {
    /// A table from its first section, holding at most `max_entries`.
    pub fn new(first: PatRepr, max_entries: usize) -> PatTable {
        let mut t = PatTable {
            transport_stream_id: first.transport_stream_id,
            version: first.version,
            last_section_number: first.last_section_number,
            sections: Vec::new(),
            held: 0,
            max_entries,
            entries_refused: 0,
            sections_malformed: 0,
        };
        t.restart(&first);
        t.push(first);
        t
    }

    fn restart(&mut self, like: &PatRepr) {
        self.transport_stream_id = like.transport_stream_id;
        self.version = like.version;
        self.last_section_number = like.last_section_number;
        self.sections.clear();
        self.sections
            .resize(like.last_section_number as usize + 1, None);
        self.held = 0;
    }

    /// Take one section (current_next_indicator already checked).
    pub fn push(&mut self, sec: PatRepr) -> PatPush {
        let sn = sec.section_number as usize;
        if sec.section_number > sec.last_section_number {
            self.sections_malformed += 1;
            return PatPush::Unchanged;
        }
        let mut changed = false;
        if (
            sec.transport_stream_id,
            sec.version,
            sec.last_section_number,
        ) != (
            self.transport_stream_id,
            self.version,
            self.last_section_number,
        ) {
            changed = self.held > 0 || self.sections.iter().any(|s| s.is_some());
            self.restart(&sec);
        }
        let mut entries = sec.entries;
        if self.sections[sn].as_ref() == Some(&entries) {
            return if changed {
                PatPush::Changed
            } else {
                PatPush::Unchanged
            };
        }
        let old = self.sections[sn].take();
        let had = old.is_some();
        self.held -= old.as_ref().map_or(0, |o| o.len());
        // Lower section_numbers first: push out the highest ones while this
        // section does not fit.
        let mut high = self.sections.len();
        while self.held + entries.len() > self.max_entries && high > sn + 1 {
            high -= 1;
            if let Some(out) = self.sections[high].take() {
                self.held -= out.len();
                self.entries_refused += out.len() as u64;
                changed = true;
            }
        }
        let room = self.max_entries - self.held;
        if entries.len() > room {
            self.entries_refused += (entries.len() - room) as u64;
            entries.truncate(room);
        }
        if entries.is_empty() && !had {
            // Nothing of it held, and nothing there before: the lookups
            // stay as they were (an empty section is worth remembering
            // only as a replacement).
            if room > 0 {
                self.sections[sn] = Some(entries);
            }
            return if changed {
                PatPush::Changed
            } else {
                PatPush::Unchanged
            };
        }
        changed |= old.as_ref() != Some(&entries);
        self.held += entries.len();
        self.sections[sn] = Some(entries);
        if changed {
            PatPush::Changed
        } else {
            PatPush::Unchanged
        }
    }

    pub fn transport_stream_id(&self) -> u16 {
        self.transport_stream_id
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Every entry held, in section order (program_number 0, the NIT, too).
    pub fn entries(&self) -> impl Iterator<Item = &PatEntry> {
        self.sections.iter().flatten().flatten()
    }

    /// Programs (entries with program_number ≠ 0), in section order.
    pub fn programs(&self) -> impl Iterator<Item = &PatEntry> {
        self.entries().filter(|e| e.program_number != 0)
    }

    /// The PMT PID of `program_number`: its first entry in section order.
    pub fn pmt_pid(&self, program_number: u16) -> Option<u16> {
        self.programs()
            .find(|e| e.program_number == program_number)
            .map(|e| e.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: u8, sn: u8, last: u8, programs: &[(u16, u16)]) -> PatRepr {
        PatRepr {
            transport_stream_id: 7,
            version,
            section_number: sn,
            last_section_number: last,
            entries: programs
                .iter()
                .map(|&(program_number, pid)| PatEntry {
                    program_number,
                    pid,
                })
                .collect(),
        }
    }

    #[test]
    fn sections_merge_and_replace_not_accumulate() {
        let mut t = PatTable::new(section(1, 0, 2, &[(1, 0x100)]), 16);
        assert_eq!(t.push(section(1, 1, 2, &[(2, 0x200)])), PatPush::Changed);
        assert_eq!(t.push(section(1, 1, 2, &[(2, 0x200)])), PatPush::Unchanged);
        assert_eq!(t.pmt_pid(2), Some(0x200));
        // Section 1 says something else: it replaces, it does not add.
        assert_eq!(t.push(section(1, 1, 2, &[(3, 0x300)])), PatPush::Changed);
        assert_eq!(t.pmt_pid(2), None);
        assert_eq!(t.pmt_pid(3), Some(0x300));
        assert_eq!(t.len(), 2);
        for i in 0..10_000u16 {
            t.push(section(1, 2, 2, &[(1000 + i, 0x1000 + (i & 0xFFF))]));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.pmt_pid(1), Some(0x100));
        // A new version starts afresh.
        assert_eq!(t.push(section(2, 0, 0, &[(9, 0x900)])), PatPush::Changed);
        assert_eq!(t.programs().count(), 1);
        assert_eq!(t.pmt_pid(1), None);
        // section_number above last_section_number: refused, counted.
        assert_eq!(t.push(section(2, 3, 0, &[(1, 1)])), PatPush::Unchanged);
        assert_eq!(t.sections_malformed, 1);
        // A repeat of a new first section (version 3) is Changed once.
        assert_eq!(t.push(section(3, 0, 0, &[(9, 0x900)])), PatPush::Changed);
        assert_eq!(t.push(section(3, 0, 0, &[(9, 0x900)])), PatPush::Unchanged);
    }

    #[test]
    fn bounded_lower_sections_first_and_counted() {
        let full: Vec<(u16, u16)> = (0..253).map(|i| (100 + i, 0x100 + i)).collect();
        let mut t = PatTable::new(section(0, 5, 255, &full), 300);
        assert_eq!(t.len(), 253);
        // Section 7 gets 47 of its 253 entries.
        t.push(section(0, 7, 255, &full));
        assert_eq!((t.len(), t.entries_refused), (300, 206));
        // Section 0 (the broadcaster's programs) pushes out section 7
        // whole, then fits.
        assert_eq!(t.push(section(0, 0, 255, &[(1, 0x1000)])), PatPush::Changed);
        assert_eq!(t.pmt_pid(1), Some(0x1000));
        assert_eq!((t.len(), t.entries_refused), (254, 206 + 47));
        // Thousands of distinct high sections: nothing more is held than
        // the cap, section 0 stays.
        for i in 0..5000u32 {
            let sn = 1 + (i % 255) as u8;
            let e: Vec<(u16, u16)> = (0..253)
                .map(|j| ((i * 253 + j) as u16 | 0x8000, 0x20 + j as u16))
                .collect();
            t.push(section(0, sn, 255, &e));
            assert!(t.len() <= 300);
        }
        assert_eq!(t.pmt_pid(1), Some(0x1000));
        assert!(t.entries_refused > 1_000_000, "{}", t.entries_refused);
        // An empty table is fine.
        let e = PatTable::new(section(0, 0, 0, &[]), 8);
        assert!(e.is_empty());
        assert_eq!(e.programs().count(), 0);
    }

    #[test]
    fn ffmpeg_pat() {
        // Written by ffmpeg's mpegts muxer: tsid 1, program 1 → PMT 0x1000.
        let pat = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1,
            0x04, 0xB2,
        ];
        let s = Section::new_verified(&pat[..]).unwrap();
        let r = PatRepr::parse(&s).unwrap();
        assert_eq!(r.transport_stream_id, 1);
        assert_eq!(
            r.entries,
            vec![PatEntry {
                program_number: 1,
                pid: 0x1000
            }]
        );
        assert_eq!(r.emit(), pat.to_vec());
    }
}
