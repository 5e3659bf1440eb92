//! Cost of the elementary-stream analysers (`es_health`) per core, for the
//! issue 14 bar (monitoring ≤ 15 % of the capture path's throughput).
//!
//! Usage: bench_es_health [--runs R]
//!
//! Makes broadcast-like streams with ffmpeg into target/ (10 s of 720x576
//! MPEG-2 at 6 Mbit/s + Layer II 192k, and H.264 at 4 Mbit/s + AC-3 and
//! AAC), reassembles their PES once, then times each analyser over the
//! payloads for at least one second: `FreezeDetector` on video,
//! `SilenceDetector` on audio, `EsFlow` on every PES. Prints MB/s of
//! elementary stream analysed per core (the flow analyser never reads the
//! payload: millions of PES a second) and a final `RESULT` line. Nothing
//! here is a test: it asserts nothing about time.

use capbox::monitor::es::{
    EsFlow, FlowConfig, FreezeConfig, FreezeDetector, SilenceConfig, SilenceDetector,
};
use capbox::ts::pes::PesHeader;
use capbox::ts::pmt::{AudioCodec, VideoCodec};
use capbox::ts::{Packet, PACKET_SIZE};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Pes {
    now_ms: u64,
    pts: Option<u64>,
    pcr: Option<u64>,
    payload: Vec<u8>,
}

fn make(name: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    let out = dir.join(format!("bench_esh_{name}.ts"));
    if !out.exists() {
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .args(["-f", "mpegts"])
            .arg(&out)
            .status()
            .expect("ffmpeg (apt-get install ffmpeg)");
        assert!(st.success(), "ffmpeg failed for {name}");
    }
    out
}

/// PES of `pid`, reassembled, with the arrival clock from the last PCR.
fn pes_of(data: &[u8], pid: u16) -> Vec<Pes> {
    let mut out = Vec::new();
    let mut cur: Option<(u64, Option<u64>, Vec<u8>)> = None;
    let mut last_pcr = None;
    let mut flush = |cur: &mut Option<(u64, Option<u64>, Vec<u8>)>| {
        if let Some((now_ms, pcr, raw)) = cur.take() {
            if let Ok(h) = PesHeader::new_checked(&raw[..]) {
                out.push(Pes {
                    now_ms,
                    pts: h.pts(),
                    pcr,
                    payload: h.payload().to_vec(),
                });
            }
        }
    };
    for c in data.chunks_exact(PACKET_SIZE) {
        let Ok(p) = Packet::new_checked(c) else {
            continue;
        };
        if let Some(pcr) = p.pcr() {
            last_pcr = Some(pcr);
        }
        if p.pid() != pid || !p.has_payload() {
            continue;
        }
        if p.payload_unit_start() {
            flush(&mut cur);
            cur = Some((last_pcr.map_or(0, |v| v / 27_000), last_pcr, Vec::new()));
        }
        if let Some((_, _, raw)) = cur.as_mut() {
            raw.extend_from_slice(p.payload());
        }
    }
    flush(&mut cur);
    out
}

/// MB/s of ES through `f` (one pass = all of `pes`), repeated for ≥ 1 s;
/// with `per_pes`, millions of PES a second instead.
fn rate(pes: &[Pes], per_pes: bool, mut f: impl FnMut(&[Pes])) -> f64 {
    let bytes: usize = if per_pes {
        pes.len()
    } else {
        pes.iter().map(|p| p.payload.len()).sum()
    };
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f(pes);
        passes += 1;
    }
    (bytes as f64 * passes as f64) / start.elapsed().as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            other => panic!("unknown argument {other:?} (usage: bench_es_health [--runs R])"),
        }
    }
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=720x576:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=f=1000:r=48000,aformat=channel_layouts=stereo",
        "-t",
        "10",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "1:a",
    ];
    let mpeg2 = make(
        "mpeg2",
        &[
            &src[..],
            &[
                "-c:v",
                "mpeg2video",
                "-b:v",
                "6M",
                "-g",
                "12",
                "-bf",
                "2",
                "-c:a:0",
                "mp2",
                "-b:a:0",
                "192k",
                "-c:a:1",
                "ac3",
                "-b:a:1",
                "384k",
            ],
        ]
        .concat(),
    );
    let h264 = make(
        "h264",
        &[
            &src[..],
            &[
                "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-g", "50", "-c:a:0",
                "aac", "-b:a:0", "128k", "-c:a:1", "ac3", "-b:a:1", "384k",
            ],
        ]
        .concat(),
    );

    let mut lines = Vec::new();
    let mut result = Vec::new();
    for (label, path, vcodec, acodecs) in [
        (
            "mpeg2",
            &mpeg2,
            VideoCodec::Mpeg2,
            [AudioCodec::Mpeg, AudioCodec::Ac3],
        ),
        (
            "h264",
            &h264,
            VideoCodec::H264,
            [AudioCodec::Aac, AudioCodec::Ac3],
        ),
    ] {
        let data = std::fs::read(path).expect("read the stream");
        let video = pes_of(&data, 0x100);
        let mut freeze = Vec::new();
        let mut flow = Vec::new();
        for _ in 0..runs {
            freeze.push(rate(&video, false, |pes| {
                let mut d = FreezeDetector::new(vcodec, FreezeConfig::default());
                for p in pes {
                    d.push_pes(p.now_ms, &p.payload);
                }
                black_box(d.state(0));
            }));
            flow.push(rate(&video, true, |pes| {
                let mut f = EsFlow::new(FlowConfig::default(), 0);
                for p in pes {
                    f.on_pes(p.now_ms, p.payload.len(), p.pts, p.pcr);
                }
                black_box(f.report(0));
            }));
        }
        let (fz, fl) = (median(freeze), median(flow));
        lines.push(format!(
            "{label} video: frozen {fz:.0} MB/s of ES per core; flow {fl:.1} M PES/s per core"
        ));
        result.push(format!("{label}_frozen_mbs={fz:.0} flow_mpes={fl:.1}"));
        for (i, ac) in acodecs.into_iter().enumerate() {
            let audio = pes_of(&data, 0x101 + i as u16);
            let mut sil = Vec::new();
            for _ in 0..runs {
                sil.push(rate(&audio, false, |pes| {
                    let mut d = SilenceDetector::new(ac, SilenceConfig::default());
                    for p in pes {
                        d.push_pes(p.now_ms, &p.payload);
                    }
                    assert!(d.stats().frames > 0, "no {ac:?} frame measured");
                    black_box(d.state(0));
                }));
            }
            let s = median(sil);
            lines.push(format!(
                "{label} {} audio: silence {s:.0} MB/s of ES per core",
                ac.as_str()
            ));
            result.push(format!("{}_silence_mbs={s:.0}", ac.as_str()));
        }
    }
    for l in &lines {
        println!("{l}");
    }
    println!("RESULT {}", result.join(" "));
}
