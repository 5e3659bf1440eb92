//! From the operator's own hands: reloads. A hundred SIGHUP-style reloads,
//! each removing the channels the previous one added (with clients
//! attached) and adding new ones, on a shared mux and on muxes whose
//! thread starts and stops with them. Promised:
//! - every client of a removed channel gets EOF (the data, then the
//!   connection closed), within a few seconds, never a hang;
//! - the heap is flat: a removed channel's ring, runner output and clients
//!   are freed;
//! - a reload that changes `write_timeout_ms` or `max_clients` applies it
//!   and says so in one log line.
//!
//! Why in-process and not RSS of `capbox serve`: RSS moves with the
//! allocator's caching and the rings filling up, by more than the leak
//! looked for; live heap bytes counted by a `#[global_allocator]` do not.
//! The allocator counts for the whole hostile binary, so the measuring test
//! runs alone in a child process (this binary again, `--exact` on the
//! ignored `churn_in_this_process`): nothing else allocates there.

use crate::e2e_common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Live heap bytes of this process (allocated minus freed).
static LIVE: AtomicI64 = AtomicI64::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; only
// a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Relaxed);
        // SAFETY: `p` was allocated by `System` with `l` (we forward all).
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Relaxed);
        // SAFETY: `p` was allocated by `System` with `l`; caller's contract.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Relaxed)
}

