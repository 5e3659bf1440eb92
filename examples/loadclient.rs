//! HTTP load and latency client for scripts/bench (not a test: it asserts
//! nothing, it measures and prints).
//!
//! Load:    loadclient load URL [--clients N] [--secs S] [--slow K]
//!              [--slow-rate F] [--channel-bps B] [--pid PID]
//!   N threads (one per client) each GET URL and count body bytes for S
//!   seconds. K of them (the last K) read at F × B bits/s by sleeping, with a
//!   64 KiB receive buffer so the kernel does not hide how far behind they
//!   are. With --pid, the server's CPU (utime+stime from /proc/PID/stat) over
//!   the run and its VmRSS/VmHWM at the end are reported; VmHWM is reset
//!   at the start (so it is the peak during the load) and its value before
//!   the reset (start-up included) is reported as vmhwm_before_kib.
//!   Output: one `client i kind bytes eof` line per client, then `RESULT` lines.
//!
//! Latency: loadclient latency URL [--n N]
//!   N sequential requests; for each, the time from before connect() to the
//!   first body byte. Prints min/median/max in ms.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: loadclient load URL [--clients N] [--secs S] [--slow K] [--slow-rate F] [--channel-bps B] [--pid PID]\n       loadclient latency URL [--n N]"
    );
    std::process::exit(2)
}

struct Url {
    addr: String,
    path: String,
    host: String,
}

fn parse_url(u: &str) -> Url {
    let rest = u.strip_prefix("http://").unwrap_or_else(|| usage());
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Url {
        addr: hostport.to_string(),
        path: path.to_string(),
        host: hostport.to_string(),
    }
}

