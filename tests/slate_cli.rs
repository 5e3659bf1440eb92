//! `capbox slate`: a slate made in a format the shipped ones do not cover
//! (NTSC-area 1080i 29.97 with AC-3, and MPEG-2 480i), with the operator's
//! text, read back by ffprobe; bad specs are refused in words.

mod e2e_common;

use e2e_common::*;
use std::time::Duration;

fn probe(path: &std::path::Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=codec_name,width,height,field_order,avg_frame_rate,sample_rate,channels")
        .args(["-of", "compact"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn capbox_slate_makes_the_format_asked_for() {
    let dir = TempDir::new("slate-cli");
    let out = dir.join("news.ts");
    let (code, text) = run_capbox(
        &[
            "slate",
            "news",
            "--video",
            "h264-1920x1080i29.97",
            "--audio",
            "ac3",
            "--text",
            "News: back soon",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(code, Some(0), "{text}");
    let p = probe(&out);
    for want in [
        "codec_name=h264",
        "width=1920",
        "height=1080",
        "field_order=tt",
        "avg_frame_rate=30000/1001",
        "codec_name=ac3",
        "sample_rate=48000",
        "channels=2",
    ] {
        assert!(p.contains(want), "{want} not in {p}");
    }
    let out2 = dir.join("sd.ts");
    let (code, text) = run_capbox(
        &[
            "slate",
            "sd",
            "--video",
            "mpeg2-720x480i29.97",
            "--audio",
            "mp2",
            "--out",
            out2.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(code, Some(0), "{text}");
    let p = probe(&out2);
    for want in [
        "codec_name=mpeg2video",
        "width=720",
        "height=480",
        "codec_name=mp2",
    ] {
        assert!(p.contains(want), "{want} not in {p}");
    }
}

#[test]
fn capbox_slate_refuses_a_bad_spec_in_words() {
    let dir = TempDir::new("slate-bad");
    let out = dir.join("x.ts");
    let (code, text) = run_capbox(
        &[
            "slate",
            "x",
            "--video",
            "vp9-1920x1080p25",
            "--audio",
            "aac",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("unknown video codec vp9"), "{text}");
    let (code, text) = run_capbox(
        &[
            "slate",
            "x",
            "--video",
            "h264-1920x1080q25",
            "--audio",
            "aac",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bad"), "{text}");
    // No capbox running at this URL and no --video: says what to do.
    let (code, text) = run_capbox(
        &["slate", "x", "--url", "http://127.0.0.1:9"],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("pass --video and --audio"), "{text}");
}
