//! The batch engine: up to `BATCH_SIZE` packets descrambled together.
//!
//! Layout: payloads are first copied into a byte-sliced scratch
//! (`ct[position][lane]`), so byte `position` of every packet sits in one
//! contiguous row. The stream cipher runs bitsliced (one bit of every lane
//! in each bit of a `Word`; byte rows ↔ bit planes by an 8×8 bit transpose
//! per byte, three delta swaps), the block cipher runs byte-sliced (one
//! table load per lane and round through the S-box with the round key
//! folded in, the rest vector XORs the compiler widens to the SIMD width),
//! and the results are copied back. Lanes of one run share a key schedule;
//! `flush` runs the even-key and the odd-key lanes separately.
//!
//! SIMD is chosen at run time (`Simd::detect`): AVX-512 (256 lanes per
//! run, with or without VBMI), AVX2 (256), SSE2 (128), portable u64 (64).
//! Everything is one generic code path over `Word`; each phase of a run
//! (gather, stream cipher, block cipher, scatter: `Phases`) is compiled
//! once per SIMD word as a function with that word's target features.

use super::{plan, Counters, KeySchedule, Keys, Outcome, Parity, Plan};

/// Packets per batch (the largest run width, AVX2's 256 lanes).
pub const BATCH_SIZE: usize = 256;
const MAX_PAYLOAD: usize = 184;
/// Byte rows in the scratch: the payload plus one zero block after it.
const ROWS: usize = MAX_PAYLOAD + 8;

/// A bit-plane word: `LANES` lanes, one bit each.
pub trait Word: Copy {
    const LANES: usize;
    fn zero() -> Self;
    fn ones() -> Self;
    fn and(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    /// `self & !o`
    fn andnot(self, o: Self) -> Self;
    fn not(self) -> Self;
    /// Load `LANES / 8` bytes.
    fn load(b: &[u8]) -> Self;
    fn store(self, b: &mut [u8]);
    /// A word of `LANES / 64` 64-bit elements from the first ones of `v`.
    fn from_u64s(v: [u64; 4]) -> Self;
    /// Delta swap between `a` and `b` inside each 64-bit segment:
    /// `t = ((a >> s) ^ b) & m; b ^= t; a ^= t << s`.
    fn delta_swap<const S: i32>(a: &mut Self, b: &mut Self, m: u64);
    /// One block-cipher round's S-box over `lanes` bytes:
    /// `out[l] = keyed[x[l]]` where `keyed` is the S-box with round key `k`
    /// folded in (`keyed[x] = BLOCK_SBOX[x ^ k]`). Scalar table loads
    /// unless a SIMD word does better.
    #[inline(always)]
    fn block_sbox(keyed: &[u8; 256], _k: u8, x: &[u8], out: &mut [u8]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = keyed[x as usize];
        }
    }

    /// One deciphering round over byte rows; `at` = rows of (R7, R8, R2,
    /// R3, R4, R6). S = S-box(R7 ^ k); R8 ^= S; R2, R3, R4 ^= R8;
    /// R6 ^= perm(S).
    #[inline(always)]
    fn block_round(
        r: &mut [[u8; BATCH_SIZE]; 8],
        sb: &mut [u8; BATCH_SIZE],
        keyed: &[u8; 256],
        _tel: &[[u8; 16]; 16],
        k: u8,
        at: [usize; 6],
        lanes: usize,
    ) {
        let [i7, i8, i2, i3, i4, i6] = at;
        Self::block_sbox(keyed, k, &r[i7][..lanes], &mut sb[..lanes]);
        let Ok([r8, r2, r3, r4, r6]) = r.get_disjoint_mut([i8, i2, i3, i4, i6]) else {
            return; // the indices are distinct by construction
        };
        let rows = r8[..lanes]
            .iter_mut()
            .zip(&mut r2[..lanes])
            .zip(&mut r3[..lanes])
            .zip(&mut r4[..lanes])
            .zip(&mut r6[..lanes])
            .zip(&sb[..lanes]);
        for (((((r8, r2), r3), r4), r6), &s) in rows {
            let t = *r8 ^ s;
            *r8 = t;
            *r2 ^= t;
            *r3 ^= t;
            *r4 ^= t;
            *r6 ^= super::tables::block_perm(s);
        }
    }
}

/// The block S-box as telescoped 16-byte rows for `vpshufb`: for x < 0x80
/// the XOR of rows 0..=x>>4 of `LO` is `BLOCK_SBOX[x]`; `HI` likewise for
/// x ≥ 0x80 on x & 0x7f.
const fn telescoped(half: usize) -> [[u8; 16]; 8] {
    let t = &super::tables::BLOCK_SBOX;
    let mut out = [[0u8; 16]; 8];
    let mut h = 0;
    while h < 8 {
        let mut i = 0;
        while i < 16 {
            let cur = t[half * 128 + 16 * h + i];
            out[h][i] = if h == 0 {
                cur
            } else {
                cur ^ t[half * 128 + 16 * (h - 1) + i]
            };
            i += 1;
        }
        h += 1;
    }
    out
}
/// A 256-byte table as 16 telescoped rows for `vpshufb`: for x < 0x80
/// the XOR of rows 0..=x>>4 at x & 15 is `t[x]`; rows 8.. likewise for
/// x ≥ 0x80 (rows 8..=8 + (x & 0x7f) >> 4).
pub(super) fn telescope(t: &[u8; 256]) -> [[u8; 16]; 16] {
    let mut out = [[0u8; 16]; 16];
    for (r, row) in out.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = t[16 * r + i];
            if r % 8 != 0 {
                *v ^= t[16 * (r - 1) + i];
            }
        }
    }
    out
}

#[allow(dead_code)]
const SBOX_LO: [[u8; 16]; 8] = telescoped(0);
#[allow(dead_code)]
const SBOX_HI: [[u8; 16]; 8] = telescoped(1);
/// perm(x) = PERM_LO[x & 15] | PERM_HI[x >> 4].
#[allow(dead_code)]
const PERM_LO: [u8; 16] = {
    let mut o = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        o[i] = super::tables::block_perm(i as u8);
        i += 1;
    }
    o
};
#[allow(dead_code)]
const PERM_HI: [u8; 16] = {
    let mut o = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        o[i] = super::tables::block_perm((i as u8) << 4);
        i += 1;
    }
    o
};

