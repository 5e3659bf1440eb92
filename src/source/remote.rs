//! A channel's packets pulled over HTTP: another capbox's
//! `/stream/<channel>` (with its token) or any HTTP MPEG-TS URL.
//!
//! One thread per remote source does the blocking HTTP/1.1 GET, decodes the
//! body (Content-Length, chunked, or until the peer closes), aligns packets
//! with `Resync` and hands them to the reader through a bounded queue. When
//! the connection fails for any reason — refused, timed out, an HTTP error,
//! a body that is not MPEG-TS, a stall, a truncated body, a clean end — the
//! thread says why in words (`RemoteStatus::last_error`), counts it, and
//! connects again after a bounded exponential backoff.
//!
//! Loop guard: the request asks with `origin=local` unless configured off, so
//! a peer capbox answers only while the channel is fed by one of its own
//! local sources (tuner or file) and 503 otherwise; two sites backing each
//! other up never feed each other a relay of a relay or a slate.
//!
//! Promises: the reader never blocks longer than its timeout; bytes from the
//! network are untrusted (nothing parsed from them can panic, no length they
//! announce is preallocated, a 2 GB Content-Length is streamed); memory is
//! bounded (a 16 KiB response head, a 64 KiB read buffer, the chunk-size
//! line, `queue_bytes` of queued packets — the oldest dropped and counted
//! when the reader falls behind); the token never reaches a log, `Debug`,
//! `describe()` or `/status`. Plain HTTP only: no TLS (use a VPN or tunnel).
//! A host name is resolved on the fetch thread (the system resolver may
//! block; give peers as addresses where that matters).

use super::{ReadOutcome, Resync, Source, SourceError, SourceStats};
use crate::ts::PACKET_SIZE;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to reach one remote stream. The config reference reads these doc
/// comments.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSourceConfig {
    /// `http://host[:port]/path[?query]`. No TLS: `https://` is refused.
    /// A peer capbox's stream is `http://peer:8080/stream/<channel>`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` (the peer's `token`). Never
    /// logged nor shown in `/status`.
    pub token: Option<String>,
    /// Ask the peer for its local output only (`origin=local` added to the
    /// query): a peer capbox answers 503 while the channel is not fed by
    /// one of its own tuners or files. Default true; turn off only for a
    /// URL that is not a capbox.
    pub origin_local: bool,
    /// Give up a TCP connect after this long. Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// No byte for this long (or bytes but no aligned packet) ends the
    /// connection as stalled and reconnects. Default 1000 ms: a stream at
    /// 120 ms RTT with loss may pause for a retransmission timeout (≥ 200 ms
    /// plus RTT) and recover by itself, and a new connection restarts TCP's
    /// slow start; the channel's health verdict (`channel::health`, stall
    /// after 400 ms) moves the channel to another source well before.
    pub stall_ms: u64,
    /// First wait before reconnecting after a failure, doubled at each
    /// consecutive failure up to `backoff_max_ms`. Defaults 200 ms and
    /// 5000 ms: a peer restarting is back within a second, a peer that is
    /// down costs one attempt every 5 s. A connection that delivered
    /// packets for `BACKOFF_RESET` resets the sequence.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// SO_RCVBUF for the socket, set before connect so the TCP window scale
    /// allows it. None (the default) leaves the kernel's autotuning on;
    /// set it to about bitrate × RTT × 2 for a long fat path (10 Mbit/s at
    /// 120 ms: 300 KB). Capped by the kernel's `net.core.rmem_max`.
    pub rcvbuf_bytes: Option<usize>,
    /// Packets queued for the reader; beyond, the oldest are dropped and
    /// counted (`queue_drops`). Default 2 MiB (0.8 s at 20 Mbit/s): the
    /// reader drains the queue on every read, so this only fills when the
    /// channel's thread is stuck.
    pub queue_bytes: usize,
    /// A response body whose first this many bytes hold no aligned packet
    /// is not MPEG-TS. Default 64 KiB.
    pub probe_bytes: usize,
    /// Cold standby: connect only while this says the channel needs the
    /// source (`None`, the default: hot, always connected).
    pub demand: Option<Demand>,
}

/// The channels' "I need this source now" for a cold-standby source: one
/// bit per channel reading it, shared between the channels (which set
/// their bit) and the fetch thread (which connects while any is set).
#[derive(Clone, Debug, Default)]
pub struct Demand(pub Arc<std::sync::atomic::AtomicU64>);

impl Demand {
    /// Set or clear the bit of one reader (`bit` modulo 64).
    pub fn set(&self, bit: u32, wanted: bool) {
        let m = 1u64 << (bit % 64);
        if wanted {
            self.0.fetch_or(m, Ordering::Relaxed);
        } else {
            self.0.fetch_and(!m, Ordering::Relaxed);
        }
    }

    pub fn wanted(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

impl PartialEq for Demand {
    fn eq(&self, other: &Demand) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Demand {}

impl RemoteSourceConfig {
    pub fn new(url: impl Into<String>) -> RemoteSourceConfig {
        RemoteSourceConfig {
            url: url.into(),
            token: None,
            origin_local: true,
            connect_timeout_ms: 1000,
            stall_ms: 1000,
            backoff_min_ms: 200,
            backoff_max_ms: 5000,
            rcvbuf_bytes: None,
            queue_bytes: 2 << 20,
            probe_bytes: 64 << 10,
            demand: None,
        }
    }
}

impl std::fmt::Debug for RemoteSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("origin_local", &self.origin_local)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("stall_ms", &self.stall_ms)
            .field("backoff_min_ms", &self.backoff_min_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("rcvbuf_bytes", &self.rcvbuf_bytes)
            .field("queue_bytes", &self.queue_bytes)
            .field("probe_bytes", &self.probe_bytes)
            .finish()
    }
}

/// A connection that carried packets this long resets the backoff.
pub const BACKOFF_RESET: Duration = Duration::from_secs(5);
/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Read size.
const READ_BUF: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) and trailer line.
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer lines after the last chunk.
const MAX_TRAILERS: usize = 64;
/// Most distinct HTTP statuses counted one by one; others count under 0.
const MAX_STATUS_KEYS: usize = 16;

/// `http://host:port/path?query`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query as sent on the request line (origin=local added).
    pub target: String,
}

