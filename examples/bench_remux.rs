//! Single-core throughput of the capture-thread path, for scripts/bench.
//!
//! Usage: bench_remux FILE MODE [--programs N|all] [--runs R]
//!
//! MODE:
//! - `mem`   the file read into memory once, then `Remux::push` in 48 KiB
//!           blocks (the FileSource block size) and `take_output` of every
//!           wanted program after each block: demux + remux alone.
//! - `read`  `FileSource` unpaced (realtime: false, looping: false) into a
//!           buffer, nothing else: the cost of reading (page cache).
//! - `file`  `FileSource` unpaced → `Remux`.
//! - `full`  `FileSource` unpaced → `Remux` → per program `EntryPointGate` →
//!           fan-out `ChunkWriter` (one `Ring` per program, default config):
//!           the whole capture thread of a box whose channels share one mux.
//!
//! `--monitor on|off` (mode `full`, default off): `[monitor] enabled`:
//! each channel's `monitor::channel::ChannelMonitor` fed what the channel
//! emits (verdict recomputed as the daemon does), TR 101 290 on each
//! channel's output and on the input mux (as a tuner's: PCR accuracy on)
//! with the box clock's TDT watch, as the runner does, so scripts/bench
//! prints the capture path with monitoring on and off in the same run.
//!
//! Prints one line per run and a final `RESULT` line (median of the runs):
//! `RESULT mode=.. programs=.. in_bytes=.. out_bytes=.. secs=.. mbps=..`
//! where mbps is MB (10^6 bytes) of *input* per second of wall time. The
//! output byte count is printed so a run that extracted nothing is visible.
//! Nothing here is a test: it asserts nothing about time.
//!
//! `--write PATH` (mode `mem`, after the timed runs): one more pass writing
//! the first program's output to PATH, to check it with ffprobe.

use std::time::{Duration, Instant};

use capbox::fanout::{ChunkWriter, Ring, RingConfig};
use capbox::monitor::channel::{ChannelMonitor, MonitorSettings};
use capbox::monitor::clock::TdtWatch;
use capbox::monitor::tr101290::{self, Tr101290};
use capbox::remux::Remux;
use capbox::source::{FileSource, FileSourceConfig, ReadOutcome, Source, SourceError};
use capbox::ts::es::EntryPointGate;
use capbox::ts::packet::{Packet, PACKET_SIZE};

const BLOCK: usize = 256 * PACKET_SIZE;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Mem,
    Read,
    File,
    Full,
}

struct Run {
    in_bytes: u64,
    out_bytes: u64,
    secs: f64,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_remux FILE mem|read|file|full [--programs N|all] [--runs R] [--monitor on|off]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        usage();
    }
    let path = args[0].clone();
    let mode = match args[1].as_str() {
        "mem" => Mode::Mem,
        "read" => Mode::Read,
        "file" => Mode::File,
        "full" => Mode::Full,
        _ => usage(),
    };
    let mut programs: Option<Vec<u16>> = Some(vec![1]);
    let mut runs = 5usize;
    let mut write: Option<String> = None;
    let mut monitor = false;
    let mut i = 2;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--programs" if v == "all" => programs = None,
            "--programs" => {
                programs = Some(
                    v.split(',')
                        .map(|s| s.parse().unwrap_or_else(|_| usage()))
                        .collect(),
                )
            }
            "--runs" => runs = v.parse().unwrap_or_else(|_| usage()),
            "--write" => write = Some(v),
            "--monitor" => {
                monitor = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
        i += 2;
    }
    // The file in memory only when needed: `mem` mode, and `all` (every
    // program of the PAT, found with a first pass).
    let need_data = mode == Mode::Mem || programs.is_none();
    let data = if need_data {
        std::fs::read(&path).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(1)
        })
    } else {
        Vec::new()
    };
    let programs = programs.unwrap_or_else(|| all_programs(&data));
    let data = if mode == Mode::Mem { data } else { Vec::new() };

    let mut results = Vec::new();
    for n in 0..runs {
        let r = match mode {
            Mode::Mem => run_mem(&data, &programs),
            _ => run_file(&path, mode, &programs, monitor),
        };
        println!(
            "run {n}: in_bytes={} out_bytes={} secs={:.4} mbps={:.1}",
            r.in_bytes,
            r.out_bytes,
            r.secs,
            r.in_bytes as f64 / 1e6 / r.secs
        );
        results.push(r);
    }
    if let (Some(w), Mode::Mem) = (write, mode) {
        let mut r = Remux::new();
        let i = r.add_program(programs[0]);
        let mut all = Vec::new();
        let mut out = Vec::new();
        for block in data.chunks(BLOCK) {
            r.push(block);
            r.program_mut(i).take_output(&mut out);
            all.extend_from_slice(&out);
        }
        if let Err(e) = std::fs::write(&w, &all) {
            eprintln!("{w}: {e}");
            std::process::exit(1)
        }
    }
    results.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let m = &results[results.len() / 2];
    let name = match mode {
        Mode::Mem => "mem",
        Mode::Read => "read",
        Mode::File => "file",
        Mode::Full => "full",
    };
    println!(
        "RESULT mode={name} programs={} in_bytes={} out_bytes={} secs={:.4} mbps={:.1}",
        programs.len(),
        m.in_bytes,
        m.out_bytes,
        m.secs,
        m.in_bytes as f64 / 1e6 / m.secs
    );
}

