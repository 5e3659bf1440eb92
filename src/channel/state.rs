//! Whether a channel's program from one source is up, and why not, in
//! words: a pure function of the facts its feeding thread reported and of
//! the time (the clock is passed in), so every rule can be tested without
//! a thread or a file.

use crate::source::runner::LISTED_SERVICES;
use crate::source::SourceReport;
use std::time::{Duration, Instant};

/// A program with no packet for this long is down.
pub const FRESH: Duration = Duration::from_secs(2);

/// The state of a channel (or of one of its sources), rendered in words
/// at the edge (`/status`, metrics, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    /// Nothing reported yet.
    #[default]
    Starting,
    Up,
    Down,
}

impl ChannelState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelState::Starting => "starting",
            ChannelState::Up => "up",
            ChannelState::Down => "down",
        }
    }
}

impl std::fmt::Display for ChannelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a program from one source, and the reason in words
/// (empty when up and nothing is worth saying). `last_data` is when the
/// channel last received a packet of it; `r` is `None` before the first
/// report.
pub fn verdict(
    r: Option<&SourceReport>,
    last_data: Option<Instant>,
    now: Instant,
) -> (ChannelState, String) {
    let Some(r) = r else {
        return (ChannelState::Starting, String::new());
    };
    let (state, reason) = program_verdict(r, last_data, now);
    // A remote source that is down says why its connection failed: "no
    // data from the source for 2 s" alone would hide an HTML page or a
    // peer that never answers.
    match r.remote.as_ref().and_then(|rs| rs.failure_words()) {
        Some(why) if state == ChannelState::Down => (state, format!("{reason} (remote: {why})")),
        _ => (state, reason),
    }
}

/// `verdict` from the program's facts alone.
fn program_verdict(
    r: &SourceReport,
    last_data: Option<Instant>,
    now: Instant,
) -> (ChannelState, String) {
    if !r.open {
        return match &r.error {
            Some(e) => (ChannelState::Down, e.clone()),
            None => (ChannelState::Starting, "opening the source".into()),
        };
    }
    if r.pat_seen && r.pmt_pid.is_none() {
        let shown: Vec<String> = r
            .services
            .iter()
            .take(LISTED_SERVICES)
            .map(|s| s.to_string())
            .collect();
        let mut list = shown.join(", ");
        let total = r.services_total.max(r.services.len());
        if total > shown.len() {
            list += &format!(", … ({} more)", total - shown.len());
        }
        return (
            ChannelState::Down,
            format!("no service {} in the mux (services: {list})", r.program),
        );
    }
    if let (Some(pid), None) = (r.pmt_pid, r.pmt_version) {
        return (
            ChannelState::Down,
            if r.psi_crc_errors > 0 {
                format!(
                    "no valid PMT on PID {pid:#06x} ({} PSI CRC errors)",
                    r.psi_crc_errors
                )
            } else {
                format!("waiting for the PMT on PID {pid:#06x}")
            },
        );
    }
    if !r.pat_seen {
        return (ChannelState::Down, "no PAT in the input yet".into());
    }
    let fresh = last_data.is_some_and(|t| now.saturating_duration_since(t) < FRESH);
    if !fresh {
        return (
            ChannelState::Down,
            format!("no data from the source for {} s", FRESH.as_secs()),
        );
    }
    let reason = if !r.missing_pids.is_empty() {
        let list: Vec<String> = r.missing_pids.iter().map(|p| format!("{p:#06x}")).collect();
        format!(
            "PID(s) {} named in the PMT carry no packets",
            list.join(", ")
        )
    } else {
        r.scrambled.clone().unwrap_or_default()
    };
    (ChannelState::Up, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> SourceReport {
        SourceReport {
            source: "file x.ts".into(),
            open: true,
            program: 2,
            services: vec![1, 2, 3],
            services_total: 3,
            pat_seen: true,
            pmt_pid: Some(0x1000),
            pmt_version: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn each_rule_in_words() {
        let t0 = Instant::now();
        let t = t0 + Duration::from_secs(10);
        let recent = Some(t - Duration::from_millis(100));
        assert_eq!(verdict(None, None, t).0, ChannelState::Starting);
        assert_eq!(
            verdict(Some(&ok()), recent, t),
            (ChannelState::Up, String::new())
        );
        let failed =
            SourceReport::failed("source: file x.ts: end of file (loop = false)".into(), 1);
        assert_eq!(
            verdict(Some(&failed), recent, t),
            (
                ChannelState::Down,
                "source: file x.ts: end of file (loop = false)".into()
            )
        );
        let mut r = ok();
        r.pmt_pid = None;
        r.program = 4;
        assert_eq!(
            verdict(Some(&r), recent, t).1,
            "no service 4 in the mux (services: 1, 2, 3)"
        );
        r.services = (1..=17).collect();
        r.services_total = 1000;
        let words = verdict(Some(&r), recent, t).1;
        assert!(words.ends_with("… (984 more))"), "{words}");
        let mut r = ok();
        r.pmt_version = None;
        assert_eq!(
            verdict(Some(&r), recent, t).1,
            "waiting for the PMT on PID 0x1000"
        );
        r.psi_crc_errors = 3;
        assert_eq!(
            verdict(Some(&r), recent, t).1,
            "no valid PMT on PID 0x1000 (3 PSI CRC errors)"
        );
        let mut r = ok();
        r.pat_seen = false;
        r.pmt_pid = None;
        assert_eq!(verdict(Some(&r), recent, t).1, "no PAT in the input yet");
        let stale = Some(t - Duration::from_secs(3));
        assert_eq!(
            verdict(Some(&ok()), stale, t),
            (ChannelState::Down, "no data from the source for 2 s".into())
        );
        assert_eq!(verdict(Some(&ok()), None, t).0, ChannelState::Down);
        let mut r = ok();
        r.missing_pids = vec![0x101];
        assert_eq!(
            verdict(Some(&r), recent, t),
            (
                ChannelState::Up,
                "PID(s) 0x0101 named in the PMT carry no packets".into()
            )
        );
        let mut r = ok();
        r.remote = Some(crate::source::remote::RemoteStatus {
            url: "http://peer/stream/news".into(),
            state: "backing off 800 ms after …".into(),
            connected: false,
            last_error: Some("not MPEG-TS: got text/html".into()),
            rcvbuf_bytes: None,
            queued_bytes: 0,
            counters: Default::default(),
        });
        assert_eq!(
            verdict(Some(&r), stale, t),
            (
                ChannelState::Down,
                "no data from the source for 2 s (remote: not MPEG-TS: got text/html)".into()
            )
        );
        // Up, or connected: nothing added.
        assert_eq!(
            verdict(Some(&r), recent, t),
            (ChannelState::Up, String::new())
        );
        r.remote.as_mut().unwrap().connected = true;
        assert_eq!(
            verdict(Some(&r), stale, t).1,
            "no data from the source for 2 s"
        );
        let mut r = ok();
        r.scrambled = Some("no control word yet: 5 packets left scrambled".into());
        assert_eq!(
            verdict(Some(&r), recent, t).1,
            "no control word yet: 5 packets left scrambled"
        );
    }
}
