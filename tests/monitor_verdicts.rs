//! Is the channel on air? Bars of issue 14 item 3, on streams ffmpeg made:
//!
//! - a daemon with four channels and short `[monitor]` times (3 s): digital
//!   silence (Layer II at its floor, ≈ −118 dBFS) is flagged "silent" within silence_after_s, a still picture
//!   coded as identical intra pictures "frozen" within frozen_after_s, a
//!   stream whose audio PES stop at 8 s "no audio" within pes_after_s of the
//!   cut (and not before it), and a clean stream is "ok" and never flagged;
//!   with the words in /status, the metrics and the log;
//! - the one-hour soak: a clean stream of an hour of stream time fed
//!   through `ChannelMonitor` on a fake clock (stream time, faster than
//!   real time): the verdict never leaves "ok" after start-up.

mod e2e_common;

use capbox::config::MonitorConfig;
use capbox::monitor::channel::{ChannelMonitor, MonitorSettings, Verdict};
use capbox::ts::pes::PesHeader;
use capbox::ts::{Packet, PACKET_SIZE};
use e2e_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

fn ffmpeg(out: &Path, args: &[&str]) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args(["-f", "mpegts"])
        .arg(out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
}

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
/// MPEG-2 320x240 moving test picture + a 1 kHz tone, 30 s: what a clean
/// channel looks like.
const CLEAN_V: &[&str] = &["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"];

fn make_streams() -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let clean = tmp("mv_clean.ts");
    let mut a: Vec<&str> = CLEAN_V.to_vec();
    a.extend([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-t",
        "30",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "mpeg2video",
        "-b:v",
        "800k",
        "-c:a",
        "mp2",
        "-b:a",
        "128k",
    ]);
    ffmpeg(&clean, &a);
    // Digital silence: every Layer II frame's scale factors at their floor.
    let silent = tmp("mv_silent.ts");
    let mut a: Vec<&str> = CLEAN_V.to_vec();
    a.extend([
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=stereo",
        "-t",
        "30",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "mpeg2video",
        "-b:v",
        "800k",
        "-c:a",
        "mp2",
        "-b:a",
        "128k",
    ]);
    ffmpeg(&silent, &a);
    // A still picture, every picture intra-coded at a fixed quantiser: the
    // same coded picture over and over (checked below).
    let still = tmp("mv_still.png");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .args(["testsrc2=size=320x240", "-frames:v", "1"])
        .arg(&still)
        .status()
        .unwrap();
    assert!(st.success());
    let frozen = tmp("mv_frozen.ts");
    let still_s = still.to_str().unwrap();
    ffmpeg(
        &frozen,
        &[
            "-loop",
            "1",
            "-framerate",
            "25",
            "-i",
            still_s,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-t",
            "30",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "mpeg2video",
            "-g",
            "1",
            "-q:v",
            "4",
            "-c:a",
            "mp2",
            "-b:a",
            "128k",
        ],
    );
    // The clean stream with its audio PID cut from 8 s of stream time on
    // (the PMT still names it).
    let cut = tmp("mv_audio_cut.ts");
    let data = std::fs::read(&clean).unwrap();
    let mut out = Vec::with_capacity(data.len());
    let mut first_pcr = None;
    let mut t_s = 0.0;
    for c in data.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(c).unwrap();
        if let Some(pcr) = p.pcr() {
            let f = *first_pcr.get_or_insert(pcr);
            t_s = pcr.saturating_sub(f) as f64 / 27e6;
        }
        if p.pid() == AUDIO && t_s >= 8.0 {
            continue;
        }
        out.extend_from_slice(c);
    }
    std::fs::write(&cut, out).unwrap();
    (clean, silent, frozen, cut)
}

/// Each video PES's payload from the first slice start code on (what an
/// encoder codes of the picture, without the picture header's counters).
fn coded_slices(path: &Path, pid: u16) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut pes: Vec<Vec<u8>> = Vec::new();
    for c in data.chunks_exact(PACKET_SIZE) {
        let p = Packet::new_checked(c).unwrap();
        if p.pid() != pid || !p.has_payload() {
            continue;
        }
        if p.payload_unit_start() {
            pes.push(Vec::new());
        }
        if let Some(cur) = pes.last_mut() {
            cur.extend_from_slice(p.payload());
        }
    }
    pes.iter()
        .filter_map(|raw| {
            let h = PesHeader::new_checked(&raw[..]).ok()?;
            let body = h.payload();
            let at = body.windows(4).position(|w| w == [0, 0, 1, 1])?;
            Some(body[at..].to_vec())
        })
        .collect()
}

