//! The splicer on streams ffmpeg made, judged by ffmpeg and ffprobe (issue
//! 11): two sources with other PIDs, other clocks (one crossing the 33-bit
//! wrap) and another audio set, spliced A→B→A in the middle of GOPs, and a
//! short looped slate. The output must decode without reconnecting, keep
//! DTS rising per stream, cut into HLS segments near the target, keep its
//! PIDs and continuity counters, and bump the PMT version when the stream
//! set changes.

use capbox::remux::splice::{SpliceConfig, Splicer, PMT_PID};
use capbox::ts::pmt::PmtRepr;
use capbox::ts::section::{Assembler, Section};
use capbox::ts::{Packet, PACKET_SIZE};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tools_present() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        eprintln!("!!!!! SKIPPING: ffmpeg/ffprobe not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("splice_ffmpeg");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A source: H.264 (GOP 1 s, B-frames) + MP2 audio per language, its own
/// PIDs and clock offset.
fn make_source(
    name: &str,
    secs: u32,
    freq: u32,
    langs: &[&str],
    pids: &[&str],
    offset: &str,
) -> Vec<u8> {
    let out = dir().join(format!("{name}.ts"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]);
    for (i, _) in langs.iter().enumerate() {
        cmd.args(["-f", "lavfi", "-i"]).arg(format!(
            "sine=frequency={}:sample_rate=48000",
            freq + 110 * i as u32
        ));
    }
    cmd.args(["-t", &secs.to_string(), "-map", "0:v"]);
    for (i, l) in langs.iter().enumerate() {
        cmd.args(["-map", &format!("{}:a", i + 1)])
            .arg(format!("-metadata:s:a:{i}"))
            .arg(format!("language={l}"));
    }
    for (i, p) in pids.iter().enumerate() {
        cmd.args(["-streamid", &format!("{i}:{p}")]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-bf",
        "2",
    ])
    .args(["-x264-params", "scenecut=0", "-c:a", "mp2", "-b:a", "128k"])
    .args([
        "-mpegts_pmt_start_pid",
        if name == "b" { "0x1234" } else { "0x1000" },
    ])
    .args(["-output_ts_offset", offset, "-f", "mpegts"])
    .arg(&out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
    std::fs::read(&out).unwrap()
}

/// Feeds sources as if live: every 40 ms of fake time, 40 ms worth of each
/// source (by its share of bytes), looping sources that run out.
struct Feeder {
    data: Vec<Vec<u8>>,
    pos: Vec<usize>,
    per_tick: Vec<usize>,
}

impl Feeder {
    fn new(data: Vec<(Vec<u8>, f64)>) -> Feeder {
        let per_tick = data
            .iter()
            .map(|(d, secs)| {
                let pkts = d.len() / PACKET_SIZE;
                ((pkts as f64 * 0.04 / secs).ceil() as usize).max(1)
            })
            .collect();
        Feeder {
            pos: vec![0; data.len()],
            data: data.into_iter().map(|(d, _)| d).collect(),
            per_tick,
        }
    }

    fn tick(&mut self, sp: &mut Splicer, now: Instant, out: &mut Vec<u8>) {
        for s in 0..self.data.len() {
            for _ in 0..self.per_tick[s] {
                let d = &self.data[s];
                if self.pos[s] + PACKET_SIZE > d.len() {
                    self.pos[s] = 0; // loop, as the slate does
                }
                let p = self.pos[s];
                sp.push(s, &d[p..p + PACKET_SIZE], now, out);
                self.pos[s] += PACKET_SIZE;
            }
        }
    }
}

/// DTS per stream index, per ffprobe.
fn dts_per_stream(path: &Path) -> HashMap<u64, Vec<i64>> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_packets"])
        .args(["-show_entries", "packet=stream_index,dts", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut m: HashMap<u64, Vec<i64>> = HashMap::new();
    for p in v["packets"].as_array().unwrap() {
        if let Some(d) = p["dts"].as_i64() {
            m.entry(p["stream_index"].as_u64().unwrap())
                .or_default()
                .push(d);
        }
    }
    m
}

/// Decodes the whole file; returns ffmpeg's error lines.
fn decode_errors(path: &Path) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg could not decode {path:?}");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Segment durations of `ffmpeg -c copy -f hls -hls_time 2`.
fn hls_durations(path: &Path, name: &str) -> Vec<f64> {
    let d = dir().join(format!("hls_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let m3u8 = d.join("out.m3u8");
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(path)
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_list_size",
            "0",
        ])
        .arg(&m3u8)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(&m3u8)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect()
}

/// What our own reading of the output finds.
#[derive(Debug, Default)]
struct Wire {
    pids: BTreeSet<u16>,
    cc_errors: Vec<String>,
    /// PMT versions in order of appearance (consecutive repeats folded).
    pmt_versions: Vec<u8>,
    /// Streams of each PMT version.
    pmt_streams: HashMap<u8, Vec<u16>>,
    /// Packet index of each PMT packet.
    pmt_at: Vec<usize>,
    disc_at: Vec<(u16, usize)>,
}

fn read_wire(ts: &[u8]) -> Wire {
    let mut w = Wire::default();
    let mut last_cc: HashMap<u16, u8> = HashMap::new();
    let mut asm = Assembler::new();
    for (i, raw) in ts.chunks(PACKET_SIZE).enumerate() {
        let p = Packet::new_checked(raw).expect("whole valid packets");
        let pid = p.pid();
        w.pids.insert(pid);
        let cc = p.continuity_counter();
        if p.discontinuity() {
            w.disc_at.push((pid, i));
        }
        if let Some(&l) = last_cc.get(&pid) {
            let want = if p.has_payload() { (l + 1) & 15 } else { l };
            if cc != want && !p.discontinuity() {
                w.cc_errors
                    .push(format!("pid {pid:#x} packet {i}: cc {cc} after {l}"));
            }
        }
        last_cc.insert(pid, cc);
        if pid == PMT_PID {
            w.pmt_at.push(i);
            asm.push(&p, |s| {
                let s = Section::new_verified(s).unwrap();
                let pmt = PmtRepr::parse(&s).unwrap();
                if w.pmt_versions.last() != Some(&pmt.version) {
                    w.pmt_versions.push(pmt.version);
                }
                w.pmt_streams.insert(
                    pmt.version,
                    pmt.streams.iter().map(|s| s.elementary_pid).collect(),
                );
            });
        }
    }
    w
}

/// Every packet in was sent, read for its tables, off air, held, or
/// counted as dropped.
fn assert_accounted(sp: &Splicer) {
    let s = sp.stats();
    let sum = s.packets_carried
        + s.source_psi_packets
        + s.packets_off_air
        + s.bad_packets
        + s.bad_source_packets
        + s.dropped_waiting_rap
        + s.dropped_before_pes_start
        + s.unmapped_packets
        + s.dropped_backwards
        + s.dropped_before_anchor
        + s.dropped_old_tail
        + s.dropped_bad_pes_header
        + sp.held_packets() as u64;
    assert_eq!(s.packets_in, sum, "{s:#?}");
}

fn check_monotonic(path: &Path) {
    let dts = dts_per_stream(path);
    assert!(!dts.is_empty());
    for (stream, v) in &dts {
        for w in v.windows(2) {
            assert!(
                w[1] > w[0],
                "stream {stream}: DTS {} then {} in {path:?}",
                w[0],
                w[1]
            );
        }
    }
}

fn check_hls(path: &Path, name: &str) {
    let durs = hls_durations(path, name);
    assert!(durs.len() >= 3, "{durs:?}");
    // The last segment is whatever was left.
    for d in &durs[..durs.len() - 1] {
        assert!(
            (1.0..=3.0).contains(d),
            "segment of {d} s (target 2): {durs:?}"
        );
    }
}

/// The output up to its last video PES start: the test stops feeding in
/// the middle of a PES, and that last half frame is not the splicer's doing.
fn whole_pes(ts: &[u8]) -> &[u8] {
    let last = ts
        .chunks(PACKET_SIZE)
        .rposition(|p| {
            let p = Packet::new_checked(p).unwrap();
            p.pid() == 0x0200 && p.payload_unit_start()
        })
        .unwrap();
    &ts[..last * PACKET_SIZE]
}

/// Decodes the output (up to its last video PES) and wants no error.
fn check_decodes(out: &[u8], name: &str) {
    let path = dir().join(format!("{name}_whole.ts"));
    std::fs::write(&path, whole_pes(out)).unwrap();
    let errs = decode_errors(&path);
    assert!(errs.is_empty(), "ffmpeg decoding {path:?}: {errs:?}");
}

#[test]
fn splice_two_sites_and_back() {
    if !tools_present() {
        return;
    }
    // A: fra only, PIDs 0x150/0x151, clock at 100 s.
    let a = make_source("a", 12, 440, &["fra"], &["0x150", "0x151"], "100");
    // B: fra + eng, other PIDs and PMT PID, clock 3 s before the 33-bit wrap.
    let b = make_source(
        "b",
        12,
        660,
        &["eng", "fra"],
        &["0x481", "0x482", "0x483"],
        "95440.7",
    );
    let mut sp = Splicer::new(SpliceConfig::default());
    let mut feed = Feeder::new(vec![(a, 12.0), (b, 12.0)]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    sp.switch_to(0, t0);
    for tick in 0..280u32 {
        let now = t0 + Duration::from_millis(40 * tick as u64);
        match tick {
            // 3.32 s and 7.48 s: mid-GOP (GOP 1 s).
            83 => {
                sp.switch_to(1, now);
            }
            187 => {
                sp.switch_to(0, now);
            }
            _ => {}
        }
        feed.tick(&mut sp, now, &mut out);
    }
    let st = *sp.stats();
    eprintln!("{st:#?}");
    assert_accounted(&sp);
    assert_eq!(sp.active(), Some(0));
    assert_eq!(st.switches, 3);
    assert_eq!(st.cuts_on_rap, 3, "every cut on an entry point within 1 s");
    assert_eq!(st.rap_timeouts, 0);
    let path = dir().join("two_sites.ts");
    std::fs::write(&path, &out).unwrap();

    let w = read_wire(&out);
    assert!(
        w.cc_errors.is_empty(),
        "{:?}",
        &w.cc_errors[..w.cc_errors.len().min(5)]
    );
    assert_eq!(
        w.pids,
        [0x0000, PMT_PID, 0x0200, 0x0300, 0x0301]
            .into_iter()
            .collect(),
        "the plan's PIDs only, whatever the source"
    );
    // A (fra) → B (fra + eng): bumped; → A: bumped again.
    assert_eq!(w.pmt_versions, vec![0, 1, 2]);
    assert_eq!(w.pmt_streams[&0], vec![0x0200, 0x0300]);
    assert_eq!(w.pmt_streams[&1], vec![0x0200, 0x0300, 0x0301]);
    assert_eq!(sp.pmt_version(), 2);
    // PAT/PMT right at each cut: a PMT packet just before each marked video
    // packet.
    let video_disc: Vec<usize> = w
        .disc_at
        .iter()
        .filter(|(p, _)| *p == 0x0200)
        .map(|&(_, i)| i)
        .collect();
    assert_eq!(video_disc.len(), 3, "{:?}", w.disc_at);
    for d in &video_disc {
        assert!(
            w.pmt_at.iter().any(|&m| m < *d && d - m <= 3),
            "no PMT just before the cut at packet {d}"
        );
    }

    check_monotonic(&path);
    check_decodes(&out, "two_sites");
    check_hls(&path, "two_sites");

    // ffprobe sees one program with the plan's PIDs and both languages.
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: BTreeSet<String> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains("0x200") && ids.contains("0x300"), "{ids:?}");
}

#[test]
fn slate_loops_keep_time_moving() {
    if !tools_present() {
        return;
    }
    let a = make_source("main", 12, 440, &["fra"], &["0x100", "0x101"], "10");
    // A 2-second slate, looped: each loop jumps its clock back 2 s.
    let slate = make_source("slate", 2, 880, &["fra"], &["0x200", "0x201"], "50");
    let mut sp = Splicer::new(SpliceConfig::default());
    let mut feed = Feeder::new(vec![(a, 12.0), (slate, 2.0)]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    sp.switch_to(0, t0);
    for tick in 0..270u32 {
        let now = t0 + Duration::from_millis(40 * tick as u64);
        match tick {
            63 => {
                sp.switch_to(1, now);
            }
            // About three loops of the slate later.
            218 => {
                sp.switch_to(0, now);
            }
            _ => {}
        }
        feed.tick(&mut sp, now, &mut out);
    }
    let st = *sp.stats();
    eprintln!("{st:#?}");
    assert_accounted(&sp);
    assert_eq!(st.switches, 3);
    assert!(
        st.timeline_jumps >= 2,
        "slate loops seen: {}",
        st.timeline_jumps
    );
    let path = dir().join("slate.ts");
    std::fs::write(&path, &out).unwrap();
    let w = read_wire(&out);
    assert!(
        w.cc_errors.is_empty(),
        "{:?}",
        &w.cc_errors[..w.cc_errors.len().min(5)]
    );
    assert_eq!(
        w.pids,
        [0x0000, PMT_PID, 0x0200, 0x0300].into_iter().collect()
    );
    check_monotonic(&path);
    check_decodes(&out, "slate");
    check_hls(&path, "slate");
}
