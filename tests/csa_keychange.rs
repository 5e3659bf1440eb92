//! Key changes through the channel descrambler (`capbox::ca::descrambler`)
//! on a stream capbox did not scramble: program 1 of samples/mux.ts (made by
//! ffmpeg), its ES packets scrambled by Debian's libdvbcsa (tests/c/csa_ref.c
//! run as a subprocess) with a new control word every crypto period and the
//! parity alternating, 100+ key changes.
//!
//! - words delivered in time (the answer to the ECM of period k, words k and
//!   k+1, in the middle of period k): the output equals the clear stream
//!   byte for byte, nothing counted undecryptable;
//! - answers arriving late (N scrambled packets after the parity switch):
//!   exactly those packets stay scrambled and are counted, and no output
//!   packet is garbled (each is the clear original or still scrambled with
//!   its scrambling bits set);
//! - late duplicates of old answers and stray words for the parity on air
//!   never replace the key in use.

mod c_helpers;
use capbox::ca::csa::Parity;
use capbox::ca::descrambler::{Descrambler, KeyPolicy};
use capbox::ca::slots::KeySlots;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TS: usize = 188;
const ES_PIDS: [u16; 2] = [0x101, 0x102];

fn helper() -> Option<PathBuf> {
    c_helpers::dvbcsa_helper("csa_ref")
}

/// Encrypt payloads with libdvbcsa (`dvbcsa_encrypt`), one cw each.
fn libdvbcsa_encrypt(records: &[([u8; 8], Vec<u8>)]) -> Vec<Vec<u8>> {
    let recs: Vec<(u8, [u8; 8], Vec<u8>)> = records
        .iter()
        .map(|(cw, d)| (b'e', *cw, d.clone()))
        .collect();
    c_helpers::csa_ref(&recs)
}

fn pid(p: &[u8]) -> u16 {
    ((p[1] as u16 & 0x1F) << 8) | p[2] as u16
}

/// Offset of the payload (after the adaptation field), if any.
fn payload_offset(p: &[u8]) -> Option<usize> {
    if p[3] & 0x10 == 0 {
        return None;
    }
    let off = if p[3] & 0x20 != 0 {
        5 + p[4] as usize
    } else {
        4
    };
    (off <= TS).then_some(off)
}

fn cw(period: usize) -> [u8; 8] {
    let mut c = [0u8; 8];
    for (i, b) in c.iter_mut().enumerate() {
        *b = (period as u8)
            .wrapping_mul(41)
            .wrapping_add(i as u8 * 29 + 5)
            ^ 0x5A;
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

struct Scrambled {
    clear: Vec<u8>,
    scrambled: Vec<u8>,
    /// Packet index (in the whole stream) of each scrambled packet.
    at: Vec<usize>,
    periods: usize,
    per: usize,
}

/// samples/mux.ts twice over, program 1's ES packets with a payload of 8
/// bytes or more scrambled in `periods` crypto periods of `per` packets.
fn scrambled_sample(periods: usize) -> Option<Scrambled> {
    helper()?;
    let one = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts"))
        .expect("samples/mux.ts");
    let clear = [&one[..], &one[..]].concat();
    let mut at = Vec::new();
    for (i, p) in clear.chunks_exact(TS).enumerate() {
        if ES_PIDS.contains(&pid(p)) && p[3] & 0xC0 == 0 {
            if let Some(off) = payload_offset(p) {
                if TS - off >= 8 {
                    at.push(i);
                }
            }
        }
    }
    let per = at.len() / periods;
    assert!(per >= 40, "only {} ES packets", at.len());
    at.truncate(per * periods);
    let records: Vec<([u8; 8], Vec<u8>)> = at
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let p = &clear[i * TS..(i + 1) * TS];
            (cw(n / per), p[payload_offset(p).unwrap()..].to_vec())
        })
        .collect();
    let enc = libdvbcsa_encrypt(&records);
    let mut scrambled = clear.clone();
    for (n, (&i, e)) in at.iter().zip(enc).enumerate() {
        let p = &mut scrambled[i * TS..(i + 1) * TS];
        let off = payload_offset(p).unwrap();
        assert_ne!(&p[off..], &e[..], "libdvbcsa left packet {i} as it was");
        p[off..].copy_from_slice(&e);
        p[3] = (p[3] & 0x3F) | (parity(n / per).scrambling_control() << 6);
    }
    Some(Scrambled {
        clear,
        scrambled,
        at,
        periods,
        per,
    })
}

