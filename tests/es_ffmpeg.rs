//! PES headers and video entry points on streams ffmpeg made, checked
//! against ffprobe's own demuxer/parsers (PTS, DTS, packet positions and
//! keyframe flags).

use capbox::ts::es::{EntryPointDetector, EntryPointGate};
use capbox::ts::pes::PesHeader;
use capbox::ts::pmt::VideoCodec;
use capbox::ts::{Packet, PACKET_SIZE};
use std::path::{Path, PathBuf};
use std::process::Command;

const VIDEO_PID: u16 = 0x100;

fn tool_present(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("!!!!! SKIPPING: {name} not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

fn encoder_present(enc: &str) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let ok = s.lines().any(|l| l.split_whitespace().nth(1) == Some(enc));
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg has no {enc} encoder !!!!!");
    }
    ok
}

/// Six seconds of test pattern + tone, video on PID 0x100, into target/.
fn make_ts(name: &str, video_args: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("es_{name}.ts"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "6", "-map", "0:v", "-map", "1:a"])
        .args(video_args)
        .args(["-c:a", "mp2", "-f", "mpegts"])
        .arg(&out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
    out
}

/// (pos, pts, dts, key) of each video packet, per ffprobe.
fn ffprobe_video_packets(path: &Path) -> Vec<(u64, Option<u64>, Option<u64>, bool)> {
    ffprobe_packets(path, "v")
}

fn ffprobe_packets(path: &Path, select: &str) -> Vec<(u64, Option<u64>, Option<u64>, bool)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", select, "-show_packets"])
        .args(["-show_entries", "packet=pts,dts,pos,flags", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pos"].as_str().unwrap().parse().unwrap(),
                p["pts"].as_u64(),
                p["dts"].as_u64(),
                p["flags"].as_str().unwrap().starts_with('K'),
            )
        })
        .collect()
}

fn packets(data: &[u8]) -> impl Iterator<Item = (u64, Packet<&[u8]>)> {
    data.chunks_exact(PACKET_SIZE)
        .enumerate()
        .map(|(i, c)| ((i * PACKET_SIZE) as u64, Packet::new_checked(c).unwrap()))
}

#[test]
fn pes_pts_dts_match_ffprobe() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") {
        return;
    }
    let path = make_ts("pes_mpeg2", &["-c:v", "mpeg2video", "-g", "25", "-bf", "2"]);
    let data = std::fs::read(&path).unwrap();
    let mut ours = Vec::new();
    for (pos, p) in packets(&data) {
        if p.pid() == VIDEO_PID && p.payload_unit_start() {
            let h = PesHeader::new_checked(p.payload()).unwrap();
            assert_eq!(h.stream_id() & 0xF0, 0xE0);
            // ffprobe reports DTS = PTS when the PES has only a PTS.
            ours.push((pos, h.pts(), h.dts().or(h.pts())));
        }
    }
    let theirs: Vec<_> = ffprobe_video_packets(&path)
        .into_iter()
        .map(|(pos, pts, dts, _)| (pos, pts, dts))
        .collect();
    assert!(theirs.len() >= 140, "{} packets", theirs.len());
    // B-frames: some PES must carry a DTS different from the PTS.
    assert!(ours.iter().any(|&(_, p, d)| p != d));
    assert_eq!(ours, theirs);
}

/// Runs the detector and the gate over the file; returns the offsets of the
/// PES start packets found to be entry points (and checks they agree).
fn entry_points(path: &Path, codec: VideoCodec) -> Vec<u64> {
    entry_points_on(path, codec, VIDEO_PID)
}

fn entry_points_on(path: &Path, codec: VideoCodec, video_pid: u16) -> Vec<u64> {
    let data = std::fs::read(path).unwrap();
    let mut det = EntryPointDetector::new(codec);
    let mut last_start = None;
    let mut found = Vec::new();
    for (pos, p) in packets(&data) {
        if p.pid() != video_pid {
            continue;
        }
        if p.payload_unit_start() {
            last_start = Some(pos);
        }
        if let Some(true) = det.push(&p) {
            found.push(last_start.unwrap());
        }
    }
    assert!(!det.is_pending() || det.stats.pes > 0);

    // The gate: same verdicts, every packet handed on once and in order.
    let mut gate = EntryPointGate::new(codec, video_pid);
    let mut out = Vec::with_capacity(data.len());
    let mut gate_found = Vec::new();
    for (_, p) in packets(&data) {
        gate.push(&p, |bytes, ep| {
            assert_eq!(bytes.len() % PACKET_SIZE, 0);
            if ep {
                let first = Packet::new_checked(bytes).unwrap();
                assert!(first.pid() == video_pid && first.payload_unit_start());
                gate_found.push(out.len() as u64);
            }
            out.extend_from_slice(bytes);
        });
    }
    gate.flush(|bytes, _| out.extend_from_slice(bytes));
    assert!(out == data, "gate reordered or lost packets");
    assert_eq!(gate_found, found);
    assert_eq!(gate.stats.held_overflows, 0);
    found
}

fn keyframe_positions(path: &Path) -> Vec<u64> {
    ffprobe_video_packets(path)
        .into_iter()
        .filter(|p| p.3)
        .map(|p| p.0)
        .collect()
}

fn check_codec(name: &str, codec: VideoCodec, args: &[&str], min_keyframes: usize) {
    let path = make_ts(name, args);
    let theirs = keyframe_positions(&path);
    let ours = entry_points(&path, codec);
    eprintln!("{name}: {} entry points", ours.len());
    assert!(
        theirs.len() >= min_keyframes,
        "{name}: ffprobe keyframes {theirs:?}"
    );
    assert_eq!(ours, theirs, "{name}");
}

#[test]
fn mpeg2_entry_points_match_ffprobe_keyframes() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") {
        return;
    }
    check_codec(
        "mpeg2",
        VideoCodec::Mpeg2,
        &["-c:v", "mpeg2video", "-g", "25", "-bf", "2"],
        6,
    );
}

#[test]
fn h264_entry_points_match_ffprobe_keyframes() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") || !encoder_present("libx264") {
        return;
    }
    check_codec(
        "h264",
        VideoCodec::H264,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-bf",
            "2",
        ],
        6,
    );
}

#[test]
fn h264_intra_refresh_recovery_point_sei() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") || !encoder_present("libx264") {
        return;
    }
    // No IDR after the first frame: only recovery point SEIs mark entries.
    check_codec(
        "h264_ir",
        VideoCodec::H264,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-bf",
            "0",
            "-x264-params",
            "intra-refresh=1",
        ],
        6,
    );
}

#[test]
fn hevc_entry_points_match_ffprobe_keyframes() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") || !encoder_present("libx265") {
        return;
    }
    check_codec(
        "hevc",
        VideoCodec::Hevc,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-bf",
            "2",
            "-x265-params",
            "log-level=error",
        ],
        6,
    );
}

/// The committed sample: three H.264 services, keyframes every second.
#[test]
fn sample_mux_entry_points_match_ffprobe() {
    if !tool_present("ffprobe") {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts");
    for pid in [0x101u16, 0x201, 0x301] {
        let theirs: Vec<u64> = ffprobe_packets(&path, &format!("i:{pid:#x}"))
            .into_iter()
            .filter(|p| p.3)
            .map(|p| p.0)
            .collect();
        let ours = entry_points_on(&path, VideoCodec::H264, pid);
        assert!(theirs.len() >= 19, "pid {pid:#x}: {theirs:?}");
        assert_eq!(ours, theirs, "pid {pid:#x}");
    }
}
