//! capbox's SI decoders on sections written by biTStream (VideoLAN's
//! libbitstream headers, via tests/c/si_gen.c): every field the generator set
//! must come back.

mod si_common;

use capbox::ts::cat::CatRepr;
use capbox::ts::collector::{Push, TableCollector};
use capbox::ts::descriptor::{DeliverySystem, ShortEventDescriptor};
use capbox::ts::eit::EitRepr;
use capbox::ts::nit::NitRepr;
use capbox::ts::sdt::SdtRepr;
use capbox::ts::section::Section;
use capbox::ts::tdt::TdtRepr;
use capbox::ts::tot::TotRepr;

#[test]
fn nit_from_libbitstream() {
    let Some(g) = si_common::generate("nit") else {
        return;
    };
    let b = g.section("nit");
    let nit = NitRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
    assert_eq!(nit.network_id, g.num::<u16>("nit.network_id"));
    assert_eq!(nit.version, g.num::<u8>("nit.version"));
    assert_eq!(nit.network_name().unwrap(), g.text("nit.network_name"));
    assert_eq!(nit.transport_streams.len(), 2);
    let t0 = &nit.transport_streams[0];
    assert_eq!(t0.transport_stream_id, g.num::<u16>("nit.ts0.tsid"));
    assert_eq!(t0.original_network_id, g.num::<u16>("nit.ts0.onid"));
    let Some(DeliverySystem::Terrestrial(t)) = t0.delivery_system() else {
        panic!("ts0: no terrestrial delivery descriptor")
    };
    assert_eq!(t.centre_frequency, g.num::<u64>("nit.ts0.terr_freq"));
    assert_eq!(t.constellation, g.num::<u8>("nit.ts0.terr_constellation"));
    assert_eq!(
        t.code_rate_hp_stream,
        g.num::<u8>("nit.ts0.terr_code_rate_hp")
    );
    assert_eq!(t.guard_interval, g.num::<u8>("nit.ts0.terr_guard"));
    assert_eq!(t.transmission_mode, g.num::<u8>("nit.ts0.terr_mode"));
    let t1 = &nit.transport_streams[1];
    assert_eq!(t1.transport_stream_id, g.num::<u16>("nit.ts1.tsid"));
    assert_eq!(t1.original_network_id, g.num::<u16>("nit.ts1.onid"));
    let Some(DeliverySystem::Cable(c)) = t1.delivery_system() else {
        panic!("ts1: no cable delivery descriptor")
    };
    assert_eq!(c.frequency, g.num::<u64>("nit.ts1.cable_freq"));
    assert_eq!(c.modulation, g.num::<u8>("nit.ts1.cable_modulation"));
    assert_eq!(c.symbol_rate, g.num::<u64>("nit.ts1.cable_symbol_rate"));
    assert_eq!(c.fec_outer, g.num::<u8>("nit.ts1.cable_fec_outer"));
    assert_eq!(c.fec_inner, g.num::<u8>("nit.ts1.cable_fec_inner"));
    // Our emitter reproduces biTStream's bytes exactly.
    assert_eq!(nit.emit().unwrap(), b);
}

#[test]
fn sdt_from_libbitstream() {
    let Some(g) = si_common::generate("sdt") else {
        return;
    };
    let b = g.section("sdt");
    let sdt = SdtRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
    assert!(sdt.is_actual());
    assert_eq!(sdt.transport_stream_id, g.num::<u16>("sdt.tsid"));
    assert_eq!(sdt.original_network_id, g.num::<u16>("sdt.onid"));
    assert_eq!(sdt.version, g.num::<u8>("sdt.version"));
    assert_eq!(sdt.services.len(), 2);
    for (i, s) in sdt.services.iter().enumerate() {
        let k = |f: &str| format!("sdt.s{i}.{f}");
        assert_eq!(s.service_id, g.num::<u16>(&k("sid")));
        assert_eq!(s.service_type(), Some(g.num::<u8>(&k("type"))));
        assert_eq!(s.provider_name().unwrap(), g.text(&k("provider")));
        assert_eq!(s.service_name().unwrap(), g.text(&k("name")));
        assert_eq!(s.eit_schedule_flag as u8, g.num::<u8>(&k("sched")));
        assert_eq!(s.eit_present_following_flag as u8, g.num::<u8>(&k("pf")));
        assert_eq!(s.running_status, g.num::<u8>(&k("running")));
        assert_eq!(s.free_ca_mode as u8, g.num::<u8>(&k("ca")));
    }
    // Re-emitted unchanged, byte for byte, and reduced to one service.
    assert_eq!(sdt.emit().unwrap(), b);
    let one = sdt.with_only_service(0x0881).unwrap().emit().unwrap();
    let one = SdtRepr::parse(&Section::new_verified(&one[..]).unwrap()).unwrap();
    assert_eq!(one.services, vec![sdt.services[1].clone()]);
}

