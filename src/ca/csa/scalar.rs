//! The scalar reference: one packet payload at a time, written to be read
//! beside the public descriptions of CSA. The batch engine must agree with
//! it bit for bit (tests check both against libdvbcsa).

use super::tables::{
    BLOCK_PERM, BLOCK_SBOX, EXTRA_B_INPUTS, KEY_PERM, STREAM_SBOX, STREAM_SBOX_INPUTS,
};

/// The block S-box and the permutation of its output in one load:
/// `S[x] | perm(S[x]) << 8` (one dependent load per round instead of two).
const BLOCK_SBOX_PERM: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut x = 0;
    while x < 256 {
        let s = BLOCK_SBOX[x];
        t[x] = s as u16 | (BLOCK_PERM[s as usize] as u16) << 8;
        x += 1;
    }
    t
};

/// The stream S-boxes' inputs gathered a byte of the A register at a time
/// (`Stream::a`: register k at bits 4(k-1)..4k): entry `[j][v]` sets, for
/// each bit of byte value v at byte j of A, the index bit it feeds; box k's
/// 5-bit index is at bits 5k..5k+5 (most significant input at the top).
/// Every A bit feeds at most one box input, so the bytes' entries OR up.
const SBOX_INDEX_OF_A: [[u64; 256]; 5] = {
    let mut t = [[0u64; 256]; 5];
    let mut k = 0;
    while k < 7 {
        let mut i = 0;
        while i < 5 {
            let (reg, bit) = STREAM_SBOX_INPUTS[k][i];
            let pos = 4 * (reg - 1) + bit as usize;
            let (j, b) = (pos / 8, pos % 8);
            let mut v = 0;
            while v < 256 {
                if (v >> b) & 1 == 1 {
                    t[j][v] |= 1 << (5 * k + 4 - i);
                }
                v += 1;
            }
            i += 1;
        }
        k += 1;
    }
    t
};

/// Where the two output bits of each stream S-box go (bit 1, bit 0), in
/// the word `x | y << 4 | z << 8 | p << 12 | q << 13` the clock keeps.
const SBOX_OUT_BITS: [(u32, u32); 7] = [
    (0, 10),  // s1: x0, z2
    (1, 11),  // s2: x1, z3
    (4, 2),   // s3: y0, x2
    (5, 3),   // s4: y1, x3
    (8, 6),   // s5: z0, y2
    (9, 7),   // s6: z1, y3
    (12, 13), // s7: p, q
];

/// Two S-boxes at once: entry `[i]` for the 10-bit index of boxes k, k+1
/// (box k in the low 5 bits), their outputs placed as `SBOX_OUT_BITS`.
const fn sbox_pair(k: usize) -> [u16; 1024] {
    let mut t = [0u16; 1024];
    let mut i = 0;
    while i < 1024 {
        let mut v = 0u16;
        let mut m = 0;
        while m < 2 && k + m < 7 {
            let s = STREAM_SBOX[k + m][(i >> (5 * m)) & 31];
            let (hi, lo) = SBOX_OUT_BITS[k + m];
            v |= ((s as u16 >> 1) & 1) << hi | (s as u16 & 1) << lo;
            m += 1;
        }
        t[i] = v;
        i += 1;
    }
    t
}
const SBOX_OUT: [[u16; 1024]; 4] = [sbox_pair(0), sbox_pair(2), sbox_pair(4), sbox_pair(6)];

/// The extra nibble (`EXTRA_B_INPUTS`, bit 3 first) gathered a byte of the
/// B register at a time: entry `[j][v]` is the XOR contribution of value v
/// at byte j + 1 of B (registers 3..=9 live in bytes 1..=4).
const EXTRA_OF_B: [[u8; 256]; 4] = {
    let mut t = [[0u8; 256]; 4];
    let mut g = 0;
    while g < 4 {
        let mut i = 0;
        while i < 4 {
            let (reg, bit) = EXTRA_B_INPUTS[g][i];
            let pos = 4 * (reg - 1) + bit as usize;
            let (j, b) = (pos / 8 - 1, pos % 8);
            let mut v = 0;
            while v < 256 {
                if (v >> b) & 1 == 1 {
                    t[j][v] ^= 1 << (3 - g);
                }
                v += 1;
            }
            i += 1;
        }
        g += 1;
    }
    t
};

