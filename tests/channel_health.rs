//! `channel::health` on streams ffmpeg made (samples/mux.ts and a program
//! made here from `-f lavfi` sources): ok on the clean stream, then each
//! fault injected two seconds in — video PID removed, audio PID removed,
//! PTS frozen, scrambling bits set, CC errors, no PAT, a stall — must give
//! its verdict. The clock is the stream's own PCR, as if it were live.

use capbox::channel::health::{HealthRules, SourceHealth, Verdict};
use capbox::ts::pes::encode_pts;
use capbox::ts::{Packet, PACKET_SIZE};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
/// Faults start this far into the stream (stream time).
const FAULT_AT_MS: u64 = 2000;

fn ffmpeg_present() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

/// Six seconds of test pattern + tone, one program, video on 0x100 and
/// audio on 0x101 (MPEG-2 video and MP2: encoders every ffmpeg has).
fn make_program() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("health_program.ts");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "6", "-map", "0:v", "-map", "1:a"])
        .args(["-c:v", "mpeg2video", "-b:v", "600k", "-g", "25"])
        .args(["-c:a", "mp2", "-b:a", "128k"])
        .args(["-mpegts_start_pid", "0x100", "-f", "mpegts"])
        .arg(&out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
    out
}

/// Feed `data` to `h` in reads of 7 packets, on a clock driven by the PCR
/// (the first PID carrying one) from `t0`. `fault(packet, stream_ms)`
/// edits a packet or returns false to drop it. Returns the time of the last
/// packet.
fn feed(
    h: &mut SourceHealth,
    data: &[u8],
    t0: Instant,
    mut fault: impl FnMut(&mut [u8], u64) -> bool,
) -> Instant {
    let mut pcr_pid = None;
    let mut pcr0 = None;
    let mut now_ms = 0u64;
    let mut read = Vec::with_capacity(7 * PACKET_SIZE);
    for raw in data.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(raw).expect("ffmpeg wrote a bad packet");
        if let Some(pcr) = p.pcr() {
            if pcr_pid.is_none() {
                pcr_pid = Some(p.pid());
            }
            if pcr_pid == Some(p.pid()) {
                let base = *pcr0.get_or_insert(pcr);
                now_ms = pcr.saturating_sub(base) / 27_000;
            }
        }
        let mut pkt = raw.to_vec();
        if fault(&mut pkt, now_ms) {
            read.extend_from_slice(&pkt);
        }
        if read.len() >= 7 * PACKET_SIZE {
            h.observe(&read, t0 + Duration::from_millis(now_ms));
            read.clear();
        }
    }
    h.observe(&read, t0 + Duration::from_millis(now_ms));
    t0 + Duration::from_millis(now_ms)
}

