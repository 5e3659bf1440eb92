//! Whole-file descrambling throughput, for scripts/bench-descramble: reads a
//! scrambled TS into memory and runs capbox's per-channel descrambling stage
//! over it in the chunks the runner uses (256 packets), on one thread. The
//! anchor (Debian's tsdecrypt with the same constant control word on the
//! same file) is measured by the script in the same run.
//!
//! Usage: bench_descramble FILE CW16HEX [ROUNDS]
//! Prints `RESULT mbs=<median MB/s of the file> packets=<n> descrambled=<n>
//! undecryptable=<n> fill=<batch fill ratio>`; exits 1 if the output differs from `FILE.clear`
//! when that file exists (so a fast but wrong run cannot pass unnoticed).

use capbox::ca::biss::{BissKey, BissSession};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_descramble FILE CW16HEX [ROUNDS]");
        std::process::exit(2);
    }
    let data = std::fs::read(&args[1]).unwrap_or_else(|e| {
        eprintln!("bench_descramble: {}: {e}", args[1]);
        std::process::exit(2)
    });
    let key = BissKey::parse(&args[2]).unwrap_or_else(|e| {
        eprintln!("bench_descramble: key: {e}");
        std::process::exit(2)
    });
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(5);
    let len = data.len() / 188 * 188;
    let mut rates = Vec::new();
    let mut work = Vec::with_capacity(len);
    let mut last = None;
    let session = BissSession::new(&key);
    let mut chunk = Vec::with_capacity(2048 * 188);
    for _ in 0..rounds {
        work.clear();
        let mut d = session.descrambler();
        let t0 = Instant::now();
        for part in data[..len].chunks(256 * 188) {
            chunk.clear();
            chunk.extend_from_slice(part);
            d.process(&mut chunk, Instant::now());
            work.extend_from_slice(&chunk);
        }
        chunk.clear();
        d.flush(&mut chunk);
        work.extend_from_slice(&chunk);
        let secs = t0.elapsed().as_secs_f64();
        rates.push(len as f64 / secs / 1e6);
        last = Some(d.stats());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    let st = last.unwrap_or_default();
    println!(
        "RESULT mbs={:.1} packets={} descrambled={} undecryptable={} fill={:.2}",
        rates[rates.len() / 2],
        len / 188,
        st.descrambled,
        st.undecryptable,
        st.fill_ratio
    );
    let clear = format!("{}.clear", args[1]);
    if let Ok(c) = std::fs::read(&clear) {
        if work.len() != len || c[..len.min(c.len())] != work[..len.min(c.len())] {
            eprintln!("bench_descramble: output differs from {clear}");
            std::process::exit(1);
        }
    }
}
