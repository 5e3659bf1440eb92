use super::*;
use crate::epg::store::{Limits, PartKey, RawEvent};

/// 2026-03-08 07:00 UTC: New York goes from EST (-0500) to EDT (-0400).
const NY_SPRING: i64 = 1_772_953_200;
/// 2026-10-25 01:00 UTC: London goes from BST (+0100) to GMT (+0000).
const LONDON_AUTUMN: i64 = 1_792_890_000;

#[test]
fn dst_both_sides_of_the_change() {
    let ny = Audience::new("miami", "America/New_York").unwrap();
    assert_eq!(ny.format(NY_SPRING - 1800), "20260308013000 -0500");
    assert_eq!(ny.format(NY_SPRING), "20260308030000 -0400");
    assert_eq!(ny.format(NY_SPRING + 1800), "20260308033000 -0400");
    let london = Audience::new("uk", "Europe/London").unwrap();
    assert_eq!(london.format(LONDON_AUTUMN - 1800), "20261025013000 +0100");
    // 01:30 again, an hour later, in GMT.
    assert_eq!(london.format(LONDON_AUTUMN + 1800), "20261025013000 +0000");
    let tokyo = Audience::new("jp", "Asia/Tokyo").unwrap();
    assert_eq!(tokyo.format(NY_SPRING), "20260308160000 +0900");
    let e = Audience::new("x", "Mars/Olympus").unwrap_err();
    assert!(
        e.contains("audience \"x\"") && e.contains("Mars/Olympus"),
        "{e}"
    );
}

#[test]
fn programmes_in_the_audience_zone_escaped() {
    let mut s = Store::new(Limits::default());
    let now = NY_SPRING - 3600;
    let ev = |start: i64, title: &str| RawEvent {
        event_id: 1,
        start: Some(start),
        duration: Some(3600),
        title: title.into(),
        subtitle: "Part <1> & \"2\"".into(),
        description: "Line one\nline two\u{1}".into(),
        language: Some("eng".into()),
        content: vec![0x23],
        min_age: Some(15),
    };
    s.replace_raw(
        "news.us",
        PartKey::EitSchedule(0),
        vec![ev(NY_SPRING - 3600, "Before"), ev(NY_SPRING, "After")],
        now,
    );
    let ch = [Channel {
        key: "news.us",
        id: "news.us",
        name: "News & \"More\"",
    }];
    let ny = Audience::new("miami", "America/New_York").unwrap();
    let x = write(&s, &ch, Some(&ny), now, now + 86_400);
    assert!(
        x.contains("<display-name>News &amp; &apos;More&apos;</display-name>"),
        "{x}"
    );
    assert!(x.contains(
        "<programme start=\"20260308010000 -0500\" stop=\"20260308030000 -0400\" channel=\"news.us\">"
    ), "{x}");
    assert!(x.contains(
        "<programme start=\"20260308030000 -0400\" stop=\"20260308040000 -0400\" channel=\"news.us\">"
    ), "{x}");
    assert!(
        x.contains("<sub-title lang=\"eng\">Part &lt;1&gt; &amp; &apos;2&apos;</sub-title>"),
        "{x}"
    );
    assert!(
        x.contains("<desc lang=\"eng\">Line one\nline two</desc>"),
        "{x}"
    );
    assert!(x.contains("<category lang=\"en\">News/Current affairs</category>"));
    assert!(x.contains("<value>15</value>"));
    assert!(x.contains("<!-- audience miami, time zone America/New_York -->"));
    // Without an audience: UTC.
    let x = write(&s, &ch, None, now, now + 86_400);
    assert!(x.contains("start=\"20260308060000 +0000\""), "{x}");
    // One channel not in the store: declared, no programmes.
    let x = write(
        &s,
        &[Channel {
            key: "none",
            id: "none",
            name: "None",
        }],
        None,
        now,
        now + 86_400,
    );
    assert!(x.contains("<channel id=\"none\">") && !x.contains("<programme"));
}
