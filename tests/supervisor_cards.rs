//! A card thread stuck in a PC/SC transmit (the virtual testca card holds
//! its answer, over a real pcscd and vpcd: see tests/pcsc_rig) is found
//! stalled by the supervisor, abandoned and replaced by a fresh card
//! thread, once, counted; the card serves ECMs again, and the watchdog
//! feed never stopped (a card is restart policy, never reboot).

#![cfg(feature = "pcsc")]

use capbox::ca::cards::{CardManager, CardStatus, CwPair, EcmClient};
use capbox::ca::testca::{self, build_ecm, Ecm};
use capbox::config::{CardsConfig, SupervisorConfig};
use capbox::supervisor::{verdict, Shared, Supervisor};
mod pcsc_rig;
use pcsc_rig::*;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("  {what}: after {:?}", t0.elapsed());
}

fn reader0(m: &CardManager) -> Option<CardStatus> {
    m.status().into_iter().find(|c| c.reader == R0)
}

fn ecm_sync(c: &Arc<dyn EcmClient>, s: Vec<u8>) -> Result<CwPair, String> {
    let (tx, rx) = mpsc::channel();
    c.ecm(
        testca::CAID,
        s,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv_timeout(Duration::from_secs(15))
        .expect("done is called")
}

fn ecm(period: u32) -> Ecm {
    Ecm {
        table_id: if period.is_multiple_of(2) {
            testca::ECM_EVEN
        } else {
            testca::ECM_ODD
        },
        key_index: 0,
        period,
        service_id: 0x0102,
        even: [period as u8; 8],
        odd: [period as u8 ^ 0xFF; 8],
        access_day: testca::today(),
    }
}

#[test]
fn a_card_thread_stuck_in_a_transmit_is_restarted_not_rebooted() {
    let Some(mut rig) = rig("sup-cards") else {
        return;
    };
    let cfg = SupervisorConfig {
        stall_after_s: 2,
        ..SupervisorConfig::default()
    };
    let shared = Shared::new(&cfg);
    let sup = Supervisor::start(shared.clone(), &cfg, false);
    let m = CardManager::start_supervised(
        CardsConfig {
            enabled: true,
            ecm_timeout_ms: 1000,
            queue_depth: 4,
            cards: Vec::new(),
        },
        Some(shared.heartbeats.clone()),
    );
    let client = m.client();
    // GET INFO and one ECM, then the card holds the next APDU for 3 s:
    // the card thread sits in SCardTransmit, its loop does not turn.
    let _card = rig.card(0, &["--mute-after", "2", "--mute-ms", "3000"]);
    wait_for("card ready", 15, || {
        reader0(&m).is_some_and(|c| c.state == "ready")
    });
    let name = format!("card {R0}");
    let hb = &shared.heartbeats;
    assert!(
        hb.snapshot().iter().any(|b| b.name == name),
        "{:?}",
        hb.snapshot()
    );
    let e = ecm(10);
    assert_eq!(
        ecm_sync(&client, build_ecm(&K0, &e)).unwrap().even,
        Some(e.even)
    );

    let err = ecm_sync(&client, build_ecm(&K0, &ecm(11))).unwrap_err();
    assert!(err.contains("card not answering"), "{err}");
    // The supervisor sees the stall, restarts that part, keeps feeding.
    let mut fed_throughout = true;
    wait_for("card thread restarted", 10, || {
        let now = hb.tick();
        let v = verdict(&hb.snapshot(), now, 2000);
        fed_throughout &= v.feed;
        hb.restarts().get(&name).copied().unwrap_or(0) >= 1
    });
    wait_for("card ready again", 15, || {
        reader0(&m).is_some_and(|c| c.state == "ready")
    });
    let e = ecm(12);
    let cw = ecm_sync(&client, build_ecm(&K0, &e)).unwrap();
    assert_eq!((cw.even, cw.odd), (Some(e.even), Some(e.odd)));
    assert!(
        fed_throughout,
        "a stuck card thread must never stop the feed"
    );
    let restarts = hb.restarts().get(&name).copied().unwrap_or(0);
    eprintln!("  restarts of '{name}': {restarts}");
    assert!(
        (1..=2).contains(&restarts),
        "one restart per stall (a second only if the fresh thread waited behind the mute): {restarts}"
    );
    let st = shared.status();
    let t = st["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(t["policy"], "restart");
    assert_eq!(t["stalled"], false, "{t}");
    assert_eq!(t["restarts"], restarts, "{t}");
    let st = reader0(&m).unwrap();
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("card thread stuck") || e.contains("not answering")),
        "{st:?}"
    );
    sup.stopping();
    m.stop();
    sup.stop();
}
