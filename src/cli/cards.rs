//! `capbox cards`: the smart card readers and cards, in 80 columns — from
//! the running capbox's `/status` (key "cards"), or with `--local` from
//! pcscd directly (a short-lived card manager; works without the daemon).

use crate::ca::cards::{render_table, CardManager, CardStatus};
use crate::config::CardsConfig;
use std::time::{Duration, Instant};

const HELP: &str = "\
usage: capbox cards [--url http://127.0.0.1:8080] [--local] [--json]

One entry per PC/SC reader: state, CA system, card address, ECMs answered
and failed, last ECM round trip and age, ATR, driver, EMMs, resets, services
bound, last error. --local asks pcscd directly instead of the running capbox
(identifies the cards with every driver capbox has).
";

pub fn run(args: &[String]) -> i32 {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut local = false;
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => match it.next() {
                Some(u) => url = u.clone(),
                None => {
                    super::term::warn("capbox cards: --url needs a value");
                    return 2;
                }
            },
            "--local" => local = true,
            "--json" => json = true,
            other => {
                eprintln!("capbox cards: unknown option '{other}'\n\n{HELP}");
                return 2;
            }
        }
    }
    if local {
        // No library, no card manager: say what to install, not "pcscd
        // not running".
        if let Err(why) = crate::ca::cards::available() {
            super::term::warn(&format!("capbox cards: {why}"));
            return 1;
        }
    }
    let cards = if local {
        local_cards()
    } else {
        match from_daemon(&url) {
            Ok(c) => c,
            Err(e) => {
                super::term::warn(&format!("capbox cards: {e}"));
                return 1;
            }
        }
    };
    if json {
        match serde_json::to_string_pretty(&cards) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                super::term::warn(&format!("capbox cards: {e}"));
                return 1;
            }
        }
    } else {
        match words(&cards) {
            Some(w) => super::term::say(&w),
            None => super::term::print(&render_table(&cards)),
        }
    }
    0
}

/// No readers in words, with what to do: pcscd is not running, or it
/// runs and sees no reader. `None` when there are readers (the table).
pub fn words(cards: &[CardStatus]) -> Option<String> {
    if cards.is_empty() {
        return Some(
            "no card readers: pcscd runs but sees none. Is the reader plugged in \
             (`lsusb`)? Does ccid know it (`pcsc_scan` lists it)?"
                .into(),
        );
    }
    if cards.iter().all(|c| c.state == "pcscd not running") {
        // A build without the card manager reports itself as pcscd down.
        if let Some(e) = cards[0]
            .last_error
            .as_deref()
            .filter(|e| e.starts_with("this capbox was built without"))
        {
            return Some(format!("no card readers: {e}"));
        }
        let why = cards[0]
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Some(format!(
            "no card readers: pcscd, the PC/SC daemon, is not running{why}. \
             Start it (`pcscd` as root) and look again."
        ));
    }
    None
}

fn from_daemon(url: &str) -> Result<Vec<CardStatus>, String> {
    let body = super::status::http_get(url, "/status", Duration::from_secs(5))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))?;
    match v.get("cards") {
        None | Some(serde_json::Value::Null) => Err(
            "the running capbox reports no cards (no [cards] in its config?); \
             `capbox cards --local` asks pcscd directly"
                .into(),
        ),
        Some(c) => serde_json::from_value(c.clone())
            .map_err(|e| format!("/status \"cards\" is not what this capbox expects: {e}")),
    }
}

/// Run a card manager until every card is identified (or 5 s pass).
fn local_cards() -> Vec<CardStatus> {
    let m = CardManager::start(CardsConfig {
        enabled: true,
        ..CardsConfig::default()
    });
    let until = Instant::now() + Duration::from_secs(5);
    // Readers are listed, then each card gets a thread that identifies it:
    // wait until no reader is still in between.
    let mut settled_since: Option<Instant> = None;
    let cards = loop {
        let c = m.status();
        let busy = c.iter().any(|s| {
            s.state == "starting" || (s.state == "no card" && s.insertions > 0 && s.atr.is_some())
        });
        let seen = !c.is_empty();
        if seen && !busy {
            // A little grace: pcscd reports cards right after the readers.
            let since = *settled_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(300) {
                break c;
            }
        } else {
            settled_since = None;
        }
        if Instant::now() >= until {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    m.stop();
    cards
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server answering `body` as /status.
    fn serve(body: String) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Read the whole request: closing with unread bytes resets
            // the connection before the client reads the answer.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"
            );
        });
        url
    }

    #[test]
    fn reads_cards_from_status() {
        let c = CardStatus {
            reader: "Virtual PCD 00 00".into(),
            state: "ready".into(),
            caid: Some(0xFFFE),
            ecms_ok: 7,
            ..Default::default()
        };
        let body = format!(
            "{{\"version\":\"x\",\"channels\":[],\"cards\":{}}}",
            serde_json::to_string(std::slice::from_ref(&c)).unwrap()
        );
        assert_eq!(from_daemon(&serve(body)).unwrap(), vec![c]);
        let err = from_daemon(&serve("{\"channels\":[]}".into())).unwrap_err();
        assert!(err.contains("--local"), "{err}");
    }

    #[test]
    fn no_readers_are_said_in_words_with_what_to_do() {
        let w = words(&[]).unwrap();
        assert!(
            w.contains("pcscd runs but sees none") && w.contains("lsusb"),
            "{w}"
        );
        let down = CardStatus {
            state: "pcscd not running".into(),
            last_error: Some(
                "cannot reach pcscd: The Smart card resource manager is not running".into(),
            ),
            ..Default::default()
        };
        let w = words(std::slice::from_ref(&down)).unwrap();
        assert!(
            w.starts_with(
                "no card readers: pcscd, the PC/SC daemon, is not running (cannot reach pcscd"
            ) && w.contains("`pcscd` as root"),
            "{w}"
        );
        let static_build = CardStatus {
            state: "pcscd not running".into(),
            last_error: Some("this capbox was built without the card manager".into()),
            ..Default::default()
        };
        assert_eq!(
            words(&[static_build]).unwrap(),
            "no card readers: this capbox was built without the card manager"
        );
        let ready = CardStatus {
            reader: "Alcor".into(),
            state: "ready".into(),
            ..Default::default()
        };
        assert_eq!(words(&[ready]), None, "readers: the table");
    }
}
