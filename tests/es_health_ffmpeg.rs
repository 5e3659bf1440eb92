//! The elementary-stream analysers on streams ffmpeg made: a tone is never
//! silent, digital silence is, a quiet (−50 dBFS) tone is not; a moving
//! picture never freezes, a frozen one does, and thaws when it moves; the
//! flow of PES with their PTS − PCR reads what the muxer wrote.

use capbox::monitor::es::{
    AudioState, EsFlow, FlowConfig, FlowVerdict, FreezeConfig, FreezeDetector, PictureState,
    SilenceConfig, SilenceDetector,
};
use capbox::ts::pes::PesHeader;
use capbox::ts::pmt::{AudioCodec, VideoCodec};
use capbox::ts::{Packet, PACKET_SIZE};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ffmpeg_has(enc: &str) -> bool {
    let Ok(out) = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
    else {
        eprintln!("!!!!! SKIPPING: ffmpeg not installed (apt-get install ffmpeg) !!!!!");
        return false;
    };
    let s = String::from_utf8_lossy(&out.stdout);
    let ok = s.lines().any(|l| l.split_whitespace().nth(1) == Some(enc));
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg has no {enc} encoder !!!!!");
    }
    ok
}

fn ffmpeg(name: &str, args: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("esh_{name}.ts"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args(["-f", "mpegts"])
        .arg(&out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
    out
}

/// One PES: arrival (ms, from the last PCR), PTS, PCR then, payload.
struct Pes {
    now_ms: u64,
    pts: Option<u64>,
    pcr: Option<u64>,
    payload: Vec<u8>,
}

/// The PES of the first stream (PID 0x100), reassembled.
fn pes_of(path: &Path) -> Vec<Pes> {
    let data = std::fs::read(path).unwrap();
    let mut out: Vec<Pes> = Vec::new();
    let mut cur: Option<(Pes, Vec<u8>)> = None;
    let mut last_pcr = None;
    let flush = |cur: &mut Option<(Pes, Vec<u8>)>, out: &mut Vec<Pes>| {
        if let Some((mut p, raw)) = cur.take() {
            let h = PesHeader::new_checked(&raw[..]).unwrap();
            p.pts = h.pts();
            p.payload = h.payload().to_vec();
            out.push(p);
        }
    };
    for c in data.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(c).unwrap();
        if let Some(pcr) = p.pcr() {
            last_pcr = Some(pcr);
        }
        if p.pid() != 0x100 || !p.has_payload() {
            continue;
        }
        if p.payload_unit_start() {
            flush(&mut cur, &mut out);
            let pes = Pes {
                now_ms: last_pcr.map_or(0, |pcr| pcr / 27_000),
                pts: None,
                pcr: last_pcr,
                payload: Vec::new(),
            };
            cur = Some((pes, Vec::new()));
        }
        if let Some((_, raw)) = cur.as_mut() {
            raw.extend_from_slice(p.payload());
        }
    }
    flush(&mut cur, &mut out);
    out
}

// ---- audio ----

struct AudioRun {
    levels: Vec<f32>,
    frames: u64,
    silent_frames: u64,
    bad: u64,
    ever_silent: bool,
    end_state: AudioState,
    duration_ms: u64,
}

fn run_audio(codec: AudioCodec, path: &Path) -> AudioRun {
    let cfg = SilenceConfig {
        threshold_dbfs: SilenceConfig::default().threshold_dbfs,
        silence_after_ms: 2_000,
    };
    let mut d = SilenceDetector::new(codec, cfg);
    let mut levels = Vec::new();
    let mut ever_silent = false;
    let pes = pes_of(path);
    assert!(pes.len() > 5, "{} PES in {path:?}", pes.len());
    let (t0, t1) = (pes[0].now_ms, pes.last().unwrap().now_ms);
    for p in &pes {
        let before = d.stats().frames;
        d.push_pes(p.now_ms, &p.payload);
        if d.stats().frames > before {
            levels.push(d.last_level_dbfs().unwrap());
        }
        ever_silent |= matches!(d.state(p.now_ms), AudioState::Silent { .. });
    }
    let s = *d.stats();
    AudioRun {
        levels,
        frames: s.frames,
        silent_frames: s.silent_frames,
        bad: s.bad_frames + s.unsupported_frames + s.resync_bytes + s.overflow_bytes,
        ever_silent,
        end_state: d.state(t1),
        duration_ms: t1 - t0,
    }
}

fn audio_ts(name: &str, source: &str, codec: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["-f", "lavfi", "-i", source, "-t", "8", "-c:a", codec];
    args.extend_from_slice(extra);
    ffmpeg(name, &args)
}

fn median(v: &[f32]) -> f32 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Frames per second of each codec at 48 kHz.
fn frames_per_s(codec: AudioCodec) -> f64 {
    match codec {
        AudioCodec::Mpeg => 48000.0 / 1152.0,
        AudioCodec::Ac3 | AudioCodec::Eac3 => 48000.0 / 1536.0,
        _ => 48000.0 / 1024.0,
    }
}

/// How close the level read from the bitstream must be to the signal's
/// peak: Layer II scale factors step 2 dB, AC-3 exponents 6 dB; AAC reads
/// only "spectrum all zero or not" (see monitor::es::audio).
fn tolerance_db(codec: AudioCodec) -> f32 {
    match codec {
        AudioCodec::Mpeg => 4.0,
        AudioCodec::Ac3 | AudioCodec::Eac3 => 9.0,
        _ => f32::INFINITY,
    }
}

fn check_codec(codec: AudioCodec, enc: &str, extra: &[&str]) {
    if !ffmpeg_has(enc) {
        return;
    }
    let tone = |db: f64| {
        format!(
            "aevalsrc={:.6}*sin(2*PI*1000*t)|{:.6}*sin(2*PI*1000*t):s=48000",
            10f64.powf(db / 20.0),
            10f64.powf(db / 20.0)
        )
    };
    let name = codec.as_str();
    for (label, db) in [("loud", -6.0f32), ("quiet", -50.0)] {
        let path = audio_ts(&format!("{name}_{label}"), &tone(db as f64), enc, extra);
        let r = run_audio(codec, &path);
        let med = median(&r.levels);
        eprintln!(
            "{name} tone {db} dBFS: {} frames, level median {med:.1} min {:.1} max {:.1}",
            r.frames,
            r.levels.iter().cloned().fold(f32::MAX, f32::min),
            r.levels.iter().cloned().fold(f32::MIN, f32::max)
        );
        let want = (r.duration_ms as f64 / 1000.0 * frames_per_s(codec) * 0.9) as u64;
        assert!(
            r.frames >= want,
            "{name}: {} frames, want ≥ {want}",
            r.frames
        );
        assert_eq!(r.bad, 0, "{name}: unread frames or bytes");
        assert_eq!(
            r.silent_frames, 0,
            "{name}: a {db} dBFS tone had silent frames"
        );
        assert!(!r.ever_silent, "{name}: a {db} dBFS tone was called silent");
        assert_eq!(r.end_state, AudioState::Sound);
        assert!(
            (med - db).abs() <= tolerance_db(codec),
            "{name}: a {db} dBFS tone read as {med:.1} dBFS"
        );
    }
    let path = audio_ts(
        &format!("{name}_noise"),
        "anoisesrc=a=0.05:c=pink:r=48000",
        enc,
        extra,
    );
    let r = run_audio(codec, &path);
    eprintln!("{name} pink noise: level median {:.1}", median(&r.levels));
    assert_eq!(r.silent_frames, 0, "{name}: noise had silent frames");
    assert_eq!(r.end_state, AudioState::Sound);

    for (label, src) in [
        ("anull", "anullsrc=r=48000:cl=stereo".to_string()),
        ("vol0", format!("{},volume=0", tone(-6.0))),
    ] {
        let path = audio_ts(&format!("{name}_{label}"), &src, enc, extra);
        let r = run_audio(codec, &path);
        eprintln!(
            "{name} {label}: {} frames, {} silent, level max {:.1}",
            r.frames,
            r.silent_frames,
            r.levels.iter().cloned().fold(f32::MIN, f32::max)
        );
        assert_eq!(r.bad, 0, "{name}: unread frames or bytes");
        assert!(r.frames > 100);
        assert_eq!(
            r.silent_frames, r.frames,
            "{name} {label}: not every frame silent"
        );
        assert!(
            matches!(r.end_state, AudioState::Silent { .. }),
            "{name} {label}: {:?}",
            r.end_state
        );
    }
}

#[test]
fn mp2_tone_noise_and_silence() {
    check_codec(AudioCodec::Mpeg, "mp2", &["-b:a", "192k"]);
    // Mono, a low rate (table c/d), joint stereo in MPEG-2 LSF at 24 kHz.
    if ffmpeg_has("mp2") {
        for (name, extra) in [
            ("mp2_mono", vec!["-ac", "1", "-b:a", "64k"]),
            ("mp2_lsf", vec!["-ar", "24000", "-b:a", "64k"]),
        ] {
            let mut args = vec![
                "-f",
                "lavfi",
                "-i",
                "sine=f=1000:r=48000",
                "-t",
                "6",
                "-c:a",
                "mp2",
            ];
            args.extend(extra);
            let r = run_audio(AudioCodec::Mpeg, &ffmpeg(name, &args));
            assert_eq!(r.bad, 0, "{name}");
            // sine's amplitude is 1/8: −18 dBFS.
            let med = median(&r.levels);
            assert!((med + 18.0).abs() <= 4.0, "{name}: {med}");
            assert_eq!(r.silent_frames, 0);
        }
    }
}

#[test]
fn ac3_tone_noise_and_silence() {
    check_codec(AudioCodec::Ac3, "ac3", &["-b:a", "192k"]);
}

#[test]
fn aac_tone_noise_and_silence() {
    check_codec(AudioCodec::Aac, "aac", &["-b:a", "128k"]);
}

#[test]
fn eac3_tone_noise_and_silence() {
    check_codec(AudioCodec::Eac3, "eac3", &["-b:a", "192k"]);
    // 5.1 (coupling of the front channels, an LFE) and mono at a low rate.
    if ffmpeg_has("eac3") {
        for (name, extra) in [
            ("eac3_51", vec!["-ac", "6", "-b:a", "384k"]),
            ("eac3_mono", vec!["-ac", "1", "-b:a", "64k"]),
        ] {
            let mut args = vec!["-f", "lavfi", "-i", "sine=f=1000:r=48000", "-t", "4"];
            args.extend(["-c:a", "eac3"]);
            args.extend(extra);
            let r = run_audio(AudioCodec::Eac3, &ffmpeg(name, &args));
            assert_eq!(r.bad, 0, "{name}");
            assert!(r.frames > 100, "{name}: {} frames", r.frames);
            let med = median(&r.levels);
            assert!((med + 18.0).abs() <= 9.0, "{name}: {med}");
            assert_eq!(r.silent_frames, 0);
        }
    }
}

/// AAC in LATM/LOAS (stream_type 0x11), as ffmpeg's muxer writes it: a
/// StreamMuxConfig every 20 frames, the frames between reuse it.
#[test]
fn aac_latm_tone_noise_and_silence() {
    check_codec(
        AudioCodec::AacLatm,
        "aac",
        &["-b:a", "128k", "-mpegts_flags", "latm"],
    );
}

// ---- video ----

fn run_video(codec: VideoCodec, path: &Path, cfg: FreezeConfig) -> Vec<(u64, PictureState)> {
    let mut d = FreezeDetector::new(codec, cfg);
    let mut states = Vec::new();
    for p in pes_of(path) {
        d.push_pes(p.now_ms, &p.payload);
        states.push((p.now_ms, d.state(p.now_ms)));
        if std::env::var_os("ESH_DEBUG").is_some() {
            eprintln!(
                "{} {:?} {:?}",
                p.now_ms,
                d.last_picture(),
                states.last().unwrap().1
            );
        }
    }
    eprintln!("{codec:?} {path:?}: {:?}", d.stats());
    states
}

fn video_ts(name: &str, vf: &str, venc: &[&str]) -> PathBuf {
    let graph = format!("[0:v]{vf}[v]");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=352x288:rate=25",
        "-t",
        "12",
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
    ];
    args.extend_from_slice(venc);
    ffmpeg(name, &args)
}

