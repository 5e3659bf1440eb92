use super::*;
use crate::epg::store::Limits;

const H: u64 = 3600;
const NOW: i64 = 1_780_000_000;

#[test]
fn delay_doubles_bounded_never_below_every() {
    let (e, m) = (6 * H, 24 * H);
    assert_eq!(next_delay(e, m, 0, None), 6 * H);
    assert_eq!(next_delay(e, m, 1, None), 6 * H);
    assert_eq!(next_delay(e, m, 2, None), 12 * H);
    assert_eq!(next_delay(e, m, 3, None), 24 * H);
    assert_eq!(next_delay(e, m, 4, None), 24 * H);
    assert_eq!(next_delay(e, m, u32::MAX, None), 24 * H);
    // A maximum below the period is raised to it.
    assert_eq!(next_delay(e, H, 5, None), 6 * H);
    // Retry-After: longer honoured up to the bound, shorter ignored.
    assert_eq!(next_delay(e, m, 1, Some(10 * H)), 10 * H);
    assert_eq!(next_delay(e, m, 1, Some(60)), 6 * H);
    assert_eq!(next_delay(e, m, 1, Some(u64::MAX)), 24 * H);
    // No overflow with absurd settings.
    assert_eq!(next_delay(u64::MAX / 2, u64::MAX, 40, None), u64::MAX);
}

#[test]
fn locations() {
    assert!(matches!(
        Location::parse("http://10.0.0.9:8080/guide.xml?token=s3cret"),
        Ok(Location::Http { ref shown, .. }) if shown == "http://10.0.0.9:8080/guide.xml?token=<hidden>"
    ));
    assert!(Location::parse("https://x/g.xml")
        .unwrap_err()
        .contains("https is not supported"));
    assert!(Location::parse("ftp://x/g.xml")
        .unwrap_err()
        .contains("ftp:// is not supported"));
    assert_eq!(
        Location::parse("file:///var/lib/guide.xml"),
        Ok(Location::File("/var/lib/guide.xml".into()))
    );
    assert_eq!(
        Location::parse("guide.xml"),
        Ok(Location::File("guide.xml".into()))
    );
    assert!(Location::parse("").is_err());
}

fn poller(every: u64) -> Poller {
    let mut s = XmltvSource::new("op", 0, "/nonexistent/guide.xml").unwrap();
    s.every_secs = every;
    Poller::new(s)
}

fn fail(r: Reason) -> Result<Answer, FetchError> {
    Err(FetchError::new(r, "boom"))
}

#[test]
fn schedule_and_backoff_through_the_state_machine() {
    let mut p = poller(6 * H);
    let mut asked = Vec::new();
    // Three failures of the source, then it answers; a refused document
    // in between does not back off.
    for mono in (0..10 * 86_400u64).step_by(60) {
        let n = asked.len();
        let r = p.fetch_with(mono, NOW + mono as i64, |_, _| match n {
            0..=2 => fail(Reason::Connect),
            3 => Ok(Answer::Body {
                body: b"<tv/>".to_vec(),
                validators: Validators::default(),
                received: 5,
            }),
            _ => Ok(Answer::NotModified),
        });
        if r != Fetched::NotDue {
            asked.push(mono);
        }
    }
    // 0, +6 h, +12 h, +24 h (back-off), then every 6 h.
    assert_eq!(&asked[..5], &[0, 6 * H, 18 * H, 42 * H, 48 * H]);
    for w in asked.windows(2) {
        assert!(w[1] - w[0] >= 6 * H, "{asked:?}");
    }
    let s = p.stats();
    assert_eq!(s.errors_of(Reason::Connect), 3);
    assert_eq!(s.fetches, asked.len() as u64);
    assert_eq!(s.not_modified, asked.len() as u64 - 4);
    assert_eq!(s.consecutive_failures, 0);
    assert!(s.last_error.as_deref().unwrap().contains("boom"));
}

#[test]
fn minimum_period_and_retry_after() {
    let mut p = poller(0);
    assert_eq!(p.source().every_secs, MIN_EVERY_SECS);
    assert_eq!(
        p.fetch_with(0, NOW, |_, _| Ok(Answer::NotModified)),
        Fetched::NotModified
    );
    for t in 1..MIN_EVERY_SECS {
        assert_eq!(
            p.fetch_with(t, NOW, |_, _| unreachable!("asked too early")),
            Fetched::NotDue
        );
    }
    let r = p.fetch_with(MIN_EVERY_SECS, NOW, |_, _| {
        Err(FetchError {
            retry_after: Some(3600),
            ..FetchError::new(Reason::HttpStatus, "HTTP 503")
        })
    });
    assert_eq!(r, Fetched::Failed(Reason::HttpStatus));
    // The server's Retry-After (1 h) is longer than the back-off (60 s):
    // honoured.
    assert_eq!(p.next_due(), MIN_EVERY_SECS + 3600);
}

