// Compiled only under #[cfg(test)] (see the parent module).
#[cfg(test)]
use super::*;
use crate::ts::packet::write_header;
use crate::ts::section::{build_long_section, packetize};
use crate::ts::Packet;

const PMT_PID: u16 = 0x100;
const VIDEO: u16 = 0x101;
const AUDIO: u16 = 0x102;

fn pkt(pid: u16, pusi: bool, cc: u8, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; PACKET_SIZE];
    write_header(&mut p, pid, pusi, cc);
    p
}

/// PAT (program 1 → PMT_PID) and a PMT (video 0x1B on VIDEO, audio 0x0F on
/// AUDIO), each one packet, with the given CCs.
fn psi(pat_cc: u8, pmt_cc: u8) -> Vec<u8> {
    let pat = build_long_section(
        0x00,
        1,
        0,
        0,
        0,
        &[0, 1, 0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8],
    );
    let mut body = vec![0xE0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xF0, 0];
    body.extend_from_slice(&[0x1B, 0xE0 | (VIDEO >> 8) as u8, VIDEO as u8, 0xF0, 0]);
    body.extend_from_slice(&[0x0F, 0xE0 | (AUDIO >> 8) as u8, AUDIO as u8, 0xF0, 0]);
    let pmt = build_long_section(0x02, 1, 0, 0, 0, &body);
    let mut out = Vec::new();
    let mut cc = pat_cc;
    packetize(&pat, 0, &mut cc, &mut out);
    let mut cc = pmt_cc;
    packetize(&pmt, PMT_PID, &mut cc, &mut out);
    out
}

fn cfg(max_bytes: usize) -> RingConfig {
    RingConfig {
        max_bytes,
        chunk_bytes: 16 << 10,
        max_delay: Duration::from_millis(50),
    }
}

fn drain(r: &mut Reader) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match r.next() {
            Next::Data(p) => out.extend_from_slice(p.as_ref()),
            Next::Pending => return out,
            Next::Lagged { .. } => panic!("lagged"),
            Next::Closed => panic!("closed"),
        }
    }
}

fn packets(b: &[u8]) -> Vec<Packet<&[u8]>> {
    b.chunks_exact(PACKET_SIZE)
        .map(|p| Packet::new_checked(p).unwrap())
        .collect()
}

#[test]
fn memory_is_bounded_whatever_the_input() {
    let ring = Ring::new(cfg(256 << 10));
    let mut w = ring.writer();
    let _readers: Vec<Reader> = (0..50).map(|_| ring.subscribe(StartAt::Live)).collect();
    let p = pkt(VIDEO, false, 0, 0xAA);
    for i in 0..20_000 {
        w.push(&p, i % 500 == 0);
        let s = ring.snapshot();
        assert!(s.bytes_held <= 256 << 10, "held {} at {}", s.bytes_held, i);
    }
    let s = ring.snapshot();
    assert!(s.chunks_dropped_by_budget > 0);
    assert_eq!(s.packets_in, 20_000);
    assert_eq!(s.entry_points, 40);
    assert_eq!(s.clients_now, 50);
}

#[test]
fn chunks_cut_at_size_and_at_entry_points() {
    let ring = Ring::new(cfg(1 << 20));
    let mut w = ring.writer();
    let mut r = ring.subscribe(StartAt::Live);
    let p = pkt(VIDEO, false, 0, 1);
    // 100 packets = 18800 bytes > 16 KiB: one full chunk, rest pending.
    let many: Vec<u8> = p.iter().cycle().take(100 * PACKET_SIZE).copied().collect();
    w.push(&many, false);
    let Next::Data(Piece::Shared(c)) = r.next() else {
        panic!("expected a shared chunk")
    };
    assert!(c.data.len() >= 16 << 10 && c.data.len() % PACKET_SIZE == 0);
    assert!(!c.entry_point);
    assert!(matches!(r.next(), Next::Pending));
    // An entry point cuts the chunk being filled and starts a new one.
    w.push(&pkt(VIDEO, true, 1, 2), true);
    let Next::Data(Piece::Shared(c2)) = r.next() else {
        panic!("expected the cut remainder")
    };
    assert_eq!(c.data.len() + c2.data.len(), 100 * PACKET_SIZE);
    assert!(!c2.entry_point);
    w.flush();
    let Next::Data(Piece::Shared(c3)) = r.next() else {
        panic!()
    };
    assert!(c3.entry_point);
    assert_eq!(c3.data[4], 2);
}

