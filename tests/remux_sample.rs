//! The remux on the ffmpeg-made sample mux: table rates and contents of each
//! program's output, measured on the output's own PCR clock.

use capbox::remux::Remux;
use capbox::ts::packet::{pcr_delta, Packet, PCR_HZ};
use capbox::ts::pat::PatRepr;
use capbox::ts::pmt::PmtRepr;
use capbox::ts::sdt::SdtRepr;
use capbox::ts::section::{Assembler, Section};

fn sample() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/mux.ts")).expect("samples/mux.ts")
}

#[test]
fn psi_every_100ms_one_program_sdt_rewritten() {
    let mux = sample();
    for (program, pids) in [
        (1u16, vec![0x101u16, 0x102]),
        (2, vec![0x201, 0x202, 0x203]),
        (3, vec![0x301, 0x302]),
    ] {
        let mut r = Remux::new();
        let i = r.add_program(program);
        let mut out = Vec::new();
        let mut all = Vec::new();
        for c in mux.chunks(188 * 100) {
            r.push(c);
            r.program_mut(i).take_output(&mut out);
            all.extend_from_slice(&out);
        }
        let mut last_pcr = None;
        let mut last_pat_at: Option<u64> = None;
        let mut max_gap = 0u64;
        let mut pat_asm = Assembler::new();
        let mut sdt_asm = Assembler::new();
        let mut pmt_asm = Assembler::new();
        let mut pats = Vec::new();
        let mut sdts = Vec::new();
        let mut pmts = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for raw in all.chunks_exact(188) {
            let p = Packet::new_checked(raw).unwrap();
            seen.insert(p.pid());
            if let Some(pcr) = p.pcr() {
                last_pcr = Some(pcr);
            }
            match p.pid() {
                0 => {
                    if let Some(now) = last_pcr {
                        if let Some(prev) = last_pat_at {
                            max_gap = max_gap.max(pcr_delta(prev, now));
                        }
                        last_pat_at = Some(now);
                    }
                    pat_asm.push(&p, |s| {
                        pats.push(PatRepr::parse(&Section::new_verified(s).unwrap()).unwrap())
                    });
                }
                0x11 => sdt_asm.push(&p, |s| {
                    sdts.push(SdtRepr::parse(&Section::new_verified(s).unwrap()).unwrap())
                }),
                0x1000..=0x1002 => pmt_asm.push(&p, |s| {
                    pmts.push(PmtRepr::parse(&Section::new_verified(s).unwrap()).unwrap())
                }),
                _ => {}
            }
        }
        // PCR arrives every ~40 ms in the sample; a PAT is due each 100 ms,
        // so two PATs are never more than 100 ms + one PCR interval apart.
        assert!(
            max_gap <= PCR_HZ * 150 / 1000,
            "program {program}: PAT gap {} ms",
            max_gap * 1000 / PCR_HZ
        );
        assert!(
            pats.len() > 150,
            "program {program}: only {} PATs in 20 s",
            pats.len()
        );
        assert!(pats
            .iter()
            .all(|p| p.programs().count() == 1 && p.entries[0].program_number == program));
        assert!(pmts.iter().all(|p| p.program_number == program));
        assert!(!sdts.is_empty());
        assert!(sdts
            .iter()
            .all(|s| s.services.len() == 1 && s.services[0].service_id == program));
        let mut want: std::collections::BTreeSet<u16> = pids.into_iter().collect();
        want.extend([0u16, 0x11, 0x1000 + program - 1]);
        assert_eq!(seen, want, "program {program}: PIDs of the output");
    }
}