fn check_eit(g: &si_common::Generated, name: &str) -> EitRepr {
    let b = g.section(name);
    let eit = EitRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
    let k = |f: &str| format!("{name}.{f}");
    assert_eq!(eit.table_id, g.num::<u8>(&k("table_id")));
    assert_eq!(eit.service_id, g.num::<u16>(&k("sid")));
    assert_eq!(eit.transport_stream_id, g.num::<u16>(&k("tsid")));
    assert_eq!(eit.original_network_id, g.num::<u16>(&k("onid")));
    assert_eq!(eit.version, g.num::<u8>(&k("version")));
    assert_eq!(eit.section_number, g.num::<u8>(&k("section")));
    assert_eq!(eit.last_section_number, g.num::<u8>(&k("last")));
    assert_eq!(eit.segment_last_section_number, g.num::<u8>(&k("seg_last")));
    assert_eq!(eit.events.len(), g.num::<usize>(&k("events")));
    for (i, e) in eit.events.iter().enumerate() {
        let k = |f: &str| format!("{name}.e{i}.{f}");
        assert_eq!(e.event_id, g.num::<u16>(&k("id")));
        assert_eq!(
            e.start_time(),
            Some(g.num::<i64>(&k("start"))),
            "{name} e{i}"
        );
        assert_eq!(e.duration(), Some(g.num::<u32>(&k("duration"))));
        assert_eq!(e.running_status, g.num::<u8>(&k("running")));
        assert_eq!(e.free_ca_mode as u8, g.num::<u8>(&k("ca")));
        let se = e.short_event(None).unwrap();
        assert_eq!(se.language, g.text(&k("lang")));
        assert_eq!(se.name, g.text(&k("name")), "{name} e{i}");
        assert_eq!(se.text, g.text(&k("text")), "{name} e{i}");
        let content = g.num::<u8>(&k("content"));
        match e.content().first() {
            Some(c) => {
                assert_eq!(c.content_nibble_level_1, content >> 4);
                assert_eq!(c.content_nibble_level_2, content & 0xF);
                assert_eq!(c.user_byte, 0x42);
            }
            None => assert_eq!(content, 0),
        }
        match g.manifest.get(&k("extended")) {
            Some(_) => assert_eq!(
                e.extended_text(Some("fra")).unwrap(),
                g.text(&k("extended"))
            ),
            None => assert_eq!(e.extended_text(None), None),
        }
        // The raw descriptor view agrees with the decoded one.
        let raw = e
            .descriptors()
            .find_map(|d| ShortEventDescriptor::parse(&d))
            .unwrap();
        assert_eq!(&raw.iso_639_language_code, g.get(&k("lang")).as_bytes());
    }
    assert_eq!(eit.emit().unwrap(), b, "{name} re-emitted");
    eit
}

#[test]
fn eit_from_libbitstream() {
    let Some(g) = si_common::generate("eit") else {
        return;
    };
    for name in ["eit_pf0", "eit_pf1", "eit_s0", "eit_s1"] {
        check_eit(&g, name);
    }
    // Both multi-section tables complete in the collector, in any order.
    let mut c = TableCollector::new(16, 1 << 20);
    assert_eq!(c.push(&g.section("eit_s1")), Push::Incomplete);
    assert_eq!(c.push(&g.section("eit_pf0")), Push::Incomplete);
    match c.push(&g.section("eit_s0")) {
        Push::Complete(v) => assert_eq!(v, vec![g.section("eit_s0"), g.section("eit_s1")]),
        other => panic!("schedule not complete: {other:?}"),
    }
    assert!(matches!(c.push(&g.section("eit_pf1")), Push::Complete(v) if v.len() == 2));
    assert_eq!(c.push(&g.section("eit_pf1")), Push::Unchanged);
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn tdt_tot_from_libbitstream() {
    let Some(g) = si_common::generate("time") else {
        return;
    };
    let b = g.section("tdt");
    let tdt = TdtRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
    assert_eq!(tdt.utc_time(), Some(g.num::<i64>("tdt.utc")));
    assert_eq!(tdt.emit(), b);
    let b = g.section("tot");
    let s = Section::new_verified(&b[..]).unwrap();
    assert!(s.crc32().is_some(), "TOT has a CRC");
    let tot = TotRepr::parse(&s).unwrap();
    assert_eq!(tot.utc_time(), Some(g.num::<i64>("tot.utc")));
    let offs = tot.local_time_offsets();
    assert_eq!(offs.len(), g.num::<usize>("tot.n"));
    for (i, o) in offs.iter().enumerate() {
        let k = |f: &str| format!("tot.l{i}.{f}");
        assert_eq!(&o.country_code, g.get(&k("country")).as_bytes());
        assert_eq!(o.country_region_id, g.num::<u8>(&k("region")));
        assert_eq!(o.local_time_offset(), Some(g.num::<i32>(&k("offset"))));
        assert_eq!(o.time_of_change(), Some(g.num::<i64>(&k("change"))));
        assert_eq!(o.next_time_offset(), Some(g.num::<i32>(&k("next"))));
    }
    assert_eq!(tot.emit().unwrap(), b);
}

#[test]
fn cat_from_libbitstream() {
    let Some(g) = si_common::generate("cat") else {
        return;
    };
    let b = g.section("cat");
    let cat = CatRepr::parse(&Section::new_verified(&b[..]).unwrap()).unwrap();
    assert_eq!(cat.version, g.num::<u8>("cat.version"));
    let want: Vec<(u16, u16)> = ["cat.emm0", "cat.emm1"]
        .iter()
        .map(|k| {
            let (a, b) = g.get(k).split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert_eq!(cat.emm_pids(), want);
}
