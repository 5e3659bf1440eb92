//! No SI decoder panics on arbitrary input: random bodies under every
//! table_id, bit flips and truncations of valid sections, all fed through
//! the section view, every Repr and every accessor, and the collector.

use capbox::ts::cat::CatRepr;
use capbox::ts::collector::TableCollector;
use capbox::ts::descriptor::{self, Descriptors};
use capbox::ts::eit::EitRepr;
use capbox::ts::nit::NitRepr;
use capbox::ts::sdt::SdtRepr;
use capbox::ts::section::{build_long_section, Section};
use capbox::ts::tdt::{self, TdtRepr};
use capbox::ts::text;
use capbox::ts::tot::TotRepr;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every descriptor parser on every descriptor of `loop_`.
fn all_descriptors(loop_: &[u8]) -> usize {
    let mut n = 0;
    for d in Descriptors::new(loop_) {
        n += descriptor::ServiceDescriptor::parse(&d).is_some() as usize;
        n += descriptor::ShortEventDescriptor::parse(&d).is_some() as usize;
        if let Some(x) = descriptor::ExtendedEventDescriptor::parse(&d) {
            n += x.items().count();
            let _ = text::decode(x.text);
        }
        n += descriptor::ComponentDescriptor::parse(&d).is_some() as usize;
        n += descriptor::DeliverySystem::parse(&d).is_some() as usize;
        n += descriptor::CaDescriptor::parse(&d).is_some() as usize;
        n += descriptor::network_name(&d)
            .map(text::decode)
            .map_or(0, |s| s.len());
        n += descriptor::service_list(&d).count();
        n += descriptor::content(&d)
            .map(|c| c.genre().len())
            .sum::<usize>();
        n += descriptor::parental_ratings(&d)
            .filter_map(|r| r.minimum_age())
            .count();
        for o in descriptor::local_time_offsets(&d) {
            let _ = (
                o.local_time_offset(),
                o.next_time_offset(),
                o.time_of_change(),
            );
            n += 1;
        }
        n += descriptor::stream_identifier(&d).is_some() as usize;
        n += descriptor::subtitling(&d).count();
        n += descriptor::teletext(&d).filter_map(|t| t.page()).count();
    }
    n
}

fn exercise(bytes: &[u8], c: &mut TableCollector) -> usize {
    let _ = c.push(bytes);
    let Ok(s) = Section::new_checked(bytes) else {
        return 0;
    };
    let mut n = 0;
    if let Ok(r) = SdtRepr::parse(&s) {
        for svc in &r.services {
            let _ = (svc.service_name(), svc.provider_name(), svc.service_type());
            n += all_descriptors(&svc.descriptors);
        }
        let _ = r.emit();
        if let Some(sid) = r.services.first().map(|s| s.service_id) {
            let _ = r.with_only_service(sid).map(|o| o.emit());
        }
    }
    if let Ok(r) = NitRepr::parse(&s) {
        let _ = r.network_name();
        n += all_descriptors(&r.network_descriptors);
        for t in &r.transport_streams {
            let _ = (t.delivery_system(), t.service_list());
            n += all_descriptors(&t.descriptors);
        }
        let _ = r.emit();
    }
    if let Ok(r) = EitRepr::parse(&s) {
        for e in &r.events {
            let _ = (e.start_time(), e.duration(), e.short_events(), e.content());
            let _ = (
                e.extended_text(None),
                e.extended_text(Some("fra")),
                e.parental_ratings(),
            );
            n += all_descriptors(&e.descriptors);
        }
        let _ = r.emit();
    }
    if let Ok(r) = TdtRepr::parse(&s) {
        let _ = (r.utc_time(), r.emit());
    }
    if let Ok(r) = TotRepr::parse(&s) {
        n += r.local_time_offsets().len();
        let _ = (r.utc_time(), r.emit());
    }
    if let Ok(r) = CatRepr::parse(&s) {
        n += r.emm_pids().len();
        let _ = r.emit();
    }
    n + text::decode(s.body()).len()
}

const TABLES: [u8; 12] = [
    0x01, 0x40, 0x41, 0x42, 0x46, 0x4E, 0x4F, 0x50, 0x6F, 0x70, 0x73, 0x02,
];

