//! Shared helpers of the end-to-end tests: run the real `capbox` binary
//! (`capbox serve` with a temporary config on 127.0.0.1:0), talk HTTP to it
//! over plain sockets, look at what it sends with our own TS walker and with
//! ffprobe/ffmpeg. Every server is killed (and its temp dir removed) on drop.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const TS: usize = 188;
pub const BIN: &str = env!("CARGO_BIN_EXE_capbox");

pub fn sample_mux() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts")
}

// ---------------------------------------------------------------- temp dirs

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "capbox-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------ configs

/// `[server]` for tests: a free port on loopback.
pub fn server_toml() -> String {
    "[server]\nlisten = \"127.0.0.1:0\"\n\n".to_string()
}

/// One `[[channel]]` with one file source. `extra` lines go in the channel
/// table (tvg_name = "...", group = "...").
pub fn channel_toml(name: &str, file: &Path, program: u16, extra: &[&str]) -> String {
    let mut s = format!("[[channel]]\nname = \"{name}\"\n");
    for e in extra {
        s += e;
        s += "\n";
    }
    s += &format!(
        "\n[[channel.source]]\nfile = \"{}\"\nprogram = {program}\nloop = true\n\n",
        file.display()
    );
    s
}

/// The three demo channels on samples/mux.ts.
pub fn demo_toml() -> String {
    let m = sample_mux();
    server_toml()
        + &channel_toml(
            "news",
            &m,
            1,
            &[
                "tvg_id = \"News.demo\"",
                "tvg_name = \"Demo News\"",
                "group = \"News\"",
            ],
        )
        + &channel_toml(
            "sport",
            &m,
            2,
            &["tvg_name = \"Demo Sport\"", "group = \"Sport\""],
        )
        + &channel_toml(
            "music",
            &m,
            3,
            &["tvg_name = \"Demo Music\"", "group = \"Music\""],
        )
}

// ------------------------------------------------------------------ server

/// A running `capbox serve`, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub config: PathBuf,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Write `config` as `<tmp>/capbox.toml` and start `capbox serve` on it.
    pub fn start(tag: &str, config: &str) -> Server {
        let dir = TempDir::new(tag);
        let cfg = dir.join("capbox.toml");
        std::fs::write(&cfg, config).unwrap();
        Self::start_in(dir, cfg)
    }

    pub fn start_in(dir: TempDir, cfg: PathBuf) -> Server {
        Self::start_in_env(dir, cfg, &[])
    }

    /// As `start_in`, with extra environment variables for the child
    /// (e.g. LD_PRELOAD of a fault-injecting shim).
    pub fn start_in_env(dir: TempDir, cfg: PathBuf, env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        Self::spawn(cmd, dir, cfg)
    }

    /// As `start_in`, run through `wrapper` (e.g. `["ip", "netns", "exec",
    /// "ns1"]`: the wrapper must exec capbox, so that killing the child
    /// kills capbox).
    pub fn start_wrapped(dir: TempDir, cfg: PathBuf, wrapper: &[&str]) -> Server {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(BIN);
        Self::spawn(cmd, dir, cfg)
    }

    fn spawn(mut cmd: Command, dir: TempDir, cfg: PathBuf) -> Server {
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn capbox serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = parse_listening(&line) {
                    let _ = tx.send(a);
                }
                l2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "capbox serve never logged `listening on http://IP:PORT`; stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child,
            addr,
            dir,
            config: cfg,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The last `n` lines of stderr, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Still running (not exited/crashed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    pub fn metrics(&self) -> Vec<Sample> {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.head);
        parse_metrics(&r.text()).unwrap_or_else(|e| panic!("/metrics does not parse: {e}"))
    }

    pub fn status(&self) -> serde_json::Value {
        let r = self.get("/status");
        assert_eq!(r.status, 200, "/status: {}", r.head);
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("/status is not JSON: {e}: {}", r.text()))
    }

    /// Wait until `capbox_channel_up{channel=c} == 1` for each channel.
    pub fn wait_up(&self, channels: &[&str]) {
        let mut last = Vec::new();
        let ok = wait_until(Duration::from_secs(20), || {
            last = self.metrics();
            channels
                .iter()
                .all(|c| metric(&last, "capbox_channel_up", c) == Some(1.0))
        });
        assert!(
            ok,
            "channels {channels:?} not up after 20 s; metrics:\n{}\nlog:\n{}",
            fmt_samples(&last),
            self.log_text()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let i = line.find("listening on http://")?;
    let rest = &line[i + "listening on http://".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Poll `f` every 100 ms until true or `t` passes; returns whether it held.
pub fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > t {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run `capbox <args>` to completion (killed after `timeout`); returns
/// (exit code or None if killed, stdout + stderr).
pub fn run_capbox(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capbox");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = to.join().unwrap() + &te.join().unwrap();
    (code, text)
}

// -------------------------------------------------------------------- HTTP

pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to capbox");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read a response head; returns (status, head, body bytes already read).
pub fn read_head(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("bad status line: {head:?}"));
            return (status, head, buf[i + 4..].to_vec());
        }
        let n = s.read(&mut b).expect("read response head");
        assert!(
            n > 0,
            "EOF before end of head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&b[..n]);
    }
}

/// Send a raw request; read the head and the whole body (Content-Length, or
/// until EOF).
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    let (status, head, mut body) = read_head(&mut s);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let head_only = raw.starts_with("HEAD ");
    let mut b = [0u8; 65536];
    loop {
        if head_only || len.is_some_and(|n| body.len() >= n) {
            break;
        }
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&b[..n]),
            Err(e) => panic!("reading body of {raw:?}: {e}"),
        }
    }
    Response { status, head, body }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// Open `/stream/<ch>` (path may carry a query); returns the socket and any
