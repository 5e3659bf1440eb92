//! Network Information Table (EN 300 468 §5.2.1): actual (0x40) and other
//! (0x41) networks — network descriptors (name) and the transport stream
//! loop with each stream's delivery system.
//!
//! `NitRepr::parse` refuses loops that run past the section (Truncated).

use super::descriptor::{self, DeliverySystem, Descriptors};
use super::section::{build_long_section, Section};
use super::{table_id, text, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitTransportStream {
    pub transport_stream_id: u16,
    pub original_network_id: u16,
    /// transport_descriptors, raw.
    pub descriptors: Vec<u8>,
}

impl NitTransportStream {
    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    /// The first satellite/cable/terrestrial delivery system descriptor.
    pub fn delivery_system(&self) -> Option<DeliverySystem> {
        self.descriptors().find_map(|d| DeliverySystem::parse(&d))
    }

    /// (service_id, service_type) from service_list_descriptors.
    pub fn service_list(&self) -> Vec<descriptor::ServiceListEntry> {
        self.descriptors()
            .flat_map(|d| descriptor::service_list(&d).collect::<Vec<_>>())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NitRepr {
    /// NIT_ACTUAL (0x40) or NIT_OTHER (0x41).
    pub table_id: u8,
    pub network_id: u16,
    pub version: u8,
    pub section_number: u8,
    pub last_section_number: u8,
    /// network_descriptors, raw.
    pub network_descriptors: Vec<u8>,
    pub transport_streams: Vec<NitTransportStream>,
}

fn loop_len(b: &[u8]) -> usize {
    (u16::from_be_bytes([b[0], b[1]]) & 0x0FFF) as usize
}

impl NitRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<NitRepr> {
        let tid = s.table_id();
        if tid != table_id::NIT_ACTUAL && tid != table_id::NIT_OTHER {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        let b = s.body();
        if b.len() < 2 {
            return Err(Error::Truncated);
        }
        let ndl = loop_len(b);
        if 2 + ndl + 2 > b.len() {
            return Err(Error::Truncated);
        }
        let network_descriptors = b[2..2 + ndl].to_vec();
        let tsl = loop_len(&b[2 + ndl..]);
        let start = 2 + ndl + 2;
        if start + tsl > b.len() {
            return Err(Error::Truncated);
        }
        // The transport stream loop is the last field: it runs to the CRC.
        // The kernel's vidtv (6.1) counts only the 6-byte entry headers in
        // transport_stream_loop_length, not their descriptors; a shorter
        // length that does not end on an entry boundary is read as running
        // to the CRC instead of refusing the whole table.
        let mut rest = &b[start..start + tsl];
        if tsl < b.len() - start && !entries_fill(rest) {
            rest = &b[start..];
        }
        let mut transport_streams = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 6 {
                return Err(Error::Truncated);
            }
            let tdl = loop_len(&rest[4..]);
            if 6 + tdl > rest.len() {
                return Err(Error::Truncated);
            }
            transport_streams.push(NitTransportStream {
                transport_stream_id: u16::from_be_bytes([rest[0], rest[1]]),
                original_network_id: u16::from_be_bytes([rest[2], rest[3]]),
                descriptors: rest[6..6 + tdl].to_vec(),
            });
            rest = &rest[6 + tdl..];
        }
        Ok(NitRepr {
            table_id: tid,
            network_id: s.table_id_extension(),
            version: s.version_number(),
            section_number: s.section_number(),
            last_section_number: s.last_section_number(),
            network_descriptors,
            transport_streams,
        })
    }

    pub fn network_descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.network_descriptors)
    }

    /// network_name_descriptor, decoded as one clean line.
    pub fn network_name(&self) -> Option<String> {
        self.network_descriptors()
            .find_map(|d| descriptor::network_name(&d).map(text::decode_name))
    }

    /// The whole section, CRC included; Malformed if a loop exceeds 12 bits
    /// or the section would exceed 1024 bytes.
    pub fn emit(&self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        if self.network_descriptors.len() > 0x0FFF {
            return Err(Error::Malformed);
        }
        body.extend_from_slice(&(0xF000 | self.network_descriptors.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.network_descriptors);
        let mut tsl = Vec::new();
        for t in &self.transport_streams {
            if t.descriptors.len() > 0x0FFF {
                return Err(Error::Malformed);
            }
            tsl.extend_from_slice(&t.transport_stream_id.to_be_bytes());
            tsl.extend_from_slice(&t.original_network_id.to_be_bytes());
            tsl.extend_from_slice(&(0xF000 | t.descriptors.len() as u16).to_be_bytes());
            tsl.extend_from_slice(&t.descriptors);
        }
        if tsl.len() > 0x0FFF || 5 + body.len() + 2 + tsl.len() + 4 > 1021 {
            return Err(Error::Malformed);
        }
        body.extend_from_slice(&(0xF000 | tsl.len() as u16).to_be_bytes());
        body.extend_from_slice(&tsl);
        let mut v = build_long_section(
            self.table_id,
            self.network_id,
            self.version,
            self.section_number,
            self.last_section_number,
            &body,
        );
        super::sdt::set_reserved_future_use(&mut v);
        Ok(v)
    }
}

/// Whether `loop_bytes` is exactly a whole number of transport stream
/// entries (6-byte header + its descriptors).
fn entries_fill(mut loop_bytes: &[u8]) -> bool {
    while !loop_bytes.is_empty() {
        if loop_bytes.len() < 6 {
            return false;
        }
        let tdl = loop_len(&loop_bytes[4..]);
        if 6 + tdl > loop_bytes.len() {
            return false;
        }
        loop_bytes = &loop_bytes[6 + tdl..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_delivery() {
        let nit = NitRepr {
            table_id: table_id::NIT_ACTUAL,
            network_id: 0x3001,
            version: 9,
            section_number: 0,
            last_section_number: 0,
            network_descriptors: [&[0x40, 11][..], b"LinuxTV.org"].concat(),
            transport_streams: vec![NitTransportStream {
                transport_stream_id: 4,
                original_network_id: 0x233A,
                // 474 MHz, 8 MHz, 64-QAM, 2/3, 1/4, 8k.
                descriptors: vec![
                    0x5A, 11, 0x02, 0xD3, 0x44, 0x40, 0x1F, 0x81, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF,
                    0x41, 3, 0x08, 0x80, 0x02,
                ],
            }],
        };
        let b = nit.emit().unwrap();
        let back = NitRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
        assert_eq!(back, nit);
        assert_eq!(back.network_name().as_deref(), Some("LinuxTV.org"));
        let Some(DeliverySystem::Terrestrial(t)) = back.transport_streams[0].delivery_system()
        else {
            panic!("no terrestrial delivery")
        };
        assert_eq!(t.centre_frequency, 474_000_000);
        assert_eq!(
            (t.bandwidth, t.constellation, t.code_rate_hp_stream),
            (0, 2, 1)
        );
        assert_eq!((t.guard_interval, t.transmission_mode), (3, 1));
        let sl = back.transport_streams[0].service_list();
        assert_eq!((sl[0].service_id, sl[0].service_type), (0x0880, 2));
    }

    #[test]
    fn vidtv_short_transport_loop_length_is_read_to_the_crc() {
        // vidtv (Linux 6.1) counts only the 6-byte entry headers in
        // transport_stream_loop_length. Rebuild such a section by hand.
        let name = [&[0x40, 11][..], b"LinuxTV.org"].concat();
        let ts_desc = [0x41u8, 3, 0x08, 0x80, 0x02];
        let mut body = vec![0xF0, name.len() as u8];
        body.extend_from_slice(&name);
        body.extend_from_slice(&[0xF0, 6]); // should be 6 + 5
        body.extend_from_slice(&[0, 4, 0x23, 0x3A, 0xF0, ts_desc.len() as u8]);
        body.extend_from_slice(&ts_desc);
        let b = build_long_section(0x40, 0x3001, 0, 0, 0, &body);
        let nit = NitRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
        assert_eq!(nit.network_name().as_deref(), Some("LinuxTV.org"));
        assert_eq!(nit.transport_streams.len(), 1);
        assert_eq!(
            nit.transport_streams[0].service_list()[0].service_id,
            0x0880
        );
    }

    #[test]
    fn truncated_loops() {
        let b = build_long_section(0x40, 1, 0, 0, 0, &[0xF0, 0x05, 0x40]);
        let s = Section::new_verified(&b[..]).unwrap();
        assert_eq!(NitRepr::parse(&s), Err(Error::Truncated));
        let b = build_long_section(
            0x40,
            1,
            0,
            0,
            0,
            &[0xF0, 0, 0xF0, 7, 0, 1, 0, 1, 0xF0, 9, 0],
        );
        let s = Section::new_verified(&b[..]).unwrap();
        assert_eq!(NitRepr::parse(&s), Err(Error::Truncated));
    }
}
