//! The tunnel rig's in-VM program (example `tunnel-guest`, built static;
//! `hw-tests/run-tunnel-vm.sh` boots it): issue 11 item 8, a 10 Mbit/s
//! channel across a 120 ms RTT path with 0.5 % loss.
//!
//! Three network namespaces joined by two veth pairs, the impairment on
//! the path and not in either site's own stack:
//!
//! ```text
//!  site_a (capbox serving)     wan (router)                  root ns (capbox pulling)
//!  a0 10.99.0.1 ──veth── w0 10.99.0.254 │ w1 10.99.1.254 ──veth── b0 10.99.1.2
//!                        netem → A      │ netem → B (the stream's direction)
//! ```
//!
//! Site A plays a ~10 Mbit/s MPEG-TS in real time (PCR-paced file source)
//! as channel `ten`; site B's channel `ten` has one remote source,
//! `http://10.99.0.1:8080/stream/ten`, and a slate. Phases, each with
//! fresh capbox processes (a fresh TCP connection from slow start):
//! `control` (no netem: can this VM push the rate through two capboxes at
//! all?), then `cubic` and `bbr` (netem delay and loss both ways, A's
//! `[server] tcp_congestion` set, `send_buffer_bytes` sized to the path).
//! Per phase, over a window after a warm-up: the stream's rate at A (its
//! channel's output bytes), the rate B's remote source received, its
//! stalls and reconnects, B's switches to the slate, A's clients cut for
//! lagging, and the CPU. One `TUNNEL …` line per phase carries the
//! figures (machine-greppable); PASS/FAIL lines the checks; the exit code
//! is the number of failed checks.
//!
//! Parameters come from the kernel command line (`tunnel.secs=30` …, see
//! `Params`), set by the rig script from its environment.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../suite.rs"]
mod suite;
use suite::Suite;

const A_IP: &str = "10.99.0.1";
const A_URL: &str = "http://10.99.0.1:8080";
const B_URL: &str = "http://127.0.0.1:8081";
const SAMPLE: &str = "/data/ten.ts";
const SLATE: &str = "/data/slate.ts";
/// A phase passes when B receives at least this share of what A serves.
const RATE_MARGIN: f64 = 0.95;

/// Figures asked for on the kernel command line (`tunnel.KEY=VALUE`).
#[derive(Debug, Clone)]
struct Params {
    /// Measured window of the cubic and bbr phases, seconds.
    secs: u64,
    /// Warm-up before a window (slow start, BBR's startup), seconds.
    warmup: u64,
    /// Measured window of the control phase, seconds.
    control_secs: u64,
    /// A's `send_buffer_bytes` in the cubic and bbr phases (0: not set,
    /// the kernel's autotuning).
    sndbuf: usize,
    /// One-way netem delay, ms (RTT = twice it).
    delay_ms: u32,
    /// netem loss each way, percent.
    loss: String,
    /// netem rate each way (tc syntax), or "" for none.
    rate: String,
    /// Phases to run, in order.
    phases: Vec<String>,
    /// Duration of the sample file, seconds (for its rate).
    sample_secs: f64,
    /// Qdisc on site A's interface ("fq", "none").
    sender_qdisc: String,
    /// B's channel fail_after_ms (capbox's default unless set).
    fail_after_ms: u64,
    /// Print ss of A's side every this many seconds of a window (0: mid
    /// and end only).
    ss_every: u64,
}

impl Params {
    fn from_cmdline() -> Params {
        let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let get = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("tunnel.{k}=")))
                .map(str::to_string)
        };
        let num = |k: &str, d: u64| get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        Params {
            secs: num("secs", 30),
            warmup: num("warmup", 5),
            control_secs: num("control", 10),
            sndbuf: num("sndbuf", 600_000) as usize,
            delay_ms: num("delay", 60) as u32,
            loss: get("loss").unwrap_or_else(|| "0.5".into()),
            rate: get("rate").unwrap_or_default(),
            phases: get("phases")
                .unwrap_or_else(|| "control,cubic,bbr".into())
                .split(',')
                .map(str::to_string)
                .collect(),
            sample_secs: get("sample_secs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(12.0),
            sender_qdisc: get("sender_qdisc").unwrap_or_else(|| "none".into()),
            ss_every: num("ss_every", 0),
            fail_after_ms: num("fail_after", capbox::config::DEFAULT_FAIL_AFTER_MS),
        }
    }
}

