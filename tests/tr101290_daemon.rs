//! The daemon's TR 101 290 and box clock: /metrics carries the families
//! (per input mux and per channel), `monitor::metrics::lint` and
//! `promtool check metrics` pass on it, /status has `muxes[]` and
//! `channels[i].tr101290` in the contract's shape, and `[monitor]
//! tr101290 = false` turns it off.

mod e2e_common;
use e2e_common::*;
use std::io::Write;
use std::time::Duration;

const IDS: [&str; 17] = [
    "ts_sync_loss",
    "sync_byte_error",
    "pat_error",
    "continuity_count_error",
    "pmt_error",
    "pid_error",
    "transport_error",
    "crc_error",
    "pcr_repetition_error",
    "pcr_discontinuity_indicator_error",
    "pcr_accuracy_error",
    "pts_error",
    "cat_error",
    "nit_error",
    "sdt_error",
    "eit_error",
    "tdt_error",
];

fn check_shape(t: &serde_json::Value, what: &str) {
    for k in ["priority1_ok", "priority2_ok", "priority3_ok"] {
        assert!(t[k].is_boolean(), "{what}: {k} in {t}");
    }
    let ind = t["indicators"].as_object().unwrap();
    assert_eq!(ind.len(), 17, "{what}: {t}");
    for id in IDS {
        let i = &ind[id];
        assert!(i["errors"].is_u64(), "{what} {id}: {i}");
        assert!(i["active"].is_boolean(), "{what} {id}: {i}");
        assert!(
            i["last_error_s_ago"].is_null() || i["last_error_s_ago"].is_u64(),
            "{what} {id}: {i}"
        );
    }
}

#[test]
fn metrics_and_status_carry_tr101290_and_the_clock() {
    let mux = sample_mux();
    let srv = Server::start(
        "tr290",
        &(server_toml() + "[monitor]\nclock_drift_s = 5\n\n" + &channel_toml("news", &mux, 1, &[])),
    );
    srv.wait_up(&["news"]);
    let mux_name = format!("file {}", mux.display());
    let ok = wait_until(Duration::from_secs(20), || {
        let m = srv.metrics();
        let has = |scope: &str, name: &str| {
            m.iter().any(|s| {
                s.name == "capbox_tr101290_errors_total"
                    && s.labels.get("scope").map(String::as_str) == Some(scope)
                    && s.labels.get("name").map(String::as_str) == Some(name)
                    && s.labels.get("indicator").map(String::as_str) == Some("pat_error")
            })
        };
        has("mux", &mux_name) && has("channel", "news")
    });
    let text = srv.get("/metrics").text();
    assert!(
        ok,
        "no TR 101 290 samples for the mux and the channel\n{text}"
    );
    for id in IDS {
        for scope in ["mux", "channel"] {
            let name = if scope == "mux" {
                mux_name.as_str()
            } else {
                "news"
            };
            for fam in ["capbox_tr101290_errors_total", "capbox_tr101290_active"] {
                let line =
                    format!("{fam}{{scope=\"{scope}\",name=\"{name}\",indicator=\"{id}\"}} ");
                assert!(text.contains(&line), "{line} missing\n{text}");
            }
        }
    }
    // A file replays its recording's TDT: no clock samples, families there.
    assert!(text.contains("# TYPE capbox_clock_offset_seconds gauge"));
    assert!(text.contains("# TYPE capbox_clock_tdt_age_seconds gauge"));
    capbox::monitor::metrics::lint(&text).unwrap();
    if have("promtool") {
        let (ok, said) = promtool_check_metrics(&text);
        assert!(
            ok && said.trim().is_empty(),
            "promtool check metrics: {said}"
        );
    } else {
        eprintln!("\n*** promtool check SKIPPED: apt-get install -y prometheus ***\n");
    }

    let st = srv.status();
    let muxes = st["muxes"].as_array().unwrap();
    assert_eq!(muxes.len(), 1, "{st}");
    assert_eq!(muxes[0]["name"], mux_name.as_str());
    check_shape(&muxes[0]["tr101290"], "mux");
    let clock = &muxes[0]["clock"];
    assert!(
        clock["offset_s"].is_null() && clock["tdt_age_s"].is_null(),
        "{clock}"
    );
    assert_eq!(clock["drift"], false);
    assert!(clock["last_tdt_utc"].is_null());
    let ch = &st["channels"][0];
    check_shape(&ch["tr101290"], "channel");
    // The demo mux is clean at the transport layer: no CC errors anywhere.
    assert_eq!(
        ch["tr101290"]["indicators"]["continuity_count_error"]["errors"], 0,
        "{}",
        ch["tr101290"]
    );
}

