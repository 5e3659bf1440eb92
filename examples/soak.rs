//! The soak: capbox serving the sample channels for a long time while
//! clients join and leave, read slowly, pause, pipeline, flood headers and
//! connect from outside every allow-list, and the config is reloaded every
//! minute (a channel added and removed with clients on it, `max_clients`
//! and `write_timeout_ms` changed). Prints the process's RSS, live heap (a
//! counting global allocator: this binary runs the daemon in-process),
//! open file descriptors and threads at the start and at every report, and
//! at the end whether they stayed flat after the warm-up.
//!
//! `scripts/soak [--minutes N] [--every M]` builds and runs it. Traffic goes
//! to 127.0.0.1 and 127.0.0.2 only; every loop ends with the run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ------------------------------------------------------------ the heap count

#[path = "common/counting.rs"]
mod counting;
use counting::LIVE;

// ---------------------------------------------------------------- the figures

#[derive(Clone, Copy)]
struct Figures {
    rss_kib: u64,
    heap: u64,
    fds: u64,
    threads: u64,
}

fn figures() -> Figures {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Figures {
        rss_kib: field("VmRSS:"),
        heap: LIVE.load(Ordering::Relaxed) as u64,
        fds: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        threads: field("Threads:"),
    }
}

// ------------------------------------------------------------- the counters

#[derive(Default)]
struct Counts {
    views: AtomicU64,
    view_failures: AtomicU64,
    bytes: AtomicU64,
    slow_sessions: AtomicU64,
    paused_sessions: AtomicU64,
    pipelined_requests: AtomicU64,
    outsider_connections: AtomicU64,
    floods: AtomicU64,
    removed_channel_eofs: AtomicU64,
    removed_channel_hangs: AtomicU64,
    reloads: AtomicU64,
    scrapes: AtomicU64,
    scrape_failures: AtomicU64,
}

struct Ctx {
    addr: SocketAddr,
    stop: AtomicBool,
    counts: Counts,
    /// Channels every config has; "extra" comes and goes.
    stable: Vec<&'static str>,
    /// True while the config with "extra" is loaded.
    extra_on: AtomicBool,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if !self.running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
        self.running()
    }
}

/// A tiny deterministic generator (xorshift), so a run can be repeated.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn open_stream(addr: SocketAddr, channel: &str, rcvbuf: Option<usize>) -> Option<TcpStream> {
    let s = match rcvbuf {
        Some(n) => connect_small(addr, n)?,
        None => TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?,
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut s = s;
    write!(s, "GET /stream/{channel} HTTP/1.1\r\nHost: soak\r\n\r\n").ok()?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    head.starts_with(b"HTTP/1.1 200").then_some(s)
}

/// A client socket with a small receive buffer (set before connect, so the
/// window is small from the handshake on).
fn connect_small(addr: SocketAddr, rcvbuf: usize) -> Option<TcpStream> {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    setsockopt(&fd, sockopt::RcvBuf, &rcvbuf).ok()?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).ok()?;
    Some(TcpStream::from(fd))
}

/// A socket bound to `from` (127.0.0.2: outside the allow-lists).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> Option<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::new(from[0], from[1], from[2], from[3], 0),
    )
    .ok()?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).ok()?;
    Some(TcpStream::from(fd))
}

// -------------------------------------------------------------- the clients

/// Joins a channel, reads at full speed for 2–15 s, leaves.
fn viewer(ctx: Arc<Ctx>, seed: u64) {
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; 64 * 1024];
    while ctx.running() {
        let ch = ctx.stable[rng.below(ctx.stable.len() as u64) as usize];
        let Some(mut s) = open_stream(ctx.addr, ch, None) else {
            ctx.counts.view_failures.fetch_add(1, Ordering::Relaxed);
            ctx.nap(Duration::from_secs(1));
            continue;
        };
        ctx.counts.views.fetch_add(1, Ordering::Relaxed);
        let end = Instant::now() + Duration::from_millis(2000 + rng.below(13000));
        while Instant::now() < end && ctx.running() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    ctx.counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        ctx.nap(Duration::from_millis(rng.below(1000)));
    }
}

