//! The testca ECM path end to end, in process: samples/mux.ts (made by
//! ffmpeg) scrambled by capbox's testca scrambler → `CardSession` (its
//! `EcmRouter` finds the CA descriptors, routes ECMs/EMMs) → an in-test
//! card that opens ECMs with `testca::open_ecm` → `KeySlots` → DVB-CSA
//! descrambling following each packet's parity → every ES packet equals
//! the clear original; the same with a card thread answering late by up to
//! three crypto periods (deterministic delays in packets): never a packet
//! descrambled with a wrong word. The scrambled file is also checked by
//! tools capbox did not write: Debian's libdvbcsa descrambles it with the
//! key log (tests/c/testca_descramble.c) and ffprobe decodes the result;
//! tshark dissects the rewritten PMTs, the CAT and the ECM/EMM table_ids.

mod c_helpers;
use capbox::ca::card_session::CardSession;
use capbox::ca::cards::{CwPair, EcmClient};
use capbox::ca::csa::{descramble_packet, Keys, Outcome, Parity};
use capbox::ca::ecm::RouterConfig;
use capbox::ca::scrambler::{self, ScramblerConfig};
use capbox::ca::slots::{KeySlots, Snapshot};
use capbox::ca::{testca, CaSession};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const KEY: [u8; 16] = *b"capbox-testca-k0";
const MY_CARD: u32 = 0xC0FF_EE01;
const OTHER_CARD: u32 = 0xC0FF_EE02;
const SERVICES: [(u16, &[u16]); 3] = [
    (1, &[0x101, 0x102]),
    (2, &[0x201, 0x202, 0x203]),
    (3, &[0x301, 0x302]),
];

fn sample() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/mux.ts")).unwrap()
}

fn config() -> ScramblerConfig {
    let mut c = ScramblerConfig::new(KEY, 0x5EED);
    c.period_ms = 500;
    c.emm_addresses = vec![MY_CARD, OTHER_CARD];
    c.access_day = 20_000;
    c.entitled_until_day = 30_000;
    c
}

/// The scrambled sample and its key log, made once.
fn scrambled() -> &'static (Vec<u8>, Vec<scrambler::KeyLogEntry>) {
    static S: OnceLock<(Vec<u8>, Vec<scrambler::KeyLogEntry>)> = OnceLock::new();
    S.get_or_init(|| {
        let (out, log, st) = scrambler::scramble(&sample(), config());
        assert!(st.scrambled > 10_000, "{st:?}");
        assert!(st.periods >= 38, "{st:?}");
        (out, log)
    })
}

/// The card, in process: answers synchronously, on the caller's thread.
struct InProcCard {
    ecms: AtomicU64,
    emms_opened: AtomicU64,
}

impl EcmClient for InProcCard {
    fn ecm(
        &self,
        caid: u16,
        section: Vec<u8>,
        done: Box<dyn FnOnce(Result<CwPair, String>) + Send>,
    ) -> Result<(), String> {
        assert_eq!(caid, testca::CAID);
        self.ecms.fetch_add(1, Ordering::Relaxed);
        done(
            testca::open_ecm(&KEY, &section)
                .map(|e| CwPair {
                    even: Some(e.even),
                    odd: Some(e.odd),
                })
                .map_err(|e| e.to_string()),
        );
        Ok(())
    }

