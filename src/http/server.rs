//! The event loop: accept, parse requests, route, and pump stream clients
//! from their fan-out readers. Single thread; every socket non-blocking.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::access::RouteClass;
use super::page;
use super::refusals::{PerAddress, RateLog, Why};
use super::tuning::{self, Applied};
use super::{Backend, HttpConfig, Shared};
use crate::fanout::{Next, NotifyId, Piece, Reader, Ring, RingStatsSnapshot, StartAt};
use crate::monitor::metrics::{escape_label, family, Kind as MetricKind};

const LISTENER: Token = Token(0);
pub(super) const WAKER: Token = Token(1);
const FIRST_CLIENT: usize = 2;
/// How often timeouts are checked, and the poll timeout.
const TICK: Duration = Duration::from_millis(100);
/// Accept pause after EMFILE/ENFILE: long enough for clients to leave.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A response larger than this stops pipelined parsing until it drains.
const OUT_HIGH_WATER: usize = 256 << 10;
/// An output buffer that grew past this is freed when a sweep finds it
/// empty, so idle keep-alive connections hold no large buffer (freeing it
/// at every drain instead would make a busy pipeliner's buffer grow again
/// and again, and fragment the heap).
const OUT_KEEP_CAPACITY: usize = 64 << 10;
/// Input read from one connection per wake-up; then the others get their
/// turn and this one is driven again after the next poll.
const READ_BUDGET: usize = 256 << 10;
/// After our last byte, how long we drain a closing client's input so the
/// kernel does not turn unread input into a RST that eats the response.
const LINGER: Duration = Duration::from_secs(2);
/// Connections beyond max_clients that still get a 503 (then dropped).
const MAX_CLIENTS_OVERFLOW: usize = 64;
/// Headers in one request head; more is answered 431.
const MAX_HEADERS: usize = 48;

#[derive(Default)]
struct Stats {
    requests: BTreeMap<(&'static str, u16), u64>,
    bad_requests: u64,
    refused: u64,
    bytes_sent: u64,
    accepted: u64,
    accept_emfile: u64,
    accept_aborted: u64,
    accept_other: u64,
    refused_not_allowed: u64,
    refused_per_address: u64,
    cut_lagging: u64,
    cut_write_timeout: u64,
    cut_max_clients: u64,
    cut_request_timeout: u64,
    cut_header_too_large: u64,
    cut_idle: u64,
    cut_only_refusals: u64,
    cut_not_local: u64,
    /// Settings of `[server]` tcp_congestion / send_buffer_bytes the
    /// kernel refused on an accepted connection.
    tuning_errors: u64,
}

/// The listener's TCP settings as the kernel has them.
struct ListenerTcp {
    /// Read back from the last connection accepted, or from a probe
    /// socket before the first.
    kernel: Applied,
    from_probe: bool,
    /// The last refusal, in words.
    last_error: Option<String>,
}

struct StreamClient {
    channel: String,
    reader: Reader,
    cur: Option<Piece>,
    cur_pos: usize,
    bytes: u64,
    /// The reader said Pending: pump again when a ring publishes.
    waiting: bool,
    /// Asked with `?origin=local` (a peer site): served only while the
    /// channel is fed by a source of this box, ended as soon as it is not.
    local_only: bool,
}

enum Kind {
    Requests,
    Stream(Box<StreamClient>),
    /// Output done, write side shut: drain input until EOF or `until`.
    Closing {
        until: Instant,
    },
}

struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    kind: Kind,
    connected: Instant,
    /// When the connection started waiting for its current request.
    since_request: Instant,
    last_progress: Instant,
    close_after_out: bool,
    user_agent: String,
    eof: bool,
    /// Had a 2xx answer: a keep-alive connection that had none is closed
    /// after a 403 or 404.
    answered: bool,
    /// Input read since this wake-up began (see READ_BUDGET).
    read_this_wake: usize,
    /// Stopped reading on the budget: drive again after the next poll.
    yielded: bool,
}

/// What to do with a connection after driving it.
#[derive(PartialEq, Eq)]
enum Fate {
    Keep,
    Close,
}

struct Request {
    head: bool,
    method: String,
    path: String,
    query: String,
    version: u8,
    host: Option<String>,
    user_agent: Option<String>,
    bearer: Option<String>,
    keep_alive: bool,
    has_body: bool,
}

