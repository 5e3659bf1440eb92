//! BISS-1 end to end: samples/mux.ts program 1's ES PIDs scrambled by
//! Debian's libdvbcsa (tests/c/biss_scramble.c) with a constant session
//! word, served through `capbox serve` with `biss = "…"`: every ES packet of
//! the output must be clear and carry a payload of the clear original; with
//! a wrong key the channel reports undecryptable packets.

mod c_helpers;
mod e2e_common;
use e2e_common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CW: &str = "1a2b3c4d5e6f7081";
const ES_PIDS: [u16; 2] = [0x101, 0x102];
const ECM_PID: u16 = 0x1F0;

/// Tags of every descriptor (program_info and ES_info) in a PMT section.
fn pmt_descriptor_tags(s: &[u8]) -> Vec<u8> {
    fn walk(mut d: &[u8], out: &mut Vec<u8>) {
        while d.len() >= 2 {
            out.push(d[0]);
            d = &d[(2 + d[1] as usize).min(d.len())..];
        }
    }
    let mut tags = Vec::new();
    let pil = (((s[10] & 0x0F) as usize) << 8) | s[11] as usize;
    walk(&s[12..12 + pil], &mut tags);
    let mut es = &s[12 + pil..s.len() - 4];
    while es.len() >= 5 {
        let l = (((es[3] & 0x0F) as usize) << 8) | es[4] as usize;
        walk(&es[5..(5 + l).min(es.len())], &mut tags);
        es = &es[(5 + l).min(es.len())..];
    }
    tags
}

fn first_pmt_tags(b: &[u8], pmt_pid: u16) -> Vec<u8> {
    let p = packets(b)
        .find(|p| pid(p) == pmt_pid && pusi(p))
        .expect("a PMT");
    pmt_descriptor_tags(section_in(p).expect("a PMT section"))
}

fn pmt_pid_of_program_1() -> u16 {
    let clear = std::fs::read(sample_mux()).unwrap();
    first_pat(&clear)
        .unwrap()
        .into_iter()
        .find(|&(n, _)| n == 1)
        .unwrap()
        .1
}

/// `samples/mux.ts` scrambled by libdvbcsa into `out`; None (skipped) when
/// libdvbcsa is not installed.
fn scrambled_sample(out: &Path) -> Option<()> {
    let exe = c_helpers::dvbcsa_helper("biss_scramble")?;
    let st = Command::new(&exe)
        .arg(CW)
        .arg(format!("pmt={}", pmt_pid_of_program_1()))
        .arg(format!("ecm={ECM_PID}"))
        .args(ES_PIDS.iter().map(|p| p.to_string()))
        .stdin(std::fs::File::open(sample_mux()).unwrap())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(st.success(), "biss_scramble failed");
    Some(())
}

fn biss_channel(name: &str, file: &Path, key: &str) -> String {
    format!(
        "[[channel]]\nname = \"{name}\"\n\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\nbiss = \"{key}\"\n\n",
        file.display()
    )
}

#[test]
fn biss_channel_is_served_clear_byte_for_byte() {
    let tmp = TempDir::new("biss-src");
    let scrambled = tmp.join("scrambled.ts");
    if scrambled_sample(&scrambled).is_none() {
        return;
    }
    // A second copy so the wrong-key channel has its own mux.
    let scrambled2 = tmp.join("scrambled2.ts");
    std::fs::copy(&scrambled, &scrambled2).unwrap();

    // The input really is scrambled.
    let input = std::fs::read(&scrambled).unwrap();
    let n_scr = packets(&input).filter(|p| p[3] & 0xC0 != 0).count();
    assert!(n_scr > 1000, "only {n_scr} scrambled packets in the input");
    let pmt_pid = pmt_pid_of_program_1();
    assert!(first_pmt_tags(&input, pmt_pid).contains(&0x09));
    assert!(count_pid(&input, ECM_PID) > 0);

    // Payloads of the clear original, per PID.
    let clear = std::fs::read(sample_mux()).unwrap();
    let mut clear_payloads: HashMap<u16, HashSet<Vec<u8>>> = HashMap::new();
    for p in packets(&clear) {
        if ES_PIDS.contains(&pid(p)) && has_payload(p) {
            clear_payloads
                .entry(pid(p))
                .or_default()
                .insert(payload(p).to_vec());
        }
    }

    let cfg = server_toml()
        + &biss_channel("biss", &scrambled, CW)
        + &biss_channel("wrong", &scrambled2, "1a2b3c4d5e6f7082");
    let srv = Server::start("biss", &cfg);
    srv.wait_up(&["biss"]);
    let out = capture(srv.addr, "/stream/biss", Duration::from_secs(3));

    // A player must not think the output is scrambled.
    let tags = first_pmt_tags(&out, pmt_pid);
    assert!(!tags.contains(&0x09), "CA_descriptor left in {tags:x?}");
    assert_eq!(count_pid(&out, ECM_PID), 0, "ECM PID carried");

    let mut checked: HashMap<u16, usize> = HashMap::new();
    for (i, p) in packets(&out).enumerate() {
        assert_eq!(
            p[3] & 0xC0,
            0,
            "packet {i} (PID {:#x}) still scrambled",
            pid(p)
        );
        if ES_PIDS.contains(&pid(p)) && has_payload(p) && !payload(p).is_empty() {
            assert!(
                clear_payloads[&pid(p)].contains(payload(p)),
                "packet {i} PID {:#x}: payload not in the clear original",
                pid(p)
            );
            *checked.entry(pid(p)).or_default() += 1;
        }
    }
    for p in ES_PIDS {
        assert!(
            checked.get(&p).copied().unwrap_or(0) > 50,
            "too few packets of {p:#x} checked: {checked:?}"
        );
    }

    if have("ffmpeg") {
        let f = tmp.join("out.ts");
        std::fs::write(&f, &out).unwrap();
        let (ok, err) = ffmpeg_errors(&f);
        assert!(ok && err.trim().is_empty(), "ffmpeg: {err}");
    }

    // Counters: the right key descrambles everything; the wrong one shows.
    assert!(wait_until(Duration::from_secs(5), || {
        let m = srv.metrics();
        metric(&m, "capbox_channel_descrambled_packets_total", "biss").unwrap_or(0.0) > 0.0
            && metric(&m, "capbox_channel_undecryptable_packets_total", "wrong").unwrap_or(0.0)
                > 0.0
    }));
    let m = srv.metrics();
    assert_eq!(
        metric(&m, "capbox_channel_undecryptable_packets_total", "biss"),
        Some(0.0),
        "{}",
        fmt_samples(&m)
    );
    let st = srv.status();
    let ch = status_channel(&st, "biss").unwrap();
    assert!(ch["biss"]["descrambled"].as_u64().unwrap() > 0, "{ch}");
    // The wrong key shows in the channel's reason (its health).
    assert!(wait_until(Duration::from_secs(5), || {
        let st = srv.status();
        status_channel(&st, "wrong").unwrap()["reason"]
            .as_str()
            .unwrap_or("")
            .contains("could not be descrambled")
    }));
    let st = srv.status();

    // The key is in no status, metric or log line.
    for text in [st.to_string(), srv.get("/metrics").text(), srv.log_text()] {
        assert!(!text.to_lowercase().contains(CW), "key leaked: {text}");
        assert!(!text.contains("1a2b3c4d5e6f7082"), "key leaked");
    }
}