    fn emm(&self, _caid: u16, section: Vec<u8>) -> Result<bool, String> {
        if testca::emm_address(&section) != Some(MY_CARD) {
            return Ok(false);
        }
        let e = testca::open_emm(&KEY, MY_CARD, &section).map_err(|e| e.to_string())?;
        assert_eq!(e.entitled_until_day, 30_000);
        self.emms_opened.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

fn packets_by_pid(ts: &[u8]) -> HashMap<u16, Vec<&[u8]>> {
    let mut m: HashMap<u16, Vec<&[u8]>> = HashMap::new();
    for p in ts.chunks_exact(188) {
        let pid = (((p[1] & 0x1F) as u16) << 8) | p[2] as u16;
        m.entry(pid).or_default().push(p);
    }
    m
}

/// A minimal parity-following key holder (the real descrambler is
/// another module): each packet takes the word of the slot its bits name,
/// unless that word was delivered before the last packet of the previous
/// on-air phase of that parity — then it is an old period's word (the
/// answer for this period has not come yet): counted as stale, left
/// scrambled, never descrambled with the old word.
#[derive(Default)]
struct Holder {
    snap: Snapshot,
    on_air: Option<Parity>,
    /// Slots' generation at the last packet of each parity (even, odd),
    /// and at the last packet of its previous phase.
    last_gen: [Option<u64>; 2],
    prev_mark: [Option<u64>; 2],
    keys: Keys,
    key_gen: [Option<u64>; 2],
    stale: u64,
}

impl Holder {
    fn descramble(&mut self, slots: &KeySlots, pkt: &mut [u8]) -> Outcome {
        if slots.generation() != self.snap.generation {
            self.snap = slots.snapshot();
        }
        let (p, i) = match pkt[3] >> 6 {
            2 => (Parity::Even, 0),
            3 => (Parity::Odd, 1),
            _ => return descramble_packet(pkt, &Keys::default()),
        };
        if self.on_air != Some(p) {
            self.prev_mark[i] = self.last_gen[i];
            self.on_air = Some(p);
        }
        self.last_gen[i] = Some(self.snap.generation);
        let Some(d) = self.snap.get(p) else {
            return descramble_packet(pkt, &Keys::default()); // NoKey
        };
        if self.prev_mark[i].is_some_and(|m| d.generation <= m) {
            self.stale += 1;
            return descramble_packet(pkt, &Keys::default()); // NoKey
        }
        if self.key_gen[i] != Some(d.generation) {
            self.keys.set(p, d.cw);
            self.key_gen[i] = Some(d.generation);
        }
        descramble_packet(pkt, &self.keys)
    }
}

/// What one pass of the scrambled sample through three `CardSession`s and
/// a parity-following descrambler gave.
struct Run {
    sessions: Vec<CardSession>,
    /// Packets without a key, and those after the service's first key.
    no_key: u64,
    no_key_after_first: [u64; 3],
    /// ES packets found equal to the clear original (all descrambled ones
    /// are compared; a difference fails the test).
    compared: u64,
    scrambled_total: u64,
    descrambled: u64,
    /// Packets whose parity's word had not been renewed yet.
    stale: u64,
}

/// `before_es(i)` runs before output packet `i` when it is an ES packet.
fn run(card: Arc<dyn EcmClient>, before_es: &mut dyn FnMut(usize)) -> Run {
    let clear = sample();
    let (scr, log) = scrambled();
    let mut sessions: Vec<CardSession> = SERVICES
        .iter()
        .map(|(sid, _)| {
            CardSession::new(
                RouterConfig {
                    caids: vec![testca::CAID],
                    emm_address: Some(MY_CARD),
                    ..RouterConfig::new(*sid)
                },
                card.clone(),
            )
        })
        .collect();
    let mut holders: Vec<Holder> = SERVICES.iter().map(|_| Holder::default()).collect();
    let es: HashMap<u16, usize> = SERVICES
        .iter()
        .enumerate()
        .flat_map(|(i, (_, pids))| pids.iter().map(move |p| (*p, i)))
        .collect();
    // The caller's clock: stream time (20 s over the file), so the rate
    // limits see the real ECM rate although the test runs faster.
    let t0 = Instant::now();
    let n = scr.len() / 188;
    let mut out = Vec::with_capacity(scr.len());
    let mut done = [0u64; 3];
    let mut no_key_after_first = [0u64; 3];
    let mut no_key = 0u64;
    for (i, p) in scr.chunks_exact(188).enumerate() {
        let now = t0 + Duration::from_secs_f64(20.0 * i as f64 / n as f64);
        let pid = (((p[1] & 0x1F) as u16) << 8) | p[2] as u16;
        if es.contains_key(&pid) {
            before_es(i);
        }
        for s in sessions.iter_mut() {
            s.feed(p, now);
        }
        let mut pkt = p.to_vec();
        if let Some(&svc) = es.get(&pid) {
            match holders[svc].descramble(&sessions[svc].slots(), &mut pkt) {
                Outcome::Done => done[svc] += 1,
                Outcome::NoKey => {
                    no_key += 1;
                    if done[svc] > 0 {
                        no_key_after_first[svc] += 1;
                    }
                }
                Outcome::Clear => {}
                o => panic!("packet {i}: {o:?}"),
            }
        }
        out.extend_from_slice(&pkt);
    }
    // Every ES packet, in order per PID, equals the clear original.
    let got = packets_by_pid(&out);
    let want = packets_by_pid(&clear);
    let mut compared = 0;
    for (_, pids) in SERVICES {
        for pid in pids {
            let (g, w) = (&got[pid], &want[pid]);
            assert_eq!(g.len(), w.len(), "PID {pid:#x}: packet count");
            for (k, (a, b)) in g.iter().zip(w).enumerate() {
                if a[3] >> 6 != 0 {
                    continue; // left scrambled (no key yet): counted above
                }
                assert_eq!(a, b, "PID {pid:#x} packet {k}");
                compared += 1;
            }
        }
    }
    let descrambled: u64 = done.iter().sum();
    let scrambled_total: u64 = log.iter().map(|e| e.packets).sum();
    assert_eq!(descrambled + no_key, scrambled_total);
    Run {
        sessions,
        no_key,
        no_key_after_first,
        compared,
        scrambled_total,
        descrambled,
        stale: holders.iter().map(|h| h.stale).sum(),
    }
}

#[test]
fn routed_ecms_descramble_every_es_packet() {
    let (_, log) = scrambled();
    let card = Arc::new(InProcCard {
        ecms: AtomicU64::new(0),
        emms_opened: AtomicU64::new(0),
    });
    let r = run(card.clone(), &mut |_| {});
    assert_eq!(
        r.no_key_after_first, [0; 3],
        "a key was missing after the first"
    );
    // Only the start (before PAT → PMT → ECM → answer) lacks keys.
    assert!(r.no_key < 200, "{} packets without a key", r.no_key);
    assert_eq!(r.stale, 0, "answers are synchronous: never late");
    assert!(r.compared > 14_000, "{}", r.compared);
    for (i, s) in r.sessions.iter().enumerate() {
        let st = s.status();
        let rs = s.router_stats();
        assert_eq!(st.kind, "card");
        assert_eq!(st.caid, Some(testca::CAID));
        assert_eq!(st.ecm_pid, Some(0x1FA0 + i as u16));
        assert_eq!(st.ecm_errors, 0, "{st:?}");
        // One ECM per crypto period reaches the card, the repeats do not.
        let periods = log.iter().filter(|e| e.service_id == SERVICES[i].0).count() as u64;
        assert!(
            st.ecms_sent >= periods - 1 && st.ecms_sent <= periods + 1,
            "{} ECMs sent for {periods} periods",
            st.ecms_sent
        );
        assert_eq!(st.ecms_answered, st.ecms_sent);
        assert_eq!(st.ecms_dropped, 0);
        assert!(rs.ecm_repeats > 3 * st.ecms_sent, "{rs:?}");
        // EMMs: the other card's are filtered in the router, ours are sent
        // once (identical repeats de-duplicated).
        assert!(rs.emm_other_address >= 15, "{rs:?}");
        assert_eq!(st.emms_sent, 1, "{st:?}");
        assert!(rs.emm_duplicates >= 15, "{rs:?}");
        assert_eq!(st.state, "control words from the card");
    }
    assert_eq!(card.emms_opened.load(Ordering::Relaxed), 3);
    let sent: u64 = r.sessions.iter().map(|s| s.status().ecms_sent).sum();
    assert_eq!(card.ecms.load(Ordering::Relaxed), sent);
}

type Done = Box<dyn FnOnce(Result<CwPair, String>) + Send>;

/// A card answering on its own thread, as the card manager does, late by a
/// deterministic number of packets (0 to 3 crypto periods, cycling), so
/// the run does not depend on this machine's scheduling.
struct ThreadCard {
    /// (release before packet, section, completion).
    pending: Mutex<Vec<(usize, Vec<u8>, Done)>>,
    packet: AtomicU64,
    sent: AtomicU64,
}

/// Answer delays in output packets (a crypto period is ~400).
const DELAYS: [usize; 7] = [0, 30, 120, 390, 450, 900, 1300];

impl EcmClient for ThreadCard {
    fn ecm(&self, _caid: u16, section: Vec<u8>, done: Done) -> Result<(), String> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) as usize;
        let at = self.packet.load(Ordering::Relaxed) as usize + DELAYS[n % DELAYS.len()];
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.push((at, section, done));
        Ok(())
    }