#[test]
fn time_flush_publishes_small_chunks() {
    let ring = Ring::new(cfg(1 << 20));
    let mut w = ring.writer();
    let mut r = ring.subscribe(StartAt::Live);
    let t0 = Instant::now();
    w.push(&pkt(AUDIO, true, 0, 3), false);
    w.flush_if_older(t0, Duration::from_millis(50));
    assert!(matches!(r.next(), Next::Pending), "flushed too early");
    w.flush_if_older(t0 + Duration::from_secs(1), Duration::from_millis(50));
    match r.next() {
        Next::Data(p) => assert_eq!(p.as_ref().len(), PACKET_SIZE),
        other => panic!("{other:?}"),
    }
    // An empty writer has nothing to flush.
    w.flush_if_older(t0 + Duration::from_secs(2), Duration::ZERO);
    assert!(matches!(r.next(), Next::Pending));
    assert_eq!(ring.snapshot().chunks, 1);
}

#[test]
fn notifier_fires_on_publish() {
    let ring = Ring::new(cfg(1 << 20));
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let id = ring.add_notify(Box::new(move || {
        n2.fetch_add(1, Relaxed);
    }));
    let mut w = ring.writer();
    w.push(&pkt(AUDIO, true, 0, 3), false);
    assert_eq!(n.load(Relaxed), 0);
    w.flush();
    assert_eq!(n.load(Relaxed), 1);
    ring.remove_notify(id);
    w.push(&pkt(AUDIO, true, 1, 3), false);
    w.flush();
    assert_eq!(n.load(Relaxed), 1);
}

#[test]
fn lagging_reader_is_cut_and_counted_others_unaffected() {
    let ring = Ring::new(cfg(64 << 10));
    let mut w = ring.writer();
    let mut slow = ring.subscribe(StartAt::Live);
    let mut fast = ring.subscribe(StartAt::Live);
    let mut got = Vec::new();
    let mut sent = Vec::new();
    for i in 0..2000u32 {
        let mut p = pkt(VIDEO, false, (i & 15) as u8, 0);
        p[4..8].copy_from_slice(&i.to_be_bytes());
        sent.extend_from_slice(&p);
        w.push(&p, false);
        if i % 50 == 0 {
            got.extend(drain(&mut fast));
        }
    }
    w.flush();
    got.extend(drain(&mut fast));
    assert_eq!(got, sent, "the fast reader lost nothing");
    match slow.next() {
        Next::Lagged { behind_bytes } => assert_eq!(behind_bytes, sent.len() as u64),
        other => panic!("slow reader not cut: {other:?}"),
    }
    assert!(matches!(slow.next(), Next::Lagged { .. }));
    let s = ring.snapshot();
    assert_eq!(s.clients_cut_lagging, 1, "counted once");
    drop(slow);
    assert_eq!(ring.snapshot().clients_now, 1);
}

