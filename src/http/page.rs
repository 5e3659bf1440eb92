//! `GET /`: one read-only status page, rendered here from the same JSON
//! as `/status` plus the last hour's rings (`monitor::history`).
//!
//! Promises: plain HTML with inline CSS and inline SVG, no script and no
//! external resource (the server sends a Content-Security-Policy that
//! forbids both); every string that comes from the config or from the air
//! (service names are untrusted) is HTML-escaped and cut to `MAX_TEXT`
//! characters; the page refreshes itself with `<meta http-equiv=refresh>`
//! (works with scripts off, needs no second route, and the browser keeps
//! the scroll position); its size is bounded: at most a few hundred bytes
//! per event and about 1.5 KiB per channel or adapter (a unit test holds
//! 200 channels under 512 KiB). Missing or odd fields never panic: a field
//! that is absent is simply not said.

use crate::monitor::history::{View, PERIOD};
use serde_json::Value;
use std::fmt::Write;

/// Seconds between refreshes.
pub const REFRESH_S: u32 = 10;
/// Longest text shown from a name, reason or event (characters).
pub const MAX_TEXT: usize = 120;
/// Events listed.
pub const MAX_EVENTS: usize = 30;

/// The Content-Security-Policy the server sends with the page.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// `status` is the `/status` JSON, `history` the rings (None: not kept by
/// this backend), `now_unix` the wall clock for event ages.
pub fn render(status: &Value, history: Option<&View>, now_unix: u64) -> String {
    let mut o = String::with_capacity(16 * 1024);
    head(&mut o, status);
    summary(&mut o, status);
    adapters(&mut o, status, history);
    channels(&mut o, status, history);
    muxes(&mut o, status);
    probes(&mut o, status);
    cards(&mut o, status);
    supervisor(&mut o, status);
    events(&mut o, status, now_unix);
    o.push_str("</main></body></html>\n");
    o
}

// ------------------------------------------------------------------ text

/// Escape for text and for quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// Escaped, cut to `MAX_TEXT` characters (with an ellipsis).
fn t(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        esc(s)
    } else {
        let cut: String = s.chars().take(MAX_TEXT - 1).collect();
        esc(&cut) + "…"
    }
}

/// A path segment: everything but unreserved characters percent-encoded.
fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}
fn n(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}
fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn b(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}
fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[])
}

/// "42 s", "3 min", "2 h 5 min", "3 d 4 h".
pub fn duration_words(s: u64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// "3.20 Mbit/s", "850 kbit/s".
pub fn bitrate_words(bps: f64) -> String {
    if !bps.is_finite() || bps < 0.0 {
        "?".into()
    } else if bps >= 1e6 {
        format!("{:.2} Mbit/s", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.0} kbit/s", bps / 1e3)
    } else {
        format!("{bps:.0} bit/s")
    }
}

fn bytes_words(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

// ------------------------------------------------------------------ sparkline

/// Inline SVG of `points` (oldest first, one per `PERIOD`, `None` a gap),
/// right-aligned on an hour, with its min and max as text beside it.
/// `fmt` says a value in words.
pub fn sparkline(points: &[Option<f32>], fmt: &dyn Fn(f64) -> String) -> String {
    const W: usize = crate::monitor::history::POINTS;
    const H: f32 = 24.0;
    let vals: Vec<f32> = points.iter().flatten().copied().collect();
    if vals.is_empty() {
        let why = if points.is_empty() {
            format!("collecting (a point every {} s)", PERIOD.as_secs())
        } else {
            "no value in the last hour".to_string()
        };
        return format!("<span class=\"dim\">{why}</span>");
    }
    let min = vals.iter().copied().fold(f32::INFINITY, f32::min);
    let max = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let span = max - min;
    let y = |v: f32| -> f32 {
        if span <= 0.0 {
            H / 2.0
        } else {
            1.0 + (H - 2.0) * (1.0 - (v - min) / span)
        }
    };
    let off = W.saturating_sub(points.len());
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"last hour\">"
    );
    let mut seg: Vec<(usize, f32)> = Vec::new();
    let flush = |seg: &mut Vec<(usize, f32)>, svg: &mut String| {
        match seg.len() {
            0 => {}
            1 => {
                let _ = write!(
                    svg,
                    "<circle cx=\"{}\" cy=\"{:.0}\" r=\"1.2\"/>",
                    seg[0].0, seg[0].1
                );
            }
            _ => {
                svg.push_str("<polyline points=\"");
                for (i, (x, yv)) in seg.iter().enumerate() {
                    if i > 0 {
                        svg.push(' ');
                    }
                    let _ = write!(svg, "{x},{yv:.0}");
                }
                svg.push_str("\"/>");
            }
        }
        seg.clear();
    };
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) => seg.push((off + i, y(*v))),
            None => flush(&mut seg, &mut svg),
        }
    }
    flush(&mut seg, &mut svg);
    svg.push_str("</svg>");
    format!(
        "<span class=\"sp\">{svg}<span class=\"mm\">max {}<br>min {}</span></span>",
        esc(&fmt(max as f64)),
        esc(&fmt(min as f64))
    )
}

