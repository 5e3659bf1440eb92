use super::*;
use crate::epg::store::Limits;
use crate::ts::section::packetize;
use crate::ts::tdt;

const NOW: i64 = 1_780_000_000;

fn short_event(lang: &[u8; 3], name: &[u8], txt: &[u8]) -> Vec<u8> {
    let mut d = vec![0x4D, (5 + name.len() + txt.len()) as u8];
    d.extend_from_slice(lang);
    d.push(name.len() as u8);
    d.extend_from_slice(name);
    d.push(txt.len() as u8);
    d.extend_from_slice(txt);
    d
}

fn event(id: u16, start: i64, dur: u32, descriptors: Vec<u8>) -> EitEvent {
    EitEvent {
        event_id: id,
        start_time_raw: tdt::encode_utc(start).unwrap(),
        duration_raw: tdt::encode_duration(dur).unwrap(),
        running_status: 1,
        free_ca_mode: false,
        descriptors,
    }
}

fn table(tid: u8, sid: u16, version: u8, events: Vec<EitEvent>) -> Vec<u8> {
    EitRepr {
        table_id: tid,
        service_id: sid,
        version,
        current_next: true,
        section_number: 0,
        last_section_number: 0,
        transport_stream_id: 1,
        original_network_id: 2,
        segment_last_section_number: 0,
        last_table_id: tid,
        events,
    }
    .emit()
    .unwrap()
}

fn ts(sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cc = 0;
    for s in sections {
        packetize(s, EIT_PID, &mut cc, &mut out);
    }
    out
}

#[test]
fn charset_override_for_strings_without_selector() {
    // "ΕΡΤ Ειδήσεις" in ISO/IEC 8859-7, no selector byte: table 00 would
    // make it garbage.
    let greek = b"\xC5\xD1\xD4 \xC5\xE9\xE4\xDE\xF3\xE5\xE9\xF2";
    let evs = vec![event(1, NOW, 3600, short_event(b"ell", greek, b""))];
    let sec = table(0x50, 0x10, 1, evs);
    let mut store = Store::new(Limits::default());
    let mut c = EitCollector::new(
        [(0x10, "ert".to_string())],
        crate::ts::text::charset_by_name("ISO-8859-7"),
        None,
    );
    c.push_packets(&ts(std::slice::from_ref(&sec)), &mut store, NOW);
    let g = store.guide("ert", NOW, NOW + 3600);
    assert_eq!(&*g[0].title, "ΕΡΤ Ειδήσεις");
    // Without the override the same bytes decode as table 00.
    let mut store = Store::new(Limits::default());
    let mut c = EitCollector::new([(0x10, "ert".to_string())], None, None);
    c.push_packets(&ts(&[sec]), &mut store, NOW);
    assert_ne!(
        &*store.guide("ert", NOW, NOW + 3600)[0].title,
        "ΕΡΤ Ειδήσεις"
    );
}

#[test]
fn parts_unwanted_and_repeats() {
    let mut store = Store::new(Limits::default());
    let mut c = EitCollector::new([(0x10, "a".to_string())], None, None);
    let pf = table(
        0x4E,
        0x10,
        1,
        vec![event(1, NOW - 60, 600, short_event(b"eng", b"Now", b"x"))],
    );
    let sched = table(
        0x50,
        0x10,
        1,
        (0..4)
            .map(|i| {
                event(
                    i,
                    NOW + i as i64 * 600,
                    600,
                    short_event(b"eng", b"Sched", b""),
                )
            })
            .collect(),
    );
    let other = table(0x50, 0x11, 1, vec![]);
    let stream = ts(&[pf.clone(), sched.clone(), other.clone(), pf, sched, other]);
    c.push_packets(&stream, &mut store, NOW);
    assert_eq!(c.stats.tables, 2, "{:?}", c.stats);
    assert_eq!(c.stats.unwanted, 2);
    let g: Vec<&str> = store
        .guide("a", NOW - 600, NOW + 3600)
        .iter()
        .map(|e| &*e.title)
        .collect();
    // p/f's "Now" wins over the schedule's first event, which it overlaps.
    assert_eq!(g, ["Now", "Sched", "Sched", "Sched"]);
}

#[test]
fn garbage_never_panics_and_keeps_last_good() {
    let mut store = Store::new(Limits::default());
    let mut c = EitCollector::new([(0x10, "a".to_string())], None, None);
    let good = table(
        0x50,
        0x10,
        1,
        (0..20)
            .map(|i| {
                event(
                    i,
                    NOW + i as i64 * 600,
                    600,
                    short_event(b"eng", b"Good", b""),
                )
            })
            .collect(),
    );
    c.push_packets(&ts(&[good]), &mut store, NOW);
    let mut seed = 99u64;
    let mut junk = Vec::new();
    for _ in 0..2000 {
        let mut p = [0u8; 188];
        for b in p.iter_mut() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (seed >> 33) as u8;
        }
        p[0] = 0x47;
        p[1] &= 0x60; // no transport_error_indicator: PID 0x0012
        p[3] = (p[3] & 0x0F) | 0x10; // payload only
        p[2] = 0x12;
        junk.extend_from_slice(&p);
    }
    c.push_packets(&junk, &mut store, NOW);
    assert_eq!(store.guide("a", NOW, NOW + 86_400).len(), 20);
    let a = c.assembler_stats();
    assert!(
        a.crc_errors + a.malformed + a.incomplete + a.bad_pointer > 100,
        "{a:?}"
    );
}
