//! DVB-CSA throughput: MB/s of 184-byte payloads descrambled on one core,
//! capbox (scalar per packet; batch with each SIMD variant, full batches)
//! beside Debian's libdvbcsa (`dvbcsa_bs_decrypt` with full batches of
//! `dvbcsa_bs_batch_size()`, and `dvbcsa_decrypt` per packet), measured in
//! the same run by tests/c/csa_bench.c. Rounds are interleaved; the median
//! of the rounds is printed.
//!
//! Run: `cargo build --release --example bench_csa &&
//!       taskset -c 1 target/release/examples/bench_csa [ROUNDS] [SECONDS]`

use capbox::ca::csa::{Batch, Keys, Parity, Pushed, Simd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CW_EVEN: [u8; 8] = [0x12, 0x34, 0x56, 0x9c, 0x78, 0x9a, 0xbc, 0xce];
const CW_ODD: [u8; 8] = [0x21, 0x43, 0x65, 0xc9, 0x87, 0xa9, 0xcb, 0xfb];

fn packets(n: usize, keys: &Keys) -> Vec<[u8; 188]> {
    (0..n)
        .map(|i| {
            let mut p = [0u8; 188];
            for (j, b) in p.iter_mut().enumerate() {
                *b = (i * 31 + j * 131 + 7) as u8;
            }
            p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
            capbox::ca::csa::scramble_packet(&mut p, keys, Parity::Even);
            p
        })
        .collect()
}

/// MB/s of payload through the batch engine, full batches.
fn batch_mbs(simd: Simd, keys: &Keys, secs: f64) -> f64 {
    let orig = packets(simd.lanes().max(256), keys);
    let mut work = orig.clone();
    let mut engine = capbox::ca::csa::Engine::with_simd(simd);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        // Restore the scrambling bits (the payload stays whatever it
        // became: the cipher's cost does not depend on the bytes).
        for w in work.iter_mut() {
            w[3] = 0x90;
        }
        let mut b = Batch::with_engine(engine);
        for w in work.iter_mut() {
            if !matches!(b.push(w, keys), Pushed::Queued) {
                panic!("not queued");
            }
        }
        b.flush();
        engine = b.into_engine();
        n += work.len() as u64;
    }
    n as f64 * 184.0 / t0.elapsed().as_secs_f64() / 1e6
}

fn scalar_mbs(keys: &Keys, secs: f64) -> f64 {
    let mut work = packets(256, keys);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        for w in work.iter_mut() {
            w[3] = 0x90;
            capbox::ca::csa::descramble_packet(w, keys);
        }
        n += work.len() as u64;
    }
    n as f64 * 184.0 / t0.elapsed().as_secs_f64() / 1e6
}

fn libdvbcsa(secs: f64) -> Option<(f64, f64, u32)> {
    let dir = Path::new("target/bench_csa");
    std::fs::create_dir_all(dir).ok()?;
    let exe = dir.join("csa_bench");
    let st = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg("tests/c/csa_bench.c")
        .arg("-ldvbcsa")
        .status()
        .ok()?;
    if !st.success() {
        return None;
    }
    let out = Command::new(&exe).arg(secs.to_string()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse::<f64>().ok()))
            .flatten()
    };
    Some((get("bs ")?, get("single ")?, get("batch_size ")? as u32))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let secs: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let keys = Keys::new(CW_EVEN, CW_ODD);
    // Optional third argument: only this variant (for profiling).
    let only = args.get(3).map(|s| s.to_ascii_lowercase());
    let variants: Vec<Simd> = [
        Simd::Portable,
        Simd::Sse2,
        Simd::Avx2,
        Simd::Avx512,
        Simd::Avx512Vbmi,
    ]
    .into_iter()
    .filter(|s| s.available())
    .filter(|s| {
        only.as_ref()
            .is_none_or(|o| format!("{s:?}").to_ascii_lowercase() == *o)
    })
    .collect();
    let skip_others = only.is_some();
    let mut lib_bs = Vec::new();
    let mut lib_single = Vec::new();
    let mut lib_batch = 0;
    let mut scalar = Vec::new();
    let mut batch: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        if skip_others {
            for (i, &v) in variants.iter().enumerate() {
                batch[i].push(batch_mbs(v, &keys, secs));
            }
            continue;
        }
        if let Some((bs, single, size)) = libdvbcsa(secs) {
            lib_bs.push(bs);
            lib_single.push(single);
            lib_batch = size;
        }
        scalar.push(scalar_mbs(&keys, secs));
        for (i, &v) in variants.iter().enumerate() {
            batch[i].push(batch_mbs(v, &keys, secs));
        }
        eprintln!("round {}/{rounds} done", r + 1);
    }
    let lib = if lib_bs.is_empty() {
        None
    } else {
        Some(median(&mut lib_bs))
    };
    println!("| implementation | mode | MB/s (median of {rounds}) | × libdvbcsa batched |");
    println!("|---|---|---:|---:|");
    let ratio = |x: f64| lib.map(|l| format!("{:.2}", x / l)).unwrap_or("-".into());
    if let Some(l) = lib {
        println!(
            "| Debian libdvbcsa 1.1.0 | dvbcsa_bs_decrypt, batch {lib_batch} | {l:.1} | 1.00 |"
        );
        let s = median(&mut lib_single);
        println!(
            "| Debian libdvbcsa 1.1.0 | dvbcsa_decrypt, per packet | {s:.1} | {} |",
            ratio(s)
        );
    } else {
        println!("| Debian libdvbcsa | (not found: apt-get install libdvbcsa-dev) | - | - |");
    }
    if !scalar.is_empty() {
        let s = median(&mut scalar);
        println!("| capbox | scalar, per packet | {s:.1} | {} |", ratio(s));
    }
    for (i, v) in variants.iter().enumerate() {
        let m = median(&mut batch[i]);
        println!(
            "| capbox | batch {:?}, {} lanes, batch 256 | {m:.1} | {} |",
            v,
            v.lanes(),
            ratio(m)
        );
    }
}
