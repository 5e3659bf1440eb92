//! From the air: a PAT is one table of up to 256 sections of one version,
//! and capbox merges them. A mux whose PAT sections 1..=255 say something
//! new every time (thousands of distinct sections of one version, each
//! with 253 programs) must not grow that table, nor the work per section:
//! the mux thread's CPU and the process's memory stay near what a clean
//! stream costs, the channels of that mux keep serving, and so does a
//! channel of another mux.
//!
//! Measured: CPU time (utime + stime from /proc) of the capbox process and
//! of the flooded mux's thread over the same window of a clean run and a
//! flooded run of the same sample, and the process's RSS growth over it.
//! Bounds are generous ratios, never wall-clock speed.

use super::crafted::{cpu_seconds, packetize, rss_bytes, thread_named};
use crate::e2e_common::*;
use capbox::ts::pat::{PatEntry, PatRepr};
use std::time::{Duration, Instant};

/// samples/mux.ts with its PAT made section 0 of 256 (same programs); with
/// `flood`, each packet of the sample is followed by a PAT section 1..=255
/// of the same version listing 253 programs never listed before.
fn pat_stream(mux: &[u8], flood: bool) -> (Vec<u8>, u64) {
    let programs = first_pat(mux).expect("the sample's PAT");
    let sec0 = PatRepr {
        transport_stream_id: 0x0C0B,
        version: 0,
        section_number: 0,
        last_section_number: 255,
        entries: programs
            .iter()
            .map(|&(program_number, pid)| PatEntry {
                program_number,
                pid,
            })
            .collect(),
    }
    .emit();
    let mut out = Vec::with_capacity(mux.len() * 2);
    let mut cc = 0u8;
    let mut k = 0u64;
    for p in packets(mux) {
        if pid(p) == 0 {
            if pusi(p) {
                out.extend_from_slice(&packetize(&sec0, 0, &mut cc));
            }
            continue;
        }
        out.extend_from_slice(p);
        if flood {
            let entries = (0..253u64)
                .map(|j| PatEntry {
                    // Never 1..=3 (the sample's services).
                    program_number: (4 + (k * 253 + j) % 65_000) as u16,
                    pid: 0x20 + ((k + j) % 0x1F00) as u16,
                })
                .collect();
            let sec = PatRepr {
                transport_stream_id: 0x0C0B,
                version: 0,
                section_number: 1 + (k % 255) as u8,
                last_section_number: 255,
                entries,
            };
            out.extend_from_slice(&packetize(&sec.emit(), 0, &mut cc));
            k += 1;
        }
    }
    (out, k)
}

struct Run {
    cpu: f64,
    mux_cpu: f64,
    rss_start: u64,
    rss_end: u64,
    served: Vec<(String, usize)>,
    refused: f64,
}

const CHANNELS: [&str; 4] = ["a", "b", "c", "other"];

