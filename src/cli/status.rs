//! `capbox status`: asks the running capbox over HTTP and prints its
//! channels and clients in 80 columns.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const HELP: &str = "\
usage: capbox status [--url http://127.0.0.1:8080] [--json]

Asks the running capbox for /status and prints one line per channel (state,
service, clients, bitrate, why it is down), under a channel with several
sources one line per source (`*` on air, its health or why it is down: a
remote source says why its connection failed), one line per adapter (lock,
C/N and its escalation ladder: ok, the step it is on and why, FAILED, the
steps taken since the start), and one line per client.
";

/// GET a path from `http://host:port`; returns the body of a 200 answer.
pub fn http_get(base: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let (code, head, body) = http_request(base, "GET", path, None, timeout)?;
    if code != 200 {
        let status_line = head.lines().next().unwrap_or("");
        return Err(format!("{path}: {status_line}: {}", body.trim()));
    }
    Ok(body)
}

/// One request to the running capbox (`http://host:port`), with an
/// optional bearer token; the status code, head and body (at most 16 MiB).
/// The console commands' only HTTP client.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String, String), String> {
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot reach capbox at {base}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: capbox-cli\r\n{auth}{length}\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading {path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP answer")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status line")?;
    Ok((code, head.to_string(), body.to_string()))
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub fn run(args: &[String]) -> i32 {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => match it.next() {
                Some(u) => url = u.clone(),
                None => {
                    eprintln!("capbox status: --url needs a value");
                    return 2;
                }
            },
            "--json" => json = true,
            other => {
                eprintln!("capbox status: unknown option '{other}'\n\n{HELP}");
                return 2;
            }
        }
    }
    let body = match http_get(&url, "/status", Duration::from_secs(5)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("capbox status: {e}");
            return 1;
        }
    };
    if json {
        println!("{body}");
        return 0;
    }
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("capbox status: /status is not JSON: {e}");
            return 1;
        }
    };
    print!("{}", render(&v));
    0
}

