//! capbox's DVB-CSA against Debian's libdvbcsa (tests/c/csa_ref.c, run as a
//! subprocess): every payload length, random keys and packets, both
//! directions, and the batch engine (each SIMD variant this CPU has) equal
//! to the scalar reference and to libdvbcsa.

mod c_helpers;
use capbox::ca::csa::{
    descramble_packet, scramble_packet, Batch, KeySchedule, Keys, Outcome, Parity, Pushed, Simd,
};
use std::path::PathBuf;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }
    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

fn helper() -> Option<PathBuf> {
    c_helpers::dvbcsa_helper("csa_ref")
}

/// Run records (op, cw, payload) through libdvbcsa; returns the payloads.
fn libdvbcsa(records: &[(u8, [u8; 8], Vec<u8>)]) -> Vec<Vec<u8>> {
    c_helpers::csa_ref(records)
}

/// A clear packet whose payload is `len` bytes (an adaptation field fills
/// the rest when len < 184).
fn packet(rng: &mut Rng, len: usize) -> [u8; 188] {
    let mut p = [0u8; 188];
    rng.fill(&mut p);
    p[0] = 0x47;
    p[1] &= 0x1f; // no transport error, no PUSI (no PES header check)
    let afc = if len == 184 { 0x10 } else { 0x30 };
    p[3] = afc | (p[3] & 0x0f);
    if len < 184 {
        p[4] = (183 - len) as u8;
        if p[4] > 0 {
            p[5] = 0; // adaptation flags: none
        }
    }
    p
}

#[test]
fn capbox_scrambles_libdvbcsa_descrambles_every_length() {
    if helper().is_none() {
        return;
    }
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut recs = Vec::new();
    let mut clear = Vec::new();
    for len in 0..=184usize {
        for _ in 0..4 {
            let cw: [u8; 8] = rng.bytes();
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            clear.push(data.clone());
            KeySchedule::new(cw).encrypt_payload(&mut data);
            recs.push((b'd', cw, data));
        }
    }
    let out = libdvbcsa(&recs);
    for (i, (o, c)) in out.iter().zip(&clear).enumerate() {
        assert_eq!(o, c, "record {i}, len {}", c.len());
    }
}

#[test]
fn libdvbcsa_scrambles_capbox_descrambles_every_length() {
    if helper().is_none() {
        return;
    }
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    let mut recs = Vec::new();
    for len in 0..=184usize {
        for _ in 0..4 {
            let cw: [u8; 8] = rng.bytes();
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            recs.push((b'e', cw, data));
        }
    }
    let scrambled = libdvbcsa(&recs);
    for ((_, cw, clear), s) in recs.iter().zip(&scrambled) {
        if clear.len() >= 8 {
            assert_ne!(s, clear, "libdvbcsa left len {} clear", clear.len());
        }
        let mut d = s.clone();
        KeySchedule::new(*cw).decrypt_payload(&mut d);
        assert_eq!(&d, clear, "len {}", clear.len());
    }
}

