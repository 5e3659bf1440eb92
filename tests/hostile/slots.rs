//! Connection slots: who may hold one. A peer in no `[access]` list is
//! closed at accept, before it takes a slot; one address holds at most
//! `max_clients_per_address`; a keep-alive connection that only ever got
//! 403/404 is closed; refusals are logged as one summary line per interval
//! (issue 10, items 3 and 7). Allowed viewers get their streams throughout.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::e2e_common::*;
use crate::net::{ask, connect_from, raise_fd_limit, sample};

const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOG: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const IDLE: usize = 600;

fn access_toml(nets: &str) -> String {
    format!(
        "[access]\nstream = {nets}\nplaylist = {nets}\nmetrics = {nets}\nstatus = {nets}\ncontrol = {nets}\n\n"
    )
}

/// `IDLE` connections from `from` that never send a byte.
fn idle_connections(from: Ipv4Addr, to: SocketAddr) -> Vec<TcpStream> {
    assert!(
        raise_fd_limit(4096) >= 2 * IDLE as u64 + 200,
        "this test needs RLIMIT_NOFILE ≥ {} (hard limit too low)",
        2 * IDLE + 200
    );
    (0..IDLE)
        .map(|i| {
            connect_from(from, to, None).unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect()
}

/// A viewer on 127.0.0.1 receives its stream.
fn viewer_gets_stream(addr: SocketAddr) {
    let b = fetch_bytes(addr, "/stream/news", 50 * TS);
    assert!(first_pat(&b).is_some(), "viewer's stream has no PAT");
}

/// Whether the server closed `s` (EOF or reset) within its read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn peers_outside_every_list_take_no_slot() {
    let cfg = server_toml()
        + &access_toml("[\"127.0.0.1/32\"]")
        + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start("slots-outsiders", &cfg);
    srv.wait_up(&["news"]);
    let mut idle = idle_connections(OUTSIDER, srv.addr);
    // All 600 are in capbox's backlog or accepted by now; with the default
    // max_clients = 512 they would hold every slot.
    let mut last = Vec::new();
    let refused = wait_until(Duration::from_secs(20), || {
        last = srv.metrics();
        sample(
            &last,
            "capbox_http_connections_refused_total",
            Some(("reason", "not_allowed")),
        ) >= IDLE as f64
    });
    assert!(refused, "not counted as refused:\n{}", fmt_samples(&last));
    for _ in 0..3 {
        viewer_gets_stream(srv.addr);
    }
    for s in idle.iter_mut().step_by(100) {
        assert!(
            closed_by_server(s),
            "an outsider's connection is still open"
        );
    }
    // Item 7: one line for the first refusal, then at most a summary per
    // interval, not one line each.
    let log = srv.log_text();
    let lines = log.lines().filter(|l| l.contains("127.0.0.2")).count();
    assert!(
        lines <= 3,
        "{lines} log lines name the outsider (one per refusal?):\n{log}"
    );
    assert!(
        log.contains("in no [access] list"),
        "the refusal is not said in words:\n{log}"
    );
}

#[test]
fn one_address_cannot_take_every_slot() {
    // Everyone on loopback is allowed; the hog's address is one of them.
    let cfg = server_toml()
        + &access_toml("[\"127.0.0.0/8\"]")
        + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start("slots-hog", &cfg);
    srv.wait_up(&["news"]);
    let _idle = idle_connections(HOG, srv.addr);
    let mut last = Vec::new();
    // The default max_clients_per_address (400) leaves 112 of the default
    // 512 slots to everyone else.
    let refused = wait_until(Duration::from_secs(20), || {
        last = srv.metrics();
        sample(
            &last,
            "capbox_http_connections_refused_total",
            Some(("reason", "per_address_limit")),
        ) >= (IDLE - 400) as f64
    });
    assert!(
        refused,
        "per-address limit not applied:\n{}",
        fmt_samples(&last)
    );
    let viewers: Vec<_> = (0..3)
        .map(|_| {
            let a = srv.addr;
            std::thread::spawn(move || viewer_gets_stream(a))
        })
        .collect();
    for v in viewers {
        v.join().expect("viewer");
    }
    let st = srv.status();
    let from_hog = st["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.3:"))
        })
        .count();
    // At most the limit (fewer once the idle ones time out, 10 s).
    assert!(from_hog <= 400, "the hog holds {from_hog} connections");
    assert!(
        srv.log_text().contains("max_clients_per_address"),
        "the limit is not named in the log:\n{}",
        srv.log_text()
    );
}

#[test]
fn keep_alive_that_only_gets_403_or_404_is_closed() {
    // 127.0.0.2 may read /metrics but not streams.
    let cfg = server_toml()
        + "[access]\nstream = [\"127.0.0.1/32\"]\nmetrics = [\"127.0.0.0/8\"]\n\n"
        + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start("slots-refused-only", &cfg);
    srv.wait_up(&["news"]);

    let mut s = connect(srv.addr);
    let head = ask(&mut s, "/no/such/route");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(closed_by_server(&mut s), "404-only keep-alive left open");

    let mut s = connect_from(OUTSIDER, srv.addr, None).unwrap();
    let head = ask(&mut s, "/stream/news");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(closed_by_server(&mut s), "403-only keep-alive left open");

    // A connection that got an answer keeps its keep-alive after a 404.
    let mut s = connect(srv.addr);
    let head = ask(&mut s, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = ask(&mut s, "/stream/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("Connection: keep-alive"), "{head}");
    let head = ask(&mut s, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let m = srv.metrics();
    assert_eq!(
        sample(
            &m,
            "capbox_http_clients_cut_total",
            Some(("reason", "only_refusals"))
        ),
        2.0,
        "{}",
        fmt_samples(&m)
    );
}

#[test]
fn refused_requests_are_logged_as_a_summary() {
    // 127.0.0.2 is allowed /metrics (so it is let in at accept) but no
    // streams: each of its stream requests is a 403.
    let cfg = server_toml()
        + "[access]\nstream = [\"127.0.0.1/32\"]\nmetrics = [\"127.0.0.0/8\"]\n\n"
        + &channel_toml("news", &sample_mux(), 1, &[]);
    let srv = Server::start("slots-refusal-log", &cfg);
    srv.wait_up(&["news"]);
    const N: usize = 300;
    for _ in 0..N {
        let mut s = connect_from(OUTSIDER, srv.addr, None).unwrap();
        s.write_all(b"GET /stream/news HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (status, head, _) = read_head(&mut s);
        assert_eq!(status, 403, "{head}");
    }
    // The first refusal is logged at once; the others are summed up in
    // one line once the interval (10 s) has passed.
    let mut total = 0;
    let summed = wait_until(Duration::from_secs(30), || {
        let log = srv.log_text();
        total = log
            .lines()
            .filter(|l| l.contains("refused by the [access] lists"))
            .map(|l| {
                l.split("http: ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(1)
            })
            .sum::<usize>();
        total >= N
    });
    let log = srv.log_text();
    let lines = log.lines().filter(|l| l.contains("127.0.0.2")).count();
    assert!(
        summed,
        "summary lines count {total} of {N} refusals:\n{log}"
    );
    assert!(
        lines <= 3,
        "{lines} log lines for {N} refusals (one each?):\n{log}"
    );
    assert_eq!(
        sample(&srv.metrics(), "capbox_http_refused_total", None),
        N as f64
    );
}
