//! The guide from the operator, fetched over real HTTP: a local server
//! thread in this test (it counts requests and answers 200 with an ETag,
//! 304, 500/503, a stall, a huge body, a truncated one, garbage) and
//! Python's `http.server` (an independent server: Last-Modified and
//! If-Modified-Since). The poller's clock is fake, so a week of polling
//! takes a second; the sockets, timeouts and parsing are real.
//!
//! Shown here: a 304 is honoured (the request carried If-None-Match); a
//! fetch that fails for any reason keeps the last good guide and is
//! counted by reason; a document with overlapping and empty events and one
//! with unknown channel ids keep the last good guide and are counted; the
//! source is never polled more often than configured, whatever it answers;
//! EIT and XMLTV merge by the configured priority.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capbox::epg::fetch::{
    self, Answer, Applied, FetchStats, Fetched, Poller, Reason, Validators, XmltvSource,
};
use capbox::epg::{Event, Limits, Origin, PartKey, RawEvent, Store};

/// 2026-05-28 20:26:40 UTC.
const NOW: i64 = 1_780_000_000;
const H: u64 = 3600;

// ---------------------------------------------------------------------------
// Documents (written here by hand, as an operator's generator would).

fn xmltv_time(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y%m%d%H%M%S +0000")
        .to_string()
}

/// `n` programmes on channel `id`, `step` seconds apart, lasting `dur`,
/// from 10 minutes before `now`.
fn programmes(
    id: &str,
    now: i64,
    n: usize,
    step: i64,
    dur: i64,
    title: &dyn Fn(usize) -> String,
) -> String {
    let mut s = String::new();
    for i in 0..n {
        let start = now - 600 + i as i64 * step;
        s.push_str(&format!(
            "  <programme start=\"{}\" stop=\"{}\" channel=\"{id}\">\n    <title lang=\"en\">{}</title>\n    <desc>About {}.</desc>\n  </programme>\n",
            xmltv_time(start),
            xmltv_time(start + dur),
            title(i),
            title(i),
        ));
    }
    s
}

fn document(parts: &[String]) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n<tv generator-info-name=\"operator\">\n  <channel id=\"op.news\"><display-name>News</display-name></channel>\n  <channel id=\"op.films\"><display-name>Films</display-name></channel>\n",
    );
    for p in parts {
        s.push_str(p);
    }
    s.push_str("</tv>\n");
    s.into_bytes()
}

/// A good guide for both channels: 48 half-hour programmes each.
fn good(now: i64, tag: &str) -> Vec<u8> {
    document(&[
        programmes("op.news", now, 48, 1800, 1800, &|i| {
            format!("News {tag} {i}")
        }),
        programmes("op.films", now, 24, 3600, 3600, &|i| {
            format!("Film {tag} {i}")
        }),
    ])
}

fn resolve(id: &str) -> Option<String> {
    match id {
        "op.news" => Some("news".into()),
        "op.films" => Some("films".into()),
        _ => None,
    }
}

