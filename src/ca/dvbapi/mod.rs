//! Control words from a softcam over OSCam's dvbapi network protocol: the
//! alternative to a local card for operators who already run OSCam with
//! their cards.
//!
//! `proto` is the byte layout, `client` the one connection per softcam
//! (its own thread), `session` the `CaSession` of each service using it.
//! Wiring: one `SoftcamClient::start(cfg.softcam)` per `[softcam]`, then
//! `DvbapiSession::new(client.clone(), program)` per source with
//! `ca = "dvbapi"`.

pub mod client;
pub mod proto;
pub mod session;

pub use client::SoftcamClient;
pub use session::DvbapiSession;
