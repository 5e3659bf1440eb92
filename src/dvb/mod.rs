//! DVB frontends: tuning parameters, LNB and DiSEqC arithmetic, channel files.

pub mod channels;
pub mod diseqc;
pub mod lnb;
pub mod tuning;
