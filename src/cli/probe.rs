//! `capbox probe <file|url>`: what is in a transport stream, in one screen.
//!
//! Owns: reading a bounded amount of a file or of an `http://` stream into
//! the analyser (`monitor::probe::Probe`: per-PID accounting and the PSI/SI
//! picture) and the two renderings of its `Report`, an 80-column text
//! report and a JSON document (both from the one `Report`, so they cannot
//! disagree).
//!
//! Promises: bounded memory (one read buffer plus the analyser's bounds),
//! never panics on input.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::ts::text::clean_name;
use crate::ts::PACKET_SIZE;

pub use crate::monitor::probe::{
    ca_system_name, service_type_name, CaReport, PidReport, Probe, ProbeError, ProgramReport,
    PsiStats, Report, StreamReport, SyncReport, TablesSeen,
};

const USAGE: &str = "\
usage: capbox probe <file|http://host[:port]/path>
                    [--json] [--seconds N] [--bytes N]

Show what a transport stream carries: transport_stream_id, network,
programs (PMT PID, PCR PID, service name, provider, CA systems), their
streams (PID, stream_type, language, bit rate), EMM PIDs and a per-PID
table (packets, bit rate, CC errors, scrambling, PIDs no table refers to).

  --json        print a JSON document instead of text
  --seconds N   for a URL: read for N seconds (default 5)
  --bytes N     read at most N bytes (default 67108864 = 64 MiB);
                suffixes k, M, G (powers of 1024) are accepted
  -h, --help    this text

Exit status: 0 success, 1 the input could not be probed, 2 bad usage.";

/// Default read bound: 64 MiB, a few minutes of a busy mux.
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
const DEFAULT_SECONDS: f64 = 5.0;
/// Text report width.
pub const TEXT_WIDTH: usize = 80;
/// Largest HTTP response head we accept.
const MAX_HTTP_HEAD: usize = 16 * 1024;

struct Opts {
    input: String,
    json: bool,
    seconds: f64,
    max_bytes: u64,
}

/// Entry point: `args` are the words after `probe`. Returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("capbox probe: {e}");
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let mut probe = Probe::new();
    let read = if opts.input.starts_with("http://") || opts.input.starts_with("https://") {
        read_http(&opts.input, opts.seconds, opts.max_bytes, &mut probe)
    } else {
        read_file(&opts.input, opts.max_bytes, &mut probe)
    };
    if let Err(e) = read {
        eprintln!("capbox probe: {}: {e}", opts.input);
        return 1;
    }
    let report = match probe.finish(&opts.input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("capbox probe: {}: {e}", opts.input);
            return 1;
        }
    };
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("capbox probe: JSON: {e}");
                return 1;
            }
        }
    } else {
        super::term::print(&report.to_text());
    }
    0
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut input = None;
    let mut json = false;
    let mut seconds = DEFAULT_SECONDS;
    let mut max_bytes = DEFAULT_MAX_BYTES;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => json = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| format!("--seconds {v}: want a number of seconds > 0"))?;
            }
            "--bytes" => {
                let v = it.next().ok_or("--bytes needs a value")?;
                max_bytes = parse_size(v)
                    .filter(|&n| n >= PACKET_SIZE as u64)
                    .ok_or_else(|| {
                        format!("--bytes {v}: want a size >= 188 (e.g. 1000000, 64M)")
                    })?;
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            s => {
                if input.is_some() {
                    return Err(format!("one input only (extra: {s})"));
                }
                input = Some(s.to_string());
            }
        }
    }
    let input = input.ok_or("missing <file|url>")?;
    Ok(Some(Opts {
        input,
        json,
        seconds,
        max_bytes,
    }))
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

fn read_file(path: &str, max_bytes: u64, probe: &mut Probe) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = max_bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        probe.push_bytes(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// `http://host[:port]/path` → ("host:port", "host", "/path").
fn split_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err("URL wants http://host[:port]/path".into());
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path.to_string()))
}

