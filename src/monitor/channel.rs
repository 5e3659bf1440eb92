//! Is the channel on air? The per-channel monitor: fed the packets a
//! channel *emits* (what viewers get: after failover, splice and slate),
//! it follows the PAT and PMT of that output (streams come and go with
//! PMT versions), owns the elementary-stream analysers (`monitor::es`) of
//! each video and audio stream, and gives the channel's verdict in words:
//! `ok`, `no video`, `no audio`, `silent`, `frozen`, `scrambled`, `slate`,
//! `starting`.
//!
//! Cheap by construction: per packet a PID table lookup; a PES header is
//! read only on payload-unit-start packets; video pictures are not
//! reassembled (the freeze fingerprint needs the picture's size and its
//! last bytes: the last two TS payloads are kept); audio is measured on
//! one PES in [`AUDIO_SAMPLE_EVERY`] (silence is judged over seconds, so
//! sampling delays the verdict by a few tens of milliseconds at most).
//!
//! Time is the caller's (`now_ms` on any monotonic clock): the daemon
//! passes milliseconds since the channel started, the soak test stream
//! time. Nothing here reads a clock, blocks or panics on any input; memory
//! is bounded ([`MAX_STREAMS`] streams, one audio PES of [`MAX_AUDIO_PES`]
//! bytes each), and every packet or PES it cannot use is counted.

use super::es::{
    channel_verdict, AudioState, ChannelVerdict, EsFlow, FlowConfig, FlowVerdict, FreezeConfig,
    FreezeDetector, PictureState, SilenceConfig, SilenceDetector,
};
use crate::config::MonitorConfig;
use crate::ts::packet::{Packet, PACKET_SIZE};
use crate::ts::pat::PatRepr;
use crate::ts::pes::PesHeader;
use crate::ts::pmt::{AudioCodec, PmtRepr, StreamKind, VideoCodec};
use crate::ts::section::{Assembler, Section};

/// Video and audio streams followed per channel; more in a PMT are counted
/// (`streams_refused`) and not analysed.
pub const MAX_STREAMS: usize = 16;
/// One audio PES in this many is measured for silence.
pub const AUDIO_SAMPLE_EVERY: u32 = 4;
/// An audio PES longer than this is not measured (counted).
pub const MAX_AUDIO_PES: usize = 64 * 1024;
/// The verdict is recomputed at most this often (ms).
const UPDATE_EVERY_MS: u64 = 250;
/// TS payload bytes kept per video stream for the freeze fingerprint.
const TAIL_SLOT: usize = PACKET_SIZE - 4;

/// The times and thresholds, from `[monitor]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorSettings {
    pub flow: FlowConfig,
    pub silence: SilenceConfig,
    pub freeze: FreezeConfig,
    /// One audio PES in this many is measured (1: all).
    pub audio_sample_every: u32,
}

impl MonitorSettings {
    pub fn from_config(c: &MonitorConfig) -> MonitorSettings {
        MonitorSettings {
            flow: FlowConfig {
                window_ms: c.pes_after_s * 1000,
                pts_pcr_min_ms: c.pts_pcr_min_ms,
                pts_pcr_max_ms: c.pts_pcr_max_ms,
            },
            silence: SilenceConfig {
                threshold_dbfs: c.silence_dbfs as f32,
                silence_after_ms: c.silence_after_s * 1000,
            },
            freeze: FreezeConfig {
                frozen_after_ms: c.frozen_after_s * 1000,
                ..FreezeConfig::default()
            },
            audio_sample_every: AUDIO_SAMPLE_EVERY,
        }
    }
}

impl Default for MonitorSettings {
    fn default() -> MonitorSettings {
        MonitorSettings::from_config(&MonitorConfig::default())
    }
}

/// A channel's verdict: what `/status` and `capbox status` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    Ok,
    NoVideo,
    NoAudio,
    Silent,
    Frozen,
    Scrambled,
    Slate,
    #[default]
    Starting,
}

impl Verdict {
    pub const ALL: [Verdict; 8] = [
        Verdict::Ok,
        Verdict::NoVideo,
        Verdict::NoAudio,
        Verdict::Silent,
        Verdict::Frozen,
        Verdict::Scrambled,
        Verdict::Slate,
        Verdict::Starting,
    ];

    /// In words, as `/status` and `capbox status` show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::NoVideo => "no video",
            Verdict::NoAudio => "no audio",
            Verdict::Silent => "silent",
            Verdict::Frozen => "frozen",
            Verdict::Scrambled => "scrambled",
            Verdict::Slate => "slate",
            Verdict::Starting => "starting",
        }
    }

    /// The `verdict` label of `capbox_channel_verdict`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::NoVideo => "no_video",
            Verdict::NoAudio => "no_audio",
            v => v.as_str(),
        }
    }

    fn index(&self) -> usize {
        Verdict::ALL.iter().position(|v| v == self).unwrap_or(0)
    }

    /// A fault the operator should hear about (not ok, not starting).
    pub fn is_fault(&self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::Starting)
    }
}

impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One elementary stream in `/status` (`channels[i].es[]`) and metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EsStatus {
    pub pid: u16,
    /// "video" or "audio".
    pub kind: &'static str,
    /// ffmpeg's name ("h264", "mp2", …).
    pub codec: &'static str,
    /// PES with PTS advancing within `pes_after_s`.
    pub present: bool,
    pub bitrate_bps: u64,
    /// PES seen since the stream appeared.
    pub pes: u64,
    /// PTS − PCR at arrival of the last PES measured (ms).
    pub pts_pcr_ms: Option<i64>,
    #[serde(skip)]
    pub pts_pcr_out_of_range: u64,
    /// Audio: the last frame's loudest level (dBFS; null for −∞ in JSON).
    pub level_dbfs: Option<f32>,
    pub silent: bool,
    pub frozen: bool,
    /// Packets of this PID still scrambled.
    #[serde(skip)]
    pub scrambled_packets: u64,
}

