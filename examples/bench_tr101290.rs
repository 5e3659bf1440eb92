//! Cost of the TR 101 290 analyser per core (issue 14: monitoring on every
//! input mux and channel within the capture path's budget).
//!
//! Usage: bench_tr101290 [--runs R]
//!
//! Makes a broadcast-like mux with ffmpeg into target/tmp (once): 10 s of
//! 720x576 MPEG-2 at 6 Mbit/s + Layer II 192k, copied into 5 programs of a
//! 32 Mbit/s constant-rate mux (null packets, PCR every 20 ms, PAT/PMT
//! every 100 ms, SDT every 500 ms), then times the analyser over it for at
//! least a second per figure: aligned packets as the daemon feeds them
//! (`push_packets`, the input mux with every indicator, PCR accuracy
//! included), raw bytes with its own framing (`push_bytes`), and the
//! channel configuration on one program's packets. Also samples/mux.ts.
//! Prints MB/s and ns per packet per core and a final `RESULT` line.
//! Nothing here is a test: it asserts nothing about time.

use capbox::monitor::tr101290::{Config, Tr101290};
use capbox::ts::PACKET_SIZE;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn ffmpeg(args: &[&str], out: &Path) {
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg (apt-get install ffmpeg)");
    assert!(st.success(), "ffmpeg failed: {args:?}");
}

fn real_mux() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    let base = dir.join("bench_tr290_base.ts");
    let mux = dir.join("bench_tr290_mux.ts");
    if !base.exists() {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=720x576:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=1000:sample_rate=48000",
                "-t",
                "10",
                "-vf",
                "noise=alls=30:allf=t",
                "-c:v",
                "mpeg2video",
                "-b:v",
                "6M",
                "-minrate",
                "6M",
                "-maxrate",
                "6M",
                "-bufsize",
                "2M",
                "-c:a",
                "mp2",
                "-b:a",
                "192k",
                "-f",
                "mpegts",
            ],
            &base,
        );
    }
    if !mux.exists() {
        let b = base.to_string_lossy().to_string();
        let mut args: Vec<String> = vec!["-i".into(), b];
        for _ in 0..5 {
            args.extend(["-map", "0:v", "-map", "0:a"].map(String::from));
        }
        args.extend(["-c", "copy"].map(String::from));
        for k in 0..5 {
            args.push("-program".into());
            args.push(format!(
                "program_num={}:st={}:st={}",
                k + 1,
                2 * k,
                2 * k + 1
            ));
        }
        args.extend(
            [
                "-muxrate",
                "32000000",
                "-pcr_period",
                "20",
                "-pat_period",
                "0.1",
                "-sdt_period",
                "0.5",
                "-f",
                "mpegts",
            ]
            .map(String::from),
        );
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ffmpeg(&a, &mux);
    }
    mux
}

/// Run `f` over `data` until a second has passed; MB/s and ns/packet.
fn time(data: &[u8], mut f: impl FnMut(&[u8], u64)) -> (f64, f64) {
    let t0 = Instant::now();
    let mut bytes = 0u64;
    let mut pass = 0u64;
    while t0.elapsed() < Duration::from_secs(1) || pass == 0 {
        // 256 packets a read, as the runner's reads.
        let chunks = data.len().div_ceil(256 * PACKET_SIZE) as u64;
        for (k, c) in data.chunks(256 * PACKET_SIZE).enumerate() {
            // Stream time at 32 Mbit/s: 12 ms per 256 packets, going on
            // across passes.
            f(c, (pass * chunks + k as u64) * 12);
        }
        bytes += data.len() as u64;
        pass += 1;
    }
    let s = t0.elapsed().as_secs_f64();
    let packets = bytes as f64 / PACKET_SIZE as f64;
    (bytes as f64 / s / 1e6, s * 1e9 / packets)
}

fn main() {
    let mut runs = 3;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--runs") {
        runs = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(3);
    }
    let mux = std::fs::read(real_mux()).expect("mux");
    let sample = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts"))
        .expect("sample");
    // One program's packets (as a channel's output would carry them).
    let one: Vec<u8> = mux
        .chunks_exact(PACKET_SIZE)
        .filter(|p| {
            let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1FFF;
            matches!(pid, 0 | 0x1000 | 0x100 | 0x101)
        })
        .flatten()
        .copied()
        .collect();
    println!(
        "mux: {:.1} MB ({} packets, 5 programs, 32 Mbit/s); channel: {} packets",
        mux.len() as f64 / 1e6,
        mux.len() / PACKET_SIZE,
        one.len() / PACKET_SIZE
    );
    // The same in cache (1 MB): in the daemon the analyser reads packets
    // the source has just written, so this is the figure that counts.
    let hot: Vec<u8> = mux[..5_000 * PACKET_SIZE].to_vec();
    let mut best = [0f64; 5];
    for run in 0..runs {
        let mut line = format!("run {run}:");
        let figures = [
            ("mux push_packets", &mux, Config::mux(true), false),
            ("mux push_bytes", &mux, Config::mux(true), true),
            ("channel push_packets", &one, Config::channel(), false),
            ("samples/mux.ts", &sample, Config::mux(false), false),
            ("mux in cache", &hot, Config::mux(true), false),
        ];
        for (k, (name, data, cfg, bytes)) in figures.into_iter().enumerate() {
            let mut a = Tr101290::new(cfg);
            let (mbs, ns) = time(data, |c, t| {
                if bytes {
                    a.push_bytes(c, t)
                } else {
                    a.push_packets(c, t)
                }
            });
            let snap = black_box(a.snapshot(a.now_ms()));
            if run == 0 {
                // What was measured: every packet read, and the indicators
                // that moved (the passes loop the file: CC and PCR breaks
                // at each loop are expected).
                let moved: Vec<String> = capbox::monitor::tr101290::INDICATORS
                    .iter()
                    .zip(&snap.indicators)
                    .filter(|(_, s)| s.errors > 0)
                    .map(|(i, s)| format!("{}={}", i.id(), s.errors))
                    .collect();
                println!(
                    "  {name}: {} packets analysed; moved: {}",
                    a.packets(),
                    moved.join(" ")
                );
            }
            best[k] = best[k].max(mbs);
            line += &format!("  {name} {mbs:.0} MB/s ({ns:.1} ns/packet)");
        }
        println!("{line}");
    }
    println!(
        "RESULT tr101290 per core: input mux {:.0} MB/s from RAM, {:.0} MB/s in cache ({:.1} ns/packet), framing itself {:.0} MB/s, channel output {:.0} MB/s, samples/mux.ts {:.0} MB/s",
        best[0],
        best[4],
        PACKET_SIZE as f64 * 1e3 / best[4],
        best[1],
        best[2],
        best[3]
    );
}
