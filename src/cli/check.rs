//! `capbox check <url>`: what a viewer of an HTTP MPEG-TS URL gets, on one
//! screen — time to first byte, zap time, video and audio codec and bit
//! rate, silent or the level, and a verdict (`monitor::check`).
//!
//! Promises: one check, bounded in time (timeout + listen) and memory; the
//! exit status says the verdict (documented in USAGE and the README).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::monitor::check::{check, fmt_dbfs, CheckConfig, CheckReport, CheckResult};

const USAGE: &str = "\
usage: capbox check <http://host[:port]/path> [--listen S] [--timeout S]
                    [--program N] [--json]

Check a stream the way a viewer gets it: connect, first byte, PAT, PMT,
the first picture a decoder can start on (zap time), then listen to the
program: video and audio present, codecs, bit rates, audio silent or its
level. Plain HTTP only (https is not supported).

  --listen S    watch the stream for S seconds (default 10, 1..=120)
  --timeout S   connect + first byte within S seconds (default 15, 1..=120)
  --program N   the program to watch (default: the first in the PAT, or
                the URL's #program=N, which is not sent to the server)
  --json        print a JSON document instead of text
  -h, --help    this text

Exit status: 0 ok, 10 no_video, 11 no_audio, 12 silent, 13 http_error
(refused, HTTP status, https), 14 timeout, 15 bad_stream (not MPEG-TS,
no PAT/PMT), 2 bad usage.";

#[derive(Debug)]
struct Opts {
    url: String,
    listen: u64,
    timeout: u64,
    program: Option<u16>,
    json: bool,
}

fn parse_args(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        url: String::new(),
        listen: 10,
        timeout: 15,
        program: None,
        json: false,
    };
    let mut it = args.iter();
    let secs = |flag: &str, v: Option<&String>| -> Result<u64, String> {
        let v = v.ok_or(format!("{flag} needs a number of seconds"))?;
        match v.parse::<u64>() {
            Ok(n) if (1..=120).contains(&n) => Ok(n),
            _ => Err(format!(
                "{flag} {v:?}: expected whole seconds from 1 to 120"
            )),
        }
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => o.json = true,
            "--listen" => o.listen = secs("--listen", it.next())?,
            "--timeout" => o.timeout = secs("--timeout", it.next())?,
            "--program" => {
                let v = it.next().ok_or("--program needs a program number")?;
                o.program = Some(match v.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--program {v:?}: expected 1 to 65535")),
                });
            }
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            u if o.url.is_empty() => o.url = u.to_string(),
            u => return Err(format!("more than one URL given ('{u}' is the second)")),
        }
    }
    if o.url.is_empty() {
        return Err("no URL given".into());
    }
    Ok(Some(o))
}

/// Entry point: `args` are the words after `check`. Returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let o = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("capbox check: {e}");
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let mut cfg = CheckConfig::new(o.url.clone());
    cfg.listen = Duration::from_secs(o.listen);
    cfg.timeout = Duration::from_secs(o.timeout);
    cfg.program = o.program;
    let stop = AtomicBool::new(false);
    let r = check(&cfg, &|| {}, &stop);
    if o.json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("capbox check: {e}");
                return 1;
            }
        }
    } else {
        super::term::print(&render(&r));
        if let Some(e) = &r.error {
            super::term::say(&format!("why          {e}"));
        }
    }
    r.result.exit_code()
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) if s < 0.01 => format!("{:.1} ms", s * 1000.0),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => "-".into(),
    }
}

fn rate(bps: u64) -> String {
    if bps >= 1_000_000 {
        format!("{:.2} Mbit/s", bps as f64 / 1e6)
    } else {
        format!("{} kbit/s", bps / 1000)
    }
}

/// The text screen (80 columns).
pub fn render(r: &CheckReport) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<13}{v}\n"));
    line("URL", r.url.clone());
    line("connect", secs(r.connect_s));
    line("first byte", secs(r.ttfb_s));
    if let Some(p) = r.program {
        line(
            "program",
            format!(
                "{p} (PMT PID {})",
                r.pmt_pid.map_or("-".into(), |p| p.to_string())
            ),
        );
    }
    if r.body_bytes > 0 {
        line(
            "zap time",
            match r.zap_s {
                Some(z) => format!(
                    "{} (request to the first picture a decoder can start on)",
                    secs(Some(z))
                ),
                None => "- (no picture a decoder can start on)".into(),
            },
        );
    }
    if let Some(v) = &r.video {
        line(
            "video",
            format!(
                "PID {} {}, {}{}",
                v.pid,
                v.codec,
                rate(v.bitrate_bps),
                if v.present { "" } else { ", NOT FLOWING" }
            ),
        );
    } else if r.program.is_some() {
        line("video", "none".into());
    }
    for a in &r.audio {
        let level = match a.silent {
            Some(true) => "silent".to_string(),
            // AAC is read for digital silence only (monitor::es::audio).
            Some(false) if a.codec == "aac" => "sound".to_string(),
            Some(false) => format!("peak {}", fmt_dbfs(a.level_dbfs)),
            None => "level not measured".into(),
        };
        line(
            "audio",
            format!(
                "PID {} {}, {}, {level}{}",
                a.pid,
                a.codec,
                rate(a.bitrate_bps),
                if a.present { "" } else { ", NOT FLOWING" }
            ),
        );
    }
    if r.program.is_some() && r.audio.is_empty() {
        line("audio", "none".into());
    }
    if r.body_bytes > 0 {
        line(
            "listened",
            format!("{:.1} s of stream, {} bytes", r.listened_s, r.body_bytes),
        );
    }
    let verdict = match r.result {
        CheckResult::Ok => "OK".to_string(),
        other => other.as_str().to_ascii_uppercase(),
    };
    line("verdict", verdict);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_checked_in_words() {
        let o = parse_args(&a(&["http://h/x", "--listen", "3", "--json"]))
            .unwrap()
            .unwrap();
        assert_eq!((o.listen, o.timeout, o.json), (3, 15, true));
        assert!(parse_args(&a(&["--listen", "0", "http://h/x"]))
            .unwrap_err()
            .contains("1 to 120"));
        assert!(parse_args(&a(&[])).unwrap_err().contains("no URL"));
        assert!(parse_args(&a(&["http://a", "http://b"]))
            .unwrap_err()
            .contains("second"));
    }

    #[test]
    fn exit_codes_are_distinct_and_ok_is_zero() {
        let mut codes: Vec<i32> = CheckResult::ALL.iter().map(|r| r.exit_code()).collect();
        assert_eq!(codes[0], 0);
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CheckResult::ALL.len());
        assert!(!codes.contains(&2), "2 is bad usage");
    }
}