/// The 56 round keys of the block cipher, derived from the control word.
pub fn block_round_keys(cw: &[u8; 8]) -> [u8; 56] {
    // The control word is the last group of 8 round keys; each earlier group
    // is the key permutation applied to the next one, and group i is XORed
    // with i.
    let mut groups = [[0u8; 8]; 7];
    groups[6] = *cw;
    for g in (0..6).rev() {
        groups[g] = permute_key(&groups[g + 1]);
    }
    let mut kk = [0u8; 56];
    for (g, group) in groups.iter().enumerate() {
        for (j, b) in group.iter().enumerate() {
            kk[g * 8 + j] = b ^ g as u8;
        }
    }
    kk
}

fn permute_key(k: &[u8; 8]) -> [u8; 8] {
    let x = u64::from_be_bytes(*k);
    let mut y = 0u64;
    for (n, &to) in KEY_PERM.iter().enumerate() {
        // Bit n counted from the most significant bit.
        let bit = (x >> (63 - n)) & 1;
        y |= bit << (63 - (to as u32 - 1));
    }
    y.to_be_bytes()
}

/// Block cipher, deciphering direction (rounds 56 down to 1).
pub fn block_decrypt(kk: &[u8; 56], block: &[u8; 8]) -> [u8; 8] {
    let mut r = *block; // r[0] is R1 … r[7] is R8
    for &k in kk.iter().rev() {
        let sp = BLOCK_SBOX_PERM[(k ^ r[6]) as usize];
        let (s, p) = (sp as u8, (sp >> 8) as u8);
        let t = r[7] ^ s;
        r = [t, r[0], r[1] ^ t, r[2] ^ t, r[3] ^ t, r[4], r[5] ^ p, r[6]];
    }
    r
}

/// Block cipher, enciphering direction (rounds 1 to 56).
pub fn block_encrypt(kk: &[u8; 56], block: &[u8; 8]) -> [u8; 8] {
    let mut r = *block;
    for &k in kk.iter() {
        let s = BLOCK_SBOX[(k ^ r[7]) as usize];
        let p = BLOCK_PERM[s as usize];
        let r1 = r[0];
        r = [
            r[1],
            r[2] ^ r1,
            r[3] ^ r1,
            r[4] ^ r1,
            r[5],
            r[6] ^ p,
            r[7],
            r1 ^ s,
        ];
    }
    r
}

/// Stream cipher state: two 10-nibble shift registers A and B, the combiner
/// registers X, Y, Z, D, E, F and the bits p, q, r.
struct Stream {
    /// Register k (1..=10) is the nibble at bits 4(k-1)..4k.
    a: u64,
    b: u64,
    /// X, Y, Z, p and q as the S-boxes left them: `x | y << 4 | z << 8 |
    /// p << 12 | q << 13` (`SBOX_OUT_BITS`).
    xyzpq: u32,
    d: u8,
    e: u8,
    f: u8,
    r: u8,
}

impl Stream {
    /// Load the control word and run the 32 initialisation clocks that mix
    /// in the first 8 bytes of the scrambled payload.
    fn new(cw: &[u8; 8], first: &[u8; 8]) -> Stream {
        let mut s = Stream {
            a: 0,
            b: 0,
            xyzpq: 0,
            d: 0,
            e: 0,
            f: 0,
            r: 0,
        };
        for i in 0..4 {
            s.a |= u64::from(cw[i] >> 4) << (8 * i) | u64::from(cw[i] & 15) << (8 * i + 4);
            s.b |= u64::from(cw[4 + i] >> 4) << (8 * i) | u64::from(cw[4 + i] & 15) << (8 * i + 4);
        }
        for &byte in first {
            let (hi, lo) = (byte >> 4, byte & 15);
            s.clock(Some((hi, lo)));
            s.clock(Some((lo, hi)));
            s.clock(Some((hi, lo)));
            s.clock(Some((lo, hi)));
        }
        s
    }

    #[inline(always)]
    fn nibble(reg: u64, k: usize) -> u8 {
        ((reg >> (4 * (k - 1))) & 15) as u8
    }

