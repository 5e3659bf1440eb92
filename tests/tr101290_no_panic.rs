//! TR 101 290 on hostile input: random bytes, random packets on random
//! PIDs with random flags, PATs naming thousands of programs and PMTs
//! naming every PID, cut at every size and fed times that jump back and
//! forth: never a panic, and what the analyser holds stays bounded.

use capbox::monitor::tr101290::{Config, Tr101290, INDICATORS, MAX_PROGRAMS};
use capbox::ts::pat::{PatEntry, PatRepr};
use capbox::ts::pmt::{PmtRepr, PmtStream};
use capbox::ts::section::packetize;

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn check_bounds(a: &Tr101290) {
    let (slots, asms, programs, carry) = a.footprint();
    assert!(slots <= 8193, "{slots} PID slots");
    assert!(asms <= 255, "{asms} assemblers");
    assert!(programs <= MAX_PROGRAMS, "{programs} programs");
    assert!(carry <= 16 * 188, "carry {carry} bytes");
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for cfg in [Config::mux(true), Config::channel()] {
        let mut a = Tr101290::new(cfg);
        let mut now = 0u64;
        for _ in 0..2000 {
            let n = r.below(3000) as usize;
            let buf: Vec<u8> = (0..n)
                .map(|_| {
                    // Mostly sync bytes where a packet would start, so the
                    // analyser locks and reads garbage packets too.
                    if r.below(4) == 0 {
                        0x47
                    } else {
                        r.next() as u8
                    }
                })
                .collect();
            now = match r.below(10) {
                0 => now.saturating_sub(r.below(5000)),
                1 => now + r.below(100_000),
                _ => now + r.below(50),
            };
            a.push_bytes(&buf, now);
            a.push_packets(&buf, now);
            a.tick(now + r.below(1000));
        }
        check_bounds(&a);
        let s = a.snapshot(now);
        let _ = s.summary();
        let _ = s.to_json();
    }
}

#[test]
fn random_packets_and_hostile_tables_never_panic() {
    let mut r = Rng(42);
    let mut a = Tr101290::new(Config::mux(true));
    let mut now = 0u64;
    let mut ccs = [0u8; 8192];
    for round in 0..300 {
        let mut buf = Vec::new();
        // A PAT naming many programs on random PMT PIDs.
        let entries: Vec<PatEntry> = (0..(r.below(1200) as u16))
            .map(|k| PatEntry {
                program_number: k,
                pid: r.below(0x2000) as u16,
            })
            .collect();
        let mut pat = PatRepr {
            transport_stream_id: 1,
            version: (round % 32) as u8,
            section_number: 0,
            last_section_number: r.below(3) as u8,
            entries,
        }
        .emit();
        pat.truncate(pat.len().min(1021));
        packetize(&pat, 0, &mut ccs[0], &mut buf);
        // PMTs naming every PID.
        for _ in 0..5 {
            let pmt_pid = r.below(0x2000) as u16;
            let streams = (0..r.below(300))
                .map(|_| PmtStream {
                    stream_type: r.below(256) as u8,
                    elementary_pid: r.below(0x2000) as u16,
                    descriptors: vec![],
                })
                .collect();
            let mut pmt = PmtRepr {
                program_number: r.below(1200) as u16,
                version: 0,
                pcr_pid: r.below(0x2000) as u16,
                program_info: vec![],
                streams,
            }
            .emit();
            pmt.truncate(pmt.len().min(1021));
            packetize(&pmt, pmt_pid, &mut ccs[pmt_pid as usize], &mut buf);
        }
        // Random packets with a valid sync byte and random everything else.
        for _ in 0..200 {
            let mut p = [0u8; 188];
            for b in p.iter_mut() {
                *b = r.next() as u8;
            }
            p[0] = 0x47;
            if r.below(2) == 0 {
                // A plausible adaptation field with a PCR.
                p[3] = (p[3] & 0xCF) | 0x30;
                p[4] = 7 + r.below(170) as u8;
                p[5] = 0x10 | (p[5] & 0x80);
            }
            buf.extend_from_slice(&p);
        }
        now += r.below(200);
        for c in buf.chunks(1 + r.below(4000) as usize) {
            a.push_bytes(c, now);
        }
        check_bounds(&a);
    }
    let s = a.snapshot(now);
    assert!(INDICATORS.iter().any(|i| s.get(*i).errors > 0));
    assert!(a.packets() > 60_000, "{}", a.packets());
}