/// What the monitor says of the channel, refreshed every 250 ms.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MonitorStatus {
    pub verdict: Verdict,
    pub reason: String,
    pub since_s: u64,
    pub es: Vec<EsStatus>,
    /// Seconds spent per verdict, in `Verdict::ALL` order.
    pub seconds: [f64; 8],
    pub counters: MonitorCounters,
}

/// Everything the monitor could not use, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MonitorCounters {
    pub packets: u64,
    /// Packets without the sync byte (never emitted by capbox; counted).
    pub bad_sync: u64,
    /// Packets whose adaptation field leaves no room for the payload.
    pub bad_adaptation: u64,
    /// Payload-unit starts whose PES header could not be read.
    pub bad_pes: u64,
    /// Video/audio streams beyond `MAX_STREAMS` in a PMT, per PMT version.
    pub streams_refused: u64,
    /// Audio PES longer than `MAX_AUDIO_PES`, not measured.
    pub audio_pes_too_long: u64,
    pub pmt_versions: u64,
    /// PAT or PMT sections that did not parse.
    pub bad_psi: u64,
}

/// Where one of a video PES's last TS payloads is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Empty,
    /// In `Stream::saved[i]`, this long.
    Saved(u8, u16),
    /// In the batch being fed: offset, length.
    Batch(u32, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Video(VideoCodec),
    Audio(AudioCodec),
}

struct Stream {
    pid: u16,
    stream_type: u8,
    codec: Codec,
    codec_name: &'static str,
    // The analysers and the saved tail are boxed: what `feed` touches per
    // packet stays in a few cache lines of `Stream` (a `Stream` with them
    // inline was ≈ 2.4 KB, its per-packet fields lines apart).
    flow: Box<EsFlow>,
    freeze: Option<Box<FreezeDetector>>,
    silence: Option<Box<SilenceDetector>>,
    /// The PES being received: arrival, PTS, PCR then, payload bytes.
    in_pes: bool,
    pes_ms: u64,
    pes_pts: Option<u64>,
    pes_pcr: Option<u64>,
    pes_len: usize,
    /// Video: the last two TS payloads of the PES (older, newer), where
    /// they are: in the batch being fed (not copied) or saved here at the
    /// end of the batch (two copies per batch, not one per packet).
    /// `pieces[newer]` is the newer, the other the older: a new payload
    /// overwrites the older (no read of the slot just written per packet,
    /// which stalled the store forwarding).
    pieces: [Piece; 2],
    newer: u8,
    saved: Box<[[u8; TAIL_SLOT]; 2]>,
    /// `pieces` refer to the batch: save them before it goes.
    in_batch: bool,
    /// Audio: this PES is measured; its bytes.
    sampled: bool,
    audio_pes_seen: u32,
    buf: Vec<u8>,
    last_pes_ms: Option<u64>,
    last_pts_pcr_ms: Option<i64>,
    /// The last packet of the PID was scrambled.
    scrambled: bool,
    scrambled_packets: u64,
    created_ms: u64,
}

impl Stream {
    fn new(
        pid: u16,
        stream_type: u8,
        codec: Codec,
        name: &'static str,
        s: &MonitorSettings,
        now_ms: u64,
    ) -> Stream {
        Stream {
            pid,
            stream_type,
            codec,
            codec_name: name,
            flow: Box::new(EsFlow::new(s.flow, now_ms)),
            freeze: match codec {
                Codec::Video(c) => Some(Box::new(FreezeDetector::new(c, s.freeze))),
                Codec::Audio(_) => None,
            },
            silence: match codec {
                Codec::Audio(c) => Some(Box::new(SilenceDetector::new(c, s.silence))),
                Codec::Video(_) => None,
            },
            in_pes: false,
            pes_ms: 0,
            pes_pts: None,
            pes_pcr: None,
            pes_len: 0,
            pieces: [Piece::Empty; 2],
            newer: 1,
            saved: Box::new([[0; TAIL_SLOT]; 2]),
            in_batch: false,
            sampled: false,
            audio_pes_seen: 0,
            buf: Vec::new(),
            last_pes_ms: None,
            last_pts_pcr_ms: None,
            scrambled: false,
            scrambled_packets: 0,
            created_ms: now_ms,
        }
    }

    fn is_video(&self) -> bool {
        matches!(self.codec, Codec::Video(_))
    }

