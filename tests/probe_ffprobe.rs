//! `capbox probe` (the built binary) against ffprobe on streams ffmpeg made:
//! programs, PMT/PCR PIDs, service names and providers (DVB text in three
//! character tables), stream PIDs, codecs and languages. Plus the 80-column
//! text layout, the error paths, a truncated file and the http:// input.

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts");

fn tool_present(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("!!!!! SKIPPING: {name} not installed (apt-get install ffmpeg) !!!!!");
    }
    ok
}

fn probe<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capbox"))
        .arg("probe")
        .args(args)
        .output()
        .unwrap()
}

fn probe_json(input: &Path) -> Value {
    let out = probe(&[input.as_os_str(), OsStr::new("--json")]);
    assert!(
        out.status.success(),
        "capbox probe {input:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ffprobe_json(input: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_programs",
            "-show_streams",
            "-show_format",
        ])
        .args(["-of", "json"])
        .arg(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe failed on {input:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Codec names ffmpeg may give a stream_type (the PMT alone does not say
/// which MPEG audio layer, nor, for 0x06, what the private data is).
fn expected_codecs(stream_type: u64) -> &'static [&'static str] {
    match stream_type {
        0x01 => &["mpeg1video", "mpeg2video"],
        0x02 => &["mpeg2video"],
        0x03 | 0x04 => &["mp1", "mp2", "mp3"],
        0x0F => &["aac"],
        0x11 => &["aac_latm"],
        0x1B => &["h264"],
        0x24 => &["hevc"],
        0x81 => &["ac3"],
        0x87 => &["eac3"],
        0x06 => &[
            "ac3",
            "eac3",
            "aac",
            "dts",
            "dvb_subtitle",
            "dvb_teletext",
            "opus",
        ],
        _ => &[],
    }
}

fn pid_of_ffprobe_id(id: &str) -> u64 {
    u64::from_str_radix(id.trim_start_matches("0x"), 16).unwrap()
}

/// Every program and stream ffprobe sees, capbox sees the same; returns the
/// number of streams compared.
fn compare(input: &Path) -> usize {
    let ours = probe_json(input);
    let theirs = ffprobe_json(input);
    let our_progs = ours["programs"].as_array().unwrap();
    let their_progs = theirs["programs"].as_array().unwrap();
    assert_eq!(our_progs.len(), their_progs.len(), "program count");
    let mut streams = 0;
    for tp in their_progs {
        let pn = tp["program_id"].as_u64().unwrap();
        let op = our_progs
            .iter()
            .find(|p| p["program_number"].as_u64() == Some(pn))
            .unwrap_or_else(|| panic!("program {pn} missing from capbox"));
        assert_eq!(op["pmt_pid"], tp["pmt_pid"], "program {pn} PMT PID");
        assert_eq!(op["pcr_pid"], tp["pcr_pid"], "program {pn} PCR PID");
        let tags = &tp["tags"];
        // capbox shows names as one clean line (ts::text::clean_name):
        // ends trimmed, runs of spaces as one; ffprobe keeps them as sent.
        let one_line = |v: &serde_json::Value| match v.as_str() {
            Some(s) => serde_json::Value::from(s.split_whitespace().collect::<Vec<_>>().join(" ")),
            None => v.clone(),
        };
        assert_eq!(
            op["service_name"],
            one_line(&tags["service_name"]),
            "program {pn} name"
        );
        assert_eq!(
            op["provider"],
            one_line(&tags["service_provider"]),
            "program {pn} provider"
        );

        let our_streams = op["streams"].as_array().unwrap();
        let their_streams = tp["streams"].as_array().unwrap();
        assert_eq!(
            our_streams.len(),
            their_streams.len(),
            "program {pn} streams"
        );
        for ts in their_streams {
            let pid = pid_of_ffprobe_id(ts["id"].as_str().unwrap());
            let os = our_streams
                .iter()
                .find(|s| s["pid"].as_u64() == Some(pid))
                .unwrap_or_else(|| panic!("program {pn}: PID {pid:#x} missing"));
            let codec = ts["codec_name"].as_str().unwrap();
            let st = os["stream_type"].as_u64().unwrap();
            assert!(
                expected_codecs(st).contains(&codec),
                "PID {pid:#x}: stream_type {st:#04x} but ffprobe says {codec}"
            );
            assert_eq!(os["codec"].as_str(), Some(codec), "PID {pid:#x} codec");
            let kind = os["kind"].as_str().unwrap();
            assert_eq!(
                kind,
                ts["codec_type"].as_str().unwrap(),
                "PID {pid:#x} kind"
            );
            let our_lang = os["languages"].as_array().unwrap().first().cloned();
            let their_lang = ts["tags"]["language"].as_str().map(Value::from);
            assert_eq!(our_lang, their_lang, "PID {pid:#x} language");
            streams += 1;
        }
    }
    // ffprobe's stream list is the union of the programs': nothing missed.
    assert_eq!(streams, theirs["streams"].as_array().unwrap().len());

    // Mux rate from the PCR clock vs. file size over ffprobe's duration
    // (which is PTS-based): they agree within 5 %.
    let dur: f64 = theirs["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let size: f64 = theirs["format"]["size"].as_str().unwrap().parse().unwrap();
    let ours_kbps = ours["mux_bitrate_kbps"].as_f64().unwrap();
    let theirs_kbps = size * 8.0 / dur / 1000.0;
    assert!(
        (ours_kbps - theirs_kbps).abs() / theirs_kbps < 0.05,
        "mux rate {ours_kbps} kbit/s vs {theirs_kbps} from ffprobe"
    );
    // Per-PID rates add up to the mux rate (rounding aside).
    let sum: f64 = ours["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bitrate_kbps"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - ours_kbps).abs() < 1.0,
        "PIDs sum {sum} vs {ours_kbps}"
    );
    streams
}

#[test]
fn sample_mux_matches_ffprobe() {
    if !tool_present("ffprobe") {
        return;
    }
    let n = compare(Path::new(SAMPLE));
    assert_eq!(n, 7);
    let ours = probe_json(Path::new(SAMPLE));
    assert_eq!(ours["transport_stream_id"], 0x0C0B);
    assert_eq!(ours["original_network_id"], 0x20FA);
    assert_eq!(ours["clock"], "pcr");
    assert_eq!(ours["unreferenced_pids"].as_array().unwrap().len(), 0);
    assert_eq!(ours["missing_pids"].as_array().unwrap().len(), 0);
    for p in ours["pids"].as_array().unwrap() {
        assert_eq!(p["cc_errors"], 0, "PID {}", p["pid"]);
        assert_eq!(p["scrambled"], false);
    }
}

/// Raw bytes of a DVB string with a character table selector, as ffmpeg
/// writes metadata starting with a control byte verbatim.
fn generated_mux() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_three.ts");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "smptebars=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "rgbtestsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=900:sample_rate=44100"])
        .args(["-map", "0:v", "-map", "1:a", "-map", "2:v", "-map", "3:a"])
        .args(["-map", "4:v", "-map", "5:a", "-t", "3"])
        .args([
            "-c:v:0",
            "mpeg2video",
            "-c:v:1",
            "mpeg2video",
            "-b:v",
            "400k",
        ])
        .args(["-c:v:2", "libx265", "-preset", "ultrafast"])
        .args(["-x265-params", "log-level=error"])
        .args(["-c:a:0", "ac3", "-c:a:1", "ac3", "-c:a:2", "libmp3lame"])
        .args(["-metadata:s:a:0", "language=fra"])
        .args(["-metadata:s:a:1", "language=spa"])
        .args(["-metadata:s:a:2", "language=ita"])
        .args(["-streamid", "0:0x210", "-streamid", "1:0x211"])
        .args(["-streamid", "2:0x220", "-streamid", "3:0x221"])
        .args(["-streamid", "4:0x230", "-streamid", "5:0x231"])
        // ISO/IEC 8859-9 (selector 0x05): "Télé Été".
        .arg("-program")
        .arg(OsStr::from_bytes(
            b"program_num=10:title=\x05T\xe9l\xe9 \xc9t\xe9:st=0:st=1",
        ))
        // UTF-8 (ffmpeg adds selector 0x15 to non-ASCII UTF-8).
        .args([
            "-program",
            "program_num=20:title=Télé Été Ünïcode:st=2:st=3",
        ])
        // Default table, ISO/IEC 6937: non-spacing acute (0xC2) and
        // circumflex (0xC3) before the letter: "Café Crême".
        .arg("-program")
        .arg(OsStr::from_bytes(
            b"program_num=30:title=Caf\xc2e Cr\xc3eme:st=4:st=5",
        ))
        .args(["-metadata:p:0", "service_provider=Chaîne Française"])
        // Longer than a line: the text report must cut it.
        .arg("-metadata:p:1")
        .arg(format!(
            "service_provider={}",
            "very long provider ".repeat(6)
        ))
        .args(["-metadata:p:2", "service_provider=capbox"])
        .args(["-mpegts_transport_stream_id", "0x4321"])
        .args(["-f", "mpegts"])
        .arg(&out);
    let st = cmd.status().unwrap();
    assert!(st.success(), "ffmpeg failed: {cmd:?}");
    out
}

