//! The HTTP server driven by real TCP clients (and curl).

mod http_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use capbox::fanout::RingConfig;
use capbox::http::{spawn, Access, HttpConfig, RouteAccess, ServerHandle};
use capbox::ts::{Packet, PACKET_SIZE};
use http_common::*;

fn server(cfg_fn: impl FnOnce(&mut HttpConfig), ring: RingConfig) -> (ServerHandle, Arc<Fake>) {
    let fake = Fake::new(ring);
    let mut cfg = HttpConfig::new("127.0.0.1:0".parse().unwrap());
    cfg_fn(&mut cfg);
    let h = spawn(cfg, fake.clone()).unwrap();
    (h, fake)
}

fn default_server() -> (ServerHandle, Arc<Fake>, SocketAddr) {
    let (h, f) = server(|_| {}, RingConfig::default());
    let a = h.local_addr();
    (h, f, a)
}

#[test]
fn stream_headers_and_body_start_with_pat_pmt() {
    let (_h, fake, addr) = default_server();
    let mut p = Producer::new(&fake.ring("a"));
    p.gop(200);
    let mut s = connect(addr);
    s.write_all(b"GET /stream/a HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\n\r\n")
        .unwrap();
    let (head, body) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: video/mp2t\r\n"));
    assert!(lower.contains("connection: close\r\n"));
    assert!(!lower.contains("content-length"));
    assert!(!lower.contains("transfer-encoding"));
    let body = read_exact_n(&mut s, body, 4 * PACKET_SIZE);
    assert_eq!(pids(&body[..4 * PACKET_SIZE]), vec![0, PMT_PID, VIDEO, 0]);
    // The prefix leads into the stream's own PAT without a CC jump.
    let cc = |i: usize| {
        Packet::new_checked(&body[i * 188..])
            .unwrap()
            .continuity_counter()
    };
    assert_eq!((cc(0) + 1) & 15, cc(3));
    // It keeps going as the producer does.
    p.gop(200);
    let all = read_exact_n(&mut s, body, 400 * PACKET_SIZE);
    let seqs = video_seqs(&all[..400 * PACKET_SIZE]);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(*seqs.last().unwrap() >= 200, "second GOP arrived");
}

#[test]
fn unknown_channel_is_404_naming_it_and_the_channels() {
    let (_h, _f, addr) = default_server();
    let r = get_all(addr, "GET /stream/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.ends_with("no channel 'x' (channels: a, b, c)\n"), "{r}");
    assert_eq!(
        metric(
            addr,
            "capbox_http_requests_total{route=\"stream\",code=\"404\"}"
        ),
        1
    );
}

#[test]
fn garbage_is_400_and_counted() {
    let (_h, _f, addr) = default_server();
    let r = get_all(addr, "\x01\x02 garbage ~~\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(metric(addr, "capbox_http_bad_requests_total"), 1);
}

#[test]
fn oversized_head_is_431() {
    let (_h, _f, addr) = default_server();
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let mut s = connect(addr);
    s.write_all(big.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = String::from_utf8_lossy(&out);
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
}

#[test]
fn head_stream_sends_headers_only() {
    let (_h, fake, addr) = default_server();
    Producer::new(&fake.ring("b")).gop(50);
    let r = get_all(addr, "HEAD /stream/b HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\n"), "a body was sent: {r:?}");
    assert!(r.contains("video/mp2t"));
}

#[test]
fn http_10_stream_and_metrics() {
    let (_h, fake, addr) = default_server();
    Producer::new(&fake.ring("a")).gop(50);
    let mut s = connect(addr);
    s.write_all(b"GET /stream/a HTTP/1.0\r\n\r\n").unwrap();
    let (head, body) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    let body = read_exact_n(&mut s, body, PACKET_SIZE);
    assert_eq!(pids(&body[..PACKET_SIZE]), vec![0]);
    // HTTP/1.0 without keep-alive: the response ends with the connection.
    let r = get_all(addr, "GET /metrics HTTP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.0 200 OK"));
    assert!(r.contains("capbox_fake_up 1\n"));
    assert!(r.contains("text/plain; version=0.0.4"));
}

#[test]
fn keep_alive_and_pipelined_metrics() {
    let (_h, _f, addr) = default_server();
    let mut s = connect(addr);
    // Two pipelined requests in one write, then a third after the answers.
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\nGET /status HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let (head, mut body) = if rest.is_empty() {
            read_head(&mut s)
        } else {
            let i = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&rest[..i + 4]).into_owned();
            (head, rest[i + 4..].to_vec())
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.parse().unwrap())
            })
            .expect("content-length");
        assert!(
            head.to_ascii_lowercase().contains("connection: keep-alive"),
            "{head}"
        );
        while body.len() < len {
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).unwrap();
            assert!(n > 0);
            body.extend_from_slice(&b[..n]);
        }
        rest = body.split_off(len);
        bodies.push((head, String::from_utf8(body).unwrap()));
    }
    assert!(bodies[0].1.contains("capbox_http_requests_total"));
    let status: serde_json::Value = serde_json::from_str(&bodies[1].1).unwrap();
    assert_eq!(status["fake"], true);
    assert!(!status["clients"].as_array().unwrap().is_empty());
    s.write_all(b"GET /playlist.m3u HTTP/1.1\r\nHost: box:8080\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = String::from_utf8_lossy(&out);
    assert!(r.contains("audio/x-mpegurl"));
    assert!(r.contains("http://box:8080/stream/a\n"), "{r}");
    assert!(
        get_all(addr, "GET /epg.xml HTTP/1.1\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 404")
    );
}