fn check_video(codec: VideoCodec, name: &str, venc: &[&str]) {
    let cfg = FreezeConfig {
        frozen_after_ms: 2_000,
        ..FreezeConfig::default()
    };
    // Moving all along: never frozen.
    let moving = run_video(
        codec,
        &video_ts(&format!("{name}_moving"), "null", venc),
        cfg,
    );
    assert!(moving.len() > 250, "{} pictures", moving.len());
    let frozen_at: Vec<_> = moving
        .iter()
        .filter(|(_, s)| matches!(s, PictureState::Frozen { .. }))
        .collect();
    assert!(
        frozen_at.is_empty(),
        "{name}: a moving picture froze: {:?}",
        frozen_at.first()
    );

    // Frames 75..=225 (3 s to 9 s) replaced by frame 75: frozen from
    // about 3 s, flagged by 3 s + frozen_after, moving again after 9 s.
    let states = run_video(
        codec,
        &video_ts(
            &format!("{name}_freeze"),
            "split[a][b];[a][b]freezeframes=first=75:last=225:replace=75",
            venc,
        ),
        cfg,
    );
    let t0 = states[0].0;
    let first_frozen = states
        .iter()
        .find(|(_, s)| matches!(s, PictureState::Frozen { .. }))
        .unwrap_or_else(|| panic!("{name}: the frozen stretch was never flagged"));
    let flagged_s = (first_frozen.0 - t0) as f64 / 1000.0;
    eprintln!("{name}: frozen flagged {flagged_s:.2} s into the stream");
    // Arrival runs ahead of presentation by the mux delay (≤ 1.5 s here).
    assert!(
        (3.0..=6.5).contains(&flagged_s),
        "{name}: flagged at {flagged_s} s"
    );
    let last = states.last().unwrap();
    assert_eq!(last.1, PictureState::Moving, "{name}: did not thaw");
    // Frozen most of the 6 s stretch.
    let frozen_n = states
        .iter()
        .filter(|(_, s)| matches!(s, PictureState::Frozen { .. }))
        .count();
    assert!(
        frozen_n >= 75,
        "{name}: frozen for {frozen_n} pictures only"
    );
}

