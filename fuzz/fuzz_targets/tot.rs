//! Section::new_checked on arbitrary bytes, then TotRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal TotRepr.
#![no_main]
use capbox::ts::section::Section;
use capbox::ts::tot::TotRepr;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = TotRepr::parse(&s) else {
        return;
    };
    common::time_round_trip(&r.utc_time_raw);
    common::walk_descriptors(&r.descriptors);
    let _ = (r.utc_time(), r.local_time_offsets());
    let b = match r.emit() {
        Ok(b) => b,
        Err(_) => return,
    };
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = TotRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