#[test]
fn monitor_off_means_no_samples() {
    let mux = sample_mux();
    let srv = Server::start(
        "tr290-off",
        &(server_toml() + "[monitor]\ntr101290 = false\n\n" + &channel_toml("news", &mux, 1, &[])),
    );
    srv.wait_up(&["news"]);
    std::thread::sleep(Duration::from_millis(600));
    let text = srv.get("/metrics").text();
    assert!(!text.contains("capbox_tr101290_errors_total{"), "{text}");
    let st = srv.status();
    assert!(st["channels"][0]["tr101290"].is_null(), "{st}");
    // A file input has no clock either: nothing to publish.
    assert_eq!(st["muxes"].as_array().unwrap().len(), 0, "{st}");
}

/// A live remote input whose TDT says the box clock is an hour ahead:
/// the offset is exported, /status says drift with the TDT's time, one log
/// line says so; when the TDT is right again, one line says it is back.
#[test]
fn box_clock_from_a_live_input_drifts_and_comes_back() {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let shift = Arc::new(AtomicI64::new(-3600));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sample = std::fs::read(sample_mux()).unwrap();
    let sh = shift.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let sample = sample.clone();
            let sh = sh.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut head = [0u8; 2048];
                let _ = s.read(&mut head);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\r\n",
                );
                let mut cc = 0u8;
                loop {
                    for chunk in sample.chunks(50 * 188) {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs() as i64;
                        let tdt =
                            capbox::ts::tdt::TdtRepr::from_unix(now + sh.load(Ordering::SeqCst))
                                .unwrap()
                                .emit();
                        let mut b = Vec::with_capacity(chunk.len() + 188);
                        b.extend_from_slice(chunk);
                        capbox::ts::section::packetize(&tdt, 0x14, &mut cc, &mut b);
                        if s.write_all(&b).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(60));
                    }
                }
            });
        }
    });
    let cfg = format!(
        "{}[monitor]\nclock_drift_s = 5\n\n[[channel]]\nname = \"relay\"\n\n[[channel.source]]\nurl = \"http://{addr}/stream/x\"\nprogram = 1\n\n",
        server_toml()
    );
    let srv = Server::start("tr290-clock", &cfg);
    let mux = |st: &serde_json::Value| {
        st["muxes"].as_array().and_then(|m| {
            m.iter()
                .find(|m| m["name"].as_str().is_some_and(|n| n.starts_with("remote ")))
                .cloned()
        })
    };
    let drift = wait_until(Duration::from_secs(30), || {
        mux(&srv.status()).is_some_and(|m| m["clock"]["drift"] == true)
    });
    let st = srv.status();
    assert!(drift, "no drift in /status: {st}\n{}", srv.log_tail(30));
    let m = mux(&st).unwrap();
    let off = m["clock"]["offset_s"].as_f64().unwrap();
    assert!((-3602.0..=-3598.0).contains(&off), "{m}");
    assert!(
        m["clock"]["last_tdt_utc"].as_str().unwrap().ends_with('Z'),
        "{m}"
    );
    assert!(m["clock"]["tdt_age_s"].as_u64().unwrap() <= 5, "{m}");
    // Live input: TR 101 290 on it too.
    check_shape(&m["tr101290"], "remote mux");
    let name = m["name"].as_str().unwrap().to_string();
    let metrics = srv.metrics();
    let off_m = metrics
        .iter()
        .find(|s| {
            s.name == "capbox_clock_offset_seconds"
                && s.labels.get("mux").map(String::as_str) == Some(name.as_str())
        })
        .map(|s| s.value);
    assert!(
        off_m.is_some_and(|v| (-3602.0..=-3598.0).contains(&v)),
        "{off_m:?}"
    );
    assert!(metrics
        .iter()
        .any(|s| s.name == "capbox_clock_tdt_age_seconds"));
    let log = srv.log_text();
    assert_eq!(
        log.matches("box clock is").count(),
        1,
        "one line when it crosses:\n{log}"
    );
    assert!(
        log.contains("ahead of broadcast time (TDT/TOT of remote http://"),
        "{log}"
    );

    shift.store(0, Ordering::SeqCst);
    let back = wait_until(Duration::from_secs(30), || {
        mux(&srv.status()).is_some_and(|m| m["clock"]["drift"] == false)
    });
    let log = srv.log_text();
    assert!(back, "{}", srv.log_tail(30));
    assert!(
        log.contains("box clock is back within 5 s of broadcast time"),
        "{log}"
    );
    assert_eq!(log.matches("box clock is").count(), 2, "{log}");
}
