//! Descriptor loops (ISO/IEC 13818-1 §2.6, EN 300 468 §6): tag, length, body.
//!
//! `Descriptors` walks a loop without allocating; a descriptor whose length
//! runs past the loop ends the walk (counted by the caller through
//! `Descriptors::truncated`).

/// A raw descriptor: tag and body (after the 2-byte header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor<'a> {
    pub tag: u8,
    pub data: &'a [u8],
}

impl<'a> Descriptor<'a> {
    /// The descriptor as it was on the wire, header included.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.tag);
        out.push(self.data.len() as u8);
        out.extend_from_slice(self.data);
    }
}

/// Iterator over a descriptor loop.
#[derive(Debug, Clone)]
pub struct Descriptors<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Descriptors<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Descriptors {
            rest: buf,
            truncated: false,
        }
    }

    /// True once the walk met a descriptor longer than what was left.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Descriptors<'a> {
    type Item = Descriptor<'a>;
    fn next(&mut self) -> Option<Descriptor<'a>> {
        if self.rest.len() < 2 {
            if !self.rest.is_empty() {
                self.truncated = true;
                self.rest = &[];
            }
            return None;
        }
        let tag = self.rest[0];
        let len = self.rest[1] as usize;
        if 2 + len > self.rest.len() {
            self.truncated = true;
            self.rest = &[];
            return None;
        }
        let d = Descriptor {
            tag,
            data: &self.rest[2..2 + len],
        };
        self.rest = &self.rest[2 + len..];
        Some(d)
    }
}

/// Descriptor tags capbox looks at.
pub mod tag {
    pub const REGISTRATION: u8 = 0x05;
    pub const CA: u8 = 0x09;
    pub const ISO_639_LANGUAGE: u8 = 0x0A;
    pub const NETWORK_NAME: u8 = 0x40;
    pub const SERVICE_LIST: u8 = 0x41;
    pub const SATELLITE_DELIVERY: u8 = 0x43;
    pub const CABLE_DELIVERY: u8 = 0x44;
    pub const SHORT_EVENT: u8 = 0x4D;
    pub const EXTENDED_EVENT: u8 = 0x4E;
    pub const SERVICE: u8 = 0x48;
    pub const STREAM_IDENTIFIER: u8 = 0x52;
    pub const COMPONENT: u8 = 0x50;
    pub const CONTENT: u8 = 0x54;
    pub const PARENTAL_RATING: u8 = 0x55;
    pub const TELETEXT: u8 = 0x56;
    pub const LOCAL_TIME_OFFSET: u8 = 0x58;
    pub const SUBTITLING: u8 = 0x59;
    pub const TERRESTRIAL_DELIVERY: u8 = 0x5A;
    pub const AC3: u8 = 0x6A;
    pub const ENHANCED_AC3: u8 = 0x7A;
    pub const AAC: u8 = 0x7C;
    pub const EXTENSION: u8 = 0x7F;
}

/// CA_descriptor (§2.6.16): CA_system_ID and the PID of its ECMs (in a PMT)
/// or EMMs (in a CAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaDescriptor<'a> {
    pub ca_system_id: u16,
    pub ca_pid: u16,
    pub private_data: &'a [u8],
}

impl<'a> CaDescriptor<'a> {
    pub fn parse(d: &Descriptor<'a>) -> Option<CaDescriptor<'a>> {
        if d.tag != tag::CA || d.data.len() < 4 {
            return None;
        }
        Some(CaDescriptor {
            ca_system_id: u16::from_be_bytes([d.data[0], d.data[1]]),
            ca_pid: u16::from_be_bytes([d.data[2], d.data[3]]) & 0x1FFF,
            private_data: &d.data[4..],
        })
    }
}

/// One entry of an ISO_639_language_descriptor (§2.6.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    pub code: [u8; 3],
    /// 0 undefined, 1 clean effects, 2 hearing impaired, 3 visual impaired
    /// commentary (audio description).
    pub audio_type: u8,
}

impl Language {
    pub fn code_str(&self) -> String {
        self.code
            .iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
            .collect()
    }
}

/// Entries of an ISO_639_language_descriptor.
pub fn languages<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = Language> + 'a {
    let data = if d.tag == tag::ISO_639_LANGUAGE {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(4).map(|c| Language {
        code: [c[0], c[1], c[2]],
        audio_type: c[3],
    })
}

