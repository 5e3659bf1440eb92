//! `capbox scan`: tunes every entry of an initial tuning file (dtv-scan-tables
//! format) on one adapter, follows NIT actual to other muxes, and writes a
//! dvbv5 channel file plus a capbox channel list. One progress line per mux,
//! in 80 columns.
//!
//! An adapter held by another process (EBUSY on the frontend or dvr: usually
//! `capbox serve`) is refused in words naming the reason and, when the
//! running capbox answers on `--url`, the channels that would drop; unless
//! `--force`, which retries the open for a few seconds instead of giving up
//! at once.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::dvb::adapter;
use crate::dvb::channels;
use crate::dvb::lnb::{Lnb, LnbSetup};
use crate::dvb::scan::{self, DvbTuner, MuxOutcome, Progress, ScanOptions, ScanResult};
use crate::dvb::tuning::{PlsStyle, Tuning};
use crate::dvb::DvbError;

const HELP: &str = "\
usage: capbox scan <adapterN|stable-name> <initial-file> [options]

Tunes each mux of a dtv-scan-tables initial file (e.g.
/usr/share/dvb/dvb-t/de-Berlin), follows the NIT to other muxes, reads
PAT/PMT/SDT and writes what it found.

options:
  --lnb NAME          LNB for satellite (universal, circular, c-band,
                      single:<LOF MHz>, <low>,<high>,<switch>)
  --out FILE          dvbv5 channel file (default: printed on stdout)
  --config-out FILE   capbox [[channel]] list for the config
  --timeout-ms N      lock timeout per mux (default 2000)
  --read-ms N         longest read per locked mux (default 5000)
  --no-nit            do not follow the NIT to other muxes
  --pls-style tbs     TBS drivers' packed DTV_STREAM_ID (default mainline)
  --force             try even if the adapter is in use
  --url URL           the running capbox, asked which channels use the
                      adapter (default http://127.0.0.1:8080)
";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub adapter: String,
    pub initial: PathBuf,
    pub lnb: Option<String>,
    pub out: Option<PathBuf>,
    pub config_out: Option<PathBuf>,
    pub timeout_ms: u64,
    pub read_ms: u64,
    pub follow_nit: bool,
    pub pls_style: PlsStyle,
    pub force: bool,
    pub url: String,
}

pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut pos = Vec::new();
    let mut a = Args {
        adapter: String::new(),
        initial: PathBuf::new(),
        lnb: None,
        out: None,
        config_out: None,
        timeout_ms: 2000,
        read_ms: 5000,
        follow_nit: true,
        pls_style: PlsStyle::Mainline,
        force: false,
        url: DEFAULT_URL.to_string(),
    };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let num = |name: &str, v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=600_000).contains(n))
                .ok_or_else(|| format!("{name}: {v:?} is not a number of ms (1..600000)"))
        };
        match x.as_str() {
            "--lnb" => a.lnb = Some(val("--lnb")?),
            "--out" | "-o" => a.out = Some(val("--out")?.into()),
            "--config-out" => a.config_out = Some(val("--config-out")?.into()),
            "--timeout-ms" => a.timeout_ms = num("--timeout-ms", val("--timeout-ms")?)?,
            "--read-ms" => a.read_ms = num("--read-ms", val("--read-ms")?)?,
            "--no-nit" => a.follow_nit = false,
            "--force" => a.force = true,
            "--url" => a.url = val("--url")?,
            "--pls-style" => {
                a.pls_style = match val("--pls-style")?.to_ascii_lowercase().as_str() {
                    "tbs" => PlsStyle::Tbs,
                    "mainline" => PlsStyle::Mainline,
                    o => return Err(format!("--pls-style: {o:?} is not tbs or mainline")),
                }
            }
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            s => pos.push(s.to_string()),
        }
    }
    match pos.as_slice() {
        [ad, init] => {
            a.adapter = ad.clone();
            a.initial = init.into();
            Ok(a)
        }
        _ => Err("needs an adapter and an initial tuning file".into()),
    }
}

