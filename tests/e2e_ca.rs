//! Control words end to end through `capbox serve`: samples/mux.ts program 1
//! scrambled with testca (a new control word every 0.5 s of stream time,
//! ECMs on their PID, CA_descriptor in the PMT; the scrambler's CSA output
//! is cross-checked against libdvbcsa in tests/ecm_routing.rs), served with
//! `ca = "dvbapi"` against a fake OSCam written here from the dvbapi
//! protocol's published message layout. The fake softcam is the "card": it
//! opens each ECM with the testca key and answers CA_SET_DESCR. Every ES
//! packet of the output must be clear and carry a payload of the clear
//! original, across many key changes.

mod e2e_common;
use capbox::ca::scrambler::{self, ScramblerConfig};
use capbox::ca::testca;
use e2e_common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CARD_KEY: [u8; 16] = *b"capbox-e2e-key!!";
const ES_PIDS: [u16; 2] = [0x101, 0x102];

// ------------------------------------------------- a fake OSCam (protocol 3)

struct Peer {
    s: TcpStream,
    id: u32,
}

impl Peer {
    fn read_n(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.s.read_exact(&mut v).ok()?;
        Some(v)
    }

    fn send(&mut self, body: &[u8]) -> Option<()> {
        self.id += 1;
        let mut v = vec![0xA5];
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(body);
        self.s.write_all(&v).ok()
    }
}

/// ECM PID of CA system `caid` in a CA PMT's program_info, and the
/// adapter index (private descriptor 0x83).
fn parse_ca_pmt(b: &[u8], caid: u16) -> (Option<u16>, u8) {
    let pil = (((b[4] & 0x0F) as usize) << 8) | b[5] as usize;
    let mut d = &b[7..6 + pil]; // after ca_pmt_cmd_id
    let (mut ecm, mut adapter) = (None, 0);
    while d.len() >= 2 {
        let (tag, len) = (d[0], d[1] as usize);
        let body = &d[2..2 + len];
        match tag {
            0x83 => adapter = body[0],
            0x09 if u16::from_be_bytes([body[0], body[1]]) == caid => {
                ecm = Some(u16::from_be_bytes([body[2], body[3]]) & 0x1FFF)
            }
            _ => {}
        }
        d = &d[2 + len..];
    }
    (ecm, adapter)
}

/// Serve one client connection until it closes: ECMs answered with the
/// words testca gives for them. Counts answers in `answered`.
fn serve(s: TcpStream, answered: &AtomicU64) -> Option<()> {
    s.set_nodelay(true).ok()?;
    let mut p = Peer { s, id: 0 };
    let h = p.read_n(7)?;
    assert_eq!(&h[..4], &[0xFF, 0xFF, 0x00, 0x01], "CLIENT_INFO");
    p.read_n(h[6] as usize)?;
    let mut info = vec![0xFF, 0xFF, 0x00, 0x02, 0x00, 0x03, 4];
    info.extend_from_slice(b"fake");
    p.send(&info)?;
    let mut adapter = 0u8;
    loop {
        let start = p.read_n(9)?;
        assert_eq!(start[0], 0xA5, "protocol 3 framing");
        match start[5..9] {
            [0x9F, 0x80, 0x32, l0] => {
                let len = if l0 < 0x80 {
                    l0 as usize
                } else {
                    p.read_n((l0 & 0x7F) as usize)?
                        .iter()
                        .fold(0usize, |a, &b| a << 8 | b as usize)
                };
                let body = p.read_n(len)?;
                let (ecm, a) = parse_ca_pmt(&body, testca::CAID);
                adapter = a;
                let ecm = ecm.expect("CA PMT names the testca ECM PID");
                // DMX_SET_FILTER: table_id 0x80 with mask 0xFE (0x80 and 0x81).
                let mut v = vec![0x40, 0x3C, 0x6F, 0x2B, adapter, 0, 0];
                v.extend_from_slice(&ecm.to_be_bytes());
                let mut f = [0u8; 48];
                f[0] = 0x80;
                f[16] = 0xFE;
                v.extend_from_slice(&f);
                v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
                p.send(&v)?;
                // CA_SET_PID: ES PIDs on descrambler index 0.
                for pid in ES_PIDS {
                    let mut v = vec![0x40, 0x08, 0x6F, 0x87, adapter];
                    v.extend_from_slice(&(pid as u32).to_be_bytes());
                    v.extend_from_slice(&0i32.to_be_bytes());
                    p.send(&v)?;
                }
            }
            [0xFF, 0xFF, 0x00, 0x00] => {
                let h = p.read_n(5)?;
                let len = (((h[3] & 0x0F) as usize) << 8) | h[4] as usize;
                let mut section = h[2..].to_vec();
                section.extend(p.read_n(len)?);
                let Ok(e) = testca::open_ecm(&CARD_KEY, &section) else {
                    continue;
                };
                for (parity, cw) in [(0u32, e.even), (1, e.odd)] {
                    let mut v = vec![0x40, 0x10, 0x6F, 0x86, adapter];
                    v.extend_from_slice(&0u32.to_be_bytes());
                    v.extend_from_slice(&parity.to_be_bytes());
                    v.extend_from_slice(&cw);
                    p.send(&v)?;
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
            [0x9F, 0x80, 0x3F, 0x04] => {
                p.read_n(4)?;
            }
            _ => panic!("unexpected client message {:02X?}", &start[5..9]),
        }
    }
}

fn fake_oscam() -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, st) = (answered.clone(), stop.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            if st.load(Ordering::Relaxed) {
                break;
            }
            let Ok(s) = s else { continue };
            let a = a.clone();
            std::thread::spawn(move || {
                let _ = serve(s, &a);
            });
        }
    });
    (port, answered, stop)
}

