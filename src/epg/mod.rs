//! The programme guide (issue 15): events collected from the air (EIT,
//! `eit`) and from the operator (XMLTV), validated and kept in bounded
//! memory (`store`), served as XMLTV per audience (`xmltv`).

pub mod eit;
pub mod fetch;
pub mod live;
pub mod serve;
pub mod store;
pub mod xmltv;
pub mod xmltv_in;

pub use store::{Event, Limits, Origin, Outcome, PartKey, RawEvent, Rejects, Store};
