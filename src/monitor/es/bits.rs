//! A big-endian bit reader over a byte slice that never panics: reading
//! past the end yields `None`, so a truncated or garbage frame ends the
//! parse instead of the process.

#[derive(Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    /// The next `n` bits (n ≤ 32) as an unsigned number.
    pub(crate) fn read(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        if n == 0 {
            return Some(0);
        }
        let end = self.pos.checked_add(n as usize)?;
        if end > self.data.len() * 8 {
            return None;
        }
        // Up to 8 bytes from the current one, big-endian: off + n ≤ 39 bits.
        let byte = self.pos / 8;
        let avail = (self.data.len() - byte).min(8);
        let mut w = [0u8; 8];
        w[..avail].copy_from_slice(&self.data[byte..byte + avail]);
        let off = (self.pos % 8) as u32;
        let v = (u64::from_be_bytes(w) << off) >> (64 - n);
        self.pos = end;
        Some(v as u32)
    }

    pub(crate) fn flag(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len() * 8 {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Bits read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_bytes_and_stops_at_the_end() {
        let mut r = BitReader::new(&[0b1010_1100, 0b0101_0011]);
        assert_eq!(r.read(3), Some(0b101));
        assert_eq!(r.read(7), Some(0b011_0001));
        assert_eq!(r.read(6), Some(0b010011));
        assert_eq!(r.read(1), None);
        let mut r = BitReader::new(&[0xFF; 5]);
        assert_eq!(r.read(32), Some(u32::MAX));
        assert_eq!(r.read(9), None);
        assert_eq!(r.read(8), Some(0xFF));
    }
}
