//! Writing crafted streams for the attack families: our own packetizer
//! (ISO/IEC 13818-1 §2.4.4.2, pointer_field 0, 0xFF stuffing), independent
//! of capbox's `ts::section::packetize`.

use crate::e2e_common::TS;

/// `section` as transport packets on `pid`; `cc` is the PID's continuity
/// counter, advanced per packet.
pub fn packetize(section: &[u8], pid: u16, cc: &mut u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        let mut p = vec![0xFFu8; TS];
        p[0] = 0x47;
        p[1] = ((first as u8) << 6) | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | (*cc & 0x0F);
        *cc = cc.wrapping_add(1) & 0x0F;
        let mut at = 4;
        if first {
            p[4] = 0;
            at = 5;
        }
        let n = rest.len().min(TS - at);
        p[at..at + n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        out.extend_from_slice(&p);
        first = false;
    }
    out
}

/// CPU seconds (utime + stime, 100 ticks a second) of a process, or of
/// one of its threads with `tid`.
pub fn cpu_seconds(pid: u32, tid: Option<u32>) -> f64 {
    let path = match tid {
        Some(t) => format!("/proc/{pid}/task/{t}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rest = &s[s.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Resident set size of a process in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The thread of `pid` whose name starts with `prefix` (e.g. "mux main").
pub fn thread_named(pid: u32, prefix: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with(prefix).then_some(tid)
        })
}
