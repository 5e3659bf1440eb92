//! `capbox tune <adapter> <tune string> [--lnb universal] [--seconds N]`:
//! tunes once through the same `DvbSource` the daemon uses and prints the
//! lock, the statistics and the services found (PAT, names from the SDT).
//!
//! A frontend has one tuning user: when `capbox serve` (or anything else)
//! holds it, the kernel answers EBUSY and this says so in words; `--force`
//! cannot override the kernel, it only skips asking the daemon which
//! channels use the adapter.

use crate::config::parse_switch;
use crate::dvb::lnb::{Lnb, LnbSetup};
use crate::dvb::tuning::{PlsStyle, Tuning};
use crate::source::dvb::{DvbSource, DvbSourceConfig};
use crate::source::Source;
use crate::ts::services::Services;
use std::time::{Duration, Instant};

const HELP: &str = "\
usage: capbox tune <adapterN|stable name> <tune string> [--lnb TYPE]
                   [--switch SW] [--pls-style mainline|tbs] [--frontend N]
                   [--seconds N] [--url http://127.0.0.1:8080] [--force]

Tunes once and prints lock, statistics and the services of the mux (PAT and
SDT read for N seconds, default 5). Tune strings: `dvbt 474000000 8MHz`,
`dvbs2 11362000 V 22000000 8psk 3/4 --lnb universal`, `dvbc 474MHz 6900k
qam256`. Refused while another program (capbox serve) tunes the adapter.
";

pub fn run(args: &[String]) -> i32 {
    let mut words: Vec<String> = Vec::new();
    let mut lnb: Option<String> = None;
    let mut switch: Option<String> = None;
    let mut pls = PlsStyle::Mainline;
    let mut frontend = 0u32;
    let mut seconds = 5u64;
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut force = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Option<String> {
            let v = it.next().cloned();
            if v.is_none() {
                super::term::warn(&format!("capbox tune: {name} needs a value"));
            }
            v
        };
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--lnb" => match val("--lnb") {
                Some(v) => lnb = Some(v),
                None => return 2,
            },
            "--switch" => match val("--switch") {
                Some(v) => switch = Some(v),
                None => return 2,
            },
            "--pls-style" => match val("--pls-style").as_deref() {
                Some("mainline") => pls = PlsStyle::Mainline,
                Some("tbs") => pls = PlsStyle::Tbs,
                _ => {
                    super::term::warn("capbox tune: --pls-style is mainline or tbs");
                    return 2;
                }
            },
            "--frontend" => match val("--frontend").and_then(|v| v.parse().ok()) {
                Some(v) => frontend = v,
                None => return 2,
            },
            "--seconds" => match val("--seconds").and_then(|v| v.parse().ok()) {
                Some(v) if (1..=600).contains(&v) => seconds = v,
                _ => {
                    super::term::warn("capbox tune: --seconds is 1..=600");
                    return 2;
                }
            },
            "--url" => match val("--url") {
                Some(v) => url = v,
                None => return 2,
            },
            "--force" => force = true,
            _ => words.push(a.clone()),
        }
    }
    if words.len() < 2 {
        eprintln!("capbox tune: needs an adapter and a tune string\n\n{HELP}");
        return 2;
    }
    let who = words.remove(0);
    let tune_text = words.join(" ");
    let tuning = match Tuning::from_args(&tune_text) {
        Ok(t) => t,
        Err(e) => {
            super::term::warn(&format!("capbox tune: {tune_text:?}: {e}"));
            return 2;
        }
    };
    let setup = match lnb.as_deref().map(Lnb::from_name).transpose() {
        Ok(l) => l.map(LnbSetup::new),
        Err(e) => {
            super::term::warn(&format!("capbox tune: --lnb: {e}"));
            return 2;
        }
    };
    let setup = match (setup, switch) {
        (Some(mut s), Some(sw)) => match parse_switch(&sw) {
            Ok(sw) => {
                s.switch = sw;
                Some(s)
            }
            Err(e) => {
                super::term::warn(&format!("capbox tune: --switch: {e}"));
                return 2;
            }
        },
        (None, Some(_)) => {
            super::term::warn("capbox tune: --switch needs --lnb");
            return 2;
        }
        (s, None) => s,
    };
    let mut cfg = DvbSourceConfig::new(&who, &who, tuning);
    cfg.frontend = frontend;
    cfg.lnb = setup;
    cfg.pls_style = pls;
    let status = cfg.status.clone();
    let t0 = Instant::now();
    let mut src = match DvbSource::open(cfg) {
        Ok(s) => s,
        Err(e) => {
            let text = e.to_string();
            if text.contains("(EBUSY") {
                let chans = if force {
                    Vec::new()
                } else {
                    super::scan::daemon_channels_on(&url, &who, None)
                };
                if chans.is_empty() {
                    super::term::warn(&format!("capbox tune: {who} is busy: another program tunes it (capbox serve, dvbv5-zap?); stop it first"));
                } else {
                    super::term::warn(&format!(
                        "capbox tune: {}",
                        super::scan::busy_message_with_channels(&who, &chans)
                    ));
                }
            } else {
                super::term::warn(&format!("capbox tune: {text}"));
            }
            return 1;
        }
    };
    let lock_ms = t0.elapsed().as_millis();
    let mut services = Services::default();
    let mut buf = Vec::new();
    let mut packets = 0usize;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut error = None;
    while Instant::now() < end && !services.complete() {
        buf.clear();
        match src.read(&mut buf, Duration::from_millis(100)) {
            Ok(_) => {
                packets += buf.len() / 188;
                services.push(&buf);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let st = status.lock().map(|g| g.clone()).unwrap_or_default();
    // Service names come from the broadcast: through the terminal's filter.
    super::term::say(&format!(
        "{}: locked after {lock_ms} ms ({})",
        src.describe(),
        st.status
    ));
    let opt =
        |v: Option<f64>, unit: &str| v.map(|v| format!("{v:.1} {unit}")).unwrap_or("n/a".into());
    super::term::say(&format!(
        "C/N {}  signal {}  BER {}  UCB {}  packets {packets}  dvr overflows {}",
        opt(st.cnr_db, "dB"),
        opt(st.signal_dbm, "dBm"),
        st.ber.map(|b| format!("{b:.1e}")).unwrap_or("n/a".into()),
        st.ucb_total.map(|u| u.to_string()).unwrap_or("n/a".into()),
        st.dvr_overflows
    ));
    let list = services.list();
    if list.is_empty() {
        super::term::say(&format!("no PAT within {seconds} s"));
    } else {
        let mut table = format!("{:<8} {:<8} NAME\n", "PROGRAM", "PMT PID");
        for (prog, pid, name) in &list {
            table.push_str(&format!(
                "{:<8} {:<8} {}\n",
                format!("{prog:#06x}"),
                format!("{pid:#06x}"),
                name.as_deref().unwrap_or("(no SDT name)")
            ));
        }
        super::term::print(&table);
    }
    if let Some(e) = error {
        super::term::warn(&format!("capbox tune: {e}"));
        return 1;
    }
    i32::from(list.is_empty())
}
