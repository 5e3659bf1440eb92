//! `capbox signal <adapter>`: one line per second with lock, C/N,
//! strength, BER and the uncorrected-block delta, in 80 columns; the
//! technician's tool for pointing a dish. Ctrl-C stops it.
//!
//! The frontend is opened read-only, which the kernel allows next to the
//! tuning user (`capbox serve`); when it cannot be opened, or with
//! `--url`, the numbers come from the running daemon's /status instead.

use super::status::http_get;
use crate::dvb::frontend::Frontend;
use crate::source::dvb::{open_error_words, resolve_device};
use std::path::Path;
use std::time::Duration;

const HELP: &str = "\
usage: capbox signal <adapterN|stable name|adapter label> [--frontend N]
                     [--url http://127.0.0.1:8080] [--count N]

Prints one line per second: lock, C/N (dB), signal strength (dBm), bit
error ratio and uncorrected blocks since the previous line. Ctrl-C stops
and says how many lines were locked and the lowest and highest C/N.
Reads the frontend read-only (allowed while capbox serve tunes it); with
--url, or when the frontend cannot be opened, asks the running capbox.
";

/// One numbers sample, whatever the origin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub locked: bool,
    pub cnr_db: Option<f64>,
    pub signal_dbm: Option<f64>,
    pub ber: Option<f64>,
    pub ucb: Option<u64>,
}

/// One line, at most 80 columns: `hh:mm:ss LOCK  C/N 33.8 dB  …`.
pub fn line(clock: &str, s: &Sample, prev_ucb: Option<u64>) -> String {
    let opt = |v: Option<f64>, unit: &str| match v {
        Some(v) => format!("{v:.1} {unit}"),
        None => "n/a".to_string(),
    };
    let ber = match s.ber {
        Some(b) => format!("{b:.1e}"),
        None => "n/a".to_string(),
    };
    let ucb = match (s.ucb, prev_ucb) {
        (Some(now), Some(before)) => format!("+{}", now.saturating_sub(before)),
        (Some(_), None) => "+0".to_string(),
        _ => "n/a".to_string(),
    };
    let l = format!(
        "{clock:<8} {:<7} C/N {:<9} signal {:<11} BER {:<8} UCB {}",
        if s.locked { "LOCK" } else { "NO LOCK" },
        opt(s.cnr_db, "dB"),
        opt(s.signal_dbm, "dBm"),
        ber,
        ucb
    );
    l.chars().take(80).collect()
}

fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn from_frontend(fe: &Frontend) -> Result<Sample, String> {
    let st = fe.status().map_err(|e| e.to_string())?;
    let stats = fe.stats().ok();
    Ok(Sample {
        locked: st.has_lock(),
        cnr_db: stats.and_then(|s| s.cnr_db()),
        signal_dbm: stats.and_then(|s| s.signal_dbm()),
        ber: stats.and_then(|s| s.ber()),
        ucb: stats.and_then(|s| s.error_blocks()),
    })
}

/// The adapter's numbers from the daemon's /status (`adapters` array),
/// matched by label, device or resolved number.
fn from_daemon(url: &str, who: &str) -> Result<Sample, String> {
    let body = http_get(url, "/status", Duration::from_secs(3))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))?;
    let list = v["adapters"].as_array().cloned().unwrap_or_default();
    let a = list
        .iter()
        .find(|a| {
            a["name"] == who
                || a["device"] == who
                || a["number"]
                    .as_u64()
                    .is_some_and(|n| format!("adapter{n}") == who)
        })
        .ok_or_else(|| format!("the capbox at {url} has no adapter {who:?}"))?;
    Ok(Sample {
        locked: a["locked"].as_bool().unwrap_or(false),
        cnr_db: a["cnr_db"].as_f64(),
        signal_dbm: a["signal_dbm"].as_f64(),
        ber: a["ber"].as_f64(),
        ucb: a["ucb_total"].as_u64(),
    })
}

