//! Service Description Table (EN 300 468 §5.2.3): actual (0x42) and other
//! (0x46) transport streams.
//!
//! `SdtRepr::parse` refuses a service loop entry that runs past the section
//! (Truncated); `emit` writes one section and refuses (Malformed) a table that
//! would exceed the 1024-byte SDT section limit, so the remux never sends a
//! broken SDT. `with_only_service` is the remux's rewrite to one service.

use super::descriptor::{Descriptors, ServiceDescriptor};
use super::section::{build_long_section, Section};
use super::{table_id, text, Error, Result};

/// Largest section_length of an SDT (EN 300 468 §5.2.3).
pub const MAX_SDT_SECTION_LENGTH: usize = 1021;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdtService {
    pub service_id: u16,
    pub eit_schedule_flag: bool,
    pub eit_present_following_flag: bool,
    /// 0 undefined, 1 not running, 2 starts in a few seconds, 3 pausing,
    /// 4 running, 5 service off-air.
    pub running_status: u8,
    pub free_ca_mode: bool,
    /// The descriptor loop, raw.
    pub descriptors: Vec<u8>,
}

impl SdtService {
    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    /// The first service_descriptor.
    pub fn service_descriptor(&self) -> Option<ServiceDescriptor<'_>> {
        self.descriptors()
            .find_map(|d| ServiceDescriptor::parse(&d))
    }

    pub fn service_type(&self) -> Option<u8> {
        self.service_descriptor().map(|s| s.service_type)
    }

    /// service_name decoded from DVB text, as one clean line
    /// (`text::decode_name`).
    pub fn service_name(&self) -> Option<String> {
        self.service_descriptor()
            .map(|s| text::decode_name(s.service_name))
    }

    /// service_provider_name decoded from DVB text, as one clean line.
    pub fn provider_name(&self) -> Option<String> {
        self.service_descriptor()
            .map(|s| text::decode_name(s.service_provider_name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdtRepr {
    /// SDT_ACTUAL (0x42) or SDT_OTHER (0x46).
    pub table_id: u8,
    pub transport_stream_id: u16,
    pub version: u8,
    pub section_number: u8,
    pub last_section_number: u8,
    pub original_network_id: u16,
    pub services: Vec<SdtService>,
}

impl SdtRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<SdtRepr> {
        let tid = s.table_id();
        if tid != table_id::SDT_ACTUAL && tid != table_id::SDT_OTHER {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        let b = s.body();
        if b.len() < 3 {
            return Err(Error::Truncated);
        }
        let original_network_id = u16::from_be_bytes([b[0], b[1]]);
        let mut rest = &b[3..];
        let mut services = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 5 {
                return Err(Error::Truncated);
            }
            let dll = (u16::from_be_bytes([rest[3], rest[4]]) & 0x0FFF) as usize;
            if 5 + dll > rest.len() {
                return Err(Error::Truncated);
            }
            services.push(SdtService {
                service_id: u16::from_be_bytes([rest[0], rest[1]]),
                eit_schedule_flag: rest[2] & 0x02 != 0,
                eit_present_following_flag: rest[2] & 0x01 != 0,
                running_status: rest[3] >> 5,
                free_ca_mode: rest[3] & 0x10 != 0,
                descriptors: rest[5..5 + dll].to_vec(),
            });
            rest = &rest[5 + dll..];
        }
        Ok(SdtRepr {
            table_id: tid,
            transport_stream_id: s.table_id_extension(),
            version: s.version_number(),
            section_number: s.section_number(),
            last_section_number: s.last_section_number(),
            original_network_id,
            services,
        })
    }

    pub fn is_actual(&self) -> bool {
        self.table_id == table_id::SDT_ACTUAL
    }

    pub fn service(&self, service_id: u16) -> Option<&SdtService> {
        self.services.iter().find(|s| s.service_id == service_id)
    }

    /// This table reduced to `service_id` as a single-section table (section
    /// 0 of 0), same version; `None` if this section does not describe it.
    pub fn with_only_service(&self, service_id: u16) -> Option<SdtRepr> {
        let svc = self.service(service_id)?.clone();
        Some(SdtRepr {
            section_number: 0,
            last_section_number: 0,
            services: vec![svc],
            ..self.clone()
        })
    }

    /// The whole section, CRC included; Malformed if it would not fit in one
    /// SDT section or a descriptor loop exceeds 12 bits.
    pub fn emit(&self) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(
            3 + self
                .services
                .iter()
                .map(|s| 5 + s.descriptors.len())
                .sum::<usize>(),
        );
        body.extend_from_slice(&self.original_network_id.to_be_bytes());
        body.push(0xFF); // reserved_future_use
        for s in &self.services {
            if s.descriptors.len() > 0x0FFF {
                return Err(Error::Malformed);
            }
            body.extend_from_slice(&s.service_id.to_be_bytes());
            body.push(0xFC | (s.eit_schedule_flag as u8) << 1 | s.eit_present_following_flag as u8);
            let w = ((s.running_status as u16 & 7) << 13)
                | ((s.free_ca_mode as u16) << 12)
                | s.descriptors.len() as u16;
            body.extend_from_slice(&w.to_be_bytes());
            body.extend_from_slice(&s.descriptors);
        }
        if 5 + body.len() + 4 > MAX_SDT_SECTION_LENGTH {
            return Err(Error::Malformed);
        }
        let mut v = build_long_section(
            self.table_id,
            self.transport_stream_id,
            self.version,
            self.section_number,
            self.last_section_number,
            &body,
        );
        set_reserved_future_use(&mut v);
        Ok(v)
    }
}

/// DVB SI sections set reserved_future_use (the bit after
/// section_syntax_indicator) to 1, as ffmpeg and biTStream write it;
/// `build_long_section` writes the MPEG private_indicator 0. Fix the bit and
/// the CRC.
pub(crate) fn set_reserved_future_use(v: &mut [u8]) {
    if v.len() < 7 {
        return;
    }
    v[1] |= 0x40;
    let n = v.len();
    let crc = super::crc::crc32_mpeg2(&v[..n - 4]);
    v[n - 4..].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_one_service() {
        let mut d1 = Vec::new();
        ServiceDescriptor {
            service_type: 1,
            service_provider_name: b"Prov",
            service_name: b"\x0BCha\xEEne \xA4",
        }
        .emit(&mut d1);
        let sdt = SdtRepr {
            table_id: table_id::SDT_ACTUAL,
            transport_stream_id: 7,
            version: 3,
            section_number: 0,
            last_section_number: 0,
            original_network_id: 0x233A,
            services: vec![
                SdtService {
                    service_id: 0x0880,
                    eit_schedule_flag: true,
                    eit_present_following_flag: false,
                    running_status: 4,
                    free_ca_mode: true,
                    descriptors: d1,
                },
                SdtService {
                    service_id: 2,
                    eit_schedule_flag: false,
                    eit_present_following_flag: true,
                    running_status: 1,
                    free_ca_mode: false,
                    descriptors: vec![],
                },
            ],
        };
        let b = sdt.emit().unwrap();
        let s = Section::new_verified(&b[..]).unwrap();
        let back = SdtRepr::parse(&s).unwrap();
        assert_eq!(back, sdt);
        assert_eq!(back.services[0].service_name().as_deref(), Some("Chaîne €"));
        assert_eq!(back.services[0].provider_name().as_deref(), Some("Prov"));
        let one = back.with_only_service(2).unwrap();
        assert_eq!(one.services.len(), 1);
        let b = one.emit().unwrap();
        let back = SdtRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
        assert_eq!(back.services[0].service_id, 2);
        assert!(back.with_only_service(0x0880).is_none());
    }

    #[test]
    fn too_big_refused_and_truncated_loop() {
        let sdt = SdtRepr {
            table_id: table_id::SDT_OTHER,
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            original_network_id: 1,
            services: vec![
                SdtService {
                    service_id: 1,
                    eit_schedule_flag: false,
                    eit_present_following_flag: false,
                    running_status: 0,
                    free_ca_mode: false,
                    descriptors: vec![0x80, 0xFF].into_iter().chain([0u8; 255]).collect(),
                };
                4
            ],
        };
        assert_eq!(sdt.emit(), Err(Error::Malformed));
        let body = [0, 1, 0xFF, 0, 1, 0xFC, 0x80, 0x10, 1, 2];
        let b = build_long_section(0x42, 1, 0, 0, 0, &body);
        let s = Section::new_verified(&b[..]).unwrap();
        assert_eq!(SdtRepr::parse(&s), Err(Error::Truncated));
    }
}
