//! The whole card path through `capbox serve`, for real: samples/mux.ts
//! program 1 scrambled with testca (a new control word every 0.5 s, ECMs,
//! CAT and EMMs), `ca = "card"`; capbox's card manager → libpcsclite → a
//! private pcscd → vsmartcard-vpcd → the virtual testca card
//! (examples/testcard.rs) → control words → descrambler → HTTP.
//!
//! Checks: every ES packet served is clear and equals the clear original
//! across key changes; `/status` and `/metrics` name the card, its ECM
//! round trip and the service; the card pulled → the channel says it has no
//! control word (counted, logged, still up, never garbled); the card back →
//! clear again without a restart.

#![cfg(feature = "pcsc")]

mod e2e_common;
mod pcsc_rig;
use capbox::ca::scrambler::{self, ScramblerConfig};
use capbox::ca::testca;
use e2e_common::*;
use pcsc_rig::*;
use std::time::Duration;

const ES_PIDS: [u16; 2] = [0x101, 0x102];

fn counter(srv: &Server, name: &str) -> f64 {
    metric(&srv.metrics(), name, "scr").unwrap_or(0.0)
}

#[test]
fn card_words_descramble_and_a_pulled_card_recovers() {
    let Some(mut rig) = rig("e2e-card") else {
        return;
    };
    let clear = std::fs::read(sample_mux()).unwrap();
    let mut cfg = ScramblerConfig::new(K0, 0xCA4D);
    cfg.services = vec![1];
    cfg.period_ms = 500;
    cfg.emm_addresses = vec![ADDR, 0x0BAD_CAFE];
    let (scrambled, _log, stats) = scrambler::scramble(&clear, cfg);
    assert!(stats.periods >= 30, "{stats:?}");
    let tmp = TempDir::new("e2e-card");
    let file = tmp.join("testca.ts");
    std::fs::write(&file, &scrambled).unwrap();
    let clear = es_payloads(&clear, &ES_PIDS);

    let card = rig.card(0, &[]);
    let config = format!(
        "{}[cards]\necm_timeout_ms = 2000\n\n\
         [[channel]]\nname = \"scr\"\n[[channel.source]]\nfile = \"{}\"\nprogram = 1\nca = \"card\"\n",
        server_toml(),
        file.display()
    );
    // PCSCLITE_CSOCK_NAME (set by the rig) is inherited by capbox serve.
    let srv = Server::start("e2e-card", &config);
    srv.wait_up(&["scr"]);
    assert!(
        wait_until(Duration::from_secs(30), || counter(
            &srv,
            "capbox_channel_descrambled_packets_total"
        ) > 500.0),
        "nothing descrambled\n{}\n{}",
        srv.status(),
        srv.log_text()
    );
    // A keyframe after the first words, so a new client starts clear.
    std::thread::sleep(Duration::from_secs(3));
    let out = capture(srv.addr, "/stream/scr", Duration::from_secs(4));
    let checked = assert_descrambled(&out, &clear);
    assert!(checked > 500, "only {checked} ES packets checked");

    let st = srv.status();
    let ch = status_channel(&st, "scr").unwrap();
    assert_eq!(ch["ca"]["kind"], "card", "{ch}");
    assert_eq!(ch["ca"]["caid"], testca::CAID, "{ch}");
    assert!(ch["ca"]["ecms_answered"].as_u64().unwrap_or(0) >= 8, "{ch}");
    assert_eq!(ch["descrambler"]["wrong_key"], 0, "{ch}");
    let cards = st["cards"].as_array().expect("cards in /status");
    let c = cards
        .iter()
        .find(|c| c["reader"] == R0)
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(c["state"], "ready", "{c}");
    assert_eq!(c["services"][0], "scr", "{c}");
    assert!(c["ecms_ok"].as_u64().unwrap_or(0) >= 8, "{c}");
    assert!(c["last_ecm_rtt_ms"].as_f64().is_some(), "{c}");
    // The EMM for this card reached it; the other card's was filtered.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let st = srv.status();
            let c = &st["cards"][0];
            c["emms"].as_u64().unwrap_or(0) >= 1
        }),
        "{}",
        srv.status()["cards"]
    );
    let m = srv.get("/metrics").text();
    assert!(m.contains("capbox_card_"), "card metrics");
    assert!(m.contains("capbox_channel_ecm_rtt_seconds{channel=\"scr\"}"));

    // ---- the card is pulled: no words, counted, said; never garbled.
    rig.pull(card);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let st = srv.status();
            let reason = status_channel(&st, "scr").unwrap()["reason"]
                .as_str()
                .unwrap_or("")
                .to_string();
            reason.contains("control word")
        }),
        "the channel does not say it lacks control words\n{}",
        srv.status()
    );
    let st = srv.status();
    let c = st["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reader"] == R0)
        .unwrap()
        .clone();
    assert_eq!(c["state"], "no card", "{c}");
    let d = &status_channel(&st, "scr").unwrap()["descrambler"];
    assert!(
        d["undecryptable"].as_u64().unwrap_or(0) > 0,
        "left-scrambled packets are counted: {d}"
    );
    assert!(
        srv.get("/metrics").text().lines().any(|l| l
            .starts_with("capbox_channel_undecryptable_packets_total{channel=\"scr\"")
            && !l.ends_with(" 0")),
        "and shown in /metrics"
    );
    assert!(
        srv.log_text().to_lowercase().contains("card"),
        "the log says what happened"
    );

    // ---- the card is back: clear again, same process.
    rig.card(0, &[]);
    let before = counter(&srv, "capbox_channel_descrambled_packets_total");
    assert!(
        wait_until(Duration::from_secs(30), || counter(
            &srv,
            "capbox_channel_descrambled_packets_total"
        ) > before + 500.0),
        "no recovery after the card came back\n{}",
        srv.status()
    );
    std::thread::sleep(Duration::from_secs(3));
    let out = capture(srv.addr, "/stream/scr", Duration::from_secs(3));
    assert!(assert_descrambled(&out, &clear) > 300);
    let st = srv.status();
    assert_eq!(status_channel(&st, "scr").unwrap()["state"], "up");
}