fn doc(ch: &str, n: usize, title: impl Fn(usize) -> String, step: i64, dur: i64) -> Vec<u8> {
    let fmt = |t: i64| {
        jiff::Timestamp::from_second(t)
            .unwrap()
            .strftime("%Y%m%d%H%M%S +0000")
            .to_string()
    };
    let mut s = String::from("<?xml version=\"1.0\"?>\n<tv>\n");
    for i in 0..n {
        let start = NOW - 600 + i as i64 * step;
        s.push_str(&format!(
            "<programme start=\"{}\" stop=\"{}\" channel=\"{ch}\"><title>{}</title></programme>\n",
            fmt(start),
            fmt(start + dur),
            title(i)
        ));
    }
    s.push_str("</tv>\n");
    s.into_bytes()
}

fn body(p: &mut Poller, b: Vec<u8>, etag: &str) -> Vec<u8> {
    let r = p.fetch_with(p.next_due(), NOW, |_, _| {
        Ok(Answer::Body {
            received: b.len() as u64,
            body: b,
            validators: Validators {
                etag: Some(etag.into()),
                ..Validators::default()
            },
        })
    });
    match r {
        Fetched::Body(b) => b,
        r => panic!("{r:?}"),
    }
}

#[test]
fn refused_documents_keep_validators_and_guide() {
    let map = |id: &str| (id == "src.news").then(|| "news".to_string());
    let mut store = Store::new(Limits::default());
    let mut p = poller(6 * H);
    let good = body(
        &mut p,
        doc("src.news", 4, |i| format!("Show {i}"), 1800, 1800),
        "\"v1\"",
    );
    assert_eq!(
        p.apply(&good, &mut store, &map, NOW),
        Applied::Loaded {
            channels: 1,
            refused: 0
        }
    );
    assert_eq!(p.validators().etag.as_deref(), Some("\"v1\""));
    let before: Vec<_> = store
        .guide("news", NOW - 3600, NOW + 86_400)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(before.len(), 4);

    // Overlapping events (a 1 h duration every 15 min) and an empty title:
    // 3 of 4 invalid, the channel (so the document) refused.
    let bad = body(
        &mut p,
        doc(
            "src.news",
            4,
            |i| if i == 3 { " ".into() } else { format!("S{i}") },
            900,
            3600,
        ),
        "\"v2\"",
    );
    assert_eq!(
        p.apply(&bad, &mut store, &map, NOW),
        Applied::Refused(Reason::Invalid)
    );
    assert_eq!(
        p.validators().etag.as_deref(),
        Some("\"v1\""),
        "refused validators not kept"
    );
    assert_eq!(p.stats().channels_refused, 1);
    assert!(store.rejects.overlap >= 1 && store.rejects.empty_title >= 1);

    // Unknown ids: nothing maps.
    let unknown = body(
        &mut p,
        doc("other.id", 4, |i| format!("Show {i}"), 1800, 1800),
        "\"v3\"",
    );
    assert_eq!(
        p.apply(&unknown, &mut store, &map, NOW),
        Applied::Refused(Reason::NoChannels)
    );
    assert_eq!(p.stats().unknown_ids, vec!["other.id".to_string()]);
    assert!(p
        .stats()
        .last_error
        .as_deref()
        .unwrap()
        .contains("other.id"));

    // Not XML.
    let broken = body(&mut p, b"<tv><programme".to_vec(), "\"v4\"");
    assert_eq!(
        p.apply(&broken, &mut store, &map, NOW),
        Applied::Refused(Reason::Parse)
    );

    let after: Vec<_> = store
        .guide("news", NOW - 3600, NOW + 86_400)
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(before, after);
    let s = p.stats();
    assert_eq!(
        (
            s.loaded,
            s.errors_of(Reason::Invalid),
            s.errors_of(Reason::NoChannels),
            s.errors_of(Reason::Parse)
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(s.fetches, 4);
    // A refused document does not back off.
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(p.next_due(), 4 * 6 * H);
    let mut m = String::new();
    render_metrics(&mut m, &[("op", s)]);
    crate::monitor::metrics::lint(&m).unwrap();
    assert!(m.contains("capbox_epg_xmltv_fetches_total{source=\"op\",result=\"invalid\"} 1\n"));
    assert!(m.contains("capbox_epg_xmltv_fetches_total{source=\"op\",result=\"ok\"} 1\n"));
    assert!(m.contains(&format!(
        "capbox_epg_xmltv_last_success_timestamp_seconds{{source=\"op\"}} {NOW}\n"
    )));
    assert!(
        s.words(NOW + 7200).contains("last good 2 h ago"),
        "{}",
        s.words(NOW + 7200)
    );
}

#[test]
fn file_source_conditional_on_mtime_and_size() {
    let dir = std::env::temp_dir().join(format!("capbox-fetch-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guide.xml");
    std::fs::write(&path, b"<tv/>").unwrap();
    let mut src = XmltvSource::new("f", 0, path.to_str().unwrap()).unwrap();
    let v = Validators::default();
    let Ok(Answer::Body { validators, .. }) = get(&src, &v) else {
        panic!()
    };
    assert!(validators.file.is_some());
    assert_eq!(get(&src, &validators), Ok(Answer::NotModified));
    std::fs::write(&path, b"<tv></tv>").unwrap();
    assert!(matches!(get(&src, &validators), Ok(Answer::Body { .. })));
    src.max_body_bytes = 4;
    assert_eq!(get(&src, &v).unwrap_err().reason, Reason::TooBig);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(get(&src, &v).unwrap_err().reason, Reason::File);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validators_are_header_safe() {
    assert_eq!(validator(b" \"abc\" "), Some("\"abc\"".into()));
    assert_eq!(validator(b"a\x01b"), None);
    assert_eq!(validator(&[b'a'; MAX_VALIDATOR_BYTES + 1]), None);
    assert_eq!(validator(b""), None);
}

#[test]
fn poll_state_round_trip_and_lenient() {
    let st = PollState {
        validators: Validators {
            etag: Some("W/\"x y\"".into()),
            last_modified: Some("Thu, 28 May 2026 18:00:00 GMT".into()),
            file: Some((-5, 42)),
        },
        last_attempt: Some(NOW),
        last_success: Some(NOW - 60),
        failures: 3,
    };
    assert_eq!(PollState::from_text(&st.to_text()), st);
    assert_eq!(
        PollState::from_text("garbage\nfailures x\nfile 1\netag \u{1}\n"),
        PollState::default()
    );
}

#[test]
fn restart_with_a_cache_keeps_guide_and_schedule() {
    let dir = std::env::temp_dir().join(format!("capbox-fetch-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let map = |id: &str| (id == "src.news").then(|| "news".to_string());
    let good = doc("src.news", 6, |i| format!("Show {i}"), 1800, 1800);

    let mut p = poller(6 * H).cache_in(dir.clone());
    let mut store = Store::new(Limits::default());
    let b = body(&mut p, good.clone(), "\"v1\"");
    assert!(matches!(
        p.apply(&b, &mut store, &map, NOW),
        Applied::Loaded { .. }
    ));

    // Restarted an hour later: the guide is back without asking, and the
    // next poll is 5 h away, with the cached ETag.
    let mut q = poller(6 * H).cache_in(dir.clone());
    let mut fresh = Store::new(Limits::default());
    assert!(matches!(
        q.restore(&mut fresh, &map, 100, NOW + 3600),
        Some(Applied::Loaded {
            channels: 1,
            refused: 0
        })
    ));
    assert_eq!(fresh.guide("news", NOW, NOW + 86_400).len(), 6);
    assert_eq!(q.next_due(), 100 + 5 * H);
    assert_eq!(q.validators().etag.as_deref(), Some("\"v1\""));
    assert_eq!(q.stats().fetches, 0);
    assert_eq!(q.stats().last_success, Some(NOW));

    // The source fails twice; restarted, the back-off (12 h) is kept even
    // though nothing changed on disk for the guide.
    q.fetch_with(q.next_due(), NOW + 6 * 3600, |_, _| fail(Reason::Timeout));
    q.fetch_with(q.next_due(), NOW + 12 * 3600, |_, _| fail(Reason::Timeout));
    let mut r = poller(6 * H).cache_in(dir.clone());
    r.restore(
        &mut Store::new(Limits::default()),
        &map,
        0,
        NOW + 12 * 3600 + 60,
    );
    assert_eq!(r.next_due(), 12 * H - 60);
    assert_eq!(r.stats().consecutive_failures, 2);

    // A clock gone back: one full period.
    let mut r = poller(6 * H).cache_in(dir.clone());
    r.restore(&mut Store::new(Limits::default()), &map, 0, NOW - 86_400);
    assert_eq!(r.next_due(), 12 * H);

    // A cached document no longer current (a month later) and a source
    // that was answering: asked at once.
    std::fs::write(
        dir.join("xmltv-op.state"),
        "last_attempt 1780000000\nfailures 0\n",
    )
    .unwrap();
    let mut r = poller(6 * H).cache_in(dir.clone());
    assert_eq!(
        r.restore(
            &mut Store::new(Limits::default()),
            &map,
            0,
            NOW + 40 * 86_400
        ),
        Some(Applied::Refused(Reason::Invalid))
    );
    assert_eq!(r.next_due(), 0);
    // No cache directory: nothing restored, asked at once.
    let mut r = poller(6 * H);
    assert_eq!(
        r.restore(&mut Store::new(Limits::default()), &map, 0, NOW),
        None
    );
    assert_eq!(r.next_due(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
