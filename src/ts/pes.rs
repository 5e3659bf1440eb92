//! The PES packet header (ISO/IEC 13818-1 §2.4.3.6, §2.4.3.7).
//!
//! `PesHeader::new_checked` validates the packet_start_code_prefix and, for
//! stream ids that carry the optional header, that PES_header_data_length and
//! the PTS/DTS it announces fit in the buffer; after it every accessor is
//! total. The buffer is usually the payload of the transport packet with
//! payload_unit_start set — only the header has to be in it, not the whole
//! PES. Marker bits are not checked: real muxers get them wrong and a
//! timestamp with a bad marker is still the best timestamp there is.

use super::{Error, Result};

/// PTS/DTS ticks per second.
pub const PTS_HZ: u64 = 90_000;
/// PTS/DTS wrap at 2^33.
pub const PTS_WRAP: u64 = 1 << 33;

/// stream_id values with a meaning here (ISO/IEC 13818-1 table 2-22).
pub mod stream_id {
    pub const PROGRAM_STREAM_MAP: u8 = 0xBC;
    pub const PRIVATE_STREAM_1: u8 = 0xBD;
    pub const PADDING_STREAM: u8 = 0xBE;
    pub const PRIVATE_STREAM_2: u8 = 0xBF;
    pub const ECM_STREAM: u8 = 0xF0;
    pub const EMM_STREAM: u8 = 0xF1;
    pub const DSMCC_STREAM: u8 = 0xF2;
    pub const H222_1_TYPE_E: u8 = 0xF8;
    pub const PROGRAM_STREAM_DIRECTORY: u8 = 0xFF;

    /// Whether PES packets of this stream_id have the optional header
    /// (the `if (stream_id != program_stream_map && …)` branch of table 2-21).
    pub fn has_optional_header(id: u8) -> bool {
        !matches!(
            id,
            PROGRAM_STREAM_MAP
                | PADDING_STREAM
                | PRIVATE_STREAM_2
                | ECM_STREAM
                | EMM_STREAM
                | PROGRAM_STREAM_DIRECTORY
                | DSMCC_STREAM
                | H222_1_TYPE_E
        )
    }
}

mod field {
    pub const PREFIX: core::ops::Range<usize> = 0..3;
    pub const STREAM_ID: usize = 3;
    pub const PES_PACKET_LENGTH: core::ops::Range<usize> = 4..6;
    pub const FLAGS1: usize = 6;
    pub const FLAGS2: usize = 7;
    pub const HEADER_DATA_LENGTH: usize = 8;
    pub const PTS: usize = 9;
    pub const DTS: usize = 14;
    /// Bytes before the optional fields.
    pub const OPTIONAL_START: usize = 9;
    pub const FIXED_LEN: usize = 6;
}

/// A view over the start of a PES packet.
#[derive(Debug, Clone, Copy)]
pub struct PesHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PesHeader<T> {
    /// Wrap without checking; accessors may panic. Only for bytes capbox built.
    pub const fn new_unchecked(buffer: T) -> PesHeader<T> {
        PesHeader { buffer }
    }

