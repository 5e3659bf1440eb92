//! remux::Remux::push on arbitrary bytes with programs 1 and 2 wanted (the
//! numbers of samples/mux.ts). The output of each program must be whole,
//! valid packets. First input byte: bit 0 rewrites the CRC of sections that
//! start in a packet (so mutated PAT/PMT/SDT reach the parsers), bits 1..
//! choose how the input is split across push calls.
#![no_main]
use capbox::remux::Remux;
use capbox::ts::{Packet, PACKET_SIZE};
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fn check_packets(out: &[u8]) {
    assert_eq!(out.len() % PACKET_SIZE, 0, "partial packet in output");
    for p in out.chunks(PACKET_SIZE) {
        Packet::new_checked(p).expect("remux output packet must be valid");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let mut remux = Remux::new();
    let a = remux.add_program(1);
    let b = remux.add_program(2);
    // Keep the input mostly packet-shaped (as the sources promise), but the
    // bytes after the sync byte are free.
    let mut fed = Vec::with_capacity(input.len() + PACKET_SIZE);
    for chunk in input.chunks(PACKET_SIZE) {
        let mut raw = [0xFFu8; PACKET_SIZE];
        raw[..chunk.len()].copy_from_slice(chunk);
        if flags & 0x80 == 0 {
            raw[0] = 0x47;
        }
        common::fix_first_crc(&mut raw, flags & 1 != 0);
        fed.extend_from_slice(&raw);
    }
    let step = PACKET_SIZE * (1 + ((flags >> 1) & 0x0F) as usize);
    let mut out = Vec::new();
    for piece in fed.chunks(step) {
        remux.push(piece);
        for idx in [a, b] {
            remux.program_mut(idx).take_output(&mut out);
            check_packets(&out);
        }
    }
    // A trailing partial packet is ignored, never an error.
    remux.push(&[0x47, 0x00, 0x11]);
    for idx in [a, b] {
        let p = remux.program(idx);
        check_packets(&p.psi_packets());
        let _ = p.service_descriptor();
        remux.program_mut(idx).take_output(&mut out);
        check_packets(&out);
    }
    let _ = (remux.pat(), remux.now());
    remux.reset_input();
    // Adding a program after input was seen must work too.
    let c = remux.add_program(3);
    remux.push(&fed);
    remux.program_mut(c).take_output(&mut out);
    check_packets(&out);
});
