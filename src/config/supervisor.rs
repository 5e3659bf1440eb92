//! `[supervisor]`: the hardware watchdog, stall detection, the reboot-loop
//! guard and fault injection (see `crate::supervisor`).

use super::*;

/// `reset_log` when not written: beside the config file.
pub const DEFAULT_RESET_LOG: &str = "capbox-resets.json";

/// `[supervisor]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// `watchdog`, default `""` (none): the hardware watchdog device, e.g.
    /// `"/dev/watchdog"`. Opened (armed) by `capbox serve` only.
    pub watchdog: Option<PathBuf>,
    /// `watchdog_timeout_s`, default 20, 2..=600: WDIOC_SETTIMEOUT; when
    /// the driver refuses, its own timeout is used and logged.
    pub watchdog_timeout_s: u32,
    /// `stall_after_s`, default 10, 1..=600: a thread whose loop has not
    /// turned for this long is stalled.
    pub stall_after_s: u32,
    /// `reboot_guard_resets`, default 3, 0..=100: this many watchdog
    /// resets within an hour and capbox stops arming (0: never stops).
    pub reboot_guard_resets: u32,
    /// `reset_log`, default `capbox-resets.json` beside the config (`""`
    /// is the default too): the reset log, on a partition that survives a
    /// reset.
    pub reset_log: PathBuf,
    /// `fault_injection`, default false: enables `POST /control/fault`
    /// (tests only).
    pub fault_injection: bool,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            watchdog: None,
            watchdog_timeout_s: 20,
            stall_after_s: 10,
            reboot_guard_resets: 3,
            reset_log: PathBuf::from(DEFAULT_RESET_LOG),
            fault_injection: false,
        }
    }
}

impl SupervisorConfig {
    /// The device as /status shows it ("" for none).
    pub fn watchdog_shown(&self) -> String {
        self.watchdog
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// How often the hardware watchdog is fed: a quarter of its timeout,
    /// at most once a second apart.
    pub fn feed_every_ms(&self, timeout_s: Option<u32>) -> u64 {
        let t = u64::from(timeout_s.unwrap_or(self.watchdog_timeout_s).max(1));
        (t * 1000 / 4).clamp(100, 1000)
    }
}

const SUPERVISOR_KEYS: &[&str] = &[
    "watchdog",
    "watchdog_timeout_s",
    "stall_after_s",
    "reboot_guard_resets",
    "reset_log",
    "fault_injection",
];

/// Takes `[supervisor]` from the document's top table; `reset_log` is
/// resolved against `base_dir`.
pub(super) fn supervisor(w: &mut Walker, root: &mut Table, base_dir: &Path) -> SupervisorConfig {
    let mut c = SupervisorConfig::default();
    if let Some(f) = w.take(root, "supervisor") {
        if let Some(mut t) = w.table(f.sp, &f.path, f.line) {
            c.watchdog = match w.string(
                &mut t,
                "watchdog",
                "a device path such as \"/dev/watchdog\" (\"\" for none)",
            ) {
                None => None,
                Some((s, _)) if s.is_empty() => None,
                Some((s, sf)) if !s.starts_with('/') || s.contains('\0') => {
                    w.error(sf.line, &sf.path, format!("{s:?} is not an absolute device path; expected a path such as \"/dev/watchdog\", or \"\" for none"));
                    None
                }
                Some((s, _)) => Some(PathBuf::from(s)),
            };
            c.watchdog_timeout_s =
                w.int(&mut t, "watchdog_timeout_s", 2, 600, 20, "seconds") as u32;
            c.stall_after_s = w.int(&mut t, "stall_after_s", 1, 600, 10, "seconds") as u32;
            c.reboot_guard_resets = w.int(
                &mut t,
                "reboot_guard_resets",
                0,
                100,
                3,
                "resets within an hour",
            ) as u32;
            c.reset_log = match w.string(&mut t, "reset_log", "a file path (\"\" for the default)")
            {
                None => PathBuf::from(DEFAULT_RESET_LOG),
                Some((s, _)) if s.is_empty() => PathBuf::from(DEFAULT_RESET_LOG),
                Some((s, sf)) if s.contains('\0') || s.ends_with('/') => {
                    w.error(sf.line, &sf.path, "not a file path; expected a path such as \"/data/capbox-resets.json\", or \"\" for the default".into());
                    PathBuf::from(DEFAULT_RESET_LOG)
                }
                Some((s, _)) => PathBuf::from(s),
            };
            c.fault_injection = w.boolean(&mut t, "fault_injection", false);
            let line = t.line;
            w.finish(t, SUPERVISOR_KEYS);
            if c.watchdog.is_some() && c.stall_after_s >= c.watchdog_timeout_s {
                w.error(
                    line,
                    "supervisor.stall_after_s",
                    format!(
                        "{} s is not shorter than watchdog_timeout_s ({} s); expected a stall to be seen before the watchdog fires",
                        c.stall_after_s, c.watchdog_timeout_s
                    ),
                );
            }
        }
    }
    c.reset_log = base_dir.join(&c.reset_log);
    c
}
