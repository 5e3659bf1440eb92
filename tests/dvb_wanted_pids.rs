//! `source::dvb::wanted_pids` (what the channel runner hands a DVB adapter
//! for its per-PID filters) and `PidFilter::plan` against ffprobe's reading
//! of ffmpeg's sample mux: for each subset of wanted programs, the PIDs are
//! exactly ffprobe's PMT PIDs, PCR PIDs and stream PIDs of those programs,
//! and the filter plan adds only the SI PIDs.

use capbox::dvb::demux::{FilterPlan, PidFilter, BASE_PIDS};
use capbox::remux::Remux;
use capbox::source::dvb::wanted_pids;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts");

/// program_number → (PMT PID, PCR PID, stream PIDs) per ffprobe.
fn ffprobe_programs() -> Option<BTreeMap<u16, BTreeSet<u16>>> {
    let out = match Command::new("ffprobe")
        .args(["-v", "error", "-show_programs", "-of", "json", SAMPLE])
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!("!!!!! SKIPPING dvb_wanted_pids: ffprobe not installed (apt-get install ffmpeg) !!!!!");
            return None;
        }
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex =
        |s: &Value| u16::from_str_radix(s.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let mut m = BTreeMap::new();
    for p in v["programs"].as_array().unwrap() {
        let mut pids = BTreeSet::new();
        pids.insert(p["pmt_pid"].as_u64().unwrap() as u16);
        pids.insert(p["pcr_pid"].as_u64().unwrap() as u16);
        for s in p["streams"].as_array().unwrap() {
            pids.insert(hex(&s["id"]));
        }
        m.insert(p["program_id"].as_u64().unwrap() as u16, pids);
    }
    Some(m)
}

#[test]
fn wanted_pids_match_ffprobe_for_every_subset_of_programs() {
    let Some(programs) = ffprobe_programs() else {
        return;
    };
    assert!(programs.len() >= 3, "{programs:?}");
    let data = std::fs::read(SAMPLE).unwrap();
    let numbers: Vec<u16> = programs.keys().copied().collect();
    for mask in 1u32..(1 << numbers.len()) {
        let chosen: Vec<u16> = numbers
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        let mut remux = Remux::new();
        for &n in &chosen {
            remux.add_program(n);
        }
        // Before any PAT: nothing is known, nothing is wanted.
        assert!(wanted_pids(&remux).is_empty());
        remux.push(&data[..data.len().min(2_000_000)]);
        let want: BTreeSet<u16> = chosen
            .iter()
            .flat_map(|n| programs[n].iter().copied())
            .collect();
        let got = wanted_pids(&remux);
        assert_eq!(
            got.iter().copied().collect::<BTreeSet<u16>>(),
            want,
            "programs {chosen:?}"
        );
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "sorted, unique: {got:?}"
        );
        match PidFilter::default().plan(&got) {
            FilterPlan::Pids(p) => {
                let mut expect: BTreeSet<u16> = want.clone();
                expect.extend(BASE_PIDS);
                assert_eq!(p.into_iter().collect::<BTreeSet<u16>>(), expect);
            }
            FilterPlan::Full => panic!("{} PIDs should fit in 32", got.len()),
        }
        // A threshold below what they need: the full TS.
        assert_eq!(
            PidFilter::Auto {
                max_pids: BASE_PIDS.len() + want.len() - 1
            }
            .plan(&got),
            FilterPlan::Full
        );
    }
}