fn snapshot(store: &Store, ch: &str, now: i64) -> Vec<Event> {
    store
        .guide(ch, now - 86_400, now + 8 * 86_400)
        .into_iter()
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// The server.

#[derive(Clone)]
enum Mode {
    /// 200 with this body and ETag (304 when If-None-Match matches);
    /// chunked or with a Content-Length.
    Guide {
        body: Vec<u8>,
        etag: String,
        chunked: bool,
    },
    Status(u16, Option<u64>),
    /// Accept, read the request, say nothing for this long.
    Stall(Duration),
    /// Announce a Content-Length of 1 GiB.
    HugeLength,
    /// Chunks without end until the client goes.
    HugeChunked,
    /// Content-Length 100 000, 1000 bytes, close.
    Truncated,
    NotHttp,
}

#[derive(Debug, Clone)]
struct Seen {
    if_none_match: Option<String>,
    target: String,
}

struct Server {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(mode: Mode) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(mode));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (m, s) = (mode.clone(), seen.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let (m, s) = (m.clone(), s.clone());
                std::thread::spawn(move || serve(c, &m, &s));
            }
        });
        Server { port, mode, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/guide.xml", self.port)
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

fn serve(mut c: TcpStream, mode: &Mutex<Mode>, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let (target, inm) = loop {
        let Ok(n) = c.read(&mut b) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&b[..n]);
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut h);
        if let Ok(httparse::Status::Complete(_)) = r.parse(&buf) {
            let inm = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("if-none-match"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            break (r.path.unwrap_or("").to_string(), inm);
        }
    };
    seen.lock().unwrap().push(Seen {
        if_none_match: inm.clone(),
        target,
    });
    let m = mode.lock().unwrap().clone();
    let _ = match m {
        Mode::Guide {
            body,
            etag,
            chunked,
        } => {
            if inm.as_deref() == Some(etag.as_str()) {
                c.write_all(
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
            } else if chunked {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nETag: {etag}\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                for piece in body.chunks(7001) {
                    out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
                c.write_all(&out)
            } else {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nETag: {etag}\r\nLast-Modified: Thu, 28 May 2026 18:00:00 GMT\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                c.write_all(&out)
            }
        }
        Mode::Status(code, retry) => {
            let ra = retry.map_or(String::new(), |r| format!("Retry-After: {r}\r\n"));
            c.write_all(
                format!("HTTP/1.1 {code} Oops\r\n{ra}Content-Length: 5\r\n\r\noops!").as_bytes(),
            )
        }
        Mode::Stall(d) => {
            std::thread::sleep(d);
            Ok(())
        }
        Mode::HugeLength => c.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n<?xml version=\"1.0\"?><tv>",
        ),
        Mode::HugeChunked => {
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = [b' '; 65536];
            let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
            loop {
                if c.write_all(&out).is_err() {
                    break Ok(());
                }
            }
        }
        Mode::Truncated => {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            out.extend_from_slice(&[b' '; 1000]);
            c.write_all(&out)
        }
        Mode::NotHttp => c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n"),
    };
}

fn source(url: &str) -> XmltvSource {
    let mut s = XmltvSource::new("operator", 0, url).unwrap();
    // Short timeouts (a stall ends in a second), with room for a loaded CI
    // machine.
    s.idle_timeout_ms = 1000;
    s.total_timeout_ms = 5000;
    s.connect_timeout_ms = 1000;
    s.max_body_bytes = 4 << 20;
    s
}

/// One poll at `mono` (due or not) and, for a body, its judgement.
fn poll(p: &mut Poller, store: &mut Store, mono: u64, unix: i64) -> (Fetched, Option<Applied>) {
    match p.fetch(mono, unix) {
        Fetched::Body(b) => {
            let a = p.apply(&b, store, &resolve, unix);
            (Fetched::Body(Vec::new()), Some(a))
        }
        f => (f, None),
    }
}

// ---------------------------------------------------------------------------

#[test]
fn not_modified_honoured_and_failures_keep_the_last_good_guide() {
    let t = Instant::now();
    let srv = Server::start(Mode::Guide {
        body: good(NOW, "v1"),
        etag: "\"v1\"".into(),
        chunked: false,
    });
    let mut p = Poller::new(source(&srv.url()));
    let mut store = Store::new(Limits::default());

    let (_, a) = poll(&mut p, &mut store, 0, NOW);
    assert_eq!(
        a,
        Some(Applied::Loaded {
            channels: 2,
            refused: 0
        })
    );
    assert_eq!(srv.last().if_none_match, None);
    assert_eq!(srv.last().target, "/guide.xml");
    let news = snapshot(&store, "news", NOW);
    let films = snapshot(&store, "films", NOW);
    assert_eq!((news.len(), films.len()), (48, 24));
    assert_eq!(&*news[0].title, "News v1 0");
    assert_eq!(p.validators().etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        p.validators().last_modified.as_deref(),
        Some("Thu, 28 May 2026 18:00:00 GMT")
    );

    // Not due yet: the server is not asked.
    assert_eq!(poll(&mut p, &mut store, 6 * H - 1, NOW).0, Fetched::NotDue);
    assert_eq!(srv.requests(), 1);

    // 304: the request carried the ETag.
    let mut mono = 6 * H;
    assert_eq!(poll(&mut p, &mut store, mono, NOW).0, Fetched::NotModified);
    assert_eq!(srv.last().if_none_match.as_deref(), Some("\"v1\""));

    // Every way a fetch fails: counted by reason, the guide untouched.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases: Vec<(Option<Mode>, Reason, &str)> = vec![
        (
            Some(Mode::Status(500, None)),
            Reason::HttpStatus,
            "HTTP 500",
        ),
        (
            Some(Mode::Stall(Duration::from_millis(2500))),
            Reason::Timeout,
            "no byte for 1000 ms",
        ),
        (
            Some(Mode::HugeLength),
            Reason::TooBig,
            "Content-Length 1073741824",
        ),
        (
            Some(Mode::HugeChunked),
            Reason::TooBig,
            "over the 4194304-byte cap",
        ),
        (
            Some(Mode::Truncated),
            Reason::Truncated,
            "after 1000 of 100000 bytes",
        ),
        (Some(Mode::NotHttp), Reason::BadResponse, "not HTTP"),
        (None, Reason::Connect, "connect to 127.0.0.1"),
    ];
    let mut last = mono;
    for (i, (mode, reason, words)) in cases.into_iter().enumerate() {
        mono = p.next_due();
        let before = p.stats().errors_of(reason);
        if let Some(m) = mode {
            srv.set(m);
        } else {
            let mut s = source(&format!("http://127.0.0.1:{closed}/guide.xml"));
            s.every_secs = p.source().every_secs;
            // A fresh poller for the closed port; counted there.
            let mut q = Poller::new(s);
            assert_eq!(q.fetch(0, NOW), Fetched::Failed(reason));
            assert!(q.stats().last_error.as_deref().unwrap().contains(words));
            continue;
        }
        assert_eq!(
            poll(&mut p, &mut store, mono, NOW + mono as i64).0,
            Fetched::Failed(reason),
            "case {i}: {:?}",
            p.stats().last_error
        );
        last = mono;
        let s = p.stats();
        assert_eq!(s.errors_of(reason), before + 1, "case {i}");
        assert!(
            s.last_error.as_deref().unwrap().contains(words),
            "case {i}: {:?}",
            s.last_error
        );
        assert_eq!(s.consecutive_failures, i as u32 + 1);
        assert_eq!(snapshot(&store, "news", NOW), news, "case {i}");
        assert_eq!(snapshot(&store, "films", NOW), films, "case {i}");
    }
    // The back-off grew: 6 h doubled per failure, capped at 24 h.
    let s = p.stats().clone();
    assert_eq!(s.fetches, 2 + 6);
    assert_eq!(s.loaded, 1);
    assert_eq!(s.not_modified, 1);
    assert_eq!(p.next_due() - last, 24 * H);

    // The source comes back with a new document, chunked: loaded, and the
    // failure streak ends.
    srv.set(Mode::Guide {
        body: good(NOW, "v2"),
        etag: "\"v2\"".into(),
        chunked: true,
    });
    mono = p.next_due();
    let (_, a) = poll(&mut p, &mut store, mono, NOW);
    assert_eq!(
        a,
        Some(Applied::Loaded {
            channels: 2,
            refused: 0
        })
    );
    assert_eq!(srv.last().if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(&*snapshot(&store, "news", NOW)[0].title, "News v2 0");
    assert_eq!(p.stats().consecutive_failures, 0);
    assert_eq!(p.validators().etag.as_deref(), Some("\"v2\""));
    let mut m = String::new();
    fetch::render_metrics(&mut m, &[("operator", p.stats())]);
    for (result, n) in [
        ("ok", 2),
        ("not_modified", 1),
        ("http_status", 1),
        ("timeout", 1),
        ("too_big", 2),
        ("truncated", 1),
        ("bad_response", 1),
        ("connect", 0),
    ] {
        let line = format!(
            "capbox_epg_xmltv_fetches_total{{source=\"operator\",result=\"{result}\"}} {n}\n"
        );
        assert!(m.contains(&line), "{line} not in\n{m}");
    }
    eprintln!("took {} ms", t.elapsed().as_millis());
}

#[test]
fn bad_documents_keep_the_last_good_guide_and_are_counted() {
    let srv = Server::start(Mode::Guide {
        body: good(NOW, "v1"),
        etag: "\"v1\"".into(),
        chunked: false,
    });
    let mut p = Poller::new(source(&srv.url()));
    let mut store = Store::new(Limits::default());
    assert!(matches!(
        poll(&mut p, &mut store, 0, NOW).1,
        Some(Applied::Loaded { channels: 2, .. })
    ));
    let news = snapshot(&store, "news", NOW);
    let films = snapshot(&store, "films", NOW);
    let rejects = store.rejects;

    // Overlapping (an hour every 10 minutes) and empty titles, both
    // channels: the document refused.
    let overlapping = document(&[
        programmes("op.news", NOW, 40, 600, 3600, &|i| format!("Overlap {i}")),
        programmes("op.films", NOW, 20, 3600, 3600, &|i| {
            if i % 4 == 0 {
                format!("Film {i}")
            } else {
                "  ".to_string()
            }
        }),
    ]);
    srv.set(Mode::Guide {
        body: overlapping,
        etag: "\"bad\"".into(),
        chunked: false,
    });
    let mut mono = p.next_due();
    assert_eq!(
        poll(&mut p, &mut store, mono, NOW).1,
        Some(Applied::Refused(Reason::Invalid))
    );
    assert_eq!(snapshot(&store, "news", NOW), news);
    assert_eq!(snapshot(&store, "films", NOW), films);
    assert_eq!(p.stats().errors_of(Reason::Invalid), 1);
    assert_eq!(p.stats().channels_refused, 2);
    assert!(store.rejects.overlap >= rejects.overlap + 30);
    assert_eq!(store.rejects.empty_title, rejects.empty_title + 15);
    assert!(p
        .stats()
        .last_error
        .as_deref()
        .unwrap()
        .contains("events are invalid"));
    // Not kept: the next poll asks with the good document's ETag.
    assert_eq!(p.validators().etag.as_deref(), Some("\"v1\""));

    // Unknown channel ids (the operator renamed them).
    let renamed = document(&[
        programmes("news.op.example", NOW, 48, 1800, 1800, &|i| {
            format!("N {i}")
        }),
        programmes("films.op.example", NOW, 24, 3600, 3600, &|i| {
            format!("F {i}")
        }),
    ]);
    srv.set(Mode::Guide {
        body: renamed,
        etag: "\"renamed\"".into(),
        chunked: false,
    });
    mono = p.next_due();
    assert_eq!(srv.requests(), 2);
    assert_eq!(
        poll(&mut p, &mut store, mono, NOW).1,
        Some(Applied::Refused(Reason::NoChannels))
    );
    assert_eq!(srv.last().if_none_match.as_deref(), Some("\"v1\""));
    assert_eq!(snapshot(&store, "news", NOW), news);
    assert_eq!(snapshot(&store, "films", NOW), films);
    let s = p.stats();
    assert_eq!(s.errors_of(Reason::NoChannels), 1);
    assert_eq!(s.parse.unknown_channel, 72);
    assert_eq!(
        s.unknown_ids,
        vec![
            "films.op.example".to_string(),
            "news.op.example".to_string()
        ]
    );

    // Half good: news is fine, films all empty titles. Accepted for news;
    // films keeps its last good part.
    let half = document(&[
        programmes("op.news", NOW, 48, 1800, 1800, &|i| format!("News v3 {i}")),
        programmes("op.films", NOW, 24, 3600, 3600, &|_| String::new()),
    ]);
    srv.set(Mode::Guide {
        body: half,
        etag: "\"v3\"".into(),
        chunked: false,
    });
    mono = p.next_due();
    assert_eq!(
        poll(&mut p, &mut store, mono, NOW).1,
        Some(Applied::Loaded {
            channels: 1,
            refused: 1
        })
    );
    assert_eq!(&*snapshot(&store, "news", NOW)[0].title, "News v3 0");
    assert_eq!(snapshot(&store, "films", NOW), films);
    assert_eq!(p.stats().channels_refused, 3);

    // Not XML at all.
    srv.set(Mode::Guide {
        body: b"<html><body>Maintenance</body>".to_vec(),
        etag: "\"html\"".into(),
        chunked: false,
    });
    mono = p.next_due();
    assert_eq!(
        poll(&mut p, &mut store, mono, NOW).1,
        Some(Applied::Refused(Reason::Parse))
    );
    assert_eq!(snapshot(&store, "films", NOW), films);
    assert_eq!(p.stats().errors_of(Reason::Parse), 1);
    assert_eq!(p.stats().fetches, srv.requests() as u64);
}

#[test]
fn never_polled_more_often_than_configured_through_a_week() {
    let t = Instant::now();
    let srv = Server::start(Mode::Guide {
        body: good(NOW, "d0"),
        etag: "\"d0\"".into(),
        chunked: false,
    });
    let mut src = source(&srv.url());
    src.every_secs = 4 * H;
    let mut p = Poller::new(src);
    let mut store = Store::new(Limits::default());
    // (mono at which the server saw each request)
    let mut asked: Vec<u64> = Vec::new();
    let week = 7 * 86_400u64;
    let mut day_set = u64::MAX;
    // Every minute of fake time, and a burst of calls each time (a daemon
    // whose loop spins must not poll more either).
    for mono in (0..week).step_by(60) {
        let day = mono / 86_400;
        if day != day_set {
            day_set = day;
            srv.set(match day {
                0 | 1 => Mode::Guide {
                    body: good(NOW, "d0"),
                    etag: "\"d0\"".into(),
                    chunked: false,
                },
                2 => Mode::Status(500, None),
                3 => Mode::Stall(Duration::from_millis(1500)),
                4 => Mode::Status(503, Some(10 * H)),
                _ => Mode::Guide {
                    body: good(NOW + day as i64 * 86_400, &format!("d{day}")),
                    etag: format!("\"d{day}\""),
                    chunked: day % 2 == 0,
                },
            });
        }
        for _ in 0..3 {
            let n = srv.requests();
            poll(&mut p, &mut store, mono, NOW + mono as i64);
            if srv.requests() > n {
                asked.push(mono);
            }
        }
    }
    let gaps: Vec<u64> = asked.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "{} requests, gaps (h): {:?}",
        asked.len(),
        gaps.iter().map(|g| g / 3600).collect::<Vec<_>>()
    );
    assert!(gaps.iter().all(|&g| g >= 4 * H), "{gaps:?}");
    // At most one per period over the week; fewer, since failures backed off.
    assert!(asked.len() as u64 <= week / (4 * H) + 1);
    assert_eq!(srv.requests(), asked.len());
    let s = p.stats();
    assert_eq!(s.fetches, asked.len() as u64);
    // Back-off happened (gaps of 8 h or more), bounded by 24 h, and the
    // source still got polled every day.
    assert!(gaps.iter().any(|&g| g >= 8 * H));
    assert!(gaps.iter().all(|&g| g <= 24 * H), "{gaps:?}");
    for d in 0..7 {
        assert!(
            asked.iter().any(|&m| m / 86_400 == d),
            "no poll on day {d}: {asked:?}"
        );
    }
    assert!(s.not_modified >= 5, "{s:?}");
    assert!(s.errors_of(Reason::HttpStatus) >= 2);
    assert!(s.errors_of(Reason::Timeout) >= 1);
    assert_eq!(s.consecutive_failures, 0);
    assert!(s.loaded >= 3, "{s:?}");
    // The guide is day 6's.
    assert_eq!(
        &*snapshot(&store, "news", NOW + 6 * 86_400)[0].title,
        "News d6 0"
    );
    eprintln!("took {} ms", t.elapsed().as_millis());
}

