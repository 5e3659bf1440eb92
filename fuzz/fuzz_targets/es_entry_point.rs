//! EntryPointDetector and EntryPointGate over arbitrary packets, for every
//! codec. The first byte picks the codec and the video PID's low bits; the
//! rest is cut into 188-byte packets (sync byte forced). The gate must hand
//! on exactly the packets it was given, in order, whole.
#![no_main]
use capbox::ts::es::{EntryPointDetector, EntryPointGate, MAX_HELD_PACKETS};
use capbox::ts::pmt::VideoCodec;
use capbox::ts::{Packet, PACKET_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let codec = match sel & 3 {
        0 => VideoCodec::Mpeg2,
        1 => VideoCodec::H264,
        2 => VideoCodec::Hevc,
        _ => VideoCodec::Other,
    };
    // Small PID space so inputs hit the video PID often; 0x100 + 0..3.
    let video_pid = 0x100 | ((sel >> 2) & 3) as u16;
    let mut det = EntryPointDetector::new(codec);
    let mut gate = EntryPointGate::new(codec, video_pid);
    let mut fed = Vec::new();
    let mut out = Vec::new();
    for chunk in rest.chunks(PACKET_SIZE) {
        let mut raw = [0xFFu8; PACKET_SIZE];
        raw[..chunk.len()].copy_from_slice(chunk);
        raw[0] = 0x47;
        let Ok(pkt) = Packet::new_checked(&raw[..]) else {
            continue;
        };
        if pkt.pid() == video_pid {
            let _ = det.push(&pkt);
            let _ = det.is_pending();
        }
        fed.extend_from_slice(&raw);
        gate.push(&pkt, |b, _ep| {
            assert_eq!(b.len() % PACKET_SIZE, 0);
            assert!(!b.is_empty());
            out.extend_from_slice(b);
        });
        assert!(gate.held_packets() < MAX_HELD_PACKETS);
    }
    gate.flush(|b, ep| {
        assert!(!ep);
        out.extend_from_slice(b);
    });
    assert_eq!(gate.held_packets(), 0);
    assert!(out == fed, "gate reordered or lost packets");
    det.reset();
});
