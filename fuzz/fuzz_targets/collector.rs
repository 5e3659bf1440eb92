//! ts::collector::TableCollector fed arbitrary sections (length-prefixed in
//! the input): never panics, stays within its bounds, and every complete
//! table it hands out has its sections in section_number order.
#![no_main]
use capbox::ts::collector::{Push, TableCollector};
use capbox::ts::section::Section;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut c = TableCollector::new(8, 8192);
    let mut rest = data;
    while let Some((&n, r)) = rest.split_first() {
        let n = (n as usize * 4).min(r.len());
        let (sec, r) = r.split_at(n);
        rest = r;
        if let Push::Complete(secs) = c.push(sec) {
            let mut last = None;
            for s in &secs {
                let s = Section::new_checked(&s[..]).expect("handed-out section is checked");
                if let Some(l) = last {
                    assert!(s.section_number() > l, "out of order");
                }
                last = Some(s.section_number());
            }
        }
        assert!(c.tables() <= 8);
        assert!(c.buffered_bytes() <= 8192);
    }
    c.clear();
    assert_eq!(c.tables(), 0);
});