#[test]
fn random_bodies_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut c = TableCollector::new(64, 256 * 1024);
    let mut work = 0;
    for i in 0..20_000 {
        let tid = TABLES[i % TABLES.len()];
        let len = rng.below(300);
        // Bodies made of plausible descriptor-ish bytes: small lengths are
        // more likely to form valid loops and reach the deeper parsers.
        let body: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.byte() & 0x1F
                } else {
                    rng.byte()
                }
            })
            .collect();
        let mut s = build_long_section(
            tid,
            rng.byte() as u16,
            rng.byte(),
            rng.byte(),
            rng.byte(),
            &body,
        );
        if tid == 0x70 || tid == 0x73 {
            // Short form: clear the syntax indicator.
            s[1] &= 0x7F;
        }
        work += exercise(&s, &mut c);
        // Truncated and bit-flipped variants (the CRC no longer matters:
        // the decoders must not rely on it).
        let cut = rng.below(s.len());
        work += exercise(&s[..cut], &mut c);
        let k = rng.below(s.len());
        s[k] ^= 1 << rng.below(8);
        work += exercise(&s, &mut c);
    }
    assert!(work > 0);
    assert!(c.buffered_bytes() <= 256 * 1024);
    assert!(c.tables() <= 64);
}

#[test]
fn structured_sections_with_flips_never_panic() {
    // Valid tables with rich descriptor loops, then every single-byte
    // corruption and every truncation.
    let mut d = vec![0x48, 8, 0x01, 1, b'P', 4, b'N', b'a', b'm', b'e'];
    d.extend([0x4D, 9, b'f', b'r', b'a', 2, 0xC2, b'e', 2, 0x15, b'x']);
    d.extend([
        0x4E, 12, 0x01, b'f', b'r', b'a', 4, 1, b'a', 1, b'b', 2, 0x11, 0x00,
    ]);
    d.extend([
        0x58, 13, b'F', b'R', b'A', 0x02, 0x01, 0x00, 0xC0, 0x79, 0x12, 0x45, 0x00, 0x02, 0x00,
    ]);
    d.extend([
        0x5A, 11, 0x02, 0xD3, 0x44, 0x40, 0x1F, 0x81, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    d.extend([
        0x43, 11, 0x01, 0x17, 0x57, 0x25, 0x01, 0x92, 0xA6, 0x02, 0x75, 0x00, 0x03,
    ]);
    d.extend([
        0x54, 2, 0x21, 0x00, 0x55, 4, b'F', b'R', b'A', 9, 0x56, 5, b'd', b'e', b'u', 0x10, 0x88,
    ]);
    let mut sections = Vec::new();
    let mut body = vec![
        0x23,
        0x3A,
        0xFF,
        0x08,
        0x80,
        0xFD,
        0x80 | (d.len() >> 8) as u8,
        d.len() as u8,
    ];
    body.extend(&d);
    sections.push(build_long_section(0x42, 1, 0, 0, 0, &body));
    let mut body = vec![
        0, 4, 0x23, 0x3A, 0, 0x4E, 0x10, 0x01, 0xC0, 0x79, 0x12, 0x45, 0x00, 0x01, 0x30, 0x00,
    ];
    body.extend([0x80 | (d.len() >> 8) as u8, d.len() as u8]);
    body.extend(&d);
    sections.push(build_long_section(0x4E, 0x0880, 0, 0, 0, &body));
    let mut body = vec![0xF0 | (d.len() >> 8) as u8, d.len() as u8];
    body.extend(&d);
    body.extend([
        0xF0,
        (6 + d.len()) as u8,
        0,
        1,
        0,
        2,
        0xF0 | (d.len() >> 8) as u8,
        d.len() as u8,
    ]);
    body.extend(&d);
    sections.push(build_long_section(0x40, 1, 0, 0, 0, &body));
    let mut tot = vec![
        0x73,
        0x70,
        0,
        0xC0,
        0x79,
        0x12,
        0x45,
        0x00,
        0xF0 | (d.len() >> 8) as u8,
        d.len() as u8,
    ];
    tot.extend(&d);
    let l = tot.len() + 4 - 3;
    tot[1] |= (l >> 8) as u8;
    tot[2] = l as u8;
    tot.extend([0, 0, 0, 0]);
    sections.push(tot);
    sections.push(TdtRepr::from_unix(1_700_000_000).unwrap().emit());
    sections.push(build_long_section(0x01, 0xFFFF, 0, 0, 0, &d));
    let mut c = TableCollector::new(16, 64 * 1024);
    let mut work = 0;
    for s in &sections {
        work += exercise(s, &mut c);
        for cut in 0..s.len() {
            exercise(&s[..cut], &mut c);
        }
        for k in 0..s.len() {
            for bit in 0..8 {
                let mut m = s.clone();
                m[k] ^= 1 << bit;
                exercise(&m, &mut c);
            }
        }
    }
    assert!(
        work > 20,
        "the valid sections reached the descriptor parsers ({work})"
    );
    // Every 40-bit time and 24-bit duration pattern class is safe.
    let mut rng = Rng(7);
    for _ in 0..100_000 {
        let t = [rng.byte(), rng.byte(), rng.byte(), rng.byte(), rng.byte()];
        let _ = tdt::utc_seconds(&t);
        let _ = tdt::duration_seconds(&[t[0], t[1], t[2]]);
        let _ = tdt::mjd_to_ymd(u16::from_be_bytes([t[0], t[1]]));
    }
}
