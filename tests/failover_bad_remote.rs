//! The failover issue's "bad input" bar at the channel level: a remote that
//! sends HTML, random bytes, a truncated chunked body, a 2 GB
//! Content-Length, connects and never answers, or answers and then stalls —
//! each gives a clear reason in `/status` and a counter in `/metrics`, and
//! the channel fails over.
//!
//! One `capbox serve`, one channel per behaviour, each with two sources:
//! a fake peer (a thread of this test on loopback) first, the sample file
//! second. Every peer first serves good MPEG-TS at the mux's bitrate, so
//! each channel is on air from its remote; a viewer connects to every
//! channel; then every peer turns bad at once. Each channel must leave its
//! remote for the file, say why in the source's `remote_status.last_error`
//! and `health`, count it under the behaviour's reason in
//! `capbox_remote_failures_total`, and its viewer must keep receiving
//! bytes on the same connection. capbox must not crash.

mod e2e_common;
mod site_common;

use e2e_common::*;
use site_common::{Behaviour, FakePeer, Viewer};
use std::net::TcpListener;
use std::time::Duration;

const BAD: [Behaviour; 6] = [
    Behaviour::Html,
    Behaviour::Random,
    Behaviour::TruncatedChunked,
    Behaviour::HugeContentLength,
    Behaviour::Silent,
    Behaviour::StallAfterHead,
];

/// The channel's /status object, pretty, and capbox's stderr tail.
fn context(srv: &Server, ch: &str) -> String {
    let st = srv.status();
    format!(
        "/status of '{ch}':\n{:#}\ncapbox stderr (tail):\n{}",
        status_channel(&st, ch).cloned().unwrap_or_default(),
        srv.log_tail(60)
    )
}

/// `capbox_remote_failures_total{channel, source="0", reason}`.
fn failures(m: &[Sample], ch: &str, reason: &str) -> f64 {
    m.iter()
        .find(|s| {
            s.name == "capbox_remote_failures_total"
                && s.labels.get("channel").map(String::as_str) == Some(ch)
                && s.labels.get("source").map(String::as_str) == Some("0")
                && s.labels.get("reason").map(String::as_str) == Some(reason)
        })
        .map(|s| s.value)
        .unwrap_or(0.0)
}

#[test]
fn each_bad_remote_is_left_with_its_reason_and_counter() {
    let peers: Vec<FakePeer> = BAD
        .iter()
        .map(|_| FakePeer::start(TcpListener::bind("127.0.0.1:0").unwrap(), Behaviour::Good))
        .collect();
    let mut cfg = server_toml();
    for (b, p) in BAD.iter().zip(&peers) {
        cfg += &format!(
            "[[channel]]\nname = \"{}\"\nfail_after_ms = 300\nrecover_after_ms = 2000\n\n\
             [[channel.source]]\nurl = \"http://{}/stream/news\"\n\n\
             [[channel.source]]\nfile = \"{}\"\nprogram = 1\n\n",
            b.name(),
            p.addr,
            sample_mux().display()
        );
    }
    let mut srv = Server::start("bad-remote", &cfg);

    // 1. Every channel on air from its (still good) remote.
    for b in BAD {
        let ch = b.name();
        let ok = wait_until(Duration::from_secs(30), || {
            let st = srv.status();
            let c = status_channel(&st, ch).cloned().unwrap_or_default();
            c["state"] == "up" && c["active_source"] == 0 && c["sources"][0]["healthy"] == true
        });
        assert!(
            ok,
            "'{ch}' never on air from its remote\n{}",
            context(&srv, ch)
        );
    }
    let m = srv.metrics();
    for b in BAD {
        let connected = m.iter().find(|s| {
            s.name == "capbox_remote_connected"
                && s.labels.get("channel").map(String::as_str) == Some(b.name())
        });
        assert_eq!(
            connected.map(|s| s.value),
            Some(1.0),
            "capbox_remote_connected of '{}'\n{}",
            b.name(),
            context(&srv, b.name())
        );
    }
    let viewers: Vec<Viewer> = BAD
        .iter()
        .map(|b| {
            let (s, first) = open_stream(srv.addr, &format!("/stream/{}", b.name()), "");
            Viewer::start(s, first, 0)
        })
        .collect();
    for (b, v) in BAD.iter().zip(&viewers) {
        v.assert_flowing(
            &format!("'{}' from its remote", b.name()),
            Duration::from_millis(1500),
            5_000,
            &|| context(&srv, b.name()),
        );
    }

    // 2. Every peer turns bad.
    for (b, p) in BAD.iter().zip(&peers) {
        p.set(*b);
    }
    for b in BAD {
        let ch = b.name();
        let mut last = serde_json::Value::Null;
        let ok = wait_until(Duration::from_secs(30), || {
            let st = srv.status();
            last = status_channel(&st, ch).cloned().unwrap_or_default();
            let s0 = &last["sources"][0];
            let said = s0["remote_status"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(b.error_words()));
            let health = s0["health"]
                .as_str()
                .is_some_and(|h| h.contains("(remote: ") && h.contains(b.error_words()));
            last["active_source"] == 1
                && last["state"] == "up"
                && said
                && health
                && failures(&srv.metrics(), ch, b.reason()) > 0.0
        });
        assert!(
            ok,
            "'{ch}' ({b:?}): want the file on air, last_error and health with {:?}, \
             capbox_remote_failures_total{{reason=\"{}\"}} > 0\nlast seen:\n{last:#}\n{}\n\
             metrics:\n{}",
            b.error_words(),
            b.reason(),
            context(&srv, ch),
            fmt_samples(
                &srv.metrics()
                    .into_iter()
                    .filter(|s| s.name.starts_with("capbox_remote_")
                        && s.labels.get("channel").map(String::as_str) == Some(ch))
                    .collect::<Vec<_>>()
            )
        );
        let f = &last["failover"];
        let why = f["last_switch"].as_str().unwrap_or("");
        assert!(
            f["switches"].as_u64() >= Some(1)
                && why.starts_with("http://")
                && why.contains("→ file"),
            "'{ch}': the switch away from the remote: {why:?}\n{}",
            context(&srv, ch)
        );
        println!("{ch}: {}", last["sources"][0]["health"]);
    }

    // 3. Every viewer kept its connection and still gets bytes (the file).
    for (b, v) in BAD.iter().zip(&viewers) {
        v.assert_flowing(
            &format!("'{}' after leaving its bad remote", b.name()),
            Duration::from_millis(1500),
            5_000,
            &|| context(&srv, b.name()),
        );
    }
    assert!(srv.alive(), "capbox exited\n{}", srv.log_tail(60));

    // 4. The console says why too.
    let (code, out) = run_capbox(
        &["status", "--url", &format!("http://{}", srv.addr)],
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("(remote: not MPEG-TS: got text/html)"),
        "capbox status does not say why the html remote failed:\n{out}"
    );
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    drop(viewers);
    drop(peers);
}
