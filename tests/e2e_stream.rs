//! End-to-end: `capbox serve` on samples/mux.ts, three channels; what comes
//! out of /stream/<ch> checked with ffprobe, ffmpeg and our own TS walker.

mod e2e_common;
use e2e_common::*;
use std::time::Duration;

struct Expect {
    ch: &'static str,
    program: u16,
    name: &'static str,
    provider: &'static str,
    /// (pid, codec_name, language)
    streams: &'static [(u16, &'static str, Option<&'static str>)],
}

const EXPECT: [Expect; 3] = [
    Expect {
        ch: "news",
        program: 1,
        name: "Demo News",
        provider: "capbox",
        streams: &[(0x101, "h264", None), (0x102, "aac", Some("fra"))],
    },
    Expect {
        ch: "sport",
        program: 2,
        name: "Demo Sport",
        provider: "capbox sports",
        streams: &[
            (0x201, "h264", None),
            (0x202, "mp2", Some("fra")),
            (0x203, "aac", Some("eng")),
        ],
    },
    Expect {
        ch: "music",
        program: 3,
        name: "Demo Music",
        provider: "capbox radio",
        streams: &[(0x301, "h264", None), (0x302, "mp2", Some("deu"))],
    },
];

fn chans() -> Vec<&'static str> {
    EXPECT.iter().map(|e| e.ch).collect()
}

#[test]
fn e2e_three_channels_one_program_each_per_ffprobe() {
    if !have("ffprobe") {
        return;
    }
    let srv = Server::start("ffprobe", &demo_toml());
    srv.wait_up(&chans());
    let caps = capture_all(srv.addr, &chans(), Duration::from_secs(3));
    for (e, cap) in EXPECT.iter().zip(&caps) {
        assert!(
            cap.len() > 50 * TS,
            "{}: only {} bytes in 3 s",
            e.ch,
            cap.len()
        );
        let f = srv.dir.join(&format!("{}.ts", e.ch));
        std::fs::write(&f, cap).unwrap();
        let j = ffprobe_json(&f);
        let progs = j["programs"].as_array().expect("programs");
        assert_eq!(progs.len(), 1, "{}: programs {:#}", e.ch, j["programs"]);
        let p = &progs[0];
        assert_eq!(p["program_num"], e.program as u64, "{}: {p:#}", e.ch);
        assert_eq!(p["tags"]["service_name"], e.name, "{}: {p:#}", e.ch);
        assert_eq!(p["tags"]["service_provider"], e.provider, "{}: {p:#}", e.ch);
        let streams = j["streams"].as_array().expect("streams");
        let got: Vec<(String, String, Option<String>)> = streams
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_string(),
                    s["codec_name"].as_str().unwrap_or("").to_string(),
                    s["tags"]["language"].as_str().map(str::to_string),
                )
            })
            .collect();
        let want: Vec<(String, String, Option<String>)> = e
            .streams
            .iter()
            .map(|(pid, c, l)| (format!("0x{pid:x}"), c.to_string(), l.map(str::to_string)))
            .collect();
        assert_eq!(got, want, "{}: streams per ffprobe", e.ch);
        // The program's own stream list agrees.
        assert_eq!(
            p["streams"].as_array().map(|a| a.len()),
            Some(e.streams.len()),
            "{}: {p:#}",
            e.ch
        );
    }
}

