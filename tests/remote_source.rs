//! `RemoteSource` against fake peers on 127.0.0.1 that misbehave in every way
//! the issue lists (HTML, random bytes, a truncated chunked body, a 2 GB
//! Content-Length, a peer that never answers, a stall mid-stream, the loop
//! guard's 503), and against the real `capbox serve`. Each case checks the
//! words in `last_error`, its counter, and that the source reconnects with
//! a bounded backoff. No wall-clock speed is asserted: only "at most N
//! connects in T" with generous margins.

mod e2e_common;
use capbox::source::remote::{RemoteSource, RemoteSourceConfig, RemoteStatus};
use capbox::source::{ReadOutcome, Source};
use e2e_common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fake peer: every accepted connection gets its request head read, then
/// `behave` on its own thread.
struct Fake {
    addr: SocketAddr,
    accepts: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn fake(behave: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let behave = Arc::new(behave);
    let (a, r) = (accepts.clone(), requests.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let n = a.fetch_add(1, Ordering::SeqCst) as usize;
            let (b, r) = (behave.clone(), r.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                r.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                b(s, n);
            });
        }
    });
    Fake {
        addr,
        accepts,
        requests,
    }
}

fn cfg(addr: SocketAddr) -> RemoteSourceConfig {
    let mut c = RemoteSourceConfig::new(format!("http://{addr}/stream/news"));
    c.stall_ms = 300;
    c.connect_timeout_ms = 500;
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 400;
    c
}

fn mux() -> Vec<u8> {
    std::fs::read(sample_mux()).unwrap()
}

/// Wait (generously) until the status satisfies `f`.
fn wait_status(src: &RemoteSource, f: impl Fn(&RemoteStatus) -> bool) -> RemoteStatus {
    let start = Instant::now();
    loop {
        let st = src.status();
        if f(&st) {
            return st;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("status never matched: {st:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read until `n` bytes of packets or 20 s.
fn read_n(src: &mut RemoteSource, n: usize) -> (Vec<u8>, Vec<ReadOutcome>) {
    let mut buf = Vec::new();
    let mut outcomes = Vec::new();
    let start = Instant::now();
    while buf.len() < n && start.elapsed() < Duration::from_secs(20) {
        let o = src.read(&mut buf, Duration::from_millis(100)).unwrap();
        outcomes.push(o);
    }
    (buf, outcomes)
}

fn assert_aligned(b: &[u8]) {
    assert_eq!(b.len() % TS, 0);
    for p in packets(b) {
        assert_eq!(p[0], 0x47);
    }
}

/// `got[..n] == want[..n]`, reporting the first difference, not the bytes.
fn assert_same_prefix(got: &[u8], want: &[u8], n: usize) {
    if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
        panic!(
            "first difference at byte {i} (packet {}) of {n}; got {} bytes",
            i / TS,
            got.len()
        );
    }
}

fn ok_head(extra: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n{extra}\r\n")
}

#[test]
fn content_length_body_is_aligned_and_sends_origin_and_token() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head(&format!("Content-Length: {}\r\n", d.len())).as_bytes());
        let _ = s.write_all(&d);
    });
    let mut c = cfg(f.addr);
    c.token = Some("s3cret-token".into());
    // The fake peer sends the whole file at loopback speed: room for it.
    c.queue_bytes = 16 << 20;
    let mut src = RemoteSource::start(c).unwrap();
    // The whole file and 1 MiB of the next connection.
    let (got, outcomes) = read_n(&mut src, data.len() + (1 << 20));
    assert_aligned(&got);
    assert!(got.len() >= 1 << 20);
    // The first connection's bytes are the file's, byte for byte.
    assert_same_prefix(&got, &data, 1 << 20);
    assert_eq!(src.status().counters.queue_drops, 0);
    assert_eq!(outcomes[0], ReadOutcome::Data);
    assert!(
        outcomes.contains(&ReadOutcome::Discontinuity),
        "a reconnect must be flagged"
    );
    assert!(packets(&got).any(|p| pid(p) == 0), "no PAT");
    let req = f.requests.lock().unwrap()[0].clone();
    assert!(
        req.starts_with("GET /stream/news?origin=local HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(
        req.contains("\r\nAuthorization: Bearer s3cret-token\r\n"),
        "{req}"
    );
    // The body ends: counted as an end, then a reconnect.
    let st = wait_status(&src, |s| s.counters.ends >= 1 && s.counters.connects >= 2);
    let words = format!("{st:?} {}", src.describe());
    assert!(!words.contains("s3cret"), "token leaked: {words}");
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("Content-Length received"),
        "{st:?}"
    );
}