#[test]
fn mpeg2_moving_vs_frozen() {
    if ffmpeg_has("mpeg2video") {
        check_video(
            VideoCodec::Mpeg2,
            "mpeg2",
            &["-c:v", "mpeg2video", "-b:v", "2M", "-g", "12", "-bf", "2"],
        );
    }
}

#[test]
fn h264_moving_vs_frozen() {
    if ffmpeg_has("libx264") {
        check_video(
            VideoCodec::H264,
            "h264",
            &["-c:v", "libx264", "-preset", "veryfast", "-g", "50"],
        );
    }
}

#[test]
fn hevc_moving_vs_frozen() {
    if ffmpeg_has("libx265") {
        check_video(
            VideoCodec::Hevc,
            "hevc",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error:keyint=50",
            ],
        );
    }
}

// ---- flow ----

#[test]
fn flow_of_an_ffmpeg_stream_is_ok_with_its_pts_pcr() {
    if !ffmpeg_has("mpeg2video") {
        return;
    }
    let path = video_ts("flow", "null", &["-c:v", "mpeg2video", "-b:v", "1M"]);
    let pes = pes_of(&path);
    let t0 = pes[0].now_ms;
    let mut f = EsFlow::new(FlowConfig::default(), t0);
    for p in &pes {
        f.on_pes(p.now_ms, p.payload.len(), p.pts, p.pcr);
    }
    let end = pes.last().unwrap().now_ms;
    let r = f.report(end);
    eprintln!("flow: {r:?}");
    assert_eq!(r.verdict, FlowVerdict::Ok);
    // ffmpeg's muxer: PTS 0.7–1.4 s ahead of the PCR.
    assert!(
        r.pts_pcr_min_ms.unwrap() >= 0 && r.pts_pcr_max_ms.unwrap() <= 1500,
        "{r:?}"
    );
    // The encoder's 1 Mbit/s, within rate control's slack.
    assert!((600_000..=1_600_000).contains(&r.bitrate_bps), "{r:?}");
    // The PES stop: no PES a window later.
    assert_eq!(f.report(end + 6_000).verdict, FlowVerdict::NoPes);
}