impl Word for u64 {
    const LANES: usize = 64;
    #[inline(always)]
    fn zero() -> Self {
        0
    }
    #[inline(always)]
    fn ones() -> Self {
        !0
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self & o
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self | o
    }
    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        self ^ o
    }
    #[inline(always)]
    fn andnot(self, o: Self) -> Self {
        self & !o
    }
    #[inline(always)]
    fn not(self) -> Self {
        !self
    }
    #[inline(always)]
    fn load(b: &[u8]) -> Self {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_le_bytes(a)
    }
    #[inline(always)]
    fn store(self, b: &mut [u8]) {
        b[..8].copy_from_slice(&self.to_le_bytes());
    }
    #[inline(always)]
    fn from_u64s(v: [u64; 4]) -> Self {
        v[0]
    }
    #[inline(always)]
    fn delta_swap<const S: i32>(a: &mut Self, b: &mut Self, m: u64) {
        let t = ((*a >> S) ^ *b) & m;
        *b ^= t;
        *a ^= t << S;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lane, Run, Scratch, Word, BATCH_SIZE, MAX_PAYLOAD, ROWS};
    use std::arch::x86_64::*;

    /// 128 lanes in an SSE2 register. SSE2 is part of the x86_64 baseline,
    /// so these intrinsics are always available on this architecture.
    #[derive(Clone, Copy)]
    pub struct Sse2(__m128i);

    impl Word for Sse2 {
        const LANES: usize = 128;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_setzero_si128() })
        }
        #[inline(always)]
        fn ones() -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_set1_epi32(-1) })
        }
        #[inline(always)]
        fn and(self, o: Self) -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_and_si128(self.0, o.0) })
        }
        #[inline(always)]
        fn or(self, o: Self) -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_or_si128(self.0, o.0) })
        }
        #[inline(always)]
        fn xor(self, o: Self) -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_xor_si128(self.0, o.0) })
        }
        #[inline(always)]
        fn andnot(self, o: Self) -> Self {
            // SAFETY: SSE2 is baseline on x86_64 (andnot computes !o & self).
            Sse2(unsafe { _mm_andnot_si128(o.0, self.0) })
        }
        #[inline(always)]
        fn not(self) -> Self {
            self.xor(Self::ones())
        }
        #[inline(always)]
        fn load(b: &[u8]) -> Self {
            let b = &b[..16];
            // SAFETY: SSE2 is baseline; `b` has 16 bytes (checked by the
            // slice above) and loadu has no alignment requirement.
            Sse2(unsafe { _mm_loadu_si128(b.as_ptr() as *const __m128i) })
        }
        #[inline(always)]
        fn store(self, b: &mut [u8]) {
            let b = &mut b[..16];
            // SAFETY: SSE2 is baseline; `b` has 16 writable bytes.
            unsafe { _mm_storeu_si128(b.as_mut_ptr() as *mut __m128i, self.0) }
        }
        #[inline(always)]
        fn from_u64s(v: [u64; 4]) -> Self {
            // SAFETY: SSE2 is baseline on x86_64.
            Sse2(unsafe { _mm_set_epi64x(v[1] as i64, v[0] as i64) })
        }
        #[inline(always)]
        fn delta_swap<const S: i32>(a: &mut Self, b: &mut Self, m: u64) {
            // SAFETY: SSE2 is baseline on x86_64.
            unsafe {
                let m = _mm_set1_epi64x(m as i64);
                let t = _mm_and_si128(_mm_xor_si128(_mm_srli_epi64::<S>(a.0), b.0), m);
                b.0 = _mm_xor_si128(b.0, t);
                a.0 = _mm_xor_si128(a.0, _mm_slli_epi64::<S>(t));
            }
        }
    }

    /// 256 lanes in an AVX2 register. Only created inside
    /// `run_avx2`, which is only called when the CPU reports AVX2.
    #[derive(Clone, Copy)]
    pub struct Avx2(__m256i);

    impl Word for Avx2 {
        const LANES: usize = 256;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_setzero_si256() })
        }
        #[inline(always)]
        fn ones() -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_set1_epi32(-1) })
        }
        #[inline(always)]
        fn and(self, o: Self) -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_and_si256(self.0, o.0) })
        }
        #[inline(always)]
        fn or(self, o: Self) -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_or_si256(self.0, o.0) })
        }
        #[inline(always)]
        fn xor(self, o: Self) -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_xor_si256(self.0, o.0) })
        }
        #[inline(always)]
        fn andnot(self, o: Self) -> Self {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_andnot_si256(o.0, self.0) })
        }
        #[inline(always)]
        fn not(self) -> Self {
            self.xor(Self::ones())
        }
        #[inline(always)]
        fn load(b: &[u8]) -> Self {
            let b = &b[..32];
            // SAFETY: AVX2 checked at run time; `b` has 32 bytes; unaligned
            // load.
            Avx2(unsafe { _mm256_loadu_si256(b.as_ptr() as *const __m256i) })
        }
        #[inline(always)]
        fn store(self, b: &mut [u8]) {
            let b = &mut b[..32];
            // SAFETY: AVX2 checked at run time; `b` has 32 writable bytes.
            unsafe { _mm256_storeu_si256(b.as_mut_ptr() as *mut __m256i, self.0) }
        }
        #[inline(always)]
        fn from_u64s(v: [u64; 4]) -> Self {
            let [a, b, c, d] = v.map(|x| x as i64);
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            Avx2(unsafe { _mm256_setr_epi64x(a, b, c, d) })
        }
        #[inline(always)]
        fn delta_swap<const S: i32>(a: &mut Self, b: &mut Self, m: u64) {
            // SAFETY: AVX2 checked at run time before any Avx2 value exists.
            unsafe {
                let m = _mm256_set1_epi64x(m as i64);
                let t = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi64::<S>(a.0), b.0), m);
                b.0 = _mm256_xor_si256(b.0, t);
                a.0 = _mm256_xor_si256(a.0, _mm256_slli_epi64::<S>(t));
            }
        }
        /// 16 `vpshufb` lookups, one per high nibble: an index whose high
        /// nibble is not h gets bit 7 set by the saturating add and reads 0.
        #[inline(always)]
        fn block_sbox(_keyed: &[u8; 256], k: u8, x: &[u8], out: &mut [u8]) {
            let t = &super::super::tables::BLOCK_SBOX;
            // SAFETY: AVX2 checked at run time before any Avx2 value exists;
            // every load/store below is of 32 bytes inside `x`/`out`/`t`
            // (chunks_exact and the 16-byte table rows).
            unsafe {
                let key = _mm256_set1_epi8(k as i8);
                let bias = _mm256_set1_epi8(0x70);
                let rows: [__m256i; 16] = std::array::from_fn(|h| {
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(
                        t[16 * h..16 * h + 16].as_ptr() as *const __m128i
                    ))
                });
                for (o, x) in out.chunks_exact_mut(32).zip(x.chunks_exact(32)) {
                    let v = _mm256_xor_si256(_mm256_loadu_si256(x.as_ptr() as *const __m256i), key);
                    let mut acc = _mm256_setzero_si256();
                    for (h, row) in rows.iter().enumerate() {
                        let sel = _mm256_adds_epu8(
                            _mm256_xor_si256(v, _mm256_set1_epi8(((h as u8) << 4) as i8)),
                            bias,
                        );
                        acc = _mm256_xor_si256(acc, _mm256_shuffle_epi8(*row, sel));
                    }
                    _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, acc);
                }
            }
        }

        /// The whole round in registers, 64 lanes (two words) per loop
        /// iteration: the S-box by the round's telescoped `vpshufb` rows
        /// with the key folded in (`tel`; index minus 16·h has bit 7 set
        /// once h passes the high nibble), each row loaded once for both
        /// words, the two halves picked by bit 7, the permutation by two
        /// nibble lookups.
        #[inline(always)]
        fn block_round(
            r: &mut [[u8; super::BATCH_SIZE]; 8],
            _sb: &mut [u8; super::BATCH_SIZE],
            _keyed: &[u8; 256],
            tel: &[[u8; 16]; 16],
            _k: u8,
            at: [usize; 6],
            lanes: usize,
        ) {
            const G: usize = 2;
            let [i7, i8, i2, i3, i4, i6] = at;
            let lanes = lanes.min(super::BATCH_SIZE) / (32 * G) * (32 * G);
            let bcast = |t: &[u8; 16]| {
                // SAFETY: AVX2 checked at run time; 16-byte load of `t`.
                unsafe {
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr() as *const __m128i))
                }
            };
            let base = r.as_mut_ptr() as *mut u8;
            let row = |i: usize, l: usize| {
                // In bounds: i < 8 and l + 32 <= BATCH_SIZE.
                base.wrapping_add(i * super::BATCH_SIZE + l) as *mut __m256i
            };
            // SAFETY: AVX2 checked at run time before any Avx2 value exists;
            // every pointer from `row` addresses 32 bytes inside `r` (row
            // index < 8, lane offset + 32 <= BATCH_SIZE), and `r` is borrowed
            // mutably for the whole loop.
            unsafe {
                // Opaque constants: LLVM otherwise folds the chain of
                // subtractions into `sel + -16·h`, each constant a
                // `vpbroadcastb` from memory (a shuffle µop on the port
                // the lookups need), and rematerialises the masks the
                // same way.
                use std::hint::black_box;
                let m7f = black_box(_mm256_set1_epi8(0x7f));
                let m0f = black_box(_mm256_set1_epi8(0x0f));
                let sixteen = black_box(_mm256_set1_epi8(16));
                let z = _mm256_setzero_si256();
                let mut l = 0;
                while l < lanes {
                    let mut sp = [(z, z); G];
                    for (g, sp) in sp.iter_mut().enumerate() {
                        let x = _mm256_loadu_si256(row(i7, l + 32 * g));
                        let mut sel = _mm256_and_si256(x, m7f);
                        let mut a = z;
                        let mut b = z;
                        for h in 0..8 {
                            let (lo, hi) = (bcast(&tel[h]), bcast(&tel[8 + h]));
                            if h == 0 {
                                a = _mm256_shuffle_epi8(lo, sel);
                                b = _mm256_shuffle_epi8(hi, sel);
                            } else {
                                sel = _mm256_sub_epi8(sel, sixteen);
                                a = _mm256_xor_si256(a, _mm256_shuffle_epi8(lo, sel));
                                b = _mm256_xor_si256(b, _mm256_shuffle_epi8(hi, sel));
                            }
                        }
                        let s = _mm256_blendv_epi8(a, b, x);
                        let p = _mm256_or_si256(
                            _mm256_shuffle_epi8(bcast(&super::PERM_LO), _mm256_and_si256(s, m0f)),
                            _mm256_shuffle_epi8(
                                bcast(&super::PERM_HI),
                                _mm256_and_si256(_mm256_srli_epi16::<4>(s), m0f),
                            ),
                        );
                        *sp = (s, p);
                    }
                    for (g, &(s, p)) in sp.iter().enumerate() {
                        let l = l + 32 * g;
                        let t = _mm256_xor_si256(_mm256_loadu_si256(row(i8, l)), s);
                        _mm256_storeu_si256(row(i8, l), t);
                        for i in [i2, i3, i4] {
                            _mm256_storeu_si256(
                                row(i, l),
                                _mm256_xor_si256(_mm256_loadu_si256(row(i, l)), t),
                            );
                        }
                        _mm256_storeu_si256(
                            row(i6, l),
                            _mm256_xor_si256(_mm256_loadu_si256(row(i6, l)), p),
                        );
                    }
                    l += 32 * G;
                }
            }
        }
    }

    /// AVX-512 (F + BW + VL), still 256 lanes (`BATCH_SIZE`): the
    /// bitsliced stream cipher is the AVX2 code on ymm registers compiled
    /// with AVX-512VL, where LLVM folds the S-box circuits' and the XOR
    /// chains' two-input operations into three-input `vpternlog`; the
    /// block cipher round runs on zmm, 64 lanes per instruction. With
    /// `VBMI` the keyed S-box is 2 `vpermi2b` over the round's 256-byte
    /// table and a blend on bit 7; without (Skylake-SP/Cascade Lake) the
    /// telescoped `vpshufb` rows of the AVX2 path, on zmm. Only created
    /// inside `run_avx512*`, which are only called when the CPU reports
    /// those features.
    #[derive(Clone, Copy)]
    pub struct Avx512<const VBMI: bool>(Avx2);

    impl<const VBMI: bool> Word for Avx512<VBMI> {
        const LANES: usize = 256;
        #[inline(always)]
        fn zero() -> Self {
            Avx512(Avx2::zero())
        }
        #[inline(always)]
        fn ones() -> Self {
            Avx512(Avx2::ones())
        }
        #[inline(always)]
        fn and(self, o: Self) -> Self {
            Avx512(self.0.and(o.0))
        }
        #[inline(always)]
        fn or(self, o: Self) -> Self {
            Avx512(self.0.or(o.0))
        }
        #[inline(always)]
        fn xor(self, o: Self) -> Self {
            Avx512(self.0.xor(o.0))
        }
        #[inline(always)]
        fn andnot(self, o: Self) -> Self {
            Avx512(self.0.andnot(o.0))
        }
        #[inline(always)]
        fn not(self) -> Self {
            Avx512(self.0.not())
        }
        #[inline(always)]
        fn load(b: &[u8]) -> Self {
            Avx512(Avx2::load(b))
        }
        #[inline(always)]
        fn store(self, b: &mut [u8]) {
            self.0.store(b)
        }
        #[inline(always)]
        fn from_u64s(v: [u64; 4]) -> Self {
            Avx512(Avx2::from_u64s(v))
        }
        #[inline(always)]
        fn delta_swap<const S: i32>(a: &mut Self, b: &mut Self, m: u64) {
            Avx2::delta_swap::<S>(&mut a.0, &mut b.0, m)
        }

        /// The whole round in zmm registers, 64 lanes at a time.
        #[inline(always)]
        fn block_round(
            r: &mut [[u8; super::BATCH_SIZE]; 8],
            _sb: &mut [u8; super::BATCH_SIZE],
            keyed: &[u8; 256],
            _tel: &[[u8; 16]; 16],
            k: u8,
            at: [usize; 6],
            lanes: usize,
        ) {
            let [i7, i8, i2, i3, i4, i6] = at;
            let lanes = lanes.min(super::BATCH_SIZE) / 64 * 64;
            let bcast = |t: &[u8; 16]| {
                // SAFETY: AVX-512F checked at run time; 16-byte load of `t`.
                unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(t.as_ptr() as *const __m128i)) }
            };
            let lo: [__m512i; 8] = std::array::from_fn(|h| bcast(&super::SBOX_LO[h]));
            let hi: [__m512i; 8] = std::array::from_fn(|h| bcast(&super::SBOX_HI[h]));
            // SAFETY: AVX-512F checked at run time; each load is 64 bytes
            // inside the 256-byte `keyed`.
            let tab: [__m512i; 4] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_si512(keyed[64 * j..].as_ptr() as *const _)
            });
            let plo = bcast(&super::PERM_LO);
            let phi = bcast(&super::PERM_HI);
            let base = r.as_mut_ptr() as *mut u8;
            let row = |i: usize, l: usize| {
                // In bounds: i < 8 and l + 64 <= BATCH_SIZE.
                base.wrapping_add(i * super::BATCH_SIZE + l) as *mut __m512i
            };
            // SAFETY: AVX-512 F/BW (and VBMI when `VBMI`) checked at run
            // time before any Avx512 value exists; every pointer from `row`
            // addresses 64 bytes inside `r` (row index < 8, lane offset + 64
            // <= BATCH_SIZE), and `r` is borrowed mutably for the whole loop.
            unsafe {
                let key = _mm512_set1_epi8(k as i8);
                let m7f = _mm512_set1_epi8(0x7f);
                let m0f = _mm512_set1_epi8(0x0f);
                let sixteen = _mm512_set1_epi8(16);
                let mut l = 0;
                while l < lanes {
                    let r7 = _mm512_loadu_si512(row(i7, l) as *const _);
                    let s = if VBMI {
                        // keyed[x]: bits 0..6 pick one of 128 bytes of a
                        // table pair, bit 7 picks the pair.
                        let a = _mm512_permutex2var_epi8(tab[0], r7, tab[1]);
                        let b = _mm512_permutex2var_epi8(tab[2], r7, tab[3]);
                        _mm512_mask_blend_epi8(_mm512_movepi8_mask(r7), a, b)
                    } else {
                        let x = _mm512_xor_si512(r7, key);
                        let mut sel = _mm512_and_si512(x, m7f);
                        let mut a = _mm512_shuffle_epi8(lo[0], sel);
                        let mut b = _mm512_shuffle_epi8(hi[0], sel);
                        for h in 1..8 {
                            sel = _mm512_sub_epi8(sel, sixteen);
                            a = _mm512_xor_si512(a, _mm512_shuffle_epi8(lo[h], sel));
                            b = _mm512_xor_si512(b, _mm512_shuffle_epi8(hi[h], sel));
                        }
                        _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), a, b)
                    };
                    let p = _mm512_or_si512(
                        _mm512_shuffle_epi8(plo, _mm512_and_si512(s, m0f)),
                        _mm512_shuffle_epi8(phi, _mm512_and_si512(_mm512_srli_epi16::<4>(s), m0f)),
                    );
                    let t = _mm512_xor_si512(_mm512_loadu_si512(row(i8, l) as *const _), s);
                    _mm512_storeu_si512(row(i8, l) as *mut _, t);
                    for i in [i2, i3, i4] {
                        _mm512_storeu_si512(
                            row(i, l) as *mut _,
                            _mm512_xor_si512(_mm512_loadu_si512(row(i, l) as *const _), t),
                        );
                    }
                    _mm512_storeu_si512(
                        row(i6, l) as *mut _,
                        _mm512_xor_si512(_mm512_loadu_si512(row(i6, l) as *const _), p),
                    );
                    l += 64;
                }
            }
        }
    }

    /// `REV4[r]`: `r` with its four bits reversed (`transpose16`'s output
    /// order).
    const REV4: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];

    /// Lanes per pass of `gather16`/`scatter_blocks16`: all 6 chunks of
    /// 32 positions of 64 lanes, so that each 64-byte line of a row is
    /// written (read) whole while it is in L1. (16 lanes per pass left
    /// each line a quarter done, and the 192 rows of one 64-lane line
    /// column fall in 16 of L1's 64 sets.)
    const SUPER: usize = 64;

    /// A 16×16 byte transpose in each 128-bit half of 16 words, by four
    /// rounds of unpacks (8-, 16-, 32-, 64-bit): byte q of word p ends
    /// up as byte p of word `REV4[q]`.
    #[inline(always)]
    fn transpose16(x: &mut [__m256i; 16]) {
        macro_rules! round {
            ($bit:expr, $lo:ident, $hi:ident) => {
                for r in 0..16 {
                    if r & $bit == 0 {
                        let (a, b) = (x[r], x[r | $bit]);
                        // SAFETY: only reached from functions compiled with
                        // AVX2 (the gather and scatter phases of Avx2 and
                        // Avx512), which run only where the CPU has it.
                        unsafe {
                            x[r] = $lo(a, b);
                            x[r | $bit] = $hi(a, b);
                        }
                    }
                }
            };
        }
        round!(1, _mm256_unpacklo_epi8, _mm256_unpackhi_epi8);
        round!(2, _mm256_unpacklo_epi16, _mm256_unpackhi_epi16);
        round!(4, _mm256_unpacklo_epi32, _mm256_unpackhi_epi32);
        round!(8, _mm256_unpacklo_epi64, _mm256_unpackhi_epi64);
    }

    /// Payloads into byte rows of `s.ct`, 16 lanes × 32 positions at a
    /// time: each lane's 32 bytes in one word, `transpose16`, then 16
    /// bytes of a row per store (AVX2 and AVX-512 phases). A payload
    /// shorter than `MAX_PAYLOAD` is copied into a zero-padded buffer
    /// first; idle lanes read zeros; positions past a payload are zero up
    /// to the row after the longest.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(super) unsafe fn gather16(s: &mut Scratch, job: &Run<'_, '_>) {
        const FULL: usize = MAX_PAYLOAD;
        static ZERO: [u8; FULL] = [0; FULL];
        let (lanes, chunk) = (&*job.lanes, job.chunk);
        let blocks = (super::max_payload(job) / 8 + 1).min(ROWS / 8);
        let chunks = (8 * blocks).div_ceil(32);
        assert!(s.ct.len() >= ROWS * BATCH_SIZE && 32 * chunks <= ROWS);
        let ct = s.ct.as_mut_ptr();
        let mut pad = [[0u8; FULL]; SUPER];
        for sg in 0..BATCH_SIZE / SUPER {
            let mut src = [ZERO.as_ptr(); SUPER];
            for (m, (src, pad)) in src.iter_mut().zip(pad.iter_mut()).enumerate() {
                if let Some(&i) = chunk.get(SUPER * sg + m) {
                    let p = &*lanes[i].payload;
                    if p.len() == FULL {
                        *src = p.as_ptr();
                    } else {
                        let n = p.len().min(FULL);
                        *pad = [0; FULL];
                        pad[..n].copy_from_slice(&p[..n]);
                        *src = pad.as_ptr();
                    }
                }
            }
            for c in 0..chunks {
                for (g4, src) in src.chunks_exact(16).enumerate() {
                    let g = SUPER / 16 * sg + g4;
                    // SAFETY: AVX2 per this function's contract. Every
                    // source has FULL = 184 readable bytes: chunks 0..5
                    // read 32c..32c+32, c = 5 reads 152..184 and moves it
                    // down by 8 bytes, zero above; every store is 16 bytes
                    // of row 32c + q < ROWS (asserted) at lane 16g < 256,
                    // inside `ct`.
                    unsafe {
                        let mut x = [_mm256_setzero_si256(); 16];
                        for (w, &p) in x.iter_mut().zip(src) {
                            *w = if c < 5 {
                                _mm256_loadu_si256(p.add(32 * c) as *const __m256i)
                            } else {
                                let v = _mm256_loadu_si256(p.add(FULL - 32) as *const __m256i);
                                _mm256_blend_epi32::<0xc0>(
                                    _mm256_permute4x64_epi64::<0xf9>(v),
                                    _mm256_setzero_si256(),
                                )
                            };
                        }
                        transpose16(&mut x);
                        for (r, w) in x.iter().enumerate() {
                            let q = 32 * c + REV4[r];
                            let lo = ct.add(q * BATCH_SIZE + 16 * g);
                            let hi = ct.add((q + 16) * BATCH_SIZE + 16 * g);
                            _mm_storeu_si128(lo as *mut __m128i, _mm256_castsi256_si128(*w));
                            _mm_storeu_si128(hi as *mut __m128i, _mm256_extracti128_si256::<1>(*w));
                        }
                    }
                }
            }
        }
    }

    /// The full plaintext blocks from the rows of `s.ct` back into the
    /// payloads, 16 lanes × 32 positions at a time (`gather16` in
    /// reverse); a payload shorter than `MAX_PAYLOAD` through a buffer.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(super) unsafe fn scatter_blocks16(
        s: &Scratch,
        lanes: &mut [Lane<'_>],
        chunk: &[usize],
        full: usize,
    ) {
        const FULL: usize = MAX_PAYLOAD;
        let chunks = (8 * full).div_ceil(32);
        assert!(s.ct.len() >= ROWS * BATCH_SIZE && 32 * chunks <= ROWS);
        let ct = s.ct.as_ptr();
        // Short payloads and idle lanes (the sink) go through buffers.
        let mut pad = [[0u8; FULL]; SUPER];
        let mut sink = [0u8; FULL];
        for sg in 0..chunk.len().div_ceil(SUPER) {
            let mut dst = [sink.as_mut_ptr(); SUPER];
            for (m, (d, pad)) in dst.iter_mut().zip(pad.iter_mut()).enumerate() {
                if let Some(&i) = chunk.get(SUPER * sg + m) {
                    let p = &mut *lanes[i].payload;
                    *d = if p.len() == FULL {
                        p.as_mut_ptr()
                    } else {
                        pad.as_mut_ptr()
                    };
                }
            }
            for c in 0..chunks {
                for (g4, dst) in dst.chunks_exact(16).enumerate() {
                    let g = SUPER / 16 * sg + g4;
                    // SAFETY: AVX2 per this function's contract. Loads: 16
                    // bytes of rows 32c + a and 32c + 16 + a (< ROWS,
                    // asserted) at lane 16g < 256, inside `ct`. Stores:
                    // every destination has FULL = 184 bytes and takes 32
                    // bytes at 32c for c < 5, 24 at 160 for c = 5. No
                    // destination is inside `ct`.
                    unsafe {
                        let mut x = [_mm256_setzero_si256(); 16];
                        for (a, w) in x.iter_mut().enumerate() {
                            let q = 32 * c + a;
                            let lo =
                                _mm_loadu_si128(ct.add(q * BATCH_SIZE + 16 * g) as *const __m128i);
                            let hi = _mm_loadu_si128(
                                ct.add((q + 16) * BATCH_SIZE + 16 * g) as *const __m128i
                            );
                            *w = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                        }
                        transpose16(&mut x);
                        for (m, &d) in dst.iter().enumerate() {
                            let v = x[REV4[m]];
                            if c < 5 {
                                _mm256_storeu_si256(d.add(32 * c) as *mut __m256i, v);
                            } else {
                                _mm_storeu_si128(
                                    d.add(160) as *mut __m128i,
                                    _mm256_castsi256_si128(v),
                                );
                                _mm_storel_epi64(
                                    d.add(176) as *mut __m128i,
                                    _mm256_extracti128_si256::<1>(v),
                                );
                            }
                        }
                    }
                }
            }
            for (m, pad) in pad.iter().enumerate() {
                if let Some(&i) = chunk.get(SUPER * sg + m) {
                    let p = &mut *lanes[i].payload;
                    if p.len() != FULL {
                        let e = 8 * (p.len() / 8);
                        p[..e].copy_from_slice(&pad[..e]);
                    }
                }
            }
        }
    }

    /// `scatter_phase` with `scatter_blocks16`.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[inline(always)]
    pub(super) unsafe fn scatter16(s: &mut Scratch, job: Run<'_, '_>) {
        let full = super::max_payload(&job) / 8;
        let Run { lanes, chunk, lens } = job;
        let fixes = super::scatter_fixes(s, lanes, chunk, lens);
        // SAFETY: AVX2 per this function's contract.
        unsafe { scatter_blocks16(s, lanes, chunk, full) };
        super::scatter_finish(s, lanes, chunk, &fixes);
    }

    /// `Phases` for a word type: each phase a function of its own, compiled
    /// with the word's target features, that inlines the generic phase.
    macro_rules! phases {
        (@gather generic, $word:ty, $s:ident, $job:ident) => {
            gather_phase::<$word>($s, $job)
        };
        (@gather t16, $word:ty, $s:ident, $job:ident) => {
            // SAFETY: the caller's target features include AVX2.
            unsafe { super::gather16($s, $job) }
        };
        (@scatter generic, $word:ty, $s:ident, $job:ident) => {
            scatter_phase::<$word>($s, $job)
        };
        (@scatter t16, $word:ty, $s:ident, $job:ident) => {
            // SAFETY: the caller's target features include AVX2.
            unsafe { super::scatter16($s, $job) }
        };
        ($word:ty, $features:literal, $m:ident, $t:ident) => {
            mod $m {
                #[allow(unused_imports)] // gather_phase, scatter_phase: `generic` only
                use super::super::{
                    block_phase, gather_phase, scatter_phase, stream_phase, KeySchedule, Run,
                    Scratch,
                };
                use super::*;

                #[target_feature(enable = $features)]
                #[inline(never)]
                pub unsafe fn gather(s: &mut Scratch, job: &Run<'_, '_>) {
                    phases!(@gather $t, $word, s, job)
                }
                #[target_feature(enable = $features)]
                #[inline(never)]
                pub unsafe fn stream(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
                    stream_phase::<$word>(s, key, lens)
                }
                #[target_feature(enable = $features)]
                #[inline(never)]
                pub unsafe fn block(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
                    block_phase::<$word>(s, key, lens)
                }
                #[target_feature(enable = $features)]
                #[inline(never)]
                pub unsafe fn scatter(s: &mut Scratch, job: Run<'_, '_>) {
                    phases!(@scatter $t, $word, s, job)
                }
            }

            // SAFETY (every call below): `run_chunk::<$word>` is only
            // reached through the `run_*` entry of this word, which
            // `dispatch` calls only when the CPU reports `$features`.
            impl super::Phases for $word {
                #[inline(always)]
                fn gather(s: &mut super::Scratch, job: &super::Run<'_, '_>) {
                    // SAFETY: see above.
                    unsafe { $m::gather(s, job) }
                }
                #[inline(always)]
                fn stream(s: &mut super::Scratch, key: &super::KeySchedule, lens: &[usize]) {
                    // SAFETY: see above.
                    unsafe { $m::stream(s, key, lens) }
                }
                #[inline(always)]
                fn block(s: &mut super::Scratch, key: &super::KeySchedule, lens: &[usize]) {
                    // SAFETY: see above.
                    unsafe { $m::block(s, key, lens) }
                }
                #[inline(always)]
                fn scatter(s: &mut super::Scratch, job: super::Run<'_, '_>) {
                    // SAFETY: see above.
                    unsafe { $m::scatter(s, job) }
                }
            }
        };
    }
    // The last argument: `t16` for the gather and scatter by 16×16 byte
    // transposes (`gather16`, AVX2 and up), `generic` for the delta swaps
    // of `gather_phase`/`scatter_phase`.
    phases!(Sse2, "sse2", sse2, generic);
    phases!(Avx2, "avx2", avx2, t16);
    phases!(Avx512<false>, "avx2,avx512f,avx512bw,avx512vl", avx512, t16);
    phases!(
        Avx512<true>,
        "avx2,avx512f,avx512bw,avx512vl,avx512vbmi",
        avx512_vbmi,
        t16
    );

    /// # Safety
    /// The CPU has AVX-512 F, BW, VL and AVX2.
    pub unsafe fn run_avx512(
        s: &mut super::Scratch,
        key: &super::KeySchedule,
        run: super::Run<'_, '_>,
    ) {
        super::run_chunk::<Avx512<false>>(s, key, run)
    }

    /// # Safety
    /// The CPU has AVX-512 F, BW, VL, VBMI and AVX2.
    pub unsafe fn run_avx512_vbmi(
        s: &mut super::Scratch,
        key: &super::KeySchedule,
        run: super::Run<'_, '_>,
    ) {
        super::run_chunk::<Avx512<true>>(s, key, run)
    }

    /// # Safety
    /// The CPU has AVX2.
    pub unsafe fn run_avx2(
        s: &mut super::Scratch,
        key: &super::KeySchedule,
        run: super::Run<'_, '_>,
    ) {
        super::run_chunk::<Avx2>(s, key, run)
    }

    /// # Safety
    /// The CPU has SSE2 (baseline on x86_64).
    pub unsafe fn run_sse2(
        s: &mut super::Scratch,
        key: &super::KeySchedule,
        run: super::Run<'_, '_>,
    ) {
        super::run_chunk::<Sse2>(s, key, run)
    }
}

