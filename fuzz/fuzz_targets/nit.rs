//! Section::new_checked on arbitrary bytes, then NitRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal NitRepr.
#![no_main]
use capbox::ts::nit::NitRepr;
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = NitRepr::parse(&s) else {
        return;
    };
    common::walk_descriptors(&r.network_descriptors);
    let _ = r.network_name();
    for t in &r.transport_streams {
        common::walk_descriptors(&t.descriptors);
        let _ = (t.delivery_system(), t.service_list());
    }
    let b = match r.emit() {
        Ok(b) => b,
        Err(_) => return,
    };
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = NitRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
