//! Failover end to end, two sites on loopback: site B serves "news" from
//! its own capture (a file); site A's "news" has a local source fed by
//! this test through a FIFO (standing in for a tuner) and B's stream as
//! backup. One client stays connected to A the whole time while:
//! A's local feed stalls → A plays B; the feed comes back → A returns to
//! it only after recover_after; the feed stops and B dies → A plays its
//! slate. The client never reconnects; what it received keeps one PID
//! plan, decodes with ffmpeg, and its DTS only move forward. The loop
//! guard: A answers `?origin=local` with 503 while B's stream is on air.

mod e2e_common;

use e2e_common::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn active(s: &Server) -> (u64, bool, u64, String) {
    let st = s.status();
    let ch = st["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "news"))
        .cloned()
        .unwrap_or_default();
    let f = &ch["failover"];
    (
        ch["active_source"].as_u64().unwrap_or(99),
        f["on_slate"].as_bool().unwrap_or(false),
        f["switches"].as_u64().unwrap_or(0),
        f["last_switch"].as_str().unwrap_or("").to_string(),
    )
}

fn wait_for(
    s: &Server,
    what: &str,
    t: Duration,
    mut f: impl FnMut(&(u64, bool, u64, String)) -> bool,
) {
    let mut last = (0, false, 0, String::new());
    let ok = wait_until(t, || {
        last = active(s);
        f(&last)
    });
    assert!(
        ok,
        "{what}: last (active, on_slate, switches, last_switch) = {last:?}\nlog:\n{}",
        s.log_text()
    );
}

#[test]
fn two_sites_fail_over_come_back_and_fall_to_the_slate() {
    let dir = TempDir::new("failover");
    // Site B: news from its own file.
    let b = Server::start(
        "failover-b",
        &(server_toml() + &channel_toml("news", &sample_mux(), 1, &[])),
    );
    b.wait_up(&["news"]);

    // Site A: local FIFO first, B second.
    let fifo = dir.join("tuner.ts");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = format!(
        "{}[[channel]]\nname = \"news\"\nfail_after_ms = 150\nrecover_after_ms = 3000\n\n\
         [[channel.source]]\nfile = \"{}\"\nprogram = 1\nloop = false\n\n\
         [[channel.source]]\nurl = \"http://{}/stream/news\"\n",
        server_toml(),
        fifo.display(),
        b.addr
    );
    // The feed: the sample mux, written into the FIFO while `feeding`.
    let feeding = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let (f2, s2, path) = (feeding.clone(), stop.clone(), fifo.clone());
    let writer = std::thread::spawn(move || {
        let data = std::fs::read(sample_mux()).unwrap();
        let open = || std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut w = open();
        let mut pos = 0;
        while !s2.load(Ordering::Relaxed) {
            if !f2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            let end = (pos + 188 * 50).min(data.len());
            if w.write_all(&data[pos..end]).is_err() {
                // The reader went away (capbox reopens its source): so
                // does a tuner's stream; start again when it is back.
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                w = open();
                continue;
            }
            pos = if end == data.len() { 0 } else { end };
        }
    });
    let a_dir = TempDir::new("failover-a");
    let a_cfg = a_dir.join("capbox.toml");
    std::fs::write(&a_cfg, cfg).unwrap();
    let a = Server::start_in(a_dir, a_cfg);

    // One client on A for the whole test.
    let got = Arc::new(Mutex::new(Vec::<u8>::new()));
    let total = Arc::new(AtomicU64::new(0));
    let eof = Arc::new(AtomicBool::new(false));
    let (g2, t2, e2, st2) = (got.clone(), total.clone(), eof.clone(), stop.clone());
    let (mut sock, first) = open_stream(a.addr, "/stream/news", "");
    got.lock().unwrap().extend_from_slice(&first);
    let client = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        while !st2.load(Ordering::Relaxed) {
            match sock.read(&mut buf) {
                Ok(0) => {
                    e2.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(n) => {
                    t2.fetch_add(n as u64, Ordering::Relaxed);
                    let mut g = g2.lock().unwrap();
                    if g.len() < 64 << 20 {
                        g.extend_from_slice(&buf[..n]);
                    }
                }
                Err(_) => {}
            }
        }
    });

    // 1. Local feed on air.
    wait_for(&a, "A on its local source", Duration::from_secs(20), |s| {
        s.0 == 0 && s.2 == 0
    });
    a.wait_up(&["news"]);
    // The client gets A's own source before any switch (the splicer used
    // to put nothing on air until a first decision).
    let before = total.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        total.load(Ordering::Relaxed) > before + 10_000,
        "the client got nothing from A's local source before any switch\nlog:\n{}",
        a.log_text()
    );
    let head = |addr| {
        request(
            addr,
            "HEAD /stream/news?origin=local HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    };
    let r = head(a.addr);
    assert_eq!(
        r.status,
        200,
        "local on air: a peer may relay it: {}\nstatus: {:#}\nlog:\n{}",
        r.head,
        a.status()["channels"][0],
        a.log_text()
    );
    // The format seen on air, and a slate made to match it from /status.
    let mut fmt = serde_json::Value::Null;
    wait_until(Duration::from_secs(5), || {
        fmt = a.status()["channels"][0]["format"].clone();
        !fmt["audio"].is_null() && !fmt["video"].is_null()
    });
    assert_eq!(fmt["video"]["codec"], "h264", "{fmt}");
    assert_eq!(
        (
            fmt["video"]["width"].as_u64(),
            fmt["video"]["height"].as_u64()
        ),
        (Some(640), Some(360)),
        "{fmt}"
    );
    assert_eq!(fmt["audio"], "aac", "{fmt}");
    let slate = dir.join("news-slate.ts");
    let url = format!("http://{}", a.addr);
    let (code, out) = run_capbox(
        &[
            "slate",
            "news",
            "--url",
            &url,
            "--out",
            slate.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{out}");
    let p = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,avg_frame_rate",
            "-of",
            "compact",
        ])
        .arg(&slate)
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&p.stdout);
    for want in [
        "codec_name=h264",
        "width=640",
        "height=360",
        "avg_frame_rate=25/1",
        "codec_name=aac",
    ] {
        assert!(p.contains(want), "{want} not in {p}");
    }

    // 2. The local feed stalls (the FIFO stays open): A plays B.
    feeding.store(false, Ordering::Relaxed);
    let t_stall = Instant::now();
    wait_for(&a, "A on B after the stall", Duration::from_secs(10), |s| {
        s.0 == 1 && s.2 == 1
    });
    println!("switch to B {:?} after the stall", t_stall.elapsed());
    let (_, _, _, why) = active(&a);
    assert!(
        why.contains("stalled") && why.contains(&format!("http://{}", b.addr)),
        "{why}"
    );
    let r = head(a.addr);
    assert_eq!(r.status, 503, "a relay must not be relayed: {}", r.head);
    let before = total.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        total.load(Ordering::Relaxed) > before + 10_000,
        "the client got nothing from B"
    );

    // 3. The feed comes back: not before recover_after (3 s), then back.
    feeding.store(true, Ordering::Relaxed);
    let t_back = Instant::now();
    wait_for(&a, "A back on local", Duration::from_secs(20), |s| {
        s.0 == 0 && s.2 == 2
    });
    let took = t_back.elapsed();
    println!("back to local after {took:?}");
    assert!(
        took >= Duration::from_millis(2900),
        "came back after {took:?}, before recover_after"
    );

    // 4. Feed stops and B dies: the slate.
    feeding.store(false, Ordering::Relaxed);
    drop(b);
    wait_for(&a, "A on the slate", Duration::from_secs(15), |s| s.1);
    let before = total.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        total.load(Ordering::Relaxed) > before + 10_000,
        "the slate does not reach the client"
    );
    assert!(!eof.load(Ordering::Relaxed), "the client was disconnected");
    let metrics = a.metrics();
    assert_eq!(
        metric(&metrics, "capbox_channel_on_slate", "news"),
        Some(1.0)
    );
    assert!(metric(&metrics, "capbox_channel_switches_total", "news").unwrap_or(0.0) >= 3.0);

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    // Unblock the writer if it waits on a full FIFO.
    drop(a);
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: the writer may be gone already (no open would
        // return then).
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map(|mut f| {
                let mut sink = vec![0u8; 1 << 20];
                let _ = f.read(&mut sink);
            });
    }
    let _ = writer.join();

    // What the client received: one PID plan, decodable, DTS forward.
    let bytes = got.lock().unwrap().clone();
    let pids: std::collections::BTreeSet<u16> = packets(&bytes).map(pid).collect();
    assert!(
        pids.iter()
            .all(|&p| matches!(p, 0 | 0x100 | 0x200 | 0x300..=0x30F | 0x1FFF)),
        "{pids:x?}"
    );
    let out = dir.join("client.ts");
    std::fs::write(&out, &bytes).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=dts",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let dts: Vec<i64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert!(dts.len() > 100, "only {} video packets", dts.len());
    let back = dts.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(back, 0, "video DTS went back {back} times");
    let dec = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&out)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        dec.status.success(),
        "ffmpeg could not decode: {}",
        String::from_utf8_lossy(&dec.stderr)
    );
}