/// Which code path the batch engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simd {
    /// Portable: 64 lanes in a u64.
    Portable,
    /// x86_64 SSE2: 128 lanes.
    Sse2,
    /// x86_64 AVX2: 256 lanes.
    Avx2,
    /// x86_64 AVX-512 F+BW+VL: 256 lanes, `vpternlog` in the stream
    /// cipher, the block cipher on zmm with `vpshufb` S-box lookups.
    Avx512,
    /// Avx512 plus AVX512-VBMI (Ice Lake and later): the block S-box by
    /// `vpermi2b`.
    Avx512Vbmi,
}

impl Simd {
    /// The best variant this CPU runs.
    pub fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        {
            if Simd::Avx512Vbmi.available() {
                return Simd::Avx512Vbmi;
            }
            if Simd::Avx512.available() {
                return Simd::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Simd::Avx2;
            }
            if is_x86_feature_detected!("sse2") {
                return Simd::Sse2;
            }
        }
        Simd::Portable
    }

    /// True if this CPU can run the variant.
    pub fn available(self) -> bool {
        match self {
            Simd::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Simd::Sse2 => is_x86_feature_detected!("sse2"),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vbmi => Simd::Avx512.available() && is_x86_feature_detected!("avx512vbmi"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Lanes per run.
    pub fn lanes(self) -> usize {
        match self {
            Simd::Portable => 64,
            Simd::Sse2 => 128,
            Simd::Avx2 | Simd::Avx512 | Simd::Avx512Vbmi => 256,
        }
    }
}

/// Scratch of one run, reused across batches (≈ 100 KiB).
pub struct Scratch {
    /// Byte-sliced payloads: `ct[pos * BATCH_SIZE + lane]`.
    ct: Vec<u8>,
    /// Byte-sliced keystream: `ks[pos * BATCH_SIZE + lane]`, position 0 is
    /// the keystream block that goes with payload block 1.
    ks: Vec<u8>,
    /// Block cipher state, 8 byte rows.
    r: Box<[[u8; BATCH_SIZE]; 8]>,
    /// S-box outputs of one round.
    s: Box<[u8; BATCH_SIZE]>,
}

impl Scratch {
    fn empty() -> Scratch {
        Scratch {
            ct: Vec::new(),
            ks: Vec::new(),
            r: Box::new([[0; BATCH_SIZE]; 8]),
            s: Box::new([0; BATCH_SIZE]),
        }
    }

    fn new() -> Scratch {
        Scratch {
            ct: vec![0; ROWS * BATCH_SIZE],
            ks: vec![0; ROWS * BATCH_SIZE],
            r: Box::new([[0; BATCH_SIZE]; 8]),
            s: Box::new([0; BATCH_SIZE]),
        }
    }
}

#[inline(always)]
fn row(v: &[u8], pos: usize) -> &[u8] {
    &v[pos * BATCH_SIZE..(pos + 1) * BATCH_SIZE]
}

#[inline(always)]
fn row_mut(v: &mut [u8], pos: usize) -> &mut [u8] {
    &mut v[pos * BATCH_SIZE..(pos + 1) * BATCH_SIZE]
}

/// 8 bytes rows of `W::LANES` lanes ↔ 8 bit planes (an involution).
#[inline(always)]
fn transpose8<W: Word>(x: &mut [W; 8]) {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = x;
    W::delta_swap::<4>(a0, a4, 0x0f0f_0f0f_0f0f_0f0f);
    W::delta_swap::<4>(a1, a5, 0x0f0f_0f0f_0f0f_0f0f);
    W::delta_swap::<4>(a2, a6, 0x0f0f_0f0f_0f0f_0f0f);
    W::delta_swap::<4>(a3, a7, 0x0f0f_0f0f_0f0f_0f0f);
    W::delta_swap::<2>(a0, a2, 0x3333_3333_3333_3333);
    W::delta_swap::<2>(a1, a3, 0x3333_3333_3333_3333);
    W::delta_swap::<2>(a4, a6, 0x3333_3333_3333_3333);
    W::delta_swap::<2>(a5, a7, 0x3333_3333_3333_3333);
    W::delta_swap::<1>(a0, a1, 0x5555_5555_5555_5555);
    W::delta_swap::<1>(a2, a3, 0x5555_5555_5555_5555);
    W::delta_swap::<1>(a4, a5, 0x5555_5555_5555_5555);
    W::delta_swap::<1>(a6, a7, 0x5555_5555_5555_5555);
}

/// Byte row `pos` of the first `W::LANES` lanes as bit planes (plane b =
/// bit b of every lane's byte).
#[inline(always)]
fn planes_of_row<W: Word>(v: &[u8], pos: usize) -> [W; 8] {
    let r = row(v, pos);
    let wb = W::LANES / 8;
    let mut x = [W::zero(); 8];
    for (m, w) in x.iter_mut().enumerate() {
        *w = W::load(&r[m * wb..]);
    }
    transpose8(&mut x);
    x
}

#[inline(always)]
fn store_planes<W: Word>(mut x: [W; 8], v: &mut [u8], pos: usize) {
    transpose8(&mut x);
    let r = row_mut(v, pos);
    let wb = W::LANES / 8;
    for (m, w) in x.iter().enumerate() {
        w.store(&mut r[m * wb..]);
    }
}

type Nib<W> = [W; 4];

/// Clocks per kernel call: 8 keystream bytes, 4 clocks each.
const SLIDE: usize = 32;

/// The shift registers A and B live in arrays of `SLIDE + 10` nibbles with
/// a moving base: logical register k (1..=10) is at `base + k - 1`, a
/// clock writes the new register 1 at `base - 1` and lowers the base. A
/// kernel call runs `SLIDE` clocks from base `SLIDE` down to 0, then copies
/// the ten live registers back to the top.
///
/// One clock is one iteration of a loop, its state read from and written
/// to memory (`Stream`), as in FFdecsa: with four clocks unrolled into one
/// block LLVM interleaved them and spilled, ≈ 860 stack moves per byte
/// beside ≈ 900 logic operations; one clock per iteration is ≈ 210 logic
/// operations and 128 moves (BENCHMARKS.md, "DVB-CSA").
struct Stream<W: Word> {
    a: [Nib<W>; SLIDE + 10],
    b: [Nib<W>; SLIDE + 10],
    /// The combiner: X, Y, Z, D, E, F and p, q, r.
    x: Nib<W>,
    y: Nib<W>,
    z: Nib<W>,
    d: Nib<W>,
    e: Nib<W>,
    f: Nib<W>,
    p: W,
    q: W,
    r: W,
}

#[inline(always)]
fn splat_nibble<W: Word>(v: u8) -> Nib<W> {
    let mut n = [W::zero(); 4];
    for (k, w) in n.iter_mut().enumerate() {
        if (v >> k) & 1 == 1 {
            *w = W::ones();
        }
    }
    n
}

impl<W: Word> Stream<W> {
    #[inline(always)]
    fn new(cw: &[u8; 8]) -> Self {
        let z = [W::zero(); 4];
        let mut a = [z; SLIDE + 10];
        let mut b = [z; SLIDE + 10];
        for i in 0..4 {
            a[SLIDE + 2 * i] = splat_nibble(cw[i] >> 4);
            a[SLIDE + 2 * i + 1] = splat_nibble(cw[i] & 15);
            b[SLIDE + 2 * i] = splat_nibble(cw[4 + i] >> 4);
            b[SLIDE + 2 * i + 1] = splat_nibble(cw[4 + i] & 15);
        }
        Stream {
            a,
            b,
            x: z,
            y: z,
            z,
            d: z,
            e: z,
            f: z,
            p: W::zero(),
            q: W::zero(),
            r: W::zero(),
        }
    }

    /// `SLIDE` clocks (8 bytes). With `INIT`, `input` holds the bit planes
    /// of the 8 initialisation bytes (plane b of byte i at `8 * i + b`).
    /// Without, `out[2 * t]`, `out[2 * t + 1]` get the output bits of clock
    /// t (d3 ^ d2, d1 ^ d0).
    #[inline(always)]
    fn kernel<const INIT: bool>(&mut self, input: &[W; 64], out: &mut [W; 64]) {
        for t in 0..SLIDE {
            let (h, l) = self.clock::<INIT>(SLIDE - t, input, t);
            out[2 * t] = h;
            out[2 * t + 1] = l;
        }
        self.a.copy_within(0..10, SLIDE);
        self.b.copy_within(0..10, SLIDE);
    }

    /// One clock with logical register k at `base + k - 1` (1 <= base <=
    /// SLIDE); the new register 1 goes to `base - 1`. During
    /// initialisation, clock t takes byte t / 4's high nibble into A and
    /// its low nibble into B on even clocks, the other way round on odd
    /// ones. Returns the output bits (d3 ^ d2, d1 ^ d0).
    #[inline(always)]
    fn clock<const INIT: bool>(&mut self, base: usize, input: &[W; 64], t: usize) -> (W, W) {
        use super::sbox::*;
        debug_assert!((1..=SLIDE).contains(&base));
        let ra = &self.a[base - 1..base + 10];
        let rb = &self.b[base - 1..base + 10];
        // Register k at index k of the 11-nibble windows (0: the new one).
        let a = |k: usize, bit: usize| ra[k][bit];
        let b = |k: usize, bit: usize| rb[k][bit];
        let s1 = s1(a(4, 0), a(1, 2), a(6, 1), a(7, 3), a(9, 0));
        let s2 = s2(a(2, 1), a(3, 2), a(6, 3), a(7, 0), a(9, 1));
        let s3 = s3(a(1, 3), a(2, 0), a(5, 1), a(5, 3), a(6, 2));
        let s4 = s4(a(3, 3), a(1, 1), a(2, 3), a(4, 2), a(8, 0));
        let s5 = s5(a(5, 2), a(4, 3), a(6, 0), a(8, 1), a(9, 2));
        let s6 = s6(a(3, 1), a(4, 1), a(5, 0), a(7, 2), a(9, 3));
        let s7 = s7(a(2, 2), a(3, 0), a(7, 1), a(8, 2), a(8, 3));
        let extra: Nib<W> = [
            b(9, 2).xor(b(6, 3)).xor(b(3, 1)).xor(b(8, 0)),
            b(5, 3).xor(b(8, 2)).xor(b(4, 0)).xor(b(5, 1)),
            b(6, 0).xor(b(8, 1)).xor(b(3, 3)).xor(b(4, 2)),
            b(3, 0).xor(b(6, 1)).xor(b(7, 2)).xor(b(9, 3)),
        ];
        // (Plain loops, not array::from_fn: its closures are not always
        // inlined, and an intrinsic inside one is then a call.)
        let mut na: Nib<W> = [W::zero(); 4];
        let mut nb: Nib<W> = [W::zero(); 4];
        for i in 0..4 {
            na[i] = a(10, i).xor(self.x[i]);
            nb[i] = b(7, i).xor(b(10, i)).xor(self.y[i]);
        }
        if INIT {
            let byte = &input[8 * (t / 4)..];
            let (ia, ib) = if t.is_multiple_of(2) {
                (&byte[4..8], &byte[0..4])
            } else {
                (&byte[0..4], &byte[4..8])
            };
            for i in 0..4 {
                na[i] = na[i].xor(self.d[i]).xor(ia[i]);
                nb[i] = nb[i].xor(ib[i]);
            }
        }
        // Rotate B1 left by one bit where p is set.
        let p = self.p;
        let rot = [nb[3], nb[0], nb[1], nb[2]];
        for i in 0..4 {
            nb[i] = nb[i].xor(p.and(nb[i].xor(rot[i])));
        }
        // D = E ^ Z ^ extra; F = q ? Z + E + r : E (and E ^ sum = Z ^
        // carry in), the carry out into r when q.
        let (e, z, q) = (self.e, self.z, self.q);
        let mut carry = self.r;
        let mut new_f: Nib<W> = [W::zero(); 4];
        for i in 0..4 {
            let t = z[i].xor(e[i]);
            self.d[i] = t.xor(extra[i]);
            new_f[i] = e[i].xor(q.and(z[i].xor(carry)));
            carry = z[i].and(e[i]).or(carry.and(t));
        }
        self.r = self.r.xor(q.and(self.r.xor(carry)));
        self.e = self.f;
        self.f = new_f;
        // Shift: the old register 10 drops out, the new register 1 enters.
        self.a[base - 1] = na;
        self.b[base - 1] = nb;
        self.x = [s1.0, s2.0, s3.1, s4.1];
        self.y = [s3.0, s4.0, s5.1, s6.1];
        self.z = [s5.0, s6.0, s1.1, s2.1];
        self.p = s7.0;
        self.q = s7.1;
        let d = self.d;
        (d[3].xor(d[2]), d[1].xor(d[0]))
    }
}

/// Keystream blocks a run needs: block i serves payload block i+1 (or the
/// residue after the last full block).
fn keystream_blocks(lens: &[usize]) -> usize {
    lens.iter()
        .map(|&l| l / 8 - 1 + usize::from(l % 8 != 0))
        .max()
        .unwrap_or(0)
}

/// The stream cipher over the first `W::LANES` lanes of the scratch
/// (payloads already gathered into `s.ct`, each ≥ 8 bytes): the keystream
/// into `s.ks`.
#[inline(always)]
fn stream_phase<W: Word>(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
    let ks_blocks = keystream_blocks(lens);
    // Initialise with the first 8 payload bytes, then 4 clocks per
    // keystream byte, 8 bytes per kernel call.
    let mut st = Stream::<W>::new(&key.cw);
    let mut planes = [W::zero(); 64];
    for pos in 0..8 {
        let pl = planes_of_row::<W>(&s.ct, pos);
        planes[8 * pos..8 * pos + 8].copy_from_slice(&pl);
    }
    let mut out = [W::zero(); 64];
    st.kernel::<true>(&planes, &mut out);
    for blk in 0..ks_blocks {
        st.kernel::<false>(&planes, &mut out);
        for i in 0..8 {
            let mut byte = [W::zero(); 8];
            for j in 0..4 {
                byte[7 - 2 * j] = out[2 * (4 * i + j)];
                byte[6 - 2 * j] = out[2 * (4 * i + j) + 1];
            }
            store_planes(byte, &mut s.ks, 8 * blk + i);
        }
    }
}

/// The block cipher and the chaining with the keystream: the plaintext
/// overwrites `s.ct`.
#[inline(always)]
fn block_phase<W: Word>(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
    let n_max = lens.iter().copied().max().unwrap_or(0) / 8;
    let ks_blocks = keystream_blocks(lens);
    // Block cipher, block by block; the plaintext overwrites `ct`.
    let Scratch { ct, ks, r, s: sb } = s;
    for i in 0..n_max {
        // IB_i = C_i ^ K_{i-1}
        for (j, dst) in r.iter_mut().enumerate() {
            let c = &row(ct, 8 * i + j)[..W::LANES];
            if i == 0 {
                dst[..W::LANES].copy_from_slice(c);
            } else {
                let k = &row(ks, 8 * (i - 1) + j)[..W::LANES];
                for ((d, &c), &k) in dst[..W::LANES].iter_mut().zip(c).zip(k) {
                    *d = c ^ k;
                }
            }
        }
        block_decrypt_rows::<W>(r, sb, key, W::LANES);
        // P_i = D(IB_i) ^ IB_{i+1}; IB_{n} is zero unless a lane needs that
        // keystream block (fixed per lane when copying back).
        for (j, rj) in r.iter().enumerate() {
            let rj = &rj[..W::LANES];
            let (head, tail) = ct.split_at_mut((8 * i + 8) * BATCH_SIZE);
            let c_out = &mut head[(8 * i + j) * BATCH_SIZE..][..W::LANES];
            if i < ks_blocks {
                let c_next = &tail[j * BATCH_SIZE..][..W::LANES];
                let k = &row(ks, 8 * i + j)[..W::LANES];
                for (((o, &x), &c), &k) in c_out.iter_mut().zip(rj).zip(c_next).zip(k) {
                    *o = x ^ c ^ k;
                }
            } else {
                c_out.copy_from_slice(rj);
            }
        }
    }
}

/// 56 deciphering rounds on byte rows `r` (R1 = row 0 … R8 = row 7). The
/// rows are renamed instead of moved: after each round logical register k
/// lives where k-1 was.
#[inline(always)]
fn block_decrypt_rows<W: Word>(
    r: &mut [[u8; BATCH_SIZE]; 8],
    sb: &mut [u8; BATCH_SIZE],
    key: &KeySchedule,
    lanes: usize,
) {
    let rounds = key.sbox_dec.iter().zip(key.sbox_tel.iter());
    for (round, (table, tel)) in rounds.enumerate() {
        // Logical Rk is in row (k - 1 + 8 - round % 8) % 8.
        let o = 8 - round % 8;
        let at = |k: usize| (k - 1 + o) % 8;
        W::block_round(
            r,
            sb,
            table,
            tel,
            key.kk[55 - round],
            [at(7), at(8), at(2), at(3), at(4), at(6)],
            lanes,
        );
    }
}

/// What a batch keeps between buffers: the SIMD variant, the scratch
/// (≈ 100 KiB) and the counters.
pub struct Engine {
    simd: Simd,
    scratch: Box<Scratch>,
    counters: Counters,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// The best SIMD variant of this CPU.
    pub fn new() -> Engine {
        Self::with_simd(Simd::detect())
    }

    /// `simd` if this CPU has it, else portable.
    pub fn with_simd(simd: Simd) -> Engine {
        let simd = if simd.available() {
            simd
        } else {
            Simd::Portable
        };
        Engine {
            simd,
            scratch: Box::new(Scratch::new()),
            counters: Counters::default(),
        }
    }

    pub fn simd(&self) -> Simd {
        self.simd
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

struct Lane<'a> {
    payload: &'a mut [u8],
    parity: Parity,
}

/// What `Batch::push` did with a packet.
#[derive(Debug)]
pub enum Pushed<'a> {
    /// Queued for the next flush.
    Queued,
    /// Finished at once (clear, no key, short payload, PES scrambling,
    /// malformed); already counted.
    Finished(Outcome),
    /// The batch holds packets of another `Keys`: flush, then push again.
    /// The packet is handed back untouched.
    OtherKeys(&'a mut [u8]),
}

/// A batch of packets to descramble, all with one `Keys` (one service's
/// key pair; each packet still takes the even or odd key its own bits
/// name). Holds at most `BATCH_SIZE` packets and flushes itself when full;
/// `flush` is the caller's to call on its own time bound.
pub struct Batch<'a> {
    lanes: Vec<Lane<'a>>,
    keys: Option<&'a Keys>,
    simd: Simd,
    scratch: Box<Scratch>,
    lens: Vec<usize>,
    counters: Counters,
    /// Runs of fewer packets than this go through the scalar path.
    scalar_below: usize,
}

/// Packets of one key below which a flush descrambles them one by one with
/// the scalar code: a bitsliced run costs the same for 1 lane as for all of
/// them, so a radio service's 10 ms flush of one or two packets would pay
/// for a whole run. Set from `examples/bench_csa_partial.rs` (BENCHMARKS.md,
/// "Partial batches").
pub const SCALAR_BELOW: usize = 5;

/// Descramble `packets` with one flush of the batch engine, never the
/// scalar shortcut (for `examples/bench_csa_partial.rs`).
pub fn raw_batch_flush(engine: Engine, packets: &mut [[u8; 188]], keys: &Keys) -> Engine {
    let mut b = Batch::with_engine(engine);
    b.scalar_below = 0;
    for p in packets.iter_mut() {
        let _ = b.push(p, keys);
    }
    b.flush();
    b.into_engine()
}

impl Default for Batch<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Batch<'a> {
    /// A batch running the best SIMD variant of this CPU.
    pub fn new() -> Batch<'a> {
        Self::with_simd(Simd::detect())
    }

    /// A batch running `simd` (falls back to portable if the CPU lacks it).
    pub fn with_simd(simd: Simd) -> Batch<'a> {
        Self::with_engine(Engine::with_simd(simd))
    }

    /// A batch reusing an engine from `into_engine`.
    pub fn with_engine(e: Engine) -> Batch<'a> {
        Batch {
            lanes: Vec::with_capacity(BATCH_SIZE),
            keys: None,
            simd: e.simd,
            scratch: e.scratch,
            lens: Vec::with_capacity(BATCH_SIZE),
            counters: e.counters,
            scalar_below: SCALAR_BELOW,
        }
    }

    pub fn simd(&self) -> Simd {
        self.simd
    }

    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        BATCH_SIZE
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Flush and give back the engine (SIMD choice, scratch, counters), to
    /// build the next batch over other packet buffers without allocating.
    pub fn into_engine(mut self) -> Engine {
        self.flush();
        Engine {
            simd: self.simd,
            // The old batch is empty now: leave it an unallocated scratch.
            scratch: std::mem::replace(&mut self.scratch, Box::new(Scratch::empty())),
            counters: self.counters,
        }
    }

    /// Queue one 188-byte packet, to be descrambled with `keys`. Its
    /// scrambling bits are cleared now; its payload is descrambled at the
    /// next flush (at the latest when the batch is full, inside this call).
    pub fn push(&mut self, packet: &'a mut [u8], keys: &'a Keys) -> Pushed<'a> {
        if let Some(k) = self.keys {
            if !std::ptr::eq(k, keys) && !self.lanes.is_empty() {
                return Pushed::OtherKeys(packet);
            }
        }
        let parity = match packet.get(3) {
            Some(b) if b & 0x40 != 0 => Parity::Odd,
            _ => Parity::Even,
        };
        match plan(packet, keys) {
            Plan::Finished(o) => {
                self.counters.record(o);
                Pushed::Finished(o)
            }
            Plan::Descramble { payload_offset, .. } => {
                self.keys = Some(keys);
                let end = packet.len().min(payload_offset + MAX_PAYLOAD);
                let payload = &mut packet[payload_offset..end];
                self.lanes.push(Lane { payload, parity });
                if self.lanes.len() == BATCH_SIZE {
                    self.flush();
                }
                Pushed::Queued
            }
        }
    }

    /// Descramble every queued packet now. Returns how many.
    pub fn flush(&mut self) -> usize {
        let n = self.lanes.len();
        if let Some(keys) = self.keys {
            for parity in [Parity::Even, Parity::Odd] {
                if let Some(key) = keys.get(parity) {
                    self.run_parity(key, parity);
                }
            }
        }
        self.counters.descrambled += n as u64;
        self.lanes.clear();
        self.keys = None;
        n
    }

    fn run_parity(&mut self, key: &KeySchedule, parity: Parity) {
        let width = self.simd.lanes();
        let mut idx: Vec<usize> = Vec::with_capacity(BATCH_SIZE);
        idx.extend((0..self.lanes.len()).filter(|&i| self.lanes[i].parity == parity));
        if idx.len() < self.scalar_below {
            for &i in &idx {
                key.decrypt_payload(self.lanes[i].payload);
            }
            return;
        }
        for chunk in idx.chunks(width) {
            self.lens.clear();
            for &i in chunk {
                self.lens.push(self.lanes[i].payload.len());
            }
            for _ in chunk.len()..width {
                self.lens.push(8); // idle lanes: one zero block
            }
            let run = Run {
                lanes: &mut self.lanes,
                chunk,
                lens: &self.lens,
            };
            dispatch(self.simd, &mut self.scratch, key, run);
        }
    }
}

