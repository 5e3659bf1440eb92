//! The one tuning sequence, for every caller that tunes a frontend
//! (`source::dvb::DvbSource` for serve and `capbox tune`, `scan::DvbTuner`
//! for `capbox scan`): LNB voltage, tone and DiSEqC/Unicable actions for a
//! satellite mux with an LNB (`diseqc::tune_sequence`), FE_SET_PROPERTY
//! from `Tuning::to_props`, then a lock wait bounded by the timeout.
//!
//! Promises: the order above, always; nothing is sent to the frontend when
//! the LNB plan or its switch commands cannot be made; every failure says
//! which step it was (`TuneError`), so each caller keeps its own words.

use std::time::Duration;

use super::diseqc::{self, Action};
use super::frontend::{Frontend, Status};
use super::lnb::LnbSetup;
use super::tuning::{PlsStyle, Tuning};
use super::DvbError;

/// How one tune failed, by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuneError {
    /// The LNB plan or its switch commands cannot be made (a frequency
    /// outside the LNB's range, a port out of range): nothing was sent.
    Lnb(String),
    /// The DVBv5 properties cannot be made from the tuning.
    Props(String),
    /// An ioctl of the LNB actions or FE_SET_PROPERTY failed.
    Ioctl(DvbError),
    /// `Frontend::wait_lock` failed: errno 0 is "no lock within N ms
    /// (status: …)", anything else the status read.
    Lock(DvbError),
}

/// What to tune: the mux, and the LNB path in front of the frontend.
#[derive(Debug, Clone, Copy)]
pub struct TuneRequest<'a> {
    pub tuning: &'a Tuning,
    pub lnb: Option<&'a LnbSetup>,
    pub pls_style: PlsStyle,
    /// A slave on a shared LNB cable: no voltage, tone or DiSEqC (the
    /// master drives the cable).
    pub cable_slave: bool,
    pub lock_timeout: Duration,
}

/// Runs the sequence on `fe`; the status at lock.
pub fn tune(fe: &mut Frontend, r: &TuneRequest<'_>) -> Result<Status, TuneError> {
    if let (Some(setup), Some(sat)) = (r.lnb, r.tuning.satellite()) {
        let plan = setup
            .lnb
            .plan(sat.frequency_khz, sat.polarization)
            .map_err(|e| TuneError::Lnb(e.to_string()))?;
        let actions = diseqc::tune_sequence(setup, &plan, sat.polarization, r.cable_slave)
            .map_err(|e| TuneError::Lnb(e.to_string()))?;
        run_actions(fe, &actions).map_err(TuneError::Ioctl)?;
    }
    let props = r
        .tuning
        .to_props(r.lnb, r.pls_style)
        .map_err(|e| TuneError::Props(e.to_string()))?;
    fe.tune(&props).map_err(TuneError::Ioctl)?;
    fe.wait_lock(r.lock_timeout).map_err(TuneError::Lock)
}

/// Runs the LNB/DiSEqC actions of one tune.
pub fn run_actions(fe: &Frontend, actions: &[Action]) -> Result<(), DvbError> {
    for a in actions {
        match a {
            Action::SetVoltage(v) => fe.set_voltage(*v)?,
            Action::SetTone(on) => fe.set_tone(*on)?,
            Action::Send(bytes) => fe.send_diseqc(bytes)?,
            Action::Burst(b) => fe.send_burst(*b)?,
            Action::Sleep(ms) => std::thread::sleep(Duration::from_millis(u64::from(*ms))),
        }
    }
    Ok(())
}
