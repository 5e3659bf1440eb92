//! `capbox logs`: the last events of the running capbox in plain words —
//! this run's warnings, errors, supervisor and adapter-ladder lines, and
//! those before the last reset — from /status (`supervisor.events`,
//! `supervisor.resets.last_events`). `-f` follows: a look a second, new
//! events printed as they come, Ctrl-C stops. Lines wrap at the terminal's
//! width with the time in front.

use super::status::http_get;
use super::term::Term;
use std::time::Duration;

const HELP: &str = "\
usage: capbox logs [-f] [-n N] [--url http://127.0.0.1:8080]

The last events of the running capbox (warnings, errors, the supervisor's
and the adapters' recovery lines; capbox keeps the last 20 of this run and
the last 20 before the last reset), oldest first, one entry per event.
-f  follow: print new events as they come (a look a second); Ctrl-C stops.
-n  at most N events of this run (default: all kept; on a terminal, as
    many as fit on one screen with the heading, and a line says how many
    earlier ones `capbox logs | less` shows).
Every line of the log (info too) is in the system log: `logread | grep
capbox` on the appliance, `journalctl -u capbox` with systemd.
";

/// One event as the console shows it: "01:02:03 warning: text".
pub fn words(at: &str, text: &str) -> String {
    let (level, rest) = match text.split_once(' ') {
        Some(("ERROR", r)) => ("error: ", r),
        Some(("WARN", r)) => ("warning: ", r),
        Some(("INFO", r)) => ("", r),
        _ => ("", text),
    };
    format!("{at} {level}{rest}")
}

/// The lines of one event wrapped to `term`, continuation indented under
/// the text.
fn event_lines(term: &Term, at: &str, text: &str) -> Vec<String> {
    let indent = at.chars().count() + 1;
    term.wrap(&words(at, text), indent)
}

/// What a look at /status gave: this run's events, the count of all
/// noted, the start time, the reset before it.
#[derive(Clone)]
struct Look {
    events: Vec<(u64, String)>,
    total: u64,
    started: u64,
    reset: Option<(String, String, Vec<String>)>,
}

fn look(url: &str) -> Result<Look, String> {
    let body = http_get(url, "/status", Duration::from_secs(5))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))?;
    parse(&v, crate::supervisor::resetlog::unix_now())
}

