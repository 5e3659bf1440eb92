//! Failover figures (issue 11's bars), measured on two capbox daemons in
//! this process, on loopback: site B serves `news` from the sample mux;
//! site A's `news` has a local source fed by this program through a FIFO
//! (a tuner's stand-in, pipe buffer shrunk to one page so a stall is seen
//! as soon as the writer stops) and B's stream as backup. A client reads
//! A's stream the whole time.
//!
//! - **gap, hot**: the feed stops 20 times (fail_after 150 ms); each gap
//!   is the silence on the client's socket between the read before the
//!   first spliced-in packet (the splicer marks it with
//!   discontinuity_indicator) and the read that brings it: the last packet
//!   of the failed source to the first of the backup, as the client sees
//!   it (the read granularity only makes it longer). Also: from the
//!   feed's stop to the backup's first packet, and to its first random
//!   access point on the video PID (the first decodable picture).
//! - **gap, cold**: the same with `standby = "cold"` (B connected only
//!   when needed; each stop waits out the linger so every switch is cold).
//! - **flapping**: the feed drops for 300 ms every 2 s for a minute
//!   (recover_after 5 s): switches counted, then it holds and A comes back.
//! - **memory**: A with two file sources of the same service pinned
//!   alternately, each pin as soon as the last switch is done (rings of
//!   1 MiB, full well before switch 100): live heap (a counting global
//!   allocator) at switch 100 and 1000.
//!
//! `scripts/bench-failover` builds and runs it; nothing here asserts a
//! time, the figures are printed for BENCHMARKS.md.

use capbox::daemon::Daemon;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/counting.rs"]
mod counting;
use counting::LIVE;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start(toml: &str, dir: &Path) -> Daemon {
    let cfg = capbox::config::parse(toml, "bench.toml", dir).unwrap_or_else(|d| {
        for x in d {
            eprintln!("{x}");
        }
        std::process::exit(2)
    });
    Daemon::start(cfg, true).expect("start a daemon")
}

const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nstate_file = \"\"\n\n";

/// (active source, on slate, switches) of A's `news`.
fn state(d: &Daemon) -> (usize, bool, u64) {
    let ch = d
        .app
        .channels()
        .into_iter()
        .find(|c| c.name() == "news")
        .unwrap();
    let st = ch.status();
    let f = st.failover.unwrap_or_default();
    (st.active_source, f.on_slate, f.switches)
}

