//! The 188-byte transport stream packet (ISO/IEC 13818-1 §2.4.3.2) and its
//! adaptation field (§2.4.3.4).
//!
//! `Packet::new_checked` validates the sync byte, the length and the
//! adaptation_field_length; after it every accessor is total.

use super::{Error, Result};

pub const PACKET_SIZE: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;
/// PCR ticks per second (27 MHz system clock).
pub const PCR_HZ: u64 = 27_000_000;
/// PCR wraps at 2^33 × 300.
pub const PCR_WRAP: u64 = (1u64 << 33) * 300;

/// A view over one transport packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    pub const FLAGS_PID: core::ops::Range<usize> = 1..3;
    pub const CONTROL: usize = 3;
    pub const AF_LEN: usize = 4;
}

/// The two scrambling bits of the header (ETSI TS 100 289: 00 clear, 10 even
/// key, 11 odd key, 01 reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrambling {
    Clear,
    Reserved,
    Even,
    Odd,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking. Accessors may panic on a short or bad buffer:
    /// use only on bytes capbox built itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and validate: exactly 188 bytes (or more; only the first 188
    /// count), sync byte, and an adaptation field that fits.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_SIZE {
            return Err(Error::Truncated);
        }
        if b[0] != SYNC_BYTE {
            return Err(Error::Malformed);
        }
        if self.has_adaptation() {
            let len = b[field::AF_LEN] as usize;
            // With a payload the field may be 0..=182; without, exactly 183 —
            // but real muxers get that wrong, so accept 0..=183 either way.
            if len > 183 {
                return Err(Error::Malformed);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..PACKET_SIZE]
    }

    pub fn transport_error(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    pub fn payload_unit_start(&self) -> bool {
        self.buffer.as_ref()[1] & 0x40 != 0
    }

    pub fn transport_priority(&self) -> bool {
        self.buffer.as_ref()[1] & 0x20 != 0
    }

    pub fn pid(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS_PID];
        u16::from_be_bytes([b[0], b[1]]) & 0x1FFF
    }

    pub fn scrambling_control(&self) -> u8 {
        self.buffer.as_ref()[field::CONTROL] >> 6
    }

    pub fn scrambling(&self) -> Scrambling {
        match self.scrambling_control() {
            0 => Scrambling::Clear,
            1 => Scrambling::Reserved,
            2 => Scrambling::Even,
            _ => Scrambling::Odd,
        }
    }

    pub fn adaptation_field_control(&self) -> u8 {
        (self.buffer.as_ref()[field::CONTROL] >> 4) & 3
    }

    pub fn has_adaptation(&self) -> bool {
        self.adaptation_field_control() & 2 != 0
    }

    pub fn has_payload(&self) -> bool {
        self.adaptation_field_control() & 1 != 0
    }

    pub fn continuity_counter(&self) -> u8 {
        self.buffer.as_ref()[field::CONTROL] & 0x0F
    }

    /// adaptation_field_length, 0 when there is no adaptation field.
    pub fn adaptation_field_length(&self) -> usize {
        if self.has_adaptation() {
            self.buffer.as_ref()[field::AF_LEN] as usize
        } else {
            0
        }
    }

    /// The adaptation field after its length byte (may be empty).
    pub fn adaptation(&self) -> Option<Adaptation<&[u8]>> {
        if !self.has_adaptation() {
            return None;
        }
        let len = self.adaptation_field_length();
        let b = self.buffer.as_ref();
        Adaptation::new_checked(&b[field::AF_LEN + 1..field::AF_LEN + 1 + len]).ok()
    }

    /// Offset of the payload in the packet.
    pub fn payload_offset(&self) -> usize {
        if self.has_adaptation() {
            (field::AF_LEN + 1 + self.adaptation_field_length()).min(PACKET_SIZE)
        } else {
            4
        }
    }

    /// The payload (empty when adaptation_field_control says there is none).
    pub fn payload(&self) -> &[u8] {
        if !self.has_payload() {
            return &[];
        }
        &self.buffer.as_ref()[self.payload_offset()..PACKET_SIZE]
    }

    pub fn discontinuity(&self) -> bool {
        self.adaptation()
            .map(|a| a.discontinuity())
            .unwrap_or(false)
    }

    pub fn random_access(&self) -> bool {
        self.adaptation()
            .map(|a| a.random_access())
            .unwrap_or(false)
    }

    /// The PCR in 27 MHz ticks, if this packet carries one.
    pub fn pcr(&self) -> Option<u64> {
        self.adaptation().and_then(|a| a.pcr())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_pid(&mut self, pid: u16) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0xE0) | ((pid >> 8) as u8 & 0x1F);
        b[2] = pid as u8;
    }

    pub fn set_continuity_counter(&mut self, cc: u8) {
        let b = self.buffer.as_mut();
        b[3] = (b[3] & 0xF0) | (cc & 0x0F);
    }

    pub fn set_scrambling_control(&mut self, sc: u8) {
        let b = self.buffer.as_mut();
        b[3] = (b[3] & 0x3F) | ((sc & 3) << 6);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        if !self.has_payload() {
            return &mut [];
        }
        let off = self.payload_offset();
        &mut self.buffer.as_mut()[off..PACKET_SIZE]
    }
}