/// body bytes already read. Panics unless 200.
pub fn open_stream(addr: SocketAddr, path: &str, extra_headers: &str) -> (TcpStream, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}\r\n").as_bytes())
        .unwrap();
    let (status, head, body) = read_head(&mut s);
    assert_eq!(status, 200, "GET {path}: {head}");
    (s, body)
}

/// The first `n` bytes of a stream (timeout per read 10 s).
pub fn fetch_bytes(addr: SocketAddr, path: &str, n: usize) -> Vec<u8> {
    let (mut s, mut have) = open_stream(addr, path, "");
    let mut b = vec![0u8; 65536];
    while have.len() < n {
        let k = s
            .read(&mut b)
            .unwrap_or_else(|e| panic!("{path}: read after {} bytes: {e}", have.len()));
        assert!(k > 0, "{path}: EOF after {} of {n} bytes", have.len());
        have.extend_from_slice(&b[..k]);
    }
    have.truncate(n);
    have
}

/// Read a stream for `d` of wall time; whole packets only.
pub fn capture(addr: SocketAddr, path: &str, d: Duration) -> Vec<u8> {
    let (mut s, mut have) = open_stream(addr, path, "");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = Instant::now();
    let mut b = vec![0u8; 65536];
    while start.elapsed() < d {
        match s.read(&mut b) {
            Ok(0) => panic!("{path}: EOF after {} bytes", have.len()),
            Ok(k) => have.extend_from_slice(&b[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
    have.truncate(have.len() / TS * TS);
    have
}

/// Capture several channels at once (one thread each).
pub fn capture_all(addr: SocketAddr, channels: &[&str], d: Duration) -> Vec<Vec<u8>> {
    let hs: Vec<_> = channels
        .iter()
        .map(|c| {
            let path = format!("/stream/{c}");
            std::thread::spawn(move || capture(addr, &path, d))
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

// --------------------------------------------------------------- metrics

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Prometheus text format: every non-comment, non-empty line must be
/// `name{k="v",...} value` or `name value` (optional timestamp).
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_end();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        let name_end = l
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| bad("no value"))?;
        let name = &l[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("bad metric name"));
        }
        let mut rest = &l[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                if let Some(r2) = r.strip_prefix('}') {
                    rest = r2;
                    break;
                }
                let eq = r.find('=').ok_or_else(|| bad("label without ="))?;
                let k = r[..eq].trim_start_matches(',').trim();
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(bad("bad label name"));
                }
                r = r[eq + 1..]
                    .strip_prefix('"')
                    .ok_or_else(|| bad("label value not quoted"))?;
                let mut v = String::new();
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => v.push('\n'),
                            Some((_, c)) => v.push(c),
                            None => return Err(bad("dangling escape")),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => v.push(c),
                        None => return Err(bad("unterminated label value")),
                    }
                };
                labels.insert(k.to_string(), v);
                r = &r[end + 1..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
        }
        let mut parts = rest.split_whitespace();
        let v = parts.next().ok_or_else(|| bad("no value"))?;
        if !rest.starts_with(' ') {
            return Err(bad("no space before value"));
        }
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v.parse().map_err(|_| bad("value is not a number"))?,
        };
        if let Some(ts) = parts.next() {
            ts.parse::<i64>().map_err(|_| bad("bad timestamp"))?;
        }
        if parts.next().is_some() {
            return Err(bad("trailing fields"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// Value of `name{channel="ch"}` (first match).
pub fn metric(s: &[Sample], name: &str, channel: &str) -> Option<f64> {
    s.iter()
        .find(|m| m.name == name && m.labels.get("channel").map(String::as_str) == Some(channel))
        .map(|m| m.value)
}

pub fn fmt_samples(s: &[Sample]) -> String {
    s.iter()
        .map(|m| format!("{}{:?} {}", m.name, m.labels, m.value))
        .collect::<Vec<_>>()
        .join("\n")
}

// --------------------------------------------------------------- TS walker
// Our own minimal reading of ISO/IEC 13818-1, independent of capbox::ts.

pub fn packets(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.chunks_exact(TS).enumerate().map(|(i, p)| {
        assert_eq!(p[0], 0x47, "no sync byte at packet {i}");
        p
    })
}

pub fn pid(p: &[u8]) -> u16 {
    ((p[1] as u16 & 0x1F) << 8) | p[2] as u16
}
pub fn pusi(p: &[u8]) -> bool {
    p[1] & 0x40 != 0
}
pub fn cc(p: &[u8]) -> u8 {
    p[3] & 0x0F
}
pub fn has_payload(p: &[u8]) -> bool {
    p[3] & 0x10 != 0
}
pub fn has_af(p: &[u8]) -> bool {
    p[3] & 0x20 != 0
}
pub fn discontinuity(p: &[u8]) -> bool {
    has_af(p) && p[4] > 0 && p[5] & 0x80 != 0
}
pub fn payload(p: &[u8]) -> &[u8] {
    if !has_payload(p) {
        return &[];
    }
    let off = if has_af(p) { 5 + p[4] as usize } else { 4 };
    if off >= TS {
        &[]
    } else {
        &p[off..]
    }
}
pub fn pcr(p: &[u8]) -> Option<u64> {
    if has_af(p) && p[4] >= 7 && p[5] & 0x10 != 0 {
        let b = &p[6..12];
        let base = ((b[0] as u64) << 25)
            | ((b[1] as u64) << 17)
            | ((b[2] as u64) << 9)
            | ((b[3] as u64) << 1)
            | (b[4] as u64 >> 7);
        let ext = (((b[4] & 1) as u64) << 8) | b[5] as u64;
        Some(base * 300 + ext)
    } else {
        None
    }
}

/// The section starting in a PUSI packet (single-packet sections only).
pub fn section_in(p: &[u8]) -> Option<&[u8]> {
    let pl = payload(p);
    let ptr = *pl.first()? as usize;
    let s = pl.get(1 + ptr..)?;
    let len = 3 + ((((*s.get(1)? as usize) & 0x0F) << 8) | *s.get(2)? as usize);
    s.get(..len)
}

/// Programs of the first PAT section: (program_number, pmt_pid).
pub fn first_pat(b: &[u8]) -> Option<Vec<(u16, u16)>> {
    let p = packets(b).find(|p| pid(p) == 0 && pusi(p))?;
    let s = section_in(p)?;
    let body = &s[8..s.len() - 4];
    Some(
        body.chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u16::from_be_bytes([e[2] & 0x1F, e[3]]),
                )
            })
            .collect(),
    )
}

/// ES entries of the first PMT section on `pmt_pid`: (stream_type, pid).
pub fn first_pmt(b: &[u8], pmt_pid: u16) -> Option<(u16, Vec<(u8, u16)>)> {
    let p = packets(b).find(|p| pid(p) == pmt_pid && pusi(p))?;
    let s = section_in(p)?;
    let pcr_pid = u16::from_be_bytes([s[8] & 0x1F, s[9]]);
    let pil = (((s[10] & 0x0F) as usize) << 8) | s[11] as usize;
    let mut es = &s[12 + pil..s.len() - 4];
    let mut out = Vec::new();
    while es.len() >= 5 {
        let l = (((es[3] & 0x0F) as usize) << 8) | es[4] as usize;
        out.push((es[0], u16::from_be_bytes([es[1] & 0x1F, es[2]])));
        es = &es[(5 + l).min(es.len())..];
    }
    Some((pcr_pid, out))
}

/// DTS (else PTS) of a PES starting in this PUSI packet, 90 kHz.
pub fn pes_dts(p: &[u8]) -> Option<u64> {
    let pl = payload(p);
    if pl.len() < 19 || pl[..3] != [0, 0, 1] {
        return None;
    }
    let flags = pl[7] >> 6;
    let ts = |b: &[u8]| {
        (((b[0] as u64 >> 1) & 7) << 30)
            | ((b[1] as u64) << 22)
            | ((b[2] as u64 >> 1) << 15)
            | ((b[3] as u64) << 7)
            | (b[4] as u64 >> 1)
    };
    match flags {
        3 => Some(ts(&pl[14..19])),
        2 => Some(ts(&pl[9..14])),
        _ => None,
    }
}

/// Continuity-counter errors on `pids` (ISO/IEC 13818-1 2.4.3.3: +1 per
/// packet with payload, same value without payload, one duplicate allowed,
/// any value after discontinuity_indicator). Checked from each PID's first
/// packet on. When `loop_ok`, an error on a PUSI packet whose DTS stepped
/// back by more than 1 s (the file source restarting) is tolerated and
/// returned in the second list.
pub fn cc_errors(b: &[u8], pids: &[u16], loop_ok: bool) -> (Vec<String>, Vec<String>) {
    let mut last: BTreeMap<u16, (u8, bool)> = BTreeMap::new();
    let mut last_dts: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut errs, mut tolerated) = (Vec::new(), Vec::new());
    for (i, p) in packets(b).enumerate() {
        let id = pid(p);
        if !pids.contains(&id) {
            continue;
        }
        let dts = if pusi(p) { pes_dts(p) } else { None };
        let stepped_back = match (dts, last_dts.get(&id)) {
            (Some(d), Some(&l)) => d + 90_000 < l,
            _ => false,
        };
        if let Some(d) = dts {
            last_dts.insert(id, d);
        }
        let c = cc(p);
        if let Some(&(l, dup_used)) = last.get(&id) {
            let ok = if discontinuity(p) {
                true
            } else if !has_payload(p) {
                c == l
            } else if c == (l + 1) & 0x0F {
                true
            } else {
                c == l && !dup_used
            };
            if !ok {
                let m = format!("packet {i} pid 0x{id:x}: cc {c} after {l}");
                if loop_ok && stepped_back {
                    tolerated.push(m);
                } else {
                    errs.push(m);
                }
            }
            let dup = has_payload(p) && c == l && ok && !discontinuity(p);
            last.insert(id, (c, dup));
        } else {
            last.insert(id, (c, false));
        }
    }
    (errs, tolerated)
}

pub fn count_pid(b: &[u8], p: u16) -> usize {
    packets(b).filter(|x| pid(x) == p).count()
}

// ---------------------------------------------------------------- tools

/// Whether `tool -version` runs; prints a loud skip message if not.
/// `promtool check metrics` on `text` (Prometheus's own linter, an
/// independent reader of the exposition format): whether it exited 0 and
/// everything it said (nothing, when the text is clean).
#[allow(dead_code)]
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

pub fn have(tool: &str) -> bool {
    let flag = if matches!(tool, "curl" | "promtool" | "prometheus") {
        "--version"
    } else {
        "-version"
    };
    let ok = Command::new(tool)
        .arg(flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("!!!!!!!! SKIPPED: `{tool}` is not installed (CI must install it) !!!!!!!!");
    }
    ok
}

/// `ffprobe -show_programs -show_streams -of json <input>`.
pub fn ffprobe_json(input: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_programs",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(
        o.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("ffprobe json")
}

/// What `ffmpeg -v error -i <input> -f null -` prints on stderr.
pub fn ffmpeg_errors(input: &Path) -> (bool, String) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Search every string in a JSON value.
pub fn json_has_str(v: &serde_json::Value, pred: &dyn Fn(&str) -> bool) -> bool {
    match v {
        serde_json::Value::String(s) => pred(s),
        serde_json::Value::Array(a) => a.iter().any(|x| json_has_str(x, pred)),
        serde_json::Value::Object(o) => o.iter().any(|(k, x)| pred(k) || json_has_str(x, pred)),
        _ => false,
    }
}

/// The `/status` channel object named `name`.
pub fn status_channel<'a>(st: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    st["channels"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
}