    fn emm(&self, _caid: u16, _section: Vec<u8>) -> Result<bool, String> {
        Ok(false)
    }
}

/// The same path with answers from another thread, on time and late:
/// no packet is ever garbled (`run` compares every descrambled packet);
/// late answers leave packets scrambled and counted; words get through.
#[test]
fn routed_ecms_with_late_answers_from_a_card_thread() {
    let (tx, rx) = mpsc::channel::<(Vec<u8>, Done)>();
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        for (section, done) in rx {
            done(
                testca::open_ecm(&KEY, &section)
                    .map(|e| CwPair {
                        even: Some(e.even),
                        odd: Some(e.odd),
                    })
                    .map_err(|e| e.to_string()),
            );
            ack_tx.send(()).unwrap();
        }
    });
    let card = Arc::new(ThreadCard {
        pending: Mutex::new(Vec::new()),
        packet: AtomicU64::new(0),
        sent: AtomicU64::new(0),
    });
    let c = card.clone();
    let mut release = move |i: usize| {
        c.packet.store(i as u64, Ordering::Relaxed);
        let due: Vec<_> = {
            let mut p = c.pending.lock().unwrap();
            let (due, keep) = p.drain(..).partition(|e| e.0 <= i);
            *p = keep;
            due
        };
        for (_, section, done) in due {
            tx.send((section, done)).unwrap();
            ack_rx.recv().unwrap(); // the words are in the slots
        }
    };
    let r = run(card.clone(), &mut release);
    drop(release);
    assert!(r.stale > 0, "no late answer made a difference");
    assert!(
        r.descrambled > r.scrambled_total / 3,
        "{} of {}",
        r.descrambled,
        r.scrambled_total
    );
    let mut stale_words = 0;
    for s in &r.sessions {
        let st = s.status();
        assert_eq!(st.ecm_errors, 0, "{st:?}");
        assert!(st.ecms_answered + 1 >= st.ecms_sent, "{st:?}");
        assert!(st.ecms_dropped > 0, "{st:?}"); // replaced while waiting
        assert!(st.cws_delivered >= 10, "{st:?}");
        stale_words += s.stale_words();
    }
    assert!(stale_words > 0);
    drop(r);
    worker.join().unwrap();
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: {tool} missing (apt-get install ffmpeg tshark)");
    }
    ok
}

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ecm-routing-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn libdvbcsa_descrambles_the_scrambler_output_and_ffprobe_decodes_it() {
    let Some(exe) = c_helpers::dvbcsa_helper("testca_descramble") else {
        return;
    };
    let (scr, log) = scrambled();
    let keys = tmp("keys.txt");
    std::fs::write(&keys, scrambler::write_key_log(log)).unwrap();
    let scr_path = tmp("scrambled.ts");
    std::fs::write(&scr_path, scr).unwrap();
    let out = Command::new(&exe)
        .arg(&keys)
        .stdin(std::fs::File::open(&scr_path).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "libdvbcsa helper: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let clear = sample();
    // Every packet of the input but the PMTs (rewritten) comes back
    // byte for byte, in order; the rest are the scrambler's insertions.
    let inserted: BTreeSet<u16> = [
        0x0001, 0x1000, 0x1001, 0x1002, 0x1FA0, 0x1FA1, 0x1FA2, 0x1FF0,
    ]
    .into_iter()
    .collect();
    let keep = |ts: &[u8]| -> Vec<Vec<u8>> {
        ts.chunks_exact(188)
            .filter(|p| !inserted.contains(&((((p[1] & 0x1F) as u16) << 8) | p[2] as u16)))
            .map(|p| p.to_vec())
            .collect()
    };
    let (a, b) = (keep(&out.stdout), keep(&clear));
    assert_eq!(a.len(), b.len());
    let differ = a.iter().zip(&b).position(|(x, y)| x != y);
    assert_eq!(differ, None, "first packet differing from the clear input");
    if !have("ffprobe") {
        return;
    }
    let dec = tmp("descrambled.ts");
    std::fs::write(&dec, &out.stdout).unwrap();
    // ffprobe decodes each video's SPS (640×360) after libdvbcsa…
    let probe = |f: &Path| {
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=index,codec_name,width",
            ])
            .args(["-of", "csv=p=0"])
            .arg(f)
            .output()
            .unwrap();
        assert!(o.status.success());
        // Streams are listed once per program and once alone: one each.
        let s: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        s.into_iter().collect::<Vec<_>>().join("\n")
    };
    let p = probe(&dec);
    assert_eq!(p.matches("h264,640").count(), 3, "{p}");
    // …and on the scrambled file still reads all three PMTs with their
    // CA_descriptor (7 streams), without decoding anything.
    let p = probe(&scr_path);
    assert_eq!(p.lines().count(), 7, "{p}");
    assert_eq!(p.matches("h264,640").count(), 0, "{p}");
}