/// A GOP-like stream: entry-point video packet, then audio continuing a PES
/// begun before, then PAT/PMT repetition, then audio PES start.
fn push_gop(w: &mut ChunkWriter, cc: &mut [u8; 4]) {
    let mut next = |i: usize| {
        let c = cc[i];
        cc[i] = (c + 1) & 15;
        c
    };
    w.push(&pkt(VIDEO, true, next(0), 0x10), true);
    w.push(&pkt(AUDIO, false, next(1), 0x20), false); // mid-PES: must be dropped
    w.push(&pkt(VIDEO, false, next(0), 0x11), false);
    let p = psi(next(2), next(3));
    w.push(&p, false);
    w.push(&pkt(AUDIO, true, next(1), 0x21), false); // PES start: kept
    w.push(&pkt(VIDEO, false, next(0), 0x12), false);
}

#[test]
fn joining_client_gets_psi_with_matching_cc_then_filtered_start() {
    let ring = Ring::new(cfg(1 << 20));
    let mut w = ring.writer();
    let mut cc = [0u8, 5, 9, 14];
    for _ in 0..3 {
        push_gop(&mut w, &mut cc);
    }
    ring.set_psi(psi(0, 0));
    w.flush();
    let before = cc;
    push_gop(&mut w, &mut cc);
    w.flush();

    let mut r = ring.subscribe(StartAt::LatestEntryPoint);
    let out = drain(&mut r);
    let ps = packets(&out);
    // PAT, PMT prefix, CC one less than the PAT/PMT of the same PID that follows.
    assert_eq!(ps[0].pid(), 0);
    assert_eq!(ps[1].pid(), PMT_PID);
    assert_eq!(ps[0].continuity_counter(), before[2].wrapping_sub(1) & 15);
    assert_eq!(ps[1].continuity_counter(), before[3].wrapping_sub(1) & 15);
    // Then the entry point, the mid-PES audio packet skipped.
    assert_eq!(ps[2].pid(), VIDEO);
    assert!(ps[2].payload_unit_start());
    let pids: Vec<u16> = ps[2..].iter().map(|p| p.pid()).collect();
    assert_eq!(pids, vec![VIDEO, VIDEO, 0, PMT_PID, AUDIO, VIDEO]);
    assert!(ps[6].payload_unit_start());
    // No CC error for any PID across prefix and stream.
    let mut last: std::collections::HashMap<u16, u8> = Default::default();
    for p in &ps {
        if p.pid() == VIDEO || p.pid() == AUDIO {
            if let Some(l) = last.get(&p.pid()) {
                assert_eq!(p.continuity_counter(), (l + 1) & 15, "pid {}", p.pid());
            }
        } else if let Some(l) = last.get(&p.pid()) {
            assert_eq!(p.continuity_counter(), (l + 1) & 15, "psi pid {}", p.pid());
        }
        last.insert(p.pid(), p.continuity_counter());
    }
    assert_eq!(ring.snapshot().packets_skipped_at_start, 1);
}

#[test]
fn multi_packet_psi_counts_back() {
    // Two PMT packets in the prefix: they get next-2, next-1.
    let mut prefix = psi(3, 3);
    let mut extra = pkt(PMT_PID, false, 0, 0xFF);
    extra[4] = 0xFF;
    prefix.extend_from_slice(&extra);
    let ring = Ring::new(cfg(1 << 20));
    ring.set_psi(prefix);
    let mut w = ring.writer();
    w.push(&pkt(VIDEO, true, 0, 0), true);
    w.push(&psi(7, 1), false);
    w.flush();
    let mut r = ring.subscribe(StartAt::LatestEntryPoint);
    let ps_bytes = drain(&mut r);
    let ps = packets(&ps_bytes);
    let ccs: Vec<(u16, u8)> = ps
        .iter()
        .map(|p| (p.pid(), p.continuity_counter()))
        .collect();
    assert_eq!(&ccs[..3], &[(0, 6), (PMT_PID, 15), (PMT_PID, 0)]);
}