/// The packets of one bitsliced run: `chunk` indexes `lanes`, one lane of
/// the run each (at most `W::LANES`); `lens` has the payload length of
/// every lane of the run (8 for the idle ones).
struct Run<'r, 'a> {
    lanes: &'r mut [Lane<'a>],
    chunk: &'r [usize],
    lens: &'r [usize],
}

/// `W::LANES / 64` blocks of 8 bytes of `p` from byte `off`, zero past
/// its end (block by block there: a variable-length copy into a padded
/// buffer was a memmove call per lane).
#[inline(always)]
fn load_blocks<W: Word>(p: &[u8], off: usize) -> W {
    let n = W::LANES / 8;
    if let Some(v) = p.get(off..off + n) {
        return W::load(v);
    }
    let mut v = [0u64; 4];
    for (q, e) in v.iter_mut().enumerate().take(n / 8) {
        let at = off + 8 * q;
        if let Some(b) = p.get(at..at + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            *e = u64::from_le_bytes(bytes);
        } else if let Some(rest) = p.get(at..) {
            for (k, &c) in rest.iter().enumerate() {
                *e |= u64::from(c) << (8 * k);
            }
        }
    }
    W::from_u64s(v)
}

/// 8×8 byte transpose in every 64-bit element of the words at once: byte
/// j of element q of word m ↔ byte m of element q of word j.
#[inline(always)]
fn transpose_bytes_w<W: Word>(x: &mut [W; 8]) {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = x;
    W::delta_swap::<32>(a0, a4, 0x0000_0000_ffff_ffff);
    W::delta_swap::<32>(a1, a5, 0x0000_0000_ffff_ffff);
    W::delta_swap::<32>(a2, a6, 0x0000_0000_ffff_ffff);
    W::delta_swap::<32>(a3, a7, 0x0000_0000_ffff_ffff);
    W::delta_swap::<16>(a0, a2, 0x0000_ffff_0000_ffff);
    W::delta_swap::<16>(a1, a3, 0x0000_ffff_0000_ffff);
    W::delta_swap::<16>(a4, a6, 0x0000_ffff_0000_ffff);
    W::delta_swap::<16>(a5, a7, 0x0000_ffff_0000_ffff);
    W::delta_swap::<8>(a0, a1, 0x00ff_00ff_00ff_00ff);
    W::delta_swap::<8>(a2, a3, 0x00ff_00ff_00ff_00ff);
    W::delta_swap::<8>(a4, a5, 0x00ff_00ff_00ff_00ff);
    W::delta_swap::<8>(a6, a7, 0x00ff_00ff_00ff_00ff);
}

