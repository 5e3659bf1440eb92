//! One connection to a softcam (OSCam in dvbapi network mode), shared by
//! every service that takes its control words from it.
//!
//! Owns: the socket and its thread (blocking std I/O with short timeouts:
//! the runner never touches the socket), the handshake (CLIENT_INFO, then
//! nothing until SERVER_INFO), the CA PMT of each registered service, the
//! softcam's demux filter requests, and the delivery of CA_SET_DESCR
//! control words into the `KeySlots` of the service they are for.
//!
//! Each service gets a number `n` < `MAX_SERVICES`, sent as its
//! adapter_device, demux_device and ca_device: every softcam message
//! carries the adapter byte, so a control word, a filter or an ECM_INFO
//! lands on exactly one service without guessing from descrambler indices.
//!
//! Promises: the runner side (`SoftcamClient` methods called by
//! `DvbapiSession`) only takes a mutex for a few field copies and never
//! waits for the network; everything is bounded (services, filters per
//! service, PIDs per index, the outgoing queue, the receive buffer) and
//! every drop is counted. An unknown opcode or a malformed message closes
//! the connection (the protocol cannot be resynchronised) and a new one is
//! opened after a short back-off, re-announcing every service. Control
//! words never appear in logs or `Debug`.

use super::proto::{self, CaPmtRepr, CaPmtStream, Decoded, Decoder, Message};
use crate::ca::csa::Parity;
use crate::ca::slots::KeySlots;
use crate::config::{SoftcamConfig, SoftcamEndpoint};
use crate::supervisor::{Heartbeat, Heartbeats};
use crate::ts::descriptor::tag;
use crate::ts::pmt::PmtRepr;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Services on one connection: OSCam has 32 demuxers (MAX_DEMUX), and its
/// ca_mask is 32 bits wide.
pub const MAX_SERVICES: usize = 32;
/// Demux filters the softcam may hold per service (OSCam's MAX_FILTER is
/// 64 over all; ECM + EMM + CAT use a handful).
pub const MAX_FILTERS: usize = 32;
/// Outgoing FILTER_DATA waiting for the socket thread.
pub const MAX_OUTBOX: usize = 256;
/// CA_SET_PID entries kept per service.
const MAX_PIDS: usize = 64;

/// OSCam misreads a CLIENT_INFO sent right after connecting while it still
/// holds the previous client's queued data (FIELD-NOTES): wait this long.
const CONNECT_PAUSE: Duration = Duration::from_millis(300);
/// Socket read timeout: how often the thread looks at its queue.
const POLL: Duration = Duration::from_millis(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// No SERVER_INFO within this long: reconnect.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Words older than this without a connection are forgotten, so packets
/// count as having no key rather than being descrambled with stale words.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// One demux filter the softcam asked for (DMX_SET_FILTER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub demux: u8,
    pub filter: u8,
    pub pid: u16,
    pub data: [u8; 16],
    pub mask: [u8; 16],
    pub mode: [u8; 16],
    /// Distinct for every DMX_SET_FILTER received (over all connections):
    /// a filter set again restarts, like a Linux demux filter, so the
    /// session forgets the last ECM it sent on it.
    pub seq: u64,
}

impl Filter {
    /// Linux demux semantics: byte 0 of the filter is the table_id, bytes
    /// 1..16 are section bytes 3..18 (the section_length is skipped).
    /// Mask bits with mode 0 must be equal; if any mask bit has mode 1,
    /// at least one of those must differ.
    pub fn matches(&self, section: &[u8]) -> bool {
        let mut neg_bits = false;
        let mut neg_differs = false;
        for i in 0..16 {
            let at = if i == 0 { 0 } else { i + 2 };
            let mask = self.mask[i];
            if mask == 0 {
                continue;
            }
            let Some(&b) = section.get(at) else {
                return false;
            };
            let xor = (b ^ self.data[i]) & mask;
            let pos = mask & !self.mode[i];
            let neg = mask & self.mode[i];
            if xor & pos != 0 {
                return false;
            }
            if neg != 0 {
                neg_bits = true;
                neg_differs |= xor & neg != 0;
            }
        }
        !neg_bits || neg_differs
    }
}