fn wait(d: &Daemon, t: Duration, f: impl Fn((usize, bool, u64)) -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if f(state(d)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The tuner's stand-in: the sample mux into a FIFO while `feeding`.
struct Feeder {
    feeding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// When the writer last stopped writing.
    stopped_at: Arc<Mutex<Option<Instant>>>,
}

impl Feeder {
    fn start(path: PathBuf) -> Feeder {
        let feeding = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped_at = Arc::new(Mutex::new(None));
        let (f, s, at) = (feeding.clone(), stop.clone(), stopped_at.clone());
        std::thread::spawn(move || {
            let data = std::fs::read(root().join("samples/mux.ts")).unwrap();
            let open = || {
                let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                // One page of pipe: the reader sees a stall at once.
                // SAFETY: fcntl on a valid fd with an integer argument.
                unsafe {
                    libc::fcntl(
                        std::os::fd::AsRawFd::as_raw_fd(&w),
                        libc::F_SETPIPE_SZ,
                        4096,
                    );
                }
                w
            };
            let mut w = open();
            let mut pos = 0;
            let mut was = true;
            while !s.load(Ordering::Relaxed) {
                if !f.load(Ordering::Relaxed) {
                    if was {
                        *at.lock().unwrap() = Some(Instant::now());
                        was = false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                was = true;
                let end = (pos + 188 * 7).min(data.len());
                if w.write_all(&data[pos..end]).is_err() {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    w = open();
                    continue;
                }
                pos = if end == data.len() { 0 } else { end };
            }
        });
        Feeder {
            feeding,
            stop,
            stopped_at,
        }
    }

    fn set(&self, on: bool) {
        self.feeding.store(on, Ordering::Relaxed);
    }

    /// Stop feeding; returns when the writer has stopped.
    fn halt(&self) -> Instant {
        *self.stopped_at.lock().unwrap() = None;
        self.set(false);
        loop {
            if let Some(t) = *self.stopped_at.lock().unwrap() {
                return t;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the client saw: per read, when, and whether it held a packet
/// marked discontinuous (a splice) or a video random access point.
#[derive(Clone, Copy)]
struct ReadEv {
    at: Instant,
    disc: bool,
    rap: bool,
}

struct Client {
    events: Arc<Mutex<Vec<ReadEv>>>,
    bytes: Arc<AtomicU64>,
    eof: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Client {
    /// `record`: keep one event per read (the gap figures); off for the
    /// memory figure, where the list itself would grow the heap.
    fn start(addr: SocketAddr, path: &str, record: bool) -> Client {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let bytes = Arc::new(AtomicU64::new(0));
        let eof = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, by, e2, st) = (events.clone(), bytes.clone(), eof.clone(), stop.clone());
        std::thread::spawn(move || {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut carry: Vec<u8> = Vec::new();
            let mut in_body = false;
            while !st.load(Ordering::Relaxed) {
                let n = match s.read(&mut buf) {
                    Ok(0) => {
                        e2.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let at = Instant::now();
                by.fetch_add(n as u64, Ordering::Relaxed);
                carry.extend_from_slice(&buf[..n]);
                if !in_body {
                    match carry.windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(i) => {
                            carry.drain(..i + 4);
                            in_body = true;
                        }
                        None => continue,
                    }
                }
                let whole = carry.len() / 188 * 188;
                let (mut disc, mut rap) = (false, false);
                for p in carry[..whole].chunks_exact(188) {
                    if p[3] & 0x20 != 0 && p[4] > 0 {
                        disc |= p[5] & 0x80 != 0;
                        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
                        rap |= pid == 0x200 && p[5] & 0x40 != 0;
                    }
                }
                carry.drain(..whole);
                let mut e = ev.lock().unwrap();
                if record && e.len() < 1 << 20 {
                    e.push(ReadEv { at, disc, rap });
                }
            }
        });
        Client {
            events,
            bytes,
            eof,
            stop,
        }
    }

    /// After `t`: (silence before the last spliced read, its time, the
    /// time of the first video RAP from then on).
    fn splice_after(&self, t: Instant) -> Option<(Duration, Instant, Option<Instant>)> {
        let e = self.events.lock().unwrap();
        // The last splice since `t`: the cut to the backup (a cold one may
        // have been preceded by the slate's).
        let i = e.iter().rposition(|x| x.at > t && x.disc)?;
        let prev = if i > 0 { e[i - 1].at } else { e[i].at };
        let rap = e[i..].iter().find(|x| x.rap).map(|x| x.at);
        Some((e[i].at - prev, e[i].at, rap))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let med = v[v.len() / 2];
    format!(
        "median {med:.0} ms, min {:.0}, max {:.0} (n = {})",
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

fn site_a(
    dir: &Path,
    fifo: &Path,
    b: SocketAddr,
    extra: &str,
    standby: &str,
    recover_ms: u64,
) -> Daemon {
    let toml = format!(
        "{SERVER}[[channel]]\nname = \"news\"\nfail_after_ms = 150\nrecover_after_ms = {recover_ms}\n{extra}\n\
         [[channel.source]]\nfile = \"{}\"\nprogram = 1\nloop = false\n\n\
         [[channel.source]]\nurl = \"http://{b}/stream/news\"\nstandby = \"{standby}\"\n",
        fifo.display()
    );
    start(&toml, dir)
}

/// `cycles` stalls of the local feed: A moves to B and back each time.
fn gaps(label: &str, dir: &Path, b: SocketAddr, standby: &str, cycles: usize, rest: Duration) {
    let fifo = dir.join(format!("tuner-{standby}.ts"));
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let feeder = Feeder::start(fifo.clone());
    let a = site_a(dir, &fifo, b, "", standby, 1000);
    if !wait(&a, Duration::from_secs(20), |s| s.0 == 0 && !s.1) {
        println!("{label}: A never came up on its local source");
        return;
    }
    std::thread::sleep(Duration::from_secs(4));
    let client = Client::start(a.local_addr().unwrap(), "/stream/news", true);
    std::thread::sleep(Duration::from_secs(2));
    let (mut gap, mut to_first, mut to_rap) = (Vec::new(), Vec::new(), Vec::new());
    let mut slate_visits = 0;
    for i in 0..cycles {
        let switches = state(&a).2;
        let t_stop = feeder.halt();
        let moved = wait(&a, Duration::from_secs(15), |s| {
            s.2 > switches && (s.0 == 1 || s.1)
        });
        if !moved {
            println!("{label}: cycle {i}: A did not switch within 15 s");
            break;
        }
        // Wait for the backup on air (a cold one may pass by the slate).
        if !wait(&a, Duration::from_secs(15), |s| s.0 == 1 && !s.1) {
            println!("{label}: cycle {i}: B never on air");
            break;
        }
        if state(&a).2 > switches + 1 {
            slate_visits += 1;
        }
        std::thread::sleep(Duration::from_millis(600));
        match client.splice_after(t_stop) {
            Some((g, first, rap)) => {
                gap.push(ms(g));
                to_first.push(ms(first - t_stop));
                if let Some(r) = rap {
                    to_rap.push(ms(r - t_stop));
                }
            }
            None => println!("{label}: cycle {i}: no spliced packet seen by the client"),
        }
        feeder.set(true);
        let back = state(&a).2;
        if !wait(&a, Duration::from_secs(15), |s| s.0 == 0 && s.2 > back) {
            println!("{label}: cycle {i}: A did not come back to local");
            break;
        }
        std::thread::sleep(rest);
    }
    println!(
        "{label}: silence on the client's socket at the switch: {}",
        stats(&mut gap)
    );
    println!(
        "{label}: feed stopped → first backup packet at the client: {}",
        stats(&mut to_first)
    );
    println!(
        "{label}: feed stopped → first video random access point (first decodable picture): {}",
        stats(&mut to_rap)
    );
    println!(
        "{label}: client reconnects: {} (EOF seen: {}), {} MB received, switches via the slate: {slate_visits}",
        0,
        client.eof.load(Ordering::Relaxed),
        client.bytes.load(Ordering::Relaxed) / 1_000_000
    );
    drop(client);
    a.stop();
}

fn flapping(dir: &Path, b: SocketAddr) {
    let fifo = dir.join("tuner-flap.ts");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let feeder = Feeder::start(fifo.clone());
    let a = site_a(dir, &fifo, b, "", "hot", 5000);
    if !wait(&a, Duration::from_secs(20), |s| s.0 == 0 && !s.1) {
        println!("flapping: A never came up");
        return;
    }
    std::thread::sleep(Duration::from_secs(4));
    let before = state(&a).2;
    let t0 = Instant::now();
    let mut away = 0u64;
    let mut back = 0u64;
    let mut last = state(&a);
    while t0.elapsed() < Duration::from_secs(60) {
        feeder.set(false);
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(5));
        }
        feeder.set(true);
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1700) {
            let s = state(&a);
            if s.2 != last.2 {
                if s.0 == 0 {
                    back += 1;
                } else {
                    away += 1;
                }
            }
            last = s;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let during = state(&a).2 - before;
    let t = Instant::now();
    let came_back = wait(&a, Duration::from_secs(15), |s| {
        s.0 == 0 && s.2 > before + during
    });
    println!(
        "flapping (300 ms drop every 2 s for 60 s, fail_after 150 ms, recover_after 5 s): \
         {during} switch(es) during the minute ({away} away, {back} back); stable again → back to local {}",
        if came_back {
            format!("after {:.1} s", t.elapsed().as_secs_f64())
        } else {
            "NOT within 15 s".into()
        }
    );
    a.stop();
}

fn memory(dir: &Path) {
    let mux = root().join("samples/mux.ts");
    // The same service from two inputs (a tuner and the other site).
    let copy = dir.join("site-b.ts");
    std::fs::copy(&mux, &copy).unwrap();
    let toml = format!(
        "{SERVER}[buffers]\nring_bytes = 1048576\n\n\
         [[channel]]\nname = \"news\"\nrecover_after_ms = 0\n\n\
         [[channel.source]]\nfile = \"{m}\"\nprogram = 1\n\n\
         [[channel.source]]\nfile = \"{m2}\"\nprogram = 1\n",
        m = mux.display(),
        m2 = copy.display()
    );
    let a = start(&toml, dir);
    if !wait(&a, Duration::from_secs(20), |s| s.0 == 0 && !s.1) {
        println!("memory: A never came up");
        return;
    }
    let ch = a
        .app
        .channels()
        .into_iter()
        .find(|c| c.name() == "news")
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let client = Client::start(a.local_addr().unwrap(), "/stream/news", false);
    let mut at100 = 0usize;
    let t0 = Instant::now();
    while state(&a).2 < 1000 && t0.elapsed() < Duration::from_secs(600) {
        let want = state(&a).2 + 1;
        let _ = ch.pin(Some(1 - state(&a).0.min(1)), None);
        wait(&a, Duration::from_secs(2), |s| s.2 >= want);
        std::thread::sleep(Duration::from_millis(30));
        if at100 == 0 && state(&a).2 >= 100 {
            at100 = LIVE.load(Ordering::Relaxed);
        }
    }
    let n = state(&a).2;
    let at1000 = LIVE.load(Ordering::Relaxed);
    println!(
        "memory: live heap at switch 100: {:.2} MiB, at switch {n}: {:.2} MiB ({:+.2} %), {:.0} s, client EOF: {}, {} MB received",
        at100 as f64 / 1048576.0,
        at1000 as f64 / 1048576.0,
        (at1000 as f64 - at100 as f64) / at100.max(1) as f64 * 100.0,
        t0.elapsed().as_secs_f64(),
        client.eof.load(Ordering::Relaxed),
        client.bytes.load(Ordering::Relaxed) / 1_000_000
    );
    drop(client);
    a.stop();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |what: &str| args.is_empty() || args.iter().any(|a| a == what);
    if std::env::var_os("CAPBOX_LOG").is_none() {
        std::env::set_var("CAPBOX_LOG", "error");
    }
    capbox::cli::log::init();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "bench_failover: capbox {} on {cpu}",
        env!("CARGO_PKG_VERSION")
    );
    let dir = std::env::temp_dir().join(format!("capbox-bench-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mux = root().join("samples/mux.ts");
    let b = start(
        &format!(
            "{SERVER}[buffers]\nring_bytes = 1048576\n\n             [[channel]]\nname = \"news\"\n\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\n",
            mux.display()
        ),
        &dir,
    );
    let baddr = b.local_addr().unwrap();
    if !wait(&b, Duration::from_secs(20), |_| true) {
        return;
    }
    std::thread::sleep(Duration::from_secs(2));
    if only("hot") {
        gaps(
            "gap, hot standby (fail_after 150 ms)",
            &dir,
            baddr,
            "hot",
            20,
            Duration::from_millis(500),
        );
    }
    if only("cold") {
        gaps(
            "gap, cold standby (fail_after 150 ms)",
            &dir,
            baddr,
            "cold",
            8,
            capbox::channel::COLD_LINGER + Duration::from_secs(1),
        );
    }
    if only("flapping") {
        flapping(&dir, baddr);
    }
    if only("memory") {
        memory(&dir);
    }
    b.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
