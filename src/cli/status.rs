//! `capbox status`: asks the running capbox over HTTP and prints its
//! channels and clients in 80 columns.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const HELP: &str = "\
usage: capbox status [--all | channels | adapters | clients | cards | watchdog]
                     [--url http://127.0.0.1:8080] [--json]

Asks the running capbox for /status. On a terminal it fits one screen (24
rows of 80 columns on a serial console): the adapters (lock, C/N, their
escalation ladder), the channels (state, source on air, viewers, why down),
the cards, the watchdog and the last events. When a box has more than fits,
the channels in trouble are shown first and a line says how many are left
out and how to see them. Piped, or with --all, everything: under a channel
with several sources one line per source (`*` on air, its health or why it
is down), the steps each adapter took since the start, one line per client,
the supervisor's threads and the events before the last reset. A section
name shows only that section, whole. `capbox logs` shows the events.
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

/// `s` cut to `n` characters (for other console commands).
pub fn cut_line(s: &str, n: usize) -> String {
    cut(s, n)
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
    let mut view = View::Screen;
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
                    super::term::warn("capbox status: --url needs a value");
                    return 2;
                }
            },
            "--json" => json = true,
            "--all" | "-a" => view = View::All,
            w if Section::from_word(w).is_some() => {
                view = View::Section(Section::from_word(w).unwrap_or(Section::Channels))
            }
            other => {
                eprintln!("capbox status: unknown option '{other}'\n\n{HELP}");
                return 2;
            }
        }
    }
    let body = match http_get(&url, "/status", Duration::from_secs(5)) {
        Ok(b) => b,
        Err(e) => {
            super::term::warn(&format!(
                "capbox status: {e} (is capbox running? `ps | grep capbox`; \
                 its log: `logread | grep capbox` or /var/log/messages)"
            ));
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
            super::term::warn(&format!("capbox status: /status is not JSON: {e}"));
            return 1;
        }
    };
    let term = super::term::Term::stdout();
    let now = crate::dvb::recovery::epoch_seconds();
    let text = match view {
        View::All => render_at(&v, now),
        View::Section(sec) => render_section(&v, now, sec),
        View::Screen => match term.rows {
            Some(rows) => render_screen(&v, now, rows),
            None => render_at(&v, now),
        },
    };
    super::term::print(&text);
    0
}

/// What `capbox status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// One screen (on a terminal), everything otherwise.
    Screen,
    /// Everything.
    All,
    /// One section, whole.
    Section(Section),
}

/// The sections of the status, each shown whole by `capbox status NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Channels,
    Adapters,
    Clients,
    Cards,
    Watchdog,
}