#[test]
fn chunked_body_in_odd_chunks() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head("Transfer-Encoding: chunked\r\n").as_bytes());
        let mut off = 0;
        let mut k = 1usize;
        while off < d.len() {
            let n = (k * 977 % 20_000 + 1).min(d.len() - off);
            k += 1;
            let _ = s.write_all(format!("{n:x}\r\n").as_bytes());
            let _ = s.write_all(&d[off..off + n]);
            if s.write_all(b"\r\n").is_err() {
                return;
            }
            off += n;
        }
        let _ = s.write_all(b"0\r\n\r\n");
    });
    let mut c = cfg(f.addr);
    c.queue_bytes = 16 << 20;
    let mut src = RemoteSource::start(c).unwrap();
    let (got, _) = read_n(&mut src, 2 << 20);
    assert_aligned(&got);
    assert_same_prefix(&got, &data, 2 << 20);
    let st = wait_status(&src, |s| s.counters.ends >= 1);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("last chunk received"),
        "{st:?}"
    );
    assert_eq!(st.counters.bytes_skipped, 0);
}

#[test]
fn html_is_not_ts() {
    let f = fake(|mut s, _| {
        let body = "<html><body>It works!</body></html>";
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.not_ts >= 2);
    assert_eq!(st.last_error.as_deref(), Some("not MPEG-TS: got text/html"));
    assert_eq!(st.counters.packets, 0);
    // The same page with no Content-Type: caught by the sync probe.
    let f = fake(|mut s, _| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        for _ in 0..2000 {
            if s.write_all(b"<html><body>It works!</body></html>\n")
                .is_err()
            {
                return;
            }
        }
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.not_ts >= 1);
    let e = st.last_error.unwrap();
    assert!(e.starts_with("not MPEG-TS: no MPEG-TS"), "{e}");
}

fn random_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

#[test]
fn random_bytes_instead_of_http_and_as_body() {
    let f = fake(|mut s, n| {
        let _ = s.write_all(&random_bytes(100_000, n as u32 + 7));
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.bad_responses >= 2);
    let e = st.last_error.unwrap();
    assert!(e.starts_with("bad HTTP response: not HTTP"), "{e}");

    let f = fake(|mut s, n| {
        let _ = s.write_all(ok_head("").as_bytes());
        let _ = s.write_all(&random_bytes(1 << 20, n as u32 + 11));
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.not_ts >= 2);
    let e = st.last_error.clone().unwrap();
    assert!(e.starts_with("not MPEG-TS: no MPEG-TS sync"), "{e}");
    assert!(st.counters.bytes_skipped > 0);
    assert!(st.counters.packets < 10, "{st:?}");
}

#[test]
fn truncated_chunked_body() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head("Transfer-Encoding: chunked\r\n").as_bytes());
        let _ = s.write_all(b"10000\r\n");
        let _ = s.write_all(&d[..188 * 100]);
        // Close inside the chunk.
    });
    let mut src = RemoteSource::start(cfg(f.addr)).unwrap();
    let (got, _) = read_n(&mut src, 188 * 90);
    assert_aligned(&got);
    let st = wait_status(&src, |s| s.counters.truncated >= 2);
    let e = st.last_error.unwrap();
    assert!(
        e.starts_with("body truncated: connection closed inside a chunk (18800 of 65536 bytes)"),
        "{e}"
    );
    // A garbage chunk size line.
    let f = fake(|mut s, _| {
        let _ = s.write_all(ok_head("Transfer-Encoding: chunked\r\n").as_bytes());
        let _ = s.write_all(b"nonsense\r\n");
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.bad_responses >= 1);
    let e = st.last_error.unwrap();
    assert!(e.contains("bad chunk size line \"nonsense\""), "{e}");
}

#[test]
fn two_gigabyte_content_length_then_close() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head("Content-Length: 2147483648\r\n").as_bytes());
        let _ = s.write_all(&d[..188 * 50]);
    });
    let mut src = RemoteSource::start(cfg(f.addr)).unwrap();
    let (got, _) = read_n(&mut src, 188 * 48);
    assert_aligned(&got);
    let st = wait_status(&src, |s| s.counters.truncated >= 1);
    let e = st.last_error.unwrap();
    assert_eq!(
        e,
        "body truncated: connection closed after 9400 of 2147483648 bytes (Content-Length)"
    );
    assert!(st.queued_bytes <= RemoteSourceConfig::new("http://x/").queue_bytes);
}

#[test]
fn empty_body_ends_at_once() {
    let f = fake(|mut s, _| {
        let _ = s.write_all(ok_head("Content-Length: 0\r\n").as_bytes());
        std::thread::sleep(Duration::from_secs(30));
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.ends >= 2);
    assert_eq!(
        st.last_error.as_deref(),
        Some("stream ended: all 0 bytes of the Content-Length received")
    );
    assert_eq!(st.counters.stalls, 0, "{st:?}");
}

#[test]
fn peer_that_never_answers() {
    let f = fake(|s, _| {
        std::thread::sleep(Duration::from_secs(30));
        drop(s);
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.bad_responses >= 2);
    assert_eq!(
        st.last_error.as_deref(),
        Some("no response head within 300 ms (0 bytes received)")
    );
}

#[test]
fn stall_mid_stream() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head("").as_bytes());
        let _ = s.write_all(&d[..188 * 200]);
        std::thread::sleep(Duration::from_secs(30));
    });
    let mut src = RemoteSource::start(cfg(f.addr)).unwrap();
    let (got, _) = read_n(&mut src, 188 * 190);
    assert_aligned(&got);
    let st = wait_status(&src, |s| s.counters.stalls >= 1);
    assert_eq!(st.last_error.as_deref(), Some("no data for 300 ms"));
    assert!(
        st.state.starts_with("backing off") || st.state.starts_with("connect"),
        "{st:?}"
    );
}

