//! Time Offset Table (EN 300 468 §5.2.6): UTC time plus local time offset
//! descriptors. The TOT carries a CRC although its section_syntax_indicator
//! is 0 (`section::has_crc` knows).

use super::descriptor::{self, Descriptors, LocalTimeOffset};
use super::section::Section;
use super::{table_id, tdt, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotRepr {
    pub utc_time_raw: [u8; 5],
    /// The descriptor loop, raw.
    pub descriptors: Vec<u8>,
}

impl TotRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<TotRepr> {
        if s.table_id() != table_id::TOT {
            return Err(Error::WrongTable);
        }
        let b = s.body();
        if b.len() < 7 {
            return Err(Error::Truncated);
        }
        let dll = (u16::from_be_bytes([b[5], b[6]]) & 0x0FFF) as usize;
        if 7 + dll > b.len() {
            return Err(Error::Truncated);
        }
        Ok(TotRepr {
            utc_time_raw: [b[0], b[1], b[2], b[3], b[4]],
            descriptors: b[7..7 + dll].to_vec(),
        })
    }

    /// UTC_time as Unix seconds; `None` when invalid.
    pub fn utc_time(&self) -> Option<i64> {
        tdt::utc_seconds(&self.utc_time_raw)
    }

    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    /// Every entry of every local_time_offset_descriptor.
    pub fn local_time_offsets(&self) -> Vec<LocalTimeOffset> {
        self.descriptors()
            .flat_map(|d| descriptor::local_time_offsets(&d).collect::<Vec<_>>())
            .collect()
    }

    /// The section, CRC included; Malformed when the loop exceeds 12 bits.
    pub fn emit(&self) -> Result<Vec<u8>> {
        if self.descriptors.len() > 0x0FFF - 11 {
            return Err(Error::Malformed);
        }
        let section_length = 5 + 2 + self.descriptors.len() + 4;
        let mut v = vec![
            table_id::TOT,
            0x70 | (section_length >> 8) as u8,
            section_length as u8,
        ];
        v.extend_from_slice(&self.utc_time_raw);
        v.extend_from_slice(&(0xF000 | self.descriptors.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.descriptors);
        let crc = super::crc::crc32_mpeg2(&v);
        v.extend_from_slice(&crc.to_be_bytes());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_offsets() {
        let mut d = vec![0x58, 13, b'D', b'E', b'U', 0x02];
        d.extend_from_slice(&[0x01, 0x00]);
        d.extend_from_slice(&tdt::encode_utc(1_711_846_800).unwrap());
        d.extend_from_slice(&[0x02, 0x00]);
        let tot = TotRepr {
            utc_time_raw: tdt::encode_utc(1_711_800_000).unwrap(),
            descriptors: d,
        };
        let b = tot.emit().unwrap();
        let s = Section::new_verified(&b[..]).unwrap();
        let back = TotRepr::parse(&s).unwrap();
        assert_eq!(back, tot);
        assert_eq!(back.utc_time(), Some(1_711_800_000));
        let o = back.local_time_offsets();
        assert_eq!(o.len(), 1);
        assert_eq!(&o[0].country_code, b"DEU");
        assert_eq!(o[0].local_time_offset(), Some(60));
        assert_eq!(o[0].next_time_offset(), Some(120));
        assert_eq!(o[0].time_of_change(), Some(1_711_846_800));
        // A flipped bit is a CRC error, not a wrong time.
        let mut bad = b.clone();
        bad[5] ^= 1;
        assert!(Section::new_verified(&bad[..]).is_err());
    }
}