fn pid(p: &[u8]) -> u16 {
    (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
}

/// The verdict at the end of the program with `fault` applied from 2 s.
fn verdict_with(data: &[u8], mut fault: impl FnMut(&mut [u8]) -> bool) -> (Verdict, SourceHealth) {
    let mut h = SourceHealth::new(HealthRules::default());
    let t0 = Instant::now();
    let mut ok_before = None;
    let end = feed(&mut h, data, t0, |p, ms| {
        if ms < FAULT_AT_MS {
            return true;
        }
        if ok_before.is_none() {
            ok_before = Some(ms);
        }
        fault(p)
    });
    (h.verdict(end), h)
}

#[test]
fn sample_mux_is_ok_and_stalls_when_fed_nothing() {
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts")).unwrap();
    let mut h = SourceHealth::new(HealthRules::default());
    let t0 = Instant::now();
    let end = feed(&mut h, &data, t0, |_, _| true);
    let v = h.verdict(end);
    assert_eq!(v, Verdict::Ok, "{h:?}");
    // The first program of the PAT: Demo News, PMT on 0x1000.
    assert_eq!(h.program(), Some((1, 0x1000)));
    let st = h.status(end);
    let pids: Vec<u16> = st.streams.iter().map(|s| s.pid).collect();
    assert_eq!(pids, vec![0x101, 0x102]);
    assert_eq!(h.stats.cc_errors, 0);
    // Another program of the same mux, asked for by number.
    let mut h3 = SourceHealth::for_program(HealthRules::default(), 3);
    let end3 = feed(&mut h3, &data, t0, |_, _| true);
    assert_eq!(h3.verdict(end3), Verdict::Ok);
    assert_eq!(h3.program(), Some((3, 0x1002)));
    let mut h9 = SourceHealth::for_program(HealthRules::default(), 9);
    let end9 = feed(&mut h9, &data, t0, |_, _| true);
    let v = h9.verdict(end9);
    assert!(
        matches!(
            v,
            Verdict::NoProgram {
                program_number: Some(9),
                ..
            }
        ),
        "{v}"
    );
    assert!(
        v.to_string().starts_with("program 9 not in the PAT for"),
        "{v}"
    );
    // Nothing more arrives.
    let v = h.verdict(end + Duration::from_millis(1000));
    assert_eq!(v, Verdict::Stalled { for_ms: 1000 });
    assert_eq!(v.to_string(), "stalled 1 s");
}

#[test]
fn ffmpeg_program_ok_then_each_fault() {
    if !ffmpeg_present() {
        return;
    }
    let data = std::fs::read(make_program()).unwrap();

    let (v, h) = verdict_with(&data, |_| true);
    assert_eq!(v, Verdict::Ok, "clean stream: {h:?}");
    assert_eq!(h.status(Instant::now()).streams.len(), 2);

    let (v, _) = verdict_with(&data, |p| pid(p) != VIDEO);
    assert!(
        matches!(v, Verdict::NoVideoPes { pid: VIDEO, .. }),
        "video removed: {v}"
    );
    assert!(v.to_string().starts_with("no video PES for"), "{v}");

    let (v, _) = verdict_with(&data, |p| pid(p) != AUDIO);
    assert!(
        matches!(v, Verdict::NoAudioPes { pid: AUDIO, .. }),
        "audio removed: {v}"
    );

    // Frozen PTS (and DTS) on the video: every PES says the same time.
    let (v, _) = verdict_with(&data, |p| {
        if pid(p) == VIDEO && p[1] & 0x40 != 0 {
            let off = Packet::new_checked(&p[..]).unwrap().payload_offset();
            let pes = &mut p[off..];
            if pes.len() >= 19 && pes[..3] == [0, 0, 1] {
                let flags = pes[7] >> 6;
                let mut ts = [0u8; 5];
                if flags & 0b10 != 0 {
                    encode_pts(
                        900_000,
                        if flags == 0b11 { 0b0011 } else { 0b0010 },
                        &mut ts,
                    );
                    pes[9..14].copy_from_slice(&ts);
                }
                if flags == 0b11 {
                    encode_pts(900_000, 0b0001, &mut ts);
                    pes[14..19].copy_from_slice(&ts);
                }
            }
        }
        true
    });
    assert!(
        matches!(v, Verdict::PtsStuck { pid: VIDEO, .. }),
        "PTS frozen: {v}"
    );

    // The descrambler has no control word: ES packets keep their bits.
    let (v, _) = verdict_with(&data, |p| {
        if pid(p) == VIDEO || pid(p) == AUDIO {
            p[3] |= 0x80;
        }
        true
    });
    assert!(matches!(v, Verdict::Scrambled { .. }), "scrambled: {v}");
    assert!(
        v.to_string().starts_with("scrambled: no control word"),
        "{v}"
    );

    // Every 10th video packet lost: continuity errors.
    let mut n = 0;
    let (v, h) = verdict_with(&data, |p| {
        if pid(p) == VIDEO {
            n += 1;
            return n % 10 != 0;
        }
        true
    });
    assert!(
        matches!(v, Verdict::CcErrors { per_min } if per_min > 20),
        "CC: {v}"
    );
    assert!(h.stats.cc_errors > 20);

    let (v, _) = verdict_with(&data, |p| pid(p) != 0);
    assert!(
        matches!(v, Verdict::NoPat { for_ms } if for_ms > 1000),
        "no PAT: {v}"
    );
}
