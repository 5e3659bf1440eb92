//! capbox's SI decoders against tshark (Wireshark's DVB dissectors): the
//! libbitstream-made sections (tests/c/si_gen.c) and an ffmpeg-made TS are
//! packetized, wrapped in UDP in a raw-IPv4 pcap (7 × 188 bytes per
//! datagram) and decoded by `tshark -T json`; every field both decode must
//! agree.
//!
//! tshark 4.0 gets two things wrong that capbox gets right, so strings where
//! tshark shows U+FFFD or control characters are skipped (and counted): ISO
//! 6937 diacritics and control codes in table 00, and the UCS-2 selector
//! 0x11. The libbitstream test checks those strings against the generator.

mod si_common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use capbox::ts::cat::CatRepr;
use capbox::ts::descriptor::ExtendedEventDescriptor;
use capbox::ts::eit::{EitEvent, EitRepr};
use capbox::ts::nit::NitRepr;
use capbox::ts::packet::Packet;
use capbox::ts::sdt::{SdtRepr, SdtService};
use capbox::ts::section::{packetize, Assembler, Section};
use capbox::ts::tdt::TdtRepr;
use capbox::ts::text;
use capbox::ts::tot::TotRepr;
use serde_json::Value;

const PORT: u16 = 5004;

fn have_tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: {name} not installed: apt-get install {name}");
    }
    ok
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while s > 0xFFFF {
        s = (s >> 16) + (s & 0xFFFF);
    }
    !(s as u16)
}

/// A pcap (link type 101, raw IPv4) of `ts` in UDP datagrams of 7 packets.
fn ts_to_pcap(ts: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for (i, dg) in ts.chunks(7 * 188).enumerate() {
        let total = 20 + 8 + dg.len();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 239, 0, 0, 1]);
        let c = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&1234u16.to_be_bytes());
        ip.extend_from_slice(&PORT.to_be_bytes());
        ip.extend_from_slice(&((8 + dg.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(dg);
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&ip);
    }
    out
}

fn tshark_json(ts: &[u8], dir: &Path) -> Value {
    let pcap = dir.join("si.pcap");
    std::fs::write(&pcap, ts_to_pcap(ts)).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-d",
            &format!("udp.port=={PORT},mp2t"),
            "-T",
            "json",
            "--no-duplicate-keys",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every JSON object (at any depth) that has `key` directly.
fn objects_with<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
    match v {
        Value::Object(m) => {
            if m.contains_key(key) {
                out.push(m);
            }
            for x in m.values() {
                objects_with(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| objects_with(x, key, out)),
        _ => {}
    }
}

/// Every string value of `key` under `v`, at any depth.
fn values<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    match x {
                        Value::String(s) => out.push(s),
                        Value::Array(a) => out.extend(a.iter().filter_map(|s| s.as_str())),
                        _ => {}
                    }
                } else {
                    values(x, key, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| values(x, key, out)),
        _ => {}
    }
}

fn all(v: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    values(v, key, &mut out);
    out.into_iter().map(str::to_string).collect()
}

fn one(m: &serde_json::Map<String, Value>, key: &str) -> String {
    let v = all(&Value::Object(m.clone()), key);
    assert!(!v.is_empty(), "tshark gave no {key}");
    v[0].clone()
}

fn hex(s: &str) -> u64 {
    let s = s.trim_start_matches("0x");
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("not hex: {s}"))
}

