//! The operator's hand on failover: a channel pinned to one of its
//! sources, for a while or until unpinned, remembered across restarts.
//!
//! A pin is kept in a small JSON state file (`[server] state_file`),
//! rewritten atomically (temporary file, fsync, rename) whenever a pin is
//! set or cleared. The file is untrusted on the way in: it is read only up
//! to `MAX_FILE_BYTES`, a damaged file is reported and ignored (capbox then
//! runs by the rules, the safe default), and a pin whose source is no
//! longer the one it named (the config changed) is dropped with a line in
//! the log.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A state file larger than this is not ours.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most pins kept (one per channel; channels are far fewer).
pub const MAX_PINS: usize = 4096;
/// The longest `--for`: a pin meant to last longer should have no end.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One pin, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    /// Index of the source among the channel's sources (0 = first).
    pub source: usize,
    /// What that source was when pinned ("remote http://…"): a pin is
    /// dropped at start when the config now has another source there.
    pub source_desc: String,
    /// Seconds since the epoch when it was set.
    pub set_at: u64,
    /// Seconds since the epoch when it ends; none: until unpinned.
    pub until: Option<u64>,
    /// Who asked (peer address), for the log and /status.
    #[serde(default)]
    pub by: String,
}

impl PinRecord {
    /// Time left at `now` (seconds since the epoch); `None` for no end.
    pub fn remaining(&self, now: u64) -> Option<Duration> {
        self.until
            .map(|u| Duration::from_secs(u.saturating_sub(now)))
    }

    pub fn expired(&self, now: u64) -> bool {
        self.until.is_some_and(|u| u <= now)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    pins: BTreeMap<String, PinRecord>,
}

/// The pins of every channel, and where they are kept.
#[derive(Debug, Default)]
pub struct PinStore {
    path: Option<PathBuf>,
    pins: BTreeMap<String, PinRecord>,
    /// Why the last save failed, if it did (shown in /status).
    pub save_error: Option<String>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PinStore {
    /// A store with no file: pins last until the process ends.
    pub fn in_memory() -> PinStore {
        PinStore::default()
    }

    /// Read the pins from `path`. A missing file is an empty store; a bad
    /// one is an empty store and a warning (returned, in words, naming the
    /// file). Expired pins are dropped.
    pub fn load(path: &Path) -> (PinStore, Option<String>) {
        let mut store = PinStore {
            path: Some(path.to_path_buf()),
            ..Default::default()
        };
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (store, None),
            Err(e) => {
                return (
                    store,
                    Some(format!("state file {shown}: {e}; pins not restored")),
                )
            }
        };
        if meta.len() > MAX_FILE_BYTES {
            return (
                store,
                Some(format!(
                    "state file {shown}: {} bytes, more than {MAX_FILE_BYTES}: not a capbox state file; pins not restored",
                    meta.len()
                )),
            );
        }
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) => {
                return (
                    store,
                    Some(format!("state file {shown}: {e}; pins not restored")),
                )
            }
        };
        let file: FileV1 = match serde_json::from_slice(&text) {
            Ok(f) => f,
            Err(e) => {
                return (
                    store,
                    Some(format!(
                        "state file {shown}: not capbox state ({e}); pins not restored, the channels follow their rules"
                    )),
                )
            }
        };
        if file.version != 1 {
            return (
                store,
                Some(format!(
                    "state file {shown}: version {} unknown to this capbox (expected 1); pins not restored",
                    file.version
                )),
            );
        }
        let now = unix_now();
        store.pins = file
            .pins
            .into_iter()
            .filter(|(_, p)| !p.expired(now))
            .take(MAX_PINS)
            .collect();
        (store, None)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn get(&self, channel: &str) -> Option<&PinRecord> {
        self.pins.get(channel)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &PinRecord)> {
        self.pins.iter()
    }

    /// Set (`Some`) or clear (`None`) a channel's pin, then save. The pin
    /// holds in memory even when the save fails; the error is returned.
    pub fn set(&mut self, channel: &str, pin: Option<PinRecord>) -> Result<(), String> {
        match pin {
            Some(p) => {
                if self.pins.len() >= MAX_PINS && !self.pins.contains_key(channel) {
                    return Err(format!("{MAX_PINS} pins already"));
                }
                self.pins.insert(channel.to_string(), p);
            }
            None => {
                self.pins.remove(channel);
            }
        }
        self.save()
    }

