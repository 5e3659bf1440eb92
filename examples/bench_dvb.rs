//! CPU per adapter at full TS (issue 4's bar): what one adapter's capture
//! thread costs when its mux delivers 60 Mbit/s.
//!
//! Usage: bench_dvb FILE [--secs S] [--runs R] [--rate BITS_PER_S]
//!
//! No tuner is needed: a writer thread plays FILE (a recorded mux, e.g.
//! `samples/make-samples.sh --bench DIR` → bench60.ts, looped at its end)
//! into a FIFO, paced at `--rate` (default 60 000 000 bit/s), and the
//! measured thread reads the FIFO through the code a `DvbSource` and the
//! channel runner run after the dvr device: `Dvr::open_path` +
//! `Dvr::read_timeout` (mio readiness, non-blocking reads until EAGAIN) → `Resync`
//! → `Remux` with every program of the PAT → per program `EntryPointGate`
//! → fan-out `ChunkWriter` (default `RingConfig`, flushed after 20 ms as
//! `[buffers] flush_ms` defaults). What the FIFO leaves out is the kernel's
//! dvr ring and the frontend's once-a-second statistics ioctls.
//!
//! CPU = utime+stime of the reading thread (getrusage RUSAGE_THREAD) over
//! the wall time of the run, in % of one core; the whole process (writer
//! included) is printed beside it. One line per run, then a `RESULT` line
//! with the medians. Nothing here asserts anything about time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capbox::dvb::demux::Dvr;
use capbox::fanout::{ChunkWriter, Ring, RingConfig};
use capbox::remux::Remux;
use capbox::source::Resync;
use capbox::ts::es::EntryPointGate;
use capbox::ts::packet::{Packet, PACKET_SIZE};

/// DvbSource's read size: 512 packets.
const BLOCK: usize = 512 * PACKET_SIZE;
/// Writer block: 64 packets (≈ 1.6 ms at 60 Mbit/s).
const WBLOCK: usize = 64 * PACKET_SIZE;

fn usage() -> ! {
    eprintln!("usage: bench_dvb FILE [--secs S] [--runs R] [--rate BITS_PER_S]");
    std::process::exit(2)
}

struct Run {
    in_bytes: u64,
    ring_bytes: u64,
    entry_points: u64,
    wall: f64,
    thread_cpu: f64,
    process_cpu: f64,
}

fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        usage();
    }
    let path = PathBuf::from(&args[0]);
    let mut secs = 20.0f64;
    let mut runs = 3usize;
    let mut rate = 60_000_000u64;
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--secs" => secs = v.parse().unwrap_or_else(|_| usage()),
            "--runs" => runs = v.parse().unwrap_or_else(|_| usage()),
            "--rate" => rate = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    let programs = all_programs(&path);
    let dir = std::env::temp_dir().join(format!("bench_dvb.{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1)
    }
    let mut results = Vec::new();
    for n in 0..runs {
        let fifo = dir.join(format!("dvr{n}"));
        let r = run(&path, &fifo, &programs, rate, Duration::from_secs_f64(secs));
        let _ = std::fs::remove_file(&fifo);
        println!(
            "run {n}: programs={} in_bytes={} in_mbit_s={:.2} ring_bytes={} entry_points={} wall={:.2}s reader_cpu={:.2}% process_cpu={:.2}%",
            programs.len(),
            r.in_bytes,
            r.in_bytes as f64 * 8.0 / 1e6 / r.wall,
            r.ring_bytes,
            r.entry_points,
            r.wall,
            100.0 * r.thread_cpu / r.wall,
            100.0 * r.process_cpu / r.wall
        );
        results.push(r);
    }
    let _ = std::fs::remove_dir(&dir);
    let med = |f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "RESULT programs={} rate={} runs={runs} secs={secs} reader_cpu_pct={:.2} process_cpu_pct={:.2} in_mbit_s={:.2}",
        programs.len(),
        rate,
        med(&|r| 100.0 * r.thread_cpu / r.wall),
        med(&|r| 100.0 * r.process_cpu / r.wall),
        med(&|r| r.in_bytes as f64 * 8.0 / 1e6 / r.wall),
    );
}

/// Every program of the first PAT in the first 32 MB of the file.
fn all_programs(path: &Path) -> Vec<u16> {
    let mut f = File::open(path).unwrap_or_else(|e| {
        eprintln!("{}: {e}", path.display());
        std::process::exit(1)
    });
    let mut r = Remux::new();
    let mut block = vec![0u8; BLOCK];
    for _ in 0..(32 << 20) / BLOCK {
        let n = f.read(&mut block).unwrap_or(0);
        if n == 0 {
            break;
        }
        r.push(&block[..n - n % PACKET_SIZE]);
        if let Some(pat) = r.pat() {
            let v: Vec<u16> = pat.programs().map(|p| p.program_number).collect();
            if !v.is_empty() {
                return v;
            }
        }
    }
    eprintln!("{}: no PAT in the first 32 MB", path.display());
    std::process::exit(1)
}