/// TS in UDP in a pcap, for tshark's mp2t dissector.
fn ts_to_pcap(ts: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, dg) in ts.chunks(7 * 188).enumerate() {
        let total = 20 + 8 + dg.len();
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 239, 0, 0, 1]);
        let mut sum = ip
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum::<u32>();
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        ip.extend_from_slice(&1234u16.to_be_bytes());
        ip.extend_from_slice(&5004u16.to_be_bytes());
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

#[test]
fn tshark_reads_ca_descriptors_cat_and_ecm_table_ids() {
    if !have("tshark") {
        return;
    }
    let (scr, _) = scrambled();
    // 4 s of stream: several crypto periods of both parities.
    let part = &scr[..188 * 3000];
    let pcap = tmp("scrambled.pcap");
    std::fs::write(&pcap, ts_to_pcap(part)).unwrap();
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-d",
            "udp.port==5004,mp2t",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
        ])
        .args([
            "-E",
            "separator=;",
            "-e",
            "mpeg_sect.tid",
            "-e",
            "mpeg_pmt.pg_num",
        ])
        .args([
            "-e",
            "mpeg_descr.ca.sys_id",
            "-e",
            "mpeg_descr.ca.pid",
            "-e",
            "mpeg_ca.version",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let set = |col: usize| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.split(';').nth(col))
            .flat_map(|f| f.split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let tids = set(0);
    let programs = set(1);
    let caids = set(2);
    let ca_pids = set(3);
    let cat_versions = set(4);
    for t in ["0x02", "0x01", "0x80", "0x81", "0x82"] {
        assert!(
            tids.contains(t),
            "table_id {t} not seen by tshark: {tids:?}"
        );
    }
    assert_eq!(
        programs,
        ["0x0001", "0x0002", "0x0003"].map(String::from).into()
    );
    assert_eq!(caids, ["0xfffe".to_string()].into());
    assert_eq!(
        ca_pids,
        ["0x1fa0", "0x1fa1", "0x1fa2", "0x1ff0"]
            .map(String::from)
            .into()
    );
    assert!(!cat_versions.is_empty(), "no CAT dissected");
}

/// The router on a PMT whose CA_descriptor (and CRC) libbitstream wrote:
/// tests/c/biss_scramble.c adds CA_system_id 0x2600 with an ECM PID to
/// program 1's PMT of samples/mux.ts and sends the same dummy ECM after
/// each PMT; the router finds the PID and forwards that ECM once.
#[test]
fn router_reads_a_libbitstream_ca_descriptor() {
    let Some(exe) = c_helpers::dvbcsa_helper("biss_scramble") else {
        return;
    };
    let input = tmp("mux.ts");
    std::fs::write(&input, sample()).unwrap();
    let out = Command::new(&exe)
        .args([
            "0102030405060708",
            "pmt=0x1000",
            "ecm=0x1FB0",
            "0x101",
            "0x102",
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "biss_scramble: {:?}", out.status);
    let ts = out.stdout;
    let pmts = ts
        .chunks_exact(188)
        .filter(|p| p[1] & 0x1F == 0x10 && p[2] == 0x00)
        .count() as u64;
    assert!(pmts > 10);
    for (program, want) in [(1u16, Some((0x2600u16, 0x1FB0u16))), (2, None)] {
        let mut r = capbox::ca::ecm::EcmRouter::new(RouterConfig::new(program));
        let mut got = Vec::new();
        let t0 = Instant::now();
        for (i, p) in ts.chunks(188 * 7).enumerate() {
            r.feed(p, t0 + Duration::from_millis(i as u64), |e| {
                if let capbox::ca::ecm::Routed::Ecm { caid, pid, section } = e {
                    got.push((caid, pid, section.to_vec()));
                }
            });
        }
        assert_eq!(r.ecm_choice(), want, "program {program}");
        let s = r.stats();
        if want.is_some() {
            assert_eq!(
                got,
                vec![(0x2600, 0x1FB0, vec![0x80, 0x70, 0x05, 1, 2, 3, 4, 5])]
            );
            assert_eq!(s.ecms_seen, pmts, "{s:?}");
            assert_eq!(s.ecm_repeats, pmts - 1, "{s:?}");
        } else {
            assert!(got.is_empty());
            assert_eq!(s.ecms_seen, 0);
        }
        assert_eq!(s.psi_errors, 0, "{s:?}");
        assert!(s.pmt_updates >= 1);
    }
}
