//! The dvbapi client against a fake softcam: a TCP server in the test that
//! speaks OSCam's network protocol as its README.dvbapi_protocol lays the
//! messages out (written and parsed here byte by byte, not with capbox's
//! codec). Checks the CA PMT field by field, the filter → FILTER_DATA →
//! CA_SET_DESCR round, protocols 3 and 2, an unknown opcode (the client
//! must reconnect cleanly), a softcam restart, garbage, and a key mode
//! capbox cannot use.

use capbox::ca::csa::Parity;
use capbox::ca::dvbapi::{DvbapiSession, SoftcamClient};
use capbox::ca::CaSession;
use capbox::config::SoftcamConfig;
use capbox::ts::pat::{PatEntry, PatRepr};
use capbox::ts::pmt::{PmtRepr, PmtStream};
use capbox::ts::section::packetize;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROGRAM: u16 = 1;
const PMT_PID: u16 = 0x1000;
const ECM_PID: u16 = 0x500;
const CAID: u16 = 0x0B00;
const EVEN: [u8; 8] = [0x11, 0x22, 0x33, 0x66, 0x44, 0x55, 0x66, 0xFF];
const ODD: [u8; 8] = [0x01, 0x02, 0x03, 0x06, 0x04, 0x05, 0x06, 0x0F];
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the mux

/// PAT, PMT (CA descriptor at program level and on the audio stream) and
/// one ECM, packetised afresh each round so continuity counters advance.
struct Mux {
    ecm: Vec<u8>,
    /// Program 2 (PMT 0x1100, ECMs on 0x501) too.
    second: Option<Vec<u8>>,
    /// version_number of program 1's PMT.
    version: u8,
    cc: [u8; 5],
}

fn ecm_section(table_id: u8, fill: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(7) ^ fill).collect();
    let mut s = vec![table_id, 0x70, payload.len() as u8];
    s.extend_from_slice(&payload);
    s
}

fn pmt() -> PmtRepr {
    PmtRepr {
        program_number: PROGRAM,
        version: 3,
        pcr_pid: 0x100,
        program_info: vec![0x09, 4, 0x0B, 0x00, 0xE5, 0x00, 0x0E, 3, 0xC0, 0x10, 0x00],
        streams: vec![
            PmtStream {
                stream_type: 0x1B,
                elementary_pid: 0x100,
                descriptors: vec![0x52, 1, 1],
            },
            PmtStream {
                stream_type: 0x03,
                elementary_pid: 0x101,
                descriptors: vec![
                    0x0A, 4, b'e', b'n', b'g', 0, 0x09, 4, 0x0B, 0x00, 0xE5, 0x00,
                ],
            },
        ],
    }
}

impl Mux {
    fn new(ecm: Vec<u8>) -> Mux {
        Mux {
            ecm,
            second: None,
            version: 3,
            cc: [0; 5],
        }
    }

    fn round(&mut self) -> Vec<u8> {
        let pat = PatRepr {
            transport_stream_id: 7,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            entries: vec![
                PatEntry {
                    program_number: PROGRAM,
                    pid: PMT_PID,
                },
                PatEntry {
                    program_number: 2,
                    pid: 0x1100,
                },
            ],
        };
        let mut out = Vec::new();
        packetize(&pat.emit(), 0, &mut self.cc[0], &mut out);
        let mut p1 = pmt();
        p1.version = self.version;
        packetize(&p1.emit(), PMT_PID, &mut self.cc[1], &mut out);
        packetize(&self.ecm, ECM_PID, &mut self.cc[2], &mut out);
        if let Some(ecm2) = &self.second {
            let mut p = pmt();
            p.program_number = 2;
            p.program_info = vec![0x09, 4, 0x0B, 0x00, 0xE5, 0x01];
            p.streams.truncate(1);
            packetize(&p.emit(), 0x1100, &mut self.cc[3], &mut out);
            packetize(ecm2, 0x501, &mut self.cc[4], &mut out);
        }
        out
    }
}

