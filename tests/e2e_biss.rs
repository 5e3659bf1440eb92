//! BISS-1 end to end: samples/mux.ts program 1's ES PIDs scrambled by
//! Debian's libdvbcsa (tests/c/biss_scramble.c) with a constant session
//! word, served through `capbox serve` with `biss = "…"`: every ES packet of
//! the output must be clear and carry a payload of the clear original; with
//! a wrong key the channel reports undecryptable packets.

mod e2e_common;
use e2e_common::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CW: &str = "1a2b3c4d5e6f7081";
const ES_PIDS: [u16; 2] = [0x101, 0x102];

/// `samples/mux.ts` scrambled by libdvbcsa into `out`; None (skipped) when
/// libdvbcsa is not installed.
fn scrambled_sample(out: &Path) -> Option<()> {
    if !Path::new("/usr/include/dvbcsa/dvbcsa.h").exists() {
        eprintln!("!!!!!!!! SKIPPED: libdvbcsa missing: apt-get install libdvbcsa-dev !!!!!!!!");
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("biss-scramble");
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/biss_scramble.c");
    let exe: PathBuf = dir.join(format!("biss_scramble-{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldvbcsa")
        .status()
        .unwrap();
    assert!(st.success(), "compiling {src:?} failed");
    let st = Command::new(&exe)
        .arg(CW)
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

    // The key is in no status, metric or log line.
    for text in [st.to_string(), srv.get("/metrics").text(), srv.log_text()] {
        assert!(!text.to_lowercase().contains(CW), "key leaked: {text}");
        assert!(!text.contains("1a2b3c4d5e6f7082"), "key leaked");
    }
}
