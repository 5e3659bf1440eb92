//! DVB-CSA throughput: MB/s of 184-byte payloads descrambled on one core,
//! capbox (scalar per packet; batch with each SIMD variant, full batches)
//! beside Debian's libdvbcsa (`dvbcsa_bs_decrypt` with full batches of
//! `dvbcsa_bs_batch_size()`, and `dvbcsa_decrypt` per packet), measured in
//! the same run by tests/c/csa_bench.c. Time is the measuring thread's CPU
//! time (both sides), so other jobs on a shared machine that take the core
//! away do not count against either. Rounds are interleaved; the median
//! of the rounds is printed, with the CPU (model name, family/model/stepping,
//! the flags that pick an engine).
//!
//! `--anchor DIR` adds another libdvbcsa build to the same run (DIR holds
//! its libdvbcsa.so.1; the helper is run with LD_LIBRARY_PATH=DIR and prints
//! which shared object it really loaded), e.g. the AVX2 fork built by
//! `scripts/build-csa-anchor` (BENCHMARKS.md, "DVB-CSA"), and a column of
//! ratios to it. With VARIANT (e.g. `avx2`) only that engine runs, beside
//! the anchor if one is given (the quick loop while tuning an engine).
//!
//! Run: `cargo build --release --example bench_csa &&
//!       taskset -c 1 target/release/examples/bench_csa [ROUNDS] [SECONDS] [VARIANT] [--anchor DIR]`

use capbox::ca::csa::{Batch, Keys, Parity, Pushed, Simd};
use std::path::Path;
use std::process::Command;

/// CPU seconds of this thread: on a shared machine the time other jobs
/// take the core away does not count (wall time swung ±30 % with the load).
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for
    // the call; CLOCK_THREAD_CPUTIME_ID exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

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
    let t0 = cpu_now();
    let mut n = 0u64;
    while cpu_now() - t0 < secs {
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
    n as f64 * 184.0 / (cpu_now() - t0) / 1e6
}

fn scalar_mbs(keys: &Keys, secs: f64) -> f64 {
    let mut work = packets(256, keys);
    let t0 = cpu_now();
    let mut n = 0u64;
    while cpu_now() - t0 < secs {
        for w in work.iter_mut() {
            w[3] = 0x90;
            capbox::ca::csa::descramble_packet(w, keys);
        }
        n += work.len() as u64;
    }
    n as f64 * 184.0 / (cpu_now() - t0) / 1e6
}

/// One round of a libdvbcsa: `dvbcsa_bs_decrypt` and `dvbcsa_decrypt`.
struct LibRound {
    bs: f64,
    single: f64,
    batch_size: u32,
    /// The shared object that ran (dladdr), to be sure the anchor is the
    /// build we were pointed at and not Debian's.
    lib: String,
}

/// Compile the C helper once (against Debian's headers and -ldvbcsa).
fn build_helper() -> Option<std::path::PathBuf> {
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
    st.success().then_some(exe)
}