/// Feed the session until `done` holds (or fail after `WAIT`).
fn feed_until(
    session: &mut DvbapiSession,
    mux: &mut Mux,
    what: &str,
    mut done: impl FnMut(&DvbapiSession) -> bool,
) {
    let start = Instant::now();
    loop {
        session.feed(&mux.round(), Instant::now());
        if done(session) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}; status {:?}",
            session.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn words(s: &DvbapiSession) -> (Option<[u8; 8]>, Option<[u8; 8]>) {
    let snap = s.slots().snapshot();
    (
        snap.get(Parity::Even).map(|d| d.cw),
        snap.get(Parity::Odd).map(|d| d.cw),
    )
}

// ------------------------------------------------------- the fake softcam

trait Stream: Read + Write + Send {}
impl Stream for TcpStream {}
impl Stream for UnixStream {}

/// One accepted client, as the softcam sees it.
struct Peer {
    s: Box<dyn Stream>,
    framed: bool,
    id: u32,
}

/// What the client sent.
#[derive(Debug, PartialEq)]
enum FromClient {
    CaPmt(Vec<u8>),
    FilterData {
        demux: u8,
        filter: u8,
        section: Vec<u8>,
    },
    Stop(u8),
    Eof,
}

fn accept(l: &TcpListener) -> Box<dyn Stream> {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    Box::new(s)
}

impl Peer {
    fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.s.read_exact(&mut v).unwrap();
        v
    }

    /// The first message: CLIENT_INFO without prefix. Returns (protocol,
    /// name); the framing of everything after follows the protocol.
    fn hello(s: Box<dyn Stream>) -> (Peer, u16, String) {
        let mut p = Peer {
            s,
            framed: false,
            id: 0,
        };
        let h = p.read_n(7);
        assert_eq!(
            &h[..4],
            &[0xFF, 0xFF, 0x00, 0x01],
            "CLIENT_INFO opcode, unprefixed"
        );
        let protocol = u16::from_be_bytes([h[4], h[5]]);
        let name = String::from_utf8(p.read_n(h[6] as usize)).unwrap();
        p.framed = protocol >= 3;
        (p, protocol, name)
    }

    /// Send when the client may already have closed.
    fn try_send(&mut self, body: &[u8]) {
        let mut v = vec![0xA5];
        self.id += 1;
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(body);
        let _ = self.s.write_all(&v);
    }

    fn send(&mut self, body: &[u8]) {
        let mut v = Vec::new();
        if self.framed {
            self.id += 1;
            v.push(0xA5);
            v.extend_from_slice(&self.id.to_be_bytes());
        }
        v.extend_from_slice(body);
        self.s.write_all(&v).unwrap();
    }

    fn next(&mut self) -> FromClient {
        let mut first = [0u8; 1];
        match self.s.read(&mut first) {
            Ok(0) => return FromClient::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return FromClient::Eof,
            Err(e) => panic!("reading from the client: {e}"),
        }
        let op = if self.framed {
            assert_eq!(first[0], 0xA5, "protocol 3 message start");
            let _id = self.read_n(4);
            self.read_n(4)
        } else {
            let mut v = first.to_vec();
            v.extend(self.read_n(3));
            v
        };
        match op[..] {
            [0xFF, 0xFF, 0x00, 0x00] => {
                let h = self.read_n(5);
                let len = (((h[3] & 0x0F) as usize) << 8) | h[4] as usize;
                let mut section = h[2..].to_vec();
                section.extend(self.read_n(len));
                FromClient::FilterData {
                    demux: h[0],
                    filter: h[1],
                    section,
                }
            }
            [0x9F, 0x80, 0x32, l0] => {
                let len = if l0 < 0x80 {
                    l0 as usize
                } else {
                    self.read_n((l0 & 0x7F) as usize)
                        .iter()
                        .fold(0usize, |a, &b| a << 8 | b as usize)
                };
                FromClient::CaPmt(self.read_n(len))
            }
            [0x9F, 0x80, 0x3F, 0x04] => {
                let b = self.read_n(4);
                assert_eq!(&b[..3], &[0x83, 0x02, 0x00]);
                FromClient::Stop(b[3])
            }
            _ => panic!("unexpected client message {op:02X?}"),
        }
    }

    fn next_pmt(&mut self) -> Vec<u8> {
        match self.next() {
            FromClient::CaPmt(b) => b,
            m => panic!("expected a CA PMT, got {m:?}"),
        }
    }

    fn next_data(&mut self) -> (u8, u8, Vec<u8>) {
        match self.next() {
            FromClient::FilterData {
                demux,
                filter,
                section,
            } => (demux, filter, section),
            m => panic!("expected FILTER_DATA, got {m:?}"),
        }
    }
}

// Server messages, field by field from README.dvbapi_protocol.

