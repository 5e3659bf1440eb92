//! The box clock against broadcast time: a sanity check, not a clock
//! source. A box whose clock is wrong shifts every EPG it serves.
//!
//! Owns: offset = broadcast UTC (TDT or TOT of the input mux) − box wall
//! clock at the section's arrival; the age of the last TDT/TOT; whether
//! |offset| is above `[monitor] clock_drift_s` ("drift"), with one plain
//! log line when it crosses and one when it comes back.
//!
//! Precision: UTC_time has whole seconds and a muxer sends it at some
//! point of its second, so the offset of a right clock reads between
//! about −1 and +0.3 s (satellite path included); `clock_drift_s` (at
//! least 1 s) is far above that. Back from drift takes |offset| at most
//! `clock_drift_s − 1` s (half the limit when that is more), so a clock right at the
//! limit does not log a line a second.
//!
//! No clock of its own: the caller passes the wall time at arrival (Unix
//! seconds) and a monotonic ms for the age. Only live inputs (a tuner, a
//! remote stream) make sense: a file replays the TDT of its recording.

use serde::Serialize;

/// The clock check of one input mux.
#[derive(Debug, Clone)]
pub struct BoxClock {
    drift_s: f64,
    offset_s: Option<f64>,
    last_utc: Option<i64>,
    last_mono_ms: Option<u64>,
    drift: bool,
}

/// What changed with a TDT/TOT, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    /// |offset| went above the limit: the offset.
    Drift(f64),
    /// It came back within: the offset.
    Back(f64),
}

/// `/status muxes[].clock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClockStatus {
    pub offset_s: Option<f64>,
    pub tdt_age_s: Option<u64>,
    pub drift: bool,
    pub last_tdt_utc: Option<String>,
}

impl BoxClock {
    pub fn new(drift_s: u32) -> BoxClock {
        BoxClock {
            drift_s: drift_s.max(1) as f64,
            offset_s: None,
            last_utc: None,
            last_mono_ms: None,
            drift: false,
        }
    }

    /// A TDT/TOT said `utc` (Unix seconds); it arrived at `wall` (the box's
    /// Unix time, seconds) and `mono_ms`. A crossing of the limit is
    /// returned for the log.
    pub fn observe(&mut self, utc: i64, wall: f64, mono_ms: u64) -> Option<Crossing> {
        if self.last_mono_ms == Some(mono_ms) && self.last_utc == Some(utc) {
            return None;
        }
        let off = utc as f64 - wall;
        self.offset_s = Some(off);
        self.last_utc = Some(utc);
        self.last_mono_ms = Some(mono_ms);
        let back_below = (self.drift_s - 1.0).max(self.drift_s * 0.5);
        if !self.drift && off.abs() > self.drift_s {
            self.drift = true;
            return Some(Crossing::Drift(off));
        }
        if self.drift && off.abs() <= back_below {
            self.drift = false;
            return Some(Crossing::Back(off));
        }
        None
    }

    pub fn offset_s(&self) -> Option<f64> {
        self.offset_s
    }

    pub fn drift(&self) -> bool {
        self.drift
    }

    /// Seconds since the last TDT/TOT at `mono_ms`.
    pub fn tdt_age_s(&self, mono_ms: u64) -> Option<u64> {
        self.last_mono_ms.map(|t| mono_ms.saturating_sub(t) / 1000)
    }

    pub fn status(&self, mono_ms: u64) -> ClockStatus {
        ClockStatus {
            offset_s: self.offset_s.map(|o| (o * 10.0).round() / 10.0),
            tdt_age_s: self.tdt_age_s(mono_ms),
            drift: self.drift,
            last_tdt_utc: self.last_utc.map(utc_text),
        }
    }
}

