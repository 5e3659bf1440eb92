//! The HTTP server's request-head path (httparse + capbox's header, query
//! and percent decoding) on arbitrary bytes: never panics; a parsed path is
//! valid UTF-8 of bounded size.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((method, path, token)) = capbox::http::parse_head_for_fuzzing(data) {
        assert!(method.len() <= data.len());
        assert!(path.len() <= data.len() * 3);
        if let Some(t) = token {
            assert!(t.len() <= data.len() * 3);
        }
    }
});