pub(super) struct Server {
    poll: Poll,
    listener: TcpListener,
    listening: bool,
    paused_until: Option<Instant>,
    emfile_burst: u64,
    /// accept() failures (not EMFILE) since the last accepted connection.
    accept_failures: u64,
    cfg: HttpConfig,
    backend: Arc<dyn Backend>,
    shared: Arc<Shared>,
    waker: Arc<mio::Waker>,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    rings: HashMap<usize, (Arc<Ring>, NotifyId)>,
    stats: Stats,
    last_sweep: Instant,
    per_address: PerAddress,
    ratelog: RateLog,
    /// Connections that used their read budget and have more to do.
    again: Vec<Token>,
    tcp: ListenerTcp,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Server {
    pub(super) fn new(
        poll: Poll,
        mut listener: TcpListener,
        cfg: HttpConfig,
        backend: Arc<dyn Backend>,
        shared: Arc<Shared>,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Server> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        // What connections will get, shown before the first one comes
        // (the daemon reports a refusal with the config's line at start).
        let (kernel, errors) = tuning::probe(&cfg.tuning).unwrap_or_default();
        let tcp = ListenerTcp {
            kernel,
            from_probe: true,
            last_error: errors.first().map(|e| format!("{}: {e}", e.key())),
        };
        Ok(Server {
            poll,
            listener,
            listening: true,
            paused_until: None,
            emfile_burst: 0,
            accept_failures: 0,
            cfg,
            backend,
            shared,
            waker,
            conns: HashMap::new(),
            next_token: FIRST_CLIENT,
            rings: HashMap::new(),
            stats: Stats::default(),
            last_sweep: Instant::now(),
            per_address: PerAddress::default(),
            ratelog: RateLog::default(),
            again: Vec::new(),
            tcp,
        })
    }

    pub(super) fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let hb = self.cfg.heartbeat.clone();
        while !self.shared.stop.load(Ordering::SeqCst) {
            if let Some(hb) = &hb {
                hb.beat();
            }
            // Connections that yielded are driven again right after this
            // poll, so it must not wait.
            let timeout = if self.again.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("http: poll failed: {e}");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.pump_waiting(),
                    t => {
                        let readable = ev.is_readable() || ev.is_read_closed();
                        self.drive(t, readable);
                    }
                }
            }
            for t in std::mem::take(&mut self.again) {
                self.drive(t, true);
            }
            let now = Instant::now();
            if now.saturating_duration_since(self.last_sweep) >= TICK {
                self.last_sweep = now;
                self.sweep(now);
            }
        }
        for (ring, id) in self.rings.values() {
            ring.remove_notify(*id);
        }
        self.conns.clear();
    }

    fn accept(&mut self) {
        while self.listening {
            match self.listener.accept() {
                Ok((sock, peer)) => self.accepted(sock, peer),
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                    self.stats.accept_emfile += 1;
                    if self.emfile_burst == 0 {
                        log::warn!(
                            "http: accept: {e}; pausing accept for {ACCEPT_PAUSE:?}, serving {} clients",
                            self.conns.len()
                        );
                    }
                    self.emfile_burst += 1;
                    self.pause_accept();
                    return;
                }
                Err(e) if accept_error_is_the_peers(&e) => {
                    // That client is gone or was never let through; the
                    // next one may be fine: go on.
                    self.stats.accept_aborted += 1;
                    log::debug!("http: accept: {e}");
                }
                Err(e) => {
                    // ENOBUFS, ENOMEM and anything unknown: the kernel will
                    // fail the next call the same way; retrying at once
                    // would spin and starve every client.
                    self.stats.accept_other += 1;
                    let n = self.conns.len();
                    self.ratelog.note(Why::AcceptError, Instant::now(), || {
                        format!("accept: {e}; paused {ACCEPT_PAUSE:?}, serving {n} clients")
                    });
                    self.accept_failures += 1;
                    self.pause_accept();
                    return;
                }
            }
        }
    }

    /// Stop polling the listener for ACCEPT_PAUSE: the pending connection
    /// stays in the backlog and `sweep` registers the listener again.
    fn pause_accept(&mut self) {
        let _ = self.poll.registry().deregister(&mut self.listener);
        self.listening = false;
        self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    fn accepted(&mut self, mut sock: TcpStream, peer: SocketAddr) {
        if self.emfile_burst > 0 {
            log::info!(
                "http: accepting again after {} EMFILE/ENFILE refusals",
                self.emfile_burst
            );
            self.emfile_burst = 0;
        }
        if self.accept_failures > 0 {
            log::info!(
                "http: accepting again after {} accept() failures",
                self.accept_failures
            );
            self.accept_failures = 0;
        }
        self.stats.accepted += 1;
        let now = Instant::now();
        // A peer no route admits has nothing to ask: it gets no slot, no
        // buffer and no answer.
        let admitted = self
            .shared
            .access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admits_somewhere(peer.ip());
        if !admitted {
            self.stats.refused_not_allowed += 1;
            self.ratelog
                .note(Why::NotAllowed, now, || format!("{}", peer.ip()));
            return;
        }
        let limit = self.cfg.max_clients_per_address;
        if self.per_address.count(peer.ip()) >= limit {
            self.stats.refused_per_address += 1;
            self.ratelog.note(Why::PerAddress, now, || {
                format!("{} (max_clients_per_address = {limit})", peer.ip())
            });
            // A word for a client that is allowed but greedy; best effort
            // (a fresh socket's buffer takes it), then closed.
            const BODY: &str = "too many connections from this address\n";
            let _ = sock.write(
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                )
                .as_bytes(),
            );
            return;
        }
        let over = self.conns.len() >= self.cfg.max_clients;
        if over {
            self.stats.cut_max_clients += 1;
            let max = self.cfg.max_clients;
            self.ratelog.note(Why::MaxClients, now, || {
                format!("{} (max_clients = {max})", peer.ip())
            });
            // Answer 503 and linger briefly so the client reads it rather
            // than a RST; past a small overflow just drop the socket.
            if self.conns.len() >= self.cfg.max_clients + MAX_CLIENTS_OVERFLOW {
                return;
            }
        }
        let _ = sock.set_nodelay(true);
        self.tune(&sock, peer, now);
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            log::warn!("http: register {peer}: {e}");
            return;
        }
        let mut c = Conn {
            sock,
            peer,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            kind: Kind::Requests,
            connected: now,
            since_request: now,
            last_progress: now,
            close_after_out: false,
            user_agent: String::new(),
            eof: false,
            answered: false,
            read_this_wake: 0,
            yielded: false,
        };
        if over {
            respond(
                &mut c,
                1,
                503,
                "text/plain",
                b"too many clients\n",
                false,
                false,
            );
            c.kind = Kind::Closing {
                until: now + LINGER,
            };
        }
        self.per_address.add(peer.ip());
        self.conns.insert(token, c);
        self.drive(token, false);
    }

    /// `[server]` tcp_congestion and send_buffer_bytes on an accepted
    /// connection; a refusal is counted and logged (rate-limited), and the
    /// connection is served with the kernel's defaults.
    fn tune(&mut self, sock: &TcpStream, peer: SocketAddr, now: Instant) {
        let t = self
            .shared
            .tuning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (kernel, errors) = if t.is_empty() {
            (tuning::read_back(sock), Vec::new())
        } else {
            tuning::apply(sock, &t)
        };
        self.tcp.kernel = kernel;
        self.tcp.from_probe = false;
        for e in errors {
            self.stats.tuning_errors += 1;
            let words = format!("[server] {}: {e}", e.key());
            self.ratelog
                .note(Why::Tuning, now, || format!("{peer}: {words}"));
            self.tcp.last_error = Some(words);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            self.per_address.remove(c.peer.ip());
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    fn drive(&mut self, token: Token, readable: bool) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        c.read_this_wake = 0;
        c.yielded = false;
        let fate = self.drive_conn(&mut c, readable);
        if fate == Fate::Keep {
            if c.yielded && !self.again.contains(&token) {
                self.again.push(token);
            }
            self.conns.insert(token, c);
        } else {
            self.per_address.remove(c.peer.ip());
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    fn drive_conn(&mut self, c: &mut Conn, readable: bool) -> Fate {
        if readable && self.read_input(c) == Fate::Close {
            return Fate::Close;
        }
        loop {
            if let Kind::Requests = c.kind {
                if self.process_requests(c) == Fate::Close {
                    return Fate::Close;
                }
            }
            let unparsed = c.inbuf.len();
            match self.write_out(c) {
                Ok(true) => {}
                Ok(false) => return Fate::Keep,
                Err(()) => return Fate::Close,
            }
            // Output drained.
            if c.close_after_out {
                if c.eof {
                    return Fate::Close;
                }
                let _ = c.sock.shutdown(Shutdown::Write);
                c.kind = Kind::Closing {
                    until: Instant::now() + LINGER,
                };
                c.close_after_out = false;
                return Fate::Keep;
            }
            match c.kind {
                Kind::Stream(_) => return self.pump_stream(c),
                Kind::Closing { .. } => return Fate::Keep,
                Kind::Requests => {
                    // More pipelined requests may wait in the socket, left
                    // unread while output was high.
                    if !c.eof && self.read_input(c) == Fate::Close {
                        return Fate::Close;
                    }
                    // Nothing new since the parser last stopped, or no
                    // complete head: wait for more input (or close at EOF).
                    if c.inbuf.len() == unparsed || !has_complete_head(&c.inbuf) {
                        return if c.eof { Fate::Close } else { Fate::Keep };
                    }
                }
            }
        }
    }

    /// Read until WouldBlock, until the head limit for request parsing, or
    /// until this wake-up's budget is spent (then `yielded`).
    fn read_input(&mut self, c: &mut Conn) -> Fate {
        let mut buf = [0u8; 8192];
        loop {
            if matches!(c.kind, Kind::Requests)
                && c.inbuf.len() > self.cfg.max_header_bytes + buf.len()
            {
                // Enough to decide; the rest waits in the socket.
                return Fate::Keep;
            }
            if c.read_this_wake >= READ_BUDGET {
                // A client that writes as fast as we read would otherwise
                // keep the loop here; the rest is read on the next round.
                c.yielded = true;
                return Fate::Keep;
            }
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    c.eof = true;
                    // A request client may half-close after its request:
                    // answer what it sent, then close.
                    return match c.kind {
                        Kind::Requests => Fate::Keep,
                        _ => Fate::Close,
                    };
                }
                Ok(n) => {
                    c.read_this_wake += n;
                    if let Kind::Requests = c.kind {
                        c.inbuf.extend_from_slice(&buf[..n]);
                    }
                    // Stream and closing clients have nothing more to say:
                    // their input is discarded.
                }
                Err(e) if would_block(&e) => return Fate::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Fate::Close,
            }
        }
    }

    /// Ok(true): all output written; Ok(false): the socket is full.
    fn write_out(&mut self, c: &mut Conn) -> Result<bool, ()> {
        while c.out_pos < c.out.len() {
            match c.sock.write(&c.out[c.out_pos..]) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    c.out_pos += n;
                    c.last_progress = Instant::now();
                    self.stats.bytes_sent += n as u64;
                }
                Err(e) if would_block(&e) => {
                    // Keep only what is unsent: a client that pipelines and
                    // reads slowly never lets `out` drain, and what it has
                    // read must not pile up in front. Moving the unsent part
                    // when it is no longer than the sent one costs at most
                    // one copy per byte sent, and `out` stays under twice
                    // the unsent part.
                    if c.out_pos >= c.out.len() - c.out_pos {
                        c.out.drain(..c.out_pos);
                        c.out_pos = 0;
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        Ok(true)
    }

    fn pump_waiting(&mut self) {
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.kind, Kind::Stream(s) if s.waiting))
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            self.drive(t, false);
        }
    }

    /// Write ring data until the socket is full or the reader is pending.
    fn pump_stream(&mut self, c: &mut Conn) -> Fate {
        let Kind::Stream(s) = &mut c.kind else {
            return Fate::Keep;
        };
        loop {
            if s.cur.is_none() {
                match s.reader.next() {
                    Next::Data(_) if s.local_only && !self.backend.fed_locally(&s.channel) => {
                        // The loop guard after the answer: once the channel
                        // plays a remote source or the slate, a peer that
                        // asked for our own capture gets nothing more (it
                        // reconnects and is answered 503), so two sites
                        // never relay each other's relay or slate.
                        self.stats.cut_not_local += 1;
                        log::info!(
                            "http: {} on '{}': no local source on air any more, \
                             the peer's origin=local stream ended after {} bytes",
                            c.peer,
                            s.channel,
                            s.bytes
                        );
                        let _ = c.sock.shutdown(Shutdown::Write);
                        c.kind = Kind::Closing {
                            until: Instant::now() + LINGER,
                        };
                        return Fate::Keep;
                    }
                    Next::Data(p) => {
                        s.cur = Some(p);
                        s.cur_pos = 0;
                        s.waiting = false;
                    }
                    Next::Pending => {
                        s.waiting = true;
                        // Nothing to send is not a lack of progress.
                        c.last_progress = Instant::now();
                        return Fate::Keep;
                    }
                    Next::Lagged { behind_bytes } => {
                        self.stats.cut_lagging += 1;
                        log::info!(
                            "http: {} on '{}' cut: {behind_bytes} bytes behind the ring",
                            c.peer,
                            s.channel
                        );
                        return Fate::Close;
                    }
                    Next::Closed => {
                        // The channel was removed: end the body (EOF), and
                        // let go of the ring now.
                        let why = s
                            .reader
                            .ring()
                            .held()
                            .unwrap_or_else(|| "channel removed".into());
                        log::info!(
                            "http: {} on '{}': {why}; stream ended after {} bytes",
                            c.peer,
                            s.channel,
                            s.bytes
                        );
                        let _ = c.sock.shutdown(Shutdown::Write);
                        c.kind = Kind::Closing {
                            until: Instant::now() + LINGER,
                        };
                        return Fate::Keep;
                    }
                }
            }
            let Some(piece) = &s.cur else {
                continue;
            };
            let data = piece.as_ref();
            // Straight from the shared chunk: no copy.
            match c.sock.write(&data[s.cur_pos..]) {
                Ok(0) => return Fate::Close,
                Ok(n) => {
                    s.cur_pos += n;
                    s.bytes += n as u64;
                    self.stats.bytes_sent += n as u64;
                    c.last_progress = Instant::now();
                    if s.cur_pos >= data.len() {
                        s.cur = None;
                    }
                }
                Err(e) if would_block(&e) => return Fate::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Fate::Close,
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        // Limits a reload changed (`ServerHandle::set_limits`).
        self.cfg.write_timeout =
            Duration::from_millis(self.shared.write_timeout_ms.load(Ordering::Relaxed));
        self.cfg.max_clients = self.shared.max_clients.load(Ordering::Relaxed);
        self.cfg.max_clients_per_address =
            self.shared.max_clients_per_address.load(Ordering::Relaxed);
        // Rings nobody but this loop holds (channel removed, last client
        // gone): stop watching them so they are freed.
        self.rings.retain(|_, (ring, id)| {
            let used = Arc::strong_count(ring) > 1;
            if !used {
                ring.remove_notify(*id);
            }
            used
        });
        self.ratelog.flush(now);
        if let Some(t) = self.paused_until {
            if now >= t {
                self.paused_until = None;
                match self.poll.registry().register(
                    &mut self.listener,
                    LISTENER,
                    Interest::READABLE,
                ) {
                    Ok(()) => {
                        self.listening = true;
                        self.accept();
                    }
                    Err(e) => {
                        log::warn!("http: re-register listener: {e}");
                        self.paused_until = Some(now + ACCEPT_PAUSE);
                    }
                }
            }
        }
        let mut dead = Vec::new();
        // A client whose socket is full never asks its reader for more, so
        // look for ones that fell off the ring here.
        for (t, c) in self.conns.iter_mut() {
            if let Kind::Stream(s) = &mut c.kind {
                if let Some(behind) = s.reader.check_lagging() {
                    self.stats.cut_lagging += 1;
                    log::info!(
                        "http: {} on '{}' cut: {behind} bytes behind the ring",
                        c.peer,
                        s.channel
                    );
                    dead.push(*t);
                }
            }
        }
        for t in dead.drain(..) {
            self.close(t);
        }
        for c in self.conns.values_mut() {
            if c.out.is_empty() && c.out.capacity() > OUT_KEEP_CAPACITY {
                c.out = Vec::new();
            }
        }
        for (t, c) in self.conns.iter() {
            let stalled = now.saturating_duration_since(c.last_progress) > self.cfg.write_timeout;
            match &c.kind {
                Kind::Stream(s) => {
                    let has_data = !s.waiting || c.out_pos < c.out.len();
                    if has_data && stalled {
                        s.reader.note_cut_timeout();
                        self.stats.cut_write_timeout += 1;
                        log::info!(
                            "http: {} on '{}' cut: no write progress for {:?}",
                            c.peer,
                            s.channel,
                            self.cfg.write_timeout
                        );
                        dead.push(*t);
                    }
                }
                Kind::Requests => {
                    if c.out_pos < c.out.len() {
                        if stalled {
                            self.stats.cut_write_timeout += 1;
                            dead.push(*t);
                        }
                    } else if now.saturating_duration_since(c.since_request)
                        > self.cfg.request_timeout
                    {
                        if c.inbuf.is_empty() {
                            // Never asked, or a keep-alive between requests.
                            self.stats.cut_idle += 1;
                            log::debug!("http: {} closed: idle", c.peer);
                        } else {
                            self.stats.cut_request_timeout += 1;
                            let timeout = self.cfg.request_timeout;
                            self.ratelog.note(Why::RequestTimeout, now, || {
                                format!(
                                    "{} sent {} bytes of a head in {timeout:?}",
                                    c.peer,
                                    c.inbuf.len()
                                )
                            });
                        }
                        dead.push(*t);
                    }
                }
                Kind::Closing { until } => {
                    if now >= *until || (c.out_pos < c.out.len() && stalled) {
                        dead.push(*t);
                    }
                }
            }
        }
        for t in dead {
            self.close(t);
        }
    }

    /// Parse and answer complete requests in `inbuf` while output is small.
    fn process_requests(&mut self, c: &mut Conn) -> Fate {
        while matches!(c.kind, Kind::Requests)
            && !c.close_after_out
            && c.out.len() - c.out_pos < OUT_HIGH_WATER
        {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let parsed = req.parse(&c.inbuf);
            let n = match parsed {
                Ok(httparse::Status::Complete(n)) if n <= self.cfg.max_header_bytes => n,
                Ok(httparse::Status::Complete(_)) => {
                    self.too_large(c);
                    return Fate::Keep;
                }
                Ok(httparse::Status::Partial) => {
                    if c.inbuf.len() > self.cfg.max_header_bytes {
                        self.too_large(c);
                    }
                    return Fate::Keep;
                }
                Err(httparse::Error::TooManyHeaders) => {
                    self.too_large(c);
                    return Fate::Keep;
                }
                Err(e) => {
                    self.stats.bad_requests += 1;
                    *self.stats.requests.entry(("bad", 400)).or_default() += 1;
                    self.ratelog.note(Why::BadRequest, Instant::now(), || {
                        format!("{} sent a malformed request ({e})", c.peer)
                    });
                    respond(c, 1, 400, "text/plain", b"bad request\n", false, false);
                    return Fate::Keep;
                }
            };
            let r = extract(&req);
            c.inbuf.drain(..n);
            c.since_request = Instant::now();
            if let Some(ua) = &r.user_agent {
                c.user_agent = ua.chars().take(200).collect();
            }
            self.route(c, r);
        }
        Fate::Keep
    }

    fn too_large(&mut self, c: &mut Conn) {
        self.stats.bad_requests += 1;
        self.stats.cut_header_too_large += 1;
        *self.stats.requests.entry(("bad", 431)).or_default() += 1;
        let (max, got) = (self.cfg.max_header_bytes, c.inbuf.len());
        self.ratelog.note(Why::HeadTooLarge, Instant::now(), || {
            format!(
                "{} sent a request head larger than {max} bytes or with more than {MAX_HEADERS} headers ({got} bytes so far)",
                c.peer
            )
        });
        c.inbuf.clear();
        respond(
            c,
            1,
            431,
            "text/plain",
            b"request header fields too large\n",
            false,
            false,
        );
    }

    /// Whether a 403 or 404 answer keeps a keep-alive connection: only when
    /// the client has had an answer on it. One that only ever gets refused
    /// (a scanner, a peer probing for routes) holds no slot.
    fn keep_after_refusal(&mut self, c: &Conn, keep: bool) -> bool {
        if keep && !c.answered {
            self.stats.cut_only_refusals += 1;
            return false;
        }
        keep
    }

    fn route(&mut self, c: &mut Conn, r: Request) {
        let (class, name): (Option<RouteClass>, &'static str) = match r.path.as_str() {
            p if p.starts_with("/stream/") => (Some(RouteClass::Stream), "stream"),
            "/playlist.m3u" => (Some(RouteClass::Playlist), "playlist"),
            "/metrics" => (Some(RouteClass::Metrics), "metrics"),
            "/status" => (Some(RouteClass::Status), "status"),
            // The status page: the same allow-list as /status.
            "/" | "/index.html" => (Some(RouteClass::Status), "page"),
            "/epg.xml" => (Some(RouteClass::Epg), "epg"),
            p if p.starts_with("/control/") => (Some(RouteClass::Control), "control"),
            _ => (None, "other"),
        };
        let keep = r.keep_alive && !r.has_body;
        let v = r.version;
        let count = |stats: &mut Stats, code: u16| {
            *stats.requests.entry((name, code)).or_default() += 1;
        };
        // Reading routes take GET and HEAD; control routes change state
        // and take POST only (a crawler's GET must not pin a channel).
        let method_ok = match class {
            Some(RouteClass::Control) => r.method == "POST",
            _ => r.method == "GET" || r.head,
        };
        if !method_ok {
            count(&mut self.stats, 405);
            let body: &[u8] = if class == Some(RouteClass::Control) {
                b"control routes take POST, parameters in the query string\n"
            } else {
                b"only GET and HEAD\n"
            };
            respond(c, v, 405, "text/plain", body, false, false);
            return;
        }
        let Some(class) = class else {
            count(&mut self.stats, 404);
            let keep = self.keep_after_refusal(c, keep);
            let body = format!("no route '{}'\n", r.path);
            respond(c, v, 404, "text/plain", body.as_bytes(), r.head, keep);
            return;
        };
        let token = query_param(&r.query, "token").or(r.bearer.clone());
        let allowed = self
            .shared
            .access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .route(class)
            .allows(c.peer.ip(), token.as_deref());
        if !allowed {
            self.stats.refused += 1;
            count(&mut self.stats, 403);
            self.ratelog.note(Why::Forbidden, Instant::now(), || {
                format!("{} {} {}", c.peer, r.method, printable(&r.path))
            });
            let keep = self.keep_after_refusal(c, keep);
            respond(c, v, 403, "text/plain", b"forbidden\n", r.head, keep);
            return;
        }
        match class {
            RouteClass::Stream => {
                let channel = percent_decode(&r.path["/stream/".len()..]);
                let Some(ring) = self.backend.stream(&channel) else {
                    count(&mut self.stats, 404);
                    let keep = self.keep_after_refusal(c, keep);
                    let body = format!(
                        "no channel '{}' (channels: {})\n",
                        channel,
                        self.backend.channel_names().join(", ")
                    );
                    respond(c, v, 404, "text/plain", body.as_bytes(), r.head, keep);
                    return;
                };
                let local_only = query_param(&r.query, "origin").as_deref() == Some("local");
                if local_only && !self.backend.fed_locally(&channel) {
                    // The loop guard: a peer asks for our own capture only.
                    count(&mut self.stats, 503);
                    let body = format!(
                        "channel '{channel}' is not fed by a local source of this box \
                         (remote source or slate on air): not relayed\n"
                    );
                    respond(c, v, 503, "text/plain", body.as_bytes(), r.head, keep);
                    return;
                }
                if let Some(why) = ring.held() {
                    // close_after: the channel sends its viewers away.
                    count(&mut self.stats, 503);
                    let body = format!("channel '{channel}': {why}\n");
                    respond(c, v, 503, "text/plain", body.as_bytes(), r.head, keep);
                    return;
                }
                count(&mut self.stats, 200);
                // No Content-Length and no chunked coding: the body ends when
                // the connection does. Range is ignored on purpose (live).
                let _ = write!(
                    VecWriter(&mut c.out),
                    "HTTP/1.{v} 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\
                     Cache-Control: no-cache, no-store\r\nAccept-Ranges: none\r\n\r\n"
                );
                if r.head {
                    c.close_after_out = true;
                    return;
                }
                self.watch(&ring);
                // `?start=live` skips the keyframe start (for comparison and
                // for players that want the freshest bytes).
                let start = match query_param(&r.query, "start").as_deref() {
                    Some("live") => StartAt::Live,
                    _ => StartAt::LatestEntryPoint,
                };
                let reader = ring.subscribe(start);
                log::info!("http: {} streams '{channel}'", c.peer);
                c.inbuf = Vec::new();
                c.kind = Kind::Stream(Box::new(StreamClient {
                    channel,
                    reader,
                    cur: None,
                    cur_pos: 0,
                    bytes: 0,
                    waiting: false,
                    local_only,
                }));
            }
            RouteClass::Playlist => {
                let host = r.host.clone().unwrap_or_else(|| {
                    self.listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                });
                let body = self.backend.playlist(&format!("http://{host}"));
                count(&mut self.stats, 200);
                c.answered = true;
                respond(c, v, 200, "audio/x-mpegurl", body.as_bytes(), r.head, keep);
            }
            RouteClass::Metrics => {
                count(&mut self.stats, 200);
                c.answered = true;
                let body = self.metrics();
                respond(
                    c,
                    v,
                    200,
                    "text/plain; version=0.0.4",
                    body.as_bytes(),
                    r.head,
                    keep,
                );
            }
            RouteClass::Status if name == "page" => {
                count(&mut self.stats, 200);
                c.answered = true;
                let now_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let body = page::render(
                    &self.status_value(c),
                    self.backend.history().as_ref(),
                    now_unix,
                );
                let extra = format!("Content-Security-Policy: {}\r\n", page::CSP);
                respond_with(
                    c,
                    v,
                    200,
                    "text/html; charset=utf-8",
                    &extra,
                    body.as_bytes(),
                    r.head,
                    keep,
                );
            }
            RouteClass::Status => {
                count(&mut self.stats, 200);
                c.answered = true;
                let body = self.status(c);
                respond(c, v, 200, "application/json", body.as_bytes(), r.head, keep);
            }
            RouteClass::Epg => {
                let params = query_params(&r.query);
                let (code, body) = self.backend.epg(&params);
                count(&mut self.stats, code);
                if code == 200 {
                    c.answered = true;
                    respond(
                        c,
                        v,
                        200,
                        "application/xml; charset=utf-8",
                        body.as_bytes(),
                        r.head,
                        keep,
                    );
                } else {
                    let keep = self.keep_after_refusal(c, keep);
                    respond(c, v, code, "text/plain", body.as_bytes(), r.head, keep);
                }
            }
            RouteClass::Control => {
                let action = &r.path["/control/".len()..];
                let params = query_params(&r.query);
                let (code, body) = self.backend.control(action, &params, c.peer.ip());
                count(&mut self.stats, code);
                c.answered = true;
                let mut body = body;
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                let ctype = if body.starts_with('{') {
                    "application/json"
                } else {
                    "text/plain"
                };
                // A request body is not read: close after the answer.
                respond(c, v, code, ctype, body.as_bytes(), false, keep);
            }
        }
    }

    /// Make sure publishing on `ring` wakes this loop.
    fn watch(&mut self, ring: &Arc<Ring>) {
        let key = Arc::as_ptr(ring) as usize;
        if self.rings.contains_key(&key) {
            return;
        }
        let w = self.waker.clone();
        let id = ring.add_notify(Box::new(move || {
            let _ = w.wake();
        }));
        self.rings.insert(key, (ring.clone(), id));
    }

    fn metrics(&self) -> String {
        let mut m = self.backend.metrics();
        if !m.is_empty() && !m.ends_with('\n') {
            m.push('\n');
        }
        let s = &self.stats;
        let mut f = family(
            &mut m,
            "capbox_http_requests_total",
            MetricKind::Counter,
            "HTTP requests answered, by route and status code.",
        );
        for ((route, code), n) in &s.requests {
            f.sample(&[("route", route), ("code", &code.to_string())], *n);
        }
        family(
            &mut m,
            "capbox_http_bad_requests_total",
            MetricKind::Counter,
            "Malformed HTTP requests (answered 400).",
        )
        .value(s.bad_requests);
        family(
            &mut m,
            "capbox_http_refused_total",
            MetricKind::Counter,
            "Requests refused by the [access] allow-lists or token (403).",
        )
        .value(s.refused);
        family(
            &mut m,
            "capbox_http_bytes_sent_total",
            MetricKind::Counter,
            "Bytes written to HTTP clients.",
        )
        .value(s.bytes_sent);
        family(
            &mut m,
            "capbox_http_connections_accepted_total",
            MetricKind::Counter,
            "TCP connections accepted.",
        )
        .value(s.accepted);
        family(
            &mut m,
            "capbox_http_connections",
            MetricKind::Gauge,
            "Open HTTP connections, this scrape's included.",
        )
        .value(self.conns.len() + 1);
        let mut f = family(&mut m, "capbox_http_accept_errors_total", MetricKind::Counter, "accept() failures: emfile = out of file descriptors, other = any other failure of the server (both pause accepting 100 ms), aborted = the pending client was gone or refused by the kernel (skipped).");
        for (kind, n) in [
            ("emfile", s.accept_emfile),
            ("other", s.accept_other),
            ("aborted", s.accept_aborted),
        ] {
            f.sample(&[("kind", kind)], n);
        }
        family(&mut m, "capbox_http_tcp_tuning_errors_total", MetricKind::Counter, "Settings of [server] tcp_congestion or send_buffer_bytes the kernel refused on an accepted connection (the connection is served with the kernel's defaults; /status http.listeners says why).")
            .value(s.tuning_errors);
        let mut f = family(&mut m, "capbox_http_connections_refused_total", MetricKind::Counter, "Connections closed at accept, before they take a slot: not_allowed = the peer is in no [access] list, per_address_limit = the peer already has max_clients_per_address connections.");
        for (reason, n) in [
            ("not_allowed", s.refused_not_allowed),
            ("per_address_limit", s.refused_per_address),
        ] {
            f.sample(&[("reason", reason)], n);
        }
        let mut f = family(
            &mut m,
            "capbox_http_clients_cut_total",
            MetricKind::Counter,
            "Connections closed by capbox, by reason: lagging = fell off the ring, write_timeout = stopped reading, max_clients = answered 503, request_timeout = no complete request head in time (slowloris), header_too_large = answered 431, idle = sent no request in time, only_refusals = keep-alive closed after a 403/404 with no answer before, not_local = a peer's ?origin=local stream ended because the channel left its local sources.",
        );
        for (reason, n) in [
            ("lagging", s.cut_lagging),
            ("write_timeout", s.cut_write_timeout),
            ("max_clients", s.cut_max_clients),
            ("request_timeout", s.cut_request_timeout),
            ("header_too_large", s.cut_header_too_large),
            ("idle", s.cut_idle),
            ("only_refusals", s.cut_only_refusals),
            ("not_local", s.cut_not_local),
        ] {
            f.sample(&[("reason", reason)], n);
        }
        let mut per_channel: BTreeMap<String, u64> = self
            .backend
            .channel_names()
            .into_iter()
            .map(|n| (n, 0))
            .collect();
        for c in self.conns.values() {
            if let Kind::Stream(s) = &c.kind {
                *per_channel.entry(s.channel.clone()).or_default() += 1;
            }
        }
        let mut f = family(
            &mut m,
            "capbox_http_clients",
            MetricKind::Gauge,
            "Stream clients connected now, per channel.",
        );
        for (ch, n) in &per_channel {
            f.sample(&[("channel", ch)], *n);
        }
        let rings: Vec<(String, RingStatsSnapshot)> = per_channel
            .keys()
            .filter_map(|ch| self.backend.stream(ch).map(|r| (ch.clone(), r.snapshot())))
            .collect();
        type Field = (
            &'static str,
            &'static str,
            MetricKind,
            fn(&RingStatsSnapshot) -> u64,
        );
        let fields: [Field; 10] = [
            (
                "bytes_in_total",
                "Bytes the channel's runner wrote into its ring.",
                MetricKind::Counter,
                |s| s.bytes_in,
            ),
            (
                "packets_in_total",
                "TS packets the channel's runner wrote into its ring.",
                MetricKind::Counter,
                |s| s.packets_in,
            ),
            (
                "chunks_total",
                "Chunks written into the ring.",
                MetricKind::Counter,
                |s| s.chunks,
            ),
            (
                "chunks_dropped_by_budget_total",
                "Oldest chunks dropped to keep the ring within ring_bytes.",
                MetricKind::Counter,
                |s| s.chunks_dropped_by_budget,
            ),
            (
                "bytes_held",
                "Bytes held in the ring now.",
                MetricKind::Gauge,
                |s| s.bytes_held,
            ),
            (
                "clients",
                "Readers of the ring now.",
                MetricKind::Gauge,
                |s| s.clients_now,
            ),
            (
                "clients_total",
                "Readers the ring has had.",
                MetricKind::Counter,
                |s| s.clients_total,
            ),
            (
                "clients_cut_lagging_total",
                "Readers cut because they fell more than ring_bytes behind.",
                MetricKind::Counter,
                |s| s.clients_cut_lagging,
            ),
            (
                "clients_cut_timeout_total",
                "Readers cut because they stopped reading (write timeout).",
                MetricKind::Counter,
                |s| s.clients_cut_timeout,
            ),
            (
                "packets_skipped_at_start_total",
                "Packets skipped for new readers before a PES or section start.",
                MetricKind::Counter,
                |s| s.packets_skipped_at_start,
            ),
        ];
        for (name, help, kind, get) in fields {
            let name = format!("capbox_fanout_{name}");
            let mut f = family(&mut m, &name, kind, help);
            for (ch, snap) in &rings {
                f.sample(&[("channel", ch)], get(snap));
            }
        }
        m
    }

    fn status(&self, me: &Conn) -> String {
        let mut s = self.status_value(me).to_string();
        s.push('\n');
        s
    }

    fn status_value(&self, me: &Conn) -> serde_json::Value {
        let now = Instant::now();
        let mut clients = Vec::new();
        let mut rows: Vec<&Conn> = self.conns.values().collect();
        rows.push(me);
        for c in rows {
            let mut row = serde_json::json!({
                "address": c.peer.to_string(),
                "user_agent": c.user_agent,
                "connected_seconds": now.saturating_duration_since(c.connected).as_secs(),
            });
            if let Kind::Stream(s) = &c.kind {
                let tcp = tuning::read_back(&c.sock);
                row["tcp_congestion"] = tcp.tcp_congestion.into();
                row["send_buffer_bytes"] = tcp.send_buffer_bytes.into();
                let (behind, age) = s.reader.lag();
                let unsent = s
                    .cur
                    .as_ref()
                    .map(|p| p.as_ref().len() - s.cur_pos)
                    .unwrap_or(0) as u64;
                row["channel"] = s.channel.clone().into();
                row["bytes"] = s.bytes.into();
                row["lag_bytes"] = (behind + unsent).into();
                row["lag_ms"] = (age.as_millis() as u64).into();
            }
            clients.push(row);
        }
        let mut v = self.backend.status();
        let wanted = self
            .shared
            .tuning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let listener = serde_json::json!({
            "listen": self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "tcp_congestion": wanted.congestion,
            "send_buffer_bytes": wanted.send_buffer_bytes,
            "kernel": self.tcp.kernel,
            "kernel_from": if self.tcp.from_probe {
                "a probe socket (no connection accepted yet)"
            } else {
                "the last connection accepted"
            },
            "tuning_errors": self.stats.tuning_errors,
            "last_tuning_error": self.tcp.last_error,
        });
        let http = serde_json::json!({
            "write_timeout_ms": self.cfg.write_timeout.as_millis() as u64,
            "max_clients": self.cfg.max_clients,
            "connections": self.conns.len() + 1,
            "listeners": [listener],
        });
        match v.as_object_mut() {
            Some(o) => {
                o.insert("clients".into(), clients.into());
                o.insert("http".into(), http);
            }
            None => {
                v = serde_json::json!({ "backend": v, "clients": clients });
            }
        }
        v
    }
}

/// Write a complete non-stream response into the connection's output.
fn respond(
    c: &mut Conn,
    version: u8,
    code: u16,
    ctype: &str,
    body: &[u8],
    head: bool,
    keep_alive: bool,
) {
    respond_with(c, version, code, ctype, "", body, head, keep_alive)
}

/// As `respond`, with `extra` header lines (each ending in CRLF).
#[allow(clippy::too_many_arguments)]
fn respond_with(
    c: &mut Conn,
    version: u8,
    code: u16,
    ctype: &str,
    extra: &str,
    body: &[u8],
    head: bool,
    keep_alive: bool,
) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let conn = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        VecWriter(&mut c.out),
        "HTTP/1.{} {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: {conn}\r\nCache-Control: no-cache\r\n{extra}\r\n",
        version.min(1),
        body.len()
    );
    if !head {
        c.out.extend_from_slice(body);
    }
    if !keep_alive {
        c.close_after_out = true;
        c.inbuf.clear();
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn has_complete_head(b: &[u8]) -> bool {
    b.windows(4).any(|w| w == b"\r\n\r\n") || b.windows(2).any(|w| w == b"\n\n")
}

fn extract(req: &httparse::Request) -> Request {
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version = req.version.unwrap_or(0);
    let mut r = Request {
        head: method == "HEAD",
        method,
        path: path.to_string(),
        query: query.to_string(),
        version,
        host: None,
        user_agent: None,
        bearer: None,
        keep_alive: version >= 1,
        has_body: false,
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "host" => r.host = Some(value),
            "user-agent" => r.user_agent = Some(value),
            "authorization" => {
                if let Some(t) = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                {
                    r.bearer = Some(t.trim().to_string());
                }
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    r.keep_alive = false;
                } else if v.contains("keep-alive") {
                    r.keep_alive = true;
                }
            }
            "content-length" if value != "0" => r.has_body = true,
            "transfer-encoding" => r.has_body = true,
            _ => {}
        }
    }
    r
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// The query's parameters, percent-decoded, at most 16, the access token
/// left out (a backend never sees it).
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .take(16)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .filter(|(k, _)| k != "token")
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(x) = hex {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// At most 100 characters of a request path for a log line, control
/// characters escaped.
fn printable(path: &str) -> String {
    path.chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}

/// Whether an accept() error concerns only the one pending connection (it
/// was reset or aborted before we took it, or a firewall refused it), so the
/// next call may succeed at once (accept(2), "Error handling").
fn accept_error_is_the_peers(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// The request-head path of the server (httparse, then capbox's own header,
/// query and percent-decoding code) on arbitrary bytes, for the fuzzer:
/// returns (method, path, channel token) of a complete head.
pub fn parse_head_for_fuzzing(buf: &[u8]) -> Option<(String, String, Option<String>)> {
    let _ = has_complete_head(buf);
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let r = extract(&req);
            let token = query_param(&r.query, "token").or(r.bearer.clone());
            let _ = query_param(&r.query, "start");
            let _ = escape_label(&r.path);
            Some((r.method, percent_decode(&r.path), token))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_query() {
        assert_eq!(percent_decode("France%202"), "France 2");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(
            query_param("a=1&token=x%21", "token").as_deref(),
            Some("x!")
        );
        assert_eq!(query_param("a=1", "token"), None);
    }
}