impl HttpUrl {
    /// Parse `url`; with `origin_local`, add `origin=local` to the query
    /// unless it already names an origin.
    pub fn parse(url: &str, origin_local: bool) -> Result<HttpUrl, String> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "{}: https is not supported (capbox speaks plain HTTP; carry it over a VPN or tunnel)",
                redact_url(url)
            ));
        }
        if !lower.starts_with("http://") {
            return Err(format!(
                "{}: the URL must start with http://",
                redact_url(url)
            ));
        }
        let rest = &url[7..];
        if let Some(c) = rest.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{}: the URL holds a space or control character ({:?})",
                redact_url(url),
                c
            ));
        }
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "{}: user:password@ in the URL is not supported (use the token)",
                redact_url(url)
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, p)) = v6.split_once(']') else {
                return Err(format!("{}: unclosed [ in the host", redact_url(url)));
            };
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{}: no host", redact_url(url)));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{}: bad port {p:?}", redact_url(url))),
            },
        };
        let mut target = if target.starts_with('?') || target.is_empty() {
            format!("/{target}")
        } else {
            target.to_string()
        };
        if origin_local {
            let query = target.split_once('?').map_or("", |(_, q)| q);
            if !query
                .split('&')
                .any(|kv| kv.split('=').next() == Some("origin"))
            {
                target.push(if query.is_empty() && !target.contains('?') {
                    '?'
                } else {
                    '&'
                });
                if target.ends_with("?&") {
                    target.pop();
                }
                target.push_str("origin=local");
            }
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            target,
        })
    }

    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// The URL with any `token=` query value hidden, for logs and `/status`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") => format!("{k}=<hidden>"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

/// Why one connection ended, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    Resolve {
        host: String,
        err: String,
    },
    ConnectFailed {
        addr: SocketAddr,
        err: String,
    },
    ConnectTimeout {
        addr: SocketAddr,
        ms: u64,
    },
    /// Connected, but no complete response head in time.
    NoResponse {
        ms: u64,
        got: usize,
    },
    /// Not an HTTP response, or one capbox cannot read.
    BadResponse(String),
    /// A peer capbox's loop guard: the channel has no local source there.
    PeerNotLocal,
    HttpStatus {
        status: u16,
        reason: String,
        location: Option<String>,
    },
    NotTs(String),
    /// No byte (or no aligned packet) for `ms`.
    Stalled {
        ms: u64,
        packets_lost_sync: bool,
    },
    /// The body ended early: closed inside a chunk or before the
    /// Content-Length.
    Truncated(String),
    /// The body ended where it said it would (a finite resource, or a peer
    /// that closed cleanly).
    Ended(String),
    Io {
        what: &'static str,
        err: String,
    },
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Resolve { host, err } => write!(f, "cannot resolve {host}: {err}"),
            RemoteError::ConnectFailed { addr, err } => write!(f, "connect to {addr}: {err}"),
            RemoteError::ConnectTimeout { addr, ms } => {
                write!(f, "connect to {addr}: no answer within {ms} ms")
            }
            RemoteError::NoResponse { ms, got } => {
                write!(f, "no response head within {ms} ms ({got} bytes received)")
            }
            RemoteError::BadResponse(s) => write!(f, "bad HTTP response: {s}"),
            RemoteError::PeerNotLocal => write!(f, "peer has no local source (503)"),
            RemoteError::HttpStatus {
                status,
                reason,
                location,
            } => {
                write!(f, "HTTP {status} {reason}")?;
                if let Some(l) = location {
                    write!(f, " to {l} (redirects are not followed)")?;
                }
                if *status == 401 || *status == 403 {
                    write!(f, ": token refused or missing")?;
                }
                Ok(())
            }
            RemoteError::NotTs(s) => write!(f, "not MPEG-TS: {s}"),
            RemoteError::Stalled {
                ms,
                packets_lost_sync: false,
            } => write!(f, "no data for {ms} ms"),
            RemoteError::Stalled {
                ms,
                packets_lost_sync: true,
            } => write!(f, "bytes but no MPEG-TS packet for {ms} ms (sync lost)"),
            RemoteError::Truncated(s) => write!(f, "body truncated: {s}"),
            RemoteError::Ended(s) => write!(f, "stream ended: {s}"),
            RemoteError::Io { what, err } => write!(f, "{what}: {err}"),
        }
    }
}

/// Counters of one remote source; every failure lands in exactly one of
/// connect_failures, http_errors, bad_responses, not_ts, stalls, truncated,
/// ends, io_errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RemoteCounters {
    /// TCP connections established.
    pub connects: u64,
    /// Resolve failures, refused or timed-out connects.
    pub connect_failures: u64,
    /// Responses other than 200, by status (0: statuses past the first 16
    /// distinct ones).
    pub http_errors: BTreeMap<u16, u64>,
    /// Of those, 503 answers to `origin=local` (the peer's loop guard).
    pub peer_not_local: u64,
    /// Not HTTP, an oversized head, bad chunk framing, an unsupported
    /// encoding, no response head in time.
    pub bad_responses: u64,
    /// Bodies that are not MPEG-TS (a text content type, no sync).
    pub not_ts: u64,
    pub stalls: u64,
    /// Bodies cut short (EOF inside a chunk or before Content-Length).
    pub truncated: u64,
    /// Bodies that ended cleanly (the peer closed, Content-Length reached).
    pub ends: u64,
    /// Other socket errors (reset, …).
    pub io_errors: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Aligned packets handed to the queue.
    pub packets: u64,
    /// Bytes skipped to find packet sync.
    pub bytes_skipped: u64,
    pub sync_losses: u64,
    /// Packets dropped because the reader fell behind.
    pub queue_drops: u64,
}

/// The `reason` label values of `capbox_remote_failures_total`, in the
/// order `RemoteCounters::failures` gives them.
pub const FAILURE_REASONS: [&str; 9] = [
    "connect",
    "http_error",
    "peer_not_local",
    "bad_response",
    "not_ts",
    "stall",
    "truncated",
    "ended",
    "io",
];

