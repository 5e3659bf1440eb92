//! Unit tests of the health verdicts on a synthetic program (PAT, PMT, one
//! video and one audio stream with PES and PTS) fed on a fake clock. The
//! same verdicts on streams ffmpeg made are in tests/channel_health.rs.

use super::*;
use crate::ts::packet::write_header;
use crate::ts::pat::PatEntry;
use crate::ts::pes::encode_pts;
use crate::ts::pmt::PmtStream;
use crate::ts::section::packetize;
use std::time::Duration;

const PMT_PID: u16 = 0x100;
const VIDEO: u16 = 0x101;
const AUDIO: u16 = 0x102;

/// Faults the generator can inject.
#[derive(Default, Clone, Copy)]
struct Faults {
    no_pat: bool,
    /// The PAT (version 1) names program 8 instead of 7.
    other_program: bool,
    no_pmt: bool,
    no_video: bool,
    no_audio: bool,
    freeze_video_pts: bool,
    scramble: bool,
    /// Skip a CC value on the video PID every N video packets.
    cc_gap_every: Option<u64>,
}

/// A 10 ms-tick generator of one program: PAT+PMT every 100 ms, a video PES
/// (3 packets) every 40 ms, an audio PES (1 packet) every 20 ms.
struct Gen {
    t_ms: u64,
    cc: [u8; 4],
    video_pts: u64,
    audio_pts: u64,
    video_packets: u64,
    faults: Faults,
}

impl Gen {
    fn new() -> Gen {
        Gen {
            t_ms: 0,
            cc: [0; 4],
            video_pts: 90_000,
            audio_pts: 90_000,
            video_packets: 0,
            faults: Faults::default(),
        }
    }

    fn pat(other: bool) -> Vec<u8> {
        PatRepr {
            transport_stream_id: 1,
            version: other as u8,
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: if other { 8 } else { 7 },
                pid: PMT_PID,
            }],
        }
        .emit()
    }

    fn pmt() -> Vec<u8> {
        PmtRepr {
            program_number: 7,
            version: 0,
            pcr_pid: VIDEO,
            program_info: vec![],
            streams: vec![
                PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: VIDEO,
                    descriptors: vec![],
                },
                PmtStream {
                    stream_type: 0x0F,
                    elementary_pid: AUDIO,
                    descriptors: vec![],
                },
            ],
        }
        .emit()
    }

    fn pes(&mut self, out: &mut Vec<u8>, pid: u16, slot: usize, pts: u64, n: usize) {
        for i in 0..n {
            let start = out.len();
            out.resize(start + 188, 0xAA);
            let p = &mut out[start..];
            let mut cc = self.cc[slot];
            if pid == VIDEO {
                self.video_packets += 1;
                if let Some(k) = self.faults.cc_gap_every {
                    if self.video_packets.is_multiple_of(k) {
                        cc = (cc + 1) & 0x0F;
                    }
                }
            }
            write_header(p, pid, i == 0, cc);
            self.cc[slot] = (cc + 1) & 0x0F;
            if i == 0 {
                p[4..10].copy_from_slice(&[0, 0, 1, if pid == VIDEO { 0xE0 } else { 0xC0 }, 0, 0]);
                p[10] = 0x80;
                p[11] = 0x80;
                p[12] = 5;
                let mut ts = [0; 5];
                encode_pts(pts, 0b0010, &mut ts);
                p[13..18].copy_from_slice(&ts);
            }
            if self.faults.scramble {
                p[3] |= 0x80;
            }
        }
    }

    /// The packets of the next 10 ms.
    fn tick(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let t = self.t_ms;
        if t.is_multiple_of(100) {
            if !self.faults.no_pat {
                packetize(
                    &Self::pat(self.faults.other_program),
                    0,
                    &mut self.cc[0],
                    &mut out,
                );
            }
            if !self.faults.no_pmt {
                packetize(&Self::pmt(), PMT_PID, &mut self.cc[1], &mut out);
            }
        }
        if t.is_multiple_of(40) && !self.faults.no_video {
            if !self.faults.freeze_video_pts {
                self.video_pts += 3600;
            }
            let pts = self.video_pts;
            self.pes(&mut out, VIDEO, 2, pts, 3);
        }
        if t.is_multiple_of(20) && !self.faults.no_audio {
            self.audio_pts += 1800;
            let pts = self.audio_pts;
            self.pes(&mut out, AUDIO, 3, pts, 1);
        }
        self.t_ms += 10;
        out
    }
}

/// Run `ms` of the generator into `h`, starting at `t0 + gen.t_ms`.
fn run(h: &mut SourceHealth, g: &mut Gen, t0: Instant, ms: u64) {
    let end = g.t_ms + ms;
    while g.t_ms < end {
        let now = t0 + Duration::from_millis(g.t_ms);
        let p = g.tick();
        h.observe(&p, now);
    }
}

fn at(t0: Instant, g: &Gen) -> Instant {
    t0 + Duration::from_millis(g.t_ms)
}