// ---- LATM configurations ffmpeg's muxer does not write ----

/// The raw_data_blocks of an ADTS stream ffmpeg encoded (AAC-LC, 48 kHz
/// stereo), to wrap in LATM configurations its muxer does not write.
fn adts_blocks(name: &str, source: &str) -> Vec<Vec<u8>> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("esh_{name}.aac"));
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", source, "-t", "0.5", "-c:a", "aac", "-b:a", "128k"])
        .args(["-f", "adts"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let data = std::fs::read(&out).unwrap();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i + 7 <= data.len() {
        let h = &data[i..];
        assert_eq!((h[0], h[1] & 0xF6), (0xFF, 0xF0), "ADTS sync at {i}");
        let len = ((h[3] as usize & 3) << 11) | (h[4] as usize) << 3 | (h[5] as usize) >> 5;
        let hl = if h[1] & 1 == 1 { 7 } else { 9 };
        blocks.push(data[i + hl..i + len].to_vec());
        i += len;
    }
    assert!(blocks.len() > 10, "{} ADTS frames", blocks.len());
    blocks
}

#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    n: usize,
}

impl Bits {
    fn put(&mut self, width: u32, v: u64) -> &mut Bits {
        for i in (0..width).rev() {
            if self.n.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (v >> i) & 1 == 1 {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.n % 8);
            }
            self.n += 1;
        }
        self
    }
    /// LatmGetValue with one byte.
    fn value(&mut self, v: u8) -> &mut Bits {
        self.put(2, 0).put(8, v as u64)
    }
}