/// A plain HTTP/1.0 GET, read for `seconds` or `max_bytes`, whichever ends
/// first (or the server closing).
fn read_http(url: &str, seconds: f64, max_bytes: u64, probe: &mut Probe) -> Result<(), String> {
    let (addr, host, path) = split_url(url)?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .collect();
    let mut last_err = format!("{addr}: no address");
    let mut stream = None;
    for a in &addrs {
        let t = remaining().max(Duration::from_millis(100));
        match TcpStream::connect_timeout(a, t) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("connecting to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last_err)?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: capbox-probe\r\nAccept: */*\r\n\r\n"
    );
    s.set_write_timeout(Some(remaining().max(Duration::from_millis(100))))
        .map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending request: {e}"))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut body_left = max_bytes;
    let mut in_head = true;
    loop {
        let t = remaining();
        if t.is_zero() {
            break;
        }
        s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => return Err(format!("reading: {e}")),
        };
        let mut data = &buf[..n];
        if in_head {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > MAX_HTTP_HEAD {
                    return Err(format!("HTTP response head over {MAX_HTTP_HEAD} bytes"));
                }
                continue;
            };
            let status = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or(&[]))
                .into_owned();
            let code = status.split_whitespace().nth(1).unwrap_or("");
            if !status.starts_with("HTTP/") || code != "200" {
                return Err(format!("server answered {status:?}"));
            }
            in_head = false;
            let body = head.split_off(end + 4);
            let take = body
                .len()
                .min(usize::try_from(body_left).unwrap_or(usize::MAX));
            probe.push_bytes(&body[..take]);
            body_left -= take as u64;
            data = &[];
        }
        let take = data
            .len()
            .min(usize::try_from(body_left).unwrap_or(usize::MAX));
        probe.push_bytes(&data[..take]);
        body_left -= take as u64;
        if body_left == 0 {
            break;
        }
    }
    if in_head {
        return Err(format!(
            "no HTTP response within {seconds} s ({} bytes of head)",
            head.len()
        ));
    }
    Ok(())
}

/// `s` cut to `width` characters, with an ellipsis when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Control characters (a DVB string may carry '\n') would break the layout.
/// The input (path or URL) on one line. Names use `text::clean_name`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn opt_hex(v: Option<u16>) -> String {
    v.map_or("-".into(), |v| format!("0x{v:04X} ({v})"))
}

