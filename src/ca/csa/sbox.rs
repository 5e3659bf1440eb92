//! Boolean circuits for the stream cipher's seven 5→2-bit S-boxes, for the
//! bitsliced engine. Generated from `tables::STREAM_SBOX` by Shannon
//! decomposition with shared sub-functions; `tests::circuits_match_tables`
//! checks every input of every box.

use super::bitslice::Word;

/// S-box 1: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s1<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.not();
    let t2 = t1.andnot(x1);
    let t3 = t1.or(x1.not());
    let t4 = t2.xor(t3);
    let t5 = t2.xor(x2.and(t4));
    let t6 = t3.xor(x2);
    let t7 = t5.xor(t6);
    let t8 = t5.xor(x3.and(t7));
    let t9 = t4.xor(x2.and(t1));
    let t10 = x0.or(x1.not());
    let t11 = t10.xor(x2);
    let t12 = t9.xor(t11);
    let t13 = t9.xor(x3.and(t12));
    let t14 = t8.xor(t13);
    let t15 = t8.xor(x4.and(t14));
    let t16 = x1.xor(x2.and(x0));
    let t17 = t2.xor(x2.and(x0));
    let t18 = t16.xor(t17);
    let t19 = t16.xor(x3.and(t18));
    let t20 = t4.xor(x2.and(x0));
    let t21 = t6.not();
    let t22 = t20.xor(t21);
    let t23 = t20.xor(x3.and(t22));
    let t24 = t19.xor(t23);
    let t25 = t19.xor(x4.and(t24));
    (t15, t25)
}

/// S-box 2: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s2<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.not();
    let t2 = t1.xor(x1);
    let t3 = t1.or(x1.not());
    let t4 = t2.xor(t3);
    let t5 = t2.xor(x2.and(t4));
    let t6 = t5.xor(x3);
    let t7 = x0.or(x1.not());
    let t8 = t2.xor(t7);
    let t9 = t2.xor(x2.and(t8));
    let t10 = t3.not();
    let t11 = t10.xor(t1);
    let t12 = t10.xor(x2.and(t11));
    let t13 = t9.xor(t12);
    let t14 = t9.xor(x3.and(t13));
    let t15 = t6.xor(t14);
    let t16 = t6.xor(x4.and(t15));
    let t17 = x1.not();
    let t18 = t17.xor(x2.and(t1));
    let t19 = t7.xor(x2);
    let t20 = t18.xor(t19);
    let t21 = t18.xor(x3.and(t20));
    let t22 = t7.xor(x2.and(x0));
    let t23 = t22.xor(x3);
    let t24 = t21.xor(t23);
    let t25 = t21.xor(x4.and(t24));
    (t16, t25)
}

/// S-box 3: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s3<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.not();
    let t2 = t1.xor(x1);
    let t3 = t1.or(x1.not());
    let t4 = t2.xor(t3);
    let t5 = t2.xor(x2.and(t4));
    let t6 = t3.not();
    let t7 = t6.xor(t1);
    let t8 = t6.xor(x2.and(t7));
    let t9 = t5.xor(t8);
    let t10 = t5.xor(x3.and(t9));
    let t11 = t7.not();
    let t12 = t11.xor(x2);
    let t13 = t2.xor(x2);
    let t14 = t12.xor(t13);
    let t15 = t12.xor(x3.and(t14));
    let t16 = t10.xor(t15);
    let t17 = t10.xor(x4.and(t16));
    let t18 = t14.not();
    let t19 = t18.xor(x2.and(x0));
    let t20 = t19.xor(x3);
    let t21 = t20.xor(x4);
    (t17, t21)
}

/// S-box 4: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s4<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.not();
    let t2 = t1.or(x1);
    let t3 = t2.xor(x0);
    let t4 = t2.xor(x2.and(t3));
    let t5 = t2.not();
    let t6 = t1.xor(x1);
    let t7 = t5.xor(t6);
    let t8 = t5.xor(x2.and(t7));
    let t9 = t4.xor(t8);
    let t10 = t4.xor(x3.and(t9));
    let t11 = t7.not();
    let t12 = t11.xor(x2);
    let t13 = t6.not();
    let t14 = t12.xor(t13);
    let t15 = t12.xor(x3.and(t14));
    let t16 = t10.xor(t15);
    let t17 = t10.xor(x4.and(t16));
    let t18 = t15.not();
    let t19 = t18.xor(t10);
    let t20 = t18.xor(x4.and(t19));
    (t17, t20)
}