    /// Forget pins that have ended; true when any was.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .pins
            .iter()
            .filter(|(_, p)| p.expired(now))
            .map(|(c, _)| c.clone())
            .collect();
        for c in &gone {
            self.pins.remove(c);
        }
        if !gone.is_empty() {
            let _ = self.save();
        }
        gone
    }

    /// Write the file atomically: a crash leaves the old or the new one.
    pub fn save(&mut self) -> Result<(), String> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let r = write_atomically(
            &path,
            &FileV1 {
                version: 1,
                pins: self.pins.clone(),
            },
        );
        self.save_error = r.as_ref().err().cloned();
        r
    }
}

fn write_atomically(path: &Path, file: &FileV1) -> Result<(), String> {
    use std::io::Write;
    let shown = path.display();
    let mut text = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let tmp = path.with_extension("json.tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok::<(), std::io::Error>(())
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write state file {shown}: {e}; the pin holds until capbox restarts")
    })
}

/// A duration as a technician types it: `90s`, `30m`, `2h`, `1h30m`,
/// `1d`, or plain seconds. At most `MAX_DURATION`, more than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("'{s}' is not a duration; expected e.g. 90s, 30m, 2h, 1h30m, 1d (at most 30d)");
    let t = s.trim();
    if t.is_empty() || t.len() > 32 {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for ch in t.chars() {
        if let Some(d) = ch.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(d as u64))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n = num.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if let Some(n) = num {
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    let d = Duration::from_secs(total);
    if d.is_zero() || d > MAX_DURATION {
        return Err(bad());
    }
    Ok(d)
}

/// "2 h 05 min", "45 s": a remaining time for the console.
pub fn words(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in [
            "",
            "0",
            "0s",
            "h",
            "1x",
            "31d",
            "99999999999999999999999h",
            "-5m",
            "1.5h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn rec(source: usize, until: Option<u64>) -> PinRecord {
        PinRecord {
            source,
            source_desc: format!("file {source}.ts"),
            set_at: unix_now(),
            until,
            by: "127.0.0.1".into(),
        }
    }

    #[test]
    fn pins_survive_a_reload_of_the_file_and_expired_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("capbox-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        let (mut s, warn) = PinStore::load(&path);
        assert!(warn.is_none());
        s.set("france2", Some(rec(1, None))).unwrap();
        s.set("tf1", Some(rec(0, Some(unix_now() + 3600)))).unwrap();
        s.set("m6", Some(rec(0, Some(unix_now().saturating_sub(5)))))
            .unwrap();
        let (s2, warn) = PinStore::load(&path);
        assert!(warn.is_none());
        assert_eq!(s2.get("france2"), s.get("france2"));
        assert_eq!(s2.get("tf1"), s.get("tf1"));
        assert!(s2.get("m6").is_none(), "an expired pin is not restored");
        assert!(!path.with_extension("json.tmp").exists());
        // Cleared pins are gone from the file too.
        s.set("france2", None).unwrap();
        assert!(PinStore::load(&path).0.get("france2").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_reported_and_ignored() {
        let dir = std::env::temp_dir().join(format!("capbox-pin-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        for (bytes, want) in [
            (
                &b"{\"version\":1,\"pins\":{\"x\":{\"source\":"[..],
                "not capbox state",
            ),
            (&b"\x47\x40\x00\x10garbage"[..], "not capbox state"),
            (&b"{\"version\":7,\"pins\":{}}"[..], "version 7"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let (s, warn) = PinStore::load(&path);
            let warn = warn.expect("a warning");
            assert!(warn.contains(want) && warn.contains("state.json"), "{warn}");
            assert_eq!(s.iter().count(), 0);
        }
        // Too large: refused before reading.
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let warn = PinStore::load(&path).1.unwrap();
        assert!(warn.contains("more than"), "{warn}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_file_keeps_the_pin_in_memory_and_says_so() {
        let mut s = PinStore {
            path: Some(PathBuf::from("/proc/capbox-cannot-write-here/state.json")),
            ..Default::default()
        };
        let e = s.set("france2", Some(rec(1, None))).unwrap_err();
        assert!(e.contains("cannot write state file"), "{e}");
        assert_eq!(s.get("france2").map(|p| p.source), Some(1));
        assert!(s.save_error.is_some());
    }

    #[test]
    fn remaining_time_in_words() {
        assert_eq!(words(Duration::from_secs(45)), "45 s");
        assert_eq!(words(Duration::from_secs(1799)), "30 min");
        assert_eq!(words(Duration::from_secs(7500)), "2 h 05 min");
        let r = rec(0, Some(100));
        assert_eq!(r.remaining(40), Some(Duration::from_secs(60)));
        assert!(r.expired(100) && !r.expired(99));
    }
}