#[test]
fn prefix_waits_for_psi_in_stream() {
    let ring = Ring::new(cfg(1 << 20));
    ring.set_psi(psi(0, 0));
    let mut w = ring.writer();
    w.push(&pkt(VIDEO, true, 0, 0), true);
    w.flush();
    let mut r = ring.subscribe(StartAt::LatestEntryPoint);
    assert!(matches!(r.next(), Next::Pending), "PAT not seen yet");
    w.push(&psi(4, 8), false);
    w.flush();
    let out = drain(&mut r);
    let ps = packets(&out);
    assert_eq!((ps[0].pid(), ps[0].continuity_counter()), (0, 3));
    assert_eq!((ps[1].pid(), ps[1].continuity_counter()), (PMT_PID, 7));
    assert_eq!(ps[2].pid(), VIDEO);
    assert_eq!(ps.len(), 5);
}

#[test]
fn without_entry_point_start_at_newest_chunk_filtered() {
    let ring = Ring::new(cfg(1 << 20));
    let mut w = ring.writer();
    w.push(&pkt(VIDEO, false, 0, 0), false);
    w.flush();
    w.push(&pkt(VIDEO, false, 1, 0), false); // mid-PES video: dropped
    w.push(&pkt(AUDIO, true, 0, 0), false);
    w.push(&pkt(VIDEO, true, 2, 0), false);
    w.push(&pkt(0, true, 0, 0), false);
    w.flush();
    let mut r = ring.subscribe(StartAt::LatestEntryPoint);
    let out = drain(&mut r);
    let pids: Vec<(u16, u8)> = packets(&out)
        .iter()
        .map(|p| (p.pid(), p.continuity_counter()))
        .collect();
    assert_eq!(pids, vec![(AUDIO, 0), (VIDEO, 2), (0, 0)]);
    // After all seen PIDs and PAT started, filtering is over: the next
    // chunk is handed out shared, as is.
    w.push(&pkt(VIDEO, false, 3, 0), false);
    w.flush();
    assert!(matches!(r.next(), Next::Data(Piece::Shared(_))));
}

#[test]
fn partial_packets_are_dropped_and_counted() {
    let ring = Ring::new(cfg(1 << 20));
    let mut w = ring.writer();
    let mut b = pkt(VIDEO, false, 0, 0);
    b.extend_from_slice(&[0x47, 1, 2]);
    w.push(&b, false);
    w.flush();
    let s = ring.snapshot();
    assert_eq!(s.bytes_dropped_partial, 3);
    assert_eq!(s.bytes_in, 188);
}

/// A closed ring (its channel removed by a reload): a reader gets what was
/// published, then `Closed`; a waiting reader is woken to see it; one still
/// waiting for its PSI prefix ends too.
#[test]
fn closed_ring_ends_every_reader_after_its_data() {
    let ring = Ring::new(cfg(1 << 20));
    let woken = Arc::new(AtomicU64::new(0));
    let w2 = woken.clone();
    ring.add_notify(Box::new(move || {
        w2.fetch_add(1, Relaxed);
    }));
    let mut live = ring.subscribe(StartAt::Live);
    // No PSI in the ring: this one waits for its prefix.
    ring.set_psi(psi(0, 0));
    let mut joining = ring.subscribe(StartAt::LatestEntryPoint);
    let mut w = ring.writer();
    let data: Vec<u8> = (0..100u8)
        .flat_map(|i| pkt(VIDEO, false, i & 15, i))
        .collect();
    w.push(&data, false);
    w.flush();
    assert!(matches!(joining.next(), Next::Pending));
    let before = woken.load(Relaxed);
    ring.close();
    assert_eq!(woken.load(Relaxed), before + 1, "close wakes the readers");
    ring.close();
    assert_eq!(woken.load(Relaxed), before + 1, "once");
    let mut got = Vec::new();
    loop {
        match live.next() {
            Next::Data(p) => got.extend_from_slice(p.as_ref()),
            Next::Closed => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, data, "everything published, then Closed");
    assert!(matches!(live.next(), Next::Closed));
    assert!(matches!(joining.next(), Next::Closed));
    assert!(ring.is_closed());
}
