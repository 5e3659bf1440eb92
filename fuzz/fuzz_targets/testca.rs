//! testca ECM/EMM sections as a card receives them: arbitrary bytes must be
//! refused with an error, never panic; a section that opens must rebuild to
//! the same bytes.
#![no_main]
use capbox::ca::testca;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 16] = *b"fuzz-testca-key!";

fuzz_target!(|data: &[u8]| {
    let _ = testca::key_index(data);
    let _ = testca::emm_address(data);
    if let Ok(e) = testca::open_ecm(&KEY, data) {
        assert_eq!(testca::build_ecm(&KEY, &e), data, "ECM round trip");
    }
    if let Some(a) = testca::emm_address(data) {
        if let Ok(e) = testca::open_emm(&KEY, a, data) {
            assert_eq!(testca::build_emm(&KEY, &e), data, "EMM round trip");
        }
    }
});
