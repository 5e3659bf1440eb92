//! End-to-end: SIGHUP reload. An unchanged channel's client keeps receiving
//! without a gap; a changed channel takes its new settings; an added channel
//! is served.

mod e2e_common;
use e2e_common::*;
use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn e2e_sighup_reload_keeps_clients_and_applies_changes() {
    let m = sample_mux();
    let before = server_toml()
        + &channel_toml("a", &m, 1, &["tvg_name = \"Chan A\""])
        + &channel_toml("b", &m, 2, &["tvg_name = \"Before\""]);
    let srv = Server::start("reload", &before);
    srv.wait_up(&["a", "b"]);
    let b_pat = first_pat(&fetch_bytes(srv.addr, "/stream/b", 20 * TS)).unwrap();
    assert_eq!(b_pat[0].0, 2, "b before reload: {b_pat:?}");

    // Client on A: record (time, bytes) of every read.
    let (mut s, first) = open_stream(srv.addr, "/stream/a", "");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let data = Arc::new(Mutex::new(first));
    let gaps = Arc::new(Mutex::new(Vec::<f64>::new()));
    let ended = Arc::new(Mutex::new(None::<String>));
    let (st, d2, g2, e2) = (stop.clone(), data.clone(), gaps.clone(), ended.clone());
    let reader = std::thread::spawn(move || {
        let mut b = vec![0u8; 65536];
        let mut last = Instant::now();
        while !st.load(Ordering::Relaxed) {
            match s.read(&mut b) {
                Ok(0) => {
                    *e2.lock().unwrap() = Some("EOF".into());
                    break;
                }
                Ok(n) => {
                    g2.lock().unwrap().push(last.elapsed().as_secs_f64());
                    last = Instant::now();
                    d2.lock().unwrap().extend_from_slice(&b[..n]);
                }
                Err(e) => {
                    *e2.lock().unwrap() = Some(e.to_string());
                    break;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let bytes_before = data.lock().unwrap().len();

    let after = server_toml()
        + &channel_toml("a", &m, 1, &["tvg_name = \"Chan A\""])
        + &channel_toml("b", &m, 3, &["tvg_name = \"After\""])
        + &channel_toml("c", &m, 2, &["tvg_name = \"Chan C\""]);
    std::fs::write(&srv.config, after).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(st.success());

    let mut pl = String::new();
    let ok = wait_until(Duration::from_secs(15), || {
        pl = srv.get("/playlist.m3u").text();
        pl.contains("/stream/c") && pl.contains("tvg-name=\"After\"")
    });
    assert!(
        ok,
        "reload not applied after 15 s; playlist:\n{pl}\nlog:\n{}",
        srv.log_text()
    );
    assert!(!pl.contains("tvg-name=\"Before\""), "{pl}");

    // C is served (program 2), B now carries program 3.
    srv.wait_up(&["a", "b", "c"]);
    let c = fetch_bytes(srv.addr, "/stream/c", 200 * TS);
    assert_eq!(first_pat(&c).unwrap()[0].0, 2, "c's PAT");
    assert!(count_pid(&c, 0x201) > 0, "c: no video 0x201");
    let b = fetch_bytes(srv.addr, "/stream/b", 200 * TS);
    let pat = first_pat(&b).unwrap();
    assert_eq!(pat.len(), 1);
    assert_eq!(
        pat[0].0,
        3,
        "b after reload: {pat:?}\nlog:\n{}",
        srv.log_text()
    );
    assert!(count_pid(&b, 0x301) > 0, "b: no video 0x301 after reload");
    assert_eq!(count_pid(&b, 0x201), 0, "b still carries program 2's video");

    // A's client kept receiving through the reload.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    if let Some(e) = ended.lock().unwrap().clone() {
        panic!("A's client connection ended during reload: {e}");
    }
    let a = data.lock().unwrap().clone();
    assert!(
        a.len() > bytes_before,
        "A's client received nothing after the reload"
    );
    let max_gap = gaps.lock().unwrap().iter().cloned().fold(0.0, f64::max);
    println!(
        "a: {} bytes ({} before reload), largest gap between reads {:.0} ms",
        a.len(),
        bytes_before,
        max_gap * 1e3
    );
    // Generous: the sample's services stream continuously; a restart of A's
    // pipeline would show as a gap of seconds or a broken CC.
    assert!(
        max_gap < 3.0,
        "A's client stalled {max_gap:.1} s during reload"
    );
    let a = &a[..a.len() / TS * TS];
    let pmt_pid = first_pat(a).unwrap()[0].1;
    let (errs, _) = cc_errors(a, &[0, pmt_pid, 0x11], false);
    assert!(errs.is_empty(), "A's PSI CC broke across reload: {errs:#?}");
    let (errs, _) = cc_errors(a, &[0x101, 0x102], true);
    assert!(errs.is_empty(), "A's ES CC broke across reload: {errs:#?}");
}