/// S-box 5: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s5<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.not();
    let t2 = t1.andnot(x1);
    let t3 = t2.or(x2);
    let t4 = x1.and(t1);
    let t5 = x1.xor(t4);
    let t6 = x1.xor(x2.and(t5));
    let t7 = t3.xor(t6);
    let t8 = t3.xor(x3.and(t7));
    let t9 = t5.not();
    let t10 = t9.xor(x2.and(t1));
    let t11 = x1.xor(x2.and(t1));
    let t12 = t10.xor(t11);
    let t13 = t10.xor(x3.and(t12));
    let t14 = t8.xor(t13);
    let t15 = t8.xor(x4.and(t14));
    let t16 = t5.xor(t1);
    let t17 = t5.xor(x2.and(t16));
    let t18 = t2.not();
    let t19 = t18.xor(x2.and(t9));
    let t20 = t17.xor(t19);
    let t21 = t17.xor(x3.and(t20));
    let t22 = t16.not();
    let t23 = t22.xor(x2.and(x1));
    let t24 = x1.not();
    let t25 = t1.xor(t24);
    let t26 = t1.xor(x2.and(t25));
    let t27 = t23.xor(t26);
    let t28 = t23.xor(x3.and(t27));
    let t29 = t21.xor(t28);
    let t30 = t21.xor(x4.and(t29));
    (t15, t30)
}

/// S-box 6: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s6<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x1.xor(x2.and(x0));
    let t2 = x0.not();
    let t3 = x1.and(t2);
    let t4 = t3.xor(x2);
    let t5 = t1.xor(t4);
    let t6 = t1.xor(x3.and(t5));
    let t7 = t3.not();
    let t8 = t7.xor(x2.and(x0));
    let t9 = t2.xor(x1);
    let t10 = t9.xor(x2);
    let t11 = t8.xor(t10);
    let t12 = t8.xor(x3.and(t11));
    let t13 = t6.xor(t12);
    let t14 = t6.xor(x4.and(t13));
    let t15 = x0.xor(x2.and(t7));
    let t16 = t9.not();
    let t17 = x0.or(x1);
    let t18 = t16.xor(t17);
    let t19 = t16.xor(x2.and(t18));
    let t20 = t15.xor(t19);
    let t21 = t15.xor(x3.and(t20));
    let t22 = x0.andnot(x1);
    let t23 = t22.xor(x2);
    let t24 = t23.xor(x3.and(t4));
    let t25 = t21.xor(t24);
    let t26 = t21.xor(x4.and(t25));
    (t14, t26)
}

/// S-box 7: inputs x4 (most significant) … x0; returns (bit 1, bit 0).
#[inline(always)]
pub fn s7<W: Word>(x4: W, x3: W, x2: W, x1: W, x0: W) -> (W, W) {
    let t1 = x0.or(x1);
    let t2 = t1.xor(x2);
    let t3 = x0.not();
    let t4 = t3.xor(x1);
    let t5 = t4.xor(x2);
    let t6 = t2.xor(t5);
    let t7 = t2.xor(x3.and(t6));
    let t8 = t6.not();
    let t9 = x1.xor(t8);
    let t10 = x1.xor(x2.and(t9));
    let t11 = x1.not();
    let t12 = t11.xor(x2.and(t8));
    let t13 = t10.xor(t12);
    let t14 = t10.xor(x3.and(t13));
    let t15 = t7.xor(t14);
    let t16 = t7.xor(x4.and(t15));
    let t17 = x0.andnot(x1);
    let t18 = t17.xor(t4);
    let t19 = t17.xor(x2.and(t18));
    let t20 = t17.not();
    let t21 = t20.xor(x2.and(t9));
    let t22 = t19.xor(t21);
    let t23 = t19.xor(x3.and(t22));
    let t24 = t19.not();
    let t25 = t4.not();
    let t26 = t25.xor(x2.and(t9));
    let t27 = t24.xor(t26);
    let t28 = t24.xor(x3.and(t27));
    let t29 = t23.xor(t28);
    let t30 = t23.xor(x4.and(t29));
    (t16, t30)
}
