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

// ---------------------------------------------------------------------------
// gzip, made by an independent tool (Debian's gzip).

/// `data` compressed by the `gzip` program.
fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_cmd("gzip -c -n", data)
}

/// `sh -c cmd` fed `data`, its output.
fn gzip_cmd(cmd: &str, data: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut c = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh and gzip (Debian: gzip)");
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd}: {:?}", out.status);
    out.stdout
}

fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capbox-fetch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn news_map(id: &str) -> Option<String> {
    (id == "src.news").then(|| "news".to_string())
}

/// One poll of `p` (due at once) and, for a body, its judgement.
fn poll_once(p: &mut Poller, store: &mut Store) -> Result<Applied, Reason> {
    match p.fetch(p.next_due(), NOW) {
        Fetched::Body(b) => Ok(p.apply(&b, store, &news_map, NOW)),
        Fetched::Failed(r) => Err(r),
        f => panic!("{f:?}"),
    }
}

fn guide_of(store: &Store) -> Vec<crate::epg::store::Event> {
    store
        .guide("news", NOW - 3600, NOW + 86_400)
        .into_iter()
        .cloned()
        .collect()
}

fn file_poller(path: &Path, max: u64) -> Poller {
    let mut s = XmltvSource::new("op", 0, path.to_str().unwrap()).unwrap();
    s.max_body_bytes = max;
    Poller::new(s)
}

