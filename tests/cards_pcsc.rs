//! The card path for real: capbox's card manager → libpcsclite → a private
//! `pcscd` → Debian's vsmartcard-vpcd driver → examples/testcard.rs (the
//! virtual testca card) over TCP, and back.
//!
//! pcscd's socket directory is hard-wired to /run/pcscd, so the test runs
//! its own pcscd in a private mount namespace with a private directory
//! bound over /run (`unshare -m`, plus `-r` when not root), a private
//! reader.conf.d with free vpcd ports, and points libpcsclite at that
//! socket with PCSCLITE_CSOCK_NAME. Nothing global is touched, so it runs
//! beside a system pcscd and other tests' pcscds. One #[test] runs the
//! scenarios in order: they share the one pcscd. On failure the directory
//! (with pcscd's debug log) is kept and named.
//!
//! Needs: pcscd, vsmartcard-vpcd, util-linux (unshare). Skips loudly when
//! pcscd or vpcd is not installed.

#![cfg(feature = "pcsc")]

use capbox::ca::cards::{CardManager, CardStatus, CwPair, EcmClient};
use capbox::ca::testca::{self, build_ecm, build_emm, Ecm, Emm, CAID};
use capbox::config::{CardConfig, CardsConfig};
mod pcsc_rig;
use pcsc_rig::*;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn status_of<'a>(st: &'a [CardStatus], reader: &str) -> Option<&'a CardStatus> {
    st.iter().find(|c| c.reader == reader)
}