impl RemoteCounters {
    /// Every ended connection or failed attempt, by reason: each one is in
    /// exactly one entry (`http_error` leaves out the loop guard's 503s,
    /// which are `peer_not_local`). Names as in `FAILURE_REASONS`.
    pub fn failures(&self) -> [(&'static str, u64); 9] {
        let http: u64 = self.http_errors.values().sum();
        let values = [
            self.connect_failures,
            http.saturating_sub(self.peer_not_local),
            self.peer_not_local,
            self.bad_responses,
            self.not_ts,
            self.stalls,
            self.truncated,
            self.ends,
            self.io_errors,
        ];
        let mut out = [("", 0u64); 9];
        for (o, (name, v)) in out.iter_mut().zip(FAILURE_REASONS.iter().zip(values)) {
            *o = (name, v);
        }
        out
    }
}

/// What the fetch thread is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    Connecting {
        attempt: u64,
    },
    Connected {
        since: Instant,
    },
    BackingOff {
        until: Instant,
        ms: u64,
        reason: String,
    },
    /// Cold standby, not needed: not connected.
    Standby,
    Stopped,
}

impl RemoteState {
    /// In words at `now`: "connecting (attempt 3)", "connected for 12.3 s",
    /// "backing off 800 ms after connect to …: connection refused".
    pub fn words(&self, now: Instant) -> String {
        match self {
            RemoteState::Connecting { attempt } => format!("connecting (attempt {attempt})"),
            RemoteState::Connected { since } => {
                let d = now.saturating_duration_since(*since);
                format!(
                    "connected for {}.{} s",
                    d.as_secs(),
                    d.subsec_millis() / 100
                )
            }
            RemoteState::BackingOff { ms, reason, .. } => {
                format!("backing off {ms} ms after {reason}")
            }
            RemoteState::Standby => "cold standby: connects when the channel needs it".to_string(),
            RemoteState::Stopped => "stopped".to_string(),
        }
    }
}

/// Everything `/status` shows of a remote source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemoteStatus {
    /// The URL as configured, any `token=` hidden.
    pub url: String,
    /// The state in words.
    pub state: String,
    pub connected: bool,
    /// Why the last connection ended (or failed), in words.
    pub last_error: Option<String>,
    /// SO_RCVBUF as the kernel set it (Linux reports twice the request).
    pub rcvbuf_bytes: Option<usize>,
    pub queued_bytes: usize,
    pub counters: RemoteCounters,
}

impl RemoteStatus {
    /// Why the remote delivers nothing, in words, when it is not
    /// connected: the last failure ("not MPEG-TS: got text/html"), else
    /// the state ("connecting (attempt 1)"). None while connected.
    pub fn failure_words(&self) -> Option<String> {
        if self.connected {
            return None;
        }
        Some(
            self.last_error
                .clone()
                .unwrap_or_else(|| self.state.clone()),
        )
    }

    /// What to add to a verdict on the packets ("stalled 1200 ms") so it
    /// says why: the failure when not connected, else the state
    /// ("connected for 3.2 s": the peer is reached but sends nothing).
    pub fn words(&self) -> String {
        self.failure_words().unwrap_or_else(|| self.state.clone())
    }
}

struct Chunk {
    data: Vec<u8>,
    /// The first packets after a reconnect or a queue drop.
    discontinuity: bool,
}

struct Inner {
    queue: VecDeque<Chunk>,
    queued_bytes: usize,
    /// Mark the next queued chunk as following a break.
    break_pending: bool,
    state: RemoteState,
    last_error: Option<String>,
    rcvbuf: Option<usize>,
    counters: RemoteCounters,
    /// The fetch thread's `Resync` counters, for `Source::stats`.
    resync: SourceStats,
}

struct Shared {
    inner: Mutex<Inner>,
    data: Condvar,
    stop: AtomicBool,
    /// A handle on the live socket, so `Drop` can wake a blocked read.
    sock: Mutex<Option<TcpStream>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain counters:
        // still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A source that pulls MPEG-TS over HTTP. See the module comment.
pub struct RemoteSource {
    url_shown: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RemoteSource {
    /// Check the configuration and start the fetch thread. Errors (a bad
    /// URL, https, a token with a line break) are in words.
    pub fn start(cfg: RemoteSourceConfig) -> Result<RemoteSource, SourceError> {
        let url = HttpUrl::parse(&cfg.url, cfg.origin_local).map_err(|e| SourceError::Io {
            what: "remote source".into(),
            err: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        if let Some(t) = &cfg.token {
            if t.is_empty() || t.bytes().any(|b| !(0x21..0x7F).contains(&b)) {
                return Err(SourceError::Io {
                    what: format!("remote source {}", redact_url(&cfg.url)),
                    err: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "token: must be printable ASCII without spaces",
                    ),
                });
            }
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                queued_bytes: 0,
                break_pending: false,
                state: RemoteState::Connecting { attempt: 1 },
                last_error: None,
                rcvbuf: None,
                counters: RemoteCounters::default(),
                resync: SourceStats::default(),
            }),
            data: Condvar::new(),
            stop: AtomicBool::new(false),
            sock: Mutex::new(None),
        });
        let url_shown = redact_url(&cfg.url);
        let sh = shared.clone();
        // Started by a supervised mux runner: the fetch thread beats its
        // own "remote <url>" heartbeat, restart policy with no restart
        // (reported only: its calls all have timeouts, and a source that
        // stops delivering is the channel's failover to handle).
        let hb = crate::supervisor::register_here(
            &format!("remote {url_shown}"),
            crate::supervisor::Policy::Restart,
        )
        .unwrap_or_else(crate::supervisor::Heartbeat::detached);
        let thread = std::thread::Builder::new()
            .name("remote-fetch".into())
            .spawn(move || {
                let mut f = Fetcher::new(cfg, url, sh);
                f.hb = hb;
                f.run()
            })
            .map_err(|err| SourceError::Io {
                what: format!("remote source {url_shown}: spawn"),
                err,
            })?;
        Ok(RemoteSource {
            url_shown,
            shared,
            thread: Some(thread),
        })
    }

    pub fn status(&self) -> RemoteStatus {
        let now = Instant::now();
        let g = self.shared.lock();
        RemoteStatus {
            url: self.url_shown.clone(),
            state: g.state.words(now),
            connected: matches!(g.state, RemoteState::Connected { .. }),
            last_error: g.last_error.clone(),
            rcvbuf_bytes: g.rcvbuf,
            queued_bytes: g.queued_bytes,
            counters: g.counters.clone(),
        }
    }

    pub fn state(&self) -> RemoteState {
        self.shared.lock().state.clone()
    }
}

