use super::*;
use crate::epg::store::Limits;

const NOW: i64 = 1_780_000_000; // 2026-05-28 20:26:40 UTC

fn map(id: &str) -> Option<String> {
    match id {
        "src.one" => Some("one".into()),
        "two" => Some("two".into()),
        _ => None,
    }
}

const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv>
  <channel id="src.one"><display-name>One</display-name></channel>
  <programme start="20260528200000 +0000" stop="20260528210000 +0000" channel="src.one">
    <title lang="eng">News &amp; weather &#x263A;</title>
    <title lang="fra">Infos</title>
    <sub-title>Evening</sub-title>
    <desc><![CDATA[Line <one>]]>
and two &custom;</desc>
    <category>News/Current affairs</category>
    <category>Bulletin</category>
    <rating system="VCHIP"><value>TV-14</value></rating>
  </programme>
  <programme start="20260528230000 +0200" channel="src.one">
    <title>No stop: until the next</title>
  </programme>
  <programme start="202605282200" channel="src.one">
    <title>Minutes only, UTC</title>
  </programme>
  <programme start="20260528220000 +0000" channel="unknown"><title>x</title></programme>
  <programme start="garbage" stop="20260528220000" channel="two"><title>x</title></programme>
  <programme start="20260528220000" stop="20260528215000" channel="two"><title>backwards</title></programme>
  <programme start="20260528223000" stop="20260528230000" channel="two"><title>   </title></programme>
</tv>
"#;

#[test]
fn parse_map_and_validate() {
    let p = parse(DOC.as_bytes(), map).unwrap();
    assert_eq!(p.stats.unknown_channel, 1);
    assert_eq!(p.stats.bad_time, 1);
    assert_eq!(p.stats.unknown_entity, 1);
    let one = &p.channels["one"];
    assert_eq!(one.len(), 3);
    assert_eq!(one[0].title, "News & weather ☺");
    assert_eq!(one[0].subtitle, "Evening");
    assert_eq!(one[0].description, "Line <one>\nand two ");
    assert_eq!(one[0].language.as_deref(), Some("eng"));
    assert_eq!(one[0].content, vec![0x20]);
    assert_eq!(one[0].min_age, Some(14));
    assert_eq!(one[0].start, Some(1_780_000_000 - 1_780_000_000 % 3600));
    assert_eq!(one[0].duration, Some(3600));
    // 23:00 +0200 = 21:00 UTC, lasts until 22:00 UTC; the last one has no end.
    assert_eq!(
        (one[1].start, one[1].duration),
        (Some(one[0].start.unwrap() + 3600), Some(3600))
    );
    assert_eq!(one[2].duration, None);
    let mut store = Store::new(Limits::default());
    let out = load(&mut store, 0, p, NOW);
    assert_eq!(out[0], ("one".to_string(), Outcome::Stored(2)));
    let r = store.rejects;
    assert_eq!(
        (r.undefined_time, r.zero_duration, r.empty_title),
        (2, 1, 1),
        "{r:?}"
    );
}

#[test]
fn times() {
    assert_eq!(parse_time("19700101000000 +0000"), Some(0));
    assert_eq!(parse_time("19700101010000 +0100"), Some(0));
    assert_eq!(parse_time("19691231190000 -0500"), Some(0));
    assert_eq!(parse_time("20260308070000"), Some(1_772_953_200));
    assert_eq!(parse_time("20240229120000 +0000"), Some(1_709_208_000));
    assert_eq!(parse_time("20230229120000 +0000"), None);
    assert_eq!(parse_time("2026030807"), Some(1_772_953_200));
    for bad in [
        "",
        "x",
        "2026",
        "20261301000000",
        "20260101250000",
        "20260101000000 +2500",
        "20260101000000 +01",
        "99999999999999999",
    ] {
        assert_eq!(parse_time(bad), None, "{bad:?}");
    }
}

#[test]
fn broken_documents_are_errors_in_words() {
    let e = parse(
        b"<tv><programme channel=\"two\" start=\"20260101000000\"><title>x</tv>",
        map,
    )
    .unwrap_err();
    assert!(e.contains("not well-formed near byte"), "{e}");
    let e = parse(b"<tv>\xFF</tv>", map).unwrap_err();
    assert!(e.contains("not UTF-8 at byte 4"), "{e}");
    // Hostile bytes never panic.
    let mut seed = 7u64;
    for _ in 0..2000 {
        let mut doc = DOC.as_bytes().to_vec();
        for _ in 0..8 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let i = (seed >> 33) as usize % doc.len();
            doc[i] = (seed >> 20) as u8 & 0x7F;
        }
        let _ = parse(&doc, map);
    }
}
