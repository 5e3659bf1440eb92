//! DVB-CSA (the DVB Common Scrambling Algorithm, "CSA1"): descrambling and
//! scrambling of transport packets.
//!
//! Owns: the key schedule (`KeySchedule`, cached per control word), the
//! even/odd key pair of a service (`Keys`), per-packet descrambling and
//! scrambling (`descramble_packet`, `scramble_packet`, a clear scalar
//! reference in `scalar`), and the bitsliced batch engine (`Batch`) that
//! descrambles many packets at once with SIMD chosen at run time
//! (`Simd`: portable u64, SSE2, AVX2, AVX-512).
//!
//! Promises: never panics on any packet bytes (lengths are checked by
//! `ts::Packet::new_checked`); every packet that is not descrambled is
//! counted by reason (`Counters`); a packet is only ever descrambled with
//! the key its own transport_scrambling_control bits name (10 even, 11
//! odd); memory is bounded (a batch holds at most `BATCH_SIZE` packets).
//! The payload after the adaptation field is what is scrambled; a payload
//! shorter than 8 bytes is carried in clear; the last `len % 8` bytes are
//! covered by the stream cipher only. PES-level scrambling (the PES
//! header's PES_scrambling_control set in a clear TS packet) is not
//! supported: such packets are counted and left alone.

mod bitslice;
mod sbox;
pub mod scalar;
mod tables;

pub use bitslice::{raw_batch_flush, Batch, Engine, Pushed, Simd, BATCH_SIZE, SCALAR_BELOW};

use crate::ts::Packet;

/// Fix the checksum bytes of a 48-bit control word in place: byte 3 is the
/// sum of bytes 0..3 and byte 7 the sum of bytes 4..7, modulo 256 (what
/// cards and softcams send; OSCam rewrites them the same way).
pub fn fix_checksums(cw: &mut [u8; 8]) {
    cw[3] = cw[0].wrapping_add(cw[1]).wrapping_add(cw[2]);
    cw[7] = cw[4].wrapping_add(cw[5]).wrapping_add(cw[6]);
}

/// True if bytes 3 and 7 are the checksums of a 48-bit control word.
pub fn has_valid_checksums(cw: &[u8; 8]) -> bool {
    let mut fixed = *cw;
    fix_checksums(&mut fixed);
    fixed == *cw
}

/// A control word with its key schedule, computed once when the word is
/// set and reused for every packet.
#[derive(Clone)]
pub struct KeySchedule {
    cw: [u8; 8],
    kk: [u8; 56],
    /// For the batch engine: per round (in deciphering order), the block
    /// S-box with the round key folded in (`BLOCK_SBOX[x ^ kk]`), so the
    /// inner loop is one table load per byte.
    sbox_dec: Box<[[u8; 256]; 56]>,
    /// The same keyed S-boxes as telescoped 16-byte rows for the AVX2
    /// engine's `vpshufb` lookups (`bitslice::telescope`): rows 0..8 for
    /// x < 0x80, rows 8..16 for x ≥ 0x80.
    sbox_tel: Box<[[[u8; 16]; 16]; 56]>,
}

impl KeySchedule {
    /// A full 64-bit control word, used as given.
    pub fn new(cw: [u8; 8]) -> KeySchedule {
        let kk = scalar::block_round_keys(&cw);
        let mut sbox_dec = Box::new([[0u8; 256]; 56]);
        for (round, table) in sbox_dec.iter_mut().enumerate() {
            let k = kk[55 - round];
            for (x, t) in table.iter_mut().enumerate() {
                *t = tables::BLOCK_SBOX[x ^ k as usize];
            }
        }
        let mut sbox_tel = Box::new([[[0u8; 16]; 16]; 56]);
        for (tel, table) in sbox_tel.iter_mut().zip(sbox_dec.iter()) {
            *tel = bitslice::telescope(table);
        }
        KeySchedule {
            cw,
            kk,
            sbox_dec,
            sbox_tel,
        }
    }

    /// A 48-bit control word: bytes 3 and 7 are replaced by their checksums.
    pub fn new_48bit(mut cw: [u8; 8]) -> KeySchedule {
        fix_checksums(&mut cw);
        KeySchedule::new(cw)
    }

    pub fn control_word(&self) -> &[u8; 8] {
        &self.cw
    }