impl Drop for RemoteSource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self
            .shared
            .sock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Bounded: the thread checks `stop` between steps and every blocking
        // call has a timeout (connect, read, backoff).
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Source for RemoteSource {
    fn describe(&self) -> String {
        format!("remote {}", self.url_shown)
    }

    fn read(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<ReadOutcome, SourceError> {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.lock();
        while g.queue.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(ReadOutcome::Idle);
            }
            g = self
                .shared
                .data
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut disc = false;
        while let Some(c) = g.queue.pop_front() {
            disc |= c.discontinuity;
            buf.extend_from_slice(&c.data);
        }
        g.queued_bytes = 0;
        Ok(if disc {
            ReadOutcome::Discontinuity
        } else {
            ReadOutcome::Data
        })
    }

    fn stats(&self) -> SourceStats {
        let g = self.shared.lock();
        let c = &g.counters;
        SourceStats {
            bytes: c.bytes,
            packets: c.packets,
            bytes_skipped: c.bytes_skipped,
            sync_losses: c.sync_losses,
            discontinuities: c.connects.saturating_sub(1),
            loops: 0,
            truncated_packets: g.resync.truncated_packets,
        }
    }

    fn remote_status(&self) -> Option<RemoteStatus> {
        Some(self.status())
    }
}

/// The fetch thread's state.
struct Fetcher {
    hb: crate::supervisor::Heartbeat,
    cfg: RemoteSourceConfig,
    url: HttpUrl,
    shared: Arc<Shared>,
    resync: Resync,
    buf: Vec<u8>,
    packets: Vec<u8>,
}

/// How a session ended: the error, and whether it carried packets long
/// enough to reset the backoff.
struct Ending {
    err: RemoteError,
    proven: bool,
}

impl Fetcher {
    fn new(cfg: RemoteSourceConfig, url: HttpUrl, shared: Arc<Shared>) -> Fetcher {
        Fetcher {
            hb: crate::supervisor::Heartbeat::detached(),
            cfg,
            url,
            shared,
            resync: Resync::new(),
            buf: vec![0; READ_BUF],
            packets: Vec::with_capacity(READ_BUF + 4 * PACKET_SIZE),
        }
    }

    /// Hot sources are always wanted; cold ones when the channel says so.
    fn wanted(&self) -> bool {
        self.cfg.demand.as_ref().is_none_or(|d| d.wanted())
    }

    fn run(mut self) {
        let mut failures: u32 = 0;
        let mut attempt = 0u64;
        while !self.shared.stopping() {
            self.hb.beat();
            if !self.wanted() {
                self.shared.lock().state = RemoteState::Standby;
                while !self.shared.stopping() && !self.wanted() {
                    self.hb.beat();
                    std::thread::sleep(Duration::from_millis(10));
                }
                failures = 0;
                continue;
            }
            attempt += 1;
            self.shared.lock().state = RemoteState::Connecting { attempt };
            let end = self.session();
            if self.shared.stopping() {
                break;
            }
            if !self.wanted() {
                // Let go on purpose (cold standby): not a failure.
                continue;
            }
            if end.proven {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let ms = backoff_ms(self.cfg.backoff_min_ms, self.cfg.backoff_max_ms, failures);
            let reason = end.err.to_string();
            log::warn!(
                "remote {}: {reason}; retry in {ms} ms",
                redact_url(&self.cfg.url)
            );
            {
                let mut g = self.shared.lock();
                count(&mut g.counters, &end.err);
                g.last_error = Some(reason.clone());
                g.state = RemoteState::BackingOff {
                    until: Instant::now() + Duration::from_millis(ms),
                    ms,
                    reason,
                };
            }
            let until = Instant::now() + Duration::from_millis(ms);
            while !self.shared.stopping() {
                self.hb.beat();
                let now = Instant::now();
                if now >= until {
                    break;
                }
                std::thread::sleep((until - now).min(Duration::from_millis(50)));
            }
        }
        self.shared.lock().state = RemoteState::Stopped;
    }

    /// One connection, from connect to its end.
    fn session(&mut self) -> Ending {
        let not_proven = |err| Ending { err, proven: false };
        let stream = match self.connect() {
            Ok(s) => s,
            Err(e) => return not_proven(e),
        };
        if let Ok(c) = stream.try_clone() {
            *self.shared.sock.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        }
        let r = self.exchange(stream);
        *self.shared.sock.lock().unwrap_or_else(|e| e.into_inner()) = None;
        r
    }

    fn connect(&mut self) -> Result<TcpStream, RemoteError> {
        let addrs: Vec<SocketAddr> = match (self.url.host.as_str(), self.url.port).to_socket_addrs()
        {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(RemoteError::Resolve {
                    host: self.url.host.clone(),
                    err: e.to_string(),
                })
            }
        };
        let timeout = Duration::from_millis(self.cfg.connect_timeout_ms.max(1));
        let mut last = RemoteError::Resolve {
            host: self.url.host.clone(),
            err: "no address".into(),
        };
        for addr in addrs {
            if self.shared.stopping() {
                break;
            }
            match connect_with(addr, timeout, self.cfg.rcvbuf_bytes) {
                Ok((s, rcvbuf)) => {
                    let mut g = self.shared.lock();
                    g.counters.connects += 1;
                    g.rcvbuf = rcvbuf;
                    return Ok(s);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = RemoteError::ConnectTimeout {
                        addr,
                        ms: timeout.as_millis() as u64,
                    }
                }
                Err(e) => {
                    last = RemoteError::ConnectFailed {
                        addr,
                        err: e.to_string(),
                    }
                }
            }
        }
        Err(last)
    }

