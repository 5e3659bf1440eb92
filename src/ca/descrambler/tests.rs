//! Unit tests of the key timing and batching rules. The scrambled streams
//! here are made with capbox's own scalar CSA (checked against libdvbcsa in
//! tests/csa_libdvbcsa.rs); tests/csa_keychange.rs repeats the key-change
//! runs on a stream scrambled by libdvbcsa.

use super::*;
use crate::ca::csa::scramble_packet;
use crate::ts::packet::write_header;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cw(period: usize) -> [u8; 8] {
    let mut c = [0u8; 8];
    for (i, b) in c.iter_mut().enumerate() {
        *b = (period as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8 * 17 + 3);
    }
    c
}

fn parity(period: usize) -> Parity {
    if period.is_multiple_of(2) {
        Parity::Even
    } else {
        Parity::Odd
    }
}

/// `periods` crypto periods of `per` packets on two PIDs (video 0x100 and
/// audio 0x101 interleaved), a PES start every 8 packets of a PID.
/// Returns the clear stream and the scrambled one.
fn stream(periods: usize, per: usize) -> (Vec<u8>, Vec<u8>) {
    let mut clear = Vec::new();
    let mut scrambled = Vec::new();
    let mut cc = [0u8; 2];
    for k in 0..periods {
        let keys = Keys::new(cw(k), cw(k));
        for i in 0..per {
            let which = i % 2;
            let pid = 0x100 + which as u16;
            let pusi = cc[which] % 8 == 0;
            let mut p = [0u8; PACKET_SIZE];
            for (j, b) in p.iter_mut().enumerate() {
                *b = (j as u8).wrapping_mul(7) ^ (i as u8) ^ (k as u8).wrapping_mul(13);
            }
            write_header(&mut p, pid, pusi, cc[which]);
            cc[which] = cc[which].wrapping_add(1);
            if pusi {
                p[4..10].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0]);
                p[10] = 0x80; // PES_scrambling_control 00
            }
            clear.extend_from_slice(&p);
            assert_eq!(scramble_packet(&mut p, &keys, parity(k)), Outcome::Done);
            scrambled.extend_from_slice(&p);
        }
    }
    (clear, scrambled)
}

fn t0() -> Instant {
    Instant::now()
}

/// Feed `input` in random chunks (time moving 1 ms per call), calling
/// `event(packet_index)` before each packet index the caller cares about
/// (delivered at a chunk boundary). Returns everything released.
fn run(
    d: &mut Descrambler,
    input: &[u8],
    seed: u64,
    mut event: impl FnMut(usize),
    events_at: &[usize],
) -> Vec<u8> {
    let mut rng = Rng(seed);
    let start = t0();
    let mut now = start;
    let mut out = Vec::new();
    let n = input.len() / PACKET_SIZE;
    let mut at = 0;
    let mut ev = events_at.iter().copied().peekable();
    while at < n {
        while ev.peek() == Some(&at) {
            event(at);
            ev.next();
        }
        let mut len = 1 + rng.below(40) as usize;
        if let Some(&e) = ev.peek() {
            len = len.min(e - at);
        }
        let len = len.min(n - at);
        let mut buf = input[at * PACKET_SIZE..(at + len) * PACKET_SIZE].to_vec();
        d.process(&mut buf, now);
        out.extend_from_slice(&buf);
        at += len;
        now += Duration::from_millis(rng.below(3));
        if rng.below(5) == 0 {
            // An idle tick.
            let mut empty = Vec::new();
            d.process(&mut empty, now);
            out.extend_from_slice(&empty);
        }
    }
    d.flush(&mut out);
    out
}

/// Every output packet is the clear one or still the scrambled one (TSC
/// set): never garbled. Returns how many were left scrambled.
fn no_garbage(out: &[u8], clear: &[u8], scrambled: &[u8]) -> usize {
    let g = garbled(out, clear, scrambled);
    assert!(g.is_empty(), "packets {g:?} garbled");
    let mut left = 0;
    for (i, (o, c)) in out
        .chunks(PACKET_SIZE)
        .zip(clear.chunks(PACKET_SIZE))
        .enumerate()
    {
        if o != c {
            assert_ne!(o[3] & 0xC0, 0, "packet {i} unscrambled bits but not clear");
            left += 1;
        }
    }
    left
}

