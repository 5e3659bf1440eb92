//! `capbox slate <channel>`: make a slate in the channel's exact format,
//! with the operator's text, on a workstation with ffmpeg. The format is
//! what the running capbox has seen on the channel (`/status`: `format`),
//! or given by hand. The ffmpeg recipe is `slates/make-slates.sh`, carried
//! inside the binary so the shipped slates and this command cannot drift.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = include_str!("../../slates/make-slates.sh");

const HELP: &str = "\
usage: capbox slate <channel> [--url http://127.0.0.1:8080]
                    [--video SPEC --audio mp2|aac|ac3] [--text TEXT] [--out FILE]

Makes a slate (a 2 s looped TS: a still picture with TEXT, and silence) in
the channel's format, for the channel's `slate` key. The format comes from
the running capbox's /status, or from --video and --audio: SPEC is
CODEC-WxH{i|p}RATE (mpeg2, h264, hevc), e.g. h264-1920x1080i25,
mpeg2-720x480i29.97. TEXT defaults to \"<channel> is temporarily
unavailable\"; FILE to <channel>-slate.ts. Needs ffmpeg (with libx264 and
libx265) and fonts-dejavu-core.
";

pub fn run(args: &[String]) -> i32 {
    let mut url = "http://127.0.0.1:8080".to_string();
    let (mut channel, mut video, mut audio, mut text, mut out) = (None, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{name} needs a value")),
        };
        let r = match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => val("--url").map(|v| url = v),
            "--video" => val("--video").map(|v| video = Some(v)),
            "--audio" => val("--audio").map(|v| audio = Some(v)),
            "--text" => val("--text").map(|v| text = Some(v)),
            "--out" => val("--out").map(|v| out = Some(v)),
            s if s.starts_with('-') => Err(format!("unknown option '{s}'")),
            s if channel.is_none() => {
                channel = Some(s.to_string());
                Ok(())
            }
            s => Err(format!("one channel at a time ('{s}' is a second)")),
        };
        if let Err(e) = r {
            eprintln!("capbox slate: {e}\n\n{HELP}");
            return 2;
        }
    }
    let Some(channel) = channel else {
        eprintln!("capbox slate: which channel?\n\n{HELP}");
        return 2;
    };
    if video.is_none() || audio.is_none() {
        match format_from_status(&url, &channel) {
            Ok((v, a)) => {
                video = video.or(Some(v));
                audio = audio.or(Some(a));
            }
            Err(e) => {
                eprintln!("capbox slate: {e}; pass --video and --audio");
                return 1;
            }
        }
    }
    let (video, audio) = (video.unwrap_or_default(), audio.unwrap_or_default());
    let text = text.unwrap_or_else(|| format!("{channel} is temporarily unavailable"));
    let out = out.unwrap_or_else(|| format!("{channel}-slate.ts"));
    println!("capbox slate: {channel}: {video} {audio} \"{text}\" → {out}");
    match make(&out, &video, &audio, &text) {
        Ok(()) => {
            println!(
                "capbox slate: done. Copy it to the box (e.g. /etc/capbox/slates/{channel}.ts) \
                 and set `slate = \"/etc/capbox/slates/{channel}.ts\"` in the channel's \
                 [[channel]] table, then reload (SIGHUP)."
            );
            0
        }
        Err(e) => {
            eprintln!("capbox slate: {e}");
            1
        }
    }
}

/// The channel's format from the running capbox: `format.video` (a
/// `VideoFormat`) and `format.audio` of `/status`'s channel.
fn format_from_status(url: &str, channel: &str) -> Result<(String, String), String> {
    let body = super::status::http_get(url, "/status", Duration::from_secs(5))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))?;
    let ch = v["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == channel))
        .ok_or_else(|| format!("the capbox at {url} has no channel '{channel}'"))?;
    let f = &ch["format"];
    let vf = &f["video"];
    let codec = vf["codec"].as_str();
    let (Some(codec), Some(w), Some(h)) = (codec, vf["width"].as_u64(), vf["height"].as_u64())
    else {
        return Err(format!(
            "the capbox at {url} has not seen the video format of '{channel}' yet"
        ));
    };
    let interlaced = vf["interlaced"].as_bool().unwrap_or(false);
    let rate = vf["frame_rate_milli"].as_u64().unwrap_or(25_000);
    let rate = if rate % 1000 == 0 {
        format!("{}", rate / 1000)
    } else {
        format!("{:.2}", rate as f64 / 1000.0)
    };
    let audio = f["audio"]
        .as_str()
        .filter(|a| matches!(*a, "mp2" | "aac" | "ac3"))
        .unwrap_or("mp2")
        .to_string();
    Ok((
        format!(
            "{codec}-{w}x{h}{}{rate}",
            if interlaced { 'i' } else { 'p' }
        ),
        audio,
    ))
}

/// Runs the embedded make-slates.sh --one.
fn make(out: &str, video: &str, audio: &str, text: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-s", "--", "--one", out, video, audio, text])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin for sh")?
        .write_all(SCRIPT.as_bytes())
        .map_err(|e| format!("feeding the script to sh: {e}"))?;
    let st = child.wait().map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!(
            "making the slate failed ({st}); see the message above"
        ))
    }
}