fn server_info(protocol: u16) -> Vec<u8> {
    let text = b"OSCam fake\n2.26\"; ";
    let mut v = vec![0xFF, 0xFF, 0x00, 0x02];
    v.extend_from_slice(&protocol.to_be_bytes());
    v.push(text.len() as u8);
    v.extend_from_slice(text);
    v
}

fn set_filter(adapter: u8, demux: u8, filter: u8, pid: u16, table: u8, mask: u8) -> Vec<u8> {
    let mut v = vec![0x40, 0x3C, 0x6F, 0x2B, adapter, demux, filter];
    v.extend_from_slice(&pid.to_be_bytes());
    let mut f = [0u8; 16];
    f[0] = table;
    let mut m = [0u8; 16];
    m[0] = mask;
    v.extend_from_slice(&f);
    v.extend_from_slice(&m);
    v.extend_from_slice(&[0u8; 16]); // mode
    v.extend_from_slice(&0u32.to_be_bytes()); // timeout
    v.extend_from_slice(&1u32.to_be_bytes()); // flags: DMX_CHECK_CRC
    v
}

fn ca_set_pid(adapter: u8, pid: u32, index: i32) -> Vec<u8> {
    let mut v = vec![0x40, 0x08, 0x6F, 0x87, adapter];
    v.extend_from_slice(&pid.to_be_bytes());
    v.extend_from_slice(&index.to_be_bytes());
    v
}

fn ca_set_descr_mode(adapter: u8, index: u32, algo: u32) -> Vec<u8> {
    let mut v = vec![0x40, 0x0C, 0x6F, 0x88, adapter];
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(&algo.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes()); // cipher_mode ECB
    v
}

fn ca_set_descr(adapter: u8, index: u32, parity: u32, cw: [u8; 8]) -> Vec<u8> {
    let mut v = vec![0x40, 0x10, 0x6F, 0x86, adapter];
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(&parity.to_be_bytes());
    v.extend_from_slice(&cw);
    v
}

fn ecm_info(adapter: u8, sid: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFF, 0x00, 0x03, adapter];
    v.extend_from_slice(&sid.to_be_bytes());
    v.extend_from_slice(&CAID.to_be_bytes());
    v.extend_from_slice(&ECM_PID.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes()); // provider
    v.extend_from_slice(&37u32.to_be_bytes()); // ecm time, ms
                                               // The reader name carries a line break and a quote: names from the
                                               // network reach /status as one clean line.
    for s in [&b"Conax"[..], b"fake\r\nreader\"", b"local", b"internal"] {
        v.push(s.len() as u8);
        v.extend_from_slice(s);
    }
    v.push(0); // hops
    v
}

/// Check a CA PMT body field by field (EN 50221 §8.4.3.4 + OSCam's
/// private descriptors); returns the adapter_device.
fn check_ca_pmt(b: &[u8], list_management: u8) -> u8 {
    assert_eq!(b[0], list_management, "ca_pmt_list_management");
    assert_eq!(u16::from_be_bytes([b[1], b[2]]), PROGRAM, "program_number");
    assert_eq!(
        b[3],
        0xC0 | 3 << 1 | 1,
        "reserved, version_number 3, current_next 1"
    );
    let pil = (((b[4] & 0x0F) as usize) << 8) | b[5] as usize;
    assert_eq!(b[4] & 0xF0, 0xF0, "reserved bits");
    let info = &b[6..6 + pil];
    assert_eq!(
        info[0], 1,
        "ca_pmt_cmd_id ok_descrambling, counted in program_info_length"
    );
    // Descriptors after the command byte.
    let mut tags = Vec::new();
    let mut d = &info[1..];
    let mut adapter = None;
    while !d.is_empty() {
        let (tag, len) = (d[0], d[1] as usize);
        let body = &d[2..2 + len];
        match tag {
            0x83 => {
                assert_eq!(len, 1);
                adapter = Some(body[0]);
            }
            0x84 => assert_eq!(body, PMT_PID.to_be_bytes()),
            0x86 | 0x87 => assert_eq!(len, 1),
            0x09 => assert_eq!(body, [0x0B, 0x00, 0xE5, 0x00]),
            t => panic!("descriptor 0x{t:02X} in the CA PMT program info"),
        }
        tags.push(tag);
        d = &d[2 + len..];
    }
    assert_eq!(tags, [0x83, 0x84, 0x86, 0x87, 0x09]);
    // ES loop: video without CA descriptors, audio with its own.
    let es = &b[6 + pil..];
    assert_eq!(&es[..5], &[0x1B, 0xE1, 0x00, 0xF0, 0x00]);
    assert_eq!(
        &es[5..],
        &[0x03, 0xE1, 0x01, 0xF0, 7, 1, 0x09, 4, 0x0B, 0x00, 0xE5, 0x00]
    );
    adapter.unwrap()
}

