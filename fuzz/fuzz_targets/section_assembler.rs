//! section::Assembler fed arbitrary bytes cut into 188-byte packets (the sync
//! byte forced so most reach the assembler). Every section it hands out must
//! pass Section::new_verified and be at most MAX_SECTION bytes.
#![no_main]
use capbox::ts::section::{Assembler, Section, MAX_SECTION};
use capbox::ts::{Packet, PACKET_SIZE};
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // First byte: bit 0 = rewrite the CRC of sections starting in a packet.
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let mut asm = Assembler::new();
    let mut n = 0usize;
    for chunk in data.chunks(PACKET_SIZE) {
        let mut raw = [0xFFu8; PACKET_SIZE];
        raw[..chunk.len()].copy_from_slice(chunk);
        raw[0] = 0x47;
        common::fix_first_crc(&mut raw, flags & 1 != 0);
        let Ok(pkt) = Packet::new_checked(&raw[..]) else {
            continue;
        };
        asm.push(&pkt, |s| {
            n += 1;
            assert!(s.len() <= MAX_SECTION, "section of {} bytes", s.len());
            let sec = Section::new_verified(s).expect("assembler handed out a bad section");
            assert_eq!(sec.as_bytes().len(), s.len());
        });
    }
    assert_eq!(asm.stats.sections, n as u64);
    asm.reset();
});
