//! The guide from the air, from EIT written by biTStream (an independent
//! writer): a week for two services through the packet path into the
//! store, every event back as written; a garbage version keeps the last
//! good schedule and counts each reject.

mod epg_common;

use capbox::epg::eit::EitCollector;
use capbox::epg::{Limits, Store};
use epg_common::{packets, T0};

const NOW: i64 = T0 + 3600 + 60;

fn collector() -> EitCollector {
    EitCollector::new(
        [
            (0x0880, "beethoven.uk".to_string()),
            (0x0881, "second.uk".to_string()),
        ],
        None,
        None,
    )
}

#[test]
fn week_of_libbitstream_eit_into_the_store() {
    let Some(g) = epg_common::generate("eit-week") else {
        return;
    };
    let mut store = Store::new(Limits::default());
    let mut c = collector();
    let mut cc = 0;
    let good = g.sections("good");
    // Three repetitions of the carousel: the later two change nothing.
    for _ in 0..3 {
        c.push_packets(&packets(&good, &mut cc), &mut store, NOW);
    }
    assert_eq!(c.stats.tables, 6, "{:?}", c.stats);
    assert_eq!(c.assembler_stats().crc_errors, 0);
    // Nothing dropped; only the "LATE NIGHT MOVIE" titles were normalised,
    // once per day and service.
    let mut r = store.rejects;
    assert_eq!(r.caps_normalised, 2 * 8);
    r.caps_normalised = 0;
    assert_eq!(r, Default::default());
    for (sid, ch) in [(0x0880u16, "beethoven.uk"), (0x0881, "second.uk")] {
        let want: Vec<_> = g.events.iter().filter(|e| e.sid == sid).collect();
        assert_eq!(want.len(), 8 * 48);
        let got = store.guide(ch, T0, T0 + 8 * 86_400);
        assert_eq!(got.len(), want.len(), "{ch}");
        for (e, w) in got.iter().zip(&want) {
            assert_eq!(
                (e.start, e.duration, &*e.title, e.min_age, e.content[0]),
                (w.start, w.duration, w.title.as_str(), w.min_age, w.content),
                "{ch}"
            );
            assert_eq!(&*e.subtitle, "Episode");
            assert_eq!(e.language_str(), Some("eng"));
        }
    }
    // Now and the next 12 h: the running event and 24 more.
    assert_eq!(store.coverage("beethoven.uk", NOW, 12 * 3600), 25);
    eprintln!(
        "epg: {} events of 2 channels in {} bytes",
        store.events(),
        store.bytes()
    );
}

#[test]
fn garbage_eit_keeps_the_last_good_schedule() {
    let Some(g) = epg_common::generate("eit-garbage") else {
        return;
    };
    let mut store = Store::new(Limits::default());
    let mut c = collector();
    let mut cc = 0;
    c.push_packets(&packets(&g.sections("good"), &mut cc), &mut store, NOW);
    let before: Vec<_> = store
        .guide("beethoven.uk", T0, T0 + 8 * 86_400)
        .into_iter()
        .cloned()
        .collect();
    let bytes = store.bytes();
    store.rejects = Default::default();
    // A new version of table 0x50 whose every event is invalid, then junk
    // on the EIT PID (bad CRCs, broken pointers).
    c.push_packets(&packets(&g.sections("garbage"), &mut cc), &mut store, NOW);
    let mut junk = packets(&g.sections("good"), &mut cc);
    for (i, b) in junk.iter_mut().enumerate() {
        if i % 188 > 4 && i % 7 == 0 {
            *b ^= 0x5A;
        }
    }
    c.push_packets(&junk, &mut store, NOW);
    let r = store.rejects;
    assert_eq!(
        (
            r.undefined_time,
            r.zero_duration,
            r.absurd_duration,
            r.far_future
        ),
        (1, 1, 1, 1),
        "{r:?}"
    );
    assert_eq!(
        (r.empty_title, r.unprintable_title, r.wipeout),
        (1, 1, 1),
        "{r:?}"
    );
    assert_eq!(c.stats.wipeouts, 1);
    assert!(c.assembler_stats().crc_errors > 0);
    let after: Vec<_> = store
        .guide("beethoven.uk", T0, T0 + 8 * 86_400)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(after, before, "the last good schedule must stay");
    assert_eq!(store.bytes(), bytes);
}