/// Serve `main` (programs 1, 2, 3) and `other` (program 1 of the clean
/// sample), wait until up, then measure over `window`; the last 3 s of it
/// every channel is read by a client.
fn run(tag: &str, main: &[u8], window: Duration) -> Run {
    let dir = TempDir::new(tag);
    let main_ts = dir.join("main.ts");
    std::fs::write(&main_ts, main).unwrap();
    let other = dir.join("other.ts");
    std::fs::copy(sample_mux(), &other).unwrap();
    let cfg = server_toml()
        + "[buffers]\nring_bytes = 1048576\nchunk_bytes = 16384\n\n"
        + &channel_toml("a", &main_ts, 1, &[])
        + &channel_toml("b", &main_ts, 2, &[])
        + &channel_toml("c", &main_ts, 3, &[])
        + &channel_toml("other", &other, 1, &[]);
    let srv = Server::start(tag, &cfg);
    srv.wait_up(&CHANNELS);
    let pid = srv.pid();
    let mux = thread_named(pid, "mux main").expect("the thread of main.ts");
    // Let start-up allocations settle.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, mux0, rss_start) = (
        cpu_seconds(pid, None),
        cpu_seconds(pid, Some(mux)),
        rss_bytes(pid),
    );
    let start = Instant::now();
    std::thread::sleep(window.saturating_sub(Duration::from_secs(3)));
    let got = capture_all(srv.addr, &CHANNELS, Duration::from_secs(3));
    let rest = window.saturating_sub(start.elapsed());
    std::thread::sleep(rest);
    let (cpu1, mux1, rss_end) = (
        cpu_seconds(pid, None),
        cpu_seconds(pid, Some(mux)),
        rss_bytes(pid),
    );
    let m = srv.metrics();
    for c in CHANNELS {
        assert_eq!(
            metric(&m, "capbox_channel_up", c),
            Some(1.0),
            "{tag}: channel {c} down at the end; log:\n{}",
            srv.log_text()
        );
    }
    Run {
        cpu: cpu1 - cpu0,
        mux_cpu: mux1 - mux0,
        rss_start,
        rss_end,
        served: CHANNELS
            .iter()
            .zip(got)
            .map(|(c, b)| (c.to_string(), b.len()))
            .collect(),
        refused: metric(&m, "capbox_channel_input_pat_entries_refused_total", "b").unwrap_or(-1.0),
    }
}

#[test]
fn pat_section_flood_keeps_cpu_and_memory_flat_and_channels_serving() {
    let mux = std::fs::read(sample_mux()).unwrap();
    let (clean, _) = pat_stream(&mux, false);
    let (flood, sections) = pat_stream(&mux, true);
    assert!(sections > 10_000, "{sections} flood sections");
    let window = Duration::from_secs(8);
    let c = run("pat-clean", &clean, window);
    let f = run("pat-flood", &flood, window);
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "clean: cpu {:.2} s (mux thread {:.2} s), rss {:.1} → {:.1} MiB, served {:?}",
        c.cpu,
        c.mux_cpu,
        mb(c.rss_start),
        mb(c.rss_end),
        c.served
    );
    println!(
        "flood: cpu {:.2} s (mux thread {:.2} s), rss {:.1} → {:.1} MiB, served {:?}, \
         PAT entries refused {} ({sections} distinct sections per loop of the file)",
        f.cpu,
        f.mux_cpu,
        mb(f.rss_start),
        mb(f.rss_end),
        f.served,
        f.refused
    );
    // Every channel, of the flooded mux and of the other, still serves: 3 s
    // of a ≥ 300 kbit/s program is ≥ 100 KB; ask for a third of that.
    for (ch, n) in &f.served {
        assert!(*n >= 40_000, "flood: channel {ch} served {n} bytes in 3 s");
    }
    assert!(
        f.refused > 0.0,
        "no PAT entry refused (counter {})",
        f.refused
    );
    // CPU: the flooded file has twice the packets of the clean one and
    // every other packet is a new PAT section; generous bounds.
    assert!(
        f.cpu <= 4.0 * c.cpu + 1.5,
        "flood costs {:.2} s of CPU vs {:.2} s clean over {window:?}",
        f.cpu,
        c.cpu
    );
    assert!(
        f.mux_cpu <= 4.0 * c.mux_cpu + 1.0,
        "the flooded mux thread took {:.2} s of CPU vs {:.2} s clean over {window:?}",
        f.mux_cpu,
        c.mux_cpu
    );
    // Memory: what the flooded run grows beyond what the clean one grows.
    let grow = |r: &Run| r.rss_end as i64 - r.rss_start as i64;
    assert!(
        grow(&f) <= grow(&c) + (4 << 20),
        "flood: RSS grew {:.1} MiB vs {:.1} MiB clean",
        grow(&f) as f64 / (1 << 20) as f64,
        grow(&c) as f64 / (1 << 20) as f64
    );
}
