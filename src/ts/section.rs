//! PSI/SI sections (ISO/IEC 13818-1 §2.4.4, EN 300 468 §5.1) and their
//! reassembly from transport packets.
//!
//! `Section::new_checked` validates that the declared section_length fits and,
//! for a long-form section, that the 5 bytes of the extended header and the
//! CRC are there. Whether a section carries a CRC depends on its table_id:
//! every section_syntax_indicator=1 section does, and so does the TOT although
//! its indicator is 0; the TDT, RST and ST do not.
//!
//! `Assembler` is the per-PID reassembler: pointer_field, sections spanning
//! packets, several sections in one packet, 0xFF stuffing, continuity loss.
//! Its memory is bounded by one maximal section (4096 + 3 bytes).

use super::crc::crc32_mpeg2;
use super::packet::Packet;
use super::{table_id, Error, Result};

/// Largest section: private sections may reach 4093 bytes of section_length.
pub const MAX_SECTION: usize = 4096 + 3;

#[derive(Debug, Clone, Copy)]
pub struct Section<T: AsRef<[u8]>> {
    buffer: T,
}

/// Whether a section with this table_id and section_syntax_indicator ends in a
/// CRC_32.
pub fn has_crc(table_id: u8, syntax_indicator: bool) -> bool {
    match table_id {
        table_id::TOT => true,
        table_id::TDT | table_id::RST | table_id::ST => false,
        _ => syntax_indicator,
    }
}

impl<T: AsRef<[u8]>> Section<T> {
    pub fn new_unchecked(buffer: T) -> Section<T> {
        Section { buffer }
    }

    /// Validate lengths (not the CRC: see `crc_ok`).
    pub fn new_checked(buffer: T) -> Result<Section<T>> {
        let s = Section { buffer };
        let b = s.buffer.as_ref();
        if b.len() < 3 {
            return Err(Error::Truncated);
        }
        let total = 3 + s.section_length();
        if b.len() < total {
            return Err(Error::Truncated);
        }
        let mut need = 0;
        if s.syntax_indicator() {
            need += 5;
        }
        if s.has_crc() {
            need += 4;
        }
        if s.section_length() < need {
            return Err(Error::Malformed);
        }
        Ok(s)
    }

    /// Validate lengths and, if the table has one, the CRC.
    pub fn new_verified(buffer: T) -> Result<Section<T>> {
        let s = Self::new_checked(buffer)?;
        if !s.crc_ok() {
            return Err(Error::Crc);
        }
        Ok(s)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn table_id(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn syntax_indicator(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    pub fn section_length(&self) -> usize {
        let b = self.buffer.as_ref();
        (((b[1] & 0x0F) as usize) << 8) | b[2] as usize
    }

    pub fn has_crc(&self) -> bool {
        has_crc(self.table_id(), self.syntax_indicator())
    }

    /// The whole section, header to CRC inclusive.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..3 + self.section_length()]
    }

    /// True when the table has no CRC or the CRC matches.
    pub fn crc_ok(&self) -> bool {
        !self.has_crc() || crc32_mpeg2(self.as_bytes()) == 0
    }

    pub fn crc32(&self) -> Option<u32> {
        if !self.has_crc() {
            return None;
        }
        let b = self.as_bytes();
        let n = b.len();
        Some(u32::from_be_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]))
    }

    fn long(&self) -> &[u8] {
        let b = self.as_bytes();
        if self.syntax_indicator() {
            &b[3..8]
        } else {
            &[0, 0, 0, 0, 0]
        }
    }

    /// table_id_extension: transport_stream_id (PAT), program_number (PMT),
    /// service_id (EIT), network_id (NIT), … 0 for a short section.
    pub fn table_id_extension(&self) -> u16 {
        let l = self.long();
        u16::from_be_bytes([l[0], l[1]])
    }

    pub fn version_number(&self) -> u8 {
        (self.long()[2] >> 1) & 0x1F
    }

    pub fn current_next(&self) -> bool {
        !self.syntax_indicator() || self.long()[2] & 1 != 0
    }

    pub fn section_number(&self) -> u8 {
        self.long()[3]
    }

    pub fn last_section_number(&self) -> u8 {
        self.long()[4]
    }

    /// The table body: after the (short or long) header, before the CRC.
    pub fn body(&self) -> &[u8] {
        let b = self.as_bytes();
        let start = if self.syntax_indicator() { 8 } else { 3 };
        let end = b.len() - if self.has_crc() { 4 } else { 0 };
        &b[start..end]
    }
}