    /// One clock; `input` is (nibble into A, nibble into B) during
    /// initialisation. Returns the 2 output bits. Table lookups gather the
    /// S-box inputs (`STREAM_SBOX_INPUTS`) and the extra nibble
    /// (`EXTRA_B_INPUTS`) a register byte at a time; the data-dependent
    /// choices (rotate on p, add on q) are masks, not branches.
    #[inline(always)]
    fn clock(&mut self, input: Option<(u8, u8)>) -> u8 {
        let (a, b) = (self.a, self.b);
        let byte = |reg: u64, j: usize| ((reg >> (8 * j)) & 0xff) as usize;
        let idx = (0..5).fold(0u64, |acc, j| acc | SBOX_INDEX_OF_A[j][byte(a, j)]);
        let sbox_out = (0..4).fold(0u32, |acc, m| {
            acc | u32::from(SBOX_OUT[m][((idx >> (10 * m)) & 1023) as usize])
        });
        let extra_b = (0..4).fold(0u8, |acc, j| acc ^ EXTRA_OF_B[j][byte(b, j + 1)]);
        let o = self.xyzpq;
        let (x, y, z) = ((o & 15) as u8, (o >> 4 & 15) as u8, (o >> 8 & 15) as u8);
        let p_mask = 0u8.wrapping_sub((o >> 12 & 1) as u8);
        let q_mask = 0u8.wrapping_sub((o >> 13 & 1) as u8);
        let mut next_a1 = Self::nibble(a, 10) ^ x;
        let mut next_b1 = Self::nibble(b, 7) ^ Self::nibble(b, 10) ^ y;
        if let Some((in_a, in_b)) = input {
            next_a1 ^= self.d ^ in_a;
            next_b1 ^= in_b;
        }
        // B1 rotated left by one bit when p.
        let rotated = ((next_b1 << 1) | (next_b1 >> 3)) & 15;
        next_b1 = (rotated & p_mask) | (next_b1 & !p_mask);
        self.d = self.e ^ z ^ extra_b;
        let next_e = self.f;
        // F = Z + E + r (carry into r) when q, else E.
        let sum = z + self.e + self.r;
        self.f = (sum & 15 & q_mask) | (self.e & !q_mask);
        self.r = (sum >> 4 & q_mask) | (self.r & !q_mask);
        self.e = next_e;
        const MASK: u64 = (1 << 40) - 1;
        self.a = ((a << 4) | u64::from(next_a1)) & MASK;
        self.b = ((b << 4) | u64::from(next_b1)) & MASK;
        self.xyzpq = sbox_out;
        let d = self.d;
        (((d >> 3) ^ (d >> 2)) & 1) << 1 | (((d >> 1) ^ d) & 1)
    }

    /// The next 8 keystream bytes.
    fn next8(&mut self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for o in out.iter_mut() {
            for _ in 0..4 {
                *o = (*o << 2) | self.clock(None);
            }
        }
        out
    }
}

fn xor8(a: &[u8; 8], b: &[u8; 8]) -> [u8; 8] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn block_at(data: &[u8], i: usize) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[8 * i..8 * i + 8]);
    b
}

/// Descramble a payload in place. Payloads shorter than 8 bytes are sent
/// in clear by the scrambler and are left as they are.
pub fn decrypt_payload(cw: &[u8; 8], kk: &[u8; 56], data: &mut [u8]) {
    if data.len() < 8 {
        return;
    }
    let n = data.len() / 8;
    let residue = data.len() % 8;
    let mut stream = Stream::new(cw, &block_at(data, 0));
    let mut ib = block_at(data, 0);
    for i in 0..n {
        let clear = block_decrypt(kk, &ib);
        ib = if i + 1 < n {
            xor8(&block_at(data, i + 1), &stream.next8())
        } else {
            [0; 8]
        };
        data[8 * i..8 * i + 8].copy_from_slice(&xor8(&clear, &ib));
    }
    if residue > 0 {
        let ks = stream.next8();
        for (d, k) in data[8 * n..].iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

/// Scramble a payload in place (the inverse of `decrypt_payload`).
pub fn encrypt_payload(cw: &[u8; 8], kk: &[u8; 56], data: &mut [u8]) {
    if data.len() < 8 {
        return;
    }
    let n = data.len() / 8;
    let residue = data.len() % 8;
    // Block cipher in reverse chaining order: each block is enciphered after
    // the following one's result has been XORed in.
    let mut next = [0u8; 8];
    for i in (0..n).rev() {
        next = block_encrypt(kk, &xor8(&block_at(data, i), &next));
        data[8 * i..8 * i + 8].copy_from_slice(&next);
    }
    let mut stream = Stream::new(cw, &block_at(data, 0));
    for i in 1..n {
        let ks = stream.next8();
        for (d, k) in data[8 * i..8 * i + 8].iter_mut().zip(ks) {
            *d ^= k;
        }
    }
    if residue > 0 {
        let ks = stream.next8();
        for (d, k) in data[8 * n..].iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}