fn wait(m: &CardManager, what: &str, f: impl Fn(&[CardStatus]) -> bool) -> Vec<CardStatus> {
    let t0 = Instant::now();
    loop {
        let st = m.status();
        if f(&st) {
            eprintln!("  {what}: after {:?}", t0.elapsed());
            return st;
        }
        // Generous: the test is about getting there, not how fast.
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "waiting for {what}; status: {st:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn state_is(reader: &'static str, state: &'static str) -> impl Fn(&[CardStatus]) -> bool {
    move |st| status_of(st, reader).is_some_and(|c| c.state == state)
}

fn ecm_sync(c: &Arc<dyn EcmClient>, caid: u16, s: Vec<u8>) -> Result<CwPair, String> {
    let (tx, rx) = mpsc::channel();
    c.ecm(
        caid,
        s,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    let r = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("done is called");
    // done is called exactly once.
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    r
}

fn ecm(key_index: u8, period: u32, access_day: u32) -> Ecm {
    // Words from the period, so every ECM is different.
    let w = |p: u32, s: u8| {
        let mut cw = [0u8; 8];
        for (i, b) in cw.iter_mut().enumerate() {
            *b = (p as u8).wrapping_mul(31).wrapping_add(i as u8 * 17) ^ s;
        }
        cw
    };
    Ecm {
        table_id: if period.is_multiple_of(2) {
            testca::ECM_EVEN
        } else {
            testca::ECM_ODD
        },
        key_index,
        period,
        service_id: 0x0102,
        even: w(period, 0x55),
        odd: w(period + 1, 0xAA),
        access_day,
    }
}

fn check_words(r: Result<CwPair, String>, e: &Ecm) {
    let cw = r.unwrap_or_else(|err| panic!("ECM refused: {err}"));
    assert_eq!(cw.even, Some(e.even));
    assert_eq!(cw.odd, Some(e.odd));
}

#[test]
fn cards_over_real_pcscd() {
    let Some(mut rig) = rig("cards") else { return };
    let today = testca::today();

    let m = CardManager::start(CardsConfig {
        enabled: true,
        ecm_timeout_ms: 1000,
        queue_depth: 4,
        cards: Vec::new(),
    });
    let client = m.client();
    wait(&m, "both readers listed, no card", |st| {
        state_is(R0, "no card")(st) && state_is(R1, "no card")(st)
    });
    let a = rig.card(0, &[]);
    let st = wait(&m, "card A ready", state_is(R0, "ready"));

    eprintln!("-- identity: ATR, CA system, address");
    let s = status_of(&st, R0).unwrap();
    let atr: Vec<u8> = (0..s.atr.as_ref().unwrap().len() / 2)
        .map(|i| u8::from_str_radix(&s.atr.as_ref().unwrap()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(atr[0], 0x3B);
    assert_eq!(atr[1..].iter().fold(0, |x, b| x ^ b), 0, "TCK");
    assert!(atr.windows(6).any(|w| w == b"testca"));
    assert_eq!(s.caid, Some(CAID));
    assert_eq!(s.driver.as_deref(), Some("testca"));
    assert_eq!(s.address.as_deref(), Some("C0FFEE01"));
    assert_eq!(s.insertions, 1);

    eprintln!("-- ECM → control words, both card keys");
    for (i, k) in [(0u8, &K0), (1u8, &K1)] {
        let e = ecm(i, 10 + i as u32, today);
        check_words(ecm_sync(&client, CAID, build_ecm(k, &e)), &e);
    }
    let st = m.status();
    let s = status_of(&st, R0).unwrap();
    assert_eq!(s.ecms_ok, 2);
    assert!(s.last_ecm_rtt_ms.is_some_and(|r| r > 0.0));
    assert!(s.last_ecm_unix.is_some());
    let err = ecm_sync(&client, 0x0B00, build_ecm(&K0, &ecm(0, 1, today))).unwrap_err();
    assert!(err.contains("no card for CA system 0x0B00"), "{err}");

    eprintln!("-- not entitled → 6985; EMM for this address renews, others filtered");
    let late = ecm(0, 20, today + 100);
    let err = ecm_sync(&client, CAID, build_ecm(&K0, &late)).unwrap_err();
    assert!(err.contains("6985"), "{err}");
    let other = build_emm(
        &K0,
        &Emm {
            key_index: 0,
            address: ADDR + 1,
            entitled_until_day: today + 200,
        },
    );
    assert_eq!(client.emm(CAID, other), Ok(false));
    let mine = build_emm(
        &K1,
        &Emm {
            key_index: 1,
            address: ADDR,
            entitled_until_day: today + 200,
        },
    );
    assert_eq!(client.emm(CAID, mine), Ok(true));
    let st = wait(&m, "EMM applied", |st| {
        status_of(st, R0).is_some_and(|c| c.emms == 1)
    });
    assert_eq!(status_of(&st, R0).unwrap().emms_filtered, 1);
    check_words(ecm_sync(&client, CAID, build_ecm(&K0, &late)), &late);

    eprintln!("-- garbage ECMs: card errors counted, card still fine");
    let errs_before = status_of(&m.status(), R0).unwrap().ecm_errors;
    let mut garbage = build_ecm(&K0, &ecm(0, 30, today));
    for b in garbage[13..].iter_mut() {
        *b = b.wrapping_mul(7).wrapping_add(3);
    }
    let err = ecm_sync(&client, CAID, garbage).unwrap_err();
    assert!(err.contains("6982"), "{err}");
    let err = ecm_sync(&client, CAID, vec![0x80, 0x70, 0x01, 0xFF]).unwrap_err();
    assert!(err.contains("not a testca ECM"), "{err}");
    let err = ecm_sync(&client, CAID, build_ecm(&[9; 16], &ecm(0, 31, today))).unwrap_err();
    assert!(err.contains("6982"), "{err}");
    let st = m.status();
    let s = status_of(&st, R0).unwrap();
    assert_eq!(s.ecm_errors, errs_before + 3);
    assert_eq!(s.state, "ready");
    let e = ecm(0, 32, today);
    check_words(ecm_sync(&client, CAID, build_ecm(&K0, &e)), &e);

    eprintln!("-- a card that hangs: ECM times out, card reset, ready again");
    // Card B (other CA system id, so ECMs for it go to reader 1): GET INFO
    // and one ECM, then it holds APDUs for 2.5 s until reset.
    let b = rig.card(
        1,
        &["--caid", "FFFD", "--mute-after", "2", "--mute-ms", "2500"],
    );
    wait(&m, "card B ready", state_is(R1, "ready"));
    let e = ecm(0, 40, today);
    check_words(ecm_sync(&client, 0xFFFD, build_ecm(&K0, &e)), &e);
    let err = ecm_sync(&client, 0xFFFD, build_ecm(&K0, &ecm(0, 41, today))).unwrap_err();
    assert!(err.contains("card not answering"), "{err}");
    let st = m.status();
    let s = status_of(&st, R1).unwrap();
    assert!(s.state.starts_with("card not answering"), "{}", s.state);
    assert_eq!(s.ecm_timeouts, 1);
    // Refused at once while it hangs, with the reason.
    let err = ecm_sync(&client, 0xFFFD, build_ecm(&K0, &ecm(0, 42, today))).unwrap_err();
    assert!(err.contains("not answering"), "{err}");
    let st = wait(&m, "card B reset and ready", |st| {
        status_of(st, R1).is_some_and(|c| c.state == "ready" && c.resets == 1)
    });
    assert_eq!(status_of(&st, R1).unwrap().insertions, 1);
    let e = ecm(0, 43, today);
    check_words(ecm_sync(&client, 0xFFFD, build_ecm(&K0, &e)), &e);
    rig.pull(b);
    wait(&m, "card B out", state_is(R1, "no card"));

    eprintln!("-- a slow card: bounded queue refuses at once, every done called once");
    let slow = rig.card(1, &["--caid", "FFFD", "--slow-ms", "300"]);
    wait(&m, "slow card B ready", state_is(R1, "ready"));
    let (tx, rx) = mpsc::channel();
    let mut accepted = 0;
    let mut refused = Vec::new();
    for p in 0..8u32 {
        let tx = tx.clone();
        let r = client.ecm(
            0xFFFD,
            build_ecm(&K0, &ecm(0, 100 + p, today)),
            Box::new(move |r| {
                let _ = tx.send((p, r));
            }),
        );
        match r {
            Ok(()) => accepted += 1,
            Err(e) => refused.push(e),
        }
    }
    drop(tx);
    assert!(
        !refused.is_empty() && refused.iter().all(|e| e.contains("queue full")),
        "{refused:?}"
    );
    let answers: Vec<(u32, Result<CwPair, String>)> = rx.iter().collect();
    assert_eq!(
        answers.len(),
        accepted,
        "each accepted ECM answered exactly once"
    );
    // The first is answered with words; later ones may have waited too
    // long in the queue, and say so.
    let first = answers
        .iter()
        .find(|(p, _)| *p == 0)
        .expect("first answered");
    check_words(first.1.clone(), &ecm(0, 100, today));
    for (_, r) in &answers {
        if let Err(e) = r {
            assert!(e.contains("expired in the queue"), "{e}");
        }
    }
    let st = m.status();
    let s = status_of(&st, R1).unwrap();
    let expired = answers.iter().filter(|(_, r)| r.is_err()).count();
    assert_eq!(s.ecms_dropped as usize, refused.len() + expired);
    rig.pull(slow);
    wait(&m, "slow card B out", state_is(R1, "no card"));

    eprintln!("-- card pulled: no card, ECM refused with the reason");
    rig.pull(a);
    wait(&m, "card A out", state_is(R0, "no card"));
    let err = ecm_sync(&client, CAID, build_ecm(&K0, &ecm(0, 50, today))).unwrap_err();
    assert!(err.contains("no card for CA system 0xFFFE"), "{err}");

    eprintln!("-- card back (dies in the middle of its second ECM), then back for good");
    let a2 = rig.card(0, &["--die-after", "2"]);
    wait(&m, "card A back", state_is(R0, "ready"));
    let e = ecm(0, 60, today);
    check_words(ecm_sync(&client, CAID, build_ecm(&K0, &e)), &e);
    let err = ecm_sync(&client, CAID, build_ecm(&K0, &ecm(0, 61, today))).unwrap_err();
    eprintln!("  pulled mid-APDU: {err}");
    wait(&m, "card A out again", state_is(R0, "no card"));
    rig.pull(a2);
    rig.card(0, &[]);
    let st = wait(&m, "card A ready, same manager", state_is(R0, "ready"));
    assert_eq!(status_of(&st, R0).unwrap().insertions, 3);
    let e = ecm(0, 62, today);
    check_words(ecm_sync(&client, CAID, build_ecm(&K0, &e)), &e);

    eprintln!("-- capbox cards --local");
    let out = Command::new(env!("CARGO_BIN_EXE_capbox"))
        .args(["cards", "--local"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    eprint!("{text}");
    for l in text.lines() {
        assert!(l.chars().count() <= 80, "over 80 columns: {l}");
    }
    let line = text
        .lines()
        .find(|l| l.starts_with(R0))
        .expect("reader 0 line");
    for want in ["ready", "FFFE", "C0FFEE01"] {
        assert!(line.contains(want), "{want} not in {line}");
    }
    assert!(text.contains(&format!(
        "ATR {}",
        status_of(&st, R0).unwrap().atr.as_ref().unwrap()
    )));
    assert!(text
        .lines()
        .any(|l| l.starts_with(R1) && l.contains("no card")));

    eprintln!("-- pcscd killed and restarted: the manager recovers");
    rig.kill_pcscd();
    wait(&m, "pcscd seen down", |st| {
        !st.is_empty() && st.iter().all(|c| c.state == "pcscd not running")
    });
    let err = ecm_sync(&client, CAID, build_ecm(&K0, &ecm(0, 70, today))).unwrap_err();
    assert!(
        err.contains("pcscd not running") || err.contains("no card"),
        "{err}"
    );
    // The cards lost vpcd with pcscd; they have exited.
    for c in rig.cards.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    rig.start_pcscd();
    rig.card(0, &[]);
    wait(
        &m,
        "card A ready after pcscd restart",
        state_is(R0, "ready"),
    );
    let e = ecm(0, 71, today);
    check_words(ecm_sync(&client, CAID, build_ecm(&K0, &e)), &e);

    eprintln!("-- reconfigure: [[card]] binds reader 0 to another CA_system_id");
    m.reconfigure(CardsConfig {
        enabled: true,
        ecm_timeout_ms: 1000,
        queue_depth: 4,
        cards: vec![CardConfig {
            reader: "PCD 00 00".into(),
            driver: "testca".into(),
            caid: Some(0x0B00),
            ecm_timeout_ms: None,
        }],
    });
    wait(&m, "card A bound to 0x0B00", |st| {
        status_of(st, R0).is_some_and(|c| c.state == "ready" && c.caid == Some(0x0B00))
    });
    let e = ecm(0, 80, today);
    check_words(ecm_sync(&client, 0x0B00, build_ecm(&K0, &e)), &e);
    let err = ecm_sync(&client, CAID, build_ecm(&K0, &e)).unwrap_err();
    assert!(err.contains("no card for CA system 0xFFFE"), "{err}");
    let st = m.status();
    assert!(status_of(&st, R0).unwrap().removals >= 2);

    eprint!("{}", capbox::ca::cards::render_table(&m.status()));
    m.stop();
}
