//! Section::new_checked on arbitrary bytes, then EitRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal EitRepr.
#![no_main]
use capbox::ts::eit::EitRepr;
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = EitRepr::parse(&s) else {
        return;
    };
    let _ = (r.is_actual(), r.is_present_following());
    for e in &r.events {
        common::walk_descriptors(&e.descriptors);
        let _ = (e.start_time(), e.duration(), e.short_events());
        let _ = (e.short_event(None), e.short_event(Some("eng")));
        let _ = (e.extended_text(None), e.extended_text(Some("fra")));
        let _ = (e.content(), e.parental_ratings());
        common::time_round_trip(&e.start_time_raw);
        if let Some(d) = e.duration() {
            let raw = capbox::ts::tdt::encode_duration(d).expect("a parsed duration encodes");
            assert_eq!(capbox::ts::tdt::duration_seconds(&raw), Some(d));
        }
    }
    let b = match r.emit() {
        Ok(b) => b,
        Err(_) => return,
    };
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = EitRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