/// Indices of the packets of `out` that are neither the clear packet nor
/// the scrambled one: descrambled with a wrong key.
fn garbled(out: &[u8], clear: &[u8], scrambled: &[u8]) -> Vec<usize> {
    assert_eq!(out.len(), clear.len(), "bytes lost or added");
    out.chunks(PACKET_SIZE)
        .zip(clear.chunks(PACKET_SIZE))
        .zip(scrambled.chunks(PACKET_SIZE))
        .enumerate()
        .filter(|(_, ((o, c), s))| o != c && o != s)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn key_changes_in_time_give_the_clear_stream() {
    let (periods, per) = (120, 60);
    let (clear, scrambled) = stream(periods, per);
    let slots = Arc::new(KeySlots::new());
    // The first answer before any packet: words of period 0 and 1.
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // The answer to the ECM of period k (words k and k+1) arrives in the
    // middle of period k.
    let events: Vec<usize> = (1..periods).map(|k| k * per + per / 2).collect();
    let s2 = slots.clone();
    let out = run(
        &mut d,
        &scrambled,
        7,
        |at| {
            let k = at / per;
            let (e, o) = match parity(k) {
                Parity::Even => (cw(k), cw(k + 1)),
                Parity::Odd => (cw(k + 1), cw(k)),
            };
            s2.set_pair(Some(e), Some(o));
        },
        &events,
    );
    assert_eq!(no_garbage(&out, &clear, &scrambled), 0);
    assert!(out == clear);
    let st = d.stats();
    assert_eq!(st.undecryptable, 0, "{st:?}");
    assert_eq!(st.descrambled, (periods * per) as u64);
    assert_eq!(st.parity_switches, periods as u64 - 1);
    assert!(st.key_changes >= periods as u64, "{st:?}");
    assert!(st.batches > 0 && st.fill_ratio > 0.0 && st.fill_ratio <= 1.0);
    assert_eq!(st.held_packets, 0);
}

#[test]
fn late_answers_leave_packets_scrambled_never_garbled() {
    let (periods, per, late) = (110, 60, 9);
    let (clear, scrambled) = stream(periods, per);
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), None);
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // The words of period k (k >= 1) arrive `late` packets after it began.
    let events: Vec<usize> = (1..periods).map(|k| k * per + late).collect();
    let s2 = slots.clone();
    let out = run(
        &mut d,
        &scrambled,
        11,
        |at| {
            let k = at / per;
            // The (late) answer carries the previous word and this one.
            let (e, o) = match parity(k) {
                Parity::Even => (cw(k), cw(k - 1)),
                Parity::Odd => (cw(k - 1), cw(k)),
            };
            s2.set_pair(Some(e), Some(o));
        },
        &events,
    );
    let left = no_garbage(&out, &clear, &scrambled);
    let st = d.stats();
    assert_eq!(left, late * (periods - 1), "{st:?}");
    // Period 1 is the first odd one: its slot never had a word.
    assert_eq!(st.no_key, late as u64, "{st:?}");
    assert_eq!(st.stale_key, (late * (periods - 2)) as u64, "{st:?}");
    assert_eq!(st.wrong_key, 0);
    assert_eq!(st.undecryptable, st.stale_key + st.no_key);
}

#[test]
fn late_duplicates_and_stray_words_never_replace_the_key_on_air() {
    let (periods, per) = (104, 64);
    let (clear, scrambled) = stream(periods, per);
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // Per period k >= 1: just after the switch, a late duplicate of the
    // answer to ECM k-2 (words k-2 and k-1); then a stray word for the
    // parity on air; then, in time, the answer to ECM k.
    let mut events = Vec::new();
    for k in 1..periods {
        events.extend([k * per + 3, k * per + 20, k * per + 40]);
    }
    let s2 = slots.clone();
    let out = run(
        &mut d,
        &scrambled,
        13,
        |at| {
            let k = at / per;
            let pair = |a: usize, b: usize| match parity(a) {
                Parity::Even => (cw(a), cw(b)),
                Parity::Odd => (cw(b), cw(a)),
            };
            match at % per {
                3 if k >= 2 => {
                    let (e, o) = pair(k - 2, k - 1);
                    s2.set_pair(Some(e), Some(o));
                }
                20 => s2.set(parity(k), [0xEE, k as u8, 1, 2, 3, 4, 5, 6]),
                40 => {
                    let (e, o) = pair(k, k + 1);
                    s2.set_pair(Some(e), Some(o));
                }
                _ => {}
            }
        },
        &events,
    );
    assert_eq!(no_garbage(&out, &clear, &scrambled), 0);
    assert!(out == clear);
    let st = d.stats();
    assert_eq!(st.undecryptable, 0, "{st:?}");
    assert!(st.late_cw_refused >= periods as u64 - 2, "{st:?}");
    assert!(st.cw_deferred >= periods as u64 - 1, "{st:?}");
}

