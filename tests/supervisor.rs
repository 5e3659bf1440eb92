//! The supervisor end to end, on the real binary: systemd's notify
//! protocol spoken to a fake `$NOTIFY_SOCKET` (a unix datagram socket in a
//! temp dir), injected stalls (`POST /control/fault`) of a mux runner
//! (reboot policy: WATCHDOG=1 stops, /status says stalled) and of the card
//! manager (restart policy: WATCHDOG=1 goes on, the restart is counted),
//! SIGTERM (STOPPING=1, a clean stop recorded), and the reboot-loop guard
//! read from a reset log left by "earlier boots". The hardware watchdog
//! itself is tested in a VM (`tests/watchdog_vm.rs`); here the device is a
//! path that does not exist.

mod e2e_common;
use e2e_common::*;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every datagram received, with when.
type Heard = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(dir: &TempDir) -> (std::path::PathBuf, Heard) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let heard: Heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut b) {
            let msg = String::from_utf8_lossy(&b[..n]).into_owned();
            h.lock().unwrap().push((Instant::now(), msg));
        }
    });
    (path, heard)
}

fn count(h: &Heard, msg: &str) -> usize {
    h.lock().unwrap().iter().filter(|(_, m)| m == msg).count()
}

fn said(h: &Heard) -> String {
    h.lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn fault(srv: &Server, thread: &str, kind: &str) -> Response {
    let a = srv.addr;
    request(
        a,
        &format!(
            "POST /control/fault?thread={}&kind={kind} HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            enc(thread)
        ),
    )
}

fn thread<'a>(st: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    st["supervisor"]["threads"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
}

