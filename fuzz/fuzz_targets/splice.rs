//! remux::splice::Splicer on arbitrary packets from four sources, with
//! switches and clock steps chosen by the input. Each op is one control byte:
//! bits 0-1 the source, bits 2-3 what to do (push the next packet of the
//! input, switch_to, advance the clock by (byte >> 4) × 20 ms, tick). The
//! output must be whole valid packets on the PIDs of the plan only, and the
//! held packets bounded. First input byte: bit 0 fixes the CRC of sections
//! that start in a packet (so mutated PAT/PMT reach the parsers).
#![no_main]
use capbox::remux::splice::{SpliceConfig, Splicer, MAX_SOURCES, PCR_ONLY_PID, PMT_PID};
use capbox::ts::{Packet, PACKET_SIZE};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
#[path = "common/mod.rs"]
mod common;

fn in_plan(pid: u16) -> bool {
    pid == 0
        || pid == PMT_PID
        || pid == PCR_ONLY_PID
        || (0x0200..=0x0201).contains(&pid)
        || (0x0300..=0x030F).contains(&pid)
        || (0x0400..=0x0407).contains(&pid)
        || (0x0500..=0x0503).contains(&pid)
        || (0x0600..=0x0607).contains(&pid)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut sp = Splicer::new(SpliceConfig {
        rap_wait: Duration::from_millis(40 * (flags >> 4) as u64),
        ..SpliceConfig::default()
    });
    let t0 = Instant::now();
    let mut now = t0;
    let mut out = Vec::new();
    let mut pushed = 0u64;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let source = (op & 3) as usize;
        match (op >> 2) & 3 {
            0 => {
                let n = rest.len().min(PACKET_SIZE);
                let mut raw = [0xFFu8; PACKET_SIZE];
                raw[..n].copy_from_slice(&rest[..n]);
                rest = &rest[n..];
                raw[0] = 0x47;
                common::fix_first_crc(&mut raw, flags & 1 != 0);
                // Source 3 is pushed past the table, now and then.
                let s = if op & 0xF0 == 0xF0 { MAX_SOURCES } else { source };
                sp.push(s, &raw, now, &mut out);
                pushed += 1;
            }
            1 => {
                sp.switch_to(source, now);
            }
            2 => now += Duration::from_millis(20 * (op >> 4) as u64),
            _ => sp.tick(now, &mut out),
        }
        assert_eq!(out.len() % PACKET_SIZE, 0, "partial packet out");
        for p in out.chunks(PACKET_SIZE) {
            let p = Packet::new_checked(p).expect("splice output packet must be valid");
            assert!(in_plan(p.pid()), "pid {:#x} not in the plan", p.pid());
        }
        out.clear();
    }
    assert_eq!(sp.stats().packets_in, pushed);
    let _ = (sp.pid_plan(), sp.psi_packets(), sp.pmt_version(), sp.offset());
    let _ = (sp.active(), sp.pending());
});