/// What ECM_INFO said last.
#[derive(Debug, Clone, Default)]
pub struct EcmInfo {
    pub caid: u16,
    pub pid: u16,
    pub provider_id: u32,
    pub ecm_time_ms: u32,
    pub cardsystem: String,
    pub reader: String,
    pub from: String,
    pub protocol: String,
    pub hops: u8,
}

/// Counters of one service, kept by the socket thread.
#[derive(Debug, Clone, Default)]
pub struct ServiceCounters {
    /// CA_SET_DESCR words put into the slots.
    pub cws_delivered: u64,
    /// Words not used: algorithm other than DVB-CSA, CA_SET_DESCR_DATA
    /// keys, parity other than 0/1, an index none of the service's PIDs
    /// uses.
    pub cws_refused: u64,
    pub ecm_infos: u64,
    /// DMX_SET_FILTER beyond `MAX_FILTERS`.
    pub filters_dropped: u64,
    /// FILTER_DATA not queued (queue full or not connected).
    pub sections_dropped: u64,
}

/// A service registered on the connection (index = its number).
#[derive(Debug)]
struct Service {
    program_number: u16,
    slots: Arc<KeySlots>,
    /// The CA PMT to announce (None until the session saw the PMT).
    ca_pmt: Option<CaPmtRepr>,
    /// Version announced on the current connection.
    announced: Option<u8>,
    filters: Vec<Filter>,
    /// CA_SET_PID: (pid, descrambler index).
    pids: Vec<(u32, u32)>,
    /// CA_SET_DESCR_MODE: (index, algo).
    modes: Vec<(u32, u32)>,
    /// An algorithm capbox cannot use was asked for (status words).
    unsupported_algo: Option<u32>,
    last_cw: Option<Instant>,
    ecm_info: Option<EcmInfo>,
    counters: ServiceCounters,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Not connected (since then).
    Down { since: Instant },
    /// Connected, CLIENT_INFO sent, no SERVER_INFO yet.
    Handshake,
    /// SERVER_INFO received.
    Ready { server: String, protocol: u16 },
}

#[derive(Debug)]
enum Outgoing {
    FilterData {
        demux: u8,
        filter: u8,
        section: Vec<u8>,
    },
    Stop {
        demux: u8,
    },
}

#[derive(Debug)]
struct Inner {
    state: ConnState,
    services: Vec<Option<Service>>,
    outbox: VecDeque<Outgoing>,
    /// Connection-wide trouble, in words ("softcam sent an unknown message
    /// 0x12345678; reconnected").
    last_error: Option<String>,
    connections: u64,
    /// Messages for an adapter number no service has.
    stray_messages: u64,
    /// Connections closed because the stream could not be followed.
    desyncs: u64,
    /// Source of `Filter::seq`.
    filter_seq: u64,
    /// Since when no connection has reached SERVER_INFO (None while one
    /// is up): the stale-word rule, which half-open softcams (accepting
    /// but never answering) must not reset.
    unready_since: Option<Instant>,
}

/// Connection-wide counters for `/status` and tests.
#[derive(Debug, Clone)]
pub struct ClientStatus {
    pub endpoint: String,
    pub state: ConnState,
    pub last_error: Option<String>,
    pub connections: u64,
    pub stray_messages: u64,
    pub desyncs: u64,
}

/// A service's view of the connection, for its `CaStatus`.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub state: ConnState,
    pub endpoint: String,
    pub last_error: Option<String>,
    pub announced: bool,
    pub ecm_pid: Option<u16>,
    pub unsupported_algo: Option<u32>,
    pub last_cw: Option<Instant>,
    pub ecm_info: Option<EcmInfo>,
    pub counters: ServiceCounters,
}

struct Shared {
    cfg: SoftcamConfig,
    endpoint: String,
    stop: AtomicBool,
    /// Bumped whenever a service's filters change: sessions compare it
    /// before taking the lock.
    filters_generation: AtomicU64,
    inner: Mutex<Inner>,
    /// The connection thread that counts: the supervisor's restart bumps
    /// it and starts a fresh thread; an older one ends when it comes back.
    thread_gen: AtomicU64,
    /// The supervisor's registry ("softcam", restart policy).
    heartbeats: Option<Arc<Heartbeats>>,
}

/// What one connection thread knows of itself.
struct Me {
    gen: u64,
    hb: Heartbeat,
}

