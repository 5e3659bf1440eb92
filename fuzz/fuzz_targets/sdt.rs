//! Section::new_checked on arbitrary bytes, then SdtRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal SdtRepr.
#![no_main]
use capbox::ts::sdt::SdtRepr;
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = SdtRepr::parse(&s) else {
        return;
    };
    let _ = r.is_actual();
    for sv in &r.services {
        common::walk_descriptors(&sv.descriptors);
        let _ = (sv.service_descriptor(), sv.service_type());
        let _ = (sv.service_name(), sv.provider_name());
        let one = r
            .with_only_service(sv.service_id)
            .expect("service is there");
        if let Ok(b) = one.emit() {
            let s1 = Section::new_verified(&b[..]).expect("one-service SDT verifies");
            assert_eq!(SdtRepr::parse(&s1).expect("one-service SDT parses"), one);
        }
    }
    let b = match r.emit() {
        Ok(b) => b,
        Err(_) => return,
    };
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = SdtRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
