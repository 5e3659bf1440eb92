//! Smart cards over PC/SC: the card manager, card drivers per CA system,
//! and what `/status`, `/metrics` and `capbox cards` show of them.
//!
//! Owns: the readers and cards (presence, ATR, health, reset), the one
//! APDU stream per card, and the binding of a card to a CA system
//! (CA_system_id) through its `CardDriver`. The ECM router codes against
//! `EcmClient`: it hands over ECM and EMM sections and gets control words
//! back on a card thread; it never blocks on a card.
//!
//! Promises: control words never appear in `Debug`, logs or status; every
//! refused or failed ECM/EMM is counted per card; memory is bounded (one
//! queue of `queue_depth` jobs per card); a card that is pulled, stops
//! answering, or whose pcscd restarts comes back without restarting
//! capbox.

#[cfg(feature = "pcsc")]
pub mod manager;
/// Built without the `pcsc` feature (static binaries, which cannot dlopen
/// libpcsclite): the same API, no readers.
#[cfg(not(feature = "pcsc"))]
#[path = "nopcsc.rs"]
pub mod manager;
#[cfg(feature = "pcsc")]
pub mod pcsclite;
pub mod testca;

pub use manager::{available, CardManager};

use std::fmt::Write as _;

/// The control words one ECM answer gives. Either may be missing (a
/// system that sends only the next word).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CwPair {
    pub even: Option<[u8; 8]>,
    pub odd: Option<[u8; 8]>,
}

impl std::fmt::Debug for CwPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Control words never go to logs: only which ones are there.
        write!(
            f,
            "CwPair {{ even: {}, odd: {} }}",
            if self.even.is_some() { "set" } else { "none" },
            if self.odd.is_some() { "set" } else { "none" }
        )
    }
}

/// The ECM router's view of the cards.
pub trait EcmClient: Send + Sync {
    /// Queue an ECM for a card of CA system `caid`; `done` runs on the card thread with the answer. Never blocks. Err(reason) if refused at once (no card for caid, queue full).
    ///
    /// `done` runs on a card manager thread, never the caller's: the card's
    /// own thread, or the manager's watchdog when the card does not answer
    /// within `ecm_timeout_ms` (it is called exactly once).
    fn ecm(
        &self,
        caid: u16,
        section: Vec<u8>,
        done: Box<dyn FnOnce(Result<CwPair, String>) + Send>,
    ) -> Result<(), String>;
    /// Queue an EMM; only EMMs the card's driver wants (address filter) are sent. Returns Ok(false) if filtered out.
    fn emm(&self, caid: u16, section: Vec<u8>) -> Result<bool, String>;
}

/// An answer from the card: data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rapdu {
    pub data: Vec<u8>,
    pub sw: u16,
}

/// One card's APDU channel (PC/SC in production, a fake in unit tests).
pub trait Apdu {
    /// Send a C-APDU, get the R-APDU. Err is a transport failure (card
    /// removed, reader gone), not a status word.
    fn transmit(&mut self, capdu: &[u8]) -> Result<Rapdu, String>;
}

/// What a driver read from a card when it was inserted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardInfo {
    pub caid: u16,
    /// The card's unique address (EMM filtering), if the system has one.
    pub address: Option<u32>,
    /// More facts in words for the console ("entitled until 2026-12-25").
    pub detail: String,
}

/// The card side of one CA system. Drivers are stateless: what they learn
/// from a card is in its `CardInfo`, so the EMM filter can run on the
/// caller's thread while the card is busy.
pub trait CardDriver: Send + Sync {
    /// Name used in config (`driver = "testca"`) and status.
    fn name(&self) -> &'static str;
    /// CA_system_id the driver serves.
    fn caid(&self) -> u16;
    /// Does this ATR look like one of this system's cards? (Cheap check
    /// before `init` talks to the card; `true` when the ATR says nothing.)
    fn matches_atr(&self, _atr: &[u8]) -> bool {
        true
    }
    /// Read the card's identity (address, entitlements).
    fn init(&self, card: &mut dyn Apdu) -> Result<CardInfo, String>;
    /// ECM section → control words.
    fn ecm(&self, card: &mut dyn Apdu, info: &CardInfo, section: &[u8]) -> Result<CwPair, String>;
    /// EMM section → the card's entitlements are updated.
    fn emm(&self, card: &mut dyn Apdu, info: &CardInfo, section: &[u8]) -> Result<(), String>;
    /// Is this EMM for this card (address filter)?
    fn emm_wanted(&self, info: &CardInfo, section: &[u8]) -> bool;
}

/// The drivers capbox has, by config name.
pub fn driver(name: &str) -> Option<std::sync::Arc<dyn CardDriver>> {
    match name {
        "testca" => Some(std::sync::Arc::new(testca::TestcaDriver)),
        _ => None,
    }
}

