//! The guide from the operator, fetched: one XMLTV source (an `http://` URL
//! or a local file) polled on a schedule, its document validated into the
//! store, the last good guide kept when anything goes wrong.
//!
//! # For the daemon (the API in one place)
//!
//! ```text
//! let src = XmltvSource::new("operator", 0, "http://10.0.0.9/guide.xml")?;  // or a file path
//! //   src.every_secs = every_h * 3600;  (default 6 h, at least MIN_EVERY_SECS)
//! //   other knobs: backoff_max_secs (24 h), max_body_bytes (64 MiB),
//! //   connect/idle/total timeouts (10 s / 30 s / 300 s)
//! let resolve: Resolve = Box::new(move |id| map.get(id).cloned().or(...));  // source id -> capbox channel
//! let poller = Poller::new(src).cache_in(state_dir);   // optional, see below
//! let t = fetch::spawn(poller, store.clone() /* Arc<Mutex<Store>> */, resolve)?;
//! t.stats()            // FetchStats, a copy: for /status (FetchStats::words) and /metrics
//! fetch::render_metrics(&mut out, &[("operator", &t.stats())]);
//! drop(t)              // stops the thread (not waiting for a fetch under way)
//! ```
//!
//! With `cache_in(dir)` the last accepted document and the schedule are
//! kept in `dir` (`xmltv-<name>.xml`, `xmltv-<name>.state`): at start the
//! thread loads the cached guide into the store and waits out the schedule
//! (`Poller::restore`), so a restart neither leaves the guide empty until
//! the source answers nor asks the source again before its time. Without
//! it, each start asks the source at once. On a config reload, keep the
//! running `FetchThread` of an unchanged source rather than starting a new
//! one.
//!
//! A daemon with its own loop instead of the thread: call
//! `poller.fetch(mono, unix)` whenever (it asks only when due), hand a
//! `Fetched::Body` to `poller.apply_locked(&body, &store_mutex, &resolve,
//! unix)` (the lock taken after the parse) or `apply(&body, &mut store, …)`,
//! sleep until `poller.next_due()`.
//!
//! `store.set_priority(None | Some(channel), &[Origin::Xmltv(0), Origin::Eit])`
//! sets which source wins where events overlap (the config's `priority`;
//! default EIT first, then XMLTV sources by index); see `store`.
//!
//! Metrics (`render_metrics`), one label `source` = the `[[xmltv]]` name:
//! - `capbox_epg_xmltv_fetches_total{source,result}`: every poll that asked
//!   the source, by what came of it: `ok` (loaded), `not_modified` (304 or
//!   an unchanged file), or the failure (`Reason::as_str`: `connect`,
//!   `timeout`, `http_status`, `bad_response`, `too_big`, `truncated`,
//!   `gzip`, `file`, `parse`, `no_channels`, `invalid`).
//! - `capbox_epg_xmltv_bytes_total{source}`: body bytes received (as
//!   received: compressed for a gzip body).
//! - `capbox_epg_xmltv_last_success_timestamp_seconds{source}`: Unix time of
//!   the last poll that loaded or found the document unchanged (0: never);
//!   alert on `time() - … > 2 * every`.
//! - `capbox_epg_xmltv_consecutive_failures{source}` (gauge).
//! - `capbox_epg_xmltv_channels_refused_total{source}`: channels of an
//!   accepted document whose update was refused (mostly invalid events,
//!   nothing current, or the store's wipe-out guard): their last good part
//!   stays.
//! - `capbox_epg_xmltv_unknown_programmes_total{source}`: programmes whose
//!   channel id maps to no capbox channel.
//! - `capbox_epg_xmltv_cache_write_errors_total{source}`: failed writes to
//!   the cache directory.
//!
//! /status: `FetchStats::words(now)` ("last good 2 h ago (200 channels,
//! 67200 events); 2 failures in a row; last error 5 min ago: http://…:
//! HTTP 500 Oops; next poll in 7 h"), `unknown_ids` for "channel ids do
//! not match".
//!
//! # Promises
//!
//! - Never more often than configured: a poll schedules the next one at
//!   least `every_secs` later *before* it asks the source, whatever comes
//!   of it; after a failure of the source (connect, timeout, HTTP error,
//!   broken body) the wait doubles per consecutive failure
//!   (`every × 2^(n-1)`), up to `backoff_max_secs`, and a `Retry-After`
//!   (seconds) longer than that is honoured up to the same bound. A document
//!   that arrived but was refused does not back off (the server is well; the
//!   next poll fetches it whole again so the store's wipe-out hold can run).
//! - Conditional: `If-None-Match` with the last accepted document's ETag,
//!   `If-Modified-Since` with its Last-Modified (sent back verbatim, as RFC
//!   9110 asks); a 304 costs nothing. A file is read again only when its
//!   modification time or size changed. Validators are kept only for a
//!   document accepted whole: after a refusal (of the document or of one
//!   of its channels) the next poll fetches it whole and judges it again.
//! - The last good guide stays when a fetch fails, when the document is not
//!   well-formed XML (`parse`), when none of its channel ids maps to a capbox
//!   channel (`no_channels`, the unknown ids in `FetchStats::unknown_ids`),
//!   and per channel when more than `MAX_INVALID_RATIO` of its events fail
//!   the store's validation or none is current, or the store refuses it as
//!   a wipe-out (`channels_refused`); when every channel is refused the
//!   document is (`invalid`). Each drop is counted in `FetchStats` and, per
//!   event, in the store's `Rejects`.
//! - Bounded and untrusted: a body over `max_body_bytes` is refused
//!   (`too_big`; a Content-Length over it before reading the body), a 16 KiB
//!   response head, connect/idle/total timeouts, no panic on any response.
//!   Plain HTTP only (no TLS; the daemon box fetches from the operator's
//!   LAN), no redirects followed (the error names the Location).
//!
//!   A host name is resolved by the system resolver, which the timeouts do
//!   not bound (give the source as an address where that matters).
//! - gzip: a body (URL or file) that starts with gzip's magic bytes
//!   (`1f 8b 08`) is inflated as it arrives, whatever its name or
//!   Content-Type says (`guide.xml.gz`, `application/gzip`), and so is one
//!   sent with `Content-Encoding: gzip` (asked for: `Accept-Encoding: gzip,
//!   identity`; any other coding is `bad_response`). Concatenated members
//!   are one document. The cap holds on both sides: at most
//!   `max_body_bytes` received, and the inflated document is refused
//!   (`too_big`) the moment it grows past `max_body_bytes`, so a gzip bomb
//!   never takes more memory than a plain document may. A corrupt or
//!   truncated stream is `gzip` (the error names the compressed byte).
//!   What is judged, and cached, is the inflated document; validators
//!   (ETag, Last-Modified, a file's time and size) are those of what was
//!   received. A body that does not inflate is a failure of the source:
//!   it backs off like a truncated one.
//!
//! The state machine (`Poller`) does no network I/O of its own in
//! `fetch_with` (only the optional cache's small state file) and takes
//! both clocks from the caller: `mono` (seconds on a monotonic clock,
//! for the schedule: a wall clock set at boot by NTP must not make it poll
//! twice or never) and `unix` (for the store and `last_success`), so tests
//! drive it through a week of fake time in milliseconds.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::DerefMut;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::store::{Outcome, PartKey, Rejects, Store};
use super::xmltv_in::{self, XmltvStats};
use crate::monitor::metrics::{family, Kind};
use crate::source::remote::{redact_url, BodyDecoder, Framing, HttpUrl};

