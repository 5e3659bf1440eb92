//! BISS (EBU Tech 3292): a fixed session word used as both the even and
//! the odd control word of DVB-CSA, given in the config in clear (mode 1)
//! or encrypted for this receiver (mode E).
//!
//! Owns: the key as configured (`BissKey`: 16 hex digits, or 12 hex digits
//! of a 48-bit key whose checksum bytes 3 and 7 are computed; or, in mode
//! E, the 16-hex-digit encrypted session word and the receiver's 14-hex-
//! digit injected ID) and the CA session of a BISS channel (`BissSession`):
//! the word in both key slots, read by the channel's `Descrambler` with
//! `KeyPolicy::Fixed`.
//!
//! Mode E: the ID is a 56-bit DES key and the ESW one 64-bit DES block;
//! the session word is the ESW deciphered with DES (ECB) under the ID,
//! spread to a 64-bit key with odd parity in each byte's low bit. That is
//! the only reading the field widths allow, but it was not checked against
//! the text of Tech 3292 or a real BISS-E encoder (neither was available
//! here); the DES itself is checked against OpenSSL's. A deciphered word
//! whose checksum bytes are not the CSA sums is kept (some encoders take
//! any 64-bit word) but reported, since it more often means a mistyped ID
//! or ESW; a wrong word then shows as the descrambler's wrong-key count.
//!
//! Promises: the key, the ESW and the ID never appear in `Debug` output or
//! in any error message (each is the whole secret of the service); parse
//! errors say what is wrong without the value. Counting (descrambled, wrong
//! key as a PES start without 00 00 01) is the descrambler's.

use crate::ca::csa;
use crate::ca::descrambler::{Descrambler, KeyPolicy};
use crate::ca::slots::KeySlots;
use crate::ca::{CaSession, CaStatus};
use std::sync::Arc;
use std::time::Instant;

/// A BISS-1 session word, 8 bytes with checksums as used by CSA.
#[derive(Clone, PartialEq, Eq)]
pub struct BissKey([u8; 8]);

impl std::fmt::Debug for BissKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the value: configs and statuses are Debug-printed in logs.
        f.write_str("BissKey(<redacted>)")
    }
}

impl BissKey {
    /// 16 hex digits (a 64-bit control word, used as given) or 12 hex digits
    /// (the 48-bit BISS key; checksum bytes 3 and 7 are inserted). Spaces
    /// are allowed between digit groups. The error never contains `s`.
    pub fn parse(s: &str) -> Result<BissKey, String> {
        let bytes = hex_bytes(s, 16)?;
        let mut cw = [0u8; 8];
        match bytes.len() {
            8 => cw.copy_from_slice(&bytes),
            6 => {
                cw[0..3].copy_from_slice(&bytes[0..3]);
                cw[4..7].copy_from_slice(&bytes[3..6]);
                csa::fix_checksums(&mut cw);
            }
            n => return Err(format!("{} hex digits", 2 * n)),
        }
        Ok(BissKey(cw))
    }

    /// Mode E: the encrypted session word (16 hex digits) deciphered with
    /// the receiver's injected ID (14 hex digits), and whether the result
    /// has valid CSA checksum bytes. Errors name the field, never a value.
    pub fn mode_e(esw: &str, id: &str) -> Result<(BissKey, bool), String> {
        let esw = hex_bytes(esw, 16).map_err(|e| format!("ESW: {e}"))?;
        let Ok(block) = <[u8; 8]>::try_from(esw.as_slice()) else {
            return Err(format!("ESW: {} hex digits, expected 16", 2 * esw.len()));
        };
        let id = hex_bytes(id, 14).map_err(|e| format!("ID: {e}"))?;
        let Ok(id) = <[u8; 7]>::try_from(id.as_slice()) else {
            return Err(format!("ID: {} hex digits, expected 14", 2 * id.len()));
        };
        let cw = des_ecb_decrypt(&des_key_from_id(&id), block);
        Ok((BissKey(cw), csa::has_valid_checksums(&cw)))
    }

