//! The HTTP/1.x server: one mio event-loop thread for every client, nothing
//! per client but a socket, a small buffer and a fan-out [`Reader`].
//!
//! Why not tiny_http: 0.12 spawns two threads per client, has no write
//! timeout, buffers without bound for HTTP/1.0 clients and panics its accept
//! thread on EMFILE (its issue #195). This server is mio + httparse.
//!
//! Promises:
//! - Never blocks on a client: non-blocking sockets, a client with no write
//!   progress for `write_timeout` is cut, a client that fell off the ring is
//!   cut; neither slows the channel writer or the other clients.
//! - Bounded: request headers ≤ 8 KiB, a full request within 10 s, at most
//!   `max_clients` connections and `max_clients_per_address` from one
//!   address; per-client output holds only what is unsent (pipelined
//!   requests are not parsed while it is over 256 KiB), so a client that
//!   pipelines and reads slowly costs at most about twice that.
//! - Fair: one connection is served at most 256 KiB of input per wake-up,
//!   so no client (pipelining, or pouring bytes into a stream connection)
//!   holds the event loop.
//! - Closed by default (see [`access`]): a peer in no route's allow-list is
//!   closed at accept, before it takes a slot; a keep-alive connection that
//!   has had nothing but 403/404 is closed after that answer. Every refusal
//!   and every cut is counted in `/metrics` and said in the log, rate-limited
//!   to one summary line per kind every 10 s (`refusals.rs`); closing an
//!   idle keep-alive connection is routine and logged at debug level only.
//! - accept() failing pauses accepting for ~100 ms (EMFILE/ENFILE, ENOBUFS,
//!   ENOMEM…; a failure of the one pending connection, such as
//!   ECONNABORTED, just moves on), logs, counts, and keeps serving existing
//!   clients.
//!
//! [`Reader`]: crate::fanout::Reader

pub mod access;
pub mod page;
mod refusals;
mod server;
pub mod tuning;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fanout::Ring;

pub use access::{Access, Cidr, CidrError, RouteAccess, RouteClass};
pub use server::parse_head_for_fuzzing;
pub use tuning::SocketTuning;

/// What the server serves. Implemented by the daemon (channels, monitor).
pub trait Backend: Send + Sync + 'static {
    /// The ring of a channel, if it exists.
    fn stream(&self, channel: &str) -> Option<Arc<Ring>>;
    /// Whether the channel is fed by one of this box's own sources (tuner
    /// or file) right now, not by a remote site or the slate: a peer's
    /// `?origin=local` is answered only then (no relay of a relay).
    fn fed_locally(&self, _channel: &str) -> bool {
        true
    }
    fn channel_names(&self) -> Vec<String>;
    /// M3U playlist whose stream URLs start with `base_url` (`http://host:port`).
    fn playlist(&self, base_url: &str) -> String;
    /// Prometheus text; the server appends its own and the rings' metrics.
    fn metrics(&self) -> String;
    /// JSON; the server adds a `clients` table.
    fn status(&self) -> serde_json::Value;
    /// The last hour's rings for the status page (`GET /`), if kept.
    fn history(&self) -> Option<crate::monitor::history::View> {
        None
    }
    /// `/epg.xml` with its query (`audience`, `channel`): the status and
    /// the XMLTV document (200) or the reason in words.
    fn epg(&self, _params: &[(String, String)]) -> (u16, String) {
        (404, "no EPG\n".to_string())
    }
    /// `POST /control/<action>?k=v&…` from `peer` (already admitted by the
    /// control allow-list and token): the status code and the answer
    /// (JSON when it starts with `{`, else plain words).
    fn control(
        &self,
        action: &str,
        _params: &[(String, String)],
        _peer: std::net::IpAddr,
    ) -> (u16, String) {
        (404, format!("no control '{action}'"))
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// A client whose socket accepts no byte for this long is cut.
    pub write_timeout: Duration,
    /// Connections of all kinds; more are answered 503 and closed.
    pub max_clients: usize,
    /// Connections from one address; more are closed at accept.
    pub max_clients_per_address: usize,
    pub access: Access,
    /// A connection must send a complete request head within this (slowloris).
    pub request_timeout: Duration,
    /// Largest request head accepted; more is answered 431.
    pub max_header_bytes: usize,
    /// TCP congestion control and send buffer of accepted connections.
    pub tuning: SocketTuning,
    /// The supervisor's "http" heartbeat, beaten once per turn of the
    /// event loop (every poll, at most 100 ms apart).
    pub heartbeat: Option<Arc<crate::supervisor::Heartbeat>>,
}

impl HttpConfig {
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen,
            write_timeout: Duration::from_secs(10),
            max_clients: 512,
            max_clients_per_address: 400,
            access: Access::default(),
            request_timeout: Duration::from_secs(10),
            max_header_bytes: 8 << 10,
            tuning: SocketTuning::default(),
            heartbeat: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig::new(SocketAddr::from(([0, 0, 0, 0], 8080)))
    }
}

pub(crate) struct Shared {
    stop: AtomicBool,
    access: Mutex<Access>,
    /// `HttpConfig::write_timeout` and `max_clients` as a reload last set
    /// them; the event loop takes them on its next tick.
    write_timeout_ms: AtomicU64,
    max_clients: AtomicUsize,
    max_clients_per_address: AtomicUsize,
    /// `HttpConfig::tuning` as a reload last set it; applied to the
    /// connections accepted from then on.
    tuning: Mutex<SocketTuning>,
}

/// The running server. Dropping it stops the server.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replace the access rules; applies to requests parsed from now on.
    pub fn set_access(&self, access: Access) {
        *self.shared.access.lock().unwrap_or_else(|e| e.into_inner()) = access;
    }

    /// Replace the write timeout and the connection limits; the event
    /// loop applies them within a tick (100 ms). Connections already over
    /// a lowered limit stay; new ones are refused until under it.
    pub fn set_limits(&self, write_timeout: Duration, max_clients: usize, per_address: usize) {
        self.shared
            .max_clients_per_address
            .store(per_address, Ordering::Relaxed);
        self.shared
            .write_timeout_ms
            .store(write_timeout.as_millis() as u64, Ordering::Relaxed);
        self.shared
            .max_clients
            .store(max_clients, Ordering::Relaxed);
    }

    /// Replace the TCP settings of connections accepted from now on
    /// (connections already open keep theirs).
    pub fn set_tuning(&self, tuning: SocketTuning) {
        *self.shared.tuning.lock().unwrap_or_else(|e| e.into_inner()) = tuning;
    }

    /// Stop the event loop, close every connection and wait for the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind `cfg.listen` and start the event-loop thread.
pub fn spawn(cfg: HttpConfig, backend: Arc<dyn Backend>) -> io::Result<ServerHandle> {
    let listener = mio::net::TcpListener::bind(cfg.listen)?;
    let addr = listener.local_addr()?;
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), server::WAKER)?);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        access: Mutex::new(cfg.access.clone()),
        write_timeout_ms: AtomicU64::new(cfg.write_timeout.as_millis() as u64),
        max_clients: AtomicUsize::new(cfg.max_clients),
        max_clients_per_address: AtomicUsize::new(cfg.max_clients_per_address),
        tuning: Mutex::new(cfg.tuning.clone()),
    });
    let mut srv = server::Server::new(poll, listener, cfg, backend, shared.clone(), waker.clone())?;
    let thread = std::thread::Builder::new()
        .name(format!("http {addr}"))
        .spawn(move || srv.run())?;
    Ok(ServerHandle {
        addr,
        shared,
        waker,
        thread: Some(thread),
    })
}
