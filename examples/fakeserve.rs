//! A stand-in for `capbox serve` built from the library pieces, to develop
//! the load client before the daemon existed and to compare against it.
//! One channel `ch`: FileSource paced and looping → Remux → EntryPointGate →
//! ChunkWriter → Ring, served by `http::spawn`.
//!
//! Usage: fakeserve FILE PROGRAM [--listen 127.0.0.1:0]
//! Prints `listening on http://IP:PORT` like the daemon, runs until killed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capbox::fanout::{Ring, RingConfig};
use capbox::http::{self, Backend, HttpConfig};
use capbox::remux::Remux;
use capbox::source::{FileSource, FileSourceConfig, ReadOutcome, Source};
use capbox::ts::es::EntryPointGate;
use capbox::ts::packet::{Packet, PACKET_SIZE};

struct One {
    ring: Arc<Ring>,
}

impl Backend for One {
    fn stream(&self, channel: &str) -> Option<Arc<Ring>> {
        (channel == "ch").then(|| self.ring.clone())
    }
    fn channel_names(&self) -> Vec<String> {
        vec!["ch".into()]
    }
    fn playlist(&self, base_url: &str) -> String {
        format!("#EXTM3U\n#EXTINF:-1,ch\n{base_url}/stream/ch\n")
    }
    fn metrics(&self) -> String {
        String::new()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fakeserve FILE PROGRAM [--listen ADDR]");
        std::process::exit(2)
    }
    let program: u16 = args[1].parse().unwrap_or(1);
    let listen: SocketAddr = match args.iter().position(|a| a == "--listen") {
        Some(i) => args
            .get(i + 1)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| std::process::exit(2)),
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let ring = Ring::new(RingConfig::default());
    let cfg = HttpConfig::new(listen);
    let server = match http::spawn(cfg, Arc::new(One { ring: ring.clone() })) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1)
        }
    };
    eprintln!("listening on http://{}", server.local_addr());

    let mut src = match FileSource::open(FileSourceConfig::new(&args[0])) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    };
    let mut r = Remux::new();
    let idx = r.add_program(program);
    let mut w = ring.writer();
    let mut gate: Option<EntryPointGate> = None;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let max_delay = ring.config().max_delay;
    loop {
        buf.clear();
        match src.read(&mut buf, Duration::from_millis(20)) {
            Ok(ReadOutcome::Data) => {}
            Ok(ReadOutcome::Discontinuity) => r.reset_input(),
            Ok(ReadOutcome::Idle) => {}
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        }
        r.push(&buf);
        let p = r.program_mut(idx);
        if p.psi_changed {
            p.psi_changed = false;
            ring.set_psi(p.psi_packets());
        }
        if gate.is_none() {
            if let Some((pid, codec)) = p.video {
                gate = Some(EntryPointGate::new(codec, pid));
            }
        }
        p.take_output(&mut out);
        match gate.as_mut() {
            Some(g) => {
                for raw in out.chunks_exact(PACKET_SIZE) {
                    if let Ok(pkt) = Packet::new_checked(raw) {
                        g.push(&pkt, |b, ep| w.push(b, ep));
                    }
                }
            }
            None => w.push(&out, false),
        }
        w.flush_if_older(Instant::now(), max_delay);
    }
}