    /// Descramble one payload in place (the scalar reference).
    pub fn decrypt_payload(&self, data: &mut [u8]) {
        scalar::decrypt_payload(&self.cw, &self.kk, data)
    }

    /// Scramble one payload in place (the scalar reference).
    pub fn encrypt_payload(&self, data: &mut [u8]) {
        scalar::encrypt_payload(&self.cw, &self.kk, data)
    }
}

impl std::fmt::Debug for KeySchedule {
    // Control words are secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySchedule(..)")
    }
}

/// Which of the two keys a packet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    Even,
    Odd,
}

impl Parity {
    /// transport_scrambling_control value for this parity.
    pub fn scrambling_control(self) -> u8 {
        match self {
            Parity::Even => 0b10,
            Parity::Odd => 0b11,
        }
    }
}

/// The even and odd key slots of a service. A slot is replaced as a whole
/// when a new control word for it arrives.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub even: Option<KeySchedule>,
    pub odd: Option<KeySchedule>,
}

impl Keys {
    pub fn new(even: [u8; 8], odd: [u8; 8]) -> Keys {
        Keys {
            even: Some(KeySchedule::new(even)),
            odd: Some(KeySchedule::new(odd)),
        }
    }

    pub fn set(&mut self, parity: Parity, cw: [u8; 8]) {
        let slot = match parity {
            Parity::Even => &mut self.even,
            Parity::Odd => &mut self.odd,
        };
        *slot = Some(KeySchedule::new(cw));
    }

    pub fn get(&self, parity: Parity) -> Option<&KeySchedule> {
        match parity {
            Parity::Even => self.even.as_ref(),
            Parity::Odd => self.odd.as_ref(),
        }
    }
}

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Descrambled (or scrambled) and its scrambling bits updated.
    Done,
    /// The packet was not scrambled: left as it is.
    Clear,
    /// Scrambled with a key whose slot is empty: left scrambled.
    NoKey,
    /// transport_scrambling_control 01 (reserved): left as it is.
    Reserved,
    /// Clear TS packet carrying a PES header with PES_scrambling_control
    /// set: PES-level scrambling is not supported, left as it is.
    PesScrambled,
    /// Not a valid TS packet (length, sync byte, adaptation field).
    Malformed,
}

/// Packets per outcome. Every packet pushed lands in exactly one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub descrambled: u64,
    pub clear: u64,
    pub no_key: u64,
    pub reserved: u64,
    pub pes_scrambled: u64,
    pub malformed: u64,
}

impl Counters {
    pub fn record(&mut self, o: Outcome) {
        let c = match o {
            Outcome::Done => &mut self.descrambled,
            Outcome::Clear => &mut self.clear,
            Outcome::NoKey => &mut self.no_key,
            Outcome::Reserved => &mut self.reserved,
            Outcome::PesScrambled => &mut self.pes_scrambled,
            Outcome::Malformed => &mut self.malformed,
        };
        *c += 1;
    }
}

/// The classification of a packet before any cipher work: the payload
/// offset and key to use, or the outcome if there is nothing to do.
pub(crate) enum Plan<'k> {
    Descramble {
        payload_offset: usize,
        key: &'k KeySchedule,
    },
    Finished(Outcome),
}

/// Look at a packet, clear its scrambling bits if it will be descrambled,
/// and say what to do with its payload.
pub(crate) fn plan<'k>(pkt: &mut [u8], keys: &'k Keys) -> Plan<'k> {
    let (sc, offset, has_payload) = match Packet::new_checked(&*pkt) {
        Ok(p) => (p.scrambling_control(), p.payload_offset(), p.has_payload()),
        Err(_) => return Plan::Finished(Outcome::Malformed),
    };
    let parity = match sc {
        0b00 => {
            let pes = has_payload && pes_scrambled(pkt, offset);
            return Plan::Finished(if pes {
                Outcome::PesScrambled
            } else {
                Outcome::Clear
            });
        }
        0b01 => return Plan::Finished(Outcome::Reserved),
        0b10 => Parity::Even,
        _ => Parity::Odd,
    };
    let Some(key) = keys.get(parity) else {
        return Plan::Finished(Outcome::NoKey);
    };
    pkt[3] &= 0x3f;
    if !has_payload || pkt.len() - offset < 8 {
        // Nothing scrambled in the payload (it is sent in clear).
        return Plan::Finished(Outcome::Done);
    }
    Plan::Descramble {
        payload_offset: offset,
        key,
    }
}

