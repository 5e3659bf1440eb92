//! Conditional access: descrambling of transport packets (DVB-CSA, BISS).

pub mod biss;
pub mod csa;