/// Whole packets: libdvbcsa scrambles the payload after the adaptation
/// field; capbox's packet API (scalar) and batch (each SIMD variant)
/// descramble, clear the scrambling bits, and leave header and adaptation
/// field alone.
#[test]
fn packets_with_adaptation_fields_scalar_and_batch() {
    if helper().is_none() {
        return;
    }
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let even: [u8; 8] = rng.bytes();
    let odd: [u8; 8] = rng.bytes();
    let keys = Keys::new(even, odd);
    let mut clear = Vec::new();
    let mut recs = Vec::new();
    // Every payload length, three times, in a shuffled order with random
    // parities, plus a run of full packets.
    let mut lens: Vec<usize> = (0..=184).chain(0..=184).chain(0..=184).collect();
    lens.extend(std::iter::repeat_n(184, 300));
    for i in (1..lens.len()).rev() {
        lens.swap(i, rng.next() as usize % (i + 1));
    }
    let mut parities = Vec::new();
    for &len in &lens {
        let p = packet(&mut rng, len);
        let parity = if rng.next() & 1 == 0 {
            Parity::Even
        } else {
            Parity::Odd
        };
        let cw = if parity == Parity::Even { even } else { odd };
        clear.push(p);
        parities.push(parity);
        recs.push((b'e', cw, p[188 - len..].to_vec()));
    }
    let payloads = libdvbcsa(&recs);
    let scrambled: Vec<[u8; 188]> = clear
        .iter()
        .zip(&payloads)
        .zip(&parities)
        .map(|((c, pl), par)| {
            let mut s = *c;
            s[188 - pl.len()..].copy_from_slice(pl);
            s[3] |= par.scrambling_control() << 6;
            s
        })
        .collect();
    // capbox's own scrambler gives the same bytes.
    for ((c, s), par) in clear.iter().zip(&scrambled).zip(&parities) {
        let mut mine = *c;
        let o = scramble_packet(&mut mine, &keys, *par);
        assert_eq!(o, Outcome::Done);
        assert_eq!(&mine, s);
    }
    // Scalar.
    for (c, s) in clear.iter().zip(&scrambled) {
        let mut d = *s;
        assert_eq!(descramble_packet(&mut d, &keys), Outcome::Done);
        assert_eq!(&d, c);
    }
    // Batch, every variant this CPU has (AVX-512 too where the host has it;
    // tests/csa_avx512_bochs.rs runs them in an emulated Ice Lake elsewhere).
    for simd in [
        Simd::Portable,
        Simd::Sse2,
        Simd::Avx2,
        Simd::Avx512,
        Simd::Avx512Vbmi,
    ] {
        if !simd.available() {
            eprintln!("SKIPPED variant {simd:?}: not on this CPU");
            continue;
        }
        let mut bufs = scrambled.clone();
        {
            let mut batch = Batch::with_simd(simd);
            assert_eq!(batch.simd(), simd);
            for b in bufs.iter_mut() {
                match batch.push(b, &keys) {
                    Pushed::Queued | Pushed::Finished(Outcome::Done) => {}
                    other => panic!("{other:?}"),
                }
            }
            batch.flush();
            assert_eq!(batch.counters().descrambled, clear.len() as u64);
        }
        for (i, (d, c)) in bufs.iter().zip(&clear).enumerate() {
            assert_eq!(d, c, "{simd:?}: packet {i}, payload {}", lens[i]);
        }
    }
}

/// libdvbcsa's own batch decryptor agrees (one packet per batch) with its
/// single-packet one on capbox-scrambled data: a check of the helper.
#[test]
fn libdvbcsa_batch_agrees_on_capbox_scrambled_data() {
    if helper().is_none() {
        return;
    }
    let mut rng = Rng(42);
    let mut recs = Vec::new();
    let mut clear = Vec::new();
    for len in (8..=184).step_by(7) {
        let cw: [u8; 8] = rng.bytes();
        let mut d = vec![0u8; len];
        rng.fill(&mut d);
        clear.push(d.clone());
        KeySchedule::new(cw).encrypt_payload(&mut d);
        recs.push((b'b', cw, d));
    }
    for (o, c) in libdvbcsa(&recs).iter().zip(&clear) {
        assert_eq!(o, c);
    }
}

#[test]
fn batch_splits_per_keys_and_counts() {
    let k1 = Keys::new([1; 8], [2; 8]);
    let mut k2 = Keys::default();
    k2.set(Parity::Even, [3; 8]);
    let mut rng = Rng(7);
    let mut a = packet(&mut rng, 184);
    let mut b = packet(&mut rng, 184);
    let mut c = packet(&mut rng, 184);
    scramble_packet(&mut a, &k1, Parity::Odd);
    scramble_packet(&mut b, &k2, Parity::Even);
    let mut c_odd = c;
    c_odd[3] |= 0xC0; // odd, but k2 has no odd key
    let mut batch = Batch::new();
    assert!(matches!(batch.push(&mut a, &k1), Pushed::Queued));
    let Pushed::OtherKeys(b) = batch.push(&mut b, &k2) else {
        panic!("other keys not refused")
    };
    assert_eq!(batch.flush(), 1);
    assert!(matches!(batch.push(b, &k2), Pushed::Queued));
    assert!(matches!(
        batch.push(&mut c_odd, &k2),
        Pushed::Finished(Outcome::NoKey)
    ));
    assert!(matches!(
        batch.push(&mut c, &k2),
        Pushed::Finished(Outcome::Clear)
    ));
    batch.flush();
    let n = batch.counters();
    assert_eq!((n.descrambled, n.no_key, n.clear), (2, 1, 1));
}
