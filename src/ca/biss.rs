//! BISS-1 (EBU Tech 3292): a clear session word, given in the config,
//! used as both the even and the odd control word of DVB-CSA.
//!
//! Owns: the key as configured (`BissKey`, parsed from 16 hex digits or 12
//! hex digits of a 48-bit key whose checksum bytes 3 and 7 are computed)
//! and the CA session of a BISS channel (`BissSession`): the word in both
//! key slots, read by the channel's `Descrambler` with `KeyPolicy::Fixed`.
//!
//! Promises: the key never appears in `Debug` output or in any error
//! message (a BISS key is the whole secret of the service); parse errors say
//! what is wrong without the value. Counting (descrambled, wrong key as a
//! PES start without 00 00 01) is the descrambler's.
//!
//! BISS-E (mode E: an encrypted session word and the receiver's injected
//! ID) is not implemented: no authoritative description of how the ID
//! decrypts the ESW for BISS-1 was found to implement and test against.

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
        let mut nibbles = Vec::with_capacity(16);
        for c in s.chars() {
            if c == ' ' {
                continue;
            }
            match c.to_digit(16) {
                Some(d) if nibbles.len() < 16 => nibbles.push(d as u8),
                Some(_) => return Err("more than 16 hex digits".to_string()),
                None => return Err("contains a character that is not a hex digit".to_string()),
            }
        }
        let bytes: Vec<u8> = nibbles
            .chunks(2)
            .map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0))
            .collect();
        let mut cw = [0u8; 8];
        match nibbles.len() {
            16 => cw.copy_from_slice(&bytes),
            12 => {
                cw[0..3].copy_from_slice(&bytes[0..3]);
                cw[4..7].copy_from_slice(&bytes[3..6]);
                csa::fix_checksums(&mut cw);
            }
            n => return Err(format!("{n} hex digits")),
        }
        Ok(BissKey(cw))
    }

    /// The 8-byte control word (for the descrambler; never log it).
    pub fn control_word(&self) -> [u8; 8] {
        self.0
    }
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
