//! Program Association Table (ISO/IEC 13818-1 §2.4.4.3).

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
        if body.len() % 4 != 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