/// Names accepted by `driver()`, for config errors.
pub const DRIVERS: &[&str] = &["testca"];

/// One reader (and its card) for `/status`, `/metrics`, `capbox cards`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CardStatus {
    /// PC/SC reader name ("" for the pseudo-row saying pcscd is down).
    pub reader: String,
    /// In words: "ready", "no card", "starting", "card not answering: …",
    /// "unknown card: …", "pcscd not running".
    pub state: String,
    /// ATR in hex, when a card is in.
    pub atr: Option<String>,
    pub caid: Option<u16>,
    pub driver: Option<String>,
    /// Card address, 8 hex digits.
    pub address: Option<String>,
    /// Driver's extra facts ("entitled until day 20500").
    #[serde(default)]
    pub detail: String,
    /// Services whose ECMs go to this card; the daemon fills it in.
    #[serde(default)]
    pub services: Vec<String>,
    pub ecms_ok: u64,
    /// ECMs the card refused or answered with garbage.
    pub ecm_errors: u64,
    /// ECMs with no answer within ecm_timeout_ms (each also an error).
    pub ecm_timeouts: u64,
    /// ECMs refused before reaching the card (queue full, expired in the
    /// queue, card pulled with them queued).
    pub ecms_dropped: u64,
    pub emms: u64,
    pub emm_errors: u64,
    /// EMMs not for this card (address filter).
    pub emms_filtered: u64,
    /// Unix time (s) of the last answered ECM.
    pub last_ecm_unix: Option<f64>,
    /// Round trip of the last answered ECM (queue + card), ms.
    pub last_ecm_rtt_ms: Option<f64>,
    /// Card resets done because the card stopped answering.
    pub resets: u64,
    /// Times a card was seen inserted in this reader.
    pub insertions: u64,
    /// Times a card was seen pulled (or lost) from this reader.
    #[serde(default)]
    pub removals: u64,
    pub last_error: Option<String>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Prometheus text for the cards: `capbox_card_*` families, one series per
