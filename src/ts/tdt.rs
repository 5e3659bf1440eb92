//! Time and Date Table (EN 300 468 §5.2.5) and the SI time encodings shared
//! by the TDT, TOT and EIT: UTC_time = 16-bit MJD + 6 BCD digits hhmmss
//! (Annex C), durations as 6 BCD digits.
//!
//! Promises: no time helper panics; an invalid MJD/BCD is `None`, never a
//! wrong time. MJD is a 16-bit field, so the representable range is
//! 1858-11-17 ..= 2038-04-22. The TDT has no CRC; it is a sanity check for the
//! box clock, not a clock (some muxes carry a wrong one).

use super::section::Section;
use super::{table_id, Error, Result};

/// MJD of 1970-01-01.
const MJD_UNIX_EPOCH: i64 = 40587;

/// Modified Julian Date → (year, month 1..=12, day 1..=31), proleptic
/// Gregorian (equivalent to the Annex C formulas, in integer arithmetic).
pub fn mjd_to_ymd(mjd: u16) -> (i32, u8, u8) {
    // Days since 0000-03-01 (Howard Hinnant's civil_from_days).
    let z = mjd as i64 - MJD_UNIX_EPOCH + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
    (y, m, d)
}

/// (year, month, day) → MJD, `None` outside the 16-bit field or for a bad date.
pub fn ymd_to_mjd(y: i32, m: u8, d: u8) -> Option<u16> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = y as i64 - if m <= 2 { 1 } else { 0 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mjd = days + MJD_UNIX_EPOCH;
    let mjd = u16::try_from(mjd).ok()?;
    // Reject 31 February and friends by round trip.
    if mjd_to_ymd(mjd) != ((y + if m <= 2 { 1 } else { 0 }) as i32, m, d) {
        return None;
    }
    Some(mjd)
}

fn bcd(b: u8) -> Option<u32> {
    let (h, l) = (b >> 4, b & 0x0F);
    if h > 9 || l > 9 {
        return None;
    }
    Some(h as u32 * 10 + l as u32)
}

