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

/// `openssl enc` single-DES ECB of one 8-byte block (hex in, hex out) under
/// an 8-byte key: the independent DES for BISS mode E. None (skipped, said
/// loudly) when openssl is not installed.
fn openssl_des(encrypt: bool, key: &str, block: &str) -> Option<String> {
    if !have("openssl") {
        eprintln!("\n\n*** SKIPPED: openssl is not installed; apt-get install -y openssl ***\n");
        return None;
    }
    let bytes: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&block[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut child = Command::new("openssl")
        .args([
            "enc",
            if encrypt { "-e" } else { "-d" },
            "-des-ecb",
            "-nopad",
        ])
        .args(["-K", key, "-provider", "legacy", "-provider", "default"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 8);
    Some(out.stdout.iter().map(|b| format!("{b:02x}")).collect())
}

/// The 14-hex-digit ID as an 8-byte DES key for openssl: each 7-bit group
/// shifted up one bit, parity bit left 0 (DES ignores it). Written from
/// bits as text, unlike capbox's shift-and-mask.
fn des_key_of_id(id: &str) -> String {
    let bits: String = id
        .chars()
        .map(|c| format!("{:04b}", c.to_digit(16).unwrap()))
        .collect();
    (0..8)
        .map(|i| {
            format!(
                "{:02x}",
                u8::from_str_radix(&format!("{}0", &bits[7 * i..7 * i + 7]), 2).unwrap()
            )
        })
        .collect()
}

#[test]
fn biss_mode_e_word_deciphered_like_openssl() {
    // Random IDs and session words: capbox's mode E equals openssl's DES.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20 {
        let id = format!("{:014x}", next() >> 8);
        let cw = format!("{:016x}", next());
        let Some(esw) = openssl_des(true, &des_key_of_id(&id), &cw) else {
            return;
        };
        let (k, _) = capbox::ca::biss::BissKey::mode_e(&esw, &id).unwrap();
        let got: String = k
            .control_word()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, cw, "ID {id} ESW {esw}");
        // And openssl deciphers it back the same way.
        assert_eq!(openssl_des(false, &des_key_of_id(&id), &esw).unwrap(), cw);
    }
}

#[test]
fn biss_mode_e_channel_is_served_clear() {
    const ID: &str = "0123456789abcd";
    let Some(esw) = openssl_des(true, &des_key_of_id(ID), CW) else {
        return;
    };
    let tmp = TempDir::new("bisse-src");
    let scrambled = tmp.join("scrambled.ts");
    if scrambled_sample(&scrambled).is_none() {
        return;
    }
    let clear = std::fs::read(sample_mux()).unwrap();
    let clear = es_payloads(&clear, &ES_PIDS);
    let cfg = server_toml()
        + &format!(
            "[[channel]]\nname = \"bisse\"\n\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\n\
             biss_esw = \"{esw}\"\nbiss_id = \"{ID}\"\n\n",
            scrambled.display()
        );
    let srv = Server::start("bisse", &cfg);
    srv.wait_up(&["bisse"]);
    let out = capture(srv.addr, "/stream/bisse", Duration::from_secs(3));
    assert!(assert_descrambled(&out, &clear) > 100, "too few ES packets");
    let m = srv.metrics();
    assert_eq!(
        metric(&m, "capbox_channel_undecryptable_packets_total", "bisse"),
        Some(0.0),
        "{}",
        fmt_samples(&m)
    );
    // This CW's checksum bytes are not the CSA sums: said, without a value.
    let log = srv.log_text();
    assert!(
        log.contains("checksum bytes that are not the CSA sums"),
        "{log}"
    );
    let st = srv.status().to_string();
    for text in [st, srv.get("/metrics").text(), log] {
        let t = text.to_lowercase();
        assert!(
            !t.contains(CW) && !t.contains(&esw) && !t.contains(ID),
            "secret leaked"
        );
    }
}
