//! Conditional Access Table (ISO/IEC 13818-1 §2.4.4.6): CA descriptors naming
//! the EMM PID of each CA system.

use super::descriptor::{CaDescriptor, Descriptors};
use super::section::{build_long_section, Section};
use super::{table_id, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatRepr {
    pub version: u8,
    pub section_number: u8,
    pub last_section_number: u8,
    /// The descriptor loop, raw.
    pub descriptors: Vec<u8>,
}

impl CatRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<CatRepr> {
        if s.table_id() != table_id::CAT {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        Ok(CatRepr {
            version: s.version_number(),
            section_number: s.section_number(),
            last_section_number: s.last_section_number(),
            descriptors: s.body().to_vec(),
        })
    }

    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    pub fn ca_descriptors(&self) -> impl Iterator<Item = CaDescriptor<'_>> {
        self.descriptors().filter_map(|d| CaDescriptor::parse(&d))
    }

    /// (CA_system_ID, EMM PID), sorted, duplicates removed.
    pub fn emm_pids(&self) -> Vec<(u16, u16)> {
        let mut v: Vec<_> = self
            .ca_descriptors()
            .map(|c| (c.ca_system_id, c.ca_pid))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn emit(&self) -> Vec<u8> {
        // table_id_extension is reserved (all ones) in a CAT.
        build_long_section(
            table_id::CAT,
            0xFFFF,
            self.version,
            self.section_number,
            self.last_section_number,
            &self.descriptors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emm_pids_round_trip() {
        let cat = CatRepr {
            version: 2,
            section_number: 0,
            last_section_number: 0,
            descriptors: vec![
                0x09, 4, 0x18, 0x00, 0xE1, 0x50, // Nagra, EMM 0x150
                0x09, 6, 0x05, 0x00, 0xE0, 0x20, 0xAA, 0xBB, // Viaccess, EMM 0x20
                0x0A, 4, b'f', b'r', b'a', 0,
            ],
        };
        let b = cat.emit();
        let back = CatRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
        assert_eq!(back, cat);
        assert_eq!(back.emm_pids(), vec![(0x0500, 0x20), (0x1800, 0x150)]);
    }
}