/// reader.
pub fn render_metrics(cards: &[CardStatus], out: &mut String) {
    use crate::monitor::metrics::{family, Kind};
    type Get = fn(&CardStatus) -> Option<f64>;
    let families: &[(&str, Kind, &str, Get)] = &[
        (
            "capbox_card_up",
            Kind::Gauge,
            "1 when the card in the reader is ready for ECMs.",
            |c| Some((c.state == "ready") as u8 as f64),
        ),
        (
            "capbox_card_ecms_total",
            Kind::Counter,
            "ECMs the card answered with control words.",
            |c| Some(c.ecms_ok as f64),
        ),
        (
            "capbox_card_ecm_errors_total",
            Kind::Counter,
            "ECMs the card refused, answered with garbage or did not answer.",
            |c| Some(c.ecm_errors as f64),
        ),
        (
            "capbox_card_ecm_timeouts_total",
            Kind::Counter,
            "ECMs without an answer within ecm_timeout_ms.",
            |c| Some(c.ecm_timeouts as f64),
        ),
        (
            "capbox_card_ecms_dropped_total",
            Kind::Counter,
            "ECMs dropped before the card (queue full or expired, card pulled).",
            |c| Some(c.ecms_dropped as f64),
        ),
        (
            "capbox_card_emms_total",
            Kind::Counter,
            "EMMs the card accepted.",
            |c| Some(c.emms as f64),
        ),
        (
            "capbox_card_emm_errors_total",
            Kind::Counter,
            "EMMs the card refused or that failed.",
            |c| Some(c.emm_errors as f64),
        ),
        (
            "capbox_card_emms_filtered_total",
            Kind::Counter,
            "EMMs not sent because they are for another card address.",
            |c| Some(c.emms_filtered as f64),
        ),
        (
            "capbox_card_ecm_rtt_seconds",
            Kind::Gauge,
            "Round trip of the last answered ECM.",
            |c| c.last_ecm_rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "capbox_card_resets_total",
            Kind::Counter,
            "Card resets after the card stopped answering.",
            |c| Some(c.resets as f64),
        ),
        (
            "capbox_card_insertions_total",
            Kind::Counter,
            "Cards seen inserted in the reader.",
            |c| Some(c.insertions as f64),
        ),
        (
            "capbox_card_removals_total",
            Kind::Counter,
            "Cards seen pulled from the reader.",
            |c| Some(c.removals as f64),
        ),
    ];
    let down = cards.iter().any(|c| c.state == "pcscd not running");
    family(
        out,
        "capbox_card_pcscd_up",
        Kind::Gauge,
        "1 when the card manager reaches pcscd.",
    )
    .value(!down);
    for &(name, kind, help, get) in families {
        let mut f = family(out, name, kind, help);
        for c in cards.iter().filter(|c| !c.reader.is_empty()) {
            if let Some(v) = get(c) {
                let caid = c.caid.map(|x| format!("{x:04X}")).unwrap_or_default();
                f.sample(&[("reader", &c.reader), ("caid", &caid)], v);
            }
        }
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The console table of `capbox cards`: every line at most 80 columns.
pub fn render_table(cards: &[CardStatus]) -> String {
    let mut o = String::new();
    if cards.is_empty() {
        o.push_str("no readers\n");
        return o;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(
        o,
        "{:<22} {:<18} {:<4} {:<8} {:>9} {:>6} {:>5}",
        "READER", "STATE", "CAID", "ADDRESS", "ECM ok/er", "RTT ms", "LAST"
    );
    for c in cards {
        let caid = c.caid.map(|x| format!("{x:04X}")).unwrap_or("-".into());
        let rtt = c
            .last_ecm_rtt_ms
            .map(|r| format!("{r:.1}"))
            .unwrap_or("-".into());
        let last = c
            .last_ecm_unix
            .map(|t| age((now - t).max(0.0)))
            .unwrap_or("-".into());
        let ecm = format!("{}/{}", c.ecms_ok, c.ecm_errors);
        let reader = if c.reader.is_empty() {
            "(pcscd)"
        } else {
            &c.reader
        };
        let _ = writeln!(
            o,
            "{:<22} {:<18} {:<4} {:<8} {:>9} {:>6} {:>5}",
            cut(reader, 22),
            cut(&c.state, 18),
            caid,
            cut(c.address.as_deref().unwrap_or("-"), 8),
            cut(&ecm, 9),
            cut(&rtt, 6),
            cut(&last, 5)
        );
        if c.state.chars().count() > 18 {
            let _ = writeln!(o, "  {}", cut(&c.state, 78));
        }
        if let Some(atr) = &c.atr {
            let drv = c.driver.as_deref().unwrap_or("none");
            let line = format!(
                "ATR {atr}  driver {drv}  EMM {}/{}  resets {}",
                c.emms, c.emm_errors, c.resets
            );
            let _ = writeln!(o, "  {}", cut(&line, 78));
        }
        if !c.detail.is_empty() {
            let _ = writeln!(o, "  {}", cut(&c.detail, 78));
        }
        if !c.services.is_empty() {
            let _ = writeln!(
                o,
                "  {}",
                cut(&format!("services: {}", c.services.join(", ")), 78)
            );
        }
        if let Some(e) = &c.last_error {
            let _ = writeln!(o, "  {}", cut(&format!("last error: {e}"), 78));
        }
    }
    o
}

fn age(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else if s < 86_400.0 {
        format!("{:.0}h", s / 3600.0)
    } else {
        format!("{:.0}d", s / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cw_debug_hides_words() {
        let p = CwPair {
            even: Some([0xAB; 8]),
            odd: None,
        };
        let d = format!("{p:?}");
        assert!(
            !d.contains("171") && !d.to_lowercase().contains("ab"),
            "{d}"
        );
        assert!(d.contains("set") && d.contains("none"));
    }

    fn sample() -> CardStatus {
        CardStatus {
            reader: "Very Long Reader Name With \"Quotes\" 00 00 and more".into(),
            state: "card not answering: no answer to an ECM in 1000 ms".into(),
            atr: Some("3B8601746573746361".into()),
            caid: Some(0xFFFE),
            driver: Some("testca".into()),
            address: Some("C0FFEE01".into()),
            detail: "entitled until day 20500".into(),
            services: vec!["news".into(); 30],
            ecms_ok: 123_456_789,
            ecm_errors: 3,
            last_ecm_rtt_ms: Some(12345.678),
            last_ecm_unix: Some(1.0),
            last_error: Some("x".repeat(200)),
            ..Default::default()
        }
    }

    #[test]
    fn table_fits_80_columns() {
        let t = render_table(&[sample(), CardStatus::default()]);
        for l in t.lines() {
            assert!(l.chars().count() <= 80, "{} chars: {l}", l.chars().count());
        }
        assert!(t.contains("FFFE") && t.contains("C0FFEE01"));
    }

    #[test]
    fn metrics_have_help_type_and_escaped_labels() {
        let mut m = String::new();
        render_metrics(&[sample()], &mut m);
        assert!(m.contains("# TYPE capbox_card_up gauge"));
        assert!(m.contains("capbox_card_ecms_total{reader=\"Very Long Reader Name With \\\"Quotes\\\" 00 00 and more\",caid=\"FFFE\"} 123456789"));
        crate::monitor::metrics::lint(&m).unwrap();
    }
}