/// Plays `file` into `fifo` at `rate` bit/s for `dur`, looping at its end.
fn writer(file: PathBuf, fifo: PathBuf, rate: u64, dur: Duration, done: Arc<AtomicBool>) {
    let r = (|| -> std::io::Result<()> {
        let mut inp = File::open(&file)?;
        // Blocks until the reader has the FIFO open (it opens first).
        let mut out = std::fs::OpenOptions::new().write(true).open(&fifo)?;
        let mut block = vec![0u8; WBLOCK];
        let t0 = Instant::now();
        let mut sent = 0u64;
        while t0.elapsed() < dur {
            let mut n = inp.read(&mut block)?;
            if n < PACKET_SIZE {
                inp.seek(SeekFrom::Start(0))?;
                n = inp.read(&mut block)?;
            }
            n -= n % PACKET_SIZE;
            out.write_all(&block[..n])?;
            sent += n as u64;
            // Paced: sleep until this byte is due.
            let due = Duration::from_secs_f64(sent as f64 * 8.0 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("writer: {e}");
    }
    done.store(true, Ordering::Release);
}

/// One channel's output stage, as the runner's `Output`.
struct Chan {
    idx: usize,
    gate: Option<EntryPointGate>,
    writer: ChunkWriter,
}

fn run(file: &Path, fifo: &Path, programs: &[u16], rate: u64, dur: Duration) -> Run {
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        eprintln!(
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        std::process::exit(1)
    }
    // The reader opens first (non-blocking, as the dvr is opened), so the
    // writer's blocking open returns at once.
    let mut dvr = Dvr::open_path(fifo, "fifo").unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let done = Arc::new(AtomicBool::new(false));
    let w = {
        let (file, fifo, done) = (file.to_path_buf(), fifo.to_path_buf(), done.clone());
        std::thread::spawn(move || writer(file, fifo, rate, dur, done))
    };
    let mut resync = Resync::new();
    let mut remux = Remux::new();
    let mut chans: Vec<Chan> = programs
        .iter()
        .map(|&p| Chan {
            idx: remux.add_program(p),
            gate: None,
            writer: Ring::new(RingConfig::default()).writer(),
        })
        .collect();
    let flush = Duration::from_millis(20);
    let mut raw = vec![0u8; BLOCK];
    let mut buf = Vec::with_capacity(2 * BLOCK);
    let mut out = Vec::with_capacity(2 * BLOCK);
    let mut in_bytes = 0u64;
    let cpu0 = cpu_secs(libc::RUSAGE_THREAD);
    let pcpu0 = cpu_secs(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    loop {
        let n = match dvr.read_timeout(&mut raw, Duration::from_millis(20)) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("{e}");
                break;
            }
        };
        if n == 0 {
            // EOF once the writer has closed its end.
            if done.load(Ordering::Acquire) {
                break;
            }
            continue;
        }
        in_bytes += n as u64;
        buf.clear();
        resync.push(&raw[..n], &mut buf);
        remux.push(&buf);
        let now = Instant::now();
        for c in chans.iter_mut() {
            let p = remux.program_mut(c.idx);
            p.take_output(&mut out);
            if p.psi_changed {
                p.psi_changed = false;
                c.writer.ring().set_psi(p.psi_packets());
            }
            if c.gate.is_none() {
                if let Some((pid, codec)) = p.video {
                    c.gate = Some(EntryPointGate::new(codec, pid));
                }
            }
            if !out.is_empty() {
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
            c.writer.flush_if_older(now, flush);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let thread_cpu = cpu_secs(libc::RUSAGE_THREAD) - cpu0;
    let process_cpu = cpu_secs(libc::RUSAGE_SELF) - pcpu0;
    let _ = w.join();
    for c in chans.iter_mut() {
        c.writer.flush();
    }
    Run {
        in_bytes,
        ring_bytes: chans.iter().map(|c| c.writer.ring().total_bytes()).sum(),
        entry_points: chans
            .iter()
            .map(|c| {
                c.gate
                    .as_ref()
                    .map(|g| g.detector.stats.entry_points)
                    .unwrap_or(0)
            })
            .sum(),
        wall,
        thread_cpu,
        process_cpu,
    }
}
