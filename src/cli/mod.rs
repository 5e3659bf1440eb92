//! Subcommands: serve, demo, check-config, probe, check, status, epg, logs, pin,
//! adapters, cards, tune, signal, scan, slate, usb-reset, update.
//! `main.rs` only calls `main()`. Output for the console fits 80 columns
//! (the terminal's width when known) and is plain ASCII without colour on
//! a terminal that says no more (`term`).

pub mod adapters;
pub mod cards;
pub mod check;
pub mod epg;
pub mod interrupt;
pub mod log;
pub mod logs;
pub mod pin;
pub mod probe;
pub mod scan;
pub mod signal;
pub mod slate;
pub mod status;
pub mod term;
pub mod tune;
pub mod update;
pub mod usb_reset;

use crate::config::{self, Config};
use crate::daemon::{check_sources, check_tcp, Daemon};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const USAGE: &str = "\
capbox - the userland of a DVB capture box

usage: capbox <command> [options]

commands:
  serve         run the box: channels from the config, served over HTTP
  demo          serve the bundled sample channels on localhost
  check-config  validate a config file without serving
  probe         show programs, services and PIDs of a TS file or URL
  check         what a viewer of an http:// URL gets: first byte, zap time,
                video, audio, silence, a verdict (exit 0 when ok)
  status        the running capbox on one screen: adapters, channels, cards,
                watchdog, last events (--all: everything)
  epg           the next programmes of a channel's guide (--audience, --tz)
  logs          the last warnings and errors in plain words (-f follows)
  pin           keep a channel on one source by hand (or back to auto)
  adapters      list DVB adapters and their stable names
  cards         smart card readers and cards (ATR, CA system, ECMs)
  tune          tune an adapter once: lock, signal, services
  signal        lock, C/N, strength, BER once a second (dish pointing)
  scan          scan an adapter from an initial tuning file, follow NIT
  slate         make a slate in a channel's format with ffmpeg (workstation)
  usb-reset     reset the USB device of a tuner by hand (authorized 0/1, port reset)
  update        install a signed update bundle into the other slot and reboot
                into it (--status: versions, slots, the last update)

`capbox <command> --help` shows each command's options.
";

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    log::init();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return 2;
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "serve" => serve(rest),
        "demo" => demo(rest),
        "check-config" => check_config(rest),
        "status" => status::run(rest),
        "epg" => epg::run(rest),
        "pin" => pin::run(rest),
        "cards" => cards::run(rest),
        "logs" => logs::run(rest),
        "probe" => probe::run(rest),
        "check" => check::run(rest),
        "scan" => scan::run(rest),
        "adapters" => adapters::run(rest),
        "tune" => tune::run(rest),
        "signal" => signal::run(rest),
        "slate" => slate::run(rest),
        "usb-reset" => usb_reset::run(rest),
        "update" => update::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            0
        }
        "-V" | "--version" => {
            println!("capbox {}", env!("CARGO_PKG_VERSION"));
            0
        }
        other => {
            eprintln!("capbox: unknown command '{other}'\n\n{USAGE}");
            2
        }
    }
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// `--config PATH` (or `-c PATH`, or the path alone: `capbox serve
/// FILE`), default /etc/capbox/capbox.toml.
fn config_path(args: &[String]) -> Result<PathBuf, String> {
    let mut it = args.iter();
    let mut path: Option<PathBuf> = None;
    let mut set = |p: &str| match path.replace(PathBuf::from(p)) {
        None => Ok(()),
        Some(_) => Err(format!(
            "more than one config path given ('{p}' is the second)"
        )),
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => match it.next() {
                Some(p) => set(p)?,
                None => return Err("--config needs a path".into()),
            },
            s if s.starts_with("--config=") => set(&s["--config=".len()..])?,
            s if s.starts_with('-') => return Err(format!("unknown option '{s}'")),
            p => set(p)?,
        }
    }
    Ok(path.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH)))
}