/// One AudioSyncStream frame: AudioMuxElement(1) with `config` (None:
/// useSameStreamMux), one payload, then `other` bits of other data.
fn loas(config: Option<&dyn Fn(&mut Bits)>, payload: &[u8], other: u32) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(1, config.is_none() as u64);
    if let Some(c) = config {
        c(&mut b);
    }
    let mut l = payload.len();
    while l >= 255 {
        b.put(8, 255);
        l -= 255;
    }
    b.put(8, l as u64);
    for &x in payload {
        b.put(8, x as u64);
    }
    b.put(other, 0);
    let len = b.bytes.len();
    let mut f = vec![0x56, 0xE0 | (len >> 8) as u8, len as u8];
    f.extend_from_slice(&b.bytes);
    f
}

/// The mux header every config here starts with: one program, one layer,
/// all streams on the same time framing, one subframe.
fn mux_start(b: &mut Bits, version: u64) {
    b.put(1, version);
    if version == 1 {
        b.put(1, 0).value(0xFF); // audioMuxVersionA, taraBufferFullness
    }
    b.put(1, 1).put(6, 0).put(4, 0).put(3, 0);
}

/// HE-AAC v1 signalled explicitly (object type 5 over AAC-LC), version 0.
fn he_aac_explicit(b: &mut Bits) {
    mux_start(b, 0);
    // AOT 5, 24 kHz, stereo, extension 48 kHz, core AOT 2, GASpecificConfig.
    b.put(5, 5)
        .put(4, 6)
        .put(4, 2)
        .put(4, 3)
        .put(5, 2)
        .put(3, 0);
    b.put(3, 0).put(8, 0xFF).put(1, 0).put(1, 0);
}

