//! End-to-end: how the config reaches `capbox serve` and what it warns
//! about. `capbox serve FILE` is the same as `--config FILE` (the config
//! example says so); a config that every user may read and that holds a
//! secret (BISS keys, the access token) is warned about at start and again
//! when a reload brings the secret in, never with the secret's value.

mod e2e_common;

use e2e_common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "tok-e2e-3c1f9a77b2";

fn config(extra: &str) -> String {
    format!(
        "{}{extra}{}",
        server_toml(),
        channel_toml("news", &sample_mux(), 1, &[])
    )
}

#[test]
fn serve_takes_the_config_path_alone() {
    let dir = TempDir::new("serve-positional");
    let cfg = dir.join("capbox.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let (code, out) = run_capbox(
        &["check-config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "check-config FILE: {out}");
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains("listening on http://") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening,
        "`capbox serve FILE` did not start:\n{}",
        seen.join("\n")
    );
    let (code, out) = run_capbox(&["serve", "a.toml", "b.toml"], Duration::from_secs(30));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("more than one config path"), "{out}");
}

#[test]
fn a_reload_that_brings_a_secret_into_a_readable_config_is_warned_about() {
    let dir = TempDir::new("secrets-reload");
    let cfg = dir.join("capbox.toml");
    std::fs::write(&cfg, config("")).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Server::start_in(dir, cfg.clone());
    s.wait_up(&["news"]);
    assert!(
        !s.log_text().contains("every user may read it"),
        "no secret yet:\n{}",
        s.log_text()
    );

    let with_token = config("").replacen(
        "[server]",
        &format!("[access]\ntoken = \"{TOKEN}\"\n\n[server]"),
        1,
    );
    assert!(
        with_token.contains(TOKEN),
        "server_toml() has no [server] table"
    );
    std::fs::write(&cfg, with_token).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = s.log.lock().unwrap().len();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    let warned = wait_until(Duration::from_secs(10), || {
        s.log.lock().unwrap()[before..]
            .iter()
            .any(|l| l.contains("the [access] token") && l.contains("every user may read it"))
    });
    let log = s.log_text();
    assert!(warned, "no secrets warning after the reload:\n{log}");
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
}
