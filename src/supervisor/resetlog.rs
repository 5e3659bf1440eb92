//! The reset log and the reboot-loop guard: a small JSON file on the data
//! partition (`[supervisor] reset_log`) that survives the reset it records.
//!
//! Owns the file and the last events (supervisor lines, warnings, errors)
//! kept in it. Promises: written atomically (temporary file, fsync,
//! rename, fsync of the directory), so a reset mid-write leaves the old
//! or the new file, never half of one; bounded (`MAX_EVENTS` events,
//! `MAX_RESETS` resets); a damaged or unreadable file is reported and
//! replaced, never fatal; the decisions (`at_start`, `in_last_hour`) are
//! pure functions of the file, the boot id and the time, unit tested.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Events kept (in the file and in memory).
pub const MAX_EVENTS: usize = 20;
/// Resets kept in the file.
pub const MAX_RESETS: usize = 20;
/// A file larger than this is not a reset log.
const MAX_FILE_BYTES: u64 = 256 * 1024;
/// A time this far ahead of the clock is "in the future": the clock went
/// back (no RTC before NTP, a battery gone).
const FUTURE_SLACK_S: u64 = 60;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub unix: u64,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// When capbox found it (at the start after the reset).
    pub unix: u64,
    pub cause: String,
    /// The events of the run that ended in this reset, oldest first.
    #[serde(default)]
    pub last_events: Vec<Event>,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFile {
    #[serde(default)]
    pub boot_id: String,
    /// The run that wrote it held the watchdog armed.
    #[serde(default)]
    pub armed: bool,
    /// …and stopped cleanly (magic close).
    #[serde(default)]
    pub clean_stop: bool,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub started_unix: u64,
    #[serde(default)]
    pub resets: Vec<Reset>,
    #[serde(default)]
    pub events: Vec<Event>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// "2026-12-05 01:02:03 UTC".
pub fn utc_words(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let s = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Parse the file's text. Err says what is wrong with it.
pub fn parse(text: &str) -> Result<LogFile, String> {
    let mut f: LogFile = serde_json::from_str(text).map_err(|e| format!("not a reset log: {e}"))?;
    // Bounded whatever a hand-edited file holds.
    let n = f.events.len();
    f.events.drain(..n.saturating_sub(MAX_EVENTS));
    let n = f.resets.len();
    f.resets.drain(..n.saturating_sub(MAX_RESETS));
    for r in &mut f.resets {
        let n = r.last_events.len();
        r.last_events.drain(..n.saturating_sub(MAX_EVENTS));
    }
    Ok(f)
}

/// Read `path`: (the log, a problem in words to report). A missing file
/// is a first start, not a problem.
pub fn load(path: &Path) -> (LogFile, Option<String>) {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (LogFile::default(), None),
        Err(e) => {
            return (
                LogFile::default(),
                Some(format!(
                    "cannot read the reset log {shown}: {e}; starting a new one"
                )),
            )
        }
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return (
                LogFile::default(),
                Some(format!(
                    "the reset log {shown} is {} bytes, not a reset log; replacing it",
                    m.len()
                )),
            )
        }
        Ok(_) => {}
    }
    match std::fs::read_to_string(path) {
        Err(e) => (
            LogFile::default(),
            Some(format!(
                "cannot read the reset log {shown}: {e}; starting a new one"
            )),
        ),
        Ok(t) => match parse(&t) {
            Ok(f) => (f, None),
            Err(e) => (
                LogFile::default(),
                Some(format!(
                    "the reset log {shown} is damaged ({e}); replacing it"
                )),
            ),
        },
    }
}

