//! Active probes: what a viewer of an HTTP MPEG-TS URL gets, measured the
//! way a set-top box would meet it — connect, first byte, PAT, PMT, the
//! first picture a decoder can start on (zap time), then a few seconds of
//! the program through the elementary-stream analysers (`monitor::es`).
//!
//! Owns: one check (`check`), its pure stream part (`StreamCheck`, fed
//! bytes, unit tested), the result words of the contract (`CheckResult`),
//! and the configured probes (`ProbeBoard` for /status and /metrics,
//! `Prober`: one background thread, one check at a time).
//!
//! Promises: plain HTTP/1.1 on a std `TcpStream` (the head and body
//! framing of `source::remote`); https is refused in words. Untrusted
//! bytes never panic; memory is bounded (one read buffer, PES reassembly
//! capped per stream, at most [`MAX_AUDIO`] audio streams analysed) and a
//! check reads at most `max_bytes`. Every refusal ends as one result with
//! one sentence saying what and where.

use crate::monitor::es::{
    AudioState, EsFlow, FlowConfig, FreezeConfig, FreezeDetector, PictureState, SilenceConfig,
    SilenceDetector,
};
use crate::monitor::metrics::{family, Kind};
use crate::source::remote::{parse_head, redact_url, BodyDecoder, HttpUrl, RemoteError, MAX_HEAD};
use crate::source::Resync;
use crate::ts::es::EntryPointDetector;
use crate::ts::pat::PatRepr;
use crate::ts::pes::PesHeader;
use crate::ts::pmt::{AudioCodec, PmtRepr, StreamKind, VideoCodec};
use crate::ts::section::{Assembler, Section};
use crate::ts::video_format::codec_str;
use crate::ts::{Packet, PACKET_SIZE};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Audio streams of the program analysed (others are listed, not measured).
pub const MAX_AUDIO: usize = 8;
/// A video PES kept for the freeze detector beyond this is cut (counted).
const MAX_VIDEO_PES: usize = 2 * 1024 * 1024;
/// An audio PES beyond this is cut (counted).
const MAX_AUDIO_PES: usize = 64 * 1024;
/// Default bound on the bytes one check reads (a 10 s listen of a
/// 50 Mbit/s mux is 62 MB).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Read slice: how often a blocked read comes back to beat and look at the
/// deadlines.
const SLICE: Duration = Duration::from_millis(200);

/// The verdict of one check, the contract's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Ok,
    NoVideo,
    NoAudio,
    Silent,
    HttpError,
    Timeout,
    BadStream,
}

impl CheckResult {
    pub const ALL: [CheckResult; 7] = [
        CheckResult::Ok,
        CheckResult::NoVideo,
        CheckResult::NoAudio,
        CheckResult::Silent,
        CheckResult::HttpError,
        CheckResult::Timeout,
        CheckResult::BadStream,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Ok => "ok",
            CheckResult::NoVideo => "no_video",
            CheckResult::NoAudio => "no_audio",
            CheckResult::Silent => "silent",
            CheckResult::HttpError => "http_error",
            CheckResult::Timeout => "timeout",
            CheckResult::BadStream => "bad_stream",
        }
    }

    /// `capbox check`'s exit code: 0 ok, then one code per result.
    pub fn exit_code(self) -> i32 {
        match self {
            CheckResult::Ok => 0,
            CheckResult::NoVideo => 10,
            CheckResult::NoAudio => 11,
            CheckResult::Silent => 12,
            CheckResult::HttpError => 13,
            CheckResult::Timeout => 14,
            CheckResult::BadStream => 15,
        }
    }
}

/// What to check and for how long.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub url: String,
    /// How long the stream is watched after the response head.
    pub listen: Duration,
    /// Connect, and from the request to the first byte.
    pub timeout: Duration,
    /// The program to watch; None: the first one in the PAT.
    pub program: Option<u16>,
    /// An audio frame below this is silent.
    pub silence_dbfs: f32,
    /// The most body bytes read.
    pub max_bytes: u64,
}