/// Python's http.server (an independent implementation) sends
/// Last-Modified and answers If-Modified-Since with 304; it serves a
/// guide.xml.gz (made by Debian's gzip) as application/gzip.
#[test]
fn python_http_server_last_modified() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 missing (apt-get install python3)");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("epg_fetch_py");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("guide.xml"), good(NOW, "py")).unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .split("port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("python's http.server said {line:?}"));
    let mut p = Poller::new(source(&format!("http://127.0.0.1:{port}/guide.xml")));
    let mut store = Store::new(Limits::default());
    assert!(matches!(
        poll(&mut p, &mut store, 0, NOW).1,
        Some(Applied::Loaded { channels: 2, .. })
    ));
    assert!(
        p.validators().last_modified.is_some(),
        "{:?}",
        p.validators()
    );
    assert_eq!(snapshot(&store, "news", NOW).len(), 48);
    assert_eq!(poll(&mut p, &mut store, 6 * H, NOW).0, Fetched::NotModified);
    assert_eq!(p.stats().not_modified, 1);
    // The same guide as guide.xml.gz, compressed by Debian's gzip and
    // served as a file of type application/gzip: inflated, the same
    // events; unchanged, a 304.
    let gz = Command::new("gzip")
        .args(["-k", "-n", "-9"])
        .arg(dir.join("guide.xml"))
        .status();
    assert!(
        gz.is_ok_and(|s| s.success()),
        "gzip failed (Debian: apt-get install gzip)"
    );
    let mut g = Poller::new(source(&format!("http://127.0.0.1:{port}/guide.xml.gz")));
    let mut gstore = Store::new(Limits::default());
    assert!(matches!(
        poll(&mut g, &mut gstore, 0, NOW).1,
        Some(Applied::Loaded { channels: 2, .. })
    ));
    assert_eq!(
        snapshot(&gstore, "news", NOW),
        snapshot(&store, "news", NOW)
    );
    assert_eq!(
        snapshot(&gstore, "films", NOW),
        snapshot(&store, "films", NOW)
    );
    let gz_len = std::fs::metadata(dir.join("guide.xml.gz")).unwrap().len();
    assert_eq!(g.stats().bytes, gz_len);
    assert!(gz_len < good(NOW, "py").len() as u64 / 4);
    assert_eq!(
        poll(&mut g, &mut gstore, 6 * H, NOW).0,
        Fetched::NotModified
    );

    // A missing file: 404, counted, guide kept.
    let mut q = Poller::new(source(&format!("http://127.0.0.1:{port}/nope.xml")));
    assert_eq!(q.fetch(0, NOW), Fetched::Failed(Reason::HttpStatus));
    assert!(q
        .stats()
        .last_error
        .as_deref()
        .unwrap()
        .contains("HTTP 404"));
}