/// The answer to the ECM of period k when it carries words a and b.
fn answer(slots: &KeySlots, a: usize, b: usize) {
    let (e, o) = match parity(a) {
        Parity::Even => (cw(a), cw(b)),
        Parity::Odd => (cw(b), cw(a)),
    };
    slots.set_pair(Some(e), Some(o));
}

/// Run the stream through a descrambler in uneven chunks (the clock moving
/// on), calling `event(i)` before packet i for each i in `events` (sorted).
fn run(
    s: &Scrambled,
    d: &mut Descrambler,
    events: &[usize],
    mut event: impl FnMut(usize),
) -> Vec<u8> {
    let n = s.scrambled.len() / TS;
    let mut now = Instant::now();
    let mut out = Vec::with_capacity(s.scrambled.len());
    let mut at = 0;
    let mut ev = events.iter().copied().peekable();
    let mut step = 0usize;
    while at < n {
        while ev.peek() == Some(&at) {
            event(at);
            ev.next();
        }
        step += 1;
        let mut len = 1 + (step * 37) % 61;
        if let Some(&e) = ev.peek() {
            len = len.min(e - at);
        }
        let len = len.min(n - at);
        let mut buf = s.scrambled[at * TS..(at + len) * TS].to_vec();
        d.process(&mut buf, now);
        out.extend_from_slice(&buf);
        at += len;
        now += Duration::from_micros(((step * 7919) % 3000) as u64);
    }
    d.flush(&mut out);
    out
}

/// Packets left scrambled; panics on a garbled one.
fn never_garbled(s: &Scrambled, out: &[u8]) -> usize {
    assert_eq!(out.len(), s.clear.len(), "bytes lost or added");
    let mut left = 0;
    for (i, (o, (c, x))) in out
        .chunks(TS)
        .zip(s.clear.chunks(TS).zip(s.scrambled.chunks(TS)))
        .enumerate()
    {
        if o == c {
            continue;
        }
        assert_eq!(o, x, "packet {i} (PID {:#x}) garbled", pid(c));
        assert_ne!(
            o[3] & 0xC0,
            0,
            "packet {i} not clear and not marked scrambled"
        );
        left += 1;
    }
    left
}

#[test]
fn words_in_time_give_the_clear_stream_over_100_key_changes() {
    let Some(s) = scrambled_sample(110) else {
        return;
    };
    let slots = Arc::new(KeySlots::new());
    answer(&slots, 0, 1);
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // The answer to ECM k in the middle of period k.
    let events: Vec<usize> = (1..s.periods)
        .map(|k| s.at[k * s.per + s.per / 2])
        .collect();
    let out = run(&s, &mut d, &events, |i| {
        let n = s.at.iter().position(|&x| x == i).unwrap();
        let k = n / s.per;
        answer(&slots, k, k + 1);
    });
    assert_eq!(never_garbled(&s, &out), 0);
    assert!(out == s.clear, "output differs from the clear stream");
    let st = d.stats();
    assert_eq!(st.undecryptable, 0, "{st:?}");
    assert_eq!(st.wrong_key, 0);
    assert_eq!(st.descrambled, s.at.len() as u64);
    assert_eq!(st.parity_switches, s.periods as u64 - 1, "{st:?}");
    assert!(st.key_changes > 100, "{st:?}");
}

#[test]
fn late_answers_are_counted_and_never_garbled() {
    let Some(s) = scrambled_sample(105) else {
        return;
    };
    let late = 7;
    let slots = Arc::new(KeySlots::new());
    slots.set(Parity::Even, cw(0));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // The answer carrying period k's word arrives after `late` scrambled
    // packets of period k.
    let events: Vec<usize> = (1..s.periods).map(|k| s.at[k * s.per + late]).collect();
    let out = run(&s, &mut d, &events, |i| {
        let n = s.at.iter().position(|&x| x == i).unwrap();
        let k = n / s.per;
        answer(&slots, k - 1, k);
    });
    let left = never_garbled(&s, &out);
    let st = d.stats();
    assert_eq!(left, late * (s.periods - 1), "{st:?}");
    // Period 1 is the first odd one: no word ever; later ones: late.
    assert_eq!(st.no_key, late as u64, "{st:?}");
    assert_eq!(st.stale_key, (late * (s.periods - 2)) as u64, "{st:?}");
    assert_eq!(st.wrong_key, 0, "{st:?}");
    assert_eq!(st.undecryptable, st.no_key + st.stale_key);
}