fn parse(v: &serde_json::Value, now: u64) -> Result<Look, String> {
    let sup = &v["supervisor"];
    if sup.is_null() {
        return Err("this capbox has no supervisor in /status (older than capbox logs)".into());
    }
    let events: Vec<(u64, String)> = sup["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["unix"].as_u64().unwrap_or(0),
                        e["text"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let total = sup["events_total"]
        .as_u64()
        .unwrap_or(events.len() as u64)
        .max(events.len() as u64);
    let r = &sup["resets"];
    let reset = r["last_cause"].as_str().map(|cause| {
        (
            r["last_at"].as_str().unwrap_or("?").to_string(),
            cause.to_string(),
            r["last_events"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        )
    });
    // The uptime is in whole seconds: the first event may be older.
    let started = now.saturating_sub(v["uptime_seconds"].as_u64().unwrap_or(0));
    let started = events.iter().map(|e| e.0).fold(started, u64::min);
    Ok(Look {
        events,
        total,
        started,
        reset,
    })
}

/// `render` cut to one screen of `rows` (the command line above and the
/// prompt below take two): the newest events of this run that fit, the
/// heading kept on top, and a line saying how many earlier ones there are.
/// On a serial console there is no scrollback: what scrolls away is lost.
fn fit_screen(term: &Term, l: &Look, now: u64, rows: usize) -> Vec<String> {
    let room = rows.saturating_sub(2).max(4);
    let all = render(term, l, now, usize::MAX);
    if all.len() <= room {
        return all;
    }
    // The earlier run's events go first: this run's are what was asked.
    let mut shown = Look {
        reset: None,
        ..l.clone()
    };
    let n = l.events.len();
    for keep in (0..=n).rev() {
        let mut out = render(term, &shown, now, keep);
        let hidden = n - keep;
        if hidden > 0 || l.reset.is_some() {
            let before = if l.reset.is_some() {
                " and the events before the last reset"
            } else {
                ""
            };
            let what = if hidden > 0 {
                format!("{hidden} earlier event(s){before}")
            } else {
                before.trim_start_matches(" and ").to_string()
            };
            out.extend(term.wrap(&format!("  ({what}: capbox logs | less)"), 3));
        }
        if out.len() <= room || keep == 0 {
            return out;
        }
    }
    shown.events.clear();
    render(term, &shown, now, 0)
}

/// The whole text of `capbox logs` for one look.
fn render(term: &Term, l: &Look, now: u64, max: usize) -> Vec<String> {
    use crate::supervisor::resetlog::utc_words;
    let mut out = Vec::new();
    if let Some((at, cause, before)) = &l.reset {
        out.extend(term.wrap(&format!("Before the last reset ({at}: {cause}):"), 2));
        if before.is_empty() {
            out.push("  no events kept".into());
        }
        for e in before {
            // "YYYY-MM-DD HH:MM:SS UTC text".
            let (at, text) = match (e.get(..19), e.get(24..)) {
                (Some(at), Some(text)) => (at.get(5..).unwrap_or(at).to_string(), text),
                _ => (String::new(), e.as_str()),
            };
            for line in event_lines(term, &format!("  {at}"), text) {
                out.push(line);
            }
        }
        out.push(String::new());
    }
    out.extend(term.wrap(
        &format!(
            "This run, since {} ({} events, the last {} kept):",
            utc_words(l.started),
            l.total,
            l.events.len()
        ),
        2,
    ));
    if l.events.is_empty() {
        out.push("  no warnings or errors since the start".into());
    }
    let skip = l.events.len().saturating_sub(max);
    for (unix, text) in &l.events[skip..] {
        let at = super::status::event_time(*unix, now);
        out.extend(event_lines(term, &format!("  {at}"), text));
    }
    out
}

pub fn run(args: &[String]) -> i32 {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut follow = false;
    let mut max = usize::MAX;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "-f" | "--follow" => follow = true,
            "-n" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => max = n,
                None => {
                    super::term::warn("capbox logs: -n needs a number");
                    return 2;
                }
            },
            "--url" => match it.next() {
                Some(u) => url = u.clone(),
                None => {
                    super::term::warn("capbox logs: --url needs a value");
                    return 2;
                }
            },
            other => {
                eprintln!("capbox logs: unknown option '{other}'\n\n{HELP}");
                return 2;
            }
        }
    }
    let term = Term::stdout();
    // Ctrl-C while following ends the loop, not the process mid-line.
    let stop = if follow {
        match super::interrupt::Interrupt::catch() {
            Ok(s) => Some(s),
            Err(e) => {
                super::term::warn(&format!("capbox logs: {e}"));
                return 1;
            }
        }
    } else {
        None
    };
    let first = match look(&url) {
        Ok(l) => l,
        Err(e) => {
            super::term::warn(&format!(
                "capbox logs: {e} (is capbox running? its whole log: `logread | grep capbox`)"
            ));
            return 1;
        }
    };
    let now = crate::supervisor::resetlog::unix_now();
    let text = match (term.rows, max == usize::MAX) {
        (Some(rows), true) => fit_screen(&term, &first, now, rows),
        _ => render(&term, &first, now, max),
    };
    emit(&term, &text);
    let Some(stop) = stop else { return 0 };
    emit(&term, &["-- following; Ctrl-C stops --".to_string()]);
    let (mut seen, mut started) = (first.total, first.started);
    let mut away = false;
    while !stop.wait(Duration::from_secs(1)) {
        match look(&url) {
            Err(e) => {
                if !away {
                    emit(
                        &term,
                        &term.wrap(
                            &format!("-- capbox does not answer: {e}; still trying --"),
                            3,
                        ),
                    );
                    away = true;
                }
            }
            Ok(l) => {
                let now = crate::supervisor::resetlog::unix_now();
                if away || l.started.abs_diff(started) > 2 || l.total < seen {
                    if l.started.abs_diff(started) > 2 || l.total < seen {
                        emit(&term, &term.wrap("-- capbox started again --", 3));
                        seen = 0;
                        started = l.started;
                    }
                    away = false;
                }
                let new = l.total.saturating_sub(seen);
                let kept = (new as usize).min(l.events.len());
                if new as usize > kept {
                    emit(
                        &term,
                        &[format!(
                            "-- {} events came and went between two looks (capbox keeps 20) --",
                            new as usize - kept
                        )],
                    );
                }
                let mut lines = Vec::new();
                for (unix, text) in &l.events[l.events.len() - kept..] {
                    let at = super::status::event_time(*unix, now);
                    lines.extend(event_lines(&term, &at, text));
                }
                emit(&term, &lines);
                seen = l.total;
            }
        }
    }
    // After the terminal's "^C".
    emit(&term, &[String::new(), "-- stopped --".to_string()]);
    0
}