// ---------------------------------------------------------------------------
// Typed DVB descriptors (EN 300 468 §6.2). Each `parse` returns `None` when
// the tag is not its own or the body is too short for the fixed part; text
// fields are raw DVB strings (decode with `ts::text::decode`).
// ---------------------------------------------------------------------------

fn lang3(b: &[u8]) -> [u8; 3] {
    [b[0], b[1], b[2]]
}

/// An ISO 639-2 code as text ('?' for a non-graphic byte).
pub fn lang_str(code: &[u8; 3]) -> String {
    code.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

/// Split `len`-prefixed bytes off `b`: (field, rest).
fn counted(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = b.split_first()?;
    let n = n as usize;
    if n > rest.len() {
        return None;
    }
    Some(rest.split_at(n))
}

/// BCD digits of `b` as a number; `None` on a nibble above 9.
fn bcd_digits(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &x in b {
        let (h, l) = (x >> 4, x & 0x0F);
        if h > 9 || l > 9 {
            return None;
        }
        v = v * 100 + h as u64 * 10 + l as u64;
    }
    Some(v)
}

/// network_name_descriptor (0x40): the raw DVB string.
pub fn network_name<'a>(d: &Descriptor<'a>) -> Option<&'a [u8]> {
    (d.tag == tag::NETWORK_NAME).then_some(d.data)
}

/// One entry of a service_list_descriptor (0x41).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceListEntry {
    pub service_id: u16,
    pub service_type: u8,
}

/// Entries of a service_list_descriptor (0x41); empty for another tag.
pub fn service_list<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = ServiceListEntry> + 'a {
    let data = if d.tag == tag::SERVICE_LIST {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(3).map(|c| ServiceListEntry {
        service_id: u16::from_be_bytes([c[0], c[1]]),
        service_type: c[2],
    })
}

/// service_descriptor (0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDescriptor<'a> {
    /// 0x01 digital TV, 0x02 digital radio, 0x0C data, 0x16/0x19/0x1F
    /// advanced codec SD/HD/HEVC TV, … (EN 300 468 table 87).
    pub service_type: u8,
    pub service_provider_name: &'a [u8],
    pub service_name: &'a [u8],
}

impl<'a> ServiceDescriptor<'a> {
    pub fn parse(d: &Descriptor<'a>) -> Option<ServiceDescriptor<'a>> {
        if d.tag != tag::SERVICE {
            return None;
        }
        let (&service_type, rest) = d.data.split_first()?;
        let (service_provider_name, rest) = counted(rest)?;
        let (service_name, _) = counted(rest)?;
        Some(ServiceDescriptor {
            service_type,
            service_provider_name,
            service_name,
        })
    }

    /// Append the descriptor; names longer than fits are cut.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let p = &self.service_provider_name[..self.service_provider_name.len().min(126)];
        let n = &self.service_name[..self.service_name.len().min(126)];
        out.push(tag::SERVICE);
        out.push((3 + p.len() + n.len()) as u8);
        out.push(self.service_type);
        out.push(p.len() as u8);
        out.extend_from_slice(p);
        out.push(n.len() as u8);
        out.extend_from_slice(n);
    }
}

/// short_event_descriptor (0x4D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortEventDescriptor<'a> {
    pub iso_639_language_code: [u8; 3],
    pub event_name: &'a [u8],
    pub text: &'a [u8],
}

impl<'a> ShortEventDescriptor<'a> {
    pub fn parse(d: &Descriptor<'a>) -> Option<ShortEventDescriptor<'a>> {
        if d.tag != tag::SHORT_EVENT || d.data.len() < 3 {
            return None;
        }
        let (event_name, rest) = counted(&d.data[3..])?;
        let (text, _) = counted(rest)?;
        Some(ShortEventDescriptor {
            iso_639_language_code: lang3(d.data),
            event_name,
            text,
        })
    }
}

/// extended_event_descriptor (0x4E).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedEventDescriptor<'a> {
    pub descriptor_number: u8,
    pub last_descriptor_number: u8,
    pub iso_639_language_code: [u8; 3],
    /// The item loop, raw: see `items()`.
    pub items: &'a [u8],
    pub text: &'a [u8],
}

