//! The stream analysers of src/monitor on arbitrary packets with a clock
//! the input moves (steps of 0 ms to days, never back):
//! - `Tr101290` as a mux runner drives it (`push_packets_between` from the
//!   previous read's time, `push_bytes`, `tick`, `sync_lost`,
//!   `input_discontinuity`, `set_passed_pids`);
//! - two more fed the same aligned packets at one instant, one through
//!   `push_packets_between(now, now)` (its fast path by runs), one through
//!   `push_packets` (per packet): the fast path promises to do what
//!   `packet` does, so their snapshots must be equal;
//! - `ChannelMonitor` (`feed`, `update`: the channel verdict);
//! - `Probe` (the per-PID `PidAnalyser`s, PSI, its own TR 101 290) on the
//!   same bytes, then its report.
//! Counters stay consistent: no per-packet error counted more often than
//! packets seen, every packet counted once, memory bounds hold.
//!
//! Input: 1 config byte (PCR accuracy, priority 3), then records of an op
//! byte (bits 0-1 mode, 2-4 packets - 1, 5-7 clock step unit) and a step
//! byte, then the packets (mode 3: no packets, the step byte's low bits
//! pick tick / sync_lost / input_discontinuity / passed PIDs).
#![no_main]
use capbox::monitor::channel::{ChannelMonitor, MonitorSettings, MAX_STREAMS};
use capbox::monitor::probe::Probe;
use capbox::monitor::tr101290::{Config, Indicator, Tr101290, MAX_PROGRAMS};
use libfuzzer_sys::fuzz_target;

/// A monotonic ms clock never gets near this (≈ 2230 years).
const MAX_MS: u64 = 1 << 46;
const UNITS: [u64; 8] = [0, 1, 10, 100, 1000, 60_000, 3_600_000, 86_400_000];

fn check_tr(t: &Tr101290, slots: u64, what: &str) {
    let p = t.packets();
    assert!(p <= slots, "{what}: {p} packets of {slots} slots");
    for i in [Indicator::ContinuityCountError, Indicator::TransportError] {
        let e = t.get(i).errors;
        assert!(e <= p, "{what}: {} {e} > packets {p}", i.id());
    }
    let (s, a, progs, carry) = t.footprint();
    assert!(
        s <= 8193 && a <= 255 && progs <= MAX_PROGRAMS,
        "{what}: footprint {:?}",
        t.footprint()
    );
    // The carry holds at most 6 packets' worth; its capacity (what this
    // reports) may double once past a fresh allocation.
    assert!(carry <= 16 * 188, "{what}: carry {carry}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg_b, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = Config {
        pcr_accuracy: cfg_b & 1 != 0,
        si: cfg_b & 2 != 0,
        ..Config::default()
    };
    let mut s = Tr101290::new(cfg);
    let mut a = Tr101290::new(cfg);
    let mut r = Tr101290::new(cfg);
    let start = (cfg_b >> 2) as u64 * 1000;
    let mut m = ChannelMonitor::new(MonitorSettings::default(), start);
    let mut probe = Probe::new();
    let (mut now, mut prev) = (start, start);
    let (mut s_aligned, mut s_bytes, mut ar_slots, mut sync_lost) = (0u64, 0u64, 0u64, 0u64);

    while rest.len() >= 2 {
        let (op, b) = (rest[0], rest[1]);
        rest = &rest[2..];
        now = now
            .saturating_add(UNITS[(op >> 5) as usize] * b as u64)
            .min(MAX_MS);
        let mode = op & 3;
        if mode == 3 {
            match b & 3 {
                0 => s.tick(now),
                1 => {
                    s.sync_lost(now);
                    sync_lost += 1;
                }
                2 => s.input_discontinuity(),
                _ => {
                    let pids: Vec<u16> = rest
                        .chunks(2)
                        .take(4)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    s.set_passed_pids((b & 4 != 0).then_some(&pids[..]));
                }
            }
            a.tick(now);
            r.tick(now);
            m.update(now, b & 8 != 0);
            prev = now;
            continue;
        }
        let n = ((op >> 2 & 7) as usize + 1) * 188;
        let chunk = &rest[..n.min(rest.len())];
        rest = &rest[chunk.len()..];
        let aligned = &chunk[..chunk.len() / 188 * 188];

        match mode {
            2 => s.push_bytes(chunk, now),
            _ => s.push_packets_between(aligned, prev, now),
        }
        if mode == 2 {
            s_bytes += chunk.len() as u64;
        } else {
            s_aligned += aligned.len() as u64 / 188;
        }
        // Slots the mux analyser could have framed so far.
        let s_slots = s_aligned + s_bytes / 188;
        a.push_packets_between(aligned, now, now);
        r.push_packets(aligned, now);
        ar_slots += aligned.len() as u64 / 188;
        m.feed(now, aligned);
        probe.push_bytes(chunk);
        prev = now;

        check_tr(&s, s_slots, "mux");
        check_tr(&a, ar_slots, "fast path");
        let sa = a.snapshot(now);
        let sr = r.snapshot(now);
        assert_eq!(
            sa, sr,
            "push_packets_between(now, now) and push_packets disagree"
        );
        assert_eq!(a.now_ms(), r.now_ms());
        let sb = s.get(Indicator::SyncByteError).errors;
        assert!(
            sb <= s_slots + sync_lost,
            "sync_byte_error {sb} of {s_slots} slots"
        );
    }
    let _ = (s.snapshot(now).to_json(), s.snapshot(now).summary());

    m.update(now.saturating_add(250), false);
    let st = m.status();
    if std::env::var_os("FZ_DEBUG").is_some() {
        eprintln!(
            "{:?} {} es, {:?}; mux {:?}",
            st.verdict,
            st.es.len(),
            st.counters,
            s.snapshot(now).summary()
        );
    }
    let c = st.counters;
    assert_eq!(c.packets, ar_slots, "channel monitor packets");
    for (name, v) in [
        ("bad_sync", c.bad_sync),
        ("bad_adaptation", c.bad_adaptation),
        ("bad_pes", c.bad_pes),
    ] {
        assert!(v <= c.packets, "{name} {v} of {} packets", c.packets);
    }
    assert!(c.bad_sync + c.bad_adaptation <= c.packets);
    assert!(st.es.len() <= MAX_STREAMS);
    let scrambled: u64 = st.es.iter().map(|e| e.scrambled_packets).sum();
    assert!(
        scrambled <= c.packets,
        "scrambled {scrambled} of {}",
        c.packets
    );
    let elapsed = now.saturating_add(250).saturating_sub(start) as f64 / 1000.0;
    let secs: f64 = st.seconds.iter().sum();
    assert!(
        st.seconds.iter().all(|s| s.is_finite() && *s >= 0.0),
        "{:?}",
        st.seconds
    );
    assert!(
        secs <= elapsed + 0.001,
        "{secs} s of verdicts in {elapsed} s"
    );

    if let Ok(rep) = probe.finish("fuzz") {
        let sum: u64 = rep.pids.iter().map(|p| p.packets).sum();
        assert_eq!(sum, rep.packets, "per-PID packets");
        for p in &rep.pids {
            assert!(
                p.cc_errors + p.transport_errors <= p.packets,
                "PID {}: {p:?}",
                p.pid
            );
            assert!(p.scrambled_packets <= p.packets, "PID {}: {p:?}", p.pid);
        }
        if let Some(d) = rep.duration_s {
            assert!(d.is_finite() && d >= 0.0, "duration {d}");
        }
        let _ = serde_json::to_string(&rep);
    }
});
