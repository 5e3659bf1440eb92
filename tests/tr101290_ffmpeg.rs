//! TR 101 290 on a stream ffmpeg made: the clean stream moves no indicator,
//! and each fault injected moves exactly the indicators the standard
//! implies (the reasoning is written next to each test).
//!
//! The clean stream: ffmpeg's mpegts muxer at a constant mux rate (2 Mbit/s
//! with null packets), mpeg2video + mp2, PCR every 20 ms, PAT and PMT every
//! 100 ms, SDT every 500 ms. ffmpeg writes no NIT, EIT or TDT: they are
//! added here (capbox's own section builders) in place of null packets,
//! NIT every 2 s, EIT p/f sections 0 and 1 every 1 s, TDT every 5 s, TOT
//! every 10 s, so the clean stream is clean for priority 3 too. Null
//! packets keep the mux rate constant, so the time of a packet is its
//! position (the test's clock: stream time at 2 Mbit/s, 0.752 ms a
//! packet), independent of the PCRs a fault may remove or move.
//!
//! The analyser runs as on a tuner's input mux (`Config::mux(true)`: every
//! indicator on, PCR accuracy included): the file is the whole mux.

use capbox::monitor::tr101290::{Config, Indicator, Tr101290, INDICATORS};
use capbox::ts::eit::{EitEvent, EitRepr};
use capbox::ts::nit::NitRepr;
use capbox::ts::packet::{encode_pcr, Packet, PCR_HZ};
use capbox::ts::section::{build_long_section, packetize};
use capbox::ts::tdt::TdtRepr;
use capbox::ts::tot::TotRepr;
use capbox::ts::PACKET_SIZE;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MUX_RATE: u64 = 2_000_000;
const SECONDS: u64 = 34;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
const PMT: u16 = 0x1000;
const NULL: u16 = 0x1FFF;

type Pkt = [u8; PACKET_SIZE];

/// ms of packet `i` at the constant mux rate.
fn t(i: usize) -> u64 {
    i as u64 * PACKET_SIZE as u64 * 8 * 1000 / MUX_RATE
}

/// First packet index at or after `ms`.
fn at(ms: u64) -> usize {
    (ms * MUX_RATE / (PACKET_SIZE as u64 * 8 * 1000)) as usize
}

fn pid(p: &Pkt) -> u16 {
    u16::from_be_bytes([p[1], p[2]]) & 0x1FFF
}
fn pusi(p: &Pkt) -> bool {
    p[1] & 0x40 != 0
}
fn has_payload(p: &Pkt) -> bool {
    p[3] & 0x10 != 0
}
fn pcr_of(p: &Pkt) -> Option<u64> {
    Packet::new_checked(&p[..]).ok()?.pcr()
}
fn null() -> Pkt {
    capbox::ts::packet::null_packet()
}