/// Default poll period: 6 hours (the issue's; an operator's guide changes
/// a few times a day).
pub const DEFAULT_EVERY_SECS: u64 = 6 * 3600;
/// Shortest poll period accepted (a config's `every_h = 0` must not hammer
/// the source).
pub const MIN_EVERY_SECS: u64 = 60;
/// Longest wait after consecutive failures.
pub const DEFAULT_BACKOFF_MAX_SECS: u64 = 24 * 3600;
/// Largest document: a 7-day guide of 500 channels with descriptions is
/// about 40 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// No byte for this long ends the fetch.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
/// The whole fetch must end within this (64 MiB at 2 Mbit/s: 270 s).
pub const DEFAULT_TOTAL_TIMEOUT_MS: u64 = 300_000;
/// A channel with more than this fraction of its events invalid keeps its
/// last good part: a document written with a broken generator (every event
/// overlapping, empty titles) must not replace a good guide piecemeal.
pub const MAX_INVALID_RATIO: f32 = 0.5;
/// Largest response head.
pub const MAX_HEAD: usize = 16 * 1024;
/// ETag / Last-Modified longer than this are not kept (nor sent back).
pub const MAX_VALIDATOR_BYTES: usize = 256;
/// Unknown source channel ids remembered for the error text and /status.
pub const MAX_UNKNOWN_IDS: usize = 8;

/// Where the document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `http://host[:port]/path?query`; `shown` is the URL with any
    /// `token=` hidden, for errors and /status.
    Http {
        url: HttpUrl,
        shown: String,
    },
    File(PathBuf),
}

impl Location {
    /// `http://…` is a URL (`https://` refused: capbox speaks plain HTTP),
    /// `file:///path` or anything without a scheme a file path.
    pub fn parse(s: &str) -> Result<Location, String> {
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = HttpUrl::parse(s, false)?;
            return Ok(Location::Http {
                url,
                shown: redact_url(s),
            });
        }
        let path = if lower.starts_with("file://") {
            &s[7..]
        } else {
            if let Some((scheme, _)) = s.split_once("://") {
                return Err(format!(
                    "{}: scheme {scheme}:// is not supported (http:// or a file path)",
                    redact_url(s)
                ));
            }
            s
        };
        if path.is_empty() {
            return Err("empty file path".into());
        }
        Ok(Location::File(PathBuf::from(path)))
    }

    /// For errors and /status.
    pub fn shown(&self) -> String {
        match self {
            Location::Http { shown, .. } => shown.clone(),
            Location::File(p) => p.display().to_string(),
        }
    }
}

/// One operator XMLTV source, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmltvSource {
    /// The `[[xmltv]]` name: the `source` label of the metrics.
    pub name: String,
    /// Its index in the config: the store's `PartKey::Xmltv(index)`, and
    /// `Origin::Xmltv(index)` in the merge order.
    pub index: u8,
    pub location: Location,
    /// Poll period, and the shortest time between two polls. Default 6 h;
    /// `new` clamps nothing, `Poller::new` raises it to `MIN_EVERY_SECS`.
    pub every_secs: u64,
    /// Longest wait after consecutive failures (never below `every_secs`).
    pub backoff_max_secs: u64,
    pub max_body_bytes: u64,
    pub connect_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub total_timeout_ms: u64,
}

impl XmltvSource {
    /// A source with the defaults; `location` as `Location::parse` reads it.
    pub fn new(name: &str, index: u8, location: &str) -> Result<XmltvSource, String> {
        Ok(XmltvSource {
            name: name.to_string(),
            index,
            location: Location::parse(location)?,
            every_secs: DEFAULT_EVERY_SECS,
            backoff_max_secs: DEFAULT_BACKOFF_MAX_SECS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            total_timeout_ms: DEFAULT_TOTAL_TIMEOUT_MS,
        })
    }
}

/// What identifies the last accepted document, for a conditional fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A file's (modification time in ns since the epoch, size).
    pub file: Option<(i128, u64)>,
}

/// What the source answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 304, or the file's mtime and size unchanged.
    NotModified,
    /// A document (inflated if it came gzip-compressed), with its
    /// validators and the body bytes received (compressed size for gzip).
    Body {
        body: Vec<u8>,
        validators: Validators,
        received: u64,
    },
}

/// Why a poll did not load a document; one counter each
/// (`capbox_epg_xmltv_fetches_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Cannot resolve the host, connection refused or unreachable.
    Connect,
    /// Connect, idle or total timeout.
    Timeout,
    /// An HTTP status other than 200 and 304.
    HttpStatus,
    /// Not HTTP, a head over 16 KiB, a Content-Encoding other than gzip,
    /// an I/O error.
    BadResponse,
    /// Body, or the document inflated from a gzip body, over
    /// `max_body_bytes`.
    TooBig,
    /// The body ended before its Content-Length or last chunk.
    Truncated,
    /// A gzip body that does not inflate: corrupt, truncated, a bad
    /// header or checksum, or `Content-Encoding: gzip` on a body that is
    /// not gzip.
    Gzip,
    /// The file cannot be read (missing, not a file, changed while read).
    File,
    /// Not well-formed XML or not UTF-8.
    Parse,
    /// No programme's channel id maps to a capbox channel.
    NoChannels,
    /// Every channel of the document refused (invalid events, wipe-out).
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Connect,
        Reason::Timeout,
        Reason::HttpStatus,
        Reason::BadResponse,
        Reason::TooBig,
        Reason::Truncated,
        Reason::Gzip,
        Reason::File,
        Reason::Parse,
        Reason::NoChannels,
        Reason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::HttpStatus => "http_status",
            Reason::BadResponse => "bad_response",
            Reason::TooBig => "too_big",
            Reason::Truncated => "truncated",
            Reason::Gzip => "gzip",
            Reason::File => "file",
            Reason::Parse => "parse",
            Reason::NoChannels => "no_channels",
            Reason::Invalid => "invalid",
        }
    }

    /// A failure of the source itself (back off), not of its document.
    pub fn backs_off(self) -> bool {
        !matches!(self, Reason::Parse | Reason::NoChannels | Reason::Invalid)
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// A failed fetch, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub reason: Reason,
    pub text: String,
    /// The server's `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl FetchError {
    pub fn new(reason: Reason, text: impl Into<String>) -> FetchError {
        FetchError {
            reason,
            text: text.into(),
            retry_after: None,
        }
    }
}