impl Shared {
    /// Stopped, or this thread was abandoned for a fresh one.
    fn ended(&self, me: &Me) -> bool {
        self.stop.load(Ordering::Acquire) || self.thread_gen.load(Ordering::Acquire) != me.gen
    }
}

fn spawn_thread(shared: &Arc<Shared>, gen: u64) -> std::io::Result<()> {
    let s = shared.clone();
    std::thread::Builder::new()
        .name(format!("softcam {}", shared.endpoint))
        .spawn(move || run(s, gen))
        .map(|_| ())
}

/// The supervisor's restart: abandon the stuck connection thread (it ends
/// when it comes back, touching nothing), start a fresh one.
fn restart(weak: &std::sync::Weak<Shared>) {
    let Some(shared) = weak.upgrade() else { return };
    if shared.stop.load(Ordering::Acquire) {
        return;
    }
    let gen = shared.thread_gen.fetch_add(1, Ordering::AcqRel) + 1;
    log::warn!(
        "softcam {}: connection thread stuck; abandoned, starting a fresh one",
        shared.endpoint
    );
    {
        let mut g = shared.lock();
        end_connection(&shared, &mut g);
        g.last_error = Some("connection thread stuck (supervisor restart)".into());
    }
    if let Err(e) = spawn_thread(&shared, gen) {
        log::error!("softcam {}: cannot start its thread: {e}", shared.endpoint);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The client of one softcam. Dropping the last handle stops its thread.
pub struct SoftcamClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SoftcamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftcamClient({})", self.shared.endpoint)
    }
}

impl Drop for SoftcamClient {
    fn drop(&mut self) {
        // The thread notices within POLL (or its current connect attempt)
        // and exits; nobody waits for it.
        self.shared.stop.store(true, Ordering::Release);
    }
}

impl SoftcamClient {
    /// Start the connection thread.
    pub fn start(cfg: SoftcamConfig) -> std::io::Result<Arc<SoftcamClient>> {
        Self::start_supervised(cfg, None)
    }