/// One bitsliced run over the packets of `job`: gather their payloads into
/// byte rows, run the ciphers, put the plaintext back. Each phase is its own
/// function compiled with the word's target features (`Phases`): inlined
/// into one, the whole run grew past the size where LLVM still inlines the
/// SIMD intrinsics, and a quarter of the AVX2 time went to out-of-line
/// `_mm256_xor_si256` calls.
fn run_chunk<W: Phases>(s: &mut Scratch, key: &KeySchedule, job: Run<'_, '_>) {
    W::gather(s, &job);
    W::stream(s, key, job.lens);
    W::block(s, key, job.lens);
    W::scatter(s, job);
}

/// The phases of a run as separately compiled functions (see `run_chunk`).
trait Phases: Word {
    fn gather(s: &mut Scratch, job: &Run<'_, '_>);
    fn stream(s: &mut Scratch, key: &KeySchedule, lens: &[usize]);
    fn block(s: &mut Scratch, key: &KeySchedule, lens: &[usize]);
    fn scatter(s: &mut Scratch, job: Run<'_, '_>);
}

impl Phases for u64 {
    fn gather(s: &mut Scratch, job: &Run<'_, '_>) {
        gather_phase::<u64>(s, job)
    }
    fn stream(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
        stream_phase::<u64>(s, key, lens)
    }
    fn block(s: &mut Scratch, key: &KeySchedule, lens: &[usize]) {
        block_phase::<u64>(s, key, lens)
    }
    fn scatter(s: &mut Scratch, job: Run<'_, '_>) {
        scatter_phase::<u64>(s, job)
    }
}

