//! Pipelining without reading: a client that sends requests without pause
//! while it reads the answers slowly through a small receive buffer, so
//! capbox's socket never drains. capbox must stop parsing while the answers
//! wait and keep only what is unsent: its RSS stays flat (issue 10, item 2).
//!
//! The test runs in a network namespace of its own whose tcp_wmem caps a
//! socket's send buffer at 64 KiB: what a box under TCP memory pressure
//! does (the kernel shrinks each send buffer to what it holds) or one with
//! a small tcp_wmem. There capbox's socket never takes a whole batch of
//! answers, so capbox's own buffer never empties. With loopback's default
//! 4 MiB the kernel takes each batch whole, capbox's buffer empties at
//! every wake-up, and the old code looked safe.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::e2e_common::*;
use crate::net::{connect_from, sample, vm_rss_kib};

/// How long the client pipelines, and how much of it is warm-up (the
/// channel's 1 MiB ring filling at the sample's ~370 kbit/s, the answer
/// buffer reaching its size) before the RSS baseline is taken.
const RUN: Duration = Duration::from_secs(60);
const WARM_UP: Duration = Duration::from_secs(20);
/// What the client reads per second.
const READ_RATE: u64 = 100 << 10;
/// Allowed RSS growth after warm-up, beyond that of a control capbox with
/// the same config and no client, started alongside: capbox with no client
/// at all creeps here (0.8 to 1.5 MiB in 40 s, allocator and ring chunks),
/// unevenly, so the figure is the difference. Code that keeps every answer
/// it sent grows by what the client reads: READ_RATE × 40 s = 4 MiB
/// (measured on the old code: 5.7 MiB in 45 s). The answer buffer's own
/// bound is under 1 MiB (twice 256 KiB of unsent answers plus one answer,
/// rounded up by Vec), which it may still reach after warm-up.
const MAX_GROWTH_KIB: u64 = 2 << 10;

#[test]
fn slow_reading_pipeliner_leaves_rss_flat() {
    // A thread of its own: it moves into a new network namespace.
    if let Err(e) = std::thread::spawn(pipeline_slowly).join() {
        std::panic::resume_unwind(e);
    }
}

fn pipeline_slowly() {
    if !crate::net::private_loopback(Some("4096 16384 65536")) {
        return;
    }
    let cfg = server_toml()
        + "[buffers]\nring_bytes = 1048576\n\n"
        + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start("pipelining", &cfg);
    let control = Server::start("pipelining-control", &cfg);
    srv.wait_up(&["news"]);
    control.wait_up(&["news"]);
    let pid = srv.pid();

    let sock = connect_from(Ipv4Addr::LOCALHOST, srv.addr, Some(4096)).expect("connect");
    let mut writer = sock.try_clone().unwrap();
    // Blocked writes wake up now and then to see whether to stop.
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    let one = "GET /playlist.m3u HTTP/1.1\r\nHost: box\r\n\r\n";
    let req_len = one.len() as u64;
    let req = one.repeat(64);
    let sent = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop_w.load(Ordering::SeqCst) {
            match writer.write(req.as_bytes()) {
                Ok(n) => sent += n as u64,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("pipelining writer: {e}"),
            }
        }
        sent
    });

    let mut reader = sock;
    let start = Instant::now();
    let mut got = 0u64;
    let mut first = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut baseline = None;
    let mut peak = 0;
    let mut samples = Vec::new();
    let (mut control_base, mut control_peak) = (None, 0);
    let mut next_sample = start + WARM_UP;
    while start.elapsed() < RUN {
        // Read at READ_RATE on average, a little at a time.
        let due = READ_RATE * start.elapsed().as_millis() as u64 / 1000;
        if got >= due {
            std::thread::sleep(Duration::from_millis(10));
        } else {
            let n = reader.read(&mut buf).expect("reading answers");
            assert!(
                n > 0,
                "capbox closed the pipelining connection after {got} bytes"
            );
            if first.len() < 64 {
                first.extend_from_slice(&buf[..n.min(64)]);
            }
            got += n as u64;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let rss = vm_rss_kib(pid);
            samples.push(rss);
            match baseline {
                None => baseline = Some(rss),
                Some(_) => peak = peak.max(rss),
            }
            let c = vm_rss_kib(control.pid());
            match control_base {
                None => control_base = Some(c),
                Some(_) => control_peak = control_peak.max(c),
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    drop(reader);
    let requests_sent = sent.join().unwrap();
    assert!(
        first.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let baseline = baseline.expect("RSS sampled");
    let growth = peak.saturating_sub(baseline);
    let control_growth = control_peak.saturating_sub(control_base.expect("RSS sampled"));
    eprintln!(
        "pipelining: read {got} bytes, sent {requests_sent} bytes of requests; \
         capbox VmRSS after warm-up {baseline} KiB, peak {peak} KiB, growth {growth} KiB \
         (control without client: {control_growth} KiB); samples {samples:?}"
    );
    assert!(
        growth.saturating_sub(control_growth) <= MAX_GROWTH_KIB,
        "capbox RSS grew {growth} KiB (from {baseline} to {peak} KiB) while a client \
         pipelined and read {got} bytes, the control {control_growth} KiB; \
         samples (KiB, 1/s): {samples:?}"
    );
    // The test did what it says: the answers kept coming at about the
    // rate read, and the client had sent more requests than were answered.
    assert!(got > 2 << 20, "client read only {got} bytes in {RUN:?}");
    let answered = sample(
        &srv.metrics(),
        "capbox_http_requests_total",
        Some(("route", "playlist")),
    );
    let asked = requests_sent / req_len;
    assert!(answered > 1000.0, "only {answered} requests answered");
    assert!(
        asked as f64 > answered,
        "{asked} requests sent, {answered} answered"
    );
}
