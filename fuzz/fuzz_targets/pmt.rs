//! Section::new_checked on arbitrary bytes, then PmtRepr::parse; whatever parses
//! must emit, and the emitted section must verify (CRC) and parse back to an
//! equal PmtRepr.
#![no_main]
use capbox::ts::pmt::PmtRepr;
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;
#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Section::new_checked(data) else {
        return;
    };
    common::walk_section(&s);
    let Ok(r) = PmtRepr::parse(&s) else {
        return;
    };
    common::walk_descriptors(&r.program_info);
    let _ = r.program_info().count();
    let _ = r.ecm_pids();
    for st in &r.streams {
        common::walk_descriptors(&st.descriptors);
        let _ = (
            st.kind().as_str(),
            st.video_codec(),
            st.language(),
            st.any_language(),
        );
        let _ = st.ca_descriptors().count();
        let _ = capbox::ts::pmt::stream_type_name(st.stream_type);
    }
    let b = r.emit();
    let s2 = Section::new_verified(&b[..]).expect("emitted section must verify");
    let r2 = PmtRepr::parse(&s2).expect("emitted section must parse");
    assert_eq!(r, r2, "round trip");
});