impl<'a> ExtendedEventDescriptor<'a> {
    pub fn parse(d: &Descriptor<'a>) -> Option<ExtendedEventDescriptor<'a>> {
        if d.tag != tag::EXTENDED_EVENT || d.data.len() < 4 {
            return None;
        }
        let (items, rest) = counted(&d.data[4..])?;
        let (text, _) = counted(rest)?;
        Some(ExtendedEventDescriptor {
            descriptor_number: d.data[0] >> 4,
            last_descriptor_number: d.data[0] & 0x0F,
            iso_639_language_code: lang3(&d.data[1..]),
            items,
            text,
        })
    }

    /// (item_description, item) pairs, raw DVB strings; stops at a truncated
    /// pair.
    pub fn items(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.items;
        core::iter::from_fn(move || {
            let (desc, r) = counted(rest)?;
            let (item, r) = counted(r)?;
            rest = r;
            Some((desc, item))
        })
    }
}

/// One classification of a content_descriptor (0x54).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentNibbles {
    pub content_nibble_level_1: u8,
    pub content_nibble_level_2: u8,
    pub user_byte: u8,
}

impl ContentNibbles {
    /// Genre of level 1 (EN 300 468 table 29), English.
    pub fn genre(&self) -> &'static str {
        match self.content_nibble_level_1 {
            0x1 => "Movie/Drama",
            0x2 => "News/Current affairs",
            0x3 => "Show/Game show",
            0x4 => "Sports",
            0x5 => "Children's/Youth programmes",
            0x6 => "Music/Ballet/Dance",
            0x7 => "Arts/Culture",
            0x8 => "Social/Political issues/Economics",
            0x9 => "Education/Science/Factual topics",
            0xA => "Leisure hobbies",
            0xB => "Special characteristics",
            0xC..=0xE => "Reserved",
            0xF => "User defined",
            _ => "Undefined content",
        }
    }
}

/// Entries of a content_descriptor (0x54); empty for another tag.
pub fn content<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = ContentNibbles> + 'a {
    let data = if d.tag == tag::CONTENT {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(2).map(|c| ContentNibbles {
        content_nibble_level_1: c[0] >> 4,
        content_nibble_level_2: c[0] & 0x0F,
        user_byte: c[1],
    })
}

/// One entry of a parental_rating_descriptor (0x55).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentalRating {
    pub country_code: [u8; 3],
    pub rating: u8,
}

impl ParentalRating {
    /// Minimum age (rating + 3) for ratings 0x01..=0x0F; others are
    /// undefined or broadcaster-defined.
    pub fn minimum_age(&self) -> Option<u8> {
        (1..=0x0F).contains(&self.rating).then(|| self.rating + 3)
    }
}

/// Entries of a parental_rating_descriptor (0x55); empty for another tag.
pub fn parental_ratings<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = ParentalRating> + 'a {
    let data = if d.tag == tag::PARENTAL_RATING {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(4).map(|c| ParentalRating {
        country_code: lang3(c),
        rating: c[3],
    })
}

/// One entry of a local_time_offset_descriptor (0x58).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTimeOffset {
    pub country_code: [u8; 3],
    pub country_region_id: u8,
    /// false: local time is ahead of UTC (east of Greenwich); true: behind.
    pub local_time_offset_polarity: bool,
    /// Raw 4 BCD digits hhmm.
    pub local_time_offset_raw: [u8; 2],
    /// Raw UTC_time (MJD + BCD) of the next change.
    pub time_of_change_raw: [u8; 5],
    pub next_time_offset_raw: [u8; 2],
}

fn offset_minutes(raw: &[u8; 2], negative: bool) -> Option<i32> {
    let hh = bcd_digits(&raw[..1])? as i32;
    let mm = bcd_digits(&raw[1..])? as i32;
    if mm > 59 {
        return None;
    }
    let v = hh * 60 + mm;
    Some(if negative { -v } else { v })
}

impl LocalTimeOffset {
    /// Signed offset from UTC in minutes (local = UTC + offset).
    pub fn local_time_offset(&self) -> Option<i32> {
        offset_minutes(&self.local_time_offset_raw, self.local_time_offset_polarity)
    }

    /// time_of_change as Unix seconds.
    pub fn time_of_change(&self) -> Option<i64> {
        crate::ts::tdt::utc_seconds(&self.time_of_change_raw)
    }

    /// Signed offset after time_of_change, in minutes.
    pub fn next_time_offset(&self) -> Option<i32> {
        offset_minutes(&self.next_time_offset_raw, self.local_time_offset_polarity)
    }
}

