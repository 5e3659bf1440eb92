use super::*;

const NOW: i64 = 1_780_000_000;

fn raw(start: i64, dur: u32, title: &str) -> RawEvent {
    RawEvent {
        event_id: (start / 60) as u16,
        start: Some(start),
        duration: Some(dur),
        title: title.into(),
        subtitle: "sub".into(),
        description: "A description.".into(),
        language: Some("ENG".into()),
        content: vec![0x10, 0, 0x23],
        min_age: Some(12),
    }
}

/// `n` back-to-back half-hour events from `start`.
fn day(start: i64, n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| raw(start + i as i64 * 1800, 1800, &format!("Show {i}")))
        .collect()
}

#[test]
fn validation_counts_each_reason() {
    let mut s = Store::new(Limits::default());
    let mut v = day(NOW, 3);
    v.push(RawEvent {
        start: None,
        ..raw(NOW, 60, "x")
    });
    v.push(raw(NOW + 9000, 0, "Zero"));
    v.push(raw(NOW + 9000, 25 * 3600, "Absurd"));
    v.push(raw(NOW - 40 * 86_400, 3600, "Far past"));
    v.push(raw(NOW + 31 * 86_400, 3600, "Far future"));
    v.push(raw(NOW - 2 * 86_400, 3600, "Yesterday's"));
    v.push(raw(NOW + 20_000, 60, " \u{8A}\t "));
    v.push(raw(NOW + 21_000, 60, "\u{FFFD}\u{FFFD}a\u{FFFD}"));
    v.push(raw(NOW + 600, 600, "Overlaps show 0"));
    v.push(raw(NOW + 1800, 1800, "Show 1"));
    v.push(raw(NOW + 30_000, 60, "THE EVENING NEWS"));
    let ev = s.validate(v, NOW);
    let r = s.rejects;
    assert_eq!(
        (r.undefined_time, r.zero_duration, r.absurd_duration),
        (1, 1, 1)
    );
    assert_eq!((r.far_past, r.far_future, r.expired), (1, 1, 1));
    assert_eq!((r.empty_title, r.unprintable_title), (1, 1));
    assert_eq!((r.overlap, r.duplicate, r.caps_normalised), (1, 1, 1));
    let titles: Vec<&str> = ev.iter().map(|e| &*e.title).collect();
    assert_eq!(titles, ["Show 0", "Show 1", "Show 2", "The Evening News"]);
    assert_eq!(ev[0].language_str(), Some("eng"));
    assert_eq!(ev[0].content, [0x10, 0x23, 0]);
    assert_eq!(ev[0].min_age, 12);
}

#[test]
fn caps_normalised_acronyms_kept() {
    assert_eq!(
        normalise_caps("BBC NEWS AT TEN").as_deref(),
        Some("BBC News At Ten")
    );
    assert_eq!(
        normalise_caps("ROCKY II: X-MEN DAY").as_deref(),
        Some("Rocky II: X-Men Day")
    );
    assert_eq!(
        normalise_caps("ΕΙΔΗΣΕΙΣ ΤΗΣ ΕΡΤ").as_deref(),
        Some("Ειδησεις Της Ερτ")
    );
    assert_eq!(normalise_caps("NBA LIVE"), None, "short: an acronym");
    assert_eq!(normalise_caps("The News"), None, "mixed case kept");
    assert_eq!(normalise_caps("新闻联播 CCTV"), None);
}

#[test]
fn repeat_does_not_grow_and_reports_unchanged() {
    let mut s = Store::new(Limits::default());
    let key = PartKey::EitSchedule(0);
    assert_eq!(
        s.replace_raw("ch1", key, day(NOW, 48), NOW),
        Outcome::Stored(48)
    );
    let (bytes, events) = (s.bytes(), s.events());
    // An hour of the table repeating every 10 s.
    for i in 0..360 {
        assert_eq!(
            s.replace_raw("ch1", key, day(NOW, 48), NOW + i * 10),
            Outcome::Unchanged
        );
    }
    assert_eq!((s.bytes(), s.events()), (bytes, events));
    let recount: usize = s
        .guide("ch1", 0, i64::MAX)
        .iter()
        .map(|e| e.footprint())
        .sum();
    assert_eq!(recount, bytes);
}

