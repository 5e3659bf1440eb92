//! `testca`: capbox's documented test CA system.
//!
//! Operators' CA systems are proprietary, so the whole ECM path (ECM section
//! → card manager → pcscd → card → control words → descrambler) is tested
//! with this one. It is deliberately simple and fully specified here, so the
//! scrambler side (tests, `examples/testca_scramble.rs`) and the card side
//! (the virtual card on vsmartcard-vpcd) can be written independently.
//!
//! ## Sections
//! Private sections without CRC (`section_syntax_indicator` 0), like real
//! CA systems' ECMs:
//!
//! ```text
//! ECM  table_id 0x80 (even crypto period on air) or 0x81 (odd)
//!      0x80|0x81  0x70|len_hi  len_lo      section header, length ≤ 253
//!      'T' 'C'    version=1    key_index    4 bytes
//!      period u32 BE                        crypto period number
//!      service_id u16 BE                    the service the words are for
//!      AES-128-CBC, zero IV (card key[key_index], 32 bytes):
//!        block 0: even CW (8) | odd CW (8)
//!        block 1: period u32 | service_id u16 | "testca" (6) | access u32
//!                 where access = the day number (days since 1970-01-01)
//!                 the ECM was made; the card refuses it when its
//!                 entitlement ends before that day.
//! EMM  table_id 0x82 (unique address)
//!      0x82       0x70|len_hi  len_lo
//!      'T' 'C'    version=1    key_index
//!      address u32 BE                       the card the EMM is for
//!      AES-128-CBC, zero IV (card key[key_index], 16 bytes):
//!        address u32 | entitled_until_day u32 | "testcaEM" (8)
//! ```
//! Block 1 of an ECM and the tail of an EMM are the integrity check: a
//! wrong key or garbage decrypts to anything but "testca".
//!
//! ## Card APDUs (CLA 0x80, ISO 7816-4 case 2/3/4)
//! - `80 10 00 00 07` GET INFO → caid u16 | address u32 | entitled_until
//!   day u32 ... (first 7 bytes: caid, address, version 1) + 90 00.
//! - `80 20 00 00 Lc <ECM section> 10` → even CW | odd CW + 90 00.
//! - `80 30 00 00 Lc <EMM section>` → 90 00.
//!
//! Status words: 6A 80 malformed section, 69 82 integrity check failed
//! (wrong key or garbage), 69 85 not entitled (entitlement ended),
//! 6A 88 EMM for another address, 6D 00 unknown INS, 6E 00 unknown CLA.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;

/// CA_system_id of testca, from the top of the range, which no broadcast
/// system uses.
pub const CAID: u16 = 0xFFFE;
pub const ECM_EVEN: u8 = 0x80;
pub const ECM_ODD: u8 = 0x81;
pub const EMM_UNIQUE: u8 = 0x82;
pub const VERSION: u8 = 1;

pub const CLA: u8 = 0x80;
pub const INS_INFO: u8 = 0x10;
pub const INS_ECM: u8 = 0x20;
pub const INS_EMM: u8 = 0x30;

pub const SW_OK: u16 = 0x9000;
pub const SW_MALFORMED: u16 = 0x6A80;
pub const SW_INTEGRITY: u16 = 0x6982;
pub const SW_NOT_ENTITLED: u16 = 0x6985;
pub const SW_OTHER_ADDRESS: u16 = 0x6A88;
pub const SW_BAD_INS: u16 = 0x6D00;
pub const SW_BAD_CLA: u16 = 0x6E00;

/// Length of an ECM section: 3 header + 4 + 4 + 2 + 32.
pub const ECM_LEN: usize = 45;
/// Length of an EMM section: 3 header + 4 + 4 + 16.
pub const EMM_LEN: usize = 27;

/// What an ECM carries, in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Ecm {
    /// 0x80 or 0x81: the parity on air when the ECM was sent.
    pub table_id: u8,
    pub key_index: u8,
    pub period: u32,
    pub service_id: u16,
    pub even: [u8; 8],
    pub odd: [u8; 8],
    /// Day number the ECM was made (see the module comment).
    pub access_day: u32,
}

impl std::fmt::Debug for Ecm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Control words never go to logs.
        f.debug_struct("Ecm")
            .field("table_id", &self.table_id)
            .field("key_index", &self.key_index)
            .field("period", &self.period)
            .field("service_id", &self.service_id)
            .field("access_day", &self.access_day)
            .finish_non_exhaustive()
    }
}

/// What an EMM carries, in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emm {
    pub key_index: u8,
    pub address: u32,
    pub entitled_until_day: u32,
}

/// Why a section was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestcaError {
    /// Wrong length, table_id, magic or version.
    Malformed(&'static str),
    /// Decrypted block does not check: wrong key or garbage.
    Integrity,
    /// An EMM for another card.
    OtherAddress,
}