// ------------------------------------------------------------------ sections

const CSS: &str = "
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d2329;background:#f3f5f7}
header{background:#1d2329;color:#eef1f4;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.5em;align-items:baseline}
header h1{font-size:1.2em;margin:0}
header a{color:#9fd0ff}
main{max-width:1400px;margin:0 auto;padding:.5em 1em 2em}
h2{font-size:1.05em;margin:1.4em 0 .4em;color:#3a4550}
.wrap{overflow-x:auto;background:#fff;border:1px solid #d8dde2;border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #eceff2;vertical-align:top}
th{font-weight:600;font-size:.85em;color:#5a6570;background:#fafbfc}
tr:last-child td{border-bottom:0}
.ok{color:#11753a;font-weight:600}.bad{color:#b3261e;font-weight:600}.warn{color:#9a6400;font-weight:600}
.dim{color:#7a858f}.small{font-size:.85em}.ph{display:none}
.sp{display:inline-flex;align-items:center;gap:.4em}
svg.spark{width:160px;height:28px;background:#eef3f8;border-radius:3px;fill:#2b6cb0;stroke:#2b6cb0;stroke-width:1.4;vector-effect:non-scaling-stroke}
svg.spark polyline{fill:none;vector-effect:non-scaling-stroke}
.mm{font-size:.72em;color:#5a6570;line-height:1.15;white-space:nowrap}
.pill{display:inline-block;padding:.05em .5em;border-radius:1em;background:#e9edf1;margin:.1em .2em .1em 0}
ul.ev{list-style:none;margin:0;padding:0}
ul.ev li{padding:.3em .6em;border-bottom:1px solid #eceff2}
ul.ev li:last-child{border-bottom:0}
@media (max-width:700px){body{font-size:14px}main{padding:.3em .4em 2em}th,td{padding:.3em .35em}
.grid tr.hd{display:none}.grid,.grid tbody{display:block}.grid tr{display:flex;flex-wrap:wrap;border-bottom:1px solid #eceff2}
.grid td{border:0;flex:1 1 45%;min-width:9em}svg.spark{width:90px}.ph{display:inline}}
";

fn head(o: &mut String, st: &Value) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>capbox status</title><style>{CSS}</style></head><body>\
         <header><h1>capbox {}</h1><span>up {}</span>",
        t(s(st, "version")),
        duration_words(u(st, "uptime_seconds"))
    );
    if let Some(rss) = st.get("process").and_then(|p| n(p, "rss_bytes")) {
        let _ = write!(o, "<span>memory {}</span>", bytes_words(rss));
    }
    let _ = write!(
        o,
        "<span>refreshes every {REFRESH_S} s</span>\
         <span><a href=\"/playlist.m3u\">playlist</a> · <a href=\"/status\">status JSON</a> · \
         <a href=\"/metrics\">metrics</a></span></header><main>"
    );
}

fn verdict_of(ch: &Value) -> (String, &'static str, String) {
    // The ES verdict (issue 14) when the channel has one.
    if let Some(v) = ch.get("verdict").and_then(Value::as_str) {
        let class = match v {
            "ok" => "ok",
            "starting" => "dim",
            "slate" | "scrambled" => "warn",
            _ => "bad",
        };
        let mut why = s(ch, "verdict_reason").to_string();
        if let Some(since) = ch.get("verdict_since_s").and_then(Value::as_u64) {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str(&format!("for {}", duration_words(since)));
        }
        // "ok" in plain words, the same as a channel without a verdict.
        let word = if v == "ok" { "on air" } else { v };
        return (word.to_string(), class, why);
    }
    let on_slate = ch
        .get("failover")
        .map(|f| b(f, "on_slate"))
        .unwrap_or(false);
    let reason = s(ch, "reason").to_string();
    match s(ch, "state") {
        _ if on_slate => ("slate".into(), "warn", reason),
        "up" => ("on air".into(), "ok", reason),
        "starting" | "" => ("starting".into(), "dim", reason),
        "down" => ("down".into(), "bad", reason),
        other => (other.to_string(), "warn", reason),
    }
}

fn summary(o: &mut String, st: &Value) {
    let chans = arr(st, "channels");
    let mut ok = 0;
    let mut bad = 0;
    for c in chans {
        match verdict_of(c).1 {
            "ok" => ok += 1,
            "bad" => bad += 1,
            _ => {}
        }
    }
    let viewers: u64 = chans
        .iter()
        .map(|c| c.get("ring").map(|r| u(r, "clients_now")).unwrap_or(0))
        .sum();
    let _ = write!(
        o,
        "<p>{} channel{}: <span class=\"ok\">{ok} fine</span>, \
         <span class=\"{}\">{bad} with a problem</span>, {} other; {viewers} viewer{} now.</p>",
        chans.len(),
        if chans.len() == 1 { "" } else { "s" },
        if bad > 0 { "bad" } else { "dim" },
        chans.len() - ok - bad,
        if viewers == 1 { "" } else { "s" },
    );
}

fn adapters(o: &mut String, st: &Value, h: Option<&View>) {
    let list = arr(st, "adapters");
    if list.is_empty() {
        return;
    }
    o.push_str(
        "<h2>Adapters</h2><div class=\"wrap\"><table class=\"grid\"><tr class=\"hd\"><th>Adapter</th><th>Signal</th>\
         <th>C/N, last hour</th><th>Recovery</th></tr>",
    );
    for a in list {
        let name = s(a, "name");
        let hv = h.and_then(|h| h.adapters.get(name));
        let locked = b(a, "locked");
        let (class, mut words) = if b(a, "gone") {
            (
                "bad",
                "adapter gone (unplugged or driver unloaded)".to_string(),
            )
        } else if locked {
            let mut w = "locked".to_string();
            if let Some(c) = n(a, "cnr_db") {
                w += &format!(", C/N {c:.1} dB");
            }
            if let Some(d) = n(a, "signal_dbm") {
                w += &format!(", {d:.0} dBm");
            }
            ("ok", w)
        } else {
            let w = match hv.filter(|v| !v.locked) {
                Some(v) if v.since_first_seen => {
                    format!("no lock since start ({})", duration_words(v.for_s))
                }
                Some(v) => format!("no lock for {}", duration_words(v.for_s)),
                None => "no lock".to_string(),
            };
            ("bad", w)
        };
        let last_error = s(a, "last_error");
        if !last_error.is_empty() {
            words = format!("{words}; {last_error}");
        }
        let spark = match hv {
            Some(v) => sparkline(&v.cnr, &|x| format!("{x:.1} dB")),
            None => "<span class=\"dim\">no history</span>".into(),
        };
        let rec = a.get("recovery").cloned().unwrap_or(Value::Null);
        let rec_words = if b(&rec, "failed") {
            format!(
                "<span class=\"bad\">gave up</span>: {}",
                t(s(&rec, "reason"))
            )
        } else if u(&rec, "step") > 0 {
            format!(
                "<span class=\"warn\">step {}</span> ({}): {}",
                u(&rec, "step"),
                t(s(&rec, "last_step")),
                t(s(&rec, "reason"))
            )
        } else if !s(&rec, "last_step").is_empty() {
            format!(
                "<span class=\"dim\">healthy; last {}: {}</span>",
                t(s(&rec, "last_step")),
                t(s(&rec, "reason"))
            )
        } else {
            "<span class=\"dim\">healthy</span>".into()
        };
        let _ = write!(
            o,
            "<tr><td><b>{}</b><br><span class=\"small dim\">{} · {}</span></td>\
             <td class=\"{class}\">{}</td><td>{spark}</td><td class=\"small\">{rec_words}</td></tr>",
            t(name),
            t(s(a, "device")),
            t(s(a, "mux")),
            t(&words),
        );
    }
    o.push_str("</table></div>");
}

fn channels(o: &mut String, st: &Value, h: Option<&View>) {
    let list = arr(st, "channels");
    o.push_str("<h2>Channels</h2>");
    if list.is_empty() {
        o.push_str("<p class=\"dim\">No channel configured.</p>");
        return;
    }
    o.push_str(
        "<div class=\"wrap\"><table class=\"grid\"><tr class=\"hd\"><th>Channel</th><th>Verdict</th><th>On air from</th>\
         <th>Bitrate, last hour</th><th>Viewers</th><th>Guide, next 12 h</th></tr>",
    );
    for c in list {
        let name = s(c, "name");
        let (verdict, class, why) = verdict_of(c);
        let service = s(c, "service_name");
        let label = match s(c, "tvg_name") {
            "" => service,
            x => x,
        };
        let source = match c.get("failover") {
            Some(f) if f.is_object() => {
                let mut w = t(s(f, "on_air"));
                if let Some(p) = f.get("pinned").and_then(Value::as_u64) {
                    w += &format!(" <span class=\"pill\">pinned to source {p}</span>");
                }
                w
            }
            _ => t(s(c, "source")),
        };
        let hv = h.and_then(|h| h.channels.get(name));
        let now = hv
            .and_then(|v| v.now_bps)
            .map(|b| format!("{}<br>", esc(&bitrate_words(b))))
            .unwrap_or_default();
        let spark = match hv {
            Some(v) => sparkline(&v.bitrate, &bitrate_words),
            None => "<span class=\"dim\">no history</span>".into(),
        };
        let clients = c.get("ring").map(|r| u(r, "clients_now")).unwrap_or(0);
        let guide = epg_cell(c);
        let _ = write!(
            o,
            "<tr><td><a href=\"/stream/{}\"><b>{}</b></a><br><span class=\"small dim\">{}</span></td>\
             <td><span class=\"{class}\">{}</span><br><span class=\"small\">{}</span></td>\
             <td class=\"small\">{source}</td><td>{now}{spark}</td>\
             <td>{clients}<span class=\"ph\"> viewers</span></td><td>{guide}</td></tr>",
            esc(&pct(name)),
            t(name),
            t(label),
            t(&verdict),
            t(&why),
        );
    }
    o.push_str("</table></div>");
}

/// Fewer programmes than this in the next 12 hours is a guide running dry
/// (the alert rule `CapboxEpgLow`'s default).
pub const EPG_LOW: u64 = 2;

/// The guide column: programmes in the next 12 hours, coloured when the
/// guide runs dry; "off" when the box serves no guide.
fn epg_cell(c: &Value) -> String {
    match c
        .get("epg")
        .and_then(|e| e.get("programmes_next_12h"))
        .and_then(Value::as_u64)
    {
        None => "<span class=\"dim\">off</span>".into(),
        Some(0) => "<span class=\"bad\">0 programmes: no guide</span>".into(),
        Some(n) if n < EPG_LOW => format!("<span class=\"warn\">{n} programme</span>"),
        Some(n) => format!("{n}<span class=\"ph\"> programmes</span>"),
    }
}

/// `muxes[]` (TR 101 290 and the broadcast clock per input mux), when
/// the box reports them.
fn muxes(o: &mut String, st: &Value) {
    let list = arr(st, "muxes");
    if list.is_empty() {
        return;
    }
    o.push_str(
        "<h2>Input muxes</h2><div class=\"wrap\"><table class=\"grid\"><tr class=\"hd\">\
         <th>Mux</th><th>TR 101 290</th><th>Clock</th></tr>",
    );
    for m in list.iter().take(64) {
        let tr = m.get("tr101290").cloned().unwrap_or(Value::Null);
        let failing: Vec<&str> = ["priority1_ok", "priority2_ok", "priority3_ok"]
            .iter()
            .zip(["priority 1", "priority 2", "priority 3"])
            .filter(|(k, _)| tr.get(**k).and_then(Value::as_bool) == Some(false))
            .map(|(_, w)| w)
            .collect();
        let active: Vec<String> = tr
            .get("indicators")
            .and_then(Value::as_object)
            .map(|ind| {
                ind.iter()
                    .filter(|(_, v)| b(v, "active"))
                    .map(|(k, _)| t(k))
                    .take(8)
                    .collect()
            })
            .unwrap_or_default();
        let tr_words = if tr.is_null() {
            "<span class=\"dim\">not measured</span>".to_string()
        } else if failing.is_empty() {
            "<span class=\"ok\">no error</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">{} in error</span> <span class=\"small\">{}</span>",
                failing.join(", "),
                active.join(", ")
            )
        };
        let clock = m.get("clock").cloned().unwrap_or(Value::Null);
        let clock_words = match n(&clock, "offset_s") {
            Some(off) if b(&clock, "drift") => {
                format!("<span class=\"warn\">box clock off by {off:+.1} s</span>")
            }
            Some(off) => format!("<span class=\"ok\">in step</span> ({off:+.1} s)"),
            None => "<span class=\"dim\">no TDT seen</span>".to_string(),
        };
        let _ = write!(
            o,
            "<tr><td class=\"small\">{}</td><td>{tr_words}</td><td>{clock_words}</td></tr>",
            t(s(m, "name"))
        );
    }
    o.push_str("</table></div>");
}

/// `probes[]` (`capbox check` on the configured URLs), when configured.
fn probes(o: &mut String, st: &Value) {
    let list = arr(st, "probes");
    if list.is_empty() {
        return;
    }
    o.push_str(
        "<h2>What viewers get (probes)</h2><div class=\"wrap\"><table class=\"grid\">\
         <tr class=\"hd\"><th>Probe</th><th>Last result</th><th>Times</th></tr>",
    );
    for p in list.iter().take(64) {
        let result = s(p, "result");
        let class = match result {
            "ok" => "ok",
            "" => "dim",
            _ => "bad",
        };
        let ago = p
            .get("last_run_s_ago")
            .and_then(Value::as_u64)
            .map(|a| format!(", {} ago", duration_words(a)))
            .unwrap_or_else(|| ", not run yet".into());
        let err = s(p, "error");
        let times: Vec<String> = [("ttfb_s", "first byte"), ("zap_s", "zap")]
            .iter()
            .filter_map(|(k, w)| n(p, k).map(|x| format!("{w} {x:.2} s")))
            .collect();
        let _ = write!(
            o,
            "<tr><td><b>{}</b><br><span class=\"small dim\">{}</span></td>\
             <td><span class=\"{class}\">{}</span>{ago}<br><span class=\"small\">{}</span></td>\
             <td class=\"small\">{}</td></tr>",
            t(s(p, "name")),
            t(s(p, "url")),
            t(if result.is_empty() { "none" } else { result }),
            t(err),
            times.join(", ")
        );
    }
    o.push_str("</table></div>");
}

fn cards(o: &mut String, st: &Value) {
    let list = arr(st, "cards");
    let softcam = st.get("softcam").filter(|v| v.is_object());
    if list.is_empty() && softcam.is_none() {
        return;
    }
    o.push_str("<h2>Cards</h2><div class=\"wrap\"><table class=\"grid\"><tr class=\"hd\"><th>Reader</th><th>State</th><th>ECMs</th><th>Last error</th></tr>");
    for c in list {
        let state = s(c, "state");
        let class = if state == "ready" { "ok" } else { "bad" };
        let caid = c
            .get("caid")
            .and_then(Value::as_u64)
            .map(|x| format!(" · CAID {x:04X}"))
            .unwrap_or_default();
        let rtt = n(c, "last_ecm_rtt_ms")
            .map(|x| format!(", last in {x:.0} ms"))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td><b>{}</b><br><span class=\"small dim\">{}{caid}</span></td>\
             <td class=\"{class}\">{}</td><td class=\"small\">{} ok, {} errors, {} timeouts{rtt}</td>\
             <td class=\"small\">{}</td></tr>",
            t(s(c, "reader")),
            t(c.get("driver").and_then(Value::as_str).unwrap_or("")),
            t(state),
            u(c, "ecms_ok"),
            u(c, "ecm_errors"),
            u(c, "ecm_timeouts"),
            t(c.get("last_error").and_then(Value::as_str).unwrap_or("")),
        );
    }
    if let Some(sc) = softcam {
        let state = s(sc, "state");
        let class = if state.starts_with("ready") {
            "ok"
        } else {
            "bad"
        };
        let _ = write!(
            o,
            "<tr><td><b>softcam</b><br><span class=\"small dim\">{}</span></td>\
             <td class=\"{class}\">{}</td><td class=\"small\">{} connections, {} desyncs</td>\
             <td class=\"small\">{}</td></tr>",
            t(s(sc, "endpoint")),
            t(state),
            u(sc, "connections"),
            u(sc, "desyncs"),
            t(sc.get("last_error").and_then(Value::as_str).unwrap_or("")),
        );
    }
    o.push_str("</table></div>");
}

fn supervisor(o: &mut String, st: &Value) {
    let Some(sv) = st.get("supervisor").filter(|v| v.is_object()) else {
        return;
    };
    o.push_str("<h2>Watchdog and supervisor</h2><div class=\"wrap\"><table>");
    let wd = sv.get("watchdog").cloned().unwrap_or(Value::Null);
    let wd_words = if b(&wd, "armed") {
        format!(
            "<span class=\"ok\">armed</span>: {}, timeout {} s, {} feeds",
            t(s(&wd, "device")),
            u(&wd, "timeout_s"),
            u(&wd, "feeds")
        )
    } else {
        format!(
            "<span class=\"dim\">not armed</span>: {}",
            t(s(&wd, "disarmed_reason"))
        )
    };
    let _ = write!(o, "<tr><th>Watchdog</th><td>{wd_words}</td></tr>");
    let threads = arr(sv, "threads");
    let stalled: Vec<String> = threads
        .iter()
        .filter(|th| b(th, "stalled"))
        .map(|th| t(s(th, "name")))
        .collect();
    let restarts: u64 = threads.iter().map(|th| u(th, "restarts")).sum();
    let th_words = if stalled.is_empty() {
        format!(
            "<span class=\"ok\">{} threads beating</span>",
            threads.len()
        )
    } else {
        format!(
            "<span class=\"bad\">stalled: {}</span> (of {})",
            stalled.join(", "),
            threads.len()
        )
    };
    let _ = write!(
        o,
        "<tr><th>Threads</th><td>{th_words}; {restarts} restart{} (stall after {} s)</td></tr>",
        if restarts == 1 { "" } else { "s" },
        u(sv, "stall_after_s")
    );
    let r = sv.get("resets").cloned().unwrap_or(Value::Null);
    let last = match s(&r, "last_at") {
        "" => "none recorded".to_string(),
        at => format!("last at {} ({})", t(at), t(s(&r, "last_cause"))),
    };
    let guard = if b(&r, "guard_tripped") {
        " <span class=\"bad\">reboot guard tripped: no more watchdog resets</span>"
    } else {
        ""
    };
    let _ = write!(
        o,
        "<tr><th>Resets</th><td>{} in the last hour; {last}{guard}</td></tr></table></div>",
        u(&r, "in_last_hour")
    );
}

fn events(o: &mut String, st: &Value, now_unix: u64) {
    // (unix time, words, class)
    let mut ev: Vec<(u64, String, &'static str)> = Vec::new();
    if let Some(sv) = st.get("supervisor") {
        for e in arr(sv, "events") {
            let Some(at) = n(e, "unix") else { continue };
            ev.push((at.max(0.0) as u64, s(e, "text").to_string(), ""));
        }
    }
    for a in arr(st, "adapters") {
        let Some(rec) = a.get("recovery") else {
            continue;
        };
        if let (Some(at), step) = (
            rec.get("last_step_at").and_then(Value::as_u64),
            s(rec, "last_step"),
        ) {
            ev.push((
                at,
                format!("adapter {}: {step} ({})", s(a, "name"), s(rec, "reason")),
                "warn",
            ));
        }
    }
    for c in arr(st, "channels") {
        let Some(f) = c.get("failover").filter(|f| f.is_object()) else {
            continue;
        };
        if let (Some(w), Some(age)) = (
            f.get("last_switch").and_then(Value::as_str),
            f.get("last_switch_age_s").and_then(Value::as_u64),
        ) {
            ev.push((
                now_unix.saturating_sub(age),
                format!("channel {}: switched: {w}", s(c, "name")),
                "warn",
            ));
        }
    }
    ev.sort_by_key(|e| std::cmp::Reverse(e.0));
    let total = ev.len();
    let sv_total = st
        .get("supervisor")
        .map(|sv| u(sv, "events_total"))
        .unwrap_or(0);
    o.push_str("<h2>Last events</h2><div class=\"wrap\">");
    if ev.is_empty() {
        o.push_str(
            "<p class=\"dim\" style=\"margin:.5em\">Nothing to report since the start.</p></div>",
        );
        return;
    }
    o.push_str("<ul class=\"ev\">");
    for (at, text, class) in ev.into_iter().take(MAX_EVENTS) {
        let _ = write!(
            o,
            "<li><span class=\"small dim\">{} ago</span> <span class=\"{class}\">{}</span></li>",
            duration_words(now_unix.saturating_sub(at)),
            t(&text)
        );
    }
    let _ = write!(
        o,
        "</ul></div><p class=\"small dim\">{} shown of {total}; {sv_total} warnings and errors \
         noted since the start (<a href=\"/status\">status JSON</a>, <code>capbox logs</code>).</p>",
        total.min(MAX_EVENTS)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::history::{AdapterView, ChannelView, POINTS};
    use serde_json::json;

    fn status(channels: Vec<Value>) -> Value {
        json!({
            "version": "1.2.3",
            "uptime_seconds": 4000,
            "process": {"rss_bytes": 31_000_000, "cpu_seconds": 2.0},
            "channels": channels,
            "adapters": [{
                "name": "sat1", "device": "adapter0", "mux": "dvb-s2 11493 H 22000",
                "locked": true, "cnr_db": 12.34, "signal_dbm": -41.0,
                "last_error": "", "gone": false,
                "recovery": {"step": 0, "last_step": "retune", "last_step_at": 1_000_000u64 - 300,
                             "reason": "lost lock", "failed": false}
            }, {
                "name": "sat2", "device": "adapter1", "mux": "dvb-s2 12000 V 27500",
                "locked": false, "cnr_db": null, "last_error": "", "gone": false,
                "recovery": {"step": 1, "last_step": "retune", "reason": "no signal", "failed": false}
            }],
            "cards": [{"reader": "Reader <0>", "state": "ready", "caid": 0x0B00, "ecms_ok": 10,
                       "ecm_errors": 1, "ecm_timeouts": 0, "last_error": null}],
            "softcam": null,
            "supervisor": {
                "watchdog": {"armed": false, "disarmed_reason": "no watchdog configured", "feeds": 0},
                "stall_after_s": 10,
                "threads": [{"name": "http", "stalled": false, "restarts": 0},
                            {"name": "mux <b>", "stalled": true, "restarts": 2}],
                "events": [{"unix": 1_000_000u64 - 50, "text": "card <x> removed"}],
                "events_total": 7,
                "resets": {"in_last_hour": 0, "last_at": null, "guard_tripped": false}
            }
        })
    }

    fn channel(name: &str, service: &str) -> Value {
        json!({
            "name": name, "service_name": service, "tvg_name": null,
            "state": "up", "reason": "", "source": "file samples/mux.ts",
            "failover": null, "ring": {"clients_now": 2}
        })
    }

    fn full_history(chans: &[String]) -> View {
        let mut v = View::default();
        v.adapters.insert(
            "sat1".into(),
            AdapterView {
                cnr: (0..POINTS)
                    .map(|i| Some(10.0 + (i % 7) as f32 * 0.37))
                    .collect(),
                locked: true,
                for_s: 100,
                since_first_seen: true,
            },
        );
        v.adapters.insert(
            "sat2".into(),
            AdapterView {
                cnr: vec![None; 3],
                locked: false,
                for_s: 190,
                since_first_seen: false,
            },
        );
        for c in chans {
            v.channels.insert(
                c.clone(),
                ChannelView {
                    bitrate: (0..POINTS)
                        .map(|i| {
                            (i % 17 != 0).then_some(3_123_456.0 + (i * 7919 % 1000) as f32 * 1234.5)
                        })
                        .collect(),
                    now_bps: Some(3_200_000.0),
                },
            );
        }
        v
    }

    #[test]
    fn names_from_the_air_are_escaped() {
        let evil = "<script>alert('x')</script>\"&";
        let st = status(vec![channel(evil, evil)]);
        let html = render(&st, Some(&full_history(&[evil.to_string()])), 1_000_000);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        // The link is percent-encoded, then escaped.
        assert!(
            html.contains("href=\"/stream/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%26\"")
        );
        assert!(html.contains("mux &lt;b&gt;"));
        assert!(html.contains("card &lt;x&gt; removed"));
        // No tag but the page's own.
        for tag in html.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(
                [
                    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "h1",
                    "span", "a", "main", "p", "h2", "div", "table", "tr", "th", "td", "b", "br",
                    "svg", "polyline", "circle", "ul", "li", "code", "link"
                ]
                .contains(&name.as_str()),
                "unexpected tag {name:?}"
            );
        }
    }

    #[test]
    fn long_names_are_cut_and_control_characters_replaced() {
        let long = "x".repeat(10_000) + "\u{1b}[31m";
        assert_eq!(t(&long).chars().count(), MAX_TEXT);
        assert_eq!(esc("a\u{1b}b\nc"), "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn plain_words_for_lock_verdict_cards_and_supervisor() {
        let mut ch = channel("news", "Demo News");
        let mut down = channel("sport", "Demo Sport");
        down["state"] = "down".into();
        down["reason"] = "no packets for 3 s".into();
        let mut slate = channel("music", "M");
        slate["failover"] = json!({"on_air": "slate (slate.ts)", "on_slate": true,
            "pinned": 1, "last_switch": "file a stalled → slate", "last_switch_age_s": 20});
        ch["verdict"] = "silent".into();
        ch["verdict_reason"] = "audio PID 258 silent for 14 s (−91 dBFS)".into();
        ch["verdict_since_s"] = 14.into();
        let mut fine = channel("fine", "F");
        fine["verdict"] = "ok".into();
        let st = status(vec![ch, down, slate, fine]);
        let html = render(&st, Some(&full_history(&["news".into()])), 1_000_000);
        assert!(html.contains("locked, C/N 12.3 dB, -41 dBm"), "{html}");
        assert!(html.contains("no lock for 3 min"), "{html}");
        assert!(html.contains("class=\"bad\">silent</span>"));
        assert!(html.contains("audio PID 258 silent for 14 s (−91 dBFS); for 14 s"));
        assert!(html.contains("class=\"bad\">down</span>"));
        assert!(html.contains("no packets for 3 s"));
        assert!(html.contains("class=\"warn\">slate</span>"));
        assert!(html.contains("pinned to source 1"));
        assert!(html.contains("CAID 0B00"));
        assert!(html.contains("10 ok, 1 errors, 0 timeouts"));
        assert!(html.contains("not armed</span>: no watchdog configured"));
        assert!(html.contains("stalled: mux &lt;b&gt;</span> (of 2)"));
        assert!(html.contains("3.20 Mbit/s"));
        assert!(html.contains("1 fine</span>, <span class=\"bad\">2 with a problem"));
        assert!(html.contains("class=\"ok\">on air</span>"));
        // Events newest first: the failover switch (20 s), the card (50 s),
        // the adapter's retune (5 min).
        let a = html.find("switched: file a stalled").unwrap();
        let b = html.find("card &lt;x&gt; removed").unwrap();
        let c = html.find("adapter sat1: retune").unwrap();
        assert!(a < b && b < c);
        assert!(html.contains("20 s ago"));
        assert!(html.contains("5 min ago"));
        // Without a history the page still renders.
        let bare = render(&st, None, 0);
        assert!(bare.contains("no history"));
    }

    #[test]
    fn no_external_resource_and_no_script() {
        let st = status(vec![channel("news", "N")]);
        let html = render(&st, Some(&full_history(&["news".into()])), 1_000_000);
        assert!(!html.contains("<script"));
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("//"),
            "an absolute or protocol-relative URL"
        );
        for part in html.split("href=\"").skip(1) {
            let ok = part.starts_with('/') || part.starts_with("data:,\"");
            assert!(ok, "{}", &part[..20.min(part.len())]);
        }
        assert!(!html.contains("src="));
    }

    #[test]
    fn odd_json_never_panics() {
        for st in [
            json!(null),
            json!({}),
            json!({"channels": 5, "adapters": "x", "supervisor": []}),
            json!({"channels": [null, 1, {"name": 7, "ring": "x", "failover": {"pinned": "a"}}],
                   "adapters": [{"recovery": 3}], "cards": [{}], "softcam": {},
                   "supervisor": {"events": [{"unix": -5.0}, {}], "threads": [1]}}),
        ] {
            let html = render(&st, None, 0);
            assert!(html.ends_with("</html>\n"));
        }
    }

    #[test]
    fn muxes_and_probes_when_reported() {
        let mut st = status(vec![]);
        assert!(!render(&st, None, 0).contains("Input muxes"));
        st["muxes"] = json!([{
            "name": "adapter ter1 <dvbt>",
            "tr101290": {"priority1_ok": false, "priority2_ok": true, "priority3_ok": true,
                         "indicators": {"continuity_count_error": {"errors": 3, "active": true},
                                        "pat_error": {"errors": 0, "active": false}}},
            "clock": {"offset_s": -7.25, "drift": true}
        }, {"name": "file a.ts", "tr101290": {"priority1_ok": true, "priority2_ok": true,
            "priority3_ok": true}, "clock": {"offset_s": null}}]);
        st["probes"] = json!([{"name": "news-out", "url": "http://x/stream/<n>", "result": "silent",
            "last_run_s_ago": 125, "ttfb_s": 0.0421, "zap_s": 1.5, "error": "audio silent 10 s"},
            {"name": "idle", "url": "u", "result": null, "last_run_s_ago": null}]);
        let html = render(&st, None, 0);
        assert!(html.contains("adapter ter1 &lt;dvbt&gt;"));
        assert!(
            html.contains(
                "priority 1 in error</span> <span class=\"small\">continuity_count_error</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains("box clock off by -7.2 s") || html.contains("box clock off by -7.3 s")
        );
        assert!(html.contains("no error"));
        assert!(html.contains("no TDT seen"));
        assert!(html.contains("class=\"bad\">silent</span>, 2 min ago"));
        assert!(html.contains("first byte 0.04 s, zap 1.50 s"));
        assert!(html.contains("http://x/stream/&lt;n&gt;"));
        assert!(html.contains("none</span>, not run yet"));
    }

    #[test]
    fn sparkline_shapes() {
        assert!(sparkline(&[], &|x| format!("{x}")).contains("collecting"));
        assert!(sparkline(&[None, None], &|x| format!("{x}")).contains("no value"));
        let one = sparkline(&[Some(5.0)], &|x| format!("{x:.0} dB"));
        assert!(one.contains("<circle cx=\"119\""), "{one}");
        assert!(one.contains("max 5 dB<br>min 5 dB"));
        let gap = sparkline(&[Some(1.0), Some(3.0), None, Some(2.0), Some(2.0)], &|x| {
            format!("{x:.0}")
        });
        assert_eq!(gap.matches("<polyline").count(), 2, "{gap}");
        // Right-aligned on the hour; max at the top, min at the bottom.
        assert!(gap.contains("points=\"115,23 116,1\""), "{gap}");
        assert!(gap.contains("max 3<br>min 1"));
    }

    #[test]
    fn two_hundred_channels_stay_small() {
        let names: Vec<String> = (0..200).map(|i| format!("channel-{i:03}")).collect();
        let chans: Vec<Value> = names
            .iter()
            .map(|n| {
                let mut c = channel(n, "Service name of some length");
                c["verdict"] = "no audio".into();
                c["verdict_reason"] = "no PES with advancing PTS on audio PID 258 for 6 s".into();
                c["verdict_since_s"] = 6.into();
                c
            })
            .collect();
        let mut st = status(chans);
        let events: Vec<Value> = (0..500)
            .map(|i| json!({"unix": 999_000 + i, "text": "x".repeat(400)}))
            .collect();
        st["supervisor"]["events"] = events.into();
        let view = full_history(&names);
        let t0 = std::time::Instant::now();
        let html = render(&st, Some(&view), 1_000_000);
        // Said, not asserted (no wall-clock asserts in unit tests).
        eprintln!("200 channels rendered in {:?}", t0.elapsed());
        let per_channel = {
            let one = render(
                &status(vec![st["channels"][0].clone()]),
                Some(&full_history(&names[..1])),
                1_000_000,
            );
            let none = render(&status(vec![]), Some(&full_history(&[])), 1_000_000);
            one.len() - none.len()
        };
        eprintln!(
            "200 channels: {} bytes, {per_channel} bytes per channel",
            html.len()
        );
        assert!(per_channel < 1800, "{per_channel} bytes per channel");
        assert!(html.len() < 512 * 1024, "{} bytes", html.len());
        assert_eq!(html.matches("<li>").count(), MAX_EVENTS);
    }

    #[test]
    fn words() {
        assert_eq!(duration_words(59), "59 s");
        assert_eq!(duration_words(180), "3 min");
        assert_eq!(duration_words(7500), "2 h 5 min");
        assert_eq!(duration_words(3 * 86400 + 4 * 3600), "3 d 4 h");
        assert_eq!(bitrate_words(3_204_000.0), "3.20 Mbit/s");
        assert_eq!(bitrate_words(850_400.0), "850 kbit/s");
        assert_eq!(bitrate_words(f64::NAN), "?");
    }
}
