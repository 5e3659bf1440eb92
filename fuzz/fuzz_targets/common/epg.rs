//! Shared checks of the EPG targets (xmltv_in, epg_eit): the store's own
//! promises (`Store::check`), its merged guide, and the XMLTV writer's
//! output read back by quick-xml and by capbox's XMLTV reader.
#![allow(dead_code)]

use capbox::epg::store::Store;
use capbox::epg::xmltv::{self, Audience, Channel};
use capbox::epg::xmltv_in;
use capbox::ts::text::clean_name;
use quick_xml::events::Event as X;

/// 2026-12-06 00:00:00 UTC: the seeds' guides are around this day.
pub const BASE: i64 = 1_796_515_200;

/// `Store::check`, then every channel's merged guide: sorted, no overlap,
/// each event counted in `bytes()`.
pub fn check_store(store: &Store) {
    if let Err(e) = store.check() {
        panic!("store broke a promise: {e}");
    }
    let mut n = 0usize;
    for ch in store.channels() {
        let g = store.guide(ch, i64::MIN, i64::MAX);
        for w in g.windows(2) {
            assert!(
                w[0].end() <= w[1].start,
                "guide of {ch:?} overlaps: {}+{} and {}",
                w[0].start,
                w[0].duration,
                w[1].start
            );
        }
        n += g.len();
    }
    assert!(
        n <= store.events(),
        "guide {n} events, store {}",
        store.events()
    );
}

/// The audience a byte picks: UTC (none), a zone west, one at +05:30.
pub fn audience(b: u8) -> Option<Audience> {
    match b % 3 {
        0 => None,
        1 => Some(Audience::new("west <&\"-->", "America/New_York").unwrap()),
        _ => Some(Audience::new("india", "Asia/Kolkata").unwrap()),
    }
}

/// What `xmltv::escape` keeps of a text (it drops what XML 1.0 forbids).
fn kept(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            !(((c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r')
                || c == '\u{FFFE}'
                || c == '\u{FFFF}')
        })
        .collect()
}

/// Render the store for `audience` over [from, to), then: quick-xml reads
/// the whole document without an error (well-formed, names matched); the
/// root is <tv>; capbox's XMLTV reader reads back, per channel, the events
/// of the store's guide with the same times and texts (so every text was
/// escaped: a '<' or '&' left raw would not read back).
pub fn check_writer(store: &Store, audience: Option<&Audience>, from: i64, to: i64) {
    let keys: Vec<String> = store.channels().map(str::to_string).collect();
    let channels: Vec<Channel<'_>> = keys
        .iter()
        .map(|k| Channel {
            key: k,
            id: k,
            name: k,
        })
        .collect();
    // The writer's ids: the cleaned tvg-id, the first channel of an id only.
    let mut ids: Vec<(String, &str)> = Vec::new();
    for k in &keys {
        let id = clean_name(k);
        if !ids.iter().any(|(i, _)| *i == id) {
            ids.push((id, k));
        }
    }
    let doc = xmltv::write(store, &channels, audience, from, to);

    let mut r = quick_xml::Reader::from_str(&doc);
    let mut depth = 0usize;
    let mut root = None;
    let mut programmes = 0usize;
    loop {
        match r.read_event() {
            Ok(X::Start(e)) => {
                if depth == 0 {
                    root = Some(e.name().as_ref().to_string());
                }
                if e.name().as_ref() == "programme" {
                    programmes += 1;
                }
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute: {err}\n{doc}"));
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap_or_else(|err| panic!("attribute value: {err}\n{doc}"));
                }
                depth += 1;
            }
            Ok(X::End(_)) => depth -= 1,
            Ok(X::Text(t)) => {
                let _ = t.xml10_content();
            }
            Ok(X::GeneralRef(g)) => {
                let known = matches!(&*g, "amp" | "lt" | "gt" | "quot" | "apos");
                assert!(
                    known || matches!(g.resolve_char_ref(), Ok(Some(_))),
                    "unknown entity &{};\n{doc}",
                    &*g
                );
            }
            Ok(X::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!(
                "writer output not well-formed at {}: {e}\n{doc}",
                r.buffer_position()
            ),
        }
    }
    assert_eq!(depth, 0, "unclosed elements\n{doc}");
    assert_eq!(root.as_deref(), Some("tv"));

    let back = xmltv_in::parse(doc.as_bytes(), |id| Some(id.to_string()))
        .unwrap_or_else(|e| panic!("capbox cannot read its own XMLTV: {e}\n{doc}"));
    let mut total = 0usize;
    for (id, k) in &ids {
        let want = store.guide(k, from, to);
        let got = back.channels.get(id).map_or(&[][..], |v| &v[..]);
        assert_eq!(
            got.len(),
            want.len(),
            "channel {k:?}: programmes read back\n{doc}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.start, Some(w.start), "start\n{doc}");
            assert_eq!(g.duration, Some(w.duration), "duration\n{doc}");
            assert_eq!(g.title, kept(&w.title), "title\n{doc}");
            if *w.subtitle != *w.title {
                assert_eq!(g.subtitle, kept(&w.subtitle), "sub-title\n{doc}");
            }
            assert_eq!(g.description, kept(&w.description), "desc\n{doc}");
        }
        total += want.len();
    }
    assert_eq!(programmes, total, "<programme> elements\n{doc}");
}
