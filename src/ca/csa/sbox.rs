//! Boolean circuits for the stream cipher's seven 5→2-bit S-boxes, for the
//! bitsliced engine, generated from `tables::STREAM_SBOX` by
//! `scripts/csa-sbox-circuits.py`: each output bit split on one input into
//! two 4-input functions (f0 ^ x·(f0^f1), f1 ^ ¬x·(f0^f1) or the
//! multiplexer, whichever is smallest), each 4-input function a smallest
//! formula over and/or/xor/andnot/not found by exhaustive search, shared
//! between the two outputs. 140 gates for the seven boxes (the previous
//! Shannon circuits: 248), the stream cipher's largest cost.
//! `bitslice::tests::circuits_match_tables` checks every input of every box.

use super::bitslice::Word;

/// S-box 1: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 20 gates.
#[inline(always)]
pub fn s1<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.xor(x4);
    let t2 = x1.and(t1);
    let t3 = x2.xor(t2);
    let t4 = t3.not();
    let t5 = x1.and(x4);
    let t6 = x2.xor(t5);
    let t7 = x1.or(x4);
    let t8 = x0.xor(t7);
    let t9 = t6.or(t8);
    let t10 = t4.xor(t9.andnot(x3));
    let t11 = x2.xor(x4);
    let t12 = x0.and(t11);
    let t13 = x1.xor(t12);
    let t14 = x2.and(x4);
    let t15 = x1.xor(t14);
    let t16 = t1.andnot(t15);
    let t17 = t16.not();
    let t18 = t13.xor(x3.and(t17));
    (t10, t18)
}

/// S-box 2: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 22 gates.
#[inline(always)]
pub fn s2<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.and(x1);
    let t2 = x0.xor(x4);
    let t3 = x1.or(t2);
    let t4 = x2.xor(x4);
    let t5 = t3.andnot(t4);
    let t6 = t1.xor(t5);
    let t7 = x0.or(x1);
    let t8 = x2.xor(t7);
    let t9 = x4.and(t8);
    let t10 = t9.not();
    let t11 = t6.xor(t10.andnot(x3));
    let t12 = x1.and(x4);
    let t13 = x2.xor(t12);
    let t14 = t13.andnot(t2);
    let t15 = x1.xor(t14);
    let t16 = t15.not();
    let t17 = x1.xor(x2);
    let t18 = x0.and(t17);
    let t19 = x4.or(t18);
    let t20 = t16.xor(x3.and(t19));
    (t11, t20)
}

/// S-box 3: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 17 gates.
#[inline(always)]
pub fn s3<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x4.andnot(x3);
    let t2 = x1.xor(t1);
    let t3 = x3.xor(x4);
    let t4 = t3.andnot(x0);
    let t5 = t2.or(t4);
    let t6 = x0.xor(t5);
    let t7 = t6.not();
    let t8 = x0.xor(x3);
    let t9 = x4.or(t8);
    let t10 = x1.or(t9);
    let t11 = t7.xor(x2.and(t10));
    let t12 = x1.andnot(x0);
    let t13 = x4.xor(t12);
    let t14 = x3.xor(t13);
    let t15 = t14.xor(x2.and(x0));
    (t11, t15)
}

/// S-box 4: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 17 gates.
#[inline(always)]
pub fn s4<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.andnot(x1);
    let t2 = x2.xor(t1);
    let t3 = t2.andnot(x3);
    let t4 = x1.xor(t3);
    let t5 = x0.xor(t4);
    let t6 = x1.andnot(x0);
    let t7 = x2.or(t6);
    let t8 = x0.xor(x2);
    let t9 = t8.andnot(x1);
    let t10 = x3.or(t9);
    let t11 = t7.xor(t10);
    let t12 = t11.not();
    let t13 = t5.xor(t12.andnot(x4));
    let t14 = t5.not();
    let t15 = t14.xor(x4.and(t11));
    (t13, t15)
}

/// S-box 5: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 24 gates.
#[inline(always)]
pub fn s5<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.andnot(x1);
    let t2 = x4.or(t1);
    let t3 = x0.xor(t2);
    let t4 = x2.and(t3);
    let t5 = x1.xor(t4);
    let t6 = x0.xor(x1);
    let t7 = x2.or(x4);
    let t8 = x0.xor(t7);
    let t9 = t6.and(t8);
    let t10 = t9.not();
    let t11 = t5.xor(t10.andnot(x3));
    let t12 = x2.andnot(x4);
    let t13 = x0.xor(x2);
    let t14 = x1.xor(x4);
    let t15 = t13.andnot(t14);
    let t16 = t12.or(t15);
    let t17 = x0.xor(t16);
    let t18 = x4.andnot(x0);
    let t19 = x0.andnot(x2);
    let t20 = x1.xor(t19);
    let t21 = t18.or(t20);
    let t22 = t17.xor(x3.and(t21));
    (t11, t22)
}

/// S-box 6: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 20 gates.
#[inline(always)]
pub fn s6<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.or(x3);
    let t2 = x2.and(t1);
    let t3 = x0.and(x3);
    let t4 = x4.andnot(t3);
    let t5 = t2.xor(t4);
    let t6 = x3.xor(x4);
    let t7 = x0.and(t6);
    let t8 = t7.not();
    let t9 = t5.xor(x1.and(t8));
    let t10 = x2.andnot(x3);
    let t11 = x0.xor(t10);
    let t12 = x2.andnot(x4);
    let t13 = x0.and(x4);
    let t14 = x3.or(t13);
    let t15 = x0.xor(t14);
    let t16 = t12.or(t15);
    let t17 = x0.xor(t16);
    let t18 = t11.xor(x1.and(t17));
    (t9, t18)
}

/// S-box 7: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
/// 20 gates.
#[inline(always)]
pub fn s7<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.xor(x2);
    let t2 = t1.andnot(x4);
    let t3 = x3.xor(t2);
    let t4 = x0.or(x4);
    let t5 = x0.xor(x3);
    let t6 = x4.andnot(x2);
    let t7 = t5.or(t6);
    let t8 = t4.and(t7);
    let t9 = x4.xor(t8);
    let t10 = t9.not();
    let t11 = t3.xor(x1.and(t10));
    let t12 = x2.or(x3);
    let t13 = x4.xor(t12);
    let t14 = x0.xor(t13);
    let t15 = x3.and(x4);
    let t16 = x2.xor(t15);
    let t17 = x0.or(t16);
    let t18 = t14.xor(x1.and(t17));
    (t11, t18)
}
