//! `[update]`: signed A/B updates through RAUC (see `crate::update`).

use super::*;

/// `state_file` when not written: beside the config (the data partition
/// on the appliance, which an update never rewrites).
pub const DEFAULT_UPDATE_STATE: &str = "capbox-update.state";

/// `[update]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateConfig {
    /// `mark_good_after_s`, default 300, 5..=86400: after booting a new
    /// slot, capbox marks it good once its health (every configured
    /// adapter present, every channel up, the watchdog armed when
    /// configured, no stalled thread) held this long without a break.
    pub mark_good_after_s: u32,
    /// `trial_timeout_s`, default 900, 60..=86400, more than
    /// `mark_good_after_s` + 30: a new slot not marked good this long after
    /// its boot is marked bad and the box reboots into the old slot (by
    /// /etc/init.d/S20update, which reads this key itself: it must work
    /// when the new capbox cannot even start).
    pub trial_timeout_s: u32,
    /// `state_file`, default `capbox-update.state` beside the config:
    /// the update in progress and the last update's outcome.
    pub state_file: PathBuf,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            mark_good_after_s: 300,
            trial_timeout_s: 900,
            state_file: PathBuf::from(DEFAULT_UPDATE_STATE),
        }
    }
}

const UPDATE_KEYS: &[&str] = &["mark_good_after_s", "trial_timeout_s", "state_file"];

/// Takes `[update]` from the document's top table; `state_file` is
/// resolved against `base_dir`.
pub(super) fn update(w: &mut Walker, root: &mut Table, base_dir: &Path) -> UpdateConfig {
    let mut c = UpdateConfig::default();
    if let Some(f) = w.take(root, "update") {
        if let Some(mut t) = w.table(f.sp, &f.path, f.line) {
            c.mark_good_after_s =
                w.int(&mut t, "mark_good_after_s", 5, 86_400, 300, "seconds") as u32;
            c.trial_timeout_s = w.int(&mut t, "trial_timeout_s", 60, 86_400, 900, "seconds") as u32;
            c.state_file = match w.string(
                &mut t,
                "state_file",
                "a file path (\"\" for the default)",
            ) {
                None => PathBuf::from(DEFAULT_UPDATE_STATE),
                Some((s, _)) if s.is_empty() => PathBuf::from(DEFAULT_UPDATE_STATE),
                Some((s, sf)) if s.contains('\0') || s.ends_with('/') => {
                    w.error(sf.line, &sf.path, "not a file path; expected a path such as \"/data/capbox/capbox-update.state\", or \"\" for the default".into());
                    PathBuf::from(DEFAULT_UPDATE_STATE)
                }
                Some((s, _)) => PathBuf::from(s),
            };
            let line = w
                .lines
                .get("update.trial_timeout_s")
                .copied()
                .unwrap_or(t.line);
            w.finish(t, UPDATE_KEYS);
            if u64::from(c.trial_timeout_s) <= u64::from(c.mark_good_after_s) + 30 {
                w.error(
                    line,
                    "update.trial_timeout_s",
                    format!(
                        "{} s is not more than mark_good_after_s ({} s) + 30 s; expected time for capbox to start and its health to hold before the trial ends",
                        c.trial_timeout_s, c.mark_good_after_s
                    ),
                );
            }
        }
    }
    c.state_file = base_dir.join(&c.state_file);
    c
}