    /// Wrap and validate: start code prefix, and that the header (and the
    /// PTS/DTS its flags announce) fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<PesHeader<T>> {
        let h = PesHeader { buffer };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::FIXED_LEN {
            return Err(Error::Truncated);
        }
        if b[field::PREFIX] != [0, 0, 1] {
            return Err(Error::Malformed);
        }
        if !stream_id::has_optional_header(b[field::STREAM_ID]) {
            return Ok(());
        }
        if b.len() < field::OPTIONAL_START {
            return Err(Error::Truncated);
        }
        // The two '10' bits: MPEG-1 system streams put other things here, so
        // a mismatch means this is not an MPEG-2 PES header at all.
        if b[field::FLAGS1] & 0xC0 != 0x80 {
            return Err(Error::Malformed);
        }
        let hdl = b[field::HEADER_DATA_LENGTH] as usize;
        let need_ts = match b[field::FLAGS2] >> 6 {
            0b10 => 5,
            0b11 => 10,
            // 0b01 is forbidden; ignore the flags rather than refuse the PES.
            _ => 0,
        };
        if need_ts > hdl {
            return Err(Error::Malformed);
        }
        if b.len() < field::OPTIONAL_START + hdl {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn stream_id(&self) -> u8 {
        self.buffer.as_ref()[field::STREAM_ID]
    }

    /// PES_packet_length: bytes after this field, 0 = unbounded (video in TS).
    pub fn pes_packet_length(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PES_PACKET_LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn has_optional_header(&self) -> bool {
        stream_id::has_optional_header(self.stream_id())
    }

    fn flags1(&self) -> u8 {
        if self.has_optional_header() {
            self.buffer.as_ref()[field::FLAGS1]
        } else {
            0
        }
    }

    fn flags2(&self) -> u8 {
        if self.has_optional_header() {
            self.buffer.as_ref()[field::FLAGS2]
        } else {
            0
        }
    }

    /// PES_scrambling_control (0 = not scrambled).
    pub fn pes_scrambling_control(&self) -> u8 {
        (self.flags1() >> 4) & 3
    }

    pub fn pes_priority(&self) -> bool {
        self.flags1() & 0x08 != 0
    }

    pub fn data_alignment_indicator(&self) -> bool {
        self.flags1() & 0x04 != 0
    }

    pub fn copyright(&self) -> bool {
        self.flags1() & 0x02 != 0
    }

    pub fn original_or_copy(&self) -> bool {
        self.flags1() & 0x01 != 0
    }

    /// PTS_DTS_flags: 0b00 none, 0b10 PTS, 0b11 PTS and DTS.
    pub fn pts_dts_flags(&self) -> u8 {
        self.flags2() >> 6
    }

    /// PES_header_data_length (0 without the optional header).
    pub fn pes_header_data_length(&self) -> u8 {
        if self.has_optional_header() {
            self.buffer.as_ref()[field::HEADER_DATA_LENGTH]
        } else {
            0
        }
    }

    /// Presentation time stamp, 33 bits of 90 kHz.
    pub fn pts(&self) -> Option<u64> {
        match self.pts_dts_flags() {
            0b10 | 0b11 => Some(decode_ts(&self.buffer.as_ref()[field::PTS..field::PTS + 5])),
            _ => None,
        }
    }

    /// Decoding time stamp; absent means equal to the PTS.
    pub fn dts(&self) -> Option<u64> {
        match self.pts_dts_flags() {
            0b11 => Some(decode_ts(&self.buffer.as_ref()[field::DTS..field::DTS + 5])),
            _ => None,
        }
    }

    /// Where the PES payload (the elementary stream bytes) starts.
    pub fn payload_offset(&self) -> usize {
        if self.has_optional_header() {
            field::OPTIONAL_START + self.pes_header_data_length() as usize
        } else {
            field::FIXED_LEN
        }
    }

    /// The elementary stream bytes present in the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

/// 33-bit timestamp from its 5-byte '0010'/'0011'/'0001' + markers form.
fn decode_ts(b: &[u8]) -> u64 {
    (((b[0] >> 1) & 0x07) as u64) << 30
        | (b[1] as u64) << 22
        | ((b[2] >> 1) as u64) << 15
        | (b[3] as u64) << 7
        | (b[4] >> 1) as u64
}

/// Write a PTS or DTS (taken modulo 2^33) in its 5-byte form. `prefix` is the
/// 4-bit code: 0b0010 for a lone PTS, 0b0011 for a PTS followed by a DTS,
/// 0b0001 for that DTS.
pub fn encode_pts(ts: u64, prefix: u8, out: &mut [u8; 5]) {
    let ts = ts & (PTS_WRAP - 1);
    out[0] = (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1;
    out[1] = (ts >> 22) as u8;
    out[2] = (((ts >> 15) as u8) << 1) | 1;
    out[3] = (ts >> 7) as u8;
    out[4] = ((ts as u8) << 1) | 1;
}

/// Forward distance from `a` to `b` on the 33-bit timestamp circle.
pub fn pts_delta(a: u64, b: u64) -> u64 {
    (b.wrapping_sub(a)) & (PTS_WRAP - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pts: Option<u64>, dts: Option<u64>, extra: usize) -> Vec<u8> {
        let mut v = vec![0, 0, 1, 0xE0, 0, 0, 0x84];
        let flags = match (pts, dts) {
            (Some(_), Some(_)) => 0xC0,
            (Some(_), None) => 0x80,
            _ => 0,
        };
        v.push(flags);
        let mut opt = Vec::new();
        let mut t = [0u8; 5];
        if let Some(p) = pts {
            encode_pts(p, if dts.is_some() { 3 } else { 2 }, &mut t);
            opt.extend_from_slice(&t);
        }
        if let Some(d) = dts {
            encode_pts(d, 1, &mut t);
            opt.extend_from_slice(&t);
        }
        opt.extend(std::iter::repeat_n(0xFF, extra));
        v.push(opt.len() as u8);
        v.extend_from_slice(&opt);
        v.extend_from_slice(&[0, 0, 0, 1, 9]);
        v
    }

    #[test]
    fn pts_dts_round_trip() {
        for &(p, d) in &[
            (0u64, 0u64),
            (1, 0),
            (PTS_WRAP - 1, PTS_WRAP - 3),
            (123_456_789, 123_450_000),
        ] {
            let b = header(Some(p), Some(d), 3);
            let h = PesHeader::new_checked(&b[..]).unwrap();
            assert_eq!(h.stream_id(), 0xE0);
            assert_eq!(h.pts(), Some(p));
            assert_eq!(h.dts(), Some(d));
            assert!(h.data_alignment_indicator());
            assert_eq!(h.payload_offset(), 9 + 13);
            assert_eq!(h.payload(), &[0, 0, 0, 1, 9]);
        }
        let b = header(Some(90_000), None, 0);
        let h = PesHeader::new_checked(&b[..]).unwrap();
        assert_eq!((h.pts(), h.dts()), (Some(90_000), None));
    }

    #[test]
    fn refuses_bad_and_short() {
        let b = header(Some(5), Some(4), 0);
        for n in 0..b.len() - 5 {
            assert!(PesHeader::new_checked(&b[..n]).is_err(), "len {n}");
        }
        let mut bad = b.clone();
        bad[2] = 2;
        assert_eq!(
            PesHeader::new_checked(&bad[..]).err(),
            Some(Error::Malformed)
        );
        // PTS_DTS_flags announcing more than PES_header_data_length holds.
        let mut bad = b.clone();
        bad[8] = 4;
        assert_eq!(
            PesHeader::new_checked(&bad[..]).err(),
            Some(Error::Malformed)
        );
        // Padding stream: no optional header.
        let pad = [0, 0, 1, 0xBE, 0, 2, 0xFF, 0xFF];
        let h = PesHeader::new_checked(&pad[..]).unwrap();
        assert_eq!(
            (h.pts(), h.payload_offset(), h.pes_packet_length()),
            (None, 6, 2)
        );
    }

    #[test]
    fn never_panics() {
        let mut b = header(Some(5), Some(4), 0);
        for i in 6..9 {
            for v in 0..=255u8 {
                let save = b[i];
                b[i] = v;
                for n in 0..=b.len() {
                    if let Ok(h) = PesHeader::new_checked(&b[..n]) {
                        let _ = (h.pts(), h.dts(), h.payload().len());
                    }
                }
                b[i] = save;
            }
        }
    }

    #[test]
    fn delta_wraps() {
        assert_eq!(pts_delta(PTS_WRAP - 1, 1), 2);
        assert_eq!(pts_delta(10, 20), 10);
    }
}
