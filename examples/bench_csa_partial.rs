//! Partial batches: what descrambling n packets costs when only n are
//! there (a radio service's 10 ms flush holds one or two packets), through
//! the batch engine with the SIMD variant the machine picks, and packet by
//! packet with the scalar reference. The batch engine's cost is that of a
//! full run whatever n is, so below some n the scalar path is cheaper:
//! `csa::bitslice::SCALAR_BELOW` is set from this table.
//!
//! Run: `cargo build --release --example bench_csa_partial &&
//!       taskset -c 1 target/release/examples/bench_csa_partial [ROUNDS] [SECONDS]`

use capbox::ca::csa::{descramble_packet, scramble_packet, Engine, Keys, Parity, Simd};
use std::time::{Duration, Instant};

fn packets(n: usize, keys: &Keys) -> Vec<[u8; 188]> {
    (0..n)
        .map(|i| {
            let mut p = [0u8; 188];
            for (j, b) in p.iter_mut().enumerate() {
                *b = (i * 31 + j * 131 + 7) as u8;
            }
            p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
            scramble_packet(&mut p, keys, Parity::Even);
            p
        })
        .collect()
}

/// µs per flush of `n` packets through the batch engine (forced to go
/// through the bitsliced run even for small n: `raw_batch_flush`).
fn batch_us(simd: Simd, keys: &Keys, n: usize, secs: f64) -> f64 {
    let mut work = packets(n, keys);
    let mut engine = Engine::with_simd(simd);
    let t0 = Instant::now();
    let mut flushes = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        for w in work.iter_mut() {
            w[3] = 0x90;
        }
        engine = capbox::ca::csa::raw_batch_flush(engine, &mut work, keys);
        flushes += 1;
    }
    t0.elapsed().as_secs_f64() * 1e6 / flushes as f64
}

fn scalar_us(keys: &Keys, n: usize, secs: f64) -> f64 {
    let mut work = packets(n, keys);
    let t0 = Instant::now();
    let mut flushes = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        for w in work.iter_mut() {
            w[3] = 0x90;
            descramble_packet(w, keys);
        }
        flushes += 1;
    }
    t0.elapsed().as_secs_f64() * 1e6 / flushes as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.3);
    let keys = Keys::new(
        [0x12, 0x34, 0x56, 0x9c, 0x78, 0x9a, 0xbc, 0xce],
        [0x21, 0x43, 0x65, 0xc9, 0x87, 0xa9, 0xcb, 0xfb],
    );
    let simd = Simd::detect();
    let sizes = [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256];
    let mut b: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut s: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for r in 0..rounds {
        for (i, &n) in sizes.iter().enumerate() {
            b[i].push(batch_us(simd, &keys, n, secs));
            s[i].push(scalar_us(&keys, n, secs));
        }
        eprintln!("round {}/{rounds} done", r + 1);
    }
    println!("SIMD: {simd:?}; median of {rounds} rounds of {secs} s per cell");
    println!();
    println!("| packets in the flush | batch engine µs | scalar µs | faster |");
    println!("|---:|---:|---:|---|");
    for (i, &n) in sizes.iter().enumerate() {
        let (bm, sm) = (median(&mut b[i]), median(&mut s[i]));
        let faster = if sm < bm { "scalar" } else { "batch" };
        println!("| {n} | {bm:.1} | {sm:.1} | {faster} |");
    }
}