/// Entries of a local_time_offset_descriptor (0x58); empty for another tag.
pub fn local_time_offsets<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = LocalTimeOffset> + 'a {
    let data = if d.tag == tag::LOCAL_TIME_OFFSET {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(13).map(|c| LocalTimeOffset {
        country_code: lang3(c),
        country_region_id: c[3] >> 2,
        local_time_offset_polarity: c[3] & 1 != 0,
        local_time_offset_raw: [c[4], c[5]],
        time_of_change_raw: [c[6], c[7], c[8], c[9], c[10]],
        next_time_offset_raw: [c[11], c[12]],
    })
}

/// component_descriptor (0x50).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentDescriptor<'a> {
    pub stream_content_ext: u8,
    pub stream_content: u8,
    pub component_type: u8,
    pub component_tag: u8,
    pub iso_639_language_code: [u8; 3],
    pub text: &'a [u8],
}

impl<'a> ComponentDescriptor<'a> {
    pub fn parse(d: &Descriptor<'a>) -> Option<ComponentDescriptor<'a>> {
        if d.tag != tag::COMPONENT || d.data.len() < 6 {
            return None;
        }
        let b = d.data;
        Some(ComponentDescriptor {
            stream_content_ext: b[0] >> 4,
            stream_content: b[0] & 0x0F,
            component_type: b[1],
            component_tag: b[2],
            iso_639_language_code: lang3(&b[3..]),
            text: &b[6..],
        })
    }
}

/// stream_identifier_descriptor (0x52): component_tag.
pub fn stream_identifier(d: &Descriptor<'_>) -> Option<u8> {
    if d.tag != tag::STREAM_IDENTIFIER {
        return None;
    }
    d.data.first().copied()
}

/// One entry of a subtitling_descriptor (0x59).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtitling {
    pub iso_639_language_code: [u8; 3],
    pub subtitling_type: u8,
    pub composition_page_id: u16,
    pub ancillary_page_id: u16,
}

/// Entries of a subtitling_descriptor (0x59); empty for another tag.
pub fn subtitling<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = Subtitling> + 'a {
    let data = if d.tag == tag::SUBTITLING {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(8).map(|c| Subtitling {
        iso_639_language_code: lang3(c),
        subtitling_type: c[3],
        composition_page_id: u16::from_be_bytes([c[4], c[5]]),
        ancillary_page_id: u16::from_be_bytes([c[6], c[7]]),
    })
}

/// One entry of a teletext_descriptor (0x56) or VBI teletext (0x46).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Teletext {
    pub iso_639_language_code: [u8; 3],
    /// 0x01 initial page, 0x02 subtitle page, 0x05 subtitles for the
    /// hearing impaired, …
    pub teletext_type: u8,
    /// 1..=8 (0 on the wire means 8).
    pub teletext_magazine_number: u8,
    /// Two BCD digits, as on the wire.
    pub teletext_page_number: u8,
}

impl Teletext {
    /// Page as viewers know it, e.g. 888; `None` for a non-decimal page.
    pub fn page(&self) -> Option<u16> {
        let p = bcd_digits(&[self.teletext_page_number])? as u16;
        Some(self.teletext_magazine_number as u16 * 100 + p)
    }
}

/// Entries of a teletext_descriptor (0x56, or 0x46); empty for another tag.
pub fn teletext<'a>(d: &Descriptor<'a>) -> impl Iterator<Item = Teletext> + 'a {
    let data = if d.tag == tag::TELETEXT || d.tag == 0x46 {
        d.data
    } else {
        &[][..]
    };
    data.chunks_exact(5).map(|c| {
        let mag = c[3] & 0x07;
        Teletext {
            iso_639_language_code: lang3(c),
            teletext_type: c[3] >> 3,
            teletext_magazine_number: if mag == 0 { 8 } else { mag },
            teletext_page_number: c[4],
        }
    })
}

/// The 7 BCD digits of symbol_rate (bytes 7..=10, the last nibble is
/// FEC_inner, which may be 0xF).
fn symbol_rate_digits(b: &[u8]) -> Option<u64> {
    let hi = bcd_digits(&b[7..10])?;
    let last = (b[10] >> 4) as u64;
    if last > 9 {
        return None;
    }
    Some(hi * 10 + last)
}