/// Write a long-form section: header, `body`, CRC. Returns the bytes.
pub fn build_long_section(
    table_id: u8,
    table_id_extension: u16,
    version: u8,
    section_number: u8,
    last_section_number: u8,
    body: &[u8],
) -> Vec<u8> {
    let section_length = 5 + body.len() + 4;
    let mut v = Vec::with_capacity(3 + section_length);
    v.push(table_id);
    // section_syntax_indicator=1, '0' (private_indicator), reserved '11'.
    v.push(0xB0 | ((section_length >> 8) as u8 & 0x0F));
    v.push(section_length as u8);
    v.extend_from_slice(&table_id_extension.to_be_bytes());
    v.push(0xC0 | ((version & 0x1F) << 1) | 1);
    v.push(section_number);
    v.push(last_section_number);
    v.extend_from_slice(body);
    let crc = crc32_mpeg2(&v);
    v.extend_from_slice(&crc.to_be_bytes());
    v
}

/// Cut a section into transport packets on `pid`, pointer_field 0, stuffing
/// with 0xFF; `cc` is advanced for each packet written.
pub fn packetize(section: &[u8], pid: u16, cc: &mut u8, out: &mut Vec<u8>) {
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        let start = out.len();
        out.resize(start + 188, 0xFF);
        let p = &mut out[start..start + 188];
        super::packet::write_header(p, pid, first, *cc);
        *cc = (*cc + 1) & 0x0F;
        let mut off = 4;
        if first {
            p[4] = 0; // pointer_field
            off = 5;
        }
        let n = rest.len().min(188 - off);
        p[off..off + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        first = false;
    }
}

/// Counters of one assembler; every dropped byte of a section lands in one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    pub sections: u64,
    pub crc_errors: u64,
    /// Sections abandoned because a packet was lost (CC gap) or a new unit
    /// started before the previous section was complete.
    pub incomplete: u64,
    /// Sections whose header was nonsensical (length too short for the form).
    pub malformed: u64,
    /// Packets with a pointer_field past the end of the payload.
    pub bad_pointer: u64,
}

/// Reassembles the sections of one PID.
#[derive(Debug)]
pub struct Assembler {
    buf: Vec<u8>,
    /// Whether `buf` holds the start of a section we are completing.
    collecting: bool,
    last_cc: Option<u8>,
    pub stats: AssemblerStats,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

/// What the assembler hands out: a complete section (CRC already checked
/// where the table has one).
pub type SectionBytes<'a> = &'a [u8];

impl Assembler {
    pub fn new() -> Assembler {
        Assembler {
            buf: Vec::with_capacity(1024),
            collecting: false,
            last_cc: None,
            stats: Default::default(),
        }
    }

    pub fn reset(&mut self) {
        self.buf.clear();
        self.collecting = false;
        self.last_cc = None;
    }

    /// Feed one packet of this PID; `f` is called with each complete section
    /// whose CRC (if any) is correct.
    pub fn push<T: AsRef<[u8]>>(&mut self, pkt: &Packet<T>, mut f: impl FnMut(&[u8])) {
        if !pkt.has_payload() || pkt.transport_error() {
            if pkt.transport_error() && self.collecting {
                self.abandon();
            }
            return;
        }
        let cc = pkt.continuity_counter();
        if let Some(last) = self.last_cc {
            if cc == last {
                return; // duplicate packet (§2.4.3.3): ignore
            }
            if cc != (last + 1) & 0x0F && self.collecting {
                self.abandon();
            }
        }
        self.last_cc = Some(cc);
        let payload = pkt.payload();
        if pkt.payload_unit_start() {
            let Some((&ptr, rest)) = payload.split_first() else {
                return;
            };
            let ptr = ptr as usize;
            if ptr > rest.len() {
                self.stats.bad_pointer += 1;
                if self.collecting {
                    self.abandon();
                }
                return;
            }
            if self.collecting {
                self.buf.extend_from_slice(&rest[..ptr]);
                self.drain(&mut f);
                if self.collecting {
                    // The previous section should have ended by now.
                    self.abandon();
                }
            }
            self.buf.clear();
            self.collecting = true;
            self.buf.extend_from_slice(&rest[ptr..]);
            self.drain(&mut f);
        } else if self.collecting {
            self.buf.extend_from_slice(payload);
            self.drain(&mut f);
        }
    }

    fn abandon(&mut self) {
        self.stats.incomplete += 1;
        self.buf.clear();
        self.collecting = false;
    }