/// A PES header at the start of the payload whose PES_scrambling_control
/// (ISO/IEC 13818-1 §2.4.3.7) is not 00.
fn pes_scrambled(pkt: &[u8], offset: usize) -> bool {
    if pkt[1] & 0x40 == 0 {
        return false; // no payload_unit_start_indicator: no PES header here
    }
    let p = &pkt[offset.min(pkt.len())..];
    if p.len() < 7 || p[0..3] != [0, 0, 1] {
        return false;
    }
    // Streams without the optional PES header (program_stream_map,
    // padding, private_stream_2, ECM, EMM, directory, DSM-CC, H.222.1 E).
    if matches!(p[3], 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xFF | 0xF2 | 0xF8) {
        return false;
    }
    p[6] & 0xC0 == 0x80 && p[6] & 0x30 != 0
}

/// Descramble one 188-byte packet in place with the scalar reference: the
/// key named by its scrambling bits, the payload after the adaptation field,
/// the scrambling bits cleared.
pub fn descramble_packet(pkt: &mut [u8], keys: &Keys) -> Outcome {
    match plan(pkt, keys) {
        Plan::Finished(o) => o,
        Plan::Descramble {
            payload_offset,
            key,
        } => {
            let end = crate::ts::packet::PACKET_SIZE;
            key.decrypt_payload(&mut pkt[payload_offset..end]);
            Outcome::Done
        }
    }
}

/// Scramble one clear 188-byte packet in place with the key of `parity`
/// and set its scrambling bits. Packets without payload are left clear.
pub fn scramble_packet(pkt: &mut [u8], keys: &Keys, parity: Parity) -> Outcome {
    let (sc, offset, has_payload) = match Packet::new_checked(&*pkt) {
        Ok(p) => (p.scrambling_control(), p.payload_offset(), p.has_payload()),
        Err(_) => return Outcome::Malformed,
    };
    if sc != 0 {
        return Outcome::Reserved; // already scrambled
    }
    if !has_payload {
        return Outcome::Clear;
    }
    let Some(key) = keys.get(parity) else {
        return Outcome::NoKey;
    };
    let end = crate::ts::packet::PACKET_SIZE;
    key.encrypt_payload(&mut pkt[offset..end]);
    pkt[3] = (pkt[3] & 0x3f) | (parity.scrambling_control() << 6);
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        let mut cw = [1, 2, 3, 0, 0xff, 0x02, 0x03, 0];
        assert!(!has_valid_checksums(&cw));
        fix_checksums(&mut cw);
        assert_eq!(cw, [1, 2, 3, 6, 0xff, 2, 3, 4]);
        assert!(has_valid_checksums(&cw));
    }

    #[test]
    fn scalar_round_trip_every_length() {
        let keys = Keys::new([1, 2, 3, 4, 5, 6, 7, 8], [9, 8, 7, 6, 5, 4, 3, 2]);
        for len in 0..=184usize {
            let orig: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let mut data = orig.clone();
            let k = keys.odd.as_ref().unwrap();
            k.encrypt_payload(&mut data);
            if len >= 8 {
                assert_ne!(data, orig, "len {len}");
            }
            k.decrypt_payload(&mut data);
            assert_eq!(data, orig, "len {len}");
        }
    }

    #[test]
    fn block_cipher_inverse() {
        let kk = scalar::block_round_keys(&[0x11, 0x22, 0x33, 0x66, 0x44, 0x55, 0x66, 0xff]);
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            scalar::block_decrypt(&kk, &scalar::block_encrypt(&kk, &b)),
            b
        );
    }

    #[test]
    fn pes_scrambling_rejected() {
        let keys = Keys::new([0; 8], [0; 8]);
        let mut pkt = [0xffu8; 188];
        pkt[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10]);
        pkt[4..13].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x90, 0x80, 5]);
        assert_eq!(descramble_packet(&mut pkt, &keys), Outcome::PesScrambled);
        pkt[10] = 0x80;
        assert_eq!(descramble_packet(&mut pkt, &keys), Outcome::Clear);
    }
}
