//! ECM/EMM routing on an arbitrary mux: any bytes as TS packets (sync byte
//! forced so the PSI paths are reached) must never panic, and what the
//! router forwards is bounded by what it was fed.
#![no_main]
use capbox::ca::ecm::{EcmRouter, Routed, RouterConfig};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut cfg = RouterConfig::new(1);
    cfg.emm_address = Some(0xC0FF_EE01);
    let mut r = EcmRouter::new(cfg);
    let mut buf = data.to_vec();
    for p in buf.chunks_mut(188) {
        p[0] = 0x47;
    }
    let t0 = Instant::now();
    let mut forwarded = 0usize;
    for (i, chunk) in buf.chunks(188 * 7).enumerate() {
        r.feed(chunk, t0 + Duration::from_millis(i as u64 * 50), |ev| {
            forwarded += 1;
            match ev {
                Routed::Ecm { section, .. } => assert!(section.len() <= 4096),
                Routed::Emm { section, .. } => assert!(section.len() <= 4096),
            }
        });
    }
    assert!(forwarded <= data.len() / 188 + 1);
    let _ = r.stats();
});