/// Handshake, CA PMT, filter, first ECM, words. Returns the peer and the
/// adapter number.
fn serve_keys(p: &mut Peer, protocol: u16, ecm: &[u8], even: [u8; 8], odd: [u8; 8]) -> u8 {
    p.send(&server_info(protocol));
    let adapter = check_ca_pmt(&p.next_pmt(), 4);
    p.send(&set_filter(adapter, 3, 0, ECM_PID, 0x80, 0xFF));
    let (demux, filter, section) = p.next_data();
    assert_eq!(
        (demux, filter),
        (3, 0),
        "FILTER_DATA echoes demux and filter"
    );
    assert_eq!(section, ecm, "the ECM section as on the wire");
    p.send(&ca_set_pid(adapter, 0x100, 0));
    p.send(&ca_set_pid(adapter, 0x101, 0));
    p.send(&ca_set_descr_mode(adapter, 0, 0));
    p.send(&ca_set_descr(adapter, 0, 0, even));
    p.send(&ca_set_descr(adapter, 0, 1, odd));
    p.send(&ecm_info(adapter, PROGRAM));
    adapter
}

fn client(port: u16, protocol: u16) -> Arc<SoftcamClient> {
    let mut cfg = SoftcamConfig::tcp("127.0.0.1", port);
    cfg.protocol = protocol;
    cfg.name = "capbox-test".to_string();
    SoftcamClient::start(cfg).unwrap()
}

fn join(h: JoinHandle<()>) {
    if let Err(e) = h.join() {
        std::panic::resume_unwind(e);
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn protocol_3_words_reach_the_slots_and_stop_on_drop() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm1 = ecm_section(0x80, 1);
    let ecm2 = ecm_section(0x80, 2);
    let (tx, rx) = mpsc::channel::<&str>();
    let (e1, e2) = (ecm1.clone(), ecm2.clone());
    let fake = std::thread::spawn(move || {
        let (mut p, protocol, name) = Peer::hello(accept(&l));
        assert_eq!((protocol, name.as_str()), (3, "capbox-test"));
        let adapter = serve_keys(&mut p, 3, &e1, EVEN, ODD);
        // The same ECM keeps coming in the mux: only the changed one is
        // forwarded next.
        let (_, _, section) = p.next_data();
        assert_eq!(section, e2, "an unchanged ECM was sent again");
        // A filter set again restarts (Linux demux): the same ECM comes
        // once more.
        p.send(&set_filter(adapter, 3, 0, ECM_PID, 0x80, 0xFF));
        let (_, _, section) = p.next_data();
        assert_eq!(section, e2);
        tx.send("second ecm").unwrap();
        let demux = match p.next() {
            FromClient::Stop(d) => d,
            m => panic!("expected AOT_CA_STOP, got {m:?}"),
        };
        assert_eq!(demux, 0);
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client.clone(), PROGRAM);
    let mut mux = Mux::new(ecm1);
    feed_until(&mut session, &mut mux, "both words", |s| {
        words(s) == (Some(EVEN), Some(ODD)) && s.status().caid.is_some()
    });
    let st = session.status();
    assert_eq!(st.kind, "dvbapi");
    assert!(
        st.state.starts_with(&format!(
            "control words from the softcam at 127.0.0.1:{port}"
        )),
        "{}",
        st.state
    );
    assert!(st.state.contains("fake reader'"), "{}", st.state);
    assert!(
        !st.state.contains('\n') && !st.state.contains('"'),
        "{}",
        st.state
    );
    let server = format!("{:?}", client.status().state);
    assert!(server.contains(r#"OSCam fake 2.26'"#), "{server}");
    assert_eq!(st.caid, Some(CAID));
    assert_eq!(st.ecm_pid, Some(ECM_PID));
    assert_eq!(st.cws_delivered, 2);
    assert_eq!(st.last_ecm_rtt_ms, Some(37.0));
    assert_eq!(st.ecms_sent, 1);
    assert!(st.ecms_seen >= 1);
    mux.ecm = ecm2;
    feed_until(&mut session, &mut mux, "the changed ECM", |_| {
        rx.try_recv().is_ok()
    });
    assert_eq!(session.status().ecms_sent, 3);
    drop(session);
    join(fake);
    assert_eq!(client.status().desyncs, 0);
}

#[test]
fn protocol_2_is_unframed() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm = ecm_section(0x81, 9);
    let e = ecm.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, protocol, _) = Peer::hello(accept(&l));
        assert_eq!(protocol, 2);
        assert!(!p.framed);
        // serve_keys answers the 0x80 filter; this ECM is 0x81: ask for it.
        p.send(&server_info(2));
        let adapter = check_ca_pmt(&p.next_pmt(), 4);
        p.send(&set_filter(adapter, 0, 1, ECM_PID, 0x80, 0xFE));
        let (demux, filter, section) = p.next_data();
        assert_eq!((demux, filter, &section), (0, 1, &e));
        p.send(&ca_set_descr(adapter, 2, 1, ODD));
        p.send(&ca_set_descr(adapter, 2, 0, EVEN));
        // Stay connected while the test looks at the status.
        let _ = rx.recv();
    });
    let client = client(port, 2);
    let mut session = DvbapiSession::new(client, PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "both words", |s| {
        words(s) == (Some(EVEN), Some(ODD))
    });
    let st = session.status();
    assert!(st.state.starts_with("control words from the softcam"));
    // No ECM_INFO here: the CA system comes from the PMT's descriptor.
    assert_eq!((st.ecm_pid, st.caid), (Some(ECM_PID), Some(CAID)));
    tx.send(()).unwrap();
    join(fake);
}

