//! `/metrics` against Prometheus itself (Debian package `prometheus`):
//! `promtool check metrics` lints the exposition of a box with every kind
//! of channel and device (plain, BISS, softcam, card, absent DVB adapter,
//! a failover channel whose remote source is refused),
//! and a real Prometheus server scrapes capbox and answers queries on it.

mod e2e_common;
use e2e_common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn have_prometheus() -> bool {
    let ok = have("promtool") && have("prometheus");
    if !ok {
        eprintln!(
            "\n\n*** SKIPPED: promtool/prometheus missing: apt-get install -y prometheus ***\n"
        );
    }
    ok
}

/// A config with one of everything /metrics reports on.
fn everything_toml() -> String {
    let mux = sample_mux();
    let m = mux.display();
    format!(
        "{}[softcam]\nhost = \"127.0.0.1\"\nport = 9\n\n[cards]\nenabled = true\n\n\
         [[adapter]]\nname = \"ter1\"\ndevice = \"adapter57\"\n\n\
         [[channel]]\nname = \"biss\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 1\nbiss = \"1122334455667788\"\n\n\
         [[channel]]\nname = \"softcam\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 2\nca = \"dvbapi\"\n\n\
         [[channel]]\nname = \"card\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 3\nca = \"card\"\n\n\
         [[channel]]\nname = \"dvb\"\n[[channel.source]]\nadapter = \"ter1\"\ntune = \"dvbt 474000000 8MHz\"\n\n\
         [[channel]]\nname = \"relay\"\n[[channel.source]]\nurl = \"http://{closed}/stream/news\"\n\
         [[channel.source]]\nfile = \"{m}\"\nprogram = 1\n\n{}",
        server_toml(),
        channel_toml("news", &mux, 1, &[]),
        closed = closed_addr(),
    )
}

/// An address on loopback where nothing listens (connects are refused).
fn closed_addr() -> SocketAddr {
    free_addr()
}

#[test]
fn metrics_pass_promtool_lint() {
    if !have_prometheus() {
        return;
    }
    let srv = Server::start("prom-lint", &everything_toml());
    srv.wait_up(&["news", "biss"]);
    // A stream client so the per-client families have samples too.
    let _ = capture(srv.addr, "/stream/news", Duration::from_millis(500));
    // The remote source's refused connects, counted per reason.
    let refused = wait_until(Duration::from_secs(20), || {
        srv.metrics().iter().any(|m| {
            m.name == "capbox_remote_failures_total"
                && m.labels.get("channel").map(String::as_str) == Some("relay")
                && m.labels.get("reason").map(String::as_str) == Some("connect")
                && m.value > 0.0
        })
    });
    assert!(
        refused,
        "no refused connect counted for the relay's remote source\n{}\nlog:\n{}",
        srv.get("/metrics").text(),
        srv.log_text()
    );
    let text = srv.get("/metrics").text();
    for family in [
        "capbox_channel_up",
        "capbox_channel_descrambled_packets_total",
        "capbox_channel_undecryptable_packets_total",
        "capbox_channel_ecms_total",
        "capbox_frontend_locked",
        "capbox_frontend_present",
        "capbox_card_",
        "capbox_http_requests_total",
        "capbox_fanout_bytes_in_total",
        "capbox_remote_failures_total{channel=\"relay\",source=\"0\",reason=\"connect\"}",
        "capbox_remote_connects_total{channel=\"relay\",source=\"0\"}",
        "capbox_remote_bytes_total",
        "capbox_remote_queue_drops_total",
        "capbox_supervisor_watchdog_armed 0",
        "capbox_supervisor_watchdog_feeds_total 0",
        "capbox_supervisor_thread_stalled{thread=\"http\"} 0",
        "capbox_supervisor_thread_stalled{thread=\"softcam\"} 0",
        "capbox_supervisor_thread_stalled{thread=\"remote http://",
        "capbox_supervisor_thread_stalled{thread=\"mux remote http://",
        "capbox_supervisor_thread_restarts_total{thread=\"cards\"} 0",
        "capbox_supervisor_resets_last_hour 0",
        "capbox_supervisor_reboot_guard 0",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics");
    }
    let (ok, said) = promtool_check_metrics(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `value` of the first result of an instant query, if any.
fn query(prom: SocketAddr, q: &str) -> Option<String> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    // Prometheus may not listen yet: no answer is None, not a panic.
    let mut c = std::net::TcpStream::connect(prom).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        c,
        "GET /api/v1/query?query={enc} HTTP/1.0\r\nHost: {prom}\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut c, &mut raw).ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(String::from)
}

#[test]
fn prometheus_scrapes_capbox() {
    if !have_prometheus() {
        return;
    }
    let srv = Server::start("prom-scrape", &demo_toml());
    srv.wait_up(&["news", "sport", "music"]);
    let dir = TempDir::new("prom-server");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: capbox\n    static_configs:\n      - targets: ['{}']\n",
            srv.addr
        ),
    )
    .unwrap();
    let web = free_addr();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ok = wait_until(Duration::from_secs(60), || {
        query(web, "up{job=\"capbox\"}").as_deref() == Some("1")
            && query(web, "capbox_channel_up{channel=\"news\"}").as_deref() == Some("1")
    });
    let bytes = query(web, "capbox_channel_bytes_total{channel=\"sport\"}");
    let errors = query(web, "scrape_samples_scraped{job=\"capbox\"}");
    let _ = prom.kill();
    let _ = prom.wait();
    let plog = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(ok, "Prometheus did not see capbox up\n{plog}");
    assert!(
        bytes
            .and_then(|b| b.parse::<f64>().ok())
            .is_some_and(|b| b > 0.0),
        "no bytes counted for sport"
    );
    assert!(
        errors
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 100.0),
        "too few samples scraped"
    );
}