/// Run a shell command line; its output, or why it failed. iproute2's
/// tools are called by their path (/sbin): busybox's shell runs its own
/// applets first, and busybox's `ip` knows no netns.
fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("`{cmd}` failed ({}): {}", out.status, text.trim()))
    }
}

/// The three namespaces and two veth pairs of the module comment.
fn build_path(p: &Params) -> Result<String, String> {
    let steps = [
        "mkdir -p /run/netns",
        "/sbin/ip link set lo up",
        "/sbin/ip netns add site_a",
        "/sbin/ip netns add wan",
        "/sbin/ip link add b0 type veth peer name w1",
        "/sbin/ip link add a0 type veth peer name w0",
        "/sbin/ip link set a0 netns site_a",
        "/sbin/ip link set w0 netns wan",
        "/sbin/ip link set w1 netns wan",
        "/sbin/ip -n site_a link set lo up",
        "/sbin/ip -n site_a addr add 10.99.0.1/24 dev a0",
        "/sbin/ip -n site_a link set a0 up",
        "/sbin/ip -n site_a route add default via 10.99.0.254",
        "/sbin/ip -n wan link set lo up",
        "/sbin/ip -n wan addr add 10.99.0.254/24 dev w0",
        "/sbin/ip -n wan addr add 10.99.1.254/24 dev w1",
        "/sbin/ip -n wan link set w0 up",
        "/sbin/ip -n wan link set w1 up",
        "/sbin/ip netns exec wan sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'",
        "/sbin/ip addr add 10.99.1.2/24 dev b0",
        "/sbin/ip link set b0 up",
        "/sbin/ip route add 10.99.0.0/24 via 10.99.1.254",
    ];
    for s in steps {
        sh(s)?;
    }
    let mut notes = vec!["senders keep TSO/GSO (a NIC's defaults)".to_string()];
    if p.sender_qdisc != "none" {
        sh(&format!(
            "/sbin/ip netns exec site_a /sbin/tc qdisc replace dev a0 root {}",
            p.sender_qdisc
        ))?;
        notes.push(format!("a0: qdisc {}", p.sender_qdisc));
    }
    Ok(notes.join(", "))
}

/// The impairment on both of the router's egress interfaces, or none:
/// tbf as the root, netem its child. tbf cuts every GSO super-packet
/// (the senders keep TSO/GSO, as on a NIC) into wire-size segments before
/// netem sees them, so loss is per packet (netem alone drops a whole
/// super-packet: one "loss" of up to 45 segments); its rate is the
/// optional rate limit, else far above the stream.
fn set_netem(p: &Params, on: bool) -> Result<String, String> {
    for dev in ["w0", "w1"] {
        let tc = "/sbin/ip netns exec wan /sbin/tc qdisc";
        if on {
            let rate = if p.rate.is_empty() { "10gbit" } else { &p.rate };
            sh(&format!(
                "{tc} replace dev {dev} root handle 1: tbf rate {rate} burst 1600 limit 10000000"
            ))?;
            sh(&format!(
                "{tc} replace dev {dev} parent 1:1 handle 10: netem delay {}ms loss {}% limit 10000",
                p.delay_ms, p.loss
            ))?;
        } else {
            let _ = sh(&format!("{tc} del dev {dev} root"));
        }
    }
    sh("/sbin/ip netns exec wan /sbin/tc qdisc show")
}