impl TestcaError {
    /// The card's status word for this error.
    pub fn status_word(self) -> u16 {
        match self {
            TestcaError::Malformed(_) => SW_MALFORMED,
            TestcaError::Integrity => SW_INTEGRITY,
            TestcaError::OtherAddress => SW_OTHER_ADDRESS,
        }
    }
}

impl std::fmt::Display for TestcaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestcaError::Malformed(w) => write!(f, "malformed testca section: {w}"),
            TestcaError::Integrity => {
                f.write_str("testca section does not decrypt (wrong card key or garbage)")
            }
            TestcaError::OtherAddress => f.write_str("EMM for another card address"),
        }
    }
}

fn header(table_id: u8, total: usize, key_index: u8) -> Vec<u8> {
    let len = total - 3;
    vec![
        table_id,
        0x70 | (len >> 8) as u8,
        len as u8,
        b'T',
        b'C',
        VERSION,
        key_index,
    ]
}

fn check_header(s: &[u8], table_ids: &[u8], total: usize) -> Result<(), TestcaError> {
    if s.len() < 7 {
        return Err(TestcaError::Malformed("shorter than its header"));
    }
    if !table_ids.contains(&s[0]) {
        return Err(TestcaError::Malformed("table_id"));
    }
    let len = ((s[1] as usize & 0x0F) << 8) | s[2] as usize;
    if len + 3 != s.len() || s.len() != total {
        return Err(TestcaError::Malformed("section_length"));
    }
    if &s[3..5] != b"TC" {
        return Err(TestcaError::Malformed("magic"));
    }
    if s[5] != VERSION {
        return Err(TestcaError::Malformed("version"));
    }
    Ok(())
}

/// AES-128-CBC with a zero IV: chaining makes the integrity block depend
/// on every byte before it.
fn encrypt(key: &[u8; 16], data: &mut [u8]) {
    let c = Aes128::new(GenericArray::from_slice(key));
    let mut prev = [0u8; 16];
    for b in data.chunks_exact_mut(16) {
        for (x, p) in b.iter_mut().zip(prev) {
            *x ^= p;
        }
        c.encrypt_block(GenericArray::from_mut_slice(b));
        prev.copy_from_slice(b);
    }
}

fn decrypt(key: &[u8; 16], data: &mut [u8]) {
    let c = Aes128::new(GenericArray::from_slice(key));
    let mut prev = [0u8; 16];
    for b in data.chunks_exact_mut(16) {
        let mut this = [0u8; 16];
        this.copy_from_slice(b);
        c.decrypt_block(GenericArray::from_mut_slice(b));
        for (x, p) in b.iter_mut().zip(prev) {
            *x ^= p;
        }
        prev = this;
    }
}

/// The ECM section for `e`, encrypted with `key` (the card key `e.key_index`).
pub fn build_ecm(key: &[u8; 16], e: &Ecm) -> Vec<u8> {
    let mut s = header(e.table_id, ECM_LEN, e.key_index);
    s.extend_from_slice(&e.period.to_be_bytes());
    s.extend_from_slice(&e.service_id.to_be_bytes());
    let mut blk = [0u8; 32];
    blk[0..8].copy_from_slice(&e.even);
    blk[8..16].copy_from_slice(&e.odd);
    blk[16..20].copy_from_slice(&e.period.to_be_bytes());
    blk[20..22].copy_from_slice(&e.service_id.to_be_bytes());
    blk[22..28].copy_from_slice(b"testca");
    blk[28..32].copy_from_slice(&e.access_day.to_be_bytes());
    encrypt(key, &mut blk);
    s.extend_from_slice(&blk);
    s
}

/// Key index an ECM or EMM section names (to pick the card key), if the
/// header is readable.
pub fn key_index(section: &[u8]) -> Option<u8> {
    section.get(6).copied()
}

/// Decrypt and check an ECM section with `key` (the card side).
pub fn open_ecm(key: &[u8; 16], s: &[u8]) -> Result<Ecm, TestcaError> {
    check_header(s, &[ECM_EVEN, ECM_ODD], ECM_LEN)?;
    let period = u32::from_be_bytes([s[7], s[8], s[9], s[10]]);
    let service_id = u16::from_be_bytes([s[11], s[12]]);
    let mut blk = [0u8; 32];
    blk.copy_from_slice(&s[13..45]);
    decrypt(key, &mut blk);
    if &blk[22..28] != b"testca"
        || blk[16..20] != period.to_be_bytes()
        || blk[20..22] != service_id.to_be_bytes()
    {
        return Err(TestcaError::Integrity);
    }
    let mut even = [0u8; 8];
    let mut odd = [0u8; 8];
    even.copy_from_slice(&blk[0..8]);
    odd.copy_from_slice(&blk[8..16]);
    Ok(Ecm {
        table_id: s[0],
        key_index: s[6],
        period,
        service_id,
        even,
        odd,
        access_day: u32::from_be_bytes([blk[28], blk[29], blk[30], blk[31]]),
    })
}