fn eit(start: i64, dur: u32, title: &str) -> RawEvent {
    RawEvent {
        event_id: (start / 60) as u16,
        start: Some(start),
        duration: Some(dur),
        title: title.into(),
        ..RawEvent::default()
    }
}

#[test]
fn eit_and_xmltv_merge_by_the_configured_priority() {
    let srv = Server::start(Mode::Guide {
        body: good(NOW, "x"),
        etag: "\"x\"".into(),
        chunked: false,
    });
    let mut p = Poller::new(source(&srv.url()));
    let mut store = Store::new(Limits::default());
    // EIT covers the first 3 hours of news and films (with different slots).
    let t0 = NOW - 600;
    for ch in ["news", "films"] {
        let raw = (0..4)
            .map(|i| eit(t0 + i * 2700, 2700, &format!("Air {i}")))
            .collect();
        store.replace_raw(ch, PartKey::EitSchedule(0), raw, NOW);
    }
    assert!(matches!(
        poll(&mut p, &mut store, 0, NOW).1,
        Some(Applied::Loaded { channels: 2, .. })
    ));
    let titles = |s: &Store, ch: &str| -> Vec<String> {
        s.guide(ch, t0, t0 + 5 * 3600)
            .iter()
            .map(|e| e.title.to_string())
            .collect()
    };
    // Default: the air first, XMLTV fills from where EIT ends (3 h).
    let news = titles(&store, "news");
    assert_eq!(&news[..4], &["Air 0", "Air 1", "Air 2", "Air 3"]);
    assert_eq!(
        &news[4..],
        &["News x 6", "News x 7", "News x 8", "News x 9"]
    );
    // The operator's guide first for news only.
    store.set_priority(Some("news"), &[Origin::Xmltv(0), Origin::Eit]);
    let news = titles(&store, "news");
    assert_eq!(news.len(), 10);
    assert!(news.iter().all(|t| t.starts_with("News x")), "{news:?}");
    assert_eq!(titles(&store, "films")[0], "Air 0");
    // For every channel.
    store.set_priority(None, &[Origin::Xmltv(0)]);
    assert_eq!(titles(&store, "films")[0], "Film x 0");
    // Back to the every-channel order for news.
    store.set_priority(Some("news"), &[]);
    assert_eq!(titles(&store, "news")[0], "News x 0");
    store.set_priority(None, &[]);
    assert_eq!(titles(&store, "news")[0], "Air 0");
}

