//! Shared by the table targets: walk a section's accessors, and every typed
//! descriptor parser over a descriptor loop.
#![allow(dead_code)]
use capbox::ts::descriptor::{self, Descriptors};
use capbox::ts::section::Section;
use capbox::ts::text;

/// Every accessor of a checked section (none may panic after new_checked).
pub fn walk_section(s: &Section<&[u8]>) {
    let _ = (
        s.table_id(),
        s.syntax_indicator(),
        s.section_length(),
        s.has_crc(),
    );
    let _ = (
        s.crc_ok(),
        s.crc32(),
        s.table_id_extension(),
        s.version_number(),
    );
    let _ = (
        s.current_next(),
        s.section_number(),
        s.last_section_number(),
    );
    assert!(s.body().len() <= s.as_bytes().len());
}

/// Walk a descriptor loop with every typed parser; re-emitting the raw
/// descriptors must give back the loop (or its prefix when truncated).
pub fn walk_descriptors(buf: &[u8]) {
    let mut it = Descriptors::new(buf);
    let mut again = Vec::with_capacity(buf.len());
    for d in it.by_ref() {
        d.emit(&mut again);
        if let Some(ca) = descriptor::CaDescriptor::parse(&d) {
            assert!(ca.ca_pid <= 0x1FFF);
        }
        for l in descriptor::languages(&d) {
            let _ = l.code_str();
            let _ = descriptor::lang_str(&l.code);
        }
        if let Some(n) = descriptor::network_name(&d) {
            let _ = text::decode(n);
        }
        let _ = descriptor::service_list(&d).count();
        if let Some(sd) = descriptor::ServiceDescriptor::parse(&d) {
            let _ = (
                text::decode(sd.service_name),
                text::decode(sd.service_provider_name),
            );
            let mut out = Vec::new();
            sd.emit(&mut out);
            let mut back = Descriptors::new(&out);
            let d2 = back.next().expect("emitted service_descriptor");
            assert!(back.next().is_none() && !back.truncated());
            let sd2 = descriptor::ServiceDescriptor::parse(&d2).expect("re-parse");
            assert_eq!(sd2.service_type, sd.service_type);
            if sd.service_provider_name.len() <= 126 && sd.service_name.len() <= 126 {
                assert_eq!(sd2, sd);
            }
        }
        if let Some(se) = descriptor::ShortEventDescriptor::parse(&d) {
            let _ = (text::decode(se.event_name), text::decode(se.text));
        }
        if let Some(ee) = descriptor::ExtendedEventDescriptor::parse(&d) {
            for (a, b) in ee.items() {
                let _ = (text::decode(a), text::decode(b));
            }
            let _ = text::decode(ee.text);
        }
        for c in descriptor::content(&d) {
            let _ = c.genre();
        }
        for r in descriptor::parental_ratings(&d) {
            let _ = r.minimum_age();
        }
        for o in descriptor::local_time_offsets(&d) {
            let _ = (
                o.local_time_offset(),
                o.time_of_change(),
                o.next_time_offset(),
            );
        }
        if let Some(c) = descriptor::ComponentDescriptor::parse(&d) {
            let _ = text::decode(c.text);
        }
        let _ = descriptor::stream_identifier(&d);
        let _ = descriptor::subtitling(&d).count();
        for t in descriptor::teletext(&d) {
            let _ = t.page();
        }
        let _ = descriptor::SatelliteDelivery::parse(&d);
        let _ = descriptor::CableDelivery::parse(&d);
        let _ = descriptor::TerrestrialDelivery::parse(&d);
        let _ = descriptor::DeliverySystem::parse(&d);
    }
    if it.truncated() {
        assert!(again.len() < buf.len());
        assert_eq!(&buf[..again.len()], &again[..]);
    } else {
        assert_eq!(&again[..], buf);
    }
}

/// A UTC_time that decodes must encode back to the same instant (the raw
/// bytes may differ: a leap second 23:59:60 becomes 00:00:00 next day).
pub fn time_round_trip(raw: &[u8; 5]) {
    use capbox::ts::tdt;
    let Some(t) = tdt::utc_seconds(raw) else {
        return;
    };
    if let Some(back) = tdt::encode_utc(t) {
        assert_eq!(tdt::utc_seconds(&back), Some(t));
    }
    let mjd = u16::from_be_bytes([raw[0], raw[1]]);
    let (y, m, d) = tdt::mjd_to_ymd(mjd);
    assert_eq!(
        tdt::ymd_to_mjd(y, m, d),
        Some(mjd),
        "MJD {mjd} -> {y}-{m}-{d}"
    );
}

/// Make random mutations of PSI reach the parsers behind the CRC check: in a
/// payload_unit_start packet whose first section fits in the packet and has
/// a CRC, rewrite that CRC. Only when `enable` (the fuzzer keeps a switch in
/// its input so the wrong-CRC paths stay covered).
pub fn fix_first_crc(raw: &mut [u8; 188], enable: bool) {
    use capbox::ts::crc::crc32_mpeg2;
    use capbox::ts::section::has_crc;
    if !enable || raw[1] & 0x40 == 0 {
        return;
    }
    let off = match raw[3] >> 4 & 3 {
        1 => 4,
        3 => 5 + raw[4] as usize,
        _ => return,
    };
    let Some(&ptr) = raw.get(off) else { return };
    let start = off + 1 + ptr as usize;
    if start + 3 > 188 {
        return;
    }
    let len = 3 + (((raw[start + 1] & 0x0F) as usize) << 8 | raw[start + 2] as usize);
    if len < 7 || start + len > 188 || !has_crc(raw[start], raw[start + 1] & 0x80 != 0) {
        return;
    }
    let end = start + len;
    let crc = crc32_mpeg2(&raw[start..end - 4]);
    raw[end - 4..end].copy_from_slice(&crc.to_be_bytes());
}
