//! The card driver of capbox's test CA system (`crate::ca::testca`, which
//! specifies the APDUs and status words). Stateless: the card's address is
//! in its `CardInfo`.

use super::{Apdu, CardDriver, CardInfo, CwPair, Rapdu};
use crate::ca::testca as t;

pub struct TestcaDriver;

fn sw_words(sw: u16) -> String {
    let what = match sw {
        t::SW_MALFORMED => "malformed section",
        t::SW_INTEGRITY => "integrity check failed (wrong key or garbage)",
        t::SW_NOT_ENTITLED => "not entitled (entitlement ended)",
        t::SW_OTHER_ADDRESS => "EMM for another address",
        t::SW_BAD_INS => "unknown instruction",
        t::SW_BAD_CLA => "unknown class",
        0x6700 => "wrong length",
        _ => "unexpected status",
    };
    format!("card says {sw:04X}: {what}")
}

/// A case 3/4 APDU with `data` (a section ≤ 255 bytes) and optional Le.
fn command(ins: u8, data: &[u8], le: Option<u8>) -> Result<Vec<u8>, String> {
    let lc = u8::try_from(data.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("section of {} bytes cannot go in one APDU", data.len()))?;
    let mut c = vec![t::CLA, ins, 0, 0, lc];
    c.extend_from_slice(data);
    c.extend(le);
    Ok(c)
}

fn ok(r: Rapdu) -> Result<Vec<u8>, String> {
    if r.sw == t::SW_OK {
        Ok(r.data)
    } else {
        Err(sw_words(r.sw))
    }
}

/// Day number (days since 1970-01-01) as YYYY-MM-DD (Howard Hinnant's
/// civil_from_days).
fn date(day: u32) -> String {
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

impl CardDriver for TestcaDriver {
    fn name(&self) -> &'static str {
        "testca"
    }

    fn caid(&self) -> u16 {
        t::CAID
    }

    fn matches_atr(&self, atr: &[u8]) -> bool {
        // Historical bytes "testca" (see examples/testcard.rs); a real
        // reader may add interface bytes, so search rather than index.
        atr.windows(6).any(|w| w == b"testca")
    }

    fn init(&self, card: &mut dyn Apdu) -> Result<CardInfo, String> {
        // Le 0B: the 7 bytes the spec names plus entitled_until when the
        // card gives it.
        let d = ok(card.transmit(&[t::CLA, t::INS_INFO, 0, 0, 0x0B])?)?;
        if d.len() < 7 {
            return Err(format!("GET INFO answered {} bytes, want 7", d.len()));
        }
        if d[6] != t::VERSION {
            return Err(format!("testca version {} (want {})", d[6], t::VERSION));
        }
        let caid = u16::from_be_bytes([d[0], d[1]]);
        let address = u32::from_be_bytes([d[2], d[3], d[4], d[5]]);
        let detail = match d.get(7..11) {
            Some(e) => format!(
                "entitled until {}",
                date(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
            ),
            None => String::new(),
        };
        Ok(CardInfo {
            caid,
            address: Some(address),
            detail,
        })
    }

    fn ecm(&self, card: &mut dyn Apdu, _info: &CardInfo, section: &[u8]) -> Result<CwPair, String> {
        // Check the header here: garbage that is not even a testca ECM is
        // not worth a card round trip, and the card would say 6A 80 anyway.
        if section.len() != t::ECM_LEN || !matches!(section[0], t::ECM_EVEN | t::ECM_ODD) {
            return Err(format!(
                "not a testca ECM (table_id {:#04x}, {} bytes)",
                section.first().copied().unwrap_or(0),
                section.len()
            ));
        }
        let d = ok(card.transmit(&command(t::INS_ECM, section, Some(0x10))?)?)?;
        if d.len() != 16 {
            return Err(format!("ECM answered {} bytes, want 16", d.len()));
        }
        let mut even = [0u8; 8];
        let mut odd = [0u8; 8];
        even.copy_from_slice(&d[..8]);
        odd.copy_from_slice(&d[8..]);
        Ok(CwPair {
            even: Some(even),
            odd: Some(odd),
        })
    }

    fn emm(&self, card: &mut dyn Apdu, _info: &CardInfo, section: &[u8]) -> Result<(), String> {
        ok(card.transmit(&command(t::INS_EMM, section, None)?)?).map(|_| ())
    }

    fn emm_wanted(&self, info: &CardInfo, section: &[u8]) -> bool {
        info.address.is_some() && t::emm_address(section) == info.address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A card in memory answering per the spec (the real one is
    /// examples/testcard.rs, tested over pcscd in tests/cards_pcsc.rs).
    struct Fake {
        key: [u8; 16],
        sent: Vec<Vec<u8>>,
    }

    impl Apdu for Fake {
        fn transmit(&mut self, c: &[u8]) -> Result<Rapdu, String> {
            self.sent.push(c.to_vec());
            let r = |data: Vec<u8>, sw| Ok(Rapdu { data, sw });
            match c[1] {
                t::INS_INFO => r(vec![0xFF, 0xFE, 1, 2, 3, 4, 1], t::SW_OK),
                t::INS_ECM => match t::open_ecm(&self.key, &c[5..5 + c[4] as usize]) {
                    Ok(e) => r([e.even, e.odd].concat(), t::SW_OK),
                    Err(e) => r(vec![], e.status_word()),
                },
                _ => r(vec![], t::SW_BAD_INS),
            }
        }
    }

    #[test]
    fn day_numbers_as_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(11_016), "2000-02-29");
        assert_eq!(date(20_517), "2026-03-05");
    }

    #[test]
    fn init_ecm_and_filter() {
        let key = [7u8; 16];
        let mut card = Fake { key, sent: vec![] };
        let d = TestcaDriver;
        let info = d.init(&mut card).unwrap();
        assert_eq!(info.caid, t::CAID);
        assert_eq!(info.address, Some(0x01020304));
        let e = t::Ecm {
            table_id: t::ECM_EVEN,
            key_index: 0,
            period: 1,
            service_id: 5,
            even: [1; 8],
            odd: [2; 8],
            access_day: 1,
        };
        let cw = d.ecm(&mut card, &info, &t::build_ecm(&key, &e)).unwrap();
        assert_eq!(cw.even, Some([1; 8]));
        assert_eq!(cw.odd, Some([2; 8]));
        // The APDU is case 4 with Le 0x10.
        let last = card.sent.last().unwrap();
        assert_eq!(&last[..5], &[0x80, 0x20, 0, 0, t::ECM_LEN as u8]);
        assert_eq!(*last.last().unwrap(), 0x10);
        let err = d
            .ecm(&mut card, &info, &t::build_ecm(&[8; 16], &e))
            .unwrap_err();
        assert!(err.contains("6982"), "{err}");
        // Garbage never reaches the card.
        let n = card.sent.len();
        assert!(d.ecm(&mut card, &info, &[0x80, 1, 2]).is_err());
        assert_eq!(card.sent.len(), n);
        let emm = |addr| {
            t::build_emm(
                &key,
                &t::Emm {
                    key_index: 0,
                    address: addr,
                    entitled_until_day: 9,
                },
            )
        };
        assert!(d.emm_wanted(&info, &emm(0x01020304)));
        assert!(!d.emm_wanted(&info, &emm(0x01020305)));
    }
}