#[test]
fn gzip_file_loads_the_same_events_as_the_plain_file() {
    let dir = tmp_dir("gz");
    let plain = doc(
        "src.news",
        40,
        |i| format!("Show {i} &amp; more"),
        1800,
        1800,
    );
    std::fs::write(dir.join("guide.xml"), &plain).unwrap();
    let mut store = Store::new(Limits::default());
    let mut p = file_poller(&dir.join("guide.xml"), DEFAULT_MAX_BODY_BYTES);
    assert!(matches!(
        poll_once(&mut p, &mut store),
        Ok(Applied::Loaded { channels: 1, .. })
    ));
    let want = guide_of(&store);
    assert_eq!(want.len(), 40);

    // guide.xml.gz by gzip; the same bytes named guide.xml (found by the
    // magic bytes, not the name); two members (each half compressed on its
    // own, concatenated, as `cat a.gz b.gz` makes).
    let gz = gzip(&plain);
    assert!(gz.starts_with(&GZIP_MAGIC) && gz.len() < plain.len() / 2);
    let half = plain.len() / 2;
    let mut two = gzip(&plain[..half]);
    two.extend_from_slice(&gzip(&plain[half..]));
    for (name, bytes) in [
        ("guide.xml.gz", &gz),
        ("misnamed.xml", &gz),
        ("two-members.xml.gz", &two),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut store = Store::new(Limits::default());
        let cache = dir.join(format!("cache-{name}"));
        std::fs::create_dir_all(&cache).unwrap();
        let mut p = file_poller(&path, DEFAULT_MAX_BODY_BYTES).cache_in(cache.clone());
        assert_eq!(
            poll_once(&mut p, &mut store),
            Ok(Applied::Loaded {
                channels: 1,
                refused: 0
            }),
            "{name}: {:?}",
            p.stats().last_error
        );
        assert_eq!(guide_of(&store), want, "{name}");
        // Counted as received: the compressed size.
        assert_eq!(p.stats().bytes, bytes.len() as u64, "{name}");
        // An unchanged file is not read again.
        assert_eq!(p.fetch(p.next_due(), NOW), Fetched::NotModified, "{name}");
        // The cache keeps the inflated document, which a restart loads.
        assert_eq!(std::fs::read(cache.join("xmltv-op.xml")).unwrap(), plain);
        let mut fresh = Store::new(Limits::default());
        let mut q = file_poller(&path, DEFAULT_MAX_BODY_BYTES).cache_in(cache);
        assert!(matches!(
            q.restore(&mut fresh, &news_map, 0, NOW),
            Some(Applied::Loaded { channels: 1, .. })
        ));
        assert_eq!(guide_of(&fresh), want, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The compressed byte an error names ("… compressed byte N …").
fn compressed_byte(text: &str) -> u64 {
    text.split("compressed byte ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no compressed byte in {text:?}"))
}

#[test]
fn gzip_bomb_and_broken_streams_keep_the_last_good_guide() {
    let dir = tmp_dir("gzbad");
    let path = dir.join("guide.xml.gz");
    let max = 1 << 20;
    let plain = doc("src.news", 10, |i| format!("Show {i}"), 1800, 1800);
    let good = gzip(&plain);
    std::fs::write(&path, &good).unwrap();
    let mut store = Store::new(Limits::default());
    let mut p = file_poller(&path, max);
    assert!(matches!(
        poll_once(&mut p, &mut store),
        Ok(Applied::Loaded { .. })
    ));
    let want = guide_of(&store);
    assert_eq!(want.len(), 10);

    // A bomb: 64 MiB of zeros, 64 KiB compressed, against a 1 MiB cap.
    // Refused as it inflates, a few KiB into the compressed stream: never
    // inflated whole.
    let bomb = gzip_cmd("head -c 64M /dev/zero | gzip -c -n", b"");
    assert!(bomb.len() < 200 << 10 && bomb.len() as u64 <= max);
    // Corrupt deflate data: the first block's bytes replaced.
    let mut corrupt = good.clone();
    for b in &mut corrupt[10..20] {
        *b = 0xff;
    }
    // A wrong CRC-32 in the trailer.
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 8] ^= 0x55;
    let cases: [(&str, Vec<u8>, Reason, &str); 5] = [
        (
            "bomb",
            bomb.clone(),
            Reason::TooBig,
            "gzip: the document expands past max_body_bytes (1 MiB) by compressed byte",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            Reason::Gzip,
            "gzip: truncated: the stream ends at compressed byte",
        ),
        (
            "corrupt",
            corrupt,
            Reason::Gzip,
            "gzip: corrupt deflate stream at compressed byte",
        ),
        ("crc", crc, Reason::Gzip, "CRC-32 or length check"),
        (
            "trailing garbage",
            [&good[..], b"<tv>junk</tv>"].concat(),
            Reason::Gzip,
            "gzip: invalid gzip header in compressed bytes",
        ),
    ];
    for (i, (what, bytes, reason, words)) in cases.into_iter().enumerate() {
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(poll_once(&mut p, &mut store), Err(reason), "{what}");
        let err = p.stats().last_error.clone().unwrap();
        eprintln!("{what}: {err}");
        assert!(err.contains(words), "{what}: {err}");
        assert!(err.contains("guide.xml.gz"), "{what}: {err}");
        if what == "bomb" {
            let at = compressed_byte(&err);
            assert!(at < bomb.len() as u64 / 8, "{what}: {at} of {}", bomb.len());
        }
        if what == "trailing garbage" {
            assert!(err.contains(&format!("bytes {}..", good.len())), "{err}");
        }
        if what == "truncated" {
            assert_eq!(compressed_byte(&err), good.len() as u64 / 2, "{err}");
        }
        assert_eq!(guide_of(&store), want, "{what}");
        assert_eq!(p.stats().consecutive_failures, i as u32 + 1, "{what}");
    }
    let s = p.stats();
    assert_eq!(
        (s.errors_of(Reason::TooBig), s.errors_of(Reason::Gzip)),
        (1, 4)
    );
    let mut m = String::new();
    render_metrics(&mut m, &[("op", s)]);
    crate::monitor::metrics::lint(&m).unwrap();
    assert!(m.contains("capbox_epg_xmltv_fetches_total{source=\"op\",result=\"gzip\"} 4\n"));
    assert!(m.contains("capbox_epg_xmltv_fetches_total{source=\"op\",result=\"too_big\"} 1\n"));
    // A compressed file over the cap is refused before it is read.
    p.src.max_body_bytes = bomb.len() as u64 - 1;
    std::fs::write(&path, &bomb).unwrap();
    assert_eq!(poll_once(&mut p, &mut store), Err(Reason::TooBig));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-request HTTP server on 127.0.0.1: answers `response` and
/// closes. The URL, and the request head it got.
fn serve_once(response: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/guide.xml",
        l.local_addr().unwrap().port()
    );
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 4096];
        while !req.ends_with(b"\r\n\r\n") {
            match c.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&b[..n]),
            }
        }
        // The client may close early (a refused body): not an error here.
        let _ = c.write_all(&response);
        String::from_utf8_lossy(&req).into_owned()
    });
    (url, h)
}

