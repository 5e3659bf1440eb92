//! End-to-end: the HTTP face of `capbox serve` — playlist, metrics, status,
//! HTTP/1.0 and 1.1, HEAD, Range, 404, first-byte and first-frame latency.

mod e2e_common;
use e2e_common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn e2e_playlist_urls_from_host_header() {
    let m = sample_mux();
    // `music` has no tvg_id/tvg_name: defaults are the name and the SDT name.
    let cfg = server_toml()
        + &channel_toml(
            "news",
            &m,
            1,
            &[
                "tvg_id = \"News.demo\"",
                "tvg_name = \"My News\"",
                "group = \"News\"",
            ],
        )
        + &channel_toml(
            "sport",
            &m,
            2,
            &[
                "tvg_id = \"Sport.demo\"",
                "tvg_name = \"My Sport\"",
                "group = \"Sport\"",
            ],
        )
        + &channel_toml("music", &m, 3, &["group = \"Music\""]);
    let srv = Server::start("playlist", &cfg);
    srv.wait_up(&["news", "sport", "music"]);
    let req = "GET /playlist.m3u HTTP/1.1\r\nHost: example.test:1234\r\nConnection: close\r\n\r\n";
    let mut text = String::new();
    // The SDT name of `music` may take a moment after "up".
    let ok = wait_until(Duration::from_secs(10), || {
        let r = request(srv.addr, req);
        assert_eq!(r.status, 200, "{}", r.head);
        text = r.text();
        text.contains("tvg-name=\"Demo Music\"")
    });
    println!("{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // The header points players at the guide, on the host the client used.
    assert_eq!(
        lines.first().map(|l| l.trim()),
        Some("#EXTM3U x-tvg-url=\"http://example.test:1234/epg.xml\""),
        "{text}"
    );
    let entries: Vec<(&str, &str)> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("#EXTINF"))
        .map(|w| (w[0], w[1].trim()))
        .collect();
    assert_eq!(entries.len(), 3, "one entry per channel:\n{text}");
    let want = [
        ("news", "News.demo", "My News", "News"),
        ("sport", "Sport.demo", "My Sport", "Sport"),
        ("music", "music", "Demo Music", "Music"),
    ];
    // REFERENCE/example: "One [[channel]] per channel ..., in playlist order".
    let order: Vec<&str> = entries
        .iter()
        .map(|(_, u)| u.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        order,
        ["news", "sport", "music"],
        "playlist is not in config order:\n{text}"
    );
    for ((inf, url), (ch, id, name, group)) in entries.iter().zip(want) {
        assert!(inf.contains(&format!("tvg-id=\"{id}\"")), "{ch}: {inf}");
        assert!(inf.contains(&format!("tvg-name=\"{name}\"")), "{ch}: {inf}");
        assert!(
            inf.contains(&format!("group-title=\"{group}\"")),
            "{ch}: {inf}"
        );
        assert!(
            url.starts_with("http://example.test:1234/stream/"),
            "{ch}: url {url}"
        );
        assert_eq!(*url, format!("http://example.test:1234/stream/{ch}"));
    }
    assert!(ok, "music's tvg-name never became the SDT name:\n{text}");
}

