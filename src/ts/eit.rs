//! Event Information Table (EN 300 468 §5.2.4): present/following (0x4E
//! actual, 0x4F other) and schedule (0x50..=0x5F actual, 0x60..=0x6F other).
//!
//! Times are UTC. A start_time of all ones (undefined) or with invalid
//! MJD/BCD is `None` from `EitEvent::start_time`, never a wrong time; the raw
//! bytes are kept so a section can be re-emitted unchanged (`EitRepr::emit`
//! is byte-exact for a section whose reserved bits are set as the standard
//! says; a relay can also forward `Section::as_bytes` as is).

use super::descriptor::{self, ContentNibbles, Descriptors, ExtendedEventDescriptor};
use super::descriptor::{ParentalRating, ShortEventDescriptor};
use super::section::{build_long_section, Section};
use super::{table_id, tdt, text, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EitEvent {
    pub event_id: u16,
    /// UTC_time: MJD + BCD hhmmss, as on the wire.
    pub start_time_raw: [u8; 5],
    /// BCD hhmmss, as on the wire.
    pub duration_raw: [u8; 3],
    pub running_status: u8,
    pub free_ca_mode: bool,
    /// The descriptor loop, raw.
    pub descriptors: Vec<u8>,
}

/// Name and text of an event in one language (short_event_descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortEvent {
    /// ISO 639-2 code, e.g. "eng".
    pub language: String,
    /// event_name as one clean line (`text::decode_name`).
    pub name: String,
    pub text: String,
}