/// The adapter number for `adapterN`, a bare number, or a stable name
/// (`Adapter::stable_name`, e.g. `usb-734c:5980-0000001`) found in sysfs.
pub fn resolve_adapter(name: &str, adapters: &[adapter::Adapter]) -> Result<u32, String> {
    let n = name.strip_prefix("/dev/dvb/").unwrap_or(name);
    if let Ok(num) = n.strip_prefix("adapter").unwrap_or(n).parse::<u32>() {
        return Ok(num);
    }
    if let Some(a) = adapters.iter().find(|a| a.stable_name() == name) {
        return Ok(a.number);
    }
    let known: Vec<String> = adapters
        .iter()
        .map(|a| format!("adapter{} = {}", a.number, a.stable_name()))
        .collect();
    Err(format!(
        "no adapter named {name:?} (present: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// Where `capbox serve` answers by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The refusal for a device in use: "adapter0 is in use (capbox serve?);
/// use --force". `None` when the error is not EBUSY.
pub fn busy_message(adapter: u32, e: &DvbError) -> Option<String> {
    (e.errno == libc::EBUSY).then(|| {
        format!(
            "adapter{adapter} is in use ({} busy; capbox serve?); use --force",
            e.device
        )
    })
}

/// The refusal when the running capbox says which channels use the
/// adapter: they are named, since they would drop.
pub fn busy_message_with_channels(who: &str, channels: &[String]) -> String {
    format!(
        "{who} is in use by capbox serve for channel(s) {}; they would drop. \
         Stop serve or move them to another adapter first (--force tries anyway)",
        channels.join(", ")
    )
}

/// The channels in a `/status` document (`capbox serve`'s JSON) whose
/// source is on adapter `who` (its `[[adapter]]` name, configured device,
/// stable name or `adapterN`; `number` when known). A channel's `source`
/// reads "adapter <name> <mux>" (the runner's key) or "<name> (adapterN)
/// …" (an error from the adapter).
pub fn channels_on(status_json: &str, who: &str, number: Option<u32>) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(status_json) else {
        return Vec::new();
    };
    let empty = Vec::new();
    let labels: Vec<&str> = v["adapters"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|a| {
            let n = a["number"].as_u64();
            a["device"] == who
                || a["name"] == who
                || n.is_some_and(|n| format!("adapter{n}") == who)
                || (n.is_some() && n == number.map(u64::from))
        })
        .filter_map(|a| a["name"].as_str())
        .collect();
    let mut out: Vec<String> = v["channels"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|c| {
            // The channel's source on air, and every source of a failover
            // channel ("ter1 dvbt 474000000 …"): a channel whose backup is
            // on the adapter drops to its other source, it still loses one.
            let on_air = c["source"].as_str().unwrap_or("");
            let sources = c["sources"].as_array();
            let mut all = std::iter::once(on_air).chain(
                sources
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["source"].as_str()),
            );
            all.any(|src| {
                labels.iter().any(|l| {
                    src.starts_with(&format!("adapter {l} ")) || src.starts_with(&format!("{l} "))
                })
            })
        })
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// [`channels_on`] asking the capbox at `url`; empty when it does not
/// answer.
pub fn daemon_channels_on(url: &str, who: &str, number: Option<u32>) -> Vec<String> {
    match super::status::http_get(url, "/status", Duration::from_secs(2)) {
        Ok(body) => channels_on(&body, who, number),
        Err(_) => Vec::new(),
    }
}

/// Open the adapter's tuner; with `force`, keep trying an EBUSY open for
/// 3 s (the other user may be about to let go).
fn open_tuner(a: &Args, num: u32, lnb: Option<LnbSetup>) -> Result<DvbTuner, String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match DvbTuner::open(num, lnb.clone(), a.pls_style) {
            Ok(t) => return Ok(t),
            Err(e) => match busy_message(num, &e) {
                Some(msg) if !a.force => {
                    let chans = daemon_channels_on(&a.url, &a.adapter, Some(num));
                    return Err(if chans.is_empty() {
                        msg
                    } else {
                        busy_message_with_channels(&a.adapter, &chans)
                    });
                }
                Some(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
                _ => return Err(e.to_string()),
            },
        }
    }
}

/// Initial tunings of a file; entries of systems capbox does not tune are
/// skipped with a note on `log`.
pub fn read_initial(path: &std::path::Path, log: &mut dyn Write) -> Result<Vec<Tuning>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (entries, errors) = channels::parse_lenient(&path.display().to_string(), &bytes);
    for e in &errors {
        if e.is_unsupported_system() {
            let _ = writeln!(log, "skipped: {e}");
        } else {
            return Err(e.to_string());
        }
    }
    if entries.is_empty() {
        return Err(format!("{}: no tuning entries", path.display()));
    }
    Ok(entries.into_iter().map(|e| e.tuning).collect())
}

