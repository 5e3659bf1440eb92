//! BISS-1 (EBU Tech 3292): a clear session word, given in the config,
//! used as both the even and the odd control word of DVB-CSA.
//!
//! Owns: the key as configured (`BissKey`, parsed from 16 hex digits or 12
//! hex digits of a 48-bit key whose checksum bytes 3 and 7 are computed)
//! and the per-channel descrambling stage (`BissDescrambler`) the runner
//! applies to a channel's output before the entry-point gate.
//!
//! Promises: the key never appears in `Debug` output or in any error
//! message (a BISS key is the whole secret of the service); parse errors say
//! what is wrong without the value. `BissDescrambler` never panics on any
//! bytes, descrambles each packet with the key its bits name (both slots
//! hold the session word) and counts every scrambled packet as descrambled
//! or undecryptable. CSA cannot tell a wrong key by itself, so
//! "undecryptable" also counts descrambled PES starts whose payload does not
//! begin with the packet_start_code_prefix 00 00 01: the visible sign of a
//! wrong key.

use crate::ca::csa::{self, Batch, Engine, Keys, Outcome, Pushed};
use crate::ts::packet::{Packet, PACKET_SIZE};

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

/// Packet counts of one descrambled channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BissStats {
    /// Scrambled packets descrambled with the session word.
    pub descrambled: u64,
    /// Packets left scrambled (reserved bits, PES-level scrambling,
    /// malformed) plus descrambled PES starts without a start code (wrong
    /// key).
    pub undecryptable: u64,
}

/// The descrambling stage of one channel.
pub struct BissDescrambler {
    keys: Keys,
    engine: Option<Engine>,
    /// Offsets of descrambled packets that start a PES, checked after the
    /// batch ran.
    starts: Vec<usize>,
    pub stats: BissStats,
}

impl std::fmt::Debug for BissDescrambler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BissDescrambler")
            .field("stats", &self.stats)
            .finish()
    }
}

impl BissDescrambler {
    pub fn new(key: &BissKey) -> BissDescrambler {
        let cw = key.control_word();
        BissDescrambler {
            keys: Keys::new(cw, cw),
            engine: Some(Engine::new()),
            starts: Vec::new(),
            stats: BissStats::default(),
        }
    }

    /// Descramble every scrambled packet of `buf` (whole 188-byte packets)
    /// in place, all of it before returning: no packet waits for a later
    /// call.
    pub fn process(&mut self, buf: &mut [u8]) {
        self.starts.clear();
        let engine = self.engine.take().unwrap_or_default();
        let mut batch = Batch::with_engine(engine);
        for (i, raw) in buf.chunks_exact_mut(PACKET_SIZE).enumerate() {
            let (scrambled, pes_start) = match Packet::new_checked(&*raw) {
                Ok(p) => (p.scrambling_control() != 0, p.payload_unit_start()),
                Err(_) => (false, false),
            };
            if !scrambled {
                continue;
            }
            match batch.push(raw, &self.keys) {
                Pushed::Queued => {
                    self.stats.descrambled += 1;
                    if pes_start {
                        self.starts.push(i * PACKET_SIZE);
                    }
                }
                Pushed::Finished(Outcome::Done) => self.stats.descrambled += 1,
                Pushed::Finished(Outcome::Clear) => {}
                Pushed::Finished(_) => self.stats.undecryptable += 1,
                // One Keys for the whole batch: cannot happen; counted all
                // the same rather than passed on silently.
                Pushed::OtherKeys(_) => self.stats.undecryptable += 1,
            }
        }
        self.engine = Some(batch.into_engine());
        for &off in &self.starts {
            let Ok(p) = Packet::new_checked(&buf[off..off + PACKET_SIZE]) else {
                continue;
            };
            if !p.payload().starts_with(&[0, 0, 1]) {
                self.stats.undecryptable += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::csa::{scramble_packet, Parity};

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

    #[test]
    fn right_key_gives_the_clear_packets() {
        let cw = BissKey::parse("0102030405060708").unwrap();
        let clear = pes_packets(40);
        let mut buf = scrambled(&clear, cw.control_word());
        assert_ne!(buf, clear);
        let mut d = BissDescrambler::new(&cw);
        d.process(&mut buf);
        assert_eq!(buf, clear);
        assert_eq!(
            d.stats,
            BissStats {
                descrambled: 40,
                undecryptable: 0
            }
        );
    }

    #[test]
    fn wrong_key_is_counted_undecryptable() {
        let right = BissKey::parse("0102030405060708").unwrap();
        let wrong = BissKey::parse("0102030405060709").unwrap();
        let clear = pes_packets(40);
        let mut buf = scrambled(&clear, right.control_word());
        let mut d = BissDescrambler::new(&wrong);
        d.process(&mut buf);
        // Every PES start (10 of 40) shows the wrong key.
        assert_eq!(d.stats.undecryptable, 10);
        assert_eq!(d.stats.descrambled, 40);
    }
}