impl CheckConfig {
    pub fn new(url: impl Into<String>) -> CheckConfig {
        CheckConfig {
            url: url.into(),
            listen: Duration::from_secs(10),
            timeout: Duration::from_secs(15),
            program: None,
            silence_dbfs: -60.0,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One elementary stream as the check saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EsReport {
    pub pid: u16,
    /// "video" or "audio".
    pub kind: &'static str,
    pub codec: String,
    /// PES arrived with advancing PTS.
    pub present: bool,
    pub pes: u64,
    /// ES bits per second over the stream time listened.
    pub bitrate_bps: u64,
    /// Audio: the loudest frame measured (dBFS; None: no frame measured or
    /// digital silence throughout, see `silent`).
    pub level_dbfs: Option<f32>,
    /// Audio: every measured frame below the threshold.
    pub silent: Option<bool>,
    /// Video: every picture repeated over the listen (information only).
    pub frozen: Option<bool>,
}

/// The outcome of one check: what `capbox check` prints and a probe keeps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// The URL with any token hidden.
    pub url: String,
    pub result: CheckResult,
    /// Plain words when result is not ok (and a note for some ok ones).
    pub error: Option<String>,
    pub connect_s: Option<f64>,
    /// From the request sent to the first byte of the response.
    pub ttfb_s: Option<f64>,
    /// From the request sent to the first picture a decoder can start on
    /// (after PAT and PMT).
    pub zap_s: Option<f64>,
    /// Body offset (bytes) of the TS packet starting that picture's PES.
    pub keyframe_offset: Option<u64>,
    /// Whether that packet carried random_access_indicator.
    pub keyframe_rai: Option<bool>,
    pub program: Option<u16>,
    pub pmt_pid: Option<u16>,
    pub body_bytes: u64,
    /// Stream time listened (PCR), else wall time.
    pub listened_s: f64,
    pub video: Option<EsReport>,
    pub audio: Vec<EsReport>,
    pub video_present: bool,
    pub audio_present: bool,
    pub silent: bool,
    /// Loudest audio frame over the audio streams.
    pub level_dbfs: Option<f32>,
    /// Packets whose bytes were skipped to regain sync, PES cut, etc.
    pub bytes_skipped: u64,
}

impl CheckReport {
    fn failed(url: &str, result: CheckResult, error: String) -> CheckReport {
        CheckReport {
            url: redact_url(url),
            result,
            error: Some(error),
            connect_s: None,
            ttfb_s: None,
            zap_s: None,
            keyframe_offset: None,
            keyframe_rai: None,
            program: None,
            pmt_pid: None,
            body_bytes: 0,
            listened_s: 0.0,
            video: None,
            audio: Vec::new(),
            video_present: false,
            audio_present: false,
            silent: false,
            level_dbfs: None,
            bytes_skipped: 0,
        }
    }
}

struct VideoEs {
    pid: u16,
    codec: VideoCodec,
    flow: EsFlow,
    freeze: FreezeDetector,
    entry: EntryPointDetector,
    pes: Vec<u8>,
    /// Index of the packet starting the current PES, and its RAI.
    pes_start: Option<(u64, bool)>,
}

struct AudioEs {
    pid: u16,
    codec: AudioCodec,
    flow: EsFlow,
    silence: SilenceDetector,
    pes: Vec<u8>,
    peak: Option<f32>,
    /// A frame measured at digital silence (−∞).
    any_frame: bool,
}

/// The stream part of a check, fed body bytes as they arrive; no I/O, the
/// wall clock passed in (ms since the request).
pub struct StreamCheck {
    want_program: Option<u16>,
    listen_ms: u64,
    silence: SilenceConfig,
    resync: Resync,
    aligned: Vec<u8>,
    packets: u64,
    bad_packets: u64,
    pat_asm: Assembler,
    pat: Option<(u16, u16)>,
    /// PAT lists programs, but not the one asked for.
    pat_programs: Vec<u16>,
    pat_seen_any: bool,
    pmt_asm: Assembler,
    pmt: Option<PmtRepr>,
    pcr_pid: Option<u16>,
    first_pcr: Option<u64>,
    last_pcr: Option<u64>,
    /// Stream time (ms) from the PCR, monotonic.
    media_ms: u64,
    video: Option<VideoEs>,
    audio: Vec<AudioEs>,
    other_audio: usize,
    cut_bytes: u64,
    first_wall: Option<Duration>,
    last_wall: Duration,
    zap: Option<Duration>,
    keyframe: Option<(u64, bool)>,
}

impl StreamCheck {
    pub fn new(program: Option<u16>, listen_ms: u64, silence_dbfs: f32) -> StreamCheck {
        StreamCheck {
            want_program: program,
            listen_ms: listen_ms.max(1),
            // Silent only when every frame over (nearly) the whole listen
            // was: the window is judged at the end (`finish`).
            silence: SilenceConfig {
                threshold_dbfs: silence_dbfs,
                silence_after_ms: (listen_ms / 2).max(1),
            },
            resync: Resync::new(),
            aligned: Vec::new(),
            packets: 0,
            bad_packets: 0,
            pat_asm: Assembler::new(),
            pat: None,
            pat_programs: Vec::new(),
            pat_seen_any: false,
            pmt_asm: Assembler::new(),
            pmt: None,
            pcr_pid: None,
            first_pcr: None,
            last_pcr: None,
            media_ms: 0,
            video: None,
            audio: Vec::new(),
            other_audio: 0,
            cut_bytes: 0,
            first_wall: None,
            last_wall: Duration::ZERO,
            zap: None,
            keyframe: None,
        }
    }

    /// Stream time listened so far (ms): the PCR's when the program has
    /// one, else the wall clock's since the first byte.
    pub fn listened_ms(&self) -> u64 {
        if self.first_pcr.is_some() {
            self.media_ms
        } else {
            let w = self
                .last_wall
                .saturating_sub(self.first_wall.unwrap_or(self.last_wall));
            w.as_millis() as u64
        }
    }

    /// Heard enough: `listen_ms` of stream time.
    pub fn done(&self) -> bool {
        self.listened_ms() >= self.listen_ms
    }

    /// From the request to the first picture a decoder can start on.
    pub fn zap(&self) -> Option<Duration> {
        self.zap
    }

    /// Body bytes that arrived `wall` after the request.
    pub fn push(&mut self, wall: Duration, data: &[u8]) {
        self.first_wall.get_or_insert(wall);
        self.last_wall = wall;
        let mut aligned = std::mem::take(&mut self.aligned);
        aligned.clear();
        self.resync.push(data, &mut aligned);
        for p in aligned.chunks_exact(PACKET_SIZE) {
            self.packet(wall, p);
        }
        self.aligned = aligned;
    }

    fn now(&self) -> u64 {
        self.listened_ms()
    }

    fn packet(&mut self, wall: Duration, raw: &[u8]) {
        let idx = self.packets;
        self.packets += 1;
        let Ok(p) = Packet::new_checked(raw) else {
            self.bad_packets += 1;
            return;
        };
        if p.transport_error() {
            self.bad_packets += 1;
        }
        let pid = p.pid();
        if pid == crate::ts::pid::PAT {
            let mut secs = Vec::new();
            self.pat_asm.push(&p, |s| secs.push(s.to_vec()));
            for s in secs {
                self.on_pat(&s);
            }
            return;
        }
        if let Some((_, pmt_pid)) = self.pat {
            if pid == pmt_pid {
                let mut secs = Vec::new();
                self.pmt_asm.push(&p, |s| secs.push(s.to_vec()));
                for s in secs {
                    self.on_pmt(&s);
                }
                return;
            }
        }
        if Some(pid) == self.pcr_pid {
            if let Some(pcr) = p.pcr() {
                self.on_pcr(pcr);
            }
        }
        let now = self.now();
        let pcr = self.last_pcr;
        if let Some(v) = self.video.as_mut().filter(|v| v.pid == pid) {
            if p.payload_unit_start() && p.has_payload() {
                flush_video(v, now, pcr);
                v.pes_start = Some((idx, p.random_access()));
            }
            if let Some(true) = v.entry.push(&p) {
                if self.zap.is_none() {
                    self.zap = Some(wall);
                    self.keyframe = v.pes_start;
                }
            }
            if v.pes_start.is_some() && p.has_payload() {
                let pl = p.payload();
                let room = MAX_VIDEO_PES.saturating_sub(v.pes.len());
                self.cut_bytes += pl.len().saturating_sub(room) as u64;
                v.pes.extend_from_slice(&pl[..pl.len().min(room)]);
            }
            return;
        }
        if let Some(a) = self.audio.iter_mut().find(|a| a.pid == pid) {
            if !p.has_payload() || p.scrambling_control() != 0 {
                return;
            }
            if p.payload_unit_start() {
                flush_audio(a, now, pcr);
            }
            let pl = p.payload();
            let room = MAX_AUDIO_PES.saturating_sub(a.pes.len());
            self.cut_bytes += pl.len().saturating_sub(room) as u64;
            a.pes.extend_from_slice(&pl[..pl.len().min(room)]);
        }
    }

    fn on_pcr(&mut self, pcr: u64) {
        self.first_pcr.get_or_insert(pcr);
        if let Some(last) = self.last_pcr {
            // A jump (discontinuity, loop) of over 10 s: keep time going
            // from where it was rather than leap.
            let d = crate::ts::packet::pcr_delta(last, pcr) / 27_000;
            if d <= 10_000 {
                self.media_ms += d;
            }
        }
        self.last_pcr = Some(pcr);
    }

    fn on_pat(&mut self, bytes: &[u8]) {
        let Ok(s) = Section::new_checked(bytes) else {
            return;
        };
        if s.table_id() != crate::ts::table_id::PAT {
            return;
        }
        let Ok(pat) = PatRepr::parse(&s) else { return };
        let programs: Vec<(u16, u16)> = pat
            .entries
            .iter()
            .filter(|e| e.program_number != 0)
            .map(|e| (e.program_number, e.pid))
            .collect();
        let pick = match self.want_program {
            Some(n) => programs.iter().find(|(p, _)| *p == n).copied(),
            None => programs.first().copied(),
        };
        self.pat_programs = programs.iter().map(|(p, _)| *p).take(32).collect();
        match (self.pat, pick) {
            (None, Some(p)) => self.pat = Some(p),
            (Some(old), Some(p)) if old != p => {
                // The program moved to another PMT PID: start over on it.
                self.pat = Some(p);
                self.pmt = None;
                self.pmt_asm = Assembler::new();
            }
            _ => {}
        }
        self.pat_seen_any = true;
    }

    fn on_pmt(&mut self, bytes: &[u8]) {
        let Ok(s) = Section::new_checked(bytes) else {
            return;
        };
        let Ok(pmt) = PmtRepr::parse(&s) else { return };
        let Some((program, _)) = self.pat else { return };
        if pmt.program_number != program {
            return;
        }
        if self
            .pmt
            .as_ref()
            .is_some_and(|old| old.version == pmt.version)
        {
            return;
        }
        let now = self.now();
        self.pcr_pid = (pmt.pcr_pid != 0x1FFF).then_some(pmt.pcr_pid);
        let flow_cfg = FlowConfig {
            window_ms: self.listen_ms.max(1000),
            pts_pcr_min_ms: -10_000,
            pts_pcr_max_ms: 10_000,
        };
        let mut video = None;
        let mut audio = Vec::new();
        let mut other_audio = 0;
        for st in &pmt.streams {
            match st.kind() {
                StreamKind::Video if video.is_none() => {
                    let codec = st.video_codec().unwrap_or(VideoCodec::Other);
                    // Keep the analysers of a stream that stays.
                    if let Some(v) = self
                        .video
                        .take()
                        .filter(|v| v.pid == st.elementary_pid && v.codec == codec)
                    {
                        video = Some(v);
                        continue;
                    }
                    video = Some(VideoEs {
                        pid: st.elementary_pid,
                        codec,
                        flow: EsFlow::new(flow_cfg, now),
                        freeze: FreezeDetector::new(
                            codec,
                            FreezeConfig {
                                frozen_after_ms: (self.listen_ms / 2).max(1),
                                ..FreezeConfig::default()
                            },
                        ),
                        entry: EntryPointDetector::new(codec),
                        pes: Vec::new(),
                        pes_start: None,
                    });
                }
                StreamKind::Audio if audio.len() < MAX_AUDIO => {
                    let codec = st.audio_codec().unwrap_or(AudioCodec::Other);
                    let keep = self
                        .audio
                        .iter()
                        .position(|a| a.pid == st.elementary_pid && a.codec == codec);
                    if let Some(i) = keep {
                        audio.push(self.audio.swap_remove(i));
                        continue;
                    }
                    audio.push(AudioEs {
                        pid: st.elementary_pid,
                        codec,
                        flow: EsFlow::new(flow_cfg, now),
                        silence: SilenceDetector::new(codec, self.silence),
                        pes: Vec::new(),
                        peak: None,
                        any_frame: false,
                    });
                }
                StreamKind::Audio => other_audio += 1,
                _ => {}
            }
        }
        self.video = video;
        self.audio = audio;
        self.other_audio = other_audio;
        self.pmt = Some(pmt);
    }

    /// The verdict on what was heard; `ttfb`/`connect` are filled by the
    /// caller.
    pub fn finish(mut self, url: &str) -> CheckReport {
        let mut tail = Vec::new();
        self.resync.finish(&mut tail);
        let now = self.now();
        let pcr = self.last_pcr;
        if let Some(v) = self.video.as_mut() {
            flush_video(v, now, pcr);
        }
        for a in &mut self.audio {
            flush_audio(a, now, pcr);
        }
        let listened_ms = self.listened_ms();
        let mut r = CheckReport::failed(url, CheckResult::Ok, String::new());
        r.error = None;
        r.body_bytes = self.resync.stats.bytes;
        r.bytes_skipped = self.resync.stats.bytes_skipped + self.cut_bytes;
        r.listened_s = listened_ms as f64 / 1000.0;
        r.program = self.pat.map(|(p, _)| p);
        r.pmt_pid = self.pat.map(|(_, p)| p);
        let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        let heard = secs(listened_ms);
        let bad = |r: &mut CheckReport, why: String| {
            r.result = CheckResult::BadStream;
            r.error = Some(why);
        };
        if self.resync.stats.packets == 0 {
            let n = r.body_bytes;
            bad(
                &mut r,
                format!(
                    "no MPEG-TS packet in {} bytes (not a transport stream{})",
                    n,
                    if n == 0 { ": the body was empty" } else { "" }
                ),
            );
            return r;
        }
        let skipped = self.resync.stats.bytes_skipped;
        if skipped.saturating_mul(2) > r.body_bytes {
            let why = format!(
                "not MPEG-TS: {skipped} of {} bytes had no packet sync ({} packets found)",
                r.body_bytes, self.resync.stats.packets
            );
            bad(&mut r, why);
            return r;
        }
        let Some((program, pmt_pid)) = self.pat else {
            let why = match (self.want_program, self.pat_programs.is_empty()) {
                (Some(n), false) => format!(
                    "program {n} is not in the PAT (programs: {})",
                    self.pat_programs
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ if self.pat_seen_any => "the PAT lists no program".to_string(),
                _ => format!("no PAT in {heard} of stream ({} packets)", self.packets),
            };
            bad(&mut r, why);
            return r;
        };
        let Some(pmt) = &self.pmt else {
            bad(
                &mut r,
                format!("no PMT for program {program} (PID {pmt_pid}) in {heard} of stream"),
            );
            return r;
        };
        let _ = pmt;
        r.zap_s = self.zap.map(|d| d.as_secs_f64());
        r.keyframe_offset = self.keyframe.map(|(i, _)| i * PACKET_SIZE as u64);
        r.keyframe_rai = self.keyframe.map(|(_, rai)| rai);
        if let Some(v) = &self.video {
            let rep = v.flow.report(now);
            let present = rep.pes > 0 && rep.pts_advances > 0;
            r.video_present = present;
            r.video = Some(EsReport {
                pid: v.pid,
                kind: "video",
                codec: codec_str(v.codec).to_string(),
                present,
                pes: v.flow.totals().pes,
                bitrate_bps: rep.bitrate_bps,
                level_dbfs: None,
                silent: None,
                frozen: Some(matches!(v.freeze.state(now), PictureState::Frozen { .. })),
            });
        }
        let mut all_silent = true;
        let mut any_measured = false;
        for a in &self.audio {
            let rep = a.flow.report(now);
            let present = rep.pes > 0 && rep.pts_advances > 0;
            r.audio_present |= present;
            let measured = a.any_frame;
            let silent = measured && matches!(a.silence.state(now), AudioState::Silent { .. });
            if present && measured {
                any_measured = true;
                all_silent &= silent;
            }
            if let Some(l) = a.peak {
                r.level_dbfs = Some(r.level_dbfs.map_or(l, |m: f32| m.max(l)));
            }
            r.audio.push(EsReport {
                pid: a.pid,
                kind: "audio",
                codec: a.codec.as_str().to_string(),
                present,
                pes: a.flow.totals().pes,
                bitrate_bps: rep.bitrate_bps,
                level_dbfs: a.peak.filter(|l| l.is_finite()),
                silent: measured.then_some(silent),
                frozen: None,
            });
        }
        r.silent = any_measured && all_silent;
        // The verdict, worst first (as monitor::es::channel_verdict).
        let (result, why) = match &self.video {
            None => (
                CheckResult::NoVideo,
                Some(format!("program {program} has no video stream in its PMT")),
            ),
            Some(v) if !r.video_present => (
                CheckResult::NoVideo,
                Some(format!(
                    "video PID {} carried no picture with advancing PTS in {heard}",
                    v.pid
                )),
            ),
            Some(v) if self.zap.is_none() => (
                CheckResult::NoVideo,
                Some(format!(
                    "video PID {} ({}) carried no picture a decoder can start on (IDR / I) in {heard}",
                    v.pid,
                    codec_str(v.codec)
                )),
            ),
            _ if self.audio.is_empty() => (
                CheckResult::NoAudio,
                Some(format!("program {program} has no audio stream in its PMT")),
            ),
            _ if !r.audio_present => (
                CheckResult::NoAudio,
                Some(format!(
                    "no audio PID ({}) carried frames with advancing PTS in {heard}",
                    self.audio
                        .iter()
                        .map(|a| a.pid.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            _ if r.silent => (
                CheckResult::Silent,
                Some(format!(
                    "audio silent for {heard} (loudest frame {}, threshold {:.0} dBFS)",
                    fmt_dbfs(r.level_dbfs),
                    self.silence.threshold_dbfs
                )),
            ),
            _ => (CheckResult::Ok, None),
        };
        r.result = result;
        r.error = why;
        if r.result == CheckResult::Ok && !any_measured {
            r.error = Some("audio level not measured (codec not read)".into());
        }
        r
    }
}

/// "-23.5 dBFS", "-inf dBFS" (digital silence) or "unknown".
pub fn fmt_dbfs(l: Option<f32>) -> String {
    match l {
        Some(l) if l.is_finite() => format!("{l:.1} dBFS"),
        Some(_) => "-inf dBFS (digital silence)".into(),
        None => "unknown".into(),
    }
}

fn pes_parts(buf: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let h = PesHeader::new_checked(buf).ok()?;
    if h.has_optional_header() && h.pes_scrambling_control() != 0 {
        return None;
    }
    let pts = h.pts();
    let off = h.payload_offset().min(buf.len());
    Some((pts, &buf[off..]))
}

fn flush_video(v: &mut VideoEs, now: u64, pcr: Option<u64>) {
    if v.pes.is_empty() {
        return;
    }
    let buf = std::mem::take(&mut v.pes);
    if let Some((pts, payload)) = pes_parts(&buf) {
        v.flow.on_pes(now, payload.len(), pts, pcr);
        v.freeze.push_pes(now, payload);
    }
    v.pes = buf;
    v.pes.clear();
}

fn flush_audio(a: &mut AudioEs, now: u64, pcr: Option<u64>) {
    if a.pes.is_empty() {
        return;
    }
    let buf = std::mem::take(&mut a.pes);
    if let Some((pts, payload)) = pes_parts(&buf) {
        a.flow.on_pes(now, payload.len(), pts, pcr);
        let before = a.silence.stats().frames;
        a.silence.push_pes(now, payload);
        if a.silence.stats().frames > before {
            a.any_frame = true;
            if let Some(l) = a.silence.last_level_dbfs() {
                a.peak = Some(a.peak.map_or(l, |m| m.max(l)));
            }
        }
    }
    a.pes = buf;
    a.pes.clear();
}

fn secs_words(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 && (s - s.round()).abs() < 0.05 {
        format!("{} s", s.round() as u64)
    } else {
        format!("{s:.1} s")
    }
}

/// Connect within `deadline`, coming back every [`SLICE`] to beat and to
/// look at `stop`. Err(None): timed out or stopped.
fn connect_sliced(
    addr: SocketAddr,
    deadline: Instant,
    beat: &dyn Fn(),
    stop: &AtomicBool,
) -> Result<TcpStream, Option<io::Error>> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{
        connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
        SockaddrIn6,
    };
    use std::os::fd::{AsFd, AsRawFd};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| Some(e.into()))?;
    let r = match addr {
        SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    match r {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => loop {
            beat();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                return Err(None);
            }
            let ms = left.min(SLICE).as_millis().max(1) as u64;
            let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, ms) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Some(e.into())),
            }
        },
        Err(e) => return Err(Some(e.into())),
    }
    match getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => {}
        Ok(err) => return Err(Some(io::Error::from_raw_os_error(err))),
        Err(e) => return Err(Some(e.into())),
    }
    let s = TcpStream::from(fd);
    s.set_nonblocking(false).map_err(Some)?;
    Ok(s)
}

/// One read of at most `buf.len()` bytes within a [`SLICE`]: Ok(0) at EOF,
/// Err(WouldBlock/TimedOut) when nothing came in the slice.
fn read_slice(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The program a URL's fragment names (`http://h/x#program=2`): capbox's
/// own way to pick a program of a multi-program stream, never sent to the
/// server. Err in words for a bad value.
pub fn url_program(url: &str) -> Result<Option<u16>, String> {
    let Some((_, frag)) = url.split_once('#') else {
        return Ok(None);
    };
    let mut out = None;
    for kv in frag.split('&') {
        if let Some(v) = kv.strip_prefix("program=") {
            match v.parse::<u16>() {
                Ok(n) if n > 0 => out = Some(n),
                _ => {
                    return Err(format!(
                        "#program={v:?} is not a program number; expected 1 to 65535"
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// One check of `cfg.url`, blocking up to about `timeout + listen`;
/// `beat` is called at least every [`SLICE`], `stop` ends it early (as a
/// timeout).
pub fn check(cfg: &CheckConfig, beat: &dyn Fn(), stop: &AtomicBool) -> CheckReport {
    let url = &cfg.url;
    let fail = |result, why: String| CheckReport::failed(url, result, why);
    let timeout = cfg.timeout.max(Duration::from_millis(10));
    let u = match HttpUrl::parse(url, false) {
        Ok(u) => u,
        Err(e) => return fail(CheckResult::HttpError, e),
    };
    let program = match url_program(url) {
        Ok(p) => cfg.program.or(p),
        Err(e) => return fail(CheckResult::HttpError, format!("{}: {e}", redact_url(url))),
    };
    let target = redact_url(&u.target);
    let addrs: Vec<SocketAddr> = match (u.host.as_str(), u.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return fail(
                CheckResult::HttpError,
                format!("cannot resolve {}: {e}", u.host),
            )
        }
    };
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    let mut last = (
        CheckResult::HttpError,
        format!("{} resolves to no address", u.host),
    );
    let mut conn = None;
    for addr in addrs {
        match connect_sliced(addr, deadline, beat, stop) {
            Ok(s) => {
                conn = Some((s, addr));
                break;
            }
            Err(None) => {
                last = (
                    CheckResult::Timeout,
                    format!(
                        "no answer from {addr} within {} (connect)",
                        secs_words(timeout)
                    ),
                );
                break;
            }
            Err(Some(e)) => {
                last = (CheckResult::HttpError, format!("connect to {addr}: {e}"));
            }
        }
    }
    let Some((mut s, addr)) = conn else {
        return fail(last.0, last.1);
    };
    let connect_s = t0.elapsed().as_secs_f64();
    let with_connect = |mut r: CheckReport| {
        r.connect_s = Some(connect_s);
        r
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(timeout));
    if let Err(e) = s.set_read_timeout(Some(SLICE)) {
        return with_connect(fail(CheckResult::HttpError, format!("socket: {e}")));
    }
    let host_header = if u.port == 80 {
        if u.host.contains(':') {
            format!("[{}]", u.host)
        } else {
            u.host.clone()
        }
    } else if u.host.contains(':') {
        format!("[{}]:{}", u.host, u.port)
    } else {
        format!("{}:{}", u.host, u.port)
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: capbox-check/{}\r\nAccept: video/mp2t, */*\r\nConnection: close\r\n\r\n",
        u.target,
        env!("CARGO_PKG_VERSION")
    );
    let t_req = Instant::now();
    if let Err(e) = s.write_all(req.as_bytes()) {
        return with_connect(fail(
            CheckResult::HttpError,
            format!("sending the request to {addr}: {e}"),
        ));
    }
    // The response head.
    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let mut ttfb = None;
    let head_deadline = t_req + timeout;
    let (body_start, framing) = loop {
        beat();
        if stop.load(Ordering::Relaxed) {
            return with_connect(fail(CheckResult::Timeout, "stopped".into()));
        }
        if Instant::now() >= head_deadline {
            let why = if head.is_empty() {
                format!("connected to {addr} but no byte in {}", secs_words(timeout))
            } else {
                format!(
                    "no complete response head from {addr} in {} ({} bytes)",
                    secs_words(timeout),
                    head.len()
                )
            };
            let mut r = with_connect(fail(CheckResult::Timeout, why));
            r.ttfb_s = ttfb;
            return r;
        }
        match read_slice(&mut s, &mut buf) {
            Ok(0) => {
                let mut r = with_connect(fail(
                    CheckResult::HttpError,
                    format!(
                        "{addr} closed the connection before a response ({} bytes)",
                        head.len()
                    ),
                ));
                r.ttfb_s = ttfb;
                return r;
            }
            Ok(n) => {
                ttfb.get_or_insert(t_req.elapsed().as_secs_f64());
                head.extend_from_slice(&buf[..n]);
                match parse_head(&head, false) {
                    Ok(Some(x)) => break x,
                    Ok(None) if head.len() > MAX_HEAD => {
                        let mut r = with_connect(fail(
                            CheckResult::BadStream,
                            format!("no end of the response head from {addr} in {MAX_HEAD} bytes"),
                        ));
                        r.ttfb_s = ttfb;
                        return r;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let (result, why) = match &e {
                            RemoteError::HttpStatus {
                                status,
                                reason,
                                location,
                            } => {
                                let mut w = format!("HTTP {status} from {addr} {target}");
                                if !reason.is_empty() && reason != "\"\"" {
                                    w.push_str(&format!(" ({})", reason.trim_matches('"')));
                                }
                                if let Some(l) = location {
                                    w.push_str(&format!(" to {l} (redirects are not followed)"));
                                }
                                (CheckResult::HttpError, w)
                            }
                            _ => (CheckResult::BadStream, format!("{e} from {addr} {target}")),
                        };
                        let mut r = with_connect(fail(result, why));
                        r.ttfb_s = ttfb;
                        return r;
                    }
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                let mut r = with_connect(fail(
                    CheckResult::HttpError,
                    format!("reading the response from {addr}: {e}"),
                ));
                r.ttfb_s = ttfb;
                return r;
            }
        }
    };
    // The body, for `listen` of stream time (or of wall time, whichever
    // first), bounded by max_bytes.
    let mut sc = StreamCheck::new(program, cfg.listen.as_millis() as u64, cfg.silence_dbfs);
    let mut dec = BodyDecoder::new(framing);
    let mut framing_error = None;
    let first = head.split_off(body_start.min(head.len()));
    drop(head);
    let mut fed = 0u64;
    let mut feed = |sc: &mut StreamCheck, dec: &mut BodyDecoder, bytes: &[u8]| {
        let wall = t_req.elapsed();
        let r = dec.feed(bytes, |b| {
            fed += b.len() as u64;
            sc.push(wall, b);
        });
        (r, fed)
    };
    let (r0, _) = feed(&mut sc, &mut dec, &first);
    if let Err(e) = r0 {
        framing_error = Some(e);
    }
    let t_body = Instant::now();
    let mut last_byte = Instant::now();
    let mut ended = None;
    let mut stalled = false;
    while framing_error.is_none() && !sc.done() && !dec.done() {
        beat();
        if stop.load(Ordering::Relaxed) || t_body.elapsed() >= cfg.listen {
            break;
        }
        if last_byte.elapsed() >= timeout {
            stalled = true;
            break;
        }
        match read_slice(&mut s, &mut buf) {
            Ok(0) => {
                ended = Some(match dec.at_eof() {
                    Ok(w) => w,
                    Err(w) => w,
                });
                break;
            }
            Ok(n) => {
                last_byte = Instant::now();
                let (r, total) = feed(&mut sc, &mut dec, &buf[..n]);
                if let Err(e) = r {
                    framing_error = Some(e);
                }
                if total >= cfg.max_bytes {
                    break;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                ended = Some(format!("reading the body from {addr}: {e}"));
                break;
            }
        }
    }
    drop(s);
    let listened = sc.listened_ms();
    let mut r = sc.finish(url);
    r.connect_s = Some(connect_s);
    r.ttfb_s = ttfb;
    if let Some(e) = framing_error {
        r.result = CheckResult::BadStream;
        r.error = Some(format!("broken HTTP body framing from {addr}: {e}"));
    } else if r.body_bytes == 0 && (stalled || ended.is_none()) {
        r.result = CheckResult::Timeout;
        r.error = Some(format!(
            "HTTP 200 from {addr} but no byte of the body in {:.0} s",
            t_body.elapsed().as_secs_f64()
        ));
    } else if let Some(end) = ended.filter(|_| listened < cfg.listen.as_millis() as u64) {
        // Ended early: say so beside the verdict.
        let note = format!(
            "the stream ended after {:.1} s ({end})",
            listened as f64 / 1000.0
        );
        r.error = Some(match r.error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    } else if stalled {
        let note = format!(
            "the stream stalled (no byte for {}) after {:.1} s",
            secs_words(timeout),
            listened as f64 / 1000.0
        );
        r.error = Some(match r.error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    }
    r
}

/// One configured probe's state, for /status and /metrics.
#[derive(Debug, Clone)]
struct ProbeState {
    cfg: crate::config::ProbeConfig,
    last_run: Option<Instant>,
    last_run_unix: Option<f64>,
    last: Option<CheckReport>,
    runs: BTreeMap<CheckResult, u64>,
}

/// The configured probes' last results: shared by the prober thread (who
/// writes) and the HTTP server (who reads).
#[derive(Default)]
pub struct ProbeBoard {
    probes: Mutex<Vec<ProbeState>>,
}

impl ProbeBoard {
    pub fn new() -> Arc<ProbeBoard> {
        Arc::new(ProbeBoard::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ProbeState>> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configured list (a reload keeps the results and counters of
    /// probes whose name stays).
    pub fn set_config(&self, list: &[crate::config::ProbeConfig]) {
        let mut g = self.lock();
        let old = std::mem::take(&mut *g);
        for c in list {
            let st = match old.iter().find(|o| o.cfg.name == c.name) {
                Some(o) if o.cfg.url == c.url => ProbeState {
                    cfg: c.clone(),
                    ..o.clone()
                },
                _ => ProbeState {
                    cfg: c.clone(),
                    last_run: None,
                    last_run_unix: None,
                    last: None,
                    runs: BTreeMap::new(),
                },
            };
            g.push(st);
        }
    }

    /// A check of probe `name` finished; returns the previous result.
    fn record(&self, name: &str, started: Instant, r: CheckReport) -> Option<CheckResult> {
        let mut g = self.lock();
        let st = g.iter_mut().find(|s| s.cfg.name == name)?;
        let prev = st.last.as_ref().map(|l| l.result);
        st.last_run = Some(started);
        st.last_run_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        *st.runs.entry(r.result).or_insert(0) += 1;
        st.last = Some(r);
        prev
    }

    /// `/status` `probes[]`: the contract's fields.
    pub fn status(&self) -> serde_json::Value {
        let g = self.lock();
        let list: Vec<serde_json::Value> = g
            .iter()
            .map(|s| {
                let l = s.last.as_ref();
                serde_json::json!({
                    "name": s.cfg.name,
                    "url": redact_url(&s.cfg.url),
                    "every_s": s.cfg.every_s,
                    "last_run_s_ago": s.last_run.map(|t| t.elapsed().as_secs()),
                    "result": l.map(|l| l.result.as_str()),
                    "ttfb_s": l.and_then(|l| l.ttfb_s),
                    "zap_s": l.and_then(|l| l.zap_s),
                    "video": l.and_then(|l| l.video.as_ref().map(|v| serde_json::json!({
                        "pid": v.pid, "codec": v.codec, "present": v.present,
                        "bitrate_bps": v.bitrate_bps,
                    }))),
                    "audio": l.map(|l| l.audio.iter().map(|a| serde_json::json!({
                        "pid": a.pid, "codec": a.codec, "present": a.present,
                        "bitrate_bps": a.bitrate_bps, "level_dbfs": a.level_dbfs,
                        "silent": a.silent,
                    })).collect::<Vec<_>>()),
                    "video_present": l.map(|l| l.video_present),
                    "audio_present": l.map(|l| l.audio_present),
                    "silent": l.map(|l| l.silent),
                    "level_dbfs": l.and_then(|l| l.level_dbfs.filter(|v| v.is_finite())),
                    "error": l.and_then(|l| l.error.clone()),
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// The `capbox_probe_*` families (none when no probe is configured).
    pub fn render_metrics(&self, m: &mut String) {
        let g = self.lock();
        if g.is_empty() {
            return;
        }
        let ran: Vec<(&str, &CheckReport)> = g
            .iter()
            .filter_map(|s| s.last.as_ref().map(|l| (s.cfg.name.as_str(), l)))
            .collect();
        let mut f = family(
            m,
            "capbox_probe_up",
            Kind::Gauge,
            "1 when the probe's last check was ok (the URL gave a viewer picture and sound).",
        );
        for (n, l) in &ran {
            f.sample(&[("probe", n)], l.result == CheckResult::Ok);
        }
        let mut f = family(
            m,
            "capbox_probe_ttfb_seconds",
            Kind::Gauge,
            "Seconds from the request to the first byte of the response, last check.",
        );
        for (n, l) in &ran {
            if let Some(v) = l.ttfb_s {
                f.sample(&[("probe", n)], v);
            }
        }
        let mut f = family(
            m,
            "capbox_probe_zap_seconds",
            Kind::Gauge,
            "Seconds from the request to the first picture a decoder can start on, last check.",
        );
        for (n, l) in &ran {
            if let Some(v) = l.zap_s {
                f.sample(&[("probe", n)], v);
            }
        }
        let mut f = family(
            m,
            "capbox_probe_video_present",
            Kind::Gauge,
            "1 when the last check saw video pictures with advancing PTS.",
        );
        for (n, l) in &ran {
            f.sample(&[("probe", n)], l.video_present);
        }
        let mut f = family(
            m,
            "capbox_probe_audio_present",
            Kind::Gauge,
            "1 when the last check saw audio frames with advancing PTS.",
        );
        for (n, l) in &ran {
            f.sample(&[("probe", n)], l.audio_present);
        }
        let mut f = family(
            m,
            "capbox_probe_silent",
            Kind::Gauge,
            "1 when every audio frame of the last check was below the silence threshold.",
        );
        for (n, l) in &ran {
            f.sample(&[("probe", n)], l.silent);
        }
        let mut f = family(
            m,
            "capbox_probe_runs_total",
            Kind::Counter,
            "Checks run, by result.",
        );
        for s in g.iter() {
            for r in CheckResult::ALL {
                let v = s.runs.get(&r).copied().unwrap_or(0);
                f.sample(&[("probe", &s.cfg.name), ("result", r.as_str())], v);
            }
        }
        let mut f = family(
            m,
            "capbox_probe_last_run_timestamp_seconds",
            Kind::Gauge,
            "Unix time the probe's last check started.",
        );
        for s in g.iter() {
            if let Some(t) = s.last_run_unix {
                f.sample(&[("probe", &s.cfg.name)], t);
            }
        }
    }
}

/// The configured probes' thread: one check at a time, each probe every
/// `every_s`, the first runs staggered over the list.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Seconds between the first runs of consecutive probes.
const STAGGER: Duration = Duration::from_secs(2);

impl Prober {
    /// Start polling `list` into `board`; `hb` is beaten at least every
    /// [`SLICE`] (a stall is reported by the supervisor, not acted on).
    pub fn start(
        list: Vec<crate::config::ProbeConfig>,
        board: Arc<ProbeBoard>,
        hb: crate::supervisor::Heartbeat,
    ) -> Prober {
        board.set_config(&list);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probes".into())
            .spawn(move || run_probes(list, board, hb, stop2))
            .map_err(|e| log::error!("probes: cannot start the thread: {e}"))
            .ok();
        Prober { stop, thread }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run_probes(
    list: Vec<crate::config::ProbeConfig>,
    board: Arc<ProbeBoard>,
    hb: crate::supervisor::Heartbeat,
    stop: Arc<AtomicBool>,
) {
    let t0 = Instant::now();
    let mut due: Vec<Instant> = (0..list.len())
        .map(|i| t0 + STAGGER * (i as u32).min(3600))
        .collect();
    let beat = || hb.beat();
    while !stop.load(Ordering::Relaxed) {
        hb.beat();
        let Some((i, when)) = due.iter().copied().enumerate().min_by_key(|(_, t)| *t) else {
            std::thread::sleep(SLICE);
            continue;
        };
        let now = Instant::now();
        if when > now {
            std::thread::sleep((when - now).min(SLICE));
            continue;
        }
        let p = &list[i];
        let mut cfg = CheckConfig::new(p.url.clone());
        cfg.listen = Duration::from_secs(p.listen_s);
        cfg.timeout = Duration::from_secs(p.timeout_s);
        let started = Instant::now();
        let r = check(&cfg, &beat, &stop);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        due[i] = started + Duration::from_secs(p.every_s.max(1));
        let (result, why) = (r.result, r.error.clone());
        let prev = board.record(&p.name, started, r);
        if prev != Some(result) {
            let from = prev.map_or("none", |r| r.as_str());
            let why = why.map(|w| format!(": {w}")).unwrap_or_default();
            if result == CheckResult::Ok {
                log::info!("probe '{}': {from} -> ok{why}", p.name);
            } else {
                log::warn!("probe '{}': {from} -> {}{why}", p.name, result.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn garbage_and_empty_bodies_are_bad_streams_in_words() {
        let r = StreamCheck::new(None, 1000, -60.0).finish("http://h/x");
        assert_eq!(r.result, CheckResult::BadStream);
        assert!(r.error.unwrap().contains("body was empty"));
        let mut sc = StreamCheck::new(None, 1000, -60.0);
        let mut seed = 7;
        let junk: Vec<u8> = (0..100_000).map(|_| lcg(&mut seed) as u8 | 1).collect();
        sc.push(Duration::from_millis(1), &junk);
        let r = sc.finish("http://h/x");
        assert_eq!(r.result, CheckResult::BadStream);
        let e = r.error.unwrap();
        assert!(
            e.contains("no MPEG-TS packet in 100000 bytes") || e.contains("no packet sync"),
            "{e}"
        );
    }

    #[test]
    fn packets_without_a_pat_say_so() {
        let mut sc = StreamCheck::new(None, 1000, -60.0);
        let mut pkt = [0xFFu8; 188];
        crate::ts::packet::write_header(&mut pkt, 0x100, true, 0);
        for i in 0..100 {
            sc.push(Duration::from_millis(i), &pkt);
        }
        let r = sc.finish("http://h/x");
        assert_eq!(r.result, CheckResult::BadStream);
        assert!(r.error.unwrap().starts_with("no PAT in"), "");
    }

    /// Random TS packets on the PSI and stream PIDs, with a real PAT and
    /// PMT in between: never a panic, bounded buffers, one verdict.
    #[test]
    fn random_packets_never_panic() {
        let pat = crate::ts::pat::PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![crate::ts::pat::PatEntry {
                program_number: 1,
                pid: 0x100,
            }],
        }
        .emit();
        let pmt = PmtRepr {
            program_number: 1,
            version: 0,
            pcr_pid: 0x101,
            program_info: Vec::new(),
            streams: vec![
                crate::ts::pmt::PmtStream {
                    stream_type: 0x1B,
                    elementary_pid: 0x101,
                    descriptors: Vec::new(),
                },
                crate::ts::pmt::PmtStream {
                    stream_type: 0x03,
                    elementary_pid: 0x102,
                    descriptors: Vec::new(),
                },
            ],
        }
        .emit();
        let mut psi = Vec::new();
        let (mut c0, mut c1) = (0, 0);
        crate::ts::section::packetize(&pat, 0, &mut c0, &mut psi);
        crate::ts::section::packetize(&pmt, 0x100, &mut c1, &mut psi);
        for seed0 in 0..20u64 {
            let mut seed = seed0;
            let mut sc = StreamCheck::new(None, 2000, -60.0);
            sc.push(Duration::ZERO, &psi);
            for i in 0..3000u64 {
                let mut p = [0u8; 188];
                for b in p.iter_mut() {
                    *b = lcg(&mut seed) as u8;
                }
                let pid = [0, 0x100, 0x101, 0x102][(lcg(&mut seed) % 4) as usize];
                p[0] = 0x47;
                p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
                p[2] = pid as u8;
                if i % 7 == 0 {
                    // A PES start with a real header.
                    p[3] = 0x10 | (p[3] & 0x0F);
                    p[1] |= 0x40;
                    p[4..13].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5]);
                }
                sc.push(Duration::from_millis(i), &p);
                if i % 500 == 0 {
                    sc.push(Duration::from_millis(i), &psi);
                }
            }
            assert!(sc.video.as_ref().map_or(0, |v| v.pes.len()) <= MAX_VIDEO_PES);
            let r = sc.finish("http://h/x");
            assert!(r.error.is_some() || r.result == CheckResult::Ok);
        }
    }

    fn probe(name: &str) -> crate::config::ProbeConfig {
        crate::config::ProbeConfig {
            name: name.into(),
            url: format!("http://h/{name}?token=secret"),
            every_s: 300,
            listen_s: 10,
            timeout_s: 15,
        }
    }

    #[test]
    fn the_board_renders_lint_clean_metrics_and_the_status_fields() {
        let b = ProbeBoard::new();
        let mut m = String::new();
        b.render_metrics(&mut m);
        assert!(m.is_empty(), "no probe, no family");
        b.set_config(&[probe("a"), probe("b")]);
        let mut ok = CheckReport::failed("http://h/a", CheckResult::Ok, String::new());
        ok.error = None;
        ok.ttfb_s = Some(0.01);
        ok.zap_s = Some(0.5);
        ok.video_present = true;
        ok.audio_present = true;
        assert_eq!(b.record("a", Instant::now(), ok), None);
        let bad = CheckReport::failed("http://h/b", CheckResult::HttpError, "HTTP 404".into());
        assert_eq!(b.record("b", Instant::now(), bad.clone()), None);
        assert_eq!(
            b.record("b", Instant::now(), bad),
            Some(CheckResult::HttpError)
        );
        b.render_metrics(&mut m);
        crate::monitor::metrics::lint(&m).unwrap();
        for want in [
            "capbox_probe_up{probe=\"a\"} 1",
            "capbox_probe_up{probe=\"b\"} 0",
            "capbox_probe_zap_seconds{probe=\"a\"} 0.5",
            "capbox_probe_runs_total{probe=\"b\",result=\"http_error\"} 2",
            "capbox_probe_runs_total{probe=\"b\",result=\"ok\"} 0",
            "capbox_probe_last_run_timestamp_seconds{probe=\"a\"} ",
        ] {
            assert!(m.contains(want), "{want} missing:\n{m}");
        }
        assert!(!m.contains("capbox_probe_ttfb_seconds{probe=\"b\"}"));
        let st = b.status();
        assert_eq!(st[0]["result"], "ok");
        assert_eq!(st[0]["zap_s"], 0.5);
        assert_eq!(st[1]["error"], "HTTP 404");
        assert!(!st.to_string().contains("secret"), "{st}");
        // A reload keeps what stays, forgets what moved.
        let mut moved = probe("b");
        moved.url = "http://other/b".into();
        b.set_config(&[probe("a"), moved]);
        let st = b.status();
        assert_eq!(st[0]["result"], "ok");
        assert!(st[1]["result"].is_null());
    }

    #[test]
    fn url_fragment_program() {
        assert_eq!(url_program("http://h/x"), Ok(None));
        assert_eq!(url_program("http://h/x#program=3"), Ok(Some(3)));
        assert!(url_program("http://h/x#program=0").is_err());
        assert!(url_program("http://h/x#program=x").is_err());
    }

    #[test]
    fn a_closed_port_is_an_http_error_and_https_is_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let stop = AtomicBool::new(false);
        let r = check(&CheckConfig::new(format!("http://{addr}/x")), &|| {}, &stop);
        assert_eq!(r.result, CheckResult::HttpError);
        assert!(r.error.unwrap().contains(&format!("connect to {addr}")));
        let r = check(&CheckConfig::new("https://h/x?token=s3"), &|| {}, &stop);
        assert_eq!(r.result, CheckResult::HttpError);
        let e = r.error.unwrap();
        assert!(
            e.contains("https is not supported") && !e.contains("s3"),
            "{e}"
        );
    }
}
