//! Every dtv-scan-tables initial tuning file (Debian package
//! `dtv-scan-tables`, /usr/share/dvb) for DVB-S/S2, DVB-T/T2 and DVB-C must
//! parse into typed `Tuning`s with no error, except the entries listed in
//! `KNOWN_BAD` below (broken upstream data, each one explained) and entries
//! of delivery systems capbox does not tune.

use std::path::Path;

use capbox::dvb::channels::{self, ChannelFileError};

const ROOT: &str = "/usr/share/dvb";

/// (file relative to /usr/share/dvb, line): upstream entries that are wrong,
/// refused on purpose.
const KNOWN_BAD: &[(&str, usize, &str)] = &[
    // A symbol rate of 201.5 Msym/s (201500000; 20150000 would be plausible).
    ("dvb-s/Anik-F3-119.0W", 373, "symbol rate"),
    // Frequencies written in MHz instead of kHz.
    ("dvb-s/Hispasat-30.0W", 180, "did you mean 12207MHz"),
    ("dvb-s/SES3_C-103.0W", 94, "did you mean 4090MHz"),
    // A code rate the standard does not have: DVB-S has no 3/5
    // (EN 300 421 §4.4.3).
    ("dvb-s/Insat2E_C-83.0E", 139, "no FEC 3/5"),
];

/// Whole files whose every refused entry is bad upstream data: (file, number
/// of refused entries, why).
const KNOWN_BAD_FILES: &[(&str, usize, &str)] = &[
    // A dvbv5-scan output whose driver reported garbage for DVB-T: QAM/256,
    // which DVB-T does not have (EN 300 744: QPSK, 16QAM, 64QAM), on all 39
    // services (Australian DVB-T is 64QAM 8K).
    (
        "dvb-t/au-Goulburn-Rocky_Hill",
        39,
        "DVB-T has no modulation QAM/256",
    ),
    // DVB-T2 entries with hierarchy 1 (T2 has none) and frequencies of
    // 1007.94 MHz, 1645.03 MHz, 5.94 MHz, 5.06 MHz, 6.74 MHz: corrupted.
    ("dvb-t/ke-Nairobi", 6, "DVB-T2"),
];

/// Files with `DELIVERY_SYSTEM = DVBS` + `MODULATION = PSK/8`: the North
/// American Dish Network / Bell TV transponders use turbo-coded 8PSK
/// (the kernel's SYS_TURBO), which is not DVB-S (EN 300 421 is QPSK only);
/// the Hispasat ones (with STREAM_ID) look like mislabelled DVB-S2. capbox
/// refuses both with "DVB-S is QPSK only" and tunes no SYS_TURBO.
const TURBO_8PSK_FILES: &[&str] = &[
    "dvb-s/Anik-F3-119.0W",
    "dvb-s/Echostar-10+11-110.0W",
    "dvb-s/Galaxy19_C-97.0W",
    "dvb-s/Galaxy3C_C-95.0W",
    "dvb-s/Hispasat-30.0W",
];

struct Tally {
    files: usize,
    entries: usize,
    unsupported: usize,
    known_bad: usize,
    turbo: usize,
    bad_files: std::collections::HashMap<String, usize>,
    errors: Vec<ChannelFileError>,
}

fn scan(dir: &str, t: &mut Tally) {
    let path = Path::new(ROOT).join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    for p in names {
        let rel = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
        let bytes = std::fs::read(&p).unwrap();
        let (entries, errors) = channels::parse_lenient(&rel, &bytes);
        t.files += 1;
        t.entries += entries.len();
        for e in errors {
            if e.is_unsupported_system() {
                t.unsupported += 1;
            } else if e.to_string().contains("DVB-S is QPSK only, not PSK/8")
                && TURBO_8PSK_FILES.contains(&rel.as_str())
            {
                t.turbo += 1;
            } else if let Some((_, _, why)) = KNOWN_BAD_FILES.iter().find(|(f, _, _)| *f == rel) {
                assert!(e.to_string().contains(why), "{e}");
                *t.bad_files.entry(rel.clone()).or_insert(0) += 1;
                t.known_bad += 1;
            } else if let Some((_, _, why)) =
                KNOWN_BAD.iter().find(|(f, l, _)| *f == rel && *l == e.line)
            {
                assert!(e.to_string().contains(why), "{e}");
                t.known_bad += 1;
            } else {
                t.errors.push(e);
            }
        }
        // What we read, we write and read back identically.
        let again = channels::parse(&rel, channels::write(&entries).as_bytes())
            .unwrap_or_else(|e| panic!("rewrite of {rel}: {e}"));
        assert_eq!(again, entries, "round trip of {rel}");
    }
}

