//! The operator's controls over failover, end to end on `capbox serve`:
//! - `capbox pin` (POST /control/pin with the control token from the
//!   config): the channel moves to the pinned source and stays there,
//!   /status, /metrics and the log say so, the pin survives a restart
//!   (state file), a pin `--for` a while ends by itself, refusals are in
//!   words (403 without the token, 405 on GET, unknown channel or source);
//! - `close_after_ms`: a channel on its slate that long sends its viewers
//!   away and answers 503 with the reason, until a source is back;
//! - `standby = "cold"`: the backup site is not pulled while the local
//!   source is healthy, is connected when it fails (the viewer keeps
//!   playing), and let go again after the local source is back.

mod e2e_common;
mod site_common;

use e2e_common::*;
use site_common::{Feed, Viewer};
use std::io::Read;
use std::time::{Duration, Instant};

const TOKEN: &str = "tech-token-1234";

fn channel(s: &Server, name: &str) -> serde_json::Value {
    s.status()["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_default()
}

fn wait_ch(
    s: &Server,
    name: &str,
    what: &str,
    t: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(t, || {
        last = channel(s, name);
        f(&last)
    });
    assert!(ok, "{what}: channel now {last:#}\nlog:\n{}", s.log_text());
}

fn post(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> Response {
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(
        addr,
        &format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn a_pin_moves_the_channel_holds_across_a_restart_and_ends_by_itself() {
    let conf_dir = TempDir::new("pin-conf");
    let cfg = conf_dir.join("capbox.toml");
    let mux = sample_mux();
    std::fs::write(
        &cfg,
        format!(
            "{}[access]\ncontrol_token = \"{TOKEN}\"\n\n\
             [[channel]]\nname = \"news\"\nrecover_after_ms = 1000\n\n\
             [[channel.source]]\nfile = \"{m}\"\nprogram = 1\n\n\
             [[channel.source]]\nfile = \"{m}\"\nprogram = 2\n",
            server_toml(),
            m = mux.display()
        ),
    )
    .unwrap();
    let state = conf_dir.join("capbox-state.json");
    let start = || Server::start_in(TempDir::new("pin-run"), cfg.clone());
    let a = start();
    wait_ch(
        &a,
        "news",
        "news up on source 0",
        Duration::from_secs(20),
        |c| c["state"] == "up" && c["active_source"] == 0,
    );
    let cfgs = cfg.to_str().unwrap();

    // Refusals, each in words.
    let r = post(a.addr, "/control/pin?channel=news&source=1", None);
    assert_eq!(r.status, 403, "no token: {}", r.head);
    let r = post(
        a.addr,
        "/control/pin?channel=news&source=1",
        Some("wrong-token-123"),
    );
    assert_eq!(r.status, 403, "wrong token: {}", r.head);
    let r = a.get(&format!("/control/pin?channel=news&source=1&token={TOKEN}"));
    assert_eq!(r.status, 405, "GET must not pin: {}", r.head);
    assert_eq!(
        channel(&a, "news")["failover"]["pinned"],
        serde_json::Value::Null
    );
    let url = format!("http://{}", a.addr);
    let (code, out) = run_capbox(
        &["pin", "nope", "1", "--config", cfgs, "--url", &url],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no channel 'nope'"), "{out}");
    let (code, out) = run_capbox(
        &["pin", "news", "7", "--config", cfgs, "--url", &url],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no source '7'") && out.contains("1: file"),
        "{out}"
    );
    let (code, out) = run_capbox(
        &[
            "pin", "news", "1", "--for", "soon", "--config", cfgs, "--url", &url,
        ],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a duration"), "{out}");
    let (code, out) = run_capbox(
        &["pin", "news", "1", "--url", &format!("http://{}", a.addr)],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "no token given: {out}");
    assert!(out.contains("control token"), "{out}");

    // The pin: by the console command, token and address from the config.
    let (code, out) = run_capbox(
        &["pin", "news", "1", "--config", cfgs, "--url", &url],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("pinned to source 1") && out.contains("until unpinned"),
        "{out}"
    );
    wait_ch(
        &a,
        "news",
        "on source 1, pinned",
        Duration::from_secs(10),
        |c| c["active_source"] == 1 && c["failover"]["pinned"] == 1,
    );
    let m = a.metrics();
    assert_eq!(metric(&m, "capbox_channel_pinned", "news"), Some(1.0));
    // Both inputs are fine: each source's verdict is a gauge too (once
    // its video and audio PES have been seen).
    let mut last = Vec::new();
    let both = wait_until(Duration::from_secs(10), || {
        last = a.metrics();
        let healthy: Vec<(String, f64)> = last
            .iter()
            .filter(|x| x.name == "capbox_channel_source_healthy")
            .map(|x| (x.labels["source"].clone(), x.value))
            .collect();
        healthy == vec![("0".to_string(), 1.0), ("1".to_string(), 1.0)]
    });
    assert!(both, "{}", fmt_samples(&last));
    assert_eq!(
        metric(&m, "capbox_channel_active_source", "news"),
        Some(1.0)
    );
    let why = channel(&a, "news")["failover"]["last_switch"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(why.contains("pinned by hand"), "{why}");
    assert!(
        a.log_text().contains("pinned to source 1"),
        "{}",
        a.log_text()
    );
    let saved = std::fs::read_to_string(&state).expect("the state file is written");
    assert!(
        saved.contains("\"news\"") && saved.contains("\"source\": 1"),
        "{saved}"
    );
    let (_, out) = run_capbox(
        &["status", "--url", &format!("http://{}", a.addr)],
        Duration::from_secs(10),
    );
    assert!(out.contains("PINNED to source 1, until unpinned"), "{out}");
    // A pinned source stays on air past recover_after.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(channel(&a, "news")["active_source"], 1);

    // A restart keeps it.
    drop(a);
    let a = start();
    wait_ch(
        &a,
        "news",
        "pin restored after a restart",
        Duration::from_secs(20),
        |c| c["state"] == "up" && c["active_source"] == 1 && c["failover"]["pinned"] == 1,
    );
    assert!(
        a.log_text().contains("restored from the state file"),
        "{}",
        a.log_text()
    );

    // Back to the rules.
    let r = post(a.addr, "/control/pin?channel=news&source=auto", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ch(
        &a,
        "news",
        "unpinned: back on source 0",
        Duration::from_secs(10),
        |c| c["active_source"] == 0 && c["failover"]["pinned"].is_null(),
    );
    assert_eq!(
        metric(&a.metrics(), "capbox_channel_pinned", "news"),
        Some(0.0)
    );
    assert!(!std::fs::read_to_string(&state)
        .unwrap()
        .contains("\"news\""));

    // A pin for 3 s ends by itself, and the channel goes back.
    let r = post(
        a.addr,
        "/control/pin?channel=news&source=remote",
        Some(TOKEN),
    );
    assert_eq!(r.status, 400, "no remote source here: {}", r.text());
    let r = post(
        a.addr,
        "/control/pin?channel=news&source=1&for=3s",
        Some(TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = Instant::now();
    wait_ch(&a, "news", "pinned for 3 s", Duration::from_secs(5), |c| {
        c["active_source"] == 1
            && c["failover"]["pin_expires_in_s"]
                .as_u64()
                .is_some_and(|s| s <= 3)
    });
    wait_ch(
        &a,
        "news",
        "the pin ran its time",
        Duration::from_secs(15),
        |c| c["active_source"] == 0 && c["failover"]["pinned"].is_null(),
    );
    assert!(
        t.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        t.elapsed()
    );
    assert!(
        a.log_text().contains("has run its time"),
        "{}",
        a.log_text()
    );
}

#[test]
fn close_after_sends_viewers_away_on_the_slate_and_takes_them_back() {
    let dir = TempDir::new("close-after");
    let missing = dir.join("not-yet.ts");
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[[channel]]\nname = \"news\"\nslate = \"auto\"\nclose_after_ms = 2000\n\n\
             [[channel.source]]\nfile = \"{}\"\nprogram = 1\n",
            server_toml(),
            missing.display()
        ),
    )
    .unwrap();
    let a = Server::start_in(TempDir::new("close-after-run"), cfg);
    // The slate plays after the startup grace; a viewer gets it...
    wait_ch(&a, "news", "on the slate", Duration::from_secs(20), |c| {
        c["failover"]["on_slate"] == true
    });
    let (mut s, _) = open_stream(a.addr, "/stream/news", "");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut got = 0usize;
    let mut b = vec![0u8; 65536];
    loop {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!(
                "the viewer was not sent away: {e} after {got} bytes; log:\n{}",
                a.log_text()
            ),
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "still connected after 15 s"
        );
    }
    assert!(
        got > 10_000,
        "the slate reached the viewer first ({got} bytes)"
    );
    // ...then new viewers are refused with the reason.
    let r = a.get("/stream/news");
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(r.text().contains("close_after_ms"), "{}", r.text());
    // /status is refreshed 4 times a second.
    wait_ch(
        &a,
        "news",
        "/status says viewers are refused",
        Duration::from_secs(2),
        |c| {
            c["failover"]["viewers_refused"]
                .as_str()
                .is_some_and(|w| w.contains("close_after_ms"))
        },
    );
    let m = a.metrics();
    assert!(
        m.iter().any(|x| x.name == "capbox_channel_source_healthy"
            && x.labels["source"] == "0"
            && x.value == 0.0),
        "{}",
        fmt_samples(&m)
    );
    // The source appears: viewers are taken again.
    std::fs::copy(sample_mux(), &missing).unwrap();
    wait_ch(
        &a,
        "news",
        "the source is back",
        Duration::from_secs(40),
        |c| c["failover"]["on_slate"] == false && c["failover"]["viewers_refused"].is_null(),
    );
    let bytes = fetch_bytes(a.addr, "/stream/news", 100_000);
    assert_eq!(bytes.len(), 100_000);
    assert!(
        a.log_text().contains("viewers are taken again"),
        "{}",
        a.log_text()
    );
}

/// Clients of `b` streaming `news` now.
fn b_clients(b: &Server) -> usize {
    b.status()["clients"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["channel"] == "news").count())
        .unwrap_or(0)
}

#[test]
fn a_cold_backup_is_pulled_only_while_needed() {
    let b = Server::start(
        "cold-b",
        &(server_toml() + &channel_toml("news", &sample_mux(), 1, &[])),
    );
    b.wait_up(&["news"]);
    let dir = TempDir::new("cold-a");
    let fifo = dir.join("tuner.ts");
    let feed = Feed::start(&fifo);
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[[channel]]\nname = \"news\"\nfail_after_ms = 150\nrecover_after_ms = 2000\n\n\
             [[channel.source]]\nfile = \"{}\"\nprogram = 1\nloop = false\n\n\
             [[channel.source]]\nurl = \"http://{}/stream/news\"\nstandby = \"cold\"\n",
            server_toml(),
            fifo.display(),
            b.addr
        ),
    )
    .unwrap();
    let a = Server::start_in(TempDir::new("cold-a-run"), cfg);
    wait_ch(
        &a,
        "news",
        "A on its local source",
        Duration::from_secs(20),
        |c| c["state"] == "up" && c["active_source"] == 0,
    );
    // Cold: B is not pulled while local is fine.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b_clients(&b),
        0,
        "a cold backup was pulled; A: {:#}",
        channel(&a, "news")
    );
    let h = channel(&a, "news")["sources"][1]["health"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(h.contains("cold standby"), "{h}");

    // A viewer on A; the local feed stalls: B is connected and on air.
    let (sock, first) = open_stream(a.addr, "/stream/news", "");
    let viewer = Viewer::start(sock, first, 0);
    feed.pause();
    let t = Instant::now();
    wait_ch(
        &a,
        "news",
        "A on the cold backup",
        Duration::from_secs(20),
        |c| c["active_source"] == 1 && c["failover"]["on_slate"] == false,
    );
    println!("cold backup on air {:?} after the stall", t.elapsed());
    assert_eq!(b_clients(&b), 1, "B serves A once");
    let before = viewer.bytes();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        viewer.bytes() > before + 10_000,
        "the viewer got nothing from B"
    );

    // Local back: A returns after recover_after, and lets B go after the
    // linger (10 s).
    feed.resume();
    wait_ch(
        &a,
        "news",
        "A back on local",
        Duration::from_secs(20),
        |c| c["active_source"] == 0,
    );
    let ok = wait_until(Duration::from_secs(20), || b_clients(&b) == 0);
    assert!(
        ok,
        "B still pulled 20 s after A came back; A: {:#}",
        channel(&a, "news")
    );
    assert!(!viewer.eof(), "the viewer was disconnected");
}

/// `ffmpeg -i URL -c copy -f hls` on the live stream across two switches
/// (pinned to source 1, then back to 0): one connection, segments within
/// ±1 s of the 2 s target, and the segments decode with `ffmpeg -f null`.
#[test]
fn hls_from_the_live_url_across_two_switches() {
    let dir = TempDir::new("hls-live");
    let cfg = dir.join("capbox.toml");
    let mux = sample_mux();
    // Two sites carrying the same service: the same program from two
    // copies of the mux (two inputs), as from a tuner and the other site.
    let copy = dir.join("site-b.ts");
    std::fs::copy(&mux, &copy).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nstate_file = \"\"\n\n\
             [[channel]]\nname = \"news\"\nrecover_after_ms = 0\n\n\
             [[channel.source]]\nfile = \"{}\"\nprogram = 1\n\n\
             [[channel.source]]\nfile = \"{}\"\nprogram = 1\n",
            mux.display(),
            copy.display()
        ),
    )
    .unwrap();
    let a = Server::start_in(TempDir::new("hls-live-run"), cfg);
    wait_ch(&a, "news", "news up", Duration::from_secs(20), |c| {
        c["state"] == "up" && c["active_source"] == 0
    });
    let out = dir.join("hls");
    std::fs::create_dir_all(&out).unwrap();
    let m3u8 = out.join("out.m3u8");
    let ff = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(format!("http://{}/stream/news", a.addr))
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_list_size",
            "0",
        ])
        .arg(&m3u8)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    std::thread::sleep(Duration::from_secs(5));
    let r = post(a.addr, "/control/pin?channel=news&source=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ch(&a, "news", "on source 1", Duration::from_secs(5), |c| {
        c["active_source"] == 1
    });
    std::thread::sleep(Duration::from_secs(5));
    let r = post(a.addr, "/control/pin?channel=news&source=0", None);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_ch(&a, "news", "on source 0", Duration::from_secs(5), |c| {
        c["active_source"] == 0
    });
    std::thread::sleep(Duration::from_secs(5));
    // SIGINT: ffmpeg closes the playlist.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(ff.id() as i32, libc::SIGINT);
    }
    let out_ff = ff.wait_with_output().unwrap();
    let errs = String::from_utf8_lossy(&out_ff.stderr).to_string();
    let st = a.status();
    let clients_total = a
        .metrics()
        .iter()
        .filter(|s| s.name == "capbox_fanout_clients_total")
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(clients_total, 1.0, "ffmpeg reconnected; status {st:#}");
    let list = std::fs::read_to_string(&m3u8).unwrap_or_else(|e| panic!("{e}; ffmpeg: {errs}"));
    let durs: Vec<f64> = list
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect();
    assert!(durs.len() >= 5, "{durs:?}\n{list}");
    for d in &durs[..durs.len() - 1] {
        assert!(
            (1.0..=3.0).contains(d),
            "segment of {d} s (target 2): {durs:?}"
        );
    }
    assert_eq!(
        channel(&a, "news")["failover"]["switches"].as_u64(),
        Some(2),
        "two switches"
    );
    let dec = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&m3u8)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let derr = String::from_utf8_lossy(&dec.stderr);
    assert!(dec.status.success(), "{derr}");
    let lines = derr.lines().count();
    assert!(lines <= 2, "decoding the segments: {derr}");
}