#[test]
fn no_word_yet_and_cleared_slots_leave_packets_scrambled() {
    let (clear, scrambled) = stream(2, 40);
    let slots = Arc::new(KeySlots::new());
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    let half = 40 * PACKET_SIZE;
    let mut buf = scrambled[..half].to_vec();
    let now = t0();
    d.process(&mut buf, now);
    d.flush(&mut buf);
    assert_eq!(buf, &scrambled[..half]);
    assert_eq!(d.stats().no_key, 40);
    assert_eq!(d.stats().undecryptable, 40);
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    slots.clear();
    let mut buf = scrambled[half..].to_vec();
    d.process(&mut buf, now);
    d.flush(&mut buf);
    assert_eq!(buf, &scrambled[half..]);
    assert_eq!(d.stats().no_key, 80);
    let _ = clear;
}

#[test]
fn partial_batch_waits_at_most_the_time_bound() {
    // A low-rate service: one scrambled packet now and then.
    let (clear, scrambled) = stream(1, 6);
    let slots = Arc::new(KeySlots::fixed(cw(0)));
    let mut d = Descrambler::new(slots, KeyPolicy::Fixed);
    let t = t0();
    let p = |i: usize| scrambled[i * PACKET_SIZE..(i + 1) * PACKET_SIZE].to_vec();
    let c = |i: usize| clear[i * PACKET_SIZE..(i + 1) * PACKET_SIZE].to_vec();
    let mut buf = p(0);
    d.process(&mut buf, t);
    assert!(buf.is_empty(), "a lone packet waits for company");
    assert_eq!(d.held_packets(), 1);
    let mut buf = p(1);
    d.process(&mut buf, t + Duration::from_millis(4));
    assert!(buf.is_empty());
    let mut buf = Vec::new();
    d.process(&mut buf, t + Duration::from_millis(9));
    assert!(buf.is_empty(), "9 ms < 10 ms");
    let mut buf = Vec::new();
    d.process(&mut buf, t + Duration::from_millis(10));
    assert_eq!(
        buf,
        [c(0), c(1)].concat(),
        "released at the bound, in order"
    );
    assert_eq!(d.stats().time_flushes, 1);
    assert_eq!(d.held_packets(), 0);

    // A configured bound.
    let mut d = Descrambler::new(Arc::new(KeySlots::fixed(cw(0))), KeyPolicy::Fixed)
        .with_batch_timeout(Duration::from_millis(2));
    let mut buf = p(2);
    d.process(&mut buf, t);
    assert!(buf.is_empty());
    let mut buf = p(3);
    d.process(&mut buf, t + Duration::from_millis(2));
    assert_eq!(buf, [c(2), c(3)].concat());
}

#[test]
fn clear_packets_behind_a_held_one_keep_their_place() {
    let (clear, scrambled) = stream(1, 4);
    let mut d = Descrambler::new(Arc::new(KeySlots::fixed(cw(0))), KeyPolicy::Fixed);
    let t = t0();
    let mut null = [0xFFu8; PACKET_SIZE];
    write_header(&mut null, 0x1FFF, false, 0);
    // clear, scrambled, clear, scrambled
    let mut buf = [
        &null[..],
        &scrambled[..PACKET_SIZE],
        &null[..],
        &scrambled[PACKET_SIZE..2 * PACKET_SIZE],
    ]
    .concat();
    d.process(&mut buf, t);
    assert_eq!(buf, null, "only what is before the first held packet");
    let mut buf = Vec::new();
    d.process(&mut buf, t + Duration::from_millis(20));
    assert_eq!(
        buf,
        [
            &clear[..PACKET_SIZE],
            &null[..],
            &clear[PACKET_SIZE..2 * PACKET_SIZE]
        ]
        .concat()
    );
}