    /// As `start`, with a "softcam" heartbeat (restart policy) in the
    /// supervisor's registry.
    pub fn start_supervised(
        cfg: SoftcamConfig,
        heartbeats: Option<Arc<Heartbeats>>,
    ) -> std::io::Result<Arc<SoftcamClient>> {
        let endpoint = cfg.endpoint.to_string();
        let shared = Arc::new(Shared {
            cfg,
            endpoint: endpoint.clone(),
            stop: AtomicBool::new(false),
            filters_generation: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state: ConnState::Down {
                    since: Instant::now(),
                },
                services: (0..MAX_SERVICES).map(|_| None).collect(),
                outbox: VecDeque::new(),
                last_error: None,
                connections: 0,
                stray_messages: 0,
                desyncs: 0,
                filter_seq: 0,
                unready_since: Some(Instant::now()),
            }),
            thread_gen: AtomicU64::new(0),
            heartbeats,
        });
        spawn_thread(&shared, 0)?;
        Ok(Arc::new(SoftcamClient { shared }))
    }

    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    pub fn status(&self) -> ClientStatus {
        let g = self.shared.lock();
        ClientStatus {
            endpoint: self.shared.endpoint.clone(),
            state: g.state.clone(),
            last_error: g.last_error.clone(),
            connections: g.connections,
            stray_messages: g.stray_messages,
            desyncs: g.desyncs,
        }
    }

    /// Register a service; None when `MAX_SERVICES` are already there.
    pub(crate) fn register(&self, program_number: u16, slots: Arc<KeySlots>) -> Option<u8> {
        let mut g = self.shared.lock();
        let n = g.services.iter().position(Option::is_none)?;
        g.services[n] = Some(Service {
            program_number,
            slots,
            ca_pmt: None,
            announced: None,
            filters: Vec::new(),
            pids: Vec::new(),
            modes: Vec::new(),
            unsupported_algo: None,
            last_cw: None,
            ecm_info: None,
            counters: ServiceCounters::default(),
        });
        Some(n as u8)
    }

    /// Forget a service; the softcam is told to stop it.
    pub(crate) fn unregister(&self, n: u8) {
        let mut g = self.shared.lock();
        if let Some(slot) = g.services.get_mut(n as usize) {
            if let Some(s) = slot.take() {
                s.slots.clear();
                if s.announced.is_some() && matches!(g.state, ConnState::Ready { .. }) {
                    g.outbox.push_back(Outgoing::Stop { demux: n });
                }
            }
        }
        self.shared
            .filters_generation
            .fetch_add(1, Ordering::AcqRel);
    }

    /// The service's PMT changed (or was first seen): announce it.
    pub(crate) fn set_pmt(&self, n: u8, pmt_pid: u16, pmt: &PmtRepr, current_next: bool) {
        let ca = |d: &[u8]| -> Vec<u8> {
            let mut v = Vec::new();
            for x in crate::ts::descriptor::Descriptors::new(d).filter(|x| x.tag == tag::CA) {
                x.emit(&mut v);
            }
            v
        };
        let repr = CaPmtRepr {
            list_management: proto::list_management::ADD,
            program_number: pmt.program_number,
            version_number: pmt.version,
            current_next_indicator: current_next,
            adapter_device: n,
            demux_device: n,
            ca_device: n,
            pmt_pid,
            ca_descriptors: ca(&pmt.program_info),
            streams: pmt
                .streams
                .iter()
                .map(|s| CaPmtStream {
                    stream_type: s.stream_type,
                    elementary_pid: s.elementary_pid,
                    ca_descriptors: ca(&s.descriptors),
                })
                .collect(),
        };
        let mut g = self.shared.lock();
        if let Some(Some(s)) = g.services.get_mut(n as usize) {
            s.ca_pmt = Some(repr);
        }
    }

    pub(crate) fn filters_generation(&self) -> u64 {
        self.shared.filters_generation.load(Ordering::Acquire)
    }

    /// Copy of the service's filters.
    pub(crate) fn filters(&self, n: u8, out: &mut Vec<Filter>) {
        out.clear();
        let g = self.shared.lock();
        if let Some(Some(s)) = g.services.get(n as usize) {
            out.extend(s.filters.iter().cloned());
        }
    }

    /// Queue a FILTER_DATA; false (and counted) when it cannot be.
    pub(crate) fn send_section(&self, n: u8, demux: u8, filter: u8, section: &[u8]) -> bool {
        let mut g = self.shared.lock();
        let ready = matches!(g.state, ConnState::Ready { .. });
        let full = g.outbox.len() >= MAX_OUTBOX;
        if !ready || full {
            if let Some(Some(s)) = g.services.get_mut(n as usize) {
                s.counters.sections_dropped += 1;
            }
            return false;
        }
        g.outbox.push_back(Outgoing::FilterData {
            demux,
            filter,
            section: section.to_vec(),
        });
        true
    }

    pub(crate) fn view(&self, n: u8) -> Option<ServiceView> {
        let g = self.shared.lock();
        let s = g.services.get(n as usize)?.as_ref()?;
        let ecm_pid = s
            .filters
            .iter()
            .find(|f| f.mask[0] & 0xFE == 0xFE && f.data[0] & 0xFE == 0x80)
            .map(|f| f.pid)
            .or(s.ecm_info.as_ref().map(|e| e.pid));
        Some(ServiceView {
            state: g.state.clone(),
            endpoint: self.shared.endpoint.clone(),
            last_error: g.last_error.clone(),
            announced: s.announced.is_some(),
            ecm_pid,
            unsupported_algo: s.unsupported_algo,
            last_cw: s.last_cw,
            ecm_info: s.ecm_info.clone(),
            counters: s.counters.clone(),
        })
    }
}

/// A connected socket of either kind.
trait Conn: Read + Write + Send {}
impl Conn for TcpStream {}
impl Conn for UnixStream {}

fn connect(ep: &SoftcamEndpoint) -> std::io::Result<Box<dyn Conn>> {
    match ep {
        SoftcamEndpoint::Tcp { host, port } => {
            let mut last = std::io::Error::new(ErrorKind::NotFound, "no address for the host");
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(POLL))?;
                        s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        SoftcamEndpoint::Unix(path) => {
            let s = connect_unix(path, CONNECT_TIMEOUT)?;
            s.set_read_timeout(Some(POLL))?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            Ok(Box::new(s))
        }
    }
}

