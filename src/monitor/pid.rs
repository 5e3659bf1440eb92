//! The per-PID analyser: what one PID's packets say at the transport
//! layer — packets, transport errors, scrambling, continuity (by the one
//! rule of `cc`), the PCR clock — and, on PES PIDs, the PTS span and the
//! MPEG audio layer. `probe` keeps one per PID seen; the TR 101 290
//! indicators of the next steps grow here, so the probe, the input muxes
//! and the channels count them alike.

use super::cc::CcCheck;
use crate::ts::packet::{pcr_delta, Packet, PCR_HZ};
use crate::ts::pes::{pts_delta, PesHeader};
use crate::ts::pid;

/// A PCR step longer than this is a gap or a jump, not stream time.
pub const MAX_PCR_STEP: u64 = PCR_HZ;
/// A PTS step longer than half the circle is taken as going backwards.
pub const PTS_HALF: u64 = 1 << 32;

/// Counters and clocks of one PID since the analyser was made.
#[derive(Debug, Default, Clone)]
pub struct PidAnalyser {
    pub packets: u64,
    pub cc_errors: u64,
    pub transport_errors: u64,
    pub scrambled_packets: u64,
    cc: CcCheck,
    pub pcr_count: u64,
    /// (PCR, packet index) of the last PCR.
    last_pcr: Option<(u64, u64)>,
    /// Sum of accepted PCR steps (27 MHz) and the packets they span.
    pub pcr_ticks: u64,
    pub pcr_span_packets: u64,
    pub first_pts: Option<u64>,
    /// Largest forward PTS distance from `first_pts` (B-frames go back).
    pub pts_span: u64,
    /// MPEG audio layer sniffed from a PES payload (1, 2 or 3).
    pub mpeg_audio_layer: Option<u8>,
}

impl PidAnalyser {
    /// The transport layer of one packet of this PID; `idx` is its index in
    /// the stream (for the PCR span). False when the packet is not to be
    /// read further: its transport_error_indicator is set (the header
    /// itself may be wrong — counted, nothing else trusted).
    pub fn packet<T: AsRef<[u8]>>(&mut self, p: &Packet<T>, idx: u64) -> bool {
        self.packets += 1;
        if p.transport_error() {
            self.transport_errors += 1;
            return false;
        }
        if p.scrambling_control() != 0 {
            self.scrambled_packets += 1;
        }
        if p.pid() != pid::NULL && self.cc.check_packet(p) {
            self.cc_errors += 1;
        }
        if let Some(pcr) = p.pcr() {
            self.pcr_count += 1;
            if let Some((prev, prev_idx)) = self.last_pcr {
                let d = pcr_delta(prev, pcr);
                if !p.discontinuity() && d > 0 && d <= MAX_PCR_STEP {
                    self.pcr_ticks += d;
                    self.pcr_span_packets += idx - prev_idx;
                }
            }
            self.last_pcr = Some((pcr, idx));
        }
        true
    }

    /// The start of a clear PES on this PID: PTS span, MPEG audio layer.
    pub fn pes_start<T: AsRef<[u8]>>(&mut self, h: &PesHeader<T>) {
        if let Some(pts) = h.pts() {
            match self.first_pts {
                None => self.first_pts = Some(pts),
                Some(first) => {
                    let d = pts_delta(first, pts);
                    if d < PTS_HALF {
                        self.pts_span = self.pts_span.max(d);
                    }
                }
            }
        }
        if self.mpeg_audio_layer.is_none() {
            self.mpeg_audio_layer = mpeg_audio_layer(h.payload());
        }
    }
}

/// Layer of an MPEG audio frame header at the start of a PES payload.
pub fn mpeg_audio_layer(b: &[u8]) -> Option<u8> {
    if b.len() < 2 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    match (b[1] >> 1) & 3 {
        0 => None,
        bits => Some(4 - bits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::write_header;

    #[test]
    fn mpeg_audio_layers() {
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFD]), Some(2)); // MPEG-1 layer II
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFB]), Some(3)); // MPEG-1 layer III
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xFF]), Some(1));
        assert_eq!(mpeg_audio_layer(&[0xFF, 0xF1]), None); // ADTS (layer 0)
        assert_eq!(mpeg_audio_layer(&[0x00, 0x00]), None);
    }

    #[test]
    fn counts_by_the_one_cc_rule_and_trusts_nothing_after_tei() {
        let mut a = PidAnalyser::default();
        for (i, cc) in [0u8, 1, 2, 2, 4, 4, 4, 5].into_iter().enumerate() {
            let mut b = [0xFFu8; 188];
            write_header(&mut b, 0x100, false, cc);
            assert!(a.packet(&Packet::new_checked(&b[..]).unwrap(), i as u64));
        }
        assert_eq!(a.cc_errors, 2);
        let mut b = [0xFFu8; 188];
        write_header(&mut b, 0x100, false, 9);
        b[1] |= 0x80;
        assert!(!a.packet(&Packet::new_checked(&b[..]).unwrap(), 8));
        assert_eq!((a.packets, a.transport_errors, a.cc_errors), (9, 1, 2));
    }
}