#[test]
fn held_packets_are_bounded() {
    let (_, scrambled) = stream(1, 1);
    let mut d = Descrambler::new(Arc::new(KeySlots::fixed(cw(0))), KeyPolicy::Fixed);
    let mut null = [0xFFu8; PACKET_SIZE];
    write_header(&mut null, 0x1FFF, false, 0);
    let mut buf = scrambled.clone();
    for _ in 0..3 * MAX_HELD_PACKETS {
        buf.extend_from_slice(&null);
    }
    let total = buf.len();
    let t = t0();
    d.process(&mut buf, t);
    assert!(d.held_packets() <= MAX_HELD_PACKETS);
    let mut rest = Vec::new();
    d.flush(&mut rest);
    assert_eq!(buf.len() + rest.len(), total);
}

#[test]
fn full_batches_and_wrong_key() {
    let (clear, scrambled) = stream(1, 3 * BATCH_SIZE + 5);
    let mut d = Descrambler::new(Arc::new(KeySlots::fixed(cw(0))), KeyPolicy::Fixed);
    let mut buf = scrambled.clone();
    d.process(&mut buf, t0());
    assert_eq!(
        buf.len(),
        3 * BATCH_SIZE * PACKET_SIZE,
        "full batches go at once"
    );
    d.flush(&mut buf);
    assert!(buf == clear);
    let st = d.stats();
    assert_eq!(st.batches, 4);
    assert_eq!(st.packets_in_batches, (3 * BATCH_SIZE + 5) as u64);

    let mut d = Descrambler::new(Arc::new(KeySlots::fixed(cw(1))), KeyPolicy::Fixed);
    let mut buf = scrambled.clone();
    d.process(&mut buf, t0());
    d.flush(&mut buf);
    let starts = clear
        .chunks(PACKET_SIZE)
        .filter(|p| p[1] & 0x40 != 0)
        .count() as u64;
    assert!(starts > 0);
    assert_eq!(d.stats().wrong_key, starts);
}

#[test]
fn garbage_bytes_never_panic() {
    let mut rng = Rng(99);
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    let t = t0();
    let mut total_in = 0;
    let mut total_out = 0;
    for round in 0..200 {
        let len = rng.below(6 * PACKET_SIZE as u64) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for p in buf.chunks_mut(PACKET_SIZE) {
            if rng.below(2) == 0 {
                p[0] = 0x47;
            }
        }
        total_in += buf.len();
        if round % 17 == 0 {
            slots.set(parity(round), cw(round));
        }
        d.process(&mut buf, t + Duration::from_millis(round as u64));
        total_out += buf.len();
    }
    let mut rest = Vec::new();
    d.flush(&mut rest);
    assert_eq!(total_in, total_out + rest.len());
}

/// One packet of `pid` scrambled with period `k`'s word; PES start each.
fn one(pid: u16, k: usize, cc: u8) -> (Vec<u8>, Vec<u8>) {
    let mut p = [0x5Au8; PACKET_SIZE];
    write_header(&mut p, pid, true, cc);
    p[4..11].copy_from_slice(&[0, 0, 1, 0xC0, 0, 0, 0x80]);
    p[20] = k as u8;
    let clear = p.to_vec();
    scramble_packet(&mut p, &Keys::new(cw(k), cw(k)), parity(k));
    (clear, p.to_vec())
}