/// Connect to a Unix stream socket within `timeout`. A plain blocking
/// connect waits forever when the softcam has stopped accepting (its listen
/// backlog is full: a hung OSCam); a non-blocking one answers EAGAIN then,
/// and is tried again until the time is up.
fn connect_unix(path: &std::path::Path, timeout: Duration) -> std::io::Result<UnixStream> {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let end = Instant::now() + timeout;
    loop {
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "{} accepts no connection within {} ms (softcam hung or overloaded)",
                        path.display(),
                        timeout.as_millis()
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Sleep in small steps; false when asked to stop.
fn nap(shared: &Shared, me: &Me, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        me.hb.beat();
        if shared.ended(me) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn run(shared: Arc<Shared>, gen: u64) {
    let hb = match &shared.heartbeats {
        Some(h) => {
            let weak = Arc::downgrade(&shared);
            h.register_restartable("softcam", Arc::new(move || restart(&weak)))
        }
        None => Heartbeat::detached(),
    };
    let me = Me { gen, hb };
    let mut backoff = BACKOFF_FIRST;
    while !shared.ended(&me) {
        me.hb.beat();
        match connect(&shared.cfg.endpoint) {
            Err(e) => {
                let mut g = shared.lock();
                g.last_error = Some(format!("cannot connect to {}: {e}", shared.endpoint));
            }
            Ok(conn) => {
                let reached_ready = serve_connection(&shared, &me, conn);
                if shared.ended(&me) && !shared.stop.load(Ordering::Acquire) {
                    // Abandoned: the fresh thread owns the state now.
                    return;
                }
                let mut g = shared.lock();
                end_connection(&shared, &mut g);
                if reached_ready {
                    backoff = BACKOFF_FIRST;
                }
            }
        }
        clear_if_stale(&mut shared.lock());
        if !nap(&shared, &me, backoff) {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    if !shared.stop.load(Ordering::Acquire) {
        return;
    }
    let mut g = shared.lock();
    end_connection(&shared, &mut g);
}

/// Words kept longer than `STALE_AFTER` without a working connection are
/// forgotten (once).
fn clear_if_stale(g: &mut Inner) {
    if let Some(since) = g.unready_since {
        if since.elapsed() > STALE_AFTER {
            for s in g.services.iter().flatten() {
                s.slots.clear();
            }
            // Cleared: nothing to do until a connection works again.
            g.unready_since = None;
        }
    }
}

/// Forget everything that belonged to the connection.
fn end_connection(shared: &Shared, g: &mut Inner) {
    if matches!(g.state, ConnState::Ready { .. }) {
        g.unready_since = Some(Instant::now());
    }
    if !matches!(g.state, ConnState::Down { .. }) {
        g.state = ConnState::Down {
            since: Instant::now(),
        };
    }
    g.outbox.clear();
    for s in g.services.iter_mut().flatten() {
        s.announced = None;
        s.filters.clear();
        s.pids.clear();
        s.modes.clear();
    }
    shared.filters_generation.fetch_add(1, Ordering::AcqRel);
}

/// One connection, until it fails or the client stops. Returns whether
/// the handshake completed.
fn serve_connection(shared: &Shared, me: &Me, mut conn: Box<dyn Conn>) -> bool {
    if !nap(shared, me, CONNECT_PAUSE) {
        return false;
    }
    let protocol = shared.cfg.protocol;
    let framed = protocol >= 3;
    let mut out = Vec::with_capacity(512);
    proto::encode_client_info(protocol, &shared.cfg.name, &mut out);
    if let Err(e) = conn.write_all(&out) {
        shared.lock().last_error = Some(format!("cannot write to {}: {e}", shared.endpoint));
        return false;
    }
    {
        let mut g = shared.lock();
        g.state = ConnState::Handshake;
        g.connections += 1;
    }
    let started = Instant::now();
    let mut decoder = Decoder::new(framed);
    let mut msg_id: u32 = 0;
    let mut buf = [0u8; 4096];
    let mut ready = false;
    loop {
        me.hb.beat();
        if shared.ended(me) {
            return ready;
        }
        let room = decoder.room().min(buf.len());
        if room == 0 {
            // Cannot happen (every message is far shorter than the
            // buffer), but a read of 0 bytes would look like a close.
            let mut g = shared.lock();
            g.desyncs += 1;
            g.last_error = Some("softcam sent a message longer than any; reconnected".into());
            return ready;
        }
        match conn.read(&mut buf[..room]) {
            Ok(0) => {
                shared.lock().last_error =
                    Some(format!("{} closed the connection", shared.endpoint));
                return ready;
            }
            Ok(n) => {
                decoder.push(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                shared.lock().last_error = Some(format!("reading from {}: {e}", shared.endpoint));
                return ready;
            }
        }
        loop {
            match decoder.decode() {
                Decoded::NeedMore => break,
                Decoded::Message { msg, .. } => {
                    let mut g = shared.lock();
                    if let Message::ServerInfo { protocol, info } = &msg {
                        // OSCam 2.2x sends "OSCam <version> (<target>); "
                        // plus its build options: keep the name readable.
                        let info = crate::ts::text::clean_name(
                            info.trim().trim_end_matches(';').trim_end(),
                        );
                        log::info!("softcam {}: {info} (protocol {protocol})", shared.endpoint);
                        g.state = ConnState::Ready {
                            server: info,
                            protocol: *protocol,
                        };
                        g.unready_since = None;
                        ready = true;
                    } else {
                        handle(shared, &mut g, msg);
                    }
                }
                Decoded::Unknown { opcode } => {
                    let mut g = shared.lock();
                    g.desyncs += 1;
                    g.last_error = Some(format!(
                        "softcam sent an unknown message 0x{opcode:08X}; reconnected"
                    ));
                    log::warn!(
                        "softcam {}: unknown message 0x{opcode:08X}; reconnecting",
                        shared.endpoint
                    );
                    return ready;
                }
                Decoded::Malformed { what } => {
                    let mut g = shared.lock();
                    g.desyncs += 1;
                    g.last_error = Some(format!("softcam sent {what}; reconnected"));
                    log::warn!("softcam {}: {what}; reconnecting", shared.endpoint);
                    return ready;
                }
            }
        }
        if !ready {
            if started.elapsed() > HANDSHAKE_TIMEOUT {
                shared.lock().last_error = Some(format!(
                    "{} sent no SERVER_INFO; reconnected",
                    shared.endpoint
                ));
                return false;
            }
            continue;
        }
        // Announce new or changed programs, then the queued sections.
        out.clear();
        {
            let mut g = shared.lock();
            for s in g.services.iter_mut().flatten() {
                let Some(pmt) = &mut s.ca_pmt else { continue };
                let version = pmt.version_number;
                if s.announced == Some(version) {
                    continue;
                }
                pmt.list_management = if s.announced.is_none() {
                    proto::list_management::ADD
                } else {
                    proto::list_management::UPDATE
                };
                msg_id = msg_id.wrapping_add(1);
                pmt.emit(framed, msg_id, &mut out);
                s.announced = Some(version);
            }
            while let Some(o) = g.outbox.pop_front() {
                msg_id = msg_id.wrapping_add(1);
                match o {
                    Outgoing::FilterData {
                        demux,
                        filter,
                        section,
                    } => {
                        proto::encode_filter_data(framed, msg_id, demux, filter, &section, &mut out)
                    }
                    Outgoing::Stop { demux } => {
                        proto::encode_ca_stop(framed, msg_id, demux, &mut out)
                    }
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = conn.write_all(&out) {
                shared.lock().last_error = Some(format!("writing to {}: {e}", shared.endpoint));
                return ready;
            }
        }
    }
}

/// Apply one softcam message (not SERVER_INFO) to the service it names.
fn handle(shared: &Shared, g: &mut Inner, msg: Message) {
    let adapter = match &msg {
        Message::ServerInfo { .. } => return,
        Message::DmxSetFilter { adapter, .. }
        | Message::DmxStop { adapter, .. }
        | Message::CaSetPid { adapter, .. }
        | Message::CaSetDescr { adapter, .. }
        | Message::CaSetDescrMode { adapter, .. }
        | Message::CaSetDescrData { adapter, .. }
        | Message::EcmInfo { adapter, .. } => *adapter,
    };
    g.filter_seq += 1;
    let seq = g.filter_seq;
    let Some(Some(s)) = g.services.get_mut(adapter as usize) else {
        g.stray_messages += 1;
        return;
    };
    log::debug!("softcam {}: {msg}", shared.endpoint);
    match msg {
        Message::ServerInfo { .. } => {}
        Message::DmxSetFilter {
            demux,
            filter,
            pid,
            data,
            mask,
            mode,
            ..
        } => {
            let f = Filter {
                demux,
                filter,
                pid,
                data,
                mask,
                mode,
                seq,
            };
            if let Some(old) = s
                .filters
                .iter_mut()
                .find(|x| x.demux == demux && x.filter == filter)
            {
                *old = f;
            } else if s.filters.len() < MAX_FILTERS {
                s.filters.push(f);
            } else {
                s.counters.filters_dropped += 1;
            }
            shared.filters_generation.fetch_add(1, Ordering::AcqRel);
        }
        Message::DmxStop { demux, filter, .. } => {
            s.filters
                .retain(|x| !(x.demux == demux && x.filter == filter));
            shared.filters_generation.fetch_add(1, Ordering::AcqRel);
        }
        Message::CaSetPid { pid, index, .. } => {
            s.pids.retain(|&(p, _)| p != pid);
            if index >= 0 && s.pids.len() < MAX_PIDS {
                s.pids.push((pid, index as u32));
            }
            // OSCam's extended CW API "e2" signals DES by an index in
            // 0x100..0x200 (tvheadend reads it so): never use those words
            // as DVB-CSA.
            if (0x100..0x200).contains(&index) {
                let index = index as u32;
                s.modes.retain(|&(i, _)| i != index);
                s.modes.push((index, proto::algo::DES));
                s.modes.truncate(MAX_PIDS);
                s.unsupported_algo = Some(proto::algo::DES);
            }
        }
        Message::CaSetDescrMode { index, algo, .. } => {
            s.modes.retain(|&(i, _)| i != index);
            s.modes.push((index, algo));
            s.modes.truncate(MAX_PIDS);
            if algo != proto::algo::DVBCSA {
                s.unsupported_algo = Some(algo);
            }
        }
        Message::CaSetDescr {
            index, parity, cw, ..
        } => {
            if index == u32::MAX {
                return; // a removal request: nothing to deliver
            }
            let algo = s
                .modes
                .iter()
                .find(|&&(i, _)| i == index)
                .map(|&(_, a)| a)
                .unwrap_or(proto::algo::DVBCSA);
            let parity = match parity {
                0 => Parity::Even,
                1 => Parity::Odd,
                _ => {
                    s.counters.cws_refused += 1;
                    return;
                }
            };
            // With CA_SET_PID seen, the index must be one of the service's
            // (one KeySlots per service: a word for another index would be
            // applied to the wrong streams).
            let bound = s.pids.is_empty() || s.pids.iter().any(|&(_, i)| i == index);
            if algo != proto::algo::DVBCSA || !bound {
                s.counters.cws_refused += 1;
                return;
            }
            s.unsupported_algo = None;
            s.slots.set(parity, cw);
            s.last_cw = Some(Instant::now());
            s.counters.cws_delivered += 1;
        }
        Message::CaSetDescrData { index, .. } => {
            // AES/DES keys: capbox descrambles DVB-CSA only.
            s.counters.cws_refused += 1;
            let algo = s
                .modes
                .iter()
                .find(|&&(i, _)| i == index)
                .map(|&(_, a)| a)
                .unwrap_or(proto::algo::AES128);
            s.unsupported_algo = Some(algo);
        }
        Message::EcmInfo {
            service_id,
            caid,
            pid,
            provider_id,
            ecm_time_ms,
            cardsystem,
            reader,
            from,
            protocol,
            hops,
            ..
        } => {
            if service_id != s.program_number {
                g.stray_messages += 1;
                return;
            }
            s.counters.ecm_infos += 1;
            // Names from the network: one clean line each in /status.
            let clean = |t: String| crate::ts::text::clean_name(&t);
            s.ecm_info = Some(EcmInfo {
                caid,
                pid,
                provider_id,
                ecm_time_ms,
                cardsystem: clean(cardsystem),
                reader: clean(reader),
                from: clean(from),
                protocol: clean(protocol),
                hops,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(data0: u8, mask0: u8) -> Filter {
        let mut data = [0u8; 16];
        let mut mask = [0u8; 16];
        data[0] = data0;
        mask[0] = mask0;
        Filter {
            demux: 0,
            filter: 0,
            pid: 0x500,
            data,
            mask,
            mode: [0; 16],
            seq: 0,
        }
    }

    /// A softcam whose listen backlog is full (it stopped accepting): the
    /// connect gives up within its timeout instead of blocking the
    /// softcam thread for ever.
    #[test]
    fn a_stuck_connection_thread_is_abandoned_and_a_fresh_one_connects() {
        use crate::config::SupervisorConfig;
        use crate::supervisor::{Shared, Supervisor};
        // A softcam that accepts and says nothing: each connection is one
        // connection thread's.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let cfg = SupervisorConfig {
            stall_after_s: 1,
            ..SupervisorConfig::default()
        };
        let shared = Shared::new(&cfg);
        let sup = Supervisor::start(shared.clone(), &cfg, false);
        let hb = shared.heartbeats.clone();
        let client = SoftcamClient::start_supervised(
            SoftcamConfig::tcp("127.0.0.1", port),
            Some(hb.clone()),
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        // Connected and in its handshake loop (CLIENT_INFO sent).
        while client.status().connections < 1 {
            assert!(Instant::now() < until, "never connected");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Stuck inside its loop (as in a call that never returns).
        assert_eq!(hb.set_fault("softcam", true), Ok(1));
        while hb.restarts().get("softcam").copied().unwrap_or(0) < 1 {
            assert!(Instant::now() < until, "never restarted");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The fresh thread connects again; the old one is still stuck.
        while accepted.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < until, "the fresh thread never connected");
            std::thread::sleep(Duration::from_millis(10));
        }
        let live: Vec<_> = hb
            .snapshot()
            .into_iter()
            .filter(|b| b.name == "softcam" && !b.retired)
            .collect();
        assert_eq!(live.len(), 1, "one live softcam heartbeat: {live:?}");
        // Released, the abandoned thread ends without touching the state.
        hb.clear_faults();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(hb.restarts().get("softcam"), Some(&1), "once per stall");
        assert!(
            hb.snapshot().iter().filter(|b| b.name == "softcam").count() == 1,
            "the abandoned thread's heartbeat is gone: {:?}",
            hb.snapshot()
        );
        while client.status().connections < 2 {
            assert!(Instant::now() < until, "{:?}", client.status());
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(client);
        sup.stop();
    }

    #[test]
    fn a_unix_connect_to_a_softcam_that_never_accepts_times_out() {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("capbox-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("oscam.sock");
        let _ = std::fs::remove_file(&path);
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        // Fill the backlog (a backlog of 0 still admits one pending peer).
        let mut held = Vec::new();
        while let Ok(s) = connect_unix(&path, Duration::from_millis(50)) {
            held.push(s);
            assert!(held.len() < 8, "the backlog never filled");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = connect(&SoftcamEndpoint::Unix(p));
            let _ = tx.send((r.map(|_| ()), t0.elapsed()));
        });
        let (r, took) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("connect to a full backlog hung");
        let e = r.expect_err("no softcam accepted, yet connected");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("oscam.sock"), "{e}");
        assert!(took >= CONNECT_TIMEOUT, "{took:?}");
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn filter_semantics_of_the_linux_demux() {
        let ecm80 = [0x80, 0x70, 0x04, 0xAA, 0xBB, 0xCC, 0xDD];
        let ecm81 = [0x81, 0x70, 0x04, 0xAA, 0xBB, 0xCC, 0xDD];
        assert!(filter(0x80, 0xFF).matches(&ecm80));
        assert!(!filter(0x80, 0xFF).matches(&ecm81));
        assert!(filter(0x80, 0xFE).matches(&ecm81));
        // Byte 1 of the filter is section byte 3 (after the length).
        let mut f = filter(0x80, 0xFF);
        f.data[1] = 0xAA;
        f.mask[1] = 0xFF;
        assert!(f.matches(&ecm80));
        f.data[1] = 0xAB;
        assert!(!f.matches(&ecm80));
        // Negative match: OSCam's "anything but the last ECM".
        let mut f = filter(0x80, 0xFF);
        f.data[2] = 0xBB;
        f.mask[2] = 0xFF;
        f.mode[2] = 0xFF;
        assert!(!f.matches(&ecm80));
        f.data[2] = 0xBC;
        assert!(f.matches(&ecm80));
        // Too short for the mask: no match, no panic.
        let mut f = filter(0x80, 0xFF);
        f.mask[15] = 1;
        assert!(!f.matches(&ecm80));
    }
}
