//! The card manager of a capbox built without the `pcsc` feature (only
//! the static in-VM test program is): same API as `manager.rs`, no
//! readers; every ECM is refused with the reason.

use super::{CardStatus, CwPair, EcmClient};
use crate::config::CardsConfig;
use std::sync::Arc;

const WHY: &str = "this capbox was built without the card manager (cargo feature \"pcsc\"; \
     a static binary cannot load libpcsclite.so.1): use the dynamic build for smart cards";

/// Whether this build's card manager can run here: never.
pub fn available() -> Result<(), String> {
    Err(WHY.into())
}

pub struct CardManager;

struct Client;

impl EcmClient for Client {
    fn ecm(
        &self,
        _caid: u16,
        _section: Vec<u8>,
        _done: Box<dyn FnOnce(Result<CwPair, String>) + Send>,
    ) -> Result<(), String> {
        Err(WHY.into())
    }

    fn emm(&self, _caid: u16, _section: Vec<u8>) -> Result<bool, String> {
        Err(WHY.into())
    }
}

impl CardManager {
    pub fn start(_cfg: CardsConfig) -> CardManager {
        CardManager
    }

    /// No thread to watch in this build.
    pub fn start_supervised(
        cfg: CardsConfig,
        _heartbeats: Option<Arc<crate::supervisor::Heartbeats>>,
    ) -> CardManager {
        Self::start(cfg)
    }

    pub fn client(&self) -> Arc<dyn EcmClient> {
        Arc::new(Client)
    }

    pub fn status(&self) -> Vec<CardStatus> {
        vec![CardStatus {
            state: "pcscd not running".into(),
            last_error: Some(WHY.into()),
            ..Default::default()
        }]
    }

    pub fn reconfigure(&self, _cfg: CardsConfig) {}

    pub fn stop(self) {}
}