    fn kind(&self) -> &'static str {
        if self.is_video() {
            "video"
        } else {
            "audio"
        }
    }

    fn piece<'a>(&'a self, p: Piece, batch: &'a [u8]) -> &'a [u8] {
        match p {
            Piece::Empty => &[],
            Piece::Saved(i, n) => &self.saved[i as usize][..n as usize],
            Piece::Batch(off, n) => batch
                .get(off as usize..off as usize + n as usize)
                .unwrap_or(&[]),
        }
    }

    /// The batch ends: copy the pieces still in it.
    fn save_pieces(&mut self, batch: &[u8]) {
        if !self.in_batch {
            return;
        }
        self.in_batch = false;
        let mut tmp = [[0u8; TAIL_SLOT]; 2];
        let mut pieces = [Piece::Empty; 2];
        let ordered = [
            self.pieces[(self.newer ^ 1) as usize],
            self.pieces[self.newer as usize],
        ];
        for (k, p) in ordered.into_iter().enumerate() {
            let b = self.piece(p, batch);
            let n = b.len().min(TAIL_SLOT);
            tmp[k][..n].copy_from_slice(&b[b.len() - n..]);
            if n > 0 {
                pieces[k] = Piece::Saved(k as u8, n as u16);
            }
        }
        *self.saved = tmp;
        self.pieces = pieces;
        self.newer = 1;
    }

    /// The PES in progress is whole: judge it. `batch`: the packets being
    /// fed (the PES's last payloads may be there).
    fn finish_pes(&mut self, counters: &mut MonitorCounters, batch: &[u8]) {
        if !self.in_pes {
            return;
        }
        self.in_pes = false;
        self.flow
            .on_pes(self.pes_ms, self.pes_len, self.pes_pts, self.pes_pcr);
        if let (Some(pts), Some(pcr)) = (self.pes_pts, self.pes_pcr) {
            let base = (pcr / 300) & ((1 << 33) - 1);
            let d = crate::ts::pes::pts_delta(base, pts & ((1 << 33) - 1)) as i64;
            let d = if d >= 1 << 32 { d - (1 << 33) } else { d };
            self.last_pts_pcr_ms = Some(d / 90);
        }
        if self.freeze.is_some() {
            let mut end = [0u8; 2 * TAIL_SLOT];
            let older = self.piece(self.pieces[(self.newer ^ 1) as usize], batch);
            let newer = self.piece(self.pieces[self.newer as usize], batch);
            let (a, b) = (older.len().min(TAIL_SLOT), newer.len().min(TAIL_SLOT));
            end[..a].copy_from_slice(&older[older.len() - a..]);
            end[a..a + b].copy_from_slice(&newer[newer.len() - b..]);
            let (ms, len) = (self.pes_ms, self.pes_len);
            if let Some(f) = self.freeze.as_mut() {
                f.push_picture(ms, len, &end[..a + b]);
            }
        }
        if self.sampled {
            self.sampled = false;
            if let Some(d) = self.silence.as_mut() {
                if self.buf.len() > MAX_AUDIO_PES {
                    counters.audio_pes_too_long += 1;
                } else {
                    // A sampled PES is not contiguous with the last one.
                    d.reset();
                    d.push_pes(self.pes_ms, &self.buf);
                }
            }
            self.buf.clear();
        }
    }

    /// Add one TS payload to the PES in progress; `off`: where it is in
    /// the batch.
    /// `take_payload` of `m` packets' full payloads (184 bytes), the last
    /// at `last_off` in the batch, those before it one packet apart (not
    /// sampled audio: its bytes are copied one packet at a time).
    fn take_run(&mut self, m: usize, last_off: usize) {
        let full = PACKET_SIZE - 4;
        self.pes_len += m * full;
        if self.freeze.is_some() {
            // As `m` payloads one after the other: the newer flips each
            // time; the last two are the newer and the older.
            self.newer ^= (m & 1) as u8;
            let n = full.min(TAIL_SLOT) as u16;
            self.pieces[self.newer as usize] = Piece::Batch(last_off as u32, n);
            if m >= 2 {
                self.pieces[(self.newer ^ 1) as usize] =
                    Piece::Batch((last_off - PACKET_SIZE) as u32, n);
            }
            self.in_batch = true;
        }
    }

    fn take_payload(&mut self, data: &[u8], off: usize) {
        self.pes_len += data.len();
        if self.freeze.is_some() && !data.is_empty() {
            // Noted, not copied: the newer becomes the older.
            self.newer ^= 1;
            self.pieces[self.newer as usize] =
                Piece::Batch(off as u32, data.len().min(TAIL_SLOT) as u16);
            self.in_batch = true;
        }
        if self.sampled && self.buf.len() <= MAX_AUDIO_PES {
            let room = (MAX_AUDIO_PES + 1).saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// The per-channel monitor.
pub struct ChannelMonitor {
    settings: MonitorSettings,
    /// PID → 0 (nothing), 1..=MAX_STREAMS (stream index + 1), PAT, PMT.
    pids: Box<[u8; 8192]>,
    pat: Assembler,
    pmt: Assembler,
    pmt_pid: Option<u16>,
    pmt_crc: Option<u32>,
    pcr_pid: Option<u16>,
    /// The last PCR (27 MHz) and when it arrived.
    pcr: Option<(u64, u64)>,
    streams: Vec<Stream>,
    started_ms: u64,
    last_packet_ms: Option<u64>,
    last_update_ms: Option<u64>,
    status: MonitorStatus,
    /// When the current verdict began.
    since_ms: u64,
    counters: MonitorCounters,
    news: Option<String>,
}

const PAT_SLOT: u8 = 0xFE;
const PMT_SLOT: u8 = 0xFD;

impl ChannelMonitor {
    pub fn new(settings: MonitorSettings, now_ms: u64) -> ChannelMonitor {
        let mut pids = Box::new([0u8; 8192]);
        pids[0] = PAT_SLOT;
        ChannelMonitor {
            settings,
            pids,
            pat: Assembler::new(),
            pmt: Assembler::new(),
            pmt_pid: None,
            pmt_crc: None,
            pcr_pid: None,
            pcr: None,
            streams: Vec::new(),
            started_ms: now_ms,
            last_packet_ms: None,
            last_update_ms: None,
            status: MonitorStatus {
                reason: "waiting for the channel's PMT".into(),
                ..MonitorStatus::default()
            },
            since_ms: now_ms,
            counters: MonitorCounters::default(),
            news: None,
        }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// The last verdict and streams (as of the last `update`).
    pub fn status(&self) -> &MonitorStatus {
        &self.status
    }

    /// Feed packets the channel emitted at `now_ms` (whole packets; a
    /// trailing partial packet is ignored).
    pub fn feed(&mut self, now_ms: u64, packets: &[u8]) {
        if packets.len() >= PACKET_SIZE {
            self.last_packet_ms = Some(now_ms);
        }
        self.counters.packets += (packets.len() / PACKET_SIZE) as u64;
        let total = packets.len() / PACKET_SIZE;
        let mut i = 0;
        while i < total {
            let at = i * PACKET_SIZE;
            let raw = &packets[at..at + PACKET_SIZE];
            i += 1;
            if raw[0] != 0x47 {
                self.counters.bad_sync += 1;
                continue;
            }
            let pid = u16::from_be_bytes([raw[1] & 0x1F, raw[2]]);
            let afc = (raw[3] >> 4) & 3;
            if Some(pid) == self.pcr_pid && afc & 2 != 0 && raw[4] >= 7 && raw[5] & 0x10 != 0 {
                let b = &raw[6..12];
                let base = (b[0] as u64) << 25
                    | (b[1] as u64) << 17
                    | (b[2] as u64) << 9
                    | (b[3] as u64) << 1
                    | (b[4] as u64) >> 7;
                let ext = ((b[4] as u64 & 1) << 8) | b[5] as u64;
                self.pcr = Some((base * 300 + ext, now_ms));
            }
            let slot = self.pids[pid as usize];
            if slot == 0 {
                continue;
            }
            if slot == PAT_SLOT || slot == PMT_SLOT {
                self.psi(slot, raw, now_ms);
                continue;
            }
            let Some(st) = self.streams.get_mut(slot as usize - 1) else {
                continue;
            };
            if raw[3] & 0xC0 != 0 {
                st.scrambled = true;
                st.scrambled_packets += 1;
                st.in_pes = false;
                st.sampled = false;
                continue;
            }
            st.scrambled = false;
            if afc & 1 == 0 {
                continue;
            }
            let off = if afc & 2 != 0 { 5 + raw[4] as usize } else { 4 };
            if off > PACKET_SIZE {
                self.counters.bad_adaptation += 1;
                continue;
            }
            let payload = &raw[off..];
            if raw[1] & 0x40 != 0 {
                st.finish_pes(&mut self.counters, packets);
                let Ok(h) = PesHeader::new_checked(payload) else {
                    self.counters.bad_pes += 1;
                    continue;
                };
                st.in_pes = true;
                st.pes_ms = now_ms;
                st.last_pes_ms = Some(now_ms);
                st.pes_pts = h.pts();
                // The program clock at this packet: the last PCR plus the
                // time since it arrived.
                st.pes_pcr = self
                    .pcr
                    .map(|(pcr, at)| pcr + now_ms.saturating_sub(at) * 27_000);
                st.pes_len = 0;
                st.pieces = [Piece::Empty; 2];
                if st.silence.is_some() {
                    st.sampled = st.audio_pes_seen % self.settings.audio_sample_every.max(1) == 0;
                    st.audio_pes_seen = st.audio_pes_seen.wrapping_add(1);
                    st.buf.clear();
                }
                let hl = h.payload_offset().min(payload.len());
                st.take_payload(&payload[hl..], at + off + hl);
            } else if st.in_pes {
                st.take_payload(payload, at + off);
                if afc == 1 && !st.sampled {
                    // The packets right after this one that continue the
                    // PES alike (this PID, no PES start, clear, payload
                    // only: no PCR, nothing but 184 bytes of payload)
                    // need no more than their count: what this loop would
                    // do for each of them, done once for the run.
                    let mut m = 0;
                    while let Some(h) =
                        packets.get((i + m) * PACKET_SIZE..(i + m) * PACKET_SIZE + 4)
                    {
                        if i + m >= total
                            || h[0] != 0x47
                            || h[1] & 0x5F != raw[1] & 0x1F
                            || h[2] != raw[2]
                            || h[3] & 0xF0 != 0x10
                        {
                            break;
                        }
                        m += 1;
                    }
                    if m > 0 {
                        i += m;
                        st.take_run(m, (i - 1) * PACKET_SIZE + 4);
                    }
                }
            }
        }
        for st in &mut self.streams {
            st.save_pieces(packets);
        }
    }

    fn psi(&mut self, slot: u8, raw: &[u8], now_ms: u64) {
        let Ok(pkt) = Packet::new_checked(raw) else {
            return;
        };
        let mut sections: Vec<Vec<u8>> = Vec::new();
        let asm = if slot == PAT_SLOT {
            &mut self.pat
        } else {
            &mut self.pmt
        };
        asm.push(&pkt, |s| sections.push(s.to_vec()));
        for s in sections {
            let Ok(sec) = Section::new_checked(&s[..]) else {
                self.counters.bad_psi += 1;
                continue;
            };
            if slot == PAT_SLOT {
                match PatRepr::parse(&sec) {
                    Ok(pat) => {
                        let pid = pat.programs().next().map(|e| e.pid);
                        if pid != self.pmt_pid {
                            if let Some(old) = self.pmt_pid {
                                if self.pids[old as usize] == PMT_SLOT {
                                    self.pids[old as usize] = 0;
                                }
                            }
                            self.pmt_pid = pid;
                            self.pmt_crc = None;
                            self.pmt.reset();
                            if let Some(p) = pid.filter(|&p| p != 0) {
                                self.pids[p as usize] = PMT_SLOT;
                            }
                        }
                    }
                    Err(_) => self.counters.bad_psi += 1,
                }
            } else {
                let crc = sec.crc32();
                if crc.is_some() && crc == self.pmt_crc {
                    continue;
                }
                match PmtRepr::parse(&sec) {
                    Ok(pmt) => {
                        self.pmt_crc = crc;
                        self.follow_pmt(&pmt, now_ms);
                    }
                    Err(_) => self.counters.bad_psi += 1,
                }
            }
        }
    }

    /// A new PMT (version): keep the analysers of streams still there with
    /// the same type, start the new ones, drop the gone.
    fn follow_pmt(&mut self, pmt: &PmtRepr, now_ms: u64) {
        self.counters.pmt_versions += 1;
        let mut old = std::mem::take(&mut self.streams);
        for s in &old {
            self.pids[s.pid as usize] = 0;
        }
        let mut refused = 0;
        for es in &pmt.streams {
            let class = es.classify();
            let codec = match class.kind {
                StreamKind::Video => es.video_codec().map(Codec::Video),
                StreamKind::Audio => es.audio_codec().map(Codec::Audio),
                _ => None,
            };
            let Some(codec) = codec else { continue };
            let pid = es.elementary_pid;
            if pid == 0 || Some(pid) == self.pmt_pid || self.pids[pid as usize] != 0 {
                continue;
            }
            if self.streams.len() >= MAX_STREAMS {
                refused += 1;
                continue;
            }
            let st = match old
                .iter()
                .position(|s| s.pid == pid && s.stream_type == es.stream_type)
            {
                Some(i) => old.swap_remove(i),
                None => Stream::new(
                    pid,
                    es.stream_type,
                    codec,
                    class.codec.unwrap_or("other"),
                    &self.settings,
                    now_ms,
                ),
            };
            self.streams.push(st);
            self.pids[pid as usize] = self.streams.len() as u8;
        }
        self.counters.streams_refused += refused;
        self.pcr_pid = Some(pmt.pcr_pid).filter(|&p| p != 0x1FFF);
    }

    /// The log line of the last verdict change to or from a fault
    /// ("silent — audio PID 258 silent for 10 s (−91 dBFS)", "ok again
    /// after 2 min silent"), once.
    pub fn take_news(&mut self) -> Option<String> {
        self.news.take()
    }

    /// Recompute the verdict at `now_ms` (at most every 250 ms; false when
    /// too soon). `on_slate`: the channel plays its slate (the channel
    /// knows, not the stream). A change to or from a fault leaves its log
    /// line for `take_news`.
    pub fn update(&mut self, now_ms: u64, on_slate: bool) -> bool {
        if let Some(last) = self.last_update_ms {
            if now_ms < last.saturating_add(UPDATE_EVERY_MS) {
                return false;
            }
            let dt = now_ms.saturating_sub(last) as f64 / 1000.0;
            self.status.seconds[self.status.verdict.index()] += dt;
        }
        self.last_update_ms = Some(now_ms);
        let (verdict, reason) = self.judge(now_ms, on_slate);
        let old = self.status.verdict;
        let mut line = None;
        if verdict != old {
            let held = now_ms.saturating_sub(self.since_ms) / 1000;
            if verdict.is_fault() {
                line = Some(format!("{} — {reason}", verdict.as_str()));
            } else if old.is_fault() {
                line = Some(format!(
                    "{} again after {} {}",
                    verdict.as_str(),
                    duration_words(held),
                    old.as_str()
                ));
            }
            self.since_ms = now_ms;
        }
        self.status.verdict = verdict;
        self.status.reason = reason;
        self.status.since_s = now_ms.saturating_sub(self.since_ms) / 1000;
        self.status.counters = self.counters;
        self.status.es = self.streams.iter().map(|s| es_status(s, now_ms)).collect();
        if line.is_some() {
            self.news = line;
        }
        true
    }

    fn judge(&self, now_ms: u64, on_slate: bool) -> (Verdict, String) {
        if on_slate {
            return (
                Verdict::Slate,
                "every source is down: the slate plays".to_string(),
            );
        }
        let window = self.settings.flow.window_ms;
        let quiet_ms = now_ms.saturating_sub(self.last_packet_ms.unwrap_or(self.started_ms));
        if quiet_ms >= window {
            return (
                Verdict::NoVideo,
                format!("nothing on air for {}", duration_words(quiet_ms / 1000)),
            );
        }
        if self.pmt_crc.is_none() || self.streams.is_empty() {
            let age = now_ms.saturating_sub(self.started_ms);
            if age < 2 * window {
                return (
                    Verdict::Starting,
                    "waiting for the channel's PMT".to_string(),
                );
            }
            let what = if self.pmt_crc.is_none() {
                "no PMT in what the channel sends".to_string()
            } else {
                "the PMT names no video or audio stream".to_string()
            };
            return (
                Verdict::NoVideo,
                format!("{what} for {}", duration_words(age / 1000)),
            );
        }
        let scrambled: Vec<&Stream> = self.streams.iter().filter(|s| s.scrambled).collect();
        if !scrambled.is_empty() {
            return (
                Verdict::Scrambled,
                format!(
                    "{} still scrambled ({} packets): no key for it",
                    pid_list(&scrambled),
                    scrambled.iter().map(|s| s.scrambled_packets).sum::<u64>()
                ),
            );
        }
        let video = self.streams.iter().find(|s| s.is_video());
        let audio: Vec<&Stream> = self.streams.iter().filter(|s| !s.is_video()).collect();
        let vstate = video.map(|v| {
            (
                v.flow.report(now_ms).verdict,
                v.freeze
                    .as_ref()
                    .map_or(PictureState::Unknown, |f| f.state(now_ms)),
            )
        });
        let astates: Vec<(FlowVerdict, AudioState)> = audio
            .iter()
            .map(|a| {
                (
                    a.flow.report(now_ms).verdict,
                    a.silence
                        .as_ref()
                        .map_or(AudioState::Unknown, |d| d.state(now_ms)),
                )
            })
            .collect();
        let gone = |s: &Stream, f: FlowVerdict| -> String {
            let since = s.last_pes_ms.unwrap_or(s.created_ms);
            let secs = duration_words(now_ms.saturating_sub(since) / 1000);
            match f {
                FlowVerdict::PtsStalled => format!(
                    "{} PID {}: PES arrive but their PTS do not advance",
                    s.kind(),
                    s.pid
                ),
                _ => format!("{} PID {}: no PES for {secs}", s.kind(), s.pid),
            }
        };
        match (channel_verdict(vstate, &astates), video, vstate) {
            (ChannelVerdict::NoVideo, Some(v), Some((f, _))) => (Verdict::NoVideo, gone(v, f)),
            (ChannelVerdict::NoVideo, _, _) => (Verdict::NoVideo, "no video stream".to_string()),
            (ChannelVerdict::NoAudio, _, _) => {
                let words: Vec<String> = audio
                    .iter()
                    .zip(&astates)
                    .map(|(a, (f, _))| gone(a, *f))
                    .collect();
                (Verdict::NoAudio, words.join("; "))
            }
            (ChannelVerdict::Frozen, v, vs) => {
                let since = match vs {
                    Some((_, PictureState::Frozen { since_ms })) => since_ms,
                    _ => now_ms,
                };
                (
                    Verdict::Frozen,
                    format!(
                        "video PID {} frozen for {} (the same picture repeats)",
                        v.map_or(0, |v| v.pid),
                        duration_words(now_ms.saturating_sub(since) / 1000)
                    ),
                )
            }
            (ChannelVerdict::Silent, _, _) => {
                let found = audio.iter().zip(&astates).find_map(|(a, (_, s))| match s {
                    AudioState::Silent { since_ms } => Some((*a, *since_ms)),
                    _ => None,
                });
                let (pid, since, level) = match found {
                    Some((a, since)) => (
                        a.pid,
                        since,
                        a.silence
                            .as_ref()
                            .and_then(|d| d.last_level_dbfs())
                            .map(level_words)
                            .unwrap_or_default(),
                    ),
                    None => (0, now_ms, String::new()),
                };
                (
                    Verdict::Silent,
                    format!(
                        "audio PID {pid} silent for {}{level}",
                        duration_words(now_ms.saturating_sub(since) / 1000)
                    ),
                )
            }
            (ChannelVerdict::Starting, _, _) => (
                Verdict::Starting,
                "measuring the streams (one window)".to_string(),
            ),
            (ChannelVerdict::Ok, _, _) => (Verdict::Ok, String::new()),
        }
    }
}

fn es_status(s: &Stream, now_ms: u64) -> EsStatus {
    let r = s.flow.report(now_ms);
    EsStatus {
        pid: s.pid,
        kind: s.kind(),
        codec: s.codec_name,
        present: matches!(r.verdict, FlowVerdict::Ok | FlowVerdict::PtsPcrOutOfRange),
        bitrate_bps: r.bitrate_bps,
        pes: s.flow.totals().pes,
        pts_pcr_ms: s.last_pts_pcr_ms,
        pts_pcr_out_of_range: s.flow.totals().pts_pcr_out_of_range,
        level_dbfs: s.silence.as_ref().and_then(|d| d.last_level_dbfs()),
        silent: s
            .silence
            .as_ref()
            .is_some_and(|d| matches!(d.state(now_ms), AudioState::Silent { .. })),
        frozen: s
            .freeze
            .as_ref()
            .is_some_and(|f| matches!(f.state(now_ms), PictureState::Frozen { .. })),
        scrambled_packets: s.scrambled_packets,
    }
}

fn pid_list(s: &[&Stream]) -> String {
    let pids: Vec<String> = s.iter().map(|s| s.pid.to_string()).collect();
    if pids.len() == 1 {
        format!("{} PID {}", s[0].kind(), pids[0])
    } else {
        format!("PIDs {}", pids.join(", "))
    }
}

/// " (−91 dBFS)", " (digital silence)".
fn level_words(db: f32) -> String {
    if db.is_infinite() || db < -200.0 {
        " (digital silence)".to_string()
    } else {
        let r = db.round() as i64;
        if r < 0 {
            format!(" (\u{2212}{} dBFS)", -r)
        } else {
            format!(" ({r} dBFS)")
        }
    }
}

/// "14 s", "2 min", "1 h 5 min".
pub fn duration_words(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// The elementary-stream and verdict metrics of every channel (the
/// contract's names), from each channel's name and monitor status.
pub fn render_metrics(channels: &[(String, Option<&MonitorStatus>)], m: &mut String) {
    use super::metrics::{family, Kind};
    let mut f = family(
        m,
        "capbox_channel_verdict",
        Kind::Gauge,
        "1 for the channel's current verdict (ok, no_video, no_audio, silent, frozen, scrambled, slate, starting).",
    );
    for (ch, st) in channels {
        let Some(st) = st else { continue };
        for v in Verdict::ALL {
            f.sample(&[("channel", ch), ("verdict", v.label())], st.verdict == v);
        }
    }
    let mut f = family(
        m,
        "capbox_channel_verdict_seconds_total",
        Kind::Counter,
        "Seconds the channel spent in each verdict.",
    );
    for (ch, st) in channels {
        let Some(st) = st else { continue };
        for v in Verdict::ALL {
            f.sample(
                &[("channel", ch), ("verdict", v.label())],
                st.seconds[v.index()],
            );
        }
    }
    type Get = fn(&EsStatus) -> Option<f64>;
    let per_es: [(&str, Kind, &str, bool, Get); 5] = [
        (
            "capbox_es_present",
            Kind::Gauge,
            "1 while the stream carries PES with PTS advancing (within pes_after_s).",
            false,
            |e| Some(e.present as u8 as f64),
        ),
        (
            "capbox_es_bitrate_bps",
            Kind::Gauge,
            "Elementary-stream bits per second (PES payload) over pes_after_s.",
            true,
            |e| Some(e.bitrate_bps as f64),
        ),
        (
            "capbox_es_pes_total",
            Kind::Counter,
            "PES received on the stream.",
            false,
            |e| Some(e.pes as f64),
        ),
        (
            "capbox_es_pts_pcr_seconds",
            Kind::Gauge,
            "PTS − PCR at the arrival of the stream's last PES (seconds).",
            false,
            |e| e.pts_pcr_ms.map(|ms| ms as f64 / 1000.0),
        ),
        (
            "capbox_es_pts_pcr_out_of_range_total",
            Kind::Counter,
            "PES whose PTS − PCR at arrival was outside [pts_pcr_min_ms, pts_pcr_max_ms].",
            false,
            |e| Some(e.pts_pcr_out_of_range as f64),
        ),
    ];
    for (name, kind, help, with_codec, get) in per_es {
        let mut f = family(m, name, kind, help);
        for (ch, st) in channels {
            let Some(st) = st else { continue };
            for e in &st.es {
                let Some(v) = get(e) else { continue };
                let pid = e.pid.to_string();
                if with_codec {
                    f.sample(
                        &[
                            ("channel", ch),
                            ("pid", &pid),
                            ("kind", e.kind),
                            ("codec", e.codec),
                        ],
                        v,
                    );
                } else {
                    f.sample(&[("channel", ch), ("pid", &pid), ("kind", e.kind)], v);
                }
            }
        }
    }
    let per_kind: [(&str, &str, &str, Get); 3] = [
        (
            "capbox_audio_level_dbfs",
            "audio",
            "The loudest level of the audio stream's last measured frame (dBFS; -Inf: digital silence).",
            |e| e.level_dbfs.map(|d| d as f64),
        ),
        (
            "capbox_audio_silent",
            "audio",
            "1 while the audio stream is below silence_dbfs for silence_after_s.",
            |e| Some(e.silent as u8 as f64),
        ),
        (
            "capbox_video_frozen",
            "video",
            "1 while the video stream repeats the same picture for frozen_after_s.",
            |e| Some(e.frozen as u8 as f64),
        ),
    ];
    for (name, kind, help, get) in per_kind {
        let mut f = family(m, name, Kind::Gauge, help);
        for (ch, st) in channels {
            let Some(st) = st else { continue };
            for e in st.es.iter().filter(|e| e.kind == kind) {
                if let Some(v) = get(e) {
                    f.sample(&[("channel", ch), ("pid", &e.pid.to_string())], v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::pat::{PatEntry, PatRepr};
    use crate::ts::pmt::PmtStream;
    use crate::ts::section::packetize;

    /// PAT and PMT packets; each call continues the continuity counters
    /// (a repeat with the same counter is a duplicate packet).
    fn psi(streams: &[(u8, u16)], version: u8) -> Vec<u8> {
        use std::sync::atomic::{AtomicU8, Ordering};
        static CC: AtomicU8 = AtomicU8::new(0);
        let pat = PatRepr {
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![PatEntry {
                program_number: 1,
                pid: 0x1000,
            }],
        };
        let pmt = PmtRepr {
            program_number: 1,
            version,
            pcr_pid: 0x100,
            program_info: Vec::new(),
            streams: streams
                .iter()
                .map(|&(t, pid)| PmtStream {
                    stream_type: t,
                    elementary_pid: pid,
                    descriptors: Vec::new(),
                })
                .collect(),
        };
        let mut out = Vec::new();
        let c = CC.fetch_add(1, Ordering::Relaxed) & 0x0F;
        let (mut c1, mut c2) = (c, c);
        packetize(&pat.emit(), 0, &mut c1, &mut out);
        packetize(&pmt.emit(), 0x1000, &mut c2, &mut out);
        out
    }

    /// One PES in one packet: header with PTS, then `fill`.
    fn pes_packet(pid: u16, pts: u64, fill: u8, scrambled: bool) -> Vec<u8> {
        let mut p = vec![0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10];
        if scrambled {
            p[3] |= 0x80;
        }
        p.extend_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5]);
        let mut ts = [0u8; 5];
        crate::ts::pes::encode_pts(pts, 0x20, &mut ts);
        p.extend_from_slice(&ts);
        p.resize(PACKET_SIZE, fill);
        p
    }

    #[test]
    fn follows_the_pmt_and_flags_stopped_audio_and_recovers() {
        let s = MonitorSettings::from_config(&MonitorConfig {
            pes_after_s: 2,
            ..MonitorConfig::default()
        });
        let mut m = ChannelMonitor::new(s, 0);
        assert!(m.update(0, false));
        assert!(!m.update(100, false));
        assert_eq!(m.status().verdict, Verdict::Starting);
        let table = psi(&[(0x02, 0x100), (0x03, 0x101)], 0);
        let mut t = 0;
        let mut lines = Vec::new();
        // 10 s of video and audio PES (different content each: moving).
        while t < 10_000 {
            m.feed(t, &table);
            m.feed(t, &pes_packet(0x100, t * 90, (t / 40) as u8, false));
            m.feed(t, &pes_packet(0x101, t * 90, 0, false));
            m.update(t, false);
            lines.extend(m.take_news());
            t += 40;
        }
        assert_eq!(m.status().verdict, Verdict::Ok, "{:?}", m.status());
        assert_eq!(m.status().es.len(), 2);
        assert!(lines.is_empty(), "{lines:?}");
        // Audio stops.
        while t < 15_000 {
            m.feed(t, &table);
            m.feed(t, &pes_packet(0x100, t * 90, (t / 40) as u8, false));
            m.update(t, false);
            lines.extend(m.take_news());
            t += 40;
        }
        assert_eq!(m.status().verdict, Verdict::NoAudio, "{:?}", m.status());
        assert!(
            m.status().reason.starts_with("audio PID 257: no PES for"),
            "{}",
            m.status().reason
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("no audio — audio PID 257"),
            "{lines:?}"
        );
        // A new PMT version without the audio: a video-only channel is ok.
        let table = psi(&[(0x02, 0x100)], 1);
        while t < 17_000 {
            m.feed(t, &table);
            m.feed(t, &pes_packet(0x100, t * 90, (t / 40) as u8, false));
            m.update(t, false);
            lines.extend(m.take_news());
            t += 40;
        }
        assert_eq!(m.status().verdict, Verdict::Ok, "{:?}", m.status());
        assert_eq!(m.status().es.len(), 1);
        assert!(lines[1].starts_with("ok again after"), "{lines:?}");
        // Scrambled packets: scrambled; the slate wins over everything.
        m.feed(t, &pes_packet(0x100, t * 90, 1, true));
        m.update(t + 300, false);
        assert_eq!(m.status().verdict, Verdict::Scrambled);
        m.update(t + 600, true);
        assert_eq!(m.status().verdict, Verdict::Slate);
        // Nothing at all for a window: nothing on air.
        m.update(t + 5_000, false);
        assert_eq!(m.status().verdict, Verdict::NoVideo);
        assert!(m.status().reason.starts_with("nothing on air"));
    }

    /// A 3-packet video PES: a header packet with PTS, then two packets
    /// whose bytes are `body` (the end of the picture).
    fn picture(pts: u64, body: u8, cc: &mut u8) -> Vec<u8> {
        let mut v = pes_packet(0x100, pts, 0x11, false);
        v[3] = 0x10 | (*cc & 0x0F);
        *cc = cc.wrapping_add(1);
        for _ in 0..2 {
            let mut p = vec![0x47, 0x01, 0x00, 0x10 | (*cc & 0x0F)];
            *cc = cc.wrapping_add(1);
            p.resize(PACKET_SIZE, body);
            v.extend_from_slice(&p);
        }
        v
    }

    #[test]
    fn the_picture_tail_is_the_same_whatever_the_batches() {
        let s = MonitorSettings::from_config(&MonitorConfig {
            frozen_after_s: 2,
            pes_after_s: 1,
            ..MonitorConfig::default()
        });
        for batch in [1, 2, 3, 7, 100] {
            for frozen in [true, false] {
                let mut m = ChannelMonitor::new(s, 0);
                let mut cc = 0;
                let mut stream = psi(&[(0x02, 0x100)], 0);
                for n in 0..150u64 {
                    let body = if frozen { 0x33 } else { (n % 200) as u8 };
                    stream.extend(picture(n * 3600, body, &mut cc));
                }
                let mut t = 0;
                for (k, c) in stream.chunks(batch * PACKET_SIZE).enumerate() {
                    // Packet j is part of picture j / 3, 40 ms apart.
                    t = (k * batch / 3) as u64 * 40;
                    m.feed(t, c);
                }
                m.update(t, false);
                let want = if frozen { Verdict::Frozen } else { Verdict::Ok };
                assert_eq!(m.status().verdict, want, "batch {batch}: {:?}", m.status());
                assert_eq!(m.status().es[0].frozen, frozen);
            }
        }
    }

    /// Runs of packets taken at once must leave the same last two
    /// payloads as one packet at a time: pictures of a header and four
    /// packets, one of which changes from picture to picture; only the
    /// last two (the fingerprint's tail) may move the verdict.
    #[test]
    fn the_picture_tail_is_the_last_two_payloads_whatever_the_runs() {
        let s = MonitorSettings::from_config(&MonitorConfig {
            frozen_after_s: 2,
            pes_after_s: 1,
            ..MonitorConfig::default()
        });
        for batch in [1, 2, 4, 5, 7, 33, 100] {
            // (packet that changes, frozen?)
            for (moving, frozen) in [(1, true), (2, true), (3, false), (4, false)] {
                let mut m = ChannelMonitor::new(s, 0);
                let mut cc = 0u8;
                let mut stream = psi(&[(0x02, 0x100)], 0);
                for n in 0..150u64 {
                    let mut v = pes_packet(0x100, n * 3600, 0x11, false);
                    v[3] = 0x10 | (cc & 0x0F);
                    cc = cc.wrapping_add(1);
                    for j in 1..=4 {
                        let mut p = vec![0x47, 0x01, 0x00, 0x10 | (cc & 0x0F)];
                        cc = cc.wrapping_add(1);
                        p.resize(PACKET_SIZE, if j == moving { n as u8 } else { 0x33 });
                        v.extend_from_slice(&p);
                    }
                    stream.extend(v);
                }
                let mut t = 0;
                for (k, c) in stream.chunks(batch * PACKET_SIZE).enumerate() {
                    t = (k * batch / 5) as u64 * 40;
                    m.feed(t, c);
                }
                m.update(t, false);
                let st = m.status();
                assert_eq!(
                    st.es[0].frozen, frozen,
                    "batch {batch}, packet {moving}: {st:?}"
                );
                assert_eq!(st.es[0].pes, 149, "batch {batch}");
            }
        }
    }

    #[test]
    fn radio_is_not_no_video_and_garbage_never_panics() {
        let mut m = ChannelMonitor::new(MonitorSettings::default(), 0);
        let table = psi(&[(0x03, 0x101)], 0);
        let mut t = 0;
        while t < 12_000 {
            m.feed(t, &table);
            m.feed(t, &pes_packet(0x101, t * 90, 0, false));
            m.update(t, false);
            t += 40;
        }
        assert_eq!(m.status().verdict, Verdict::Ok, "{:?}", m.status());
        // Random bytes with the sync byte on the channel's PIDs.
        let mut x: u32 = 1;
        for _ in 0..20_000 {
            let mut p = [0u8; PACKET_SIZE];
            for b in p.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            p[0] = 0x47;
            p[1] = (p[1] & 0xE0) | if x & 1 == 0 { 0x01 } else { 0x10 };
            p[2] = if x & 2 == 0 { 0x01 } else { 0x00 };
            m.feed(t, &p);
        }
        m.update(t + 1000, false);
    }

    #[test]
    fn more_streams_than_the_bound_are_counted() {
        let mut m = ChannelMonitor::new(MonitorSettings::default(), 0);
        let streams: Vec<(u8, u16)> = (0..20).map(|i| (0x03, 0x200 + i)).collect();
        m.feed(0, &psi(&streams, 0));
        m.update(0, false);
        assert_eq!(m.status().es.len(), MAX_STREAMS);
        assert_eq!(m.status().counters.streams_refused, 4);
    }

    #[test]
    fn words() {
        assert_eq!(duration_words(14), "14 s");
        assert_eq!(duration_words(150), "2 min");
        assert_eq!(duration_words(3900), "1 h 5 min");
        assert_eq!(level_words(-90.6), " (\u{2212}91 dBFS)");
        assert_eq!(level_words(f32::NEG_INFINITY), " (digital silence)");
    }
}