/// Counters and state of one source, for /metrics and /status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Polls that asked the source (sum of `loaded`, `not_modified` and
    /// `errors`).
    pub fetches: u64,
    /// Documents accepted into the store.
    pub loaded: u64,
    pub not_modified: u64,
    /// Per `Reason` (`Reason::ALL` order).
    pub errors: [u64; Reason::ALL.len()],
    /// Body bytes received (compressed, for a gzip body).
    pub bytes: u64,
    /// Unix time of the last poll that loaded or found the document
    /// unchanged.
    pub last_success: Option<i64>,
    pub last_attempt: Option<i64>,
    /// The last failure in words, and when (kept after a success: /status
    /// shows it with its age).
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Failures of the source in a row (reset by any answer).
    pub consecutive_failures: u32,
    /// Unix time of the next poll (from the schedule).
    pub next_poll: Option<i64>,
    /// Channel updates refused from accepted documents.
    pub channels_refused: u64,
    /// Of the last accepted document: channels loaded (stored or
    /// unchanged) and their events.
    pub channels: usize,
    pub events: usize,
    /// The parser's counts, summed over every document read.
    pub parse: XmltvStats,
    /// Source channel ids of the last document that map to no capbox
    /// channel (at most `MAX_UNKNOWN_IDS`).
    pub unknown_ids: Vec<String>,
    /// Writes to the cache directory that failed (`Poller::cache_in`).
    pub cache_errors: u64,
}

impl FetchStats {
    pub fn errors_of(&self, r: Reason) -> u64 {
        self.errors[r.idx()]
    }

    pub fn count_error(&mut self, r: Reason) {
        self.errors[r.idx()] += 1;
    }

    /// (result label, count) for `capbox_epg_xmltv_fetches_total`.
    pub fn results(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![("ok", self.loaded), ("not_modified", self.not_modified)];
        v.extend(Reason::ALL.iter().map(|r| (r.as_str(), self.errors_of(*r))));
        v
    }

    /// One line for /status and `capbox status`.
    pub fn words(&self, now: i64) -> String {
        let ago = |t: i64| human_secs(now.saturating_sub(t));
        let mut s = match self.last_success {
            Some(t) => format!(
                "last good {} ago ({} channels, {} events)",
                ago(t),
                self.channels,
                self.events
            ),
            None => "no good document yet".to_string(),
        };
        if self.consecutive_failures > 0 {
            s.push_str(&format!(
                "; {} failure{} in a row",
                self.consecutive_failures,
                if self.consecutive_failures == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        }
        if let (Some(e), Some(t)) = (&self.last_error, self.last_error_at) {
            if self.last_success.is_none_or(|s| t >= s) {
                s.push_str(&format!("; last error {} ago: {e}", ago(t)));
            }
        }
        if let Some(n) = self.next_poll {
            s.push_str(&format!(
                "; next poll in {}",
                human_secs(n.saturating_sub(now))
            ));
        }
        s
    }
}

fn human_secs(s: i64) -> String {
    let s = s.max(0);
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86_400)
    }
}

/// What one `Poller::fetch` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Not time yet: nothing asked.
    NotDue,
    NotModified,
    /// Asked, failed (counted; the reason in `FetchStats::last_error`).
    Failed(Reason),
    /// A document to hand to `Poller::apply`.
    Body(Vec<u8>),
}

/// What one `Poller::apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Accepted: channels loaded, channels refused (their last good part
    /// kept).
    Loaded { channels: usize, refused: usize },
    /// The whole document refused; the last good guide stays.
    Refused(Reason),
}

/// The wait before the next poll after `failures` consecutive failures of
/// the source: `every`, doubled per failure after the first, at most
/// `max` (never below `every`), at least the server's `Retry-After`
/// (bounded by `max` too).
pub fn next_delay(every: u64, max: u64, failures: u32, retry_after: Option<u64>) -> u64 {
    let max = max.max(every);
    let shift = failures.saturating_sub(1).min(32);
    let d = every.saturating_mul(1u64 << shift).min(max);
    d.max(retry_after.unwrap_or(0).min(max))
}

/// One source's schedule, validators and counters. See the module doc.
#[derive(Debug)]
pub struct Poller {
    src: XmltvSource,
    /// Of the last accepted document.
    validators: Validators,
    /// Of the body handed out by `fetch`, until `apply` judges it.
    pending: Option<Validators>,
    /// Monotonic seconds of the next poll (0: at once).
    next_due: u64,
    stats: FetchStats,
    /// Where the last accepted document and the schedule are kept.
    cache: Option<PathBuf>,
}

impl Poller {
    pub fn new(mut src: XmltvSource) -> Poller {
        src.every_secs = src.every_secs.max(MIN_EVERY_SECS);
        src.backoff_max_secs = src.backoff_max_secs.max(src.every_secs);
        Poller {
            src,
            validators: Validators::default(),
            pending: None,
            next_due: 0,
            stats: FetchStats::default(),
            cache: None,
        }
    }

    pub fn source(&self) -> &XmltvSource {
        &self.src
    }

    pub fn stats(&self) -> &FetchStats {
        &self.stats
    }

    /// The last accepted document's validators.
    pub fn validators(&self) -> &Validators {
        &self.validators
    }

    pub fn due(&self, mono: u64) -> bool {
        mono >= self.next_due
    }

    /// Monotonic seconds of the next poll.
    pub fn next_due(&self) -> u64 {
        self.next_due
    }

    /// Poll the source if due (blocking I/O, bounded by the timeouts).
    pub fn fetch(&mut self, mono: u64, unix: i64) -> Fetched {
        self.fetch_with(mono, unix, get)
    }

    /// `fetch` with the I/O given: `get(source, validators)` asks the
    /// source. The state machine itself.
    pub fn fetch_with(
        &mut self,
        mono: u64,
        unix: i64,
        get: impl FnOnce(&XmltvSource, &Validators) -> Result<Answer, FetchError>,
    ) -> Fetched {
        if !self.due(mono) {
            return Fetched::NotDue;
        }
        // The next poll is set before asking: whatever happens (an answer,
        // an error, a caller that never calls `apply`), not sooner.
        self.schedule(mono, unix, self.src.every_secs);
        self.stats.fetches += 1;
        self.stats.last_attempt = Some(unix);
        self.pending = None;
        let r = self.ask(mono, unix, get);
        self.save_state();
        r
    }

    fn ask(
        &mut self,
        mono: u64,
        unix: i64,
        get: impl FnOnce(&XmltvSource, &Validators) -> Result<Answer, FetchError>,
    ) -> Fetched {
        match get(&self.src, &self.validators) {
            Ok(Answer::NotModified) => {
                self.stats.not_modified += 1;
                self.stats.consecutive_failures = 0;
                self.stats.last_success = Some(unix);
                Fetched::NotModified
            }
            Ok(Answer::Body {
                body,
                validators,
                received,
            }) => {
                self.stats.bytes += received;
                self.stats.consecutive_failures = 0;
                self.pending = Some(validators);
                Fetched::Body(body)
            }
            Err(e) => {
                let r = e.reason;
                self.fail(unix, &e.text, r);
                if r.backs_off() {
                    self.stats.consecutive_failures =
                        self.stats.consecutive_failures.saturating_add(1);
                    let d = next_delay(
                        self.src.every_secs,
                        self.src.backoff_max_secs,
                        self.stats.consecutive_failures,
                        e.retry_after,
                    );
                    self.schedule(mono, unix, d);
                }
                Fetched::Failed(r)
            }
        }
    }

