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
}