fn all_programs(data: &[u8]) -> Vec<u16> {
    let mut r = Remux::new();
    for block in data.chunks(BLOCK) {
        r.push(block);
        if let Some(pat) = r.pat() {
            let v: Vec<u16> = pat.programs().map(|p| p.program_number).collect();
            if !v.is_empty() {
                return v;
            }
        }
    }
    eprintln!("no PAT in the input");
    std::process::exit(1)
}

fn run_mem(data: &[u8], programs: &[u16]) -> Run {
    let mut r = Remux::new();
    let idx: Vec<usize> = programs.iter().map(|&p| r.add_program(p)).collect();
    let mut out = Vec::with_capacity(BLOCK);
    let mut out_bytes = 0u64;
    let t0 = Instant::now();
    for block in data.chunks(BLOCK) {
        r.push(block);
        for &i in &idx {
            r.program_mut(i).take_output(&mut out);
            out_bytes += out.len() as u64;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(&out);
    Run {
        in_bytes: data.len() as u64,
        out_bytes,
        secs,
    }
}

/// One channel of the `full` path: the gate appears once the PMT names the
/// video PID; until then packets go to the writer ungated (as the channel
/// thread does before it knows the codec).
struct Chan {
    idx: usize,
    gate: Option<EntryPointGate>,
    writer: ChunkWriter,
    monitor: Option<ChannelMonitor>,
    /// TR 101 290 on what the channel emits (as the runner's outputs).
    tr: Option<Tr101290>,
}

fn run_file(path: &str, mode: Mode, programs: &[u16], monitor: bool) -> Run {
    let cfg = FileSourceConfig {
        looping: false,
        realtime: false,
        ..FileSourceConfig::new(path)
    };
    let mut src = FileSource::open(cfg).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut r = Remux::new();
    let mut chans: Vec<Chan> = programs
        .iter()
        .map(|&p| Chan {
            idx: r.add_program(p),
            gate: None,
            writer: Ring::new(RingConfig::default()).writer(),
            monitor: monitor.then(|| ChannelMonitor::new(MonitorSettings::default(), 0)),
            tr: monitor.then(|| Tr101290::new(tr101290::Config::channel())),
        })
        .collect();
    let mut buf = Vec::with_capacity(2 * BLOCK);
    let mut out = Vec::with_capacity(BLOCK);
    let mut in_bytes = 0u64;
    let mut out_bytes = 0u64;
    let mut monitor_secs = 0.0;
    // The input mux as the runner watches a tuner's: TR 101 290 with PCR
    // accuracy (the dearest configuration) and the TDT watch of the box
    // clock check.
    let mut mux_tr = monitor.then(|| Tr101290::new(tr101290::Config::mux(true)));
    let mut tdt = monitor.then(TdtWatch::default);
    let mut last_read_ms = 0u64;
    let t0 = Instant::now();
    loop {
        buf.clear();
        match src.read(&mut buf, Duration::from_millis(100)) {
            Ok(ReadOutcome::Data) | Ok(ReadOutcome::Discontinuity) => {}
            Ok(ReadOutcome::Idle) => continue,
            Err(SourceError::Eof) => break,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        }
        in_bytes += buf.len() as u64;
        if mode == Mode::Read {
            std::hint::black_box(&buf);
            continue;
        }
        let now_ms = t0.elapsed().as_millis() as u64;
        let from_ms = std::mem::replace(&mut last_read_ms, now_ms);
        if mode == Mode::Full {
            if let Some(t) = mux_tr.as_mut() {
                let t1 = Instant::now();
                t.push_packets_between(&buf, from_ms, now_ms);
                if let Some(w) = tdt.as_mut() {
                    std::hint::black_box(w.push_packets(&buf));
                }
                monitor_secs += t1.elapsed().as_secs_f64();
            }
        }
        r.push(&buf);
        for c in chans.iter_mut() {
            let p = r.program_mut(c.idx);
            p.take_output(&mut out);
            out_bytes += out.len() as u64;
            if mode != Mode::Full {
                continue;
            }
            if p.psi_changed {
                p.psi_changed = false;
                c.writer.ring().set_psi(p.psi_packets());
            }
            if let Some(m) = c.monitor.as_mut() {
                let t = Instant::now();
                m.feed(now_ms, &out);
                m.update(now_ms, false);
                if let Some(tr) = c.tr.as_mut() {
                    if out.is_empty() {
                        tr.tick(now_ms);
                    } else {
                        tr.push_packets_between(&out, from_ms, now_ms);
                    }
                }
                monitor_secs += t.elapsed().as_secs_f64();
            }
            if c.gate.is_none() {
                if let Some((pid, codec)) = p.video {
                    c.gate = Some(EntryPointGate::new(codec, pid));
                }
            }
            let w = &mut c.writer;
            match c.gate.as_mut() {
                Some(g) => {
                    for raw in out.chunks_exact(PACKET_SIZE) {
                        if let Ok(pkt) = Packet::new_checked(raw) {
                            g.push(&pkt, |b, ep| w.push(b, ep));
                        }
                    }
                }
                None => w.push(&out, false),
            }
        }
    }
    for c in chans.iter_mut() {
        let w = &mut c.writer;
        if let Some(g) = c.gate.as_mut() {
            g.flush(|b, ep| w.push(b, ep));
        }
        w.flush();
    }
    let secs = t0.elapsed().as_secs_f64();
    if mode == Mode::Full {
        let ring_in: u64 = chans.iter().map(|c| c.writer.ring().total_bytes()).sum();
        let eps: u64 = chans
            .iter()
            .map(|c| {
                c.gate
                    .as_ref()
                    .map(|g| g.detector.stats.entry_points)
                    .unwrap_or(0)
            })
            .sum();
        eprintln!("  full: ring bytes={ring_in} entry points={eps}");
        if monitor {
            // Measured inside the run: load from other processes slows both
            // parts alike, so the share is steadier than two wall times.
            eprintln!(
                "  monitor: {monitor_secs:.4} s of {secs:.4} s ({:.1} %)",
                100.0 * monitor_secs / secs
            );
        }
        if let Some(t) = mux_tr.as_ref() {
            let errs: u64 = t.indicators().iter().map(|i| i.errors).sum();
            let chan_errs: u64 = chans
                .iter()
                .filter_map(|c| c.tr.as_ref())
                .flat_map(|t| t.indicators().iter().map(|i| i.errors))
                .sum();
            // Read unpaced, a file's time-based indicators (PCR accuracy
            // and repetition against arrival) do not mean what they do live.
            eprintln!("  tr101290: input mux errors={errs}, channel outputs errors={chan_errs}");
        }
        for c in chans.iter().filter_map(|c| c.monitor.as_ref()) {
            let st = c.status();
            eprintln!(
                "  monitor: {} ({}) streams={} pes={}",
                st.verdict.as_str(),
                st.reason,
                st.es.len(),
                st.es.iter().map(|e| e.pes).sum::<u64>()
            );
        }
    }
    Run {
        in_bytes,
        out_bytes,
        secs,
    }
}