    fn schedule(&mut self, mono: u64, unix: i64, delay: u64) {
        self.next_due = mono.saturating_add(delay);
        self.stats.next_poll = Some(unix.saturating_add(delay.min(i64::MAX as u64) as i64));
    }

    fn fail(&mut self, unix: i64, text: &str, r: Reason) {
        self.stats.count_error(r);
        self.stats.last_error = Some(format!("{}: {}", self.src.location.shown(), text));
        self.stats.last_error_at = Some(unix);
        log::warn!(
            "epg: xmltv source {}: {} ({}); the last good guide stays",
            self.src.name,
            text,
            r.as_str()
        );
    }

    /// Judge a document `fetch` handed out and put what passes into the
    /// store as part `Xmltv(index)` of each channel (see the module doc
    /// for what is refused). `resolve` maps a source channel id to a
    /// capbox channel. With a cache (`cache_in`), an accepted document is
    /// written there.
    pub fn apply(
        &mut self,
        body: &[u8],
        store: &mut Store,
        resolve: &dyn Fn(&str) -> Option<String>,
        unix: i64,
    ) -> Applied {
        self.apply_with(body, || store, resolve, unix)
    }

    /// `apply` to a shared store: its lock is taken after the parse, for
    /// the validation and the replacement only (a 200-channel week: 150 ms
    /// of the 300, see examples/bench_xmltv_fetch.rs).
    pub fn apply_locked(
        &mut self,
        body: &[u8],
        store: &Mutex<Store>,
        resolve: &dyn Fn(&str) -> Option<String>,
        unix: i64,
    ) -> Applied {
        self.apply_with(body, || lock(store), resolve, unix)
    }

    fn apply_with<S: DerefMut<Target = Store>>(
        &mut self,
        body: &[u8],
        store: impl FnOnce() -> S,
        resolve: &dyn Fn(&str) -> Option<String>,
        unix: i64,
    ) -> Applied {
        let validators = self.pending.take().unwrap_or_default();
        let (loaded, events, refused) = match self.judge(body, store, resolve, unix) {
            Ok(v) => v,
            Err((r, text)) => {
                self.save_state();
                return self.refuse(unix, r, text);
            }
        };
        if !refused.is_empty() {
            log::warn!(
                "epg: xmltv source {}: {} channel(s) kept their last good guide: {}",
                self.src.name,
                refused.len(),
                first_few(&refused)
            );
        }
        // Validators are kept for a document accepted whole only: with a
        // channel refused, the next poll fetches it again whole, so the
        // store's wipe-out hold can run out for that channel.
        self.validators = if refused.is_empty() {
            validators
        } else {
            Validators::default()
        };
        self.stats.loaded += 1;
        self.stats.last_success = Some(unix);
        self.stats.channels = loaded;
        self.stats.events = events;
        if let Some(path) = self.cache_path("xml") {
            if let Err(e) = write_atomic(&path, body) {
                self.cache_error(&path, e);
            }
        }
        self.save_state();
        Applied::Loaded {
            channels: loaded,
            refused: refused.len(),
        }
    }

    /// Parse and validate `body` into the store: (channels loaded, their
    /// events, the refused channels in words), or why the whole document
    /// is refused.
    fn judge<S: DerefMut<Target = Store>>(
        &mut self,
        body: &[u8],
        store: impl FnOnce() -> S,
        resolve: &dyn Fn(&str) -> Option<String>,
        unix: i64,
    ) -> Result<(usize, usize, Vec<String>), (Reason, String)> {
        match root_element(body) {
            Ok(r) if r == "tv" => {}
            Ok(r) => {
                return Err((
                    Reason::Parse,
                    format!("not XMLTV: the root element is <{r}>, not <tv>"),
                ))
            }
            Err(e) => return Err((Reason::Parse, e)),
        }
        let unknown: RefCell<BTreeSet<String>> = RefCell::new(BTreeSet::new());
        let parsed = xmltv_in::parse(body, |id| {
            let r = resolve(id);
            if r.is_none() {
                let mut u = unknown.borrow_mut();
                if u.len() < MAX_UNKNOWN_IDS {
                    u.insert(printable(id.as_bytes(), 64));
                }
            }
            r
        })
        .map_err(|e| (Reason::Parse, e))?;
        let p = &mut self.stats.parse;
        p.programmes += parsed.stats.programmes;
        p.unknown_channel += parsed.stats.unknown_channel;
        p.bad_time += parsed.stats.bad_time;
        p.unknown_entity += parsed.stats.unknown_entity;
        p.over_limit += parsed.stats.over_limit;
        self.stats.unknown_ids = unknown.into_inner().into_iter().collect();
        if parsed.channels.is_empty() {
            let text = if parsed.stats.unknown_channel > 0 {
                format!(
                    "none of the {} programmes has a channel id mapped to a capbox channel (ids: {}); check the source's channel map",
                    parsed.stats.unknown_channel,
                    self.stats.unknown_ids.join(", ")
                )
            } else {
                "the document has no programme".to_string()
            };
            return Err((Reason::NoChannels, text));
        }
        // The store only now: the parse (half the time) runs unlocked.
        let mut guard = store();
        let store: &mut Store = &mut guard;
        let key = PartKey::Xmltv(self.src.index);
        let (mut loaded, mut events_total) = (0usize, 0usize);
        let mut refused: Vec<String> = Vec::new();
        for (ch, raw) in parsed.channels {
            let n = raw.len();
            let before = store.rejects;
            let events = store.validate(raw, unix);
            let bad = invalid(&before, &store.rejects);
            let why = if events.is_empty() {
                Some(format!("{ch}: none of its {n} events is valid and current"))
            } else if bad as f32 > n as f32 * MAX_INVALID_RATIO {
                Some(format!("{ch}: {bad} of its {n} events are invalid"))
            } else {
                None
            };
            if let Some(w) = why {
                refused.push(w);
                continue;
            }
            let k = events.len();
            match store.replace(&ch, key, events, unix) {
                Outcome::Stored(k) => {
                    loaded += 1;
                    events_total += k;
                }
                Outcome::Unchanged => {
                    loaded += 1;
                    events_total += k;
                }
                Outcome::Wipeout => refused.push(format!(
                    "{ch}: {k} events would replace a fuller guide (wipe-out guard)"
                )),
                Outcome::TooMany => {
                    refused.push(format!("{ch}: the store has no room for another channel"))
                }
            }
        }
        self.stats.channels_refused += refused.len() as u64;
        if loaded == 0 {
            return Err((
                Reason::Invalid,
                format!(
                    "every channel refused, the last good guide stays: {}",
                    first_few(&refused)
                ),
            ));
        }
        Ok((loaded, events_total, refused))
    }

    /// Keep the last accepted document and the schedule in `dir` (the
    /// daemon's state directory): `restore` at the next start loads the
    /// guide from there and waits out the schedule instead of asking the
    /// source at once (a daemon restarted in a loop must not hammer the
    /// source, and a box rebooted while the source is down still has a
    /// guide). Files: `<dir>/xmltv-<name>.xml` and `.state`, written to a
    /// temporary name and renamed.
    pub fn cache_in(mut self, dir: PathBuf) -> Poller {
        self.cache = Some(dir);
        self
    }

