//! config::parse on arbitrary UTF-8 text: never panics; every diagnostic has
//! a line within the text (or 0 for the whole file).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match capbox::config::parse(text, "fuzz.toml", Path::new("/nonexistent/capbox-fuzz")) {
        Ok(cfg) => {
            for (c, s) in cfg.sources() {
                let _ = (c.same_settings(c), s.same_settings(s));
            }
            let d = capbox::config::Config::diff(&cfg, &cfg);
            assert!(d.is_empty(), "a config differs from itself: {d:?}");
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "Err without a diagnostic");
            for d in &diags {
                let _ = d.to_string();
            }
        }
    }
});
