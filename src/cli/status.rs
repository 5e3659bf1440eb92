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
remote source says why its connection failed), and one line per client.
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

/// The 80-column table.
pub fn render(v: &serde_json::Value) -> String {
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
}