fn opt_kbps(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

impl Report {
    /// The text rendering; no line is wider than `TEXT_WIDTH` characters.
    pub fn to_text(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        let mut l = |s: String| lines.push(fit(&s, TEXT_WIDTH));
        l(format!("Input: {}", clean(&self.input)));
        let clock = match (self.duration_s, self.clock, self.clock_pid) {
            (Some(d), Some(c), Some(p)) => {
                format!("{d:.3} s by {} of PID 0x{p:04X}", c.to_uppercase())
            }
            _ => "no PCR nor PTS clock".into(),
        };
        l(format!(
            "  {} bytes, {} packets, {clock}, {} kbit/s",
            self.bytes_read,
            self.packets,
            opt_kbps(self.mux_bitrate_kbps)
        ));
        let s = &self.sync;
        if s.bytes_skipped + s.sync_losses + s.truncated_packets + s.bad_packets > 0 {
            l(format!(
                "  sync: {} bytes skipped, {} losses, {} truncated packets",
                s.bytes_skipped, s.sync_losses, s.truncated_packets
            ));
        }
        l(format!(
            "  transport_stream_id {}  original_network_id {}",
            opt_hex(self.transport_stream_id),
            opt_hex(self.original_network_id)
        ));
        let name = self
            .network_name
            .as_deref()
            .map_or("-".into(), |n| format!("\"{}\"", clean_name(n)));
        l(format!(
            "  network {}  network_id {}  (NIT on PID 0x{:04X})",
            name,
            opt_hex(self.network_id),
            self.nit_pid
        ));
        let t = &self.tables;
        let yn = |b: bool| if b { "yes" } else { "no" };
        l(format!(
            "  tables: PAT {}, PMT {}/{}, CAT {}, SDT {}, NIT {}",
            yn(t.pat),
            t.pmt,
            self.programs.len(),
            yn(t.cat),
            yn(t.sdt),
            yn(t.nit)
        ));
        let p = &self.psi;
        if p.crc_errors + p.incomplete + p.malformed + p.bad_pointer + p.table_errors > 0 {
            l(format!(
                "  PSI errors: {} CRC, {} incomplete, {} malformed, {} pointer, {} table",
                p.crc_errors, p.incomplete, p.malformed, p.bad_pointer, p.table_errors
            ));
        }
        if p.entries_refused > 0 {
            l(format!(
                "  PSI entries over the bounds, not kept: {}",
                p.entries_refused
            ));
        }

        l(String::new());
        let t = &self.tr101290;
        l(format!(
            "TR 101 290 ({:.1} s of stream time{}):",
            t.stream_time_s,
            if t.pcr_accuracy_measured {
                ""
            } else {
                "; PCR accuracy: on a tuner's input only"
            }
        ));
        l(format!("  {:<2} {:<36} {:>10}", "P", "indicator", "errors"));
        for r in &t.indicators {
            let errors = if r.indicator == "pcr_accuracy_error" && !t.pcr_accuracy_measured {
                "-".to_string()
            } else {
                r.errors.to_string()
            };
            l(format!(
                "  {:<2} {:<36} {:>10}",
                r.priority, r.indicator, errors
            ));
        }

        for prog in &self.programs {
            l(String::new());
            let name = prog
                .service_name
                .as_deref()
                .map_or("(no SDT entry)".into(), |n| {
                    format!("\"{}\"", clean_name(n))
                });
            l(format!("Program {}: {}", prog.program_number, name));
            let provider = prog
                .provider
                .as_deref()
                .map_or("-".into(), |n| format!("\"{}\"", clean_name(n)));
            let stype = match (prog.service_type, prog.service_type_name) {
                (Some(t), Some(n)) => format!("0x{t:02X} {n}"),
                _ => "-".into(),
            };
            l(format!("  provider {provider}  service_type {stype}"));
            let pcr = prog.pcr_pid.map_or("-".into(), |p| format!("0x{p:04X}"));
            let seen = if prog.pmt_seen { "" } else { " (PMT not seen)" };
            l(format!(
                "  PMT PID 0x{:04X}  PCR PID {pcr}{seen}",
                prog.pmt_pid
            ));
            for ca in &prog.ca {
                l(format!(
                    "  CA 0x{:04X} {}  ECM PID 0x{:04X}",
                    ca.ca_system_id, ca.ca_system, ca.pid
                ));
            }
            if prog.streams.is_empty() {
                continue;
            }
            l("    PID     type  codec          kind       language     kbit/s  scr".into());
            for st in &prog.streams {
                let codec = st.codec.unwrap_or(st.stream_type_name);
                let lang = if st.languages.is_empty() {
                    "-".to_string()
                } else {
                    st.languages.join(",")
                };
                l(format!(
                    "    0x{:04X}  0x{:02X}  {:<14} {:<10} {:<10} {:>8}  {}",
                    st.pid,
                    st.stream_type,
                    fit(codec, 14),
                    st.kind,
                    fit(&lang, 10),
                    opt_kbps(st.bitrate_kbps),
                    if st.scrambled { "yes" } else { "no" }
                ));
            }
        }

        l(String::new());
        if self.emm.is_empty() {
            l("EMM: none (no CA descriptor in the CAT)".into());
        }
        for e in &self.emm {
            l(format!(
                "EMM: CA 0x{:04X} {}  EMM PID 0x{:04X}",
                e.ca_system_id, e.ca_system, e.pid
            ));
        }

        l(String::new());
        l("PID       packets    kbit/s  cc_err  scr  use".into());
        for p in &self.pids {
            l(format!(
                "0x{:04X} {:>10} {:>9} {:>7}  {:<3}  {}",
                p.pid,
                p.packets,
                opt_kbps(p.bitrate_kbps),
                p.cc_errors,
                if p.scrambled { "yes" } else { "no" },
                p.usage
            ));
        }
        if !self.unreferenced_pids.is_empty() {
            let list: Vec<String> = self
                .unreferenced_pids
                .iter()
                .map(|p| format!("0x{p:04X}"))
                .collect();
            l(format!(
                "Unreferenced PIDs ({}): {}",
                list.len(),
                list.join(" ")
            ));
        }
        if !self.missing_pids.is_empty() {
            let list: Vec<String> = self
                .missing_pids
                .iter()
                .map(|p| format!("0x{p:04X}"))
                .collect();
            l(format!(
                "Referenced but absent PIDs ({}): {}",
                list.len(),
                list.join(" ")
            ));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_on_chars_not_bytes() {
        let s = "é".repeat(100);
        let f = fit(&s, 80);
        assert_eq!(f.chars().count(), 80);
        assert!(f.ends_with('…'));
        assert_eq!(fit("abc", 80), "abc");
    }

    #[test]
    fn url_split() {
        let (a, h, p) = split_url("http://example.org/x/y?z").unwrap();
        assert_eq!(
            (a.as_str(), h.as_str(), p.as_str()),
            ("example.org:80", "example.org", "/x/y?z")
        );
        let (a, _, p) = split_url("http://[::1]:8080").unwrap();
        assert_eq!((a.as_str(), p.as_str()), ("[::1]:8080", "/"));
        let (a, _, _) = split_url("http://[::1]/s").unwrap();
        assert_eq!(a, "[::1]:80");
        assert!(split_url("https://x/").is_err());
    }

    #[test]
    fn size_suffixes() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }
}