#[test]
fn wipeout_keeps_last_good_until_hold() {
    let mut s = Store::new(Limits::default());
    let key = PartKey::EitSchedule(0);
    s.replace_raw("ch1", key, day(NOW, 40), NOW);
    assert_eq!(
        s.replace_raw("ch1", key, day(NOW, 3), NOW + 10),
        Outcome::Wipeout
    );
    assert_eq!(s.rejects.wipeout, 1);
    assert_eq!(s.guide("ch1", NOW, NOW + 86_400).len(), 40);
    // An empty table is a wipe-out too.
    assert_eq!(
        s.replace_raw("ch1", key, vec![], NOW + 20),
        Outcome::Wipeout
    );
    // A normal update goes through and ends the hold.
    assert_eq!(
        s.replace_raw("ch1", key, day(NOW, 38), NOW + 30),
        Outcome::Stored(38)
    );
    // Shrunk for longer than the hold: believed.
    let hold = s.limits().wipeout_hold;
    assert_eq!(
        s.replace_raw("ch1", key, day(NOW, 2), NOW + 40),
        Outcome::Wipeout
    );
    assert_eq!(
        s.replace_raw("ch1", key, day(NOW + hold, 2), NOW + 40 + hold),
        Outcome::Stored(2)
    );
    // Past events dropped by the broadcaster are not a wipe-out.
    let mut s = Store::new(Limits::default());
    s.replace_raw("ch1", key, day(NOW, 40), NOW);
    let later = NOW + 30 * 1800;
    assert_eq!(
        s.replace_raw("ch1", key, day(later, 10), later),
        Outcome::Stored(10)
    );
}

#[test]
fn merge_by_priority_fills_gaps() {
    let mut s = Store::new(Limits::default());
    s.replace_raw("ch", PartKey::EitSchedule(0), day(NOW, 4), NOW);
    // p/f says show 1 runs late.
    s.replace_raw(
        "ch",
        PartKey::EitPresentFollowing,
        vec![raw(NOW + 1900, 1800, "Late show")],
        NOW,
    );
    s.replace_raw(
        "ch",
        PartKey::Xmltv(0),
        vec![raw(NOW + 7200, 3600, "From XMLTV"), raw(NOW, 60, "hidden")],
        NOW,
    );
    let g: Vec<&str> = s
        .guide("ch", NOW, NOW + 86_400)
        .iter()
        .map(|e| &*e.title)
        .collect();
    assert_eq!(g, ["Show 0", "Late show", "Show 3", "From XMLTV"]);
    assert_eq!(s.coverage("ch", NOW, 12 * 3600), 4);
}

#[test]
fn budget_evicts_furthest_future_first() {
    let one = {
        let mut s = Store::new(Limits::default());
        s.replace_raw("a", PartKey::EitSchedule(0), day(NOW, 1), NOW);
        s.bytes()
    };
    let mut s = Store::new(Limits {
        budget_bytes: one * 50,
        ..Limits::default()
    });
    s.replace_raw("a", PartKey::EitSchedule(0), day(NOW, 40), NOW);
    assert_eq!(
        s.replace_raw("b", PartKey::EitSchedule(0), day(NOW, 40), NOW),
        Outcome::Stored(25)
    );
    assert!(s.bytes() <= one * 50);
    assert_eq!(s.events(), 50);
    assert_eq!(s.rejects.over_budget, 30);
    // Both channels keep their next hours.
    assert_eq!(s.coverage("a", NOW, 12 * 1800), 12);
    assert_eq!(s.coverage("b", NOW, 12 * 1800), 12);
}

