//! End-to-end: bad inputs and bad configs. Each bad source must be reported
//! (log, /status or /metrics) while the other channels keep streaming; each
//! bad config must be refused with `capbox.toml:LINE: KEY: ...`.

mod e2e_common;
use capbox::ts::section::build_long_section;
use e2e_common::*;
use std::path::Path;
use std::time::Duration;

/// A good channel (sport = program 2 of the sample) streams valid TS.
fn assert_streams(srv: &Server, ch: &str) {
    let b = fetch_bytes(srv.addr, &format!("/stream/{ch}"), 200 * TS);
    let first = packets(&b).next().unwrap();
    assert_eq!(pid(first), 0, "{ch}: does not start with the PAT");
    assert!(
        count_pid(&b, 0x201) > 0 || count_pid(&b, 0x202) > 0,
        "{ch}: no ES packets"
    );
}

fn lower_all(srv: &Server) -> String {
    let st = srv.get("/status").text();
    let m = srv.get("/metrics").text();
    format!("{}\n{st}\n{m}", srv.log_text()).to_ascii_lowercase()
}

fn bad_source_server(tag: &str, bad: &Path, program: u16) -> Server {
    let cfg = server_toml()
        + &channel_toml("bad", bad, program, &[])
        + &channel_toml("sport", &sample_mux(), 2, &[]);
    Server::start(tag, &cfg)
}

#[test]
fn e2e_truncated_file_is_counted_and_others_serve() {
    let dir = TempDir::new("trunc-src");
    let f = dir.join("trunc.ts");
    let mux = std::fs::read(sample_mux()).unwrap();
    // About 2 s of the mux, cut in the middle of a packet.
    std::fs::write(&f, &mux[..2000 * TS + 100]).unwrap();
    let mut srv = bad_source_server("trunc", &f, 1);
    srv.wait_up(&["sport"]);
    // Long enough for the 2 s file to loop at least once.
    std::thread::sleep(Duration::from_secs(4));
    assert!(srv.alive(), "capbox died:\n{}", srv.log_text());
    assert_streams(&srv, "sport");
    // A counter that moved, or a log line: a key name alone says nothing.
    let st = srv.status();
    let in_status = status_channel(&st, "bad")
        .and_then(|c| c["source_stats"]["truncated_packets"].as_u64())
        .unwrap_or(0);
    let in_metrics = srv.metrics().iter().any(|s| {
        s.name.contains("truncat")
            && s.labels.get("channel").map(String::as_str) == Some("bad")
            && s.value > 0.0
    });
    let log = srv.log_text().to_ascii_lowercase();
    let in_log = log.contains("truncat") || log.contains("partial packet");
    println!("truncated: status {in_status}, metrics {in_metrics}, log {in_log}");
    assert!(
        in_status > 0 || in_metrics || in_log,
        "nothing says the file ends in a partial packet:\n{st:#}\n{}",
        srv.log_text()
    );
}

#[test]
fn e2e_random_bytes_are_not_a_transport_stream() {
    let dir = TempDir::new("random-src");
    let f = dir.join("random.ts");
    // xorshift: deterministic noise (a real 0x47 every 188 bytes is unlikely).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&f, noise).unwrap();
    let mut srv = bad_source_server("random", &f, 1);
    srv.wait_up(&["sport"]);
    let ok = wait_until(Duration::from_secs(10), || {
        lower_all(&srv).contains("not a transport stream")
    });
    assert!(srv.alive(), "capbox died:\n{}", srv.log_text());
    assert!(
        ok,
        "no 'not a transport stream' in log/status/metrics:\n{}",
        lower_all(&srv)
    );
    let m = srv.metrics();
    assert_ne!(
        metric(&m, "capbox_channel_up", "bad"),
        Some(1.0),
        "random bytes channel is up"
    );
    assert_streams(&srv, "sport");
}

/// Copy of the sample with every PMT section of program 1 (PID 0x1000)
/// corrupted (one body byte flipped; CRC left as is).
fn pmt_crc_broken(out: &Path) -> usize {
    let mut mux = std::fs::read(sample_mux()).unwrap();
    let mut n = 0;
    for p in mux.chunks_exact_mut(TS) {
        if pid(p) == 0x1000 && pusi(p) {
            let off = 4 + if has_af(p) { 1 + p[4] as usize } else { 0 };
            let ptr = p[off] as usize;
            // Section byte 9 = low byte of PCR_PID.
            p[off + 1 + ptr + 9] ^= 0x40;
            n += 1;
        }
    }
    std::fs::write(out, mux).unwrap();
    n
}

