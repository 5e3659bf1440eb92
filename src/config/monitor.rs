//! `[monitor]`: what the monitoring on every channel and input mux does
//! (TR 101 290, the elementary-stream analysis, the box clock check).
//! The keys are issue 14's contract; the elementary-stream keys are read
//! by `monitor::channel`, the TR 101 290 and clock keys by the mux runner.

use super::*;

/// `[monitor]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    /// `enabled`, default true: the master switch of TR 101 290 and the ES
    /// analysis on channels and input muxes.
    pub enabled: bool,
    /// `tr101290`, default true: TR 101 290 indicators on input muxes and
    /// channels.
    pub tr101290: bool,
    /// `silence_after_s`, default 10, 1..=3600.
    pub silence_after_s: u32,
    /// `silence_dbfs`, default -60, -120..=0.
    pub silence_dbfs: i32,
    /// `frozen_after_s`, default 10, 1..=3600.
    pub frozen_after_s: u32,
    /// `pes_after_s`, default 5, 1..=3600.
    pub pes_after_s: u32,
    /// `pts_pcr_min_ms`, default 0, -60000..=60000.
    pub pts_pcr_min_ms: i64,
    /// `pts_pcr_max_ms`, default 3000, -60000..=60000.
    pub pts_pcr_max_ms: i64,
    /// `clock_drift_s`, default 5, 1..=86400: |TDT − box clock| above this
    /// is "drift" in /status (and one log line each way).
    pub clock_drift_s: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            tr101290: true,
            silence_after_s: 10,
            silence_dbfs: -60,
            frozen_after_s: 10,
            pes_after_s: 5,
            pts_pcr_min_ms: 0,
            pts_pcr_max_ms: 3000,
            clock_drift_s: 5,
        }
    }
}

impl MonitorConfig {
    /// TR 101 290 runs: the master switch and its own.
    pub fn tr101290_on(&self) -> bool {
        self.enabled && self.tr101290
    }
}

const MONITOR_KEYS: &[&str] = &[
    "enabled",
    "tr101290",
    "silence_after_s",
    "silence_dbfs",
    "frozen_after_s",
    "pes_after_s",
    "pts_pcr_min_ms",
    "pts_pcr_max_ms",
    "clock_drift_s",
];

/// Takes `[monitor]` from the document's top table.
pub(super) fn monitor(w: &mut Walker, root: &mut Table) -> MonitorConfig {
    let mut c = MonitorConfig::default();
    let Some(f) = w.take(root, "monitor") else {
        return c;
    };
    let Some(mut t) = w.table(f.sp, &f.path, f.line) else {
        return c;
    };
    c.enabled = w.boolean(&mut t, "enabled", true);
    c.tr101290 = w.boolean(&mut t, "tr101290", true);
    c.silence_after_s = w.int(&mut t, "silence_after_s", 1, 3600, 10, "seconds") as u32;
    c.silence_dbfs = w.int(&mut t, "silence_dbfs", -120, 0, -60, "dBFS") as i32;
    c.frozen_after_s = w.int(&mut t, "frozen_after_s", 1, 3600, 10, "seconds") as u32;
    c.pes_after_s = w.int(&mut t, "pes_after_s", 1, 3600, 5, "seconds") as u32;
    c.pts_pcr_min_ms = w.int(&mut t, "pts_pcr_min_ms", -60_000, 60_000, 0, "ms");
    c.pts_pcr_max_ms = w.int(&mut t, "pts_pcr_max_ms", -60_000, 60_000, 3000, "ms");
    c.clock_drift_s = w.int(&mut t, "clock_drift_s", 1, 86_400, 5, "seconds") as u32;
    let line = t.line;
    w.finish(t, MONITOR_KEYS);
    if c.pts_pcr_min_ms >= c.pts_pcr_max_ms {
        w.error(
            line,
            "monitor.pts_pcr_min_ms",
            format!(
                "{} ms is not below pts_pcr_max_ms ({} ms); expected min < max",
                c.pts_pcr_min_ms, c.pts_pcr_max_ms
            ),
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, MonitorConfig};
    use std::path::Path;

    const CH: &str =
        "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogram = 1\n";

    #[test]
    fn defaults_values_and_bad_values_named_with_their_line() {
        let c = parse(CH, "capbox.toml", Path::new("/")).unwrap();
        assert_eq!(c.monitor, MonitorConfig::default());
        assert!(c.monitor.tr101290_on());
        let t = format!("[monitor]\ntr101290 = false\nclock_drift_s = 30\n\n{CH}");
        let c = parse(&t, "capbox.toml", Path::new("/")).unwrap();
        assert!(!c.monitor.tr101290_on());
        assert_eq!(c.monitor.clock_drift_s, 30);
        let t = format!("[monitor]\nenabled = false\n\n{CH}");
        assert!(!parse(&t, "capbox.toml", Path::new("/"))
            .unwrap()
            .monitor
            .tr101290_on());
        let t = format!("[monitor]\n\nclock_drift_s = 0\ntr101290 = \"yes\"\nbogus = 1\n{CH}");
        let e = parse(&t, "capbox.toml", Path::new("/")).unwrap_err();
        let said: Vec<(usize, &str)> = e.iter().map(|d| (d.line, d.key.as_str())).collect();
        assert!(said.contains(&(3, "monitor.clock_drift_s")), "{e:?}");
        assert!(said.contains(&(4, "monitor.tr101290")), "{e:?}");
        assert!(said.contains(&(5, "monitor.bogus")), "{e:?}");
        assert!(e.iter().any(|d| d.message.contains("1..=86400")), "{e:?}");
    }
}
