//! Helpers of the failover tests between sites (tests/failover_bad_remote.rs,
//! tests/two_sites.rs): a fake peer site that serves the sample mux at its
//! own bitrate or misbehaves in one of the ways the failover issue lists, a
//! FIFO fed by the test standing in for a tuner, and a viewer that stays
//! connected to a channel and counts what it gets.
//!
//! Everything here is plain std threads over sockets and files the test
//! makes, so a test may create them inside a network namespace (a listener
//! or a socket keeps the namespace it was made in).
#![allow(dead_code)]

use crate::e2e_common::{pcr, pid, sample_mux, TS};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ------------------------------------------------------------- fake peer

/// How a fake peer answers each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `200 video/mp2t`, the sample mux looped at its own bitrate, until
    /// the behaviour changes (then the connection is closed).
    Good,
    /// `200 text/html` and an error page.
    Html,
    /// `200 video/mp2t` and random bytes (none of them 0x47, so the test
    /// does not depend on luck: random bytes lock on a false sync once in
    /// a few hundred 64 KiB bodies).
    Random,
    /// `200`, chunked, a chunk that announces 100 packets, 20 of them, and
    /// the connection closed.
    TruncatedChunked,
    /// `200`, `Content-Length: 2147483648`, 20 packets, closed.
    HugeContentLength,
    /// The request is read and never answered; the connection stays open.
    Silent,
    /// `200 video/mp2t`, 20 packets, then nothing; the connection stays
    /// open (a stalled peer).
    StallAfterHead,
}

impl Behaviour {
    /// A name for channels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Good => "good",
            Behaviour::Html => "html",
            Behaviour::Random => "random",
            Behaviour::TruncatedChunked => "chunked",
            Behaviour::HugeContentLength => "bigcl",
            Behaviour::Silent => "silent",
            Behaviour::StallAfterHead => "stall",
        }
    }

    /// Words the remote source's `last_error` holds for it.
    pub fn error_words(self) -> &'static str {
        match self {
            Behaviour::Good => "",
            Behaviour::Html => "not MPEG-TS: got text/html",
            Behaviour::Random => "not MPEG-TS: no MPEG-TS sync",
            Behaviour::TruncatedChunked => "body truncated: connection closed inside a chunk",
            Behaviour::HugeContentLength => "of 2147483648 bytes (Content-Length)",
            Behaviour::Silent => "no response head within",
            Behaviour::StallAfterHead => "no data for",
        }
    }

    /// The `reason` label of `capbox_remote_failures_total` it counts under.
    pub fn reason(self) -> &'static str {
        match self {
            Behaviour::Good => "ended",
            Behaviour::Html | Behaviour::Random => "not_ts",
            Behaviour::TruncatedChunked | Behaviour::HugeContentLength => "truncated",
            Behaviour::Silent => "bad_response",
            Behaviour::StallAfterHead => "stall",
        }
    }
}

struct PeerState {
    behaviour: Behaviour,
    /// Bumped at each change: connections of an older generation end.
    generation: u64,
}

