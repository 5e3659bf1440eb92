//! `[monitor]`: the master switch of per-channel and per-mux monitoring
//! (TR 101 290, elementary streams) and the times after which a channel is
//! called silent, frozen, without video or audio (`monitor::channel`).
//!
//! A child of `walk` so it uses the same `Walker` (every error names
//! `file:line: key`).

use super::*;

/// `[monitor]`, every key optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    /// `enabled`, default true: TR 101 290 and elementary-stream analysis on
    /// the channels and input muxes. Off: no verdicts (the bench's "off").
    pub enabled: bool,
    /// `tr101290`, default true: TR 101 290 indicators (read by tr101290).
    pub tr101290: bool,
    /// `silence_after_s`, default 10, 1..=3600: audio below `silence_dbfs`
    /// this long is "silent".
    pub silence_after_s: u64,
    /// `silence_dbfs`, default -60, -120..=0.
    pub silence_dbfs: i64,
    /// `frozen_after_s`, default 10, 1..=3600: identical coded pictures
    /// this long is "frozen".
    pub frozen_after_s: u64,
    /// `pes_after_s`, default 5, 1..=600: no PES with advancing PTS on a
    /// video/audio stream this long is "no video"/"no audio".
    pub pes_after_s: u64,
    /// `pts_pcr_min_ms`, default 0, and `pts_pcr_max_ms`, default 3000
    /// (-10000..=60000, min < max): PTS − PCR at arrival outside is counted.
    pub pts_pcr_min_ms: i64,
    pub pts_pcr_max_ms: i64,
    /// `clock_drift_s`, default 5, 1..=86400: |TDT − box clock| above this
    /// is "drift" (read by tr101290's clock).
    pub clock_drift_s: u64,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
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

/// The keys of `[monitor]`, for `finish`'s "expected one of".
const KEYS: &[&str] = &[
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

/// Reads `[monitor]`; the defaults for what is not written.
pub(super) fn monitor(w: &mut Walker, f: Field) -> MonitorConfig {
    let d = MonitorConfig::default();
    let Some(mut t) = open(w, &f) else { return d };
    let enabled = w.boolean(&mut t, "enabled", d.enabled);
    let tr101290 = w.boolean(&mut t, "tr101290", d.tr101290);
    let silence_after_s = w.int(
        &mut t,
        "silence_after_s",
        1,
        3600,
        d.silence_after_s as i64,
        "seconds (audio below silence_dbfs this long is silent)",
    ) as u64;
    let silence_dbfs = w.int(
        &mut t,
        "silence_dbfs",
        -120,
        0,
        d.silence_dbfs,
        "dBFS (a frame whose loudest level is below this is silent)",
    );
    let frozen_after_s = w.int(
        &mut t,
        "frozen_after_s",
        1,
        3600,
        d.frozen_after_s as i64,
        "seconds (identical pictures this long is frozen)",
    ) as u64;
    let pes_after_s = w.int(
        &mut t,
        "pes_after_s",
        1,
        600,
        d.pes_after_s as i64,
        "seconds (no PES with advancing PTS this long is no video / no audio)",
    ) as u64;
    let pts_pcr_min_ms = w.int(
        &mut t,
        "pts_pcr_min_ms",
        -10_000,
        60_000,
        d.pts_pcr_min_ms,
        "milliseconds",
    );
    let mut pts_pcr_max_ms = w.int(
        &mut t,
        "pts_pcr_max_ms",
        -10_000,
        60_000,
        d.pts_pcr_max_ms,
        "milliseconds",
    );
    if pts_pcr_max_ms <= pts_pcr_min_ms {
        let path = join(&t.path, "pts_pcr_max_ms");
        let line = w.lines.get(&path).copied().unwrap_or(t.line);
        let msg = format!(
            "{pts_pcr_max_ms} is not above pts_pcr_min_ms ({pts_pcr_min_ms}); \
             expected the PTS − PCR range as min < max milliseconds"
        );
        w.error(line, &path, msg);
        pts_pcr_max_ms = pts_pcr_min_ms + 1;
    }
    let clock_drift_s = w.int(
        &mut t,
        "clock_drift_s",
        1,
        86_400,
        d.clock_drift_s as i64,
        "seconds (|TDT − box clock| above this is drift)",
    ) as u64;
    w.finish(t, KEYS);
    MonitorConfig {
        enabled,
        tr101290,
        silence_after_s,
        silence_dbfs,
        frozen_after_s,
        pes_after_s,
        pts_pcr_min_ms,
        pts_pcr_max_ms,
        clock_drift_s,
    }
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
