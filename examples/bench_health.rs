//! Cost of `channel::health::SourceHealth::observe` per packet, next to a
//! plain packet walk (read the PID and CC of every packet) for scale: the
//! monitor runs on the capture thread for every packet of every channel.
//!
//! Usage: bench_health [FILE] [--runs R]   (FILE defaults to samples/mux.ts)
//!
//! The file is read into memory once and fed in 48 KiB blocks (the
//! FileSource block size), with a fake clock advancing 10 ms per block, for
//! at least one second of wall time per run. Prints one line per run and a
//! final `RESULT` line with the medians:
//! `RESULT walk_mpkts=.. observe_mpkts=.. ratio=..` (millions of packets
//! per second). Nothing here is a test: it asserts nothing about time.

use capbox::channel::health::{HealthRules, SourceHealth};
use capbox::ts::PACKET_SIZE;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BLOCK: usize = 256 * PACKET_SIZE;

fn walk(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    for block in data.chunks(BLOCK) {
        for p in block.chunks_exact(PACKET_SIZE) {
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            acc = acc.wrapping_add(u64::from(pid) ^ u64::from(p[3] & 0x0F));
        }
    }
    acc
}

/// Packets per second of `f` over `data`, repeated for ≥ 1 s.
fn rate(data: &[u8], mut f: impl FnMut(&[u8])) -> f64 {
    let packets = (data.len() / PACKET_SIZE) as f64;
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f(data);
        passes += 1;
    }
    packets * passes as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut file = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts").to_string();
    let mut runs = 5usize;
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
        } else {
            file = a;
        }
    }
    let mut data = std::fs::read(&file).unwrap_or_else(|e| {
        eprintln!("bench_health: {file}: {e}");
        std::process::exit(2);
    });
    data.truncate(data.len() / PACKET_SIZE * PACKET_SIZE);
    println!(
        "file {file}: {} packets, {} runs",
        data.len() / PACKET_SIZE,
        runs
    );
    let (mut walks, mut observes) = (Vec::new(), Vec::new());
    let t0 = Instant::now();
    let mut h = SourceHealth::new(HealthRules::default());
    let mut clock_ms = 0u64;
    for run in 0..runs {
        let w = rate(&data, |d| {
            black_box(walk(black_box(d)));
        });
        let o = rate(&data, |d| {
            // The file loops: a new stream each pass, as FileSource says.
            h.reset_stream();
            for block in d.chunks(BLOCK) {
                clock_ms += 10;
                h.observe(black_box(block), t0 + Duration::from_millis(clock_ms));
            }
        });
        println!(
            "run {run}: walk {:.1} Mpkt/s, observe {:.1} Mpkt/s ({:.0} Mbit/s of TS), verdict {}",
            w / 1e6,
            o / 1e6,
            o * 188.0 * 8.0 / 1e6,
            h.verdict(t0 + Duration::from_millis(clock_ms))
        );
        walks.push(w);
        observes.push(o);
    }
    let (w, o) = (median(walks), median(observes));
    println!(
        "RESULT walk_mpkts={:.2} observe_mpkts={:.2} ratio={:.2}",
        w / 1e6,
        o / 1e6,
        w / o
    );
}
