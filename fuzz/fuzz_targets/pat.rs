//! Section::new_checked on arbitrary bytes, then PatRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal PatRepr.
#![no_main]
use capbox::ts::pat::PatRepr;
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = PatRepr::parse(&s) else {
        return;
    };
    let _ = r.programs().count();
    let b = r.emit();
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = PatRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