#[test]
fn unknown_opcode_reconnects_cleanly() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm = ecm_section(0x80, 3);
    let e = ecm.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, _, _) = Peer::hello(accept(&l));
        p.send(&server_info(3));
        let adapter = check_ca_pmt(&p.next_pmt(), 4);
        // An opcode from a newer softcam, then a word the client must not
        // take: after an unknown message nothing can be trusted.
        p.send(&[0x40, 0x20, 0x6F, 0x99, adapter, 0, 0, 0, 0]);
        p.try_send(&ca_set_descr(adapter, 0, 0, [9; 8]));
        assert_eq!(
            p.next(),
            FromClient::Eof,
            "the client closes the connection"
        );
        // It comes back, says hello unprefixed and announces the program
        // again.
        let (mut p, protocol, _) = Peer::hello(accept(&l));
        assert_eq!(protocol, 3);
        serve_keys(&mut p, 3, &e, EVEN, ODD);
        let _ = rx.recv();
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client.clone(), PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "words after reconnecting", |s| {
        words(s) == (Some(EVEN), Some(ODD))
    });
    let st = session.status();
    assert_eq!(
        st.last_error.as_deref(),
        Some("softcam sent an unknown message 0x40206F99; reconnected")
    );
    assert!(st.state.starts_with("control words"), "{}", st.state);
    let cs = client.status();
    assert_eq!((cs.desyncs, cs.connections), (1, 2));
    tx.send(()).unwrap();
    join(fake);
}

#[test]
fn softcam_restart_recovers() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm = ecm_section(0x80, 4);
    let e = ecm.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, _, _) = Peer::hello(accept(&l));
        serve_keys(&mut p, 3, &e, EVEN, ODD);
        // The softcam goes away entirely.
        drop(p);
        drop(l);
        rx.recv().unwrap();
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (mut p, _, _) = Peer::hello(accept(&l));
        serve_keys(&mut p, 3, &e, ODD, EVEN);
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client.clone(), PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "first words", |s| {
        words(s) == (Some(EVEN), Some(ODD))
    });
    feed_until(&mut session, &mut mux, "the softcam gone", |s| {
        s.status().state == format!("waiting for the softcam at 127.0.0.1:{port}")
    });
    // A short outage keeps the words: the crypto period goes on.
    assert_eq!(words(&session), (Some(EVEN), Some(ODD)));
    tx.send(()).unwrap();
    feed_until(
        &mut session,
        &mut mux,
        "words from the restarted softcam",
        |s| words(s) == (Some(ODD), Some(EVEN)),
    );
    join(fake);
    assert!(client.status().connections >= 2);
}

