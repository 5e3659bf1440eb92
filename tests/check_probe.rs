//! `capbox check` and `[[probe]]` against real HTTP servers: a tiny
//! std TcpListener serving ffmpeg-made streams (good, silent audio, no
//! video), a 404, a server that accepts and never answers, garbage bytes;
//! capbox's own daemon serving the sample channels (H.264 + AAC / MP2, paced
//! in real time), and a daemon probing its own channel, seen in /status and
//! /metrics (and `promtool check metrics` when installed). The zap time's
//! keyframe is checked against ffprobe's first keyframe on the same bytes.

mod e2e_common;

use capbox::monitor::check::{check, CheckConfig, CheckReport, CheckResult};
use e2e_common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::Duration;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn ffmpeg_ok() -> bool {
    let ok = have("ffmpeg") && have("ffprobe");
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg/ffprobe not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

/// The streams, made once per test binary in a temp dir.
fn streams() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = TempDir::new("check-streams");
        let video = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"];
        let make = |name: &str, inputs: &[&str], codecs: &[&str]| {
            let mut cmd = Command::new("ffmpeg");
            cmd.args(["-y", "-v", "error"]).args(inputs);
            cmd.args(["-t", "8"]).args(codecs);
            cmd.args(["-f", "mpegts"]).arg(d.join(name));
            let st = cmd.status().expect("run ffmpeg");
            assert!(st.success(), "ffmpeg failed: {cmd:?}");
        };
        let av = [
            "-c:v",
            "mpeg2video",
            "-g",
            "12",
            "-b:v",
            "800k",
            "-c:a",
            "mp2",
            "-b:a",
            "128k",
        ];
        let mut good = video.to_vec();
        good.extend(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]);
        make("good.ts", &good, &av);
        let mut silent = video.to_vec();
        silent.extend(["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]);
        make("silent.ts", &silent, &av);
        // A 1 kHz tone at −68 dBFS (lavfi's sine has an amplitude of 1/8,
        // −18 dBFS, then −50 dB): below the default −60 dBFS.
        let mut quiet = video.to_vec();
        quiet.extend(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]);
        quiet.extend(["-af", "volume=-50dB"]);
        make("quiet.ts", &quiet, &av);
        make(
            "radio.ts",
            &["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"],
            &["-c:a", "mp2", "-b:a", "128k"],
        );
        d
    })
    .path()
}

#[derive(Clone)]
enum Mode {
    /// 200 with the file as the body (as fast as the socket takes it).
    File(PathBuf),
    NotFound,
    /// Accept, read the request, never answer.
    Hang,
    /// 200 video/mp2t with bytes that are not MPEG-TS.
    Garbage,
    /// The file in chunked transfer coding, 10 kB chunks.
    Chunked(PathBuf),
    /// A 200 head, then nothing.
    HeadOnly,
}

/// A tiny HTTP server on loopback, one thread per connection, forever
/// (the test process ends it).
fn serve(mode: Mode) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mode = mode.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let ok = "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\r\n";
                let _ = match mode {
                    Mode::File(p) => s
                        .write_all(ok.as_bytes())
                        .and_then(|_| s.write_all(&std::fs::read(p).unwrap())),
                    Mode::NotFound => s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                    Mode::Hang => {
                        std::thread::sleep(Duration::from_secs(30));
                        Ok(())
                    }
                    Mode::Chunked(p) => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nTransfer-Encoding: chunked\r\n\r\n";
                        let mut out = head.as_bytes().to_vec();
                        for c in std::fs::read(p).unwrap().chunks(10_000) {
                            out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
                            out.extend_from_slice(c);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                        s.write_all(&out)
                    }
                    Mode::HeadOnly => {
                        let _ = s.write_all(ok.as_bytes());
                        std::thread::sleep(Duration::from_secs(30));
                        Ok(())
                    }
                    Mode::Garbage => {
                        let mut x: u32 = 12345;
                        let junk: Vec<u8> = (0..2_000_000)
                            .map(|_| {
                                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                                ((x >> 16) as u8) & 0x3F // never 0x47
                            })
                            .collect();
                        s.write_all(ok.as_bytes()).and_then(|_| s.write_all(&junk))
                    }
                };
            });
        }
    });
    addr
}

fn run(url: &str, listen_s: u64, timeout_s: u64) -> CheckReport {
    let mut c = CheckConfig::new(url);
    c.listen = Duration::from_secs(listen_s);
    c.timeout = Duration::from_secs(timeout_s);
    let r = check(&c, &|| {}, &AtomicBool::new(false));
    eprintln!("{url}: {}", serde_json::to_string(&r).unwrap());
    r
}

/// ffprobe's byte position of the first video keyframe.
fn ffprobe_first_keyframe(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["packet=pos,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (pos, flags) = l.split_once(',')?;
            flags.contains('K').then(|| pos.parse().ok())?
        })
        .unwrap_or_else(|| panic!("ffprobe found no keyframe:\n{text}"))
}