#[test]
fn e2e_metrics_and_status() {
    let srv = Server::start("metrics", &demo_toml());
    let chans = ["news", "sport", "music"];
    srv.wait_up(&chans);
    let m0 = srv.metrics();
    for c in chans {
        assert_eq!(
            metric(&m0, "capbox_channel_pat_seen", c),
            Some(1.0),
            "{c}\n{}",
            fmt_samples(&m0)
        );
        assert_eq!(
            metric(&m0, "capbox_channel_pmt_seen", c),
            Some(1.0),
            "{c}\n{}",
            fmt_samples(&m0)
        );
        for n in [
            "capbox_channel_bytes_total",
            "capbox_channel_packets_total",
            "capbox_channel_input_cc_errors_total",
        ] {
            assert!(metric(&m0, n, c).is_some(), "no {n} for {c}");
        }
    }
    let v = m0
        .iter()
        .find(|s| s.name == "process_resident_memory_bytes")
        .map(|s| s.value);
    assert!(
        v.is_some_and(|v| v > 1e6),
        "process_resident_memory_bytes = {v:?}"
    );
    // CPU time can still read 0 this early (clock-tick resolution).
    let v = m0
        .iter()
        .find(|s| s.name == "process_cpu_seconds_total")
        .map(|s| s.value);
    assert!(
        v.is_some_and(|v| v >= 0.0),
        "process_cpu_seconds_total = {v:?}"
    );
    assert!(
        m0.iter().any(|s| s.name.starts_with("capbox_fanout_")),
        "no capbox_fanout_*"
    );
    assert!(
        m0.iter().any(|s| s.name.starts_with("capbox_http_")),
        "no capbox_http_*"
    );

    // A client with a recognisable user agent keeps streaming news.
    let (mut s, _) = open_stream(
        srv.addr,
        "/stream/news",
        "User-Agent: e2e-probe/4.2 (test)\r\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (st, g) = (stop.clone(), got.clone());
    let reader = std::thread::spawn(move || {
        let mut b = vec![0u8; 65536];
        while !st.load(Ordering::Relaxed) {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    g.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(2000));
    let m1 = srv.metrics();
    for c in chans {
        let (a, b) = (
            metric(&m0, "capbox_channel_bytes_total", c).unwrap(),
            metric(&m1, "capbox_channel_bytes_total", c).unwrap(),
        );
        println!("{c}: bytes {a} -> {b}");
        assert!(
            b > a,
            "{c}: capbox_channel_bytes_total did not grow ({a} -> {b})"
        );
    }
    let st = srv.status();
    let names: Vec<&str> = st["channels"]
        .as_array()
        .unwrap_or_else(|| panic!("no channels array: {st:#}"))
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["music", "news", "sport"], "{st:#}");
    let news = status_channel(&st, "news").unwrap();
    assert_eq!(news["service_name"], "Demo News", "{news:#}");
    assert_eq!(news["provider"], "capbox", "{news:#}");
    assert_eq!(news["program"], 1, "{news:#}");
    let clients = st["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no clients: {st:#}"));
    let me = clients
        .iter()
        .find(|c| c["user_agent"].as_str() == Some("e2e-probe/4.2 (test)"))
        .unwrap_or_else(|| panic!("streaming client not listed: {st:#}"));
    assert_eq!(me["channel"], "news", "{me:#}");
    assert!(got.load(Ordering::Relaxed) > 0, "stream client got nothing");
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
}

fn stream_req(version: &str, method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/{version}\r\nHost: localhost\r\n{extra}\r\n")
}

/// Response head and up to `n` body bytes of a stream request.
fn stream_head(srv: &Server, raw: &str, n: usize) -> (u16, String, Vec<u8>) {
    let mut s = connect(srv.addr);
    s.write_all(raw.as_bytes()).unwrap();
    let (status, head, mut body) = read_head(&mut s);
    let mut b = vec![0u8; 65536];
    while status == 200 && body.len() < n {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(k) => body.extend_from_slice(&b[..k]),
            Err(e) => panic!("{raw:?}: read: {e}"),
        }
    }
    (status, head, body)
}

fn looks_like_ts(b: &[u8]) -> bool {
    b.len() >= 10 * TS && b[0] == 0x47 && pid(b) == 0 && packets(&b[..10 * TS]).count() == 10
}

#[test]
fn e2e_http_versions_head_range_404() {
    let srv = Server::start("http", &demo_toml());
    srv.wait_up(&["news", "sport", "music"]);

    for v in ["1.0", "1.1"] {
        let (st, head, body) =
            stream_head(&srv, &stream_req(v, "GET", "/stream/sport", ""), 50 * TS);
        assert_eq!(st, 200, "HTTP/{v}: {head}");
        assert!(head.starts_with("HTTP/1."), "{head}");
        assert!(
            looks_like_ts(&body),
            "HTTP/{v}: body is not TS starting with PAT"
        );
        let ct = head.to_ascii_lowercase();
        assert!(ct.contains("content-type: video/mp2t"), "HTTP/{v}: {head}");
    }

    // HEAD: 200, the stream's headers, no body, and the connection ends.
    let r = request(
        srv.addr,
        &stream_req("1.1", "HEAD", "/stream/news", "Connection: close\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("video/mp2t"),
        "{}",
        r.head
    );
    let mut s = connect(srv.addr);
    s.write_all(stream_req("1.1", "HEAD", "/stream/news", "").as_bytes())
        .unwrap();
    let (st, _h, rest) = read_head(&mut s);
    assert_eq!(st, 200);
    let mut more = Vec::new();
    let _ = s.read_to_end(&mut more);
    assert!(
        rest.is_empty() && more.is_empty(),
        "HEAD sent {} body bytes",
        rest.len() + more.len()
    );

    // Range on a live stream: plain 200 with the stream from its start.
    let (st, head, body) = stream_head(
        &srv,
        &stream_req("1.1", "GET", "/stream/news", "Range: bytes=1000-2000\r\n"),
        20 * TS,
    );
    assert_eq!(st, 200, "Range: {head}");
    assert!(
        looks_like_ts(&body),
        "Range: body is not TS starting with PAT"
    );

    // An independent client: curl's HEAD over HTTP/1.0 and 1.1.
    if have("curl") {
        for v in ["--http1.0", "--http1.1"] {
            let o = Command::new("curl")
                .args(["-sS", "-I", "--max-time", "10", v])
                .arg(format!("http://{}/stream/music", srv.addr))
                .output()
                .expect("curl");
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "curl {v}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                out.starts_with("HTTP/1.") && out.lines().next().unwrap().contains(" 200"),
                "curl {v} -I: {out}"
            );
            assert!(
                out.to_ascii_lowercase().contains("video/mp2t"),
                "curl {v}: {out}"
            );
        }
    }

    // Unknown channel: 404 naming it.
    let r = get(srv.addr, "/stream/nosuchchannel");
    assert_eq!(r.status, 404, "{}", r.head);
    assert!(
        r.text().contains("nosuchchannel"),
        "404 body: {:?}",
        r.text()
    );
    let r = request(
        srv.addr,
        &stream_req("1.0", "GET", "/stream/nosuchchannel", ""),
    );
    assert_eq!(r.status, 404, "HTTP/1.0: {}", r.head);
}