/// satellite_delivery_system_descriptor (0x43).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SatelliteDelivery {
    /// Hz (8 BCD digits of 10 kHz on the wire).
    pub frequency: u64,
    /// Tenths of a degree (4 BCD digits).
    pub orbital_position: u16,
    /// true = east.
    pub west_east_flag: bool,
    /// 0 linear horizontal, 1 linear vertical, 2 circular left, 3 right.
    pub polarization: u8,
    /// 0 α=0.35, 1 0.25, 2 0.20 (DVB-S2 only).
    pub roll_off: u8,
    /// false DVB-S, true DVB-S2.
    pub modulation_system: bool,
    /// 0 auto, 1 QPSK, 2 8PSK, 3 16QAM.
    pub modulation_type: u8,
    /// Symbols per second (7 BCD digits of 100 sym/s).
    pub symbol_rate: u64,
    /// EN 300 468 table 35: 1 = 1/2, 2 = 2/3, 3 = 3/4, 4 = 5/6, 5 = 7/8,
    /// 6 = 8/9, 7 = 3/5, 8 = 4/5, 9 = 9/10, 15 = none.
    pub fec_inner: u8,
}

impl SatelliteDelivery {
    pub fn parse(d: &Descriptor<'_>) -> Option<SatelliteDelivery> {
        if d.tag != tag::SATELLITE_DELIVERY || d.data.len() < 11 {
            return None;
        }
        let b = d.data;
        let sr = symbol_rate_digits(b)?;
        Some(SatelliteDelivery {
            frequency: bcd_digits(&b[0..4])? * 10_000,
            orbital_position: bcd_digits(&b[4..6])? as u16,
            west_east_flag: b[6] & 0x80 != 0,
            polarization: (b[6] >> 5) & 3,
            roll_off: (b[6] >> 3) & 3,
            modulation_system: b[6] & 0x04 != 0,
            modulation_type: b[6] & 3,
            symbol_rate: sr * 100,
            fec_inner: b[10] & 0x0F,
        })
    }
}

/// cable_delivery_system_descriptor (0x44).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CableDelivery {
    /// Hz (8 BCD digits of 100 Hz on the wire).
    pub frequency: u64,
    /// 1 none, 2 RS(204/188).
    pub fec_outer: u8,
    /// 1 16-QAM, 2 32, 3 64, 4 128, 5 256-QAM.
    pub modulation: u8,
    /// Symbols per second.
    pub symbol_rate: u64,
    pub fec_inner: u8,
}

impl CableDelivery {
    pub fn parse(d: &Descriptor<'_>) -> Option<CableDelivery> {
        if d.tag != tag::CABLE_DELIVERY || d.data.len() < 11 {
            return None;
        }
        let b = d.data;
        Some(CableDelivery {
            frequency: bcd_digits(&b[0..4])? * 100,
            fec_outer: b[5] & 0x0F,
            modulation: b[6],
            symbol_rate: symbol_rate_digits(b)? * 100,
            fec_inner: b[10] & 0x0F,
        })
    }
}

/// terrestrial_delivery_system_descriptor (0x5A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerrestrialDelivery {
    /// Hz (binary, 10 Hz units on the wire).
    pub centre_frequency: u64,
    /// 0 8 MHz, 1 7 MHz, 2 6 MHz, 3 5 MHz.
    pub bandwidth: u8,
    pub priority: bool,
    pub time_slicing_indicator: bool,
    pub mpe_fec_indicator: bool,
    /// 0 QPSK, 1 16-QAM, 2 64-QAM.
    pub constellation: u8,
    pub hierarchy_information: u8,
    pub code_rate_hp_stream: u8,
    pub code_rate_lp_stream: u8,
    /// 0 1/32, 1 1/16, 2 1/8, 3 1/4.
    pub guard_interval: u8,
    /// 0 2k, 1 8k, 2 4k.
    pub transmission_mode: u8,
    pub other_frequency_flag: bool,
}