fn emit(term: &Term, lines: &[String]) {
    use std::io::Write;
    let mut o = String::new();
    for l in lines {
        o.push_str(&term.fit(l));
        o.push('\n');
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(o.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term() -> Term {
        Term {
            cols: 80,
            rows: Some(24),
            ascii: true,
            color: false,
        }
    }

    #[test]
    fn on_a_terminal_the_heading_and_the_newest_events_fit_one_screen() {
        let now = 1_800_000_000u64;
        let events: Vec<serde_json::Value> = (0..20u64)
            .map(|i| serde_json::json!({"unix": now - 100 + i, "text": format!(
                "WARN channel 'ch{i}': no video: video PID 256 carried no PES with an advancing PTS for 5 s (the source still sends its other streams)")}))
            .collect();
        let v = serde_json::json!({
            "uptime_seconds": 600,
            "supervisor": {"events": events, "events_total": 31,
                "resets": {"last_cause": "watchdog reset", "last_at": "2027-01-15 07:59:00 UTC",
                           "last_events": ["2027-01-15 07:58:40 UTC ERROR supervisor: thread 'http' has not turned for 10 s"]}}
        });
        let l = parse(&v, now).unwrap();
        // Everything is more than a screen: 20 events of two lines each.
        assert!(render(&term(), &l, now, usize::MAX).len() > 22);
        let out = fit_screen(&term(), &l, now, 24);
        assert!(out.len() <= 22, "{}", out.join("\n"));
        assert!(out[0].starts_with("This run, since"), "{}", out.join("\n"));
        // The newest is there, the oldest is not, and the last line says so.
        let text = out.join("\n");
        assert!(text.contains("'ch19'") && !text.contains("'ch0'"), "{text}");
        let last = out.last().unwrap();
        assert!(
            last.contains(
                "earlier event(s) and the events before the last reset: capbox logs | less"
            ),
            "{text}"
        );
        assert!(out.iter().all(|l| l.chars().count() <= 80), "{text}");
        // What fits is printed whole.
        let small = serde_json::json!({"uptime_seconds": 5, "supervisor": {"events": [], "events_total": 0}});
        let l = parse(&small, now).unwrap();
        assert_eq!(
            fit_screen(&term(), &l, now, 24),
            render(&term(), &l, now, usize::MAX)
        );
    }

    #[test]
    fn events_read_in_plain_words_within_80_columns() {
        let now = 1_800_000_000u64;
        let v = serde_json::json!({
            "uptime_seconds": 65,
            "supervisor": {
                "events": [
                    {"unix": now - 60, "text": "WARN channel 'beethoven': down: source: ter1 (adapter7): adapter7/frontend0: open failed: No such file or directory (ENOENT, errno 2)"},
                    {"unix": now - 5, "text": "INFO ter1 (adapter0): locked but no data for 2 s: step 1/4 retune"},
                    {"unix": now - 1, "text": "supervisor: watchdog /dev/watchdog armed"}
                ],
                "events_total": 7,
                "resets": {"last_cause": "watchdog reset (the card reported it)",
                           "last_at": "2027-01-15 07:59:00 UTC",
                           "last_events": ["2027-01-15 07:58:40 UTC ERROR supervisor: thread 'http' has not turned for 10 s"]}
            }
        });
        let l = parse(&v, now).unwrap();
        assert_eq!(l.total, 7);
        let out = render(&term(), &l, now, usize::MAX);
        for line in &out {
            assert!(line.chars().count() <= 80, "{out:#?}");
        }
        let text = out.join("\n");
        assert!(
            text.starts_with("Before the last reset (2027-01-15 07:59:00 UTC: watchdog reset (the card\n  reported it)):\n  01-15 07:58:40 error: supervisor: thread 'http'"),
            "{text}"
        );
        assert!(text.contains("(7 events, the last 3 kept):"), "{text}");
        assert!(
            text.contains("  07:59:00 warning: channel 'beethoven': down: source: ter1"),
            "{text}"
        );
        // A long event wraps under its text, not under the time.
        assert!(
            text.contains(":\n           adapter7/frontend0: open"),
            "{text}"
        );
        assert!(
            text.contains(
                "  07:59:55 ter1 (adapter0): locked but no data for 2 s: step 1/4 retune"
            ),
            "{text}"
        );
        // -n: the last N of this run.
        let out = render(&term(), &l, now, 1).join("\n");
        assert!(!out.contains("beethoven") && out.contains("watchdog /dev/watchdog armed"));
        // No supervisor: said in words.
        assert!(parse(&serde_json::json!({"channels": []}), now)
            .err()
            .unwrap()
            .contains("no supervisor"));
        // Nothing yet.
        let v = serde_json::json!({"uptime_seconds": 1, "supervisor": {"events": [], "events_total": 0, "resets": {}}});
        let out = render(&term(), &parse(&v, now).unwrap(), now, usize::MAX).join("\n");
        assert!(
            out.ends_with("  no warnings or errors since the start"),
            "{out}"
        );
    }
}