pub fn run(args: &[String]) -> i32 {
    let mut who = None;
    let mut url: Option<String> = None;
    let mut frontend = 0u32;
    let mut count: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => url = it.next().cloned(),
            "--frontend" => frontend = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--count" => count = it.next().and_then(|v| v.parse().ok()),
            s if s.starts_with('-') => {
                eprintln!("capbox signal: unknown option '{s}'\n\n{HELP}");
                return 2;
            }
            s => who = Some(s.to_string()),
        }
    }
    let Some(who) = who else {
        eprintln!("capbox signal: which adapter?\n\n{HELP}");
        return 2;
    };
    let mut fe = None;
    if url.is_none() {
        // An [[adapter]] name of the config ("ter1") is known to the running
        // capbox only: its number from there, then the frontend read-only.
        let number =
            resolve_device(&who).or_else(|e| daemon_number("http://127.0.0.1:8080", &who).ok_or(e));
        match number {
            Ok(n) => {
                let path = format!("/dev/dvb/adapter{n}/frontend{frontend}");
                let dev = format!("adapter{n}/frontend{frontend}");
                match Frontend::open_path(Path::new(&path), &dev, false) {
                    Ok(f) => fe = Some(f),
                    Err(e) => super::term::warn(&format!(
                        "capbox signal: {}; asking the running capbox instead",
                        open_error_words(&e)
                    )),
                }
            }
            Err(e) => super::term::warn(&format!(
                "capbox signal: {e}; asking the running capbox instead"
            )),
        }
    }
    let url = url.unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
    // Live (no --count): Ctrl-C ends the loop between two lines. With
    // --count (scripts, the VM rig calling `run`) the signals stay as they are.
    let stop = match count {
        Some(_) => None,
        None => match super::interrupt::Interrupt::catch() {
            Ok(s) => Some(s),
            Err(e) => {
                super::term::warn(&format!("capbox signal: {e}"));
                return 1;
            }
        },
    };
    let interrupted =
        |stop: &Option<super::interrupt::Interrupt>| stop.as_ref().is_some_and(|s| s.came());
    let term = super::term::Term::stdout();
    let origin = match &fe {
        Some(_) => format!("{who} (its frontend, read-only)"),
        None => format!("{who} (from the capbox at {url})"),
    };
    super::term::say(&match count {
        Some(n) => format!("{origin}: {n} lines, a second apart"),
        None => format!("{origin}: a line a second, Ctrl-C stops"),
    });
    if fe.is_none() {
        if let Some(why) = daemon_note(&url, &who) {
            super::term::say(&why);
        }
    }
    let mut prev = None;
    let mut sum = Summary::default();
    let start = std::time::Instant::now();
    loop {
        let sample = match &fe {
            Some(f) => from_frontend(f),
            None => from_daemon(&url, &who),
        };
        match sample {
            Ok(s) => {
                let l = term.render(&line(&clock(), &s, prev));
                {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(l.as_bytes());
                    let _ = out.flush();
                }
                prev = s.ucb;
                sum.add(&s);
            }
            Err(e) => {
                super::term::warn(&format!("capbox signal: {e}"));
                return 1;
            }
        }
        if count.is_some_and(|c| sum.lines >= c) {
            break;
        }
        // The next line on the next whole second since the start.
        let next = Duration::from_secs(sum.lines);
        let left = next.saturating_sub(start.elapsed());
        let stopped = match &stop {
            Some(s) => s.wait(left),
            None => {
                std::thread::sleep(left);
                false
            }
        };
        if stopped {
            break;
        }
    }
    if interrupted(&stop) {
        // The terminal echoed "^C" without a newline.
        println!();
    }
    if interrupted(&stop) || sum.lines > 1 {
        super::term::say(&sum.words());
    }
    0
}

/// The adapter number the running capbox has for `who` (its name in the
/// config, or its device), when it has one open.
fn daemon_number(url: &str, who: &str) -> Option<u32> {
    let body = http_get(url, "/status", Duration::from_secs(2)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["adapters"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == who || a["device"] == who)?["number"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// Why the daemon's numbers say nothing: the adapter's last error when it
/// is not locked (absent, not tuned). `None` when locked or unknown.
fn daemon_note(url: &str, who: &str) -> Option<String> {
    let body = http_get(url, "/status", Duration::from_secs(3)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let a = v["adapters"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == who || a["device"] == who)?
        .clone();
    if a["locked"] == true {
        return None;
    }
    a["last_error"]
        .as_str()
        .filter(|e| !e.is_empty())
        .map(|e| format!("not locked: {e}"))
}

/// What the lines said, for the line after Ctrl-C: the dish pointer's
/// "best C/N while I turned it".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub lines: u64,
    pub locked: u64,
    pub cnr_min: Option<f64>,
    pub cnr_max: Option<f64>,
}

impl Summary {
    pub fn add(&mut self, s: &Sample) {
        self.lines += 1;
        self.locked += u64::from(s.locked);
        if let Some(c) = s.cnr_db {
            self.cnr_min = Some(self.cnr_min.map_or(c, |m| m.min(c)));
            self.cnr_max = Some(self.cnr_max.map_or(c, |m| m.max(c)));
        }
    }

    pub fn words(&self) -> String {
        let cnr = match (self.cnr_min, self.cnr_max) {
            (Some(lo), Some(hi)) => format!(", C/N {lo:.1} to {hi:.1} dB"),
            _ => ", no C/N reported".to_string(),
        };
        format!(
            "stopped: {} lines, locked in {}{cnr}",
            self.lines, self.locked
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_line_fits_80_columns_and_shows_delta() {
        let s = Sample {
            locked: true,
            cnr_db: Some(33.84),
            signal_dbm: Some(-45.25),
            ber: Some(1.25e-5),
            ucb: Some(1_000_000_012),
        };
        let l = line("12:00:01", &s, Some(1_000_000_000));
        assert!(l.chars().count() <= 80, "{l}");
        assert!(
            l.contains("LOCK") && l.contains("33.8 dB") && l.contains("-45.2 dBm")
                || l.contains("-45.3 dBm"),
            "{l}"
        );
        assert!(l.ends_with("UCB +12"), "{l}");
        let l = line("12:00:02", &Sample::default(), None);
        assert!(l.contains("NO LOCK") && l.contains("C/N n/a"), "{l}");
        assert!(l.chars().count() <= 80, "{l}");
    }

    #[test]
    fn the_summary_after_ctrl_c_gives_the_c_n_range() {
        let mut s = Summary::default();
        s.add(&Sample::default());
        assert_eq!(s.words(), "stopped: 1 lines, locked in 0, no C/N reported");
        for c in [12.5, 14.25, 9.0] {
            s.add(&Sample {
                locked: true,
                cnr_db: Some(c),
                ..Sample::default()
            });
        }
        assert_eq!(
            s.words(),
            "stopped: 4 lines, locked in 3, C/N 9.0 to 14.2 dB"
        );
    }
}