/// Run the helper; with `libdir`, that directory's libdvbcsa.so.1 is
/// loaded in place of Debian's.
fn libdvbcsa(exe: &Path, libdir: Option<&Path>, secs: f64) -> Option<LibRound> {
    let mut cmd = Command::new(exe);
    cmd.arg(secs.to_string());
    if let Some(d) = libdir {
        cmd.env("LD_LIBRARY_PATH", d);
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
    Some(LibRound {
        bs: num("bs ")?,
        single: num("single ")?,
        batch_size: num("batch_size ")? as u32,
        lib: get("lib ").unwrap_or("?").to_string(),
    })
}

/// The CPU as /proc/cpuinfo names it, with family/model/stepping (a VM's
/// model name can be just "Intel Xeon Processor") and the flags the
/// engines care about.
fn cpu_line() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let flags = field("flags");
    let want = [
        "sse2",
        "avx2",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512vbmi",
        "gfni",
        "hypervisor",
    ];
    let have: Vec<&str> = want
        .iter()
        .copied()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!(
        "CPU: {} ({}, family {}, model {}, stepping {}); flags: {}",
        field("model name"),
        field("vendor_id"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        have.join(" ")
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--anchor DIR`: another libdvbcsa build (a directory holding its
    // libdvbcsa.so.1, or the .so itself), measured in the same run.
    let mut anchor: Option<std::path::PathBuf> = None;
    if let Some(i) = args.iter().position(|a| a == "--anchor") {
        let Some(p) = args.get(i + 1).cloned() else {
            eprintln!("bench_csa: --anchor needs a path");
            std::process::exit(2);
        };
        args.drain(i..i + 2);
        let p = std::path::PathBuf::from(p);
        let dir = if p.is_dir() {
            p
        } else {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        if !dir.join("libdvbcsa.so.1").exists() {
            eprintln!("bench_csa: no libdvbcsa.so.1 in {}", dir.display());
            std::process::exit(2);
        }
        anchor = Some(std::fs::canonicalize(&dir).unwrap_or(dir));
    }
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let secs: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let keys = Keys::new(CW_EVEN, CW_ODD);
    // Optional third argument: only this variant (for profiling).
    let only = args.get(2).map(|s| s.to_ascii_lowercase());
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
    // With a variant and `--anchor`: that variant and the anchor only (the
    // quick loop while tuning one engine).
    let helper = if skip_others && anchor.is_none() {
        None
    } else {
        build_helper()
    };
    let mut deb: Vec<LibRound> = Vec::new();
    let mut anc: Vec<LibRound> = Vec::new();
    let mut scalar = Vec::new();
    let mut batch: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        if skip_others {
            if let (Some(exe), Some(dir)) = (&helper, &anchor) {
                anc.extend(libdvbcsa(exe, Some(dir), secs));
            }
            for (i, &v) in variants.iter().enumerate() {
                batch[i].push(batch_mbs(v, &keys, secs));
            }
            continue;
        }
        if let Some(exe) = &helper {
            deb.extend(libdvbcsa(exe, None, secs));
            if let Some(dir) = &anchor {
                anc.extend(libdvbcsa(exe, Some(dir), secs));
            }
        }
        scalar.push(scalar_mbs(&keys, secs));
        for (i, &v) in variants.iter().enumerate() {
            batch[i].push(batch_mbs(v, &keys, secs));
        }
        eprintln!("round {}/{rounds} done", r + 1);
    }
    println!("{}", cpu_line());
    let lib_med = |v: &[LibRound], f: fn(&LibRound) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        (!x.is_empty()).then(|| median(&mut x))
    };
    let deb_bs = lib_med(&deb, |l| l.bs);
    let anc_bs = lib_med(&anc, |l| l.bs);
    if let Some(l) = deb.first() {
        println!("Debian libdvbcsa: {}", l.lib);
    }
    if let Some(l) = anc.first() {
        println!("anchor libdvbcsa: {}", l.lib);
    }
    print!("| implementation | mode | MB/s (median of {rounds}) | × Debian batched |");
    if anc_bs.is_some() {
        print!(" × anchor batched |");
    }
    println!();
    println!(
        "|---|---|---:|---:|{}",
        if anc_bs.is_some() { "---:|" } else { "" }
    );
    let row = |name: &str, mode: &str, x: f64| {
        let ratio = |base: Option<f64>| base.map(|b| format!("{:.2}", x / b)).unwrap_or("-".into());
        print!("| {name} | {mode} | {x:.1} | {} |", ratio(deb_bs));
        if anc_bs.is_some() {
            print!(" {} |", ratio(anc_bs));
        }
        println!();
    };
    for (name, v) in [("Debian libdvbcsa 1.1.0", &deb), ("anchor libdvbcsa", &anc)] {
        if let (Some(bs), Some(single)) = (lib_med(v, |l| l.bs), lib_med(v, |l| l.single)) {
            let size = v[0].batch_size;
            row(name, &format!("dvbcsa_bs_decrypt, batch {size}"), bs);
            row(name, "dvbcsa_decrypt, per packet", single);
        }
    }
    if deb.is_empty() && !skip_others {
        println!("(Debian libdvbcsa not found: apt-get install libdvbcsa-dev)");
    }
    if !scalar.is_empty() {
        row("capbox", "scalar, per packet", median(&mut scalar));
    }
    for (i, v) in variants.iter().enumerate() {
        let m = median(&mut batch[i]);
        row(
            "capbox",
            &format!("batch {:?}, {} lanes, batch 256", v, v.lanes()),
            m,
        );
    }
}