#[test]
fn dtv_scan_tables_parse_without_errors() {
    if !Path::new(ROOT).join("dvb-s").is_dir() {
        eprintln!("\n!!! SKIPPED: {ROOT} missing; apt-get install dtv-scan-tables !!!\n");
        return;
    }
    for dir in ["dvb-s", "dvb-t", "dvb-c"] {
        let mut t = Tally {
            files: 0,
            entries: 0,
            unsupported: 0,
            known_bad: 0,
            turbo: 0,
            bad_files: Default::default(),
            errors: Vec::new(),
        };
        scan(dir, &mut t);
        eprintln!(
            "{dir}: {} files, {} entries parsed, {} unsupported-system entries, {} turbo-8PSK entries, {} known-bad entries, {} errors",
            t.files,
            t.entries,
            t.unsupported,
            t.turbo,
            t.known_bad,
            t.errors.len()
        );
        for e in t.errors.iter().take(400) {
            eprintln!("  {e}");
        }
        assert!(t.files > 0 && t.entries > 0, "{dir}");
        for (f, n, _) in KNOWN_BAD_FILES
            .iter()
            .filter(|(f, _, _)| f.starts_with(dir))
        {
            assert_eq!(t.bad_files.get(*f), Some(n), "{f}: refused entries changed");
        }
        assert!(t.errors.is_empty(), "{dir}: {} errors", t.errors.len());
    }
}

/// au-Goulburn-Rocky_Hill is real dvbv5-scan output (services, PIDs): the
/// service part must be read even though its tuning values are refused.
#[test]
fn dvbv5_scan_output_sample_reads_services() {
    let path = Path::new(ROOT).join("dvb-t/au-Goulburn-Rocky_Hill");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "\n!!! SKIPPED: {} missing; apt-get install dtv-scan-tables !!!\n",
            path.display()
        );
        return;
    };
    // Fix the one refused value (QAM/256 -> QAM/64) and read it strictly.
    let text = String::from_utf8_lossy(&bytes).replace("QAM/256", "QAM/64");
    let v = channels::parse("goulburn", text.as_bytes()).unwrap();
    assert_eq!(v.len(), 39);
    let nine = &v[0];
    assert_eq!(nine.name.as_deref(), Some("Nine Canberra"));
    assert_eq!(nine.service_id, Some(2055));
    assert_eq!(nine.video_pids, vec![353]);
    assert_eq!(nine.audio_pids, vec![354]);
    assert_eq!(
        nine.other_pids,
        vec![(0x0b, vec![8026]), (0x06, vec![355]), (0x05, vec![8025])]
    );
    let snippet = channels::capbox_config_snippet(&v);
    assert!(snippet.contains("name = \"nine-canberra\""), "{snippet}");
}

/// ATSC and ISDB-T files are refused entry by entry as unsupported delivery
/// systems (capbox tunes DVB-S/S2, DVB-T/T2, DVB-C), never as parse errors.
#[test]
fn other_systems_are_refused_as_unsupported() {
    let mut total = 0;
    for dir in ["atsc", "isdb-t"] {
        let path = Path::new(ROOT).join(dir);
        let Ok(rd) = std::fs::read_dir(&path) else {
            eprintln!(
                "\n!!! SKIPPED: {} missing; apt-get install dtv-scan-tables !!!\n",
                path.display()
            );
            return;
        };
        let (mut files, mut refused) = (0, 0);
        for p in rd.map(|e| e.unwrap().path()) {
            let rel = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            let (entries, errors) = channels::parse_lenient(&rel, &std::fs::read(&p).unwrap());
            assert!(
                entries.is_empty(),
                "{rel}: {} entries accepted",
                entries.len()
            );
            for e in &errors {
                assert!(e.is_unsupported_system(), "{e}");
            }
            files += 1;
            refused += errors.len();
        }
        eprintln!("{dir}: {files} files, {refused} entries refused as unsupported systems");
        total += refused;
    }
    assert!(total > 0);
}