    fn exchange(&mut self, mut s: TcpStream) -> Ending {
        let not_proven = |err| Ending { err, proven: false };
        let stall = Duration::from_millis(self.cfg.stall_ms.max(1));
        let _ = s.set_nodelay(true);
        if let Err(e) = s.set_write_timeout(Some(stall)) {
            return not_proven(io_err("socket", e));
        }
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: capbox/{}\r\nAccept: video/mp2t, */*\r\nConnection: close\r\n",
            self.url.target,
            self.url.host_header(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = &self.cfg.token {
            req.push_str("Authorization: Bearer ");
            req.push_str(t);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        if let Err(e) = s.write_all(req.as_bytes()) {
            return not_proven(io_err("send request", e));
        }
        drop(req);

        // The response head, within one stall period.
        let mut head: Vec<u8> = Vec::with_capacity(1024);
        let deadline = Instant::now() + stall;
        let (body_start, framing) = loop {
            self.hb.beat();
            let now = Instant::now();
            if now >= deadline {
                return not_proven(RemoteError::NoResponse {
                    ms: stall.as_millis() as u64,
                    got: head.len(),
                });
            }
            let _ = s.set_read_timeout(Some(deadline - now));
            let room = (MAX_HEAD + 1 - head.len()).min(self.buf.len());
            let n = match s.read(&mut self.buf[..room]) {
                Ok(0) => {
                    return not_proven(RemoteError::BadResponse(format!(
                        "connection closed before the response head was complete ({} bytes)",
                        head.len()
                    )))
                }
                Ok(n) => n,
                Err(e) if is_timeout(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return not_proven(io_err("read response", e)),
            };
            head.extend_from_slice(&self.buf[..n]);
            match parse_head(&head, self.cfg.origin_local) {
                Ok(Some(r)) => break r,
                Ok(None) if head.len() > MAX_HEAD => {
                    return not_proven(RemoteError::BadResponse(format!(
                        "response head larger than {MAX_HEAD} bytes"
                    )))
                }
                Ok(None) => {}
                Err(e) => return not_proven(e),
            }
        };
        let leftover = head.split_off(body_start);
        drop(head);

        {
            let mut g = self.shared.lock();
            g.state = RemoteState::Connected {
                since: Instant::now(),
            };
            // Whatever the previous connection left is a break.
            g.break_pending = g.counters.connects > 1;
        }
        self.resync.reset();
        let _ = s.set_read_timeout(Some(stall));
        let mut body = BodyDecoder::new(framing);
        let started = Instant::now();
        let mut first_packet: Option<Instant> = None;
        let mut last_packet = started;
        let mut body_bytes = 0u64;
        let proven = |first: Option<Instant>| first.is_some_and(|t| t.elapsed() >= BACKOFF_RESET);

        let mut pending = leftover;
        if body.done() {
            // Content-Length: 0.
            return not_proven(RemoteError::Ended(body.end_words()));
        }
        loop {
            self.hb.beat();
            if self.shared.stopping() || !self.wanted() {
                return Ending {
                    err: RemoteError::Ended("source stopped".into()),
                    proven: true,
                };
            }
            let n = if !pending.is_empty() {
                let n = pending.len().min(self.buf.len());
                self.buf[..n].copy_from_slice(&pending[..n]);
                pending.drain(..n);
                n
            } else {
                match s.read(&mut self.buf) {
                    Ok(0) => {
                        let err = match body.at_eof() {
                            Ok(what) => RemoteError::Ended(what),
                            Err(what) => RemoteError::Truncated(what),
                        };
                        return Ending {
                            err,
                            proven: proven(first_packet),
                        };
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if is_timeout(&e) => {
                        return Ending {
                            err: RemoteError::Stalled {
                                ms: stall.as_millis() as u64,
                                packets_lost_sync: false,
                            },
                            proven: proven(first_packet),
                        }
                    }
                    Err(e) => {
                        return Ending {
                            err: io_err("read body", e),
                            proven: proven(first_packet),
                        }
                    }
                }
            };
            self.packets.clear();
            let (resync, packets) = (&mut self.resync, &mut self.packets);
            let mut got = 0u64;
            let status = body.feed(&self.buf[..n], |b| {
                got += b.len() as u64;
                resync.push(b, packets);
            });
            body_bytes += got;
            let now = Instant::now();
            let npk = self.packets.len();
            if npk > 0 {
                first_packet.get_or_insert(now);
                last_packet = now;
            }
            self.publish(got);
            if let Err(what) = status {
                return Ending {
                    err: RemoteError::BadResponse(what),
                    proven: proven(first_packet),
                };
            }
            if first_packet.is_none() && body_bytes >= self.cfg.probe_bytes as u64 {
                return not_proven(RemoteError::NotTs(format!(
                    "no MPEG-TS sync (0x47 every 188 bytes) in the first {body_bytes} bytes"
                )));
            }
            if now.duration_since(last_packet) > stall {
                let err = if first_packet.is_none() {
                    RemoteError::NotTs(format!(
                        "no MPEG-TS packet in {body_bytes} bytes over {} ms",
                        now.duration_since(started).as_millis()
                    ))
                } else {
                    RemoteError::Stalled {
                        ms: now.duration_since(last_packet).as_millis() as u64,
                        packets_lost_sync: true,
                    }
                };
                return Ending {
                    err,
                    proven: proven(first_packet),
                };
            }
            if body.done() {
                return Ending {
                    err: RemoteError::Ended(body.end_words()),
                    proven: proven(first_packet),
                };
            }
        }
    }

    /// Queue the packets aligned by the last feed, dropping the oldest if
    /// the reader is behind.
    fn publish(&mut self, body_bytes: u64) {
        let mut g = self.shared.lock();
        g.counters.bytes += body_bytes;
        g.counters.bytes_skipped = self.resync.stats.bytes_skipped;
        g.counters.sync_losses = self.resync.stats.sync_losses;
        g.resync = self.resync.stats;
        if self.packets.is_empty() {
            return;
        }
        let n = self.packets.len();
        g.counters.packets += (n / PACKET_SIZE) as u64;
        let cap = self.cfg.queue_bytes.max(n);
        while g.queued_bytes + n > cap {
            let Some(old) = g.queue.pop_front() else {
                break;
            };
            g.queued_bytes -= old.data.len();
            g.counters.queue_drops += (old.data.len() / PACKET_SIZE) as u64;
            g.break_pending = true;
        }
        let discontinuity = std::mem::take(&mut g.break_pending);
        g.queue.push_back(Chunk {
            data: self.packets.clone(),
            discontinuity,
        });
        g.queued_bytes += n;
        drop(g);
        self.shared.data.notify_all();
    }
}

fn backoff_ms(min: u64, max: u64, failures: u32) -> u64 {
    let min = min.max(1);
    let shift = failures.saturating_sub(1).min(32);
    min.saturating_mul(1u64 << shift).min(max.max(min))
}

fn count(c: &mut RemoteCounters, e: &RemoteError) {
    match e {
        RemoteError::Resolve { .. }
        | RemoteError::ConnectFailed { .. }
        | RemoteError::ConnectTimeout { .. } => c.connect_failures += 1,
        RemoteError::NoResponse { .. } | RemoteError::BadResponse(_) => c.bad_responses += 1,
        RemoteError::PeerNotLocal => {
            c.peer_not_local += 1;
            count_status(c, 503);
        }
        RemoteError::HttpStatus { status, .. } => count_status(c, *status),
        RemoteError::NotTs(_) => c.not_ts += 1,
        RemoteError::Stalled { .. } => c.stalls += 1,
        RemoteError::Truncated(_) => c.truncated += 1,
        RemoteError::Ended(_) => c.ends += 1,
        RemoteError::Io { .. } => c.io_errors += 1,
    }
}

fn count_status(c: &mut RemoteCounters, status: u16) {
    let key = if c.http_errors.contains_key(&status) || c.http_errors.len() < MAX_STATUS_KEYS {
        status
    } else {
        0
    };
    *c.http_errors.entry(key).or_insert(0) += 1;
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_err(what: &'static str, e: io::Error) -> RemoteError {
    RemoteError::Io {
        what,
        err: e.to_string(),
    }
}

/// Connect with a timeout, SO_RCVBUF set before the handshake (the window
/// scale is negotiated in the SYN, so a buffer set after connect cannot use
/// its full size on a long fat path). Returns the effective SO_RCVBUF.
fn connect_with(
    addr: SocketAddr,
    timeout: Duration,
    rcvbuf: Option<usize>,
) -> io::Result<(TcpStream, Option<usize>)> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{
        connect, getsockopt, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
        SockaddrIn, SockaddrIn6,
    };
    use std::os::fd::{AsFd, AsRawFd};

    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let mut effective = None;
    if let Some(n) = rcvbuf {
        setsockopt(&fd, sockopt::RcvBuf, &n)?;
        effective = getsockopt(&fd, sockopt::RcvBuf).ok();
    }
    let r = match addr {
        SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    match r {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let ms = PollTimeout::try_from(left.as_millis().max(1) as u64)
                    .unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, ms) {
                    Ok(0) => continue,
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let err = getsockopt(&fd, sockopt::SocketError)?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let s = TcpStream::from(fd);
    s.set_nonblocking(false)?;
    Ok((s, effective))
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the peer closes.
    Close,
}

/// Parse a complete response head in `buf`: Ok(None) if incomplete, else
/// (offset of the body, framing) for a 200 carrying something that may be
/// MPEG-TS, or the error in words.
pub fn parse_head(buf: &[u8], origin_local: bool) -> Result<Option<(usize, Framing)>, RemoteError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(RemoteError::BadResponse("more than 64 header lines".into()))
        }
        Err(e) => {
            return Err(RemoteError::BadResponse(format!(
                "not HTTP ({e}; starts with {})",
                printable(&buf[..buf.len().min(24)])
            )))
        }
    };
    let status = r.code.unwrap_or(0);
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if status != 200 {
        if status == 503 && origin_local {
            return Err(RemoteError::PeerNotLocal);
        }
        let location = if (300..400).contains(&status) {
            header("location").map(|l| redact_url(&printable(l.as_bytes())))
        } else {
            None
        };
        return Err(RemoteError::HttpStatus {
            status,
            reason: printable(r.reason.unwrap_or("").as_bytes()),
            location,
        });
    }
    if let Some(ct) = header("content-type") {
        let t = ct.to_ascii_lowercase();
        if t.starts_with("text/")
            || t.contains("html")
            || t.contains("json")
            || t.contains("xml")
            || t.contains("mpegurl")
            || t.starts_with("image/")
            || t.starts_with("audio/mpeg")
        {
            let ty = t.split(';').next().unwrap_or("").trim();
            let ty = printable(ty.as_bytes());
            return Err(RemoteError::NotTs(format!("got {}", ty.trim_matches('"'))));
        }
    }
    if let Some(ce) = header("content-encoding") {
        if !ce.eq_ignore_ascii_case("identity") {
            return Err(RemoteError::BadResponse(format!(
                "compressed body (Content-Encoding: {}) is not supported",
                printable(ce.as_bytes())
            )));
        }
    }
    let framing = if let Some(te) = header("transfer-encoding") {
        let last = te
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if last != "chunked" || te.contains(',') {
            return Err(RemoteError::BadResponse(format!(
                "Transfer-Encoding {} is not supported (only chunked)",
                printable(te.as_bytes())
            )));
        }
        Framing::Chunked
    } else if let Some(cl) = header("content-length") {
        match cl.parse::<u64>() {
            Ok(n) => Framing::Length(n),
            Err(_) => {
                return Err(RemoteError::BadResponse(format!(
                    "bad Content-Length {}",
                    printable(cl.as_bytes())
                )))
            }
        }
    } else {
        Framing::Close
    };
    Ok(Some((n, framing)))
}

/// Untrusted bytes for an error message: printable ASCII, others escaped,
/// at most 64 characters.
fn printable(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(64) {
        if (0x20..0x7F).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > 64 {
        s.push('…');
    }
    format!("\"{s}\"")
}

/// Body framing: Content-Length, chunked or close-delimited, fed any
/// split of the bytes; bounded (a chunk-size line of at most 1 KiB).
#[derive(Debug)]
pub struct BodyDecoder {
    framing: Framing,
    /// Body bytes handed out.
    total: u64,
    chunk: ChunkState,
    line: Vec<u8>,
    trailers: usize,
    /// Size of the chunk being read and what is left of it.
    chunk_size: u64,
    left: u64,
    chunks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data,
    /// Expecting the CRLF after a chunk's data (how many of its 2 bytes
    /// seen).
    DataEnd(u8),
    Trailer,
    Done,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        BodyDecoder {
            framing,
            total: 0,
            chunk: ChunkState::Size,
            line: Vec::new(),
            trailers: 0,
            chunk_size: 0,
            left: 0,
            chunks: 0,
        }
    }

    /// The body is complete (Content-Length reached, last chunk read).
    pub fn done(&self) -> bool {
        match self.framing {
            Framing::Length(n) => self.total >= n,
            Framing::Chunked => self.chunk == ChunkState::Done,
            Framing::Close => false,
        }
    }

    fn end_words(&self) -> String {
        match self.framing {
            Framing::Length(n) => format!("all {n} bytes of the Content-Length received"),
            Framing::Chunked => format!("last chunk received after {} bytes", self.total),
            Framing::Close => format!("peer closed after {} bytes", self.total),
        }
    }

    /// The peer closed: Ok(words) if the body was complete, else why it is
    /// truncated.
    pub fn at_eof(&self) -> Result<String, String> {
        match self.framing {
            Framing::Close => Ok(self.end_words()),
            _ if self.done() => Ok(self.end_words()),
            Framing::Length(n) => Err(format!(
                "connection closed after {} of {n} bytes (Content-Length)",
                self.total
            )),
            Framing::Chunked => Err(match self.chunk {
                ChunkState::Data => format!(
                    "connection closed inside a chunk ({} of {} bytes) after {} bytes",
                    self.chunk_size - self.left,
                    self.chunk_size,
                    self.total
                ),
                _ => format!(
                    "connection closed before the last chunk after {} bytes",
                    self.total
                ),
            }),
        }
    }

    /// Decode `input`; `out` gets body bytes. Err: the framing is broken
    /// (in words); what came before was handed out.
    pub fn feed(&mut self, input: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), String> {
        match self.framing {
            Framing::Close => {
                self.total += input.len() as u64;
                out(input);
                Ok(())
            }
            Framing::Length(n) => {
                let left = n.saturating_sub(self.total);
                let take = (input.len() as u64).min(left) as usize;
                self.total += take as u64;
                if take > 0 {
                    out(&input[..take]);
                }
                Ok(())
            }
            Framing::Chunked => self.feed_chunked(input, &mut out),
        }
    }

    fn feed_chunked(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        while !input.is_empty() {
            match self.chunk {
                ChunkState::Done => return Ok(()),
                ChunkState::Data => {
                    let take = (input.len() as u64).min(self.left) as usize;
                    out(&input[..take]);
                    self.total += take as u64;
                    self.left -= take as u64;
                    input = &input[take..];
                    if self.left == 0 {
                        self.chunk = ChunkState::DataEnd(0);
                    }
                }
                ChunkState::DataEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if input[0] != want {
                        return Err(format!(
                            "chunk {} not followed by CRLF (got {})",
                            self.chunks,
                            printable(&input[..input.len().min(8)])
                        ));
                    }
                    input = &input[1..];
                    self.chunk = if seen == 0 {
                        ChunkState::DataEnd(1)
                    } else {
                        ChunkState::Size
                    };
                }
                ChunkState::Size | ChunkState::Trailer => {
                    let nl = input.iter().position(|&b| b == b'\n');
                    let take = nl.map_or(input.len(), |i| i + 1);
                    if self.line.len() + take > MAX_CHUNK_LINE {
                        return Err(format!(
                            "chunk-size or trailer line longer than {MAX_CHUNK_LINE} bytes"
                        ));
                    }
                    self.line.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if nl.is_none() {
                        continue;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    line.pop(); // \n
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if self.chunk == ChunkState::Size {
                        self.on_size_line(&line)?;
                    } else if line.is_empty() {
                        self.chunk = ChunkState::Done;
                    } else {
                        self.trailers += 1;
                        if self.trailers > MAX_TRAILERS {
                            return Err(format!("more than {MAX_TRAILERS} trailer lines"));
                        }
                    }
                    line.clear();
                    self.line = line;
                }
            }
        }
        Ok(())
    }

    fn on_size_line(&mut self, line: &[u8]) -> Result<(), String> {
        let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let digits = digits.trim_ascii();
        let bad = || format!("bad chunk size line {}", printable(line));
        if digits.is_empty() || digits.len() > 15 {
            return Err(bad());
        }
        let mut size = 0u64;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or_else(bad)?;
            size = size * 16 + u64::from(v);
        }
        self.chunks += 1;
        if size == 0 {
            self.chunk = ChunkState::Trailer;
        } else {
            self.chunk_size = size;
            self.left = size;
            self.chunk = ChunkState::Data;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing_and_origin() {
        let u = HttpUrl::parse("http://10.0.0.2:8080/stream/news", true).unwrap();
        assert_eq!(u.host, "10.0.0.2");
        assert_eq!(u.port, 8080);
        assert_eq!(u.target, "/stream/news?origin=local");
        assert_eq!(u.host_header(), "10.0.0.2:8080");
        let u = HttpUrl::parse("http://peer/stream/news?token=x", true).unwrap();
        assert_eq!(
            (u.port, u.target.as_str()),
            (80, "/stream/news?token=x&origin=local")
        );
        assert_eq!(u.host_header(), "peer");
        let u = HttpUrl::parse("http://peer/a?origin=any", true).unwrap();
        assert_eq!(u.target, "/a?origin=any");
        let u = HttpUrl::parse("http://peer", true).unwrap();
        assert_eq!(u.target, "/?origin=local");
        let u = HttpUrl::parse("http://peer/a?", true).unwrap();
        assert_eq!(u.target, "/a?origin=local");
        let u = HttpUrl::parse("HTTP://[::1]:9000/x#frag", false).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9000, "/x")
        );
        assert_eq!(u.host_header(), "[::1]:9000");
        let e = HttpUrl::parse("https://peer/stream/a", true).unwrap_err();
        assert!(e.contains("https is not supported"), "{e}");
        for bad in [
            "ftp://x/",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://[::1/",
        ] {
            assert!(HttpUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_is_hidden() {
        assert_eq!(
            redact_url("http://h/s?a=1&token=secret&b=2"),
            "http://h/s?a=1&token=<hidden>&b=2"
        );
        let mut c = RemoteSourceConfig::new("http://h/s?token=secret");
        c.token = Some("bearer-secret".into());
        let d = format!("{c:?}");
        assert!(!d.contains("secret"), "{d}");
    }

    #[test]
    fn heads() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\nxx";
        assert_eq!(parse_head(ok, true).unwrap(), Some((45, Framing::Close)));
        assert_eq!(parse_head(&ok[..20], true).unwrap(), None);
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n";
        assert_eq!(
            parse_head(cl, true).unwrap().unwrap().1,
            Framing::Length(2_147_483_648)
        );
        let ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(ch, true).unwrap().unwrap().1, Framing::Chunked);
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n";
        assert_eq!(
            parse_head(html, true).unwrap_err().to_string(),
            "not MPEG-TS: got text/html"
        );
        let guard = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(
            parse_head(guard, true).unwrap_err().to_string(),
            "peer has no local source (503)"
        );
        assert_eq!(
            parse_head(guard, false).unwrap_err().to_string(),
            "HTTP 503 \"Service Unavailable\""
        );
        let redir = b"HTTP/1.1 302 Found\r\nLocation: http://x/y?token=s\r\n\r\n";
        let e = parse_head(redir, true).unwrap_err().to_string();
        assert!(
            e.contains("redirects are not followed") && !e.contains("=s"),
            "{e}"
        );
        let e = parse_head(b"HTTP/1.1 401 Unauthorized\r\n\r\n", true).unwrap_err();
        assert!(e.to_string().contains("token refused"), "{e}");
        let e = parse_head(b"\x47\x00\x11\x10garbage\r\n\r\n", true).unwrap_err();
        assert!(
            e.to_string().starts_with("bad HTTP response: not HTTP"),
            "{e}"
        );
        let e = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true).unwrap_err();
        assert!(e.to_string().contains("bad Content-Length"), "{e}");
        let gz = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(parse_head(gz, true).is_err());
    }

    fn chunked(input: &[u8], split: usize) -> (Vec<u8>, Result<(), String>, BodyDecoder) {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut out = Vec::new();
        for c in input.chunks(split) {
            if let Err(e) = d.feed(c, |b| out.extend_from_slice(b)) {
                return (out, Err(e), d);
            }
        }
        (out, Ok(()), d)
    }

    #[test]
    fn chunked_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\nIGNORED";
        for split in [1, 2, 3, 7, 100] {
            let (out, r, d) = chunked(body, split);
            assert_eq!(r, Ok(()));
            assert_eq!(out, b"hello, world", "split {split}");
            assert!(d.done());
            assert!(d.at_eof().is_ok());
        }
    }

    #[test]
    fn chunked_errors_in_words() {
        let (_, r, _) = chunked(b"zz\r\n", 4);
        assert!(r.unwrap_err().starts_with("bad chunk size line"));
        let (_, r, _) = chunked(b"3\r\nabcX", 100);
        assert!(r.unwrap_err().contains("not followed by CRLF"));
        let (_, r, _) = chunked(&[b'1'; 2000], 100);
        assert!(r.unwrap_err().contains("longer than 1024"));
        let (_, r, _) = chunked(b"ffffffffffffffff\r\n", 100);
        assert!(r.is_err(), "16 hex digits would overflow the sum");
        // Truncated inside a chunk.
        let (out, r, d) = chunked(b"10\r\nabc", 100);
        assert_eq!((out.as_slice(), r), (&b"abc"[..], Ok(())));
        let e = d.at_eof().unwrap_err();
        assert!(e.contains("inside a chunk (3 of 16 bytes)"), "{e}");
        let (_, _, d) = chunked(b"3\r\nabc\r\n", 100);
        assert!(d.at_eof().unwrap_err().contains("before the last chunk"));
    }

    #[test]
    fn content_length_streams_without_preallocating() {
        let mut d = BodyDecoder::new(Framing::Length(u64::MAX));
        let mut n = 0;
        d.feed(&[0u8; 1000], |b| n += b.len()).unwrap();
        assert_eq!(n, 1000);
        assert!(!d.done());
        assert!(d.at_eof().unwrap_err().contains("after 1000 of"));
        let mut d = BodyDecoder::new(Framing::Length(10));
        let mut got = Vec::new();
        d.feed(b"0123456789abc", |b| got.extend_from_slice(b))
            .unwrap();
        assert_eq!(got, b"0123456789");
        assert!(d.done());
    }

    #[test]
    fn backoff_is_bounded_and_doubles() {
        assert_eq!(backoff_ms(200, 5000, 1), 200);
        assert_eq!(backoff_ms(200, 5000, 2), 400);
        assert_eq!(backoff_ms(200, 5000, 5), 3200);
        assert_eq!(backoff_ms(200, 5000, 6), 5000);
        assert_eq!(backoff_ms(200, 5000, u32::MAX), 5000);
        assert_eq!(backoff_ms(0, 0, 3), 1);
    }

    #[test]
    fn every_failure_has_one_reason() {
        let mut c = RemoteCounters::default();
        let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let errors = [
            RemoteError::ConnectFailed {
                addr,
                err: "refused".into(),
            },
            RemoteError::HttpStatus {
                status: 404,
                reason: "Not Found".into(),
                location: None,
            },
            RemoteError::PeerNotLocal,
            RemoteError::NoResponse { ms: 1000, got: 0 },
            RemoteError::NotTs("got text/html".into()),
            RemoteError::Stalled {
                ms: 1000,
                packets_lost_sync: false,
            },
            RemoteError::Truncated("x".into()),
            RemoteError::Ended("y".into()),
            RemoteError::Io {
                what: "read body",
                err: "reset".into(),
            },
        ];
        for e in &errors {
            count(&mut c, e);
        }
        let f = c.failures();
        assert_eq!(f.map(|(n, _)| n), FAILURE_REASONS);
        // One each: the 503 of the loop guard is not also an http_error.
        assert_eq!(f.map(|(_, v)| v), [1; 9], "{f:?}");
    }

    #[test]
    fn words_say_why_when_not_connected() {
        let mut st = RemoteStatus {
            url: "http://h/s".into(),
            state: "backing off 400 ms after …".into(),
            connected: false,
            last_error: Some("not MPEG-TS: got text/html".into()),
            rcvbuf_bytes: None,
            queued_bytes: 0,
            counters: RemoteCounters::default(),
        };
        assert_eq!(st.words(), "not MPEG-TS: got text/html");
        st.last_error = None;
        st.state = "connecting (attempt 1)".into();
        assert_eq!(
            st.failure_words().as_deref(),
            Some("connecting (attempt 1)")
        );
        st.connected = true;
        st.state = "connected for 3.2 s".into();
        st.last_error = Some("old".into());
        assert_eq!(st.failure_words(), None);
        assert_eq!(st.words(), "connected for 3.2 s");
    }

    #[test]
    fn status_keys_are_bounded() {
        let mut c = RemoteCounters::default();
        for s in 400..500 {
            count_status(&mut c, s);
        }
        assert!(c.http_errors.len() <= MAX_STATUS_KEYS + 1);
        assert_eq!(c.http_errors.values().sum::<u64>(), 100);
    }
}
