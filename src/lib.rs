//! capbox: the userland of a DVB capture box. See README.md for the
//! operator's guide.

pub mod ca;
pub mod channel;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dvb;
pub mod epg;
pub mod fanout;
pub mod http;
pub mod monitor;
pub mod remux;
pub mod source;
pub mod supervisor;
pub mod ts;
pub mod update;