    fn cache_path(&self, ext: &str) -> Option<PathBuf> {
        let dir = self.cache.as_ref()?;
        let name: String = self
            .src
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir.join(format!("xmltv-{name}.{ext}")))
    }

    fn cache_error(&mut self, path: &Path, e: io::Error) {
        self.stats.cache_errors += 1;
        log::warn!(
            "epg: xmltv source {}: cannot write {}: {e}",
            self.src.name,
            path.display()
        );
    }

    /// The schedule and validators, to carry over a restart.
    pub fn state(&self) -> PollState {
        PollState {
            validators: self.validators.clone(),
            last_attempt: self.stats.last_attempt,
            last_success: self.stats.last_success,
            failures: self.stats.consecutive_failures,
        }
    }

    fn save_state(&mut self) {
        if let Some(path) = self.cache_path("state") {
            if let Err(e) = write_atomic(&path, self.state().to_text().as_bytes()) {
                self.cache_error(&path, e);
            }
        }
    }

    /// At start, with a cache (`cache_in`): load the cached document into
    /// the store (judged again like any document: the clock has moved)
    /// and resume the schedule — the next poll when the last one said,
    /// counted from its wall-clock time (a clock that went back waits one
    /// full period). Without a usable cached document, the schedule is
    /// kept only if the source was failing (asking again at once would
    /// fail too); otherwise the source is asked at once. Does not count as
    /// a fetch. `None` without a cache or a cached document.
    pub fn restore(
        &mut self,
        store: &mut Store,
        resolve: &dyn Fn(&str) -> Option<String>,
        mono: u64,
        unix: i64,
    ) -> Option<Applied> {
        let state = self
            .cache_path("state")
            .and_then(|p| read_capped(&p, 4096).ok())
            .map(|b| PollState::from_text(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        self.stats.last_attempt = state.last_attempt;
        self.stats.last_success = state.last_success;
        self.stats.consecutive_failures = state.failures;
        let body = self
            .cache_path("xml")
            .and_then(|p| read_capped(&p, self.src.max_body_bytes).ok());
        let applied = body.map(|b| match self.judge(&b, || &mut *store, resolve, unix) {
            Ok((loaded, events, refused)) => {
                self.validators = if refused.is_empty() {
                    state.validators.clone()
                } else {
                    Validators::default()
                };
                self.stats.channels = loaded;
                self.stats.events = events;
                Applied::Loaded {
                    channels: loaded,
                    refused: refused.len(),
                }
            }
            Err((r, text)) => {
                log::warn!(
                    "epg: xmltv source {}: the cached guide is refused: {text}",
                    self.src.name
                );
                Applied::Refused(r)
            }
        });
        let usable = matches!(applied, Some(Applied::Loaded { .. }));
        if let (Some(last), true) = (state.last_attempt, usable || state.failures > 0) {
            let delay = next_delay(
                self.src.every_secs,
                self.src.backoff_max_secs,
                state.failures,
                None,
            );
            let since = unix.saturating_sub(last);
            let wait = if since < 0 {
                delay
            } else {
                delay.saturating_sub(since as u64)
            };
            self.schedule(mono, unix, wait);
        }
        applied
    }

    fn refuse(&mut self, unix: i64, r: Reason, text: String) -> Applied {
        self.fail(unix, &text, r);
        Applied::Refused(r)
    }
}

/// The name of the document's first element (an HTML error page served
/// with a 200 is not a guide with no programme).
fn root_element(body: &[u8]) -> Result<String, String> {
    use quick_xml::events::Event as X;
    let mut r = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        let pos = r.buffer_position();
        match r.read_event_into(&mut buf) {
            Ok(X::Start(e)) | Ok(X::Empty(e)) => {
                return Ok(printable(e.name().as_ref().as_bytes(), 32));
            }
            Ok(X::Eof) => return Err("not XMLTV: the document has no element".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("XMLTV is not well-formed near byte {pos}: {e}")),
        }
        buf.clear();
    }
}

/// Events the store's validation threw out as invalid between two
/// snapshots of its counters (history past `keep_past`, normalised caps
/// and cut texts are not invalid).
fn invalid(a: &Rejects, b: &Rejects) -> u64 {
    let d = |x: u64, y: u64| y.saturating_sub(x);
    d(a.undefined_time, b.undefined_time)
        + d(a.zero_duration, b.zero_duration)
        + d(a.absurd_duration, b.absurd_duration)
        + d(a.far_past, b.far_past)
        + d(a.far_future, b.far_future)
        + d(a.empty_title, b.empty_title)
        + d(a.unprintable_title, b.unprintable_title)
        + d(a.overlap, b.overlap)
        + d(a.duplicate, b.duplicate)
}

fn first_few(v: &[String]) -> String {
    let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    if v.len() > 3 {
        s.push_str(&format!("; and {} more", v.len() - 3));
    }
    s
}

/// Untrusted bytes for a message: printable ASCII, others escaped, at most
/// `max` characters.
fn printable(b: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &c in b.iter().take(max) {
        if (0x20..0x7F).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    if b.len() > max {
        s.push('…');
    }
    s
}

/// What a poller carries over a restart (`Poller::state`, the cache's
/// `.state` file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollState {
    pub validators: Validators,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub failures: u32,
}

impl PollState {
    /// `key value` lines.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# capbox xmltv poll state\n");
        if let Some(t) = self.last_attempt {
            s.push_str(&format!("last_attempt {t}\n"));
        }
        if let Some(t) = self.last_success {
            s.push_str(&format!("last_success {t}\n"));
        }
        s.push_str(&format!("failures {}\n", self.failures));
        if let Some(e) = &self.validators.etag {
            s.push_str(&format!("etag {e}\n"));
        }
        if let Some(l) = &self.validators.last_modified {
            s.push_str(&format!("last_modified {l}\n"));
        }
        if let Some((m, n)) = self.validators.file {
            s.push_str(&format!("file {m} {n}\n"));
        }
        s
    }

    /// Lenient: a line that does not read is skipped (the state is a
    /// hint; the worst is one poll too early or a full fetch).
    pub fn from_text(text: &str) -> PollState {
        let mut st = PollState::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            match k {
                "last_attempt" => st.last_attempt = v.trim().parse().ok(),
                "last_success" => st.last_success = v.trim().parse().ok(),
                "failures" => st.failures = v.trim().parse().unwrap_or(0),
                "etag" => st.validators.etag = validator(v.as_bytes()),
                "last_modified" => st.validators.last_modified = validator(v.as_bytes()),
                "file" => {
                    let mut it = v.split_whitespace();
                    st.validators.file = match (
                        it.next().and_then(|m| m.parse().ok()),
                        it.next().and_then(|n| n.parse().ok()),
                    ) {
                        (Some(m), Some(n)) => Some((m, n)),
                        _ => None,
                    };
                }
                _ => {}
            }
        }
        st
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut b = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut b)?;
    if b.len() as u64 > max {
        return Err(io::Error::other(format!("over {max} bytes")));
    }
    Ok(b)
}

// ---------------------------------------------------------------------------
// The I/O: a file, or a blocking HTTP/1.1 GET.

