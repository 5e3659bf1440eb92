//! What the server refuses and closes, said in words without flooding the
//! log: one [`RateLog`] per kind of refusal writes the first occurrence at
//! once and then at most one summary line per [`LOG_INTERVAL`] with a count,
//! however hard a client or a crowd pushes. Also the per-address connection
//! count behind `max_clients_per_address`.
//!
//! Bounded: a fixed number of kinds, one detail string each; the address
//! table has one entry per address with an open connection (never more than
//! the connections themselves).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most one summary line per kind of refusal this often.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The kinds of refusal and close that are logged, each in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Why {
    /// 403: the [access] list or the token of the route said no.
    Forbidden,
    /// Closed at accept: the peer is in no [access] list at all.
    NotAllowed,
    /// Closed at accept: the peer holds max_clients_per_address already.
    PerAddress,
    /// 503: max_clients connections are open.
    MaxClients,
    /// 431: the request head is larger than the limit or has too many headers.
    HeadTooLarge,
    /// 400: the request does not parse.
    BadRequest,
    /// No complete request head within request_timeout (slowloris).
    RequestTimeout,
    /// accept() failed with something else than running out of descriptors.
    AcceptError,
    /// The kernel refused `[server]` tcp_congestion or send_buffer_bytes
    /// on an accepted connection (served with its defaults).
    Tuning,
}

const KINDS: usize = 9;

impl Why {
    fn index(self) -> usize {
        self as usize
    }

    /// Refusals of single requests are routine; a crowd at the door or a
    /// failing accept() is worth an operator's attention.
    fn level(self) -> log::Level {
        match self {
            Why::Forbidden | Why::HeadTooLarge | Why::BadRequest | Why::RequestTimeout => {
                log::Level::Info
            }
            Why::NotAllowed | Why::PerAddress | Why::MaxClients | Why::AcceptError => {
                log::Level::Warn
            }
            Why::Tuning => log::Level::Error,
        }
    }

    /// Completes "N more …" and "<detail>: …".
    fn words(self) -> &'static str {
        match self {
            Why::Forbidden => "requests refused by the [access] lists (403)",
            Why::NotAllowed => {
                "connections closed at accept: the peer is in no [access] list"
            }
            Why::PerAddress => {
                "connections closed at accept: the address has max_clients_per_address connections open"
            }
            Why::MaxClients => "connections refused: max_clients connections are open (503)",
            Why::HeadTooLarge => {
                "requests refused: request head larger than the limit or too many headers (431)"
            }
            Why::BadRequest => "malformed requests refused (400)",
            Why::RequestTimeout => {
                "connections closed: no complete request head within the request timeout"
            }
            Why::AcceptError => "accept() failures: accepting paused",
            Why::Tuning => {
                "connections served with the kernel's default TCP settings instead of [server]'s"
            }
        }
    }
}

#[derive(Default)]
struct Window {
    /// When the last line of this kind was written.
    logged: Option<Instant>,
    /// Occurrences since then that were not written.
    suppressed: u64,
    /// The latest of them, for the summary.
    last: String,
}

/// Rate-limited log lines, one window per [`Why`].
#[derive(Default)]
pub(super) struct RateLog {
    windows: [Window; KINDS],
}

impl RateLog {
    /// One occurrence; `detail` (peer, request, error) is formatted only
    /// when it may be written.
    pub(super) fn note(&mut self, why: Why, now: Instant, detail: impl FnOnce() -> String) {
        let w = &mut self.windows[why.index()];
        let quiet = w
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL);
        if quiet && w.suppressed == 0 {
            w.logged = Some(now);
            log::log!(
                why.level(),
                "http: {}: {}; more of these are summed up every {} s",
                detail(),
                why.words(),
                LOG_INTERVAL.as_secs()
            );
        } else {
            w.suppressed += 1;
            w.last = detail();
        }
    }

    /// Write the summary of every kind whose interval has passed.
    pub(super) fn flush(&mut self, now: Instant) {
        for (i, w) in self.windows.iter_mut().enumerate() {
            if w.suppressed == 0 {
                continue;
            }
            let since = w.logged.map(|t| now.saturating_duration_since(t));
            if since.is_some_and(|d| d < LOG_INTERVAL) {
                continue;
            }
            log::log!(
                WHYS[i].level(),
                "http: {} more {} in the last {} s; the last: {}",
                w.suppressed,
                WHYS[i].words(),
                since.unwrap_or(LOG_INTERVAL).as_secs(),
                w.last
            );
            w.logged = Some(now);
            w.suppressed = 0;
            w.last = String::new();
        }
    }
}

const WHYS: [Why; KINDS] = [
    Why::Forbidden,
    Why::NotAllowed,
    Why::PerAddress,
    Why::MaxClients,
    Why::HeadTooLarge,
    Why::BadRequest,
    Why::RequestTimeout,
    Why::AcceptError,
    Why::Tuning,
];

/// Open connections per peer address. An IPv4 peer seen on a dual-stack
/// socket (`::ffff:a.b.c.d`) counts as the IPv4 address.
#[derive(Default)]
pub(super) struct PerAddress {
    open: HashMap<IpAddr, usize>,
}

impl PerAddress {
    pub(super) fn count(&self, ip: IpAddr) -> usize {
        self.open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    pub(super) fn add(&mut self, ip: IpAddr) {
        *self.open.entry(ip.to_canonical()).or_default() += 1;
    }

    pub(super) fn remove(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(n) = self.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whys_table_matches_indices() {
        for (i, w) in WHYS.iter().enumerate() {
            assert_eq!(w.index(), i);
        }
    }

    #[test]
    fn first_is_written_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut r = RateLog::default();
        r.note(Why::Forbidden, t0, || "a".into());
        assert_eq!(r.windows[0].suppressed, 0);
        for i in 0..1000 {
            r.note(Why::Forbidden, t0 + Duration::from_millis(i), || {
                format!("b{i}")
            });
        }
        assert_eq!(r.windows[0].suppressed, 1000);
        assert_eq!(r.windows[0].last, "b999");
        // Not yet: the interval since the first line has not passed.
        r.flush(t0 + Duration::from_secs(5));
        assert_eq!(r.windows[0].suppressed, 1000);
        r.flush(t0 + LOG_INTERVAL);
        assert_eq!(r.windows[0].suppressed, 0);
        // Inside the next interval: counted, not written.
        r.note(
            Why::Forbidden,
            t0 + LOG_INTERVAL + Duration::from_secs(1),
            || "c".into(),
        );
        assert_eq!(r.windows[0].suppressed, 1);
        // Other kinds have their own window.
        r.note(Why::NotAllowed, t0, || "d".into());
        assert_eq!(r.windows[1].suppressed, 0);
        assert!(r.windows[1].logged.is_some());
    }

    #[test]
    fn per_address_counts_mapped_v4_as_v4() {
        let mut p = PerAddress::default();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        p.add(v4);
        p.add(mapped);
        assert_eq!(p.count(v4), 2);
        p.remove(mapped);
        p.remove(v4);
        assert_eq!(p.count(v4), 0);
        assert!(p.open.is_empty());
        // Removing what is not there is harmless.
        p.remove(v4);
        assert!(p.open.is_empty());
    }
}
