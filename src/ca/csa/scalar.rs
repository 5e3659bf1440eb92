//! The scalar reference: one packet payload at a time, written to be read
//! beside the public descriptions of CSA. The batch engine must agree with
//! it bit for bit (tests check both against libdvbcsa).

use super::tables::{
    BLOCK_PERM, BLOCK_SBOX, EXTRA_B_INPUTS, KEY_PERM, STREAM_SBOX, STREAM_SBOX_INPUTS,
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
        let s = BLOCK_SBOX[(k ^ r[6]) as usize];
        let p = BLOCK_PERM[s as usize];
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
    x: u8,
    y: u8,
    z: u8,
    d: u8,
    e: u8,
    f: u8,
    p: bool,
    q: bool,
    r: u8,
}

impl Stream {
    /// Load the control word and run the 32 initialisation clocks that mix
    /// in the first 8 bytes of the scrambled payload.
    fn new(cw: &[u8; 8], first: &[u8; 8]) -> Stream {
        let mut s = Stream {
            a: 0,
            b: 0,
            x: 0,
            y: 0,
            z: 0,
            d: 0,
            e: 0,
            f: 0,
            p: false,
            q: false,
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
    fn bit(reg: u64, (i, b): (usize, u32)) -> u8 {
        ((reg >> (4 * (i - 1) + b as usize)) & 1) as u8
    }

    #[inline(always)]
    fn nibble(reg: u64, k: usize) -> u8 {
        ((reg >> (4 * (k - 1))) & 15) as u8
    }

    /// One clock; `input` is (nibble into A, nibble into B) during
    /// initialisation. Returns the 2 output bits.
    #[inline(always)]
    fn clock(&mut self, input: Option<(u8, u8)>) -> u8 {
        let mut s = [0u8; 7];
        for (k, inputs) in STREAM_SBOX_INPUTS.iter().enumerate() {
            let idx = inputs.iter().fold(0usize, |acc, &ib| {
                (acc << 1) | Self::bit(self.a, ib) as usize
            });
            s[k] = STREAM_SBOX[k][idx];
        }
        let extra_b = EXTRA_B_INPUTS.iter().fold(0u8, |acc, group| {
            (acc << 1) | group.iter().fold(0, |x, &ib| x ^ Self::bit(self.b, ib))
        });
        let mut next_a1 = Self::nibble(self.a, 10) ^ self.x;
        let mut next_b1 = Self::nibble(self.b, 7) ^ Self::nibble(self.b, 10) ^ self.y;
        if let Some((in_a, in_b)) = input {
            next_a1 ^= self.d ^ in_a;
            next_b1 ^= in_b;
        }
        if self.p {
            next_b1 = ((next_b1 << 1) | (next_b1 >> 3)) & 15;
        }
        self.d = self.e ^ self.z ^ extra_b;
        let next_e = self.f;
        if self.q {
            let sum = self.z + self.e + self.r;
            self.r = sum >> 4;
            self.f = sum & 15;
        } else {
            self.f = self.e;
        }
        self.e = next_e;
        const MASK: u64 = (1 << 40) - 1;
        self.a = ((self.a << 4) | u64::from(next_a1)) & MASK;
        self.b = ((self.b << 4) | u64::from(next_b1)) & MASK;
        let bit = |v: u8, n: u32| (v >> n) & 1;
        self.x = bit(s[3], 0) << 3 | bit(s[2], 0) << 2 | bit(s[1], 1) << 1 | bit(s[0], 1);
        self.y = bit(s[5], 0) << 3 | bit(s[4], 0) << 2 | bit(s[3], 1) << 1 | bit(s[2], 1);
        self.z = bit(s[1], 0) << 3 | bit(s[0], 0) << 2 | bit(s[5], 1) << 1 | bit(s[4], 1);
        self.p = bit(s[6], 1) == 1;
        self.q = bit(s[6], 0) == 1;
        let d = self.d;
        (bit(d, 3) ^ bit(d, 2)) << 1 | (bit(d, 1) ^ bit(d, 0))
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
