//! source::Resync over arbitrary bytes split at fuzzer-chosen points: it may
//! only output whole packets that start with 0x47, taken verbatim from the
//! input, and keeps bounded carry.
#![no_main]
use capbox::source::Resync;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    // Feed in pieces of (split+1) bytes, or all at once when split == 0.
    let step = if split == 0 {
        input.len().max(1)
    } else {
        split as usize * 7
    };
    let mut r = Resync::new();
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        r.push(piece, &mut out);
        assert_eq!(out.len() % 188, 0);
    }
    r.finish(&mut out);
    assert_eq!(out.len() % 188, 0);
    assert!(out.len() <= input.len());
    for p in out.chunks(188) {
        assert_eq!(p[0], 0x47);
    }
    assert_eq!(r.stats.packets as usize, out.len() / 188);
    r.reset();
});