/// Payloads of the given PIDs in a clear stream, per PID: what a
/// descrambled output may carry.
pub fn es_payloads(
    clear: &[u8],
    pids: &[u16],
) -> std::collections::HashMap<u16, std::collections::HashSet<Vec<u8>>> {
    let mut m: std::collections::HashMap<u16, std::collections::HashSet<Vec<u8>>> =
        Default::default();
    for p in packets(clear) {
        if pids.contains(&pid(p)) && has_payload(p) {
            m.entry(pid(p)).or_default().insert(payload(p).to_vec());
        }
    }
    m
}

/// Every packet of `out` clear (scrambling bits 00) and every payload of
/// the PIDs of `clear` one of the clear original's (not garbled); returns
/// how many ES packets were checked.
pub fn assert_descrambled(
    out: &[u8],
    clear: &std::collections::HashMap<u16, std::collections::HashSet<Vec<u8>>>,
) -> usize {
    let mut checked = 0;
    for (i, p) in packets(out).enumerate() {
        assert_eq!(
            p[3] & 0xC0,
            0,
            "packet {i} (PID {:#x}) still scrambled",
            pid(p)
        );
        if let Some(set) = clear.get(&pid(p)) {
            if has_payload(p) && !payload(p).is_empty() {
                assert!(
                    set.contains(payload(p)),
                    "packet {i} PID {:#x}: payload not in the clear original (garbled)",
                    pid(p)
                );
                checked += 1;
            }
        }
    }
    checked
}