/// The ffmpeg output (cached under target/), or None when ffmpeg is
/// missing (said loudly).
fn ffmpeg_ts() -> Option<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tr101290_clean_v1.ts");
    if out.exists() {
        return Some(out);
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("!!!!! SKIPPING: ffmpeg not installed (apt-get install ffmpeg) !!!!!");
        return None;
    }
    let tmp = out.with_extension("tmp.ts");
    let secs = SECONDS.to_string();
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args(["-t", &secs])
        .args(["-c:v", "mpeg2video", "-b:v", "600k", "-maxrate", "800k"])
        .args(["-bufsize", "800k", "-g", "25"])
        .args(["-c:a", "mp2", "-b:a", "128k"])
        .args(["-muxrate", &MUX_RATE.to_string(), "-pcr_period", "20"])
        .args(["-pat_period", "0.1", "-sdt_period", "0.5"])
        .args(["-mpegts_service_id", "1", "-mpegts_pmt_start_pid", "4096"])
        .args(["-mpegts_start_pid", "256"])
        .args(["-f", "mpegts"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg failed");
    std::fs::rename(&tmp, &out).unwrap();
    Some(out)
}

fn eit(sn: u8, start: i64) -> Vec<u8> {
    EitRepr {
        table_id: 0x4E,
        service_id: 1,
        version: 0,
        current_next: true,
        section_number: sn,
        last_section_number: 1,
        transport_stream_id: 1,
        original_network_id: 1,
        segment_last_section_number: 1,
        last_table_id: 0x4E,
        events: vec![EitEvent {
            event_id: 100 + sn as u16,
            start_time_raw: capbox::ts::tdt::encode_utc(start + sn as i64 * 3600).unwrap(),
            duration_raw: [0x01, 0x00, 0x00],
            running_status: if sn == 0 { 4 } else { 1 },
            free_ca_mode: false,
            descriptors: vec![],
        }],
    }
    .emit()
    .unwrap()
}

const T0: i64 = 1_780_000_000;

/// The clean stream, as packets.
fn clean() -> Option<Vec<Pkt>> {
    static CLEAN: OnceLock<Option<Vec<Pkt>>> = OnceLock::new();
    CLEAN
        .get_or_init(|| {
            let path = ffmpeg_ts()?;
            let data = std::fs::read(path).unwrap();
            let mut pk: Vec<Pkt> = data
                .chunks_exact(PACKET_SIZE)
                .map(|c| c.try_into().unwrap())
                .collect();
            // SI due (ms, packets), queued into the next null packets.
            let nit = NitRepr {
                table_id: 0x40,
                network_id: 1,
                version: 0,
                section_number: 0,
                last_section_number: 0,
                network_descriptors: vec![],
                transport_streams: vec![],
            }
            .emit()
            .unwrap();
            let mut due: Vec<(u64, u16, Vec<u8>)> = Vec::new();
            for s in 0..SECONDS {
                let ms = s * 1000;
                due.push((ms, 0x12, eit(0, T0)));
                due.push((ms, 0x12, eit(1, T0)));
                if s % 2 == 0 {
                    due.push((ms, 0x10, nit.clone()));
                }
                if s % 5 == 0 {
                    due.push((ms, 0x14, TdtRepr::from_unix(T0 + s as i64).unwrap().emit()));
                }
                if s % 10 == 0 {
                    let tot = TotRepr {
                        utc_time_raw: capbox::ts::tdt::encode_utc(T0 + s as i64).unwrap(),
                        descriptors: vec![],
                    };
                    due.push((ms + 100, 0x14, tot.emit().unwrap()));
                }
            }
            due.sort_by_key(|d| d.0);
            let mut ccs = [0u8; 8192];
            let mut queue: std::collections::VecDeque<Pkt> = Default::default();
            let mut di = 0;
            for (i, p) in pk.iter_mut().enumerate() {
                while di < due.len() && due[di].0 <= t(i) {
                    let (_, pid, sec) = &due[di];
                    let mut b = Vec::new();
                    packetize(sec, *pid, &mut ccs[*pid as usize], &mut b);
                    for c in b.chunks_exact(PACKET_SIZE) {
                        queue.push_back(c.try_into().unwrap());
                    }
                    di += 1;
                }
                if pid(p) == NULL && !queue.is_empty() {
                    *p = queue.pop_front().unwrap();
                }
            }
            assert!(queue.is_empty(), "not enough null packets for the SI");
            Some(pk)
        })
        .clone()
}

/// Run the analyser over packets, at their stream time; returns it.
fn analyse_with(pk: &[Pkt], cfg: Config) -> Tr101290 {
    let mut a = Tr101290::new(cfg);
    for (i, p) in pk.iter().enumerate() {
        a.push_bytes(p, t(i));
    }
    a
}

fn moved(a: &Tr101290) -> BTreeSet<&'static str> {
    INDICATORS
        .iter()
        .filter(|i| a.get(**i).errors > 0)
        .map(|i| i.id())
        .collect()
}