#[test]
fn the_daemon_thread_loads_a_file_and_stops() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("epg_fetch_thread");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guide.xml");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    std::fs::write(&path, good(now, "t")).unwrap();
    let store = Arc::new(Mutex::new(Store::new(Limits::default())));
    let th = fetch::spawn(
        Poller::new(source(path.to_str().unwrap())),
        store.clone(),
        Box::new(resolve),
    )
    .unwrap();
    let t = Instant::now();
    let stats: FetchStats = loop {
        let s = th.stats();
        if s.fetches > 0 || t.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stats.loaded, 1, "{stats:?}");
    assert_eq!(store.lock().unwrap().coverage("news", now, 12 * 3600), 25);
    assert!(stats.next_poll.unwrap() >= now + 6 * 3600 - 5);
    drop(th);
}

/// `fetch_with` lets the daemon (or a test) bring its own transport; the
/// conditional validators it is given are the last accepted document's.
#[test]
fn custom_transport_sees_the_validators() {
    let mut p = Poller::new(source("/unused"));
    let mut store = Store::new(Limits::default());
    let body = good(NOW, "c");
    let f = p.fetch_with(0, NOW, |_, v| {
        assert_eq!(v, &Validators::default());
        Ok(Answer::Body {
            body: body.clone(),
            validators: Validators {
                etag: Some("W/\"c\"".into()),
                ..Validators::default()
            },
            received: body.len() as u64,
        })
    });
    let Fetched::Body(b) = f else { panic!("{f:?}") };
    p.apply(&b, &mut store, &resolve, NOW);
    p.fetch_with(6 * H, NOW, |_, v| {
        assert_eq!(v.etag.as_deref(), Some("W/\"c\""));
        Ok(Answer::NotModified)
    });
    assert_eq!(p.stats().not_modified, 1);
}

