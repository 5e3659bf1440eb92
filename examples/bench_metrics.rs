//! Cost of writing `/metrics` for 200 channels with `monitor::metrics`, next
//! to the `writeln!` + per-label `replace` style it replaced, for scale.
//!
//! Usage: bench_metrics [--channels N] [--runs R]
//!
//! The document: 45 counter families with a `channel` label plus one with
//! `channel` and `reason` (6 reasons), channel names with a quote to escape
//! — the shape of capbox's channel families. Prints `RESULT` lines with the
//! median milliseconds per scrape. The same scene against prometheus-client
//! 0.22 (a registry of `Family<labels, Gauge>` set from the status, then
//! `encode`) was measured once for the choice: capbox 0.40 ms, prometheus-
//! client 1.31 ms (0.72 setting values, 0.58 encoding) on the dev VM.
//! Nothing here is a test: it asserts nothing about time.

use capbox::monitor::metrics::{family, Kind};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

const FAMILIES: usize = 45;
const REASONS: [&str; 6] = [
    "wrong_key",
    "stale_key",
    "no_key",
    "pes_scrambled",
    "reserved",
    "malformed",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn value(c: usize, f: usize) -> u64 {
    (c * 7919 + f * 104_729) as u64
}

fn with_encoder(names: &[String], fams: &[String]) -> String {
    let mut m = String::with_capacity(4096);
    for (fi, f) in fams.iter().enumerate() {
        let mut fam = family(&mut m, f, Kind::Counter, "Help text of the family.");
        for (c, n) in names.iter().enumerate() {
            fam.sample(&[("channel", n)], value(c, fi));
        }
    }
    let mut fam = family(
        &mut m,
        "capbox_channel_undecryptable_packets_total",
        Kind::Counter,
        "By reason.",
    );
    for (c, n) in names.iter().enumerate() {
        for (r, reason) in REASONS.iter().enumerate() {
            fam.sample(&[("channel", n), ("reason", reason)], value(c, r));
        }
    }
    m
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn with_writeln(names: &[String], fams: &[String]) -> String {
    let mut m = String::with_capacity(4096);
    let labels: Vec<String> = names.iter().map(|n| esc(n)).collect();
    for (fi, name) in fams.iter().enumerate() {
        let _ = writeln!(
            m,
            "# HELP {name} Help text of the family.\n# TYPE {name} counter"
        );
        for (c, l) in labels.iter().enumerate() {
            let _ = writeln!(m, "{name}{{channel=\"{l}\"}} {}", value(c, fi));
        }
    }
    let _ = writeln!(
        m,
        "# HELP capbox_channel_undecryptable_packets_total By reason.\n# TYPE capbox_channel_undecryptable_packets_total counter"
    );
    for (c, l) in labels.iter().enumerate() {
        for (r, reason) in REASONS.iter().enumerate() {
            let _ = writeln!(
                m,
                "capbox_channel_undecryptable_packets_total{{channel=\"{l}\",reason=\"{reason}\"}} {}",
                value(c, r)
            );
        }
    }
    m
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (channels, runs) = (arg("--channels", 200), arg("--runs", 30).max(1));
    let names: Vec<String> = (0..channels)
        .map(|i| format!("Channel \"{i}\" HD"))
        .collect();
    let fams: Vec<String> = (0..FAMILIES)
        .map(|f| format!("capbox_channel_f{f}_total"))
        .collect();
    assert_eq!(with_encoder(&names, &fams), with_writeln(&names, &fams));
    for (label, f) in [
        (
            "monitor::metrics",
            with_encoder as fn(&[String], &[String]) -> String,
        ),
        ("writeln", with_writeln),
    ] {
        let mut t = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs {
            let t0 = Instant::now();
            let m = black_box(f(&names, &fams));
            t.push(t0.elapsed().as_secs_f64() * 1e3);
            bytes = m.len();
        }
        println!(
            "RESULT encoder={label} channels={channels} samples={} bytes={bytes} ms={:.3}",
            channels * (FAMILIES + REASONS.len()),
            median(t)
        );
    }
}
