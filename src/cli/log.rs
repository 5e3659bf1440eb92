//! The logger: one line per event on stderr, `HH:MM:SS.mmm LEVEL message`
//! (UTC). CAPBOX_LOG=error|warn|info|debug|trace sets the level (info).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct Logger {
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let s = now.as_secs() % 86400;
        let msg = r.args().to_string();
        let line = format!(
            "{:02}:{:02}:{:02}.{:03} {:<5} {}\n",
            s / 3600,
            (s / 60) % 60,
            s % 60,
            now.subsec_millis(),
            r.level(),
            msg
        );
        // One write per line so lines from threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        // Warnings, errors and the supervisor's own lines are the events
        // the reset log keeps across a reset.
        if r.level() <= log::Level::Warn {
            crate::supervisor::resetlog::note(&format!("{} {msg}", r.level()));
        } else if msg.starts_with("supervisor:") {
            crate::supervisor::resetlog::note(&msg);
        }
    }

    fn flush(&self) {}
}

pub fn init() {
    let level = match std::env::var("CAPBOX_LOG").unwrap_or_default().as_str() {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    if log::set_boxed_logger(Box::new(Logger { level })).is_ok() {
        log::set_max_level(level);
    }
}