#[test]
fn e2e_pmt_crc_error_channel_not_up() {
    let dir = TempDir::new("crc-src");
    let f = dir.join("crc.ts");
    let n = pmt_crc_broken(&f);
    assert!(n > 10, "only {n} PMT sections found to break");
    let mut srv = bad_source_server("crc", &f, 1);
    srv.wait_up(&["sport"]);
    let mut m = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        m = srv.metrics();
        m.iter().any(|s| {
            s.name.contains("crc")
                && s.labels.get("channel").map(String::as_str) == Some("bad")
                && s.value > 0.0
        })
    });
    assert!(
        ok,
        "no CRC error counter > 0 in /metrics:\n{}",
        fmt_samples(&m)
    );
    for x in m.iter().filter(|s| s.name.contains("crc")) {
        println!("{} {:?} {}", x.name, x.labels, x.value);
    }
    std::thread::sleep(Duration::from_secs(2));
    let m = srv.metrics();
    let sport_crc = m
        .iter()
        .filter(|s| {
            s.name.contains("crc") && s.labels.get("channel").map(String::as_str) == Some("sport")
        })
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(sport_crc, 0.0, "CRC errors charged to the clean channel");
    assert_eq!(
        metric(&m, "capbox_channel_pmt_seen", "bad"),
        Some(0.0),
        "{}",
        fmt_samples(&m)
    );
    assert_eq!(
        metric(&m, "capbox_channel_up", "bad"),
        Some(0.0),
        "{}",
        fmt_samples(&m)
    );
    let st = srv.status();
    let bad = status_channel(&st, "bad").unwrap_or_else(|| panic!("{st:#}"));
    assert_ne!(bad["state"], "up", "{bad:#}");
    assert!(srv.alive());
    assert_streams(&srv, "sport");
}

/// Copy of the sample where program 3's PMT also lists PID 0x0399 (MP2),
/// which carries no packet.
fn pmt_missing_pid(out: &Path) -> usize {
    let mut mux = std::fs::read(sample_mux()).unwrap();
    let mut n = 0;
    for p in mux.chunks_exact_mut(TS) {
        if pid(p) != 0x1002 || !pusi(p) {
            continue;
        }
        assert!(!has_af(p), "PMT packet with adaptation field");
        let ptr = p[4] as usize;
        let s = &p[5 + ptr..];
        let len = 3 + ((((s[1] & 0x0F) as usize) << 8) | s[2] as usize);
        let sec = &s[..len];
        let version = (sec[5] >> 1) & 0x1F;
        let mut body = sec[8..len - 4].to_vec();
        body.extend_from_slice(&[0x03, 0xE3, 0x99, 0xF0, 0x00]);
        let new = build_long_section(0x02, 3, version, 0, 0, &body);
        assert!(5 + new.len() <= TS, "new PMT does not fit one packet");
        p[4] = 0;
        p[5..5 + new.len()].copy_from_slice(&new);
        p[5 + new.len()..].fill(0xFF);
        n += 1;
    }
    std::fs::write(out, mux).unwrap();
    n
}