fn load(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => {
            if let Some(w) = secrets_warning(path, &c) {
                ::log::warn!("{w}");
                eprintln!("capbox: warning: {w}");
            }
            Some(c)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("capbox: {} error(s) in {}", diags.len(), path.display());
            None
        }
    }
}

/// A config holding secrets (BISS keys, the access token) must not be
/// readable by every user: a BISS key is the whole secret of its service,
/// the token the whole protection of the streams. Checked at start and at
/// every reload. Says what is there, never the values.
fn secrets_warning(path: &Path, c: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let sources = c.channels.iter().flat_map(|ch| &ch.sources);
    let biss = sources.filter(|s| s.biss.is_some()).count();
    let mut held = Vec::new();
    if biss > 0 {
        held.push(format!("{biss} BISS key(s)"));
    }
    if c.access.token.is_some() {
        held.push("the [access] token".to_string());
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (!held.is_empty() && mode & 0o004 != 0).then(|| {
        format!(
            "{}: holds {} and every user may read it (mode {:o}); \
             chown root:capbox and chmod 0640 (0600 when capbox runs as root)",
            path.display(),
            held.join(" and "),
            mode & 0o777
        )
    })
}

const CHECK_HELP: &str = "\
usage: capbox check-config [[--config] PATH]

Validates the config (default /etc/capbox/capbox.toml), the sources it
names (files exist, are MPEG-TS, carry the programs) and the [server] TCP
settings (this kernel has the congestion control and lets this user set it
and the send buffer: run it as the user capbox serve runs as). One line per
problem as `file:line: key: message`; exit status 0 when valid, 1 when not.
";

fn check_config(args: &[String]) -> i32 {
    if wants_help(args) {
        print!("{CHECK_HELP}");
        return 0;
    }
    let path = match config_path(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capbox check-config: {e}\n\n{CHECK_HELP}");
            return 2;
        }
    };
    let Some(cfg) = load(&path) else { return 1 };
    let mut diags = check_tcp(&cfg);
    diags.extend(check_sources(&cfg));
    for d in &diags {
        eprintln!("{d}");
    }
    if diags.is_empty() {
        println!("{}: ok, {} channel(s)", path.display(), cfg.channels.len());
        0
    } else {
        eprintln!("capbox: {} error(s) in {}", diags.len(), path.display());
        1
    }
}

const SERVE_HELP: &str = "\
usage: capbox serve [[--config] PATH]

Runs the box: every channel of the config (default /etc/capbox/capbox.toml)
is served at /stream/<name>. Logs go to stderr, one line per event
(CAPBOX_LOG=debug for more). SIGHUP reloads the config, touching only the
channels that changed; SIGINT or SIGTERM stops.
";

fn serve(args: &[String]) -> i32 {
    if wants_help(args) {
        print!("{SERVE_HELP}");
        return 0;
    }
    let path = match config_path(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capbox serve: {e}\n\n{SERVE_HELP}");
            return 2;
        }
    };
    let Some(cfg) = load(&path) else { return 1 };
    run_daemon(cfg, Some(path))
}

const DEMO_HELP: &str = "\
usage: capbox demo [--listen ADDR] [--samples DIR]

Serves the three sample channels of samples/mux.ts (news, sport, music) on
127.0.0.1:8080 until Ctrl-C, and prints how to watch them.
";

fn demo(args: &[String]) -> i32 {
    if wants_help(args) {
        print!("{DEMO_HELP}");
        return 0;
    }
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut samples: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => match it.next().map(|s| s.parse()) {
                Some(Ok(a)) => listen = a,
                _ => {
                    eprintln!("capbox demo: --listen needs an address like 127.0.0.1:8080");
                    return 2;
                }
            },
            "--samples" => match it.next() {
                Some(p) => samples = Some(PathBuf::from(p)),
                None => {
                    eprintln!("capbox demo: --samples needs a directory");
                    return 2;
                }
            },
            other => {
                eprintln!("capbox demo: unknown option '{other}'\n\n{DEMO_HELP}");
                return 2;
            }
        }
    }
    let samples = samples.or_else(find_samples);
    let Some(samples) = samples else {
        eprintln!("capbox demo: cannot find samples/mux.ts (run from the source tree or pass --samples DIR)");
        return 1;
    };
    let cfg = config::demo_config(&samples, listen);
    run_daemon(cfg, None)
}