/// A daemon restarted (or restarting in a loop) with its cache directory
/// neither asks the source before its time nor serves an empty guide.
#[test]
fn a_restart_with_a_cache_serves_the_guide_and_waits_its_turn() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("epg_fetch_cache");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let srv = Server::start(Mode::Guide {
        body: good(NOW, "c"),
        etag: "\"c\"".into(),
        chunked: false,
    });
    let mut p = Poller::new(source(&srv.url())).cache_in(dir.clone());
    let mut store = Store::new(Limits::default());
    assert!(matches!(
        poll(&mut p, &mut store, 0, NOW).1,
        Some(Applied::Loaded { channels: 2, .. })
    ));
    let news = snapshot(&store, "news", NOW);
    drop(p);
    // Ten restarts a minute apart, each polling every minute until the
    // next restart: the source is not asked again.
    for k in 1..=10u64 {
        let mut q = Poller::new(source(&srv.url())).cache_in(dir.clone());
        let mut fresh = Store::new(Limits::default());
        let unix = NOW + 60 * k as i64;
        assert!(matches!(
            q.restore(&mut fresh, &resolve, 0, unix),
            Some(Applied::Loaded { channels: 2, .. })
        ));
        assert_eq!(snapshot(&fresh, "news", NOW), news);
        assert_eq!(poll(&mut q, &mut fresh, 59, unix + 59).0, Fetched::NotDue);
    }
    assert_eq!(srv.requests(), 1);
    // Its turn (6 h after the first poll): a conditional request.
    let mut q = Poller::new(source(&srv.url())).cache_in(dir.clone());
    let mut fresh = Store::new(Limits::default());
    q.restore(&mut fresh, &resolve, 0, NOW + 3600);
    assert_eq!(q.next_due(), 5 * H);
    assert_eq!(
        poll(&mut q, &mut fresh, 5 * H, NOW + 6 * 3600).0,
        Fetched::NotModified
    );
    assert_eq!(srv.requests(), 2);
    assert_eq!(srv.last().if_none_match.as_deref(), Some("\"c\""));
}
