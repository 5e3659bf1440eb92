//! Cost of taking an operator's guide for 200 channels × 7 days (48
//! programmes a day, 250-byte descriptions) through `epg::fetch`: the HTTP
//! GET from a local server, the judgement (parse with quick-xml, the
//! store's validation, the store), and the conditional poll after it (304).
//! Anchors measured in the same run: `curl` fetching the same URL to
//! /dev/null, and `xmllint --stream --noout` reading the same document
//! (libxml2's streaming parser, no validation).
//!
//! Usage: bench_xmltv_fetch [--channels N] [--days D] [--runs R]
//!
//! Prints `RESULT` lines with the median milliseconds. Nothing here is a
//! test: it asserts nothing about time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Instant;

use capbox::epg::fetch::{Applied, Fetched, Poller, XmltvSource};
use capbox::epg::{Limits, Store};

const NOW: i64 = 1_780_000_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn xmltv_time(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y%m%d%H%M%S +0000")
        .to_string()
}

fn document(channels: usize, days: usize) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<tv>\n");
    for c in 0..channels {
        s.push_str(&format!(
            "  <channel id=\"ch{c}.op\"><display-name>Channel {c}</display-name></channel>\n"
        ));
    }
    let desc: String = "A programme about things, told at length. ".repeat(6);
    for c in 0..channels {
        for i in 0..days * 48 {
            let start = NOW - 600 + i as i64 * 1800;
            s.push_str(&format!(
                "  <programme start=\"{}\" stop=\"{}\" channel=\"ch{c}.op\">\n    <title lang=\"en\">Show {i} on {c}</title>\n    <sub-title>Part {i}</sub-title>\n    <desc lang=\"en\">{}</desc>\n    <category>Movie/Drama</category>\n  </programme>\n",
                xmltv_time(start),
                xmltv_time(start + 1800),
                &desc[..250]
            ));
        }
    }
    s.push_str("</tv>\n");
    s.into_bytes()
}

fn arg(name: &str, default: usize) -> usize {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (channels, days, runs) = (arg("--channels", 200), arg("--days", 7), arg("--runs", 5));
    let doc = document(channels, days);
    let path = std::env::temp_dir().join("capbox-bench-xmltv.xml");
    std::fs::write(&path, &doc).unwrap();
    println!(
        "document: {channels} channels x {days} days, {} programmes, {} bytes",
        channels * days * 48,
        doc.len()
    );

    // A server: 200 with an ETag, 304 when it matches.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = doc.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
            if text.contains("if-none-match: \"g\"") {
                let _ = c.write_all(b"HTTP/1.1 304 Not Modified\r\nETag: \"g\"\r\n\r\n");
            } else {
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nETag: \"g\"\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = c.write_all(&body);
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/guide.xml");
    let resolve = |id: &str| {
        id.strip_suffix(".op")
            .filter(|c| c.starts_with("ch"))
            .map(str::to_string)
    };

    let (mut get, mut judge, mut cond, mut curl, mut xmllint) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut store_bytes = 0;
    let mut parse_only = Vec::new();
    let mut curl304 = Vec::new();
    for _ in 0..runs {
        let mut p = Poller::new(XmltvSource::new("bench", 0, &url).unwrap());
        let mut store = Store::new(Limits::default());
        let t = Instant::now();
        let Fetched::Body(b) = p.fetch(0, NOW) else {
            panic!("{:?}", p.stats().last_error)
        };
        get.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let a = p.apply(&b, &mut store, &resolve, NOW);
        judge.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            matches!(a, Applied::Loaded { refused: 0, .. }),
            "{a:?} {:?}",
            p.stats().last_error
        );
        store_bytes = store.bytes();
        let t = Instant::now();
        let parsed = capbox::epg::xmltv_in::parse(&b, resolve).unwrap();
        parse_only.push(t.elapsed().as_secs_f64() * 1e3);
        drop(parsed);
        drop(b);
        let t = Instant::now();
        assert_eq!(p.fetch(6 * 3600, NOW), Fetched::NotModified);
        cond.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", &url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            curl.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let t = Instant::now();
        let ok = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-H", "If-None-Match: \"g\"", &url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            curl304.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let t = Instant::now();
        let ok = Command::new("xmllint")
            .args(["--stream", "--noout"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            xmllint.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!("store: {store_bytes} bytes");
    println!("RESULT capbox_get_ms {:.1}", median(get));
    println!("RESULT capbox_parse_validate_store_ms {:.1}", median(judge));
    println!("RESULT capbox_parse_only_ms {:.1}", median(parse_only));
    println!("RESULT capbox_conditional_304_ms {:.2}", median(cond));
    if !curl.is_empty() {
        println!("RESULT anchor_curl_get_ms {:.1}", median(curl));
    }
    if !curl304.is_empty() {
        println!(
            "RESULT anchor_curl_conditional_304_ms {:.2} (a process start included)",
            median(curl304)
        );
    }
    if !xmllint.is_empty() {
        println!(
            "RESULT anchor_xmllint_stream_parse_ms {:.1}",
            median(xmllint)
        );
    }
    let _ = std::fs::remove_file(&path);
}