#[test]
fn expiry_and_limits() {
    let mut s = Store::new(Limits {
        max_channels: 2,
        ..Limits::default()
    });
    s.replace_raw("a", PartKey::EitSchedule(0), day(NOW, 10), NOW);
    s.replace_raw("b", PartKey::EitSchedule(0), day(NOW, 10), NOW);
    assert_eq!(
        s.replace_raw("c", PartKey::EitSchedule(0), day(NOW, 10), NOW),
        Outcome::TooMany
    );
    for t in 0..MAX_PARTS as u8 {
        s.replace_raw("a", PartKey::Xmltv(t), vec![], NOW);
    }
    assert!(s.rejects.too_many >= 2);
    let before = s.bytes();
    s.expire(NOW + 2 * 86_400);
    assert_eq!((s.bytes(), s.events()), (0, 0));
    assert_eq!(s.rejects.expired, 20);
    assert!(before > 0);
    s.remove_channel("a");
    assert_eq!(s.channels().count(), 1);
}

#[test]
fn hostile_input_never_panics() {
    let mut s = Store::new(Limits {
        budget_bytes: 100_000,
        ..Limits::default()
    });
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let v: Vec<RawEvent> = (0..(rnd() % 60))
            .map(|_| RawEvent {
                event_id: rnd() as u16,
                start: (rnd() % 4 != 0).then(|| {
                    [i64::MIN, i64::MAX, NOW][rnd() as usize % 3].wrapping_add(
                        (rnd() % 100_000) as i64 * if rnd() % 2 == 0 { 1 } else { -1 },
                    )
                }),
                duration: Some(rnd() as u32 % 100_000),
                title: (0..rnd() % 300)
                    .map(|_| char::from_u32(rnd() as u32 % 0x11_0000).unwrap_or('\u{FFFD}'))
                    .collect(),
                subtitle: "x".repeat(rnd() as usize % 1000),
                description: "é\n".repeat(rnd() as usize % 3000),
                language: Some(String::from_utf8_lossy(&rnd().to_le_bytes()[..3]).into()),
                content: vec![rnd() as u8; 5],
                min_age: Some(rnd() as u8),
            })
            .collect();
        s.replace_raw(
            &format!("c{}", rnd() % 5),
            PartKey::Xmltv(rnd() as u8 % 3),
            v,
            NOW,
        );
        assert!(s.bytes() <= 100_000);
        s.check().unwrap();
    }
}

#[test]
fn check_names_the_broken_promise() {
    let mut s = Store::new(Limits::default());
    s.replace_raw("a", PartKey::EitPresentFollowing, day(NOW, 4), NOW);
    s.check().unwrap();
    s.bytes += 1;
    assert!(s.check().unwrap_err().contains("the parts hold"));
    s.bytes -= 1;
    let p = s
        .channels
        .get_mut("a")
        .unwrap()
        .parts
        .values_mut()
        .next()
        .unwrap();
    p.events.swap(0, 1);
    let e = s.check().unwrap_err();
    assert!(e.contains("\"a\"") && e.contains("overlaps"), "{e}");
}

#[test]
fn long_text_kept_then_cut() {
    let mut s = Store::new(Limits::default());
    let mut e = raw(NOW, 60, "Film");
    e.description = format!("{}\n\n\u{8A}second line", "word ".repeat(100));
    e.subtitle = "s".repeat(600);
    let mut long = raw(NOW + 60, 60, "Film 2");
    long.description = "é".repeat(3000);
    let v = s.validate(vec![e, long], NOW);
    assert_eq!(v[0].description.len(), 499 + 1 + 11);
    assert!(v[0].description.ends_with("word\nsecond line"));
    assert_eq!(v[0].subtitle.len(), MAX_SUBTITLE_BYTES);
    assert_eq!(v[1].description.len(), MAX_DESCRIPTION_BYTES);
    assert_eq!(s.rejects.truncated, 2);
}