/// (seconds since `t0`, verdict, reason) of each channel at one poll.
fn verdicts(s: &Server) -> Vec<(String, String, String)> {
    s.status()["channels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("?").to_string(),
                c["verdict"].as_str().unwrap_or("null").to_string(),
                c["verdict_reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn silent_frozen_and_stopped_audio_are_flagged_in_time_and_clean_never() {
    if !have_ffmpeg() {
        return;
    }
    let (clean, silent, frozen, cut) = make_streams();
    // The frozen stream really is identical coded pictures.
    let pics = coded_slices(&frozen, VIDEO);
    assert!(pics.len() > 700, "{} pictures", pics.len());
    assert!(
        pics.iter().all(|p| *p == pics[0]),
        "the still stream's pictures differ in their slice data"
    );
    let moving = coded_slices(&clean, VIDEO);
    assert!(moving.windows(2).filter(|w| w[0] == w[1]).count() < moving.len() / 10);

    let cfg = server_toml()
        + "[monitor]\nsilence_after_s = 3\nfrozen_after_s = 3\npes_after_s = 3\n\n"
        + &channel_toml("clean", &clean, 1, &[])
        + &channel_toml("silent", &silent, 1, &[])
        + &channel_toml("frozen", &frozen, 1, &[])
        + &channel_toml("cut", &cut, 1, &[]);
    let s = Server::start("verdicts", &cfg);
    s.wait_up(&["clean", "silent", "frozen", "cut"]);
    let t0 = Instant::now();
    // Poll every 100 ms for 16 s: the first time each verdict is seen.
    let mut first: std::collections::BTreeMap<(String, String), (f64, String)> = Default::default();
    let mut clean_seen = Vec::new();
    while t0.elapsed() < Duration::from_secs(16) {
        let t = t0.elapsed().as_secs_f64();
        for (name, v, reason) in verdicts(&s) {
            if name == "clean" {
                clean_seen.push((t, v.clone(), reason.clone()));
            }
            first.entry((name, v)).or_insert((t, reason));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = |ch: &str, v: &str| first.get(&(ch.to_string(), v.to_string())).cloned();
    let all = format!("{first:#?}\nlog:\n{}", s.log_text());
    for ((ch, v), (t, r)) in &first {
        eprintln!("verdicts: {ch:<7} {v:<9} first at {t:4.1} s  {r}");
    }
    // Slack: the daemon reaches "up" a little after its monitor started,
    // the verdict is recomputed every 250 ms, polls every 100 ms.
    const SLACK: f64 = 2.5;
    let (t, reason) = at("silent", "silent").unwrap_or_else(|| panic!("never silent: {all}"));
    assert!(t <= 3.0 + SLACK, "silent after {t:.1} s: {all}");
    assert!(
        reason.starts_with(&format!("audio PID {AUDIO} silent for "))
            && reason.ends_with(" dBFS)")
            && reason.contains("(\u{2212}1"),
        "{reason}"
    );
    let (t, reason) = at("frozen", "frozen").unwrap_or_else(|| panic!("never frozen: {all}"));
    assert!(t <= 3.0 + SLACK, "frozen after {t:.1} s: {all}");
    assert!(
        reason.starts_with(&format!("video PID {VIDEO} frozen for ")),
        "{reason}"
    );
    // The audio cut is at 8 s of stream time: ok before, no audio within
    // pes_after_s of it.
    let (t_ok, _) = at("cut", "ok").unwrap_or_else(|| panic!("cut never ok: {all}"));
    let (t, reason) = at("cut", "no audio").unwrap_or_else(|| panic!("never no audio: {all}"));
    assert!(t_ok < 6.0, "{all}");
    assert!(t >= 7.0, "no audio at {t:.1} s, before the cut: {all}");
    assert!(t <= 8.0 + 3.0 + SLACK, "no audio after {t:.1} s: {all}");
    assert!(
        reason.starts_with(&format!("audio PID {AUDIO}: no PES for ")),
        "{reason}"
    );
    // Clean: starting, then ok, and never anything else.
    let bad: Vec<_> = clean_seen
        .iter()
        .filter(|(_, v, _)| v != "ok" && v != "starting")
        .collect();
    assert!(bad.is_empty(), "clean flagged: {bad:?}");
    assert_eq!(clean_seen.last().map(|c| c.1.as_str()), Some("ok"));
    let became_ok = clean_seen.iter().position(|c| c.1 == "ok").unwrap();
    assert!(clean_seen[became_ok..].iter().all(|c| c.1 == "ok"));

    // /status: the streams of a channel.
    let st = s.status();
    let ch = st["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "silent")
        .unwrap()
        .clone();
    assert_eq!(ch["verdict"], "silent");
    assert!(ch["verdict_since_s"].as_u64().is_some(), "{ch}");
    let es = ch["es"].as_array().unwrap();
    assert_eq!(es.len(), 2, "{ch}");
    let audio = es.iter().find(|e| e["kind"] == "audio").unwrap();
    assert_eq!(audio["pid"], AUDIO);
    assert_eq!(audio["codec"], "mp2");
    assert_eq!(audio["silent"], true);
    assert_eq!(audio["present"], true);
    assert!(audio["bitrate_bps"].as_u64().unwrap() > 64_000, "{audio}");
    let video = es.iter().find(|e| e["kind"] == "video").unwrap();
    assert_eq!(video["frozen"], false);
    assert!(video["pts_pcr_ms"].as_i64().is_some(), "{video}");

    // Metrics: the contract's names, one verdict at 1, lint-clean.
    let text = s.get("/metrics").text();
    capbox::monitor::metrics::lint(&text).unwrap_or_else(|e| panic!("{e}"));
    let m = s.metrics();
    let get = |name: &str, labels: &[(&str, &str)]| {
        m.iter()
            .find(|x| {
                x.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|x| x.value)
    };
    for (ch, v) in [
        ("clean", "ok"),
        ("silent", "silent"),
        ("frozen", "frozen"),
        ("cut", "no_audio"),
    ] {
        assert_eq!(
            get("capbox_channel_verdict", &[("channel", ch), ("verdict", v)]),
            Some(1.0),
            "{ch} {v}\n{}",
            fmt_samples(&m)
        );
        let ones = m
            .iter()
            .filter(|x| x.name == "capbox_channel_verdict" && x.labels["channel"] == ch)
            .filter(|x| x.value == 1.0)
            .count();
        assert_eq!(ones, 1, "{ch}");
    }
    assert!(
        get(
            "capbox_channel_verdict_seconds_total",
            &[("channel", "clean"), ("verdict", "ok")]
        )
        .unwrap()
            > 5.0
    );
    assert_eq!(
        get(
            "capbox_audio_silent",
            &[("channel", "silent"), ("pid", "257")]
        ),
        Some(1.0)
    );
    // Layer II's lowest scale factor: about −118 dBFS.
    let level = |ch| {
        get(
            "capbox_audio_level_dbfs",
            &[("channel", ch), ("pid", "257")],
        )
    };
    assert!(level("silent").unwrap() < -100.0);
    assert!(level("clean").unwrap() > -20.0);
    assert_eq!(
        get(
            "capbox_video_frozen",
            &[("channel", "frozen"), ("pid", "256")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "capbox_es_present",
            &[("channel", "cut"), ("pid", "257"), ("kind", "audio")]
        ),
        Some(0.0)
    );
    assert!(
        get(
            "capbox_es_pes_total",
            &[("channel", "clean"), ("pid", "256"), ("kind", "video")]
        )
        .unwrap()
            > 300.0
    );
    assert!(get(
        "capbox_es_bitrate_bps",
        &[
            ("channel", "clean"),
            ("pid", "256"),
            ("kind", "video"),
            ("codec", "mpeg2video")
        ]
    )
    .is_some());
    assert!(get(
        "capbox_es_pts_pcr_seconds",
        &[("channel", "clean"), ("pid", "257")]
    )
    .is_some());
    assert_eq!(
        get(
            "capbox_es_pts_pcr_out_of_range_total",
            &[("channel", "clean"), ("pid", "256")]
        ),
        Some(0.0)
    );

    // One plain log line per change.
    let log = s.log_text();
    assert!(
        log.contains("channel silent: silent — audio PID 257 silent for"),
        "{log}"
    );
    assert!(
        log.contains("channel frozen: frozen — video PID 256 frozen for"),
        "{log}"
    );
    assert!(
        log.contains("channel cut: no audio — audio PID 257: no PES for"),
        "{log}"
    );
    assert!(!log.contains("channel clean:"), "{log}");
}

/// An hour of a clean stream, cached under target/ (≈ 10 s to make).
fn hour_stream() -> PathBuf {
    let p = tmp("mv_soak_1h.ts");
    if p.metadata().is_ok_and(|m| m.len() > 10_000_000) {
        return p;
    }
    let part = tmp("mv_soak_1h.part.ts");
    ffmpeg(
        &part,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x64:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3700",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "mpeg2video",
            "-g",
            "20",
            "-b:v",
            "60k",
            "-c:a",
            "mp2",
            "-b:a",
            "64k",
        ],
    );
    std::fs::rename(&part, &p).unwrap();
    p
}

#[test]
fn a_clean_stream_is_never_flagged_in_an_hour_of_play() {
    if !have_ffmpeg() {
        return;
    }
    let path = hour_stream();
    let data = std::fs::read(&path).unwrap();
    // The daemon's defaults (10 s silence and freeze, 5 s of no PES).
    let mut m = ChannelMonitor::new(MonitorSettings::from_config(&MonitorConfig::default()), 0);
    let mut first_pcr = None;
    let mut now_ms = 0;
    let mut ok_since = None;
    let mut updates = 0u64;
    let mut flagged = Vec::new();
    let wall = Instant::now();
    // Fed as the channel emits: 7 packets at a time, at stream time.
    for chunk in data.chunks(7 * PACKET_SIZE) {
        for c in chunk.chunks_exact(PACKET_SIZE) {
            if let Some(pcr) = Packet::new_checked(c).ok().and_then(|p| p.pcr()) {
                let f = *first_pcr.get_or_insert(pcr);
                now_ms = pcr.saturating_sub(f) / 27_000;
            }
        }
        m.feed(now_ms, chunk);
        if m.update(now_ms, false) {
            updates += 1;
            let v = m.status().verdict;
            if v == Verdict::Ok && ok_since.is_none() {
                ok_since = Some(now_ms);
            }
            if ok_since.is_some() && v != Verdict::Ok && flagged.len() < 10 {
                flagged.push((now_ms, v, m.status().reason.clone()));
            }
        }
    }
    eprintln!(
        "soak: {} s of stream in {:.1} s, {updates} verdicts",
        now_ms / 1000,
        wall.elapsed().as_secs_f64()
    );
    assert!(now_ms >= 3_600_000, "only {now_ms} ms of stream");
    let ok_at = ok_since.expect("never ok");
    assert!(ok_at <= 12_000, "ok only after {ok_at} ms");
    assert!(flagged.is_empty(), "flagged: {flagged:?}");
    assert_eq!(m.status().verdict, Verdict::Ok);
    let es = &m.status().es;
    assert_eq!(es.len(), 2);
    assert!(
        es.iter().all(|e| e.present && !e.silent && !e.frozen),
        "{es:?}"
    );
    // 10 pictures a second for an hour, every one judged.
    let v = es.iter().find(|e| e.kind == "video").unwrap();
    assert!(v.pes >= 36_000, "{v:?}");
    assert_eq!(m.status().counters.bad_pes, 0);
    assert!(updates >= 3_600 * 3, "{updates}");
}

/// `[monitor] enabled = false`: no verdict, no verdict metrics; a reload
/// that enables it gives every channel a verdict without a restart.
#[test]
fn monitoring_off_has_no_verdict_and_a_reload_turns_it_on() {
    let mux = sample_mux();
    let body = channel_toml("news", &mux, 1, &[]);
    let s = Server::start(
        "verdicts-off",
        &(server_toml() + "[monitor]\nenabled = false\n\n" + &body),
    );
    s.wait_up(&["news"]);
    let verdict = |s: &Server| s.status()["channels"][0]["verdict"].clone();
    assert!(verdict(&s).is_null(), "{}", s.status());
    assert!(s.status()["channels"][0]["es"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!s
        .metrics()
        .iter()
        .any(|m| m.name == "capbox_channel_verdict"));
    std::fs::write(
        &s.config,
        server_toml() + "[monitor]\npes_after_s = 2\n\n" + &body,
    )
    .unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let ok = wait_until(Duration::from_secs(10), || verdict(&s) == "ok");
    assert!(
        ok,
        "verdict {} after the reload\n{}",
        verdict(&s),
        s.log_text()
    );
    assert!(s.log_text().contains("reload: [monitor] changed"));
    let m = s.metrics();
    assert!(m.iter().any(|x| x.name == "capbox_channel_verdict"
        && x.labels["verdict"] == "ok"
        && x.value == 1.0));
}