#[test]
fn loop_guard_503_and_backoff_is_bounded() {
    let f = fake(|mut s, _| {
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    });
    let src = RemoteSource::start(cfg(f.addr)).unwrap();
    let st = wait_status(&src, |s| s.counters.peer_not_local >= 1);
    assert_eq!(
        st.last_error.as_deref(),
        Some("peer has no local source (503)")
    );
    assert!(st.state.starts_with("backing off"), "{st:?}");
    assert_eq!(
        st.counters.http_errors.get(&503),
        Some(&st.counters.peer_not_local)
    );
    // Backoff 50, 100, 200, 400, 400 … ms: in 2 s at most ~8 attempts (plus
    // the time each takes). Generous: at most 15; at least 3.
    let a0 = f.accepts.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    let n = f.accepts.load(Ordering::SeqCst) - a0;
    assert!(n <= 15, "{n} connects in 2 s: backoff not applied");
    assert!(n >= 1, "{n} connects in 2 s: no reconnect at all");
    // Dropping the source stops its thread: no connect after.
    drop(src);
    let a1 = f.accepts.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(f.accepts.load(Ordering::SeqCst), a1);
}

#[test]
fn refused_connects_back_off() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let src = RemoteSource::start(cfg(addr)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let st = src.status();
    let n = st.counters.connect_failures;
    assert!((1..=15).contains(&n), "{n} refused connects in 2 s: {st:?}");
    let e = st.last_error.unwrap();
    assert!(e.starts_with(&format!("connect to {addr}: ")), "{e}");
    assert!(e.to_lowercase().contains("refused"), "{e}");
}

#[test]
fn slow_reader_drops_oldest_with_a_counter_and_memory_stays_bounded() {
    let data = Arc::new(mux());
    let d = data.clone();
    let f = fake(move |mut s, _| {
        let _ = s.write_all(ok_head("").as_bytes());
        let _ = s.write_all(&d);
        std::thread::sleep(Duration::from_secs(30));
    });
    let mut c = cfg(f.addr);
    c.queue_bytes = 64 * 1024;
    c.stall_ms = 5000;
    let mut src = RemoteSource::start(c).unwrap();
    let st = wait_status(&src, |s| {
        s.counters.packets >= (data.len() / TS - 10) as u64
    });
    assert!(st.counters.queue_drops > 0, "{st:?}");
    assert!(st.queued_bytes <= 64 * 1024 + 64 * 1024, "{st:?}");
    let mut buf = Vec::new();
    let o = src.read(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(
        o,
        ReadOutcome::Discontinuity,
        "packets were dropped before these"
    );
    assert!(buf.len() <= 128 * 1024);
    assert_aligned(&buf);
}

#[test]
fn https_and_bad_tokens_are_refused_in_words() {
    let e = RemoteSource::start(RemoteSourceConfig::new("https://peer/stream/a"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("https is not supported"), "{e}");
    let mut c = RemoteSourceConfig::new("http://127.0.0.1:9/stream/a");
    c.token = Some("bad\r\nX-Injected: 1".into());
    let e = RemoteSource::start(c).err().unwrap().to_string();
    assert!(e.contains("token: must be printable ASCII"), "{e}");
    assert!(!e.contains("Injected"), "{e}");
}

#[test]
fn pulls_a_channel_from_capbox_serve() {
    let srv = Server::start("remote-src", &demo_toml());
    srv.wait_up(&["news"]);
    let mut c = cfg(srv.addr);
    c.rcvbuf_bytes = Some(256 * 1024);
    let mut src = RemoteSource::start(c).unwrap();
    let (got, _) = read_n(&mut src, 188 * 3000);
    assert!(got.len() >= 188 * 3000, "{:?}", src.status());
    assert_aligned(&got);
    let pids: std::collections::BTreeSet<u16> = packets(&got).map(pid).collect();
    assert!(pids.contains(&0), "no PAT in {pids:?}");
    assert!(pids.contains(&0x101) && pids.contains(&0x102), "{pids:?}");
    let st = src.status();
    assert!(st.connected, "{st:?}");
    assert_eq!(st.counters.connects, 1);
    assert_eq!(st.counters.bytes_skipped, 0);
    assert!(src.describe().starts_with("remote http://"));
    // SO_RCVBUF was set (the kernel doubles it and caps it at rmem_max).
    assert!(st.rcvbuf_bytes.is_some_and(|n| n > 0), "{st:?}");
}