/// "2026-12-05T04:12:24Z".
pub fn utc_text(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // MJD 40587 is 1970-01-01.
    let (y, m, d) = crate::ts::tdt::mjd_to_ymd((days + 40_587).clamp(0, 0xFFFF) as u16);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// The log line for a crossing: "box clock is 7.2 s behind broadcast time
/// (TDT/TOT of adapter sat1 …): EPG times shift by as much".
pub fn crossing_words(c: Crossing, mux: &str, limit_s: u32) -> String {
    let side = |o: f64| {
        if o > 0.0 {
            format!("{:.1} s behind", o)
        } else {
            format!("{:.1} s ahead of", -o)
        }
    };
    match c {
        Crossing::Drift(o) => format!(
            "box clock is {} broadcast time (TDT/TOT of {mux}), more than clock_drift_s = {limit_s} s: EPG times shift by as much; check NTP",
            side(o)
        ),
        Crossing::Back(o) => format!(
            "box clock is back within {limit_s} s of broadcast time (TDT/TOT of {mux}): {} it",
            side(o)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_drift_and_back_with_hysteresis() {
        let mut c = BoxClock::new(5);
        assert_eq!(c.status(0), ClockStatus::default());
        let t = 1_780_000_000i64;
        assert_eq!(c.observe(t, t as f64 + 0.4, 1000), None);
        assert!((c.offset_s().unwrap() + 0.4).abs() < 1e-6);
        assert!(!c.drift());
        // The box is 7 s ahead of broadcast.
        assert_eq!(
            c.observe(t + 10, (t + 17) as f64, 11_000),
            Some(Crossing::Drift(-7.0))
        );
        assert_eq!(c.observe(t + 15, (t + 22) as f64, 16_000), None);
        // 4.5 s: not back yet (hysteresis), 3.9 s: back.
        assert_eq!(c.observe(t + 20, t as f64 + 24.5, 21_000), None);
        assert!(c.drift());
        assert!(matches!(
            c.observe(t + 25, t as f64 + 28.9, 26_000),
            Some(Crossing::Back(o)) if (o + 3.9).abs() < 1e-6
        ));
        let s = c.status(36_000);
        assert_eq!(s.tdt_age_s, Some(10));
        assert!(!s.drift);
        assert_eq!(s.last_tdt_utc.as_deref(), Some("2026-05-28T20:27:05Z"));
    }

    #[test]
    fn words() {
        let w = crossing_words(Crossing::Drift(7.24), "adapter sat1 x", 5);
        assert!(
            w.starts_with("box clock is 7.2 s behind broadcast time (TDT/TOT of adapter sat1 x)"),
            "{w}"
        );
        let w = crossing_words(Crossing::Back(-0.5), "m", 5);
        assert!(w.ends_with("0.5 s ahead of it"), "{w}");
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
    }
}

/// The TDT/TOT of a stream, cheaply: only PID 0x14 is looked at.
#[derive(Debug, Default)]
pub struct TdtWatch {
    asm: crate::ts::section::Assembler,
}

impl TdtWatch {
    /// Aligned packets; the UTC (Unix seconds) of the last TDT/TOT in
    /// them, if any.
    pub fn push_packets(&mut self, data: &[u8]) -> Option<i64> {
        use crate::ts::{pid, table_id, Packet, PACKET_SIZE};
        let mut last = None;
        for raw in data.chunks_exact(PACKET_SIZE) {
            if raw[1] & 0x1F != 0 || raw[2] != pid::TDT as u8 {
                continue;
            }
            let Ok(p) = Packet::new_checked(raw) else {
                continue;
            };
            if p.scrambling_control() != 0 {
                continue;
            }
            self.asm.push(&p, |s| {
                let Ok(s) = crate::ts::section::Section::new_checked(s) else {
                    return;
                };
                let utc = match s.table_id() {
                    table_id::TDT => crate::ts::tdt::TdtRepr::parse(&s)
                        .ok()
                        .and_then(|t| t.utc_time()),
                    table_id::TOT => crate::ts::tot::TotRepr::parse(&s)
                        .ok()
                        .and_then(|t| t.utc_time()),
                    _ => None,
                };
                if utc.is_some() {
                    last = utc;
                }
            });
        }
        last
    }
}