fn table(a: &Tr101290) -> String {
    INDICATORS
        .iter()
        .map(|i| format!("{}={}", i.id(), a.get(*i).errors))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fault moved exactly `expect`.
fn assert_exactly(pk: &[Pkt], expect: &[Indicator]) -> Tr101290 {
    let a = analyse_with(pk, Config::mux(true));
    let want: BTreeSet<&str> = expect.iter().map(|i| i.id()).collect();
    assert_eq!(moved(&a), want, "{}", table(&a));
    a
}

/// Rewrite the continuity counters of `p` in order (a mux that simply did
/// not send the removed packets: no CC gap).
fn fix_cc(pk: &mut [Pkt], p: u16) {
    let mut cc = 0u8;
    for x in pk.iter_mut().filter(|x| pid(x) == p && has_payload(x)) {
        x[3] = (x[3] & 0xF0) | cc;
        cc = (cc + 1) & 0x0F;
    }
}

/// Replace the packets of `p` from the first unit start at/after `from`
/// to the last packet before the first unit start at/after `to` by null
/// packets (whole sections or PES only).
fn drop_window(pk: &mut [Pkt], p: u16, from: u64, to: u64) {
    let start = (at(from)..pk.len())
        .find(|&i| pid(&pk[i]) == p && pusi(&pk[i]))
        .unwrap();
    let end = (at(to)..pk.len())
        .find(|&i| pid(&pk[i]) == p && pusi(&pk[i]))
        .unwrap_or(pk.len());
    for x in &mut pk[start..end] {
        if pid(x) == p {
            *x = null();
        }
    }
}

/// A video packet after `ms` with payload, no unit start and no PCR (the
/// same for `n` in a row when asked).
fn plain_video(pk: &[Pkt], ms: u64, n: usize) -> usize {
    (at(ms)..pk.len() - n)
        .find(|&i| {
            (i..i + n).all(|j| {
                pid(&pk[j]) == VIDEO
                    && !pusi(&pk[j])
                    && pcr_of(&pk[j]).is_none()
                    && has_payload(&pk[j])
            })
        })
        .unwrap()
}

/// Replace the null packet at/after `ms` with `p`; its index.
fn put(pk: &mut [Pkt], ms: u64, p: Pkt) -> usize {
    let i = (at(ms)..pk.len()).find(|&i| pid(&pk[i]) == NULL).unwrap();
    pk[i] = p;
    i
}

fn section_packet(p: u16, section: &[u8]) -> Pkt {
    let mut cc = 0;
    let mut b = Vec::new();
    packetize(section, p, &mut cc, &mut b);
    assert_eq!(b.len(), PACKET_SIZE);
    b[..].try_into().unwrap()
}

macro_rules! clean_or_skip {
    () => {
        match clean() {
            Some(c) => c,
            None => return,
        }
    };
}

#[test]
fn clean_stream_moves_nothing() {
    let pk = clean_or_skip!();
    let a = assert_exactly(&pk, &[]);
    assert!(a.packets() as usize == pk.len());
    // And as a file source sees it (no PCR accuracy) and as a channel.
    assert_eq!(moved(&analyse_with(&pk, Config::mux(false))).len(), 0);
    assert_eq!(moved(&analyse_with(&pk, Config::channel())).len(), 0);
    // The TDT/TOT read for the box clock.
    let (utc, _) = a.last_utc.unwrap();
    assert!((T0 + 29..=T0 + 31).contains(&utc), "{utc}");
}

/// One sync byte wrong while in sync: sync_byte_error only. The framing
/// holds (the next sync byte is where it should be), so the packet is read
/// and nothing is lost.
#[test]
fn one_bad_sync_byte() {
    let mut pk = clean_or_skip!();
    let i = plain_video(&pk, 5000, 1);
    pk[i][0] = 0x46;
    assert_exactly(&pk, &[Indicator::SyncByteError]);
}

/// Three sync bytes wrong in a row: two bad ones lose sync (hysteresis 2),
/// ts_sync_loss and two sync_byte_errors (the third slot falls in the
/// hunt, where there is no packet to have a sync byte); the packets between
/// the loss and the next five good sync bytes are lost, which the standard counts
/// where they were: a continuity_count_error on their PID (video here).
/// The PCR accuracy restarts from the next PCR: packets were lost, so the
/// positions between PCRs no longer measure time.
#[test]
fn sync_loss() {
    let mut pk = clean_or_skip!();
    let i = plain_video(&pk, 5000, 4);
    for x in &mut pk[i..i + 3] {
        x[0] = 0x00;
    }
    let a = assert_exactly(
        &pk,
        &[
            Indicator::TsSyncLoss,
            Indicator::SyncByteError,
            Indicator::ContinuityCountError,
        ],
    );
    assert_eq!(a.get(Indicator::TsSyncLoss).errors, 1);
    assert_eq!(a.get(Indicator::SyncByteError).errors, 2);
    assert_eq!(a.get(Indicator::ContinuityCountError).errors, 1);
}

/// No PAT for 1 s (the mux just did not send it: its counters stay
/// continuous): pat_error only — not CC, and the PMT still comes.
#[test]
fn pat_gap() {
    let mut pk = clean_or_skip!();
    drop_window(&mut pk, 0, 5000, 6000);
    fix_cc(&mut pk, 0);
    let a = assert_exactly(&pk, &[Indicator::PatError]);
    assert!(a.get(Indicator::PatError).errors >= 1);
}

/// A section with table_id 0x42 on PID 0: pat_error (1.3.a, second bullet).
#[test]
fn pat_wrong_table_id() {
    let mut pk = clean_or_skip!();
    let sec = build_long_section(0x42, 1, 0, 0, 0, &[0, 1, 0xFF]);
    put(&mut pk, 5000, section_packet(0, &sec));
    fix_cc(&mut pk, 0);
    assert_exactly(&pk, &[Indicator::PatError]);
}

/// A scrambled PAT packet: pat_error (1.3.a, third bullet) — and, as it is
/// a scrambled packet in a mux without a CAT, cat_error (2.6) too.
#[test]
fn pat_scrambled() {
    let mut pk = clean_or_skip!();
    let i = (at(5000)..pk.len()).find(|&i| pid(&pk[i]) == 0).unwrap();
    pk[i][3] |= 0x80;
    assert_exactly(&pk, &[Indicator::PatError, Indicator::CatError]);
}

/// One video packet with a wrong counter: continuity_count_error only
/// (the packet after it is a second error on the same indicator).
#[test]
fn cc_flip() {
    let mut pk = clean_or_skip!();
    let i = plain_video(&pk, 5000, 1);
    pk[i][3] = (pk[i][3] & 0xF0) | ((pk[i][3] + 5) & 0x0F);
    assert_exactly(&pk, &[Indicator::ContinuityCountError]);
}

/// No PMT for 1 s (counters kept continuous): pmt_error only.
#[test]
fn pmt_gap() {
    let mut pk = clean_or_skip!();
    drop_window(&mut pk, PMT, 5000, 6000);
    fix_cc(&mut pk, PMT);
    assert_exactly(&pk, &[Indicator::PmtError]);
}

/// A scrambled PMT packet: pmt_error, and cat_error (scrambled, no CAT).
#[test]
fn pmt_scrambled() {
    let mut pk = clean_or_skip!();
    let i = (at(5000)..pk.len()).find(|&i| pid(&pk[i]) == PMT).unwrap();
    pk[i][3] |= 0x80;
    assert_exactly(&pk, &[Indicator::PmtError, Indicator::CatError]);
}

/// The audio PID stops at 20 s (to the end, 14 s): pid_error (> 5 s), and
/// pts_error — a stream that sends nothing sends no PTS (2.5). No CC error:
/// the PID never comes back.
#[test]
fn pid_stops() {
    let mut pk = clean_or_skip!();
    let from = (at(20_000)..pk.len())
        .find(|&i| pid(&pk[i]) == AUDIO)
        .unwrap();
    for x in &mut pk[from..] {
        if pid(x) == AUDIO {
            *x = null();
        }
    }
    assert_exactly(&pk, &[Indicator::PidError, Indicator::PtsError]);
}

/// transport_error_indicator on one video packet: transport_error only.
/// Nothing of the packet is trusted, and its PID's CC check restarts, so
/// the packet is not counted again as a CC error.
#[test]
fn transport_error() {
    let mut pk = clean_or_skip!();
    let i = plain_video(&pk, 5000, 1);
    pk[i][1] |= 0x80;
    assert_exactly(&pk, &[Indicator::TransportError]);
}

/// One byte of a PAT's CRC wrong: crc_error only (the next PAT is 100 ms
/// later: no PAT gap).
#[test]
fn crc_error() {
    let mut pk = clean_or_skip!();
    let i = (at(5000)..pk.len()).find(|&i| pid(&pk[i]) == 0).unwrap();
    // pointer_field at 4, section from 5; last CRC byte at 5 + 3 + len - 1.
    let len = (((pk[i][6] & 0x0F) as usize) << 8) | pk[i][7] as usize;
    pk[i][5 + 3 + len - 1] ^= 0x5A;
    let a = assert_exactly(&pk, &[Indicator::CrcError]);
    assert_eq!(a.get(Indicator::CrcError).errors, 1);
}

/// The same on an SDT, EIT and TDT-PID TOT section: each is a CRC error.
#[test]
fn crc_error_on_si() {
    let mut pk = clean_or_skip!();
    for (p, from) in [(0x11u16, 5000u64), (0x12, 7000), (0x14, 10_000)] {
        // On PID 0x14 the TOT (0x73): the TDT has no CRC.
        let i = (at(from)..pk.len())
            .find(|&i| pid(&pk[i]) == p && pusi(&pk[i]) && (p != 0x14 || pk[i][5] == 0x73))
            .unwrap();
        pk[i][10] ^= 0x01;
    }
    let a = assert_exactly(&pk, &[Indicator::CrcError]);
    assert_eq!(a.get(Indicator::CrcError).errors, 3);
}

/// Two PCRs in a row removed (the PCR_flag cleared): 60 ms between PCRs,
/// more than 40: pcr_repetition_error; the PCR values around the gap are
/// 60 ms apart, within the 100 ms of 2.3b, so no discontinuity error.
#[test]
fn pcr_repetition() {
    let mut pk = clean_or_skip!();
    let mut left = 2;
    for x in pk[at(5000)..].iter_mut() {
        if left > 0 && pid(x) == VIDEO && pcr_of(x).is_some() {
            x[5] &= !0x10;
            left -= 1;
        }
    }
    let a = assert_exactly(&pk, &[Indicator::PcrRepetitionError]);
    assert_eq!(a.get(Indicator::PcrRepetitionError).errors, 1);
}

/// Every PCR after 10 s is 500 ms ahead, without a discontinuity_indicator:
/// pcr_discontinuity_indicator_error only (the repetition is fine; the PCR
/// accuracy restarts from the new clock). With the indicator set on the
/// first shifted PCR nothing moves.
#[test]
fn pcr_jump() {
    let base = clean_or_skip!();
    let shift = |flag: bool| {
        let mut pk = base.clone();
        let mut first = true;
        for x in pk[at(10_000)..].iter_mut() {
            if let Some(pcr) = pcr_of(x) {
                let mut e = [0u8; 6];
                encode_pcr(pcr + PCR_HZ / 2, &mut e);
                x[6..12].copy_from_slice(&e);
                if first && flag {
                    x[5] |= 0x80;
                }
                first = false;
            }
        }
        pk
    };
    assert_exactly(&shift(false), &[Indicator::PcrDiscontinuityIndicatorError]);
    assert_exactly(&shift(true), &[]);
}

/// One PCR 2 µs off (54 ticks of 27 MHz; the limit is ±500 ns):
/// pcr_accuracy_error only — and only where accuracy is measured (a tuner's
/// input mux); a file source's analyser does not look.
#[test]
fn pcr_accuracy() {
    let mut pk = clean_or_skip!();
    let i = (at(5000)..pk.len())
        .find(|&i| pcr_of(&pk[i]).is_some())
        .unwrap();
    let mut e = [0u8; 6];
    encode_pcr(pcr_of(&pk[i]).unwrap() + 54, &mut e);
    pk[i][6..12].copy_from_slice(&e);
    assert_exactly(&pk, &[Indicator::PcrAccuracyError]);
    assert_eq!(moved(&analyse_with(&pk, Config::mux(false))).len(), 0);
}

/// Audio PES without PTS for 1.5 s (PTS_DTS_flags cleared; the five bytes
/// become stuffing): pts_error only.
#[test]
fn pts_missing() {
    let mut pk = clean_or_skip!();
    for x in pk[at(5000)..at(6500)].iter_mut() {
        if pid(x) == AUDIO && pusi(x) {
            let off = if x[3] & 0x20 != 0 {
                5 + x[4] as usize
            } else {
                4
            };
            assert_eq!(&x[off..off + 3], &[0, 0, 1]);
            x[off + 7] &= 0x3F;
        }
    }
    assert_exactly(&pk, &[Indicator::PtsError]);
}

/// Scrambling bits on video packets in a mux without a CAT: cat_error only
/// (the packets chosen start no PES, so no PTS is hidden). With a CAT in
/// the mux nothing moves.
#[test]
fn scrambled_without_cat() {
    let base = clean_or_skip!();
    let mut pk = base.clone();
    for k in 0..10 {
        let i = plain_video(&pk, 5000 + k * 100, 1);
        pk[i][3] |= 0xC0;
    }
    assert_exactly(&pk, &[Indicator::CatError]);
    let cat = capbox::ts::cat::CatRepr {
        version: 0,
        section_number: 0,
        last_section_number: 0,
        descriptors: vec![],
    }
    .emit();
    let mut cc = 0u8;
    for s in 0..SECONDS {
        let mut p = section_packet(1, &cat);
        p[3] = (p[3] & 0xF0) | cc;
        cc = (cc + 1) & 0x0F;
        put(&mut pk, s * 1000 + 50, p);
    }
    assert_exactly(&pk, &[]);
}

/// A section with table_id 0x42 on PID 1: cat_error.
#[test]
fn cat_wrong_table_id() {
    let mut pk = clean_or_skip!();
    let sec = build_long_section(0x42, 1, 0, 0, 0, &[0, 1, 0xFF]);
    put(&mut pk, 5000, section_packet(1, &sec));
    assert_exactly(&pk, &[Indicator::CatError]);
}

/// Priority 3: each SI table missing longer than its limit moves its own
/// indicator only (counters kept continuous).
#[test]
fn nit_missing() {
    let mut pk = clean_or_skip!();
    drop_window(&mut pk, 0x10, 2000, SECONDS * 1000);
    fix_cc(&mut pk, 0x10);
    assert_exactly(&pk, &[Indicator::NitError]);
}

#[test]
fn sdt_missing() {
    let mut pk = clean_or_skip!();
    drop_window(&mut pk, 0x11, 10_000, 13_000);
    fix_cc(&mut pk, 0x11);
    assert_exactly(&pk, &[Indicator::SdtError]);
}

#[test]
fn eit_missing() {
    let mut pk = clean_or_skip!();
    drop_window(&mut pk, 0x12, 10_000, 13_000);
    fix_cc(&mut pk, 0x12);
    assert_exactly(&pk, &[Indicator::EitError]);
}

/// The TDT stops at 2 s (32 s without, more than 30); the TOT on the same
/// PID goes on: tdt_error (the TDT's own repetition, 3.8.a).
#[test]
fn tdt_missing() {
    let mut pk = clean_or_skip!();
    for x in pk[at(2000)..].iter_mut() {
        if pid(x) == 0x14 && x[5] == 0x70 {
            *x = null();
        }
    }
    fix_cc(&mut pk, 0x14);
    assert_exactly(&pk, &[Indicator::TdtError]);
}

/// The minimum gap: the same SDT section twice 1 packet apart (< 25 ms):
/// sdt_error; the same for a TDT: tdt_error.
#[test]
fn si_too_often() {
    let mut pk = clean_or_skip!();
    // An SDT with a null packet less than 25 ms after it.
    let (i, j) = (at(5000)..pk.len())
        .filter(|&i| pid(&pk[i]) == 0x11 && pusi(&pk[i]))
        .find_map(|i| {
            let j = (i + 1..pk.len()).find(|&j| pid(&pk[j]) == NULL)?;
            (t(j) - t(i) < 20).then_some((i, j))
        })
        .unwrap();
    let again = pk[i];
    pk[j] = again;
    fix_cc(&mut pk, 0x11);
    assert_exactly(&pk, &[Indicator::SdtError]);
}

/// The analyser's figures do not depend on how the bytes are cut.
#[test]
fn any_cut_same_figures() {
    let mut pk = clean_or_skip!();
    let i = plain_video(&pk, 5000, 4);
    for x in &mut pk[i..i + 3] {
        x[0] = 0x00;
    }
    let j = plain_video(&pk, 9000, 1);
    pk[j][3] ^= 0x03;
    let whole = analyse_with(&pk, Config::mux(true));
    let bytes: Vec<u8> = pk.iter().flatten().copied().collect();
    let mut a = Tr101290::new(Config::mux(true));
    let mut off = 0;
    let mut k = 0usize;
    while off < bytes.len() {
        let n = [1usize, 7, 188, 500, 3000][k % 5].min(bytes.len() - off);
        a.push_bytes(&bytes[off..off + n], t((off + n) / PACKET_SIZE));
        off += n;
        k += 1;
    }
    assert_eq!(table(&a), table(&whole));
}