/// Reads ~100 KiB/s through a 4 KiB receive buffer for 30 s.
fn slow_reader(ctx: Arc<Ctx>, seed: u64) {
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; 10 * 1024];
    while ctx.running() {
        let ch = ctx.stable[rng.below(ctx.stable.len() as u64) as usize];
        if let Some(mut s) = open_stream(ctx.addr, ch, Some(4096)) {
            ctx.counts.slow_sessions.fetch_add(1, Ordering::Relaxed);
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end && ctx.running() {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        ctx.counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                ctx.nap(Duration::from_millis(100));
            }
        }
        ctx.nap(Duration::from_secs(1));
    }
}

/// Takes the head and stops reading for 40 s: capbox must cut it, on its
/// own, without holding its chunks.
fn paused_client(ctx: Arc<Ctx>) {
    while ctx.running() {
        if let Some(s) = open_stream(ctx.addr, ctx.stable[0], Some(4096)) {
            ctx.counts.paused_sessions.fetch_add(1, Ordering::Relaxed);
            ctx.nap(Duration::from_secs(40));
            drop(s);
        }
        ctx.nap(Duration::from_secs(1));
    }
}

/// Pipelines requests for a route that does not exist, without pause, and
/// reads slowly through a small buffer, 20 s per connection.
fn pipeliner(ctx: Arc<Ctx>) {
    let req = b"GET /no/such/route HTTP/1.1\r\nHost: soak\r\n\r\n".repeat(64);
    let mut buf = vec![0u8; 8 * 1024];
    while ctx.running() {
        if let Some(mut s) = connect_small(ctx.addr, 4096) {
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end && ctx.running() {
                match s.write(&req) {
                    Ok(0) => break,
                    Ok(_) => {
                        ctx.counts
                            .pipelined_requests
                            .fetch_add(64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
                if let Ok(0) = s.read(&mut buf) {
                    break;
                }
                ctx.nap(Duration::from_millis(80));
            }
        }
        ctx.nap(Duration::from_millis(500));
    }
}

/// 100 idle connections from 127.0.0.2 (outside the allow-lists), held 10 s.
fn outsider(ctx: Arc<Ctx>) {
    while ctx.running() {
        let mut held = Vec::new();
        for _ in 0..100 {
            if let Some(s) = connect_from([127, 0, 0, 2], ctx.addr) {
                ctx.counts
                    .outsider_connections
                    .fetch_add(1, Ordering::Relaxed);
                held.push(s);
            }
        }
        ctx.nap(Duration::from_secs(10));
        drop(held);
        ctx.nap(Duration::from_secs(2));
    }
}

/// Header floods and garbage: an endless header, thousands of headers, a
/// request line that never ends, random bytes.
fn flooder(ctx: Arc<Ctx>, seed: u64) {
    let mut rng = Rng(seed);
    while ctx.running() {
        if let Ok(mut s) = TcpStream::connect_timeout(&ctx.addr, Duration::from_secs(5)) {
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let payload: Vec<u8> = match rng.below(4) {
                0 => {
                    let mut v = b"GET /status HTTP/1.1\r\nX-Long: ".to_vec();
                    v.resize(256 * 1024, b'a');
                    v
                }
                1 => {
                    let mut v = b"GET /status HTTP/1.1\r\n".to_vec();
                    for i in 0..5000 {
                        v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                    }
                    v
                }
                2 => {
                    let mut v = b"GET /".to_vec();
                    v.resize(128 * 1024, b'x');
                    v
                }
                _ => (0..16 * 1024).map(|_| rng.next() as u8).collect(),
            };
            let _ = s.write_all(&payload);
            let mut sink = [0u8; 4096];
            let _ = s.read(&mut sink);
            ctx.counts.floods.fetch_add(1, Ordering::Relaxed);
        }
        ctx.nap(Duration::from_millis(300));
    }
}

/// /metrics, /status and the playlist every second.
fn scraper(ctx: Arc<Ctx>) {
    let paths = ["/metrics", "/status", "/playlist.m3u"];
    let mut i = 0;
    while ctx.running() {
        let ok = (|| {
            let mut s = TcpStream::connect_timeout(&ctx.addr, Duration::from_secs(5)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            write!(
                s,
                "GET {} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n",
                paths[i % 3]
            )
            .ok()?;
            let mut v = Vec::new();
            s.read_to_end(&mut v).ok()?;
            v.starts_with(b"HTTP/1.1 200").then_some(())
        })();
        match ok {
            Some(()) => ctx.counts.scrapes.fetch_add(1, Ordering::Relaxed),
            None => ctx.counts.scrape_failures.fetch_add(1, Ordering::Relaxed),
        };
        i += 1;
        ctx.nap(Duration::from_secs(1));
    }
}

/// Watches the channel that reloads add and remove: while it exists it
/// reads it; when a reload removes it, the connection must end (EOF or
/// reset) within 10 s, not hang.
fn extra_watcher(ctx: Arc<Ctx>) {
    let mut buf = vec![0u8; 64 * 1024];
    while ctx.running() {
        if !ctx.extra_on.load(Ordering::Relaxed) {
            ctx.nap(Duration::from_millis(200));
            continue;
        }
        let Some(mut s) = open_stream(ctx.addr, "extra", None) else {
            ctx.nap(Duration::from_millis(200));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut removed_at: Option<Instant> = None;
        loop {
            if !ctx.running() {
                return;
            }
            if removed_at.is_none() && !ctx.extra_on.load(Ordering::Relaxed) {
                removed_at = Some(Instant::now());
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    ctx.counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
            if removed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
                ctx.counts
                    .removed_channel_hangs
                    .fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        if removed_at.is_some() {
            ctx.counts
                .removed_channel_eofs
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

// --------------------------------------------------------------- the config

/// The sample channels run at ≈ 0.4 Mbit/s: a default 8 MiB ring takes
/// ≈ 3 min to fill, so a short run uses 1 MiB rings to be past its
/// warm-up in time.
fn config_text(mux: &Path, extra: bool, generation: u64, ring_bytes: u64) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_clients = {}\nwrite_timeout_ms = {}\n\n\
         [buffers]\nring_bytes = {ring_bytes}\n\n\
         [access]\nstream = [\"127.0.0.1/32\"]\nplaylist = [\"127.0.0.1/32\"]\n\
         metrics = [\"127.0.0.1/32\"]\nstatus = [\"127.0.0.1/32\"]\n\n",
        if generation.is_multiple_of(2) {
            512
        } else {
            480
        },
        if generation.is_multiple_of(2) {
            5000
        } else {
            4000
        },
    );
    let mut chan = |name: &str, program: u16| {
        s += &format!(
            "[[channel]]\nname = \"{name}\"\n\n[[channel.source]]\nfile = \"{}\"\n\
             program = {program}\nloop = true\n\n",
            mux.display()
        );
    };
    chan("news", 1);
    chan("sport", 2);
    chan("music", 3);
    if extra {
        chan("extra", 1);
    }
    s
}

fn parse_config(text: &str, dir: &Path) -> capbox::config::Config {
    capbox::config::parse(text, "soak.toml", dir).unwrap_or_else(|d| {
        for x in d {
            eprintln!("{x}");
        }
        std::process::exit(2)
    })
}

// ------------------------------------------------------------------- main

fn fmt_fig(t: Duration, f: Figures) -> String {
    format!(
        "t={:>5.1} min  rss={:>8.1} MiB  heap={:>8.2} MiB  fds={:>4}  threads={:>3}",
        t.as_secs_f64() / 60.0,
        f.rss_kib as f64 / 1024.0,
        f.heap as f64 / 1048576.0,
        f.fds,
        f.threads
    )
}

fn pct(a: u64, b: u64) -> f64 {
    if a == 0 {
        0.0
    } else {
        (b as f64 - a as f64) / a as f64 * 100.0
    }
}

fn main() {
    let mut minutes = 60.0f64;
    let mut every: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<f64>().ok());
        match (a.as_str(), v) {
            ("--minutes", Some(v)) if v > 0.0 => minutes = v,
            ("--every", Some(v)) if v > 0.0 => every = Some(v),
            _ => {
                eprintln!("usage: soak [--minutes N] [--every M]");
                std::process::exit(2);
            }
        }
    }
    // Reports every 10 min for the hour; six reports for shorter runs.
    let every = every.unwrap_or(if minutes >= 60.0 { 10.0 } else { minutes / 6.0 });
    // Reloads every minute, or ten times in a shorter run.
    let reload_every = Duration::from_secs_f64((minutes * 60.0 / 10.0).min(60.0));
    // Warm-up: the first report interval (rings filled, every client kind
    // has come and gone, the allocator's arenas sized).
    let warmup = Duration::from_secs_f64(every * 60.0);
    let ring_bytes: u64 = if minutes >= 30.0 { 8 << 20 } else { 1 << 20 };

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mux = root.join("samples/mux.ts");
    if !mux.is_file() {
        eprintln!("soak: {} missing", mux.display());
        std::process::exit(2);
    }
    if std::env::var_os("CAPBOX_LOG").is_none() {
        std::env::set_var("CAPBOX_LOG", "warn");
    }
    capbox::cli::log::init();

    let start_fig = figures();
    let t0 = Instant::now();
    let mut generation = 0u64;
    let cfg = parse_config(&config_text(&mux, false, generation, ring_bytes), &root);
    let mut daemon = capbox::daemon::Daemon::start(cfg, true).expect("start the daemon");
    let addr = daemon.local_addr().expect("listening");
    println!(
        "soak: capbox {} on http://{addr}, {minutes} min, report every {every:.1} min, \
         reload every {:.0} s, warm-up {:.1} min, rings of {} KiB",
        env!("CARGO_PKG_VERSION"),
        reload_every.as_secs_f64(),
        warmup.as_secs_f64() / 60.0,
        ring_bytes >> 10
    );
    println!(
        "soak: {}  (before the daemon)",
        fmt_fig(Duration::ZERO, start_fig)
    );

    let ctx = Arc::new(Ctx {
        addr,
        stop: AtomicBool::new(false),
        counts: Counts::default(),
        stable: vec!["news", "sport", "music"],
        extra_on: AtomicBool::new(false),
    });
    let mut threads = Vec::new();
    let spawn = |f: Box<dyn FnOnce() + Send>| std::thread::spawn(f);
    for i in 0..6 {
        let c = ctx.clone();
        threads.push(spawn(Box::new(move || viewer(c, 0x9E37_79B9 + i))));
    }
    for i in 0..2 {
        let c = ctx.clone();
        threads.push(spawn(Box::new(move || slow_reader(c, 0x51ED + i))));
    }
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || paused_client(c))));
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || pipeliner(c))));
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || outsider(c))));
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || flooder(c, 0xF100D))));
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || scraper(c))));
    let c = ctx.clone();
    threads.push(spawn(Box::new(move || extra_watcher(c))));

    let end = t0 + Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = t0 + Duration::from_secs_f64(every * 60.0);
    let mut next_reload = t0 + reload_every;
    let mut reports: Vec<(Duration, Figures)> = vec![(Duration::ZERO, figures())];
    println!(
        "soak: {}  (daemon started)",
        fmt_fig(Duration::ZERO, reports[0].1)
    );
    loop {
        let now = Instant::now();
        if now >= next_reload {
            generation += 1;
            let extra = generation % 2 == 1;
            // The watcher learns of a removal before the reload, so it
            // times the EOF from the moment the channel goes.
            if !extra {
                ctx.extra_on.store(false, Ordering::Relaxed);
            }
            daemon.reload(parse_config(
                &config_text(&mux, extra, generation, ring_bytes),
                &root,
            ));
            if extra {
                ctx.extra_on.store(true, Ordering::Relaxed);
            }
            ctx.counts.reloads.fetch_add(1, Ordering::Relaxed);
            next_reload += reload_every;
        }
        if now >= next_report || now >= end {
            let f = figures();
            let t = now - t0;
            let c = &ctx.counts;
            println!(
                "soak: {}  views={} failed={} slow={} paused={} pipelined={} outsiders={} \
                 floods={} reloads={} removed-eof={} removed-hang={} scrapes={}/{} MB={}",
                fmt_fig(t, f),
                c.views.load(Ordering::Relaxed),
                c.view_failures.load(Ordering::Relaxed),
                c.slow_sessions.load(Ordering::Relaxed),
                c.paused_sessions.load(Ordering::Relaxed),
                c.pipelined_requests.load(Ordering::Relaxed),
                c.outsider_connections.load(Ordering::Relaxed),
                c.floods.load(Ordering::Relaxed),
                c.reloads.load(Ordering::Relaxed),
                c.removed_channel_eofs.load(Ordering::Relaxed),
                c.removed_channel_hangs.load(Ordering::Relaxed),
                c.scrapes.load(Ordering::Relaxed),
                c.scrapes.load(Ordering::Relaxed) + c.scrape_failures.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed) / 1_000_000,
            );
            reports.push((t, f));
            next_report += Duration::from_secs_f64(every * 60.0);
            if now >= end {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ctx.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    daemon.stop();

    // Flat after the warm-up: the first report at or after it against the
    // last one. The smallest and largest after warm-up are shown too.
    let after: Vec<&(Duration, Figures)> = reports.iter().filter(|(t, _)| *t >= warmup).collect();
    let (Some(first), Some(last)) = (after.first(), after.last()) else {
        println!("soak: too short for a verdict (no report after the warm-up)");
        return;
    };
    let span = |get: fn(&Figures) -> u64| {
        let v: Vec<u64> = after.iter().map(|(_, f)| get(f)).collect();
        (*v.iter().min().unwrap(), *v.iter().max().unwrap())
    };
    let (rmin, rmax) = span(|f| f.rss_kib);
    let (hmin, hmax) = span(|f| f.heap);
    let rss = pct(first.1.rss_kib, last.1.rss_kib);
    let heap = pct(first.1.heap, last.1.heap);
    let c = &ctx.counts;
    let hangs = c.removed_channel_hangs.load(Ordering::Relaxed);
    println!(
        "soak: after warm-up ({:.1} → {:.1} min): rss {:+.2} % (min {:.1} max {:.1} MiB), \
         heap {:+.2} % (min {:.2} max {:.2} MiB), fds {} → {}, threads {} → {}; \
         clients of a removed channel left hanging: {hangs}",
        first.0.as_secs_f64() / 60.0,
        last.0.as_secs_f64() / 60.0,
        rss,
        rmin as f64 / 1024.0,
        rmax as f64 / 1024.0,
        heap,
        hmin as f64 / 1048576.0,
        hmax as f64 / 1048576.0,
        first.1.fds,
        last.1.fds,
        first.1.threads,
        last.1.threads,
    );
    let flat = rss.abs() <= 1.0 && heap.abs() <= 1.0 && hangs == 0;
    println!(
        "soak: {} (goal: RSS and heap flat within 1 % after warm-up, no client left hanging)",
        if flat { "FLAT" } else { "NOT FLAT" }
    );
}