#[test]
fn garbage_then_recovery() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm = ecm_section(0x80, 5);
    let e = ecm.clone();
    let fake = std::thread::spawn(move || {
        // Several connections of noise: unframed junk, framed junk, a
        // truncated known message followed by a close.
        let mut x: u32 = 0xC0FF_EE11;
        for round in 0..3 {
            let (mut p, _, _) = Peer::hello(accept(&l));
            p.send(&server_info(3));
            let _ = p.next_pmt();
            let junk: Vec<u8> = (0..200)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            match round {
                0 => p.s.write_all(&junk).unwrap(),
                1 => p.send(&junk),
                _ => {
                    p.send(&set_filter(0, 0, 0, ECM_PID, 0x80, 0xFF)[..20]);
                    continue; // closed here: the client must cope
                }
            }
            assert_eq!(p.next(), FromClient::Eof);
        }
        let (mut p, _, _) = Peer::hello(accept(&l));
        serve_keys(&mut p, 3, &e, EVEN, ODD);
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client.clone(), PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "words after the noise", |s| {
        words(s) == (Some(EVEN), Some(ODD))
    });
    join(fake);
    assert!(client.status().desyncs >= 2);
}

#[test]
fn other_algorithms_are_refused_and_said() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ecm = ecm_section(0x80, 6);
    let e = ecm.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, _, _) = Peer::hello(accept(&l));
        p.send(&server_info(3));
        let adapter = check_ca_pmt(&p.next_pmt(), 4);
        p.send(&set_filter(adapter, 0, 0, ECM_PID, 0x80, 0xFF));
        assert_eq!(p.next_data().2, e);
        p.send(&ca_set_descr_mode(adapter, 0, 2)); // AES-128
        p.send(&ca_set_descr(adapter, 0, 0, EVEN));
        // A word for an index none of its PIDs uses is not taken either.
        p.send(&ca_set_pid(adapter, 0x100, 1));
        p.send(&ca_set_descr(adapter, 7, 1, ODD));
        // DES signalled by the index (OSCam's extended CW API "e2").
        p.send(&ca_set_pid(adapter, 0x101, 0x105));
        p.send(&ca_set_descr(adapter, 0x105, 1, ODD));
        p.send(&ecm_info(adapter, PROGRAM));
        rx.recv().unwrap();
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client, PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "the refusals", |s| {
        let st = s.status();
        st.ecm_errors == 3 && st.ecms_answered == 1
    });
    assert_eq!(words(&session), (None, None));
    let st = session.status();
    assert!(
        st.state
            .contains("gives DES keys; capbox descrambles DVB-CSA only"),
        "{}",
        st.state
    );
    tx.send(()).unwrap();
    join(fake);
}