/// Packets netem passed and dropped on `dev` (tc -s).
fn netem_counts(dev: &str) -> (u64, u64) {
    let out = sh(&format!(
        "/sbin/ip netns exec wan /sbin/tc -s qdisc show dev {dev}"
    ))
    .unwrap_or_default();
    // "qdisc netem 10: parent 1:1 …\n Sent B bytes P pkt (dropped D, …"
    let Some(i) = out.find("qdisc netem") else {
        return (0, 0);
    };
    let rest = &out[i..];
    let num_after = |key: &str| {
        rest.split(key)
            .next()
            .and_then(|head| head.split_whitespace().last())
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or(0)
    };
    let pkts = num_after(" pkt");
    let dropped = rest
        .split("(dropped ")
        .nth(1)
        .and_then(|d| d.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (pkts, dropped)
}

fn status(base: &str) -> Result<serde_json::Value, String> {
    let body = capbox::cli::status::http_get(base, "/status", Duration::from_secs(5))?;
    serde_json::from_str(&body).map_err(|e| format!("{base}/status: {e}"))
}

fn metrics(base: &str) -> Result<String, String> {
    capbox::cli::status::http_get(base, "/metrics", Duration::from_secs(5))
}

/// A sample of `name` (with its labels written as in the text) in a
/// Prometheus text, 0 when absent.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Busy and total jiffies of the VM's CPUs (/proc/stat).
fn cpu_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// What one capbox says about channel `ten`.
fn channel(v: &serde_json::Value) -> serde_json::Value {
    v["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "ten"))
        .cloned()
        .unwrap_or_default()
}

/// The figures of one moment of a phase.
#[derive(Debug, Clone, Default)]
struct Snap {
    at: Option<Instant>,
    /// A's channel output (the stream's own rate).
    a_bytes: u64,
    /// B's remote source: body bytes, stalls, connects.
    b_rx: u64,
    b_stalls: u64,
    b_connects: u64,
    b_switches: u64,
    a_lagging: f64,
    a_cpu: f64,
    b_cpu: f64,
    cpu: (u64, u64),
    /// Site A's TCP OutSegs and RetransSegs (/proc/net/snmp in its netns).
    a_segs: (u64, u64),
    /// Packets netem passed and dropped towards B (w1).
    path: (u64, u64),
    /// A's stream client (B's connection) as A reads it (getsockopt):
    /// congestion control and SO_SNDBUF, when connected.
    a_conn: Option<(String, u64)>,
}

/// OutSegs and RetransSegs of site A's network namespace.
fn a_segments() -> (u64, u64) {
    let snmp = sh("/sbin/ip netns exec site_a cat /proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return (0, 0);
    };
    let field = |want: &str| {
        names
            .split_whitespace()
            .position(|n| n == want)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("OutSegs"), field("RetransSegs"))
}

fn snap() -> Result<Snap, String> {
    let a = status(A_URL)?;
    let b = status(B_URL)?;
    let am = metrics(A_URL)?;
    let ca = channel(&a);
    let cb = channel(&b);
    let conn = &cb["sources"][0]["remote_status"];
    let counters = &conn["counters"];
    Ok(Snap {
        at: Some(Instant::now()),
        a_bytes: ca["bytes"].as_u64().unwrap_or(0),
        b_rx: counters["bytes"].as_u64().unwrap_or(0),
        b_stalls: counters["stalls"].as_u64().unwrap_or(0),
        b_connects: counters["connects"].as_u64().unwrap_or(0),
        b_switches: cb["failover"]["switches"].as_u64().unwrap_or(0),
        a_lagging: metric(&am, "capbox_http_clients_cut_total{reason=\"lagging\"}"),
        a_cpu: a["process"]["cpu_seconds"].as_f64().unwrap_or(0.0),
        b_cpu: b["process"]["cpu_seconds"].as_f64().unwrap_or(0.0),
        cpu: cpu_jiffies(),
        a_segs: a_segments(),
        path: netem_counts("w1"),
        a_conn: a["clients"]
            .as_array()
            .and_then(|c| c.iter().find(|r| r["channel"] == "ten"))
            .map(|r| {
                (
                    r["tcp_congestion"].as_str().unwrap_or("?").to_string(),
                    r["send_buffer_bytes"].as_u64().unwrap_or(0),
                )
            }),
    })
}

/// A capbox process, stopped (SIGTERM, then SIGKILL) on drop.
struct Capbox {
    child: Child,
    log: String,
}

impl Capbox {
    fn start(netns: Option<&str>, config: &str, tag: &str) -> Result<Capbox, String> {
        let cfg = format!("/tmp/{tag}.toml");
        std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
        let log = format!("/tmp/{tag}.log");
        let out = File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("/sbin/ip");
                c.args(["netns", "exec", ns, "/bin/capbox"]);
                c
            }
            None => Command::new("/bin/capbox"),
        };
        let child = cmd
            .args(["serve", "--config", &cfg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("start capbox ({tag}): {e}"))?;
        Ok(Capbox { child, log })
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Capbox {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 200 ms until it says Ok or `limit` passes.
fn wait_for(
    limit: Duration,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        match f() {
            Ok(()) => return Ok(t.elapsed()),
            Err(e) if t.elapsed() >= limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A client of B's channel, as a viewer at site B: when each read
/// returned, to find the longest silence.
struct Viewer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Instant>>,
}

impl Viewer {
    fn start() -> Result<Viewer, String> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("127.0.0.1:8081").map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        c.write_all(b"GET /stream/ten HTTP/1.1\r\nHost: b\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reads = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            let end = loop {
                if s2.load(std::sync::atomic::Ordering::Relaxed) {
                    break "stopped".to_string();
                }
                match c.read(&mut buf) {
                    Ok(0) => break "EOF".to_string(),
                    Ok(n) => {
                        total += n;
                        reads.push(Instant::now())
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => break e.to_string(),
                }
            };
            println!(
                "tunnel: viewer at B: {} reads, {total} bytes, ended: {end}",
                reads.len()
            );
            reads
        });
        Ok(Viewer { stop, thread })
    }

    /// The silences between `from` and `to` longer than `over`, except
    /// those the VM itself made (a hiccup covering half of one: the
    /// guest was not running, so the path is not to blame), and the
    /// longest silence of all.
    fn gaps(
        self,
        from: Instant,
        to: Instant,
        over: Duration,
        hiccups: &[(Instant, Instant)],
    ) -> Gaps {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = self.thread.join().unwrap_or_default();
        let mut last = from;
        let mut g = Gaps::default();
        for t in reads
            .into_iter()
            .filter(|t| *t > from && *t <= to)
            .chain([to])
        {
            let len = t - last;
            g.longest = g.longest.max(len);
            if len > over {
                let frozen: Duration = hiccups
                    .iter()
                    .map(|&(h0, h1)| h1.min(t).saturating_duration_since(h0.max(last)))
                    .sum();
                if frozen * 2 >= len {
                    g.vm_made += 1;
                } else {
                    g.over += 1;
                    g.longest_path = g.longest_path.max(len);
                }
            }
            last = t;
        }
        g
    }
}

/// What a viewer saw of silences.
#[derive(Debug, Default, Clone, Copy)]
struct Gaps {
    longest: Duration,
    /// Silences over fail_after_ms the path made, and the longest.
    over: u64,
    longest_path: Duration,
    /// Silences over fail_after_ms during which the VM itself stalled.
    vm_made: u64,
}

/// When the guest itself did not run: a 10 ms sleep that took over
/// 100 ms (the host did not schedule QEMU, TCG caught up). Figures over
/// such a moment are the VM's, not the path's.
#[derive(Clone, Default)]
struct Hiccups(std::sync::Arc<std::sync::Mutex<Vec<(Instant, Instant)>>>);

impl Hiccups {
    fn start() -> Hiccups {
        let h = Hiccups::default();
        let list = h.0.clone();
        std::thread::spawn(move || loop {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(10));
            let t1 = Instant::now();
            if t1 - t0 > Duration::from_millis(100) {
                if let Ok(mut l) = list.lock() {
                    if l.len() < 10_000 {
                        l.push((t0, t1));
                    }
                }
            }
        });
        h
    }

    /// Hiccups overlapping `from..to`.
    fn between(&self, from: Instant, to: Instant) -> Vec<(Instant, Instant)> {
        self.0
            .lock()
            .map(|l| {
                l.iter()
                    .copied()
                    .filter(|&(a, b)| b > from && a < to)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One phase's result.
struct Phase {
    name: String,
    cc: Option<String>,
    /// Kbit/s over the window.
    served_kbps: f64,
    received_kbps: f64,
    /// The worst 5 s of B's reception, Kbit/s.
    worst5_kbps: f64,
    stalls: u64,
    reconnects: u64,
    switches: u64,
    on_slate_s: u64,
    /// What a viewer of B's channel saw of silences.
    gaps: Gaps,
    /// The VM's own stalls in the window: how many, the longest.
    hiccups: usize,
    longest_hiccup: Duration,
    lagging_cuts: f64,
    /// A's connection to B, as A's /status reads it (getsockopt).
    conn_cc: String,
    conn_sndbuf: u64,
    vm_cpu_pct: f64,
    a_cpu_pct: f64,
    b_cpu_pct: f64,
    secs: f64,
    /// Share of A's TCP segments that were retransmissions, percent.
    retrans_pct: f64,
    /// Packets through netem towards B (passed + dropped) and A's TCP
    /// segments out over the window: equal when the path sees single
    /// segments, not GSO super-packets.
    path_pkts: u64,
    a_segs_out: u64,
    /// Share of those netem dropped, percent.
    path_loss_pct: f64,
    /// ss -tin of A's side, in the middle of the window and at its end.
    ss: String,
}

impl Phase {
    fn carried(&self) -> bool {
        self.received_kbps >= RATE_MARGIN * self.served_kbps
            && self.stalls == 0
            && self.reconnects == 0
            && self.switches == 0
            && self.on_slate_s == 0
            && self.lagging_cuts == 0.0
            && self.gaps.over == 0
    }

    fn line(&self, p: &Params, netem: bool) -> String {
        format!(
            "TUNNEL phase={} cc={} path={} send_buffer={} kernel_sndbuf={} window_s={:.0} \
             served_kbps={:.0} received_kbps={:.0} ratio={:.3} worst5s_kbps={:.0} stalls={} \
             reconnects={} slate_switches={} on_slate_s={} longest_gap_ms={} gaps_over_fail_after={} \
             vm_made_gaps={} vm_hiccups={} longest_hiccup_ms={} lagging_cuts={} vm_cpu_pct={:.0} \
             a_cpu_pct={:.0} b_cpu_pct={:.0} retrans_pct={:.2} path_loss_pct={:.2} verdict={}",
            self.name,
            self.cc.as_deref().unwrap_or("default"),
            if netem {
                format!(
                    "rtt{}ms_loss{}%_rate{}",
                    2 * p.delay_ms,
                    p.loss,
                    if p.rate.is_empty() { "none" } else { &p.rate }
                )
            } else {
                "clean".to_string()
            },
            if self.cc.is_some() && p.sndbuf > 0 {
                p.sndbuf.to_string()
            } else {
                "auto".into()
            },
            self.conn_sndbuf,
            self.secs,
            self.served_kbps,
            self.received_kbps,
            if self.served_kbps > 0.0 {
                self.received_kbps / self.served_kbps
            } else {
                0.0
            },
            self.worst5_kbps,
            self.stalls,
            self.reconnects,
            self.switches,
            self.on_slate_s,
            self.gaps.longest.as_millis(),
            self.gaps.over,
            self.gaps.vm_made,
            self.hiccups,
            self.longest_hiccup.as_millis(),
            self.lagging_cuts,
            self.vm_cpu_pct,
            self.a_cpu_pct,
            self.b_cpu_pct,
            self.retrans_pct,
            self.path_loss_pct,
            if self.carried() { "carried" } else { "STALLED" },
        )
    }
}

fn a_config(cc: Option<&str>, sndbuf: Option<usize>) -> String {
    let mut s = format!("[server]\nlisten = \"{A_IP}:8080\"\n");
    if let Some(cc) = cc {
        s += &format!("tcp_congestion = \"{cc}\"\n");
    }
    if let Some(n) = sndbuf {
        s += &format!("send_buffer_bytes = {n}\n");
    }
    s + &format!(
        "\n[[channel]]\nname = \"ten\"\n\n[[channel.source]]\nfile = \"{SAMPLE}\"\nprogram = 1\n"
    )
}

fn b_config(fail_after_ms: u64) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:8081\"\n\n[[channel]]\nname = \"ten\"\nslate = \"{SLATE}\"\n\
         fail_after_ms = {fail_after_ms}\n\n[[channel.source]]\nurl = \"{A_URL}/stream/ten\"\n"
    )
}

fn run_phase(s: &mut Suite, p: &Params, name: &str, hiccups: &Hiccups) -> Result<Phase, String> {
    let (cc, netem, secs) = match name {
        "control" => (None, false, p.control_secs),
        cc => (Some(cc.to_string()), true, p.secs),
    };
    let qdisc = set_netem(p, netem)?;
    println!(
        "tunnel: phase {name}: qdiscs on the path:\n{}",
        qdisc.trim()
    );
    let a = Capbox::start(
        Some("site_a"),
        &a_config(
            cc.as_deref(),
            cc.as_ref().map(|_| p.sndbuf).filter(|&n| n > 0),
        ),
        &format!("a-{name}"),
    )?;
    let up = wait_for(Duration::from_secs(30), || {
        let v = status(A_URL)?;
        match channel(&v)["state"].as_str() {
            Some("up") => Ok(()),
            other => Err(format!("site A's channel is {other:?}")),
        }
    })
    .map_err(|e| format!("{e}; A's log:\n{}", a.log_tail(20)))?;
    println!("tunnel: phase {name}: site A up after {up:?}");
    if let Some(cc) = &cc {
        let v = status(A_URL)?;
        let l = &v["http"]["listeners"][0];
        s.check(
            &format!(
                "{name}: site A's listener sockets get tcp_congestion = {cc:?} and the send buffer"
            ),
            l["kernel"]["tcp_congestion"] == cc.as_str()
                && l["last_tuning_error"].is_null()
                && (p.sndbuf == 0
                    || l["kernel"]["send_buffer_bytes"].as_u64() == Some(2 * p.sndbuf as u64)),
            l,
        );
    }
    let b = Capbox::start(None, &b_config(p.fail_after_ms), &format!("b-{name}"))?;
    let up = wait_for(Duration::from_secs(30), || {
        let v = status(B_URL)?;
        let c = channel(&v);
        let conn = &c["sources"][0]["remote_status"];
        match (c["state"].as_str(), conn["connected"].as_bool()) {
            (Some("up"), Some(true)) if !c["failover"]["on_slate"].as_bool().unwrap_or(true) => {
                Ok(())
            }
            _ => Err(format!(
                "site B's channel: {} {}; remote: {}",
                c["state"], c["reason"], conn["state"]
            )),
        }
    })
    .map_err(|e| format!("{e}; B's log:\n{}", b.log_tail(20)))?;
    println!("tunnel: phase {name}: site B on air from A after {up:?}");
    std::thread::sleep(Duration::from_secs(p.warmup));

    let ss_a = || {
        sh("/sbin/ip netns exec site_a /sbin/ss -tin state established '( sport = :8080 )'")
            .unwrap_or_else(|e| e)
    };
    let viewer = Viewer::start()?;
    std::thread::sleep(Duration::from_secs(1));
    let s0 = snap()?;
    let mut series = vec![(Instant::now(), s0.b_rx)];
    let mut on_slate_s = 0;
    let mut ss = String::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        let n = series.len() as u64;
        if (p.ss_every > 0 && n.is_multiple_of(p.ss_every)) || (ss.is_empty() && n > secs / 2) {
            ss += &format!("at {n} s:\n{}\n", ss_a().trim());
        }
        let v = status(B_URL)?;
        let c = channel(&v);
        if c["failover"]["on_slate"].as_bool().unwrap_or(false) {
            on_slate_s += 1;
        }
        series.push((
            Instant::now(),
            c["sources"][0]["remote_status"]["counters"]["bytes"]
                .as_u64()
                .unwrap_or(0),
        ));
    }
    let s1 = snap()?;
    let (w0, w1) = (
        s0.at.unwrap_or_else(Instant::now),
        s1.at.unwrap_or_else(Instant::now),
    );
    let stalled = hiccups.between(w0, w1);
    let gaps = viewer.gaps(w0, w1, Duration::from_millis(p.fail_after_ms), &stalled);
    let dt = s1
        .at
        .zip(s0.at)
        .map(|(b, a)| (b - a).as_secs_f64())
        .unwrap_or(1.0);
    let kbps = |bytes: u64, d: f64| bytes as f64 * 8.0 / d / 1000.0;
    let worst5 = series
        .windows(6)
        .map(|w| {
            let (t0, b0) = w[0];
            let (t1, b1) = w[w.len() - 1];
            kbps(b1.saturating_sub(b0), (t1 - t0).as_secs_f64())
        })
        .fold(f64::INFINITY, f64::min);
    let (busy0, tot0) = s0.cpu;
    let (busy1, tot1) = s1.cpu;
    // A's side of its connection to B, read by A itself (getsockopt),
    // at the start of the window (B may be reconnecting at its end).
    let (conn_cc, conn_sndbuf) = s0
        .a_conn
        .clone()
        .or(s1.a_conn.clone())
        .unwrap_or_else(|| ("not connected".into(), 0));
    let ss = format!("{ss}\nend of window:\n{}", ss_a().trim());
    let (out0, re0) = s0.a_segs;
    let (out1, re1) = s1.a_segs;
    Ok(Phase {
        name: name.to_string(),
        cc,
        served_kbps: kbps(s1.a_bytes.saturating_sub(s0.a_bytes), dt),
        received_kbps: kbps(s1.b_rx.saturating_sub(s0.b_rx), dt),
        worst5_kbps: if worst5.is_finite() { worst5 } else { 0.0 },
        stalls: s1.b_stalls - s0.b_stalls,
        reconnects: s1.b_connects - s0.b_connects,
        switches: s1.b_switches - s0.b_switches,
        on_slate_s,
        gaps,
        hiccups: stalled.len(),
        longest_hiccup: stalled
            .iter()
            .map(|&(a, b)| b - a)
            .max()
            .unwrap_or_default(),
        lagging_cuts: s1.a_lagging - s0.a_lagging,
        conn_cc,
        conn_sndbuf,
        vm_cpu_pct: 100.0 * (busy1 - busy0) as f64 / (tot1 - tot0).max(1) as f64,
        a_cpu_pct: 100.0 * (s1.a_cpu - s0.a_cpu) / dt,
        b_cpu_pct: 100.0 * (s1.b_cpu - s0.b_cpu) / dt,
        secs: dt,
        retrans_pct: 100.0 * re1.saturating_sub(re0) as f64
            / out1.saturating_sub(out0).max(1) as f64,
        path_pkts: (s1.path.0 + s1.path.1).saturating_sub(s0.path.0 + s0.path.1),
        a_segs_out: out1.saturating_sub(out0),
        path_loss_pct: 100.0 * s1.path.1.saturating_sub(s0.path.1) as f64
            / (s1.path.0 + s1.path.1)
                .saturating_sub(s0.path.0 + s0.path.1)
                .max(1) as f64,
        ss,
    })
}

fn main() {
    // The same binary is capbox itself (/bin/capbox links to it): one
    // static program to build and ship.
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.rsplit('/').next() == Some("capbox") {
        std::process::exit(capbox::cli::main());
    }
    let t0 = Instant::now();
    let p = Params::from_cmdline();
    println!("tunnel: {p:?}");
    let mut s = Suite::default();
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.matches("processor\t:").count())
        .unwrap_or(0);
    println!(
        "tunnel: {cpus} vCPU(s), kernel {}",
        sh("uname -r").unwrap_or_default().trim()
    );

    // How late timers fire in this VM: TCP's pacing (BBR) arms one per
    // packet when no qdisc paces for it, so lateness costs rate.
    let mut late: Vec<u64> = (0..500)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            (t.elapsed().as_micros() as u64).saturating_sub(1000)
        })
        .collect();
    late.sort_unstable();
    println!(
        "tunnel: timer: a 1 ms sleep wakes late by median {} µs, p90 {} µs, p99 {} µs",
        late[250], late[450], late[495]
    );

    // The kernel's side: netem, bbr and veth as modules of this kernel.
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .unwrap_or_default();
    let mods = sh("cat /proc/modules").unwrap_or_default();
    let have = |m: &str| mods.lines().any(|l| l.starts_with(&format!("{m} ")));
    s.check(
        "modules: veth, sch_netem and tcp_bbr loaded from the Debian kernel; bbr and cubic available",
        have("veth") && have("sch_netem") && have("tcp_bbr") && cc.contains("bbr") && cc.contains("cubic"),
        format!("available congestion control: {}", cc.trim()),
    );

    let path = build_path(&p);
    s.check(
        "path: site_a ─veth─ wan (router) ─veth─ root ns, addresses and routes",
        path.is_ok(),
        path.as_ref().map_or_else(|e| e.clone(), |g| g.clone()),
    );
    if path.is_err() {
        finish(s, t0);
    }
    // The RTT netem makes, seen by ping (busybox) before any phase.
    let ping = set_netem(&p, true).and_then(|_| sh(&format!("ping -c 10 -i 0.2 -q {A_IP}")));
    let rtt = ping
        .as_ref()
        .ok()
        .and_then(|o| o.split("min/avg/max = ").nth(1))
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse::<f64>().ok());
    let want = 2.0 * p.delay_ms as f64;
    // The minimum is the path's own: the average also holds the VM's
    // hiccups when the host is busy.
    s.check(
        &format!("netem: ping RTT through the path ≈ {want} ms"),
        rtt.is_some_and(|r| r >= want && r < want + 40.0),
        format!(
            "min {rtt:?} ms; {}",
            ping.unwrap_or_else(|e| e).trim().replace('\n', " | ")
        ),
    );

    let hiccups = Hiccups::start();
    let mut results = Vec::new();
    for name in &p.phases {
        match run_phase(&mut s, &p, name, &hiccups) {
            Ok(r) => {
                let netem = r.cc.is_some();
                println!("{}", r.line(&p, netem));
                println!("tunnel: phase {name}: A's side (ss -tin):\n{}", r.ss.trim());
                if r.cc.is_some() {
                    let want: f64 = p.loss.parse().unwrap_or(0.0);
                    s.check(
                        &format!("{name}: the path drops ≈ {}% of the packets towards B, one by one (netem sees segments, not GSO super-packets)", p.loss),
                        r.path_pkts as f64 >= 0.9 * r.a_segs_out as f64
                            && (r.path_loss_pct - want).abs() <= want / 2.0 + 0.05,
                        format!(
                            "netem: {} packets, {:.2} % dropped; A sent {} TCP segments",
                            r.path_pkts, r.path_loss_pct, r.a_segs_out
                        ),
                    );
                }
                if let Some(cc) = &r.cc {
                    s.check(
                        &format!("{name}: A's connection to B runs {cc} (getsockopt on A's accepted socket)"),
                        r.conn_cc == *cc,
                        format!("{} with SO_SNDBUF {}", r.conn_cc, r.conn_sndbuf),
                    );
                }
                results.push(r);
            }
            Err(e) => s.check(&format!("{name}: phase ran"), false, e),
        }
    }

    // The rig itself: without netem, the VM carries the channel through
    // both capboxes at its own rate (else the figures say nothing).
    let file_kbps = std::fs::metadata(SAMPLE)
        .map(|m| m.len() as f64 * 8.0 / p.sample_secs / 1000.0)
        .unwrap_or(0.0);
    if let Some(c) = results.iter().find(|r| r.name == "control") {
        s.check(
            "control (no netem): this VM plays the sample at its rate and B receives it all",
            c.served_kbps >= 0.95 * file_kbps && c.carried(),
            format!(
                "sample {file_kbps:.0} kbit/s, served {:.0}, received {:.0} kbit/s, stalls {}, \
                 VM CPU {:.0} % (A {:.0} %, B {:.0} % of one vCPU)",
                c.served_kbps, c.received_kbps, c.stalls, c.vm_cpu_pct, c.a_cpu_pct, c.b_cpu_pct
            ),
        );
    }
    let lossy: Vec<&Phase> = results.iter().filter(|r| r.cc.is_some()).collect();
    for r in &lossy {
        println!(
            "tunnel: {}: {} (received {:.0} of {:.0} kbit/s, {} stalls, {} reconnects, {} s on the slate)",
            r.name,
            if r.carried() { "carried the channel" } else { "did not carry the channel" },
            r.received_kbps,
            r.served_kbps,
            r.stalls,
            r.reconnects,
            r.on_slate_s
        );
    }
    s.check(
        "tunnel: at least one congestion control carries the ~10 Mbit/s channel across the lossy path without a stall",
        lossy.iter().any(|r| r.carried() && r.served_kbps >= 0.95 * file_kbps),
        lossy
            .iter()
            .map(|r| format!("{}: {}", r.name, if r.carried() { "carried" } else { "stalled" }))
            .collect::<Vec<_>>()
            .join(", "),
    );
    finish(s, t0);
}

fn finish(s: Suite, t0: Instant) -> ! {
    println!(
        "tunnel-vm: {} checks, {} failed, {:.1} s in the VM",
        s.passes + s.failures,
        s.failures,
        t0.elapsed().as_secs_f64()
    );
    std::process::exit(s.failures.min(127) as i32);
}