/// Under a failover channel: what is on air (and why viewers are refused,
/// or a pin), one line per source with `*` on the one on air and its health
/// in words ("ok", "stalled 1.2 s (remote: not MPEG-TS: got text/html)"),
/// else its state and reason (a line too long for 80 columns puts the
/// words on a line of their own), and the last switch.
fn render_sources(o: &mut String, ch: &serde_json::Value) {
    use std::fmt::Write as _;
    let sources = ch["sources"].as_array().cloned().unwrap_or_default();
    let f = &ch["failover"];
    if sources.len() < 2 && f.is_null() {
        return;
    }
    if !f.is_null() {
        let _ = writeln!(
            o,
            "{}",
            cut(
                &format!("  on air: {}", f["on_air"].as_str().unwrap_or("?")),
                80
            )
        );
        if let Some(w) = f["viewers_refused"].as_str() {
            let _ = writeln!(o, "{}", cut(&format!("  VIEWERS REFUSED: {w}"), 80));
        }
        if let Some(p) = f["pinned"].as_u64() {
            let left = match f["pin_expires_in_s"].as_u64() {
                Some(s) => format!(
                    ", {} left",
                    crate::channel::pin::words(Duration::from_secs(s))
                ),
                None => ", until unpinned".into(),
            };
            let _ = writeln!(o, "{}", cut(&format!("  PINNED to source {p}{left}"), 80));
        }
    }
    let on_slate = f["on_slate"].as_bool().unwrap_or(false);
    let active = ch["active_source"].as_u64();
    for (i, s) in sources.iter().enumerate() {
        let mark = if !on_slate && active == Some(i as u64) {
            '*'
        } else {
            ' '
        };
        let why = match s["health"].as_str() {
            Some(h) => h.to_string(),
            None => {
                let state = s["state"].as_str().unwrap_or("?");
                match s["reason"].as_str().filter(|r| !r.is_empty()) {
                    Some(r) => format!("{state}: {r}"),
                    None => state.to_string(),
                }
            }
        };
        let head = format!(
            "  {mark} {i} {}",
            cut(s["source"].as_str().unwrap_or("?"), 44)
        );
        let line = format!("{head}  {why}");
        if line.chars().count() <= 80 {
            let _ = writeln!(o, "{line}");
        } else {
            let _ = writeln!(o, "{head}");
            let _ = writeln!(o, "{}", cut(&format!("        {why}"), 80));
        }
    }
    if on_slate {
        let _ = writeln!(o, "  * slate");
    }
    if let Some(w) = f["last_switch"].as_str() {
        let age = f["last_switch_age_s"].as_u64().unwrap_or(0);
        let line = format!(
            "  last switch {} ago ({} in all): {w}",
            crate::channel::pin::words(Duration::from_secs(age)),
            f["switches"].as_u64().unwrap_or(0)
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
    }
}

/// The ladder of one adapter in words: "ok", "ok; last step reopen 12m
/// ago", "step 1/4 retune: locked but no data for 2 s", "FAILED: …".
fn recovery_words(r: &serde_json::Value, now: u64) -> String {
    let step = r["step"].as_u64().unwrap_or(0);
    let reason = r["reason"].as_str().unwrap_or("");
    let ago = r["last_step_at"]
        .as_u64()
        .map(|t| crate::channel::pin::words(Duration::from_secs(now.saturating_sub(t))));
    if r["failed"].as_bool().unwrap_or(false) {
        return format!("FAILED: {reason}");
    }
    let name = |n: u64| match n {
        1 => "retune",
        2 => "reopen",
        3 => "USB reset",
        _ => "failed",
    };
    match (step, r["last_step"].as_str(), ago) {
        (0, None, _) => "ok".to_string(),
        (0, Some(last), Some(ago)) => format!("ok; last step {last} {ago} ago"),
        (0, Some(last), None) => format!("ok; last step {last}"),
        (n, _, Some(ago)) => format!("step {n}/4 {} {ago} ago: {reason}", name(n)),
        (n, _, None) => format!("step {n}/4 {}: {reason}", name(n)),
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// longer word is left whole; the caller cuts).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// One line per adapter: name, device, lock, C/N, its ladder; the steps
/// taken since the start under it when there were any.
fn render_adapters(o: &mut String, v: &serde_json::Value, now: u64) {
    use std::fmt::Write as _;
    let adapters = v["adapters"].as_array().cloned().unwrap_or_default();
    if adapters.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n{:<14} {:<10} {:<4} {:>6}  RECOVERY",
        "ADAPTER", "NUMBER", "LOCK", "C/N dB"
    );
    for a in adapters {
        let r = &a["recovery"];
        let number = a["number"]
            .as_u64()
            .map(|n| format!("adapter{n}"))
            .unwrap_or_else(|| "-".into());
        let cnr = a["cnr_db"]
            .as_f64()
            .map(|c| format!("{c:.1}"))
            .unwrap_or_else(|| "-".into());
        let head = format!(
            "{:<14} {:<10} {:<4} {:>6}",
            cut(a["name"].as_str().unwrap_or("?"), 14),
            number,
            if a["locked"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            },
            cnr
        );
        let words = recovery_words(r, now);
        let line = format!("{head}  {words}");
        if line.chars().count() <= 80 {
            let _ = writeln!(o, "{line}");
        } else {
            // The words matter most here (why a tuner is failed): wrapped,
            // not cut, up to 4 lines.
            let _ = writeln!(o, "{head}");
            for l in wrap(&words, 78).iter().take(4) {
                let _ = writeln!(o, "{}", cut(&format!("  {l}"), 80));
            }
        }
        let totals: Vec<u64> = r["steps_total"]
            .as_array()
            .map(|t| t.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        if totals.iter().any(|&n| n > 0) {
            let labels = ["retune", "reopen", "USB reset", "failed"];
            let parts: Vec<String> = totals
                .iter()
                .zip(labels)
                .map(|(n, l)| format!("{n} {l}"))
                .collect();
            let line = format!(
                "  steps since start: {}; healed {}",
                parts.join(", "),
                r["healed"].as_u64().unwrap_or(0)
            );
            let _ = writeln!(o, "{}", cut(&line, 80));
        }
    }
}

/// The 80-column table.
pub fn render(v: &serde_json::Value) -> String {
    render_at(v, crate::dvb::recovery::epoch_seconds())
}

/// The table with `now` (seconds since the epoch) for the ages.
pub fn render_at(v: &serde_json::Value, now: u64) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let up = v["uptime_seconds"].as_u64().unwrap_or(0);
    let rss = v["process"]["rss_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0;
    let _ = writeln!(
        o,
        "capbox {}  up {}h{:02}m  rss {:.1} MiB",
        v["version"].as_str().unwrap_or("?"),
        up / 3600,
        (up / 60) % 60,
        rss
    );
    let _ = writeln!(
        o,
        "{:<14} {:<5} {:<22} {:>4} {:>7}  {}",
        "CHANNEL", "STATE", "SERVICE", "CLNT", "CC ERR", "NOTE"
    );
    let clients = v["clients"].as_array().cloned().unwrap_or_default();
    for ch in v["channels"].as_array().cloned().unwrap_or_default() {
        let name = ch["name"].as_str().unwrap_or("?");
        let n = clients
            .iter()
            .filter(|c| c["channel"].as_str() == Some(name))
            .count();
        let line = format!(
            "{:<14} {:<5} {:<22} {:>4} {:>7}  {}",
            cut(name, 14),
            cut(ch["state"].as_str().unwrap_or("?"), 5),
            cut(ch["service_name"].as_str().unwrap_or("-"), 22),
            n,
            ch["input_cc_errors"].as_u64().unwrap_or(0),
            ch["reason"].as_str().unwrap_or("")
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
        render_sources(&mut o, &ch);
    }
    render_adapters(&mut o, v, now);
    if !clients.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<22} {:<14} {:>10} {:>8}  {}",
            "CLIENT", "CHANNEL", "MBYTES", "LAG ms", "USER AGENT"
        );
        for c in clients {
            let line = format!(
                "{:<22} {:<14} {:>10.1} {:>8}  {}",
                cut(c["address"].as_str().unwrap_or("?"), 22),
                cut(c["channel"].as_str().unwrap_or("-"), 14),
                c["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
                c["lag_ms"].as_u64().unwrap_or(0),
                c["user_agent"].as_str().unwrap_or("")
            );
            let _ = writeln!(o, "{}", cut(&line, 80));
        }
    }
    render_supervisor(&mut o, &v["supervisor"]);
    o
}

/// Events of the run before the last reset shown by `capbox status`.
const SHOWN_EVENTS: usize = 5;

/// The supervisor block: the watchdog (armed or why not), stalled threads
/// and restarts, the reboot-loop guard, the last reset and what preceded it.
fn render_supervisor(o: &mut String, s: &serde_json::Value) {
    use std::fmt::Write as _;
    if s.is_null() {
        return;
    }
    let wd = &s["watchdog"];
    let line = if wd["armed"].as_bool() == Some(true) {
        format!(
            "\nwatchdog {} armed, timeout {} s, {} feeds",
            wd["device"].as_str().unwrap_or("?"),
            wd["timeout_s"].as_u64().unwrap_or(0),
            wd["feeds"].as_u64().unwrap_or(0)
        )
    } else {
        format!(
            "\nwatchdog off: {}",
            wd["disarmed_reason"].as_str().unwrap_or("?")
        )
    };
    let _ = writeln!(o, "{}", cut(&line, 81));
    let threads = s["threads"].as_array().cloned().unwrap_or_default();
    let troubled: Vec<String> = threads
        .iter()
        .filter(|t| t["stalled"].as_bool() == Some(true) || t["restarts"].as_u64().unwrap_or(0) > 0)
        .map(|t| {
            let mut w = t["name"].as_str().unwrap_or("?").to_string();
            if t["stalled"].as_bool() == Some(true) {
                let _ = write!(
                    w,
                    " STALLED {} s ({})",
                    t["age_ms"].as_u64().unwrap_or(0) / 1000,
                    t["policy"].as_str().unwrap_or("?")
                );
            }
            if let Some(n) = t["restarts"].as_u64().filter(|&n| n > 0) {
                let _ = write!(w, " restarted {n}x");
            }
            w
        })
        .collect();
    if troubled.is_empty() {
        let _ = writeln!(o, "  {} threads turning", threads.len());
    } else {
        for t in troubled {
            let _ = writeln!(o, "{}", cut(&format!("  thread {t}"), 80));
        }
    }
    let r = &s["resets"];
    if r["guard_tripped"].as_bool() == Some(true) {
        let line = format!(
            "  ALARM reboot-loop guard: {} watchdog resets in the last hour, not armed",
            r["in_last_hour"].as_u64().unwrap_or(0)
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
    }
    if let Some(cause) = r["last_cause"].as_str() {
        let line = format!(
            "  last reset {}: {cause}",
            r["last_at"].as_str().unwrap_or("?")
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
        let events = r["last_events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            let _ = writeln!(o, "  before it:");
        }
        for e in events.iter().rev().take(SHOWN_EVENTS).rev() {
            // "YYYY-MM-DD HH:MM:SS UTC text": the time of day is enough.
            let e = e.as_str().unwrap_or("");
            let short = e
                .get(11..19)
                .map(|t| format!("{t} {}", e.get(24..).unwrap_or("")))
                .unwrap_or_else(|| e.to_string());
            let _ = writeln!(o, "{}", cut(&format!("    {short}"), 80));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_a_failover_channel_say_why_in_80_columns() {
        let v = serde_json::json!({
            "version": "0.1.0",
            "uptime_seconds": 61,
            "channels": [{
                "name": "news",
                "state": "up",
                "active_source": 1,
                "failover": {"on_slate": false},
                "sources": [
                    {"source": "remote http://10.77.0.2:8080/stream/news", "state": "down",
                     "reason": "no data from the source for 2 s",
                     "health": "stalled 1.2 s (remote: not MPEG-TS: got text/html)"},
                    {"source": "file /srv/news.ts", "state": "up", "reason": "", "health": "ok"}
                ]
            }, {
                "name": "solo", "state": "up", "active_source": 0, "failover": null,
                "sources": [{"source": "file /srv/solo.ts", "state": "up", "reason": ""}]
            }]
        });
        let out = render(&v);
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert!(
            out.contains("    0 remote http://10.77.0.2:8080/stream/news\n"),
            "{out}"
        );
        assert!(
            out.contains("        stalled 1.2 s (remote: not MPEG-TS: got text/html)\n"),
            "{out}"
        );
        assert!(out.contains("  * 1 file /srv/news.ts  ok\n"), "{out}");
        assert!(
            !out.contains("/srv/solo.ts"),
            "one source: no source lines\n{out}"
        );
    }

    #[test]
    fn supervisor_block_says_why_unarmed_what_stalls_and_the_last_reset() {
        let v = serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 5, "channels": [],
            "supervisor": {
                "watchdog": {"device": "/dev/watchdog", "armed": false, "timeout_s": 0, "feeds": 0,
                             "disarmed_reason": "reboot-loop guard: 3 watchdog resets in the last hour (limit 3, [supervisor] reboot_guard_resets)"},
                "threads": [
                    {"name": "http", "policy": "reboot", "age_ms": 20, "stalled": false, "restarts": 0},
                    {"name": "mux file /srv/a.ts", "policy": "reboot", "age_ms": 12500, "stalled": true, "restarts": 0},
                    {"name": "cards", "policy": "restart", "age_ms": 10, "stalled": false, "restarts": 2}
                ],
                "resets": {"last_cause": "watchdog reset (the card reported it)", "last_at": "2026-12-05 01:02:03 UTC",
                           "in_last_hour": 3, "guard_tripped": true,
                           "last_events": ["2026-12-05 01:01:40 UTC ERROR supervisor: thread 'mux file /srv/a.ts' has not turned for 10 s: no longer feeding the watchdog, the box resets within 20 s"]}
            }
        });
        let out = render(&v);
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert!(
            out.contains("watchdog off: reboot-loop guard: 3 watchdog resets"),
            "{out}"
        );
        assert!(
            out.contains("  thread mux file /srv/a.ts STALLED 12 s (reboot)\n"),
            "{out}"
        );
        assert!(out.contains("  thread cards restarted 2x\n"), "{out}");
        assert!(
            out.contains("  ALARM reboot-loop guard: 3 watchdog resets in the last hour"),
            "{out}"
        );
        assert!(
            out.contains(
                "  last reset 2026-12-05 01:02:03 UTC: watchdog reset (the card reported it)\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("    01:01:40 ERROR supervisor: thread 'mux file"),
            "{out}"
        );
        // Armed and healthy: one line and a count.
        let v = serde_json::json!({"channels": [], "supervisor": {
            "watchdog": {"device": "/dev/watchdog", "armed": true, "timeout_s": 20, "feeds": 7},
            "threads": [{"name": "http", "stalled": false, "restarts": 0}], "resets": {}}});
        let out = render(&v);
        assert!(
            out.contains(
                "watchdog /dev/watchdog armed, timeout 20 s, 7 feeds\n  1 threads turning\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn adapters_show_their_ladder_in_80_columns() {
        let now = 1_800_000_000u64;
        let v = serde_json::json!({
            "version": "0.1.0",
            "uptime_seconds": 61,
            "channels": [],
            "adapters": [
                {"name": "ter1", "number": 0, "locked": true, "cnr_db": 33.46,
                 "recovery": {"step": 0, "last_step": null, "reason": "", "failed": false,
                              "steps_total": [0, 0, 0, 0], "healed": 0}},
                {"name": "ter2", "number": 1, "locked": true, "cnr_db": 30.0,
                 "recovery": {"step": 1, "last_step": "retune", "last_step_at": now - 5,
                              "reason": "locked but no data for 2 s", "failed": false,
                              "steps_total": [1, 0, 0, 0], "healed": 0}},
                {"name": "sat1", "number": null, "locked": false, "cnr_db": null,
                 "recovery": {"step": 4, "last_step": "failed", "last_step_at": now - 120,
                              "reason": "locked but no data for 2 s; not a USB device (platform device vidtv): cannot reset, marking failed",
                              "failed": true, "steps_total": [2, 2, 1, 1], "healed": 0}},
                {"name": "ter3", "number": 2, "locked": true, "cnr_db": 31.0,
                 "recovery": {"step": 0, "last_step": "reopen", "last_step_at": now - 3600,
                              "reason": "no signal: weather or antenna (lost lock)", "failed": false,
                              "steps_total": [1, 3, 0, 0], "healed": 1}}
            ]
        });
        let out = render_at(&v, now);
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert!(
            out.contains("ter1           adapter0   yes    33.5  ok\n"),
            "{out}"
        );
        assert!(
            out.contains("ter2           adapter1   yes    30.0\n  step 1/4 retune 5 s ago: locked but no data for 2 s\n"),
            "{out}"
        );
        assert!(
            out.contains("sat1           -          no        -\n  FAILED: locked but no data for 2 s; not a USB device (platform device vidtv):\n  cannot reset, marking failed\n"),
            "{out}"
        );
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("", 4), Vec::<String>::new());
        assert!(
            out.contains(
                "  steps since start: 2 retune, 2 reopen, 1 USB reset, 1 failed; healed 0\n"
            ),
            "{out}"
        );
        assert!(out.contains("ok; last step reopen 60 min ago"), "{out}");
        assert!(!out.contains("steps since start: 0"), "{out}");
    }
}