/// Connect, send the request, read the head. Returns the stream and the body
/// bytes that came with the head. Err on anything but a 200.
fn open(url: &Url, rcvbuf: Option<i32>) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(&url.addr)?;
    s.set_nodelay(true)?;
    if let Some(sz) = rcvbuf {
        // SAFETY-free alternative does not exist in std; plain setsockopt on
        // our own fd with a valid pointer and length.
        let v: libc::c_int = sz;
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: capbox-loadclient\r\n\r\n",
        url.path, url.host
    )?;
    let mut head = Vec::with_capacity(4096);
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("EOF in response head"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = String::from_utf8_lossy(&head[..head.len().min(12)]).to_string();
            if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
                return Err(std::io::Error::other(format!("status {status:?}")));
            }
            return Ok((s, head[i + 4..].to_vec()));
        }
        if head.len() > 16384 {
            return Err(std::io::Error::other("response head too long"));
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage()),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        usage();
    }
    let url = parse_url(&args[1]);
    match args[0].as_str() {
        "load" => load(url, &args[2..]),
        "latency" => latency(url, arg(&args[2..], "--n", 100usize)),
        _ => usage(),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn latency(url: Url, n: usize) {
    let mut ms = Vec::new();
    let mut errors = 0;
    for _ in 0..n {
        let t0 = Instant::now();
        match open(&url, None) {
            Ok((mut s, body)) => {
                if body.is_empty() {
                    let mut b = [0u8; 1];
                    match s.read(&mut b) {
                        Ok(1) => {}
                        _ => {
                            errors += 1;
                            continue;
                        }
                    }
                }
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            Err(_) => errors += 1,
        }
    }
    let (lo, hi) = (
        ms.iter().cloned().fold(f64::INFINITY, f64::min),
        ms.iter().cloned().fold(0.0, f64::max),
    );
    let med = median(&mut ms);
    println!(
        "RESULT latency n={} errors={errors} min_ms={lo:.2} median_ms={med:.2} max_ms={hi:.2}",
        ms.len()
    );
}

/// utime+stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct ClientResult {
    slow: bool,
    bytes: u64,
    /// The server closed (or reset) the connection before the end.
    eof: bool,
    error: Option<String>,
}

fn load(url: Url, args: &[String]) {
    let clients: usize = arg(args, "--clients", 100);
    let secs: f64 = arg(args, "--secs", 60.0);
    let slow: usize = arg(args, "--slow", 0);
    let slow_rate: f64 = arg(args, "--slow-rate", 0.5);
    let channel_bps: f64 = arg(args, "--channel-bps", 10e6);
    let pid: u32 = arg(args, "--pid", 0);
    let url = Arc::new(url);
    let duration = Duration::from_secs_f64(secs);
    let connected = Arc::new(AtomicU64::new(0));

    // Peak RSS so far (start-up included), then reset the peak so VmHWM at
    // the end is the peak during the load (clear_refs "5", Linux ≥ 4.0).
    let hwm_before = if pid != 0 {
        let h = status_kib(pid, "VmHWM:").unwrap_or(0);
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        h
    } else {
        0
    };
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for i in 0..clients {
        let is_slow = i >= clients - slow.min(clients);
        let url = url.clone();
        let connected = connected.clone();
        let h = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let rate = if is_slow {
                    Some(channel_bps * slow_rate / 8.0)
                } else {
                    None
                };
                client(&url, duration, rate, &connected)
            })
            .unwrap_or_else(|e| {
                eprintln!("spawn: {e}");
                std::process::exit(1)
            });
        handles.push(h);
    }
    let results: Vec<ClientResult> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or(ClientResult {
                slow: false,
                bytes: 0,
                eof: true,
                error: Some("thread panicked".into()),
            })
        })
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(pid);

    for (i, r) in results.iter().enumerate() {
        println!(
            "client {i} {} bytes={} eof={}{}",
            if r.slow { "slow" } else { "fast" },
            r.bytes,
            r.eof,
            r.error
                .as_ref()
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default()
        );
    }
    for (kind, want_slow) in [("fast", false), ("slow", true)] {
        let mut b: Vec<f64> = results
            .iter()
            .filter(|r| r.slow == want_slow)
            .map(|r| r.bytes as f64)
            .collect();
        if b.is_empty() {
            continue;
        }
        let n = b.len();
        let cut = results
            .iter()
            .filter(|r| r.slow == want_slow && r.eof)
            .count();
        let errors = results
            .iter()
            .filter(|r| r.slow == want_slow && r.error.is_some())
            .count();
        let lo = b.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = b.iter().cloned().fold(0.0, f64::max);
        let med = median(&mut b);
        println!(
            "RESULT clients kind={kind} n={n} cut={cut} errors={errors} min_bytes={lo:.0} median_bytes={med:.0} max_bytes={hi:.0} spread_bytes={:.0} median_mbps={:.2}",
            hi - lo,
            med * 8.0 / 1e6 / secs
        );
    }
    if pid != 0 {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => (b - a) as f64 / hz / wall * 100.0,
            _ => f64::NAN,
        };
        println!(
            "RESULT server pid={pid} wall_s={wall:.1} cpu_pct={cpu:.1} vmhwm_before_kib={hwm_before} vmrss_kib={} vmhwm_kib={}",
            status_kib(pid, "VmRSS:").unwrap_or(0),
            status_kib(pid, "VmHWM:").unwrap_or(0)
        );
    }
}

fn client(url: &Url, duration: Duration, rate: Option<f64>, connected: &AtomicU64) -> ClientResult {
    let slow = rate.is_some();
    let mut res = ClientResult {
        slow,
        bytes: 0,
        eof: false,
        error: None,
    };
    let (mut s, body) = match open(url, rate.map(|_| 64 << 10)) {
        Ok(x) => x,
        Err(e) => {
            res.error = Some(e.to_string());
            res.eof = true;
            return res;
        }
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    res.bytes = body.len() as u64;
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = vec![0u8; if slow { 16 << 10 } else { 64 << 10 }];
    loop {
        let el = start.elapsed();
        if el >= duration {
            break;
        }
        if let Some(r) = rate {
            // Stay at or under r bytes/s: sleep until the bytes read so far
            // are due.
            let due = Duration::from_secs_f64(res.bytes as f64 / r);
            if due > el {
                std::thread::sleep((due - el).min(duration - el));
                continue;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => {
                res.eof = true;
                break;
            }
            Ok(n) => res.bytes += n as u64,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => {
                res.eof = true;
                res.error = Some(e.to_string());
                break;
            }
        }
    }
    res
}
