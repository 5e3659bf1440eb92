//! The guide from the air: EIT sections and packets (arbitrary, and valid
//! ones from the seeds) → `epg::eit::EitCollector` (plain, and through the
//! shared store with the lock free or held, so tables wait in `pending`) →
//! `Store`, with the clock moving on (minutes, days); then the store keeps
//! its promises (`Store::check`, the merged guide) and the XMLTV writer's
//! output is well-formed and reads back with every text intact.
//!
//! Input: 2 bytes "now" (BASE ± 227 days in 10-minute steps), 1 byte budget
//! (4..1024 KiB), 1 byte flags (actual_only, preferred language, audience),
//! then records: op byte, then
//!   0: u16 length + a section → `push_section`
//!   1: n (1..=8) packets → `push_packets`
//!   2: n packets → `push_packets_shared` (op bit 4: the store locked)
//!   3: a byte: now += byte minutes (op bit 4: days)
//!   4: services changed (op bits 4-5) or `reset`
#![no_main]
use std::sync::Mutex;

use capbox::epg::eit::EitCollector;
use capbox::epg::store::{Limits, Store};
use libfuzzer_sys::fuzz_target;
#[path = "common/epg.rs"]
mod epg;

fn services(v: u8) -> Vec<(u16, String, Option<capbox::ts::text::Charset>)> {
    let all = [(1u16, "one"), (2, "two"), (3, "three"), (0x0B0C, "bc")];
    all.iter()
        .enumerate()
        .filter(|(i, _)| v & (1 << i) == 0)
        .map(|(_, (s, c))| (*s, c.to_string(), None))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let mut now = epg::BASE + i16::from_be_bytes([data[0], data[1]]) as i64 * 600;
    let limits = Limits {
        budget_bytes: (data[2] as usize + 1) * 4096,
        ..Limits::default()
    };
    let flags = data[3];
    let store = Mutex::new(Store::new(limits));
    let lang = (flags & 2 != 0).then(|| "fra".to_string());
    let mut c = EitCollector::new(services(0).into_iter().map(|(s, c, _)| (s, c)), None, lang);
    if flags & 1 != 0 {
        c = c.actual_only();
    }
    let audience = epg::audience(flags >> 2);
    let mut rest = &data[4..];
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op & 0x0F {
            0 => {
                if rest.len() < 2 {
                    break;
                }
                let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
                let (sec, tail) = rest[2..].split_at(n);
                rest = tail;
                c.push_section(sec, &mut store.lock().unwrap(), now);
            }
            1 | 2 => {
                let n = rest.first().map_or(0, |b| (*b as usize % 8) + 1) * 188;
                let n = n.min(rest.len().saturating_sub(1));
                let (pk, tail) = rest[1.min(rest.len())..].split_at(n);
                rest = tail;
                if op & 0x0F == 1 {
                    c.push_packets(pk, &mut store.lock().unwrap(), now);
                } else if op & 0x10 != 0 {
                    let _held = store.lock().unwrap();
                    c.push_packets_shared(pk, &store, now);
                } else {
                    c.push_packets_shared(pk, &store, now);
                }
            }
            3 => {
                let b = rest.first().copied().unwrap_or(0) as i64;
                rest = rest.get(1..).unwrap_or(&[]);
                now += if op & 0x10 != 0 { b * 86_400 } else { b * 60 };
            }
            4 => match op >> 4 {
                0 => c.reset(),
                v => c.set_services(services(v)),
            },
            _ => {}
        }
        let s = c.stats;
        assert!(s.tables <= s.sections, "{s:?}");
        assert!(s.wipeouts <= s.tables, "{s:?}");
    }
    // Tables still waiting for the store go in with the next push.
    c.push_packets_shared(&[], &store, now);
    let st = store.lock().unwrap();
    epg::check_store(&st);
    if std::env::var_os("FZ_DEBUG").is_some() {
        eprintln!("{} events, {:?}, {:?}", st.events(), c.stats, st.rejects);
    }
    epg::check_writer(&st, audience.as_ref(), now - 86_400, now + 8 * 86_400);
    epg::check_writer(&st, None, i64::MIN, i64::MAX);
});