#[test]
fn access_lists_and_token() {
    let (h, fake, addr) = default_server();
    Producer::new(&fake.ring("a")).gop(10);
    let mut a = Access {
        metrics: RouteAccess {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            token: None,
        },
        ..Access::default()
    };
    a.status.token = Some("s3cret".into());
    h.set_access(a);
    let r = get_all(addr, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = get_all(addr, "GET /status HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = get_all(
        addr,
        "GET /status?token=s3cret HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = get_all(
        addr,
        "GET /status HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Control is loopback-only by default, which we are.
    let r = get_all(
        addr,
        "POST /control/x HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // Control routes change state: a GET (a crawler, a prefetch) is 405.
    let r = get_all(addr, "GET /control/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    h.set_access(Access::default());
    assert_eq!(metric(addr, "capbox_http_refused_total"), 2);
}

#[test]
fn slowloris_is_closed() {
    let (_h, _f) = server(
        |c| c.request_timeout = Duration::from_millis(300),
        RingConfig::default(),
    );
    let addr = _h.local_addr();
    let mut s = connect(addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nX-A: ").unwrap();
    let mut out = Vec::new();
    // The server closes the connection: read_to_end returns (10 s read
    // timeout in connect() makes a hang fail instead).
    s.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(
        metric(
            addr,
            "capbox_http_clients_cut_total{reason=\"request_timeout\"}"
        ),
        1
    );
}

#[test]
fn stalled_client_is_cut_after_write_timeout() {
    let (h, fake) = server(
        |c| c.write_timeout = Duration::from_millis(300),
        RingConfig {
            max_bytes: 256 << 20,
            ..RingConfig::default()
        },
    );
    let addr = h.local_addr();
    let ring = fake.ring("a");
    let mut p = Producer::new(&ring);
    p.gop(10);
    let mut s = connect(addr);
    s.write_all(b"GET /stream/a HTTP/1.1\r\n\r\n").unwrap();
    let _ = read_head(&mut s);
    // Far more than the socket buffers hold; the ring holds it all, so the
    // cut must come from the write timeout, not from lag.
    for _ in 0..200 {
        p.gop(1000);
    }
    eventually("write timeout cut", || {
        ring.snapshot().clients_cut_timeout == 1
    });
    assert_eq!(ring.snapshot().clients_cut_lagging, 0);
    assert_eq!(ring.snapshot().clients_now, 0);
    assert_eq!(
        metric(
            addr,
            "capbox_http_clients_cut_total{reason=\"write_timeout\"}"
        ),
        1
    );
    // The client then sees the end of the stream.
    let mut b = vec![0u8; 1 << 20];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[test]
fn hundred_clients_receive_identical_bytes() {
    let (_h, fake, addr) = default_server();
    let ring = fake.ring("c");
    let mut p = Producer::new(&ring);
    p.gop(100);
    let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..100)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /stream/c HTTP/1.1\r\n\r\n").unwrap();
            let (_, body) = read_head(&mut s);
            (s, body)
        })
        .collect();
    eventually("100 subscribed", || ring.snapshot().clients_now == 100);
    for _ in 0..20 {
        p.gop(300);
    }
    let want = 5000 * PACKET_SIZE;
    let bodies: Vec<Vec<u8>> = clients
        .iter_mut()
        .map(|(s, b)| read_exact_n(s, std::mem::take(b), want)[..want].to_vec())
        .collect();
    for b in &bodies[1..] {
        assert!(b == &bodies[0], "a client received different bytes");
    }
    let seqs = video_seqs(&bodies[0]);
    assert_eq!(seqs[0], 0, "starts at the first entry point");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "video packet lost"
    );
}

#[test]
fn slow_client_is_cut_while_others_lose_nothing() {
    let (h, fake) = server(
        |c| c.write_timeout = Duration::from_secs(30),
        RingConfig {
            max_bytes: 1 << 20,
            ..RingConfig::default()
        },
    );
    let addr = h.local_addr();
    let ring = fake.ring("a");
    let mut p = Producer::new(&ring);
    p.gop(10);
    let mut slow = connect(addr);
    slow.write_all(b"GET /stream/a HTTP/1.1\r\n\r\n").unwrap();
    let _ = read_head(&mut slow);
    let total_gops = 300;
    let per_gop = 500;
    // Each fast reader publishes the next video seq it expects, so the
    // producer never runs more than ~0.4 MB ahead of them (the ring holds
    // 1 MiB) while the slow one falls behind without limit.
    let progress: Arc<Vec<AtomicU32>> = Arc::new((0..3).map(|_| AtomicU32::new(0)).collect());
    let fast: Vec<_> = (0..3)
        .map(|k| {
            let progress = progress.clone();
            let mut s = connect(addr);
            s.write_all(b"GET /stream/a HTTP/1.1\r\n\r\n").unwrap();
            std::thread::spawn(move || {
                let (_, mut body) = read_head(&mut s);
                let mut b = vec![0u8; 1 << 16];
                // Read until the last video packet has arrived.
                let last = 10 + total_gops * per_gop - 1;
                loop {
                    let seqs = video_seqs(&body[..body.len() / 188 * 188]);
                    if let Some(&l) = seqs.last() {
                        progress[k].store(l + 1, Relaxed);
                    }
                    if seqs.last().copied() == Some(last as u32) {
                        return seqs;
                    }
                    let n = s.read(&mut b).expect("fast client read");
                    assert!(n > 0, "fast client was cut");
                    body.extend_from_slice(&b[..n]);
                }
            })
        })
        .collect();
    eventually("4 subscribed", || ring.snapshot().clients_now == 4);
    for _ in 0..total_gops {
        eventually("fast readers keep up", || {
            progress.iter().all(|x| x.load(Relaxed) + 2000 >= p.seq)
        });
        p.gop(per_gop);
    }
    for f in fast {
        let seqs = f.join().unwrap();
        assert_eq!(seqs[0], 0);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "a fast client lost data"
        );
    }
    eventually("slow client cut", || {
        ring.snapshot().clients_cut_lagging == 1
    });
    // The fast ones closed their sockets; the server notices on its own time.
    eventually("all gone", || ring.snapshot().clients_now == 0);
    assert_eq!(
        metric(addr, "capbox_http_clients_cut_total{reason=\"lagging\"}"),
        1
    );
}

#[test]
fn curl_stream_and_metrics() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("!!! curl not installed: SKIPPING curl_stream_and_metrics");
        return;
    }
    let (_h, fake, addr) = default_server();
    let ring = fake.ring("a");
    let mut p = Producer::new(&ring);
    p.gop(100);
    let dir = std::env::temp_dir().join(format!("capbox-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("a.ts");
    let url = format!("http://{addr}/stream/a");
    let mut child = std::process::Command::new("curl")
        .args(["-s", "-o"])
        .arg(&out)
        .arg(&url)
        .spawn()
        .unwrap();
    eventually("curl subscribed", || ring.snapshot().clients_now == 1);
    for _ in 0..10 {
        p.gop(100);
    }
    eventually("curl got data", || {
        std::fs::metadata(&out)
            .map(|m| m.len() >= 50 * 188)
            .unwrap_or(false)
    });
    child.kill().unwrap();
    let _ = child.wait();
    let data = std::fs::read(&out).unwrap();
    assert_eq!(&pids(&data[..3 * 188]), &[0, PMT_PID, VIDEO]);
    let m = std::process::Command::new("curl")
        .args([
            "-s",
            "-f",
            &format!("http://{addr}/metrics"),
            &format!("http://{addr}/metrics"),
        ])
        .output()
        .unwrap();
    assert!(m.status.success());
    let text = String::from_utf8_lossy(&m.stdout);
    // Two requests over curl's reused connection.
    assert_eq!(text.matches("capbox_fake_up 1").count(), 2);
    assert!(text.contains("capbox_http_clients{channel=\"a\"}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn max_clients_answers_503_and_status_lists_stream_clients() {
    let (h, fake) = server(|c| c.max_clients = 2, RingConfig::default());
    let addr = h.local_addr();
    Producer::new(&fake.ring("b")).gop(20);
    let mut s = connect(addr);
    s.write_all(b"GET /stream/b HTTP/1.1\r\nUser-Agent: test-agent/1\r\n\r\n")
        .unwrap();
    let _ = read_head(&mut s);
    // The second connection asks for /status and sees the stream client.
    let mut k = connect(addr);
    k.write_all(b"GET /status HTTP/1.1\r\n\r\n").unwrap();
    let (head, mut body) = read_head(&mut k);
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Content-Length: ")
                .map(|v| v.parse().unwrap())
        })
        .unwrap();
    while body.len() < len {
        let mut b = [0u8; 4096];
        let n = k.read(&mut b).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&b[..n]);
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rows = v["clients"].as_array().unwrap();
    let row = rows
        .iter()
        .find(|r| r["channel"] == "b")
        .expect("stream client row");
    assert_eq!(row["user_agent"], "test-agent/1");
    assert!(row["bytes"].as_u64().unwrap() > 0);
    assert!(row["lag_bytes"].is_u64() && row["lag_ms"].is_u64());
    // A third is over the limit.
    let r = get_all(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
}