/// HE-AAC v2 signalled backward-compatibly (AAC-LC, then sync extensions
/// 0x2B7 SBR and 0x548 PS), version 1 with ascLen, fill bits, other data
/// and a CRC.
fn he_aac_v2_compatible(b: &mut Bits) {
    mux_start(b, 1);
    // ascLen: 5+4+4 + GA 3 + SBR 11+5+1+4 + PS 11+1 = 49 bits, 3 fill bits.
    b.value(52);
    b.put(5, 2).put(4, 6).put(4, 2).put(3, 0);
    b.put(11, 0x2B7).put(5, 5).put(1, 1).put(4, 3);
    b.put(11, 0x548).put(1, 1);
    b.put(3, 0); // fillBits
    b.put(3, 0).put(8, 0xFF);
    b.put(1, 1).value(8); // otherDataPresent, otherDataLenBits
    b.put(1, 1).put(8, 0x5A); // crcCheckPresent, crcCheckSum
}

/// HE-AAC v1 signalled backward-compatibly in version 0 (no length: the
/// extension is found by its sync).
fn he_aac_compatible_v0(b: &mut Bits) {
    mux_start(b, 0);
    b.put(5, 2).put(4, 6).put(4, 2).put(3, 0);
    b.put(11, 0x2B7).put(5, 5).put(1, 1).put(4, 3);
    b.put(3, 0)
        .put(8, 0xFF)
        .put(1, 1)
        .put(1, 0)
        .put(8, 16)
        .put(1, 0);
}

/// Two programs: not read.
fn two_programs(b: &mut Bits) {
    b.put(1, 0).put(1, 1).put(6, 0).put(4, 1);
}

#[test]
fn aac_latm_configs_ffmpeg_does_not_write() {
    if !ffmpeg_has("aac") {
        return;
    }
    let silent = adts_blocks("latm_anull", "anullsrc=r=48000:cl=stereo");
    let tone = adts_blocks("latm_tone", "sine=f=1000:r=48000");
    let cfg = SilenceConfig {
        threshold_dbfs: -70.0,
        silence_after_ms: 100,
    };
    type Config = fn(&mut Bits);
    let configs: [(&str, Config, u32); 3] = [
        ("explicit", he_aac_explicit, 0),
        ("v2 compatible", he_aac_v2_compatible, 8),
        ("v0 compatible", he_aac_compatible_v0, 16),
    ];
    for (name, config, other) in configs {
        for (blocks, want) in [(&silent, f32::NEG_INFINITY), (&tone, 0.0)] {
            let mut d = SilenceDetector::new(AudioCodec::AacLatm, cfg);
            // Two frames reusing a config not seen yet, then one every 8.
            let mut pes = Vec::new();
            for (i, blk) in blocks.iter().enumerate() {
                let c = (i >= 2 && i % 8 == 2).then_some(&config as &dyn Fn(&mut Bits));
                pes.extend(loas(c, blk, other));
            }
            // Split unevenly: frames cross PES boundaries.
            for (i, p) in pes.chunks(700).enumerate() {
                d.push_pes(i as u64 * 10, p);
            }
            let s = *d.stats();
            assert_eq!(s.unsupported_frames, 2, "{name}: {s:?}");
            assert_eq!(s.frames, blocks.len() as u64 - 2, "{name}: {s:?}");
            assert_eq!(s.bad_frames + s.resync_bytes + s.overflow_bytes, 0);
            assert_eq!(d.last_level_dbfs(), Some(want), "{name}");
            let silent_run = want == f32::NEG_INFINITY;
            assert_eq!(
                matches!(d.state(1_000_000), AudioState::Silent { .. }),
                silent_run,
                "{name}"
            );
        }
    }
    // A config of a kind not read: it and the frames reusing it are
    // counted, none measured; a readable config later is read.
    let mut d = SilenceDetector::new(AudioCodec::AacLatm, cfg);
    let mut pes = loas(Some(&two_programs), &[0; 4], 0);
    pes.extend(loas(None, &silent[0], 0));
    pes.extend(loas(Some(&he_aac_explicit), &silent[1], 0));
    pes.extend(loas(None, &silent[2], 0));
    d.push_pes(0, &pes);
    let s = *d.stats();
    assert_eq!((s.unsupported_frames, s.frames), (2, 2), "{s:?}");
}