    /// The 8-byte control word (for the descrambler; never log it).
    pub fn control_word(&self) -> [u8; 8] {
        self.0
    }
}

/// Hex digits (spaces allowed between groups), at most `max`, an even
/// number, as bytes. The error never contains `s`.
fn hex_bytes(s: &str, max: usize) -> Result<Vec<u8>, String> {
    let mut nibbles = Vec::with_capacity(max);
    for c in s.chars() {
        if c == ' ' {
            continue;
        }
        match c.to_digit(16) {
            Some(d) if nibbles.len() < max => nibbles.push(d as u8),
            Some(_) => return Err(format!("more than {max} hex digits")),
            None => return Err("contains a character that is not a hex digit".to_string()),
        }
    }
    if nibbles.len() % 2 == 1 {
        return Err(format!("{} hex digits", nibbles.len()));
    }
    Ok(nibbles.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// The 56 bits of an injected ID spread over 8 DES key bytes: 7 bits in
/// the high bits of each byte, odd parity in the low bit (DES ignores it;
/// set so that a parity-checking DES accepts the key too).
fn des_key_from_id(id: &[u8; 7]) -> [u8; 8] {
    let bits = id.iter().fold(0u64, |acc, &b| acc << 8 | b as u64);
    std::array::from_fn(|i| {
        let seven = ((bits >> (49 - 7 * i)) & 0x7F) as u8;
        let b = seven << 1;
        b | ((b.count_ones() as u8 + 1) & 1)
    })
}

fn des_ecb_decrypt(key: &[u8; 8], block: [u8; 8]) -> [u8; 8] {
    use des::cipher::{BlockDecrypt, KeyInit};
    let cipher = des::Des::new(&(*key).into());
    let mut b = block.into();
    cipher.decrypt_block(&mut b);
    b.into()
}

/// The CA session of a BISS channel: the session word in both slots, for
/// ever. Nothing to find in the mux.
pub struct BissSession {
    slots: Arc<KeySlots>,
}

impl std::fmt::Debug for BissSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BissSession(..)")
    }
}

impl BissSession {
    pub fn new(key: &BissKey) -> BissSession {
        BissSession {
            slots: Arc::new(KeySlots::fixed(key.control_word())),
        }
    }

    /// The channel's descrambling stage for this session.
    pub fn descrambler(&self) -> Descrambler {
        Descrambler::new(self.slots.clone(), KeyPolicy::Fixed)
    }
}

impl CaSession for BissSession {
    fn feed(&mut self, _packets: &[u8], _now: Instant) {}

    fn slots(&self) -> Arc<KeySlots> {
        self.slots.clone()
    }

