//! capbox's dvbapi client against a real OSCam (not the fake softcam of
//! tests/dvbapi_softcam.rs and tests/e2e_ca.rs, which capbox's authors
//! wrote from the published layout).
//!
//! Debian packages no OSCam and CI can reach no other source of it, so
//! this test runs only where `CAPBOX_OSCAM` names an oscam binary built
//! with `MODULE_CONSTCW` and `HAVE_DVBAPI` (README, "Tests, benchmarks,
//! fuzzing"); elsewhere it says so loudly and passes. The README records
//! the last run.
//!
//! The stream: samples/mux.ts program 1 scrambled by Debian's libdvbcsa
//! with a constant word, its PMT given a CA_descriptor (CA_system_id
//! 0x1234) naming an ECM PID that carries ECM sections. OSCam's constcw
//! reader answers ECMs of that CA system with the word from a file. So the
//! whole protocol runs for real: CLIENT_INFO / SERVER_INFO, CA PMT, OSCam's
//! demux filter on the ECM PID, capbox's FILTER_DATA with the ECM, OSCam's
//! request to its reader, CA_SET_PID / CA_SET_DESCR (and ECM_INFO) back,
//! and capbox descrambling with the word.

mod c_helpers;
mod e2e_common;
use e2e_common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// Valid CSA checksum bytes (3 and 7): OSCam fixes them in every word it
// passes on (its `disablecrccws` is off by default), as receivers expect.
const CW: &str = "0b1c2d544f506100";
const CAID: u16 = 0x1234;
const ECM_PID: u16 = 0x1F0;
const ES_PIDS: [u16; 2] = [0x101, 0x102];

struct Oscam(Child, PathBuf);

impl Drop for Oscam {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "oscam log:\n{}",
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_oscam(exe: &Path, dir: &Path, port: u16, sid: u16) -> Oscam {
    let conf = dir.join("oscam");
    std::fs::create_dir_all(&conf).unwrap();
    let cwfile = conf.join("constant.cw");
    // CAID:PROVID:SID:PMTPID:ECMPID::even odd (0 = any).
    let spaced = |h: &str| {
        (0..8)
            .map(|i| h[2 * i..2 * i + 2].to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    std::fs::write(
        &cwfile,
        format!(
            "{CAID:04X}:000000:{sid:04X}:0000:0000::{} {}\n",
            spaced(CW),
            spaced(CW)
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("oscam.conf"),
        format!(
            "[global]\nlogfile = stdout\nnice = 0\n\n\
             [dvbapi]\nenabled = 1\nau = 0\npmt_mode = 4\nlisten_port = {port}\n\
             user = capbox\nboxtype = pc\n"
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("oscam.user"),
        "[account]\nuser = capbox\npwd = capbox\ngroup = 1\nau = 0\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("oscam.server"),
        format!(
            "[reader]\nlabel = constcw\nprotocol = constcw\ndevice = {}\ncaid = {CAID:04X}\ngroup = 1\n",
            cwfile.display()
        ),
    )
    .unwrap();
    let log = dir.join("oscam.log");
    let child = Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .arg("-t")
        .arg(dir.join("oscam-tmp"))
        // No watchdog parent (killing it would leave the worker running),
        // no wait for the clock.
        .args(["-r", "0", "-w", "0"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start oscam");
    let o = Oscam(child, log);
    assert!(
        wait_until(Duration::from_secs(15), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "oscam does not listen on {port}"
    );
    o
}

#[test]
fn a_real_oscam_opens_the_channel() {
    let Some(exe) = std::env::var_os("CAPBOX_OSCAM").map(PathBuf::from) else {
        eprintln!(
            "\n\n*** SKIPPED a_real_oscam_opens_the_channel: CAPBOX_OSCAM is not set \
             (Debian packages no OSCam; see the README's test section) ***\n"
        );
        return;
    };
    let Some(helper) = c_helpers::dvbcsa_helper("biss_scramble") else {
        return;
    };
    let tmp = TempDir::new("oscam");
    let clear = std::fs::read(sample_mux()).unwrap();
    let pat = first_pat(&clear).unwrap();
    let (sid, pmt_pid) = *pat.iter().find(|&&(n, _)| n == 1).unwrap();
    let scrambled = tmp.join("scrambled.ts");
    let st = Command::new(&helper)
        .arg(CW)
        .arg(format!("pmt={pmt_pid}"))
        .arg(format!("ecm={ECM_PID}"))
        .arg(format!("caid={CAID}"))
        .args(ES_PIDS.iter().map(|p| p.to_string()))
        .stdin(std::fs::File::open(sample_mux()).unwrap())
        .stdout(std::fs::File::create(&scrambled).unwrap())
        .status()
        .unwrap();
    assert!(st.success());

    let port = free_port();
    let _oscam = start_oscam(&exe, tmp.path(), port, sid);
    let config = format!(
        "{}[softcam]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
         [[channel]]\nname = \"scr\"\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\nca = \"dvbapi\"\n",
        server_toml(),
        scrambled.display()
    );
    let srv = Server::start("oscam", &config);
    srv.wait_up(&["scr"]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = srv.metrics();
            metric(&m, "capbox_channel_descrambled_packets_total", "scr").unwrap_or(0.0) > 500.0
        }),
        "no packet descrambled with OSCam's words\n{}\n{}",
        srv.status(),
        srv.log_text()
    );
    // A keyframe since the word arrived, so a new client starts clear.
    std::thread::sleep(Duration::from_secs(2));
    let out = capture(srv.addr, "/stream/scr", Duration::from_secs(3));
    let checked = assert_descrambled(&out, &es_payloads(&clear, &ES_PIDS));
    assert!(checked > 300, "only {checked} ES packets checked");
    assert_eq!(count_pid(&out, ECM_PID), 0, "ECM PID carried");

    let st = srv.status();
    eprintln!("softcam: {}", st["softcam"]);
    let ch = status_channel(&st, "scr").unwrap();
    eprintln!("channel ca: {}", ch["ca"]);
    assert!(st["softcam"]["state"]
        .as_str()
        .unwrap_or("")
        .starts_with("ready"));
    assert!(
        st["softcam"].to_string().contains("OSCam"),
        "OSCam's SERVER_INFO name not shown: {}",
        st["softcam"]
    );
    assert_eq!(ch["ca"]["kind"], "dvbapi", "{ch}");
    assert_eq!(ch["descrambler"]["wrong_key"], 0, "{ch}");
    if have("ffmpeg") {
        let f = tmp.join("out.ts");
        std::fs::write(&f, &out).unwrap();
        let (ok, err) = ffmpeg_errors(&f);
        assert!(ok && err.trim().is_empty(), "ffmpeg: {err}");
    }
}