#[test]
fn late_duplicates_never_replace_the_key_on_air() {
    let Some(s) = scrambled_sample(102) else {
        return;
    };
    let slots = Arc::new(KeySlots::new());
    answer(&slots, 0, 1);
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    // Per period k: a late duplicate of the answer to ECM k-2 just after
    // the switch, a duplicate of ECM k-1's right after, then ECM k in time.
    let mut events = Vec::new();
    for k in 1..s.periods {
        events.push(s.at[k * s.per + 2]);
        events.push(s.at[k * s.per + 5]);
        events.push(s.at[k * s.per + s.per / 2]);
    }
    let out = run(&s, &mut d, &events, |i| {
        let n = s.at.iter().position(|&x| x == i).unwrap();
        let (k, r) = (n / s.per, n % s.per);
        match r {
            2 if k >= 2 => answer(&slots, k - 2, k - 1),
            5 => answer(&slots, k - 1, k),
            _ if r == s.per / 2 => answer(&slots, k, k + 1),
            _ => {}
        }
    });
    assert_eq!(never_garbled(&s, &out), 0);
    assert!(out == s.clear);
    let st = d.stats();
    assert_eq!(st.undecryptable, 0, "{st:?}");
    assert!(st.late_cw_refused >= s.periods as u64 - 2, "{st:?}");
}

/// Start-up on a CA system whose ECMs carry the previous word for the idle
/// parity: the first answer's odd word is an old one, and period 1's own
/// word comes late, while odd is on air. The wrong key is used only until
/// the first PES start it fails on after the right word arrived (then the
/// waiting word is taken at once), never for the rest of the period; from
/// period 2 on, late answers leave packets scrambled, never garbled.
#[test]
fn a_wrong_key_at_start_up_is_replaced_at_the_first_failing_pes_start() {
    let Some(s) = scrambled_sample(30) else {
        return;
    };
    let late = 7;
    let slots = Arc::new(KeySlots::new());
    slots.set_pair(Some(cw(0)), Some([0x5A; 8]));
    let mut d = Descrambler::new(slots.clone(), KeyPolicy::Rotating);
    let events: Vec<usize> = (1..s.periods).map(|k| s.at[k * s.per + late]).collect();
    let out = run(&s, &mut d, &events, |i| {
        let n = s.at.iter().position(|&x| x == i).unwrap();
        let k = n / s.per;
        answer(&slots, k - 1, k);
    });
    let st = d.stats();
    assert_eq!(st.cw_healed, 1, "{st:?}");
    let garbled: Vec<usize> = (0..s.at.len())
        .filter(|&n| {
            let i = s.at[n];
            let o = &out[i * TS..(i + 1) * TS];
            o != &s.clear[i * TS..(i + 1) * TS] && o != &s.scrambled[i * TS..(i + 1) * TS]
        })
        .collect();
    eprintln!(
        "garbled: {} of period 1's {} ES packets",
        garbled.len(),
        s.per
    );
    // Only in period 1, and not the whole of it.
    assert!(!garbled.is_empty());
    assert!(
        garbled.iter().all(|&n| n >= s.per && n < 2 * s.per),
        "garbled outside period 1: {garbled:?}"
    );
    assert!(garbled.len() < s.per / 2, "{} of {}", garbled.len(), s.per);
    let tail = s.at[2 * s.per] * TS;
    let rest = Scrambled {
        clear: s.clear[tail..].to_vec(),
        scrambled: s.scrambled[tail..].to_vec(),
        at: Vec::new(),
        periods: 0,
        per: 0,
    };
    never_garbled(&rest, &out[tail..]);
}