/// Write atomically: a reset at any instant leaves the old or the new file.
pub fn store(path: &Path, f: &LogFile) -> Result<(), String> {
    let shown = path.display();
    let body = serde_json::to_vec_pretty(f).map_err(|e| format!("reset log {shown}: {e}"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut t = std::fs::File::create(&tmp)?;
        t.write_all(&body)?;
        t.write_all(b"\n")?;
        t.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk before a reset.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the reset log {shown}: {e}")
    })
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), "" when unknown.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What the previous run's record says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Previous {
    /// No record, or it stopped cleanly, or it never armed.
    Fine,
    /// Armed, no clean stop, another boot: the box restarted while capbox
    /// held the watchdog.
    BoxReset,
    /// Armed, no clean stop, same boot: capbox itself ended (crash, kill
    /// -9) and was started again before the watchdog fired.
    ProcessEnded,
}

/// Pure: what happened to the run recorded in `prev`, seen from boot `boot`.
pub fn previous(prev: &LogFile, boot: &str) -> Previous {
    if !prev.armed || prev.clean_stop {
        return Previous::Fine;
    }
    // An unknown boot id on either side: a box reset is the safer guess
    // (it is counted; a wrong "same boot" would hide a reboot loop).
    if !boot.is_empty() && prev.boot_id == boot {
        Previous::ProcessEnded
    } else {
        Previous::BoxReset
    }
}

/// Pure: resets within the hour before `now` (a time in the future counts:
/// the clock went back, and the guard must not be fooled by it).
pub fn in_last_hour(resets: &[Reset], now: u64) -> u32 {
    resets
        .iter()
        .filter(|r| {
            r.unix > now.saturating_add(FUTURE_SLACK_S) || now.saturating_sub(r.unix) < 3600
        })
        .count() as u32
}

/// Pure: `n` resets in the last hour trip a guard of `limit` (0: never).
pub fn guard_tripped(n: u32, limit: u32) -> bool {
    limit > 0 && n >= limit
}

/// The cause of a box reset in words: the driver's bootstatus when it
/// reported one, else what capbox can tell.
pub fn cause_words(bootstatus: Option<u32>) -> String {
    bootstatus
        .and_then(super::watchdog::bootstatus_words)
        .unwrap_or_else(|| "watchdog reset or power cut".to_string())
}

// The last events of this run, fed by the logger (`note`) and persisted
// by the supervisor thread at most once a second.
static EVENTS: Mutex<VecDeque<Event>> = Mutex::new(VecDeque::new());
static DIRTY: AtomicBool = AtomicBool::new(false);
/// Events noted since the start: a console following them (`capbox logs
/// -f`) tells from it how many came, and how many it missed (more than
/// `MAX_EVENTS` between two looks).
static NOTED: AtomicU64 = AtomicU64::new(0);

/// Remember a log line (the logger calls it for warnings, errors and
/// `supervisor:` lines).
pub fn note(text: &str) {
    let text: String = text.chars().take(300).collect();
    let mut e = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
    if e.len() >= MAX_EVENTS {
        e.pop_front();
    }
    e.push_back(Event {
        unix: unix_now(),
        text,
    });
    // Counted under the ring's lock: `events_and_total` sees both agree.
    NOTED.fetch_add(1, Ordering::Relaxed);
    drop(e);
    DIRTY.store(true, Ordering::Relaxed);
}

/// This run's events (oldest first) and how many were noted since the
/// start (the ring keeps the last `MAX_EVENTS`), read together.
pub fn events_and_total() -> (Vec<Event>, u64) {
    let e = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
    (e.iter().cloned().collect(), NOTED.load(Ordering::Relaxed))
}