fn healthy_then(faults: Faults, ms: u64) -> (SourceHealth, Gen, Instant) {
    let t0 = Instant::now();
    let mut h = SourceHealth::new(HealthRules::default());
    let mut g = Gen::new();
    run(&mut h, &mut g, t0, 1000);
    assert_eq!(h.verdict(at(t0, &g)), Verdict::Ok, "{:?}", h);
    g.faults = faults;
    run(&mut h, &mut g, t0, ms);
    (h, g, t0)
}

#[test]
fn fresh_monitor_never_started() {
    let h = SourceHealth::new(HealthRules::default());
    let v = h.verdict(Instant::now());
    assert_eq!(v, Verdict::NeverStarted);
    assert_eq!(v.to_string(), "no packets yet");
    assert!(!h.is_healthy(Instant::now()));
}

#[test]
fn clean_program_is_ok_and_finds_streams() {
    let (h, g, t0) = healthy_then(Faults::default(), 3000);
    let now = at(t0, &g);
    assert_eq!(h.verdict(now), Verdict::Ok);
    assert!(h.is_healthy(now));
    assert_eq!(h.program(), Some((7, PMT_PID)));
    let st = h.status(now);
    assert_eq!(st.verdict, "ok");
    assert_eq!(st.streams.len(), 2);
    assert_eq!(st.streams[0].kind, "video");
    assert_eq!(st.streams[1].kind, "audio");
    assert_eq!(h.stats.cc_errors, 0);
    assert_eq!(h.stats.scrambled_packets, 0);
}

#[test]
fn unproven_source_is_not_healthy() {
    let t0 = Instant::now();
    let mut h = SourceHealth::new(HealthRules::default());
    let mut g = Gen::new();
    g.faults.no_pat = true;
    run(&mut h, &mut g, t0, 50);
    assert!(matches!(h.verdict(at(t0, &g)), Verdict::NoPat { .. }));
}

#[test]
fn stall_after_stall_ms_in_words() {
    let (h, g, t0) = healthy_then(Faults::default(), 0);
    // The last 10 ms tick with packets was at 980 ms.
    let last = t0 + Duration::from_millis(980);
    assert!(g.t_ms == 1000);
    assert!(h.is_healthy(last + Duration::from_millis(300)));
    let v = h.verdict(last + Duration::from_millis(450));
    assert_eq!(v, Verdict::Stalled { for_ms: 450 });
    assert_eq!(v.to_string(), "stalled 450 ms");
}

#[test]
fn pat_gone() {
    let f = Faults {
        no_pat: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 1500);
    let v = h.verdict(at(t0, &g));
    assert!(
        matches!(v, Verdict::NoPat { for_ms } if for_ms > 1000),
        "{v}"
    );
    assert!(v.to_string().starts_with("no PAT for 1."), "{v}");
}

#[test]
fn program_leaves_the_pat() {
    let f = Faults {
        other_program: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 1500);
    let v = h.verdict(at(t0, &g));
    assert!(
        matches!(
            v,
            Verdict::NoProgram {
                program_number: None,
                ..
            }
        ) || h.program() == Some((8, PMT_PID)),
        "{v}"
    );
    // Asked for program 7 by number: the new PAT lacks it.
    let t0 = Instant::now();
    let mut h = SourceHealth::for_program(HealthRules::default(), 7);
    let mut g = Gen::new();
    run(&mut h, &mut g, t0, 1000);
    assert!(h.is_healthy(at(t0, &g)));
    g.faults = f;
    run(&mut h, &mut g, t0, 1500);
    let v = h.verdict(at(t0, &g));
    assert!(
        matches!(
            v,
            Verdict::NoProgram {
                program_number: Some(7),
                ..
            }
        ),
        "{v}"
    );
    assert_eq!(v.to_string(), "program 7 not in the PAT for 1.5 s");
}