    fn status(&self) -> CaStatus {
        CaStatus {
            kind: "biss",
            state: "session word from the config".into(),
            cws_delivered: 1,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::csa::{scramble_packet, Keys, Outcome, Parity};
    use crate::ts::packet::PACKET_SIZE;

    /// The FIPS 81 / "Now is the time" DES vector, deciphered.
    #[test]
    fn des_known_vector() {
        let key = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
        let ct = [0x3F, 0xA4, 0x0E, 0x8A, 0x98, 0x4D, 0x48, 0x15];
        assert_eq!(&des_ecb_decrypt(&key, ct), b"Now is t");
    }

    #[test]
    fn id_spread_to_des_key_bits() {
        // All ones: every byte 0xFE + odd parity = 0xFE (7 ones) | 0 ... 7
        // ones is odd already, so parity bit 0.
        assert_eq!(des_key_from_id(&[0xFF; 7]), [0xFE; 8]);
        // All zeros: parity bit 1 in every byte.
        assert_eq!(des_key_from_id(&[0; 7]), [0x01; 8]);
        // One bit: the top bit of the ID is the top bit of key byte 0.
        let k = des_key_from_id(&[0x80, 0, 0, 0, 0, 0, 0]);
        assert_eq!(k[0], 0x80);
        // The last ID bit lands in bit 1 of key byte 7.
        let k = des_key_from_id(&[0, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(k[7], 0x02);
        for b in des_key_from_id(&[0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE]) {
            assert_eq!(b.count_ones() % 2, 1, "odd parity");
        }
    }

    #[test]
    fn mode_e_errors_name_the_field_not_the_value() {
        for (esw, id, want) in [
            ("0011223344556677", "00112233445566", ""),
            ("00112233445566", "00112233445566", "ESW: 14 hex digits"),
            ("0011223344556677", "001122334455", "ID: 12 hex digits"),
            ("0011223344556677", "0011223344556677", "ID: more than 14"),
            ("001122334455667g", "00112233445566", "ESW: contains"),
            ("0011223344556677", "0011223344556", "ID: 13 hex digits"),
        ] {
            match BissKey::mode_e(esw, id) {
                Ok(_) => assert_eq!(want, "", "{esw} {id}"),
                Err(e) => {
                    assert!(e.starts_with(want) && !want.is_empty(), "{e}");
                    assert!(!e.contains("0011"), "{e}");
                }
            }
        }
    }

    #[test]
    fn key_forms_and_errors_without_the_value() {
        let k = BissKey::parse("1122334455667788").unwrap();
        assert_eq!(
            k.control_word(),
            [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        let k = BissKey::parse("112233 556677").unwrap();
        assert_eq!(
            k.control_word(),
            [0x11, 0x22, 0x33, 0x66, 0x55, 0x66, 0x77, 0x32]
        );
        assert!(csa::has_valid_checksums(&k.control_word()));
        assert_eq!(format!("{k:?}"), "BissKey(<redacted>)");
        for bad in [
            "11223344556677",
            "1122334455667788aa",
            "11223344556677zz",
            "",
        ] {
            let e = BissKey::parse(bad).unwrap_err();
            assert!(!e.contains("1122"), "{e}");
        }
    }

    fn pes_packets(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            let mut p = [0xA5u8; PACKET_SIZE];
            crate::ts::packet::write_header(&mut p, 0x101, i % 4 == 0, i as u8);
            if i % 4 == 0 {
                p[4..9].copy_from_slice(&[0, 0, 1, 0xE0, 0]);
            }
            v.extend_from_slice(&p);
        }
        v
    }

    fn scrambled(clear: &[u8], cw: [u8; 8]) -> Vec<u8> {
        let keys = Keys::new(cw, cw);
        let mut v = clear.to_vec();
        for (i, p) in v.chunks_exact_mut(PACKET_SIZE).enumerate() {
            let parity = if i < 10 { Parity::Even } else { Parity::Odd };
            assert_eq!(scramble_packet(p, &keys, parity), Outcome::Done);
        }
        v
    }

    fn descramble(key: &BissKey, buf: &mut Vec<u8>) -> crate::ca::descrambler::DescramblerStats {
        let session = BissSession::new(key);
        assert_eq!(session.status().kind, "biss");
        assert!(!format!("{:?}", session.status()).contains("0102"));
        let mut d = session.descrambler();
        d.process(buf, Instant::now());
        d.flush(buf);
        d.stats()
    }

    #[test]
    fn right_key_gives_the_clear_packets() {
        let cw = BissKey::parse("0102030405060708").unwrap();
        let clear = pes_packets(40);
        let mut buf = scrambled(&clear, cw.control_word());
        assert_ne!(buf, clear);
        let st = descramble(&cw, &mut buf);
        assert_eq!(buf, clear);
        assert_eq!((st.descrambled, st.undecryptable), (40, 0));
    }

    #[test]
    fn wrong_key_is_counted_undecryptable() {
        let right = BissKey::parse("0102030405060708").unwrap();
        let wrong = BissKey::parse("0102030405060709").unwrap();
        let clear = pes_packets(40);
        let mut buf = scrambled(&clear, right.control_word());
        let st = descramble(&wrong, &mut buf);
        // Every PES start (10 of 40) shows the wrong key.
        assert_eq!(st.undecryptable, 10);
        assert_eq!(st.wrong_key, 10);
        assert_eq!(st.descrambled, 40);
    }
}