/// This run's events (oldest first), and whether new ones came since the
/// last call with `take_dirty`.
pub fn events(take_dirty: bool) -> (Vec<Event>, bool) {
    let dirty = if take_dirty {
        DIRTY.swap(false, Ordering::Relaxed)
    } else {
        DIRTY.load(Ordering::Relaxed)
    };
    let e = EVENTS.lock().unwrap_or_else(|p| p.into_inner());
    (e.iter().cloned().collect(), dirty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(boot: &str) -> LogFile {
        LogFile {
            boot_id: boot.into(),
            armed: true,
            ..LogFile::default()
        }
    }

    #[test]
    fn previous_run_classified() {
        assert_eq!(previous(&LogFile::default(), "b"), Previous::Fine);
        assert_eq!(previous(&armed("a"), "b"), Previous::BoxReset);
        assert_eq!(previous(&armed("b"), "b"), Previous::ProcessEnded);
        assert_eq!(previous(&armed(""), ""), Previous::BoxReset);
        let mut clean = armed("a");
        clean.clean_stop = true;
        assert_eq!(previous(&clean, "b"), Previous::Fine);
    }

    #[test]
    fn resets_in_the_last_hour_and_the_guard() {
        let r = |unix| Reset {
            unix,
            cause: "x".into(),
            last_events: vec![],
        };
        let now = 1_000_000;
        let list = [r(now - 4000), r(now - 3599), r(now - 10), r(now)];
        assert_eq!(in_last_hour(&list, now), 3);
        assert!(guard_tripped(3, 3));
        assert!(!guard_tripped(2, 3));
        assert!(!guard_tripped(50, 0), "0 turns the guard off");
        // Future times (the clock went back) count; a few seconds ahead
        // is ordinary slack and also within the hour.
        assert_eq!(in_last_hour(&[r(now + 86_400), r(now + 5)], now), 2);
        // A clock at 1970 (no RTC yet): everything recorded later counts.
        assert_eq!(in_last_hour(&list, 30), 4);
    }

    #[test]
    fn damaged_files_are_refused_in_words() {
        assert!(parse("").unwrap_err().contains("not a reset log"));
        assert!(parse("{\"armed\": \"yes\"}").is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse("{\"resets\": [{\"unix\": -1}]}").is_err());
        // Unknown keys (a newer capbox) and missing ones are fine.
        let f = parse("{\"boot_id\": \"x\", \"new_key\": 1}").unwrap();
        assert_eq!(f.boot_id, "x");
        assert!(!f.armed);
    }

    #[test]
    fn parse_bounds_what_it_keeps() {
        let mut f = LogFile::default();
        for i in 0..100 {
            f.events.push(Event {
                unix: i,
                text: format!("e{i}"),
            });
            f.resets.push(Reset {
                unix: i,
                cause: "c".into(),
                last_events: vec![],
            });
        }
        let g = parse(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(g.events.len(), MAX_EVENTS);
        assert_eq!(g.events[0].text, "e80", "the newest are kept");
        assert_eq!(g.resets.len(), MAX_RESETS);
    }

    #[test]
    fn store_and_load_round_trip_and_damage_is_replaced() {
        let dir = std::env::temp_dir().join(format!("capbox-resetlog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("resets.json");
        let _ = std::fs::remove_file(&p);
        assert_eq!(load(&p), (LogFile::default(), None));
        let mut f = armed("boot-1");
        f.events.push(Event {
            unix: 5,
            text: "supervisor: x".into(),
        });
        store(&p, &f).unwrap();
        assert_eq!(load(&p), (f, None));
        std::fs::write(&p, b"{\"boot_id\": \"tru").unwrap();
        let (g, why) = load(&p);
        assert_eq!(g, LogFile::default());
        let why = why.unwrap();
        assert!(
            why.contains("is damaged") && why.contains("resets.json"),
            "{why}"
        );
        let e = store(Path::new("/nonexistent-dir/x.json"), &g).unwrap_err();
        assert!(
            e.contains("cannot write the reset log /nonexistent-dir/x.json"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dates_in_words() {
        assert_eq!(utc_words(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_words(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_words(1_796_432_523), "2026-12-05 01:02:03 UTC");
    }

    #[test]
    fn causes_in_words() {
        assert_eq!(cause_words(None), "watchdog reset or power cut");
        assert_eq!(cause_words(Some(0)), "watchdog reset or power cut");
        assert_eq!(
            cause_words(Some(super::super::watchdog::WDIOF_CARDRESET)),
            "watchdog reset (the card reported it)"
        );
    }
}