impl Section {
    fn from_word(w: &str) -> Option<Section> {
        Some(match w {
            "channels" | "channel" => Section::Channels,
            "adapters" | "adapter" | "tuners" => Section::Adapters,
            "clients" | "viewers" => Section::Clients,
            "cards" | "card" => Section::Cards,
            "watchdog" | "supervisor" => Section::Watchdog,
            _ => return None,
        })
    }
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

/// The head of an adapter's line (name, number, lock, C/N) and its
/// words: the ladder, or why it is not open when the ladder has nothing
/// to say (an absent device is not "ok").
fn adapter_line(a: &serde_json::Value, now: u64) -> (String, String) {
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
    let mut words = recovery_words(r, now);
    let quiet = r["step"].as_u64().unwrap_or(0) == 0 && r["failed"] != true;
    if quiet && a["locked"] != true {
        if let Some(e) = a["last_error"].as_str().filter(|e| !e.is_empty()) {
            // "ter1 (adapter7): adapter7/frontend0: open failed: …": the
            // name is in the first column already.
            let name = a["name"].as_str().unwrap_or("");
            let e = e.strip_prefix(name).unwrap_or(e);
            let e = match e.strip_prefix(" (") {
                Some(rest) => rest.split_once("): ").map(|x| x.1).unwrap_or(rest),
                None => e.strip_prefix(": ").unwrap_or(e),
            };
            words = format!("not tuned: {e}");
        }
    }
    (head, words)
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
        let (head, words) = adapter_line(&a, now);
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

/// The table with `now` (seconds since the epoch) for the ages: every
/// section, whole (`capbox status --all`, or piped).
pub fn render_at(v: &serde_json::Value, now: u64) -> String {
    let mut o = String::new();
    o.push_str(&head_line(v));
    o.push('\n');
    render_channels(&mut o, v);
    render_tr101290(&mut o, v);
    render_probes(&mut o, v);
    render_adapters(&mut o, v, now);
    render_clients(&mut o, v);
    render_cards(&mut o, v, true);
    render_supervisor(&mut o, &v["supervisor"]);
    render_events(&mut o, v, now, usize::MAX);
    o
}

/// One section, whole, under the head line.
pub fn render_section(v: &serde_json::Value, now: u64, sec: Section) -> String {
    let mut o = String::new();
    o.push_str(&head_line(v));
    o.push('\n');
    match sec {
        Section::Channels => {
            render_channels(&mut o, v);
            render_tr101290(&mut o, v);
            render_probes(&mut o, v);
        }
        Section::Adapters => {
            render_adapters(&mut o, v, now);
            if viewers(v).is_empty() && v["adapters"].as_array().is_none_or(|a| a.is_empty()) {
                o.push_str("no [[adapter]] in the config\n");
            }
        }
        Section::Clients => {
            render_clients(&mut o, v);
            if viewers(v).is_empty() {
                o.push_str("no viewers\n");
            }
        }
        Section::Cards => render_cards(&mut o, v, true),
        Section::Watchdog => {
            render_supervisor(&mut o, &v["supervisor"]);
            render_events(&mut o, v, now, usize::MAX);
        }
    }
    o
}

/// "capbox 0.1.0  up 2h03m  rss 41.2 MiB  12 channels, 1 down, 3 viewers".
fn head_line(v: &serde_json::Value) -> String {
    let up = v["uptime_seconds"].as_u64().unwrap_or(0);
    let rss = v["process"]["rss_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0;
    let chans = v["channels"].as_array().map(Vec::len).unwrap_or(0);
    let down = v["channels"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["state"] != "up").count())
        .unwrap_or(0);
    let mut line = format!(
        "capbox {}  up {}h{:02}m  rss {:.1} MiB  {chans} channels",
        v["version"].as_str().unwrap_or("?"),
        up / 3600,
        (up / 60) % 60,
        rss
    );
    if down > 0 {
        line.push_str(&format!(", {down} not up"));
    }
    line.push_str(&format!(", {} viewers", viewers(v).len()));
    cut(&line, 80)
}

/// The stream clients (the status request itself and other non-stream
/// connections have no channel).
fn viewers(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["clients"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["channel"].is_string())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every channel with its sources (failover channels).
fn render_channels(o: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "{:<14} {:<5} {:<9} {:<16} {:>4} {:>7} {:>4}  NOTE",
        "CHANNEL", "STATE", "VERDICT", "SERVICE", "CLNT", "CC ERR", "EPG"
    );
    let clients = viewers(v);
    for ch in v["channels"].as_array().cloned().unwrap_or_default() {
        let name = ch["name"].as_str().unwrap_or("?");
        let n = clients
            .iter()
            .filter(|c| c["channel"].as_str() == Some(name))
            .count();
        let verdict = ch["verdict"].as_str().unwrap_or("-");
        let note = match ch["reason"].as_str().unwrap_or("") {
            "" if !matches!(verdict, "ok" | "-" | "starting") => {
                ch["verdict_reason"].as_str().unwrap_or("")
            }
            r => r,
        };
        let line = format!(
            "{:<14} {:<5} {:<9} {:<16} {:>4} {:>7} {:>4}  {}",
            cut(name, 14),
            cut(ch["state"].as_str().unwrap_or("?"), 5),
            cut(verdict, 9),
            cut(ch["service_name"].as_str().unwrap_or("-"), 16),
            n,
            ch["input_cc_errors"].as_u64().unwrap_or(0),
            epg_cell(&ch),
            note
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
        render_sources(o, &ch);
    }
}

/// TR 101 290 summary of a /status `tr101290` object: "priority 1:
/// pat_error (3), continuity_count_error (12)", None when nothing is
/// active.
pub fn tr101290_words(t: &serde_json::Value) -> Option<String> {
    let ind = t["indicators"].as_object()?;
    let mut worst = 4;
    let mut active = Vec::new();
    // The object keeps the standard's order only with serde_json's
    // preserve_order; sort by the analyser's order instead.
    for i in crate::monitor::tr101290::INDICATORS {
        let Some(v) = ind.get(i.id()) else { continue };
        if v["active"].as_bool() == Some(true) {
            worst = worst.min(i.priority());
            active.push(format!(
                "{} ({})",
                i.id(),
                v["errors"].as_u64().unwrap_or(0)
            ));
        }
    }
    (!active.is_empty()).then(|| format!("priority {worst}: {}", active.join(", ")))
}

/// One line per input mux or channel whose TR 101 290 indicators are in
/// error now, and one per mux whose clock drifts; nothing when all is well.
fn render_tr101290(o: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    for m in v["muxes"].as_array().cloned().unwrap_or_default() {
        let name = m["name"].as_str().unwrap_or("?");
        if let Some(w) = tr101290_words(&m["tr101290"]) {
            let _ = writeln!(o, "{}", cut(&format!("TR 101 290 {name}: {w}"), 80));
        }
        let c = &m["clock"];
        if c["drift"].as_bool() == Some(true) {
            let off = c["offset_s"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                o,
                "{}",
                cut(
                    &format!(
                        "clock: box {:.1} s {} broadcast time (TDT of {name})",
                        off.abs(),
                        if off < 0.0 { "ahead of" } else { "behind" }
                    ),
                    80
                )
            );
        }
    }
    for ch in v["channels"].as_array().cloned().unwrap_or_default() {
        if let Some(w) = tr101290_words(&ch["tr101290"]) {
            let name = ch["name"].as_str().unwrap_or("?");
            let _ = writeln!(o, "{}", cut(&format!("TR 101 290 channel {name}: {w}"), 80));
        }
    }
}

/// One line per viewer.
/// `[[probe]]` results (`/status` `probes[]`): one line each, and for a
/// probe that is not ok the reason below it.
fn render_probes(o: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    let Some(list) = v["probes"].as_array().filter(|l| !l.is_empty()) else {
        return;
    };
    let _ = writeln!(
        o,
        "\n{:<18} {:<10} {:>7} {:>7}  {:<14} {:>9}",
        "PROBE", "RESULT", "TTFB", "ZAP", "AUDIO", "CHECKED"
    );
    let secs = |x: &serde_json::Value| x.as_f64().map_or("-".to_string(), |s| format!("{s:.2}s"));
    for p in list {
        let result = p["result"].as_str().unwrap_or("not run");
        let audio = if p["result"].is_null() {
            "-".to_string()
        } else if p["silent"].as_bool() == Some(true) {
            "silent".to_string()
        } else if let Some(l) = p["level_dbfs"].as_f64() {
            format!("{l:.0} dBFS")
        } else if p["audio_present"].as_bool() == Some(false) {
            "none".to_string()
        } else {
            "-".to_string()
        };
        let checked = p["last_run_s_ago"]
            .as_u64()
            .map_or("never".to_string(), |a| format!("{} ago", age_words(a)));
        let line = format!(
            "{:<18} {:<10} {:>7} {:>7}  {:<14} {:>9}",
            cut(p["name"].as_str().unwrap_or("?"), 18),
            cut(result, 10),
            secs(&p["ttfb_s"]),
            secs(&p["zap_s"]),
            cut(&audio, 14),
            checked
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
        if result != "ok" && !p["result"].is_null() {
            if let Some(e) = p["error"].as_str() {
                let _ = writeln!(o, "{}", cut(&format!("  {e}"), 80));
            }
        }
    }
}

/// 75 → "1m15s", 7300 → "2h01m" (short, for a column).
fn age_words(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn render_clients(o: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    let clients = viewers(v);
    if clients.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n{:<22} {:<14} {:>10} {:>8}  USER AGENT",
        "CLIENT", "CHANNEL", "MBYTES", "LAG ms"
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

/// The cards in lines of 80 columns: one per reader (`whole`: with its
/// last error), or one line saying why there is none.
fn render_cards(o: &mut String, v: &serde_json::Value, whole: bool) {
    use std::fmt::Write as _;
    for l in card_lines(&v["cards"], whole) {
        let _ = writeln!(o, "{}", cut(&l, 80));
    }
}

/// The lines of the cards block (see `render_cards`).
fn card_lines(cards: &serde_json::Value, whole: bool) -> Vec<String> {
    let Some(list) = cards.as_array() else {
        return vec!["cards: none ([cards] is not in the config)".into()];
    };
    if list.is_empty() {
        return vec!["cards: pcscd runs but sees no card reader (plugged in? `lsusb`)".into()];
    }
    if list.iter().all(|c| c["state"] == "pcscd not running") {
        let why = list[0]["last_error"].as_str().unwrap_or("");
        if why.starts_with("this capbox was built without") {
            return vec!["cards: none: this capbox was built without the card manager".into()];
        }
        let mut l = "cards: no card reader: pcscd (the PC/SC daemon) is not running".to_string();
        if whole && !why.is_empty() {
            l.push_str(&format!(" ({why})"));
        }
        return vec![l];
    }
    let mut out = vec![format!(
        "{:<22} {:<18} {:<4} {:>9}  {}",
        "CARD READER", "STATE", "CAID", "ECM ok/er", "LAST ERROR"
    )];
    for c in list {
        let reader = c["reader"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or("(pcscd)");
        let caid = c["caid"]
            .as_u64()
            .map(|x| format!("{x:04X}"))
            .unwrap_or_else(|| "-".into());
        out.push(format!(
            "{:<22} {:<18} {:<4} {:>9}  {}",
            cut(reader, 22),
            cut(c["state"].as_str().unwrap_or("?"), 18),
            caid,
            format!(
                "{}/{}",
                c["ecms_ok"].as_u64().unwrap_or(0),
                c["ecm_errors"].as_u64().unwrap_or(0)
            ),
            c["last_error"].as_str().unwrap_or("")
        ));
    }
    out
}

/// This run's events (warnings, errors, supervisor and ladder lines), the
/// last `max` of them, under a heading; one line saying there were none.
fn render_events(o: &mut String, v: &serde_json::Value, now: u64, max: usize) {
    use std::fmt::Write as _;
    let events = v["supervisor"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if v["supervisor"]["events"].is_null() {
        return;
    }
    if events.is_empty() {
        let _ = writeln!(o, "no warnings or errors since the start");
        return;
    }
    let total = v["supervisor"]["events_total"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "LAST EVENTS ({} since the start; all kept: capbox logs)",
        total.max(events.len() as u64)
    );
    let skip = events.len().saturating_sub(max);
    for e in &events[skip..] {
        let line = format!(
            "  {} {}",
            event_time(e["unix"].as_u64().unwrap_or(0), now),
            e["text"].as_str().unwrap_or("")
        );
        let _ = writeln!(o, "{}", cut(&line, 80));
    }
}

/// "HH:MM:SS" for today's events, "MM-DD HH:MM" for older ones (UTC).
pub fn event_time(unix: u64, now: u64) -> String {
    let w = crate::supervisor::resetlog::utc_words(unix);
    if unix / 86_400 == now / 86_400 {
        w.get(11..19).unwrap_or(&w).to_string()
    } else {
        format!(
            "{} {}",
            w.get(5..10).unwrap_or(""),
            w.get(11..16).unwrap_or("")
        )
    }
}

/// Everything on one screen of `rows` rows (the command line above and
/// the prompt below take two): the whole status when it fits, else one
/// line per adapter and channel, those in trouble first, the cards, the
/// watchdog and the last events, and a line naming what was left out and
/// how to see it.
pub fn render_screen(v: &serde_json::Value, now: u64, rows: usize) -> String {
    let avail = rows.saturating_sub(2).max(8);
    let whole = render_at(v, now);
    if whole.lines().count() <= avail {
        return whole;
    }
    // From here on something is left out: the last line says where it is.
    // Adapters: at most 4 lines, the troubled ones first.
    let adapters = v["adapters"].as_array().cloned().unwrap_or_default();
    let mut adapter_block = Vec::new();
    if !adapters.is_empty() {
        adapter_block.push(format!(
            "{:<14} {:<10} {:<4} {:>6}  RECOVERY",
            "ADAPTER", "NUMBER", "LOCK", "C/N dB"
        ));
        let troubled = |a: &serde_json::Value| {
            a["locked"] != true
                || a["recovery"]["step"].as_u64().unwrap_or(0) > 0
                || a["recovery"]["failed"] == true
        };
        let keep = pick(&adapters, 4, troubled);
        for (i, a) in adapters.iter().enumerate() {
            if keep.contains(&i) {
                let (head, words) = adapter_line(a, now);
                adapter_block.push(cut(&format!("{head}  {words}"), 80));
            }
        }
        if keep.len() < adapters.len() {
            let n = adapters.len() - keep.len();
            adapter_block.push(format!(
                "  ... {n} more adapters, locked: capbox status adapters"
            ));
        }
    }

    // Cards: one line per reader up to 2, else one line counting them.
    let mut card_block = card_lines(&v["cards"], false);
    let card_summary = || {
        let list = v["cards"].as_array().cloned().unwrap_or_default();
        let mut states: Vec<(String, usize)> = Vec::new();
        for c in &list {
            let st = c["state"].as_str().unwrap_or("?").to_string();
            match states.iter_mut().find(|(s, _)| *s == st) {
                Some((_, n)) => *n += 1,
                None => states.push((st, 1)),
            }
        }
        let words: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        vec![format!(
            "cards: {} readers: {} (capbox cards)",
            list.len(),
            words.join(", ")
        )]
    };
    if card_block.len() > 3 {
        card_block = card_summary();
    }

    // The watchdog in one line, the threads in trouble, the guard, the
    // last reset.
    let mut sup_block = Vec::new();
    let sup = &v["supervisor"];
    if !sup.is_null() {
        let mut full = String::new();
        render_supervisor(&mut full, sup);
        let mut lines: Vec<String> = full
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("    ") && *l != "  before it:")
            .map(str::to_string)
            .collect();
        // "N threads turning" joins the watchdog line.
        if lines.len() >= 2 && lines[1].ends_with("threads turning") {
            let t = lines.remove(1);
            lines[0] = format!("{}; {}", lines[0], t.trim());
        }
        let extra = lines.len().saturating_sub(4);
        lines.truncate(4);
        if extra > 0 {
            lines.push(format!("  and {extra} more (capbox status watchdog)"));
        }
        sup_block = lines.into_iter().map(|l| cut(&l, 80)).collect();
    }

    // Events: the last 3, or fewer when the channels need the rows.
    let events = sup["events"].as_array().map(Vec::len).unwrap_or(0);
    let mut want_events = events.min(3);

    let channels = v["channels"].as_array().cloned().unwrap_or_default();
    let rows_left = |adapters: usize, cards: usize, sup: usize, events: usize| {
        let fixed = 1 + adapters + cards + sup
            + 1 // the line naming what was left out
            + usize::from(!v["supervisor"].is_null()); // events heading, or "none"
        avail.saturating_sub(fixed + events)
    };
    let mut ch_rows = rows_left(
        adapter_block.len(),
        card_block.len(),
        sup_block.len(),
        want_events,
    );
    // The channels come before old events (the last two stay).
    while want_events > 2 && ch_rows < channels.len() + 1 {
        want_events -= 1;
        ch_rows += 1;
    }
    // A short screen: the channel heading, two channels and the count at
    // least, taken from the events, the cards, the supervisor's details.
    let min_ch = (channels.len() + 1).min(4);
    if ch_rows < min_ch {
        want_events = want_events.min(1);
        if card_block.len() > 1 {
            card_block = card_summary();
        }
        sup_block.truncate(1);
        ch_rows = rows_left(
            adapter_block.len(),
            card_block.len(),
            sup_block.len(),
            want_events,
        );
    }
    let clients = viewers(v);
    let mut ch_block = Vec::new();
    if !channels.is_empty() {
        ch_block.push(format!(
            "{:<14} {:<5} {:<9} {:<19} {:>4} {:>3}  {}",
            "CHANNEL", "STATE", "VERDICT", "ON AIR", "VIEW", "EPG", "NOTE"
        ));
        let room = ch_rows.saturating_sub(1);
        let all_fit = channels.len() <= room;
        let shown = if all_fit {
            room
        } else {
            room.saturating_sub(1)
        };
        let keep = pick(&channels, shown, channel_troubled);
        for (i, ch) in channels.iter().enumerate() {
            if keep.contains(&i) {
                ch_block.push(channel_line(ch, &clients));
            }
        }
        if keep.len() < channels.len() {
            let rest: Vec<&serde_json::Value> = channels
                .iter()
                .enumerate()
                .filter(|(i, _)| !keep.contains(i))
                .map(|(_, c)| c)
                .collect();
            let up = rest.iter().filter(|c| !channel_troubled(c)).count();
            let n = rest.len();
            let what = if up == n {
                format!("{n} more channels, all up on their first source")
            } else {
                format!("{n} more channels, {} of them in trouble", n - up)
            };
            ch_block.push(format!("  ... {what}: capbox status channels"));
        }
    }

    let mut o = String::new();
    let mut push = |l: &str| {
        o.push_str(&cut(l, 80));
        o.push('\n');
    };
    push(&head_line(v));
    for l in &adapter_block {
        push(l);
    }
    for l in &ch_block {
        push(l);
    }
    for l in &card_block {
        push(l);
    }
    for l in &sup_block {
        push(l);
    }
    let mut ev = String::new();
    render_events(&mut ev, v, now, want_events);
    for l in ev.lines() {
        push(l);
    }
    push("more: capbox status --all, or one of: channels adapters clients cards watchdog");
    o
}

/// Indexes of the items to show (at most `n`): those in trouble first,
/// then the others, in their order.
fn pick(
    items: &[serde_json::Value],
    n: usize,
    troubled: impl Fn(&serde_json::Value) -> bool,
) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..items.len())
        .filter(|&i| troubled(&items[i]))
        .take(n)
        .collect();
    for i in 0..items.len() {
        if keep.len() >= n {
            break;
        }
        if !keep.contains(&i) {
            keep.push(i);
        }
    }
    keep.sort_unstable();
    keep
}

/// Not up, or not on its first source, or pinned, or refusing viewers.
fn channel_troubled(ch: &serde_json::Value) -> bool {
    let f = &ch["failover"];
    ch["state"] != "up"
        || !matches!(ch["verdict"].as_str(), None | Some("ok" | "starting"))
        || ch["active_source"].as_u64().unwrap_or(0) > 0
        || f["on_slate"] == true
        || !f["pinned"].is_null()
        || !f["viewers_refused"].is_null()
}

/// A source in a few columns: `ter1 dvbt 474000000` for a tuner, the end
/// of a file's path, a remote's host and path.
fn short_source(src: &str, n: usize) -> String {
    let src = src.strip_prefix("adapter ").unwrap_or(src);
    let s = if let Some(path) = src.strip_prefix("file ") {
        let keep = n.saturating_sub(5);
        if path.chars().count() > keep {
            let tail: String = path
                .chars()
                .rev()
                .take(keep.saturating_sub(1))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            // From a directory boundary when there is one.
            let tail = match tail.find('/') {
                Some(i) if i + 1 < tail.len() => tail[i..].to_string(),
                _ => tail,
            };
            format!("file ~{tail}")
        } else {
            format!("file {path}")
        }
    } else if let Some(url) = src.strip_prefix("remote ") {
        format!("remote {}", url.trim_start_matches("http://"))
    } else {
        // A tuner: name, system, frequency.
        src.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    };
    cut(&s, n)
}

/// One line of a channel: name, state, the source on air, viewers, and
/// the one thing to know (refused, pinned, why down, the health of the
/// source on air).
fn channel_line(ch: &serde_json::Value, clients: &[serde_json::Value]) -> String {
    let name = ch["name"].as_str().unwrap_or("?");
    let n = clients
        .iter()
        .filter(|c| c["channel"].as_str() == Some(name))
        .count();
    let sources = ch["sources"].as_array().cloned().unwrap_or_default();
    let f = &ch["failover"];
    let active = ch["active_source"].as_u64().unwrap_or(0) as usize;
    let on_air = if f["on_slate"] == true {
        "slate".to_string()
    } else {
        let src = sources
            .get(active)
            .and_then(|s| s["source"].as_str())
            .or(ch["source"].as_str())
            .unwrap_or("?");
        if sources.len() > 1 {
            format!("{active} {}", short_source(src, 17))
        } else {
            short_source(src, 19)
        }
    };
    let verdict = ch["verdict"].as_str().unwrap_or("-");
    let health = sources
        .get(active)
        .and_then(|s| s["health"].as_str())
        .filter(|h| *h != "ok");
    let note = if let Some(w) = f["viewers_refused"].as_str() {
        format!("VIEWERS REFUSED: {w}")
    } else if let Some(p) = f["pinned"].as_u64() {
        format!("PINNED to source {p}")
    } else if ch["state"] != "up" {
        let r = ch["reason"].as_str().unwrap_or("");
        r.strip_prefix("source: ").unwrap_or(r).to_string()
    } else if let Some(h) = health {
        h.to_string()
    } else if !matches!(verdict, "ok" | "-" | "starting") {
        ch["verdict_reason"].as_str().unwrap_or("").to_string()
    } else {
        String::new()
    };
    let line = format!(
        "{:<14} {:<5} {:<9} {:<19} {:>4} {:>3}  {note}",
        cut(name, 14),
        cut(ch["state"].as_str().unwrap_or("?"), 5),
        cut(verdict, 9),
        on_air,
        n,
        epg_cell(ch)
    );
    cut(line.trim_end(), 80)
}

/// The EPG column: programmes in the channel's guide in the next 12 hours
/// (`capbox_epg_programmes_next_12h`), "-" when the guide is off.
fn epg_cell(ch: &serde_json::Value) -> String {
    match ch["epg"]["programmes_next_12h"].as_u64() {
        Some(n) => n.to_string(),
        None => "-".to_string(),
    }
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
    fn probes_table_in_80_columns_with_the_reason_of_a_failed_one() {
        use serde_json::json;
        let v = json!({
            "version": "0.1.0", "channels": [], "adapters": [], "clients": [],
            "probes": [
                {"name": "media-news", "result": "ok", "ttfb_s": 0.041, "zap_s": 1.28,
                 "silent": false, "level_dbfs": -23.4, "audio_present": true,
                 "last_run_s_ago": 75, "error": null},
                {"name": "media-sport-hd-and-a-long-name", "result": "silent", "ttfb_s": 0.05,
                 "zap_s": 0.9, "silent": true, "level_dbfs": null, "audio_present": true,
                 "last_run_s_ago": 7300,
                 "error": "audio 0x0101 below -60 dBFS for the whole 10 s listened, and more words to cut at eighty columns"},
                {"name": "other-site", "result": null, "ttfb_s": null, "zap_s": null,
                 "silent": null, "level_dbfs": null, "audio_present": null,
                 "last_run_s_ago": null, "error": null}
            ]
        });
        let out = render_at(&v, 1_000_000);
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert!(out.contains("\nPROBE "), "{out}");
        assert!(
            out.contains(
                "media-news         ok           0.04s   1.28s  -23 dBFS       1m15s ago\n"
            ),
            "{out}"
        );
        assert!(out.contains("media-sport-hd-an… silent"), "{out}");
        assert!(
            out.contains("silent         2h01m ago\n  audio 0x0101 below -60 dBFS"),
            "{out}"
        );
        assert!(
            out.contains("other-site         not run          -       -  -                  never"),
            "{out}"
        );
        // No probes configured: no table.
        let none = render_at(&json!({"version": "0.1.0", "probes": []}), 0);
        assert!(!none.contains("PROBE"), "{none}");
    }

    #[test]
    fn tr101290_one_line_when_something_is_wrong() {
        use serde_json::json;
        let ind = |active: &[&str]| {
            let mut m = serde_json::Map::new();
            for i in crate::monitor::tr101290::INDICATORS {
                let a = active.contains(&i.id());
                m.insert(
                    i.id().into(),
                    json!({"errors": if a { 3 } else { 0 }, "active": a, "last_error_s_ago": null}),
                );
            }
            json!({"priority1_ok": true, "priority2_ok": true, "priority3_ok": true, "indicators": m})
        };
        let v = json!({
            "channels": [
                {"name": "news", "state": "up", "tr101290": ind(&[])},
                {"name": "sport", "state": "up", "tr101290": ind(&["pts_error", "pat_error"])}
            ],
            "muxes": [
                {"name": "adapter sat1 dvbs2 11778000 V 27500000", "tr101290": ind(&["sdt_error"]),
                 "clock": {"offset_s": -7.2, "tdt_age_s": 1, "drift": true, "last_tdt_utc": "x"}},
                {"name": "file a.ts", "tr101290": ind(&[]),
                 "clock": {"offset_s": null, "tdt_age_s": null, "drift": false, "last_tdt_utc": null}}
            ]
        });
        let mut o = String::new();
        render_tr101290(&mut o, &v);
        assert_eq!(
            o,
            "TR 101 290 adapter sat1 dvbs2 11778000 V 27500000: priority 3: sdt_error (3)\n\
             clock: box 7.2 s ahead of broadcast time (TDT of adapter sat1 dvbs2 11778000 V …\n\
             TR 101 290 channel sport: priority 1: pat_error (3), pts_error (3)\n"
        );
    }

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

    /// A box with 2 adapters, 14 channels, 2 card readers, events: what the
    /// technician sees at 80 x 24.
    fn big_box(now: u64) -> serde_json::Value {
        let mut channels = vec![
            serde_json::json!({"name": "beethoven", "state": "down",
                "reason": "source: ter1 (adapter7): adapter7/frontend0: open failed: No such file or directory",
                "active_source": 0, "failover": null,
                "sources": [{"source": "ter1 dvbt 474000000 8000000 modulation=qam/auto", "state": "down"}]}),
            serde_json::json!({"name": "sat-news", "state": "up", "reason": "", "active_source": 1,
                "failover": {"on_slate": false, "pinned": null, "viewers_refused": null,
                             "on_air": "source 1 (file /srv/capbox/news-backup.ts)"},
                "sources": [{"source": "sat1 dvbs2 11362000 V 22000000", "state": "down", "health": "no packets yet"},
                            {"source": "file /srv/capbox/news-backup.ts", "state": "up", "health": "ok"}]}),
        ];
        for i in 0..12 {
            channels.push(serde_json::json!({"name": format!("file-{i}"), "state": "up", "reason": "",
                "active_source": 0, "failover": null, "service_name": "Demo News",
                "sources": [{"source": format!("file /srv/capbox/very/long/path/number/{i}/mux.ts"), "state": "up"}]}));
        }
        serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 3725, "process": {"rss_bytes": 41_000_000},
            "channels": channels,
            "clients": [
                {"address": "10.0.0.9:50000", "channel": "file-3", "bytes": 1000, "lag_ms": 0, "user_agent": "VLC"},
                {"address": "127.0.0.1:40000", "channel": null, "user_agent": "capbox-cli"}
            ],
            "adapters": [
                {"name": "ter1", "number": null, "locked": false, "cnr_db": null,
                 "last_error": "ter1 (adapter7): adapter7/frontend0: open failed: No such file or directory (ENOENT, errno 2)",
                 "recovery": {"step": 0, "failed": false, "steps_total": [0, 0, 0, 0]}},
                {"name": "sat1", "number": 1, "locked": true, "cnr_db": 11.2,
                 "recovery": {"step": 0, "failed": false, "steps_total": [0, 0, 0, 0]}}
            ],
            "cards": [
                {"reader": "Alcor Micro AU9540 00 00", "state": "ready", "caid": 0x0500, "ecms_ok": 120, "ecm_errors": 1},
                {"reader": "Alcor Micro AU9540 01 00", "state": "no card", "caid": null, "ecms_ok": 0, "ecm_errors": 0}
            ],
            "supervisor": {
                "watchdog": {"device": "/dev/watchdog", "armed": true, "timeout_s": 20, "feeds": 900},
                "threads": [{"name": "http", "stalled": false, "restarts": 0}],
                "resets": {},
                "events": [
                    {"unix": now - 300, "text": "WARN channel 'beethoven': down: source: ter1 (adapter7): open failed"},
                    {"unix": now - 200, "text": "WARN channel 'sat-news': sat1 no packets yet \u{2192} file"},
                    {"unix": now - 100, "text": "INFO ter1 (adapter7): step 1/4 retune"},
                    {"unix": now - 10, "text": "supervisor: watchdog /dev/watchdog armed"}
                ],
                "events_total": 4
            }
        })
    }

    #[test]
    fn a_big_box_fits_one_screen_and_says_how_to_see_the_rest() {
        let now = 1_800_000_000u64;
        let v = big_box(now);
        let out = render_screen(&v, now, 24);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() <= 22, "{} lines:\n{out}", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{out}");
        assert!(lines[0].starts_with("capbox 0.1.0  up 1h02m"), "{out}");
        assert!(
            lines[0].contains("14 channels, 1 not up, 1 viewers"),
            "{out}"
        );
        // The adapters: an absent device is not "ok".
        assert!(
            out.contains(
                "\nter1           -          no        -  not tuned: adapter7/frontend0: open fail"
            ),
            "{out}"
        );
        assert!(
            out.contains("\nsat1           adapter1   yes    11.2  ok\n"),
            "{out}"
        );
        // The channels in trouble are there, with the source on air.
        assert!(
            out.contains("\nbeethoven      down  -         ter1 dvbt 474000000"),
            "{out}"
        );
        assert!(
            out.contains("\nsat-news       up    -         1 file ~"),
            "{out}"
        );
        assert!(
            out.contains("  ... ")
                && out.contains(
                    "more channels, all up on their first source: capbox status channels"
                ),
            "{out}"
        );
        // Cards, watchdog, events, and where the rest is.
        assert!(
            out.contains("\nAlcor Micro AU9540 00… ready              0500     120/1"),
            "{out}"
        );
        assert!(
            out.contains(
                "\nwatchdog /dev/watchdog armed, timeout 20 s, 900 feeds; 1 threads turning\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("LAST EVENTS (4 since the start; all kept: capbox logs)"),
            "{out}"
        );
        assert!(out.contains("  07:58:20 INFO ter1 (adapter7): step 1/4 retune\n  07:59:50 supervisor: watchdog /dev/watchdog armed\n"), "{out}");
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("more: capbox status --all"),
            "{out}"
        );
        // Fewer rows: still one screen.
        let out = render_screen(&v, now, 16);
        assert!(out.lines().count() <= 14, "{out}");
        assert!(
            out.contains("beethoven") && out.contains("more: capbox status --all"),
            "{out}"
        );
        // The whole view has every channel, the viewer, the cards.
        let all = render_at(&v, now);
        assert!(
            all.contains("file-11") && all.contains("10.0.0.9:50000"),
            "{all}"
        );
        assert!(
            !all.contains("capbox-cli"),
            "the status request is no viewer\n{all}"
        );
        assert!(all.lines().all(|l| l.chars().count() <= 80), "{all}");
        // A section alone.
        let ch = render_section(&v, now, Section::Channels);
        assert!(ch.contains("file-11") && !ch.contains("watchdog"), "{ch}");
    }

    #[test]
    fn a_small_box_shows_everything_on_one_screen() {
        let now = 1_800_000_000u64;
        let mut v = big_box(now);
        v["channels"].as_array_mut().unwrap().truncate(1);
        v["adapters"].as_array_mut().unwrap().truncate(1);
        v["cards"] = serde_json::Value::Null;
        let out = render_screen(&v, now, 24);
        assert_eq!(out, render_at(&v, now));
        assert!(out.lines().count() <= 22, "{out}");
        assert!(!out.contains("more: "), "{out}");
    }

    #[test]
    fn cards_say_why_there_are_none() {
        let down = serde_json::json!([{"reader": "", "state": "pcscd not running",
            "last_error": "cannot reach pcscd: The Smart card resource manager is not running"}]);
        assert_eq!(
            card_lines(&down, false),
            ["cards: no card reader: pcscd (the PC/SC daemon) is not running"]
        );
        assert!(card_lines(&serde_json::json!([]), false)[0].contains("sees no card reader"));
        let static_build = serde_json::json!([{"reader": "", "state": "pcscd not running",
            "last_error": "this capbox was built without the card manager (cargo feature \"pcsc\")"}]);
        assert_eq!(
            card_lines(&static_build, true),
            ["cards: none: this capbox was built without the card manager"]
        );
        assert!(
            card_lines(&serde_json::Value::Null, false)[0].contains("[cards] is not in the config")
        );
    }
}
