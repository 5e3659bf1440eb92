//! Header floods: heads too large, too many headers, a request line that
//! never ends, slowloris, connections that never say anything, and input
//! poured into connections that have nothing more to say. Each is refused
//! or closed, counted in /metrics and said in the log; capbox's memory
//! stays within its per-connection bound and viewers keep their streams.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::e2e_common::*;
use crate::net::{raise_fd_limit, sample, vm_rss_kib};

fn start(tag: &str) -> Server {
    raise_fd_limit(4096);
    let cfg = server_toml() + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start(tag, &cfg);
    srv.wait_up(&["news"]);
    srv
}

fn cut(m: &[Sample], reason: &str) -> f64 {
    sample(m, "capbox_http_clients_cut_total", Some(("reason", reason)))
}

/// Send `bytes` (from a thread: capbox may stop reading) and return the
/// status of the answer, then whether the connection was closed after it.
fn flood(addr: SocketAddr, bytes: Vec<u8>) -> (u16, bool) {
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        // Fails once capbox closes: expected.
        let _ = w.write_all(&bytes);
    });
    let (status, _, _) = read_head(&mut s);
    let mut b = [0u8; 4096];
    let closed = loop {
        match s.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let _ = t.join();
    (status, closed)
}

#[test]
fn heads_too_large_are_refused_with_memory_bounded() {
    let srv = start("flood-heads");
    let rss0 = vm_rss_kib(srv.pid());
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: box\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let many = format!(
        "GET /metrics HTTP/1.1\r\nHost: box\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    // A request line that never ends: 1 MiB without a line feed.
    let endless = format!("GET /{}", "A".repeat(1 << 20));
    const EACH: usize = 60;
    let addr = srv.addr;
    let mut peak = rss0;
    let clients: Vec<_> = [huge, many, endless]
        .into_iter()
        .flat_map(|r| std::iter::repeat_n(r, EACH))
        .map(|r| std::thread::spawn(move || flood(addr, r.into_bytes())))
        .collect();
    for c in clients {
        let (status, closed) = c.join().expect("flood client");
        assert_eq!(status, 431);
        assert!(closed, "connection left open after 431");
        peak = peak.max(vm_rss_kib(srv.pid()));
    }
    let growth = peak.saturating_sub(rss0);
    eprintln!("header flood: capbox VmRSS {rss0} KiB before, peak {peak} KiB, growth {growth} KiB");
    // Per connection capbox holds at most max_header_bytes (8 KiB) plus
    // one read (8 KiB) of input, with Vec slack 32 KiB; 180 connections ×
    // 32 KiB = 5.6 MiB. Reading whole floods would be 64 MiB+.
    assert!(
        growth < 12 << 10,
        "RSS grew {growth} KiB under a header flood"
    );
    let m = srv.metrics();
    assert_eq!(
        cut(&m, "header_too_large"),
        3.0 * EACH as f64,
        "{}",
        fmt_samples(&m)
    );
    let log = srv.log_text();
    assert!(
        log.contains("request head larger than"),
        "431s are not said in the log:\n{log}"
    );
    let b = fetch_bytes(srv.addr, "/stream/news", 20 * TS);
    assert!(first_pat(&b).is_some());
}

#[test]
fn slowloris_and_silent_connections_are_closed_and_counted() {
    let srv = start("flood-slowloris");
    const N: usize = 50;
    let slow: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut s = connect(srv.addr);
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let silent: Vec<TcpStream> = (0..N).map(|_| connect(srv.addr)).collect();
    // One byte per second on every slow connection until capbox closes
    // them (request_timeout, 10 s, counts from the connection's start).
    let start = Instant::now();
    let mut open = slow;
    while !open.is_empty() && start.elapsed() < Duration::from_secs(30) {
        open.retain_mut(|s| s.write_all(b"a").is_ok());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        open.is_empty(),
        "{} slowloris connections still open after 30 s",
        open.len()
    );
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("silent connection not closed: {other:?}"),
        }
    }
    let m = srv.metrics();
    assert!(
        cut(&m, "request_timeout") >= N as f64,
        "{}",
        fmt_samples(&m)
    );
    assert!(cut(&m, "idle") >= N as f64, "{}", fmt_samples(&m));
    let log = srv.log_text();
    assert!(
        log.contains("no complete request head within"),
        "slowloris cuts are not said in the log:\n{log}"
    );
    let b = fetch_bytes(srv.addr, "/stream/news", 20 * TS);
    assert!(first_pat(&b).is_some());
}

#[test]
fn input_poured_into_stream_connections_does_not_stall_the_server() {
    let srv = start("flood-input");
    let stop = Arc::new(AtomicBool::new(false));
    // Two stream clients that, once streaming, write as fast as loopback
    // takes it (and read what they are sent, so they are not cut).
    let pourers: Vec<_> = (0..2)
        .map(|_| {
            let (s, _) = open_stream(srv.addr, "/stream/news", "");
            let mut r = s.try_clone().unwrap();
            let stop_r = stop.clone();
            std::thread::spawn(move || {
                let mut b = vec![0u8; 1 << 16];
                while !stop_r.load(Ordering::SeqCst) && matches!(r.read(&mut b), Ok(n) if n > 0) {}
            });
            let stop = stop.clone();
            let mut w = s;
            // A blocked write wakes up now and then to see whether to stop.
            w.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            std::thread::spawn(move || {
                let junk = vec![b'x'; 1 << 20];
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    match w.write(&junk) {
                        Ok(k) => n += k as u64,
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Other clients are answered meanwhile (10 s read timeout each).
    for i in 0..20 {
        let r = get(srv.addr, "/status");
        assert_eq!(r.status, 200, "request {i} during the flood");
    }
    stop.store(true, Ordering::SeqCst);
    let poured: u64 = pourers.into_iter().map(|p| p.join().unwrap()).sum();
    eprintln!("input flood: {poured} bytes poured into two stream connections");
}
