//! Conditional access: descrambling of transport packets (DVB-CSA, BISS),
//! and where control words come from (cards, softcams, config).
//!
//! The seam between the two halves is `KeySlots` (per service) and the
//! `CaSession` trait: a session is fed the mux's packets on the runner
//! thread, finds what it needs in them (PMT CA descriptors, ECMs, CAT and
//! EMMs), obtains control words (possibly on another thread: a card
//! manager, a softcam connection) and writes them into its slots; the
//! channel's descrambler reads the slots.

pub mod biss;
pub mod card_session;
pub mod cards;
pub mod csa;
pub mod descrambler;
pub mod dvbapi;
pub mod ecm;
pub mod scrambler;
pub mod slots;
pub mod testca;

use std::sync::Arc;
use std::time::Instant;

/// Counters and state of a CA session, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CaStatus {
    /// "biss", "card", "dvbapi".
    pub kind: &'static str,
    /// Plain words: "control words from card 'Virtual PCD 00 00'",
    /// "waiting for the softcam at 10.0.0.5:9000", "no card for CA system
    /// 0x0B00".
    pub state: String,
    /// CA_system_id used, if known.
    pub caid: Option<u16>,
    pub ecm_pid: Option<u16>,
    /// ECM sections seen / sent for an answer / answered with words /
    /// refused or failed.
    pub ecms_seen: u64,
    pub ecms_sent: u64,
    pub ecms_answered: u64,
    pub ecm_errors: u64,
    /// ECMs not sent because the previous one was still pending or the
    /// rate limit was hit.
    pub ecms_dropped: u64,
    pub emms_seen: u64,
    pub emms_sent: u64,
    pub emms_dropped: u64,
    /// Round trip of the last answered ECM, in ms.
    pub last_ecm_rtt_ms: Option<f64>,
    /// Seconds since the last control word arrived.
    pub last_cw_age_s: Option<f64>,
    /// Control words delivered into the slots.
    pub cws_delivered: u64,
    pub last_error: Option<String>,
}

/// Something that finds control words for one service of a mux.
pub trait CaSession: Send {
    /// Whole 188-byte packets of the mux, as read (before any remux), on the
    /// runner thread. Must be cheap for packets it does not want, and never
    /// block: slow work (a card, a socket) belongs on another thread.
    fn feed(&mut self, packets: &[u8], now: Instant);

    /// The slots this session fills; the descrambler reads them.
    fn slots(&self) -> Arc<slots::KeySlots>;

    fn status(&self) -> CaStatus;

    /// PIDs this session reads beyond the service's own (ECM, EMM, a
    /// softcam's filters), so a DVB source with hardware PID filters passes
    /// them to dvr.
    fn wanted_pids(&self) -> Vec<u16> {
        Vec::new()
    }
}

/// Control words and keys are the services' whole secret: no type that
/// holds one may print it through `Debug` (configs, statuses and messages
/// are `{:?}`-logged). One word, written in every form a `Debug` could take.
#[cfg(test)]
mod no_secret_in_debug {
    use super::*;

    const CW: [u8; 8] = [0xA1, 0xB2, 0xC3, 0x16, 0xD4, 0xE5, 0xF6, 0xAF];
    const TOKEN: &str = "s3cr3t-t0ken-XYZ";

    fn assert_clean(what: &str, debug: String) {
        let forms = [
            "161, 178".to_string(), // [u8] Debug
            "a1b2".to_string(),     // hex
            "A1B2".to_string(),
            "0xa1".to_string(),
            "a1 b2".to_string(),
            "A1 B2".to_string(),
            "A1B2C316D4E5F6AF".to_string(), // as written in a config
            TOKEN.to_string(),
        ];
        for f in &forms {
            assert!(
                !debug.contains(f.as_str()),
                "{what}: Debug shows the secret ({f}): {debug}"
            );
        }
    }

    #[test]
    fn no_type_holding_a_control_word_or_key_prints_it() {
        let biss = biss::BissKey::parse("A1B2C316D4E5F6AF").unwrap();
        assert_eq!(biss.control_word(), CW);
        assert_clean("BissKey", format!("{biss:?}"));
        assert_clean(
            "BissSession",
            format!("{:?}", biss::BissSession::new(&biss)),
        );
        let pair = cards::CwPair {
            even: Some(CW),
            odd: Some(CW),
        };
        assert_clean("CwPair", format!("{pair:?}"));
        let d = slots::Delivered {
            cw: CW,
            generation: 1,
        };
        assert_clean("Delivered", format!("{d:?}"));
        assert_clean("KeySchedule", format!("{:?}", csa::KeySchedule::new(CW)));
        assert_clean("Keys", format!("{:?}", csa::Keys::new(CW, CW)));
        let m = dvbapi::proto::Message::CaSetDescr {
            adapter: 0,
            index: 0,
            parity: 1,
            cw: CW,
        };
        assert_clean("Message::CaSetDescr", format!("{m:?}"));
        let m = dvbapi::proto::Message::CaSetDescrData {
            adapter: 0,
            index: 0,
            parity: 1,
            data_type: 1,
            data: [CW, CW].concat(),
        };
        assert_clean("Message::CaSetDescrData", format!("{m:?}"));
        let dec = dvbapi::proto::Decoded::Message {
            msg: m,
            msg_id: Some(7),
        };
        assert_clean("Decoded", format!("{dec:?}"));
        let mut sc = scrambler::ScramblerConfig::new([0xA1; 16], 1);
        sc.card_key[1] = 0xB2;
        assert_clean("ScramblerConfig", format!("{sc:?}"));
        let k = scrambler::KeyLogEntry {
            service_id: 1,
            period: 0,
            parity: csa::Parity::Even,
            cw: CW,
            pids: vec![],
            first_packet: 0,
            last_packet: 0,
            packets: 0,
        };
        assert_clean("KeyLogEntry", format!("{k:?}"));
        let text = format!(
            "[access]\ntoken = \"{TOKEN}\"\n[[channel]]\nname = \"a\"\n[[channel.source]]\n\
             file = \"a.ts\"\nbiss = \"A1B2C316D4E5F6AF\"\n"
        );
        let cfg = crate::config::parse(&text, "t.toml", std::path::Path::new("/")).unwrap();
        assert_clean("Config", format!("{cfg:?}"));
        assert_clean("Config (pretty)", format!("{cfg:#?}"));
    }
}
