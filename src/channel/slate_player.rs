//! Plays a slate file in a loop, paced by its own PCR, from the channel's
//! ticks: no thread and no file handle while the slate is off air (the
//! slate is a cold source), a bounded copy in memory while it plays.

use crate::ts::packet::{pcr_delta, Packet, PACKET_SIZE};
use std::path::Path;
use std::time::{Duration, Instant};

/// Slates are a few seconds of a still picture: a file above this is
/// refused rather than held in memory.
pub const MAX_SLATE_BYTES: u64 = 16 << 20;

/// At most this many packets go out per call (a late tick does not dump
/// the whole file at once; the rest follows on the next ticks).
const MAX_PACKETS_PER_CALL: usize = 2000;

/// A gap longer than this (the channel was not ticked) restarts the loop
/// instead of catching up.
const MAX_BEHIND: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct SlatePlayer {
    data: Vec<u8>,
    /// Per packet: its time from the start of the loop.
    times: Vec<Duration>,
    duration: Duration,
    pos: usize,
    loop_start: Instant,
    pub loops: u64,
}

impl SlatePlayer {
    /// Load and index a slate; the error says what is wrong with the file.
    pub fn load(path: &Path) -> Result<SlatePlayer, String> {
        let what = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("slate {what}: {e}"))?;
        if meta.len() > MAX_SLATE_BYTES {
            return Err(format!(
                "slate {what}: {} bytes, more than the {} a slate may have",
                meta.len(),
                MAX_SLATE_BYTES
            ));
        }
        let raw = std::fs::read(path).map_err(|e| format!("slate {what}: {e}"))?;
        Self::from_bytes(raw).map_err(|e| format!("slate {what}: {e}"))
    }

    pub fn from_bytes(raw: Vec<u8>) -> Result<SlatePlayer, String> {
        let data: Vec<u8> = raw
            .chunks_exact(PACKET_SIZE)
            .filter(|p| p[0] == 0x47)
            .flatten()
            .copied()
            .collect();
        let n = data.len() / PACKET_SIZE;
        if n == 0 {
            return Err("no MPEG-TS packets".into());
        }
        // Time of each packet: from the PCRs, interpolated between them by
        // packet count; packets before the first PCR are at 0.
        let mut pcrs: Vec<(usize, u64)> = Vec::new();
        let mut pcr_pid = None;
        for (i, p) in data.chunks_exact(PACKET_SIZE).enumerate() {
            let Ok(pkt) = Packet::new_checked(p) else {
                continue;
            };
            if let Some(pcr) = pkt.pcr() {
                if pcr_pid.is_none() {
                    pcr_pid = Some(pkt.pid());
                }
                if pcr_pid == Some(pkt.pid()) {
                    pcrs.push((i, pcr));
                }
            }
        }
        if pcrs.len() < 2 {
            return Err("fewer than two PCRs: cannot be paced".into());
        }
        let (first_i, first) = pcrs[0];
        let mut times = vec![Duration::ZERO; n];
        let at = |pcr: u64| Duration::from_nanos(pcr_delta(first, pcr) * 1000 / 27);
        for w in pcrs.windows(2) {
            let ((i0, p0), (i1, p1)) = (w[0], w[1]);
            let (t0, t1) = (at(p0), at(p1));
            for (k, t) in times.iter_mut().enumerate().take(i1).skip(i0) {
                let frac = (k - i0) as f64 / (i1 - i0).max(1) as f64;
                *t = t0 + (t1.saturating_sub(t0)).mul_f64(frac);
            }
        }
        let (last_i, last) = pcrs[pcrs.len() - 1];
        // The mean packet spacing carries the time past the last PCR.
        let per_packet = at(last) / (last_i - first_i).max(1) as u32;
        for (k, t) in times.iter_mut().enumerate().skip(last_i) {
            *t = at(last) + per_packet * (k - last_i) as u32;
        }
        let duration = times[n - 1] + per_packet;
        if duration < Duration::from_millis(100) || duration > Duration::from_secs(600) {
            return Err(format!("loop of {duration:?}: expected 0.1 s to 10 min"));
        }
        Ok(SlatePlayer {
            data,
            times,
            duration,
            pos: 0,
            loop_start: Instant::now(),
            loops: 0,
        })
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Start from the beginning at `now`.
    pub fn restart(&mut self, now: Instant) {
        self.pos = 0;
        self.loop_start = now;
    }

    /// Append the packets due by `now`.
    pub fn play(&mut self, now: Instant, out: &mut Vec<u8>) {
        let n = self.times.len();
        let due = |s: &Self| s.loop_start + s.times[s.pos.min(n - 1)];
        if now.saturating_duration_since(due(self)) > MAX_BEHIND {
            self.loop_start = now;
            self.pos = 0;
        }
        for _ in 0..MAX_PACKETS_PER_CALL {
            if self.pos >= n {
                self.pos = 0;
                self.loop_start += self.duration;
                self.loops += 1;
            }
            if due(self) > now {
                return;
            }
            let p = self.pos * PACKET_SIZE;
            out.extend_from_slice(&self.data[p..p + PACKET_SIZE]);
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipped_slate_plays_in_real_time_and_loops() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("slates/h264-576i25-mp2.ts");
        let mut s = SlatePlayer::load(&p).unwrap();
        let d = s.duration();
        assert!(
            d > Duration::from_millis(1900) && d < Duration::from_millis(2200),
            "{d:?}"
        );
        let t0 = Instant::now();
        s.restart(t0);
        let mut out = Vec::new();
        s.play(t0 + Duration::from_millis(1000), &mut out);
        let half = out.len();
        let total = std::fs::metadata(&p).unwrap().len() as usize;
        assert!(
            half > total / 4 && half < total * 3 / 4,
            "{half} of {total}"
        );
        let mut step = t0 + Duration::from_millis(1000);
        for _ in 0..300 {
            step += Duration::from_millis(20);
            s.play(step, &mut out);
        }
        assert!(s.loops >= 2, "{}", s.loops);
        assert_eq!(out.len() % PACKET_SIZE, 0);
    }

    #[test]
    fn bad_slates_are_refused_in_words() {
        assert!(SlatePlayer::from_bytes(vec![0u8; 1000])
            .unwrap_err()
            .contains("no MPEG-TS"));
        let mut p = vec![0u8; 188];
        p[0] = 0x47;
        assert!(SlatePlayer::from_bytes(p).unwrap_err().contains("PCR"));
        let e = SlatePlayer::load(Path::new("/nonexistent/slate.ts")).unwrap_err();
        assert!(e.contains("/nonexistent/slate.ts"), "{e}");
    }
}