fn to_bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// 6 BCD digits hhmmss as a time of day → seconds; hours ≤ 23, minutes ≤ 59,
/// seconds ≤ 60 (a leap second).
pub fn bcd_time_of_day(b: &[u8; 3]) -> Option<u32> {
    let (h, m, s) = (bcd(b[0])?, bcd(b[1])?, bcd(b[2])?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// 6 BCD digits hhmmss as a duration → seconds (hours up to 99). All ones
/// (0xFFFFFF) means undefined and is `None`, like any invalid digit.
pub fn duration_seconds(b: &[u8; 3]) -> Option<u32> {
    let (h, m, s) = (bcd(b[0])?, bcd(b[1])?, bcd(b[2])?);
    if m > 59 || s > 59 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Seconds → 6 BCD digits hhmmss; `None` above 99:59:59.
pub fn encode_duration(secs: u32) -> Option<[u8; 3]> {
    if secs > 99 * 3600 + 59 * 60 + 59 {
        return None;
    }
    Some([
        to_bcd(secs / 3600),
        to_bcd(secs / 60 % 60),
        to_bcd(secs % 60),
    ])
}

/// The 40-bit UTC_time (MJD + BCD hhmmss) → Unix seconds. `None` for all
/// ones (undefined start time, e.g. NVOD reference events) and for an
/// invalid BCD digit or value.
pub fn utc_seconds(b: &[u8; 5]) -> Option<i64> {
    if b == &[0xFF; 5] {
        return None;
    }
    let mjd = u16::from_be_bytes([b[0], b[1]]) as i64;
    let tod = bcd_time_of_day(&[b[2], b[3], b[4]])? as i64;
    Some((mjd - MJD_UNIX_EPOCH) * 86_400 + tod)
}

/// Unix seconds → UTC_time; `None` outside the 16-bit MJD range.
pub fn encode_utc(secs: i64) -> Option<[u8; 5]> {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    let mjd = u16::try_from(days + MJD_UNIX_EPOCH).ok()?;
    let m = mjd.to_be_bytes();
    Some([
        m[0],
        m[1],
        to_bcd(tod / 3600),
        to_bcd(tod / 60 % 60),
        to_bcd(tod % 60),
    ])
}

/// A decoded TDT: the raw UTC_time and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdtRepr {
    pub utc_time_raw: [u8; 5],
}

impl TdtRepr {
    pub fn parse<T: AsRef<[u8]>>(s: &Section<T>) -> Result<TdtRepr> {
        if s.table_id() != table_id::TDT {
            return Err(Error::WrongTable);
        }
        let b = s.body();
        if b.len() < 5 {
            return Err(Error::Truncated);
        }
        Ok(TdtRepr {
            utc_time_raw: [b[0], b[1], b[2], b[3], b[4]],
        })
    }

    /// UTC_time as Unix seconds; `None` when invalid.
    pub fn utc_time(&self) -> Option<i64> {
        utc_seconds(&self.utc_time_raw)
    }

    /// TDT for Unix time `secs` (`None` outside the MJD range).
    pub fn from_unix(secs: i64) -> Option<TdtRepr> {
        Some(TdtRepr {
            utc_time_raw: encode_utc(secs)?,
        })
    }

    /// The 8-byte section (no CRC).
    pub fn emit(&self) -> Vec<u8> {
        // section_syntax_indicator 0, reserved_future_use 1, reserved 11.
        let mut v = vec![table_id::TDT, 0x70, 0x05];
        v.extend_from_slice(&self.utc_time_raw);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_c_example() {
        // EN 300 468 Annex C: 93/10/13 12:45:00 is coded "0xC079124500".
        let t = [0xC0, 0x79, 0x12, 0x45, 0x00];
        assert_eq!(mjd_to_ymd(0xC079), (1993, 10, 13));
        assert_eq!(ymd_to_mjd(1993, 10, 13), Some(0xC079));
        assert_eq!(utc_seconds(&t), Some(750_516_300));
        assert_eq!(encode_utc(750_516_300), Some(t));
        assert_eq!(mjd_to_ymd(40587), (1970, 1, 1));
        assert_eq!(mjd_to_ymd(0), (1858, 11, 17));
        assert_eq!(mjd_to_ymd(0xFFFF), (2038, 4, 22));
        assert_eq!(ymd_to_mjd(2024, 2, 30), None);
        assert_eq!(ymd_to_mjd(2024, 2, 29).map(mjd_to_ymd), Some((2024, 2, 29)));
    }

    #[test]
    fn invalid_bcd_and_undefined() {
        assert_eq!(utc_seconds(&[0xFF; 5]), None);
        assert_eq!(utc_seconds(&[0xC0, 0x79, 0x1A, 0x00, 0x00]), None);
        assert_eq!(utc_seconds(&[0xC0, 0x79, 0x24, 0x00, 0x00]), None);
        assert_eq!(utc_seconds(&[0xC0, 0x79, 0x23, 0x60, 0x00]), None);
        assert_eq!(duration_seconds(&[0x01, 0x45, 0x30]), Some(6330));
        assert_eq!(duration_seconds(&[0xFF, 0xFF, 0xFF]), None);
        assert_eq!(duration_seconds(&[0x99, 0x59, 0x59]), Some(359_999));
        assert_eq!(encode_duration(6330), Some([0x01, 0x45, 0x30]));
        assert_eq!(encode_duration(360_000), None);
        assert_eq!(encode_utc(-4_000_000_000), None);
    }

    #[test]
    fn tdt_round_trip() {
        let t = TdtRepr::from_unix(1_700_000_000).unwrap();
        let b = t.emit();
        let s = Section::new_verified(&b[..]).unwrap();
        let back = TdtRepr::parse(&s).unwrap();
        assert_eq!(back.utc_time(), Some(1_700_000_000));
        let short = [0x70, 0x70, 0x03, 0xC0, 0x79, 0x12];
        let s = Section::new_checked(&short[..]).unwrap();
        assert_eq!(TdtRepr::parse(&s), Err(Error::Truncated));
    }
}