#[test]
fn generated_mux_with_dvb_text_matches_ffprobe() {
    if !tool_present("ffmpeg") || !tool_present("ffprobe") {
        return;
    }
    let ts = generated_mux();
    assert_eq!(compare(&ts), 6);
    // Agreeing with ffprobe is not enough if both were wrong the same way.
    let ours = probe_json(&ts);
    let progs = ours["programs"].as_array().unwrap();
    let names: Vec<&str> = progs
        .iter()
        .map(|p| p["service_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Télé Été", "Télé Été Ünïcode", "Café Crême"]);
    assert_eq!(progs[0]["provider"], "Chaîne Française");
    assert_eq!(ours["transport_stream_id"], 0x4321);
    let codecs: Vec<&str> = progs
        .iter()
        .flat_map(|p| p["streams"].as_array().unwrap().iter())
        .map(|s| s["codec"].as_str().unwrap())
        .collect();
    assert_eq!(
        codecs,
        ["mpeg2video", "ac3", "mpeg2video", "ac3", "hevc", "mp3"]
    );

    let text = probe(&[&ts]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("\"Télé Été Ünïcode\""), "{text}");
    assert_fits_80(&text);
    assert!(text.contains('…'), "long provider not cut:\n{text}");
}

fn assert_fits_80(text: &str) {
    assert!(text.lines().count() > 10);
    for l in text.lines() {
        assert!(
            l.chars().count() <= 80,
            "line of {}: {l:?}",
            l.chars().count()
        );
    }
}