#[test]
fn notify_protocol_stalls_restarts_and_clean_stop() {
    let dir = TempDir::new("supervisor");
    let (sock, heard) = listen(&dir);
    let m = sample_mux();
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        server_toml()
            + "[supervisor]\nstall_after_s = 2\nfault_injection = true\nwatchdog = \"/nonexistent/watchdog\"\n\n[cards]\nenabled = true\n\n"
            + &channel_toml("news", &m, 1, &[]),
    )
    .unwrap();
    let env: [(&str, &std::ffi::OsStr); 2] = [
        ("NOTIFY_SOCKET", sock.as_os_str()),
        ("WATCHDOG_USEC", std::ffi::OsStr::new("400000")),
    ];
    let mut srv = Server::start_in_env(dir, cfg, &env);
    srv.wait_up(&["news"]);

    // READY=1 once the daemon is up, then WATCHDOG=1 every 200 ms.
    assert!(
        wait_until(Duration::from_secs(10), || count(&heard, "WATCHDOG=1") >= 5),
        "no steady WATCHDOG=1: {}\nlog:\n{}",
        said(&heard),
        srv.log_text()
    );
    let first = heard.lock().unwrap()[0].1.clone();
    assert_eq!(
        first,
        "READY=1",
        "READY=1 must come first: {}",
        said(&heard)
    );
    assert_eq!(count(&heard, "READY=1"), 1);

    let st = srv.status();
    let mux = st["supervisor"]["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .find(|n| n.starts_with("mux file "))
        .unwrap_or_else(|| panic!("no mux heartbeat in {}", st["supervisor"]));
    for (name, policy) in [
        ("http", "reboot"),
        ("cards", "restart"),
        (mux.as_str(), "reboot"),
    ] {
        let t =
            thread(&st, name).unwrap_or_else(|| panic!("no thread {name}: {}", st["supervisor"]));
        assert_eq!(t["policy"], policy, "{t}");
        assert_eq!(t["stalled"], false, "{t}");
    }
    assert_eq!(st["supervisor"]["watchdog"]["armed"], false);
    assert!(st["supervisor"]["watchdog"]["disarmed_reason"]
        .as_str()
        .unwrap()
        .contains("cannot open the watchdog /nonexistent/watchdog"));

    // Unknown thread and bad kind: refused in words.
    let r = fault(&srv, "nope", "stall");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("no thread 'nope'") && r.text().contains("http"),
        "{}",
        r.text()
    );
    assert_eq!(fault(&srv, "http", "boom").status, 400);

    // The card manager stalls: restarted once, the feed goes on.
    let r = fault(&srv, "cards", "stall");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut st = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            st = srv.status();
            thread(&st, "cards").is_some_and(|t| t["restarts"] == 1 && t["stalled"] == false)
        }),
        "cards not restarted: {}\nlog:\n{}",
        st["supervisor"],
        srv.log_text()
    );
    let log = srv.log_text();
    assert!(
        log.contains("supervisor: thread 'cards' has not turned for 2 s: restarting it"),
        "{log}"
    );
    let n = count(&heard, "WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        count(&heard, "WATCHDOG=1") >= n + 3,
        "WATCHDOG=1 must go on while only a restart-policy thread stalled: {}",
        said(&heard)
    );
    let metrics = srv.get("/metrics").text();
    assert!(
        metrics.contains("capbox_supervisor_thread_restarts_total{thread=\"cards\"} 1"),
        "{metrics}"
    );
    // Once more, after a while: still exactly one restart (once per stall).
    assert_eq!(thread(&srv.status(), "cards").unwrap()["restarts"], 1);

    // A mux runner stalls: WATCHDOG=1 stops, /status and /metrics say so.
    let r = fault(&srv, &mux, "stall");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(10), || {
            st = srv.status();
            thread(&st, &mux).is_some_and(|t| t["stalled"] == true)
        }),
        "{mux} never reported stalled: {}",
        st["supervisor"]
    );
    let n = count(&heard, "WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(&heard, "WATCHDOG=1"),
        n,
        "WATCHDOG=1 must stop while a runner is stalled: {}",
        said(&heard)
    );
    assert!(
        said(&heard).contains(&format!("STATUS=stalled: {mux}")),
        "{}",
        said(&heard)
    );
    let metrics = srv.get("/metrics").text();
    let stalled = format!("capbox_supervisor_thread_stalled{{thread=\"{mux}\"}} 1");
    assert!(metrics.contains(&stalled), "{stalled} missing:\n{metrics}");
    assert!(srv.log_text().contains(&format!(
        "supervisor: thread '{mux}' has not turned for 2 s: no longer feeding the watchdog"
    )));
    // Released: the loop turns and the feed comes back.
    assert_eq!(fault(&srv, &mux, "clear").status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || count(&heard, "WATCHDOG=1")
            >= n + 3),
        "feed did not resume: {}",
        said(&heard)
    );

    // SIGTERM: STOPPING=1 and a clean stop, recorded in the reset log.
    let st = Command::new("kill")
        .args(["-TERM", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        wait_until(Duration::from_secs(10), || !srv.alive()),
        "capbox did not stop on SIGTERM\n{}",
        srv.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(2), || count(&heard, "STOPPING=1") == 1),
        "{}",
        said(&heard)
    );
    let text = std::fs::read_to_string(srv.dir.join("capbox-resets.json")).unwrap();
    let log: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(log["clean_stop"], true, "{text}");
    assert_eq!(log["armed"], false, "{text}");
    assert!(
        log["events"]
            .to_string()
            .contains("thread 'cards' has not turned"),
        "the events before the stop are kept: {text}"
    );
}

