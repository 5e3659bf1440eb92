//! The video format capbox reads from the bitstream (codec, size, scan,
//! frame rate: `ts::video_format`) against ffprobe's reading of the same
//! streams, on bytes capbox did not write: the shipped slates (made by
//! ffmpeg, slates/make-slates.sh), the sample mux, and streams ffmpeg
//! makes here in formats the slates do not cover (29.97 Hz, 480i, 4:2:2
//! cropping, HEVC 720p).

use capbox::ts::packet::Packet;
use capbox::ts::pmt::{PmtRepr, VideoCodec};
use capbox::ts::video_format::{VideoFormat, VideoFormatProbe};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first video stream's format, found by capbox from the TS bytes.
fn capbox_format(ts: &[u8]) -> Option<VideoFormat> {
    // Find the first PMT (PAT → PMT PID) with capbox's section assembler,
    // one per PID.
    let mut pat_asm = capbox::ts::section::Assembler::new();
    let mut pmt_asm = capbox::ts::section::Assembler::new();
    let mut pmt_pid = None;
    let mut probe: Option<VideoFormatProbe> = None;
    for chunk in ts.chunks_exact(188) {
        let Ok(p) = Packet::new_checked(chunk) else {
            continue;
        };
        if probe.is_none() {
            let mut sections = Vec::new();
            if p.pid() == 0 {
                pat_asm.push(&p, |s| sections.push(s.to_vec()));
            } else if Some(p.pid()) == pmt_pid {
                pmt_asm.push(&p, |s| sections.push(s.to_vec()));
            }
            for s in sections {
                let Ok(sec) = capbox::ts::section::Section::new_checked(&s[..]) else {
                    continue;
                };
                if p.pid() == 0 {
                    if let Ok(pat) = capbox::ts::pat::PatRepr::parse(&sec) {
                        pmt_pid = pat.programs().next().map(|e| e.pid);
                    }
                } else if let Ok(pmt) = PmtRepr::parse(&sec) {
                    let video = pmt
                        .streams
                        .iter()
                        .find_map(|s| Some((s.elementary_pid, s.video_codec()?)));
                    if let Some((pid, codec)) = video {
                        probe = Some(VideoFormatProbe::new(codec, pid));
                    }
                }
            }
        }
        if let Some(pr) = probe.as_mut() {
            pr.push(&p);
            if let Some(f) = pr.format() {
                return Some(f);
            }
        }
    }
    None
}

/// ffprobe's (width, height, interlaced, its two frame rates × 1000:
/// r_frame_rate and avg_frame_rate, which its heuristics sometimes set
/// apart, e.g. r = 25 for a 50 Hz progressive MPEG-2).
fn ffprobe_format(path: &Path) -> (u16, u16, bool, [u32; 2]) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,field_order,r_frame_rate,avg_frame_rate")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe (apt-get install ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("ffprobe gave no {k}: {text}"))
            .to_string()
    };
    let rate = |k: &str| {
        let v = get(k);
        let (n, d) = v.split_once('/').unwrap();
        let (n, d) = (n.parse::<u64>().unwrap(), d.parse::<u64>().unwrap());
        (n * 1000 / d.max(1)) as u32
    };
    let fo = get("field_order");
    (
        get("width").parse().unwrap(),
        get("height").parse().unwrap(),
        matches!(fo.as_str(), "tt" | "bb" | "tb" | "bt"),
        [rate("r_frame_rate"), rate("avg_frame_rate")],
    )
}

fn check(path: &Path, codec: VideoCodec) {
    let ts = std::fs::read(path).unwrap();
    let f =
        capbox_format(&ts).unwrap_or_else(|| panic!("{}: capbox found no format", path.display()));
    let (w, h, i, rates) = ffprobe_format(path);
    assert_eq!(f.codec, codec, "{}", path.display());
    assert_eq!((f.width, f.height), (w, h), "{}: {f}", path.display());
    if codec != VideoCodec::Hevc {
        // ffprobe reports field_order from the first pictures; HEVC
        // broadcast is progressive and capbox says so.
        assert_eq!(f.interlaced, i, "{}: {f}", path.display());
    }
    if let Some(r) = f.frame_rate_milli {
        // ffprobe gives the field rate of interlaced H.264 on some
        // versions: a frame rate of half of one of its rates agrees too.
        assert!(
            rates.iter().any(|&x| r == x || r * 2 == x),
            "{}: capbox {r}, ffprobe {rates:?} ({f})",
            path.display()
        );
    } else {
        assert_eq!(
            codec,
            VideoCodec::Hevc,
            "{}: no frame rate: {f}",
            path.display()
        );
    }
    println!("{}: {f}", path.file_name().unwrap().to_string_lossy());
}

#[test]
fn every_shipped_slate_is_read_as_ffprobe_reads_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("slates");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".ts") {
            continue;
        }
        let codec = match name.split('-').next().unwrap() {
            "mpeg2" => VideoCodec::Mpeg2,
            "h264" => VideoCodec::H264,
            "hevc" => VideoCodec::Hevc,
            other => panic!("unexpected slate {other}"),
        };
        check(&p, codec);
        n += 1;
    }
    assert_eq!(n, 15, "slates/ should hold 5 video × 3 audio formats");
}

#[test]
fn the_sample_mux_is_read_as_ffprobe_reads_it() {
    check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts"),
        VideoCodec::H264,
    );
}

#[test]
fn formats_the_slates_do_not_cover() {
    let dir = std::env::temp_dir().join(format!("capbox-vf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str, VideoCodec)] = &[
        // 480i 29.97 MPEG-2 (an NTSC-area channel)
        ("mpeg2-480i", "-s 720x480 -r 30000/1001 -c:v mpeg2video -flags +ilme+ildct -top 1", VideoCodec::Mpeg2),
        // 1080i 29.97 H.264 with cropping (1088 coded lines)
        ("h264-1080i30", "-s 1920x1080 -r 30000/1001 -c:v libx264 -preset ultrafast -flags +ilme+ildct -x264-params tff=1", VideoCodec::H264),
        // 4:2:2 H.264 high 4:2:2 (chroma_format_idc 2 path)
        ("h264-422", "-s 720x576 -r 25 -c:v libx264 -preset ultrafast -pix_fmt yuv422p", VideoCodec::H264),
        // 1080p 59.94 H.264 progressive
        ("h264-1080p60", "-s 1920x1080 -r 60000/1001 -c:v libx264 -preset ultrafast", VideoCodec::H264),
        // HEVC 720p with a conformance window (720 is not a multiple of 64)
        ("hevc-720p", "-s 1280x720 -r 50 -c:v libx265 -preset ultrafast -x265-params log-level=error", VideoCodec::Hevc),
        // MPEG-2 progressive 720p
        ("mpeg2-720p", "-s 1280x720 -r 50 -c:v mpeg2video", VideoCodec::Mpeg2),
    ];
    for (name, args, codec) in cases {
        let out: PathBuf = dir.join(format!("{name}.ts"));
        let st = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1920x1080:rate=25",
                "-t",
                "0.5",
            ])
            .args(args.split_whitespace())
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(st.success(), "ffmpeg {name}");
        check(&out, *codec);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
