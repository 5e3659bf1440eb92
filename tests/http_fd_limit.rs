//! File-descriptor exhaustion: the server runs in a child process (this test
//! binary re-executed under `ulimit -n`), real clients connect from here.
//! accept() failing with EMFILE must not panic nor stop existing clients.

mod http_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use capbox::fanout::RingConfig;
use capbox::http::{spawn, HttpConfig};
use http_common::*;

const CHILD_ENV: &str = "CAPBOX_FD_LIMIT_CHILD";

/// Child half: serve channel "a" with a producer until stdin closes.
#[test]
fn fd_limit_child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only meaningful when re-executed by the parent test
    }
    let fake = Fake::new(RingConfig::default());
    let h = spawn(
        HttpConfig::new("127.0.0.1:0".parse().unwrap()),
        fake.clone(),
    )
    .unwrap();
    println!("PORT {}", h.local_addr().port());
    let ring = fake.ring("a");
    std::thread::spawn(move || {
        let mut p = Producer::new(&ring);
        loop {
            p.gop(50);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(h);
}

fn stream_client(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"GET /stream/a HTTP/1.1\r\n\r\n").unwrap();
    let (head, _) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

fn still_flowing(s: &mut TcpStream) {
    let mut b = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < 200_000 {
        let n = s.read(&mut b).expect("existing client still served");
        assert!(n > 0, "existing client was closed");
        got += n;
    }
}

#[test]
fn fd_exhaustion_keeps_existing_clients_and_refuses_new() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 40 && exec \"$0\" fd_limit_child_server --exact --nocapture --test-threads=1")
        .arg(&exe)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        // The harness prints "test ... " on the same line.
        if let Some(p) = line.split("PORT ").nth(1) {
            break p.trim().parse::<u16>().unwrap();
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let mut streams: Vec<TcpStream> = (0..20).map(|_| stream_client(addr)).collect();
    // Keep-alive connections that hold a descriptor each, until the child
    // runs out; the rest wait in the backlog unanswered.
    let mut extra = Vec::new();
    let mut unanswered = 0;
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut b = [0u8; 12];
        match s.read(&mut b) {
            Ok(n) if n > 0 => assert!(b.starts_with(b"HTTP/1.1 200")),
            _ => unanswered += 1,
        }
        extra.push(s);
    }
    assert!(unanswered > 0, "the descriptor limit was never reached");
    // Existing stream clients are still served while accept fails.
    for s in streams.iter_mut() {
        still_flowing(s);
    }
    // Free descriptors: the server accepts again and counts what happened.
    drop(extra);
    streams.truncate(10);
    eventually("accepting again", || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut m = String::new();
        let _ = s.read_to_string(&mut m);
        m.lines().any(|l| {
            l.strip_prefix("capbox_http_accept_errors_total{kind=\"emfile\"} ")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v > 0)
        })
    });
    for s in streams.iter_mut() {
        still_flowing(s);
    }
    assert!(child.try_wait().unwrap().is_none(), "server process died");
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}");
}