#[test]
fn pmt_gone() {
    let f = Faults {
        no_pmt: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 1500);
    let v = h.verdict(at(t0, &g));
    assert!(
        matches!(
            v,
            Verdict::NoPmt {
                pmt_pid: PMT_PID,
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn video_removed() {
    let f = Faults {
        no_video: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 1500);
    assert!(h.is_healthy(at(t0, &g)), "1.5 s is within pes_ms");
    let (h, g, t0) = healthy_then(f, 2500);
    let v = h.verdict(at(t0, &g));
    assert!(matches!(v, Verdict::NoVideoPes { pid: VIDEO, .. }), "{v}");
    assert!(v.to_string().starts_with("no video PES for 2."), "{v}");
}

#[test]
fn audio_removed() {
    let f = Faults {
        no_audio: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 2500);
    let v = h.verdict(at(t0, &g));
    assert!(matches!(v, Verdict::NoAudioPes { pid: AUDIO, .. }), "{v}");
}

#[test]
fn frozen_pts() {
    let f = Faults {
        freeze_video_pts: true,
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 2500);
    let v = h.verdict(at(t0, &g));
    assert!(matches!(v, Verdict::PtsStuck { pid: VIDEO, .. }), "{v}");
    assert!(v.to_string().starts_with("PTS stuck for 2."), "{v}");
}

#[test]
fn still_scrambled_and_recovers() {
    let f = Faults {
        scramble: true,
        ..Faults::default()
    };
    let (mut h, mut g, t0) = healthy_then(f, 500);
    let v = h.verdict(at(t0, &g));
    assert!(matches!(v, Verdict::Scrambled { .. }), "{v}");
    assert!(
        v.to_string().starts_with("scrambled: no control word"),
        "{v}"
    );
    // The control word arrives: healthy again once the window has passed.
    g.faults = Faults::default();
    run(&mut h, &mut g, t0, 1500);
    assert_eq!(h.verdict(at(t0, &g)), Verdict::Ok);
}

#[test]
fn continuity_errors_per_minute() {
    let f = Faults {
        cc_gap_every: Some(10),
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 3000);
    // 75 video packets per second: 7 errors a second.
    let v = h.verdict(at(t0, &g));
    assert!(
        matches!(v, Verdict::CcErrors { per_min } if per_min >= 20),
        "{v}"
    );
    assert!(v.to_string().ends_with("continuity errors per minute"));
    // A few errors stay below the threshold.
    let f = Faults {
        cc_gap_every: Some(100),
        ..Faults::default()
    };
    let (h, g, t0) = healthy_then(f, 2000);
    assert_eq!(h.verdict(at(t0, &g)), Verdict::Ok);
    assert!(h.stats.cc_errors > 0);
}

#[test]
fn cc_errors_age_out_after_a_minute() {
    let f = Faults {
        cc_gap_every: Some(5),
        ..Faults::default()
    };
    let (mut h, mut g, t0) = healthy_then(f, 2000);
    assert!(matches!(h.verdict(at(t0, &g)), Verdict::CcErrors { .. }));
    g.faults = Faults::default();
    run(&mut h, &mut g, t0, 62_000);
    assert_eq!(h.verdict(at(t0, &g)), Verdict::Ok);
}

#[test]
fn pmt_version_change_keeps_history_and_drops_gone_streams() {
    let t0 = Instant::now();
    let mut h = SourceHealth::new(HealthRules::default());
    let mut g = Gen::new();
    run(&mut h, &mut g, t0, 1000);
    // A new PMT version without the audio stream.
    let pmt = PmtRepr {
        program_number: 7,
        version: 1,
        pcr_pid: VIDEO,
        program_info: vec![],
        streams: vec![PmtStream {
            stream_type: 0x1B,
            elementary_pid: VIDEO,
            descriptors: vec![],
        }],
    }
    .emit();
    let mut out = Vec::new();
    let mut cc = g.cc[1];
    packetize(&pmt, PMT_PID, &mut cc, &mut out);
    h.observe(&out, at(t0, &g));
    assert_eq!(h.status(at(t0, &g)).streams.len(), 1);
    assert!(h.status(at(t0, &g)).streams[0].pes > 0);
}

#[test]
fn garbage_never_panics_and_memory_stays_bounded() {
    let t0 = Instant::now();
    let mut h = SourceHealth::new(HealthRules::default());
    let mut x = 0x9E37_79B9u32;
    let mut buf = vec![0u8; 188 * 64];
    for round in 0..2000u64 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        // Keep sync bytes and steer PIDs to the PSI and ES PIDs so the
        // parsers see the garbage.
        for (i, p) in buf.chunks_exact_mut(188).enumerate() {
            p[0] = 0x47;
            let pid = [0u16, PMT_PID, VIDEO, AUDIO, p[2] as u16][i % 5];
            p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
            p[2] = pid as u8;
        }
        h.observe(&buf, t0 + Duration::from_millis(round));
        let _ = h.verdict(t0 + Duration::from_millis(round));
        assert!(h.es.len() <= MAX_ES);
        assert!(h.pat_tables.buffered_bytes() <= 16 * 1024);
    }
    // Odd lengths and a clock that goes back.
    h.observe(&[0x47; 100], t0);
    h.observe(&[0x00; 188 * 2 + 5], t0 + Duration::from_millis(5));
    assert!(h.stats.bad_packets >= 2);
    assert!(h.stats.clock_backwards >= 1);
}

#[test]
fn reset_stream_needs_new_proof() {
    let (mut h, g, t0) = healthy_then(Faults::default(), 100);
    h.reset_stream();
    assert!(matches!(h.verdict(at(t0, &g)), Verdict::NoPat { .. }));
}

#[test]
fn words() {
    assert_eq!(
        Verdict::Stalled { for_ms: 400 }.to_string(),
        "stalled 400 ms"
    );
    assert_eq!(
        Verdict::NoVideoPes {
            pid: 256,
            for_ms: 2000
        }
        .to_string(),
        "no video PES for 2 s (PID 256)"
    );
    assert_eq!(
        Verdict::NoAudioPes {
            pid: 257,
            for_ms: 2500
        }
        .to_string(),
        "no audio PES for 2.5 s (PID 257)"
    );
}