#[test]
fn e2e_ten_second_capture_decodes_without_error() {
    if !have("ffmpeg") {
        return;
    }
    let srv = Server::start("decode", &demo_toml());
    srv.wait_up(&chans());
    let caps = capture_all(srv.addr, &chans(), Duration::from_secs(10));
    let mut failures = Vec::new();
    for (e, cap) in EXPECT.iter().zip(&caps) {
        // ~1.17 Mbit/s over three services: well over 100 KB per 10 s each.
        assert!(
            cap.len() > 100_000,
            "{}: only {} bytes in 10 s",
            e.ch,
            cap.len()
        );
        let f = srv.dir.join(&format!("{}.ts", e.ch));
        std::fs::write(&f, cap).unwrap();
        let (ok, err) = ffmpeg_errors(&f);
        println!(
            "{}: {} bytes, ffmpeg ok={ok} stderr={:?}",
            e.ch,
            cap.len(),
            err
        );
        if !ok || !err.trim().is_empty() {
            failures.push(format!("{}: exit ok={ok}\n{err}", e.ch));
        }
    }
    assert!(
        failures.is_empty(),
        "ffmpeg errors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn e2e_psi_first_and_continuity_counters() {
    let srv = Server::start("cc", &demo_toml());
    srv.wait_up(&chans());
    // 22 s: the server started at the top of the 20 s file, so every capture
    // crosses the loop point once.
    let caps = capture_all(srv.addr, &chans(), Duration::from_secs(22));
    for (e, cap) in EXPECT.iter().zip(&caps) {
        assert!(cap.len() > 100 * TS, "{}: {} bytes", e.ch, cap.len());
        let first = packets(cap).next().unwrap();
        assert_eq!(pid(first), 0, "{}: first packet is not the PAT", e.ch);
        assert!(
            pusi(first),
            "{}: first PAT packet has no section start",
            e.ch
        );
        let pat = first_pat(cap).expect("PAT");
        assert_eq!(
            pat.len(),
            1,
            "{}: PAT {pat:x?} has more than one program",
            e.ch
        );
        assert_eq!(pat[0].0, e.program, "{}: PAT {pat:x?}", e.ch);
        let pmt_pid = pat[0].1;
        let (pcr_pid, es) = first_pmt(cap, pmt_pid).expect("PMT");
        let es_pids: Vec<u16> = es.iter().map(|x| x.1).collect();
        let want: Vec<u16> = e.streams.iter().map(|x| x.0).collect();
        assert_eq!(es_pids, want, "{}: PMT ES PIDs", e.ch);
        assert_eq!(pcr_pid, want[0], "{}: PCR PID", e.ch);

        let pos = |f: &dyn Fn(&[u8]) -> bool| packets(cap).position(f);
        let first_pmt_at = pos(&|p| pid(p) == pmt_pid).expect("no PMT packet");
        let first_es_at = pos(&|p| es_pids.contains(&pid(p))).expect("no ES packet");
        assert!(
            first_pmt_at < first_es_at,
            "{}: ES packet {first_es_at} before the first PMT packet {first_pmt_at}",
            e.ch
        );
        // Only the program's PIDs (plus PAT/PMT/SDT/EIT/TDT) get through.
        let allowed = |p: u16| p == 0 || p == pmt_pid || p == 0x11 || p == 0x12 || p == 0x14;
        let stray: Vec<u16> = packets(cap)
            .map(pid)
            .filter(|&p| !allowed(p) && !es_pids.contains(&p))
            .collect();
        assert!(
            stray.is_empty(),
            "{}: foreign PIDs {:x?}",
            e.ch,
            &stray[..stray.len().min(10)]
        );

        let mut last_pcr = None;
        let mut loops = 0;
        for p in packets(cap).filter(|p| pid(p) == pcr_pid) {
            if let Some(v) = pcr(p) {
                if last_pcr.is_some_and(|l| v < l) {
                    loops += 1;
                }
                last_pcr = Some(v);
            }
        }
        assert_eq!(
            loops, 1,
            "{}: capture should cross the file loop once",
            e.ch
        );
        // PIDs capbox writes itself: strictly continuous from the start,
        // across the loop too.
        let (errs, _) = cc_errors(cap, &[0, pmt_pid, 0x11], false);
        assert!(errs.is_empty(), "{}: PSI CC errors: {errs:#?}", e.ch);
        assert!(count_pid(cap, 0x11) > 0, "{}: no SDT", e.ch);
        // ES PIDs: passed through; only the loop point may break them.
        let (errs, tolerated) = cc_errors(cap, &es_pids, true);
        println!(
            "{}: {} packets, {} CC breaks at the file loop point",
            e.ch,
            cap.len() / TS,
            tolerated.len()
        );
        assert!(errs.is_empty(), "{}: ES CC errors: {errs:#?}", e.ch);
        assert!(
            tolerated.len() <= es_pids.len(),
            "{}: more loop breaks than PIDs: {tolerated:#?}",
            e.ch
        );
        for &p in &es_pids {
            assert!(count_pid(cap, p) > 0, "{}: no packets on 0x{p:x}", e.ch);
        }
    }
}

/// The CC checker itself, on ffmpeg-made bytes: clean file clean, the file
/// played twice only breaks at the loop point, one dropped packet is caught.
#[test]
fn e2e_cc_checker_catches_a_dropped_packet() {
    let mux = std::fs::read(sample_mux()).unwrap();
    let es = [0x101, 0x102, 0x201, 0x202, 0x203, 0x301, 0x302];
    let (errs, tol) = cc_errors(&mux, &es, false);
    assert!(errs.is_empty() && tol.is_empty(), "{errs:?}");
    let twice = [&mux[..], &mux[..]].concat();
    let (errs, tol) = cc_errors(&twice, &es, true);
    assert!(errs.is_empty(), "{errs:?}");
    println!("loop breaks in the sample played twice: {}", tol.len());
    let (errs, _) = cc_errors(&twice, &es, false);
    assert_eq!(errs.len(), tol.len());
    let n = packets(&mux)
        .position(|p| pid(p) == 0x202 && !pusi(p))
        .unwrap();
    let cut = [&mux[..n * TS], &mux[(n + 1) * TS..]].concat();
    let (errs, _) = cc_errors(&cut, &es, true);
    assert_eq!(errs.len(), 1, "{errs:?}");
}