/// A fake peer site on a listener the test made. Stops on drop.
pub struct FakePeer {
    pub addr: SocketAddr,
    state: Arc<Mutex<PeerState>>,
    stop: Arc<AtomicBool>,
    pub accepts: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FakePeer {
    pub fn start(listener: TcpListener, behaviour: Behaviour) -> FakePeer {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(PeerState {
            behaviour,
            generation: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let accepts = Arc::new(AtomicU64::new(0));
        let mux = Arc::new(std::fs::read(sample_mux()).unwrap());
        let rate = mux_byte_rate(&mux);
        let (st, sp, ac) = (state.clone(), stop.clone(), accepts.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        ac.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                        let (st, sp, mux) = (st.clone(), sp.clone(), mux.clone());
                        std::thread::spawn(move || serve(s, n, &st, &sp, &mux, rate));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakePeer {
            addr,
            state,
            stop,
            accepts,
            thread: Some(thread),
        }
    }

    /// Answer new connections this way; connections in progress end.
    pub fn set(&self, behaviour: Behaviour) {
        let mut g = self.state.lock().unwrap();
        g.behaviour = behaviour;
        g.generation += 1;
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes per second of the sample mux, from the first and last PCR of its
/// first PCR PID.
fn mux_byte_rate(mux: &[u8]) -> f64 {
    let (mut pcr_pid, mut first, mut last) = (None, None, None);
    for p in mux.chunks_exact(TS) {
        if let Some(v) = pcr(p) {
            if *pcr_pid.get_or_insert(pid(p)) == pid(p) {
                first.get_or_insert(v);
                last = Some(v);
            }
        }
    }
    let span = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 27e6,
        _ => 20.0,
    };
    mux.len() as f64 / span.max(1.0)
}

/// One connection: read the request head, then behave.
fn serve(
    mut s: TcpStream,
    n: u64,
    state: &Mutex<PeerState>,
    stop: &AtomicBool,
    mux: &[u8],
    rate: f64,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let (behaviour, generation) = {
        let g = state.lock().unwrap();
        (g.behaviour, g.generation)
    };
    let current =
        || !stop.load(Ordering::Relaxed) && state.lock().unwrap().generation == generation;
    let packets20 = &mux[..20 * TS];
    match behaviour {
        Behaviour::Good => {
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            if s.write_all(ok_head("").as_bytes()).is_err() {
                return;
            }
            let start = Instant::now();
            let mut sent = 0usize;
            let mut pos = 0usize;
            while current() {
                let end = (pos + 50 * TS).min(mux.len());
                if s.write_all(&mux[pos..end]).is_err() {
                    return;
                }
                sent += end - pos;
                pos = if end == mux.len() { 0 } else { end };
                let due = start + Duration::from_secs_f64(sent as f64 / rate);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        }
        Behaviour::Html => {
            let body = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                        <body><h1>Bad Gateway</h1></body></html>\n";
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        Behaviour::Random => {
            if s.write_all(ok_head("").as_bytes()).is_err() {
                return;
            }
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ n;
            let mut buf = vec![0u8; 16 * 1024];
            while current() {
                for b in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = match (x >> 24) as u8 {
                        0x47 => 0x48,
                        v => v,
                    };
                }
                if s.write_all(&buf).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Behaviour::TruncatedChunked => {
            let mut out = ok_head("Transfer-Encoding: chunked\r\n").into_bytes();
            out.extend_from_slice(format!("{:x}\r\n", 100 * TS).as_bytes());
            out.extend_from_slice(packets20);
            let _ = s.write_all(&out);
        }
        Behaviour::HugeContentLength => {
            let mut out = ok_head("Content-Length: 2147483648\r\n").into_bytes();
            out.extend_from_slice(packets20);
            let _ = s.write_all(&out);
        }
        Behaviour::Silent => hold(&mut s, &current),
        Behaviour::StallAfterHead => {
            let mut out = ok_head("").into_bytes();
            out.extend_from_slice(packets20);
            if s.write_all(&out).is_ok() {
                hold(&mut s, &current);
            }
        }
    }
    // Dropping `s` closes the connection.
}

fn ok_head(extra: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n{extra}\r\n")
}

/// Keep the connection open, sending nothing, until the client closes it
/// or the behaviour changes.
fn hold(s: &mut TcpStream, current: &dyn Fn() -> bool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut b = [0u8; 1024];
    while current() {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

// ------------------------------------------------------------------ feed

/// A FIFO fed with the sample mux by a thread, standing in for a tuner:
/// `pause` stops the bytes but keeps the FIFO open (a tuner that stops
/// delivering), `resume` starts them again. A reader that goes away (capbox
/// stopped) is waited for again.
pub struct Feed {
    pub path: PathBuf,
    feeding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    pub fn start(path: &Path) -> Feed {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(st.success(), "mkfifo {}", path.display());
        let feeding = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, s2, p) = (feeding.clone(), stop.clone(), path.to_path_buf());
        let thread = std::thread::spawn(move || {
            let data = std::fs::read(sample_mux()).unwrap();
            // Blocks until a reader opens the FIFO.
            let open = || std::fs::OpenOptions::new().write(true).open(&p);
            let Ok(mut w) = open() else { return };
            let mut pos = 0;
            while !s2.load(Ordering::Relaxed) {
                if !f2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let end = (pos + TS * 50).min(data.len());
                if w.write_all(&data[pos..end]).is_err() {
                    if s2.load(Ordering::Relaxed) {
                        return;
                    }
                    w = match open() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    continue;
                }
                pos = if end == data.len() { 0 } else { end };
            }
        });
        Feed {
            path: path.to_path_buf(),
            feeding,
            stop,
            thread: Some(thread),
        }
    }

    pub fn pause(&self) {
        self.feeding.store(false, Ordering::Relaxed);
    }

    pub fn resume(&self) {
        self.feeding.store(true, Ordering::Relaxed);
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.stop.store(true, Ordering::Relaxed);
        // The writer may block in open() (no reader) or in write() (a full
        // FIFO): a non-blocking reader that drains unblocks either.
        for _ in 0..50 {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                break;
            }
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
            {
                let mut sink = vec![0u8; 1 << 20];
                let _ = f.read(&mut sink);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

// ---------------------------------------------------------------- viewer

/// A client that stays connected to a stream, counts its bytes and keeps
/// the first `keep` of them. Never reconnects: `eof` says whether capbox
/// closed it.
pub struct Viewer {
    total: Arc<AtomicU64>,
    eof: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Viewer {
    /// `sock`: a stream whose response head was read; `first`: the body
    /// bytes read with it.
    pub fn start(mut sock: TcpStream, first: Vec<u8>, keep: usize) -> Viewer {
        let total = Arc::new(AtomicU64::new(first.len() as u64));
        let got = Arc::new(Mutex::new(first));
        let eof = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, g2, e2, s2) = (total.clone(), got.clone(), eof.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = vec![0u8; 65536];
            while !s2.load(Ordering::Relaxed) {
                match sock.read(&mut buf) {
                    Ok(0) => {
                        e2.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(n) => {
                        t2.fetch_add(n as u64, Ordering::Relaxed);
                        let mut g = g2.lock().unwrap();
                        if g.len() + n <= keep {
                            g.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => {
                        e2.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        Viewer {
            total,
            eof,
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// capbox closed the connection (or it broke).
    pub fn eof(&self) -> bool {
        self.eof.load(Ordering::Relaxed)
    }

    /// Bytes received within `d` from now; panics with `context()` unless
    /// at least `min` arrived and the connection is still open.
    pub fn assert_flowing(&self, what: &str, d: Duration, min: u64, context: &dyn Fn() -> String) {
        let before = self.bytes();
        std::thread::sleep(d);
        let got = self.bytes() - before;
        assert!(
            !self.eof(),
            "{what}: the viewer was disconnected\n{}",
            context()
        );
        assert!(
            got >= min,
            "{what}: the viewer got {got} bytes in {d:?} (want ≥ {min})\n{}",
            context()
        );
    }

    /// Stop reading; what was kept, cut to whole packets.
    pub fn finish(mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut g = std::mem::take(&mut *self.got.lock().unwrap());
        g.truncate(g.len() / TS * TS);
        g
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