/// The EMM section for `e`, encrypted with `key`.
pub fn build_emm(key: &[u8; 16], e: &Emm) -> Vec<u8> {
    let mut s = header(EMM_UNIQUE, EMM_LEN, e.key_index);
    s.extend_from_slice(&e.address.to_be_bytes());
    let mut blk = [0u8; 16];
    blk[0..4].copy_from_slice(&e.address.to_be_bytes());
    blk[4..8].copy_from_slice(&e.entitled_until_day.to_be_bytes());
    blk[8..16].copy_from_slice(b"testcaEM");
    encrypt(key, &mut blk);
    s.extend_from_slice(&blk);
    s
}

/// Address an EMM section is sent to, if readable (for EMM filtering
/// before anything reaches the card).
pub fn emm_address(s: &[u8]) -> Option<u32> {
    if s.len() < 11 || s[0] != EMM_UNIQUE {
        return None;
    }
    Some(u32::from_be_bytes([s[7], s[8], s[9], s[10]]))
}

/// Decrypt and check an EMM for the card at `address`.
pub fn open_emm(key: &[u8; 16], address: u32, s: &[u8]) -> Result<Emm, TestcaError> {
    check_header(s, &[EMM_UNIQUE], EMM_LEN)?;
    if emm_address(s) != Some(address) {
        return Err(TestcaError::OtherAddress);
    }
    let mut blk = [0u8; 16];
    blk.copy_from_slice(&s[11..27]);
    decrypt(key, &mut blk);
    if &blk[8..16] != b"testcaEM" || blk[0..4] != address.to_be_bytes() {
        return Err(TestcaError::Integrity);
    }
    Ok(Emm {
        key_index: s[6],
        address,
        entitled_until_day: u32::from_be_bytes([blk[4], blk[5], blk[6], blk[7]]),
    })
}

/// Today's day number (days since 1970-01-01, UTC).
pub fn today() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as u32)
        .unwrap_or(0)
}

/// Parse 32 hex digits (a card key). The error never quotes the value.
pub fn parse_key(s: &str) -> Result<[u8; 16], String> {
    let digits: Vec<u8> = s
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| "contains a character that is not a hex digit".to_string())?;
    if digits.len() != 32 {
        return Err(format!("{} hex digits, want 32", digits.len()));
    }
    let mut k = [0u8; 16];
    for (i, p) in digits.chunks(2).enumerate() {
        k[i] = p[0] << 4 | p[1];
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn ecm() -> Ecm {
        Ecm {
            table_id: ECM_ODD,
            key_index: 0,
            period: 77,
            service_id: 0x1234,
            even: [1, 2, 3, 6, 5, 6, 7, 18],
            odd: [9, 9, 9, 27, 8, 8, 8, 24],
            access_day: 20_000,
        }
    }

    #[test]
    fn ecm_round_trip_and_integrity() {
        let s = build_ecm(&KEY, &ecm());
        assert_eq!(s.len(), ECM_LEN);
        assert_eq!(open_ecm(&KEY, &s).unwrap(), ecm());
        let mut other = KEY;
        other[0] ^= 1;
        assert_eq!(open_ecm(&other, &s), Err(TestcaError::Integrity));
        let mut bad = s.clone();
        bad[20] ^= 0x40;
        assert_eq!(open_ecm(&KEY, &bad), Err(TestcaError::Integrity));
        assert!(matches!(
            open_ecm(&KEY, &s[..30]),
            Err(TestcaError::Malformed(_))
        ));
        // The clear period must match the encrypted one.
        let mut swapped = s.clone();
        swapped[10] ^= 1;
        assert_eq!(open_ecm(&KEY, &swapped), Err(TestcaError::Integrity));
        assert!(!format!("{:?}", ecm()).contains("even"));
    }

    #[test]
    fn emm_round_trip_and_address() {
        let e = Emm {
            key_index: 1,
            address: 0xC0FFEE01,
            entitled_until_day: 21_000,
        };
        let s = build_emm(&KEY, &e);
        assert_eq!(s.len(), EMM_LEN);
        assert_eq!(emm_address(&s), Some(0xC0FFEE01));
        assert_eq!(open_emm(&KEY, 0xC0FFEE01, &s).unwrap(), e);
        assert_eq!(
            open_emm(&KEY, 0xC0FFEE02, &s),
            Err(TestcaError::OtherAddress)
        );
    }

    #[test]
    fn key_parse() {
        assert_eq!(parse_key("30313233343536373839616263646566").unwrap(), KEY);
        assert!(parse_key("3031").is_err());
        assert!(!parse_key("zz313233343536373839616263646566")
            .unwrap_err()
            .contains("zz"));
    }
}
