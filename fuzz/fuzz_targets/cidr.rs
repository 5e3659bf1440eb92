//! The two Cidr parsers (config::Cidr for [access], http::Cidr for the
//! server's allow-lists) on arbitrary text; what parses must print back to a
//! string that parses to the same network, and contain its own address.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = text.parse::<capbox::config::Cidr>() {
        let again: capbox::config::Cidr = c.to_string().parse().expect("printed cidr parses");
        assert_eq!(again, c);
        assert!(c.contains(c.addr()));
        assert!(c.prefix_len() <= 128);
    }
    if let Ok(c) = text.parse::<capbox::http::Cidr>() {
        let again: capbox::http::Cidr = c.to_string().parse().expect("printed cidr parses");
        assert_eq!(again, c);
        assert!(c.contains(c.addr()));
    }
});