/// tshark's absolute times ("Nov 14, 2023 22:13:20.000000000 UTC") to Unix
/// seconds, by GNU date (an independent calendar).
fn unix_times(ts: &[String]) -> Vec<i64> {
    let mut child = Command::new("date")
        .args(["-u", "-f", "-", "+%s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for t in ts {
        let t = match t.split_once('.') {
            Some((a, b)) => format!("{a} {}", b.split_once(' ').map(|x| x.1).unwrap_or("UTC")),
            None => t.clone(),
        };
        input.push_str(&t);
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Compares decoded strings, skipping those tshark could not decode.
#[derive(Default)]
struct Texts {
    compared: usize,
    skipped: Vec<String>,
}

impl Texts {
    fn check(&mut self, what: &str, tshark: &str, ours: &str) {
        if tshark.chars().any(|c| c == '\u{FFFD}' || c.is_control()) {
            self.skipped
                .push(format!("{what}: tshark {tshark:?}, capbox {ours:?}"));
            return;
        }
        assert_eq!(ours, tshark, "{what}");
        self.compared += 1;
    }
}

/// Sections of `ts` per table, through capbox's own reassembler.
#[derive(Default)]
struct Decoded {
    nit: Vec<NitRepr>,
    sdt: Vec<SdtRepr>,
    eit: Vec<EitRepr>,
    tdt: Vec<TdtRepr>,
    tot: Vec<TotRepr>,
    cat: Vec<CatRepr>,
}

fn decode_ts(ts: &[u8]) -> Decoded {
    let mut asm: HashMap<u16, Assembler> = HashMap::new();
    let mut d = Decoded::default();
    for p in ts.chunks_exact(188) {
        let pkt = Packet::new_checked(p).unwrap();
        let pid = pkt.pid();
        if ![0x01, 0x10, 0x11, 0x12, 0x14].contains(&pid) {
            continue;
        }
        asm.entry(pid).or_default().push(&pkt, |s| {
            let s = Section::new_verified(s).unwrap();
            match s.table_id() {
                0x01 => d.cat.push(CatRepr::parse(&s).unwrap()),
                0x40 | 0x41 => d.nit.push(NitRepr::parse(&s).unwrap()),
                0x42 | 0x46 => d.sdt.push(SdtRepr::parse(&s).unwrap()),
                0x4E..=0x6F => d.eit.push(EitRepr::parse(&s).unwrap()),
                0x70 => d.tdt.push(TdtRepr::parse(&s).unwrap()),
                0x73 => d.tot.push(TotRepr::parse(&s).unwrap()),
                _ => {}
            }
        });
    }
    d
}

fn compare_sdt(json: &Value, sdt: &[SdtRepr], texts: &mut Texts) -> usize {
    let ours: Vec<&SdtService> = sdt.iter().flat_map(|s| &s.services).collect();
    let mut svcs = Vec::new();
    objects_with(json, "dvb_sdt.svc.id", &mut svcs);
    for m in &svcs {
        let id = hex(&one(m, "dvb_sdt.svc.id")) as u16;
        let s = ours
            .iter()
            .find(|s| s.service_id == id)
            .expect("service tshark saw");
        assert_eq!(
            s.running_status as u64,
            hex(&one(m, "dvb_sdt.svc.running_status"))
        );
        assert_eq!(
            s.free_ca_mode as u64,
            hex(&one(m, "dvb_sdt.svc.free_ca_mode"))
        );
        assert_eq!(
            s.eit_schedule_flag as u64,
            hex(&one(m, "dvb_sdt.svc.eit_schedule_flag"))
        );
        let v = Value::Object((*m).clone());
        for (tk, ours) in [
            ("mpeg_descr.svc.svc_name", s.service_name()),
            ("mpeg_descr.svc.provider_name", s.provider_name()),
        ] {
            let t = all(&v, tk);
            texts.check(&format!("service 0x{id:04x} {tk}"), &t[0], &ours.unwrap());
        }
    }
    svcs.len()
}

#[test]
fn libbitstream_sections_agree_with_tshark() {
    if !have_tool("tshark") {
        return;
    }
    let Some(g) = si_common::generate("tshark") else {
        return;
    };
    let mut ts = Vec::new();
    let mut cc: HashMap<u16, u8> = HashMap::new();
    for (name, pid) in [
        ("nit", 0x10),
        ("sdt", 0x11),
        ("eit_pf0", 0x12),
        ("eit_pf1", 0x12),
        ("eit_s0", 0x12),
        ("eit_s1", 0x12),
        ("tdt", 0x14),
        ("tot", 0x14),
        ("cat", 0x01),
    ] {
        packetize(&g.section(name), pid, cc.entry(pid).or_insert(0), &mut ts);
    }
    let d = decode_ts(&ts);
    assert_eq!(
        (
            d.nit.len(),
            d.sdt.len(),
            d.eit.len(),
            d.tdt.len(),
            d.tot.len(),
            d.cat.len()
        ),
        (1, 1, 4, 1, 1, 1)
    );
    let json = tshark_json(&ts, &g.dir);
    let mut texts = Texts::default();

    // NIT
    let nit = &d.nit[0];
    texts.check(
        "network name",
        &all(&json, "mpeg_descr.net_name.name")[0],
        &nit.network_name().unwrap(),
    );
    let tsids: Vec<u16> = all(&json, "dvb_nit.ts.id")
        .iter()
        .map(|s| hex(s) as u16)
        .collect();
    let onids: Vec<u16> = all(&json, "dvb_nit.ts.original_network_id")
        .iter()
        .map(|s| hex(s) as u16)
        .collect();
    let ours: Vec<(u16, u16)> = nit
        .transport_streams
        .iter()
        .map(|t| (t.transport_stream_id, t.original_network_id))
        .collect();
    assert_eq!(tsids.into_iter().zip(onids).collect::<Vec<_>>(), ours);

    // SDT
    assert_eq!(compare_sdt(&json, &d.sdt, &mut texts), 2);

    // EIT
    let events: Vec<&EitEvent> = d.eit.iter().flat_map(|e| &e.events).collect();
    let mut evs = Vec::new();
    objects_with(&json, "dvb_eit.evt.id", &mut evs);
    assert_eq!(evs.len(), events.len());
    let starts: Vec<String> = evs
        .iter()
        .map(|m| one(m, "dvb_eit.evt.start_time"))
        .collect();
    let starts = unix_times(&starts);
    for (m, start) in evs.iter().zip(starts) {
        let id = hex(&one(m, "dvb_eit.evt.id")) as u16;
        let e = events
            .iter()
            .find(|e| e.event_id == id)
            .expect("event tshark saw");
        assert_eq!(e.start_time(), Some(start), "event 0x{id:04x} start");
        let r = e.duration_raw;
        assert_eq!(
            hex(&one(m, "dvb_eit.evt.duration")),
            u32::from_be_bytes([0, r[0], r[1], r[2]]) as u64
        );
        let v = Value::Object((*m).clone());
        let se = e.short_event(None).unwrap();
        texts.check(
            &format!("event 0x{id:04x} name"),
            &all(&v, "mpeg_descr.short_evt.name")[0],
            &se.name,
        );
        if let Some(t) = all(&v, "mpeg_descr.short_evt.txt").first() {
            texts.check(&format!("event 0x{id:04x} text"), t, &se.text);
        }
        let l1 = all(&v, "mpeg_descr.content.nibble_lvl_1");
        let l2 = all(&v, "mpeg_descr.content.nibble_lvl_2");
        let user = all(&v, "mpeg_descr.content.user");
        let content = e.content();
        assert_eq!(l1.len(), content.len(), "event 0x{id:04x} content entries");
        for (i, c) in content.iter().enumerate() {
            assert_eq!(hex(&l1[i]), c.content_nibble_level_1 as u64);
            assert_eq!(hex(&l2[i]), c.content_nibble_level_2 as u64);
            assert_eq!(hex(&user[i]), c.user_byte as u64);
        }
        // Extended event items: tshark decodes them one by one.
        let ours: Vec<(String, String)> = e
            .descriptors()
            .filter_map(|d| ExtendedEventDescriptor::parse(&d))
            .flat_map(|x| {
                x.items()
                    .map(|(a, b)| (text::decode(a), text::decode(b)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let descr = all(&v, "mpeg_descr.ext_evt.item_descr");
        let item = all(&v, "mpeg_descr.ext_evt.item");
        assert_eq!(item.len(), ours.len(), "event 0x{id:04x} extended items");
        for (i, (d, it)) in ours.iter().enumerate() {
            texts.check(&format!("event 0x{id:04x} item description"), &descr[i], d);
            texts.check(&format!("event 0x{id:04x} item"), &item[i], it);
            assert!(e.extended_text(None).unwrap().contains(it.as_str()));
        }
    }

    // TDT and TOT
    let times = unix_times(&[
        all(&json, "dvb_tdt.utc_time")[0].clone(),
        all(&json, "dvb_tot.utc_time")[0].clone(),
    ]);
    assert_eq!(d.tdt[0].utc_time(), Some(times[0]));
    assert_eq!(d.tot[0].utc_time(), Some(times[1]));
    let lto = d.tot[0].local_time_offsets();
    let countries = all(&json, "mpeg_descr.local_time_offset.country_code");
    let pol = all(&json, "mpeg_descr.local_time_offset.polarity");
    let off = all(&json, "mpeg_descr.local_time_offset.offset");
    let next = all(&json, "mpeg_descr.local_time_offset.next_time_offset");
    let change = unix_times(&all(&json, "mpeg_descr.local_time_offset.time_of_change"));
    assert_eq!(lto.len(), countries.len());
    let secs = |s: &str, neg: bool| {
        let v = s.split('.').next().unwrap().parse::<i64>().unwrap();
        if neg {
            -v
        } else {
            v
        }
    };
    for (i, o) in lto.iter().enumerate() {
        let neg = hex(&pol[i]) == 1;
        assert_eq!(String::from_utf8_lossy(&o.country_code), countries[i]);
        assert_eq!(o.local_time_offset_polarity, neg);
        assert_eq!(
            o.local_time_offset().map(|m| m as i64 * 60),
            Some(secs(&off[i], neg))
        );
        assert_eq!(
            o.next_time_offset().map(|m| m as i64 * 60),
            Some(secs(&next[i], neg))
        );
        assert_eq!(o.time_of_change(), Some(change[i]));
    }

    // CAT
    let sys: Vec<u64> = all(&json, "mpeg_descr.ca.sys_id")
        .iter()
        .map(|s| hex(s))
        .collect();
    let pids: Vec<u64> = all(&json, "mpeg_descr.ca.pid")
        .iter()
        .map(|s| hex(s))
        .collect();
    let mut theirs: Vec<(u16, u16)> = sys
        .into_iter()
        .zip(pids)
        .map(|(a, b)| (a as u16, b as u16))
        .collect();
    theirs.sort_unstable();
    assert_eq!(d.cat[0].emm_pids(), theirs);

    eprintln!("{} strings compared with tshark", texts.compared);
    for s in &texts.skipped {
        eprintln!("not compared (tshark cannot decode): {s}");
    }
    // Network name, 4 SDT strings, 7 names, 6 texts minus what tshark garbles.
    assert!(
        texts.compared >= 13,
        "only {} strings compared",
        texts.compared
    );
}

fn ffmpeg_ts(dir: &Path, name: &str, provider: &str) -> Option<PathBuf> {
    if !have_tool("ffmpeg") {
        return None;
    }
    let out = dir.join("ffmpeg-sdt.ts");
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=1:size=160x120:rate=5")
        .args(["-c:v", "mpeg2video", "-metadata"])
        .arg(format!("service_name={name}"))
        .arg("-metadata")
        .arg(format!("service_provider={provider}"))
        .args(["-f", "mpegts"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg failed");
    Some(out)
}

#[test]
fn ffmpeg_sdt_agrees_with_tshark() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("si-ffmpeg");
    std::fs::create_dir_all(&dir).unwrap();
    // Non-ASCII: ffmpeg writes the 0x15 (UTF-8) selector for these.
    let (name, provider) = ("Chaîne Test €", "capbox ffmpeg");
    let Some(path) = ffmpeg_ts(&dir, name, provider) else {
        return;
    };
    let ts = std::fs::read(path).unwrap();
    let d = decode_ts(&ts);
    assert!(!d.sdt.is_empty(), "no SDT in ffmpeg's TS");
    let s = &d.sdt[0].services[0];
    assert_eq!(s.service_name().as_deref(), Some(name));
    assert_eq!(s.provider_name().as_deref(), Some(provider));
    assert_eq!(s.service_type(), Some(1));
    // Rewritten to one service and re-parsed: same strings.
    let one = d.sdt[0]
        .with_only_service(s.service_id)
        .unwrap()
        .emit()
        .unwrap();
    let back = SdtRepr::parse(&Section::new_verified(&one[..]).unwrap()).unwrap();
    assert_eq!(back.services[0].service_name().as_deref(), Some(name));
    if !have_tool("tshark") {
        return;
    }
    // Only the first SDT: tshark and capbox read the same bytes.
    let json = tshark_json(&ts[..ts.len().min(188 * 70)], &dir);
    let mut texts = Texts::default();
    assert!(compare_sdt(&json, &d.sdt[..1], &mut texts) >= 1);
    assert_eq!(texts.skipped, Vec::<String>::new());
    assert!(texts.compared >= 2);
}