/// samples/ beside the binary's source tree or the current directory.
fn find_samples() -> Option<PathBuf> {
    let mut cands = vec![
        PathBuf::from("samples"),
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/samples")),
    ];
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            cands.push(anc.join("samples"));
        }
    }
    cands.into_iter().find(|p| p.join("mux.ts").is_file())
}

fn run_daemon(cfg: Config, path: Option<PathBuf>) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    // Block the signals in every thread; this one waits for them.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    if let Err(e) = set.thread_block() {
        eprintln!("capbox: cannot block signals: {e}");
        return 1;
    }
    let demo = path.is_none();
    // `capbox serve` arms the watchdog it is configured with; the demo never.
    let mut d = match Daemon::start_supervised(cfg, true, !demo) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("capbox: cannot start the HTTP server: {e}");
            return 1;
        }
    };
    d.ready();
    if demo {
        if let Some(addr) = d.local_addr() {
            println!("capbox demo: serving 3 channels on http://{addr}/");
            println!("  playlist:  http://{addr}/playlist.m3u");
            println!("  watch:     ffplay http://{addr}/stream/news");
            println!("         or  vlc http://{addr}/playlist.m3u");
            println!("  status:    capbox status --url http://{addr}");
            println!("  metrics:   curl http://{addr}/metrics");
            println!("Ctrl-C stops.");
        }
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGHUP) => match &path {
                Some(p) => {
                    ::log::info!("SIGHUP: reloading {}", p.display());
                    match config::load(p) {
                        Ok(c) => {
                            if let Some(w) = secrets_warning(p, &c) {
                                ::log::warn!("{w}");
                            }
                            d.reload(c)
                        }
                        Err(diags) => {
                            for diag in diags {
                                ::log::error!("reload refused: {diag}");
                            }
                            ::log::error!("reload refused: keeping the running config");
                        }
                    }
                }
                None => ::log::info!("SIGHUP: the demo has no config file to reload"),
            },
            Ok(sig) => {
                ::log::info!("{sig}: stopping");
                break;
            }
            Err(e) => {
                ::log::error!("waiting for signals: {e}");
                break;
            }
        }
    }
    d.stop();
    0
}

#[cfg(test)]
mod secrets_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_world_readable_config_with_biss_keys_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("capbox-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        let text = "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nbiss = \"1122334455667788\"\n";
        std::fs::write(&p, text).unwrap();
        let c = config::load(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = secrets_warning(&p, &c).expect("a warning");
        assert!(w.contains("1 BISS key") && w.contains("644"), "{w}");
        assert!(!w.contains("1122334455667788"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(secrets_warning(&p, &c), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_world_readable_config_with_the_access_token_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("capbox-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, "[access]\ntoken = \"hunter2-long-token\"\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\n").unwrap();
        let c = config::load(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
        let w = secrets_warning(&p, &c).expect("a warning");
        assert!(w.contains("[access] token") && w.contains("604"), "{w}");
        assert!(!w.contains("hunter2"), "{w}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secrets_warning(&p, &c), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_config_path_is_an_option_or_the_argument_alone() {
        let a = |v: &[&str]| config_path(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&[]).unwrap(), PathBuf::from(config::DEFAULT_PATH));
        assert_eq!(a(&["x.toml"]).unwrap(), PathBuf::from("x.toml"));
        assert_eq!(a(&["--config", "x.toml"]).unwrap(), PathBuf::from("x.toml"));
        assert_eq!(a(&["-c", "x.toml"]).unwrap(), PathBuf::from("x.toml"));
        assert_eq!(a(&["--config=x.toml"]).unwrap(), PathBuf::from("x.toml"));
        assert!(a(&["x.toml", "y.toml"])
            .unwrap_err()
            .contains("more than one"));
        assert!(a(&["--verbose"])
            .unwrap_err()
            .contains("unknown option '--verbose'"));
    }
}