/// The longest payload of the run's packets.
fn max_payload(job: &Run<'_, '_>) -> usize {
    job.chunk
        .iter()
        .map(|&i| job.lanes[i].payload.len())
        .max()
        .unwrap_or(0)
}

/// Payloads into byte rows of `s.ct`.
#[inline(always)]
fn gather_phase<W: Word>(s: &mut Scratch, job: &Run<'_, '_>) {
    let (lanes, chunk) = (&*job.lanes, job.chunk);
    let width = W::LANES;
    let per = W::LANES / 64; // 8-byte blocks per word
    let max_len = max_payload(job);
    // Gather payloads into byte rows, 8 lanes × `per` blocks at a time
    // (8×8 byte transposes); bytes past a payload and idle lanes are zero,
    // one zero block after the longest payload.
    let blocks = (max_len / 8 + 1).min(ROWS / 8);
    for g in 0..width / 8 {
        let src: [&[u8]; 8] = std::array::from_fn(|m| match chunk.get(8 * g + m) {
            Some(&i) => &*lanes[i].payload,
            None => &[],
        });
        for b0 in (0..blocks).step_by(per) {
            let mut x = [W::zero(); 8];
            for (w, p) in x.iter_mut().zip(src) {
                *w = load_blocks::<W>(p, 8 * b0);
            }
            transpose_bytes_w(&mut x);
            let mut buf = [0u8; 32];
            for (j, w) in x.iter().enumerate() {
                w.store(&mut buf);
                for q in 0..per.min(blocks - b0) {
                    let at = (8 * (b0 + q) + j) * BATCH_SIZE + 8 * g;
                    s.ct[at..at + 8].copy_from_slice(&buf[8 * q..8 * q + 8]);
                }
            }
        }
    }
}