#[test]
fn e2e_pmt_with_missing_pid_is_reported_and_served() {
    let dir = TempDir::new("missing-src");
    let f = dir.join("missing.ts");
    let n = pmt_missing_pid(&f);
    assert!(n > 10, "only {n} PMT sections rewritten");
    // Cross-check our rewrite with ffprobe: it must see the new stream.
    if have("ffprobe") {
        let j = ffprobe_json(&f);
        let ids: Vec<&str> = j["streams"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert!(
            ids.contains(&"0x399"),
            "ffprobe does not see 0x399: {ids:?}"
        );
    }
    let srv = bad_source_server("missing", &f, 3);
    srv.wait_up(&["sport", "bad"]);
    // PIDs not seen *yet* count as missing just after start: wait until the
    // clean channel has seen all of its PIDs, then only 0x399 may be missing.
    let missing = |ch: &str| metric(&srv.metrics(), "capbox_channel_missing_pids", ch);
    let ok = wait_until(Duration::from_secs(10), || {
        missing("sport") == Some(0.0) && missing("bad") == Some(1.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        ok && missing("bad") == Some(1.0),
        "capbox_channel_missing_pids: bad={:?} sport={:?} (want 1 and 0)",
        missing("bad"),
        missing("sport")
    );
    let b = fetch_bytes(srv.addr, "/stream/bad", 400 * TS);
    assert!(count_pid(&b, 0x301) > 0, "no video 0x301 on the channel");
    assert!(count_pid(&b, 0x302) > 0, "no audio 0x302 on the channel");
    assert_eq!(count_pid(&b, 0x399), 0);
    assert_streams(&srv, "sport");
    // Which PID is missing, not just how many: an operator needs it.
    let st = srv.status();
    let bad = status_channel(&st, "bad").unwrap().to_string();
    assert!(
        bad.contains("0x399") || bad.contains("0x0399") || bad.contains("[921]"),
        "/status does not name the missing PID 0x399:\n{bad}"
    );
}

/// Write `body` as capbox.toml; returns the dir (kept alive) and path.
fn write_cfg(tag: &str, body: &str) -> (TempDir, String) {
    let d = TempDir::new(tag);
    let p = d.join("capbox.toml");
    std::fs::write(&p, body).unwrap();
    let s = p.display().to_string();
    (d, s)
}

/// Line (1-based) of the first line of `body` containing `needle`.
fn line_of(body: &str, needle: &str) -> usize {
    body.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn e2e_unknown_config_key_is_refused_with_line() {
    let m = sample_mux();
    let body = server_toml()
        + &channel_toml("news", &m, 1, &[])
        + &channel_toml("sport", &m, 2, &["tvg_nmae = \"typo\""]);
    let line = line_of(&body, "tvg_nmae");
    let (_d, path) = write_cfg("unknown-key", &body);
    let want = format!("capbox.toml:{line}: channel[1].tvg_nmae");
    for cmd in ["check-config", "serve"] {
        let (code, out) = run_capbox(&[cmd, "--config", &path], Duration::from_secs(15));
        println!("capbox {cmd}: exit {code:?}\n{out}");
        assert!(
            code.is_some(),
            "capbox {cmd} kept running on a bad config:\n{out}"
        );
        assert_ne!(
            code,
            Some(0),
            "capbox {cmd} accepted the bad config:\n{out}"
        );
        assert!(out.contains(&want), "capbox {cmd}: no `{want}` in:\n{out}");
    }
}

#[test]
fn e2e_program_not_in_file_names_key_line_and_services() {
    let m = sample_mux();
    let body =
        server_toml() + &channel_toml("news", &m, 1, &[]) + &channel_toml("ghost", &m, 7, &[]);
    let line = line_of(&body, "program = 7");
    let (_d, path) = write_cfg("no-program", &body);
    let want = format!("capbox.toml:{line}: channel[1].source[0].program");
    // The services in the file, by name or by service_id after "services".
    let services = |s: &str| {
        let names = ["Demo News", "Demo Sport", "Demo Music"]
            .iter()
            .all(|n| s.contains(n));
        let ids = s.lines().any(|l| {
            l.contains(&want)
                && l.split("services").nth(1).is_some_and(|t| {
                    let toks: Vec<&str> = t
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .filter(|x| !x.is_empty())
                        .collect();
                    ["1", "2", "3"].iter().all(|n| toks.contains(n))
                })
        });
        names || ids
    };
    let (code, out) = run_capbox(
        &["check-config", "--config", &path],
        Duration::from_secs(15),
    );
    println!("check-config: exit {code:?}\n{out}");
    let mut found = out.contains(&want) && services(&out);
    if found {
        assert_ne!(
            code,
            Some(0),
            "check-config reported the error but exited 0"
        );
    } else {
        // check-config may not open files; serve must say it then.
        let (code, out) = run_capbox(&["serve", "--config", &path], Duration::from_secs(8));
        println!("serve: exit {code:?}\n{out}");
        found = out.contains(&want) && services(&out);
        assert!(
            found,
            "neither check-config nor serve says `{want}` listing the services; serve said:\n{out}"
        );
    }
}