// ------------------------------------------------------------------ the test

#[test]
fn dvbapi_words_descramble_every_packet_across_key_changes() {
    let clear = std::fs::read(sample_mux()).unwrap();
    let mut cfg = ScramblerConfig::new(CARD_KEY, 0xE2E);
    cfg.services = vec![1];
    cfg.period_ms = 500;
    let (scrambled, log, stats) = scrambler::scramble(&clear, cfg);
    assert!(stats.periods >= 30, "{stats:?}");
    assert!(!log.is_empty());
    let tmp = TempDir::new("e2e-ca");
    let file = tmp.join("testca.ts");
    std::fs::write(&file, &scrambled).unwrap();

    let clear_payloads = es_payloads(&clear, &ES_PIDS);

    let (port, answered, stop) = fake_oscam();
    let config = format!(
        "{}[softcam]\nhost = \"127.0.0.1\"\nport = {port}\n\n\
         [[channel]]\nname = \"scr\"\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\nca = \"dvbapi\"\n",
        server_toml(),
        file.display()
    );
    let srv = Server::start("e2e-ca", &config);
    srv.wait_up(&["scr"]);
    // Words flowing, and a keyframe since, so a new client starts clear.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = srv.metrics();
            metric(&m, "capbox_channel_descrambled_packets_total", "scr").unwrap_or(0.0) > 500.0
        }),
        "no packet descrambled; softcam answered {} ECMs\n{}",
        answered.load(Ordering::Relaxed),
        srv.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    let st0 = srv.status();
    let switches0 = status_channel(&st0, "scr").unwrap()["descrambler"]["parity_switches"]
        .as_u64()
        .unwrap_or(0);
    let out = capture(srv.addr, "/stream/scr", Duration::from_secs(4));
    let checked = assert_descrambled(&out, &clear_payloads);
    assert!(checked > 500, "only {checked} ES packets checked");
    let st = srv.status();
    let ch = status_channel(&st, "scr").unwrap();
    let switches = ch["descrambler"]["parity_switches"].as_u64().unwrap_or(0);
    assert!(
        switches >= switches0 + 6,
        "key changes during the capture: {switches0} → {switches}\n{ch}"
    );
    assert_eq!(ch["ca"]["kind"], "dvbapi", "{ch}");
    assert_eq!(ch["descrambler"]["wrong_key"], 0, "{ch}");
    assert!(st["softcam"]["state"]
        .as_str()
        .unwrap_or("")
        .starts_with("ready"));
    // The output PMT does not say "scrambled" and ECMs are not carried.
    assert_eq!(count_pid(&out, 0x1FA0), 0, "ECM PID carried");
    if have("ffmpeg") {
        let f = tmp.join("out.ts");
        std::fs::write(&f, &out).unwrap();
        let (ok, err) = ffmpeg_errors(&f);
        assert!(ok && err.trim().is_empty(), "ffmpeg: {err}");
    }
    stop.store(true, Ordering::Relaxed);
}