#[test]
fn a_good_stream_is_ok_with_its_zap_time_at_ffprobes_first_keyframe() {
    if !ffmpeg_ok() {
        return;
    }
    let path = streams().join("good.ts");
    let addr = serve(Mode::File(path.clone()));
    let r = run(&format!("http://{addr}/good.ts"), 5, 5);
    assert_eq!(r.result, CheckResult::Ok, "{r:?}");
    let zap = r.zap_s.unwrap();
    let ttfb = r.ttfb_s.unwrap();
    assert!(
        zap > 0.0 && zap >= ttfb && zap < 5.0,
        "zap {zap} ttfb {ttfb}"
    );
    assert!(r.video_present && r.audio_present && !r.silent);
    let v = r.video.as_ref().unwrap();
    assert_eq!(v.codec, "mpeg2");
    // 800 kbit/s asked of the encoder (testsrc is simple: rate control
    // undershoots); measured over the PCR's time.
    assert!((100_000..2_000_000).contains(&v.bitrate_bps), "{v:?}");
    let a = &r.audio[0];
    assert_eq!(a.codec, "mp2");
    assert!((120_000..140_000).contains(&a.bitrate_bps), "{a:?}");
    // A 1 kHz sine at ffmpeg's default amplitude (1/8): about −18 dBFS.
    let level = r.level_dbfs.unwrap();
    assert!((-30.0..-6.0).contains(&level), "level {level}");
    assert!(
        r.listened_s >= 5.0 && r.listened_s < 6.0,
        "{}",
        r.listened_s
    );
    // The keyframe the zap time stops at is ffprobe's first keyframe.
    assert_eq!(r.keyframe_offset, Some(ffprobe_first_keyframe(&path)));
}

#[test]
fn silent_audio_is_silent_and_a_video_less_stream_is_no_video() {
    if !ffmpeg_ok() {
        return;
    }
    let addr = serve(Mode::File(streams().join("silent.ts")));
    let r = run(&format!("http://{addr}/s"), 5, 5);
    assert_eq!(r.result, CheckResult::Silent, "{r:?}");
    assert!(r.video_present && r.audio_present && r.silent);
    assert!(r.error.unwrap().contains("audio silent for"));

    let addr = serve(Mode::File(streams().join("radio.ts")));
    let r = run(&format!("http://{addr}/r"), 5, 5);
    assert_eq!(r.result, CheckResult::NoVideo, "{r:?}");
    assert!(r.audio_present && r.video.is_none());
    assert_eq!(
        r.error.as_deref(),
        Some("program 1 has no video stream in its PMT")
    );
}

