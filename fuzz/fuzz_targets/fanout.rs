//! fanout: ChunkWriter::push of arbitrary bytes (any length, entry points
//! where the input says) and a Live and a LatestEntryPoint reader: readers
//! get whole packets only, and the Live reader gets exactly the whole packets
//! pushed after it subscribed, in order.
#![no_main]
use capbox::fanout::{Next, Ring, RingConfig, StartAt};
use capbox::ts::PACKET_SIZE;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let ring = Ring::new(RingConfig {
        max_bytes: 1 << 20,
        chunk_bytes: 16 << 10,
        max_delay: Duration::from_millis(50),
    });
    let mut w = ring.writer();
    let live = ring.subscribe(StartAt::Live);
    let mut live = live;
    let mut pushed = Vec::new();
    let mut rest = data;
    // Input: [len_hi, len_lo|ep] then that many bytes.
    while rest.len() >= 2 {
        let n = ((rest[0] as usize) << 8 | rest[1] as usize) >> 1;
        let ep = rest[1] & 1 != 0;
        let n = n.min(rest.len() - 2);
        let bytes = &rest[2..2 + n];
        rest = &rest[2 + n..];
        w.push(bytes, ep);
        pushed.extend_from_slice(&bytes[..bytes.len() / PACKET_SIZE * PACKET_SIZE]);
    }
    w.flush();
    ring.set_psi(vec![0x47; PACKET_SIZE]);
    let mut got = Vec::new();
    loop {
        match live.next() {
            Next::Data(p) => {
                assert!(!p.as_ref().is_empty());
                assert_eq!(p.as_ref().len() % PACKET_SIZE, 0);
                got.extend_from_slice(p.as_ref());
            }
            Next::Pending => break,
            Next::Lagged { .. } | Next::Closed => return,
        }
    }
    assert!(got == pushed, "live reader lost or reordered bytes");
    let mut r = ring.subscribe(StartAt::LatestEntryPoint);
    for _ in 0..64 {
        match r.next() {
            Next::Data(p) => assert_eq!(p.as_ref().len() % PACKET_SIZE, 0),
            _ => break,
        }
    }
    let _ = ring.snapshot();
});
