//! ts::text::decode on arbitrary bytes (all character tables); its promise is
//! no panic and output bounded by a small multiple of the input. Also
//! decode(encode(s)) == s for printable text that fits.
#![no_main]
use capbox::ts::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = text::charset(data);
    let s = text::decode(data);
    // A char is at most 4 bytes of UTF-8, one input byte at most one char
    // (plus U+FFFD for a selector).
    assert!(
        s.len() <= 4 * data.len() + 4,
        "{} bytes from {}",
        s.len(),
        data.len()
    );
    let mut t = String::from("x");
    text::decode_into(data, &mut t);
    assert_eq!(&t[1..], s);

    if let Ok(u) = std::str::from_utf8(data) {
        // Only text decode keeps as is: no controls (dropped / mapped).
        if u.chars()
            .all(|c| !c.is_control() && !('\u{E080}'..='\u{E09F}').contains(&c))
        {
            let e = text::encode(u, 255);
            assert!(e.len() <= 255);
            // Only when nothing was cut: as is (ASCII) or 0x15 + UTF-8.
            if e == u.as_bytes() || (e.first() == Some(&0x15) && &e[1..] == u.as_bytes()) {
                assert_eq!(text::decode(&e), u, "encoded {e:02x?}");
            }
        }
    }
});