/// Whether the first video (0x101) packet of a fresh /stream/news request
/// starts a PES with random_access_indicator set (an IDR per the sample).
fn starts_on_keyframe(srv: &Server, path: &str) -> bool {
    let (mut s, mut b) = open_stream(srv.addr, path, "");
    let mut buf = vec![0u8; 65536];
    loop {
        let whole = &b[..b.len() / TS * TS];
        if let Some(v) = packets(whole).find(|p| pid(p) == 0x101) {
            return pusi(v) && has_af(v) && v[4] > 0 && v[5] & 0x40 != 0;
        }
        assert!(
            b.len() < 1000 * TS,
            "{path}: no video packet in 1000 packets"
        );
        let n = s.read(&mut buf).expect("read stream");
        assert!(n > 0, "{path}: EOF");
        b.extend_from_slice(&buf[..n]);
    }
}

/// Seconds until ffmpeg has decoded the first video frame of `url`; decode
/// errors before it are expected for a start off a keyframe.
fn first_frame(url: &str) -> f64 {
    let t = Instant::now();
    let mut child = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-probesize",
            "200000",
            "-analyzeduration",
            "500000",
        ])
        .args([
            "-i",
            url,
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let ok = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ok {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ffmpeg decoded no frame of {url} in 30 s");
    }
    let el = t.elapsed().as_secs_f64();
    let st = child.wait().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    println!(
        "ffmpeg {url}: {st}, {:.0} ms, {} error lines",
        el * 1e3,
        err.lines().count()
    );
    if !url.contains("start=live") {
        assert!(st.success(), "ffmpeg on {url}: {err}");
        assert!(
            err.trim().is_empty(),
            "keyframe start: decode errors: {err}"
        );
    }
    el
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn e2e_first_byte_and_first_frame_latency() {
    let srv = Server::start("latency", &demo_toml());
    srv.wait_up(&["news", "sport", "music"]);
    let mut v = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let mut s = connect(srv.addr);
        s.write_all(stream_req("1.1", "GET", "/stream/news", "").as_bytes())
            .unwrap();
        let (st, head, mut body) = read_head(&mut s);
        assert_eq!(st, 200, "{head}");
        if body.is_empty() {
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).expect("first body byte");
            assert!(n > 0, "EOF before the first body byte");
            body.extend_from_slice(&b[..n]);
        }
        v.push(t.elapsed().as_secs_f64());
        assert_eq!(body[0], 0x47, "first body byte is not a sync byte");
    }
    let med = median(&mut v);
    println!(
        "first byte of /stream/news: median {:.2} ms over 100 (min {:.2}, max {:.2})",
        med * 1e3,
        v[0] * 1e3,
        v[99] * 1e3
    );
    assert!(med < 2.0, "median first-byte time {med} s");

    // Default start is on a keyframe every time; ?start=live is not.
    let mut live_kf = 0;
    for _ in 0..10 {
        assert!(
            starts_on_keyframe(&srv, "/stream/news"),
            "default start not on a keyframe"
        );
        if starts_on_keyframe(&srv, "/stream/news?start=live") {
            live_kf += 1;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    println!("?start=live began on a keyframe {live_kf}/10 times");
    assert!(live_kf < 10, "?start=live always starts on a keyframe");

    if !have("ffmpeg") {
        return;
    }
    let base = format!("http://{}/stream/news", srv.addr);
    let live = format!("{base}?start=live");
    let (mut kf, mut lv) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        kf.push(first_frame(&base));
        lv.push(first_frame(&live));
    }
    let (kf, lv) = (median(&mut kf), median(&mut lv));
    println!(
        "first decoded video frame: keyframe start {:.0} ms, ?start=live {:.0} ms (median of 3)",
        kf * 1e3,
        lv * 1e3
    );
    assert!(kf > 0.0 && lv > 0.0);
}