/// The whole scan with progress lines on `log`; writes the files. The VM
/// rig calls this directly.
pub fn scan_to_files(a: &Args, log: &mut dyn Write) -> Result<ScanResult, String> {
    let lnb = match &a.lnb {
        Some(n) => Some(LnbSetup::new(Lnb::from_name(n).map_err(|e| e.to_string())?)),
        None => None,
    };
    let initial = read_initial(&a.initial, log)?;
    let num = resolve_adapter(&a.adapter, &adapter::discover().adapters)?;
    let mut tuner = open_tuner(a, num, lnb)?;
    let opts = ScanOptions {
        lock_timeout: Duration::from_millis(a.timeout_ms),
        read_time: Duration::from_millis(a.read_ms),
        follow_nit: a.follow_nit,
    };
    let r = scan::scan(&mut tuner, &initial, &opts, |p| {
        if let Progress::Done { n, total, report } = p {
            let _ = writeln!(log, "{}", scan::progress_line(n, total, report));
            if let MuxOutcome::Locked { .. } = report.outcome {
                for s in &report.services {
                    let line = format!(
                        "  {:#06x} {:<24} {:?} audio {:x?}",
                        s.service_id,
                        s.name.as_deref().unwrap_or("?"),
                        s.video_pids(),
                        s.audio_pids()
                    );
                    let _ = writeln!(log, "{}", line.chars().take(80).collect::<String>());
                }
            }
        }
    });
    let entries = r.channel_entries(a.lnb.as_deref());
    let text = channels::write(&entries);
    match &a.out {
        Some(p) => std::fs::write(p, &text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => print!("{text}"),
    }
    if let Some(p) = &a.config_out {
        let snippet = channels::capbox_config_snippet(&entries);
        std::fs::write(p, snippet).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let locked = r
        .muxes
        .iter()
        .filter(|m| matches!(m.outcome, MuxOutcome::Locked { .. }))
        .count();
    let _ = writeln!(
        log,
        "{} of {} muxes locked, {} services",
        locked,
        r.muxes.len(),
        entries.len()
    );
    Ok(r)
}

pub fn run(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return 0;
    }
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capbox scan: {e}\n\n{HELP}");
            return 2;
        }
    };
    let mut err = super::term::LineWriter::new(std::io::stderr(), super::term::Term::stderr());
    match scan_to_files(&a, &mut err) {
        Ok(r) if r.muxes.iter().any(|m| !m.services.is_empty()) => 0,
        Ok(_) => {
            super::term::warn("capbox scan: no services found");
            1
        }
        Err(e) => {
            drop(err);
            super::term::warn(&format!("capbox scan: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&s(&[
            "adapter1",
            "/usr/share/dvb/dvb-t/de-Berlin",
            "--lnb",
            "universal",
            "--timeout-ms",
            "3000",
            "--out",
            "c.conf",
            "--force",
        ]))
        .unwrap();
        assert_eq!(a.adapter, "adapter1");
        assert_eq!(a.timeout_ms, 3000);
        assert_eq!(a.lnb.as_deref(), Some("universal"));
        assert!(a.force && a.follow_nit);
        assert_eq!(a.url, DEFAULT_URL);
        assert!(parse_args(&s(&["adapter0"])).is_err());
        assert!(parse_args(&s(&["a", "b", "--timeout-ms", "x"])).is_err());
        assert!(parse_args(&s(&["a", "b", "--bogus"])).is_err());
    }

    #[test]
    fn adapter_names() {
        assert_eq!(resolve_adapter("adapter3", &[]), Ok(3));
        assert_eq!(resolve_adapter("/dev/dvb/adapter2", &[]), Ok(2));
        let e = resolve_adapter("usb-734c:5980-X", &[]).unwrap_err();
        assert!(e.contains("no adapter named") && e.contains("none"), "{e}");
    }

    #[test]
    fn busy_words() {
        let e = DvbError::new("adapter0/frontend0", "open", nix::errno::Errno::EBUSY);
        let m = busy_message(0, &e).unwrap();
        assert!(m.starts_with("adapter0 is in use ("), "{m}");
        assert!(m.contains("capbox serve") && m.ends_with("use --force"));
        let e = DvbError::new("adapter0/frontend0", "open", nix::errno::Errno::ENOENT);
        assert_eq!(busy_message(0, &e), None);
    }

    #[test]
    fn initial_file_from_dtv_scan_tables_shape() {
        let dir = std::env::temp_dir().join(format!("capbox-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("init");
        std::fs::write(
            &p,
            "[CHANNEL]\n\tDELIVERY_SYSTEM = DVBT\n\tFREQUENCY = 474000000\n\tBANDWIDTH_HZ = 8000000\n\n\
             [CHANNEL]\n\tDELIVERY_SYSTEM = ATSC\n\tFREQUENCY = 57028615\n\tMODULATION = VSB/8\n",
        )
        .unwrap();
        let mut log = Vec::new();
        let t = read_initial(&p, &mut log).unwrap();
        assert_eq!(t, [Tuning::from_args("dvbt 474000000 8MHz").unwrap()]);
        assert!(String::from_utf8(log).unwrap().starts_with("skipped: "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn busy_refusal_names_the_channels_on_that_adapter() {
        // The shape of `capbox serve`'s /status (daemon.rs): a channel's
        // source is the runner's key "adapter <name> <mux>", or an error
        // from the adapter "<name> (adapterN): …" while it is down.
        let status = r#"{"adapters":[
            {"name":"ter1","device":"usb-734c:5980-0001","number":0,"locked":true},
            {"name":"ter2","device":"adapter1","number":null,"locked":false}],
          "channels":[
            {"name":"beethoven","source":"adapter ter1 dvbt 474000000 8MHz"},
            {"name":"mozart","source":"ter1 (adapter0): lost lock on dvbt 474000000"},
            {"name":"news","source":"adapter ter2 dvbt 522000000 8MHz"},
            {"name":"ter1x","source":"adapter ter10 dvbt 1"},
            {"name":"file","source":"file samples/mux.ts"},
            {"name":"zappa","source":"file /srv/backup.ts","sources":[
                {"source":"ter1 dvbt 474000000 8000000 modulation=qam/auto"},
                {"source":"file /srv/backup.ts"}]}]}"#;
        let want = vec![
            "beethoven".to_string(),
            "mozart".to_string(),
            "zappa".to_string(),
        ];
        assert_eq!(channels_on(status, "ter1", None), want);
        assert_eq!(channels_on(status, "usb-734c:5980-0001", None), want);
        assert_eq!(channels_on(status, "adapter0", None), want);
        // `capbox scan 0 …` resolves to adapter 0 before asking.
        assert_eq!(channels_on(status, "0", Some(0)), want);
        assert_eq!(
            channels_on(status, "adapter1", None),
            vec!["news".to_string()]
        );
        assert!(channels_on(status, "adapter5", Some(5)).is_empty());
        assert!(channels_on("not json", "ter1", None).is_empty());
        let m = busy_message_with_channels("ter1", &want);
        assert!(
            m.starts_with(
                "ter1 is in use by capbox serve for channel(s) beethoven, mozart, zappa; they would drop."
            ),
            "{m}"
        );
    }

    #[test]
    fn busy_refusal_asks_the_daemon_over_http() {
        use std::io::{Read, Write};
        // A one-shot server standing in for capbox serve.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            // The head may come in several segments: read all of it.
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut b).unwrap();
                assert!(n > 0, "client closed before the end of its request");
                req.extend_from_slice(&b[..n]);
            }
            assert!(String::from_utf8_lossy(&req).starts_with("GET /status "));
            let body = r#"{"adapters":[{"name":"sat1","device":"adapter3","number":3}],"channels":[{"name":"arte","source":"adapter sat1 dvbs2 11362000 V 22000000"}]}"#;
            write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        assert_eq!(
            daemon_channels_on(&url, "adapter3", Some(3)),
            vec!["arte".to_string()]
        );
        t.join().unwrap();
        // Nobody there: no names, no error.
        assert!(daemon_channels_on("http://127.0.0.1:9", "adapter3", Some(3)).is_empty());
    }
}