impl TerrestrialDelivery {
    pub fn parse(d: &Descriptor<'_>) -> Option<TerrestrialDelivery> {
        if d.tag != tag::TERRESTRIAL_DELIVERY || d.data.len() < 7 {
            return None;
        }
        let b = d.data;
        Some(TerrestrialDelivery {
            centre_frequency: u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64 * 10,
            bandwidth: b[4] >> 5,
            priority: b[4] & 0x10 != 0,
            time_slicing_indicator: b[4] & 0x08 != 0,
            mpe_fec_indicator: b[4] & 0x04 != 0,
            constellation: b[5] >> 6,
            hierarchy_information: (b[5] >> 3) & 7,
            code_rate_hp_stream: b[5] & 7,
            code_rate_lp_stream: b[6] >> 5,
            guard_interval: (b[6] >> 3) & 3,
            transmission_mode: (b[6] >> 1) & 3,
            other_frequency_flag: b[6] & 1 != 0,
        })
    }
}

/// A delivery system descriptor of a NIT transport stream loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverySystem {
    Satellite(SatelliteDelivery),
    Cable(CableDelivery),
    Terrestrial(TerrestrialDelivery),
}

impl DeliverySystem {
    pub fn parse(d: &Descriptor<'_>) -> Option<DeliverySystem> {
        match d.tag {
            tag::SATELLITE_DELIVERY => SatelliteDelivery::parse(d).map(DeliverySystem::Satellite),
            tag::CABLE_DELIVERY => CableDelivery::parse(d).map(DeliverySystem::Cable),
            tag::TERRESTRIAL_DELIVERY => {
                TerrestrialDelivery::parse(d).map(DeliverySystem::Terrestrial)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_and_truncation() {
        let buf = [
            0x0A, 4, b'f', b'r', b'a', 0, 0x09, 4, 0x01, 0x00, 0xE1, 0x00, 0x52, 5, 1,
        ];
        let mut it = Descriptors::new(&buf);
        let d = it.next().unwrap();
        assert_eq!(languages(&d).next().unwrap().code_str(), "fra");
        let ca = CaDescriptor::parse(&it.next().unwrap()).unwrap();
        assert_eq!((ca.ca_system_id, ca.ca_pid), (0x0100, 0x0100));
        assert!(it.next().is_none());
        assert!(it.truncated());
    }

    #[test]
    fn typed_dvb_descriptors() {
        // service_descriptor: TV, provider "P", name "Name".
        let sd = Descriptor {
            tag: 0x48,
            data: &[0x01, 1, b'P', 4, b'N', b'a', b'm', b'e'],
        };
        let s = ServiceDescriptor::parse(&sd).unwrap();
        assert_eq!(
            (s.service_type, s.service_provider_name, s.service_name),
            (1, &b"P"[..], &b"Name"[..])
        );
        let mut out = Vec::new();
        s.emit(&mut out);
        assert_eq!(out[2..], *sd.data);
        // Truncated service name length.
        assert!(ServiceDescriptor::parse(&Descriptor {
            tag: 0x48,
            data: &[1, 1, b'P', 9, b'N']
        })
        .is_none());
        // EN 300 468 example satellite: 011.75725 GHz, 019.2E, V, S2 8PSK, 27.5 Msym/s, 3/4.
        let sat = Descriptor {
            tag: 0x43,
            data: &[
                0x01, 0x17, 0x57, 0x25, 0x01, 0x92, 0xA6, 0x02, 0x75, 0x00, 0x0F,
            ],
        };
        let s = SatelliteDelivery::parse(&sat).unwrap();
        assert_eq!(s.frequency, 11_757_250_000);
        assert_eq!(s.orbital_position, 192);
        assert!(s.west_east_flag);
        assert_eq!(s.polarization, 1);
        assert!(s.modulation_system);
        assert_eq!(s.modulation_type, 2);
        assert_eq!(s.symbol_rate, 27_500_000);
        assert_eq!(s.fec_inner, 15);
        let lto = Descriptor {
            tag: 0x58,
            data: &[
                b'F', b'R', b'A', 0x03, 0x01, 0x00, 0xC0, 0x79, 0x01, 0x00, 0x00, 0x02, 0x00,
            ],
        };
        let l = local_time_offsets(&lto).next().unwrap();
        assert_eq!(l.country_region_id, 0);
        assert_eq!(l.local_time_offset(), Some(-60));
        assert_eq!(l.next_time_offset(), Some(-120));
        assert_eq!(l.time_of_change(), Some(750_474_000));
        let tt = Descriptor {
            tag: 0x56,
            data: &[b'd', b'e', b'u', 0x08 | 0x10, 0x88],
        };
        assert_eq!(teletext(&tt).next().unwrap().page(), Some(888));
    }
}
