//! accept() failing with something other than EMFILE (here ENOBUFS, from an
//! LD_PRELOAD shim, tests/c/accept_fail.c): capbox pauses accepting and
//! retries instead of spinning on the listener, keeps serving the clients
//! it has, logs the failure once per interval, and accepts again when the
//! kernel does (issue 10, item 7).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::e2e_common::*;
use crate::net::{ask, sample};

fn shim() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/accept_fail.c");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-helpers");
    std::fs::create_dir_all(&dir).unwrap();
    let so = dir.join(format!("accept_fail-{}.so", std::process::id()));
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("run cc");
    assert!(st.success(), "compiling {src:?} failed");
    so
}

#[test]
fn accept_errors_back_off_and_existing_clients_are_served() {
    let so = shim();
    let dir = TempDir::new("accept-errors");
    let cfg = dir.join("capbox.toml");
    std::fs::write(
        &cfg,
        server_toml() + &channel_toml("news", &sample_mux(), 1, &[]),
    )
    .unwrap();
    let fail = dir.join("fail-accept");
    let srv = Server::start_in_env(
        dir,
        cfg,
        &[
            ("LD_PRELOAD", so.as_os_str()),
            ("CAPBOX_ACCEPT_FAIL_FILE", fail.as_os_str()),
            ("CAPBOX_ACCEPT_FAIL_ERRNO", OsStr::new("105")), // ENOBUFS
        ],
    );
    srv.wait_up(&["news"]);
    // A keep-alive connection opened before the failure: it must still be
    // answered while accept() fails (the event loop is not stuck).
    let mut before = connect(srv.addr);
    let head = ask(&mut before, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    std::fs::write(&fail, b"").unwrap();
    let start = Instant::now();
    // This connection waits in the backlog; accept() fails on it.
    let mut pending = connect(srv.addr);
    pending
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // Not answered within the 10 s read timeout when the loop spins.
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ask(&mut before, "/metrics")
    }));
    let window = start.elapsed().max(Duration::from_secs(3));
    std::thread::sleep(window.saturating_sub(start.elapsed()));
    std::fs::remove_file(&fail).unwrap();
    assert!(
        answered.is_ok_and(|head| head.starts_with("HTTP/1.1 200")),
        "a client was not answered while accept() failed: the event loop is stuck on the listener"
    );
    // Accepting again: the waiting client is answered.
    let (status, head, _) = read_head(&mut pending);
    assert_eq!(status, 200, "{head}");
    let m = srv.metrics();
    let errors = sample(
        &m,
        "capbox_http_accept_errors_total",
        Some(("kind", "other")),
    );
    // A pause of 100 ms between tries allows about 10 a second; a loop that
    // retries at once makes millions.
    eprintln!("accept errors in {window:?}: {errors}");
    assert!(
        (1.0..=100.0).contains(&errors),
        "accept() failed {errors} times in {window:?}"
    );
    let log = srv.log_text();
    let lines = log.lines().filter(|l| l.contains("accept")).count();
    assert!(lines <= 4, "{lines} log lines about accept():\n{log}");
    assert!(
        log.contains("No buffer space available"),
        "the error is not said in the log:\n{log}"
    );
}