#[test]
fn the_silence_level_is_the_callers_a_quiet_tone_is_silent_at_minus_60_not_at_minus_90() {
    if !ffmpeg_ok() {
        return;
    }
    let addr = serve(Mode::File(streams().join("quiet.ts")));
    let url = format!("http://{addr}/q");
    let r = run(&url, 5, 5);
    assert_eq!(r.result, CheckResult::Silent, "{r:?}");
    // The same stream with the level set lower, as `[monitor] silence_dbfs`
    // or `capbox check --silence-dbfs` do: the tone is heard, near −68 dBFS.
    let mut c = CheckConfig::new(url.as_str());
    c.listen = Duration::from_secs(5);
    c.timeout = Duration::from_secs(5);
    c.silence_dbfs = -90.0;
    let r = check(&c, &|| {}, &AtomicBool::new(false));
    assert_eq!(r.result, CheckResult::Ok, "{r:?}");
    let level = r.level_dbfs.expect("a level");
    assert!((-74.0..-62.0).contains(&level), "level {level} dBFS");
    // The command line says the same through its exit status.
    let out = Command::new(env!("CARGO_BIN_EXE_capbox"))
        .args(["check", &url, "--listen", "5", "--silence-dbfs", "-90"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_capbox"))
        .args(["check", &url, "--listen", "5"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn http_404_timeout_and_garbage_are_told_apart_in_words() {
    let addr = serve(Mode::NotFound);
    let r = run(&format!("http://{addr}/live/news"), 2, 5);
    assert_eq!(r.result, CheckResult::HttpError);
    assert_eq!(
        r.error.as_deref(),
        Some(format!("HTTP 404 from {addr} /live/news (Not Found)").as_str())
    );
    assert!(r.ttfb_s.is_some());

    let addr = serve(Mode::Hang);
    let t = std::time::Instant::now();
    let r = run(&format!("http://{addr}/x"), 2, 1);
    assert_eq!(r.result, CheckResult::Timeout);
    assert_eq!(
        r.error.as_deref(),
        Some(format!("connected to {addr} but no byte in 1 s").as_str())
    );
    assert!(r.connect_s.is_some() && r.ttfb_s.is_none());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let addr = serve(Mode::HeadOnly);
    let r = run(&format!("http://{addr}/x"), 2, 5);
    assert_eq!(r.result, CheckResult::Timeout);
    assert_eq!(
        r.error.as_deref(),
        Some(format!("HTTP 200 from {addr} but no byte of the body in 2 s").as_str())
    );

    let addr = serve(Mode::Garbage);
    let r = run(&format!("http://{addr}/x"), 2, 5);
    assert_eq!(r.result, CheckResult::BadStream);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .starts_with("no MPEG-TS packet in "),
        "{r:?}"
    );
}

#[test]
fn a_program_of_a_multi_program_mux_is_picked_by_the_urls_fragment() {
    let addr = serve(Mode::File(sample_mux()));
    let r = run(&format!("http://{addr}/mux.ts#program=3"), 3, 5);
    assert_eq!(r.result, CheckResult::Ok, "{r:?}");
    assert_eq!((r.program, r.pmt_pid), (Some(3), Some(4098)));
    assert_eq!(r.video.as_ref().unwrap().pid, 769);
    // The same over chunked transfer coding.
    let caddr = serve(Mode::Chunked(sample_mux()));
    let r = run(&format!("http://{caddr}/mux.ts#program=2"), 3, 5);
    assert_eq!(r.result, CheckResult::Ok, "{r:?}");
    assert_eq!(r.video.as_ref().unwrap().pid, 513);
    let r = run(&format!("http://{addr}/mux.ts#program=9"), 2, 5);
    assert_eq!(r.result, CheckResult::BadStream);
    let e = r.error.unwrap();
    // The file ends there too (served whole): said after the reason.
    assert!(
        e.starts_with("program 9 is not in the PAT (programs: 1, 2, 3)"),
        "{e}"
    );
    // H.264: the first program's first IDR is ffprobe's first keyframe of
    // the first video stream (program 1's).
    if ffmpeg_ok() {
        let r = run(&format!("http://{addr}/mux.ts"), 3, 5);
        assert_eq!(r.video.as_ref().unwrap().codec, "h264");
        assert_eq!(
            r.keyframe_offset,
            Some(ffprobe_first_keyframe(&sample_mux()))
        );
    }
}

#[test]
fn capbox_check_on_the_daemons_channels_prints_one_screen_and_exits_by_verdict() {
    let srv = Server::start("check-demo", &demo_toml());
    srv.wait_up(&["news", "sport"]);
    let url = format!("http://{}/stream/sport", srv.addr);
    let (code, out) = run_capbox(&["check", &url, "--listen", "4"], Duration::from_secs(30));
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "first byte",
        "zap time",
        "video        PID 513 h264",
        "audio        PID 514 mp2",
        "verdict      OK",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    // The sample is paced in real time by the daemon: the stream time
    // listened is the wall time listened.
    let (code, out) = run_capbox(
        &["check", &url, "--listen", "3", "--json"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{out}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["result"], "ok");
    let zap = j["zap_s"].as_f64().unwrap();
    assert!(zap > 0.0 && zap < 3.0, "{zap}");
    assert!(j["audio"].as_array().unwrap().len() == 2);

    let missing = format!("http://{}/stream/nope", srv.addr);
    let (code, out) = run_capbox(&["check", &missing], Duration::from_secs(30));
    assert_eq!(code, Some(13), "{out}");
    assert!(out.contains("HTTP 404 from"), "{out}");
    let (code, out) = run_capbox(
        &["check", "https://example.invalid/x"],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(13), "{out}");
    assert!(out.contains("https is not supported"), "{out}");
    let (code, _) = run_capbox(&["check"], Duration::from_secs(30));
    assert_eq!(code, Some(2));
    let (code, out) = run_capbox(&["--help"], Duration::from_secs(30));
    assert_eq!(code, Some(0));
    assert!(out.contains("  check "), "{out}");
}

#[test]
fn a_daemon_probing_its_own_channel_shows_the_result_in_status_and_metrics() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n{}\
         [[probe]]\nname = \"self\"\nurl = \"http://127.0.0.1:{port}/stream/news\"\n\
         every_s = 10\nlisten_s = 3\ntimeout_s = 5\n\n\
         [[probe]]\nname = \"missing\"\nurl = \"http://127.0.0.1:{port}/stream/nope\"\n\
         listen_s = 2\ntimeout_s = 2\n",
        channel_toml("news", &sample_mux(), 1, &[])
    );
    let srv = Server::start("check-probe", &cfg);
    let mut st = serde_json::Value::Null;
    let done = wait_until(Duration::from_secs(45), || {
        st = srv.status();
        let p = st["probes"].as_array().cloned().unwrap_or_default();
        p.len() == 2 && p[0]["result"] == "ok" && p[1]["result"] == "http_error"
    });
    assert!(
        done,
        "probes never reported ok / http_error:\n{}\nlog:\n{}",
        serde_json::to_string_pretty(&st["probes"]).unwrap(),
        srv.log_text()
    );
    let p = &st["probes"][0];
    assert_eq!(p["name"], "self");
    assert!(p["zap_s"].as_f64().unwrap() > 0.0);
    assert!(p["ttfb_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(p["video"]["codec"], "h264");
    assert_eq!(p["silent"], false);
    assert!(p["last_run_s_ago"].as_u64().unwrap() < 60);
    assert!(p["error"].is_null(), "{p}");
    let m = &st["probes"][1];
    assert!(
        m["error"].as_str().unwrap().contains("HTTP 404 from"),
        "{m}"
    );

    let text = srv.get("/metrics").text();
    capbox::monitor::metrics::lint(&text).unwrap();
    let s = parse_metrics(&text).unwrap();
    let val = |name: &str, probe: &str, result: Option<&str>| {
        s.iter()
            .find(|x| {
                x.name == name
                    && x.labels.get("probe").map(String::as_str) == Some(probe)
                    && result.is_none_or(|r| x.labels.get("result").map(String::as_str) == Some(r))
            })
            .map(|x| x.value)
    };
    assert_eq!(val("capbox_probe_up", "self", None), Some(1.0));
    assert_eq!(val("capbox_probe_up", "missing", None), Some(0.0));
    assert_eq!(val("capbox_probe_video_present", "self", None), Some(1.0));
    assert_eq!(val("capbox_probe_audio_present", "self", None), Some(1.0));
    assert_eq!(val("capbox_probe_silent", "self", None), Some(0.0));
    assert!(val("capbox_probe_zap_seconds", "self", None).unwrap() > 0.0);
    assert!(val("capbox_probe_ttfb_seconds", "self", None).is_some());
    assert!(val("capbox_probe_runs_total", "self", Some("ok")).unwrap() >= 1.0);
    assert!(val("capbox_probe_runs_total", "missing", Some("http_error")).unwrap() >= 1.0);
    assert_eq!(
        val("capbox_probe_runs_total", "self", Some("bad_stream")),
        Some(0.0)
    );
    assert!(val("capbox_probe_last_run_timestamp_seconds", "self", None).unwrap() > 1.7e9);
    // The supervisor watches the thread, reporting only.
    assert!(
        text.contains("capbox_supervisor_thread_stalled{thread=\"probes\"} 0"),
        "{text}"
    );
    // A log line when a result changes.
    let log = srv.log_text();
    assert!(
        log.contains("probe 'missing': none -> http_error: HTTP 404 from"),
        "{log}"
    );
    // (The first check may meet the channel still starting: then a
    // second line says it came good.)
    assert!(
        log.lines()
            .any(|l| l.contains("probe 'self': ") && l.contains(" -> ok")),
        "{log}"
    );
    if have_promtool() {
        let (ok, said) = promtool_check_metrics(&text);
        assert!(
            ok && !said.contains("capbox_probe"),
            "promtool check metrics on the probe families:\n{said}"
        );
    }
}

fn have_promtool() -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("!!!!! promtool missing: apt-get install -y prometheus; lint only !!!!!");
    }
    ok
}

#[test]
fn a_reload_adds_and_removes_probes() {
    let srv = Server::start(
        "check-reload",
        &(server_toml() + &channel_toml("news", &sample_mux(), 1, &[])),
    );
    srv.wait_up(&["news"]);
    assert_eq!(srv.status()["probes"], serde_json::json!([]));
    assert!(!srv.get("/metrics").text().contains("capbox_probe_"));
    let with = format!(
        "{}{}[[probe]]\nname = \"p\"\nurl = \"http://{}/stream/news\"\nlisten_s = 2\n",
        server_toml(),
        channel_toml("news", &sample_mux(), 1, &[]),
        srv.addr
    );
    let hup = || {
        let st = Command::new("kill")
            .args(["-HUP", &srv.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(st.success());
    };
    std::fs::write(&srv.config, with).unwrap();
    hup();
    let ok = wait_until(Duration::from_secs(30), || {
        srv.status()["probes"][0]["result"] == "ok"
    });
    assert!(ok, "{}\n{}", srv.status()["probes"], srv.log_text());
    std::fs::write(
        &srv.config,
        server_toml() + &channel_toml("news", &sample_mux(), 1, &[]),
    )
    .unwrap();
    hup();
    let gone = wait_until(Duration::from_secs(10), || {
        srv.status()["probes"] == serde_json::json!([])
    });
    assert!(gone, "{}", srv.log_text());
    assert!(srv
        .log_text()
        .contains("reload: [[probe]] changed (0 probes)"));
}