#[test]
fn stragglers_and_silent_pids() {
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // Packets (pid, period, cc) through `d` at once: all must come out clear.
    let step = |d: &mut Descrambler, pkts: &[(u16, usize, u8)]| {
        let (mut clear, mut input) = (Vec::new(), Vec::new());
        for &(pid, k, cc) in pkts {
            let (c, s) = one(pid, k, cc);
            clear.extend(c);
            input.extend(s);
        }
        let mut out = input;
        d.process(&mut out, t0());
        d.flush(&mut out);
        assert!(out == clear, "{pkts:?}: {:?}", d.stats());
    };
    // Period 0 on A and B; A switches to 1 first, B's last period-0
    // packets come after (stragglers), then B switches too.
    step(
        &mut d,
        &[
            (0x100, 0, 0),
            (0x101, 0, 0),
            (0x100, 1, 1),
            (0x101, 0, 1),
            (0x101, 0, 2),
            (0x101, 1, 3),
        ],
    );
    // The word of period 2 in time; B is silent in period 2 and speaks
    // again in period 3 (same parity as its last packet, a new period).
    slots.set_pair(Some(cw(2)), Some(cw(1)));
    step(&mut d, &[(0x100, 2, 2), (0x100, 2, 3)]);
    slots.set_pair(Some(cw(2)), Some(cw(3)));
    step(&mut d, &[(0x100, 3, 4), (0x101, 3, 4)]);
    assert_eq!(d.stats().undecryptable, 0);
}

/// A CA system whose ECM carries the previous word for the idle parity,
/// capbox starting mid-period: the first answer's odd word is an old one
/// (not a word of this stream), so period 1 starts with a wrong key, and
/// period 1's own word arrives late, while odd is on air. The deferred
/// word must be taken at the first PES start the old key fails on, not at
/// the end of period 1; everything after is as with late answers.
#[test]
fn a_wrong_key_on_air_is_replaced_by_the_deferred_word_that_opens_the_packet() {
    let (periods, per, late) = (40, 64, 9);
    let (clear, scrambled) = stream(periods, per);
    let old_odd = [0x5Au8; 8];
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some(old_odd));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    let events: Vec<usize> = (1..periods).map(|k| k * per + late).collect();
    let s2 = slots.clone();
    let out = run(
        &mut d,
        &scrambled,
        23,
        |at| {
            let k = at / per;
            let (e, o) = match parity(k) {
                Parity::Even => (cw(k), cw(k - 1)),
                Parity::Odd => (cw(k - 1), cw(k)),
            };
            s2.set_pair(Some(e), Some(o));
        },
        &events,
    );
    let st = d.stats();
    assert_eq!(st.cw_healed, 1, "{st:?}");
    let garbled = garbled(&out, &clear, &scrambled);
    // Garbled: only period 1 before its word was taken: from its start to
    // the next PES start of each PID after the late answer (a PES start
    // every 8 packets of a PID, two PIDs interleaved: within 16 packets).
    assert!(!garbled.is_empty(), "the old word was never used?");
    assert!(
        garbled.iter().all(|&i| i >= per && i < per + late + 16),
        "garbled outside the start of period 1: {garbled:?}"
    );
    // Without the heal the whole of period 1 would be garbled.
    assert!(garbled.len() < per / 2, "{garbled:?}");
    // Period 1's packets after the heal are clear.
    for i in per + late + 16..2 * per {
        assert!(
            out[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]
                == clear[i * PACKET_SIZE..(i + 1) * PACKET_SIZE],
            "packet {i}"
        );
    }
    assert!(st.wrong_key >= 1, "{st:?}");
    // From period 2 on: late answers, left scrambled, never garbled.
    let tail = 2 * per * PACKET_SIZE;
    no_garbage(&out[tail..], &clear[tail..], &scrambled[tail..]);
}

/// The heal never fires when the key on air is right: a stray word for the
/// parity on air stays deferred.
#[test]
fn the_heal_needs_both_trial_decryptions_to_agree() {
    let (periods, per) = (12, 64);
    let (clear, scrambled) = stream(periods, per);
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some(cw(1)));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // In the middle of each period, a stray word for the parity on air
    // (deferred): the key on air is right, so it must wait.
    let events: Vec<usize> = (0..periods).map(|k| k * per + per / 4).collect();
    let s2 = slots.clone();
    let out = run(
        &mut d,
        &scrambled,
        5,
        |at| {
            let k = at / per;
            let stray = [0xC3u8; 8];
            let (e, o) = match parity(k) {
                Parity::Even => (stray, cw(k + 1)),
                Parity::Odd => (cw(k + 1), stray),
            };
            s2.set_pair(Some(e), Some(o));
        },
        &events,
    );
    let st = d.stats();
    assert_eq!(st.cw_healed, 0, "{st:?}");
    assert!(st.cw_deferred > 0, "{st:?}");
    assert!(out == clear, "{st:?}");
}