/// Plaintext rows back into the payloads, the keystream alone over the
/// residues.
#[inline(always)]
fn scatter_phase<W: Word>(s: &mut Scratch, job: Run<'_, '_>) {
    let full = max_payload(&job) / 8;
    let Run { lanes, chunk, lens } = job;
    let fixes = scatter_fixes(s, lanes, chunk, lens);
    scatter_blocks::<W>(s, lanes, chunk, full);
    scatter_finish(s, lanes, chunk, &fixes);
}

/// Per lane: the engine XORed IB_n = C_n ^ K_{n-1} into the last block if
/// it had that keystream block; what to XOR to take it out again (read
/// before the blocks are written back).
struct Fixes {
    v: [(usize, [u8; 8]); BATCH_SIZE],
    n: usize,
}

#[inline(always)]
fn scatter_fixes(s: &Scratch, lanes: &[Lane<'_>], chunk: &[usize], lens: &[usize]) -> Fixes {
    let ks_blocks = keystream_blocks(lens);
    let mut f = Fixes {
        v: [(0usize, [0u8; 8]); BATCH_SIZE],
        n: 0,
    };
    for (l, &i) in chunk.iter().enumerate() {
        let p = &*lanes[i].payload;
        let n = p.len() / 8;
        if n - 1 < ks_blocks {
            let mut last = [0u8; 8];
            for (j, v) in last.iter_mut().enumerate() {
                let c = p.get(8 * n + j).copied().unwrap_or(0);
                *v = c ^ s.ks[(8 * (n - 1) + j) * BATCH_SIZE + l];
            }
            f.v[f.n] = (l, last);
            f.n += 1;
        }
    }
    f
}

/// The fixes of `scatter_fixes`, then the residues: stream cipher only.
#[inline(always)]
fn scatter_finish(s: &Scratch, lanes: &mut [Lane<'_>], chunk: &[usize], fixes: &Fixes) {
    for &(l, last) in &fixes.v[..fixes.n] {
        let p = &mut *lanes[chunk[l]].payload;
        let n = p.len() / 8;
        for (d, f) in p[8 * (n - 1)..8 * n].iter_mut().zip(last) {
            *d ^= f;
        }
    }
    for (l, &i) in chunk.iter().enumerate() {
        let p = &mut *lanes[i].payload;
        let start = 8 * (p.len() / 8);
        for (pos, d) in p.iter_mut().enumerate().skip(start) {
            *d ^= s.ks[(pos - 8) * BATCH_SIZE + l];
        }
    }
}

/// The first `full` plaintext blocks from the rows of `s.ct` back into
/// the payloads (each payload's full blocks), 8 lanes × `W::LANES / 64`
/// blocks at a time.
#[inline(always)]
fn scatter_blocks<W: Word>(s: &Scratch, lanes: &mut [Lane<'_>], chunk: &[usize], full: usize) {
    let width = W::LANES;
    let per = W::LANES / 64; // 8-byte blocks per word
                             // Copy the full blocks back, 8 lanes × `per` blocks at a time.
    for g in 0..width.min(chunk.len().div_ceil(8) * 8) / 8 {
        for b0 in (0..full).step_by(per) {
            let mut x = [W::zero(); 8];
            for (j, w) in x.iter_mut().enumerate() {
                let mut v = [0u64; 4];
                for (q, e) in v.iter_mut().enumerate().take(per.min(full - b0)) {
                    let at = (8 * (b0 + q) + j) * BATCH_SIZE + 8 * g;
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&s.ct[at..at + 8]);
                    *e = u64::from_le_bytes(bytes);
                }
                *w = W::from_u64s(v);
            }
            transpose_bytes_w(&mut x);
            let mut buf = [0u8; 32];
            for (m, w) in x.iter().enumerate() {
                if let Some(&i) = chunk.get(8 * g + m) {
                    let p = &mut *lanes[i].payload;
                    let end = (8 * (b0 + per)).min(8 * (p.len() / 8));
                    if let Some(d) = p.get_mut(8 * b0..end) {
                        // Whole words straight into the payload; a short
                        // tail by fixed-size copies (a variable-length
                        // copy, or a loop of 8-byte ones, which LLVM
                        // turns back into one, was a memcpy call per lane:
                        // 3.6 % of the AVX2 run).
                        if d.len() == 8 * per {
                            w.store(d);
                        } else {
                            w.store(&mut buf);
                            match d.len() {
                                8 => d[..8].copy_from_slice(&buf[..8]),
                                16 => d[..16].copy_from_slice(&buf[..16]),
                                24 => d[..24].copy_from_slice(&buf[..24]),
                                n => d.copy_from_slice(&buf[..n]),
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Batch<'_> {
    /// Queued packets are never left half done.
    fn drop(&mut self) {
        self.flush();
    }
}

fn dispatch(simd: Simd, s: &mut Scratch, key: &KeySchedule, run: Run<'_, '_>) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            // SAFETY: `Batch::with_simd` keeps Avx2 only when
            // is_x86_feature_detected!("avx2") is true.
            unsafe { x86::run_avx2(s, key, run) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => {
            // SAFETY: `Batch::with_simd` keeps Avx512 only when
            // `Simd::Avx512.available()` (avx2, avx512f/bw/vl) is true.
            unsafe { x86::run_avx512(s, key, run) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512Vbmi => {
            // SAFETY: kept only when `Simd::Avx512Vbmi.available()` (the
            // above plus avx512vbmi) is true.
            unsafe { x86::run_avx512_vbmi(s, key, run) }
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Sse2 => {
            // SAFETY: SSE2 is baseline on x86_64 (and checked in with_simd).
            unsafe { x86::run_sse2(s, key, run) }
        }
        _ => run_chunk::<u64>(s, key, run),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tables::STREAM_SBOX;
    use super::*;

    #[test]
    #[allow(clippy::type_complexity, clippy::needless_range_loop)]
    fn circuits_match_tables() {
        use super::super::sbox::*;
        let boxes: [fn(u64, u64, u64, u64, u64) -> (u64, u64); 7] = [s1, s2, s3, s4, s5, s6, s7];
        // Lane i of each input word carries bit v of i: all 32 inputs at once.
        let x: [u64; 5] =
            std::array::from_fn(|v| (0..32).fold(0, |acc, i| acc | (((i >> v) & 1) << i)));
        for (k, f) in boxes.iter().enumerate() {
            let (hi, lo) = f(x[4], x[3], x[2], x[1], x[0]);
            for i in 0..32 {
                let got = (((hi >> i) & 1) << 1 | ((lo >> i) & 1)) as u8;
                assert_eq!(got, STREAM_SBOX[k][i], "s-box {} input {i}", k + 1);
            }
        }
    }

    /// AVX-512 is only ever run where the CPU has it: elsewhere (this
    /// host) `detect` never picks it and asking for it gives portable.
    /// (It runs for real in Bochs: tests/csa_avx512_bochs.rs.)
    #[test]
    fn avx512_only_where_the_cpu_has_it() {
        assert!(Simd::detect().available());
        for s in [Simd::Avx512, Simd::Avx512Vbmi] {
            assert_eq!(s.lanes(), BATCH_SIZE);
            let got = Batch::with_simd(s).simd();
            if s.available() {
                assert_eq!(got, s);
            } else {
                assert_eq!(got, Simd::Portable);
                assert_ne!(Simd::detect(), s);
            }
        }
        if Simd::Avx512Vbmi.available() {
            assert_eq!(Simd::detect(), Simd::Avx512Vbmi);
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn transpose_is_bit_planes() {
        let mut v = vec![0u8; ROWS * BATCH_SIZE];
        for l in 0..64 {
            v[l] = (l * 7 + 3) as u8;
        }
        let p = planes_of_row::<u64>(&v, 0);
        // Every lane's byte is recovered from the planes at some bit
        // position, and each plane has the popcount of its bit.
        for b in 0..8 {
            let want = (0..64)
                .filter(|&l| ((l * 7 + 3) as u8 >> b) & 1 == 1)
                .count();
            assert_eq!(p[b].count_ones() as usize, want);
        }
        let mut out = vec![0u8; ROWS * BATCH_SIZE];
        store_planes(p, &mut out, 0);
        assert_eq!(&out[..64], &v[..64]);
    }

    /// Runs whose longest payload is short of 184 bytes (fewer rows
    /// gathered and scattered), short payloads beside full ones, and
    /// partial runs: every engine gives the scalar reference's bytes.
    #[test]
    fn short_payloads_and_partial_runs_agree_with_scalar() {
        let keys = Keys::new(
            [0x12, 0x34, 0x56, 0x9c, 0x78, 0x9a, 0xbc, 0xce],
            [0x21, 0x43, 0x65, 0xc9, 0x87, 0xa9, 0xcb, 0xfb],
        );
        let cases: [&[usize]; 9] = [
            &[8; 40],
            &[9, 31, 32, 33, 17, 12, 8, 15, 16, 24],
            &[63, 64, 65, 95, 96, 97],
            &[127, 128, 129, 159, 160, 161, 20, 40],
            &[175, 176, 177, 183, 170, 150],
            &[183; 70],
            &[184, 8, 183, 9, 176, 100, 184, 31],
            &[184; 257],
            &[90; 300],
        ];
        let simds = [
            Simd::Portable,
            Simd::Sse2,
            Simd::Avx2,
            Simd::Avx512,
            Simd::Avx512Vbmi,
        ];
        for (k, lens) in cases.iter().enumerate() {
            let clear: Vec<[u8; 188]> = lens
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let mut p = [0xffu8; 188];
                    p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
                    if len < 184 {
                        p[3] = 0x30;
                        p[4] = (183 - len) as u8;
                        if len < 183 {
                            p[5] = 0;
                        }
                    }
                    for (j, b) in p[188 - len..].iter_mut().enumerate() {
                        *b = (i * 37 + j * 11 + k) as u8;
                    }
                    p
                })
                .collect();
            let mut scrambled = clear.clone();
            for (i, p) in scrambled.iter_mut().enumerate() {
                let parity = if i % 5 == 1 {
                    Parity::Odd
                } else {
                    Parity::Even
                };
                super::super::scramble_packet(p, &keys, parity);
            }
            for simd in simds.into_iter().filter(|s| s.available()) {
                let mut b = scrambled.clone();
                let mut batch = Batch::with_simd(simd);
                for p in b.iter_mut() {
                    assert!(matches!(batch.push(p, &keys), Pushed::Queued));
                }
                drop(batch);
                for (i, (got, want)) in b.iter().zip(&clear).enumerate() {
                    assert!(
                        got == want,
                        "{simd:?}, case {k}, packet {i}, payload {}",
                        lens[i]
                    );
                }
            }
        }
    }

    /// Small flushes go through the scalar path, larger ones through the
    /// bitsliced run; both give the same bytes, and the bitsliced run
    /// still handles a few packets right (`raw_batch_flush`).
    #[test]
    fn small_flushes_scalar_or_bitsliced_give_the_same_bytes() {
        let keys = Keys::new(
            [0x12, 0x34, 0x56, 0x9c, 0x78, 0x9a, 0xbc, 0xce],
            [0x21, 0x43, 0x65, 0xc9, 0x87, 0xa9, 0xcb, 0xfb],
        );
        for n in 1..=2 * SCALAR_BELOW {
            let clear: Vec<[u8; 188]> = (0..n)
                .map(|i| {
                    let mut p = [0u8; 188];
                    for (j, b) in p.iter_mut().enumerate() {
                        *b = (i * 31 + j * 131 + 7) as u8;
                    }
                    p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
                    p
                })
                .collect();
            let mut scrambled = clear.clone();
            for (i, p) in scrambled.iter_mut().enumerate() {
                let parity = if i % 3 == 0 {
                    Parity::Odd
                } else {
                    Parity::Even
                };
                super::super::scramble_packet(p, &keys, parity);
            }
            for simd in [Simd::Portable, Simd::detect()] {
                let mut a = scrambled.clone();
                let _ = raw_batch_flush(Engine::with_simd(simd), &mut a, &keys);
                let mut b = scrambled.clone();
                let mut batch = Batch::with_engine(Engine::with_simd(simd));
                for p in b.iter_mut() {
                    let _ = batch.push(p, &keys);
                }
                batch.flush();
                drop(batch);
                assert!(a == clear, "bitsliced, {n} packets, {simd:?}");
                assert!(b == clear, "batch, {n} packets, {simd:?}");
            }
        }
    }
}
