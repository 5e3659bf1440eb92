//! A fake backend and a TS producer for the HTTP tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capbox::fanout::{ChunkWriter, Ring, RingConfig};
use capbox::http::Backend;
use capbox::ts::packet::write_header;
use capbox::ts::section::{build_long_section, packetize};
use capbox::ts::{Packet, PACKET_SIZE};

pub const PMT_PID: u16 = 0x100;
pub const VIDEO: u16 = 0x101;
pub const AUDIO: u16 = 0x102;

pub struct Fake {
    pub rings: BTreeMap<String, Arc<Ring>>,
}

impl Fake {
    pub fn new(cfg: RingConfig) -> Arc<Fake> {
        let rings = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), Ring::new(cfg)))
            .collect();
        Arc::new(Fake { rings })
    }
    pub fn ring(&self, n: &str) -> Arc<Ring> {
        self.rings[n].clone()
    }
}

impl Backend for Fake {
    fn stream(&self, channel: &str) -> Option<Arc<Ring>> {
        self.rings.get(channel).cloned()
    }
    fn channel_names(&self) -> Vec<String> {
        self.rings.keys().cloned().collect()
    }
    fn playlist(&self, base_url: &str) -> String {
        let mut s = "#EXTM3U\n".to_string();
        for n in self.rings.keys() {
            s += &format!("#EXTINF:-1 tvg-id=\"{n}\",{n}\n{base_url}/stream/{n}\n");
        }
        s
    }
    fn metrics(&self) -> String {
        "capbox_fake_up 1\n".into()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "fake": true })
    }
}

pub fn psi(pat_cc: &mut u8, pmt_cc: &mut u8) -> Vec<u8> {
    let pat = build_long_section(0, 1, 0, 0, 0, &[0, 1, 0xE1, 0x00]);
    let body = [
        0xE1, 0x01, 0xF0, 0, 0x1B, 0xE1, 0x01, 0xF0, 0, 0x0F, 0xE1, 0x02, 0xF0, 0,
    ];
    let pmt = build_long_section(2, 1, 0, 0, 0, &body);
    let mut out = Vec::new();
    packetize(&pat, 0, pat_cc, &mut out);
    packetize(&pmt, PMT_PID, pmt_cc, &mut out);
    out
}

/// Writes GOPs: entry-point video, PSI, audio PES; every video packet carries
/// a running sequence number at payload bytes 4..8 so loss is visible.
pub struct Producer {
    pub w: ChunkWriter,
    cc: [u8; 4],
    pub seq: u32,
}

impl Producer {
    pub fn new(ring: &Arc<Ring>) -> Producer {
        let (mut a, mut b) = (0, 0);
        ring.set_psi(psi(&mut a, &mut b));
        Producer {
            w: ring.writer(),
            cc: [0; 4],
            seq: 0,
        }
    }

    fn pkt(&mut self, pid: u16, pusi: bool, i: usize) -> [u8; PACKET_SIZE] {
        let mut p = [0xA5u8; PACKET_SIZE];
        write_header(&mut p, pid, pusi, self.cc[i]);
        self.cc[i] = (self.cc[i] + 1) & 15;
        if pid == VIDEO {
            p[4..8].copy_from_slice(&self.seq.to_be_bytes());
            self.seq += 1;
        }
        p
    }

    /// One GOP of `video_packets` video packets, then flush.
    pub fn gop(&mut self, video_packets: usize) {
        let p = self.pkt(VIDEO, true, 0);
        self.w.push(&p, true);
        let (mut a, mut b) = (self.cc[2], self.cc[3]);
        let s = psi(&mut a, &mut b);
        self.cc[2] = a;
        self.cc[3] = b;
        self.w.push(&s, false);
        for i in 1..video_packets {
            let p = self.pkt(VIDEO, false, 0);
            self.w.push(&p, false);
            if i % 10 == 0 {
                let a = self.pkt(AUDIO, i % 40 == 0, 1);
                self.w.push(&a, false);
            }
        }
        self.w.flush();
    }
}

/// Read the response head; returns (head, bytes of body already read).
pub fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        let n = s.read(&mut b).expect("read head");
        assert!(
            n > 0,
            "EOF before end of head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&b[..n]);
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Send a request and read the whole response until EOF.
pub fn get_all(addr: SocketAddr, req: &str) -> String {
    let mut s = connect(addr);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

pub fn metrics(addr: SocketAddr) -> String {
    get_all(addr, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
}

/// The value of a metric line starting with `prefix`.
pub fn metric(addr: SocketAddr, prefix: &str) -> u64 {
    let m = metrics(addr);
    m.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in\n{m}"))
}

/// Poll `f` until it is true or 10 s pass.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_exact_n(s: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; 65536];
    while have.len() < n {
        let k = s.read(&mut b).expect("read body");
        assert!(k > 0, "EOF after {} of {n} bytes", have.len());
        have.extend_from_slice(&b[..k]);
    }
    // At least n bytes; the caller keeps any extra (stream stays aligned).
    have
}

pub fn pids(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(PACKET_SIZE)
        .map(|p| Packet::new_checked(p).unwrap().pid())
        .collect()
}

/// Video sequence numbers found in a body.
pub fn video_seqs(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(PACKET_SIZE)
        .filter_map(|p| {
            let p = Packet::new_checked(p).unwrap();
            (p.pid() == VIDEO).then(|| {
                let b = p.as_bytes();
                u32::from_be_bytes([b[4], b[5], b[6], b[7]])
            })
        })
        .collect()
}

pub type Shared<T> = Arc<Mutex<T>>;