#[test]
fn text_output_fits_80_columns() {
    let out = probe(&[SAMPLE]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_fits_80(&text);
    for needle in [
        "\"Demo Sport\"",
        "\"capbox radio\"",
        "0x1001",
        "0x0202",
        "deu",
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
    let help = probe(&["--help"]);
    assert!(help.status.success());
    assert_fits_80(&String::from_utf8(help.stdout).unwrap());
}

#[test]
fn random_bytes_give_a_clear_error() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_random.bin");
    // A fixed xorshift so the bytes are the same on every run; 0x47 bytes
    // occur, but never three 188 apart by chance in 200 kB (checked below by
    // the outcome: should that ever happen the error would change).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let out = probe(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no MPEG-TS sync found in 200000 bytes"),
        "stderr: {err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_and_bad_usage() {
    let out = probe(&["/nonexistent/capbox-probe.ts"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/capbox-probe.ts") && err.contains("cannot open"));
    assert_eq!(probe::<&str>(&[]).status.code(), Some(2));
    assert_eq!(probe(&[SAMPLE, "--bogus"]).status.code(), Some(2));
    assert_eq!(probe(&[SAMPLE, "--seconds", "-1"]).status.code(), Some(2));
}

#[test]
fn stream_without_pat_is_an_error() {
    let data = std::fs::read(SAMPLE).unwrap();
    let no_pat: Vec<u8> = data
        .chunks_exact(188)
        .filter(|p| (u16::from_be_bytes([p[1], p[2]]) & 0x1FFF) != 0)
        .flatten()
        .copied()
        .collect();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_no_pat.ts");
    std::fs::write(&path, &no_pat).unwrap();
    let out = probe(&[&path]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no PAT in"), "stderr: {err}");
}

#[test]
fn truncated_file_still_probes() {
    let data = std::fs::read(SAMPLE).unwrap();
    // Start 7 bytes into a packet (the reader must skip 181 bytes to find
    // the sync byte) and end 52 bytes into one (a truncated packet).
    let cut = &data[7..300_100];
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_truncated.ts");
    std::fs::write(&path, cut).unwrap();
    let part = probe_json(&path);
    let full = probe_json(Path::new(SAMPLE));
    assert_eq!(part["bytes_read"], cut.len());
    assert_eq!(part["sync"]["truncated_packets"], 1);
    assert_eq!(part["sync"]["bytes_skipped"], 181 + 52);
    let summary = |v: &Value| -> Vec<(u64, u64, Vec<u64>)> {
        v["programs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["program_number"].as_u64().unwrap(),
                    p["pmt_pid"].as_u64().unwrap(),
                    p["streams"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s["pid"].as_u64().unwrap())
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&part), summary(&full));
    assert_eq!(part["programs"][1]["service_name"], "Demo Sport");
    assert!(part["duration_s"].as_f64().unwrap() < 5.0);
}

#[test]
fn http_url_is_read_like_the_file() {
    let data = std::fs::read(SAMPLE).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0);
            req.extend_from_slice(&b[..n]);
        }
        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp2t\r\n\r\n")
            .unwrap();
        // The server closing ends the read before --seconds.
        let _ = s.write_all(&data);
        String::from_utf8_lossy(&req).into_owned()
    });
    let url = format!("http://127.0.0.1:{port}/stream/news");
    let out = probe(&[url.as_str(), "--json", "--seconds", "60"]);
    let req = server.join().unwrap();
    assert!(req.starts_with("GET /stream/news HTTP/1.0\r\n"), "{req}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = probe_json(Path::new(SAMPLE));
    assert_eq!(v["programs"], file["programs"]);
    assert_eq!(v["pids"], file["pids"]);

    // A server refusing: the status line is in the error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b);
        let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n");
    });
    let out = probe(&[format!("http://127.0.0.1:{port}/x")]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn bytes_option_bounds_the_read() {
    let v = {
        let out = probe(&[SAMPLE, "--json", "--bytes", "100k"]);
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(v["bytes_read"], 100 * 1024);
    assert_eq!(v["programs"].as_array().unwrap().len(), 3);
}

/// PMT (program 1 of samples/mux.ts with CA descriptors and a subtitle
/// stream), CAT and NIT written with Debian's libbitstream headers, so the
/// CA/network picture is checked on bytes capbox did not write.
const PSI_GEN_C: &str = r#"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bitstream/mpeg/psi.h>
#include <bitstream/dvb/si.h>

static const char *dir;
static void out(const char *name, const uint8_t *s)
{
    char path[4096];
    size_t len = psi_get_length(s) + PSI_HEADER_SIZE;
    snprintf(path, sizeof(path), "%s/%s.sec", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, len, f) != len) { perror(path); exit(1); }
    fclose(f);
}

static uint16_t ca(uint8_t *d, uint16_t sysid, uint16_t pid)
{
    desc09_init(d);
    desc09_set_sysid(d, sysid);
    desc09_set_pid(d, pid);
    return DESC_HEADER_SIZE + desc_get_length(d);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    dir = argv[1];

    uint8_t *pmt = psi_allocate();
    pmt_init(pmt);
    pmt_set_program(pmt, 1);
    psi_set_version(pmt, 9);
    psi_set_current(pmt);
    pmt_set_pcrpid(pmt, 0x101);
    uint16_t pil = ca(pmt + PMT_HEADER_SIZE, 0x1802, 0x601);
    pmt_set_desclength(pmt, pil);
    uint8_t *es = pmt + PMT_HEADER_SIZE + pil;
    uint16_t total = pil;

    pmtn_init(es);
    pmtn_set_streamtype(es, 0x1b);
    pmtn_set_pid(es, 0x101);
    pmtn_set_desclength(es, 0);
    total += PMT_ES_SIZE;
    es += PMT_ES_SIZE;

    pmtn_init(es);
    pmtn_set_streamtype(es, 0x0f);
    pmtn_set_pid(es, 0x102);
    uint8_t *d = es + PMT_ES_SIZE;
    desc0a_init(d);
    desc_set_length(d, DESC0A_LANGUAGE_SIZE);
    uint8_t *l = desc0a_get_language(d, 0);
    desc0an_set_code(l, (const uint8_t *)"fra");
    desc0an_set_audiotype(l, 0);
    uint16_t dl = DESC_HEADER_SIZE + desc_get_length(d);
    dl += ca(d + dl, 0x0500, 0x602);
    pmtn_set_desclength(es, dl);
    total += PMT_ES_SIZE + dl;
    es += PMT_ES_SIZE + dl;

    pmtn_init(es);
    pmtn_set_streamtype(es, 0x06);
    pmtn_set_pid(es, 0x104);
    d = es + PMT_ES_SIZE;
    desc59_init(d);
    desc_set_length(d, DESC59_LANGUAGE_SIZE);
    l = desc59_get_language(d, 0);
    desc59n_set_code(l, (const uint8_t *)"eng");
    desc59n_set_subtitlingtype(l, 0x10);
    desc59n_set_compositionpage(l, 1);
    desc59n_set_ancillarypage(l, 1);
    dl = DESC_HEADER_SIZE + desc_get_length(d);
    pmtn_set_desclength(es, dl);
    total += PMT_ES_SIZE + dl;

    pmt_set_length(pmt, total);
    psi_set_crc(pmt);
    if (!pmt_validate(pmt)) { fprintf(stderr, "pmt invalid\n"); return 1; }
    out("pmt", pmt);

    uint8_t *cat = psi_allocate();
    cat_init(cat);
    psi_set_version(cat, 1);
    psi_set_current(cat);
    dl = ca(cat + CAT_HEADER_SIZE, 0x0500, 0x020);
    dl += ca(cat + CAT_HEADER_SIZE + dl, 0x1802, 0x021);
    cat_set_length(cat, dl);
    psi_set_crc(cat);
    if (!cat_validate(cat)) { fprintf(stderr, "cat invalid\n"); return 1; }
    out("cat", cat);

    uint8_t *nit = psi_allocate();
    nit_init(nit, true);
    nit_set_nid(nit, 0x3001);
    psi_set_version(nit, 3);
    psi_set_current(nit);
    psi_set_section(nit, 0);
    psi_set_lastsection(nit, 0);
    d = nit + NIT_HEADER_SIZE;
    desc40_init(d);
    desc40_set_networkname(d, (const uint8_t *)"\x0B" "CapNet T\xE9l\xE9 \xA4", 14);
    uint16_t ndl = DESC_HEADER_SIZE + desc_get_length(d);
    nit_set_desclength(nit, ndl);
    uint8_t *h2 = nit_get_header2(nit);
    nith_init(h2);
    nith_set_tslength(h2, 0);
    nit_set_length(nit, ndl + NIT_HEADER2_SIZE);
    psi_set_crc(nit);
    if (!nit_validate(nit)) { fprintf(stderr, "nit invalid\n"); return 1; }
    out("nit", nit);
    return 0;
}
"#;

/// Compile and run PSI_GEN_C; `None` (loudly) when cc or the headers are
/// absent.
fn libbitstream_sections() -> Option<PathBuf> {
    if !Path::new("/usr/include/bitstream/mpeg/psi.h").exists() {
        eprintln!("!!!!! SKIPPING: apt-get install libbitstream-dev !!!!!");
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe-psi");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("psi_gen.c");
    std::fs::write(&src, PSI_GEN_C).unwrap();
    let exe = dir.join("psi_gen");
    let st = match Command::new("cc")
        .args(["-std=gnu99", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
    {
        Ok(st) => st,
        Err(_) => {
            eprintln!("!!!!! SKIPPING: no C compiler (cc) !!!!!");
            return None;
        }
    };
    assert!(st.success(), "compiling {src:?} failed");
    let out = Command::new(&exe).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "psi_gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

fn pid_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[1], p[2]]) & 0x1FFF
}

#[test]
fn ca_network_scrambling_cc_and_unreferenced_pids() {
    let Some(dir) = libbitstream_sections() else {
        return;
    };
    let sec = |n: &str| std::fs::read(dir.join(format!("{n}.sec"))).unwrap();
    let (pmt, cat, nit) = (sec("pmt"), sec("cat"), sec("nit"));
    let data = std::fs::read(SAMPLE).unwrap();
    let mut out = Vec::new();
    let (mut cc_pmt, mut cc_cat, mut cc_nit, mut cc_x) = (0u8, 0u8, 0u8, [0u8; 4]);
    let mut sport_video = 0u32;
    let mut dropped = 0u64;
    for (i, p) in data.chunks_exact(188).enumerate() {
        match pid_of(p) {
            // The libbitstream PMT replaces ffmpeg's, packet for packet.
            0x1000 => capbox::ts::section::packetize(&pmt, 0x1000, &mut cc_pmt, &mut out),
            // Audio of program 1 marked scrambled (even key).
            0x102 => {
                out.extend_from_slice(p);
                let n = out.len();
                out[n - 185] = (out[n - 185] & 0x3F) | 0x80;
            }
            // Every 100th packet of the Sport video lost: one CC error each
            // (never 16 in a row, so none can hide).
            0x201 => {
                sport_video += 1;
                if sport_video % 100 == 50 {
                    dropped += 1;
                } else {
                    out.extend_from_slice(p);
                }
            }
            _ => out.extend_from_slice(p),
        }
        if i % 500 == 0 {
            capbox::ts::section::packetize(&cat, 0x0001, &mut cc_cat, &mut out);
            capbox::ts::section::packetize(&nit, 0x0010, &mut cc_nit, &mut out);
            // EMM, ECM and an orphan PID: null-payload packets.
            for (k, pid) in [0x020u16, 0x601, 0x602, 0x1234].into_iter().enumerate() {
                let mut q = [0xFFu8; 188];
                capbox::ts::packet::write_header(&mut q, pid, false, cc_x[k]);
                cc_x[k] = (cc_x[k] + 1) & 0x0F;
                out.extend_from_slice(&q);
            }
        }
    }
    assert!(dropped > 5);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_ca.ts");
    std::fs::write(&path, &out).unwrap();

    let v = probe_json(&path);
    assert_eq!(v["network_id"], 0x3001);
    assert_eq!(v["network_name"], "CapNet Télé €");
    let emm: Vec<(u64, u64)> = v["emm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["ca_system_id"].as_u64().unwrap(),
                c["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(emm, [(0x0500, 0x020), (0x1802, 0x021)]);
    let p1 = &v["programs"][0];
    let ecm: Vec<(u64, u64, &str)> = p1["ca"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["ca_system_id"].as_u64().unwrap(),
                c["pid"].as_u64().unwrap(),
                c["ca_system"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ecm,
        [(0x0500, 0x602, "Viaccess"), (0x1802, 0x601, "Nagravision")]
    );
    let streams = p1["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[1]["scrambled"], true);
    assert_eq!(streams[0]["scrambled"], false);
    assert_eq!(streams[1]["languages"], serde_json::json!(["fra"]));
    assert_eq!(streams[2]["pid"], 0x104);
    assert_eq!(streams[2]["kind"], "subtitles");
    assert_eq!(streams[2]["codec"], "dvb_subtitle");
    assert_eq!(streams[2]["languages"], serde_json::json!(["eng"]));
    assert_eq!(streams[2]["packets"], 0);

    assert_eq!(v["unreferenced_pids"], serde_json::json!([0x1234]));
    // The subtitle stream and the Nagravision EMM PID carry no packet.
    assert_eq!(v["missing_pids"], serde_json::json!([0x021, 0x104]));
    for p in v["pids"].as_array().unwrap() {
        let pid = p["pid"].as_u64().unwrap();
        let want_cc = if pid == 0x201 { dropped } else { 0 };
        assert_eq!(p["cc_errors"].as_u64(), Some(want_cc), "PID {pid:#x}");
        assert_eq!(p["scrambled"], pid == 0x102, "PID {pid:#x}");
        assert_eq!(p["referenced"], pid != 0x1234, "PID {pid:#x}");
    }

    let text = String::from_utf8(probe(&[&path]).stdout).unwrap();
    assert_fits_80(&text);
    for needle in [
        "CA 0x1802 Nagravision  ECM PID 0x0601",
        "EMM: CA 0x0500 Viaccess  EMM PID 0x0020",
        "network \"CapNet Télé €\"",
        "Unreferenced PIDs (1): 0x1234",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn without_pcr_the_pts_clock_gives_the_rates() {
    let data = std::fs::read(SAMPLE).unwrap();
    let mut out = data.clone();
    let mut cleared = 0;
    for p in out.chunks_exact_mut(188) {
        // adaptation field present, non-empty, PCR_flag set: clear the flag
        // (the PCR bytes stay, as stuffing).
        if p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
            p[5] &= !0x10;
            cleared += 1;
        }
    }
    assert!(cleared > 400);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe_no_pcr.ts");
    std::fs::write(&path, &out).unwrap();
    let v = probe_json(&path);
    let full = probe_json(Path::new(SAMPLE));
    assert_eq!(v["clock"], "pts");
    assert_eq!(full["clock"], "pcr");
    let (a, b) = (
        v["duration_s"].as_f64().unwrap(),
        full["duration_s"].as_f64().unwrap(),
    );
    assert!((a - b).abs() / b < 0.03, "PTS {a} s vs PCR {b} s");
    for p in v["pids"].as_array().unwrap() {
        assert_eq!(p["pcr"], false);
    }
}

#[test]
fn http_live_stream_is_read_until_seconds_run_out() {
    let data = std::fs::read(SAMPLE).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 4096];
        let _ = s.read(&mut b);
        s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .unwrap();
        let _ = s.write_all(&data[..500 * 188]);
        // A live stream never ends: hold the connection until the client
        // gives up (its close makes this read return).
        let _ = s.read(&mut b);
    });
    let url = format!("http://localhost:{port}/");
    let out = probe(&[url.as_str(), "--json", "--seconds", "0.5"]);
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bytes_read"], 500 * 188);
    assert_eq!(v["programs"].as_array().unwrap().len(), 3);
}
