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
pub mod cards;
pub mod csa;
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
}
