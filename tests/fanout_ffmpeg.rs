//! A client joining an ffmpeg-made stream mid-GOP through the ring: ffmpeg
//! must find no continuity error and the first video frame must be a key
//! frame. Entry points are ffmpeg's random_access_indicator on video PES
//! starts (stand-in for the keyframe detector).

use std::path::{Path, PathBuf};
use std::process::Command;

use capbox::fanout::{Next, Ring, RingConfig, StartAt};
use capbox::ts::pat::PatRepr;
use capbox::ts::pmt::PmtRepr;
use capbox::ts::section::Section;
use capbox::ts::{Packet, PACKET_SIZE};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

fn section_of(p: &Packet<&[u8]>) -> Option<Vec<u8>> {
    let pl = p.payload();
    let ptr = *pl.first()? as usize;
    pl.get(1 + ptr..).map(|s| s.to_vec())
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("capbox-fanout-{}-{name}", std::process::id()))
}

fn cc_errors(file: &Path) -> usize {
    let out = Command::new("ffmpeg")
        .args(["-v", "debug", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr)
        .matches("Continuity check failed")
        .count()
}

fn first_video_frame(file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames"])
        .args([
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pict_type",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn late_joiner_decodes_cleanly_from_an_ffmpeg_stream() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("!!! ffmpeg/ffprobe not installed: SKIPPING late_joiner_decodes_cleanly");
        return;
    }
    let src = tmp("src.ts");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "6"])
        .args([
            "-c:v",
            "mpeg2video",
            "-g",
            "25",
            "-c:a",
            "mp2",
            "-f",
            "mpegts",
        ])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let ts = std::fs::read(&src).unwrap();

    // PIDs and the PSI prefix from the file's first PAT and PMT packets.
    let mut pmt_pid = None;
    let mut video_pid = None;
    let mut prefix = Vec::new();
    for raw in ts.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(raw).unwrap();
        if p.pid() == 0 && p.payload_unit_start() && pmt_pid.is_none() {
            let s = section_of(&p).unwrap();
            let pat = PatRepr::parse(&Section::new_checked(&s[..]).unwrap()).unwrap();
            pmt_pid = pat.programs().next().map(|e| e.pid);
            prefix.extend_from_slice(raw);
        } else if Some(p.pid()) == pmt_pid && p.payload_unit_start() && video_pid.is_none() {
            let s = section_of(&p).unwrap();
            let pmt = PmtRepr::parse(&Section::new_checked(&s[..]).unwrap()).unwrap();
            video_pid = pmt
                .streams
                .iter()
                .find(|s| s.stream_type == 0x02)
                .map(|s| s.elementary_pid);
            prefix.extend_from_slice(raw);
        }
    }
    let video_pid = video_pid.expect("video PID in PMT");

    let ring = Ring::new(RingConfig {
        max_bytes: 64 << 20,
        ..RingConfig::default()
    });
    ring.set_psi(prefix.clone());
    let mut w = ring.writer();
    let join_at = ts.len() / PACKET_SIZE * 2 / 5; // mid-file, mid-GOP
    let mut reader = None;
    let mut join_offset = 0;
    for (i, raw) in ts.chunks_exact(PACKET_SIZE).enumerate() {
        if i == join_at {
            w.flush();
            reader = Some(ring.subscribe(StartAt::LatestEntryPoint));
        }
        let p = Packet::new_checked(raw).unwrap();
        let entry = p.pid() == video_pid && p.payload_unit_start() && p.random_access();
        if entry && i < join_at {
            join_offset = i * PACKET_SIZE;
        }
        w.push(raw, entry);
    }
    w.flush();
    let mut reader = reader.unwrap();
    let mut out = Vec::new();
    loop {
        match reader.next() {
            Next::Data(d) => out.extend_from_slice(d.as_ref()),
            Next::Pending => break,
            Next::Lagged { .. } => panic!("lagged"),
            Next::Closed => panic!("closed"),
        }
    }
    assert!(join_offset > 0, "no entry point before the join");
    let joined = tmp("joined.ts");
    std::fs::write(&joined, &out).unwrap();
    // The control: the same join point with the prefix as the remux left it
    // and no start filter, which a decoder sees as broken.
    let mut naive = prefix.clone();
    naive.extend_from_slice(&ts[join_offset..]);
    let naive_file = tmp("naive.ts");
    std::fs::write(&naive_file, &naive).unwrap();

    let naive_errors = cc_errors(&naive_file);
    let joined_errors = cc_errors(&joined);
    let first = first_video_frame(&joined);
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&joined);
    let _ = std::fs::remove_file(&naive_file);
    assert!(
        naive_errors > 0,
        "control: the naive join should show CC errors"
    );
    assert_eq!(joined_errors, 0, "CC errors in the joined stream");
    assert!(first.starts_with("1,I"), "first video frame: {first}");
    // Every PID's first packet with payload starts a PES or a section.
    let mut seen = std::collections::HashSet::new();
    for raw in out.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(raw).unwrap();
        if p.has_payload() && seen.insert(p.pid()) {
            assert!(p.payload_unit_start(), "pid {:#x} starts mid-unit", p.pid());
        }
    }
}
