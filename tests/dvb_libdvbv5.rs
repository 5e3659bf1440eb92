//! Cross-check of the channel-file reader and writer against libdvbv5 itself
//! (Debian `libdvbv5-dev`, the library dvbv5-scan/dvbv5-zap use): a small C
//! program reads a file with `dvb_read_file` and writes it back with
//! `dvb_write_file`.
//! * libdvbv5 must accept every file capbox writes (it refuses unknown value
//!   spellings), and reading libdvbv5's rewrite gives capbox's entries back;
//! * for every dtv-scan-tables DVB-S/T/C file, capbox reads the original and
//!   libdvbv5's rewrite to the same entries.
//!
//! libdvbv5 1.22 does not know PLS_CODE/PLS_MODE (it drops unknown keys), so
//! those are compared without the PLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use capbox::dvb::channels::{self, ChannelEntry};
use capbox::dvb::tuning::{Pilot, Pls, Tuning};

const HELPER_C: &str = r#"
#include <libdvbv5/dvb-file.h>
int main(int argc, char **argv) {
    struct dvb_file *f;
    if (argc != 3) return 2;
    f = dvb_read_file(argv[1]);
    if (!f) return 1;
    return dvb_write_file(argv[2], f) ? 1 : 0;
}
"#;

fn build_helper(dir: &Path) -> Option<PathBuf> {
    if !Path::new("/usr/include/libdvbv5/dvb-file.h").exists() {
        eprintln!("\n!!! SKIPPED: libdvbv5 headers missing; apt-get install libdvbv5-dev !!!\n");
        return None;
    }
    let src = dir.join("rw.c");
    let bin = dir.join("rw");
    std::fs::write(&src, HELPER_C).unwrap();
    let st = Command::new("gcc")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-ldvbv5")
        .status()
        .expect("gcc");
    assert!(st.success(), "building the libdvbv5 helper failed");
    Some(bin)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capbox-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn libdvbv5_rewrite(helper: &Path, input: &Path, output: &Path) -> bool {
    Command::new(helper)
        .arg(input)
        .arg(output)
        .output()
        .expect("run helper")
        .status
        .success()
}

/// libdvbv5 writes every property of the delivery system, filling in the
/// ones a file leaves out with its defaults (DVB-S2: PILOT = OFF,
/// STREAM_ID = 0; DVB-T2: STREAM_ID = 0; see the dvbv5 rewrite of any dtv-scan-tables file). Both
/// sides are brought to the same spelling of "not given" before comparing.
fn normalize(mut v: Vec<ChannelEntry>) -> Vec<ChannelEntry> {
    for e in &mut v {
        match &mut e.tuning {
            Tuning::DvbS2(p) => {
                p.pls = Pls::DEFAULT;
                if p.pilot == Pilot::Off {
                    p.pilot = Pilot::Auto;
                }
                if p.stream_id == Some(0) {
                    p.stream_id = None;
                }
            }
            Tuning::DvbS(p) => {
                if p.pilot == Pilot::Off {
                    p.pilot = Pilot::Auto;
                }
            }
            // libdvbv5 writes STREAM_ID = 0 (PLP 0) where the file gave no
            // PLP; capbox keeps "no PLP" (NO_STREAM_ID_FILTER: driver picks).
            Tuning::DvbT2(p) => {
                if p.plp_id == Some(0) {
                    p.plp_id = None;
                }
            }
            _ => {}
        }
        // libdvbv5 drops keys it does not know; so do we compare without them.
        e.extra.retain(|(k, _)| !k.starts_with("PLS_"));
    }
    v
}

#[test]
fn libdvbv5_reads_what_capbox_writes() {
    let dir = tmpdir("dvbv5-w");
    let Some(helper) = build_helper(&dir) else {
        return;
    };
    let text = "\
[Das Erste HD]
\tSERVICE_ID = 10301
\tVIDEO_PID = 5101
\tAUDIO_PID = 5102 5103
\tPID_06 = 5104
\tLNB = UNIVERSAL
\tSAT_NUMBER = 1
\tDELIVERY_SYSTEM = DVBS2
\tFREQUENCY = 11494000
\tPOLARIZATION = HORIZONTAL
\tSYMBOL_RATE = 22000000
\tINNER_FEC = 2/3
\tMODULATION = PSK/8
\tROLLOFF = 35
\tPILOT = ON
\tSTREAM_ID = 3

[CHANNEL]
\tDELIVERY_SYSTEM = DVBT2
\tFREQUENCY = 490000000
\tBANDWIDTH_HZ = 8000000
\tSTREAM_ID = 1
\tGUARD_INTERVAL = 19/256
\tTRANSMISSION_MODE = 32K
\tMODULATION = QAM/256

[CHANNEL]
\tDELIVERY_SYSTEM = DVBC/ANNEX_A
\tFREQUENCY = 474000000
\tSYMBOL_RATE = 6900000
\tMODULATION = QAM/64
";
    let ours = channels::parse("sample", text.as_bytes()).unwrap();
    let written = dir.join("capbox.conf");
    std::fs::write(&written, channels::write(&ours)).unwrap();
    let back = dir.join("libdvbv5.conf");
    assert!(
        libdvbv5_rewrite(&helper, &written, &back),
        "libdvbv5 refused capbox's file:\n{}",
        channels::write(&ours)
    );
    let theirs = channels::parse("libdvbv5.conf", &std::fs::read(&back).unwrap()).unwrap();
    assert_eq!(theirs, ours);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capbox_and_libdvbv5_read_scan_tables_alike() {
    let root = Path::new("/usr/share/dvb");
    if !root.join("dvb-s").is_dir() {
        eprintln!("\n!!! SKIPPED: /usr/share/dvb missing; apt-get install dtv-scan-tables !!!\n");
        return;
    }
    let dir = tmpdir("dvbv5-r");
    let Some(helper) = build_helper(&dir) else {
        return;
    };
    let (mut files, mut entries, mut refused_by_libdvbv5) = (0, 0, Vec::new());
    for sub in ["dvb-s", "dvb-t", "dvb-c"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            let out = dir.join("out.conf");
            if !libdvbv5_rewrite(&helper, &p, &out) {
                refused_by_libdvbv5.push(p.display().to_string());
                continue;
            }
            let (orig, _) = channels::parse_lenient("orig", &std::fs::read(&p).unwrap());
            let (rew, _) = channels::parse_lenient("rewrite", &std::fs::read(&out).unwrap());
            let mut orig_v5 = orig.clone();
            for e in &mut orig_v5 {
                // libdvbv5 1.22 keeps only the last PID_xx line of an entry
                // (each one replaces the list read so far); capbox keeps all.
                if e.other_pids.len() > 1 {
                    e.other_pids.drain(..e.other_pids.len() - 1);
                }
            }
            let (a, b) = (normalize(rew), normalize(orig_v5));
            assert_eq!(a.len(), b.len(), "{}: entry count", p.display());
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                assert_eq!(x, y, "{} entry {i}", p.display());
            }
            files += 1;
            entries += orig.len();
        }
    }
    eprintln!(
        "libdvbv5 cross-check: {files} files, {entries} entries identical; libdvbv5 refused {} files: {:?}",
        refused_by_libdvbv5.len(),
        refused_by_libdvbv5
    );
    assert!(files > 1000);
    let _ = std::fs::remove_dir_all(&dir);
}