impl EitEvent {
    pub fn descriptors(&self) -> Descriptors<'_> {
        Descriptors::new(&self.descriptors)
    }

    /// Start as Unix seconds (UTC); `None` if undefined or invalid.
    pub fn start_time(&self) -> Option<i64> {
        tdt::utc_seconds(&self.start_time_raw)
    }

    /// Duration in seconds; `None` if undefined or invalid.
    pub fn duration(&self) -> Option<u32> {
        tdt::duration_seconds(&self.duration_raw)
    }

    /// Every short_event_descriptor, decoded (one per language).
    pub fn short_events(&self) -> Vec<ShortEvent> {
        self.short_events_with(None)
    }

    /// `short_events`, strings without a selector decoded with `default`
    /// (`text::decode_with`).
    pub fn short_events_with(&self, default: Option<text::Charset>) -> Vec<ShortEvent> {
        let dec = |b: &[u8]| {
            let mut s = String::new();
            text::decode_with(b, default, &mut s);
            s
        };
        self.descriptors()
            .filter_map(|d| ShortEventDescriptor::parse(&d))
            .map(|s| ShortEvent {
                language: descriptor::lang_str(&s.iso_639_language_code),
                name: text::clean_name(&dec(s.event_name)),
                text: dec(s.text),
            })
            .collect()
    }

    /// The short event in `language` (ISO 639-2, e.g. "deu") or, failing
    /// that, the first one.
    pub fn short_event(&self, language: Option<&str>) -> Option<ShortEvent> {
        let all = self.short_events();
        if let Some(l) = language {
            if let Some(e) = all.iter().find(|e| e.language.eq_ignore_ascii_case(l)) {
                return Some(e.clone());
            }
        }
        all.into_iter().next()
    }

    /// The extended_event_descriptors of the first language (or of
    /// `language` when given) joined in descriptor_number order: text and
    /// items ("description: item" lines). Text of one event is split across
    /// descriptors at arbitrary bytes, so the raw parts are concatenated
    /// before decoding (keeping the first part's table selector).
    pub fn extended_text(&self, language: Option<&str>) -> Option<String> {
        self.extended_text_with(language, None)
    }

    /// `extended_text`, strings without a selector decoded with `default`.
    pub fn extended_text_with(
        &self,
        language: Option<&str>,
        default: Option<text::Charset>,
    ) -> Option<String> {
        let decode = |b: &[u8]| {
            let mut s = String::new();
            text::decode_with(b, default, &mut s);
            s
        };
        let all: Vec<ExtendedEventDescriptor<'_>> = self
            .descriptors()
            .filter_map(|d| ExtendedEventDescriptor::parse(&d))
            .collect();
        let lang = match language {
            Some(l)
                if all.iter().any(|e| {
                    descriptor::lang_str(&e.iso_639_language_code).eq_ignore_ascii_case(l)
                }) =>
            {
                Some(l.to_ascii_lowercase())
            }
            _ => all
                .first()
                .map(|e| descriptor::lang_str(&e.iso_639_language_code).to_ascii_lowercase()),
        }?;
        let mut parts: Vec<_> = all
            .into_iter()
            .filter(|e| descriptor::lang_str(&e.iso_639_language_code).to_ascii_lowercase() == lang)
            .collect();
        parts.sort_by_key(|e| e.descriptor_number);
        let mut items = String::new();
        let mut raw = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            for (d, it) in p.items() {
                items.push_str(&decode(d));
                items.push_str(": ");
                items.push_str(&decode(it));
                items.push('\n');
            }
            let t = p.text;
            // Later parts repeat the selector; keep only the first.
            let (_, bare) = text::charset(t);
            let skip = t.len() - bare.len();
            if i == 0 || raw.is_empty() {
                raw.extend_from_slice(t);
            } else {
                raw.extend_from_slice(&t[skip..]);
            }
        }
        let mut out = items;
        out.push_str(&decode(&raw));
        Some(out)
    }

    /// Content classifications of every content_descriptor.
    pub fn content(&self) -> Vec<ContentNibbles> {
        self.descriptors()
            .flat_map(|d| descriptor::content(&d).collect::<Vec<_>>())
            .collect()
    }

    pub fn parental_ratings(&self) -> Vec<ParentalRating> {
        self.descriptors()
            .flat_map(|d| descriptor::parental_ratings(&d).collect::<Vec<_>>())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EitRepr {
    pub table_id: u8,
    pub service_id: u16,
    pub version: u8,
    pub current_next: bool,
    pub section_number: u8,
    pub last_section_number: u8,
    pub transport_stream_id: u16,
    pub original_network_id: u16,
    pub segment_last_section_number: u8,
    pub last_table_id: u8,
    pub events: Vec<EitEvent>,
}

/// Whether `tid` is an EIT table_id.
pub fn is_eit(tid: u8) -> bool {
    (table_id::EIT_PF_ACTUAL..=table_id::EIT_SCHED_OTHER_LAST).contains(&tid)
}

impl EitRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<EitRepr> {
        let tid = s.table_id();
        if !is_eit(tid) {
            return Err(Error::WrongTable);
        }
        if !s.syntax_indicator() {
            return Err(Error::Malformed);
        }
        let b = s.body();
        if b.len() < 6 {
            return Err(Error::Truncated);
        }
        let mut rest = &b[6..];
        let mut events = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 12 {
                return Err(Error::Truncated);
            }
            let dll = (u16::from_be_bytes([rest[10], rest[11]]) & 0x0FFF) as usize;
            if 12 + dll > rest.len() {
                return Err(Error::Truncated);
            }
            events.push(EitEvent {
                event_id: u16::from_be_bytes([rest[0], rest[1]]),
                start_time_raw: [rest[2], rest[3], rest[4], rest[5], rest[6]],
                duration_raw: [rest[7], rest[8], rest[9]],
                running_status: rest[10] >> 5,
                free_ca_mode: rest[10] & 0x10 != 0,
                descriptors: rest[12..12 + dll].to_vec(),
            });
            rest = &rest[12 + dll..];
        }
        Ok(EitRepr {
            table_id: tid,
            service_id: s.table_id_extension(),
            version: s.version_number(),
            current_next: s.current_next(),
            section_number: s.section_number(),
            last_section_number: s.last_section_number(),
            transport_stream_id: u16::from_be_bytes([b[0], b[1]]),
            original_network_id: u16::from_be_bytes([b[2], b[3]]),
            segment_last_section_number: b[4],
            last_table_id: b[5],
            events,
        })
    }

    pub fn is_actual(&self) -> bool {
        self.table_id == table_id::EIT_PF_ACTUAL
            || (table_id::EIT_SCHED_ACTUAL_FIRST..=table_id::EIT_SCHED_ACTUAL_LAST)
                .contains(&self.table_id)
    }

    pub fn is_present_following(&self) -> bool {
        self.table_id == table_id::EIT_PF_ACTUAL || self.table_id == table_id::EIT_PF_OTHER
    }

    /// The section, CRC included; Malformed beyond 4096 bytes.
    pub fn emit(&self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.transport_stream_id.to_be_bytes());
        body.extend_from_slice(&self.original_network_id.to_be_bytes());
        body.push(self.segment_last_section_number);
        body.push(self.last_table_id);
        for e in &self.events {
            if e.descriptors.len() > 0x0FFF {
                return Err(Error::Malformed);
            }
            body.extend_from_slice(&e.event_id.to_be_bytes());
            body.extend_from_slice(&e.start_time_raw);
            body.extend_from_slice(&e.duration_raw);
            let w = ((e.running_status as u16 & 7) << 13)
                | ((e.free_ca_mode as u16) << 12)
                | e.descriptors.len() as u16;
            body.extend_from_slice(&w.to_be_bytes());
            body.extend_from_slice(&e.descriptors);
        }
        if 5 + body.len() + 4 > 4093 {
            return Err(Error::Malformed);
        }
        let mut v = build_long_section(
            self.table_id,
            self.service_id,
            self.version,
            self.section_number,
            self.last_section_number,
            &body,
        );
        if !self.current_next {
            v[5] &= !1;
        }
        super::sdt::set_reserved_future_use(&mut v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short_event(lang: &[u8; 3], name: &[u8], txt: &[u8]) -> Vec<u8> {
        let mut d = vec![0x4D, (5 + name.len() + txt.len()) as u8];
        d.extend_from_slice(lang);
        d.push(name.len() as u8);
        d.extend_from_slice(name);
        d.push(txt.len() as u8);
        d.extend_from_slice(txt);
        d
    }

    fn extended(num: u8, last: u8, lang: &[u8; 3], items: &[u8], txt: &[u8]) -> Vec<u8> {
        let mut d = vec![0x4E, (6 + items.len() + txt.len()) as u8, num << 4 | last];
        d.extend_from_slice(lang);
        d.push(items.len() as u8);
        d.extend_from_slice(items);
        d.push(txt.len() as u8);
        d.extend_from_slice(txt);
        d
    }

    #[test]
    fn events_round_trip() {
        let mut d = short_event(b"fra", b"Le Journal", b"\x0BInfos \xA4");
        d.extend(short_event(b"eng", b"The News", b"Headlines"));
        d.extend(extended(1, 1, b"eng", b"", b"\x15 part two \xC3\xA9"));
        d.extend(extended(
            0,
            1,
            b"eng",
            b"\x08Director\x03Bob",
            b"\x15Part one,",
        ));
        d.extend([0x54, 4, 0x21, 0x00, 0x41, 0x07]);
        d.extend([0x55, 4, b'F', b'R', b'A', 0x09]);
        let eit = EitRepr {
            table_id: table_id::EIT_PF_ACTUAL,
            service_id: 0x0880,
            version: 5,
            current_next: true,
            section_number: 0,
            last_section_number: 1,
            transport_stream_id: 4,
            original_network_id: 0x233A,
            segment_last_section_number: 1,
            last_table_id: 0x4E,
            events: vec![
                EitEvent {
                    event_id: 0x1234,
                    start_time_raw: [0xC0, 0x79, 0x12, 0x45, 0x00],
                    duration_raw: [0x01, 0x30, 0x00],
                    running_status: 4,
                    free_ca_mode: false,
                    descriptors: d,
                },
                EitEvent {
                    event_id: 1,
                    start_time_raw: [0xFF; 5],
                    duration_raw: [0x00, 0x99, 0x00],
                    running_status: 1,
                    free_ca_mode: true,
                    descriptors: vec![],
                },
            ],
        };
        let b = eit.emit().unwrap();
        let back = EitRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
        assert_eq!(back, eit);
        assert!(back.is_actual() && back.is_present_following());
        let e = &back.events[0];
        assert_eq!(e.start_time(), Some(750_516_300));
        assert_eq!(e.duration(), Some(5400));
        let s = e.short_event(Some("eng")).unwrap();
        assert_eq!(
            (s.name.as_str(), s.text.as_str()),
            ("The News", "Headlines")
        );
        assert_eq!(e.short_event(None).unwrap().text, "Infos €");
        assert_eq!(
            e.extended_text(None).as_deref(),
            Some("Director: Bob\nPart one, part two é")
        );
        let c = e.content();
        assert_eq!(
            (c[0].content_nibble_level_1, c[0].content_nibble_level_2),
            (2, 1)
        );
        assert_eq!(c[1].genre(), "Sports");
        assert_eq!(e.parental_ratings()[0].minimum_age(), Some(12));
        assert_eq!(back.events[1].start_time(), None);
        assert_eq!(back.events[1].duration(), None);
    }
}