#[test]
fn two_services_share_one_connection() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (ecm1, ecm2) = (ecm_section(0x80, 7), ecm_section(0x80, 8));
    let (e1, e2) = (ecm1.clone(), ecm2.clone());
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, _, _) = Peer::hello(accept(&l));
        p.send(&server_info(3));
        // Two CA PMTs, each with its own adapter/demux/ca device.
        let mut adapters = std::collections::HashMap::new();
        for _ in 0..2 {
            let b = p.next_pmt();
            assert_eq!(b[0], 4, "list management add: the other program stays");
            let program = u16::from_be_bytes([b[1], b[2]]);
            let pil = (((b[4] & 0x0F) as usize) << 8) | b[5] as usize;
            let info = &b[6..6 + pil];
            assert_eq!(&info[1..3], &[0x83, 1]);
            let n = info[3];
            assert_eq!(
                &info[4..10],
                &[
                    0x84,
                    2,
                    (if program == 1 { 0x10 } else { 0x11 }),
                    0,
                    0x86,
                    1
                ]
            );
            assert_eq!((info[10], &info[11..14]), (n, &[0x87, 1, n][..]));
            adapters.insert(program, n);
        }
        let (a1, a2) = (adapters[&1], adapters[&2]);
        assert_ne!(a1, a2);
        p.send(&set_filter(a1, 0, 0, ECM_PID, 0x80, 0xFF));
        p.send(&set_filter(a2, 1, 0, 0x501, 0x80, 0xFF));
        let mut got = vec![p.next_data(), p.next_data()];
        got.sort();
        assert_eq!(got, vec![(0, 0, e1), (1, 0, e2)]);
        p.send(&ca_set_descr(a1, 0, 0, EVEN));
        p.send(&ca_set_descr(a1, 0, 1, ODD));
        p.send(&ca_set_descr(a2, 1, 0, ODD));
        p.send(&ca_set_descr(a2, 1, 1, EVEN));
        let _ = rx.recv();
    });
    let client = client(port, 3);
    let mut s1 = DvbapiSession::new(client.clone(), 1);
    let mut s2 = DvbapiSession::new(client.clone(), 2);
    let mut mux = Mux::new(ecm1);
    mux.second = Some(ecm2);
    let start = Instant::now();
    loop {
        let ts = mux.round();
        s1.feed(&ts, Instant::now());
        s2.feed(&ts, Instant::now());
        if words(&s1) == (Some(EVEN), Some(ODD)) && words(&s2) == (Some(ODD), Some(EVEN)) {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "{:?} {:?}",
            s1.status(),
            s2.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!((s1.status().ecms_sent, s2.status().ecms_sent), (1, 1));
    tx.send(()).unwrap();
    join(fake);
}

#[test]
fn unix_socket_softcam() {
    let dir = std::env::temp_dir().join(format!("capbox-dvbapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("camd.socket");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let ecm = ecm_section(0x80, 10);
    let e = ecm.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let (mut p, _, _) = Peer::hello(Box::new(s));
        serve_keys(&mut p, 3, &e, EVEN, ODD);
        let _ = rx.recv();
    });
    let mut cfg = SoftcamConfig::tcp("unused", 1);
    cfg.endpoint = capbox::config::SoftcamEndpoint::Unix(path.clone());
    let client = SoftcamClient::start(cfg).unwrap();
    let mut session = DvbapiSession::new(client, PROGRAM);
    let mut mux = Mux::new(ecm);
    feed_until(&mut session, &mut mux, "words over the unix socket", |s| {
        words(s) == (Some(EVEN), Some(ODD))
    });
    let st = session.status().state;
    assert!(
        st.contains(&format!("softcam at {}", path.display())),
        "{st}"
    );
    tx.send(()).unwrap();
    join(fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn new_pmt_version_is_sent_as_update() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel::<()>();
    let (txv, rxv) = mpsc::channel::<()>();
    let fake = std::thread::spawn(move || {
        let (mut p, _, _) = Peer::hello(accept(&l));
        p.send(&server_info(3));
        check_ca_pmt(&p.next_pmt(), 4);
        txv.send(()).unwrap();
        let b = p.next_pmt();
        assert_eq!(b[0], 5, "ca_pmt_list_management update");
        assert_eq!(b[3], 0xC0 | 4 << 1 | 1, "version_number 4");
        txv.send(()).unwrap();
        let _ = rx.recv();
    });
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client, PROGRAM);
    let mut mux = Mux::new(ecm_section(0x80, 11));
    feed_until(&mut session, &mut mux, "the first CA PMT", |_| {
        rxv.try_recv().is_ok()
    });
    let st = session.status().state;
    assert!(st.contains("waiting for control words"), "{st}");
    mux.version = 4;
    feed_until(&mut session, &mut mux, "the updated CA PMT", |_| {
        rxv.try_recv().is_ok()
    });
    tx.send(()).unwrap();
    join(fake);
}

#[test]
fn no_softcam_and_noise_in_the_mux() {
    // A port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = client(port, 3);
    let mut session = DvbapiSession::new(client, PROGRAM);
    // Noise with sync bytes on PAT, the PMT PID and others, then the mux.
    let mut x: u32 = 0x5EED_0001;
    let mut noise = Vec::new();
    for i in 0..2000 {
        let mut p = [0u8; 188];
        for b in p.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        p[0] = 0x47;
        if i % 3 == 0 {
            p[1] = (p[1] & 0xE0) | (PMT_PID >> 8) as u8;
            p[2] = PMT_PID as u8;
        } else if i % 3 == 1 {
            p[1] &= 0xE0;
            p[2] = 0;
        }
        noise.extend_from_slice(&p);
    }
    let mut mux = Mux::new(ecm_section(0x80, 12));
    session.feed(&noise, Instant::now());
    feed_until(&mut session, &mut mux, "a failed connect", |s| {
        s.status().last_error.is_some()
    });
    let st = session.status();
    assert_eq!(
        st.state,
        format!("waiting for the softcam at 127.0.0.1:{port}")
    );
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("cannot connect to 127.0.0.1:"),
        "{:?}",
        st.last_error
    );
    assert_eq!(words(&session), (None, None));
}
