//! End-to-end: `[server] tcp_congestion` and `send_buffer_bytes` reach the
//! sockets `capbox serve` accepts. What the kernel set is read two ways:
//! capbox's own `/status` (getsockopt on its accepted socket) and `ss -tin`
//! (the kernel's socket diagnostics, iproute2), which knows nothing of
//! capbox. Both algorithms are tried so that one of them differs from the
//! kernel's default, whichever that is; a name the kernel lacks is refused
//! by `check-config` with the key and the line.

mod e2e_common;

use e2e_common::*;
use std::process::Command;
use std::time::Duration;

const SEND_BUFFER: usize = 300_000;

fn config(cc: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntcp_congestion = \"{cc}\"\nsend_buffer_bytes = {SEND_BUFFER}\n\n{}",
        channel_toml("news", &sample_mux(), 1, &[])
    )
}

/// `ss -tinm` lines of the established connection whose local port is
/// `port` (capbox's side of it).
fn ss_server_side(port: u16) -> String {
    let out = Command::new("ss")
        .args([
            "-tinmH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("run ss (Debian package iproute2; scripts/test installs it)");
    assert!(out.status.success(), "ss: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SO_SNDBUF as ss shows it: `tb<bytes>` in `skmem:(…)`.
fn ss_send_buffer(ss: &str) -> Option<usize> {
    let i = ss.find(",tb")? + 3;
    let digits: String = ss[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn kernel_default() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn tcp_congestion_and_send_buffer_reach_the_accepted_socket() {
    let default = kernel_default();
    for cc in ["cubic", "bbr"] {
        let s = Server::start(&format!("tcp-{cc}"), &config(cc));
        s.wait_up(&["news"]);
        let (_client, _) = open_stream(s.addr, "/stream/news", "");
        let mut status = serde_json::Value::Null;
        let found = wait_until(Duration::from_secs(10), || {
            status = s.status();
            status["clients"]
                .as_array()
                .is_some_and(|c| c.iter().any(|r| r["channel"] == "news"))
        });
        assert!(found, "no stream client in /status: {status}");
        let row = status["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel"] == "news")
            .unwrap()
            .clone();
        assert_eq!(row["tcp_congestion"], cc, "client row: {row}");
        let listener = &status["http"]["listeners"][0];
        assert_eq!(listener["tcp_congestion"], cc, "{listener}");
        assert_eq!(listener["send_buffer_bytes"], SEND_BUFFER, "{listener}");
        assert_eq!(listener["kernel"]["tcp_congestion"], cc, "{listener}");
        assert_eq!(listener["kernel_from"], "the last connection accepted");
        assert_eq!(listener["tuning_errors"], 0, "{listener}\n{}", s.log_text());

        // The kernel's own view of capbox's side of the connection.
        let ss = ss_server_side(s.addr.port());
        assert!(
            ss.split_whitespace().any(|w| w == cc),
            "ss does not show {cc} on capbox's side (kernel default {default}):\n{ss}"
        );
        // Linux reports twice the send buffer it grants; as root capbox
        // passes net.core.wmem_max, else the kernel caps it there and
        // /status says why.
        let tb = ss_send_buffer(&ss).unwrap_or_else(|| panic!("no tb in ss:\n{ss}"));
        let kernel = row["send_buffer_bytes"].as_u64().unwrap() as usize;
        assert_eq!(
            tb, kernel,
            "ss and /status disagree on SO_SNDBUF:\n{ss}\n{row}"
        );
        if listener["last_tuning_error"].is_null() {
            assert_eq!(tb, 2 * SEND_BUFFER, "{ss}");
        } else {
            assert!(tb < 2 * SEND_BUFFER, "{listener}");
        }
        let m = s.metrics();
        let errors = m
            .iter()
            .find(|x| x.name == "capbox_http_tcp_tuning_errors_total")
            .map(|x| x.value);
        assert_eq!(errors, Some(0.0), "{}", fmt_samples(&m));
    }
}

#[test]
fn check_config_refuses_a_congestion_control_the_kernel_lacks() {
    let dir = TempDir::new("tcp-check");
    let cfg = dir.join("capbox.toml");
    std::fs::write(&cfg, config("nosuchcc")).unwrap();
    let (code, out) = run_capbox(
        &["check-config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{out}");
    let want = format!(
        "{}:3: server.tcp_congestion: the kernel has no TCP congestion control \"nosuchcc\" (available: ",
        cfg.display()
    );
    assert!(out.contains(&want), "no `{want}` in:\n{out}");
    assert!(out.contains("modprobe tcp_nosuchcc"), "{out}");

    // The ones the kernel has pass.
    std::fs::write(&cfg, config("bbr")).unwrap();
    let (code, out) = run_capbox(
        &["check-config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{out}");

    // A spelling no kernel has is refused by the config walk itself.
    std::fs::write(&cfg, config("BBR")).unwrap();
    let (code, out) = run_capbox(
        &["check-config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            ":3: server.tcp_congestion: \"BBR\": congestion control names are lower case (\"bbr\")"
        ),
        "{out}"
    );
}

#[test]
fn serve_logs_a_refused_congestion_control_with_its_line_and_serves_anyway() {
    let s = Server::start("tcp-refused", &config("nosuchcc"));
    s.wait_up(&["news"]);
    let log = s.log_text();
    assert!(
        log.contains(
            ":3: server.tcp_congestion: the kernel has no TCP congestion control \"nosuchcc\""
        ) && log.contains("connections get the kernel's default"),
        "{log}"
    );
    // Served all the same (open_stream asserts the 200).
    let (_client, _) = open_stream(s.addr, "/stream/news", "");
    let mut status = serde_json::Value::Null;
    let counted = wait_until(Duration::from_secs(10), || {
        status = s.status();
        status["http"]["listeners"][0]["tuning_errors"].as_u64() >= Some(1)
    });
    assert!(counted, "{status}");
    let listener = &status["http"]["listeners"][0];
    assert_eq!(listener["kernel"]["tcp_congestion"], kernel_default());
    assert!(
        listener["last_tuning_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("[server] tcp_congestion: the kernel has no")),
        "{listener}"
    );
}

#[test]
fn a_reload_applies_the_new_congestion_control_to_new_connections_only() {
    let s = Server::start("tcp-reload", &config("cubic"));
    s.wait_up(&["news"]);
    let (old, _) = open_stream(s.addr, "/stream/news", "");
    std::fs::write(&s.config, config("bbr")).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(st.success());
    let applied = wait_until(Duration::from_secs(15), || {
        s.log_text()
            .contains("reload: server.tcp_congestion = bbr, server.send_buffer_bytes = 300000: applied to new connections")
    });
    assert!(applied, "no reload line:\n{}", s.log_text());
    let (new, _) = open_stream(s.addr, "/stream/news", "");
    let cc_of = |c: &std::net::TcpStream| {
        let me = c.local_addr().unwrap().to_string();
        let mut cc = serde_json::Value::Null;
        wait_until(Duration::from_secs(10), || {
            let status = s.status();
            cc = status["clients"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["address"] == me.as_str()))
                .map(|r| r["tcp_congestion"].clone())
                .unwrap_or_default();
            !cc.is_null()
        });
        cc
    };
    assert_eq!(cc_of(&old), "cubic", "the open connection keeps its own");
    assert_eq!(cc_of(&new), "bbr", "a new connection gets the reloaded one");
}