    /// Emit every complete section at the head of `buf`.
    fn drain(&mut self, f: &mut impl FnMut(&[u8])) {
        let mut off = 0;
        loop {
            let rest = &self.buf[off..];
            if rest.is_empty() || rest[0] == 0xFF {
                // Stuffing: the rest of this packet is padding.
                self.buf.clear();
                self.collecting = false;
                return;
            }
            if rest.len() < 3 {
                break;
            }
            let len = 3 + ((((rest[1] & 0x0F) as usize) << 8) | rest[2] as usize);
            if len > MAX_SECTION {
                self.stats.malformed += 1;
                self.buf.clear();
                self.collecting = false;
                return;
            }
            if rest.len() < len {
                break;
            }
            match Section::new_checked(&rest[..len]) {
                Ok(s) => {
                    if s.crc_ok() {
                        self.stats.sections += 1;
                        f(s.as_bytes());
                    } else {
                        self.stats.crc_errors += 1;
                    }
                }
                Err(_) => self.stats.malformed += 1,
            }
            off += len;
        }
        if off > 0 {
            self.buf.drain(..off);
        }
        if self.buf.len() > MAX_SECTION {
            self.stats.malformed += 1;
            self.buf.clear();
            self.collecting = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(asm: &mut Assembler, ts: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for p in ts.chunks_exact(188) {
            let pkt = Packet::new_checked(p).unwrap();
            asm.push(&pkt, |s| out.push(s.to_vec()));
        }
        out
    }

    #[test]
    fn long_section_round_trip() {
        let body: Vec<u8> = (0..50).collect();
        let s = build_long_section(0x42, 0x1234, 7, 0, 1, &body);
        let v = Section::new_verified(&s[..]).unwrap();
        assert_eq!(v.table_id(), 0x42);
        assert_eq!(v.table_id_extension(), 0x1234);
        assert_eq!(v.version_number(), 7);
        assert!(v.current_next());
        assert_eq!(v.last_section_number(), 1);
        assert_eq!(v.body(), &body[..]);
    }

    #[test]
    fn spanning_and_packed_sections() {
        let big = build_long_section(0x50, 1, 0, 0, 0, &[0xAB; 700]);
        let small = build_long_section(0x4E, 2, 0, 0, 0, &[1, 2, 3]);
        // Hand-pack: big then small back to back, split into packets.
        let mut stream = big.clone();
        stream.extend_from_slice(&small);
        stream.extend_from_slice(&small);
        let mut ts = Vec::new();
        let mut cc = 0;
        let mut rest = &stream[..];
        let mut first = true;
        while !rest.is_empty() {
            let mut p = [0xFFu8; 188];
            crate::ts::packet::write_header(&mut p, 0x12, first, cc);
            cc = (cc + 1) & 15;
            let off = if first {
                p[4] = 0;
                5
            } else {
                4
            };
            let n = rest.len().min(188 - off);
            p[off..off + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            first = false;
            ts.extend_from_slice(&p);
        }
        let mut asm = Assembler::new();
        let got = collect(&mut asm, &ts);
        assert_eq!(got, vec![big, small.clone(), small]);
    }

    #[test]
    fn crc_error_and_cc_gap_are_counted() {
        let mut s = build_long_section(0x02, 1, 0, 0, 0, &[9; 400]);
        let mut ts = Vec::new();
        let mut cc = 0;
        packetize(&s, 0x100, &mut cc, &mut ts);
        // Lose the middle packet.
        let mut lossy = ts[..188].to_vec();
        lossy.extend_from_slice(&ts[376..]);
        let mut asm = Assembler::new();
        assert!(collect(&mut asm, &lossy).is_empty());
        assert_eq!(asm.stats.incomplete, 1);
        // Corrupt a byte.
        s[20] ^= 1;
        let mut ts = Vec::new();
        packetize(&s, 0x100, &mut cc, &mut ts);
        let mut asm = Assembler::new();
        assert!(collect(&mut asm, &ts).is_empty());
        assert_eq!(asm.stats.crc_errors, 1);
    }

    #[test]
    fn tdt_has_no_crc_tot_has_one() {
        assert!(!has_crc(0x70, false));
        assert!(has_crc(0x73, false));
        assert!(has_crc(0x42, true));
        let tdt = [0x70, 0x70, 0x05, 0xE0, 0x00, 0x12, 0x34, 0x56];
        let s = Section::new_verified(&tdt[..]).unwrap();
        assert_eq!(s.body(), &tdt[3..]);
    }

    #[test]
    fn bad_pointer_counted() {
        let mut p = [0xFFu8; 188];
        crate::ts::packet::write_header(&mut p, 0, true, 0);
        p[4] = 200;
        let mut asm = Assembler::new();
        assert!(collect(&mut asm, &p).is_empty());
        assert_eq!(asm.stats.bad_pointer, 1);
    }
}