#[test]
fn reboot_loop_guard_refuses_to_arm_and_raises_the_alarm() {
    let dir = TempDir::new("supervisor-guard");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Two resets in the last hour and a run that held the watchdog when
    // "the box" went down (another boot id): this start finds the third.
    let earlier = serde_json::json!({
        "boot_id": "00000000-0000-0000-0000-000000000000",
        "armed": true, "clean_stop": false, "device": "/nonexistent/watchdog",
        "started_unix": now - 300,
        "resets": [
            {"unix": now - 1200, "cause": "watchdog reset or power cut"},
            {"unix": now - 600, "cause": "watchdog reset or power cut"},
            {"unix": now - 7200, "cause": "an old one, outside the hour"}
        ],
        "events": [{"unix": now - 30, "text": "ERROR supervisor: thread 'mux file x' has not turned for 10 s"}]
    });
    std::fs::write(dir.join("resets.json"), earlier.to_string()).unwrap();
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        server_toml()
            + "[supervisor]\nwatchdog = \"/nonexistent/watchdog\"\nreset_log = \"resets.json\"\n\n"
            + &channel_toml("news", &sample_mux(), 1, &[]),
    )
    .unwrap();
    let srv = Server::start_in(dir, cfg);
    srv.wait_up(&["news"]);
    let log = srv.log_text();
    assert!(
        log.contains("supervisor: 3 watchdog resets in the last hour: not arming the watchdog (reboot-loop guard)"),
        "{log}"
    );
    assert!(
        !log.contains("cannot open the watchdog"),
        "the guard must not even open it: {log}"
    );
    let st = srv.status();
    let s = &st["supervisor"];
    assert_eq!(s["resets"]["guard_tripped"], true, "{s}");
    assert_eq!(s["resets"]["in_last_hour"], 3, "{s}");
    assert_eq!(
        s["resets"]["last_cause"], "watchdog reset or power cut",
        "{s}"
    );
    assert!(
        s["resets"]["last_events"][0]
            .as_str()
            .unwrap()
            .ends_with("ERROR supervisor: thread 'mux file x' has not turned for 10 s"),
        "{s}"
    );
    assert_eq!(s["watchdog"]["armed"], false);
    assert!(s["watchdog"]["disarmed_reason"]
        .as_str()
        .unwrap()
        .starts_with("reboot-loop guard: 3 watchdog resets"));
    let samples = srv.metrics();
    let v = |n: &str| samples.iter().find(|s| s.name == n).map(|s| s.value);
    assert_eq!(v("capbox_supervisor_reboot_guard"), Some(1.0));
    assert_eq!(v("capbox_supervisor_resets_last_hour"), Some(3.0));
    assert_eq!(v("capbox_supervisor_watchdog_armed"), Some(0.0));
    // Fault injection is off by default.
    let a = srv.addr;
    let r = request(
        a,
        &format!("POST /control/fault?thread=http&kind=stall HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
    );
    assert_eq!(r.status, 403);
    assert!(r
        .text()
        .contains("fault injection is off ([supervisor] fault_injection)"));
    // The file records this run: not armed, the new reset kept.
    let text = std::fs::read_to_string(srv.dir.join("resets.json")).unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(f["armed"], false, "{text}");
    assert_eq!(f["resets"].as_array().unwrap().len(), 4, "{text}");
    // `capbox status` shows the alarm and the last reset.
    let (code, out) = run_capbox(
        &["status", "--url", &format!("http://{a}")],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ALARM reboot-loop guard: 3 watchdog resets"),
        "{out}"
    );
    assert!(out.contains("last reset "), "{out}");
}

#[test]
fn a_damaged_reset_log_is_replaced_and_a_missing_device_is_named() {
    let dir = TempDir::new("supervisor-damaged");
    std::fs::write(dir.join("capbox-resets.json"), b"{\"armed\": tr").unwrap();
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        server_toml()
            + "[supervisor]\nwatchdog = \"/nonexistent/watchdog\"\n\n"
            + &channel_toml("news", &sample_mux(), 1, &[]),
    )
    .unwrap();
    let srv = Server::start_in(dir, cfg);
    srv.wait_up(&["news"]);
    let log = srv.log_text();
    assert!(log.contains("capbox-resets.json is damaged"), "{log}");
    assert!(
        log.contains("supervisor: cannot open the watchdog /nonexistent/watchdog"),
        "{log}"
    );
    let st = srv.status();
    assert!(st["supervisor"]["watchdog"]["disarmed_reason"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/watchdog"));
    let text = std::fs::read_to_string(srv.dir.join("capbox-resets.json")).unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).expect("replaced by a valid log");
    assert_eq!(f["armed"], false, "{text}");
}