/// Ask `src` for its document, conditionally on `v` (blocking, bounded by
/// the source's timeouts and size cap).
pub fn get(src: &XmltvSource, v: &Validators) -> Result<Answer, FetchError> {
    match &src.location {
        Location::Http { url, .. } => http_get(url, v, src),
        Location::File(p) => file_get(p, v, src.max_body_bytes),
    }
}

fn file_id(m: &std::fs::Metadata) -> (i128, u64) {
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    (mtime, m.len())
}

fn file_get(p: &Path, v: &Validators, max: u64) -> Result<Answer, FetchError> {
    let err = |e: io::Error| FetchError::new(Reason::File, format!("cannot read: {e}"));
    let m = std::fs::metadata(p).map_err(err)?;
    if !m.is_file() {
        return Err(FetchError::new(Reason::File, "not a regular file"));
    }
    let id = file_id(&m);
    if v.file == Some(id) {
        return Ok(Answer::NotModified);
    }
    if id.1 > max {
        return Err(FetchError::new(
            Reason::TooBig,
            format!("{} bytes, over the {max}-byte cap", id.1),
        ));
    }
    let mut f = std::fs::File::open(p).map_err(err)?;
    let doc = read_document(&mut f, max, false, Some(id.1)).map_err(|e| match e {
        DocError::Source(e) => err(e),
        DocError::Doc(e) => e,
    })?;
    // Written in place while we read (write it elsewhere and rename): a
    // torn document is not read; the next poll tries again.
    let after = std::fs::metadata(p).map(|m| file_id(&m)).map_err(err)?;
    if after != id {
        return Err(FetchError::new(
            Reason::File,
            "changed while being read (write the new guide to another name and rename it over)",
        ));
    }
    Ok(Answer::Body {
        body: doc.body,
        validators: Validators {
            file: Some(id),
            ..Validators::default()
        },
        received: doc.received,
    })
}

// ---------------------------------------------------------------------------
// The document out of the body: as is, or inflated from gzip.

/// gzip's magic bytes and its one compression method, deflate (RFC 1952).
pub const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The body as it arrives, buffered for the reader of the document, which
/// it counts: how far the document's reader consumed (where in the
/// compressed stream an error is) and how much came in (at most `max`, one
/// buffer more before the refusal).
struct Counted<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    consumed: u64,
    received: u64,
    max: u64,
    /// More than `max` came in.
    over: bool,
    /// The inner reader's own error (not the document's).
    failed: Option<io::Error>,
}

impl<R: Read> Counted<R> {
    fn new(inner: R, max: u64) -> Counted<R> {
        Counted {
            inner,
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            pos: 0,
            end: 0,
            consumed: 0,
            received: 0,
            max,
            over: false,
            failed: None,
        }
    }

    /// Read more into `buf[end..]`. The error handed up is a stand-in (the
    /// decoder must not mistake it for one of its own): the real one is in
    /// `failed`, or `over` is set.
    fn more(&mut self) -> io::Result<usize> {
        if self.over || self.failed.is_some() {
            return Err(io::Error::other("the body failed"));
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(k) => {
                    self.end += k;
                    self.received += k as u64;
                    if self.received > self.max {
                        self.over = true;
                        return Err(io::Error::other("the body is over the cap"));
                    }
                    return Ok(k);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failed = Some(e);
                    return Err(io::Error::other("the body failed"));
                }
            }
        }
    }

    /// The first `n` bytes (fewer if the body is shorter), not consumed.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.end - self.pos < n {
            if self.end == self.buf.len() {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.more()? == 0 {
                break;
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }
}

impl<R: Read> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            self.more()?;
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.pos);
        self.pos += n;
        self.consumed += n as u64;
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let b = self.fill_buf()?;
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A document read out of a body.
struct Document {
    body: Vec<u8>,
    /// Body bytes received (compressed, for gzip).
    received: u64,
}

enum DocError {
    /// The source's own error (the file, the connection): the caller
    /// words it.
    Source(io::Error),
    Doc(FetchError),
}

/// `n` bytes in words: "64 MiB" when it is a whole number of MiB.
fn size_words(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// Read the document out of `r`, the body as it arrives: inflated on the
/// fly when it starts with gzip's magic bytes (whatever the name or
/// Content-Type), else as is. `gzip_declared`: the server said
/// `Content-Encoding: gzip`, so the magic bytes must be there. Never more
/// than `max` bytes received, and an inflated document is refused the
/// moment it grows past `max` (a bomb is never held whole). `reserve`: the
/// announced size of a plain body (at most `max`), allocated at once.
fn read_document<R: Read>(
    r: &mut R,
    max: u64,
    gzip_declared: bool,
    reserve: Option<u64>,
) -> Result<Document, DocError> {
    let mut c = Counted::new(r, max);
    // The source's error, or the cap on what is received.
    let fail = |c: &mut Counted<&mut R>, gzip: bool| {
        if let Some(e) = c.failed.take() {
            return DocError::Source(e);
        }
        DocError::Doc(FetchError::new(
            Reason::TooBig,
            format!(
                "{}body over the {max}-byte cap",
                if gzip { "compressed " } else { "" }
            ),
        ))
    };
    let head = match c.peek(GZIP_MAGIC.len()) {
        Ok(h) => h,
        Err(_) => return Err(fail(&mut c, gzip_declared)),
    };
    let gzip = head.starts_with(&GZIP_MAGIC);
    if !gzip {
        let why = if head.starts_with(&GZIP_MAGIC[..2]) && head.len() > 2 {
            Some(format!(
                "gzip compression method {} is not deflate (8)",
                head[2]
            ))
        } else if gzip_declared {
            Some(format!(
                "Content-Encoding: gzip, but the body starts with \"{}\", not gzip's magic bytes 1f 8b 08",
                printable(head, 8)
            ))
        } else {
            None
        };
        if let Some(w) = why {
            return Err(DocError::Doc(FetchError::new(Reason::Gzip, w)));
        }
        let mut body = Vec::new();
        body.reserve_exact(reserve.unwrap_or(0).min(max) as usize);
        loop {
            let n = match c.fill_buf() {
                Ok([]) => break,
                Ok(b) => {
                    body.extend_from_slice(b);
                    b.len()
                }
                Err(_) => return Err(fail(&mut c, false)),
            };
            c.consume(n);
        }
        return Ok(Document {
            body,
            received: c.received,
        });
    }
    let mut dec = flate2::bufread::MultiGzDecoder::new(c);
    let mut body: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match dec.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if (body.len() + n) as u64 > max {
                    return Err(DocError::Doc(FetchError::new(
                        Reason::TooBig,
                        format!(
                            "gzip: the document expands past max_body_bytes ({}) by compressed byte {} (a gzip bomb?)",
                            size_words(max),
                            dec.get_ref().consumed
                        ),
                    )));
                }
                body.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let c = dec.get_mut();
                if c.over || c.failed.is_some() {
                    return Err(fail(c, true));
                }
                let at = c.consumed;
                let text = if e.kind() == io::ErrorKind::UnexpectedEof {
                    format!(
                        "gzip: truncated: the stream ends at compressed byte {} inside a member ({} bytes inflated)",
                        c.received,
                        body.len()
                    )
                } else if e.to_string().contains("checksum") {
                    format!("gzip: corrupt: the CRC-32 or length check of the member ending at compressed byte {at} fails")
                } else if e.to_string().contains("header") {
                    // The parser reads the 10 fixed bytes, then judges.
                    format!(
                        "gzip: invalid gzip header in compressed bytes {}..{at} (bytes after a member that are not gzip?)",
                        at.saturating_sub(10)
                    )
                } else {
                    format!("gzip: {e} at compressed byte {at}")
                };
                return Err(DocError::Doc(FetchError::new(Reason::Gzip, text)));
            }
        }
    }
    Ok(Document {
        body,
        received: dec.get_ref().received,
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A value fit to send back in a request header.
fn validator(v: &[u8]) -> Option<String> {
    let v = v.trim_ascii();
    (!v.is_empty()
        && v.len() <= MAX_VALIDATOR_BYTES
        && v.iter().all(|&c| (0x20..0x7F).contains(&c)))
    .then(|| String::from_utf8_lossy(v).into_owned())
}

/// Reads with the idle timeout, cut to what is left of the total.
struct Deadline {
    end: Instant,
    idle: Duration,
    total_ms: u64,
}

impl Deadline {
    fn read(&self, s: &mut TcpStream, buf: &mut [u8], got: u64) -> Result<usize, FetchError> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::new(
                Reason::Timeout,
                format!(
                    "not complete within {} ms ({got} bytes received)",
                    self.total_ms
                ),
            ));
        }
        let t = left.min(self.idle).max(Duration::from_millis(1));
        let _ = s.set_read_timeout(Some(t));
        loop {
            match s.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    let what = if t < self.idle {
                        format!("not complete within {} ms", self.total_ms)
                    } else {
                        format!("no byte for {} ms", self.idle.as_millis())
                    };
                    return Err(FetchError::new(
                        Reason::Timeout,
                        format!("{what} ({got} bytes received)"),
                    ));
                }
                Err(e) => {
                    return Err(FetchError::new(
                        Reason::BadResponse,
                        format!("read after {got} bytes: {e}"),
                    ))
                }
            }
        }
    }
}