fn http_poller(url: &str, max: u64) -> Poller {
    let mut s = XmltvSource::new("op", 0, url).unwrap();
    s.max_body_bytes = max;
    s.idle_timeout_ms = 2000;
    s.total_timeout_ms = 10_000;
    Poller::new(s)
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn gzip_over_http_by_magic_or_content_encoding() {
    let plain = doc("src.news", 40, |i| format!("Show {i}"), 1800, 1800);
    let gz = gzip(&plain);
    let mut store = Store::new(Limits::default());
    let (url, h) = serve_once(
        [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                plain.len()
            )
            .as_bytes(),
            &plain,
        ]
        .concat(),
    );
    assert!(matches!(
        poll_once(&mut http_poller(&url, DEFAULT_MAX_BODY_BYTES), &mut store),
        Ok(Applied::Loaded { channels: 1, .. })
    ));
    assert!(
        h.join()
            .unwrap()
            .contains("\r\nAccept-Encoding: gzip, identity\r\n"),
        "gzip not asked for"
    );
    let want = guide_of(&store);
    assert_eq!(want.len(), 40);

    let heads = [
        // A .gz file served as such (no Content-Encoding), with a length.
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        ),
        // Compressed on the fly, chunked.
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        // The old name, until the server closes.
        "HTTP/1.1 200 OK\r\nContent-Encoding: x-gzip\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for (i, head) in heads.into_iter().enumerate() {
        let body = if head.contains("chunked") {
            chunked(&gz)
        } else {
            gz.clone()
        };
        let (url, _h) = serve_once([head.as_bytes(), &body].concat());
        let mut p = http_poller(&url, DEFAULT_MAX_BODY_BYTES);
        let mut store = Store::new(Limits::default());
        assert_eq!(
            poll_once(&mut p, &mut store),
            Ok(Applied::Loaded {
                channels: 1,
                refused: 0
            }),
            "case {i}: {:?}",
            p.stats().last_error
        );
        assert_eq!(guide_of(&store), want, "case {i}");
        assert_eq!(p.stats().bytes, gz.len() as u64, "case {i}");
    }

    // A bomb, a truncated stream, a plain body that says gzip, another
    // coding: refused, counted, the guide kept.
    let bomb = gzip_cmd("head -c 16M /dev/zero | gzip -c -n", b"");
    let cases: [(Vec<u8>, Reason, &str); 4] = [
        (
            [
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-gzip\r\n\r\n".as_slice(),
                &bomb,
            ]
            .concat(),
            Reason::TooBig,
            "gzip: the document expands past max_body_bytes (1 MiB)",
        ),
        (
            [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    gz.len() - 10
                )
                .as_bytes(),
                &gz[..gz.len() - 10],
            ]
            .concat(),
            Reason::Gzip,
            "gzip: truncated",
        ),
        (
            [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                    plain.len()
                )
                .as_bytes(),
                &plain,
            ]
            .concat(),
            Reason::Gzip,
            "Content-Encoding: gzip, but the body starts with \"<?xml ve",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            Reason::BadResponse,
            "Content-Encoding \"br\" is not supported",
        ),
    ];
    let mut p = http_poller(&url, 1 << 20);
    p.validators = Validators::default();
    for (i, (response, reason, words)) in cases.into_iter().enumerate() {
        let (url, _h) = serve_once(response);
        p.src.location = Location::parse(&url).unwrap();
        assert_eq!(poll_once(&mut p, &mut store), Err(reason), "case {i}");
        let err = p.stats().last_error.clone().unwrap();
        assert!(err.contains(words), "case {i}: {err}");
        assert_eq!(guide_of(&store), want, "case {i}");
    }
    let s = p.stats();
    assert_eq!(
        (
            s.errors_of(Reason::TooBig),
            s.errors_of(Reason::Gzip),
            s.errors_of(Reason::BadResponse)
        ),
        (1, 2, 1)
    );
}