/// A view over the adaptation field, after its length byte.
#[derive(Debug, Clone, Copy)]
pub struct Adaptation<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Adaptation<T> {
    /// Validates that the optional fields announced by the flags fit.
    pub fn new_checked(buffer: T) -> Result<Adaptation<T>> {
        let a = Adaptation { buffer };
        let b = a.buffer.as_ref();
        if b.is_empty() {
            return Ok(a);
        }
        let flags = b[0];
        let mut need = 1;
        if flags & 0x10 != 0 {
            need += 6;
        }
        if flags & 0x08 != 0 {
            need += 6;
        }
        if need > b.len() {
            return Err(Error::Truncated);
        }
        Ok(a)
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0)
    }

    pub fn discontinuity(&self) -> bool {
        self.flags() & 0x80 != 0
    }

    pub fn random_access(&self) -> bool {
        self.flags() & 0x40 != 0
    }

    pub fn es_priority(&self) -> bool {
        self.flags() & 0x20 != 0
    }

    pub fn has_pcr(&self) -> bool {
        self.flags() & 0x10 != 0
    }

    pub fn has_opcr(&self) -> bool {
        self.flags() & 0x08 != 0
    }

    fn clock_at(&self, off: usize) -> u64 {
        let b = self.buffer.as_ref();
        let base = ((b[off] as u64) << 25)
            | ((b[off + 1] as u64) << 17)
            | ((b[off + 2] as u64) << 9)
            | ((b[off + 3] as u64) << 1)
            | ((b[off + 4] as u64) >> 7);
        let ext = (((b[off + 4] & 1) as u64) << 8) | b[off + 5] as u64;
        base * 300 + ext
    }

    /// program_clock_reference as 27 MHz ticks (base × 300 + extension).
    pub fn pcr(&self) -> Option<u64> {
        if self.has_pcr() {
            Some(self.clock_at(1))
        } else {
            None
        }
    }

    pub fn opcr(&self) -> Option<u64> {
        if self.has_opcr() {
            Some(self.clock_at(if self.has_pcr() { 7 } else { 1 }))
        } else {
            None
        }
    }
}

/// Write a PCR (27 MHz ticks) into 6 bytes.
pub fn encode_pcr(pcr: u64, out: &mut [u8; 6]) {
    let base = (pcr / 300) & ((1 << 33) - 1);
    let ext = (pcr % 300) as u16;
    out[0] = (base >> 25) as u8;
    out[1] = (base >> 17) as u8;
    out[2] = (base >> 9) as u8;
    out[3] = (base >> 1) as u8;
    out[4] = (((base & 1) as u8) << 7) | 0x7E | ((ext >> 8) as u8 & 1);
    out[5] = ext as u8;
}

/// Forward distance from `a` to `b` on the PCR circle.
pub fn pcr_delta(a: u64, b: u64) -> u64 {
    (b + PCR_WRAP - a) % PCR_WRAP
}

/// Build a packet header: the caller fills the payload.
pub fn write_header(out: &mut [u8], pid: u16, pusi: bool, cc: u8) {
    out[0] = SYNC_BYTE;
    out[1] = if pusi { 0x40 } else { 0 } | ((pid >> 8) as u8 & 0x1F);
    out[2] = pid as u8;
    out[3] = 0x10 | (cc & 0x0F);
}

/// A null packet (PID 0x1FFF, payload 0xFF).
pub fn null_packet() -> [u8; PACKET_SIZE] {
    let mut p = [0xFFu8; PACKET_SIZE];
    write_header(&mut p, super::pid::NULL, false, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt_with_pcr(pcr: u64) -> [u8; PACKET_SIZE] {
        let mut p = [0xFFu8; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = 0x01;
        p[2] = 0x00;
        p[3] = 0x20 | 5;
        p[4] = 183;
        p[5] = 0x50; // random access + PCR
        let mut b = [0u8; 6];
        encode_pcr(pcr, &mut b);
        p[6..12].copy_from_slice(&b);
        p
    }

    #[test]
    fn header_fields() {
        let mut p = [0u8; PACKET_SIZE];
        write_header(&mut p, 0x1234, true, 7);
        let v = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.pid(), 0x1234);
        assert!(v.payload_unit_start());
        assert_eq!(v.continuity_counter(), 7);
        assert_eq!(v.payload().len(), 184);
        assert_eq!(v.scrambling(), Scrambling::Clear);
    }

    #[test]
    fn pcr_round_trip_and_flags() {
        for pcr in [0u64, 1, 299, 300, 27_000_000 * 3600, PCR_WRAP - 1] {
            let p = pkt_with_pcr(pcr);
            let v = Packet::new_checked(&p[..]).unwrap();
            assert_eq!(v.pcr(), Some(pcr));
            assert!(v.random_access());
            assert!(!v.discontinuity());
            assert!(v.payload().is_empty());
        }
    }

    #[test]
    fn pcr_delta_wraps() {
        assert_eq!(pcr_delta(PCR_WRAP - 10, 5), 15);
        assert_eq!(pcr_delta(5, 15), 10);
    }

    #[test]
    fn rejects_bad() {
        assert_eq!(
            Packet::new_checked(&[0x47u8; 10][..]).err(),
            Some(Error::Truncated)
        );
        let mut p = [0u8; PACKET_SIZE];
        assert_eq!(Packet::new_checked(&p[..]).err(), Some(Error::Malformed));
        p[0] = 0x47;
        p[3] = 0x30;
        p[4] = 184;
        assert_eq!(Packet::new_checked(&p[..]).err(), Some(Error::Malformed));
        // Adaptation field claiming a PCR it has no room for.
        p[4] = 3;
        p[5] = 0x10;
        let v = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.pcr(), None);
    }

    #[test]
    fn never_panics_on_any_header() {
        let mut p = [0u8; PACKET_SIZE];
        p[0] = 0x47;
        for b3 in 0..=255u8 {
            for b4 in 0..=255u8 {
                p[3] = b3;
                p[4] = b4;
                p[5] = b4.rotate_left(3);
                if let Ok(v) = Packet::new_checked(&p[..]) {
                    let _ = (
                        v.pcr(),
                        v.payload().len(),
                        v.discontinuity(),
                        v.adaptation(),
                    );
                }
            }
        }
    }
}