/// Log lines that matter here ("reload: …"), kept bounded so the log does
/// not grow the heap being measured.
static RELOAD_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        let line = r.args().to_string();
        if line.starts_with("reload: server") || line.starts_with("reload: [buffers]") {
            let mut l = RELOAD_LOG.lock().unwrap();
            if l.len() < 64 {
                l.push(line);
            }
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

const RELOADS: usize = 100;
const WARM_UP: usize = 10;

/// How one client's stream ended.
#[derive(Debug, Clone)]
struct Ended {
    channel: String,
    bytes: usize,
    /// "EOF", or the error (a read timeout is a hang).
    how: String,
    at: Instant,
}

/// A client of `/stream/<channel>`: reads until the connection ends. A
/// live channel sends every few tens of ms, so 8 s without a byte is a
/// hang (reported as such once the figures are printed).
fn client(addr: SocketAddr, channel: String, out: Arc<Mutex<Vec<Ended>>>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s.write_all(format!("GET /stream/{channel} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut b = vec![0u8; 16384];
    let mut bytes = 0usize;
    let how = loop {
        match s.read(&mut b) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => bytes += n,
            Err(e) => break e.to_string(),
        }
    };
    out.lock().unwrap().push(Ended {
        channel,
        bytes,
        how,
        at: Instant::now(),
    });
}

fn config(dir: &Path, churn: Option<usize>, server_extra: &str) -> capbox::config::Config {
    let mux = sample_mux();
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\
         [buffers]\nring_bytes = 1048576\nchunk_bytes = 16384\n\n"
    );
    text += &channel_toml("keep", &mux, 1, &[]);
    if let Some(i) = churn {
        // One on the shared mux (its runner stays), one on a mux of its
        // own (its runner starts now and stops at the next reload).
        text += &channel_toml(&format!("s{i}"), &mux, 1 + (i % 3) as u16, &[]);
        let own = dir.join(format!("own{}.ts", i % 2));
        text += &channel_toml(&format!("f{i}"), &own, 2, &[]);
    }
    capbox::config::parse(&text, "churn.toml", dir)
        .unwrap_or_else(|e| panic!("config: {e:?}\n{text}"))
}

/// Wait until `started` clients have ended.
fn wait_ended(ended: &Arc<Mutex<Vec<Ended>>>, started: usize, t: Duration) -> bool {
    wait_until(t, || ended.lock().unwrap().len() >= started)
}

fn get_status(addr: SocketAddr) -> Response {
    get(addr, "/status")
}

/// The test proper; run alone in its own process by `reload_churn_…` so the
/// counting allocator sees capbox and nothing else.
#[test]
#[ignore = "run in its own process by reload_churn_frees_rings_and_ends_every_client"]
fn churn_in_this_process() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
    let dir = TempDir::new("reload-churn");
    for k in 0..2 {
        std::fs::copy(sample_mux(), dir.join(&format!("own{k}.ts"))).unwrap();
    }
    let mut d = capbox::daemon::Daemon::start(config(dir.path(), None, ""), true).unwrap();
    let addr = d.local_addr().unwrap();
    // Sized up front: the test's own bookkeeping should not look like a
    // leak between the two heap readings.
    let ended = Arc::new(Mutex::new(Vec::<Ended>::with_capacity(RELOADS * 4)));
    let mut threads = Vec::with_capacity(64);
    let mut removed_at: Vec<(String, Instant)> = Vec::with_capacity(RELOADS * 2);
    let keep_held = |d: &capbox::daemon::Daemon| -> i64 {
        d.app
            .channels()
            .iter()
            .find(|c| c.name() == "keep")
            .map(|c| c.ring.snapshot().bytes_held as i64)
            .unwrap_or(0)
    };
    let mut heap = Vec::new();
    let clients_per_channel = 2;
    for i in 0..RELOADS {
        d.reload(config(dir.path(), Some(i), ""));
        let now = Instant::now();
        if i > 0 && i != WARM_UP {
            // The previous reload's channels went with this one.
            removed_at.push((format!("s{}", i - 1), now));
            removed_at.push((format!("f{}", i - 1), now));
        }
        for ch in [format!("s{i}"), format!("f{i}")] {
            for _ in 0..clients_per_channel {
                let (e, ch) = (ended.clone(), ch.clone());
                threads.push(std::thread::spawn(move || client(addr, ch, e)));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        if i + 1 == WARM_UP || i + 1 == RELOADS {
            // Back to the base config: no churn channel, no client.
            d.reload(config(dir.path(), None, ""));
            let now = Instant::now();
            removed_at.push((format!("s{i}"), now));
            removed_at.push((format!("f{i}"), now));
            assert!(
                wait_ended(&ended, threads.len(), Duration::from_secs(20)),
                "clients still connected 20 s after their channels were removed: {} of {} ended",
                ended.lock().unwrap().len(),
                threads.len()
            );
            for t in threads.drain(..) {
                t.join().unwrap();
            }
            // Let the server drop its last references (it looks every
            // 100 ms) and the runners settle.
            std::thread::sleep(Duration::from_millis(1500));
            heap.push((live(), keep_held(&d)));
        }
    }
    let ended = ended.lock().unwrap().clone();
    let total = RELOADS * 2 * clients_per_channel;
    let with_data = ended.iter().filter(|e| e.bytes > 0).count();
    let mut slowest = Duration::ZERO;
    let mut hung = Vec::new();
    for e in &ended {
        let removed = removed_at
            .iter()
            .find(|(c, _)| *c == e.channel)
            .map(|(_, t)| *t)
            .unwrap();
        let after = e.at.saturating_duration_since(removed);
        slowest = slowest.max(after);
        if e.how != "EOF" || after > Duration::from_secs(5) {
            hung.push(format!(
                "{} ({} bytes): {} after {after:?}",
                e.channel, e.bytes, e.how
            ));
        }
    }
    let (h0, k0) = heap[0];
    let (h1, k1) = heap[1];
    // The "keep" channel's ring fills up meanwhile: not a leak.
    let growth = (h1 - h0) - (k1 - k0);
    println!(
        "CHURN {RELOADS} reloads, {total} clients ({with_data} got data), slowest EOF \
         {slowest:?} after removal; live heap after {WARM_UP} reloads {:.2} MiB, after \
         {RELOADS} {:.2} MiB (keep's ring {:.2} → {:.2} MiB): growth {:.1} KiB",
        h0 as f64 / 1048576.0,
        h1 as f64 / 1048576.0,
        k0 as f64 / 1048576.0,
        k1 as f64 / 1048576.0,
        growth as f64 / 1024.0
    );
    assert_eq!(ended.len(), total, "clients that never ended");
    assert!(
        hung.is_empty(),
        "{} clients did not get EOF within 5 s of their channel's removal:\n{}",
        hung.len(),
        hung.join("\n")
    );
    assert!(
        with_data * 2 >= total,
        "only {with_data} of {total} clients got data: the churn did not exercise full rings"
    );
    // 90 reloads × 2 channels × 2 clients: a ring or a client kept per
    // removed channel would be megabytes.
    assert!(
        growth < 512 << 10,
        "live heap grew {:.1} KiB over {} reloads",
        growth as f64 / 1024.0,
        RELOADS - WARM_UP
    );

    // Limits: applied by a reload, said in the log, seen in /status and
    // in what the server does.
    d.reload(config(
        dir.path(),
        None,
        "write_timeout_ms = 2500\nmax_clients = 3\n",
    ));
    let mut st = serde_json::Value::Null;
    let applied = wait_until(Duration::from_secs(5), || {
        let r = get_status(addr);
        st = serde_json::from_slice(&r.body).unwrap_or_default();
        st["http"]["write_timeout_ms"] == 2500 && st["http"]["max_clients"] == 3
    });
    assert!(applied, "limits not applied: /status http = {}", st["http"]);
    let logged = RELOAD_LOG.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("write_timeout_ms 10000 → 2500")
                && l.contains("max_clients 512 → 3")
                && l.contains("applied")),
        "no log line for the new limits: {logged:?}"
    );
    let idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let full = wait_until(Duration::from_secs(5), || get_status(addr).status == 503);
    assert!(full, "a 4th connection was served with max_clients = 3");
    drop(idle);
    d.reload(config(dir.path(), None, ""));
    let back = wait_until(Duration::from_secs(5), || get_status(addr).status == 200);
    assert!(back, "max_clients back to 512 not applied");
    d.stop();
}

#[test]
fn reload_churn_frees_rings_and_ends_every_client() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "reload_churn::churn_in_this_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the churn in a child process");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if let Some(i) = text.find("CHURN") {
        println!("{}", text[i..].lines().next().unwrap_or_default());
    }
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the churn failed:\n{text}"
    );
}
