//! capbox: the userland of a DVB capture box. See README.md for the
//! operator's guide and ../ARCHITECTURE in the design docs for the map.

pub mod cli;
pub mod fanout;
pub mod http;
pub mod ts;
