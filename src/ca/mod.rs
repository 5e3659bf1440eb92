//! Conditional access: descrambling of transport packets (DVB-CSA).

pub mod csa;
