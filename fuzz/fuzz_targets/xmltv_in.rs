//! The operator's XMLTV on arbitrary bytes: `xmltv_in::parse` (its bounds),
//! then the document applied to a store as the fetcher does
//! (`fetch::Poller::apply`: resolve ids, validate, replace), a day later
//! again, and a second source's copy through `xmltv_in::load`; the store
//! keeps its promises (`Store::check`: accounting within a small budget,
//! events valid and not overlapping) and its XMLTV output reads back.
//!
//! Input: 2 bytes "now" (BASE ± 227 days in 10-minute steps), 1 byte budget
//! (2..512 KiB), 1 byte max channels (1..=8) and audience, the document.
#![no_main]
use capbox::epg::fetch::{Poller, XmltvSource};
use capbox::epg::store::{Limits, Store};
use capbox::epg::xmltv_in::{self, MAX_EVENTS_PER_CHANNEL, MAX_TEXT_BYTES};
use libfuzzer_sys::fuzz_target;
#[path = "common/epg.rs"]
mod epg;

/// Ids up to 8 bytes not starting with 'x' are capbox channels ("ch.<id>").
fn resolve(id: &str) -> Option<String> {
    (!id.is_empty() && id.len() <= 8 && !id.starts_with('x')).then(|| format!("ch.{id}"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let now = epg::BASE + i16::from_be_bytes([data[0], data[1]]) as i64 * 600;
    let limits = Limits {
        budget_bytes: (data[2] as usize + 1) * 2048,
        max_channels: 1 + (data[3] & 7) as usize,
        ..Limits::default()
    };
    let audience = epg::audience(data[3] >> 3);
    let doc = &data[4..];

    if let Ok(p) = xmltv_in::parse(doc, resolve) {
        let mut n = 0u64;
        for (ch, v) in &p.channels {
            assert!(ch.starts_with("ch."), "unresolved channel {ch:?}");
            assert!(
                v.len() <= MAX_EVENTS_PER_CHANNEL,
                "{ch}: {} events",
                v.len()
            );
            for e in v {
                for t in [&e.title, &e.subtitle, &e.description] {
                    assert!(
                        t.len() <= MAX_TEXT_BYTES,
                        "{ch}: a text of {} bytes",
                        t.len()
                    );
                }
                assert!(e
                    .content
                    .iter()
                    .all(|&c| c & 0x0F == 0 && (0x10..=0xB0).contains(&c)));
            }
            n += v.len() as u64;
        }
        assert_eq!(n, p.stats.programmes, "programmes counted");
    }

    let mut store = Store::new(limits);
    let mut poller = Poller::new(XmltvSource::new("fz", 0, "/nonexistent/guide.xml").unwrap());
    let _ = poller.apply(doc, &mut store, &resolve, now);
    epg::check_store(&store);
    // A day later: history expires, the same document is unchanged or
    // (its past gone) a smaller one.
    let _ = poller.apply(doc, &mut store, &resolve, now + 86_400);
    epg::check_store(&store);
    // A second source with the same guide: two parts per channel, merged.
    if let Ok(p) = xmltv_in::parse(doc, resolve) {
        xmltv_in::load(&mut store, 1, p, now + 86_400);
        epg::check_store(&store);
    }
    store.set_budget(store.limits().budget_bytes / 2);
    epg::check_store(&store);
    if std::env::var_os("FZ_DEBUG").is_some() {
        eprintln!(
            "{} events, {} bytes, {:?}",
            store.events(),
            store.bytes(),
            store.rejects
        );
    }
    epg::check_writer(&store, audience.as_ref(), now - 86_400, now + 8 * 86_400);
});