fn connect(url: &HttpUrl, timeout: Duration) -> Result<TcpStream, FetchError> {
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| FetchError::new(Reason::Connect, format!("cannot resolve {}: {e}", url.host)))?
        .take(4)
        .collect();
    let mut last = FetchError::new(Reason::Connect, format!("{} has no address", url.host));
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) if is_timeout(&e) => {
                last = FetchError::new(
                    Reason::Timeout,
                    format!(
                        "connect to {a}: no answer within {} ms",
                        timeout.as_millis()
                    ),
                )
            }
            Err(e) => last = FetchError::new(Reason::Connect, format!("connect to {a}: {e}")),
        }
    }
    Err(last)
}

fn http_get(url: &HttpUrl, v: &Validators, src: &XmltvSource) -> Result<Answer, FetchError> {
    let dl = Deadline {
        end: Instant::now() + Duration::from_millis(src.total_timeout_ms),
        idle: Duration::from_millis(src.idle_timeout_ms.max(1)),
        total_ms: src.total_timeout_ms,
    };
    let mut s = connect(url, Duration::from_millis(src.connect_timeout_ms.max(1)))?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host = if url.port == 80 {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: capbox/{}\r\n\
         Accept: application/xml, text/xml;q=0.9, */*;q=0.5\r\n\
         Accept-Encoding: gzip, identity\r\nConnection: close\r\n",
        url.target,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(e) = &v.etag {
        req.push_str(&format!("If-None-Match: {e}\r\n"));
    }
    if let Some(l) = &v.last_modified {
        req.push_str(&format!("If-Modified-Since: {l}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.set_write_timeout(Some(dl.idle));
    s.write_all(req.as_bytes()).map_err(|e| {
        let r = if is_timeout(&e) {
            Reason::Timeout
        } else {
            Reason::BadResponse
        };
        FetchError::new(r, format!("sending the request: {e}"))
    })?;

    // The head.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    let (head_len, status, reason, framing, gzip, validators, retry_after, location) = loop {
        let n = dl.read(&mut s, &mut chunk, buf.len() as u64)?;
        if n == 0 {
            return Err(FetchError::new(
                Reason::BadResponse,
                format!(
                    "connection closed before a complete response head ({} bytes)",
                    buf.len()
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let len = match r.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(FetchError::new(
                        Reason::BadResponse,
                        format!("response head longer than {MAX_HEAD} bytes"),
                    ));
                }
                continue;
            }
            Err(e) => {
                return Err(FetchError::new(
                    Reason::BadResponse,
                    format!(
                        "not HTTP ({e}; starts with \"{}\")",
                        printable(&buf[..buf.len().min(24)], 24)
                    ),
                ))
            }
        };
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let status = r.code.unwrap_or(0);
        let reason = printable(r.reason.unwrap_or("").as_bytes(), 64);
        let framing = match (header("transfer-encoding"), header("content-length")) {
            (Some(te), _) => {
                if !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(FetchError::new(
                        Reason::BadResponse,
                        format!(
                            "Transfer-Encoding \"{}\" is not supported (only chunked)",
                            printable(te, 64)
                        ),
                    ));
                }
                Framing::Chunked
            }
            (None, Some(cl)) => match std::str::from_utf8(cl)
                .ok()
                .and_then(|c| c.trim().parse::<u64>().ok())
            {
                Some(n) => Framing::Length(n),
                None => {
                    return Err(FetchError::new(
                        Reason::BadResponse,
                        format!("bad Content-Length \"{}\"", printable(cl, 64)),
                    ))
                }
            },
            (None, None) => Framing::Close,
        };
        // gzip (x-gzip is its old name, RFC 9110 8.4.1.3) is inflated;
        // a body that is gzip without saying so is found by its magic
        // bytes anyway (`read_document`).
        let gzip = match header("content-encoding").map(|c| c.trim_ascii()) {
            None => false,
            Some(c) if c.is_empty() || c.eq_ignore_ascii_case(b"identity") => false,
            Some(c) if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") => true,
            Some(c) => {
                if status == 200 {
                    return Err(FetchError::new(
                        Reason::BadResponse,
                        format!(
                            "Content-Encoding \"{}\" is not supported (only gzip)",
                            printable(c, 64)
                        ),
                    ));
                }
                false
            }
        };
        let validators = Validators {
            etag: header("etag").and_then(validator),
            last_modified: header("last-modified").and_then(validator),
            file: None,
        };
        let retry_after = header("retry-after")
            .and_then(|r| std::str::from_utf8(r).ok())
            .and_then(|r| r.trim().parse::<u64>().ok());
        let location = header("location").map(|l| printable(l, 128));
        break (
            len,
            status,
            reason,
            framing,
            gzip,
            validators,
            retry_after,
            location,
        );
    };
    match status {
        200 => {}
        304 => return Ok(Answer::NotModified),
        _ => {
            let mut text = format!("HTTP {status} {reason}");
            if let Some(l) = location.filter(|_| (300..400).contains(&status)) {
                text.push_str(&format!(
                    " (redirected to {}: capbox follows no redirect, configure that URL)",
                    redact_url(&l)
                ));
            }
            return Err(FetchError {
                reason: Reason::HttpStatus,
                text,
                retry_after,
            });
        }
    }
    let max = src.max_body_bytes;
    if let Framing::Length(n) = framing {
        if n > max {
            return Err(FetchError::new(
                Reason::TooBig,
                format!("Content-Length {n}, over the {max}-byte cap"),
            ));
        }
    }
    let rest = buf.split_off(head_len);
    drop(buf);
    let mut body = HttpBody {
        s: &mut s,
        dl: &dl,
        dec: BodyDecoder::new(framing),
        chunk,
        decoded: Vec::new(),
        pos: 0,
        got: 0,
        eof: false,
        failed: None,
    };
    body.feed(&rest)
        .map_err(|e| FetchError::new(Reason::BadResponse, e))?;
    drop(rest);
    let reserve = match framing {
        Framing::Length(n) if !gzip => Some(n),
        _ => None,
    };
    let doc = read_document(&mut body, max, gzip, reserve).map_err(|e| match e {
        DocError::Doc(e) => e,
        DocError::Source(e) => body.failed.take().unwrap_or_else(|| {
            FetchError::new(
                Reason::BadResponse,
                format!("read after {} bytes: {e}", body.got),
            )
        }),
    })?;
    Ok(Answer::Body {
        body: doc.body,
        validators,
        received: doc.received,
    })
}

/// The body of a response, de-chunked, as a `Read`: for `read_document`.
/// Its own failures (timeouts, a truncated or broken framing) are kept in
/// `failed`, the `Read` error being a stand-in.
struct HttpBody<'a> {
    s: &'a mut TcpStream,
    dl: &'a Deadline,
    dec: BodyDecoder,
    chunk: Vec<u8>,
    /// Body bytes decoded and not yet read.
    decoded: Vec<u8>,
    pos: usize,
    /// Body bytes decoded so far.
    got: u64,
    eof: bool,
    failed: Option<FetchError>,
}

impl HttpBody<'_> {
    /// Decode `input` (framing errors in words).
    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
        let decoded = &mut self.decoded;
        let before = decoded.len();
        let r = self.dec.feed(input, |b| decoded.extend_from_slice(b));
        self.got += (self.decoded.len() - before) as u64;
        r
    }

    /// Read from the socket until some body comes or it ends.
    fn more(&mut self) -> Result<(), FetchError> {
        let n = self.dl.read(self.s, &mut self.chunk, self.got)?;
        if n == 0 {
            self.dec
                .at_eof()
                .map_err(|e| FetchError::new(Reason::Truncated, e))?;
            self.eof = true;
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        let r = self.feed(&chunk[..n]);
        self.chunk = chunk;
        r.map_err(|e| FetchError::new(Reason::BadResponse, e))
    }
}

impl Read for HttpBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.decoded.len() {
            self.decoded.clear();
            self.pos = 0;
            if self.eof || self.dec.done() || self.failed.is_some() {
                return Ok(0);
            }
            if let Err(e) = self.more() {
                self.failed = Some(e);
                return Err(io::Error::other("the HTTP body failed"));
            }
        }
        let n = out.len().min(self.decoded.len() - self.pos);
        out[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// The daemon's thread.

/// Maps a source channel id to a capbox channel (the config's map, else the
/// id itself if it is a channel's tvg-id).
pub type Resolve = Box<dyn Fn(&str) -> Option<String> + Send>;

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    stats: Mutex<FetchStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One source's poller on its own thread. Holds the store's lock only
/// while a parsed document's events are validated and stored
/// (`Poller::apply_locked`), never during the network fetch or the parse.
pub struct FetchThread {
    shared: Arc<Shared>,
    name: String,
    handle: Option<JoinHandle<()>>,
}

/// Start polling `poller`'s source: at once, then on its schedule. The
/// schedule runs on the monotonic clock; the store gets the wall clock.
pub fn spawn(
    mut poller: Poller,
    store: Arc<Mutex<Store>>,
    resolve: Resolve,
) -> io::Result<FetchThread> {
    let shared = Arc::new(Shared {
        stop: Mutex::new(false),
        wake: Condvar::new(),
        stats: Mutex::new(FetchStats::default()),
    });
    let sh = shared.clone();
    let name = poller.src.name.clone();
    let handle = std::thread::Builder::new()
        .name(format!("xmltv-{}", poller.src.name))
        .spawn(move || {
            let t0 = Instant::now();
            if poller.cache.is_some() {
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let mut s = lock(&store);
                poller.restore(&mut s, &*resolve, 0, unix);
            }
            loop {
                let mono = t0.elapsed().as_secs();
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                if let Fetched::Body(body) = poller.fetch(mono, unix) {
                    if *lock(&sh.stop) {
                        return;
                    }
                    poller.apply_locked(&body, &store, &*resolve, unix);
                }
                *lock(&sh.stats) = poller.stats.clone();
                let mut stop = lock(&sh.stop);
                loop {
                    if *stop {
                        return;
                    }
                    let left = poller.next_due.saturating_sub(t0.elapsed().as_secs());
                    if left == 0 {
                        break;
                    }
                    stop = sh
                        .wake
                        .wait_timeout(stop, Duration::from_secs(left))
                        .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                }
            }
        })?;
    Ok(FetchThread {
        shared,
        name,
        handle: Some(handle),
    })
}

impl FetchThread {
    /// The source's counters as of its last poll.
    pub fn stats(&self) -> FetchStats {
        lock(&self.shared.stats).clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for FetchThread {
    /// Tells the thread to stop and returns at once: a fetch under way
    /// ends within its timeouts and its document is not applied.
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.handle.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// The sources' metric families (see the module doc), for `/metrics`.
pub fn render_metrics(out: &mut String, sources: &[(&str, &FetchStats)]) {
    let mut f = family(
        out,
        "capbox_epg_xmltv_fetches_total",
        Kind::Counter,
        "Polls of an operator XMLTV source, by result (ok, not_modified, or why it failed; the last good guide stays on failure).",
    );
    for (name, s) in sources {
        for (result, n) in s.results() {
            f.sample(&[("source", name), ("result", result)], n);
        }
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_bytes_total",
        Kind::Counter,
        "Body bytes received from an operator XMLTV source.",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.bytes);
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_last_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last poll that loaded an XMLTV document or found it unchanged (0: never).",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.last_success.unwrap_or(0));
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_consecutive_failures",
        Kind::Gauge,
        "Failures of an operator XMLTV source in a row (the poll period doubles with each).",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.consecutive_failures);
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_channels_refused_total",
        Kind::Counter,
        "Channels of an accepted XMLTV document that kept their last good guide (mostly invalid events, nothing current, or a wipe-out).",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.channels_refused);
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_unknown_programmes_total",
        Kind::Counter,
        "XMLTV programmes whose channel id maps to no capbox channel.",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.parse.unknown_channel);
    }
    let mut f = family(
        out,
        "capbox_epg_xmltv_cache_write_errors_total",
        Kind::Counter,
        "Failed writes of an XMLTV source's cached document or schedule.",
    );
    for (name, s) in sources {
        f.sample(&[("source", name)], s.cache_errors);
    }
}

#[cfg(test)]
mod tests;
